"""Subgroup estimates, paired disparities and fairness gaps."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from validators.evaluation.estimates import make_estimate
from validators.evaluation.groups import (
    _FPR,
    _SELECTION,
    _TPR,
    SubgroupAnalysisSpec,
    _Group,
    _Table,
)
from validators.evaluation.population import BinaryPopulation, PopulationBatch
from validators.evaluation.settings import PROPORTIONS, EvaluationSettings, method_name
from validators.metrics.validation import FloatArray, IntArray, MetricValue, safe_divide_array
from validators.resampling.intervals import cluster_correlation, clustered_wilson_interval
from validators.resampling.mover import (
    group_minus_overall,
    group_over_overall,
    mover_difference,
    mover_ratio,
)
from validators.resampling.percentile import Interval, percentile_interval, wilson_interval
from validators.results.estimates import BootstrapUnit, Estimate
from validators.results.subgroups import Disparity, FairnessGap, FairnessGapName

# --------------------------------------------------------------------------------------------
# Estimates
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    settings: EvaluationSettings
    spec: SubgroupAnalysisSpec
    unit: BootstrapUnit
    bootstrap: bool
    clusters: IntArray | None
    n_units: int  # cases, or patients, in all

    @property
    def level(self) -> float:
        return self.settings.level

    @property
    def bootstrap_method(self) -> str:
        return method_name("bootstrap", self.unit) if self.bootstrap else "none"

    def interval(self, replicates: FloatArray | None) -> Interval | None:
        if replicates is None or not self.bootstrap:
            return None
        return percentile_interval(
            replicates,
            self.settings.level,
            max_undefined_fraction=self.settings.max_undefined_fraction,
        )

    def units(self, index: IntArray) -> int:
        """Return how many units (cases, or patients) the cases at `index` hold."""
        if self.clusters is None:
            return int(index.shape[0])
        return int(np.unique(self.clusters[index]).shape[0])


def _estimates(
    population: BinaryPopulation,
    point: PopulationBatch,
    replicates: dict[str, FloatArray] | None,
    context: _Context,
    n_patients: int | None,
) -> dict[str, Estimate]:
    """Return a population's estimates: intervals for the spec's metrics, points for the rest."""
    n_units = (
        n_patients if context.unit == "patient" and n_patients is not None else population.n_cases
    )
    return population.estimates(
        point,
        replicates if context.bootstrap else None,
        unit=context.unit,
        n_units=n_units,
        clusters=context.clusters,
        n_clusters=context.n_units,
        intervals_for=context.spec.metrics,
    )


@dataclass(frozen=True, eq=False)
class _Side:
    """One side of a comparison: a group or overall, its point values and replicates."""

    label: str
    index: IntArray
    point: dict[str, MetricValue]
    replicates: dict[str, FloatArray] | None
    population: BinaryPopulation
    proportions: dict[str, tuple[FloatArray, FloatArray]] = field(default_factory=dict)

    def totals(
        self, metric: str, clusters: IntArray, n_clusters: int
    ) -> tuple[FloatArray, FloatArray]:
        """Return (and keep) a proportion's numerator and denominator per patient."""
        if metric not in self.proportions:
            self.proportions[metric] = self.population.proportion_totals(
                metric, clusters, n_clusters
            )
        return self.proportions[metric]


def _undefined_side(metric: str, side: _Side) -> str | None:
    reason = side.point[metric].reason
    return None if reason is None else f"{metric} is undefined in {side.label}: {reason}"


def _disparities(
    table: _Table,
    group: _Group,
    sides: Mapping[int, _Side],
    overall: _Side,
    context: _Context,
) -> list[Disparity]:
    assert group.population is not None
    side = sides[group.population]
    references = [overall]
    if table.reference is not None and table.reference is not group:
        assert table.reference.population is not None
        references.append(sides[table.reference.population])
    sizes = [(context.n_units, int(overall.index.shape[0]))]
    for reference in references[1:]:
        union = np.concatenate([side.index, reference.index])
        sizes.append((context.units(union), int(union.shape[0])))
    out = []
    for metric in context.spec.disparity_metrics:
        for reference, (n, n_cases) in zip(references, sizes, strict=True):
            for kind in ("difference", "ratio"):
                reason = _undefined_side(metric, side) or _undefined_side(metric, reference)
                own, other = side.point[metric].value, reference.point[metric].value
                if reason is None and kind == "ratio" and other == 0.0:
                    reason = f"{metric} is 0 in {reference.label}, so the ratio is undefined"
                value = MetricValue(None, reason)
                replicates = None
                interval = None
                method = context.bootstrap_method
                if reason is None:
                    assert own is not None and other is not None
                    value = MetricValue(own - other if kind == "difference" else own / other, None)
                    if metric in PROPORTIONS and "none" not in context.settings.ci:
                        interval = _mover(metric, kind, side, reference, overall, context)
                        method = method_name("mover_wilson", context.unit)
                    elif side.replicates is not None and reference.replicates is not None:
                        a, b = side.replicates[metric], reference.replicates[metric]
                        replicates = a - b if kind == "difference" else safe_divide_array(a, b)
                        interval = context.interval(replicates)
                        if interval is not None and np.array_equal(a, b, equal_nan=True):
                            # Both sides agree in every resample: the same statistic twice.
                            interval = interval._replace(determined=True)
                estimate = make_estimate(
                    value,
                    interval,
                    level=context.level,
                    n=n,
                    n_cases=n_cases,
                    method=method,
                )
                out.append(
                    Disparity(
                        attributes=list(table.attributes),
                        metric=metric,
                        kind=kind,
                        group=group.label,
                        reference=reference.label,
                        value=estimate,
                    )
                )
    return out


