"""What PPO-DAP's proposal generation costs per rollout, for a few configurations.

    python benchmarks/proposal_cost.py [--states 2048]

Times `dapbench.diffusion.sampler.sample` for K proposals on each of `states` Hopper-sized states
(a denoiser and a Q head at random weights: cost does not depend on the weights), one torch thread, in
one process, and prints each configuration relative to PPO-DAP's default.
"""

from __future__ import annotations

import argparse
import time

import torch

from algorithms.proposer import QHead
from dapbench.diffusion.nets import DenoiserConfig
from dapbench.diffusion.prior import ActionPrior, PriorConfig
from dapbench.diffusion.sampler import SamplerConfig, sample

CONFIGS = [
    ("no gradient guidance", {"guided": False}),
    ("torch.inference_mode, no guidance", {"guided": False, "inference": True}),
    ("3 steps", {"steps": 3}),
    ("K 4", {"K": 4}),
    ("denoiser 128 wide", {"hidden": 128}),
    ("denoiser 128 x 2", {"hidden": 128, "depth": 2}),
    ("K 4, 3 steps, 128 wide", {"K": 4, "steps": 3, "hidden": 128}),
]


def cost(obs: torch.Tensor, q: QHead, K=10, steps=5, hidden=256, depth=3, guided=True, inference=False) -> float:
    prior = ActionPrior(obs.shape[1], 3, 1.0, PriorConfig(denoiser=DenoiserConfig(hidden=hidden, depth=depth)))
    prior.eval()
    rep = obs.repeat_interleave(K, 0)

    def grad_q(a):
        with torch.enable_grad():
            a = a.detach().requires_grad_(True)
            return torch.autograd.grad(q(rep, a).sum(), a)[0]

    ctx = torch.inference_mode() if inference and not guided else torch.no_grad()
    t0 = time.perf_counter()
    with ctx:
        sample(prior.edm, prior.cond(rep), SamplerConfig(steps=steps), torch.Generator().manual_seed(0),
               grad_q=grad_q if guided else None, alpha_max=0.3)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--states", type=int, default=2048)
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    obs, q = torch.randn(a.states, 11), QHead(11, 3, (64, 64))
    base = cost(obs, q)
    print(f"default (K 10, 5 steps, 256 x 3, guided): {base:.2f} s per {a.states}-state rollout")
    for name, kw in CONFIGS:
        c = cost(obs, q, **kw)
        print(f"{name:36s} {c:.2f} s  ({c / base:.2f} of default)")


if __name__ == "__main__":
    main()
