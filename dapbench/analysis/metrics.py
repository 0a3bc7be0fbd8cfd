"""Per-run metrics, computed from a run's evaluations (epochs whose `eval_return_mean` is set).

With evaluations y at environment steps x (one per epoch under the paper's protocol: epochs of 5,000 steps,
`evaluation.every = 1`, schedules scaled to a 1.0M-step horizon):

    ALC@n            = (1/n) sum_{k=1..n} y(x = 5,000 k)        (the evaluations at the ends of the first n epochs of
                                                                 the protocol, picked by environment steps: 200k for
                                                                 n = 40; NaN unless all n are there)
    ALC@n, trapezoid = (1/(x_n - x_1)) sum_{k=1..n-1} (x_{k+1} - x_k) (y_k + y_{k+1}) / 2   (the same evaluations)
    ALC@n / PPO      = ALC@n / mean over the baseline's runs on the same task of their ALC@n
    final return     = (1/N) sum_{i=E-N+1..E} y_i               (the last N evaluations; N = 5 by default)

`alc_flag` says why a run's ALC@n is not the protocol's even when it can be computed: schedules scaled to another
horizon (a 200k-step run with a 200k horizon anneals its learning rate to 0 by epoch 40; the protocol's run is at
80% of its rate there), or epochs of another length. A report never mixes flagged and unflagged ALCs silently.

`window_metrics` gives the same two numbers over the window every run of a report actually has (an ALC over the
first 20k steps is "ALC over 20k steps (4 evaluations)", never ALC@40).

Overheads are ratios to the baseline (PPO) run of the same task and seed, of totals over the run:
  - training time: env + update wall-clock without evaluation (`time_train_s`), the work that differs;
  - CPU time of training (`cpu_train_s`), which load on the machine does not inflate;
  - total wall-clock (`wall_clock_s` of the last epoch, evaluation included);
  - peak memory (max of `peak_rss_mb`; `cuda_peak_mb` on a GPU).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

ALC_N = 40
FINAL_N = 5
PROTOCOL_EPOCH_STEPS = 5_000  # the authors' epoch: 200 x 5,000 = 1.0M
PROTOCOL_HORIZON = 1_000_000
RUN_KEYS = ["suite", "task", "algorithm", "label", "seed", "run"]


def evaluations(curve: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(env steps, evaluation returns) of one run, in order, epochs without an evaluation left out."""
    ev = curve.dropna(subset=["eval_return_mean"]).sort_values("env_steps")
    return ev["env_steps"].to_numpy(float), ev["eval_return_mean"].to_numpy(float)


def alc(returns: np.ndarray, n: int = ALC_N) -> float:
    """Mean of the first n evaluation returns; NaN if the run has fewer than n (for evaluations one per epoch)."""
    y = np.asarray(returns, float)
    return float(y[:n].mean()) if len(y) >= n else float("nan")


def protocol_evaluations(steps: np.ndarray, returns: np.ndarray, n: int = ALC_N,
                         epoch_steps: int = PROTOCOL_EPOCH_STEPS) -> tuple[np.ndarray, np.ndarray] | None:
    """The evaluations at x = epoch_steps k, k = 1..n, or None unless every one of them is there."""
    x, y = np.asarray(steps, float), np.asarray(returns, float)
    want = epoch_steps * np.arange(1, n + 1, dtype=float)
    idx = np.searchsorted(x, want)
    if len(x) == 0 or idx.max(initial=0) >= len(x) or not np.array_equal(x[idx], want):
        return None
    return x[idx], y[idx]


def alc_by_steps(steps: np.ndarray, returns: np.ndarray, n: int = ALC_N,
                 epoch_steps: int = PROTOCOL_EPOCH_STEPS) -> float:
    """ALC@n: mean of the evaluations at the ends of the first n protocol epochs; NaN unless all n exist."""
    sel = protocol_evaluations(steps, returns, n, epoch_steps)
    return float(sel[1].mean()) if sel is not None else float("nan")


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


def alc_flag(horizon_steps: float, steps_per_epoch: float, protocol_horizon: int = PROTOCOL_HORIZON,
             epoch_steps: int = PROTOCOL_EPOCH_STEPS) -> str:
    """Why a run's ALC is not the protocol's ('' when it is): its schedules' horizon or its epoch length."""
    why = []
    if np.isfinite(horizon_steps) and int(horizon_steps) != protocol_horizon:
        why.append(f"schedules scaled to a {_steps(horizon_steps)} horizon, not {_steps(protocol_horizon)}")
    if np.isfinite(steps_per_epoch) and int(steps_per_epoch) != epoch_steps:
        why.append(f"epochs of {int(steps_per_epoch):,} steps, not {epoch_steps:,}")
    return "; ".join(why)


def _steps(x: float) -> str:
    x = float(x)
    return f"{x / 1e6:g}M" if x >= 1e6 else f"{x / 1e3:g}k"


