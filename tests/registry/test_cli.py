"""Tests of the `assay` command.

Remote commands run against canned answers that follow the server's HTTP contract (through
`httpx.MockTransport`); local commands run against stand-in server modules placed in
`sys.modules`, under the exact names the CLI imports, so these tests pin the CLI's side of both
contracts without needing the server.
"""

from __future__ import annotations

import ast
import json
import socket
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from pydantic import BaseModel
from typer.testing import CliRunner, Result

import registry.cli.common
from registry.cli import app
from registry.client import AssayClient

MODEL_ID = "2f1c7a52-3f0e-4a57-9a5e-0c7c1f6f9d10"
VENDOR_ID = "8b7d4a33-0a6c-4d0b-9a0a-5d2f3c1e7b21"
VERSION_ID = "c4a1d9e0-6b2f-4f3b-8e1d-7a9b0c2d4e6f"
DIGEST = "sha256:" + "0123456789abcdef" * 4
HEAD = "sha256:" + "fe" * 32

ME = {
    "id": "p-1",
    "name": "acme-ci",
    "role": "vendor",
    "vendor_id": VENDOR_ID,
    "vendor_name": "acme",
    "token_id": "t-1",
}
VENDOR = {
    "id": VENDOR_ID,
    "name": "acme",
    "display_name": "ACME Imaging",
    "created_at": "2025-01-02T03:04:05Z",
}
TOKEN = {
    "id": "t-2",
    "principal_id": "p-2",
    "name": "ci-main",
    "role": "ci",
    "vendor_id": None,
    "prefix": "assay_ab12",
    "created_at": "2025-01-02T03:04:05Z",
    "expires_at": None,
    "revoked_at": None,
    "last_used_at": None,
}
MODEL = {
    "id": MODEL_ID,
    "vendor_id": VENDOR_ID,
    "name": "chest-xray",
    "description": "Pneumothorax triage",
    "created_at": "2025-01-02T03:04:05Z",
    "version_count": 2,
}
VERSION = {
    "id": VERSION_ID,
    "model_id": MODEL_ID,
    "number": 2,
    "version_label": "1.1.0",
    "digest": DIGEST,
    "status": "submitted",
    "format": "onnx",
    "size_bytes": 2_500_000,
    "intake_report": {
        "parameter_count": 1234567,
        "operators": {"Conv": 12, "Relu": 12, "Gemm": 1},
    },
    "manifest": {"name": "chest-xray", "task": "binary"},
    "submitted_by": "acme-ci",
    "created_at": "2025-01-02T03:04:05Z",
}
AUDIT_EVENT = {
    "seq": 7,
    "at": "2025-01-02T03:04:05Z",
    "actor": "admin",
    "action": "vendor.create",
    "object_type": "vendor",
    "object_id": VENDOR_ID,
    "payload": {},
    "prev_hash": "sha256:" + "00" * 32,
    "hash": HEAD,
}


def page(*items: dict[str, Any], count: int | None = None) -> dict[str, Any]:
    return {"data": list(items), "count": len(items) if count is None else count}


@dataclass
class FakeServer:
    """Canned answers keyed by (method, path under /api/v1); records every request it gets."""

    routes: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def answer(self, method: str, path: str, status: int, body: Any) -> None:
        self.routes[(method, path)] = (status, body)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/api/v1")
        status, body = self.routes.get(
            (request.method, path), (404, {"error": "not_found", "detail": f"No route {path}."})
        )
        return httpx.Response(status, json=body)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    fake = FakeServer()

    def make_client(url: str, token: str | None) -> AssayClient:
        return AssayClient(url, token, transport=httpx.MockTransport(fake.handle))

    monkeypatch.setattr(registry.cli.common, "make_client", make_client)
    return fake


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ASSAY_URL", "ASSAY_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    # Wide enough that rich never folds a table cell, so values can be matched whole.
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250", **(env or {})})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- remote commands -----------------------------------------------------------------------------


def test_whoami_prints_the_principal(server: FakeServer) -> None:
    server.answer("GET", "/me", 200, ME)
    result = invoke("whoami", "--token", "tok")
    assert result.exit_code == 0, result.output
    assert "acme-ci" in result.stdout and "vendor" in result.stdout and VENDOR_ID in result.stdout
    assert server.requests[0].headers["Authorization"] == "Bearer tok"


