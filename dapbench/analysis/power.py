"""How many seeds would it take: the smallest difference a comparison's seeds could detect, and the seeds that
would detect a given one, from the runs' own spread.

For two algorithms with runs a (n_a seeds) and b (n_b seeds) on one task, the difference of means d = mean(a) -
mean(b) has a standard error SE, estimated by bootstrap (resampling each algorithm's runs with replacement, a
fixed seed). A two-sided test at level alpha with power 1 - beta detects differences of at least

    MDE = (z_{1 - alpha/2} + z_{1 - beta}) SE                        (the minimum detectable effect),

and, as SE shrinks with 1/sqrt(n) at equal seeds per algorithm, a difference delta needs

    n(delta) = n_now (MDE / delta)^2 seeds per algorithm              (n_now = (n_a + n_b) / 2),

rounded up. With alpha = 0.05 and power 0.8, z sums to 2.80. Normal approximations; with 3-5 seeds they are rough,
which is the point: they say whether a null result is a measured absence or an unmeasured one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

ALPHA = 0.05
POWER = 0.8
REPS = 2_000
SEED = 0


@dataclass(frozen=True)
class Detectability:
    diff: float  # mean(a) - mean(b)
    se: float  # bootstrap standard error of diff
    ci: tuple[float, float]  # 95% percentile bootstrap interval of diff
    mde: float  # the smallest |difference| these seeds detect with the given power
    seeds: float  # runs per algorithm now (mean of the two)

    def seeds_for(self, delta: float) -> float:
        """Seeds per algorithm to detect |delta| (inf for delta 0, NaN without a spread)."""
        if not (math.isfinite(self.mde) and math.isfinite(delta)):
            return float("nan")
        if delta == 0:
            return float("inf")
        return float(max(2, math.ceil(self.seeds * (self.mde / abs(delta)) ** 2)))


def z_sum(alpha: float = ALPHA, power: float = POWER) -> float:
    return float(norm.ppf(1 - alpha / 2) + norm.ppf(power))


def detectability(a: np.ndarray, b: np.ndarray, alpha: float = ALPHA, power: float = POWER, reps: int = REPS,
                  seed: int = SEED) -> Detectability:
    """The difference of means of a and b, its bootstrap SE and interval, and the minimum detectable effect."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) < 2 or len(b) < 2:
        nan = float("nan")
        d = float(a.mean() - b.mean()) if len(a) and len(b) else nan
        return Detectability(d, nan, (nan, nan), nan, (len(a) + len(b)) / 2)
    rng = np.random.default_rng(seed)
    da = a[rng.integers(0, len(a), (reps, len(a)))].mean(1)
    db = b[rng.integers(0, len(b), (reps, len(b)))].mean(1)
    boot = da - db
    se = float(boot.std(ddof=1))
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return Detectability(float(a.mean() - b.mean()), se, (float(lo), float(hi)), z_sum(alpha, power) * se,
                         (len(a) + len(b)) / 2)


def diff_ci(new: np.ndarray, base: np.ndarray, reps: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of mean(new) - mean(base), resampling each side's seeds with replacement (the
    regression gate's learning interval: `dapbench check`)."""
    rng = np.random.default_rng(seed)
    a = rng.choice(new, size=(reps, len(new)), replace=True).mean(1)
    b = rng.choice(base, size=(reps, len(base)), replace=True).mean(1)
    lo, hi = np.quantile(a - b, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
