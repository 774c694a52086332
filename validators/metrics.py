"""Binary classification metrics as pure functions, built from split kernels.

Every metric goes validate → format → sufficient statistics → compute, as in sklearn and
torchmetrics: confusion counts (TP, FP, TN, FN) for operating-point metrics, cumulative class
weights in score order for the ranking metrics, per-case losses for the probability metrics. The
kernels take a weight matrix `W` of shape `[R, N]` (row `r` weighs case `i` by `W[r, i]`), so one
code path computes a point estimate (`R = 1`, unit or sample weights) and `R` bootstrap replicates
(resampling counts, see `validators.bootstrap`). Integer weights are exact: a case with weight `k`
counts as `k` copies of it.

An undefined metric (one class only, a zero denominator) is never 0 and never a silent NaN: scalar
functions return `MetricValue(None, reason)`, batch kernels return a `MetricBatch` whose NaN entries
each carry a reason. `safe_divide_array` is the one place where division by zero is decided.

`binary_metrics` and `multilabel_metrics` at the end put it all together with intervals; the
resampling engine they use lives in `validators.bootstrap`, the calibration metrics in
`validators.calibration`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from validators.results import BinaryMetrics, MultilabelMetrics, RocCurve

__all__ = [
    "COUNT_METRICS",
    "NO_NEGATIVES",
    "NO_POSITIVES",
    "CiMethod",
    "ConfusionCounts",
    "ConfusionCountsBatch",
    "MetricBatch",
    "MetricValue",
    "RankedCases",
    "RankingBatch",
    "ScoreScale",
    "average_precision_score",
    "balanced_accuracy_score",
    "binary_metrics",
    "brier_score_loss",
    "confusion_counts",
    "count_metric",
    "count_metric_batch",
    "f1_score",
    "log_loss",
    "lr_negative",
    "lr_positive",
    "multilabel_metrics",
    "net_benefit",
    "npv_score",
    "ppv_score",
    "ranking_batch",
    "roc_auc_score",
    "roc_curve",
    "roc_points",
    "safe_divide",
    "safe_divide_array",
    "sensitivity_at_specificity",
    "sensitivity_score",
    "sigmoid",
    "specificity_at_sensitivity",
    "specificity_score",
    "validate_binary",
    "validate_labels",
    "validate_probabilities",
    "validate_sample_weight",
]

FloatArray: TypeAlias = NDArray[np.float64]
BoolArray: TypeAlias = NDArray[np.bool_]
IntArray: TypeAlias = NDArray[np.intp]
ScoreScale = Literal["probability", "logit"]
CiMethod = Literal["bootstrap", "wilson", "delong", "none"]

NO_POSITIVES = "no positive cases (TP + FN = 0)"
NO_NEGATIVES = "no negative cases (TN + FP = 0)"
NO_WEIGHT = "no cases (the weights sum to zero)"


# --------------------------------------------------------------------------------------------
# Validation and formatting
# --------------------------------------------------------------------------------------------


def _one_dimensional(values: ArrayLike, name: str) -> NDArray[Any]:
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            f"{name} must hold one value per case (shape [N]); got shape {array.shape}"
        )
    return array


def _first_bad(mask: BoolArray) -> str:
    where = np.flatnonzero(mask)
    return f"{where.size} value{'s' if where.size != 1 else ''} (first at index {where[0]})"


def validate_labels(y_true: ArrayLike, *, name: str = "y_true") -> BoolArray:
    """Return binary labels as booleans; refuse anything but 0/1 or True/False."""
    labels = _one_dimensional(y_true, name)
    if labels.dtype == np.bool_:
        return labels.astype(np.bool_, copy=False)
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
        raise ValueError(
            f"{name} must hold binary labels 0/1 or True/False; got values of type {labels.dtype}"
        )
    bad = ~np.isin(labels, (0, 1))
    if bad.any():
        found = np.unique(labels[bad])[:5].tolist()
        raise ValueError(
            f"{name} must hold binary labels 0/1 or True/False; found {found} in {_first_bad(bad)}"
        )
    as_bool: BoolArray = labels == 1
    return as_bool


def _validate_scores(y_score: ArrayLike, *, name: str) -> FloatArray:
    raw = _one_dimensional(y_score, name)
    if raw.dtype == np.bool_ or not np.issubdtype(raw.dtype, np.number):
        raise ValueError(f"{name} must hold numeric scores; got values of type {raw.dtype}")
    scores = raw.astype(np.float64)
    nan = np.isnan(scores)
    if nan.any():
        raise ValueError(
            f"{name} holds NaN in {_first_bad(nan)}; expected a finite score for every case"
        )
    infinite = np.isinf(scores)
    if infinite.any():
        raise ValueError(
            f"{name} holds infinite values in {_first_bad(infinite)}; "
            "expected a finite score for every case"
        )
    return scores


def validate_binary(y_true: ArrayLike, y_score: ArrayLike) -> tuple[BoolArray, FloatArray]:
    """Return labels as booleans and scores as float64 after checking what a metric needs.

    Refuses, with a `ValueError` that says what was expected: no cases, labels other than 0/1,
    NaN or infinite scores, and labels and scores of different lengths.
    """
    labels = validate_labels(y_true)
    scores = _validate_scores(y_score, name="y_score")
    if labels.shape[0] != scores.shape[0]:
        raise ValueError(
            f"y_true has {labels.shape[0]} values but y_score has {scores.shape[0]}; "
            "expected one label and one score per case"
        )
    if labels.shape[0] == 0:
        raise ValueError("no cases: expected at least one label and one score")
    return labels, scores


def validate_probabilities(y_prob: FloatArray, *, name: str = "y_prob") -> FloatArray:
    """Return the scores unchanged after checking they are probabilities in [0, 1]."""
    outside = (y_prob < 0.0) | (y_prob > 1.0)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"{name} must be probabilities in [0, 1]; found {y_prob[first]!r} in "
            f"{_first_bad(outside)}; pass scores='logit' if these are logits"
        )
    return y_prob


def validate_sample_weight(sample_weight: ArrayLike | None, n_cases: int) -> FloatArray | None:
    """Return sample weights as float64, or None; refuse negative, NaN or misshapen weights."""
    if sample_weight is None:
        return None
    weights = _validate_scores(sample_weight, name="sample_weight")
    if weights.shape[0] != n_cases:
        raise ValueError(
            f"sample_weight has {weights.shape[0]} values for {n_cases} cases; expected one each"
        )
    negative = weights < 0
    if negative.any():
        raise ValueError(
            f"sample_weight must be >= 0; found negative weights in {_first_bad(negative)}"
        )
    return weights


def sigmoid(logits: FloatArray) -> FloatArray:
    """Return the logistic function of `logits`, without overflow for large magnitudes."""
    out = np.empty_like(logits, dtype=np.float64)
    positive = logits >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-logits[positive]))
    exp_negative = np.exp(logits[~positive])
    out[~positive] = exp_negative / (1.0 + exp_negative)
    return out


def _weight_row(sample_weight: FloatArray | None, n_cases: int) -> NDArray[Any]:
    """Return the `[1, N]` weight matrix of a point estimate: unit or sample weights."""
    if sample_weight is None:
        return np.ones((1, n_cases), dtype=np.int64)
    return sample_weight[np.newaxis, :]


# --------------------------------------------------------------------------------------------
# Division, undefined values and their reasons
# --------------------------------------------------------------------------------------------


class MetricValue(NamedTuple):
    """A metric's value, or None with the reason it is undefined on these data."""

    value: float | None
    reason: str | None

    @property
    def defined(self) -> bool:
        """Whether the metric has a value."""
        return self.value is not None