def test_whoami_json_is_one_document(server: FakeServer) -> None:
    server.answer("GET", "/me", 200, ME)
    result = invoke("whoami", "--json", "--token", "tok")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == ME


def test_url_and_token_come_from_the_environment(server: FakeServer) -> None:
    server.answer("GET", "/me", 200, ME)
    result = invoke("whoami", env={"ASSAY_URL": "http://elsewhere:9000", "ASSAY_TOKEN": "envtok"})
    assert result.exit_code == 0
    assert str(server.requests[0].url) == "http://elsewhere:9000/api/v1/me"
    assert server.requests[0].headers["Authorization"] == "Bearer envtok"


def test_unauthorized_without_a_token_says_how_to_give_one(server: FakeServer) -> None:
    server.answer("GET", "/me", 401, {"error": "unauthorized", "detail": "A token is required."})
    result = invoke("whoami")
    assert result.exit_code == 1
    assert "A token is required." in result.stderr
    assert "ASSAY_TOKEN" in result.stderr


def test_vendor_create_sends_the_names(server: FakeServer) -> None:
    server.answer("POST", "/vendors", 201, VENDOR)
    result = invoke("vendor", "create", "acme", "--display-name", "ACME Imaging", "--token", "t")
    assert result.exit_code == 0, result.output
    assert json.loads(server.requests[0].content) == {
        "name": "acme",
        "display_name": "ACME Imaging",
    }
    assert VENDOR_ID in result.stdout


def test_vendor_list_shows_a_table(server: FakeServer) -> None:
    server.answer("GET", "/vendors", 200, page(VENDOR))
    result = invoke("vendor", "list", "--token", "t")
    assert result.exit_code == 0
    for value in (VENDOR_ID, "acme", "ACME Imaging"):
        assert value in result.stdout


def test_list_passes_limit_and_offset_and_tells_about_more(server: FakeServer) -> None:
    server.answer("GET", "/vendors", 200, page(VENDOR, count=30))
    result = invoke("vendor", "list", "--limit", "1", "--offset", "10", "--token", "t")
    assert result.exit_code == 0
    assert dict(server.requests[0].url.params) == {"limit": "1", "offset": "10"}
    assert "11-11 of 30" in result.stdout and "--offset 11" in result.stdout


def test_a_limit_over_the_maximum_is_a_usage_error(server: FakeServer) -> None:
    result = invoke("vendor", "list", "--limit", "501")
    assert result.exit_code == 2
    assert server.requests == []


def test_token_create_prints_the_secret_once_with_a_warning(server: FakeServer) -> None:
    created = {key: TOKEN[key] for key in ("id", "principal_id", "name", "role", "vendor_id")}
    server.answer("POST", "/tokens", 201, {**created, "token": "assay_s3cret", "expires_at": None})
    result = invoke("token", "create", "--role", "ci", "--name", "ci-main", "--token", "t")
    assert result.exit_code == 0, result.output
    assert "assay_s3cret" in result.stdout
    assert "will not be shown again" in result.stderr
    assert json.loads(server.requests[0].content) == {"role": "ci", "name": "ci-main"}


