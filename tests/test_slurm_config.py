"""Slurm settings in suites, and what `run` says where there is no Slurm (no cluster needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dapbench.config import expand, load_suite, slurm_resources
from tests.conftest import REPO, cli, write_suite

MUJOCO8 = REPO / "suites" / "mujoco8.yaml"


def test_mujoco8_targets_slurm_with_more_time_for_humanoidstandup() -> None:
    suite = load_suite(MUJOCO8)
    assert suite.launcher.name == "slurm"
    res = {s.task: slurm_resources(suite, s) for s in expand(suite)}
    assert res["humanoidstandup"].time_min > res["hopper"].time_min > res["swimmer"].time_min
    assert all(r.gpus_per_node == 1 for r in res.values())
    assert res["humanoidstandup"].mem_gb == 16 and res["swimmer"].mem_gb == 8  # overrides change only their fields


def test_overrides_replace_the_fields_they_give(tmp_path: Path) -> None:
    suite = load_suite(write_suite(
        tmp_path / "s.yaml", tasks=["hopper", "swimmer"], algorithms=["ppo", {"name": "ppo", "label": "big"}],
        launcher={"name": "slurm", "resources": {"time_min": 30, "partition": "cpu", "sbatch": {"exclude": "n1"}}},
        overrides=[{"tasks": ["hopper"], "resources": {"time_min": 90, "sbatch": {"hold": True}}},
                   {"algorithms": ["big"], "resources": {"cpus_per_task": 8}}]))
    res = {(s.task, s.label): slurm_resources(suite, s) for s in expand(suite)}
    assert res["swimmer", "ppo"].time_min == 30 and res["hopper", "ppo"].time_min == 90
    assert res["hopper", "big"].cpus_per_task == 8 and res["hopper", "big"].time_min == 90
    assert res["hopper", "ppo"].partition == "cpu" and res["hopper", "ppo"].sbatch == {"exclude": "n1", "hold": True}
    plain = load_suite(write_suite(tmp_path / "p.yaml", tasks=["hopper", "swimmer"],
                                   algorithms=["ppo", {"name": "ppo", "label": "big"}]))
    assert [s.hash for s in expand(suite)] == [s.hash for s in expand(plain)], \
        "resources are not part of a run's identity"


BAD = {
    "unknown resource": ({"launcher": {"name": "slurm", "resources": {"gpus": 1}}},
                         ["launcher.resources.gpus", "unknown key", "allowed keys:", "gpus_per_node"]),
    "bad time": ({"launcher": {"name": "slurm", "resources": {"time_min": 0}}},
                 ["launcher.resources.time_min", "greater than 0"]),
    "reserved sbatch option": ({"launcher": {"name": "slurm", "resources": {"sbatch": {"time": "1:00:00"}}}},
                               ["launcher.resources.sbatch", "time: set by dapbench", "time_min"]),
    "bad override": ({"overrides": [{"tasks": ["hopper"], "resources": {"mem_gb": -4}}]},
                     ["overrides[0].resources.mem_gb", "greater than 0"]),
    "unknown launcher": ({"launcher": {"name": "pbs"}}, ["launcher.name", "'debug', 'local' or 'slurm'"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_slurm_settings_name_file_line_and_field(case: str, tmp_path: Path, capsys) -> None:
    fields, expected = BAD[case]
    suite = write_suite(tmp_path / "bad.yaml", **fields)
    assert cli("run", suite, "--results", tmp_path / "results") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{suite}:" in err.replace(" ", "")
    for piece in expected:
        assert piece in err, f"{piece!r} not in {err!r}"
    assert not (tmp_path / "results").exists()


def test_without_slurm_run_says_how_to_run_locally(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    monkeypatch.chdir(tmp_path)
    assert cli("run", MUJOCO8, "--skip-unavailable") == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, errors
    assert "no Slurm cluster answers here (sbatch not found)" in errors[0]
    assert f"dapbench run {MUJOCO8} --skip-unavailable --launcher local" in errors[0]
    assert not (tmp_path / "results").exists()
    assert cli("run", MUJOCO8, "--dry-run") == 0, "a dry run needs no cluster"
    assert "--gpus-per-node=1" in capsys.readouterr().out
