"""The slurm launcher: a suite's pending runs as Slurm job arrays, through submitit (docs/slurm.md).

One submission:
1. skips runs whose last job is still queued or running (`slurm.json` in each run folder names it);
2. checks every job's resources with `sbatch --test-only`, so a request the cluster cannot give fails
   before anything is submitted;
3. snapshots the code (the packages `dapbench` and `algorithms`) under `<results>/.slurm/code/<hash>/`;
   every job imports from its snapshot, a requeued one too;
4. submits the preparation first, one job each: missing datasets, then the algorithms' shared work
   (e.g. a prior to pre-train, `Algorithm.shared_work`), after the dataset it needs;
5. submits one array per distinct resource request (per-task and per-algorithm overrides), at most
   `parallelism` tasks at once, after the preparation (`afterok`; `kill-on-invalid-dep` cancels it if
   the preparation fails). Each array task gets only its run folder's path.

Jobs are `submitit.helpers.Checkpointable`: on preemption or at their time limit submitit calls
`checkpoint`, which requeues the same call, and the run resumes from its last epoch checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from submitit.helpers import Checkpointable

from dapbench.config import DatasetEntry, RunSpec, SlurmResources, Suite, slurm_resources
from dapbench.errors import BadInputError, TrainingError
from dapbench.launch import scheduler
from dapbench.launch.scheduler import JobState, SlurmError
from dapbench.results.atomic import atomic_write_text
from dapbench.results.provenance import SNAPSHOT_FILE, code_version
from dapbench.results.store import RunLocked, RunStore, Status

SUBMIT_FOLDER = ".slurm"  # under the results folder: submitit's files and logs, code snapshots, preparation
RECORD = "slurm.json"  # in a run folder: the run's latest job
PACKAGES = ("dapbench", "algorithms")


class SlurmRefused(BadInputError):
    """The cluster refused a request (resources it cannot give, a bad partition or account, ...)."""


# ----- the jobs ---------------------------------------------------------------------------------------
class TrainJob(Checkpointable):
    """An array task: run (or resume) the run in `run_dir`; a failed run fails the task with its error."""

    def __call__(self, run_dir: str) -> str:
        from dapbench.training.trainer import execute

        outcome = execute(run_dir)
        if outcome.state == "failed":
            raise TrainingError(f"{run_dir} failed at epoch {outcome.epoch}: {outcome.error}")
        return outcome.state


class MakeDataset(Checkpointable):
    """Make a dataset the suite lists (`dapbench data make`); its behaviour run resumes after a requeue."""

    def __call__(self, request: dict[str, Any]) -> str:
        from dapbench.data.make import MakeRequest, make

        return make(MakeRequest(**request))


class SharedWork(Checkpointable):
    """Build the algorithm of the run in `run_dir` once, which does the work its runs share (e.g. trains
    and caches the prior), so that the array's tasks find it done."""

    def __call__(self, run_dir: str) -> str:
        from dapbench.training.trainer import build, resolve_device

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
                      after: list[str] | None = None) -> dict[str, Any]:
    """submitit's SlurmExecutor parameters for jobs with `res`, importing from the snapshot `code`."""
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
    if parallelism:
        params["array_parallelism"] = parallelism
    if after:
        params["dependency"] = "afterok:" + ":".join(after)
        extra["kill-on-invalid-dep"] = "yes"
    params["additional_parameters"] = {**extra, **res.sbatch}
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


# ----- a submission -------------------------------------------------------------------------------------
@dataclass
class Array:
    resources: SlurmResources
    runs: list[Path]
    after: list[str] = field(default_factory=list)  # preparation jobs it waits for
    job_id: str | None = None


@dataclass
class Submission:
    active: dict[Path, str] = field(default_factory=dict)  # runs left alone: their queued or running job
    prepare: list[tuple[str, str, bool]] = field(default_factory=list)  # (what, job id, submitted now)
    arrays: list[Array] = field(default_factory=list)

    def job_ids(self) -> list[str]:
        ids = [j for _, j, _ in self.prepare] + list(self.active.values())
        return ids + [f"{a.job_id}_{i}" if len(a.runs) > 1 else str(a.job_id)
                      for a in self.arrays for i in range(len(a.runs))]


def group_by_resources(suite: Suite, specs: dict[Path, RunSpec]) -> list[tuple[SlurmResources, list[Path]]]:
    groups: dict[str, tuple[SlurmResources, list[Path]]] = {}
    for d, spec in specs.items():
        res = slurm_resources(suite, spec)
        groups.setdefault(res.model_dump_json(), (res, []))[1].append(d)
    return list(groups.values())


