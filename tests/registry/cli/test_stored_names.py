"""`assay` against the real app, over names stored before the API refused control characters.

The rows are written straight to the database, as an older Assay would have stored them; the
CLI's requests go to the app in-process, so this is the full path from a stored name to the
reader's terminal, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import select
from typer.testing import CliRunner, Result

import registry.cli.common
from registry.client import AssayClient
from tests.registry.conftest import VendorAccount

# No NUL: PostgreSQL cannot store one in text, so no installation holds one there.
HOSTILE = "2.0\x1b[2J\x1b]0;pwned\x07\u202e1.1 [bold red]ok[/bold red]\x9b1m"
SHOWN = "2.0\\x1b[2J\\x1b]0;pwned\\x07\\u202e1.1 [bold red]ok[/bold red]\\x9b1m"
BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def raw_controls(text: str) -> list[str]:
    return [
        f"U+{ord(c):04X}"
        for c in text
        if c != "\n" and (unicodedata.category(c) == "Cc" or c in BIDI)
    ]


@pytest.fixture
def cli_on_app(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Points the CLI's HTTP client at the in-process app."""

    def forward(request: httpx.Request) -> httpx.Response:
        answer = client.request(
            request.method, str(request.url), headers=request.headers, content=request.read()
        )
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    def make_client(url: str, token: str | None) -> AssayClient:
        return AssayClient("http://testserver", token, transport=httpx.MockTransport(forward))

    monkeypatch.setattr(registry.cli.common, "make_client", make_client)
    yield


@pytest.fixture
def stored(app: Any, vendor: VendorAccount) -> str:
    """A model and a version whose name and label hold escapes, as an older Assay stored them."""
    from registry.catalog.models import Model, ModelVersion
    from registry.db import new_session
    from registry.principals.models import Principal

    with new_session(app.state.engine) as session:
        submitter = session.exec(select(Principal).where(Principal.name == "acme-engineer")).one()
        model = Model(name="lesion " + HOSTILE, vendor_id=uuid.UUID(vendor.vendor_id))
        session.add(model)
        session.flush()
        session.add(
            ModelVersion(
                model_id=model.id,
                number=1,
                version_label=HOSTILE,
                digest="sha256:" + "ab" * 32,
                format="onnx",
                size_bytes=1,
                manifest={},
                intake_report={},
                submitted_by=submitter.id,
            )
        )
        session.commit()
        return str(model.id)


def invoke(*args: str, token: str) -> Result:
    return CliRunner().invoke(registry.cli.app, [*args, "--token", token], env={"COLUMNS": "250"})


@pytest.mark.usefixtures("cli_on_app")
@pytest.mark.parametrize("command", [["versions"], ["model", "list"], ["model", "show"]])
def test_stored_escapes_reach_the_terminal_escaped(
    stored: str, vendor: VendorAccount, command: list[str]
) -> None:
    args = [*command, stored] if command != ["model", "list"] else command
    result = invoke(*args, token=vendor.token)
    assert result.exit_code == 0, result.output
    assert raw_controls(result.stdout) == []
    assert SHOWN in result.stdout


@pytest.mark.usefixtures("cli_on_app")
@pytest.mark.parametrize("command", [["versions"], ["model", "list"]])
def test_stored_escapes_in_json_output_are_escaped_by_json(
    stored: str, vendor: VendorAccount, command: list[str]
) -> None:
    args = [*command, stored] if command == ["versions"] else command
    result = invoke(*args, "--json", token=vendor.token)
    assert result.exit_code == 0, result.output
    assert raw_controls(result.stdout) == []
    item = json.loads(result.stdout)["data"][0]
    assert "\x1b[2J" in (item.get("version_label") or item["name"])
