"""The algorithm registry: every algorithm, built-in or third-party, comes through one entry-point group.

A distribution declares its algorithms in `pyproject.toml`:

    [project.entry-points."dapbench.algorithms"]
    ppo-kl = "my_package.ppo_kl:PPOKL"

dapbench's own algorithms (the `algorithms` package) are declared the same way, in dapbench's own
`pyproject.toml`; nothing in `dapbench` imports them. Entry points are loaded lazily, each on its own: one
that fails to import, or whose class is not a complete `Algorithm` (a `Config`, no abstract method left),
is recorded with its distribution and error, and only a command that needs *that* algorithm fails.
`register(name, cls)` adds a class in-process (tests, notebooks).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from dapbench.algorithm import AlgoConfig, Algorithm
from dapbench.errors import BadInputError, DapbenchError

ENTRY_POINT_GROUP = "dapbench.algorithms"
IN_PROCESS = "(registered in-process)"


@dataclass(frozen=True)
class Provider:
    """Where a registered algorithm comes from: its distribution (name, version) and module file."""

    dist: str
    version: str
    module: str
    path: str | None

    def describe(self) -> str:
        return f"{self.dist} {self.version} ({self.module})"


@dataclass(frozen=True)
class Broken:
    """An entry point that could not be loaded or checked."""

    name: str
    provider: str
    error: str


_REGISTRY: dict[str, type[Algorithm]] = {}
_PROVIDERS: dict[str, Provider] = {}
_BROKEN: dict[str, Broken] = {}
_LOADED = False

# Algorithms of the protocol that have no implementation yet, and where they are tracked. A suite may
# name them (a dry run marks them); running them is an error until they land.
PLANNED: dict[str, str] = {}


def check_class(name: str, cls: object) -> str | None:
    """Why `cls` cannot be registered as algorithm `name`, or None when it can."""
    if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        return f"{cls!r} is not a dapbench.api.Algorithm subclass"
    config = getattr(cls, "Config", None)
    if not (isinstance(config, type) and issubclass(config, AlgoConfig)):
        return f"{cls.__qualname__} has no `Config` (a dapbench.api.AlgoConfig subclass)"
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        return f"{cls.__qualname__} leaves abstract methods unimplemented: {missing}"
    return None


def _provider_of(cls: type, ep: EntryPoint | None) -> Provider:
    module = inspect.getmodule(cls)
    path = getattr(module, "__file__", None)
    if ep is not None and ep.dist is not None:
        return Provider(ep.dist.name, ep.dist.version, cls.__module__, path)
    return Provider(IN_PROCESS, "", cls.__module__, path)


def _add(name: str, cls: type[Algorithm], provider: Provider) -> None:
    why = check_class(name, cls)
    if why:
        raise DapbenchError(f"algorithm {name!r} from {provider.describe()}: {why}")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise DapbenchError(f"algorithm {name!r} is registered twice: by {_PROVIDERS[name].describe()} and by "
                            f"{provider.describe()}; uninstall one of them")
    cls.name = name
    _REGISTRY[name] = cls
    _PROVIDERS[name] = provider


def register(name: str, cls: type[Algorithm]) -> type[Algorithm]:
    """Register `cls` under `name` in this process (tests, notebooks); entry points are the durable way."""
    _load()
    _BROKEN.pop(name, None)
    _add(name, cls, _provider_of(cls, None))
    return cls


def unregister(name: str) -> None:
    """Remove an in-process registration (tests)."""
    _REGISTRY.pop(name, None)
    _PROVIDERS.pop(name, None)


def _check_builtin_package(ep: EntryPoint) -> str | None:
    """dapbench's entry points name the top-level `algorithms`; a foreign package of that name may shadow it."""
    if ep.dist is None or ep.dist.name != "dapbench" or not ep.value.startswith("algorithms."):
        return None
    import importlib

    pkg = importlib.import_module("algorithms")
    if getattr(pkg, "__dapbench__", False):
        return None
    where = getattr(pkg, "__file__", None) or list(getattr(pkg, "__path__", []))
    return (f"the package 'algorithms' imported from {where} is not dapbench's (a foreign package of that name "
            f"shadows it); expected it beside {Path(__file__).parent}. Uninstall the other one or reinstall dapbench")


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    seen: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "an unknown distribution"
        if ep.name in seen and seen[ep.name].value != ep.value:
            other = seen[ep.name]
            _BROKEN[ep.name] = Broken(ep.name, dist, f"two distributions register {ep.name!r}: "
                                      f"{other.dist.name if other.dist else '?'} ({other.value}) and {dist} "
                                      f"({ep.value}); uninstall one of them")
            _REGISTRY.pop(ep.name, None)
            continue
        seen[ep.name] = ep
        try:
            foreign = _check_builtin_package(ep)
            if foreign:
                raise DapbenchError(foreign)
            cls = ep.load()
            _add(ep.name, cls, _provider_of(cls, ep))
        except Exception as e:  # a plugin's failure is its own, never the harness's
            msg = str(e) if isinstance(e, DapbenchError) else f"{type(e).__name__}: {e}"
            _BROKEN[ep.name] = Broken(ep.name, f"{dist} ({ep.value})", msg)


def algorithms() -> dict[str, type[Algorithm]]:
    """All algorithms that loaded, by name."""
    _load()
    return dict(sorted(_REGISTRY.items()))


def broken() -> dict[str, Broken]:
    """Entry points that failed to load or to pass `check_class`, by name."""
    _load()
    return dict(sorted(_BROKEN.items()))


def provider(name: str) -> Provider:
    """The distribution that provides algorithm `name` (for provenance)."""
    get_algorithm(name)
    return _PROVIDERS[name]


def get_algorithm(name: str) -> type[Algorithm]:
    """The algorithm registered under `name`, or one clear error (naming the plugin when it is broken)."""
    reg = algorithms()
    if name in reg:
        return reg[name]
    if name in _BROKEN:
        b = _BROKEN[name]
        raise BadInputError(f"algorithm {name!r} (from {b.provider}) cannot be loaded: {b.error}")
    if name in PLANNED:
        raise BadInputError(f"algorithm {name!r} is not implemented yet: {PLANNED[name]}")
    raise BadInputError(f"unknown algorithm {name!r}; registered: {', '.join(reg)}")


def known_names() -> list[str]:
    """Registered, broken and planned names: what a suite may mention (a broken one fails when it is used)."""
    return sorted(set(algorithms()) | set(_BROKEN) | set(PLANNED))
