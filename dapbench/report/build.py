"""`dapbench report RESULTS -o DIR`: results folders -> one self-contained HTML page and a PDF of it.

Steps: load the run folders (tidy table, missing-run policy) -> per-run metrics -> normalised scores ->
rliable aggregates (stratified bootstrap over runs, fixed seed) -> figures (base64 PNG) and tables ->
`report.html` (Jinja2) -> `report.pdf` (WeasyPrint, same HTML). Beside them: `runs.csv` (every run's
metrics and provenance, one row per run), `aggregates.csv` (every interval estimate) and `tables/<name>.csv`
(every table of the page as printed: claims and seeds needed included), so each number in the report can be
traced to run folders and code versions, and two builds compared.
"""

from __future__ import annotations

import logging
import math
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from pydantic import BaseModel, ConfigDict, NonNegativeInt, PositiveInt
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dapbench.analysis import aggregate as agg
from dapbench.analysis import claims
from dapbench.analysis.claims import seeds_needed
from dapbench.analysis.load import Results, load_results
from dapbench.analysis.metrics import (
    PROTOCOL_EPOCH_STEPS,
    alc_vs_baseline,
    overheads,
    per_run,
    window_metrics,
)
from dapbench.analysis.normalise import NormalisationTable, load_table
from dapbench.analysis.scores import Scores, common_tasks, curve_arrays, score_matrices
from dapbench.report import figures
from dapbench.report.tables import (
    Cell,
    Table,
    aggregate_table,
    audit_table,
    claims_table,
    degeneracy_table,
    diagnostics_table,
    fmt,
    normalisation_table,
    overhead_table,
    paper_table,
    seeds_table,
    task_by_label,
)
from dapbench.results.atomic import atomic_write, atomic_write_text
from dapbench.results.provenance import code_version
from dapbench.tasks.registry import TASKS

PER_RUN_APPENDIX_MAX = 120  # runs listed one by one in the page; beyond that, runs.csv holds them
STEPS = ["load run folders", "per-run metrics", "aggregates: final return", "aggregates: ALC",
         "probability of improvement", "performance profiles", "sample-efficiency curves", "figures", "HTML", "PDF"]


