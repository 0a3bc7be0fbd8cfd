"""The compute floor of the prior's training step and of one rollout's guided proposals, against the
measured time of the real code, in one invocation.

    python benchmarks/compute_floor.py [--obs-dim 11] [--act-dim 3] [--data 1000000] [--steps 500]

Floating-point work counts only the matrix products (2 flops per multiply-add), read from the real
networks' Linear layers and the real defaults (PriorConfig, PPODAPConfig):
- prior step, batch B: forward sum_l 2 B in_l out_l; backward 2 B in_l out_l for every weight gradient
  plus 2 B in_l out_l for every input gradient the loss needs (none into the noise-level embedding; into
  the body's first layer only for its embedding columns), so about 2x the forward;
- proposals, R = K x states rows: the state's share of the denoiser's first layer once per state (it does not
  change across the K proposals and N steps), then N denoising steps x (the first layer's action columns and
  the rest of the denoiser on R rows + guidance: the Q head's forward and its backward to the action,
  grad_a Q(s, D)), plus one Q forward of the final proposals (LoRA merged into the weights: no adapter work).
The floor is those flops at this machine's matmul rate, measured here with torch.addmm / torch.mm at
exactly those shapes, one thread: floor = sum_ops time(op at its shape) = flops / rate. The real code is
timed as CPU time (robust to other load on the cores): `train_prior` per step (the difference of two
runs, so its set-up cancels) and `Proposer.propose` on one rollout at the defaults (random weights: the
cost does not depend on them). Prints the flops, floor, measured time and measured / floor; writes
benchmarks/out/compute_floor.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from algorithms.ppo_dap import PPODAPConfig
from algorithms.proposer import Proposer, QHead
from dapbench.diffusion.prior import ActionPrior, PriorConfig, train_prior

Op = tuple[str, int, int, int]  # (kind, m, k, n): kind "addmm" (bias + A @ W^T) or "mm" (A @ B); A is m x k


def linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def prior_step_ops(prior: ActionPrior, batch: int) -> list[Op]:
    """The matrix products of one training step of the prior at `batch` (forward, then backward)."""
    net = prior.edm.net
    time_layers, body = linears(net.time), linears(net.body)
    emb = time_layers[-1].out_features
    ops: list[Op] = [("addmm", batch, m.in_features, m.out_features) for m in time_layers + body]  # forward
    for m in time_layers + body:
        ops.append(("mm", m.out_features, batch, m.in_features))  # weight gradient dY^T X
        if m is time_layers[0]:
            continue  # its input is the sinusoidal embedding of c_noise: no gradient
        ops.append(("mm", batch, m.out_features, emb if m is body[0] else m.in_features))  # dY W (its columns)
    return ops


def q_ops(q: QHead, rows: int, backward_to_action: bool, act_dim: int) -> list[Op]:
    layers = linears(q)
    ops: list[Op] = [("addmm", rows, m.in_features, m.out_features) for m in layers]
    if backward_to_action:  # grad_a Q: input gradients only, the first layer's for the action columns
        ops += [("mm", rows, m.out_features, act_dim if i == 0 else m.in_features) for i, m in enumerate(layers)]
    return ops


def proposal_ops(prior: ActionPrior, q: QHead, cfg: PPODAPConfig, states: int) -> list[Op]:
    """The matrix products of one rollout's proposals, `proposal_chunk` states (K rows each) at a time."""
    guided = cfg.guidance in ("both", "gradient") and cfg.alpha_max > 0
    act_dim = prior.edm.act_dim
    ops: list[Op] = []
    first, *rest = linears(prior.edm.net.body)
    obs_dim = first.in_features - act_dim - linears(prior.edm.net.time)[-1].out_features
    for i in range(0, states, cfg.proposal_chunk):
        n = min(cfg.proposal_chunk, states - i)
        rows = n * cfg.K
        ops.append(("mm", n, obs_dim, first.out_features))  # the state's columns, once per state
        for _ in range(cfg.sampler.steps):
            ops.append(("addmm", rows, act_dim, first.out_features))  # the action's columns
            ops += [("addmm", rows, m.in_features, m.out_features) for m in rest]
            if guided:
                ops += q_ops(q, rows, True, act_dim)
        ops += q_ops(q, rows, False, act_dim)  # the final proposals' Q values
    return ops


def flops(ops: list[Op]) -> int:
    return sum(2 * m * k * n for _, m, k, n in ops)


def replay_seconds(ops: list[Op], repeats: int, min_s: float = 0.02) -> float:
    """CPU seconds of the ops at their shapes: sum over distinct ops of count x time per call (best of
    `repeats` timings of at least `min_s` each)."""
    g = torch.Generator().manual_seed(0)
    total = 0.0
    for (kind, m, k, n), count in Counter(ops).items():
        a = torch.randn(m, k, generator=g)
        if kind == "addmm":
            bias, b = torch.randn(n, generator=g), torch.randn(n, k, generator=g).t()  # a Linear's weight, (out, in)

            def call(bias=bias, a=a, b=b) -> torch.Tensor:
                return torch.addmm(bias, a, b)
        else:
            b = torch.randn(k, n, generator=g)

            def call(a=a, b=b) -> torch.Tensor:
                return torch.mm(a, b)
        call()
        reps = max(1, int(min_s / max(1e-7, 2 * m * k * n / 100e9)))  # ~min_s at 100 GFLOP/s
        best = math.inf
        for _ in range(repeats):
            t0 = time.process_time()
            for _ in range(reps):
                call()
            best = min(best, (time.process_time() - t0) / reps)
        total += count * best
    return total


