"""Signed checkpoints of the audit chain: the key, signing, export, and what verification catches.

The attacker in these tests can write the database (they rewrite events, re-hash the rest,
delete and insert rows, with the PostgreSQL guard triggers switched off as an owner could) but
cannot read the signing key file.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from registry import audit, checkpoints
from registry.errors import Invalid
from tests.registry.conftest import auth, make_model, make_token, make_vendor
from tests.registry.test_audit import (  # noqa: F401 (fixtures)
    HASHED_FIELDS,
    delete_events_after,
    example_model,
    raw_audit_writes,
    submit_example,
    tamper_payload,
    token_id_of,
)

API = "/api/v1"


# --- helpers -----------------------------------------------------------------------------------


def signer_of(settings: Any) -> checkpoints.Signer:
    return checkpoints.load_signer(settings, create=False)


def checkpoint_now(app: Any, settings: Any) -> checkpoints.AuditCheckpoint:
    made = checkpoints.checkpoint_if_moved(app.state.engine, signer_of(settings))
    assert made is not None
    return made


def stored(app: Any) -> list[checkpoints.CheckpointRecord]:
    from registry.db import new_session

    with new_session(app.state.engine) as session:
        return checkpoints.export(session).checkpoints


def verify_signed(
    app: Any,
    keys: list[Any],
    exported: list[checkpoints.CheckpointRecord] | None = None,
    **kwargs: Any,
) -> audit.AuditVerification:
    from registry.db import new_session

    with new_session(app.state.engine) as session:
        return checkpoints.verify_with_checkpoints(
            session, public_keys=keys, exported=exported, **kwargs
        )


def verify_plain(app: Any) -> audit.AuditVerification:
    from registry.db import new_session

    with new_session(app.state.engine) as session:
        return audit.verify_chain(session)


def rewrite_and_rehash(engine: sa.Engine, seq: int, payload: dict[str, Any]) -> None:
    """Edits event `seq` and re-hashes it and every event after it: plain verify still passes."""
    table = audit.AuditEvent.__table__
    with raw_audit_writes(engine) as connection:
        previous = connection.execute(
            sa.select(table.c.hash).where(table.c.seq == seq - 1)
        ).scalar()
        prev_hash = previous or audit.GENESIS_HASH
        rows = connection.execute(
            sa.select(table).where(table.c.seq >= seq).order_by(table.c.seq)
        ).mappings()
        for row in list(rows):
            fields = {name: row[name] for name in HASHED_FIELDS}
            fields["prev_hash"] = prev_hash
            if row["seq"] == seq:
                fields["payload"] = payload
            new_hash = audit.event_hash(fields)
            connection.execute(
                table.update()
                .where(table.c.seq == row["seq"])
                .values(payload=fields["payload"], prev_hash=prev_hash, hash=new_hash)
            )
            prev_hash = new_hash


def raw_checkpoint_writes(engine: sa.Engine) -> Any:
    """A transaction that may delete checkpoints (the PostgreSQL guard triggers are off)."""
    from contextlib import contextmanager

    @contextmanager
    def writes() -> Iterator[sa.Connection]:
        postgres = engine.dialect.name == "postgresql"
        with engine.begin() as connection:
            if postgres:
                connection.exec_driver_sql("ALTER TABLE audit_checkpoint DISABLE TRIGGER USER")
            yield connection
            if postgres:
                connection.exec_driver_sql("ALTER TABLE audit_checkpoint ENABLE TRIGGER USER")

    return writes()


def forge_checkpoints(engine: sa.Engine, private_key: Ed25519PrivateKey, key_id: str) -> None:
    """Replaces every stored checkpoint by ones signed with `private_key` over today's heads."""
    table = checkpoints.AuditCheckpoint.__table__
    events = audit.AuditEvent.__table__
    with raw_checkpoint_writes(engine) as connection:
        lengths = list(
            connection.execute(sa.select(table.c.length).order_by(table.c.seq)).scalars()
        )
        connection.execute(table.delete())
        prev = audit.GENESIS_HASH
        for number, length in enumerate(lengths, start=1):
            head = connection.execute(
                sa.select(events.c.hash).where(events.c.seq == length)
            ).scalar_one()
            record = checkpoints.AuditCheckpoint(
                seq=number,
                length=length,
                head=head,
                at="2026-11-30T00:00:00.000000Z",
                prev_checkpoint=prev,
                key_id=key_id,
                signature="",
                hash="",
            )
            body = checkpoints.signed_bytes(record)
            record.signature = private_key.sign(body).hex()
            record.hash = prev = hashlib.sha256(body).hexdigest()
            connection.execute(table.insert().values(**record.model_dump()))


