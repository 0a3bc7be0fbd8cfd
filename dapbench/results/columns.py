"""What the columns of a run's per-epoch table are: which depend on the machine's load, and what each logged
metric means (the algorithm's declaration, written beside the table so a run folder describes itself)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TIMING_COLUMNS = (
    "steps_per_s", "time_env_s", "time_update_s", "time_eval_s", "time_epoch_s", "wall_clock_s",
    "peak_rss_mb", "cuda_peak_mb", "ref_env_steps_per_s", "time_train_s", "cpu_train_s", "cpu_eval_s",
)
DECLARED = "metrics.json"  # in the run folder: {"columns": {name: Metric.as_json()}, "algorithm": ...}

# Run folders written before algorithms declared their metrics (dapbench 0.1) logged these; their meaning
# and gate are fixed here so those folders still report and gate as they did.
LEGACY: dict[str, dict[str, Any]] = {
    "oglr": {"description": "offline-gradient leakage ratio ||grad L_PPO(non-fresh)|| / ||grad L_PPO|| "
             "(0 = no leak)", "gate": "zero", "bound": 1e-4, "audit": True},
    "spr": {"description": "share of non-fresh samples in PPO's surrogate, value loss and GAE (0 = strictly "
            "on-policy)", "gate": "zero", "bound": 1e-4, "audit": True},
    "ess_k": {"description": "effective sample size of the K energy weights over K, mean over states (1 = uniform)",
              "gate": "drift", "bound": 1e-4, "audit": True},
    "aux_grad_share": {"description": "||g_aux|| / (||g_PPO|| + ||g_aux||) on the actor", "gate": "drift",
                       "bound": 1e-4, "audit": True},
    "prior_kl_drift": {"description": "KL between the prior before and after a PET round, on fixed probe states",
                       "gate": None, "bound": 1e-4, "audit": True},
}


def timing_columns(columns) -> list[str]:
    """The columns that depend on the machine's load: TIMING_COLUMNS and any algorithm statistic named
    `time_*` (e.g. PPO-DAP's `time_proposals_s`). Determinism checks compare every other column."""
    return [c for c in columns if c in TIMING_COLUMNS or c.startswith("time_")]


def read_declared(run_dir: Path, columns=None) -> dict[str, dict[str, Any]]:
    """The run's declared metrics; for a folder without a declaration, the legacy ones among `columns`."""
    path = Path(run_dir) / DECLARED
    if path.exists():
        try:
            return json.loads(path.read_text())["columns"]
        except (ValueError, KeyError, TypeError):
            pass
    return {k: v for k, v in LEGACY.items() if columns is None or k in columns}
