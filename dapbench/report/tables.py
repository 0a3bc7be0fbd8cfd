"""The report's tables, as plain header + rows of strings for the HTML template."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dapbench.analysis.claims import Claim, paper
from dapbench.analysis.metrics import OVERHEAD_MEASURES, summarise
from dapbench.analysis.normalise import NormalisationTable


@dataclass
class Cell:
    text: str
    bold: bool = False
    title: str | None = None  # tooltip (HTML only)


@dataclass
class Table:
    caption: str
    header: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)
    first_column_is_header: bool = True
    css: str = ""  # class of the HTML table

    @property
    def empty(self) -> bool:
        return not self.rows


def fmt(x: float, digits: int = 1) -> str:
    """A number for a table: thousands separators, fixed digits; '-' for NaN (missing), 'inf' for infinity, and
    one significant digit where the fixed digits would print a non-zero value as 0 (0.04, not 0.0)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x != 0 and round(x, digits) == 0:
        return f"{x:.1g}"
    return f"{x:,.{digits}f}"


def _small(x: float, digits: int = 4) -> str:
    """A rate that may be tiny but not zero: `digits` decimals, or scientific notation where those would print a
    non-zero value as 0 (4.1e-07, never '0.0000')."""
    return f"{x:.1e}" if x and math.isfinite(x) and round(x, digits) == 0 else fmt(x, digits)


def mean_std(mean: float, std: float, n: int, n_max: int, digits: int = 1) -> str:
    """'mean ± std' over seeds ('(n=k)' when this cell has fewer runs than the fullest cell)."""
    if not math.isfinite(mean):
        return "-"
    text = f"{fmt(mean, digits)} ± {fmt(std, digits)}" if n > 1 else f"{fmt(mean, digits)}"
    return text + (f" (n={n})" if n < n_max or n == 1 else "")


def task_by_label(runs: pd.DataFrame, column: str, labels: list[str], titles: dict[str, str], caption: str,
                  digits: int = 1, best: Callable[[pd.Series], float] | None = np.nanmax,
                  notes: list[str] | None = None) -> Table:
    """Rows tasks, columns algorithms, cells mean ± sample std of `column` over seeds (the paper's Table II
    layout); the best mean of each row in bold."""
    s = summarise(runs.dropna(subset=[column]), ["task", "label"], column)
    n_max = int(s["n"].max()) if len(s) else 0
    rows = []
    for task in sorted(runs["task"].unique()):
        st = s[s["task"] == task].set_index("label")
        means = st["mean"].reindex(labels)
        top = best(means.to_numpy(float)) if best is not None and means.notna().sum() > 1 else None
        row = [Cell(titles.get(task, task))]
        for lab in labels:
            if lab not in st.index:
                row.append(Cell("-"))
                continue
            r = st.loc[lab]
            row.append(Cell(mean_std(r["mean"], r["std"], int(r["n"]), n_max, digits),
                            bold=top is not None and r["mean"] == top))
        rows.append(row)
    return Table(caption, ["task", *labels], rows, notes or [])


def overhead_table(pairs: pd.DataFrame, labels: list[str], titles: dict[str, str], baseline: str) -> Table:
    """Per task and algorithm: the ratios to the baseline (training time and CPU time first: they leave out the
    evaluation every method pays alike; then total wall-clock and memory), mean ± std over paired seeds; a last
    row over all pairs."""
    measures = [(col, name) for col, (_, name) in OVERHEAD_MEASURES.items() if pairs[col].notna().any()]
    header = ["task", "algorithm", *[f"{name} / {baseline}" for _, name in measures], "paired seeds"]
    rows = []
    groups = [(titles.get(t, t), t) for t in sorted(pairs["task"].unique())] + [("all tasks", None)]
    for title, task in groups:
        sub = pairs if task is None else pairs[pairs["task"] == task]
        for lab in labels:
            g = sub[sub["label"] == lab]
            if g.empty:
                continue
            cells = [Cell(title), Cell(lab)]
            for col, _ in measures:
                v = g[col].dropna()
                cells.append(Cell(f"{fmt(v.mean(), 2)}x ± {fmt(v.std(ddof=1), 2)}" if len(v) > 1 else
                                  (f"{fmt(v.mean(), 2)}x" if len(v) else "-")))
            cells.append(Cell(f"{len(g)} pairs" if task is None else ", ".join(str(s) for s in sorted(g["seed"]))))
            rows.append(cells)
    notes = ["Primary: training time (environment steps and updates, wall-clock, evaluation left out) and its CPU "
             "time (process time: load from other work on the machine does not inflate it). Total wall-clock "
             "includes evaluation. Runs logged before training time was recorded show '-'."]
    return Table(f"Overheads against {baseline}, paired by task and seed (ratio of totals per run): mean ± sample "
                 "std over pairs", header, rows, notes)


