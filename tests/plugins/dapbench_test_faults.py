"""Test-only algorithms, registered through a real entry point (tests/plugins/*.dist-info): the trainer has
no fault switches; faults come from an algorithm, as a misbehaving plugin's would.

`ppo-dap-leak` is PPO-DAP with the leak the on-policy audit must catch: `leak_offline` x N offline transitions
mixed into PPO's batch (origin OFFLINE, one-step TD advantages, never acted: no behaviour log-prob). It is the
positive control of the audit, kept out of the production class.

`ppo-faulty` is PPO, numerically identical, except that the epoch named by $DAPBENCH_TEST_NAN_AT_EPOCH
reports a NaN policy loss (the trainer then fails the run, keeping the previous epoch's checkpoint), only in
runs whose seed is in $DAPBENCH_TEST_NAN_SEEDS when that is set. The variables are read here, by the test
plugin, in the run's own process (spawned and Slurm jobs inherit them).
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from pydantic import Field

from algorithms.ppo_dap import OFFLINE, PPODAP, DAPBatch, PPODAPConfig
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


class LeakConfig(PPODAPConfig):
    leak_offline: float = Field(0.25, gt=0, description="offline samples mixed into PPO's batch, as a share of the "
                                "rollout: breaks the on-policy guarantee on purpose")


class LeakyPPODAP(PPODAP):
    """PPO-DAP whose PPO batch also holds offline transitions: the audit's positive control."""

    Config = LeakConfig

    def __init__(self, config: LeakConfig, spaces, context) -> None:
        super().__init__(config, spaces, context)
        from dapbench.data.load import load_transitions

        self.offline = load_transitions(context.dataset).to(self.device)

    def process_batch(self, batch):
        return self._leak(super().process_batch(batch))

    def _leak(self, b: DAPBatch) -> DAPBatch:
        """Append offline transitions (origin OFFLINE) to PPO's batch, with one-step TD advantages."""
        off, c = self.offline, self.cfg
        k = max(1, int(c.leak_offline * len(b)))
        i = torch.as_tensor(self.rng.choice(len(off), k, replace=False), device=self.device)
        obs = torch.as_tensor(self.obs_norm(off.obs[i].cpu().numpy()), device=self.device)
        nxt = torch.as_tensor(self.obs_norm(off.next_obs[i].cpu().numpy()), device=self.device)
        scale = float(np.sqrt(self.rew_norm.rms.var + self.rew_norm.eps)) if c.normalize_reward else 1.0
        with torch.no_grad():
            logp, _ = self.agent.log_prob_entropy(obs, off.actions[i])
            v, v_next = self.agent.value(obs), self.agent.value(nxt)
            adv = off.rewards[i] / scale + c.gamma * v_next * (1 - off.terminals[i]) - v
            props, _, _ = self.proposer.propose(obs, off.obs[i])
        never_acted = torch.full((k,), math.nan, dtype=torch.float64, device=self.device)
        extra = DAPBatch(obs=obs, actions=off.actions[i], logprobs=logp, values=v, advantages=adv, returns=adv + v,
                         origin=torch.full((k,), OFFLINE, dtype=torch.uint8, device=self.device),
                         raw_obs=off.obs[i], behaviour_logprobs=never_acted, proposals=props[:, : self.m],
                         prior_mu=props.mean(1), prior_std=props.std(1).clamp_min(1e-3),
                         has_prop=None if b.has_prop is None else torch.ones(k, device=self.device))
        return DAPBatch(**{f: None if getattr(b, f) is None else torch.cat([getattr(b, f), getattr(extra, f)])
                           for f in vars(b)})
