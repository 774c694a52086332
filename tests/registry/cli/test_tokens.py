"""Tests of `assay whoami` and `assay token` (registry/cli/tokens.py)."""

from __future__ import annotations

import json

import pytest

from tests.registry.cli.conftest import (
    ME,
    TOKEN,
    VENDOR_ID,
    FakeServer,
    invoke,
    page,
)


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
