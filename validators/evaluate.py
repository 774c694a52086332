"""Evaluates a predictions file under a policy: overall metrics, subgroups, baseline, verdict.

`evaluate_predictions` is what `assay score` and the evaluation worker call. It reads nothing from
disk: the caller reads the predictions (`validators.data.predictions.read_predictions`) and the
policy (`validators.policy.load_policy`). The steps:

1. the effective policy: the one given (or `Policy.default()`), with `threshold` and `scores`
   overrides applied and re-validated; its task must be the predictions' task;
2. the overall metrics (`binary_metrics` / `multilabel_metrics`) with the policy's interval
   settings, resampling patients when a patient_id holds several images (`ci.unit: auto`);
3. subgroups, disparities and fairness gaps (`validators.fairness`), from the same seed and
   replicates, so the overall result and the groups see the same resamples (for a multilabel
   task, per label: see `_multilabel_subgroups`);
4. with a baseline: the paired comparisons the policy's non-inferiority criteria ask for;
5. the verdict (`validators.policy.evaluate_policy`) on the committee view, then, for
   `view="vendor"`, small-cell suppression (`validators.suppression.vendor_view`).

Multilabel tasks get overall metrics per label with macro and micro averages; their groups hold
multilabel metrics, and their disparities and fairness gaps carry the label they are of, which
a multilabel policy's subgroup criteria name.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from validators.blas import one_blas_thread
from validators.data.predictions import Predictions
from validators.policy import (
    AVERAGES,
    BaselineComparison,
    DisparityCriterion,
    NonInferiorityCriterion,
    Policy,
    SubgroupMetricCriterion,
    evaluate_policy,
    parse_policy,
    subgroup_tables_named,
)
from validators.results import (
    BootstrapUnit,
    Disparity,
    Estimate,
    EvaluationResult,
    FairnessGap,
    MultilabelMetrics,
    Provenance,
    SubgroupTable,
    canonical_attribute,
)

if TYPE_CHECKING:
    from validators.bootstrap import EvaluationSettings
    from validators.fairness import SubgroupAnalysisSpec

__all__ = [
    "EvaluationInputError",
    "Progress",
    "align_baseline",
    "compare_with_baseline",
    "evaluate_predictions",
    "settings_for",
    "subgroup_spec_for",
]

Progress = Callable[[str], None]
"""Receives a short description of each step as it starts (for a spinner)."""

MAX_LEVELS_BY_DEFAULT = 50
"""An attribute column with more distinct values is not grouped by unless a policy names it."""


class EvaluationInputError(ValueError):
    """The inputs do not fit together (policy, predictions, baseline); the message says how."""


def _quiet(_: str) -> None:
    return None


def _listed(values: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


# --------------------------------------------------------------------------------------------
# The effective policy
# --------------------------------------------------------------------------------------------


def _effective_policy(
    predictions: Predictions,
    policy: Policy | None,
    *,
    threshold: float | None,
    scores: Literal["probability", "logit"] | None,
) -> Policy:
    base = policy if policy is not None else Policy.default(task=predictions.task)
    if base.task != predictions.task:
        raise EvaluationInputError(
            f"the policy {base.name!r} is for a {base.task} task but the predictions file is "
            f"{predictions.task} ({_columns_hint(predictions.task)}); use a {predictions.task} "
            "policy"
        )
    updates: dict[str, Any] = {}
    if threshold is not None:
        updates["threshold"] = threshold
    if scores is not None:
        updates["scores"] = scores
    if updates:
        source = "the policy with the threshold and scores given on the command line"
        base = parse_policy({**base.model_dump(mode="json"), **updates}, source=source)
    if predictions.task == "multilabel":
        _check_labels(predictions, base)
    return base


def _columns_hint(task: str) -> str:
    return "label and score columns" if task == "binary" else "label:<name> and score:<name>"


def _check_labels(predictions: Predictions, policy: Policy) -> None:
    labels = list(predictions.labels)
    if isinstance(policy.threshold, dict):
        missing = [label for label in labels if label not in policy.threshold]
        extra = [label for label in policy.threshold if label not in labels]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"has no threshold for {_listed(missing)}")
            if extra:
                parts.append(f"names {_listed(extra)}, which the predictions file lacks")
            raise EvaluationInputError(
                f"the policy's per-label thresholds do not match the labels of the predictions "
                f"file ({', '.join(labels)}): it {' and '.join(parts)}"
            )
    for criterion in policy.criteria:
        label = getattr(criterion, "label", None)
        if label is not None and label not in AVERAGES and label not in labels:
            raise EvaluationInputError(
                f"criterion {criterion.id!r} names the label {label!r}, which the predictions "
                f"file does not have (labels: {', '.join(labels)}; or macro, micro)"
            )


def settings_for(policy: Policy, label: str = "label") -> EvaluationSettings:
    """Return the `EvaluationSettings` of one label under the policy."""
    from validators.bootstrap import EvaluationSettings

    return EvaluationSettings.create(
        threshold=policy.threshold_for(label),
        scores=policy.scores,
        target_specificity=policy.target_specificity,
        target_sensitivity=policy.target_sensitivity,
        n_bins=policy.calibration_bins,
        level=policy.ci.level,
        ci=list(policy.ci.methods),  # type: ignore[arg-type]
    )


def _check_probabilities(predictions: Predictions) -> None:
    """Refuse probabilities outside [0, 1], naming the column and line, with the logit hint."""
    columns = (
        [("score", predictions.y_score)]
        if predictions.task == "binary"
        else [
            (f"score:{name}", predictions.y_score[:, k])
            for k, name in enumerate(predictions.labels)
        ]
    )
    for column, values in columns:
        bad = (values < 0.0) | (values > 1.0)
        if bad.any():
            rows = np.flatnonzero(bad)
            lines = ", ".join(str(int(i) + 2) for i in rows[:5])
            more = f" and {rows.shape[0] - 5} more" if rows.shape[0] > 5 else ""
            raise EvaluationInputError(
                f"column {column!r}: line {int(rows[0]) + 2} has {values[rows[0]]:g} but "
                f"probabilities lie in [0, 1] (lines {lines}{more}); if the scores are logits, "
                "pass --scores logit (or scores: logit in the policy)"
            )


def _bootstrap_groups(predictions: Predictions, policy: Policy) -> NDArray[np.str_] | None:
    """Return the patient ids to resample by, or None to resample cases."""
    unit = policy.ci.unit
    if unit == "case":
        return None
    if unit == "patient" or predictions.n_patients < predictions.n_cases:
        return predictions.patient_ids
    return None


# --------------------------------------------------------------------------------------------
# Subgroups
# --------------------------------------------------------------------------------------------


def subgroup_spec_for(policy: Policy) -> SubgroupAnalysisSpec:
    """Return the subgroup spec of a policy, widened to what its criteria read.

    Tables a criterion names are added (to `attributes` when the policy lists attributes, and
    to the intersections), and the metrics of subgroup and disparity criteria are added to the
    metrics that get intervals and disparities.
    """
    from validators.fairness import SubgroupAnalysisSpec

    groups = policy.subgroups
    attributes = [canonical_attribute(a) for a in groups.attributes]
    intersections = [tuple(canonical_attribute(a) for a in i) for i in groups.intersections]
    for table in subgroup_tables_named(policy):
        if len(table) == 1:
            if attributes and table[0] not in attributes:
                attributes.append(table[0])
        elif frozenset(table) not in {frozenset(i) for i in intersections}:
            intersections.append(table)
    metrics = list(groups.metrics)
    disparity_metrics = list(groups.disparity_metrics)
    for criterion in policy.criteria:
        if isinstance(criterion, SubgroupMetricCriterion) and criterion.metric not in metrics:
            metrics.append(criterion.metric)
        if isinstance(criterion, DisparityCriterion):
            for names in (metrics, disparity_metrics):
                if criterion.metric not in names:
                    names.append(criterion.metric)
    return SubgroupAnalysisSpec(
        attributes=tuple(attributes),
        intersections=tuple(intersections),
        age_bands=tuple(groups.age_bands),
        min_group_size=groups.min_group_size,
        metrics=tuple(metrics),
        disparity_metrics=tuple(disparity_metrics),
    )


def _distinct_levels(values: NDArray[np.object_]) -> int:
    present = [v for v in values if v is not None and str(v).strip()]
    return len(set(present))


def _grouping_columns(
    predictions: Predictions, spec: SubgroupAnalysisSpec
) -> dict[str, NDArray[np.object_]]:
    """Return the attribute columns to group by.

    When the policy names no attributes, every column is used except those with so many
    distinct values that they are identifiers or dates rather than groups (a warning says
    which); the age column is banded, so it is always used.
    """
    if spec.attributes:
        return dict(predictions.attributes)
    named = {a for table in spec.intersections for a in table}
    chosen: dict[str, NDArray[np.object_]] = {}
    for name, values in predictions.attributes.items():
        levels = _distinct_levels(values)
        if (
            name != "age"
            and canonical_attribute(name) not in named
            and levels > MAX_LEVELS_BY_DEFAULT
        ):
            warnings.warn(
                f"attribute column {name!r} has {levels} distinct values, so it looks like an "
                "identifier or a date rather than a group; it is left out of the subgroups "
                "(name the attributes to evaluate in the policy's subgroups.attributes)",
                UserWarning,
                stacklevel=3,
            )
            continue
        chosen[name] = values
    return chosen


def _subgroups(
    predictions: Predictions,
    policy: Policy,
    groups: NDArray[np.str_] | None,
) -> tuple[list[SubgroupTable], list[Disparity], list[FairnessGap]]:
    from validators.fairness import evaluate_subgroups

    spec = subgroup_spec_for(policy)
    columns = _grouping_columns(predictions, spec)
    if not columns and not spec.attributes and not spec.intersections:
        return [], [], []
    if predictions.task == "multilabel":
        return _multilabel_subgroups(predictions, policy, groups, spec, columns)
    return evaluate_subgroups(
        predictions.y_true,
        predictions.y_score,
        columns,
        spec=spec,
        settings=settings_for(policy),
        patient_ids=groups,
        replicates=policy.ci.replicates,
        seed=policy.ci.seed,
    )


def _without_curves(metrics: MultilabelMetrics) -> MultilabelMetrics:
    """Return multilabel metrics without the per-label curves (a group's are not plotted)."""
    curves = {
        "roc_curve": None,
        "calibration_curve": None,
        "calibration_curve_equal_mass": None,
        "decision_curve": None,
    }
    per_label = [
        entry.model_copy(update={"metrics": entry.metrics.model_copy(update=curves)})
        for entry in metrics.per_label
    ]
    return metrics.model_copy(update={"per_label": per_label})


def _multilabel_subgroups(
    predictions: Predictions,
    policy: Policy,
    groups: NDArray[np.str_] | None,
    spec: SubgroupAnalysisSpec,
    columns: Mapping[str, NDArray[np.object_]],
) -> tuple[list[SubgroupTable], list[Disparity], list[FairnessGap]]:
    """Subgroups of a multilabel task: every label's, and each group's multilabel metrics.

    Each label runs through the binary subgroup engine, which gives that label's disparities
    and fairness gaps (paired with its overall metrics). Each group's metrics are the
    multilabel metrics of its cases (every label, macro and micro, from one bootstrap of the
    group), so that a group reads like the overall.
    """
    from validators.fairness import evaluate_subgroups, group_members
    from validators.metrics import multilabel_metrics

    tables: list[SubgroupTable] = []
    disparities: list[Disparity] = []
    gaps: list[FairnessGap] = []
    # The engine's own group estimates are replaced below: it needs intervals for none of them,
    # only the replicates of the disparity metrics and of the rates.
    disparities_only = dataclasses.replace(spec, metrics=())
    for k, label in enumerate(predictions.labels):
        label_tables, label_disparities, label_gaps = evaluate_subgroups(
            predictions.y_true[:, k],
            predictions.y_score[:, k],
            columns,
            spec=disparities_only,
            settings=settings_for(policy, label),
            patient_ids=groups,
            replicates=policy.ci.replicates,
            seed=policy.ci.seed,
        )
        if k == 0:
            tables = label_tables
        disparities += [d.model_copy(update={"label": label}) for d in label_disparities]
        gaps += [g.model_copy(update={"label": label}) for g in label_gaps]
    members = group_members(columns, predictions.n_cases, spec)
    common = _metric_settings(policy)
    merged = []
    for table, indices in zip(tables, members, strict=True):
        rows = []
        for group, index in zip(table.groups, indices, strict=True):
            if group.metrics is None or index.shape[0] == 0:
                rows.append(group)
                continue
            metrics = multilabel_metrics(
                predictions.y_true[index],
                predictions.y_score[index],
                list(predictions.labels),
                thresholds=[policy.threshold_for(label) for label in predictions.labels],
                groups=None if groups is None else groups[index],
                **common,
            )
            rows.append(group.model_copy(update={"metrics": _without_curves(metrics)}))
        merged.append(table.model_copy(update={"groups": rows}))
    return merged, disparities, gaps


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
    from validators.bootstrap import delong_interval, delong_paired_test

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
    policy: Policy,
    groups: NDArray[np.str_] | None,
) -> list[BaselineComparison]:
    """Return the paired bootstrap comparison of each metric, from one set of replicates."""
    from validators.bootstrap import (
        BinaryPopulation,
        BootstrapPlan,
        EvaluationSettings,
        collect_replicates,
        make_estimate,
        method_name,
        percentile_interval,
        probabilities_from,
    )
    from validators.metrics import MetricValue

    base = settings_for(policy, label or "label")
    # The comparison needs an interval whatever the policy's method: the paired bootstrap.
    settings = EvaluationSettings.create(
        threshold=base.threshold,
        scores=base.scores,
        target_specificity=base.target_specificity,
        target_sensitivity=base.target_sensitivity,
        n_bins=base.n_bins,
        level=base.level,
        ci="bootstrap",
    )
    order = np.argsort(new, kind="stable")
    labels, new, old = labels[order], new[order], old[order]
    clusters = None if groups is None else groups[order]
    plan = BootstrapPlan.create(
        labels.shape[0], replicates=policy.ci.replicates, seed=policy.ci.seed, groups=clusters
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
    groups: NDArray[np.str_] | None = None,
) -> list[BaselineComparison]:
    """Return the paired comparisons (new - baseline) the policy's non-inferiority criteria read.

    `baseline` must already be aligned (`align_baseline`). Method `auto` uses DeLong's paired
    test for AUROC when cases are independent (no patient grouping) and the paired bootstrap
    (patients resampled together when `groups` is given) otherwise.
    """
    out: list[BaselineComparison] = []
    done: set[tuple[str, str | None]] = set()
    by_bootstrap: dict[str | None, list[str]] = {}
    for criterion in policy.criteria:
        if not isinstance(criterion, NonInferiorityCriterion):
            continue
        key = (criterion.metric, criterion.label)
        if key in done:
            continue
        done.add(key)
        method = criterion.method
        if method == "auto":
            method = "delong" if criterion.metric == "auroc" and groups is None else "bootstrap"
        if method == "delong":
            labels, new, old = _label_columns(predictions, baseline, criterion.label)
            out.append(
                _delong_comparison(
                    criterion.metric, criterion.label, labels, new, old, policy.ci.level
                )
            )
        else:
            by_bootstrap.setdefault(criterion.label, []).append(criterion.metric)
    # One bootstrap per label serves all its metrics: the same replicates, computed once.
    for label, metrics in by_bootstrap.items():
        labels, new, old = _label_columns(predictions, baseline, label)
        out += _bootstrap_comparisons(
            metrics, label, labels, new, old, policy=policy, groups=groups
        )
    return out