def prior_seconds_per_step(obs: torch.Tensor, act: torch.Tensor, cfg: PriorConfig, steps: int) -> float:
    """CPU seconds per step of `train_prior`: (time(s1 + steps) - time(s1)) / steps, so the set-up cancels."""
    s1 = max(50, steps // 5)
    times = []
    for n in (s1, s1 + steps):
        t0 = time.process_time()
        train_prior(obs, act, 1.0, cfg.model_copy(update={"train_steps": n}))
        times.append(time.process_time() - t0)
    return (times[1] - times[0]) / steps


def proposal_seconds(prior: ActionPrior, q: QHead, cfg: PPODAPConfig, obs: torch.Tensor, repeats: int) -> float:
    """CPU seconds of `Proposer.propose` (the real method) on one rollout of `obs` (best of `repeats`)."""
    proposer = Proposer.__new__(Proposer)  # the parts `propose` uses, without a dataset behind them
    proposer.cfg, proposer.device, proposer.prior, proposer.q, proposer.q_extra = cfg, torch.device("cpu"), prior, q, []
    proposer.gen, proposer.max_action, proposer._denoiser = torch.Generator().manual_seed(0), 1.0, None
    proposer.propose(obs[: cfg.proposal_chunk], obs[: cfg.proposal_chunk])  # warm-up
    best = math.inf
    for _ in range(repeats):
        t0 = time.process_time()
        proposer.propose(obs, obs)
        best = min(best, time.process_time() - t0)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--obs-dim", type=int, default=11, help="Hopper-v5: 11")
    p.add_argument("--act-dim", type=int, default=3, help="Hopper-v5: 3")
    p.add_argument("--data", type=int, default=1_000_000, help="logged transitions the prior samples from")
    p.add_argument("--steps", type=int, default=500, help="prior steps timed")
    p.add_argument("--repeats", type=int, default=3, help="timed passes of the proposals and of the replays")
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/compute_floor.json"))
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dap = PPODAPConfig()
    pcfg = dap.prior
    states = math.ceil(dap.proposal_frac * dap.num_steps)
    prior = ActionPrior(a.obs_dim, a.act_dim, 1.0, pcfg).eval()
    q = QHead(a.obs_dim, a.act_dim, dap.q_hidden)

    g = torch.Generator().manual_seed(0)
    data_obs = torch.randn(a.data, a.obs_dim, generator=g)
    data_act = torch.rand(a.data, a.act_dim, generator=g) * 2 - 1
    rollout = torch.randn(states, a.obs_dim, generator=g)

    rows = {}
    for name, ops, measure in (
        ("prior training step", prior_step_ops(prior, pcfg.batch_size),
         lambda: prior_seconds_per_step(data_obs, data_act, pcfg, a.steps)),
        (f"proposals per rollout ({states} states x K {dap.K} x {dap.sampler.steps} steps)",
         proposal_ops(prior, q, dap, states), lambda: proposal_seconds(prior, q, dap, rollout, a.repeats)),
    ):
        f = flops(ops)
        floor = replay_seconds(ops, a.repeats)
        measured = measure()
        rows[name] = {"mflop": f / 1e6, "gflop_per_s": f / floor / 1e9, "floor_ms": floor * 1e3,
                      "measured_ms": measured * 1e3, "ratio": measured / floor}

    print(f"one torch thread, obs {a.obs_dim}, act {a.act_dim}; prior {pcfg.denoiser.hidden} x "
          f"{pcfg.denoiser.depth}, batch {pcfg.batch_size}; CPU time")
    print(f"{'':62s} {'MFLOP':>9s} {'GFLOP/s':>8s} {'floor ms':>9s} {'measured ms':>12s} {'ratio':>6s}")
    for name, r in rows.items():
        print(f"{name:62s} {r['mflop']:9.1f} {r['gflop_per_s']:8.1f} {r['floor_ms']:9.2f} "
              f"{r['measured_ms']:12.2f} {r['ratio']:6.2f}")
    per = rows["prior training step"]
    print(f"prior: {pcfg.train_steps} steps = {per['floor_ms'] * pcfg.train_steps / 6e4:.1f} min at the floor, "
          f"{per['measured_ms'] * pcfg.train_steps / 6e4:.1f} min measured")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"obs_dim": a.obs_dim, "act_dim": a.act_dim, "rows": rows}, indent=2))
    print(f"written {a.out}")


if __name__ == "__main__":
    main()
