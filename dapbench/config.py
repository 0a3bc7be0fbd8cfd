"""Typed, validated suite and run specs.

A suite YAML file is validated into a `Suite`, then expanded into a grid of frozen `RunSpec`s
(task x algorithm x seed, overrides applied, algorithm config resolved with its defaults). Every
problem is reported in one `SuiteError` that names the file, the field (with its YAML line) and what is
allowed.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import stat
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from dapbench.errors import BadInputError, SuiteError
from dapbench.naming import dataset_id, dataset_id_problem, name_problem
from dapbench.registry import algorithms, describe_recorded, known_names, recorded_origin
from dapbench.registry import unavailable as algorithm_unavailable
from dapbench.tasks.registry import TASKS

SUITE_DOCS = "docs/suites.md"
MAX_SUITE_BYTES = 1 << 20  # a suite is a page of YAML; anything larger is not one
MAX_VALUES = 100_000  # values in a suite once its aliases are expanded (a "billion laughs" file stops here)
MAX_SEEDS = 10_000  # seeds in one suite
MAX_RUNS = 100_000  # runs in one grid
SEED_MAX = 2**32 - 1  # numpy's global seed is a 32-bit unsigned integer


def _short(v: Any) -> str:
    """repr(v), cut to 80 characters (a hostile value must not flood the message)."""
    r = repr(v)
    return r if len(r) <= 80 else r[:76] + "...)"


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


def _path_text(v: str) -> str:
    """A folder path given explicitly: any place the user names, but a path, not a trick."""
    if not v.strip():
        raise ValueError("the folder is empty; give a folder path or leave the key out")
    bad = next((c for c in v if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise ValueError(f"{v!r} contains the control character {bad!r}; a folder path is printable text")
    if len(v) > 4096:
        raise ValueError(f"the folder path has {len(v)} characters; at most 4096")
    return v


# A name that becomes one path component (suite name, label, task in a run spec); a dataset id (Minari's
# NAMESPACE/NAME-vN); a seed numpy, torch and Gymnasium all accept.
SafeName = Annotated[str, AfterValidator(_safe_name)]
DatasetId = Annotated[str, AfterValidator(_safe_dataset_id)]
PathText = Annotated[str, AfterValidator(_path_text)]
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EvalConfig(Strict):
    """The evaluation protocol: `episodes` episodes every `every` epochs (0 = never), each reset with a
    seed from `seeds` (fixed, independent of the training seed), acting with the policy's mean action
    when `deterministic`."""

    episodes: PositiveInt = 10
    every: NonNegativeInt = 1
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

    total_steps: PositiveInt | None = None
    steps_per_epoch: PositiveInt = 5000
    horizon_steps: PositiveInt | None = None


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


SbatchValue = str | int | float | bool
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

    partition: str | None = None
    time_min: PositiveInt = 60  # wall-clock limit in minutes (a job past it is requeued from its checkpoint)
    cpus_per_task: PositiveInt = 1
    mem_gb: PositiveFloat | None = None
    gpus_per_node: NonNegativeInt = 0
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    sbatch: dict[str, SbatchValue] = Field(default_factory=dict)  # any other sbatch option; true = a bare flag

    @field_validator("sbatch")
    @classmethod
    def _not_reserved(cls, v: dict[str, SbatchValue]) -> dict[str, SbatchValue]:
        taken = sorted(k for k in v if k.replace("_", "-").lstrip("-") in RESERVED_SBATCH)
        if taken:
            raise ValueError(f"{', '.join(taken)}: set by dapbench; use the typed fields (partition, time_min, "
                             "cpus_per_task, mem_gb, gpus_per_node, account, qos, constraint) instead")
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


class DatasetEntry(Strict):
    """A dataset the suite knows how to make (`dapbench data make TASK --quality ... --seed ... --steps ...`)."""

    task: str
    quality: Literal["random", "medium", "replay", "expert"] = "medium"
    seed: NonNegativeInt = 0
    steps: PositiveInt = 200_000
    behaviour_steps: PositiveInt | None = None

    @property
    def id(self) -> str:
        return dataset_id(self.task, self.quality, self.seed, self.steps, self.behaviour_steps)

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        if v not in TASKS:
            raise ValueError(_unknown("task", v, list(TASKS)))
        return v


class LauncherConfig(Strict):
    """How runs are launched: `debug` (in this process, one after another), `local` (a pool of `jobs`
    processes, default: the number of cores) or `slurm` (job arrays through submitit, docs/slurm.md):
    at most `parallelism` array tasks at once (default: no limit), each with `resources`; datasets and
    shared priors are made first by jobs with `prepare` (default: `resources`); a job requeued more than
    `max_timeouts` times after reaching its time limit is given up. `runs_per_job` packs that many runs
    (of one resource request) into each job, one process each, sharing its `resources`."""

    name: Literal["debug", "local", "slurm"] = "local"
    jobs: PositiveInt | None = None
    parallelism: PositiveInt | None = None
    runs_per_job: PositiveInt = 1
    resources: SlurmResources = SlurmResources()
    prepare: SlurmResources | None = None
    max_timeouts: NonNegativeInt = 10


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
    torch_threads: PositiveInt = 1
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
        raise ValueError(f"tasks is a non-empty list of task names, or 'all' or 'available' (got {_short(v)})")

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
                             f"{_short(v)})")
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
    total_steps: PositiveInt
    steps_per_epoch: PositiveInt
    evaluation: EvalConfig
    config: dict[str, Any]  # the algorithm's full config, defaults included
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    torch_threads: PositiveInt = 1
    snapshot_every: NonNegativeInt = 0  # keep the policy every k epochs (0 = never); behaviour runs use 1
    dataset: DatasetId | None = None  # Minari id of the logged data, for algorithms that need one
    horizon_steps: PositiveInt | None = None  # the steps schedules are scaled to; None = total_steps
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


# ----- reading a suite file --------------------------------------------------------------------------------
_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}


def _line_at(data: bytes, offset: int) -> int:
    return data[:offset].count(b"\n") + 1


def _read_text(path: Path) -> str:
    """The suite file's text, or one `SuiteError` line saying why it is not a readable UTF-8 text file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SuiteError(f"{path}: no such suite file") from None
    except OSError as e:
        raise SuiteError(f"{path}: cannot read the suite file ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise SuiteError(f"{path}: is a folder; give the suite's YAML file (e.g. suites/quick.yaml)")
    if not stat.S_ISREG(st.st_mode):
        raise SuiteError(f"{path}: not a regular file; a suite is a YAML file")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SUITE_BYTES + 1)
    except OSError as e:
        raise SuiteError(f"{path}: cannot read the suite file ({e.strerror or e})") from None
    if len(data) > MAX_SUITE_BYTES:
        raise SuiteError(f"{path}: larger than {MAX_SUITE_BYTES // 1024} KiB; a suite is a page of YAML")
    for bom, enc in _BOMS.items():
        if data.startswith(bom):
            raise SuiteError(f"{path}: {enc} text; save the suite as UTF-8")
    if b"\0" in data:
        at = data.index(b"\0")
        raise SuiteError(f"{path}:{_line_at(data, at)}: a binary file (a NUL byte at offset {at}), not a "
                         "YAML suite")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SuiteError(f"{path}:{_line_at(data, e.start)}: not UTF-8 text (byte 0x{data[e.start]:02x} at "
                         f"offset {e.start}); save the suite as UTF-8") from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise SuiteError(f"{path}: the file is empty; a suite is a YAML mapping ({SUITE_DOCS})")
    return text


