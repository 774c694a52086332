"""The decode cache: a dataset's preprocessed tensors on disk, one memory-mapped array per spec.

Decoding and preprocessing every image of a held-out dataset costs far more than a model's
inference on a GPU, and the same dataset is evaluated again for every submitted version. So the
tensors are decoded once per (dataset digest, input spec) and kept as ONE `.npy` file, (N, C, H,
W) float32 in case order, that `open_cache` maps read-only into memory. Beside it a small JSON
header holds what the file must be: the dataset digest, the spec, the shape and dtype, the byte
offset and size of the data, and a SHA-256 per block of rows.

Guarantees, and how:

- Checked on open: the header must match the dataset and spec, the file's size and `.npy`
  header must match the header, and every block's checksum must match (hashed on threads; a
  few hundred MB/s per core). A truncated, edited or half-written cache is reported (logged,
  and named in `CachedTensors.rebuilt_because`) and rebuilt.
- Never a torn file: the array is written to a temporary name in the cache directory and
  renamed over the final name (atomic on POSIX); the header is renamed last and is the commit
  mark, so a reader that finds a header and a file that disagree rebuilds. Nothing is fsynced:
  after a crash the checksums catch whatever did not reach the disk, and the cache is rebuilt.
- Two processes filling the same cache: the builder holds an exclusive `fcntl` lock on
  `<key>.lock`; the second waits, then finds the first one's valid cache and decodes nothing.
  (POSIX only, as the registry itself.)
- Every core: the rows are cut into blocks, and a process pool (fork from a single-threaded
  process, else forkserver, so a server's threads are never forked) decodes blocks in
  parallel, each worker writing its rows straight into the memory map of the temporary file
  and returning the block's checksum.
- Decode failures are dataset problems: every failing case is reported at once with its
  manifest line (DatasetInvalid), and nothing is left in the cache directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import IO, Any, TextIO

import numpy as np
from numpy.typing import NDArray

from validators.data.casefile import DatasetInvalid, DatasetProblem, dataset_problem
from validators.data.datasets import Case, Dataset
from validators.data.preprocess import load_case_tensor
from validators.manifest import InputSpec

__all__ = [
    "CACHE_FORMAT",
    "CacheError",
    "CachedTensors",
    "DecodeFunction",
    "ProgressCallback",
    "StderrProgress",
    "cache_key",
    "default_workers",
    "open_cache",
]

log = logging.getLogger(__name__)

#: Bumped when the file layout or the meaning of a cached tensor changes: old caches then miss.
CACHE_FORMAT = 1
DTYPE = np.dtype("<f4")
#: At most this many rows per block: small enough for progress and parallelism, large enough
#: that a block's pickling and scheduling stay negligible beside its decoding.
MAX_ROWS_PER_BLOCK = 64
#: The preprocessing of one case; a module-level function, so the process pool can pickle it.
DecodeFunction = Callable[[Dataset, Case, InputSpec], np.ndarray]
#: progress(done, total): cases decoded so far (or verified, when reading a warm cache).
ProgressCallback = Callable[[int, int], None]


class CacheError(OSError):
    """The cache directory cannot hold the cache (not writable, out of space)."""


@dataclass(frozen=True)
class CachedTensors:
    """A dataset's preprocessed tensors, memory-mapped read-only, in the dataset's case order."""

    tensors: np.memmap[Any, np.dtype[np.float32]]  # (N, C, H, W) float32
    case_ids: tuple[str, ...]
    path: Path
    key: str
    decoded: int  # cases decoded by this call: 0 when a valid cache was found
    rebuilt_because: str | None  # why an existing cache was discarded, None if none was

    def __len__(self) -> int:
        return len(self.case_ids)

    @cached_property
    def _rows(self) -> dict[str, int]:
        """Gives back each case id's row (built once: a lookup per case stays O(1))."""
        return {case_id: row for row, case_id in enumerate(self.case_ids)}

    def tensor(self, case_id: str) -> NDArray[np.float32]:
        """Gives back one case's tensor (C, H, W) by its case id."""
        row = self._rows.get(case_id)
        if row is None:
            raise KeyError(f"case {case_id!r} is not in this dataset's cache")
        out: NDArray[np.float32] = self.tensors[row]
        return out


def _canonical(document: object) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _decode_name(decode: DecodeFunction) -> str:
    return f"{decode.__module__}.{decode.__qualname__}"


def _case_ids_digest(dataset: Dataset) -> str:
    return hashlib.sha256("\n".join(c.case_id for c in dataset.cases).encode()).hexdigest()


