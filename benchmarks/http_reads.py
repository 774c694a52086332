"""Benchmark 5: authenticated reads under concurrency (wrk), and what h11 costs against httptools.

Each server is the real one, in its own process, on a fresh installation with a vendor token and
five models: `GET /api/v1/models` (authenticated: one token lookup and one list query per request)
is loaded by `wrk` at 1, 10 and 100 connections. Run beside it in the same session:

- the old transaction behaviour, every transaction (reads too) opened with `BEGIN IMMEDIATE` and a
  pool of 5 + 10 connections, by patching `registry.db` in the server process (SQLite only);
- uvicorn's default protocol (httptools, no header cap, no head deadline) against what
  `assay serve` runs (h11 with the cap and the deadline), on `GET /api/v1/health` and the list;
- PostgreSQL, when a server URL is in ASSAY_BENCH_POSTGRES_URL (or ASSAY_TEST_POSTGRES_URL; an
  environment variable, so that a password never lands in the recorded command): a database of
  its own is created on it for the run and dropped after.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from benchmarks._common import BenchmarkError, progress, ratio
from benchmarks.assay_server import API, SERVE, AssayServer, provision_vendor_model

NAME = "http-reads"
WRK = "wrk"
CONNECTIONS = (1, 10, 100)
MODELS = 5
PROTOCOL_CONNECTIONS = 10

# wrk prints this JSON line when it is done; latencies are in microseconds.
_LUA_REPORT = """
done = function(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "status_errors": %d, "connect_errors": %d, '
    .. '"read_errors": %d, "write_errors": %d, "timeouts": %d, '
    .. '"p50_us": %d, "p99_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""

# The behaviour before: every transaction, reads included, takes SQLite's write lock, and the
# pool is SQLAlchemy's default (5 + 10 overflow).
SERVE_IMMEDIATE = (
    "import registry.db as db; "
    "db._sqlite_begin = lambda conn: conn.exec_driver_sql('BEGIN IMMEDIATE'); "
    "db.SQLITE_POOL_SIZE, db.SQLITE_POOL_OVERFLOW = 5, 10; "
    "from registry.app import serve; serve(port={port})"
)
# uvicorn's default protocol, as `assay serve` ran before.
SERVE_HTTPTOOLS = (
    "import uvicorn; from registry.app import create_app; "
    "uvicorn.run(create_app(), host='127.0.0.1', port={port}, log_level='info', http='httptools')"
)


@contextmanager
def _server(code: str, home: Path, database_url: str | None) -> Iterator[tuple[str, str]]:
    """Runs `code` (a `python -c` program that serves on {port}); gives (base URL, admin token)."""
    with AssayServer(home, code=code, database_url=database_url) as server:
        yield server.base_url, server.admin_token


def _vendor_with_models(url: str, admin_token: str) -> str:
    """A vendor token with MODELS models; gives the token."""
    with httpx.Client(base_url=url + API, timeout=60) as client:
        token, _ = provision_vendor_model(client, admin_token, model_name="bench-model-0")
        for number in range(1, MODELS):
            response = client.post(
                "/models",
                json={"name": f"bench-model-{number}"},
                headers={"Authorization": f"Bearer {token}"},
            )
            if response.status_code != 201:
                raise BenchmarkError(f"creating a model: HTTP {response.status_code}")
        # Warm-up, and last_used_at is now fresh: the timed runs measure reads only.
        listed = client.get("/models", headers={"Authorization": f"Bearer {token}"})
        if listed.status_code != 200 or listed.json().get("count") != MODELS:
            raise BenchmarkError(f"listing the models: HTTP {listed.status_code} {listed.text}")
    return token


def _wrk(
    url: str, *, connections: int, duration_s: int, token: str | None, lua: Path
) -> dict[str, Any]:
    """One wrk run; gives requests/s, p50 and p99 in ms, and the error counts."""
    command = [
        WRK,
        f"-t{min(connections, 2)}",
        f"-c{connections}",
        f"-d{duration_s}s",
        "--timeout",
        "10s",
        "-s",
        str(lua),
    ]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    completed = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=duration_s + 60, check=False
    )
    found = re.search(r"^\{.*\}$", completed.stdout, re.MULTILINE)
    if completed.returncode != 0 or not found:
        raise BenchmarkError(f"wrk failed ({completed.returncode}): {completed.stderr[-2000:]}")
    raw = json.loads(found.group(0))
    seconds = raw["duration_us"] / 1e6
    socket_errors = sum(
        raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
    )
    return {
        "connections": connections,
        "requests": raw["requests"],
        "requests_per_s": round(raw["requests"] / seconds, 1),
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "max_ms": round(raw["max_us"] / 1000, 2),
        "status_errors": raw["status_errors"],
        "socket_errors": socket_errors,
        "raw": raw,
    }


