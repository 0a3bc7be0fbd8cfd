"""Atomic file writes, and the safe reading of the binary files dapbench writes.

A write goes to a temporary file in the same folder (created with the usual permissions, 0666 less the umask,
as `open` would: a run folder on a shared cluster is readable by collaborators), is fsynced, then renamed over
the target. `load_torch` reads checkpoints, policy snapshots and priors as data only: they may come from someone
else (a shared run folder or prior cache, a repository), and a pickle can run code.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from dapbench.errors import RunFolderError


def _temp_file(path: Path) -> tuple[int, Path]:
    """A new temporary file beside `path`, opened for writing; mode 0666 less the umask (mkstemp's is 0600)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temporary file name for {path.name}")


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(f)` on a temporary file and atomically replace `path` with it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


# ----- safe loading --------------------------------------------------------------------------------------------
def _numpy_globals() -> list:
    """What NumPy arrays, dtypes and scalars pickle as (RNG states, normaliser statistics, rollout buffers), under
    NumPy 2's module names and NumPy 1's, so files written under either load."""
    import numpy as np

    core = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    mod = getattr(np, "dtypes", None)
    dtypes = [getattr(mod, n) for n in getattr(mod, "__all__", ())]  # a dtype's state is built on its class
    return [core._reconstruct, core.scalar, np.ndarray, np.dtype, *[d for d in dtypes if isinstance(d, type)],
            (core._reconstruct, "numpy.core.multiarray._reconstruct"), (core.scalar, "numpy.core.multiarray.scalar"),
            (core._reconstruct, "numpy._core.multiarray._reconstruct"), (core.scalar, "numpy._core.multiarray.scalar")]


_GLOBAL = re.compile(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)")


def load_torch(path: Path, what: str, remedy: str) -> Any:
    """The object `torch.save` wrote to `path`, loaded as data only: tensors, containers, numbers, strings and NumPy
    arrays; a file that would import anything else (and so could run code) is refused with a `RunFolderError`
    naming the file, `what` it should be, and the `remedy`; so is a damaged file ("corrupt `what`")."""
    import pickle

    import torch

    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = _GLOBAL.search(str(e))
        detail = str(e).partition("WeightsUnpickler error:")[2].strip().split("\n")[0]
        if found is None and not detail:
            raise
        it = f"it would import {found.group(1)}" if found else f"it is not plain data ({detail})"
        raise RunFolderError(f"{path}: refused to load: {it}, which a {what} never holds; loading it could run "
                             f"code, so it is not loaded ({remedy})") from None
    except Exception as e:
        raise RunFolderError(f"{path}: corrupt {what} ({type(e).__name__}: {' '.join(str(e).split())[:300]}); "
                             f"{remedy}") from None
