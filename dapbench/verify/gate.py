"""`dapbench check RESULTS --baseline FILE`: regression checks against a stored baseline.

Cells are (task, label); each holds one value per seed. What fails (exit 1):
- learning (final return, ALC@40): the 95% stratified-bootstrap interval of mean(new) - mean(baseline),
  seeds resampled within each side, lies wholly below 0 AND the mean drops by more than
  max(rel_tol |mean(baseline)|, abs_tol). Both: a drop must be real (interval) and material (margin).
- speed: steps/s divided by the raw env steps/s measured in the same process (the run's reference
  computation, `ref_env_steps_per_s`), so the machine's speed cancels; fails when new / baseline falls
  below 1 - speed_tol.
- memory: peak RSS; fails when new / baseline exceeds 1 + mem_tol.
- audit: what each algorithm declares for the metrics it logs (`Algorithm.metrics`, written to the run
  folder's metrics.json): "zero" (e.g. OGLR, SPR) = exactly 0 in the baseline must stay exactly 0 (max over
  epochs); "small" = the max over epochs must stay below the declared bound; "drift" (e.g. ESS/K, the
  auxiliary gradient share) = the mean over epochs within audit_tol (relative).
- determinism (`--repeat OTHER`): every run's per-epoch table (timing columns aside) in RESULTS must equal
  the same run's in OTHER, value for value.
- a failed or unfinished run in RESULTS.
Bad input (no runs, a missing or malformed baseline, no cell in common) is exit 2.
One path to the numbers: run folders are found, and final return, ALC@40, the interval and P(X > Y) computed, by
`dapbench.analysis` (load, metrics, power, aggregate), as in the report.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ValidationError

from dapbench.analysis import aggregate as agg
from dapbench.analysis.load import find_run_dirs
from dapbench.analysis.power import diff_ci
from dapbench.errors import BadInputError, RunFolderError
from dapbench.results.atomic import atomic_write_text
from dapbench.results.columns import LEGACY, read_declared, timing_columns
from dapbench.results.provenance import algorithm_changes, collect, recorded_algorithm
from dapbench.results.store import RunStore
from dapbench.verify.reproduce import compare_tables

BASELINE_FORMAT = 1
ALC_WINDOW = 40  # ALC@40: mean of the first 40 evaluations (all of them if fewer)
FINAL_N = 3  # final return: mean of the last 3 evaluations (the report's default is 5; CI runs are short)
GATES = ("zero", "small", "drift")


class Tolerances(BaseModel):
    rel_tol: float = 0.10
    abs_tol: float = 1.0
    speed_tol: float = 0.30
    mem_tol: float = 0.20
    audit_tol: float = 0.50
    reps: int = 2000
    seed: int = 0


class Cell(BaseModel):
    task: str
    label: str
    algorithm: str
    seeds: list[int]
    spec_hashes: list[str]
    table_sha256: list[str]
    final_return: list[float]
    alc: list[float]
    speed: list[float]  # mean over epochs of steps_per_s / ref_env_steps_per_s
    peak_rss_mb: list[float]
    audit: dict[str, list[float]] = {}  # gate "zero"/"small": max over epochs; "drift": mean over epochs
    gates: dict[str, dict[str, Any]] = {}  # the declared gate of each audit key (absent: the legacy table)
    # per seed, the distribution that provided the algorithm's code (provenance.json; None: not recorded)
    algorithm_code: list[dict[str, Any] | None] = []


class Baseline(BaseModel):
    format: int = BASELINE_FORMAT
    created: str
    provenance: dict[str, Any]
    settings: dict[str, Any]
    cells: dict[str, Cell]


@dataclass
class Verdict:
    cell: str
    check: str
    baseline: str
    new: str
    detail: str
    ok: bool


# ----- per-run summaries ----------------------------------------------------------------------------------
def table_hash(df: pd.DataFrame) -> str:
    """sha256 of a per-epoch table without its timing columns (column order and dtypes included)."""
    body = df.drop(columns=timing_columns(df.columns)).to_json(orient="split", double_precision=15)
    return hashlib.sha256(body.encode()).hexdigest()


def summarize_run(df: pd.DataFrame, declared: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The checked values of one run: the report's metrics (dapbench.analysis.metrics) over the run's
    evaluations, with the window shortened to what a CI-sized run has (ALC over min(40, n) evaluations,
    final return over the last min(3, n))."""
    from dapbench.analysis.metrics import alc, evaluations, final_return

    if "eval_return_mean" not in df or df["eval_return_mean"].isna().all():
        raise BadInputError("the run has no evaluations; checks need eval_return_mean")
    _, ev = evaluations(df)
    out: dict[str, Any] = {
        "final_return": final_return(ev, min(FINAL_N, len(ev))),
        "alc": alc(ev, min(ALC_WINDOW, len(ev))),
        "speed": float((df["steps_per_s"] / df["ref_env_steps_per_s"]).mean())
        if "ref_env_steps_per_s" in df else float("nan"),
        "peak_rss_mb": float(df["peak_rss_mb"].max()),
        "table_sha256": table_hash(df),
        "audit": {},
        "gates": {},
    }
    declared = LEGACY if declared is None else declared
    for k, d in declared.items():
        if k in df and d.get("gate") in GATES:
            out["audit"][k] = float(df[k].abs().max() if d["gate"] != "drift" else df[k].mean())
            out["gates"][k] = {"gate": d["gate"], "bound": d.get("bound", 1e-4)}
    return out


