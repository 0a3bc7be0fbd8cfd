"""Few-step EDM sampling with optional in-denoising gradient guidance.

Noise levels: sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, then 0.
Euler step (deterministic, DDIM-like): x_{i+1} = x_i + (sigma_{i+1} - sigma_i) (x_i - D(x_i; sigma_i, s)) / sigma_i.
Guidance (when `grad_q` is given): the denoised estimate is nudged along the critic's action gradient,
  D <- clamp(D + alpha_i g / ||g||, bounds), g = grad_a Q(s, D), alpha_i = alpha_max (i + 1) / N,
so the step size grows to alpha_max as the noise shrinks; the final sample is the last guided D.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pydantic import BaseModel, ConfigDict, Field

from dapbench.diffusion.edm import EDM


class SamplerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(5, gt=0, description="denoising steps N (few-step EDM Euler)")
    rho: float = Field(7.0, gt=0, description="Karras schedule exponent")
    sigma_max: float = Field(2.0, gt=0, description="starting noise level (actions live in [-1, 1]: 4 sigma_data)")


def sigmas(cfg: SamplerConfig, sigma_min: float, device=None) -> torch.Tensor:
    n = cfg.steps
    i = torch.arange(n, dtype=torch.float32, device=device)
    r = 1 / cfg.rho
    lv = (cfg.sigma_max**r + i / max(n - 1, 1) * (sigma_min**r - cfg.sigma_max**r)) ** cfg.rho
    return torch.cat([lv, torch.zeros(1, device=device)])


def sample(model: EDM, s: torch.Tensor, cfg: SamplerConfig, generator: torch.Generator | None = None,
           grad_q: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
           alpha_max: float = 0.0) -> torch.Tensor:
    """One action per row of `s` (repeat rows of `s` for K proposals per state)."""
    n, act_dim = s.shape[0], model.act_dim
    sig = sigmas(cfg, model.cfg.sigma_min, s.device)
    x = torch.randn((n, act_dim), generator=generator, device=s.device) * sig[0]
    bound = model.max_action
    for i in range(cfg.steps):
        with torch.no_grad():
            d = model(x, sig[i].expand(n), s)
        if grad_q is not None and alpha_max > 0:
            g = grad_q(s, d)
            alpha = alpha_max * (i + 1) / cfg.steps
            d = (d + alpha * g / (g.norm(dim=-1, keepdim=True) + 1e-8)).clamp(-bound, bound)
        x = d if sig[i + 1] == 0 else x + (sig[i + 1] - sig[i]) * (x - d) / sig[i]
    return x.detach()
