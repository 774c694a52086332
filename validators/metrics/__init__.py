"""Binary classification metrics as pure functions, built from split kernels.

Every metric goes validate → format → sufficient statistics → compute, as in sklearn and
torchmetrics: confusion counts (TP, FP, TN, FN) for operating-point metrics, cumulative class
weights in score order for the ranking metrics, per-case losses for the probability metrics. The
kernels take a weight matrix `W` of shape `[R, N]` (row `r` weighs case `i` by `W[r, i]`), so one
code path computes a point estimate (`R = 1`, unit or sample weights) and `R` bootstrap replicates
(resampling counts, see `validators.resampling`). Integer weights are exact: a case with weight `k`
counts as `k` copies of it.

An undefined metric (one class only, a zero denominator) is never 0 and never a silent NaN: scalar
functions return `MetricValue(None, reason)`, batch kernels return a `MetricBatch` whose NaN entries
each carry a reason. `safe_divide_array` is the one place where division by zero is decided.

This package is the leaf of the statistics: it imports no resampling and no evaluation
(tests/validators/test_layering.py). Modules: `validation` (input checks, array types, the
undefined-value reasons, `safe_divide`), `counts` (confusion counts and their metrics), `ranking`
(AUROC, average precision, sensitivity at specificity, the ROC curve), `losses` (Brier, log loss,
net benefit) and `calibration` (reliability, ECE, recalibration, the decision curve). Everything
with intervals (`binary_metrics`, `multilabel_metrics`) is in `validators.evaluation`.
"""

from __future__ import annotations

from validators.metrics.calibration import (
    ECE_METRICS,
    BinStrategy,
    CalibrationFit,
    bin_edges,
    bin_index,
    calibration_slope_intercept,
    decision_curve,
    ece_batch,
    ece_estimate,
    ece_features,
    ece_null_scales,
    ece_upper_bound,
    expected_calibration_error,
    logistic_recalibration_batch,
    logit,
    recalibration_features,
    reliability_curve,
)
from validators.metrics.counts import (
    COUNT_METRICS,
    ConfusionCounts,
    ConfusionCountsBatch,
    balanced_accuracy_score,
    confusion_counts,
    count_metric,
    count_metric_batch,
    f1_score,
    lr_negative,
    lr_positive,
    npv_score,
    ppv_score,
    sensitivity_score,
    specificity_score,
)
from validators.metrics.losses import brier_score_loss, log_loss, net_benefit
from validators.metrics.ranking import (
    RankedCases,
    RankingBatch,
    average_precision_score,
    ranking_batch,
    roc_auc_score,
    roc_curve,
    roc_points,
    sensitivity_at_specificity,
    specificity_at_sensitivity,
)
from validators.metrics.validation import (
    NO_NEGATIVES,
    NO_POSITIVES,
    CiMethod,
    MetricBatch,
    MetricValue,
    ScoreScale,
    check_level,
    safe_divide,
    safe_divide_array,
    sigmoid,
    validate_binary,
    validate_labels,
    validate_probabilities,
    validate_sample_weight,
)

__all__ = [
    "COUNT_METRICS",
    "ECE_METRICS",
    "NO_NEGATIVES",
    "NO_POSITIVES",
    "BinStrategy",
    "CalibrationFit",
    "CiMethod",
    "ConfusionCounts",
    "ConfusionCountsBatch",
    "MetricBatch",
    "MetricValue",
    "RankedCases",
    "RankingBatch",
    "ScoreScale",
    "average_precision_score",
    "balanced_accuracy_score",
    "bin_edges",
    "bin_index",
    "brier_score_loss",
    "calibration_slope_intercept",
    "check_level",
    "confusion_counts",
    "count_metric",
    "count_metric_batch",
    "decision_curve",
    "ece_batch",
    "ece_estimate",
    "ece_features",
    "ece_null_scales",
    "ece_upper_bound",
    "expected_calibration_error",
    "f1_score",
    "log_loss",
    "logistic_recalibration_batch",
    "logit",
    "lr_negative",
    "lr_positive",
    "net_benefit",
    "npv_score",
    "ppv_score",
    "ranking_batch",
    "recalibration_features",
    "reliability_curve",
    "roc_auc_score",
    "roc_curve",
    "roc_points",
    "safe_divide",
    "safe_divide_array",
    "sensitivity_at_specificity",
    "sensitivity_score",
    "sigmoid",
    "specificity_at_sensitivity",
    "specificity_score",
    "validate_binary",
    "validate_labels",
    "validate_probabilities",
    "validate_sample_weight",
]
