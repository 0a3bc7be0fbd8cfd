"""Folders and files that are not what a command expects (issue 19): `report`, `check`, `reproduce`, `status` and
`data validate` say what and where in one line, exit 2 and write nothing; checkpoints, snapshots and priors are
loaded as data only; run files honour the umask; `status` tells a killed run from a running one; `report` while
a suite runs reads the finished runs and says how many are not.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from dapbench.results.store import RunStore
from tests.conftest import cli, cli_subprocess, tree, write_suite

RUN = Path("hopper/ppo/seed_0")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(suite, results, baseline): one finished smoke run made under umask 022, and a baseline of it."""
    root = tmp_path_factory.mktemp("finished")
    suite = write_suite(root / "smoke.yaml", seeds=[0])
    old = os.umask(0o022)
    try:
        assert cli("run", suite, "--results", root / "results") == 0
    finally:
        os.umask(old)
    assert cli("check", root / "results", "--baseline", root / "baseline.json", "--update") == 0
    return suite, root / "results", root / "baseline.json"


def _truncate(run: Path) -> str:
    p = run / "metrics.parquet"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return f"{p}: corrupt metrics table"


def _spec_syntax(run: Path) -> str:
    (run / "spec.yaml").write_text("hash: [unclosed\n")
    return f"{run / 'spec.yaml'}: corrupt spec"


def _spec_edited(run: Path) -> str:
    body = yaml.safe_load((run / "spec.yaml").read_text())
    body["spec"]["seed"] = 7
    (run / "spec.yaml").write_text(yaml.safe_dump(body))
    return f"{run / 'spec.yaml'}: stored hash"


def _spec_escapes(run: Path) -> str:
    body = yaml.safe_load((run / "spec.yaml").read_text())
    body["spec"]["label"] = "../../elsewhere"
    (run / "spec.yaml").write_text(yaml.safe_dump(body))
    return f"{run / 'spec.yaml'}: corrupt spec (label: '../../elsewhere' contains '/'"


def _status_future(run: Path) -> str:
    (run / "status.json").write_text(json.dumps({"state": "archived", "epoch": 3, "epochs": 3, "schema": 4}))
    return f"{run / 'status.json'}: unknown state 'archived'"


def _status_garbage(run: Path) -> str:
    (run / "status.json").write_bytes(b"\xff\xfe{{{")
    return f"{run / 'status.json'}: corrupt status file"


def _status_wrong_type(run: Path) -> str:
    (run / "status.json").write_text(json.dumps({"state": "done", "epoch": "three"}))
    return f"{run / 'status.json'}: corrupt status file (epoch: Input should be a valid integer"


DAMAGE = {"truncated parquet": _truncate, "spec that does not parse": _spec_syntax, "spec edited by hand": _spec_edited,
          "spec with a label that escapes": _spec_escapes,
          "status from the future": _status_future, "status not JSON": _status_garbage,
          "status with a wrong type": _status_wrong_type}


@pytest.fixture
def damaged(finished, tmp_path: Path, request) -> tuple[Path, str]:
    """A copy of the finished results folder with one file damaged; (results, what the error must say)."""
    results = tmp_path / "results"
    shutil.copytree(finished[1], results)
    return results, DAMAGE[request.param](results / RUN)


def _refused(args: list, expected: str, root: Path, capsys) -> None:
    before = tree(root)
    assert cli(*args) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]  # progress lines aside
    assert "Traceback" not in err and len(errors) == 1, err
    assert expected in errors[0], err
    assert tree(root) == before, "a refused command writes nothing"


@pytest.mark.parametrize("damaged", list(DAMAGE), indirect=True)
def test_report_refuses_a_damaged_run_folder(damaged, tmp_path: Path, monkeypatch, capsys) -> None:
    results, expected = damaged
    monkeypatch.chdir(tmp_path)
    _refused(["report", results, "-o", tmp_path / "out", "--reps", 20, "--no-pdf"], expected, tmp_path, capsys)
    _refused(["report", results, "--reps", 20, "--no-pdf"], expected, tmp_path, capsys)  # default out: reports/


