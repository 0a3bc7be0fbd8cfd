"""TensorBoard events (suite switch `tensorboard: true`): a view of the per-epoch table, read back here with
TensorBoard's own reader; switching it on never changes a run's identity or its numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # the dev extra installs it

from dapbench.results.store import RunStore
from dapbench.suite import expand, load_suite
from tests.conftest import cli, table, write_suite


def test_events_mirror_the_table_and_leave_identity_alone(tmp_path: Path) -> None:
    fields = dict(tasks=["hopper"], seeds=[0], budget={"total_steps": 2000, "steps_per_epoch": 1000})
    plain = write_suite(tmp_path / "plain.yaml", **fields)
    board = write_suite(tmp_path / "board.yaml", tensorboard=True, **fields)
    (a,), (b,) = expand(load_suite(plain)), expand(load_suite(board))
    assert b.tensorboard and not a.tensorboard and a.hash == b.hash and a.identity == b.identity

    assert cli("run", board, "--results", tmp_path / "r", "--launcher", "debug") == 0
    run = tmp_path / "r" / "hopper" / "ppo" / "seed_0"
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    rows = table(run)
    for col in ("eval_return_mean", "train_return_mean", "approx_kl", "entropy"):
        events = acc.Scalars(col)
        assert [e.step for e in events] == rows["env_steps"].tolist()
        assert [e.value for e in events] == pytest.approx(rows[col].tolist(), rel=1e-6)
    assert "epoch" not in acc.Tags()["scalars"]
    assert RunStore(run).read_spec().hash == a.hash

    # the same spec without the switch: the same numbers (the events are only a view)
    assert cli("run", plain, "--results", tmp_path / "p", "--launcher", "debug") == 0
    other = table(tmp_path / "p" / "hopper" / "ppo" / "seed_0")
    assert rows.equals(other)
    assert not (tmp_path / "p" / "hopper" / "ppo" / "seed_0" / "tensorboard").exists()
