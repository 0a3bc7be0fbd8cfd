"""Same spec, same numbers on CPU; killed (SIGKILL) and resumed, same numbers again."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dapbench.results.store import RunStore
from tests.conftest import cli, run_and_kill, table, write_suite

RUN = Path("hopper/ppo/seed_0")


def test_same_spec_twice_is_bit_identical(smoke_suite: Path, tmp_path: Path) -> None:
    assert cli("run", smoke_suite, "--results", tmp_path / "a") == 0
    assert cli("run", smoke_suite, "--results", tmp_path / "b") == 0
    a, b = table(tmp_path / "a" / RUN), table(tmp_path / "b" / RUN)
    assert len(a) == 3 and a["eval_return_mean"].notna().all()
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_sigkill_and_resume_equals_uninterrupted(tmp_path: Path) -> None:
    suite = write_suite(tmp_path / "s.yaml", seeds=[0], budget={"total_steps": 8000, "steps_per_epoch": 1000})
    assert cli("run", suite, "--results", tmp_path / "full") == 0

    killed_at = run_and_kill(suite, tmp_path / "killed", tmp_path / "killed" / RUN, after_epoch=3)
    assert 3 <= killed_at < 8
    store = RunStore(tmp_path / "killed" / RUN)

    assert cli("run", suite, "--results", tmp_path / "killed") == 0
    assert store.status().state == "done"
    pd.testing.assert_frame_equal(table(tmp_path / "full" / RUN), table(tmp_path / "killed" / RUN),
                                  check_exact=True)
    log = store.log_path.read_text()
    assert f"resumed from epoch {killed_at}" in log


def test_resume_after_a_failure_keeps_finished_epochs(tmp_path: Path, monkeypatch, capsys) -> None:
    """A NaN at epoch 2 fails the run with its error; the epoch-1 checkpoint is kept and the run resumes."""
    faulty = {"name": "ppo-faulty", "label": "ppo", "config": {"num_steps": 512, "num_minibatches": 4,
                                                               "update_epochs": 2}}
    suite = write_suite(tmp_path / "s.yaml", seeds=[0, 1], algorithms=[faulty])
    monkeypatch.setenv("DAPBENCH_TEST_NAN_AT_EPOCH", "2")
    assert cli("run", suite, "--results", tmp_path / "r") == 1
    out = capsys.readouterr()
    assert "non-finite policy_loss at epoch 2" in out.err
    assert "0 done, 2 failed" in out.out
    st = RunStore(tmp_path / "r" / RUN).status()
    assert st.state == "failed" and st.epoch == 1 and "non-finite policy_loss" in st.error
    assert len(RunStore(tmp_path / "r" / RUN).read_metrics()) == 1

    monkeypatch.delenv("DAPBENCH_TEST_NAN_AT_EPOCH")
    assert cli("run", suite, "--results", tmp_path / "r") == 0
    assert cli("run", suite, "--results", tmp_path / "clean") == 0
    for seed in (0, 1):
        run = Path(f"hopper/ppo/seed_{seed}")
        pd.testing.assert_frame_equal(table(tmp_path / "r" / run), table(tmp_path / "clean" / run), check_exact=True)
