"""Benchmark 1: a large ONNX artifact submitted through the API, against MLflow's registration.

Assay: the real server on a fresh installation; the artifact is streamed from disk over HTTP;
the server's RSS is sampled every 20 ms from just before the request to just after the response.
The intake child process (ONNX parsing and `onnx.checker` full check, run apart from the server
by design) is sampled separately. One small submission first warms the server up (lazy imports,
first database connections), so the growth measured is the large artifact's.

MLflow: `mlflow.log_artifact` + `mlflow.register_model` of the same file, in its own process on
a local SQLite store, sampled the same way after its own warm-up.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from benchmarks._common import MIB, BenchmarkError, RssSampler, median, progress, ratio
from benchmarks.assay_server import AssayServer, intake_alone, provision_vendor_model, submit
from benchmarks.mlflow_worker import MlflowWorker
from benchmarks.models import binary_manifest, build_linear_onnx, large_artifact

NAME = "large-artifact"
TARGET_GROWTH_MIB = 64
MODEL_NAME = "bench-large"


def _floors(artifact: Path, workdir: Path) -> dict[str, float]:
    """Seconds for two parts of Assay's work done bare: SHA-256 of the file; copy plus fsync."""
    import hashlib
    import os

    started = time.perf_counter()
    digest = hashlib.sha256()
    with artifact.open("rb") as file:
        while chunk := file.read(1024 * 1024):
            digest.update(chunk)
    sha256_s = time.perf_counter() - started
    copy = workdir / "floor-copy.bin"
    started = time.perf_counter()
    shutil.copyfile(artifact, copy)
    with copy.open("rb+") as file:
        os.fsync(file.fileno())
    copy_fsync_s = time.perf_counter() - started
    copy.unlink()
    return {"sha256_s": sha256_s, "copy_fsync_s": copy_fsync_s}


def _assay_once(
    workdir: Path, artifact: Path, warmup: Path, repeat: int
) -> tuple[dict[str, Any], str]:
    home = workdir / f"assay-home-{repeat}"
    with AssayServer(home) as server, server.client() as client:
        token, model_id = provision_vendor_model(client, server.admin_token, model_name=MODEL_NAME)
        submit(client, token, model_id, warmup, binary_manifest(MODEL_NAME, "warm-up"))
        manifest = binary_manifest(MODEL_NAME, f"large-{repeat}")
        progress(f"Assay: submitting {artifact.stat().st_size / 1e6:.0f} MB (repeat {repeat + 1})")
        with RssSampler(server.pid) as trace:
            wall_s, version = submit(client, token, model_id, artifact, manifest)
        stored = home / "artifacts" / "sha256" / version["digest"][7:9] / version["digest"][7:]
        if not stored.is_file() or stored.stat().st_size != artifact.stat().st_size:
            raise BenchmarkError(f"the server answered 201 but {stored} is not the artifact")
        command = server.command_display
    shutil.rmtree(home, ignore_errors=True)
    result = {"wall_s": wall_s, "digest": version["digest"], **trace.summary()}
    progress(
        f"Assay: {wall_s:.2f} s, server peak growth {trace.peak_growth / MIB:.1f} MiB, "
        f"intake child peak {trace.peak_children_rss / MIB:.0f} MiB"
    )
    return result, command


def _mlflow_once(worker: MlflowWorker, artifact: Path, repeat: int) -> dict[str, Any]:
    progress(f"MLflow: log_artifact + register_model (repeat {repeat + 1})")
    with RssSampler(worker.pid) as trace:
        wall_s, reply = worker.register(artifact, "bench-large")
    progress(f"MLflow: {wall_s:.2f} s, process peak growth {trace.peak_growth / MIB:.1f} MiB")
    return {"wall_s": wall_s, "worker_wall_s": reply["wall_s"], **trace.summary()}


def run(*, workdir: Path, size_bytes: int, repeats: int) -> dict[str, Any]:
    """Measures both sides `repeats` times, alternating; gives medians, peaks and ratios."""
    artifact = large_artifact(workdir / "models", target_bytes=size_bytes)
    warmup = build_linear_onnx(workdir / "models" / "warmup.onnx", target_bytes=64 * 1024)
    manifest = binary_manifest(MODEL_NAME, "intake-only")
    assay_runs: list[dict[str, Any]] = []
    mlflow_runs: list[dict[str, Any]] = []
    server_command = ""
    with MlflowWorker(workdir / "mlflow-large") as worker:
        for repeat in range(repeats):
            result, server_command = _assay_once(workdir, artifact, warmup, repeat)
            assay_runs.append(result)
            mlflow_runs.append(_mlflow_once(worker, artifact, repeat))
    progress("Assay: timing the intake child alone (for the breakdown)")
    intake_s = intake_alone(artifact, manifest)
    progress("timing SHA-256 and copy + fsync of the file alone (for the breakdown)")
    floors = _floors(artifact, workdir)

    assay_wall = median([r["wall_s"] for r in assay_runs])
    mlflow_wall = median([r["wall_s"] for r in mlflow_runs])
    assay_growth = max(r["peak_growth_mib"] for r in assay_runs)
    mlflow_growth = max(r["peak_growth_mib"] for r in mlflow_runs)
    return {
        "artifact_bytes": artifact.stat().st_size,
        "repeats": repeats,
        "server_command": server_command,
        "target_server_growth_mib": TARGET_GROWTH_MIB,
        "target_met": assay_growth < TARGET_GROWTH_MIB,
        "assay": {
            "wall_s_median": assay_wall,
            "server_peak_growth_mib_max": assay_growth,
            "intake_child_peak_rss_mib_max": max(r["children_peak_rss_mib"] for r in assay_runs),
            "intake_alone_s": intake_s,
            "sha256_alone_s": floors["sha256_s"],
            "copy_fsync_alone_s": floors["copy_fsync_s"],
            "runs": assay_runs,
        },
        "mlflow": {
            "wall_s_median": mlflow_wall,
            "process_peak_growth_mib_max": mlflow_growth,
            "runs": mlflow_runs,
        },
        "ratios": {
            "time_assay_over_mlflow": ratio(assay_wall, mlflow_wall),
            "memory_assay_over_mlflow": ratio(assay_growth, mlflow_growth),
        },
    }
