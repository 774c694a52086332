"""Ranking metrics: one sort, then cumulative class weights per weight row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from validators.metrics.counts import ConfusionCountsBatch
from validators.metrics.validation import (
    NO_NEGATIVES,
    NO_POSITIVES,
    BoolArray,
    FloatArray,
    IntArray,
    MetricBatch,
    MetricValue,
    _Reasons,
    _weight_row,
    validate_binary,
    validate_sample_weight,
)

if TYPE_CHECKING:
    from validators.results.metrics import RocCurve


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
    from validators.results.estimates import MAX_CURVE_POINTS
    from validators.results.metrics import RocCurve

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
