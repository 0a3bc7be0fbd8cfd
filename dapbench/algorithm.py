"""The algorithm interface: what the trainer calls, what an algorithm declares.

Part of the algorithm API: authors import these names from `dapbench.api` (docs/api.md, versioned there).

The trainer owns the loop, budget, evaluation, checkpoints, timing and logging; an algorithm owns
learning. It steps the environment itself inside `train_epoch` (on-policy methods collect with their
own policy), through the harness's `TrainEnv`, which times and records every step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

if TYPE_CHECKING:
    from dapbench.training.env import TrainEnv


def late_field(default: Any, *, legacy: Any, since: str, **kwargs: Any) -> Any:
    """A config field added after runs were made without it. `legacy` is the value that reproduces what those
    runs did (it may differ from `default`, when the new default changes the method).

    A run spec stores its config without the late fields that hold their legacy value, so adding a field never
    changes the identity (hash) of an existing run; a stored spec without the field is read back with the legacy
    value, never the new default, so resuming or reproducing an old run keeps its behaviour."""
    extra = {**kwargs.pop("json_schema_extra", {}), "legacy": legacy, "since": since}
    return Field(default, json_schema_extra=extra, **kwargs)


def override_field(base: type[BaseModel], name: str, **changes: Any) -> Any:
    """Re-declare field `name` inherited from config class `base`, changing only what `changes` gives (`default`,
    `description`, `ge`, ...) and keeping the rest (constraints, late-field markers):

        class MyConfig(PPOConfig):
            clip_coef: float = override_field(PPOConfig, "clip_coef", default=0.1, description="... (ours)")

    A plain re-declaration (`clip_coef: float = Field(0.1, description=...)`) is allowed by pydantic too, but
    drops the inherited constraints (`gt=0`). The field keeps its place in the config's field order."""
    fields = getattr(base, "model_fields", {})
    if name not in fields:
        raise TypeError(f"{getattr(base, '__qualname__', base)} has no field {name!r} to override "
                        f"(its fields: {', '.join(fields)})")
    return FieldInfo.merge_field_infos(fields[name], **changes)


