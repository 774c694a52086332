"""The typed client agrees with the server's OpenAPI document, route by route.

registry.client imports nothing of the server, so its response models are a second copy of the
server's schemas; these tests catch the copy drifting. For every client method that calls a route
the client's response type must accept every answer the route's schema allows: the same field
names, the same JSON types, formats and enum values, recursively. The client may be laxer than the
server (a field the server always sends may have a default, or allow None, in the client), never
stricter, so an answer the server may give is never refused by its own client.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from pydantic import BaseModel, TypeAdapter

from registry.client import (
    AssayClient,
    AuditEvent,
    AuditVerification,
    Health,
    Me,
    Model,
    NotFound,
    Page,
    Token,
    TokenCreated,
    Vendor,
    Version,
)

ID = "2f1c7a52-3f0e-4a57-9a5e-0c7c1f6f9d10"


@dataclass(frozen=True)
class Route:
    """A client method, the route it calls, and the type it reads the route's answer into."""

    method: str
    path: str
    status: int
    response: Any
    call: Callable[[AssayClient, Path], object]


def _submit(client: AssayClient, workdir: Path) -> object:
    artifact = workdir / "model.onnx"
    artifact.write_bytes(b"onnx")
    return client.submit_version(ID, artifact, {"name": "m"})


# The one table: client method -> (method, path, status) in the OpenAPI document, and its type.
CLIENT_ROUTES: dict[str, Route] = {
    "health": Route("GET", "/api/v1/health", 200, Health, lambda c, _: c.health()),
    "me": Route("GET", "/api/v1/me", 200, Me, lambda c, _: c.me()),
    "create_vendor": Route(
        "POST", "/api/v1/vendors", 201, Vendor, lambda c, _: c.create_vendor("acme")
    ),
    "list_vendors": Route(
        "GET", "/api/v1/vendors", 200, Page[Vendor], lambda c, _: c.list_vendors()
    ),
    "create_token": Route(
        "POST", "/api/v1/tokens", 201, TokenCreated, lambda c, _: c.create_token("ci", "ci")
    ),
    "list_tokens": Route("GET", "/api/v1/tokens", 200, Page[Token], lambda c, _: c.list_tokens()),
    "revoke_token": Route(
        "DELETE", "/api/v1/tokens/{token_id}", 200, Token, lambda c, _: c.revoke_token(ID)
    ),
    "create_model": Route(
        "POST", "/api/v1/models", 201, Model, lambda c, _: c.create_model("chest-xray")
    ),
    "list_models": Route("GET", "/api/v1/models", 200, Page[Model], lambda c, _: c.list_models()),
    "get_model": Route(
        "GET", "/api/v1/models/{model_id}", 200, Model, lambda c, _: c.get_model(ID)
    ),
    "submit_version": Route("POST", "/api/v1/models/{model_id}/versions", 201, Version, _submit),
    "list_versions": Route(
        "GET",
        "/api/v1/models/{model_id}/versions",
        200,
        Page[Version],
        lambda c, _: c.list_versions(ID),
    ),
    "get_version": Route(
        "GET", "/api/v1/versions/{version_id}", 200, Version, lambda c, _: c.get_version(ID)
    ),
    "audit_events": Route(
        "GET", "/api/v1/audit", 200, Page[AuditEvent], lambda c, _: c.audit_events()
    ),
    "audit_verify": Route(
        "GET", "/api/v1/audit/verify", 200, AuditVerification, lambda c, _: c.audit_verify()
    ),
    "manifest_schema": Route(
        "GET", "/api/v1/schemas/manifest", 200, dict[str, Any], lambda c, _: c.manifest_schema()
    ),
}

# Public methods of AssayClient that call no route.
NOT_ROUTES = frozenset({"close", "from_httpx"})

# Operations of the API that the client does not call. A new route lands here first and fails
# the test below until someone decides: a client method, or an entry here with its reason.
NOT_IN_CLIENT = frozenset(
    {
        # Signed checkpoints are read by `assay audit verify` from the local database, not over
        # HTTP; the route serves auditors' own tools.
        ("GET", "/api/v1/audit/checkpoints"),
    }
)


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from registry.app import create_app
    from registry.settings import Settings

    home = tmp_path_factory.mktemp("home")
    app = create_app(Settings(home=home, environment="test"), check_schema=False)
    return app.openapi()


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for path, item in document["paths"].items():
        for method in item:
            yield method.upper(), path


