"""PPO variants coupled to the shared diffusion prior other than PPO-DAP's way: PPO-DTR and PPO-DiffAug.

- `ppo-dtr`: PPO plus DTQL's diffusion trust-region loss toward the frozen offline prior, in place of
  PPO-DAP's imitation loss (../shared/papers/003_*: L_TR).
- `ppo-diffaug`: the earlier "PPO+Diffusion" design (../shared/papers/002_*): diffusion-generated virtual
  transitions, optionally value-filtered, merged into PPO's batch. It is NOT on-policy, on purpose: the
  audit (OGLR, SPR, computed by the same code as PPO-DAP's) must flag it.
"""

from __future__ import annotations

import math
import time
from dataclasses import fields
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, model_validator

from algorithms.ppo_dap import PPODAPConfig, q_targets
from algorithms.proposer import Proposer, frozen_prior, prior_work
from dapbench.api import PPO, Batch, Context, Metric, PPOConfig, Spaces
from dapbench.diffusion.edm import EDM
from dapbench.diffusion.prior import PriorConfig

SYNTHETIC = 2  # `Batch.origin` of a diffusion-generated (virtual) sample


def trust_region_loss(edm: EDM, a: torch.Tensor, s: torch.Tensor, generator: torch.Generator | None = None
                      ) -> torch.Tensor:
    """L_TR = E_{sigma, eps}[ w(sigma) ||D_phi(a + sigma eps; sigma, s) - a||^2 ], w = 1 / c_out^2 (DTQL eq. 4):
    the prior's own denoising loss evaluated at a = pi_theta(s), which carries the gradient (reparameterised);
    the denoiser D_phi only passes it on."""
    return edm.loss(a, s, generator)


# ===== PPO-DTR ===============================================================================================
class PPODTRConfig(PPOConfig):
    lambda_tr: float = Field(1e-2, ge=0, description="trust-region loss weight (ours: PPO-DAP's lambda_aux, so "
                             "the two couplings are compared at equal weight)")
    prior: PriorConfig = Field(PriorConfig(), description="the offline prior (shared with PPO-DAP)")


class PPODTR(PPO):
    """PPO whose coupling to the diffusion prior is DTQL's trust-region loss instead of an imitation loss.

    L = L_PPO + lambda_TR L_TR(mu_theta(s)), the prior p_psi(a|s) frozen (the cached offline prior of
    PPO-DAP), on every minibatch of fresh on-policy states; a_theta = mu_theta(s), the Gaussian actor's mean,
    reparameterised (a sampled a_theta = mu + sigma eps would also pull PPO's exploration std toward 0, as
    the loss is mode-seeking). PPO's surrogate, value loss and GAE are unchanged and see only fresh samples.
    """

    Config = PPODTRConfig
    needs_dataset = True
    needs_prior = True

    def __init__(self, config: PPODTRConfig, spaces: Spaces, context: Context) -> None:
        super().__init__(config, spaces, context)
        self.prior, self.prior_info = frozen_prior(self.cfg.prior, spaces, context, self.device)
        self.gen = torch.Generator(device=self.device).manual_seed(context.seed + 1)  # sigma and eps of L_TR

    def auxiliary_loss(self, mb: Batch, mean: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        a_theta = self.agent.actor_mean(mb.obs) if mean is None else mean
        tr = trust_region_loss(self.prior.edm, a_theta, self.prior.cond(mb.raw_obs), self.gen)
        return self.cfg.lambda_tr * tr, {"tr_loss": tr.item()}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "gen": self.gen.get_state()}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        super().load_state_dict(s)
        self.gen.set_state(s["gen"])


# ===== PPO-DiffAug ===========================================================================================
class PPODiffAugConfig(PPODAPConfig):
    virtual_frac: float = Field(0.25, gt=0, description="virtual transitions per update, as a share of the rollout "
                                "(ours; the earlier paper: 10 virtual trajectories per update cycle)")
    value_filter: bool = Field(True, description="keep the best of K prior samples by Q (value guidance as "
                               "post-hoc filtering, the earlier paper's 'VG on')")
    guidance: str = Field("none", description="in-denoising guidance off: the earlier design filters after sampling")
    lambda_aux: float = Field(0.0, ge=0, description="no auxiliary imitation loss (virtual data go into PPO's batch)")
    lambda_kl: float = Field(0.0, ge=0, description="no soft KL to the prior")

    @model_validator(mode="after")
    def _no_auxiliary_loss(self) -> PPODiffAugConfig:
        if self.lambda_aux or self.lambda_kl or self.proposal_frac != 1.0:
            raise ValueError("ppo-diffaug has no auxiliary loss: lambda_aux and lambda_kl must be 0 and "
                             "proposal_frac 1")
        if self.guidance not in ("none", "gradient"):
            raise ValueError("ppo-diffaug: guidance is 'none' or 'gradient' (value filtering is `value_filter`)")
        return self


