"""Baseline comparison: paired DeLong and bootstrap comparisons against a baseline."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from validators.blas import one_blas_thread
from validators.data.predictions import Predictions
from validators.evaluation.estimates import make_estimate
from validators.evaluation.inputs import EvaluationInputError, _listed
from validators.evaluation.population import BinaryPopulation, collect_replicates
from validators.evaluation.settings import EvaluationSettings, method_name, probabilities_from
from validators.metrics.validation import MetricValue
from validators.policy import BaselineComparison, Policy
from validators.resampling.delong import delong_interval, delong_paired_test
from validators.resampling.percentile import percentile_interval
from validators.resampling.plan import BootstrapPlan
from validators.results.estimates import Estimate

# --------------------------------------------------------------------------------------------
# Baseline
# --------------------------------------------------------------------------------------------


def align_baseline(predictions: Predictions, baseline: Predictions) -> Predictions:
    """Return the baseline's rows in the order of `predictions`' case_ids.

    Raises EvaluationInputError when the two files do not hold the same cases with the same
    task, labels, ground truth and patients.
    """
    if baseline.task != predictions.task or baseline.labels != predictions.labels:
        raise EvaluationInputError(
            f"the baseline is a {baseline.task} file with labels {', '.join(baseline.labels)} "
            f"but the predictions are {predictions.task} with labels "
            f"{', '.join(predictions.labels)}; a baseline scores the same labels"
        )
    position = {case: i for i, case in enumerate(baseline.case_ids.tolist())}
    missing = [case for case in predictions.case_ids.tolist() if case not in position]
    ours = set(predictions.case_ids.tolist())
    extra = [case for case in baseline.case_ids.tolist() if case not in ours]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks {len(missing)} case(s) of the predictions ({_listed(missing)})")
        if extra:
            parts.append(f"has {len(extra)} case(s) the predictions do not ({_listed(extra)})")
        raise EvaluationInputError(
            f"the baseline {' and '.join(parts)}; a baseline is scored on the same cases"
        )
    order = np.array([position[case] for case in predictions.case_ids.tolist()], dtype=np.intp)
    aligned = baseline.take(order)
    truth_differs = (
        aligned.y_true != predictions.y_true
        if aligned.y_true.ndim == 1
        else (aligned.y_true != predictions.y_true).any(axis=1)
    )
    if truth_differs.any():
        cases = predictions.case_ids[truth_differs].tolist()
        raise EvaluationInputError(
            f"the baseline's ground truth differs from the predictions' on {len(cases)} case(s) "
            f"({_listed(cases)}); both files carry the same labels for the same cases"
        )
    patients_differ = aligned.patient_ids != predictions.patient_ids
    if patients_differ.any():
        cases = predictions.case_ids[patients_differ].tolist()
        raise EvaluationInputError(
            f"the baseline gives other patient_ids than the predictions for {len(cases)} "
            f"case(s) ({_listed(cases)}); both files carry the same patient for each case"
        )
    return aligned


def _label_columns(
    predictions: Predictions, baseline: Predictions, label: str | None
) -> tuple[NDArray[np.bool_], NDArray[np.float64], NDArray[np.float64]]:
    if predictions.task == "binary":
        return predictions.y_true, predictions.y_score, baseline.y_score
    k = predictions.labels.index(label or "")
    return predictions.y_true[:, k], predictions.y_score[:, k], baseline.y_score[:, k]


def _delong_comparison(
    metric: str,
    label: str | None,
    labels: NDArray[np.bool_],
    new: NDArray[np.float64],
    old: NDArray[np.float64],
    level: float,
) -> BaselineComparison:

    n = int(labels.shape[0])
    test = delong_paired_test(labels, new, old, level=level)

    def single(scores: NDArray[np.float64]) -> Estimate:
        interval = delong_interval(labels, scores, level)
        if interval.auc is None or interval.lower is None or interval.upper is None:
            return Estimate.undefined(
                interval.reason or "undefined", n=n, level=level, method="delong"
            )
        return Estimate.ok(
            interval.auc,
            lower=interval.lower,
            upper=interval.upper,
            level=level,
            n=n,
            method="delong",
        )

    if test.difference is None or test.lower is None or test.upper is None:
        difference = Estimate.undefined(
            test.reason or "undefined", n=n, level=level, method="delong_paired"
        )
    else:
        difference = Estimate.ok(
            test.difference,
            lower=test.lower,
            upper=test.upper,
            level=level,
            n=n,
            method="delong_paired",
            note=test.reason,
        )
    return BaselineComparison(
        metric=metric,
        label=label,
        method="delong_paired",
        new=single(new),
        baseline=single(old),
        difference=difference,
        p_value=test.p_value,
    )


def _bootstrap_comparisons(
    metrics: Sequence[str],
    label: str | None,
    labels: NDArray[np.bool_],
    new: NDArray[np.float64],
    old: NDArray[np.float64],
    *,
    settings: EvaluationSettings,
    groups: NDArray[np.str_] | None,
) -> list[BaselineComparison]:
    """Return the paired bootstrap comparison of each metric, from one set of replicates."""

    # The comparison needs an interval whatever the policy's method: the paired bootstrap.
    settings = settings.for_label(label or "label").updated(ci="bootstrap")
    order = np.argsort(new, kind="stable")
    labels, new, old = labels[order], new[order], old[order]
    clusters = None if groups is None else groups[order]
    plan = BootstrapPlan.create(
        labels.shape[0], replicates=settings.replicates, seed=settings.seed, groups=clusters
    )
    populations = [
        BinaryPopulation(labels, scores, probabilities_from(scores, settings.scores), settings)
        for scores in (new, old)
    ]
    points = [population.evaluate_point() for population in populations]
    tables = collect_replicates(plan, populations, metrics)
    sides = [
        population.estimates(
            point,
            table,
            unit=plan.unit,
            n_units=plan.n_units,
            clusters=plan.clusters,
            n_clusters=plan.n_clusters,
            names=metrics,
        )
        for population, point, table in zip(populations, points, tables, strict=True)
    ]
    method = method_name("bootstrap", plan.unit)
    level = settings.level
    n_cases = int(labels.shape[0])
    out = []
    for metric in metrics:
        values = [point.metrics[metric].value() for point in points]
        reason = next(
            (
                f"{metric} is undefined for the {side}: {v.reason}"
                for side, v in zip(("new model", "baseline"), values, strict=True)
                if v.value is None
            ),
            None,
        )
        interval = None
        if values[0].value is not None and values[1].value is not None:
            interval = percentile_interval(
                tables[0][metric] - tables[1][metric],
                level,
                max_undefined_fraction=settings.max_undefined_fraction,
            )
            difference = MetricValue(values[0].value - values[1].value, None)
        else:
            difference = MetricValue(None, reason or "undefined")
        out.append(
            BaselineComparison(
                metric=metric,
                label=label,
                method=f"paired_{method}",
                new=sides[0][metric],
                baseline=sides[1][metric],
                difference=make_estimate(
                    difference,
                    interval,
                    level=level,
                    n=plan.n_units,
                    n_cases=n_cases,
                    method=method,
                ),
            )
        )
    return out


@one_blas_thread
def compare_with_baseline(
    predictions: Predictions,
    baseline: Predictions,
    policy: Policy,
    *,
    settings: EvaluationSettings | None = None,
    groups: NDArray[np.str_] | None = None,
) -> list[BaselineComparison]:
    """Return the paired comparisons (new - baseline) the policy's non-inferiority criteria read.

    `baseline` must already be aligned (`align_baseline`). Method `auto` uses DeLong's paired
    test for AUROC when cases are independent (no patient grouping) and the paired bootstrap
    (patients resampled together when `groups` is given) otherwise. `settings` (by default the
    policy's, `EvaluationSettings.from_policy`) give the operating points, level and bootstrap.
    """
    settings = settings or EvaluationSettings.from_policy(policy)
    out: list[BaselineComparison] = []
    done: set[tuple[str, str | None]] = set()
    by_bootstrap: dict[str | None, list[str]] = {}
    for criterion in policy.criteria:
        wanted = criterion.needs().baseline
        if wanted is None:
            continue
        metric, label, method = wanted
        if (metric, label) in done:
            continue
        done.add((metric, label))
        if method == "auto":
            method = "delong" if metric == "auroc" and groups is None else "bootstrap"
        if method == "delong":
            labels, new, old = _label_columns(predictions, baseline, label)
            out.append(_delong_comparison(metric, label, labels, new, old, settings.level))
        else:
            by_bootstrap.setdefault(label, []).append(metric)
    # One bootstrap per label serves all its metrics: the same replicates, computed once.
    for label, metrics in by_bootstrap.items():
        labels, new, old = _label_columns(predictions, baseline, label)
        out += _bootstrap_comparisons(
            metrics, label, labels, new, old, settings=settings, groups=groups
        )
    return out
