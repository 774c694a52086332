"""Small-cell suppression: the vendor view of an evaluation result.

A vendor sees aggregates only, and no count below the policy's minimum (default 11), nor one
that could be derived from released numbers. `vendor_view` withholds:

- **Small groups.** A group (or the whole population) with fewer than the minimum cases, or
  patients, is `suppressed`: no counts, no metrics; every disparity and fairness gap it takes part
  in is suppressed too.
- **Small classes.** A population shown with fewer than the minimum positive (or negative)
  cases keeps its size but withholds its class counts, prevalence, every metric and its curves:
  every exact rate of such a population narrows or gives away the small count (a specificity of
  480/496 on 500 cases says that 4 are positive).
- **Complementary cells.** Counts add up: the groups of one table partition every case, an
  intersection's cells add up to the groups of each of its attributes, and empty cells are
  known zeros. A withheld count that is a linear combination of released ones (overall minus the
  other groups, a margin minus the other cells of its row...) is protected by withholding more:
  the smallest other group of the same table, until no withheld count is determined. The check is
  exact linear algebra over the cells of the finest cross-classification of the attributes (one
  set of cells per group of attributes that are intersected together): a withheld count is
  exposed when its cells' indicator lies in the span of the released populations' indicators.

- **Small withheld totals.** The withheld groups of a table hold, together, the overall minus the
  released groups; a total below the minimum pins them (two withheld groups of 2 cases hold one
  each), so the table's smallest released group is withheld too.

Not covered (see docs/fairness.md): narrower bounds from non-negativity (a withheld count is known
to lie in an interval), exact fractions of released rates combined with released sizes, and a
policy verdict's criteria that name groups in ways other than their labels or gap notes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from validators.fairness import OVERALL, fairness_participants
from validators.results import (
    AveragedMetrics,
    BinaryMetrics,
    CriterionResult,
    Estimate,
    EvaluationResult,
    FairnessGap,
    GroupResult,
    LabelResult,
    MultilabelMetrics,
    SubgroupTable,
    Verdict,
)

__all__ = ["MAX_CELLS", "committee_view", "vendor_view"]

MAX_CELLS = 200_000
"""Most cells the cross-classification of one set of intersected attributes may have."""

Dimension = Literal["cases", "classes"]
Metrics = BinaryMetrics | MultilabelMetrics


def _group_reason(minimum: int) -> str:
    return (
        f"withheld: fewer than {minimum} cases or patients, or needed so that such a count "
        "cannot be derived from the released numbers"
    )


def _class_reason(minimum: int) -> str:
    return (
        f"withheld: fewer than {minimum} positive or negative cases, or needed so that such a "
        "count cannot be derived from the released numbers"
    )


def _involves_reason(minimum: int) -> str:
    return f"withheld: involves a group whose numbers are withheld (minimum {minimum})"


# --------------------------------------------------------------------------------------------
# Populations and what is known about them
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Population:
    """Overall (table None) or one group, with its counts and what is withheld."""

    table: int | None
    position: int
    attributes: dict[str, str]
    label: str
    n_cases: int | None
    empty: bool
    already: bool  # withheld in the input (a vendor view again)
    hidden_cases: bool
    hidden_classes: bool
    classes: list[tuple[int | None, int | None]] = field(default_factory=list)
    block: int = -1
    indicator: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))

    @property
    def overall(self) -> bool:
        return self.table is None

    def hidden(self, dimension: Dimension) -> bool:
        return self.hidden_cases or (dimension == "classes" and self.hidden_classes)

    def hide(self, dimension: Dimension) -> None:
        if dimension == "cases":
            self.hidden_cases = True
        self.hidden_classes = True


def _class_counts(metrics: Metrics) -> list[tuple[int | None, int | None]]:
    if isinstance(metrics, BinaryMetrics):
        return [(metrics.n_positive, metrics.n_negative)]
    return [(r.metrics.n_positive, r.metrics.n_negative) for r in metrics.per_label]


def _classes_withheld(metrics: Metrics) -> bool:
    return any(p is None or n is None for p, n in _class_counts(metrics))


def _classes_small(metrics: Metrics, minimum: int) -> bool:
    return any(
        p is not None and n is not None and min(p, n) < minimum for p, n in _class_counts(metrics)
    )


def _size_small(n_cases: int | None, n_patients: int | None, minimum: int) -> bool:
    return (n_cases is not None and n_cases < minimum) or (
        n_patients is not None and n_patients < minimum
    )


def _size(metrics: Metrics) -> tuple[int | None, int | None]:
    first = metrics if isinstance(metrics, BinaryMetrics) else metrics.per_label[0].metrics
    return first.n_cases, first.n_patients


def _populations(result: EvaluationResult, minimum: int) -> list[_Population]:
    """Return overall and every group, with what is withheld already or is below the minimum."""
    n_cases, n_patients = _size(result.overall)
    withheld = _classes_withheld(result.overall)
    out = [
        _Population(
            table=None,
            position=0,
            attributes={},
            label=OVERALL,
            n_cases=n_cases,
            empty=False,
            already=n_cases is None or withheld,
            hidden_cases=n_cases is None or _size_small(n_cases, n_patients, minimum),
            hidden_classes=withheld or _classes_small(result.overall, minimum),
            classes=_class_counts(result.overall),
        )
    ]
    for t, table in enumerate(result.subgroups):
        for position, group in enumerate(table.groups):
            empty = group.status == "empty"
            metrics = group.metrics
            withheld = metrics is not None and _classes_withheld(metrics)
            out.append(
                _Population(
                    table=t,
                    position=position,
                    attributes=dict(group.attributes),
                    label=group.label,
                    n_cases=group.n_cases,
                    empty=empty,
                    already=group.status == "suppressed" or withheld,
                    hidden_cases=group.status == "suppressed"
                    or (not empty and _size_small(group.n_cases, group.n_patients, minimum)),
                    hidden_classes=withheld
                    or (metrics is not None and _classes_small(metrics, minimum)),
                    classes=[] if metrics is None else _class_counts(metrics),
                )
            )
    return out


# --------------------------------------------------------------------------------------------
# The cells, and which withheld counts the released ones determine
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Block:
    """Attributes intersected together: their cells, and those known to be empty."""

    attributes: tuple[str, ...]
    known_zero: NDArray[np.bool_]


def _blocks(result: EvaluationResult, populations: Sequence[_Population]) -> list[_Block]:
    """Return the connected groups of attributes and set each population's cell indicator."""
    parent: dict[str, str] = {}

    def find(name: str) -> str:
        while parent.setdefault(name, name) != name:
            name = parent[name]
        return name

    levels: dict[str, list[str]] = {}
    for table in result.subgroups:
        for name in table.attributes:
            find(name)
        for left, right in pairwise(table.attributes):
            parent[find(left)] = find(right)
        for group in table.groups:
            for name, level in group.attributes.items():
                known = levels.setdefault(name, [])
                if level not in known:
                    known.append(level)
    roots = list(dict.fromkeys(find(name) for name in parent))
    blocks = []
    for root in roots:
        names = tuple(name for name in parent if find(name) == root)
        cells = math.prod(len(levels.get(name, [])) or 1 for name in names)
        if cells > MAX_CELLS:
            raise ValueError(
                f"the intersections of {', '.join(names)} make {cells} cells, more than "
                f"{MAX_CELLS}: too many to check for derivable counts; intersect fewer attributes"
            )
        blocks.append(_Block(attributes=names, known_zero=np.zeros(cells, dtype=bool)))
    grids: list[dict[str, NDArray[np.intp]]] = []
    for block in blocks:
        shape = tuple(len(levels.get(name, [])) or 1 for name in block.attributes)
        grids.append(
            {name: np.indices(shape)[k].ravel() for k, name in enumerate(block.attributes)}
        )
    block_of = {name: b for b, block in enumerate(blocks) for name in block.attributes}
    for population in populations:
        if population.overall:
            continue
        number = block_of[next(iter(population.attributes))]
        indicator: NDArray[np.bool_] = np.ones(blocks[number].known_zero.shape[0], dtype=bool)
        for name, level in population.attributes.items():
            indicator &= grids[number][name] == levels[name].index(level)
        population.block, population.indicator = number, indicator
        if population.empty:
            blocks[number].known_zero |= indicator
    return blocks


