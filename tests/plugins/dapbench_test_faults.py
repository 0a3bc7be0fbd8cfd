"""Test-only algorithms, registered through a real entry point (tests/plugins/*.dist-info): the trainer has
no fault switches; faults come from an algorithm, as a misbehaving plugin's would.

`ppo-faulty` is PPO, numerically identical, except that the epoch named by $DAPBENCH_TEST_NAN_AT_EPOCH
reports a NaN policy loss (the trainer then fails the run, keeping the previous epoch's checkpoint), only in
runs whose seed is in $DAPBENCH_TEST_NAN_SEEDS when that is set. The variables are read here, by the test
plugin, in the run's own process (spawned and Slurm jobs inherit them).
"""

from __future__ import annotations

import os

import numpy as np

from dapbench.api import PPO


def _run_seed_matches(algo_seed: int, seeds: str | None) -> bool:
    """Whether the run's seed is listed: the trainer derives the algorithm's seed from the run's."""
    if seeds is None:
        return True
    return any(int(np.random.SeedSequence(int(s)).generate_state(2)[1]) == algo_seed for s in seeds.split(","))


class FaultyPPO(PPO):
    """PPO that reports a NaN loss at the epoch the test environment names."""

    def train_epoch(self, env, n_steps: int) -> dict[str, float]:
        stats = super().train_epoch(env, n_steps)
        epoch = (self.iteration * self.cfg.num_steps + self.buffer.pos) // n_steps  # epochs done, resumes too
        at = int(os.environ.get("DAPBENCH_TEST_NAN_AT_EPOCH", "0"))
        if epoch == at and _run_seed_matches(self.context.seed, os.environ.get("DAPBENCH_TEST_NAN_SEEDS")):
            stats["policy_loss"] = float("nan")
        return stats
