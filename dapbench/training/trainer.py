"""The trainer: runs one `RunSpec` in its run folder, epoch by epoch, resumable at every epoch.

Per epoch (`steps_per_epoch` environment steps) it records one row: env steps, training-episode
returns, evaluation returns, the algorithm's learning statistics, steps/s, the wall-clock split
(env / update / eval) and peak memory. After each epoch it checkpoints everything that affects the
future (weights, optimisers, normalisers, the partial rollout, the environment's physics and RNG
states, python/numpy/torch RNG states, counters, and the rows so far), so a run killed at any point and
started again produces the same rows as an uninterrupted one. Only the columns in `TIMING_COLUMNS`
depend on the machine's load. Beside the table it writes `metrics.json`, the algorithm's declaration of
the metrics it logs (what each means and what the regression gate holds it to).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dapbench.algorithm import Algorithm, Context, Spaces
from dapbench.errors import RunFolderError, TrainingError
from dapbench.registry import get_algorithm
from dapbench.results.atomic import atomic_write_text, load_torch
from dapbench.results.columns import DECLARED
from dapbench.results.provenance import (
    algorithm_changes,
    algorithm_provenance,
    collect,
    describe_algorithm,
    recorded_algorithm,
)
from dapbench.results.store import RunLocked, RunStore, Status
from dapbench.suite import RunSpec
from dapbench.tasks.reference import raw_env_rate
from dapbench.tasks.registry import get_task
from dapbench.training.board import EpochBoard
from dapbench.training.env import TrainEnv
from dapbench.training.evaluation import Evaluator
from dapbench.training.memory import cuda_peak_mb, peak_rss_mb
from dapbench.training.quiet import third_party_to

CHECKPOINT_VERSION = 1


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError("device 'cuda' requested but torch sees no CUDA device")
    return device


def _rng_states() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_states(s: dict[str, Any]) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])


@dataclass
class RunOutcome:
    run_dir: str
    state: str
    epoch: int
    error: str | None = None
    bad_input: bool = False  # failed on a run folder's content (a refused checkpoint...), not in training: exit 2


class _Progress:
    """A rich progress bar on a terminal; plain log lines otherwise."""

    def __init__(self, enabled: bool, title: str, total: int, done: int, log: logging.Logger) -> None:
        self.log, self.bar, self.total = log, None, total
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=True)
            self.task = self.bar.add_task(title, total=total, completed=done, info="")
            self.bar.start()

    def epoch(self, row: dict[str, Any]) -> None:
        ev = row.get("eval_return_mean", float("nan"))
        msg = (f"epoch {row['epoch']}/{self.total} steps {row['env_steps']} eval {ev:.1f} "
               f"train {row['train_return_mean']:.1f} ({row['steps_per_s']:.0f} steps/s)")
        self.log.info(msg)
        if self.bar is not None:
            self.bar.update(self.task, completed=row["epoch"], info=f"eval {ev:.1f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _logger(store: RunStore, echo: bool) -> logging.Logger:
    log = logging.getLogger(f"dapbench.run.{store.dir}")
    log.handlers.clear()
    log.propagate = False
    log.setLevel(logging.INFO)
    fh = logging.FileHandler(store.log_path)
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(fh)
    if echo:
        sh = logging.StreamHandler()
        sh.setFormatter(logging.Formatter(f"[{store.dir}] %(message)s"))
        log.addHandler(sh)
    return log


def _file_only(log: logging.Logger):
    """write(text): a WARNING line in the run's log file only (never echoed to the console)."""
    files = [h for h in log.handlers if isinstance(h, logging.FileHandler)]

    def write(text: str) -> None:
        record = log.makeRecord(log.name, logging.WARNING, "", 0, text, None, None)
        for h in files:
            h.handle(record)

    return write


