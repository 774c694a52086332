"""Tests of the runner's framed protocol: round trips, bounds, deadlines and a closed pipe."""

from __future__ import annotations

import io
import os
import time

import pytest

from validators.runtime.frames import (
    FrameError,
    FrameReader,
    FrameTimeout,
    read_frame,
    write_frame,
)


def test_a_frame_round_trips_through_a_stream() -> None:
    stream = io.BytesIO()
    write_frame(stream, {"op": "infer", "start": 0}, b"\x00\x01")
    stream.seek(0)
    assert read_frame(stream, max_payload=2) == ({"op": "infer", "start": 0}, b"\x00\x01")
    assert read_frame(stream, max_payload=2) is None


def test_a_numpy_buffer_is_counted_in_bytes() -> None:
    import numpy as np

    stream = io.BytesIO()
    write_frame(stream, {}, np.zeros((2, 3), dtype=np.float32).data)
    stream.seek(0)
    frame = read_frame(stream, max_payload=24)
    assert frame is not None and len(frame[1]) == 24


def test_a_payload_over_the_limit_is_refused() -> None:
    stream = io.BytesIO()
    write_frame(stream, {}, b"x" * 10)
    stream.seek(0)
    with pytest.raises(FrameError, match="exceeds the limits"):
        read_frame(stream, max_payload=9)


def test_the_reader_returns_frames_through_a_pipe_and_bounds_them() -> None:
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(os.dup(write_end), "wb") as writer:
            write_frame(writer, {"ok": True}, b"abc")
            write_frame(writer, {"ok": True}, b"too long")
        reader = FrameReader(read_end)
        deadline = time.monotonic() + 5
        assert reader.read(deadline=deadline, max_payload=3) == ({"ok": True}, b"abc")
        with pytest.raises(FrameError, match="at most"):
            reader.read(deadline=deadline, max_payload=3)
    finally:
        os.close(read_end)
        os.close(write_end)


def test_the_reader_gives_up_at_its_deadline() -> None:
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(FrameTimeout):
            FrameReader(read_end).read(deadline=time.monotonic() + 0.05, max_payload=0)
    finally:
        os.close(read_end)
        os.close(write_end)


def test_the_reader_reports_a_closed_pipe() -> None:
    read_end, write_end = os.pipe()
    os.close(write_end)
    try:
        with pytest.raises(FrameError, match="closed"):
            FrameReader(read_end).read(deadline=time.monotonic() + 5, max_payload=0)
    finally:
        os.close(read_end)
