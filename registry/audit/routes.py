"""HTTP routes for reading and verifying the audit trail (admin and reviewer)."""

from typing import Annotated

from fastapi import APIRouter, Query

from registry import checkpoints
from registry.audit import service
from registry.audit.models import AuditEventPublic, AuditVerification
from registry.auth import AuditReader
from registry.checkpoints import CheckpointRecord
from registry.db import SessionDep
from registry.errors import error_responses
from registry.pagination import Page, PageDep

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", response_model=Page[AuditEventPublic], responses=error_responses(401, 403, 422))
def list_events(session: SessionDep, actor: AuditReader, page: PageDep) -> Page[AuditEventPublic]:
    rows, count = service.list_events(session, limit=page.limit, offset=page.offset)
    return Page(data=[AuditEventPublic.model_validate(e) for e in rows], count=count)


@router.get("/verify", response_model=AuditVerification, responses=error_responses(401, 403, 422))
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
) -> AuditVerification:
    return service.verify_chain(session, expect_head=expect_head)


@router.get(
    "/checkpoints",
    response_model=Page[CheckpointRecord],
    responses=error_responses(401, 403, 422),
)
def list_checkpoints(
    session: SessionDep, actor: AuditReader, page: PageDep
) -> Page[CheckpointRecord]:
    """Signed checkpoints of the chain, oldest first (verify them with `assay audit verify`)."""
    rows, count = checkpoints.list_checkpoints(session, limit=page.limit, offset=page.offset)
    return Page(data=[CheckpointRecord.model_validate(c) for c in rows], count=count)
