"""PPO-DAP: PPO with a Diffusion Action Prior (arXiv 2409.01427), as the paper describes it.

Two stages, strictly on-policy:
1. Offline, a conditional diffusion model p_psi(a|s) (EDM) is trained on the task's logged (s, a) pairs
   with the denoising loss, once per (task, dataset, prior config) and cached (dapbench.diffusion.prior).
2. Online, PPO's surrogate, value loss and GAE use only fresh rollouts (`origin` 0). For each on-policy
   state s of a rollout, the prior draws K proposals; inside the denoising loop each denoised estimate
   is nudged along grad_a Q(s, a) with a step growing to alpha_max; the proposals are weighted by
   w_i = softmax_i(beta Q(s, a_i)), beta annealed 0 -> beta_max over the first 30% of training; m =
   ceil(0.2 K) of them are drawn from w. They reach the actor only through
       L_aux = lambda_aux E_s[ -1/m sum_j log pi_theta(a_sel_j | s) ]
             + lambda_KL E_s[ KL(N(mu_K(s), sigma_K(s)^2) || pi_theta(.|s)) ],
   the second a soft KL from the Gaussian moment-matched to the K proposals (the diffusion prior has no
   closed-form density; this reading is ours). It is taken in the imitation loss's direction
   (E_prior[-log pi] + const): the other direction, KL(pi || N_K), explodes when the proposals collapse
   onto an action bound (sigma_K -> 0), which logged, clipped actions make common; we measured it
   wreck the policy in its first epoch on Hopper. Every f epochs the prior is adapted (PET) with LoRA
   through `peft` on the on-policy (s, a) pairs of those epochs with its denoising loss: only the adapter
   parameters are in that optimiser, the base weights stay bit-identical.
A Q(s, a) head (PPO has only V) is fitted on each rollout with the one-step target
y = r + gamma V(s') (1 - d) (normalised rewards, V from the rollout).

Audit metrics, per update on the whole batch, from each sample's `origin` (docs/audit.md):
OGLR = ||grad_theta L_PPO(non-fresh samples)|| / ||grad_theta L_PPO||, SPR = share of non-fresh samples
in the PPO loss and GAE, ESS/K = mean_s (sum w)^2 / (K sum w^2), aux_grad_share = ||g_aux|| / (||g_PPO||
+ ||g_aux||) on the actor, and prior_kl_drift between PET rounds on fixed probe states.
The Q head, the proposals and PET are the family's `Proposer` (algorithms/proposer.py); OGLR, SPR and the
behaviour log-prob gap come from the PPO base's audit (dapbench/api/audit.py).
The deliberately leaking configuration the audit must catch (offline transitions mixed into PPO's batch, origin
`OFFLINE`) is not part of the method: it is the test plug-in `ppo-dap-leak` (tests/plugins/dapbench_test_faults.py).

Defaults are the authors' code's (K, alpha_max, beta schedule, f, PET lr, LoRA rank, lambdas, m), which is
otherwise not a reference (docs/algorithms.md); the rest are ours and documented there.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from algorithms.proposer import Proposer, ProposerConfig, gaussian_kl, prior_work
from dapbench.api import (
    HALF_LOG_2PI,
    PPO,
    Batch,
    Context,
    Metric,
    PPOConfig,
    Spaces,
    grad_norm,
    late_field,
    ppo_loss_per_sample,
)

OFFLINE = 1  # `Batch.origin` of a logged (offline) sample


class PPODAPConfig(PPOConfig, ProposerConfig):
    beta_max: float = Field(1.0, ge=0, description="final energy temperature beta (authors' code)")
    energy_scale: Literal["pooled", "raw"] = late_field(
        "pooled", legacy="raw", since="0.3", description="Q's units inside softmax(beta Q): 'pooled' standardises "
        "each state's Q - mean_K Q by their root-mean-square over the rollout (as AWR standardises advantages), "
        "so beta means the same on every task; 'raw' is the paper's literal softmax(beta Q) in normalised-reward "
        "units (ours, docs/algorithms.md)")
    energy_clip: float = late_field(3.0, legacy=3.0, since="0.3", gt=0, description="'pooled' only: standardised "
                                    "Q clipped to +-energy_clip before the exponential (AWR clips its weights)")
    beta_anneal_frac: float = Field(0.3, gt=0, le=1, description="beta rises 0 -> beta_max over this share of "
                                    "training (authors' code)")
    m_frac: float = Field(0.2, gt=0, le=1, description="m = ceil(m_frac K) proposals selected per state "
                          "(authors' code)")
    lambda_aux: float = Field(1e-2, ge=0, description="auxiliary imitation loss weight (authors' code)")
    lambda_kl: float = Field(5e-3, ge=0, description="soft KL-to-prior weight, 0 = off (authors' code)")
    proposal_frac: float = Field(1.0, gt=0, le=1, description="share of each rollout's states that get proposals "
                                 "and the auxiliary loss (1 = all, as the paper; < 1 trades signal for speed)")
    RETIRED: ClassVar[dict[str, Any]] = {"leak_offline": 0.0}  # the leak check is a test plug-in now (ppo-dap-leak)


@dataclass
class DAPBatch(Batch):
    proposals: torch.Tensor  # (n, m, act_dim) selected proposals, detached
    prior_mu: torch.Tensor  # (n, act_dim) mean of the K proposals
    prior_std: torch.Tensor  # (n, act_dim) their std
    has_prop: torch.Tensor | None = None  # (n,) 1 where the state has proposals; None = every state


def energy_weights(q: torch.Tensor, beta: float, scale: str = "pooled", clip: float = 3.0) -> torch.Tensor:
    """w_i = softmax_i(beta z_i) over the K proposals of each state; q is (n, K).

    scale "raw": z = Q. scale "pooled": z_i = clip((Q_i - mean_j Q_j) / s, +-clip), s^2 the mean of (Q_i - mean_j
    Q_j)^2 over every state and proposal of the batch: invariant to Q's units, so ESS/K at a given beta is the same
    whatever the task's reward scale (for Gaussian z, ESS/K ~ exp(-beta^2): 0.37 at beta 1)."""
    if scale == "raw":
        return torch.softmax(beta * q, dim=1)
    z = q - q.mean(1, keepdim=True)
    z = (z / z.pow(2).mean().sqrt().clamp_min(1e-12)).clamp(-clip, clip)
    return torch.softmax(beta * z, dim=1)


