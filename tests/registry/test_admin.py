"""First admin and local recovery: `init_admin` and `recover_admin`, against a migrated database."""

from __future__ import annotations

import getpass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, func, select

from registry.errors import Conflict, Invalid
from tests.registry.conftest import auth, make_token

API = "/api/v1"


def _events(settings: Any) -> list[Any]:
    from registry.audit import AuditEvent
    from registry.db import get_engine, new_session

    with new_session(get_engine(settings)) as session:
        return list(session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))).all())


def _revoke_every_admin_token_in_the_database(settings: Any) -> None:
    """The lock-out an older Assay allowed: every admin token revoked (the API now refuses it)."""
    from registry.db import get_engine, new_session, utcnow
    from registry.principals.models import ApiToken, Principal

    with new_session(get_engine(settings)) as session:
        rows = session.exec(
            select(ApiToken)
            .join(Principal, Principal.id == ApiToken.principal_id)  # type: ignore[arg-type]
            .where(Principal.role == "admin")
        ).all()
        for api_token in rows:
            api_token.revoked_at = utcnow()
            session.add(api_token)
        session.commit()


def test_recovery_after_a_lock_out_issues_a_working_admin_token(
    settings: Any, client: TestClient, admin_token: str
) -> None:
    from registry.principals.admin import init_admin, recover_admin

    _revoke_every_admin_token_in_the_database(settings)
    assert client.get(f"{API}/me", headers=auth(admin_token)).status_code == 401
    with pytest.raises(Conflict) as refused:
        init_admin(settings=settings)
    assert "assay admin recover" in refused.value.detail

    recovered = recover_admin(settings=settings)

    assert recovered.active_admin_tokens_before == 0
    assert recovered.principal_name == "admin"
    me = client.get(f"{API}/me", headers=auth(recovered.token))
    assert me.status_code == 200, me.text
    assert (me.json()["name"], me.json()["role"]) == ("admin", "admin")
    # It is a full admin again: it can issue tokens.
    make_token(client, recovered.token, role="reviewer", name="reviewer")


def test_recovery_is_audited_with_the_local_operating_system_user(
    settings: Any, admin_token: str
) -> None:
    from registry.audit import verify_events
    from registry.principals.admin import recover_admin

    recovered = recover_admin(name="admin", settings=settings)

    events = _events(settings)
    assert [e.action for e in events[-2:]] == ["token.created", "admin.recovered"]
    created, event = events[-2], events[-1]
    local = f"local:{getpass.getuser()}"
    assert (event.actor_id, event.actor_name) == (local, local)
    assert (created.actor_id, created.actor_name) == (local, local)
    assert event.object_type == "principal"
    assert event.payload["token_id"] == str(recovered.token_id)
    assert event.payload["principal_name"] == "admin"
    assert event.payload["active_admin_tokens_before"] == 1
    assert verify_events(events).ok


def test_recovery_works_while_active_admins_exist_and_says_how_many(
    settings: Any, client: TestClient, admin_token: str
) -> None:
    from registry.principals.admin import recover_admin

    make_token(client, admin_token, role="admin", name="second-admin")
    recovered = recover_admin(name="ops", settings=settings)
    assert recovered.active_admin_tokens_before == 2
    assert recovered.principal_name == "ops"
    assert client.get(f"{API}/me", headers=auth(recovered.token)).json()["role"] == "admin"


def test_recovery_on_an_empty_installation_creates_the_first_admin(settings: Any) -> None:
    from registry.principals.admin import recover_admin

    recovered = recover_admin(settings=settings)
    assert recovered.active_admin_tokens_before == 0
    assert [e.action for e in _events(settings)] == ["token.created", "admin.recovered"]


def test_recovery_refuses_the_name_of_a_principal_with_another_role(
    settings: Any, client: TestClient, admin_token: str
) -> None:
    from registry.principals.admin import recover_admin

    make_token(client, admin_token, role="ci", name="pipeline")
    before = len(_events(settings))
    with pytest.raises(Conflict):
        recover_admin(name="pipeline", settings=settings)
    assert len(_events(settings)) == before


@pytest.mark.parametrize("name", ["root\x1b[2J", "", "ad\u202emin"])
def test_bootstrap_refuses_a_bad_name_with_a_problem_not_a_traceback(
    settings: Any, name: str
) -> None:
    from registry.db import get_engine, new_session
    from registry.principals.admin import init_admin, recover_admin
    from registry.principals.models import Principal

    for command in (init_admin, recover_admin):
        with pytest.raises(Invalid) as caught:
            command(name=name, settings=settings)
        assert [p.path for p in caught.value.problems] == ["name"]
    with new_session(get_engine(settings)) as session:
        assert session.exec(select(func.count()).select_from(Principal)).one() == 0
    assert _events(settings) == []


def test_assay_admin_recover_restores_access_after_a_lock_out(
    settings: Any, client: TestClient, admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command, with the real bootstrap, on the installation the settings point at."""
    import json

    from typer.testing import CliRunner

    from registry.cli import app

    _revoke_every_admin_token_in_the_database(settings)
    monkeypatch.setattr("registry.principals.admin.get_settings", lambda: settings)
    refused = CliRunner().invoke(app, ["admin", "init"])
    assert refused.exit_code == 1 and "assay admin recover" in refused.stderr

    result = CliRunner().invoke(app, ["admin", "recover", "--json"])

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["active_admin_tokens_before"] == 0
    me = client.get(f"{API}/me", headers=auth(document["token"]))
    assert me.status_code == 200 and me.json()["role"] == "admin"
    assert _events(settings)[-1].action == "admin.recovered"
