"""EDM (Karras et al., 2022) noise schedule and preconditioning, as in DTQL.

D(x; sigma, s) = clamp(c_skip x + c_out F(c_in x, s, c_noise), -max_action, max_action)
  c_skip = sd^2 / (sigma^2 + sd^2), c_out = sigma sd / sqrt(sigma^2 + sd^2), c_in = 1 / sqrt(sigma^2 + sd^2),
  c_noise = ln(sigma) / 4.
Training: sigma from a truncated log-logistic (loc ln 0.5, scale 0.5) within [sigma_min, sigma_max];
loss = E[ w(sigma) || D(a + sigma eps; sigma, s) - a ||^2 ], w = 1 / c_out^2.
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn


class EDMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sigma_data: float = Field(0.5, gt=0, description="EDM sigma_data (DTQL: 0.5)")
    sigma_min: float = Field(0.002, gt=0, description="smallest noise level (DTQL: 0.002)")
    sigma_max: float = Field(80.0, gt=0, description="largest noise level (DTQL: 80)")
    loc: float = Field(math.log(0.5), description="training sigma: log-logistic location (DTQL: ln 0.5)")
    scale: float = Field(0.5, gt=0, description="training sigma: log-logistic scale (DTQL: 0.5)")


class EDM(nn.Module):
    """Wraps a raw network F into the preconditioned denoiser D."""

    def __init__(self, net: nn.Module, cfg: EDMConfig, act_dim: int, max_action: float) -> None:
        super().__init__()
        self.net, self.cfg, self.act_dim, self.max_action = net, cfg, act_dim, max_action

    def coefficients(self, sigma: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(c_skip, c_out, c_in, c_noise) at sigma (any shape)."""
        sd = self.cfg.sigma_data
        c_in = (sigma * sigma + sd * sd).rsqrt()
        return sd * sd * c_in * c_in, sigma * sd * c_in, c_in, sigma.log() / 4

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """D(x; sigma, s), sigma of shape (n,), or (1,) for one noise level shared by every row (the time
        embedding is then computed once)."""
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        out = c_skip[:, None] * x + c_out[:, None] * self.net(c_in[:, None] * x, s, c_noise)
        return out.clamp(-self.max_action, self.max_action)

    def sample_sigma(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """sigma = exp(loc + scale * logit(u)), u uniform, truncated to [sigma_min, sigma_max]."""
        c = self.cfg
        lo = 1 / (1 + math.exp(-(math.log(c.sigma_min) - c.loc) / c.scale))  # sigmoid, as Python floats
        hi = 1 / (1 + math.exp(-(math.log(c.sigma_max) - c.loc) / c.scale))
        u = torch.rand(n, generator=generator, device=device).mul_(hi - lo).add_(lo)
        return u.logit_().mul_(c.scale).add_(c.loc).exp_()

    def loss(self, a: torch.Tensor, s: torch.Tensor, generator: torch.Generator | None = None,
             reduce: bool = True) -> torch.Tensor:
        """The denoising loss w(sigma) ||D(a + sigma eps; sigma, s) - a||^2 (mean, or per sample)."""
        sigma = self.sample_sigma(a.shape[0], generator, a.device)
        eps = torch.randn(a.shape, generator=generator, device=a.device)
        _, c_out, _, _ = self.coefficients(sigma)
        err = self(torch.addcmul(a, sigma[:, None], eps), sigma, s) - a
        per = (err * err).sum(-1) / (c_out * c_out)
        return per.mean() if reduce else per