def safe_divide_array(numerator: ArrayLike, denominator: ArrayLike) -> FloatArray:
    """Return `numerator / denominator` elementwise, NaN where the denominator is 0.

    This is the one place where division by zero is decided: x / 0 is undefined for every x,
    0 / 0 included, never 0 and never infinite. NaN marks undefined entries inside the kernels;
    it never reaches a result, where it becomes status `undefined` with its reason.
    """
    num, den = np.broadcast_arrays(
        np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    )
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def safe_divide(
    numerator: float, denominator: float, *, reason: str = "the denominator is zero"
) -> MetricValue:
    """Return `numerator / denominator`, or undefined with `reason` when the denominator is 0."""
    value = float(safe_divide_array(numerator, denominator))
    return MetricValue(None, reason) if np.isnan(value) else MetricValue(value, None)


class _Reasons:
    """Per-replicate reasons for undefined values, recorded as the kernels divide."""

    def __init__(self, size: int) -> None:
        self.codes = np.zeros(size, dtype=np.int16)
        self.texts: list[str] = []

    def mark(self, where: BoolArray, reason: str) -> None:
        """Record `reason` for the entries of `where` that have no reason yet."""
        fresh = where & (self.codes == 0)
        if fresh.any():
            if reason not in self.texts:
                self.texts.append(reason)
            self.codes[fresh] = self.texts.index(reason) + 1

    def divide(self, numerator: ArrayLike, denominator: ArrayLike, reason: str) -> FloatArray:
        """Divide through `safe_divide_array`, recording `reason` where the denominator is 0."""
        self.mark(np.asarray(denominator) == 0, reason)
        return safe_divide_array(numerator, denominator)

    def finish(self, values: FloatArray) -> MetricBatch:
        """Return the values with their reasons; a NaN without a recorded reason gets one."""
        values = np.asarray(values, dtype=np.float64).copy()
        self.mark(np.isnan(values), "not defined on these data")
        values[self.codes != 0] = np.nan
        return MetricBatch(values=values, codes=self.codes, texts=tuple(self.texts))


