"""Tests of the store check (`registry.doctor`), at start-up and as `assay doctor` (item 3).

What a crash leaves is made by hand here, exactly as a kill leaves it: a `.part` file that no
process holds any more, and an artifact in the store with no version row (a kill between the rename
into the store and the commit). `test_crash_recovery.py` produces the same debris by killing a real
server.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select
from typer.testing import CliRunner

from registry.storage import ArtifactStore, format_digest
from tests.registry.conftest import VendorAccount, make_model
from tests.registry.test_submissions import Example, example, submit  # noqa: F401

ORPHAN = b"an artifact whose version row was never committed"
ORPHAN_DIGEST = format_digest(hashlib.sha256(ORPHAN).hexdigest())


def place_orphan(store: ArtifactStore, data: bytes = ORPHAN) -> str:
    """Puts a file into the store as a kill between rename and commit leaves it."""
    staged = store.stage()
    staged.write(data)
    digest = staged.finish()
    store.commit(staged, digest)
    return digest


def dead_staging_file(store: ArtifactStore, size: int = 4096) -> Path:
    """A `.part` file as a killed upload leaves it: closed, with no lock held on it."""
    store.tmp_dir.mkdir(parents=True, exist_ok=True)
    path = store.tmp_dir / "upload-killed.part"
    path.write_bytes(b"\x00" * size)
    return path


def audit_events(engine: Any, action: str) -> list[Any]:
    from registry.audit import AuditEvent
    from registry.db import new_session

    with new_session(engine) as session:
        return list(
            session.exec(
                select(AuditEvent).where(AuditEvent.action == action).order_by(col(AuditEvent.seq))
            ).all()
        )


def chain_ok(engine: Any) -> bool:
    from registry.audit import verify_chain
    from registry.db import new_session

    with new_session(engine) as session:
        return verify_chain(session).ok


def run_doctor(app: Any) -> Any:
    from registry.doctor import reconcile

    return reconcile(
        app.state.engine, app.state.store, quarantine_dir=app.state.settings.quarantine_dir
    )


@pytest.fixture
def version(
    client: TestClient,
    vendor: VendorAccount,
    example: Any,  # noqa: F811
) -> dict[str, Any]:
    """One submitted version, whose artifact the check must leave where it is."""
    model_id = make_model(client, vendor, name="lesion-detector")
    response = submit(client, model_id, vendor, example(0))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_unreferenced_artifact_is_quarantined_with_an_audit_event(
    app: Any, version: dict[str, Any]
) -> None:
    store: ArtifactStore = app.state.store
    digest = place_orphan(store)
    report = run_doctor(app)
    assert [q.digest for q in report.quarantined] == [digest]
    assert not store.exists(digest)
    moved = app.state.settings.home_dir / report.quarantined[0].moved_to
    assert moved.parent == app.state.settings.quarantine_dir
    assert moved.read_bytes() == ORPHAN
    assert stat.S_IMODE(moved.parent.stat().st_mode) == 0o700
    [event] = audit_events(app.state.engine, "artifact.quarantined")
    assert (event.actor_id, event.actor_name) == ("system", "system")
    assert event.payload["digest"] == digest
    assert event.payload["size_bytes"] == len(ORPHAN)
    assert chain_ok(app.state.engine)


def test_a_referenced_artifact_is_left_in_the_store(app: Any, version: dict[str, Any]) -> None:
    place_orphan(app.state.store)
    report = run_doctor(app)
    assert report.ok and report.referenced_artifacts == 1
    assert app.state.store.exists(version["digest"])
    assert version["digest"] not in [q.digest for q in report.quarantined]


def test_stale_staging_is_removed_and_a_live_upload_is_spared(app: Any) -> None:
    store: ArtifactStore = app.state.store
    live = store.stage()
    live.write(b"an upload still arriving in another request")
    dead = dead_staging_file(store, size=4096)
    report = run_doctor(app)
    assert [(r.name, r.size_bytes) for r in report.removed_staging] == [(dead.name, 4096)]
    assert not dead.exists()
    assert live.path.exists()
    live.discard()


def test_a_version_whose_artifact_is_missing_is_reported_not_ok(
    app: Any, version: dict[str, Any]
) -> None:
    path = app.state.store.path_for(version["digest"])
    path.unlink()
    report = run_doctor(app)
    assert not report.ok
    [missing] = report.missing_artifacts
    assert (missing.version_id, missing.digest, missing.number) == (
        version["id"],
        version["digest"],
        1,
    )


def test_a_clean_installation_reports_nothing_and_writes_nothing(app: Any) -> None:
    report = run_doctor(app)
    assert report.ok
    assert (report.removed_staging, report.quarantined, report.missing_artifacts) == ([], [], [])
    assert audit_events(app.state.engine, "artifact.quarantined") == []
    assert not app.state.settings.quarantine_dir.exists()


def test_a_foreign_file_in_the_store_is_reported_and_left_alone(app: Any) -> None:
    store: ArtifactStore = app.state.store
    foreign = store.root / "sha256" / "ab" / "README"
    foreign.parent.mkdir(parents=True, exist_ok=True)
    foreign.write_text("put here by hand")
    report = run_doctor(app)
    assert report.unexpected_files == ["sha256/ab/README"]
    assert foreign.exists()


def test_quarantine_is_undone_when_its_audit_events_cannot_be_written(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import registry.doctor as doctor

    digest = place_orphan(app.state.store)

    def failing_append(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(doctor.audit, "append", failing_append)
    with pytest.raises(RuntimeError):
        run_doctor(app)
    assert app.state.store.exists(digest)
    assert list(app.state.settings.quarantine_dir.iterdir()) == []


def test_the_server_runs_the_check_at_start_up(
    settings: Any, admin_token: str, caplog: pytest.LogCaptureFixture
) -> None:
    from registry.app import create_app

    store = ArtifactStore(settings.artifacts_dir, settings.tmp_dir)
    digest = place_orphan(store)
    dead = dead_staging_file(store)
    app = create_app(settings)
    with caplog.at_level("INFO", logger="assay.doctor"), TestClient(app) as client:
        assert client.get("/api/v1/health").status_code == 200
        assert not dead.exists()
        assert not store.exists(digest)
        assert len(audit_events(app.state.engine, "artifact.quarantined")) == 1
    logged = caplog.text
    assert dead.name in logged and digest in logged


# --- `assay doctor` ------------------------------------------------------------------------------


def doctor_cli(*args: str) -> Any:
    from registry.cli import app as cli_app

    return CliRunner().invoke(cli_app, ["doctor", *args], env={"COLUMNS": "200"})


@pytest.mark.usefixtures("installation_env")
def test_cli_doctor_reports_what_it_did_and_exits_0(app: Any) -> None:
    digest = place_orphan(app.state.store)
    dead = dead_staging_file(app.state.store)
    result = doctor_cli()
    assert result.exit_code == 0, result.output
    assert digest in result.output and dead.name in result.output
    assert "quarantine" in result.output.lower()


@pytest.mark.usefixtures("installation_env")
def test_cli_doctor_json_is_the_report(app: Any) -> None:
    digest = place_orphan(app.state.store)
    result = doctor_cli("--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["ok"] is True
    assert [q["digest"] for q in document["quarantined"]] == [digest]


@pytest.mark.usefixtures("installation_env")
def test_cli_doctor_exits_1_when_a_versions_artifact_is_missing(
    app: Any, version: dict[str, Any]
) -> None:
    os.unlink(app.state.store.path_for(version["digest"]))
    result = doctor_cli("--json")
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert document["ok"] is False
    assert [m["version_id"] for m in document["missing_artifacts"]] == [version["id"]]
    text = doctor_cli()
    assert text.exit_code == 1
    assert version["digest"] in text.output
