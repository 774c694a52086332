"""Tests of `assay vendor` (registry/cli/vendors.py)."""

from __future__ import annotations

import json

from tests.registry.cli.conftest import (
    VENDOR,
    VENDOR_ID,
    FakeServer,
    invoke,
    page,
)


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
