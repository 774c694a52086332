"""HTTP routes for reading and verifying the audit trail (admin and reviewer)."""

from typing import Annotated

from fastapi import APIRouter, Query

from registry import audit
from registry.auth import AuditReader
from registry.db import SessionDep
from registry.errors import error_responses
from registry.pagination import Page, PageDep

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get(
    "", response_model=Page[audit.AuditEventPublic], responses=error_responses(401, 403, 422)
)
def list_events(
    session: SessionDep, actor: AuditReader, page: PageDep
) -> Page[audit.AuditEventPublic]:
    rows, count = audit.list_events(session, limit=page.limit, offset=page.offset)
    return Page(data=[audit.AuditEventPublic.model_validate(e) for e in rows], count=count)


@router.get(
    "/verify", response_model=audit.AuditVerification, responses=error_responses(401, 403, 422)
)
def verify(
    session: SessionDep,
    actor: AuditReader,
    expect_head: Annotated[
        str | None,
        Query(
            pattern="^[0-9a-f]{64}$",
            description="A head hash recorded earlier outside the database; it must still be "
            "in the chain.",
        ),
    ] = None,
) -> audit.AuditVerification:
    return audit.verify_chain(session, expect_head=expect_head)
