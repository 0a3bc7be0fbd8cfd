"""`dapbench reproduce RUN_DIR`: re-execute a finished run from its stored spec and compare the tables.

Contract: the run is re-executed in a scratch folder from `spec.yaml` alone (same seed, config, dataset,
prior), and the new per-epoch table is compared with the stored one, every column except the machine-
dependent timing ones (`timing_columns`). On the same software stack (the packages, Python and CPU in the
stored provenance equal this machine's) the tables must be bit-identical; elsewhere a per-metric
comparison within `rtol` is shown, since float results may legitimately differ across stacks. The algorithm's
code is part of the stack: a plug-in's (or dapbench's own algorithms') distribution version, git commit, dirty
flag and source hash in the stored provenance are compared with this machine's, and a change is named
("algorithm code changed: plugin X 0.1 -> 0.2").
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dapbench.errors import RunFolderError
from dapbench.registry import get_algorithm
from dapbench.results.columns import timing_columns
from dapbench.results.provenance import algorithm_changes, recorded_algorithm
from dapbench.results.store import RunStore
from dapbench.training.trainer import execute

STACK_KEYS = ("python", "packages", "torch_cuda", "cpu", "gpu", "device")


@dataclass
class ColumnDiff:
    column: str
    first_epoch: int  # the first epoch whose values differ
    n_epochs: int  # how many epochs differ
    stored: float
    new: float
    max_abs: float
    max_rel: float


@dataclass
class Reproduction:
    run_dir: Path
    same_stack: bool
    stack_changes: list[str]
    compared: list[str]
    diffs: list[ColumnDiff] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # stored columns the new table lacks (or row counts)
    added: list[str] = field(default_factory=list)  # columns the current code logs and the stored run did not
    rtol: float = 0.0

    @property
    def bit_identical(self) -> bool:
        return not self.diffs and not self.missing

    @property
    def reproduces(self) -> bool:
        if self.missing:
            return False
        if self.same_stack:
            return not self.diffs
        return all(d.max_rel <= self.rtol for d in self.diffs)


def _stack(prov: dict) -> dict:
    return {k: prov.get(k) for k in STACK_KEYS}


def stack_changes(stored: dict, current: dict) -> list[str]:
    """Human-readable differences between two software stacks (provenance entries), the algorithm's code first."""
    a, b = _stack(stored), _stack(current)
    out = algorithm_changes(stored.get("algorithm"), current.get("algorithm"))
    for k in STACK_KEYS:
        if k == "packages":
            pa, pb = a[k] or {}, b[k] or {}
            out += [f"{p} {pa.get(p)} -> {pb.get(p)}" for p in sorted(set(pa) | set(pb))
                    if p != "dapbench" and pa.get(p) != pb.get(p)]
        elif a[k] != b[k]:
            out.append(f"{k} {a[k]} -> {b[k]}")
    return out


def compare_tables(stored: pd.DataFrame, new: pd.DataFrame, allow_new_columns: bool = False
                   ) -> tuple[list[str], list[ColumnDiff], list[str]]:
    """Compare every non-timing column value by value (NaN equals NaN). Returns (compared, diffs, missing).

    `allow_new_columns`: a column only in `new` (a metric the current code logs and the stored run's code did
    not) is not a mismatch; every stored column must still be there and equal."""
    skip = set(timing_columns(stored.columns)) | set(timing_columns(new.columns))
    cols_a, cols_b = [c for c in stored.columns if c not in skip], [c for c in new.columns if c not in skip]
    missing = sorted(set(cols_a) - set(cols_b)) if allow_new_columns else sorted(set(cols_a) ^ set(cols_b))
    if len(stored) != len(new):
        missing.append(f"rows: stored {len(stored)}, new {len(new)}")
    compared = [c for c in cols_a if c in set(cols_b)]
    n = min(len(stored), len(new))
    epochs = stored["epoch"].to_numpy()[:n] if "epoch" in stored else np.arange(1, n + 1)
    diffs = []
    for c in compared:
        a, b = stored[c].to_numpy()[:n], new[c].to_numpy()[:n]
        if a.dtype.kind in "fiub" and b.dtype.kind in "fiub":
            a, b = a.astype(np.float64), b.astype(np.float64)
            differ = ~((a == b) | (np.isnan(a) & np.isnan(b)))
        else:
            differ = np.array([x != y for x, y in zip(a, b, strict=True)], dtype=bool)
        if not differ.any():
            continue
        i = int(np.argmax(differ))
        if a.dtype.kind == "f" and b.dtype.kind == "f":
            absd = np.abs(a - b)[differ]
            reld = absd / np.maximum(np.abs(a[differ]), 1e-12)
            max_abs = float(np.nanmax(absd)) if np.isfinite(absd).any() else float("inf")
            max_rel = float(np.nanmax(reld)) if np.isfinite(reld).any() else float("inf")
            sa, sb = float(a[i]), float(b[i])
        else:
            max_abs = max_rel = float("inf")
            sa, sb = a[i], b[i]
        diffs.append(ColumnDiff(c, int(epochs[i]), int(differ.sum()), sa, sb, max_abs, max_rel))
    return compared, diffs, missing


def reproduce(run_dir: str | Path, scratch: str | Path | None = None, rtol: float = 0.0,
              keep: bool = False) -> Reproduction:
    """Re-execute a finished run from its spec in a scratch folder and compare its table with the stored one."""
    store = RunStore(run_dir)
    if not (store.dir / "spec.yaml").exists():
        raise RunFolderError(f"{store.dir}: not a run folder (no spec.yaml)")
    spec = store.read_spec()
    status = store.status()
    if status.state != "done":
        raise RunFolderError(f"{store.dir}: the run is '{status.state}' (epoch {status.epoch}/{status.epochs}); "
                             "only a finished run can be reproduced")
    stored = store.read_metrics()
    attempts = store.read_provenance()
    get_algorithm(spec.algorithm, recorded=recorded_algorithm(attempts))  # an uninstalled plug-in: named here
    base = Path(scratch) if scratch else Path(tempfile.mkdtemp(prefix="dapbench-reproduce-"))
    new_store = RunStore(base / "run")
    if new_store.dir.exists():
        shutil.rmtree(new_store.dir)
    try:
        new_store.init(spec)
        outcome = execute(new_store.dir, progress=False, echo=False)
        if outcome.state != "done":
            raise RunFolderError(f"{store.dir}: the re-execution in {new_store.dir} ended '{outcome.state}': "
                                 f"{outcome.error}")
        new = new_store.read_metrics()
        now = new_store.read_provenance()
        changes = list(dict.fromkeys(c for a in attempts for c in stack_changes(a, now[-1] if now else {})))
    finally:
        if not keep and scratch is None:
            shutil.rmtree(base, ignore_errors=True)
    compared, diffs, missing = compare_tables(stored, new, allow_new_columns=True)
    added = sorted(set(new.columns) - set(stored.columns) - set(timing_columns(new.columns)))
    return Reproduction(store.dir, not changes, changes, compared, diffs, missing, added, rtol)
