"""The slurm launcher: a suite's pending runs as Slurm job arrays, through submitit (docs/slurm.md).

One submission:
1. checks every job's resources with `sbatch --test-only` before anything is written, so a request the
   cluster cannot give fails with nothing created;
2. takes the results folder's submission lock (`<results>/.slurm/submit.lock`): two `run`s at once submit
   one after the other, and the second finds the first one's jobs;
3. skips runs whose last job is still queued or running (`slurm.json` in each run folder names it), and
   says which of those jobs Slurm holds (they wait for `scontrol release`);
4. snapshots the code (the packages `dapbench` and `algorithms`) under `<results>/.slurm/code/<hash>/`;
   every job imports from its snapshot, a requeued one too;
5. submits the preparation first, one job each: missing datasets, then the algorithms' shared work
   (e.g. a prior to pre-train, `Algorithm.shared_work`), after the dataset it needs;
6. submits one array per distinct resource request (per-task and per-algorithm overrides), split into
   several where it has more tasks than the cluster's MaxArraySize, at most `parallelism` tasks at once,
   after the preparation (`afterok`; `kill-on-invalid-dep` cancels it if the preparation fails). Each
   array task gets its run folders' paths: one, or `runs_per_job` run side by side, one process each;
7. prunes `.slurm/`: code snapshots and submitit's pickles and scripts that no run record names and no
   live job needs.

Jobs are `submitit.helpers.Checkpointable`: on preemption or at their time limit submitit calls
`checkpoint`, which requeues the same call, and the runs resume from their last epoch checkpoint. On
SIGTERM (`scancel`, `scontrol requeue`, a preemption without the warning signal) a job stops at once:
its runs keep their last epoch checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from submitit.helpers import Checkpointable

from dapbench.errors import BadInputError, RunFolderError, TrainingError
from dapbench.launch import scheduler
from dapbench.launch.scheduler import JobState, SlurmError
from dapbench.results.atomic import atomic_write_text
from dapbench.results.provenance import SNAPSHOT_FILE, code_version
from dapbench.results.store import RunLocked, RunStore, Status
from dapbench.suite import DatasetEntry, RunSpec, SlurmResources, Suite, slurm_resources

SUBMIT_FOLDER = ".slurm"  # under the results folder: submitit's files and logs, code snapshots, preparation
RECORD = "slurm.json"  # in a run folder: the run's latest job
LOCK = "submit.lock"  # in SUBMIT_FOLDER: one submission at a time per results folder
LOCK_WAIT_S = 900  # how long a submission waits for another one to finish
PACKAGES = ("dapbench", "algorithms")
TERM_GRACE_S = 3.0  # after SIGTERM, how long a job waits for submitit's USR2 (a preemption) before it exits
STOP_S = 10.0  # how long a packed job gives its runs to exit before it kills them


class SlurmRefused(BadInputError):
    """The cluster refused a request (resources it cannot give, a bad partition or account, ...)."""


# ----- the jobs ---------------------------------------------------------------------------------------
_CHILDREN: list[subprocess.Popen] = []  # a packed job's run processes (not pickled with the job)


def _job_log(msg: str) -> None:
    print(f"dapbench: {msg}", file=sys.stderr, flush=True)


def _exit_on_sigterm() -> None:
    """Stop at once on SIGTERM, which submitit ignores (so a cancelled or requeued job trained on for Slurm's
    KillWait, 30 s, and lost that work anyway). The runs keep their last epoch checkpoint. submitit's own
    preemption path sends SIGTERM and then its USR2: when USR2 follows within TERM_GRACE_S, submitit's
    handler runs (checkpoint, requeue, exit) as before. Each handler runs once: a requeue sends SIGTERM
    again, and Slurm may deliver a signal twice."""
    from submitit.slurm.slurm import SlurmJobEnvironment

    usr = SlurmJobEnvironment._usr_sig()
    submitit_handler = signal.getsignal(usr)

    def on_usr(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # we are leaving: the requeue's SIGTERM changes nothing
        signal.signal(usr, signal.SIG_IGN)
        if callable(submitit_handler):
            submitit_handler(signum, frame)  # checkpoint (stops a pack's runs), requeue, exit

    def on_term(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {usr})
        try:
            got = signal.sigtimedwait({usr}, TERM_GRACE_S)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {usr})
        if got is not None and signal.getsignal(usr) is on_usr:
            on_usr(usr, frame)
        signal.signal(usr, signal.SIG_IGN)
        _job_log("SIGTERM: stopping now; the runs resume from their last epoch checkpoint")
        _stop_children()
        sys.exit(128 + signal.SIGTERM)

    signal.signal(usr, on_usr)
    signal.signal(signal.SIGTERM, on_term)


def _stop_children() -> None:
    # poll, never wait(): this runs in signal handlers, which may interrupt the job's own poll
    alive = [p for p in _CHILDREN if p.poll() is None]
    for p in alive:
        with contextlib.suppress(OSError):
            p.terminate()
    deadline = time.monotonic() + STOP_S
    while any(p.poll() is None for p in alive) and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in alive:
        if p.poll() is None:
            p.kill()


def _cancel_if_orphaned(parent: int) -> None:
    """If the job step's slurmstepd died while the runs trained (the process was re-parented), Slurm never
    learns that the step ended and keeps the job RUNNING, holding its resources, until its time limit:
    the runs are over, so cancel the job."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    job = f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")  # scancel wants A_i for a task
    if job and os.getppid() != parent:
        _job_log(f"this job step's parent process ({parent}, slurmstepd) is gone; Slurm would keep job {job} "
                 "RUNNING until its time limit: cancelling it (its runs are over)")
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(["scancel", job], timeout=scheduler.TIMEOUT_S, check=False)


