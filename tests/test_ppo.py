"""PPO's pieces on hand-made numbers, and its checkpoint round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dapbench.algorithm import Context, Spaces
from dapbench.api import PPO, Agent, PPOConfig, gae
from dapbench.tasks import get_task
from dapbench.training.env import TrainEnv
from dapbench.training.running_stats import RewardNormalizer, RunningMeanStd


def test_gae_matches_the_definition() -> None:
    r = np.array([1.0, 0.0, 2.0, 1.0], np.float32)
    v = np.array([0.5, 0.2, 0.1, 0.3], np.float32)
    d = np.array([0, 1, 0, 0], np.float32)  # the episode ends after step 1
    g, lam, v_next = 0.9, 0.8, 0.7
    adv = gae(r, v, v_next, d, g, lam)
    delta = [1 + g * 0.2 - 0.5, 0 - 0.2, 2 + g * 0.3 - 0.1, 1 + g * 0.7 - 0.3]
    want = [delta[0] + g * lam * delta[1], delta[1], delta[2] + g * lam * delta[3], delta[3]]
    np.testing.assert_allclose(adv, want, rtol=1e-6)


def _ppo(**cfg) -> PPO:
    spaces = Spaces(3, 2, -np.ones(2, np.float32), np.ones(2, np.float32))
    return PPO(PPOConfig(**cfg), spaces, Context(total_steps=10_000, seed=0, device="cpu"))


def test_clipped_surrogate_values() -> None:
    ppo = _ppo(clip_coef=0.2)
    ratio = torch.tensor([0.5, 1.0, 1.5, 0.5, 1.5])
    adv = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0])
    # per sample: -min(rA, clip(r)A) = [-0.5, -1, -1.2, 0.8, 1.5]
    assert ppo.surrogate_loss(ratio, adv, None).item() == pytest.approx((-0.5 - 1 - 1.2 + 0.8 + 1.5) / 5)


def test_clipped_value_loss_values() -> None:
    ppo = _ppo(clip_coef=0.2)
    mb = type("MB", (), {"values": torch.tensor([0.0, 0.0]), "returns": torch.tensor([1.0, -1.0])})()
    new = torch.tensor([0.5, 0.1])
    # sample 0: max((0.5-1)^2, (0.2-1)^2) = 0.64; sample 1: max(1.1^2, 1.1^2) = 1.21
    assert ppo.value_loss(new, mb).item() == pytest.approx(0.5 * (0.64 + 1.21) / 2)


def test_log_prob_and_entropy_match_torch_normal() -> None:
    agent = Agent(3, 2, (8, 8))
    with torch.no_grad():
        agent.actor_logstd.copy_(torch.tensor([[0.3, -0.5]]))
    obs, act = torch.randn(5, 3), torch.randn(5, 2)
    logp, ent = agent.log_prob_entropy(obs, act)
    ref = torch.distributions.Normal(agent.actor_mean(obs), agent.actor_logstd.exp())
    torch.testing.assert_close(logp, ref.log_prob(act).sum(-1))
    torch.testing.assert_close(ent, ref.entropy().sum(-1)[0])


def test_orthogonal_init_and_state_independent_log_std() -> None:
    agent = Agent(11, 3, (64, 64))
    w = agent.actor_mean[0].weight.detach()
    torch.testing.assert_close(w.T @ w, 2 * torch.eye(11), atol=1e-4, rtol=0)  # gain sqrt(2), orthonormal columns
    assert agent.actor_logstd.shape == (1, 3) and (agent.actor_logstd == 0).all()
    assert agent.actor_mean[-1].weight.abs().max() < 0.05  # final actor layer gain 0.01


def test_running_mean_std_matches_numpy() -> None:
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(500, 4))
    rms = RunningMeanStd((4,))
    for chunk in np.split(x, [1, 2, 50, 51, 300]):
        rms.update(chunk)
    np.testing.assert_allclose(rms.mean, x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(rms.var, x.var(0), rtol=1e-4)


def test_reward_normaliser_scales_by_return_std_and_resets_at_episode_end() -> None:
    norm = RewardNormalizer(gamma=0.5, clip=10.0)
    norm(1.0, episode_end=False)
    assert norm.ret == 1.0
    norm(1.0, episode_end=True)
    assert norm.ret == 0.0
    out = norm(4.0, episode_end=False)
    assert out == pytest.approx(4.0 / math.sqrt(norm.rms.var + 1e-8))


def test_lr_anneals_linearly_to_zero() -> None:
    ppo = _ppo(num_steps=64, num_minibatches=2, update_epochs=1)
    env = TrainEnv(get_task("hopper"), seed=0)
    ppo.spaces = Spaces(11, 3, env.low, env.high)
    algo = PPO(PPOConfig(num_steps=64, num_minibatches=2, update_epochs=1), ppo.spaces,
               Context(total_steps=256, seed=0, device="cpu"))
    lrs = [algo.train_epoch(env, 64)["learning_rate"] for _ in range(4)]
    assert lrs == pytest.approx([3e-4, 3e-4 * 0.75, 3e-4 * 0.5, 3e-4 * 0.25])


def test_state_dict_round_trip_mid_rollout_is_bit_identical() -> None:
    """Stop inside a rollout (a partial buffer), restore into fresh objects, continue: same weights."""
    cfg = PPOConfig(num_steps=128, num_minibatches=4, update_epochs=2)
    task = get_task("hopper")

    def fresh():
        env = TrainEnv(task, seed=1)
        return env, PPO(cfg, Spaces(11, 3, env.low, env.high), Context(2000, 3, "cpu"))

    env_a, a = fresh()
    a.train_epoch(env_a, 300)
    a.train_epoch(env_a, 300)

    env_b, b = fresh()
    b.train_epoch(env_b, 300)
    saved_algo, saved_env = b.state_dict(), env_b.state_dict()
    env_c, c = fresh()
    c.load_state_dict(saved_algo)
    env_c.load_state_dict(saved_env)
    c.train_epoch(env_c, 300)
    for (n, p), (_, q) in zip(a.agent.state_dict().items(), c.agent.state_dict().items(), strict=True):
        assert torch.equal(p, q), n
    np.testing.assert_array_equal(env_a.obs, env_c.obs)
