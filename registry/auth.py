"""Bearer tokens, roles, and the Annotated dependencies that authenticate every request."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import or_, update
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from registry.db import new_session, utcnow
from registry.deps import app_resources
from registry.errors import Forbidden, Unauthorized
from registry.principals.models import ApiToken, Principal, Role

TOKEN_PREFIX = "assay_"
# Where registry.limits keeps the actor it resolved before the body was read, so that the route's
# dependency does not query the database a second time.
ACTOR_SCOPE_KEY = "assay.actor"
# Writing last_used_at on every request would turn every read into a write; once a minute is
# enough to tell which tokens are in use.
_LAST_USED_GRANULARITY = timedelta(minutes=1)


def new_token() -> str:
    """A fresh random token (256 bits), shown to its owner once."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Actor:
    """The authenticated caller of one request."""

    id: uuid.UUID
    name: str
    role: Role
    vendor_id: uuid.UUID | None
    token_id: uuid.UUID | None

    @property
    def audit(self) -> tuple[str, str]:
        """The `(id, name)` pair that signs this actor's audit events."""
        return (str(self.id), self.name)


@dataclass(frozen=True)
class SystemActor:
    """The signer of work that no authenticated request did.

    That is the registry itself (background workers, maintenance: `SYSTEM`) or a local command
    run on the host (`local:<os user>`).
    """

    id: str
    name: str

    @property
    def audit(self) -> tuple[str, str]:
        """The `(id, name)` pair that signs this actor's audit events."""
        return (self.id, self.name)


# The registry itself: evaluation workers, startup repairs and alert-driven suspensions sign as it.
SYSTEM = SystemActor(id="system", name="system")

# Whoever a service acts for: a request's caller or the system. Services that only record who did
# something take this; services that check roles or vendors take `Actor`.
Signer = Actor | SystemActor


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized(
            "This endpoint needs a token: send `Authorization: Bearer <token>` "
            "(an admin issues tokens with `assay token create`)."
        )
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("The Authorization header must be `Bearer <token>`.")
    return value.strip()


def authenticate(request: Request) -> Actor:
    """Resolves the bearer token to its principal, in a short read transaction of its own.

    It runs before the handler reads any request body, so an unauthenticated upload is refused
    before a byte of it is read.
    """
    known = request.scope.get(ACTOR_SCOPE_KEY)
    if isinstance(known, Actor):
        return known
    token = _bearer(request)
    now = utcnow()
    engine = app_resources(request.app).engine
    with new_session(engine, write=False) as session:
        row = session.exec(
            select(ApiToken, Principal)
            .join(Principal, Principal.id == ApiToken.principal_id)  # type: ignore[arg-type]
            .where(ApiToken.token_hash == hash_token(token))
        ).first()
        if row is None:
            raise Unauthorized("The token is not valid: check it or ask an admin for a new one.")
        api_token, principal = row
    if api_token.revoked_at is not None:
        raise Unauthorized("The token was revoked: ask an admin for a new one.")
    if api_token.expires_at is not None and api_token.expires_at <= now:
        raise Unauthorized("The token has expired: ask an admin for a new one.")
    if api_token.last_used_at is None or now - api_token.last_used_at > _LAST_USED_GRANULARITY:
        _record_use(engine, api_token.id, now)
    return Actor(
        id=principal.id,
        name=principal.name,
        role=Role(principal.role),
        vendor_id=principal.vendor_id,
        token_id=api_token.id,
    )


def _record_use(engine: Engine, token_id: uuid.UUID, now: datetime) -> None:
    """Sets the token's last_used_at in a write transaction of its own, only when still stale.

    The condition is re-checked in the UPDATE, so concurrent requests that all saw a stale time
    write it once; the others change nothing.
    """
    stale = or_(
        col(ApiToken.last_used_at).is_(None),
        col(ApiToken.last_used_at) < now - _LAST_USED_GRANULARITY,
    )
    with new_session(engine) as session:
        session.execute(
            update(ApiToken).where(col(ApiToken.id) == token_id, stale).values(last_used_at=now)
        )
        session.commit()


CurrentActor = Annotated[Actor, Depends(authenticate)]


def require_roles(*roles: Role) -> Callable[[Actor], Actor]:
    """A dependency that lets only the given roles through (403 for the others)."""
    allowed = ", ".join(r.value for r in roles)

    def check(actor: CurrentActor) -> Actor:
        if actor.role not in roles:
            raise Forbidden(f"The {actor.role.value} role may not do this; it needs: {allowed}.")
        return actor

    return check


AdminActor = Annotated[Actor, Depends(require_roles(Role.admin))]
AuditReader = Annotated[Actor, Depends(require_roles(Role.admin, Role.reviewer))]
CatalogReader = Annotated[
    Actor, Depends(require_roles(Role.admin, Role.reviewer, Role.vendor, Role.ci, Role.monitor))
]
CatalogWriter = Annotated[Actor, Depends(require_roles(Role.admin, Role.vendor))]


def as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("give the time with its zone, e.g. 2027-01-31T00:00:00Z")
    return moment.astimezone(UTC)
