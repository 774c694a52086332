"""Sandbox probes (issue 10, Faults): hostile payloads run through `sandbox.start`, as models are.

Each probe is blocked or killed with a reason the parent reports, and the test process carries on.
A probe that cannot run here is skipped with its reason (see `pytest -rs`).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from validators.runtime import sandbox

PROBES = "tests.validators.runtime.probes"
REPO = Path(__file__).resolve().parents[3]
MIB = 1024**2


def _require_full_sandbox() -> None:
    """Skip, saying why, where the sandbox cannot apply all its measures."""
    _, why_not = sandbox._namespace_support()
    if why_not is not None:
        pytest.skip(f"the sandbox's namespaces are unavailable here: {why_not}")
    if os.geteuid() != 0:
        pytest.skip("the switch to `nobody` needs the tests to run as root")


@pytest.fixture(autouse=True)
def full_sandbox() -> Iterator[None]:
    _require_full_sandbox()
    limits_before = {
        which: resource.getrlimit(which) for which in (resource.RLIMIT_AS, resource.RLIMIT_NPROC)
    }
    yield
    # The test process itself is never limited by what the child had.
    assert {which: resource.getrlimit(which) for which in limits_before} == limits_before


@dataclass(frozen=True)
class ProbeRun:
    ended: sandbox.SandboxExit
    report: dict[str, Any] | None
    stderr: str
    isolation: sandbox.Isolation


def run_probe(
    *args: str,
    limits: sandbox.SandboxLimits | None = None,
    hide: tuple[Path, ...] = (),
    inputs: dict[str, Path] | None = None,
) -> ProbeRun:
    """Return how the probe ended and its report, run through the same primitive as models."""
    limits = limits or sandbox.SandboxLimits(wall_seconds=60, memory_bytes=2 * 1024**3)
    with sandbox.start(PROBES, args, limits=limits, hide=hide, inputs=inputs or {}) as child:
        child.stdin.close()
        output = bytearray()
        # At the deadline a read either sees the end of output (the watchdog killed the group)
        # or raises SandboxTimeout (it got there first); either way the child is dead then.
        with contextlib.suppress(sandbox.SandboxTimeout):
            while chunk := child.read(65536):
                output.extend(chunk)
        ended = child.wait()
        assert child.isolation is not None
        lines = bytes(output).strip().splitlines()
        report = json.loads(lines[-1]) if lines else None
        return ProbeRun(ended, report, child.stderr_text(), child.isolation)


def test_the_child_runs_as_nobody_in_its_own_namespaces(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"w")
    run = run_probe("identity", inputs={"weights.bin": tmp_path / "weights.bin"})
    assert run.ended.ok, run.stderr
    assert run.report is not None
    assert (run.report["uid"], run.report["gid"], run.report["groups"]) == (65534, 65534, [])
    # PID 1 is the bootstrap; the target sees only itself and it, never the test process.
    assert (run.report["pid"], run.report["ppid"], run.report["pids"]) == (2, 1, [1, 2])
    assert run.report["interfaces"] == {"lo": False}
    assert run.report["cwd"] == "/tmp"
    assert run.report["inputs"] == ["weights.bin"]
    assert run.isolation.namespaces == ("net", "mount", "pid")
    assert run.isolation.user == "nobody (65534)"
    assert run.isolation.weaker == ()


@pytest.mark.parametrize("host", ["127.0.0.1", "169.254.169.254"])
def test_network_connections_are_blocked(host: str) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.5)
        run = run_probe("connect", host, str(listener.getsockname()[1] if host[0] == "1" else 80))
        assert run.report is not None
        assert run.report["connected"] is False
        assert "unreachable" in run.report["error"].lower()
        if host == "127.0.0.1":
            with pytest.raises(TimeoutError):
                listener.accept()


@pytest.fixture
def assay_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A readable ASSAY_HOME with a secret, outside /tmp so only the hiding mount hides it."""
    home = Path(tempfile.mkdtemp(prefix=".probe-assay-home-", dir=REPO))
    try:
        home.chmod(0o755)
        (home / "secret.txt").write_text("top secret")
        (home / "secret.txt").chmod(0o644)
        monkeypatch.setenv("ASSAY_HOME", str(home))
        yield home
    finally:
        shutil.rmtree(home)


