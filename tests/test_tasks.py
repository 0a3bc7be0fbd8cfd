"""The task registry, reference scores, and exact save/restore of environment state."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from dapbench.errors import BadInputError
from dapbench.tasks import TASKS, get_task, reference_scores
from dapbench.tasks.reference import random_policy_score
from dapbench.tasks.state import get_env_state, set_env_state


def test_registry_has_the_eight_tasks() -> None:
    assert sorted(TASKS) == ["ant", "halfcheetah", "hopper", "humanoidstandup", "pusher", "striker", "swimmer",
                             "walker2d"]
    assert all(t.gym_id.endswith("-v5") for t in TASKS.values() if t.name != "striker")
    assert TASKS["striker"].gym_id == "dapbench/Striker-v0"
    assert TASKS["pusher"].max_episode_steps == 100 and TASKS["hopper"].max_episode_steps == 1000
    assert TASKS["striker"].max_episode_steps == 100
    assert all(t.available for t in TASKS.values())
    with pytest.raises(BadInputError, match="known tasks: ant"):
        get_task("hoper")


def test_an_unavailable_task_is_refused_by_make(monkeypatch) -> None:
    monkeypatch.setitem(TASKS, "swimmer", replace(TASKS["swimmer"], unavailable="being rebuilt"))
    with pytest.raises(BadInputError, match="task 'swimmer' is not available: being rebuilt"):
        TASKS["swimmer"].make()


def test_reference_scores_cover_every_available_task() -> None:
    ref = reference_scores()
    assert "dapbench tasks measure" in ref["meta"]["command"]
    for t in TASKS.values():
        if t.available:
            r = ref["tasks"][t.name]
            assert math.isfinite(r["random_return_mean"]) and r["random_episodes"] >= 10 and r["env_steps_per_s"] > 0


def test_reference_measurement_is_reproducible() -> None:
    a = random_policy_score(get_task("pusher"), episodes=3, seed=5)
    b = random_policy_score(get_task("pusher"), episodes=3, seed=5)
    assert a["random_return_mean"] == b["random_return_mean"] and a["random_episodes"] == 3


@pytest.mark.parametrize("task", ["hopper", "ant", "pusher", "striker"])
def test_env_state_restore_continues_bit_identically(task: str) -> None:
    info = get_task(task)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(80, TASKS[task].make().action_space.shape[0])).astype(np.float32)
    env = info.make()
    env.reset(seed=3)
    for a in actions[:40]:
        env.step(a)
    state = get_env_state(env)
    cont = [env.step(a)[0] for a in actions[40:]]

    other = info.make()
    other.reset(seed=99)  # a different trajectory, then overwritten
    set_env_state(other, state)
    again = [other.step(a)[0] for a in actions[40:]]
    for x, y in zip(cont, again, strict=True):
        np.testing.assert_array_equal(x, y)
