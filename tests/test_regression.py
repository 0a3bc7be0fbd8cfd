"""`dapbench check`: the regression gate catches a broken PPO, passes the real one, and gates determinism."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from dapbench import registry
from dapbench.api import PPO
from dapbench.verify.gate import bootstrap_diff_ci, probability_of_improvement
from tests.conftest import REPO, cli

CI_SUITE = REPO / "suites" / "ci.yaml"
BASELINE = REPO / "results" / "baselines" / "ci.json"
# Tests share the cores with whatever else runs, which skews steps/s against the run's own raw-env
# reference; outside test_speed_memory_and_audit_rules only a 10x slowdown counts here. The gate in
# .ci/run uses the default tolerance on a machine doing nothing else.
LOOSE_SPEED = ("--speed-tol", "0.9")


class FlippedAdvantagePPO(PPO):
    """A deliberately broken PPO: the surrogate climbs -A instead of A."""

    def surrogate_loss(self, ratio, adv, mb):
        return super().surrogate_loss(ratio, -adv, mb)


def _ppo_suite(path: Path, algorithm: str, seeds: int | list[int], launcher: str) -> Path:
    """suites/ci.yaml's PPO cell only, run by `algorithm` under the label `ppo`."""
    body = yaml.safe_load(CI_SUITE.read_text())
    ppo = next(a for a in body["algorithms"] if a["name"] == "ppo")
    body.update(algorithms=[{**ppo, "name": algorithm, "label": "ppo"}], seeds=seeds, launcher={"name": launcher})
    for k in ("dataset", "datasets"):
        body.pop(k, None)
    path.write_text(yaml.safe_dump(body))
    return path


@pytest.fixture(scope="module")
def real_ppo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("real")
    # fresh processes, as in .ci/run, so that each run's peak RSS is its own
    assert cli("run", _ppo_suite(root / "ci.yaml", "ppo", [0, 1], "local"), "--results", root / "results") == 0
    return root / "results"


def test_the_gate_passes_the_real_ppo(real_ppo: Path, capsys) -> None:
    assert cli("check", real_ppo, "--baseline", BASELINE, *LOOSE_SPEED) == 0
    out = capsys.readouterr().out
    assert "checks passed" in out and "hopper/ppo-dap: in the baseline, not in the results" in out


def test_the_gate_fails_a_ppo_with_the_advantage_sign_flipped(tmp_path: Path, capsys) -> None:
    registry.register("ppo-flipped-adv", FlippedAdvantagePPO)
    try:
        # in this process (the debug launcher), where the broken class is registered
        suite = _ppo_suite(tmp_path / "ci.yaml", "ppo-flipped-adv", 3, "debug")
        assert cli("run", suite, "--results", tmp_path / "r") == 0
    finally:
        registry.unregister("ppo-flipped-adv")
    capsys.readouterr()
    # peak RSS here is pytest's whole process, not the run's: memory is not what this test is about
    assert cli("check", tmp_path / "r", "--baseline", BASELINE, "--mem-tol", "100", *LOOSE_SPEED) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "checks failed" in out and "hopper/ppo final return" in out and "hopper/ppo ALC@40" in out, out


def test_the_determinism_gate_names_the_run_and_column_that_differ(real_ppo: Path, tmp_path: Path, capsys) -> None:
    twin = tmp_path / "twin"
    shutil.copytree(real_ppo, twin)
    assert cli("check", real_ppo, "--baseline", BASELINE, "--repeat", twin, *LOOSE_SPEED) == 0
    run = twin / "hopper" / "ppo" / "seed_1" / "metrics.parquet"
    df = pd.read_parquet(run)
    df.loc[df["epoch"] == 4, "approx_kl"] *= 1.0 + 1e-12
    df.to_parquet(run, index=False)
    capsys.readouterr()
    assert cli("check", real_ppo, "--baseline", BASELINE, "--repeat", twin, *LOOSE_SPEED) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "1 of 6 checks failed: hopper/ppo/seed_1 determinism (approx_kl differs from epoch 4)" in out, out


