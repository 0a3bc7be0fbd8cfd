"""Every algorithm keeps its tensors on the run's device, and every PPO-family algorithm runs the on-policy audit.

The device check runs on a CPU-only machine: after one warm-up update (optimiser states and lazily built buffers
exist), one more update runs with torch's default device set to `meta`. A tensor created without `device=` then
lands on `meta`, and the first operation mixing it with the run's CPU tensors raises, naming the line: the class of
bug that made PPO-DAP fail on every GPU (a device-less `torch.as_tensor` in `compute_batch`). `torch.from_numpy`
always makes CPU tensors and is outside what this check sees.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from algorithms.ppo_dap import PPODAP
from dapbench.algorithm import Context, Spaces
from dapbench.registry import get_algorithm
from dapbench.tasks import get_task
from dapbench.training.env import TrainEnv
from tests.conftest import builtin_algorithms
from tests.test_baselines import TINY, dataset  # noqa: F401  (the logged-data fixture)

ON_POLICY = {"ppo", "ppo-gc", "abppo", "ppo-arc", "ppo-dap", "ppo-dtr", "dtql"}


def _build(name: str, data: str, cls=None, **extra):
    cls = cls or get_algorithm(name)
    env = TrainEnv(get_task("hopper"), seed=0)
    config = cls.Config.model_validate({**TINY[name], **extra})
    algo = cls(config, Spaces(11, 3, env.low, env.high), Context(100_000, 0, "cpu", data if cls.needs_dataset
                                                                 else None, "hopper"))
    return algo, env


def _update_under_meta(algo, env) -> dict[str, float]:
    n = algo.cfg.num_steps
    algo.train_epoch(env, n)  # warm-up: the first update builds optimiser states
    with torch.device("meta"):
        return algo.train_epoch(env, n)


@pytest.mark.parametrize("name", builtin_algorithms())
def test_no_tensor_is_created_off_the_runs_device(name: str, dataset) -> None:  # noqa: F811
    algo, env = _build(name, dataset)
    stats = _update_under_meta(algo, env)
    assert stats["n_updates"] == 1


class _OldComputeBatchPPODAP(PPODAP):
    """PPO-DAP with dapbench 0.1's bug put back: V(s_N) from a tensor built without `device=`."""

    def next_value(self) -> torch.Tensor:
        with torch.no_grad():
            return self.agent.value(torch.as_tensor(self.next_obs[None]))


def test_the_device_check_catches_the_old_compute_batch(dataset) -> None:  # noqa: F811
    algo, env = _build("ppo-dap", dataset, cls=_OldComputeBatchPPODAP)
    with pytest.raises((RuntimeError, NotImplementedError)):
        _update_under_meta(algo, env)


@pytest.mark.parametrize("name", sorted(ON_POLICY | {"ppo-diffaug"}))
def test_every_ppo_family_algorithm_runs_the_on_policy_audit(name: str, dataset) -> None:  # noqa: F811
    """OGLR, SPR and the behaviour log-prob gap are measured for every PPO-family algorithm: 0 (the gap: float
    rounding under its declared bound) for the on-policy ones; PPO+Diffusion's virtual samples and PPO-DAP's
    deliberate leak show."""
    algo, env = _build(name, dataset)
    stats = algo.train_epoch(env, algo.cfg.num_steps)
    assert {"oglr", "spr", "behaviour_logp_gap"} <= set(stats), sorted(stats)
    bound = type(algo).declared_metrics()["behaviour_logp_gap"].bound
    if name in ON_POLICY:
        assert stats["oglr"] == 0.0 and stats["spr"] == 0.0, stats
        assert 0 <= stats["behaviour_logp_gap"] < bound, stats["behaviour_logp_gap"]
    else:
        assert stats["spr"] > 0 and stats["oglr"] > 0 and math.isinf(stats["behaviour_logp_gap"]), stats


def test_a_leaking_ppo_dap_shows_in_the_audit(dataset) -> None:  # noqa: F811
    algo, env = _build("ppo-dap", dataset, cls=get_algorithm("ppo-dap-leak"))  # the test plug-in
    stats = algo.train_epoch(env, algo.cfg.num_steps)
    assert stats["spr"] == pytest.approx(64 / (256 + 64)) and stats["oglr"] > 0.05
    assert math.isinf(stats["behaviour_logp_gap"]), "offline actions were never acted by this policy"


def test_the_behaviour_log_prob_gap_shows_an_action_the_acting_policy_did_not_take(dataset) -> None:  # noqa: F811
    """Swap one stored action for another after acting: its recomputed log-prob no longer matches the density it
    was drawn from."""
    algo, env = _build("ppo", dataset)
    algo.train_epoch(env, algo.cfg.num_steps - 1)
    algo.buffer.actions[3] += np.float32(0.5)
    stats = algo.train_epoch(env, 1)
    assert stats["behaviour_logp_gap"] > 0.1, stats["behaviour_logp_gap"]
