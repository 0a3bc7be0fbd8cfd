"""Diffusion building blocks shared by algorithms: a conditional denoiser network, the EDM noise
schedule and preconditioning, a few-step sampler with optional in-denoising guidance, and the offline
prior (trained once per task, dataset and config, cached under a content hash).

The optimiser always lives outside the model, so parameter-efficient tuning can optimise adapter
parameters only."""

from dapbench.diffusion.edm import EDM, EDMConfig
from dapbench.diffusion.nets import DenoiserConfig, DenoiserNet
from dapbench.diffusion.sampler import SamplerConfig, sample

__all__ = ["EDM", "DenoiserConfig", "DenoiserNet", "EDMConfig", "SamplerConfig", "sample"]
