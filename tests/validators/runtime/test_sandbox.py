"""Tests of the sandbox: the child's environment, its limits, the answer protocol, killing."""

from __future__ import annotations

import ast
import contextlib
import json
import os
import resource
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest

from validators.runtime import sandbox


def test_child_environment_holds_no_parent_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSAY_SECRET_KEY", "not-for-children")
    environment = sandbox.child_environment()
    assert "ASSAY_SECRET_KEY" not in environment
    assert environment["OMP_NUM_THREADS"] == "1"
    assert environment["HOME"] == "/nonexistent"


def test_a_relative_pythonpath_entry_is_made_absolute_for_the_child(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The child works in its own empty directory: `PYTHONPATH=.` must still mean the parent's.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", f".{os.pathsep}lib")
    entries = sandbox.child_environment()["PYTHONPATH"].split(os.pathsep)
    assert entries[1:] == [str(tmp_path), str(tmp_path / "lib")]
    assert all(os.path.isabs(entry) for entry in entries)


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


PROBES = "tests.validators.runtime.probes"


def _full_sandbox_or_skip() -> None:
    _, why_not = sandbox._namespace_support()
    if why_not is not None or os.geteuid() != 0:
        pytest.skip(f"needs root and namespaces here: {why_not or 'not running as root'}")


def test_cpu_time_defaults_to_the_wall_clock_limit_plus_five_seconds() -> None:
    assert sandbox.SandboxLimits(wall_seconds=9.2).effective_cpu_seconds() == 15
    assert sandbox.SandboxLimits(wall_seconds=9.2, cpu_seconds=3).effective_cpu_seconds() == 3


def test_missing_namespaces_are_refused_naming_the_measure_and_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sandbox, "_namespace_support", lambda: ((), "unshare is not installed"))
    with pytest.raises(sandbox.SandboxUnavailable) as caught:
        sandbox.start(PROBES, ["identity"], limits=sandbox.SandboxLimits(wall_seconds=30))
    assert caught.value.measure == "network, mount and PID namespaces"
    assert "unshare is not installed" in str(caught.value)
    assert "ASSAY_SANDBOX_ALLOW_WEAKER" in str(caught.value)


def test_the_weaker_mode_runs_and_records_what_was_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sandbox, "_namespace_support", lambda: ((), "unshare is not installed"))
    limits = sandbox.SandboxLimits(wall_seconds=60)
    with sandbox.start(PROBES, ["identity"], limits=limits, allow_weaker=True) as child:
        child.stdin.close()
        report = json.loads(child.read_exactly(1) + child.stdout.read())
        assert child.wait().ok
    assert child.isolation is not None
    assert child.isolation.namespaces == ()
    assert "network, mount and PID namespaces" in child.isolation.weaker
    assert child.isolation.tmpfs_bytes is None
    assert report["inputs"] == []
    # Without a mount namespace the working directory is a fresh, empty one, removed afterwards.
    assert report["cwd"] != "/tmp" and not Path(report["cwd"]).exists()


def test_cuda_sets_no_address_space_limit_and_hands_the_device_cap_to_the_child() -> None:
    _full_sandbox_or_skip()
    limits = sandbox.SandboxLimits(wall_seconds=60, device_memory_bytes=3 * 1024**3)
    child_result = _run_probe_line(["limits"], limits=limits, device="cuda")
    assert child_result["address_space"] == resource.RLIM_INFINITY
    assert child_result["device_memory"] == str(3 * 1024**3)
    on_cpu = _run_probe_line(["limits"], limits=limits, device="cpu")
    assert on_cpu["address_space"] == limits.memory_bytes
    assert on_cpu["device_memory"] is None and on_cpu["cuda_visible"] == ""


def test_cuda_kills_the_group_past_the_resident_memory_cap() -> None:
    _full_sandbox_or_skip()
    limits = sandbox.SandboxLimits(wall_seconds=60, memory_bytes=160 * 1024**2)
    with sandbox.start(PROBES, ["grow", "1024"], limits=limits, device="cuda") as child:
        child.stdin.close()
        with contextlib.suppress(sandbox.SandboxTimeout):
            while child.read(65536):
                pass
        ended = child.wait()
    assert ended.killed_by == "memory"
    assert "resident memory" in ended.reason
    assert child.isolation is not None
    assert child.isolation.resident_memory_bytes == 160 * 1024**2
    assert "address_space_bytes" not in child.isolation.rlimits


def test_input_names_must_be_plain_file_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a plain file name"):
        sandbox.start(
            PROBES,
            ["identity"],
            limits=sandbox.SandboxLimits(wall_seconds=30),
            inputs={"../escape": tmp_path},
        )


def test_leaving_the_context_kills_a_running_child() -> None:
    _full_sandbox_or_skip()
    limits = sandbox.SandboxLimits(wall_seconds=60)
    with sandbox.start(PROBES, ["hang"], limits=limits) as child:
        pid = child.pid
        assert _live_members_of_group(pid) != []
    assert _live_members_of_group(pid) == []


def _live_members_of_group(group: int) -> list[int]:
    """Return the PIDs of the processes of process group `group` that have not ended."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            # Fields after the command name (which may hold spaces): state, ppid, pgrp.
            state, _, pgrp = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
            if int(pgrp) == group and state not in ("Z", "X"):
                members.append(int(entry.name))
    return members


def test_run_module_records_the_isolation() -> None:
    child = sandbox.run_module("validators.runtime.sandbox", [], b"", timeout_s=60)
    assert child.isolation is not None
    assert child.isolation.rlimits["cpu_seconds"] == 65
    recorded = json.loads(json.dumps(child.isolation.as_dict()))
    assert recorded["rlimits"]["cpu_seconds"] == 65
    assert recorded["device"] == "cpu" and isinstance(recorded["weaker"], list)


def _run_probe_line(
    args: list[str], *, limits: sandbox.SandboxLimits, device: sandbox.Device
) -> dict[str, Any]:
    with sandbox.start(PROBES, args, limits=limits, device=device) as child:
        child.stdin.close()
        output = b""
        while chunk := child.read(65536):
            output += chunk
        assert child.wait().ok, child.stderr_text()
    answer: dict[str, Any] = json.loads(output)
    return answer
