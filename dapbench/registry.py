"""The algorithm registry: every algorithm, built-in or third-party, comes through one entry-point group.

A distribution declares its algorithms in `pyproject.toml` (docs/plugins.md):

    [project.entry-points."dapbench.algorithms"]
    ppo-kl = "my_package.ppo_kl:PPOKL"

dapbench's own algorithms (the `algorithms` package) are declared the same way, in dapbench's own
`pyproject.toml`; nothing in `dapbench` imports them.

Loading is lazy and isolated. The entry points' names are read without importing anything (validating a suite
imports only the algorithms it names); an entry point is imported the first time its name is looked up, on its
own. One that fails to import, or whose class is not a complete `Algorithm` (a `Config` that is an
`AlgoConfig`, no abstract method left), is recorded with its distribution and error (`broken()`), and only a
command that needs *that* algorithm fails, with both named. Two distributions registering one name make that
name unusable, and both are named. `register(name, cls)` adds a class in-process (tests, notebooks).
For a name nothing provides any more (an uninstalled plug-in), `recorded_origin` finds the distribution that
made a folder's runs in their provenance.json (layout-agnostic: any provenance.json below the folder).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from dapbench.algorithm import AlgoConfig, Algorithm
from dapbench.errors import BadInputError, DapbenchError

ENTRY_POINT_GROUP = "dapbench.algorithms"
IN_PROCESS = "(registered in-process)"


@dataclass(frozen=True)
class Provider:
    """Where a registered algorithm comes from: its distribution (name, version), the entry point's value
    (`module:Class`) and the file of the module the entry point names."""

    dist: str
    version: str
    module: str
    path: str | None
    value: str = ""

    def describe(self) -> str:
        return f"{self.dist} {self.version} ({self.value or self.module})".replace("  ", " ")


@dataclass(frozen=True)
class Broken:
    """An entry point that could not be loaded or checked: its name, its distribution (with the entry point's
    value) and the error."""

    name: str
    provider: str
    error: str


_LOADED = False  # the entry points were scanned (names known; nothing imported by the scan)
_PENDING: dict[str, EntryPoint] = {}  # scanned, not imported yet
_REGISTRY: dict[str, type[Algorithm]] = {}
_PROVIDERS: dict[str, Provider] = {}
_BROKEN: dict[str, Broken] = {}

# Algorithms of the protocol that have no implementation yet, and where they are tracked. A suite may
# name them (a dry run marks them); running them is an error until they land.
PLANNED: dict[str, str] = {}


def check_class(name: str, cls: object) -> str | None:
    """Why `cls` cannot be registered as algorithm `name`, or None when it can."""
    if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        return f"{cls!r} is not a dapbench.api.Algorithm subclass"
    config = getattr(cls, "Config", None)
    if not (isinstance(config, type) and issubclass(config, AlgoConfig)):
        got = "none" if config is None else repr(config)
        return f"{cls.__qualname__} has no `Config` that is a dapbench.api.AlgoConfig subclass (got {got})"
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        return f"{cls.__qualname__} leaves abstract methods unimplemented: {missing}"
    return None


def _dist(ep: EntryPoint) -> str:
    return f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "an unknown distribution"


def _module_file(module: str) -> str | None:
    import sys

    return getattr(sys.modules.get(module), "__file__", None)


def _provider_of(cls: type, ep: EntryPoint | None) -> Provider:
    if ep is not None:
        module = ep.module
        return Provider(ep.dist.name if ep.dist else "?", ep.dist.version if ep.dist else "?", module,
                        _module_file(module), ep.value)
    return Provider(IN_PROCESS, "", cls.__module__, getattr(inspect.getmodule(cls), "__file__", None),
                    f"{cls.__module__}:{cls.__qualname__}")


def _add(name: str, cls: type[Algorithm], provider: Provider) -> None:
    why = check_class(name, cls)
    if why:
        raise DapbenchError(why)
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise DapbenchError(f"algorithm {name!r} is registered twice: by {_PROVIDERS[name].describe()} and by "
                            f"{provider.describe()}; uninstall one of them")
    cls.name = name
    _REGISTRY[name] = cls
    _PROVIDERS[name] = provider


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


def _scan() -> None:
    """Read the entry points' names and distributions (no import); mark names two distributions claim."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    seen: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in seen and seen[ep.name].value != ep.value:
            other = seen[ep.name]
            _BROKEN[ep.name] = Broken(ep.name, f"{_dist(other)} ({other.value}) and {_dist(ep)} ({ep.value})",
                                      f"two distributions register {ep.name!r}: {_dist(other)} and {_dist(ep)}; "
                                      "uninstall one of them")
            _PENDING.pop(ep.name, None)
            _REGISTRY.pop(ep.name, None)
            continue
        if ep.name in _BROKEN or ep.name in seen:
            continue
        seen[ep.name] = ep
        if ep.name not in _REGISTRY:
            _PENDING[ep.name] = ep


