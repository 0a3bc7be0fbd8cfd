"""The report's figures: matplotlib (Agg) and seaborn, plus rliable's plot utilities, each returned as a
base64 PNG to embed in the HTML page (and so in the PDF)."""

from __future__ import annotations

import base64
import io
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FuncFormatter, MaxNLocator
from rliable import plot_utils

DPI = 100
Colors = dict[str, tuple[float, float, float]]


def palette(labels: list[str]) -> Colors:
    """One colour per algorithm label, the same in every figure (seaborn's colour-blind palette)."""
    return dict(zip(labels, sns.color_palette("colorblind", max(len(labels), 1)), strict=False))


def to_png(fig: plt.Figure) -> str:
    """The figure as a base64 PNG (closed afterwards)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def steps_text(x: float, _pos: object = None) -> str:
    """Environment steps for a tick: 0, 50k, 200k, 1M, 1.5M."""
    x = float(x)
    if x == 0:
        return "0"
    return f"{x / 1e6:g}M" if abs(x) >= 1e6 else f"{x / 1e3:g}k" if abs(x) >= 1e3 else f"{x:g}"


def steps_axis(ax: plt.Axes, label: str = "environment steps") -> None:
    """Clean step ticks (at most 5, round numbers, in k or M) on the x axis."""
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10], min_n_ticks=2))
    ax.xaxis.set_major_formatter(FuncFormatter(steps_text))
    ax.set_xlabel(label)


def _bootstrap_band(values: np.ndarray, reps: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """95% percentile bootstrap interval of the mean over seeds (rows), per column; the mean itself for one seed."""
    if values.shape[0] < 2:
        return values.mean(0), values.mean(0)
    idx = np.random.default_rng(seed).integers(0, values.shape[0], (reps, values.shape[0]))
    means = np.nanmean(values[idx], axis=1)
    return np.nanpercentile(means, 2.5, axis=0), np.nanpercentile(means, 97.5, axis=0)


def learning_curves(curves: pd.DataFrame, labels: list[str], titles: dict[str, str], colors: Colors) -> str:
    return to_png(learning_curves_figure(curves, labels, titles, colors))


def learning_curves_figure(curves: pd.DataFrame, labels: list[str], titles: dict[str, str], colors: Colors
                           ) -> plt.Figure:
    """Evaluation return against environment steps per task: mean over seeds, shaded 95% bootstrap interval of
    the mean over seeds; one legend for every algorithm drawn anywhere."""
    tasks = sorted(curves["task"].unique())
    ncols = min(4, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False)
    ev = curves.dropna(subset=["eval_return_mean"])
    drawn: list[str] = []
    for ax, task in zip(axes.flat, tasks, strict=False):
        for lab in labels:
            g = ev[(ev["task"] == task) & (ev["label"] == lab)]
            if g.empty:
                continue
            wide = g.pivot_table(index="seed", columns="env_steps", values="eval_return_mean")
            x, y = wide.columns.to_numpy(float), wide.to_numpy(float)
            lo, hi = _bootstrap_band(y)
            ax.plot(x, np.nanmean(y, 0), color=colors[lab], lw=1.6, label=lab)
            ax.fill_between(x, lo, hi, color=colors[lab], alpha=0.2, lw=0)
            if lab not in drawn:
                drawn.append(lab)
        ax.set_title(titles.get(task, task), fontsize=11)
        steps_axis(ax)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("evaluation return")
    for ax in axes.flat[len(tasks):]:
        ax.set_visible(False)
    order = [lab for lab in labels if lab in drawn]
    handles = [plt.Line2D([], [], color=colors[lab], lw=2) for lab in order]
    fig.tight_layout()
    fig.legend(handles, order, loc="lower center", ncol=min(len(order), 6), bbox_to_anchor=(0.5, 1.0), frameon=False)
    return fig


def interval_estimates(points: dict[str, np.ndarray], cis: dict[str, np.ndarray], metric_names: list[str],
                       labels: list[str], colors: Colors, xlabel: str) -> str:
    """rliable's interval plot: one panel per aggregate metric, a 95% CI bar per algorithm."""
    algs = [lab for lab in labels if lab in points]
    fig, _ = plot_utils.plot_interval_estimates(points, cis, metric_names=metric_names, algorithms=algs,
                                                colors={a: colors[a] for a in algs}, xlabel=xlabel,
                                                subfigure_width=3.4, row_height=0.45, xlabel_y_coordinate=-0.5)
    return to_png(fig)


