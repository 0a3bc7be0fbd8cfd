"""The algorithm registry (decorator and entry points), and the CLI's listing commands."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dapbench import registry
from dapbench.errors import BadInputError
from dapbench.registry import PLANNED, algorithms, get_algorithm
from tests.conftest import REPO, builtin_algorithms, cli
from tests.test_plugins import fresh_registry


def test_ppo_is_registered() -> None:
    ppo = get_algorithm("ppo")
    assert ppo.name == "ppo" and not ppo.needs_dataset and not ppo.needs_prior and ppo.reconstruction is None


@pytest.mark.parametrize("name", builtin_algorithms())
def test_documented_defaults_equal_config_defaults(name: str) -> None:
    """Every registered algorithm's table in docs/algorithms.md (plus those of the registered algorithms
    whose configs its config extends) is its config."""
    assert documented_defaults(name) == get_algorithm(name).Config().model_dump(mode="json")


def documented_defaults(name: str) -> dict:
    """The documented defaults of algorithm `name`: its table, and the tables of the registered algorithms
    whose Config classes its Config inherits (a variant documents only its own fields)."""
    by_config = {get_algorithm(n).Config: n for n in reversed(builtin_algorithms())}
    documented: dict = {}
    for config in reversed(get_algorithm(name).Config.__mro__):
        if config in by_config:
            documented.update(_documented_defaults(REPO / "docs" / "algorithms.md", by_config[config]))
    return documented


def _documented_defaults(doc: Path, algo: str) -> dict:
    """Parse the `| field | default |` table under the `<!-- defaults: ALGO -->` marker."""
    import yaml

    text = doc.read_text().split(f"<!-- defaults: {algo} -->", 1)[1]
    out = {}
    for line in text.splitlines()[1:]:
        if not line.startswith("|"):
            if out:
                break
            continue
        cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
        if cells[0] in ("field", "") or set(cells[0]) <= {"-"}:
            continue
        try:
            out[cells[0]] = json.loads(cells[1])
        except json.JSONDecodeError:
            out[cells[0]] = yaml.safe_load(cells[1])
    return out


@pytest.fixture
def planned(monkeypatch) -> str:
    """A planned (named, not implemented) algorithm: every algorithm of the protocol is implemented now."""
    monkeypatch.setitem(PLANNED, "ppo-future", "a planned algorithm (test)")
    return "ppo-future"


def test_unknown_and_planned_algorithms_give_clear_errors(planned: str) -> None:
    with pytest.raises(BadInputError, match="unknown algorithm 'nope'; registered: abppo, dtql, ppo"):
        get_algorithm("nope")
    with pytest.raises(BadInputError, match="not implemented yet"):
        get_algorithm(planned)
    assert set(algorithms()) >= {"ppo-dap", "ppo-gc", "abppo", "ppo-arc", "dtql", "ppo-dtr",
                                                "ppo-diffaug"}


def test_third_party_algorithm_through_entry_point(tmp_path: Path, monkeypatch) -> None:
    pkg = tmp_path / "myalgo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        from dapbench.api import PPO, PPOConfig

        class MyConfig(PPOConfig):
            bonus: float = 1.0

        class MyPPO(PPO):
            """PPO with a bonus."""
            Config = MyConfig
    '''))
    dist = tmp_path / "myalgo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myalgo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[dapbench.algorithms]\nmy-ppo = myalgo:MyPPO\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh_registry(monkeypatch)
    reg = algorithms()
    assert "my-ppo" in reg and reg["my-ppo"].Config().bonus == 1.0
    assert registry.provider("my-ppo").dist == "myalgo" and registry.provider("my-ppo").version == "0.1"


def test_foreign_algorithms_package_is_detected(tmp_path: Path) -> None:
    (tmp_path / "algorithms").mkdir()
    (tmp_path / "algorithms" / "__init__.py").write_text("x = 1\n")
    out = subprocess.run([sys.executable, "-c", "from dapbench.registry import get_algorithm; get_algorithm('ppo')"],
                         cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path)})
    assert out.returncode != 0
    assert "is not dapbench's (a foreign package of that name shadows it)" in out.stderr


@pytest.mark.parametrize("args", [[], ["run"], ["status"], ["tasks"], ["tasks", "measure"], ["algos"]])
def test_every_help_explains_itself(args: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as e:
        cli(*args, "--help")
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: dapbench" in out and len(out.splitlines()) > 5


def test_tasks_and_algos_listings(planned: str, capsys) -> None:
    assert cli("tasks") == 0
    out = capsys.readouterr().out
    for name in ("ant", "halfcheetah", "hopper", "humanoidstandup", "pusher", "striker", "swimmer", "walker2d"):
        assert name in out
    assert "Hopper-v5" in out and "dapbench/Striker-v0" in out
    assert cli("algos") == 0
    out = capsys.readouterr().out
    assert "ppo" in out and "learning_rate" in out and "0.0003" in out and "ppo-dap" in out
    assert "not implemented yet" in out


def _with_planned(tmp_path: Path, planned: str) -> Path:
    """suites/mujoco8.yaml plus a planned algorithm."""
    import yaml

    suite = yaml.safe_load((REPO / "suites" / "mujoco8.yaml").read_text())
    suite["algorithms"] = [*suite["algorithms"], planned]
    path = tmp_path / "mujoco8.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def test_dry_run_of_the_paper_grid(capsys) -> None:
    assert cli("run", REPO / "suites" / "mujoco8.yaml", "--dry-run") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "640 runs" in out and "640,000,000 environment steps" in out
    assert "not implemented" not in out and "of CPU time" in out


def test_dry_run_marks_planned_algorithms(tmp_path: Path, planned: str, capsys) -> None:
    assert cli("run", _with_planned(tmp_path, planned), "--dry-run") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "720 runs" in out and "not implemented" in out


def test_running_unimplemented_cells_refuses_and_starts_nothing(tmp_path: Path, planned: str, capsys) -> None:
    assert cli("run", _with_planned(tmp_path, planned), "--results", tmp_path / "r") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "cannot run yet" in err and planned in err and "--skip-unavailable" in err
    assert not (tmp_path / "r").exists()


def test_unavailable_tasks_are_marked_and_skippable(tmp_path: Path, monkeypatch, capsys) -> None:
    from dataclasses import replace

    from dapbench.tasks import TASKS
    from tests.conftest import write_suite

    monkeypatch.setitem(TASKS, "swimmer", replace(TASKS["swimmer"], unavailable="being rebuilt"))
    suite = write_suite(tmp_path / "s.yaml", tasks=["hopper", "swimmer"], seeds=[0],
                        budget={"total_steps": 1000, "steps_per_epoch": 1000})
    assert cli("run", suite, "--dry-run") == 0
    assert "unavailable" in capsys.readouterr().out
    assert cli("run", suite, "--results", tmp_path / "r") == 2
    assert "task swimmer: being rebuilt" in capsys.readouterr().err
    assert cli("run", suite, "--results", tmp_path / "r", "--skip-unavailable") == 0
    assert (tmp_path / "r" / "hopper").exists() and not (tmp_path / "r" / "swimmer").exists()
