"""Concurrent submissions through a real HTTP server (uvicorn in a thread).

Twenty uploads to one model at once must come out as versions 1..20 with no gap and no duplicate,
and the audit chain must stay one straight line. On PostgreSQL the model-row lock and the audit
advisory lock do the serializing; on SQLite, BEGIN IMMEDIATE serializes every writer. Both run the
same twenty submissions.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DATABASES

MODEL_NAME = "lesion-detector"
API = "/api/v1"
SUBMISSIONS = 20


@dataclass(frozen=True)
class Example:
    artifact: bytes
    manifest: dict[str, Any]

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.artifact).hexdigest()


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> list[Example]:
    """Twenty example ONNX models, one per variant, so that every digest differs."""
    from validators.runtime.example import write_example_model

    made = []
    for variant in range(SUBMISSIONS):
        model_path, manifest_path = write_example_model(
            tmp_path_factory.mktemp(f"example-{variant}"), variant=variant
        )
        manifest = json.loads(Path(manifest_path).read_text())
        made.append(
            Example(
                artifact=Path(model_path).read_bytes(), manifest={**manifest, "name": MODEL_NAME}
            )
        )
    assert len({e.digest for e in made}) == SUBMISSIONS
    return made


@contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Serves the app with uvicorn on a free port of 127.0.0.1; gives back its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive(), "the server thread ended before it started listening"
            assert time.monotonic() < deadline, "the server did not start within 30 s"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@dataclass(frozen=True)
class Setup:
    url: str
    admin: dict[str, str]
    vendor: dict[str, str]
    model_id: str


@contextmanager
def setup_on_live_server(app: Any, admin_token: str) -> Iterator[Setup]:
    """Serves the app; creates a vendor, its token and a model through the API."""
    admin = {"Authorization": f"Bearer {admin_token}"}
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        vendor = http.post(f"{API}/vendors", json={"name": "acme"}, headers=admin)
        assert vendor.status_code == 201, vendor.text
        token = http.post(
            f"{API}/tokens",
            json={"role": "vendor", "name": "acme-ci", "vendor_id": vendor.json()["id"]},
            headers=admin,
        )
        assert token.status_code == 201, token.text
        vendor_headers = {"Authorization": f"Bearer {token.json()['token']}"}
        model = http.post(f"{API}/models", json={"name": MODEL_NAME}, headers=vendor_headers)
        assert model.status_code == 201, model.text
        yield Setup(url=url, admin=admin, vendor=vendor_headers, model_id=model.json()["id"])


@pytest.fixture
def live(app: Any, admin_token: str) -> Iterator[Setup]:
    with setup_on_live_server(app, admin_token) as setup:
        yield setup


def submit_all_at_once(
    setup: Setup,
    uploads: list[Example],
    *,
    idempotency_key: str | None = None,
) -> list[httpx.Response]:
    """Posts every upload from its own thread, released together by a barrier."""
    barrier = threading.Barrier(len(uploads))

    def post(example: Example) -> httpx.Response:
        headers = dict(setup.vendor)
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        files = {
            "manifest": ("manifest.json", json.dumps(example.manifest), "application/json"),
            "artifact": ("model.onnx", example.artifact, "application/octet-stream"),
        }
        with httpx.Client(base_url=setup.url, timeout=300) as http:
            barrier.wait(timeout=60)
            return http.post(
                f"{API}/models/{setup.model_id}/versions", files=files, headers=headers
            )

    with ThreadPoolExecutor(max_workers=len(uploads)) as pool:
        return list(pool.map(post, uploads))


def audit_events(setup: Setup) -> list[dict[str, Any]]:
    with httpx.Client(base_url=setup.url, timeout=60) as http:
        page = http.get(f"{API}/audit", params={"limit": 500}, headers=setup.admin).json()
    assert page["count"] == len(page["data"])
    events: list[dict[str, Any]] = page["data"]
    return events


@contextmanager
def installation(request: pytest.FixtureRequest, database: str, home: Path) -> Iterator[Any]:
    """Settings for a fresh migrated installation, as the `settings` fixture makes them.

    Module-scoped here, so that the expensive concurrent run happens once per database and each
    test below asserts one thing about it.
    """
    import shutil
    import uuid

    from registry.db import dispose_engines
    from registry.settings import Settings
    from tests.conftest import _pg_execute, _pg_url_for

    home.mkdir()
    if database == "sqlite":
        shutil.copy(request.getfixturevalue("sqlite_template"), home / "assay.db")
        yield Settings(home=home, environment="test")
        dispose_engines()
        return
    name = f"assay_c_{uuid.uuid4().hex[:12]}"
    _pg_execute(
        f'CREATE DATABASE "{name}" TEMPLATE "{request.getfixturevalue("postgres_template")}"'
    )
    try:
        yield Settings(home=home, environment="test", database_url=_pg_url_for(name))
    finally:
        dispose_engines()
        _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass(frozen=True)
class ConcurrentRun:
    """Everything observed after N simultaneous submissions of distinct artifacts."""

    uploads: list[Example]
    responses: list[httpx.Response]
    listed: dict[str, Any]
    events: list[dict[str, Any]]
    verification: dict[str, Any]


@pytest.fixture(scope="module", params=DATABASES)
def concurrent_run(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    examples: list[Example],
) -> Iterator[ConcurrentRun]:
    from registry.app import create_app
    from registry.principals.admin import init_admin

    home = tmp_path_factory.mktemp("concurrent") / "home"
    with installation(request, request.param, home) as settings:
        admin_token = init_admin(name="admin", settings=settings)
        with setup_on_live_server(create_app(settings), admin_token) as setup:
            uploads = examples
            responses = submit_all_at_once(setup, uploads)
            with httpx.Client(base_url=setup.url, timeout=60) as http:
                listed = http.get(
                    f"{API}/models/{setup.model_id}/versions", headers=setup.vendor
                ).json()
                verification = http.get(f"{API}/audit/verify", headers=setup.admin).json()
            events = audit_events(setup)
        yield ConcurrentRun(
            uploads=uploads,
            responses=responses,
            listed=listed,
            events=events,
            verification=verification,
        )


def test_concurrent_submissions_all_succeed_with_their_own_digest(
    concurrent_run: ConcurrentRun,
) -> None:
    run = concurrent_run
    assert [r.status_code for r in run.responses] == [201] * len(run.uploads), [
        r.text for r in run.responses if r.status_code != 201
    ]
    assert [r.json()["digest"] for r in run.responses] == [u.digest for u in run.uploads]


def test_concurrent_submissions_are_numbered_1_to_n_without_gaps_or_duplicates(
    concurrent_run: ConcurrentRun,
) -> None:
    run = concurrent_run
    expected = list(range(1, len(run.uploads) + 1))
    assert sorted(r.json()["number"] for r in run.responses) == expected
    assert run.listed["count"] == len(run.uploads)
    assert [v["number"] for v in run.listed["data"]] == expected


def test_concurrent_submissions_keep_the_audit_chain_linear(
    concurrent_run: ConcurrentRun,
) -> None:
    events = concurrent_run.events
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert all(e["prev_hash"] == p["hash"] for p, e in itertools.pairwise(events))
    assert concurrent_run.verification["ok"] is True, concurrent_run.verification
    assert concurrent_run.verification["length"] == len(events)
    assert concurrent_run.verification["head"] == events[-1]["hash"]


def test_concurrent_submissions_each_get_one_version_submitted_event(
    concurrent_run: ConcurrentRun,
) -> None:
    responses = concurrent_run.responses
    submitted = [e for e in concurrent_run.events if e["action"] == "version.submitted"]
    assert sorted(e["object_id"] for e in submitted) == sorted(r.json()["id"] for r in responses)
    by_version = {e["object_id"]: e["payload"] for e in submitted}
    for response in responses:
        body = response.json()
        assert by_version[body["id"]]["digest"] == body["digest"]
        assert by_version[body["id"]]["number"] == body["number"]


def test_concurrent_uploads_of_the_same_bytes_register_one_version(
    live: Setup, settings: Any, examples: list[Example]
) -> None:
    responses = submit_all_at_once(live, [examples[0]] * 5)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409, 409], [r.text for r in responses]
    for refused in (r for r in responses if r.status_code == 409):
        assert refused.json()["error"] == "already_registered"
    stored = [p for p in settings.artifacts_dir.rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in stored] == [examples[0].artifact]
    assert [p for p in settings.tmp_dir.rglob("*") if p.is_file()] == []


def test_concurrent_retries_with_one_idempotency_key_all_get_the_first_response(
    live: Setup, settings: Any, examples: list[Example]
) -> None:
    responses = submit_all_at_once(live, [examples[0]] * 5, idempotency_key="retry-7")
    assert [r.status_code for r in responses] == [201] * 5, [r.text for r in responses]
    assert len({json.dumps(r.json(), sort_keys=True) for r in responses}) == 1
    submitted = [e for e in audit_events(live) if e["action"] == "version.submitted"]
    assert len(submitted) == 1
    assert [p for p in settings.tmp_dir.rglob("*") if p.is_file()] == []
