"""Typed evaluation results: estimates with their intervals, curve points, and provenance.

Every model here has one shape whatever the data: a metric that cannot be computed is still there,
with `status` `undefined` and the reason, and a curve that cannot be drawn is `None`. Numbers are
always finite (`allow_inf_nan=False`), so the JSON never holds NaN or Infinity, and every model
round-trips through JSON exactly: `Model.model_validate_json(m.model_dump_json()) == m`.

Only pydantic and the standard library are imported at module level: the service reads and
writes these models without loading numpy or the statistics.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    computed_field,
    model_validator,
)

__all__ = [
    "AGE_BAND",
    "AGE_COLUMN",
    "AVERAGED_METRIC_NAMES",
    "BINARY_METRIC_NAMES",
    "DEFAULT_AGE_BANDS",
    "DEFAULT_SUBGROUP_METRICS",
    "MAX_CURVE_POINTS",
    "MISSING",
    "AveragedMetrics",
    "BinaryMetricName",
    "BinaryMetrics",
    "BootstrapUnit",
    "CalibrationBin",
    "CalibrationCurve",
    "CriterionResult",
    "DecisionCurve",
    "Disparity",
    "Estimate",
    "EstimateStatus",
    "EvaluationResult",
    "FairnessGap",
    "GroupResult",
    "IntervalSides",
    "LabelResult",
    "MultilabelMetrics",
    "Provenance",
    "RocCurve",
    "SubgroupTable",
    "Verdict",
    "canonical_attribute",
    "statistics_digest_of",
]

BinaryMetricName = Literal[
    "prevalence",
    "auroc",
    "average_precision",
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "f1",
    "balanced_accuracy",
    "lr_positive",
    "lr_negative",
    "sensitivity_at_specificity",
    "specificity_at_sensitivity",
    "brier",
    "log_loss",
    "ece",
    "ece_equal_mass",
    "calibration_slope",
    "calibration_intercept",
    "net_benefit",
]
"""The name of every `Estimate` of `BinaryMetrics`, in order (a test checks the two agree)."""
BINARY_METRIC_NAMES: tuple[BinaryMetricName, ...] = get_args(BinaryMetricName)

# Subgroup vocabulary, shared by the engine (validators.fairness), the policy and the views.
AGE_COLUMN = "age"
"""The attribute column of ages in years, banded into `AGE_BAND`."""
AGE_BAND = "age_band"
MISSING = "(missing)"
"""The level of a case whose attribute value is missing (None, NaN or blank)."""
DEFAULT_AGE_BANDS: tuple[float, ...] = (0, 18, 40, 65)
"""Band edges in years: 0-18, 18-40, 40-65, 65+ (each band includes its lower edge)."""
DEFAULT_SUBGROUP_METRICS: tuple[str, ...] = ("auroc", "sensitivity", "specificity", "ppv", "npv")
"""The metrics every group gets intervals for, and disparities of, unless a policy says."""


def canonical_attribute(name: str) -> str:
    """Return the attribute a name stands for: `age` is grouped as `age_band`."""
    return AGE_BAND if name == AGE_COLUMN else name


MAX_CURVE_POINTS = 201
"""Most points a stored ROC or decision curve may hold: enough to plot, small to store."""

EstimateStatus = Literal["ok", "partial", "undefined", "suppressed"]
IntervalSides = Literal["two", "lower", "upper"]
BootstrapUnit = Literal["case", "patient"]


class _Result(BaseModel):
    """Base of every result model: unknown keys are errors, numbers are finite, values frozen."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class Estimate(_Result):
    """One number with its interval and how it was computed (DESIGN.md, "Results").

    `status` is `ok` (the estimate is a number), `partial` (a number over only part of what it
    should cover: a macro average that had to leave out a label whose metric is undefined;
    `reason` names what was left out, and a policy does not judge it), `undefined` (the data do
    not define it: one class only, a zero denominator, or an interval that could not be formed;
    `reason` says which) or
    `suppressed` (withheld from a vendor-facing view because a group or count is too small; then
    `n` and `n_cases` are withheld too, as they are themselves small counts). `reason` is required
    unless the status is `ok`; on an `ok` estimate it may carry a caveat.

    `n` counts the units the interval was computed over: patients where the bootstrap resamples
    patients, cases otherwise. `n_cases` always counts cases. `replicates_undefined` counts the
    bootstrap replicates in which the metric was undefined and that the percentile interval left
    out (0 for other methods).

    `sides` says what the interval is: `two` (lower and upper bounds, each at (1 - level) / 2),
    `upper` (a one-sided upper confidence bound at `level`: no lower bound is claimed), or
    `lower` (a one-sided lower bound). A bound that is infinite (a likelihood ratio whose
    replicates reach +inf, a calibration slope under complete separation) is never stored as a
    number: its value is None and `lower_unbounded` / `upper_unbounded` is True. `bound(side)`
    reads a bound as a float, infinite where unbounded.
    """

    estimate: float | None
    lower: float | None
    upper: float | None
    level: float = Field(gt=0.0, lt=1.0)
    n: int | None = Field(ge=0)
    n_cases: int | None = Field(ge=0)
    method: str
    status: EstimateStatus
    reason: str | None
    replicates_undefined: int = Field(default=0, ge=0)
    sides: IntervalSides = "two"
    lower_unbounded: bool = False
    upper_unbounded: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for side, value, unbounded in (
            ("lower", self.lower, self.lower_unbounded),
            ("upper", self.upper, self.upper_unbounded),
        ):
            if unbounded and value is not None:
                raise ValueError(f"an unbounded {side} side carries no number; got {value}")
        has_lower = self.lower is not None or self.lower_unbounded
        has_upper = self.upper is not None or self.upper_unbounded
        if self.sides == "two" and has_lower != has_upper:
            raise ValueError("a two-sided interval needs both bounds, or neither")
        if self.sides == "upper" and (has_lower or not has_upper):
            raise ValueError("a one-sided upper bound has an upper side and no lower one")
        if self.sides == "lower" and (has_upper or not has_lower):
            raise ValueError("a one-sided lower bound has a lower side and no upper one")
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise ValueError(f"lower bound {self.lower} is above upper bound {self.upper}")
        if self.status in ("ok", "partial"):
            if self.estimate is None:
                raise ValueError(
                    f"an {self.status} estimate needs a number; use status 'undefined' instead"
                )
            if self.n is None or self.n_cases is None:
                raise ValueError(f"an {self.status} estimate needs its n and n_cases")
            if self.status == "partial" and not self.reason:
                raise ValueError("a partial estimate needs the reason: what it left out")
            return self
        if self.estimate is not None or has_lower or has_upper:
            raise ValueError(f"a {self.status} estimate carries no numbers")
        if not self.reason:
            raise ValueError(f"a {self.status} estimate needs the reason")
        if self.status == "undefined" and (self.n is None or self.n_cases is None):
            raise ValueError("an undefined estimate still reports n and n_cases")
        if self.status == "suppressed" and (self.n is not None or self.n_cases is not None):
            raise ValueError("a suppressed estimate withholds n and n_cases")
        return self

    @classmethod
    def ok(
        cls,
        estimate: float,
        *,
        lower: float | None = None,
        upper: float | None = None,
        level: float,
        n: int,
        n_cases: int | None = None,
        method: str,
        replicates_undefined: int = 0,
        note: str | None = None,
        sides: IntervalSides = "two",
        lower_unbounded: bool = False,
        upper_unbounded: bool = False,
    ) -> Estimate:
        """Return a defined estimate; without bounds it is a point estimate only."""
        return cls(
            estimate=estimate,
            lower=lower,
            upper=upper,
            level=level,
            n=n,
            n_cases=n if n_cases is None else n_cases,
            method=method,
            status="ok",
            reason=note,
            replicates_undefined=replicates_undefined,
            sides=sides,
            lower_unbounded=lower_unbounded,
            upper_unbounded=upper_unbounded,
        )

    @classmethod
    def undefined(
        cls,
        reason: str,
        *,
        n: int,
        n_cases: int | None = None,
        level: float,
        method: str,
        replicates_undefined: int = 0,
    ) -> Estimate:
        """Return an estimate the data do not define, with the reason."""
        return cls(
            estimate=None,
            lower=None,
            upper=None,
            level=level,
            n=n,
            n_cases=n if n_cases is None else n_cases,
            method=method,
            status="undefined",
            reason=reason,
            replicates_undefined=replicates_undefined,
        )

    @classmethod
    def suppressed(
        cls,
        reason: str = "fewer cases than the policy's minimum group size",
        *,
        level: float,
        method: str,
    ) -> Estimate:
        """Return an estimate withheld from a vendor-facing view: no numbers, no counts."""
        return cls(
            estimate=None,
            lower=None,
            upper=None,
            level=level,
            n=None,
            n_cases=None,
            method=method,
            status="suppressed",
            reason=reason,
        )

    @property
    def has_interval(self) -> bool:
        """Whether the estimate reports an interval (two-sided or one-sided)."""
        return (
            self.lower is not None
            or self.upper is not None
            or self.lower_unbounded
            or self.upper_unbounded
        )

    def bound(self, side: Literal["lower", "upper"]) -> float | None:
        """Return the lower or upper bound as a float (+-inf where unbounded), None if absent."""
        if side == "lower":
            return -math.inf if self.lower_unbounded else self.lower
        return math.inf if self.upper_unbounded else self.upper

    def suppress(
        self, reason: str = "fewer cases than the policy's minimum group size"
    ) -> Estimate:
        """Return this estimate withheld: same level and method, no numbers, no counts."""
        return Estimate.suppressed(reason, level=self.level, method=self.method)


