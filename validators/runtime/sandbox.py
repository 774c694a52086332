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
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TextIO

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
NOBODY = 65534
INPUT_DIR = "inputs"
"""Where the input files are, relative to the child's working directory: `inputs/NAME`."""
BOOT_MODULE = "validators.runtime.sandbox_boot"
NAMESPACE_FLAGS = ("--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc")
_POLL_SECONDS = 0.2


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
    always hidden (ASSAY_HOME). Raises SandboxUnavailable when a measure cannot be set up and
    `allow_weaker` is False, SandboxTimeout when set-up outlasts `limits.wall_seconds`, and
    OSError when an input file cannot be opened.
    """
    started = time.monotonic()
    weaker: list[str] = []
    command, why_not = _namespace_support()
    if why_not is not None:
        _refuse_unless(allow_weaker, "network, mount and PID namespaces", why_not, weaker)
    root = os.geteuid() == 0
    if not root:
        _refuse_unless(
            allow_weaker,
            "a switch to an unprivileged user",
            "only root can start the child as `nobody`; as another user the child keeps "
            "that user's rights (and, in its namespaces, may undo the hiding mounts)",
            weaker,
        )
    hidden = _hidden_paths(hide)
    if not command and hidden:
        weaker.append("hidden paths")
    input_fds = {name: os.open(path, os.O_RDONLY | os.O_CLOEXEC) for name, path in inputs.items()}
    workdir = None if command else Path(tempfile.mkdtemp(prefix="assay-sandbox-"))
    if workdir is not None and root:
        os.chown(workdir, NOBODY, NOBODY)
    config_read, config_write = os.pipe()
    status_read, status_write = os.pipe()
    config = {
        "module": module,
        "args": list(args),
        "hide": [str(p) for p in hidden],
        "keep": [str(_package_root())],
        "inputs": input_fds,
        "mount_namespace": bool(command),
        "parent_mount_namespace": os.readlink("/proc/self/ns/mnt"),
        "switch_user": root,
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
            env=child_environment(device=device, limits=limits),
            cwd="/",
            start_new_session=True,
            close_fds=True,
            pass_fds=(config_read, status_write, *input_fds.values(), *pass_fds),
        )
    finally:
        for fd in (config_read, status_write, *input_fds.values()):
            os.close(fd)
    with os.fdopen(config_write, "wb") as stream:
        stream.write(json.dumps(config).encode())
    sandboxed = Sandboxed(process, status_read, limits, started, device, workdir)
    try:
        sandboxed._await_ready(
            namespaces=("net", "mount", "pid", *(() if root else ("user",))) if command else (),
            weaker=tuple(weaker),
            allow_weaker=allow_weaker,
        )
    except BaseException:
        sandboxed.close()
        raise
    return sandboxed


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


class Sandboxed:
    """A running sandboxed child: its pipes, its isolation, and the means to wait for or end it.

    Leaving the context kills the child's whole process group if it still runs. Reads through
    `read` end at the wall-clock limit; a watchdog kills the group then, so plain reads on `stdout`
    see end-of-file no later than that either.
    """

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        status_fd: int,
        limits: SandboxLimits,
        started: float,
        device: Device,
        workdir: Path | None,
    ) -> None:
        self._process = process
        self._limits = limits
        self._device = device
        self._workdir = workdir
        self.deadline = started + limits.wall_seconds
        assert process.stdin is not None and process.stdout is not None
        self.stdin: IO[bytes] = process.stdin
        self.stdout: IO[bytes] = process.stdout
        self.isolation: Isolation | None = None
        self._killed_by: str | None = None
        self._kill_detail = ""
        self._exit_code: int | None = None
        self._messages: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._stderr = bytearray()
        self._done = threading.Event()
        self._threads = [
            threading.Thread(target=self._read_status, args=(status_fd,), daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._watch, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def pid(self) -> int:
        """Return the process id of the child's group leader (the `unshare` process)."""
        return self._process.pid

    def __enter__(self) -> Sandboxed:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _read_status(self, status_fd: int) -> None:
        """Collect the bootstrap's JSON status lines until it closes the pipe."""
        with os.fdopen(status_fd, "rb") as stream:
            for line in stream:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                with self._changed:
                    self._messages.append(message)
                    if "exit" in message:
                        self._exit_code = int(message["exit"])
                    self._changed.notify_all()
        with self._changed:
            self._messages.append({"closed": True})
            self._changed.notify_all()

    def _read_stderr(self) -> None:
        """Keep the last `limits.stderr_bytes` of the child's stderr."""
        assert self._process.stderr is not None
        fd = self._process.stderr.fileno()
        cap = self._limits.stderr_bytes
        for chunk in iter(lambda: os.read(fd, 65536), b""):
            self._stderr.extend(chunk)
            if len(self._stderr) > cap:
                del self._stderr[: len(self._stderr) - cap]

    def _watch(self) -> None:
        """Kill the group at the deadline, or past the resident-memory cap (CUDA)."""
        cap = self._resident_cap()
        while self._process.poll() is None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                self.kill(
                    "timeout",
                    f"it ran past its wall-clock limit of {self._limits.wall_seconds:g} s",
                )
                return
            if cap is not None:
                resident = group_resident_bytes(self._process.pid)
                if resident > cap:
                    self.kill(
                        "memory",
                        f"its resident memory ({resident} bytes) passed its limit of {cap} bytes",
                    )
                    return
            if self._done.wait(min(left, _POLL_SECONDS)):
                return

    def _resident_cap(self) -> int | None:
        """Return the resident-memory cap the parent polls for: on CUDA only."""
        return self._limits.memory_bytes if self._device == "cuda" else None

    def _await_ready(
        self, *, namespaces: tuple[str, ...], weaker: tuple[str, ...], allow_weaker: bool
    ) -> None:
        """Wait for the bootstrap's set-up report and record the isolation; raise if it failed."""
        mounts: dict[str, Any] = {}
        with self._changed:
            while True:
                for message in self._messages:
                    if "mounts" in message:
                        mounts = message["mounts"]
                    if "error" in message:
                        raise SandboxUnavailable(message["measure"], message["error"])
                    if "ready" in message:
                        self.isolation = self._isolation(
                            namespaces, mounts, message["ready"], weaker
                        )
                        return
                    if "closed" in message:
                        raise SandboxUnavailable(
                            "the sandbox bootstrap",
                            f"it ended before the module started: {self.stderr_text()}",
                        )
                left = self.deadline - time.monotonic()
                if left <= 0 or self._killed_by is not None:
                    raise SandboxTimeout(
                        f"the sandbox did not start within its limit of "
                        f"{self._limits.wall_seconds:g} s and was stopped"
                    )
                self._changed.wait(min(left, _POLL_SECONDS))

    def _isolation(
        self,
        namespaces: tuple[str, ...],
        mounts: dict[str, Any],
        ready: dict[str, Any],
        weaker: tuple[str, ...],
    ) -> Isolation:
        """Return the measures that applied, from the bootstrap's reports."""
        uid = int(ready["uid"])
        return Isolation(
            namespaces=namespaces,
            user="nobody (65534)" if uid == NOBODY else f"uid {uid}",
            rlimits={str(k): int(v) for k, v in ready["rlimits"].items()},
            tmpfs_bytes=mounts.get("tmpfs_bytes"),
            hidden=tuple(mounts.get("hidden", ())),
            device=self._device,
            device_memory_bytes=self._limits.device_memory_bytes
            if self._device == "cuda"
            else None,
            resident_memory_bytes=self._resident_cap(),
            wall_seconds=self._limits.wall_seconds,
            weaker=weaker,
        )

    def read(self, size: int) -> bytes:
        """Return up to `size` bytes of the child's stdout (b"" at its end) before the deadline.

        Raises SandboxTimeout when the deadline passes first.
        """
        fd = self.stdout.fileno()
        while True:
            left = self.deadline - time.monotonic()
            if left <= 0:
                self.kill(
                    "timeout",
                    f"it ran past its wall-clock limit of {self._limits.wall_seconds:g} s",
                )
                raise SandboxTimeout(self.describe_exit())
            ready, _, _ = select.select([fd], [], [], min(left, _POLL_SECONDS))
            if ready:
                return os.read(fd, size)

    def read_exactly(self, size: int) -> bytes:
        """Return exactly `size` bytes of stdout; raise EOFError if the child stops sooner."""
        chunks = bytearray()
        while len(chunks) < size:
            chunk = self.read(size - len(chunks))
            if not chunk:
                raise EOFError(
                    f"the sandboxed child closed its output after {len(chunks)} of {size} bytes"
                    f" ({self.describe_exit()})"
                )
            chunks.extend(chunk)
        return bytes(chunks)

    def wait(self, timeout: float | None = None) -> SandboxExit:
        """Return how the child ended, waiting at most `timeout` s and never past the deadline.

        Raises subprocess.TimeoutExpired when `timeout` passes first (the child keeps running).
        """
        limit = self.deadline - time.monotonic() + 5 * _POLL_SECONDS
        if timeout is not None:
            limit = min(limit, timeout)
        self._process.wait(timeout=max(limit, 0))
        self._threads[0].join(timeout=5)
        returncode = self._exit_code if self._exit_code is not None else self._process.returncode
        return SandboxExit(returncode, self._killed_by, self.describe_exit())

    def describe_exit(self) -> str:
        """Return a sentence saying how the child ended (or that it still runs)."""
        if self._killed_by is not None:
            return f"the sandboxed child was killed: {self._kill_detail}"
        code = self._exit_code if self._exit_code is not None else self._process.poll()
        if code is None:
            return "the sandboxed child is still running"
        if code < 0:
            return f"the sandboxed child was killed by {signal_name(-code)}"
        return f"the sandboxed child exited with status {code}"

    def kill(self, reason: str = "caller", detail: str = "the caller stopped it") -> None:
        """Kill the child's whole process group (and with it its PID namespace), once."""
        with self._changed:
            if self._killed_by is None and self._process.poll() is None:
                self._killed_by, self._kill_detail = reason, detail
            self._changed.notify_all()
        kill_group(self._process)

    def stderr(self) -> bytes:
        """Return the end of the child's stderr read so far (at most `limits.stderr_bytes`)."""
        return bytes(self._stderr)

    def stderr_text(self) -> str:
        """Return the end of the child's stderr as text, for messages."""
        return self.stderr().decode("utf-8", "replace").strip()[-2000:]

    def close(self) -> None:
        """Kill the group if it still runs, reap it, and release pipes and threads."""
        if self._process.poll() is None:
            self.kill()
        self._process.wait()
        self._done.set()
        for stream in (self.stdin, self.stdout):
            # A broken pipe to a dead child is expected here.
            with contextlib.suppress(OSError):
                stream.close()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)


def group_resident_bytes(pid: int) -> int:
    """Return the resident memory of process `pid` and all its descendants, in bytes."""
    total, pending, seen = 0, [pid], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            with open(f"/proc/{current}/status", encoding="ascii", errors="replace") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as children:
                    pending.extend(int(child) for child in children.read().split())
        except (OSError, ValueError):
            continue  # the process ended while being read
    return total


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
    *, device: Device = "cpu", limits: SandboxLimits | None = None
) -> dict[str, str]:
    """Return a minimal environment: where to find Python packages, no secrets, one thread."""
    python_path = os.pathsep.join(
        p for p in (str(_package_root()), os.environ.get("PYTHONPATH", "")) if p
    )
    environment = {
        "PATH": os.defpath,
        "PYTHONPATH": python_path,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "PYTHONIOENCODING": "utf-8",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": "/nonexistent",
        "TMPDIR": "/tmp",
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