def improvement(points: dict[str, np.ndarray], cis: dict[str, np.ndarray], colors: Colors) -> str:
    """rliable's probability-of-improvement plot, P(X > Y) with 95% CIs per pair (coloured as Y)."""
    fig, ax = plt.subplots(figsize=(5.0, 0.55 * len(points) + 1.2))
    plot_utils.plot_probability_of_improvement(points, cis, ax=ax, figsize=None,
                                               colors=[colors[k.split(",", 1)[1]] for k in points])  # by position
    return to_png(fig)


def profiles(points: dict[str, np.ndarray], cis: dict[str, np.ndarray], taus: np.ndarray, labels: list[str],
             colors: Colors) -> str:
    """rliable's performance profiles: fraction of runs with normalised score above tau."""
    algs = [lab for lab in labels if lab in points]
    fig, ax = plt.subplots(figsize=(7, 4))
    plot_utils.plot_performance_profiles({a: points[a] for a in algs}, taus, {a: cis[a] for a in algs}, ax=ax,
                                         colors={a: colors[a] for a in algs}, xlabel=r"normalised final return $\tau$",
                                         ylabel=r"fraction of runs with score $> \tau$", labelsize="large",
                                         ticklabelsize="medium")
    ax.legend([plt.Line2D([], [], color=colors[a], lw=2) for a in algs], algs, loc="upper right", frameon=False)
    return to_png(fig)


def sample_efficiency(steps: np.ndarray, points: dict[str, np.ndarray], cis: dict[str, np.ndarray],
                      labels: list[str], colors: Colors) -> str:
    """rliable's sample-efficiency curve: IQM of the normalised evaluation return against steps."""
    algs = [lab for lab in labels if lab in points]
    fig, ax = plt.subplots(figsize=(7, 4))
    plot_utils.plot_sample_efficiency_curve(np.asarray(steps, float), points, cis, algorithms=algs,
                                            colors={a: colors[a] for a in algs}, ax=ax,
                                            xlabel="environment steps", ylabel="IQM normalised return",
                                            labelsize="large", ticklabelsize="medium")
    steps_axis(ax)
    ax.legend([plt.Line2D([], [], color=colors[a], lw=2) for a in algs], algs, loc="lower right", frameon=False)
    return to_png(fig)


def overheads(pairs: pd.DataFrame, labels: list[str], colors: Colors, baseline: str) -> str:
    """Ratios to the baseline (training time, CPU time, total wall-clock, peak memory), one dot per (task, seed)
    pair, a bar at the mean."""
    from dapbench.analysis.metrics import OVERHEAD_MEASURES

    algs = [lab for lab in labels if lab in set(pairs["label"])]
    measures = {col: name for col, (_, name) in OVERHEAD_MEASURES.items() if pairs[col].notna().any()}
    long = pairs.melt(id_vars=["task", "label", "seed"], value_vars=list(measures), var_name="measure",
                      value_name="ratio").dropna(subset=["ratio"])
    fig, axes = plt.subplots(1, len(measures), figsize=(3.4 * len(measures), 0.5 * len(algs) + 1.8), sharey=True,
                             squeeze=False)
    for ax, (col, name) in zip(axes[0], measures.items(), strict=True):
        d = long[long["measure"] == col]
        sns.stripplot(data=d, x="ratio", y="label", order=algs, hue="label", palette=colors, ax=ax, size=5,
                      alpha=0.7, legend=False)
        sns.pointplot(data=d, x="ratio", y="label", order=algs, color="black", errorbar=None, markers="|",
                      linestyles="none", ax=ax, markersize=12)
        ax.axvline(1.0, color="grey", lw=1, ls="--")
        ax.set_title(f"{name} / {baseline}", fontsize=9, wrap=True)
        ax.set_xlabel("ratio")
        ax.set_ylabel("")
    fig.tight_layout()
    return to_png(fig)
