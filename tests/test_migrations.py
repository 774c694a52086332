"""Alembic migrations: they build the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from registry.db import (
    MIGRATIONS_DIR,
    alembic_config,
    current_revision,
    dispose_engines,
    get_engine,
    head_revision,
    upgrade_database,
)
from registry.settings import Settings, get_settings
from registry.tables import metadata
from tests.conftest import DATABASES, POSTGRES_URL

MODEL_TABLES = set(metadata.tables)


def _pg_autocommit(statement: str) -> None:
    assert POSTGRES_URL is not None
    engine = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(statement)
    finally:
        engine.dispose()


@pytest.fixture(params=DATABASES)
def empty_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings for an installation whose database has never been migrated."""
    home = tmp_path / "home"
    if request.param == "sqlite":
        yield Settings(home=home, environment="test")
        dispose_engines()
        return
    assert POSTGRES_URL is not None
    name = f"assay_empty_{uuid.uuid4().hex[:12]}"
    _pg_autocommit(f'CREATE DATABASE "{name}"')
    url = sa.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    yield Settings(home=home, environment="test", database_url=url)
    dispose_engines()
    _pg_autocommit(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _table_names(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def _schema_differences(engine: sa.Engine) -> list[Any]:
    """What `alembic revision --autogenerate` would write, as alembic's diff tuples."""
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "target_metadata": metadata}
        )
        return list(compare_metadata(context, metadata))


# --- upgrade ---------------------------------------------------------------------------------


def test_upgrade_on_an_empty_database_reaches_head(empty_settings: Settings) -> None:
    assert upgrade_database(empty_settings) == head_revision()
    engine = get_engine(empty_settings)
    assert current_revision(engine) == head_revision()
    assert _table_names(engine) >= MODEL_TABLES


def test_alembic_command_line_upgrades_the_configured_installation(
    empty_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`alembic upgrade head` with the repo's alembic.ini finds the database through ASSAY_*."""
    monkeypatch.setenv("ASSAY_HOME", str(empty_settings.home))
    if empty_settings.database_url:
        monkeypatch.setenv("ASSAY_DATABASE_URL", empty_settings.database_url)
    else:
        monkeypatch.delenv("ASSAY_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        command.upgrade(Config(str(MIGRATIONS_DIR.parent / "alembic.ini")), "head")
    finally:
        get_settings.cache_clear()
    assert current_revision(get_engine(empty_settings)) == head_revision()


def test_migrated_schema_matches_the_models(settings: Settings) -> None:
    assert _schema_differences(get_engine(settings)) == []


def test_comparison_sees_a_difference_when_there_is_one(settings: Settings) -> None:
    """Guards the test above: an empty diff must mean 'no difference', not 'nothing compared'."""
    engine = get_engine(settings)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP INDEX ix_model_version_status")
    differences = _schema_differences(engine)
    assert [(d[0], d[1].name) for d in differences] == [("add_index", "ix_model_version_status")]


def test_revision_file_names_are_date_prefixed() -> None:
    names = [p.name for p in (MIGRATIONS_DIR / "versions").glob("*.py")]
    assert names
    for name in names:
        year, month, day, *_ = name.split("_")
        assert (len(year), len(month), len(day)) == (4, 2, 2) and (year + month + day).isdigit()


# --- an installation that is behind ----------------------------------------------------------


def test_app_refuses_an_unmigrated_database(empty_settings: Settings) -> None:
    from registry.app import create_app
    from registry.errors import DatabaseBehind

    with pytest.raises(DatabaseBehind, match="run `assay db upgrade`"):
        create_app(empty_settings)


def test_app_starts_once_the_database_is_upgraded(empty_settings: Settings) -> None:
    from registry.app import create_app

    upgrade_database(empty_settings)
    assert create_app(empty_settings).state.engine is get_engine(empty_settings)


# --- downgrade -------------------------------------------------------------------------------


def test_downgrade_to_base_then_upgrade_again(settings: Settings) -> None:
    engine = get_engine(settings)
    config = alembic_config(settings.sqlalchemy_url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert current_revision(engine) is None
    assert _table_names(engine) & MODEL_TABLES == set()

    assert upgrade_database(settings) == head_revision()
    assert current_revision(engine) == head_revision()
    assert _schema_differences(engine) == []


def test_downgrade_removes_the_postgres_audit_triggers(settings: Settings) -> None:
    engine = get_engine(settings)
    if engine.dialect.name != "postgresql":
        pytest.skip("the audit triggers exist on PostgreSQL only")
    query = sa.text("SELECT count(*) FROM pg_proc WHERE proname = 'assay_audit_append_only'")
    config = alembic_config(settings.sqlalchemy_url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    with engine.connect() as connection:
        assert connection.execute(query).scalar() == 0
    upgrade_database(settings)
    with engine.connect() as connection:
        assert connection.execute(query).scalar() == 1
        triggers = connection.execute(
            sa.text(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_event'::regclass "
                "AND NOT tgisinternal ORDER BY tgname"
            )
        ).scalars()
        assert list(triggers) == [
            "audit_event_continues_chain",
            "audit_event_no_truncate",
            "audit_event_no_update_delete",
        ]


def _audit_triggers(engine: sa.Engine) -> list[str]:
    """The user triggers on the two audit tables, by name."""
    if engine.dialect.name == "postgresql":
        query = (
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgrelid IN "
            "(SELECT oid FROM pg_class WHERE relname IN ('audit_event', 'audit_checkpoint')) "
            "ORDER BY tgname"
        )
    else:
        query = (
            "SELECT name FROM sqlite_master WHERE type = 'trigger' "
            "AND tbl_name IN ('audit_event', 'audit_checkpoint') ORDER BY name"
        )
    with engine.connect() as connection:
        return list(connection.exec_driver_sql(query).scalars())


def test_downgrade_of_0002_removes_the_checkpoints_and_continuity_triggers(
    settings: Settings,
) -> None:
    engine = get_engine(settings)
    postgres = engine.dialect.name == "postgresql"
    added = ["audit_event_continues_chain"] + (
        ["audit_checkpoint_no_truncate", "audit_checkpoint_no_update_delete"] if postgres else []
    )
    assert set(added) <= set(_audit_triggers(engine))
    config = alembic_config(settings.sqlalchemy_url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")
    assert "audit_checkpoint" not in _table_names(engine)
    assert set(added) & set(_audit_triggers(engine)) == set()
    if postgres:
        with engine.connect() as connection:
            functions = connection.exec_driver_sql(
                "SELECT count(*) FROM pg_proc WHERE proname IN "
                "('assay_audit_continues_chain', 'assay_checkpoint_append_only')"
            ).scalar()
        assert functions == 0
    upgrade_database(settings)
    assert set(added) <= set(_audit_triggers(engine))
