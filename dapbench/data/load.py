"""Load and validate logged datasets by Minari id, ours (`dapbench/...`) or public ones (`mujoco/...`).

An algorithm gets its data as `Transitions`: flat tensors of (s, a, r, s', terminal, timeout) in the
dataset's order, the format offline and prior-training code consumes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dapbench.errors import BadInputError
from dapbench.naming import dataset_id_problem
from dapbench.tasks.registry import TaskInfo


class DatasetError(BadInputError):
    """A dataset that is missing, unreadable or inconsistent with its task."""


@dataclass
class Transitions:
    obs: torch.Tensor  # (N, obs_dim) float32
    actions: torch.Tensor  # (N, act_dim) float32
    rewards: torch.Tensor  # (N,) float32
    next_obs: torch.Tensor  # (N, obs_dim) float32
    terminals: torch.Tensor  # (N,) float32: 1 where the episode terminated (no bootstrap)
    timeouts: torch.Tensor  # (N,) float32: 1 where the episode was truncated

    def __len__(self) -> int:
        return self.obs.shape[0]

    def to(self, device: str | torch.device) -> Transitions:
        return Transitions(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def local_dataset_ids() -> list[str]:
    """Ids of the datasets in the Minari datasets folder (read from the folder layout, so one damaged
    dataset does not hide the others)."""
    root = Path(_root())
    return sorted(str(p.parent.parent.relative_to(root)) for p in root.rglob("data/metadata.json"))


def check_id(dataset_id: str) -> str:
    """`dataset_id` if it is a Minari id whose every part is a name (so it names a folder inside the datasets
    folder and nothing else), else a DatasetError saying what an id is."""
    why = dataset_id_problem(dataset_id)
    if why:
        raise DatasetError(why)
    return dataset_id


def open_dataset(dataset_id: str, make_hint: str | None = None):
    """The MinariDataset `dataset_id`, or a DatasetError naming it and how to make it."""
    import minari

    check_id(dataset_id)
    if dataset_id not in local_dataset_ids():
        hint = f"; make it with `{make_hint}`" if make_hint else (
            "; make one with `python -m dapbench data make TASK --quality QUALITY`, or download a public one "
            "with `minari download ID`")
        raise DatasetError(f"dataset {dataset_id!r} not found in the Minari datasets folder "
                           f"({_root()}){hint}")
    try:
        return minari.load_dataset(dataset_id)
    except Exception as e:
        raise DatasetError(f"dataset {dataset_id!r} is unreadable ({type(e).__name__}: {e})") from None


def _root() -> str:
    """Minari's datasets folder, found as Minari finds it but without creating it (reading creates nothing)."""
    return os.environ.get("MINARI_DATASETS_PATH") or os.path.join(os.path.expanduser("~"), ".minari", "datasets")


def datasets_root() -> Path:
    return Path(_root())


def dataset_path(dataset_id: str) -> Path:
    return datasets_root() / check_id(dataset_id)


def dapbench_metadata(ds) -> dict[str, Any]:
    raw = ds.storage.metadata.get("dapbench")
    return json.loads(raw) if raw else {}


@dataclass(frozen=True)
class Header:
    """What a run needs to know about a dataset without loading it: the spaces' sizes, its length, dapbench's
    metadata (content hash, behaviour run), and whether its episodes can be read column by column (arrow)."""

    obs_dim: int
    act_dim: int
    total_steps: int
    total_episodes: int
    arrow: bool
    dapbench: dict[str, Any]


def header(dataset_id: str, make_hint: str | None = None) -> Header:
    """The dataset's header, read from Minari's `data/metadata.json` alone (no Minari import, no episode read:
    a run that only loads a cached prior and probe states keeps Minari's ~100 MB of reader state out of its RSS).
    The same missing-dataset error as `open_dataset`."""
    check_id(dataset_id)
    path = dataset_path(dataset_id) / "data" / "metadata.json"
    if not path.is_file():
        open_dataset(dataset_id, make_hint)  # raises the missing-dataset error with its remedy
    try:
        m = json.loads(path.read_text())
        obs, act = json.loads(m["observation_space"]), json.loads(m["action_space"])
        (obs_dim,), (act_dim,) = obs["shape"], act["shape"]
        return Header(int(obs_dim), int(act_dim), int(m["total_steps"]), int(m["total_episodes"]),
                      m.get("data_format") == "arrow", json.loads(m["dapbench"]) if m.get("dapbench") else {})
    except Exception as e:
        raise DatasetError(f"dataset {dataset_id!r}: unreadable metadata {path} ({type(e).__name__}: {e}); make or "
                           "download it again") from None


def _episodes(dataset_id: str, ds):
    try:
        yield from ds.iterate_episodes()
    except Exception as e:
        raise DatasetError(f"dataset {dataset_id!r}: cannot read its episodes ({type(e).__name__}: {e}); the "
                           "data files are damaged: make or download it again") from None