@pytest.fixture
def signed(
    app: Any, client: TestClient, admin_token: str, settings: Any
) -> list[checkpoints.CheckpointRecord]:
    """Six events with checkpoints after events 3 and 6."""
    vendor = make_vendor(client, admin_token, name="acme")
    checkpoint_now(app, settings)
    make_model(client, vendor)
    ci = make_token(client, admin_token, role="ci", name="pipeline")
    revoked = client.delete(f"{API}/tokens/{token_id_of(client, ci)}", headers=auth(admin_token))
    assert revoked.status_code == 200, revoked.text
    checkpoint_now(app, settings)
    records = stored(app)
    assert [(c.seq, c.length) for c in records] == [(1, 3), (2, 6)]
    return records


# --- the key -------------------------------------------------------------------------------------


def test_key_is_created_0600_in_a_0700_folder_and_reloaded(settings: Any) -> None:
    first = checkpoints.load_signer(settings)
    path = settings.audit_key_file
    assert path == settings.home_dir / "keys" / "audit-checkpoint.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert b"PRIVATE KEY" in path.read_bytes()
    assert checkpoints.load_signer(settings).key_id == first.key_id
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_key_path_setting_is_honoured(settings: Any, tmp_path: Path) -> None:
    elsewhere = tmp_path / "secrets" / "assay.pem"
    moved = settings.model_copy(update={"audit_key_path": elsewhere})
    signer = checkpoints.load_signer(moved)
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o600
    assert not (settings.home_dir / "keys").exists()
    assert checkpoints.load_signer(moved).key_id == signer.key_id


def test_a_key_that_others_may_read_is_refused(settings: Any) -> None:
    checkpoints.load_signer(settings)
    os.chmod(settings.audit_key_file, 0o644)
    with pytest.raises(checkpoints.UnsafeAuditKey, match="mode 0644"):
        checkpoints.load_signer(settings)


def test_a_missing_key_is_not_created_when_creation_is_off(settings: Any) -> None:
    with pytest.raises(checkpoints.UnsafeAuditKey, match="no audit signing key"):
        checkpoints.load_signer(settings, create=False)
    assert not settings.audit_key_file.exists()


# --- making checkpoints --------------------------------------------------------------------------


def test_server_signs_a_checkpoint_at_each_version_state_change(
    app: Any,
    client: TestClient,
    admin_token: str,
    settings: Any,
    example_model: tuple[bytes, dict[str, Any]],  # noqa: F811
) -> None:
    from registry.auth import SYSTEM
    from registry.catalog.lifecycle import transition
    from registry.catalog.models import ModelVersion, VersionStatus
    from registry.db import new_session

    vendor = make_vendor(client, admin_token, name="acme")
    model_id = make_model(client, vendor, name="lesion")
    submitted = submit_example(client, vendor, model_id, example_model)
    with new_session(app.state.engine) as session:
        version = session.get(ModelVersion, uuid.UUID(submitted.json()["id"]))
        assert version is not None
        transition(session, version, VersionStatus.validating, actor=SYSTEM, reason="queued")
        session.commit()

    response = client.get(f"{API}/audit/checkpoints", headers=auth(admin_token))
    assert response.status_code == 200, response.text
    listed = response.json()["data"]
    recorded = client.get(f"{API}/audit", headers=auth(admin_token)).json()["data"]
    by_seq = {e["seq"]: e for e in recorded}
    assert [(c["length"], by_seq[c["length"]]["action"]) for c in listed] == [
        (5, "version.submitted"),
        (6, "version.status_changed"),
    ]
    assert [c["head"] for c in listed] == [by_seq[5]["hash"], by_seq[6]["hash"]]
    assert listed[1]["prev_checkpoint"] == listed[0]["hash"]
    key = signer_of(settings).public_key
    result = verify_signed(app, [key])
    assert (result.ok, result.checkpoints_verified, result.events_after_last_checkpoint) == (
        True,
        2,
        0,
    )


