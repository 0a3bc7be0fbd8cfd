"""Names dapbench gives to things, each written once: dataset ids, and the `data make` command that makes one.

A dapbench dataset id is `dapbench/<task>/<quality>[-s<seed>][-n<steps>][-b<behaviour steps>]-v0`, each part
only when it is not the default, so datasets made differently never share an id; `make_command` is its
inverse (the command that makes the dataset an id names).
"""

from __future__ import annotations

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
