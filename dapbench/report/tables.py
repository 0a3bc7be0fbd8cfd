"""The report's tables, as plain header + rows of strings for the HTML template."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dapbench.analysis.metrics import AUDIT_COLUMNS, summarise
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
    """A number for a table: thousands separators, fixed digits, '-' for NaN."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:,.{digits}f}"


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
    """Per task and algorithm: wall-clock and peak-memory ratios to the baseline, mean ± std over paired seeds;
    a last row over all pairs."""
    has_cuda = pairs["cuda_peak_ratio"].notna().any()
    measures = [("wall_clock_ratio", "wall-clock"), ("peak_rss_ratio", "peak RSS")]
    if has_cuda:
        measures.append(("cuda_peak_ratio", "peak GPU memory"))
    header = ["task", "algorithm", *[f"{name} / {baseline}" for _, name in measures], "pairs (seeds)"]
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
            cells.append(Cell(str(len(g)) if task is None else ", ".join(str(s) for s in sorted(g["seed"]))))
            rows.append(cells)
    return Table(f"Overheads against {baseline}, paired by task and seed (ratio of totals per run)", header, rows)


def audit_table(runs: pd.DataFrame, labels: list[str], titles: dict[str, str]) -> Table:
    """Audit metrics per task and algorithm: mean over seeds of each run's mean over epochs (max over runs and
    epochs in brackets), for the algorithms that log them."""
    cols = [c for c in AUDIT_COLUMNS if f"{c}_mean" in runs.columns]
    rows = []
    for task in sorted(runs["task"].unique()):
        for lab in labels:
            g = runs[(runs["task"] == task) & (runs["label"] == lab)]
            if g.empty or all(g[f"{c}_mean"].isna().all() for c in cols):
                continue
            cells = [Cell(titles.get(task, task)), Cell(lab)]
            for c in cols:
                m, mx = g[f"{c}_mean"].mean(), g[f"{c}_max"].max()
                cells.append(Cell(f"{fmt(m, 3)} ({fmt(mx, 3)})" if math.isfinite(m) else "-"))
            cells.append(Cell(str(len(g))))
            rows.append(cells)
    notes = [f"{c}: {AUDIT_COLUMNS[c]}" for c in cols]
    return Table("Audit metrics: mean over runs of each run's mean over epochs (max over runs and epochs)",
                 ["task", "algorithm", *cols, "runs"], rows, notes)


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
                    caption: str, notes: list[str] | None = None) -> Table:
    """Point estimate [95% CI] per algorithm and metric."""
    rows = []
    for lab in labels:
        if lab not in points:
            continue
        p, ci = np.atleast_1d(points[lab]), np.asarray(cis[lab]).reshape(2, -1)
        rows.append([Cell(lab), *[Cell(f"{p[i]:.3f} [{ci[0, i]:.3f}, {ci[1, i]:.3f}]") for i in range(len(names))]])
    return Table(caption, ["algorithm", *names], rows, notes or [])
