"""`dapbench reproduce`: a finished run re-executed from its spec gives the same table; an altered one does not."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dapbench.verify.reproduce import compare_tables, stack_changes
from tests.conftest import cli


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    from tests.conftest import write_suite

    root = tmp_path_factory.mktemp("reproduce")
    suite = write_suite(root / "smoke.yaml", seeds=[0])
    assert cli("run", suite, "--results", root / "results") == 0
    return root / "results" / "hopper" / "ppo" / "seed_0"


def test_a_finished_smoke_run_reproduces_bit_identically(finished_run: Path, capsys) -> None:
    assert cli("reproduce", finished_run) == 0
    out = capsys.readouterr().out
    assert "same machine type and software stack" in out
    assert "reproduces" in out and "bit-identical in every epoch" in out


def test_an_altered_table_does_not_reproduce_and_the_metric_and_epoch_are_named(finished_run: Path, tmp_path,
                                                                               capsys) -> None:
    import shutil

    run = tmp_path / "seed_0"
    shutil.copytree(finished_run, run)
    df = pd.read_parquet(run / "metrics.parquet")
    df.loc[df["epoch"] == 2, "eval_return_mean"] += 0.5
    df.to_parquet(run / "metrics.parquet", index=False)
    assert cli("reproduce", run) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "1 of" in out and "columns differ" in out
    assert "eval_return_mean │ 2 │ 1 │" in out, out
    assert "does not reproduce" in out


def test_compare_tables_ignores_timing_columns_and_reports_first_epoch() -> None:
    a = pd.DataFrame({"epoch": [1, 2, 3], "x": [1.0, float("nan"), 3.0], "steps_per_s": [5.0, 6.0, 7.0]})
    b = pd.DataFrame({"epoch": [1, 2, 3], "x": [1.0, float("nan"), 3.5], "steps_per_s": [9.0, 9.0, 9.0]})
    compared, diffs, missing = compare_tables(a, b)
    assert compared == ["epoch", "x"] and not missing
    assert [(d.column, d.first_epoch, d.n_epochs, d.max_abs) for d in diffs] == [("x", 3, 1, 0.5)]
    _, _, missing = compare_tables(a, b.drop(columns="x"))
    assert missing == ["x"]


def test_stack_changes_name_the_packages_that_differ() -> None:
    old = {"python": "3.11.9", "packages": {"torch": "2.13.0", "numpy": "2.4.6", "dapbench": "0.1.0"}, "cpu": "X"}
    new = {"python": "3.11.9", "packages": {"torch": "2.14.0", "numpy": "2.4.6", "dapbench": "0.2.0"}, "cpu": "X"}
    assert stack_changes(old, new) == ["torch 2.13.0 -> 2.14.0"]
    assert stack_changes(old, old) == []


def test_an_unfinished_or_missing_run_is_refused_with_its_path(tmp_path: Path, capsys) -> None:
    assert cli("reproduce", tmp_path / "nowhere") == 2
    assert "nowhere" in capsys.readouterr().err
