"""Benchmark 2: p50/p99 latency of submitting a small model, against MLflow's registration.

Assay: the real server; each variant of the example model (same model, different digest) is
submitted over HTTP, one after the other, timed from the client (upload, hashing, intake child,
storage, version row and audit event). One extra submission first warms the server up.

MLflow: the same files, the same number of times, through `mlflow.log_artifact` +
`mlflow.register_model` in a new run each, in its own process on a local SQLite store, after
its own warm-up.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from benchmarks._common import median, percentile, progress, ratio
from benchmarks.assay_server import AssayServer, intake_alone, provision_vendor_model, submit
from benchmarks.mlflow_worker import MlflowWorker
from benchmarks.models import small_variants

NAME = "submission-latency"
MODEL_NAME = "bench-small"


def _stats(walls: list[float]) -> dict[str, Any]:
    return {
        "p50_s": median(walls),
        "p99_s": percentile(walls, 99.0),
        "min_s": min(walls),
        "max_s": max(walls),
        "walls_s": [round(w, 5) for w in walls],
    }


def run(*, workdir: Path, count: int) -> dict[str, Any]:
    """Submits `count` variants to each side, sequentially; gives percentiles and ratios."""
    variants, method = small_variants(workdir / "small", count=count + 1, model_name=MODEL_NAME)
    progress(f"{len(variants)} small variants ready: {method}")
    warmup, measured = variants[0], variants[1:]
    sizes = sorted({path.stat().st_size for path, _ in measured})

    home = workdir / "assay-home-small"
    assay_walls: list[float] = []
    with AssayServer(home) as server, server.client() as client:
        token, model_id = provision_vendor_model(client, server.admin_token, model_name=MODEL_NAME)
        submit(client, token, model_id, *warmup)
        for index, (artifact, manifest) in enumerate(measured, start=1):
            wall_s, _ = submit(client, token, model_id, artifact, manifest)
            assay_walls.append(wall_s)
            if index % 10 == 0 or index == len(measured):
                progress(f"Assay: {index}/{len(measured)} submitted, last {wall_s * 1000:.0f} ms")
        server_command = server.command_display
    shutil.rmtree(home, ignore_errors=True)

    progress("Assay: timing the intake child alone on the small model (for the breakdown)")
    intake_walls = [intake_alone(*measured[0]) for _ in range(5)]

    mlflow_walls: list[float] = []
    with MlflowWorker(workdir / "mlflow-small") as worker:
        for index, (artifact, _) in enumerate(measured, start=1):
            wall_s, _ = worker.register(artifact, MODEL_NAME)
            mlflow_walls.append(wall_s)
            if index % 10 == 0 or index == len(measured):
                progress(f"MLflow: {index}/{len(measured)} registered, last {wall_s * 1000:.0f} ms")

    assay, mlflow = _stats(assay_walls), _stats(mlflow_walls)
    return {
        "count": len(measured),
        "artifact_bytes": sizes,
        "variants": method,
        "server_command": server_command,
        "assay": {**assay, "intake_alone_s_median": median(intake_walls)},
        "mlflow": mlflow,
        "ratios": {
            "p50_assay_over_mlflow": ratio(assay["p50_s"], mlflow["p50_s"]),
            "p99_assay_over_mlflow": ratio(assay["p99_s"], mlflow["p99_s"]),
        },
    }
