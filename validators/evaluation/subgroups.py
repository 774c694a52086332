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
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from validators.blas import one_blas_thread
from validators.evaluation.disparities import _Context, _disparities, _estimates, _gaps, _Side
from validators.evaluation.groups import SubgroupAnalysisSpec, _Attribute, _columns, _tables
from validators.evaluation.population import LEAN_METRICS, BinaryPopulation, PopulationBatch
from validators.evaluation.settings import EvaluationSettings, probabilities_from, settings_with
from validators.evaluation.subgroup_replicates import (
    _collect,
    _Job,
    _rates,
    _WeightStream,
    _workers,
)
from validators.metrics.validation import (
    BoolArray,
    FloatArray,
    IntArray,
    MetricValue,
    validate_binary,
)
from validators.resampling.intervals import cluster_index
from validators.resampling.plan import BootstrapPlan, score_order
from validators.results.estimates import BINARY_METRIC_NAMES
from validators.results.metrics import BinaryMetrics
from validators.results.subgroups import OVERALL, Disparity, FairnessGap, GroupResult, SubgroupTable

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
    settings: EvaluationSettings | None = None,
    patient_ids: NDArray[np.str_] | None = None,
    **overrides: Any,
) -> tuple[list[SubgroupTable], list[Disparity], list[FairnessGap]]:
    """Return the subgroup tables, the disparities and the fairness gaps of a binary task.

    `attributes` maps column names to one value per case (None where missing); a column `age`
    is banded at `spec.age_bands` into `age_band`. `settings`, with `overrides` applied as in
    `evaluate_binary`, gives the operating point and the intervals; its `replicates` and `seed`
    define the bootstrap exactly as in `evaluate_binary` (resampling patients when `patient_ids`
    is given): cases are
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
        settings=settings_with(settings, overrides),
        patient_ids=patient_ids,
        overall=None,
    )
    return tables, disparities, gaps


def evaluate_binary_with_subgroups(
    y_true: NDArray[np.bool_],
    y_score: NDArray[np.float64],
    attributes: Mapping[str, NDArray[Any]],
    *,
    spec: SubgroupAnalysisSpec,
    settings: EvaluationSettings | None = None,
    patient_ids: NDArray[np.str_] | None = None,
    overall_metrics: OverallMetrics = "all",
    **overrides: Any,
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
        settings=settings_with(settings, overrides),
        patient_ids=patient_ids,
        overall=overall_metrics,
    )
    assert overall is not None
    return overall, tables, disparities, gaps


@one_blas_thread
def _evaluate(
    y_true: NDArray[np.bool_],
    y_score: NDArray[np.float64],
    attributes: Mapping[str, NDArray[Any]],
    *,
    spec: SubgroupAnalysisSpec,
    settings: EvaluationSettings,
    patient_ids: NDArray[np.str_] | None,
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

    # Sort once by score, as `evaluate_binary` does: the replicates then match the overall
    # result's, and every gather in the kernels runs over increasing columns.
    order = score_order(labels, raw)
    labels, raw, probabilities = labels[order], raw[order], probabilities[order]
    patients = None if patient_ids is None else np.asarray(patient_ids)[order]
    clusters, n_clusters = (None, n_total) if patients is None else cluster_index(patients, n_total)
    bootstrap = settings.needs_bootstrap and settings.replicates > 0
    plan = (
        BootstrapPlan.create(
            n_total, replicates=settings.replicates, seed=settings.seed, groups=patients
        )
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
