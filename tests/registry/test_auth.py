"""Authentication, roles and token rules, checked over HTTP against a migrated database.

The route walk covers every route the app serves, so a route added later without its token
dependency fails here rather than shipping open.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from registry.app import PUBLIC_PATHS
from registry.auth import hash_token
from tests.registry.conftest import VendorAccount, auth, make_model, make_token

API = "/api/v1"
ROLES_WITHOUT_VENDOR = ("admin", "reviewer", "ci", "monitor")
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


# --- helpers -----------------------------------------------------------------------------------


def _routes(app: Any) -> list[tuple[str, str]]:
    """Every (method, path template) the app serves, HEAD left out."""
    found: list[tuple[str, str]] = []
    for context in iter_route_contexts(app.routes):
        path = context.path_format or context.path
        assert path is not None, context
        found.extend((method, path) for method in sorted(context.methods or ()) if method != "HEAD")
    return found


def _fill(path: str) -> str:
    """The path with a random UUID in every `{param}`."""
    parts = path.split("/")
    return "/".join(
        str(uuid.uuid4()) if p.startswith("{") and p.endswith("}") else p for p in parts
    )


def _token_id(client: TestClient, token: str) -> str:
    response = client.get(f"{API}/me", headers=auth(token))
    assert response.status_code == 200, response.text
    token_id: str = response.json()["token_id"]
    return token_id


def _issue(client: TestClient, admin_token: str, **body: Any) -> Any:
    return client.post(f"{API}/tokens", json=body, headers=auth(admin_token))


def _audit_length(client: TestClient, admin_token: str) -> int:
    response = client.get(f"{API}/audit", params={"limit": 1}, headers=auth(admin_token))
    assert response.status_code == 200, response.text
    count: int = response.json()["count"]
    return count


def _assert_error(response: Any, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert isinstance(body["detail"], str) and body["detail"]


def _insert_version(app: Any, *, model_id: str, submitted_by: str) -> str:
    """A version row written straight to the database (these tests are about routes, not intake)."""
    from registry.catalog.models import ModelVersion
    from registry.db import new_session

    version = ModelVersion(
        model_id=uuid.UUID(model_id),
        number=1,
        version_label="1.0",
        digest="sha256:" + uuid.uuid4().hex * 2,
        format="onnx",
        size_bytes=1,
        manifest={},
        intake_report={},
        submitted_by=uuid.UUID(submitted_by),
    )
    with new_session(app.state.engine) as session:
        session.add(version)
        session.commit()
    return str(version.id)


TINY_SUBMISSION = {
    "manifest": ("manifest.json", b"{}", "application/json"),
    "artifact": ("model.onnx", b"\x08\x07", "application/octet-stream"),
}


# --- every route needs a token -------------------------------------------------------------------


def test_route_walk_finds_the_protected_api(app: Any) -> None:
    """Guards the walk itself: if it found nothing, the tests below would pass vacuously."""
    protected = {(m, p) for m, p in _routes(app) if p not in PUBLIC_PATHS}
    assert ("GET", f"{API}/me") in protected
    assert ("POST", f"{API}/models/{{model_id}}/versions") in protected
    assert ("GET", f"{API}/audit/verify") in protected
    assert {p for _, p in _routes(app)} >= PUBLIC_PATHS


@pytest.fixture
def bad_credentials(
    request: pytest.FixtureRequest,
    client: TestClient,
    admin_token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    kind = request.param
    if kind == "none":
        return {}
    if kind == "garbage":
        return auth("assay_" + "x" * 43)
    if kind == "not-bearer":
        return {"Authorization": f"Basic {admin_token}"}
    if kind == "revoked":
        token = make_token(client, admin_token, role="admin", name="soon-revoked")
        revoked = client.delete(
            f"{API}/tokens/{_token_id(client, token)}", headers=auth(admin_token)
        )
        assert revoked.status_code == 200, revoked.text
        return auth(token)
    assert kind == "expired"
    expires = datetime.now(UTC) + timedelta(seconds=2)
    created = _issue(
        client, admin_token, role="admin", name="short-lived", expires_at=expires.isoformat()
    )
    assert created.status_code == 201, created.text
    # Move the clock the authenticator reads past the expiry instead of sleeping.
    monkeypatch.setattr("registry.auth.utcnow", lambda: expires + timedelta(hours=1))
    return auth(created.json()["token"])


@pytest.mark.parametrize(
    "bad_credentials", ["none", "garbage", "not-bearer", "revoked", "expired"], indirect=True
)
def test_every_non_public_route_answers_401(
    app: Any, client: TestClient, bad_credentials: dict[str, str]
) -> None:
    failures = []
    for method, path in _routes(app):
        if path in PUBLIC_PATHS:
            continue
        response = client.request(method, _fill(path), headers=bad_credentials)
        body = response.json() if response.headers.get("content-type") == "application/json" else {}
        if (
            response.status_code != 401
            or body.get("error") != "unauthorized"
            or not body.get("detail")
            or response.headers.get("www-authenticate") != "Bearer"
        ):
            failures.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
    assert failures == []


@pytest.mark.parametrize("path", sorted(PUBLIC_PATHS))
def test_public_route_answers_200_without_a_token(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200


# --- identity ------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES_WITHOUT_VENDOR)
def test_me_describes_the_caller(client: TestClient, admin_token: str, role: str) -> None:
    token = (
        admin_token if role == "admin" else make_token(client, admin_token, role=role, name=role)
    )
    response = client.get(f"{API}/me", headers=auth(token))
    assert response.status_code == 200, response.text
    me = response.json()
    assert (me["name"], me["role"], me["vendor_id"], me["vendor_name"]) == (
        role,
        role,
        None,
        None,
    )


def test_me_for_a_vendor_names_its_vendor(client: TestClient, vendor: VendorAccount) -> None:
    response = client.get(f"{API}/me", headers=vendor.headers)
    assert response.status_code == 200, response.text
    me = response.json()
    assert (me["name"], me["role"], me["vendor_id"], me["vendor_name"]) == (
        "acme-engineer",
        "vendor",
        vendor.vendor_id,
        "acme",
    )


# --- role matrix ---------------------------------------------------------------------------------


def _forbidden_request(
    client: TestClient, admin_token: str, vendor: VendorAccount, action: str
) -> tuple[str, str, dict[str, Any]]:
    """(method, path, request kwargs) for a write or admin read, aimed at real objects."""
    if action == "create vendor":
        return "POST", f"{API}/vendors", {"json": {"name": "intruder"}}
    if action == "list vendors":
        return "GET", f"{API}/vendors", {}
    if action == "create token":
        return "POST", f"{API}/tokens", {"json": {"role": "admin", "name": "intruder"}}
    if action == "list tokens":
        return "GET", f"{API}/tokens", {}
    if action == "revoke token":
        return "DELETE", f"{API}/tokens/{_token_id(client, admin_token)}", {}
    if action == "read audit":
        return "GET", f"{API}/audit", {}
    if action == "verify audit":
        return "GET", f"{API}/audit/verify", {}
    if action == "create model":
        return "POST", f"{API}/models", {"json": {"name": "m", "vendor_id": vendor.vendor_id}}
    assert action == "submit version"
    model_id = make_model(client, vendor)
    return "POST", f"{API}/models/{model_id}/versions", {"files": TINY_SUBMISSION}


CI_AND_MONITOR_REFUSED = (
    "create model",
    "submit version",
    "create vendor",
    "create token",
    "revoke token",
    "list tokens",
    "read audit",
)
REFUSED = {
    "vendor": (
        "create vendor",
        "list vendors",
        "create token",
        "list tokens",
        "revoke token",
        "read audit",
        "verify audit",
    ),
    "ci": CI_AND_MONITOR_REFUSED,
    "monitor": CI_AND_MONITOR_REFUSED,
    "reviewer": (
        "create model",
        "submit version",
        "create vendor",
        "create token",
        "revoke token",
    ),
}


@pytest.mark.parametrize("role", sorted(REFUSED))
def test_role_is_refused_with_403_and_nothing_changes(
    client: TestClient, admin_token: str, vendor: VendorAccount, role: str
) -> None:
    token = (
        vendor.token if role == "vendor" else make_token(client, admin_token, role=role, name=role)
    )
    requests = {a: _forbidden_request(client, admin_token, vendor, a) for a in REFUSED[role]}
    events_before = _audit_length(client, admin_token)
    answers = {}
    for action, (method, path, kwargs) in requests.items():
        response = client.request(method, path, headers=auth(token), **kwargs)
        answers[action] = (response.status_code, response.json().get("error"))
    assert answers == dict.fromkeys(REFUSED[role], (403, "forbidden"))
    assert _audit_length(client, admin_token) == events_before
    # The refused revocation left the admin's token working.
    assert client.get(f"{API}/me", headers=auth(admin_token)).status_code == 200


@pytest.mark.parametrize("path", [f"{API}/audit", f"{API}/audit/verify"])
def test_reviewer_reads_the_audit(client: TestClient, admin_token: str, path: str) -> None:
    reviewer = make_token(client, admin_token, role="reviewer", name="reviewer")
    response = client.get(path, headers=auth(reviewer))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("role", ["ci", "monitor", "reviewer"])
def test_read_only_roles_may_list_models(client: TestClient, admin_token: str, role: str) -> None:
    token = make_token(client, admin_token, role=role, name=role)
    response = client.get(f"{API}/models", headers=auth(token))
    assert response.status_code == 200, response.text


def test_no_route_lets_a_vendor_set_a_version_status(
    app: Any, client: TestClient, vendor: VendorAccount
) -> None:
    me = client.get(f"{API}/me", headers=vendor.headers).json()
    version_id = _insert_version(app, model_id=make_model(client, vendor), submitted_by=me["id"])
    version_paths = {p for _, p in _routes(app) if "{version_id}" in p}
    assert f"{API}/versions/{{version_id}}" in version_paths
    answers = {}
    for path in sorted(version_paths):
        for method in WRITE_METHODS:
            response = client.request(
                method,
                path.replace("{version_id}", version_id),
                json={"status": "approved"},
                headers=vendor.headers,
            )
            answers[(method, path)] = response.status_code
    assert all(status in (403, 404, 405) for status in answers.values()), answers
    shown = client.get(f"{API}/versions/{version_id}", headers=vendor.headers)
    assert shown.status_code == 200, shown.text
    assert shown.json()["status"] == "submitted"


# --- token rules ---------------------------------------------------------------------------------


def test_vendor_token_requires_a_vendor_id(client: TestClient, admin_token: str) -> None:
    response = _issue(client, admin_token, role="vendor", name="nobody")
    _assert_error(response, 422, "invalid")
    assert [p["path"] for p in response.json()["problems"]] == ["vendor_id"]


def test_vendor_token_requires_an_existing_vendor(client: TestClient, admin_token: str) -> None:
    response = _issue(client, admin_token, role="vendor", name="ghost", vendor_id=str(uuid.uuid4()))
    _assert_error(response, 422, "invalid")
    assert [p["path"] for p in response.json()["problems"]] == ["vendor_id"]


@pytest.mark.parametrize("role", ROLES_WITHOUT_VENDOR)
def test_non_vendor_token_refuses_a_vendor_id(
    client: TestClient, admin_token: str, vendor: VendorAccount, role: str
) -> None:
    response = _issue(client, admin_token, role=role, name="bound", vendor_id=vendor.vendor_id)
    _assert_error(response, 422, "invalid")
    assert [p["path"] for p in response.json()["problems"]] == ["vendor_id"]


def test_same_name_with_another_role_is_a_conflict(client: TestClient, admin_token: str) -> None:
    make_token(client, admin_token, role="ci", name="pipeline")
    response = _issue(client, admin_token, role="monitor", name="pipeline")
    _assert_error(response, 409, "conflict")


def test_same_name_and_role_issues_a_second_token_for_the_same_principal(
    client: TestClient, admin_token: str
) -> None:
    first = make_token(client, admin_token, role="ci", name="pipeline")
    second = make_token(client, admin_token, role="ci", name="pipeline")
    assert first != second
    me_first = client.get(f"{API}/me", headers=auth(first)).json()
    me_second = client.get(f"{API}/me", headers=auth(second)).json()
    assert me_first["id"] == me_second["id"]
    assert me_first["token_id"] != me_second["token_id"]


def test_revoked_token_stops_working(client: TestClient, admin_token: str) -> None:
    token = make_token(client, admin_token, role="ci", name="pipeline")
    assert client.get(f"{API}/me", headers=auth(token)).status_code == 200
    revoked = client.delete(f"{API}/tokens/{_token_id(client, token)}", headers=auth(admin_token))
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    _assert_error(client.get(f"{API}/me", headers=auth(token)), 401, "unauthorized")


def test_revoking_twice_is_a_conflict(client: TestClient, admin_token: str) -> None:
    token_id = _token_id(client, make_token(client, admin_token, role="ci", name="pipeline"))
    assert client.delete(f"{API}/tokens/{token_id}", headers=auth(admin_token)).status_code == 200
    response = client.delete(f"{API}/tokens/{token_id}", headers=auth(admin_token))
    _assert_error(response, 409, "conflict")


def test_revoking_an_unknown_token_is_not_found(client: TestClient, admin_token: str) -> None:
    response = client.delete(f"{API}/tokens/{uuid.uuid4()}", headers=auth(admin_token))
    _assert_error(response, 404, "not_found")


def test_token_works_until_it_expires(
    client: TestClient, admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    expires = datetime.now(UTC) + timedelta(seconds=2)
    created = _issue(
        client, admin_token, role="ci", name="short-lived", expires_at=expires.isoformat()
    )
    assert created.status_code == 201, created.text
    headers = auth(created.json()["token"])
    assert client.get(f"{API}/me", headers=headers).status_code == 200
    monkeypatch.setattr("registry.auth.utcnow", lambda: expires + timedelta(seconds=1))
    response = client.get(f"{API}/me", headers=headers)
    _assert_error(response, 401, "unauthorized")
    assert "expired" in response.json()["detail"]


def test_expiry_in_the_past_is_invalid(client: TestClient, admin_token: str) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    response = _issue(client, admin_token, role="ci", name="stale", expires_at=past)
    _assert_error(response, 422, "invalid")
    assert [p["path"] for p in response.json()["problems"]] == ["expires_at"]


def test_token_list_shows_prefixes_never_secrets(client: TestClient, admin_token: str) -> None:
    token = make_token(client, admin_token, role="ci", name="pipeline")
    response = client.get(f"{API}/tokens", headers=auth(admin_token))
    assert response.status_code == 200, response.text
    assert token not in response.text and admin_token not in response.text
    listed = {t["name"]: t for t in response.json()["data"]}
    assert "token" not in listed["pipeline"]
    assert token.startswith(listed["pipeline"]["prefix"])
    assert len(listed["pipeline"]["prefix"]) < len(token) // 2


def test_tokens_are_stored_hashed(app: Any, client: TestClient, admin_token: str) -> None:
    token = make_token(client, admin_token, role="ci", name="pipeline")
    with app.state.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT * FROM api_token")).all()
    assert len(rows) == 2
    cells = [str(value) for row in rows for value in row]
    for plain in (token, admin_token):
        assert not any(plain in cell for cell in cells)
    assert hash_token(token) in cells


# --- error bodies ------------------------------------------------------------------------------


def test_unknown_route_is_a_json_404(client: TestClient) -> None:
    response = client.get(f"{API}/no-such-thing")
    _assert_error(response, 404, "not_found")


def test_malformed_json_body_is_a_422_with_problems(client: TestClient, admin_token: str) -> None:
    response = client.post(
        f"{API}/vendors",
        content=b'{"name": "acme",',
        headers={**auth(admin_token), "Content-Type": "application/json"},
    )
    _assert_error(response, 422, "invalid")
    assert response.json()["problems"]


def test_invalid_body_fields_are_named_by_their_path(client: TestClient, admin_token: str) -> None:
    response = _issue(client, admin_token, role="wizard", name="")
    _assert_error(response, 422, "invalid")
    assert sorted(p["path"] for p in response.json()["problems"]) == ["name", "role"]


def test_invalid_manifest_problems_have_dotted_paths(
    client: TestClient, vendor: VendorAccount
) -> None:
    model_id = make_model(client, vendor)
    manifest = (
        b'{"name": "lesion-detector", "version_label": "1", "task": "binary",'
        b' "labels": ["lesion"], "input": {"channels": 1, "height": 4, "width": 32,'
        b' "intensity": {"kind": "minmax", "min": 0, "max": 1}},'
        b' "output": {"kind": "probabilities", "shape": ["N"]}}'
    )
    response = client.post(
        f"{API}/models/{model_id}/versions",
        files={
            "manifest": ("manifest.json", manifest, "application/json"),
            "artifact": ("model.onnx", b"\x08\x07", "application/octet-stream"),
        },
        headers=vendor.headers,
    )
    assert response.status_code == 422, response.text
    assert "input.height" in [p["path"] for p in response.json()["problems"]]


def test_malformed_body_without_a_token_is_401_not_422(client: TestClient) -> None:
    """Authentication comes first even where FastAPI parses the JSON body before dependencies."""
    response = client.post(
        "/api/v1/vendors", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_malformed_body_with_a_token_names_the_body(client: TestClient, admin_token: str) -> None:
    response = client.post(
        "/api/v1/vendors",
        content=b"{not json",
        headers={"content-type": "application/json", **auth(admin_token)},
    )
    assert response.status_code == 422
    [problem] = response.json()["problems"]
    assert problem["path"] == "body"
    assert "not valid JSON" in problem["message"]


def test_wrong_method_says_which_are_allowed(client: TestClient) -> None:
    response = client.put("/api/v1/health")
    assert response.status_code == 405
    assert response.json()["detail"] == "The method PUT is not allowed here; allowed: GET."


@pytest.mark.parametrize("name", ["ci\x07", "ci\x1b[2K", "ci\u202emain", "ci\nmain"])
def test_principal_name_with_a_control_or_bidi_character_is_refused(
    client: TestClient, admin_token: str, name: str
) -> None:
    events_before = _audit_length(client, admin_token)
    response = _issue(client, admin_token, role="ci", name=name)
    _assert_error(response, 422, "invalid")
    assert [p["path"] for p in response.json()["problems"]] == ["name"]
    assert "U+" in response.json()["problems"][0]["message"]
    assert _audit_length(client, admin_token) == events_before
    names = [
        t["name"] for t in client.get(f"{API}/tokens", headers=auth(admin_token)).json()["data"]
    ]
    assert names == ["admin"]


# --- the last admin credential -------------------------------------------------------------------


def _revoke(client: TestClient, admin_token: str, token: str) -> Any:
    return client.delete(f"{API}/tokens/{_token_id(client, token)}", headers=auth(admin_token))


def test_the_last_active_admin_token_cannot_be_revoked(
    client: TestClient, admin_token: str
) -> None:
    events_before = _audit_length(client, admin_token)
    response = _revoke(client, admin_token, admin_token)
    _assert_error(response, 409, "conflict")
    assert "last active admin" in response.json()["detail"]
    assert "assay token create --role admin" in response.json()["detail"]
    assert client.get(f"{API}/me", headers=auth(admin_token)).status_code == 200
    assert _audit_length(client, admin_token) == events_before


def test_an_admin_token_can_be_revoked_while_another_admin_token_is_active(
    client: TestClient, admin_token: str
) -> None:
    second = make_token(client, admin_token, role="admin", name="second-admin")
    assert _revoke(client, second, admin_token).status_code == 200
    _assert_error(client.get(f"{API}/me", headers=auth(admin_token)), 401, "unauthorized")
    # Now `second` is the last one.
    _assert_error(_revoke(client, second, second), 409, "conflict")
    assert client.get(f"{API}/me", headers=auth(second)).status_code == 200


def test_a_second_token_of_the_same_admin_counts(client: TestClient, admin_token: str) -> None:
    again = make_token(client, admin_token, role="admin", name="admin")
    assert _revoke(client, again, admin_token).status_code == 200
    _assert_error(_revoke(client, again, again), 409, "conflict")


def test_an_expired_admin_token_does_not_count_as_active(
    client: TestClient, admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    expires = datetime.now(UTC) + timedelta(seconds=30)
    created = _issue(
        client, admin_token, role="admin", name="short-lived", expires_at=expires.isoformat()
    )
    assert created.status_code == 201, created.text
    expiring_id = created.json()["id"]
    # Move the revocation's clock past that expiry instead of sleeping.
    monkeypatch.setattr("registry.principals.service.utcnow", lambda: expires + timedelta(hours=1))
    _assert_error(_revoke(client, admin_token, admin_token), 409, "conflict")
    # Revoking the expired one takes nothing away, so it is allowed.
    response = client.delete(f"{API}/tokens/{expiring_id}", headers=auth(admin_token))
    assert response.status_code == 200, response.text


def test_non_admin_tokens_are_revoked_whatever_the_admins(
    client: TestClient, admin_token: str
) -> None:
    reviewer = make_token(client, admin_token, role="reviewer", name="reviewer")
    assert _revoke(client, admin_token, reviewer).status_code == 200


def test_two_admins_revoking_each_other_at_once_leave_one_admin(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both revocations read the count before either writes; the lock lets only one through."""
    import contextlib
    import threading

    from registry.auth import SYSTEM, Actor
    from registry.db import get_engine, new_session
    from registry.errors import Conflict
    from registry.principals import service
    from registry.principals.models import Role, TokenCreate

    engine = get_engine(settings)
    with new_session(engine) as session:
        first = service.issue_token(session, SYSTEM, data=TokenCreate(role=Role.admin, name="ann"))
        second = service.issue_token(session, SYSTEM, data=TokenCreate(role=Role.admin, name="bob"))
        session.commit()

    # Hold each revocation after its count until the other has counted too (or could not,
    # because the lock kept it out): without the lock, both would see one other admin.
    both_counted = threading.Barrier(2)
    count = service.count_active_admin_tokens

    def count_then_wait(*args: Any, **kwargs: Any) -> int:
        counted = count(*args, **kwargs)
        with contextlib.suppress(threading.BrokenBarrierError):
            both_counted.wait(timeout=3)
        return counted

    monkeypatch.setattr(service, "count_active_admin_tokens", count_then_wait)
    outcomes: dict[str, str] = {}

    def revoke(by: Any, target: Any) -> None:
        actor = Actor(
            id=by.principal_id, name=by.name, role=Role.admin, vendor_id=None, token_id=by.id
        )
        with new_session(engine) as session:
            try:
                service.revoke_token(session, actor, token_id=target.id)
                session.commit()
                outcomes[by.name] = "revoked"
            except Conflict:
                session.rollback()
                outcomes[by.name] = "refused"

    threads = [
        threading.Thread(target=revoke, args=(first, second)),
        threading.Thread(target=revoke, args=(second, first)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes.values()) == ["refused", "revoked"], outcomes
    with new_session(engine) as session:
        from registry.db import utcnow

        assert service.count_active_admin_tokens(session, now=utcnow()) == 1
