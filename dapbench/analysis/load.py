"""The tidy loader: results folders -> one row per run x epoch, with the run's spec fields as columns.

A run is one run folder (`<results>/<task>/<label>/seed_<k>/`, found by its `spec.yaml`); its evaluation
episodes are already averaged into the row of their epoch (`eval_return_mean`), so nothing downstream can
mistake episodes for runs. Only complete runs (state `done` with all planned epochs in `metrics.parquet`)
enter the table. Incomplete ones (failed, running, pending, or expected by `--suite` but never started)
follow the missing-run policy: `fail` raises one error listing them, `drop` leaves them out and records a
warning that the report shows. A corrupt spec, status, provenance or metrics file is always an error
naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dapbench.errors import BadInputError, RunFolderError
from dapbench.results.columns import read_declared
from dapbench.results.provenance import algorithm_code_id
from dapbench.results.store import RunStore
from dapbench.suite import RunSpec, expand, load_suite

MissingPolicy = Literal["fail", "drop"]
IDENTITY = ["suite", "task", "algorithm", "label", "seed"]  # a run's identity columns, in the tidy table's order
PROVENANCE_COLUMNS = ["attempts", "commits", "dirty", "dapbench_version", "torch_version", "gymnasium_version",
                      "mujoco_version", "python", "run_device", "cpu", "gpu", "hostname", "slurm_job_id", "started",
                      "algorithm_code"]
SPEC_COLUMNS = ["total_steps", "horizon_steps", "steps_per_epoch", "evaluation_episodes", "evaluation_every",
                "evaluation_deterministic", "device", "torch_threads", "dataset", "spec_hash"]


@dataclass
class Results:
    """What `load_results` found.

    `curves`: one row per complete run x epoch (identity, spec fields, `run`, then the metrics columns).
    `runs`: one row per run found or expected, complete or not: identity, `run`, `run_dir`, `state`,
    `epoch`/`epochs`, `error`, `included` and provenance (commits, dirty flag, packages, machine).
    `warnings`: what was dropped and why, and other things a reader must know (mixed specs in a cell).
    `declared`: the metrics the included runs' algorithms declare (`metrics.json`): column -> meaning and gate.
    """

    curves: pd.DataFrame
    runs: pd.DataFrame
    roots: list[Path]
    warnings: list[str] = field(default_factory=list)
    declared: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def included(self) -> pd.DataFrame:
        return self.runs[self.runs["included"]]


def find_run_dirs(root: Path) -> list[Path]:
    """Every run folder under `root` (a folder holding `spec.yaml`), sorted."""
    return sorted(p.parent for p in root.rglob("spec.yaml"))


def _spec_fields(spec: RunSpec) -> dict[str, Any]:
    ev = spec.evaluation
    return {"task": spec.task, "algorithm": spec.algorithm, "label": spec.label, "seed": spec.seed,
            "total_steps": spec.total_steps, "horizon_steps": spec.horizon, "steps_per_epoch": spec.steps_per_epoch,
            "evaluation_episodes": ev.episodes, "evaluation_every": ev.every,
            "evaluation_deterministic": ev.deterministic, "device": spec.device,
            "torch_threads": spec.torch_threads, "dataset": spec.dataset, "spec_hash": spec.hash}


def _provenance(store: RunStore) -> dict[str, Any]:
    """A run's attempts summarised: code commits (with the dirty flag), packages and machine of the last."""
    if not store.provenance_path.exists():
        return {"attempts": 0, "commits": "", "dirty": None, "algorithm_code": ""}
    try:
        attempts = json.loads(store.provenance_path.read_text())
        last = attempts[-1]
        commits = list(dict.fromkeys((a.get("code") or {}).get("commit") or "unknown" for a in attempts))
        dirty = any((a.get("code") or {}).get("dirty") for a in attempts)
        # the algorithm's code per attempt (a plug-in's distribution and source hash); "A -> B": resumed under B
        codes = list(dict.fromkeys(c for a in attempts if (c := algorithm_code_id(a.get("algorithm")))))
    except (ValueError, IndexError, KeyError, TypeError, AttributeError) as e:
        raise RunFolderError(f"{store.provenance_path}: corrupt provenance file ({type(e).__name__}: {e})") from None
    pkgs = last.get("packages") or {}
    return {
        "attempts": len(attempts), "commits": " ".join(c[:10] for c in commits), "dirty": dirty,
        "dapbench_version": pkgs.get("dapbench"), "torch_version": pkgs.get("torch"),
        "gymnasium_version": pkgs.get("gymnasium"), "mujoco_version": pkgs.get("mujoco"),
        "python": last.get("python"), "run_device": last.get("device"), "cpu": last.get("cpu"),
        "gpu": last.get("gpu"), "hostname": last.get("hostname"),
        "slurm_job_id": last.get("slurm_job_id"), "started": attempts[0].get("started"),
        "algorithm_code": " -> ".join(codes),
    }


