"""dapbench's built-in algorithms, one module per family; importing this package registers them."""

__dapbench__ = True  # lets the registry tell this package from a foreign one named `algorithms`

from algorithms import dtql, ppo, ppo_dap, ppo_diffusion, ppo_variants  # noqa: F401
