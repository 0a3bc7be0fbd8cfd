"""DTQL (Chen, Wang, Zhou, arXiv 2405.19690) trained offline on the task's logged data, then continued on-policy.

Offline stage (before the first environment step, inside the first epoch; no environment steps are spent):
  - behaviour model mu_phi: the shared cached diffusion prior (dapbench.diffusion.prior, DTQL's EDM
    denoiser, the same one PPO-DAP uses), frozen;
  - IQL-style critic: twin Q (3 x 256, LayerNorm + Mish) and V (3 x 256, Mish),
      L_V = E[|tau - 1(Q'(s,a) - V(s) < 0)| (Q'(s,a) - V(s))^2], Q' = min of the EMA target twins, tau = 0.7,
      L_Q = sum_i E[(r + gamma (1 - d) V(s') - Q_i(s, a))^2], EMA target rate 0.005;
    `critic_pretrain_steps` critic-only steps (DTQL pre-trains its critic), then
  - the one-step policy a_theta = pi_theta(s) jointly with the critic for `policy_steps` steps:
      L_pi = alpha L_TR(a_theta) - E[min_i Q_i(s, a_theta)] / E|min_i Q_i(s, a_theta)|  (Q term scaled by its
      detached mean magnitude, as Diffusion-QL does; DTQL's gamma NLL term is 0 on gym tasks),
      L_TR(a_theta) = E_{sigma, eps}[w(sigma) ||D_phi(a_theta + sigma eps; sigma, s) - a_theta||^2].
How the one-step policy becomes the on-policy actor (our definition): pi_theta IS the mean network mu_theta of
PPO's Gaussian actor (same class as PPO's, widths `hidden_sizes`, default DTQL's 3 x 256; tanh activations
as PPO's actor, DTQL uses ReLU). Offline it is trained as a deterministic one-step policy (its mode; the
trust-region loss is mode-seeking and the entropy term is off on gym tasks); observations are normalised with
the logged data's statistics, which seed PPO's running normaliser. Online, PPO takes over unchanged: the
actor N(mu_theta(s), sigma^2) with PPO's initial log-std 0, a fresh critic V (PPO's reward scale differs
from the offline critic's), and PPO's clipped surrogate on fresh rollouts only; the offline critics and the
prior are dropped. So DTQL here = DTQL-initialised PPO within the same online budget as every other method.
"""

from __future__ import annotations

import copy
import itertools
import time
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from algorithms.ppo_diffusion import trust_region_loss
from algorithms.proposer import frozen_prior
from dapbench.api import PPO, Context, PPOConfig, Spaces, TrainEnv
from dapbench.diffusion.prior import PriorConfig


class DTQLConfig(PPOConfig):
    hidden_sizes: tuple[int, ...] = Field((256, 256, 256), description="actor (one-step policy) and PPO critic "
                                          "widths (DTQL: 3 x 256)")
    alpha: float = Field(5.0, ge=0, description="trust-region loss weight (DTQL: 1-50 by dataset, 5 typical)")
    offline_lr: float = Field(3e-4, gt=0, description="offline Adam step size, policy and critics (DTQL gym)")
    offline_batch: int = Field(256, gt=0, description="offline minibatch (DTQL)")
    critic_pretrain_steps: int = Field(50_000, ge=0, description="critic-only steps first (DTQL: 50 epochs x 1,000)")
    policy_steps: int = Field(50_000, ge=0, description="joint policy + critic steps (ours; DTQL trains far longer "
                              "offline, unaffordable inside a CPU run)")
    expectile: float = Field(0.7, gt=0, lt=1, description="V expectile tau (DTQL)")
    target_tau: float = Field(0.005, gt=0, le=1, description="EMA rate of the target Q (DTQL)")
    critic_hidden: int = Field(256, gt=0, description="critic width, 3 layers (DTQL)")
    prior: PriorConfig = Field(PriorConfig(), description="the behaviour diffusion model: the shared cached prior")