@pytest.mark.parametrize("damaged", list(DAMAGE), indirect=True)
def test_reproduce_refuses_a_damaged_run_folder(damaged, tmp_path: Path, capsys) -> None:
    results, expected = damaged
    _refused(["reproduce", results / RUN, "--scratch", tmp_path / "scratch"], expected, tmp_path, capsys)


@pytest.mark.parametrize("damaged", list(DAMAGE), indirect=True)
def test_status_names_a_damaged_run_folder(damaged, finished, tmp_path: Path, capsys) -> None:
    """Not `done`: a truncated table or a spec that does not parse is shown as damaged, with one error line naming
    the file, and exit 2."""
    results, expected = damaged
    _refused(["status", finished[0], "--results", results], expected, tmp_path, capsys)
    assert cli("status", finished[0], "--results", results) == 2
    out = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert f"{RUN} damaged -" in out and "1 damaged" in out and "done" not in out


def _metrics_gone(run: Path) -> list[str]:
    (run / "metrics.parquet").unlink()
    return [f"{run / 'metrics.parquet'}: missing, though status.json says 3 epochs are done"]


def _folder_is_a_file(run: Path) -> list[str]:
    shutil.rmtree(run)
    run.write_text("not a run\n")
    return [f"{run}: is a file, not a run folder: move it"]


def _label_is_a_file(run: Path) -> list[str]:
    shutil.rmtree(run.parent)
    run.parent.write_text("not a folder\n")
    return [f"{run.parent}: is a file, not a folder; the run folder {run.parent / s} cannot be there: move it"
            for s in ("seed_0", "seed_1")]


def _spec_empty(run: Path) -> list[str]:
    (run / "spec.yaml").write_bytes(b"")
    return [f"{run / 'spec.yaml'}: corrupt spec"]


STATUS_DAMAGE = {"metrics table deleted": _metrics_gone, "run folder is a file": _folder_is_a_file,
                 "label folder is a file": _label_is_a_file, "empty spec": _spec_empty,
                 **{k: lambda run, f=f: [f(run)] for k, f in DAMAGE.items()}}


@pytest.mark.parametrize("case", list(STATUS_DAMAGE))
def test_status_shows_the_other_runs_beside_a_damaged_one(case: str, finished, tmp_path: Path, capsys) -> None:
    """One error line per damaged run folder, naming the file; the other runs are still shown; exit 2; nothing
    written."""
    results = tmp_path / "results"
    shutil.copytree(finished[1], results)
    expected = STATUS_DAMAGE[case](results / RUN)
    suite = write_suite(tmp_path / "two.yaml", seeds=[0, 1])  # seed 0 is the finished run's spec
    before = tree(tmp_path)
    assert cli("status", suite, "--results", results) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in captured.err and len(errors) == len(expected), captured.err
    for line, piece in zip(errors, expected, strict=True):
        assert line.startswith(f"error: {piece}"), (line, piece)
    rows = " ".join(captured.out.replace("│", " ").split())
    if len(expected) == 1:
        assert f"{RUN} damaged -" in rows and "hopper/ppo/seed_1 pending" in rows and "1 damaged, 1 pending" in rows
    else:
        assert "2 damaged" in rows
    assert tree(tmp_path) == before, "status writes nothing"


def test_status_names_a_run_folder_that_holds_another_spec(finished, tmp_path: Path, capsys) -> None:
    """A suite edited after its runs: `run` refuses the folder, so `status` does not call it done."""
    suite = write_suite(tmp_path / "edited.yaml", seeds=[0], evaluation={"episodes": 1, "every": 1})
    _refused(["status", suite, "--results", finished[1]], f"{finished[1] / RUN / 'spec.yaml'}: holds a different "
             "spec", tmp_path.parent, capsys)
    assert cli("status", suite, "--results", finished[1]) == 2
    assert f"{RUN} other spec" in " ".join(capsys.readouterr().out.replace("│", " ").split())


@pytest.mark.parametrize("damaged", ["truncated parquet", "status from the future"], indirect=True)
def test_check_refuses_a_damaged_run_folder(damaged, finished, tmp_path: Path, capsys) -> None:
    results, expected = damaged
    _refused(["check", results, "--baseline", finished[2]], expected, tmp_path, capsys)