def ess_over_k(w: torch.Tensor) -> float:
    """Effective sample size per proposal, mean over states: (sum w)^2 / (K sum w^2); 1 = uniform, 1/K = collapse."""
    return float(((w.sum(1) ** 2) / (w**2).sum(1) / w.shape[1]).mean())


def scatter_rows(x: torch.Tensor, idx: torch.Tensor, n: int, fill: float) -> torch.Tensor:
    """An (n, ...) tensor holding x's rows at idx and `fill` elsewhere."""
    return torch.full((n, *x.shape[1:]), fill, dtype=x.dtype, device=x.device).index_copy(0, idx, x)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """sum(x * mask) / sum(mask), the plain mean when mask is None."""
    return x.mean() if mask is None else (x * mask).sum() / mask.sum().clamp_min(1.0)


def q_targets(algo: PPO, batch: Batch, target: str = "td0") -> torch.Tensor:
    """"td0": y_t = r_t + gamma V(s_{t+1}) (1 - d_t) over the rollout (truncations already bootstrapped);
    "lambda": y_t = the GAE lambda-return A_t + V(s_t)."""
    if target == "lambda":
        return batch.returns[: len(algo.buffer.rewards)]
    c, buf = algo.cfg, algo.buffer
    with torch.no_grad():
        next_v = torch.cat([batch.values[1:], algo.next_value()])
        dones = torch.as_tensor(buf.dones, device=algo.device)
        return algo.bootstrapped_rewards() + c.gamma * next_v * (1 - dones)


