"""The evaluation policy (what to compute, which criteria a model must meet) and its verdict.

A policy is a versioned YAML or JSON document (`docs/policies.md`): the operating point, the
interval method, the subgroups, and a list of criteria. `load_policy` and `parse_policy` list every
problem at once, each with a dotted path into the document (`criteria.2.value`), as the model
manifest does. `evaluate_policy` turns a policy and an `EvaluationResult` into a `Verdict`: each
criterion passes, fails or lacks data, with the reason, the observed value and the limit; a
`required` criterion that fails or lacks data fails the verdict (the registry fails closed), an
`advisory` one is reported only.

Only pydantic and the standard library are imported at module level (PyYAML when a YAML file is
read): the service validates policies without loading numpy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, Self, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from validators import results
from validators.problems import (
    InputInvalid,
    Problem,
    load_strict_yaml,
    loads_strict_json,
    pydantic_message,
    raise_located,
)
from validators.results.estimates import (
    DEFAULT_AGE_BANDS,
    MISSING,
    BinaryMetricName,
    Estimate,
    canonical_attribute,
)
from validators.results.evaluation import CriterionResult, EvaluationResult, Verdict
from validators.results.metrics import BinaryMetrics, MultilabelMetrics
from validators.results.subgroups import (
    Disparity,
    FairnessGap,
    FairnessGapName,
    GroupResult,
    SubgroupTable,
)

__all__ = [
    "AVERAGES",
    "BaselineComparison",
    "CalibrationCriterion",
    "CiSpec",
    "Criterion",
    "DisparityCriterion",
    "FairnessGapCriterion",
    "MetricCriterion",
    "NonInferiorityCriterion",
    "Policy",
    "PolicyInvalid",
    "PolicyProblem",
    "PolicySubgroups",
    "SpeedCriterion",
    "SubgroupMetricCriterion",
    "evaluate_policy",
    "higher_is_better",
    "load_policy",
    "parse_policy",
    "policy_json_schema",
]

POLICY_MAX_BYTES = 1024 * 1024
"""Largest policy file accepted: a policy is a page of settings, not a document."""

AVERAGES = ("macro", "micro")
"""The `label` values that select a multilabel task's averages instead of one label."""


