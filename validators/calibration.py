"""Calibration: reliability curves, expected calibration error, logistic recalibration, Brier,
and the decision curve.

Binning follows sklearn's `calibration_curve`: equal-width bins split [0, 1] evenly
(`uniform`), equal-mass bins split at the sample quantiles (`quantile`), and a probability on an
inner edge falls in the bin below it. The expected calibration error (ECE) is
sum over bins b of (n_b / n) |mean predicted_b - observed rate_b| = sum_b |sum_{i in b} w_i
(p_i - y_i)| / sum_i w_i, which is linear in the weights inside each bin: one matrix product
gives it for every bootstrap replicate (bins fixed at the original sample's edges).

The calibration slope and intercept are those of the logistic recalibration model
logit P(y = 1) = intercept + slope * logit(p), fitted by maximum likelihood with Newton's method
(iteratively reweighted least squares); a perfectly calibrated model has slope 1 and intercept 0.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

from validators.metrics import (
    NO_NEGATIVES,
    NO_POSITIVES,
    NO_WEIGHT,
    BoolArray,
    FloatArray,
    MetricBatch,
    MetricValue,
    _probability_inputs,
    _Reasons,
    brier_score_loss,
)
from validators.results import CalibrationBin, CalibrationCurve, DecisionCurve

__all__ = [
    "BinStrategy",
    "CalibrationFit",
    "bin_edges",
    "bin_index",
    "brier_score_loss",
    "calibration_slope_intercept",
    "decision_curve",
    "ece_batch",
    "ece_features",
    "expected_calibration_error",
    "logistic_recalibration_batch",
    "logit",
    "recalibration_features",
    "reliability_curve",
]

BinStrategy: TypeAlias = Literal["uniform", "quantile"]
_EPS = float(np.finfo(np.float64).eps)
_MAX_SLOPE = 1e6
_NOT_CONVERGED = (
    "the recalibration fit did not converge: the outcome is (nearly) separated by the predicted "
    "risk, so the slope is unbounded"
)
_CONSTANT = "all predicted probabilities are equal, so the calibration slope is not identifiable"


def logit(y_prob: FloatArray) -> FloatArray:
    """Return log(p / (1 - p)) of probabilities clipped to [eps, 1 - eps] (finite everywhere)."""
    clipped = np.clip(y_prob, _EPS, 1.0 - _EPS)
    return np.log(clipped) - np.log1p(-clipped)


def bin_edges(y_prob: FloatArray, n_bins: int, strategy: BinStrategy) -> FloatArray:
    """Return the `n_bins + 1` bin edges: even on [0, 1], or at the sample quantiles."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1; got {n_bins}")
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    if strategy == "quantile":
        return np.asarray(np.percentile(y_prob, np.linspace(0.0, 1.0, n_bins + 1) * 100))
    raise ValueError(f"strategy must be 'uniform' or 'quantile'; got {strategy!r}")


def bin_index(y_prob: FloatArray, edges: FloatArray) -> NDArray[np.intp]:
    """Return each probability's bin, 0 to n_bins - 1, as sklearn's `calibration_curve`."""
    return np.searchsorted(edges[1:-1], y_prob)


def reliability_curve(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    *,
    n_bins: int = 10,
    strategy: BinStrategy = "uniform",
) -> CalibrationCurve:
    """Return the reliability diagram: per non-empty bin, mean prediction and observed rate."""
    labels, probs, _ = _probability_inputs(y_true, y_prob, None)
    edges = bin_edges(probs, n_bins, strategy)
    index = bin_index(probs, edges)
    count = np.bincount(index, minlength=n_bins)
    predicted = np.bincount(index, weights=probs, minlength=n_bins)
    observed = np.bincount(index, weights=labels.astype(np.float64), minlength=n_bins)
    bins = [
        CalibrationBin(
            lower=float(edges[b]),
            upper=float(edges[b + 1]),
            mean_predicted=float(predicted[b] / count[b]),
            observed_rate=float(observed[b] / count[b]),
            count=int(count[b]),
        )
        for b in np.flatnonzero(count)
    ]
    return CalibrationCurve(strategy=strategy, n_bins=n_bins, bins=bins)


def ece_features(y_true: BoolArray, y_prob: FloatArray, edges: FloatArray) -> FloatArray:
    """Return the `[N, n_bins]` matrix holding p_i - y_i in the column of case i's bin."""
    features = np.zeros((y_prob.shape[0], edges.shape[0] - 1))
    features[np.arange(y_prob.shape[0]), bin_index(y_prob, edges)] = y_prob - y_true
    return features


def ece_batch(bin_sums: FloatArray, total_weight: FloatArray) -> MetricBatch:
    """Return the ECE per row from `bin_sums` = W @ ece_features `[R, n_bins]` and sum(W)."""
    reasons = _Reasons(total_weight.shape[0])
    return reasons.finish(reasons.divide(np.abs(bin_sums).sum(axis=1), total_weight, NO_WEIGHT))


