"""Settings validation and the SQLite connection guarantees the audit trail relies on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from registry.db import get_engine, make_engine
from registry.settings import Settings


def test_default_database_is_sqlite_inside_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert settings.sqlalchemy_url == f"sqlite:///{tmp_path.resolve() / 'assay.db'}"
    assert settings.artifacts_dir == tmp_path.resolve() / "artifacts"


def test_environment_variables_configure_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSAY_HOME", str(tmp_path))
    monkeypatch.setenv("ASSAY_MAX_ARTIFACT_BYTES", "1234")
    monkeypatch.setenv("ASSAY_DATABASE_URL", "postgresql+psycopg://u@h/db")
    settings = Settings()
    assert settings.home_dir == tmp_path.resolve()
    assert settings.max_artifact_bytes == 1234
    assert settings.sqlalchemy_url == "postgresql+psycopg://u@h/db"


def test_sandbox_hides_home_key_and_sqlite_folders(tmp_path: Path) -> None:
    database = tmp_path / "db" / "assay.db"
    settings = Settings(
        home=tmp_path / "home",
        database_url=f"sqlite:///{database}",
        audit_key_path=tmp_path / "keys" / "k.pem",
    )
    assert settings.sandbox_hidden_paths() == sorted(
        p.resolve() for p in (tmp_path / "home", tmp_path / "keys", tmp_path / "db")
    )
    assert settings.sandbox_allow_weaker is False


def test_sandbox_hides_no_database_folder_for_postgresql(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, database_url="postgresql+psycopg://u@h/db")
    assert settings.sandbox_hidden_paths() == [tmp_path.resolve()]


def test_production_refuses_sqlite_unless_allowed(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="ASSAY_DATABASE_URL"):
        Settings(home=tmp_path, environment="production")
    allowed = Settings(home=tmp_path, environment="production", allow_sqlite_in_production=True)
    assert allowed.sqlalchemy_url.startswith("sqlite")


def test_nonpositive_artifact_limit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="max_artifact_bytes"):
        Settings(home=tmp_path, max_artifact_bytes=0)


def test_sqlite_connections_use_wal_full_sync_and_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            # 2 is FULL
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_sqlite_writers_take_the_write_lock_at_begin(tmp_path: Path) -> None:
    """A second writer cannot even begin while the first holds its transaction open."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    first = make_engine(url)
    second = sa.create_engine(url, connect_args={"timeout": 0.1})
    try:
        with first.connect() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            conn.commit()
            conn.exec_driver_sql("SELECT count(*) FROM t").scalar()  # begins IMMEDIATE
            with second.connect() as other, pytest.raises(sa.exc.OperationalError, match="locked"):
                other.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        first.dispose()
        second.dispose()


def test_foreign_keys_are_enforced(settings: Any) -> None:
    engine = get_engine(settings)
    with engine.connect() as conn, pytest.raises(sa.exc.IntegrityError):
        conn.execute(
            sa.text(
                "INSERT INTO model (id, vendor_id, name, created_at) "
                "VALUES (:id, :vendor, 'm', CURRENT_TIMESTAMP)"
            ),
            {"id": "0" * 32, "vendor": "1" * 32},
        )
        conn.commit()


def test_a_database_error_never_shows_the_bound_values(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 8, item 9: the values would be identifiers, later patient-level attributes.
    engine = make_engine(f"sqlite:///{tmp_path / 'e.db'}")
    secret = "patient-0042-secret"
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (id TEXT PRIMARY KEY)")
        connection.execute(sa.text("INSERT INTO t (id) VALUES (:id)"), {"id": secret})
    with pytest.raises(sa.exc.IntegrityError) as caught, engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO t (id) VALUES (:id)"), {"id": secret})
    assert "INSERT INTO t" in str(caught.value)
    assert secret not in str(caught.value)
    assert secret not in caplog.text
    engine.dispose()