def test_no_checkpoint_when_the_head_has_not_moved(
    app: Any, client: TestClient, admin_token: str, settings: Any
) -> None:
    first = checkpoint_now(app, settings)
    assert checkpoints.checkpoint_if_moved(app.state.engine, signer_of(settings)) is None
    make_token(client, admin_token, role="ci", name="pipeline")
    second = checkpoint_now(app, settings)
    assert (second.seq, second.length, second.prev_checkpoint) == (2, 2, first.hash)


def test_the_server_checkpoints_at_intervals_when_the_head_moved(
    settings: Any, admin_token: str
) -> None:
    from registry.app import create_app

    quick = settings.model_copy(update={"checkpoint_interval_s": 0.02})
    with TestClient(create_app(quick)) as client:
        made = client.get(f"{API}/audit/checkpoints", headers=auth(admin_token))
        deadline = time.monotonic() + 20  # a bound on waiting, not a measured time
        while not made.json()["data"] and time.monotonic() < deadline:
            time.sleep(0.02)
            made = client.get(f"{API}/audit/checkpoints", headers=auth(admin_token))
        assert [c["length"] for c in made.json()["data"]] == [1]
        time.sleep(0.2)  # ten intervals with no new event
        again = client.get(f"{API}/audit/checkpoints", headers=auth(admin_token))
        assert again.json()["count"] == 1


def test_checkpoints_route_is_for_audit_readers(
    client: TestClient, admin_token: str, signed: list[checkpoints.CheckpointRecord]
) -> None:
    reviewer = make_token(client, admin_token, role="reviewer", name="committee")
    ci = make_token(client, admin_token, role="ci", name="pipeline-2")
    response = client.get(f"{API}/audit/checkpoints", params={"limit": 1}, headers=auth(reviewer))
    assert response.status_code == 200, response.text
    assert response.json()["count"] == 2
    assert response.json()["data"] == [signed[0].model_dump()]
    assert client.get(f"{API}/audit/checkpoints", headers=auth(ci)).status_code == 403
    assert client.get(f"{API}/audit/checkpoints").status_code == 401


# --- verification --------------------------------------------------------------------------------


def test_intact_chain_verifies_against_stored_and_exported_checkpoints(
    app: Any,
    client: TestClient,
    admin_token: str,
    settings: Any,
    signed: list[checkpoints.CheckpointRecord],
) -> None:
    make_token(client, admin_token, role="reviewer", name="committee")
    result = verify_signed(app, [signer_of(settings).public_key], exported=signed)
    assert result.ok, result.reason
    assert (result.length, result.checkpoints_verified, result.events_after_last_checkpoint) == (
        7,
        2,
        1,
    )


def test_rehashed_rewrite_passes_plain_verify_but_not_the_checkpoints(
    app: Any, settings: Any, signed: list[checkpoints.CheckpointRecord]
) -> None:
    rewrite_and_rehash(app.state.engine, 5, {"role": "admin", "name": "pipeline"})
    assert verify_plain(app).ok
    result = verify_signed(app, [signer_of(settings).public_key], exported=signed)
    assert (result.ok, result.broken_checkpoint) == (False, 2)
    assert result.reason is not None
    assert "checkpoint 2" in result.reason
    assert "an event from 4 to 6 was rewritten" in result.reason


def test_rewrite_of_a_checkpointed_event_is_named_exactly(
    app: Any, settings: Any, signed: list[checkpoints.CheckpointRecord]
) -> None:
    rewrite_and_rehash(app.state.engine, 3, {"role": "vendor", "name": "someone-else"})
    result = verify_signed(app, [signer_of(settings).public_key])
    assert (result.ok, result.broken_checkpoint) == (False, 1)
    assert result.reason is not None and "an event from 1 to 3 was rewritten" in result.reason


def test_truncation_below_a_stored_checkpoint_is_detected(
    app: Any, settings: Any, signed: list[checkpoints.CheckpointRecord]
) -> None:
    delete_events_after(app.state.engine, 4)
    assert verify_plain(app).ok
    result = verify_signed(app, [signer_of(settings).public_key])
    assert (result.ok, result.broken_checkpoint) == (False, 2)
    assert result.reason is not None and "events 5 to 6 were deleted" in result.reason


def test_truncation_with_its_checkpoints_deleted_is_caught_by_the_export(
    app: Any, settings: Any, signed: list[checkpoints.CheckpointRecord]
) -> None:
    delete_events_after(app.state.engine, 4)
    with raw_checkpoint_writes(app.state.engine) as connection:
        connection.exec_driver_sql("DELETE FROM audit_checkpoint WHERE seq = 2")
    key = signer_of(settings).public_key
    assert verify_signed(app, [key]).ok  # without the export, nothing is left to compare
    result = verify_signed(app, [key], exported=signed)
    assert (result.ok, result.broken_checkpoint) == (False, 2)
    assert result.reason is not None and "is not in the database" in result.reason


