"""What the commands about a suite's runs compute, as data for the CLI to print: the dry run's grid and estimate,
the state of every run (run folders and Slurm's view of their jobs), the checks and preparation before a launch
(run folders, missing datasets), and the Slurm jobs recorded for a suite. Nothing here prints."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dapbench.errors import BadInputError, RunFolderError
from dapbench.launch.scheduler import JobState
from dapbench.results.store import RunStore, Status
from dapbench.suite import DatasetEntry, RunSpec, Suite, unavailable_reason

# PPO's cost per training step beyond stepping the environment (policy inference and updates), one core:
# measured with `benchmarks/ppo_vs_sb3.py speed` (Hopper 1/1052 - 1/2860 s, HalfCheetah 1/1534 - 1/6506 s;
# docs/benchmarks.md). Evaluation steps cost the raw env step plus ~10 us of inference. Estimates only.
PPO_OVERHEAD_S_PER_STEP = 5.5e-4
EVAL_OVERHEAD_S_PER_STEP = 1e-5
NOT_RUNNABLE = ("not implemented", "unavailable")  # cell states of runs that cannot run here
FOLDER_PROBLEMS = ("damaged", "other spec")  # states of run folders `run` refuses (folder_problem)


# ----- the dry run -------------------------------------------------------------------------------------------
def estimate_hours(spec: RunSpec) -> float | None:
    """CPU hours of one run on one core: PPO's measured cost per step on top of the task's measured env rate,
    evaluation episodes at full length; None when the task's env rate was never measured. The dry run uses it for
    cells none of whose runs has an epoch yet; other cells go by their own runs' CPU time per epoch."""
    from dapbench.tasks.registry import TASKS, reference_scores

    ref = reference_scores()["tasks"].get(spec.task)
    if not ref:
        return None
    ev = spec.evaluation
    evals = spec.epochs // ev.every if ev.every else 0
    eval_steps = evals * ev.episodes * TASKS[spec.task].max_episode_steps  # upper bound: full episodes
    env_s = 1.0 / ref["env_steps_per_s"]
    train_s = spec.total_steps * (env_s + PPO_OVERHEAD_S_PER_STEP)
    return (train_s + eval_steps * (env_s + EVAL_OVERHEAD_S_PER_STEP)) / 3600


def cell_state(spec: RunSpec, results: Path) -> str:
    """The run's state from its folder alone: new, pending, partial, running, interrupted, done, failed, or one of
    NOT_RUNNABLE."""
    if unavailable_reason(spec):
        return "not implemented" if not spec.implemented else "unavailable"
    store = RunStore(results / spec.relpath())
    if not store.spec_path.exists():
        return "new"
    st = store.status()
    if store.interrupted(st):
        return "interrupted"
    if st.state == "done" and st.epochs < spec.epochs:  # a shorter run this spec extends (same horizon): `run` goes on
        return "partial"
    return st.state if st.state != "pending" or not st.epoch else "partial"


@dataclass(frozen=True)
class CellPlan:
    """One task x label of the grid: its runs (one per seed), their states and their estimated CPU hours."""

    task: str
    label: str
    runs: int
    total_steps: int  # per run
    epochs: int  # per run
    states: Counter[str]
    hours: float  # CPU hours left: sum over the runs with an estimate of their epochs still to run
    estimated: int  # runs with an estimate
    measured: int = 0  # the cell's runs whose tables gave CPU times per epoch (0: all at PPO's rate)

    @property
    def runnable(self) -> bool:
        return not any(s in self.states for s in NOT_RUNNABLE)


@dataclass(frozen=True)
class GridPlan:
    """The dry run of a grid: its cells, totals, and why some runs cannot run here."""

    cells: list[CellPlan]
    runs: int
    runnable: int
    total_steps: int
    hours: float
    unknown: int  # runs without an estimate
    reasons: list[str]  # why runs cannot run here, each once


