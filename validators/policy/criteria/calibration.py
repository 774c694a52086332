"""The `calibration` criterion: bounds on a calibration measure (ECE, slope, intercept, Brier)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from validators.policy.criterion import (
    Bounds,
    CriterionBase,
    EceUpperBoundOnly,
    JudgingContext,
    RangeSide,
)
from validators.policy.judging import (
    criterion_result,
    estimate_of,
    in_range,
    limit_of,
    limits_text,
    subject_of,
)
from validators.policy.registry import register
from validators.results import (
    CriterionResult,
    EvaluationResult,
)
from validators.vocabulary import CalibrationMetricName


@register
class CalibrationCriterion(EceUpperBoundOnly, Bounds, CriterionBase):
    """Bounds on a calibration measure (ECE, slope, intercept, Brier)."""

    kind: Literal["calibration"]
    metric: CalibrationMetricName
    label: str | None = None
    on: RangeSide = Field(
        default="estimate",
        description="estimate, lower, upper or interval; ECE (one-sided upper bound) takes "
        "estimate or upper only.",
    )

    def judge(self, result: EvaluationResult, context: JudgingContext) -> CriterionResult:
        """Return whether the calibration measure (or its interval) lies within the bounds."""
        subject = subject_of(self.metric, self.label)
        estimate = estimate_of(result, self.metric, self.label)
        limits = limits_text(self.min, self.max)
        if isinstance(estimate, str):
            return criterion_result(self, "insufficient_data", f"{estimate}.")
        met, observed, text = in_range(estimate, self.on, self.min, self.max)
        limit = limit_of(self.min, self.max, observed)
        if met is None:
            return criterion_result(
                self, "insufficient_data", f"{subject} is not available: {text}.", limit=limit
            )
        verb = "is" if met else "is not"
        return criterion_result(
            self,
            "pass" if met else "fail",
            f"{subject}: {text} {verb} {limits}.",
            observed=observed,
            limit=limit,
        )
