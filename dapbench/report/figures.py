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


def learning_curves(curves: pd.DataFrame, labels: list[str], titles: dict[str, str], colors: Colors) -> str:
    """Evaluation return against environment steps per task: mean over seeds, shaded +/- one standard error."""
    tasks = sorted(curves["task"].unique())
    ncols = min(4, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False)
    ev = curves.dropna(subset=["eval_return_mean"])
    stats = ev.groupby(["task", "label", "env_steps"])["eval_return_mean"].agg(["mean", "sem", "count"]).reset_index()
    cells = dict(iter(stats.groupby(["task", "label"])))
    for ax, task in zip(axes.flat, tasks, strict=False):
        for lab in labels:
            s = cells.get((task, lab))
            if s is None:
                continue
            x = s["env_steps"].to_numpy() / 1e6
            m, se = s["mean"].to_numpy(), s["sem"].fillna(0).to_numpy()
            ax.plot(x, m, color=colors[lab], lw=1.6, label=lab)
            ax.fill_between(x, m - se, m + se, color=colors[lab], alpha=0.2, lw=0)
        ax.set_title(titles.get(task, task), fontsize=11)
        ax.set_xlabel("environment steps (M)")
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("evaluation return")
    for ax in axes.flat[len(tasks):]:
        ax.set_visible(False)
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, names, loc="lower center", ncol=min(len(labels), 7), bbox_to_anchor=(0.5, 1.0), frameon=False)
    return to_png(fig)


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
    plot_utils.plot_sample_efficiency_curve(steps / 1e6, points, cis, algorithms=algs,
                                            colors={a: colors[a] for a in algs}, ax=ax,
                                            xlabel="environment steps (M)", ylabel="IQM normalised return",
                                            labelsize="large", ticklabelsize="medium")
    ax.legend([plt.Line2D([], [], color=colors[a], lw=2) for a in algs], algs, loc="lower right", frameon=False)
    return to_png(fig)


def overheads(pairs: pd.DataFrame, labels: list[str], colors: Colors, baseline: str) -> str:
    """Wall-clock and peak-memory ratios to the baseline, one dot per (task, seed) pair, mean marked."""
    algs = [lab for lab in labels if lab in set(pairs["label"])]
    long = pairs.melt(id_vars=["task", "label", "seed"], value_vars=["wall_clock_ratio", "peak_rss_ratio"],
                      var_name="measure", value_name="ratio").dropna(subset=["ratio"])
    long["measure"] = long["measure"].map({"wall_clock_ratio": "wall-clock", "peak_rss_ratio": "peak memory (RSS)"})
    fig, axes = plt.subplots(1, 2, figsize=(9, 0.5 * len(algs) + 1.6), sharey=True)
    for ax, measure in zip(axes, ["wall-clock", "peak memory (RSS)"], strict=True):
        d = long[long["measure"] == measure]
        sns.stripplot(data=d, x="ratio", y="label", order=algs, hue="label", palette=colors, ax=ax, size=5,
                      alpha=0.7, legend=False)
        sns.pointplot(data=d, x="ratio", y="label", order=algs, color="black", errorbar=None, markers="|",
                      linestyles="none", ax=ax, markersize=12)
        ax.axvline(1.0, color="grey", lw=1, ls="--")
        ax.set_title(f"{measure} / {baseline}")
        ax.set_xlabel("ratio (one dot per task and seed; bar: mean)")
        ax.set_ylabel("")
    fig.tight_layout()
    return to_png(fig)
