"""The diffusion-prior family's shared parts: the cached offline prior, and the proposer built on it.

`frozen_prior` loads (or trains once) the task's offline prior p_psi(a|s), frozen: PPO-DTR and DTQL use it
as it is. `Proposer` is what PPO-DAP and PPO-DiffAug compose:
  - Q(s, a) heads fitted on each rollout (target y = r + gamma V(s') (1 - d), or the GAE lambda-return), `q_heads`
    of them, independently initialised, fitted on the same minibatches; Q is their mean. With two or more,
    `q_rank_corr` measures whether Q can rank a state's proposals at all: the Spearman correlation over the K
    proposals between two independent fits, mean over states (0: the ranking is the initialisation's noise),
  - K guided proposals per state from the prior (in-denoising gradient guidance along grad_a Q, step schedule
    `guidance_schedule`, dapbench.diffusion.sampler), drawn through a `FrozenDenoiser` snapshot of the prior
    (adapters merged, rebuilt after every PET round), with what guidance did to them measured every rollout:
    `bound_share` (share of proposals with a coordinate on the action bound), and on the first `GUIDANCE_PROBE`
    states, the same initial noise denoised without guidance: `bound_share_unguided`, `guided_dist` (mean
    ||a_guided - a_unguided||) and `q_gain` (mean Q(a_guided) - Q(a_unguided)),
  - PET: every f epochs the prior is adapted on the on-policy (s, a) pairs of those epochs with its
    denoising loss, with LoRA through `peft` (only adapter parameters in the optimiser), fully, or not at all;
    each round logs its denoising loss on (a fixed subset of) its pairs before and after, with the same sigma
    and noise (`pet_loss_before`, `pet_loss_after`), the KL between the prior's moment-matched Gaussians before
    and after the round on fixed probe states (`prior_kl_drift`), and from the original offline prior
    (`prior_kl_orig`).
The diagnostics draw from generators of their own: they never change what the method learns.
"""

from __future__ import annotations

import itertools
import time
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from dapbench.api import AlgoConfig, Context, Spaces, late_field, layer_init
from dapbench.diffusion.prior import ActionPrior, PriorConfig, load_or_train
from dapbench.diffusion.sampler import FrozenDenoiser, SamplerConfig, Schedule, sample

GUIDANCE_PROBE = 128  # states per rollout whose proposals are also denoised without guidance (diagnostics only)
PET_EVAL_PAIRS = 2048  # pairs of a PET round its before/after loss is measured on
KL_STD_FLOOR = 0.1  # x max_action: std floor of the moment-matched Gaussians the prior KLs compare (see _probe_moments)