def expected_calibration_error(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    *,
    n_bins: int = 10,
    strategy: BinStrategy = "uniform",
    sample_weight: ArrayLike | None = None,
) -> MetricValue:
    """Return the expected calibration error over equal-width or equal-mass bins.

    Quantile edges come from the unweighted sample, as in sklearn's `calibration_curve`.
    """
    labels, probs, weights = _probability_inputs(y_true, y_prob, sample_weight)
    w = np.ones(labels.shape[0]) if weights is None else weights
    features = ece_features(labels, probs, bin_edges(probs, n_bins, strategy))
    return ece_batch((w @ features)[np.newaxis, :], np.array([w.sum()])).value()


class CalibrationFit(NamedTuple):
    """Slope and intercept of the logistic recalibration model, each possibly undefined."""

    slope: MetricValue
    intercept: MetricValue


def _recalibration_problem(labels: BoolArray, x: FloatArray, weights: FloatArray) -> str | None:
    """Return why the recalibration MLE does not exist on these data, or None."""
    positive = weights * labels
    negative = weights * ~labels
    if positive.sum() == 0:
        return NO_POSITIVES
    if negative.sum() == 0:
        return NO_NEGATIVES
    used = weights > 0
    if np.ptp(x[used]) == 0:
        return _CONSTANT
    if x[used & ~labels].max() < x[used & labels].min() or (
        x[used & labels].max() < x[used & ~labels].min()
    ):
        return _NOT_CONVERGED
    return None


def _log_likelihood(
    intercept: float, slope: float, x: FloatArray, labels: BoolArray, weights: FloatArray
) -> float:
    eta = intercept + slope * x
    # log(1 + e^eta) computed without overflow.
    return float(weights @ (labels * eta - np.logaddexp(0.0, eta)))


