"""Imports every table module so SQLModel.metadata is complete (Alembic, tests)."""

from sqlmodel import SQLModel

from registry import audit, checkpoints
from registry.catalog import models as catalog_models
from registry.principals import models as principal_models
from registry.vendors import models as vendor_models

metadata = SQLModel.metadata

__all__ = [
    "audit",
    "catalog_models",
    "checkpoints",
    "metadata",
    "principal_models",
    "vendor_models",
]
