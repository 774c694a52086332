"""Subgroups and fairness: a table per attribute and intersection, paired disparities and gaps.

Groups come from attribute columns: each single attribute the spec names (every column by
default; `age` becomes `age_band`) and each requested intersection, whose groups are the
cartesian product of the observed levels, empty cells included. A missing value is a level of
its own, `(missing)`, so no case silently drops out of a table: every table partitions all cases.

Every group is a `BinaryPopulation` over the same cases, sorted once by score, and all of them
(and `overall`) are fed the same bootstrap weight blocks. A replicate is therefore one resample of
the whole dataset, seen by every group at once, and a difference between two groups, or between a
group and overall, is computed replicate by replicate before its percentile interval is taken:
the intervals of disparities and fairness gaps are paired. Per block, the work is one gather and
running sum per group (AUROC and the confusion counts from one sort, `ranking_batch`), or, when no
ranking metric is asked for, one matrix product for all groups (`grouped_confusion_counts_batch`).
Groups run on a small thread pool (numpy releases the GIL in these kernels) while the next block's
weights are drawn on another thread; the numbers do not depend on the threading.

`evaluate_subgroups` returns the tables, disparities and gaps; `evaluate_binary_with_subgroups`
also the overall metrics, from the same replicates. `docs/fairness.md` states the definitions.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise, product
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from validators.blas import one_blas_thread
from validators.bootstrap import (
    BINARY_METRIC_NAMES,
    LEAN_METRICS,
    PROPORTIONS,
    RANKING_METRICS,
    BinaryPopulation,
    BootstrapPlan,
    EvaluationSettings,
    Interval,
    PopulationBatch,
    cluster_index,
    grouped_confusion_counts_batch,
    make_estimate,
    method_name,
    percentile_interval,
    probabilities_from,
    score_order,
    wilson_interval,
)
from validators.intervals import (
    cluster_correlation,
    clustered_wilson_interval,
    group_minus_overall,
    group_over_overall,
    mover_difference,
    mover_ratio,
)
from validators.metrics import (
    BoolArray,
    ConfusionCountsBatch,
    FloatArray,
    IntArray,
    MetricValue,
    safe_divide_array,
    validate_binary,
)
from validators.results import (
    AGE_BAND,
    AGE_COLUMN,
    DEFAULT_AGE_BANDS,
    DEFAULT_SUBGROUP_METRICS,
    MISSING,
    BinaryMetrics,
    BootstrapUnit,
    Disparity,
    Estimate,
    FairnessGap,
    FairnessGapName,
    GroupResult,
    SubgroupTable,
    canonical_attribute,
)

__all__ = [
    "AGE_BAND",
    "AGE_COLUMN",
    "DEFAULT_AGE_BANDS",
    "DEFAULT_METRICS",
    "MISSING",
    "OVERALL",
    "SubgroupAnalysisSpec",
    "age_band_labels",
    "evaluate_binary_with_subgroups",
    "evaluate_subgroups",
    "fairness_participants",
    "group_label",
]

DEFAULT_METRICS = DEFAULT_SUBGROUP_METRICS
OVERALL = "overall"
"""The reference name of the whole population in a `Disparity`."""

MAX_INTERSECTION_CELLS = 1000
"""Most groups one intersection may have (the product of its attributes' levels)."""


_TPR, _FPR, _SELECTION = "_tpr", "_fpr", "_selection_rate"


# --------------------------------------------------------------------------------------------
# The spec
# --------------------------------------------------------------------------------------------


def _check_edges(edges: Sequence[float]) -> tuple[float, ...]:
    cuts = tuple(float(e) for e in edges)
    if not cuts:
        raise ValueError("age bands need at least one edge, e.g. (0, 18, 40, 65)")
    if not all(math.isfinite(c) for c in cuts):
        raise ValueError(f"age band edges must be finite numbers of years; got {list(edges)}")
    if any(b <= a for a, b in pairwise(cuts)):
        raise ValueError(f"age band edges must increase strictly; got {list(edges)}")
    if cuts[0] < 0:
        raise ValueError(f"age band edges start at 0 or above; got {list(edges)}")
    return cuts


def _check_metric_names(names: Sequence[str], what: str) -> None:
    unknown = [name for name in names if name not in BINARY_METRIC_NAMES]
    if unknown:
        raise ValueError(
            f"{what}: unknown metric {unknown[0]!r}; expected names from "
            f"{', '.join(BINARY_METRIC_NAMES)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"{what}: each metric once; got {list(names)}")


@dataclass(frozen=True)
class SubgroupAnalysisSpec:
    """Which groups to form and what to compute for them (from the policy).

    `attributes` empty means every attribute column; `age` (or `age_band`) names the age column,
    banded at `age_bands`. Each intersection names two or more attributes. `metrics` get
    intervals in every group; the other metrics of a group are point estimates (method `none`).
    `disparity_metrics` get differences and ratios to overall and to the reference group.
    A single attribute with more than `max_levels` distinct known values is refused (it is an
    identifier or a date, not a group): name the attributes to evaluate instead.
    """

    attributes: tuple[str, ...] = ()
    intersections: tuple[tuple[str, ...], ...] = ()
    age_bands: tuple[float, ...] = DEFAULT_AGE_BANDS
    min_group_size: int = 11
    metrics: tuple[str, ...] = DEFAULT_METRICS
    disparity_metrics: tuple[str, ...] = DEFAULT_METRICS
    max_levels: int = 50

    def __post_init__(self) -> None:
        _check_edges(self.age_bands)
        if self.min_group_size < 1:
            raise ValueError(f"min_group_size must be at least 1; got {self.min_group_size}")
        if self.max_levels < 2:
            raise ValueError(f"max_levels must be at least 2; got {self.max_levels}")
        _check_metric_names(self.metrics, "metrics")
        _check_metric_names(self.disparity_metrics, "disparity_metrics")
        for combination in self.intersections:
            names = [canonical_attribute(name) for name in combination]
            if len(names) < 2 or len(set(names)) != len(names):
                raise ValueError(
                    f"an intersection names two or more different attributes; got "
                    f"{list(combination)}"
                )


# --------------------------------------------------------------------------------------------
# Attribute values and levels
# --------------------------------------------------------------------------------------------


def _edge_text(edge: float) -> str:
    return str(int(edge)) if float(edge).is_integer() else f"{edge:g}"


def _band_names(cuts: tuple[float, ...]) -> list[str]:
    texts = [_edge_text(c) for c in cuts]
    names = [f"{a}-{b}" for a, b in pairwise(texts)] + [f"{texts[-1]}+"]
    return ([f"<{texts[0]}"] if cuts[0] > 0 else []) + names


def age_band_labels(values: NDArray[Any], edges: Sequence[float]) -> NDArray[np.object_]:
    """Return each case's age band ("0-18", ..., "65+"), None where the age is missing.

    Bands are left-closed: with edges (0, 18, 40, 65) an age of 18 is in "18-40" and 65 in
    "65+". Ages below a first edge above 0 form a band "<first". Values are numbers of years, or
    strings holding one; None, NaN and blank strings are missing. Anything else (text, a negative
    or infinite age) raises `ValueError` naming the first line (row i is line i + 2 of a CSV with
    a header, as in the predictions file).
    """
    cuts = _check_edges(edges)
    names = np.array(_band_names(cuts), dtype=object)
    column = np.asarray(values, dtype=object)
    missing = _missing(column)
    ages = np.full(column.shape[0], np.nan)
    bad = np.zeros(column.shape[0], dtype=bool)
    present = np.flatnonzero(~missing)
    try:
        ages[present] = column[present].astype(np.float64)
    except (TypeError, ValueError):
        for i in present:
            try:
                ages[i] = float(column[i])
            except (TypeError, ValueError):
                bad[i] = True
    bad |= ~missing & (~np.isfinite(ages) | (ages < 0))
    bad &= ~missing
    if bad.any():
        where = np.flatnonzero(bad)
        first = int(where[0])
        raise ValueError(
            f"column {AGE_COLUMN!r}: line {first + 2} has {column[first]!r} but an age is a "
            f"non-negative number of years, or empty when unknown ({where.shape[0]} such "
            f"value{'s' if where.shape[0] != 1 else ''})"
        )
    offset = 0 if cuts[0] > 0 else -1
    band = np.searchsorted(np.asarray(cuts), ages[present], side="right") + offset
    out = np.full(column.shape[0], None, dtype=object)
    out[present] = names[band]
    return out


def _missing(column: NDArray[np.object_]) -> BoolArray:
    """Return where values are missing: None, NaN, or a blank string."""
    missing: BoolArray = np.asarray(column == None) | np.asarray(column != column)  # noqa: E711
    strings = np.flatnonzero(~missing)
    if strings.shape[0]:
        blank = np.char.strip(column[strings].astype(np.str_)) == ""
        missing[strings[blank]] = True
    return missing


def _text(values: NDArray[Any]) -> NDArray[np.str_]:
    """Return each value as stripped text, `MISSING` where it is missing."""
    column = np.asarray(values, dtype=object)
    missing = _missing(column)
    text = np.full(column.shape[0], MISSING, dtype=object)
    present = np.flatnonzero(~missing)
    text[present] = np.char.strip(column[present].astype(np.str_))
    return text.astype(np.str_)


def _level_key(level: str) -> tuple[int, float, str]:
    if level == MISSING:
        return (2, 0.0, level)
    try:
        return (0, float(level), level)
    except ValueError:
        return (1, 0.0, level)


@dataclass(frozen=True, eq=False)
class _Attribute:
    """One attribute column as level codes: `codes[i]` indexes `levels`."""

    name: str
    codes: IntArray
    levels: tuple[str, ...]


def _attribute(name: str, values: NDArray[Any], *, order: Sequence[str] | None) -> _Attribute:
    text = _text(values)
    found, inverse = np.unique(text, return_inverse=True)
    found_levels = [str(level) for level in found]
    if order is None:
        levels = sorted(found_levels, key=_level_key)
    else:
        levels = [level for level in order if level in set(found_levels)]
        levels += [MISSING] if MISSING in found_levels else []
    position = np.array([levels.index(level) for level in found_levels], dtype=np.intp)
    return _Attribute(name=name, codes=position[inverse], levels=tuple(levels))


# --------------------------------------------------------------------------------------------
# Groups and tables
# --------------------------------------------------------------------------------------------


def group_label(attributes: Mapping[str, str]) -> str:
    """Return a group's label: "sex=F", or "sex=F & age_band=40-65" for an intersection."""
    return " & ".join(f"{name}={value}" for name, value in attributes.items())


@dataclass(eq=False)
class _Group:
    table: int
    values: dict[str, str]
    index: IntArray
    population: int | None = None  # index into the populations, None when empty

    @property
    def label(self) -> str:
        return group_label(self.values)

    @property
    def n_cases(self) -> int:
        return int(self.index.shape[0])

    @property
    def missing(self) -> bool:
        return MISSING in self.values.values()


@dataclass(eq=False)
class _Table:
    attributes: tuple[str, ...]
    groups: list[_Group] = field(default_factory=list)
    reference: _Group | None = None


def _resolve(name: str, available: Mapping[str, _Attribute]) -> _Attribute:
    canonical = canonical_attribute(name)
    if canonical not in available:
        raise ValueError(
            f"attribute {name!r} is not a column of the predictions; expected one of "
            f"{', '.join(sorted(available)) or '(none: the file has no attribute columns)'}"
        )
    return available[canonical]


def _tables(attributes: Mapping[str, _Attribute], spec: SubgroupAnalysisSpec) -> list[_Table]:
    singles = list(spec.attributes) if spec.attributes else list(attributes)
    chosen: list[tuple[_Attribute, ...]] = []
    for name in dict.fromkeys(canonical_attribute(n) for n in singles):
        attribute = _resolve(name, attributes)
        known = len([level for level in attribute.levels if level != MISSING])
        if known > spec.max_levels:
            raise ValueError(
                f"attribute {name!r} has {known} distinct values, more than "
                f"{spec.max_levels}: it looks like an identifier or a date, not a group; name "
                "the attributes to evaluate in the policy (subgroups.attributes)"
            )
        chosen.append((attribute,))
    for combination in spec.intersections:
        parts = tuple(_resolve(name, attributes) for name in combination)
        cells = math.prod(len(part.levels) for part in parts)
        if cells > MAX_INTERSECTION_CELLS:
            raise ValueError(
                f"the intersection {' x '.join(p.name for p in parts)} has {cells} groups, more "
                f"than {MAX_INTERSECTION_CELLS}; intersect attributes with fewer levels"
            )
        chosen.append(parts)
    tables = []
    for number, parts in enumerate(chosen):
        table = _Table(attributes=tuple(part.name for part in parts))
        shape = tuple(len(part.levels) for part in parts)
        combined = np.ravel_multi_index(tuple(part.codes for part in parts), shape)
        order = np.argsort(combined, kind="stable")
        bounds = np.searchsorted(combined[order], np.arange(math.prod(shape) + 1))
        for cell, levels in enumerate(product(*(part.levels for part in parts))):
            index = np.sort(order[bounds[cell] : bounds[cell + 1]])
            values = {part.name: level for part, level in zip(parts, levels, strict=True)}
            table.groups.append(_Group(table=number, values=values, index=index))
        candidates = [g for g in table.groups if g.n_cases and not g.missing]
        # The reference is the largest group with a known value (the first, on a tie).
        table.reference = max(candidates, key=lambda g: g.n_cases, default=None)
        tables.append(table)
    return tables


def group_members(
    attributes: Mapping[str, NDArray[Any]], n_cases: int, spec: SubgroupAnalysisSpec
) -> list[list[IntArray]]:
    """Return the cases (increasing indices into the input) of every group, table by table.

    The tables and groups are those `evaluate_subgroups` returns for the same attributes and
    spec, in the same order (empty groups have no cases).
    """
    return [
        [group.index for group in table.groups]
        for table in _tables(_columns(attributes, n_cases, spec), spec)
    ]


def fairness_participants(
    groups: Iterable[GroupResult], *, min_group_size: int
) -> list[GroupResult]:
    """Return the groups a fairness gap is taken over: known value and at least the minimum."""
    return [
        g
        for g in groups
        if g.n_cases is not None
        and g.n_cases >= min_group_size
        and MISSING not in g.attributes.values()
    ]


# --------------------------------------------------------------------------------------------
# Replicates
# --------------------------------------------------------------------------------------------


def _workers() -> int:
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(1, min(available, 4))


def _rates(counts: ConfusionCountsBatch) -> dict[str, FloatArray]:
    """Return the rates the fairness gaps need: TPR, FPR and the selection rate."""
    total = counts.tp + counts.fp + counts.tn + counts.fn
    return {
        _TPR: safe_divide_array(counts.tp, counts.tp + counts.fn),
        _FPR: safe_divide_array(counts.fp, counts.fp + counts.tn),
        _SELECTION: safe_divide_array(counts.tp + counts.fp, total),
    }


def _lean_batch(
    population: BinaryPopulation,
    weights: NDArray[Any],
    names: frozenset[str],
    counts: ConfusionCountsBatch | None,
) -> dict[str, FloatArray]:
    """Return the asked metrics (all in LEAN_METRICS) and the rates for each weight row."""
    out, counts = population.lean(weights, names, counts)
    out.update(_rates(counts))
    return out


def _full_batch(
    population: BinaryPopulation, weights: NDArray[Any], names: frozenset[str]
) -> dict[str, FloatArray]:
    batch = population.evaluate(weights)
    out = {name: batch.metrics[name].values for name in names}
    out.update(_rates(batch.counts))
    return out


@dataclass(frozen=True)
class _Job:
    """What to compute for one population per replicate: these metrics, lean or in full."""

    names: frozenset[str]
    lean: bool

    @property
    def keys(self) -> list[str]:
        return [*sorted(self.names), _TPR, _FPR, _SELECTION]

    @property
    def by_matrix(self) -> bool:
        # Without a ranking metric, counts come from one matrix product shared by all groups.
        return self.lean and not self.names & RANKING_METRICS


class _WeightStream:
    """The plan's weight blocks, drawn in order on a thread of their own, `ahead` blocks ahead.

    Started as soon as the plan exists, the drawing overlaps the work that does not use the
    weights (attribute columns, populations, point estimates) as well as the kernels.
    """

    def __init__(self, plan: BootstrapPlan, *, ahead: int = 2) -> None:
        self.plan = plan
        self.starts = list(range(0, plan.replicates, plan.block_size))
        self._drawer = ThreadPoolExecutor(max_workers=1)
        self._pending = [self._submit(start) for start in self.starts[:ahead]]
        self._next = len(self._pending)

    def _submit(self, start: int) -> Future[NDArray[Any]]:
        stop = min(start + self.plan.block_size, self.plan.replicates)
        return self._drawer.submit(self.plan.weights, start, stop)

    def __iter__(self) -> Iterator[tuple[int, int, NDArray[Any]]]:
        """Yield (start, stop, weights) for each block in turn."""
        for start in self.starts:
            weights = self._pending.pop(0).result()
            if self._next < len(self.starts):
                self._pending.append(self._submit(self.starts[self._next]))
                self._next += 1
            yield start, start + weights.shape[0], weights

    def close(self) -> None:
        for future in self._pending:
            future.cancel()
        self._drawer.shutdown(wait=True)


def _collect(
    stream: _WeightStream,
    populations: Sequence[BinaryPopulation],
    jobs: Sequence[_Job],
    *,
    labels: BoolArray,
    predicted: BoolArray,
    pool: ThreadPoolExecutor,
) -> list[dict[str, FloatArray]]:
    """Return, per population, each asked metric and rate in every replicate (NaN: undefined)."""
    plan = stream.plan
    tables = [{key: np.empty(plan.replicates) for key in job.keys} for job in jobs]
    by_matrix = [k for k, job in enumerate(jobs) if job.by_matrix]
    masks = np.zeros((len(by_matrix), plan.n_cases), dtype=bool)
    for row, k in enumerate(by_matrix):
        masks[row, populations[k].index] = True
    # The next blocks' weights are being drawn on their own thread while this block's run.
    for start, stop, weights in stream:
        counts: list[ConfusionCountsBatch | None] = [None] * len(populations)
        if by_matrix:
            shared = grouped_confusion_counts_batch(weights, labels, predicted, masks)
            for k, batch in zip(by_matrix, shared, strict=True):
                counts[k] = batch
        work = [
            (tables[k], populations[k], weights, counts[k], start, stop, jobs[k])
            for k in range(len(populations))
        ]
        # The slowest (full) populations first, so that none is left running alone.
        work.sort(key=lambda item: item[6].lean)
        list(pool.map(lambda item: _fill(*item), work))
    return tables


def _fill(
    table: dict[str, FloatArray],
    population: BinaryPopulation,
    weights: NDArray[Any],
    counts: ConfusionCountsBatch | None,
    start: int,
    stop: int,
    job: _Job,
) -> None:
    """Write one population's values for replicates start..stop-1 into its table."""
    values = (
        _lean_batch(population, weights, job.names, counts)
        if job.lean
        else _full_batch(population, weights, job.names)
    )
    for key, column in table.items():
        column[start:stop] = values[key]


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


# --------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------


OverallMetrics = Literal["all", "spec"]


def evaluate_subgroups(
    y_true: NDArray[np.bool_],
    y_score: NDArray[np.float64],
    attributes: Mapping[str, NDArray[Any]],
    *,
    spec: SubgroupAnalysisSpec,
    settings: EvaluationSettings,
    patient_ids: NDArray[np.str_] | None = None,
    replicates: int = 1000,
    seed: int = 0,
) -> tuple[list[SubgroupTable], list[Disparity], list[FairnessGap]]:
    """Return the subgroup tables, the disparities and the fairness gaps of a binary task.

    `attributes` maps column names to one value per case (None where missing); a column `age`
    is banded at `spec.age_bands` into `age_band`. `replicates` and `seed` define the bootstrap
    exactly as in `binary_metrics` (resampling patients when `patient_ids` is given): cases are
    sorted by score the same way and replicate r draws the same cases, so the overall side of
    every disparity has the replicates of `binary_metrics`' overall result. With `settings.ci`
    "none" there is no bootstrap: point estimates only. Groups keep no curves (`roc_curve` etc.
    are None). `evaluate_binary_with_subgroups` also returns the overall metrics, in one pass.
    """
    _, tables, disparities, gaps = _evaluate(
        y_true,
        y_score,
        attributes,
        spec=spec,
        settings=settings,
        patient_ids=patient_ids,
        replicates=replicates,
        seed=seed,
        overall=None,
    )
    return tables, disparities, gaps


def evaluate_binary_with_subgroups(
    y_true: NDArray[np.bool_],
    y_score: NDArray[np.float64],
    attributes: Mapping[str, NDArray[Any]],
    *,
    spec: SubgroupAnalysisSpec,
    settings: EvaluationSettings,
    patient_ids: NDArray[np.str_] | None = None,
    replicates: int = 1000,
    seed: int = 0,
    overall_metrics: OverallMetrics = "all",
) -> tuple[BinaryMetrics, list[SubgroupTable], list[Disparity], list[FairnessGap]]:
    """Return the overall metrics with `evaluate_subgroups`' results, from one set of replicates.

    With `overall_metrics="all"` the overall metrics equal `binary_metrics(y_true, y_score, ...,
    groups=patient_ids)` with the same settings, replicates and seed, to the last digit (the
    weights are drawn once for both). With "spec" only the spec's metrics get intervals overall,
    as in the groups (faster); the overall keeps its curves either way.
    """
    overall, tables, disparities, gaps = _evaluate(
        y_true,
        y_score,
        attributes,
        spec=spec,
        settings=settings,
        patient_ids=patient_ids,
        replicates=replicates,
        seed=seed,
        overall=overall_metrics,
    )
    assert overall is not None
    return overall, tables, disparities, gaps


def _columns(
    attributes: Mapping[str, NDArray[Any]], n_total: int, spec: SubgroupAnalysisSpec
) -> dict[str, _Attribute]:
    columns: dict[str, _Attribute] = {}
    for name, raw_values in attributes.items():
        column = np.asarray(raw_values, dtype=object)
        if column.ndim != 1 or column.shape[0] != n_total:
            raise ValueError(
                f"attribute {name!r} has shape {column.shape}; expected one value per case "
                f"({n_total})"
            )
        canonical = canonical_attribute(name)
        if canonical in columns:
            raise ValueError(f"attributes {AGE_COLUMN!r} and {AGE_BAND!r} cannot both be given")
        if name == AGE_COLUMN:
            bands = age_band_labels(column, spec.age_bands)
            columns[canonical] = _attribute(
                canonical, bands, order=_band_names(_check_edges(spec.age_bands))
            )
        else:
            columns[canonical] = _attribute(canonical, column, order=None)
    return columns


@one_blas_thread
def _evaluate(
    y_true: NDArray[np.bool_],
    y_score: NDArray[np.float64],
    attributes: Mapping[str, NDArray[Any]],
    *,
    spec: SubgroupAnalysisSpec,
    settings: EvaluationSettings,
    patient_ids: NDArray[np.str_] | None,
    replicates: int,
    seed: int,
    overall: OverallMetrics | None,
) -> tuple[BinaryMetrics | None, list[SubgroupTable], list[Disparity], list[FairnessGap]]:
    labels, raw = validate_binary(y_true, y_score)
    n_total = labels.shape[0]
    probabilities = probabilities_from(raw, settings.scores)
    if patient_ids is not None and np.asarray(patient_ids).shape != (n_total,):
        raise ValueError(
            f"patient_ids has shape {np.asarray(patient_ids).shape}; expected one id per case "
            f"({n_total})"
        )
    if replicates < 0:
        raise ValueError(f"replicates must be 0 or more; got {replicates}")

    # Sort once by score, as `evaluate_binary` does: the replicates then match the overall
    # result's, and every gather in the kernels runs over increasing columns.
    order = score_order(labels, raw)
    labels, raw, probabilities = labels[order], raw[order], probabilities[order]
    patients = None if patient_ids is None else np.asarray(patient_ids)[order]
    clusters, n_clusters = (None, n_total) if patients is None else cluster_index(patients, n_total)
    bootstrap = settings.needs_bootstrap and replicates > 0
    plan = (
        BootstrapPlan.create(n_total, replicates=replicates, seed=seed, groups=patients)
        if bootstrap
        else None
    )
    stream = None if plan is None else _WeightStream(plan)
    try:
        columns = _columns(attributes, n_total, spec)
        return _evaluate_sorted(
            labels,
            raw,
            probabilities,
            {
                name: _Attribute(name=c.name, codes=c.codes[order], levels=c.levels)
                for name, c in columns.items()
            },
            spec=spec,
            settings=settings,
            clusters=clusters,
            n_clusters=n_clusters,
            stream=stream,
            overall=overall,
        )
    finally:
        if stream is not None:
            stream.close()


def _evaluate_sorted(
    labels: BoolArray,
    raw: FloatArray,
    probabilities: FloatArray,
    columns: Mapping[str, _Attribute],
    *,
    spec: SubgroupAnalysisSpec,
    settings: EvaluationSettings,
    clusters: IntArray | None,
    n_clusters: int,
    stream: _WeightStream | None,
    overall: OverallMetrics | None,
) -> tuple[BinaryMetrics | None, list[SubgroupTable], list[Disparity], list[FairnessGap]]:
    """`_evaluate` once the cases are in score order and the weights are being drawn."""
    n_total = labels.shape[0]
    tables = _tables(columns, spec)
    bootstrap = stream is not None
    context = _Context(
        settings=settings,
        spec=spec,
        unit="case" if clusters is None else "patient",
        bootstrap=bootstrap,
        clusters=clusters,
        n_units=n_clusters,
    )

    # Population 0 is overall; then every non-empty group, table by table.
    members: list[IntArray | None] = [None]
    for table in tables:
        for group in table.groups:
            if group.n_cases:
                group.population = len(members)
                members.append(group.index)

    def build(index: IntArray | None) -> tuple[BinaryPopulation, PopulationBatch]:
        mask = None
        if index is not None:
            mask = np.zeros(n_total, dtype=bool)
            mask[index] = True
        population = BinaryPopulation(labels, raw, probabilities, settings, mask=mask)
        return population, population.evaluate_point()

    names = frozenset(spec.metrics) | frozenset(spec.disparity_metrics)
    lean = _Job(names=names, lean=names <= LEAN_METRICS)
    jobs = [lean] * len(members)
    if overall == "all":
        jobs[0] = _Job(names=frozenset(BINARY_METRIC_NAMES), lean=False)
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        built = list(pool.map(build, members))
        populations = [population for population, _ in built]
        replicate_tables: list[dict[str, FloatArray] | None] = [None] * len(populations)
        if stream is not None:
            replicate_tables = [
                *_collect(
                    stream,
                    populations,
                    jobs,
                    labels=labels,
                    predicted=raw >= settings.threshold,
                    pool=pool,
                )
            ]

    names_of = {g.population: g.label for t in tables for g in t.groups if g.population is not None}
    sides: dict[int, _Side] = {}
    for k, ((_, point), reps) in enumerate(zip(built, replicate_tables, strict=True)):
        values: dict[str, MetricValue] = {
            name: point.metrics[name].value() for name in BINARY_METRIC_NAMES
        }
        for key, rate in _rates(point.counts).items():
            number = float(rate[0])
            values[key] = MetricValue(
                None if math.isnan(number) else number, "undefined" if math.isnan(number) else None
            )
        index = members[k]
        sides[k] = _Side(
            label=names_of.get(k, OVERALL),
            index=np.arange(n_total) if index is None else index,
            point=values,
            replicates=reps,
            population=built[k][0],
        )

    results: list[SubgroupTable] = []
    for table in tables:
        groups = []
        for group in table.groups:
            n_patients = None if clusters is None else context.units(group.index)
            if group.population is None:
                groups.append(
                    GroupResult(
                        attributes=group.values,
                        label=group.label,
                        status="empty",
                        insufficient_n=True,
                        n_cases=0,
                        n_patients=None if clusters is None else 0,
                        metrics=None,
                    )
                )
                continue
            population, point = built[group.population]
            estimates = _estimates(
                population, point, replicate_tables[group.population], context, n_patients
            )
            groups.append(
                GroupResult(
                    attributes=group.values,
                    label=group.label,
                    status="ok",
                    insufficient_n=group.n_cases < spec.min_group_size,
                    n_cases=group.n_cases,
                    n_patients=n_patients,
                    metrics=population.result(estimates, n_patients=n_patients, curves=False),
                )
            )
        results.append(SubgroupTable(attributes=list(table.attributes), groups=groups))
    disparities: list[Disparity] = []
    gaps: list[FairnessGap] = []
    for table in tables:
        for group in table.groups:
            if group.population is not None:
                disparities += _disparities(table, group, sides, sides[0], context)
        gaps += _gaps(table, sides, context)

    overall_metrics = None
    if overall is not None:
        population, point = built[0]
        n_patients = None if clusters is None else n_clusters
        if overall == "all":
            overall_estimates = population.estimates(
                point,
                replicate_tables[0],
                unit=context.unit,
                n_units=n_clusters,
                clusters=clusters,
                n_clusters=n_clusters,
            )
        else:
            overall_estimates = _estimates(
                population, point, replicate_tables[0], context, n_patients
            )
        overall_metrics = population.result(overall_estimates, n_patients=n_patients)
    return overall_metrics, results, disparities, gaps
