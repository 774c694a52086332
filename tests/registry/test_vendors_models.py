"""Vendors and models over HTTP: creation rules, namespaces, pagination, object-level isolation."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.registry.conftest import VendorAccount, auth, make_model

API = "/api/v1"


# --- helpers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExampleModel:
    artifact: bytes
    manifest: dict[str, Any]


@pytest.fixture(scope="module")
def example_model(tmp_path_factory: pytest.TempPathFactory) -> ExampleModel:
    """The example ONNX model, exported once for the module (export takes a second or two)."""
    return _export_example(tmp_path_factory, variant=0)


@pytest.fixture(scope="module")
def second_example(tmp_path_factory: pytest.TempPathFactory) -> ExampleModel:
    """Another variant of the example: same manifest, different artifact digest."""
    return _export_example(tmp_path_factory, variant=1)


def _export_example(factory: pytest.TempPathFactory, *, variant: int) -> ExampleModel:
    from validators.runtime.example import write_example_model

    model_path, manifest_path = write_example_model(
        factory.mktemp(f"example-{variant}"), variant=variant
    )
    return ExampleModel(model_path.read_bytes(), json.loads(manifest_path.read_text()))


def submit_version(
    client: TestClient,
    account: VendorAccount,
    model_id: str,
    model_name: str,
    example: ExampleModel,
) -> dict[str, Any]:
    """Submits the example as the next version of the model; the manifest is renamed to match."""
    manifest = {**example.manifest, "name": model_name}
    response = client.post(
        f"{API}/models/{model_id}/versions",
        files={
            "manifest": ("manifest.json", json.dumps(manifest).encode(), "application/json"),
            "artifact": ("model.onnx", example.artifact, "application/octet-stream"),
        },
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    version: dict[str, Any] = response.json()
    return version


def create_vendor(client: TestClient, admin_token: str, name: str, **extra: Any) -> Any:
    return client.post(f"{API}/vendors", json={"name": name, **extra}, headers=auth(admin_token))


def assert_error(response: Any, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == error and body["detail"]
    return body


TINY_SUBMISSION = {
    "manifest": ("manifest.json", b"{}", "application/json"),
    "artifact": ("model.onnx", b"\x08\x07", "application/octet-stream"),
}


# --- vendors -------------------------------------------------------------------------------------


def test_admin_creates_a_vendor(client: TestClient, admin_token: str) -> None:
    response = create_vendor(client, admin_token, "acme", display_name="ACME Imaging")
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["name"], body["display_name"]) == ("acme", "ACME Imaging")
    uuid.UUID(body["id"])


def test_admin_lists_vendors(client: TestClient, admin_token: str) -> None:
    for name in ("globex", "acme"):
        assert create_vendor(client, admin_token, name).status_code == 201
    response = client.get(f"{API}/vendors", headers=auth(admin_token))
    assert response.status_code == 200, response.text
    assert [v["name"] for v in response.json()["data"]] == ["acme", "globex"]
    assert response.json()["count"] == 2


def test_duplicate_vendor_name_is_a_conflict(client: TestClient, admin_token: str) -> None:
    assert create_vendor(client, admin_token, "acme").status_code == 201
    assert_error(create_vendor(client, admin_token, "acme"), 409, "conflict")


@pytest.mark.parametrize("name", ["ACME", "-acme", "acme corp", "", "a" * 64, "acme/x"])
def test_invalid_vendor_slug_is_refused(client: TestClient, admin_token: str, name: str) -> None:
    body = assert_error(create_vendor(client, admin_token, name), 422, "invalid")
    assert [p["path"] for p in body["problems"]] == ["name"]


# --- models --------------------------------------------------------------------------------------


def test_vendor_model_lands_in_its_own_namespace(client: TestClient, vendor: VendorAccount) -> None:
    response = client.post(f"{API}/models", json={"name": "lesion"}, headers=vendor.headers)
    assert response.status_code == 201, response.text
    assert response.json()["vendor_id"] == vendor.vendor_id
    assert response.json()["version_count"] == 0


def test_vendor_may_name_its_own_vendor_id(client: TestClient, vendor: VendorAccount) -> None:
    response = client.post(
        f"{API}/models",
        json={"name": "lesion", "vendor_id": vendor.vendor_id},
        headers=vendor.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["vendor_id"] == vendor.vendor_id


def test_vendor_cannot_create_in_another_vendors_namespace(
    client: TestClient, admin_token: str, vendor: VendorAccount, other_vendor: VendorAccount
) -> None:
    response = client.post(
        f"{API}/models",
        json={"name": "lesion", "vendor_id": other_vendor.vendor_id},
        headers=vendor.headers,
    )
    assert_error(response, 404, "not_found")
    listed = client.get(f"{API}/models", headers=auth(admin_token)).json()
    assert listed["count"] == 0


def test_admin_must_name_the_vendor(client: TestClient, admin_token: str) -> None:
    response = client.post(f"{API}/models", json={"name": "lesion"}, headers=auth(admin_token))
    body = assert_error(response, 422, "invalid")
    assert [p["path"] for p in body["problems"]] == ["vendor_id"]


def test_admin_creates_a_model_for_a_vendor(
    client: TestClient, admin_token: str, vendor: VendorAccount
) -> None:
    response = client.post(
        f"{API}/models",
        json={"name": "lesion", "vendor_id": vendor.vendor_id},
        headers=auth(admin_token),
    )
    assert response.status_code == 201, response.text
    assert response.json()["vendor_id"] == vendor.vendor_id


def test_admin_model_for_an_unknown_vendor_is_not_found(
    client: TestClient, admin_token: str
) -> None:
    response = client.post(
        f"{API}/models",
        json={"name": "lesion", "vendor_id": str(uuid.uuid4())},
        headers=auth(admin_token),
    )
    assert_error(response, 404, "not_found")


def test_duplicate_model_name_within_a_vendor_is_a_conflict(
    client: TestClient, vendor: VendorAccount
) -> None:
    make_model(client, vendor, name="lesion")
    response = client.post(f"{API}/models", json={"name": "lesion"}, headers=vendor.headers)
    assert_error(response, 409, "conflict")


def test_same_model_name_is_allowed_across_vendors(
    client: TestClient, vendor: VendorAccount, other_vendor: VendorAccount
) -> None:
    first = make_model(client, vendor, name="lesion")
    second = make_model(client, other_vendor, name="lesion")
    assert first != second


# --- object-level isolation ----------------------------------------------------------------------


@pytest.fixture
def other_model(client: TestClient, other_vendor: VendorAccount) -> str:
    return make_model(client, other_vendor, name="rival")


@pytest.fixture
def other_version(
    client: TestClient, other_vendor: VendorAccount, other_model: str, example_model: ExampleModel
) -> dict[str, Any]:
    return submit_version(client, other_vendor, other_model, "rival", example_model)


def test_vendor_gets_404_for_another_vendors_model(
    client: TestClient, vendor: VendorAccount, other_model: str
) -> None:
    response = client.get(f"{API}/models/{other_model}", headers=vendor.headers)
    body = assert_error(response, 404, "not_found")
    unknown_id = str(uuid.uuid4())
    unknown = client.get(f"{API}/models/{unknown_id}", headers=vendor.headers).json()
    # Indistinguishable from a model that does not exist, apart from the id it echoes.
    assert body["detail"].replace(other_model, "ID") == unknown["detail"].replace(unknown_id, "ID")


def test_vendor_gets_404_listing_another_vendors_versions(
    client: TestClient, vendor: VendorAccount, other_model: str, other_version: dict[str, Any]
) -> None:
    response = client.get(f"{API}/models/{other_model}/versions", headers=vendor.headers)
    assert_error(response, 404, "not_found")
    assert other_version["digest"] not in response.text


def test_vendor_gets_404_submitting_to_another_vendors_model(
    client: TestClient, admin_token: str, vendor: VendorAccount, other_model: str
) -> None:
    response = client.post(
        f"{API}/models/{other_model}/versions", files=TINY_SUBMISSION, headers=vendor.headers
    )
    assert_error(response, 404, "not_found")
    versions = client.get(f"{API}/models/{other_model}/versions", headers=auth(admin_token))
    assert versions.json()["count"] == 0


def test_vendor_gets_404_for_another_vendors_version(
    client: TestClient, vendor: VendorAccount, other_version: dict[str, Any]
) -> None:
    response = client.get(f"{API}/versions/{other_version['id']}", headers=vendor.headers)
    assert_error(response, 404, "not_found")
    assert other_version["digest"] not in response.text


def test_owner_sees_its_own_version(
    client: TestClient, other_vendor: VendorAccount, other_version: dict[str, Any]
) -> None:
    """The counterpart of the isolation tests: the 404s above are not 404s for everyone."""
    response = client.get(f"{API}/versions/{other_version['id']}", headers=other_vendor.headers)
    assert response.status_code == 200, response.text
    assert response.json()["digest"] == other_version["digest"]
    assert response.json()["status"] == "submitted"


def test_vendor_model_list_leaves_out_other_vendors(
    client: TestClient, vendor: VendorAccount, other_vendor: VendorAccount
) -> None:
    own = make_model(client, vendor, name="lesion")
    make_model(client, other_vendor, name="rival")
    listed = client.get(f"{API}/models", headers=vendor.headers).json()
    assert [m["id"] for m in listed["data"]] == [own]
    assert listed["count"] == 1


def test_admin_model_list_includes_every_vendor(
    client: TestClient, admin_token: str, vendor: VendorAccount, other_vendor: VendorAccount
) -> None:
    make_model(client, vendor, name="lesion")
    make_model(client, other_vendor, name="rival")
    listed = client.get(f"{API}/models", headers=auth(admin_token)).json()
    assert sorted(m["name"] for m in listed["data"]) == ["lesion", "rival"]


# --- pagination ----------------------------------------------------------------------------------


def test_vendor_list_pages_with_limit_and_offset(client: TestClient, admin_token: str) -> None:
    for name in ("a-corp", "b-corp", "c-corp"):
        assert create_vendor(client, admin_token, name).status_code == 201
    first = client.get(f"{API}/vendors", params={"limit": 2}, headers=auth(admin_token)).json()
    rest = client.get(
        f"{API}/vendors", params={"limit": 2, "offset": 2}, headers=auth(admin_token)
    ).json()
    assert [v["name"] for v in first["data"]] == ["a-corp", "b-corp"]
    assert [v["name"] for v in rest["data"]] == ["c-corp"]
    assert first["count"] == rest["count"] == 3


def test_model_list_pages_with_limit_and_offset(
    client: TestClient, vendor: VendorAccount, other_vendor: VendorAccount
) -> None:
    created = [make_model(client, vendor, name=f"model-{i}") for i in range(3)]
    make_model(client, other_vendor, name="rival")
    pages = [
        client.get(
            f"{API}/models", params={"limit": 2, "offset": offset}, headers=vendor.headers
        ).json()
        for offset in (0, 2, 4)
    ]
    assert [len(p["data"]) for p in pages] == [2, 1, 0]
    assert sorted(m["id"] for p in pages for m in p["data"]) == sorted(created)
    assert {p["count"] for p in pages} == {3}


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1000}, {"offset": -1}])
def test_out_of_range_paging_is_invalid(
    client: TestClient, admin_token: str, params: dict[str, int]
) -> None:
    for path in ("/vendors", "/models", "/tokens", "/audit"):
        response = client.get(f"{API}{path}", params=params, headers=auth(admin_token))
        body = assert_error(response, 422, "invalid")
        assert [p["path"] for p in body["problems"]] == list(params), path


def test_version_list_pages_and_counts(
    client: TestClient,
    vendor: VendorAccount,
    example_model: ExampleModel,
    second_example: ExampleModel,
) -> None:
    model_id = make_model(client, vendor, name="lesion")
    submit_version(client, vendor, model_id, "lesion", example_model)
    submit_version(client, vendor, model_id, "lesion", second_example)
    page = client.get(
        f"{API}/models/{model_id}/versions",
        params={"limit": 1, "offset": 1},
        headers=vendor.headers,
    ).json()
    assert [v["number"] for v in page["data"]] == [2]
    assert page["count"] == 2
    shown = client.get(f"{API}/models/{model_id}", headers=vendor.headers).json()
    assert shown["version_count"] == 2


# --- names and labels: no control or bidi characters ----------------------------------------------


def _count(app: Any, table: Any) -> int:
    from sqlmodel import func, select

    from registry.db import new_session

    with new_session(app.state.engine) as session:
        return int(session.exec(select(func.count()).select_from(table)).one())


@pytest.mark.parametrize("display_name", ["ACME\x1b[2J", "ACME\x07", "ACME\u202eevil", "A\nB"])
def test_vendor_display_name_with_a_control_or_bidi_character_is_refused(
    app: Any, client: TestClient, admin_token: str, display_name: str
) -> None:
    from registry.vendors.models import Vendor

    body = assert_error(
        create_vendor(client, admin_token, "acme", display_name=display_name), 422, "invalid"
    )
    assert [p["path"] for p in body["problems"]] == ["display_name"]
    assert "U+" in body["problems"][0]["message"]
    assert _count(app, Vendor) == 0


@pytest.mark.parametrize("name", ["lesion\x1b]0;pwned\x07", "lesion\u2066v2", "lesion\x00", "a\rb"])
def test_model_name_with_a_control_or_bidi_character_is_refused(
    app: Any, client: TestClient, vendor: VendorAccount, name: str
) -> None:
    from registry.catalog.models import Model

    response = client.post(f"{API}/models", json={"name": name}, headers=vendor.headers)
    body = assert_error(response, 422, "invalid")
    assert [p["path"] for p in body["problems"]] == ["name"]
    assert "position" in body["problems"][0]["message"]
    assert _count(app, Model) == 0


def test_model_description_allows_newlines_but_not_escapes(
    client: TestClient, vendor: VendorAccount
) -> None:
    fine = {"name": "lesion", "description": "Finds lesions.\n\tAdults only."}
    response = client.post(f"{API}/models", json=fine, headers=vendor.headers)
    assert response.status_code == 201, response.text
    assert response.json()["description"] == fine["description"]
    hostile = {"name": "other", "description": "Finds lesions.\x1b[8m hidden"}
    body = assert_error(
        client.post(f"{API}/models", json=hostile, headers=vendor.headers), 422, "invalid"
    )
    assert [p["path"] for p in body["problems"]] == ["description"]
    assert "U+001B ESCAPE" in body["problems"][0]["message"]


def test_a_name_stored_before_the_refusal_is_still_listed(
    app: Any, client: TestClient, admin_token: str, vendor: VendorAccount
) -> None:
    """Reads never fail on old data: the refusal is on what the API takes, not what it shows."""
    from registry.catalog.models import Model
    from registry.db import new_session

    with new_session(app.state.engine) as session:
        session.add(Model(name="old\x1b[31m\u202e", vendor_id=uuid.UUID(vendor.vendor_id)))
        session.commit()
    response = client.get(f"{API}/models", headers=auth(admin_token))
    assert response.status_code == 200, response.text
    assert [m["name"] for m in response.json()["data"]] == ["old\x1b[31m\u202e"]


def test_the_openapi_document_states_the_rule_on_create_bodies(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert "pattern" in schemas["VendorCreate"]["properties"]["name"]
    assert "pattern" in schemas["ModelCreate"]["properties"]["name"]
    assert "pattern" in schemas["TokenCreate"]["properties"]["name"]
