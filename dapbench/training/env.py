"""`TrainEnv`: the training environment an algorithm steps, with auto-reset, episode records and timing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dapbench.tasks.registry import TaskInfo
from dapbench.tasks.state import get_env_state, set_env_state


@dataclass
class Step:
    """One transition. `next_obs` is the first observation of the next episode when the episode ended;
    the episode's last observation is then in `final_obs` (needed to bootstrap a truncation)."""

    next_obs: np.ndarray
    reward: float
    terminated: bool
    truncated: bool
    final_obs: np.ndarray | None


class TrainEnv:
    """A single environment that resets itself, clips actions to the action box (the policy's own,
    unclipped action is what the algorithm stores), records finished episodes and times `env.step`."""

    def __init__(self, task: TaskInfo, seed: int) -> None:
        self.task = task
        self.env = task.make()
        self.obs, _ = self.env.reset(seed=seed)
        self.env.action_space.seed(seed)
        self.low = self.env.action_space.low
        self.high = self.env.action_space.high
        self.episode_return = 0.0
        self.episode_length = 0
        self.finished: list[tuple[float, int]] = []  # (return, length), drained by the trainer
        self.env_time = 0.0  # seconds inside env.step / env.reset
        self.total_steps = 0
        # Optional observer of every transition: on_step(obs, executed_action, step). Not checkpointed.
        self.on_step: Callable[[np.ndarray, np.ndarray, Step], None] | None = None

    def step(self, action: np.ndarray) -> Step:
        t0 = time.perf_counter()
        prev_obs, action = self.obs, np.clip(action, self.low, self.high)
        obs, reward, terminated, truncated, _ = self.env.step(action)
        reward = float(reward)
        self.episode_return += reward
        self.episode_length += 1
        self.total_steps += 1
        final_obs = None
        if terminated or truncated:
            self.finished.append((self.episode_return, self.episode_length))
            self.episode_return, self.episode_length = 0.0, 0
            final_obs = obs
            obs, _ = self.env.reset()
        self.env_time += time.perf_counter() - t0
        self.obs = obs
        step = Step(obs, reward, bool(terminated), bool(truncated), final_obs)
        if self.on_step is not None:
            self.on_step(prev_obs, action, step)
        return step

    def drain_episodes(self) -> list[tuple[float, int]]:
        out, self.finished = self.finished, []
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "env": get_env_state(self.env),
            "obs": self.obs.copy(),
            "episode_return": self.episode_return,
            "episode_length": self.episode_length,
            "finished": list(self.finished),
            "total_steps": self.total_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_env_state(self.env, state["env"])
        self.obs = np.asarray(state["obs"]).copy()
        self.episode_return = state["episode_return"]
        self.episode_length = state["episode_length"]
        self.finished = list(state["finished"])
        self.total_steps = state["total_steps"]

    def close(self) -> None:
        self.env.close()