# --- the comparison ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schemas:
    """One JSON Schema document and the prefix its `$ref`s resolve under."""

    root: dict[str, Any]
    prefix: str

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            ref = node["$ref"]
            assert ref.startswith(self.prefix), ref
            extra = {k: v for k, v in node.items() if k != "$ref"}
            node = {**self.root[ref.removeprefix(self.prefix)], **extra}
        return node


def _split_null(node: dict[str, Any]) -> tuple[bool, list[dict[str, Any]]]:
    """Gives back whether a schema allows null, and its non-null alternatives."""
    if "anyOf" in node:
        branches = node["anyOf"]
        others = [b for b in branches if b.get("type") != "null"]
        return len(others) < len(branches), others
    if node.get("type") == "null":
        return True, []
    return False, [node]


def _enum(node: dict[str, Any]) -> list[Any] | None:
    """Gives back a schema's allowed values, sorted, or None when it allows any of its type."""
    if "const" in node:
        return [node["const"]]
    return sorted(node["enum"]) if "enum" in node else None


def _mismatches(
    client_node: dict[str, Any],
    server_node: dict[str, Any],
    client: Schemas,
    server: Schemas,
    where: str,
) -> list[str]:
    """Gives back every way the client's schema refuses or misreads what the server's allows."""
    client_node, server_node = client.resolve(client_node), server.resolve(server_node)
    client_nullable, client_alternatives = _split_null(client_node)
    server_nullable, server_alternatives = _split_null(server_node)
    problems: list[str] = []
    if server_nullable and not client_nullable:
        problems.append(f"{where}: the server may send null, the client refuses it")
    if len(client_alternatives) != 1 or len(server_alternatives) != 1:
        if client_alternatives != server_alternatives:
            problems.append(
                f"{where}: unions differ: {client_alternatives} / {server_alternatives}"
            )
        return problems
    ours, theirs = client.resolve(client_alternatives[0]), server.resolve(server_alternatives[0])
    if not ours:  # Any: accepts whatever the server sends.
        return problems
    if ours.get("type") != theirs.get("type"):
        return [*problems, f"{where}: type {ours.get('type')} in the client, {theirs.get('type')}"]
    our_values, their_values = _enum(ours), _enum(theirs)
    if our_values != their_values:
        problems.append(f"{where}: enum {our_values} in the client, {their_values} on the server")
    if "format" in ours and ours["format"] != theirs.get("format"):
        problems.append(f"{where}: format {ours['format']} in the client, {theirs.get('format')}")
    if ours.get("type") == "array":
        problems += _mismatches(ours["items"], theirs["items"], client, server, f"{where}[]")
    if ours.get("type") == "object":
        problems += _object_mismatches(ours, theirs, client, server, where)
    return problems


def _object_mismatches(
    ours: dict[str, Any],
    theirs: dict[str, Any],
    client: Schemas,
    server: Schemas,
    where: str,
) -> list[str]:
    our_fields, their_fields = ours.get("properties", {}), theirs.get("properties", {})
    problems: list[str] = []
    if set(our_fields) != set(their_fields):
        problems.append(
            f"{where}: fields only in the client {sorted(set(our_fields) - set(their_fields))}, "
            f"only on the server {sorted(set(their_fields) - set(our_fields))}"
        )
    for name in sorted(set(ours.get("required", [])) - set(theirs.get("required", []))):
        problems.append(f"{where}.{name}: required by the client, optional on the server")
    for name in sorted(set(our_fields) & set(their_fields)):
        problems += _mismatches(
            our_fields[name], their_fields[name], client, server, f"{where}.{name}"
        )
    if not our_fields and not their_fields:
        our_values, their_values = (
            ours.get("additionalProperties"),
            theirs.get("additionalProperties"),
        )
        if isinstance(our_values, dict) and isinstance(their_values, dict):
            problems += _mismatches(our_values, their_values, client, server, f"{where}{{}}")
        elif our_values != their_values:
            problems.append(f"{where}: values {our_values} in the client, {their_values}")
    return problems


