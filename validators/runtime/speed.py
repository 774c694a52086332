"""The speed protocol: the same measurement for every model version, inside the sandbox.

In the child (`measure_in_child`), at each batch size the policy names: warm-up runs, then
timed runs until both a minimum number of iterations and a minimum time are reached (CUDA
events and a synchronize on a GPU under torch; onnxruntime's `run` copies its output to the
host, so it returns only once the device is done). The child sends back the raw latencies, the
peak memory (device on a GPU, resident otherwise) and a fingerprint of the hardware and
software. In the parent (`summarize`), the latencies become p50/p90/p95/p99 and throughput,
and the decode-and-preprocess time per case, measured on a sample of the dataset's files
(`measure_decode`), is added to the inference time per case for the end-to-end figure.
"""

from __future__ import annotations

import ctypes
import math
import os
import platform
import time
from collections.abc import Sequence
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Protocol

from validators.results.speed import BatchSpeed, Fingerprint, SpeedProtocolUsed, SpeedResult

if TYPE_CHECKING:
    from validators.data.datasets import Dataset
    from validators.manifest import InputSpec

__all__ = [
    "MAX_TIMED_ITERATIONS",
    "LoadedModel",
    "batch_speed",
    "fingerprint",
    "gpu_description",
    "measure_decode",
    "measure_in_child",
    "nvml_memory_used",
    "percentile",
    "resident_peak_bytes",
    "summarize",
]

MAX_TIMED_ITERATIONS = 20_000
"""Timed runs per batch size at most, so the child's answer stays small."""

