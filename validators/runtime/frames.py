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
    "FrameError",
    "FrameTimeout",
    "read_frame",
    "read_frame_by",
    "write_frame",
]

_PREFIX = struct.Struct("<II")
MAX_HEAD_BYTES = 1024 * 1024
"""Largest JSON head either side accepts; heads are a few hundred bytes."""


class FrameError(Exception):
    """The other side closed the pipe or sent something that is not a frame we accept."""


class FrameTimeout(FrameError):
    """No whole frame arrived before the deadline."""


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


def _read_exactly(fd: int, count: int, deadline: float) -> bytes:
    """Return `count` bytes from the non-seekable descriptor `fd`, or raise at the deadline."""
    chunks: list[bytes] = []
    remaining = count
    while remaining:
        left = deadline - time.monotonic()
        if left <= 0:
            raise FrameTimeout("no answer before the deadline")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            raise FrameTimeout("no answer before the deadline")
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise FrameError("the child closed its output")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame_by(fd: int, *, deadline: float, max_payload: int) -> Frame:
    """Return the next frame from descriptor `fd`, raising FrameTimeout at `deadline`.

    `deadline` is on `time.monotonic()`; `max_payload` is the largest payload the caller
    expects (the declared scores of one batch), so a child cannot make the parent allocate more.
    """
    head_length, payload_length = _PREFIX.unpack(_read_exactly(fd, _PREFIX.size, deadline))
    if head_length > MAX_HEAD_BYTES or payload_length > max_payload:
        raise FrameError(
            f"the child sent a frame of {head_length} + {payload_length} bytes; at most "
            f"{MAX_HEAD_BYTES} + {max_payload} were expected"
        )
    head = _decode_head(_read_exactly(fd, head_length, deadline))
    payload = _read_exactly(fd, payload_length, deadline) if payload_length else b""
    return head, payload
