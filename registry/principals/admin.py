"""Local set-up and recovery of an installation: the first admin, and a new admin token.

Both run on the server host against the database of ASSAY_HOME / ASSAY_DATABASE_URL, without the
API: being able to write that database is the authority they need.
"""

from __future__ import annotations

import getpass
import uuid
from dataclasses import dataclass

from pydantic import ValidationError
from sqlmodel import select

from registry import audit
from registry.auth import SYSTEM, SystemActor
from registry.db import check_current, get_engine, transaction, utcnow
from registry.errors import Conflict, Invalid
from registry.principals.models import Principal, Role, TokenCreate
from registry.principals.service import (
    count_active_admin_tokens,
    issue_token,
    lock_admin_credentials,
)
from registry.settings import Settings, get_settings


def _admin_request(name: str) -> TokenCreate:
    """The admin token request for `name`; a bad name is an Invalid naming the problem."""
    try:
        return TokenCreate(role=Role.admin, name=name)
    except ValidationError as exc:
        problems = [
            {"path": ".".join(str(p) for p in error["loc"]), "message": error["msg"]}
            for error in exc.errors(include_url=False)
        ]
        raise Invalid(
            f"{name!r} cannot be an admin's name: give 1-200 printable characters with --name.",
            problems=problems,
        ) from exc


def init_admin(*, name: str = "admin", settings: Settings | None = None) -> str:
    """Creates the first admin principal and gives back its token (shown once).

    Refused once any admin exists: later admins are issued by an admin through the API.
    """
    data = _admin_request(name)
    engine = get_engine(settings or get_settings())
    check_current(engine)
    with transaction(engine) as session:
        existing = session.exec(select(Principal).where(Principal.role == Role.admin.value)).first()
        if existing is not None:
            raise Conflict(
                f"An admin already exists ({existing.name!r}): ask it to issue you a token with "
                "`assay token create --role admin`, or, if no admin token works any more, run "
                "`assay admin recover` on this host."
            )
        created = issue_token(session, SYSTEM, data=data)
        return created.token


@dataclass(frozen=True)
class Recovery:
    """What `recover_admin` did: the new token (shown once) and what it found."""

    token: str
    token_id: uuid.UUID
    principal_id: uuid.UUID
    principal_name: str
    active_admin_tokens_before: int


def local_actor() -> SystemActor:
    """The audit actor of a local command: `local:` and the operating-system user running it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no USER/LOGNAME and no passwd entry for the uid
        user = "unknown"
    actor = f"local:{user}"[:64]
    return SystemActor(id=actor, name=actor)


def recover_admin(*, name: str = "admin", settings: Settings | None = None) -> Recovery:
    """Issues a new admin token for `name` (created if new) and records `admin.recovered`.

    For an installation whose admin tokens were all revoked, expired or lost. It works whether
    or not active admin tokens exist, and says how many there were; it never revokes any.
    """
    data = _admin_request(name)
    engine = get_engine(settings or get_settings())
    check_current(engine)
    actor = local_actor()
    with transaction(engine) as session:
        lock_admin_credentials(session)
        before = count_active_admin_tokens(session, now=utcnow())
        created = issue_token(session, actor, data=data)
        audit.append(
            session,
            actor=actor.audit,
            action="admin.recovered",
            object_type="principal",
            object_id=created.principal_id,
            payload={
                "principal_name": created.name,
                "token_id": str(created.id),
                "active_admin_tokens_before": before,
            },
        )
        return Recovery(
            token=created.token,
            token_id=created.id,
            principal_id=created.principal_id,
            principal_name=created.name,
            active_admin_tokens_before=before,
        )
