"""First-run set-up of a local installation: the first admin and its token."""

from __future__ import annotations

from sqlmodel import select

from registry.audit import SYSTEM_ACTOR
from registry.db import check_current, get_engine, new_session
from registry.errors import Conflict
from registry.principals.models import Principal, Role, TokenCreate
from registry.principals.service import issue_token
from registry.settings import Settings, get_settings


def init_admin(*, name: str = "admin", settings: Settings | None = None) -> str:
    """Creates the first admin principal and gives back its token (shown once).

    Refused once any admin exists: later admins are issued by an admin through the API.
    """
    engine = get_engine(settings or get_settings())
    check_current(engine)
    with new_session(engine) as session:
        existing = session.exec(select(Principal).where(Principal.role == Role.admin.value)).first()
        if existing is not None:
            raise Conflict(
                f"An admin already exists ({existing.name!r}): ask it to issue you a token with "
                "`assay token create --role admin`."
            )
        created = issue_token(session, SYSTEM_ACTOR, data=TokenCreate(role=Role.admin, name=name))
        session.commit()
        return created.token
