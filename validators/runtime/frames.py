"""The framed protocol between the runner and its sandboxed child: a JSON head and raw bytes.

One frame is an 8-byte prefix (two little-endian uint32: head length, payload length), a JSON
object (the head: what the frame is), then the payload (model bytes, a float32 tensor in C order,
or scores). The parent reads the child's frames with a deadline and refuses a head or payload
larger than it expects, so a misbehaving child can neither hang nor flood it.

Standard library only: the child imports this before any heavy library.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
from typing import IO, Any, BinaryIO

__all__ = [
    "MAX_HEAD_BYTES",
    "Frame",
    "FrameClosed",
    "FrameError",
    "FrameReader",
    "FrameTimeout",
    "read_frame",
    "write_frame",
]

_PREFIX = struct.Struct("<II")
MAX_HEAD_BYTES = 1024 * 1024
"""Largest JSON head either side accepts; heads are a few hundred bytes."""


class FrameError(Exception):
    """The other side closed the pipe or sent something that is not a frame we accept."""


class FrameTimeout(FrameError):
    """No whole frame arrived before the deadline."""


class FrameClosed(FrameError):
    """The other side closed its end before a whole frame arrived."""


Frame = tuple[dict[str, Any], bytes]


def write_frame(stream: IO[bytes], head: dict[str, Any], payload: bytes | memoryview = b"") -> None:
    """Write one frame (head, then payload) and flush it."""
    encoded = json.dumps(head, separators=(",", ":")).encode("utf-8")
    # A numpy buffer's memoryview counts items along its first axis; the frame counts bytes.
    raw = memoryview(payload).cast("B")
    stream.write(_PREFIX.pack(len(encoded), raw.nbytes))
    stream.write(encoded)
    if raw.nbytes:
        stream.write(raw)
    stream.flush()


def _decode_head(raw: bytes) -> dict[str, Any]:
    try:
        head = json.loads(raw)
    except ValueError as exc:
        raise FrameError(f"the frame head is not JSON ({exc})") from exc
    if not isinstance(head, dict):
        raise FrameError("the frame head is not a JSON object")
    return head


def read_frame(stream: BinaryIO, *, max_payload: int) -> Frame | None:
    """Return the next frame from a blocking stream, or None at a clean end of stream."""
    prefix = stream.read(_PREFIX.size)
    if not prefix:
        return None
    if len(prefix) != _PREFIX.size:
        raise FrameError("the stream ended inside a frame prefix")
    head_length, payload_length = _PREFIX.unpack(prefix)
    if head_length > MAX_HEAD_BYTES or payload_length > max_payload:
        raise FrameError(
            f"a frame of {head_length} + {payload_length} bytes exceeds the limits "
            f"({MAX_HEAD_BYTES} + {max_payload})"
        )
    head = stream.read(head_length)
    payload = stream.read(payload_length) if payload_length else b""
    if len(head) != head_length or len(payload) != payload_length:
        raise FrameError("the stream ended inside a frame")
    return _decode_head(head), payload


class FrameReader:
    """Frames from a non-blocking-safe descriptor with a deadline, read through one buffer.

    Each `select` + `os.read` takes whatever has arrived (up to 1 MiB), so a whole small frame
    usually costs one system call instead of three.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = bytearray()

    def _fill(self, count: int, deadline: float) -> None:
        while len(self._buffer) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise FrameTimeout("no answer before the deadline")
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                raise FrameTimeout("no answer before the deadline")
            chunk = os.read(self.fd, max(count - len(self._buffer), 1 << 20))
            if not chunk:
                raise FrameClosed("the child closed its output")
            self._buffer += chunk

    def _take(self, count: int, deadline: float) -> bytes:
        self._fill(count, deadline)
        taken = bytes(self._buffer[:count])
        del self._buffer[:count]
        return taken

    def read(self, *, deadline: float, max_payload: int) -> Frame:
        """Return the next frame, raising FrameTimeout at `deadline` (on `time.monotonic()`).

        `max_payload` is the largest payload the caller expects (the declared scores of one
        batch, with room for a wrong shape), so a child cannot make the parent allocate more.
        """
        head_length, payload_length = _PREFIX.unpack(self._take(_PREFIX.size, deadline))
        if head_length > MAX_HEAD_BYTES or payload_length > max_payload:
            raise FrameError(
                f"the child sent a frame of {head_length} + {payload_length} bytes; at most "
                f"{MAX_HEAD_BYTES} + {max_payload} were expected"
            )
        head = _decode_head(self._take(head_length, deadline))
        payload = self._take(payload_length, deadline) if payload_length else b""
        return head, payload
