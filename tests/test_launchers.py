"""Launchers: the local process pool gives the same tables as the in-process debug launcher."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dapbench.results.store import RunStore
from tests.conftest import cli, run_and_kill, table, write_suite


def test_local_pool_equals_debug(tmp_path: Path, capsys) -> None:
    suite = write_suite(tmp_path / "s.yaml", seeds=[0, 1], budget={"total_steps": 2000, "steps_per_epoch": 1000})
    assert cli("run", suite, "--results", tmp_path / "debug", "--launcher", "debug") == 0
    assert cli("run", suite, "--results", tmp_path / "local", "--launcher", "local", "--jobs", "2") == 0
    out = capsys.readouterr().out
    assert "to run with the local launcher" in out and "2 done, 0 failed" in out
    pids = set()
    for seed in (0, 1):
        run = Path(f"hopper/ppo/seed_{seed}")
        a = RunStore(tmp_path / "debug" / run).read_metrics()
        b = RunStore(tmp_path / "local" / run).read_metrics()
        cols = ["eval_return_mean", "train_return_mean", "policy_loss", "value_loss", "approx_kl"]
        pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)
        pids.add(RunStore(tmp_path / "local" / run).status().pid)
    assert len(pids) == 2, "each run has a process of its own (so its peak memory is its own)"


def test_a_run_held_by_another_process_is_not_started_twice(smoke_suite: Path, tmp_path: Path, capsys) -> None:
    assert cli("run", smoke_suite, "--results", tmp_path, "--only", "seed=99") == 2  # no such cell
    capsys.readouterr()
    from dapbench.suite import expand, load_suite

    spec = expand(load_suite(smoke_suite))[0]
    store = RunStore(tmp_path / spec.relpath())
    store.init(spec)
    with store.lock():
        assert cli("run", smoke_suite, "--results", tmp_path) == 0
    out = capsys.readouterr().out
    assert "running" in out and "another process is running this run" in out
    assert store.status().state == "pending"


def test_status_counts(smoke_suite: Path, tmp_path: Path, capsys) -> None:
    assert cli("run", smoke_suite, "--results", tmp_path) == 0
    capsys.readouterr()
    two = write_suite(tmp_path / "two.yaml", seeds=[0, 1])
    assert cli("status", two, "--results", tmp_path) == 0
    out = capsys.readouterr().out
    assert "1 done, 1 pending" in out and "3/3" in out
    last = table(tmp_path / "hopper" / "ppo" / "seed_0")["eval_return_mean"].iloc[-1]
    assert f"{last:,.1f}" in out, "the latest evaluation return is shown"


def test_status_says_a_killed_run_is_interrupted_with_its_latest_evaluation(smoke_suite: Path, tmp_path: Path,
                                                                            capsys) -> None:
    """A run killed after epoch 1 of 3: status says `run` resumes it and shows its latest evaluation return."""
    run = tmp_path / "hopper" / "ppo" / "seed_0"
    assert run_and_kill(smoke_suite, tmp_path, run, after_epoch=1) >= 1
    capsys.readouterr()
    assert cli("status", smoke_suite, "--results", tmp_path, "--only", "seed=0") == 0
    out = capsys.readouterr().out
    assert "interrupted" in out and "`run` resumes it" in out
    assert f"{table(run)['eval_return_mean'].iloc[-1]:,.1f}" in out


def test_progress_gives_the_latest_evaluation_and_the_time_left(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    store.dir.mkdir(parents=True)
    store.write_metrics([{"epoch": e, "eval_return_mean": 10.0 * e if e < 3 else float("nan"), "time_epoch_s": 12.0}
                         for e in (1, 2, 3)])
    assert store.progress(8) == (20.0, 8 * 12.0)  # no checkpoint: it will start again from epoch 0
    store.checkpoint_path.write_bytes(b"resumable")
    assert store.progress(8) == (20.0, 5 * 12.0)  # the last evaluated epoch's return; 5 epochs left at 12 s
    ret, left = RunStore(tmp_path / "none").progress(3)
    assert ret != ret and left != left  # nothing to show, and no error


def test_the_dry_run_estimates_a_cell_from_its_own_runs_cpu_time_per_epoch(tmp_path: Path, capsys) -> None:
    """A cell with a run that has epochs is estimated from that run: its first epoch's CPU time (an offline stage
    included) for runs still to start, the later epochs' mean for the rest; a run without its checkpoint starts
    again from epoch 0; a cell without such a run goes at PPO's rate."""
    from dapbench.launch.plan import estimate_hours, grid_plan
    from dapbench.results.store import Status
    from dapbench.suite import expand, load_suite

    suite = write_suite(tmp_path / "s.yaml", tasks=["hopper"], seeds=[0, 1], algorithms=["ppo", "ppo-gc"],
                        budget={"total_steps": 3000, "steps_per_epoch": 1000})
    specs = expand(load_suite(suite))
    results = tmp_path / "r"
    first = next(s for s in specs if s.label == "ppo" and s.seed == 0)
    store = RunStore(results / first.relpath())
    store.init(first)
    store.write_metrics([{"epoch": e, "cpu_train_s": 100.0 if e == 1 else 10.0, "cpu_eval_s": 2.0} for e in (1, 2)])
    store.write_status(Status(state="pending", epoch=2, epochs=3))
    store.checkpoint_path.write_bytes(b"resumable")

    def left_s(label: str) -> float:
        cells = {c.label: c for c in grid_plan(specs, results).cells}
        return cells[label].hours * 3600

    # seed 0 resumes: its last epoch at 12 s; seed 1 starts: 102 s, then 2 x 12 s
    assert left_s("ppo") == pytest.approx(12.0 + 102.0 + 2 * 12.0)
    store.checkpoint_path.unlink()  # as a committed run folder on a new machine: seed 0 starts again too
    assert left_s("ppo") == pytest.approx(2 * (102.0 + 2 * 12.0))
    gc = [s for s in specs if s.label == "ppo-gc"]
    assert left_s("ppo-gc") == pytest.approx(sum(estimate_hours(s) for s in gc) * 3600)
    assert cli("run", suite, "--results", results, "--dry-run") == 0
    rows = {line.split("│")[2].strip(): line for line in capsys.readouterr().out.splitlines() if line.count("│") > 8}
    assert rows["ppo"].rstrip("│ ").endswith("1 run") and rows["ppo-gc"].rstrip("│ ").endswith("PPO's rate")
