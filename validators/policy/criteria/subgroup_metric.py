"""The `subgroup_metric` criterion: a least (or most) performance in every group."""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import Field

from validators.policy.criterion import (
    CriterionBase,
    CriterionNeeds,
    EceUpperBoundOnly,
    JudgingContext,
    Side,
    TableSelector,
)
from validators.policy.judging import (
    Tally,
    bounds_of,
    compare,
    criterion_result,
    fold,
    group_estimate,
    is_judged,
    level_of,
    missing_tables,
    number,
    op_words,
    pick,
    selected,
    side_name,
    small_reason,
    subject_of,
    too_small,
)
from validators.policy.registry import register
from validators.results import (
    CriterionResult,
    Estimate,
    EvaluationResult,
)
from validators.vocabulary import MetricName


@register
class SubgroupMetricCriterion(EceUpperBoundOnly, CriterionBase):
    """Minimum (or maximum) performance in every group of the named subgroup tables."""

    kind: Literal["subgroup_metric"]
    metric: MetricName
    label: str | None = Field(
        default=None,
        description="Multilabel only: a label name, or macro / micro for the averages.",
    )
    attributes: list[TableSelector] = Field(
        default_factory=list, description="Tables to check; empty means every table."
    )
    on: Side = "estimate"
    op: Literal[">=", "<="]
    value: float
    small_groups: Literal["insufficient_data", "ignore"] = Field(
        default="insufficient_data",
        description="A group below the minimum size (or where the metric is undefined) makes "
        "the criterion lack data (insufficient_data, fail-closed) or is left out (ignore).",
    )

    def needs(self) -> CriterionNeeds:
        """Return the named tables, and the metric's interval in every group."""
        return dataclasses.replace(super().needs(), subgroup_metrics=(self.metric,))

    def judge(self, result: EvaluationResult, context: JudgingContext) -> CriterionResult:
        """Return whether every judged group of the named tables meets the value."""
        min_group_size = context.min_group_size
        what = side_name(self.on, level_of(result), subject_of(self.metric, self.label))
        tables = [t for t in result.subgroups if selected(t.attributes, self.attributes)]
        absent = missing_tables((t.attributes for t in result.subgroups), self.attributes)
        if absent or not tables:
            names = ", ".join(absent) if absent else "any attribute"
            return criterion_result(
                self,
                "insufficient_data",
                f"the result has no subgroup table for {names}.",
                limit=self.value,
            )
        tally = Tally(*bounds_of(self.op, self.value))
        ignored: list[str] = []
        for table in tables:
            for group in table.groups:
                if not is_judged(group):
                    ignored.append(group.label)
                    continue
                if too_small(group, min_group_size):
                    tally.lacking.append((group.label, small_reason(min_group_size)))
                    continue
                estimate = group_estimate(group, self.metric, self.label)
                if not isinstance(estimate, Estimate):
                    tally.lacking.append((group.label, "no metrics"))
                    continue
                value, why = pick(estimate, self.on)
                if value is None:
                    tally.lacking.append((group.label, why or "not available"))
                    continue
                entry = (group.label, value, number(value))
                (tally.passed if compare(value, self.op, self.value) else tally.failed).append(
                    entry
                )
        return fold(
            self,
            tally,
            what=what,
            limits=f"{op_words(self.op)} {number(self.value)}",
            limit=self.value,
            small_groups=self.small_groups,
            ignored=ignored,
        )
