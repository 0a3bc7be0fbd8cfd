"""The run folder: `results/<suite>/<task>/<label>/seed_<k>/`.

    spec.yaml         the resolved RunSpec and its hash
    status.json       state (pending | running | done | failed), last epoch, error
    provenance.json   one entry per attempt (code version, packages, machine, Slurm job)
    metrics.parquet   the per-epoch table
    checkpoint.pt     everything needed to resume (see the trainer)
    snapshots/        policy snapshots every `snapshot_every` epochs, when the spec asks for them
    run.log           the run's log lines

Every file is written atomically (mode 0666 less the umask); a spec that differs from the one already in the
folder is an error. The checkpoint is the source of truth: it holds the metric rows up to its epoch, and
`metrics.parquet` is rewritten from it, so a kill between the two writes loses nothing. Checkpoints and
snapshots are loaded as data only (`load_torch`): a run folder from someone else cannot run code.

A run marked `running` whose process is gone (killed, its machine rebooted) is `interrupted`: on the machine
that ran it, its pid no longer exists or nobody holds the folder's lock. `run` resumes it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
import yaml
from filelock import FileLock, Timeout
from pydantic import BaseModel, ValidationError

from dapbench.errors import RunFolderError
from dapbench.results.atomic import atomic_write, atomic_write_text, load_torch
from dapbench.suite import RunSpec, one_line_errors

State = Literal["pending", "running", "done", "failed"]
STATES = ("pending", "running", "done", "failed")
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser: ~10x faster, same result


class Status(BaseModel):
    state: State = "pending"
    epoch: int = 0  # epochs completed
    epochs: int = 0  # epochs planned
    error: str | None = None
    updated: str | None = None
    hostname: str | None = None
    pid: int | None = None


LOCK_FILE = ".lock"  # the run folder's lock (flock through filelock: the OS releases it when its process dies)


class RunLocked(RunFolderError):
    """Another live process holds the run folder."""


class RunStore:
    def __init__(self, run_dir: str | Path) -> None:
        self.dir = Path(run_dir)
        self.spec_path = self.dir / "spec.yaml"
        self.status_path = self.dir / "status.json"
        self.provenance_path = self.dir / "provenance.json"
        self.metrics_path = self.dir / "metrics.parquet"
        self.checkpoint_path = self.dir / "checkpoint.pt"
        self.log_path = self.dir / "run.log"

    # ----- spec -----
    def init(self, spec: RunSpec) -> None:
        """Create the folder with `spec`, or check that the folder already holds the same spec."""
        if self.spec_path.exists():
            old = self.read_spec()
            if old.hash != spec.hash and spec.extends(old):  # a longer budget, same horizon: resume, then go on
                body = {"hash": spec.hash, "spec": spec.model_dump(mode="json")}
                atomic_write_text(self.spec_path, yaml.safe_dump(body, sort_keys=False))
                st = self.status()
                self.write_status(Status(state="pending" if st.state == "done" else st.state, epoch=st.epoch,
                                         epochs=spec.epochs, error=st.error))
                return
            if old.hash != spec.hash:
                a, b = old.model_dump(mode="json"), spec.model_dump(mode="json")
                diff = _diff(a, b)
                raise RunFolderError(
                    f"{self.spec_path}: this run folder holds a different spec (hash {old.hash}, new {spec.hash}); "
                    f"differing fields: {', '.join(diff)}. Nothing was overwritten: use another results folder "
                    "(--results) or delete this run folder to start it afresh."
                )
            return
        self._mkdir()
        body = {"hash": spec.hash, "spec": spec.model_dump(mode="json")}
        atomic_write_text(self.spec_path, yaml.safe_dump(body, sort_keys=False))
        if not self.status_path.exists():
            self.write_status(Status(epochs=spec.epochs))

    def _mkdir(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a file where a folder of the path should be, no permission, ...
            raise RunFolderError(f"{self.dir}: cannot make the run folder ({e.strerror or e}: {e.filename or ''})"
                                 ) from None

    def read_spec(self) -> RunSpec:
        try:
            body = yaml.load(self.spec_path.read_text(encoding="utf-8"), Loader=_SafeLoader)
            spec = RunSpec.model_validate(body["spec"])
        except FileNotFoundError:
            raise RunFolderError(f"{self.spec_path}: missing; {self.dir} is not a run folder") from None
        except ValidationError as e:
            raise RunFolderError(f"{self.spec_path}: corrupt spec ({one_line_errors(e)})") from None
        except (yaml.YAMLError, KeyError, TypeError, ValueError) as e:  # ValueError: not UTF-8
            raise RunFolderError(f"{self.spec_path}: corrupt spec ({type(e).__name__}: "
                                 f"{' '.join(str(e).split())})") from None
        except OSError as e:
            raise RunFolderError(f"{self.spec_path}: cannot read the spec ({e.strerror or e})") from None
        if body.get("hash") != spec.hash:
            raise RunFolderError(
                f"{self.spec_path}: stored hash {body.get('hash')} does not match its spec ({spec.hash}); "
                "the file was edited by hand"
            )
        return spec

    # ----- status -----
    def status(self) -> Status:
        if not self.status_path.exists():
            return Status()
        try:
            raw = self.status_path.read_bytes()
            body = json.loads(raw)
        except OSError as e:
            raise RunFolderError(f"{self.status_path}: cannot read the status file ({e.strerror or e})") from None
        except ValueError as e:  # not JSON, not UTF-8, cut short
            raise RunFolderError(f"{self.status_path}: corrupt status file (not JSON: {e}); delete it to mark "
                                 "the run pending") from None
        if isinstance(body, dict) and isinstance(body.get("state"), str) and body["state"] not in STATES:
            raise RunFolderError(f"{self.status_path}: unknown state {body['state']!r} (this dapbench knows "
                                 f"{', '.join(STATES)}); a newer dapbench may have written it: use that one, or "
                                 "delete the file to mark the run pending")
        try:
            return Status.model_validate(body)
        except ValidationError as e:
            raise RunFolderError(f"{self.status_path}: corrupt status file ({one_line_errors(e)}); delete it to mark "
                                 "the run pending") from None

    def interrupted(self, status: Status | None = None) -> bool:
        """Whether a run marked running has lost its process (killed, its machine rebooted), so that `run`
        resumes it. Decided only on the machine that ran it: its pid is gone, or nobody holds the folder's lock.
        A run marked running by another machine is taken at its word (its lock may be invisible from here)."""
        st = status or self.status()
        if st.state != "running" or (st.hostname and st.hostname != os.uname().nodename):
            return False
        if st.pid is not None and not _pid_alive(st.pid):
            return True
        return not self._locked()

    def _locked(self) -> bool:
        """Whether a process holds the run folder's lock (tested by taking it for an instant; creates nothing)."""
        path = self.dir / LOCK_FILE
        if not path.exists():
            return False  # never locked: nothing trains it
        probe = FileLock(path)
        try:
            probe.acquire(blocking=False)
        except OSError:  # filelock's Timeout (held), or cannot tell: assume the run is alive
            return True
        probe.release()
        return False

    def write_status(self, status: Status) -> None:
        status.updated = datetime.now(UTC).isoformat(timespec="seconds")
        atomic_write_text(self.status_path, status.model_dump_json(indent=2) + "\n")

    def add_provenance(self, entry: dict[str, Any]) -> None:
        attempts = self.read_provenance()
        attempts.append(entry)
        atomic_write_text(self.provenance_path, json.dumps(attempts, indent=2) + "\n")

    def read_provenance(self) -> list[dict[str, Any]]:
        """One entry per attempt (start or resume), oldest first; [] when the run never started."""
        if not self.provenance_path.exists():
            return []
        try:
            attempts = json.loads(self.provenance_path.read_bytes())
        except OSError as e:
            raise RunFolderError(f"{self.provenance_path}: cannot read the provenance ({e.strerror or e})") from None
        except ValueError as e:
            raise RunFolderError(f"{self.provenance_path}: corrupt provenance ({e})") from None
        if not isinstance(attempts, list) or not all(isinstance(a, dict) for a in attempts):
            raise RunFolderError(f"{self.provenance_path}: corrupt provenance (not a list of attempts)")
        return attempts

    # ----- metrics and checkpoints -----
    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        df = pd.DataFrame(rows)
        atomic_write(self.metrics_path, lambda f: df.to_parquet(f, index=False))

    def read_metrics(self) -> pd.DataFrame:
        try:
            return pd.read_parquet(self.metrics_path)
        except FileNotFoundError:
            raise RunFolderError(f"{self.metrics_path}: missing (the run has not finished an epoch)") from None
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise RunFolderError(f"{self.metrics_path}: corrupt metrics table ({type(e).__name__}: {e})") from None

    def progress(self, epochs: int) -> tuple[float, float]:
        """(the latest evaluation return, seconds left at the mean epoch time so far) from the table; NaN where the
        table does not say (no epoch yet, no evaluation, or unreadable: `status` must not fail on it)."""
        try:
            df = pd.read_parquet(self.metrics_path, columns=None)
        except Exception:
            return float("nan"), float("nan")
        ev = df["eval_return_mean"].dropna() if "eval_return_mean" in df else pd.Series(dtype=float)
        per_epoch = float(df["time_epoch_s"].mean()) if "time_epoch_s" in df and len(df) else float("nan")
        left = max(0, epochs - self.epochs_kept(len(df), epochs)) * per_epoch
        return (float(ev.iloc[-1]) if len(ev) else float("nan")), left

    def epoch_costs(self) -> tuple[int, float, float]:
        """(epochs in the table, CPU seconds of its first epoch, mean CPU seconds of the later ones), CPU seconds
        being training plus evaluation; the first epoch apart because it holds any offline stage (DTQL's). (0, NaN,
        NaN) when the table is missing or unreadable; NaN costs where it predates the CPU-time columns."""
        try:
            df = pd.read_parquet(self.metrics_path)
        except Exception:
            return 0, float("nan"), float("nan")
        if "cpu_train_s" not in df or not len(df):
            return len(df), float("nan"), float("nan")
        cpu = df["cpu_train_s"] + (df["cpu_eval_s"].fillna(0.0) if "cpu_eval_s" in df else 0.0)
        later = cpu.iloc[1:].dropna()
        return len(df), float(cpu.iloc[0]), float(later.mean()) if len(later) else float("nan")

    def epochs_kept(self, recorded: int, epochs: int) -> int:
        """Of the `recorded` epochs in the table, those a run of `epochs` epochs will not run again: all of them when
        it is complete or resumable from its checkpoint, none without a checkpoint (it starts again from epoch 0)."""
        return recorded if recorded >= epochs or self.checkpoint_path.exists() else 0

    def snapshot_path(self, epoch: int) -> Path:
        return self.dir / "snapshots" / f"policy_epoch_{epoch:04d}.pt"

    def save_snapshot(self, epoch: int, policy_state: dict[str, Any]) -> None:
        """Keep the policy of `epoch` (only what acting needs), e.g. for behaviour policies of datasets."""
        atomic_write(self.snapshot_path(epoch), lambda f: torch.save(policy_state, f))

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        atomic_write(self.checkpoint_path, lambda f: torch.save(state, f))  # streamed: no in-memory copy of it

    def load_checkpoint(self) -> dict[str, Any] | None:
        if not self.checkpoint_path.exists():
            return None
        remedy = "delete it to restart the run from scratch"
        ckpt = load_torch(self.checkpoint_path, "checkpoint", remedy)
        if not isinstance(ckpt, dict):
            raise RunFolderError(f"{self.checkpoint_path}: corrupt checkpoint (a {type(ckpt).__name__}, not a "
                                 f"checkpoint); {remedy}")
        return ckpt

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the run folder (released by the OS if the process dies); RunLocked at once,
        without waiting, when another process holds it."""
        self._mkdir()
        lock = FileLock(self.dir / LOCK_FILE)
        try:
            lock.acquire(blocking=False)
        except Timeout:
            raise RunLocked(f"{self.dir}: another process is running this run") from None
        try:
            yield
        finally:
            lock.release()


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a process id (0 and -1 would ask about groups): do not guess
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process (or a pid this system cannot have: do not guess)
    return True


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
        return out
    return [] if a == b else [f"{prefix} ({a!r} -> {b!r})"]
