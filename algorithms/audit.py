"""The on-policy audit, run by the PPO base on every update of every PPO-family algorithm (docs/audit.md).

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


def on_policy_audit(agent, b, vf_coef: float) -> tuple[dict[str, float], tuple[torch.Tensor, ...]]:
    """OGLR and SPR of a PPO batch `b` (fields obs, actions, logprobs, advantages, returns, origin), and
    grad_theta L_PPO over all of `agent`'s parameters."""
    params = list(agent.parameters())
    logp, _ = agent.log_prob_entropy(b.obs, b.actions)
    adv = (b.advantages - b.advantages.mean()) / (b.advantages.std() + 1e-8)
    per_sample = -adv * (logp - b.logprobs).exp() + vf_coef * 0.5 * (agent.value(b.obs) - b.returns) ** 2
    fresh = (b.origin == 0).float()
    n = len(b)
    g_all = torch.autograd.grad(per_sample.sum() / n, params, retain_graph=True)
    g_off = torch.autograd.grad((per_sample * (1 - fresh)).sum() / n, params, allow_unused=True)
    total = grad_norm(g_all)
    return {"oglr": grad_norm(g_off) / total if total > 0 else 0.0, "spr": float(1 - fresh.mean())}, g_all