def _read_table(store: RunStore) -> pa.Table:
    """The run's metrics as an Arrow table (pyarrow directly: ~4x faster than pandas per small file)."""
    try:
        return pq.ParquetFile(store.metrics_path).read()
    except FileNotFoundError:
        raise RunFolderError(f"{store.metrics_path}: missing, though the run is marked done") from None
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise RunFolderError(f"{store.metrics_path}: corrupt metrics table ({type(e).__name__}: {e})") from None


def _read_run(store: RunStore, suite: str) -> tuple[dict[str, Any], pa.Table | None]:
    """(the run's row for `runs`, its metrics table if complete)."""
    spec = store.read_spec()
    status = store.status()
    row: dict[str, Any] = {"suite": suite, **_spec_fields(spec), "run": str(spec.relpath()), "run_dir": str(store.dir),
                           "state": status.state, "epoch": status.epoch, "epochs": spec.epochs,
                           "error": status.error, **_provenance(store)}
    if status.state != "done":
        row["reason"] = {"failed": f"failed at epoch {status.epoch}/{spec.epochs}: {status.error}",
                         "running": f"interrupted at epoch {status.epoch}/{spec.epochs} (its process is gone; "
                                    "`run` resumes it)" if store.interrupted(status) else
                                    f"running (epoch {status.epoch}/{spec.epochs})"}.get(
            status.state, f"pending (epoch {status.epoch}/{spec.epochs})")
        return row, None
    df = _read_table(store)
    if df.num_rows != spec.epochs or not {"eval_return_mean", "env_steps"} <= set(df.column_names):
        raise RunFolderError(f"{store.metrics_path}: the run is marked done with {spec.epochs} epochs but its "
                             f"metrics table has {df.num_rows} rows and columns {', '.join(df.column_names[:6])}...")
    row["reason"] = None
    return row, df


def _expected(suite_path: Path, found: dict[tuple[str, str, int], dict[str, Any]], results: Path
              ) -> list[dict[str, Any]]:
    """Rows for the runs a suite expects that have no run folder under `results`."""
    suite = load_suite(suite_path)
    rows = []
    for spec in expand(suite):
        key = (spec.task, spec.label, spec.seed)
        if key in found:
            if found[key]["spec_hash"] != spec.hash:
                raise BadInputError(f"{found[key]['run_dir']}: holds a different spec (hash "
                                    f"{found[key]['spec_hash']}) than {suite_path} expects ({spec.hash})")
            continue
        rows.append({"suite": suite.name, **_spec_fields(spec), "run": str(spec.relpath()),
                     "run_dir": str(results / spec.relpath()), "state": "missing", "epoch": 0,
                     "epochs": spec.epochs, "error": None, "attempts": 0, "commits": "", "dirty": None,
                     "reason": "missing (no run folder)" + ("" if spec.implemented else
                                                            f"; algorithm {spec.algorithm} is not implemented")})
    return rows