def _mover(
    metric: str,
    kind: Literal["difference", "ratio"],
    side: _Side,
    reference: _Side,
    overall: _Side,
    context: _Context,
) -> Interval:
    """Return the MOVER interval of a proportion's disparity, from (clustered) Wilson limits.

    Against overall, the group is compared with the rest of the cases, since p_group -
    p_overall = (1 - w)(p_group - p_rest) with w the group's share of the denominator (a direct
    MOVER of a group against the whole it belongs to under-covers near the boundary:
    docs/statistics.md); against a reference group, directly. The correlation of the two sides
    is the cluster-robust one: exactly 0 when no patient is in both.
    """
    level = context.level
    against_overall = reference is overall
    clusters = context.clusters
    if clusters is None:
        # Every case its own unit: groups of a table, and a group and the rest, share no case,
        # so r = 0 and each side's interval is Wilson's on its sums (no per-case arrays).
        if np.array_equal(side.index, reference.index):
            return _determined(kind)
        (hits, trials) = side.population.proportion_counts(metric)
        (all_hits, all_trials) = reference.population.proportion_counts(metric)
        if against_overall:
            all_hits, all_trials = all_hits - hits, all_trials - trials
        group = _limits(hits / trials if trials else None, wilson_interval(hits, trials, level))
        other = _limits(
            all_hits / all_trials if all_trials else None,
            wilson_interval(all_hits, all_trials, level),
        )
        share = trials / (trials + all_trials) if against_overall and trials else 0.0
        r = 0.0
    else:
        mine = side.totals(metric, clusters, context.n_units)
        theirs = reference.totals(metric, clusters, context.n_units)
        if all(np.array_equal(a, b) for a, b in zip(mine, theirs, strict=True)):
            return _determined(kind)
        if against_overall:
            theirs = (theirs[0] - mine[0], theirs[1] - mine[1])
        mine_wilson = clustered_wilson_interval(*mine, level)
        theirs_wilson = clustered_wilson_interval(*theirs, level)
        group = _limits(mine_wilson.estimate, mine_wilson)
        other = _limits(theirs_wilson.estimate, theirs_wilson)
        everyone = float(mine[1].sum()) + float(theirs[1].sum())
        share = float(mine[1].sum()) / everyone if against_overall and everyone else 0.0
        r = cluster_correlation(*mine, *theirs)
    if against_overall:
        # A group that is the whole denominator (share 1) differs by exactly nothing.
        if share >= 1.0:
            other = group
        combine = group_minus_overall if kind == "difference" else group_over_overall
        bounds = combine(*group, *other, share, r)
    else:
        pair = mover_difference if kind == "difference" else mover_ratio
        bounds = pair(*group, *other, r)
    lower, upper = float(bounds.lower), float(bounds.upper)
    if math.isnan(lower) or math.isnan(upper):
        return Interval(None, None, 0, "the score interval of one side is undefined")
    # Only a group that is the whole denominator gives no width: it is overall itself.
    return Interval(lower, upper, determined=lower == upper)


def _determined(kind: Literal["difference", "ratio"]) -> Interval:
    """Return the no-width interval of two sides that are the very same cases."""
    same = 0.0 if kind == "difference" else 1.0
    return Interval(same, same, determined=True)


class _Bounds(Protocol):
    @property
    def lower(self) -> float | None: ...
    @property
    def upper(self) -> float | None: ...


def _limits(estimate: float | None, interval: _Bounds) -> tuple[float, float, float]:
    """Return (estimate, lower, upper) for MOVER, NaN where the proportion has no denominator."""
    values = (estimate, interval.lower, interval.upper)
    return tuple(math.nan if v is None else v for v in values)  # type: ignore[return-value]


_GAP_RATES: dict[FairnessGapName, tuple[str, ...]] = {
    "equal_opportunity_difference": (_TPR,),
    "equalized_odds_difference": (_TPR, _FPR),
    "demographic_parity_difference": (_SELECTION,),
}
_RATE_NAMES = {
    _TPR: "true-positive rate",
    _FPR: "false-positive rate",
    _SELECTION: "selection rate",
}


