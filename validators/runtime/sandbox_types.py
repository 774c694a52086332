"""The sandbox's value types: limits going in, isolation measures and the exit coming out.

Re-exported by `validators.runtime.sandbox`; import them from there. Standard library only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Device = Literal["cpu", "cuda"]

GIB = 1024**3
MIB = 1024**2


@dataclass(frozen=True)
class SandboxLimits:
    """What a sandboxed child may use; `None` leaves that resource unlimited.

    `memory_bytes` caps the address space (RLIMIT_AS) on the CPU. On CUDA an address-space limit
    breaks the driver's start-up (it reserves tens of GiB of virtual memory), so there it is
    enforced instead by polling the resident memory of the child's processes from the parent and
    killing the group past it, and `device_memory_bytes` is handed to the child (environment
    variable `ASSAY_SANDBOX_DEVICE_MEMORY_BYTES`) for the runner to apply through onnxruntime's
    `gpu_mem_limit` or torch's per-process memory fraction.
    """

    wall_seconds: float = 600.0
    """After this many seconds from the start the whole process group is killed."""
    cpu_seconds: int | None = None
    """CPU time (RLIMIT_CPU); default: the wall-clock timeout rounded up, plus five seconds."""
    memory_bytes: int | None = 8 * GIB
    file_size_bytes: int | None = 64 * MIB
    """Largest file the child may write (RLIMIT_FSIZE); a larger write fails with EFBIG."""
    processes: int | None = 256
    """Processes and threads of the child's user (RLIMIT_NPROC); effective as the child is not
    root. Every thread counts: a runtime with many threads needs room."""
    open_files: int | None = 1024
    tmpfs_bytes: int = 256 * MIB
    """Size of the private `/tmp` (the working directory), on top of the copied input files."""
    tmpfs_inodes: int = 16384
    device_memory_bytes: int | None = None
    """CUDA only: the device-memory cap the runner applies inside the child."""
    stderr_bytes: int = 64 * 1024
    """How much of the end of the child's stderr is kept."""

    def effective_cpu_seconds(self) -> int | None:
        """Return the CPU-time limit: the one set, or the wall-clock timeout plus five seconds."""
        if self.cpu_seconds is not None:
            return self.cpu_seconds
        return int(-(-self.wall_seconds // 1)) + 5


@dataclass(frozen=True)
class Isolation:
    """Which isolation measures applied to one sandboxed child, as recorded with every result."""

    namespaces: tuple[str, ...]
    """The new namespaces the child ran in (`net`, `mount`, `pid`, and `user` when not root)."""
    user: str
    """Who the child ran as: `nobody (65534)`, or the invoking user where it could not switch."""
    rlimits: dict[str, int]
    """The resource limits set, by name, with their values."""
    tmpfs_bytes: int | None
    """Size of the private `/tmp`; None where there was no mount namespace to make one."""
    hidden: tuple[str, ...]
    """Paths the child could not see."""
    device: Device
    device_memory_bytes: int | None
    resident_memory_bytes: int | None
    """The resident-memory cap the parent enforced by polling (CUDA), if any."""
    wall_seconds: float
    weaker: tuple[str, ...] = field(default=())
    """Measures that could not be set up and were skipped because the weaker mode was allowed."""

    def as_dict(self) -> dict[str, Any]:
        """Return the measures as a JSON-ready dictionary."""
        data = asdict(self)
        data["namespaces"] = list(self.namespaces)
        data["hidden"] = list(self.hidden)
        data["weaker"] = list(self.weaker)
        return data


@dataclass(frozen=True)
class SandboxExit:
    """How a sandboxed child ended: its exit status (negative: killed by that signal) and why."""

    returncode: int
    killed_by: str | None = None
    """Why the parent killed the group (`timeout`, `memory`, `caller`), or None if it did not."""
    reason: str = ""
    """A sentence for people: what ended the child."""

    @property
    def ok(self) -> bool:
        """Return whether the child exited by itself with status 0."""
        return self.returncode == 0 and self.killed_by is None


class SandboxUnavailable(RuntimeError):
    """An isolation measure could not be set up, and the weaker mode was not allowed."""

    def __init__(self, measure: str, detail: str) -> None:
        super().__init__(
            f"The sandbox could not apply {measure}: {detail}. Vendor code runs only fully "
            "isolated; fix the cause, or allow running without this measure (allow_weaker=True, "
            "the registry's ASSAY_SANDBOX_ALLOW_WEAKER=true), which every result records."
        )
        self.measure = measure
        self.detail = detail


class SandboxTimeout(TimeoutError):
    """The sandboxed child ran past its wall-clock limit and its process group was killed."""
