"""The lifecycle of a model version: the allowed moves and the one function that makes them."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from registry import audit, checkpoints
from registry.auth import Signer
from registry.catalog.models import ModelVersion, VersionStatus
from registry.db import utcnow
from registry.errors import Conflict

STATUS_CHANGED_ACTION = "version.status_changed"

# The lifecycle of DESIGN.md; anything else is refused with 409.
ALLOWED_TRANSITIONS: dict[VersionStatus, frozenset[VersionStatus]] = {
    VersionStatus.submitted: frozenset({VersionStatus.validating}),
    VersionStatus.validating: frozenset(
        {VersionStatus.validated, VersionStatus.failed, VersionStatus.error}
    ),
    VersionStatus.error: frozenset({VersionStatus.validating}),
    VersionStatus.validated: frozenset({VersionStatus.approved, VersionStatus.rejected}),
    VersionStatus.approved: frozenset({VersionStatus.deployed, VersionStatus.retired}),
    VersionStatus.deployed: frozenset({VersionStatus.suspended, VersionStatus.retired}),
    VersionStatus.suspended: frozenset({VersionStatus.deployed, VersionStatus.retired}),
    VersionStatus.failed: frozenset({VersionStatus.retired}),
    VersionStatus.rejected: frozenset({VersionStatus.retired}),
    VersionStatus.retired: frozenset(),
}


def allowed_targets(current: VersionStatus) -> frozenset[VersionStatus]:
    """The statuses a version in `current` may move to next (none once retired)."""
    return ALLOWED_TRANSITIONS[current]


def check_transition(version: ModelVersion, to: VersionStatus) -> VersionStatus:
    """The version's current status, once the move to `to` is known to be allowed.

    Raises Conflict (409) naming both statuses and the allowed targets otherwise.
    """
    current = VersionStatus(version.status)
    targets = allowed_targets(current)
    if to not in targets:
        allowed = ", ".join(sorted(s.value for s in targets)) or "none: it is final"
        raise Conflict(
            f"Version {version.id} is {current.value}; it cannot become {to.value} "
            f"(allowed next: {allowed})."
        )
    return current


def transition(
    session: Session,
    version: ModelVersion,
    to: VersionStatus,
    *,
    actor: Signer,
    reason: str,
    payload: dict[str, Any] | None = None,
) -> ModelVersion:
    """The version, moved to `to` with its audit event, in the caller's transaction.

    Every change of a version's status goes through here: the move is checked against
    ALLOWED_TRANSITIONS (a refused move is a Conflict and changes nothing), the row is updated
    and flushed, and `version.status_changed` is appended to the audit chain. The caller commits
    (the request's session, or `registry.db.transaction()` in background work).
    """
    current = check_transition(version, to)
    version.status = to.value
    version.updated_at = utcnow()
    session.add(version)
    session.flush()
    audit.append(
        session,
        actor=actor.audit,
        action=STATUS_CHANGED_ACTION,
        object_type="model_version",
        object_id=version.id,
        payload={"from": current.value, "to": to.value, "reason": reason, **(payload or {})},
    )
    checkpoints.at_state_change(session)
    return version
