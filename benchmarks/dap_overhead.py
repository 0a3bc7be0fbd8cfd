"""PPO-DAP's wall-clock and peak-memory overhead against PPO, side by side in one invocation.

    python benchmarks/dap_overhead.py [--tasks hopper halfcheetah] [--steps 50000] [--seed 0]
                                      [--dataset hopper=dapbench/hopper/medium-v0 ...] [--config K=4 ...]

For each task, PPO and then PPO-DAP (default config unless --config) train for `steps` with the same
seed and evaluation protocol (5 episodes every epoch), each in a fresh process (spawn), one after the
other, so each run's peak RSS is its own and the two never share the cores. The prior is trained (or
loaded from its cache) before the timed runs: it is PPO-DAP's offline stage, reported separately.
Prints training CPU time (env + update, the primary ratio: load on the machine does not inflate it), training
wall-clock, total time (with evaluation), peak RSS, their ratios, and
PPO-DAP's breakdown: proposals (guided sampling), Q fitting, PET, the rest of the update.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing as mp
import resource
import sys
import tempfile
from pathlib import Path

import yaml


def _run(spec_json: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from dapbench.results.store import RunStore
    from dapbench.suite import RunSpec
    from dapbench.training.trainer import execute

    spec = RunSpec.model_validate_json(spec_json)
    with tempfile.TemporaryDirectory() as d:
        store = RunStore(Path(d) / "run")
        store.init(spec)
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        out = execute(store.dir, progress=False, echo=False)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        if out.state != "done":
            raise RuntimeError(out.error)
        df = store.read_metrics()
    n = df["n_updates"].fillna(0)
    res = {
        "train_s": float((df["time_env_s"] + df["time_update_s"]).sum()),
        "env_s": float(df["time_env_s"].sum()),
        "total_s": float(df["wall_clock_s"].iloc[-1]),
        "cpu_s": (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime),  # robust to other load on the machine
        "cpu_train_s": float(df["cpu_train_s"].sum()),  # CPU time of env + update, evaluation left out
        "peak_rss_mb": float(df["peak_rss_mb"].max()),
        "eval_final": float(df["eval_return_mean"].iloc[-1]),
    }
    for col in ("time_proposals_s", "time_q_fit_s"):
        if col in df:
            res[col] = float((df[col] * n).sum())
    if "time_pet_s" in df:
        res["time_pet_s"] = float(df["time_pet_s"].fillna(0).sum())
    return res


def _spec(task: str, algorithm: str, steps: int, seed: int, dataset: str | None, overrides: dict):
    from dapbench.registry import get_algorithm
    from dapbench.suite import EvalConfig, RunSpec

    cfg = get_algorithm(algorithm).Config.model_validate(overrides if algorithm == "ppo-dap" else {})
    return RunSpec(task=task, algorithm=algorithm, label=algorithm, seed=seed, total_steps=steps,
                   steps_per_epoch=5000, evaluation=EvalConfig(episodes=5, every=1),
                   config=cfg.model_dump(mode="json"), dataset=dataset if algorithm == "ppo-dap" else None)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["hopper", "halfcheetah"])
    p.add_argument("--steps", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", action="append", default=[], metavar="TASK=ID",
                   help="dataset per task (default: the task's, dapbench/<task>/medium-v0)")
    p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE", help="PPO-DAP config values (YAML)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/dap_overhead.json"))
    a = p.parse_args()
    datasets = dict(x.split("=", 1) for x in a.dataset)
    overrides = {k: yaml.safe_load(v) for k, v in (x.split("=", 1) for x in a.config)}

    from dapbench.diffusion.prior import load_or_train
    from dapbench.registry import get_algorithm
    from dapbench.tasks import get_task

    results = {}
    for task in a.tasks:
        ds = datasets.get(task, get_task(task).default_dataset)
        cfg = get_algorithm("ppo-dap").Config.model_validate(overrides)
        _, info = load_or_train(task, ds, 1.0, cfg.prior, log=print)
        print(f"{task}: prior for {ds}: trained once in {info['train_seconds']:.0f} s ({info['path']})", flush=True)
        row = {"dataset": ds, "prior_train_s": info["train_seconds"]}
        for algo in ("ppo", "ppo-dap"):
            spec = _spec(task, algo, a.steps, a.seed, ds, overrides)
            with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), max_tasks_per_child=1) as pool:
                row[algo] = pool.submit(_run, spec.model_dump_json()).result()
            print(f"  {algo:8s} {json.dumps({k: round(v, 1) for k, v in row[algo].items()})}", flush=True)
        d, b = row["ppo-dap"], row["ppo"]
        row["ratios"] = {"train": d["train_s"] / b["train_s"], "total": d["total_s"] / b["total_s"],
                         "cpu": d["cpu_s"] / b["cpu_s"], "cpu_train": d["cpu_train_s"] / b["cpu_train_s"],
                         "peak_rss": d["peak_rss_mb"] / b["peak_rss_mb"]}
        rest = d["train_s"] - d["env_s"] - d.get("time_proposals_s", 0) - d.get("time_q_fit_s", 0) - d.get(
            "time_pet_s", 0)
        r = row["ratios"]
        print(f"  {task}: PPO-DAP / PPO  training CPU time {r['cpu_train']:.2f}x, training time {r['train']:.2f}x, "
              f"total {r['total']:.2f}x, peak RSS {r['peak_rss']:.2f}x, CPU time {r['cpu']:.2f}x  |  PPO-DAP training "
              f"{d['train_s']:.0f} s = env "
              f"{d['env_s']:.0f} + proposals "
              f"{d.get('time_proposals_s', 0):.0f} + Q fit {d.get('time_q_fit_s', 0):.0f} + PET "
              f"{d.get('time_pet_s', 0):.0f} + PPO update and inference {rest:.0f}; PPO training "
              f"{b['train_s']:.0f} s (env {b['env_s']:.0f})", flush=True)
        results[task] = row
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"steps": a.steps, "seed": a.seed, "config": overrides, "results": results}, indent=2))
    print(f"written {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
