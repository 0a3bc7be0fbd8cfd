"""A quiet console: third-party warnings (Minari's metadata advice, MuJoCo's deprecations) are kept in the run's
log and the dataset's make.log, never printed by `run` or `data make`; dapbench's own warnings still show."""

from __future__ import annotations

import warnings
from pathlib import Path

from dapbench.data.load import dataset_path
from dapbench.results.store import RunStore
from dapbench.training.quiet import third_party_to
from tests.conftest import cli, write_suite

NOISE = ("settotalmass", "code_permalink", "author_email", "eval_env", "UserWarning", "DeprecationWarning")


def test_run_and_data_make_print_no_third_party_warning(tmp_path: Path, capfd, env_dirs) -> None:
    # HalfCheetah's model makes MuJoCo warn (settotalmass); writing a dataset makes Minari warn three times
    assert cli("data", "make", "halfcheetah", "--quality", "random", "--steps", "300") == 0
    out, err = capfd.readouterr()
    assert not [n for n in NOISE if n in out + err], out + err
    log = (dataset_path("dapbench/halfcheetah/random-n300-v0") / "make.log").read_text()
    assert "code_permalink" in log and "settotalmass" in log

    suite = write_suite(tmp_path / "s.yaml", tasks=["halfcheetah"], seeds=[0],
                        budget={"total_steps": 1000, "steps_per_epoch": 1000})
    assert cli("run", suite, "--results", tmp_path / "r", "--launcher", "local") == 0
    out, err = capfd.readouterr()
    assert not [n for n in NOISE if n in out + err], out + err
    assert "settotalmass" in RunStore(tmp_path / "r" / "halfcheetah" / "ppo" / "seed_0").log_path.read_text()


def test_dapbench_s_own_warnings_still_show() -> None:
    seen, shown = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *_a, **_k: shown.append(str(message))  # the console
        with third_party_to(seen.append):
            warnings.warn("ours", UserWarning, stacklevel=1)  # raised from this file: not third-party
            warnings.warn_explicit("theirs", UserWarning, "/venv/lib/site-packages/pkg/mod.py", 3)
    assert shown == ["ours"] and seen == ["UserWarning: theirs (/venv/lib/site-packages/pkg/mod.py:3)"]
