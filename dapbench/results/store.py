"""The run folder: `results/<suite>/<task>/<label>/seed_<k>/`.

    spec.yaml         the resolved RunSpec and its hash
    status.json       state (pending | running | done | failed), last epoch, error
    provenance.json   one entry per attempt (code version, packages, machine, Slurm job)
    metrics.parquet   the per-epoch table
    checkpoint.pt     everything needed to resume (see the trainer)
    snapshots/        policy snapshots every `snapshot_every` epochs, when the spec asks for them
    run.log           the run's log lines

Every file is written atomically; a spec that differs from the one already in the folder is an error.
The checkpoint is the source of truth: it holds the metric rows up to its epoch, and `metrics.parquet`
is rewritten from it, so a kill between the two writes loses nothing.
"""

from __future__ import annotations

import fcntl
import io
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
from pydantic import BaseModel, ValidationError

from dapbench.config import RunSpec
from dapbench.errors import RunFolderError
from dapbench.results.atomic import atomic_write, atomic_write_text

State = Literal["pending", "running", "done", "failed"]
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser: ~10x faster, same result


class Status(BaseModel):
    state: State = "pending"
    epoch: int = 0  # epochs completed
    epochs: int = 0  # epochs planned
    error: str | None = None
    updated: str | None = None
    hostname: str | None = None
    pid: int | None = None


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
        self.dir.mkdir(parents=True, exist_ok=True)
        body = {"hash": spec.hash, "spec": spec.model_dump(mode="json")}
        atomic_write_text(self.spec_path, yaml.safe_dump(body, sort_keys=False))
        if not self.status_path.exists():
            self.write_status(Status(epochs=spec.epochs))

    def read_spec(self) -> RunSpec:
        try:
            body = yaml.load(self.spec_path.read_text(), Loader=_SafeLoader)
            spec = RunSpec.model_validate(body["spec"])
        except FileNotFoundError:
            raise RunFolderError(f"{self.spec_path}: missing; {self.dir} is not a run folder") from None
        except (yaml.YAMLError, KeyError, TypeError, ValidationError) as e:
            raise RunFolderError(f"{self.spec_path}: corrupt spec ({type(e).__name__}: {e})".strip()) from None
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
            return Status.model_validate_json(self.status_path.read_text())
        except (ValidationError, ValueError) as e:
            raise RunFolderError(f"{self.status_path}: corrupt status file ({e})") from None

    def write_status(self, status: Status) -> None:
        status.updated = datetime.now(UTC).isoformat(timespec="seconds")
        atomic_write_text(self.status_path, status.model_dump_json(indent=2) + "\n")

    def add_provenance(self, entry: dict[str, Any]) -> None:
        attempts = json.loads(self.provenance_path.read_text()) if self.provenance_path.exists() else []
        attempts.append(entry)
        atomic_write_text(self.provenance_path, json.dumps(attempts, indent=2) + "\n")

    def read_provenance(self) -> list[dict[str, Any]]:
        """One entry per attempt (start or resume), oldest first; [] when the run never started."""
        if not self.provenance_path.exists():
            return []
        try:
            return json.loads(self.provenance_path.read_text())
        except ValueError as e:
            raise RunFolderError(f"{self.provenance_path}: corrupt provenance ({e})") from None

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

    def snapshot_path(self, epoch: int) -> Path:
        return self.dir / "snapshots" / f"policy_epoch_{epoch:04d}.pt"

    def save_snapshot(self, epoch: int, policy_state: dict[str, Any]) -> None:
        """Keep the policy of `epoch` (only what acting needs), e.g. for behaviour policies of datasets."""
        buf = io.BytesIO()
        torch.save(policy_state, buf)
        atomic_write(self.snapshot_path(epoch), lambda f: f.write(buf.getbuffer()))

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write(self.checkpoint_path, lambda f: f.write(buf.getbuffer()))

    def load_checkpoint(self) -> dict[str, Any] | None:
        if not self.checkpoint_path.exists():
            return None
        try:
            return torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise RunFolderError(
                f"{self.checkpoint_path}: corrupt checkpoint ({type(e).__name__}: {e}); delete it to restart "
                "the run from scratch"
            ) from None

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the run folder (released by the OS if the process dies)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunLocked(f"{self.dir}: another process is running this run") from None
            yield
        finally:
            os.close(fd)


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
        return out
    return [] if a == b else [f"{prefix} ({a!r} -> {b!r})"]
