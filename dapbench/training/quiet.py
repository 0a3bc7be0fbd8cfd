"""A quiet console: warnings from third-party code go to a log file, not the terminal.

Inside `third_party_to(write)`, a Python warning raised from installed packages (site-packages: Minari's
`code_permalink`/`author_email`/`eval_env` advice, Gymnasium's deprecations) and MuJoCo's own C-level warnings
(`settotalmass` is deprecated, printed by MuJoCo's default handler, which also writes MUJOCO_LOG.TXT into the working
directory) are passed to `write` (a run's log) instead. Warnings from dapbench, the algorithms and the user's own
code still reach the console.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

THIRD_PARTY = ("site-packages", "dist-packages")


def _third_party(filename: str) -> bool:
    return any(part in filename for part in THIRD_PARTY) or filename.startswith("<frozen")


@contextmanager
def third_party_to(write: Callable[[str], None]) -> Iterator[None]:
    """Route third-party warnings to `write(text)` for the duration of the block (see the module docstring)."""
    import mujoco

    with warnings.catch_warnings():
        previous = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None) -> None:
            if _third_party(str(filename)):
                write(f"{category.__name__}: {message} ({filename}:{lineno})")
            else:
                previous(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        mj_previous = mujoco.get_mju_user_warning()
        mujoco.set_mju_user_warning(lambda text: write(f"MuJoCo warning: {text.strip()}"))
        try:
            yield
        finally:
            mujoco.set_mju_user_warning(mj_previous)
