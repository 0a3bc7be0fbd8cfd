"""Striker, re-created: a 7-DoF arm strikes a ball toward a goal on a frictionless table.

Gym's `Striker-v2` was removed in 2022 and lives in no maintained package. This is a reconstruction
from its documented model, observation, reward and reset (docs/striker.md; the numbers are those of the
old gym code):

- model: the PR2-style arm of Gymnasium's `pusher.xml` (built from that file in code), with a flat paddle
  (box, half sizes 0.003 x 0.12 x 0.05 at x 0.017 of the wrist-roll link) instead of Pusher's fingers;
  a ball (sphere r 0.05 at z -0.27) on two slide joints (y then x, range +-10.3, armature 0.1, damping
  0.5); a goal on a free joint (z -0.323) with a heavy non-colliding coaster (cylinder r 0.08) and three
  thin walls (half sizes 0.032 x 0.001 x 0.04 at (0, 0.075, 0.04), rotated 0 and +-0.785 rad about z);
  friction 0, gravity 0, Euler, timestep 0.01, frame_skip 5, 20 solver iterations; 7 torque motors,
  gear 1, controls in [-3, 3]. nq 16, nv 15, nu 7.
- observation (23): qpos[:7], qvel[:7], then the positions of bodies `tips_arm`, `object`, `goal`.
- reward, from the state before the step: v1 = obj - tips, v2 = obj - goal; min_d <- min(min_d, |v2|);
  if |v1| < 0.1 the arm has struck and strike_pos <- tips (re-set every such step);
  near = -|obj - strike_pos| if struck else -|v1|; r = 3 (-min_d) + 0.1 (-|a|^2) + 0.5 near.
  Never terminates; 100 steps per episode.
- reset: ball at (0.5, -0.175); goal ~ (U(0.15, 0.7), U(0.1, 1.0)) until |ball - goal| > 0.17; the goal's
  quaternion z-component is -arctan(dx / (dy + 1e-8)) / 3.14 with d = ball - goal (as the old code did;
  MuJoCo normalises the quaternion); qvel ~ U(-0.1, 0.1) on all dofs, then qvel[7:] = 0.

Collision groups differ from the original in bits only: the walls use contype/conaffinity 2 and the
ball 3, so the ball hits the paddle, the walls and (never, at its height) the table, while the walls,
which rest 2 mm above the table, cannot touch it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from gymnasium.spaces import Box

PUSHER_XML = Path(gym.__file__).parent / "envs" / "mujoco" / "assets" / "pusher.xml"
STRIKE_THRESHOLD = 0.1
BALL_XY = np.array([0.5, -0.175])


@cache
def striker_xml() -> str:
    """The Striker MJCF, derived from Gymnasium's pusher.xml."""
    root = ET.parse(PUSHER_XML).getroot()
    root.set("model", "striker")
    root.find("default/geom").set("friction", "0 0 0")
    world = root.find("worldbody")

    wrist = world.find(".//body[@name='r_wrist_roll_link']")
    for g in [g for g in wrist.findall("geom") if g.get("contype") == "1"]:  # Pusher's fingers
        wrist.remove(g)
    ET.SubElement(wrist, "geom", name="paddle", type="box", pos="0.017 0 0", size="0.003 0.12 0.05",
                  rgba="0.3 0.3 0.3 1", contype="1", conaffinity="1")

    for name in ("object", "goal"):
        world.remove(world.find(f"body[@name='{name}']"))
    ball = ET.SubElement(world, "body", name="object", pos="0 0 -0.27")
    ET.SubElement(ball, "geom", name="ball", type="sphere", size="0.05", rgba="1 1 1 1", contype="3",
                  conaffinity="3")
    for axis, name in (("0 1 0", "obj_slidey"), ("1 0 0", "obj_slidex")):
        ET.SubElement(ball, "joint", name=name, type="slide", pos="0 0 0", axis=axis, range="-10.3213 10.3",
                      armature="0.1", damping="0.5")

    goal = ET.SubElement(world, "body", name="goal", pos="0 0 -0.323")
    for i, angle in enumerate(("0", "0.785", "-0.785")):
        ET.SubElement(goal, "geom", name=f"wall{i}", type="box", pos="0 0.075 0.04", euler=f"0 0 {angle}",
                      size="0.032 0.001 0.04", rgba="1 1 1 1", contype="2", conaffinity="2")
    ET.SubElement(goal, "geom", name="coaster", type="cylinder", size="0.08 0.001", rgba="1 0 0 1",
                  density="1000000", contype="0", conaffinity="0")
    ET.SubElement(goal, "joint", name="goal_free", type="free", pos="0 0 0", limited="false", damping="0",
                  armature="0")

    for motor in root.find("actuator"):
        motor.set("ctrlrange", "-3.0 3.0")
        motor.set("gear", "1")
    return ET.tostring(root, encoding="unicode")


