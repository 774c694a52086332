"""The sandbox: run a `validators` module in an isolated, resource-limited child process.

`start` begins a child and gives back a `Sandboxed` context manager with the child's binary stdin
and stdout (the caller runs its own protocol over them), its bounded stderr, `wait`, `kill` and the
`Isolation` measures that applied. The child is started fresh (`subprocess`, never a fork of this
process) through util-linux `unshare` in new network, mount and PID namespaces; the bootstrap
`validators.runtime.sandbox_boot` makes the mounts private, gives the child a size-capped tmpfs
`/tmp` as its working directory with the input files copied in, hides ASSAY_HOME and every path in
`hide` under empty read-only tmpfs, sets the resource limits, drops to `nobody` and runs the module
with `runpy`. The environment is empty but for what Python needs (`child_environment`). A watchdog
kills the whole process group at the wall-clock limit, so the parent never hangs.

`run_module` is the one-shot use (write stdin, read stdout, wait), for static intake
(`validators.runtime.intake`); `answer_stream`, `write_answer` and `read_answer` are its one-line
JSON answer protocol. Where a measure cannot be set up `start` raises `SandboxUnavailable`, unless
`allow_weaker=True`, in which case `Isolation.weaker` names what was skipped.

Standard library only: the service imports this module at start-up.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TextIO

from validators.runtime.sandbox_process import (
    NOBODY,
    Sandboxed,
    group_resident_bytes,
    kill_group,
    signal_name,
)
from validators.runtime.sandbox_types import (
    Device,
    Isolation,
    SandboxExit,
    SandboxLimits,
    SandboxTimeout,
    SandboxUnavailable,
)

__all__ = [
    "DEFAULT_MAX_FILE_WRITE_BYTES",
    "INPUT_DIR",
    "MAX_ANSWER_BYTES",
    "NOBODY",
    "ChildResult",
    "Device",
    "Isolation",
    "SandboxExit",
    "SandboxLimits",
    "SandboxTimeout",
    "SandboxUnavailable",
    "Sandboxed",
    "answer_stream",
    "apply_limits",
    "child_environment",
    "group_resident_bytes",
    "kill_group",
    "read_answer",
    "run_module",
    "signal_name",
    "start",
    "write_answer",
]

MAX_ANSWER_BYTES = 16 * 1024 * 1024
"""A child's stdout longer than this is not read as an answer."""
DEFAULT_MAX_FILE_WRITE_BYTES = 1024 * 1024
"""The child's default cap on the size of any file it writes."""
INPUT_DIR = "inputs"
"""Where the input files are, relative to the child's working directory: `inputs/NAME`."""
_INPUT_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
BOOT_MODULE = "validators.runtime.sandbox_boot"
NAMESPACE_FLAGS = ("--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc")


@dataclass(frozen=True)
class ChildResult:
    """How a child process ended: its exit status (negative: killed by that signal) and output."""

    returncode: int
    stdout: bytes
    stderr: bytes
    isolation: Isolation | None = None
    killed_by: str | None = None


