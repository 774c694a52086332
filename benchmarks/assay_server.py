"""A fresh Assay installation in a temporary ASSAY_HOME, served by the real server process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from benchmarks._common import REPO_ROOT, VENV_BIN, BenchmarkError, benchmark_environment, progress

API = "/api/v1"
START_TIMEOUT_S = 60.0
# Long enough for a large artifact's upload plus its intake in the child process.
REQUEST_TIMEOUT_S = 900.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def create_installation(home: Path, database_url: str | None = None) -> str:
    """Migrates a new database (under `home`, or at `database_url`); gives the admin's token."""
    from registry.db import dispose_engines, upgrade_database
    from registry.principals.admin import init_admin
    from registry.settings import Settings

    settings = Settings(home=home, database_url=database_url)
    try:
        upgrade_database(settings)
        return init_admin(settings=settings)
    finally:
        # The server process opens its own connections; ours must not hold the SQLite file.
        dispose_engines()


SERVE = "from registry.app import serve; serve(port={port})"


class AssayServer:
    """Runs `assay serve` for a fresh installation; falls back to `registry.app.serve`.

    `code` runs that `python -c` program instead (from the repository root, so that it imports
    this checkout's registry), with `{port}` where it listens; `database_url` puts the
    installation on PostgreSQL. Used as a context manager: the server is stopped and its log kept
    on exit.
    """

    def __init__(
        self, home: Path, *, code: str | None = None, database_url: str | None = None
    ) -> None:
        self.home = home
        self.code = code
        self.database_url = database_url
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = home.parent / f"{home.name}-server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.command: list[str] = []
        self.admin_token = ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def __enter__(self) -> AssayServer:
        self.home.mkdir(parents=True, exist_ok=True)
        self.admin_token = create_installation(self.home, self.database_url)
        python = [sys.executable, "-c", (self.code or SERVE).format(port=self.port)]
        commands = (
            [python]
            if self.code
            else [[str(VENV_BIN / "assay"), "serve", "--port", str(self.port)], python]
        )
        failures = []
        for command in commands:
            if self._start(command):
                self.command = command
                return self
            failures.append(f"{' '.join(command)}:\n{_tail(self.log_path)}")
        raise BenchmarkError("the Assay server did not start:\n" + "\n\n".join(failures))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop()

    def _start(self, command: list[str]) -> bool:
        env = {k: v for k, v in benchmark_environment().items() if not k.startswith("ASSAY_")}
        env["ASSAY_HOME"] = str(self.home)
        if self.database_url:
            env["ASSAY_DATABASE_URL"] = self.database_url
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                env=env,
                cwd=REPO_ROOT,  # `python -c` puts the working directory first: this checkout
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                if httpx.get(f"{self.base_url}{API}/health", timeout=1.0).status_code == 200:
                    progress(f"Assay server up on port {self.port} (pid {self.pid})")
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self._stop()
        return False

    def _stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    @property
    def command_display(self) -> str:
        """The command that runs the server, as a user would type it (paths shortened)."""
        shown = [os.path.relpath(self.command[0], REPO_ROOT), *self.command[1:]]
        return "ASSAY_HOME=... " + " ".join(shown).replace(str(self.port), "PORT")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url + API, timeout=REQUEST_TIMEOUT_S)


def _checked(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code >= 300:
        raise BenchmarkError(
            f"{what} was refused by the server: HTTP {response.status_code} {response.text[:2000]}"
        )
    body: dict[str, Any] = response.json()
    return body


def provision_vendor_model(
    client: httpx.Client, admin_token: str, *, model_name: str
) -> tuple[str, str]:
    """Creates a vendor, its token and one model over HTTP; gives (vendor token, model id)."""
    admin = {"Authorization": f"Bearer {admin_token}"}
    vendor = _checked(
        client.post("/vendors", json={"name": "bench-vendor"}, headers=admin), "creating a vendor"
    )
    token = _checked(
        client.post(
            "/tokens",
            json={"role": "vendor", "name": "bench-vendor-engineer", "vendor_id": vendor["id"]},
            headers=admin,
        ),
        "issuing a vendor token",
    )["token"]
    model = _checked(
        client.post(
            "/models",
            json={"name": model_name, "description": "benchmark"},
            headers={"Authorization": f"Bearer {token}"},
        ),
        "creating a model",
    )
    return token, model["id"]


def submit(
    client: httpx.Client, token: str, model_id: str, artifact: Path, manifest: dict[str, Any]
) -> tuple[float, dict[str, Any]]:
    """Uploads one version, the artifact streamed from disk; gives (wall seconds, version)."""
    with artifact.open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        files: dict[str, tuple[str, IO[bytes] | bytes, str]] = {
            "manifest": ("manifest.json", json.dumps(manifest).encode(), "application/json"),
            "artifact": (artifact.name, file, "application/octet-stream"),
        }
        started = time.perf_counter()
        response = client.post(
            f"/models/{model_id}/versions",
            files=files,
            headers={"Authorization": f"Bearer {token}"},
        )
        wall_s = time.perf_counter() - started
    version = _checked(response, f"submitting {artifact.name} ({size} bytes)")
    if version.get("size_bytes") not in (None, size):
        raise BenchmarkError(f"the server recorded {version['size_bytes']} bytes, sent {size}")
    return wall_s, version


def intake_alone(artifact: Path, manifest: dict[str, Any]) -> float:
    """Seconds the intake child takes on the artifact when called directly (for the breakdown)."""
    from validators.manifest import parse_manifest
    from validators.runtime.intake import inspect_in_subprocess

    parsed = parse_manifest(manifest)
    started = time.perf_counter()
    inspect_in_subprocess(artifact, parsed)
    return time.perf_counter() - started
