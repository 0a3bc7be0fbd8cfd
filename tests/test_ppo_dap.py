"""PPO-DAP: the prior, guidance, energy weights, PET, the on-policy audit, and resume."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from algorithms.ppo_dap import PPODAP, DAPBatch, PPODAPConfig, energy_weights, ess_over_k
from algorithms.proposer import on_bound, spearman_rows
from dapbench.algorithm import Context, Spaces
from dapbench.data.load import load_transitions
from dapbench.data.make import MakeRequest, _write, collect
from dapbench.diffusion.nets import DenoiserConfig
from dapbench.diffusion.prior import PriorConfig, train_prior
from dapbench.diffusion.sampler import FrozenDenoiser, SamplerConfig, sample
from dapbench.registry import get_algorithm
from dapbench.tasks import get_task
from dapbench.training.env import TrainEnv
from tests.conftest import cli, run_and_kill, table, write_suite

PET_KL_BOUND = 0.05  # the KL to the original prior a PET round of the defaults may reach (docs/algorithms.md)
SMALL_PRIOR = {"train_steps": 300, "denoiser": {"hidden": 64, "depth": 2}}
TINY = {"num_steps": 256, "num_minibatches": 4, "update_epochs": 2, "K": 4, "pet_every": 2, "pet_steps": 10,
        "prior": SMALL_PRIOR}


@pytest.fixture(scope="module")
def bimodal_dataset(env_dirs) -> str:
    """Hopper logged with a behaviour policy whose actions are bimodal given the state (as in datasets
    mixing two behaviour policies): a = 0.3 tanh(W s) + 0.5 e (1, -1, 1), e = +-1, plus N(0, 0.05^2)."""
    task = get_task("hopper")
    rng = np.random.default_rng(0)
    W = rng.normal(size=(3, 11)) / np.sqrt(11)
    direction = np.array([1.0, -1.0, 1.0])

    def act(o: np.ndarray) -> np.ndarray:
        e = rng.choice([-1.0, 1.0])
        return (0.3 * np.tanh(W @ o) + 0.5 * e * direction + 0.05 * rng.normal(size=3)).astype(np.float32)

    episodes = collect(task, act, 4000, seed=0)
    req = MakeRequest("hopper", "random", seed=99, steps=4000)  # an id of its own: dapbench/hopper/random-s99-v0
    _write(req, task, episodes, None, 0.0)
    return req.id


def _energy_score(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean energy score of samples x (n, S, d) for outcomes y (n, d): E||X - y|| - E||X - X'|| / 2."""
    t1 = (x - y[:, None]).norm(dim=-1).mean(1)
    t2 = (x[:, :, None] - x[:, None, :]).norm(dim=-1).mean((1, 2))
    return float((t1 - 0.5 * t2).mean())


def test_prior_samples_both_modes_of_a_two_mode_distribution() -> None:
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(4000, 3, generator=g)
    mode = (torch.randint(0, 2, (4000,), generator=g) * 2 - 1).float()
    act = torch.stack([0.6 * mode, -0.3 * mode], 1) + 0.05 * torch.randn(4000, 2, generator=g)
    prior, curve = train_prior(obs, act, 1.0, PriorConfig(denoiser=DenoiserConfig(hidden=64, depth=2),
                                                           train_steps=2000))
    assert curve[-1] < curve[0]
    x = sample(prior.edm, prior.cond(torch.randn(2000, 3, generator=g)), SamplerConfig(),
               torch.Generator().manual_seed(1))[:, 0]
    up, down, between = ((x - 0.6).abs() < 0.15).float().mean(), ((x + 0.6).abs() < 0.15).float().mean(), (
        x.abs() < 0.3).float().mean()
    assert up > 0.3 and down > 0.3, f"modes: {up:.2f} near +0.6, {down:.2f} near -0.6"
    assert between < 0.15, f"{between:.2f} of the samples fall between the modes"


