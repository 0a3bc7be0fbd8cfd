"""The protocol horizon (issue 14): schedules scale to `horizon_steps`, so a short run under a long horizon is
exactly the first epochs of the long run and extends to it by resuming; run folders made by the previous
release (tests/fixtures/legacy-0.1, written by dapbench 0.1 at commit 105523fb) keep their identity, resume
and reproduce."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from dapbench.results.provenance import cpu_model
from dapbench.results.store import RunStore
from dapbench.suite import expand, load_suite
from dapbench.verify.reproduce import reproduce
from tests.conftest import REPO, cli, table, write_suite
from tests.test_baselines import DAP_TINY, dataset  # noqa: F401  (the logged-data fixture)

LEGACY = REPO / "tests" / "fixtures" / "legacy-0.1"
RUN = Path("hopper/ppo/seed_0")


def _suite(path: Path, algorithm: dict, total: int, horizon: int | None, **extra) -> Path:
    budget = {"total_steps": total, "steps_per_epoch": 1000, **({"horizon_steps": horizon} if horizon else {})}
    return write_suite(path, seeds=[0], algorithms=[algorithm], budget=budget, **extra)


@pytest.mark.parametrize("algo", ["ppo", "ppo-dap"])
def test_a_short_run_under_a_long_horizon_is_the_first_epochs_and_extends_by_resuming(
        algo: str, dataset, tmp_path: Path, capsys) -> None:  # noqa: F811
    config = {"num_steps": 512, "num_minibatches": 4, "update_epochs": 2} if algo == "ppo" else DAP_TINY
    entry = {"name": algo, "config": config}
    run = Path("hopper") / algo / "seed_0"
    long = _suite(tmp_path / "long.yaml", entry, 6000, None, dataset=dataset)
    short = _suite(tmp_path / "short.yaml", entry, 3000, 6000, dataset=dataset)
    assert cli("run", long, "--results", tmp_path / "long") == 0
    assert cli("run", short, "--results", tmp_path / "short") == 0
    full, part = table(tmp_path / "long" / run), table(tmp_path / "short" / run)
    assert len(full) == 6 and len(part) == 3
    pd.testing.assert_frame_equal(part, full.iloc[:3], check_exact=True)
    # the same short run extended to the full budget under the same horizon: resumed from epoch 3, not rerun
    extended = _suite(tmp_path / "ext.yaml", entry, 6000, 6000, dataset=dataset)
    capsys.readouterr()
    assert cli("status", extended, "--results", tmp_path / "short") == 0  # not "done": 3 of the 6 epochs
    shown = capsys.readouterr().out
    assert "partial" in shown and "3/6" in shown and "done" not in shown
    assert cli("run", extended, "--results", tmp_path / "short") == 0
    pd.testing.assert_frame_equal(table(tmp_path / "short" / run), full, check_exact=True)
    log = RunStore(tmp_path / "short" / run).log_path.read_text()
    assert "resumed from epoch 3" in log


def test_a_short_run_without_its_checkpoint_extends_from_the_start_to_the_same_numbers(tmp_path: Path) -> None:
    """A committed run folder (no checkpoint) extended on a new machine: rerun from epoch 0, said in its log."""
    entry = {"name": "ppo", "config": {"num_steps": 512, "num_minibatches": 4, "update_epochs": 2}}
    short = _suite(tmp_path / "short.yaml", entry, 2000, 4000)
    long = _suite(tmp_path / "long.yaml", entry, 4000, 4000)
    assert cli("run", short, "--results", tmp_path / "a") == 0
    assert cli("run", long, "--results", tmp_path / "b") == 0
    RunStore(tmp_path / "a" / RUN).checkpoint_path.unlink()
    assert cli("run", long, "--results", tmp_path / "a") == 0
    pd.testing.assert_frame_equal(table(tmp_path / "a" / RUN), table(tmp_path / "b" / RUN), check_exact=True)
    assert "no checkpoint in" in RunStore(tmp_path / "a" / RUN).log_path.read_text()


def test_a_horizon_shorter_than_the_budget_is_refused(tmp_path: Path, capsys) -> None:
    suite = _suite(tmp_path / "s.yaml", {"name": "ppo"}, 6000, 3000)
    assert cli("run", suite, "--results", tmp_path / "r") == 2
    assert "horizon_steps 3000 for hopper is shorter than total_steps 6000" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_the_horizon_field_leaves_existing_identities_alone() -> None:
    """The previous release's spec hash is what today's code computes for the same suite."""
    spec = expand(load_suite(LEGACY / "suite.yaml"))[0]
    assert spec.hash == RunStore(LEGACY / "done" / RUN).read_spec().hash
    assert spec.identity == spec.hash and spec.horizon == spec.total_steps


def test_a_previous_release_run_folder_resumes_and_reproduces(tmp_path: Path, capsys) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(LEGACY / "partial", partial)
    assert RunStore(partial / RUN).status().epoch == 2  # killed by SIGKILL in epoch 3 under 0.1
    assert cli("run", LEGACY / "suite.yaml", "--results", partial) == 0
    assert "resumed from epoch 2" in RunStore(partial / RUN).log_path.read_text()
    old = table(LEGACY / "done" / RUN)
    new = table(partial / RUN)
    # Bit-identical on the CPU model the fixture was made on; another model's BLAS kernels may round matmuls
    # differently (seen: Intel Xeon -> AMD EPYC, 1e-10 relative by epoch 4), which reproduce names as a stack change.
    same_cpu = RunStore(LEGACY / "done" / RUN).read_provenance()[-1]["cpu"] == cpu_model()
    rtol = 0.0 if same_cpu else 1e-3  # a wrong resume differs at once and by far more (another RNG stream)
    pd.testing.assert_frame_equal(new[old.columns], old, check_exact=same_cpu, rtol=rtol or 1e-5)  # 0.1's columns
    r = reproduce(LEGACY / "done" / RUN, rtol=rtol)
    assert r.reproduces and not r.missing, (r.diffs, r.missing)
    assert r.bit_identical if same_cpu else any(c.startswith("cpu ") for c in r.stack_changes)
    assert {"oglr", "spr", "behaviour_logp_gap"} <= set(r.added)
