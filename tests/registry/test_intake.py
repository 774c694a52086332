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

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import anyio.to_thread
import pytest
from fastapi.testclient import TestClient

from registry.catalog import service
from tests.registry.conftest import VendorAccount, make_model, make_vendor
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


# --- item 4: bounded intakes on their own limiter ------------------------------------------------

HANG_GUARD_S = 60  # only so that a broken build fails instead of hanging; never a speed check


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting until {what}"
        time.sleep(0.01)


class HeldInspections:
    """Wraps the inspection step: each intake records its arrival there and waits to be let go."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered: list[str] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        real_inspect = service._inspect

        def held(submission: Any, manifest: Any, settings: Any) -> Any:
            with self._lock:
                self.entered.append(manifest.version_label)
            assert self.release.wait(3 * HANG_GUARD_S), "the test never released the inspections"
            return real_inspect(submission, manifest, settings)

        monkeypatch.setattr(service, "_inspect", held)

    def count(self) -> int:
        with self._lock:
            return len(self.entered)


@dataclass
class Intakes:
    """A live app with its own intake settings, a vendor, a model, and background submitters."""

    app: Any
    client: TestClient
    vendor: VendorAccount
    model_id: str
    examples: Callable[[int], Example]
    held: HeldInspections
    threads: list[threading.Thread] = field(default_factory=list)
    responses: dict[int, Any] = field(default_factory=dict)

    def start(self, variant: int) -> None:
        """Submits example `variant` from a thread of its own."""
        item = self.examples(variant)

        def post() -> None:
            self.responses[variant] = submit(self.client, self.model_id, self.vendor, item)

        thread = threading.Thread(target=post, daemon=True)
        thread.start()
        self.threads.append(thread)

    def gate_waiting(self) -> int:
        gate = getattr(self.app.state, "intake_gate", None)
        return 0 if gate is None else int(gate.waiting)

    def finish(self) -> None:
        self.held.release.set()
        for thread in self.threads:
            thread.join(HANG_GUARD_S)
            assert not thread.is_alive(), "a submission never answered"


@pytest.fixture
def intakes_for(
    settings: Any,
    admin_token: str,
    example: Callable[[int], Example],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., Intakes]]:
    from registry.app import create_app

    opened: list[Intakes] = []
    contexts: list[TestClient] = []

    def make(*, capacity: int, wait_s: float, default_threads: int | None = None) -> Intakes:
        app = create_app(
            settings.model_copy(
                update={"max_concurrent_intakes": capacity, "intake_wait_s": wait_s}
            )
        )
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        contexts.append(client)
        if default_threads is not None:

            def shrink() -> None:
                anyio.to_thread.current_default_thread_limiter().total_tokens = default_threads

            client.portal.call(shrink)  # type: ignore[union-attr]
        vendor = make_vendor(client, admin_token, name="acme")
        intakes = Intakes(
            app=app,
            client=client,
            vendor=vendor,
            model_id=make_model(client, vendor, name=MODEL_NAME),
            examples=example,
            held=HeldInspections(monkeypatch),
        )
        opened.append(intakes)
        return intakes

    yield make
    for intakes in opened:
        intakes.held.release.set()
        for thread in intakes.threads:
            thread.join(HANG_GUARD_S)
    for client in contexts:
        client.__exit__(None, None, None)


def test_health_and_reads_answer_while_intakes_fill_their_slots(
    intakes_for: Callable[..., Intakes],
) -> None:
    # One default worker thread: before, two held intakes took it and /health waited for them.
    intakes = intakes_for(capacity=2, wait_s=HANG_GUARD_S, default_threads=1)
    for variant in range(4):
        intakes.start(variant)
    wait_until(lambda: intakes.held.count() == 2, "two intakes are being inspected")
    wait_until(lambda: intakes.gate_waiting() == 2, "two more wait for a slot")
    answers: dict[str, int] = {}

    def probe() -> None:
        answers["health"] = intakes.client.get("/api/v1/health").status_code
        answers["model"] = intakes.client.get(
            f"/api/v1/models/{intakes.model_id}", headers=intakes.vendor.headers
        ).status_code

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    prober.join(HANG_GUARD_S)
    # Answered while every intake slot is still taken (the inspections are still held).
    assert answers == {"health": 200, "model": 200}
    assert intakes.held.count() == 2
    intakes.finish()
    assert sorted(r.status_code for r in intakes.responses.values()) == [201] * 4


def test_excess_intakes_wait_and_run_in_arrival_order(
    intakes_for: Callable[..., Intakes],
) -> None:
    intakes = intakes_for(capacity=1, wait_s=HANG_GUARD_S)
    intakes.start(0)
    wait_until(lambda: intakes.held.count() == 1, "the first intake is being inspected")
    intakes.start(1)
    wait_until(lambda: intakes.gate_waiting() == 1, "the second waits")
    intakes.start(2)
    wait_until(lambda: intakes.gate_waiting() == 2, "the third waits")
    assert intakes.held.count() == 1  # the cap holds: the others were not inspected yet
    intakes.finish()
    assert intakes.held.entered == ["demo-0", "demo-1", "demo-2"]
    numbers = {v: r.json()["number"] for v, r in intakes.responses.items()}
    assert numbers == {0: 1, 1: 2, 2: 3}


def test_an_intake_that_finds_no_slot_in_time_gets_503_busy_with_retry_after(
    intakes_for: Callable[..., Intakes],
) -> None:
    intakes = intakes_for(capacity=1, wait_s=0)
    intakes.start(0)
    wait_until(lambda: intakes.held.count() == 1, "the first intake is being inspected")
    settings = intakes.app.state.settings
    staged_before = set(settings.tmp_dir.iterdir())
    response = submit(intakes.client, intakes.model_id, intakes.vendor, intakes.examples(1))
    body = assert_error(response, 503, error="busy", detail_has=["ASSAY_MAX_CONCURRENT_INTAKES"])
    assert body["problems"] == []
    assert int(response.headers["retry-after"]) >= 1
    # The refused upload left nothing; the first one's staging file is still there.
    assert set(settings.tmp_dir.iterdir()) == staged_before
    intakes.finish()
    assert intakes.responses[0].status_code == 201
    assert list(settings.tmp_dir.iterdir()) == []
    listed = intakes.client.get(
        f"/api/v1/models/{intakes.model_id}/versions", headers=intakes.vendor.headers
    ).json()
    assert [v["version_label"] for v in listed["data"]] == ["demo-0"]


def test_the_submission_route_declares_503_with_retry_after(app: Any) -> None:
    operation = app.openapi()["paths"]["/api/v1/models/{model_id}/versions"]["post"]
    busy = operation["responses"]["503"]
    assert "Retry-After" in busy["headers"]
    assert busy["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")


@pytest.mark.parametrize(
    ("variable", "value"),
    [("ASSAY_MAX_CONCURRENT_INTAKES", "0"), ("ASSAY_INTAKE_WAIT_S", "-1")],
)
def test_intake_settings_refuse_impossible_values(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    from pydantic import ValidationError

    from registry.settings import Settings

    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=variable.removeprefix("ASSAY_").lower()):
        Settings()
