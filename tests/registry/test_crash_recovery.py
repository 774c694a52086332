"""A server killed with SIGKILL during uploads leaves debris; the next start-up clears it (item 3).

Real processes throughout: the server is `registry.app.serve` in a subprocess on the test's
installation (SQLite, and PostgreSQL when configured). Three uploads stream into it and are held
open; a second server on the same ASSAY_HOME starts meanwhile and must leave their staging files
alone (they belong to a live process); then both are killed with SIGKILL. A file placed in the
store with no version row stands for a kill between the rename into the store and the commit. A
fresh server must then start with no `.part` file in tmp, the orphan quarantined with its audit
event, the registered version's artifact in place, and an intact audit chain; `assay doctor`
afterwards finds nothing left to do.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.storage import ArtifactStore
from tests.registry.server_process import (
    REPO_ROOT,
    RunningServer,
    serve_in_subprocess,
    server_environment,
)
from tests.registry.test_submissions import (  # noqa: F401
    BOUNDARY,
    MODEL_NAME,
    Example,
    example,
    multipart_headers,
)

API = "/api/v1"
START_TIMEOUT_S = 60
UPLOADS = 3
CHUNK = 256 * 1024


@contextmanager
def server(settings: Any, log_dir: Path) -> Iterator[RunningServer]:
    """`serve()` on the settings' installation; SIGKILL on exit, as after a crash."""
    with serve_in_subprocess(settings, log_dir, stop_signal=signal.SIGKILL) as running:
        yield running


