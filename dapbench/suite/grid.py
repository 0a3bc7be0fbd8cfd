"""The grid of a suite: its cells (task x algorithm, overrides applied in order), each resolved into a frozen
`RunSpec` per seed, and what else follows from a suite and a spec (results folder, Slurm resources, why a run
cannot run here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dapbench.errors import BadInputError, SuiteError
from dapbench.registry import algorithms
from dapbench.registry import unavailable as algorithm_unavailable
from dapbench.suite.schema import RunSpec, SlurmResources, Suite, path_text
from dapbench.tasks.registry import TASKS


def cells(suite: Suite, tasks: list[str] | None = None):
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
                if o.applies(task, entry.key):
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


def resolve(cell: dict[str, Any]) -> RunSpec:
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
            path_text(str(explicit))
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
        if o.applies(spec.task, spec.label):
            res = res.merged(o.resources)
    return res


def expand(suite: Suite) -> list[RunSpec]:
    """The suite's grid of run specs, in task, algorithm, seed order."""
    return [resolve({**cell, "seed": seed}) for cell, *_ in cells(suite) for seed in suite.seed_list]


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
