"""Populations: everything one label needs per weight block, and the replicates."""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from validators.evaluation.estimates import _single, make_estimate
from validators.evaluation.settings import EvaluationSettings, method_name, proportion_members
from validators.metrics.calibration import (
    ECE_METRICS,
    BinStrategy,
    CalibrationFit,
    bin_edges,
    calibration_slope_intercept,
    decision_curve,
    ece_batch,
    ece_estimate,
    ece_features,
    logistic_recalibration_batch,
    logit,
    recalibration_features,
    reliability_curve,
)
from validators.metrics.counts import COUNT_METRICS, ConfusionCountsBatch, count_metric_batch
from validators.metrics.losses import log_losses, net_benefit_from_counts, squared_errors
from validators.metrics.ranking import RankedCases, RankingBatch, ranking_batch, roc_curve
from validators.metrics.validation import (
    NO_WEIGHT,
    BoolArray,
    FloatArray,
    IntArray,
    MetricBatch,
    MetricValue,
    _Reasons,
    sigmoid,
)
from validators.resampling.delong import delong_interval
from validators.resampling.intervals import (
    cluster_totals,
    clustered_wilson_interval,
    obuchowski_interval,
)
from validators.resampling.percentile import Interval, percentile_interval, wilson_interval
from validators.resampling.plan import BootstrapPlan
from validators.results.estimates import BINARY_METRIC_NAMES, BootstrapUnit, Estimate
from validators.results.metrics import BinaryMetrics
from validators.vocabulary import METRICS

RANKING_METRICS = frozenset(name for name, info in METRICS.items() if info.family == "ranking")
"""Metrics from the one-sort ranking kernel (`validators.metrics.ranking_batch`)."""
LEAN_METRICS = frozenset(COUNT_METRICS) | RANKING_METRICS | {"net_benefit"}
"""Metrics computed from the confusion counts and the ranking kernel alone
(`BinaryPopulation.lean`); the others (Brier, log loss, ECE, calibration) need the full
`BinaryPopulation.evaluate`, which is slower but computes the same values."""


_LOGIT_LIMIT = float(logit(np.array([1.0]))[0])


class PopulationBatch(NamedTuple):
    """Every metric of one population over R weight rows, and the sums they came from."""

    metrics: dict[str, MetricBatch]
    counts: ConfusionCountsBatch
    ranking: RankingBatch
    loss_sums: FloatArray
    total_weight: FloatArray


