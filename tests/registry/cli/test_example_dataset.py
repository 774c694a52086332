"""Tests of `assay example-dataset`: writing a phantom dataset, refusing, leaving nothing behind."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from registry.cli import app
from registry.cli.common import EXIT_REFUSED


def run(*args: str) -> Result:
    return CliRunner().invoke(app, ["example-dataset", *args], env={"COLUMNS": "200"})


def manifest_rows(root: Path) -> list[dict[str, str]]:
    with open(root / "cases.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(
    ("format", "suffix"), [("dicom", ".dcm"), ("png", ".png"), ("npz", ".npz")]
)
def test_writes_a_dataset_in_each_format(tmp_path: Path, format: str, suffix: str) -> None:
    out = tmp_path / "data"
    result = run("--out", str(out), "--format", format, "--cases", "5", "--size", "32")
    assert result.exit_code == 0, result.output
    rows = manifest_rows(out)
    assert len(rows) == 5
    assert any(p.suffix == suffix for p in out.rglob("*"))
    assert f"Wrote 5 synthetic {format.upper()} images" in result.stdout
    assert "writing 5/5 images" in result.stderr
    # Only the dataset itself is left: no staging directory beside it.
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_an_existing_empty_directory_is_used(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    result = run("--out", str(out), "--cases", "2", "--size", "16")
    assert result.exit_code == 0, result.output
    assert len(manifest_rows(out)) == 2


def test_the_same_seed_writes_the_same_files(tmp_path: Path) -> None:
    for name in ("a", "b"):
        result = run("--out", str(tmp_path / name), "--cases", "3", "--size", "16", "--seed", "9")
        assert result.exit_code == 0, result.output
    a = {p.name: p.read_bytes() for p in (tmp_path / "a").rglob("*") if p.is_file()}
    b = {p.name: p.read_bytes() for p in (tmp_path / "b").rglob("*") if p.is_file()}
    assert a == b


def test_a_non_empty_directory_is_refused_and_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = run("--out", str(out), "--cases", "2", "--size", "16")
    assert result.exit_code == EXIT_REFUSED
    assert "is not empty" in result.stderr and "--out" in result.stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_a_file_as_out_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "file"
    out.write_text("")
    result = run("--out", str(out), "--cases", "2")
    assert result.exit_code != 0
    assert not (tmp_path / "cases.csv").exists()


def test_json_output_describes_what_was_written(tmp_path: Path) -> None:
    out = tmp_path / "data"
    result = run("--out", str(out), "--format", "npz", "--cases", "4", "--size", "16", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["format"] == "npz" and document["cases"] == 4
    assert document["files"] == 2 and document["bytes"] > 0
    assert Path(document["manifest"]) == out / "cases.csv"
    assert "writing" not in result.stderr


def test_json_refusal_is_one_document(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("")
    result = run("--out", str(tmp_path), "--json")
    assert result.exit_code == EXIT_REFUSED
    assert "is not empty" in json.loads(result.stdout)["detail"]


def test_a_failure_midway_leaves_nothing_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from validators.data import phantoms

    real = phantoms.write_phantom_dataset

    def fails_after_writing(out: Path, **kwargs: object) -> Path:
        real(out, **kwargs)  # type: ignore[arg-type]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(phantoms, "write_phantom_dataset", fails_after_writing)
    out = tmp_path / "data"
    result = run("--out", str(out), "--cases", "3", "--size", "16")
    assert result.exit_code == EXIT_REFUSED
    assert "No space left on device" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run("--out", str(tmp_path / "d"), "--format", "tiff").exit_code == 2
    assert run("--out", str(tmp_path / "d"), "--cases", "0").exit_code == 2
    assert run("--cases", "3").exit_code == 2  # --out is required
