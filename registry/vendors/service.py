"""Creating and listing vendors."""

from __future__ import annotations

from sqlmodel import Session, col, func, select

from registry import audit
from registry.auth import Actor
from registry.errors import Conflict
from registry.vendors.models import Vendor, VendorCreate


def create_vendor(session: Session, actor: Actor, *, data: VendorCreate) -> Vendor:
    """Creates a vendor; a name already taken is refused with 409."""
    if session.exec(select(Vendor).where(Vendor.name == data.name)).first() is not None:
        raise Conflict(f"A vendor named {data.name!r} already exists: choose another name.")
    vendor = Vendor.model_validate(data)
    session.add(vendor)
    session.flush()
    audit.append(
        session,
        actor=actor.audit,
        action="vendor.created",
        object_type="vendor",
        object_id=vendor.id,
        payload={"name": vendor.name, "display_name": vendor.display_name},
    )
    return vendor


def list_vendors(session: Session, *, limit: int, offset: int) -> tuple[list[Vendor], int]:
    count = session.exec(select(func.count()).select_from(Vendor)).one()
    rows = session.exec(select(Vendor).order_by(col(Vendor.name)).offset(offset).limit(limit))
    return list(rows.all()), count
