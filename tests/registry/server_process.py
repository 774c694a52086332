"""The real server in a subprocess on a free port, for tests that need it.

`serve_in_subprocess` runs `registry.app.serve` (or another `python -c` program) for a test's
installation: the server reads its settings from the environment, like `assay serve`, so ASSAY_HOME
(and ASSAY_DATABASE_URL on PostgreSQL) point at the test's migrated installation.
`server_process` is the part under it for any command: start, wait until /api/v1/health answers,
stop.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20
REPO_ROOT = Path(__file__).resolve().parents[2]
SERVE = "from registry.app import serve; serve(port={port})"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_environment(settings: Any, **env: str) -> dict[str, str]:
    """This process's environment without ASSAY_*, pointed at the settings' installation."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ASSAY_")}
    environment.update({"ASSAY_HOME": str(settings.home_dir), "ASSAY_ENVIRONMENT": "test", **env})
    if settings.database_url:
        environment["ASSAY_DATABASE_URL"] = settings.database_url
    # This checkout's code, whatever the virtual environment's editable install points at.
    environment["PYTHONPATH"] = str(REPO_ROOT)
    return environment


@dataclass(frozen=True)
class RunningServer:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL, as a crash would: the server gets no chance to clean up."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)


@contextmanager
def server_process(
    command: Sequence[str],
    *,
    port: int,
    env: dict[str, str],
    log: Path,
    stop_signal: signal.Signals = signal.SIGINT,
    name: str = "the server",
) -> Iterator[RunningServer]:
    """Runs `command` (which serves on `port`) until /api/v1/health answers; stops it on exit.

    On exit a live server gets `stop_signal`, then SIGKILL if it has not stopped in time.
    """
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            list(command),
            env=env,
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
                pytest.fail(f"{name} exited with {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{name} did not answer within {START_TIMEOUT_S} s:\n{log.read_text()}")
            time.sleep(0.1)
        yield RunningServer(url=url, port=port, process=process, log=log)
    finally:
        if process.poll() is None:
            process.send_signal(stop_signal)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)


@contextmanager
def serve_in_subprocess(
    settings: Any,
    log_dir: Path,
    *,
    code: str = SERVE,
    stop_signal: signal.Signals = signal.SIGINT,
    **env: str,
) -> Iterator[RunningServer]:
    """Runs `serve()` for the settings' installation; `env` adds ASSAY_* variables.

    `code` is another `python -c` program to run instead, with `{port}` where it listens.
    """
    port = free_port()
    with server_process(
        [sys.executable, "-c", code.format(port=port)],
        port=port,
        env=server_environment(settings, **env),
        log=log_dir / f"serve-{port}.log",
        stop_signal=stop_signal,
    ) as running:
        yield running
