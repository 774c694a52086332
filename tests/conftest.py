"""Shared fixtures: a migrated database per test (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")

POSTGRES_URL = os.environ.get("ASSAY_TEST_POSTGRES_URL")
DATABASES = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


def _pg_admin_url() -> str:
    assert POSTGRES_URL is not None
    return POSTGRES_URL


def _pg_url_for(database: str) -> str:
    import sqlalchemy as sa

    return sa.make_url(_pg_admin_url()).set(database=database).render_as_string(hide_password=False)


def _pg_execute(statement: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated once by Alembic; each test gets a copy."""
    from registry.db import dispose_engines, upgrade_database
    from registry.settings import Settings

    home = tmp_path_factory.mktemp("sqlite-template")
    upgrade_database(Settings(home=home))
    dispose_engines()
    return home / "assay.db"


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A PostgreSQL database migrated once by Alembic; each test gets a clone of it."""
    from registry.db import dispose_engines, upgrade_database
    from registry.settings import Settings

    name = f"assay_tpl_{os.getpid()}"
    _pg_execute(f'DROP DATABASE IF EXISTS "{name}"')
    _pg_execute(f'CREATE DATABASE "{name}"')
    upgrade_database(Settings(database_url=_pg_url_for(name)))
    dispose_engines()
    yield name
    _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=DATABASES)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """Settings for a fresh, migrated installation in a temporary ASSAY_HOME."""
    from registry.db import dispose_engines
    from registry.settings import Settings

    home = tmp_path / "home"
    home.mkdir()
    if request.param == "sqlite":
        shutil.copy(request.getfixturevalue("sqlite_template"), home / "assay.db")
        yield Settings(home=home, environment="test")
        dispose_engines()
        return
    template = request.getfixturevalue("postgres_template")
    name = f"assay_t_{uuid.uuid4().hex[:12]}"
    _pg_execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield Settings(home=home, environment="test", database_url=_pg_url_for(name))
    dispose_engines()
    _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
