"""The dataset's tensors handed to the runner's child as a read-only file descriptor, not copied.

Copying every batch through a pipe costs a copy in the parent, one in the kernel and one in the
child; on a fast GPU that alone would cap the throughput. Instead the parent passes one
descriptor: the decode cache's `.npy` file opened read-only when the tensors are that file's
memory map, otherwise a sealed memfd (no writes, no resizing) holding a copy. The child maps a
window of rows at a time (`RowWindows`, 64 MiB of many batches), read-only and populated on its
reader thread while the current batch is inferred, so the mapping stays within its address-space
limit whatever the dataset's size. The descriptor holds tensors only: no path, case id or label.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["WINDOW_BYTES", "RowWindows", "SharedTensors", "map_rows", "share"]

_COPY_CHUNK_BYTES = 64 * 1024 * 1024
WINDOW_BYTES = 64 * 1024 * 1024
"""Rows the child maps at a time: many batches, a small part of its address-space limit."""


@dataclass(frozen=True)
class SharedTensors:
    """A read-only descriptor of float32 [N, C, H, W] tensors in C order, from `offset` bytes."""

    fd: int
    offset: int
    shape: tuple[int, int, int, int]

    def describe(self) -> dict[str, Any]:
        """Return what the child needs to map the tensors: descriptor, offset and shape."""
        return {"fd": self.fd, "offset": self.offset, "shape": list(self.shape)}

    def close(self) -> None:
        """Close the parent's descriptor."""
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _cache_file_descriptor(tensors: NDArray[np.float32]) -> tuple[int, int] | None:
    """Return (read-only fd, offset) of the file a whole-file memory map reads, or None."""
    import numpy as np

    if not (
        isinstance(tensors, np.memmap)
        and isinstance(tensors.base, mmap.mmap)
        and tensors.filename is not None
        and tensors.flags.c_contiguous
        and tensors.dtype == np.float32
        and len(tensors) > 0
    ):
        return None
    fd = os.open(tensors.filename, os.O_RDONLY | os.O_CLOEXEC)
    offset = int(tensors.offset)
    # The first row read through the descriptor must be the array's first row, or the layout is
    # not what this assumes (a view with its own offset): fall back to a copy.
    row = np.ascontiguousarray(tensors[0]).tobytes()
    if os.pread(fd, len(row), offset) != row:
        os.close(fd)
        return None
    return fd, offset


def _sealed_copy(tensors: NDArray[np.float32]) -> int:
    """Return a memfd holding the tensors, sealed against writing, growing and shrinking."""
    import numpy as np

    fd = os.memfd_create("assay-tensors", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        rows_per_chunk = max(1, _COPY_CHUNK_BYTES // max(1, tensors[0].nbytes))
        for start in range(0, len(tensors), rows_per_chunk):
            chunk = np.ascontiguousarray(tensors[start : start + rows_per_chunk], np.float32)
            view = chunk.data.cast("B")
            while view:
                written = os.write(fd, view)
                view = view[written:]
        seals = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    except BaseException:
        os.close(fd)
        raise
    return fd


def share(tensors: NDArray[np.float32]) -> SharedTensors:
    """Return the tensors as a descriptor for the child: the cache file itself, or a sealed copy."""
    shape = tuple(int(d) for d in tensors.shape)
    assert len(shape) == 4
    found = _cache_file_descriptor(tensors)
    fd, offset = found if found is not None else (_sealed_copy(tensors), 0)
    return SharedTensors(fd, offset, (shape[0], shape[1], shape[2], shape[3]))


def map_rows(shared: dict[str, Any], start: int, stop: int) -> NDArray[np.float32]:
    """In the child: return rows [start, stop) mapped read-only and populated (one mapping)."""
    import numpy as np

    shape = [int(d) for d in shared["shape"]]
    if not 0 <= start < stop <= shape[0]:
        raise ValueError(f"rows {start}:{stop} are outside the {shape[0]} tensors")
    row_bytes = 4 * shape[1] * shape[2] * shape[3]
    begin = int(shared["offset"]) + start * row_bytes
    aligned = begin - begin % mmap.ALLOCATIONGRANULARITY
    length = begin - aligned + (stop - start) * row_bytes
    # MAP_POPULATE reads the rows in and fills the page tables now, on the caller's thread;
    # without it the model would take a page fault per 4 KiB while it runs.
    mapped = mmap.mmap(
        int(shared["fd"]),
        length,
        flags=mmap.MAP_SHARED | mmap.MAP_POPULATE,
        prot=mmap.PROT_READ,
        offset=aligned,
    )
    rows = np.frombuffer(
        mapped, dtype=np.float32, count=(stop - start) * row_bytes // 4, offset=begin - aligned
    )
    return rows.reshape(stop - start, *shape[1:])


class RowWindows:
    """In the child: batches of rows served from windows of many rows, mapped one at a time.

    A mapping per batch costs a map and, later, an unmap whose TLB flush interrupts the
    runtime's other threads (about 5% of a small model's throughput); a window of
    `window_bytes` is mapped once for many batches, and the address space used stays bounded.
    """

    def __init__(self, shared: dict[str, Any], *, window_bytes: int = WINDOW_BYTES) -> None:
        self._shared = shared
        shape = [int(d) for d in shared["shape"]]
        self._total = shape[0]
        self._window_rows = max(1, window_bytes // (4 * shape[1] * shape[2] * shape[3]))
        self._start = 0
        self._rows: NDArray[np.float32] | None = None

    def rows(self, start: int, stop: int) -> NDArray[np.float32]:
        """Return rows [start, stop), from the current window or a newly mapped one."""
        if not 0 <= start < stop <= self._total:
            raise ValueError(f"rows {start}:{stop} are outside the {self._total} tensors")
        window = self._rows
        if window is None or start < self._start or stop > self._start + len(window):
            # Drop the old window first, so two are never held beyond the batches in flight.
            self._rows = None
            end = min(self._total, max(stop, start + self._window_rows))
            window = map_rows(self._shared, start, end)
            self._rows, self._start = window, start
        return window[start - self._start : stop - self._start]
