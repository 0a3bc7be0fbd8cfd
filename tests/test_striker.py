"""The re-created Striker: spaces, reward on hand-built states, reset distribution, seeding, physics."""

from __future__ import annotations

import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from dapbench.tasks import get_task
from dapbench.tasks.striker import ENV_ID, StrikerEnv

# Two arm poses found by inverse kinematics on the model (pan, lift, roll, elbow, forearm roll, wrist
# flex, wrist roll): the paddle 0.2 m behind a point, and the paddle at that point.
APPROACH = np.array([0.743, 1.374, 0.0, -1.344, 0.0, -0.601, 0.0])
STRIKE = np.array([0.681, 0.934, 0.0, -1.083, 0.0, -0.467, 0.0])


@pytest.fixture
def env() -> StrikerEnv:
    e = gym.make(ENV_ID)
    yield e.unwrapped
    e.close()


def _place(env: StrikerEnv, arm=None, ball_xy=None, goal_xy=None, ball_vel=(0.0, 0.0)) -> None:
    qpos, qvel = env.data.qpos.copy(), np.zeros(env.model.nv)
    if arm is not None:
        qpos[:7] = arm
    if ball_xy is not None:
        qpos[7:9] = [ball_xy[1], ball_xy[0]]
    if goal_xy is not None:
        qpos[9:11] = goal_xy
        qpos[12:16] = [1, 0, 0, 0]
    qvel[7:9] = [ball_vel[1], ball_vel[0]]
    env.set_state(qpos, qvel)


def _pd(env: StrikerEnv, target: np.ndarray) -> np.ndarray:
    return np.clip(10.0 * (target - env.data.qpos[:7]) - env.data.qvel[:7], -3, 3)


def test_check_env_and_spaces() -> None:
    e = gym.make(ENV_ID)
    check_env(e.unwrapped, skip_render_check=True)
    assert e.observation_space.shape == (23,) and e.observation_space.dtype == np.float64
    assert e.action_space.shape == (7,) and (e.action_space.low == -3).all() and (e.action_space.high == 3).all()
    u = e.unwrapped
    assert (u.model.nq, u.model.nv, u.model.nu) == (16, 15, 7)
    assert u.dt == pytest.approx(0.05) and u.model.opt.timestep == 0.01 and u.frame_skip == 5
    assert u.model.opt.integrator == 0 and (u.model.opt.gravity == 0).all()  # Euler, no gravity
    assert (u.model.geom_friction == 0).all()
    obs, _ = e.reset(seed=0)
    assert obs.dtype == np.float64
    steps, done = 0, False
    while not done:
        _, _, term, trunc, _ = e.step(e.action_space.sample())
        assert not term
        steps += 1
        done = trunc
    assert steps == 100 == get_task("striker").max_episode_steps


def test_observation_layout(env: StrikerEnv) -> None:
    env.reset(seed=1)
    obs = env._get_obs()
    np.testing.assert_array_equal(obs[:7], env.data.qpos[:7])
    np.testing.assert_array_equal(obs[7:14], env.data.qvel[:7])
    for i, body in enumerate(("tips_arm", "object", "goal")):
        np.testing.assert_array_equal(obs[14 + 3 * i: 17 + 3 * i], env.data.body(body).xpos)
    np.testing.assert_allclose(obs[17:19], [0.5, -0.175])


def test_reward_before_a_strike(env: StrikerEnv) -> None:
    env.reset(seed=0)
    _place(env, arm=np.zeros(7), ball_xy=(0.5, -0.175), goal_xy=(0.3, 0.6))
    tips, obj, goal = (env.data.body(b).xpos.copy() for b in ("tips_arm", "object", "goal"))
    a = np.full(7, 0.5)
    _, r, _, _, info = env.step(a)
    want = 3 * -np.linalg.norm(obj - goal) + 0.1 * -np.sum(a**2) + 0.5 * -np.linalg.norm(obj - tips)
    assert r == pytest.approx(want, abs=1e-9)
    assert not env._striked and info["reward_near"] == pytest.approx(-np.linalg.norm(obj - tips))


def test_min_distance_memory(env: StrikerEnv) -> None:
    env.reset(seed=0)
    _place(env, arm=np.zeros(7), ball_xy=(0.35, 0.6), goal_xy=(0.3, 0.6))  # close to the goal
    near = np.linalg.norm(env.data.body("object").xpos - env.data.body("goal").xpos)  # 3-D: z differs by 0.053
    _, _, _, _, info = env.step(np.zeros(7))
    assert info["reward_dist"] == pytest.approx(-near, abs=1e-12)
    _place(env, ball_xy=(0.5, -0.175))  # far from the goal now
    assert np.linalg.norm(env.data.body("object").xpos - env.data.body("goal").xpos) > 0.5
    _, _, _, _, info = env.step(np.zeros(7))
    assert info["reward_dist"] == pytest.approx(-near, abs=1e-12), "min_d remembers the closest approach"
    env.reset(seed=0)
    assert env._min_strike_dist == np.inf and not env._striked, "reset clears the memory"


