"""The run folder: layout, idempotent runs, spec mismatch, corrupt files."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from dapbench.results.store import RunStore
from tests.conftest import cli, write_suite

RUN = Path("hopper/ppo/seed_0")


def test_run_folder_layout_and_provenance(smoke_suite: Path, tmp_path: Path) -> None:
    assert cli("run", smoke_suite, "--results", tmp_path) == 0
    store = RunStore(tmp_path / RUN)
    for f in ("spec.yaml", "status.json", "provenance.json", "metrics.parquet", "checkpoint.pt", "run.log"):
        assert (tmp_path / RUN / f).is_file(), f
    body = yaml.safe_load(store.spec_path.read_text())
    assert body["hash"] == store.read_spec().hash and body["spec"]["config"]["clip_coef"] == 0.2
    prov = json.loads(store.provenance_path.read_text())
    assert len(prov) == 1 and prov[0]["packages"]["torch"] and "commit" in prov[0]["code"]
    df = store.read_metrics()
    assert list(df["epoch"]) == [1, 2, 3] and list(df["env_steps"]) == [1000, 2000, 3000]
    for col in ("train_return_mean", "eval_return_mean", "policy_loss", "value_loss", "approx_kl", "clip_frac",
                "explained_variance", "steps_per_s", "time_env_s", "time_update_s", "time_eval_s",
                "peak_rss_mb"):
        assert col in df.columns, col
    assert (df["peak_rss_mb"] > 50).all() and (df["time_env_s"] < df["time_epoch_s"]).all()
    assert not list(tmp_path.rglob("*.tmp")), "atomic writes leave no temporary files"


def test_rerun_skips_done_runs(smoke_suite: Path, tmp_path: Path, capsys) -> None:
    assert cli("run", smoke_suite, "--results", tmp_path) == 0
    mtime = (tmp_path / RUN / "metrics.parquet").stat().st_mtime_ns
    capsys.readouterr()
    assert cli("run", smoke_suite, "--results", tmp_path) == 0
    assert "1 already done, 0 to run" in capsys.readouterr().out
    assert (tmp_path / RUN / "metrics.parquet").stat().st_mtime_ns == mtime


def test_changed_spec_is_an_error_not_an_overwrite(smoke_suite: Path, tmp_path: Path, capsys) -> None:
    assert cli("run", smoke_suite, "--results", tmp_path) == 0
    before = (tmp_path / RUN / "metrics.parquet").read_bytes()
    changed = write_suite(tmp_path / "changed.yaml", seeds=[0],
                          algorithms=[{"name": "ppo", "config": {"num_steps": 256, "num_minibatches": 4}}])
    assert cli("run", changed, "--results", tmp_path) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "holds a different spec" in err and "config.num_steps (512 -> 256)" in err
    assert (tmp_path / RUN / "metrics.parquet").read_bytes() == before


def test_corrupt_checkpoint_fails_that_run_only(tmp_path: Path, capsys) -> None:
    suite = write_suite(tmp_path / "s.yaml", seeds=[0, 1], budget={"total_steps": 2000, "steps_per_epoch": 1000})
    assert cli("run", suite, "--results", tmp_path / "r", "--only", "seed=0") == 0
    ckpt = tmp_path / "r" / RUN / "checkpoint.pt"
    # Pretend the run was cut short, then damage its checkpoint.
    store = RunStore(tmp_path / "r" / RUN)
    st = store.status()
    st.state = "running"
    store.write_status(st)
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    capsys.readouterr()
    assert cli("run", suite, "--results", tmp_path / "r") == 2, "a corrupt run folder is bad input"
    out = capsys.readouterr()
    assert f"{ckpt}: corrupt checkpoint" in out.err and "Traceback" not in out.err
    assert RunStore(tmp_path / "r" / "hopper/ppo/seed_1").status().state == "done"
    assert ckpt.exists() and len(store.read_metrics()) == 2, "nothing already computed is lost"


def test_corrupt_spec_file_is_named(smoke_suite: Path, tmp_path: Path, capsys) -> None:
    assert cli("run", smoke_suite, "--results", tmp_path) == 0
    (tmp_path / RUN / "spec.yaml").write_text("hash: [unclosed\n")
    assert cli("run", smoke_suite, "--results", tmp_path) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "spec.yaml" in err and "corrupt spec" in err
