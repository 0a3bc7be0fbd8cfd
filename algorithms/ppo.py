"""`ppo`: dapbench's PPO, registered under that name (pyproject.toml's entry points).

The PPO base itself is part of the algorithm API, `dapbench.api` (dapbench/api/ppo.py, docs/api.md): the
built-in variants and third-party plug-ins subclass it from there. This module registers it as the `ppo`
algorithm and keeps the names earlier code imported from here.
"""

from __future__ import annotations

from dapbench.api import PPO, Agent, Batch, PPOConfig, RolloutBuffer, gae, layer_init

__all__ = ["PPO", "Agent", "Batch", "PPOConfig", "RolloutBuffer", "gae", "layer_init"]
