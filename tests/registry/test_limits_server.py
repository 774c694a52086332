"""The real server under a 300 MB body: its memory stays flat, with and without a token.

The server runs as uvicorn in a child process (h11 and httptools) on SQLite in a temporary
ASSAY_HOME; a raw socket streams the body so the test controls every byte, and psutil samples the
server's resident memory while it does.
"""

from __future__ import annotations

import select
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import psutil
import pytest

from tests.registry.server_process import serve_in_subprocess

BODY_BYTES = 300 * 1024 * 1024
CHUNK = b"[" + b" " * (1024 * 1024 - 1)
RSS_GROWTH_LIMIT = 50 * 1024 * 1024


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    admin_token: str


@pytest.fixture(scope="module", params=["h11", "httptools"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    from registry.db import dispose_engines, upgrade_database
    from registry.principals.admin import init_admin
    from registry.settings import Settings

    directory = tmp_path_factory.mktemp("server")
    settings = Settings(home=directory / "home", environment="test")
    upgrade_database(settings)
    token = init_admin(name="admin", settings=settings)
    dispose_engines()
    # uvicorn with the protocol under test, not `serve()` (which always runs h11).
    code = (
        "import uvicorn; uvicorn.run('registry.app:create_app', factory=True, "
        f"host='127.0.0.1', port={{port}}, http={request.param!r}, log_level='warning')"
    )
    with serve_in_subprocess(settings, directory, code=code, stop_signal=signal.SIGTERM) as running:
        yield Server(port=running.port, process=running.process, admin_token=token)


class PeakRss:
    """Samples a process's resident memory in a thread; `peak` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(0.01)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


@dataclass
class Outcome:
    status: int | None
    sent: int


def _stream(port: int, *, token: str | None, chunked: bool) -> Outcome:
    """POSTs a 300 MB JSON body to /vendors; stops sending once the server has answered."""
    head = [
        "POST /api/v1/vendors HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        "Transfer-Encoding: chunked" if chunked else f"Content-Length: {BODY_BYTES}",
    ]
    if token is not None:
        head.append(f"Authorization: Bearer {token}")
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sent = 0
    answer = b""
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        while sent < BODY_BYTES:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            frame = (b"%x\r\n" % len(CHUNK) + CHUNK + b"\r\n") if chunked else CHUNK
            try:
                sock.sendall(frame)
            except OSError:
                break
            sent += len(CHUNK)
        if chunked and sent >= BODY_BYTES:
            sock.sendall(b"0\r\n\r\n")
        while b"\r\n" not in answer:
            try:
                data = sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            answer += data
    finally:
        sock.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None
    return Outcome(status=status, sent=sent)


@pytest.mark.parametrize(
    ("authenticated", "chunked", "expected"),
    [(False, False, 401), (False, True, 401), (True, False, 413), (True, True, 413)],
    ids=["no-token-length", "no-token-chunked", "token-length", "token-chunked"],
)
def test_server_memory_stays_flat_under_a_300_megabyte_body(
    server: Server, authenticated: bool, chunked: bool, expected: int
) -> None:
    token = server.admin_token if authenticated else None
    with PeakRss(server.process.pid) as rss:
        outcome = _stream(server.port, token=token, chunked=chunked)
    assert outcome.status == expected, outcome
    growth = rss.peak - rss.baseline
    print(f"RSS growth {growth / 2**20:.1f} MiB; client sent {outcome.sent / 2**20:.0f} MiB")
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew by {growth / 2**20:.1f} MiB ({outcome})"
    assert server.process.poll() is None, "the server died"
