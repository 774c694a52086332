"""The audit chain's table and API schemas: one hash-chained event, and a verification's outcome."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlmodel import Field, SQLModel

from registry.db import json_column


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    # Stored as the ISO-8601 string that was hashed, so the hash never depends on how a
    # database stores time.
    at: str = Field(max_length=32)
    actor_id: str = Field(max_length=64)
    actor_name: str = Field(max_length=200)
    action: str = Field(max_length=64, index=True)
    object_type: str = Field(max_length=64)
    object_id: str = Field(max_length=64, index=True)
    payload: dict[str, Any] = Field(sa_column=json_column())
    prev_hash: str = Field(max_length=64, unique=True)
    hash: str = Field(max_length=64, unique=True)


class AuditEventPublic(SQLModel):
    seq: int
    at: str
    actor_id: str
    actor_name: str
    action: str
    object_type: str
    object_id: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str


class AuditVerification(BaseModel):
    """The outcome of walking the chain: ok, or the first broken event and why."""

    ok: bool
    length: int
    head: str | None
    first_broken_seq: int | None = None
    reason: str | None = None
    expected_head: str | None = None
    grown_since_expected: int | None = None
    # Set when verified against signed checkpoints (registry.checkpoints).
    checkpoints_verified: int | None = None
    broken_checkpoint: int | None = None
    events_after_last_checkpoint: int | None = None