@dataclass(frozen=True, eq=False)
class MetricBatch:
    """One metric over R weight rows: values (NaN where undefined) and why each is undefined.

    A value may be +inf or -inf: a likelihood ratio with no false positives, a calibration slope
    under complete separation. An infinite value is defined (a bootstrap interval counts it as
    the extreme it is, never drops it); `infinite` says why it is infinite, and `value()` reports
    an infinite row as undefined with that reason, since a stored estimate is always finite.
    """

    values: FloatArray
    codes: NDArray[np.int16]
    texts: tuple[str, ...]
    infinite: str | None = None

    def reason(self, row: int = 0) -> str | None:
        """Return why row `row` is undefined, or None when it is defined."""
        code = int(self.codes[row])
        return None if code == 0 else self.texts[code - 1]

    def value(self, row: int = 0) -> MetricValue:
        """Return row `row` as a `MetricValue` (an infinite row as undefined, with why)."""
        reason = self.reason(row)
        if reason:
            return MetricValue(None, reason)
        value = float(self.values[row])
        if np.isinf(value):
            return MetricValue(None, self.infinite or f"the value is {value}")
        return MetricValue(value, None)

    @classmethod
    def undefined(cls, size: int, reason: str) -> MetricBatch:
        """Return a metric undefined in every row for one reason."""
        return cls(np.full(size, np.nan), np.ones(size, dtype=np.int16), (reason,))


def _reasons_for(values: FloatArray, reason: str) -> MetricBatch:
    collector = _Reasons(values.shape[0])
    collector.mark(np.isnan(values), reason)
    return collector.finish(values)


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


# --------------------------------------------------------------------------------------------
# Ranking metrics: one sort, then cumulative class weights per weight row
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class RankedCases:
    """The cases of one population sorted by score once, with what the ranking kernels need.

    Positives and negatives are kept apart, each in ascending score order, as the columns of the
    weight matrix that hold them (`columns` maps items to weight columns, so pooled multilabel
    items can share their case's weight). For each positive it stores how many negatives score
    strictly below it and at or below it (ties count half in the AUROC), and how many positives
    score strictly below it (for average precision).
    """

    n_items: int
    pos_columns: IntArray
    neg_columns: IntArray
    pos_scores: FloatArray
    neg_scores: FloatArray
    neg_below_pos: IntArray
    neg_not_above_pos: IntArray
    pos_below_pos: IntArray
    pos_not_above_neg: IntArray
    ties_across_classes: bool

    @classmethod
    def build(
        cls,
        y_true: BoolArray,
        y_score: FloatArray,
        *,
        mask: BoolArray | None = None,
        columns: IntArray | None = None,
    ) -> RankedCases:
        """Return the ranking of the items selected by `mask` (all by default).

        `y_true` and `y_score` must already be validated. `columns[i]` is the weight column of
        item `i` (default: item `i` is case `i`).
        """
        items = np.arange(y_true.shape[0]) if mask is None else np.flatnonzero(mask)
        item_columns = items if columns is None else columns[items]
        labels = y_true[items]
        scores = y_score[items]
        pos_order = np.argsort(scores[labels], kind="stable")
        neg_order = np.argsort(scores[~labels], kind="stable")
        pos_scores = scores[labels][pos_order]
        neg_scores = scores[~labels][neg_order]
        neg_below = np.searchsorted(neg_scores, pos_scores, side="left")
        neg_not_above = np.searchsorted(neg_scores, pos_scores, side="right")
        return cls(
            n_items=int(items.shape[0]),
            pos_columns=np.ascontiguousarray(item_columns[labels][pos_order]),
            neg_columns=np.ascontiguousarray(item_columns[~labels][neg_order]),
            pos_scores=pos_scores,
            neg_scores=neg_scores,
            neg_below_pos=neg_below,
            neg_not_above_pos=neg_not_above,
            pos_below_pos=np.searchsorted(pos_scores, pos_scores, side="left"),
            pos_not_above_neg=np.searchsorted(pos_scores, neg_scores, side="right"),
            ties_across_classes=bool(np.any(neg_below != neg_not_above)),
        )