def _rank(rows: Sequence[NDArray[np.bool_]]) -> int:
    if not rows:
        return 0
    return int(np.linalg.matrix_rank(np.array(rows, dtype=np.float64)))


class _Exposure:
    """Decides which withheld counts the released counts determine, in one dimension."""

    def __init__(
        self, blocks: Sequence[_Block], populations: Sequence[_Population], dimension: Dimension
    ) -> None:
        self.blocks = blocks
        self.populations = populations
        self.dimension = dimension

    def _released(self, block: int) -> list[NDArray[np.bool_]]:
        keep = ~self.blocks[block].known_zero
        return [
            p.indicator[keep]
            for p in self.populations
            if not p.overall and p.block == block and not p.empty and not p.hidden(self.dimension)
        ]

    def _holds_constant(self, block: int) -> bool:
        rows = self._released(block)
        keep = ~self.blocks[block].known_zero
        constant = np.ones(int(keep.sum()), dtype=bool)
        return _rank([*rows, constant]) == _rank(rows)

    def _constant_available(self, block: int) -> bool:
        overall = self.populations[0]
        if not overall.hidden(self.dimension):
            return True
        return any(self._holds_constant(b) for b in range(len(self.blocks)) if b != block)

    def determined(self, population: _Population) -> bool:
        """Return whether the population's count is a combination of released counts."""
        if population.overall:
            return any(self._holds_constant(b) for b in range(len(self.blocks)))
        keep = ~self.blocks[population.block].known_zero
        target = population.indicator[keep]
        if not target.any():
            return True
        rows = self._released(population.block)
        if self._constant_available(population.block):
            rows.append(np.ones(target.shape[0], dtype=bool))
        return _rank([*rows, target]) == _rank(rows)

    def exposed(self) -> list[_Population]:
        return [
            p
            for p in self.populations
            if p.hidden(self.dimension) and not p.empty and self.determined(p)
        ]


