"""Few-step EDM sampling with optional in-denoising gradient guidance.

Noise levels: sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, then 0.
Euler step (deterministic, DDIM-like): x_{i+1} = x_i + (sigma_{i+1} - sigma_i) (x_i - D(x_i; sigma_i, s)) / sigma_i.
Guidance (when `grad_q` is given): the denoised estimate is nudged along the critic's action gradient,
  D <- clamp(D + alpha_i g / ||g||, bounds), g = grad_a Q(s, D),
with one of two step schedules (`guidance_alphas`):
  - "noise":  alpha_i = alpha_max sigma_i^2 / (sigma_i^2 + sigma_data^2) = alpha_max (1 - c_skip(sigma_i)), the push
              shrinking as the noise falls (as classifier guidance scales its gradient by the posterior variance in
              Diffuser's guided sampler); the later, less noisy denoising steps pull a pushed estimate back onto the
              prior's support, and the final, noise-free estimate is not pushed (alpha_{N-1} ~ 0 at sigma_min);
  - "rising": alpha_i = alpha_max (i + 1) / N, the largest push on the final estimate, which is the sample itself
              (dapbench 0.1's reading of the paper; it can push proposals off the support and onto the bounds).

`FrozenDenoiser` is the same denoiser D for sampling only: LoRA adapters merged into plain weights, the state's
share of the first layer computed once per state (not once per proposal and denoising step), one noise level per
step as Python floats. Same function, different float rounding from `EDM.forward`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from dapbench.diffusion.edm import EDM

Schedule = Literal["noise", "rising"]
Denoise = Callable[[torch.Tensor, float], torch.Tensor]  # D(x; sigma) for the rows' bound states


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


def guidance_alphas(sig: list[float], alpha_max: float, schedule: Schedule, sigma_data: float) -> list[float]:
    """The guidance step alpha_i of each of the N denoising steps (see the module docstring)."""
    n = len(sig) - 1
    if schedule == "rising":
        return [alpha_max * (i + 1) / n for i in range(n)]
    return [alpha_max * s * s / (s * s + sigma_data * sigma_data) for s in sig[:-1]]


def _merged_linear(m: nn.Module, adapters: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, b) of a Linear, or of a peft LoRA Linear with its active adapters merged: W + scaling B A."""
    base = getattr(m, "base_layer", m)
    w = base.weight.detach().clone()
    if adapters and hasattr(m, "lora_A"):
        for name in m.active_adapters:
            if name in m.lora_A:
                w += m.get_delta_weight(name).detach()
    return w, base.bias.detach().clone()


class FrozenDenoiser:
    """D(x; sigma, s) of `edm` for sampling (no gradients), from a snapshot of its weights: rebuild it after the
    weights change (e.g. a PET round). `adapters=False` leaves LoRA adapters out: the original offline prior."""

    def __init__(self, edm: EDM, adapters: bool = True) -> None:
        net = edm.net
        self.edm, self.act_dim, self.bound = edm, edm.act_dim, edm.max_action
        self.sd = edm.cfg.sigma_data
        self.time = net.time
        linears = [_merged_linear(m, adapters) for m in net.body if isinstance(m, nn.Linear) or hasattr(m, "lora_A")]
        (w0, self.b0), self.layers = linears[0], linears[1:]
        a, e = self.act_dim, net.time[-1].out_features
        self.w_x, self.w_s, self.w_e = w0[:, :a].T.contiguous(), w0[:, a:-e].T.contiguous(), w0[:, -e:].T.contiguous()
        self.layers = [(w.T.contiguous(), b) for w, b in self.layers]
        self._emb: dict[float, torch.Tensor] = {}

    def _step_bias(self, c_noise: float) -> torch.Tensor:
        """b_0 + W_e emb(c_noise): the first layer's share of the noise level, one row."""
        if c_noise not in self._emb:
            with torch.no_grad():
                emb = self.time(torch.tensor([c_noise], device=self.b0.device))
                self._emb[c_noise] = torch.addmm(self.b0[None], emb, self.w_e)
        return self._emb[c_noise]

    def bind(self, s: torch.Tensor, repeat: int = 1, block: int = 1024) -> Denoise:
        """D(.; sigma) for `repeat` consecutive rows per row of `s` (the state's standardised conditioning).

        Rows go through the network `block` at a time with preallocated buffers: the activations stay in cache
        and no large tensor is allocated per layer (on CPU, the elementwise work otherwise costs more than the
        matmuls)."""
        with torch.no_grad():
            proj = (s @ self.w_s).repeat_interleave(repeat, 0)
        hidden = proj.shape[1]
        buf = [torch.empty(min(block, len(proj)), hidden, device=proj.device) for _ in range(4)]

        def mlp(x: torch.Tensor, p: torch.Tensor, bias0: torch.Tensor, c_in: float) -> torch.Tensor:
            m = x.shape[0]
            h, g, e, n = (b[:m] for b in buf)
            torch.addmm(bias0, x, self.w_x, alpha=c_in, out=h).add_(p)
            for w, b in self.layers[:-1]:
                _mish_(h, e, n)
                torch.addmm(b, h, w, out=g)
                h, g = g, h
            _mish_(h, e, n)
            w, b = self.layers[-1]
            return torch.addmm(b, h, w)

        def denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:
            with torch.no_grad():
                c_in = (sigma * sigma + self.sd * self.sd) ** -0.5
                c_skip, c_out = self.sd * self.sd * c_in * c_in, sigma * self.sd * c_in
                bias0 = self._step_bias(_c_noise(sigma, x.device))
                f = torch.cat([mlp(x[i:i + block], proj[i:i + block], bias0, c_in) for i in range(0, len(x), block)])
                return f.mul_(c_out).add_(x, alpha=c_skip).clamp_(-self.bound, self.bound)

        return denoise


