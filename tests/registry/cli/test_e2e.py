"""End to end through the `assay` command against a live server started as a subprocess.

One installation per database (a fresh ASSAY_HOME, and on PostgreSQL a fresh empty database) is
migrated, bootstrapped and served; the walk from vendor creation to a submitted version runs once,
each step's outcome is kept, and each test below asserts one thing about it. The walk takes more
than 20 s per database (every `assay` call is a fresh Python process; the server and the example
export import FastAPI, onnx and torch), so those tests are marked slow.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DATABASES
from tests.registry.server_process import free_port, server_process

ASSAY = str(Path(sys.executable).with_name("assay"))
COMMAND_TIMEOUT_S = 120


def assay(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ASSAY, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, f"{result.args}: {result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any ASSAY_* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSAY_")}
    env.update(extra)
    return env


@pytest.fixture(scope="module", params=DATABASES)
def installation_env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """The environment of a new, empty installation (and on PostgreSQL, an empty database)."""
    home = tmp_path_factory.mktemp("cli-e2e") / "home"
    if request.param == "sqlite":
        yield clean_environment(ASSAY_HOME=str(home))
        return
    from tests.conftest import _pg_execute, _pg_url_for

    name = f"assay_e2e_{uuid.uuid4().hex[:12]}"
    _pg_execute(f'CREATE DATABASE "{name}"')
    try:
        yield clean_environment(ASSAY_HOME=str(home), ASSAY_DATABASE_URL=_pg_url_for(name))
    finally:
        _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Walk:
    """The outcome of each CLI step of one end-to-end walk."""

    model_id: str
    example: dict[str, str]
    submit: subprocess.CompletedProcess[str]
    resubmit: subprocess.CompletedProcess[str]
    versions: subprocess.CompletedProcess[str]
    verify: subprocess.CompletedProcess[str]
    verify_json: subprocess.CompletedProcess[str]
    audit_head: str | None


@pytest.fixture(scope="module")
def walk(
    installation_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Walk]:
    env = dict(installation_env)
    upgrade = assay("db", "upgrade", env=env)
    assert upgrade.returncode == 0, upgrade.stderr
    admin_token = ok_json(assay("admin", "init", "--json", env=env))["token"]

    port = free_port()
    log = tmp_path_factory.mktemp("server-log") / "serve.log"
    with server_process(
        [ASSAY, "serve", "--port", str(port)],
        port=port,
        env=env,
        log=log,
        stop_signal=signal.SIGTERM,
        name="`assay serve`",
    ) as server:
        url = server.url
        admin = {**env, "ASSAY_URL": url, "ASSAY_TOKEN": admin_token}
        vendor = ok_json(assay("vendor", "create", "acme", "--json", env=admin))
        vendor_token = ok_json(
            assay(
                "token",
                "create",
                "--role",
                "vendor",
                "--name",
                "acme-ci",
                "--vendor",
                vendor["id"],
                "--json",
                env=admin,
            )
        )["token"]
        as_vendor = {**env, "ASSAY_URL": url, "ASSAY_TOKEN": vendor_token}

        out = tmp_path_factory.mktemp("example")
        example = ok_json(assay("example-model", "--out", str(out), "--json", env=env))
        # The manifest names the model it is submitted to; create the model under that name.
        model_name = json.loads(Path(example["manifest"]).read_text())["name"]
        model = ok_json(assay("model", "create", model_name, "--json", env=as_vendor))

        submission = (
            "submit", model["id"], "--artifact", example["artifact"],
            "--manifest", example["manifest"], "--json",
        )  # fmt: skip
        submit = assay(*submission, env=as_vendor)
        resubmit = assay(*submission, env=as_vendor)
        versions = assay("versions", model["id"], "--json", env=as_vendor)
        audit = httpx.get(
            f"{url}/api/v1/audit/verify", headers={"Authorization": f"Bearer {admin_token}"}
        ).json()
    # `assay audit verify` reads the installation's database directly, not over HTTP.
    verify = assay("audit", "verify", env=env)
    verify_json = assay("audit", "verify", "--json", env=env)
    yield Walk(
        model_id=model["id"],
        example=example,
        submit=submit,
        resubmit=resubmit,
        versions=versions,
        verify=verify,
        verify_json=verify_json,
        audit_head=audit["head"],
    )


@pytest.mark.slow
def test_submit_registers_version_1_with_the_artifacts_digest(walk: Walk) -> None:
    import hashlib

    version = ok_json(walk.submit)
    expected = "sha256:" + hashlib.sha256(Path(walk.example["artifact"]).read_bytes()).hexdigest()
    assert version["number"] == 1
    assert version["model_id"] == walk.model_id
    assert version["digest"] == expected
    assert version["status"] == "submitted"


@pytest.mark.slow
def test_resubmitting_the_same_artifact_exits_1_with_the_servers_reason(walk: Walk) -> None:
    assert walk.resubmit.returncode == 1, walk.resubmit.stdout + walk.resubmit.stderr
    document = json.loads(walk.resubmit.stdout)
    assert document["status"] == 409
    assert document["error"] == "already_registered"
    assert "already registered" in walk.resubmit.stderr


@pytest.mark.slow
def test_versions_lists_the_one_submitted_version(walk: Walk) -> None:
    page = ok_json(walk.versions)
    assert page["count"] == 1
    assert [(v["number"], v["digest"]) for v in page["data"]] == [
        (1, ok_json(walk.submit)["digest"])
    ]


@pytest.mark.slow
def test_audit_verify_exits_0_and_prints_the_chain_head(walk: Walk) -> None:
    assert walk.verify.returncode == 0, walk.verify.stderr
    assert walk.audit_head is not None
    assert re.search(rf"head:\s+{walk.audit_head}", walk.verify.stdout), walk.verify.stdout


@pytest.mark.slow
def test_audit_verify_json_reports_an_intact_chain_with_the_submission(walk: Walk) -> None:
    document = ok_json(walk.verify_json)
    assert document["ok"] is True
    assert document["head"] == walk.audit_head
    # vendor, token, model and version events at least, after the admin's own token.
    assert document["length"] >= 5


def test_whoami_against_a_port_nothing_listens_on_exits_2() -> None:
    env = clean_environment(
        ASSAY_URL=f"http://127.0.0.1:{free_port()}", ASSAY_TOKEN="assay_not-a-real-token"
    )
    result = assay("whoami", env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "127.0.0.1" in result.stderr