def test_a_checkpoint_deleted_from_the_middle_is_detected(
    app: Any,
    client: TestClient,
    admin_token: str,
    settings: Any,
    signed: list[checkpoints.CheckpointRecord],
) -> None:
    make_token(client, admin_token, role="reviewer", name="committee")
    checkpoint_now(app, settings)
    with raw_checkpoint_writes(app.state.engine) as connection:
        connection.exec_driver_sql("DELETE FROM audit_checkpoint WHERE seq = 2")
    result = verify_signed(app, [signer_of(settings).public_key])
    assert (result.ok, result.broken_checkpoint) == (False, 2)
    assert result.reason == "checkpoint 2 is missing from the database (3 follows)"


@pytest.mark.parametrize("claims_the_real_key", [True, False], ids=["real-key-id", "own-key-id"])
def test_checkpoints_forged_without_the_key_are_refused(
    app: Any,
    settings: Any,
    signed: list[checkpoints.CheckpointRecord],
    claims_the_real_key: bool,
) -> None:
    real = signer_of(settings)
    rewrite_and_rehash(app.state.engine, 2, {"name": "evil"})
    mallory = Ed25519PrivateKey.generate()
    claimed = real.key_id if claims_the_real_key else checkpoints.key_id(mallory.public_key())
    forge_checkpoints(app.state.engine, mallory, claimed)
    assert verify_plain(app).ok
    result = verify_signed(app, [real.public_key])
    assert (result.ok, result.broken_checkpoint) == (False, 1)
    assert result.reason is not None
    expected = "signature does not verify" if claims_the_real_key else "not a given public key"
    assert expected in result.reason
    exported = verify_signed(app, [real.public_key], exported=signed)
    assert not exported.ok


def test_verification_under_another_key_fails(
    app: Any, signed: list[checkpoints.CheckpointRecord]
) -> None:
    other = Ed25519PrivateKey.generate().public_key()
    result = verify_signed(app, [other], exported=signed)
    assert (result.ok, result.broken_checkpoint) == (False, 1)
    assert result.reason is not None and signed[0].key_id in result.reason


def test_a_replaced_key_is_named_unless_both_keys_are_given(
    app: Any,
    client: TestClient,
    admin_token: str,
    settings: Any,
    signed: list[checkpoints.CheckpointRecord],
) -> None:
    old = signer_of(settings)
    settings.audit_key_file.unlink()
    new = checkpoints.load_signer(settings)
    make_token(client, admin_token, role="reviewer", name="committee")
    assert checkpoints.checkpoint_if_moved(app.state.engine, new) is not None
    result = verify_signed(app, [old.public_key])
    assert (result.ok, result.broken_checkpoint) == (False, 3)
    assert result.reason is not None and new.key_id in result.reason
    assert verify_signed(app, [old.public_key, new.public_key]).ok


def test_expect_head_still_works_with_checkpoints(
    app: Any, settings: Any, signed: list[checkpoints.CheckpointRecord]
) -> None:
    key = signer_of(settings).public_key
    assert verify_signed(app, [key], expect_head=signed[0].head).ok
    result = verify_signed(app, [key], expect_head="f" * 64)
    assert not result.ok and result.reason is not None and "not in the chain" in result.reason


# --- the PostgreSQL and SQLite continuity trigger ------------------------------------------------


@pytest.mark.parametrize("wrong", ["seq", "prev_hash"])
def test_an_insert_that_does_not_continue_the_chain_is_refused(
    app: Any, client: TestClient, admin_token: str, wrong: str
) -> None:
    make_token(client, admin_token, role="ci", name="pipeline")
    table = audit.AuditEvent.__table__
    with app.state.engine.connect() as connection:
        head = connection.execute(
            sa.select(table.c.seq, table.c.hash).order_by(table.c.seq.desc()).limit(1)
        ).one()
    row = {
        "seq": head.seq + (5 if wrong == "seq" else 1),
        "at": "2026-11-30T00:00:00.000000Z",
        "actor_id": "mallory",
        "actor_name": "mallory",
        "action": "token.created",
        "object_type": "token",
        "object_id": "x",
        "payload": {},
        "prev_hash": "a" * 64 if wrong == "prev_hash" else head.hash,
        "hash": "b" * 64,
    }
    with (
        pytest.raises(sa.exc.DBAPIError, match="must continue the chain"),
        app.state.engine.begin() as connection,
    ):
        connection.execute(table.insert().values(**row))
    assert verify_plain(app).length == head.seq


