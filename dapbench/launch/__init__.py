"""Launchers: `debug` (in this process), `local` (a bounded pool of processes) and `slurm` (job arrays, in
`dapbench.launch.slurm`)."""

from dapbench.launch.launchers import LAUNCHERS, launch

__all__ = ["LAUNCHERS", "launch"]