def test_check_refuses_a_folder_given_as_the_baseline(finished, tmp_path: Path, capsys) -> None:
    _refused(["check", finished[1], "--baseline", tmp_path], f"{tmp_path}: cannot read the baseline", tmp_path,
             capsys)


@pytest.mark.parametrize("what", ["a file", "an empty folder", "nothing"])
def test_every_reader_refuses_a_folder_that_holds_no_runs(what: str, finished, tmp_path: Path, monkeypatch,
                                                          capsys) -> None:
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "target"
    if what == "a file":
        target.write_text("results\n")
    elif what == "an empty folder":
        target.mkdir()
    said = {"a file": "", "an empty folder": "no run folders", "nothing": "no such"}[what]
    for args in (["report", target, "-o", tmp_path / "out", "--no-pdf"], ["check", target, "--baseline", finished[2]],
                 ["reproduce", target]):
        _refused(args, f"{target}", tmp_path, capsys)
        if said and args[0] != "reproduce":
            assert cli(*args) == 2 and said in capsys.readouterr().err
    if what != "nothing":
        _refused(["status", target, "--results", tmp_path / "r"], f"{target}:", tmp_path, capsys)


def test_report_check_and_reproduce_name_a_file_given_as_results(finished, tmp_path: Path, capsys) -> None:
    spec = finished[1] / RUN / "spec.yaml"
    for args in (["report", spec, "-o", tmp_path / "out"], ["check", spec, "--baseline", finished[2]],
                 ["reproduce", spec]):
        _refused(args, str(spec), tmp_path, capsys)


@pytest.mark.parametrize("dataset_id", ["../../etc/passwd", "dapbench/../../x-v0", "hopper", "/abs/x-v0",
                                        "dapbench/hopper/.hidden-v0", "dapbench/hopper/medium"])
def test_data_validate_refuses_an_id_that_is_not_one(dataset_id: str, env_dirs, tmp_path: Path, capsys) -> None:
    _refused(["data", "validate", dataset_id], f"{dataset_id!r} is not a dataset id", env_dirs, capsys)
    _refused(["data", "show", dataset_id], "NAMESPACE/NAME-vN", env_dirs, capsys)


def test_data_validate_names_a_missing_or_damaged_dataset(env_dirs, capsys) -> None:
    _refused(["data", "validate", "dapbench/hopper/nothing-v0"], "'dapbench/hopper/nothing-v0' not found",
             env_dirs, capsys)
    assert cli("data", "make", "hopper", "--quality", "random", "--steps", "300") == 0
    capsys.readouterr()
    ds = "dapbench/hopper/random-n300-v0"
    from dapbench.data.load import dataset_path

    data = [p for p in dataset_path(ds).rglob("*") if p.is_file() and p.name != "metadata.json"]
    assert data, "the dataset has data files"
    for p in data:
        p.write_bytes(p.read_bytes()[:40])
    _refused(["data", "validate", ds], f"dataset '{ds}'", env_dirs, capsys)
    (dataset_path(ds) / "data" / "metadata.json").write_text("{not json")
    _refused(["data", "validate", ds], f"dataset '{ds}' is unreadable", env_dirs, capsys)


# ----- files from others are data, not code -------------------------------------------------------------------
class _Evil:
    marker = ""

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _evil(path: Path, marker: Path, raw: bool = False) -> None:
    import pickle

    import torch

    _Evil.marker = str(marker)
    path.parent.mkdir(parents=True, exist_ok=True)
    if raw:
        path.write_bytes(pickle.dumps(_Evil()))
    else:
        torch.save({"version": 1, "rows": [], "rng": _Evil()}, path)
    assert not marker.exists()


