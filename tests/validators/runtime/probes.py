"""Hostile payloads for the sandbox tests: each tries one escape and reports what happened.

Run inside the sandbox as `python -m tests.validators.runtime.probes NAME [ARGS...]`; a probe
that survives prints one JSON line on stdout saying what it tried and what stopped it.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import socket
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_SIOCGIFFLAGS = 0x8913
_IFF_UP = 0x1


def _report(**fields: Any) -> None:
    """Print the probe's one JSON line and flush it."""
    print(json.dumps(fields), flush=True)


def _error(exc: BaseException) -> str:
    """Return the exception as `Type: message`."""
    return f"{type(exc).__name__}: {exc}"


def connect(host: str, port: str) -> None:
    """Try a TCP connection to host:port."""
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            _report(connected=True)
    except OSError as exc:
        _report(connected=False, error=_error(exc))


def read(path: str) -> None:
    """Try to read the file at `path`."""
    try:
        _report(read=True, text=Path(path).read_text())
    except OSError as exc:
        _report(read=False, error=_error(exc))


def environment(parent_pid: str) -> None:
    """Report this process's environment and try to read the parent's."""
    try:
        parent = Path(f"/proc/{parent_pid}/environ").read_bytes().decode("utf-8", "replace")
        _report(environ=dict(os.environ), parent_environ=parent)
    except OSError as exc:
        _report(environ=dict(os.environ), parent_environ=None, error=_error(exc))


def allocate(gib: str) -> None:
    """Try to allocate (and touch) `gib` GiB."""
    try:
        block = bytearray(int(gib) * 1024**3)
        _report(allocated=len(block))
    except MemoryError as exc:
        _report(allocated=0, error=_error(exc))


def grow(total_mib: str) -> None:
    """Touch memory 32 MiB at a time up to `total_mib` MiB, then hold it."""
    blocks = []
    for _ in range(int(total_mib) // 32):
        blocks.append(bytearray(32 * 1024 * 1024))
        time.sleep(0.02)
    _report(held=sum(len(block) for block in blocks))
    time.sleep(600)


def limits() -> None:
    """Report this process's address-space limit and the device-memory cap it was given."""
    import resource

    _report(
        address_space=resource.getrlimit(resource.RLIMIT_AS)[0],
        device_memory=os.environ.get("ASSAY_SANDBOX_DEVICE_MEMORY_BYTES"),
        cuda_visible=os.environ.get("CUDA_VISIBLE_DEVICES"),
    )


def spin() -> None:
    """Loop forever on the CPU."""
    while True:
        pass


def hang() -> None:
    """Block forever without using the CPU, ignoring SIGTERM."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(3600)


def fork(count: str) -> None:
    """Try to start `count` processes that each sleep; report how many started."""
    started = 0
    error = None
    for _ in range(int(count)):
        try:
            pid = os.fork()
        except OSError as exc:
            error = _error(exc)
            break
        if pid == 0:
            time.sleep(600)
            os._exit(0)
        started += 1
    _report(started=started, error=error)


def write(total_mib: str, file_mib: str) -> None:
    """Write `total_mib` MiB in files of `file_mib` MiB into the working directory."""
    chunk = b"\0" * (1024 * 1024)
    written, files, error = 0, 0, None
    try:
        while written < int(total_mib) * 1024 * 1024:
            with open(f"probe-{files}.bin", "wb") as stream:
                for _ in range(int(file_mib)):
                    stream.write(chunk)
                    written += len(chunk)
            files += 1
    except OSError as exc:
        error = _error(exc)
    _report(written=written, files=files, error=error)


def write_outside(path: str) -> None:
    """Try to create a file at `path` (outside the private tmpfs)."""
    try:
        Path(path).write_text("escaped")
        _report(written=True)
    except OSError as exc:
        _report(written=False, error=_error(exc))


def escape() -> None:
    """Leave a sleeping grandchild in a session of its own, then exit."""
    pid = os.fork()
    if pid == 0:
        os.setsid()
        time.sleep(600)
        os._exit(0)
    _report(left_behind=pid)


def read_fd(fd: str) -> None:
    """Report what can be read from the inherited descriptor `fd`."""
    with os.fdopen(int(fd), "rb") as stream:
        _report(text=stream.read().decode())


def imports(*modules: str) -> None:
    """Import each module and report its version: the runtime must be visible to `nobody`."""
    import importlib

    versions = {}
    for name in modules:
        module = importlib.import_module(name)
        versions[name] = str(getattr(module, "__version__", "?"))
    _report(versions=versions)


def umount(path: str) -> None:
    """Try to detach the mount at `path` (a hiding tmpfs) to see what lies beneath."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(path.encode(), 2) == 0:  # MNT_DETACH
        _report(unmounted=True)
    else:
        _report(unmounted=False, error=os.strerror(ctypes.get_errno()))


def segfault() -> None:
    """Read address 0."""
    ctypes.string_at(0)


def identity() -> None:
    """Report who and where this process is: user, PIDs, processes seen, network interfaces."""
    interfaces = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            request = struct.pack("16sH", name.encode(), 0)
            flags = struct.unpack("16sH", fcntl.ioctl(probe.fileno(), _SIOCGIFFLAGS, request))[1]
            interfaces[name] = bool(flags & _IFF_UP)
    _report(
        uid=os.getuid(),
        gid=os.getgid(),
        groups=os.getgroups(),
        pid=os.getpid(),
        ppid=os.getppid(),
        pids=sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        interfaces=interfaces,
        cwd=os.getcwd(),
        inputs=sorted(os.listdir("inputs")) if os.path.isdir("inputs") else [],
    )


def echo() -> None:
    """Copy stdin to stdout in length-prefixed frames until an empty frame."""
    while True:
        header = sys.stdin.buffer.read(4)
        if len(header) < 4:
            return
        (size,) = struct.unpack(">I", header)
        body = sys.stdin.buffer.read(size)
        sys.stdout.buffer.write(header + body)
        sys.stdout.buffer.flush()
        if size == 0:
            return


PROBES: dict[str, Callable[..., None]] = {
    "connect": connect,
    "read": read,
    "environment": environment,
    "allocate": allocate,
    "grow": grow,
    "limits": limits,
    "spin": spin,
    "hang": hang,
    "fork": fork,
    "write": write,
    "write_outside": write_outside,
    "segfault": segfault,
    "umount": umount,
    "escape": escape,
    "imports": imports,
    "read_fd": read_fd,
    "identity": identity,
    "echo": echo,
}

if __name__ == "__main__":
    PROBES[sys.argv[1]](*sys.argv[2:])