def test_token_create_sends_vendor_and_a_zoned_expiry(server: FakeServer) -> None:
    body = {**TOKEN, "token": "assay_x", "role": "vendor", "vendor_id": VENDOR_ID}
    server.answer("POST", "/tokens", 201, body)
    result = invoke(
        "token", "create", "--role", "vendor", "--name", "acme-ci", "--vendor", VENDOR_ID,
        "--expires-at", "2026-06-30T17:00:00Z", "--json", "--token", "t",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    sent = json.loads(server.requests[0].content)
    assert sent["vendor_id"] == VENDOR_ID
    assert sent["expires_at"] == "2026-06-30T17:00:00+00:00"
    assert json.loads(result.stdout)["token"] == "assay_x"


@pytest.mark.parametrize(
    "args",
    [
        ["--role", "superuser", "--name", "x"],
        ["--role", "ci", "--name", "x", "--expires-at", "next tuesday"],
        ["--role", "ci"],
    ],
)
def test_token_create_usage_errors_exit_2(server: FakeServer, args: list[str]) -> None:
    result = invoke("token", "create", *args)
    assert result.exit_code == 2
    assert server.requests == []


def test_token_list_and_revoke(server: FakeServer) -> None:
    server.answer("GET", "/tokens", 200, page(TOKEN))
    revoked = {**TOKEN, "revoked_at": "2025-02-01T00:00:00Z"}
    server.answer("DELETE", "/tokens/t-2", 200, revoked)
    listed = invoke("token", "list", "--token", "t")
    assert listed.exit_code == 0
    assert "assay_ab12" in listed.stdout and "active" in listed.stdout
    result = invoke("token", "revoke", "t-2", "--token", "t")
    assert result.exit_code == 0
    assert "Revoked" in result.stdout and "ci-main" in result.stdout


def test_model_create_refused_with_problems_exits_1(server: FakeServer) -> None:
    problems = [{"path": "name", "message": "must be lowercase letters, digits and dashes"}]
    body = {"error": "invalid", "detail": "The model is invalid.", "problems": problems}
    server.answer("POST", "/models", 422, body)
    result = invoke("model", "create", "Bad Name", "--token", "t")
    assert result.exit_code == 1
    assert "The model is invalid." in result.stderr
    assert "name: must be lowercase letters, digits and dashes" in result.stderr


def test_a_refusal_with_json_prints_the_error_document(server: FakeServer) -> None:
    body = {"error": "conflict", "detail": "The model acme/chest-xray exists.", "problems": []}
    server.answer("POST", "/models", 409, body)
    result = invoke("model", "create", "chest-xray", "--json", "--token", "t")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {**body, "status": 409}


def test_model_list_and_show(server: FakeServer) -> None:
    server.answer("GET", "/models", 200, page(MODEL))
    server.answer("GET", f"/models/{MODEL_ID}", 200, MODEL)
    listed = invoke("model", "list", "--token", "t")
    assert listed.exit_code == 0
    assert MODEL_ID in listed.stdout and "chest-xray" in listed.stdout
    shown = invoke("model", "show", MODEL_ID, "--json", "--token", "t")
    assert json.loads(shown.stdout)["version_count"] == 2


def test_not_found_exits_1(server: FakeServer) -> None:
    result = invoke("version", "show", "nope", "--token", "t")
    assert result.exit_code == 1
    assert "No route /versions/nope." in result.stderr


def test_a_server_failure_exits_2(server: FakeServer) -> None:
    server.answer("GET", "/me", 500, {"error": "internal_error", "detail": "Boom."})
    result = invoke("whoami", "--token", "t")
    assert result.exit_code == 2
    assert "Boom." in result.stderr


def test_an_unreachable_server_exits_2_and_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = invoke("whoami", "--url", url, "--token", "t")
    assert result.exit_code == 2
    assert url in result.stderr and "ASSAY_URL" in result.stderr


@pytest.fixture
def submission(tmp_path: Path) -> tuple[Path, Path]:
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"onnx" * 1000)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"name": "chest-xray", "version_label": "1.1.0"}))
    return artifact, manifest


