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
- **Narrow ranges of confusion counts.** A released population's class sizes and rates give its
  TP, FN, FP and TN exactly (sensitivity x positives = TP), so every confusion count of a
  withheld cell is bounded by sums and differences of released ones (overall's false negatives
  minus the released groups' are shared by the withheld ones; 0 shared is 0 each). The view
  then checks what a vendor could do: integer programs over non-negative integer TP, FN, FP, TN
  per cell and label, constrained by every released number, give the least and greatest value
  of each withheld count (cases, positives, negatives, TP, FN, FP, TN) and, by Dinkelbach's
  method, of each withheld sensitivity, specificity, PPV and NPV. Every range must be at least
  `MIN_COUNT_RANGE` (3) wide, and every rate's `MIN_RATE_RANGE` (0.1); where one is narrower,
  more is withheld (a complement's class counts, the group's own size, or overall's class
  counts), choosing among a few candidates the one that widens it at the least cost, then the
  checks above run again.

Not covered (see docs/fairness.md): rank and calibration metrics (AUROC, Brier, bins) of
released populations, bootstrap intervals, and a policy verdict's criteria that name groups in
ways other than their labels or gap notes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from validators.fairness import OVERALL, fairness_participants
from validators.metrics import FloatArray
from validators.results import (
    MISSING,
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

__all__ = ["MAX_CELLS", "MIN_COUNT_RANGE", "MIN_RATE_RANGE", "committee_view", "vendor_view"]

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


# --------------------------------------------------------------------------------------------
# Ranges: how narrowly the released numbers confine each withheld count and rate
# --------------------------------------------------------------------------------------------

MIN_COUNT_RANGE = 3
"""Least width (greatest minus least value consistent with every released number) of the range
of every withheld count: cases, positives, negatives, TP, FN, FP, TN."""
MIN_RATE_RANGE = 0.1
"""Least width of the range of every withheld sensitivity, specificity, PPV and NPV."""

Weights = tuple[int, int, int, int]
_COUNTS: dict[str, Weights] = {  # over (TP, FN, FP, TN)
    "n_cases": (1, 1, 1, 1),
    "n_positive": (1, 1, 0, 0),
    "n_negative": (0, 0, 1, 1),
    "tp": (1, 0, 0, 0),
    "fn": (0, 1, 0, 0),
    "fp": (0, 0, 1, 0),
    "tn": (0, 0, 0, 1),
}
_RATES: dict[str, tuple[Weights, Weights]] = {  # numerator, denominator
    "sensitivity": ((1, 0, 0, 0), (1, 1, 0, 0)),
    "specificity": ((0, 0, 0, 1), (0, 0, 1, 1)),
    "ppv": ((1, 0, 0, 0), (1, 0, 1, 0)),
    "npv": ((0, 0, 0, 1), (0, 1, 0, 1)),
}
_TRIALS = 6
"""Complements tried, per narrow range, for the one that widens it at the least cost."""
_TIME_LIMIT_S = 10.0
"""Per integer program; a range not shown wide enough in time counts as too narrow."""


@dataclass(frozen=True)
class _Quantity:
    """A withheld count or rate of one population (its index) and label."""

    population: int
    label: int
    name: str

    @property
    def dimension(self) -> Dimension:
        return "cases" if self.name == "n_cases" else "classes"


@dataclass(frozen=True)
class _Form:
    """A linear expression over the unknowns: coefficients at some indices."""

    index: NDArray[np.intp]
    coefficient: FloatArray

    def at(self, points: FloatArray) -> FloatArray:
        """Return the expression's value at each row of `points`."""
        return points[:, self.index] @ self.coefficient

    def dense(self, size: int) -> FloatArray:
        out = np.zeros(size)
        np.add.at(out, self.index, self.coefficient)
        return out


def _equal_sums(
    left: NDArray[np.integer], right: NDArray[np.integer]
) -> tuple[_Form, float, float]:
    """Return the constraint that the unknowns at `left` add up to those at `right`."""
    index = np.concatenate([left, right]).astype(np.intp)
    coefficient = np.concatenate([np.ones(left.shape[0]), -np.ones(right.shape[0])])
    return _Form(index, coefficient), 0.0, 0.0


@dataclass
class _Program:
    """What a vendor knows, as linear constraints over non-negative integer unknowns."""

    rows: list[_Form]
    lower: list[float]
    upper: list[float]
    size: int
    cap: float

    def solve(self, objective: FloatArray, *, defined: _Form | None = None) -> _Solution:
        """Minimize `objective`; `defined` adds `defined >= 1` (a rate's denominator)."""
        from scipy.optimize import Bounds, LinearConstraint, milp
        from scipy.sparse import csr_array

        rows, lower, upper = self.rows, self.lower, self.upper
        if defined is not None:
            rows, lower, upper = [*rows, defined], [*lower, 1.0], [*upper, math.inf]
        lengths = [row.index.shape[0] for row in rows]
        matrix = csr_array(
            (
                np.concatenate([row.coefficient for row in rows]),
                (
                    np.repeat(np.arange(len(rows)), lengths),
                    np.concatenate([row.index for row in rows]),
                ),
            ),
            shape=(len(rows), self.size),
        )
        constraints = LinearConstraint(matrix, lower, upper)
        bounds = Bounds(0.0, self.cap)
        options = {"time_limit": _TIME_LIMIT_S}
        # The linear relaxation first: on these tables its optimum is often already integral,
        # and then it is the integer optimum too.
        relaxed = milp(objective, constraints=constraints, bounds=bounds, options=options)
        if relaxed.status == 2:
            return _Solution(point=None, optimal=True, infeasible=True)
        if relaxed.status == 0:
            point: FloatArray = np.asarray(relaxed.x, dtype=np.float64)
            if np.abs(point - np.round(point)).max(initial=0.0) < 1e-9:
                integral: FloatArray = point.round()
                return _Solution(point=integral, optimal=True, infeasible=False)
        found = milp(
            objective,
            constraints=constraints,
            integrality=np.ones(self.size),
            bounds=bounds,
            options={**options, "mip_rel_gap": 0.0},
        )
        best: FloatArray | None = None
        if found.x is not None:
            best = np.asarray(found.x, dtype=np.float64).round()
        return _Solution(point=best, optimal=found.status == 0, infeasible=found.status == 2)


@dataclass(frozen=True)
class _Solution:
    point: FloatArray | None
    optimal: bool
    infeasible: bool


class _Pool:
    """Integer points consistent with every released number: each shows values a withheld
    number can take. Points stay valid as more is withheld (constraints are only dropped)."""

    def __init__(self, size: int) -> None:
        self.points = np.zeros((0, size))

    def copy(self) -> _Pool:
        out = _Pool(self.points.shape[1])
        out.points = self.points.copy()
        return out

    def add(self, point: FloatArray) -> None:
        self.points = np.vstack([self.points, point])


class _Audit:
    """Finds withheld counts and rates that the released numbers confine too narrowly.

    The unknowns are TP, FN, FP and TN per label of overall and of every cell of each block
    (cells known to be empty left out). A vendor knows that each block's cells add up to
    overall; that every label of a multilabel task is scored on the same cases; the size of
    every population whose size is released; TP, FN, FP and TN of every population whose
    classes are released (its class sizes and sensitivity and specificity give them exactly;
    every other count rate follows from them); that a withheld group is not empty; and that a
    table whose fairness gaps are released has no withheld group (of a known value) with the
    minimum cases or more, for it would have taken part. Each withheld count's least and
    greatest value are found by integer programming, and each rate's by Dinkelbach's method
    (a sequence of integer programs), over the same constraints an attacker would write.
    """

    def __init__(
        self,
        result: EvaluationResult,
        blocks: Sequence[_Block],
        populations: Sequence[_Population],
        minimum: int,
    ) -> None:
        self.blocks = blocks
        self.populations = populations
        self.minimum = minimum
        self.labels = max(len(populations[0].classes), 1)
        self.result = result
        total = populations[0].n_cases
        self.cap = float(total) if total is not None else 1e6
        # Unknowns: overall's, then each block's kept cells, (cell, label, count) in order.
        self.bases: list[int] = []
        self.positions: list[NDArray[np.intp]] = []
        size = 4 * self.labels
        for block in blocks:
            kept = ~block.known_zero
            position = np.full(kept.shape[0], -1, dtype=np.intp)
            position[kept] = np.arange(int(kept.sum()))
            self.bases.append(size)
            self.positions.append(position)
            size += int(kept.sum()) * 4 * self.labels
        self.size = size
        self.structure = self._structure()
        self.pool = _Pool(size)
        self.certified: set[_Quantity] = set()

    # --- expressions ---------------------------------------------------------------------

    def form(self, population: _Population, label: int, weights: Weights) -> _Form:
        kinds = [k for k in range(4) if weights[k]]
        if population.overall:
            cells = np.zeros(1, dtype=np.intp)
            base = 0
        else:
            block = self.blocks[population.block]
            cells = self.positions[population.block][population.indicator & ~block.known_zero]
            base = self.bases[population.block]
        index = np.concatenate(
            [base + (cells * self.labels + label) * 4 + k for k in kinds]
        ).astype(np.intp)
        coefficient = np.concatenate([np.full(cells.shape[0], float(weights[k])) for k in kinds])
        return _Form(index, coefficient)

    def _structure(self) -> list[tuple[_Form, float, float]]:
        """Constraints that hold whatever is released."""
        out = []
        for b, block in enumerate(self.blocks):
            cells = int((~block.known_zero).sum())
            base = self.bases[b]
            for label in range(self.labels):  # the cells add up to overall
                for k in range(4):
                    index = base + (np.arange(cells) * self.labels + label) * 4 + k
                    out.append(_equal_sums(index, np.array([label * 4 + k])))
            for label in range(1, self.labels):  # every label scores the same cases
                for cell in range(cells):
                    first = base + (cell * self.labels) * 4 + np.arange(4)
                    other = base + (cell * self.labels + label) * 4 + np.arange(4)
                    out.append(_equal_sums(other, first))
        for label in range(1, self.labels):
            out.append(_equal_sums(label * 4 + np.arange(4), np.arange(4)))
        return out

    def program(self) -> _Program:
        """Return the constraints of what is released now."""
        constraints = list(self.structure)
        for population in self.populations:
            if population.empty:
                continue
            size = self.form(population, 0, _COUNTS["n_cases"])
            if population.hidden_cases:
                constraints.append((size, 1.0, math.inf))  # shown as withheld, not empty
            else:
                assert population.n_cases is not None
                constraints.append((size, float(population.n_cases), float(population.n_cases)))
            if population.hidden("classes"):
                continue
            for label, counts in enumerate(population.confusion):
                assert counts is not None
                for name, value in zip(("tp", "fn", "fp", "tn"), counts, strict=True):
                    form = self.form(population, label, _COUNTS[name])
                    constraints.append((form, float(value), float(value)))
        constraints += self._gap_bounds()
        return _Program(
            rows=[c[0] for c in constraints],
            lower=[c[1] for c in constraints],
            upper=[c[2] for c in constraints],
            size=self.size,
            cap=self.cap,
        )

    def _gap_bounds(self) -> list[tuple[_Form, float, float]]:
        """A released gap tells that no withheld group of its table takes part in it."""
        released = _released_gaps(self.result, self.populations, self.minimum)
        tables = {tuple(g.attributes) for g in released}
        out = []
        for p in self.populations[1:]:
            assert p.table is not None
            if (
                p.hidden_cases
                and not p.empty
                and MISSING not in p.attributes.values()
                and tuple(self.result.subgroups[p.table].attributes) in tables
            ):
                out.append((self.form(p, 0, _COUNTS["n_cases"]), 0.0, float(self.minimum - 1)))
        return out

    # --- checking ------------------------------------------------------------------------

    def quantities(self) -> list[_Quantity]:
        out = []
        for i, population in enumerate(self.populations):
            if population.empty or not population.hidden("classes"):
                continue
            if population.hidden_cases:
                out.append(_Quantity(i, 0, "n_cases"))
            for label in range(self.labels):
                out += [_Quantity(i, label, name) for name in _COUNTS if name != "n_cases"]
                out += [_Quantity(i, label, name) for name in _RATES]
        return out

    def wide(self, quantity: _Quantity, program: _Program, pool: _Pool) -> bool:
        """Return whether the quantity's range is shown at least as wide as required."""
        population = self.populations[quantity.population]
        if quantity.name in _COUNTS:
            form = self.form(population, quantity.label, _COUNTS[quantity.name])
            return self._count_wide(form, program, pool)
        numerator, denominator = _RATES[quantity.name]
        return self._rate_wide(
            self.form(population, quantity.label, numerator),
            self.form(population, quantity.label, denominator),
            program,
            pool,
        )

    def _count_wide(self, form: _Form, program: _Program, pool: _Pool) -> bool:
        for sign in (-1.0, 1.0):  # the greatest value, then the least
            values = form.at(pool.points)
            if values.shape[0] and values.max() - values.min() >= MIN_COUNT_RANGE:
                return True
            found = program.solve(sign * form.dense(self.size))
            if found.point is None:
                return False
            pool.add(found.point)
        values = form.at(pool.points)
        return bool(values.max() - values.min() >= MIN_COUNT_RANGE)

    def _rate_wide(
        self, numerator: _Form, denominator: _Form, program: _Program, pool: _Pool
    ) -> bool:
        def ratios() -> FloatArray:
            den = denominator.at(pool.points)
            defined = den >= 0.5
            return numerator.at(pool.points)[defined] / den[defined]

        if ratios().shape[0] == 0:
            found = program.solve(denominator.dense(self.size), defined=denominator)
            if found.infeasible:
                return True  # never defined: the counts' ranges say whether that is known
            if found.point is None:
                return False
            pool.add(found.point)
        num, den = numerator.dense(self.size), denominator.dense(self.size)
        for sign in (1.0, -1.0):  # Dinkelbach: the greatest ratio, then the least
            while True:
                values = ratios()
                if values.max() - values.min() >= MIN_RATE_RANGE:
                    return True
                ratio = float(values.max() if sign > 0 else values.min())
                found = program.solve(-sign * (num - ratio * den), defined=denominator)
                if found.point is None:
                    return False
                pool.add(found.point)
                gain = sign * float(num @ found.point - ratio * (den @ found.point))
                if gain <= 1e-9:
                    if not found.optimal:
                        return False  # not shown in time: too narrow, to be safe
                    break
        values = ratios()
        return bool(values.max() - values.min() >= MIN_RATE_RANGE)

    def narrow(self) -> _Quantity | None:
        """Return a withheld count or rate confined too narrowly, or None."""
        program = self.program()
        for quantity in self.quantities():
            if quantity in self.certified:
                continue  # once wide, wider still as more is withheld
            if not self.wide(quantity, program, self.pool):
                return quantity
            self.certified.add(quantity)
        return None

    # --- widening ------------------------------------------------------------------------

    def _candidates(self, quantity: _Quantity) -> list[tuple[_Population, Dimension]]:
        target = self.populations[quantity.population]
        dimension = quantity.dimension
        overall = self.populations[0]
        everywhere = target.overall or overall.hidden(dimension)
        complements = sorted(
            (
                p
                for p in self.populations[1:]
                if not p.empty
                and not p.hidden(dimension)
                and (everywhere or p.block == target.block)
                and not _whole_block(p, self.blocks)
            ),
            key=_complement_order(self.populations),
        )
        out: list[tuple[_Population, Dimension]] = [(p, dimension) for p in complements]
        if dimension == "classes" and not target.hidden_cases:
            out.insert(min(len(out), _TRIALS - 2), (target, "cases"))
        if not overall.hidden(dimension):
            out.append((overall, dimension))
        return out

    def widen(self, quantity: _Quantity) -> bool:
        """Withhold what widens the quantity's range at the least cost; False if nothing is
        left to withhold."""
        candidates = self._candidates(quantity)
        if not candidates:
            candidates = [(p, "cases") for p in self.populations if not p.hidden_cases]
            if not candidates:
                return False
        trials = candidates[:_TRIALS]
        if candidates[-1] not in trials:
            trials.append(candidates[-1])  # overall, if it can still be withheld
        best: tuple[int, int] | None = None
        for number, (population, dimension) in enumerate(trials):
            saved = [(p.hidden_cases, p.hidden_classes) for p in self.populations]
            population.hide(dimension)
            _protect(self.blocks, self.populations, "cases", self.minimum)
            _protect(self.blocks, self.populations, "classes", self.minimum)
            cost = _cost(self.populations, saved)
            works = self.wide(quantity, self.program(), self.pool.copy())
            for p, (cases, classes) in zip(self.populations, saved, strict=True):
                p.hidden_cases, p.hidden_classes = cases, classes
            if works and (best is None or cost < best[0]):
                best = (cost, number)
        population, dimension = trials[0 if best is None else best[1]]
        population.hide(dimension)
        return True


def _cost(populations: Sequence[_Population], saved: Sequence[tuple[bool, bool]]) -> int:
    """What a vendor loses from `saved` to now: a population's metrics weigh ten sizes, and
    overall's weigh a hundred times a group's."""
    cost = 0
    for p, (cases, classes) in zip(populations, saved, strict=True):
        lost = (p.hidden_cases and not cases) + 10 * (p.hidden_classes and not classes)
        cost += lost * (100 if p.overall else 1)
    return cost


def _secure(
    result: EvaluationResult,
    blocks: Sequence[_Block],
    populations: Sequence[_Population],
    minimum: int,
) -> None:
    """Withhold more until every withheld count and rate has a wide enough range."""
    audit = _Audit(result, blocks, populations, minimum)
    while True:
        quantity = audit.narrow()
        if quantity is None or not audit.widen(quantity):
            return
        _protect(blocks, populations, "cases", minimum)
        _protect(blocks, populations, "classes", minimum)


# --------------------------------------------------------------------------------------------
# Withholding numbers
# --------------------------------------------------------------------------------------------


def _released_gaps(
    result: EvaluationResult, populations: Sequence[_Population], minimum: int
) -> list[FairnessGap]:
    """Return the fairness gaps the vendor view releases, given what is withheld now.

    A gap involves the groups it was taken over: those with a known value and at least the
    minimum (the rule of `validators.fairness`), and any its note names; every gap involves
    overall. Groups withheld in the input were dealt with when they were withheld.
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
    _secure(result, blocks, populations, minimum)

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

    released = {id(g) for g in _released_gaps(result, populations, minimum)}
    fairness = [
        g if id(g) in released else g.model_copy(update={"value": _withhold(g.value, reason)})
        for g in result.fairness
    ]
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
