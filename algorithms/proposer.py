"""The diffusion-prior family's shared parts: the cached offline prior, and the proposer built on it.

`frozen_prior` loads (or trains once) the task's offline prior p_psi(a|s), frozen: PPO-DTR and DTQL use it
as it is. `Proposer` is what PPO-DAP and PPO-DiffAug compose:
  - a Q(s, a) head fitted on each rollout with the one-step target y = r + gamma V(s') (1 - d),
  - K guided proposals per state from the prior (in-denoising gradient guidance along grad_a Q),
  - PET: every f epochs the prior is adapted on the on-policy (s, a) pairs of those epochs with its
    denoising loss, with LoRA through `peft` (only adapter parameters in the optimiser), fully, or not at all,
  - prior_kl_drift: KL between the prior's moment-matched Gaussians before and after a round, on fixed
    probe states.
"""

from __future__ import annotations

import itertools
import time
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from algorithms.ppo import layer_init
from dapbench.algorithm import AlgoConfig, Context, Spaces
from dapbench.diffusion.prior import ActionPrior, PriorConfig, load_or_train
from dapbench.diffusion.sampler import SamplerConfig, sample


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
    prior: PriorConfig = Field(PriorConfig(), description="the offline prior (DTQL's network and EDM)")
    sampler: SamplerConfig = Field(SamplerConfig(), description="few-step sampler")


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


class Proposer:
    """Q head, guided prior proposals and PET over the task's offline prior (see the module docstring).

    Built after the PPO agent (its Q head's initialisation draws from the global torch RNG, as the agent's
    does); `gen` is its own generator for proposals, selection and PET noise."""

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
        self.gen = torch.Generator(device=device).manual_seed(context.seed + 1)
        self.probe = observations_at(context.dataset, c.probe_states).to(device)
        self.epochs_done = 0
        self.pet_obs: list[np.ndarray] = []  # on-policy (s, a) since the last PET round
        self.pet_act: list[np.ndarray] = []

    # ----- the Q head ----------------------------------------------------------------------------------
    def fit_q(self, obs: torch.Tensor, actions: torch.Tensor, target: torch.Tensor, rng: np.random.Generator,
              num_minibatches: int) -> float:
        """q_epochs passes of 0.5 E[(Q(s, a) - y)^2] over the rollout in `num_minibatches` minibatches."""
        n, mb = len(target), max(1, len(target) // num_minibatches)
        actions = actions[:n].clamp(-self.max_action, self.max_action)
        losses = []
        for _ in range(self.cfg.q_epochs):
            perm = torch.as_tensor(rng.permutation(n), device=self.device)
            for i in range(0, n, mb):
                idx = perm[i:i + mb]
                loss = 0.5 * ((self.q(obs[idx], actions[idx]) - target[idx]) ** 2).mean()
                self.q_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.q_optimizer.step()
                losses.append(loss.item())
        return float(np.mean(losses))

    # ----- proposals -----------------------------------------------------------------------------------
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

    # ----- checkpointing (flat keys: the layout PPO-DAP checkpoints have always had) ----------------------
    def state_dict(self) -> dict[str, Any]:
        return {"prior": self.prior.state_dict(), "q": self.q.state_dict(),
                "q_optimizer": self.q_optimizer.state_dict(),
                "pet_optimizer": self.pet_optimizer.state_dict() if self.pet_optimizer else None,
                "gen": self.gen.get_state(), "epochs_done": self.epochs_done,
                "pet_obs": list(self.pet_obs), "pet_act": list(self.pet_act)}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.prior.load_state_dict(s["prior"])  # the model was wrapped once, in __init__
        self.q.load_state_dict(s["q"])
        self.q_optimizer.load_state_dict(s["q_optimizer"])
        if self.pet_optimizer is not None:
            self.pet_optimizer.load_state_dict(s["pet_optimizer"])
        self.gen.set_state(s["gen"])
        self.epochs_done = s["epochs_done"]
        self.pet_obs, self.pet_act = list(s["pet_obs"]), list(s["pet_act"])
