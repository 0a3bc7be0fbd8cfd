"""Logged datasets: make, list, show, validate, load; determinism; corrupt data; suites that need data."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
import pandas as pd
import pytest
import torch
from minari.data_collector import EpisodeBuffer

from dapbench import registry
from dapbench.algorithm import Context
from dapbench.api import PPO
from dapbench.data.load import dapbench_metadata, header, load_transitions, observations_at, open_dataset
from dapbench.data.make import MakeRequest, make, medium_epoch
from dapbench.tasks import get_task
from tests.conftest import cli, write_suite

BEHAVIOUR_STEPS = 10_000  # two epochs of 5,000


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    mp = pytest.MonkeyPatch()
    mp.setenv("MINARI_DATASETS_PATH", str(root / "minari"))
    yield root
    mp.undo()


def _req(quality: str, **kw) -> MakeRequest:
    return MakeRequest("hopper", quality, kw.pop("seed", 0), kw.pop("steps", 1500),
                       kw.pop("behaviour_steps", BEHAVIOUR_STEPS), kw.pop("behaviour_root", None))


@pytest.fixture(scope="module")
def made(data_dirs):
    """All four qualities of Hopper at tiny budgets, sharing one behaviour run."""
    ids = {}
    for q in ("random", "medium", "replay", "expert"):
        req = _req(q, behaviour_root=data_dirs / "behaviour")
        ids[q] = make(req, log=lambda *_: None)
    return ids


def test_make_list_show_validate_on_a_real_task(made, data_dirs, capsys) -> None:
    assert made["medium"] == "dapbench/hopper/medium-n1500-b10000-v0"
    assert made["replay"] == "dapbench/hopper/replay-b10000-v0" and made["random"] == "dapbench/hopper/random-n1500-v0"
    assert cli("data", "list") == 0
    out = capsys.readouterr().out
    for ds_id in made.values():
        assert ds_id in out
    assert cli("data", "show", made["expert"]) == 0
    out = capsys.readouterr().out
    assert "content_hash" in out and "expert return" in out and "steps: 1500" in out
    for ds_id in made.values():
        assert cli("data", "validate", ds_id) == 0
        assert "valid" in capsys.readouterr().out


def test_quality_definitions(made, data_dirs) -> None:
    beh = pd.read_parquet(data_dirs / "behaviour" / "hopper/ppo/seed_0/metrics.parquet")
    random_meta = dapbench_metadata(open_dataset(made["random"]))
    meta = {q: dapbench_metadata(open_dataset(made[q])) for q in ("medium", "replay", "expert")}
    b = meta["medium"]["behaviour"]
    k, r_exp, thr = medium_epoch(beh["eval_return_mean"].to_numpy(), b["random_return"])
    assert (b["medium_epoch"], b["expert_return"]) == (k, pytest.approx(r_exp))
    assert beh["eval_return_mean"].iloc[k - 1] >= thr and (beh["eval_return_mean"].iloc[: k - 1] < thr).all()
    assert meta["expert"]["behaviour"]["policy_epoch"] == 2 and meta["medium"]["behaviour"]["policy_epoch"] == k
    assert random_meta["behaviour"] is None and random_meta["steps"] == 1500
    # replay: exactly the behaviour run's training stream up to epoch k
    assert meta["replay"]["steps"] == 5000 * k
    ds = open_dataset(made["replay"])
    returns = [float(np.sum(ep.rewards)) for ep in ds.iterate_episodes()]
    n = int(beh["train_episodes"].iloc[0])
    assert np.mean(returns[:n]) == pytest.approx(beh["train_return_mean"].iloc[0], rel=1e-9)


def test_loading_into_the_training_format(made) -> None:
    t = load_transitions(made["expert"], get_task("hopper"))
    assert t.obs.shape == (1500, 11) and t.actions.shape == (1500, 3) and t.next_obs.shape == (1500, 11)
    assert t.rewards.shape == t.terminals.shape == t.timeouts.shape == (1500,)
    assert t.timeouts[-1] == 1, "the episode cut by the step limit ends with a truncation"
    ends = (t.terminals + t.timeouts).bool()
    inner = ~ends[:-1]
    assert (t.next_obs[:-1][inner] == t.obs[1:][inner]).all(), "s' of one step is s of the next"
    assert (t.actions.abs() <= 1).all()


def test_header_and_probe_rows_without_minari(made) -> None:
    """The header (metadata.json alone) and the arrow reader of probe rows give what Minari's reader gives,
    bit for bit: rows linspace(0, N - 1, n) of the flat transitions."""
    for q in ("replay", "expert"):
        h, t = header(made[q]), load_transitions(made[q])
        assert (h.obs_dim, h.act_dim, h.total_steps, h.arrow) == (11, 3, len(t), True)
        assert h.dapbench["content_hash"] == dapbench_metadata(open_dataset(made[q]))["content_hash"]
        rows = torch.linspace(0, len(t) - 1, 257).long()
        assert torch.equal(observations_at(made[q], 257), t.obs[rows])


def test_same_command_same_content_hash(made, data_dirs) -> None:
    for q in ("random", "medium"):
        first = dapbench_metadata(open_dataset(made[q]))["content_hash"]
        # a fresh behaviour folder: the behaviour PPO is trained again from scratch
        make(_req(q, behaviour_root=data_dirs / "behaviour-again"), force=True, log=lambda *_: None)
        assert dapbench_metadata(open_dataset(made[q]))["content_hash"] == first
    other = make(_req("random", seed=1), log=lambda *_: None)
    assert other == "dapbench/hopper/random-s1-n1500-v0"
    assert dapbench_metadata(open_dataset(other))["content_hash"] != first


def _write_public(ds_id: str, gym_id: str, data_format: str | None = None, corrupt=None) -> None:
    env = gym.make(gym_id)
    bufs = []
    for i in range(3):
        obs, _ = env.reset(seed=i)
        o, a, r, te, tr = [obs], [], [], [], []
        for _ in range(20):
            act = env.action_space.sample()
            obs, rew, term, trunc, _ = env.step(act)
            o.append(obs), a.append(act), r.append(rew), te.append(term), tr.append(trunc)
            if term:
                break
        tr[-1] = not te[-1]
        o, a = np.array(o), np.array(a)
        if corrupt:
            o, a = corrupt(o, a)
        bufs.append(EpisodeBuffer(id=i, observations=o, actions=a, rewards=r, terminations=te, truncations=tr))
    kw = {"data_format": data_format} if data_format else {}
    minari.create_dataset_from_buffers(ds_id, bufs, env=env, ref_min_score=0.0, **kw)


def test_a_public_minari_dataset_loads_the_same_way(data_dirs, capsys) -> None:
    """A dataset in the public collection's format (HDF5, no dapbench metadata, a mujoco/ id)."""
    _write_public("mujoco/hopper/medium-v0", "Hopper-v5")
    assert cli("data", "validate", "mujoco/hopper/medium-v0") == 0
    assert "matches task hopper" in capsys.readouterr().out
    t = load_transitions("mujoco/hopper/medium-v0", get_task("hopper"))
    assert t.obs.shape[1] == 11 and t.actions.shape[1] == 3 and len(t) > 0
    assert not header("mujoco/hopper/medium-v0").arrow  # HDF5: probe rows through Minari's reader
    assert torch.equal(observations_at("mujoco/hopper/medium-v0", 9), t.obs[torch.linspace(0, len(t) - 1, 9).long()])