_LIBRARIES = ("numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "torch", "monai", "safetensors")


class LoadedModel(Protocol):
    """A model ready to score batches, and how it runs."""

    def infer(self, batch: Any) -> Any:
        """Return the scores (a float32 array) of one float32 [n, C, H, W] batch."""

    def time_one(self, batch: Any) -> float:
        """Return the seconds one inference of `batch` takes, synchronized with the device."""

    def runtime_info(self) -> dict[str, Any]:
        """Return the runtime's description (the fields of `RuntimeInfo` the child knows)."""

    def peak_memory(self) -> tuple[int | None, str]:
        """Return the peak memory in bytes so far and its kind ("device" or "resident")."""

    def reset_peak_memory(self) -> None:
        """Start a new peak-memory measurement (device memory only; resident peaks are lifelong)."""


def resident_peak_bytes(who: int | None = None) -> int:
    """Return the peak resident bytes of this process, or (RUSAGE_CHILDREN) of its ended children.

    Linux keeps ru_maxrss across execve, so a process started from a large one (a model child
    of a server worker) would report its parent's peak; this process's own high-water mark
    (VmHWM) starts afresh at exec, so it is read first.
    """
    import resource

    if who is None or who == resource.RUSAGE_SELF:
        try:
            with open("/proc/self/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        who = resource.RUSAGE_SELF
    # ru_maxrss is in kilobytes on Linux.
    return int(resource.getrusage(who).ru_maxrss) * 1024


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Return the q-th percentile (0..100) of ascending values, interpolated linearly.

    The same definition as numpy's default ("linear"), written out so the parent needs no numpy.
    """
    if not sorted_values:
        raise ValueError("no values to take a percentile of")
    position = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


def batch_speed(
    batch_size: int, latencies_s: Sequence[float], *, decode_ms_per_case: float | None
) -> BatchSpeed:
    """Return the figures at one batch size from its timed runs' latencies in seconds."""
    ordered = sorted(max(0.0, value) for value in latencies_s)
    total = sum(ordered)
    p50 = percentile(ordered, 50) * 1000.0
    return BatchSpeed(
        batch_size=batch_size,
        iterations=len(ordered),
        measured_s=total,
        latency_mean_ms=total / len(ordered) * 1000.0,
        latency_p50_ms=p50,
        latency_p90_ms=percentile(ordered, 90) * 1000.0,
        latency_p95_ms=percentile(ordered, 95) * 1000.0,
        latency_p99_ms=percentile(ordered, 99) * 1000.0,
        throughput_per_s=batch_size * len(ordered) / total if total > 0 else 0.0,
        end_to_end_ms_per_case=(
            None if decode_ms_per_case is None else decode_ms_per_case + p50 / batch_size
        ),
    )


def summarize(
    answer: dict[str, Any],
    protocol: SpeedProtocolUsed,
    *,
    decode_ms_per_case: float | None,
    decode_cases: int,
) -> SpeedResult:
    """Return the `SpeedResult` of the child's `speed` answer; raise ValueError if malformed."""
    batches = []
    for entry in answer["batches"]:
        latencies = [float(value) for value in entry["latencies_s"]]
        if len(latencies) < protocol.min_iterations or not all(map(math.isfinite, latencies)):
            raise ValueError(
                f"the child timed {len(latencies)} runs at batch size {entry['batch_size']}, "
                f"fewer than the protocol's {protocol.min_iterations} or not all finite"
            )
        batches.append(
            batch_speed(int(entry["batch_size"]), latencies, decode_ms_per_case=decode_ms_per_case)
        )
    if sorted(b.batch_size for b in batches) != sorted(protocol.batch_sizes):
        raise ValueError("the child did not time every batch size the protocol names")
    return SpeedResult(
        protocol=protocol,
        timing=answer["timing"],
        batches=batches,
        peak_memory_bytes=answer.get("peak_memory_bytes"),
        memory_kind=answer["memory_kind"],
        decode_ms_per_case=decode_ms_per_case,
        decode_cases=decode_cases,
        fingerprint=Fingerprint.model_validate(answer["fingerprint"]),
    )


def measure_decode(
    dataset: Dataset, spec: InputSpec, *, sample: int, seed: int = 0
) -> tuple[float | None, int]:
    """Return (milliseconds per case, cases timed) to read, decode and preprocess from disk.

    `sample` cases are drawn evenly across the dataset (the same ones for the same dataset),
    each read from its file through `load_case_tensor`, as an inference server would.
    """
    from validators.data.preprocess import load_case_tensor

    cases = dataset.cases
    count = min(sample, len(cases))
    if count == 0:
        return None, 0
    step = len(cases) / count
    chosen = [cases[(int(i * step) + seed) % len(cases)] for i in range(count)]
    start = time.perf_counter()
    for case in chosen:
        load_case_tensor(dataset, case, spec)
    return (time.perf_counter() - start) * 1000.0 / count, count


def measure_in_child(model: LoadedModel, sample: Any, head: dict[str, Any]) -> dict[str, Any]:
    """Return the raw speed measurement of `model` on `sample` under the head's protocol.

    `sample` is a float32 [n, C, H, W] array; a batch larger than n repeats its rows.
    """
    import numpy as np

    warmup = int(head["warmup_iterations"])
    min_iterations = int(head["min_iterations"])
    min_time_s = float(head["min_time_s"])
    model.reset_peak_memory()
    batches = []
    for batch_size in head["batch_sizes"]:
        rows = np.arange(int(batch_size)) % sample.shape[0]
        batch = np.ascontiguousarray(sample[rows])
        for _ in range(warmup):
            model.infer(batch)
        latencies: list[float] = []
        started = time.perf_counter()
        while len(latencies) < MAX_TIMED_ITERATIONS and (
            len(latencies) < min_iterations or time.perf_counter() - started < min_time_s
        ):
            latencies.append(model.time_one(batch))
        batches.append({"batch_size": int(batch_size), "latencies_s": latencies})
    info = model.runtime_info()
    peak, kind = model.peak_memory()
    timing = (
        "cuda_events" if info["runtime"] == "torch" and info["device"] == "cuda" else "perf_counter"
    )
    return {
        "timing": timing,
        "batches": batches,
        "peak_memory_bytes": peak,
        "memory_kind": kind,
        "fingerprint": fingerprint(info).model_dump(mode="json"),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def fingerprint(runtime: dict[str, Any]) -> Fingerprint:
    """Return the fingerprint of this machine and its software for a runtime description."""
    libraries = {}
    for name in _LIBRARIES:
        try:
            libraries[name] = version(name)
        except PackageNotFoundError:
            continue
    gpu = gpu_description() if runtime.get("device") == "cuda" else None
    return Fingerprint(
        cpu_model=_cpu_model(),
        cpu_cores=_cpu_cores(),
        gpu_name=gpu["name"] if gpu else None,
        gpu_memory_bytes=gpu["memory"] if gpu else None,
        driver_version=gpu["driver"] if gpu else None,
        cuda_version=gpu["cuda"] if gpu else None,
        runtime=str(runtime["runtime"]),
        runtime_version=str(runtime["runtime_version"]),
        execution_provider=str(runtime["execution_provider"]),
        python_version=platform.python_version(),
        platform=platform.platform(),
        libraries=libraries,
    )


class _NvmlMemory(ctypes.Structure):
    _fields_ = [
        ("total", ctypes.c_ulonglong),
        ("free", ctypes.c_ulonglong),
        ("used", ctypes.c_ulonglong),
    ]


@cache
def _nvml() -> tuple[Any, ctypes.c_void_p] | None:
    """Return NVML and the handle of GPU 0, or None where there is no NVIDIA driver."""
    try:
        library = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return None
    handle = ctypes.c_void_p()
    if library.nvmlInit_v2() != 0:
        return None
    if library.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(handle)) != 0:
        return None
    return library, handle


def nvml_memory_used() -> int | None:
    """Return the bytes in use on GPU 0 (NVML), or None without NVML."""
    found = _nvml()
    if found is None:
        return None
    library, handle = found
    memory = _NvmlMemory()
    if library.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory)) != 0:
        return None
    return int(memory.used)


def gpu_description() -> dict[str, Any] | None:
    """Return GPU 0's name, memory, driver and CUDA driver version from NVML, or None."""
    found = _nvml()
    if found is None:
        return None
    library, handle = found
    name = ctypes.create_string_buffer(96)
    driver = ctypes.create_string_buffer(80)
    cuda = ctypes.c_int()
    memory = _NvmlMemory()
    library.nvmlDeviceGetName(handle, name, 96)
    library.nvmlSystemGetDriverVersion(driver, 80)
    library.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory))
    cuda_text = None
    if library.nvmlSystemGetCudaDriverVersion_v2(ctypes.byref(cuda)) == 0:
        cuda_text = f"{cuda.value // 1000}.{cuda.value % 1000 // 10}"
    return {
        "name": name.value.decode(errors="replace") or None,
        "memory": int(memory.total) or None,
        "driver": driver.value.decode(errors="replace") or None,
        "cuda": cuda_text,
    }