def test_prior_fits_held_out_logged_actions_better_than_gaussians(bimodal_dataset) -> None:
    """Measure: the energy score of 16 samples per held-out state (lower is better), against an
    unconditional Gaussian and a linear-conditional Gaussian a ~ N(W s + b, Sigma) fitted to the same data."""
    t = load_transitions(bimodal_dataset, get_task("hopper"))
    perm = torch.randperm(len(t), generator=torch.Generator().manual_seed(0))
    tr, te = perm[: int(0.8 * len(t))], perm[int(0.8 * len(t)):]
    prior, _ = train_prior(t.obs[tr], t.actions[tr], 1.0,
                           PriorConfig(denoiser=DenoiserConfig(hidden=64, depth=2), train_steps=1500))
    S, y = 16, t.actions[te]
    x_prior = sample(prior.edm, prior.cond(t.obs[te].repeat_interleave(S, 0)), SamplerConfig(),
                     torch.Generator().manual_seed(1)).view(len(te), S, -1)
    noise = torch.randn(len(te), S, 3, generator=torch.Generator().manual_seed(2))
    mu, cov = t.actions[tr].mean(0), torch.cov(t.actions[tr].T)
    x_gauss = mu + noise @ torch.linalg.cholesky(cov).T
    X = torch.cat([t.obs[tr], torch.ones(len(tr), 1)], 1)
    W = torch.linalg.lstsq(X, t.actions[tr]).solution
    res = t.actions[tr] - X @ W
    x_lin = (torch.cat([t.obs[te], torch.ones(len(te), 1)], 1) @ W)[:, None] + noise @ torch.linalg.cholesky(
        res.T @ res / len(tr)).T
    es = {name: _energy_score(x, y) for name, x in (("prior", x_prior), ("gauss", x_gauss), ("linear", x_lin))}
    assert es["prior"] < 0.95 * es["linear"] and es["linear"] < es["gauss"], es


def test_gradient_guidance_raises_the_mean_q_of_proposals() -> None:
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(3000, 3, generator=g)
    act = torch.rand(3000, 2, generator=g) * 2 - 1  # uniform prior over the box
    prior, _ = train_prior(obs, act, 1.0, PriorConfig(denoiser=DenoiserConfig(hidden=64, depth=2), train_steps=800))
    target = torch.tensor([0.5, -0.5])

    def q(a: torch.Tensor) -> torch.Tensor:  # a known critic: Q(s, a) = -||a - a*||^2
        return -((a - target) ** 2).sum(-1)

    def grad_q(a):
        with torch.enable_grad():
            a = a.detach().requires_grad_(True)
            return torch.autograd.grad(q(a).sum(), a)[0]

    s = prior.cond(torch.randn(1000, 3, generator=g))
    means = []
    for alpha in (0.0, 0.1, 0.3):
        a = sample(prior.edm, s, SamplerConfig(), torch.Generator().manual_seed(5), grad_q=grad_q, alpha_max=alpha)
        means.append(float(q(a).mean()))
    assert means[0] < means[1] < means[2], means


def test_ess_over_k_is_one_at_beta_zero_and_falls_as_beta_grows() -> None:
    q = torch.randn(500, 10, generator=torch.Generator().manual_seed(0))
    ess = [ess_over_k(energy_weights(q, beta)) for beta in (0.0, 0.5, 1.0, 2.0, 5.0, 50.0)]
    assert ess[0] == pytest.approx(1.0, abs=1e-6)
    assert all(a > b for a, b in itertools.pairwise(ess)), ess
    assert ess[-1] < 0.2 and ess[-1] >= 0.1 - 1e-6  # collapse approaches 1/K


def _algo(dataset: str, cls: type[PPODAP] = PPODAP, **cfg) -> tuple[PPODAP, TrainEnv]:
    env = TrainEnv(get_task("hopper"), seed=0)
    config = cls.Config(**{**TINY, **cfg})
    return cls(config, Spaces(11, 3, env.low, env.high), Context(10_000, 0, "cpu", dataset, "hopper")), env


def test_pet_changes_only_adapter_parameters_and_the_adapter_is_checkpointed(bimodal_dataset) -> None:
    algo, env = _algo(bimodal_dataset, pet_lr=1e-3)
    before = {n: p.detach().clone() for n, p in algo.prior.named_parameters()}
    pet_params = {id(p) for group in algo.proposer.pet_optimizer.param_groups for p in group["params"]}
    names = {n for n, p in algo.prior.named_parameters() if id(p) in pet_params}
    assert names and all("lora_" in n for n in names), "only adapter parameters are in PET's optimiser"
    algo.train_epoch(env, 512)
    stats = algo.train_epoch(env, 512)  # pet_every=2: a PET round at the end of this epoch
    assert "prior_kl_drift" in stats and stats["prior_kl_drift"] > 0
    after = dict(algo.prior.named_parameters())
    for n, p in after.items():
        if "lora_" in n:
            continue
        assert torch.equal(p, before[n]), f"base weight {n} changed"
    assert any(not torch.equal(after[n], before[n]) for n in names), "PET changed no adapter"

    state = algo.state_dict()
    assert any("lora_" in k for k in state["prior"])
    fresh, _ = _algo(bimodal_dataset, pet_lr=1e-3)
    fresh.load_state_dict(state)
    lora_layers = [m for m in fresh.prior.modules() if hasattr(m, "lora_A")]
    assert len(lora_layers) == len(fresh.prior.edm.net.lora_targets), "wrapped exactly once"
    for (n, p), (_, q) in zip(algo.prior.named_parameters(), fresh.prior.named_parameters(), strict=True):
        assert torch.equal(p, q), n


