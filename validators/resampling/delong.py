"""DeLong's AUROC variance, interval and paired test."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from validators.metrics.validation import BoolArray, FloatArray, validate_binary
from validators.resampling.intervals import midranks, z_quantile


def _delong(labels: BoolArray, scores: FloatArray) -> tuple[FloatArray, FloatArray] | str:
    """Return the AUCs `[k]` and their DeLong covariance `[k, k]` for `scores` `[k, N]`.

    The fast algorithm of Sun & Xu (2014): structural components from midranks, O(N log N).
    With m positives X and n negatives Y: V10_i = (rank of X_i among all - rank among X) / n,
    V01_j = 1 - (rank of Y_j among all - rank among Y) / m, and Cov = S10 / m + S01 / n.
    """
    m = int(labels.sum())
    n = int(labels.shape[0] - m)
    if m < 2 or n < 2:
        return "DeLong's variance needs at least 2 positive and 2 negative cases"
    positives = scores[:, labels]
    negatives = scores[:, ~labels]
    aucs = np.empty(scores.shape[0])
    v10 = np.empty((scores.shape[0], m))
    v01 = np.empty((scores.shape[0], n))
    for k in range(scores.shape[0]):
        overall = midranks(np.concatenate([positives[k], negatives[k]]))
        within_pos = midranks(positives[k])
        within_neg = midranks(negatives[k])
        aucs[k] = (overall[:m].sum() - m * (m + 1) / 2.0) / (m * n)
        v10[k] = (overall[:m] - within_pos) / n
        v01[k] = 1.0 - (overall[m:] - within_neg) / m
    covariance = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, covariance


class DelongInterval(NamedTuple):
    """AUROC with its DeLong standard error and Wald interval (clipped to [0, 1])."""

    auc: float | None
    variance: float | None
    lower: float | None
    upper: float | None
    reason: str | None


def delong_auc_variance(y_true: ArrayLike, y_score: ArrayLike) -> tuple[float, float] | str:
    """Return (AUROC, DeLong variance), or the reason it is undefined."""
    labels, scores = validate_binary(y_true, y_score)
    result = _delong(labels, scores[None, :])
    if isinstance(result, str):
        return result
    aucs, covariance = result
    return float(aucs[0]), float(covariance[0, 0])


def delong_interval(y_true: ArrayLike, y_score: ArrayLike, level: float = 0.95) -> DelongInterval:
    """Return AUROC +- z * DeLong standard error, clipped to [0, 1]."""
    z = z_quantile(level)
    result = delong_auc_variance(y_true, y_score)
    if isinstance(result, str):
        return DelongInterval(None, None, None, None, result)
    auc, variance = result
    half = z * math.sqrt(max(variance, 0.0))
    return DelongInterval(auc, variance, max(0.0, auc - half), min(1.0, auc + half), None)


class DelongComparison(NamedTuple):
    """DeLong's paired test of AUROC(a) - AUROC(b) on the same cases (two-sided)."""

    auc_a: float | None
    auc_b: float | None
    difference: float | None
    se: float | None
    z: float | None
    p_value: float | None
    lower: float | None
    upper: float | None
    reason: str | None


def delong_paired_test(
    y_true: ArrayLike, score_a: ArrayLike, score_b: ArrayLike, *, level: float = 0.95
) -> DelongComparison:
    """Return DeLong's test (DeLong, DeLong & Clarke-Pearson 1988) of two correlated AUROCs.

    z = (AUC_a - AUC_b) / sqrt(Var_a + Var_b - 2 Cov_ab), p = 2 (1 - Phi(|z|)); the interval
    of the difference is difference +- z_level * se.
    """
    z_level = z_quantile(level)
    labels, a = validate_binary(y_true, score_a)
    _, b = validate_binary(labels, score_b)
    result = _delong(labels, np.stack([a, b]))
    if isinstance(result, str):
        return DelongComparison(None, None, None, None, None, None, None, None, result)
    aucs, cov = result
    difference = float(aucs[0] - aucs[1])
    se = math.sqrt(max(float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]), 0.0))
    lower, upper = difference - z_level * se, difference + z_level * se
    if se == 0.0:
        return DelongComparison(
            float(aucs[0]),
            float(aucs[1]),
            difference,
            0.0,
            None,
            None,
            lower,
            upper,
            "the difference has zero variance (the two scores rank the cases alike)",
        )
    z = difference / se
    p_value = math.erfc(abs(z) / math.sqrt(2.0))
    return DelongComparison(
        float(aucs[0]), float(aucs[1]), difference, se, z, p_value, lower, upper, None
    )
