"""Measure random-policy reference scores: `dapbench tasks measure`.

Protocol: for each task, `episodes` episodes with uniform random actions, episode i reset with seed
`seed + i` and actions drawn from `numpy.random.default_rng(seed + i)`. The score is the mean
undiscounted return; the raw environment's stepping rate is recorded alongside (one core, one env).
"""

from __future__ import annotations

import json
import platform
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import numpy as np

from dapbench.results.atomic import atomic_write_text
from dapbench.tasks.registry import REFERENCE_FILE, TaskInfo


def random_policy_score(task: TaskInfo, episodes: int, seed: int) -> dict[str, float]:
    """Mean, std, min, max return of uniform random actions, and raw env steps/s."""
    env = task.make()
    low, high = env.action_space.low, env.action_space.high
    returns, steps, elapsed = [], 0, 0.0
    for i in range(episodes):
        rng = np.random.default_rng(seed + i)
        env.reset(seed=seed + i)
        ret, done = 0.0, False
        t0 = time.perf_counter()
        while not done:
            _, r, term, trunc, _ = env.step(rng.uniform(low, high).astype(env.action_space.dtype))
            ret += float(r)
            steps += 1
            done = term or trunc
        elapsed += time.perf_counter() - t0
        returns.append(ret)
    env.close()
    arr = np.asarray(returns)
    return {
        "random_return_mean": float(arr.mean()),
        "random_return_std": float(arr.std()),
        "random_return_min": float(arr.min()),
        "random_return_max": float(arr.max()),
        "random_episodes": episodes,
        "env_steps_per_s": steps / elapsed,
    }


def raw_env_rate(task: TaskInfo, steps: int = 1000, seed: int = 0) -> float:
    """Raw env steps/s under uniform random actions: the reference computation that speed checks divide
    by, measured in the same process as the run so that the machine's speed and load cancel out."""
    env = task.make()
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    actions = rng.uniform(low, high, size=(steps, *low.shape)).astype(env.action_space.dtype)
    env.reset(seed=seed)
    t0 = time.perf_counter()
    for a in actions:
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()
    elapsed = time.perf_counter() - t0
    env.close()
    return steps / elapsed


def measure(tasks: list[TaskInfo], episodes: int, seed: int, output: Path = REFERENCE_FILE) -> dict:
    """Measure every available task in `tasks` and merge the results into `output`."""
    data = json.loads(output.read_text()) if output.exists() else {"meta": {}, "tasks": {}}
    command = f"python -m dapbench tasks measure --episodes {episodes} --seed {seed}"
    for task in tasks:
        if not task.available:
            continue
        data["tasks"][task.name] = {
            "gym_id": task.gym_id, **random_policy_score(task, episodes, seed),
            "command": f"{command} --task {task.name}",
            "measured": datetime.now(UTC).isoformat(timespec="seconds"),
            "gymnasium": version("gymnasium"), "mujoco": version("mujoco"),
        }
    data["meta"] = {
        "command": command,
        "protocol": __doc__.split("\n\n")[1].replace("\n", " "),
        "cpu": platform.processor() or platform.machine(),
    }
    atomic_write_text(output, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return data