# --------------------------------------------------------------------------------------------
# The evaluation
# --------------------------------------------------------------------------------------------


def _metric_settings(policy: Policy) -> dict[str, Any]:
    """Return the keyword arguments of `binary_metrics` / `multilabel_metrics` under a policy."""
    return {
        "scores": policy.scores,
        "target_specificity": policy.target_specificity,
        "target_sensitivity": policy.target_sensitivity,
        "ci": list(policy.ci.methods),
        "replicates": policy.ci.replicates,
        "level": policy.ci.level,
        "seed": policy.ci.seed,
        "n_bins": policy.calibration_bins,
    }


def _overall(predictions: Predictions, policy: Policy, groups: NDArray[np.str_] | None) -> Any:
    from validators.metrics import binary_metrics, multilabel_metrics

    common: Mapping[str, Any] = {**_metric_settings(policy), "groups": groups}
    if predictions.task == "binary":
        return binary_metrics(
            predictions.y_true,
            predictions.y_score,
            threshold=policy.threshold_for("label"),
            **common,
        )
    return multilabel_metrics(
        predictions.y_true,
        predictions.y_score,
        list(predictions.labels),
        thresholds=[policy.threshold_for(label) for label in predictions.labels],
        **common,
    )


@one_blas_thread
def evaluate_predictions(
    predictions: Predictions,
    *,
    policy: Policy | None = None,
    baseline: Predictions | None = None,
    threshold: float | None = None,
    scores: Literal["probability", "logit"] | None = None,
    view: Literal["committee", "vendor"] = "committee",
    on_progress: Progress | None = None,
) -> EvaluationResult:
    """Return the evaluation of a predictions file under `policy` (the default one if None).

    `threshold` and `scores` override the policy's. With a policy the result carries its
    verdict; without one, `verdict` is None. The effective policy is echoed in `policy`.
    `baseline` (the same cases scored by the model being replaced) feeds non-inferiority
    criteria. Raises EvaluationInputError (a ValueError) when the inputs do not fit together,
    PolicyInvalid when an override makes the policy invalid, and ValueError from the metrics on
    unusable data.
    """
    progress = on_progress or _quiet
    # Resample in the order the data define (case ids), so the row order of the file never
    # changes a digit of the result.
    predictions = predictions.in_case_order()
    effective = _effective_policy(predictions, policy, threshold=threshold, scores=scores)
    if effective.scores == "probability":
        _check_probabilities(predictions)
    aligned = align_baseline(predictions, baseline) if baseline is not None else None
    groups = _bootstrap_groups(predictions, effective)
    unit: BootstrapUnit = "case" if groups is None else "patient"
    replicates = effective.ci.replicates

    progress(f"overall metrics ({predictions.n_cases:,} cases, {replicates:,} replicates)")
    overall = _overall(predictions, effective, groups)
    subgroups: tuple[list[SubgroupTable], list[Disparity], list[FairnessGap]] = ([], [], [])
    progress("subgroups and fairness")
    subgroups = _subgroups(predictions, effective, groups)
    comparisons: list[BaselineComparison] | None = None
    if aligned is not None:
        progress("comparison with the baseline")
        comparisons = compare_with_baseline(predictions, aligned, effective, groups=groups)

    methods = effective.ci.methods
    result = EvaluationResult(
        task=predictions.task,
        view="committee",
        provenance=Provenance.capture(
            seed=effective.ci.seed,
            replicates=replicates,
            level=effective.ci.level,
            ci_method="+".join(methods),
            bootstrap_unit=None if "none" in methods else unit,
        ),
        overall=overall,
        subgroups=subgroups[0],
        disparities=subgroups[1],
        fairness=subgroups[2],
        policy=effective.model_dump(mode="json"),
    )
    if policy is not None:
        progress("policy verdict")
        verdict = evaluate_policy(effective, result, baseline_comparisons=comparisons)
        result = result.model_copy(update={"verdict": verdict})
    if view == "vendor":
        progress("small-cell suppression")
        from validators.suppression import vendor_view

        result = vendor_view(result, min_group_size=effective.subgroups.min_group_size)
    return result
