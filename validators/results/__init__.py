"""Typed evaluation results: estimates with their intervals, curve points, and provenance.

Every model here has one shape whatever the data: a metric that cannot be computed is still there,
with `status` `undefined` and the reason, and a curve that cannot be drawn is `None`. Numbers are
always finite (`allow_inf_nan=False`), so the JSON never holds NaN or Infinity, and every model
round-trips through JSON exactly: `Model.model_validate_json(m.model_dump_json()) == m`.

Only pydantic and the standard library are imported at module level: the service reads and
writes these models without loading numpy or the statistics.
"""

from __future__ import annotations

from validators.results.estimates import (
    AGE_BAND,
    AGE_COLUMN,
    BINARY_METRIC_NAMES,
    DEFAULT_AGE_BANDS,
    DEFAULT_SUBGROUP_METRICS,
    MAX_CURVE_POINTS,
    MISSING,
    BinaryMetricName,
    BootstrapUnit,
    Estimate,
    EstimateStatus,
    IntervalSides,
    canonical_attribute,
)
from validators.results.evaluation import (
    CriterionResult,
    EvaluationInputs,
    EvaluationResult,
    Provenance,
    Verdict,
    policy_digest,
    statistics_digest_of,
)
from validators.results.metrics import (
    AVERAGED_METRIC_NAMES,
    AveragedMetrics,
    BinaryMetrics,
    CalibrationBin,
    CalibrationCurve,
    DecisionCurve,
    LabelResult,
    MultilabelMetrics,
    RocCurve,
)
from validators.results.speed import (
    BatchSpeed,
    Fingerprint,
    IsolationMeasures,
    MemoryKind,
    RuntimeInfo,
    SpeedProtocolUsed,
    SpeedResult,
    TimingMethod,
)
from validators.results.subgroups import (
    OVERALL,
    Disparity,
    FairnessGap,
    FairnessGapName,
    GroupResult,
    SubgroupTable,
    fairness_participants,
)

__all__ = [
    "AGE_BAND",
    "AGE_COLUMN",
    "AVERAGED_METRIC_NAMES",
    "BINARY_METRIC_NAMES",
    "DEFAULT_AGE_BANDS",
    "DEFAULT_SUBGROUP_METRICS",
    "MAX_CURVE_POINTS",
    "MISSING",
    "OVERALL",
    "AveragedMetrics",
    "BatchSpeed",
    "BinaryMetricName",
    "BinaryMetrics",
    "BootstrapUnit",
    "CalibrationBin",
    "CalibrationCurve",
    "CriterionResult",
    "DecisionCurve",
    "Disparity",
    "Estimate",
    "EstimateStatus",
    "EvaluationInputs",
    "EvaluationResult",
    "FairnessGap",
    "FairnessGapName",
    "Fingerprint",
    "GroupResult",
    "IntervalSides",
    "IsolationMeasures",
    "LabelResult",
    "MemoryKind",
    "MultilabelMetrics",
    "Provenance",
    "RocCurve",
    "RuntimeInfo",
    "SpeedProtocolUsed",
    "SpeedResult",
    "SubgroupTable",
    "TimingMethod",
    "Verdict",
    "canonical_attribute",
    "fairness_participants",
    "policy_digest",
    "statistics_digest_of",
]
