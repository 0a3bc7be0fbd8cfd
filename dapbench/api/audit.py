"""The on-policy audit, run by the PPO base on every update of every PPO-family algorithm (docs/audit.md).
Part of the algorithm API (`dapbench.api`).

From each sample's `origin` in the batch PPO is about to learn from (0 = fresh on-policy):
  OGLR = ||grad_theta L_PPO(samples with origin != 0)|| / ||grad_theta L_PPO||,
  SPR  = share of samples with origin != 0 in PPO's loss and GAE,
  L_PPO = (1/N) sum_i [-A_i r_i + c_v (V(s_i) - R_i)^2 / 2] (advantages normalised over the batch).
Both are 0 exactly when every sample is fresh, and grow with whatever else enters the batch.
"""

from __future__ import annotations

import torch


def grad_norm(gs) -> float:
    """||g|| over a list of gradients (None entries skipped)."""
    return float(torch.sqrt(sum((g**2).sum() for g in gs if g is not None)))


def ppo_loss_per_sample(agent, b, vf_coef: float) -> torch.Tensor:
    """-A_i r_i + c_v (V(s_i) - R_i)^2 / 2 per sample of `b`, advantages normalised over the batch."""
    logp, _ = agent.log_prob_entropy(b.obs, b.actions)
    adv = (b.advantages - b.advantages.mean()) / (b.advantages.std() + 1e-8)
    return -adv * (logp - b.logprobs).exp() + vf_coef * 0.5 * (agent.value(b.obs) - b.returns) ** 2


def on_policy_audit(agent, b, vf_coef: float) -> dict[str, float]:
    """OGLR and SPR of a PPO batch `b` (fields obs, actions, logprobs, advantages, returns, origin).

    When every sample is fresh, grad_theta L_PPO(non-fresh samples) is a gradient of a sum over no samples:
    OGLR is exactly 0 and no backward pass is needed; any non-fresh sample makes both passes run."""
    fresh = (b.origin == 0).float()
    spr = float(1 - fresh.mean())
    if spr == 0.0:
        return {"oglr": 0.0, "spr": 0.0}
    params = list(agent.parameters())
    per_sample = ppo_loss_per_sample(agent, b, vf_coef)
    n = len(b)
    g_all = torch.autograd.grad(per_sample.sum() / n, params, retain_graph=True)
    g_off = torch.autograd.grad((per_sample * (1 - fresh)).sum() / n, params, allow_unused=True)
    total = grad_norm(g_all)
    return {"oglr": grad_norm(g_off) / total if total > 0 else 0.0, "spr": spr}