def _shared_work(spec: RunSpec) -> str | None:
    from dapbench.registry import get_algorithm

    cls = get_algorithm(spec.algorithm)
    return cls.shared_work(cls.Config.from_spec(spec.config), spec.task, spec.dataset)


def _active(job_ids: list[str]) -> dict[str, JobState]:
    return {j: s for j, s in scheduler.job_states(job_ids).items() if s.active}


def submit(suite: Suite, suite_path: Path, runs: dict[Path, RunSpec], results: Path,
           datasets: list[DatasetEntry], log: Callable[[str], None] = print) -> Submission:
    """Submit the runs in `runs` (run folder -> spec) that have no queued or running job, after making
    `datasets` (missing datasets the suite lists) and the runs' shared work."""
    folder = (results / SUBMIT_FOLDER).resolve()
    records = {d: read_record(d) for d in runs}
    active = _active([r["job_id"] for r in records.values() if r])
    out = Submission(active={d: r["job_id"] for d, r in records.items() if r and r["job_id"] in active})
    todo = {d.resolve(): s for d, s in runs.items() if d not in out.active}
    if not todo:
        return out

    # the plan: datasets to make, shared work (one run folder to do it), one array per resource request
    needed = {s.dataset for s in todo.values()}
    datasets = [e for e in datasets if e.id in needed]
    work_of = {d: w for d, s in todo.items() if (w := _shared_work(s)) is not None}
    shared = {w: d for d, w in reversed(work_of.items())}  # the first run folder needing each piece
    arrays = [Array(res, dirs) for res, dirs in group_by_resources(suite, todo)]
    cfg, name = suite.launcher, f"dapbench-{suite.name}"
    prep_res = cfg.resources.merged(cfg.prepare)
    code = snapshot(folder)

    # every job's resources checked before anything is submitted
    if datasets or shared:
        script = sbatch_script(sbatch_parameters(prep_res, name, code), folder, 1)
        _test_only(script, "the preparation jobs", prep_res, suite_path)
    for a in arrays:
        where = sorted({f"{todo[d].task}/{todo[d].label}" for d in a.runs})
        what = f"the runs of {', '.join(where[:3])}" + (f" (+{len(where) - 3} more)" if len(where) > 3 else "")
        script = sbatch_script(sbatch_parameters(a.resources, name, code, cfg.parallelism), folder, len(a.runs))
        _test_only(script, what, a.resources, suite_path)

    # preparation: datasets, then shared work after the dataset it needs; a job still queued from an
    # earlier submission is waited for, not submitted again
    earlier = {r["what"]: r["job_id"] for r in prepare_records(results)}
    still = _active(list(earlier.values()))

    def prepare(what: str, fn: Any, arg: Any, after: list[str]) -> str:
        if earlier.get(what) in still:
            out.prepare.append((what, earlier[what], False))
            return earlier[what]
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
        params = sbatch_parameters(a.resources, name, code, cfg.parallelism, a.after)
        dirs = [str(d) for d in a.runs]
        jobs = _submit(folder, params, cfg.max_timeouts, suite_path, f"an array of {len(dirs)} runs",
                       lambda ex, dirs=dirs: ex.map_array(TrainJob(), dirs))
        a.job_id = jobs[0].job_id.split("_")[0]
        for d, job in zip(a.runs, jobs, strict=True):
            _write_record(d / RECORD, {"job_id": job.job_id, "submitted": _now(), "log": str(job.paths.stdout),
                                       "after": a.after, "code": code.name, "resources": describe(a.resources)})
        out.arrays.append(a)
    return out


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


# ----- the combined view: run folders and the scheduler -------------------------------------------------------
def held(store: RunStore) -> bool:
    """Whether a live process holds the run folder (trains it right now)."""
    try:
        with store.lock():
            return False
    except RunLocked:
        return True


def run_state(store: RunStore, status: Status, job: JobState | None) -> tuple[str, str | None]:
    """(state, error) of a run: pending, queued, running, done or failed, from its folder and its job."""
    if status.state == "done":
        return "done", None
    if job is not None and job.active:
        return ("queued" if job.queued else "running"), None
    if status.state == "failed":
        return "failed", status.error
    if job is not None and job.state in scheduler.FAILED:
        return "failed", f"Slurm job ended {job.state} at epoch {status.epoch}"
    if status.state == "running" and not held(store):
        return "pending", None  # its process died (cancelled, killed): it resumes from its checkpoint
    return status.state, None


def wait(job_ids: list[str], on_poll: Callable[[], None] | None = None, poll_s: float = 2.0) -> None:
    """Wait until none of `job_ids` is queued or running (a requeued job counts as queued)."""
    while _active(job_ids):
        if on_poll is not None:
            on_poll()
        time.sleep(poll_s)