class AlgoConfig(BaseModel):
    """Base of every algorithm's typed config: frozen, unknown keys rejected.

    Field defaults are the algorithm's documented defaults; each field's description says where the
    default comes from. Fields added after a release are declared with `late_field` (see there); an inherited
    field is re-declared (new default or description) with `override_field`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def late_fields(cls) -> dict[str, Any]:
        """{name: legacy value} of the fields declared with `late_field`."""
        out = {}
        for name, f in cls.model_fields.items():
            extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
            if "legacy" in extra:
                out[name] = extra["legacy"]
        return out

    # Fields removed from the config after runs were made with them: {name: the value that meant "off"}. Stored specs
    # keep them at that value, so their identity stays; any other value is refused (its behaviour is gone).
    RETIRED: ClassVar[dict[str, Any]] = {}

    @classmethod
    def retired_fields(cls) -> dict[str, Any]:
        """RETIRED of this class and its bases, less fields a subclass declares again."""
        out: dict[str, Any] = {}
        for k in reversed(cls.__mro__):
            out.update(vars(k).get("RETIRED", {}))
        return {k: v for k, v in out.items() if k not in cls.model_fields}

    def spec_dump(self) -> dict[str, Any]:
        """The config as a run spec stores it: every field, except late fields holding their legacy value, plus retired
        fields at their "off" value (as specs made before their retirement hold them)."""
        body = self.model_dump(mode="json")
        for name, value in type(self).late_fields().items():
            if body.get(name) == _json(value):
                body.pop(name)
        return {**body, **{k: _json(v) for k, v in type(self).retired_fields().items()}}

    @classmethod
    def from_spec(cls, stored: dict[str, Any]) -> AlgoConfig:
        """The config of a stored run spec: late fields it lacks take their legacy value; retired fields must hold
        their "off" value and are dropped."""
        stored = dict(stored)
        for name, off in cls.retired_fields().items():
            if name in stored and stored.pop(name) != _json(off):
                raise ValueError(f"{cls.__name__}: field {name!r} was retired (only {off!r}, its 'off' value, is "
                                 "accepted in stored specs); the run needs the code that had it")
        return cls.model_validate({**{k: v for k, v in cls.late_fields().items() if k not in stored}, **stored})


def _json(value: Any) -> Any:
    """`value` as model_dump(mode="json") writes it (tuples become lists)."""
    import json

    return json.loads(json.dumps(value, default=str))


@dataclass(frozen=True)
class Metric:
    """A column an algorithm logs, declared so the harness can describe and gate it without knowing names.

    `gate`: what the regression gate holds it to against a baseline. "zero": a value that is exactly 0 in
    every baseline epoch must stay exactly 0 (max over epochs); "small": the max over epochs must stay below
    `bound`; "drift": the mean over epochs must stay within the gate's audit tolerance (relative); None: not
    gated, only reported. `audit`: shown in the report's audit table. The trainer fails a run on any NaN
    statistic, and on an infinite one unless the metric `allow_inf`."""

    description: str
    gate: Literal["zero", "small", "drift"] | None = None
    bound: float = 1e-4
    audit: bool = True
    allow_inf: bool = False  # +inf is a value here (e.g. "never acted"), not a divergence the trainer stops for
    degenerate_at: float | None = None  # the value at which the algorithm is numerically its base (the report says so)

    def as_json(self) -> dict[str, Any]:
        return {"description": self.description, "gate": self.gate, "bound": self.bound, "audit": self.audit,
                "allow_inf": self.allow_inf, "degenerate_at": self.degenerate_at}


@dataclass(frozen=True)
class Spaces:
    """The shapes and bounds an algorithm is built for."""

    obs_dim: int
    act_dim: int
    act_low: np.ndarray
    act_high: np.ndarray


@dataclass(frozen=True)
class Context:
    """What the trainer tells an algorithm about its run."""

    total_steps: int  # the horizon: the steps progress-dependent schedules are scaled to (the run may stop earlier)
    seed: int
    device: str  # a resolved torch device string: "cpu" or "cuda[:i]"
    dataset: str | None = None  # Minari id of the logged data (`dapbench.data.load.load_transitions`)
    task: str | None = None  # the task's registry name


class Algorithm(ABC):
    """A learning algorithm behind the common interface.

    Class attributes declare the algorithm: its registered `name`, its `Config` class, what it needs
    (`needs_dataset`: a logged dataset; `needs_prior`: a pre-trained prior), and `reconstruction`:
    None for a faithful implementation, else a sentence saying what was reconstructed and from what.

    Lifecycle of a run attempt: `shared_work` (launcher, before runs start) -> `__init__(config, spaces,
    context)` (seeded) -> `load_state_dict` (on resume, from the last checkpoint) -> per epoch: `train_epoch`,
    then `act` (evaluation, between epochs), then `state_dict` (the epoch's checkpoint) and, every
    `snapshot_every` epochs, `policy_state_dict`. The registry checks at load time that a class subclasses
    `Algorithm`, has a `Config` that is an `AlgoConfig`, and leaves no abstract method unimplemented.
    """

    name: ClassVar[str]
    Config: ClassVar[type[AlgoConfig]]
    metrics: ClassVar[dict[str, Metric]] = {}  # logged columns the report describes and the gate checks
    needs_dataset: ClassVar[bool] = False
    needs_prior: ClassVar[bool] = False
    reconstruction: ClassVar[str | None] = None

    @classmethod
    def shared_work(cls, config: AlgoConfig, task: str, dataset: str | None) -> str | None:
        """Work that runs with this config share and that is not done yet (e.g. pre-training a prior), named
        so that equal work has equal names; None when there is none. Building the algorithm does it (once,
        cached); the slurm launcher does it in a preparation job per name before the runs start."""
        return None

    def __init__(self, config: AlgoConfig, spaces: Spaces, context: Context) -> None:
        if self.needs_dataset and context.dataset is None:
            raise ValueError(f"{getattr(self, 'name', type(self).__name__)} needs a logged dataset (context.dataset)")
        self.config = config
        self.spaces = spaces
        self.context = context

    @abstractmethod
    def train_epoch(self, env: TrainEnv, n_steps: int) -> dict[str, float]:
        """Take exactly `n_steps` environment steps in `env`, learning as the algorithm does.

        Returns the epoch's learning statistics (losses, approx-KL, ...); keys absent this epoch
        (e.g. no update happened) are simply left out.
        """

    @abstractmethod
    def act(self, obs: np.ndarray, deterministic: bool = True, rng: np.random.Generator | None = None
            ) -> np.ndarray:
        """Actions for a batch of raw observations `(n, obs_dim)` -> `(n, act_dim)`.

        Must not change any state that affects training (evaluation calls it between epochs).
        """

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything that affects the algorithm's future: weights, optimisers, normalisers, RNGs,
        partial rollouts, counters."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    @classmethod
    def declared_metrics(cls) -> dict[str, Metric]:
        """`metrics` of this class and every base, the most derived declaration winning."""
        out: dict[str, Metric] = {}
        for k in reversed(cls.__mro__):
            out.update(vars(k).get("metrics", {}))
        return out

    def policy_state_dict(self) -> dict[str, Any]:
        """What `act` needs (a policy snapshot); by default the whole state."""
        return self.state_dict()

    def load_policy_state_dict(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state)
