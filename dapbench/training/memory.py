"""Peak memory: the process's peak resident set size, and the CUDA allocator's peak on a GPU."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch


def peak_rss_mb() -> float:
    """Peak RSS of this process's address space, in MiB: VmHWM from /proc/self/status on Linux.

    Not getrusage's ru_maxrss: that survives execve, so a worker spawned (fork + exec) from a large parent
    (e.g. a test session, or a launcher that loaded a dataset) would report the parent's size, not its own.
    Elsewhere (macOS) ru_maxrss, in bytes there."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def cuda_peak_mb(device: str) -> float | None:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(torch.device(device)) / 2**20
    return None
