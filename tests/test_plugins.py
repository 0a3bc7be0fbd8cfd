"""Third-party algorithms (plug-ins, docs/plugins.md): isolated and checked loading, each failure named with its
package and error; the plug-in's code in provenance, reproduce, the gate's baseline and the report; and the
example plug-in examples/ppo_kl installed into a scratch folder and taken through a suite, `report` and `check`.

Fake plug-ins are real distributions: a module plus a `*.dist-info` folder (METADATA, entry_points.txt) in a
folder on sys.path, which is all `importlib.metadata` needs to find their entry points."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from dapbench import registry
from dapbench.algorithm import AlgoConfig, Algorithm, override_field
from dapbench.analysis.load import load_results
from dapbench.errors import BadInputError, DapbenchError
from dapbench.results.provenance import algorithm_changes
from dapbench.results.store import RunStore
from dapbench.verify.reproduce import reproduce
from tests.conftest import REPO, cli, table, write_suite

EXAMPLE = REPO / "examples" / "ppo_kl"
TINY_PPO = {"num_steps": 256, "num_minibatches": 4, "update_epochs": 2}


def fresh_registry(monkeypatch) -> None:
    """The registry as a new process finds it (entry points scanned again); the old state is restored after."""
    for name, value in (("_LOADED", False), ("_PENDING", {}), ("_REGISTRY", {}), ("_PROVIDERS", {}),
                        ("_BROKEN", {})):
        monkeypatch.setattr(registry, name, value)


@pytest.fixture
def site(tmp_path: Path, monkeypatch):
    """A folder on sys.path to install fake plug-ins into: `install(dist, version, {module: source}, {name:
    value})`; the registry is rescanned after each install and restored (and the modules forgotten) after."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    modules: list[str] = []

    def install(dist: str, version: str, sources: dict[str, str], eps: dict[str, str]) -> Path:
        for module, source in sources.items():
            (folder / f"{module}.py").write_text(textwrap.dedent(source))
            modules.append(module)
        info = folder / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text("[dapbench.algorithms]\n"
                                               + "".join(f"{k} = {v}\n" for k, v in eps.items()))
        fresh_registry(monkeypatch)
        return info

    install.folder = folder
    yield install
    for m in modules:
        sys.modules.pop(m, None)


BROKEN_AT_IMPORT = 'raise RuntimeError("boom at import")\n'
NO_CONFIG = '''
    from dapbench.api import Algorithm

    class NoConfig(Algorithm):
        """Everything but a Config."""
        def train_epoch(self, env, n_steps): return {}
        def act(self, obs, deterministic=True, rng=None): return obs
        def state_dict(self): return {}
        def load_state_dict(self, state): pass
'''
HALF_DONE = '''
    from dapbench.api import Algorithm, AlgoConfig

    class HalfConfig(AlgoConfig):
        lr: float = 1e-3

    class Half(Algorithm):
        """No act."""
        Config = HalfConfig
        def train_epoch(self, env, n_steps): return {}
        def state_dict(self): return {}
        def load_state_dict(self, state): pass
'''
TINY_PLUGIN = '''
    from dapbench.api import PPO

    class TinyPPO(PPO):
        """PPO from a plug-in."""
'''


def _suite(tmp_path: Path, *names: str, **fields) -> Path:
    return write_suite(tmp_path / "s.yaml", seeds=[0], algorithms=[{"name": n, "config": TINY_PPO} for n in names],
                       budget={"total_steps": 1000, "steps_per_epoch": 1000}, **fields)


