"""dapbench: a benchmarking and reproducibility harness for on-policy RL with diffusion action priors."""

__version__ = "0.1.0"
