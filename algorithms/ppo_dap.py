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
`leak_offline > 0` is the deliberately leaking configuration the audit must catch: offline transitions
mixed into PPO's batch (origin 1) with one-step TD advantages. Never use it for results.

Defaults are the authors' code's (K, alpha_max, beta schedule, f, PET lr, LoRA rank, lambdas, m), which is
otherwise not a reference (docs/algorithms.md); the rest are ours and documented there.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from algorithms.ppo import PPO, Batch, PPOConfig, layer_init
from dapbench.algorithm import Context, Spaces
from dapbench.diffusion.prior import ActionPrior, PriorConfig, load_or_train
from dapbench.diffusion.sampler import SamplerConfig, sample
from dapbench.registry import register

OFFLINE = 1  # `Batch.origin` of a logged (offline) sample


class PPODAPConfig(PPOConfig):
    K: int = Field(10, gt=0, description="proposals per on-policy state (authors' code)")
    alpha_max: float = Field(0.30, ge=0, description="largest gradient-guidance step, action units (authors' code)")
    beta_max: float = Field(1.0, ge=0, description="final energy temperature beta (authors' code)")
    beta_anneal_frac: float = Field(0.3, gt=0, le=1, description="beta rises 0 -> beta_max over this share of "
                                    "training (authors' code)")
    m_frac: float = Field(0.2, gt=0, le=1, description="m = ceil(m_frac K) proposals selected per state "
                          "(authors' code)")
    lambda_aux: float = Field(1e-2, ge=0, description="auxiliary imitation loss weight (authors' code)")
    lambda_kl: float = Field(5e-3, ge=0, description="soft KL-to-prior weight, 0 = off (authors' code)")
    guidance: Literal["both", "energy", "gradient", "none"] = Field(
        "both", description="energy reweighting and/or in-denoising gradient guidance")
    pet: Literal["lora", "full", "frozen"] = Field("lora", description="prior adaptation: LoRA (PET), full "
                                                   "fine-tuning, or none")
    pet_every: int = Field(10, gt=0, description="f: epochs between PET rounds (authors' code)")
    pet_lr: float = Field(1e-5, gt=0, description="PET step size (authors' code)")
    pet_steps: int = Field(100, gt=0, description="gradient steps per PET round (ours)")
    pet_batch: int = Field(256, gt=0, description="PET minibatch (ours)")
    lora_rank: int = Field(8, gt=0, description="LoRA rank (authors' code)")
    lora_alpha: int = Field(16, gt=0, description="LoRA alpha (peft's usual 2 x rank)")
    q_hidden: tuple[int, ...] = Field((64, 64), description="Q head widths, tanh (ours: as the critic)")
    q_lr: float = Field(3e-4, gt=0, description="Q head step size (ours)")
    q_epochs: int = Field(2, gt=0, description="passes over each rollout to fit Q (ours)")
    probe_states: int = Field(128, gt=0, description="fixed states for the prior KL drift estimate (ours)")
    proposal_chunk: int = Field(512, gt=0, description="states per proposal batch: bounds peak memory, same "
                                "work (ours)")
    proposal_frac: float = Field(1.0, gt=0, le=1, description="share of each rollout's states that get proposals "
                                 "and the auxiliary loss (1 = all, as the paper; < 1 trades signal for speed)")
    prior: PriorConfig = Field(PriorConfig(), description="the offline prior (DTQL's network and EDM)")
    sampler: SamplerConfig = Field(SamplerConfig(), description="few-step sampler")
    leak_offline: float = Field(0.0, ge=0, description="AUDIT CHECK ONLY: offline samples mixed into PPO's "
                                "batch, as a share of the rollout; breaks the on-policy guarantee")


@dataclass
class DAPBatch(Batch):
    proposals: torch.Tensor  # (n, m, act_dim) selected proposals, detached
    prior_mu: torch.Tensor  # (n, act_dim) mean of the K proposals
    prior_std: torch.Tensor  # (n, act_dim) their std
    has_prop: torch.Tensor | None = None  # (n,) 1 where the state has proposals; None = every state


