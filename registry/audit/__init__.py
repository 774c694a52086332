"""The audit domain: hash-chained, append-only events and their verification.

`models` holds the table and schemas, `service` the logic, `routes` the handlers (imported by the
app, not here, since they depend on `registry.checkpoints`, which depends on this package). The
names below are the ones the rest of the registry reads as `audit.<name>`.
"""

from registry.audit.models import AuditEvent, AuditEventPublic, AuditVerification
from registry.audit.service import (
    GENESIS_HASH,
    append,
    event_hash,
    format_time,
    head_event,
    list_events,
    lock_chain,
    verify_chain,
    verify_events,
    verify_installation,
)

__all__ = [
    "GENESIS_HASH",
    "AuditEvent",
    "AuditEventPublic",
    "AuditVerification",
    "append",
    "event_hash",
    "format_time",
    "head_event",
    "list_events",
    "lock_chain",
    "verify_chain",
    "verify_events",
    "verify_installation",
]