def test_submit_uploads_and_prints_the_intake_summary(
    server: FakeServer, submission: tuple[Path, Path]
) -> None:
    artifact, manifest = submission
    server.answer("POST", f"/models/{MODEL_ID}/versions", 201, VERSION)
    result = invoke(
        "submit", MODEL_ID, "--artifact", str(artifact), "--manifest", str(manifest),
        "--idempotency-key", "retry-1", "--token", "t",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    request = server.requests[0]
    assert request.headers["Idempotency-Key"] == "retry-1"
    assert b'name="manifest"' in request.content and b'name="artifact"' in request.content
    for value in ("version 2", "1.1.0", DIGEST, "submitted", "onnx", "1,234,567", "Conv x12"):
        assert value in result.stdout


def test_submit_json(server: FakeServer, submission: tuple[Path, Path]) -> None:
    artifact, manifest = submission
    server.answer("POST", f"/models/{MODEL_ID}/versions", 201, VERSION)
    result = invoke(
        "submit", MODEL_ID, "--artifact", str(artifact), "--manifest", str(manifest),
        "--json", "--token", "t",
    )  # fmt: skip
    assert result.exit_code == 0
    assert json.loads(result.stdout)["digest"] == DIGEST


def test_submit_refuses_a_manifest_that_is_not_json_before_uploading(
    server: FakeServer, submission: tuple[Path, Path]
) -> None:
    artifact, manifest = submission
    manifest.write_text("{not json")
    result = invoke("submit", MODEL_ID, "--artifact", str(artifact), "--manifest", str(manifest))
    assert result.exit_code == 1
    assert "not valid JSON" in result.stderr
    assert server.requests == []


def test_submit_with_a_missing_artifact_is_a_usage_error(
    server: FakeServer, submission: tuple[Path, Path], tmp_path: Path
) -> None:
    _, manifest = submission
    missing = tmp_path / "missing.onnx"
    result = invoke("submit", MODEL_ID, "--artifact", str(missing), "--manifest", str(manifest))
    assert result.exit_code == 2
    assert server.requests == []


def test_submit_refused_format_exits_1(server: FakeServer, submission: tuple[Path, Path]) -> None:
    artifact, manifest = submission
    body = {
        "error": "refused_format",
        "detail": "Pickle files are refused; submit ONNX or safetensors.",
        "problems": [{"path": "artifact", "message": "pickle"}],
    }
    server.answer("POST", f"/models/{MODEL_ID}/versions", 422, body)
    result = invoke("submit", MODEL_ID, "--artifact", str(artifact), "--manifest", str(manifest))
    assert result.exit_code == 1
    assert "submit ONNX or safetensors" in result.stderr and "artifact: pickle" in result.stderr


def test_versions_lists_a_models_versions(server: FakeServer) -> None:
    server.answer("GET", f"/models/{MODEL_ID}/versions", 200, page(VERSION))
    result = invoke("versions", MODEL_ID, "--token", "t")
    assert result.exit_code == 0
    for value in (VERSION_ID, "1.1.0", "submitted", "sha256:0123456789ab"):
        assert value in result.stdout


def test_version_show(server: FakeServer) -> None:
    server.answer("GET", f"/versions/{VERSION_ID}", 200, VERSION)
    result = invoke("version", "show", VERSION_ID, "--token", "t")
    assert result.exit_code == 0
    assert DIGEST in result.stdout and "2.5 MB" in result.stdout


def test_audit_list(server: FakeServer) -> None:
    server.answer("GET", "/audit", 200, page(AUDIT_EVENT))
    result = invoke("audit", "list", "--token", "t")
    assert result.exit_code == 0
    assert "vendor.create" in result.stdout and VENDOR_ID in result.stdout
    as_json = invoke("audit", "list", "--json", "--token", "t")
    assert json.loads(as_json.stdout)["data"][0]["hash"] == HEAD


def test_manifest_schema_prints_json(server: FakeServer) -> None:
    schema = {"title": "Manifest", "type": "object"}
    server.answer("GET", "/schemas/manifest", 200, schema)
    result = invoke("manifest-schema")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == schema


# --- hostile names from the server are printed escaped ------------------------------------------

# What a server may hold from before names were checked (or send, if it is older): terminal
# escapes that clear the screen and set the window title, BEL, NUL, a right-to-left override,
# and Rich markup that must be printed as it is, not interpreted.
HOSTILE = "evil\x1b[2J\x1b]0;pwned\x07\u202egpj.exe [bold red]ok[/bold red]\x00\x9b1m"
SHOWN = "evil\\x1b[2J\\x1b]0;pwned\\x07\\u202egpj.exe [bold red]ok[/bold red]\\x00\\x9b1m"
BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def assert_no_raw_control(text: str) -> None:
    """Nothing in `text` but printable characters, spaces and newlines."""
    import unicodedata

    raw = [
        f"U+{ord(c):04X}"
        for c in text
        if c != "\n" and (unicodedata.category(c) == "Cc" or c in BIDI)
    ]
    assert raw == [], raw


HOSTILE_VERSION = {**VERSION, "version_label": HOSTILE, "submitted_by": HOSTILE}
HOSTILE_MODEL = {**MODEL, "name": HOSTILE, "description": "line one\nline two " + HOSTILE}
HOSTILE_VENDOR = {**VENDOR, "name": HOSTILE, "display_name": HOSTILE}
HOSTILE_TOKEN = {**TOKEN, "name": HOSTILE}


@pytest.mark.parametrize(
    ("args", "method", "path", "body"),
    [
        (["versions", MODEL_ID], "GET", f"/models/{MODEL_ID}/versions", page(HOSTILE_VERSION)),
        (["version", "show", VERSION_ID], "GET", f"/versions/{VERSION_ID}", HOSTILE_VERSION),
        (["model", "list"], "GET", "/models", page(HOSTILE_MODEL)),
        (["model", "show", MODEL_ID], "GET", f"/models/{MODEL_ID}", HOSTILE_MODEL),
        (["vendor", "list"], "GET", "/vendors", page(HOSTILE_VENDOR)),
        (["vendor", "create", "acme"], "POST", "/vendors", HOSTILE_VENDOR),
        (["model", "create", "m"], "POST", "/models", HOSTILE_MODEL),
        (["token", "list"], "GET", "/tokens", page(HOSTILE_TOKEN)),
        (["token", "revoke", "t-2"], "DELETE", "/tokens/t-2", HOSTILE_TOKEN),
        (["whoami"], "GET", "/me", {**ME, "name": HOSTILE, "vendor_name": HOSTILE}),
    ],
)
def test_names_from_the_server_are_printed_with_visible_escapes(
    server: FakeServer, args: list[str], method: str, path: str, body: Any
) -> None:
    server.answer(method, path, 200, body)
    result = invoke(*args, "--token", "t")
    assert result.exit_code == 0, result.output
    assert_no_raw_control(result.stdout)
    assert_no_raw_control(result.stderr)
    assert SHOWN in result.stdout


def test_a_description_keeps_its_lines_visible_as_escapes(server: FakeServer) -> None:
    server.answer("GET", f"/models/{MODEL_ID}", 200, HOSTILE_MODEL)
    result = invoke("model", "show", MODEL_ID, "--token", "t")
    assert result.exit_code == 0, result.output
    assert "line one\\nline two" in result.stdout


def test_the_submit_summary_escapes_the_label(
    server: FakeServer, submission: tuple[Path, Path]
) -> None:
    artifact, manifest = submission
    server.answer("POST", f"/models/{MODEL_ID}/versions", 201, HOSTILE_VERSION)
    result = invoke(
        "submit", MODEL_ID, "--artifact", str(artifact), "--manifest", str(manifest), "--token", "t"
    )
    assert result.exit_code == 0, result.output
    assert_no_raw_control(result.stdout)
    assert f"({SHOWN})" in result.stdout


def test_an_error_from_the_server_is_printed_escaped(server: FakeServer) -> None:
    problems = [{"path": "name\x1b[1m", "message": "bad " + HOSTILE}]
    body = {"error": "invalid", "detail": "refused " + HOSTILE, "problems": problems}
    server.answer("POST", "/models", 422, body)
    result = invoke("model", "create", "x", "--token", "t")
    assert result.exit_code == 1
    assert_no_raw_control(result.stderr)
    assert "refused " + SHOWN in result.stderr
    assert "name\\x1b[1m: bad " + SHOWN in result.stderr


@pytest.mark.parametrize(
    ("args", "path", "body"),
    [
        (["versions", MODEL_ID], f"/models/{MODEL_ID}/versions", page(HOSTILE_VERSION)),
        (["model", "list"], "/models", page(HOSTILE_MODEL)),
    ],
)
def test_json_output_escapes_and_round_trips_the_names(
    server: FakeServer, args: list[str], path: str, body: Any
) -> None:
    server.answer("GET", path, 200, body)
    result = invoke(*args, "--json", "--token", "t")
    assert result.exit_code == 0, result.output
    assert_no_raw_control(result.stdout)
    assert all(ord(c) < 128 for c in result.stdout)
    assert (
        json.loads(result.stdout)["data"][0]["version_label" if args[0] == "versions" else "name"]
        == HOSTILE
    )


# --- local commands ------------------------------------------------------------------------------


@pytest.fixture
def server_modules(monkeypatch: pytest.MonkeyPatch) -> Callable[..., types.ModuleType]:
    """Installs a stand-in module under a server module's name, for the duration of a test."""

    def install(name: str, **attributes: Any) -> types.ModuleType:
        module = types.ModuleType(name)
        for key, value in attributes.items():
            setattr(module, key, value)
        monkeypatch.setitem(sys.modules, name, module)
        return module

    return install


@pytest.fixture
def server_errors() -> Iterator[types.ModuleType]:
    yield pytest.importorskip("registry.errors")


def test_admin_init_prints_the_token_and_the_export_line(
    server_modules: Callable[..., types.ModuleType],
) -> None:
    calls: list[str] = []

    def init_admin(*, name: str) -> str:
        calls.append(name)
        return "assay_admin_token"

    server_modules("registry.principals.admin", init_admin=init_admin)
    result = invoke("admin", "init", "--name", "root")
    assert result.exit_code == 0, result.output
    assert calls == ["root"]
    assert "export ASSAY_TOKEN=assay_admin_token" in result.stdout


def test_admin_init_json_is_exactly_the_token(
    server_modules: Callable[..., types.ModuleType],
) -> None:
    server_modules("registry.principals.admin", init_admin=lambda *, name: "assay_admin_token")
    result = invoke("admin", "init", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"token": "assay_admin_token"}


def test_admin_init_when_an_admin_exists_exits_1(
    server_modules: Callable[..., types.ModuleType], server_errors: types.ModuleType
) -> None:
    def init_admin(*, name: str) -> str:
        raise server_errors.Conflict("An admin already exists; issue more tokens with it.")

    server_modules("registry.principals.admin", init_admin=init_admin)
    result = invoke("admin", "init")
    assert result.exit_code == 1
    assert "An admin already exists" in result.stderr


@dataclass(frozen=True)
class FakeRecovery:
    token: str
    token_id: str
    principal_id: str
    principal_name: str
    active_admin_tokens_before: int


@pytest.mark.parametrize(
    ("before", "says"),
    [
        (0, "No active admin token existed"),
        (1, "1 other active admin token existed"),
        (3, "3 other active admin tokens existed"),
    ],
)
def test_admin_recover_prints_the_token_and_what_it_found(
    server_modules: Callable[..., types.ModuleType], before: int, says: str
) -> None:
    calls: list[str] = []

    def recover_admin(*, name: str) -> FakeRecovery:
        calls.append(name)
        return FakeRecovery("assay_recovered", "t-9", "p-9", name, before)

    server_modules("registry.principals.admin", recover_admin=recover_admin)
    result = invoke("admin", "recover", "--name", "ops")
    assert result.exit_code == 0, result.output
    assert calls == ["ops"]
    assert "export ASSAY_TOKEN=assay_recovered" in result.stdout
    assert says in result.stdout
    assert "admin.recovered" in result.stdout
    assert "will not be shown again" in result.stderr


def test_admin_recover_json_is_one_document(
    server_modules: Callable[..., types.ModuleType],
) -> None:
    recovery = FakeRecovery("assay_recovered", "t-9", "p-9", "admin", 0)
    server_modules("registry.principals.admin", recover_admin=lambda *, name: recovery)
    result = invoke("admin", "recover", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "token": "assay_recovered",
        "token_id": "t-9",
        "principal_id": "p-9",
        "principal_name": "admin",
        "active_admin_tokens_before": 0,
    }


def test_admin_recover_refused_exits_1(
    server_modules: Callable[..., types.ModuleType], server_errors: types.ModuleType
) -> None:
    def recover_admin(*, name: str) -> FakeRecovery:
        raise server_errors.Conflict("The principal 'ci' already exists with role ci.")

    server_modules("registry.principals.admin", recover_admin=recover_admin)
    result = invoke("admin", "recover", "--name", "ci")
    assert result.exit_code == 1
    assert "already exists with role ci" in result.stderr


def test_serve_passes_host_and_port(server_modules: Callable[..., types.ModuleType]) -> None:
    calls: list[tuple[str, int]] = []
    server_modules("registry.app", serve=lambda *, host, port: calls.append((host, port)))
    result = invoke("serve", "--host", "0.0.0.0", "--port", "9000")
    assert result.exit_code == 0, result.output
    assert calls == [("0.0.0.0", 9000)]


def test_serve_on_an_old_database_says_to_upgrade_and_exits_1(
    server_modules: Callable[..., types.ModuleType], server_errors: types.ModuleType
) -> None:
    def serve(*, host: str, port: int) -> None:
        raise server_errors.DatabaseBehind("The database is behind; run `assay db upgrade`.")

    server_modules("registry.app", serve=serve)
    result = invoke("serve")
    assert result.exit_code == 1
    assert "assay db upgrade" in result.stderr


def test_a_local_command_without_the_server_installed_exits_2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "registry.app", None)  # makes the import fail
    result = invoke("serve")
    assert result.exit_code == 2
    assert "assay[server]" in result.stderr


