"""Evaluation: the engines that turn predictions into typed results.

Built on the kernels (`validators.metrics`) and the resampling (`validators.resampling`); nothing
below imports this package. Modules: `settings` (`EvaluationSettings`, the one object carrying
every evaluation setting), `population` (`BinaryPopulation`: one label on one population, fed
weight blocks), `estimates` (an `Estimate` from a value and its interval), `binary` and
`multilabel` (whole evaluations, `binary_metrics` and `multilabel_metrics`), `groups`,
`subgroup_replicates`, `disparities` and `subgroups` (subgroup tables, paired disparities and
fairness gaps, `evaluate_binary_with_subgroups`), `inputs` and `baseline` (a predictions file
against a policy, and the comparison with a baseline), `predictions` (`evaluate_predictions`).
"""

from __future__ import annotations

from validators.evaluation.baseline import align_baseline, compare_with_baseline
from validators.evaluation.binary import binary_metrics, evaluate_binary
from validators.evaluation.groups import (
    DEFAULT_METRICS,
    SubgroupAnalysisSpec,
    age_band_labels,
    group_label,
    group_members,
)
from validators.evaluation.inputs import EvaluationInputError, Progress
from validators.evaluation.multilabel import evaluate_multilabel, multilabel_metrics
from validators.evaluation.population import BinaryPopulation, PopulationBatch, collect_replicates
from validators.evaluation.predictions import evaluate_predictions, subgroup_spec_for
from validators.evaluation.settings import EvaluationSettings, method_name, probabilities_from
from validators.evaluation.subgroups import evaluate_binary_with_subgroups, evaluate_subgroups

__all__ = [
    "DEFAULT_METRICS",
    "BinaryPopulation",
    "EvaluationInputError",
    "EvaluationSettings",
    "PopulationBatch",
    "Progress",
    "SubgroupAnalysisSpec",
    "age_band_labels",
    "align_baseline",
    "binary_metrics",
    "collect_replicates",
    "compare_with_baseline",
    "evaluate_binary",
    "evaluate_binary_with_subgroups",
    "evaluate_multilabel",
    "evaluate_predictions",
    "evaluate_subgroups",
    "group_label",
    "group_members",
    "method_name",
    "multilabel_metrics",
    "probabilities_from",
    "subgroup_spec_for",
]
