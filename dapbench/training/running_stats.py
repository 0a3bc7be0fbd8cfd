"""Running mean/variance normalisers (the statistics travel in checkpoints).

Same update rule as Gymnasium's `NormalizeObservation` / `NormalizeReward` and SB3's `VecNormalize`
(Chan et al.'s parallel variance, float64, initial count 1e-4).
"""

from __future__ import annotations

from typing import Any

import numpy as np


class RunningMeanStd:
    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4) -> None:
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = epsilon

    def update(self, x: np.ndarray) -> None:
        """Update with a batch `x` of shape `(n, *shape)`."""
        if x.shape[0] == 1:  # the per-step case, without the cost of mean/var reductions (same arithmetic)
            b_mean, b_var, b_count = x[0], 0.0, 1
        else:
            b_mean, b_var, b_count = x.mean(axis=0), x.var(axis=0), x.shape[0]
        delta = b_mean - self.mean
        tot = self.count + b_count
        self.mean = self.mean + delta * b_count / tot
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / tot
        self.var = m2 / tot
        self.count = tot

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": self.count}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.mean, self.var, self.count = np.array(s["mean"]), np.array(s["var"]), float(s["count"])


class ObsNormalizer:
    """o' = clip((o - mu) / sqrt(var + eps), -clip, clip); statistics updated on training observations."""

    def __init__(self, dim: int, clip: float, enabled: bool = True, eps: float = 1e-8) -> None:
        self.rms = RunningMeanStd((dim,))
        self.clip, self.enabled, self.eps = clip, enabled, eps

    def __call__(self, obs: np.ndarray, update: bool = False) -> np.ndarray:
        if not self.enabled:
            return obs.astype(np.float32)
        if update:
            self.rms.update(obs.reshape(-1, obs.shape[-1]))
        out = (obs - self.rms.mean) / np.sqrt(self.rms.var + self.eps)
        return np.clip(out, -self.clip, self.clip).astype(np.float32)


class RewardNormalizer:
    """r' = clip(r / sqrt(Var[G] + eps), -clip, clip), G the running discounted return
    (G <- gamma G + r, reset at episode boundaries)."""

    def __init__(self, gamma: float, clip: float, enabled: bool = True, eps: float = 1e-8) -> None:
        self.rms = RunningMeanStd(())
        self.gamma, self.clip, self.enabled, self.eps = gamma, clip, enabled, eps
        self.ret = 0.0

    def __call__(self, reward: float, episode_end: bool) -> float:
        if not self.enabled:
            return reward
        self.ret = self.ret * self.gamma + reward
        self.rms.update(np.array([self.ret]))
        if episode_end:
            self.ret = 0.0
        return float(np.clip(reward / np.sqrt(self.rms.var + self.eps), -self.clip, self.clip))

    def state_dict(self) -> dict[str, Any]:
        return {"rms": self.rms.state_dict(), "ret": self.ret}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.rms.load_state_dict(s["rms"])
        self.ret = float(s["ret"])