def _whole_block(population: _Population, blocks: Sequence[_Block]) -> bool:
    keep = ~blocks[population.block].known_zero
    return bool(population.indicator[keep].all())


def _total_small(hidden: Sequence[_Population], dimension: Dimension, minimum: int) -> bool:
    """Whether the withheld groups of a table hold, together, fewer than `minimum` cases (or,
    for classes, fewer than `minimum` positive or negative cases of some label)."""
    if dimension == "cases":
        sizes = [p.n_cases for p in hidden]
        return all(n is not None for n in sizes) and sum(n or 0 for n in sizes) < minimum
    if any(len(p.classes) != len(hidden[0].classes) for p in hidden):
        return False
    for per_label in zip(*(p.classes for p in hidden), strict=True):
        for side in (0, 1):
            counts = [pair[side] for pair in per_label]
            if all(c is not None for c in counts) and sum(c or 0 for c in counts) < minimum:
                return True
    return False


def _to_widen_small_total(
    populations: Sequence[_Population], dimension: Dimension, minimum: int
) -> _Population | None:
    """Return a released group to withhold because its table's withheld groups are too few.

    The groups of a table partition every case, so their withheld total is the overall minus
    the released groups: a known number. Below the minimum it pins the withheld counts (two
    withheld groups holding 2 cases hold one each; withheld positives summing to 0 are each 0),
    so the smallest released group of the table is withheld with them.
    """
    if populations[0].hidden(dimension):
        return None
    tables: dict[int, list[_Population]] = {}
    for population in populations[1:]:
        if population.table is not None and not population.empty:
            tables.setdefault(population.table, []).append(population)
    for members in tables.values():
        hidden = [p for p in members if p.hidden(dimension)]
        released = [p for p in members if not p.hidden(dimension)]
        if hidden and released and _total_small(hidden, dimension, minimum):
            return min(
                released,
                key=lambda p: (p.n_cases if p.n_cases is not None else math.inf, p.position),
            )
    return None