def audit_table(runs: pd.DataFrame, labels: list[str], titles: dict[str, str],
                declared: dict[str, dict]) -> Table:
    """The metrics algorithms declare for the audit, per task and algorithm: mean over seeds of each run's mean
    over epochs (max over runs and epochs in brackets), for the algorithms that log them."""
    cols = [c for c, d in declared.items() if d.get("audit") and f"{c}_mean" in runs.columns]
    rows = []
    for task in sorted(runs["task"].unique()):
        for lab in labels:
            g = runs[(runs["task"] == task) & (runs["label"] == lab)]
            if g.empty or all(g[f"{c}_mean"].isna().all() for c in cols):
                continue
            cells = [Cell(titles.get(task, task)), Cell(lab)]
            for c in cols:
                m, mx = g[f"{c}_mean"].mean(), g[f"{c}_max"].max()
                cells.append(Cell(f"{_small(m, 3)} ({_small(mx, 3)})" if not math.isnan(m) else "-"))
            cells.append(Cell(str(len(g))))
            rows.append(cells)
    notes = [f"{c}: {declared[c]['description']}" for c in cols]
    return Table("Audit metrics: mean over runs of each run's mean over epochs (max over runs and epochs)",
                 ["task", "algorithm", *cols, "runs"], rows, notes)


def diagnostics_table(runs: pd.DataFrame, labels: list[str], titles: dict[str, str],
                      declared: dict[str, dict]) -> Table:
    """The declared metrics outside the audit (what each mechanism did: weights, bounds, adaptation), per task,
    metric and algorithm: mean ± sample std over runs of each run's mean over epochs, and the range of those run
    means. One row per (task, metric, algorithm), so an ablation reads down a metric."""
    cols = [c for c, d in declared.items() if not d.get("audit") and f"{c}_mean" in runs.columns
            and runs[f"{c}_mean"].notna().any()]
    rows = []
    for task in sorted(runs["task"].unique()):
        for c in cols:
            for lab in labels:
                v = runs.loc[(runs["task"] == task) & (runs["label"] == lab), f"{c}_mean"].dropna()
                if v.empty:
                    continue
                spread = f"{_small(v.mean())} ± {_small(v.std(ddof=1))}" if len(v) > 1 else _small(v.mean())
                rows.append([Cell(titles.get(task, task)), Cell(c), Cell(lab), Cell(spread),
                             Cell(f"{_small(v.min())} to {_small(v.max())}"), Cell(str(len(v)))])
    notes = [f"{c}: {declared[c]['description']}" for c in cols]
    return Table("What each mechanism did: mean ± std over runs of each run's mean over epochs (range of the run "
                 "means)", ["task", "metric", "algorithm", "mean ± std", "range", "runs"], rows, notes)


def degeneracy_table(curves: pd.DataFrame, labels: list[str], titles: dict[str, str],
                     declared: dict[str, dict]) -> Table:
    """For algorithms that declare a metric at whose value they are numerically their base (a reconstruction's
    clip that never binds): its mean and max over every epoch of every run, and whether the variant acted."""
    cols = {c: d for c, d in declared.items() if d.get("degenerate_at") is not None and c in curves.columns}
    rows = []
    for c, d in cols.items():
        for (task, lab), g in curves.dropna(subset=[c]).groupby(["task", "label"]):
            v = g[c].to_numpy(float)
            acted = int((v != float(d["degenerate_at"])).sum())
            runs = g.loc[g[c] != float(d["degenerate_at"]), "run"].nunique()
            said = (f"acted in {acted} of {len(v)} epochs ({runs} of {g['run'].nunique()} runs)" if acted else
                    "numerically its base in every epoch")
            rows.append([Cell(titles.get(task, task)), Cell(lab), Cell(c), Cell(_small(v.mean())),
                         Cell(_small(v.max())), Cell(said, bold=not acted)])
    order = {lab: i for i, lab in enumerate(labels)}
    rows.sort(key=lambda r: (order.get(r[1].text, 99), r[0].text))
    notes = [f"{c}: {d['description']}" for c, d in cols.items()]
    return Table("Do the reconstructions differ from PPO at all? The metric at whose value each is its base, over "
                 "every epoch of every run",
                 ["task", "algorithm", "metric", "mean", "max", "in these runs"], rows, notes)


