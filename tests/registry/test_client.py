"""Tests of registry.client against canned answers that follow the server's HTTP contract.

`httpx.MockTransport` stands in for the server: these tests pin what the client sends and how it
reads the documented answers and errors, not the server's behaviour.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.client import (
    AssayClient,
    AssayError,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    PayloadTooLarge,
    ServerError,
    Unauthorized,
    UnexpectedResponse,
    Unreachable,
)

MODEL_ID = "2f1c7a52-3f0e-4a57-9a5e-0c7c1f6f9d10"
VENDOR_ID = "8b7d4a33-0a6c-4d0b-9a0a-5d2f3c1e7b21"
VERSION_ID = "c4a1d9e0-6b2f-4f3b-8e1d-7a9b0c2d4e6f"
DIGEST = "sha256:" + "ab" * 32

Handler = Callable[[httpx.Request], httpx.Response]


def version_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": VERSION_ID,
        "model_id": MODEL_ID,
        "number": 1,
        "version_label": "1.0.0",
        "digest": DIGEST,
        "status": "submitted",
        "format": "onnx",
        "size_bytes": 1234,
        "intake_report": {"parameter_count": 1000, "operators": {"Conv": 2, "Relu": 2}},
        "manifest": {"name": "chest-xray", "task": "binary"},
        "submitted_by": "acme-ci",
        "created_at": "2025-01-02T03:04:05Z",
    }
    body.update(overrides)
    return body


def make_client(handler: Handler, *, token: str | None = "secret-token") -> AssayClient:
    return AssayClient("http://assay.test", token, transport=httpx.MockTransport(handler))


def answer(status: int, body: Any) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    return handler


def free_port() -> int:
    """Returns a local TCP port that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- requests ------------------------------------------------------------------------------------


def test_requests_carry_the_bearer_token_under_the_api_prefix() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "id": "p1",
                "name": "acme-ci",
                "role": "vendor",
                "vendor_id": VENDOR_ID,
                "vendor_name": "acme",
                "token_id": "t1",
            },
        )

    with make_client(handler) as client:
        me = client.me()

    assert me.role == "vendor" and me.vendor_name == "acme"
    assert seen[0].url == httpx.URL("http://assay.test/api/v1/me")
    assert seen[0].headers["Authorization"] == "Bearer secret-token"


def test_no_authorization_header_without_a_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "ok", "version": "0.1.0"})

    with make_client(handler, token=None) as client:
        assert client.health().status == "ok"
    assert "Authorization" not in seen[0].headers


def test_a_base_url_with_a_path_keeps_the_path() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "ok"})

    transport = httpx.MockTransport(handler)
    with AssayClient("https://proxy.test/assay/", transport=transport) as client:
        client.health()
    assert seen[0].url.path == "/assay/api/v1/health"


def test_list_sends_limit_and_offset_and_reads_the_page() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        data = [{"id": VENDOR_ID, "name": "acme", "display_name": "ACME", "created_at": None}]
        return httpx.Response(200, json={"data": data, "count": 42})

    with make_client(handler) as client:
        page = client.list_vendors(limit=5, offset=10)

    assert seen[0].url.path == "/api/v1/vendors"
    assert dict(seen[0].url.params) == {"limit": "5", "offset": "10"}
    assert page.count == 42
    assert page.data[0].name == "acme"


def test_each_list_method_uses_its_path() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(200, json={"data": [], "count": 0})

    with make_client(handler) as client:
        client.list_tokens()
        client.list_models()
        client.list_versions(MODEL_ID)
        client.audit_events(limit=3, offset=0)

    assert paths == [
        "/api/v1/tokens",
        "/api/v1/models",
        f"/api/v1/models/{MODEL_ID}/versions",
        "/api/v1/audit",
    ]


def test_create_token_sends_the_expiry_as_iso_and_omits_absent_fields() -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(
            201,
            json={
                "id": "t1",
                "token": "assay_abc",
                "principal_id": "p1",
                "name": "ci-main",
                "role": "ci",
                "vendor_id": None,
                "expires_at": "2026-06-30T00:00:00Z",
            },
        )

    expiry = datetime(2026, 6, 30, tzinfo=UTC)
    with make_client(handler) as client:
        created = client.create_token("ci", "ci-main", expires_at=expiry)

    assert bodies == [{"role": "ci", "name": "ci-main", "expires_at": "2026-06-30T00:00:00+00:00"}]
    assert created.token == "assay_abc"
    assert created.expires_at == expiry