def _load_one(name: str) -> None:
    """Import and check the entry point `name` (once); a failure is recorded, never raised."""
    ep = _PENDING.pop(name, None)
    if ep is None:
        return
    try:
        foreign = _check_builtin_package(ep)
        if foreign:
            raise DapbenchError(foreign)
        cls = ep.load()
        _add(name, cls, _provider_of(cls, ep))
    except Exception as e:  # a plugin's failure is its own, never the harness's
        msg = str(e) if isinstance(e, DapbenchError) else f"{type(e).__name__}: {e}"
        _BROKEN[name] = Broken(name, f"{_dist(ep)} ({ep.value})", msg)


def load(name: str) -> type[Algorithm] | None:
    """The class registered under `name`, importing only its entry point; None when it is unknown or broken."""
    _scan()
    _load_one(name)
    return _REGISTRY.get(name)


class Algorithms(Mapping[str, type[Algorithm]]):
    """The registered algorithms by name. Looking one up (`name in`, `[name]`, `.get`) imports only that entry
    point; iterating imports them all (a listing)."""

    def __getitem__(self, name: str) -> type[Algorithm]:
        cls = load(name)
        if cls is None:
            raise KeyError(name)
        return cls

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and load(name) is not None

    def _all(self) -> dict[str, type[Algorithm]]:
        _scan()
        for name in list(_PENDING):
            _load_one(name)
        return dict(sorted(_REGISTRY.items()))

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def algorithms() -> Algorithms:
    """The algorithms that load, by name (lazily: see `Algorithms`)."""
    return Algorithms()


def register(name: str, cls: type[Algorithm]) -> type[Algorithm]:
    """Register `cls` under `name` in this process (tests, notebooks); entry points are the durable way."""
    _scan()
    _load_one(name)  # an installed entry point of that name first: registering over it is a duplicate
    _BROKEN.pop(name, None)
    why = check_class(name, cls)
    if why:
        raise DapbenchError(f"algorithm {name!r} ({getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', cls)}"
                            f"): {why}")
    _add(name, cls, _provider_of(cls, None))
    return cls


def unregister(name: str) -> None:
    """Remove an in-process registration (tests)."""
    _REGISTRY.pop(name, None)
    _PROVIDERS.pop(name, None)


def broken() -> dict[str, Broken]:
    """Entry points that failed to load or to pass `check_class`, by name (importing every entry point)."""
    algorithms()._all()
    return dict(sorted(_BROKEN.items()))


def provider(name: str) -> Provider:
    """The distribution that provides algorithm `name` (for provenance)."""
    get_algorithm(name)
    return _PROVIDERS[name]


def get_algorithm(name: str, recorded: dict[str, Any] | None = None) -> type[Algorithm]:
    """The algorithm registered under `name`, or one clear error: naming the plug-in and its error when it is
    broken; for an unknown name, the distribution `recorded` (a run's provenance record of its algorithm, see
    `dapbench.results.provenance.algorithm_provenance`) says it came from."""
    cls = load(name)
    if cls is not None:
        return cls
    why = unavailable(name)
    if why is not None and name in known_names():
        raise BadInputError(f"algorithm {name!r} {why}")
    raise BadInputError(f"unknown algorithm {name!r}; registered: {', '.join(known_names())}"
                        + (f"; {describe_recorded(recorded)}" if recorded else ""))


def known_names() -> list[str]:
    """Registered, installed (not imported yet), broken and planned names: what a suite may mention (a broken
    one fails when it is used). Imports nothing."""
    _scan()
    return sorted(set(_REGISTRY) | set(_PENDING) | set(_BROKEN) | set(PLANNED))


def unavailable(name: str) -> str | None:
    """Why algorithm `name` cannot run here (importing its entry point), or None when it can."""
    if load(name) is not None:
        return None
    if name in _BROKEN:
        b = _BROKEN[name]
        return f"cannot be loaded (plug-in {b.provider}): {b.error}"
    if name in PLANNED:
        return f"is not implemented yet ({PLANNED[name]})"
    return "is not installed"


def describe_recorded(rec: dict[str, Any]) -> str:
    """A run's record of its algorithm's distribution, as a hint to reinstall it."""
    src = f", source {rec['source']}" if rec.get("source") else ""
    commit = f", commit {rec['commit'][:10]}" + (" with uncommitted changes" if rec.get("dirty") else "") \
        if rec.get("commit") else ""
    runs = f"its runs (e.g. {rec['run']})" if rec.get("run") else "its runs"
    return (f"{runs} were made with it from distribution {rec.get('distribution')} {rec.get('version') or ''}"
            f"{src}{commit}: install that distribution to use them").replace("  ", " ")


def recorded_origin(name: str, folder: Path | str) -> dict[str, Any] | None:
    """The algorithm record (distribution, version, source, ...) that run folders under `folder` keep in their
    provenance.json for algorithm `name`, or None: lets an error about an uninstalled plug-in name it."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    for path in sorted(folder.rglob("provenance.json")):
        try:
            attempts = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for a in reversed(attempts if isinstance(attempts, list) else []):
            rec = a.get("algorithm") if isinstance(a, dict) else None
            if isinstance(rec, dict) and rec.get("name") == name:
                return {**rec, "run": str(path.parent)}
    return None
