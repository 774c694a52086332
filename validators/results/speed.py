"""Typed results of running a model: where and how it ran, and how fast (`SpeedResult`).

Both are measurements of hardware and software, not statistics: they are optional blocks of
`EvaluationResult` and are left out of its `statistics_digest` (see
`validators.results.evaluation.statistics_digest_of`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from validators.results.estimates import _Result

__all__ = [
    "BatchSpeed",
    "Fingerprint",
    "IsolationMeasures",
    "MemoryKind",
    "RuntimeInfo",
    "SpeedProtocolUsed",
    "SpeedResult",
    "TimingMethod",
]

MemoryKind = Literal["device", "resident"]
TimingMethod = Literal["cuda_events", "perf_counter"]


class IsolationMeasures(_Result):
    """The sandbox measures that applied to the model's process (`validators.runtime.sandbox`).

    `weaker` names the measures that could not be set up and were skipped because the weaker
    mode was allowed; empty when the child ran fully isolated.
    """

    namespaces: list[str]
    user: str
    rlimits: dict[str, int]
    tmpfs_bytes: int | None = None
    hidden: list[str] = Field(default_factory=list)
    device: str
    device_memory_bytes: int | None = None
    resident_memory_bytes: int | None = None
    wall_seconds: float = Field(ge=0.0)
    weaker: list[str] = Field(default_factory=list)


class RuntimeInfo(_Result):
    """Where a model ran: format, runtime and its version, provider, threads, device, isolation."""

    format: Literal["onnx", "safetensors"]
    runtime: Literal["onnxruntime", "torch"]
    runtime_version: str
    execution_provider: str
    intra_op_threads: int = Field(ge=1)
    inter_op_threads: int = Field(ge=1)
    device: str
    architecture: str | None = None
    isolation: IsolationMeasures | None = None


class Fingerprint(_Result):
    """The hardware and software a speed figure was measured on."""

    cpu_model: str
    cpu_cores: int = Field(ge=1)
    gpu_name: str | None = None
    gpu_memory_bytes: int | None = Field(default=None, ge=0)
    driver_version: str | None = None
    cuda_version: str | None = None
    runtime: str
    runtime_version: str
    execution_provider: str
    python_version: str
    platform: str
    libraries: dict[str, str] = Field(default_factory=dict)


class SpeedProtocolUsed(_Result):
    """The protocol the figures were measured under (from the policy's `speed` section)."""

    warmup_iterations: int = Field(ge=0)
    min_iterations: int = Field(ge=1)
    min_time_s: float = Field(ge=0.0)
    batch_sizes: list[int] = Field(min_length=1)
    decode_sample: int = Field(ge=0)


class BatchSpeed(_Result):
    """The figures at one batch size: latency percentiles of one batch, throughput, end to end.

    `end_to_end_ms_per_case` is decoding and preprocessing one case from its file on disk
    (measured on a sample in the parent) plus this batch size's median inference time per case;
    None when no case was decoded for it.
    """

    batch_size: int = Field(ge=1)
    iterations: int = Field(ge=1)
    measured_s: float = Field(ge=0.0)
    latency_mean_ms: float = Field(ge=0.0)
    latency_p50_ms: float = Field(ge=0.0)
    latency_p90_ms: float = Field(ge=0.0)
    latency_p95_ms: float = Field(ge=0.0)
    latency_p99_ms: float = Field(ge=0.0)
    throughput_per_s: float = Field(ge=0.0)
    end_to_end_ms_per_case: float | None = Field(default=None, ge=0.0)


class SpeedResult(_Result):
    """The speed benchmark of one model version: figures per batch size, memory, fingerprint."""

    protocol: SpeedProtocolUsed
    timing: TimingMethod
    batches: list[BatchSpeed] = Field(min_length=1)
    peak_memory_bytes: int | None = Field(default=None, ge=0)
    memory_kind: MemoryKind
    decode_ms_per_case: float | None = Field(default=None, ge=0.0)
    decode_cases: int = Field(default=0, ge=0)
    fingerprint: Fingerprint

    def at_batch(self, batch_size: int) -> BatchSpeed | None:
        """Return the figures measured at `batch_size`, or None when it was not measured."""
        for entry in self.batches:
            if entry.batch_size == batch_size:
                return entry
        return None
