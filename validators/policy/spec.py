"""The policy document: its fields, the interval and subgroup settings, and the rules joining them.

`Policy` is what `load_policy` and `parse_policy` (`validators.policy.loading`) give back. Its
`criteria` is a list of the registered criterion kinds (`validators.policy.registry`), told apart
by `kind`; the rules that join fields (a threshold per label, unique ids, labels only in a
multilabel policy) are checked here, with each kind saying which averages it may read.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self, TypeAlias, cast

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError

from validators.policy.criterion import (
    AttributeName,
    CriterionBase,
    StrictModel,
    Text,
    raise_problems,
)
from validators.policy.registry import criterion_union
from validators.results import (
    DEFAULT_AGE_BANDS,
    SpeedProtocolUsed,
    canonical_attribute,
)
from validators.results import DEFAULT_SUBGROUP_METRICS as _DEFAULT_SUBGROUP_METRICS
from validators.vocabulary import AVERAGES, CiMethodName, MetricName, ScoreScale, Task

__all__ = [
    "CROSS_FIELD",
    "CiSpec",
    "Criterion",
    "Policy",
    "PolicySubgroups",
    "SpeedProtocol",
    "Threshold",
    "cross_field_problems",
]

DEFAULT_SUBGROUP_METRICS = cast("tuple[MetricName, ...]", _DEFAULT_SUBGROUP_METRICS)

CROSS_FIELD = "policy_cross_field"
"""The error type of the policy-level rules, whose paths are literal (no union tags to drop)."""


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


MetricList = Annotated[list[MetricName], AfterValidator(_unique)]


class CiSpec(StrictModel):
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


class PolicySubgroups(StrictModel):
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


def _positive_sizes(sizes: list[int]) -> list[int]:
    if any(size < 1 for size in sizes):
        raise PydanticCustomError("batch_size", "batch sizes are positive integers")
    return sizes


class SpeedProtocol(StrictModel):
    """The speed benchmark's protocol, the same for every model version judged by this policy.

    At each batch size: `warmup_iterations` untimed runs, then timed runs until at least
    `min_iterations` runs AND `min_time_s` seconds are reached. `decode_sample` cases are read
    from disk, decoded and preprocessed to time the end-to-end figure.
    """

    warmup_iterations: int = Field(default=10, ge=0, le=10_000, description="Untimed runs.")
    min_iterations: int = Field(default=50, ge=1, le=10_000, description="Fewest timed runs.")
    min_time_s: float = Field(default=2.0, ge=0.0, le=600.0, description="Least timed seconds.")
    batch_sizes: Annotated[
        list[int], Field(min_length=1, max_length=16), AfterValidator(_positive_sizes)
    ] = Field(
        default_factory=lambda: [1, 16],
        description="Batch sizes timed; a speed criterion's batch size is timed as well.",
    )
    decode_sample: int = Field(
        default=32, ge=0, le=10_000, description="Cases decoded from disk for end-to-end time."
    )


if TYPE_CHECKING:
    # The union is built from the registry at import time; the type checker sees the base.
    Criterion: TypeAlias = CriterionBase
else:
    Criterion = criterion_union()
"""One criterion: any registered kind, told apart by its `kind` (validators.policy.registry)."""

Threshold = (
    Annotated[float, Field(description="One operating threshold.")]
    | Annotated[dict[str, float], Field(min_length=1, description="Multilabel: per label.")]
)


class Policy(StrictModel):
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
    speed: SpeedProtocol = Field(default_factory=SpeedProtocol)
    criteria: list[Criterion] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Self:
        problems = cross_field_problems(
            task=self.task, threshold=self.threshold, scores=self.scores, criteria=self.criteria
        )
        if problems:
            raise_problems(problems, kind=CROSS_FIELD)
        return self

    @classmethod
    def default(cls, task: Task = "binary") -> Policy:
        """Return the policy used without one: default metrics, 95% bootstrap CIs, no criteria."""
        return cls(name="default", version="1", task=task)

    def speed_protocol(self) -> SpeedProtocolUsed:
        """Return the speed protocol to run: the `speed` section, plus every batch size a speed
        criterion reads, so no criterion lacks its figure for want of a batch size."""
        sizes = set(self.speed.batch_sizes)
        for criterion in self.criteria:
            sizes.update(criterion.needs().speed_batch_sizes)
        return SpeedProtocolUsed(
            warmup_iterations=self.speed.warmup_iterations,
            min_iterations=self.speed.min_iterations,
            min_time_s=self.speed.min_time_s,
            batch_sizes=sorted(sizes),
            decode_sample=self.speed.decode_sample,
        )

    def threshold_for(self, label: str) -> float:
        """Return the operating threshold of `label` (the one threshold of a binary task)."""
        if isinstance(self.threshold, dict):
            return self.threshold[label]
        return self.threshold


def cross_field_problems(
    *,
    task: Task | None,
    threshold: float | dict[str, float] | None,
    scores: ScoreScale | None,
    criteria: Sequence[CriterionBase | None],
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
        if not hasattr(criterion, "label"):
            continue
        label = getattr(criterion, "label", None)
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
            # Each kind says whether it may read an average (validators.policy.criterion).
            refused = criterion.average_problem(label)
            if refused is not None:
                field, message = refused
                problems.append((("criteria", index, field), message))
    return problems
