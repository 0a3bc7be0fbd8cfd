"""The slurm launcher against a real one-node Slurm cluster (scripts/slurm/start.sh), no mocks.

The cluster is started once per session if it is not up (and stopped at the end if this session started
it). Without the Debian packages these tests are skipped with the reason, unless DAPBENCH_REQUIRE_SLURM=1
(CI sets it), where they fail instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from dapbench.launch import scheduler, slurm
from dapbench.results.store import RunStore
from tests.conftest import REPO, cli, cli_subprocess, table, write_suite

pytestmark = pytest.mark.slurm
SLURM_BASE = Path(os.environ.get("DAPBENCH_SLURM_DIR", "/tmp/dapbench-slurm"))
RUNS = [Path("hopper/ppo/seed_0"), Path("hopper/ppo/seed_1")]
LONG = {"budget": {"total_steps": 8000, "steps_per_epoch": 1000}}  # 8 epochs: long enough to act on mid-run


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


@pytest.fixture(scope="module")
def local_long(tmp_path_factory) -> Path:
    """The smoke suite at 8 epochs run with the local launcher: the reference tables of the runs that are
    interrupted on the cluster."""
    root = tmp_path_factory.mktemp("local_long")
    suite = write_suite(root / "long.yaml", **LONG)
    assert cli("run", suite, "--results", root / "results", "--launcher", "debug") == 0
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
    assert "waiting: " in out and "epochs 6/6" in out, "--wait says how far the runs are"
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
    assert f"hopper/ppo/seed_1: {results / RUNS[1] / 'run.log'}, job log {record(results / RUNS[1])['log']}" in out


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
    assert not results.exists(), "checked before anything is written: no run folder, no .slurm/"


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
    from dapbench.suite import load_suite

    return load_suite(suite).launcher.resources


def _queued(name: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-r", "-n", name, "-o", "%i"], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_run_again_while_queued_submits_nothing_twice(slurm_cluster, tmp_path: Path, capsys) -> None:
    """Held jobs (sbatch --hold) stay queued; a second run leaves them alone and says how to release them;
    cancel ends them; the next submission prunes what only the cancelled jobs needed."""
    suite = slurm_suite(tmp_path / "held.yaml", name=f"held{os.getpid()}",
                        launcher={"resources": {"sbatch": {"hold": True}}})
    results = tmp_path / "results"
    assert cli("run", suite, "--results", results) == 0
    first = {r: record(results / r)["job_id"] for r in RUNS}
    assert sorted(_queued(f"dapbench-held{os.getpid()}")) == sorted(first.values())
    capsys.readouterr()
    assert cli("run", suite, "--results", results) == 0
    captured = capsys.readouterr()
    out, err = " ".join(captured.out.split()), " ".join(captured.err.split())
    assert "0 submitted (nothing to submit)" in out and "2 runs already queued or running" in out
    assert f"scontrol release {','.join(sorted(first.values()))}" in err and "JobHeldUser" in err, err
    assert {r: record(results / r)["job_id"] for r in RUNS} == first
    assert sorted(_queued(f"dapbench-held{os.getpid()}")) == sorted(first.values()), "no second job"
    assert cli("status", suite, "--results", results) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "2 held" in out and "PENDING (JobHeldUser)" in out and "scontrol release" in out
    assert cli("cancel", suite, "--results", results) == 0
    out = capsys.readouterr().out
    assert "cancelled 2 jobs" in out and "still stopping" not in out, "queued jobs end at once"
    assert _queued(f"dapbench-held{os.getpid()}") == []
    assert cli("status", suite, "--results", results) == 0
    out = capsys.readouterr().out
    assert "2 pending" in out and "CANCELLED" in out
    folder = results / slurm.SUBMIT_FOLDER
    old_array = next(iter(first.values())).split("_")[0]
    assert (folder / f"{old_array}_submission.sh").exists()
    (folder / "code" / "0123456789abcdef").mkdir()  # a snapshot no record names
    assert cli("run", suite, "--results", results) == 0  # cancelled runs are submitted again
    out = " ".join(capsys.readouterr().out.split())
    assert "2 submitted" in out and "pruned 4 old code snapshots and submission files" in out, out
    assert not list(folder.glob(f"{old_array}_*.pkl")) and not (folder / f"{old_array}_submission.sh").exists()
    assert [p.name for p in (folder / "code").iterdir()] == [record(results / RUNS[0])["code"]]
    assert cli("cancel", suite, "--results", results) == 0


def test_two_runs_at_once_submit_each_run_once(slurm_cluster, tmp_path: Path, capsys) -> None:
    """Two `run`s of one suite at once: the second waits for the first's submission lock, then finds its jobs
    queued and submits nothing."""
    name = f"twice{os.getpid()}"
    suite = slurm_suite(tmp_path / "twice.yaml", name=name, launcher={"resources": {"sbatch": {"hold": True}}})
    results = tmp_path / "results"
    (results / slurm.SUBMIT_FOLDER).mkdir(parents=True)
    fd = os.open(results / slurm.SUBMIT_FOLDER / slurm.LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # both start while a submission holds the lock: they queue behind it
    procs = [cli_subprocess("run", suite, "--results", results, env={"PYTHONUNBUFFERED": "1"}) for _ in range(2)]
    seen = []
    for p in procs:
        lines = []
        while not any("waiting for it" in line for line in lines):
            line = p.stdout.readline()
            assert line, f"run ended before waiting for the lock: {''.join(lines)}{p.stderr.read()}"
            lines.append(line)
        seen.append("".join(lines))
    assert not _queued(f"dapbench-{name}") and not list(results.rglob(slurm.RECORD)), "nothing before the lock"
    os.close(fd)
    outs = []
    for p, before in zip(procs, seen, strict=True):
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(" ".join((before + out).split()))
    assert sorted("2 submitted" in o for o in outs) == [False, True], outs
    assert sum("0 submitted (nothing to submit)" in o and "2 runs already queued or running" in o for o in outs) == 1
    jobs = {record(results / r)["job_id"] for r in RUNS}
    assert sorted(_queued(f"dapbench-{name}")) == sorted(jobs), "one job per run, named in its record"
    assert cli("cancel", suite, "--results", results) == 0


def test_an_unreachable_controller_is_named_in_one_line(slurm_cluster, tmp_path: Path, capsys, monkeypatch) -> None:
    """`run` and `cancel` say which controller does not answer (not scontrol's banner); `status` answers at
    once from the run folders and calls a submitted run `unknown`, not pending."""
    suite = slurm_suite(tmp_path / "smoke.yaml", launcher={"resources": {"sbatch": {"hold": True}}})
    results = tmp_path / "results"
    assert cli("run", suite, "--results", results) == 0
    capsys.readouterr()
    conf = (slurm_cluster / "slurm.conf").read_text()
    dead = tmp_path / "slurm.conf"
    dead.write_text("\n".join("SlurmctldPort=1" if line.startswith("SlurmctldPort=") else line
                              for line in conf.splitlines()))
    monkeypatch.setenv("SLURM_CONF", str(dead))
    fresh = tmp_path / "fresh"
    assert cli("run", suite, "--results", fresh) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no Slurm controller answers: Slurmctld(primary) at" in err, err
    assert "is DOWN" in err and "*" not in err and f"SLURM_CONF={dead}" in err
    assert f"dapbench run {suite} --results {fresh} --launcher local" in err
    assert not fresh.exists()
    t0 = time.perf_counter()
    assert cli("status", suite, "--results", results) == 0
    took = time.perf_counter() - t0
    captured = capsys.readouterr()
    assert took < 5, f"status took {took:.1f} s with the controller down"
    assert "2 unknown" in captured.out and "pending" not in captured.out
    assert "Slurm does not answer" in captured.err and "is DOWN" in captured.err
    assert cli("cancel", suite, "--results", results) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is DOWN" in err and "*" not in err, err
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster / "slurm.conf"))
    assert cli("cancel", suite, "--results", results) == 0
    assert "cancelled 2 jobs" in capsys.readouterr().out


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


# ----- faults: signals, killed processes, holds ----------------------------------------------------------------
def _running(results: Path, runs: list[Path], epoch: int = 1, timeout: float = 180) -> None:
    """Wait until every run in `runs` trains, past `epoch` epochs."""
    deadline = time.time() + timeout
    while not all(RunStore(results / r).status().epoch >= epoch for r in runs):
        assert time.time() < deadline, [RunStore(results / r).status() for r in runs]
        time.sleep(0.1)


def _state(job_id: str) -> str:
    st = scheduler.job_states([job_id]).get(job_id)
    return st.state if st else "gone"


def _until(job_id: str, done, timeout: float = 60) -> float:
    """Seconds until `done(state)` holds for `job_id`."""
    t0 = time.perf_counter()
    while not done(_state(job_id)):
        assert time.perf_counter() - t0 < timeout, f"job {job_id} still {_state(job_id)}"
        time.sleep(0.2)
    return time.perf_counter() - t0


def test_sigterm_stops_a_job_at_once_and_a_held_job_says_release(slurm_cluster, tmp_path: Path, capsys) -> None:
    """submitit ignores SIGTERM; dapbench's jobs stop on it at once (not after Slurm's 30 s KillWait): a job
    requeued held (`scontrol requeuehold`, as Slurm does after a failed launch) is PENDING within seconds, and
    `status` and `run` name the `scontrol release` that starts it again; a cancelled running job is gone when
    `cancel` returns, not left COMPLETING."""
    suite = slurm_suite(tmp_path / "smoke.yaml", budget={"total_steps": 200_000, "steps_per_epoch": 1000})
    results = tmp_path / "results"
    assert cli("run", suite, "--results", results) == 0
    _running(results, RUNS)
    held_job, cancelled_job = (record(results / r)["job_id"] for r in RUNS)
    subprocess.run(["scontrol", "requeuehold", held_job], check=True)
    took = _until(held_job, lambda s: s == "PENDING")
    assert took < 15, f"the requeued job trained on for {took:.0f} s after SIGTERM"
    assert "SIGTERM: stopping now" in Path(record(results / RUNS[0])["log"]).read_text()
    capsys.readouterr()
    assert cli("cancel", suite, "--results", results, "--only", "seed=1") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"cancelled 1 job ({cancelled_job})" in out and "still stopping" not in out, out
    assert _state(cancelled_job) == "CANCELLED"
    assert cli("status", suite, "--results", results) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "1 held" in out and "1 partial" in out and f"scontrol release {held_job}" in out, out
    assert "job requeued in held state" in out
    assert cli("run", suite, "--results", results) == 0  # the cancelled run again; the held one left alone
    captured = capsys.readouterr()
    assert "1 submitted" in " ".join(captured.out.split()) and f"scontrol release {held_job}" in captured.err
    assert cli("cancel", suite, "--results", results) == 0


def test_killed_python_is_interrupted_and_a_killed_slurmstepd_frees_its_job(slurm_cluster, local_long: Path,
                                                                           tmp_path: Path, capsys) -> None:
    """kill -9 of a run's python: `status` says `interrupted`, why, where the logs are and that `run` resumes
    it, and `run` does (to the table of an uninterrupted run). kill -9 of a job step's slurmstepd: the run
    finishes and its job cancels itself instead of staying RUNNING until its time limit."""
    suite = slurm_suite(tmp_path / "smoke.yaml", **LONG)
    results = tmp_path / "results"
    assert cli("run", suite, "--results", results) == 0
    orphan_job, killed_job = (record(results / r)["job_id"] for r in RUNS)
    _running(results, RUNS[:1])  # each killed as soon as it has an epoch: runs here take a few seconds
    python = RunStore(results / RUNS[0]).status().pid
    stepd = int(Path(f"/proc/{python}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert Path(f"/proc/{stepd}/comm").read_text().strip() == "slurmstepd"
    os.kill(stepd, signal.SIGKILL)
    _running(results, RUNS[1:])
    os.kill(RunStore(results / RUNS[1]).status().pid, signal.SIGKILL)
    assert RunStore(results / RUNS[1]).status().epoch < 8, "killed before it finished"
    _until(killed_job, lambda s: s == "FAILED")
    _until(orphan_job, lambda s: s not in scheduler.RUNNING, timeout=120)
    assert RunStore(results / RUNS[0]).status().state == "done" and _state(orphan_job) == "CANCELLED"
    assert "slurmstepd) is gone" in Path(record(results / RUNS[0])["log"]).read_text()
    capsys.readouterr()
    assert cli("status", suite, "--results", results) == 0
    out = " ".join(capsys.readouterr().out.split())
    epoch = RunStore(results / RUNS[1]).status().epoch
    assert "1 done, 1 interrupted" in out, out
    assert f"job {killed_job} ended FAILED" in out and f"`dapbench run` resumes it from epoch {epoch}" in out
    assert f"hopper/ppo/seed_1: {results / RUNS[1] / 'run.log'}, job log {record(results / RUNS[1])['log']}" in out
    assert cli("run", suite, "--results", results, "--wait") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "1 submitted" in out and "2 done" in out
    assert provenance(results / RUNS[1])[-1]["resumed_from_epoch"] == epoch
    for r in RUNS:
        pd.testing.assert_frame_equal(table(results / r), table(local_long / r), check_exact=True)


# ----- packing and large grids ----------------------------------------------------------------------------------
def test_packed_runs_share_a_job_and_resume_after_preemption(slurm_cluster, local_long: Path, tmp_path: Path,
                                                             capsys) -> None:
    """`runs_per_job: 2`: both runs in one job, one process each, each in its own folder with its own lock,
    provenance and log. Preempted the way submitit's tests do it (SIGTERM, then USR2): checkpoint() stops
    the runs and requeues the job (same id); both resume from their last epoch checkpoints and end with
    the tables of uninterrupted runs (time_min 60: a signal this early is a preemption, not a time-out)."""
    import submitit

    suite = slurm_suite(tmp_path / "packed.yaml", launcher={"runs_per_job": 2}, **LONG)
    results = tmp_path / "results"
    assert cli("run", suite, "--results", results) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "2 runs in 1 job " in out
    job = record(results / RUNS[0])["job_id"]
    assert record(results / RUNS[1])["job_id"] == job and record(results / RUNS[0])["pack"] == ["../seed_1"]
    _running(results, RUNS)
    pids = {RunStore(results / r).status().pid for r in RUNS}
    assert len(pids) == 2, "one process per run"
    submitit.SlurmJob(results / slurm.SUBMIT_FOLDER, job)._interrupt()
    slurm.wait({job: [results / r for r in RUNS]}, log=lambda _: None)
    for r in RUNS:
        attempts = provenance(results / r)
        assert RunStore(results / r).status().state == "done"
        assert len(attempts) == 2 and attempts[1]["resumed_from_epoch"] >= 1, attempts
        assert attempts[0]["slurm_job_id"] == attempts[1]["slurm_job_id"], "requeued as the same job"
        pd.testing.assert_frame_equal(table(results / r), table(local_long / r), check_exact=True)
    log = Path(record(results / RUNS[0])["log"]).read_text()
    assert "this job is preempted" in log and "Requeued job" in log
    assert cli("status", suite, "--results", results) == 0
    assert "2 done" in capsys.readouterr().out


@pytest.fixture
def small_cluster(slurm_cluster, tmp_path: Path, monkeypatch):
    """A second one-node cluster (own folder and ports) with MaxArraySize 3."""
    base = Path(f"/tmp/dapbench-slurm-small{os.getpid()}")
    env = {**os.environ, "DAPBENCH_SLURM_DIR": str(base), "DAPBENCH_SLURM_PORT": "6857",
           "DAPBENCH_SLURM_MAX_ARRAY_SIZE": "3"}
    out = subprocess.run([REPO / "scripts" / "slurm" / "start.sh"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    monkeypatch.setenv("SLURM_CONF", str(base / "slurm.conf"))
    scheduler.max_array_size.cache_clear()
    yield base
    scheduler.max_array_size.cache_clear()
    subprocess.run([REPO / "scripts" / "slurm" / "stop.sh", "--purge"], env=env, capture_output=True)


def test_a_grid_larger_than_max_array_size_is_split(small_cluster, tmp_path: Path, capsys) -> None:
    """7 runs, 2 per job: 4 jobs, on a cluster whose arrays hold 3: an array of 3 jobs and a single job, both
    in the dry run; with `parallelism` unset, no `%` limit (submitit would write %256)."""
    suite = slurm_suite(tmp_path / "big.yaml", seeds=7, launcher={"runs_per_job": 2, "parallelism": None,
                                                                  "resources": {"sbatch": {"hold": True}}})
    results = tmp_path / "results"
    assert cli("run", suite, "--results", results, "--dry-run") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "7 runs in 4 jobs, 2 runs per job" in out and "2 arrays (at most 3 jobs each: the cluster's" in out, out
    assert "6 runs in 3 jobs" in out and "--array=0-2 " in out and "1 runs in 1 job (hopper)" in out
    assert cli("run", suite, "--results", results) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.count("submitted array") == 2 and "7 submitted" in out, out
    ids = [record(results / f"hopper/ppo/seed_{i}")["job_id"] for i in range(7)]
    array = ids[0].split("_")[0]
    assert ids[:6] == [f"{array}_{i // 2}" for i in range(6)] and "_" not in ids[6], ids
    script = (results / slurm.SUBMIT_FOLDER / f"{array}_submission.sh").read_text()
    assert "#SBATCH --array=0-2\n" in script, "no parallelism limit: no %"
    assert sorted(scheduler.job_states(ids)) == sorted(set(ids))
    assert cli("cancel", suite, "--results", results) == 0
    assert "cancelled 4 jobs" in capsys.readouterr().out


def test_start_sh_on_a_node_completing_a_job_says_up(slurm_cluster, tmp_path: Path) -> None:
    """A job that ignores SIGTERM keeps the node `comp` after scancel; start.sh then still finds the cluster up."""
    pid_file = tmp_path / "pid"
    job = subprocess.run(["sbatch", "--parsable", "-o", "/dev/null", "--wrap",
                          f"echo $$ > {pid_file}; trap '' TERM; exec sleep 120"],
                         capture_output=True, text=True, check=True).stdout.strip()
    try:
        _until(job, lambda s: s == "RUNNING")
        while not pid_file.exists() or not pid_file.read_text().strip():
            time.sleep(0.1)
        subprocess.run(["scancel", job], check=True)
        _until(job, lambda s: s == "COMPLETING", timeout=10)
        node = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True).stdout.split()
        out = subprocess.run([REPO / "scripts" / "slurm" / "start.sh"], capture_output=True, text=True)
        assert out.returncode == 0 and "slurm up (already running)" in out.stdout, (node, out.stdout, out.stderr)
    finally:
        with contextlib.suppress(OSError, ValueError):  # the job's own process, started by this test
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
    _until(job, lambda s: s not in scheduler.RUNNING, timeout=30)