def grid_plan(specs: list[RunSpec], results: Path) -> GridPlan:
    """The dry run of `specs` in `results`: per cell, the states of its runs and their estimated CPU time."""
    groups: dict[tuple[str, str], list[RunSpec]] = {}
    for s in specs:
        groups.setdefault((s.task, s.label), []).append(s)
    cells = []
    for (task, label), group in groups.items():
        stores = [RunStore(results / s.relpath()) for s in group]
        costs = [st.epoch_costs() for st in stores]
        firsts = [f for n, f, _ in costs if n and f == f]
        laters = [x for n, _, x in costs if n > 1 and x == x]
        known = []
        for s, st, (recorded, _, _) in zip(group, stores, costs, strict=True):
            base = estimate_hours(s)  # PPO's rate: for what the cell's own runs have not measured
            per = sum(laters) / len(laters) if laters else None if base is None else base * 3600 / s.epochs
            if per is None:
                continue
            first = sum(firsts) / len(firsts) if firsts else per  # the first epoch holds any offline stage
            kept = st.epochs_kept(recorded, s.epochs)
            known.append((first + (s.epochs - 1) * per if kept == 0 else max(0, s.epochs - kept) * per) / 3600)
        cells.append(CellPlan(task, label, len(group), group[0].total_steps, group[0].epochs,
                              Counter(cell_state(s, results) for s in group), sum(known), len(known),
                              sum(1 for n, f, _ in costs if n and f == f)))
    return GridPlan(cells, len(specs), sum(s.runnable for s in specs), sum(s.total_steps for s in specs),
                    sum(c.hours for c in cells), sum(c.runs - c.estimated for c in cells),
                    sorted({r for s in specs if (r := unavailable_reason(s))}))


# ----- before a launch ---------------------------------------------------------------------------------------
def blocked(specs: list[RunSpec]) -> tuple[list[RunSpec], list[str]]:
    """(the runs that cannot run here, why: each reason once)."""
    out = [s for s in specs if not s.runnable]
    return out, sorted({r for s in out if (r := unavailable_reason(s))})


def check_folders(specs: list[RunSpec], results: Path) -> None:
    """Refuse (creating nothing) if an existing run folder holds a different spec."""
    for spec in specs:
        store = RunStore(results / spec.relpath())
        if store.spec_path.exists() and store.read_spec().hash != spec.hash:
            store.init(spec)  # raises the detailed mismatch error


def prepare(specs: list[RunSpec], results: Path) -> list[Path]:
    """Create the run folders (or confirm existing ones hold the same spec); their paths, in the specs' order."""
    stores = [RunStore(results / s.relpath()) for s in specs]
    for store, spec in zip(stores, specs, strict=True):
        store.init(spec)
    return [st.dir for st in stores]


def not_done(runs: dict[Path, RunSpec]) -> dict[Path, RunSpec]:
    """The runs (run folder -> spec) whose folder does not say done."""
    return {d: s for d, s in runs.items() if RunStore(d).status().state != "done"}


def missing_datasets(path: Path, suite: Suite, specs: list[RunSpec]) -> list[DatasetEntry]:
    """The missing datasets the runs need, as the suite's recipes; refuse (exit 2) when the suite has none."""
    needed = sorted({s.dataset for s in specs if s.dataset})
    if not needed:
        return []
    from dapbench.data.load import local_dataset_ids
    from dapbench.naming import make_command_for

    have = set(local_dataset_ids())
    recipes = {d.id: d for d in suite.datasets}
    missing = [d for d in needed if d not in have]
    unknown = [d for d in missing if d not in recipes]
    if unknown:
        lines = [f"{d}: make it with `{make_command_for(d) or f'minari download {d}'}`, or add it to the suite's "
                 "`datasets:` section" for d in unknown]
        raise BadInputError(f"{path}: missing datasets, nothing was started:\n  " + "\n  ".join(lines))
    return [recipes[d] for d in missing]


def ensure_datasets(path: Path, suite: Suite, specs: list[RunSpec], log: Callable[[str], None]) -> None:
    """Make the missing datasets the suite knows how to make, before any run; refuse the others."""
    from dapbench.data.make import MakeRequest, make

    for r in missing_datasets(path, suite, specs):
        log(f"making dataset {r.id} first")
        make(MakeRequest(r.task, r.quality, r.seed, r.steps, r.behaviour_steps), log=log)


# ----- states ------------------------------------------------------------------------------------------------
NAN = float("nan")


def folder_problem(spec: RunSpec, results: Path) -> tuple[str, str] | None:
    """(state, what is wrong, naming the file, in one line) of a run folder `run` would refuse, or None when nothing
    is wrong or the folder does not exist yet. `damaged`: a file where the folder or one above it should be, a spec
    that does not read, a status file that does not read, a metrics table that does not read or is missing though
    epochs are done; `other spec`: a spec that is not the suite's (nor the same run with a longer budget). Reads
    only."""
    store = RunStore(results / spec.relpath())
    parts = spec.relpath().parts
    for d in (results.joinpath(*parts[:i]) for i in range(1, len(parts) + 1)):  # task/, task/label/, the run's
        if d.exists() and not d.is_dir():
            return "damaged", (f"{d}: is a file, not a run folder: move it" if d == store.dir else
                               f"{d}: is a file, not a folder; the run folder {store.dir} cannot be there: move it")
    if not store.spec_path.exists():
        return None
    try:
        stored = store.read_spec()
        st = store.status()
        if stored.hash != spec.hash and not spec.extends(stored):
            return "other spec", (f"{store.spec_path}: holds a different spec (hash {stored.hash}; the suite's is "
                                  f"{spec.hash}), so `run` refuses this folder: use another results folder "
                                  "(--results) or delete this run folder to start it afresh")
        if st.epoch and not store.metrics_path.exists():
            return "damaged", (f"{store.metrics_path}: missing, though {store.status_path.name} says {st.epoch} "
                               "epochs are done")
        if store.metrics_path.exists():
            store.read_metrics()
    except RunFolderError as e:
        return "damaged", str(e)
    return None


