"""Ranges: how narrowly the released numbers confine each withheld count and rate."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from validators.metrics.validation import FloatArray
from validators.results.estimates import MISSING
from validators.results.evaluation import EvaluationResult
from validators.suppression.cells import (
    Dimension,
    _Block,
    _complement_order,
    _Population,
    _protect,
    _released_gaps,
    _whole_block,
)

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
