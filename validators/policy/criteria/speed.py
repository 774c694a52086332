"""The `speed` criterion: limits on the speed benchmark's figures (latency, throughput, memory)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from validators.policy.criterion import (
    Bounds,
    CriterionBase,
    CriterionNeeds,
    JudgingContext,
)
from validators.policy.judging import (
    criterion_result,
    limit_of,
    limits_text,
    number,
)
from validators.policy.registry import register
from validators.results import (
    CriterionResult,
    EvaluationResult,
    SpeedResult,
)

SpeedMetricName = Literal[
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "throughput_per_s",
    "end_to_end_ms_per_case",
    "peak_memory_mib",
]

_MIB = 1024 * 1024


def speed_figure(speed: SpeedResult, metric: SpeedMetricName, batch_size: int) -> float | str:
    """Return the figure a speed criterion reads, or why the benchmark does not hold it."""
    if metric == "peak_memory_mib":
        if speed.peak_memory_bytes is None:
            return f"the benchmark could not measure the peak {speed.memory_kind} memory"
        return speed.peak_memory_bytes / _MIB
    entry = speed.at_batch(batch_size)
    if entry is None:
        measured = ", ".join(str(b.batch_size) for b in speed.batches)
        return f"the benchmark did not run at batch size {batch_size} (it ran at {measured})"
    value = getattr(entry, metric)
    if value is None:
        return "the end-to-end time was not measured (no case was decoded from disk)"
    assert isinstance(value, float)
    return value


@register
class SpeedCriterion(Bounds, CriterionBase):
    """Limits on a figure of the speed benchmark, at one batch size.

    Latencies are of one batch, in milliseconds; `throughput_per_s` counts cases per second;
    `end_to_end_ms_per_case` adds decoding and preprocessing one case from its file to the
    inference time per case; `peak_memory_mib` (MiB, 2^20 bytes) is device memory on a GPU,
    resident memory otherwise, and does not depend on the batch size.
    """

    kind: Literal["speed"]
    metric: SpeedMetricName
    batch_size: int = Field(default=1, ge=1, description="The batch size the figure is read at.")

    def needs(self) -> CriterionNeeds:
        """Return the batch size the benchmark must time (none for the peak memory)."""
        sizes = () if self.metric == "peak_memory_mib" else (self.batch_size,)
        return CriterionNeeds(speed_batch_sizes=sizes)

    def judge(self, result: EvaluationResult, context: JudgingContext) -> CriterionResult:
        """Return whether the benchmark's figure lies within the bounds."""
        limits = limits_text(self.min, self.max)
        if result.speed is None:
            return criterion_result(
                self,
                "insufficient_data",
                "no speed benchmark in this result.",
                limit=limit_of(self.min, self.max, None),
            )
        value = speed_figure(result.speed, self.metric, self.batch_size)
        if isinstance(value, str):
            return criterion_result(
                self, "insufficient_data", f"{value}.", limit=limit_of(self.min, self.max, None)
            )
        met = (self.min is None or value >= self.min) and (self.max is None or value <= self.max)
        where = "" if self.metric == "peak_memory_mib" else f" at batch size {self.batch_size}"
        verb = "is" if met else "is not"
        return criterion_result(
            self,
            "pass" if met else "fail",
            f"{self.metric}{where}, {number(value)}, {verb} {limits}.",
            observed=value,
            limit=limit_of(self.min, self.max, value),
        )
