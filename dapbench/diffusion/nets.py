"""The conditional denoiser network F(x, s, c_noise) over actions given the state (DTQL's score network).

Sinusoidal embedding of the noise level (16) -> Linear 32 -> Mish -> Linear 16; body
[x, s, emb] -> hidden -> depth x (Linear hidden, Mish) -> act_dim. Layers are named so LoRA can target
them (`peft` `target_modules=["body.0", ...]`).
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn


class DenoiserConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden: int = Field(256, gt=0, description="width of the body (DTQL: 256)")
    depth: int = Field(3, gt=0, description="hidden Linear+Mish blocks after the input layer (DTQL: 3)")
    time_embedding: int = Field(16, gt=0, description="sinusoidal embedding size of the noise level (DTQL: 16)")


class SinusoidalEmbedding(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        half = dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(10000) * torch.arange(half) / max(half - 1, 1)))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        x = t[:, None] * self.freqs[None]
        return torch.cat([x.sin(), x.cos()], dim=-1)


class DenoiserNet(nn.Module):
    """F_psi(x, s, c_noise): the raw network inside EDM's preconditioning."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: DenoiserConfig) -> None:
        super().__init__()
        e = cfg.time_embedding
        self.time = nn.Sequential(SinusoidalEmbedding(e), nn.Linear(e, 2 * e), nn.Mish(), nn.Linear(2 * e, e))
        layers: list[nn.Module] = [nn.Linear(act_dim + obs_dim + e, cfg.hidden), nn.Mish()]
        for _ in range(cfg.depth):
            layers += [nn.Linear(cfg.hidden, cfg.hidden), nn.Mish()]
        layers.append(nn.Linear(cfg.hidden, act_dim))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, s: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([x, s, self.time(c_noise)], dim=-1))

    @property
    def lora_targets(self) -> list[str]:
        """Names of the body's Linear layers (what PET adapts; once wrapped by peft, its LoRA layers)."""
        return [f"body.{i}" for i, m in enumerate(self.body) if isinstance(m, nn.Linear) or hasattr(m, "base_layer")]