def test_reward_after_a_strike_measures_from_the_strike_position(env: StrikerEnv) -> None:
    env.reset(seed=0)
    _place(env, arm=STRIKE, goal_xy=(0.3, 0.8))
    tips = env.data.body("tips_arm").xpos.copy()
    _place(env, ball_xy=(tips[0], tips[1]))  # the ball right under the tip: |v1| < 0.1
    assert np.linalg.norm(env.data.body("object").xpos - tips) < 0.1
    env.step(np.zeros(7))
    assert env._striked
    np.testing.assert_allclose(env._strike_pos, tips)
    _place(env, arm=np.zeros(7), ball_xy=(0.2, 0.3))  # arm away, ball elsewhere
    obj = env.data.body("object").xpos.copy()
    _, _, _, _, info = env.step(np.zeros(7))
    assert info["reward_near"] == pytest.approx(-np.linalg.norm(obj - tips), abs=1e-9)


def test_reset_distribution_over_many_seeds() -> None:
    e = gym.make(ENV_ID)
    u = e.unwrapped
    goals = []
    for seed in range(300):
        e.reset(seed=seed)
        q, v = u.data.qpos, u.data.qvel
        np.testing.assert_allclose(u.data.body("object").xpos[:2], [0.5, -0.175])
        goal = q[9:11].copy()
        assert 0.15 <= goal[0] <= 0.7 and 0.1 <= goal[1] <= 1.0
        assert np.linalg.norm(goal - [0.5, -0.175]) > 0.17
        d = np.array([0.5, -0.175]) - goal
        assert q[15] == pytest.approx(-np.arctan(d[0] / (d[1] + 1e-8)) / 3.14)
        assert (np.abs(v[:7]) <= 0.1).all() and (v[7:] == 0).all()
        goals.append(goal)
    goals = np.array(goals)
    assert goals[:, 0].min() < 0.2 and goals[:, 0].max() > 0.65 and goals[:, 1].max() > 0.95


def test_same_seed_same_trajectory() -> None:
    def rollout(seed: int) -> np.ndarray:
        e = gym.make(ENV_ID)
        obs = [e.reset(seed=seed)[0]]
        rng = np.random.default_rng(0)
        for _ in range(100):
            obs.append(e.step(rng.uniform(-3, 3, 7))[0])
        return np.array(obs)

    np.testing.assert_array_equal(rollout(4), rollout(4))
    assert not np.array_equal(rollout(4), rollout(5))


def test_a_swing_moves_the_ball_where_it_was_hit(env: StrikerEnv) -> None:
    env.reset(seed=0)
    _place(env, ball_xy=(5.0, 5.0), goal_xy=(-2.0, 3.0))  # everything out of the arm's way
    for _ in range(40):
        env.step(_pd(env, APPROACH))
    paddle0 = env.data.geom("paddle").xpos.copy()
    normal = env.data.geom("paddle").xmat.reshape(3, 3)[:2, 0].copy()
    normal /= np.linalg.norm(normal)
    qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy()
    qpos[7:9] = (paddle0[:2] + 0.1 * normal)[::-1]  # the ball 10 cm in front of the paddle's face
    qvel[7:9] = 0
    env.set_state(qpos, qvel)
    ball0 = env.data.body("object").xpos.copy()
    through = STRIKE + (STRIKE - APPROACH)
    for _ in range(10):
        env.step(_pd(env, through))
    swing = env.data.geom("paddle").xpos[:2] - paddle0[:2]
    for _ in range(20):
        env.step(np.zeros(7))
    moved = env.data.body("object").xpos[:2] - ball0[:2]
    assert np.linalg.norm(moved) > 0.2, f"the ball moved only {np.linalg.norm(moved):.3f} m"
    assert moved @ normal / np.linalg.norm(moved) > 0.95, "along the paddle's face normal"
    assert moved @ swing / (np.linalg.norm(moved) * np.linalg.norm(swing)) > 0.8, "the way the paddle swung"


def _roll_ball(goal_xy) -> float:
    e = gym.make(ENV_ID)
    u = e.unwrapped
    e.reset(seed=0)
    _place(u, arm=np.zeros(7), ball_xy=(0.5, 0.0), goal_xy=goal_xy, ball_vel=(0.0, 1.5))
    ys = []
    for _ in range(40):
        e.step(np.zeros(7))
        ys.append(u.data.body("object").xpos[1])
    return max(ys)


def test_the_ball_stops_at_the_goal_walls() -> None:
    free = _roll_ball(goal_xy=(-2.0, 3.0))  # no goal in the way
    walled = _roll_ball(goal_xy=(0.5, 0.3))  # walls at y = 0.375
    assert free > 0.6, f"without walls the ball rolls past 0.6 (reached {free:.3f})"
    assert walled < 0.375 - 0.05 + 0.01, f"the ball went through the wall (reached {walled:.3f})"


def test_rgb_array_rendering_where_a_gl_backend_exists() -> None:
    code = ("import gymnasium as gym; from dapbench.tasks.striker import ENV_ID; "
            "e = gym.make(ENV_ID, render_mode='rgb_array'); e.reset(seed=0); f = e.render(); "
            "print(f.shape, f.dtype, int(f.std() > 5))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "MUJOCO_GL": "egl"}, timeout=120)
    if out.returncode != 0:
        pytest.skip(f"no EGL rendering here: {out.stderr.strip().splitlines()[-1:]}")
    assert out.stdout.split("\n")[-2] == "(480, 480, 3) uint8 1"
