"""Slurm settings in suites, and what `run` says where there is no Slurm (no cluster needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dapbench.launch import scheduler, slurm
from dapbench.suite import expand, load_suite, slurm_resources
from tests.conftest import REPO, cli, write_suite

MUJOCO8 = REPO / "suites" / "mujoco8.yaml"


def test_mujoco8_packs_one_cells_seeds_per_gpu_job() -> None:
    suite = load_suite(MUJOCO8)
    assert suite.launcher.name == "slurm"
    res = {s.task: slurm_resources(suite, s) for s in expand(suite)}
    assert res["humanoidstandup"].time_min > res["hopper"].time_min > res["swimmer"].time_min
    k = suite.launcher.runs_per_job
    assert k == suite.seeds == 10, "a job trains one cell's 10 seeds"
    assert all(r.gpus_per_node == 1 and r.cpus_per_task == k for r in res.values()), "one GPU, a core per run"
    assert res["humanoidstandup"].mem_gb > res["swimmer"].mem_gb  # overrides change only their fields
    specs = expand(suite)
    arrays = slurm.plan(suite, {Path(s.relpath()): s for s in specs}, scheduler.DEFAULT_MAX_ARRAY_SIZE)
    assert sum(len(a.jobs) for a in arrays) == len(specs) // k == 64
    assert all(len({(d.parts[0], d.parts[1]) for d in pack}) == 1 for a in arrays for pack in a.jobs)


def test_parallelism_unset_means_no_limit(tmp_path: Path, capsys) -> None:
    """submitit writes --array=0-N%256 unless told: unset `parallelism` writes no % at all."""
    suite = write_suite(tmp_path / "s.yaml", seeds=300, launcher={"name": "slurm"})
    assert cli("run", suite, "--results", tmp_path / "results", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "--array=0-299 " in out and "%" not in out.split("sbatch options:")[1]
    suite = write_suite(tmp_path / "p.yaml", seeds=300, launcher={"name": "slurm", "parallelism": 20})
    assert cli("run", suite, "--results", tmp_path / "results", "--dry-run") == 0
    assert "--array=0-299%20 " in capsys.readouterr().out


def test_held_states_say_scontrol_release() -> None:
    """Slurm's hold reasons (a failed launch requeued held, user and admin holds) are held, not queued."""
    for state, reason in [("PENDING", "launch failed requeued held"), ("PENDING", "JobHeldUser"),
                          ("PENDING", "JobHeldAdmin"), ("PENDING", "job requeued in held state"),
                          ("REQUEUE_HOLD", "None")]:
        assert scheduler.JobState(state, reason).held, (state, reason)
    assert not scheduler.JobState("PENDING", "Priority").held and not scheduler.JobState("RUNNING", "held").held
    hint = slurm.release_hint({"12_3": "launch failed requeued held"})
    assert "`scontrol release 12_3`" in hint and "launch failed requeued held" in hint


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


def test_slurm_syntax_a_cluster_needs_is_accepted_and_stays_on_its_sbatch_lines(tmp_path: Path) -> None:
    """The schema's charsets leave room for what Slurm reads (partition lists, constraint expressions, mail
    addresses, comments with spaces), and every setting stays on its own `#SBATCH` line of the script (issue 19)."""
    resources = {"partition": "gpu,cpu-long", "account": "lab_x.y", "qos": "high+", "time_min": 120,
                 "mem_gb": 7.5, "constraint": "[rack1*2&rack2*4]|(intel&!a100):x", "sbatch": {
                     "mail-type": "BEGIN,END", "mail_user": "me@example.org", "comment": "two words; $(not run)",
                     "exclude": "n[1-3],n7", "hold": True, "nice": 10, "begin": "now+1hour"}}
    suite = load_suite(write_suite(tmp_path / "s.yaml", launcher={"name": "slurm", "resources": resources}))
    res = slurm_resources(suite, expand(suite)[0])
    script = slurm.sbatch_script(slurm.sbatch_parameters(res, "dapbench-x", tmp_path / "code"), tmp_path, 1)
    head = script.split("\n\n# setup")[0].splitlines()[3:]
    assert head and all(line.startswith("#SBATCH --") for line in head), head
    assert "#SBATCH --comment='two words; $(not run)'" in head and "#SBATCH --mail-user=me@example.org" in head


BAD = {
    "unknown resource": ({"launcher": {"name": "slurm", "resources": {"gpus": 1}}},
                         ["launcher.resources.gpus", "unknown key", "allowed keys:", "gpus_per_node"]),
    "bad time": ({"launcher": {"name": "slurm", "resources": {"time_min": 0}}},
                 ["launcher.resources.time_min", "greater than 0"]),
    "time within the warning": ({"overrides": [{"tasks": ["hopper"], "resources": {"time_min": 2}}]},
                                ["overrides[0].resources.time_min", "2 min is shorter than the job's warning",
                                 "--signal=USR2@90", "max_timeouts", "at least 3"]),
    "bad packing": ({"launcher": {"name": "slurm", "runs_per_job": 0}},
                    ["launcher.runs_per_job", "greater than 0"]),
    "reserved sbatch option": ({"launcher": {"name": "slurm", "resources": {"sbatch": {"time": "1:00:00"}}}},
                               ["launcher.resources.sbatch", "time: set by dapbench", "time_min"]),
    "bad override": ({"overrides": [{"tasks": ["hopper"], "resources": {"mem_gb": -4}}]},
                     ["overrides[0].resources.mem_gb", "greater than 0"]),
    "too much memory": ({"overrides": [{"tasks": ["hopper"], "resources": {"mem_gb": 1e7}}]},
                        ["overrides[0].resources.mem_gb: 10,000,000 is out of range: mem_gb is more than 0 and at most "
                         "1,048,576 GB"]),
    "too many requeues": ({"launcher": {"name": "slurm", "max_timeouts": 10**6}},
                          ["launcher.max_timeouts: 1,000,000 is out of range: max_timeouts is 0 to 1,000"]),
    "too much packing": ({"launcher": {"name": "slurm", "runs_per_job": 5000, "parallelism": 10**7}},
                         ["launcher.runs_per_job: 5,000 is out of range: runs_per_job is 1 to 1,024",
                          "launcher.parallelism: 10,000,000 is out of range"]),
    "preparation partition injected": ({"launcher": {"name": "slurm", "prepare": {"partition": "a\nid"}}},
                                       ["launcher.prepare.partition: 'a\\nid' contains the control character"]),
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