def per_run(curves: pd.DataFrame, alc_n: int = ALC_N, final_n: int = FINAL_N, metrics: Sequence[str] = ()
            ) -> pd.DataFrame:
    """One row per run: ALC@n by steps (mean, trapezoid) and its flag, final return, evaluations, training time,
    CPU time, wall-clock, peak memory and, for every column of `metrics` the run logs (the declared metrics, audit
    or not), its mean and max over epochs (`<name>_mean`, `<name>_max`)."""
    c = curves.sort_values(["run", "env_steps"], kind="stable", ignore_index=True)
    metrics = [a for a in metrics if a in c.columns]

    def col(name: str) -> np.ndarray:
        return c[name].to_numpy(float) if name in c.columns else np.full(len(c), np.nan)

    x_all, y_all = col("env_steps"), col("eval_return_mean")
    wall, rss, cuda = col("wall_clock_s"), col("peak_rss_mb"), col("cuda_peak_mb")
    train, cpu = col("time_train_s"), col("cpu_train_s")
    horizon, epoch_len = col("horizon_steps"), col("steps_per_epoch")
    extra = {a: col(a) for a in metrics}
    run_ids = c["run"].to_numpy()
    starts = np.flatnonzero(np.r_[True, run_ids[1:] != run_ids[:-1]])
    rows = []
    for lo, hi in zip(starts, np.r_[starts[1:], len(c)], strict=True):  # numpy slices: one run each
        ok = ~np.isnan(y_all[lo:hi])
        x, y = x_all[lo:hi][ok], y_all[lo:hi][ok]
        sel = protocol_evaluations(x, y, alc_n)
        h = horizon[lo] if np.isfinite(horizon[lo]) else float(c.at[lo, "total_steps"])
        row = {k: c.at[lo, k] for k in RUN_KEYS}
        row.update({
            "total_steps": int(c.at[lo, "total_steps"]), "n_evals": len(y), "last_eval_steps": _last(x),
            "alc": float(sel[1].mean()) if sel is not None else float("nan"),
            "alc_trapezoid": alc_trapezoid(*sel, alc_n) if sel is not None else float("nan"),
            "alc_steps": float(sel[0][-1]) if sel is not None else float("nan"),
            "alc_flag": alc_flag(h, epoch_len[lo]),
            "final_return": final_return(y, final_n),
            "train_time_s": _total(train[lo:hi]), "cpu_train_s": _total(cpu[lo:hi]),
            "wall_clock_s": float(wall[hi - 1]), "peak_rss_mb": _nanmax(rss[lo:hi]),
            "cuda_peak_mb": _nanmax(cuda[lo:hi]),
        })
        for a, v in extra.items():
            v = v[lo:hi][~np.isnan(v[lo:hi])]
            row[f"{a}_mean"] = float(v.mean()) if len(v) else float("nan")
            row[f"{a}_max"] = float(v.max()) if len(v) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["task", "label", "seed"], ignore_index=True)


def window_metrics(curves: pd.DataFrame, window_steps: float, final_k: int) -> pd.DataFrame:
    """Per run: `alc_window`, the mean of its evaluations at env_steps <= window_steps, with their count, and
    `final_window`, the mean of its last `final_k` evaluations."""
    ev = curves.dropna(subset=["eval_return_mean"]).sort_values(["run", "env_steps"], kind="stable")
    rows = []
    for run, g in ev.groupby("run", sort=False):
        y = g["eval_return_mean"].to_numpy(float)
        w = y[g["env_steps"].to_numpy(float) <= window_steps]
        rows.append({"run": run, "alc_window": float(w.mean()) if len(w) else float("nan"), "alc_window_n": len(w),
                     "final_window": final_return(y, final_k)})
    return pd.DataFrame(rows, columns=["run", "alc_window", "alc_window_n", "final_window"])


def _last(x: np.ndarray) -> float:
    return float(x[-1]) if len(x) else float("nan")


def _total(v: np.ndarray) -> float:
    """Sum over epochs; NaN if any epoch lacks the column (runs logged before it existed)."""
    return float(v.sum()) if len(v) and not np.isnan(v).any() else float("nan")


def _nanmax(v: np.ndarray) -> float:
    v = v[~np.isnan(v)]
    return float(v.max()) if len(v) else float("nan")


def alc_vs_baseline(runs: pd.DataFrame, baseline: str, column: str = "alc") -> pd.Series:
    """ALC / (mean ALC of the `baseline` label's runs on the same task); NaN without baseline runs, and NaN where
    that mean is not positive: a ratio to a negative return reads backwards (-250 / -221 = 1.13 for a worse
    run), so those tasks have no ratio (compare their differences or normalised scores instead)."""
    ref = runs[runs["label"] == baseline].groupby("task")[column].mean()
    ref = ref.where(ref > 0)
    return runs[column] / runs["task"].map(ref)


OVERHEAD_MEASURES = {  # ratio column -> (per-run total, what it is)
    "train_time_ratio": ("train_time_s", "training time (env + update, no evaluation)"),
    "cpu_time_ratio": ("cpu_train_s", "CPU time of training"),
    "wall_clock_ratio": ("wall_clock_s", "total wall-clock (evaluation included)"),
    "peak_rss_ratio": ("peak_rss_mb", "peak memory (RSS)"),
    "cuda_peak_ratio": ("cuda_peak_mb", "peak GPU memory"),
}


def overheads(runs: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Ratios of every run to the `baseline` run of the same task and seed (OVERHEAD_MEASURES); the primary ones
    are training time and CPU time, which leave out evaluation (it costs every method the same).

    Pairs whose budgets differ are left out. Columns: task, label, seed and one per ratio (NaN where a run lacks the
    measure, e.g. no GPU).
    """
    totals = [t for t, _ in OVERHEAD_MEASURES.values()]
    base = runs[runs["label"] == baseline]
    pairs = runs[runs["label"] != baseline].merge(base[["task", "seed", "total_steps", *totals]],
                                                  on=["task", "seed", "total_steps"], suffixes=("", "_base"))
    out = pairs[["task", "label", "seed"]].copy()
    for ratio, (total, _) in OVERHEAD_MEASURES.items():
        out[ratio] = pairs[total] / pairs[f"{total}_base"]
    return out.reset_index(drop=True)


def summarise(values: pd.DataFrame, by: list[str], column: str) -> pd.DataFrame:
    """mean, sample std (n-1; NaN for one run) and n of `column` per group."""
    g = values.groupby(by, sort=False)[column]
    return pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()}).reset_index()