def _yaml_error(path: Path, text: str, e: yaml.YAMLError) -> str:
    """A YAML error as one line: `file:line:column: what`."""
    if isinstance(e, yaml.reader.ReaderError):
        line = text[: e.position].count("\n") + 1
        char = e.character if isinstance(e.character, int) else ord(e.character)
        return f"{path}:{line}: the control character #x{char:04x}, which YAML does not allow in a file"
    mark = getattr(e, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    what = " ".join(str(getattr(e, "problem", None) or e).split())
    context, cmark = getattr(e, "context", None), getattr(e, "context_mark", None)
    if context and cmark is not None:
        what += f" ({' '.join(context.split())} at line {cmark.line + 1})"
    return f"{where}: YAML syntax error: {what}"


_MERGE = "tag:yaml.org,2002:merge"
_STR = "tag:yaml.org,2002:str"


def _parse(path: Path, text: str) -> tuple[Any, dict[tuple, int], list[str]]:
    """(data, YAML path -> line, problems) of a strict reading: a key given twice in one mapping, or a key that
    YAML reads as something other than a name, is a problem; a recursive alias, or aliases expanding past
    MAX_VALUES values, is refused at once."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as e:
        raise SuiteError(_yaml_error(path, text, e)) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise SuiteError(f"{path}: the file holds no YAML document; a suite is a YAML mapping ({SUITE_DOCS})")
        lines, problems = _index(path, node)
        try:
            data = loader.construct_document(node)
        except yaml.YAMLError:
            if problems:  # e.g. a list used as a key: the problem already says it
                raise SuiteError(_report(path, problems)) from None
            raise
        return data, lines, problems
    except yaml.YAMLError as e:
        raise SuiteError(_yaml_error(path, text, e)) from None
    except RecursionError:
        raise SuiteError(f"{path}: nested too deeply to be a suite") from None
    finally:
        loader.dispose()


def _index(path: Path, root: yaml.Node) -> tuple[dict[tuple, int], list[str]]:
    """Map each YAML path (tuple of keys / indices) to its 1-based line; check keys and aliases."""
    lines: dict[tuple, int] = {}
    problems: list[str] = []
    walked: set[int] = set()
    open_: set[int] = set()

    def walk(node: yaml.Node, loc: tuple) -> None:
        if id(node) in open_:
            raise SuiteError(f"{path}:{node.start_mark.line + 1}: {_fmt_path(loc)}: a recursive alias (an anchor "
                             "used inside itself); a suite is a tree")
        lines.setdefault(loc, node.start_mark.line + 1)
        if id(node) in walked:  # an alias of a node already walked
            return
        walked.add(id(node))
        open_.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for k, v in node.value:
                if k.tag == _MERGE:
                    walk(v, (*loc, "<<"))
                    continue
                line = k.start_mark.line + 1
                if not isinstance(k, yaml.ScalarNode):
                    problems.append(f"{path}:{line}: {_fmt_path(loc)}: a key is a name, not a list or mapping")
                    walk(v, loc)
                    continue
                key = k.value
                if k.tag != _STR:
                    kind = k.tag.rsplit(":", 1)[-1]
                    problems.append(f"{path}:{line}: {_fmt_path((*loc, key))}: YAML reads the key {key!r} as "
                                    f"{'a' if kind != 'int' else 'an'} {kind}, not a name; quote it: '{key}'")
                elif key in first:
                    problems.append(f"{path}:{line}: {_fmt_path((*loc, key))}: key {key!r} given twice (lines "
                                    f"{first[key]} and {line}); YAML would keep only the last value: remove one")
                first.setdefault(key, line)
                walk(v, (*loc, key))
                lines[(*loc, key)] = line  # a key's own line, not its value's
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, (*loc, i))
        open_.discard(id(node))

    walk(root, ())
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:  # values once aliases are expanded (memoised: the graph has no cycle)
        if id(node) not in sizes:
            kids = ([x for kv in node.value for x in kv] if isinstance(node, yaml.MappingNode)
                    else node.value if isinstance(node, yaml.SequenceNode) else [])
            sizes[id(node)] = 1 + sum(size(c) for c in kids)
        return sizes[id(node)]

    n = size(root)
    if n > MAX_VALUES:
        raise SuiteError(f"{path}: its aliases expand it to {n:,} values; a suite holds at most {MAX_VALUES:,}")
    return lines, problems


# ----- problems --------------------------------------------------------------------------------------------
def _fmt_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _line_of(lines: dict[tuple, int], loc: tuple) -> int | None:
    for n in range(len(loc), -1, -1):
        if tuple(loc[:n]) in lines:
            return lines[tuple(loc[:n])]
    return None


def _problem(path: Path, lines: dict[tuple, int], loc: tuple, msg: str) -> str:
    line = _line_of(lines, loc)
    where = f"{path}:{line}" if line else str(path)
    return f"{where}: {_fmt_path(loc)}: {msg}"


def _closest(word: str, options: list[str]) -> str | None:
    """The option a typo most likely meant: difflib's closest match, else the option `word` abbreviates
    (`lr` -> `learning_rate`)."""
    match = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if match:
        return match[0]
    initials = [o for o in options if "_" in o and "".join(p[:1] for p in o.split("_")) == word]
    return initials[0] if len(initials) == 1 else None


def _unknown(what: str, value: str, allowed: list[str], more: str = "") -> str:
    guess = _closest(value, allowed) if isinstance(value, str) else None
    return (f"unknown {what} {value!r}; " + (f"did you mean {guess!r}? " if guess else "")
            + f"allowed: {', '.join(allowed)}{more}")


_BRANCHES = ("list", "int", "str", "float", "bool", "literal")


def _clean_loc(loc: tuple) -> tuple:
    """A pydantic error location without its union-branch markers (`list[str]`, `literal[...]`, ...)."""
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in _BRANCHES)))


def _keys_of(model: Any, parent: tuple) -> list[str] | None:
    """The keys a mapping at `parent` (under `model`) allows, or None when it is not a model's mapping."""
    for n in (p for p in parent if isinstance(p, str)):
        field = model.model_fields.get(n)
        if field is None:
            return None
        args = getattr(field.annotation, "__args__", None) or (field.annotation,)
        cand = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if not cand:
            inner = [x for a in args for x in getattr(a, "__args__", ())]  # list[Model]
            cand = [a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)]
        if not cand:
            return None
        model = cand[0]
    return list(model.model_fields)