def test_the_app_still_appends_through_the_continuity_trigger(
    app: Any, client: TestClient, admin_token: str
) -> None:
    for number in range(3):
        make_token(client, admin_token, role="ci", name=f"pipeline-{number}")
    result = verify_plain(app)
    assert (result.ok, result.length) == (True, 4)


# --- the CLI -------------------------------------------------------------------------------------


def run_cli(*args: str) -> Any:
    from registry.cli import app as cli_app

    return CliRunner().invoke(cli_app, ["audit", *args])


@pytest.mark.usefixtures("installation_env")
def test_cli_key_prints_the_public_key_and_its_id(settings: Any, tmp_path: Path) -> None:
    result = run_cli("key")
    assert result.exit_code == 0, result.output
    public = tmp_path / "audit.pub"
    public.write_text(result.stdout)
    signer = signer_of(settings)
    assert checkpoints.key_id(checkpoints.load_public_key(public)) == signer.key_id
    assert signer.key_id in result.stderr


@pytest.mark.usefixtures("installation_env")
def test_cli_checkpoint_export_and_verify_round_trip(
    app: Any, client: TestClient, admin_token: str, tmp_path: Path
) -> None:
    public = tmp_path / "audit.pub"
    public.write_text(run_cli("key").stdout)
    exported = tmp_path / "checkpoints.json"
    made = run_cli("checkpoint", "--export", str(exported))
    assert made.exit_code == 0, made.output
    assert "Signed checkpoint 1: 1 event," in made.output
    again = run_cli("checkpoint")
    assert again.exit_code == 0 and "has not moved" in again.output
    document = json.loads(exported.read_text())
    assert [c["length"] for c in document["checkpoints"]] == [1]
    assert document["key_ids"] == [document["checkpoints"][0]["key_id"]]

    make_token(client, admin_token, role="ci", name="pipeline")
    ok = run_cli("verify", "--public-key", str(public), "--checkpoints", str(exported))
    assert ok.exit_code == 0, ok.output
    assert "signed checkpoints matched: 1 (stored and exported); events after the last one: 1" in (
        ok.stdout
    )

    rewrite_and_rehash(app.state.engine, 1, {"role": "admin", "name": "mallory"})
    assert run_cli("verify").exit_code == 0
    broken = run_cli("verify", "--public-key", str(public), "--checkpoints", str(exported))
    assert broken.exit_code == 1, broken.output
    assert "fails its signed checkpoints: checkpoint 1 signed head" in broken.output
    assert "event 1 was rewritten" in broken.output


@pytest.mark.usefixtures("installation_env")
def test_cli_checkpoint_export_to_stdout(client: TestClient, admin_token: str) -> None:
    result = run_cli("checkpoint", "--export", "-")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["format"] == "assay-audit-checkpoints/1"
    assert [c["seq"] for c in document["checkpoints"]] == [1]


@pytest.mark.usefixtures("installation_env")
def test_cli_checkpoints_need_a_public_key(tmp_path: Path) -> None:
    result = run_cli("verify", "--checkpoints", str(tmp_path / "x.json"))
    assert result.exit_code == 2
    assert "--checkpoints needs --public-key" in result.output


@pytest.mark.usefixtures("installation_env")
def test_cli_refuses_a_file_that_is_not_an_export(
    client: TestClient, admin_token: str, tmp_path: Path
) -> None:
    public = tmp_path / "audit.pub"
    public.write_text(run_cli("key").stdout)
    bogus = tmp_path / "bogus.json"
    bogus.write_text(json.dumps({"format": "assay-audit-checkpoints/1", "checkpoints": [{}]}))
    result = run_cli("verify", "--public-key", str(public), "--checkpoints", str(bogus))
    assert result.exit_code == 1, result.output
    assert "is not a checkpoint export" in result.output
    assert "checkpoints.0.seq" in result.output


