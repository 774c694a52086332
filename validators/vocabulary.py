"""The words Assay's numbers are spoken in: tasks, score scales, interval methods, and the metrics.

Per metric: its title (as shown to people), its direction (whether a higher or a lower value is
better, or neither) and its family (which kernel computes it, and so which interval suits it).
The policy, the manifest, the terminal scorecard, the registry and the dashboards read these
facts here instead of keeping their own copies; `tests/validators/test_vocabulary.py` checks
that the engine computes exactly the metrics named here.

A leaf: the standard library only, so that anything (the command line's `--help` included) can
read it without loading pydantic or numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

__all__ = [
    "AVERAGES",
    "CALIBRATION_METRIC_NAMES",
    "CI_METHODS",
    "DIRECTED_METRIC_NAMES",
    "METRICS",
    "METRIC_NAMES",
    "ONE_SIDED_UPPER_METRICS",
    "SCORE_SCALES",
    "SCORE_SCALE_PLURALS",
    "TASKS",
    "Average",
    "CalibrationMetricName",
    "CiMethodName",
    "DirectedMetricName",
    "Direction",
    "MetricFamily",
    "MetricInfo",
    "MetricName",
    "ScoreOutput",
    "ScoreScale",
    "Task",
    "higher_is_better",
    "metric_title",
]

Task = Literal["binary", "multilabel"]
"""What a model predicts: one finding (binary), or several findings at once (multilabel)."""
TASKS: tuple[Task, ...] = get_args(Task)

ScoreScale = Literal["probability", "logit"]
"""The scale of a model's scores: probabilities in [0, 1], or logits (any real number)."""
SCORE_SCALES: tuple[ScoreScale, ...] = get_args(ScoreScale)
ScoreOutput = Literal["logits", "probabilities"]
"""A score scale as a model's output is declared in its manifest (`output.kind`)."""
SCORE_SCALE_PLURALS: dict[ScoreScale, ScoreOutput] = {
    "probability": "probabilities",
    "logit": "logits",
}
"""Each scale in the plural: as a manifest declares it, and as a sentence says it ("threshold
0.5 on probabilities")."""

CiMethodName = Literal["bootstrap", "wilson", "delong", "none"]
"""How intervals are asked for: bootstrap (every metric), wilson (proportions), delong (AUROC),
or none (point estimates only)."""
CI_METHODS: tuple[CiMethodName, ...] = get_args(CiMethodName)

Average = Literal["macro", "micro"]
"""The averages of a multilabel task's per-label metrics, named where a label would be."""
AVERAGES: tuple[Average, ...] = get_args(Average)

MetricName = Literal[
    "prevalence",
    "auroc",
    "average_precision",
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "f1",
    "balanced_accuracy",
    "lr_positive",
    "lr_negative",
    "sensitivity_at_specificity",
    "specificity_at_sensitivity",
    "brier",
    "log_loss",
    "ece",
    "ece_equal_mass",
    "calibration_slope",
    "calibration_intercept",
    "net_benefit",
]
"""Every metric of a binary evaluation, in the order results and scorecards show them."""
METRIC_NAMES: tuple[MetricName, ...] = get_args(MetricName)

Direction = Literal["higher", "lower"]
"""Which way is better; a metric with no direction (prevalence, a calibration slope, whose ideal
is 1) has None."""

MetricFamily = Literal["proportion", "count", "ranking", "loss", "calibration", "decision"]
"""What a metric is computed from, and so how its interval is found.

- proportion: one count over another (sensitivity, PPV...): Wilson score intervals apply;
- count: another function of the confusion counts (F1, likelihood ratios);
- ranking: the order of the scores (AUROC, sensitivity at a target specificity);
- loss: a mean per-case loss of the scores (Brier, log loss);
- calibration: agreement of scores with observed rates (ECE, calibration slope and intercept);
- decision: a decision-curve quantity at the operating point (net benefit).
"""


