"""The slurm launcher against a real one-node Slurm cluster (scripts/slurm/start.sh), no mocks.

The cluster is started once per session if it is not up (and stopped at the end if this session started
it). Without the Debian packages these tests are skipped with the reason, unless DAPBENCH_REQUIRE_SLURM=1
(CI sets it), where they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from dapbench.launch import scheduler, slurm
from dapbench.results.store import RunStore
from tests.conftest import REPO, cli, table, write_suite

pytestmark = pytest.mark.slurm
SLURM_BASE = Path(os.environ.get("DAPBENCH_SLURM_DIR", "/tmp/dapbench-slurm"))
RUNS = [Path("hopper/ppo/seed_0"), Path("hopper/ppo/seed_1")]


def _start_cluster() -> bool:
    """Start the cluster unless it is up; True if this call started it."""
    missing = [x for x in ("munged", "slurmctld", "slurmd", "sbatch") if shutil.which(x) is None]
    why = f"Slurm packages missing ({', '.join(missing)}); scripts/slurm/install.sh installs them" if missing \
        else "the local cluster runs its daemons as root" if os.geteuid() != 0 else None
    if why:
        if os.environ.get("DAPBENCH_REQUIRE_SLURM") == "1":
            pytest.fail(f"DAPBENCH_REQUIRE_SLURM=1 but {why}")
        pytest.skip(why)
    up = (SLURM_BASE / "run" / "slurmctld.pid").exists() and _env_ok()
    t0 = time.perf_counter()
    out = subprocess.run([REPO / "scripts" / "slurm" / "start.sh"], capture_output=True, text=True)
    assert out.returncode == 0, f"scripts/slurm/start.sh failed:\n{out.stdout}{out.stderr}"
    print(f"\nslurm cluster {'was up' if up else 'started'} in {time.perf_counter() - t0:.1f} s")
    return not up


def _env_ok() -> bool:
    conf = SLURM_BASE / "slurm.conf"
    if not conf.is_file():  # scontrol would retry for a minute
        return False
    env = {**os.environ, "SLURM_CONF": str(conf)}
    return subprocess.run(["scontrol", "ping"], env=env, capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def slurm_cluster():
    """This process (and so every job it submits) talks to the local cluster."""
    started = _start_cluster()
    mp = pytest.MonkeyPatch()
    mp.setenv("SLURM_CONF", str(SLURM_BASE / "slurm.conf"))
    mp.setenv("PATH", f"{SLURM_BASE / 'bin'}:{os.environ['PATH']}")  # the sacct stand-in
    assert scheduler.unavailable() is None
    yield SLURM_BASE
    mp.undo()
    if started:
        subprocess.run([REPO / "scripts" / "slurm" / "stop.sh"], check=True, capture_output=True)


@pytest.fixture(scope="module")
def local_smoke(tmp_path_factory) -> Path:
    """The smoke suite (2 seeds) run with the local launcher: the reference tables."""
    root = tmp_path_factory.mktemp("local")
    suite = write_suite(root / "smoke.yaml")
    assert cli("run", suite, "--results", root / "results", "--launcher", "local", "--jobs", "2") == 0
    return root / "results"


def slurm_suite(path: Path, **fields) -> Path:
    launcher = {"name": "slurm", "parallelism": 2, **fields.pop("launcher", {})}
    return write_suite(path, launcher=launcher, **fields)


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / slurm.RECORD).read_text())


def provenance(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "provenance.json").read_text())


def test_smoke_array_equals_local_launcher(slurm_cluster, local_smoke: Path, tmp_path: Path, capsys) -> None:
    suite = slurm_suite(tmp_path / "smoke.yaml")
    results = tmp_path / "results"
    assert cli("run", suite, "--results", results, "--wait") == 0
    out = capsys.readouterr().out
    assert "submitted array" in out and "2 runs" in out and "2 done" in out
    ids = {record(results / r)["job_id"] for r in RUNS}
    assert len({i.split("_")[0] for i in ids}) == 1 and len(ids) == 2, f"one array of two tasks: {ids}"
    for r in RUNS:
        pd.testing.assert_frame_equal(table(results / r), table(local_smoke / r), check_exact=True)
        attempt = provenance(results / r)[-1]
        rec = record(results / r)
        assert attempt["slurm_job_id"] and attempt["slurm_array_task_id"] == rec["job_id"].split("_")[1]
        assert attempt["code"]["snapshot"] == rec["code"], "the job ran the code snapshot taken at submission"
    assert cli("status", suite, "--results", results) == 0
    out = capsys.readouterr().out
    assert "2 done" in out and "COMPLETED" in out


def test_preempted_job_resumes_from_its_checkpoint(slurm_cluster, tmp_path: Path, capsys) -> None:
    """submitit's preemption path (SIGTERM, then USR2): checkpoint() requeues, the run resumes from its last
    epoch checkpoint and ends with the table of an uninterrupted run."""
    import submitit

    fields = {"seeds": [0], "budget": {"total_steps": 8000, "steps_per_epoch": 1000}}
    reference = tmp_path / "reference"
    assert cli("run", write_suite(tmp_path / "ref.yaml", **fields), "--results", reference) == 0
    suite = slurm_suite(tmp_path / "smoke.yaml", **fields)  # time_min 60: a signal now is a preemption
    results = tmp_path / "results"
    assert cli("run", suite, "--results", results) == 0
    run = results / RUNS[0]
    store = RunStore(run)
    deadline = time.time() + 120
    while store.status().epoch < 2 and time.time() < deadline:
        time.sleep(0.1)
    assert store.status().state == "running" and store.status().epoch < 8, store.status()
    job_id = record(run)["job_id"]
    submitit.SlurmJob(results / slurm.SUBMIT_FOLDER, job_id)._interrupt()  # preemption, as Slurm signals it
    slurm.wait([job_id])
    assert store.status().state == "done"
    attempts = provenance(run)
    assert len(attempts) == 2 and attempts[1]["resumed_from_epoch"] >= 2, attempts
    assert attempts[0]["slurm_job_id"] == attempts[1]["slurm_job_id"], "requeued as the same job"
    log = Path(record(run)["log"]).read_text()
    assert "this job is preempted" in log and "Requeued job" in log
    pd.testing.assert_frame_equal(table(run), table(reference / RUNS[0]), check_exact=True)


def test_failing_run_is_reported_and_the_others_finish(slurm_cluster, local_smoke: Path, tmp_path: Path,
                                                       capsys, monkeypatch) -> None:
    monkeypatch.setenv("DAPBENCH_TEST_NAN_AT_EPOCH", "2")  # jobs inherit the submitting environment
    monkeypatch.setenv("DAPBENCH_TEST_NAN_SEEDS", "1")
    suite = slurm_suite(tmp_path / "smoke.yaml", algorithms=[{"name": "ppo-faulty", "label": "ppo", "config": {
        "num_steps": 512, "num_minibatches": 4, "update_epochs": 2}}])
    results = tmp_path / "results"
    assert cli("run", suite, "--results", results, "--wait") == 1
    captured = capsys.readouterr()
    assert "failed hopper/ppo/seed_1 at epoch 1" in captured.err
    assert "non-finite policy_loss at epoch 2" in " ".join(captured.err.split())
    assert "1 done, 1 failed" in captured.out
    pd.testing.assert_frame_equal(table(results / RUNS[0]), table(local_smoke / RUNS[0]), check_exact=True)
    assert cli("status", suite, "--results", results) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "1 done, 1 failed" in out and "FAILED" in out and "TrainingError: non-finite policy_loss" in out


@pytest.mark.parametrize("resources, complaint", [
    ({"cpus_per_task": 64}, "More processors requested than permitted"),
    ({"mem_gb": 100000}, "Requested node configuration is not available"),
    ({"partition": "no-such-partition"}, "invalid partition"),
    ({"gpus_per_node": 1}, "Invalid generic resource (gres) specification"),  # the local cluster has no GPUs
], ids=["cpus", "memory", "partition", "gpus"])
def test_resources_the_cluster_cannot_give_fail_at_submission(slurm_cluster, tmp_path: Path, capsys,
                                                               resources, complaint) -> None:
    suite = slurm_suite(tmp_path / "smoke.yaml", launcher={"resources": resources})
    results = tmp_path / "results"
    assert cli("run", suite, "--results", results) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "Slurm cannot give the runs of hopper/ppo what it asks for" in err and complaint in err, err
    assert "nothing was submitted" in err
    assert not list(results.rglob(slurm.RECORD)) and not list((results / slurm.SUBMIT_FOLDER).glob("*.pkl"))


def test_gpu_options_reach_the_submission_script(tmp_path: Path, capsys) -> None:
    """The local cluster has no GPU (a GPU request is refused, above): the dry run shows the options of the
    script submitit writes, from the same parameters and renderer as a submission."""
    suite = slurm_suite(tmp_path / "smoke.yaml", launcher={"resources": {
        "gpus_per_node": 2, "partition": "gpu", "account": "rl", "qos": "high", "constraint": "a100",
        "mem_gb": 16, "time_min": 90, "cpus_per_task": 4, "sbatch": {"exclude": "node7", "exclusive": True}}})
    assert cli("run", suite, "--results", tmp_path / "results", "--dry-run") == 0
    out = capsys.readouterr().out
    for flag in ("--gpus-per-node=2", "--partition=gpu", "--account=rl", "--qos=high", "--constraint=a100",
                 "--mem=16G", "--time=90", "--cpus-per-task=4", "--exclude=node7", "--exclusive", "--array=0-1%2",
                 "--requeue", "--signal=USR2@90"):
        assert flag in out.split(), f"{flag} not in {out}"
    assert not (tmp_path / "results").exists()
    script = slurm.sbatch_script(slurm.sbatch_parameters(
        load_resources(suite), "x", Path("/code"), 2, after=["7", "8"]), tmp_path, 4)
    assert "#SBATCH --gpus-per-node=2\n" in script and "#SBATCH --dependency=afterok:7:8\n" in script
    assert "#SBATCH --kill-on-invalid-dep=yes\n" in script and "export PYTHONPATH=/code" in script


def load_resources(suite: Path):
    from dapbench.config import load_suite

    return load_suite(suite).launcher.resources


def _queued(name: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-r", "-n", name, "-o", "%i"], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_run_again_while_queued_submits_nothing_twice(slurm_cluster, tmp_path: Path, capsys) -> None:
    """Held jobs (sbatch --hold) stay queued; a second run leaves them alone; cancel ends them."""
    suite = slurm_suite(tmp_path / "held.yaml", name=f"held{os.getpid()}",
                        launcher={"resources": {"sbatch": {"hold": True}}})
    results = tmp_path / "results"
    assert cli("run", suite, "--results", results) == 0
    first = {r: record(results / r)["job_id"] for r in RUNS}
    assert sorted(_queued(f"dapbench-held{os.getpid()}")) == sorted(first.values())
    capsys.readouterr()
    assert cli("run", suite, "--results", results) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "0 submitted (nothing to submit)" in out and "2 runs already queued or running" in out
    assert {r: record(results / r)["job_id"] for r in RUNS} == first
    assert sorted(_queued(f"dapbench-held{os.getpid()}")) == sorted(first.values()), "no second job"
    assert cli("status", suite, "--results", results) == 0
    out = capsys.readouterr().out
    assert "2 queued" in out and "PENDING (JobHeldUser)" in out
    assert cli("cancel", suite, "--results", results) == 0
    assert "cancelled 2 jobs" in capsys.readouterr().out
    assert _queued(f"dapbench-held{os.getpid()}") == []
    assert cli("status", suite, "--results", results) == 0
    out = capsys.readouterr().out
    assert "2 pending" in out and "CANCELLED" in out
    assert cli("run", suite, "--results", results) == 0  # cancelled runs are submitted again
    assert "2 submitted" in " ".join(capsys.readouterr().out.split())
    assert cli("cancel", suite, "--results", results) == 0


def test_an_unreachable_cluster_is_named_in_one_line(slurm_cluster, tmp_path: Path, capsys, monkeypatch) -> None:
    conf = (slurm_cluster / "slurm.conf").read_text()
    dead = tmp_path / "slurm.conf"
    dead.write_text("\n".join("SlurmctldPort=1" if line.startswith("SlurmctldPort=") else line
                              for line in conf.splitlines()))
    monkeypatch.setenv("SLURM_CONF", str(dead))
    suite = slurm_suite(tmp_path / "smoke.yaml")
    assert cli("run", suite, "--results", tmp_path / "results") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no Slurm controller answers" in err, err
    assert f"dapbench run {suite} --results {tmp_path / 'results'} --launcher local" in err
    assert not (tmp_path / "results").exists()


def test_preparation_jobs_come_first(slurm_cluster, tmp_path: Path, capsys, monkeypatch) -> None:
    """PPO-DAP needs a dataset and a prior: a dataset job, a prior job after it, the array after both."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("DAPBENCH_PRIORS", str(tmp_path / "priors"))
    suite = slurm_suite(
        tmp_path / "dap.yaml", seeds=[0], budget={"total_steps": 1000, "steps_per_epoch": 500},
        evaluation={"episodes": 1, "every": 1},
        algorithms=[{"name": "ppo-dap", "config": {
            "num_steps": 250, "num_minibatches": 2, "update_epochs": 1, "K": 2, "pet_every": 2, "pet_steps": 2,
            "prior": {"train_steps": 20, "denoiser": {"hidden": 32, "depth": 2}}}}],
        dataset="dapbench/hopper/random-n2000-v0", datasets=[{"task": "hopper", "quality": "random", "steps": 2000}])
    results = tmp_path / "results"
    assert cli("run", suite, "--results", results, "--wait") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "dataset dapbench/hopper/random-n2000-v0" in out and "prior hopper dapbench/hopper/random-n2000-v0" in out
    run = results / "hopper/ppo-dap/seed_0"
    prep = {r["what"].split()[0]: r["job_id"] for r in slurm.prepare_records(results)}
    assert record(run)["after"] == [prep["dataset"], prep["prior"]]
    assert RunStore(run).status().state == "done"
    assert list((tmp_path / "priors" / "hopper").glob("*/prior.pt"))
    assert "1 done" in out
    assert cli("run", suite, "--results", results) == 0  # all done, the prior cached: nothing to prepare
    out = " ".join(capsys.readouterr().out.split())
    assert "submitted job" not in out and "1 done" in out and "nothing to submit" in out
