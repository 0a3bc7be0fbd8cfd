"""Synthetic run folders with known curves, written through the real `RunStore`: for the report's tests,
its scale benchmark, and trying `dapbench report` without training anything.

Nothing here is a result: provenance says `synthetic`, and the curves are
    y(epoch) = random + (reference - random) * skill * (1 - exp(-epoch / tau)) + noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from dapbench.results.store import RunStore, Status
from dapbench.suite import EvalConfig, RunSpec

SYNTHETIC_COMMIT = "synthetic0000"


def write_run(root: Path, task: str, label: str, seed: int, returns: Sequence[float], *, algorithm: str | None = None,
              steps_per_epoch: int = 5000, epochs: int | None = None, wall_clock_s: float = 100.0,
              peak_rss_mb: float = 500.0, extra: Mapping[str, Sequence[float]] | None = None,
              state: str = "done", eval_every: int = 1, eval_s: float = 0.0,
              horizon_steps: int | None = 1_000_000) -> Path:
    """One run folder under `root` whose evaluations are `returns` (one per epoch; NaN = not evaluated).

    `epochs` planned (default: len(returns)); a `state` other than done leaves the run incomplete.
    `wall_clock_s` is the run's total, spread evenly over its epochs, `eval_s` of it spent evaluating (the
    rest is training: `time_train_s`, and as much CPU time); `extra` adds per-epoch columns (e.g. audit
    metrics). `horizon_steps`: the schedules' horizon (the protocol's 1.0M by default; None: the budget).
    """
    n = len(returns)
    planned = epochs or n
    total = planned * steps_per_epoch
    spec = RunSpec(task=task, algorithm=algorithm or label, label=label, seed=seed,
                   total_steps=total, steps_per_epoch=steps_per_epoch,
                   evaluation=EvalConfig(episodes=10, every=eval_every), config={},
                   horizon_steps=horizon_steps if horizon_steps and horizon_steps >= total else None)
    store = RunStore(root / spec.relpath())
    store.init(spec)
    store.add_provenance({"started": "2026-01-01T00:00:00+00:00", "code": {"commit": SYNTHETIC_COMMIT, "dirty": False},
                          "python": "3.11", "packages": {"dapbench": "synthetic", "torch": "-", "gymnasium": "-",
                                                         "mujoco": "-"},
                          "device": "cpu", "cpu": "synthetic", "gpu": None, "hostname": "synthetic"})
    y = np.asarray(returns, float)
    rows = []
    for i in range(n):
        row = {"epoch": i + 1, "epochs": planned, "env_steps": (i + 1) * steps_per_epoch,
               "train_return_mean": y[i], "eval_return_mean": y[i], "eval_return_std": 1.0,
               "wall_clock_s": wall_clock_s * (i + 1) / planned, "peak_rss_mb": peak_rss_mb,
               "time_eval_s": eval_s / planned, "time_train_s": (wall_clock_s - eval_s) / planned,
               "cpu_train_s": (wall_clock_s - eval_s) / planned, "cuda_peak_mb": float("nan")}
        for k, v in (extra or {}).items():
            row[k] = float(v[i])
        rows.append(row)
    if rows:
        store.write_metrics(rows)
    err = "TrainingError: synthetic failure" if state == "failed" else None
    store.write_status(Status(state=state, epoch=n, epochs=planned, error=err))
    return store.dir


def curve(random: float, reference: float, skill: float, epochs: int, rng: np.random.Generator,
          tau: float = 30.0, noise: float = 0.05) -> np.ndarray:
    """A learning curve rising from `random` toward random + skill * (reference - random)."""
    e = np.arange(1, epochs + 1)
    scale = reference - random
    return random + scale * (skill * (1 - np.exp(-e / tau)) + noise * rng.standard_normal(epochs))


def write_grid(root: Path, tasks: Sequence[str], labels: Sequence[str], seeds: Sequence[int], epochs: int,
               seed: int = 0, audit_labels: Sequence[str] = ("ppo-dap",)) -> None:
    """A full grid of done runs on the normalisation table's scale (made-up scales for tasks without a reference):
    label i has skill 0.5 + 0.1 i, costs (1 + 0.2 i)x the first label's wall-clock
    and (1 + 0.05 i)x its memory; `audit_labels` log audit metrics (OGLR and SPR 0, ESS/K near 1)."""
    from dapbench.analysis.normalise import load_table

    table = load_table()
    rng = np.random.default_rng(seed)
    for t_i, task in enumerate(tasks):
        norm = table.tasks.get(task)
        random, reference = ((norm.random_return, norm.reference_return) if norm and norm.usable
                             else (-50.0 * (t_i + 1), 1000.0 * (t_i + 1)))
        for a_i, label in enumerate(labels):
            for s in seeds:
                ys = curve(random, reference, 0.5 + 0.1 * a_i, epochs, rng)
                extra = None
                if label in audit_labels:
                    extra = {"oglr": np.zeros(epochs), "spr": np.zeros(epochs),
                             "ess_k": 1 - 0.01 * rng.random(epochs), "aux_grad_share": 0.1 + 0.01 * rng.random(epochs)}
                write_run(root, task, label, s, ys, wall_clock_s=100.0 * (1 + 0.2 * a_i) * (1 + 0.01 * s),
                          peak_rss_mb=500.0 * (1 + 0.05 * a_i), extra=extra)