class BinaryPopulation:
    """One label on one population (all cases, or a subgroup mask), prepared once.

    `evaluate(W)` returns every metric for each row of a weight block `W` (`[R, N]` over all
    cases; rows outside the mask are ignored); `evaluate_point()` the point estimates;
    `result(...)` the typed `BinaryMetrics`. Subgroups built from the same arrays and fed the same
    blocks give paired replicates.
    """

    def __init__(
        self,
        labels: BoolArray,
        scores: FloatArray,
        probabilities: FloatArray,
        settings: EvaluationSettings,
        *,
        mask: BoolArray | None = None,
    ) -> None:
        self.settings = settings
        self.index = np.arange(labels.shape[0]) if mask is None else np.flatnonzero(mask)
        self.whole = mask is None
        self.labels = labels[self.index]
        self.scores = scores[self.index]
        self.probabilities = probabilities[self.index]
        self.n_cases = int(self.index.shape[0])
        self.n_total = int(labels.shape[0])
        # "Positive when score >= threshold", on the scale the scores were given in.
        self.called = self.scores >= settings.threshold
        self.ranked = RankedCases.build(labels, scores, mask=mask)
        self.recalibration_x = (
            np.clip(self.scores, -_LOGIT_LIMIT, _LOGIT_LIMIT)
            if settings.scores == "logit"
            else logit(self.probabilities)
        )
        fit = (
            calibration_slope_intercept(self.labels, sigmoid(self.recalibration_x))
            if self.n_cases
            else CalibrationFit(MetricValue(None, NO_WEIGHT), MetricValue(None, NO_WEIGHT))
        )
        self.recalibration = fit
        self.recalibration_start: tuple[float, float] | None = None
        if fit.slope.value is not None and fit.intercept.value is not None:
            self.recalibration_start = (fit.intercept.value, fit.slope.value)

    @functools.cached_property
    def loss_features(self) -> FloatArray:
        """Return the `[n_cases, k]` per-case terms of the losses, ECEs and first Newton step.

        Kept once built: only populations whose replicates need every metric use it again
        after their point estimates (a population with lean replicates builds it transiently,
        in `evaluate_point`, so a hundred subgroups do not hold a hundred of these matrices).
        """
        return self._loss_features()

    def _loss_features(self) -> FloatArray:
        # An empty population (an empty intersection of attributes) has every metric undefined.
        strategies: tuple[BinStrategy, BinStrategy] = (
            ("uniform", "quantile") if self.n_cases else ("uniform", "uniform")
        )
        edges = [bin_edges(self.probabilities, self.settings.n_bins, s) for s in strategies]
        columns = [
            squared_errors(self.labels, self.probabilities),
            log_losses(self.labels, self.probabilities),
            *(ece_features(self.labels, self.probabilities, e) for e in edges),
        ]
        if self.recalibration_start is not None:
            columns.append(
                recalibration_features(self.labels, self.recalibration_x, self.recalibration_start)
            )
        features: FloatArray = np.column_stack(columns)
        return features

    def _columns(self, weights: NDArray[Any]) -> NDArray[Any]:
        return weights if self.whole else np.take(weights, self.index, axis=1)

    def evaluate(
        self, weights: NDArray[Any], *, features: FloatArray | None = None
    ) -> PopulationBatch:
        """Return every metric for each row of `weights` (`[R, N]`, N = all cases).

        `features` are `loss_features` built by the caller (None: the kept ones).
        """
        s = self.settings
        rows = weights.shape[0]
        ranking = ranking_batch(
            weights,
            self.ranked,
            average_precision=True,
            threshold=s.threshold,
            target_specificity=s.target_specificity,
            target_sensitivity=s.target_sensitivity,
        )
        assert ranking.counts is not None
        assert ranking.average_precision is not None
        assert ranking.sensitivity_at_specificity is not None
        assert ranking.specificity_at_sensitivity is not None
        counts = ranking.counts
        metrics = {name: count_metric_batch(name, counts) for name in COUNT_METRICS}
        metrics["auroc"] = ranking.auroc
        metrics["average_precision"] = ranking.average_precision
        metrics["sensitivity_at_specificity"] = ranking.sensitivity_at_specificity
        metrics["specificity_at_sensitivity"] = ranking.specificity_at_sensitivity

        own = self._columns(weights)
        w = own.astype(np.float64)
        sums = w @ (self.loss_features if features is None else features)
        total = ranking.positives + ranking.negatives
        reasons = _Reasons(rows)
        metrics["brier"] = reasons.finish(reasons.divide(sums[:, 0], total, NO_WEIGHT))
        reasons = _Reasons(rows)
        metrics["log_loss"] = reasons.finish(reasons.divide(sums[:, 1], total, NO_WEIGHT))
        bins = s.n_bins
        # Each ECE takes 2 * bins columns: the bins' p - y sums and their null variances.
        metrics["ece"] = ece_batch(sums[:, 2 : 2 + 2 * bins], total)
        metrics["ece_equal_mass"] = ece_batch(sums[:, 2 + 2 * bins : 2 + 4 * bins], total)
        metrics["net_benefit"] = net_benefit_from_counts(counts, s.threshold_probability)
        if self.recalibration_start is None:
            reason = self.recalibration.slope.reason or "undefined"
            metrics["calibration_slope"] = MetricBatch.undefined(rows, reason)
            metrics["calibration_intercept"] = MetricBatch.undefined(rows, reason)
        else:
            slopes, intercepts = logistic_recalibration_batch(
                own,
                self.labels,
                self.recalibration_x,
                self.recalibration_start,
                first_step_sums=sums[:, 2 + 4 * bins :],
            )
            slopes, intercepts = _separated_fits_are_infinite(
                own, self.labels, self.recalibration_x, slopes, intercepts
            )
            metrics["calibration_slope"] = slopes
            metrics["calibration_intercept"] = intercepts
        return PopulationBatch(
            metrics=metrics,
            counts=counts,
            ranking=ranking,
            loss_sums=sums[:, :2],
            total_weight=total,
        )

    def lean(
        self,
        weights: NDArray[Any],
        names: Collection[str],
        counts: ConfusionCountsBatch | None = None,
    ) -> tuple[dict[str, FloatArray], ConfusionCountsBatch]:
        """Return the named metrics (all in LEAN_METRICS) per weight row, and the counts.

        `counts`, when the caller already has them (from one matrix product shared by several
        populations), spare the threshold counts; the ranking kernel runs only for ranking
        metrics (or to get the counts).
        """
        asked = frozenset(names)
        if not asked <= LEAN_METRICS:
            raise ValueError(f"not lean metrics: {', '.join(sorted(asked - LEAN_METRICS))}")
        s = self.settings
        out: dict[str, FloatArray] = {}
        if counts is None or asked & RANKING_METRICS:
            ranking = ranking_batch(
                weights,
                self.ranked,
                average_precision="average_precision" in asked,
                threshold=s.threshold if counts is None else None,
                target_specificity=s.target_specificity
                if "sensitivity_at_specificity" in asked
                else None,
                target_sensitivity=s.target_sensitivity
                if "specificity_at_sensitivity" in asked
                else None,
            )
            if counts is None:
                assert ranking.counts is not None
                counts = ranking.counts
            ranked = {
                "auroc": ranking.auroc,
                "average_precision": ranking.average_precision,
                "sensitivity_at_specificity": ranking.sensitivity_at_specificity,
                "specificity_at_sensitivity": ranking.specificity_at_sensitivity,
            }
            for name in asked & RANKING_METRICS:
                batch = ranked[name]
                assert batch is not None
                out[name] = batch.values
        for name in asked & frozenset(COUNT_METRICS):
            out[name] = count_metric_batch(name, counts).values
        if "net_benefit" in asked:
            out["net_benefit"] = net_benefit_from_counts(counts, s.threshold_probability).values
        return out, counts

    def evaluate_point(self) -> PopulationBatch:
        """Return the point estimates: every metric with unit weights (one row)."""
        kept = self.__dict__.get("loss_features")
        batch = self.evaluate(
            np.ones((1, self.n_total), dtype=np.int64),
            features=kept if kept is not None else self._loss_features(),
        )
        slope, intercept = self.recalibration
        # The point fit is the damped-Newton one, not a refit from itself.
        batch.metrics["calibration_slope"] = _single(slope)
        batch.metrics["calibration_intercept"] = _single(intercept)
        return batch

    def estimates(
        self,
        point: PopulationBatch,
        replicates: dict[str, FloatArray] | None,
        *,
        unit: BootstrapUnit,
        n_units: int,
        clusters: IntArray | None,
        n_clusters: int = 0,
        names: Collection[str] | None = None,
        intervals_for: Collection[str] | None = None,
    ) -> dict[str, Estimate]:
        """Return one `Estimate` per metric (or per metric of `names`), with its interval.

        The interval is the one the settings ask for, for the metrics in `intervals_for`
        (default: every metric); the others are point estimates (method `none`), and so are
        bootstrap metrics when `replicates` is None. `replicates` must hold every metric that
        takes a bootstrap interval. `n_units` counts the resampled units (patients or cases)
        of this population; `clusters` (the patient number of each of all N cases, of
        `n_clusters` patients) makes Wilson's interval carry the design effect and DeLong's
        become Obuchowski's; None treats cases as independent.
        """
        s = self.settings
        out: dict[str, Estimate] = {}
        for name in BINARY_METRIC_NAMES if names is None else names:
            value = point.metrics[name].value()
            method = s.method_for(name)
            if (intervals_for is not None and name not in intervals_for) or (
                method == "bootstrap" and replicates is None
            ):
                method = "none"
            if name in ECE_METRICS and method == "bootstrap" and replicates is not None:
                # Debiased, with a one-sided upper bound (`validators.metrics.ece_estimate`).
                out[name] = ece_estimate(
                    value,
                    self.labels,
                    self.probabilities,
                    strategy=ECE_METRICS[name],
                    n_bins=s.n_bins,
                    level=s.level,
                    n=n_units,
                    n_cases=self.n_cases,
                    method=method_name("debiased_least_favourable_upper", unit),
                    replicates=replicates[name],
                    clustered=clusters is not None and n_units < self.n_cases,
                )
                continue
            interval: Interval | None = None
            note: str | None = None
            if value.value is not None and replicates is not None and method == "bootstrap":
                interval = percentile_interval(
                    replicates[name], s.level, max_undefined_fraction=s.max_undefined_fraction
                )
            elif value.value is not None and method == "wilson":
                interval, note = self._wilson(name, clusters, n_clusters)
            elif value.value is not None and method == "delong":
                interval = self._delong(clusters)
            clustered_units = clusters is not None and method != "none"
            out[name] = make_estimate(
                value,
                interval,
                level=s.level,
                n=n_units if method == "bootstrap" or clustered_units else self.n_cases,
                n_cases=self.n_cases,
                method=method_name(method, unit),
                note=note,
            )
        return out

    def _wilson(
        self, metric: str, clusters: IntArray | None, n_clusters: int
    ) -> tuple[Interval, str | None]:
        """Return a proportion's (clustered) Wilson interval, and what the clustering did."""
        if clusters is None:
            # Every case its own patient: the clustered interval is exactly Wilson's on the sums.
            return wilson_interval(*self.proportion_counts(metric), self.settings.level), None
        successes, trials = self.proportion_totals(metric, clusters, n_clusters)
        wilson = clustered_wilson_interval(successes, trials, self.settings.level)
        interval = Interval(wilson.lower, wilson.upper, 0, wilson.reason)
        if wilson.effective_n is None:
            return interval, None
        total = int(trials.sum())
        if wilson.design_effect_estimated:
            note = (
                f"design effect {wilson.design_effect:.2f} "
                f"(effective n {wilson.effective_n:.1f} of {total} cases)"
            )
        else:
            note = f"0 or 1: effective n is the {wilson.clusters} patients, not the {total} cases"
        return interval, note

    def _delong(self, clusters: IntArray | None) -> Interval:
        """Return AUROC's DeLong interval, or Obuchowski's with patient clusters."""
        if clusters is None:
            delong = delong_interval(self.labels, self.scores, self.settings.level)
            return Interval(delong.lower, delong.upper, 0, delong.reason)
        clustered = obuchowski_interval(
            self.labels, self.scores, clusters[self.index], self.settings.level
        )
        return Interval(clustered.lower, clustered.upper, 0, clustered.reason)

    def proportion_counts(self, metric: str) -> tuple[int, int]:
        """Return a proportion's numerator and denominator over this population's cases."""
        hits, members = proportion_members(metric, self.labels, self.called)
        return int(hits.sum()), int(members.sum())

    def proportion_totals(
        self, metric: str, clusters: IntArray, n_clusters: int
    ) -> tuple[FloatArray, FloatArray]:
        """Return a proportion's (numerator, denominator) per patient.

        `clusters` is the patient number of each of all N cases, of `n_clusters` patients. The
        arrays are indexed by patient, so the totals of different populations of the same
        cases line up and can be subtracted.
        """
        hits, members = proportion_members(metric, self.labels, self.called)
        return cluster_totals(hits, members, clusters[self.index], n_clusters)

    def result(
        self, estimates: dict[str, Estimate], *, n_patients: int | None, curves: bool = True
    ) -> BinaryMetrics:
        """Return the typed metrics of this population, with its curves unless `curves` is False."""
        s = self.settings
        positives = int(self.labels.sum())
        empty = self.n_cases == 0 or not curves
        return BinaryMetrics(
            scores=s.scores,
            threshold=s.threshold,
            target_specificity=s.target_specificity,
            target_sensitivity=s.target_sensitivity,
            calibration_bins=s.n_bins,
            n_cases=self.n_cases,
            n_patients=n_patients,
            n_positive=positives,
            n_negative=self.n_cases - positives,
            roc_curve=None if empty else roc_curve(self.labels, self.scores),
            calibration_curve=None
            if empty
            else reliability_curve(
                self.labels, self.probabilities, n_bins=s.n_bins, strategy="uniform"
            ),
            calibration_curve_equal_mass=None
            if empty
            else reliability_curve(
                self.labels, self.probabilities, n_bins=s.n_bins, strategy="quantile"
            ),
            decision_curve=None if empty else decision_curve(self.labels, self.probabilities),
            **estimates,
        )


