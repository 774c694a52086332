"""The `disparity` criterion: bounds on each group's gap to overall or to the reference group."""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import Field

from validators.policy.criterion import (
    Bounds,
    CriterionBase,
    CriterionNeeds,
    JudgingContext,
    RangeSide,
    TableSelector,
)
from validators.policy.judging import (
    Tally,
    criterion_result,
    fold,
    groups_by_label,
    in_range,
    is_judged,
    level_of,
    limit_of,
    limits_text,
    missing_tables,
    selected,
    side_name,
    small_reason,
    subject_of,
    too_small,
)
from validators.policy.registry import register
from validators.results import (
    CriterionResult,
    Disparity,
    EvaluationResult,
)
from validators.vocabulary import MetricName


@register
class DisparityCriterion(Bounds, CriterionBase):
    """Bounds on the gap between each group and a reference (overall, or the reference group)."""

    kind: Literal["disparity"]
    metric: MetricName
    label: str | None = Field(default=None, description="Multilabel only: a label name.")
    measure: Literal["difference", "ratio"] = Field(
        default="difference", description="group - reference, or group / reference."
    )
    reference: Literal["overall", "group"] = Field(
        default="overall",
        description="overall, or each table's reference group (its largest known group).",
    )
    attributes: list[TableSelector] = Field(default_factory=list)
    on: RangeSide = Field(
        default="estimate",
        description="estimate, lower, upper, or interval (min against the lower bound and max "
        "against the upper bound: the whole interval within the limits).",
    )
    small_groups: Literal["insufficient_data", "ignore"] = "insufficient_data"

    def needs(self) -> CriterionNeeds:
        """Return the named tables, the metric in every group and its disparities."""
        return dataclasses.replace(
            super().needs(), subgroup_metrics=(self.metric,), disparity_metrics=(self.metric,)
        )

    def average_problem(self, label: str) -> tuple[str, str] | None:
        """Return the problem of naming an average: disparities and gaps are per label."""
        return (
            "label",
            f"{self.kind} criteria judge one label's groups (disparities and fairness gaps are "
            "per label); name it instead of macro or micro",
        )

    def judge(self, result: EvaluationResult, context: JudgingContext) -> CriterionResult:
        """Return whether every judged group's difference (or ratio) lies within the bounds."""
        min_group_size = context.min_group_size
        measure = self.measure
        reference = "overall" if self.reference == "overall" else "the reference group"
        what = f"the {measure} in {subject_of(self.metric, self.label)} to {reference}"
        if self.on == "interval":
            what = f"the {level_of(result) * 100:g}% interval of {what}"
        else:
            what = side_name(self.on, level_of(result), what)
        limits = limits_text(self.min, self.max)
        chosen: list[Disparity] = [
            d
            for d in result.disparities
            if d.metric == self.metric
            and d.label == self.label
            and d.kind == self.measure
            and (d.reference == "overall") == (self.reference == "overall")
            and selected(d.attributes, self.attributes)
        ]
        absent = missing_tables((t.attributes for t in result.subgroups), self.attributes)
        if absent or not chosen:
            names = f" for {', '.join(absent)}" if absent else ""
            return criterion_result(
                self,
                "insufficient_data",
                f"the result has no {measure} in {subject_of(self.metric, self.label)} "
                f"to {reference}{names}.",
                limit=limit_of(self.min, self.max, None),
            )
        groups = groups_by_label(result.subgroups)
        tally = Tally(self.min, self.max)
        ignored: list[str] = []
        for disparity in chosen:
            group = groups.get((frozenset(disparity.attributes), disparity.group))
            if group is not None and not is_judged(group):
                ignored.append(disparity.group)
                continue
            if group is None or too_small(group, min_group_size):
                tally.lacking.append((disparity.group, small_reason(min_group_size)))
                continue
            met, observed, text = in_range(disparity.value, self.on, self.min, self.max)
            label = (
                disparity.group
                if self.reference == "overall"
                else f"{disparity.group} (vs {disparity.reference})"
            )
            if met is None or observed is None:
                tally.lacking.append((label, text))
                continue
            (tally.passed if met else tally.failed).append((label, observed, text))
        judged = tally.failed or tally.passed
        nearest = tally.worst(judged)[1] if judged else None
        return fold(
            self,
            tally,
            what=what,
            limits=limits,
            limit=limit_of(self.min, self.max, nearest),
            small_groups=self.small_groups,
            ignored=ignored,
        )
