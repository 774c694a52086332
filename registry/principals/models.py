"""Principals (named users or services with one role) and their API tokens."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from registry.db import UTCDateTime, created_at_field, uuid_pk
from validators.text import Name


class Role(StrEnum):
    admin = "admin"
    reviewer = "reviewer"
    vendor = "vendor"
    ci = "ci"
    monitor = "monitor"


class Principal(SQLModel, table=True):
    id: uuid.UUID = uuid_pk()
    name: str = Field(max_length=200, unique=True)
    role: str = Field(max_length=20)
    vendor_id: uuid.UUID | None = Field(default=None, foreign_key="vendor.id", index=True)
    created_at: datetime = created_at_field()


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"

    id: uuid.UUID = uuid_pk()
    principal_id: uuid.UUID = Field(foreign_key="principal.id", index=True)
    # SHA-256 of the token: tokens carry 256 random bits, so a fast hash is enough to make a
    # stolen database useless for authentication.
    token_hash: str = Field(max_length=64, unique=True)
    prefix: str = Field(max_length=16)
    created_at: datetime = created_at_field()
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class TokenCreate(SQLModel):
    role: Role
    name: Name = Field(min_length=1, max_length=200, description="The principal's name.")
    vendor_id: uuid.UUID | None = Field(
        default=None, description="Required for the vendor role, refused for the others."
    )
    expires_at: datetime | None = Field(
        default=None, description="Optional expiry, an ISO-8601 time with its zone."
    )


class TokenCreated(SQLModel):
    id: uuid.UUID
    token: str = Field(description="Shown once; only its hash is stored.")
    principal_id: uuid.UUID
    name: str
    role: Role
    vendor_id: uuid.UUID | None
    expires_at: datetime | None


class TokenPublic(SQLModel):
    id: uuid.UUID
    principal_id: uuid.UUID
    name: str
    role: Role
    vendor_id: uuid.UUID | None
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class Me(SQLModel):
    id: uuid.UUID
    name: str
    role: Role
    vendor_id: uuid.UUID | None
    vendor_name: str | None
    token_id: uuid.UUID | None