NonInferiorityMetricName = Literal[
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
"""Metrics with a direction ("better" is higher, or lower): non-inferiority needs one."""

CalibrationMetricName = Literal[
    "ece", "ece_equal_mass", "calibration_slope", "calibration_intercept", "brier"
]
SpeedMetricName = Literal["latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "throughput_per_s"]

_LOWER_IS_BETTER = frozenset({"lr_negative", "brier", "log_loss", "ece", "ece_equal_mass"})
_AVERAGED_METRICS = frozenset(results.AVERAGED_METRIC_NAMES)

Task = Literal["binary", "multilabel"]
ScoreScale = Literal["probability", "logit"]
Severity = Literal["required", "advisory"]
Side = Literal["estimate", "lower", "upper"]
RangeSide = Literal["estimate", "lower", "upper", "interval"]
CiMethodName = Literal["bootstrap", "wilson", "delong", "none"]
DEFAULT_SUBGROUP_METRICS = cast("tuple[BinaryMetricName, ...]", results.DEFAULT_SUBGROUP_METRICS)


def higher_is_better(metric: str) -> bool:
    """Return whether a larger value of `metric` is better (False for losses and errors)."""
    return metric not in _LOWER_IS_BETTER


# --------------------------------------------------------------------------------------------
# The policy document
# --------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    """Base of every policy model: unknown keys are errors, numbers finite, values frozen."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


_CROSS_FIELD = "policy_cross_field"


def _raise_problems(
    problems: Iterable[tuple[tuple[str | int, ...], str]], *, kind: str = "policy_rule"
) -> NoReturn:
    """Raise one ValidationError carrying several located problems (paths relative to here).

    `kind` is `policy_cross_field` for the policy-level rules, whose paths are literal (no union
    tags to drop).
    """
    raise_located("Policy", kind, problems)


def _version_text(value: object) -> object:
    # YAML reads `version: 1.10` as the float 1.1: refuse floats rather than store a changed text.
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        raise PydanticCustomError(
            "version_float",
            'the version is text; quote it (version: "{value}") so YAML keeps it as written',
            {"value": value},
        )
    return value


Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"),
]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
AttributeName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
TableSelector = AttributeName | Annotated[list[AttributeName], Field(min_length=1)]
"""One subgroup table: an attribute ("sex"), or an intersection (["sex", "age_band"])."""


def _unique(values: list[Any]) -> list[Any]:
    seen = [str(v) for v in values]
    repeated = sorted({v for v in seen if seen.count(v) > 1})
    if repeated:
        raise PydanticCustomError(
            "unique",
            "name each entry once; repeated: {repeated}",
            {"repeated": ", ".join(repeated)},
        )
    return values


def _combinable(methods: list[str]) -> list[str]:
    if "none" in methods and len(methods) > 1:
        raise PydanticCustomError(
            "ci_none", "'none' (point estimates only) cannot be combined with another method"
        )
    return methods


def _increasing(edges: list[float]) -> list[float]:
    if any(b <= a for a, b in pairwise(edges)):
        raise PydanticCustomError("age_bands", "age band edges must increase strictly")
    return edges


def _distinct_attributes(names: list[str]) -> list[str]:
    canonical = [canonical_attribute(name) for name in names]
    if len(set(canonical)) != len(canonical):
        raise PydanticCustomError(
            "intersection",
            "an intersection names each attribute once (age and age_band are the same); got "
            "{names}",
            {"names": ", ".join(names)},
        )
    return names


CiMethods = Annotated[
    list[CiMethodName], Field(min_length=1), AfterValidator(_unique), AfterValidator(_combinable)
]
MetricList = Annotated[list[BinaryMetricName], AfterValidator(_unique)]


class CiSpec(_Strict):
    """How intervals are computed: method(s), bootstrap replicates, level, seed, unit."""

    method: CiMethodName | CiMethods = Field(
        default="bootstrap",
        description="bootstrap (every metric), wilson (proportions), delong (AUROC), a list of "
        "them, or none (point estimates only). Metrics no chosen method covers use the bootstrap.",
    )
    replicates: int = Field(default=1000, ge=1, le=100_000, description="Bootstrap replicates.")
    level: float = Field(default=0.95, gt=0.0, lt=1.0, description="Confidence level.")
    seed: int = Field(default=0, ge=0, description="Bootstrap seed; same seed, same digits.")
    unit: Literal["auto", "case", "patient"] = Field(
        default="auto",
        description="What the bootstrap resamples: patients when a patient_id holds several "
        "images (auto), always cases, or always patients.",
    )

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods as a tuple, whether one or a list was given."""
        return (self.method,) if isinstance(self.method, str) else tuple(self.method)


class PolicySubgroups(_Strict):
    """Which subgroups are evaluated, and how small a group may be before it is flagged."""

    attributes: Annotated[list[AttributeName], AfterValidator(_unique)] = Field(
        default_factory=list,
        description="Attribute columns to group by; empty means every attribute column. "
        "`age` is banded into `age_band` at `age_bands`.",
    )
    intersections: list[
        Annotated[list[AttributeName], Field(min_length=2), AfterValidator(_distinct_attributes)]
    ] = Field(default_factory=list, description='Intersections, e.g. [["sex", "age_band"]].')
    age_bands: Annotated[
        list[Annotated[float, Field(ge=0)]], Field(min_length=1), AfterValidator(_increasing)
    ] = Field(
        default_factory=lambda: list(DEFAULT_AGE_BANDS),
        description="Age band edges in years; each band includes its lower edge.",
    )
    min_group_size: int = Field(
        default=11,
        ge=1,
        description="Groups with fewer cases are flagged (committee) or suppressed (vendor).",
    )
    metrics: MetricList = Field(
        default_factory=lambda: list(DEFAULT_SUBGROUP_METRICS),
        description="Metrics with intervals in every group (the others are point estimates).",
    )
    disparity_metrics: MetricList = Field(
        default_factory=lambda: list(DEFAULT_SUBGROUP_METRICS),
        description="Metrics whose differences and ratios between groups are computed.",
    )


class _CriterionBase(_Strict):
    id: Identifier = Field(description="Unique within the policy; shown in the verdict.")
    description: Text = Field(description="What the criterion protects, in one sentence.")
    severity: Severity = Field(
        default="required",
        description="required: failing or lacking data fails the verdict; advisory: reported.",
    )


class _Bounds(_Strict):
    """Mixin of the criteria that bound a value from below, above, or both."""

    min: float | None = Field(default=None, description="Lowest allowed value.")
    max: float | None = Field(default=None, description="Highest allowed value.")

    @model_validator(mode="after")
    def _a_bound(self) -> Self:
        if self.min is None and self.max is None:
            _raise_problems([((), "give min, max or both")])
        if self.min is not None and self.max is not None and self.min > self.max:
            _raise_problems([(("max",), f"max ({self.max}) is below min ({self.min})")])
        return self


_UPPER_BOUND_ONLY = frozenset({"ece", "ece_equal_mass"})
"""Metrics reported debiased with a one-sided upper bound: they have no lower bound to read.

The keys of `validators.calibration.ECE_METRICS`, written out so that loading a policy does not
import numpy (tests/validators/test_policy.py checks that the two agree).
"""


def _refuse_lower_side(ident: str, on: str, what: str) -> None:
    """Refuse a criterion that reads the lower bound or the two-sided interval of `what`."""
    if on not in ("lower", "interval"):
        return
    side = "the lower bound" if on == "lower" else "a two-sided interval"
    _raise_problems(
        [
            (
                ("on",),
                f"criterion {ident!r} judges {what} on {side}, but it is reported debiased "
                "with a one-sided upper bound only (its plug-in value is biased upward, see "
                "docs/statistics.md); judge it on the estimate or the upper bound "
                "(on: estimate or on: upper)",
            )
        ]
    )


class _EceUpperBoundOnly(_Strict):
    """Mixin of the criteria that read a named metric on a side: an ECE has no lower side.

    The ECE is reported debiased with a one-sided upper bound, so a criterion on its lower
    bound or its two-sided interval is refused at load (`_refuse_lower_side`).
    """

    if TYPE_CHECKING:  # fields of the criteria this is mixed into
        id: str
        metric: str
        on: str

    @model_validator(mode="after")
    def _ece_has_no_lower_bound(self) -> Self:
        if self.metric in _UPPER_BOUND_ONLY:
            _refuse_lower_side(self.id, self.on, self.metric)
        return self


class MetricCriterion(_EceUpperBoundOnly, _CriterionBase):
    """A metric of the whole population, on its estimate or a bound of its interval."""

    kind: Literal["metric"]
    metric: BinaryMetricName
    label: str | None = Field(
        default=None,
        description="Multilabel only: a label name, or macro / micro for the averages.",
    )
    on: Side = Field(default="estimate", description="estimate, lower or upper bound of the CI.")
    op: Literal[">=", "<="]
    value: float


class SubgroupMetricCriterion(_EceUpperBoundOnly, _CriterionBase):
    """Minimum (or maximum) performance in every group of the named subgroup tables."""

    kind: Literal["subgroup_metric"]
    metric: BinaryMetricName
    label: str | None = Field(
        default=None,
        description="Multilabel only: a label name, or macro / micro for the averages.",
    )
    attributes: list[TableSelector] = Field(
        default_factory=list, description="Tables to check; empty means every table."
    )
    on: Side = "estimate"
    op: Literal[">=", "<="]
    value: float
    small_groups: Literal["insufficient_data", "ignore"] = Field(
        default="insufficient_data",
        description="A group below the minimum size (or where the metric is undefined) makes "
        "the criterion lack data (insufficient_data, fail-closed) or is left out (ignore).",
    )


class DisparityCriterion(_Bounds, _CriterionBase):
    """Bounds on the gap between each group and a reference (overall, or the reference group)."""

    kind: Literal["disparity"]
    metric: BinaryMetricName
    label: str | None = Field(default=None, description="Multilabel only: a label name.")
    measure: Literal["difference", "ratio"] = Field(
        default="difference", description="group - reference, or group / reference."
    )
    reference: Literal["overall", "group"] = Field(
        default="overall",
        description="overall, or each table's reference group (its largest known group).",
    )
    attributes: list[TableSelector] = Field(default_factory=list)
    on: RangeSide = Field(
        default="estimate",
        description="estimate, lower, upper, or interval (min against the lower bound and max "
        "against the upper bound: the whole interval within the limits).",
    )
    small_groups: Literal["insufficient_data", "ignore"] = "insufficient_data"


class FairnessGapCriterion(_CriterionBase):
    """Upper limit on a fairness gap (largest minus smallest group rate) of each table."""

    kind: Literal["fairness_gap"]
    name: FairnessGapName
    label: str | None = Field(default=None, description="Multilabel only: a label name.")
    attributes: list[TableSelector] = Field(default_factory=list)
    on: Side = Field(
        default="estimate",
        description="estimate or upper (a gap is reported debiased with a one-sided upper "
        "bound; its lower side is refused).",
    )
    max: float = Field(ge=0.0)

    @model_validator(mode="after")
    def _gap_has_no_lower_bound(self) -> Self:
        _refuse_lower_side(self.id, self.on, f"the fairness gap {self.name}")
        return self


class CalibrationCriterion(_EceUpperBoundOnly, _Bounds, _CriterionBase):
    """Bounds on a calibration measure (ECE, slope, intercept, Brier)."""

    kind: Literal["calibration"]
    metric: CalibrationMetricName
    label: str | None = None
    on: RangeSide = Field(
        default="estimate",
        description="estimate, lower, upper or interval; ECE (one-sided upper bound) takes "
        "estimate or upper only.",
    )


class SpeedCriterion(_Bounds, _CriterionBase):
    """Latency or throughput limits from the speed benchmark (evaluated from the next issue)."""

    kind: Literal["speed"]
    metric: SpeedMetricName
    batch_size: int = Field(default=1, ge=1)


class NonInferiorityCriterion(_CriterionBase):
    """The model is not worse than a baseline scored on the same cases by more than `margin`.

    Passes when the interval of the paired difference (new - baseline) lies above -margin (for a
    metric where higher is better; below +margin for a loss or error).
    """

    kind: Literal["non_inferiority"]
    metric: NonInferiorityMetricName
    label: str | None = None
    margin: float = Field(ge=0.0)
    method: Literal["auto", "delong", "bootstrap"] = Field(
        default="auto",
        description="auto: DeLong's paired test for AUROC when cases are independent, the "
        "paired bootstrap otherwise; delong is for AUROC only.",
    )

    @model_validator(mode="after")
    def _delong_for_auroc(self) -> Self:
        if self.method == "delong" and self.metric != "auroc":
            _raise_problems([(("method",), "DeLong's test compares AUROCs only; use bootstrap")])
        return self


Criterion = Annotated[
    MetricCriterion
    | SubgroupMetricCriterion
    | DisparityCriterion
    | FairnessGapCriterion
    | CalibrationCriterion
    | SpeedCriterion
    | NonInferiorityCriterion,
    Field(discriminator="kind"),
]
_CRITERION_KINDS = frozenset(
    {
        "metric",
        "subgroup_metric",
        "disparity",
        "fairness_gap",
        "calibration",
        "speed",
        "non_inferiority",
    }
)

Threshold = (
    Annotated[float, Field(description="One operating threshold.")]
    | Annotated[dict[str, float], Field(min_length=1, description="Multilabel: per label.")]
)


class Policy(_Strict):
    """An evaluation policy (DESIGN.md, "Evaluation policy"); see `docs/policies.md`."""

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    version: Annotated[
        str,
        BeforeValidator(_version_text),
        StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    ]
    description: Text | None = None
    task: Task
    dataset: Text | None = Field(
        default=None, description="The held-out dataset this policy is meant for (name or ref)."
    )
    threshold: Threshold = Field(
        default=0.5, description="Operating point: called positive when score >= threshold."
    )
    scores: ScoreScale = "probability"
    target_specificity: float = Field(default=0.9, ge=0.0, le=1.0)
    target_sensitivity: float = Field(default=0.9, ge=0.0, le=1.0)
    calibration_bins: int = Field(default=10, ge=1, le=100)
    ci: CiSpec = Field(default_factory=CiSpec)
    subgroups: PolicySubgroups = Field(default_factory=PolicySubgroups)
    criteria: list[Criterion] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Self:
        problems = _cross_field_problems(
            task=self.task, threshold=self.threshold, scores=self.scores, criteria=self.criteria
        )
        if problems:
            _raise_problems(problems, kind=_CROSS_FIELD)
        return self

    @classmethod
    def default(cls, task: Task = "binary") -> Policy:
        """Return the policy used without one: default metrics, 95% bootstrap CIs, no criteria."""
        return cls(name="default", version="1", task=task)

    def threshold_for(self, label: str) -> float:
        """Return the operating threshold of `label` (the one threshold of a binary task)."""
        if isinstance(self.threshold, dict):
            return self.threshold[label]
        return self.threshold


def _cross_field_problems(
    *,
    task: Task | None,
    threshold: float | dict[str, float] | None,
    scores: ScoreScale | None,
    criteria: Sequence[BaseModel | None],
    ids: Sequence[object] | None = None,
) -> list[tuple[tuple[str | int, ...], str]]:
    """Return the rules that join fields, checked on whichever parts are valid on their own."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    if isinstance(threshold, dict) and task == "binary":
        problems.append((("threshold",), "a binary policy has one threshold, a number"))
    if scores == "probability" and threshold is not None:
        items = threshold.items() if isinstance(threshold, dict) else [(None, threshold)]
        for label, value in items:
            if not 0.0 <= value <= 1.0:
                where: tuple[str | int, ...] = (
                    ("threshold",) if label is None else ("threshold", label)
                )
                problems.append(
                    (where, f"a threshold on probabilities lies in [0, 1]; got {value}")
                )
    seen: dict[str, int] = {}
    for index, ident in enumerate(
        ids if ids is not None else [getattr(c, "id", None) for c in criteria]
    ):
        if not isinstance(ident, str):
            continue
        if ident in seen:
            problems.append(
                (
                    ("criteria", index, "id"),
                    f"id {ident!r} is already used by criteria.{seen[ident]}",
                )
            )
        seen.setdefault(ident, index)
    for index, criterion in enumerate(criteria):
        if criterion is None or task is None:
            continue
        kind = str(getattr(criterion, "kind", ""))
        if not hasattr(criterion, "label"):
            continue
        label = getattr(criterion, "label", None)
        metric = str(getattr(criterion, "metric", ""))
        if task == "binary" and label is not None:
            problems.append(
                (("criteria", index, "label"), "label is for multilabel policies; leave it out")
            )
        elif task == "multilabel" and label is None:
            problems.append(
                (
                    ("criteria", index, "label"),
                    "a multilabel policy names the label: a label name, macro or micro",
                )
            )
        elif task == "multilabel" and label in AVERAGES:
            if kind == "non_inferiority":
                problems.append(
                    (
                        ("criteria", index, "label"),
                        "non-inferiority compares one label; name it instead of macro or micro",
                    )
                )
            elif kind in ("disparity", "fairness_gap"):
                problems.append(
                    (
                        ("criteria", index, "label"),
                        f"{kind} criteria judge one label's groups (disparities and fairness "
                        "gaps are per label); name it instead of macro or micro",
                    )
                )
            elif metric not in _AVERAGED_METRICS:
                problems.append(
                    (
                        ("criteria", index, "metric"),
                        f"{metric} has no {label} average; averaged metrics are "
                        f"{', '.join(sorted(_AVERAGED_METRICS))}",
                    )
                )
    return problems


# --------------------------------------------------------------------------------------------
# Loading, and problems with their paths
# --------------------------------------------------------------------------------------------


class PolicyProblem(Problem):
    """One thing wrong with a policy: where (dotted path, "" for the whole) and what."""


class PolicyInvalid(InputInvalid):
    """The policy was refused; `problems` lists every reason with its path."""

    document = "the policy"
    code = "invalid_policy"
    whole = "(policy)"
    problems: Sequence[PolicyProblem]


_TYPE_TAGS = frozenset({"float", "str", "int", "bool", "list", "dict"})


def _dotted(loc: Sequence[str | int]) -> str:
    """Render a pydantic location as a dotted path, dropping the union tags pydantic inserts."""
    parts: list[str] = []
    for index, part in enumerate(loc):
        # criteria.<i>.<kind tag>: the tag is pydantic's, not a key of the document.
        tag = index == 2 and loc[0] == "criteria" and isinstance(loc[1], int)
        if tag and part in _CRITERION_KINDS:
            continue
        # A union member's type name (float, dict[str,float], list[...]) is not a key either.
        if isinstance(part, str) and (
            part in _TYPE_TAGS or "[" in part or part.startswith(("constrained-", "function-"))
        ):
            continue
        parts.append(str(part))
    return ".".join(parts)


_SCALAR_ERRORS = frozenset(
    {
        "literal_error",
        "string_type",
        "float_type",
        "float_parsing",
        "int_type",
        "int_parsing",
        "bool_type",
    }
)
_CONTAINER_ERRORS = frozenset({"dict_type", "list_type"})


def _wrong_branch(detail: Mapping[str, Any]) -> bool:
    """Whether an error is a union branch that plainly did not apply (a scalar for a list...)."""
    value = detail.get("input")
    if detail["type"] in _SCALAR_ERRORS:
        return isinstance(value, list | dict)
    if detail["type"] in _CONTAINER_ERRORS:
        return not isinstance(value, list | dict)
    return False


def _problems_from(error: ValidationError) -> list[PolicyProblem]:
    details = error.errors(include_url=False)
    paths = [
        ".".join(str(p) for p in d["loc"]) if d["type"] == _CROSS_FIELD else _dotted(d["loc"])
        for d in details
    ]
    # A union (threshold: number or mapping; a table: name or list) reports every branch; keep
    # the branch that matches the shape of what was written when another error explains it.
    crowded = {path for path in paths if paths.count(path) > 1}
    problems: list[PolicyProblem] = []
    for detail, path in zip(details, paths, strict=True):
        is_branch = any(
            isinstance(p, str) and ("[" in p or p in _TYPE_TAGS or p.startswith("constrained-"))
            for p in detail["loc"]
        )
        if (
            is_branch
            and _wrong_branch(detail)
            and (path in crowded or any(other.startswith(path + ".") for other in paths))
        ):
            continue
        message = pydantic_message(
            detail, unknown_field="unknown field; check the spelling against docs/policies.md"
        )
        if detail["type"] == "literal_error":
            expected = (detail.get("ctx") or {}).get("expected", "")
            message = f"got {detail.get('input')!r}; expected one of {expected}"
        if detail["type"] == "union_tag_invalid":
            message = (
                f"unknown criterion kind; expected one of {', '.join(sorted(_CRITERION_KINDS))}"
            )
        if detail["type"] == "string_pattern_mismatch" and path.rsplit(".", 1)[-1] == "id":
            message = (
                f"got {detail.get('input')!r}; an id starts with a letter or digit and holds "
                "only letters, digits and _ . : -"
            )
        if detail["type"] == "union_tag_not_found":
            message = f"a criterion needs its kind: one of {', '.join(sorted(_CRITERION_KINDS))}"
        problem = PolicyProblem(path=path, message=message)
        if problem not in problems:
            problems.append(problem)
    return problems


_PARTS: dict[str, TypeAdapter[Any]] = {
    "task": TypeAdapter(Task),
    "threshold": TypeAdapter(Threshold),
    "scores": TypeAdapter(ScoreScale),
}
_CRITERION: TypeAdapter[Any] = TypeAdapter(Criterion)


def _cross_field_problems_of_raw(data: Mapping[str, Any]) -> list[PolicyProblem]:
    """Check the cross-field rules on the parts that are valid on their own.

    Used when the whole policy failed validation, so that an author with a typo in one criterion
    and a duplicate id in another hears about both at once.
    """
    parts: dict[str, Any] = {}
    for name, adapter in _PARTS.items():
        try:
            parts[name] = adapter.validate_python(data[name]) if name in data else None
        except ValidationError:
            parts[name] = None
    if "scores" not in data:
        parts["scores"] = "probability"
    criteria: list[BaseModel | None] = []
    raw = data.get("criteria")
    raw_items = raw if isinstance(raw, list) else []
    for item in raw_items:
        try:
            criteria.append(_CRITERION.validate_python(item))
        except ValidationError:
            criteria.append(None)
    return [
        PolicyProblem(path=".".join(str(part) for part in loc), message=message)
        for loc, message in _cross_field_problems(
            task=parts["task"],
            threshold=parts["threshold"],
            scores=parts["scores"],
            criteria=criteria,
            ids=[item.get("id") if isinstance(item, Mapping) else None for item in raw_items],
        )
    ]


def parse_policy(data: Mapping[str, Any], *, source: str = "the policy") -> Policy:
    """Return the validated policy, or raise PolicyInvalid listing every problem."""
    if not isinstance(data, Mapping):
        raise PolicyInvalid(
            [PolicyProblem(path="", message="a policy is a mapping of fields (name, version...)")],
            source=source,
        )
    try:
        return Policy.model_validate(dict(data))
    except ValidationError as exc:
        problems = _problems_from(exc)
        for problem in _cross_field_problems_of_raw(data):
            if problem not in problems:
                problems.append(problem)
        raise PolicyInvalid(problems, source=source) from exc


def _whole(message: str, source: str) -> PolicyInvalid:
    return PolicyInvalid([PolicyProblem(path="", message=message)], source=source)


def load_policy(path: str | Path) -> Policy:
    """Return the policy in a YAML or JSON file (by suffix; YAML otherwise), or PolicyInvalid."""
    file = Path(path)
    source = str(file)
    try:
        raw = file.read_bytes()
    except FileNotFoundError as exc:
        raise _whole(f"no policy file at {file}", source) from exc
    except OSError as exc:
        raise _whole(f"the policy file cannot be read: {exc.strerror}", source) from exc
    if len(raw) > POLICY_MAX_BYTES:
        raise _whole(f"the policy is {len(raw)} bytes; the limit is {POLICY_MAX_BYTES}", source)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _whole(
            f"the policy must be UTF-8 text; byte {exc.start} is not UTF-8", source
        ) from exc
    data: object
    if file.suffix.lower() == ".json":
        try:
            data = loads_strict_json(text)
        except json.JSONDecodeError as exc:
            raise _whole(
                f"the policy is not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                source,
            ) from exc
        except ValueError as exc:
            raise _whole(f"the policy is not valid JSON: {exc}", source) from exc
    else:
        try:
            data = load_strict_yaml(text)
        except ValueError as exc:
            raise _whole(f"the policy is {exc}", source) from exc
    if not isinstance(data, Mapping):
        raise _whole("a policy is a mapping of fields (name, version, task, criteria...)", source)
    return parse_policy(data, source=source)


def policy_json_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of an evaluation policy."""
    schema = Policy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Assay evaluation policy"
    return schema


# --------------------------------------------------------------------------------------------
# Comparisons with a baseline (computed by validators.evaluate, judged here)
# --------------------------------------------------------------------------------------------


class BaselineComparison(BaseModel):
    """A metric of the new model and of a baseline on the same cases, and their paired difference.

    `difference` is new - baseline; its interval comes from DeLong's paired test (AUROC) or from
    the same bootstrap replicates applied to both models (paired).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    metric: str
    label: str | None
    method: str
    new: Estimate
    baseline: Estimate
    difference: Estimate
    p_value: float | None = None


# --------------------------------------------------------------------------------------------
# The verdict
# --------------------------------------------------------------------------------------------

_Outcome = Literal["pass", "fail", "insufficient_data"]


def _number(value: float) -> str:
    if math.isinf(value):
        return "unbounded" if value > 0 else "unbounded below"
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}" if abs(value) >= 1 else f"{value:.3f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


def _side_name(on: str, level: float, metric: str) -> str:
    if on == "estimate":
        return metric
    percent = f"{level * 100:g}%"
    return f"the {on} bound of the {percent} interval of {metric}"


def _pick(estimate: Estimate, on: Side) -> tuple[float | None, str | None]:
    """Return the number a criterion reads (estimate, lower or upper), or why there is none."""
    if estimate.status != "ok":
        return None, f"{estimate.status}: {estimate.reason}"
    value = estimate.estimate if on == "estimate" else estimate.bound(on)
    if value is None:
        return None, f"it has no interval (method {estimate.method})"
    return value, None


def _compare(value: float, op: str, limit: float) -> bool:
    return value >= limit if op == ">=" else value <= limit


def _op_words(op: str) -> str:
    return "at least" if op == ">=" else "at most"


_SENTENCE_STARTS = frozenset({"the", "no", "a"})


def _sentence(text: str) -> str:
    """Return `text` with a capital first letter, unless it starts with an identifier."""
    first = text.split(" ", 1)[0]
    return text[:1].upper() + text[1:] if first in _SENTENCE_STARTS else text


def _result(
    criterion: _CriterionBase,
    outcome: _Outcome,
    reason: str,
    *,
    observed: float | None = None,
    limit: float | None = None,
) -> CriterionResult:
    return CriterionResult(
        id=criterion.id,
        description=criterion.description,
        severity=criterion.severity,
        outcome=outcome,
        reason=_sentence(reason),
        # An unbounded interval side is said in the reason; the stored number must be finite.
        observed=observed if observed is None or math.isfinite(observed) else None,
        limit=limit,
    )


def _binary_metrics_of(result: EvaluationResult, label: str | None) -> BinaryMetrics | str:
    overall = result.overall
    if isinstance(overall, BinaryMetrics):
        return overall
    for entry in overall.per_label:
        if entry.label == label:
            return entry.metrics
    return f"the result has no label {label!r} (labels: {', '.join(overall.labels)})"


def _estimate_of(result: EvaluationResult, metric: str, label: str | None) -> Estimate | str:
    """Return the overall estimate a criterion names, or why the result does not hold it."""
    overall = result.overall
    if isinstance(overall, MultilabelMetrics) and label in AVERAGES:
        averaged = overall.macro if label == "macro" else overall.micro
        if metric not in results.AVERAGED_METRIC_NAMES:
            return f"{metric} has no {label} average"
        value = getattr(averaged, metric)
        assert isinstance(value, Estimate)
        return value
    metrics = _binary_metrics_of(result, label)
    if isinstance(metrics, str):
        return metrics
    value = getattr(metrics, metric, None)
    if not isinstance(value, Estimate):
        return f"the result has no metric {metric!r}"
    return value


def _subject(metric: str, label: str | None) -> str:
    return metric if label is None else f"{metric} ({label})"


def _metric(criterion: MetricCriterion, result: EvaluationResult) -> CriterionResult:
    subject = _subject(criterion.metric, criterion.label)
    estimate = _estimate_of(result, criterion.metric, criterion.label)
    if isinstance(estimate, str):
        return _result(criterion, "insufficient_data", f"{estimate}.", limit=criterion.value)
    value, why = _pick(estimate, criterion.on)
    name = _side_name(criterion.on, estimate.level, subject)
    if value is None:
        return _result(
            criterion,
            "insufficient_data",
            f"{name} is not available: {why}.",
            limit=criterion.value,
        )
    met = _compare(value, criterion.op, criterion.value)
    verb = "is" if met else "is not"
    reason = (
        f"{name}, {_number(value)}, {verb} {_op_words(criterion.op)} {_number(criterion.value)}."
    )
    return _result(
        criterion, "pass" if met else "fail", reason, observed=value, limit=criterion.value
    )


def _in_range(
    estimate: Estimate, on: RangeSide, low: float | None, high: float | None
) -> tuple[bool | None, float | None, str]:
    """Return (within the limits, the value read, a description), or (None, None, why)."""
    if estimate.status != "ok" or estimate.estimate is None:
        return None, None, f"{estimate.status}: {estimate.reason}"
    if on == "interval":
        lower, upper = estimate.bound("lower"), estimate.bound("upper")
        if lower is None or upper is None:
            return None, None, f"it has no two-sided interval (method {estimate.method})"
        ok_low = low is None or lower >= low
        ok_high = high is None or upper <= high
        # The observed number is the bound nearest to a limit it breaks (or to the limit at all).
        observed = lower if not ok_low or high is None else upper
        text = f"interval [{_number(lower)}, {_number(upper)}]"
        return ok_low and ok_high, observed, text
    value, why = _pick(estimate, on)
    if value is None:
        return None, None, why or "not available"
    met = (low is None or value >= low) and (high is None or value <= high)
    return met, value, _number(value) if on == "estimate" else f"{on} bound {_number(value)}"


def _limits_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"within [{_number(low)}, {_number(high)}]"
    if low is not None:
        return f"at least {_number(low)}"
    assert high is not None
    return f"at most {_number(high)}"


def _limit_of(low: float | None, high: float | None, observed: float | None) -> float | None:
    """Return the limit a criterion reports: the one broken, or the one nearest the value."""
    if low is None or high is None:
        return low if high is None else high
    if observed is None or observed <= low:
        return low
    if observed >= high:  # an unbounded upper side (inf) broke the max, not the min
        return high
    return low if observed - low <= high - observed else high


def _calibration(criterion: CalibrationCriterion, result: EvaluationResult) -> CriterionResult:
    subject = _subject(criterion.metric, criterion.label)
    estimate = _estimate_of(result, criterion.metric, criterion.label)
    limits = _limits_text(criterion.min, criterion.max)
    if isinstance(estimate, str):
        return _result(criterion, "insufficient_data", f"{estimate}.")
    met, observed, text = _in_range(estimate, criterion.on, criterion.min, criterion.max)
    limit = _limit_of(criterion.min, criterion.max, observed)
    if met is None:
        return _result(
            criterion, "insufficient_data", f"{subject} is not available: {text}.", limit=limit
        )
    verb = "is" if met else "is not"
    return _result(
        criterion,
        "pass" if met else "fail",
        f"{subject}: {text} {verb} {limits}.",
        observed=observed,
        limit=limit,
    )


def _selected(attributes: Sequence[str], selectors: Sequence[str | list[str]]) -> bool:
    if not selectors:
        return True
    have = frozenset(attributes)
    for selector in selectors:
        names = [selector] if isinstance(selector, str) else selector
        if frozenset(canonical_attribute(n) for n in names) == have:
            return True
    return False


def _missing_tables(
    tables: Iterable[Sequence[str]], selectors: Sequence[str | list[str]]
) -> list[str]:
    """Return the selectors that match no table of the result, as text."""
    have = {frozenset(t) for t in tables}
    missing = []
    for selector in selectors:
        names = [selector] if isinstance(selector, str) else selector
        if frozenset(canonical_attribute(n) for n in names) not in have:
            missing.append(" x ".join(names))
    return missing


def _judged(group: GroupResult) -> bool:
    """Whether a group is one a subgroup criterion judges: every attribute value known."""
    return MISSING not in group.attributes.values()


def _bounds_of(op: str, value: float) -> tuple[float | None, float | None]:
    """Return (low, high) of a one-sided `>=` or `<=` comparison."""
    return (value, None) if op == ">=" else (None, value)


def _too_small(group: GroupResult, min_group_size: int) -> bool:
    return group.status != "ok" or group.insufficient_n or (group.n_cases or 0) < min_group_size


class _Tally:
    """Per-group outcomes of a subgroup criterion, folded into one.

    The worst item is the one furthest past (or nearest to) the limits `low` and `high`: with
    both, the distance to the nearer of the two counts, so a group far above the upper limit is
    worse than one just above it, whichever side the others fail on.
    """

    def __init__(self, low: float | None, high: float | None) -> None:
        self.failed: list[tuple[str, float, str]] = []
        self.passed: list[tuple[str, float, str]] = []
        self.lacking: list[tuple[str, str]] = []
        self.low, self.high = low, high

    def _badness(self, value: float) -> float:
        below = -math.inf if self.low is None else self.low - value
        above = -math.inf if self.high is None else value - self.high
        return max(below, above)

    def worst(self, items: list[tuple[str, float, str]]) -> tuple[str, float, str]:
        return max(items, key=lambda item: self._badness(item[1]))


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"


def _fold(
    criterion: _CriterionBase,
    tally: _Tally,
    *,
    what: str,
    limits: str,
    limit: float | None,
    small_groups: str,
    ignored: list[str],
    unit: str = "group",
) -> CriterionResult:
    """Return the criterion's outcome from its per-group (or per-table) outcomes.

    Any judged group outside the limits fails it; otherwise a group that cannot be judged
    makes it lack data (unless `small_groups` is `ignore`); otherwise it passes. It also lacks
    data when no group at all could be judged.
    """
    lacking_text = "; ".join(f"{label}: {why}" for label, why in tally.lacking[:5])
    if len(tally.lacking) > 5:
        lacking_text += f"; and {len(tally.lacking) - 5} more"
    if tally.failed:
        label, value, text = tally.worst(tally.failed)
        others = len(tally.failed) - 1
        more = f" (and {_plural(others, 'other ' + unit)})" if others else ""
        return _result(
            criterion,
            "fail",
            f"{what} in {label} is {text}, not {limits}{more}.",
            observed=value,
            limit=limit,
        )
    if tally.lacking and small_groups == "insufficient_data":
        rest = (
            f"; the other {_plural(len(tally.passed), unit)} are {limits}" if tally.passed else ""
        )
        return _result(
            criterion,
            "insufficient_data",
            f"{what} cannot be judged in {_plural(len(tally.lacking), unit)} "
            f"({lacking_text}){rest}.",
            limit=limit,
        )
    if not tally.passed:
        detail = f" ({lacking_text})" if lacking_text else ""
        return _result(
            criterion,
            "insufficient_data",
            f"no {unit} could be judged on {what}{detail}.",
            limit=limit,
        )
    label, value, text = tally.worst(tally.passed)
    skipped = f" Left out (small_groups: ignore): {lacking_text}." if tally.lacking else ""
    also = f" Not judged (unknown attribute value): {', '.join(ignored)}." if ignored else ""
    judged = (
        f"in the one judged {unit}, {label}: {text}"
        if len(tally.passed) == 1
        else f"in all {_plural(len(tally.passed), 'judged ' + unit)}; the nearest to the "
        f"limit is {label}, {text}"
    )
    return _result(
        criterion,
        "pass",
        f"{what} is {limits} {judged}.{skipped}{also}",
        observed=value,
        limit=limit,
    )


def _small_reason(min_group_size: int) -> str:
    return f"fewer than {min_group_size} cases"


def _group_estimate(group: GroupResult, metric: str, label: str | None) -> object:
    """Return a group's estimate of `metric` (of `label` in a multilabel task), or None."""
    metrics = group.metrics
    if isinstance(metrics, BinaryMetrics):
        return getattr(metrics, metric, None) if label is None else None
    if isinstance(metrics, MultilabelMetrics) and label is not None:
        if label in AVERAGES:
            return getattr(metrics.macro if label == "macro" else metrics.micro, metric, None)
        for entry in metrics.per_label:
            if entry.label == label:
                return getattr(entry.metrics, metric, None)
    return None


def _subgroup_metric(
    criterion: SubgroupMetricCriterion, result: EvaluationResult, min_group_size: int
) -> CriterionResult:
    what = _side_name(criterion.on, _level(result), _subject(criterion.metric, criterion.label))
    tables = [t for t in result.subgroups if _selected(t.attributes, criterion.attributes)]
    absent = _missing_tables((t.attributes for t in result.subgroups), criterion.attributes)
    if absent or not tables:
        names = ", ".join(absent) if absent else "any attribute"
        return _result(
            criterion,
            "insufficient_data",
            f"the result has no subgroup table for {names}.",
            limit=criterion.value,
        )
    tally = _Tally(*_bounds_of(criterion.op, criterion.value))
    ignored: list[str] = []
    for table in tables:
        for group in table.groups:
            if not _judged(group):
                ignored.append(group.label)
                continue
            if _too_small(group, min_group_size):
                tally.lacking.append((group.label, _small_reason(min_group_size)))
                continue
            estimate = _group_estimate(group, criterion.metric, criterion.label)
            if not isinstance(estimate, Estimate):
                tally.lacking.append((group.label, "no metrics"))
                continue
            value, why = _pick(estimate, criterion.on)
            if value is None:
                tally.lacking.append((group.label, why or "not available"))
                continue
            entry = (group.label, value, _number(value))
            (
                tally.passed if _compare(value, criterion.op, criterion.value) else tally.failed
            ).append(entry)
    return _fold(
        criterion,
        tally,
        what=what,
        limits=f"{_op_words(criterion.op)} {_number(criterion.value)}",
        limit=criterion.value,
        small_groups=criterion.small_groups,
        ignored=ignored,
    )


def _level(result: EvaluationResult) -> float:
    return result.provenance.level


def _groups_by_label(
    tables: Iterable[SubgroupTable],
) -> dict[tuple[frozenset[str], str], GroupResult]:
    return {(frozenset(t.attributes), g.label): g for t in tables for g in t.groups}


def _disparity(
    criterion: DisparityCriterion, result: EvaluationResult, min_group_size: int
) -> CriterionResult:
    measure = criterion.measure
    reference = "overall" if criterion.reference == "overall" else "the reference group"
    what = f"the {measure} in {_subject(criterion.metric, criterion.label)} to {reference}"
    if criterion.on == "interval":
        what = f"the {_level(result) * 100:g}% interval of {what}"
    else:
        what = _side_name(criterion.on, _level(result), what)
    limits = _limits_text(criterion.min, criterion.max)
    chosen: list[Disparity] = [
        d
        for d in result.disparities
        if d.metric == criterion.metric
        and d.label == criterion.label
        and d.kind == criterion.measure
        and (d.reference == "overall") == (criterion.reference == "overall")
        and _selected(d.attributes, criterion.attributes)
    ]
    absent = _missing_tables((t.attributes for t in result.subgroups), criterion.attributes)
    if absent or not chosen:
        names = f" for {', '.join(absent)}" if absent else ""
        return _result(
            criterion,
            "insufficient_data",
            f"the result has no {measure} in {_subject(criterion.metric, criterion.label)} "
            f"to {reference}{names}.",
            limit=_limit_of(criterion.min, criterion.max, None),
        )
    groups = _groups_by_label(result.subgroups)
    tally = _Tally(criterion.min, criterion.max)
    ignored: list[str] = []
    for disparity in chosen:
        group = groups.get((frozenset(disparity.attributes), disparity.group))
        if group is not None and not _judged(group):
            ignored.append(disparity.group)
            continue
        if group is None or _too_small(group, min_group_size):
            tally.lacking.append((disparity.group, _small_reason(min_group_size)))
            continue
        met, observed, text = _in_range(disparity.value, criterion.on, criterion.min, criterion.max)
        label = (
            disparity.group
            if criterion.reference == "overall"
            else f"{disparity.group} (vs {disparity.reference})"
        )
        if met is None or observed is None:
            tally.lacking.append((label, text))
            continue
        (tally.passed if met else tally.failed).append((label, observed, text))
    judged = tally.failed or tally.passed
    nearest = tally.worst(judged)[1] if judged else None
    return _fold(
        criterion,
        tally,
        what=what,
        limits=limits,
        limit=_limit_of(criterion.min, criterion.max, nearest),
        small_groups=criterion.small_groups,
        ignored=ignored,
    )


def _fairness_gap(criterion: FairnessGapCriterion, result: EvaluationResult) -> CriterionResult:
    subject = _subject(criterion.name.replace("_", " "), criterion.label)
    what = _side_name(criterion.on, _level(result), subject)
    gaps: list[FairnessGap] = [
        g
        for g in result.fairness
        if g.name == criterion.name
        and g.label == criterion.label
        and _selected(g.attributes, criterion.attributes)
    ]
    absent = _missing_tables((g.attributes for g in result.fairness), criterion.attributes)
    if absent or not gaps:
        names = f" for {', '.join(absent)}" if absent else ""
        return _result(
            criterion,
            "insufficient_data",
            f"the result has no {subject}{names}.",
            limit=criterion.max,
        )
    tally = _Tally(None, criterion.max)
    for gap in gaps:
        # The groups the gap was taken over ("over 3 groups: site=A, ...") are named, so that a
        # vendor view withholds this reason when it withholds one of them.
        over = f" ({gap.value.reason})" if gap.value.reason else ""
        label = " x ".join(gap.attributes) + over
        value, why = _pick(gap.value, criterion.on)
        if value is None:
            tally.lacking.append((label, why or "not available"))
            continue
        (tally.passed if value <= criterion.max else tally.failed).append(
            (label, value, _number(value))
        )
    return _fold(
        criterion,
        tally,
        what=what,
        limits=f"at most {_number(criterion.max)}",
        limit=criterion.max,
        small_groups="insufficient_data",
        ignored=[],
        unit="table",
    )


def _speed(criterion: SpeedCriterion) -> CriterionResult:
    return _result(
        criterion,
        "insufficient_data",
        "no speed benchmark in this result.",
        limit=_limit_of(criterion.min, criterion.max, None),
    )


def _non_inferiority(
    criterion: NonInferiorityCriterion, comparisons: Sequence[BaselineComparison] | None
) -> CriterionResult:
    higher = higher_is_better(criterion.metric)
    limit = -criterion.margin if higher else criterion.margin
    subject = _subject(criterion.metric, criterion.label)
    if comparisons is None:
        return _result(
            criterion,
            "insufficient_data",
            "no baseline was given: non-inferiority compares with a baseline model scored on the "
            "same cases (assay score --baseline).",
            limit=limit,
        )
    found = next(
        (c for c in comparisons if c.metric == criterion.metric and c.label == criterion.label),
        None,
    )
    if found is None:
        return _result(
            criterion,
            "insufficient_data",
            f"no comparison of {subject} with the baseline was computed.",
            limit=limit,
        )
    difference = found.difference
    side: Side = "lower" if higher else "upper"
    value, why = _pick(difference, side)
    if value is None or difference.estimate is None:
        return _result(
            criterion,
            "insufficient_data",
            f"the difference in {subject} (new - baseline) is not available: {why}.",
            limit=limit,
        )
    met = value > limit if higher else value < limit
    percent = f"{difference.level * 100:g}%"
    # Read through `bound`: a ratio metric's difference (lr_positive) may be unbounded on the
    # side not judged, and that side is said ("unbounded"), not assumed to be a number.
    lower, upper = difference.bound("lower"), difference.bound("upper")
    interval = (
        f"{percent} interval {_number(lower)} to {_number(upper)}"
        if lower is not None and upper is not None
        else f"{percent} {side} bound {_number(value)}"
    )
    sides = (
        f"{subject}: new {_number(found.new.estimate or 0.0)} vs baseline "
        f"{_number(found.baseline.estimate or 0.0)}; difference {_number(difference.estimate)} "
        f"({interval}, {found.method})"
    )
    relation = "above" if higher else "below"
    verdict = "is" if met else "is not"
    return _result(
        criterion,
        "pass" if met else "fail",
        f"{sides}; its {side} bound {verdict} {relation} {_number(limit)} (margin "
        f"{_number(criterion.margin)}).",
        observed=value,
        limit=limit,
    )


def _judge(
    criterion: BaseModel,
    result: EvaluationResult,
    *,
    min_group_size: int,
    comparisons: Sequence[BaselineComparison] | None,
) -> CriterionResult:
    if isinstance(criterion, MetricCriterion):
        return _metric(criterion, result)
    if isinstance(criterion, SubgroupMetricCriterion):
        return _subgroup_metric(criterion, result, min_group_size)
    if isinstance(criterion, DisparityCriterion):
        return _disparity(criterion, result, min_group_size)
    if isinstance(criterion, FairnessGapCriterion):
        return _fairness_gap(criterion, result)
    if isinstance(criterion, CalibrationCriterion):
        return _calibration(criterion, result)
    if isinstance(criterion, SpeedCriterion):
        return _speed(criterion)
    if isinstance(criterion, NonInferiorityCriterion):
        return _non_inferiority(criterion, comparisons)
    raise TypeError(f"unknown criterion {type(criterion).__name__}")  # pragma: no cover


def _ids(results: Iterable[CriterionResult]) -> str:
    return ", ".join(r.id for r in results)


def _summary(results: Sequence[CriterionResult], passed: bool) -> str:
    required = [r for r in results if r.severity == "required"]
    advisory = [r for r in results if r.severity == "advisory"]
    failed = [r for r in required if r.outcome == "fail"]
    lacking = [r for r in required if r.outcome == "insufficient_data"]
    advisory_missed = [r for r in advisory if r.outcome != "pass"]
    if not results:
        return "Passed: the policy has no criteria."
    if passed:
        text = (
            f"Passed: all {len(required)} required criteria met"
            if required
            else "Passed: the policy has no required criteria"
        )
    else:
        parts = []
        if failed:
            parts.append(
                f"{len(failed)} required {'criterion' if len(failed) == 1 else 'criteria'} "
                f"failed ({_ids(failed)})"
            )
        if lacking:
            parts.append(
                f"{len(lacking)} required {'criterion' if len(lacking) == 1 else 'criteria'} "
                f"lacked data ({_ids(lacking)})"
            )
        text = "Failed: " + " and ".join(parts)
    if advisory_missed:
        text += f"; advisory not met: {_ids(advisory_missed)}"
    elif advisory:
        text += f"; all {len(advisory)} advisory criteria met"
    return text + "."


def evaluate_policy(
    policy: Policy,
    result: EvaluationResult,
    *,
    baseline_comparisons: Sequence[BaselineComparison] | None = None,
) -> Verdict:
    """Return the policy's verdict on `result`: each criterion's outcome, passed or not.

    A required criterion that fails or lacks data fails the verdict; advisory criteria are
    reported only. Judge the committee view (suppressed groups lack data). `baseline_comparisons`
    (from `validators.evaluate`) are what non-inferiority criteria read; None means no baseline.
    """
    if policy.task != result.task:
        raise ValueError(
            f"the policy {policy.name!r} is for {policy.task} tasks; the result is {result.task}"
        )
    outcomes = [
        _judge(
            criterion,
            result,
            min_group_size=policy.subgroups.min_group_size,
            comparisons=baseline_comparisons,
        )
        for criterion in policy.criteria
    ]
    passed = all(r.outcome == "pass" for r in outcomes if r.severity == "required")
    return Verdict(
        policy_name=policy.name,
        policy_version=policy.version,
        passed=passed,
        criteria=outcomes,
        summary=_summary(outcomes, passed),
    )


def subgroup_tables_named(policy: Policy) -> Iterator[tuple[str, ...]]:
    """Yield the subgroup tables the policy's criteria name (canonical attribute names)."""
    for criterion in policy.criteria:
        for selector in getattr(criterion, "attributes", []):
            names = [selector] if isinstance(selector, str) else selector
            yield tuple(canonical_attribute(n) for n in names)
