"""decode_problems: damage inside the pixel data, which a header read cannot see."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.validators.data.images import write_manifest, write_png
from validators.data.datasets import load_dataset
from validators.data.verify import decode_problems


def test_a_png_cut_inside_its_pixel_data_is_found_by_decoding(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    write_png(tmp_path / "fine.png", rng.integers(0, 255, (64, 64), dtype=np.uint8))
    whole = write_png(tmp_path / "whole.png", rng.integers(0, 255, (64, 64), dtype=np.uint8))
    (tmp_path / "cut.png").write_bytes(whole.read_bytes()[:300])
    write_manifest(
        tmp_path, "case_id,patient_id,path,label", ["c1,p1,fine.png,1", "c2,p2,cut.png,0"]
    )
    dataset = load_dataset(tmp_path)  # the header of cut.png is intact
    seen: list[int] = []
    problems = decode_problems(dataset, on_progress=seen.append)
    assert seen == [1, 1]
    (problem,) = problems
    assert problem.path == "line 3, column path" and problem.line == 3
    assert problem.message.startswith("cut.png could not be decoded")


def test_a_sound_dataset_decodes_without_problems(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", np.zeros((8, 8), np.uint8))
    write_manifest(tmp_path, "case_id,patient_id,path,label", ["c1,p1,a.png,1"])
    assert decode_problems(load_dataset(tmp_path)) == []
