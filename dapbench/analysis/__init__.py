"""Analysis of a results folder: the tidy loader, per-run metrics, normalised scores and rliable aggregates.

Data flow: run folders -> `load.load_results` (one row per run x epoch) -> `metrics.per_run` (one row per
run) -> `normalise` -> `aggregate` (stratified-bootstrap aggregates over runs) -> the report.
"""
