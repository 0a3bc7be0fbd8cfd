"""Errors the CLI turns into one clear message and an exit code."""


class DapbenchError(Exception):
    """Base error: its message is shown to the user as is."""

    exit_code = 1


class BadInputError(DapbenchError):
    """Bad input (a suite, a run folder, a command-line value): exit code 2, nothing started."""

    exit_code = 2


class SuiteError(BadInputError):
    """A suite file that does not validate."""


class RunFolderError(BadInputError):
    """A run folder that is corrupt or holds a different spec."""


class TrainingError(DapbenchError):
    """Training went wrong (non-finite loss, diverged), reported as a failed run."""