class RankingBatch(NamedTuple):
    """Ranking metrics over R weight rows; a field is None when it was not asked for."""

    positives: FloatArray
    negatives: FloatArray
    auroc: MetricBatch
    average_precision: MetricBatch | None
    counts: ConfusionCountsBatch | None
    sensitivity_at_specificity: MetricBatch | None
    specificity_at_sensitivity: MetricBatch | None


def _accumulator(weights: NDArray[Any]) -> type[np.generic]:
    """Return the dtype running sums of `weights` are kept in.

    int32 weights stay int32: their row sums must stay below 2^31, which `BootstrapPlan`
    guarantees (it switches to int64 weights otherwise); cumulative sums in int32 are exact and
    several times faster than in float. int8 and int16 weights accumulate in int32 while no row
    can reach 2^31 (`N x max` below it). Other integers accumulate in int64, floats in float64.
    """
    if weights.dtype == np.int32:
        return np.int32
    if weights.dtype in (np.int8, np.int16, np.uint8, np.uint16):
        bound = weights.shape[-1] * int(np.iinfo(weights.dtype).max)
        return np.int32 if bound < 2**31 else np.int64
    if np.issubdtype(weights.dtype, np.integer):
        return np.int64
    return np.float64


def _gather(weights: NDArray[Any], columns: IntArray, dtype: type[np.generic]) -> NDArray[Any]:
    """Return `weights[:, columns]` as a new array of `dtype` (fast when columns increase)."""
    gathered = np.take(weights, columns, axis=1)
    return gathered if gathered.dtype == dtype else gathered.astype(dtype)


def _running(gathered: NDArray[Any]) -> NDArray[Any]:
    """Return the inclusive running sums along each row, computed in place."""
    np.cumsum(gathered, axis=1, out=gathered)
    return gathered


def _exclusive_at(running: NDArray[Any], counts: IntArray) -> NDArray[Any]:
    """Return, per row, the sum of the first `counts[j]` items for each j: `[R, len(counts)]`.

    `running` holds inclusive running sums; `counts` must be non-decreasing, so the entries with
    `counts == 0` (sum 0) form a prefix.
    """
    rows = running.shape[0]
    if running.shape[1] == 0:
        return np.zeros((rows, counts.shape[0]), dtype=running.dtype)
    out = np.take(running, np.maximum(counts - 1, 0), axis=1)
    out[:, : int(np.searchsorted(counts, 0, side="right"))] = 0
    return out


def _exclusive_rows(running: NDArray[Any], counts: IntArray) -> FloatArray:
    """Return, for each row r, the sum of its first `counts[r]` items, as float64."""
    if running.shape[1] == 0:
        return np.zeros(running.shape[0])
    picked = running[np.arange(running.shape[0]), np.maximum(counts - 1, 0)]
    return np.where(counts > 0, picked, 0).astype(np.float64)


def _rowwise_dot(a: NDArray[Any], b: NDArray[Any]) -> FloatArray:
    """Return the dot product of each row pair as float64 (exact for integer inputs)."""
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
        exact: FloatArray = np.einsum("ij,ij->i", a, b, dtype=np.int64).astype(np.float64)
        return exact
    dot: FloatArray = np.einsum("ij,ij->i", a, b, dtype=np.float64, casting="unsafe")
    return dot