def collect_results(results: Path) -> tuple[dict[str, Cell], list[str]]:
    """Cells of every finished run under `results`, and the problems (failed / unfinished / corrupt runs)."""
    results = Path(results)
    if not results.is_dir():
        raise BadInputError(f"{results}: " + ("a file, not a results folder" if results.exists() else
                                               "no such results folder"))
    runs: dict[str, list[tuple[int, Any, dict]]] = {}
    problems: list[str] = []
    for run_dir in find_run_dirs(results):  # the report's walk (dapbench.analysis.load)
        store = RunStore(run_dir)
        try:
            spec = store.read_spec()
            st = store.status()
            if st.state != "done":
                problems.append(f"{store.dir}: {st.state} at epoch {st.epoch}/{st.epochs}"
                                + (f": {st.error}" if st.error else ""))
                continue
            df = store.read_metrics()
            summary = summarize_run(df, read_declared(store.dir, df.columns))
            summary["algorithm_code"] = recorded_algorithm(store.read_provenance())
        except RunFolderError:
            raise  # a damaged run folder is bad input (exit 2), not a regression
        except BadInputError as e:
            problems.append(str(e))
            continue
        runs.setdefault(f"{spec.task}/{spec.label}", []).append((spec.seed, spec, summary))
    if not runs and not problems:
        raise BadInputError(f"{results}: no run folders (spec.yaml) found")
    cells = {}
    for key, items in runs.items():
        items.sort(key=lambda t: t[0])
        audit_keys = sorted(set.intersection(*(set(s["audit"]) for _, _, s in items)))
        cells[key] = Cell(
            task=items[0][1].task, label=items[0][1].label, algorithm=items[0][1].algorithm,
            seeds=[seed for seed, _, _ in items], spec_hashes=[sp.hash for _, sp, _ in items],
            table_sha256=[s["table_sha256"] for _, _, s in items],
            **{m: [s[m] for _, _, s in items] for m in ("final_return", "alc", "speed", "peak_rss_mb")},
            audit={k: [s["audit"][k] for _, _, s in items] for k in audit_keys},
            gates={k: items[0][2]["gates"][k] for k in audit_keys},
            algorithm_code=[s["algorithm_code"] for _, _, s in items],
        )
    return cells, problems