def test_soft_kl_stays_bounded_when_proposals_collapse_on_a_bound(bimodal_dataset) -> None:
    """Proposals all at the action bound (sigma_K at its 1e-3 floor): the soft-KL term must stay small."""
    algo, _ = _algo(bimodal_dataset)
    n, z = 8, torch.zeros(8)
    mb = DAPBatch(obs=torch.zeros(n, 11), actions=torch.zeros(n, 3), logprobs=z, values=z, advantages=z, returns=z,
                  origin=torch.zeros(n, dtype=torch.uint8), raw_obs=torch.zeros(n, 11), behaviour_logprobs=z.double(),
                  proposals=torch.ones(n, algo.m, 3), prior_mu=torch.ones(n, 3), prior_std=torch.full((n, 3), 1e-3))
    loss, stats = algo.auxiliary_loss(mb)
    # per dimension at most ln(sigma_pi / 1e-3) + ((1 - mu_pi)^2 + 1e-6) / (2 sigma_pi^2) - 1/2 ~ 7.4 with sigma_pi 1;
    # the other direction, KL(pi || N_K), would be ~ 1 / (2e-6) = 500,000 per dimension here
    assert torch.isfinite(loss) and stats["prior_kl"] < 3 * 7.5, stats


def test_frozen_prior_has_no_pet_and_full_finetuning_trains_everything(bimodal_dataset) -> None:
    frozen, _ = _algo(bimodal_dataset, pet="frozen")
    assert frozen.proposer.pet_optimizer is None
    full, _ = _algo(bimodal_dataset, pet="full")
    n_opt = sum(p.numel() for g in full.proposer.pet_optimizer.param_groups for p in g["params"])
    assert n_opt == sum(p.numel() for p in full.prior.parameters())


def test_leaking_configuration_is_caught_by_the_audit(bimodal_dataset) -> None:
    real, env = _algo(bimodal_dataset)
    leaky, env2 = _algo(bimodal_dataset, cls=get_algorithm("ppo-dap-leak"), leak_offline=0.25)  # the test plug-in
    s_real, s_leak = real.train_epoch(env, 512), leaky.train_epoch(env2, 512)
    assert s_real["oglr"] == 0.0 and s_real["spr"] == 0.0, "the real method is strictly on-policy"
    assert s_leak["spr"] == pytest.approx(64 / (256 + 64))
    assert s_leak["oglr"] > 0.05, s_leak["oglr"]
    assert 0 < s_real["aux_grad_share"] < 1


def test_ppo_dap_resumed_after_a_kill_is_bit_identical(bimodal_dataset, tmp_path: Path) -> None:
    config = {**TINY, "q_heads": 2}  # the extra Q head's state is checkpointed too
    suite = write_suite(tmp_path / "dap.yaml", seeds=[0], algorithms=[{"name": "ppo-dap", "config": config}],
                        budget={"total_steps": 6000, "steps_per_epoch": 1000}, dataset=bimodal_dataset)
    assert cli("run", suite, "--results", tmp_path / "full") == 0
    run = Path("hopper/ppo-dap/seed_0")
    assert 3 <= run_and_kill(suite, tmp_path / "killed", tmp_path / "killed" / run, after_epoch=3) < 6
    assert cli("run", suite, "--results", tmp_path / "killed") == 0
    full, killed = table(tmp_path / "full" / run), table(tmp_path / "killed" / run)
    pd.testing.assert_frame_equal(full, killed, check_exact=True)
    assert {"oglr", "spr", "ess_k", "prior_kl_drift", "aux_grad_share"} <= set(full.columns)
    assert full["prior_kl_drift"].notna().sum() == 3  # PET every 2 epochs


