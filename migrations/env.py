"""Alembic environment: the target metadata is every Assay table."""

from typing import Any

import sqlalchemy as sa
from alembic import context

from registry.db import get_engine
from registry.settings import Settings
from registry.tables import metadata

config = context.config


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    # Our timestamp type and SQLModel's AutoString render as importable expressions.
    if type_ == "type" and type(obj).__name__ == "UTCDateTime":
        autogen_context.imports.add("import registry.db")
        return "registry.db.UTCDateTime()"
    if type_ == "type" and type(obj).__name__ == "AutoString":
        length = getattr(obj, "length", None)
        return f"sa.String(length={length})" if length else "sa.String()"
    return False


def _configure(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_item=_render_item,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    engine = get_engine(Settings(database_url=url) if url else None)
    with engine.begin() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("Offline (SQL script) migrations are not supported; run `assay db upgrade`.")
run_migrations_online()