@functools.lru_cache(maxsize=1)
def _namespace_support() -> tuple[tuple[str, ...], str | None]:
    """Return the `unshare` command that works here, or () and the reason none does."""
    unshare = shutil.which("unshare", path=os.defpath + ":/usr/bin:/bin")
    if unshare is None:
        return (), "util-linux `unshare` is not installed"
    flags = NAMESPACE_FLAGS if os.geteuid() == 0 else ("--map-root-user", *NAMESPACE_FLAGS)
    command = (unshare, *flags)
    try:
        probe = subprocess.run(
            [*command, "true"], capture_output=True, timeout=30, env={}, cwd="/", check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return (), f"`unshare` could not be run ({exc})"
    if probe.returncode != 0:
        detail = probe.stderr.decode("utf-8", "replace").strip()[-300:]
        return (), f"new namespaces were refused ({detail or f'status {probe.returncode}'})"
    return command, None


def start(
    module: str,
    args: Sequence[str],
    *,
    limits: SandboxLimits,
    hide: Sequence[Path] = (),
    inputs: Mapping[str, Path] = {},
    pass_fds: Sequence[int] = (),
    allow_weaker: bool = False,
    device: Device = "cpu",
) -> Sandboxed:
    """Return a started, isolated child running `python -m module *args`.

    `inputs` are copied into the child's working directory as `inputs/NAME` before it starts
    (the child cannot read the originals: they are root's, or hidden). `hide` adds to the paths
    always hidden (ASSAY_HOME). `pass_fds` are descriptors the module inherits under the same
    numbers (a shared-memory tensor buffer, say). With `device="cuda"` no address-space limit is
    set: `limits.memory_bytes` caps resident memory by polling, and `limits.device_memory_bytes`
    reaches the child as ASSAY_SANDBOX_DEVICE_MEMORY_BYTES for the runner to apply.

    Raises SandboxUnavailable when a measure cannot be set up and `allow_weaker` is False (or
    the child's set-up failed), SandboxTimeout when set-up outlasts `limits.wall_seconds`,
    ValueError for an input name that is not a plain file name, and OSError when an input file
    cannot be opened.
    """
    started = time.monotonic()
    weaker: list[str] = []
    command, why_not = _namespace_support()
    if why_not is not None:
        _refuse_unless(allow_weaker, "network, mount and PID namespaces", why_not, weaker)
    root = _started_as_root()
    if not root:
        _refuse_unless(
            allow_weaker,
            "a switch to an unprivileged user",
            "only root can start the child as `nobody`; started by another user the child "
            "keeps that user's file permissions (in a user namespace of its own, without "
            "capabilities over the mounts)",
            weaker,
        )
    hidden = _hidden_paths(hide)
    if not command and hidden:
        weaker.append("hidden paths")
    for name in inputs:
        if not _INPUT_NAME.fullmatch(name):
            raise ValueError(
                f"sandbox input name {name!r} is not a plain file name; use letters, digits, "
                "'.', '_' and '-' only, not starting with '.'"
            )
    input_fds: dict[str, int] = {}
    handed_over: list[int] = []
    workdir: Path | None = None
    try:
        for name, path in inputs.items():
            input_fds[name] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        if not command:
            workdir = Path(tempfile.mkdtemp(prefix="assay-sandbox-"))
            if root:
                os.chown(workdir, NOBODY, NOBODY)
        config_read, config_write = os.pipe()
        status_read, status_write = os.pipe()
        handed_over = [config_read, status_write, *input_fds.values()]
        config = {
            "module": module,
            "args": list(args),
            "hide": [str(p) for p in hidden],
            "keep": [str(_package_root())],
            "inputs": input_fds,
            "mount_namespace": bool(command),
            "parent_mount_namespace": os.readlink("/proc/self/ns/mnt"),
            "switch_user": root,
            "allow_weaker": allow_weaker,
            "workdir": str(workdir) if workdir else "/tmp",
            "tmpfs_bytes": limits.tmpfs_bytes,
            "tmpfs_inodes": limits.tmpfs_inodes,
            "limits": _rlimits(limits, device),
        }
        boot = [sys.executable, "-s", "-P", "-m", BOOT_MODULE, str(config_read), str(status_write)]
        try:
            process = subprocess.Popen(
                [*command, *boot],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=child_environment(device=device, limits=limits, workdir=str(workdir or "/tmp")),
                cwd="/",
                start_new_session=True,
                close_fds=True,
                pass_fds=(*handed_over, *pass_fds),
            )
        except BaseException:
            os.close(config_write)
            os.close(status_read)
            raise
    except BaseException:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    finally:
        # The child holds its own copies now; ours would keep the pipes from ever ending.
        for fd in {*handed_over, *input_fds.values()}:
            os.close(fd)
    sandboxed = Sandboxed(process, status_read, limits, started, device, workdir)
    try:
        # A bootstrap that died before reading its configuration is reported by _await_ready.
        with contextlib.suppress(BrokenPipeError), os.fdopen(config_write, "wb") as stream:
            stream.write(json.dumps(config).encode())
        sandboxed._await_ready(
            namespaces=("net", "mount", "pid", *(() if root else ("user",))) if command else (),
            weaker=tuple(weaker),
        )
    except BaseException:
        sandboxed.close()
        raise
    return sandboxed


def _started_as_root() -> bool:
    """Return whether this process may switch the child to `nobody` (it runs as root)."""
    return os.geteuid() == 0


def _refuse_unless(allow_weaker: bool, measure: str, detail: str, weaker: list[str]) -> None:
    """Raise SandboxUnavailable for `measure`, or note it as skipped in the weaker mode."""
    if not allow_weaker:
        raise SandboxUnavailable(measure, detail)
    weaker.append(measure)


def _hidden_paths(hide: Sequence[Path]) -> list[Path]:
    """Return the resolved paths to hide: ASSAY_HOME (when set) and `hide`."""
    paths = [Path(p) for p in hide]
    if os.environ.get("ASSAY_HOME"):
        paths.append(Path(os.environ["ASSAY_HOME"]))
    return sorted({p.expanduser().resolve() for p in paths})


def _package_root() -> Path:
    """Return the directory that holds the `validators` package."""
    import validators

    return Path(validators.__file__).resolve().parent.parent


def _rlimits(limits: SandboxLimits, device: Device) -> dict[str, int | None]:
    """Return the resource limits the bootstrap sets, by name."""
    return {
        "address_space_bytes": limits.memory_bytes if device == "cpu" else None,
        "cpu_seconds": limits.effective_cpu_seconds(),
        "file_size_bytes": limits.file_size_bytes,
        "processes": limits.processes,
        "open_files": limits.open_files,
    }


def run_module(
    module: str,
    args: list[str],
    stdin: bytes,
    *,
    timeout_s: float,
    limits: SandboxLimits | None = None,
    inputs: Mapping[str, Path] = {},
    hide: Sequence[Path] = (),
    allow_weaker: bool = True,
) -> ChildResult:
    """Run `python -m module *args` in the sandbox, feed it `stdin`, wait for its end.

    The weaker mode is allowed by default here: static intake parses and never executes the
    artifact, and must work where namespaces are refused; `ChildResult.isolation` records what
    applied. On timeout the child's process group is killed and `subprocess.TimeoutExpired` is
    raised; on any other exception (such as KeyboardInterrupt) the group is killed too.
    """
    limits = limits or SandboxLimits(wall_seconds=timeout_s)
    try:
        with start(
            module, args, limits=limits, inputs=inputs, hide=hide, allow_weaker=allow_weaker
        ) as child:
            writer = threading.Thread(target=_feed, args=(child.stdin, stdin), daemon=True)
            writer.start()
            stdout = bytearray()
            while chunk := child.read(65536):
                if len(stdout) <= MAX_ANSWER_BYTES:
                    stdout.extend(chunk)
            ended = child.wait()
            writer.join(timeout=5)
            if ended.killed_by == "timeout":
                raise subprocess.TimeoutExpired(module, timeout_s)
            return ChildResult(
                ended.returncode, bytes(stdout), child.stderr(), child.isolation, ended.killed_by
            )
    except SandboxTimeout:
        raise subprocess.TimeoutExpired(module, timeout_s) from None


def _feed(stream: IO[bytes], data: bytes) -> None:
    """Write `data` to the child's stdin and close it; a child that stops reading is fine."""
    try:
        stream.write(data)
        stream.close()
    except (BrokenPipeError, ValueError, OSError):
        pass  # the child ended or was killed before reading everything


def child_environment(
    *, device: Device = "cpu", limits: SandboxLimits | None = None, workdir: str = "/tmp"
) -> dict[str, str]:
    """Return a minimal environment: where to find Python packages, no secrets, one thread.

    Temporary and cache files (TMPDIR, matplotlib's, which monai imports) go to the child's
    private working directory `workdir`.
    """
    # The child starts in its own empty working directory, so a relative entry of the parent's
    # PYTHONPATH (`PYTHONPATH=.`) would point somewhere else there: entries are made absolute.
    inherited = [
        os.path.abspath(entry)
        for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep)
        if entry
    ]
    python_path = os.pathsep.join([str(_package_root()), *inherited])
    environment = {
        "PATH": os.defpath,
        "PYTHONPATH": python_path,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "PYTHONIOENCODING": "utf-8",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": "/nonexistent",
        "TMPDIR": workdir,
        "MPLCONFIGDIR": f"{workdir}/.matplotlib",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "NO_PROXY": "*",
    }
    if device == "cuda":
        # Which GPU the worker was given is the one thing of the parent's the child needs.
        if "CUDA_VISIBLE_DEVICES" in os.environ:
            environment["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
        if limits is not None and limits.device_memory_bytes is not None:
            environment["ASSAY_SANDBOX_DEVICE_MEMORY_BYTES"] = str(limits.device_memory_bytes)
    else:
        environment["CUDA_VISIBLE_DEVICES"] = ""
    return environment


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
