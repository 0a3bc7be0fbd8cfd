"""Launchers take run folders (each already holding its spec) and execute them.

- `debug`: one after another in this process (a progress bar per run on a terminal).
- `local`: a pool of at most `jobs` worker processes, one fresh process per run (so each run's peak
  memory is its own), started with `spawn`. The parent shows overall progress from the runs' status files.
Each job is handed only its run folder path; it reads its spec from disk.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import sys
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from dapbench.errors import RunFolderError
from dapbench.results.store import RunStore
from dapbench.training.trainer import RunOutcome, execute

Report = Callable[[RunOutcome], None]


def _debug(run_dirs: list[Path], jobs: int, report: Report) -> list[RunOutcome]:
    out = []
    for d in run_dirs:
        outcome = execute(d, progress=sys.stderr.isatty())
        report(outcome)
        out.append(outcome)
    return out


def _worker(run_dir: str) -> RunOutcome:
    return execute(run_dir, progress=False, echo=False)


def _epochs_done(run_dirs: list[Path]) -> int:
    total = 0
    for d in run_dirs:
        with contextlib.suppress(RunFolderError):  # a status file being replaced right now
            total += RunStore(d).status().epoch
    return total


def _local(run_dirs: list[Path], jobs: int, report: Report) -> list[RunOutcome]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    total = sum(RunStore(d).read_spec().epochs for d in run_dirs)
    bar = None
    if sys.stderr.isatty():
        bar = Progress(TextColumn("epochs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       transient=True)
        task = bar.add_task("epochs", total=total, completed=_epochs_done(run_dirs))
        bar.start()
    out: list[RunOutcome] = []
    ctx = mp.get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, max_tasks_per_child=1) as pool:
            pending = {pool.submit(_worker, str(d)): d for d in run_dirs}
            while pending:
                done, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for fut in done:
                    d = pending.pop(fut)
                    try:
                        outcome = fut.result()
                    except Exception as e:  # the worker process itself died
                        outcome = RunOutcome(str(d), "failed", RunStore(d).status().epoch,
                                             f"worker process died: {type(e).__name__}: {e}")
                    report(outcome)
                    out.append(outcome)
                if bar is not None:
                    bar.update(task, completed=_epochs_done(run_dirs))
    finally:
        if bar is not None:
            bar.stop()
    return out


LAUNCHERS = {"debug": _debug, "local": _local}


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def launch(name: str, run_dirs: list[Path], jobs: int | None, report: Report) -> list[RunOutcome]:
    return LAUNCHERS[name](run_dirs, jobs or default_jobs(), report)