# ----- statistics: dapbench.analysis's, the report's -------------------------------------------------------
def bootstrap_diff_ci(new: np.ndarray, base: np.ndarray, reps: int, seed: int,
                      level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of mean(new) - mean(base) (`dapbench.analysis.power.diff_ci`)."""
    return diff_ci(np.asarray(new, float), np.asarray(base, float), reps, seed, level)


def probability_of_improvement(new: np.ndarray, base: np.ndarray) -> float:
    """P(X > Y) + P(X = Y) / 2 over all (new, baseline) seed pairs: the report's statistic on one task."""
    return agg.probability_of_improvement(np.asarray(new, float)[:, None], np.asarray(base, float)[:, None])


# ----- the check ---------------------------------------------------------------------------------------------
def load_baseline(path: Path) -> Baseline:
    try:
        return Baseline.model_validate_json(Path(path).read_text())
    except FileNotFoundError:
        raise BadInputError(f"{path}: baseline file not found (create one with --update)") from None
    except (ValidationError, ValueError) as e:
        raise BadInputError(f"{path}: malformed baseline ({str(e).splitlines()[0]})") from None
    except OSError as e:
        raise BadInputError(f"{path}: cannot read the baseline ({e.strerror or type(e).__name__})") from None


def _fmt(v: np.ndarray) -> str:
    return f"{np.mean(v):.4g}" + (f" +/- {np.std(v):.2g}" if len(v) > 1 else "")


def check_cell(key: str, base: Cell, new: Cell, tol: Tolerances) -> list[Verdict]:
    out = []
    for metric, name in (("final_return", f"final return (last {FINAL_N} evals)"), ("alc", f"ALC@{ALC_WINDOW}")):
        b, x = np.asarray(getattr(base, metric)), np.asarray(getattr(new, metric))
        lo, hi = bootstrap_diff_ci(x, b, tol.reps, tol.seed)
        drop = float(b.mean() - x.mean())
        margin = max(tol.rel_tol * abs(float(b.mean())), tol.abs_tol)
        ok = not (hi < 0 and drop > margin)
        out.append(Verdict(key, name, _fmt(b), _fmt(x), f"diff 95% CI [{lo:.4g}, {hi:.4g}], P(new > base) "
                           f"{probability_of_improvement(x, b):.2f}, margin {margin:.3g}", ok))
    b, x = np.asarray(base.speed), np.asarray(new.speed)
    if np.isfinite(b).all() and np.isfinite(x).all():
        r = float(x.mean() / b.mean())
        out.append(Verdict(key, "speed (steps/s per raw env step/s)", _fmt(b), _fmt(x),
                           f"ratio {r:.3f}, floor {1 - tol.speed_tol:.2f}", r >= 1 - tol.speed_tol))
    b, x = np.asarray(base.peak_rss_mb), np.asarray(new.peak_rss_mb)
    r = float(x.mean() / b.mean())
    out.append(Verdict(key, "peak RSS (MB)", _fmt(b), _fmt(x), f"ratio {r:.3f}, ceiling {1 + tol.mem_tol:.2f}",
                       r <= 1 + tol.mem_tol))
    for k, bv in base.audit.items():
        if k not in new.audit:
            out.append(Verdict(key, f"audit {k}", _fmt(np.asarray(bv)), "missing", "no longer logged", False))
            continue
        b, x = np.asarray(bv), np.asarray(new.audit[k])
        gate = base.gates.get(k) or new.gates.get(k) or {"gate": LEGACY.get(k, {}).get("gate", "drift"),
                                                          "bound": 1e-4}
        if gate["gate"] == "zero":
            ok = not (np.all(b == 0) and np.any(x != 0))
            out.append(Verdict(key, f"audit {k} (max)", _fmt(b), _fmt(x), "must stay exactly 0" if np.all(b == 0)
                               else "informational", ok))
        elif gate["gate"] == "small":
            ok = bool(np.all(x < gate["bound"])) or not np.all(b < gate["bound"])
            out.append(Verdict(key, f"audit {k} (max)", _fmt(b), _fmt(x), f"must stay below {gate['bound']:g}"
                               if np.all(b < gate["bound"]) else "informational", ok))
        else:
            rel = abs(float(x.mean() - b.mean())) / max(abs(float(b.mean())), 1e-12)
            out.append(Verdict(key, f"audit {k} (mean)", _fmt(b), _fmt(x), f"relative change {rel:.3f}, "
                               f"tolerance {tol.audit_tol:.2f}", rel <= tol.audit_tol))
    return out


def check_repeat(results: Path, other: Path) -> list[Verdict]:
    """Every run in `results` must have the same per-epoch table (timing aside) as its twin in `other`."""
    out = []
    runs = find_run_dirs(Path(results))
    for run in runs:
        rel = run.relative_to(results)
        twin = Path(other) / rel
        try:
            a, b = RunStore(run).read_metrics(), RunStore(twin).read_metrics()
        except RunFolderError as e:
            out.append(Verdict(str(rel), "determinism", "", "", str(e), False))
            continue
        _, diffs, missing = compare_tables(a, b)
        detail = "identical tables" if not diffs and not missing else "; ".join(
            [f"{d.column} differs from epoch {d.first_epoch}" for d in diffs[:3]] + missing[:3])
        out.append(Verdict(str(rel), "determinism", str(other), str(results), detail, not diffs and not missing))
    if not runs:
        raise BadInputError(f"{results}: no run folders to compare with {other}")
    return out


def run_check(results: Path, baseline_path: Path, tol: Tolerances, repeat: Path | None = None
              ) -> tuple[list[Verdict], list[str]]:
    """All verdicts, and notes (cells not compared, spec changes)."""
    baseline = load_baseline(baseline_path)
    cells, problems = collect_results(results)
    verdicts = [Verdict(p.split(":")[0], "run finished", "done", "not done", p, False) for p in problems]
    notes = []
    common = sorted(set(baseline.cells) & set(cells))
    if not common:
        raise BadInputError(f"{results}: no (task, label) cell in common with {baseline_path} "
                            f"(results: {', '.join(sorted(cells)) or 'none'}; baseline: {', '.join(baseline.cells)})")
    for key in sorted(set(baseline.cells) - set(cells)):
        notes.append(f"{key}: in the baseline, not in the results: not checked")
    for key in sorted(set(cells) - set(baseline.cells)):
        notes.append(f"{key}: not in the baseline: not checked")
    for key in common:
        b, n = baseline.cells[key], cells[key]
        old_code = dict(zip(b.seeds, b.algorithm_code, strict=False))
        code = dict.fromkeys(c for seed, new in zip(n.seeds, n.algorithm_code, strict=False)
                             for c in algorithm_changes(old_code.get(seed), new))
        notes += [f"{key}: {c} since the baseline" for c in code]
        if b.spec_hashes != n.spec_hashes:
            notes.append(f"{key}: the run specs differ from the baseline's (seeds {n.seeds} vs {b.seeds}, or "
                         "config): compared statistically")
        elif b.table_sha256 != n.table_sha256:
            notes.append(f"{key}: same specs, tables not bit-identical to the baseline's (another software "
                         "stack, or a change to the code): compared statistically")
        else:
            notes.append(f"{key}: same specs and bit-identical tables as the baseline")
        verdicts += check_cell(key, b, n, tol)
    if repeat is not None:
        verdicts += check_repeat(results, repeat)
    return verdicts, notes


def write_baseline(results: Path, path: Path, command: str) -> Baseline:
    cells, problems = collect_results(results)
    if problems:
        raise BadInputError(f"{results}: not every run finished, no baseline written: " + "; ".join(problems))
    prov = collect("cpu")
    baseline = Baseline(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        provenance={"command": command, "results": str(results), "code": prov["code"], "python": prov["python"],
                    "packages": prov["packages"], "cpu": prov["cpu"], "hostname": prov["hostname"]},
        settings={"final_n": FINAL_N, "alc_window": ALC_WINDOW},
        cells=cells,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(baseline.model_dump(mode="json"), indent=1) + "\n")
    return baseline