# ----- isolated, checked loading ------------------------------------------------------------------------------
def test_a_plugin_that_raises_at_import_is_named_and_fails_only_what_uses_it(site, tmp_path: Path, capsys) -> None:
    site("bad-plugin", "0.3", {"bad_plugin_mod": BROKEN_AT_IMPORT}, {"ppo-bad": "bad_plugin_mod:Bad"})
    named = "cannot be loaded (plug-in bad-plugin 0.3 (bad_plugin_mod:Bad)): RuntimeError: boom at import"
    # validating a suite that does not use it imports nothing of it; its runs are unaffected
    assert cli("run", _suite(tmp_path, "ppo"), "--dry-run") == 0
    assert "ppo-bad" not in capsys.readouterr().out and "ppo-bad" not in registry._BROKEN
    # `algos` lists it as broken, with the package and the error, beside everything that loads
    assert cli("algos") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "ppo-bad broken (plug-in bad-plugin 0.3 (bad_plugin_mod:Bad)): RuntimeError: boom at import" in out
    assert "ppo-gc" in out and "learning_rate" in out
    assert cli("algos", "ppo-bad") == 2
    assert f"algorithm 'ppo-bad' {named}" in " ".join(capsys.readouterr().err.split())
    # a suite naming it: the dry run marks it, running refuses and starts nothing
    suite = _suite(tmp_path, "ppo", "ppo-bad")
    assert cli("run", suite, "--dry-run") == 0
    assert f"not runnable yet: algorithm ppo-bad {named}" in " ".join(capsys.readouterr().out.split())
    assert cli("run", suite, "--results", tmp_path / "r") == 2
    assert f"algorithm ppo-bad {named}" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "r").exists()


def test_a_class_without_config_is_refused_at_registration(site, capsys) -> None:
    site("no-config", "1.0", {"no_config_mod": NO_CONFIG}, {"no-config": "no_config_mod:NoConfig"})
    why = "NoConfig has no `Config` that is a dapbench.api.AlgoConfig subclass (got none)"
    plugin = "plug-in no-config 1.0 (no_config_mod:NoConfig)"
    with pytest.raises(BadInputError) as e:
        registry.get_algorithm("no-config")
    assert str(e.value) == f"algorithm 'no-config' cannot be loaded ({plugin}): {why}"
    assert cli("algos") == 0
    assert f"no-config broken ({plugin}): {why}" in " ".join(capsys.readouterr().out.split())
    from no_config_mod import NoConfig

    with pytest.raises(DapbenchError) as e:
        registry.register("no-config2", NoConfig)
    assert str(e.value) == f"algorithm 'no-config2' (no_config_mod.NoConfig): {why}"


def test_a_class_missing_an_abstract_method_is_caught_by_algos_and_the_dry_run(site, tmp_path: Path, capsys
                                                                                 ) -> None:
    site("half-done", "0.1", {"half_done_mod": HALF_DONE}, {"half": "half_done_mod:Half"})
    plugin, missing = "plug-in half-done 0.1 (half_done_mod:Half)", "Half leaves abstract methods unimplemented: act"
    why = f"cannot be loaded ({plugin}): {missing}"
    assert cli("algos") == 0
    assert f"half broken ({plugin}): {missing}" in " ".join(capsys.readouterr().out.split())
    suite = write_suite(tmp_path / "s.yaml", seeds=[0], algorithms=["half"])
    assert cli("run", suite, "--dry-run") == 0
    assert f"not runnable yet: algorithm half {why}" in " ".join(capsys.readouterr().out.split())
    assert cli("run", suite, "--results", tmp_path / "r") == 2  # no failed run folder left behind
    assert f"algorithm half {why}" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "r").exists()


def test_a_name_two_distributions_register_names_both(site, monkeypatch, capsys) -> None:
    site("dist-one", "1.0", {"dist_one_mod": TINY_PLUGIN}, {"ppo-twice": "dist_one_mod:TinyPPO"})
    site("dist-two", "2.0", {"dist_two_mod": TINY_PLUGIN}, {"ppo-twice": "dist_two_mod:TinyPPO"})
    with pytest.raises(BadInputError) as e:
        registry.get_algorithm("ppo-twice")
    msg = str(e.value)
    assert "two distributions register 'ppo-twice'" in msg and "uninstall one of them" in msg
    assert "dist-one 1.0" in msg and "dist-two 2.0" in msg
    assert registry.get_algorithm("ppo").name == "ppo"  # everything else still loads
    # a plug-in taking a built-in's name is named beside dapbench
    site("dist-three", "3.0", {"dist_three_mod": TINY_PLUGIN}, {"ppo": "dist_three_mod:TinyPPO"})
    with pytest.raises(BadInputError) as e:
        registry.get_algorithm("ppo")
    assert "two distributions register 'ppo'" in str(e.value)
    assert "dapbench 0.1.0" in str(e.value) and "dist-three 3.0" in str(e.value)
    # in-process, twice: both named
    fresh_registry(monkeypatch)
    from dist_one_mod import TinyPPO

    with pytest.raises(DapbenchError, match=r"'ppo-gc' is registered twice: by dapbench 0\.1\.0 "
                       r"\(algorithms.ppo_variants:PPOGC\) and by \(registered in-process\)"):
        registry.register("ppo-gc", TinyPPO)