SLOPE_INFINITE = "the outcome is separated by the predicted risk: the calibration slope is infinite"


def _separated_fits_are_infinite(
    weights: NDArray[Any],
    labels: BoolArray,
    x: FloatArray,
    slopes: MetricBatch,
    intercepts: MetricBatch,
) -> tuple[MetricBatch, MetricBatch]:
    """Return the refits with each separated replicate's slope (and intercept) made infinite.

    A replicate whose drawn positives all lie at or above its drawn negatives on the logit
    scale (complete or quasi-complete separation) has no finite maximum-likelihood fit: its
    slope is +inf (-inf when reversed), a value the percentile interval must count, not an
    undefined replicate to drop. The fitted line then crosses 0 at a point c between the two
    classes and the intercept is -slope * c: infinite with the opposite sign of c, and left
    undefined when c could be 0 (the classes meet on both sides of logit 0).
    """
    candidates = np.flatnonzero((slopes.codes != 0) & np.any(weights > 0, axis=1))
    if candidates.size == 0:
        return slopes, intercepts
    drawn = weights[candidates] > 0
    positive, negative = drawn & labels, drawn & ~labels
    has_both = positive.any(axis=1) & negative.any(axis=1)
    lowest_pos = np.where(positive, x, np.inf).min(axis=1)
    highest_pos = np.where(positive, x, -np.inf).max(axis=1)
    lowest_neg = np.where(negative, x, np.inf).min(axis=1)
    highest_neg = np.where(negative, x, -np.inf).max(axis=1)
    # Positives above negatives: slope +inf, crossing c in [highest_neg, lowest_pos].
    upward = has_both & (highest_neg <= lowest_pos) & (highest_neg < highest_pos)
    downward = has_both & (highest_pos <= lowest_neg) & (highest_pos < highest_neg) & ~upward
    if not (upward.any() or downward.any()):
        return slopes, intercepts
    slope_values, slope_codes = slopes.values.copy(), slopes.codes.copy()
    intercept_values, intercept_codes = intercepts.values.copy(), intercepts.codes.copy()
    for mask, sign, low, high in (
        (upward, 1.0, highest_neg, lowest_pos),
        (downward, -1.0, highest_pos, lowest_neg),
    ):
        rows = candidates[mask]
        slope_values[rows] = sign * np.inf
        slope_codes[rows] = 0
        # intercept = -slope * c: c > 0 gives -sign * inf, c < 0 gives +sign * inf.
        crossing_sign = np.where(low[mask] > 0, 1.0, np.where(high[mask] < 0, -1.0, 0.0))
        known = crossing_sign != 0
        intercept_values[rows[known]] = -sign * crossing_sign[known] * np.inf
        intercept_codes[rows[known]] = 0
    return (
        MetricBatch(slope_values, slope_codes, slopes.texts, infinite=SLOPE_INFINITE),
        MetricBatch(intercept_values, intercept_codes, intercepts.texts, infinite=SLOPE_INFINITE),
    )


def collect_replicates(
    plan: BootstrapPlan,
    populations: Sequence[BinaryPopulation],
    metrics: Collection[str] | None = None,
) -> list[dict[str, FloatArray]]:
    """Return, per population, each metric's value in every replicate (NaN where undefined).

    All populations see the same weight blocks, so their replicates are paired. `metrics`
    (default: every metric) limits the work: metrics all in LEAN_METRICS skip the losses and
    the calibration refits.
    """
    names = BINARY_METRIC_NAMES if metrics is None else tuple(dict.fromkeys(metrics))
    lean = frozenset(names) <= LEAN_METRICS
    tables = [{name: np.empty(plan.replicates) for name in names} for _ in populations]
    for block in plan.blocks():
        for population, table in zip(populations, tables, strict=True):
            if lean:
                values, _ = population.lean(block.counts, names)
            else:
                batch = population.evaluate(block.counts)
                values = {name: batch.metrics[name].values for name in names}
            for name in names:
                table[name][block.start : block.stop] = values[name]
    return tables