def _fit_recalibration(
    labels: BoolArray,
    x: FloatArray,
    weights: FloatArray,
    *,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> tuple[float, float] | str:
    """Return (intercept, slope) by damped Newton from (0, 1), or the reason there is none."""
    problem = _recalibration_problem(labels, x, weights)
    if problem is not None:
        return problem
    design = np.stack([np.ones_like(x), x], axis=1)
    theta = np.array([0.0, 1.0])
    current = _log_likelihood(theta[0], theta[1], x, labels, weights)
    for _ in range(max_iter):
        mu = 1.0 / (1.0 + np.exp(-(design @ theta)))
        gradient = design.T @ (weights * (labels - mu))
        hessian = (design * (weights * mu * (1.0 - mu))[:, None]).T @ design
        try:
            step = np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            return _NOT_CONVERGED
        # Halve the step until the likelihood does not fall (Newton can overshoot far out).
        for _ in range(60):
            candidate = theta + step
            value = _log_likelihood(candidate[0], candidate[1], x, labels, weights)
            if value >= current - 1e-12 * abs(current):
                break
            step = step / 2
        theta, current = candidate, value
        if abs(theta[1]) > _MAX_SLOPE:
            return _NOT_CONVERGED
        if np.max(np.abs(step)) <= tol * (1.0 + np.max(np.abs(theta))):
            return float(theta[0]), float(theta[1])
    return _NOT_CONVERGED


def calibration_slope_intercept(
    y_true: ArrayLike, y_prob: ArrayLike, *, sample_weight: ArrayLike | None = None
) -> CalibrationFit:
    """Return the calibration slope and intercept: logistic regression of y on logit(p).

    Both come from the one two-parameter fit (the intercept is not the "calibration in the
    large" with the slope fixed at 1). Undefined with one class only, with all probabilities
    equal, or when the outcome is separated by the predicted risk (the slope is then infinite).
    """
    labels, probs, weights = _probability_inputs(y_true, y_prob, sample_weight)
    w = np.ones(labels.shape[0]) if weights is None else weights
    fit = _fit_recalibration(labels, logit(probs), w)
    if isinstance(fit, str):
        return CalibrationFit(MetricValue(None, fit), MetricValue(None, fit))
    intercept, slope = fit
    return CalibrationFit(slope=MetricValue(slope, None), intercept=MetricValue(intercept, None))


def recalibration_features(
    labels: BoolArray, x: FloatArray, start: tuple[float, float]
) -> FloatArray:
    """Return the `[N, 7]` per-case terms whose weighted sums give the first Newton step.

    At `start` = (intercept, slope), with mu = sigmoid(intercept + slope x), r = y - mu and
    v = mu (1 - mu): columns r, r x, v, v x, v x^2 (gradient and Hessian), y and 1 (class totals).
    """
    mu = 1.0 / (1.0 + np.exp(-(start[0] + start[1] * x)))
    residual = labels - mu
    variance = mu * (1.0 - mu)
    return np.column_stack(
        [residual, residual * x, variance, variance * x, variance * x * x, labels, np.ones_like(x)]
    )


def logistic_recalibration_batch(
    weights: NDArray[Any],
    labels: BoolArray,
    x: FloatArray,
    start: tuple[float, float],
    *,
    first_step_sums: FloatArray | None = None,
    max_iter: int = 30,
    tol: float = 1e-5,
) -> tuple[MetricBatch, MetricBatch]:
    """Return (slope, intercept) refitted for each weight row `[R, N]`, starting from `start`.

    `start` is the (intercept, slope) fitted on the original sample; every replicate's fit lies
    near it. The first Newton step needs only the gradient and Hessian at `start`, which are
    linear in the weights: `first_step_sums` = `weights @ recalibration_features(...)`, one
    matrix product shared with the other linear statistics (computed here if not given). Further
    Newton steps run on the rows not yet converged, in float32 (the replicate fits converge to
    a relative 1e-5, far below the bootstrap's Monte Carlo error); a row stops when its step is
    below `tol`, or below sqrt(tol / 100), after which quadratic convergence leaves an error
    near tol / 100. A row whose fit does not
    converge (separation within the replicate) or that lacks a class is undefined.
    """
    from scipy.special import expit  # one pass for the logistic function, float32 included

    rows = weights.shape[0]
    if first_step_sums is None:
        first_step_sums = np.asarray(weights, dtype=np.float64) @ recalibration_features(
            labels, x, start
        )
    reasons = _Reasons(rows)
    positives, total = first_step_sums[:, 5], first_step_sums[:, 6]
    reasons.mark(positives == 0, NO_POSITIVES)
    reasons.mark(total - positives == 0, NO_NEGATIVES)

    theta = np.tile(np.asarray(start, dtype=np.float64), (rows, 1))
    theta += np.nan_to_num(_newton_steps(first_step_sums[:, :5]))
    converged = np.zeros(rows, dtype=bool)
    active = np.flatnonzero(reasons.codes == 0)
    x32 = x.astype(np.float32)
    y32 = labels.astype(np.float32)
    gradient_design = np.column_stack([np.ones_like(x32), x32])
    hessian_design = np.column_stack([np.ones_like(x32), x32, x32 * x32])
    for _ in range(max_iter):
        if active.size == 0:
            break
        w = weights if active.size == rows else weights[active]
        mu = np.multiply.outer(theta[active, 1].astype(np.float32), x32)
        mu += theta[active, 0:1].astype(np.float32)
        expit(mu, out=mu)
        variance = mu * (1.0 - mu)
        residual = np.subtract(y32, mu, out=mu)
        residual *= w
        variance *= w
        sums = np.column_stack([residual @ gradient_design, variance @ hessian_design])
        step = _newton_steps(sums.astype(np.float64))
        bad = ~np.isfinite(step).all(axis=1)
        step[bad] = 0.0
        theta[active] += step
        scale = 1.0 + np.max(np.abs(theta[active]), axis=1)
        size = np.max(np.abs(step), axis=1)
        # Newton converges quadratically near the optimum: after a step of size h the error
        # is about h^2, so a step below sqrt(tol / 100) needs no further pass to confirm.
        done = (size <= tol * scale) | (size * size <= 0.01 * tol * scale)
        diverged = bad | (np.abs(theta[active, 1]) > _MAX_SLOPE)
        converged[active[done & ~diverged]] = True
        if diverged.any():
            failed = np.zeros(rows, dtype=bool)
            failed[active[diverged]] = True
            reasons.mark(failed, _NOT_CONVERGED)
        active = active[~done & ~diverged]
    reasons.mark(~converged, _NOT_CONVERGED)
    slope = reasons.finish(theta[:, 1].copy())
    intercept = MetricBatch(
        values=np.where(slope.codes == 0, theta[:, 0], np.nan), codes=slope.codes, texts=slope.texts
    )
    return slope, intercept


def _newton_steps(sums: FloatArray) -> FloatArray:
    """Return per-row Newton steps H^-1 g from columns (g0, g1, h00, h01, h11); NaN if singular."""
    g0, g1, h00, h01, h11 = sums.T
    det = h00 * h11 - h01 * h01
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.stack([(h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det], axis=1)
    step[det <= 0] = np.nan
    return step


def decision_curve(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    *,
    thresholds: ArrayLike | None = None,
) -> DecisionCurve:
    """Return net benefit of the model, of treating all and of treating none, per threshold.

    Default thresholds: 0.01 to 0.99 by 0.01. A case is treated when p >= threshold.
    """
    labels, probs, _ = _probability_inputs(y_true, y_prob, None)
    grid = (
        np.round(np.arange(1, 100) / 100, 2)
        if thresholds is None
        else np.asarray(thresholds, dtype=np.float64)
    )
    if grid.size == 0 or np.any((grid <= 0) | (grid >= 1)):
        raise ValueError("decision-curve thresholds must lie strictly between 0 and 1")
    n = labels.shape[0]
    positives = np.sort(probs[labels])
    negatives = np.sort(probs[~labels])
    treated_pos = positives.shape[0] - np.searchsorted(positives, grid, side="left")
    treated_neg = negatives.shape[0] - np.searchsorted(negatives, grid, side="left")
    odds = grid / (1.0 - grid)
    prevalence = positives.shape[0] / n
    return DecisionCurve(
        thresholds=grid.tolist(),
        net_benefit_model=((treated_pos - treated_neg * odds) / n).tolist(),
        net_benefit_all=(prevalence - (1.0 - prevalence) * odds).tolist(),
    )
