"""Submission intake under load and over time (issue 8, items 4 and 12).

Item 12: a token revoked (or expiring) while its upload is in flight must not land a version.
Item 4: concurrent intakes are bounded by ASSAY_MAX_CONCURRENT_INTAKES on their own limiter; the
excess waits in arrival order up to ASSAY_INTAKE_WAIT_S and is then refused with 503 and
Retry-After; health and reads keep answering while intakes run, even with a tiny default thread
pool.

Intakes are held at a known point by wrapping the service's inspection step with a gate the test
opens, so nothing here depends on timing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from registry.catalog import service
from tests.registry.conftest import VendorAccount, make_model
from tests.registry.test_submissions import (  # noqa: F401
    MODEL_NAME,
    Example,
    assert_error,
    assert_nothing_left,
    example,
    snapshot,
    submit,
)


@pytest.fixture
def model_id(client: TestClient, vendor: VendorAccount) -> str:
    return make_model(client, vendor, name=MODEL_NAME)


def _change_token(app: Any, account: VendorAccount, **changes: Any) -> None:
    from sqlmodel import select

    from registry.auth import hash_token
    from registry.db import new_session
    from registry.principals.models import ApiToken

    with new_session(app.state.engine) as session:
        token = session.exec(
            select(ApiToken).where(ApiToken.token_hash == hash_token(account.token))
        ).one()
        for name, value in changes.items():
            setattr(token, name, value)
        session.add(token)
        session.commit()


def during_inspection(monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]) -> None:
    """Runs `action` after the upload was received and before its version is recorded."""
    real_inspect = service._inspect

    def inspect_then_act(*args: Any, **kwargs: Any) -> Any:
        report = real_inspect(*args, **kwargs)
        action()
        return report

    monkeypatch.setattr(service, "_inspect", inspect_then_act)


# --- item 12: the token is checked again when the version is recorded ----------------------------


@pytest.mark.parametrize("change", ["revoked", "expired"])
def test_a_token_revoked_or_expired_mid_upload_lands_no_version(
    app: Any,
    client: TestClient,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    change: str,
) -> None:
    from registry.db import utcnow

    before = snapshot(app.state.settings)
    field = "revoked_at" if change == "revoked" else "expires_at"
    moment = utcnow() - timedelta(seconds=1)
    during_inspection(monkeypatch, lambda: _change_token(app, vendor, **{field: moment}))
    response = submit(client, model_id, vendor, example(0))
    assert_error(response, 401, error="unauthorized", detail_has=[change])
    assert response.headers["www-authenticate"] == "Bearer"
    assert_nothing_left(app.state.settings, before)


def test_a_token_still_valid_when_recording_lands_its_version(
    client: TestClient,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],  # noqa: F811
) -> None:
    response = submit(client, model_id, vendor, example(0))
    assert response.status_code == 201, response.text
