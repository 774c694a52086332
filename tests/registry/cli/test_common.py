"""Tests of `registry/cli/common.py` as the commands meet it.

Where the URL and the token come from, exit codes and error documents, names from the server
printed escaped, refused documents, and what start-up imports.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

import registry.cli.common
from tests.registry.cli.conftest import (
    ME,
    MODEL,
    MODEL_ID,
    TOKEN,
    VENDOR,
    VERSION,
    VERSION_ID,
    FakeServer,
    free_port,
    invoke,
    page,
)


def test_url_and_token_come_from_the_environment(server: FakeServer) -> None:
    server.answer("GET", "/me", 200, ME)
    result = invoke("whoami", env={"ASSAY_URL": "http://elsewhere:9000", "ASSAY_TOKEN": "envtok"})
    assert result.exit_code == 0
    assert str(server.requests[0].url) == "http://elsewhere:9000/api/v1/me"
    assert server.requests[0].headers["Authorization"] == "Bearer envtok"


def test_unauthorized_without_a_token_says_how_to_give_one(server: FakeServer) -> None:
    server.answer("GET", "/me", 401, {"error": "unauthorized", "detail": "A token is required."})
    result = invoke("whoami")
    assert result.exit_code == 1
    assert "A token is required." in result.stderr
    assert "ASSAY_TOKEN" in result.stderr


def test_list_passes_limit_and_offset_and_tells_about_more(server: FakeServer) -> None:
    server.answer("GET", "/vendors", 200, page(VENDOR, count=30))
    result = invoke("vendor", "list", "--limit", "1", "--offset", "10", "--token", "t")
    assert result.exit_code == 0
    assert dict(server.requests[0].url.params) == {"limit": "1", "offset": "10"}
    assert "11-11 of 30" in result.stdout and "--offset 11" in result.stdout


def test_a_limit_over_the_maximum_is_a_usage_error(server: FakeServer) -> None:
    result = invoke("vendor", "list", "--limit", "501")
    assert result.exit_code == 2
    assert server.requests == []


def test_a_refusal_with_json_prints_the_error_document(server: FakeServer) -> None:
    body = {"error": "conflict", "detail": "The model acme/chest-xray exists.", "problems": []}
    server.answer("POST", "/models", 409, body)
    result = invoke("model", "create", "chest-xray", "--json", "--token", "t")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {**body, "status": 409}


def test_not_found_exits_1(server: FakeServer) -> None:
    result = invoke("version", "show", "nope", "--token", "t")
    assert result.exit_code == 1
    assert "No route /versions/nope." in result.stderr


def test_a_server_failure_exits_2(server: FakeServer) -> None:
    server.answer("GET", "/me", 500, {"error": "internal_error", "detail": "Boom."})
    result = invoke("whoami", "--token", "t")
    assert result.exit_code == 2
    assert "Boom." in result.stderr


def test_an_unreachable_server_exits_2_and_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = invoke("whoami", "--url", url, "--token", "t")
    assert result.exit_code == 2
    assert url in result.stderr and "ASSAY_URL" in result.stderr


# What a server may hold from before names were checked (or send, if it is older): terminal
# escapes that clear the screen and set the window title, BEL, NUL, a right-to-left override,
# and Rich markup that must be printed as it is, not interpreted.
HOSTILE = "evil\x1b[2J\x1b]0;pwned\x07\u202egpj.exe [bold red]ok[/bold red]\x00\x9b1m"


SHOWN = "evil\\x1b[2J\\x1b]0;pwned\\x07\\u202egpj.exe [bold red]ok[/bold red]\\x00\\x9b1m"


BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def assert_no_raw_control(text: str) -> None:
    """Nothing in `text` but printable characters, spaces and newlines."""
    import unicodedata

    raw = [
        f"U+{ord(c):04X}"
        for c in text
        if c != "\n" and (unicodedata.category(c) == "Cc" or c in BIDI)
    ]
    assert raw == [], raw


HOSTILE_VERSION = {**VERSION, "version_label": HOSTILE, "submitted_by": HOSTILE}


HOSTILE_MODEL = {**MODEL, "name": HOSTILE, "description": "line one\nline two " + HOSTILE}


HOSTILE_VENDOR = {**VENDOR, "name": HOSTILE, "display_name": HOSTILE}


HOSTILE_TOKEN = {**TOKEN, "name": HOSTILE}


@pytest.mark.parametrize(
    ("args", "method", "path", "body"),
    [
        (["versions", MODEL_ID], "GET", f"/models/{MODEL_ID}/versions", page(HOSTILE_VERSION)),
        (["version", "show", VERSION_ID], "GET", f"/versions/{VERSION_ID}", HOSTILE_VERSION),
        (["model", "list"], "GET", "/models", page(HOSTILE_MODEL)),
        (["model", "show", MODEL_ID], "GET", f"/models/{MODEL_ID}", HOSTILE_MODEL),
        (["vendor", "list"], "GET", "/vendors", page(HOSTILE_VENDOR)),
        (["vendor", "create", "acme"], "POST", "/vendors", HOSTILE_VENDOR),
        (["model", "create", "m"], "POST", "/models", HOSTILE_MODEL),
        (["token", "list"], "GET", "/tokens", page(HOSTILE_TOKEN)),
        (["token", "revoke", "t-2"], "DELETE", "/tokens/t-2", HOSTILE_TOKEN),
        (["whoami"], "GET", "/me", {**ME, "name": HOSTILE, "vendor_name": HOSTILE}),
    ],
)
def test_names_from_the_server_are_printed_with_visible_escapes(
    server: FakeServer, args: list[str], method: str, path: str, body: Any
) -> None:
    server.answer(method, path, 200, body)
    result = invoke(*args, "--token", "t")
    assert result.exit_code == 0, result.output
    assert_no_raw_control(result.stdout)
    assert_no_raw_control(result.stderr)
    assert SHOWN in result.stdout


def test_a_description_keeps_its_lines_visible_as_escapes(server: FakeServer) -> None:
    server.answer("GET", f"/models/{MODEL_ID}", 200, HOSTILE_MODEL)
    result = invoke("model", "show", MODEL_ID, "--token", "t")
    assert result.exit_code == 0, result.output
    assert "line one\\nline two" in result.stdout


def test_the_submit_summary_escapes_the_label(
    server: FakeServer, submission: tuple[Path, Path]
) -> None:
    artifact, manifest = submission
    server.answer("POST", f"/models/{MODEL_ID}/versions", 201, HOSTILE_VERSION)
    result = invoke(
        "submit", MODEL_ID, "--artifact", str(artifact), "--manifest", str(manifest), "--token", "t"
    )
    assert result.exit_code == 0, result.output
    assert_no_raw_control(result.stdout)
    assert f"({SHOWN})" in result.stdout


def test_an_error_from_the_server_is_printed_escaped(server: FakeServer) -> None:
    problems = [{"path": "name\x1b[1m", "message": "bad " + HOSTILE}]
    body = {"error": "invalid", "detail": "refused " + HOSTILE, "problems": problems}
    server.answer("POST", "/models", 422, body)
    result = invoke("model", "create", "x", "--token", "t")
    assert result.exit_code == 1
    assert_no_raw_control(result.stderr)
    assert "refused " + SHOWN in result.stderr
    assert "name\\x1b[1m: bad " + SHOWN in result.stderr


@pytest.mark.parametrize(
    ("args", "path", "body"),
    [
        (["versions", MODEL_ID], f"/models/{MODEL_ID}/versions", page(HOSTILE_VERSION)),
        (["model", "list"], "/models", page(HOSTILE_MODEL)),
    ],
)
def test_json_output_escapes_and_round_trips_the_names(
    server: FakeServer, args: list[str], path: str, body: Any
) -> None:
    server.answer("GET", path, 200, body)
    result = invoke(*args, "--json", "--token", "t")
    assert result.exit_code == 0, result.output
    assert_no_raw_control(result.stdout)
    assert all(ord(c) < 128 for c in result.stdout)
    assert (
        json.loads(result.stdout)["data"][0]["version_label" if args[0] == "versions" else "name"]
        == HOSTILE
    )


def test_a_local_command_without_the_server_installed_exits_2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "registry.app", None)  # makes the import fail
    result = invoke("serve")
    assert result.exit_code == 2
    assert "assay[server]" in result.stderr


def test_any_kind_of_refused_document_prints_its_problems_and_its_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from validators.problems import InputInvalid, Problem

    class ProtocolInvalid(InputInvalid):
        document = "the acquisition protocol"
        code = "invalid_acquisition_protocol"

    refusal = ProtocolInvalid(
        [Problem(path="rows.2.kvp", message="expected a number"), Problem(path="", message="x")],
        source="protocol.yaml",
    )
    with pytest.raises(typer.Exit) as exited:
        registry.cli.common.fail_invalid(refusal, code=2, json_output=True)
    assert exited.value.exit_code == 2
    out, err = capsys.readouterr()
    assert json.loads(out) == {
        "status": None,
        "error": "invalid_acquisition_protocol",
        "detail": "protocol.yaml is not a valid acquisition protocol: 2 problem(s)",
        "problems": [
            {"path": "rows.2.kvp", "message": "expected a number"},
            {"path": "", "message": "x"},
        ],
    }
    assert "protocol.yaml is not a valid acquisition protocol: 2 problem(s)" in err
    assert "  rows.2.kvp: expected a number\n  x\n" in err


CLI_PACKAGE = Path(registry.cli.__file__).parent


CLI_MODULES = sorted(f"registry.cli.{path.stem}" for path in CLI_PACKAGE.glob("[!_]*.py"))


def test_importing_the_cli_pulls_in_no_server_code() -> None:
    code = (
        "import json, sys, registry.cli\n"
        "heavy = {'fastapi', 'sqlmodel', 'sqlalchemy', 'torch', 'uvicorn', 'numpy', 'validators',"
        " 'rich', 'httpx', 'pydantic'}\n"
        "print(json.dumps({\n"
        "    'heavy': [m for m in sys.modules if m.split('.')[0] in heavy"
        " or (m.startswith('registry.') and not m.startswith('registry.cli'))],\n"
        "    'cli': sorted(m for m in sys.modules if m.startswith('registry.cli.')),\n"
        "}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    loaded = json.loads(result.stdout)
    assert loaded["heavy"] == []
    # Every module of the package is loaded by `assay --help`, so the check above covers each.
    assert loaded["cli"] == CLI_MODULES


# Standard modules that cost next to nothing to import; anything else waits inside a function.
_LIGHT_STANDARD_MODULES = frozenset(
    {
        "__future__",
        "collections",
        "contextlib",
        "datetime",
        "enum",
        "json",
        "pathlib",
        "sys",
        # Loaded by the interpreter itself before any of our code runs: importing them is free.
        "os",
        "time",
        "typing",
    }
)


def _module_level_imports(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Gives (line, module) for each import that runs when the module is imported.

    Function bodies run later and `if TYPE_CHECKING:` blocks never run, so both are skipped.
    """
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, node.module or ""
        else:
            pending.extend(ast.iter_child_nodes(node))


