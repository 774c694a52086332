"""`registry.app.serve` in a subprocess on a free port, for tests that need the real server.

The server reads its settings from the environment, like `assay serve`: ASSAY_HOME (and
ASSAY_DATABASE_URL on PostgreSQL) point at the test's migrated installation.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

START_TIMEOUT_S = 60
REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class RunningServer:
    url: str
    port: int
    pid: int
    log: Path


@contextmanager
def serve_in_subprocess(settings: Any, log_dir: Path, **env: str) -> Iterator[RunningServer]:
    """Runs `serve()` for the settings' installation; `env` adds ASSAY_* variables."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ASSAY_")}
    environment.update({"ASSAY_HOME": str(settings.home), "ASSAY_ENVIRONMENT": "test", **env})
    if settings.database_url:
        environment["ASSAY_DATABASE_URL"] = settings.database_url
    log = log_dir / f"serve-{port}.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-c", f"from registry.app import serve; serve(port={port})"],
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT,  # `python -c` puts the working directory first: this checkout's code
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer within {START_TIMEOUT_S} s")
            time.sleep(0.1)
        yield RunningServer(url=url, port=port, pid=process.pid, log=log)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)
