"""What every criterion kind shares: the strict model base, the common fields, and `judge`.

A criterion kind is one class (in `validators/policy/criteria/`, one module each) that derives
from `CriterionBase`, declares `kind: Literal["..."]`, is decorated with `@register`
(`validators.policy.registry`) and judges itself: `judge(result, context) -> CriterionResult`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal, NoReturn, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from validators.problems import raise_located
from validators.results import AVERAGED_METRIC_NAMES, CriterionResult, Estimate, EvaluationResult
from validators.vocabulary import ONE_SIDED_UPPER_METRICS, MetricName

__all__ = [
    "AttributeName",
    "BaselineComparison",
    "Bounds",
    "CriterionBase",
    "CriterionNeeds",
    "EceUpperBoundOnly",
    "Identifier",
    "JudgingContext",
    "RangeSide",
    "Severity",
    "Side",
    "StrictModel",
    "TableSelector",
    "Text",
    "raise_problems",
    "refuse_lower_side",
]

Severity = Literal["required", "advisory"]
Side = Literal["estimate", "lower", "upper"]
RangeSide = Literal["estimate", "lower", "upper", "interval"]

_AVERAGED_METRICS = frozenset(AVERAGED_METRIC_NAMES)


class StrictModel(BaseModel):
    """Base of every policy model: unknown keys are errors, numbers finite, values frozen."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


def raise_problems(
    problems: Iterable[tuple[tuple[str | int, ...], str]], *, kind: str = "policy_rule"
) -> NoReturn:
    """Raise one ValidationError carrying several located problems (paths relative to here).

    `kind` is `policy_cross_field` for the policy-level rules, whose paths are literal (no union
    tags to drop).
    """
    raise_located("Policy", kind, problems)


Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"),
]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
AttributeName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
TableSelector = AttributeName | Annotated[list[AttributeName], Field(min_length=1)]
"""One subgroup table: an attribute ("sex"), or an intersection (["sex", "age_band"])."""


class BaselineComparison(BaseModel):
    """A metric of the new model and of a baseline on the same cases, and their paired difference.

    `difference` is new - baseline; its interval comes from DeLong's paired test (AUROC) or from
    the same bootstrap replicates applied to both models (paired). Computed by
    `validators.evaluation`, judged by the non-inferiority criterion.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    metric: str
    label: str | None
    method: str
    new: Estimate
    baseline: Estimate
    difference: Estimate
    p_value: float | None = None


@dataclass(frozen=True)
class JudgingContext:
    """What a criterion may read besides the result: the policy's settings, and a baseline.

    A criterion kind that needs more (the speed benchmark, a drift window) gets a field here,
    with a default that means "not measured", so the other kinds are not touched.
    """

    min_group_size: int
    comparisons: Sequence[BaselineComparison] | None = None
    """Comparisons with a baseline model on the same cases; None when no baseline was given."""


@dataclass(frozen=True)
class CriterionNeeds:
    """What a criterion reads beyond the overall metrics, so the engine computes it.

    The engine asks every criterion (`CriterionBase.needs`) instead of testing its kind, so a
    new kind that reads something the engine already computes is one class and nothing else.
    """

    tables: tuple[tuple[str, ...], ...] = ()
    """Subgroup tables named (attribute names as written; one name is a one-attribute table)."""
    subgroup_metrics: tuple[MetricName, ...] = ()
    """Metrics that need an interval in every group."""
    disparity_metrics: tuple[MetricName, ...] = ()
    """Metrics whose disparities (group against reference) are judged."""
    baseline: tuple[MetricName, str | None, Literal["auto", "delong", "bootstrap"]] | None = None
    """(metric, label, method) of a paired comparison with a baseline model, or None."""
    speed_batch_sizes: tuple[int, ...] = ()
    """Batch sizes the speed benchmark must time for this criterion."""


class CriterionBase(StrictModel):
    """The fields every criterion has, and the one method each kind implements: `judge`."""

    if TYPE_CHECKING:  # each kind declares its own `kind: Literal["..."]`, the union's tag
        kind: str

    id: Identifier = Field(description="Unique within the policy; shown in the verdict.")
    description: Text = Field(description="What the criterion protects, in one sentence.")
    severity: Severity = Field(
        default="required",
        description="required: failing or lacking data fails the verdict; advisory: reported.",
    )

    @abstractmethod
    def judge(self, result: EvaluationResult, context: JudgingContext) -> CriterionResult:
        """Return how this criterion comes out on `result`: pass, fail or insufficient data."""

    def needs(self) -> CriterionNeeds:
        """Return what this criterion reads beyond the overall metrics (by default: the subgroup
        tables its `attributes` name, if it has that field)."""
        selectors: Iterable[str | list[str]] = getattr(self, "attributes", ())
        return CriterionNeeds(
            tables=tuple(
                (selector,) if isinstance(selector, str) else tuple(selector)
                for selector in selectors
            )
        )

    def average_problem(self, label: str) -> tuple[str, str] | None:
        """Return (field, message) when this criterion may not read the `label` average.

        Called for a multilabel policy whose criterion names `macro` or `micro`. By default a
        criterion reads an average of its metric when the result has one.
        """
        metric = str(getattr(self, "metric", ""))
        if metric in _AVERAGED_METRICS:
            return None
        return (
            "metric",
            f"{metric} has no {label} average; averaged metrics are "
            f"{', '.join(sorted(_AVERAGED_METRICS))}",
        )


class Bounds(StrictModel):
    """Mixin of the criteria that bound a value from below, above, or both."""

    min: float | None = Field(default=None, description="Lowest allowed value.")
    max: float | None = Field(default=None, description="Highest allowed value.")

    @model_validator(mode="after")
    def _a_bound(self) -> Self:
        if self.min is None and self.max is None:
            raise_problems([((), "give min, max or both")])
        if self.min is not None and self.max is not None and self.min > self.max:
            raise_problems([(("max",), f"max ({self.max}) is below min ({self.min})")])
        return self


def refuse_lower_side(ident: str, on: str, what: str) -> None:
    """Refuse a criterion that reads the lower bound or the two-sided interval of `what`."""
    if on not in ("lower", "interval"):
        return
    side = "the lower bound" if on == "lower" else "a two-sided interval"
    raise_problems(
        [
            (
                ("on",),
                f"criterion {ident!r} judges {what} on {side}, but it is reported debiased "
                "with a one-sided upper bound only (its plug-in value is biased upward, see "
                "docs/statistics.md); judge it on the estimate or the upper bound "
                "(on: estimate or on: upper)",
            )
        ]
    )


class EceUpperBoundOnly(StrictModel):
    """Mixin of the criteria that read a named metric on a side: an ECE has no lower side.

    The ECE is reported debiased with a one-sided upper bound
    (`validators.vocabulary.ONE_SIDED_UPPER_METRICS`), so a criterion on its lower bound or its
    two-sided interval is refused at load (`refuse_lower_side`).
    """

    if TYPE_CHECKING:  # fields of the criteria this is mixed into
        id: str
        metric: str
        on: str

    @model_validator(mode="after")
    def _ece_has_no_lower_bound(self) -> Self:
        if self.metric in ONE_SIDED_UPPER_METRICS:
            refuse_lower_side(self.id, self.on, self.metric)
        return self