def paper_table(runs: pd.DataFrame, column: str, labels: list[str], titles: dict[str, str]) -> Table:
    """The paper's Table II (another protocol) next to these runs' final returns, per task and algorithm."""
    t2 = paper()["table_ii"]
    cols = [lab for lab in t2["columns"] if lab in labels]
    if not cols:
        return Table("", [], [])
    s = summarise(runs.dropna(subset=[column]), ["task", "label"], column).set_index(["task", "label"])
    rows = []
    for task in sorted(runs["task"].unique()):
        ref = t2["rows"].get(task)
        row = [Cell(titles.get(task, task))]
        for lab in cols:
            ours = s.loc[(task, lab)] if (task, lab) in s.index else None
            row.append(Cell(mean_std(ours["mean"], ours["std"], int(ours["n"]), int(ours["n"])) if ours is not None
                            else "-"))
            row.append(Cell(f"{fmt(ref[lab][0])} ± {fmt(ref[lab][1])}" if ref and lab in ref else "-"))
        rows.append(row)
    header = ["task"]
    for lab in cols:
        header += [f"{lab} (ours)", f"{t2['columns'][lab]} (paper)"]
    return Table("Final return beside the paper's Table II: " + t2["source"], header, rows,
                 [f"The paper's numbers come from {t2['protocol']}"])


def claims_table(rows: list[Claim]) -> Table:
    out = [[Cell(r.claim), Cell(r.measured), Cell(r.verdict, bold=True), Cell(r.why)] for r in rows]
    return Table(f"The paper's claims beside these runs ({paper()['claims']['source']})",
                 ["the paper says", "these runs show [95% CI]", "verdict", "why"], out, css="wrap")


def seeds_table(seeds: pd.DataFrame, titles: dict[str, str], metric: str, baseline: str) -> Table:
    """Per task and algorithm against the baseline: the difference, its interval, the smallest difference these
    seeds detect (80% power, two-sided 5%), and the seeds per algorithm the observed difference needs."""
    rows = []
    for r in seeds.itertuples():
        need = r.seeds_needed
        rows.append([Cell(titles.get(r.task, r.task)), Cell(r.label), Cell(f"{fmt(r.diff)} [{fmt(r.ci_low)}, "
                                                                           f"{fmt(r.ci_high)}]"),
                     Cell(fmt(r.mde)), Cell(f"{r.n}" if r.n == r.n_base else f"{r.n} ({baseline}: {r.n_base})"),
                     Cell("-" if math.isnan(need) else "never (no difference)" if math.isinf(need)
                          else f"{int(need):,}" if need < 1e6 else "> 1,000,000")])
    return Table(f"How many seeds would it take: {metric}, each algorithm minus {baseline}",
                 ["task", "algorithm", "difference [95% CI]", "smallest detectable difference", "seeds now",
                  "seeds to detect the observed difference"], rows,
                 ["Difference of means with its Welch t interval. Smallest detectable difference = (t_0.975 + t_0.8) x "
                  "the Welch standard error (80% power, two-sided 5%; ~3.7 SE at 3 seeds each, 3.2 at 5); seeds "
                  "needed = seeds now x (2.80 SE / observed)^2 (dapbench.analysis.power). '-': no spread (one run). "
                  "Seeds now: the algorithm's runs (and the baseline's, where they differ). "
                  "Normal approximations from few seeds: rough, but they tell a measured absence of an effect from "
                  "an unmeasured one."])


def normalisation_table(table: NormalisationTable, tasks: list[str], titles: dict[str, str]) -> Table:
    rows = []
    for task in tasks:
        t = table.tasks.get(task)
        if t is None:
            rows.append([Cell(titles.get(task, task)), Cell("-"), Cell("-"), Cell("-"), Cell("not in the table")])
            continue
        rows.append([Cell(titles.get(task, task)), Cell(fmt(t.random_return)), Cell(fmt(t.reference_return)),
                     Cell(t.reference_kind or "none (unnormalised)"),
                     Cell(f"random: {t.random_source}; reference: {t.reference_source}")])
    return Table(f"Normalisation (table version {table.version}, sha256 {table.sha256}): "
                 "score = (return - random) / (reference - random)",
                 ["task", "random", "reference", "kind", "how each number was obtained"], rows, css="wrap provenance")


def aggregate_table(points: dict[str, np.ndarray], cis: dict[str, np.ndarray], names: list[str], labels: list[str],
                    caption: str, notes: list[str] | None = None, runs_per_task: dict[str, int] | None = None
                    ) -> Table:
    """Point estimate [95% CI] per algorithm and metric, and the runs per task behind it. With one run per task
    a stratified bootstrap has nothing to resample (its interval is the point): no interval is printed."""
    rows, per_task = [], runs_per_task or {}
    for lab in labels:
        if lab not in points:
            continue
        p, ci = np.atleast_1d(points[lab]), np.asarray(cis[lab]).reshape(2, -1)
        one = per_task.get(lab) == 1
        rows.append([Cell(lab), *[Cell(f"{p[i]:.3f} (no interval: 1 run per task)" if one else
                                       f"{p[i]:.3f} [{ci[0, i]:.3f}, {ci[1, i]:.3f}]") for i in range(len(names))],
                     Cell(str(per_task.get(lab, "-")))])
    return Table(caption, ["algorithm", *names, "runs per task"], rows, notes or [])