def execute(run_dir: str | Path, progress: bool = False, echo: bool = True) -> RunOutcome:
    """Run (or resume, or skip if done) the run in `run_dir`. Never raises for a failing run: the error
    is stored in the run's status and returned."""
    store = RunStore(run_dir)
    try:
        spec = store.read_spec()
        with store.lock():
            status = store.status()
            if status.state == "done":
                return RunOutcome(str(run_dir), "done", status.epoch)
            log = _logger(store, echo=echo and not progress)
            try:
                with third_party_to(_file_only(log)):  # third-party warnings: run.log, not the console
                    return _train(spec, store, log, progress)
            except RunFolderError as e:  # the folder's own files are refused (corrupt, unsafe): one line, no trace
                _file_only(log)(f"refused: {e}")  # the console gets it once, from the launcher's report
                epoch = store.status().epoch
                store.write_status(Status(state="failed", epoch=epoch, epochs=spec.epochs, error=str(e)))
                return RunOutcome(str(run_dir), "failed", epoch, str(e), bad_input=True)
            except Exception as e:
                log.exception("run failed")
                err = f"{type(e).__name__}: {e}"
                epoch = store.status().epoch
                store.write_status(Status(state="failed", epoch=epoch, epochs=spec.epochs, error=err))
                return RunOutcome(str(run_dir), "failed", epoch, err)
            finally:
                for h in log.handlers:
                    h.close()
                log.handlers.clear()
    except RunLocked as e:
        return RunOutcome(str(run_dir), "running", store.status().epoch, str(e))
    except RunFolderError as e:
        return RunOutcome(str(run_dir), "failed", 0, str(e), bad_input=True)