def test_a_failed_run_fails_the_gate_with_its_error(real_ppo: Path, tmp_path: Path, capsys) -> None:
    results = tmp_path / "r"
    shutil.copytree(real_ppo, results)
    status = results / "hopper" / "ppo" / "seed_1" / "status.json"
    body = json.loads(status.read_text())
    status.write_text(json.dumps({**body, "state": "failed", "error": "non-finite policy_loss at epoch 3"}))
    assert cli("check", results, "--baseline", BASELINE, *LOOSE_SPEED) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "non-finite policy_loss at epoch 3" in out


def test_bad_input_is_exit_2_and_names_the_file(real_ppo: Path, tmp_path: Path, capsys) -> None:
    assert cli("check", real_ppo, "--baseline", tmp_path / "none.json") == 2
    assert "none.json: baseline file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert cli("check", real_ppo, "--baseline", bad) == 2
    assert "bad.json: malformed baseline" in capsys.readouterr().err
    assert cli("check", tmp_path / "nowhere", "--baseline", BASELINE) == 2
    assert "nowhere: no such results folder" in capsys.readouterr().err


def test_update_writes_a_baseline_with_provenance_that_the_same_results_pass(real_ppo: Path, tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    assert cli("check", real_ppo, "--baseline", path, "--update") == 0
    body = json.loads(path.read_text())
    assert set(body["cells"]) == {"hopper/ppo"} and body["cells"]["hopper/ppo"]["seeds"] == [0, 1]
    assert body["provenance"]["packages"]["torch"] and "commit" in body["provenance"]["code"]
    assert cli("check", real_ppo, "--baseline", path, *LOOSE_SPEED) == 0


def test_speed_memory_and_audit_rules() -> None:
    from dapbench.verify.gate import Cell, Tolerances, check_cell

    base = Cell(task="hopper", label="ppo-dap", algorithm="ppo-dap", seeds=[0, 1], spec_hashes=["a", "b"],
                table_sha256=["x", "y"], final_return=[100.0, 110.0], alc=[50.0, 60.0], speed=[0.40, 0.40],
                peak_rss_mb=[500.0, 500.0], audit={"oglr": [0.0, 0.0], "spr": [0.0, 0.0], "ess_k": [0.9, 0.9]})

    def verdicts(**changes) -> dict[str, bool]:
        return {v.check.split(" (")[0]: v.ok for v in check_cell("k", base, base.model_copy(update=changes),
                                                                 Tolerances())}

    assert all(verdicts().values())
    assert not verdicts(speed=[0.27, 0.27])["speed"] and verdicts(speed=[0.29, 0.29])["speed"]  # floor 0.70
    assert not verdicts(peak_rss_mb=[610.0, 610.0])["peak RSS"] and verdicts(peak_rss_mb=[590.0, 590.0])["peak RSS"]
    assert not verdicts(audit={"oglr": [0.0, 1e-9], "spr": [0.0, 0.0], "ess_k": [0.9, 0.9]})["audit oglr"]
    assert not verdicts(audit={"oglr": [0.0, 0.0], "spr": [0.0, 0.0], "ess_k": [0.3, 0.3]})["audit ess_k"]
    assert not verdicts(audit={"oglr": [0.0, 0.0], "spr": [0.0, 0.0]})["audit ess_k"]  # no longer logged


def test_statistics_on_known_values() -> None:
    assert probability_of_improvement(np.array([1.0, 2.0]), np.array([0.0, 3.0])) == 0.5
    assert probability_of_improvement(np.array([5.0, 5.0]), np.array([5.0])) == 0.5
    assert probability_of_improvement(np.array([0.0]), np.array([1.0, 2.0])) == 0.0
    assert bootstrap_diff_ci(np.array([3.0, 3.0]), np.array([1.0, 1.0, 1.0]), 500, 0) == (2.0, 2.0)
    lo, hi = bootstrap_diff_ci(np.array([0.0, 1.0, 2.0]), np.array([100.0, 110.0, 120.0]), 2000, 0)
    assert -120 <= lo < hi < 0 and lo <= -110 + 1e-9 < hi