@pytest.mark.parametrize("raw", [False, True], ids=["torch.save", "plain pickle"])
def test_a_checkpoint_that_would_run_code_is_refused(finished, tmp_path: Path, raw: bool, capsys) -> None:
    suite, results, _ = finished
    run = tmp_path / "results" / RUN
    shutil.copytree(results / RUN, run)
    marker = tmp_path / "MARKER"
    _evil(run / "checkpoint.pt", marker, raw)
    with pytest.raises(Exception) as err:
        RunStore(run).load_checkpoint()
    assert type(err.value).__name__ == "RunFolderError"
    assert f"{run / 'checkpoint.pt'}: refused to load" in str(err.value) and "could run code" in str(err.value)
    if not raw:
        assert "posix.system" in str(err.value)
    store = RunStore(run)  # resuming the run: it fails with that error, and nothing ran
    st = store.status()
    st.state, st.epoch = "running", 2
    store.write_status(st)
    before = (run / "metrics.parquet").read_bytes()
    assert cli("run", suite, "--results", tmp_path / "results") == 2, "a refused run folder is bad input: exit 2"
    err = " ".join(capsys.readouterr().err.split())
    assert err.count(f"{run / 'checkpoint.pt'}: refused to load") == 1 and "Traceback" not in err
    assert not marker.exists() and (run / "metrics.parquet").read_bytes() == before, "nothing computed is lost"
    assert "refused: " in store.log_path.read_text()


def test_a_policy_snapshot_and_a_prior_that_would_run_code_are_refused(env_dirs, finished, tmp_path: Path) -> None:
    from dapbench.diffusion.prior import PriorConfig, _data_hash, _folder, load_or_train
    from dapbench.errors import RunFolderError
    from dapbench.training.trainer import load_policy

    marker = tmp_path / "MARKER"
    run = tmp_path / "run"
    shutil.copytree(finished[1] / RUN, run)
    _evil(RunStore(run).snapshot_path(1), marker)
    with pytest.raises(RunFolderError, match=r"policy_epoch_0001\.pt: refused to load: it would import posix\.system"):
        load_policy(run, 1)
    assert cli("data", "make", "hopper", "--quality", "random", "--steps", "400") == 0
    ds, cfg = "dapbench/hopper/random-n400-v0", PriorConfig(train_steps=1)
    folder = _folder("hopper", _data_hash(ds), 11, 3, cfg, None)
    _evil(folder / "prior.pt", marker)
    with pytest.raises(RunFolderError, match=r"prior.pt: refused to load: .* a prior never holds"):
        load_or_train("hopper", ds, 1.0, cfg)
    assert not marker.exists()


def test_checkpoints_written_before_the_safe_loader_still_load() -> None:
    import numpy as np

    legacy = Path(__file__).parent / "fixtures" / "legacy-0.1" / "partial" / RUN
    ckpt = RunStore(legacy).load_checkpoint()
    assert ckpt["epoch"] == 2 and isinstance(ckpt["rng"]["numpy"][1], np.ndarray)
    assert isinstance(ckpt["algorithm"]["rng"], dict) and ckpt["algorithm"]["buffer"]["obs"].dtype == np.float32


# ----- permissions -------------------------------------------------------------------------------------------
def test_run_files_honour_the_umask(finished) -> None:
    run = finished[1] / RUN
    files = ["spec.yaml", "status.json", "provenance.json", "metrics.parquet", "metrics.json", "checkpoint.pt",
             "run.log"]
    modes = {f: oct(stat.S_IMODE((run / f).stat().st_mode)) for f in files}
    assert modes == dict.fromkeys(files, "0o644"), modes  # umask 022: readable by collaborators


