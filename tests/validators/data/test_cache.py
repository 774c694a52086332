"""Tests of the decode cache: built once, checked on open, rebuilt when damaged, shared safely."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from validators.data.cache import (
    CachedTensors,
    CacheError,
    StderrProgress,
    cache_key,
    open_cache,
)
from validators.data.datasets import Case, Dataset, DatasetInvalid, load_dataset
from validators.data.phantoms import write_phantom_dataset
from validators.data.preprocess import load_case_tensor
from validators.manifest import InputSpec

ROOT = Path(__file__).resolve().parents[3]
CASES = 12

SPEC = InputSpec.model_validate(
    {
        "channels": 1,
        "height": 32,
        "width": 32,
        "intensity": {"kind": "minmax", "min": 0, "max": 4095},
    }
)
OTHER_SPEC = InputSpec.model_validate(
    {
        "channels": 3,
        "height": 24,
        "width": 24,
        "intensity": {"kind": "dicom_window", "center": 2000, "width": 3000},
    }
)

# Counts the decodes of the in-process (workers=1) runs: the pool's workers have their own.
DECODES: list[str] = []


def counting_decode(dataset: Dataset, case: Case, spec: InputSpec) -> np.ndarray:
    """Decodes as the default does, and counts the case."""
    DECODES.append(case.case_id)
    return load_case_tensor(dataset, case, spec)


def pid_recording_decode(dataset: Dataset, case: Case, spec: InputSpec) -> np.ndarray:
    """Decodes as the default does, and leaves a file naming the process that decoded the case."""
    marks = dataset.root.parent / "decoded-by"
    marks.mkdir(exist_ok=True)
    (marks / f"{case.case_id}.{os.getpid()}").touch()
    return load_case_tensor(dataset, case, spec)


def wrong_shape_decode(dataset: Dataset, case: Case, spec: InputSpec) -> np.ndarray:
    """Gives back a tensor one pixel too narrow: a decoder that ignores the spec."""
    return np.zeros((spec.channels, spec.height, spec.width - 1), dtype=np.float32)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    root = tmp_path_factory.mktemp("phantoms") / "dicom"
    write_phantom_dataset(root, format="dicom", cases=CASES, size=48, seed=3)
    return load_dataset(root)


def header_of(cached: CachedTensors) -> Path:
    return cached.path.with_suffix(".json")


def assert_matches_decoding(cached: CachedTensors, dataset: Dataset, spec: InputSpec) -> None:
    assert cached.tensors.shape == (dataset.n_cases, spec.channels, spec.height, spec.width)
    assert cached.tensors.dtype == np.float32
    for row, case in enumerate(dataset.cases):
        np.testing.assert_array_equal(cached.tensors[row], load_case_tensor(dataset, case, spec))


def test_cached_tensors_equal_the_decoded_cases_in_order(dataset: Dataset, tmp_path: Path) -> None:
    cached = open_cache(dataset, SPEC, tmp_path, workers=2)
    assert cached.decoded == CASES and cached.rebuilt_because is None
    assert cached.case_ids == tuple(case.case_id for case in dataset.cases)
    assert_matches_decoding(cached, dataset, SPEC)
    case = dataset.cases[5]
    np.testing.assert_array_equal(cached.tensor(case.case_id), cached.tensors[5])
    with pytest.raises(KeyError, match="not in this dataset"):
        cached.tensor("nobody")


def test_the_cache_is_one_read_only_array_and_a_header(dataset: Dataset, tmp_path: Path) -> None:
    cached = open_cache(dataset, SPEC, tmp_path, workers=1)
    key = cache_key(dataset, SPEC)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"{key}.json",
        f"{key}.lock",
        f"{key}.npy",
    ]
    np.testing.assert_array_equal(np.load(cached.path), cached.tensors)
    header = json.loads(header_of(cached).read_text())
    assert header["dataset_digest"] == dataset.digest
    assert header["spec"] == SPEC.model_dump(mode="json")
    assert header["shape"] == [CASES, 1, 32, 32]
    with pytest.raises(ValueError, match="read-only"):
        cached.tensors[0, 0, 0, 0] = 1.0


def test_a_second_open_decodes_nothing(dataset: Dataset, tmp_path: Path) -> None:
    DECODES.clear()
    first = open_cache(dataset, SPEC, tmp_path, workers=1, decode=counting_decode)
    assert len(DECODES) == CASES and first.decoded == CASES
    DECODES.clear()
    second = open_cache(dataset, SPEC, tmp_path, workers=1, decode=counting_decode)
    assert DECODES == [] and second.decoded == 0
    np.testing.assert_array_equal(first.tensors, second.tensors)


def test_a_second_open_with_the_pool_decodes_nothing(dataset: Dataset, tmp_path: Path) -> None:
    open_cache(dataset, SPEC, tmp_path, workers=2)
    again = open_cache(dataset, SPEC, tmp_path, workers=2)
    assert again.decoded == 0 and again.rebuilt_because is None


def test_a_different_spec_gets_a_different_cache(dataset: Dataset, tmp_path: Path) -> None:
    first = open_cache(dataset, SPEC, tmp_path, workers=1)
    other = open_cache(dataset, OTHER_SPEC, tmp_path, workers=1)
    assert other.path != first.path and other.decoded == CASES
    assert other.tensors.shape == (CASES, 3, 24, 24)
    assert_matches_decoding(other, dataset, OTHER_SPEC)
    # The first is still there and still valid.
    assert open_cache(dataset, SPEC, tmp_path, workers=1).decoded == 0


def test_a_truncated_cache_is_detected_and_rebuilt(
    dataset: Dataset, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cached = open_cache(dataset, SPEC, tmp_path, workers=1)
    os.truncate(cached.path, cached.path.stat().st_size - 1000)
    with caplog.at_level(logging.WARNING, logger="validators.data.cache"):
        rebuilt = open_cache(dataset, SPEC, tmp_path, workers=1)
    assert rebuilt.decoded == CASES
    assert rebuilt.rebuilt_because is not None and "truncated" in rebuilt.rebuilt_because
    assert "rebuilding" in caplog.text
    assert_matches_decoding(rebuilt, dataset, SPEC)


def test_an_edited_cache_is_detected_and_rebuilt(dataset: Dataset, tmp_path: Path) -> None:
    cached = open_cache(dataset, SPEC, tmp_path, workers=1)
    with open(cached.path, "r+b") as handle:
        handle.seek(-64, os.SEEK_END)
        handle.write(np.full(4, 0.5, dtype="<f4").tobytes())
    rebuilt = open_cache(dataset, SPEC, tmp_path, workers=1)
    assert rebuilt.decoded == CASES
    assert rebuilt.rebuilt_because is not None and "checksum" in rebuilt.rebuilt_because
    assert_matches_decoding(rebuilt, dataset, SPEC)


def test_an_edited_header_is_detected_and_rebuilt(dataset: Dataset, tmp_path: Path) -> None:
    cached = open_cache(dataset, SPEC, tmp_path, workers=1)
    header = json.loads(header_of(cached).read_text())
    header["shape"] = [CASES, 1, 32, 31]
    header_of(cached).write_text(json.dumps(header))
    rebuilt = open_cache(dataset, SPEC, tmp_path, workers=1)
    assert rebuilt.decoded == CASES
    assert rebuilt.rebuilt_because is not None and "shape" in rebuilt.rebuilt_because


def test_an_array_without_its_header_is_rebuilt(dataset: Dataset, tmp_path: Path) -> None:
    """A build that died between renaming the array and renaming its header."""
    cached = open_cache(dataset, SPEC, tmp_path, workers=1)
    header_of(cached).unlink()
    rebuilt = open_cache(dataset, SPEC, tmp_path, workers=1)
    assert rebuilt.decoded == CASES and rebuilt.rebuilt_because is not None


def test_stale_temporaries_of_a_dead_build_are_removed(dataset: Dataset, tmp_path: Path) -> None:
    key = cache_key(dataset, SPEC)
    stale = tmp_path / f"{key}.99999-dead.npy.tmp"
    stale.write_bytes(b"half")
    open_cache(dataset, SPEC, tmp_path, workers=1)
    assert not stale.exists()
    assert not list(tmp_path.glob("*.tmp"))


def test_progress_reaches_the_total_in_order(dataset: Dataset, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    open_cache(dataset, SPEC, tmp_path, workers=2, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (CASES, CASES)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert len(calls) > 1  # blocks are reported as they finish, not only at the end


def test_stderr_progress_prints_a_line_with_the_rate() -> None:
    stream = io.StringIO()
    show = StderrProgress(stream=stream, every_s=3600)
    show(1, 4)
    show(2, 4)  # within every_s: not printed
    show(4, 4)  # the last is always printed
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[-1].startswith("decoding 4/4 images (") and lines[-1].endswith("images/s)")


def test_decode_failures_are_dataset_problems_with_their_lines(tmp_path: Path) -> None:
    root = write_phantom_dataset(tmp_path / "data", format="dicom", cases=6, size=32, seed=1)
    dataset = load_dataset(root)
    # Damaged after registration: the header still reads, the pixel data is cut short.
    broken = [dataset.cases[1], dataset.cases[4]]
    for case in broken:
        path = root / case.path
        os.truncate(path, path.stat().st_size - 500)
    cache_dir = tmp_path / "cache"
    with pytest.raises(DatasetInvalid) as raised:
        open_cache(dataset, SPEC, cache_dir, workers=2)
    problems = raised.value.problems
    assert [p.line for p in problems] == [case.line for case in broken]  # type: ignore[attr-defined]
    assert all("could not be decoded" in p.message for p in problems)
    assert all(case.path.split("/")[-1] in str(raised.value) for case in broken)
    # Nothing half-written is left behind.
    assert [p.suffix for p in cache_dir.iterdir()] == [".lock"]


def test_a_decoder_ignoring_the_spec_is_refused_per_case(dataset: Dataset, tmp_path: Path) -> None:
    with pytest.raises(DatasetInvalid, match="the decoder does not follow the spec") as raised:
        open_cache(dataset, SPEC, tmp_path, workers=1, decode=wrong_shape_decode)
    assert len(raised.value.problems) == CASES


_CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from validators.data.cache import open_cache
    from validators.data.datasets import load_dataset
    from validators.manifest import InputSpec

    spec = InputSpec.model_validate(json.loads(sys.argv[3]))
    sys.stdin.readline()  # start together: both wait for the parent's go
    cached = open_cache(load_dataset(sys.argv[1]), spec, Path(sys.argv[2]), workers=1)
    print(json.dumps({"decoded": cached.decoded, "path": str(cached.path)}))
    """
)


