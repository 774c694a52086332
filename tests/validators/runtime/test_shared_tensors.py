"""Tests of handing tensors to the child by descriptor: the cache file itself, or a sealed copy."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.validators.runtime import models
from validators.runtime.runner import run_model
from validators.runtime.shared_tensors import RowWindows, map_rows, share


def _saved(tmp_path: Path, tensors: np.ndarray) -> np.memmap:
    path = tmp_path / "cache.npy"
    np.save(path, tensors)
    loaded = np.load(path, mmap_mode="r")
    assert isinstance(loaded, np.memmap)
    return loaded


def test_a_cache_memory_map_is_passed_as_its_file_read_only(tmp_path: Path) -> None:
    tensors = models.tensors(7)
    shared = share(_saved(tmp_path, tensors))
    try:
        assert os.readlink(f"/proc/self/fd/{shared.fd}") == str(tmp_path / "cache.npy")
        with pytest.raises(OSError):
            os.write(shared.fd, b"x")
        np.testing.assert_array_equal(map_rows(shared.describe(), 2, 6), tensors[2:6])
    finally:
        shared.close()


def test_an_array_in_memory_is_passed_as_a_sealed_copy(tmp_path: Path) -> None:
    tensors = models.tensors(5)
    shared = share(tensors)
    try:
        assert "memfd:assay-tensors" in os.readlink(f"/proc/self/fd/{shared.fd}")
        with pytest.raises(PermissionError):
            os.pwrite(shared.fd, b"x", 0)
        np.testing.assert_array_equal(map_rows(shared.describe(), 0, 5), tensors)
    finally:
        shared.close()


def test_rows_outside_the_tensors_are_refused() -> None:
    shared = share(models.tensors(3))
    try:
        with pytest.raises(ValueError, match="outside the 3 tensors"):
            map_rows(shared.describe(), 2, 4)
    finally:
        shared.close()


def test_the_runner_scores_a_cache_file_like_an_array(tmp_path: Path) -> None:
    tensors = models.tensors(9)
    path = models.onnx_model(tmp_path / "m.onnx")
    settings = models.settings()
    from_file = run_model(path, models.manifest(), _saved(tmp_path, tensors), settings=settings)
    in_memory = run_model(path, models.manifest(), tensors, settings=settings)
    assert from_file.status == in_memory.status == "succeeded"
    assert from_file.scores is not None and in_memory.scores is not None
    np.testing.assert_array_equal(from_file.scores, in_memory.scores)


def test_windows_serve_batches_across_their_edges() -> None:
    tensors = models.tensors(10)
    shared = share(tensors)
    try:
        row_bytes = tensors[0].nbytes
        windows = RowWindows(shared.describe(), window_bytes=3 * row_bytes)
        for start in range(0, 10, 2):
            expected = tensors[start : start + 2]
            np.testing.assert_array_equal(windows.rows(start, start + 2), expected)
        # A batch larger than a window, and one before the current window, are mapped too.
        np.testing.assert_array_equal(windows.rows(1, 9), tensors[1:9])
        np.testing.assert_array_equal(windows.rows(0, 1), tensors[0:1])
    finally:
        shared.close()
