"""Calibration: reliability curves, expected calibration error, logistic recalibration, Brier,
and the decision curve.

Binning follows sklearn's `calibration_curve`: equal-width bins split [0, 1] evenly
(`uniform`), equal-mass bins split at the sample quantiles (`quantile`), and a probability on an
inner edge falls in the bin below it.

The expected calibration error (ECE) is reported debiased, with a one-sided upper bound
(docs/statistics.md, "ECE"). Per bin b, R_b = sum_{i in b} w_i (p_i - y_i) and, under
calibration, tau_b^2 = sum_{i in b} w_i p_i (1 - p_i) is the variance of R_b. The plug-in ECE
sum_b |R_b| / sum_i w_i = sum_b (n_b / n) |mean predicted_b - observed rate_b| is biased upward
(|R_b| > 0 even when E[R_b] = 0); the debiased estimate subtracts its null expectation,
sum_b (|R_b| - sqrt(2 / pi) tau_b) / sum_i w_i, and so averages 0 on a calibrated model. Both
parts are sums over the cases of a bin, linear in the weights: one matrix product gives them for
every bootstrap replicate (bins fixed at the original sample's edges). The upper bound inverts
the test of "ECE >= theta" under the least favourable spread of theta over the bins
(`ece_upper_bound`), so it covers the true binned ECE and is never below the estimate.

The calibration slope and intercept are those of the logistic recalibration model
logit P(y = 1) = intercept + slope * logit(p), fitted by maximum likelihood with Newton's method
(iteratively reweighted least squares); a perfectly calibrated model has slope 1 and intercept 0.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Literal, NamedTuple, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

from validators.metrics.losses import _probability_inputs
from validators.metrics.validation import (
    NO_NEGATIVES,
    NO_POSITIVES,
    NO_WEIGHT,
    BoolArray,
    FloatArray,
    MetricBatch,
    MetricValue,
    _Reasons,
    check_level,
)
from validators.results.estimates import Estimate
from validators.results.metrics import CalibrationBin, CalibrationCurve, DecisionCurve

BinStrategy: TypeAlias = Literal["uniform", "quantile"]
ECE_METRICS: dict[str, BinStrategy] = {"ece": "uniform", "ece_equal_mass": "quantile"}
"""The ECE metrics and their binning: both are debiased and get a one-sided upper bound."""
_NULL_MEAN = math.sqrt(2.0 / math.pi)
"""E|Z| for a standard normal Z: the null expectation of |R_b| is this times tau_b."""
_LEAST_FAVOURABLE_DRAWS = 20_000
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
    """Return the `[N, 2 n_bins]` per-case terms of the ECE, one bin per column.

    Columns 0 to n_bins - 1 hold p_i - y_i in the column of case i's bin (their weighted sums are
    the R_b), columns n_bins to 2 n_bins - 1 hold p_i (1 - p_i) there (the tau_b^2, the variance
    of R_b under calibration).
    """
    n_bins = edges.shape[0] - 1
    features = np.zeros((y_prob.shape[0], 2 * n_bins))
    rows, index = np.arange(y_prob.shape[0]), bin_index(y_prob, edges)
    features[rows, index] = y_prob - y_true
    features[rows, n_bins + index] = y_prob * (1.0 - y_prob)
    return features


def ece_batch(bin_sums: FloatArray, total_weight: FloatArray) -> MetricBatch:
    """Return the debiased ECE per row from `bin_sums` = W @ ece_features `[R, 2 n_bins]`.

    sum_b (|R_b| - sqrt(2 / pi) tau_b) / sum(W): the plug-in ECE less its expectation under
    calibration (normal approximation of each bin's sum), so it averages 0 on a calibrated
    model and can be negative.
    """
    n_bins = bin_sums.shape[1] // 2
    gaps = np.abs(bin_sums[:, :n_bins]).sum(axis=1)
    null = _NULL_MEAN * np.sqrt(np.maximum(bin_sums[:, n_bins:], 0.0)).sum(axis=1)
    reasons = _Reasons(total_weight.shape[0])
    return reasons.finish(reasons.divide(gaps - null, total_weight, NO_WEIGHT))


def expected_calibration_error(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    *,
    n_bins: int = 10,
    strategy: BinStrategy = "uniform",
    sample_weight: ArrayLike | None = None,
    debiased: bool = True,
) -> MetricValue:
    """Return the expected calibration error over equal-width or equal-mass bins.

    Debiased by default (the plug-in less its expectation under calibration; see the module
    docstring); `debiased=False` gives the plug-in sum_b (n_b / n) |mean p_b - observed rate_b|.
    Quantile edges come from the unweighted sample, as in sklearn's `calibration_curve`.
    """
    labels, probs, weights = _probability_inputs(y_true, y_prob, sample_weight)
    w = np.ones(labels.shape[0]) if weights is None else weights
    features = ece_features(labels, probs, bin_edges(probs, n_bins, strategy))
    if not debiased:
        features[:, n_bins:] = 0.0
    return ece_batch((w @ features)[np.newaxis, :], np.array([w.sum()])).value()


@lru_cache(maxsize=4)
def _normal_stream(bins: int) -> FloatArray:
    """Return the fixed standard normal draws for up to `bins` bins, flat and read-only.

    A seeded generator (same digits), drawn once per metric bin count and kept: every bound of
    a run needs a prefix of the same stream, whichever of its bins are empty.
    """
    draws: FloatArray = np.random.default_rng(20_260_115).standard_normal(
        _LEAST_FAVOURABLE_DRAWS * bins
    )
    draws.setflags(write=False)
    return draws


def _standard_normals(used: int, bins: int) -> FloatArray:
    """Return the fixed draws `[draws, used]` for `used` of the metric's `bins` bins.

    A generator fills row by row, so the first `draws * used` values of the stream for `bins`
    are exactly `standard_normal((draws, used))` of the same seed: a view, not a copy. One
    stream per bin count keeps memory at draws x bins (the groups of a run leave different
    bins empty; a stream per count of non-empty bins held up to 64 of them, hundreds of MB at
    100 bins).
    """
    return _normal_stream(bins)[: _LEAST_FAVOURABLE_DRAWS * used].reshape(
        _LEAST_FAVOURABLE_DRAWS, used
    )


def ece_null_scales(y_prob: FloatArray, edges: FloatArray) -> FloatArray:
    """Return tau_b = sqrt(sum_{i in b} p_i (1 - p_i)) per bin: each R_b's SD under calibration."""
    index = bin_index(y_prob, edges)
    variance = np.bincount(index, weights=y_prob * (1.0 - y_prob), minlength=edges.shape[0] - 1)
    return np.asarray(np.sqrt(variance))


def _folded_mean(t: FloatArray) -> FloatArray:
    """Return G(t) = E|Z + t| for a standard normal Z."""
    from scipy.special import ndtr

    return np.asarray(
        2.0 * np.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi) + t * (2.0 * ndtr(t) - 1.0)
    )