@dataclass(frozen=True)
class RunState:
    """One run as `status` shows it: its state (FOLDER_PROBLEMS: its folder is not what `run` would take, `error`
    says what and where), its folder's status (None before the folder exists, or when it is damaged), its Slurm job
    as shown ('' without one), what went wrong, its job's log and, when asked for, its progress (the latest
    evaluation return and the seconds left at its mean epoch time; NaN where its table does not say)."""

    spec: RunSpec
    state: str
    status: Status | None
    job: str
    error: str | None
    log: str | None
    eval_return: float = NAN
    seconds_left: float = NAN


@dataclass(frozen=True)
class RunStates:
    """The states of a suite's runs, and why Slurm's view is missing from them (None when it answered)."""

    runs: list[RunState]
    slurm_problem: str | None


def run_states(specs: list[RunSpec], results: Path, progress: bool = False) -> RunStates:
    """The state of every run, combining run folders with Slurm's view of their jobs; a run with a job and no
    result is `unknown` when Slurm does not answer. `progress`: also read each run's table for its progress."""
    from dapbench.launch import slurm
    from dapbench.launch.scheduler import SlurmError, job_states, unavailable

    records = {}  # run folder -> its Slurm record
    for s in specs:
        d = results / s.relpath()
        if (d / slurm.RECORD).exists():
            records[d] = slurm.read_record(d)
    jobs: dict[str, JobState] = {}
    answered = False
    why = unavailable() if records else None  # one fast ping: squeue would retry for ~20 s
    if records and not why:
        try:
            jobs, answered = job_states(r["job_id"] for r in records.values()), True
        except SlurmError as e:
            why = str(e)
    out = []
    for s in specs:
        problem = folder_problem(s, results)
        if problem:
            out.append(RunState(s, problem[0], None, "", problem[1], None))
            continue
        state = cell_state(s, results)
        if state in ("new", *NOT_RUNNABLE):
            out.append(RunState(s, state if state != "new" else "pending", None, "", None, None))
            continue
        store = RunStore(results / s.relpath())
        st = store.status()
        rec = records.get(store.dir)
        job = jobs.get(rec["job_id"]) if rec else None
        if rec:
            state, error = slurm.run_state(store, st, job, rec, answered)
            state = "partial" if state == "pending" and st.epoch else state
            state = "partial" if state == "done" and st.epochs < s.epochs else state  # a suite that extends it
        else:
            error = "its process is gone: `run` resumes it" if state == "interrupted" else st.error
        shown = "" if rec is None else f"{rec['job_id']} {job or 'ended'}" if answered else rec["job_id"]
        ret, left = store.progress(s.epochs) if progress else (NAN, NAN)
        out.append(RunState(s, state, st, shown, error, rec.get("log") if rec else None, ret, left))
    return RunStates(out, why)


@dataclass(frozen=True)
class PreparationJob:
    """A job that makes a dataset or a shared prior before a suite's runs: its record and Slurm's state of it (None:
    ended when `answered`, else unknown)."""

    job_id: str
    what: str
    log: str | None
    state: JobState | None
    answered: bool


def preparation_jobs(results: Path) -> list[PreparationJob]:
    """The preparation jobs recorded in `results`, with their states when Slurm answers."""
    from dapbench.launch import slurm
    from dapbench.launch.scheduler import SlurmError, job_states, unavailable

    records = slurm.prepare_records(results)
    if not records:
        return []
    states: dict[str, JobState] = {}
    answered = False
    try:
        if not unavailable():
            states, answered = job_states(r["job_id"] for r in records), True
    except SlurmError:
        pass
    return [PreparationJob(r["job_id"], r["what"], r.get("log"), states.get(r["job_id"]), answered) for r in records]


def recorded_jobs(specs: list[RunSpec], results: Path, preparation: bool) -> list[str]:
    """The Slurm job ids recorded for the runs (and, with `preparation`, the suite's preparation jobs)."""
    from dapbench.launch import slurm

    ids = [r["job_id"] for s in specs if (r := slurm.read_record(results / s.relpath()))]
    if preparation:
        ids += [r["job_id"] for r in slurm.prepare_records(results)]
    return ids