class ProposerConfig(AlgoConfig):
    """The proposer's fields, shared by the configs of the algorithms that compose it."""

    K: int = Field(10, gt=0, description="proposals per on-policy state (authors' code)")
    alpha_max: float = Field(0.30, ge=0, description="largest gradient-guidance step, action units (authors' code)")
    guidance: Literal["both", "energy", "gradient", "none"] = Field(
        "both", description="energy reweighting and/or in-denoising gradient guidance")
    pet: Literal["lora", "full", "frozen"] = Field("lora", description="prior adaptation: LoRA (PET), full "
                                                   "fine-tuning, or none")
    pet_every: int = Field(10, gt=0, description="f: epochs between PET rounds (authors' code)")
    pet_lr: float = Field(1e-5, gt=0, description="PET step size (authors' code)")
    pet_steps: int = Field(300, gt=0, description="gradient steps per PET round (ours: on Hopper's medium prior, 300 "
                           "steps at lr 1e-5 lower the round's denoising loss 5.4% at KL 0.011 to the original "
                           "prior; 100 steps: 1.4%; docs/algorithms.md)")
    pet_batch: int = Field(256, gt=0, description="PET minibatch (ours)")
    lora_rank: int = Field(8, gt=0, description="LoRA rank (authors' code)")
    lora_alpha: int = Field(16, gt=0, description="LoRA alpha (peft's usual 2 x rank)")
    q_hidden: tuple[int, ...] = Field((64, 64), description="Q head widths, tanh (ours: as the critic)")
    q_lr: float = Field(3e-4, gt=0, description="Q head step size (ours)")
    q_epochs: int = Field(2, gt=0, description="passes over each rollout to fit Q (ours)")
    probe_states: int = Field(128, gt=0, description="fixed states for the prior KL drift estimate (ours)")
    proposal_chunk: int = Field(512, gt=0, description="states per proposal batch: bounds peak memory, same "
                                "work (ours)")
    prior: PriorConfig = Field(PriorConfig(), description="the offline prior (DTQL's network and EDM)")
    sampler: SamplerConfig = Field(SamplerConfig(), description="few-step sampler")
    guidance_schedule: Schedule = late_field(
        "noise", legacy="rising", since="0.3", description="gradient-guidance step per denoising step: 'noise' "
        "alpha_max sigma^2 / (sigma^2 + sigma_data^2), shrinking with the noise (Diffuser's guided sampler); "
        "'rising' alpha_max (i + 1) / N, largest on the final sample (dapbench 0.1) (ours, docs/algorithms.md)")
    q_heads: int = late_field(1, legacy=1, since="0.3", gt=0, description="Q heads, independently initialised, "
                              "fitted on the same minibatches; Q is their mean (ours)")
    q_target: Literal["td0", "lambda"] = late_field(
        "td0", legacy="td0", since="0.3", description="Q's regression target: r + gamma V(s') (1 - d), or the "
        "rollout's GAE lambda-return (ours)")


def max_action(spaces: Spaces) -> float:
    return float(np.max(np.abs(spaces.act_high)))


def frozen_prior(cfg: PriorConfig, spaces: Spaces, context: Context, device: torch.device, data=None
                 ) -> tuple[ActionPrior, dict[str, Any]]:
    """The cached offline prior of (task, dataset, cfg), trained first if missing, on `device`, frozen."""
    prior, info = load_or_train(context.task or "task", context.dataset, max_action(spaces), cfg, data=data)
    prior.to(device).requires_grad_(False)
    return prior, info


def prior_work(cfg: PriorConfig, task: str, dataset: str | None) -> str | None:
    """`Algorithm.shared_work` of the family: the offline prior of (task, dataset, cfg) when not cached yet."""
    from dapbench.diffusion.prior import is_cached

    if dataset is None or is_cached(task, dataset, cfg):
        return None
    return f"prior {task} {dataset} {cfg.model_dump_json()}"


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


def gaussian_kl(mu1, std1, mu2, std2) -> torch.Tensor:
    """KL(N(mu1, std1^2) || N(mu2, std2^2)) for diagonal Gaussians, summed over the last dim."""
    return (torch.log(std2 / std1) + (std1**2 + (mu1 - mu2) ** 2) / (2 * std2**2) - 0.5).sum(-1)


