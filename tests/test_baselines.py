"""The baselines: each surrogate rule on hand-made ratios and advantages, PPO-ARC's competition, DTQL's
trust-region loss, PPO-DiffAug's audit, and a test over the whole registry (two epochs on Hopper, an
interrupted run resumed bit-identically, documented defaults equal to the config's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from algorithms.dtql import DTQL, DTQLConfig, expectile_loss
from algorithms.ppo_diffusion import SYNTHETIC, PPODiffAug, PPODiffAugConfig, trust_region_loss
from algorithms.ppo_variants import (
    ABPPO,
    PPOARC,
    PPOGC,
    compete,
    dual_clip_surrogate,
    point_difference_penalty,
    rollback_surrogate,
    td_residual_sq,
)
from dapbench.algorithm import Context, Spaces
from dapbench.data.make import MakeRequest, _write, collect
from dapbench.diffusion.edm import EDM, EDMConfig
from dapbench.registry import get_algorithm
from dapbench.tasks import get_task
from dapbench.training.env import TrainEnv
from tests.conftest import builtin_algorithms, cli, run_and_kill, table, write_suite
from tests.test_registry_cli import documented_defaults

SMALL_PRIOR = {"train_steps": 300, "denoiser": {"hidden": 64, "depth": 2}}
PPO_TINY = {"num_steps": 256, "num_minibatches": 4, "update_epochs": 2}
DAP_TINY = {**PPO_TINY, "K": 4, "pet_every": 2, "pet_steps": 10, "prior": SMALL_PRIOR}
# The tiny config of every registered algorithm: a new algorithm must add one here (the registry test says so).
TINY: dict[str, dict] = {
    "ppo": PPO_TINY,
    "ppo-gc": PPO_TINY,
    "abppo": PPO_TINY,
    "ppo-arc": PPO_TINY,
    "ppo-dap": DAP_TINY,
    "ppo-diffaug": DAP_TINY,
    "ppo-dtr": {**PPO_TINY, "prior": SMALL_PRIOR},
    "dtql": {**PPO_TINY, "hidden_sizes": [64, 64], "critic_hidden": 64, "critic_pretrain_steps": 30,
             "policy_steps": 30, "prior": SMALL_PRIOR},
}

R = torch.tensor([0.5, 1.0, 1.5, 5.0])


# ----- surrogate rules, by hand --------------------------------------------------------------------------
def test_dual_clip_bounds_the_negative_advantage_side_and_is_ppo_otherwise() -> None:
    ratio = R.clone().requires_grad_(True)
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    loss = dual_clip_surrogate(ratio, adv, eps=0.2, c=3.0)
    # per sample objective: min(0.5, 0.8) = 0.5; A<0: max(min(-1, -1), -3) = -1; min(1.5, 1.2) = 1.2;
    # A<0: max(min(-5, -1.2), -3) = -3   (PPO's would be -5)
    assert loss.item() == pytest.approx(-(0.5 - 1.0 + 1.2 - 3.0) / 4)
    loss.backward()
    # d loss / d r: -A/4 where the unclipped term is active (samples 0, 1), 0 where clipped or dual-clipped
    assert ratio.grad.tolist() == pytest.approx([-0.25, 0.25, 0.0, 0.0])
    ppo_like = dual_clip_surrogate(R, torch.ones(4), 0.2, 3.0)  # A >= 0: PPO's clip
    assert ppo_like.item() == pytest.approx(-(0.5 + 1.0 + 1.2 + 1.2) / 4)


def test_rollback_surrogate_pushes_the_ratio_back_outside_the_boundary() -> None:
    ratio = torch.tensor([0.5, 1.0, 1.5, 0.5], requires_grad=True)
    adv = torch.tensor([1.0, 1.0, 1.0, -1.0])
    loss = rollback_surrogate(ratio, adv, eps=0.2, alpha=0.3)
    # F(0.5) = -0.15 + 1.3 * 0.8 = 0.89; F(1.5) = -0.45 + 1.3 * 1.2 = 1.11
    # objectives: min(0.5, 0.89) = 0.5; 1.0; min(1.5, 1.11) = 1.11; min(-0.5, -0.89) = -0.89
    assert loss.item() == pytest.approx(-(0.5 + 1.0 + 1.11 - 0.89) / 4)
    loss.backward()
    # sample 2 (A > 0, r > 1 + eps): d loss / d r = +alpha / 4, descent lowers r (PPO: 0);
    # sample 3 (A < 0, r < 1 - eps): -alpha / 4, descent raises r (PPO: 0)
    assert ratio.grad.tolist() == pytest.approx([-0.25, -0.25, 0.075, -0.075])


def test_abppo_loss_is_rollback_plus_point_difference_penalty() -> None:
    ratio, adv = torch.tensor([0.5, 1.0, 1.5, 0.5]), torch.tensor([1.0, 1.0, 1.0, -1.0])
    assert point_difference_penalty(ratio).item() == pytest.approx((0.25 + 0 + 0.25 + 0.25) / 4)
    algo = _bare(ABPPO, pd_coef=2.0)
    assert algo.surrogate_loss(ratio, adv, None).item() == pytest.approx(-0.43 + 2 * 0.1875)


def test_ppo_gc_uses_the_dual_clip() -> None:
    algo = _bare(PPOGC, dual_clip=2.0)
    assert algo.surrogate_loss(R, torch.tensor([1.0, -1.0, 1.0, -1.0]), None).item() == pytest.approx(
        -(0.5 - 1.0 + 1.2 - 2.0) / 4)


def test_arc_competition_and_td_residual_by_hand() -> None:
    # deltas: 1 + 0.5 * 1.0 - 0.5 = 1.0; 0 + 0 - 1.0 = -1.0 (episode ends) -> mean square 1.0
    r, v, d = np.array([1.0, 0.0], np.float32), np.array([0.5, 1.0], np.float32), np.array([0.0, 1.0], np.float32)
    assert td_residual_sq(r, v, 2.0, d, 0.5) == pytest.approx(1.0)
    old, new = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])
    assert compete(old, 0.5, new, 0.4)[1] is True and torch.equal(compete(old, 0.5, new, 0.4)[0], new)
    assert compete(old, 0.5, new, 0.5)[1] is False and torch.equal(compete(old, 0.5, new, 0.6)[0], old)


def test_arc_competes_once_per_update_epoch_after_the_first() -> None:
    env = TrainEnv(get_task("hopper"), seed=0)
    algo = PPOARC(PPOARC.Config(**{**PPO_TINY, "update_epochs": 4}), Spaces(11, 3, env.low, env.high),
                  Context(10_000, 0, "cpu", None, "hopper"))
    stats = algo.train_epoch(env, 512)
    assert stats["n_updates"] == 2 and len(algo._fresh_wins) == 3  # epochs 1, 2, 3 of the last update
    assert 0.0 <= stats["arc_fresh_win_share"] <= 1.0


def test_trust_region_loss_by_hand_and_gradient_reaches_only_the_action() -> None:
    """With F = 0 the denoiser is D(x) = c_skip x; at sigma = sigma_data = 0.5: c_skip = 1/2, c_out^2 = 1/8, so
    L_TR = mean ||(a + sigma eps)/2 - a||^2 * 8."""
    class Zero(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, s, c_noise):
            return x * self.w

    edm = EDM(Zero(), EDMConfig(), act_dim=2, max_action=100.0)
    edm.sample_sigma = lambda n, generator=None, device=None: torch.full((n,), 0.5)
    a = torch.tensor([[0.2, -0.4], [1.0, 0.0]], requires_grad=True)
    loss = trust_region_loss(edm, a, torch.zeros(2, 3), torch.Generator().manual_seed(3))
    eps = torch.randn((2, 2), generator=torch.Generator().manual_seed(3))
    expected = ((((a.detach() + 0.5 * eps) / 2 - a.detach()) ** 2).sum(-1) * 8).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert a.grad is not None and a.grad.abs().sum() > 0


def test_expectile_loss_by_hand() -> None:
    diff = torch.tensor([1.0, -2.0])
    assert expectile_loss(diff, 0.7).item() == pytest.approx((0.7 * 1 + 0.3 * 4) / 2)


def _bare(cls, **cfg):
    return cls(cls.Config(**cfg), Spaces(11, 3, -np.ones(3), np.ones(3)), Context(10_000, 0, "cpu", None, "hopper"))


# ----- algorithms on logged data -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def dataset(env_dirs) -> str:
    """Hopper logged with a fixed random linear policy plus noise (3,000 steps)."""
    task = get_task("hopper")
    rng = np.random.default_rng(1)
    W = rng.normal(size=(3, 11)) / np.sqrt(11)
    episodes = collect(task, lambda o: (0.5 * np.tanh(W @ o) + 0.2 * rng.normal(size=3)).astype(np.float32),
                       3000, seed=0)
    req = MakeRequest("hopper", "random", seed=77, steps=3000)
    _write(req, task, episodes, None, 0.0)
    return req.id


def test_ppo_diffaug_mixes_virtual_samples_and_the_audit_flags_them(dataset) -> None:
    env = TrainEnv(get_task("hopper"), seed=0)
    algo = PPODiffAug(PPODiffAugConfig(**DAP_TINY), Spaces(11, 3, env.low, env.high),
                      Context(10_000, 0, "cpu", dataset, "hopper"))
    seen = []
    process = algo.process_batch
    algo.process_batch = lambda b: seen.append(process(b)) or seen[-1]
    stats = algo.train_epoch(env, 512)
    assert stats["spr"] == pytest.approx(64 / (256 + 64)) and stats["oglr"] > 0.01, stats
    b = seen[-1]
    assert int((b.origin == SYNTHETIC).sum()) == 64 and int((b.origin == 0).sum()) == 256
    virtual = b.origin == SYNTHETIC
    assert torch.all(b.actions[virtual].abs() <= 1.0)  # prior samples stay in the action box
    assert torch.allclose(b.advantages[virtual], b.returns[virtual] - b.values[virtual])


def test_ppo_diffaug_rejects_an_auxiliary_loss() -> None:
    with pytest.raises(ValueError, match="no auxiliary loss"):
        PPODiffAugConfig(lambda_aux=0.01)


def test_dtql_offline_stage_trains_the_actor_and_seeds_the_normaliser(dataset) -> None:
    env = TrainEnv(get_task("hopper"), seed=0)
    algo = DTQL(DTQLConfig(**TINY["dtql"]), Spaces(11, 3, env.low, env.high),
                Context(10_000, 0, "cpu", dataset, "hopper"))
    before = [p.detach().clone() for p in algo.agent.actor_mean.parameters()]
    critic_before = [p.detach().clone() for p in algo.agent.critic.parameters()]
    offline = algo.offline_stage()
    assert algo.offline_done and {"offline_q_loss", "offline_v_loss", "offline_tr_loss"} <= set(offline)
    assert any(not torch.equal(p, q) for p, q in zip(before, algo.agent.actor_mean.parameters(), strict=True))
    assert all(torch.equal(p, q) for p, q in zip(critic_before, algo.agent.critic.parameters(), strict=True))
    assert algo.obs_norm.rms.count == 3000
    stats = algo.train_epoch(env, 256)  # no second offline stage
    assert "offline_q_loss" not in stats and stats["n_updates"] == 1


# ----- the whole registry ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", builtin_algorithms())
def test_every_algorithm_runs_resumes_bit_identically_and_documents_its_defaults(name: str, dataset, tmp_path: Path,
                                                                                 monkeypatch) -> None:
    assert name in TINY, f"add a tiny config for {name!r} to tests/test_baselines.py::TINY"
    suite = write_suite(tmp_path / "s.yaml", seeds=[0], algorithms=[{"name": name, "config": TINY[name]}],
                        budget={"total_steps": 2000, "steps_per_epoch": 1000}, dataset=dataset)
    run = Path("hopper") / name / "seed_0"
    assert cli("run", suite, "--results", tmp_path / "full") == 0
    # killed with SIGKILL in epoch 2 (its in-memory state is lost), then resumed from the epoch-1 checkpoint
    killed_at = run_and_kill(suite, tmp_path / "cut", tmp_path / "cut" / run, after_epoch=1, settle=0.05)
    assert killed_at == 1
    assert cli("run", suite, "--results", tmp_path / "cut") == 0
    full, cut = table(tmp_path / "full" / run), table(tmp_path / "cut" / run)
    assert len(full) == 2 and full["eval_return_mean"].notna().all()
    pd.testing.assert_frame_equal(full, cut, check_exact=True)

    cls = get_algorithm(name)
    assert documented_defaults(name) == cls.Config().model_dump(mode="json")
    assert (cls.reconstruction is not None) == (name in {"ppo-gc", "abppo", "ppo-arc"})