def _models(
    url: str, token: str, connections: int, duration_s: int, lua: Path, label: str
) -> dict[str, Any]:
    """One wrk run of the authenticated models list."""
    run = _wrk(
        f"{url}{API}/models", connections=connections, duration_s=duration_s, token=token, lua=lua
    )
    progress(
        f"{label}: {connections} connection(s): {run['requests_per_s']} req/s, "
        f"p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms, "
        f"{run['status_errors']} status errors, {run['socket_errors']} socket errors"
    )
    return run


def _postgres_database(admin_url: str) -> tuple[str, str]:
    """Creates a fresh database on the server of `admin_url`; gives (its URL, its name)."""
    import sqlalchemy as sa

    name = f"assay_bench_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        engine.dispose()
    url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    return url, name


def _drop_postgres_database(admin_url: str, name: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        engine.dispose()


def run(*, workdir: Path, duration_s: int, postgres_url: str | None) -> dict[str, Any]:
    """Runs every configuration; gives the runs and the ratios."""
    if shutil.which(WRK) is None:
        raise BenchmarkError("wrk is not installed (Debian: apt-get install wrk)")
    lua = Path(tempfile.mkstemp(suffix=".lua", dir=workdir)[1])
    lua.write_text(_LUA_REPORT)
    result: dict[str, Any] = {"duration_s": duration_s, "connections": list(CONNECTIONS)}

    # The servers compared run side by side and their runs alternate, so that a change in the
    # machine's load (it is shared) falls on both alike.
    progress("SQLite: assay serve, the old BEGIN IMMEDIATE reads, and httptools, side by side")
    with (
        _server(SERVE, workdir / "sqlite", None) as (url, admin),
        _server(SERVE_IMMEDIATE, workdir / "sqlite-immediate", None) as (old_url, old_admin),
        _server(SERVE_HTTPTOOLS, workdir / "sqlite-httptools", None) as (ht_url, ht_admin),
    ):
        token = _vendor_with_models(url, admin)
        old_token = _vendor_with_models(old_url, old_admin)
        ht_token = _vendor_with_models(ht_url, ht_admin)
        sqlite: dict[str, Any] = {}
        immediate: dict[str, Any] = {}
        # The old server's 100-connection run goes last: it leaves requests stuck behind it.
        for connections in CONNECTIONS:
            sqlite[str(connections)] = _models(url, token, connections, duration_s, lua, "sqlite")
            if connections != CONNECTIONS[-1]:
                immediate[str(connections)] = _models(
                    old_url, old_token, connections, duration_s, lua, "sqlite, BEGIN IMMEDIATE"
                )
        protocol: dict[str, dict[str, Any]] = {"h11": {}, "httptools": {}}
        for path in ("health", "models"):
            for name, base, bearer in (("h11", url, token), ("httptools", ht_url, ht_token)):
                run_ = _wrk(
                    f"{base}{API}/{path}",
                    connections=PROTOCOL_CONNECTIONS,
                    duration_s=duration_s,
                    token=bearer,
                    lua=lua,
                )
                progress(f"{name} {path}: {run_['requests_per_s']} req/s, p99 {run_['p99_ms']} ms")
                protocol[name][path] = run_
        last = CONNECTIONS[-1]
        immediate[str(last)] = _models(
            old_url, old_token, last, duration_s, lua, "sqlite, BEGIN IMMEDIATE"
        )
    result["sqlite"] = sqlite
    result["sqlite_immediate_reads"] = immediate
    result["protocol"] = {**protocol, "connections": PROTOCOL_CONNECTIONS}
    if postgres_url:
        database_url, name = _postgres_database(postgres_url)
        try:
            progress("PostgreSQL, assay serve")
            with _server(SERVE, workdir / "postgresql", database_url) as (url, admin):
                token = _vendor_with_models(url, admin)
                result["postgresql"] = {
                    str(c): _models(url, token, c, duration_s, lua, "postgresql")
                    for c in CONNECTIONS
                }
        finally:
            _drop_postgres_database(postgres_url, name)
    result["ratios"] = {
        **{
            f"h11_over_httptools_{path}_rps": ratio(
                protocol["h11"][path]["requests_per_s"],
                protocol["httptools"][path]["requests_per_s"],
            )
            for path in ("health", "models")
        },
        **{
            f"deferred_over_immediate_rps_{c}": ratio(
                sqlite[str(c)]["requests_per_s"], immediate[str(c)]["requests_per_s"]
            )
            for c in CONNECTIONS
        },
    }
    result["server_commands"] = {
        "assay": "python -c " + json.dumps(SERVE),
        "immediate": "python -c " + json.dumps(SERVE_IMMEDIATE),
        "httptools": "python -c " + json.dumps(SERVE_HTTPTOOLS),
    }
    result["postgres_measured"] = bool(postgres_url)
    result["wrk_version"] = _wrk_version()
    return result


def _wrk_version() -> str:
    completed = subprocess.run([WRK, "-v"], capture_output=True, text=True, check=False)
    first = (completed.stdout or completed.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0] if first else "unknown"


def postgres_url_from_environment() -> str | None:
    return os.environ.get("ASSAY_BENCH_POSTGRES_URL") or os.environ.get("ASSAY_TEST_POSTGRES_URL")