def critic_mlp(inp: int, hidden: int, layer_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise([inp, hidden, hidden, hidden]):
        layers += [nn.Linear(a, b), *([nn.LayerNorm(b)] if layer_norm else []), nn.Mish()]
    return nn.Sequential(*layers, nn.Linear(hidden, 1))


class TwinQ(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden: int) -> None:
        super().__init__()
        self.q1, self.q2 = (critic_mlp(obs_dim + act_dim, hidden, True) for _ in range(2))

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([obs, act], -1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


def expectile_loss(diff: torch.Tensor, tau: float) -> torch.Tensor:
    """E[|tau - 1(diff < 0)| diff^2], diff = Q - V."""
    return (torch.abs(tau - (diff < 0).float()) * diff**2).mean()


class DTQL(PPO):
    """DTQL (diffusion trust-region Q-learning) offline on the logged data, then PPO on-policy from its policy."""

    Config = DTQLConfig
    needs_dataset = True
    needs_prior = True

    def __init__(self, config: DTQLConfig, spaces: Spaces, context: Context) -> None:
        super().__init__(config, spaces, context)
        self.offline_done = False

    def train_epoch(self, env: TrainEnv, n_steps: int) -> dict[str, float]:
        offline = {} if self.offline_done else self.offline_stage()
        return {**offline, **super().train_epoch(env, n_steps)}

    def offline_stage(self) -> dict[str, float]:
        """DTQL on the logged data; leaves the one-step policy in PPO's actor mean and the data's statistics in
        PPO's observation normaliser."""
        from dapbench.data.load import load_transitions

        c, dev, t0 = self.cfg, self.device, time.perf_counter()
        data = load_transitions(self.context.dataset)
        prior, _ = frozen_prior(c.prior, self.spaces, self.context, dev, data=data)
        rms = self.obs_norm.rms  # seed PPO's running normaliser with the logged data's statistics
        rms.mean, rms.var, rms.count = (data.obs.double().mean(0).numpy(), data.obs.double().var(0).numpy(),
                                        float(len(data)))
        obs = torch.as_tensor(self.obs_norm(data.obs.numpy()), device=dev)
        nxt = torch.as_tensor(self.obs_norm(data.next_obs.numpy()), device=dev)
        raw, act = data.obs.to(dev), data.actions.to(dev)
        rew, term = data.rewards.to(dev), data.terminals.to(dev)
        g = torch.Generator(device=dev).manual_seed(self.context.seed + 2)
        torch.manual_seed(self.context.seed + 2)  # critic initialisation
        q = TwinQ(self.spaces.obs_dim, self.spaces.act_dim, c.critic_hidden).to(dev)
        q_target = copy.deepcopy(q).requires_grad_(False)
        v = critic_mlp(self.spaces.obs_dim, c.critic_hidden, False).to(dev)
        q_opt = torch.optim.Adam(q.parameters(), lr=c.offline_lr)
        v_opt = torch.optim.Adam(v.parameters(), lr=c.offline_lr)
        pi_opt = torch.optim.Adam(self.agent.actor_mean.parameters(), lr=c.offline_lr)
        logs: dict[str, list[float]] = {"offline_q_loss": [], "offline_v_loss": [], "offline_tr_loss": [],
                                        "offline_q_pi": []}
        for step in range(c.critic_pretrain_steps + c.policy_steps):
            i = torch.randint(len(obs), (c.offline_batch,), generator=g, device=dev)
            s, a = obs[i], act[i]
            with torch.no_grad():  # V <- expectile of min Q'(s, a)
                q_min_t = torch.min(*q_target(s, a))
            v_loss = expectile_loss(q_min_t - v(s).squeeze(-1), c.expectile)
            v_opt.zero_grad(set_to_none=True)
            v_loss.backward()
            v_opt.step()
            with torch.no_grad():  # y = r + gamma (1 - d) V(s')
                y = rew[i] + c.gamma * (1 - term[i]) * v(nxt[i]).squeeze(-1)
            q1, q2 = q(s, a)
            q_loss = ((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean()
            q_opt.zero_grad(set_to_none=True)
            q_loss.backward()
            q_opt.step()
            with torch.no_grad():  # EMA target
                for p, pt in zip(q.parameters(), q_target.parameters(), strict=True):
                    pt.lerp_(p, c.target_tau)
            logs["offline_q_loss"].append(q_loss.item())
            logs["offline_v_loss"].append(v_loss.item())
            if step < c.critic_pretrain_steps:
                continue
            a_pi = self.agent.actor_mean(s)  # the one-step policy
            tr = trust_region_loss(prior.edm, a_pi, prior.cond(raw[i]), g)
            q_pi = torch.min(*q(s, a_pi))
            pi_loss = c.alpha * tr - q_pi.mean() / q_pi.abs().mean().detach().clamp_min(1e-6)
            pi_opt.zero_grad(set_to_none=True)
            pi_loss.backward()
            pi_opt.step()
            logs["offline_tr_loss"].append(tr.item())
            logs["offline_q_pi"].append(q_pi.mean().item())
        self.agent.zero_grad(set_to_none=True)
        self._snapshot()
        self.offline_done = True
        out = {k: float(np.mean(vals[-1000:])) for k, vals in logs.items() if vals}
        return {**out, "time_offline_s": time.perf_counter() - t0}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "offline_done": self.offline_done}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        super().load_state_dict(s)
        self.offline_done = s["offline_done"]
