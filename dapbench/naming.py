"""Names dapbench gives to things, each written once: dataset ids, and the `data make` command that makes one;
and the rules for names that become paths.

A dapbench dataset id is `dapbench/<task>/<quality>[-s<seed>][-n<steps>][-b<behaviour steps>]-v0`, each part
only when it is not the default, so datasets made differently never share an id; `make_command` is its
inverse (the command that makes the dataset an id names).

A name that becomes one path component (a suite name, an algorithm label, a task in a run spec) is checked by
`name_problem`, a dataset id (a folder under Minari's datasets folder) by `dataset_id_problem`: nothing a suite
says can make a path that leaves the folder it belongs in.
"""

from __future__ import annotations

import re

DEFAULT_STEPS = 200_000
_FLAGS = {"s": "--seed", "n": "--steps", "b": "--behaviour-steps"}


def dataset_id(task: str, quality: str, seed: int = 0, steps: int = DEFAULT_STEPS,
               behaviour_steps: int | None = None) -> str:
    name = quality
    if seed:
        name += f"-s{seed}"
    if steps != DEFAULT_STEPS and quality != "replay":
        name += f"-n{steps}"
    if behaviour_steps is not None and quality != "random":
        name += f"-b{behaviour_steps}"
    return f"dapbench/{task}/{name}-v0"


def make_command(task: str, quality: str, seed: int = 0, steps: int = DEFAULT_STEPS,
                 behaviour_steps: int | None = None) -> str:
    """`python -m dapbench data make ...` for these parameters (every one spelled out)."""
    return (f"python -m dapbench data make {task} --quality {quality} --seed {seed} --steps {steps}"
            + (f" --behaviour-steps {behaviour_steps}" if behaviour_steps else ""))


def make_command_for(ds_id: str) -> str | None:
    """The `data make` command for a dapbench dataset id, or None for an id dapbench does not make."""
    parts = ds_id.split("/")
    if len(parts) != 3 or parts[0] != "dapbench":
        return None
    task, name = parts[1], parts[2].split("-")[:-1]  # drop the version
    cmd = f"python -m dapbench data make {task} --quality {name[0]}"
    for p in name[1:]:
        if p[:1] in _FLAGS and p[1:].isdigit():
            cmd += f" {_FLAGS[p[:1]]} {p[1:]}"
    return cmd


# ----- names that become paths -------------------------------------------------------------------------------
NAME_MAX = 64
NAME_RULE = (f"a name is one path component: ASCII letters, digits, '.', '_', '+', '-', starting with a letter or "
             f"digit, at most {NAME_MAX} characters")
DATASET_ID_RULE = ("a dataset id is a Minari id, NAMESPACE/NAME-vN (e.g. dapbench/hopper/medium-v0 or "
                   "mujoco/hopper/medium-v0), each part a name: ASCII letters, digits, '.', '_', '+', '-', starting "
                   "with a letter or digit")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_VERSION = re.compile(r".+-v[0-9]+")


def name_problem(value: object) -> str | None:
    """Why `value` cannot be a name dapbench turns into one path component (a suite name, an algorithm label, a
    task), or None when it can. Nothing a name says can leave its parent folder: no '/', no '..', no leading '.',
    no control characters."""
    if not isinstance(value, str):
        return f"{value!r} is not a string; {NAME_RULE}"
    if not value:
        return f"the name is empty; {NAME_RULE}"
    if len(value) > NAME_MAX:
        return f"{value[:20]!r}... has {len(value)} characters; {NAME_RULE}"
    if not _NAME.fullmatch(value):
        bad = next((c for c in value if not (c.isascii() and (c.isalnum() or c in "._+-"))), None)
        why = (f"contains {bad!r}" + (" (a path separator)" if bad in "/\\" else "") if bad is not None
               else f"starts with {value[0]!r}")
        return f"{value!r} {why}; {NAME_RULE}"
    return None


def dataset_id_problem(value: object) -> str | None:
    """Why `value` is not a dataset id dapbench will look up (a Minari id whose parts are all names), or None."""
    if not isinstance(value, str):
        return f"{value!r} is not a string; {DATASET_ID_RULE}"
    parts = value.split("/")
    if len(parts) < 2 or not all(_NAME.fullmatch(p) and len(p) <= NAME_MAX for p in parts) \
            or not _VERSION.fullmatch(parts[-1]):
        return f"{value!r} is not a dataset id; {DATASET_ID_RULE}"
    return None
