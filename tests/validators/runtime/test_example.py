"""Tests of the synthetic example model exported from PyTorch."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from validators.manifest import parse_manifest
from validators.runtime.example import write_example_model
from validators.runtime.intake import inspect_artifact

pytest.importorskip("torch")
pytest.importorskip("onnx")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_example_passes_manifest_and_intake(tmp_path: Path) -> None:
    model_path, manifest_path = write_example_model(tmp_path)
    assert (model_path.name, manifest_path.name) == ("model.onnx", "manifest.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "model.onnx"]
    manifest = parse_manifest(manifest_path.read_bytes())
    assert manifest.card.intended_use is not None
    assert "not for clinical use" in manifest.card.intended_use
    report = inspect_artifact(model_path, manifest)
    assert report.inputs[0].shape == ["N", 1, 64, 64]
    assert report.outputs[0].shape == ["N", 1]
    assert report.opset == {"ai.onnx": 17}
    assert report.parameter_count > 0


def test_example_runs_in_onnxruntime_with_a_dynamic_batch(tmp_path: Path) -> None:
    numpy = pytest.importorskip("numpy")
    onnxruntime = pytest.importorskip("onnxruntime")
    model_path, _ = write_example_model(tmp_path)
    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        images = numpy.zeros((batch, 1, 64, 64), dtype=numpy.float32)
        (scores,) = session.run(None, {"image": images})
        assert scores.shape == (batch, 1)


def test_same_variant_gives_same_bytes_and_variants_differ(tmp_path: Path) -> None:
    first, _ = write_example_model(tmp_path / "a")
    again, _ = write_example_model(tmp_path / "b")
    other, other_manifest = write_example_model(tmp_path / "c", variant=1)
    assert digest(first) == digest(again)
    assert digest(first) != digest(other)
    assert parse_manifest(other_manifest.read_bytes()).version_label == "demo-1"
