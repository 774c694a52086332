"""Evaluates a predictions file under a policy: overall metrics, subgroups, baseline, verdict.

`evaluate_predictions` is what `assay score` and the evaluation worker call. It reads nothing from
disk: the caller reads the predictions (`validators.data.predictions.read_predictions`) and the
policy (`validators.policy.load_policy`). The steps:

1. the effective policy: the one given (or `Policy.default()`), with `threshold` and `scores`
   overrides applied and re-validated; its task must be the predictions' task;
2. the overall metrics (`binary_metrics` / `multilabel_metrics`) with the policy's interval
   settings, resampling patients when a patient_id holds several images (`ci.unit: auto`);
3. subgroups, disparities and fairness gaps (`validators.evaluation.subgroups`), from the same
   seed and replicates, so the overall result and the groups see the same resamples (for a
   multilabel task, per label: see `_multilabel_subgroups`);
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
from collections.abc import Mapping
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from validators.blas import one_blas_thread
from validators.data.predictions import Predictions
from validators.evaluation.baseline import align_baseline, compare_with_baseline
from validators.evaluation.binary import binary_metrics
from validators.evaluation.groups import SubgroupAnalysisSpec, group_members
from validators.evaluation.inputs import (
    MAX_LEVELS_BY_DEFAULT,
    Progress,
    _bootstrap_groups,
    _check_probabilities,
    _effective_policy,
    _quiet,
)
from validators.evaluation.multilabel import multilabel_metrics
from validators.evaluation.settings import EvaluationSettings
from validators.evaluation.subgroups import evaluate_subgroups
from validators.policy import (
    BaselineComparison,
    Policy,
    evaluate_policy,
    subgroup_tables_named,
)
from validators.results.estimates import BootstrapUnit, canonical_attribute
from validators.results.evaluation import EvaluationInputs, EvaluationResult, Provenance
from validators.results.metrics import BinaryMetrics, MultilabelMetrics
from validators.results.speed import RuntimeInfo, SpeedResult
from validators.results.subgroups import Disparity, FairnessGap, SubgroupTable
from validators.suppression.view import vendor_view
from validators.vocabulary import ScoreScale

# --------------------------------------------------------------------------------------------
# Subgroups
# --------------------------------------------------------------------------------------------


def subgroup_spec_for(policy: Policy) -> SubgroupAnalysisSpec:
    """Return the subgroup spec of a policy, widened to what its criteria read.

    Tables a criterion names are added (to `attributes` when the policy lists attributes, and
    to the intersections), and the metrics of subgroup and disparity criteria are added to the
    metrics that get intervals and disparities.
    """

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
        needs = criterion.needs()
        for metric in needs.subgroup_metrics:
            if metric not in metrics:
                metrics.append(metric)
        for metric in needs.disparity_metrics:
            if metric not in disparity_metrics:
                disparity_metrics.append(metric)
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
    settings: EvaluationSettings,
    groups: NDArray[np.str_] | None,
) -> tuple[list[SubgroupTable], list[Disparity], list[FairnessGap]]:
    """Return the subgroup tables, disparities and gaps the policy's subgroup spec asks for."""
    spec = subgroup_spec_for(policy)
    columns = _grouping_columns(predictions, spec)
    if not columns and not spec.attributes and not spec.intersections:
        return [], [], []
    if predictions.task == "multilabel":
        return _multilabel_subgroups(predictions, settings, groups, spec, columns)
    return evaluate_subgroups(
        predictions.y_true,
        predictions.y_score,
        columns,
        spec=spec,
        settings=settings,
        patient_ids=groups,
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
    settings: EvaluationSettings,
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
            settings=settings.for_label(label),
            patient_ids=groups,
        )
        if k == 0:
            tables = label_tables
        disparities += [d.model_copy(update={"label": label}) for d in label_disparities]
        gaps += [g.model_copy(update={"label": label}) for g in label_gaps]
    members = group_members(columns, predictions.n_cases, spec)
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
                settings=settings,
                groups=None if groups is None else groups[index],
            )
            rows.append(group.model_copy(update={"metrics": _without_curves(metrics)}))
        merged.append(table.model_copy(update={"groups": rows}))
    return merged, disparities, gaps


# --------------------------------------------------------------------------------------------
# The evaluation
# --------------------------------------------------------------------------------------------


def _overall(
    predictions: Predictions, settings: EvaluationSettings, groups: NDArray[np.str_] | None
) -> BinaryMetrics | MultilabelMetrics:
    """Return the overall metrics of the predictions (binary, or per label with averages)."""
    if predictions.task == "binary":
        return binary_metrics(
            predictions.y_true, predictions.y_score, settings=settings, groups=groups
        )
    return multilabel_metrics(
        predictions.y_true,
        predictions.y_score,
        list(predictions.labels),
        settings=settings,
        groups=groups,
    )


@one_blas_thread
def evaluate_predictions(
    predictions: Predictions,
    *,
    policy: Policy | None = None,
    baseline: Predictions | None = None,
    threshold: float | None = None,
    scores: ScoreScale | None = None,
    view: Literal["committee", "vendor"] = "committee",
    on_progress: Progress | None = None,
    speed: SpeedResult | None = None,
    runtime: RuntimeInfo | None = None,
    inputs: EvaluationInputs | None = None,
) -> EvaluationResult:
    """Return the evaluation of a predictions file under `policy` (the default one if None).

    `threshold` and `scores` override the policy's. With a policy the result carries its
    verdict; without one, `verdict` is None. The effective policy is echoed in `policy`.
    `baseline` (the same cases scored by the model being replaced) feeds non-inferiority
    criteria. `speed`, `runtime` and `inputs` are the blocks a run of the model adds
    (`validators.runtime.pipeline`); they are set before the verdict, so speed criteria judge
    the benchmark's figures. Raises EvaluationInputError (a ValueError) when the inputs do not
    fit together, PolicyInvalid when an override makes the policy invalid, and ValueError from
    the metrics on unusable data.
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
    # The policy is the evaluation's settings: the result echoes the policy, so the numbers
    # are computed from exactly what it says (threshold and scores overrides included).
    settings = EvaluationSettings.from_policy(effective)
    replicates = settings.replicates

    progress(f"overall metrics ({predictions.n_cases:,} cases, {replicates:,} replicates)")
    overall = _overall(predictions, settings, groups)
    subgroups: tuple[list[SubgroupTable], list[Disparity], list[FairnessGap]] = ([], [], [])
    progress("subgroups and fairness")
    subgroups = _subgroups(predictions, effective, settings, groups)
    comparisons: list[BaselineComparison] | None = None
    if aligned is not None:
        progress("comparison with the baseline")
        comparisons = compare_with_baseline(
            predictions, aligned, effective, settings=settings, groups=groups
        )

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
        speed=speed,
        runtime=runtime,
        inputs=inputs,
    )
    if policy is not None:
        progress("policy verdict")
        verdict = evaluate_policy(effective, result, baseline_comparisons=comparisons)
        result = result.model_copy(update={"verdict": verdict})
    if view == "vendor":
        progress("small-cell suppression")

        result = vendor_view(result, min_group_size=effective.subgroups.min_group_size)
    return result
