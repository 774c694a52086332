"""Populations, their cells, and which withheld counts the released ones determine."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from validators.results.evaluation import EvaluationResult
from validators.results.metrics import BinaryMetrics, MultilabelMetrics
from validators.results.subgroups import OVERALL, FairnessGap, GroupResult, fairness_participants

MAX_CELLS = 200_000
"""Most cells the cross-classification of one set of intersected attributes may have."""

Dimension = Literal["cases", "classes"]
Metrics = BinaryMetrics | MultilabelMetrics
Confusion = tuple[int, int, int, int]
"""TP, FN, FP, TN at the operating point."""


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
    confusion: list[Confusion | None] = field(default_factory=list)
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


def _binary(metrics: Metrics) -> list[BinaryMetrics]:
    return (
        [metrics] if isinstance(metrics, BinaryMetrics) else [r.metrics for r in metrics.per_label]
    )


def _confusion(metrics: BinaryMetrics) -> Confusion | None:
    """Return (TP, FN, FP, TN) as the released rates give them away, or None if they cannot be
    read back (then the population's classes are withheld: what cannot be checked is not shown).
    """
    positive, negative = metrics.n_positive, metrics.n_negative
    if positive is None or negative is None:
        return None
    sensitivity, specificity = metrics.sensitivity.estimate, metrics.specificity.estimate
    balanced = metrics.balanced_accuracy.estimate
    if sensitivity is None and balanced is not None and specificity is not None:
        sensitivity = 2 * balanced - specificity
    if specificity is None and balanced is not None and sensitivity is not None:
        specificity = 2 * balanced - sensitivity
    tp = 0 if positive == 0 else None if sensitivity is None else round(sensitivity * positive)
    tn = 0 if negative == 0 else None if specificity is None else round(specificity * negative)
    if tp is None or tn is None:
        return None
    return (tp, positive - tp, negative - tn, tn)


def _class_counts(metrics: Metrics) -> list[tuple[int | None, int | None]]:
    return [(m.n_positive, m.n_negative) for m in _binary(metrics)]


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
    first = _binary(metrics)[0]
    return first.n_cases, first.n_patients


def _populations(result: EvaluationResult, minimum: int) -> list[_Population]:
    """Return overall and every group, with what is withheld already or is below the minimum."""
    # A label whose confusion counts cannot be read back (None) withholds the classes.
    n_cases, n_patients = _size(result.overall)
    withheld = _classes_withheld(result.overall)
    confusion = [_confusion(m) for m in _binary(result.overall)]
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
            hidden_classes=None in confusion or _classes_small(result.overall, minimum),
            classes=_class_counts(result.overall),
            confusion=confusion,
        )
    ]
    for t, table in enumerate(result.subgroups):
        for position, group in enumerate(table.groups):
            empty = group.status == "empty"
            metrics = group.metrics
            withheld = metrics is not None and _classes_withheld(metrics)
            confusion = [] if metrics is None else [_confusion(m) for m in _binary(metrics)]
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
                    hidden_classes=None in confusion
                    or (metrics is not None and _classes_small(metrics, minimum)),
                    classes=[] if metrics is None else _class_counts(metrics),
                    confusion=confusion,
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


def _row_space(rows: Sequence[NDArray[np.bool_]], width: int) -> NDArray[np.float64]:
    """Return an orthonormal basis (as rows) of the span of `rows`."""
    if not rows:
        return np.zeros((0, width))
    matrix = np.array(rows, dtype=np.float64)
    _, singular, right = np.linalg.svd(matrix, full_matrices=False)
    # numpy's matrix_rank tolerance
    tolerance = singular.max(initial=0.0) * max(matrix.shape) * np.finfo(np.float64).eps
    basis: NDArray[np.float64] = right[singular > tolerance]
    return basis


def _in_span(basis: NDArray[np.float64], vector: NDArray[np.bool_]) -> bool:
    target = vector.astype(np.float64)
    residual = target - basis.T @ (basis @ target)
    return bool(np.abs(residual).max(initial=0.0) < 1e-6)


class _Exposure:
    """Decides which withheld counts the released counts determine, in one dimension."""

    def __init__(
        self, blocks: Sequence[_Block], populations: Sequence[_Population], dimension: Dimension
    ) -> None:
        self.blocks = blocks
        self.populations = populations
        self.dimension = dimension
        # Row spaces by (block, released populations, with the constant): what is withheld
        # changes while complements are tried, so the key holds it.
        self._spaces: dict[tuple[int, tuple[int, ...], bool], NDArray[np.float64]] = {}
        self._members = [
            [i for i, p in enumerate(populations) if p.block == b and not p.overall and not p.empty]
            for b in range(len(blocks))
        ]

    def _space(self, block: int, constant: bool) -> NDArray[np.float64]:
        released = tuple(
            i for i in self._members[block] if not self.populations[i].hidden(self.dimension)
        )
        key = (block, released, constant)
        if key not in self._spaces:
            keep = ~self.blocks[block].known_zero
            rows = [self.populations[i].indicator[keep] for i in released]
            if constant:
                rows.append(np.ones(int(keep.sum()), dtype=bool))
            self._spaces[key] = _row_space(rows, int(keep.sum()))
        return self._spaces[key]

    def _holds_constant(self, block: int) -> bool:
        keep = ~self.blocks[block].known_zero
        return _in_span(self._space(block, False), np.ones(int(keep.sum()), dtype=bool))

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
        constant = self._constant_available(population.block)
        return _in_span(self._space(population.block, constant), target)

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


def _complement_order(
    populations: Sequence[_Population],
) -> Callable[[_Population], tuple[float, float, int, int]]:
    """Return the sort key of complements: cells of the most detailed table first (so that the
    single-attribute margins survive where possible), then the smallest."""
    order = {p.table: len(p.attributes) for p in populations if p.table is not None}

    def key(p: _Population) -> tuple[float, float, int, int]:
        return (
            -order[p.table] if p.table is not None else 0,
            p.n_cases if p.n_cases is not None else math.inf,
            p.table if p.table is not None else -1,
            p.position,
        )

    return key


def _protect(
    blocks: Sequence[_Block],
    populations: Sequence[_Population],
    dimension: Dimension,
    minimum: int,
) -> None:
    """Withhold complementary populations until no withheld count is determined or pinned."""
    check = _Exposure(blocks, populations, dimension)
    key = _complement_order(populations)
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
            key=key,
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


def _released_gaps(
    result: EvaluationResult, populations: Sequence[_Population], minimum: int
) -> list[FairnessGap]:
    """Return the fairness gaps the vendor view releases, given what is withheld now.

    A gap involves the groups it was taken over: those with a known value and at least the
    minimum (the rule of `validators.results.fairness_participants`), and any its note names;
    every gap involves overall. Groups withheld in the input were dealt with when they were
    withheld.
    """
    if populations[0].hidden("classes"):
        return []
    by_key = {(p.table, p.position): p for p in populations[1:]}
    hidden_now: dict[tuple[str, ...], list[GroupResult]] = {}
    for t, table in enumerate(result.subgroups):
        hidden_now[tuple(table.attributes)] = [
            group
            for position, group in enumerate(table.groups)
            if by_key[t, position].hidden("classes") and not by_key[t, position].already
        ]

    def involves_withheld(g: FairnessGap) -> bool:
        hidden = hidden_now.get(tuple(g.attributes), [])
        note = g.value.reason or ""
        return bool(fairness_participants(hidden, min_group_size=minimum)) or any(
            group.label in note for group in hidden
        )

    return [
        g for g in result.fairness if g.value.status != "suppressed" and not involves_withheld(g)
    ]
