"""Tests of `assay submit`, `versions`, `version show`, `manifest-schema`, `example-model`
(registry/cli/versions.py)."""

from __future__ import annotations

import json
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.registry.cli.conftest import (
    DIGEST,
    MODEL_ID,
    VERSION,
    VERSION_ID,
    FakeServer,
    invoke,
    page,
)


def test_submit_uploads_and_prints_the_intake_summary(
    server: FakeServer, submission: tuple[Path, Path]
) -> None:
    artifact, manifest = submission
    server.answer("POST", f"/models/{MODEL_ID}/versions", 201, VERSION)
    result = invoke(
        "submit", MODEL_ID, "--artifact", str(artifact), "--manifest", str(manifest),
        "--idempotency-key", "retry-1", "--token", "t",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    request = server.requests[0]
    assert request.headers["Idempotency-Key"] == "retry-1"
    assert b'name="manifest"' in request.content and b'name="artifact"' in request.content
    for value in ("version 2", "1.1.0", DIGEST, "submitted", "onnx", "1,234,567", "Conv x12"):
        assert value in result.stdout


def test_submit_json(server: FakeServer, submission: tuple[Path, Path]) -> None:
    artifact, manifest = submission
    server.answer("POST", f"/models/{MODEL_ID}/versions", 201, VERSION)
    result = invoke(
        "submit", MODEL_ID, "--artifact", str(artifact), "--manifest", str(manifest),
        "--json", "--token", "t",
    )  # fmt: skip
    assert result.exit_code == 0
    assert json.loads(result.stdout)["digest"] == DIGEST


def test_submit_refuses_a_manifest_that_is_not_json_before_uploading(
    server: FakeServer, submission: tuple[Path, Path]
) -> None:
    artifact, manifest = submission
    manifest.write_text("{not json")
    result = invoke("submit", MODEL_ID, "--artifact", str(artifact), "--manifest", str(manifest))
    assert result.exit_code == 1
    assert "not valid JSON" in result.stderr
    assert server.requests == []


def test_submit_with_a_missing_artifact_is_a_usage_error(
    server: FakeServer, submission: tuple[Path, Path], tmp_path: Path
) -> None:
    _, manifest = submission
    missing = tmp_path / "missing.onnx"
    result = invoke("submit", MODEL_ID, "--artifact", str(missing), "--manifest", str(manifest))
    assert result.exit_code == 2
    assert server.requests == []


def test_submit_refused_format_exits_1(server: FakeServer, submission: tuple[Path, Path]) -> None:
    artifact, manifest = submission
    body = {
        "error": "refused_format",
        "detail": "Pickle files are refused; submit ONNX or safetensors.",
        "problems": [{"path": "artifact", "message": "pickle"}],
    }
    server.answer("POST", f"/models/{MODEL_ID}/versions", 422, body)
    result = invoke("submit", MODEL_ID, "--artifact", str(artifact), "--manifest", str(manifest))
    assert result.exit_code == 1
    assert "submit ONNX or safetensors" in result.stderr and "artifact: pickle" in result.stderr


def test_versions_lists_a_models_versions(server: FakeServer) -> None:
    server.answer("GET", f"/models/{MODEL_ID}/versions", 200, page(VERSION))
    result = invoke("versions", MODEL_ID, "--token", "t")
    assert result.exit_code == 0
    for value in (VERSION_ID, "1.1.0", "submitted", "sha256:0123456789ab"):
        assert value in result.stdout


def test_version_show(server: FakeServer) -> None:
    server.answer("GET", f"/versions/{VERSION_ID}", 200, VERSION)
    result = invoke("version", "show", VERSION_ID, "--token", "t")
    assert result.exit_code == 0
    assert DIGEST in result.stdout and "2.5 MB" in result.stdout


def test_manifest_schema_prints_json(server: FakeServer) -> None:
    schema = {"title": "Manifest", "type": "object"}
    server.answer("GET", "/schemas/manifest", 200, schema)
    result = invoke("manifest-schema")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == schema


def test_example_model_prints_the_paths_and_the_next_command(
    server_modules: Callable[..., types.ModuleType], tmp_path: Path
) -> None:
    calls: list[tuple[Path, int]] = []

    def write_example_model(out: Path, *, variant: int) -> tuple[Path, Path]:
        calls.append((out, variant))
        return out / "model.onnx", out / "manifest.json"

    server_modules("validators.runtime.example", write_example_model=write_example_model)
    result = invoke("example-model", "--out", str(tmp_path), "--variant", "2")
    assert result.exit_code == 0, result.output
    assert calls == [(tmp_path, 2)]
    model, manifest = tmp_path / "model.onnx", tmp_path / "manifest.json"
    assert f"--artifact {model} --manifest {manifest}" in result.stdout
    as_json = invoke("example-model", "--out", str(tmp_path), "--json")
    assert json.loads(as_json.stdout) == {"artifact": str(model), "manifest": str(manifest)}


def test_example_model_reference_writes_the_chosen_models_with_progress(
    server_modules: Callable[..., types.ModuleType], tmp_path: Path
) -> None:
    calls: list[dict[str, object]] = []

    def write_reference_models(out: Path, **options: Any) -> list[tuple[Path, Path]]:
        calls.append({"out": out, **options, "names": tuple(options["names"])})
        options["progress"]("training good")
        return [(out / "good" / "model.onnx", out / "good" / "manifest.onnx.json")]

    server_modules(
        "validators.runtime.reference_models",
        REFERENCE_NAMES=("good", "biased", "slow"),
        write_reference_models=write_reference_models,
    )
    result = invoke(
        "example-model", "--out", str(tmp_path), "--reference", "good", "--format", "onnx",
        "--seed", "3", "--cache-dir", str(tmp_path / "cache"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (call,) = calls
    assert call["names"] == ("good",) and call["formats"] == ("onnx",)
    assert (call["seed"], call["cache_root"]) == (3, tmp_path / "cache")
    assert "training good" in result.stderr
    model = tmp_path / "good" / "model.onnx"
    assert f"--artifact {model} --manifest {tmp_path / 'good' / 'manifest.onnx.json'}" in (
        result.stdout
    )
    as_json = invoke("example-model", "--out", str(tmp_path), "--reference", "all", "--json")
    assert calls[1]["names"] == ("good", "biased", "slow")
    assert calls[1]["formats"] == ("onnx", "safetensors")
    assert json.loads(as_json.stdout)[0]["artifact"] == str(model)


def test_example_model_refuses_an_unknown_reference(tmp_path: Path) -> None:
    result = invoke("example-model", "--out", str(tmp_path), "--reference", "best")
    assert result.exit_code == 2
    assert "best" in result.output