def load_results(roots: Path | str | Sequence[Path | str], missing: MissingPolicy = "drop",
                 suite: Path | str | None = None) -> Results:
    """Load every run folder under `roots` into a tidy table (see the module docstring).

    `suite`: a suite file whose grid says which runs belong (runs without a folder count as missing; run folders
    outside its grid, e.g. of another suite sharing the results folder, are left out with a warning); without it
    every run folder found counts. Raises `BadInputError` for a missing folder,
    no runs, the same run (task, label, seed) in two places, and, under `missing="fail"`, any incomplete
    run; `RunFolderError` for a corrupt file.
    """
    if missing not in ("fail", "drop"):
        raise BadInputError(f"missing-run policy must be 'fail' or 'drop' (got {missing!r})")
    root_list = [Path(r) for r in ([roots] if isinstance(roots, str | Path) else roots)]
    if not root_list:
        raise BadInputError("no results folder given")
    rows: list[dict[str, Any]] = []
    tables: list[pa.Table] = []
    seen: dict[tuple[str, str, int], dict[str, Any]] = {}
    declared: dict[str, dict[str, Any]] = {}
    suite_name = load_suite(suite).name if suite else None
    grid = {(x.task, x.label, x.seed) for x in expand(load_suite(suite))} if suite else None
    outside: list[str] = []  # run folders of other suites sharing the results folder: not this report's
    for root in root_list:
        if not root.is_dir():
            raise BadInputError(f"{root}: " + ("a file, not a results folder" if root.exists() else
                                            "no such results folder"))
        dirs = find_run_dirs(root)
        if not dirs:
            raise BadInputError(f"{root}: no run folders in it (a run folder holds spec.yaml; expected "
                                "<results>/<task>/<label>/seed_<k>/)")
        for d in dirs:
            # the suite: its name, else the folder holding the task folders (`<suite>/<task>/<label>/seed_<k>`)
            row, df = _read_run(RunStore(d), suite_name or d.resolve().parents[2].name)
            key = (row["task"], row["label"], row["seed"])
            if grid is not None and key not in grid:
                outside.append(row["run"])
                continue
            if key in seen:
                raise BadInputError(f"run {row['run']} appears twice: {seen[key]['run_dir']} and {d}; "
                                    "give each run once")
            seen[key] = row
            rows.append(row)
            if df is not None:
                tables.append(df.append_column("run", pa.array([row["run"]] * df.num_rows)))
                for k, v in read_declared(d, df.column_names).items():  # the first run read sets each field;
                    declared[k] = {**v, **declared.get(k, {})}             # one its file lacks comes from another
    if suite is not None:
        if len(root_list) != 1:
            raise BadInputError("--suite needs exactly one results folder (the suite's)")
        rows += _expected(Path(suite), seen, root_list[0])
    runs = pd.DataFrame(rows)
    for col in PROVENANCE_COLUMNS:  # runs without provenance.json lack them
        if col not in runs.columns:
            runs[col] = None
    runs["included"] = runs["reason"].isna()
    incomplete = runs[~runs["included"]]
    warnings: list[str] = []
    if outside:
        warnings.append(f"left out {len(outside)} run folders outside {suite}'s grid: {', '.join(sorted(outside))}")
    if len(incomplete):
        lines = [f"{r.run}: {r.reason}" for r in incomplete.itertuples()]
        if missing == "fail":
            raise BadInputError(f"{len(incomplete)} of {len(runs)} runs are not complete (missing-run policy "
                                "'fail'; use 'drop' to report the rest with a warning):\n  " + "\n  ".join(lines))
        warnings += [f"dropped {len(incomplete)} of {len(runs)} runs that are not complete:", *lines]
    if not tables:
        raise BadInputError(f"{', '.join(map(str, root_list))}: no complete runs to report")
    first = [*IDENTITY, "run", *SPEC_COLUMNS]
    metrics = pa.concat_tables(tables, promote_options="permissive").to_pandas()  # columns differ by algorithm
    curves = runs.loc[runs["included"], first].merge(metrics, on="run")
    curves = curves.sort_values(["task", "label", "seed", "epoch"], ignore_index=True)
    warnings += _mixed_specs(runs[runs["included"]])
    return Results(curves=curves, runs=runs.sort_values(["task", "label", "seed"], ignore_index=True),
                   roots=root_list, warnings=warnings, declared=declared)


def _mixed_specs(runs: pd.DataFrame) -> list[str]:
    """Cells (task x label) whose runs differ in budget, evaluation protocol, code commit or algorithm code (a
    plug-in's distribution and source), and runs resumed under changed algorithm code: their seeds are not
    alike."""
    out = []
    cols = ["total_steps", "steps_per_epoch", "evaluation_episodes", "evaluation_every", "evaluation_deterministic"]
    for (task, label), g in runs.groupby(["task", "label"]):
        differ = [c for c in cols if g[c].nunique() > 1]
        if differ:
            out.append(f"{task}/{label}: its runs differ in {', '.join(differ)}")
        commits = sorted(set(g["commits"].fillna("")))
        if len(commits) > 1:
            by = "; ".join(f"{c or 'unknown'}: seeds {', '.join(str(s) for s in g.loc[g['commits'] == c, 'seed'])}"
                           for c in commits)
            out.append(f"{task}/{label}: its runs come from different code commits ({by})")
        codes = g["algorithm_code"].fillna("")  # '' for runs made before dapbench recorded it: not compared
        if codes[codes != ""].nunique() > 1:
            by = "; ".join(f"{c}: seeds {', '.join(str(s) for s in g.loc[codes == c, 'seed'])}"
                           for c in sorted(set(codes) - {""}))
            out.append(f"{task}/{label}: its runs come from different algorithm code ({by})")
        for seed, c in zip(g["seed"], codes, strict=True):
            if " -> " in c:
                out.append(f"{task}/{label}: seed {seed} was resumed under changed algorithm code ({c})")
    return out