def cache_key(dataset: Dataset, spec: InputSpec, decode: DecodeFunction = load_case_tensor) -> str:
    """Gives back the cache's key: SHA-256 over the format, dataset digest, spec and decoder."""
    identity = {
        "format": CACHE_FORMAT,
        "dataset": dataset.digest,
        "spec": spec.model_dump(mode="json"),
        "decode": _decode_name(decode),
    }
    return hashlib.sha256(_canonical(identity)).hexdigest()


# --- checking ----------------------------------------------------------------------------------


def _block_ranges(rows: int, rows_per_block: int) -> list[tuple[int, int]]:
    return [(s, min(s + rows_per_block, rows)) for s in range(0, rows, rows_per_block)]


def _hash_rows(array: NDArray[np.float32], start: int, stop: int) -> str:
    # hashlib releases the GIL on large buffers, so threads hash blocks in parallel.
    return hashlib.sha256(np.ascontiguousarray(array[start:stop]).data.cast("B")).hexdigest()


def _expected_header(
    dataset: Dataset, spec: InputSpec, decode: DecodeFunction, key: str
) -> dict[str, Any]:
    return {
        "format": CACHE_FORMAT,
        "key": key,
        "dataset_digest": dataset.digest,
        "case_ids_sha256": _case_ids_digest(dataset),
        "spec": spec.model_dump(mode="json"),
        "decode": _decode_name(decode),
        "shape": [dataset.n_cases, spec.channels, spec.height, spec.width],
        "dtype": DTYPE.str,
    }


def _read_npy_header(handle: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype[Any], int]:
    handle.seek(0)
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    return shape, fortran, dtype, handle.tell()


def _verify(
    handle: IO[bytes],
    header: dict[str, Any],
    *,
    workers: int,
    progress: ProgressCallback | None,
) -> tuple[str | None, np.memmap[Any, np.dtype[np.float32]] | None]:
    """Gives back (None, the mapped tensors) when the open file matches its header, else why not.

    The file is mapped from the open handle, so what was checked is what is returned even if
    another process renames a new file over the name meanwhile.
    """
    shape = tuple(header["shape"])
    offset, size = int(header["data_offset"]), int(header["file_size"])
    actual_size = os.fstat(handle.fileno()).st_size
    if actual_size != size:
        return f"the file is {actual_size:,} bytes, its header says {size:,} (truncated?)", None
    try:
        npy_shape, fortran, dtype, npy_offset = _read_npy_header(handle)
    except ValueError as exc:
        return f"the file's .npy header cannot be read ({exc})", None
    if (npy_shape, fortran, dtype.str, npy_offset) != (shape, False, DTYPE.str, offset):
        return "the file's .npy header does not match the cache header (edited?)", None
    tensors: np.memmap[Any, np.dtype[np.float32]] = np.memmap(
        handle, dtype=DTYPE, mode="r", offset=offset, shape=shape
    )
    blocks = _block_ranges(shape[0], int(header["rows_per_block"]))
    expected = header["block_sha256"]
    if len(expected) != len(blocks):
        return "the header's block checksums do not cover the file (edited?)", None
    done = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        digests = pool.map(lambda block: _hash_rows(tensors, *block), blocks)
        for (start, stop), digest, wanted in zip(blocks, digests, expected, strict=True):
            if digest != wanted:
                return f"rows {start} to {stop - 1} fail their checksum (edited on disk?)", None
            done += stop - start
            if progress is not None:
                progress(done, shape[0])
    return None, tensors


