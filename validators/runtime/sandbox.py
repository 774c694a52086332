"""The sandbox: run a `validators` module in a resource-limited child process and read its answer.

The parent starts `python -s -m MODULE ARGS...` in a new session with a minimal environment (no
secrets, one thread per math library), working directory `/` and no inherited descriptors, feeds
its stdin, and kills the whole process group when it runs past its timeout or the parent is
interrupted. The child caps its own address space, CPU time, file writes and core dumps with
`apply_limits` before it reads any input, keeps its real stdout for its answer (`answer_stream`)
and writes exactly one JSON object line there (`write_answer`); the parent reads it back with
`read_answer`. Used by static intake (`validators.runtime.intake`), and meant for the runner and
the speed protocol.

Standard library only: the service imports this module at start-up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "DEFAULT_MAX_FILE_WRITE_BYTES",
    "MAX_ANSWER_BYTES",
    "ChildResult",
    "answer_stream",
    "apply_limits",
    "child_environment",
    "kill_group",
    "read_answer",
    "run_module",
    "signal_name",
    "write_answer",
]

MAX_ANSWER_BYTES = 16 * 1024 * 1024
"""A child's stdout longer than this is not read as an answer."""
DEFAULT_MAX_FILE_WRITE_BYTES = 1024 * 1024
"""The child's default cap on the size of any file it writes."""


@dataclass(frozen=True)
class ChildResult:
    """How a child process ended: its exit status (negative: killed by that signal) and output."""

    returncode: int
    stdout: bytes
    stderr: bytes


def run_module(module: str, args: list[str], stdin: bytes, *, timeout_s: float) -> ChildResult:
    """Run `python -s -m module *args` in a sandboxed child, feed it `stdin`, wait for its end.

    On timeout the child's process group is killed and drained, and `subprocess.TimeoutExpired`
    is raised; on any other exception (such as KeyboardInterrupt) the group is killed too.
    """
    command = [sys.executable, "-s", "-m", module, *args]
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_environment(),
        cwd="/",
        start_new_session=True,
        close_fds=True,
    )
    try:
        stdout, stderr = process.communicate(input=stdin, timeout=timeout_s)
    except BaseException:
        kill_group(process)
        process.communicate()
        raise
    return ChildResult(process.returncode, stdout, stderr)


def child_environment() -> dict[str, str]:
    """Return a minimal environment: where to find Python packages, no secrets, one thread."""
    import validators

    package_root = str(Path(validators.__file__).resolve().parent.parent)
    python_path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
    return {
        "PATH": os.defpath,
        "PYTHONPATH": python_path,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "PYTHONIOENCODING": "utf-8",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": "/nonexistent",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "NO_PROXY": "*",
    }


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill the child's whole process group (it leads its own session), or the child alone."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()


def signal_name(number: int) -> str:
    """Return the name of signal `number` (`SIGKILL`), or `signal N` for an unknown one."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def read_answer(stdout: bytes) -> Any:
    """Return the JSON value on the last line of a child's stdout, or None if there is none."""
    lines = stdout.strip().splitlines()
    answer: Any = None
    if lines and len(stdout) <= MAX_ANSWER_BYTES:
        try:
            answer = json.loads(lines[-1])
        except ValueError:
            answer = None
    return answer


def apply_limits(
    memory_limit_bytes: int,
    cpu_seconds: int,
    *,
    max_file_write_bytes: int = DEFAULT_MAX_FILE_WRITE_BYTES,
) -> None:
    """Cap this (child) process's address space, CPU time, file writes and core dumps."""
    import resource

    # RLIMIT_AS counts every mapping (heap, mmap'd files, thread stacks), so no allocation path
    # escapes it, unlike RLIMIT_DATA (private data only) or RLIMIT_RSS (not enforced by Linux).
    # Address space is larger than resident memory: importing torch 2.13 + monai 1.6 on CPU peaks
    # near 1.2 GiB of it, a full-size DenseNet121 safetensors intake needs under 2 GiB and fails
    # cleanly at 1 GiB; ONNX intake (no torch) needs far less. The 8 GiB default leaves headroom.
    resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # Intake only reads. torch probes the temporary directory with a tiny write, so the cap is
    # small rather than zero; a larger write fails with EFBIG (Python ignores SIGXFSZ).
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_write_bytes, max_file_write_bytes))


def answer_stream() -> TextIO:
    """In the child: return a stream on the real stdout, and send later prints to stderr.

    Libraries sometimes print; the real stdout carries the one JSON answer only.
    """
    stream = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return stream


def write_answer(stream: TextIO, answer: dict[str, Any]) -> None:
    """In the child: write the answer as one JSON line and flush it."""
    stream.write(json.dumps(answer) + "\n")
    stream.flush()
