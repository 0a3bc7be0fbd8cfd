"""The suite schema: typed, validated suite entries and the frozen `RunSpec` of one run (its content hash and
identity). Validation of single fields only; checks that need the whole grid are in `checks`."""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from dapbench.naming import DEFAULT_STEPS, dataset_id, dataset_id_problem, name_problem
from dapbench.registry import algorithms
from dapbench.suite.problems import short, unknown_name
from dapbench.tasks.registry import TASKS

MAX_SEEDS = 10_000  # seeds in one suite
SEED_MAX = 2**32 - 1  # numpy's global seed is a 32-bit unsigned integer
# Upper bounds of the numbers a suite gives (validation only: no value a sane run uses is near them)
MAX_STEPS = 10**10  # environment steps of a run, an epoch, a horizon or a dataset
MAX_EPISODES = 100_000  # evaluation episodes per evaluation
MAX_THREADS = 1024  # torch threads per run
MAX_JOBS = 4096  # local launcher processes
MAX_RUNS = 100_000  # runs in one grid (checks.py), and so array tasks at once
MAX_RUNS_PER_JOB = 1024
MAX_TIMEOUTS = 1000  # requeues after a time limit
MAX_TIME_MIN = 366 * 24 * 60  # a Slurm job's time limit: a year
MAX_CPUS = 4096  # CPUs per Slurm task
MAX_MEM_GB = 2**20  # memory per Slurm node, GB (a petabyte: past any node, which Slurm then refuses itself)
MAX_GPUS = 64  # GPUs per Slurm node


def _safe_name(v: str) -> str:
    why = name_problem(v)
    if why:
        raise ValueError(why)
    return v


def _safe_dataset_id(v: str) -> str:
    why = dataset_id_problem(v)
    if why:
        raise ValueError(why)
    return v