def test_db_upgrade_prints_the_revision(server_modules: Callable[..., types.ModuleType]) -> None:
    server_modules("registry.db", upgrade_database=lambda: "20250101_0001")
    result = invoke("db", "upgrade")
    assert result.exit_code == 0
    assert "20250101_0001" in result.stdout
    as_json = invoke("db", "upgrade", "--json")
    assert json.loads(as_json.stdout) == {"revision": "20250101_0001"}


class Verification(BaseModel):
    """The fields of registry.audit.AuditVerification that `assay audit verify` reads."""

    ok: bool
    length: int
    head: str | None
    first_broken_seq: int | None = None
    reason: str | None = None
    expected_head: str | None = None
    grown_since_expected: int | None = None
    checkpoints_verified: int | None = None
    broken_checkpoint: int | None = None
    events_after_last_checkpoint: int | None = None


def install_verification(
    server_modules: Callable[..., types.ModuleType], result: Verification
) -> list[str | None]:
    calls: list[str | None] = []

    def verify_installation(*, expect_head: str | None) -> Verification:
        calls.append(expect_head)
        return result

    server_modules("registry.audit", verify_installation=verify_installation)
    return calls


def test_audit_verify_intact_prints_head_and_length(
    server_modules: Callable[..., types.ModuleType],
) -> None:
    calls = install_verification(server_modules, Verification(ok=True, length=12, head=HEAD))
    result = invoke("audit", "verify")
    assert result.exit_code == 0, result.output
    assert calls == [None]
    assert HEAD in result.stdout and "12 events" in result.stdout


