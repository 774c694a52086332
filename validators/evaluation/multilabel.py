"""Whole multilabel evaluations: per label, macro and micro."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from validators.blas import one_blas_thread
from validators.evaluation.estimates import make_estimate
from validators.evaluation.population import BinaryPopulation, PopulationBatch
from validators.evaluation.settings import (
    EvaluationSettings,
    method_name,
    probabilities_from,
    settings_with,
)
from validators.metrics.counts import ConfusionCountsBatch, count_metric_batch
from validators.metrics.ranking import RankedCases, RankingBatch, ranking_batch
from validators.metrics.validation import (
    NO_WEIGHT,
    BoolArray,
    FloatArray,
    MetricBatch,
    MetricValue,
    _Reasons,
    validate_binary,
)
from validators.resampling.percentile import percentile_interval
from validators.resampling.plan import BootstrapPlan
from validators.results.estimates import BINARY_METRIC_NAMES, Estimate
from validators.results.metrics import (
    AVERAGED_METRIC_NAMES,
    AveragedMetrics,
    LabelResult,
    MultilabelMetrics,
)


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
    settings: EvaluationSettings | None = None,
    groups: ArrayLike | None = None,
    **overrides: Any,
) -> MultilabelMetrics:
    """Return per-label metrics (`y_true`, `y_score` of shape `[N, L]`) with macro and micro.

    `settings` and `overrides` as in `evaluate_binary`; `threshold` may be one number for every
    label or a mapping with one threshold per label. Every label is bootstrapped with the same
    replicates; macro is the mean of the labels whose estimate is defined, its interval taken
    over the same replicates; micro pools all labels' cases (each case keeps its weight in every
    label).
    """
    settings = settings_with(settings, overrides)
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
    given = [label for label, _ in settings.label_thresholds]
    if given and sorted(given) != sorted(names):
        raise ValueError(
            f"expected one threshold per label ({', '.join(names)}); got thresholds for "
            f"{', '.join(given)}"
        )
    columns: list[tuple[BoolArray, FloatArray]] = []
    for k, name in enumerate(names):
        try:
            columns.append(validate_binary(truth[:, k], score[:, k]))
        except ValueError as error:
            raise ValueError(f"label {name!r}: {error}") from None
    populations = []
    for name, (label_truth, label_score) in zip(names, columns, strict=True):
        label_settings = settings.for_label(name)
        populations.append(
            BinaryPopulation(
                label_truth,
                label_score,
                probabilities_from(label_score, settings.scores),
                label_settings,
            )
        )
    n_cases = truth.shape[0]
    pooled = RankedCases.build(
        np.stack([c[0] for c in columns], axis=1).ravel(),
        np.stack([c[1] for c in columns], axis=1).ravel(),
        columns=np.repeat(np.arange(n_cases), len(names)),
    )
    plan = BootstrapPlan.create(
        n_cases, replicates=settings.replicates, seed=settings.seed, groups=groups
    )

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


multilabel_metrics = evaluate_multilabel
"""The name the docs use for `evaluate_multilabel` (per-label metrics with macro and micro)."""