def _ece_design_effect(
    y_true: BoolArray,
    y_prob: FloatArray,
    edges: FloatArray,
    tau: FloatArray,
    replicates: FloatArray,
) -> float:
    """Return how much wider the clustered bootstrap spreads the ECE than independent cases would.

    `tau` is `ece_null_scales(y_prob, edges)`. Under independent cases a bin's resampled sum is
    about N(R_b, tau_b^2), so |R_b| varies by tau_b^2 V(R_b / tau_b) with V(t) = 1 + t^2 - G(t)^2;
    the ratio of the replicates' variance to that sum, at least 1, is the design effect that
    widens tau_b when patients are resampled. (Not `validators.resampling.intervals._design_effect`,
    Kish's design effect of a proportion from the intraclass correlation.)
    """
    defined = replicates[np.isfinite(replicates)]
    sums = np.bincount(bin_index(y_prob, edges), weights=y_prob - y_true, minlength=tau.shape[0])
    used = tau > 0
    if defined.shape[0] < 2 or not used.any():
        return 1.0
    t = sums[used] / tau[used]
    independent = float(np.sum(tau[used] ** 2 * (1.0 + t * t - _folded_mean(t) ** 2)))
    observed = float(np.var(defined, ddof=1)) * float(y_prob.shape[0]) ** 2
    return max(1.0, observed / independent) if independent > 0 else 1.0