class StrikerEnv(MujocoEnv, gym.utils.EzPickle):
    """Striker: hit the ball into the goal. Observation 23, action 7 in [-3, 3], 100 steps, no termination."""

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["human", "rgb_array", "depth_array", "rgbd_tuple"],
        "render_fps": 20,
    }

    def __init__(self, render_mode: str | None = None, width: int = 480, height: int = 480, **kwargs: Any):
        gym.utils.EzPickle.__init__(self, render_mode=render_mode, width=width, height=height, **kwargs)
        obs_space = Box(low=-np.inf, high=np.inf, shape=(23,), dtype=np.float64)
        # MujocoEnv checks that model_path exists; the model itself comes from _initialize_simulation.
        MujocoEnv.__init__(self, str(PUSHER_XML), 5, observation_space=obs_space, render_mode=render_mode,
                           width=width, height=height,
                           default_camera_config={"trackbodyid": -1, "distance": 4.0}, **kwargs)
        self._min_strike_dist = np.inf
        self._striked = False
        self._strike_pos = np.zeros(3)

    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        model = mujoco.MjModel.from_xml_string(striker_xml())
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        return model, mujoco.MjData(model)

    def reward_terms(self, action: np.ndarray) -> dict[str, float]:
        """The reward of taking `action` in the current state; updates the strike memory."""
        tips, obj, goal = (self.get_body_com(b).copy() for b in ("tips_arm", "object", "goal"))
        v1, v2 = obj - tips, obj - goal
        self._min_strike_dist = min(self._min_strike_dist, float(np.linalg.norm(v2)))
        if np.linalg.norm(v1) < STRIKE_THRESHOLD:
            self._striked = True
            self._strike_pos = tips
        near = -float(np.linalg.norm(obj - self._strike_pos)) if self._striked else -float(np.linalg.norm(v1))
        dist = -self._min_strike_dist
        ctrl = -float(np.square(action).sum())
        return {"reward_dist": dist, "reward_ctrl": ctrl, "reward_near": near,
                "reward": 3 * dist + 0.1 * ctrl + 0.5 * near}

    def step(self, action: np.ndarray):
        terms = self.reward_terms(np.asarray(action))
        self.do_simulation(action, self.frame_skip)
        if self.render_mode == "human":
            self.render()
        return self._get_obs(), terms.pop("reward"), False, False, terms

    def reset_model(self) -> np.ndarray:
        self._min_strike_dist = np.inf
        self._striked = False
        self._strike_pos = np.zeros(3)
        qpos = self.init_qpos.copy()
        while True:
            goal = np.array([self.np_random.uniform(0.15, 0.7), self.np_random.uniform(0.1, 1.0)])
            if np.linalg.norm(BALL_XY - goal) > 0.17:
                break
        qpos[7:9] = [BALL_XY[1], BALL_XY[0]]  # slide joints: y first
        qpos[9:11] = goal
        d = BALL_XY - goal
        qpos[-1] = -np.arctan(d[0] / (d[1] + 1e-8)) / 3.14
        qvel = self.init_qvel + self.np_random.uniform(-0.1, 0.1, size=self.model.nv)
        qvel[7:] = 0
        self.set_state(qpos, qvel)
        return self._get_obs()

    def _get_obs(self) -> np.ndarray:
        return np.concatenate([
            self.data.qpos.flat[:7], self.data.qvel.flat[:7],
            self.get_body_com("tips_arm"), self.get_body_com("object"), self.get_body_com("goal"),
        ])

    # Memory beyond MuJoCo's state, saved and restored with checkpoints (dapbench.tasks.state).
    def get_extra_state(self) -> dict[str, Any]:
        return {"min_strike_dist": self._min_strike_dist, "striked": self._striked,
                "strike_pos": self._strike_pos.copy()}

    def set_extra_state(self, s: dict[str, Any]) -> None:
        self._min_strike_dist = float(s["min_strike_dist"])
        self._striked = bool(s["striked"])
        self._strike_pos = np.array(s["strike_pos"], dtype=np.float64)


ENV_ID = "dapbench/Striker-v0"


def register() -> None:
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="dapbench.tasks.striker:StrikerEnv", max_episode_steps=100)
