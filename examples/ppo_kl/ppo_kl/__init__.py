"""`ppo-kl`: PPO with an adaptive KL penalty instead of the clipped surrogate (Schulman et al. 2017, sec. 4).

An example dapbench plug-in (docs/plugins.md). It reads as its difference from `dapbench.api.PPO`:
  L_KLPEN = -E[r A] + beta E[KL(pi_old || pi)]                  the surrogate (hook `surrogate_loss`),
  d = E[KL(pi_old || pi)] over the rollout after the update,    then (hook `after_update`)
  beta <- beta / 2 if d < d_targ / 1.5;  beta <- 2 beta if d > 1.5 d_targ.
KL(pi_old || pi) is estimated per sample with k3 = (r - 1) - log r (non-negative, unbiased; r = pi / pi_old).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field

from dapbench.api import PPO, Batch, Context, Metric, PPOConfig, Spaces, override_field


class PPOKLConfig(PPOConfig):
    kl_target: float = Field(0.01, gt=0, description="d_targ: the KL per update the penalty steers to (Schulman "
                             "et al. 2017, sec. 4, one of their values)")
    kl_beta: float = Field(1.0, gt=0, description="beta at the start (Schulman et al. 2017: 1; adapted after "
                           "every update)")
    # inherited field, new meaning: only the value loss is clipped here
    clip_coef: float = override_field(PPOConfig, "clip_coef", description="value-loss clipping epsilon only; the "
                                      "policy is held by the KL penalty, not clipped (CleanRL's 0.2)")


def kl_k3(ratio: torch.Tensor) -> torch.Tensor:
    """Per-sample estimate of KL(pi_old || pi) from r = pi / pi_old: (r - 1) - log r."""
    return (ratio - 1) - torch.log(ratio)


class PPOKL(PPO):
    """PPO with an adaptive KL penalty (Schulman et al. 2017, sec. 4) instead of the clipped surrogate."""

    Config = PPOKLConfig
    metrics: ClassVar[dict[str, Metric]] = {
        "kl_beta": Metric("the KL penalty's coefficient beta used in the update", audit=False),
        "kl_after_update": Metric("E[KL(pi_old || pi)] over the rollout after the update (k3 estimate)",
                                  audit=False),
        "kl_penalty": Metric("beta E[KL(pi_old || pi)] per minibatch, averaged over the update", audit=False),
    }

    def __init__(self, config: PPOKLConfig, spaces: Spaces, context: Context) -> None:
        super().__init__(config, spaces, context)
        self.beta = config.kl_beta

    def surrogate_loss(self, ratio: torch.Tensor, adv: torch.Tensor, mb: Batch
                       ) -> tuple[torch.Tensor, dict[str, float]]:
        """L_KLPEN = -E[r A] + beta E[KL(pi_old || pi)], and the penalty as a statistic."""
        penalty = self.beta * kl_k3(ratio).mean()
        return -(ratio * adv).mean() + penalty, {"kl_penalty": penalty.item()}

    def after_update(self, batch: Batch, stats: dict[str, float]) -> dict[str, float]:
        """d = E[KL(pi_old || pi)] over the rollout, then beta halves or doubles when d is off target by 1.5x."""
        with torch.no_grad():
            logp, _ = self.agent.log_prob_entropy(batch.obs, batch.actions)
            d = float(kl_k3((logp - batch.logprobs).exp()).mean())
        used, target = self.beta, self.cfg.kl_target
        if d < target / 1.5:
            self.beta = used / 2
        elif d > target * 1.5:
            self.beta = used * 2
        return {"kl_beta": used, "kl_after_update": d}

    # beta is learning state: it goes into the checkpoint, so a resumed run is bit-identical
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "kl_beta": self.beta}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.beta = state["kl_beta"]
