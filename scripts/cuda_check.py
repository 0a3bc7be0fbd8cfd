#!/usr/bin/env python
"""Every registered algorithm for one epoch on a GPU: does it run on `cuda`, and what does it hold there?

    .venv/bin/python scripts/cuda_check.py [--steps 5000] [--out DIR]

Makes a small random-policy Hopper dataset (5,000 steps) for the algorithms that need logged data, writes a suite
of one epoch per algorithm with `device: cuda` (documented defaults, a 20k-step prior so it trains in seconds),
runs it with the debug launcher and prints, per algorithm, whether it finished, its steps/s and `cuda_peak_mb`.
Exit 1 if any algorithm failed, 2 if torch sees no GPU. Run it whenever a GPU machine is available: CI has none,
and tests/test_devices.py is the CPU-side check for tensors created off the run's device.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch
import yaml

from dapbench.cli import main as dapbench
from dapbench.registry import algorithms


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5000, help="environment steps (one epoch)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default: a temporary one)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("torch sees no CUDA device: nothing to check here", file=sys.stderr)
        return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="dapbench-cuda-"))
    names = sorted(algorithms())
    suite = {
        "name": "cuda-check", "description": "every algorithm, one epoch on cuda", "tasks": ["hopper"],
        "algorithms": [{"name": n, **({"config": {"prior": {"train_steps": 20_000}}}
                                      if "prior" in algorithms()[n].Config.model_fields else {})} for n in names],
        "seeds": 1, "budget": {"total_steps": args.steps, "steps_per_epoch": args.steps},
        "evaluation": {"episodes": 2, "every": 1}, "device": "cuda", "dataset": "dapbench/hopper/random-s7-v0",
        "datasets": [{"task": "hopper", "quality": "random", "seed": 7, "steps": 5000}],
        "launcher": {"name": "debug"},
    }
    path = out / "cuda-check.yaml"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    rc = dapbench(["run", str(path), "--results", str(out / "results")])
    print(f"\n{'algorithm':<14} {'state':<8} {'steps/s':>8} {'cuda_peak_mb':>13}  ({torch.cuda.get_device_name(0)})")
    failed = 0
    for n in names:
        run = out / "results" / "hopper" / n / "seed_0"
        table = run / "metrics.parquet"
        if not table.exists():
            failed += 1
            print(f"{n:<14} {'failed':<8} {'-':>8} {'-':>13}  see {run / 'run.log'}")
            continue
        row = pd.read_parquet(table).iloc[-1]
        print(f"{n:<14} {'done':<8} {row['steps_per_s']:>8.0f} {row['cuda_peak_mb']:>13.1f}")
    return 1 if failed or rc else 0


if __name__ == "__main__":
    sys.exit(main())
