"""The parent's handle on a running sandboxed child: pipes, watchdog, exit, isolation record.

`validators.runtime.sandbox.start` creates `Sandboxed`; import it from there. Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from validators.runtime.sandbox_types import (
    Device,
    Isolation,
    SandboxExit,
    SandboxLimits,
    SandboxTimeout,
    SandboxUnavailable,
)

NOBODY = 65534
_POLL_SECONDS = 0.2


class Sandboxed:
    """A running sandboxed child: its pipes, its isolation, and the means to wait for or end it.

    Leaving the context kills the child's whole process group if it still runs. Reads through
    `read` end at the wall-clock limit; a watchdog kills the group then, so plain reads on `stdout`
    see end-of-file no later than that either (with the PID namespace: without it, a grandchild
    that left the process group may hold `stdout` open, and only `read` stays bounded). Use
    either `read`/`read_exactly` or the buffered `stdout`, not both on one stream: `read` reads
    the descriptor directly and would miss what `stdout` has buffered.

    Typical use, with the caller's own framing::

        with sandbox.start("validators.runtime.runner", [...], limits=limits) as child:
            child.stdin.write(frame); child.stdin.flush()
            reply = child.read_exactly(size)
            ended = child.wait()        # SandboxExit: returncode, killed_by, reason
            measures = child.isolation  # record with the result
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
        self._init_pidfd: int | None = None
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
                self._kill_past_deadline()
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

    def _await_ready(self, *, namespaces: tuple[str, ...], weaker: tuple[str, ...]) -> None:
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
                        skipped = (*weaker, *mounts.get("weaker", ()))
                        self.isolation = self._isolation(
                            namespaces, mounts, message["ready"], skipped
                        )
                        if namespaces:
                            self._init_pidfd = self._open_init_pidfd()
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
            user=_describe_user(str(ready.get("user", "")), uid),
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
                self._kill_past_deadline()
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
        left = self.deadline - time.monotonic()
        if timeout is not None and timeout < left:
            self._process.wait(timeout=timeout)
        else:
            try:
                self._process.wait(timeout=max(left, 0))
            except subprocess.TimeoutExpired:
                self._kill_past_deadline()
                self._process.wait()
        self._threads[0].join(timeout=5)
        returncode = self._exit_code if self._exit_code is not None else self._process.returncode
        return SandboxExit(returncode, self._killed_by, self.describe_exit())

    def _kill_past_deadline(self) -> None:
        """Kill the group for running past its wall-clock limit."""
        self.kill("timeout", f"it ran past its wall-clock limit of {self._limits.wall_seconds:g} s")

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

    def _open_init_pidfd(self) -> int | None:
        """Return a pidfd on the namespace's PID 1 (the `unshare` process's child), if found."""
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
            return os.pidfd_open(int(children[0])) if children else None
        except (OSError, ValueError):
            return None  # it already ended

    def close(self) -> None:
        """Kill the group if it still runs, reap it, and release pipes and threads.

        With a PID namespace this returns once its PID 1 has ended, and the kernel ends every
        other process of the namespace before that: nothing the child started outlives it.
        """
        if self._process.poll() is None:
            self.kill()
        self._process.wait()
        if self._init_pidfd is not None:
            # PID 1 is not our child (it is `unshare`'s); its pidfd becomes readable at its end.
            select.select([self._init_pidfd], [], [], 10)
            os.close(self._init_pidfd)
            self._init_pidfd = None
        self._done.set()
        for stream in (self.stdin, self.stdout):
            # A broken pipe to a dead child is expected here.
            with contextlib.suppress(OSError):
                stream.close()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._process.stderr is not None:
            self._process.stderr.close()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)


def _describe_user(user: str, uid: int) -> str:
    """Return who the child ran as, in words, from the bootstrap's report."""
    if user == "nobody":
        return f"nobody ({uid})"
    if user == "own user namespace":
        return (
            f"the invoking user (uid {os.getuid()}) in a user namespace of its own, "
            "without capabilities over the mounts"
        )
    return f"uid {uid} (not switched)"


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
