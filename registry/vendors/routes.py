"""HTTP routes for vendors (admin only)."""

from fastapi import APIRouter

from registry.auth import AdminActor
from registry.db import SessionDep
from registry.errors import error_responses
from registry.pagination import Page, PageDep
from registry.vendors import service
from registry.vendors.models import VendorCreate, VendorPublic

router = APIRouter(prefix="/vendors", tags=["vendors"])


@router.post(
    "", status_code=201, response_model=VendorPublic, responses=error_responses(401, 403, 409, 422)
)
def create_vendor(data: VendorCreate, session: SessionDep, actor: AdminActor) -> VendorPublic:
    vendor = service.create_vendor(session, actor, data=data)
    return VendorPublic.model_validate(vendor)


@router.get("", response_model=Page[VendorPublic], responses=error_responses(401, 403, 422))
def list_vendors(session: SessionDep, actor: AdminActor, page: PageDep) -> Page[VendorPublic]:
    rows, count = service.list_vendors(session, limit=page.limit, offset=page.offset)
    return Page(data=[VendorPublic.model_validate(v) for v in rows], count=count)
