"""Vendors: the companies whose models the hospital validates."""

import uuid
from datetime import datetime

from pydantic import field_validator
from sqlmodel import Field, SQLModel

from registry.db import created_at_field, uuid_pk
from validators.text import Name

SLUG_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class VendorBase(SQLModel):
    name: str = Field(
        max_length=63,
        unique=True,
        description="Short unique slug: lowercase letters, digits, '.', '_' or '-'.",
    )
    display_name: str | None = Field(default=None, max_length=200)


class VendorCreate(VendorBase):
    # The refusal of control and bidi characters is on what the API takes (here), not on
    # VendorBase, so that a row stored before it existed can still be read back.
    name: Name = Field(
        max_length=63,
        description="Short unique slug: lowercase letters, digits, '.', '_' or '-'.",
    )
    display_name: Name | None = Field(default=None, max_length=200)

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        import re

        if not re.fullmatch(SLUG_PATTERN, value):
            raise ValueError(
                "must be 1-63 lowercase letters, digits, '.', '_' or '-', starting with a "
                "letter or digit"
            )
        return value


class Vendor(VendorBase, table=True):
    id: uuid.UUID = uuid_pk()
    created_at: datetime = created_at_field()


class VendorPublic(VendorBase):
    id: uuid.UUID
    created_at: datetime
