"""Normalised scores: score = (return - random) / (reference - random), per task.

`random` is the task's measured random-policy return (`dapbench/tasks/reference_scores.json`, written by
`dapbench tasks measure`); `reference` a PPO return at 1.0M steps from `dapbench/tasks/normalisation.json`
(versioned; each number with its kind and source). A task without a reference stays unnormalised: its
normalised scores are NaN and normalised aggregates leave it out.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from dapbench.errors import BadInputError
from dapbench.tasks.registry import REFERENCE_FILE, reference_scores

NORMALISATION_FILE = Path(__file__).resolve().parents[1] / "tasks" / "normalisation.json"


class Reference(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    reference_return: float | None
    kind: Literal["measured", "published"] | None
    source: str


class NormalisationFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int
    about: str
    tasks: dict[str, Reference]


class TaskNorm(BaseModel):
    """One task's normalisation: random and reference returns with where each came from."""

    model_config = ConfigDict(frozen=True)
    task: str
    random_return: float | None
    random_source: str
    reference_return: float | None
    reference_kind: str | None
    reference_source: str

    @property
    def usable(self) -> bool:
        return (self.random_return is not None and self.reference_return is not None
                and self.reference_return != self.random_return)


class NormalisationTable(BaseModel):
    model_config = ConfigDict(frozen=True)
    version: int
    sha256: str  # of normalisation.json and reference_scores.json together, first 12 hex digits
    about: str
    tasks: dict[str, TaskNorm]

    def normalise(self, task: str, values: np.ndarray | float) -> np.ndarray:
        """(values - random) / (reference - random); NaN where the task has no usable reference."""
        t = self.tasks.get(task)
        v = np.asarray(values, dtype=float)
        if t is None or not t.usable:
            return np.full_like(v, np.nan)
        return (v - t.random_return) / (t.reference_return - t.random_return)


def load_table(path: Path = NORMALISATION_FILE, random_path: Path = REFERENCE_FILE) -> NormalisationTable:
    """The normalisation table: references from `path`, random-policy returns from `random_path`."""
    try:
        ref = NormalisationFile.model_validate_json(path.read_text())
    except FileNotFoundError:
        raise BadInputError(f"{path}: the normalisation table is missing") from None
    except ValidationError as e:
        raise BadInputError(f"{path}: invalid normalisation table ({e.errors()[0]['loc']}: "
                            f"{e.errors()[0]['msg']})") from None
    rand = json.loads(random_path.read_text()) if random_path.exists() else reference_scores()
    command = rand.get("meta", {}).get("command") or "not measured"
    digest = hashlib.sha256(path.read_bytes() + (random_path.read_bytes() if random_path.exists() else b""))
    tasks = {}
    for name in sorted(set(ref.tasks) | set(rand.get("tasks", {}))):
        r = rand.get("tasks", {}).get(name)
        e = ref.tasks.get(name) or Reference(reference_return=None, kind=None, source="not in the table")
        tasks[name] = TaskNorm(
            task=name, random_return=r["random_return_mean"] if r else None,
            random_source=(f"uniform random actions, {r['random_episodes']} episodes: "
                           f"`{r.get('command') or command + ' --task ' + name}`") if r else "not measured",
            reference_return=e.reference_return, reference_kind=e.kind, reference_source=e.source)
    return NormalisationTable(version=ref.version, sha256=digest.hexdigest()[:12], about=ref.about, tasks=tasks)
