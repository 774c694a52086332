"""Typed subgroup results: groups, tables, disparities and fairness gaps."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import Field

from validators.results.estimates import MISSING, Estimate, _Result
from validators.results.metrics import BinaryMetrics, MultilabelMetrics

MetricsOf = Annotated[BinaryMetrics | MultilabelMetrics, Field(discriminator="task")]
GroupStatus = Literal["ok", "empty", "suppressed"]
FairnessGapName = Literal[
    "equal_opportunity_difference",
    "equalized_odds_difference",
    "demographic_parity_difference",
]


class GroupResult(_Result):
    """One subgroup: the attribute values that define it, its size and its metrics.

    `status` is `empty` for an intersection with no case (shown, not dropped), `suppressed` in a
    vendor-facing view when the group (or a complementary one) is below the minimum size, and
    `ok` otherwise. `insufficient_n` flags a group below the minimum in the committee view, which
    still shows its numbers. `metrics` is `None` when empty or suppressed.
    """

    attributes: dict[str, str]
    label: str
    status: GroupStatus
    insufficient_n: bool
    n_cases: int | None = Field(ge=0)
    n_patients: int | None = Field(ge=0)
    metrics: MetricsOf | None


class SubgroupTable(_Result):
    """Every group of one attribute, or of one intersection of attributes.

    For a multilabel task each group's metrics are `MultilabelMetrics` (every label, macro and
    micro) without curves.
    """

    attributes: list[str]
    groups: list[GroupResult]


class Disparity(_Result):
    """A metric's gap between a group and a reference (`overall` or another group's label).

    The interval comes from the same bootstrap replicates as both sides (paired). `label` names
    the label of a multilabel task the metric is of (None for a binary task).
    """

    attributes: list[str]
    label: str | None = None
    metric: str
    kind: Literal["difference", "ratio"]
    group: str
    reference: str
    value: Estimate


class FairnessGap(_Result):
    """A fairness summary over the groups of one attribute (or intersection), with its CI.

    `label` names the label of a multilabel task the rates are of (None for a binary task).
    """

    attributes: list[str]
    label: str | None = None
    name: FairnessGapName
    value: Estimate


OVERALL = "overall"
"""The reference name of the whole population in a `Disparity`."""


def fairness_participants(
    groups: Iterable[GroupResult], *, min_group_size: int
) -> list[GroupResult]:
    """Return the groups a fairness gap is taken over: known value and at least the minimum."""
    return [
        g
        for g in groups
        if g.n_cases is not None
        and g.n_cases >= min_group_size
        and MISSING not in g.attributes.values()
    ]