def _gaps(table: _Table, sides: Mapping[int, _Side], context: _Context) -> list[FairnessGap]:
    """Return the three fairness gaps of a table, over groups with a known value and enough n."""
    minimum = context.spec.min_group_size
    eligible = [g for g in table.groups if g.n_cases >= minimum and not g.missing]
    index = np.concatenate([g.index for g in eligible]) if eligible else np.empty(0, dtype=np.intp)
    n, n_cases = context.units(index), int(index.shape[0])

    def spread(rate: str) -> tuple[MetricValue, FloatArray | None, list[str]]:
        defined = []
        for g in eligible:
            assert g.population is not None
            if sides[g.population].point[rate].value is not None:
                defined.append(sides[g.population])
        if len(defined) < 2:
            return (
                MetricValue(
                    None,
                    f"the {_RATE_NAMES[rate]} is defined in fewer than two groups with a known "
                    f"value and at least {minimum} cases",
                ),
                None,
                [],
            )
        values = [s.point[rate].value for s in defined]
        point = max(v for v in values if v is not None) - min(v for v in values if v is not None)
        replicates = None
        if all(s.replicates is not None for s in defined):
            stacked = np.stack([s.replicates[rate] for s in defined if s.replicates is not None])
            # A replicate in which one group's rate is undefined leaves the gap undefined there.
            replicates = stacked.max(axis=0) - stacked.min(axis=0)
        return MetricValue(point, None), replicates, [s.label for s in defined]

    spreads = {rate: spread(rate) for rate in (_TPR, _FPR, _SELECTION)}
    out = []
    for name, rates in _GAP_RATES.items():
        parts = [spreads[rate] for rate in rates]
        undefined = next((p[0].reason for p in parts if p[0].value is None), None)
        used = sorted({label for p in parts for label in p[2]})
        if undefined is not None:
            value, replicates = MetricValue(None, undefined), None
        else:
            value = MetricValue(max(p[0].value for p in parts if p[0].value is not None), None)
            replicate_parts = [p[1] for p in parts if p[1] is not None]
            replicates = (
                np.maximum.reduce(replicate_parts) if len(replicate_parts) == len(parts) else None
            )
        estimate = _debiased_gap(
            value,
            replicates,
            context,
            n=n,
            n_cases=n_cases,
            note=f"over {len(used)} groups: {', '.join(used)}" if used else None,
        )
        out.append(FairnessGap(attributes=list(table.attributes), name=name, value=estimate))
    return out


def _debiased_gap(
    value: MetricValue,
    replicates: FloatArray | None,
    context: _Context,
    *,
    n: int,
    n_cases: int,
    note: str | None,
) -> Estimate:
    """Return a fairness gap, bias-corrected, with its one-sided upper bound.

    A largest-minus-smallest rate is biased upward (the largest of several noisy rates
    overshoots), and the replicates overshoot the gap by about as much again. With g the plug-in
    gap, m the median of the replicates and q their `level` quantile, the estimate is 2 g - m
    (the plug-in less the bootstrap's estimate of its bias, m - g). The upper bound adds the
    replicates' spread above their median, q - m, to the larger of the estimate and g: the bias
    correction is trusted for the estimate, not for the bound, whose coverage it would cost near
    a tie. As q >= m for any level of at least 0.5 (lower levels are taken as 0.5), the estimate
    is never above its bound, by construction. Without replicates (no bootstrap) the gap is the
    plug-in with no bound.
    """
    interval = context.interval(replicates)
    if value.value is None or replicates is None or interval is None:
        if value.value is None:
            return make_estimate(
                value, None, level=context.level, n=n, n_cases=n_cases, method="none"
            )
        return Estimate.ok(
            value.value, level=context.level, n=n, n_cases=n_cases, method="none", note=note
        )
    method = method_name("debiased_bootstrap_upper", context.unit)
    if interval.lower is None or interval.upper is None:
        return make_estimate(
            value, interval, level=context.level, n=n, n_cases=n_cases, method=method
        )
    defined = replicates[~np.isnan(replicates)]
    median, top = np.quantile(defined, [0.5, max(context.level, 0.5)])
    estimate = 2.0 * value.value - float(median)
    upper = max(estimate, value.value) + (float(top) - float(median))
    if upper == estimate and np.any(replicates):
        # Every resample alike above the median although the groups differ: no spread is seen,
        # which does not make the gap certain, so no bound is reported.
        return Estimate.ok(
            value.value,
            level=context.level,
            n=n,
            n_cases=n_cases,
            method=method,
            note=(note + "; " if note else "")
            + "every resample gives the same gap above its median, so no bound is reported",
        )
    return Estimate.ok(
        estimate,
        upper=upper,
        sides="upper",
        level=context.level,
        n=n,
        n_cases=n_cases,
        method=method,
        replicates_undefined=interval.replicates_undefined,
        note=note,
    )
