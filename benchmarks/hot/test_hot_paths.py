"""pytest-benchmark benchmarks of the hot paths (not part of the test suite: `testpaths` is tests/).

    .venv/bin/python -m pytest benchmarks/hot --benchmark-autosave            # run, save under .benchmarks/
    .venv/bin/python -m pytest benchmarks/hot --benchmark-compare             # against the last saved run
    .venv/bin/python -m pytest benchmarks/hot --benchmark-compare=0001 --benchmark-compare-fail=mean:25%

One torch thread, Hopper-v5 sizes (11-dim observations, 3-dim actions), PPO-DAP's default prior network
(256 x 3) and K = 10. Each benchmark builds its objects in an untimed setup.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algorithms.proposer import QHead
from dapbench.algorithm import Context, Spaces
from dapbench.api import PPO, PPOConfig
from dapbench.diffusion.prior import ActionPrior, PriorConfig
from dapbench.diffusion.sampler import SamplerConfig, sample
from dapbench.tasks import get_task
from dapbench.training.env import TrainEnv

STATES, K = 2048, 10


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _ppo() -> tuple[PPO, TrainEnv]:
    env = TrainEnv(get_task("hopper"), seed=0)
    algo = PPO(PPOConfig(), Spaces(11, 3, env.low, env.high), Context(1_000_000, 0, "cpu", None, "hopper"))
    return algo, env


def test_rollout_collection(benchmark) -> None:
    """2,047 environment steps with the policy (one short of a rollout, so no update runs)."""
    algos: list[PPO] = []

    def setup():
        algo, env = _ppo()
        algos.append(algo)
        return (env, STATES - 1), {}

    benchmark.pedantic(lambda env, n: algos[-1].train_epoch(env, n), setup=setup, rounds=5)


def test_ppo_update(benchmark) -> None:
    """One PPO update on a full 2,048-step rollout: 10 epochs x 32 minibatches of 64."""
    algos: list[PPO] = []

    def setup():
        algo, env = _ppo()
        algo.train_epoch(env, STATES - 1)
        algo.buffer.pos = STATES  # the rollout is full: update() is what runs next
        algos.append(algo)
        return (), {}

    benchmark.pedantic(lambda: algos[-1].update(), setup=setup, rounds=5)


def _prior() -> ActionPrior:
    torch.manual_seed(0)
    prior = ActionPrior(11, 3, 1.0, PriorConfig())
    prior.eval()
    return prior


def test_proposals_with_gradient_guidance(benchmark) -> None:
    """K = 10 guided proposals for each of 2,048 states: 5 Euler steps, grad_a Q at each."""
    prior, q = _prior(), QHead(11, 3, (64, 64))
    obs = torch.randn(STATES, 11, generator=torch.Generator().manual_seed(0)).repeat_interleave(K, 0)

    def grad_q(a):
        with torch.enable_grad():
            a = a.detach().requires_grad_(True)
            return torch.autograd.grad(q(obs, a).sum(), a)[0]

    def run():
        with torch.no_grad():
            return sample(prior.edm, prior.cond(obs), SamplerConfig(), torch.Generator().manual_seed(0),
                          grad_q=grad_q, alpha_max=0.3)

    out = benchmark.pedantic(run, rounds=3)
    assert out.shape == (STATES * K, 3)


def test_pet_step(benchmark) -> None:
    """One LoRA (peft) step of the prior's denoising loss on a minibatch of 256."""
    from peft import LoraConfig, get_peft_model

    prior = _prior()
    net = prior.edm.net
    get_peft_model(net, LoraConfig(r=8, lora_alpha=16, target_modules=net.lora_targets, lora_dropout=0.0))
    for name, p in prior.named_parameters():
        p.requires_grad_("lora_" in name)
    opt = torch.optim.Adam([p for p in prior.parameters() if p.requires_grad], lr=1e-5)
    g = torch.Generator().manual_seed(0)
    obs, act = torch.randn(256, 11, generator=g), torch.rand(256, 3, generator=g) * 2 - 1
    prior.train()

    def step():
        loss = prior.loss(obs, act, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    assert np.isfinite(benchmark.pedantic(step, rounds=50, warmup_rounds=5))


def test_aggregation(benchmark) -> None:
    """rliable aggregates (IQM, mean, median, optimality gap with stratified bootstrap intervals) of 7
    algorithms x 10 runs x 8 tasks, 2,000 repetitions: what `dapbench report` does per metric."""
    from dapbench.analysis.aggregate import aggregate_metrics

    rng = np.random.default_rng(0)
    scores = {f"algo{i}": rng.normal(0.5 + 0.05 * i, 0.2, size=(10, 8)) for i in range(7)}
    out = benchmark.pedantic(aggregate_metrics, args=(scores, 2000), rounds=3)
    assert len(out) == 2