def path_text(v: str) -> str:
    """A folder path given explicitly: any place the user names, but a path, not a trick."""
    if not v.strip():
        raise ValueError("the folder is empty; give a folder path or leave the key out")
    bad = next((c for c in v if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise ValueError(f"{v!r} contains the control character {bad!r}; a folder path is printable text")
    if len(v) > 4096:
        raise ValueError(f"the folder path has {len(v)} characters; at most 4096")
    return v


def _up_to(hi: int, what: str, lo: int | None = 1, unit: str = "") -> AfterValidator:
    """At most `hi`: the message gives the range, from `lo` (the field's type's bound; None: more than 0)."""

    def check(v: int | float) -> int | float:
        if v > hi:
            got = f"{v:,.12g}" if isinstance(v, float) else f"{v:,}"
            span = f"more than 0 and at most {hi:,}" if lo is None else f"{lo:,} to {hi:,}"
            raise ValueError(f"{got} is out of range: {what} is {span}{unit}")
        return v

    return AfterValidator(check)


Steps = Annotated[PositiveInt, _up_to(MAX_STEPS, "a number of environment steps")]


# A name that becomes one path component (suite name, label, task in a run spec); a dataset id (Minari's
# NAMESPACE/NAME-vN); a seed numpy, torch and Gymnasium all accept.
SafeName = Annotated[str, AfterValidator(_safe_name)]
DatasetId = Annotated[str, AfterValidator(_safe_dataset_id)]
PathText = Annotated[str, AfterValidator(path_text)]
Seed = Annotated[NonNegativeInt, _up_to(SEED_MAX, "a seed", 0)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EvalConfig(Strict):
    """The evaluation protocol: `episodes` episodes every `every` epochs (0 = never), each reset with a
    seed from `seeds` (fixed, independent of the training seed), acting with the policy's mean action
    when `deterministic`."""

    episodes: Annotated[PositiveInt, _up_to(MAX_EPISODES, "episodes")] = 10
    every: Annotated[NonNegativeInt, _up_to(MAX_STEPS, "every (epochs)", 0)] = 1
    seeds: list[Seed] | None = None  # default: 1_000_000 + i, i < episodes
    deterministic: bool = True

    @model_validator(mode="after")
    def _seeds_match(self) -> EvalConfig:
        if self.seeds is not None and len(self.seeds) != self.episodes:
            raise ValueError(f"seeds has {len(self.seeds)} entries but episodes is {self.episodes}")
        return self

    def episode_seeds(self) -> list[int]:
        return list(self.seeds) if self.seeds is not None else [1_000_000 + i for i in range(self.episodes)]


class Budget(Strict):
    """Environment steps per run (`total_steps`, default: the task's) and per epoch (the paper's 5,000).

    `horizon_steps`: the steps every progress-dependent schedule (PPO's learning-rate annealing, PPO-DAP's
    beta annealing, any algorithm's) is scaled to; default: `total_steps`. A run with total_steps 200,000
    under horizon_steps 1,000,000 is exactly the first 40 epochs of the 1.0M-step run, and can later be
    extended to more steps under the same horizon by resuming it (docs/suites.md)."""

    total_steps: Steps | None = None
    steps_per_epoch: Steps = 5000
    horizon_steps: Steps | None = None


class AlgorithmEntry(Strict):
    """An algorithm in a suite: its registered `name`, a `label` naming the variant in run folders and
    reports (default: the name), `config` values overriding its defaults, and optionally the only `tasks`
    it runs on (default: all the suite's tasks)."""

    name: SafeName
    label: SafeName | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    tasks: list[str] | None = None

    @property
    def key(self) -> str:
        return self.label or self.name


# ----- Slurm settings: what is written into the sbatch submission script --------------------------------------
# Each setting becomes a `#SBATCH --key=value` line of a bash script (submitit quotes the value, not the key): a
# line break or another control character would end the line and start a shell command, so none gets through.
# Names (partition, account, qos) are Slurm's names and lists of them; a constraint adds its operators
# (`intel&gpu`, `a|b`, `[rack1*2&rack2*4]`, `(a|b)&c`, `!gpu`); an option name is sbatch's long option.
SLURM_TEXT_MAX = 1024
_SLURM_NAME = "letters, digits and _ . - + , : @ = / %"
_SLURM_NAME_CHARS = re.compile(r"[A-Za-z0-9_.+,:@=/%-]+")
_CONSTRAINT = _SLURM_NAME + " & | ( ) [ ] * !"
_CONSTRAINT_CHARS = re.compile(r"[A-Za-z0-9_.+,:@=/%&|()\[\]*!-]+")
_OPTION = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
OPTION_RULE = "an sbatch option is its long name without the dashes: a letter, then letters, digits, '-' or '_'"


def _unsafe_char(v: str) -> str | None:
    """The first character of `v` that would break a line of the submission script (a control, format or
    line-separator character), or None."""
    return next((c for c in v if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")), None)


def _slurm_text(what: str, allowed: re.Pattern, rule: str) -> AfterValidator:
    def check(v: str) -> str:
        if not v:
            raise ValueError(f"the {what} is empty; give one or leave the key out (the cluster's default)")
        if len(v) > SLURM_TEXT_MAX:
            raise ValueError(f"the {what} has {len(v):,} characters; at most {SLURM_TEXT_MAX:,}")
        if not allowed.fullmatch(v):
            bad = next(c for c in v if not allowed.fullmatch(c))
            kind = "the control character " if _unsafe_char(bad) else ""
            raise ValueError(f"{short(v)} contains {kind}{bad!r}; a Slurm {what} is {rule}")
        if v.startswith("-"):
            raise ValueError(f"{short(v)} starts with '-'; a Slurm {what} is a name, not an option")
        return v

    return AfterValidator(check)


def _option_name(v: str) -> str:
    if not _OPTION.fullmatch(v) or len(v) > 64:
        bad = next((c for c in v if not (c.isascii() and (c.isalnum() or c in "-_"))), None)
        why = (f"contains {bad!r}" if bad is not None else "starts with " + repr(v[:1]) if v else "is empty")
        if len(v) > 64 and bad is None and v[:1].isalpha():
            why = f"has {len(v)} characters (at most 64)"
        raise ValueError(f"sbatch option {short(v)} {why}; {OPTION_RULE} (e.g. mail-type)")
    return v


def _option_value(v: str | int | float | bool) -> str | int | float | bool:
    if v is False:
        raise ValueError("false is not an sbatch value: true writes the bare flag; to leave an option out, "
                         "leave its key out")
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"{v} is not a number Slurm reads")
    if isinstance(v, str):
        bad = _unsafe_char(v)
        if bad is not None:
            raise ValueError(f"{short(v)} contains the control character {bad!r}; it would end the #SBATCH line of "
                             "the submission script and run the rest as a shell command: an sbatch value is one line "
                             "of printable text")
        if len(v) > SLURM_TEXT_MAX:
            raise ValueError(f"the value has {len(v):,} characters; at most {SLURM_TEXT_MAX:,}")
    return v


SbatchKey = Annotated[str, AfterValidator(_option_name)]
SbatchValue = Annotated[str | int | float | bool, AfterValidator(_option_value)]
# sbatch options dapbench sets itself: the typed fields of SlurmResources, and what submitit or the
# launcher writes (array, log files, signal, dependency on the preparation jobs)
RESERVED_SBATCH = frozenset({
    "partition", "time", "cpus-per-task", "mem", "gpus-per-node", "account", "qos", "constraint", "array",
    "output", "error", "open-mode", "signal", "dependency", "job-name",
})


# submitit has Slurm signal a job 90 s before its time limit (`--signal=USR2@90`; Slurm may send it up to a
# minute early): a shorter limit is signalled before any work is done
MIN_TIME_MIN = 3


class SlurmResources(Strict):
    """What each Slurm job asks for; a field left at None is left to the cluster's default. In `overrides`
    and `launcher.prepare` only the fields given replace the suite's (`sbatch` entries are merged)."""

    partition: Annotated[str, _slurm_text("partition", _SLURM_NAME_CHARS, _SLURM_NAME)] | None = None
    # wall-clock limit in minutes (a job past it is requeued from its checkpoint)
    time_min: Annotated[PositiveInt, _up_to(MAX_TIME_MIN, "time_min", unit=" minutes (366 days)")] = 60
    cpus_per_task: Annotated[PositiveInt, _up_to(MAX_CPUS, "cpus_per_task")] = 1
    mem_gb: Annotated[PositiveFloat, _up_to(MAX_MEM_GB, "mem_gb", None, " GB")] | None = None
    gpus_per_node: Annotated[NonNegativeInt, _up_to(MAX_GPUS, "gpus_per_node", 0)] = 0
    account: Annotated[str, _slurm_text("account", _SLURM_NAME_CHARS, _SLURM_NAME)] | None = None
    qos: Annotated[str, _slurm_text("qos", _SLURM_NAME_CHARS, _SLURM_NAME)] | None = None
    constraint: Annotated[str, _slurm_text("constraint", _CONSTRAINT_CHARS, _CONSTRAINT)] | None = None
    sbatch: dict[SbatchKey, SbatchValue] = Field(default_factory=dict)  # any other sbatch option; true = a bare flag

    @field_validator("sbatch")
    @classmethod
    def _not_reserved(cls, v: dict[str, SbatchValue]) -> dict[str, SbatchValue]:
        taken = sorted(k for k in v if k.replace("_", "-").lstrip("-") in RESERVED_SBATCH)
        if taken:
            raise ValueError(f"{', '.join(taken)}: set by dapbench; use the typed fields (partition, time_min, "
                             "cpus_per_task, mem_gb, gpus_per_node, account, qos, constraint) instead")
        seen: dict[str, str] = {}
        for k in v:  # submitit writes `mail_type` as --mail-type: two spellings would be two lines
            first = seen.setdefault(k.replace("_", "-"), k)
            if first != k:
                raise ValueError(f"{first} and {k} are one option (--{k.replace('_', '-')}); give it once")
        return v

    @field_validator("time_min")
    @classmethod
    def _outlasts_the_warning(cls, v: int) -> int:
        if v < MIN_TIME_MIN:
            raise ValueError(
                f"{v} min is shorter than the job's warning: Slurm signals a job 90 s before its limit (submitit's "
                "--signal=USR2@90, up to a minute early), so every attempt would be checkpointed and counted as a "
                f"time-out before doing any work, until max_timeouts runs out; use at least {MIN_TIME_MIN}")
        return v

    def merged(self, patch: SlurmResources | None) -> SlurmResources:
        """These resources with the fields set in `patch` replaced (its `sbatch` entries merged in)."""
        if patch is None:
            return self
        update = patch.model_dump(exclude_unset=True)
        update["sbatch"] = {**self.sbatch, **patch.sbatch}
        return self.model_copy(update=update)


class Override(Strict):
    """Settings for the cells matching `tasks` and `algorithms` (labels; omitted = all), applied in order."""

    tasks: list[str] | None = None
    algorithms: list[str] | None = None
    budget: Budget | None = None
    evaluation: EvalConfig | None = None
    config: dict[str, Any] | None = None
    device: Literal["cpu", "cuda", "auto"] | None = None
    dataset: DatasetId | None = None
    resources: SlurmResources | None = None  # Slurm resources of these runs (the fields given)

    def names_label(self, label: str) -> bool:
        """Whether the override is for the algorithm labelled `label` (no `algorithms:` = every one)."""
        return self.algorithms is None or label in self.algorithms

    def applies(self, task: str, label: str) -> bool:
        """Whether the override applies to the cell of `task` and the algorithm labelled `label`: the one test
        the grid's cells and their Slurm resources share."""
        return (self.tasks is None or task in self.tasks) and self.names_label(label)


class DatasetEntry(Strict):
    """A dataset the suite knows how to make (`dapbench data make TASK --quality ... --seed ... --steps ...`)."""

    task: str
    quality: Literal["random", "medium", "replay", "expert"] = "medium"
    seed: Seed = 0
    steps: Steps = DEFAULT_STEPS
    behaviour_steps: Steps | None = None

    @property
    def id(self) -> str:
        return dataset_id(self.task, self.quality, self.seed, self.steps, self.behaviour_steps)

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        if v not in TASKS:
            raise ValueError(unknown_name("task", v, list(TASKS)))
        return v


class LauncherConfig(Strict):
    """How runs are launched: `debug` (in this process, one after another), `local` (a pool of `jobs`
    processes, default: the number of cores) or `slurm` (job arrays through submitit, docs/slurm.md):
    at most `parallelism` array tasks at once (default: no limit), each with `resources`; datasets and
    shared priors are made first by jobs with `prepare` (default: `resources`); a job requeued more than
    `max_timeouts` times after reaching its time limit is given up. `runs_per_job` packs that many runs
    (of one resource request) into each job, one process each, sharing its `resources`."""

    name: Literal["debug", "local", "slurm"] = "local"
    jobs: Annotated[PositiveInt, _up_to(MAX_JOBS, "jobs")] | None = None
    parallelism: Annotated[PositiveInt, _up_to(MAX_RUNS, "parallelism (the most runs a suite has)")] | None = None
    runs_per_job: Annotated[PositiveInt, _up_to(MAX_RUNS_PER_JOB, "runs_per_job")] = 1
    resources: SlurmResources = SlurmResources()
    prepare: SlurmResources | None = None
    max_timeouts: Annotated[NonNegativeInt, _up_to(MAX_TIMEOUTS, "max_timeouts", 0)] = 10


class Suite(Strict):
    """A grid of runs: tasks x algorithms x seeds with a budget, an evaluation protocol and overrides."""

    name: SafeName
    description: str = ""
    results_dir: PathText | None = None  # default: results/<name>
    tasks: list[str] | Literal["all", "available"]
    algorithms: list[AlgorithmEntry]
    seeds: list[int] | int
    budget: Budget = Budget()
    evaluation: EvalConfig = EvalConfig()
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    torch_threads: Annotated[PositiveInt, _up_to(MAX_THREADS, "torch_threads")] = 1
    tensorboard: bool = False  # also write each run's epochs as TensorBoard events (a view: not the run's identity)
    overrides: list[Override] = Field(default_factory=list)
    launcher: LauncherConfig = LauncherConfig()
    dataset: DatasetId | None = None  # Minari id for algorithms that need logged data; default: the task's
    datasets: list[DatasetEntry] = Field(default_factory=list)  # datasets `run` makes first when missing

    @field_validator("algorithms", mode="before")
    @classmethod
    def _names_to_entries(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": x} if isinstance(x, str) else x for x in v]
        return v

    @field_validator("tasks", mode="before")
    @classmethod
    def _tasks_shape(cls, v: Any) -> Any:
        if v in ("all", "available") or (isinstance(v, list) and v and all(isinstance(x, str) for x in v)):
            return v
        raise ValueError(f"tasks is a non-empty list of task names, or 'all' or 'available' (got {short(v)})")

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds_shape(cls, v: Any) -> Any:
        def is_int(x: Any) -> bool:
            return isinstance(x, int) and not isinstance(x, bool)

        if is_int(v):
            if not 0 < v <= MAX_SEEDS:
                raise ValueError(f"a seed count is 1 to {MAX_SEEDS:,} (got {v})")
        elif isinstance(v, list) and v and all(is_int(x) for x in v):
            if len(v) > MAX_SEEDS:
                raise ValueError(f"{len(v):,} seeds; a suite has at most {MAX_SEEDS:,}")
            bad = [x for x in v if not 0 <= x <= SEED_MAX]
            if bad:
                raise ValueError(f"seed {bad[0]} is out of range: a seed is 0 to {SEED_MAX:,}")
        else:
            raise ValueError(f"seeds is a count (e.g. 10 for seeds 0..9) or a non-empty list of seeds (got "
                             f"{short(v)})")
        return v

    @property
    def task_names(self) -> list[str]:
        if self.tasks == "all":
            return list(TASKS)
        if self.tasks == "available":
            return [t for t, info in TASKS.items() if info.available]
        return list(self.tasks)

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def results_path(self) -> Path:
        return Path(self.results_dir or f"results/{self.name}")


LATE_FIELDS: dict[str, Any] = {"horizon_steps": None}  # spec fields added after 0.1, with their defaults
VIEW_FIELDS = ("tensorboard",)  # how a run is watched, never what it computes: outside its hash and identity


class RunSpec(Strict):
    """One run, fully resolved: a run is a pure function of this (plus the code version)."""

    task: SafeName
    algorithm: str
    label: SafeName
    seed: Seed
    total_steps: Steps
    steps_per_epoch: Steps
    evaluation: EvalConfig
    config: dict[str, Any]  # the algorithm's full config, defaults included
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    torch_threads: Annotated[PositiveInt, _up_to(MAX_THREADS, "torch_threads")] = 1
    snapshot_every: NonNegativeInt = 0  # keep the policy every k epochs (0 = never); behaviour runs use 1
    dataset: DatasetId | None = None  # Minari id of the logged data, for algorithms that need one
    horizon_steps: Steps | None = None  # the steps schedules are scaled to; None = total_steps
    tensorboard: bool = False  # a view of the per-epoch table as TensorBoard events (VIEW_FIELDS: not hashed)

    @property
    def epochs(self) -> int:
        return self.total_steps // self.steps_per_epoch

    @property
    def horizon(self) -> int:
        """The steps every progress-dependent schedule is scaled to (what algorithms see as the budget)."""
        return self.horizon_steps or self.total_steps

    def _digest(self, drop: tuple[str, ...] = ()) -> str:
        body = self.model_dump(mode="json")
        for k, default in LATE_FIELDS.items():  # fields added later enter the hash only when set
            if body.get(k) == default:
                body.pop(k)
        for k in (*VIEW_FIELDS, *drop):
            body.pop(k, None)
        blob = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON of the spec, first 16 hex digits. A field added after a release
        (LATE_FIELDS) is left out while it has its default, so run folders made before it keep their hash."""
        return self._digest()

    @property
    def identity(self) -> str:
        """What makes two specs the same run: the hash, without `total_steps` when an explicit horizon fixes the
        schedules (the same run then only stops later or earlier)."""
        return self._digest(("total_steps",)) if self.horizon_steps is not None else self.hash

    def extends(self, other: RunSpec) -> bool:
        """Whether this spec is `other` with a budget at least as long under the same explicit horizon."""
        return (self.horizon_steps is not None and self.identity == other.identity
                and self.total_steps >= other.total_steps)

    def relpath(self) -> Path:
        return Path(self.task) / self.label / f"seed_{self.seed}"

    @property
    def implemented(self) -> bool:
        return self.algorithm in algorithms()

    @property
    def runnable(self) -> bool:
        return self.implemented and TASKS[self.task].available