def test_audit_verify_passes_the_expected_head_and_says_how_far_the_chain_grew(
    server_modules: Callable[..., types.ModuleType],
) -> None:
    older = "sha256:" + "11" * 32
    intact = Verification(ok=True, length=12, head=HEAD, grown_since_expected=3)
    calls = install_verification(server_modules, intact)
    result = invoke("audit", "verify", "--expect-head", older)
    assert result.exit_code == 0, result.output
    assert calls == [older]
    assert "3 appended since" in result.stdout


def test_audit_verify_broken_names_the_first_broken_event(
    server_modules: Callable[..., types.ModuleType],
) -> None:
    broken = Verification(
        ok=False,
        length=4,
        head=HEAD,
        first_broken_seq=5,
        reason="event 5: its content does not match its hash",
    )
    install_verification(server_modules, broken)
    result = invoke("audit", "verify")
    assert result.exit_code == 1
    assert "broken at event 5: its content does not match its hash" in result.stderr
    as_json = invoke("audit", "verify", "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["first_broken_seq"] == 5


def test_audit_verify_missing_expected_head_exits_1(
    server_modules: Callable[..., types.ModuleType],
) -> None:
    reason = f"the expected head abc is not in the chain (head is {HEAD}, length 12)"
    install_verification(
        server_modules, Verification(ok=False, length=12, head=HEAD, reason=reason)
    )
    result = invoke("audit", "verify", "--expect-head", "abc")
    assert result.exit_code == 1
    assert reason in result.stderr


def test_example_model_prints_the_paths_and_the_next_command(
    server_modules: Callable[..., types.ModuleType], tmp_path: Path
) -> None:
    calls: list[tuple[Path, int]] = []

    def write_example_model(out: Path, *, variant: int) -> tuple[Path, Path]:
        calls.append((out, variant))
        return out / "model.onnx", out / "manifest.json"

    server_modules("validators.runtime.example", write_example_model=write_example_model)
    result = invoke("example-model", "--out", str(tmp_path), "--variant", "2")
    assert result.exit_code == 0, result.output
    assert calls == [(tmp_path, 2)]
    model, manifest = tmp_path / "model.onnx", tmp_path / "manifest.json"
    assert f"--artifact {model} --manifest {manifest}" in result.stdout
    as_json = invoke("example-model", "--out", str(tmp_path), "--json")
    assert json.loads(as_json.stdout) == {"artifact": str(model), "manifest": str(manifest)}


# --- refused documents ---------------------------------------------------------------------------


def test_any_kind_of_refused_document_prints_its_problems_and_its_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from validators.problems import InputInvalid, Problem

    class ProtocolInvalid(InputInvalid):
        document = "the acquisition protocol"
        code = "invalid_acquisition_protocol"

    refusal = ProtocolInvalid(
        [Problem(path="rows.2.kvp", message="expected a number"), Problem(path="", message="x")],
        source="protocol.yaml",
    )
    with pytest.raises(typer.Exit) as exited:
        registry.cli.common.fail_invalid(refusal, code=2, json_output=True)
    assert exited.value.exit_code == 2
    out, err = capsys.readouterr()
    assert json.loads(out) == {
        "status": None,
        "error": "invalid_acquisition_protocol",
        "detail": "protocol.yaml is not a valid acquisition protocol: 2 problem(s)",
        "problems": [
            {"path": "rows.2.kvp", "message": "expected a number"},
            {"path": "", "message": "x"},
        ],
    }
    assert "protocol.yaml is not a valid acquisition protocol: 2 problem(s)" in err
    assert "  rows.2.kvp: expected a number\n  x\n" in err


# --- start-up ------------------------------------------------------------------------------------


CLI_PACKAGE = Path(registry.cli.__file__).parent
CLI_MODULES = sorted(f"registry.cli.{path.stem}" for path in CLI_PACKAGE.glob("[!_]*.py"))


def test_importing_the_cli_pulls_in_no_server_code() -> None:
    code = (
        "import json, sys, registry.cli\n"
        "heavy = {'fastapi', 'sqlmodel', 'sqlalchemy', 'torch', 'uvicorn', 'numpy', 'validators',"
        " 'rich', 'httpx', 'pydantic'}\n"
        "print(json.dumps({\n"
        "    'heavy': [m for m in sys.modules if m.split('.')[0] in heavy"
        " or (m.startswith('registry.') and not m.startswith('registry.cli'))],\n"
        "    'cli': sorted(m for m in sys.modules if m.startswith('registry.cli.')),\n"
        "}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    loaded = json.loads(result.stdout)
    assert loaded["heavy"] == []
    # Every module of the package is loaded by `assay --help`, so the check above covers each.
    assert loaded["cli"] == CLI_MODULES


# Standard modules that cost next to nothing to import; anything else waits inside a function.
_LIGHT_STANDARD_MODULES = frozenset(
    {
        "__future__",
        "collections",
        "contextlib",
        "datetime",
        "enum",
        "json",
        "pathlib",
        "sys",
        "typing",
    }
)


def _module_level_imports(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Gives (line, module) for each import that runs when the module is imported.

    Function bodies run later and `if TYPE_CHECKING:` blocks never run, so both are skipped.
    """
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, node.module or ""
        else:
            pending.extend(ast.iter_child_nodes(node))


def test_the_import_reader_sees_what_runs_at_import_and_only_that() -> None:
    source = (
        "import typer\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import rich\n"
        "def command() -> None:\n    import httpx\n"
        "class Scale:\n    import numpy\n"
        "try:\n    import fastapi\nexcept ImportError:\n    pass\n"
    )
    found = sorted(module for _, module in _module_level_imports(ast.parse(source)))
    assert found == ["fastapi", "numpy", "typer", "typing"]


@pytest.mark.parametrize("path", sorted(CLI_PACKAGE.glob("*.py")), ids=lambda path: path.name)
def test_every_cli_module_imports_only_typer_at_module_level(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    heavy = [
        f"{path.name}:{line} imports {module}"
        for line, module in _module_level_imports(tree)
        if module.split(".")[0] not in {*_LIGHT_STANDARD_MODULES, "typer"}
        and module != "registry.cli"
        and not module.startswith("registry.cli.")
    ]
    assert heavy == [], "import these inside the functions that use them"


def test_assay_help_exits_0() -> None:
    assay = Path(sys.executable).parent / "assay"
    if not assay.exists():
        pytest.skip(f"the assay entry point is not installed next to {sys.executable}")
    result = subprocess.run([str(assay), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "submit" in result.stdout and "whoami" in result.stdout
