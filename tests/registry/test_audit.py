"""The hash-chained audit trail: events per state change, chaining, verification and tampering."""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import col, select
from typer.testing import CliRunner

from registry import audit
from tests.registry.conftest import VendorAccount, auth, make_model, make_token

API = "/api/v1"
HASHED_FIELDS = (
    "seq",
    "at",
    "actor_id",
    "actor_name",
    "action",
    "object_type",
    "object_id",
    "payload",
    "prev_hash",
)
AT_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


# --- helpers -----------------------------------------------------------------------------------


def events(client: TestClient, admin_token: str) -> list[dict[str, Any]]:
    response = client.get(f"{API}/audit", params={"limit": 500}, headers=auth(admin_token))
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def verify(client: TestClient, admin_token: str, **params: str) -> dict[str, Any]:
    response = client.get(f"{API}/audit/verify", params=params, headers=auth(admin_token))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def token_id_of(client: TestClient, token: str) -> str:
    token_id: str = client.get(f"{API}/me", headers=auth(token)).json()["token_id"]
    return token_id


@pytest.fixture
def chain(client: TestClient, admin_token: str, vendor: VendorAccount) -> list[dict[str, Any]]:
    """Six events: admin token, vendor, vendor token, model, ci token, its revocation."""
    make_model(client, vendor)
    ci = make_token(client, admin_token, role="ci", name="pipeline")
    revoked = client.delete(f"{API}/tokens/{token_id_of(client, ci)}", headers=auth(admin_token))
    assert revoked.status_code == 200, revoked.text
    recorded = events(client, admin_token)
    assert len(recorded) == 6
    return recorded