def validate(dataset_id: str, task: TaskInfo | None = None) -> dict[str, Any]:
    """Check spaces (against `task` if given), finiteness and episode boundaries; return a summary.

    Raises one DatasetError listing every problem found."""
    ds = open_dataset(dataset_id)
    problems: list[str] = []
    obs_shape, act_space = ds.observation_space.shape, ds.action_space
    if task is not None:
        env = task.make()
        if env.observation_space.shape != obs_shape:
            problems.append(f"observation shape {obs_shape} but task {task.name} has "
                            f"{env.observation_space.shape}")
        if env.action_space.shape != act_space.shape:
            problems.append(f"action shape {act_space.shape} but task {task.name} has {env.action_space.shape}")
        env.close()
    n_eps = n_steps = 0
    returns = []
    for ep in _episodes(dataset_id, ds):
        where = f"episode {ep.id}"
        T = len(ep.rewards)
        obs, act = np.asarray(ep.observations), np.asarray(ep.actions)
        if obs.shape != (T + 1, *obs_shape):
            problems.append(f"{where}: observations {obs.shape}, expected {(T + 1, *obs_shape)}")
        if act.shape != (T, *act_space.shape):
            problems.append(f"{where}: actions {act.shape}, expected {(T, *act_space.shape)}")
        for name, arr in (("observations", obs), ("actions", act), ("rewards", np.asarray(ep.rewards))):
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                bad = np.argwhere(~np.isfinite(arr))[0]
                problems.append(f"{where}: non-finite {name} (first at index {tuple(int(i) for i in bad)})")
        if act.shape[-1:] == act_space.shape[-1:] and np.isfinite(act).all() and (
                (act < act_space.low - 1e-6).any() or (act > act_space.high + 1e-6).any()):
            problems.append(f"{where}: actions outside the action space [{act_space.low.min()}, "
                            f"{act_space.high.max()}]")
        ends = np.asarray(ep.terminations) | np.asarray(ep.truncations)
        if T == 0 or not ends[-1]:
            problems.append(f"{where}: does not end with a termination or truncation")
        elif ends[:-1].any():
            problems.append(f"{where}: an episode end at step {int(np.argmax(ends))} before its last step")
        n_eps += 1
        n_steps += T
        returns.append(float(np.sum(ep.rewards)))
        if len(problems) > 20:
            break
    if n_steps != ds.total_steps and not problems:
        problems.append(f"metadata says {ds.total_steps} steps, episodes hold {n_steps}")
    if problems:
        raise DatasetError(f"dataset {dataset_id!r} is invalid:\n  " + "\n  ".join(problems[:20]))
    r = np.asarray(returns)
    return {"id": dataset_id, "episodes": n_eps, "steps": n_steps, "return_mean": float(r.mean()),
            "return_std": float(r.std()), "return_min": float(r.min()), "return_max": float(r.max()),
            "observation_shape": obs_shape, "action_shape": act_space.shape}


def observations_at(dataset_id: str, n: int) -> torch.Tensor:
    """n observations evenly spaced over the dataset's transitions: the rows linspace(0, N - 1, n) of
    `load_transitions(...).obs`, read one episode at a time (no full copy of the dataset in memory). Arrow
    datasets (ours) are read with pyarrow, only the observation column of the episodes that hold a wanted row."""
    head = header(dataset_id)
    want = torch.linspace(0, head.total_steps - 1, n).long().numpy()
    if head.arrow:
        return torch.from_numpy(_arrow_observations(dataset_id, head, want))
    ds = open_dataset(dataset_id)
    out, start = [], 0
    for ep in _episodes(dataset_id, ds):
        T = len(ep.rewards)
        hit = want[(want >= start) & (want < start + T)] - start
        if len(hit):
            out.append(np.asarray(ep.observations, dtype=np.float32)[hit])
        start += T
    return torch.from_numpy(np.concatenate(out))


def _arrow_observations(dataset_id: str, head: Header, want: np.ndarray) -> np.ndarray:
    """Rows `want` of the flat transition observations, from episode folders data/0, data/1, ... (Minari's order)."""
    import pyarrow as pa

    root = dataset_path(dataset_id) / "data"
    out, start, i = [], 0, 0
    try:
        for e in range(head.total_episodes):
            files = sorted((root / str(e)).glob("*.arrow"))  # memory-mapped: only the rows taken are read
            col = pa.chunked_array([c for f in files for c in
                                    pa.ipc.open_file(pa.memory_map(str(f))).read_all().column("observations").chunks])
            T = len(col) - 1  # an episode of T steps holds T + 1 observations
            hit = want[(want >= start) & (want < start + T)] - start
            if len(hit):
                rows = col.take(pa.array(hit)).combine_chunks().flatten().to_numpy(zero_copy_only=False)
                out.append(rows.reshape(len(hit), head.obs_dim).astype(np.float32))
                i += len(hit)
            start += T
            if i == len(want):
                break
    except Exception as e:
        raise DatasetError(f"dataset {dataset_id!r}: cannot read its episodes ({type(e).__name__}: {e}); the "
                           "data files are damaged: make or download it again") from None
    if i != len(want):
        raise DatasetError(f"dataset {dataset_id!r}: its episodes hold {start} steps, its metadata says "
                           f"{head.total_steps}; make or download it again")
    return np.concatenate(out)


def load_transitions(dataset_id: str, task: TaskInfo | None = None, device: str = "cpu") -> Transitions:
    """The dataset as flat transition tensors (validated first)."""
    validate(dataset_id, task)
    ds = open_dataset(dataset_id)
    parts: dict[str, list[np.ndarray]] = {f.name: [] for f in fields(Transitions)}
    for ep in _episodes(dataset_id, ds):
        obs = np.asarray(ep.observations, dtype=np.float32)
        parts["obs"].append(obs[:-1])
        parts["next_obs"].append(obs[1:])
        parts["actions"].append(np.asarray(ep.actions, dtype=np.float32))
        parts["rewards"].append(np.asarray(ep.rewards, dtype=np.float32))
        parts["terminals"].append(np.asarray(ep.terminations, dtype=np.float32))
        parts["timeouts"].append(np.asarray(ep.truncations, dtype=np.float32))
    return Transitions(**{k: torch.from_numpy(np.concatenate(v)).to(device) for k, v in parts.items()})