def test_proposals_on_a_subset_of_states_mask_the_rest_out_of_the_auxiliary_loss(bimodal_dataset) -> None:
    algo, env = _algo(bimodal_dataset, proposal_frac=0.25)
    n, g = 16, torch.Generator().manual_seed(0)
    mask = torch.zeros(n)
    mask[::4] = 1.0
    mb = DAPBatch(obs=torch.randn(n, 11, generator=g), actions=torch.zeros(n, 3), logprobs=torch.zeros(n),
                  values=torch.zeros(n), advantages=torch.zeros(n), returns=torch.zeros(n),
                  origin=torch.zeros(n, dtype=torch.uint8), raw_obs=torch.zeros(n, 11),
                  behaviour_logprobs=torch.zeros(n, dtype=torch.float64),
                  proposals=torch.randn(n, algo.m, 3, generator=g) * mask[:, None, None],
                  prior_mu=torch.randn(n, 3, generator=g) * mask[:, None],
                  prior_std=torch.where(mask[:, None] > 0, torch.rand(n, 3, generator=g) + 0.1, 1.0), has_prop=mask)
    loss, stats = algo.auxiliary_loss(mb)
    sub = mb.index(torch.arange(0, n, 4))
    sub.has_prop = None  # the same states with no mask: the loss must be the same
    ref, ref_stats = algo.auxiliary_loss(sub)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert stats["aux_nll"] == pytest.approx(ref_stats["aux_nll"], rel=1e-6)

    seen: list[DAPBatch] = []
    process = algo.process_batch
    algo.process_batch = lambda b: seen.append(process(b)) or seen[-1]
    stats = algo.train_epoch(env, 512)  # 2 rollouts of 256 states, proposals for 64 of each
    assert len(seen) == 2 and all(int(b.has_prop.sum()) == 64 for b in seen)
    for b in seen:
        rows = b.has_prop > 0
        assert b.proposals[~rows].abs().sum() == 0 and b.proposals[rows].abs().sum() > 0
    assert stats["oglr"] == 0.0 and stats["spr"] == 0.0 and 0 < stats["aux_grad_share"] < 1


def test_training_the_prior_leaves_the_global_rngs_alone() -> None:
    """The run that happens to train the shared prior must continue exactly as the runs that load it
    (found by the CI determinism gate: the run that trained it diverged from epoch 1)."""
    g = torch.Generator().manual_seed(0)
    obs, act = torch.randn(64, 11, generator=g), torch.rand(64, 3, generator=g) * 2 - 1
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_prior(obs, act, 1.0, PriorConfig(train_steps=20, denoiser=DenoiserConfig(hidden=32, depth=1)))
    assert torch.equal(torch.rand(3), expected)


# ----- issue 15: each part does its job, measured --------------------------------------------------------------
def test_pooled_energy_weights_do_not_depend_on_q_units_and_stay_between_collapse_and_uniform() -> None:
    q = 0.05 * torch.randn(500, 10, generator=torch.Generator().manual_seed(0))  # a fixed spread, tiny in raw units
    pooled = [ess_over_k(energy_weights(q * c, beta=1.0)) for c in (1e-3, 1.0, 1e3)]
    assert 1 / 10 < pooled[0] < 1 and pooled[0] < 0.6, pooled  # beta 1: sharp enough to select, far from collapse
    assert pooled == pytest.approx([pooled[0]] * 3, rel=1e-5)
    raw = [ess_over_k(energy_weights(q * c, beta=1.0, scale="raw")) for c in (1.0, 1e3)]
    assert raw[0] > 0.99 and raw[1] < 0.2, raw  # the literal form: uniform or collapsed depending on Q's units


def test_spearman_and_bound_share_on_hand_made_values() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    assert spearman_rows(x, torch.tensor([[10.0, 20.0, 30.0, 40.0], [4.0, 3.0, 2.0, 1.0]])).tolist() == \
        pytest.approx([1.0, -1.0])
    a = torch.tensor([[1.0, 0.0], [0.2, -1.0], [0.5, 0.99], [-0.3, 0.3]])
    assert on_bound(a, 1.0).tolist() == [True, True, False, False]


def _box_prior():
    g = torch.Generator().manual_seed(0)
    obs, act = torch.randn(3000, 3, generator=g), torch.rand(3000, 2, generator=g) * 2 - 1  # uniform over the box
    prior, _ = train_prior(obs, act, 1.0, PriorConfig(denoiser=DenoiserConfig(hidden=64, depth=2), train_steps=800))
    return prior, prior.cond(torch.randn(300, 3, generator=g))


