"""Hostile requests: body limits, authentication before the body, NUL, huge numbers, error shapes.

Each test sends what an attacker sent and expects a clear 4xx error body, never a 5xx and never a
body read before the caller is known.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import APIRouter, Body
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from registry.app import PUBLIC_PATHS
from tests.registry.conftest import VendorAccount, auth, make_model

API = "/api/v1"
JSON_ROUTES = [f"{API}/vendors", f"{API}/tokens", f"{API}/models"]


def _assert_error(response: Any, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "detail", "problems"}, body
    assert body["error"] == error, body
    assert body["detail"], body
    return body


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _chunks(total: int, size: int = 16 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        chunk = min(size, total - sent)
        sent += chunk
        yield b" " * chunk


# --- authentication comes before any body ------------------------------------------------------


@pytest.mark.parametrize("path", JSON_ROUTES)
@pytest.mark.parametrize(
    "content",
    [b"{not json", _deep(100_000), b'{"name": "' + b"x" * 2_000_000 + b'"}'],
    ids=["malformed", "deep", "two-megabytes"],
)
def test_unauthenticated_body_is_401_whatever_it_holds(
    client: TestClient, path: str, content: bytes
) -> None:
    response = client.post(path, content=content, headers={"content-type": "application/json"})
    _assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["connection"] == "close"  # the body was left unread


def test_unauthenticated_request_without_a_body_keeps_the_connection(client: TestClient) -> None:
    response = client.get(f"{API}/me")
    _assert_error(response, 401, "unauthorized")
    assert "connection" not in response.headers


def test_unauthenticated_chunked_body_is_401(client: TestClient) -> None:
    response = client.post(
        f"{API}/vendors", content=_chunks(1_000_000), headers={"content-type": "application/json"}
    )
    _assert_error(response, 401, "unauthorized")


def test_the_route_dependency_reuses_the_actor_of_the_middleware(
    client: TestClient, admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import registry.auth

    calls: list[str] = []
    original = registry.auth.new_session

    def counting(engine: Any, **kwargs: Any) -> Any:
        calls.append("write" if kwargs.get("write", True) else "read")
        return original(engine, **kwargs)

    monkeypatch.setattr(registry.auth, "new_session", counting)
    # The first use also records the token's last use, in a write of its own.
    response = client.get(f"{API}/me", headers=auth(admin_token))
    assert response.status_code == 200, response.text
    assert calls == ["read", "write"]
    calls.clear()
    response = client.get(f"{API}/me", headers=auth(admin_token))
    assert response.status_code == 200, response.text
    assert calls == ["read"]


# --- JSON body limits ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", JSON_ROUTES)
def test_declared_json_body_over_the_limit_is_413(
    client: TestClient, admin_token: str, path: str
) -> None:
    content = json.dumps({"name": "x" * 100_000}).encode()
    response = client.post(
        path, content=content, headers={**auth(admin_token), "content-type": "application/json"}
    )
    body = _assert_error(response, 413, "payload_too_large")
    assert "65536" in body["detail"]
    assert response.headers["connection"] == "close"


def test_chunked_json_body_over_the_limit_is_413(client: TestClient, admin_token: str) -> None:
    response = client.post(
        f"{API}/vendors",
        content=_chunks(1_000_000),
        headers={**auth(admin_token), "content-type": "application/json"},
    )
    _assert_error(response, 413, "payload_too_large")


def test_json_body_under_the_limit_is_accepted(client: TestClient, admin_token: str) -> None:
    response = client.post(
        f"{API}/vendors",
        json={"name": "acme", "padding": " " * 60_000},
        headers=auth(admin_token),
    )
    assert response.status_code == 201, response.text


def test_the_json_limit_is_a_setting(settings: Any, admin_token: str) -> None:
    from registry.app import create_app

    app = create_app(settings.model_copy(update={"max_json_bytes": 100}))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(
            f"{API}/vendors", json={"name": "a" * 120}, headers=auth(admin_token)
        )
    body = _assert_error(response, 413, "payload_too_large")
    assert "ASSAY_MAX_JSON_BYTES" in body["detail"]


def test_a_route_can_declare_a_larger_limit(settings: Any, admin_token: str) -> None:
    from registry.app import create_app
    from registry.limits import body_limit

    app = create_app(settings)
    router = APIRouter()

    @router.post("/api/v1/test-batch")
    @body_limit(1_000_000)
    def batch(items: list[int] = Body()) -> int:
        return len(items)

    app.include_router(router)
    batch_body = json.dumps(list(range(50_000))).encode()
    assert len(batch_body) > 65536
    with TestClient(app, raise_server_exceptions=False) as client:
        headers = {**auth(admin_token), "content-type": "application/json"}
        accepted = client.post("/api/v1/test-batch", content=batch_body, headers=headers)
        too_large = client.post(
            "/api/v1/test-batch", content=b" " * 1_000_001 + b"[]", headers=headers
        )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == 50_000
    _assert_error(too_large, 413, "payload_too_large")


# --- hostile values ------------------------------------------------------------------------------


def test_deeply_nested_json_body_is_422(client: TestClient, admin_token: str) -> None:
    response = client.post(
        f"{API}/vendors",
        content=b'{"name": ' + _deep(10_000) + b"}",
        headers={**auth(admin_token), "content-type": "application/json"},
    )
    body = _assert_error(response, 422, "invalid")
    assert "nested" in body["problems"][0]["message"]


def _api_routes(app: Any) -> list[tuple[str, APIRoute]]:
    """(full path, route) for every API route the app serves."""
    return [
        (context.path_format, context.route)
        for context in iter_route_contexts(app.routes)
        if isinstance(context.route, APIRoute) and context.path_format
    ]


def _query_names(route: APIRoute) -> list[str]:
    names = [p.alias for p in route.dependant.query_params]
    for dependency in route.dependant.dependencies:
        names.extend(p.alias for p in dependency.query_params)
    return names


def _list_routes(app: Any) -> list[str]:
    return [path for path, route in _api_routes(app) if "offset" in _query_names(route)]


@pytest.mark.parametrize("value", [2**63, 2**63 - 1, 2**64, 10**30])
def test_huge_offset_is_422_on_every_list_route(
    app: Any, client: TestClient, admin_token: str, value: int
) -> None:
    paths = _list_routes(app)
    assert len(paths) >= 5
    for path in paths:
        url = path.replace("{model_id}", str(uuid.uuid4()))
        response = client.get(url, params={"offset": value}, headers=auth(admin_token))
        body = _assert_error(response, 422, "invalid")
        assert [p["path"] for p in body["problems"]] == ["offset"], (path, body)


def test_large_offset_within_bounds_is_an_empty_page(client: TestClient, admin_token: str) -> None:
    response = client.get(
        f"{API}/vendors", params={"offset": 2**31 - 1, "limit": 500}, headers=auth(admin_token)
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"] == []


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (f"{API}/vendors", {"name": "ac\x00me"}, "name"),
        (f"{API}/tokens", {"role": "ci", "name": "pipe\x00line"}, "name"),
        (f"{API}/models", {"name": "m", "description": "a\x00b"}, "description"),
    ],
)
def test_nul_in_a_json_string_is_422(
    client: TestClient,
    admin_token: str,
    vendor: VendorAccount,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    headers = vendor.headers if path.endswith("/models") else auth(admin_token)
    response = client.post(path, json=body, headers=headers)
    answer = _assert_error(response, 422, "invalid")
    assert [p["path"] for p in answer["problems"]] == [field]
    assert "NUL" in answer["problems"][0]["message"]


def test_nul_in_a_json_key_is_422(client: TestClient, admin_token: str) -> None:
    response = client.post(
        f"{API}/vendors", json={"name": "acme", "x\x00": 1}, headers=auth(admin_token)
    )
    _assert_error(response, 422, "invalid")


def test_nul_in_a_query_parameter_is_422(client: TestClient, admin_token: str) -> None:
    response = client.get(f"{API}/audit/verify?expect_head=ab%00cd", headers=auth(admin_token))
    body = _assert_error(response, 422, "invalid")
    assert [p["path"] for p in body["problems"]] == ["expect_head"]


def test_nul_in_a_path_parameter_is_422(client: TestClient, admin_token: str) -> None:
    response = client.get(f"{API}/models/ab%00cd", headers=auth(admin_token))
    _assert_error(response, 422, "invalid")


def test_nul_in_the_idempotency_key_is_422(
    client: TestClient, vendor: VendorAccount, settings: Any
) -> None:
    model_id = make_model(client, vendor)
    response = client.post(
        f"{API}/models/{model_id}/versions",
        files={"manifest": ("m.json", b"{}"), "artifact": ("m.onnx", b"\x08\x07")},
        headers={**vendor.headers, "Idempotency-Key": "key\x00"},
    )
    body = _assert_error(response, 422, "invalid")
    assert [p["path"] for p in body["problems"]] == ["idempotency-key"]


# --- error answers ---------------------------------------------------------------------------


def test_a_500_closes_the_connection(settings: Any, admin_token: str) -> None:
    from registry.app import create_app

    app = create_app(settings)

    @app.get("/api/v1/health/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/api/v1/health/boom", headers=auth(admin_token))
    _assert_error(response, 500, "internal_error")
    assert response.headers["connection"] == "close"


def test_a_422_lists_at_most_100_problems_and_says_how_many(
    settings: Any, admin_token: str
) -> None:
    from registry.app import create_app

    app = create_app(settings)

    @app.post("/api/v1/test-numbers")
    def numbers(items: list[int] = Body()) -> int:
        return len(items)

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/api/v1/test-numbers", json=["x"] * 250, headers=auth(admin_token))
    body = _assert_error(response, 422, "invalid")
    assert len(body["problems"]) == 100
    assert "250" in body["detail"] and "100" in body["detail"]


def test_a_domain_error_lists_at_most_100_problems() -> None:
    from registry.errors import Invalid

    body = Invalid("Bad.", problems=[{"path": f"x.{i}", "message": "bad"} for i in range(150)])
    rendered = body.body()
    assert len(rendered.problems) == 100
    assert "150" in rendered.detail


def test_405_names_every_method_of_the_path(client: TestClient, admin_token: str) -> None:
    response = client.put(f"{API}/models", headers=auth(admin_token))
    body = _assert_error(response, 405, "method_not_allowed")
    assert body["detail"] == "The method PUT is not allowed here; allowed: GET, POST."
    assert response.headers["allow"] == "GET, POST"


def test_405_on_a_protected_path_needs_a_token_first(client: TestClient) -> None:
    response = client.put(f"{API}/models")
    _assert_error(response, 401, "unauthorized")


def test_every_operation_declares_its_error_answers(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            expected = {"413", "422", "500"}
            if path not in PUBLIC_PATHS:
                expected.add("401")
            declared = operation["responses"]
            assert expected <= set(declared), (method, path, sorted(declared))
            for status in declared:
                if status.startswith(("4", "5")):
                    schema = declared[status]["content"]["application/json"]["schema"]
                    assert schema == ref, (method, path, status)


def test_the_submission_declares_507(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    operation = document["paths"][f"{API}/models/{{model_id}}/versions"]["post"]
    assert "507" in operation["responses"]


# --- the route walk --------------------------------------------------------------------------

HOSTILE_STRINGS = [
    "",
    "\x00",
    "a\x00b",
    "x" * 20_000,
    "\u202e\u0000\ufeff",
    "%ED%A0%80",
    "%00",
    "../../etc/passwd",
    "' OR 1=1 --",
    "9" * 400,
]
HOSTILE_NUMBERS = [2**63, -(2**63) - 1, 2**64, -1, 0, 10**400, "1e309", "NaN", "1.5", "true"]
HOSTILE_BODIES: list[bytes] = [
    b"",
    b"null",
    b"[]",
    b"{}",
    b"{not json",
    _deep(50_000),
    b'{"a":' * 30_000 + b"1" + b"}" * 30_000,
    json.dumps({"name": "\x00", "role": "admin", "vendor_id": "\x00"}).encode(),
    json.dumps({"name": 2**70, "role": ["admin"], "expires_at": "9999-99-99"}).encode(),
    json.dumps({"name": "x" * 60_000}).encode(),
    b'"\\ud800"',
    b"\xff\xfe\xfd",
]


def _hostile_paths(path: str) -> list[str]:
    if "{" not in path:
        return [path]
    segments = ["%00", "a%00b", "x" * 5000, "-1", str(2**64), "%E2%80%AE", "..%2F..%2Fetc"]
    out = []
    for value in segments:
        out.append("/".join(value if p.startswith("{") else p for p in path.split("/")))
    return out


def test_route_walk_with_hostile_values_never_answers_5xx(
    app: Any, client: TestClient, admin_token: str, vendor: VendorAccount
) -> None:
    routes = _api_routes(app)
    assert len(routes) >= 14
    failures: list[str] = []
    seen = 0
    for headers in (auth(admin_token), vendor.headers):
        for path, route in routes:
            for method in sorted(route.methods):
                requests: list[dict[str, Any]] = []
                for url in _hostile_paths(path):
                    requests.append({"url": url})
                url = _hostile_paths(path)[-1]
                for name in _query_names(route):
                    for value in [*HOSTILE_STRINGS, *HOSTILE_NUMBERS]:
                        requests.append({"url": url, "params": {name: str(value)}})
                if method in ("POST", "PUT", "PATCH"):
                    for content in HOSTILE_BODIES:
                        requests.append(
                            {
                                "url": url,
                                "content": content,
                                "headers": {"content-type": "application/json"},
                            }
                        )
                for request in requests:
                    extra = request.pop("headers", {})
                    response = client.request(method, headers={**headers, **extra}, **request)
                    seen += 1
                    if response.status_code >= 500:
                        failures.append(
                            f"{method} {path} {str(request)[:120]}: "
                            f"{response.status_code} {response.text[:200]}"
                        )
    assert seen > 300
    assert failures == []
