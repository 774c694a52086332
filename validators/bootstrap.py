"""Intervals: the vectorized case- and patient-level bootstrap, Wilson, and DeLong.

The bootstrap never calls a metric once per replicate. A `BootstrapPlan` draws, for each replicate
r, how many times each case (or each patient, the cluster bootstrap) is resampled: a row of integer
weights. Rows are produced in blocks `W` of shape `[R_block, N]` (bounded memory), and every
metric is computed for all rows of a block at once from sufficient statistics: confusion counts
are `W @ indicators`; AUROC and average precision come from one sort of the scores, done before
resampling, and running sums of the gathered weights (`validators.metrics.ranking_batch`);
Brier, log loss and ECE are `W @ per-case losses`. Because the same `W` serves every population,
a subgroup is just a mask over the same replicates, and differences between groups are paired.

Replicate r's weights depend only on (seed, r, number of units): replicates are drawn in groups
of 64 consecutive ones (fewer for large samples), group g from a PCG64 stream seeded by
`SeedSequence(seed, spawn_key=(g,))`, so results are reproducible to the last digit whatever the
block size, and any replicate can be regenerated with its group.

`evaluate_binary` and `evaluate_multilabel` (behind `metrics.binary_metrics` and
`metrics.multilabel_metrics`) assemble the typed results. `BinaryPopulation` is the reusable
piece for subgroups: build one per group mask, feed all of them the same weight blocks.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from validators.blas import one_blas_thread
from validators.calibration import (
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
from validators.intervals import (
    check_level,
    cluster_index,
    cluster_totals,
    clustered_wilson_interval,
    midranks,
    obuchowski_interval,
    one_per_case,
    wilson_bounds,
    z_quantile,
)
from validators.metrics import (
    COUNT_METRICS,
    NO_WEIGHT,
    BoolArray,
    CiMethod,
    ConfusionCountsBatch,
    FloatArray,
    IntArray,
    MetricBatch,
    MetricValue,
    RankedCases,
    RankingBatch,
    ScoreScale,
    _Reasons,
    count_metric_batch,
    log_losses,
    net_benefit_from_counts,
    ranking_batch,
    roc_curve,
    sigmoid,
    squared_errors,
    validate_binary,
    validate_probabilities,
)
from validators.results import (
    AVERAGED_METRIC_NAMES,
    BINARY_METRIC_NAMES,
    AveragedMetrics,
    BinaryMetrics,
    BootstrapUnit,
    Estimate,
    LabelResult,
    MultilabelMetrics,
)

__all__ = [
    "AVERAGED_METRIC_NAMES",
    "BINARY_METRIC_NAMES",
    "BinaryPopulation",
    "BootstrapPlan",
    "DelongComparison",
    "DelongInterval",
    "EvaluationSettings",
    "Interval",
    "PopulationBatch",
    "RankedCases",
    "RankingBatch",
    "WeightBlock",
    "auroc_batch",
    "cluster_index",
    "collect_replicates",
    "confusion_counts_batch",
    "delong_auc_variance",
    "delong_interval",
    "delong_paired_test",
    "evaluate_binary",
    "evaluate_multilabel",
    "grouped_confusion_counts_batch",
    "method_name",
    "percentile_interval",
    "probabilities_from",
    "ranking_batch",
    "score_order",
    "wilson_interval",
]


RANKING_METRICS = frozenset(
    {"auroc", "average_precision", "sensitivity_at_specificity", "specificity_at_sensitivity"}
)
"""Metrics from the one-sort ranking kernel (`validators.metrics.ranking_batch`)."""
LEAN_METRICS = frozenset(COUNT_METRICS) | RANKING_METRICS | {"net_benefit"}
"""Metrics computed from the confusion counts and the ranking kernel alone
(`BinaryPopulation.lean`); the others (Brier, log loss, ECE, calibration) need the full
`BinaryPopulation.evaluate`, which is slower but computes the same values."""

DRAW_GROUP = 64
"""Replicates drawn by one generator: replicate r comes from group r // 64, row r % 64."""
DRAW_GROUP_ELEMENTS = 1 << 16
"""At most this many draws per generator call: from 65,536 units on, one replicate a group (a
long draw holds the GIL and would stall the kernels running beside the drawing thread; the
per-replicate set-up it saves is negligible at that size)."""