def seed_everything(seed: int) -> tuple[int, int]:
    """Seed python, numpy and torch with `seed`; return independent (env, algorithm) seeds."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    env_seed, algo_seed = (int(x) for x in np.random.SeedSequence(seed).generate_state(2))
    return env_seed, algo_seed


def build(spec: RunSpec, device: str) -> tuple[TrainEnv, Algorithm]:
    """The training environment and a fresh algorithm for `spec`, seeded as a run of it is."""
    torch.set_num_threads(spec.torch_threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    env_seed, algo_seed = seed_everything(spec.seed)
    algo_cls = get_algorithm(spec.algorithm)
    config = algo_cls.Config.from_spec(spec.config)
    env = TrainEnv(get_task(spec.task), seed=env_seed)
    spaces = Spaces(env.env.observation_space.shape[0], env.env.action_space.shape[0], env.low, env.high)
    return env, algo_cls(config, spaces, Context(spec.horizon, algo_seed, device, spec.dataset, spec.task))


def load_policy(run_dir: str | Path, epoch: int) -> Algorithm:
    """The policy of a finished run at the end of `epoch` (from its snapshot), ready to `act`."""
    store = RunStore(run_dir)
    spec = store.read_spec()
    path = store.snapshot_path(epoch)
    if not path.exists():
        raise RunFolderError(f"{path}: no policy snapshot for epoch {epoch} (the run keeps one every "
                             f"{spec.snapshot_every or 'no'} epochs)")
    remedy = f"delete the run folder {store.dir} to run it again"
    state = load_torch(path, "policy snapshot", remedy)
    env, algo = build(spec, "cpu")
    env.close()
    algo.load_policy_state_dict(state)
    return algo


def _train(spec: RunSpec, store: RunStore, log: logging.Logger, progress: bool) -> RunOutcome:
    device = resolve_device(spec.device)
    recorded = recorded_algorithm(store.read_provenance())  # the algorithm's code in the run's last attempt
    get_algorithm(spec.algorithm, recorded=recorded)  # a plug-in uninstalled since: one error naming it
    env, algo = build(spec, device)
    evaluator = Evaluator(get_task(spec.task), spec.evaluation)

    rows: list[dict[str, Any]] = []
    start_epoch, wall = 0, 0.0
    ckpt = store.load_checkpoint()
    if ckpt is not None:
        if ckpt.get("version") != CHECKPOINT_VERSION or ckpt.get("spec_hash") not in (spec.hash, spec.identity):
            raise TrainingError(f"{store.checkpoint_path}: checkpoint belongs to another spec or version")
        algo.load_state_dict(ckpt["algorithm"])
        env.load_state_dict(ckpt["env"])
        _set_rng_states(ckpt["rng"])
        rows, start_epoch, wall = ckpt["rows"], ckpt["epoch"], ckpt["wall_clock_s"]
        store.write_metrics(rows)  # the checkpoint is the source of truth
        log.info("resumed from epoch %d", start_epoch)
    elif (done := store.status().epoch) > 0:  # e.g. a committed run folder (no checkpoints) extended on a new machine
        log.warning("no checkpoint in %s, though %d epochs are recorded: starting again from epoch 0 (same spec, "
                    "so the same numbers)", store.dir, done)
    code = algorithm_provenance(spec.algorithm)
    # resumed under other algorithm code (as a new dapbench commit is): flagged here, in provenance and the report
    changed = algorithm_changes(recorded, code) if ckpt is not None else []
    for c in changed:
        log.warning("resumed under changed code, epochs 1-%d were made with %s: %s", start_epoch,
                    describe_algorithm(recorded), c)
    ref_rate = raw_env_rate(get_task(spec.task))  # per attempt: speed checks divide steps_per_s by it
    store.add_provenance({**collect(device), "algorithm": code, **({"algorithm_changed": changed} if changed else {}),
                          "resumed_from_epoch": start_epoch, "ref_env_steps_per_s": ref_rate})
    store.write_status(Status(state="running", epoch=start_epoch, epochs=spec.epochs,
                              hostname=os.uname().nodename, pid=os.getpid()))
    declared = {k: m.as_json() for k, m in type(algo).declared_metrics().items()}
    may_be_inf = {k for k, m in declared.items() if m["allow_inf"]}
    atomic_write_text(store.dir / DECLARED, json.dumps({"algorithm": spec.algorithm, "columns": declared},
                                                       indent=2) + "\n")
    bar = _Progress(progress, f"{spec.task}/{spec.label}/seed {spec.seed}", spec.epochs, start_epoch, log)
    board = EpochBoard(store.dir) if spec.tensorboard else None
    try:
        for epoch in range(start_epoch + 1, spec.epochs + 1):
            t0, env_t0, cpu0 = time.perf_counter(), env.env_time, time.process_time()
            stats = algo.train_epoch(env, spec.steps_per_epoch)
            t_train, cpu_train = time.perf_counter() - t0, time.process_time() - cpu0
            t_env = env.env_time - env_t0
            bad = [k for k, v in stats.items() if math.isnan(v) or (math.isinf(v) and k not in may_be_inf)]
            if bad:
                raise TrainingError(f"non-finite {', '.join(bad)} at epoch {epoch}; the checkpoint of epoch "
                                    f"{epoch - 1} is kept")
            episodes = env.drain_episodes()
            ret = np.array([r for r, _ in episodes]) if episodes else np.array([np.nan])
            row: dict[str, Any] = {
                "epoch": epoch,
                "epochs": spec.horizon // spec.steps_per_epoch,  # the protocol's epochs: the same in a shorter run
                "env_steps": epoch * spec.steps_per_epoch,
                "train_return_mean": float(np.mean(ret)),
                "train_return_std": float(np.std(ret)),
                "train_episodes": len(episodes),
            }
            ev = spec.evaluation
            cpu_eval = 0.0
            if ev.every and (epoch % ev.every == 0 or epoch == spec.epochs):
                cpu0 = time.process_time()
                row.update(evaluator(algo))
                cpu_eval = time.process_time() - cpu0
            row.update(stats)
            wall += t_train + row.get("time_eval_s", 0.0)
            row.update({
                "steps_per_s": spec.steps_per_epoch / t_train,
                "time_env_s": t_env,
                "time_update_s": t_train - t_env,
                "time_train_s": t_train,  # env + update: the work that differs between methods (no evaluation)
                "cpu_train_s": cpu_train,  # process CPU time of env + update (load on the machine does not inflate it)
                "cpu_eval_s": cpu_eval,
                "time_eval_s": row.get("time_eval_s", 0.0),
                "time_epoch_s": t_train + row.get("time_eval_s", 0.0),
                "wall_clock_s": wall,
                "peak_rss_mb": peak_rss_mb(),
                "cuda_peak_mb": cuda_peak_mb(device),
                "ref_env_steps_per_s": ref_rate,
            })
            rows.append(row)
            store.save_checkpoint({
                "version": CHECKPOINT_VERSION, "spec_hash": spec.identity, "epoch": epoch, "rows": rows,
                "wall_clock_s": wall, "algorithm": algo.state_dict(), "env": env.state_dict(),
                "rng": _rng_states(),
            })
            if spec.snapshot_every and epoch % spec.snapshot_every == 0:
                store.save_snapshot(epoch, algo.policy_state_dict())
            store.write_metrics(rows)
            store.write_status(Status(state="running", epoch=epoch, epochs=spec.epochs,
                                      hostname=os.uname().nodename, pid=os.getpid()))
            bar.epoch(row)
            if board is not None:
                board.write(row)
    finally:
        bar.close()
        if board is not None:
            board.close()
        env.close()
        evaluator.close()
    store.write_status(Status(state="done", epoch=spec.epochs, epochs=spec.epochs, hostname=os.uname().nodename,
                              pid=os.getpid()))
    log.info("done: %d epochs, %.1f s", spec.epochs, wall)
    return RunOutcome(str(store.dir), "done", spec.epochs)
