"""The `speed` criterion: latency or throughput limits from the speed benchmark."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from validators.policy.criterion import (
    Bounds,
    CriterionBase,
    JudgingContext,
)
from validators.policy.judging import (
    criterion_result,
    limit_of,
)
from validators.policy.registry import register
from validators.results import (
    CriterionResult,
    EvaluationResult,
)

SpeedMetricName = Literal["latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "throughput_per_s"]


@register
class SpeedCriterion(Bounds, CriterionBase):
    """Latency or throughput limits from the speed benchmark (evaluated from the next issue)."""

    kind: Literal["speed"]
    metric: SpeedMetricName
    batch_size: int = Field(default=1, ge=1)

    def judge(self, result: EvaluationResult, context: JudgingContext) -> CriterionResult:
        """Return insufficient data: no result holds a speed benchmark yet (the next issue)."""
        return criterion_result(
            self,
            "insufficient_data",
            "no speed benchmark in this result.",
            limit=limit_of(self.min, self.max, None),
        )
