"""Provenance of a run attempt: code version, software stack, machine, scheduler job."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

PACKAGES = ["dapbench", "torch", "numpy", "gymnasium", "mujoco", "pydantic", "pandas", "pyarrow", "peft"]
REPO = Path(__file__).resolve().parents[2]
SNAPSHOT_FILE = "snapshot.json"  # written by the slurm launcher next to the packages it snapshots


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_version() -> dict[str, Any]:
    """The git commit of the code and whether the work tree had uncommitted changes; for code running from
    a snapshot taken at submission (the slurm launcher), the commit it was taken from and its hash."""
    snapshot = REPO / SNAPSHOT_FILE
    if snapshot.is_file():
        info = json.loads(snapshot.read_text())
        return {**info["code"], "snapshot": info["hash"]}
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for p in PACKAGES:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = None
    return out


def collect(device: str) -> dict[str, Any]:
    import torch

    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else None
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "code": code_version(),
        "python": platform.python_version(),
        "packages": _versions(),
        "torch_cuda": torch.version.cuda,
        "device": device,
        "cpu": cpu_model(),
        "gpu": gpu,
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"),
    }
