"""Principals and their tokens: issue, list, revoke, and describe the caller."""

from __future__ import annotations

import uuid

from sqlmodel import Session, col, func, select

from registry import audit
from registry.auth import Actor, as_utc, hash_token, new_token
from registry.db import utcnow
from registry.errors import Conflict, Invalid, NotFound
from registry.principals.models import (
    ApiToken,
    Me,
    Principal,
    Role,
    TokenCreate,
    TokenCreated,
    TokenPublic,
)
from registry.vendors.models import Vendor


def _principal_for(session: Session, data: TokenCreate) -> Principal:
    """The principal named in the request, created if it does not exist yet."""
    if data.role == Role.vendor:
        if data.vendor_id is None:
            raise Invalid(
                "A vendor token must name its vendor: give vendor_id.",
                problems=[{"path": "vendor_id", "message": "required for the vendor role"}],
            )
        if session.get(Vendor, data.vendor_id) is None:
            raise Invalid(
                f"No vendor has id {data.vendor_id}: create it first with `assay vendor create`.",
                problems=[{"path": "vendor_id", "message": "no such vendor"}],
            )
    elif data.vendor_id is not None:
        raise Invalid(
            f"Only vendor tokens are bound to a vendor; a {data.role.value} token takes no "
            "vendor_id.",
            problems=[{"path": "vendor_id", "message": f"not allowed for {data.role.value}"}],
        )
    principal = session.exec(select(Principal).where(Principal.name == data.name)).first()
    if principal is None:
        principal = Principal(name=data.name, role=data.role.value, vendor_id=data.vendor_id)
        session.add(principal)
        session.flush()
    elif principal.role != data.role.value or principal.vendor_id != data.vendor_id:
        raise Conflict(
            f"The principal {data.name!r} already exists with role {principal.role}"
            + (f" for vendor {principal.vendor_id}" if principal.vendor_id else "")
            + ": use another name, or the same role and vendor to issue it another token."
        )
    return principal


def issue_token(
    session: Session, actor_audit: tuple[str, str], *, data: TokenCreate
) -> TokenCreated:
    """Creates a token (and its principal if new); the plain token is returned only here."""
    if data.expires_at is not None:
        try:
            expires_at = as_utc(data.expires_at)
        except ValueError as exc:
            raise Invalid(str(exc), problems=[{"path": "expires_at", "message": str(exc)}]) from exc
        if expires_at <= utcnow():
            raise Invalid(
                "expires_at is in the past: give a future time.",
                problems=[{"path": "expires_at", "message": "must be in the future"}],
            )
    else:
        expires_at = None
    principal = _principal_for(session, data)
    token = new_token()
    api_token = ApiToken(
        principal_id=principal.id,
        token_hash=hash_token(token),
        prefix=token[: len("assay_") + 4],
        expires_at=expires_at,
    )
    session.add(api_token)
    session.flush()
    audit.append(
        session,
        actor=actor_audit,
        action="token.created",
        object_type="token",
        object_id=api_token.id,
        payload={
            "principal_id": str(principal.id),
            "principal_name": principal.name,
            "role": principal.role,
            "vendor_id": str(principal.vendor_id) if principal.vendor_id else None,
            "expires_at": audit.format_time(expires_at) if expires_at else None,
        },
    )
    return TokenCreated(
        id=api_token.id,
        token=token,
        principal_id=principal.id,
        name=principal.name,
        role=Role(principal.role),
        vendor_id=principal.vendor_id,
        expires_at=expires_at,
    )


def _public(api_token: ApiToken, principal: Principal) -> TokenPublic:
    return TokenPublic(
        id=api_token.id,
        principal_id=principal.id,
        name=principal.name,
        role=Role(principal.role),
        vendor_id=principal.vendor_id,
        prefix=api_token.prefix,
        created_at=api_token.created_at,
        expires_at=api_token.expires_at,
        revoked_at=api_token.revoked_at,
        last_used_at=api_token.last_used_at,
    )


def list_tokens(session: Session, *, limit: int, offset: int) -> tuple[list[TokenPublic], int]:
    count = session.exec(select(func.count()).select_from(ApiToken)).one()
    rows = session.exec(
        select(ApiToken, Principal)
        .join(Principal, Principal.id == ApiToken.principal_id)  # type: ignore[arg-type]
        .order_by(col(ApiToken.created_at), col(ApiToken.id))
        .offset(offset)
        .limit(limit)
    ).all()
    return [_public(t, p) for t, p in rows], count


def revoke_token(session: Session, actor: Actor, *, token_id: uuid.UUID) -> TokenPublic:
    """Revokes a token; revoking one that is already revoked is refused with 409."""
    api_token = session.get(ApiToken, token_id)
    if api_token is None:
        raise NotFound(f"No token has id {token_id}.")
    if api_token.revoked_at is not None:
        raise Conflict(f"The token {token_id} was already revoked.")
    api_token.revoked_at = utcnow()
    session.add(api_token)
    session.flush()
    principal = session.get(Principal, api_token.principal_id)
    assert principal is not None
    audit.append(
        session,
        actor=actor.audit,
        action="token.revoked",
        object_type="token",
        object_id=api_token.id,
        payload={"principal_id": str(principal.id), "principal_name": principal.name},
    )
    return _public(api_token, principal)


def describe(session: Session, actor: Actor) -> Me:
    vendor_name = None
    if actor.vendor_id is not None:
        vendor = session.get(Vendor, actor.vendor_id)
        vendor_name = vendor.name if vendor else None
    return Me(
        id=actor.id,
        name=actor.name,
        role=actor.role,
        vendor_id=actor.vendor_id,
        vendor_name=vendor_name,
        token_id=actor.token_id,
    )
