"""The `non_inferiority` criterion: not worse than a baseline by more than a margin."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from validators.policy.criterion import (
    CriterionBase,
    CriterionNeeds,
    JudgingContext,
    Side,
    raise_problems,
)
from validators.policy.judging import (
    criterion_result,
    number,
    pick,
    subject_of,
)
from validators.policy.registry import register
from validators.results import (
    CriterionResult,
    EvaluationResult,
)
from validators.vocabulary import DirectedMetricName, higher_is_better


@register
class NonInferiorityCriterion(CriterionBase):
    """The model is not worse than a baseline scored on the same cases by more than `margin`.

    Passes when the interval of the paired difference (new - baseline) lies above -margin (for a
    metric where higher is better; below +margin for a loss or error).
    """

    kind: Literal["non_inferiority"]
    metric: DirectedMetricName
    label: str | None = None
    margin: float = Field(ge=0.0)
    method: Literal["auto", "delong", "bootstrap"] = Field(
        default="auto",
        description="auto: DeLong's paired test for AUROC when cases are independent, the "
        "paired bootstrap otherwise; delong is for AUROC only.",
    )

    @model_validator(mode="after")
    def _delong_for_auroc(self) -> Self:
        if self.method == "delong" and self.metric != "auroc":
            raise_problems([(("method",), "DeLong's test compares AUROCs only; use bootstrap")])
        return self

    def needs(self) -> CriterionNeeds:
        """Return the paired comparison with the baseline this criterion judges."""
        return CriterionNeeds(baseline=(self.metric, self.label, self.method))

    def average_problem(self, label: str) -> tuple[str, str] | None:
        """Return the problem of naming an average: non-inferiority compares one label."""
        return ("label", "non-inferiority compares one label; name it instead of macro or micro")

    def judge(self, result: EvaluationResult, context: JudgingContext) -> CriterionResult:
        """Return whether the paired difference's bound clears the margin (needs a baseline)."""
        comparisons = context.comparisons
        higher = higher_is_better(self.metric)
        limit = -self.margin if higher else self.margin
        subject = subject_of(self.metric, self.label)
        if comparisons is None:
            return criterion_result(
                self,
                "insufficient_data",
                "no baseline was given: non-inferiority compares with a baseline model scored on "
                "the same cases (assay score --baseline).",
                limit=limit,
            )
        found = next(
            (c for c in comparisons if c.metric == self.metric and c.label == self.label),
            None,
        )
        if found is None:
            return criterion_result(
                self,
                "insufficient_data",
                f"no comparison of {subject} with the baseline was computed.",
                limit=limit,
            )
        difference = found.difference
        side: Side = "lower" if higher else "upper"
        value, why = pick(difference, side)
        if value is None or difference.estimate is None:
            return criterion_result(
                self,
                "insufficient_data",
                f"the difference in {subject} (new - baseline) is not available: {why}.",
                limit=limit,
            )
        met = value > limit if higher else value < limit
        percent = f"{difference.level * 100:g}%"
        # Read through `bound`: a ratio metric's difference (lr_positive) may be unbounded on the
        # side not judged, and that side is said ("unbounded"), not assumed to be a number.
        lower, upper = difference.bound("lower"), difference.bound("upper")
        interval = (
            f"{percent} interval {number(lower)} to {number(upper)}"
            if lower is not None and upper is not None
            else f"{percent} {side} bound {number(value)}"
        )
        sides = (
            f"{subject}: new {number(found.new.estimate or 0.0)} vs baseline "
            f"{number(found.baseline.estimate or 0.0)}; difference {number(difference.estimate)} "
            f"({interval}, {found.method})"
        )
        relation = "above" if higher else "below"
        verdict = "is" if met else "is not"
        return criterion_result(
            self,
            "pass" if met else "fail",
            f"{sides}; its {side} bound {verdict} {relation} {number(limit)} (margin "
            f"{number(self.margin)}).",
            observed=value,
            limit=limit,
        )
