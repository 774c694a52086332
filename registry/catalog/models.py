"""Models (a vendor's product) and their versions (one immutable artifact each)."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from registry.db import UTCDateTime, created_at_field, json_column, utcnow, uuid_pk
from validators.text import Name, Text


class VersionStatus(StrEnum):
    submitted = "submitted"
    validating = "validating"
    validated = "validated"
    failed = "failed"
    error = "error"
    approved = "approved"
    rejected = "rejected"
    deployed = "deployed"
    suspended = "suspended"
    retired = "retired"


class ModelBase(SQLModel):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)


class ModelCreate(ModelBase):
    # Refused here, on what the API takes, not on ModelBase: a row stored before the refusal
    # existed must still be readable through ModelPublic.
    name: Name = Field(min_length=1, max_length=200)
    description: Text | None = Field(default=None, max_length=2000)
    vendor_id: uuid.UUID | None = Field(
        default=None, description="Required when an admin creates the model; vendors omit it."
    )


class Model(ModelBase, table=True):
    __table_args__ = (sa.UniqueConstraint("vendor_id", "name", name="uq_model_vendor_id_name"),)

    id: uuid.UUID = uuid_pk()
    vendor_id: uuid.UUID = Field(foreign_key="vendor.id", index=True)
    created_at: datetime = created_at_field()


class ModelPublic(ModelBase):
    id: uuid.UUID
    vendor_id: uuid.UUID
    created_at: datetime
    version_count: int


class ModelVersion(SQLModel, table=True):
    __tablename__ = "model_version"
    __table_args__ = (
        sa.UniqueConstraint("model_id", "number", name="uq_model_version_model_id_number"),
    )

    id: uuid.UUID = uuid_pk()
    model_id: uuid.UUID = Field(foreign_key="model.id", index=True)
    number: int = Field(ge=1)
    version_label: str = Field(max_length=100)
    digest: str = Field(max_length=71, unique=True)
    status: str = Field(default=VersionStatus.submitted, max_length=20, index=True)
    format: str = Field(max_length=20)
    size_bytes: int = Field(sa_type=sa.BigInteger)
    manifest: dict[str, Any] = Field(sa_column=json_column())
    intake_report: dict[str, Any] = Field(sa_column=json_column())
    submitted_by: uuid.UUID = Field(foreign_key="principal.id", index=True)
    created_at: datetime = created_at_field()
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class VersionPublic(SQLModel):
    id: uuid.UUID
    model_id: uuid.UUID
    number: int
    version_label: str
    digest: str
    status: VersionStatus
    format: str
    size_bytes: int
    manifest: dict[str, Any]
    intake_report: dict[str, Any]
    submitted_by: uuid.UUID
    created_at: datetime
    updated_at: datetime


class IdempotencyRecord(SQLModel, table=True):
    """The first response to a submission with an Idempotency-Key, replayed for repeats."""

    __tablename__ = "idempotency_record"
    __table_args__ = (
        sa.UniqueConstraint("principal_id", "key", name="uq_idempotency_record_principal_id_key"),
    )

    id: uuid.UUID = uuid_pk()
    principal_id: uuid.UUID = Field(foreign_key="principal.id")
    key: str = Field(max_length=200)
    request_hash: str = Field(max_length=64)
    status_code: int
    response: dict[str, Any] = Field(sa_column=json_column())
    created_at: datetime = created_at_field()