class ReportOptions(BaseModel):
    """What `dapbench report` builds, and how (the CLI's options)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    results: list[Path]
    out: Path
    reps: PositiveInt = agg.DEFAULT_REPS
    seed: NonNegativeInt = agg.DEFAULT_SEED
    final_n: PositiveInt = 5
    alc_n: PositiveInt = 40
    missing: Literal["fail", "drop"] = "drop"
    baseline: str = "ppo"
    target: str = "ppo-dap"
    suite: Path | None = None
    pdf: bool = True
    command: str | None = None


@dataclass
class ReportOutput:
    html: Path
    pdf: Path | None
    pdf_pages: int
    warnings: list[str]
    figures: int
    seconds: dict[str, float] = field(default_factory=dict)


def _package(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


class _Steps:
    """A rich progress bar over the build's steps (plain lines when not on a terminal)."""

    def __init__(self, console: Console | None) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.bar = Progress(TextColumn("report: {task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=self.console, transient=True,
                            disable=not self.console.is_terminal)
        self.task = self.bar.add_task(STEPS[0], total=len(STEPS))
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        import time

        self.bar.update(self.task, description=name)
        if not self.console.is_terminal:
            self.console.print(f"report: {name}", highlight=False)
        t0 = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - t0
        self.bar.advance(self.task)


def _labels(runs: pd.DataFrame, baseline: str, target: str) -> list[str]:
    """Algorithm labels in report order: the baseline, the target, then the rest alphabetically."""
    have = sorted(set(runs["label"]))
    return [lab for lab in (baseline, target) if lab in have] + [lab for lab in have if lab not in (baseline, target)]


def _reconstructions(runs: pd.DataFrame) -> dict[str, str]:
    """label -> why its numbers need care: a reconstructed baseline, or an algorithm not registered here."""
    from dapbench.registry import algorithms

    reg = algorithms()
    out = {}
    for lab, name in runs.groupby("label")["algorithm"].first().items():
        cls = reg.get(name)
        if cls is None:
            out[lab] = f"algorithm {name!r} is not registered in this installation; its kind is unknown here"
        elif cls.reconstruction:
            out[lab] = f"reconstruction: {cls.reconstruction}"
    return out


def _normalised(values: pd.Series, tasks: pd.Series, table: NormalisationTable) -> pd.Series:
    out = pd.Series(np.nan, index=values.index)
    for task, idx in tasks.groupby(tasks).groups.items():
        out.loc[idx] = table.normalise(task, values.loc[idx].to_numpy(float))
    return out


@dataclass(frozen=True)
class Window:
    """The metrics a report can honestly show for its runs: the protocol's (ALC@n by steps under the 1.0M horizon,
    final return over the last N evaluations) where every run allows them, else the window every run has, named
    for what it is."""

    protocol_alc: bool
    alc_steps: float
    alc_label: str
    alc_note: str
    full_final: bool
    final_k: int
    final_label: str


def _steps_text(x: float) -> str:
    return f"{x / 1e6:g}M" if x >= 1e6 else f"{x / 1e3:g}k" if x >= 1e3 else f"{x:g}"


def choose_window(runs: pd.DataFrame, opts: ReportOptions) -> Window:
    protocol = bool(runs["alc"].notna().all() and (runs["alc_flag"] == "").all())
    full_window = opts.alc_n * PROTOCOL_EPOCH_STEPS
    if protocol:
        alc_steps, label, note = float(full_window), f"ALC@{opts.alc_n}", ""
    else:
        alc_steps = float(min(runs["last_eval_steps"].min(), full_window))
        why = []
        short = runs[runs["alc"].isna()]
        if len(short):
            last = _steps_text(short["last_eval_steps"].min())
            why.append(f"{len(short)} of {len(runs)} runs lack the {opts.alc_n} evaluations at the ends of the first "
                       f"{opts.alc_n} epochs of {PROTOCOL_EPOCH_STEPS:,} steps (they have "
                       f"{_range(short['n_evals'])} evaluations, the last at {last} steps)")
        why += sorted({f for f in runs["alc_flag"] if f})
        label = f"ALC over the first {_steps_text(alc_steps)} steps"
        note = (f"Not the protocol's ALC@{opts.alc_n}: " + "; ".join(why) + ". Every run's ALC here is the mean of "
                f"its evaluations up to {_steps_text(alc_steps)} steps, the window all of them have.")
    full_final = bool((runs["n_evals"] >= opts.final_n).all())
    k = opts.final_n if full_final else max(1, int(runs["n_evals"].min()))
    final_label = (f"final return (mean of the last {k} evaluations)" if full_final else
                   f"final return over the last {k} evaluation{'s' * (k > 1)} (fewer than the {opts.final_n} of the "
                   "report's definition: the runs are short)")
    return Window(protocol, alc_steps, label, note, full_final, k, final_label)


def _range(v: pd.Series) -> str:
    lo, hi = int(v.min()), int(v.max())
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def _aggregate_rows(scope: str, names: list[str], points: dict, cis: dict) -> list[dict[str, Any]]:
    rows = []
    for key, p in points.items():
        p, ci = np.atleast_1d(p), np.asarray(cis[key]).reshape(2, -1)
        for i, name in enumerate(names):
            rows.append({"scope": scope, "algorithm": key, "metric": name, "point": p[i], "ci_low": ci[0, i],
                         "ci_high": ci[1, i]})
    return rows


def _ratio_notes(runs: pd.DataFrame, baseline: str) -> list[str]:
    """Why a task has no ratio although it has baseline runs: metrics.alc_vs_baseline left it out (its baseline's
    mean ALC is not positive)."""
    base = runs[runs["label"] == baseline]
    bad = [t for t, g in base.groupby("task") if g["alc_vs_baseline"].isna().all()]
    if not bad:
        return []
    names = ", ".join(TASKS[t].gym_id if t in TASKS else t for t in bad)
    return [f"No ratio where {baseline}'s mean is not positive ({names}): a ratio of negative returns reads "
            "backwards; see the differences in the seeds table."]


def _known(v: object) -> bool:
    """A provenance field that was recorded (not None, not a NaN that pandas filled in for a missing key)."""
    return v is not None and not (isinstance(v, float) and math.isnan(v)) and v != ""


def _cells_table(res: Results, labels: list[str], titles: dict[str, str]) -> Table:
    """Provenance per task x algorithm: seeds done and not, budget, code commits, software, machine."""
    rows = []
    for (task, lab), g in res.runs.groupby(["task", "label"]):
        done = g[g["included"]]
        bad = g[~g["included"]]
        commits = sorted({c for cs in done["commits"].fillna("") for c in cs.split()})
        dirty = bool(done["dirty"].fillna(False).astype(bool).any())
        soft = sorted({f"torch {r.torch_version}, gymnasium {r.gymnasium_version}, mujoco {r.mujoco_version}"
                       for r in done.itertuples()}) if len(done) else []
        machine = sorted({f"{r.run_device}: {r.gpu if _known(r.gpu) else r.cpu}" for r in done.itertuples()})
        rows.append([
            Cell(titles.get(task, task)), Cell(lab), Cell(", ".join(str(s) for s in done["seed"]) or "-"),
            Cell(", ".join(f"{r.seed} ({r.state})" for r in bad.itertuples()) or "-", bold=len(bad) > 0),
            Cell(", ".join(f"{s:,}" for s in sorted(set(g["total_steps"]))) + " steps, "
                 + ", ".join(str(e) for e in sorted(set(g["evaluation_episodes"]))) + " eval episodes"),
            Cell(" ".join(commits) + (" (dirty)" if dirty else "") or "unknown"),
            Cell("; ".join(soft) or "-"), Cell("; ".join(machine) or "-")])
    order = {lab: i for i, lab in enumerate(labels)}
    rows.sort(key=lambda r: (r[0].text, order.get(r[1].text, 99)))
    return Table("Runs per task and algorithm, with the code and machine that produced them",
                 ["task", "algorithm", "seeds done", "seeds not complete", "budget", "code commits",
                  "software", "device"], rows, css="wrap provenance")


def _per_run_table(runs: pd.DataFrame, titles: dict[str, str]) -> Table:
    rows = [[Cell(titles.get(r.task, r.task)), Cell(r.label), Cell(str(r.seed)), Cell(fmt(r.final_metric)),
             Cell(fmt(r.alc_metric)), Cell(r.alc_flag or "-"), Cell(fmt(r.train_time_s, 0)),
             Cell(fmt(r.cpu_train_s, 0)), Cell(fmt(r.wall_clock_s, 0)), Cell(fmt(r.peak_rss_mb, 0)),
             Cell(r.commits or "-"), Cell(r.run)] for r in runs.itertuples()]
    header = ["task", "algorithm", "seed", "final return", "ALC", "ALC flag", "training s", "training CPU s",
              "wall-clock s", "peak RSS MB", "commit", "run folder"]
    return Table("Every run: its numbers and folder", header, rows)


def _mark(table: Table, marks: dict[str, str]) -> Table:
    """Put each label's mark (reconstruction, unregistered) on headers and cells naming it."""
    table.header = [h + marks.get(h, "") for h in table.header]
    for row in table.rows:
        for c in row:
            c.text = c.text + marks.get(c.text, "")
    return table


def build_report(opts: ReportOptions, console: Console | None = None) -> ReportOutput:
    """Build `report.html` (and `report.pdf`) in `opts.out`; see the module docstring."""
    steps = _Steps(console)
    notes: dict[str, list[str]] = {}
    figs: dict[str, str] = {}
    agg_rows: list[dict[str, Any]] = []
    with steps.bar:
        with steps.step("load run folders"):
            res = load_results(opts.results, missing=opts.missing, suite=opts.suite)
            table = load_table()
        with steps.step("per-run metrics"):
            runs = per_run(res.curves, alc_n=opts.alc_n, final_n=opts.final_n, metrics=list(res.declared))
            runs = runs.merge(res.included.drop(columns=["suite", "algorithm", "total_steps"]),
                              on=["task", "label", "seed", "run"], how="left")
            window = choose_window(runs, opts)
            runs = runs.merge(window_metrics(res.curves, window.alc_steps, window.final_k), on="run", how="left")
            runs["alc_metric"] = runs["alc"] if window.protocol_alc else runs["alc_window"]
            runs["final_metric"] = runs["final_return"] if window.full_final else runs["final_window"]
            labels = _labels(runs, opts.baseline, opts.target)
            titles = {t: TASKS[t].gym_id if t in TASKS else t for t in runs["task"].unique()}
            has_baseline = opts.baseline in labels
            runs["alc_vs_baseline"] = alc_vs_baseline(runs, opts.baseline, "alc_metric") if has_baseline else np.nan
            runs["final_norm"] = _normalised(runs["final_metric"], runs["task"], table)
            runs["alc_norm"] = _normalised(runs["alc_metric"], runs["task"], table)
            curves = res.curves.copy()
            curves["eval_norm"] = _normalised(curves["eval_return_mean"], curves["task"], table)
            pairs = overheads(runs, opts.baseline) if has_baseline else pd.DataFrame()
            tasks = sorted(runs["task"].unique())
            unnormalised = [t for t in tasks if not (table.tasks.get(t) and table.tasks[t].usable)]
            norm_tasks = [t for t in tasks if t not in unnormalised]
            notes["aggregates"] = []
            if unnormalised:
                notes["aggregates"].append(f"left out of normalised aggregates (no reference return): "
                                           f"{', '.join(titles[t] for t in unnormalised)}")
        with steps.step("aggregates: final return"):
            final = score_matrices(runs, "final_norm", labels, common_tasks(runs, "final_norm", labels, norm_tasks))
            notes["aggregates"] += final.notes
            final_ok = bool(final.tasks and final.matrices)
            if final_ok:
                fp, fci = agg.aggregate_metrics(final.matrices, opts.reps, opts.seed)
                agg_rows += _aggregate_rows(f"normalised {window.final_label}", list(agg.METRICS), fp, fci)
            else:
                notes["aggregates"].append("no normalised task on which every algorithm has runs: no aggregates of "
                                           "the final return")
        with steps.step("aggregates: ALC"):
            alc_s = score_matrices(runs, "alc_norm", labels, common_tasks(runs, "alc_norm", labels, norm_tasks))
            alc_ok = bool(alc_s.tasks and alc_s.matrices)
            if alc_ok:
                ap, aci = agg.aggregate_metrics(alc_s.matrices, opts.reps, opts.seed)
                agg_rows += _aggregate_rows(f"normalised {window.alc_label}", list(agg.METRICS), ap, aci)
            else:
                notes["aggregates"].append(f"no normalised task on which every algorithm has runs: no aggregates of "
                                           f"the {window.alc_label}")
        with steps.step("probability of improvement"):
            poi_pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            poi_tasks: dict[str, list[str]] = {}
            if opts.target in labels:
                for other in labels:
                    if other == opts.target:
                        continue
                    both = common_tasks(runs, "final_metric", [opts.target, other])
                    s = score_matrices(runs, "final_metric", [opts.target, other], both)
                    if len(s.matrices) == 2:
                        poi_pairs[f"{opts.target},{other}"] = (s.matrices[opts.target], s.matrices[other])
                        poi_tasks[other] = both
            else:
                notes["aggregates"].append(f"no runs of {opts.target!r}: no probability of improvement "
                                           "(choose the algorithm with --target)")
            if poi_pairs:
                pp, pci = agg.interval_estimates(poi_pairs, agg.probability_of_improvement, opts.reps, opts.seed)
                agg_rows += _aggregate_rows(f"probability of improvement ({window.final_label})", ["P(X > Y)"], pp,
                                            pci)
        with steps.step("performance profiles"):
            if final_ok:
                allv = np.concatenate([m.ravel() for m in final.matrices.values()])
                taus = np.linspace(min(0.0, allv.min()), max(1.0, allv.max()) * 1.02, 81)
                prp, prci = agg.performance_profiles(final.matrices, taus, opts.reps, opts.seed)
        with steps.step("sample-efficiency curves"):
            se_steps, se = curve_arrays(curves, final, "eval_norm") if final_ok else (np.array([]), {})
            if se:
                sep, seci = agg.sample_efficiency(se, opts.reps, opts.seed)
        with steps.step("figures"):
            colors = figures.palette(labels)
            figs["curves"] = figures.learning_curves(res.curves, labels, titles, colors)
            if final_ok:
                figs["final"] = figures.interval_estimates(fp, fci, list(agg.METRICS), labels, colors,
                                                           f"normalised {window.final_label}")
                figs["profiles"] = figures.profiles(prp, prci, taus, labels, colors)
            if alc_ok:
                figs["alc"] = figures.interval_estimates(ap, aci, list(agg.METRICS), labels, colors,
                                                         f"normalised {window.alc_label}")
            if poi_pairs:
                figs["poi"] = figures.improvement(pp, pci, colors)
            if se:
                figs["sample_efficiency"] = figures.sample_efficiency(se_steps, sep, seci, labels, colors)
            if len(pairs):
                figs["overheads"] = figures.overheads(pairs, labels, colors, opts.baseline)
        with steps.step("HTML"):
            marks = {}
            recon = _reconstructions(runs)
            for lab, why in recon.items():
                marks[lab] = " †" if why.startswith("reconstruction") else " ‡"
            tables = _tables(opts, runs, res, labels, titles, table, pairs, final, alc_s, poi_tasks, agg_rows, window)
            tables = {k: _mark(t, marks) for k, t in tables.items()}
            context = _context(opts, res, runs, labels, titles, tables, figs, notes, recon, marks, final, alc_s, window)
            html = render(context)
            opts.out.mkdir(parents=True, exist_ok=True)
            html_path = opts.out / "report.html"
            atomic_write_text(html_path, html)
            atomic_write_text(opts.out / "runs.csv", runs.to_csv(index=False))
            atomic_write_text(opts.out / "aggregates.csv", pd.DataFrame(agg_rows, columns=[
                "scope", "algorithm", "metric", "point", "ci_low", "ci_high"]).to_csv(index=False))
            written = _write_tables(tables, opts.out / "tables")
        pdf_path, pages = None, 0
        with steps.step("PDF"):
            if opts.pdf:
                pdf_path = opts.out / "report.pdf"
                pages = write_pdf(html, pdf_path)
    for f in ("report.html", "report.pdf", "runs.csv", "aggregates.csv", *written):  # atomic writes make them 0600
        if (opts.out / f).exists():
            (opts.out / f).chmod(0o644)
    return ReportOutput(html_path, pdf_path, pages, res.warnings, len(figs), steps.seconds)


def _tables(opts: ReportOptions, runs: pd.DataFrame, res: Results, labels: list[str], titles: dict[str, str],
            table: NormalisationTable, pairs: pd.DataFrame, final: Scores, alc_s: Scores,
            poi_tasks: dict[str, list[str]], agg_rows: list[dict[str, Any]], window: Window) -> dict[str, Table]:
    alc_notes = [window.alc_note] if window.alc_note else []
    out = {
        "final": task_by_label(runs, "final_metric", labels, titles,
                               f"{window.final_label[:1].upper()}{window.final_label[1:]}: mean ± sample std over "
                               "seeds (layout of the paper's Table II; best mean per task in bold)"),
        "alc": task_by_label(runs, "alc_metric", labels, titles,
                             f"{window.alc_label}: mean ± std over seeds of each run's mean evaluation return "
                             + ("at the ends of its first " + f"{opts.alc_n} epochs (picked by environment steps)"
                                if window.protocol_alc else f"up to {_steps_text(window.alc_steps)} steps"),
                             notes=alc_notes),
        "normalisation": normalisation_table(table, sorted(runs["task"].unique()), titles),
        "cells": _cells_table(res, labels, titles),
    }
    if window.protocol_alc:
        out["alc_trapezoid"] = task_by_label(runs, "alc_trapezoid", labels, titles,
                                             f"ALC@{opts.alc_n}, trapezoid form (area under the curve over the same "
                                             "evaluations / steps spanned)")
    if opts.baseline in labels:
        out["alc_vs_baseline"] = task_by_label(runs, "alc_vs_baseline", labels, titles,
                                               f"{window.alc_label} / mean {window.alc_label} of {opts.baseline} on "
                                               "the same task", digits=3, notes=_ratio_notes(runs, opts.baseline))
        seeds = seeds_needed(runs, "alc_metric", labels, opts.baseline)
        if len(seeds):
            out["seeds_alc"] = seeds_table(seeds, titles, f"{window.alc_label}", opts.baseline)
        seeds = seeds_needed(runs, "final_metric", labels, opts.baseline)
        if len(seeds):
            out["seeds_final"] = seeds_table(seeds, titles, window.final_label, opts.baseline)
    if len(pairs):
        out["overheads"] = overhead_table(pairs, labels, titles, opts.baseline)
    audit = audit_table(runs, labels, titles, res.declared)
    if not audit.empty:
        out["audit"] = audit
    diagnostics = diagnostics_table(runs, labels, titles, res.declared)
    if not diagnostics.empty:
        out["diagnostics"] = diagnostics
    degenerate = degeneracy_table(res.curves, labels, titles, res.declared)
    if not degenerate.empty:
        out["degenerate"] = degenerate
    paper_t = paper_table(runs, "final_metric", labels, titles)
    if not paper_t.empty:
        out["paper"] = paper_t
    out["claims"] = claims_table(_claims(opts, runs, pairs, window, res))
    rows = pd.DataFrame(agg_rows)
    for key, scope, s in (("agg_final", f"normalised {window.final_label}", final),
                          ("agg_alc", f"normalised {window.alc_label}", alc_s)):
        sub = rows[rows["scope"] == scope] if len(rows) else rows
        if len(sub):
            pts = {a: g["point"].to_numpy() for a, g in sub.groupby("algorithm", sort=False)}
            cis = {a: np.stack([g["ci_low"].to_numpy(), g["ci_high"].to_numpy()]) for a, g in
                   sub.groupby("algorithm", sort=False)}
            out[key] = aggregate_table(pts, cis, list(agg.METRICS), labels,
                                       f"{scope}: point estimate [95% stratified-bootstrap CI], over "
                                       f"{len(s.tasks)} task{'s' * (len(s.tasks) != 1)} "
                                       f"({', '.join(titles[t] for t in s.tasks)})",
                                       runs_per_task={lab: m.shape[0] for lab, m in s.matrices.items()})
    poi = rows[rows["scope"].str.startswith("probability")] if len(rows) else rows
    if len(poi):
        trows = []
        for r in poi.itertuples():
            x, y = r.algorithm.split(",", 1)
            trows.append([Cell(x), Cell(y), Cell(f"{r.point:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"),
                          Cell(", ".join(titles[t] for t in poi_tasks[y]))])
        out["poi"] = Table(f"Probability that a run of X beats a run of Y on a task ({window.final_label}), mean "
                           "over tasks, [95% CI]", ["X", "Y", "P(X > Y)", "tasks"], trows)
    if len(runs) <= PER_RUN_APPENDIX_MAX:
        out["per_run"] = _per_run_table(runs.sort_values(["task", "label", "seed"]), titles)
    return out


def _claims(opts: ReportOptions, runs: pd.DataFrame, pairs: pd.DataFrame, window: Window, res: Results) -> list:
    """The paper's headline claims next to these runs (dapbench.analysis.claims), when its target and baseline
    are among them."""
    c = claims.paper()["claims"]
    target, baseline = c["target"], c["baseline"]
    if target not in set(runs["label"]) or baseline not in set(runs["label"]):
        return [claims.Claim(f"the paper's claims ({target} against {baseline})",
                             f"these results have no runs of {target} and {baseline} both", claims.NOT_MEASURED, "")]
    reps = min(opts.reps, 5_000)
    gpu = bool((res.included["run_device"].fillna("cpu").astype(str).str.startswith("cuda")).all())
    at_budget = bool((runs["total_steps"] >= c["final_vs_best"]["steps"]).all())
    return [
        claims.alc_claim(runs, target, baseline, window.protocol_alc, int(c["tasks"]), reps, opts.seed),
        claims.final_claim(runs, target, at_budget),
        # CPU time first: on a shared CPU machine the wall-clock ratios also measure the load when each run ran
        claims.overhead_claim(pairs, target, "wall_clock", "cpu_time_ratio", gpu, reps, opts.seed,
                              "CPU time of training (no evaluation)"),
        claims.overhead_claim(pairs, target, "wall_clock", "train_time_ratio", gpu, reps, opts.seed,
                              "training time (no evaluation)"),
        claims.overhead_claim(pairs, target, "wall_clock", "wall_clock_ratio", gpu, reps, opts.seed,
                              "total wall-clock"),
        claims.overhead_claim(pairs, target, "gpu_memory", "cuda_peak_ratio", gpu, reps, opts.seed,
                              "peak GPU memory") if gpu else
        claims.Claim(c["gpu_memory"]["text"], "CPU runs: no GPU memory; peak RSS ratio in the overheads table",
                     claims.NOT_MEASURED, "needs runs with device: cuda"),
    ]


def _context(opts: ReportOptions, res: Results, runs: pd.DataFrame, labels: list[str], titles: dict[str, str],
             tables: dict[str, Table], figs: dict[str, str], notes: dict[str, list[str]], recon: dict[str, str],
             marks: dict[str, str], final: Scores, alc_s: Scores, window: Window) -> dict[str, Any]:
    code = code_version()
    evals_every = sorted(set(res.included["evaluation_every"]))
    steps_per_epoch = sorted(set(res.included["steps_per_epoch"]))
    alc_steps = runs["alc_steps"].dropna()
    return {
        "title": "dapbench report: " + ", ".join(sorted(set(res.curves["suite"]))),
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "opts": opts,
        "n_runs": len(runs), "n_found": len(res.runs), "labels": labels,
        "tasks": [titles[t] for t in sorted(runs["task"].unique())],
        "seeds": sorted(set(runs["seed"])),
        "warnings": res.warnings, "notes": notes, "tables": tables, "figs": figs,
        "recon": {lab + marks.get(lab, ""): why for lab, why in recon.items()},
        "evals_every": evals_every, "steps_per_epoch": steps_per_epoch,
        "alc_steps": sorted(set(alc_steps.astype(int))) if len(alc_steps) else [],
        "window": window,
        "paper": claims.paper(),
        "per_run_in_page": "per_run" in tables,
        "build": {
            "dapbench commit": f"{code['commit'] or 'unknown'}" + (" (uncommitted changes)" if code["dirty"] else ""),
            "command": opts.command or "build_report(...)",
            "results folders": ", ".join(str(r) for r in opts.results),
            "bootstrap": f"{opts.reps:,} repetitions, seed {opts.seed}, percentile 95% CIs, stratified over runs",
            "python": platform.python_version(),
            "packages": ", ".join(f"{p} {_package(p)}" for p in ("dapbench", "rliable", "numpy", "pandas", "scipy",
                                                                  "matplotlib", "seaborn", "weasyprint")),
        },
    }


def render(context: dict[str, Any]) -> str:
    """The report page from `templates/report.html.j2`."""
    env = Environment(loader=PackageLoader("dapbench.report", "templates"), autoescape=select_autoescape(["j2"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("report.html.j2").render(**context)


def _write_tables(tables: dict[str, Table], folder: Path) -> list[str]:
    """Every table of the page as `tables/<name>.csv`, cell text as printed (the claims and seeds-needed tables
    included), so the page's numbers can be diffed between two builds. Files of tables a build no longer has
    are removed. Returns the paths written, relative to the report folder."""
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.csv"):
        if old.stem not in tables:
            old.unlink()
    out = []
    for name, t in tables.items():
        rows = [[c.text for c in r] for r in t.rows]
        atomic_write_text(folder / f"{name}.csv", pd.DataFrame(rows, columns=t.header).to_csv(index=False))
        out.append(f"tables/{name}.csv")
    return out


def write_pdf(html: str, path: Path) -> int:
    """Render `html` to a PDF at `path` with WeasyPrint; returns its page count."""
    from weasyprint import HTML

    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    doc = HTML(string=html, base_url=str(path.parent)).render()
    atomic_write(path, lambda f: f.write(doc.write_pdf()))
    return len(doc.pages)