@pytest.mark.parametrize("umask,mode", [(0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_take_the_umask_as_open_does(tmp_path: Path, umask: int, mode: int) -> None:
    from dapbench.results.atomic import atomic_write_text

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
        with open(tmp_path / "g.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    modes = [stat.S_IMODE((tmp_path / f).stat().st_mode) for f in ("f.txt", "g.txt")]
    assert modes == [mode, mode]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt", "g.txt"]


# ----- status tells the truth --------------------------------------------------------------------------------
def _status_row(capsys, run: str) -> str:
    out = capsys.readouterr().out
    return " ".join(next(line for line in out.splitlines() if run in line).replace("│", " ").split())


def _wait(store: RunStore, proc: subprocess.Popen, epoch: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if store.status_path.exists() and store.status().state == "running" and store.status().epoch >= epoch:
            return
        time.sleep(0.05)
    raise AssertionError(f"{store.dir} did not reach epoch {epoch} (exit {proc.poll()})")


def test_status_shows_a_killed_run_as_interrupted_and_a_live_one_as_running(tmp_path: Path, capsys) -> None:
    suite = write_suite(tmp_path / "s.yaml", seeds=[0], budget={"total_steps": 30_000, "steps_per_epoch": 1000})
    results = tmp_path / "r"
    store = RunStore(results / RUN)
    proc = cli_subprocess("run", suite, "--results", results)
    try:
        _wait(store, proc, 1)
        assert cli("status", suite, "--results", results) == 0
        assert _status_row(capsys, str(RUN)).startswith(f"{RUN} running")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    st = store.status()
    assert st.state == "running" and st.pid and st.hostname == os.uname().nodename  # what the file still says
    before = tree(tmp_path)
    assert cli("status", suite, "--results", results) == 0
    out = capsys.readouterr().out
    row = next(" ".join(line.replace("│", " ").split()) for line in out.splitlines() if str(RUN) in line)
    assert row.startswith(f"{RUN} interrupted {st.epoch}/30") and f"{RUN}: its process is gone: `run` resumes it" in out
    assert cli("run", suite, "--results", results, "--dry-run") == 0
    assert "interrupted" in capsys.readouterr().out
    assert tree(tmp_path) == before, "status and a dry run write nothing, not even a lock file"


def test_status_trusts_a_run_of_another_machine_and_sees_a_free_lock(finished, tmp_path: Path, capsys) -> None:
    suite, results, _ = finished
    copy = tmp_path / "r"
    shutil.copytree(results, copy)
    store = RunStore(copy / RUN)
    for host, pid, shown in (("another-node", 1, "running"), (os.uname().nodename, os.getpid(), "interrupted"),
                             (None, None, "interrupted")):
        store.status_path.write_text(json.dumps({"state": "running", "epoch": 2, "epochs": 3, "hostname": host,
                                                 "pid": pid}))
        assert cli("status", suite, "--results", copy) == 0
        assert _status_row(capsys, str(RUN)).startswith(f"{RUN} {shown} 2/3"), (host, pid)
    with store.lock():  # this process holds the lock: it is running
        assert cli("status", suite, "--results", copy) == 0
        assert _status_row(capsys, str(RUN)).startswith(f"{RUN} running 2/3")


# ----- report while a suite is running -----------------------------------------------------------------------
def test_report_and_a_second_run_while_a_suite_runs(tmp_path: Path, capsys) -> None:
    suite = write_suite(tmp_path / "s.yaml", tasks=["hopper", "swimmer"], seeds=[0],
                        overrides=[{"tasks": ["swimmer"], "budget": {"total_steps": 30_000}}])
    results = tmp_path / "r"
    running = RunStore(results / "swimmer" / "ppo" / "seed_0")
    proc = cli_subprocess("run", suite, "--results", results)
    try:
        _wait(running, proc, 1)
        assert RunStore(results / RUN).status().state == "done"
        code = cli("report", results, "-o", tmp_path / "out", "--reps", 50, "--no-pdf")
        epoch = running.status().epoch
        assert running.status().state == "running" and proc.poll() is None, "the suite was still running"
        err = " ".join(capsys.readouterr().err.split())
        pid = running.status().pid
        assert cli("run", suite, "--results", results) == 0  # a second `run` of the suite at once trains nothing
        out = " ".join(capsys.readouterr().out.split())
        assert "1 already done" in out and "1 running elsewhere" in out and running.status().pid == pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert code == 0
    assert "dropped 1 of 2 runs that are not complete" in err and "swimmer/ppo/seed_0: running (epoch" in err
    assert epoch < 30 and (tmp_path / "out" / "report.html").is_file()
    import pandas as pd

    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert list(runs["task"]) == ["hopper"], "only the finished run is in the tables"


def test_data_make_refuses_bad_arguments_before_anything(env_dirs, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file\n")
    _refused(["data", "make", "hopper", "--behaviour-root", blocker / "runs"], f"{blocker}: the behaviour runs' "
             "folder", tmp_path, capsys)
    _refused(["data", "make", "hopper", "--seed", "-1"], "--seed must be 0 to", tmp_path, capsys)
    _refused(["data", "make", "../hopper"], "unknown task '../hopper'", tmp_path, capsys)
