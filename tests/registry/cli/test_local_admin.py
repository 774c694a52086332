"""Tests of `assay admin`, `assay serve` and `assay db` against stand-in server modules
(registry/cli/local_admin.py)."""

from __future__ import annotations

import json
import types
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.registry.cli.conftest import (
    invoke,
)


def test_admin_init_prints_the_token_and_the_export_line(
    server_modules: Callable[..., types.ModuleType],
) -> None:
    calls: list[str] = []

    def init_admin(*, name: str) -> str:
        calls.append(name)
        return "assay_admin_token"

    server_modules("registry.principals.admin", init_admin=init_admin)
    result = invoke("admin", "init", "--name", "root")
    assert result.exit_code == 0, result.output
    assert calls == ["root"]
    assert "export ASSAY_TOKEN=assay_admin_token" in result.stdout


def test_admin_init_json_is_exactly_the_token(
    server_modules: Callable[..., types.ModuleType],
) -> None:
    server_modules("registry.principals.admin", init_admin=lambda *, name: "assay_admin_token")
    result = invoke("admin", "init", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"token": "assay_admin_token"}


def test_admin_init_when_an_admin_exists_exits_1(
    server_modules: Callable[..., types.ModuleType], server_errors: types.ModuleType
) -> None:
    def init_admin(*, name: str) -> str:
        raise server_errors.Conflict("An admin already exists; issue more tokens with it.")

    server_modules("registry.principals.admin", init_admin=init_admin)
    result = invoke("admin", "init")
    assert result.exit_code == 1
    assert "An admin already exists" in result.stderr


@dataclass(frozen=True)
class FakeRecovery:
    token: str
    token_id: str
    principal_id: str
    principal_name: str
    active_admin_tokens_before: int


@pytest.mark.parametrize(
    ("before", "says"),
    [
        (0, "No active admin token existed"),
        (1, "1 other active admin token existed"),
        (3, "3 other active admin tokens existed"),
    ],
)
def test_admin_recover_prints_the_token_and_what_it_found(
    server_modules: Callable[..., types.ModuleType], before: int, says: str
) -> None:
    calls: list[str] = []

    def recover_admin(*, name: str) -> FakeRecovery:
        calls.append(name)
        return FakeRecovery("assay_recovered", "t-9", "p-9", name, before)

    server_modules("registry.principals.admin", recover_admin=recover_admin)
    result = invoke("admin", "recover", "--name", "ops")
    assert result.exit_code == 0, result.output
    assert calls == ["ops"]
    assert "export ASSAY_TOKEN=assay_recovered" in result.stdout
    assert says in result.stdout
    assert "admin.recovered" in result.stdout
    assert "will not be shown again" in result.stderr


def test_admin_recover_json_is_one_document(
    server_modules: Callable[..., types.ModuleType],
) -> None:
    recovery = FakeRecovery("assay_recovered", "t-9", "p-9", "admin", 0)
    server_modules("registry.principals.admin", recover_admin=lambda *, name: recovery)
    result = invoke("admin", "recover", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "token": "assay_recovered",
        "token_id": "t-9",
        "principal_id": "p-9",
        "principal_name": "admin",
        "active_admin_tokens_before": 0,
    }


def test_admin_recover_refused_exits_1(
    server_modules: Callable[..., types.ModuleType], server_errors: types.ModuleType
) -> None:
    def recover_admin(*, name: str) -> FakeRecovery:
        raise server_errors.Conflict("The principal 'ci' already exists with role ci.")

    server_modules("registry.principals.admin", recover_admin=recover_admin)
    result = invoke("admin", "recover", "--name", "ci")
    assert result.exit_code == 1
    assert "already exists with role ci" in result.stderr


def test_serve_passes_host_and_port(server_modules: Callable[..., types.ModuleType]) -> None:
    calls: list[tuple[str, int]] = []
    server_modules("registry.app", serve=lambda *, host, port: calls.append((host, port)))
    result = invoke("serve", "--host", "0.0.0.0", "--port", "9000")
    assert result.exit_code == 0, result.output
    assert calls == [("0.0.0.0", 9000)]


def test_serve_on_an_old_database_says_to_upgrade_and_exits_1(
    server_modules: Callable[..., types.ModuleType], server_errors: types.ModuleType
) -> None:
    def serve(*, host: str, port: int) -> None:
        raise server_errors.DatabaseBehind("The database is behind; run `assay db upgrade`.")

    server_modules("registry.app", serve=serve)
    result = invoke("serve")
    assert result.exit_code == 1
    assert "assay db upgrade" in result.stderr


def test_db_upgrade_prints_the_revision(server_modules: Callable[..., types.ModuleType]) -> None:
    server_modules("registry.db", upgrade_database=lambda: "20250101_0001")
    result = invoke("db", "upgrade")
    assert result.exit_code == 0
    assert "20250101_0001" in result.stdout
    as_json = invoke("db", "upgrade", "--json")
    assert json.loads(as_json.stdout) == {"revision": "20250101_0001"}