def test_two_processes_filling_the_same_cache_end_with_one_valid_cache(
    dataset: Dataset, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        "-c",
        _CHILD,
        str(dataset.root),
        str(tmp_path),
        SPEC.model_dump_json(),
    ]
    children = [
        subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    answers = []
    for child in children:
        out, _ = child.communicate(timeout=120)
        assert child.returncode == 0
        answers.append(json.loads(out))
    # One process decoded; the other waited on the lock and found its valid cache.
    assert sorted(a["decoded"] for a in answers) == [0, CASES]
    assert answers[0]["path"] == answers[1]["path"]
    assert not list(tmp_path.glob("*.tmp"))
    final = open_cache(dataset, SPEC, tmp_path, workers=1)
    assert final.decoded == 0
    assert_matches_decoding(final, dataset, SPEC)


@pytest.mark.parametrize("format", ["png", "npz"])
def test_png_and_npz_datasets_are_cached_too(tmp_path: Path, format: str) -> None:
    root = write_phantom_dataset(tmp_path / format, format=format, cases=5, size=32)  # type: ignore[arg-type]
    dataset = load_dataset(root)
    spec = InputSpec.model_validate(
        {
            "channels": 1,
            "height": 16,
            "width": 16,
            "intensity": {"kind": "minmax", "min": 0, "max": 255},
        }
    )
    assert_matches_decoding(open_cache(dataset, spec, tmp_path / "cache", workers=2), dataset, spec)


def test_a_cache_directory_that_cannot_exist_is_a_clear_error(
    dataset: Dataset, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(CacheError, match="choose a writable directory"):
        open_cache(dataset, SPEC, blocker / "cache", workers=1)


def test_the_pool_decodes_in_worker_processes(tmp_path: Path) -> None:
    root = write_phantom_dataset(tmp_path / "data", format="png", cases=8, size=32, seed=4)
    dataset = load_dataset(root)
    cached = open_cache(dataset, SPEC, tmp_path / "cache", workers=2, decode=pid_recording_decode)
    marks = [p.name.split(".") for p in (tmp_path / "decoded-by").iterdir()]
    assert sorted(case_id for case_id, _ in marks) == sorted(cached.case_ids)
    assert str(os.getpid()) not in {pid for _, pid in marks}
    assert_matches_decoding(cached, dataset, SPEC)


def dying_decode(dataset: Dataset, case: Case, spec: InputSpec) -> np.ndarray:
    """Kills the worker process, as the kernel's out-of-memory killer would."""
    os._exit(9)


def test_a_worker_that_dies_is_a_clear_error_and_leaves_no_cache(
    dataset: Dataset, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError, match="a decoding worker process died"):
        open_cache(dataset, SPEC, tmp_path, workers=2, decode=dying_decode)
    assert [p.suffix for p in tmp_path.iterdir()] == [".lock"]


def test_a_process_with_threads_builds_through_the_forkserver(
    dataset: Dataset, tmp_path: Path
) -> None:
    """A server's worker threads must never be forked: the pool then starts from a forkserver."""
    import threading

    from validators.data.cache import _mp_context

    # Earlier tests in the same run may have left threads of their own (a server's, a pool's):
    # what the thread started here changes is measured against the method before it.
    before = _mp_context().get_start_method()
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert _mp_context().get_start_method() == "forkserver"
        cached = open_cache(dataset, SPEC, tmp_path, workers=2)
    finally:
        release.set()
        other.join()
    assert _mp_context().get_start_method() == before
    assert cached.decoded == CASES
    assert_matches_decoding(cached, dataset, SPEC)


def test_a_single_threaded_process_forks_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from validators.data.cache import _mp_context

    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert _mp_context().get_start_method() == "fork"
