"""The typed dependencies for the app's resources: a test can replace them for every route."""

from __future__ import annotations

import os
from typing import Any

from fastapi.testclient import TestClient

from registry.deps import app_settings
from registry.settings import Settings
from tests.registry.conftest import VendorAccount, make_model

OVERRIDDEN_LIMIT = 1000


def test_overriding_the_settings_dependency_reaches_the_submission_route(
    app: Any, client: TestClient, settings: Settings, vendor: VendorAccount
) -> None:
    assert settings.max_artifact_bytes > 2 * OVERRIDDEN_LIMIT
    model_id = make_model(client, vendor)
    overridden = settings.model_copy(update={"max_artifact_bytes": OVERRIDDEN_LIMIT})

    async def small_limit() -> Settings:
        return overridden

    app.dependency_overrides[app_settings] = small_limit
    artifact = os.urandom(2 * OVERRIDDEN_LIMIT)
    response = client.post(
        f"/api/v1/models/{model_id}/versions",
        files={
            "manifest": (None, b"{}", "application/json"),
            "artifact": ("model.onnx", artifact, "application/octet-stream"),
        },
        headers=vendor.headers,
    )
    assert response.status_code == 413, response.text
    assert str(OVERRIDDEN_LIMIT) in response.json()["detail"]