def test_revoke_token_sends_delete() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={"id": "t1", "name": "old", "role": "ci", "revoked_at": "2025-01-01T00:00:00Z"},
        )

    with make_client(handler) as client:
        revoked = client.revoke_token("t1")

    assert (seen[0].method, seen[0].url.path) == ("DELETE", "/api/v1/tokens/t1")
    assert revoked.revoked_at is not None


def test_audit_verify_sends_the_expected_head() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={"ok": True, "length": 3, "head": "h3", "first_broken_seq": None, "reason": None},
        )

    with make_client(handler) as client:
        result = client.audit_verify(expect_head="h3")

    assert seen[0].url.params["expect_head"] == "h3"
    assert result.ok and result.length == 3


def test_fields_added_by_a_newer_server_are_kept() -> None:
    handler = answer(200, version_body(evaluation_count=2))
    with make_client(handler) as client:
        version = client.get_version(VERSION_ID)
    assert version.model_extra == {"evaluation_count": 2}
    assert version.model_dump()["evaluation_count"] == 2


def test_manifest_schema_returns_the_document() -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    with make_client(answer(200, schema)) as client:
        assert client.manifest_schema() == schema


def test_from_httpx_uses_the_given_client_and_leaves_it_open() -> None:
    http = httpx.Client(
        base_url="http://testserver", transport=httpx.MockTransport(answer(200, {"status": "ok"}))
    )
    with AssayClient.from_httpx(http, token="t") as client:
        assert client.health().status == "ok"
    assert not http.is_closed
    http.close()


# --- the upload ----------------------------------------------------------------------------------


def _multipart_parts(request: httpx.Request) -> dict[str, tuple[str | None, bytes]]:
    """Returns {part name: (filename, content)} parsed from a multipart/form-data request."""
    content_type = request.headers["Content-Type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    boundary = content_type.split("boundary=", 1)[1].encode()
    parts: dict[str, tuple[str | None, bytes]] = {}
    for raw in request.read().split(b"--" + boundary)[1:-1]:
        head, _, content = raw.strip(b"\r\n").partition(b"\r\n\r\n")
        disposition = next(
            line.decode()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-disposition")
        )
        params = dict(
            item.strip().split("=", 1) for item in disposition.split(";")[1:] if "=" in item
        )
        filename = params["filename"].strip('"') if "filename" in params else None
        parts[params["name"].strip('"')] = (filename, content)
    return parts


def test_submit_sends_manifest_and_artifact_parts_and_the_idempotency_key(tmp_path: Path) -> None:
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"\x08\x07onnx-bytes" * 100)
    manifest = {"name": "chest-xray", "version_label": "1.0.0", "task": "binary"}
    manifest_path = tmp_path / "manifest.json"
    manifest_path.write_text(json.dumps(manifest))
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=version_body())

    with make_client(handler) as client:
        version = client.submit_version(MODEL_ID, artifact, manifest_path, idempotency_key="k-1")

    request = seen[0]
    assert (request.method, request.url.path) == ("POST", f"/api/v1/models/{MODEL_ID}/versions")
    assert request.headers["Idempotency-Key"] == "k-1"
    parts = _multipart_parts(request)
    assert set(parts) == {"manifest", "artifact"}
    assert parts["manifest"][0] is None  # a plain form field, not a file
    assert json.loads(parts["manifest"][1]) == manifest
    assert parts["artifact"] == ("model.onnx", artifact.read_bytes())
    assert version.digest == DIGEST and version.number == 1


def test_submit_accepts_the_manifest_as_a_mapping_and_omits_an_absent_key(tmp_path: Path) -> None:
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"weights")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=version_body())

    with make_client(handler) as client:
        client.submit_version(MODEL_ID, artifact, {"name": "m"})

    assert "Idempotency-Key" not in seen[0].headers
    assert json.loads(_multipart_parts(seen[0])["manifest"][1]) == {"name": "m"}