def spearman_rows(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation between x and y along the last dim, per row (ties broken by position)."""
    rx, ry = x.argsort(-1).argsort(-1).float(), y.argsort(-1).argsort(-1).float()
    rx, ry = rx - rx.mean(-1, keepdim=True), ry - ry.mean(-1, keepdim=True)
    return (rx * ry).sum(-1) / ((rx * rx).sum(-1) * (ry * ry).sum(-1)).sqrt().clamp_min(1e-12)


def on_bound(a: torch.Tensor, bound: float) -> torch.Tensor:
    """Per action: whether any coordinate sits on the action bound (within float rounding)."""
    return (a.abs() >= bound * (1 - 1e-6)).any(-1)


class Proposer:
    """Q heads, guided prior proposals and PET over the task's offline prior (see the module docstring).

    Built after the PPO agent (its first Q head's initialisation draws from the global torch RNG, as the agent's
    does; further heads from generators of their own); `gen` is its own generator for proposals, selection and
    PET noise."""

    def __init__(self, c: ProposerConfig, spaces: Spaces, context: Context, device: torch.device) -> None:
        from dapbench.data.load import observations_at

        self.cfg, self.device = c, device
        self.max_action = max_action(spaces)
        self.prior, self.prior_info = load_or_train(context.task or "task", context.dataset, self.max_action,
                                                     c.prior)  # loads the logged data only if it must train
        if c.pet == "lora":
            from peft import LoraConfig, get_peft_model  # slow import: only here

            net = self.prior.edm.net
            self.peft_model = get_peft_model(net, LoraConfig(r=c.lora_rank, lora_alpha=c.lora_alpha,
                                                             target_modules=net.lora_targets, lora_dropout=0.0))
        self.prior.to(device)
        for name, p in self.prior.named_parameters():
            p.requires_grad_(c.pet == "full" or (c.pet == "lora" and "lora_" in name))
        trainable = [p for p in self.prior.parameters() if p.requires_grad]
        self.pet_optimizer = torch.optim.Adam(trainable, lr=c.pet_lr) if trainable else None
        self.q = QHead(spaces.obs_dim, spaces.act_dim, c.q_hidden).to(device)
        self.q_optimizer = torch.optim.Adam(self.q.parameters(), lr=c.q_lr, eps=1e-5)
        self.q_extra: list[QHead] = []
        for j in range(1, c.q_heads):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(context.seed * 1000 + j)
                self.q_extra.append(QHead(spaces.obs_dim, spaces.act_dim, c.q_hidden).to(device))
        self.q_extra_optimizers = [torch.optim.Adam(h.parameters(), lr=c.q_lr, eps=1e-5) for h in self.q_extra]
        self.gen = torch.Generator(device=device).manual_seed(context.seed + 1)
        self.probe = observations_at(context.dataset, c.probe_states).to(device)
        self.epochs_done = 0
        self.pet_obs: list[np.ndarray] = []  # on-policy (s, a) since the last PET round
        self.pet_act: list[np.ndarray] = []
        self._denoiser: FrozenDenoiser | None = None
        self.moments0 = self._probe_moments(FrozenDenoiser(self.prior.edm, adapters=False))  # the offline prior

    @property
    def denoiser(self) -> FrozenDenoiser:
        """The prior's current weights, frozen for sampling (rebuilt after they change)."""
        if self._denoiser is None:
            self._denoiser = FrozenDenoiser(self.prior.edm)
        return self._denoiser

    # ----- the Q heads ---------------------------------------------------------------------------------
    def heads(self) -> list[QHead]:
        return [self.q, *self.q_extra]

    def q_value(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Q(s, a): the mean of the heads."""
        qs = [h(obs, act) for h in self.heads()]
        return qs[0] if len(qs) == 1 else torch.stack(qs).mean(0)

    def fit_q(self, obs: torch.Tensor, actions: torch.Tensor, target: torch.Tensor, rng: np.random.Generator,
              num_minibatches: int) -> float:
        """q_epochs passes of 0.5 E[(Q_j(s, a) - y)^2] over the rollout in `num_minibatches` minibatches, every
        head on the same minibatches; returns the first head's mean loss."""
        n, mb = len(target), max(1, len(target) // num_minibatches)
        actions = actions[:n].clamp(-self.max_action, self.max_action)
        pairs = list(zip(self.heads(), [self.q_optimizer, *self.q_extra_optimizers], strict=True))
        losses = []
        for _ in range(self.cfg.q_epochs):
            perm = torch.as_tensor(rng.permutation(n), device=self.device)
            for i in range(0, n, mb):
                idx = perm[i:i + mb]
                for j, (head, opt) in enumerate(pairs):
                    loss = 0.5 * ((head(obs[idx], actions[idx]) - target[idx]) ** 2).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if j == 0:
                        losses.append(loss.item())
        return float(np.mean(losses))

    # ----- proposals -----------------------------------------------------------------------------------
    def propose(self, obs_n: torch.Tensor, raw_obs: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """K guided proposals per state (n, K, act), their Q values (n, K), and what guidance did to them (see the
        module docstring), `proposal_chunk` states at a time (bounds peak memory; the same work)."""
        c, K = self.cfg, self.cfg.K
        guided = c.guidance in ("both", "gradient") and c.alpha_max > 0
        actions, stats = [], {}
        for i in range(0, obs_n.shape[0], c.proposal_chunk):
            obs_rep = obs_n[i:i + c.proposal_chunk].repeat_interleave(K, 0)

            def grad_q(a: torch.Tensor, obs_rep=obs_rep) -> torch.Tensor:
                with torch.enable_grad():
                    a = a.detach().requires_grad_(True)
                    return torch.autograd.grad(self.q_value(obs_rep[: len(a)], a).sum(), a)[0]

            cond = self.prior.cond(raw_obs[i:i + c.proposal_chunk])
            x0 = torch.randn((len(obs_rep), self.prior.edm.act_dim), generator=self.gen, device=self.device)
            a = sample(self.denoiser, cond, c.sampler, grad_q=grad_q if guided else None, alpha_max=c.alpha_max,
                       schedule=c.guidance_schedule, x0=x0, repeat=K)
            actions.append(a)
            if i == 0 and guided:  # the same initial noise, denoised without guidance
                p = min(GUIDANCE_PROBE, len(cond))
                free = sample(self.denoiser, cond[:p], c.sampler, x0=x0[: p * K], repeat=K)
                with torch.no_grad():
                    gain = self.q_value(obs_rep[: p * K], a[: p * K]) - self.q_value(obs_rep[: p * K], free)
                stats = {"bound_share_unguided": float(on_bound(free, self.max_action).float().mean()),
                         "guided_dist": float((a[: p * K] - free).norm(dim=-1).mean()),
                         "q_gain": float(gain.mean())}
        actions = torch.cat(actions)
        obs_all = obs_n.repeat_interleave(K, 0)
        with torch.no_grad():
            qs = [h(obs_all, actions).view(-1, K) for h in self.heads()]
        q = qs[0] if len(qs) == 1 else torch.stack(qs).mean(0)
        stats["bound_share"] = float(on_bound(actions, self.max_action).float().mean())
        if len(qs) > 1:
            stats["q_rank_corr"] = float(spearman_rows(qs[0], qs[1]).mean())
        return actions.view(-1, K, actions.shape[-1]), q, stats

    # ----- PET -----------------------------------------------------------------------------------------
    def record(self, raw_obs: np.ndarray, actions: np.ndarray, low: np.ndarray, high: np.ndarray) -> None:
        """Keep a rollout's on-policy (s, a) pairs (actions clipped to the box) for the next PET round."""
        self.pet_obs.append(raw_obs.copy())
        self.pet_act.append(np.clip(actions, low, high))

    def end_epoch(self) -> dict[str, float]:
        """Count the epoch; run a PET round every `pet_every` epochs (when the prior adapts at all)."""
        self.epochs_done += 1
        if self.epochs_done % self.cfg.pet_every == 0 and self.pet_optimizer is not None and self.pet_obs:
            return self.pet_round()
        return {}

    def _probe_moments(self, denoiser: FrozenDenoiser) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of K samples per probe state, always from the same noise. The std is floored at
        KL_STD_FLOOR x max_action: logged actions pile up on the bounds, where the K samples of a dimension can
        be identical, and an unfloored KL then measures the floor (we saw 10^3 for a shift of 0.1)."""
        g = torch.Generator(device=self.device).manual_seed(12345)
        K = self.cfg.K
        a = sample(denoiser, self.prior.cond(self.probe), self.cfg.sampler, g, repeat=K).view(len(self.probe), K, -1)
        return a.mean(1), a.std(1).clamp_min(KL_STD_FLOOR * self.max_action)

    def _eval_loss(self, obs: torch.Tensor, act: torch.Tensor) -> float:
        """The denoising loss on (obs, act) with fixed sigma and noise draws (comparable before and after)."""
        with torch.no_grad():
            return float(self.prior.loss(obs, act, torch.Generator(device=self.device).manual_seed(777)))

    def pet_round(self) -> dict[str, float]:
        """Adapt the prior on the on-policy (s, a) pairs since the last round with its denoising loss."""
        c, t0 = self.cfg, time.perf_counter()
        obs = torch.as_tensor(np.concatenate(self.pet_obs), device=self.device)
        act = torch.as_tensor(np.concatenate(self.pet_act), device=self.device)
        self.pet_obs, self.pet_act = [], []
        ev = torch.linspace(0, len(obs) - 1, min(PET_EVAL_PAIRS, len(obs)), device=self.device).long()
        mu0, std0 = self._probe_moments(self.denoiser)
        before = self._eval_loss(obs[ev], act[ev])
        self.prior.train()
        losses = []
        for _ in range(c.pet_steps):
            idx = torch.randint(len(obs), (c.pet_batch,), generator=self.gen, device=self.device)
            loss = self.prior.loss(obs[idx], act[idx], self.gen)
            self.pet_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.pet_optimizer.step()
            losses.append(loss.detach())
        self.prior.eval()
        self._denoiser = None
        after = self._eval_loss(obs[ev], act[ev])
        mu1, std1 = self._probe_moments(self.denoiser)
        return {"pet_loss": float(torch.stack(losses).mean()), "pet_loss_before": before, "pet_loss_after": after,
                "prior_kl_drift": float(gaussian_kl(mu1, std1, mu0, std0).mean()),
                "prior_kl_orig": float(gaussian_kl(mu1, std1, *self.moments0).mean()),
                "time_pet_s": time.perf_counter() - t0}

    # ----- checkpointing (flat keys: the layout PPO-DAP checkpoints have always had) ----------------------
    def state_dict(self) -> dict[str, Any]:
        return {"prior": self.prior.state_dict(), "q": self.q.state_dict(),
                "q_optimizer": self.q_optimizer.state_dict(),
                "q_extra": [h.state_dict() for h in self.q_extra],
                "q_extra_optimizers": [o.state_dict() for o in self.q_extra_optimizers],
                "pet_optimizer": self.pet_optimizer.state_dict() if self.pet_optimizer else None,
                "gen": self.gen.get_state(), "epochs_done": self.epochs_done,
                # as tensors sharing the arrays' memory: torch.save streams them (a NumPy array is pickled through
                # a full in-memory copy, which made the checkpoint the run's peak RSS as the PET buffer filled)
                "pet_obs": [torch.from_numpy(x) for x in self.pet_obs],
                "pet_act": [torch.from_numpy(x) for x in self.pet_act]}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.prior.load_state_dict(s["prior"])  # the model was wrapped once, in __init__
        self._denoiser = None
        self.q.load_state_dict(s["q"])
        self.q_optimizer.load_state_dict(s["q_optimizer"])
        for h, hs, o, os_ in zip(self.q_extra, s.get("q_extra", []), self.q_extra_optimizers,
                                 s.get("q_extra_optimizers", []), strict=False):
            h.load_state_dict(hs)
            o.load_state_dict(os_)
        if self.pet_optimizer is not None:
            self.pet_optimizer.load_state_dict(s["pet_optimizer"])
        self.gen.set_state(s["gen"])
        self.epochs_done = s["epochs_done"]
        self.pet_obs, self.pet_act = ([np.array(x) for x in s[k]] for k in ("pet_obs", "pet_act"))  # either form