def client_schema(response: Any) -> Schemas:
    schema = TypeAdapter(response).json_schema(mode="validation")
    return Schemas({**schema.pop("$defs", {}), "__root__": schema}, "#/$defs/")


def contract_mismatches(
    response: Any, server_schema: dict[str, Any], document: dict[str, Any]
) -> list[str]:
    """Gives back how the client's `response` type disagrees with a schema of the document."""
    client = client_schema(response)
    server = Schemas(document["components"]["schemas"], "#/components/schemas/")
    return _mismatches(client.root["__root__"], server_schema, client, server, "$")


def route_schema(document: dict[str, Any], route: Route) -> dict[str, Any]:
    responses = document["paths"][route.path][route.method.lower()]["responses"]
    schema: dict[str, Any] = responses[str(route.status)]["content"]["application/json"]["schema"]
    return schema


# --- the tests -----------------------------------------------------------------------------------


def test_the_table_names_every_public_client_method() -> None:
    public = {
        name
        for name, member in inspect.getmembers(AssayClient)
        if not name.startswith("_") and (inspect.isfunction(member) or inspect.ismethod(member))
    }
    assert public - NOT_ROUTES == set(CLIENT_ROUTES)
    assert public >= NOT_ROUTES


@pytest.mark.parametrize("name", sorted(CLIENT_ROUTES))
def test_the_client_method_calls_the_route_in_the_table(name: str, tmp_path: Path) -> None:
    route = CLIENT_ROUTES[name]
    sent: list[tuple[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append((request.method, request.url.path))
        return httpx.Response(404, json={"error": "not_found", "detail": "stopped here"})

    transport = httpx.MockTransport(answer)
    with (
        AssayClient("http://assay.test", "t", transport=transport) as client,
        pytest.raises(NotFound),
    ):
        route.call(client, tmp_path)
    pattern = re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(route.path))
    assert len(sent) == 1
    assert sent[0][0] == route.method
    assert re.fullmatch(pattern, sent[0][1]), (sent[0], route.path)


@pytest.mark.parametrize("name", sorted(CLIENT_ROUTES))
def test_the_route_exists_and_answers_the_tables_status(
    name: str, document: dict[str, Any]
) -> None:
    route = CLIENT_ROUTES[name]
    assert (route.method, route.path) in set(_operations(document)), f"{name}: no such route"
    operation = document["paths"][route.path][route.method.lower()]
    successes = [code for code in operation["responses"] if code.startswith("2")]
    assert successes == [str(route.status)], (name, successes)


@pytest.mark.parametrize("name", sorted(CLIENT_ROUTES))
def test_the_client_reads_the_routes_answer_as_the_server_declares_it(
    name: str, document: dict[str, Any]
) -> None:
    route = CLIENT_ROUTES[name]
    assert contract_mismatches(route.response, route_schema(document, route), document) == []


def test_the_routes_the_client_does_not_call_are_the_expected_ones(
    document: dict[str, Any],
) -> None:
    called = {(route.method, route.path) for route in CLIENT_ROUTES.values()}
    assert set(_operations(document)) - called == NOT_IN_CLIENT


def test_a_drifted_client_model_is_reported(document: dict[str, Any]) -> None:
    # Guards the comparison itself: each kind of drift the tests above must catch, on a real route.
    class DriftedVendor(BaseModel):
        id: int  # the server sends a string
        name: Literal["acme"]  # the server declares no enum
        display_name: str  # the server may omit it or send null
        created_at: datetime
        description: str | None = None  # no such field on the server

    route = CLIENT_ROUTES["create_vendor"]
    problems = contract_mismatches(DriftedVendor, route_schema(document, route), document)
    assert problems == [
        "$: fields only in the client ['description'], only on the server []",
        "$.display_name: required by the client, optional on the server",
        "$.display_name: the server may send null, the client refuses it",
        "$.id: type integer in the client, string",
        "$.name: enum ['acme'] in the client, None on the server",
    ]
