"""dapbench's API for algorithm authors: everything a plug-in (and dapbench's own `algorithms/`) imports.

    from dapbench.api import PPO, PPOConfig, Batch, Metric, override_field

The names in `__all__` are the public, versioned surface (`API_VERSION`, semantic versioning; docs/api.md):
  - the interface (dapbench/algorithm.py): `Algorithm`, `AlgoConfig`, `late_field`, `override_field`, `Metric`,
    `Context`, `Spaces`; the environment an algorithm steps, `TrainEnv` (and its `Step`);
  - the PPO base (dapbench/api/ppo.py): `PPO` with its hooks, `PPOConfig`, `Batch`, `Agent`, `RolloutBuffer`,
    `gae`, `layer_init`, `mlp`, `numpy_forward`, `ON_POLICY`, `HALF_LOG_2PI`;
  - the on-policy audit (dapbench/api/audit.py): `on_policy_audit`, `ppo_loss_per_sample`, `grad_norm`;
  - the normalisers PPO uses: `ObsNormalizer`, `RewardNormalizer`, `RunningMeanStd`.
Anything else under `dapbench` (diffusion building blocks, data loaders, the trainer) may be used but is not
covered by the version: it may change in a minor release.

Layering: this package sits above the interface and `dapbench.training`'s environment and normalisers; nothing
in the harness imports it (import-linter contracts in pyproject.toml).
"""

from __future__ import annotations

from dapbench.algorithm import AlgoConfig, Algorithm, Context, Metric, Spaces, late_field, override_field
from dapbench.api.audit import grad_norm, on_policy_audit, ppo_loss_per_sample
from dapbench.api.ppo import (
    HALF_LOG_2PI,
    ON_POLICY,
    PPO,
    Agent,
    Batch,
    PPOConfig,
    RolloutBuffer,
    gae,
    layer_init,
    mlp,
    numpy_forward,
)
from dapbench.training.env import Step, TrainEnv
from dapbench.training.running_stats import ObsNormalizer, RewardNormalizer, RunningMeanStd

# MAJOR.MINOR of the names below: MAJOR changes when a name, a hook's signature or its call order changes
# incompatibly; MINOR when something is added (a hook, a field, a name). docs/api.md.
API_VERSION = "1.0"

__all__ = [
    "API_VERSION",
    "HALF_LOG_2PI",
    "ON_POLICY",
    "PPO",
    "Agent",
    "AlgoConfig",
    "Algorithm",
    "Batch",
    "Context",
    "Metric",
    "ObsNormalizer",
    "PPOConfig",
    "RewardNormalizer",
    "RolloutBuffer",
    "RunningMeanStd",
    "Spaces",
    "Step",
    "TrainEnv",
    "gae",
    "grad_norm",
    "late_field",
    "layer_init",
    "mlp",
    "numpy_forward",
    "on_policy_audit",
    "override_field",
    "ppo_loss_per_sample",
]
