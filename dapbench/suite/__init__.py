"""Typed, validated suite and run specs.

A suite YAML file is read and strictly parsed (`yaml_source`), validated into a `Suite` (`schema`), checked as a
whole grid against the registries (`checks`), then expanded into frozen `RunSpec`s (`grid`: task x algorithm x
seed, overrides applied, algorithm config resolved with its defaults). Every problem is reported in one
`SuiteError` that names the file, the field (with its YAML line) and what is allowed (`problems`).
"""

from dapbench.suite.grid import expand, filter_specs, results_folder, slurm_resources, unavailable_reason
from dapbench.suite.problems import SUITE_DOCS, one_line_errors
from dapbench.suite.schema import (
    LATE_FIELDS,
    MAX_RUNS,
    MAX_SEEDS,
    MIN_TIME_MIN,
    RESERVED_SBATCH,
    SEED_MAX,
    VIEW_FIELDS,
    AlgorithmEntry,
    Budget,
    DatasetEntry,
    DatasetId,
    EvalConfig,
    LauncherConfig,
    Override,
    PathText,
    RunSpec,
    SafeName,
    Seed,
    SlurmResources,
    Strict,
    Suite,
)
from dapbench.suite.yaml_source import MAX_SUITE_BYTES, MAX_VALUES, load_suite

__all__ = [
    "LATE_FIELDS", "MAX_RUNS", "MAX_SEEDS", "MAX_SUITE_BYTES", "MAX_VALUES", "MIN_TIME_MIN", "RESERVED_SBATCH",
    "SEED_MAX", "SUITE_DOCS", "VIEW_FIELDS", "AlgorithmEntry", "Budget", "DatasetEntry", "DatasetId", "EvalConfig",
    "LauncherConfig", "Override", "PathText", "RunSpec", "SafeName", "Seed", "SlurmResources", "Strict", "Suite",
    "expand", "filter_specs", "load_suite", "one_line_errors", "results_folder", "slurm_resources",
    "unavailable_reason",
]
