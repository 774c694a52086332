"""Tests of `assay dataset check`: problems with their lines (exit 1), or digest and counts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from typer.testing import CliRunner, Result

from registry.cli import app
from tests.validators.data.images import write_dicom, write_manifest, write_png
from validators.data.datasets import load_dataset


def run(*args: str) -> Result:
    return CliRunner().invoke(app, ["dataset", "check", *args], env={"COLUMNS": "200"})


def valid_dataset(root: Path) -> Path:
    write_dicom(root / "a.dcm", tags={"Manufacturer": "Acme"})
    write_dicom(root / "b.dcm", tags={"Manufacturer": "Zeta"})
    write_dicom(root / "c.dcm")
    write_manifest(
        root,
        "case_id,patient_id,path,label,sex",
        ["c1,p1,a.dcm,1,F", "c2,p1,b.dcm,0,F", "c3,p2,c.dcm,0,M"],
    )
    return root


def test_valid_dataset_prints_digest_and_counts(tmp_path: Path) -> None:
    root = valid_dataset(tmp_path)
    result = run(str(root))
    assert result.exit_code == 0, result.output
    digest = load_dataset(root).digest
    out = result.stdout
    assert f"dataset {root.resolve()}: valid" in out
    assert f"digest:   {digest}" in out
    assert "cases:    3" in out and "patients: 2" in out
    assert "label: 1 of 3 (33.3%)" in out
    assert "sex: F 2, M 1" in out
    assert "manufacturer: Acme 1, Zeta 1 (no value: 1)" in out


def test_valid_dataset_as_json(tmp_path: Path) -> None:
    root = valid_dataset(tmp_path)
    result = run(str(root), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document == load_dataset(root).summary()
    assert document["positives"] == {"label": 1}
    assert document["attributes"]["sex"] == {"F": 2, "M": 1}


def test_problems_are_listed_with_their_lines_and_exit_1(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    write_manifest(
        tmp_path,
        "case_id,patient_id,path,label",
        ["c1,p1,a.png,1", "c1,p2,missing.png,3"],
    )
    result = run(str(tmp_path))
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: the dataset {tmp_path.resolve()} has 3 problem(s)"
    assert lines[1].startswith("  line 3, column case_id: case_id 'c1' is already used on line 2")
    assert lines[2].startswith("  line 3, column label: the label is '3'")
    assert lines[3].startswith("  line 3, column path: no file at 'missing.png'")


def test_problems_as_json(tmp_path: Path) -> None:
    write_manifest(tmp_path, "case_id,patient_id,path,label", ["c1,p1,gone.png,1"])
    result = run(str(tmp_path), "--json")
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["error"] == "dataset_invalid"
    assert document["problems"] == [
        {
            "path": "line 2, column path",
            "line": 2,
            "message": "no file at 'gone.png' in the dataset root; check the path "
            "(it is case-sensitive)",
        }
    ]


def test_cases_option_is_relative_to_the_current_directory(tmp_path: Path) -> None:
    root = valid_dataset(tmp_path / "root")
    (root / "cases.csv").rename(tmp_path / "other.csv")
    previous = Path.cwd()
    os.chdir(tmp_path)
    try:
        result = run("root", "--cases", "other.csv")
    finally:
        os.chdir(previous)
    assert result.exit_code == 0, result.output
    assert f"manifest: {tmp_path.resolve() / 'other.csv'}" in result.stdout


def test_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    result = run(str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: no directory at {tmp_path / 'nowhere'}")
    file = tmp_path / "file.csv"
    file.write_text("x")
    result = run(str(file))
    assert result.exit_code == 2 and "is a file, not a directory" in result.stderr


def test_root_symlink_is_a_problem(tmp_path: Path) -> None:
    valid_dataset(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    result = run(str(tmp_path / "link"))
    assert result.exit_code == 1
    assert "(dataset): the dataset root" in result.stderr
    assert "is a symbolic link" in result.stderr


def test_control_characters_are_escaped(tmp_path: Path) -> None:
    write_manifest(tmp_path, "case_id,patient_id,path,label", ["c1,p1,a\x1b[2J.png,1"])
    result = run(str(tmp_path))
    assert result.exit_code == 1
    assert "\x1b" not in result.stderr and "a\\x1b[2J.png" in result.stderr


def test_decode_finds_damage_inside_pixel_data(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    whole = write_png(tmp_path / "w.png", rng.integers(0, 255, (64, 64), dtype=np.uint8))
    (tmp_path / "cut.png").write_bytes(whole.read_bytes()[:300])
    write_manifest(tmp_path, "case_id,patient_id,path,label", ["c1,p1,w.png,1", "c2,p2,cut.png,0"])
    assert run(str(tmp_path)).exit_code == 0  # headers only
    result = run(str(tmp_path), "--decode")
    assert result.exit_code == 1
    assert "  line 3, column path: cut.png could not be decoded" in result.stderr
    result = run(str(tmp_path), "--decode", "--json")
    assert json.loads(result.stdout)["problems"][0]["line"] == 3
