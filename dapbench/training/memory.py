"""Peak memory: the process's peak resident set size, and the CUDA allocator's peak on a GPU."""

from __future__ import annotations

import resource
import sys

import torch


def peak_rss_mb() -> float:
    """Peak RSS of this process since it started, in MiB.

    Linux: `VmHWM` of /proc/self/status, the high-water mark of this address space. Not `ru_maxrss`: it
    survives exec, so a run the local launcher spawns (fork + exec) would report at least its parent's RSS
    at the fork. Elsewhere `ru_maxrss` (KiB on Linux, bytes on macOS).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def cuda_peak_mb(device: str) -> float | None:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(torch.device(device)) / 2**20
    return None
