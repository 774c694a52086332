"""Tests of `assay audit list` over HTTP and `assay audit verify` on the local installation
(registry/cli/audit.py)."""

from __future__ import annotations

import json
import types
from collections.abc import Callable
from datetime import datetime

from pydantic import BaseModel

from tests.registry.cli.conftest import (
    AUDIT_EVENT,
    HEAD,
    VENDOR_ID,
    FakeServer,
    invoke,
    page,
)


def test_audit_list(server: FakeServer) -> None:
    server.answer("GET", "/audit", 200, page(AUDIT_EVENT))
    result = invoke("audit", "list", "--token", "t")
    assert result.exit_code == 0
    assert "vendor.create" in result.stdout and VENDOR_ID in result.stdout
    as_json = invoke("audit", "list", "--json", "--token", "t")
    assert json.loads(as_json.stdout)["data"][0]["hash"] == HEAD
    # The table shows the time to the minute in local time; --json keeps the hashed string.
    shown = datetime.fromisoformat(AUDIT_EVENT["at"]).astimezone().strftime("%Y-%m-%d %H:%M")
    assert shown in result.stdout
    assert json.loads(as_json.stdout)["data"][0]["at"] == AUDIT_EVENT["at"]


class Verification(BaseModel):
    """The fields of registry.audit.AuditVerification that `assay audit verify` reads."""

    ok: bool
    length: int
    head: str | None
    first_broken_seq: int | None = None
    reason: str | None = None
    expected_head: str | None = None
    grown_since_expected: int | None = None
    checkpoints_verified: int | None = None
    broken_checkpoint: int | None = None
    events_after_last_checkpoint: int | None = None


def install_verification(
    server_modules: Callable[..., types.ModuleType], result: Verification
) -> list[str | None]:
    calls: list[str | None] = []

    def verify_installation(*, expect_head: str | None) -> Verification:
        calls.append(expect_head)
        return result

    server_modules("registry.audit", verify_installation=verify_installation)
    return calls


def test_audit_verify_intact_prints_head_and_length(
    server_modules: Callable[..., types.ModuleType],
) -> None:
    calls = install_verification(server_modules, Verification(ok=True, length=12, head=HEAD))
    result = invoke("audit", "verify")
    assert result.exit_code == 0, result.output
    assert calls == [None]
    assert HEAD in result.stdout and "12 events" in result.stdout


def test_audit_verify_passes_the_expected_head_and_says_how_far_the_chain_grew(
    server_modules: Callable[..., types.ModuleType],
) -> None:
    older = "sha256:" + "11" * 32
    intact = Verification(ok=True, length=12, head=HEAD, grown_since_expected=3)
    calls = install_verification(server_modules, intact)
    result = invoke("audit", "verify", "--expect-head", older)
    assert result.exit_code == 0, result.output
    assert calls == [older]
    assert "3 appended since" in result.stdout


def test_audit_verify_broken_names_the_first_broken_event(
    server_modules: Callable[..., types.ModuleType],
) -> None:
    broken = Verification(
        ok=False,
        length=4,
        head=HEAD,
        first_broken_seq=5,
        reason="event 5: its content does not match its hash",
    )
    install_verification(server_modules, broken)
    result = invoke("audit", "verify")
    assert result.exit_code == 1
    assert "broken at event 5: its content does not match its hash" in result.stderr
    as_json = invoke("audit", "verify", "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["first_broken_seq"] == 5


def test_audit_verify_missing_expected_head_exits_1(
    server_modules: Callable[..., types.ModuleType],
) -> None:
    reason = f"the expected head abc is not in the chain (head is {HEAD}, length 12)"
    install_verification(
        server_modules, Verification(ok=False, length=12, head=HEAD, reason=reason)
    )
    result = invoke("audit", "verify", "--expect-head", "abc")
    assert result.exit_code == 1
    assert reason in result.stderr
