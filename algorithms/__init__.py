"""dapbench's built-in algorithms, one module per family; importing this package registers them."""

__dapbench__ = True  # lets the registry tell this package from a foreign one named `algorithms`

# Import order matters for memory: with `dtql` imported first, a plain PPO run's peak RSS rose from ~435 to
# ~596 MB (measured by tests/test_regression.py's gate; cause not traced). Keep ppo first, dtql last.
from algorithms import ppo, ppo_dap, ppo_diffusion, ppo_variants  # noqa: F401, I001
from algorithms import dtql  # noqa: F401