def ranking_batch(
    weights: NDArray[Any],
    ranked: RankedCases,
    *,
    average_precision: bool = False,
    threshold: float | None = None,
    target_specificity: float | None = None,
    target_sensitivity: float | None = None,
) -> RankingBatch:
    """Return AUROC (and on request AP, counts, sens@spec, spec@sens) for each weight row.

    `weights` is `[R, N]`. Integer weights are summed exactly; the work per row is two gathers,
    a running sum and a dot product over the population's cases: no per-row sort, no Python
    loop over rows. The gathers are several times faster when the weight columns are in
    ascending score order (sort the cases by score before resampling).

    With N<(s), N=(s) the negative weight scoring below and equal to s, AUROC = sum over
    positives i of w_i (N<(s_i) + N=(s_i) / 2) / (W+ W-), the weighted Mann-Whitney statistic,
    equal to the trapezoidal area under the ROC curve (sklearn). AP = sum over positives i of
    w_i precision(s_i) / W+, with precision(s) the precision of "positive when score >= s",
    sklearn's step-wise definition.
    """
    acc = _accumulator(weights)
    rows = weights.shape[0]
    pos_weights = _gather(weights, ranked.pos_columns, acc)
    neg_run = _running(_gather(weights, ranked.neg_columns, acc))
    positives = pos_weights.sum(axis=1, dtype=np.float64)
    negatives = neg_run[:, -1].astype(np.float64) if neg_run.shape[1] else np.zeros(rows)

    below = _exclusive_at(neg_run, ranked.neg_below_pos)
    if ranked.ties_across_classes:
        below_or_tied = below + _exclusive_at(neg_run, ranked.neg_not_above_pos)
        twice_area = _rowwise_dot(pos_weights, below_or_tied)
    else:
        twice_area = 2 * _rowwise_dot(pos_weights, below)
    reasons = _Reasons(rows)
    auroc = reasons.divide(
        reasons.divide(twice_area / 2, positives, NO_POSITIVES), negatives, NO_NEGATIVES
    )
    auroc_batch = reasons.finish(auroc)

    pos_run = None
    if (
        average_precision
        or threshold is not None
        or target_specificity is not None
        or (target_sensitivity is not None)
    ):
        pos_run = _running(pos_weights.copy())

    ap_batch = None
    if average_precision:
        assert pos_run is not None
        # Positive and negative weight scoring at or above each positive's score.
        true_pos = positives[:, None] - _exclusive_at(pos_run, ranked.pos_below_pos)
        false_pos = negatives[:, None] - below
        called = true_pos + false_pos
        precision = np.divide(
            true_pos, called, out=np.zeros(called.shape, dtype=np.float64), where=called != 0
        )
        ap_reasons = _Reasons(rows)
        ap = ap_reasons.divide(_rowwise_dot(pos_weights, precision), positives, NO_POSITIVES)
        ap_batch = ap_reasons.finish(ap)

    counts = None
    if threshold is not None:
        assert pos_run is not None
        k_pos = np.searchsorted(ranked.pos_scores, threshold, side="left")
        k_neg = np.searchsorted(ranked.neg_scores, threshold, side="left")
        fn = _exclusive_rows(pos_run, np.full(rows, k_pos))
        tn = _exclusive_rows(neg_run, np.full(rows, k_neg))
        counts = ConfusionCountsBatch(tp=positives - fn, fp=negatives - tn, tn=tn, fn=fn)

    sens_at_spec = None
    if target_specificity is not None:
        assert pos_run is not None
        sens_at_spec = _sensitivity_at_specificity(
            ranked, pos_run, neg_run, positives, negatives, target_specificity
        )
    spec_at_sens = None
    if target_sensitivity is not None:
        assert pos_run is not None
        spec_at_sens = _specificity_at_sensitivity(
            ranked, pos_run, neg_run, positives, negatives, target_sensitivity
        )
    return RankingBatch(
        positives=positives,
        negatives=negatives,
        auroc=auroc_batch,
        average_precision=ap_batch,
        counts=counts,
        sensitivity_at_specificity=sens_at_spec,
        specificity_at_sensitivity=spec_at_sens,
    )


def _first_meeting(denominator: FloatArray, target: float) -> FloatArray:
    """Return per row the smallest integer n with n / denominator >= target, as a bound.

    For integer running sums the comparison `running / denominator >= target` (a correctly
    rounded division, as the point estimate computes it) equals `running >= bound`, because the
    rounded quotient is monotone in the numerator; comparing integers avoids dividing the whole
    `[R, n]` matrix. For float weights the quotients are compared directly.
    """
    guess = np.ceil(target * denominator)
    with np.errstate(invalid="ignore", divide="ignore"):
        guess = np.where((guess - 1) / denominator >= target, guess - 1, guess)
        bound: FloatArray = np.where(guess / denominator < target, guess + 1, guess)
    return bound


def _count_below(running: NDArray[Any], denominator: FloatArray, target: float) -> NDArray[np.intp]:
    """Return per row how many running sums r satisfy r / denominator < target."""
    if np.issubdtype(running.dtype, np.integer):
        bound = _first_meeting(denominator, target)
        below: NDArray[np.intp] = np.count_nonzero(running < bound[:, None], axis=1)
        return below
    with np.errstate(invalid="ignore", divide="ignore"):
        below = np.count_nonzero(running / denominator[:, None] < target, axis=1)
    return below


def _sensitivity_at_specificity(
    ranked: RankedCases,
    pos_run: NDArray[Any],
    neg_run: NDArray[Any],
    positives: FloatArray,
    negatives: FloatArray,
    target: float,
) -> MetricBatch:
    """Best sensitivity over operating points with specificity >= target, per row.

    Calling the k lowest-scoring negatives negative gives specificity S_k = (their weight) / W-.
    The lowest threshold reaching the target sits just above the k*-th negative, k* the first k
    with S_k >= target (k* = 0: everything is called positive); the positives scoring above
    that negative are called positive.
    """
    reasons = _Reasons(positives.shape[0])
    reasons.mark(negatives == 0, NO_NEGATIVES)
    # S_0 = 0 is below any positive target; S_1..S_n follow the running sums.
    first = _count_below(neg_run, negatives, target) + (1 if target > 0 else 0)
    first = np.minimum(first, ranked.neg_scores.shape[0])
    not_above = np.concatenate(([0], ranked.pos_not_above_neg))[first]
    excluded = _exclusive_rows(pos_run, not_above)
    values = reasons.divide(positives - excluded, positives, NO_POSITIVES)
    return reasons.finish(values)