def test_noise_aware_guidance_stays_nearer_the_prior_than_the_rising_schedule() -> None:
    """A hand-made prior (uniform over the box) and critic Q = a_1 + a_2 (largest at a corner): from the same
    noise, the rising schedule's last push lands on the final sample; the noise-aware one is undone in part by
    the later denoising steps. Both raise Q; the noise-aware proposals move less and sit on the bounds less."""
    prior, s = _box_prior()
    den = FrozenDenoiser(prior.edm)
    x0 = torch.randn(300 * 4, 2, generator=torch.Generator().manual_seed(1))

    def grad_q(a):
        return torch.ones_like(a)  # grad of a_1 + a_2

    free = sample(den, s, SamplerConfig(), x0=x0, repeat=4)
    assert torch.equal(free, sample(den, s, SamplerConfig(), x0=x0, repeat=4, grad_q=grad_q, alpha_max=0.0))
    out = {}
    for schedule in ("noise", "rising"):
        a = sample(den, s, SamplerConfig(), x0=x0, repeat=4, grad_q=grad_q, alpha_max=0.3, schedule=schedule)
        out[schedule] = {"dist": float((a - free).norm(dim=-1).mean()), "gain": float((a - free).sum(-1).mean()),
                         "bound": float(on_bound(a, 1.0).float().mean())}
    assert out["noise"]["gain"] > 0 and out["rising"]["gain"] > 0, out
    assert out["noise"]["dist"] < out["rising"]["dist"], out
    assert out["noise"]["bound"] < out["rising"]["bound"], out
    assert float(on_bound(free, 1.0).float().mean()) <= out["rising"]["bound"]


def test_proposals_report_bound_share_guided_distance_q_gain_and_q_rank_corr(bimodal_dataset) -> None:
    algo, _ = _algo(bimodal_dataset, q_heads=2)
    P = algo.proposer
    obs = torch.randn(40, 11, generator=torch.Generator().manual_seed(0))
    props, q, stats = P.propose(obs, obs)
    assert props.shape == (40, 4, 3) and q.shape == (40, 4)
    assert set(stats) == {"bound_share", "bound_share_unguided", "guided_dist", "q_gain", "q_rank_corr"}
    assert 0 <= stats["bound_share"] <= 1 and stats["guided_dist"] > 0 and -1 <= stats["q_rank_corr"] <= 1
    assert not torch.equal(P.q.net[0].weight, P.q_extra[0].net[0].weight), "independently initialised heads"
    P.q_value = lambda o, a: a.sum(-1)  # a hand-made critic: guidance must raise it
    _, _, stats = P.propose(obs, obs)
    assert stats["q_gain"] > 0, stats
    unguided, _ = _algo(bimodal_dataset, guidance="energy")
    assert set(unguided.proposer.propose(obs, obs)[2]) == {"bound_share"}


def test_a_pet_round_lowers_the_loss_on_its_pairs_and_stays_near_the_original_prior(bimodal_dataset) -> None:
    defaults = PPODAPConfig()
    algo, env = _algo(bimodal_dataset, pet_every=1000, pet_steps=defaults.pet_steps)  # we call the round
    algo.train_epoch(env, 1024)  # on-policy pairs of a policy that is not the logged one
    out = algo.proposer.pet_round()
    assert out["pet_loss_after"] < 0.99 * out["pet_loss_before"], out
    assert 0 < out["prior_kl_orig"] < PET_KL_BOUND, out
    assert out["prior_kl_drift"] == pytest.approx(out["prior_kl_orig"], rel=1e-4)  # the first round: same reference


def test_the_leak_check_is_a_test_plug_in_and_old_specs_keep_their_identity() -> None:
    """`leak_offline` left the method for the test plug-in `ppo-dap-leak`: a spec stored with it at 0 (every run
    made before) reads back and keeps its hash; any other value is refused; a suite cannot set it."""
    config = PPODAPConfig()
    stored = config.spec_dump()
    assert stored["leak_offline"] == 0.0, "specs keep the retired field at its 'off' value: same hash as before"
    assert PPODAPConfig.from_spec(stored) == config
    with pytest.raises(ValueError, match="'leak_offline' was retired"):
        PPODAPConfig.from_spec({**stored, "leak_offline": 0.25})
    with pytest.raises(ValueError, match="leak_offline"):
        PPODAPConfig.model_validate({"leak_offline": 0.25})
    leak = get_algorithm("ppo-dap-leak").Config()
    assert leak.leak_offline > 0 and "leak_offline" in leak.spec_dump()
