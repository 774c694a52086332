"""Inputs of the evaluation pipeline's tests: a small DICOM phantom dataset, models, policies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.validators.runtime.models import FULL_SANDBOX, manifest, onnx_model
from validators.data.phantoms import write_phantom_dataset
from validators.manifest import ModelManifest, parse_manifest
from validators.runtime.pipeline import ModelFiles, PipelineSettings
from validators.runtime.runner import RunnerSettings

CASES = 60
IMAGE_SIZE = 64


def phantom_dataset(root: Path) -> Path:
    """Return the root of a 60-case DICOM phantom dataset at 64 px (acquisition tags included)."""
    return write_phantom_dataset(root, format="dicom", cases=CASES, size=IMAGE_SIZE, seed=5)


def dicom_manifest(**overrides: Any) -> ModelManifest:
    """Return the tiny test model's manifest, windowing each DICOM file with its own window."""
    document = manifest().model_dump(mode="json", exclude_none=True)
    document["input"]["intensity"] = {"kind": "dicom_window"}
    return parse_manifest({**document, **overrides})


def model_files(directory: Path, *, variant: str = "good", weight: float = 3.0) -> ModelFiles:
    """Return a tiny ONNX model (logit = weight * mean(image) - 1.5) and its manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    path = onnx_model(directory / f"{variant}-{weight:g}.onnx", variant=variant, weight=weight)
    return ModelFiles(path, dicom_manifest())


def write_manifest(model: ModelManifest, path: Path) -> Path:
    """Return `path` after writing the manifest into it as JSON."""
    path.write_text(model.model_dump_json(exclude_none=True), encoding="utf-8")
    return path


def policy_document(*, auroc_min: float = 0.0, **overrides: Any) -> dict[str, Any]:
    """Return a small policy: a required AUROC criterion, a speed criterion, a quick protocol."""
    document: dict[str, Any] = {
        "name": "pipeline-test",
        "version": "1",
        "task": "binary",
        "ci": {"replicates": 100, "seed": 3},
        "subgroups": {"attributes": ["sex", "manufacturer"], "metrics": ["auroc"]},
        "speed": {
            "warmup_iterations": 1,
            "min_iterations": 3,
            "min_time_s": 0.0,
            "batch_sizes": [1, 4],
            "decode_sample": 4,
        },
        "criteria": [
            {
                "id": "auroc",
                "description": f"AUROC at least {auroc_min}.",
                "kind": "metric",
                "metric": "auroc",
                "op": ">=",
                "value": auroc_min,
            },
            {
                "id": "latency",
                "description": "p95 latency at batch 1 under 10 s.",
                "kind": "speed",
                "metric": "latency_p95_ms",
                "batch_size": 1,
                "max": 10_000,
            },
        ],
    }
    return {**document, **overrides}


def write_policy(path: Path, **options: Any) -> Path:
    """Return `path` after writing `policy_document(**options)` into it as JSON."""
    path.write_text(json.dumps(policy_document(**options)), encoding="utf-8")
    return path


def pipeline_settings(cache_dir: Path) -> PipelineSettings:
    """Return quick settings: one thread, batches of 8, one decoding worker."""
    runner = RunnerSettings(
        batch_size=8,
        intra_op_threads=1,
        batch_timeout_s=60.0,
        load_timeout_s=60.0,
        allow_weaker_isolation=not FULL_SANDBOX,
    )
    return PipelineSettings(cache_dir=cache_dir, runner=runner, decode_workers=1)