def test_assay_home_is_hidden(assay_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = assay_home / "secret.txt"
    run = run_probe("read", str(secret))
    assert run.report == {"read": False, "error": run.report and run.report["error"]}
    assert "FileNotFoundError" in run.report["error"]
    assert str(assay_home) in run.isolation.hidden
    # Without the hiding the same file is readable: the mount is what protects it.
    monkeypatch.delenv("ASSAY_HOME")
    control = run_probe("read", str(secret))
    assert control.report == {"read": True, "text": "top secret"}


def test_paths_named_in_hide_are_hidden(assay_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASSAY_HOME")
    run = run_probe("read", str(assay_home / "secret.txt"), hide=(assay_home,))
    assert run.report is not None and run.report["read"] is False


def test_the_parent_environment_is_not_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSAY_SECRET_KEY", "not-for-children")
    run = run_probe("environment", str(os.getpid()))
    assert run.report is not None
    assert "ASSAY_SECRET_KEY" not in run.report["environ"]
    assert set(run.report["environ"]) <= set(sandbox.child_environment()) | {"LC_CTYPE"}
    # The test process does not exist in the child's PID namespace.
    assert run.report["parent_environ"] is None
    assert "FileNotFoundError" in run.report["error"]


def test_allocating_20_gib_fails_under_the_address_space_limit() -> None:
    run = run_probe("allocate", "20")
    assert run.report == {"allocated": 0, "error": "MemoryError: "}
    assert run.isolation.rlimits["address_space_bytes"] == 2 * 1024**3


def test_an_endless_loop_is_killed_at_the_wall_clock_limit() -> None:
    limits = sandbox.SandboxLimits(wall_seconds=1.5, cpu_seconds=60)
    run = run_probe("spin", limits=limits)
    assert run.ended.killed_by == "timeout"
    assert run.ended.returncode == -signal.SIGKILL
    assert "wall-clock limit of 1.5 s" in run.ended.reason


def test_an_endless_loop_is_killed_at_the_cpu_time_limit() -> None:
    limits = sandbox.SandboxLimits(wall_seconds=60, cpu_seconds=1)
    run = run_probe("spin", limits=limits)
    assert run.ended.killed_by is None
    assert run.ended.returncode == -signal.SIGXCPU
    assert "SIGXCPU" in run.ended.reason


def test_a_hung_child_that_ignores_sigterm_never_hangs_the_caller() -> None:
    limits = sandbox.SandboxLimits(wall_seconds=1.0)
    with sandbox.start(PROBES, ["hang"], limits=limits) as child:
        with pytest.raises(sandbox.SandboxTimeout, match="wall-clock limit"):
            child.read(1)
        ended = child.wait()
    assert ended.killed_by == "timeout"


def test_forking_1000_processes_stops_at_the_process_limit() -> None:
    limits = sandbox.SandboxLimits(wall_seconds=60, processes=32)
    run = run_probe("fork", "1000", limits=limits)
    assert run.report is not None
    assert run.report["started"] < 32
    assert "BlockingIOError" in run.report["error"]
    # The sleeping children died with the namespace's init when the probe ended.
    assert run.ended.ok


def test_writing_2_gib_in_many_files_fills_only_the_private_tmpfs() -> None:
    limits = sandbox.SandboxLimits(wall_seconds=60, tmpfs_bytes=16 * MIB)
    run = run_probe("write", "2048", "1", limits=limits)
    assert run.report is not None
    assert run.report["written"] <= 16 * MIB
    assert "No space left on device" in run.report["error"]
    assert run.isolation.tmpfs_bytes == 16 * MIB


def test_one_large_file_stops_at_the_file_size_limit() -> None:
    limits = sandbox.SandboxLimits(wall_seconds=60, file_size_bytes=2 * MIB)
    run = run_probe("write", "2048", "4", limits=limits)
    assert run.report is not None
    assert run.report["written"] <= 2 * MIB
    assert "File too large" in run.report["error"]


def test_nothing_outside_the_tmpfs_is_writable() -> None:
    target = REPO / ".probe-escape.txt"
    run = run_probe("write_outside", str(target))
    assert run.report is not None and run.report["written"] is False
    # Refused either way: by permission (nobody may not write the checkout) or, where the
    # checkout lies under a path the sandbox binds back read-only (a clone in /tmp), by EROFS.
    error = run.report["error"]
    assert "PermissionError" in error or "[Errno 30] Read-only file system" in error, error
    assert not target.exists()


def test_a_segmentation_fault_is_reported_as_sigsegv() -> None:
    run = run_probe("segfault")
    assert run.ended.returncode == -signal.SIGSEGV
    assert "SIGSEGV" in run.ended.reason


def test_the_pipes_carry_a_framed_protocol() -> None:
    limits = sandbox.SandboxLimits(wall_seconds=60)
    with sandbox.start(PROBES, ["echo"], limits=limits) as child:
        for body in (b"tensor", b"x" * 300_000):
            child.stdin.write(len(body).to_bytes(4, "big") + body)
            child.stdin.flush()
            assert child.read_exactly(4 + len(body)) == len(body).to_bytes(4, "big") + body
        child.stdin.write(b"\0\0\0\0")
        child.stdin.close()
        assert child.read_exactly(4) == b"\0\0\0\0"
        assert child.wait().ok


def test_hiding_the_runtime_itself_is_refused_with_what_to_do() -> None:
    limits = sandbox.SandboxLimits(wall_seconds=60)
    with pytest.raises(sandbox.SandboxUnavailable, match="move the data out of it") as caught:
        sandbox.start(PROBES, ["identity"], limits=limits, hide=(REPO,))
    assert caught.value.measure == "hidden paths"


def _namespace_members(namespace: str) -> list[int]:
    """Return the host PIDs of the processes in the PID namespace `namespace`."""
    members = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and os.readlink(entry / "ns" / "pid") == namespace:
                members.append(int(entry.name))
    return members


def test_a_grandchild_in_its_own_session_dies_with_the_namespace() -> None:
    limits = sandbox.SandboxLimits(wall_seconds=60)
    with sandbox.start(PROBES, ["escape"], limits=limits) as child:
        children = Path(f"/proc/{child.pid}/task/{child.pid}/children").read_text().split()
        namespace = os.readlink(f"/proc/{children[0]}/ns/pid")
        assert namespace != os.readlink("/proc/self/ns/pid")
        child.stdin.close()
        report = json.loads(child.read_exactly(1) + child.stdout.read())
        assert report["left_behind"] > 2
        assert child.wait().ok
    assert _namespace_members(namespace) == []


def test_descriptors_named_in_pass_fds_reach_the_module() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"shared tensors")
    os.close(write_end)
    limits = sandbox.SandboxLimits(wall_seconds=60)
    try:
        with sandbox.start(
            PROBES, ["read_fd", str(read_end)], limits=limits, pass_fds=(read_end,)
        ) as child:
            child.stdin.close()
            assert json.loads(child.stdout.read()) == {"text": "shared tensors"}
            assert child.wait().ok
    finally:
        os.close(read_end)


def test_nobody_imports_numpy_onnxruntime_and_validators_from_the_venv() -> None:
    pytest.importorskip("onnxruntime")
    modules = ("numpy", "onnxruntime", "validators.manifest")
    run = run_probe("imports", *modules)
    assert run.ended.ok, run.stderr
    assert run.report is not None and set(run.report["versions"]) == set(modules)
    assert run.isolation.user == "nobody (65534)"


@pytest.mark.slow
def test_nobody_imports_torch_and_monai_from_the_venv() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    limits = sandbox.SandboxLimits(wall_seconds=300)
    run = run_probe("imports", "torch", "monai", limits=limits)
    assert run.ended.ok, run.stderr
    assert run.report is not None and set(run.report["versions"]) == {"torch", "monai"}


def test_the_child_cannot_undo_the_hiding_mounts(assay_home: Path) -> None:
    run = run_probe("umount", str(assay_home))
    assert run.report == {"unmounted": False, "error": "Operation not permitted"}


def test_started_without_root_the_child_leaves_its_capabilities_behind(
    assay_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Run as root, pretend not to be: the bootstrap takes the non-root path (no switch to
    # nobody) and the child moves into a user namespace of its own instead.
    monkeypatch.setattr(sandbox, "_started_as_root", lambda: False)
    limits = sandbox.SandboxLimits(wall_seconds=60)
    with pytest.raises(sandbox.SandboxUnavailable) as caught:
        sandbox.start(PROBES, ["identity"], limits=limits)
    assert caught.value.measure == "a switch to an unprivileged user"
    with sandbox.start(
        PROBES, ["umount", str(assay_home)], limits=limits, allow_weaker=True
    ) as child:
        child.stdin.close()
        report = json.loads(child.stdout.read())
        assert child.wait().ok
    assert report == {"unmounted": False, "error": "Operation not permitted"}
    assert child.isolation is not None
    assert "user namespace of its own" in child.isolation.user
    assert child.isolation.weaker == ("a switch to an unprivileged user",)
