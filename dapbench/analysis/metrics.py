"""Per-run metrics, computed from a run's evaluations (epochs whose `eval_return_mean` is set).

With evaluations y_1..y_E at environment steps x_1..x_E (one per epoch under the paper's protocol,
`evaluation.every = 1`, epochs of 5,000 steps):

    ALC@n            = (1/n) sum_{i=1..n} y_i                       (the first n evaluations; n = 40: 200k steps)
    ALC@n, trapezoid = (1/(x_n - x_1)) sum_{i=1..n-1} (x_{i+1} - x_i) (y_i + y_{i+1}) / 2
    ALC@n / PPO      = ALC@n / mean over the baseline's runs on the same task of their ALC@n
    final return     = (1/N) sum_{i=E-N+1..E} y_i                   (the last N evaluations; N = 5 by default)

Runs with fewer than n (or N) evaluations get NaN, never a shorter window. Overheads are ratios to the
baseline (PPO) run of the same task and seed: total wall-clock (`wall_clock_s` of the last epoch, evaluation
included) and peak memory (max of `peak_rss_mb`; `cuda_peak_mb` on a GPU).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ALC_N = 40
FINAL_N = 5

# Audit metrics (docs/audit.md): logged by algorithms that audit their PPO batch, per epoch.
AUDIT_COLUMNS: dict[str, str] = {
    "oglr": "offline-gradient leakage ratio ||grad L_PPO(non-fresh)|| / ||grad L_PPO|| (0 = no leak)",
    "spr": "share of non-fresh samples in PPO's surrogate, value loss and GAE (0 = strictly on-policy)",
    "ess_k": "effective sample size of the K energy weights over K, mean over states (1 = uniform)",
    "aux_grad_share": "||g_aux|| / (||g_PPO|| + ||g_aux||) on the actor",
    "prior_kl_drift": "KL between the prior before and after a PET round, on fixed probe states",
}
RUN_KEYS = ["suite", "task", "algorithm", "label", "seed", "run"]


def evaluations(curve: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(env steps, evaluation returns) of one run, in order, epochs without an evaluation left out."""
    ev = curve.dropna(subset=["eval_return_mean"]).sort_values("env_steps")
    return ev["env_steps"].to_numpy(float), ev["eval_return_mean"].to_numpy(float)


def alc(returns: np.ndarray, n: int = ALC_N) -> float:
    """ALC@n = mean of the first n evaluation returns; NaN if the run has fewer than n."""
    y = np.asarray(returns, float)
    return float(y[:n].mean()) if len(y) >= n else float("nan")


def alc_trapezoid(steps: np.ndarray, returns: np.ndarray, n: int = ALC_N) -> float:
    """ALC@n by the trapezoid rule over the first n evaluations, divided by the steps they span."""
    x, y = np.asarray(steps, float)[:n], np.asarray(returns, float)[:n]
    if len(y) < n or n < 2 or x[-1] == x[0]:
        return float("nan")
    return float(np.trapezoid(y, x) / (x[-1] - x[0]))


def final_return(returns: np.ndarray, n: int = FINAL_N) -> float:
    """Mean of the last n evaluation returns (never the best over training); NaN with fewer than n."""
    y = np.asarray(returns, float)
    return float(y[-n:].mean()) if len(y) >= n and n > 0 else float("nan")


def per_run(curves: pd.DataFrame, alc_n: int = ALC_N, final_n: int = FINAL_N) -> pd.DataFrame:
    """One row per run: ALC@n (mean and trapezoid), final return, evaluations, wall-clock, peak memory and,
    for every audit column the run logs, its mean and max over epochs."""
    c = curves.sort_values(["run", "env_steps"], kind="stable", ignore_index=True)
    audit = [a for a in AUDIT_COLUMNS if a in c.columns]

    def col(name: str) -> np.ndarray:
        return c[name].to_numpy(float) if name in c.columns else np.full(len(c), np.nan)

    x_all, y_all = col("env_steps"), col("eval_return_mean")
    wall, rss, cuda = col("wall_clock_s"), col("peak_rss_mb"), col("cuda_peak_mb")
    extra = {a: col(a) for a in audit}
    run_ids = c["run"].to_numpy()
    starts = np.flatnonzero(np.r_[True, run_ids[1:] != run_ids[:-1]])
    rows = []
    for lo, hi in zip(starts, np.r_[starts[1:], len(c)], strict=True):  # numpy slices: one run each
        ok = ~np.isnan(y_all[lo:hi])
        x, y = x_all[lo:hi][ok], y_all[lo:hi][ok]
        row = {k: c.at[lo, k] for k in RUN_KEYS}
        row.update({
            "total_steps": int(c.at[lo, "total_steps"]), "n_evals": len(y),
            "alc": alc(y, alc_n), "alc_trapezoid": alc_trapezoid(x, y, alc_n),
            "alc_steps": float(x[alc_n - 1]) if len(x) >= alc_n else float("nan"),
            "final_return": final_return(y, final_n),
            "wall_clock_s": float(wall[hi - 1]), "peak_rss_mb": _nanmax(rss[lo:hi]),
            "cuda_peak_mb": _nanmax(cuda[lo:hi]),
        })
        for a, v in extra.items():
            v = v[lo:hi][~np.isnan(v[lo:hi])]
            row[f"{a}_mean"] = float(v.mean()) if len(v) else float("nan")
            row[f"{a}_max"] = float(v.max()) if len(v) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["task", "label", "seed"], ignore_index=True)


def _nanmax(v: np.ndarray) -> float:
    v = v[~np.isnan(v)]
    return float(v.max()) if len(v) else float("nan")


def alc_vs_baseline(runs: pd.DataFrame, baseline: str) -> pd.Series:
    """ALC@n / (mean ALC@n of the `baseline` label's runs on the same task); NaN without baseline runs."""
    ref = runs[runs["label"] == baseline].groupby("task")["alc"].mean()
    return runs["alc"] / runs["task"].map(ref)


def overheads(runs: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Wall-clock and peak-memory ratios of every run to the `baseline` run of the same task and seed.

    Pairs whose budgets differ are left out. Columns: task, label, seed, wall_clock_ratio, peak_rss_ratio,
    cuda_peak_ratio (NaN off GPU).
    """
    base = runs[runs["label"] == baseline]
    cols = ["task", "seed", "total_steps", "wall_clock_s", "peak_rss_mb", "cuda_peak_mb"]
    pairs = runs[runs["label"] != baseline].merge(base[cols], on=["task", "seed", "total_steps"],
                                                  suffixes=("", "_base"))
    out = pairs[["task", "label", "seed"]].copy()
    out["wall_clock_ratio"] = pairs["wall_clock_s"] / pairs["wall_clock_s_base"]
    out["peak_rss_ratio"] = pairs["peak_rss_mb"] / pairs["peak_rss_mb_base"]
    out["cuda_peak_ratio"] = pairs["cuda_peak_mb"] / pairs["cuda_peak_mb_base"]
    return out.reset_index(drop=True)


def summarise(values: pd.DataFrame, by: list[str], column: str) -> pd.DataFrame:
    """mean, sample std (n-1; NaN for one run) and n of `column` per group."""
    g = values.groupby(by, sort=False)[column]
    return pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()}).reset_index()