def _check_lengths(name: str, **columns: Sequence[object]) -> None:
    lengths = {key: len(values) for key, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{name} columns must have one length each; got {lengths}")
    longest = max(lengths.values(), default=0)
    if longest > MAX_CURVE_POINTS:
        raise ValueError(f"{name} holds {longest} points; at most {MAX_CURVE_POINTS} are stored")


class RocCurve(_Result):
    """ROC curve points in order of decreasing threshold, from (0, 0) to (1, 1).

    Point `i` is the operating point "positive when score >= thresholds[i]"; the first point's
    threshold is `None`, meaning above every score (nothing called positive). Thinned to at most
    `MAX_CURVE_POINTS` points along the curve's length, always keeping both ends.
    """

    fpr: list[float]
    tpr: list[float]
    thresholds: list[float | None]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _check_lengths("ROC curve", fpr=self.fpr, tpr=self.tpr, thresholds=self.thresholds)
        return self


class CalibrationBin(_Result):
    """One bin of a reliability diagram: its score range and what happened in it."""

    lower: float
    upper: float
    mean_predicted: float
    observed_rate: float
    count: int = Field(ge=1)


class CalibrationCurve(_Result):
    """Reliability diagram: equal-width (`uniform`) or equal-mass (`quantile`) bins.

    Bins are `(lower, upper]` (the first also includes its lower edge), as in sklearn's
    `calibration_curve`; empty bins are left out, so there may be fewer than `n_bins`.
    """

    strategy: Literal["uniform", "quantile"]
    n_bins: int = Field(ge=1)
    bins: list[CalibrationBin]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len(self.bins) > self.n_bins:
            raise ValueError(f"{len(self.bins)} bins stored for n_bins={self.n_bins}")
        return self


class DecisionCurve(_Result):
    """Net benefit over threshold probabilities (Vickers & Elkin 2006).

    `net_benefit_model[i]` is the model's net benefit when cases with predicted probability
    `>= thresholds[i]` are treated; `net_benefit_all` treats everyone; treating no one is 0.
    """

    thresholds: list[float]
    net_benefit_model: list[float]
    net_benefit_all: list[float]
    net_benefit_none: float = 0.0

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _check_lengths(
            "decision curve",
            thresholds=self.thresholds,
            net_benefit_model=self.net_benefit_model,
            net_benefit_all=self.net_benefit_all,
        )
        return self


class BinaryMetrics(_Result):
    """Every binary metric of one label on one population, each an `Estimate`, plus the curves.

    Operating-point metrics use the rule "positive when score >= threshold", on the scale the
    scores were given in (`scores`). Counts are `None` only when withheld by suppression; curves
    are `None` where the data do not define them (the ROC curve needs both classes) or where
    they are withheld.
    """

    task: Literal["binary"] = "binary"
    scores: Literal["probability", "logit"]
    threshold: float
    target_specificity: float = Field(ge=0.0, le=1.0)
    target_sensitivity: float = Field(ge=0.0, le=1.0)
    calibration_bins: int = Field(ge=1)
    n_cases: int | None = Field(ge=0)
    n_patients: int | None = Field(ge=0)
    n_positive: int | None = Field(ge=0)
    n_negative: int | None = Field(ge=0)

    prevalence: Estimate
    auroc: Estimate
    average_precision: Estimate
    sensitivity: Estimate
    specificity: Estimate
    ppv: Estimate
    npv: Estimate
    f1: Estimate
    balanced_accuracy: Estimate
    lr_positive: Estimate
    lr_negative: Estimate
    sensitivity_at_specificity: Estimate
    specificity_at_sensitivity: Estimate
    brier: Estimate
    log_loss: Estimate
    ece: Estimate
    ece_equal_mass: Estimate
    calibration_slope: Estimate
    calibration_intercept: Estimate
    net_benefit: Estimate

    roc_curve: RocCurve | None
    calibration_curve: CalibrationCurve | None
    calibration_curve_equal_mass: CalibrationCurve | None
    decision_curve: DecisionCurve | None


class LabelResult(_Result):
    """The binary metrics of one label of a multilabel task."""

    label: str
    metrics: BinaryMetrics


class AveragedMetrics(_Result):
    """Metrics averaged over labels: `macro` (mean of per-label values) or `micro` (pooled).

    `covers` names, per metric, the labels the average is over: every label, unless the macro
    average had to leave out a label whose metric is undefined (its estimate is then `partial`).
    """

    covers: dict[str, list[str]]

    auroc: Estimate
    average_precision: Estimate
    sensitivity: Estimate
    specificity: Estimate
    ppv: Estimate
    npv: Estimate
    f1: Estimate
    balanced_accuracy: Estimate
    brier: Estimate
    log_loss: Estimate


AVERAGED_METRIC_NAMES: tuple[str, ...] = tuple(
    name for name, field in AveragedMetrics.model_fields.items() if field.annotation is Estimate
)
"""The `Estimate` fields of `AveragedMetrics` (macro and micro averages)."""


class MultilabelMetrics(_Result):
    """Per-label binary metrics and their macro and micro averages, from the same replicates."""

    task: Literal["multilabel"] = "multilabel"
    labels: list[str]
    per_label: list[LabelResult]
    macro: AveragedMetrics
    micro: AveragedMetrics

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if [result.label for result in self.per_label] != self.labels:
            raise ValueError("per_label must follow the order of labels, one result each")
        return self


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


class Provenance(_Result):
    """What produced a result: library versions, the resampling settings and the time."""

    assay_version: str
    python_version: str
    numpy_version: str
    sklearn_version: str | None
    seed: int
    replicates: int = Field(ge=0)
    level: float = Field(gt=0.0, lt=1.0)
    ci_method: str
    bootstrap_unit: BootstrapUnit | None
    created_at: datetime

    @classmethod
    def capture(
        cls,
        *,
        seed: int,
        replicates: int,
        level: float,
        ci_method: str,
        bootstrap_unit: BootstrapUnit | None,
        created_at: datetime | None = None,
    ) -> Provenance:
        """Return the provenance of a result computed now, in this environment."""
        import numpy

        return cls(
            assay_version=_package_version("assay") or "unknown",
            python_version=platform.python_version(),
            numpy_version=numpy.__version__,
            sklearn_version=_package_version("scikit-learn"),
            seed=seed,
            replicates=replicates,
            level=level,
            ci_method=ci_method,
            bootstrap_unit=bootstrap_unit,
            created_at=created_at or datetime.now(UTC),
        )


MetricsOf = Annotated[BinaryMetrics | MultilabelMetrics, Field(discriminator="task")]
GroupStatus = Literal["ok", "empty", "suppressed"]
FairnessGapName = Literal[
    "equal_opportunity_difference",
    "equalized_odds_difference",
    "demographic_parity_difference",
]


class GroupResult(_Result):
    """One subgroup: the attribute values that define it, its size and its metrics.

    `status` is `empty` for an intersection with no case (shown, not dropped), `suppressed` in a
    vendor-facing view when the group (or a complementary one) is below the minimum size, and
    `ok` otherwise. `insufficient_n` flags a group below the minimum in the committee view, which
    still shows its numbers. `metrics` is `None` when empty or suppressed.
    """

    attributes: dict[str, str]
    label: str
    status: GroupStatus
    insufficient_n: bool
    n_cases: int | None = Field(ge=0)
    n_patients: int | None = Field(ge=0)
    metrics: MetricsOf | None


class SubgroupTable(_Result):
    """Every group of one attribute, or of one intersection of attributes.

    For a multilabel task each group's metrics are `MultilabelMetrics` (every label, macro and
    micro) without curves.
    """

    attributes: list[str]
    groups: list[GroupResult]


class Disparity(_Result):
    """A metric's gap between a group and a reference (`overall` or another group's label).

    The interval comes from the same bootstrap replicates as both sides (paired). `label` names
    the label of a multilabel task the metric is of (None for a binary task).
    """

    attributes: list[str]
    label: str | None = None
    metric: str
    kind: Literal["difference", "ratio"]
    group: str
    reference: str
    value: Estimate


class FairnessGap(_Result):
    """A fairness summary over the groups of one attribute (or intersection), with its CI.

    `label` names the label of a multilabel task the rates are of (None for a binary task).
    """

    attributes: list[str]
    label: str | None = None
    name: FairnessGapName
    value: Estimate


CriterionOutcome = Literal["pass", "fail", "insufficient_data"]


class CriterionResult(_Result):
    """How one policy criterion came out, with the observed value and the reason."""

    id: str
    description: str
    severity: Literal["required", "advisory"]
    outcome: CriterionOutcome
    reason: str
    observed: float | None = None
    limit: float | None = None


class Verdict(_Result):
    """The policy's verdict: passed only if no required criterion failed or lacked data."""

    policy_name: str
    policy_version: str
    passed: bool
    criteria: list[CriterionResult]
    summary: str


STATISTICAL_PROVENANCE = ("seed", "replicates", "level", "ci_method", "bootstrap_unit")
"""The provenance fields that decide the numbers (the others say when and with what software)."""


class EvaluationResult(_Result):
    """The evaluation of one model on one dataset.

    `overall` holds the metrics on every case; `subgroups`, `disparities` and `fairness` come from
    `validators.fairness`; `verdict` from `validators.policy` when a policy was given. `view` says
    whether small cells were suppressed for a vendor (`vendor`) or shown flagged (`committee`).

    `statistics_digest` is the SHA-256 of the result's statistical content alone: everything
    but the time and the software versions of the provenance (see `statistics_digest_of`). It
    is derived, never set: it appears in the JSON, and a document whose digest does not match
    its content is refused.
    """

    task: Literal["binary", "multilabel"]
    view: Literal["committee", "vendor"] = "committee"
    provenance: Provenance
    overall: MetricsOf
    subgroups: list[SubgroupTable] = Field(default_factory=list)
    disparities: list[Disparity] = Field(default_factory=list)
    fairness: list[FairnessGap] = Field(default_factory=list)
    verdict: Verdict | None = None
    policy: dict[str, object] | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _digest_matches(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        claimed = None
        if isinstance(data, dict) and "statistics_digest" in data:
            data = dict(data)
            claimed = data.pop("statistics_digest")
        result = handler(data)
        if claimed is not None and claimed != result.statistics_digest:
            raise ValueError(
                f"statistics_digest {claimed} does not match the result's content "
                f"({result.statistics_digest}): the numbers were changed after it was computed"
            )
        return result

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.overall.task != self.task:
            raise ValueError(f"a {self.task} result holds {self.overall.task} metrics")
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def statistics_digest(self) -> str:
        """Return the SHA-256 (hex) of the statistical content; see `statistics_digest_of`."""
        return statistics_digest_of(self)


def statistics_digest_of(result: EvaluationResult) -> str:
    """Return the SHA-256 of a result's statistics: no timestamp, no hardware, no software.

    The content is every field but `provenance`'s time and library versions (its seed,
    replicates, level, interval method and unit stay: they decide the numbers), written as
    canonical JSON (keys sorted, no spaces, floats in Python's shortest round-trip form, which
    is the same on every platform). Equal digests mean equal numbers to the last bit.
    """
    content = result.model_dump(mode="json", exclude={"statistics_digest"})
    provenance = content.pop("provenance")
    content["provenance"] = {key: provenance[key] for key in STATISTICAL_PROVENANCE}
    text = json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
