"""Tests of the sandbox: the child's environment, its limits, the answer protocol, killing."""

from __future__ import annotations

import ast
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest

from validators.runtime import sandbox


def test_child_environment_holds_no_parent_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSAY_SECRET_KEY", "not-for-children")
    environment = sandbox.child_environment()
    assert "ASSAY_SECRET_KEY" not in environment
    assert environment["OMP_NUM_THREADS"] == "1"
    assert environment["HOME"] == "/nonexistent"


def test_read_answer_takes_the_last_line() -> None:
    assert sandbox.read_answer(b'noise\n{"status": "ok"}\n') == {"status": "ok"}


def test_read_answer_is_none_without_json() -> None:
    assert sandbox.read_answer(b"") is None
    assert sandbox.read_answer(b"Traceback (most recent call last):\n") is None


def test_read_answer_ignores_an_oversized_output() -> None:
    stdout = b"x" * sandbox.MAX_ANSWER_BYTES + b'\n{"status": "ok"}\n'
    assert sandbox.read_answer(stdout) is None


def test_write_answer_writes_one_json_line() -> None:
    stream = StringIO()
    sandbox.write_answer(stream, {"status": "ok", "n": 1})
    assert stream.getvalue() == '{"status": "ok", "n": 1}\n'
    assert sandbox.read_answer(stream.getvalue().encode()) == {"status": "ok", "n": 1}


def test_signal_name_names_known_and_unknown_signals() -> None:
    assert sandbox.signal_name(9) == "SIGKILL"
    assert sandbox.signal_name(999) == "signal 999"


def test_run_module_returns_the_exit_status_and_output() -> None:
    child = sandbox.run_module("validators.runtime.sandbox", [], b"", timeout_s=60)
    assert child.returncode == 0
    assert child.stdout == b""


def test_run_module_kills_a_child_past_its_timeout() -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        sandbox.run_module("validators.runtime.intake", [], b"", timeout_s=0.01)


def test_no_import_cycle_inside_runtime() -> None:
    package = Path(sandbox.__file__).parent
    modules = {f"validators.runtime.{path.stem}": path for path in package.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {target for target in imported & modules.keys() if target != name}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for target in graph[start] - seen:
            if target == goal or reaches(target, goal, seen | {target}):
                return True
        return False

    assert [name for name in graph if reaches(name, name, set())] == []


def test_importing_the_sandbox_imports_only_the_standard_library() -> None:
    code = (
        "import sys, validators.runtime.sandbox; "
        "print(sorted(set(sys.modules) & {'pydantic', 'numpy', 'onnx', 'torch'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
