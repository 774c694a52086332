"""A version's lifecycle: each allowed move is made with its audit event, any other refused."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from registry.audit import AuditEvent, verify_chain
from registry.auth import SYSTEM, SystemActor
from registry.catalog.lifecycle import ALLOWED_TRANSITIONS, allowed_targets, transition
from registry.catalog.models import Model, ModelVersion, VersionStatus
from registry.db import get_engine, new_session, transaction
from registry.errors import Conflict
from registry.principals.models import Principal, Role
from registry.vendors.models import Vendor

ALLOWED = sorted((start, to) for start, targets in ALLOWED_TRANSITIONS.items() for to in targets)
REFUSED = sorted(
    (start, to)
    for start in VersionStatus
    for to in VersionStatus
    if to not in ALLOWED_TRANSITIONS[start]
)


def make_version(engine: Engine, *, status: VersionStatus) -> uuid.UUID:
    """Stores a vendor, a principal, a model and one version in `status`; gives the version's id."""
    with transaction(engine) as session:
        vendor = Vendor(name=f"v-{uuid.uuid4().hex[:8]}")
        session.add(vendor)
        session.flush()
        principal = Principal(
            name=f"p-{uuid.uuid4().hex[:8]}", role=Role.vendor.value, vendor_id=vendor.id
        )
        model = Model(name="lesion", vendor_id=vendor.id)
        session.add_all([principal, model])
        session.flush()
        version = ModelVersion(
            model_id=model.id,
            number=1,
            version_label="1.0",
            digest="sha256:" + uuid.uuid4().hex * 2,
            status=status.value,
            format="onnx",
            size_bytes=1,
            manifest={},
            intake_report={},
            submitted_by=principal.id,
        )
        session.add(version)
        session.flush()
        return version.id


def status_events(session: Session) -> list[AuditEvent]:
    """The `version.status_changed` events of the chain, oldest first."""
    return list(
        session.exec(
            select(AuditEvent)
            .where(AuditEvent.action == "version.status_changed")
            .order_by(col(AuditEvent.seq))
        ).all()
    )


def test_every_status_has_its_row_in_the_table() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(VersionStatus)
    assert allowed_targets(VersionStatus.retired) == frozenset()


@pytest.mark.parametrize(("start", "to"), ALLOWED, ids=lambda s: str(s))
def test_an_allowed_move_changes_the_status_and_appends_its_event(
    settings: Any, start: VersionStatus, to: VersionStatus
) -> None:
    engine = get_engine(settings)
    version_id = make_version(engine, status=start)
    with transaction(engine) as session:
        version = session.get_one(ModelVersion, version_id)
        before = version.updated_at
        moved = transition(session, version, to, actor=SYSTEM, reason="test")
        assert moved is version

    with new_session(engine, write=False) as session:
        stored = session.get_one(ModelVersion, version_id)
        assert stored.status == to.value
        assert stored.updated_at >= before
        (event,) = status_events(session)
        assert (event.actor_id, event.actor_name) == ("system", "system")
        assert event.object_type == "model_version"
        assert event.object_id == str(version_id)
        assert event.payload == {"from": start.value, "to": to.value, "reason": "test"}
        assert verify_chain(session).ok


@pytest.mark.parametrize(("start", "to"), REFUSED, ids=lambda s: str(s))
def test_a_refused_move_is_a_conflict_naming_both_statuses_and_the_allowed_targets(
    settings: Any, start: VersionStatus, to: VersionStatus
) -> None:
    engine = get_engine(settings)
    version_id = make_version(engine, status=start)
    with transaction(engine) as session:
        version = session.get_one(ModelVersion, version_id)
        with pytest.raises(Conflict) as refused:
            transition(session, version, to, actor=SYSTEM, reason="test")

    message = str(refused.value)
    assert refused.value.status == 409
    assert f"is {start.value}; it cannot become {to.value}" in message
    for target in ALLOWED_TRANSITIONS[start]:
        assert target.value in message
    if not ALLOWED_TRANSITIONS[start]:
        assert "none" in message
    with new_session(engine, write=False) as session:
        assert session.get_one(ModelVersion, version_id).status == start.value
        assert status_events(session) == []


def test_the_event_is_signed_by_the_given_actor(settings: Any) -> None:
    engine = get_engine(settings)
    version_id = make_version(engine, status=VersionStatus.submitted)
    operator = SystemActor(id="local:ann", name="local:ann")
    with transaction(engine) as session:
        version = session.get_one(ModelVersion, version_id)
        transition(
            session,
            version,
            VersionStatus.validating,
            actor=operator,
            reason="queued",
            payload={"job": "j1"},
        )

    with new_session(engine, write=False) as session:
        (event,) = status_events(session)
        assert (event.actor_id, event.actor_name) == ("local:ann", "local:ann")
        assert event.payload["job"] == "j1"


def test_the_move_and_its_event_roll_back_with_the_callers_transaction(settings: Any) -> None:
    engine = get_engine(settings)
    version_id = make_version(engine, status=VersionStatus.submitted)
    with pytest.raises(RuntimeError), transaction(engine) as session:
        version = session.get_one(ModelVersion, version_id)
        transition(session, version, VersionStatus.validating, actor=SYSTEM, reason="queued")
        raise RuntimeError("the worker failed after the move")

    with new_session(engine, write=False) as session:
        assert session.get_one(ModelVersion, version_id).status == VersionStatus.submitted.value
        assert status_events(session) == []
