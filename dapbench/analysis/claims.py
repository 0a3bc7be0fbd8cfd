"""The paper beside us: its Table II and its headline claims (`paper.json`, a versioned data file with sources),
each claim next to what a report's runs show, with intervals and a verdict.

Verdicts (docs/report.md): "holds", "fails", "cannot be told with these seeds", or "not measured" when the runs do
not contain what the claim is about (its budget, its tasks, a GPU). Rules:
  - ALC gain over the baseline: per task the difference of mean ALC@40 with a bootstrap interval; over tasks
    P(target > baseline) with rliable's stratified-bootstrap 95% CI. Holds when the CI lies above 0.5, fails when
    it lies below, else cannot be told. Needs the protocol's ALC@40 (unflagged).
  - Final return matching or exceeding the strongest other algorithm on k of the tasks: per task, the difference to
    the best other mean with a bootstrap interval. Holds when the target's mean is at least the best other's on k
    tasks and no more than (tasks - k) intervals lie below 0; fails when more than (tasks - k) do; else cannot be
    told. Needs runs at the claim's budget and every algorithm on the task.
  - Overhead ratios: the mean over (task, seed) pairs with a bootstrap interval, against the paper's mean ± std.
    Holds when the interval lies within mean ± 2 std, fails when it lies entirely above or below that range, else
    cannot be told; a GPU claim measured on CPU runs is marked so.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dapbench.analysis import aggregate as agg
from dapbench.analysis.power import detectability

PAPER = Path(__file__).with_name("paper.json")
HOLDS, FAILS, UNTOLD, NOT_MEASURED = "holds", "fails", "cannot be told with these seeds", "not measured"
PARTLY = "holds on aggregate, not on every task"  # a claim of a gain on every task that only the aggregate shows


@cache
def paper() -> dict[str, Any]:
    return json.loads(PAPER.read_text())


@dataclass
class Claim:
    claim: str  # the paper's words
    measured: str  # what the runs show, with intervals
    verdict: str
    why: str  # how the verdict follows, and what would settle it


def _task_boot_mean(groups: list[np.ndarray], reps: int, seed: int) -> tuple[float, float, float]:
    """Mean over tasks of each task's mean pair ratio, and its 95% interval from a two-stage bootstrap: tasks
    resampled with replacement, then each drawn task's pairs. Pairs of one task share its environment, so they are
    not independent draws: resampling them as one pool made the interval too narrow (2.55x [2.41, 2.70] over 40
    pairs of 8 tasks)."""
    groups = [g for g in groups if len(g)]
    nan = float("nan")
    if not groups:
        return nan, nan, nan
    m = float(np.mean([g.mean() for g in groups]))
    if len(groups) == 1 and len(groups[0]) == 1:
        return m, nan, nan
    rng = np.random.default_rng(seed)
    within = np.stack([g[rng.integers(0, len(g), (reps, len(g)))].mean(1) for g in groups], 1)  # (reps, tasks)
    pick = rng.integers(0, len(groups), (reps, len(groups)))
    boot = np.take_along_axis(within, pick, 1).mean(1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return m, float(lo), float(hi)


def _values(runs: pd.DataFrame, label: str, task: str, column: str) -> np.ndarray:
    return runs.loc[(runs["label"] == label) & (runs["task"] == task), column].to_numpy(float)


def alc_claim(runs: pd.DataFrame, target: str, baseline: str, protocol: bool, n_tasks: int, reps: int, seed: int
              ) -> Claim:
    text = paper()["claims"]["alc_gain"]
    if not protocol:
        return Claim(text, "the runs' ALC is not the protocol's ALC@40 (see the ALC section)", NOT_MEASURED,
                     "ALC@40 needs 40 epochs of 5,000 steps under the 1.0M-step horizon")
    tasks = [t for t in sorted(runs["task"].unique())
             if all(np.isfinite(_values(runs, lab, t, "alc")).any() for lab in (target, baseline))]
    if not tasks:
        return Claim(text, f"no task has ALC@40 runs of both {target} and {baseline}", NOT_MEASURED, "")
    mats = {lab: np.stack([_padded(_values(runs, lab, t, "alc")) for t in tasks], 1) for lab in (target, baseline)}
    k = min(int(np.isfinite(m).all(1).sum()) for m in mats.values())
    mats = {lab: m[np.isfinite(m).all(1)][:k] for lab, m in mats.items()}
    p, ci = agg.interval_estimates({"pair": (mats[target], mats[baseline])}, agg.probability_of_improvement, reps, seed)
    lo, hi = float(np.ravel(ci["pair"])[0]), float(np.ravel(ci["pair"])[1])
    signs = [detectability(_values(runs, target, t, "alc"), _values(runs, baseline, t, "alc")) for t in tasks]
    above = sum(d.ci[0] > 0 for d in signs)
    below = sum(d.ci[1] < 0 for d in signs)
    verdict = HOLDS if lo > 0.5 else FAILS if hi < 0.5 else UNTOLD
    scope = f"on {len(tasks)} of {n_tasks} tasks" if len(tasks) < n_tasks else f"on all {len(tasks)} tasks"
    measured = (f"P({target} > {baseline}) on ALC@40 = {float(np.ravel(p['pair'])[0]):.2f} [{lo:.2f}, {hi:.2f}] "
                f"{scope}, {k} seeds; per task the difference's 95% interval is above 0 on {above}, below 0 on "
                f"{below}, and contains 0 on {len(tasks) - above - below}")
    why = {HOLDS: "the interval of P(improvement) lies above 0.5",
           FAILS: "the interval of P(improvement) lies below 0.5: the baseline learns faster",
           UNTOLD: "the interval of P(improvement) contains 0.5; the seeds-needed table says how many seeds would "
                   "separate each task's observed difference"}[verdict]
    if verdict == HOLDS and above < len(tasks):  # "consistently ... across tasks" asks for every task
        verdict = PARTLY
        why = (f"P(improvement) over all tasks lies above 0.5, but the per-task interval of the difference lies "
               f"above 0 on only {above} of {len(tasks)} tasks (below 0 on {below}): a gain on aggregate, not a "
               "consistent one")
    if len(tasks) < n_tasks:  # a claim about all tasks, judged on the ones measured so far: said first
        why = f"judged on the {len(tasks)} tasks with runs of both, not all {n_tasks}: {why}"
    return Claim(text, measured, verdict, why)


def _padded(v: np.ndarray, n: int = 64) -> np.ndarray:
    out = np.full(n, np.nan)
    v = v[np.isfinite(v)][:n]
    out[: len(v)] = v
    return out


def final_claim(runs: pd.DataFrame, target: str, horizon_ok: bool) -> Claim:
    """The final-return claim against the strongest of the paper's on-policy baselines (its Table II columns: PPO,
    PPO+Diffusion, PPO-GC, PPO-ARC, ABPPO) on each task; other labels (DTQL, PPO-DAP's ablations) are not
    the claim's baselines."""
    spec = paper()["claims"]["final_vs_best"]
    need, n_tasks = int(spec["tasks"]), int(paper()["claims"]["tasks"])
    if not horizon_ok:
        return Claim(spec["text"], f"the runs stop before {spec['steps']:,} steps", NOT_MEASURED,
                     f"the claim is about final return after {spec['steps']:,} steps; extend the runs (same horizon) "
                     "by resuming them with budget.total_steps: 1000000")
    others = sorted(set(runs["label"]) & set(paper()["table_ii"]["columns"]) - {target})
    per_task = []
    for t in sorted(runs["task"].unique()):
        have = [lab for lab in others if np.isfinite(_values(runs, lab, t, "final_return")).any()]
        if not np.isfinite(_values(runs, target, t, "final_return")).any() or not have:
            continue
        best = max(have, key=lambda lab: np.nanmean(_values(runs, lab, t, "final_return")))
        d = detectability(_values(runs, target, t, "final_return"), _values(runs, best, t, "final_return"))
        per_task.append((t, best, d))
    if len(per_task) < n_tasks:
        return Claim(spec["text"], f"{len(per_task)} of {n_tasks} tasks have runs of {target} and another algorithm",
                     NOT_MEASURED, "the claim counts tasks out of all eight")
    at_least = sum(d.diff >= 0 for _, _, d in per_task)
    below = sum(d.ci[1] < 0 for _, _, d in per_task)
    verdict = FAILS if below > n_tasks - need else HOLDS if at_least >= need else UNTOLD
    measured = (f"{target}'s mean final return is at least the best other's on {at_least} of {n_tasks} tasks; "
                f"its difference's 95% interval lies below 0 on {below}")
    return Claim(spec["text"], measured, verdict, f"needs {need} of {n_tasks}")


def overhead_claim(pairs: pd.DataFrame, target: str, key: str, ratio: str, device_ok: bool, reps: int, seed: int,
                   what: str) -> Claim:
    spec = paper()["claims"][key]
    mine = pairs[(pairs["label"] == target) & np.isfinite(pairs[ratio])] if len(pairs) else pairs
    if len(mine) == 0:
        return Claim(spec["text"], f"no {what} pairs of {target} with the baseline", NOT_MEASURED,
                     "needs runs of both on the same task and seed" + ("" if device_ok else ", on a GPU"))
    groups = [g[ratio].to_numpy(float) for _, g in mine.groupby("task")]
    m, lo, hi = _task_boot_mean(groups, reps, seed)
    band = (spec["mean"] - 2 * spec["std"], spec["mean"] + 2 * spec["std"])
    tasks = f"{len(groups)} task" + ("s" if len(groups) != 1 else "")
    measured = (f"{what}: {m:.2f}x [{lo:.2f}, {hi:.2f}] over {len(mine)} task-seed pairs of {tasks} "
                "(tasks and their pairs resampled)")
    if not math.isfinite(lo):
        return Claim(spec["text"], measured, UNTOLD, "one pair has no interval")
    verdict = HOLDS if band[0] <= lo and hi <= band[1] else FAILS if lo > band[1] or hi < band[0] else UNTOLD
    why = f"the paper's range (mean ± 2 std) is [{band[0]:.2f}, {band[1]:.2f}]"
    if not device_ok:
        why += "; measured on CPU, the paper on a GPU: a verdict on this hardware, not on the paper's"
    return Claim(spec["text"], measured, verdict, why)


def seeds_needed(runs: pd.DataFrame, column: str, labels: list[str], baseline: str) -> pd.DataFrame:
    """Per task and label (vs `baseline`): difference of means, its 95% interval, the minimum detectable
    difference at these seeds (80% power, alpha 0.05) and the seeds per algorithm the observed difference needs."""
    rows = []
    for t in sorted(runs["task"].unique()):
        base = _values(runs, baseline, t, column)
        if not np.isfinite(base).any():
            continue
        for lab in labels:
            if lab == baseline:
                continue
            x = _values(runs, lab, t, column)
            if not np.isfinite(x).any():
                continue
            d = detectability(x, base)
            rows.append({"task": t, "label": lab, "diff": d.diff, "ci_low": d.ci[0], "ci_high": d.ci[1],
                         "mde": d.mde, "seeds": d.seeds, "seeds_needed": d.seeds_for(d.diff),
                         "n": int(np.isfinite(x).sum()), "n_base": int(np.isfinite(base).sum())})
    return pd.DataFrame(rows, columns=["task", "label", "diff", "ci_low", "ci_high", "mde", "seeds", "seeds_needed",
                                       "n", "n_base"])