@contextmanager
def raw_audit_writes(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that may rewrite audit_event: on PostgreSQL the guard triggers are off."""
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as connection:
        if postgres:
            connection.exec_driver_sql("ALTER TABLE audit_event DISABLE TRIGGER USER")
        yield connection
        if postgres:
            connection.exec_driver_sql("ALTER TABLE audit_event ENABLE TRIGGER USER")


def tamper_payload(engine: sa.Engine, seq: int, payload: dict[str, Any]) -> None:
    statement = sa.text("UPDATE audit_event SET payload = :payload WHERE seq = :seq").bindparams(
        sa.bindparam("payload", type_=sa.JSON)
    )
    with raw_audit_writes(engine) as connection:
        assert connection.execute(statement, {"payload": payload, "seq": seq}).rowcount == 1


def delete_events_after(engine: sa.Engine, seq: int) -> None:
    with raw_audit_writes(engine) as connection:
        connection.execute(sa.text("DELETE FROM audit_event WHERE seq > :seq"), {"seq": seq})


# --- events --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict[str, Any]]:
    from validators.runtime.example import write_example_model

    model_path, manifest_path = write_example_model(tmp_path_factory.mktemp("example"))
    return model_path.read_bytes(), json.loads(manifest_path.read_text())


def submit_example(
    client: TestClient,
    account: VendorAccount,
    model_id: str,
    example_model: tuple[bytes, dict[str, Any]],
    *,
    name: str = "lesion",
) -> Any:
    """Submits the example as a version of the model named `name`; gives the 201 response."""
    artifact, manifest = example_model
    submitted = client.post(
        f"{API}/models/{model_id}/versions",
        files={
            "manifest": ("m.json", json.dumps({**manifest, "name": name}).encode()),
            "artifact": ("model.onnx", artifact),
        },
        headers=account.headers,
    )
    assert submitted.status_code == 201, submitted.text
    return submitted


def test_every_state_change_appends_its_event(
    client: TestClient,
    admin_token: str,
    vendor: VendorAccount,
    example_model: tuple[bytes, dict[str, Any]],
) -> None:
    model_id = make_model(client, vendor, name="lesion")
    submitted = submit_example(client, vendor, model_id, example_model)
    vendor_token_id = token_id_of(client, vendor.token)
    revoked = client.delete(f"{API}/tokens/{vendor_token_id}", headers=auth(admin_token))
    assert revoked.status_code == 200, revoked.text

    recorded = [
        (e["action"], e["object_type"], e["object_id"], e["actor_name"])
        for e in events(client, admin_token)
    ]
    assert recorded == [
        ("token.created", "token", token_id_of(client, admin_token), "system"),
        ("vendor.created", "vendor", vendor.vendor_id, "admin"),
        ("token.created", "token", vendor_token_id, "admin"),
        ("model.created", "model", model_id, "acme-engineer"),
        ("version.submitted", "model_version", submitted.json()["id"], "acme-engineer"),
        ("token.revoked", "token", vendor_token_id, "admin"),
    ]


def test_event_payload_describes_the_change(
    client: TestClient, admin_token: str, vendor: VendorAccount
) -> None:
    make_model(client, vendor, name="lesion")
    created = events(client, admin_token)[-1]
    assert created["action"] == "model.created"
    assert created["payload"] == {"name": "lesion", "vendor_id": vendor.vendor_id}


def test_refused_change_appends_nothing(
    client: TestClient, admin_token: str, vendor: VendorAccount
) -> None:
    before = events(client, admin_token)
    duplicate = client.post(f"{API}/vendors", json={"name": "acme"}, headers=auth(admin_token))
    assert duplicate.status_code == 409
    assert events(client, admin_token) == before


def test_event_times_are_iso8601_utc_with_z(chain: list[dict[str, Any]]) -> None:
    for event in chain:
        assert AT_FORMAT.match(event["at"]), event["at"]
        assert datetime.fromisoformat(event["at"]).utcoffset() == timedelta(0)


def test_events_carry_their_actor_id(
    client: TestClient, admin_token: str, chain: list[dict[str, Any]]
) -> None:
    admin_id = client.get(f"{API}/me", headers=auth(admin_token)).json()["id"]
    assert chain[0]["actor_id"] == "system"
    assert {e["actor_id"] for e in chain if e["actor_name"] == "admin"} == {admin_id}


def test_events_are_chained_by_hash(chain: list[dict[str, Any]]) -> None:
    assert [e["seq"] for e in chain] == list(range(1, len(chain) + 1))
    assert chain[0]["prev_hash"] == "0" * 64
    for previous, event in itertools.pairwise(chain):
        assert event["prev_hash"] == previous["hash"]
    assert len({e["hash"] for e in chain}) == len(chain)


def test_hash_recomputes_from_the_api_json(chain: list[dict[str, Any]]) -> None:
    for event in chain:
        assert audit.event_hash({k: event[k] for k in HASHED_FIELDS}) == event["hash"]


# --- verification --------------------------------------------------------------------------------


def test_intact_chain_verifies(
    client: TestClient, admin_token: str, chain: list[dict[str, Any]]
) -> None:
    result = verify(client, admin_token)
    assert (result["ok"], result["length"], result["head"]) == (True, 6, chain[-1]["hash"])
    assert result["first_broken_seq"] is None


def test_edited_payload_is_named_by_its_seq(
    app: Any, client: TestClient, admin_token: str, chain: list[dict[str, Any]]
) -> None:
    tamper_payload(app.state.engine, 3, {**chain[2]["payload"], "role": "admin"})
    result = verify(client, admin_token)
    assert (result["ok"], result["first_broken_seq"], result["length"]) == (False, 3, 2)
    assert "event 3" in result["reason"] and "modified" in result["reason"]


def test_rehashed_edit_breaks_the_link_of_the_next_event(
    app: Any, client: TestClient, admin_token: str, chain: list[dict[str, Any]]
) -> None:
    forged = {k: chain[2][k] for k in HASHED_FIELDS} | {"actor_name": "someone-else"}
    with raw_audit_writes(app.state.engine) as connection:
        connection.execute(
            sa.text("UPDATE audit_event SET actor_name = :name, hash = :hash WHERE seq = 3"),
            {"name": "someone-else", "hash": audit.event_hash(forged)},
        )
    result = verify(client, admin_token)
    assert (result["ok"], result["first_broken_seq"]) == (False, 4)
    assert "previous-hash" in result["reason"]


def test_missing_event_in_the_middle_is_named(
    app: Any, client: TestClient, admin_token: str, chain: list[dict[str, Any]]
) -> None:
    with raw_audit_writes(app.state.engine) as connection:
        connection.execute(sa.text("DELETE FROM audit_event WHERE seq = 4"))
    result = verify(client, admin_token)
    assert (result["ok"], result["first_broken_seq"]) == (False, 5)
    assert "missing" in result["reason"]


def test_deleted_newest_events_pass_plain_verification(
    app: Any, client: TestClient, admin_token: str, chain: list[dict[str, Any]]
) -> None:
    delete_events_after(app.state.engine, 4)
    result = verify(client, admin_token)
    assert (result["ok"], result["length"], result["head"]) == (True, 4, chain[3]["hash"])


def test_deleted_newest_events_fail_against_the_recorded_head(
    app: Any, client: TestClient, admin_token: str, chain: list[dict[str, Any]]
) -> None:
    recorded_head = verify(client, admin_token)["head"]
    delete_events_after(app.state.engine, 4)
    result = verify(client, admin_token, expect_head=recorded_head)
    assert result["ok"] is False
    assert result["expected_head"] == recorded_head
    assert "expected head" in result["reason"] and recorded_head in result["reason"]


def test_recorded_head_still_in_a_grown_chain_verifies(
    client: TestClient, admin_token: str, chain: list[dict[str, Any]]
) -> None:
    recorded_head = verify(client, admin_token)["head"]
    make_token(client, admin_token, role="reviewer", name="reviewer")
    client.post(f"{API}/vendors", json={"name": "globex"}, headers=auth(admin_token))
    result = verify(client, admin_token, expect_head=recorded_head)
    assert (result["ok"], result["length"], result["grown_since_expected"]) == (True, 8, 2)
    assert result["head"] != recorded_head


def test_current_head_as_expected_head_has_not_grown(
    client: TestClient, admin_token: str, chain: list[dict[str, Any]]
) -> None:
    result = verify(client, admin_token, expect_head=chain[-1]["hash"])
    assert (result["ok"], result["grown_since_expected"]) == (True, 0)


def test_expect_head_must_be_a_sha256_hex(client: TestClient, admin_token: str) -> None:
    response = client.get(
        f"{API}/audit/verify", params={"expect_head": "nothex"}, headers=auth(admin_token)
    )
    assert response.status_code == 422
    assert [p["path"] for p in response.json()["problems"]] == ["expect_head"]


# --- the database itself refuses rewrites (PostgreSQL) -----------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_event SET actor_name = 'mallory' WHERE seq = 1",
        "DELETE FROM audit_event WHERE seq = 1",
        "TRUNCATE audit_event",
    ],
    ids=["update", "delete", "truncate"],
)
def test_postgres_trigger_refuses_rewrites(
    app: Any, client: TestClient, admin_token: str, statement: str
) -> None:
    engine = app.state.engine
    if engine.dialect.name != "postgresql":
        pytest.skip("the append-only trigger exists on PostgreSQL only; SQLite has no equivalent")
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as connection:
        connection.exec_driver_sql(statement)
    assert verify(client, admin_token)["length"] == 1


# --- local verification: the library function and the CLI ---------------------------------------


@pytest.mark.usefixtures("installation_env")
def test_verify_installation_reads_the_configured_database(
    chain: list[dict[str, Any]],
) -> None:
    result = audit.verify_installation()
    assert (result.ok, result.length, result.head) == (True, 6, chain[-1]["hash"])


@pytest.mark.usefixtures("installation_env")
def test_verify_installation_finds_tampering(app: Any, chain: list[dict[str, Any]]) -> None:
    tamper_payload(app.state.engine, 2, {"name": "evil"})
    result = audit.verify_installation()
    assert (result.ok, result.first_broken_seq) == (False, 2)


def run_cli(*args: str) -> Any:
    from registry.cli import app as cli_app

    return CliRunner().invoke(cli_app, ["audit", "verify", *args])


@pytest.mark.usefixtures("installation_env")
def test_cli_verify_exits_0_for_an_intact_chain(chain: list[dict[str, Any]]) -> None:
    result = run_cli()
    assert result.exit_code == 0, result.output
    assert chain[-1]["hash"] in result.stdout


@pytest.mark.usefixtures("installation_env")
def test_cli_verify_exits_1_for_a_tampered_chain(app: Any, chain: list[dict[str, Any]]) -> None:
    tamper_payload(app.state.engine, 2, {"name": "evil"})
    result = run_cli()
    assert result.exit_code == 1, result.output
    assert "event 2" in result.output


@pytest.mark.usefixtures("installation_env")
def test_cli_verify_exits_1_when_the_recorded_head_was_deleted(
    app: Any, chain: list[dict[str, Any]]
) -> None:
    delete_events_after(app.state.engine, 4)
    result = run_cli("--expect-head", chain[-1]["hash"])
    assert result.exit_code == 1, result.output
    assert chain[-1]["hash"] in result.output


@pytest.mark.usefixtures("installation_env")
def test_cli_verify_exits_0_when_the_recorded_head_is_still_in_a_grown_chain(
    client: TestClient, admin_token: str, chain: list[dict[str, Any]]
) -> None:
    make_token(client, admin_token, role="reviewer", name="reviewer")
    result = run_cli("--expect-head", chain[-1]["hash"])
    assert result.exit_code == 0, result.output


# --- concurrency ---------------------------------------------------------------------------------


def test_concurrent_appends_form_one_linear_chain(settings: Any) -> None:
    from registry.db import get_engine, new_session

    engine = get_engine(settings)
    threads, per_thread = 8, 5
    start = threading.Barrier(threads)
    failures: list[BaseException] = []

    def worker(number: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                with new_session(engine) as session:
                    audit.append(
                        session,
                        actor=(f"thread-{number}", f"thread-{number}"),
                        action="test.appended",
                        object_type="test",
                        object_id=f"{number}-{i}",
                    )
                    session.commit()
        except BaseException as exc:  # reported below; a thread cannot fail the test itself
            failures.append(exc)

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    assert failures == []

    with new_session(engine) as session:
        result = audit.verify_chain(session)
        seqs = session.exec(select(audit.AuditEvent.seq).order_by(col(audit.AuditEvent.seq))).all()
        object_ids = session.exec(select(audit.AuditEvent.object_id)).all()
    assert (result.ok, result.length) == (True, threads * per_thread)
    assert list(seqs) == list(range(1, threads * per_thread + 1))
    assert sorted(object_ids) == sorted(
        f"{n}-{i}" for n in range(threads) for i in range(per_thread)
    )