def _specificity_at_sensitivity(
    ranked: RankedCases,
    pos_run: NDArray[Any],
    neg_run: NDArray[Any],
    positives: FloatArray,
    negatives: FloatArray,
    target: float,
) -> MetricBatch:
    """Best specificity over operating points with sensitivity >= target, per row.

    Calling the q lowest-scoring positives negative leaves sensitivity T_q = (W+ - their
    weight) / W+. The highest threshold keeping the target is the score of the q°-th positive
    (0-based), q° the last q with T_q >= target (q° = n: nothing is called positive); the
    negatives scoring strictly below it are called negative.
    """
    reasons = _Reasons(positives.shape[0])
    reasons.mark(positives == 0, NO_POSITIVES)
    # T_0 = 1 always meets the target; T_q >= target while the weight left, W+ - running_q,
    # is at least the bound.
    if np.issubdtype(pos_run.dtype, np.integer):
        bound = _first_meeting(positives, target)
        last = np.count_nonzero(pos_run <= (positives - bound)[:, None], axis=1)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            sensitivity = (positives[:, None] - pos_run) / positives[:, None]
        last = np.count_nonzero(sensitivity >= target, axis=1)
    below = np.concatenate((ranked.neg_below_pos, [ranked.neg_scores.shape[0]]))[last]
    true_negative = _exclusive_rows(neg_run, below)
    values = reasons.divide(true_negative, negatives, NO_NEGATIVES)
    return reasons.finish(values)


def _ranking_point(
    y_true: ArrayLike,
    y_score: ArrayLike,
    sample_weight: ArrayLike | None,
    *,
    average_precision: bool = False,
    target_specificity: float | None = None,
    target_sensitivity: float | None = None,
) -> RankingBatch:
    labels, scores = validate_binary(y_true, y_score)
    weights = validate_sample_weight(sample_weight, labels.shape[0])
    return ranking_batch(
        _weight_row(weights, labels.shape[0]),
        RankedCases.build(labels, scores),
        average_precision=average_precision,
        target_specificity=target_specificity,
        target_sensitivity=target_sensitivity,
    )


def roc_auc_score(
    y_true: ArrayLike, y_score: ArrayLike, *, sample_weight: ArrayLike | None = None
) -> MetricValue:
    """Return the area under the ROC curve; ties count half (equal to sklearn's)."""
    return _ranking_point(y_true, y_score, sample_weight).auroc.value()


def average_precision_score(
    y_true: ArrayLike, y_score: ArrayLike, *, sample_weight: ArrayLike | None = None
) -> MetricValue:
    """Return average precision, sum over thresholds of (R_k - R_k-1) P_k (equal to sklearn's)."""
    batch = _ranking_point(y_true, y_score, sample_weight, average_precision=True)
    assert batch.average_precision is not None
    return batch.average_precision.value()


def sensitivity_at_specificity(
    y_true: ArrayLike,
    y_score: ArrayLike,
    target_specificity: float,
    *,
    sample_weight: ArrayLike | None = None,
) -> MetricValue:
    """Return the best sensitivity among ROC operating points with specificity >= target.

    The operating points are "positive when score >= t" for every t (every distinct score, and
    above all scores); specificity is TN / (TN + FP) at that point.
    """
    _check_target(target_specificity, "target_specificity")
    batch = _ranking_point(y_true, y_score, sample_weight, target_specificity=target_specificity)
    assert batch.sensitivity_at_specificity is not None
    return batch.sensitivity_at_specificity.value()


def specificity_at_sensitivity(
    y_true: ArrayLike,
    y_score: ArrayLike,
    target_sensitivity: float,
    *,
    sample_weight: ArrayLike | None = None,
) -> MetricValue:
    """Return the best specificity among ROC operating points with sensitivity >= target."""
    _check_target(target_sensitivity, "target_sensitivity")
    batch = _ranking_point(y_true, y_score, sample_weight, target_sensitivity=target_sensitivity)
    assert batch.specificity_at_sensitivity is not None
    return batch.specificity_at_sensitivity.value()


def _check_target(target: float, name: str) -> None:
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1; got {target!r}")