def _protect(
    blocks: Sequence[_Block],
    populations: Sequence[_Population],
    dimension: Dimension,
    minimum: int,
) -> None:
    """Withhold complementary populations until no withheld count is determined or pinned."""
    check = _Exposure(blocks, populations, dimension)
    order = {p.table: len(p.attributes) for p in populations if p.table is not None}
    while True:
        exposed = check.exposed()
        if not exposed:
            widen = _to_widen_small_total(populations, dimension, minimum)
            if widen is None:
                return
            widen.hide(dimension)
            continue
        target = exposed[0]
        candidates = sorted(
            (
                p
                for p in populations
                if not p.overall
                and not p.empty
                and not p.hidden(dimension)
                and (target.overall or p.block == target.block)
                and not _whole_block(p, blocks)
            ),
            key=lambda p: (
                -order[p.table] if p.table is not None else 0,
                p.n_cases if p.n_cases is not None else math.inf,
                p.table if p.table is not None else -1,
                p.position,
            ),
        )
        if not candidates:
            # Only the overall count gives it away (the group is everyone): withhold that too.
            populations[0].hide(dimension)
            continue
        chosen = candidates[0]
        for candidate in candidates:
            state = (candidate.hidden_cases, candidate.hidden_classes)
            candidate.hide(dimension)
            works = not check.determined(target)
            candidate.hidden_cases, candidate.hidden_classes = state
            if works:
                chosen = candidate
                break
        chosen.hide(dimension)


# --------------------------------------------------------------------------------------------
# Withholding numbers
# --------------------------------------------------------------------------------------------


def _withhold(estimate: Estimate, reason: str) -> Estimate:
    return estimate if estimate.status == "suppressed" else estimate.suppress(reason)


def _withhold_averaged(metrics: AveragedMetrics, reason: str) -> AveragedMetrics:
    return metrics.model_copy(
        update={
            name: _withhold(value, reason) for name, value in metrics if isinstance(value, Estimate)
        }
    )


def _withhold_binary(metrics: BinaryMetrics, reason: str, *, size: bool) -> BinaryMetrics:
    update: dict[str, object] = {
        name: _withhold(value, reason) for name, value in metrics if isinstance(value, Estimate)
    }
    update |= {
        "n_positive": None,
        "n_negative": None,
        "roc_curve": None,
        "calibration_curve": None,
        "calibration_curve_equal_mass": None,
        "decision_curve": None,
    }
    if size:
        update |= {"n_cases": None, "n_patients": None}
    return metrics.model_copy(update=update)


def _withhold_metrics(metrics: Metrics, reason: str, *, size: bool) -> Metrics:
    if isinstance(metrics, BinaryMetrics):
        return _withhold_binary(metrics, reason, size=size)
    return metrics.model_copy(
        update={
            "per_label": [
                LabelResult(label=r.label, metrics=_withhold_binary(r.metrics, reason, size=size))
                for r in metrics.per_label
            ],
            "macro": _withhold_averaged(metrics.macro, reason),
            "micro": _withhold_averaged(metrics.micro, reason),
        }
    )


def _group(group: GroupResult, population: _Population, minimum: int) -> GroupResult:
    if population.hidden_cases and group.status != "empty":
        return GroupResult(
            attributes=group.attributes,
            label=group.label,
            status="suppressed",
            # Set for every withheld group, so primary and complementary cells look alike.
            insufficient_n=True,
            n_cases=None,
            n_patients=None,
            metrics=None,
        )
    if population.hidden("classes") and group.metrics is not None:
        return group.model_copy(
            update={"metrics": _withhold_metrics(group.metrics, _class_reason(minimum), size=False)}
        )
    return group


def _verdict(
    verdict: Verdict, withheld_labels: Iterable[str], overall_withheld: bool, minimum: int
) -> Verdict:
    labels = [label for label in withheld_labels if label]

    def mentions(criterion: CriterionResult) -> bool:
        text = " ".join((criterion.id, criterion.description, criterion.reason))
        return overall_withheld or any(label in text for label in labels)

    criteria = [
        c.model_copy(update={"observed": None, "reason": _involves_reason(minimum)})
        if mentions(c) and (c.observed is not None or c.reason != _involves_reason(minimum))
        else c
        for c in verdict.criteria
    ]
    summary = verdict.summary
    if any(label in summary for label in labels):
        summary = (
            f"{'Passed' if verdict.passed else 'Failed'}: see each criterion (details that involve "
            "withheld groups are withheld)"
        )
    return verdict.model_copy(update={"criteria": criteria, "summary": summary})


