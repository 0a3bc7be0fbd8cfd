"""What Slurm says: whether a cluster answers here, the states of jobs, and cancelling them.

Job ids are Slurm's: `123` for a single job, `123_4` for task 4 of array 123. States come from `squeue`
(which lists finished jobs for the cluster's MinJobAge), then from `sacct` for the jobs squeue has
forgotten (where the cluster keeps accounting).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dapbench.errors import BadInputError, DapbenchError

# Slurm job states (squeue's %T) of a job that is not over, split by what it is doing.
QUEUED = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT"})
RUNNING = frozenset({"CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT"})
# ends in which the job itself went wrong (a run that did not record its own failure failed this way)
FAILED = frozenset({"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED"})
# queued states in which Slurm waits for a person (`scontrol release`), whatever the reason says
HELD = frozenset({"REQUEUE_HOLD", "SPECIAL_EXIT", "RESV_DEL_HOLD"})
TIMEOUT_S = 60  # for squeue, sacct, scancel, sbatch
PING_TIMEOUT_S = 20
DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's default MaxArraySize (the largest array index + 1)


class SlurmError(DapbenchError):
    """Slurm did not answer or refused a request."""


class SlurmUnavailable(BadInputError):
    """No Slurm cluster answers on this machine."""


@dataclass(frozen=True)
class JobState:
    state: str  # Slurm's name: PENDING, RUNNING, COMPLETED, CANCELLED, FAILED, ...
    reason: str = ""  # why a queued job waits (squeue's %r), e.g. Dependency, Priority, JobHeldUser

    @property
    def active(self) -> bool:
        return self.state in QUEUED or self.state in RUNNING

    @property
    def queued(self) -> bool:
        return self.state in QUEUED

    @property
    def held(self) -> bool:
        """Queued but held: Slurm will not start it until someone releases it (`scontrol release ID`). A
        user or admin hold, `scontrol requeuehold`, and a job requeued after its launch failed (a node
        failure: reason "launch failed requeued held")."""
        return self.queued and (self.state in HELD or "held" in self.reason.lower())

    def __str__(self) -> str:
        return f"{self.state} ({self.reason})" if self.queued and self.reason not in ("", "None") else self.state


def unavailable() -> str | None:
    """Why no Slurm cluster can take jobs from here, or None when one answers (fast: `scontrol ping` gets
    one answer from the controller, where squeue would retry for ~20 s)."""
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        return "sbatch not found"
    conf = os.environ.get("SLURM_CONF")
    if conf and not Path(conf).is_file():  # scontrol would retry for a minute
        return f"SLURM_CONF={conf} does not exist"
    try:
        out = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=PING_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"scontrol ping failed: {e}"
    if out.returncode != 0 or " is UP" not in out.stdout:
        # `Slurmctld(primary) at HOST is DOWN`, then a banner of asterisks: keep the sentence, drop the banner
        lines = [ln.strip() for ln in (out.stdout + out.stderr).splitlines() if ln.strip().strip("*").strip()
                 and "RESTORE SLURMCTLD" not in ln]
        where = f"SLURM_CONF={conf}" if conf else "the default slurm.conf"
        said = "; ".join(lines) if lines else f"scontrol ping exited {out.returncode}"
        return f"no Slurm controller answers: {said} (`scontrol ping`, {where})"
    return None


def require() -> None:
    why = unavailable()
    if why:
        raise SlurmUnavailable(f"no Slurm cluster here ({why})")


@functools.cache
def max_array_size() -> int | None:
    """The cluster's MaxArraySize (an array's largest index + 1), or None when Slurm does not say."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=PING_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"^MaxArraySize\s*=\s*(\d+)", out.stdout, re.MULTILINE)
    return int(m.group(1)) if out.returncode == 0 and m else None


def _call(cmd: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SlurmError(f"`{' '.join(cmd)}` failed: {e}") from None


def _parse(lines: str) -> dict[str, JobState]:
    out = {}
    for line in lines.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or parts[0] in ("", "JobID") or "." in parts[0]:  # headers and job steps
            continue
        out[parts[0]] = JobState(parts[1].split()[0], parts[2] if len(parts) > 2 else "")  # "CANCELLED by 0"
    return out


def job_states(job_ids: Iterable[str]) -> dict[str, JobState]:
    """The states of `job_ids` that Slurm still knows. Raises `SlurmError` when squeue fails, so a caller
    never mistakes a silent scheduler for jobs that are over."""
    ids = sorted(set(job_ids))
    if not ids:
        return {}
    mains = sorted({i.split("_")[0] for i in ids})
    sq = _call(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(mains), "-o", "%i|%T|%r"])
    if sq.returncode != 0 and "Invalid job id" not in sq.stderr:  # every id forgotten: not an error
        raise SlurmError(f"squeue failed: {sq.stderr.strip() or sq.stdout.strip()}")
    found = _parse(sq.stdout) if sq.returncode == 0 else {}
    for i in ids:  # tasks of an array that ended before Slurm split it (e.g. cancelled while pending) are listed
        main = i.split("_")[0]  # as the array itself
        if i not in found and main in found:
            found[i] = found[main]
    missing = [i for i in ids if i not in found]
    if missing and shutil.which("sacct"):
        acct = _call(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(missing)])
        if acct.returncode == 0:  # no accounting on this cluster: those jobs are simply unknown
            found.update({k: v for k, v in _parse(acct.stdout).items() if k not in found})
    return {i: found[i] for i in ids if i in found}


def cancel(job_ids: Iterable[str]) -> None:
    ids = sorted(set(job_ids))
    if ids:
        out = _call(["scancel", *ids])
        if out.returncode != 0:
            raise SlurmError(f"scancel {' '.join(ids)} failed: {out.stderr.strip()}")
