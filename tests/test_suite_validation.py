"""A malformed suite: one error naming the file, the field and what is allowed; exit 2; nothing started."""

from __future__ import annotations

from pathlib import Path

import pytest

from dapbench.registry import get_algorithm
from dapbench.suite import expand, load_suite
from tests.conftest import REPO, cli, write_suite

CASES = {
    "unknown task": ({"tasks": ["hopper", "hoper"]}, ["tasks", "'hoper'", "allowed:", "halfcheetah"]),
    "unknown algorithm": ({"algorithms": ["ppo", "ppo-magic"]}, ["algorithms", "'ppo-magic'", "allowed:", "ppo-dap"]),
    "wrong type": ({"seeds": "three"}, ["seeds", "'three'"]),
    "negative budget": ({"budget": {"total_steps": -5, "steps_per_epoch": 1000}},
                        ["budget.total_steps", "greater than 0", "-5"]),
    "unknown key": ({"evaluatoin": {"episodes": 2}}, ["evaluatoin", "unknown key", "did you mean 'evaluation'?"]),
    "unknown algorithm config key": ({"algorithms": [{"name": "ppo", "config": {"lr": 1e-3}}]},
                                     ["algorithms[0].config.lr", "unknown key", "learning_rate"]),
    "bad algorithm config value": ({"algorithms": [{"name": "ppo", "config": {"clip_coef": -1}}]},
                                   ["algorithms[0].config.clip_coef", "greater than 0"]),
    "budget not a multiple": ({"budget": {"total_steps": 2500, "steps_per_epoch": 1000}},
                              ["budget", "not a multiple of steps_per_epoch"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_suite(case: str, tmp_path: Path, capsys) -> None:
    fields, expected = CASES[case]
    suite = write_suite(tmp_path / "bad.yaml", **fields, results_dir=str(tmp_path / "results"))
    assert cli("run", suite) == 2
    err = capsys.readouterr().err
    assert str(suite) in err.replace("\n", "")
    flat = " ".join(err.split())
    for piece in expected:
        assert piece in flat, f"{piece!r} not in {flat!r}"
    assert not (tmp_path / "results").exists(), "a bad suite must start nothing"


def test_error_names_the_yaml_line(tmp_path: Path, capsys) -> None:
    suite = tmp_path / "bad.yaml"
    suite.write_text("name: x\ntasks: [hopper]\nalgorithms: [ppo]\nseeds: 1\nbudget:\n  total_steps: -1\n")
    assert cli("run", suite) == 2
    assert f"{suite}:6: budget.total_steps: Input should be greater than 0 (got -1)" in capsys.readouterr().err


def test_yaml_syntax_error(tmp_path: Path, capsys) -> None:
    suite = tmp_path / "broken.yaml"
    suite.write_text("name: x\ntasks: [hopper\nalgorithms: [ppo]\n")
    assert cli("run", suite) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "YAML syntax error" in err and str(suite) in err.replace(" ", "")


def test_missing_suite_file(tmp_path: Path, capsys) -> None:
    assert cli("run", tmp_path / "nope.yaml") == 2
    assert "no such suite file" in capsys.readouterr().err


def test_bad_only_filter(smoke_suite: Path, capsys) -> None:
    assert cli("run", smoke_suite, "--only", "colour=red") == 2
    assert "KEY one of task, algorithm, label, seed" in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("name", ["smoke", "quick", "mujoco8", "ablations", "dap-vs-ppo"])
def test_shipped_suites_validate(name: str) -> None:
    suite = load_suite(REPO / "suites" / f"{name}.yaml")
    assert len(expand(suite)) > 0


def test_ablations_suite_varies_one_value_each() -> None:
    specs = [s for s in expand(load_suite(REPO / "suites" / "ablations.yaml")) if s.seed == 0 and s.task == "hopper"]
    by_label = {s.label: s for s in specs}
    # the full configs: a spec leaves out late fields that hold their legacy value (AlgoConfig.spec_dump)
    full = {label: get_algorithm(s.algorithm).Config.from_spec(s.config).model_dump() for label, s in by_label.items()}
    base = full["ppo-dap"]
    assert by_label["ppo-dap"].dataset == "dapbench/hopper/medium-v0" and by_label["ppo"].dataset is None
    for label in by_label:
        if label.startswith("dap-"):
            assert len([k for k in base if base[k] != full[label][k]]) == 1, label


def test_mujoco8_is_the_paper_grid() -> None:
    specs = expand(load_suite(REPO / "suites" / "mujoco8.yaml"))
    assert len(specs) == 8 * 8 * 10
    assert {s.total_steps for s in specs} == {1_000_000} and {s.steps_per_epoch for s in specs} == {5000}
    assert {s.epochs for s in specs} == {200}


def test_overrides_and_defaults(tmp_path: Path) -> None:
    suite = write_suite(
        tmp_path / "o.yaml",
        tasks=["hopper", "swimmer"],
        algorithms=["ppo", {"name": "ppo", "label": "ppo-big-lr", "config": {"learning_rate": 1e-3}}],
        budget={"steps_per_epoch": 1000},
        overrides=[{"tasks": ["swimmer"], "budget": {"total_steps": 5000}},
                   {"tasks": ["swimmer"], "algorithms": ["ppo-big-lr"], "config": {"gamma": 0.9999}}],
    )
    specs = {(s.task, s.label, s.seed): s for s in expand(load_suite(suite))}
    assert specs[("hopper", "ppo", 0)].total_steps == 1_000_000  # the task's default budget
    assert specs[("swimmer", "ppo", 0)].total_steps == 5000
    assert specs[("swimmer", "ppo-big-lr", 0)].config["gamma"] == 0.9999
    assert specs[("swimmer", "ppo-big-lr", 0)].config["learning_rate"] == 1e-3
    assert specs[("hopper", "ppo-big-lr", 0)].config["gamma"] == 0.99
    assert specs[("hopper", "ppo", 0)].config["num_steps"] == 2048  # the documented default