def _pydantic_problems(path: Path, lines: dict[tuple, int], errors: list[dict], model: Any, prefix: tuple = (),
                       note: dict[tuple, str] | None = None) -> list[tuple[tuple, str]]:
    """(location, one-line problem) per pydantic error, `prefix` + its location, unknown keys with the closest
    valid name; `note` adds a remark to the problems at a location."""
    out: list[tuple[tuple, str]] = []
    branches: dict[tuple, list[str]] = {}  # location -> the union's branches that all refused the value
    for e in errors:
        loc, marks = _clean_loc(e["loc"]), [p for p in e["loc"] if p not in _clean_loc(e["loc"])]
        if marks:
            branches.setdefault(loc, []).append(str(marks[0]))
    said: set[tuple] = set()
    for e in errors:
        if e["type"] == "invalid_key":  # a key YAML did not read as a name: `_index` says which
            continue
        loc = _clean_loc(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")  # our validators' messages already say what was given
        if len(set(branches.get(loc, ()))) > 1:  # one value that no branch of a union took: one problem
            if loc in said:
                continue
            said.add(loc)
            msg = f"expected {' or '.join(dict.fromkeys(branches[loc]))} (got {_short(e.get('input'))})"
        if e["type"] == "extra_forbidden" and loc and isinstance(loc[-1], str):
            allowed = _keys_of(model, loc[:-1]) or []
            guess = _closest(loc[-1], allowed)
            msg = (f"unknown key; did you mean {guess!r}?" if guess else
                   "unknown key" + (f"; allowed keys: {', '.join(allowed)}" if allowed else ""))
        elif e["type"] != "value_error" and not isinstance(e.get("input"), dict | list):
            msg = f"{msg} (got {_short(e.get('input'))})"
        if note and loc in note:
            msg += note[loc]
        out.append((loc, _problem(path, lines, prefix + loc, msg)))
    return out


def one_line_errors(e: ValidationError) -> str:
    """A pydantic error in one line: `field: message` per problem."""
    return "; ".join(f"{'.'.join(map(str, x['loc'])) or 'the value'}: {x['msg'].removeprefix('Value error, ')}"
                     for x in e.errors())


def _report(path: Path, problems: list[str]) -> str:
    problems = list(dict.fromkeys(problems))
    if len(problems) == 1:
        return f"{problems[0]} (invalid suite; see {SUITE_DOCS})"
    head = f"invalid suite {path} ({len(problems)} problems; see {SUITE_DOCS}):"
    return "\n  ".join([head, *problems])


# ----- loading -----------------------------------------------------------------------------------------------
def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file; one `SuiteError` listing every problem otherwise (a file that is not a
    readable UTF-8 YAML mapping: one line)."""
    path = Path(path)
    text = _read_text(path)
    data, lines, problems = _parse(path, text)
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"the value {data!r}"[:80]
        raise SuiteError(f"{path}:1: a suite is a YAML mapping with keys {', '.join(Suite.model_fields)} (the file "
                         f"holds {kind})")
    note = {}
    if "name" not in data:
        data = {**data, "name": path.stem}
        note[("name",)] = " (the name comes from the file name, as the suite sets no `name:`; set one)"
    suite, origin, dropped, found = _validate(path, lines, data, note)
    problems += found
    if suite is not None:
        problems += _check_grid(suite, path, lines, origin, dropped, data)
    if problems:
        raise SuiteError(_report(path, problems))
    return suite


_LISTS = ("algorithms", "overrides", "datasets")
_PLACEHOLDER = {"name": "suite", "tasks": [], "algorithms": [], "seeds": [0]}


def _validate(path: Path, lines: dict[tuple, int], data: dict, note: dict
              ) -> tuple[Suite | None, dict[str, list[int]], set[str], list[str]]:
    """(suite, origin, dropped, problems). When pydantic refuses parts of the suite, those parts are left out
    (a list entry, or a top-level key, replaced by its default) and the rest is validated again, so the grid
    checks still see everything else: `origin[k][i]` is the index in the file of entry i of list k, `dropped`
    the top-level keys left out."""
    try:
        return Suite.model_validate(data), {}, set(), []
    except ValidationError as e:
        errors = e.errors()
    problems = [p for _, p in _pydantic_problems(path, lines, errors, Suite, note=note)]
    drop_top: set[str] = set()
    drop_items: dict[str, set[int]] = {}
    for err in errors:
        loc = _clean_loc(err["loc"])
        if err["type"] == "invalid_key" and len(loc) == 1:
            continue  # a top-level key that is not a string: left out below
        if not loc:
            return None, {}, set(), problems
        if loc[0] in _LISTS and len(loc) > 1 and isinstance(loc[1], int):
            drop_items.setdefault(str(loc[0]), set()).add(loc[1])
        else:
            drop_top.add(str(loc[0]))
    pruned = {k: v for k, v in data.items() if isinstance(k, str) and k not in drop_top}
    for k in drop_top & set(_PLACEHOLDER):
        pruned[k] = _PLACEHOLDER[k]
    origin: dict[str, list[int]] = {}
    for k, idx in drop_items.items():
        keep = [i for i in range(len(data[k])) if i not in idx]
        pruned[k] = [data[k][i] for i in keep]
        origin[k] = keep
    try:
        suite = Suite.model_validate(pruned)
    except ValidationError:
        return None, {}, set(), problems
    return suite, origin, drop_top | {f"{k}[]" for k in drop_items}, problems


def _raw_labels(data: dict) -> list[str]:
    """The labels the file gives its algorithms, even those of entries that did not validate."""
    out = []
    raw = data.get("algorithms")
    for x in raw if isinstance(raw, list) else []:
        if isinstance(x, str):
            out.append(x)
        elif isinstance(x, dict) and isinstance(x.get("label") or x.get("name"), str):
            out.append(x.get("label") or x.get("name"))
    return out


def _check_grid(suite: Suite, path: Path, lines: dict[tuple, int], origin: dict[str, list[int]], dropped: set[str],
                data: dict) -> list[str]:
    """Checks that need the registries or the whole grid: known names, override targets, algorithm configs
    (each at its own line), repeated cells, budget divisibility. Every problem, not the first."""
    problems: list[str] = []
    at = lambda k, i: origin[k][i] if k in origin else i  # noqa: E731 - the entry's index in the file
    registry, names = algorithms(), known_names()

    def add(loc: tuple, msg: str) -> None:
        problems.append(_problem(path, lines, loc, msg))

    def twice(what: str, loc: tuple, first: tuple) -> None:
        add(loc, f"{what} is also {_fmt_path(first)} (line {_line_of(lines, first)}): two cells of the grid would "
                 "share a run folder; give each once")

    # tasks: known, each once
    task_at: dict[str, int] = {}
    if isinstance(suite.tasks, list):
        for i, t in enumerate(suite.tasks):
            if t not in TASKS:
                add(("tasks", i), _unknown("task", t, list(TASKS), ", or 'all' / 'available' for the whole list"))
            elif t in task_at:
                twice(f"task {t!r}", ("tasks", i), ("tasks", task_at[t]))
            else:
                task_at[t] = i
    tasks = [t for t in dict.fromkeys(suite.task_names) if t in TASKS]
    tasks_known = "tasks" not in dropped

    # seeds: each once
    if isinstance(suite.seeds, list) and "seeds" not in dropped:
        seed_at: dict[int, int] = {}
        for i, s in enumerate(suite.seeds):
            if s in seed_at:
                twice(f"seed {s}", ("seeds", i), ("seeds", seed_at[s]))
            else:
                seed_at.setdefault(s, i)

    # algorithms: known names, labels unique (also without regard to case), tasks in the suite, configs
    if not suite.algorithms and not {"algorithms", "algorithms[]"} & dropped:
        add(("algorithms",), "no algorithms: list at least one (`dapbench algos` shows them)")
    label_at: dict[str, int] = {}
    reported: set[tuple] = set()  # (config location, key) already reported
    for i, a in enumerate(suite.algorithms):
        fi = at("algorithms", i)
        if a.name not in names:
            rec = recorded_origin(a.name, suite.results_path())  # an uninstalled plug-in: name it from its runs
            add(("algorithms", fi, "name"), _unknown("algorithm", a.name, names)
                + (f"; {describe_recorded(rec)}" if rec else ""))
        key = a.key.casefold()
        if key in label_at:
            j = label_at[key]
            first = suite.algorithms[[at("algorithms", x) for x in range(len(suite.algorithms))].index(j)].key
            same = "" if first == a.key else f" (as {first!r}: a case-insensitive file system merges the two)"
            add(("algorithms", fi, "label" if a.label else "name"),
                f"label {a.key!r} is also the label of algorithms[{j}] (line {_line_of(lines, ('algorithms', j))})"
                f"{same}; labels name run folders, so each is unique: give one a different `label:`")
        else:
            label_at[key] = fi
        if tasks_known:
            for ti, t in enumerate(a.tasks or []):
                if t not in suite.task_names:
                    add(("algorithms", fi, "tasks", ti), f"task {t!r} is not in the suite's tasks "
                        f"({', '.join(suite.task_names)})")
        if a.name in registry:
            for k, p in _config_problems(path, lines, registry[a.name], a.config, ("algorithms", fi, "config")):
                reported.add((("algorithms", fi, "config"), k))
                problems.append(p)

    # overrides: targets that exist, config keys the targeted algorithms know
    labels = [a.key for a in suite.algorithms]
    all_labels = list(dict.fromkeys(labels + _raw_labels(data)))
    for i, o in enumerate(suite.overrides):
        fi = at("overrides", i)
        if tasks_known:
            for ti, t in enumerate(o.tasks or []):
                if t not in suite.task_names:
                    add(("overrides", fi, "tasks", ti), f"task {t!r} is not in the suite's tasks "
                        f"({', '.join(suite.task_names)})")
        if "algorithms" not in dropped:
            for ai, lab in enumerate(o.algorithms or []):
                if lab not in all_labels:
                    guess = _closest(lab, all_labels)
                    add(("overrides", fi, "algorithms", ai), f"algorithm {lab!r} is not a label of the suite's "
                        "algorithms" + (f"; did you mean {guess!r}?" if guess else f" ({', '.join(all_labels)})"))
        if o.config:
            targets = [a for a in suite.algorithms if o.algorithms is None or a.key in o.algorithms]
            where = ("overrides", fi, "config")
            for k, p in _override_config_problems(path, lines, o, targets, where):
                reported.add((where, k))
                problems.append(p)

    # datasets the suite makes: each once
    ds_at: dict[str, int] = {}
    for i, d in enumerate(suite.datasets):
        fi = at("datasets", i)
        if d.id in ds_at:
            add(("datasets", fi), f"dataset {d.id} is also datasets[{ds_at[d.id]}] (line "
                f"{_line_of(lines, ('datasets', ds_at[d.id]))}); give each once")
        else:
            ds_at[d.id] = fi

    if dropped:  # the cells would be built from a suite with parts left out: their checks would mislead
        return problems
    n_runs = sum(len([t for t in tasks if a.tasks is None or t in a.tasks]) for a in suite.algorithms
                 ) * len(suite.seed_list)
    if n_runs > MAX_RUNS:
        problems.append(_problem(path, lines, ("seeds",), f"the grid has {n_runs:,} runs; a suite has at most "
                                 f"{MAX_RUNS:,}: split it"))
        return problems
    problems += _check_cells(suite, path, lines, tasks, reported, bool(problems))
    return problems


def _config_problems(path: Path, lines: dict[tuple, int], cls: Any, config: dict, where: tuple
                     ) -> list[tuple[Any, str]]:
    """(key, problem) for each key of `config` (one source: an algorithm entry) the algorithm's Config refuses.
    Checks between fields wait for the merged config (`_check_cells`)."""
    try:
        cls.Config.model_validate(config)
        return []
    except ValidationError as e:
        errors = [x for x in e.errors() if x["loc"]]
    return [(loc[0], p) for loc, p in _pydantic_problems(path, lines, errors, cls.Config, where)]


def _override_config_problems(path: Path, lines: dict[tuple, int], o: Override, targets: list[AlgorithmEntry],
                              where: tuple) -> list[tuple[Any, str]]:
    """(key, problem) for the keys of an override's config that some algorithm it applies to refuses."""
    registry = algorithms()
    unknown: dict[str, list[str]] = {}  # key -> labels whose config lacks it
    allowed: set[str] = set()
    out: list[tuple[Any, str]] = []
    for a in targets:
        if a.name not in registry:
            continue
        cfg = registry[a.name].Config
        allowed |= set(cfg.model_fields)
        try:
            cfg.model_validate(o.config)
            continue
        except ValidationError as e:
            errors = [x for x in e.errors() if x["loc"]]
        for x in errors:
            if x["type"] == "extra_forbidden" and len(x["loc"]) == 1:
                unknown.setdefault(str(x["loc"][0]), []).append(a.key)
        for loc, p in _pydantic_problems(path, lines, [x for x in errors if x["type"] != "extra_forbidden"
                                                       or len(x["loc"]) > 1], cfg, where):
            out.append((loc[0], p))
    labels = [a.key for a in targets if a.name in registry]
    for k, missing in unknown.items():
        if len(missing) == len(labels):
            guess = _closest(k, sorted(allowed))
            msg = (f"unknown key; did you mean {guess!r}?" if guess else
                   f"unknown key for {', '.join(missing)}; allowed keys: {', '.join(sorted(allowed))}")
        else:
            msg = (f"not a config key of {', '.join(missing)}, which this override also applies to; name the "
                   "algorithms it is for with `algorithms:`")
        out.append((k, _problem(path, lines, (*where, k), msg)))
    return list({p: (k, p) for k, p in out}.values())


def _check_cells(suite: Suite, path: Path, lines: dict[tuple, int], tasks: list[str], reported: set[tuple],
                 earlier: bool) -> list[str]:
    """Checks of the merged cells: the config between fields, budgets, two cells in one run folder."""
    problems: list[str] = []
    folders: dict[str, tuple] = {}
    for cell, sources, ai, budget_at in _cells(suite, tasks):
        entry = suite.algorithms[ai]
        try:
            spec = _resolve({**cell, "seed": 0})
        except ValidationError as e:
            cls = algorithms().get(entry.name)
            if e.title == RunSpec.__name__ or cls is None:  # not the config: nothing in the file to point at
                problems.append(_problem(path, lines, ("algorithms", ai), f"the run {cell['task']}/{entry.key} is "
                                         f"not a valid run spec ({one_line_errors(e)})"))
                continue
            for err in e.errors():
                key = err["loc"][0] if err["loc"] else None
                where = next((w for w, keys in reversed(sources) if key in keys),
                             sources[-1][0] if sources else ("algorithms", ai, "config"))
                if (where, key) in reported:
                    continue
                reported.add((where, key))
                for _, p in _pydantic_problems(path, lines, [err], cls.Config, where):
                    problems.append(p + ("" if err["loc"] else f" (in {cell['task']}/{entry.key})"))
            continue
        if spec.horizon_steps is not None and spec.horizon_steps < spec.total_steps:
            problems.append(_problem(path, lines, (*budget_at, "horizon_steps"), f"horizon_steps {spec.horizon_steps} "
                                     f"for {spec.task} is shorter than total_steps {spec.total_steps}: the schedules "
                                     "would end before the run"))
        if spec.total_steps % spec.steps_per_epoch:
            problems.append(_problem(path, lines, budget_at, f"total_steps {spec.total_steps} for {spec.task} is "
                                     f"not a multiple of steps_per_epoch {spec.steps_per_epoch}"))
        if earlier:
            continue
        for seed in suite.seed_list:  # the last net: no two cells in one run folder (names compared without case)
            rel = str(spec.model_copy(update={"seed": seed}).relpath())
            other = folders.setdefault(rel.casefold(), (cell["task"], entry.key, seed))
            if other != (cell["task"], entry.key, seed):
                problems.append(_problem(path, lines, ("algorithms", ai), f"the cell {cell['task']}/{entry.key}/seed "
                                         f"{seed} and the cell {'/'.join(map(str, other))} share the run folder "
                                         f"{rel}; give each cell its own label"))
    return list(dict.fromkeys(problems))


def _cells(suite: Suite, tasks: list[str] | None = None):
    """Yield (cell without its seed, config sources, algorithm index, budget location) for every task x algorithm
    of the grid. `sources`: [(YAML location, keys it sets)] of the algorithm's config and each override's, in
    order; the budget location: the last override that set the budget, else the suite's `budget`."""
    for task in tasks if tasks is not None else suite.task_names:
        for ai, entry in enumerate(suite.algorithms):
            if entry.tasks is not None and task not in entry.tasks:
                continue
            budget, evaluation, device, dataset = suite.budget, suite.evaluation, suite.device, suite.dataset
            config = dict(entry.config)
            sources: list[tuple[tuple, set]] = [(("algorithms", ai, "config"), set(entry.config))]
            budget_at: tuple = ("budget",)
            for oi, o in enumerate(suite.overrides):
                if (o.tasks is None or task in o.tasks) and (o.algorithms is None or entry.key in o.algorithms):
                    if o.budget is not None:
                        budget = budget.model_copy(update=o.budget.model_dump(exclude_unset=True))
                        budget_at = ("overrides", oi, "budget")
                    evaluation = o.evaluation or evaluation
                    device = o.device or device
                    dataset = o.dataset or dataset
                    if o.config:
                        config.update(o.config)
                        sources.append((("overrides", oi, "config"), set(o.config)))
            yield {
                "task": task,
                "algorithm": entry.name,
                "label": entry.key,
                "total_steps": budget.total_steps or TASKS[task].default_total_steps,
                "steps_per_epoch": budget.steps_per_epoch,
                "horizon_steps": budget.horizon_steps,
                "evaluation": evaluation,
                "config": config,
                "device": device,
                "torch_threads": suite.torch_threads,
                "tensorboard": suite.tensorboard,
                "dataset": dataset,
            }, sources, ai, budget_at


def _resolve(cell: dict[str, Any]) -> RunSpec:
    """Fill the algorithm's config with its defaults (planned algorithms keep the given values)."""
    reg = algorithms()
    if cell["algorithm"] in reg:
        cls = reg[cell["algorithm"]]
        cfg = cls.Config.model_validate(cell["config"])
        cell = {**cell, "config": cfg.spec_dump(),
                "dataset": (cell["dataset"] or TASKS[cell["task"]].default_dataset) if cls.needs_dataset else None}
    else:
        cell = {**cell, "dataset": None}
    return RunSpec.model_validate(cell)


def results_folder(suite: Suite, explicit: Path | None = None) -> Path:
    """Where the suite's run folders go: `explicit` (the CLI's --results), else the suite's `results_dir`, else
    results/<name>. Any folder the user names is allowed, and it is the only place run folders are written; it
    must be a folder, or not exist yet under a folder."""
    if explicit is not None:
        try:
            _path_text(str(explicit))
        except ValueError as e:
            raise BadInputError(f"--results: {e}") from None
    folder = Path(explicit) if explicit is not None else suite.results_path()
    for p in (folder, *folder.parents):
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                what = "the results folder" if p == folder else f"a parent of the results folder {folder}"
                raise BadInputError(f"{p}: is {what} but exists and is not a folder; a results folder holds run "
                                    "folders (<task>/<label>/seed_<k>/)")
            break
    return folder


def slurm_resources(suite: Suite, spec: RunSpec) -> SlurmResources:
    """The Slurm resources of `spec`'s run: the launcher's, then every matching override's, in order.
    Resources are not part of the spec: changing them never changes a run's identity."""
    res = suite.launcher.resources
    for o in suite.overrides:
        if (o.tasks is None or spec.task in o.tasks) and (o.algorithms is None or spec.label in o.algorithms):
            res = res.merged(o.resources)
    return res


def expand(suite: Suite) -> list[RunSpec]:
    """The suite's grid of run specs, in task, algorithm, seed order."""
    return [_resolve({**cell, "seed": seed}) for cell, *_ in _cells(suite) for seed in suite.seed_list]


def filter_specs(specs: list[RunSpec], only: list[str]) -> list[RunSpec]:
    """Keep specs matching every `KEY=V1,V2` filter (keys: task, algorithm, label, seed)."""
    keys = ("task", "algorithm", "label", "seed")
    for f in only:
        key, sep, values = f.partition("=")
        if not sep or key not in keys or not values:
            raise SuiteError(f"--only {f!r}: expected KEY=VALUE[,VALUE...] with KEY one of {', '.join(keys)}")
        allowed = set(values.split(","))
        specs = [s for s in specs if str(getattr(s, key)) in allowed]
    return specs


def unavailable_reason(spec: RunSpec) -> str | None:
    if not TASKS[spec.task].available:
        return f"task {spec.task}: {TASKS[spec.task].unavailable}"
    if not spec.implemented:
        return f"algorithm {spec.algorithm} {algorithm_unavailable(spec.algorithm)}"
    return None
