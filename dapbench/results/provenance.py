"""Provenance of a run attempt: code version, software stack, machine, scheduler job, and the distribution
that provides the run's algorithm (`algorithm_provenance`: a plug-in's code is part of the run's code)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
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


# ----- the algorithm's code ---------------------------------------------------------------------------------
def _git_at(where: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def source_root(module: str, path: str | None) -> Path | None:
    """The source of a plug-in: the folder of the top-level package holding `module`, else the module's file."""
    top = sys.modules.get(module.split(".")[0])
    pkg_path = list(getattr(top, "__path__", []) or [])
    if pkg_path:
        return Path(pkg_path[0]).resolve()
    return Path(path).resolve() if path else None


def source_hash(root: Path) -> str:
    """sha256 over the `.py` files of a package folder (relative paths and contents, sorted), or of one file."""
    h = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    for f in files:
        h.update(str(f.relative_to(root.parent if root.is_file() else root)).encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()


def algorithm_provenance(name: str) -> dict[str, Any]:
    """Where algorithm `name`'s code comes from: the distribution that registers it (name, version, entry
    point), its source (path and sha256 of its `.py` files) and, when the source is in a git checkout, the
    commit and whether the source has uncommitted changes (files under it modified or untracked)."""
    from dapbench.registry import provider

    p = provider(name)
    root = source_root(p.module, p.path)
    rec: dict[str, Any] = {"name": name, "distribution": p.dist, "version": p.version, "entry_point": p.value,
                           "source": None, "source_sha256": None, "commit": None, "dirty": None}
    if root is None or not root.exists():
        return rec
    rec.update(source=str(root), source_sha256=source_hash(root))
    where = root if root.is_dir() else root.parent
    commit = _git_at(where, "rev-parse", "HEAD")
    if commit:
        status = _git_at(where, "status", "--porcelain", "--", str(root))
        rec.update(commit=commit, dirty=None if status is None else bool(status))
    return rec


def describe_algorithm(rec: dict[str, Any] | None) -> str:
    """One line for a record of `algorithm_provenance`: `dist version @commit (dirty) sha256:...`."""
    if not rec:
        return "unknown"
    out = f"{rec.get('distribution')} {rec.get('version')}"
    if rec.get("commit"):
        out += f" @{rec['commit'][:10]}" + (" (uncommitted changes)" if rec.get("dirty") else "")
    if rec.get("source_sha256"):
        out += f" sha256:{rec['source_sha256'][:12]}"
    return out


def algorithm_changes(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[str]:
    """How the algorithm's code differs between two records of `algorithm_provenance` (e.g. a stored run's and
    this machine's), one line naming the distribution; [] when they agree or either is unknown (runs made
    before dapbench recorded it)."""
    if not old or not new:
        return []
    dist = new.get("distribution")
    what = "dapbench's algorithms" if dist == "dapbench" else f"plugin {dist}"
    if old.get("distribution") != dist:
        return [f"algorithm code changed: {new.get('name')} came from {old.get('distribution')} "
                f"{old.get('version')}, now from {dist} {new.get('version')}"]
    parts = []
    if old.get("version") != new.get("version"):
        parts.append(f"{old.get('version')} -> {new.get('version')}")
    if old.get("commit") and new.get("commit") and old["commit"] != new["commit"]:
        parts.append(f"commit {old['commit'][:10]} -> {new['commit'][:10]}")
    if old.get("dirty") is not None and new.get("dirty") is not None and old["dirty"] != new["dirty"]:
        parts.append("clean -> uncommitted changes" if new["dirty"] else "uncommitted changes -> clean")
    if old.get("source_sha256") and new.get("source_sha256") and old["source_sha256"] != new["source_sha256"]:
        parts.append(f"source {new.get('source')} edited (sha256 {old['source_sha256'][:12]} -> "
                     f"{new['source_sha256'][:12]})")
    return [f"algorithm code changed: {what} {'; '.join(parts)}"] if parts else []


def recorded_algorithm(attempts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The algorithm record of a run's latest attempt that has one (provenance.json), or None."""
    for a in reversed(attempts):
        rec = a.get("algorithm") if isinstance(a, dict) else None
        if isinstance(rec, dict):
            return rec
    return None


def algorithm_code_id(rec: dict[str, Any] | None) -> str:
    """The identity of the algorithm's code in a record: distribution, version and the source's content hash
    (a commit or dirty flag changing with the same source is the same code); '' when not recorded."""
    if not rec:
        return ""
    sha = rec.get("source_sha256")
    return f"{rec.get('distribution')} {rec.get('version')}" + (f" sha256:{sha[:12]}" if sha else "")
