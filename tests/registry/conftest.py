"""Fixtures for the service: the app, an HTTP client, and principals with tokens."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def app(settings: Any) -> Any:
    from registry.app import create_app

    return create_app(settings)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def installation_env(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Points ASSAY_HOME / ASSAY_DATABASE_URL at the test installation, for local commands."""
    from registry.settings import get_settings

    monkeypatch.setenv("ASSAY_HOME", str(settings.home))
    if settings.database_url:
        monkeypatch.setenv("ASSAY_DATABASE_URL", settings.database_url)
    else:
        monkeypatch.delenv("ASSAY_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def admin_token(settings: Any) -> str:
    from registry.principals.admin import init_admin

    return init_admin(name="admin", settings=settings)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class VendorAccount:
    vendor_id: str
    token: str
    name: str

    @property
    def headers(self) -> dict[str, str]:
        return auth(self.token)


def make_vendor(client: TestClient, admin_token: str, *, name: str) -> VendorAccount:
    response = client.post("/api/v1/vendors", json={"name": name}, headers=auth(admin_token))
    assert response.status_code == 201, response.text
    vendor_id = response.json()["id"]
    response = client.post(
        "/api/v1/tokens",
        json={"role": "vendor", "name": f"{name}-engineer", "vendor_id": vendor_id},
        headers=auth(admin_token),
    )
    assert response.status_code == 201, response.text
    return VendorAccount(vendor_id=vendor_id, token=response.json()["token"], name=name)


def make_token(client: TestClient, admin_token: str, *, role: str, name: str) -> str:
    response = client.post(
        "/api/v1/tokens", json={"role": role, "name": name}, headers=auth(admin_token)
    )
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


@pytest.fixture
def vendor(client: TestClient, admin_token: str) -> VendorAccount:
    return make_vendor(client, admin_token, name="acme")


@pytest.fixture
def other_vendor(client: TestClient, admin_token: str) -> VendorAccount:
    return make_vendor(client, admin_token, name="globex")


def make_model(client: TestClient, account: VendorAccount, *, name: str = "lesion-detector") -> str:
    response = client.post("/api/v1/models", json={"name": name}, headers=account.headers)
    assert response.status_code == 201, response.text
    model_id: str = response.json()["id"]
    return model_id