def test_read_export_names_each_problem(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.json"
    bogus.write_text("[1, 2]")
    with pytest.raises(Invalid) as raised:
        checkpoints.read_export(bogus)
    assert raised.value.problems and raised.value.problems[0].path == "(file)"


@pytest.mark.usefixtures("installation_env")
def test_cli_refuses_a_public_key_file_that_is_not_one(tmp_path: Path) -> None:
    public = tmp_path / "audit.pub"
    public.write_text("not a key\n")
    result = run_cli("verify", "--public-key", str(public))
    assert result.exit_code == 1, result.output
    assert "is not an Ed25519 public key in PEM form" in result.output


# --- the production roles of docs/security.md (PostgreSQL) -------------------------------------


def _documented_sql(suffix: str) -> list[str]:
    """The three SQL blocks of docs/security.md's production section, with unique names."""
    import re

    from tests.registry.scoring_example import blocks

    docs = Path(__file__).resolve().parents[2] / "docs" / "security.md"
    section = docs.read_text().split("## PostgreSQL in production", 1)[1].split("\n## ", 1)[0]
    found = blocks(section, "sql")
    assert len(found) == 3, "docs/security.md: the production section has three SQL blocks"
    names = {"assay_owner": f"assay_owner_{suffix}", "assay_app": f"assay_app_{suffix}"}
    names["assay"] = f"assay_prod_{suffix}"
    pattern = re.compile(r"\b(assay_owner|assay_app|assay)\b")
    return [pattern.sub(lambda m: names[m.group(1)], block) for block in found]


def _statements(block: str) -> list[str]:
    return [s.strip() for s in block.split(";") if s.strip()]


def test_documented_postgres_roles_confine_the_service(settings: Any, tmp_path: Path) -> None:
    from registry.app import create_app
    from registry.db import dispose_engines, upgrade_database
    from registry.principals.admin import init_admin
    from registry.settings import Settings
    from tests.conftest import _pg_execute, _pg_url_for

    if settings.database_url is None:
        pytest.skip("the production roles are PostgreSQL's")
    suffix = uuid.uuid4().hex[:10]
    superuser_block, owner_block, refused_block = _documented_sql(suffix)
    database = f"assay_prod_{suffix}"
    owner, app_role = f"assay_owner_{suffix}", f"assay_app_{suffix}"

    def url(role: str) -> str:
        return sa.make_url(_pg_url_for(database)).set(username=role).render_as_string(False)

    try:
        for statement in _statements(superuser_block):
            _pg_execute(statement)
        upgrade_database(Settings(database_url=url(owner), environment="test"))
        owner_engine = sa.create_engine(url(owner))
        with owner_engine.begin() as connection:
            for statement in _statements(owner_block):
                connection.exec_driver_sql(statement)
        owner_engine.dispose()

        # The registry works as the application role.
        confined = Settings(home=tmp_path / "prod", environment="test", database_url=url(app_role))
        admin = init_admin(name="admin", settings=confined)
        app = create_app(confined)
        with TestClient(app) as client:
            make_vendor(client, admin, name="acme")
            checkpoint_now(app, confined)
        result = verify_signed(app, [signer_of(confined).public_key])
        assert (result.ok, result.length, result.checkpoints_verified) == (True, 3, 1)

        # And each documented statement is refused with its documented error.
        engine = app.state.engine
        refused = [line.split("; -- ", 1) for line in refused_block.strip().splitlines()]
        assert len(refused) >= 8
        for statement, error in refused:
            with pytest.raises(sa.exc.DBAPIError) as raised, engine.begin() as connection:
                connection.exec_driver_sql(statement)
            assert error in str(raised.value.orig), statement
        assert verify_signed(app, [signer_of(confined).public_key]).ok
    finally:
        dispose_engines()
        _pg_execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        for role in (app_role, owner):
            _pg_execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.usefixtures("installation_env")
def test_cli_export_into_a_missing_folder_says_so_and_leaves_nothing(
    client: TestClient, admin_token: str, tmp_path: Path
) -> None:
    target = tmp_path / "no-such-folder" / "checkpoints.json"
    result = run_cli("checkpoint", "--export", str(target))
    assert result.exit_code == 1, result.output
    assert f"Cannot write the checkpoint export {target}" in result.output
    assert not target.parent.exists()


def test_the_server_refuses_to_start_with_a_key_others_may_read(settings: Any) -> None:
    from registry.app import create_app

    checkpoints.load_signer(settings)
    os.chmod(settings.audit_key_file, 0o640)
    with (
        pytest.raises(checkpoints.UnsafeAuditKey, match="mode 0640"),
        TestClient(create_app(settings)),
    ):
        pass
