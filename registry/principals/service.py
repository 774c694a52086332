"""Principals and their tokens: issue, list, revoke, and describe the caller."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, func, or_, select

from registry import audit
from registry.auth import Actor, Signer, as_utc, hash_token, new_token
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


def issue_token(session: Session, actor: Signer, *, data: TokenCreate) -> TokenCreated:
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
        actor=actor.audit,
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


# Any constant will do: revocations and recoveries take this transaction-scoped lock on
# PostgreSQL, so two admins revoking each other's last tokens at once cannot both succeed (SQLite
# gets the same from BEGIN IMMEDIATE).
_PG_ADMIN_CREDENTIALS_LOCK_KEY = 0x41444D494E  # "ADMIN"


def lock_admin_credentials(session: Session) -> None:
    """Serializes the changes that decide whether an active admin credential remains."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(
            sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_ADMIN_CREDENTIALS_LOCK_KEY}
        )


def _is_active(api_token: ApiToken, now: datetime) -> bool:
    return api_token.revoked_at is None and (
        api_token.expires_at is None or api_token.expires_at > now
    )


def count_active_admin_tokens(
    session: Session, *, now: datetime, excluding: uuid.UUID | None = None
) -> int:
    """Counts the admin tokens that are neither revoked nor expired (one of them left out)."""
    query = (
        select(func.count())
        .select_from(ApiToken)
        .join(Principal, Principal.id == ApiToken.principal_id)  # type: ignore[arg-type]
        .where(
            Principal.role == Role.admin.value,
            col(ApiToken.revoked_at).is_(None),
            or_(col(ApiToken.expires_at).is_(None), col(ApiToken.expires_at) > now),
        )
    )
    if excluding is not None:
        query = query.where(ApiToken.id != excluding)
    return int(session.exec(query).one())


def revoke_token(session: Session, actor: Actor, *, token_id: uuid.UUID) -> TokenPublic:
    """Revokes a token; refused with 409 if it is already revoked or the last active admin one."""
    lock_admin_credentials(session)
    api_token = session.get(ApiToken, token_id)
    if api_token is None:
        raise NotFound(f"No token has id {token_id}.")
    if api_token.revoked_at is not None:
        raise Conflict(f"The token {token_id} was already revoked.")
    principal = session.get(Principal, api_token.principal_id)
    assert principal is not None
    now = utcnow()
    if (
        principal.role == Role.admin.value
        and _is_active(api_token, now)
        and count_active_admin_tokens(session, now=now, excluding=api_token.id) == 0
    ):
        raise Conflict(
            f"The token {token_id} of {principal.name!r} is the last active admin token: "
            "revoking it would leave no one able to administer Assay. Issue another admin token "
            "first (`assay token create --role admin`), then revoke this one."
        )
    api_token.revoked_at = now
    session.add(api_token)
    session.flush()
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
