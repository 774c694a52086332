"""Reproducible speed and memory comparisons against the tools a user would otherwise pick.

Run them with `make bench` (or `.venv/bin/python -m benchmarks`); `--quick` runs smaller sizes
as a smoke test and `--only NAME` runs one benchmark. Every figure is measured beside its
reference (MLflow for submissions, `mlflow --help` for start-up) in the same run, on the same
machine, and reported as a ratio; the results go to `docs/benchmarks.md` and
`docs/benchmarks.json`.

The Assay side always talks to the real server, started as its own process on a fresh
installation, so that its memory can be watched from outside; the MLflow side runs in its own
process for the same reason.
"""
