"""rliable aggregates over runs: arrays in, arrays out, a fixed random state.

Scores are matrices `(runs, tasks)` per algorithm (or `(runs, tasks, points)` for sample-efficiency
curves). Confidence intervals are rliable's stratified bootstrap over runs within each task
(`rliable.library.get_interval_estimates`, percentile method, 95%). The statistics are rliable's own
(`rliable.metrics`), written here with numpy so one bootstrap replicate costs microseconds instead of a
scipy call per task; `tests/test_report_analysis.py` checks each equals rliable's on random matrices:

    IQM               = mean of the middle 50% of all run x task scores (25% trimmed mean)
    mean, median      = mean / median over tasks of the per-task mean over runs
    optimality gap    = 1 - mean(min(score, 1))
    P(X > Y)          = mean over tasks of P(x > y) + P(x = y) / 2 over all run pairs (Mann-Whitney U / n_x n_y)
    profile(tau)      = fraction of run x task scores above tau

rliable draws its bootstrap indices from numpy's global generator, so each call runs inside `seeded(seed)`,
which seeds it and restores the caller's state afterwards: the same inputs give the same intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import numpy as np
from rliable import library as rly

METRICS = ("IQM", "Mean", "Median", "Optimality gap")
DEFAULT_REPS = 50_000
DEFAULT_SEED = 0


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed numpy's global generator (rliable samples from it) for the block; restore it afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


# ----- the statistics (rliable.metrics, vectorised) --------------------------------------------------------
def iqm(scores: np.ndarray) -> np.ndarray:
    """25% trimmed mean over runs x tasks (the leading two axes); one value per trailing point."""
    flat = np.sort(scores.reshape(scores.shape[0] * scores.shape[1], -1), axis=0)
    cut = int(0.25 * flat.shape[0])  # scipy.stats.trim_mean's rule
    out = flat[cut:flat.shape[0] - cut].mean(axis=0)
    return out if scores.ndim > 2 else out[0]


def mean(scores: np.ndarray) -> float:
    return float(scores.mean())  # = mean over tasks of per-task means: every task has the same number of runs


def median(scores: np.ndarray) -> float:
    return float(np.median(scores.mean(axis=0)))


def optimality_gap(scores: np.ndarray, gamma: float = 1.0) -> float:
    return float(gamma - np.minimum(scores, gamma).mean())


def four_metrics(scores: np.ndarray) -> np.ndarray:
    """[IQM, mean, median, optimality gap] of a (runs, tasks) matrix."""
    return np.array([iqm(scores), mean(scores), median(scores), optimality_gap(scores)])


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y): per task, the share of (x run, y run) pairs with x > y (ties count half); mean over tasks."""
    a, b = x[:, None, :], y[None, :, :]
    return float(((a > b).mean(axis=(0, 1)) + 0.5 * (a == b).mean(axis=(0, 1))).mean())


def score_distribution(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """Fraction of run x task scores above each tau (rliable's default performance profile)."""
    return (scores[..., None] > taus).mean(axis=(0, 1))


# ----- interval estimates ----------------------------------------------------------------------------------
def interval_estimates(scores: Mapping[str, np.ndarray | tuple[np.ndarray, ...]], func: Callable[..., np.ndarray],
                       reps: int, seed: int = DEFAULT_SEED) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """rliable's `get_interval_estimates` (stratified bootstrap over runs, percentile 95% CIs), seeded:
    (point estimates, CIs of shape (2, ...) with lower and upper bounds)."""
    with seeded(seed):  # rliable's `random_state` argument does not reach its index sampling
        return rly.get_interval_estimates(dict(scores), func, reps=reps)


def aggregate_metrics(scores: Mapping[str, np.ndarray], reps: int, seed: int = DEFAULT_SEED
                      ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """IQM, mean, median and optimality gap (in `METRICS` order) with stratified-bootstrap CIs."""
    return interval_estimates(scores, four_metrics, reps, seed)


def improvement_probabilities(scores: Mapping[str, np.ndarray], target: str, reps: int, seed: int = DEFAULT_SEED
                              ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """P(target > other) for every other algorithm, keyed `"target,other"` (rliable's pair convention),
    with CIs from rliable's stratified independent bootstrap (each algorithm's runs resampled apart)."""
    pairs = {f"{target},{k}": (scores[target], v) for k, v in scores.items() if k != target}
    return interval_estimates(pairs, probability_of_improvement, reps, seed)


def performance_profiles(scores: Mapping[str, np.ndarray], taus: np.ndarray, reps: int, seed: int = DEFAULT_SEED
                         ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Score distributions (fraction of runs above tau) with CIs, as `rly.create_performance_profile`."""
    return interval_estimates(scores, lambda s: score_distribution(s, taus), reps, seed)


def sample_efficiency(curves: Mapping[str, np.ndarray], reps: int, seed: int = DEFAULT_SEED
                      ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """IQM at each point of `(runs, tasks, points)` arrays (normalised return against steps), with CIs."""
    return interval_estimates(curves, iqm, reps, seed)
