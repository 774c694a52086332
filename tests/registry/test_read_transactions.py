"""Readers do not take the write lock: only transactions that may write begin IMMEDIATE on SQLite.

Before, every transaction (reads included) began with `BEGIN IMMEDIATE`, so concurrent reads
queued on SQLite's one write lock and, with a hundred of them, failed with `database is locked`.
"""

from __future__ import annotations

import http.client
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import select

from registry import audit
from registry.auth import SYSTEM
from tests.registry.conftest import auth, make_model, make_vendor
from tests.registry.server_process import serve_in_subprocess

CONCURRENT_READERS = 100
READS_EACH = 3


def test_a_hundred_concurrent_authenticated_reads_get_no_5xx(
    settings: Any, client: Any, admin_token: str, tmp_path: Path
) -> None:
    account = make_vendor(client, admin_token, name="acme")
    for number in range(5):
        make_model(client, account, name=f"model-{number}")

    barrier = threading.Barrier(CONCURRENT_READERS)

    def read(_: int) -> list[int]:
        # http.client, not httpx: a hundred httpx clients cost seconds of CPU to set up.
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        statuses = []
        try:
            barrier.wait()
            for _ in range(READS_EACH):
                connection.request("GET", "/api/v1/models", headers=account.headers)
                response = connection.getresponse()
                response.read()
                statuses.append(response.status)
        finally:
            connection.close()
        return statuses

    with (
        serve_in_subprocess(settings, tmp_path) as server,
        ThreadPoolExecutor(CONCURRENT_READERS) as pool,
    ):
        statuses = [s for each in pool.map(read, range(CONCURRENT_READERS)) for s in each]
    assert len(statuses) == CONCURRENT_READERS * READS_EACH
    assert {s for s in statuses if s >= 500} == set(), server.log.read_text()[-3000:]
    assert set(statuses) == {200}


def test_a_read_session_reads_while_a_writer_holds_the_write_lock(settings: Any) -> None:
    from registry.db import get_engine, new_session
    from registry.principals.models import Principal

    engine = get_engine(settings)
    with new_session(engine) as writer:
        writer.add(Principal(name="writer-in-progress", role="admin"))
        writer.flush()  # the write lock (SQLite) or the row (PostgreSQL) is now held
        with new_session(engine, write=False) as reader:
            names = reader.exec(select(Principal.name)).all()
        assert "writer-in-progress" not in names
        writer.rollback()


def test_a_write_in_a_read_session_is_refused(settings: Any) -> None:
    from registry.db import get_engine, new_session
    from registry.principals.models import Principal

    with new_session(get_engine(settings), write=False) as reader:
        reader.add(Principal(name="sneaky", role="admin"))
        with pytest.raises(sa.exc.DBAPIError, match=r"read-?only"):
            reader.flush()


def test_an_audit_append_in_a_read_session_is_refused(settings: Any) -> None:
    from registry.db import get_engine, new_session

    with (
        new_session(get_engine(settings), write=False) as reader,
        pytest.raises(AssertionError, match="write"),
    ):
        audit.append(reader, actor=SYSTEM.audit, action="test.read", object_type="t", object_id="1")


def test_the_same_connection_serves_a_write_after_a_read(settings: Any) -> None:
    """The read-only switch is per transaction, not stuck on a pooled connection."""
    from registry.db import get_engine, new_session
    from registry.principals.models import Principal

    engine = get_engine(settings)
    for _ in range(3):
        with new_session(engine, write=False) as reader:
            reader.exec(select(Principal)).all()
        with new_session(engine) as writer:
            writer.add(Principal(name=f"p-{uuid.uuid4().hex}", role="admin"))
            writer.commit()


def test_a_get_still_records_when_a_token_was_last_used(client: Any, admin_token: str) -> None:
    from registry.db import new_session
    from registry.principals.models import ApiToken

    engine = client.app.state.engine

    def last_used() -> Any:
        with new_session(engine, write=False) as session:
            return session.exec(select(ApiToken.last_used_at)).one()

    assert last_used() is None
    assert client.get("/api/v1/models", headers=auth(admin_token)).status_code == 200
    first = last_used()
    assert first is not None
    # Within the granularity the row is not written again; after it, it is.
    assert client.get("/api/v1/models", headers=auth(admin_token)).status_code == 200
    assert last_used() == first
    with new_session(engine) as session:
        token = session.exec(select(ApiToken)).one()
        token.last_used_at = first - timedelta(minutes=5)
        session.add(token)
        session.commit()
    assert client.get("/api/v1/models", headers=auth(admin_token)).status_code == 200
    assert last_used() > first - timedelta(minutes=5)
