"""Probability metrics: per-case losses averaged with the weights, and the net benefit."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from validators.metrics.counts import ConfusionCountsBatch, confusion_counts
from validators.metrics.validation import (
    NO_WEIGHT,
    BoolArray,
    FloatArray,
    MetricBatch,
    MetricValue,
    _Reasons,
    safe_divide,
    validate_binary,
    validate_probabilities,
    validate_sample_weight,
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
