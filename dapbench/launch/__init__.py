"""Launchers: `debug` (in this process) and `local` (a bounded pool of processes)."""

from dapbench.launch.launchers import LAUNCHERS, launch

__all__ = ["LAUNCHERS", "launch"]
