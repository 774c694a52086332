"""Shared by the tests of the `assay` command: canned server answers and stand-in server modules.

Remote commands run against canned answers that follow the server's HTTP contract (through
`httpx.MockTransport`); local commands run against stand-in server modules placed in
`sys.modules`, under the exact names the CLI imports, so these tests pin the CLI's side of both
contracts without needing the server.
"""

from __future__ import annotations

import json
import socket
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
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


@pytest.fixture
def submission(tmp_path: Path) -> tuple[Path, Path]:
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"onnx" * 1000)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"name": "chest-xray", "version_label": "1.1.0"}))
    return artifact, manifest


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
