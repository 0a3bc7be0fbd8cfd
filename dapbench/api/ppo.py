"""The PPO base: a clipped-surrogate PPO as CleanRL's `ppo_continuous_action` (Schulman et al., 2017), with hooks.

Part of the algorithm API (`dapbench.api`, docs/api.md; semantic versioning there). dapbench's own `ppo` and
every PPO variant, built-in or third-party, subclass `PPO` one level deep and override only the hooks below.

Defaults are CleanRL's (see docs/algorithms.md). One deliberate difference: a truncated episode (time
limit) is bootstrapped, r_T <- r_T + gamma V(s_T), as Stable-Baselines3 does; CleanRL treats a
truncation as a termination. `bootstrap_truncation=False` gives CleanRL's behaviour.

One update (every `num_steps` environment steps, inside `train_epoch`) calls the hooks in this order:
  1. `compute_batch() -> Batch`                         old log-probs, values, GAE over the rollout;
  2. `process_batch(batch) -> Batch`                    rollout post-processing, after GAE (default: as is);
  3. `diagnostics(batch) -> dict[str, float]`           statistics before any gradient step; the base runs
                                                        the on-policy audit (OGLR, SPR, behaviour log-prob gap);
  then for each update epoch e:
  4. `epoch_batch(batch, e) -> Batch`                   the batch this epoch learns from (default: the same);
     and for each minibatch mb of it:
  5. `surrogate_loss(ratio, adv, mb) -> Tensor | (Tensor, dict)`   the policy objective (default: clipped);
  6. `auxiliary_loss(mb, mean) -> (Tensor | None, dict)`           extra loss terms (default: none);
  after the last gradient step:
  7. `surrogate_stats() -> dict[str, float]`            statistics the surrogate accumulated (default: none);
  8. `after_update(batch, stats) -> dict[str, float]`   once per update: adapt coefficients, log (default: none).
`update()` runs 1-8 and returns the update's statistics; `train_epoch` averages them over the epoch's updates.
Every sample in a `Batch` carries its `origin` (0 = fresh on-policy) and the log-probability its action had
under the acting policy when it was taken (NaN: never acted), so the audit is computed from real provenance.

Speed: per-step action means are computed in NumPy from a snapshot of the actor taken after each update
(a batch-1 torch forward costs ~10x more); log-probabilities and values for the update are recomputed
in torch in one batch with the same, unchanged parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import nn

from dapbench.algorithm import AlgoConfig, Algorithm, Context, Metric, Spaces
from dapbench.api.audit import on_policy_audit
from dapbench.training.env import TrainEnv
from dapbench.training.running_stats import ObsNormalizer, RewardNormalizer

ON_POLICY = 0  # `Batch.origin` of a fresh on-policy sample


class PPOConfig(AlgoConfig):
    """PPO's config, CleanRL's defaults. A variant's `Config` subclasses it: new fields with `Field(default,
    description=...)`, an inherited field re-declared with `override_field(PPOConfig, name, ...)`."""

    learning_rate: float = Field(3e-4, gt=0, description="Adam step size (CleanRL)")
    anneal_lr: bool = Field(True, description="linear decay of the step size to 0 over the budget (CleanRL)")
    num_steps: int = Field(2048, gt=0, description="environment steps per rollout (CleanRL)")
    gamma: float = Field(0.99, ge=0, le=1, description="discount (CleanRL)")
    gae_lambda: float = Field(0.95, ge=0, le=1, description="GAE lambda (CleanRL)")
    num_minibatches: int = Field(32, gt=0, description="minibatches per update epoch (CleanRL)")
    update_epochs: int = Field(10, gt=0, description="passes over each rollout (CleanRL)")
    norm_adv: bool = Field(True, description="normalise advantages per minibatch (CleanRL)")
    clip_coef: float = Field(0.2, gt=0, description="surrogate clipping epsilon (CleanRL)")
    clip_vloss: bool = Field(True, description="clipped value loss (CleanRL)")
    ent_coef: float = Field(0.0, ge=0, description="entropy bonus coefficient (CleanRL)")
    vf_coef: float = Field(0.5, ge=0, description="value loss coefficient (CleanRL)")
    max_grad_norm: float = Field(0.5, gt=0, description="global gradient-norm clip (CleanRL)")
    target_kl: float | None = Field(None, description="early-stop threshold on approx-KL, None = off (CleanRL)")
    normalize_obs: bool = Field(True, description="running observation normalisation (CleanRL)")
    normalize_reward: bool = Field(True, description="running discounted-return reward scaling (CleanRL)")
    obs_clip: float = Field(10.0, gt=0, description="clip of normalised observations (CleanRL)")
    reward_clip: float = Field(10.0, gt=0, description="clip of normalised rewards (CleanRL)")
    hidden_sizes: tuple[int, ...] = Field((64, 64), description="tanh MLP widths, actor and critic (CleanRL)")
    bootstrap_truncation: bool = Field(True, description="bootstrap V at time-limit truncations (SB3)")


def layer_init(layer: nn.Linear, std: float = math.sqrt(2), bias: float = 0.0) -> nn.Linear:
    """Orthogonal weights with gain `std`, constant bias."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


def mlp(sizes: list[int], out_std: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 2):
        layers += [layer_init(nn.Linear(sizes[i], sizes[i + 1])), nn.Tanh()]
    layers.append(layer_init(nn.Linear(sizes[-2], sizes[-1]), std=out_std))
    return nn.Sequential(*layers)


_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class Agent(nn.Module):
    """Gaussian policy with a state-independent log-std, and a separate value network."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.critic = mlp([obs_dim, *hidden, 1], out_std=1.0)
        self.actor_mean = mlp([obs_dim, *hidden, act_dim], out_std=0.01)
        self.actor_logstd = nn.Parameter(torch.zeros(1, act_dim))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    def log_prob_entropy(self, obs: torch.Tensor, actions: torch.Tensor, mean: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """log pi(a|s) = sum_i -(a_i - mu_i)^2 / (2 sigma_i^2) - log sigma_i - log(2 pi) / 2, and the entropy
        H = sum_i log sigma_i + (1 + log(2 pi)) / 2 (it does not depend on s). `mean`: mu(obs), if computed."""
        mean = self.actor_mean(obs) if mean is None else mean
        logstd = self.actor_logstd
        logp = (-0.5 * ((actions - mean) * torch.exp(-logstd)) ** 2 - logstd - _HALF_LOG_2PI).sum(-1)
        return logp, (logstd + 0.5 + _HALF_LOG_2PI).sum()

    def numpy_actor(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(W^T, b) of each actor layer, for the NumPy forward used while collecting."""
        return [
            (m.weight.detach().cpu().numpy().T.copy(), m.bias.detach().cpu().numpy().copy())
            for m in self.actor_mean
            if isinstance(m, nn.Linear)
        ]


def numpy_forward(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    for W, b in layers[:-1]:
        x = np.tanh(x @ W + b)
    W, b = layers[-1]
    return x @ W + b


def gae(rewards: np.ndarray, values: np.ndarray, next_value: float, dones: np.ndarray, gamma: float,
        lam: float) -> np.ndarray:
    """A_t = sum_l (gamma lam)^l delta_{t+l}, delta_t = r_t + gamma V(s_{t+1}) (1 - d_t) - V(s_t),
    over a time-ordered rollout; d_t = 1 when the episode ended at step t."""
    n = len(rewards)
    adv = np.zeros(n, np.float32)
    nxt_values = np.append(values[1:], np.float32(next_value))
    deltas = rewards + gamma * nxt_values * (1.0 - dones) - values
    decay = gamma * lam * (1.0 - dones)
    last = 0.0
    for t in range(n - 1, -1, -1):
        last = deltas[t] + decay[t] * last
        adv[t] = last
    return adv


@dataclass
class Batch:
    """A rollout, flattened over time, after GAE. Tensors on the learner's device; `obs` are normalised, `raw_obs`
    are not. A variant attaches fields by subclassing it (a dataclass; a field may be None); `index` slices every
    tensor field, so a subclass's fields follow the samples into minibatches."""

    obs: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    origin: torch.Tensor  # 0 = fresh on-policy; anything else is offline / synthetic
    raw_obs: torch.Tensor  # observations before normalisation
    behaviour_logprobs: torch.Tensor  # log mu(a|s) of the acting policy when the action was taken; NaN: never acted

    def __len__(self) -> int:
        return self.obs.shape[0]

    def index(self, idx: torch.Tensor | slice) -> Batch:
        return type(self)(**{f.name: None if (x := getattr(self, f.name)) is None else x[idx] for f in fields(self)})


class RolloutBuffer:
    """Fixed-size NumPy storage for one rollout (normalised observations and rewards)."""

    def __init__(self, n: int, obs_dim: int, act_dim: int) -> None:
        self.obs = np.zeros((n, obs_dim), np.float32)
        self.raw_obs = np.zeros((n, obs_dim), np.float32)  # before normalisation, for variants that need it
        self.actions = np.zeros((n, act_dim), np.float32)
        self.rewards = np.zeros(n, np.float32)
        self.dones = np.zeros(n, np.float32)  # episode ended after this step (terminated or truncated)
        self.truncated_obs = np.zeros((n, obs_dim), np.float32)  # s_T of a truncation, for bootstrapping
        self.truncated = np.zeros(n, bool)
        self.noise = np.zeros((n, act_dim), np.float32)  # eps of a = mu(s) + sigma eps, drawn when acting
        self.pos = 0

    @property
    def full(self) -> bool:
        return self.pos == len(self.rewards)

    def state_dict(self) -> dict[str, Any]:
        return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(self).items()}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        if "noise" not in s:  # a checkpoint from before the audit recorded it: unknown until the next rollout
            s = {**s, "noise": np.full_like(self.noise, np.nan)}
        s = {k: v for k, v in s.items() if k != "behaviour_logp"}  # an unreleased layout stored log mu itself
        for k, v in s.items():
            setattr(self, k, v.copy() if isinstance(v, np.ndarray) else v)


class PPO(Algorithm):
    """Proximal Policy Optimization (clipped surrogate), CleanRL's continuous-action recipe."""

    Config = PPOConfig
    metrics: ClassVar[dict[str, Metric]] = {
        "oglr": Metric("offline-gradient leakage ratio ||grad L_PPO(non-fresh)|| / ||grad L_PPO||, per update on "
                       "the whole batch (0 = no leak)", gate="zero"),
        "spr": Metric("share of non-fresh samples in PPO's surrogate, value loss and GAE (0 = strictly on-policy)",
                      gate="zero"),
        "behaviour_logp_gap": Metric("largest |log pi_old(a|s) - log mu(a|s)| over the batch, mu the acting policy "
                                     "when a was taken (float rounding, < 1e-4, for on-policy data; inf for an "
                                     "action that was never acted)", gate="small", allow_inf=True),
    }

    def __init__(self, config: PPOConfig, spaces: Spaces, context: Context) -> None:
        super().__init__(config, spaces, context)
        c = self.cfg = config
        torch.manual_seed(context.seed)
        self.device = torch.device(context.device)
        self.agent = Agent(spaces.obs_dim, spaces.act_dim, c.hidden_sizes).to(self.device)
        self.optimizer = torch.optim.Adam(self.agent.parameters(), lr=c.learning_rate, eps=1e-5, fused=True)
        self.rng = np.random.default_rng(context.seed)  # action noise and minibatch order
        self.obs_norm = ObsNormalizer(spaces.obs_dim, c.obs_clip, c.normalize_obs)
        self.rew_norm = RewardNormalizer(c.gamma, c.reward_clip, c.normalize_reward)
        self.buffer = RolloutBuffer(c.num_steps, spaces.obs_dim, spaces.act_dim)
        self.num_iterations = max(1, context.total_steps // c.num_steps)
        self.iteration = 0  # updates done
        self.next_obs: np.ndarray | None = None  # normalised observation the policy acts on next
        self._snapshot()

    def _snapshot(self) -> None:
        """Copy the actor to NumPy for acting (after every parameter change)."""
        self._np_actor = self.agent.numpy_actor()
        self._np_logstd = self.agent.actor_logstd.detach().cpu().numpy()[0].astype(np.float64)
        self._np_std = np.exp(self.agent.actor_logstd.detach().cpu().numpy()[0])

    # ----- acting -----------------------------------------------------------------------------------
    def _sample(self, obs_n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """a = mu(s) + sigma * eps, eps ~ N(0, I), in NumPy; returns (a, eps)."""
        mean = numpy_forward(self._np_actor, obs_n)
        eps = self.rng.standard_normal(mean.shape, dtype=np.float32)
        return (mean + self._np_std * eps).astype(np.float32), eps

    def act(self, obs: np.ndarray, deterministic: bool = True, rng: np.random.Generator | None = None
            ) -> np.ndarray:
        mean = numpy_forward(self._np_actor, self.obs_norm(np.asarray(obs), update=False))
        if deterministic:
            return mean.astype(np.float32)
        rng = rng if rng is not None else np.random.default_rng()
        return (mean + self._np_std * rng.standard_normal(mean.shape)).astype(np.float32)

    # ----- collecting -------------------------------------------------------------------------------
    def train_epoch(self, env: TrainEnv, n_steps: int) -> dict[str, float]:
        c, buf = self.cfg, self.buffer
        if self.next_obs is None:
            self.next_obs = self.obs_norm(env.obs[None], update=True)[0]
        stats: list[dict[str, float]] = []
        for _ in range(n_steps):
            action, eps = self._sample(self.next_obs[None])
            action = action[0]
            raw = env.obs
            step = env.step(action)
            done = step.terminated or step.truncated
            p = buf.pos
            buf.obs[p], buf.raw_obs[p], buf.actions[p], buf.noise[p] = self.next_obs, raw, action, eps[0]
            buf.rewards[p] = self.rew_norm(step.reward, episode_end=done)
            buf.dones[p] = float(done)
            buf.truncated[p] = step.truncated and not step.terminated and c.bootstrap_truncation
            if buf.truncated[p]:
                buf.truncated_obs[p] = self.obs_norm(step.final_obs[None], update=False)[0]
            buf.pos += 1
            self.next_obs = self.obs_norm(step.next_obs[None], update=True)[0]
            if buf.full:
                stats.append(self.update())
                buf.pos = 0
        if not stats:
            return {}
        out = {k: float(np.mean([s[k] for s in stats])) for k in stats[0]}
        out["n_updates"] = float(len(stats))
        return out

    # ----- learning ---------------------------------------------------------------------------------
    def bootstrapped_rewards(self) -> torch.Tensor:
        """The rollout's (normalised) rewards with r_T += gamma V(s_T) at time-limit truncations."""
        c, buf, dev = self.cfg, self.buffer, self.device
        rewards = torch.as_tensor(buf.rewards, device=dev).clone()
        with torch.no_grad():
            if buf.truncated.any():
                trunc = torch.as_tensor(np.flatnonzero(buf.truncated), device=dev)
                rewards[trunc] += c.gamma * self.agent.value(torch.as_tensor(buf.truncated_obs, device=dev)[trunc])
        return rewards

    def next_value(self) -> torch.Tensor:
        """V(s_{N}) of the observation after the rollout, shape (1,)."""
        with torch.no_grad():
            return self.agent.value(torch.as_tensor(self.next_obs[None], device=self.device))

    def compute_batch(self) -> Batch:
        """Hook 1, once per update, when the rollout buffer is full: the rollout as a `Batch` (old log-probs,
        values, GAE(gamma, lambda) advantages and returns over the time-ordered rollout, origin 0, behaviour
        log-probs). Override to keep extra per-rollout data (call super)."""
        c, buf, dev = self.cfg, self.buffer, self.device
        obs = torch.as_tensor(buf.obs, device=dev)
        actions = torch.as_tensor(buf.actions, device=dev)
        with torch.no_grad():
            logprobs, _ = self.agent.log_prob_entropy(obs, actions)
            values = self.agent.value(obs)
            next_value = self.next_value()[0]
        rewards = self.bootstrapped_rewards()
        advantages = torch.as_tensor(
            gae(rewards.cpu().numpy(), values.cpu().numpy(), float(next_value), buf.dones, c.gamma, c.gae_lambda),
            device=dev,
        )
        n = len(rewards)
        returns = advantages + values
        origin = torch.full((n,), ON_POLICY, dtype=torch.uint8, device=dev)
        raw_obs = torch.as_tensor(buf.raw_obs, device=dev)
        # log mu(a|s) = sum_i -eps_i^2 / 2 - log sigma_i - log(2 pi) / 2: the density each action was drawn from, by
        # the noise recorded when acting and the acting sigma (unchanged within a rollout: updates come after it)
        eps = buf.noise.astype(np.float64)
        behaviour = torch.as_tensor((-0.5 * eps**2 - self._np_logstd - _HALF_LOG_2PI).sum(-1), device=dev)
        return Batch(obs, actions, logprobs, values, advantages, returns, origin, raw_obs, behaviour)

    def surrogate_loss(self, ratio: torch.Tensor, adv: torch.Tensor, mb: Batch
                       ) -> torch.Tensor | tuple[torch.Tensor, dict[str, float]]:
        """Hook 5, once per minibatch (inside the gradient step): the policy objective to minimise.

        `ratio` = pi_theta(a|s) / pi_old(a|s) of the minibatch (with gradient), `adv` its advantages (normalised
        per minibatch when `norm_adv`), `mb` the minibatch. Return the loss, or `(loss, stats)`: `stats` (plain
        floats) are averaged over the update's minibatches and logged. PPO: L_clip, no statistics.

        L_clip = -E[min(r A, clip(r, 1-eps, 1+eps) A)]."""
        eps = self.cfg.clip_coef
        return torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - eps, 1 + eps)).mean()

    def auxiliary_loss(self, mb: Batch, mean: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor | None, dict[str, float]]:
        """Hook 6, once per minibatch, after `surrogate_loss`: extra loss terms added to PPO's loss, and their
        statistics (averaged over the minibatches that returned a term). `mean` is the actor's mean
        mu_theta(mb.obs) from this gradient step's forward pass (reuse it: one actor pass per minibatch); a call
        from elsewhere (e.g. `diagnostics`) may pass None. PPO: `(None, {})`."""
        return None, {}

    def process_batch(self, batch: Batch) -> Batch:
        """Hook 2, once per update, after `compute_batch` (GAE done) and before `diagnostics`: post-process the
        rollout. A variant may add samples (with their `origin`: anything but 0 marks them as not fresh, and
        the audit counts them) or attach fields (subclass `Batch`). PPO: the batch as is."""
        return batch

    def epoch_batch(self, batch: Batch, epoch: int) -> Batch:
        """Hook 4, at the start of update epoch `epoch` (0, 1, ..., `update_epochs` - 1), before the minibatches
        are drawn: the batch this epoch learns from (a variant may re-estimate advantages). PPO: the same."""
        return batch

    def surrogate_stats(self) -> dict[str, float]:
        """Hook 7, once per update, after the last gradient step: statistics a variant accumulated in
        `surrogate_loss` itself (e.g. how often a clip binds); simpler: return them from `surrogate_loss`.
        PPO: none."""
        return {}

    def after_update(self, batch: Batch, stats: dict[str, float]) -> dict[str, float]:
        """Hook 8, once per update, after its last gradient step and the actor snapshot: `batch` is the update's
        batch (old log-probs, advantages, ...), `stats` every statistic of the update so far (losses, approx_kl,
        diagnostics). Adapt coefficients here (an adaptive KL penalty), keeping them in `state_dict`; returns
        extra statistics to log. Runs after `self.iteration` was incremented. PPO: nothing."""
        return {}

    def diagnostics(self, batch: Batch) -> dict[str, float]:
        """Hook 3, once per update, after `process_batch` and before any gradient step: statistics of the batch
        about to be learned from (they must not change training state). The base runs the on-policy audit
        (OGLR, SPR; dapbench/api/audit.py) and the behaviour log-prob gap; a variant extends it
        (`{**super().diagnostics(batch), ...}`) and declares its keys in `metrics`."""
        audit = on_policy_audit(self.agent, batch, self.cfg.vf_coef)
        gap = (batch.logprobs.double() - batch.behaviour_logprobs).abs()
        gap = torch.where(torch.isnan(gap), torch.full_like(gap, math.inf), gap)
        return {**audit, "behaviour_logp_gap": float(gap.max())}

    def value_loss(self, newvalue: torch.Tensor, mb: Batch) -> torch.Tensor:
        """0.5 E[max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2)], or unclipped."""
        if not self.cfg.clip_vloss:
            return 0.5 * ((newvalue - mb.returns) ** 2).mean()
        eps = self.cfg.clip_coef
        v_clipped = mb.values + torch.clamp(newvalue - mb.values, -eps, eps)
        return 0.5 * torch.max((newvalue - mb.returns) ** 2, (v_clipped - mb.returns) ** 2).mean()

    def update(self) -> dict[str, float]:
        """One PPO update on the full rollout buffer (hooks 1-8, see the module docstring); returns its statistics.
        Called by `train_epoch` every `num_steps` environment steps. Override a hook rather than this."""
        c = self.cfg
        if c.anneal_lr:  # lr_i = (1 - i / I) lr
            frac = max(0.0, 1.0 - self.iteration / self.num_iterations)
            self.optimizer.param_groups[0]["lr"] = frac * c.learning_rate
        batch = self.process_batch(self.compute_batch())
        diag = self.diagnostics(batch)
        n = len(batch)
        mb_size = max(1, n // c.num_minibatches)
        pg_l, v_l, ent_l, kl_l, clipfracs, aux_stats, sur_stats = [], [], [], [], [], [], []
        for epoch in range(c.update_epochs):
            perm = torch.as_tensor(self.rng.permutation(n), device=self.device)
            shuffled = self.epoch_batch(batch, epoch).index(perm)
            for start in range(0, n, mb_size):
                mb = shuffled.index(slice(start, start + mb_size))
                mean = self.agent.actor_mean(mb.obs)
                newlogprob, entropy = self.agent.log_prob_entropy(mb.obs, mb.actions, mean)
                newvalue = self.agent.value(mb.obs)
                logratio = newlogprob - mb.logprobs
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()  # k3 estimator of KL(old || new)
                    clipfracs.append(((ratio - 1.0).abs() > c.clip_coef).float().mean().item())
                adv = mb.advantages
                if c.norm_adv:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                pg_loss = self.surrogate_loss(ratio, adv, mb)
                if isinstance(pg_loss, tuple):  # (loss, statistics)
                    pg_loss, sur_s = pg_loss
                    sur_stats.append(sur_s)
                v_loss = self.value_loss(newvalue, mb)
                loss = pg_loss - c.ent_coef * entropy + c.vf_coef * v_loss
                aux, aux_s = self.auxiliary_loss(mb, mean)
                if aux is not None:
                    loss = loss + aux
                    aux_stats.append(aux_s)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.agent.parameters(), c.max_grad_norm, foreach=True)
                self.optimizer.step()
                pg_l.append(pg_loss.item())
                v_l.append(v_loss.item())
                ent_l.append(entropy.item())
                kl_l.append(approx_kl.item())
            if c.target_kl is not None and kl_l[-1] > c.target_kl:
                break
        self.iteration += 1
        self._snapshot()
        y_pred, y_true = batch.values.cpu().numpy(), batch.returns.cpu().numpy()
        var_y = np.var(y_true)
        stats = {
            "policy_loss": float(np.mean(pg_l)),
            "value_loss": float(np.mean(v_l)),
            "entropy": float(np.mean(ent_l)),
            "approx_kl": float(np.mean(kl_l)),
            "clip_frac": float(np.mean(clipfracs)),
            "explained_variance": float("nan") if var_y == 0 else float(1 - np.var(y_true - y_pred) / var_y),
            "learning_rate": float(self.optimizer.param_groups[0]["lr"]),
        }
        for k in aux_stats[0] if aux_stats else []:
            stats[k] = float(np.mean([s[k] for s in aux_stats]))
        for k in sur_stats[0] if sur_stats else []:
            stats[k] = float(np.mean([s[k] for s in sur_stats]))
        stats.update(self.surrogate_stats())
        stats = {**stats, **diag}
        return {**stats, **self.after_update(batch, stats)}

    # ----- checkpointing ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng.bit_generator.state,
            "obs_norm": self.obs_norm.rms.state_dict(),
            "rew_norm": self.rew_norm.state_dict(),
            "buffer": self.buffer.state_dict(),
            "iteration": self.iteration,
            "next_obs": None if self.next_obs is None else self.next_obs.copy(),
        }

    def policy_state_dict(self) -> dict[str, Any]:
        return {"agent": self.agent.state_dict(), "obs_norm": self.obs_norm.rms.state_dict()}

    def load_policy_state_dict(self, s: dict[str, Any]) -> None:
        self.agent.load_state_dict(s["agent"])
        self.obs_norm.rms.load_state_dict(s["obs_norm"])
        self._snapshot()

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.agent.load_state_dict(s["agent"])
        self.optimizer.load_state_dict(s["optimizer"])
        self.rng.bit_generator.state = s["rng"]
        self.obs_norm.rms.load_state_dict(s["obs_norm"])
        self.rew_norm.load_state_dict(s["rew_norm"])
        self.buffer.load_state_dict(s["buffer"])
        self.iteration = s["iteration"]
        self.next_obs = s["next_obs"]
        self._snapshot()


HALF_LOG_2PI = _HALF_LOG_2PI  # log(2 pi) / 2, public name

__all__ = ["HALF_LOG_2PI", "ON_POLICY", "PPO", "Agent", "Batch", "PPOConfig", "RolloutBuffer", "gae", "layer_init",
           "mlp", "numpy_forward"]
