from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dapbench.cli import main
from dapbench.training.trainer import timing_columns

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "suites" / "smoke.yaml"


def write_suite(path: Path, **fields) -> Path:
    """A smoke-sized suite with `fields` replaced."""
    base = yaml.safe_load(SMOKE.read_text())
    base.update(fields)
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return path


def cli(*args: str) -> int:
    return main([str(a) for a in args])


def cli_subprocess(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dapbench", *map(str, args)], cwd=REPO,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def table(run_dir: Path) -> pd.DataFrame:
    """A run's per-epoch table without the machine-dependent timing columns."""
    df = pd.read_parquet(Path(run_dir) / "metrics.parquet")
    return df.drop(columns=timing_columns(df.columns))


@pytest.fixture
def smoke_suite(tmp_path: Path) -> Path:
    return write_suite(tmp_path / "smoke.yaml", seeds=[0])