@dataclass(frozen=True)
class MetricInfo:
    """The facts about one metric: title, direction, family, and whether it is one-sided."""

    title: str
    direction: Direction | None
    family: MetricFamily
    one_sided_upper: bool = False
    """Reported debiased with a one-sided upper bound only (its plug-in value is biased upward,
    docs/statistics.md): it has no lower bound to judge."""


METRICS: dict[MetricName, MetricInfo] = {
    "prevalence": MetricInfo("prevalence", None, "proportion"),
    "auroc": MetricInfo("AUROC", "higher", "ranking"),
    "average_precision": MetricInfo("average precision", "higher", "ranking"),
    "sensitivity": MetricInfo("sensitivity", "higher", "proportion"),
    "specificity": MetricInfo("specificity", "higher", "proportion"),
    "ppv": MetricInfo("PPV", "higher", "proportion"),
    "npv": MetricInfo("NPV", "higher", "proportion"),
    "f1": MetricInfo("F1", "higher", "count"),
    "balanced_accuracy": MetricInfo("balanced accuracy", "higher", "count"),
    "lr_positive": MetricInfo("LR+", "higher", "count"),
    "lr_negative": MetricInfo("LR-", "lower", "count"),
    "sensitivity_at_specificity": MetricInfo("sensitivity at specificity", "higher", "ranking"),
    "specificity_at_sensitivity": MetricInfo("specificity at sensitivity", "higher", "ranking"),
    "brier": MetricInfo("Brier score", "lower", "loss"),
    "log_loss": MetricInfo("log loss", "lower", "loss"),
    "ece": MetricInfo("ECE (equal width)", "lower", "calibration", one_sided_upper=True),
    "ece_equal_mass": MetricInfo("ECE (equal mass)", "lower", "calibration", one_sided_upper=True),
    "calibration_slope": MetricInfo("calibration slope", None, "calibration"),
    "calibration_intercept": MetricInfo("calibration intercept", None, "calibration"),
    "net_benefit": MetricInfo("net benefit", "higher", "decision"),
}
"""Per metric, its facts; keyed in the order of `METRIC_NAMES` (a test checks both)."""

DirectedMetricName = Literal[
    "auroc",
    "average_precision",
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "f1",
    "balanced_accuracy",
    "lr_positive",
    "lr_negative",
    "sensitivity_at_specificity",
    "specificity_at_sensitivity",
    "brier",
    "log_loss",
    "ece",
    "ece_equal_mass",
    "net_benefit",
]
"""The metrics with a direction (what non-inferiority needs): written out for the type checker
and the schema; a test checks it is exactly those of `METRICS` with a direction."""
DIRECTED_METRIC_NAMES: tuple[DirectedMetricName, ...] = get_args(DirectedMetricName)

CalibrationMetricName = Literal[
    "ece", "ece_equal_mass", "calibration_slope", "calibration_intercept", "brier"
]
"""What a calibration criterion bounds: the calibration family, and the Brier score (a loss that
mixes calibration with discrimination); a test checks it against `METRICS`."""
CALIBRATION_METRIC_NAMES: tuple[CalibrationMetricName, ...] = get_args(CalibrationMetricName)

ONE_SIDED_UPPER_METRICS: frozenset[str] = frozenset(
    name for name, info in METRICS.items() if info.one_sided_upper
)
"""The metrics with a one-sided upper bound only: a criterion may not read their lower side."""

_BY_NAME: dict[str, MetricInfo] = {name: info for name, info in METRICS.items()}
"""`METRICS` looked up by any text (a policy or a result names metrics as plain strings)."""


def higher_is_better(metric: str) -> bool:
    """Return whether a larger value of `metric` is better (False for losses and errors).

    A metric without a direction, or one not in `METRICS`, counts as higher-is-better, as it
    always has: only the metrics whose direction is `lower` read the other way.
    """
    info = _BY_NAME.get(metric)
    return info is None or info.direction != "lower"


def metric_title(metric: str) -> str:
    """Return the title people read for `metric` ("AUROC", "PPV"), or the name if it has none."""
    info = _BY_NAME.get(metric)
    return metric if info is None else info.title
