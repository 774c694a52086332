"""Tests of intake in a resource-limited child process, and of the module's import weight."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from validators.manifest import ModelManifest, parse_manifest
from validators.runtime.formats import IntakeRefused
from validators.runtime.intake import (
    IntakeFailed,
    IntakeReport,
    inspect_artifact,
    inspect_in_subprocess,
)

pytest.importorskip("onnx")
pytest.importorskip("torch")


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ModelManifest]:
    from validators.runtime.example import write_example_model

    model_path, manifest_path = write_example_model(tmp_path_factory.mktemp("example"))
    return model_path, parse_manifest(manifest_path.read_bytes())


def test_subprocess_report_equals_in_process_report(
    example: tuple[Path, ModelManifest],
) -> None:
    model_path, manifest = example
    in_child = inspect_in_subprocess(model_path, manifest, timeout_s=120)
    assert isinstance(in_child, IntakeReport)
    assert in_child == inspect_artifact(model_path, manifest)


def test_subprocess_passes_refusals_through(
    example: tuple[Path, ModelManifest], tmp_path: Path
) -> None:
    model_path, manifest = example
    wrong = manifest.model_copy(update={"input": manifest.input.model_copy(update={"channels": 3})})
    with pytest.raises(IntakeRefused) as caught:
        inspect_in_subprocess(model_path, wrong, timeout_s=120)
    assert caught.value.code == "manifest_mismatch"
    assert [p["path"] for p in caught.value.problems] == ["input.channels"]


def test_tiny_memory_limit_fails_without_harming_the_parent(
    example: tuple[Path, ModelManifest],
) -> None:
    model_path, manifest = example
    with pytest.raises(IntakeFailed):
        inspect_in_subprocess(model_path, manifest, memory_limit_bytes=64 * 1024**2, timeout_s=60)
    # The parent carries on normally.
    assert inspect_artifact(model_path, manifest).format == "onnx"


def test_timeout_kills_the_child(example: tuple[Path, ModelManifest]) -> None:
    model_path, manifest = example
    with pytest.raises(IntakeFailed, match="did not finish within"):
        inspect_in_subprocess(model_path, manifest, timeout_s=0.01)


def test_missing_file_is_an_intake_failure(
    example: tuple[Path, ModelManifest], tmp_path: Path
) -> None:
    _, manifest = example
    with pytest.raises(IntakeFailed, match="FileNotFoundError"):
        inspect_in_subprocess(tmp_path / "absent.onnx", manifest, timeout_s=60)


def test_importing_intake_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys, validators.runtime.intake, validators.manifest, validators.runtime; "
        "heavy = {'torch', 'monai', 'onnx', 'onnxruntime', 'numpy'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