def _c_noise(sigma: float, device: torch.device) -> float:
    """ln(sigma) / 4 in float32, as EDM computes it."""
    return float(torch.tensor(sigma, device=device).log() / 4)


def _mish_(x: torch.Tensor, e: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """mish(x) = x n / (n + 2), n = e^x (e^x + 2), in place, with `e` and `n` as scratch (inference only)."""
    torch.clamp(x, max=20.0, out=e).exp_()
    torch.add(e, 2.0, out=n).mul_(e)
    torch.add(n, 2.0, out=e)
    return x.mul_(n.div_(e))


def _edm_denoise(model: EDM, s: torch.Tensor) -> Denoise:
    def denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:
        with torch.no_grad():
            return model(x, torch.full((1,), sigma, device=x.device), s)

    return denoise


def sample(model: EDM | FrozenDenoiser, s: torch.Tensor, cfg: SamplerConfig, generator: torch.Generator | None = None,
           grad_q: Callable[[torch.Tensor], torch.Tensor] | None = None, alpha_max: float = 0.0,
           schedule: Schedule = "noise", x0: torch.Tensor | None = None, repeat: int = 1) -> torch.Tensor:
    """`repeat` actions for each row of `s` (the standardised conditioning), rows in state order.

    `x0`: the initial noise (rows x act_dim, already scaled by nothing: N(0, I)); drawn from `generator` when None.
    Two calls with the same x0 differ only by guidance (the sampler is deterministic given x0)."""
    n = s.shape[0] * repeat
    sig = sigmas(cfg, model.edm.cfg.sigma_min if isinstance(model, FrozenDenoiser) else model.cfg.sigma_min, s.device)
    sig_f = sig.tolist()
    if isinstance(model, FrozenDenoiser):
        denoise, sd, act_dim, bound = model.bind(s, repeat), model.sd, model.act_dim, model.bound
    else:
        rows = s.repeat_interleave(repeat, 0) if repeat > 1 else s
        denoise, sd, act_dim, bound = _edm_denoise(model, rows), model.cfg.sigma_data, model.act_dim, model.max_action
    if x0 is None:
        x0 = torch.randn((n, act_dim), generator=generator, device=s.device)
    x = x0 * sig_f[0]
    alphas = guidance_alphas(sig_f, alpha_max, schedule, sd) if grad_q is not None and alpha_max > 0 else None
    for i in range(cfg.steps):
        d = denoise(x, sig_f[i])
        if alphas is not None and alphas[i] > 0:
            g = grad_q(d)
            d = (d + alphas[i] * g / (g.norm(dim=-1, keepdim=True) + 1e-8)).clamp(-bound, bound)
        x = d if sig_f[i + 1] == 0 else x + (sig_f[i + 1] - sig_f[i]) / sig_f[i] * (x - d)
    return x.detach()
