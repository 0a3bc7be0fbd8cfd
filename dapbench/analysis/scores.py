"""From per-run tables to the score arrays rliable takes: `(runs, tasks)` matrices and `(runs, tasks, points)`
curves, one per algorithm label.

rliable's stratified bootstrap resamples runs within each task, so a matrix needs the same number of runs
in every task: a label with k_t runs on task t contributes its first k = min_t k_t seeds of each task (the
others stay in the per-task tables; a note says so). Runs whose value is NaN (e.g. too short for ALC@40)
do not count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class Scores:
    """Score matrices per label over `tasks`, the seeds used per (label, task), and notes for the reader."""

    tasks: list[str]
    matrices: dict[str, np.ndarray]
    seeds: dict[str, dict[str, list[int]]]
    notes: list[str] = field(default_factory=list)


def common_tasks(runs: pd.DataFrame, column: str, labels: list[str], tasks: list[str] | None = None) -> list[str]:
    """Tasks on which every label has at least one run with a finite `column`, within `tasks` if given."""
    ok = runs[np.isfinite(runs[column])]
    have = [set(ok.loc[ok["label"] == lab, "task"]) for lab in labels]
    common = set.intersection(*have) if have else set()
    return sorted(common if tasks is None else common & set(tasks))


def score_matrices(runs: pd.DataFrame, column: str, labels: list[str], tasks: list[str]) -> Scores:
    """`(runs, tasks)` matrices of `column` per label (see the module docstring for the run count)."""
    out = Scores(tasks=list(tasks), matrices={}, seeds={})
    if not tasks:
        return out
    ok = runs[np.isfinite(runs[column]) & runs["task"].isin(tasks)]
    for lab in labels:
        sub = ok[ok["label"] == lab]
        per_task = {t: sub[sub["task"] == t].sort_values("seed") for t in tasks}
        k = min((len(g) for g in per_task.values()), default=0)
        if k == 0:
            missing = [t for t, g in per_task.items() if g.empty]
            out.notes.append(f"{lab}: left out of the {column} aggregates (no runs on {', '.join(missing)})")
            continue
        extra = {t: len(g) for t, g in per_task.items() if len(g) > k}
        if extra:
            left = ", ".join(f"{t} {n - k} of {n}" for t, n in extra.items())
            out.notes.append(f"{lab}: aggregates use the first {k} seeds of each task (rliable needs equal run "
                             f"counts per task); left out: {left}")
        out.matrices[lab] = np.stack([per_task[t][column].to_numpy(float)[:k] for t in tasks], axis=1)
        out.seeds[lab] = {t: [int(s) for s in per_task[t]["seed"].iloc[:k]] for t in tasks}
    return out


def curve_arrays(curves: pd.DataFrame, scores: Scores, value: str, max_points: int = 30
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(env steps, `(runs, tasks, points)` arrays of `value` per label) for the runs behind `scores`, at the
    evaluation steps every one of them has, thinned evenly to at most `max_points` (the last one kept)."""
    keep = []
    for lab, by_task in scores.seeds.items():
        for t, seeds in by_task.items():
            keep.append(curves[(curves["label"] == lab) & (curves["task"] == t) & curves["seed"].isin(seeds)])
    if not keep:
        return np.array([]), {}
    sub = pd.concat(keep).dropna(subset=[value])
    steps = sorted(set.intersection(*(set(g["env_steps"]) for _, g in sub.groupby(["label", "task", "seed"]))))
    if not steps:
        return np.array([]), {}
    idx = np.unique(np.linspace(len(steps) - 1, 0, min(max_points, len(steps))).round().astype(int))
    points = np.asarray(steps)[idx]
    sub = sub[sub["env_steps"].isin(points)]
    arrays = {}
    for lab, by_task in scores.seeds.items():
        per_task = []
        for t in scores.tasks:
            g = sub[(sub["label"] == lab) & (sub["task"] == t)]
            wide = g.pivot(index="seed", columns="env_steps", values=value).loc[by_task[t], points]
            per_task.append(wide.to_numpy(float))
        arrays[lab] = np.stack(per_task, axis=1)
    return points, arrays
