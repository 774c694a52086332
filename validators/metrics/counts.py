"""Confusion counts and the metrics computed from them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from validators.metrics.validation import (
    NO_NEGATIVES,
    NO_POSITIVES,
    NO_WEIGHT,
    FloatArray,
    MetricBatch,
    MetricValue,
    _Reasons,
    safe_divide_array,
    validate_labels,
    validate_sample_weight,
)

# --------------------------------------------------------------------------------------------
# Confusion counts and the metrics defined by them
# --------------------------------------------------------------------------------------------


class ConfusionCounts(NamedTuple):
    """Weighted confusion counts of one population at one operating point."""

    tp: float
    fp: float
    tn: float
    fn: float


class ConfusionCountsBatch(NamedTuple):
    """Confusion counts over R weight rows (bootstrap replicates), each an array `[R]`."""

    tp: FloatArray
    fp: FloatArray
    tn: FloatArray
    fn: FloatArray

    @classmethod
    def of(cls, counts: ConfusionCounts) -> ConfusionCountsBatch:
        """Return one set of counts as a batch of one row."""
        return cls(*(np.array([value], dtype=np.float64) for value in counts))


def confusion_counts(
    y_true: ArrayLike, y_pred: ArrayLike, *, sample_weight: ArrayLike | None = None
) -> ConfusionCounts:
    """Return (TP, FP, TN, FN) of binary predictions, weighted by `sample_weight` if given."""
    labels = validate_labels(y_true)
    predicted = validate_labels(y_pred, name="y_pred")
    if labels.shape != predicted.shape:
        raise ValueError(
            f"y_true has {labels.shape[0]} values but y_pred has {predicted.shape[0]}; "
            "expected one label and one prediction per case"
        )
    weights = validate_sample_weight(sample_weight, labels.shape[0])
    w = np.ones(labels.shape[0]) if weights is None else weights
    tp = float(w @ (labels & predicted))
    fp = float(w @ (~labels & predicted))
    fn = float(w @ (labels & ~predicted))
    tn = float(w @ (~labels & ~predicted))
    return ConfusionCounts(tp=tp, fp=fp, tn=tn, fn=fn)


CountFormula = Callable[[ConfusionCountsBatch, _Reasons], FloatArray]


def _sensitivity(c: ConfusionCountsBatch, r: _Reasons) -> FloatArray:
    return r.divide(c.tp, c.tp + c.fn, NO_POSITIVES)


def _specificity(c: ConfusionCountsBatch, r: _Reasons) -> FloatArray:
    return r.divide(c.tn, c.tn + c.fp, NO_NEGATIVES)


def _ppv(c: ConfusionCountsBatch, r: _Reasons) -> FloatArray:
    return r.divide(c.tp, c.tp + c.fp, "no case was called positive (TP + FP = 0)")


def _npv(c: ConfusionCountsBatch, r: _Reasons) -> FloatArray:
    return r.divide(c.tn, c.tn + c.fn, "no case was called negative (TN + FN = 0)")


def _f1(c: ConfusionCountsBatch, r: _Reasons) -> FloatArray:
    return r.divide(2 * c.tp, 2 * c.tp + c.fp + c.fn, "no positive cases and none called positive")


def _balanced_accuracy(c: ConfusionCountsBatch, r: _Reasons) -> FloatArray:
    return (_sensitivity(c, r) + _specificity(c, r)) / 2


def _ratio_of_rates(
    numerator: FloatArray, denominator: FloatArray, r: _Reasons, zero_over_zero: str
) -> FloatArray:
    """Return a ratio of two rates: +inf where only the denominator is 0, undefined at 0 / 0."""
    r.mark((numerator == 0) & (denominator == 0), zero_over_zero)
    out = safe_divide_array(numerator, denominator)
    out[(denominator == 0) & (numerator > 0)] = np.inf
    return out


LR_POSITIVE_INFINITE = "no false positives: specificity is 1, so LR+ is infinite"
LR_NEGATIVE_INFINITE = "no true negatives: specificity is 0, so LR- is infinite"


def _lr_positive(c: ConfusionCountsBatch, r: _Reasons) -> FloatArray:
    false_positive_rate = r.divide(c.fp, c.fp + c.tn, NO_NEGATIVES)
    return _ratio_of_rates(
        _sensitivity(c, r),
        false_positive_rate,
        r,
        "no true and no false positives: LR+ is 0 / 0",
    )


def _lr_negative(c: ConfusionCountsBatch, r: _Reasons) -> FloatArray:
    false_negative_rate = r.divide(c.fn, c.fn + c.tp, NO_POSITIVES)
    return _ratio_of_rates(
        false_negative_rate,
        _specificity(c, r),
        r,
        "no false negatives and no true negatives: LR- is 0 / 0",
    )


def _prevalence(c: ConfusionCountsBatch, r: _Reasons) -> FloatArray:
    return r.divide(c.tp + c.fn, c.tp + c.fn + c.tn + c.fp, NO_WEIGHT)


COUNT_METRICS: dict[str, CountFormula] = {
    "sensitivity": _sensitivity,
    "specificity": _specificity,
    "ppv": _ppv,
    "npv": _npv,
    "f1": _f1,
    "balanced_accuracy": _balanced_accuracy,
    "lr_positive": _lr_positive,
    "lr_negative": _lr_negative,
    "prevalence": _prevalence,
}
"""The metrics that are functions of the confusion counts alone, by name."""
_INFINITE_REASONS = {"lr_positive": LR_POSITIVE_INFINITE, "lr_negative": LR_NEGATIVE_INFINITE}


def count_metric_batch(name: str, counts: ConfusionCountsBatch) -> MetricBatch:
    """Return metric `name` (a key of `COUNT_METRICS`) for each row of batched counts."""
    formula = COUNT_METRICS[name]
    reasons = _Reasons(counts.tp.shape[0])
    batch = reasons.finish(formula(counts, reasons))
    infinite = _INFINITE_REASONS.get(name)
    return batch if infinite is None else replace(batch, infinite=infinite)


def count_metric(name: str, counts: ConfusionCounts) -> MetricValue:
    """Return metric `name` (a key of `COUNT_METRICS`) of one set of confusion counts."""
    return count_metric_batch(name, ConfusionCountsBatch.of(counts)).value()


def _count_score(
    name: str, y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None
) -> MetricValue:
    return count_metric(name, confusion_counts(y_true, y_pred, sample_weight=sample_weight))


def sensitivity_score(
    y_true: ArrayLike, y_pred: ArrayLike, *, sample_weight: ArrayLike | None = None
) -> MetricValue:
    """Return sensitivity (recall, true-positive rate) TP / (TP + FN)."""
    return _count_score("sensitivity", y_true, y_pred, sample_weight)


def specificity_score(
    y_true: ArrayLike, y_pred: ArrayLike, *, sample_weight: ArrayLike | None = None
) -> MetricValue:
    """Return specificity (true-negative rate) TN / (TN + FP)."""
    return _count_score("specificity", y_true, y_pred, sample_weight)


def ppv_score(
    y_true: ArrayLike, y_pred: ArrayLike, *, sample_weight: ArrayLike | None = None
) -> MetricValue:
    """Return the positive predictive value (precision) TP / (TP + FP)."""
    return _count_score("ppv", y_true, y_pred, sample_weight)


def npv_score(
    y_true: ArrayLike, y_pred: ArrayLike, *, sample_weight: ArrayLike | None = None
) -> MetricValue:
    """Return the negative predictive value TN / (TN + FN)."""
    return _count_score("npv", y_true, y_pred, sample_weight)


def f1_score(
    y_true: ArrayLike, y_pred: ArrayLike, *, sample_weight: ArrayLike | None = None
) -> MetricValue:
    """Return F1, 2 TP / (2 TP + FP + FN): the harmonic mean of sensitivity and PPV."""
    return _count_score("f1", y_true, y_pred, sample_weight)


def balanced_accuracy_score(
    y_true: ArrayLike, y_pred: ArrayLike, *, sample_weight: ArrayLike | None = None
) -> MetricValue:
    """Return balanced accuracy, the mean of sensitivity and specificity."""
    return _count_score("balanced_accuracy", y_true, y_pred, sample_weight)


def lr_positive(
    y_true: ArrayLike, y_pred: ArrayLike, *, sample_weight: ArrayLike | None = None
) -> MetricValue:
    """Return the positive likelihood ratio, sensitivity / (1 - specificity)."""
    return _count_score("lr_positive", y_true, y_pred, sample_weight)


def lr_negative(
    y_true: ArrayLike, y_pred: ArrayLike, *, sample_weight: ArrayLike | None = None
) -> MetricValue:
    """Return the negative likelihood ratio, (1 - sensitivity) / specificity."""
    return _count_score("lr_negative", y_true, y_pred, sample_weight)