def roc_points(
    y_true: ArrayLike, y_score: ArrayLike, *, sample_weight: ArrayLike | None = None
) -> tuple[FloatArray, FloatArray, FloatArray] | None:
    """Return (fpr, tpr, thresholds) at every distinct score, or None without both classes.

    Thresholds decrease; the first point is (0, 0) with threshold +inf (nothing positive), as
    sklearn's `roc_curve(drop_intermediate=False)`.
    """
    labels, scores = validate_binary(y_true, y_score)
    weights = validate_sample_weight(sample_weight, labels.shape[0])
    w = np.ones(labels.shape[0]) if weights is None else weights
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    last_of_block = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.shape[0] - 1]
    true_pos = np.cumsum(w[order] * labels[order])[last_of_block]
    false_pos = np.cumsum(w[order] * ~labels[order])[last_of_block]
    if true_pos[-1] == 0 or false_pos[-1] == 0:
        return None
    fpr = np.r_[0.0, false_pos / false_pos[-1]]
    tpr = np.r_[0.0, true_pos / true_pos[-1]]
    return fpr, tpr, np.r_[np.inf, sorted_scores[last_of_block]]


def _thin(x: FloatArray, y: FloatArray, max_points: int) -> IntArray:
    """Return indices of at most `max_points` points spread along the curve's length.

    Points in the middle of two equal steps are dropped first, as sklearn's `roc_curve` does
    (after the leading (0, 0) point, which sklearn adds afterwards); then, if still too many,
    points are taken at even distances along the curve. Both ends are always kept.
    """
    keep = np.ones(x.shape[0], dtype=bool)
    if x.shape[0] > 3:
        same_step = (np.abs(np.diff(x[1:], 2)) <= 1e-12) & (np.abs(np.diff(y[1:], 2)) <= 1e-12)
        keep[2:-1] = ~same_step
    index = np.flatnonzero(keep)
    if index.shape[0] <= max_points:
        return index
    length = np.r_[0.0, np.cumsum(np.abs(np.diff(x[index])) + np.abs(np.diff(y[index])))]
    inner = np.searchsorted(length, np.linspace(0.0, length[-1], max_points)[1:-1])
    picked = np.unique(np.r_[0, inner, index.shape[0] - 1])
    kept: IntArray = index[picked]
    return kept


def roc_curve(
    y_true: ArrayLike,
    y_score: ArrayLike,
    *,
    sample_weight: ArrayLike | None = None,
    max_points: int | None = None,
) -> RocCurve | None:
    """Return the ROC curve thinned for storage, or None without both classes."""
    from validators.results import MAX_CURVE_POINTS, RocCurve

    points = roc_points(y_true, y_score, sample_weight=sample_weight)
    if points is None:
        return None
    fpr, tpr, thresholds = points
    index = _thin(fpr, tpr, max_points or MAX_CURVE_POINTS)
    return RocCurve(
        fpr=fpr[index].tolist(),
        tpr=tpr[index].tolist(),
        thresholds=[None if np.isinf(t) else float(t) for t in thresholds[index]],
    )


# --------------------------------------------------------------------------------------------
# Probability metrics: per-case losses, averaged with the weights
# --------------------------------------------------------------------------------------------

_EPS = float(np.finfo(np.float64).eps)


def squared_errors(y_true: BoolArray, y_prob: FloatArray) -> FloatArray:
    """Return each case's Brier contribution (p - y)^2."""
    return (y_prob - y_true) ** 2


def log_losses(y_true: BoolArray, y_prob: FloatArray) -> FloatArray:
    """Return each case's log loss, -log of the probability of its class, clipped as sklearn.

    sklearn clips both class probabilities, p and 1 - p, to [eps, 1 - eps] (eps of float64).
    """
    own = np.where(y_true, y_prob, 1.0 - y_prob)
    losses: FloatArray = -np.log(np.clip(own, _EPS, 1.0 - _EPS))
    return losses


def _weighted_mean(values: FloatArray, weights: FloatArray | None) -> MetricValue:
    if weights is None:
        return MetricValue(float(np.mean(values)), None)
    return safe_divide(float(weights @ values), float(weights.sum()), reason=NO_WEIGHT)


def _probability_inputs(
    y_true: ArrayLike, y_prob: ArrayLike, sample_weight: ArrayLike | None
) -> tuple[BoolArray, FloatArray, FloatArray | None]:
    labels, probs = validate_binary(y_true, y_prob)
    validate_probabilities(probs)
    return labels, probs, validate_sample_weight(sample_weight, labels.shape[0])


