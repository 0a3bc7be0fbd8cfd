"""Peak memory of a run is its own, not its launcher's."""

from __future__ import annotations

import multiprocessing as mp
import resource

import numpy as np

from dapbench.training.memory import peak_rss_mb


def _child_peak() -> float:
    from dapbench.training.memory import peak_rss_mb

    return peak_rss_mb()


def test_a_spawned_run_does_not_inherit_its_parents_peak_rss() -> None:
    ballast = np.ones(1024 * 2**20 // 8)  # 1 GiB resident in this (the launching) process
    parent_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with mp.get_context("spawn").Pool(1) as pool:  # as the local launcher starts runs
        child = pool.apply(_child_peak)
    assert ballast[-1] == 1.0 and parent_peak > 1024
    # ru_maxrss survives fork + exec: the child would report > 1 GiB; its own peak (python, numpy, torch) is far less
    assert 10 < child < parent_peak - 512, (child, parent_peak)
    assert peak_rss_mb() >= 1024