def test_missing_dataset_names_the_command(data_dirs, capsys) -> None:
    assert cli("data", "show", "dapbench/ant/medium-v0") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "'dapbench/ant/medium-v0' not found" in err and "dapbench data make" in err


def test_wrong_action_dimension(data_dirs, capsys) -> None:
    _write_public("test/halfcheetah/random-v0", "HalfCheetah-v5")
    assert cli("data", "validate", "test/halfcheetah/random-v0", "--task", "hopper") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "test/halfcheetah/random-v0" in err and "action shape (6,) but task hopper has (3,)" in err


def test_nan_in_observations(data_dirs, capsys) -> None:
    def nan(o, a):
        o = o.copy()
        o[3, 2] = np.nan
        return o, a

    _write_public("test/hopper/nan-v0", "Hopper-v5", data_format="arrow", corrupt=nan)
    assert cli("data", "validate", "test/hopper/nan-v0") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "'test/hopper/nan-v0' is invalid" in err and "non-finite observations (first at index (3, 2))" in err


def test_truncated_data_file(data_dirs, capsys) -> None:
    _write_public("test/hopper/cut-v0", "Hopper-v5", data_format="arrow")
    root = Path(data_dirs / "minari" / "test/hopper/cut-v0" / "data")
    victim = next(p for p in sorted(root.rglob("*")) if p.is_file() and p.name != "metadata.json")
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
    assert cli("data", "validate", "test/hopper/cut-v0") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "test/hopper/cut-v0" in err and ("damaged" in err or "unreadable" in err)


