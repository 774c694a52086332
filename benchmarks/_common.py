"""Shared pieces: progress output, the machine's description, RSS sampling, percentiles."""

from __future__ import annotations

import os
import platform
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
# Not resolved: inside a venv, sys.executable is the venv's python, next to `assay` and `mlflow`.
VENV_BIN = Path(sys.executable).parent
MIB = 1024**2

KEY_PACKAGES = (
    "assay",
    "fastapi",
    "starlette",
    "uvicorn",
    "python-multipart",
    "sqlalchemy",
    "sqlmodel",
    "pydantic",
    "onnx",
    "numpy",
    "httpx",
    "typer",
    "mlflow",
    "psutil",
    "fairlearn",
    "scikit-learn",
    "pandas",
)


class BenchmarkError(RuntimeError):
    """A benchmark could not be measured (server refused, process died); says what and why."""


def progress(message: str) -> None:
    """Prints one progress line at once, so a long run shows where it is."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def benchmark_environment() -> dict[str, str]:
    """The environment for every child process: ours, with telemetry and progress bars off."""
    env = dict(os.environ)
    env.update(
        {
            "DO_NOT_TRACK": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    """The machine and software the figures were measured on."""
    memory = psutil.virtual_memory()
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gib": round(memory.total / 1024**3, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in KEY_PACKAGES},
    }


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation, as numpy computes it by default."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def median(values: list[float]) -> float:
    return percentile(values, 50.0)


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, or None when the denominator is zero or negative."""
    if denominator <= 0:
        return None
    return numerator / denominator


@dataclass
class MemoryTrace:
    """What an RssSampler saw: the process's RSS before, at its peak and at the end."""

    baseline_rss: int
    peak_rss: int = 0
    final_rss: int = 0
    peak_children_rss: int = 0
    children_seen: set[int] = field(default_factory=set)
    samples: int = 0

    @property
    def peak_growth(self) -> int:
        return self.peak_rss - self.baseline_rss

    def summary(self) -> dict[str, Any]:
        return {
            "baseline_rss_mib": round(self.baseline_rss / MIB, 1),
            "peak_rss_mib": round(self.peak_rss / MIB, 1),
            "final_rss_mib": round(self.final_rss / MIB, 1),
            "peak_growth_mib": round(self.peak_growth / MIB, 1),
            "children_peak_rss_mib": round(self.peak_children_rss / MIB, 1),
            "children_seen": len(self.children_seen),
            "samples": self.samples,
        }


class RssSampler:
    """Samples one process's RSS (and, separately, its children's) in a thread until closed.

    The baseline is read on entry, just before the work starts; the last sample is read on exit,
    just after it ended, so a peak at either edge is not missed.
    """

    def __init__(self, pid: int, *, interval_s: float = 0.02) -> None:
        self._process = psutil.Process(pid)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.trace = MemoryTrace(baseline_rss=self._process.memory_info().rss)

    def __enter__(self) -> MemoryTrace:
        self.trace.peak_rss = self.trace.baseline_rss
        self._thread.start()
        return self.trace

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.trace.final_rss = self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sample()

    def _sample(self) -> int:
        rss: int = self._process.memory_info().rss
        children_rss = 0
        for child in self._process.children(recursive=True):
            try:
                children_rss += child.memory_info().rss
            except psutil.Error:  # the child ended between listing and reading
                continue
            self.trace.children_seen.add(child.pid)
        self.trace.peak_rss = max(self.trace.peak_rss, rss)
        self.trace.peak_children_rss = max(self.trace.peak_children_rss, children_rss)
        self.trace.samples += 1
        return rss
