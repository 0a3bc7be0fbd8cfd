"""The algorithm registry.

Built-in algorithms live in the top-level package `algorithms` and register themselves with the
`@register` decorator when it is imported. Third-party packages add theirs through the
`dapbench.algorithms` entry-point group (`name = "package.module:Class"`); a class loaded that way
is registered under the entry point's name.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from dapbench.algorithm import Algorithm
from dapbench.errors import BadInputError, DapbenchError

ENTRY_POINT_GROUP = "dapbench.algorithms"

_REGISTRY: dict[str, type[Algorithm]] = {}
_LOADED = False

# Algorithms of the protocol that have no implementation yet, and where they are tracked. A suite may
# name them (a dry run marks them); running them is an error until they land.
PLANNED: dict[str, str] = {}


def register(name: str):
    """Class decorator: register an `Algorithm` subclass under `name`."""

    def deco(cls: type[Algorithm]) -> type[Algorithm]:
        _add(name, cls)
        return cls

    return deco


def _add(name: str, cls: Any) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        raise DapbenchError(f"algorithm {name!r}: {cls!r} is not a dapbench.algorithm.Algorithm subclass")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise DapbenchError(f"algorithm {name!r} registered twice ({_REGISTRY[name]!r} and {cls!r})")
    cls.name = name
    _REGISTRY[name] = cls


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    pkg = importlib.import_module("algorithms")
    if not getattr(pkg, "__dapbench__", False):
        where = getattr(pkg, "__file__", None) or list(getattr(pkg, "__path__", []))
        raise DapbenchError(
            f"the package 'algorithms' imported from {where} is not dapbench's (a foreign package of "
            f"that name shadows it); expected it beside {Path(__file__).parent}. Uninstall the other one "
            "or reinstall dapbench."
        )
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _add(ep.name, ep.load())


def algorithms() -> dict[str, type[Algorithm]]:
    """All registered algorithms, by name."""
    _load()
    return dict(sorted(_REGISTRY.items()))


def get_algorithm(name: str) -> type[Algorithm]:
    """The algorithm registered under `name`, or a clear error."""
    reg = algorithms()
    if name in reg:
        return reg[name]
    if name in PLANNED:
        raise BadInputError(f"algorithm {name!r} is not implemented yet: {PLANNED[name]}")
    raise BadInputError(f"unknown algorithm {name!r}; registered: {', '.join(reg)}")


def known_names() -> list[str]:
    """Registered and planned names: what a suite may mention."""
    return sorted(set(algorithms()) | set(PLANNED))
