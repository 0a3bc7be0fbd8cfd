from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import absl.logging
import pandas as pd
import pytest
import yaml

# rliable imports absl, whose logging handler keeps the sys.stderr of the moment it is created; under pytest that is
# a capture file closed at the end of a test module, and a later log line (submitit's, at exit) then fails on it.
absl.logging.get_absl_handler().python_handler.stream = sys.__stderr__

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "suites" / "smoke.yaml"
# Test-only algorithms (fault injection) come through a real entry point: put their folder on the path of this
# process and of every process it starts (local pool workers, Slurm jobs) before anything loads the registry.
PLUGINS = REPO / "tests" / "plugins"
sys.path.insert(0, str(PLUGINS))
os.environ["PYTHONPATH"] = os.pathsep.join([str(PLUGINS), *filter(None, [os.environ.get("PYTHONPATH")])])

from dapbench.cli import main  # noqa: E402
from dapbench.results.columns import timing_columns  # noqa: E402


def builtin_algorithms() -> list[str]:
    """The algorithms dapbench itself provides (test plugins left out)."""
    from dapbench import registry

    return sorted(n for n in registry.algorithms() if registry.provider(n).dist == "dapbench")


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


def run_and_kill(suite: Path, results: Path, run_dir: Path, after_epoch: int, timeout: float = 300,
                 settle: float = 0.3) -> int:
    """Run `suite` in a subprocess, SIGKILL it mid-epoch once `run_dir` has finished `after_epoch` epochs;
    return the epochs it had finished."""
    from dapbench.results.store import RunStore

    proc = cli_subprocess("run", suite, "--results", results)
    store = RunStore(run_dir)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if store.status_path.exists() and store.status().epoch >= after_epoch:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    time.sleep(settle)  # land mid-epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert store.status().state == "running"
    return store.status().epoch


def tree(root: Path) -> dict[str, tuple]:
    """Every entry under `root` (not following links): kind, size, mtime, mode: a refused command must leave it
    unchanged."""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(d) / n
            st = p.lstat()
            out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns, st.st_mode)
    return out


def table(run_dir: Path) -> pd.DataFrame:
    """A run's per-epoch table without the machine-dependent timing columns."""
    df = pd.read_parquet(Path(run_dir) / "metrics.parquet")
    return df.drop(columns=timing_columns(df.columns))


@pytest.fixture(scope="module")
def env_dirs(tmp_path_factory):
    """Per test module: its own Minari datasets folder and prior cache (nothing shared with the user's)."""
    root = tmp_path_factory.mktemp("data")
    mp = pytest.MonkeyPatch()
    mp.setenv("MINARI_DATASETS_PATH", str(root / "minari"))
    mp.setenv("DAPBENCH_PRIORS", str(root / "priors"))
    yield root
    mp.undo()


@pytest.fixture
def smoke_suite(tmp_path: Path) -> Path:
    return write_suite(tmp_path / "smoke.yaml", seeds=[0])