# --------------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------------


def vendor_view(result: EvaluationResult, *, min_group_size: int = 11) -> EvaluationResult:
    """Return the result as a vendor may see it: small and derivable counts withheld.

    Idempotent: the vendor view of a vendor view is itself. Use the policy's minimum group size.
    """
    if min_group_size < 1:
        raise ValueError(f"min_group_size must be at least 1; got {min_group_size}")
    minimum = min_group_size
    populations = _populations(result, minimum)
    blocks = _blocks(result, populations)
    _protect(blocks, populations, "cases", minimum)
    _protect(blocks, populations, "classes", minimum)

    first = populations[0]
    overall = result.overall
    if first.hidden_cases:
        overall = _withhold_metrics(overall, _group_reason(minimum), size=True)
    elif first.hidden("classes"):
        overall = _withhold_metrics(overall, _class_reason(minimum), size=False)

    by_key = {(p.table, p.position): p for p in populations[1:]}
    tables = [
        SubgroupTable(
            attributes=table.attributes,
            groups=[
                _group(group, by_key[t, position], minimum)
                for position, group in enumerate(table.groups)
            ],
        )
        for t, table in enumerate(result.subgroups)
    ]

    # Metrics withheld, by (table attributes, label); overall under its own name.
    withheld = {
        (tuple(result.subgroups[p.table].attributes) if p.table is not None else (), p.label)
        for p in populations
        if p.hidden("classes")
    }

    def involves(attributes: Sequence[str], label: str) -> bool:
        return (
            ((), OVERALL) in withheld
            if label == OVERALL
            else (tuple(attributes), label) in withheld
        )

    reason = _involves_reason(minimum)
    disparities = [
        d.model_copy(update={"value": _withhold(d.value, reason)})
        if involves(d.attributes, d.group) or involves(d.attributes, d.reference)
        else d
        for d in result.disparities
    ]

    # A gap involves the groups it was taken over: those with a known value and at least the
    # minimum (the rule of `validators.fairness`), and any its note names. Groups withheld in
    # the input were dealt with when they were withheld.
    hidden_now: dict[tuple[str, ...], list[GroupResult]] = {}
    for t, table in enumerate(result.subgroups):
        hidden_now[tuple(table.attributes)] = [
            group
            for position, group in enumerate(table.groups)
            if by_key[t, position].hidden("classes") and not by_key[t, position].already
        ]

    def gap(g: FairnessGap) -> FairnessGap:
        hidden = hidden_now.get(tuple(g.attributes), [])
        note = g.value.reason or ""
        participants = fairness_participants(hidden, min_group_size=minimum)
        if participants or any(group.label in note for group in hidden) or first.hidden("classes"):
            return g.model_copy(update={"value": _withhold(g.value, reason)})
        return g

    fairness = [gap(g) for g in result.fairness]
    verdict = result.verdict
    if verdict is not None:
        # A criterion names the groups it judged, and a fairness-gap criterion the groups of the
        # gap's note: a gap withheld now takes every criterion that quotes its note with it (the
        # note may leave out a withheld group whose rate was undefined, itself a small count).
        quoted = [
            g.value.reason
            for g, shown in zip(result.fairness, fairness, strict=True)
            if g.value.reason
            and g.value.status != "suppressed"
            and shown.value.status == "suppressed"
        ]
        verdict = _verdict(
            verdict,
            [p.label for p in populations[1:] if p.hidden("classes")] + quoted,
            first.hidden("classes"),
            minimum,
        )
    return result.model_copy(
        update={
            "view": "vendor",
            "overall": overall,
            "subgroups": tables,
            "disparities": disparities,
            "fairness": fairness,
            "verdict": verdict,
        }
    )


def committee_view(result: EvaluationResult) -> EvaluationResult:
    """Return the committee's view: every number, small groups flagged `insufficient_n`."""
    if result.view != "committee":
        raise ValueError(
            "a vendor view has withheld numbers and cannot become a committee view again; "
            "use the evaluation's stored result"
        )
    return result
