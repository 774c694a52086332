"""The `fairness_gap` criterion: an upper limit on each table's fairness gap."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from validators.policy.criterion import (
    CriterionBase,
    JudgingContext,
    Side,
    TableSelector,
    refuse_lower_side,
)
from validators.policy.judging import (
    Tally,
    criterion_result,
    fold,
    level_of,
    missing_tables,
    number,
    pick,
    selected,
    side_name,
    subject_of,
)
from validators.policy.registry import register
from validators.results import (
    CriterionResult,
    EvaluationResult,
    FairnessGap,
    FairnessGapName,
)


@register
class FairnessGapCriterion(CriterionBase):
    """Upper limit on a fairness gap (largest minus smallest group rate) of each table."""

    kind: Literal["fairness_gap"]
    name: FairnessGapName
    label: str | None = Field(default=None, description="Multilabel only: a label name.")
    attributes: list[TableSelector] = Field(default_factory=list)
    on: Side = Field(
        default="estimate",
        description="estimate or upper (a gap is reported debiased with a one-sided upper "
        "bound; its lower side is refused).",
    )
    max: float = Field(ge=0.0)

    @model_validator(mode="after")
    def _gap_has_no_lower_bound(self) -> Self:
        refuse_lower_side(self.id, self.on, f"the fairness gap {self.name}")
        return self

    def average_problem(self, label: str) -> tuple[str, str] | None:
        """Return the problem of naming an average: disparities and gaps are per label."""
        return (
            "label",
            f"{self.kind} criteria judge one label's groups (disparities and fairness gaps are "
            "per label); name it instead of macro or micro",
        )

    def judge(self, result: EvaluationResult, context: JudgingContext) -> CriterionResult:
        """Return whether every named table's fairness gap is at most the limit."""
        subject = subject_of(self.name.replace("_", " "), self.label)
        what = side_name(self.on, level_of(result), subject)
        gaps: list[FairnessGap] = [
            g
            for g in result.fairness
            if g.name == self.name
            and g.label == self.label
            and selected(g.attributes, self.attributes)
        ]
        absent = missing_tables((g.attributes for g in result.fairness), self.attributes)
        if absent or not gaps:
            names = f" for {', '.join(absent)}" if absent else ""
            return criterion_result(
                self,
                "insufficient_data",
                f"the result has no {subject}{names}.",
                limit=self.max,
            )
        tally = Tally(None, self.max)
        for gap in gaps:
            # The groups the gap was taken over ("over 3 groups: site=A, ...") are named, so that a
            # vendor view withholds this reason when it withholds one of them.
            over = f" ({gap.value.reason})" if gap.value.reason else ""
            label = " x ".join(gap.attributes) + over
            value, why = pick(gap.value, self.on)
            if value is None:
                tally.lacking.append((label, why or "not available"))
                continue
            (tally.passed if value <= self.max else tally.failed).append(
                (label, value, number(value))
            )
        return fold(
            self,
            tally,
            what=what,
            limits=f"at most {number(self.max)}",
            limit=self.max,
            small_groups="insufficient_data",
            ignored=[],
            unit="table",
        )