def ece_upper_bound(
    estimate: float, scales: FloatArray, total_weight: float, level: float
) -> float:
    """Return the one-sided upper confidence bound of the ECE at `level` (never below `estimate`).

    Each bin's sum is modelled as R_b ~ N(nu_b, tau_b^2), tau_b from `scales`, and the true ECE is
    theta = sum_b |nu_b| / total_weight. The debiased estimate A = sum_b (|R_b| - c tau_b) /
    total_weight (c = sqrt(2 / pi)) has mean sum_b tau_b (G(nu_b / tau_b) - c) / total_weight,
    G(t) = E|Z + t| convex, so among configurations with ECE theta the mean is smallest, and A
    least likely to exceed an observed value, when every bin has the same nu_b / tau_b (Jensen):
    the least favourable configuration. The bound is the largest theta whose least favourable
    configuration puts A at or below the observed estimate with probability at least
    1 - level: the (1 - level) quantile of A there comes from fixed normal draws (a seeded
    generator, so the same data give the same digits), and theta is found by Brent's method.

    Never below the estimate, by construction: in every draw, |t + Z_b| <= t + |Z_b|, so the
    quantile at theta is at most theta plus the null quantile of sum_b tau_b (|Z_b| - c), which is
    negative; theta = max(estimate, 0) therefore always passes the test. Levels below 0.5 are
    taken as 0.5 (a bound below the median is no bound); a level outside (0, 1) is refused.
    """
    check_level(level)
    scales = np.asarray(scales, dtype=np.float64)
    tau = scales[scales > 0]
    if tau.size == 0:
        # Every prediction is 0 or 1: under calibration each R_b is exactly 0, nothing to model.
        return max(estimate, 0.0)
    from scipy.optimize import brentq

    alpha = 1.0 - max(level, 0.5)
    draws = _standard_normals(tau.shape[0], scales.shape[0])
    spread = float(tau.sum())
    # numpy's linear quantile rule, from a partition around the two order statistics it needs;
    # the draws are shifted in one reused buffer (this runs a dozen times per bound).
    position = alpha * (draws.shape[0] - 1)
    below = math.floor(position)
    fraction = position - below
    above = min(below + 1, draws.shape[0] - 1)
    shifted = np.empty_like(draws)

    def quantile(theta: float) -> float:
        np.add(draws, theta * total_weight / spread, out=shifted)
        np.abs(shifted, out=shifted)
        values = shifted @ tau
        values -= _NULL_MEAN * spread
        ordered = np.partition(values, (below, above))
        value = ordered[below] + fraction * (ordered[above] - ordered[below])
        return float(value) / total_weight

    if quantile(0.0) > estimate:
        return 0.0
    low = max(estimate, 0.0)
    high = max(2.0 * low, spread / total_weight, 1e-12)
    while quantile(high) <= estimate:
        low, high = high, 2.0 * high
    if quantile(low) == estimate:
        return low
    # quantile(low) < estimate < quantile(high): Brent's method finds where they meet.
    root: float = brentq(lambda theta: quantile(theta) - estimate, low, high, xtol=1e-10)
    return root


def ece_estimate(
    value: MetricValue,
    y_true: BoolArray,
    y_prob: FloatArray,
    *,
    strategy: BinStrategy,
    n_bins: int,
    level: float,
    n: int,
    n_cases: int,
    method: str,
    replicates: FloatArray | None = None,
    clustered: bool = False,
) -> Estimate:
    """Return the debiased ECE `value` of the cases (`y_true`, `y_prob`), one-sided upper bound.

    `method` names the bound in the result; the bins are those of the metric (equal-width, or
    equal-mass at these cases' quantiles). When patients contribute several images
    (`clustered`), the bootstrap `replicates` of the ECE (patients resampled) give the design
    effect that widens each bin's spread (`_ece_design_effect`); independent cases need none.
    """
    if value.value is None:
        return Estimate.undefined(
            value.reason or "undefined", n=n, n_cases=n_cases, level=level, method=method
        )
    edges = bin_edges(y_prob, n_bins, strategy)
    scales = ece_null_scales(y_prob, edges)
    if clustered and replicates is not None:
        scales = scales * math.sqrt(_ece_design_effect(y_true, y_prob, edges, scales, replicates))
    upper = ece_upper_bound(value.value, scales, float(y_prob.shape[0]), level)
    return Estimate.ok(
        value.value,
        upper=upper,
        sides="upper",
        level=level,
        n=n,
        n_cases=n_cases,
        method=method,
    )


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
