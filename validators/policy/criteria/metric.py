"""The `metric` criterion: a metric of the whole population, on its estimate or a bound."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from validators.policy.criterion import (
    CriterionBase,
    EceUpperBoundOnly,
    JudgingContext,
    Side,
)
from validators.policy.judging import (
    compare,
    criterion_result,
    estimate_of,
    number,
    op_words,
    pick,
    side_name,
    subject_of,
)
from validators.policy.registry import register
from validators.results import (
    CriterionResult,
    EvaluationResult,
)
from validators.vocabulary import MetricName


@register
class MetricCriterion(EceUpperBoundOnly, CriterionBase):
    """A metric of the whole population, on its estimate or a bound of its interval."""

    kind: Literal["metric"]
    metric: MetricName
    label: str | None = Field(
        default=None,
        description="Multilabel only: a label name, or macro / micro for the averages.",
    )
    on: Side = Field(default="estimate", description="estimate, lower or upper bound of the CI.")
    op: Literal[">=", "<="]
    value: float

    def judge(self, result: EvaluationResult, context: JudgingContext) -> CriterionResult:
        """Return whether the metric (or its bound) meets the value."""
        subject = subject_of(self.metric, self.label)
        estimate = estimate_of(result, self.metric, self.label)
        if isinstance(estimate, str):
            return criterion_result(self, "insufficient_data", f"{estimate}.", limit=self.value)
        value, why = pick(estimate, self.on)
        name = side_name(self.on, estimate.level, subject)
        if value is None:
            return criterion_result(
                self,
                "insufficient_data",
                f"{name} is not available: {why}.",
                limit=self.value,
            )
        met = compare(value, self.op, self.value)
        verb = "is" if met else "is not"
        reason = f"{name}, {number(value)}, {verb} {op_words(self.op)} {number(self.value)}."
        return criterion_result(
            self, "pass" if met else "fail", reason, observed=value, limit=self.value
        )
