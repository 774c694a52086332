"""Typed metrics of one population: curves, binary and multilabel metrics."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from validators.results.estimates import Estimate, _check_lengths, _Result
from validators.vocabulary import ScoreScale


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
    scores: ScoreScale
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
