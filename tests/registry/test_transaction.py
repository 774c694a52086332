"""transaction(): the unit of work outside a request, committed once, rolled back on error."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import select

from registry.db import get_engine, is_writer, new_session, transaction
from registry.vendors.models import Vendor


def vendor_names(settings: Any) -> list[str]:
    """The names of the stored vendors, read in a transaction of their own."""
    with new_session(get_engine(settings), write=False) as session:
        return sorted(session.exec(select(Vendor.name)).all())


def test_the_session_is_a_writer(settings: Any) -> None:
    with transaction(get_engine(settings)) as session:
        assert is_writer(session)


def test_work_is_committed_once_the_block_succeeds(settings: Any) -> None:
    with transaction(get_engine(settings)) as session:
        session.add(Vendor(name="acme"))
        session.flush()
        assert vendor_names(settings) == []  # not visible to others before the commit
    assert vendor_names(settings) == ["acme"]


def test_an_error_rolls_everything_back_and_propagates(settings: Any) -> None:
    with (
        pytest.raises(RuntimeError, match="job failed"),
        transaction(get_engine(settings)) as session,
    ):
        session.add(Vendor(name="acme"))
        session.flush()
        raise RuntimeError("job failed")
    assert vendor_names(settings) == []


def test_the_session_is_closed_afterwards(settings: Any) -> None:
    with transaction(get_engine(settings)) as session:
        session.add(Vendor(name="acme"))
    assert not session.in_transaction()
    assert list(session.identity_map.values()) == []