class TrainJob(Checkpointable):
    """An array task: run (or resume) the run in `run_dir`, or the runs of a pack (a list of run folders)
    side by side, one process each. A failed run fails the task with its error; a run that ends without
    finishing (its process killed) fails it too, so that `status` says so."""

    def __call__(self, run_dirs: str | list[str]) -> str:
        parent = os.getppid()
        _exit_on_sigterm()
        dirs = [run_dirs] if isinstance(run_dirs, str) else list(run_dirs)
        try:
            if len(dirs) == 1:
                from dapbench.training.trainer import execute

                o = execute(dirs[0])
                outcomes = {dirs[0]: (o.state, o.epoch, o.error)}
            else:
                outcomes = _run_pack(dirs)
        finally:
            _cancel_if_orphaned(parent)
        bad = {d: o for d, o in outcomes.items() if o[0] != "done"}
        if bad:
            raise TrainingError("; ".join(f"{d} {state} at epoch {epoch}" + (f": {err}" if err else "")
                                          for d, (state, epoch, err) in bad.items()))
        return "done"

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        _stop_children()  # a packed job's runs stop at their last epoch checkpoint; the requeued job resumes them
        return super().checkpoint(*args, **kwargs)


def _run_pack(dirs: list[str]) -> dict[str, tuple[str, int, str | None]]:
    """Run the runs in `dirs` at once, one process each (`python -m dapbench.launch.slurm RUN_DIR`); their
    (state, epoch, error) once all have ended."""
    _CHILDREN.clear()
    try:
        for d in dirs:
            _CHILDREN.append(subprocess.Popen([sys.executable, "-m", "dapbench.launch.slurm", d]))
        while any(p.poll() is None for p in _CHILDREN):  # poll: a blocking wait() would hold the lock that a
            time.sleep(0.5)  # signal handler's _stop_children needs
        codes = [p.returncode for p in _CHILDREN]
    finally:
        _stop_children()
    out = {}
    for d, code in zip(dirs, codes, strict=True):
        try:
            st = RunStore(d).status()
        except RunFolderError as e:
            out[d] = ("failed", 0, str(e))
            continue
        if code == 0 and st.state == "done":
            out[d] = ("done", st.epoch, None)
        elif st.state == "failed":
            out[d] = ("failed", st.epoch, st.error)
        else:
            why = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            out[d] = ("interrupted", st.epoch, f"its process ended ({why}) before the run finished")
    return out


def _pack_worker(run_dir: str) -> int:
    """One run of a packed job, in its own process. The job's main process handles submitit's USR2
    (checkpoint and requeue) and stops this one; SIGTERM stops it at once."""
    from submitit.slurm.slurm import SlurmJobEnvironment

    from dapbench.training.trainer import execute

    def on_term(signum: int, frame: Any) -> None:
        # at once, without unwinding (an interpreter with torch takes seconds to tear down under load): the
        # kernel releases the run's lock, and every file of the run is written atomically
        os.write(2, f"[{run_dir}] SIGTERM: stopped; the run resumes from its last epoch checkpoint\n".encode())
        os._exit(128 + signal.SIGTERM)

    signal.signal(SlurmJobEnvironment._usr_sig(), signal.SIG_IGN)
    signal.signal(signal.SIGTERM, on_term)
    outcome = execute(run_dir)
    return {"done": 0, "failed": 1}.get(outcome.state, 3)


