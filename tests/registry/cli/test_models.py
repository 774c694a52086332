"""Tests of `assay model` (registry/cli/models.py)."""

from __future__ import annotations

import json

from tests.registry.cli.conftest import (
    MODEL,
    MODEL_ID,
    FakeServer,
    invoke,
    page,
)


def test_model_create_refused_with_problems_exits_1(server: FakeServer) -> None:
    problems = [{"path": "name", "message": "must be lowercase letters, digits and dashes"}]
    body = {"error": "invalid", "detail": "The model is invalid.", "problems": problems}
    server.answer("POST", "/models", 422, body)
    result = invoke("model", "create", "Bad Name", "--token", "t")
    assert result.exit_code == 1
    assert "The model is invalid." in result.stderr
    assert "name: must be lowercase letters, digits and dashes" in result.stderr


def test_model_list_and_show(server: FakeServer) -> None:
    server.answer("GET", "/models", 200, page(MODEL))
    server.answer("GET", f"/models/{MODEL_ID}", 200, MODEL)
    listed = invoke("model", "list", "--token", "t")
    assert listed.exit_code == 0
    assert MODEL_ID in listed.stdout and "chest-xray" in listed.stdout
    shown = invoke("model", "show", MODEL_ID, "--json", "--token", "t")
    assert json.loads(shown.stdout)["version_count"] == 2