def brier_score_loss(
    y_true: ArrayLike, y_prob: ArrayLike, *, sample_weight: ArrayLike | None = None
) -> MetricValue:
    """Return the Brier score, the mean of (p - y)^2 (lower is better)."""
    labels, probs, weights = _probability_inputs(y_true, y_prob, sample_weight)
    return _weighted_mean(squared_errors(labels, probs), weights)


def log_loss(
    y_true: ArrayLike, y_prob: ArrayLike, *, sample_weight: ArrayLike | None = None
) -> MetricValue:
    """Return the mean log loss (cross-entropy) of probabilities clipped as sklearn does."""
    labels, probs, weights = _probability_inputs(y_true, y_prob, sample_weight)
    return _weighted_mean(log_losses(labels, probs), weights)


def net_benefit_from_counts(
    counts: ConfusionCountsBatch, threshold_probability: float
) -> MetricBatch:
    """Return net benefit TP/n - FP/n * pt / (1 - pt) per row (Vickers & Elkin 2006)."""
    reasons = _Reasons(counts.tp.shape[0])
    if not 0.0 < threshold_probability < 1.0:
        return MetricBatch.undefined(
            counts.tp.shape[0],
            f"net benefit needs a threshold probability strictly between 0 and 1; "
            f"got {threshold_probability!r}",
        )
    odds = threshold_probability / (1.0 - threshold_probability)
    total = counts.tp + counts.fp + counts.tn + counts.fn
    return reasons.finish(reasons.divide(counts.tp - counts.fp * odds, total, NO_WEIGHT))


def net_benefit(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    threshold_probability: float,
    *,
    sample_weight: ArrayLike | None = None,
) -> MetricValue:
    """Return the net benefit of treating cases with probability >= the threshold probability."""
    labels, probs, weights = _probability_inputs(y_true, y_prob, sample_weight)
    counts = confusion_counts(labels, probs >= threshold_probability, sample_weight=weights)
    return net_benefit_from_counts(ConfusionCountsBatch.of(counts), threshold_probability).value()


# --------------------------------------------------------------------------------------------
# Everything at once, with intervals
# --------------------------------------------------------------------------------------------


def binary_metrics(
    y_true: ArrayLike,
    y_score: ArrayLike,
    *,
    threshold: float = 0.5,
    scores: ScoreScale = "probability",
    target_specificity: float = 0.9,
    target_sensitivity: float = 0.9,
    ci: CiMethod | Sequence[CiMethod] = "bootstrap",
    replicates: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    groups: ArrayLike | None = None,
    n_bins: int = 10,
) -> BinaryMetrics:
    """Return every binary metric with its interval, and the ROC, calibration and decision curves.

    `threshold` applies on the scale of `scores` ("positive when score >= threshold"); logits
    are turned into probabilities by a stable sigmoid for the probability metrics, and the net
    benefit uses the threshold's probability. `ci` names the interval method: "bootstrap"
    (percentile, `replicates` resamples, by patient when `groups` gives patient ids), "wilson"
    (proportions; the rest by bootstrap), "delong" (AUROC; the rest by bootstrap), both
    ("wilson", "delong"), or "none" (point estimates). Each estimate names its own method.
    """
    # The engine builds on this module's kernels, so it is imported when first needed.
    from validators.bootstrap import evaluate_binary

    return evaluate_binary(
        y_true,
        y_score,
        threshold=threshold,
        scores=scores,
        target_specificity=target_specificity,
        target_sensitivity=target_sensitivity,
        ci=ci,
        replicates=replicates,
        level=level,
        seed=seed,
        groups=groups,
        n_bins=n_bins,
    )


def multilabel_metrics(
    y_true: ArrayLike,
    y_score: ArrayLike,
    labels: Sequence[str],
    *,
    thresholds: float | Sequence[float] = 0.5,
    scores: ScoreScale = "probability",
    target_specificity: float = 0.9,
    target_sensitivity: float = 0.9,
    ci: CiMethod | Sequence[CiMethod] = "bootstrap",
    replicates: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    groups: ArrayLike | None = None,
    n_bins: int = 10,
) -> MultilabelMetrics:
    """Return per-label metrics (`y_true`, `y_score` of shape `[N, L]`) with macro and micro.

    Every label is bootstrapped with the same replicates; macro is the mean of the labels whose
    estimate is defined, its interval taken over the same replicates; micro pools all labels'
    cases (each case keeps its weight in every label).
    """
    from validators.bootstrap import evaluate_multilabel

    return evaluate_multilabel(
        y_true,
        y_score,
        labels,
        thresholds=thresholds,
        scores=scores,
        target_specificity=target_specificity,
        target_sensitivity=target_sensitivity,
        ci=ci,
        replicates=replicates,
        level=level,
        seed=seed,
        groups=groups,
        n_bins=n_bins,
    )
