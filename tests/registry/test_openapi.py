"""The OpenAPI document is true: it declares the error responses each route can give."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from registry.app import PUBLIC_PATHS


def operations(client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    document = client.get("/openapi.json").json()
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def test_every_protected_operation_declares_401_with_the_error_body(client: TestClient) -> None:
    protected = [op for op in operations(client) if op[0] not in PUBLIC_PATHS]
    assert len(protected) >= 12
    for path, method, operation in protected:
        declared = operation["responses"]
        assert "401" in declared, f"{method.upper()} {path} does not declare 401"
        schema = declared["401"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)


def test_operations_with_ids_declare_404_and_422(client: TestClient) -> None:
    for path, method, operation in operations(client):
        if "{" in path:
            assert {"404", "422"} <= set(operation["responses"]), f"{method.upper()} {path}"


def test_submission_declares_its_refusals_and_multipart_body(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    operation = document["paths"]["/api/v1/models/{model_id}/versions"]["post"]
    assert {"401", "403", "404", "409", "413", "422"} <= set(operation["responses"])
    body = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["manifest", "artifact"]