class MakeDataset(Checkpointable):
    """Make a dataset the suite lists (`dapbench data make`); its behaviour run resumes after a requeue."""

    def __call__(self, request: dict[str, Any]) -> str:
        from dapbench.data.make import MakeRequest, make

        _exit_on_sigterm()
        return make(MakeRequest(**request))


class SharedWork(Checkpointable):
    """Build the algorithm of the run in `run_dir` once, which does the work its runs share (e.g. trains
    and caches the prior), so that the array's tasks find it done."""

    def __call__(self, run_dir: str) -> str:
        from dapbench.training.trainer import build, resolve_device

        _exit_on_sigterm()
        spec = RunStore(run_dir).read_spec()
        env, _ = build(spec, resolve_device(spec.device))
        env.close()
        return "done"


# ----- records ----------------------------------------------------------------------------------------
def read_record(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / RECORD
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise BadInputError(f"{path}: corrupt Slurm record ({e}); delete it if no job of this run is queued") \
            from None


def _write_record(path: Path, record: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def prepare_records(results: Path) -> list[dict[str, Any]]:
    folder = results / SUBMIT_FOLDER / "prepare"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ----- the code snapshot --------------------------------------------------------------------------------
def snapshot(folder: Path) -> Path:
    """Copy the packages into `folder/code/<hash>/` (once per distinct code) with `snapshot.json`, which
    names the commit it was taken from; jobs import from it (provenance records its hash)."""
    import importlib.util

    import dapbench

    builtin = importlib.util.find_spec("algorithms")  # located, not imported: the harness imports no algorithm
    roots = {"dapbench": Path(dapbench.__file__).parent,
             "algorithms": Path(next(iter(builtin.submodule_search_locations)))}
    files = sorted((name, f.relative_to(root)) for name, root in roots.items() for f in root.rglob("*")
                   if f.is_file() and "__pycache__" not in f.parts)
    h = hashlib.sha256()
    for name, rel in files:
        h.update(f"{name}/{rel}\0".encode())
        h.update((roots[name] / rel).read_bytes())
    digest = h.hexdigest()[:16]
    dest = folder / "code" / digest
    if not dest.exists():
        tmp = dest.with_name(f".{digest}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for name, root in roots.items():
            shutil.copytree(root, tmp / name, ignore=shutil.ignore_patterns("__pycache__"))
        info = {"hash": digest, "code": code_version(), "taken": _now()}
        (tmp / SNAPSHOT_FILE).write_text(json.dumps(info, indent=2) + "\n")
        tmp.rename(dest)
    return dest


# ----- sbatch parameters ----------------------------------------------------------------------------------
def _mem(gb: float) -> str:
    return f"{int(gb)}G" if gb == int(gb) else f"{round(gb * 1024)}M"


def sbatch_parameters(res: SlurmResources, name: str, code: Path, parallelism: int | None = None,
                      after: list[str] | None = None, tasks: int = 1) -> dict[str, Any]:
    """submitit's SlurmExecutor parameters for jobs with `res`, importing from the snapshot `code`; for an
    array of `tasks` tasks, at most `parallelism` at once (None: no limit, where submitit would put 256)."""
    extra: dict[str, Any] = {"requeue": True}
    params: dict[str, Any] = {
        "job_name": name, "time": res.time_min, "cpus_per_task": res.cpus_per_task, "stderr_to_stdout": True,
        # PYTHONSAFEPATH: the job's working directory (the repository, typically) must not shadow the snapshot
        "setup": ["export PYTHONSAFEPATH=1",
                  f"export PYTHONPATH={shlex.quote(str(code))}${{PYTHONPATH:+:$PYTHONPATH}}"],
    }
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(res, key) is not None:
            params[key] = getattr(res, key)
    if res.mem_gb is not None:
        params["mem"] = _mem(res.mem_gb)
    if res.gpus_per_node:
        params["gpus_per_node"] = res.gpus_per_node
    if after:
        params["dependency"] = "afterok:" + ":".join(after)
        extra["kill-on-invalid-dep"] = "yes"
    params["additional_parameters"] = {**extra, **res.sbatch}
    if tasks > 1:  # submitit writes --array=0-N%min(N+1, array_parallelism), 256 by default: write it here
        limit = f"%{min(parallelism, tasks)}" if parallelism else ""
        params["additional_parameters"]["array"] = f"0-{tasks - 1}{limit}"
    return params


def sbatch_script(params: dict[str, Any], folder: Path, tasks: int) -> str:
    """The submission script submitit writes for these parameters (its own renderer: what is checked and
    shown is what is submitted)."""
    from submitit.slurm.slurm import _make_sbatch_string

    command = f"{shlex.quote(sys.executable)} -u -m submitit.core._submit {shlex.quote(str(folder))}"
    return _make_sbatch_string(command=command, folder=folder, map_count=tasks if tasks > 1 else None, **params)


def describe(res: SlurmResources) -> str:
    parts = [f"partition {res.partition}" if res.partition else "default partition", f"{res.time_min} min",
             f"{res.cpus_per_task} CPU" + "s" * (res.cpus_per_task > 1)]
    parts += [f"{res.mem_gb:g} GB"] if res.mem_gb else []
    parts += [f"{res.gpus_per_node} GPU" + "s" * (res.gpus_per_node > 1)] if res.gpus_per_node else []
    parts += [f"{k} {getattr(res, k)}" for k in ("account", "qos", "constraint") if getattr(res, k)]
    parts += [f"--{k}" + ("" if v is True else f"={v}") for k, v in res.sbatch.items()]
    return ", ".join(parts)


def _test_only(script: str, what: str, res: SlurmResources, suite_path: Path) -> None:
    """`sbatch --test-only`: would the cluster accept this job? (submits nothing)"""
    try:
        out = subprocess.run(["sbatch", "--test-only"], input=script, capture_output=True, text=True,
                             timeout=scheduler.TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SlurmError(f"sbatch --test-only failed: {e}") from None
    if out.returncode != 0:
        why = " ".join(line.removeprefix("sbatch: error: ").strip() for line in out.stderr.strip().splitlines())
        raise SlurmRefused(f"{suite_path}: Slurm cannot give {what} what it asks for ({describe(res)}): "
                           f"{why or 'sbatch --test-only failed'}; nothing was submitted")


# ----- the plan: arrays of jobs of runs ----------------------------------------------------------------------
@dataclass
class Array:
    resources: SlurmResources
    jobs: list[list[Path]]  # each array task's run folders (one, or a pack of `runs_per_job`)
    after: list[str] = field(default_factory=list)  # preparation jobs it waits for
    job_id: str | None = None

    @property
    def runs(self) -> list[Path]:
        return [d for pack in self.jobs for d in pack]

    def task_ids(self) -> list[str]:
        return [f"{self.job_id}_{i}" for i in range(len(self.jobs))] if len(self.jobs) > 1 else [str(self.job_id)]


@dataclass
class Submission:
    active: dict[Path, str] = field(default_factory=dict)  # runs left alone: their queued or running job
    held: dict[str, str] = field(default_factory=dict)  # of those, jobs Slurm holds -> why (squeue's reason)
    prepare: list[tuple[str, str, bool]] = field(default_factory=list)  # (what, job id, submitted now)
    arrays: list[Array] = field(default_factory=list)
    pruned: int = 0  # files and snapshots removed from .slurm/

    def jobs(self) -> dict[str, list[Path]]:
        """Every job this submission started or found running -> the run folders it trains."""
        out: dict[str, list[Path]] = {j: [] for _, j, _ in self.prepare}
        for d, j in self.active.items():
            out.setdefault(j, []).append(d)
        for a in self.arrays:
            for j, pack in zip(a.task_ids(), a.jobs, strict=True):
                out[j] = list(pack)
        return out


def group_by_resources(suite: Suite, specs: dict[Path, RunSpec]) -> list[tuple[SlurmResources, list[Path]]]:
    groups: dict[str, tuple[SlurmResources, list[Path]]] = {}
    for d, spec in specs.items():
        res = slurm_resources(suite, spec)
        groups.setdefault(res.model_dump_json(), (res, []))[1].append(d)
    return list(groups.values())


def plan(suite: Suite, runs: dict[Path, RunSpec], max_array: int | None) -> list[Array]:
    """One array per resource request, its runs packed `runs_per_job` to a job in grid order (so a pack
    is one cell's seeds where they divide), split where it has more jobs than `max_array` (MaxArraySize)."""
    k = suite.launcher.runs_per_job
    arrays = []
    for res, dirs in group_by_resources(suite, runs):
        packs = [dirs[i:i + k] for i in range(0, len(dirs), k)]
        step = max_array or len(packs)
        arrays += [Array(res, packs[i:i + step]) for i in range(0, len(packs), step)]
    return arrays


def array_limit() -> tuple[int, str]:
    """(MaxArraySize, where it comes from): the cluster's, or Slurm's default where no cluster answers."""
    if scheduler.unavailable() is None and (n := scheduler.max_array_size()):
        return n, "the cluster's MaxArraySize"
    return scheduler.DEFAULT_MAX_ARRAY_SIZE, "Slurm's default MaxArraySize; no cluster answers here"


def dry_run_lines(suite: Suite, runs: dict[Path, RunSpec], results: Path) -> list[str]:
    """What `run --dry-run` shows of a submission: the arrays, their jobs and their sbatch options."""
    folder = (results / SUBMIT_FOLDER).resolve()
    limit, source = array_limit()
    arrays = plan(suite, runs, limit)
    k = suite.launcher.runs_per_job
    jobs = sum(len(a.jobs) for a in arrays)
    packing = f", {k} runs per job side by side (one process each, sharing its resources)" if k > 1 else ""
    lines = [f"slurm: {len(runs)} runs in {jobs} job{'s' * (jobs != 1)}{packing}, "
             f"{len(arrays)} array{'s' * (len(arrays) != 1)} "
             f"(at most {limit} jobs each: {source}), after jobs making any missing datasets and shared priors; "
             "sbatch options:"]
    for a in arrays:
        params = sbatch_parameters(a.resources, f"dapbench-{suite.name}", folder / "code" / "HASH",
                                   suite.launcher.parallelism, tasks=len(a.jobs))
        flags = [line.removeprefix("#SBATCH ") for line in sbatch_script(params, folder, len(a.jobs)).splitlines()
                 if line.startswith("#SBATCH") and not line.startswith(("#SBATCH --output", "#SBATCH --error"))]
        tasks = sorted({d.relative_to(results).parts[0] for d in a.runs})
        lines.append(f"  {len(a.runs)} runs in {len(a.jobs)} job{'s' * (len(a.jobs) != 1)} ({', '.join(tasks)}): "
                     + " ".join(flags))
    return lines


def _what(runs: dict[Path, RunSpec], dirs: list[Path]) -> str:
    where = sorted({f"{runs[d].task}/{runs[d].label}" for d in dirs})
    return f"the runs of {', '.join(where[:3])}" + (f" (+{len(where) - 3} more)" if len(where) > 3 else "")


def _shared_work(spec: RunSpec) -> str | None:
    from dapbench.registry import get_algorithm

    cls = get_algorithm(spec.algorithm)
    return cls.shared_work(cls.Config.from_spec(spec.config), spec.task, spec.dataset)


def check(suite: Suite, suite_path: Path, runs: dict[Path, RunSpec], datasets: list[DatasetEntry],
          folder: Path, max_array: int | None) -> None:
    """`sbatch --test-only` for every job a submission of `runs` would make; writes nothing."""
    cfg, name, code = suite.launcher, f"dapbench-{suite.name}", folder / "code" / "HASH"
    needed = {s.dataset for s in runs.values()}
    if any(e.id in needed for e in datasets) or any(_shared_work(s) is not None for s in runs.values()):
        prep_res = cfg.resources.merged(cfg.prepare)
        _test_only(sbatch_script(sbatch_parameters(prep_res, name, code), folder, 1), "the preparation jobs",
                   prep_res, suite_path)
    seen = set()
    for a in plan(suite, runs, max_array):
        key = (a.resources.model_dump_json(), len(a.jobs))
        if key in seen:
            continue
        seen.add(key)
        params = sbatch_parameters(a.resources, name, code, cfg.parallelism, tasks=len(a.jobs))
        _test_only(sbatch_script(params, folder, len(a.jobs)), _what(runs, a.runs), a.resources, suite_path)


# ----- a submission -------------------------------------------------------------------------------------
@contextlib.contextmanager
def submission_lock(folder: Path, log: Callable[[str], None]) -> Iterator[None]:
    """One submission at a time per results folder (released by the OS if the process dies)."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        log(f"another `dapbench run` is submitting to {folder.parent}; waiting for it (then submitting only "
            "what it did not)")
        try:
            lock.acquire(timeout=LOCK_WAIT_S, poll_interval=0.2)
        except Timeout:
            raise SlurmError(f"{folder / LOCK}: another submission has held it for {LOCK_WAIT_S} s; nothing was "
                             "submitted") from None
    try:
        yield
    finally:
        lock.release()


def submit(suite: Suite, suite_path: Path, runs: dict[Path, RunSpec], results: Path,
           datasets: list[DatasetEntry], log: Callable[[str], None] = print) -> Submission:
    """Submit the runs in `runs` (run folder -> spec; the folders are created here, after every check) that
    have no queued or running job, after making `datasets` (missing datasets the suite lists) and the runs'
    shared work."""
    folder = (results / SUBMIT_FOLDER).resolve()
    runs = {d.resolve(): s for d, s in runs.items()}
    limit = scheduler.max_array_size()
    check(suite, suite_path, runs, datasets, folder, limit)  # before anything is written

    out = Submission()
    with submission_lock(folder, log):
        records = {d: read_record(d) for d in runs}
        states = scheduler.job_states(r["job_id"] for r in records.values() if r)
        for d, r in records.items():
            if r and (st := states.get(r["job_id"])) is not None and st.active:
                out.active[d] = r["job_id"]
                if st.held:
                    out.held[r["job_id"]] = st.reason or st.state
        todo = {d: s for d, s in runs.items() if d not in out.active}
        if todo:
            _submit_runs(suite, suite_path, todo, results, folder, datasets, limit, out, log)
        out.pruned = prune(results)
    return out


def _submit_runs(suite: Suite, suite_path: Path, todo: dict[Path, RunSpec], results: Path, folder: Path,
                 datasets: list[DatasetEntry], limit: int | None, out: Submission, log: Callable[[str], None]) -> None:
    for d, spec in todo.items():
        RunStore(d).init(spec)
    # the plan: datasets to make, shared work (one run folder to do it), arrays of jobs per resource request
    needed = {s.dataset for s in todo.values()}
    datasets = [e for e in datasets if e.id in needed]
    work_of = {d: w for d, s in todo.items() if (w := _shared_work(s)) is not None}
    shared = {w: d for d, w in reversed(work_of.items())}  # the first run folder needing each piece
    arrays = plan(suite, todo, limit)
    cfg, name = suite.launcher, f"dapbench-{suite.name}"
    prep_res = cfg.resources.merged(cfg.prepare)
    code = snapshot(folder)

    # preparation: datasets, then shared work after the dataset it needs; a job still queued from an
    # earlier submission is waited for, not submitted again
    earlier = {r["what"]: r["job_id"] for r in prepare_records(results)}
    still = {j: s for j, s in scheduler.job_states(earlier.values()).items() if s.active}

    def prepare(what: str, fn: Any, arg: Any, after: list[str]) -> str:
        if earlier.get(what) in still:
            j = earlier[what]
            out.prepare.append((what, j, False))
            if still[j].held:
                out.held[j] = still[j].reason or still[j].state
            return j
        params = sbatch_parameters(prep_res, f"{name}-prepare", code, after=after)
        job = _submit(folder, params, cfg.max_timeouts, suite_path, "a preparation job",
                      lambda ex: ex.submit(fn, arg))
        slug = hashlib.sha256(what.encode()).hexdigest()[:16]
        _write_record(folder / "prepare" / f"{slug}.json", {
            "what": what, "job_id": job.job_id, "submitted": _now(), "log": str(job.paths.stdout), "code": code.name})
        out.prepare.append((what, job.job_id, True))
        log(f"submitted job {job.job_id}: {what}")
        return job.job_id

    dataset_job = {e.id: prepare(f"dataset {e.id}", MakeDataset(), _request(e), []) for e in datasets}
    shared_job = {w: prepare(w, SharedWork(), str(d), [dataset_job[todo[d].dataset]] if todo[d].dataset in
                             dataset_job else []) for w, d in shared.items()}

    # the training arrays, after the preparation their runs need
    for a in arrays:
        after = {dataset_job.get(todo[d].dataset) for d in a.runs} | {shared_job.get(work_of.get(d)) for d in a.runs}
        a.after = sorted((j for j in after if j), key=int)
        params = sbatch_parameters(a.resources, name, code, cfg.parallelism, a.after, tasks=len(a.jobs))
        args = [str(p[0]) if len(p) == 1 else [str(d) for d in p] for p in a.jobs]
        jobs = _submit(folder, params, cfg.max_timeouts, suite_path, f"an array of {len(a.jobs)} jobs",
                       lambda ex, args=args: ex.map_array(TrainJob(), args))
        a.job_id = jobs[0].job_id.split("_")[0]
        for pack, job in zip(a.jobs, jobs, strict=True):
            for d in pack:
                _write_record(d / RECORD, {
                    "job_id": job.job_id, "submitted": _now(), "log": str(job.paths.stdout), "after": a.after,
                    "code": code.name, "resources": describe(a.resources),
                    "pack": [os.path.relpath(p, d) for p in pack if p != d]})
        out.arrays.append(a)


def _request(e: DatasetEntry) -> dict[str, Any]:
    return {"task": e.task, "quality": e.quality, "seed": e.seed, "steps": e.steps,
            "behaviour_steps": e.behaviour_steps}


def _submit(folder: Path, params: dict[str, Any], max_timeouts: int, suite_path: Path, what: str,
            call: Callable[[Any], Any]) -> Any:
    """`call(executor)` with a SlurmExecutor set to `params`; sbatch's complaint becomes one error (submitit
    also prints it to stderr: that is kept quiet)."""
    import submitit
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=max_timeouts)
    ex.update_parameters(**params)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return call(ex)
    except (FailedJobError, FailedSubmissionError) as e:
        why = " ".join(line.removeprefix("sbatch: error: ").strip() for line in str(e).strip().splitlines())
        raise SlurmRefused(f"{suite_path}: Slurm refused {what}: {why}") from None


# ----- pruning .slurm/ ---------------------------------------------------------------------------------------
_SUBMITIT_FILE = re.compile(r"^(\d+)(?:_\d+)?_(submission\.sh|submitted\.pkl|result\.pkl)$")


def prune(results: Path) -> int:
    """Remove from `<results>/.slurm/` what nothing needs any more: code snapshots that no run record (nor
    preparation record) names, and submitit's pickles and submission scripts of jobs that no record names
    and that Slurm does not list as queued or running. Logs are kept. Runs under the submission lock;
    returns how many files and snapshots went. Nothing is removed when Slurm does not answer."""
    folder = results / SUBMIT_FOLDER
    records = [r for p in results.rglob(RECORD) if (r := _read_quietly(p))] + prepare_records(results)
    named_jobs = {str(r.get("job_id", "")).split("_")[0] for r in records}
    named_code = {r.get("code") for r in records}
    files = [(m.group(1), p) for p in folder.glob("*_*") if (m := _SUBMITIT_FILE.match(p.name))]
    candidates = sorted({j for j, _ in files} - named_jobs)
    try:
        live = {j.split("_")[0] for j, s in scheduler.job_states(candidates).items() if s.active}
    except SlurmError:
        return 0
    removed = 0
    for j, p in files:
        if j in candidates and j not in live:
            p.unlink(missing_ok=True)
            removed += 1
    code = folder / "code"
    for snap in code.iterdir() if code.is_dir() else []:
        if snap.is_dir() and not snap.name.startswith(".") and snap.name not in named_code:
            shutil.rmtree(snap, ignore_errors=True)
            removed += 1
    return removed


def _read_quietly(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ----- the combined view: run folders and the scheduler -------------------------------------------------------
def held(store: RunStore) -> bool:
    """Whether a live process holds the run folder (trains it right now)."""
    try:
        with store.lock():
            return False
    except RunLocked:
        return True


def release_hint(held_jobs: dict[str, str]) -> str:
    """What to say about jobs Slurm holds (job id -> reason)."""
    ids = sorted(held_jobs)
    reasons = sorted(set(held_jobs.values()))
    return (f"Slurm holds job{'s' * (len(ids) > 1)} {', '.join(ids)} ({'; '.join(reasons)}) and starts "
            f"{'them' if len(ids) > 1 else 'it'} only once released: `scontrol release {','.join(ids)}` (or "
            "`dapbench cancel` the suite, then `dapbench run` submits the runs afresh)")


def _ended_hint(job_id: str, job: JobState, status: Status, log: str | None) -> str:
    """Why a run's job ended without finishing it, and what to do (the run keeps its finished epochs)."""
    if job.state == "OUT_OF_MEMORY":
        why = "ran out of memory; raise `mem_gb` in the suite's resources, then"
    elif job.state == "TIMEOUT" or (log and "timed-out too many times" in _tail(log)):
        why = "reached its time limit with no requeue left; raise `time_min` or `max_timeouts`, then"
    elif job.state in ("NODE_FAIL", "BOOT_FAIL"):
        why = "lost its node;"
    elif job.state == "PREEMPTED":
        why = "was preempted and not requeued;"
    else:
        why = ("ended without the run recording an error (its process was killed: kill -9, the OOM killer, a node "
               "problem);")
    return f"job {job_id} ended {job.state}: it {why} `dapbench run` resumes it from epoch {status.epoch}"


def _tail(path: str, n: int = 4096) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def run_state(store: RunStore, status: Status, job: JobState | None, record: dict[str, Any] | None = None,
              answered: bool = True) -> tuple[str, str | None]:
    """(state, note) of a run from its folder and its job: pending, queued, held, running, done, failed,
    interrupted (its job ended without finishing it, nor the run recording an error: `run` resumes it), or
    unknown (a job was submitted and Slurm does not answer). The note says why, and what to do."""
    job_id = record["job_id"] if record else "?"
    if status.state == "done":
        if job is not None and job.state == "RUNNING":
            return "done", (f"job {job_id} is still RUNNING though the run is done: if it stays so, its slurmstepd "
                            f"died and Slurm holds its resources until its time limit; `scancel {job_id}` frees them")
        return "done", None
    if record is not None and not answered:
        return "unknown", f"job {job_id}: Slurm does not answer, so its state is unknown"
    if job is not None and job.active:
        if job.held:
            return "held", release_hint({job_id: job.reason or job.state})
        return ("queued" if job.queued else "running"), None
    if status.state == "failed":
        return "failed", status.error
    live = held(store)
    if job is not None and job.state in scheduler.FAILED and not live:
        return "interrupted", _ended_hint(job_id, job, status, record.get("log") if record else None)
    if status.state == "running" and not live:
        return "pending", None  # its process died (cancelled, killed): it resumes from its checkpoint
    return status.state, None


def wait(jobs: dict[str, list[Path]], log: Callable[[str], None] = print, poll_s: float = 2.0,
         every_s: float = 60.0, stuck_s: float = 120.0) -> list[str]:
    """Wait until none of `jobs` (job id -> the run folders it trains; none for a preparation job) is queued
    or running, with a progress line whenever the counts change (at least every `every_s`). A held job
    ends the wait with a note (it waits for a person); a job still RUNNING `stuck_s` after all its runs
    are done is no longer waited for (returned: its slurmstepd died; `scancel` it)."""
    last, last_t, done_since, outage = "", 0.0, {}, False
    while True:
        try:
            states = scheduler.job_states(jobs)
            outage = False
        except SlurmError as e:
            if not outage:
                log(f"waiting: Slurm does not answer ({e}); trying again")
            outage = True
            time.sleep(poll_s)
            continue
        runs = sorted({d for ds in jobs.values() for d in ds})
        status = {d: _status(d) for d in runs}
        now = time.monotonic()
        stuck = []
        for j, ds in jobs.items():
            st = states.get(j)
            over = ds and st is not None and st.state == "RUNNING" and all(status[d].state == "done" for d in ds)
            if over and now - done_since.setdefault(j, now) > stuck_s:
                stuck.append(j)
        held_jobs = {j: s.reason or s.state for j, s in states.items() if s.held}
        active = {j: s for j, s in states.items() if s.active and j not in stuck and j not in held_jobs}
        n_q = sum(s.queued for s in active.values())
        epochs = sum(s.epoch for s in status.values())
        total = sum(s.epochs for s in status.values())
        line = (f"waiting: {n_q} jobs queued, {len(active) - n_q} running, {len(jobs) - len(active)} over; runs: "
                f"{sum(s.state == 'done' for s in status.values())}/{len(runs)} done, "
                f"{sum(s.state == 'failed' for s in status.values())} failed, epochs {epochs}/{total}")
        if line != last or now - last_t >= every_s:
            log(line)
            last, last_t = line, now
        if not active:
            if held_jobs:
                log(f"stopped waiting: {release_hint(held_jobs)}")
            for j in stuck:
                log(f"stopped waiting for job {j}: its runs are done but Slurm still lists it RUNNING (its slurmstepd "
                    f"died?); `scancel {j}` frees its resources")
            return stuck
        time.sleep(poll_s)


def _status(d: Path) -> Status:
    try:
        return RunStore(d).status()
    except RunFolderError:  # a status file being replaced right now
        return Status()


def cancel(job_ids: list[str], settle_s: float = 10.0) -> tuple[list[str], list[str]]:
    """scancel the queued and running jobs among `job_ids`; wait up to `settle_s` for the running ones to
    stop. Returns (cancelled, still stopping: COMPLETING, or RUNNING)."""
    states = scheduler.job_states(job_ids)
    active = sorted((j for j, s in states.items() if s.active), key=_job_key)
    running = [j for j in active if not states[j].queued]
    scheduler.cancel(active)
    deadline = time.monotonic() + settle_s
    stopping = running
    while stopping and time.monotonic() < deadline:
        time.sleep(0.5)
        now = scheduler.job_states(stopping)
        stopping = [j for j in stopping if j in now and now[j].state in scheduler.RUNNING]
    return active, stopping


def _job_key(j: str) -> tuple[int, int]:
    main, _, task = j.partition("_")
    return int(main), int(task or -1)


if __name__ == "__main__":  # one run of a packed job (TrainJob starts it)
    sys.exit(_pack_worker(sys.argv[1]))
