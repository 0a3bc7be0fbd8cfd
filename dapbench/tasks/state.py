"""Save and restore a MuJoCo environment's full state, so a resumed run steps bit-identically.

The state is MuJoCo's integration state (`mjSTATE_INTEGRATION`: time, qpos, qvel, act, warm-start
accelerations, controls, applied forces, mocap, userdata), the TimeLimit step counter, the env's
`np_random` generator, and, for environments with memory of their own (Striker), whatever their
`get_extra_state()` returns.
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.wrappers import TimeLimit

_SPEC = mujoco.mjtState.mjSTATE_INTEGRATION


def _time_limit(env: gym.Env) -> TimeLimit | None:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, TimeLimit):
            return env
        env = env.env
    return None


def get_env_state(env: gym.Env) -> dict[str, Any]:
    u = env.unwrapped
    state = np.empty(mujoco.mj_stateSize(u.model, _SPEC), dtype=np.float64)
    mujoco.mj_getState(u.model, u.data, state, _SPEC)
    limit = _time_limit(env)
    out = {
        "mj_state": state,
        "elapsed_steps": None if limit is None else limit._elapsed_steps,
        "np_random": copy.deepcopy(u.np_random.bit_generator.state),
    }
    if hasattr(u, "get_extra_state"):
        out["extra"] = u.get_extra_state()
    return out


def set_env_state(env: gym.Env, state: dict[str, Any]) -> None:
    u = env.unwrapped
    mujoco.mj_setState(u.model, u.data, np.asarray(state["mj_state"], dtype=np.float64), _SPEC)
    mujoco.mj_forward(u.model, u.data)
    limit = _time_limit(env)
    if limit is not None:
        limit._elapsed_steps = state["elapsed_steps"]
    u.np_random.bit_generator.state = state["np_random"]
    if "extra" in state:
        u.set_extra_state(state["extra"])