class QHead(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        sizes = [obs_dim + act_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(sizes):
            layers += [layer_init(nn.Linear(a, b)), nn.Tanh()]
        self.net = nn.Sequential(*layers, layer_init(nn.Linear(sizes[-1], 1), std=1.0))

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, act], -1)).squeeze(-1)


def grad_norm(gs) -> float:
    """||g|| over a list of gradients (None entries skipped)."""
    return float(torch.sqrt(sum((g**2).sum() for g in gs if g is not None)))


def on_policy_audit(agent, b: Batch, vf_coef: float) -> tuple[dict[str, float], tuple[torch.Tensor, ...]]:
    """OGLR and SPR of a PPO batch from each sample's `origin` (docs/audit.md), and grad_theta L_PPO.

    L_PPO = (1/N) sum_i [-A_i r_i + c_v (V(s_i) - R_i)^2 / 2] (advantages normalised over the batch);
    OGLR = ||grad of the terms with origin != 0|| / ||grad L_PPO||; SPR = share of samples with origin != 0."""
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


def energy_weights(q: torch.Tensor, beta: float) -> torch.Tensor:
    """w_i = exp(beta Q_i) / sum_j exp(beta Q_j) over the K proposals of each state; q is (n, K)."""
    return torch.softmax(beta * q, dim=1)


def ess_over_k(w: torch.Tensor) -> float:
    """Effective sample size per proposal, mean over states: (sum w)^2 / (K sum w^2); 1 = uniform, 1/K = collapse."""
    return float(((w.sum(1) ** 2) / (w**2).sum(1) / w.shape[1]).mean())


def gaussian_kl(mu1, std1, mu2, std2) -> torch.Tensor:
    """KL(N(mu1, std1^2) || N(mu2, std2^2)) for diagonal Gaussians, summed over the last dim."""
    return (torch.log(std2 / std1) + (std1**2 + (mu1 - mu2) ** 2) / (2 * std2**2) - 0.5).sum(-1)


def scatter_rows(x: torch.Tensor, idx: torch.Tensor, n: int, fill: float) -> torch.Tensor:
    """An (n, ...) tensor holding x's rows at idx and `fill` elsewhere."""
    return torch.full((n, *x.shape[1:]), fill, dtype=x.dtype, device=x.device).index_copy(0, idx, x)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """sum(x * mask) / sum(mask), the plain mean when mask is None."""
    return x.mean() if mask is None else (x * mask).sum() / mask.sum().clamp_min(1.0)


