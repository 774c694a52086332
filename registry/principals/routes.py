"""HTTP routes for tokens (admin) and for the caller's own identity."""

import uuid

from fastapi import APIRouter

from registry.auth import AdminActor, CurrentActor
from registry.db import SessionDep
from registry.errors import error_responses
from registry.pagination import Page, PageDep
from registry.principals import service
from registry.principals.models import Me, TokenCreate, TokenCreated, TokenPublic

router = APIRouter(tags=["tokens"])


@router.get("/me", response_model=Me, responses=error_responses(401))
def me(session: SessionDep, actor: CurrentActor) -> Me:
    return service.describe(session, actor)


@router.post(
    "/tokens",
    status_code=201,
    response_model=TokenCreated,
    responses=error_responses(401, 403, 409, 422),
)
def create_token(data: TokenCreate, session: SessionDep, actor: AdminActor) -> TokenCreated:
    return service.issue_token(session, actor, data=data)


@router.get("/tokens", response_model=Page[TokenPublic], responses=error_responses(401, 403, 422))
def list_tokens(session: SessionDep, actor: AdminActor, page: PageDep) -> Page[TokenPublic]:
    rows, count = service.list_tokens(session, limit=page.limit, offset=page.offset)
    return Page(data=rows, count=count)


@router.delete(
    "/tokens/{token_id}", response_model=TokenPublic, responses=error_responses(401, 403, 404, 409)
)
def revoke_token(token_id: uuid.UUID, session: SessionDep, actor: AdminActor) -> TokenPublic:
    return service.revoke_token(session, actor, token_id=token_id)
