"""dapbench's PPO side by side with Stable-Baselines3's PPO: same hyper-parameters, same normalisation.

    python benchmarks/ppo_vs_sb3.py speed    [--tasks hopper halfcheetah] [--steps 20480]
    python benchmarks/ppo_vs_sb3.py learning [--tasks hopper halfcheetah] [--seeds 0 1 2] [--steps 200000]
                                             [--jobs 2] [--out benchmarks/out/learning.csv]

`speed`: both train for the same steps (a multiple of the rollout, so the same gradient steps) with no
evaluation, cpu, one torch thread, one after the other in this process; prints steps/s, the ratio, and
each as a fraction of the raw environment's rate measured in the same run.
`learning`: each (implementation, task, seed) trains `steps` with a deterministic evaluation of
`eval_episodes` episodes on fixed seeds every 5,000 steps; prints ALC@40 (mean of the evaluations over
the first 40 epochs) and the final evaluation return, seed by seed. Needs `pip install stable-baselines3`.

The shared hyper-parameters are CleanRL's (dapbench's PPO defaults): rollout 2048, 32 minibatches of 64,
10 epochs, lr 3e-4 annealed linearly, gamma 0.99, lambda 0.95, clip 0.2, clipped value loss (SB3:
clip_range_vf=0.2), entropy 0, vf 0.5, grad-norm 0.5, tanh 64x64 with orthogonal init, log-std 0,
observation and reward normalisation clipped at 10 (SB3: VecNormalize).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

EPOCH = 5000


# ----- dapbench ---------------------------------------------------------------------------------------------
def dapbench_run(task: str, seed: int, steps: int, eval_every: int, eval_episodes: int) -> dict:
    """Returns steps/s of training (evaluation excluded) and the evaluation curve."""
    from dapbench.results.store import RunStore
    from dapbench.suite import EvalConfig, RunSpec
    from dapbench.training.trainer import execute

    spe = EPOCH if eval_every else steps  # speed mode: one epoch, so every rollout is updated, as in SB3
    spec = RunSpec(task=task, algorithm="ppo", label="ppo", seed=seed, total_steps=steps, steps_per_epoch=spe,
                   evaluation=EvalConfig(episodes=eval_episodes, every=eval_every),
                   config={}, device="cpu", torch_threads=1)
    from dapbench.api import PPOConfig

    spec = spec.model_copy(update={"config": PPOConfig().model_dump(mode="json")})
    with tempfile.TemporaryDirectory() as d:
        store = RunStore(Path(d) / "run")
        store.init(spec)
        out = execute(store.dir, progress=False, echo=False)
        assert out.state == "done", out.error
        df = store.read_metrics()
    train_time = float((df["time_env_s"] + df["time_update_s"]).sum())
    return {"steps_per_s": steps / train_time, "steps_per_cpu_s": steps / float(df["cpu_train_s"].sum()),
            "eval": df["eval_return_mean"].tolist() if eval_every else []}


# ----- Stable-Baselines3 ------------------------------------------------------------------------------------
def sb3_run(task: str, seed: int, steps: int, eval_every: int, eval_episodes: int) -> dict:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from dapbench.suite import EvalConfig
    from dapbench.tasks import get_task

    info = get_task(task)
    torch.set_num_threads(1)
    venv = VecNormalize(DummyVecEnv([info.make]), norm_obs=True, norm_reward=True, clip_obs=10.0,
                        clip_reward=10.0, gamma=0.99)
    venv.seed(seed)
    model = PPO(
        "MlpPolicy", venv, learning_rate=lambda f: 3e-4 * f, n_steps=2048, batch_size=64, n_epochs=10,
        gamma=0.99, gae_lambda=0.95, clip_range=0.2, clip_range_vf=0.2, ent_coef=0.0, vf_coef=0.5,
        max_grad_norm=0.5, seed=seed, device="cpu", verbose=0,
        policy_kwargs={"net_arch": {"pi": [64, 64], "vf": [64, 64]}, "activation_fn": torch.nn.Tanh,
                       "log_std_init": 0.0},
    )
    seeds = EvalConfig(episodes=eval_episodes).episode_seeds()
    eval_envs = [info.make() for _ in seeds]
    curve: list[float] = []
    eval_time, eval_cpu = [0.0], [0.0]

    def evaluate() -> float:
        t0, c0 = time.perf_counter(), time.process_time()
        rets = []
        for env, s in zip(eval_envs, seeds, strict=True):
            obs, _ = env.reset(seed=s)
            done, ret = False, 0.0
            while not done:
                a, _ = model.predict(venv.normalize_obs(obs[None]), deterministic=True)
                obs, r, term, trunc, _ = env.step(np.clip(a[0], env.action_space.low, env.action_space.high))
                ret += float(r)
                done = term or trunc
            rets.append(ret)
        eval_time[0] += time.perf_counter() - t0
        eval_cpu[0] += time.process_time() - c0
        return float(np.mean(rets))

    class EvalEvery(BaseCallback):
        def _on_step(self) -> bool:
            if eval_every and self.num_timesteps % (EPOCH * eval_every) == 0:
                curve.append(evaluate())
            return True

    t0, c0 = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=steps, callback=EvalEvery())
    train_time = time.perf_counter() - t0 - eval_time[0]
    train_cpu = time.process_time() - c0 - eval_cpu[0]
    return {"steps_per_s": steps / train_time, "steps_per_cpu_s": steps / train_cpu, "eval": curve}


RUNNERS = {"dapbench": dapbench_run, "sb3": sb3_run}


def _job(args: tuple) -> tuple:
    impl, task, seed, steps, eval_episodes = args
    torch.set_num_threads(1)
    return args, RUNNERS[impl](task, seed, steps, 1, eval_episodes)


def speed(tasks: list[str], steps: int) -> None:
    """Steps per CPU second of training (evaluation left out): CPU time, so other load on the machine does not
    move the ratio; dapbench and SB3 alternate, each in this process, one thread."""
    print(f"{'task':<12} {'dapbench':>9} {'sb3':>9} {'ratio':>6}  (steps per CPU second of training, 1 thread, "
          f"{steps} steps, same gradient steps; wall-clock ratio in brackets)")
    for task in tasks:
        d = dapbench_run(task, 0, steps, 0, 1)
        s = sb3_run(task, 0, steps, 0, 1)
        print(f"{task:<12} {d['steps_per_cpu_s']:>9.0f} {s['steps_per_cpu_s']:>9.0f} "
              f"{d['steps_per_cpu_s'] / s['steps_per_cpu_s']:>5.2f}x  ({d['steps_per_s'] / s['steps_per_s']:.2f}x)",
              flush=True)


def learning(tasks: list[str], seeds: list[int], steps: int, jobs: int, eval_episodes: int, out: Path) -> None:
    jobs_list = [(impl, t, s, steps, eval_episodes) for t in tasks for s in seeds for impl in RUNNERS]
    rows = []
    with cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), max_tasks_per_child=1) as pool:
        for fut in cf.as_completed([pool.submit(_job, j) for j in jobs_list]):
            (impl, task, seed, _, _), res = fut.result()
            curve = np.asarray(res["eval"])
            row = {"impl": impl, "task": task, "seed": seed, "alc40": float(curve[:40].mean()),
                   "final": float(curve[-1]), "steps_per_s": res["steps_per_s"], "curve": curve.round(1).tolist()}
            rows.append(row)
            print(f"{impl:<9} {task:<12} seed {seed}: ALC@40 {row['alc40']:8.1f}  final {row['final']:8.1f}  "
                  f"({row['steps_per_s']:.0f} steps/s under {jobs} parallel jobs)", flush=True)
    import pandas as pd

    df = pd.DataFrame(rows).sort_values(["task", "seed", "impl"])
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    summary = df.groupby(["task", "impl"])[["alc40", "final"]].agg(["mean", "std"]).round(1)
    print(summary.to_string())
    print(f"written {out}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["speed", "learning"])
    p.add_argument("--tasks", nargs="+", default=["hopper", "halfcheetah"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=None, help="default: 20480 (speed), 200000 (learning)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/learning.csv"))
    a = p.parse_args()
    if a.mode == "speed":
        speed(a.tasks, a.steps or 20480)
    else:
        learning(a.tasks, a.seeds, a.steps or 200_000, a.jobs, a.eval_episodes, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
