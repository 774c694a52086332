"""The evaluation policy (what to compute, which criteria a model must meet) and its verdict.

A policy is a versioned YAML or JSON document (`docs/policies.md`): the operating point, the
interval method, the subgroups, and a list of criteria. `load_policy` and `parse_policy` list every
problem at once, each with a dotted path into the document (`criteria.2.value`), as the model
manifest does. `evaluate_policy` turns a policy and an `EvaluationResult` into a `Verdict`: each
criterion passes, fails or lacks data, with the reason, the observed value and the limit; a
`required` criterion that fails or lacks data fails the verdict (the registry fails closed), an
`advisory` one is reported only.

The package: `spec` (the document), `criterion` (what every criterion shares), `registry` (the
one registry of criterion kinds), `criteria/` (one module per kind, each judging itself),
`judging` (the helpers they share), `loading` (files and problems) and `verdict`. Every public
name is importable from `validators.policy` itself.

Only pydantic and the standard library are imported at module level (PyYAML when a YAML file is
read): the service validates policies without loading numpy.
"""

from __future__ import annotations

from validators.policy.criteria.calibration import CalibrationCriterion
from validators.policy.criteria.disparity import DisparityCriterion
from validators.policy.criteria.fairness_gap import FairnessGapCriterion
from validators.policy.criteria.metric import MetricCriterion
from validators.policy.criteria.non_inferiority import NonInferiorityCriterion
from validators.policy.criteria.speed import SpeedCriterion, SpeedMetricName
from validators.policy.criteria.subgroup_metric import SubgroupMetricCriterion
from validators.policy.criterion import (
    BaselineComparison,
    CriterionBase,
    JudgingContext,
    RangeSide,
    Severity,
    Side,
)
from validators.policy.loading import (
    POLICY_MAX_BYTES,
    PolicyInvalid,
    PolicyProblem,
    load_policy,
    parse_policy,
    policy_json_schema,
)
from validators.policy.registry import criterion_classes, criterion_kinds, register
from validators.policy.spec import (
    DEFAULT_SUBGROUP_METRICS,
    CiSpec,
    Criterion,
    Policy,
    PolicySubgroups,
    Threshold,
)
from validators.policy.verdict import evaluate_policy, subgroup_tables_named
from validators.vocabulary import (
    AVERAGES,
    CalibrationMetricName,
    CiMethodName,
    ScoreScale,
    Task,
    higher_is_better,
)
from validators.vocabulary import DirectedMetricName as NonInferiorityMetricName

__all__ = [
    "AVERAGES",
    "DEFAULT_SUBGROUP_METRICS",
    "POLICY_MAX_BYTES",
    "BaselineComparison",
    "CalibrationCriterion",
    "CalibrationMetricName",
    "CiMethodName",
    "CiSpec",
    "Criterion",
    "CriterionBase",
    "DisparityCriterion",
    "FairnessGapCriterion",
    "JudgingContext",
    "MetricCriterion",
    "NonInferiorityCriterion",
    "NonInferiorityMetricName",
    "Policy",
    "PolicyInvalid",
    "PolicyProblem",
    "PolicySubgroups",
    "RangeSide",
    "ScoreScale",
    "Severity",
    "Side",
    "SpeedCriterion",
    "SpeedMetricName",
    "SubgroupMetricCriterion",
    "Task",
    "Threshold",
    "criterion_classes",
    "criterion_kinds",
    "evaluate_policy",
    "higher_is_better",
    "load_policy",
    "parse_policy",
    "policy_json_schema",
    "register",
    "subgroup_tables_named",
]