BLOCK_ELEMENTS = 1 << 24
"""Weights per block by default (R_block x N): 16 MiB of int8, a few times that in work arrays."""

_EXACT_FLOAT32 = 1 << 24


# --------------------------------------------------------------------------------------------
# Resampling weights
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class WeightBlock:
    """Replicates `start` to `stop - 1`: `counts[r, i]` is how often case i is drawn in r."""

    start: int
    stop: int
    counts: NDArray[np.signedinteger[Any]]


@dataclass(frozen=True, eq=False)
class BootstrapPlan:
    """Which cases each bootstrap replicate draws, generated block by block on demand.

    With `clusters` (patient index per case) whole patients are resampled and each case takes
    its patient's count: all images of a patient move together. Otherwise cases are resampled.
    """

    n_cases: int
    replicates: int
    seed: int
    clusters: IntArray | None
    n_clusters: int
    block_size: int
    dtype: type[np.signedinteger[Any]]

    @classmethod
    def create(
        cls,
        n_cases: int,
        *,
        replicates: int = 1000,
        seed: int = 0,
        groups: ArrayLike | None = None,
        block_size: int | None = None,
    ) -> BootstrapPlan:
        """Return a plan for `n_cases`; `groups` (patient ids, one per case) resamples patients."""
        if n_cases < 1:
            raise ValueError(f"the bootstrap needs at least one case; got {n_cases}")
        if replicates < 1:
            raise ValueError(f"replicates must be at least 1; got {replicates}")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer; got {seed}")
        clusters, n_clusters = None, n_cases
        if groups is not None:
            clusters, n_clusters = cluster_index(groups, n_cases)
        size = block_size or max(1, BLOCK_ELEMENTS // n_cases)
        # A row's total is at most (units drawn) x (largest cluster); int32 sums must not overflow.
        largest = 1 if clusters is None else int(np.bincount(clusters).max())
        dtype = np.int32 if n_clusters * largest < 2**31 else np.int64
        return cls(
            n_cases=n_cases,
            replicates=replicates,
            seed=seed,
            clusters=clusters,
            n_clusters=n_clusters,
            block_size=min(size, replicates),
            dtype=dtype,
        )

    @property
    def unit(self) -> BootstrapUnit:
        """What is resampled: cases, or patients."""
        return "case" if self.clusters is None else "patient"

    @property
    def n_units(self) -> int:
        """How many units (cases or patients) each replicate draws."""
        return self.n_clusters

    def weights(self, start: int, stop: int) -> NDArray[np.signedinteger[Any]]:
        """Return the `[stop - start, n_cases]` resampling counts of replicates start..stop-1.

        The counts are stored as int8 (a case is drawn more than 127 times in one replicate
        only with vanishing probability; the block is widened to `dtype` if it happens): the
        kernels' gathers move a quarter of the bytes, and they accumulate in int32, exactly
        (`validators.metrics`). Otherwise the dtype is `dtype`: int32, or int64 if a row's
        total could reach 2^31.
        """
        if not 0 <= start <= stop <= self.replicates:
            raise ValueError(f"replicates {start}..{stop} are outside 0..{self.replicates}")
        compact = self.n_cases * int(np.iinfo(np.int8).max) < 2**31
        out = np.empty((stop - start, self.n_cases), dtype=np.int8 if compact else self.dtype)
        size = self.draw_group
        for group in range(start // size, (stop - 1) // size + 1 if stop > start else 0):
            first = group * size
            low, high = max(start, first), min(stop, first + size)
            counts = self._draw_group(group)[low - first : high - first]
            if out.dtype == np.int8 and int(counts.max()) > np.iinfo(np.int8).max:
                out = out.astype(self.dtype)
            out[low - start : high - start] = (
                counts if self.clusters is None else counts[:, self.clusters]
            )
        return out

    @property
    def draw_group(self) -> int:
        """How many consecutive replicates one generator draws (64, fewer for large samples)."""
        return max(1, min(DRAW_GROUP, DRAW_GROUP_ELEMENTS // self.n_units))

    def _draw_group(self, group: int) -> NDArray[np.int64]:
        """Return the resampling counts per unit of the `draw_group` replicates of `group`.

        One PCG64 stream, seeded by `SeedSequence(seed, spawn_key=(group,))`, draws the units
        of all of them at once, and one `bincount` over row-offset draws counts them: a Python
        step per group, not per replicate (a generator per replicate spent half the time of a
        small evaluation setting itself up).
        """
        size = self.draw_group
        stream = np.random.SeedSequence(self.seed, spawn_key=(group,))
        draws = np.random.Generator(np.random.PCG64(stream)).integers(
            0, self.n_units, size=(size, self.n_units)
        )
        draws += (np.arange(size, dtype=np.int64) * self.n_units)[:, None]
        counts: NDArray[np.int64] = np.bincount(
            draws.ravel(), minlength=size * self.n_units
        ).reshape(size, self.n_units)
        return counts

    def blocks(self) -> Iterator[WeightBlock]:
        """Yield the replicates in blocks of `block_size` rows."""
        for start in range(0, self.replicates, self.block_size):
            stop = min(start + self.block_size, self.replicates)
            yield WeightBlock(start=start, stop=stop, counts=self.weights(start, stop))


def score_order(labels: BoolArray, scores: FloatArray) -> IntArray:
    """Return the order that sorts cases by score, ties by label (negatives first), stably.

    Cases with the same score and label are interchangeable in every metric, so in this order
    the case bootstrap gives the same replicates whatever the input order of such cases. (Cases
    tied on both that differ in a subgroup attribute still keep their input order: callers with
    case ids sort by them first, as `evaluate_predictions` does.)
    """
    order: IntArray = np.lexsort((labels, scores)).astype(np.intp)
    return order


# --------------------------------------------------------------------------------------------
# Batch kernels over a weight block
# --------------------------------------------------------------------------------------------


def _exact_float(weights: NDArray[Any]) -> NDArray[np.floating]:
    """Return the weights as a float matrix in which their integer sums are exact."""
    if weights.dtype in (np.float32, np.float64):
        return weights
    if np.issubdtype(weights.dtype, np.integer) and int(weights.sum(axis=1).max()) < _EXACT_FLOAT32:
        return weights.astype(np.float32)
    return weights.astype(np.float64)


def grouped_confusion_counts_batch(
    weights: NDArray[Any],
    y_true: BoolArray,
    y_pred: BoolArray,
    masks: BoolArray,
) -> list[ConfusionCountsBatch]:
    """Return confusion counts per replicate for each population mask (`masks` is `[G, N]`).

    One matrix product `W @ [positive, called positive, true positive, member]` for all groups;
    exact for integer weights.
    """
    masks = np.atleast_2d(masks)
    columns = np.stack([y_true & masks, y_pred & masks, y_true & y_pred & masks, masks], axis=2)
    indicator = columns.transpose(1, 0, 2).reshape(y_true.shape[0], -1)
    w = _exact_float(weights)
    sums = (w @ indicator.astype(w.dtype)).astype(np.float64)
    out = []
    for g in range(masks.shape[0]):
        positive, called, tp, total = (sums[:, 4 * g + k] for k in range(4))
        fp = called - tp
        fn = positive - tp
        out.append(ConfusionCountsBatch(tp=tp, fp=fp, tn=total - positive - fp, fn=fn))
    return out


def confusion_counts_batch(
    weights: NDArray[Any],
    y_true: BoolArray,
    y_pred: BoolArray,
    *,
    mask: BoolArray | None = None,
) -> ConfusionCountsBatch:
    """Return (TP, FP, TN, FN) per weight row, each `[R]`, over the cases in `mask` (or all)."""
    population = np.ones(y_true.shape[0], dtype=bool) if mask is None else mask
    return grouped_confusion_counts_batch(weights, y_true, y_pred, population[None, :])[0]


def auroc_batch(weights: NDArray[Any], ranked: RankedCases) -> MetricBatch:
    """Return the AUROC per weight row of the population `ranked` was built for."""
    return ranking_batch(weights, ranked).auroc


# --------------------------------------------------------------------------------------------
# Intervals
# --------------------------------------------------------------------------------------------


class Interval(NamedTuple):
    """Bounds of an interval, or None with the reason; undefined bootstrap replicates skipped.

    `determined` says that the data fix the value exactly (a disparity between two sides made
    of the same cases), so an interval of no width is the truth, not a method's collapse.
    """

    lower: float | None
    upper: float | None
    replicates_undefined: int = 0
    reason: str | None = None
    determined: bool = False


def percentile_interval(
    values: ArrayLike, level: float = 0.95, *, max_undefined_fraction: float = 0.5
) -> Interval:
    """Return the percentile bootstrap interval of replicate values (NaN = undefined replicate).

    Undefined replicates are left out and counted; when more than `max_undefined_fraction` of
    them are undefined there is no interval. Quantiles use numpy's default (linear) rule.
    An infinite replicate (+inf or -inf) is a value, never left out: a bound whose quantile
    reaches it is infinite (`Interval` carries it as `math.inf`; `make_estimate` stores it as
    an unbounded side).
    """
    check_level(level)
    replicate_values = np.asarray(values, dtype=np.float64)
    defined = replicate_values[~np.isnan(replicate_values)]
    undefined = int(replicate_values.shape[0] - defined.shape[0])
    if replicate_values.shape[0] == 0:
        return Interval(None, None, 0, "no bootstrap replicates")
    if defined.shape[0] == 0 or undefined > max_undefined_fraction * replicate_values.shape[0]:
        return Interval(
            None,
            None,
            undefined,
            f"undefined in {undefined} of {replicate_values.shape[0]} bootstrap replicates "
            f"(more than {max_undefined_fraction:.0%}): too few cases to estimate its uncertainty",
        )
    # Levels are decimals (0.95, 0.9): round away the binary error of 1 - level.
    alpha = round((1.0 - level) / 2.0, 12)
    lower, upper = _quantiles(np.sort(defined), alpha)
    return Interval(lower, upper, undefined, None)


def _quantiles(ordered: FloatArray, alpha: float) -> tuple[float, float]:
    """Return the alpha and 1 - alpha quantiles of sorted values (numpy's linear rule).

    Where interpolation would touch an infinite value (inf - inf has no meaning, and a finite
    number between a value and infinity is no bound), the lower quantile takes its lower
    neighbour and the upper quantile its upper one: the interval only widens, to infinity.
    """
    if np.isfinite(ordered[[0, -1]]).all():
        lower, upper = np.quantile(ordered, [alpha, 1.0 - alpha])
        return float(lower), float(upper)
    out = []
    for q, take_upper in ((alpha, False), (1.0 - alpha, True)):
        position = (ordered.shape[0] - 1) * q
        below = math.floor(position)
        above = min(below + 1, ordered.shape[0] - 1)
        a, b = float(ordered[below]), float(ordered[above])
        if position == below:
            out.append(a)
        elif math.isinf(a) or math.isinf(b):
            out.append(b if take_upper else a)
        else:
            out.append(a + (position - below) * (b - a))
    return out[0], out[1]


def wilson_interval(successes: float, n: float, level: float = 0.95) -> Interval:
    """Return the Wilson score interval of a proportion successes / n (Wilson 1927).

    (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n); for 8/10 at 95%: [0.4902, 0.9433].
    """
    z = z_quantile(level)
    if n <= 0:
        return Interval(None, None, 0, "no cases in the denominator")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie between 0 and n = {n}; got {successes}")
    lower, upper = wilson_bounds(successes / n, n, z)
    return Interval(float(lower), float(upper))


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


# --------------------------------------------------------------------------------------------
# Populations: everything one label needs per weight block
# --------------------------------------------------------------------------------------------

PROPORTIONS = ("sensitivity", "specificity", "ppv", "npv", "prevalence")
"""Metrics that are one count over another: their intervals are score (Wilson) intervals."""


def proportion_members(
    metric: str, labels: BoolArray, called: BoolArray
) -> tuple[BoolArray, BoolArray]:
    """Return (in the numerator, in the denominator) per case for a proportion metric."""
    if metric == "sensitivity":
        return labels & called, labels
    if metric == "specificity":
        return ~labels & ~called, ~labels
    if metric == "ppv":
        return labels & called, called
    if metric == "npv":
        return ~labels & ~called, ~called
    if metric == "prevalence":
        return labels, np.ones_like(labels)
    raise ValueError(f"{metric!r} is not a proportion; expected one of {', '.join(PROPORTIONS)}")


@dataclass(frozen=True)
class EvaluationSettings:
    """How a population is evaluated: operating point, targets, bins and interval method."""

    threshold: float = 0.5
    scores: ScoreScale = "probability"
    target_specificity: float = 0.9
    target_sensitivity: float = 0.9
    n_bins: int = 10
    level: float = 0.95
    ci: frozenset[str] = frozenset({"bootstrap"})
    max_undefined_fraction: float = 0.5

    @classmethod
    def create(
        cls,
        *,
        threshold: float = 0.5,
        scores: ScoreScale = "probability",
        target_specificity: float = 0.9,
        target_sensitivity: float = 0.9,
        n_bins: int = 10,
        level: float = 0.95,
        ci: CiMethod | Sequence[CiMethod] = "bootstrap",
        max_undefined_fraction: float = 0.5,
    ) -> EvaluationSettings:
        """Return validated settings; `ci` is one method or several ("wilson", "delong")."""
        methods = frozenset([ci] if isinstance(ci, str) else ci)
        unknown = methods - {"bootstrap", "wilson", "delong", "none"}
        if unknown or not methods:
            raise ValueError(
                f"ci must be 'bootstrap', 'wilson', 'delong' or 'none' (or wilson and delong "
                f"together); got {sorted(unknown) or 'nothing'}"
            )
        if "none" in methods and len(methods) > 1:
            raise ValueError("ci 'none' cannot be combined with another interval method")
        if scores not in ("probability", "logit"):
            raise ValueError(f"scores must be 'probability' or 'logit'; got {scores!r}")
        if not math.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number; got {threshold!r}")
        for name, target in (
            ("target_specificity", target_specificity),
            ("target_sensitivity", target_sensitivity),
        ):
            if not 0.0 <= target <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1; got {target!r}")
        if n_bins < 1:
            raise ValueError(f"n_bins must be at least 1; got {n_bins}")
        check_level(level)
        return cls(
            threshold=float(threshold),
            scores=scores,
            target_specificity=float(target_specificity),
            target_sensitivity=float(target_sensitivity),
            n_bins=n_bins,
            level=float(level),
            ci=methods,
            max_undefined_fraction=max_undefined_fraction,
        )

    @property
    def threshold_probability(self) -> float:
        """The operating threshold as a probability (for the net benefit)."""
        if self.scores == "probability":
            return self.threshold
        return float(sigmoid(np.array([self.threshold]))[0])

    def method_for(self, metric: str) -> str:
        """Return the interval method of `metric`: wilson, delong, bootstrap or none."""
        if "none" in self.ci:
            return "none"
        # A proportion's percentile interval collapses to a point at 0/n and n/n (15 of 15
        # detected read 1.000 to 1.000) and under-covers small groups; the score interval, with
        # the design effect of patient clustering, keeps its level there (docs/statistics.md).
        if metric in PROPORTIONS:
            return "wilson"
        if metric == "auroc" and "delong" in self.ci:
            return "delong"
        return "bootstrap"

    @property
    def needs_bootstrap(self) -> bool:
        """Whether any metric's interval comes from the bootstrap."""
        return "none" not in self.ci


UNIT_SUFFIXED_METHODS = ("debiased_least_favourable_upper", "debiased_bootstrap_upper")
"""Methods whose stored name ends with the resampled unit, as the percentile bootstrap's does."""


def method_name(method: str, unit: BootstrapUnit) -> str:
    """Return the method string stored in an `Estimate` (the one place these names are made)."""
    if method == "bootstrap":
        return f"bootstrap_percentile_{unit}"
    if method in UNIT_SUFFIXED_METHODS:
        return f"{method}_{unit}"
    if method in ("wilson", "mover_wilson") and unit == "patient":
        return f"{method}_clustered"
    if method == "delong" and unit == "patient":
        return "obuchowski"
    return method


def probabilities_from(scores: FloatArray, scale: ScoreScale) -> FloatArray:
    """Return probabilities: the scores themselves (checked) or the sigmoid of logits."""
    if scale == "probability":
        return validate_probabilities(scores, name="y_score")
    return sigmoid(scores)


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
                # Debiased, with a one-sided upper bound (`validators.calibration.ece_estimate`).
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


def _single(value: MetricValue) -> MetricBatch:
    if value.value is None:
        return MetricBatch.undefined(1, value.reason or "undefined")
    return MetricBatch(np.array([value.value]), np.zeros(1, dtype=np.int16), ())


def make_estimate(
    value: MetricValue,
    interval: Interval | None,
    *,
    level: float,
    n: int,
    n_cases: int,
    method: str,
    note: str | None = None,
) -> Estimate:
    """Return an Estimate; ok only when both the value and its requested interval exist."""
    if value.value is None:
        return Estimate.undefined(
            value.reason or "undefined", n=n, n_cases=n_cases, level=level, method=method
        )
    if interval is None:
        return Estimate.ok(value.value, level=level, n=n, n_cases=n_cases, method=method)
    if interval.lower is None or interval.upper is None:
        return Estimate.undefined(
            interval.reason or "no interval",
            n=n,
            n_cases=n_cases,
            level=level,
            method=method,
            replicates_undefined=interval.replicates_undefined,
        )
    if interval.lower == math.inf or interval.upper == -math.inf:
        # Nearly every replicate is infinite while the estimate is finite: no finite bound.
        return Estimate.undefined(
            "infinite in nearly every bootstrap replicate although finite on the data: "
            "the interval has no finite bound on either side",
            n=n,
            n_cases=n_cases,
            level=level,
            method=method,
            replicates_undefined=interval.replicates_undefined,
        )
    if interval.lower == interval.upper and not interval.determined:
        # A method that collapses to a point (every replicate alike, as for an AUROC of 1 in
        # a small sample; DeLong's variance of 0 there) shows no uncertainty it cannot see.
        # No interval is reported rather than one of no width.
        collapsed = (
            f"the {method} interval has no width ({interval.lower:g} to {interval.upper:g}): "
            "every resample gives the same value, which does not make it certain, so no "
            "interval is reported"
        )
        return Estimate.ok(
            value.value,
            level=level,
            n=n,
            n_cases=n_cases,
            method=method,
            replicates_undefined=interval.replicates_undefined,
            note=collapsed if note is None else f"{note}; {collapsed}",
        )
    lower_unbounded = interval.lower == -math.inf
    upper_unbounded = interval.upper == math.inf
    if lower_unbounded or upper_unbounded:
        side = "upper" if upper_unbounded else "lower"
        infinite = f"infinite in some bootstrap replicates: the {side} side is unbounded"
        note = infinite if note is None else f"{note}; {infinite}"
    return Estimate.ok(
        value.value,
        lower=None if lower_unbounded else interval.lower,
        upper=None if upper_unbounded else interval.upper,
        lower_unbounded=lower_unbounded,
        upper_unbounded=upper_unbounded,
        level=level,
        n=n,
        n_cases=n_cases,
        method=method,
        replicates_undefined=interval.replicates_undefined,
        note=note,
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


# --------------------------------------------------------------------------------------------
# Whole evaluations
# --------------------------------------------------------------------------------------------


@one_blas_thread
def evaluate_binary(
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
    """Return `BinaryMetrics` with intervals; see `validators.metrics.binary_metrics`."""
    labels, raw = validate_binary(y_true, y_score)
    settings = EvaluationSettings.create(
        threshold=threshold,
        scores=scores,
        target_specificity=target_specificity,
        target_sensitivity=target_sensitivity,
        n_bins=n_bins,
        level=level,
        ci=ci,
    )
    probabilities = probabilities_from(raw, settings.scores)
    # Resample the cases in ascending score order: every gather in the kernels is then monotone.
    order = score_order(labels, raw)
    labels, raw, probabilities = labels[order], raw[order], probabilities[order]
    if groups is not None:
        groups = one_per_case(groups, labels.shape[0])[order]
    plan = BootstrapPlan.create(labels.shape[0], replicates=replicates, seed=seed, groups=groups)
    population = BinaryPopulation(labels, raw, probabilities, settings)
    point = population.evaluate_point()
    tables = collect_replicates(plan, [population]) if settings.needs_bootstrap else None
    estimates = population.estimates(
        point,
        tables[0] if tables else None,
        unit=plan.unit,
        n_units=plan.n_units,
        clusters=plan.clusters,
        n_clusters=plan.n_clusters,
    )
    n_patients = plan.n_clusters if groups is not None else None
    return population.result(estimates, n_patients=n_patients)


def _micro(batches: Sequence[PopulationBatch], ranking: RankingBatch) -> dict[str, MetricBatch]:
    """Return the pooled (micro-averaged) metrics from the labels' counts and the pooled ranking."""
    counts = ConfusionCountsBatch(
        *(
            np.sum([getattr(b.counts, f) for b in batches], axis=0)
            for f in ConfusionCountsBatch._fields
        )
    )
    metrics = {
        name: count_metric_batch(name, counts)
        for name in ("sensitivity", "specificity", "ppv", "npv", "f1", "balanced_accuracy")
    }
    metrics["auroc"] = ranking.auroc
    assert ranking.average_precision is not None
    metrics["average_precision"] = ranking.average_precision
    losses = np.sum([b.loss_sums for b in batches], axis=0)
    total = np.sum([b.total_weight for b in batches], axis=0)
    for column, name in enumerate(("brier", "log_loss")):
        reasons = _Reasons(total.shape[0])
        metrics[name] = reasons.finish(reasons.divide(losses[:, column], total, NO_WEIGHT))
    return metrics


@one_blas_thread
def evaluate_multilabel(
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
    """Return `MultilabelMetrics`; see `validators.metrics.multilabel_metrics`."""
    truth = np.asarray(y_true)
    score = np.asarray(y_score)
    names = [str(label) for label in labels]
    if truth.ndim != 2 or score.shape != truth.shape or truth.shape[1] != len(names):
        raise ValueError(
            f"expected y_true and y_score of shape [N, {len(names)}] (one column per label); "
            f"got {truth.shape} and {score.shape}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"labels must be distinct; got {names}")
    per_label_thresholds = (
        [float(thresholds)] * len(names)
        if isinstance(thresholds, int | float)
        else [float(t) for t in thresholds]
    )
    if len(per_label_thresholds) != len(names):
        raise ValueError(
            f"expected one threshold per label ({len(names)}); got {len(per_label_thresholds)}"
        )
    columns: list[tuple[BoolArray, FloatArray]] = []
    for k, name in enumerate(names):
        try:
            columns.append(validate_binary(truth[:, k], score[:, k]))
        except ValueError as error:
            raise ValueError(f"label {name!r}: {error}") from None
    populations = []
    for (label_truth, label_score), cut in zip(columns, per_label_thresholds, strict=True):
        settings = EvaluationSettings.create(
            threshold=cut,
            scores=scores,
            target_specificity=target_specificity,
            target_sensitivity=target_sensitivity,
            n_bins=n_bins,
            level=level,
            ci=ci,
        )
        populations.append(
            BinaryPopulation(
                label_truth, label_score, probabilities_from(label_score, scores), settings
            )
        )
    n_cases = truth.shape[0]
    pooled = RankedCases.build(
        np.stack([c[0] for c in columns], axis=1).ravel(),
        np.stack([c[1] for c in columns], axis=1).ravel(),
        columns=np.repeat(np.arange(n_cases), len(names)),
    )
    plan = BootstrapPlan.create(n_cases, replicates=replicates, seed=seed, groups=groups)
    settings = populations[0].settings

    points = [p.evaluate_point() for p in populations]
    point_micro = _micro(
        points, ranking_batch(np.ones((1, n_cases), dtype=np.int64), pooled, average_precision=True)
    )
    tables: list[dict[str, FloatArray]] | None = None
    micro_table: dict[str, FloatArray] | None = None
    if settings.needs_bootstrap:
        tables = [
            {name: np.empty(plan.replicates) for name in BINARY_METRIC_NAMES} for _ in populations
        ]
        micro_table = {name: np.empty(plan.replicates) for name in AVERAGED_METRIC_NAMES}
        for block in plan.blocks():
            batches = [p.evaluate(block.counts) for p in populations]
            for batch, table in zip(batches, tables, strict=True):
                for name in BINARY_METRIC_NAMES:
                    table[name][block.start : block.stop] = batch.metrics[name].values
            micro = _micro(batches, ranking_batch(block.counts, pooled, average_precision=True))
            for name in AVERAGED_METRIC_NAMES:
                micro_table[name][block.start : block.stop] = micro[name].values

    n_patients = plan.n_clusters if groups is not None else None
    per_label = []
    label_estimates = []
    for k, (name, population) in enumerate(zip(names, populations, strict=True)):
        estimates = population.estimates(
            points[k],
            tables[k] if tables else None,
            unit=plan.unit,
            n_units=plan.n_units,
            clusters=plan.clusters,
            n_clusters=plan.n_clusters,
        )
        label_estimates.append(estimates)
        per_label.append(
            LabelResult(label=name, metrics=population.result(estimates, n_patients=n_patients))
        )

    method = method_name("bootstrap", plan.unit) if settings.needs_bootstrap else "none"
    n_units = plan.n_units if settings.needs_bootstrap else n_cases

    def averaged(
        values: dict[str, tuple[MetricValue, FloatArray | None]],
        covers: dict[str, list[str]],
        partial: dict[str, str],
    ) -> AveragedMetrics:
        out: dict[str, Estimate] = {}
        for name, (value, replicate_values) in values.items():
            interval = (
                percentile_interval(
                    replicate_values,
                    settings.level,
                    max_undefined_fraction=settings.max_undefined_fraction,
                )
                if replicate_values is not None
                else None
            )
            estimate = make_estimate(
                value, interval, level=settings.level, n=n_units, n_cases=n_cases, method=method
            )
            if name in partial and estimate.status == "ok":
                reason = partial[name] + (f"; {estimate.reason}" if estimate.reason else "")
                estimate = estimate.model_copy(update={"status": "partial", "reason": reason})
            out[name] = estimate
        return AveragedMetrics(covers=covers, **out)

    macro: dict[str, tuple[MetricValue, FloatArray | None]] = {}
    macro_covers: dict[str, list[str]] = {}
    macro_partial: dict[str, str] = {}
    for name in AVERAGED_METRIC_NAMES:
        values = [points[k].metrics[name].value() for k in range(len(names))]
        defined = [k for k, v in enumerate(values) if v.value is not None]
        macro_covers[name] = [names[k] for k in defined]
        if not defined:
            macro[name] = (
                MetricValue(None, f"undefined for every label ({values[0].reason})"),
                None,
            )
            continue
        if len(defined) < len(names):
            left_out = "; ".join(
                f"{names[k]!r} ({v.reason or 'undefined'})"
                for k, v in enumerate(values)
                if v.value is None
            )
            macro_partial[name] = (
                f"the mean over {len(defined)} of {len(names)} labels: left out {left_out}"
            )
        mean = float(np.mean([values[k].value for k in defined]))
        replicate_mean = (
            np.mean([tables[k][name] for k in defined], axis=0) if tables is not None else None
        )
        macro[name] = (MetricValue(mean, None), replicate_mean)
    micro_values = {
        name: (point_micro[name].value(), micro_table[name] if micro_table else None)
        for name in AVERAGED_METRIC_NAMES
    }
    return MultilabelMetrics(
        labels=names,
        per_label=per_label,
        macro=averaged(macro, macro_covers, macro_partial),
        # Micro pools every label's cases: it covers them all.
        micro=averaged(micro_values, {name: list(names) for name in AVERAGED_METRIC_NAMES}, {}),
    )
