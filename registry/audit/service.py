"""The audit chain's logic: appending hash-chained events, and walking the chain to verify it."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import rfc8785
import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from registry.audit.models import AuditEvent, AuditVerification
from registry.db import is_writer

GENESIS_HASH = "0" * 64
# Any constant will do: every append takes this transaction-scoped lock on PostgreSQL, so two
# appends can never read the same head (SQLite gets the same from BEGIN IMMEDIATE).
_PG_AUDIT_LOCK_KEY = 0x4153534159  # "ASSAY"


def format_time(moment: datetime) -> str:
    """UTC time as ISO-8601 with microseconds and a `Z`, the form that is hashed."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_hash(fields: dict[str, Any]) -> str:
    """SHA-256 of the event's RFC 8785 canonical JSON (which includes the previous hash)."""
    return hashlib.sha256(rfc8785.dumps(fields)).hexdigest()


def _hashed_fields(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "at": event.at,
        "actor_id": event.actor_id,
        "actor_name": event.actor_name,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "payload": event.payload,
        "prev_hash": event.prev_hash,
    }


def lock_chain(session: Session) -> None:
    """Serializes writers of the chain (and of its checkpoints) until the transaction ends."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_AUDIT_LOCK_KEY})


def head_event(session: Session) -> AuditEvent | None:
    """The newest event, or None for an empty chain."""
    return session.exec(select(AuditEvent).order_by(col(AuditEvent.seq).desc()).limit(1)).first()


def append(
    session: Session,
    *,
    actor: tuple[str, str],
    action: str,
    object_type: str,
    object_id: uuid.UUID | str,
    payload: dict[str, Any] | None = None,
) -> AuditEvent:
    """Appends one event to the chain inside the caller's transaction and gives it back.

    `actor` is `(id, name)`. The payload must be JSON-native (strings, numbers, lists, dicts).
    """
    # Reading the head then writing after it is only safe with the write lock held from the start
    # (SQLite's BEGIN IMMEDIATE); a read-only session would fail, or race, at the insert.
    if not is_writer(session):
        raise AssertionError(
            "audit.append needs a write session: new_session(engine), not write=False"
        )
    lock_chain(session)
    head = head_event(session)
    event = AuditEvent(
        seq=1 if head is None else head.seq + 1,
        at=format_time(datetime.now(UTC)),
        actor_id=actor[0],
        actor_name=actor[1],
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        payload=payload or {},
        prev_hash=GENESIS_HASH if head is None else head.hash,
        hash="",
    )
    # Round-trip through canonical JSON so what is stored is exactly what was hashed.
    fields = _hashed_fields(event)
    event.hash = event_hash(fields)
    session.add(event)
    session.flush()
    return event


def verify_events(
    events: Iterable[AuditEvent], *, expect_head: str | None = None
) -> AuditVerification:
    """Walks the events in order; names the first whose sequence, link or hash is wrong."""
    expected_prev = GENESIS_HASH
    length = 0
    seen_expected_at: int | None = None
    for event in events:
        length += 1
        broken = None
        if event.seq != length:
            broken = (
                f"sequence number {event.seq} where {length} was expected (an event is missing)"
            )
        elif event.prev_hash != expected_prev:
            broken = "its previous-hash does not match the hash of the event before it"
        elif event_hash(_hashed_fields(event)) != event.hash:
            broken = "its content does not match its hash (the event was modified)"
        if broken:
            return AuditVerification(
                ok=False,
                length=length - 1,
                head=expected_prev if length > 1 else None,
                first_broken_seq=event.seq,
                reason=f"event {event.seq}: {broken}",
                expected_head=expect_head,
            )
        if expect_head is not None and event.hash == expect_head:
            seen_expected_at = event.seq
        expected_prev = event.hash
    head = expected_prev if length else None
    if expect_head is not None and seen_expected_at is None:
        return AuditVerification(
            ok=False,
            length=length,
            head=head,
            reason=(
                f"the expected head {expect_head} is not in the chain (head is {head}, "
                f"length {length}): the newest events may have been deleted"
            ),
            expected_head=expect_head,
        )
    return AuditVerification(
        ok=True,
        length=length,
        head=head,
        expected_head=expect_head,
        grown_since_expected=None if seen_expected_at is None else length - seen_expected_at,
    )


def verify_chain(session: Session, *, expect_head: str | None = None) -> AuditVerification:
    """Verifies the whole chain stored in the database, streaming it in order."""
    rows = session.exec(
        select(AuditEvent).order_by(col(AuditEvent.seq)).execution_options(yield_per=1000)
    )
    return verify_events(rows, expect_head=expect_head)


def verify_installation(*, expect_head: str | None = None) -> AuditVerification:
    """Verifies the chain of the installation configured by ASSAY_HOME / ASSAY_DATABASE_URL."""
    from registry.db import get_engine, new_session

    with new_session(get_engine(), write=False) as session:
        return verify_chain(session, expect_head=expect_head)


def list_events(session: Session, *, limit: int, offset: int) -> tuple[list[AuditEvent], int]:
    count = session.exec(select(func.count()).select_from(AuditEvent)).one()
    rows = session.exec(
        select(AuditEvent).order_by(col(AuditEvent.seq)).offset(offset).limit(limit)
    ).all()
    return list(rows), count
