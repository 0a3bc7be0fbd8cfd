"""The evaluation protocol: fixed seeds, independent of training; episodes stepped in lockstep so the
policy is queried once per step for all of them."""

from __future__ import annotations

import time

import numpy as np

from dapbench.algorithm import Algorithm
from dapbench.suite import EvalConfig
from dapbench.tasks.registry import TaskInfo


class Evaluator:
    def __init__(self, task: TaskInfo, cfg: EvalConfig) -> None:
        self.cfg = cfg
        self.seeds = cfg.episode_seeds()
        self.envs = [task.make() for _ in self.seeds]

    def __call__(self, algo: Algorithm) -> dict[str, float]:
        """Returns eval_return_{mean,std,min,max}, eval_length_mean, time_eval_s."""
        t0 = time.perf_counter()
        n = len(self.envs)
        obs = np.stack([env.reset(seed=s)[0] for env, s in zip(self.envs, self.seeds, strict=True)])
        returns, lengths = np.zeros(n), np.zeros(n, int)
        alive = np.ones(n, bool)
        rng = np.random.default_rng(self.seeds)  # only used when deterministic is False
        while alive.any():
            idx = np.flatnonzero(alive)
            actions = algo.act(obs[idx], deterministic=self.cfg.deterministic, rng=rng)
            for j, i in enumerate(idx):
                env = self.envs[i]
                a = np.clip(actions[j], env.action_space.low, env.action_space.high)
                o, r, term, trunc, _ = env.step(a)
                obs[i] = o
                returns[i] += float(r)
                lengths[i] += 1
                if term or trunc:
                    alive[i] = False
        return {
            "eval_return_mean": float(returns.mean()),
            "eval_return_std": float(returns.std()),
            "eval_return_min": float(returns.min()),
            "eval_return_max": float(returns.max()),
            "eval_length_mean": float(lengths.mean()),
            "time_eval_s": time.perf_counter() - t0,
        }

    def close(self) -> None:
        for env in self.envs:
            env.close()
