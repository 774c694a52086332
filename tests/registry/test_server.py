"""The real server's limits on a request head: its size (431) and the time it may take (408).

Each test talks raw HTTP/1.1 over a socket to `registry.app.serve` in a subprocess, started with a
head deadline of one second so that the tests are quick; the tests assert that the connection is
answered and closed, never how long that took.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.registry.server_process import RunningServer, serve_in_subprocess

HEAD_TIMEOUT_S = "1"
# Below the default (64 KiB), so that the tests show the setting reaches the server.
MAX_HEADER_BYTES = 16 * 1024
# Generous: a socket read that waits this long means the server never answered.
READ_TIMEOUT_S = 60
MIB = 1024 * 1024


@pytest.fixture
def server(settings: Any, tmp_path: Path) -> Iterator[RunningServer]:
    if settings.database_url:
        pytest.skip("the HTTP protocol does not depend on the database: tested on SQLite")
    with serve_in_subprocess(
        settings,
        tmp_path,
        ASSAY_HEADER_TIMEOUT_S=HEAD_TIMEOUT_S,
        ASSAY_MAX_HEADER_BYTES=str(MAX_HEADER_BYTES),
    ) as running:
        yield running


def connect(server: RunningServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=READ_TIMEOUT_S)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def status_and_body(response: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


def health_request() -> bytes:
    return b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n"


def read_one_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length body, leaving the connection open."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_the_defaults_are_a_64_kib_head_and_5_s_to_send_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from registry.settings import Settings

    monkeypatch.delenv("ASSAY_MAX_HEADER_BYTES", raising=False)
    monkeypatch.delenv("ASSAY_HEADER_TIMEOUT_S", raising=False)
    defaults = Settings()
    assert (defaults.max_header_bytes, defaults.header_timeout_s) == (64 * 1024, 5.0)


def test_a_normal_request_is_answered_and_the_connection_kept_alive(
    server: RunningServer,
) -> None:
    with connect(server) as sock:
        for _ in range(2):
            sock.sendall(health_request())
            status, body = status_and_body(read_one_response(sock))
            assert (status, body["status"]) == (200, "ok")


def test_a_head_over_the_cap_gets_431_and_the_connection_is_closed(
    server: RunningServer,
) -> None:
    oversized = b"X-Padding: " + b"a" * (MAX_HEADER_BYTES + 4096) + b"\r\n"
    with connect(server) as sock:
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\n" + oversized)
        status, body = status_and_body(read_until_closed(sock))
    assert status == 431
    assert body["error"] == "request_header_too_large"
    assert "16 KiB" in body["detail"]


def test_a_head_under_the_cap_is_served(server: RunningServer) -> None:
    padding = b"X-Padding: " + b"a" * (MAX_HEADER_BYTES // 2) + b"\r\n"
    with connect(server) as sock:
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\n" + padding + b"\r\n")
        status, _ = status_and_body(read_one_response(sock))
    assert status == 200


def test_an_unfinished_head_gets_408_and_the_connection_is_closed(server: RunningServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: local")
        status, body = status_and_body(read_until_closed(sock))
    assert status == 408
    assert body["error"] == "request_timeout"
    assert "within 1 s" in body["detail"]


def test_a_head_sent_a_byte_at_a_time_is_cut_off(server: RunningServer) -> None:
    """The deadline counts from the start of the head: trickling bytes does not extend it."""
    head = b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"s" * 4000
    sent = 0
    with connect(server) as sock:
        sock.setblocking(False)
        answer = b""
        for byte in head:
            try:
                sock.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 1
            try:
                answer = sock.recv(65536)
                break  # the server answered (or closed: b"")
            except BlockingIOError:
                time.sleep(0.05)
        sock.settimeout(READ_TIMEOUT_S)  # back to blocking reads, with the timeout
        answer += read_until_closed(sock)
    assert sent < len(head), "the server kept reading a head sent a byte at a time"
    status, _ = status_and_body(answer)
    assert status == 408


def test_a_connection_that_sends_nothing_is_closed(server: RunningServer) -> None:
    with connect(server) as sock:
        assert read_until_closed(sock) == b""


def test_a_kept_alive_connection_that_stalls_in_its_next_head_is_closed(
    server: RunningServer,
) -> None:
    with connect(server) as sock:
        sock.sendall(health_request())
        assert status_and_body(read_one_response(sock))[0] == 200
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\n")
        status, _ = status_and_body(read_until_closed(sock))
    assert status == 408


def test_a_256_mb_header_does_not_grow_the_server(server: RunningServer) -> None:
    """The server stops reading at the cap: its memory does not follow what the client sends."""
    process = psutil.Process(server.pid)
    before = process.memory_info().rss
    chunk = b"a" * MIB
    sent = 0
    with connect(server) as sock:
        try:
            sock.sendall(b"GET /api/v1/models HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
            while sent < 256 * MIB:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        read_until_closed(sock)
    grown = process.memory_info().rss - before
    assert sent < 256 * MIB, "the server read all 256 MB of one header"
    assert grown < 32 * MIB, f"the server grew by {grown / MIB:.0f} MiB"
    # And it still serves.
    with connect(server) as sock:
        sock.sendall(health_request())
        assert status_and_body(read_one_response(sock))[0] == 200