def test_validating_a_suite_imports_only_the_algorithms_it_names() -> None:
    code = ("import sys; from dapbench.suite import load_suite, expand; expand(load_suite('suites/smoke.yaml')); "
            "print(sorted(m for m in sys.modules if m.startswith('algorithms.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['algorithms.ppo']"


# ----- the plug-in's code in provenance ------------------------------------------------------------------------
def test_algorithm_changes_name_the_plugin_and_what_changed() -> None:
    old = {"name": "x", "distribution": "ppo-kl", "version": "0.1", "commit": "a" * 40, "dirty": False,
           "source": "/s", "source_sha256": "1" * 64}
    assert algorithm_changes(old, old) == [] and algorithm_changes(None, old) == []
    assert algorithm_changes(old, {**old, "version": "0.2"}) == ["algorithm code changed: plugin ppo-kl 0.1 -> 0.2"]
    assert algorithm_changes(old, {**old, "commit": "b" * 40, "dirty": True}) == [
        "algorithm code changed: plugin ppo-kl commit aaaaaaaaaa -> bbbbbbbbbb; clean -> uncommitted changes"]
    assert algorithm_changes(old, {**old, "source_sha256": "2" * 64}) == [
        "algorithm code changed: plugin ppo-kl source /s edited (sha256 111111111111 -> 222222222222)"]
    assert algorithm_changes(old, {**old, "distribution": "other", "version": "9"}) == [
        "algorithm code changed: x came from ppo-kl 0.1, now from other 9"]


def test_changed_plugin_code_is_flagged_on_resume_reproduce_and_report_and_named_after_uninstalling(
        site, tmp_path: Path, monkeypatch, capsys) -> None:
    info = site("kl-demo", "0.1", {"kl_demo_mod": TINY_PLUGIN}, {"kl-demo": "kl_demo_mod:TinyPPO"})
    budget = {"total_steps": 1000, "steps_per_epoch": 1000, "horizon_steps": 2000}
    short = write_suite(tmp_path / "short.yaml", seeds=[0], algorithms=[{"name": "kl-demo", "config": TINY_PPO}],
                        budget=budget)
    results, run = tmp_path / "r", tmp_path / "r" / "hopper" / "kl-demo" / "seed_0"
    assert cli("run", short, "--results", results) == 0
    first = RunStore(run).read_provenance()[-1]["algorithm"]
    assert {k: first[k] for k in ("name", "distribution", "version", "entry_point")} == {
        "name": "kl-demo", "distribution": "kl-demo", "version": "0.1", "entry_point": "kl_demo_mod:TinyPPO"}
    assert first["source"] == str(info.parent / "kl_demo_mod.py") and len(first["source_sha256"]) == 64
    # a one-line edit to the plug-in, then the run extended to its horizon: resumed, and flagged
    (info.parent / "kl_demo_mod.py").write_text((info.parent / "kl_demo_mod.py").read_text() + "# edited\n")
    extended = write_suite(tmp_path / "ext.yaml", seeds=[0], algorithms=[{"name": "kl-demo", "config": TINY_PPO}],
                           budget={**budget, "total_steps": 2000})
    assert cli("run", extended, "--results", results) == 0
    log = RunStore(run).log_path.read_text()
    assert "resumed from epoch 1" in log and "resumed under changed code, epochs 1-1 were made with kl-demo 0.1" in log
    changed = RunStore(run).read_provenance()[-1]["algorithm_changed"]
    assert len(changed) == 1 and changed[0].startswith(
        f"algorithm code changed: plugin kl-demo source {info.parent / 'kl_demo_mod.py'} edited (sha256 ")
    # the report's warnings (the tidy loader's mixed-code check) say so
    warnings = load_results(results).warnings
    assert any(w.startswith("hopper/kl-demo: seed 0 was resumed under changed algorithm code (kl-demo 0.1 sha256:")
               for w in warnings), warnings
    # reproduce names it (the stored run's first attempt ran other code)
    r = reproduce(run)
    assert r.stack_changes[0].startswith("algorithm code changed: plugin kl-demo source") and not r.same_stack
    # uninstalled: the run folder and a suite naming it say which distribution it came from
    shutil.rmtree(info)
    fresh_registry(monkeypatch)
    hint = "its runs were made with it from distribution kl-demo 0.1, source"
    assert cli("reproduce", run) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "unknown algorithm 'kl-demo'" in err and hint in err
    body = yaml.safe_load(extended.read_text())
    (tmp_path / "named.yaml").write_text(yaml.safe_dump({**body, "results_dir": str(results)}))
    assert cli("status", tmp_path / "named.yaml") == 2
    assert f"its runs (e.g. {run}) were made with it from distribution kl-demo 0.1, source" in " ".join(
        capsys.readouterr().err.split())


def test_override_field_keeps_the_inherited_constraints_and_place() -> None:
    from dapbench.api import PPOConfig

    class Mine(PPOConfig):
        extra: int = 1
        clip_coef: float = override_field(PPOConfig, "clip_coef", default=0.1, description="mine")

    f = Mine.model_fields["clip_coef"]
    assert f.default == 0.1 and f.description == "mine" and list(Mine.model_fields).index("clip_coef") == list(
        PPOConfig.model_fields).index("clip_coef")
    with pytest.raises(ValueError, match="greater than 0"):
        Mine(clip_coef=-1.0)
    assert PPOConfig.model_fields["clip_coef"].description == "surrogate clipping epsilon (CleanRL)"
    with pytest.raises(TypeError, match="PPOConfig has no field 'nope' to override"):
        override_field(PPOConfig, "nope", default=1)
    assert issubclass(Mine, AlgoConfig) and issubclass(registry.get_algorithm("ppo"), Algorithm)


# ----- the example plug-in, installed as a user would --------------------------------------------------------
@pytest.mark.slow
def test_the_example_plugin_installs_runs_reports_and_passes_the_gate(tmp_path: Path) -> None:
    """examples/ppo_kl installed with pip (no dependencies: the torch here stays) into a scratch folder on
    PYTHONPATH, then docs/plugins.md's commands in fresh processes: algos, run, report, check --update, check."""
    src = shutil.copytree(EXAMPLE, tmp_path / "src", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(target), str(src)], check=True, capture_output=True, text=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}

    def dapbench(*args) -> str:
        out = subprocess.run([sys.executable, "-m", "dapbench", *map(str, args)], cwd=tmp_path, env=env,
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
        return " ".join(out.stdout.split())

    out = dapbench("algos", "ppo-kl")
    assert "ppo-kl ppo_kl.PPOKL (from dapbench-ppo-kl 0.1.0)" in out and "kl_target" in out
    assert "value-loss clipping epsilon only" in out  # the inherited field's description, overridden
    results = tmp_path / "results"
    out = dapbench("run", EXAMPLE / "tiny.yaml", "--results", results)
    assert "4 done, 0 failed" in out
    for seed in (0, 1):
        run = results / "hopper" / "ppo-kl" / f"seed_{seed}"
        rec = RunStore(run).read_provenance()[-1]["algorithm"]
        assert rec["distribution"] == "dapbench-ppo-kl" and rec["version"] == "0.1.0"
        assert rec["source"] == str(target / "ppo_kl") and rec["commit"] is None
        t = table(run)
        assert len(t) == 3 and {"kl_beta", "kl_after_update", "kl_penalty"} <= set(t.columns)
    out = dapbench("report", results, "-o", tmp_path / "report", "--reps", "200", "--no-pdf")
    assert (tmp_path / "report" / "report.html").exists() and "ppo-kl" in (tmp_path / "report" / "report.html"
                                                                           ).read_text()
    baseline = tmp_path / "baseline.json"
    assert "baseline written" in dapbench("check", results, "--baseline", baseline, "--update")
    cell = json.loads(baseline.read_text())["cells"]["hopper/ppo-kl"]
    assert [c["distribution"] for c in cell["algorithm_code"]] == ["dapbench-ppo-kl"] * 2
    out = dapbench("check", results, "--baseline", baseline)
    assert "checks passed" in out and "hopper/ppo-kl: same specs and bit-identical tables as the baseline" in out