class PPODAP(PPO):
    """PPO with a Diffusion Action Prior: guided prior proposals reach the actor only through an auxiliary loss."""

    Config = PPODAPConfig
    needs_dataset = True
    needs_prior = True
    metrics: ClassVar[dict[str, Metric]] = {
        "ess_k": Metric("effective sample size of the K energy weights over K, mean over states (1 = uniform)",
                        gate="drift"),
        "aux_grad_share": Metric("||g_aux|| / (||g_PPO|| + ||g_aux||) on the actor, full batch: the share of the "
                                 "actor's gradient that comes from the prior", gate="drift"),
        "prior_kl_drift": Metric("KL between the prior before and after a PET round, on fixed probe states"),
        "q_spread": Metric("std of Q over a state's K proposals, mean over states (normalised-reward units)",
                           audit=False),
        "q_rank_corr": Metric("Spearman correlation of two independently fitted Q heads over a state's K proposals, "
                              "mean over states (q_heads >= 2; 0 = Q cannot rank proposals)", audit=False),
        "bound_share": Metric("share of proposals with a coordinate on the action bound", audit=False),
        "bound_share_unguided": Metric("the same for the probe states' proposals denoised without guidance from "
                                       "the same noise", audit=False),
        "guided_dist": Metric("mean ||a_guided - a_unguided|| from the same noise, probe states", audit=False),
        "q_gain": Metric("mean Q(a_guided) - Q(a_unguided) from the same noise, probe states", audit=False),
        "pet_loss_before": Metric("denoising loss on a PET round's pairs before the round (fixed sigma, noise)",
                                  audit=False),
        "pet_loss_after": Metric("the same after the round", audit=False),
        "prior_kl_orig": Metric("KL between the adapted prior and the original offline prior, probe states",
                                audit=False),
    }

    @classmethod
    def shared_work(cls, config: PPODAPConfig, task: str, dataset: str | None) -> str | None:
        """The offline prior, trained once per (task, dataset, prior config) and cached."""
        return prior_work(config.prior, task, dataset)

    def __init__(self, config: PPODAPConfig, spaces: Spaces, context: Context) -> None:
        super().__init__(config, spaces, context)
        c = self.cfg
        self.proposer = Proposer(c, spaces, context, self.device)
        self.m = math.ceil(c.m_frac * c.K)

    @property
    def prior(self):
        return self.proposer.prior

    @property
    def beta(self) -> float:
        progress = self.iteration / self.num_iterations
        return self.cfg.beta_max * min(1.0, progress / self.cfg.beta_anneal_frac)

    # ----- Q head and proposals -------------------------------------------------------------------------
    def process_batch(self, batch: Batch) -> Batch:
        c, n, P = self.cfg, len(batch), self.proposer
        P.record(self.buffer.raw_obs, self.buffer.actions, self.spaces.act_low, self.spaces.act_high)
        t0 = time.perf_counter()
        self._q_loss = P.fit_q(batch.obs, batch.actions, q_targets(self, batch, c.q_target), self.rng,
                               c.num_minibatches)
        t1 = time.perf_counter()
        sub = None if c.proposal_frac >= 1 else torch.as_tensor(
            np.sort(self.rng.choice(n, math.ceil(c.proposal_frac * n), replace=False)), device=self.device)
        props, q, self._guidance = P.propose(batch.obs, batch.raw_obs) if sub is None else P.propose(
            batch.obs[sub], batch.raw_obs[sub])
        self._times = {"time_q_fit_s": t1 - t0, "time_proposals_s": time.perf_counter() - t1}
        energy = c.guidance in ("both", "energy")
        w = energy_weights(q, self.beta, c.energy_scale, c.energy_clip) if energy else torch.full_like(q, 1.0 / c.K)
        self._ess, self._q_spread = ess_over_k(w), float(q.std(1).mean())
        idx = torch.multinomial(w, self.m, replacement=True, generator=P.gen)  # (n, m)
        selected = torch.gather(props, 1, idx[..., None].expand(-1, -1, props.shape[-1]))
        mu, std = props.mean(1), props.std(1).clamp_min(1e-3)
        if sub is None:
            out = DAPBatch(**vars(batch), proposals=selected, prior_mu=mu, prior_std=std)
        else:  # states without proposals carry zeros and are masked out of the auxiliary loss
            out = DAPBatch(**vars(batch), proposals=scatter_rows(selected, sub, n, 0.0),
                           prior_mu=scatter_rows(mu, sub, n, 0.0), prior_std=scatter_rows(std, sub, n, 1.0),
                           has_prop=scatter_rows(torch.ones(len(sub), device=self.device), sub, n, 0.0))
        return out

    # ----- the actor's auxiliary loss -------------------------------------------------------------------
    def auxiliary_loss(self, mb: DAPBatch, mean: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """lambda_aux E_s[-1/m sum_j log pi(a_sel_j | s)] + lambda_KL E_s[KL(N_K(s) || pi(.|s))], from the
        minibatch's one actor pass `mean` = mu_theta(s) (computed here when not given)."""
        c = self.cfg
        mean = self.agent.actor_mean(mb.obs) if mean is None else mean
        logstd = self.agent.actor_logstd
        z = (mb.proposals - mean[:, None]) * torch.exp(-logstd)  # (n, m, act)
        logp = (-0.5 * z * z - logstd - HALF_LOG_2PI).sum(-1)  # log pi(a_sel_j | s), (n, m)
        # -1/m sum_j log pi(a_sel_j | s), averaged over the states that have proposals
        imitation = masked_mean(-logp.mean(1), mb.has_prop)
        loss = c.lambda_aux * imitation
        stats = {"aux_nll": imitation.item()}
        if c.lambda_kl > 0:
            std = logstd.exp().expand_as(mean)
            kl = masked_mean(gaussian_kl(mb.prior_mu, mb.prior_std, mean, std), mb.has_prop)
            loss = loss + c.lambda_kl * kl
            stats["prior_kl"] = kl.item()
        return loss, stats

    # ----- audit -------------------------------------------------------------------------------------
    def diagnostics(self, b: DAPBatch) -> dict[str, float]:
        """The PPO audit, plus the auxiliary gradient share, on the whole batch before the update."""
        t0 = time.perf_counter()
        audit = super().diagnostics(b)
        actor = [*self.agent.actor_mean.parameters(), self.agent.actor_logstd]
        g_ppo_actor = torch.autograd.grad(ppo_loss_per_sample(self.agent, b, self.cfg.vf_coef).sum() / len(b), actor)
        aux, _ = self.auxiliary_loss(b)
        aux_n = grad_norm(torch.autograd.grad(aux, actor, allow_unused=True))
        return {
            **audit,
            **self._guidance,
            "ess_k": self._ess,
            "q_spread": self._q_spread,
            "aux_grad_share": aux_n / (grad_norm(g_ppo_actor) + aux_n),
            "q_loss": self._q_loss,
            "beta": self.beta,
            **self._times,
            "time_audit_s": time.perf_counter() - t0,
        }

    # ----- PET ---------------------------------------------------------------------------------------
    def train_epoch(self, env, n_steps: int) -> dict[str, float]:
        stats = super().train_epoch(env, n_steps)
        return {**stats, **self.proposer.end_epoch()}

    # ----- checkpointing ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **self.proposer.state_dict()}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        super().load_state_dict(s)
        self.proposer.load_state_dict(s)


__all__ = ["PPODAP", "PPODAPConfig"]
