"""The offline action prior p_psi(a | s): an EDM diffusion model trained with the denoising loss on a
task's logged (s, a) pairs, saved once per (task, dataset, prior config) under a content hash and reused
by every seed and algorithm that asks for it.

Observations are standardised with the dataset's mean and std (kept with the prior); actions stay in
the task's action box, so `max_action` is the box's bound.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from dapbench.diffusion.edm import EDM, EDMConfig
from dapbench.diffusion.nets import DenoiserConfig, DenoiserNet
from dapbench.errors import RunFolderError
from dapbench.results.atomic import atomic_write, load_torch

PRIOR_ROOT_ENV = "DAPBENCH_PRIORS"
DEFAULT_PRIOR_ROOT = Path("results/priors")


class PriorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    denoiser: DenoiserConfig = DenoiserConfig()
    edm: EDMConfig = EDMConfig()
    train_steps: int = Field(50_000, gt=0, description="gradient steps (DTQL: 50 epochs x 1,000)")
    batch_size: int = Field(256, gt=0, description="minibatch size (DTQL: 256)")
    lr: float = Field(3e-4, gt=0, description="Adam step size (DTQL: 3e-4)")
    seed: int = Field(0, description="training seed (a prior is shared across run seeds)")


class ActionPrior(nn.Module):
    """EDM denoiser plus the observation standardisation it was trained with."""

    def __init__(self, obs_dim: int, act_dim: int, max_action: float, cfg: PriorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.edm = EDM(DenoiserNet(obs_dim, act_dim, cfg.denoiser), cfg.edm, act_dim, max_action)
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))

    def cond(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.obs_mean) / self.obs_std

    def loss(self, obs: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None,
             reduce: bool = True) -> torch.Tensor:
        return self.edm.loss(actions, self.cond(obs), generator, reduce)


def prior_key(task: str, dataset_hash: str, obs_dim: int, act_dim: int, cfg: PriorConfig) -> str:
    blob = json.dumps({"task": task, "dataset": dataset_hash, "obs_dim": obs_dim, "act_dim": act_dim,
                       "config": cfg.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train_prior(obs: torch.Tensor, actions: torch.Tensor, max_action: float, cfg: PriorConfig,
                log=None) -> tuple[ActionPrior, list[float]]:
    """Train a prior from scratch on (obs, actions); returns it and its loss curve (per 1% of steps).

    The global RNGs are left as they were: the run whose process happens to train the shared prior must
    go on exactly as the runs that load it from the cache."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return _train_prior(obs, actions, max_action, cfg, log)


def _train_prior(obs: torch.Tensor, actions: torch.Tensor, max_action: float, cfg: PriorConfig,
                 log=None) -> tuple[ActionPrior, list[float]]:
    g = torch.Generator(device=obs.device).manual_seed(cfg.seed)
    prior = ActionPrior(obs.shape[1], actions.shape[1], max_action, cfg).to(obs.device)
    prior.obs_mean.copy_(obs.mean(0))
    prior.obs_std.copy_(obs.std(0).clamp_min(1e-6))
    opt = torch.optim.Adam(prior.parameters(), lr=cfg.lr, fused=True)
    with torch.no_grad():  # [cond(s) | a], standardised once: one row gather per step
        table = torch.cat([prior.cond(obs), actions.to(obs.dtype)], 1)
    n, d_obs, steps = obs.shape[0], obs.shape[1], cfg.train_steps
    losses = torch.empty(steps, device=obs.device)
    every = max(1, steps // 100)
    for step in range(steps):
        batch = table.index_select(0, torch.randint(n, (cfg.batch_size,), generator=g, device=obs.device))
        loss = prior.edm.loss(batch[:, d_obs:], batch[:, :d_obs], g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses[step] = loss.detach()
        if log and (step + 1) % (every * 10) == 0:
            log(f"prior: step {step + 1}/{steps} loss {losses[step + 1 - every:step + 1].double().mean():.4f}")
    prior.eval()
    chunks = losses[: steps // every * every].double().view(-1, every).mean(1)  # the mean loss per 1% of steps
    return prior, chunks.tolist()


def _folder(task: str, data_hash: str, obs_dim: int, act_dim: int, cfg: PriorConfig, root: Path | None) -> Path:
    key = prior_key(task, data_hash, obs_dim, act_dim, cfg)
    return (root or Path(os.environ.get(PRIOR_ROOT_ENV, DEFAULT_PRIOR_ROOT))) / task / key


def _data_hash(dataset_id: str) -> str:
    from dapbench.data.load import header

    return header(dataset_id).dapbench.get("content_hash") or hashlib.sha256(dataset_id.encode()).hexdigest()


def is_cached(task: str, dataset_id: str, cfg: PriorConfig, root: Path | None = None) -> bool:
    """Whether the prior for (task, dataset, cfg) is already trained (False while the dataset is missing)."""
    from dapbench.data.load import header, local_dataset_ids

    if dataset_id not in local_dataset_ids():
        return False
    head = header(dataset_id)
    obs_dim, act_dim = head.obs_dim, head.act_dim
    return (_folder(task, _data_hash(dataset_id), obs_dim, act_dim, cfg, root) / "prior.pt").exists()


def _load(path: Path, folder: Path) -> dict[str, Any]:
    """A cached prior, loaded as data only (a shared prior cache cannot run code in whoever loads it)."""
    remedy = f"delete {folder} to train the prior again"
    blob = load_torch(path, "prior", remedy)
    if not isinstance(blob, dict) or not {"state", "info", "obs_dim", "act_dim"} <= set(blob):
        raise RunFolderError(f"{path}: corrupt prior (not what dapbench saves); {remedy}")
    return blob


def load_or_train(task: str, dataset_id: str, max_action: float, cfg: PriorConfig,
                  root: Path | None = None, log=None, data=None) -> tuple[ActionPrior, dict[str, Any]]:
    """The prior for (task, dataset, cfg): loaded from its cache folder, or trained once and saved there.

    `data`: the dataset's `Transitions` if the caller has already loaded them. Concurrent runs wait on a
    file lock instead of training the same prior twice."""
    from dapbench.data.load import header, load_transitions

    head = header(dataset_id)  # metadata.json only: a cached prior loads without Minari's reader
    data_hash = _data_hash(dataset_id)
    obs_dim, act_dim = head.obs_dim, head.act_dim
    key = prior_key(task, data_hash, obs_dim, act_dim, cfg)
    folder = _folder(task, data_hash, obs_dim, act_dim, cfg, root)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "prior.pt"
    with FileLock(folder / ".lock"):  # blocks until another maker of this prior has saved it
        if not path.exists():
            data = data if data is not None else load_transitions(dataset_id)  # only to train: it is large
            t0 = time.perf_counter()
            prior, curve = train_prior(data.obs, data.actions, max_action, cfg, log)
            info = {"task": task, "dataset": dataset_id, "dataset_hash": data_hash, "key": key,
                    "config": cfg.model_dump(mode="json"), "train_seconds": time.perf_counter() - t0,
                    "loss_curve": curve, "transitions": len(data)}
            blob = {"state": prior.state_dict(), "info": info, "obs_dim": obs_dim, "act_dim": act_dim}
            atomic_write(path, lambda f: torch.save(blob, f))
            atomic_write(folder / "info.json", lambda f: f.write(json.dumps(info, indent=2).encode()))
    blob = _load(path, folder)
    prior = ActionPrior(blob["obs_dim"], blob["act_dim"], max_action, cfg)
    prior.load_state_dict(blob["state"])
    prior.eval()
    return prior, {**blob["info"], "path": str(path)}
