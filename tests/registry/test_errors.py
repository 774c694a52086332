"""Refused documents over HTTP: every kind of `InputInvalid` is one 422, and nothing is written.

The validators refuse a document (model manifest, policy, dataset manifest...) with a subclass of
`validators.problems.InputInvalid`; the app renders all of them through one handler. A kind made
up here, unknown to the registry, proves that a new kind needs no edit in `registry/`.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from registry.auth import AdminActor
from registry.db import SessionDep
from registry.errors import MAX_PROBLEMS, input_invalid_body
from registry.vendors import service as vendors
from registry.vendors.models import VendorCreate
from tests.registry.conftest import auth
from validators.manifest import ManifestInvalid
from validators.policy import PolicyInvalid
from validators.problems import InputInvalid, Problem

API = "/api/v1"


class ProtocolInvalid(InputInvalid):
    """A kind of refused document that the registry has never heard of."""

    document = "the acquisition protocol"
    code = "invalid_acquisition_protocol"
    whole = "(protocol)"


def _refusal(count: int) -> ProtocolInvalid:
    return ProtocolInvalid(
        [Problem(path=f"rows.{row}.kvp", message="expected a number") for row in range(count)]
    )


@pytest.fixture
def refusing_app(app: FastAPI) -> FastAPI:
    """The app with two routes that refuse a protocol, the second after writing a vendor."""

    def refuse(actor: AdminActor, problems: int = 2) -> dict[str, Any]:
        raise _refusal(problems)

    def refuse_after_writing(session: SessionDep, actor: AdminActor) -> dict[str, Any]:
        vendors.create_vendor(session, actor, data=VendorCreate(name="half-written"))
        session.flush()  # the row and its audit event are in the transaction, not committed
        raise _refusal(1)

    app.add_api_route(f"{API}/test/refuse", refuse, methods=["POST"])
    app.add_api_route(f"{API}/test/refuse-after-writing", refuse_after_writing, methods=["POST"])
    return app


@pytest.fixture
def refusing_client(refusing_app: FastAPI) -> Any:
    with TestClient(refusing_app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_a_new_kind_of_refused_document_is_a_422_with_its_code_and_problems(
    refusing_client: TestClient, admin_token: str
) -> None:
    response = refusing_client.post(f"{API}/test/refuse", headers=auth(admin_token))
    assert response.status_code == 422, response.text
    assert response.json() == {
        "error": "invalid_acquisition_protocol",
        "detail": "The acquisition protocol has 2 problem(s); see `problems`.",
        "problems": [
            {"path": "rows.0.kvp", "message": "expected a number"},
            {"path": "rows.1.kvp", "message": "expected a number"},
        ],
    }


def test_a_refused_document_lists_at_most_the_cap_of_problems_and_says_how_many(
    refusing_client: TestClient, admin_token: str
) -> None:
    response = refusing_client.post(
        f"{API}/test/refuse", params={"problems": MAX_PROBLEMS + 50}, headers=auth(admin_token)
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert len(body["problems"]) == MAX_PROBLEMS
    assert f"There are {MAX_PROBLEMS + 50} problems" in body["detail"]


def test_a_refusal_inside_a_request_rolls_back_what_it_wrote(
    refusing_client: TestClient, admin_token: str
) -> None:
    headers = auth(admin_token)
    events_before = refusing_client.get(f"{API}/audit", headers=headers).json()["count"]

    response = refusing_client.post(f"{API}/test/refuse-after-writing", headers=headers)

    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_acquisition_protocol"
    names = [
        v["name"] for v in refusing_client.get(f"{API}/vendors", headers=headers).json()["data"]
    ]
    assert "half-written" not in names
    assert refusing_client.get(f"{API}/audit", headers=headers).json()["count"] == events_before


@pytest.mark.parametrize(
    ("refusal", "code", "detail"),
    [
        (ManifestInvalid, "invalid_manifest", "The model manifest has 1 problem(s)"),
        (PolicyInvalid, "invalid_policy", "The policy has 1 problem(s)"),
    ],
)
def test_the_manifest_and_the_policy_are_rendered_by_the_same_body(
    refusal: type[InputInvalid], code: str, detail: str
) -> None:
    body = input_invalid_body(refusal([Problem(path="", message="not a mapping")]))
    assert body.error == code
    assert body.detail.startswith(detail)
    assert [(p.path, p.message) for p in body.problems] == [("", "not a mapping")]