def _held_upload(
    url: str, headers: dict[str, str], model_id: str, release: threading.Event
) -> None:
    """Streams a submission whose artifact never ends until `release`; the server dies first."""

    def body() -> Iterator[bytes]:
        yield (
            f"--{BOUNDARY}\r\n"
            'Content-Disposition: form-data; name="manifest"\r\n'
            "Content-Type: application/json\r\n\r\n"
            "{}\r\n"
            f"--{BOUNDARY}\r\n"
            'Content-Disposition: form-data; name="artifact"; filename="model.safetensors"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        for _ in range(8):
            yield b"\x5a" * CHUNK
        release.wait(START_TIMEOUT_S)
        while True:  # the server is gone: keep writing until the connection fails
            yield b"\x5a" * CHUNK

    with contextlib.suppress(httpx.HTTPError):  # expected: the server is killed mid-upload
        httpx.post(
            f"{url}{API}/models/{model_id}/versions",
            content=body(),
            headers={**headers, **multipart_headers()},
            timeout=START_TIMEOUT_S,
        )


def _part_files(settings: Any) -> list[Path]:
    return sorted(settings.tmp_dir.glob("*.part")) if settings.tmp_dir.exists() else []


def _wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting until {what}"
        time.sleep(0.05)


@dataclass
class Aftermath:
    """What was observed around the kills and after the restart."""

    version: dict[str, Any]
    orphan: str
    parts_while_second_server_started: list[Path]
    parts_after_second_server_started: list[Path]
    parts_after_kill: list[Path]
    parts_after_restart: list[Path]
    orphan_in_store_after_restart: bool
    quarantine_after_restart: list[str]
    version_artifact_in_store: bool
    quarantine_events: list[dict[str, Any]]
    verification: dict[str, Any]
    restart_log: str
    doctor: dict[str, Any]
    doctor_exit: int


@pytest.fixture
def aftermath(
    settings: Any,
    admin_token: str,
    example: Callable[[int], Example],  # noqa: F811
    tmp_path: Path,
) -> Aftermath:
    admin = {"Authorization": f"Bearer {admin_token}"}
    store = ArtifactStore(settings.artifacts_dir, settings.tmp_dir)
    release = threading.Event()
    uploads: list[threading.Thread] = []
    try:
        with server(settings, tmp_path) as first:
            with httpx.Client(base_url=first.url, timeout=120) as http:
                vendor_id = http.post(f"{API}/vendors", json={"name": "acme"}, headers=admin)
                vendor_id.raise_for_status()
                token = http.post(
                    f"{API}/tokens",
                    json={"role": "vendor", "name": "acme-ci", "vendor_id": vendor_id.json()["id"]},
                    headers=admin,
                )
                token.raise_for_status()
                vendor = {"Authorization": f"Bearer {token.json()['token']}"}
                model = http.post(f"{API}/models", json={"name": MODEL_NAME}, headers=vendor)
                model.raise_for_status()
                model_id = model.json()["id"]
                item = example(0)
                files = {
                    "manifest": (
                        "manifest.json",
                        json.dumps(item.manifest_for()),
                        "application/json",
                    ),
                    "artifact": ("model.onnx", item.artifact, "application/octet-stream"),
                }
                submitted = http.post(
                    f"{API}/models/{model_id}/versions", files=files, headers=vendor
                )
                assert submitted.status_code == 201, submitted.text
            for _ in range(UPLOADS):
                thread = threading.Thread(
                    target=_held_upload,
                    args=(first.url, vendor, model_id, release),
                    daemon=True,
                )
                thread.start()
                uploads.append(thread)
            _wait_until(
                lambda: (
                    len(_part_files(settings)) == UPLOADS
                    and all(p.stat().st_size > 0 for p in _part_files(settings))
                ),
                "every upload is streaming into a staging file",
            )
            while_second = _part_files(settings)
            with server(settings, tmp_path) as second:
                after_second = _part_files(settings)
                # A kill between the rename into the store and the commit of the version row.
                staged = store.stage()
                staged.write(b"an artifact whose version row was never committed")
                orphan = staged.finish()
                store.commit(staged, orphan)
                first.kill()
                second.kill()
            after_kill = _part_files(settings)
    finally:
        release.set()
        for thread in uploads:
            thread.join(START_TIMEOUT_S)

    with server(settings, tmp_path) as restarted:
        with httpx.Client(base_url=restarted.url, timeout=120) as http:
            events = http.get(f"{API}/audit", params={"limit": 500}, headers=admin).json()["data"]
            verification = http.get(f"{API}/audit/verify", headers=admin).json()
        after_restart = _part_files(settings)
        orphan_in_store = store.exists(orphan)
        quarantine_dir = settings.home_dir / "quarantine"
        quarantine = (
            sorted(p.name for p in quarantine_dir.iterdir()) if quarantine_dir.exists() else []
        )
        version_in_store = store.exists(submitted.json()["digest"])
        restart_log = restarted.log.read_text()
        doctor = subprocess.run(
            [sys.executable, "-c", "from registry.cli import main; main()", "doctor", "--json"],
            cwd=REPO_ROOT,
            env=server_environment(settings),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    return Aftermath(
        version=submitted.json(),
        orphan=orphan,
        parts_while_second_server_started=while_second,
        parts_after_second_server_started=after_second,
        parts_after_kill=after_kill,
        parts_after_restart=after_restart,
        orphan_in_store_after_restart=orphan_in_store,
        quarantine_after_restart=quarantine,
        version_artifact_in_store=version_in_store,
        quarantine_events=[e for e in events if e["action"] == "artifact.quarantined"],
        verification=verification,
        restart_log=restart_log,
        doctor=json.loads(doctor.stdout) if doctor.stdout else {"stderr": doctor.stderr},
        doctor_exit=doctor.returncode,
    )


def test_kill_during_uploads_then_restart_leaves_no_debris(aftermath: Aftermath) -> None:
    # The debris was really there: the kill left every upload's staging file behind.
    assert len(aftermath.parts_after_kill) == UPLOADS
    # A second server starting beside a live one left the live uploads alone.
    assert (
        aftermath.parts_after_second_server_started == aftermath.parts_while_second_server_started
    )
    # The restart removed the dead staging files ...
    assert aftermath.parts_after_restart == []
    # ... quarantined the artifact that no version references, with its audit event ...
    assert not aftermath.orphan_in_store_after_restart
    assert aftermath.quarantine_after_restart == [aftermath.orphan.removeprefix("sha256:")]
    [event] = aftermath.quarantine_events
    assert (event["actor_id"], event["payload"]["digest"]) == ("system", aftermath.orphan)
    assert aftermath.orphan in aftermath.restart_log
    # ... kept the registered version's artifact, and the chain still verifies.
    assert aftermath.version_artifact_in_store
    assert aftermath.verification["ok"] is True, aftermath.verification
    # Nothing left for `assay doctor` to do.
    assert aftermath.doctor_exit == 0, aftermath.doctor
    assert aftermath.doctor["ok"] is True
    assert (aftermath.doctor["removed_staging"], aftermath.doctor["quarantined"]) == ([], [])
