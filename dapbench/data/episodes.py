"""Episodes as arrays, collected step by step, and their content hash."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from dapbench.training.env import Step


@dataclass
class Episode:
    """T steps: observations (T+1, obs_dim), actions (T, act_dim), rewards, terminations, truncations (T,)."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def ret(self) -> float:
        return float(self.rewards.sum())


@dataclass
class EpisodeRecorder:
    """Turns a stream of `(obs, action, Step)` into episodes; stops taking steps after `limit` of them.

    An episode still running when the stream ends (or the limit is reached) is closed with a truncation,
    as D4RL's timeouts."""

    limit: int | None = None
    episodes: list[Episode] = field(default_factory=list)
    steps: int = 0
    _cur: dict[str, list] = field(default_factory=lambda: {"o": [], "a": [], "r": [], "te": [], "tr": []})

    @property
    def full(self) -> bool:
        return self.limit is not None and self.steps >= self.limit

    def __call__(self, obs: np.ndarray, action: np.ndarray, step: Step) -> None:
        if self.full:
            return
        c = self._cur
        if not c["o"]:
            c["o"].append(np.array(obs))
        c["a"].append(np.array(action))
        c["r"].append(step.reward)
        c["te"].append(step.terminated)
        c["tr"].append(step.truncated)
        self.steps += 1
        if step.terminated or step.truncated:
            c["o"].append(np.array(step.final_obs))
            self._close()
        else:
            c["o"].append(np.array(step.next_obs))
            if self.full:
                c["tr"][-1] = True
                self._close()

    def finish(self) -> list[Episode]:
        if self._cur["a"]:
            self._cur["tr"][-1] = True
            self._close()
        return self.episodes

    def _close(self) -> None:
        c = self._cur
        self.episodes.append(Episode(
            observations=np.asarray(c["o"]), actions=np.asarray(c["a"], dtype=np.float32),
            rewards=np.asarray(c["r"], dtype=np.float64), terminations=np.asarray(c["te"], dtype=bool),
            truncations=np.asarray(c["tr"], dtype=bool),
        ))
        self._cur = {"o": [], "a": [], "r": [], "te": [], "tr": []}


def content_hash(episodes: list[Episode]) -> str:
    """sha256 over every array of every episode, in order (dtype, shape and bytes)."""
    h = hashlib.sha256()
    for ep in episodes:
        for arr in (ep.observations, ep.actions, ep.rewards, ep.terminations, ep.truncations):
            a = np.ascontiguousarray(arr)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()
