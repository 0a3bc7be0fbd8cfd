"""Task registry: Gymnasium ids, episode lengths, default budgets and random-policy reference scores.

Reference scores are not typed in: `dapbench tasks measure` writes `reference_scores.json` beside this
file (see `dapbench.tasks.reference`), and `reference_scores()` reads it back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import gymnasium as gym

from dapbench.errors import BadInputError
from dapbench.tasks.striker import ENV_ID as STRIKER_ID
from dapbench.tasks.striker import register as _register_striker

_register_striker()

REFERENCE_FILE = Path(__file__).with_name("reference_scores.json")


@dataclass(frozen=True)
class TaskInfo:
    """One task of the benchmark.

    `name` is dapbench's short id (used in suites and run folders); `gym_id` the environment it makes.
    """

    name: str
    gym_id: str
    max_episode_steps: int
    default_total_steps: int = 1_000_000
    gym_kwargs: dict[str, Any] = field(default_factory=dict)
    unavailable: str | None = None  # why the task cannot run yet, or None

    @property
    def default_dataset(self) -> str:
        """The Minari id algorithms that need logged data use unless a suite says otherwise."""
        return f"dapbench/{self.name}/medium-v0"

    @property
    def available(self) -> bool:
        return self.unavailable is None

    def make(self, **kwargs: Any) -> gym.Env:
        """A single environment (no vectorisation, no env checker), with the task's TimeLimit."""
        if self.unavailable:
            raise BadInputError(f"task {self.name!r} is not available: {self.unavailable}")
        return gym.make(
            self.gym_id,
            max_episode_steps=self.max_episode_steps,
            disable_env_checker=True,
            **{**self.gym_kwargs, **kwargs},
        )


TASKS: dict[str, TaskInfo] = {
    t.name: t
    for t in [
        TaskInfo("ant", "Ant-v5", 1000),
        TaskInfo("halfcheetah", "HalfCheetah-v5", 1000),
        TaskInfo("hopper", "Hopper-v5", 1000),
        TaskInfo("humanoidstandup", "HumanoidStandup-v5", 1000),
        TaskInfo("pusher", "Pusher-v5", 100),
        TaskInfo("striker", STRIKER_ID, 100),  # re-created: dapbench/tasks/striker.py
        TaskInfo("swimmer", "Swimmer-v5", 1000),
        TaskInfo("walker2d", "Walker2d-v5", 1000),
    ]
}


def get_task(name: str) -> TaskInfo:
    """The task registered under `name`, or a clear error listing the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise BadInputError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


@cache
def reference_scores() -> dict[str, Any]:
    """The measured reference scores (`{"meta": ..., "tasks": {name: {...}}}`); empty if not measured."""
    if not REFERENCE_FILE.exists():
        return {"meta": {}, "tasks": {}}
    return json.loads(REFERENCE_FILE.read_text())
