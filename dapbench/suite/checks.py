"""Checks of a validated suite that need the registries or the whole grid: known names, override targets,
algorithm configs (each problem at its own YAML line), repeated cells, budgets, two cells in one run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dapbench.registry import algorithms, describe_recorded, known_names, recorded_origin
from dapbench.suite.grid import cells, resolve
from dapbench.suite.problems import (
    closest,
    fmt_path,
    line_of,
    one_line_errors,
    problem_at,
    pydantic_problems,
    unknown_name,
)
from dapbench.suite.schema import MAX_RUNS, AlgorithmEntry, Override, RunSpec, Suite
from dapbench.tasks.registry import TASKS


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


def check_grid(suite: Suite, path: Path, lines: dict[tuple, int], origin: dict[str, list[int]], dropped: set[str],
               data: dict) -> list[str]:
    """Checks that need the registries or the whole grid: known names, override targets, algorithm configs
    (each at its own line), repeated cells, budget divisibility. Every problem, not the first."""
    problems: list[str] = []
    at = lambda k, i: origin[k][i] if k in origin else i  # noqa: E731 - the entry's index in the file
    registry, names = algorithms(), known_names()

    def add(loc: tuple, msg: str) -> None:
        problems.append(problem_at(path, lines, loc, msg))

    def twice(what: str, loc: tuple, first: tuple) -> None:
        add(loc, f"{what} is also {fmt_path(first)} (line {line_of(lines, first)}): two cells of the grid would "
                 "share a run folder; give each once")

    # tasks: known, each once
    task_at: dict[str, int] = {}
    if isinstance(suite.tasks, list):
        for i, t in enumerate(suite.tasks):
            if t not in TASKS:
                add(("tasks", i), unknown_name("task", t, list(TASKS), ", or 'all' / 'available' for the whole list"))
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
            add(("algorithms", fi, "name"), unknown_name("algorithm", a.name, names)
                + (f"; {describe_recorded(rec)}" if rec else ""))
        key = a.key.casefold()
        if key in label_at:
            j = label_at[key]
            first = suite.algorithms[[at("algorithms", x) for x in range(len(suite.algorithms))].index(j)].key
            same = "" if first == a.key else f" (as {first!r}: a case-insensitive file system merges the two)"
            add(("algorithms", fi, "label" if a.label else "name"),
                f"label {a.key!r} is also the label of algorithms[{j}] (line {line_of(lines, ('algorithms', j))})"
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
                    guess = closest(lab, all_labels)
                    add(("overrides", fi, "algorithms", ai), f"algorithm {lab!r} is not a label of the suite's "
                        "algorithms" + (f"; did you mean {guess!r}?" if guess else f" ({', '.join(all_labels)})"))
        if o.config:
            targets = [a for a in suite.algorithms if o.names_label(a.key)]
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
                f"{line_of(lines, ('datasets', ds_at[d.id]))}); give each once")
        else:
            ds_at[d.id] = fi

    if dropped:  # the cells would be built from a suite with parts left out: their checks would mislead
        return problems
    n_runs = sum(len([t for t in tasks if a.tasks is None or t in a.tasks]) for a in suite.algorithms
                 ) * len(suite.seed_list)
    if n_runs > MAX_RUNS:
        problems.append(problem_at(path, lines, ("seeds",), f"the grid has {n_runs:,} runs; a suite has at most "
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
    return [(loc[0], p) for loc, p in pydantic_problems(path, lines, errors, cls.Config, where)]


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
        for loc, p in pydantic_problems(path, lines, [x for x in errors if x["type"] != "extra_forbidden"
                                                      or len(x["loc"]) > 1], cfg, where):
            out.append((loc[0], p))
    labels = [a.key for a in targets if a.name in registry]
    for k, missing in unknown.items():
        if len(missing) == len(labels):
            guess = closest(k, sorted(allowed))
            msg = (f"unknown key; did you mean {guess!r}?" if guess else
                   f"unknown key for {', '.join(missing)}; allowed keys: {', '.join(sorted(allowed))}")
        else:
            msg = (f"not a config key of {', '.join(missing)}, which this override also applies to; name the "
                   "algorithms it is for with `algorithms:`")
        out.append((k, problem_at(path, lines, (*where, k), msg)))
    return list({p: (k, p) for k, p in out}.values())


def _check_cells(suite: Suite, path: Path, lines: dict[tuple, int], tasks: list[str], reported: set[tuple],
                 earlier: bool) -> list[str]:
    """Checks of the merged cells: the config between fields, budgets, two cells in one run folder."""
    problems: list[str] = []
    folders: dict[str, tuple] = {}
    for cell, sources, ai, budget_at in cells(suite, tasks):
        entry = suite.algorithms[ai]
        try:
            spec = resolve({**cell, "seed": 0})
        except ValidationError as e:
            cls = algorithms().get(entry.name)
            if e.title == RunSpec.__name__ or cls is None:  # not the config: nothing in the file to point at
                problems.append(problem_at(path, lines, ("algorithms", ai), f"the run {cell['task']}/{entry.key} "
                                           f"is not a valid run spec ({one_line_errors(e)})"))
                continue
            for err in e.errors():
                key = err["loc"][0] if err["loc"] else None
                where = next((w for w, keys in reversed(sources) if key in keys),
                             sources[-1][0] if sources else ("algorithms", ai, "config"))
                if (where, key) in reported:
                    continue
                reported.add((where, key))
                for _, p in pydantic_problems(path, lines, [err], cls.Config, where):
                    problems.append(p + ("" if err["loc"] else f" (in {cell['task']}/{entry.key})"))
            continue
        if spec.horizon_steps is not None and spec.horizon_steps < spec.total_steps:
            problems.append(problem_at(path, lines, (*budget_at, "horizon_steps"), f"horizon_steps "
                                       f"{spec.horizon_steps} for {spec.task} is shorter than total_steps "
                                       f"{spec.total_steps}: the schedules would end before the run"))
        if spec.total_steps % spec.steps_per_epoch:
            problems.append(problem_at(path, lines, budget_at, f"total_steps {spec.total_steps} for {spec.task} is "
                                       f"not a multiple of steps_per_epoch {spec.steps_per_epoch}"))
        if earlier:
            continue
        for seed in suite.seed_list:  # the last net: no two cells in one run folder (names compared without case)
            rel = str(spec.model_copy(update={"seed": seed}).relpath())
            other = folders.setdefault(rel.casefold(), (cell["task"], entry.key, seed))
            if other != (cell["task"], entry.key, seed):
                problems.append(problem_at(path, lines, ("algorithms", ai), f"the cell {cell['task']}/{entry.key}"
                                           f"/seed {seed} and the cell {'/'.join(map(str, other))} share the run "
                                           f"folder {rel}; give each cell its own label"))
    return list(dict.fromkeys(problems))