def _load_header(path: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _try_open(
    npy: Path,
    header_path: Path,
    expected: dict[str, Any],
    *,
    workers: int,
    progress: ProgressCallback | None,
) -> tuple[str | None, np.memmap[Any, np.dtype[np.float32]] | None]:
    """Gives back (None, tensors) for a valid cache, else (why it is not valid, None)."""
    if not header_path.exists() and not npy.exists():
        return None, None  # no cache yet: nothing to report
    header = _load_header(header_path)
    if header is None:
        return "its header is missing or unreadable (an interrupted build?)", None
    for name, value in expected.items():
        if header.get(name) != value:
            return f"its header's {name} does not match (edited, or another build)", None
    try:
        with open(npy, "rb") as handle:
            return _verify(handle, header, workers=workers, progress=progress)
    except FileNotFoundError:
        return "its header is there but the array file is missing", None
    except (OSError, KeyError, TypeError, ValueError) as exc:
        return f"it cannot be read ({exc})", None


# --- building ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BlockTask:
    path: str
    offset: int
    shape: tuple[int, int, int, int]
    start: int
    stop: int
    dataset: Dataset  # with only this block's cases, so a task pickles small
    spec: InputSpec
    decode: DecodeFunction


@dataclass(frozen=True)
class _BlockResult:
    start: int
    stop: int
    digest: str
    problems: list[tuple[int, str]]  # (manifest line, message)


def _fill_block(task: _BlockTask) -> _BlockResult:
    """Gives back one block's checksum after decoding its cases into the temporary file's rows."""
    target: np.memmap[Any, np.dtype[np.float32]] = np.memmap(
        task.path, dtype=DTYPE, mode="r+", offset=task.offset, shape=task.shape
    )
    problems: list[tuple[int, str]] = []
    wanted = task.shape[1:]
    for row, case in enumerate(task.dataset.cases, start=task.start):
        try:
            tensor = task.decode(task.dataset, case, task.spec)
        except Exception as exc:  # any decoder failure is a problem of this case, listed
            problems.append((case.line, str(exc) or type(exc).__name__))
            continue
        if tuple(tensor.shape) != wanted:
            problems.append(
                (
                    case.line,
                    f"{case.path} decoded to shape {tuple(tensor.shape)} but the input spec "
                    f"needs {wanted}; the decoder does not follow the spec",
                )
            )
            continue
        target[row] = tensor
    # No flush (msync): the mapping is shared, so the rows are in the page cache every process
    # reads; forcing them to disk per block would only slow the build (see _build on crashes).
    digest = _hash_rows(target, task.start, task.stop)
    del target
    return _BlockResult(task.start, task.stop, digest, problems)


def _mp_context() -> multiprocessing.context.BaseContext:
    """Gives back how to start the pool: fork when this process has one thread, else forkserver.

    fork starts workers at once with every module already imported, but copies other threads'
    locks in whatever state they are (a server's worker threads): then forkserver forks from a
    clean single-threaded server process that has imported this module once.
    """
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


def _one_blas_thread() -> None:
    """Limits this pool worker's BLAS to one thread (the pool already uses every core).

    A BLAS thread per core in every worker would oversubscribe the cores: the resize is a
    matrix product.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def _run_blocks(tasks: list[_BlockTask], pool_size: int) -> Iterator[_BlockResult]:
    """Gives back each block's result as it completes: in a process pool, or here for one."""
    if pool_size <= 1:
        yield from map(_fill_block, tasks)
        return
    with ProcessPoolExecutor(
        max_workers=pool_size, mp_context=_mp_context(), initializer=_one_blas_thread
    ) as pool:
        futures = [pool.submit(_fill_block, task) for task in tasks]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BrokenProcessPool as exc:
            raise RuntimeError(
                "a decoding worker process died (killed, or out of memory?) before the cache was "
                "complete; nothing was cached: retry with fewer workers (workers=) or more memory"
            ) from exc
        finally:
            for future in futures:
                future.cancel()


def default_workers() -> int:
    """Gives back how many cores this process may use (its CPU affinity), at least 1."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _allocate(path: Path, shape: tuple[int, int, int, int]) -> int:
    """Gives back the data offset of a new .npy file of `shape`, its space reserved on disk."""
    created = np.lib.format.open_memmap(path, mode="w+", dtype=DTYPE, shape=shape)
    offset = int(created.offset)
    del created
    size = offset + math.prod(shape) * DTYPE.itemsize
    fd = os.open(path, os.O_RDWR)
    try:
        # Reserve the blocks now: a memory-mapped write to a full disk kills the worker with
        # SIGBUS instead of raising, so the shortage must be found here, as an error.
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)
    return offset


def _build(
    dataset: Dataset,
    spec: InputSpec,
    decode: DecodeFunction,
    *,
    npy: Path,
    header_path: Path,
    expected: dict[str, Any],
    workers: int,
    progress: ProgressCallback | None,
) -> None:
    """Decodes every case into a temporary file, then renames it and its header into place."""
    shape = (dataset.n_cases, spec.channels, spec.height, spec.width)
    rows_per_block = max(1, min(MAX_ROWS_PER_BLOCK, math.ceil(shape[0] / (workers * 4))))
    blocks = _block_ranges(shape[0], rows_per_block)
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp = npy.with_name(f"{npy.stem}.{token}.npy.tmp")
    header_tmp = header_path.with_name(f"{header_path.stem}.{token}.json.tmp")
    try:
        try:
            offset = _allocate(tmp, shape)
        except OSError as exc:
            needed = math.prod(shape) * DTYPE.itemsize
            raise CacheError(
                exc.errno,
                f"could not create the decode cache in {npy.parent} ({exc.strerror or exc}); "
                f"it needs {needed / 1e9:,.2f} GB: free space there or choose another cache "
                "directory",
            ) from exc
        tasks = [
            _BlockTask(
                path=str(tmp),
                offset=offset,
                shape=shape,
                start=start,
                stop=stop,
                dataset=replace(dataset, cases=dataset.cases[start:stop]),
                spec=spec,
                decode=decode,
            )
            for start, stop in blocks
        ]
        digests: dict[int, str] = {}
        failures: list[tuple[int, str]] = []
        done = 0
        for result in _run_blocks(tasks, min(workers, len(tasks))):
            digests[result.start] = result.digest
            failures.extend(result.problems)
            done += result.stop - result.start
            if progress is not None:
                progress(done, shape[0])
        if failures:
            failures.sort()
            problems: Sequence[DatasetProblem] = [
                dataset_problem(f"could not be decoded: {message}", line=line, column="path")
                for line, message in failures
            ]
            raise DatasetInvalid(problems, source=f"the dataset {dataset.root}")
        header = {
            **expected,
            "data_offset": offset,
            "file_size": offset + math.prod(shape) * DTYPE.itemsize,
            "rows_per_block": rows_per_block,
            "block_sha256": [digests[start] for start, _ in blocks],
        }
        header_tmp.write_text(json.dumps(header, indent=1), encoding="utf-8")
        # The header is the commit mark: take the old one away first, then the array, then the
        # new header. A reader in between sees no header or a mismatch, and waits on the lock.
        # Nothing is fsynced: a cache is worth a rebuild, not a disk flush of every build. After
        # a crash the renamed files may hold zeros or old bytes, which the checksums catch on
        # the next open, so a crash can lose the cache but never pass off a torn one.
        header_path.unlink(missing_ok=True)
        os.replace(tmp, npy)
        os.replace(header_tmp, header_path)
    finally:
        tmp.unlink(missing_ok=True)
        header_tmp.unlink(missing_ok=True)


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    import fcntl

    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _remove_stale_temporaries(directory: Path, key: str) -> None:
    # Called under the lock: only the lock's holder writes temporaries, so any left are from a
    # process that died while building.
    for stale in directory.glob(f"{key}.*.tmp"):
        stale.unlink(missing_ok=True)


def open_cache(
    dataset: Dataset,
    spec: InputSpec,
    cache_dir: Path,
    *,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    decode: DecodeFunction = load_case_tensor,
) -> CachedTensors:
    """Gives back the dataset's tensors for `spec`, decoding them first unless a valid cache exists.

    `workers` processes decode in parallel (default: every core this process may use; 1 decodes
    here, without a pool). `progress(done, total)` is called as blocks are decoded, or verified
    when the cache was already there. `decode` must be a module-level function (the pool pickles
    it); it is part of the cache key. Raises DatasetInvalid naming every case that could not be
    decoded (with its manifest line), CacheError when the directory cannot hold the cache.
    """
    workers = default_workers() if workers is None else max(1, workers)
    cache_dir = Path(cache_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(
            exc.errno,
            f"could not create the cache directory {cache_dir} ({exc.strerror or exc}); "
            "choose a writable directory",
        ) from exc
    key = cache_key(dataset, spec, decode)
    npy, header_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    expected = _expected_header(dataset, spec, decode, key)
    case_ids = tuple(case.case_id for case in dataset.cases)

    def opened(
        tensors: np.memmap[Any, np.dtype[np.float32]], decoded: int, reason: str | None
    ) -> CachedTensors:
        return CachedTensors(tensors, case_ids, npy, key, decoded, reason)

    # Fast path, without the lock: a valid cache is never replaced, so reading it is safe.
    reason, tensors = _try_open(npy, header_path, expected, workers=workers, progress=progress)
    if tensors is not None:
        return opened(tensors, 0, None)
    with _exclusive(cache_dir / f"{key}.lock"):
        # Another process may have built it while this one waited for the lock.
        again, tensors = _try_open(npy, header_path, expected, workers=workers, progress=None)
        if tensors is not None:
            return opened(tensors, 0, None)
        reason = again or reason
        if reason is not None:
            log.warning("decode cache %s is invalid: %s; rebuilding it", npy, reason)
        _remove_stale_temporaries(cache_dir, key)
        _build(
            dataset,
            spec,
            decode,
            npy=npy,
            header_path=header_path,
            expected=expected,
            workers=workers,
            progress=progress,
        )
        built, tensors = _try_open(npy, header_path, expected, workers=workers, progress=None)
    if tensors is None:
        raise CacheError(f"the decode cache {npy} was written but does not verify: {built}")
    return opened(tensors, dataset.n_cases, reason)


class StderrProgress:
    """A progress callback printing `decoding N/total images (R images/s)` lines on stderr."""

    def __init__(
        self, label: str = "decoding", *, stream: TextIO | None = None, every_s: float = 0.5
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = every_s
        self.started = time.perf_counter()
        self.shown = -math.inf

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if done != total and now - self.shown < self.every_s:
            return
        self.shown = now
        rate = done / max(now - self.started, 1e-9)
        self.stream.write(f"{self.label} {done:,}/{total:,} images ({rate:,.0f} images/s)\n")
        self.stream.flush()