def test_the_import_reader_sees_what_runs_at_import_and_only_that() -> None:
    source = (
        "import typer\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import rich\n"
        "def command() -> None:\n    import httpx\n"
        "class Scale:\n    import numpy\n"
        "try:\n    import fastapi\nexcept ImportError:\n    pass\n"
    )
    found = sorted(module for _, module in _module_level_imports(ast.parse(source)))
    assert found == ["fastapi", "numpy", "typer", "typing"]


@pytest.mark.parametrize("path", sorted(CLI_PACKAGE.glob("*.py")), ids=lambda path: path.name)
def test_every_cli_module_imports_only_typer_at_module_level(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    heavy = [
        f"{path.name}:{line} imports {module}"
        for line, module in _module_level_imports(tree)
        if module.split(".")[0] not in {*_LIGHT_STANDARD_MODULES, "typer"}
        and module != "registry.cli"
        and not module.startswith("registry.cli.")
    ]
    assert heavy == [], "import these inside the functions that use them"


def test_assay_help_exits_0() -> None:
    assay = Path(sys.executable).parent / "assay"
    if not assay.exists():
        pytest.skip(f"the assay entry point is not installed next to {sys.executable}")
    result = subprocess.run([str(assay), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "submit" in result.stdout and "whoami" in result.stdout