class PPODiffAug(PPO):
    """The earlier "PPO+Diffusion": virtual transitions from the diffusion prior mixed into PPO's batch.

    Per rollout (after GAE over the fresh samples): fit the proposer's Q head on the rollout; pick
    n_v = virtual_frac N of the rollout's states (uniformly, without replacement); for each, draw K actions
    from the prior and keep the one with the largest Q (value_filter) or the first. A virtual transition
    (s, a_v) enters PPO's batch with origin SYNTHETIC, old log-prob log pi_theta_old(a_v|s) (its ratio starts
    at 1), value target R_v = Q(s, a_v) and advantage A_v = Q(s, a_v) - V(s) (the one-step estimate the
    earlier design implies: virtual data have no continuation to run GAE on). The surrogate and value loss
    then treat them like fresh samples. The prior is adapted with PET every `pet_every` epochs as in PPO-DAP
    (the earlier design's "PET online"), on the real on-policy pairs. No auxiliary loss.
    Reading of the earlier paper (002, Table I: "num virtual trajectories 10 per update cycle"): our prior
    models a|s only (no dynamics), so virtual data are (s, a) pairs at real states rather than trajectories.
    """

    Config = PPODiffAugConfig
    needs_dataset = True
    needs_prior = True
    metrics: ClassVar[dict[str, Metric]] = {
        "q_spread": Metric("std of Q over a state's K proposals, mean over states (normalised-reward units)",
                           audit=False),
        "prior_kl_drift": Metric("KL between the prior before and after a PET round, on fixed probe states"),
    }

    @classmethod
    def shared_work(cls, config: PPODiffAugConfig, task: str, dataset: str | None) -> str | None:
        """The offline prior, trained once per (task, dataset, prior config) and cached."""
        return prior_work(config.prior, task, dataset)

    def __init__(self, config: PPODiffAugConfig, spaces: Spaces, context: Context) -> None:
        super().__init__(config, spaces, context)
        self.proposer = Proposer(self.cfg, spaces, context, self.device)

    def process_batch(self, batch: Batch) -> Batch:
        c, n, P = self.cfg, len(batch), self.proposer
        P.record(self.buffer.raw_obs, self.buffer.actions, self.spaces.act_low, self.spaces.act_high)
        t0 = time.perf_counter()
        self._q_loss = P.fit_q(batch.obs, batch.actions, q_targets(self, batch, c.q_target), self.rng,
                               c.num_minibatches)
        t1 = time.perf_counter()
        n_v = max(1, int(c.virtual_frac * n))
        idx = torch.as_tensor(np.sort(self.rng.choice(n, n_v, replace=False)), device=self.device)
        obs, raw = batch.obs[idx], batch.raw_obs[idx]
        props, q, _ = P.propose(obs, raw)  # (n_v, K, act), (n_v, K)
        best = q.argmax(1) if c.value_filter else torch.zeros(n_v, dtype=torch.long, device=self.device)
        a_v = props[torch.arange(n_v, device=self.device), best]
        q_v = q[torch.arange(n_v, device=self.device), best]
        with torch.no_grad():
            logp, _ = self.agent.log_prob_entropy(obs, a_v)
            v = self.agent.value(obs)
        self._times = {"time_q_fit_s": t1 - t0, "time_proposals_s": time.perf_counter() - t1}
        self._q_spread = float(q.std(1).mean())
        never_acted = torch.full((n_v,), math.nan, dtype=torch.float64, device=self.device)
        virtual = Batch(obs=obs, actions=a_v, logprobs=logp, values=v, advantages=q_v - v, returns=q_v,
                        origin=torch.full((n_v,), SYNTHETIC, dtype=torch.uint8, device=self.device), raw_obs=raw,
                        behaviour_logprobs=never_acted)
        return Batch(**{f.name: torch.cat([getattr(batch, f.name), getattr(virtual, f.name)]) for f in fields(Batch)})

    def diagnostics(self, b: Batch) -> dict[str, float]:
        t0 = time.perf_counter()
        audit = super().diagnostics(b)
        return {**audit, "q_spread": self._q_spread, "q_loss": self._q_loss, **self._times,
                "time_audit_s": time.perf_counter() - t0}

    def train_epoch(self, env, n_steps: int) -> dict[str, float]:
        stats = super().train_epoch(env, n_steps)
        return {**stats, **self.proposer.end_epoch()}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **self.proposer.state_dict()}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        super().load_state_dict(s)
        self.proposer.load_state_dict(s)