class NeedsData(PPO):
    """A PPO that loads its logged data at construction (stands in for the algorithms that need one)."""

    needs_dataset = True

    def __init__(self, config, spaces, context: Context) -> None:
        super().__init__(config, spaces, context)
        self.data = load_transitions(context.dataset)
        assert self.data.obs.shape[1] == spaces.obs_dim


@pytest.fixture
def needs_data_algo(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry.algorithms()))
    monkeypatch.setattr(registry, "_PROVIDERS", dict(registry._PROVIDERS))
    registry.register("needs-data", NeedsData)


def test_run_makes_missing_datasets_first(needs_data_algo, data_dirs, tmp_path, capsys) -> None:
    suite = write_suite(tmp_path / "s.yaml", seeds=[0], algorithms=[{"name": "needs-data", "config": {
        "num_steps": 256, "num_minibatches": 4, "update_epochs": 1}}], budget={"total_steps": 1000,
        "steps_per_epoch": 1000}, dataset="dapbench/hopper/random-s7-n800-v0",
        datasets=[{"task": "hopper", "quality": "random", "seed": 7, "steps": 800}])
    assert cli("run", suite, "--results", tmp_path / "r") == 0
    out = capsys.readouterr().out
    assert "making dataset dapbench/hopper/random-s7-n800-v0 first" in out and "1 done, 0 failed" in out
    assert "dapbench/hopper/random-s7-n800-v0" in (tmp_path / "r/hopper/needs-data/seed_0/spec.yaml").read_text()


def test_missing_dataset_without_a_recipe_starts_nothing(needs_data_algo, data_dirs, tmp_path, capsys) -> None:
    suite = write_suite(tmp_path / "s.yaml", seeds=[0], tasks=["walker2d"], algorithms=["needs-data"],
                        budget={"total_steps": 1000, "steps_per_epoch": 1000})
    assert cli("run", suite, "--results", tmp_path / "r") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "dapbench/walker2d/medium-v0: make it with `python -m dapbench data make walker2d --quality medium`" in err
    assert not (tmp_path / "r").exists()


def test_make_command_hint_round_trips_the_id() -> None:
    from dapbench.naming import dataset_id, make_command, make_command_for

    assert dataset_id("ant", "expert", 2, 5000, 300000) == "dapbench/ant/expert-s2-n5000-b300000-v0"
    expected = "python -m dapbench data make ant --quality expert --seed 2 --steps 5000 --behaviour-steps 300000"
    assert make_command_for("dapbench/ant/expert-s2-n5000-b300000-v0") == expected
    assert make_command("ant", "expert", 2, 5000, 300000) == expected
    assert make_command_for("mujoco/hopper/medium-v0") is None