class ChunkRecordingTransport(httpx.BaseTransport):
    """Reads the request body chunk by chunk, as a real socket would, and records the chunks."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        self.chunks = [bytes(chunk) for chunk in request.stream]
        return httpx.Response(201, json=version_body())


def test_submit_streams_the_artifact_in_chunks(tmp_path: Path) -> None:
    artifact = tmp_path / "big.onnx"
    size = 300 * 1024
    artifact.write_bytes(bytes(range(256)) * (size // 256))
    reports: list[tuple[int, int]] = []
    transport = ChunkRecordingTransport()

    with AssayClient("http://assay.test", "t", transport=transport) as client:
        client.submit_version(
            MODEL_ID,
            artifact,
            {"name": "m"},
            on_progress=lambda sent, total: reports.append((sent, total)),
        )

    assert artifact.read_bytes() in b"".join(transport.chunks)
    assert max(len(chunk) for chunk in transport.chunks) <= 64 * 1024
    sent_values = [sent for sent, _ in reports]
    assert sent_values == sorted(sent_values)
    assert reports[-1] == (size, size)


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (401, Unauthorized),
        (403, Forbidden),
        (404, NotFound),
        (409, Conflict),
        (413, PayloadTooLarge),
        (422, Invalid),
        (500, ServerError),
        (503, ServerError),
    ],
)
def test_error_statuses_map_to_exceptions_with_the_servers_detail(
    status: int, error_type: type[AssayError]
) -> None:
    body = {"error": "some_code", "detail": "Something was refused.", "problems": []}
    with make_client(answer(status, body)) as client, pytest.raises(error_type) as caught:
        client.get_model(MODEL_ID)
    assert caught.value.status == status
    assert caught.value.error == "some_code"
    assert caught.value.detail == "Something was refused."


def test_an_unlisted_4xx_is_a_plain_assay_error() -> None:
    body = {"error": "bad_request", "detail": "Nope."}
    with make_client(answer(400, body)) as client, pytest.raises(AssayError) as caught:
        client.me()
    assert type(caught.value) is AssayError
    assert caught.value.problems == []


def test_invalid_carries_the_problems_and_prints_them() -> None:
    problems = [
        {"path": "input.channels", "message": "must be 1 or 3"},
        {"path": "labels", "message": "must not be empty"},
    ]
    body = {"error": "invalid_manifest", "detail": "The manifest is invalid.", "problems": problems}
    with make_client(answer(422, body)) as client, pytest.raises(Invalid) as caught:
        client.create_model("m")
    assert caught.value.problems == problems
    assert str(caught.value).splitlines() == [
        "The manifest is invalid.",
        "  input.channels: must be 1 or 3",
        "  labels: must not be empty",
    ]


def test_fastapi_request_validation_bodies_become_problems() -> None:
    body = {"detail": [{"loc": ["body", "name"], "msg": "Field required", "type": "missing"}]}
    with make_client(answer(422, body)) as client, pytest.raises(Invalid) as caught:
        client.create_vendor("x")
    assert caught.value.problems == [{"path": "body.name", "message": "Field required"}]


def test_a_non_json_error_body_still_gives_a_readable_detail() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad Gateway</html>")

    with make_client(handler) as client, pytest.raises(ServerError) as caught:
        client.me()
    assert "502" in caught.value.detail and "Bad Gateway" in caught.value.detail


def test_an_answer_that_is_not_the_api_is_an_unexpected_response() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>a login page</html>")

    with make_client(handler) as client, pytest.raises(UnexpectedResponse) as caught:
        client.me()
    assert "/api/v1/me" in caught.value.detail


def test_connection_refused_is_unreachable_and_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with AssayClient(url, timeout=5) as client, pytest.raises(Unreachable) as caught:
        client.health()
    message = str(caught.value)
    assert url in message
    assert "--url" in message and "ASSAY_URL" in message and "assay serve" in message
    assert caught.value.status == 0


def test_a_timeout_is_unreachable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out", request=request)

    with make_client(handler) as client, pytest.raises(Unreachable) as caught:
        client.me()
    assert "timed out" in caught.value.detail


# --- what the client may import ------------------------------------------------------------------


def test_importing_the_client_pulls_in_no_server_code() -> None:
    code = (
        "import sys, registry.client\n"
        "heavy = {'fastapi', 'sqlmodel', 'sqlalchemy', 'torch', 'uvicorn', 'numpy', 'validators'}\n"
        "print([m for m in sys.modules if m.split('.')[0] in heavy"
        " or (m.startswith('registry.') and m != 'registry.client')])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
