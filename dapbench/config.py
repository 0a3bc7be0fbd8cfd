"""Typed, validated suite and run specs.

A suite YAML file is validated into a `Suite`, then expanded into a grid of frozen `RunSpec`s
(task x algorithm x seed, overrides applied, algorithm config resolved with its defaults). Every
problem is reported in one `SuiteError` that names the file, the field (with its YAML line) and what is
allowed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
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

from dapbench.errors import SuiteError
from dapbench.naming import dataset_id
from dapbench.registry import PLANNED, algorithms, known_names
from dapbench.tasks.registry import TASKS

SUITE_DOCS = "docs/suites.md"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EvalConfig(Strict):
    """The evaluation protocol: `episodes` episodes every `every` epochs (0 = never), each reset with a
    seed from `seeds` (fixed, independent of the training seed), acting with the policy's mean action
    when `deterministic`."""

    episodes: PositiveInt = 10
    every: NonNegativeInt = 1
    seeds: list[int] | None = None  # default: 1_000_000 + i, i < episodes
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

    name: str
    label: str | None = None
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
    dataset: str | None = None
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
            raise ValueError(f"unknown task {v!r}; allowed: {', '.join(TASKS)}")
        return v


class LauncherConfig(Strict):
    """How runs are launched: `debug` (in this process, one after another), `local` (a pool of `jobs`
    processes, default: the number of cores) or `slurm` (job arrays through submitit, docs/slurm.md):
    at most `parallelism` array tasks at once (default: no limit), each with `resources`; datasets and
    shared priors are made first by jobs with `prepare` (default: `resources`); a job requeued more than
    `max_timeouts` times after reaching its time limit is given up."""

    name: Literal["debug", "local", "slurm"] = "local"
    jobs: PositiveInt | None = None
    parallelism: PositiveInt | None = None
    resources: SlurmResources = SlurmResources()
    prepare: SlurmResources | None = None
    max_timeouts: NonNegativeInt = 10


class Suite(Strict):
    """A grid of runs: tasks x algorithms x seeds with a budget, an evaluation protocol and overrides."""

    name: str
    description: str = ""
    results_dir: str | None = None  # default: results/<name>
    tasks: list[str] | Literal["all", "available"]
    algorithms: list[AlgorithmEntry]
    seeds: list[NonNegativeInt] | PositiveInt
    budget: Budget = Budget()
    evaluation: EvalConfig = EvalConfig()
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    torch_threads: PositiveInt = 1
    overrides: list[Override] = Field(default_factory=list)
    launcher: LauncherConfig = LauncherConfig()
    dataset: str | None = None  # Minari id for algorithms that need logged data; default: the task's
    datasets: list[DatasetEntry] = Field(default_factory=list)  # datasets `run` makes first when missing

    @field_validator("algorithms", mode="before")
    @classmethod
    def _names_to_entries(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": x} if isinstance(x, str) else x for x in v]
        return v

    @field_validator("algorithms")
    @classmethod
    def _known_algorithms(cls, v: list[AlgorithmEntry]) -> list[AlgorithmEntry]:
        names = known_names()
        for e in v:
            if e.name not in names:
                raise ValueError(f"unknown algorithm {e.name!r}; allowed: {', '.join(names)}")
        keys = [e.key for e in v]
        dup = {k for k in keys if keys.count(k) > 1}
        if dup:
            raise ValueError(f"algorithm labels must be unique; repeated: {', '.join(sorted(dup))}")
        return v

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds_shape(cls, v: Any) -> Any:
        ok = (isinstance(v, int) and not isinstance(v, bool)) or (
            isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v))
        if not ok:
            raise ValueError(f"seeds is a count (e.g. 10 for seeds 0..9) or a list of seeds (got {v!r})")
        return v

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, v: Any) -> Any:
        if isinstance(v, list):
            for t in v:
                if t not in TASKS:
                    raise ValueError(f"unknown task {t!r}; allowed: {', '.join(TASKS)}, or 'all' / 'available'")
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


class RunSpec(Strict):
    """One run, fully resolved: a run is a pure function of this (plus the code version)."""

    task: str
    algorithm: str
    label: str
    seed: int
    total_steps: PositiveInt
    steps_per_epoch: PositiveInt
    evaluation: EvalConfig
    config: dict[str, Any]  # the algorithm's full config, defaults included
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    torch_threads: PositiveInt = 1
    snapshot_every: NonNegativeInt = 0  # keep the policy every k epochs (0 = never); behaviour runs use 1
    dataset: str | None = None  # Minari id of the logged data, for algorithms that need one
    horizon_steps: PositiveInt | None = None  # the steps schedules are scaled to; None = total_steps

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
        for k in drop:
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


# ----- loading ------------------------------------------------------------------------------------------
def _line_index(text: str) -> dict[tuple, int]:
    """Map each YAML path (tuple of keys / indices) to its 1-based line number."""
    index: dict[tuple, int] = {}

    def walk(node: yaml.Node, path: tuple) -> None:
        index[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                walk(v, (*path, k.value))
                index[(*path, k.value)] = k.start_mark.line + 1  # a key's own line, not its value's
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, (*path, i))

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
    return index


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


def _pydantic_problems(path: Path, lines: dict[tuple, int], err: ValidationError, prefix: tuple = ()
                       ) -> list[str]:
    out = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and ("[" in p or p in ("list", "int", "literal"))))
        loc = prefix + tuple(loc)
        msg = e["msg"].removeprefix("Value error, ")  # our validators' messages already say what was given
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
            allowed = _allowed_keys(loc[:-1], prefix)
            if allowed:
                msg += f"; allowed keys: {', '.join(allowed)}"
        elif e["type"] != "value_error" and not isinstance(e.get("input"), dict | list):
            msg = f"{msg} (got {e.get('input')!r})"
        out.append(_problem(path, lines, loc, msg))
    return sorted(set(out), key=out.index)


def _allowed_keys(parent: tuple, prefix: tuple) -> list[str]:
    model: Any = Suite
    names = [p for p in parent if isinstance(p, str)]
    if prefix:
        return []  # algorithm configs list their own keys in the message
    for n in names:
        field = model.model_fields.get(n)
        if field is None:
            return []
        ann = field.annotation
        inner = getattr(ann, "__args__", None)
        cand = [a for a in (inner or (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not cand:
            return []
        model = cand[0]
    return list(model.model_fields)


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file; one `SuiteError` listing every problem otherwise."""
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"{path}: no such suite file")
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
        lines = _line_index(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise SuiteError(f"{where}: YAML syntax error: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a suite is a YAML mapping with keys {', '.join(Suite.model_fields)}")
    data.setdefault("name", path.stem)
    try:
        suite = Suite.model_validate(data)
    except ValidationError as e:
        raise SuiteError(_report(path, _pydantic_problems(path, lines, e))) from None
    problems = _check_grid(suite, path, lines)
    if problems:
        raise SuiteError(_report(path, problems))
    return suite


def _report(path: Path, problems: list[str]) -> str:
    head = f"invalid suite {path} ({len(problems)} problem{'s' * (len(problems) > 1)}; see {SUITE_DOCS}):"
    return "\n  ".join([head, *problems])


def _check_grid(suite: Suite, path: Path, lines: dict[tuple, int]) -> list[str]:
    """Checks that need the registries: override targets, algorithm configs, budget divisibility."""
    problems: list[str] = []
    labels = [a.key for a in suite.algorithms]
    for i, a in enumerate(suite.algorithms):
        for t in a.tasks or []:
            if t not in suite.task_names:
                problems.append(_problem(path, lines, ("algorithms", i, "tasks"),
                                         f"task {t!r} is not in the suite's tasks ({', '.join(suite.task_names)})"))
    for i, o in enumerate(suite.overrides):
        for t in o.tasks or []:
            if t not in suite.task_names:
                problems.append(_problem(path, lines, ("overrides", i, "tasks"),
                                         f"task {t!r} is not in the suite's tasks ({', '.join(suite.task_names)})"))
        for a in o.algorithms or []:
            if a not in labels:
                problems.append(_problem(path, lines, ("overrides", i, "algorithms"),
                                         f"algorithm {a!r} is not in the suite's algorithms ({', '.join(labels)})"))
    if problems:
        return problems
    seen: set[tuple] = set()
    for spec, where in _cells(suite):
        try:
            spec = _resolve(spec)
        except ValidationError as e:
            for p in _pydantic_problems(path, lines, e, prefix=where):
                if p not in seen:
                    seen.add(p)
                    problems.append(p + _config_hint(spec["algorithm"]))
            continue
        if spec.horizon_steps is not None and spec.horizon_steps < spec.total_steps:
            p = _problem(path, lines, ("budget", "horizon_steps"), f"horizon_steps {spec.horizon_steps} for "
                         f"{spec.task} is shorter than total_steps {spec.total_steps}: the schedules would end "
                         "before the run")
            if p not in seen:
                seen.add(p)
                problems.append(p)
        if spec.total_steps % spec.steps_per_epoch:
            p = _problem(path, lines, ("budget",), f"total_steps {spec.total_steps} for {spec.task} is not a "
                         f"multiple of steps_per_epoch {spec.steps_per_epoch}")
            if p not in seen:
                seen.add(p)
                problems.append(p)
    return problems


def _config_hint(algorithm: str) -> str:
    cls = algorithms()[algorithm]
    return f" (config keys of {algorithm}: {', '.join(cls.Config.model_fields)})"


def _cells(suite: Suite):
    """Yield (partial spec dict, YAML location of its config) for every task x algorithm x seed."""
    for task in suite.task_names:
        for ai, entry in enumerate(suite.algorithms):
            if entry.tasks is not None and task not in entry.tasks:
                continue
            budget, evaluation, device, dataset = suite.budget, suite.evaluation, suite.device, suite.dataset
            config, where = dict(entry.config), ("algorithms", ai, "config")
            for oi, o in enumerate(suite.overrides):
                if (o.tasks is None or task in o.tasks) and (o.algorithms is None or entry.key in o.algorithms):
                    if o.budget is not None:
                        budget = budget.model_copy(update=o.budget.model_dump(exclude_unset=True))
                    evaluation = o.evaluation or evaluation
                    device = o.device or device
                    dataset = o.dataset or dataset
                    if o.config:
                        config.update(o.config)
                        where = ("overrides", oi, "config")
            for seed in suite.seed_list:
                yield {
                    "task": task,
                    "algorithm": entry.name,
                    "label": entry.key,
                    "seed": seed,
                    "total_steps": budget.total_steps or TASKS[task].default_total_steps,
                    "steps_per_epoch": budget.steps_per_epoch,
                    "horizon_steps": budget.horizon_steps,
                    "evaluation": evaluation,
                    "config": config,
                    "device": device,
                    "torch_threads": suite.torch_threads,
                    "dataset": dataset,
                }, where


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
    return [_resolve(cell) for cell, _ in _cells(suite)]


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
        return f"algorithm {spec.algorithm}: not implemented yet ({PLANNED.get(spec.algorithm, '')})"
    return None