@register("ppo-dap")
class PPODAP(PPO):
    """PPO with a Diffusion Action Prior: guided prior proposals reach the actor only through an auxiliary loss."""

    Config = PPODAPConfig
    needs_dataset = True
    needs_prior = True

    @classmethod
    def shared_work(cls, config: PPODAPConfig, task: str, dataset: str | None) -> str | None:
        """The offline prior, trained once per (task, dataset, prior config) and cached."""
        from dapbench.diffusion.prior import is_cached

        if dataset is None or is_cached(task, dataset, config.prior):
            return None
        return f"prior {task} {dataset} {config.prior.model_dump_json()}"

    def __init__(self, config: PPODAPConfig, spaces: Spaces, context: Context) -> None:
        super().__init__(config, spaces, context)
        c = self.cfg
        from dapbench.data.load import load_transitions, observations_at

        self.max_action = float(np.max(np.abs(spaces.act_high)))
        self.prior, self.prior_info = load_or_train(context.task or "task", context.dataset, self.max_action,
                                                     c.prior)  # loads the logged data only if it must train
        if c.pet == "lora":
            from peft import LoraConfig, get_peft_model  # slow import: only here

            net = self.prior.edm.net
            self.peft_model = get_peft_model(net, LoraConfig(r=c.lora_rank, lora_alpha=c.lora_alpha,
                                                             target_modules=net.lora_targets, lora_dropout=0.0))
        self.prior.to(self.device)
        for name, p in self.prior.named_parameters():
            p.requires_grad_(c.pet == "full" or (c.pet == "lora" and "lora_" in name))
        trainable = [p for p in self.prior.parameters() if p.requires_grad]
        self.pet_optimizer = torch.optim.Adam(trainable, lr=c.pet_lr) if trainable else None
        self.q = QHead(spaces.obs_dim, spaces.act_dim, c.q_hidden).to(self.device)
        self.q_optimizer = torch.optim.Adam(self.q.parameters(), lr=c.q_lr, eps=1e-5)
        self.gen = torch.Generator(device=self.device).manual_seed(context.seed + 1)  # proposals, PET noise
        self.m = math.ceil(c.m_frac * c.K)
        self.offline = load_transitions(context.dataset).to(self.device) if c.leak_offline > 0 else None
        self.probe = observations_at(context.dataset, c.probe_states).to(self.device)
        self.epochs_done = 0
        self.pet_obs: list[np.ndarray] = []  # on-policy (s, a) since the last PET round
        self.pet_act: list[np.ndarray] = []

    # ----- the critic's Q head ---------------------------------------------------------------------------
    def compute_batch(self) -> Batch:
        batch = super().compute_batch()
        buf, c = self.buffer, self.cfg
        with torch.no_grad():  # y_t = r_t + gamma V(s_{t+1}) (1 - d_t); truncations already bootstrapped
            next_v = torch.cat([batch.values[1:], self.agent.value(torch.as_tensor(self.next_obs[None]))])
            rewards = torch.as_tensor(buf.rewards, device=self.device)
            if buf.truncated.any():
                trunc = torch.as_tensor(np.flatnonzero(buf.truncated), device=self.device)
                tv = self.agent.value(torch.as_tensor(buf.truncated_obs, device=self.device)[trunc])
                rewards = rewards.index_add(0, trunc, c.gamma * tv)
            self._q_target = rewards + c.gamma * next_v * (1 - torch.as_tensor(buf.dones, device=self.device))
        self.pet_obs.append(buf.raw_obs.copy())
        self.pet_act.append(np.clip(buf.actions, self.spaces.act_low, self.spaces.act_high))
        return batch

    def fit_q(self, batch: Batch) -> float:
        n, mb = len(self._q_target), max(1, len(self._q_target) // self.cfg.num_minibatches)
        actions = batch.actions[:n].clamp(-self.max_action, self.max_action)
        losses = []
        for _ in range(self.cfg.q_epochs):
            perm = torch.as_tensor(self.rng.permutation(n), device=self.device)
            for i in range(0, n, mb):
                idx = perm[i:i + mb]
                loss = 0.5 * ((self.q(batch.obs[idx], actions[idx]) - self._q_target[idx]) ** 2).mean()
                self.q_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.q_optimizer.step()
                losses.append(loss.item())
        return float(np.mean(losses))

    # ----- proposals ---------------------------------------------------------------------------------
    @property
    def beta(self) -> float:
        progress = self.iteration / self.num_iterations
        return self.cfg.beta_max * min(1.0, progress / self.cfg.beta_anneal_frac)

    def propose(self, obs_n: torch.Tensor, raw_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """K guided proposals per state (n, K, act) and their Q values (n, K), `proposal_chunk` states at a
        time (the same work; the peak memory of one chunk's denoiser activations instead of the rollout's)."""
        c, K = self.cfg, self.cfg.K
        guided = c.guidance in ("both", "gradient")
        actions = []
        for i in range(0, obs_n.shape[0], c.proposal_chunk):
            obs_rep = obs_n[i:i + c.proposal_chunk].repeat_interleave(K, 0)

            def grad_q(_s: torch.Tensor, a: torch.Tensor, obs_rep=obs_rep) -> torch.Tensor:
                with torch.enable_grad():
                    a = a.detach().requires_grad_(True)
                    return torch.autograd.grad(self.q(obs_rep, a).sum(), a)[0]

            cond = self.prior.cond(raw_obs[i:i + c.proposal_chunk].repeat_interleave(K, 0))
            actions.append(sample(self.prior.edm, cond, c.sampler, self.gen, grad_q=grad_q if guided else None,
                                  alpha_max=c.alpha_max))
        actions = torch.cat(actions)
        with torch.no_grad():
            q = self.q(obs_n.repeat_interleave(K, 0), actions).view(-1, K)
        return actions.view(-1, K, actions.shape[-1]), q

    def process_batch(self, batch: Batch) -> Batch:
        c, n = self.cfg, len(batch)
        t0 = time.perf_counter()
        self._q_loss = self.fit_q(batch)
        t1 = time.perf_counter()
        sub = None if c.proposal_frac >= 1 else torch.as_tensor(
            np.sort(self.rng.choice(n, math.ceil(c.proposal_frac * n), replace=False)), device=self.device)
        props, q = self.propose(batch.obs, batch.raw_obs) if sub is None else self.propose(batch.obs[sub],
                                                                                          batch.raw_obs[sub])
        self._times = {"time_q_fit_s": t1 - t0, "time_proposals_s": time.perf_counter() - t1}
        energy = c.guidance in ("both", "energy")
        w = energy_weights(q, self.beta) if energy else torch.full_like(q, 1.0 / c.K)
        self._ess, self._q_spread = ess_over_k(w), float(q.std(1).mean())
        idx = torch.multinomial(w, self.m, replacement=True, generator=self.gen)  # (n, m)
        selected = torch.gather(props, 1, idx[..., None].expand(-1, -1, props.shape[-1]))
        mu, std = props.mean(1), props.std(1).clamp_min(1e-3)
        if sub is None:
            out = DAPBatch(**vars(batch), proposals=selected, prior_mu=mu, prior_std=std)
        else:  # states without proposals carry zeros and are masked out of the auxiliary loss
            out = DAPBatch(**vars(batch), proposals=scatter_rows(selected, sub, n, 0.0),
                           prior_mu=scatter_rows(mu, sub, n, 0.0), prior_std=scatter_rows(std, sub, n, 1.0),
                           has_prop=scatter_rows(torch.ones(len(sub), device=self.device), sub, n, 0.0))
        return self._leak(out) if c.leak_offline > 0 else out

    def _leak(self, b: DAPBatch) -> DAPBatch:
        """AUDIT CHECK ONLY: append offline transitions (origin 1) to PPO's batch, one-step TD advantages."""
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
            props, _ = self.propose(obs, off.obs[i])
        extra = DAPBatch(obs=obs, actions=off.actions[i], logprobs=logp, values=v, advantages=adv, returns=adv + v,
                         origin=torch.full((k,), OFFLINE, dtype=torch.uint8, device=self.device),
                         raw_obs=off.obs[i], proposals=props[:, : self.m], prior_mu=props.mean(1),
                         prior_std=props.std(1).clamp_min(1e-3),
                         has_prop=None if b.has_prop is None else torch.ones(k, device=self.device))
        return DAPBatch(**{f: None if getattr(b, f) is None else torch.cat([getattr(b, f), getattr(extra, f)])
                           for f in vars(b)})

    # ----- the actor's auxiliary loss -------------------------------------------------------------------
    def auxiliary_loss(self, mb: DAPBatch) -> tuple[torch.Tensor, dict[str, float]]:
        c, m = self.cfg, self.m
        obs_rep = mb.obs.repeat_interleave(m, 0)
        logp, _ = self.agent.log_prob_entropy(obs_rep, mb.proposals.reshape(-1, mb.proposals.shape[-1]))
        # -1/m sum_j log pi(a_sel_j | s), averaged over the states that have proposals
        imitation = -logp.mean() if mb.has_prop is None else masked_mean(-logp.view(-1, m).mean(1), mb.has_prop)
        loss = c.lambda_aux * imitation
        stats = {"aux_nll": imitation.item()}
        if c.lambda_kl > 0:
            mean = self.agent.actor_mean(mb.obs)
            std = self.agent.actor_logstd.exp().expand_as(mean)
            kl = masked_mean(gaussian_kl(mb.prior_mu, mb.prior_std, mean, std), mb.has_prop)
            loss = loss + c.lambda_kl * kl
            stats["prior_kl"] = kl.item()
        return loss, stats

    # ----- audit -------------------------------------------------------------------------------------
    def diagnostics(self, b: DAPBatch) -> dict[str, float]:
        """OGLR, SPR and the auxiliary gradient share, on the whole batch before the update."""
        t0 = time.perf_counter()
        audit, g_all = on_policy_audit(self.agent, b, self.cfg.vf_coef)
        actor = [*self.agent.actor_mean.parameters(), self.agent.actor_logstd]
        actor_ids = {id(p) for p in actor}
        g_ppo_actor = [g for p, g in zip(self.agent.parameters(), g_all, strict=True) if id(p) in actor_ids]
        aux, _ = self.auxiliary_loss(b)
        aux_n = grad_norm(torch.autograd.grad(aux, actor, allow_unused=True))
        return {
            **audit,
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
        self.epochs_done += 1
        if self.epochs_done % self.cfg.pet_every == 0 and self.pet_optimizer is not None and self.pet_obs:
            stats.update(self.pet_round())
        return stats

    def _probe_moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator(device=self.device).manual_seed(12345)  # the same noise before and after
        K = self.cfg.K
        a = sample(self.prior.edm, self.prior.cond(self.probe.repeat_interleave(K, 0)), self.cfg.sampler, g)
        a = a.view(len(self.probe), K, -1)
        return a.mean(1), a.std(1).clamp_min(1e-3)

    def pet_round(self) -> dict[str, float]:
        """Adapt the prior on the on-policy (s, a) pairs since the last round with its denoising loss."""
        c, t0 = self.cfg, time.perf_counter()
        obs = torch.as_tensor(np.concatenate(self.pet_obs), device=self.device)
        act = torch.as_tensor(np.concatenate(self.pet_act), device=self.device)
        self.pet_obs, self.pet_act = [], []
        mu0, std0 = self._probe_moments()
        self.prior.train()
        losses = []
        for _ in range(c.pet_steps):
            idx = torch.randint(len(obs), (c.pet_batch,), generator=self.gen, device=self.device)
            loss = self.prior.loss(obs[idx], act[idx], self.gen)
            self.pet_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.pet_optimizer.step()
            losses.append(loss.item())
        self.prior.eval()
        mu1, std1 = self._probe_moments()
        return {"pet_loss": float(np.mean(losses)), "prior_kl_drift": float(gaussian_kl(mu1, std1, mu0, std0).mean()),
                "time_pet_s": time.perf_counter() - t0}

    # ----- checkpointing ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "prior": self.prior.state_dict(), "q": self.q.state_dict(),
                "q_optimizer": self.q_optimizer.state_dict(),
                "pet_optimizer": self.pet_optimizer.state_dict() if self.pet_optimizer else None,
                "gen": self.gen.get_state(), "epochs_done": self.epochs_done,
                "pet_obs": list(self.pet_obs), "pet_act": list(self.pet_act)}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        super().load_state_dict(s)
        self.prior.load_state_dict(s["prior"])  # the model was wrapped once, in __init__
        self.q.load_state_dict(s["q"])
        self.q_optimizer.load_state_dict(s["q_optimizer"])
        if self.pet_optimizer is not None:
            self.pet_optimizer.load_state_dict(s["pet_optimizer"])
        self.gen.set_state(s["gen"])
        self.epochs_done = s["epochs_done"]
        self.pet_obs, self.pet_act = list(s["pet_obs"]), list(s["pet_act"])


__all__ = ["PPODAP", "ActionPrior", "PPODAPConfig", "on_policy_audit"]
