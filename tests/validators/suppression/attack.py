"""The attackers of the vendor view: what a vendor could derive from its JSON alone.

`attack` writes every released count as a linear equation over the cells of the full
cross-classification of the attributes (non-negative unknowns: positive and negative cases per
cell) and asks a linear program for the smallest and largest value each withheld count can take;
a count is recovered when the two meet. `IntegerAttack` takes integer TP, FN, FP, TN per cell and
label, writes every released rate, disparity and fairness gap as constraints too, and asks integer
programs for the range of every withheld count and rate. The attackers know nothing of how
`vendor_view` chose what to withhold.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import Bounds, LinearConstraint, linprog, milp
from scipy.sparse import csr_array, vstack

from validators.results import (
    MISSING,
    EvaluationResult,
)
from validators.suppression import vendor_view

ObjectArray = NDArray[np.object_]
Json = dict[str, Any]


# --- the attacker -----------------------------------------------------------------------------


def attack(vendor: Json) -> list[str]:
    """Return the withheld counts that the released numbers pin down (should be none)."""
    tables = vendor["subgroups"]
    names = list(dict.fromkeys(a for t in tables for a in t["attributes"]))
    levels = {
        a: sorted({g["attributes"][a] for t in tables for g in t["groups"] if a in g["attributes"]})
        for a in names
    }
    cells = list(product(*(levels[a] for a in names)))
    k = len(cells)

    def member(attributes: dict[str, str]) -> NDArray[np.float64]:
        return np.array(
            [all(cell[names.index(a)] == v for a, v in attributes.items()) for cell in cells],
            dtype=np.float64,
        )

    # Unknowns: positives per cell, then negatives per cell.
    def positives(m: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.concatenate([m, np.zeros(k)])

    def negatives(m: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.concatenate([np.zeros(k), m])

    rows: list[NDArray[np.float64]] = []
    values: list[float] = []
    targets: list[tuple[str, NDArray[np.float64]]] = []

    def learn(label: str, m: NDArray[np.float64], metrics: Json | None, n: int | None) -> None:
        n_pos = None if metrics is None else metrics["n_positive"]
        n_neg = None if metrics is None else metrics["n_negative"]
        for what, row, known in (
            ("n_cases", positives(m) + negatives(m), n),
            ("n_positive", positives(m), n_pos),
            ("n_negative", negatives(m), n_neg),
        ):
            if known is None:
                targets.append((f"{label}: {what}", row))
            else:
                rows.append(row)
                values.append(float(known))

    everyone = np.ones(k)
    learn("overall", everyone, vendor["overall"], vendor["overall"]["n_cases"])
    for table in tables:
        for g in table["groups"]:
            m = member(g["attributes"])
            if g["status"] == "empty":
                rows += [positives(m), negatives(m)]
                values += [0.0, 0.0]
            else:
                learn(g["label"], m, g["metrics"], g["n_cases"])
    a_eq = np.array(rows) if rows else None
    b_eq = np.array(values) if rows else None
    recovered = []
    for label, row in targets:
        low = linprog(row, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
        high = linprog(-row, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
        assert low.status == 0, "the released numbers must be consistent"
        if high.status == 0 and -high.fun - low.fun < 0.5:
            recovered.append(f"{label} = {low.fun:.0f}")
    return recovered


def vendor_json(result: EvaluationResult) -> Json:
    loaded: Json = json.loads(vendor_view(result).model_dump_json())
    return loaded


# --- the integer-programming attacker: every count a vendor could derive ------------------------
#
# Per cell of the full cross-classification and per label, the attacker's unknowns are the
# integers TP, FN, FP, TN. Every released count is a sum of them; every released rate of a
# population, r = numerator / denominator, is the linear constraint numerator = r x denominator
# (to a relative 1e-6, the float's rounding being far smaller); an undefined rate's reason names
# the denominator that is 0; a released disparity gives one side's rate from the other's; a
# released fairness gap says which groups took part. The attacker then asks an integer program
# (scipy's milp, HiGHS) for the least and greatest value of every withheld count, and
# Dinkelbach's method (a few integer programs) for the least and greatest withheld rate.

GUARANTEED_COUNT_RANGE = 3
GUARANTEED_RATE_RANGE = 0.1
ATTACK_TOLERANCE = 1e-6
ATTACK_CAP = 100_000  # every count is below it: keeps every program bounded

CONFUSION: dict[str, tuple[int, int, int, int]] = {  # over TP, FN, FP, TN
    "n_cases": (1, 1, 1, 1),
    "n_positive": (1, 1, 0, 0),
    "n_negative": (0, 0, 1, 1),
    "tp": (1, 0, 0, 0),
    "fn": (0, 1, 0, 0),
    "fp": (0, 0, 1, 0),
    "tn": (0, 0, 0, 1),
    "called_positive": (1, 0, 1, 0),
    "called_negative": (0, 1, 0, 1),
    "tp_twice": (2, 0, 0, 0),
    "f1_denominator": (2, 1, 1, 0),
}
RATES: dict[str, tuple[str, str]] = {  # numerator, denominator
    "prevalence": ("n_positive", "n_cases"),
    "sensitivity": ("tp", "n_positive"),
    "specificity": ("tn", "n_negative"),
    "ppv": ("tp", "called_positive"),
    "npv": ("tn", "called_negative"),
    "f1": ("tp_twice", "f1_denominator"),
}
ZERO_DENOMINATOR = {  # a marker of an undefined estimate's reason: the count that is 0
    "(TP + FN = 0)": "n_positive",
    "(TN + FP = 0)": "n_negative",
    "(TP + FP = 0)": "called_positive",
    "(TN + FN = 0)": "called_negative",
    "no positive cases and none called positive": "f1_denominator",
    "specificity is 1, so LR+": "fp",
    "specificity is 0, so LR-": "tn",
}
WITHHELD_COUNTS = ("n_positive", "n_negative", "tp", "fn", "fp", "tn")
WITHHELD_RATES = ("sensitivity", "specificity", "ppv", "npv")


@dataclass(frozen=True)
class Range:
    """The least and greatest value a withheld number can take, given the released ones."""

    name: str
    low: float
    high: float
    rate: bool

    @property
    def narrow(self) -> bool:
        least = GUARANTEED_RATE_RANGE if self.rate else GUARANTEED_COUNT_RANGE
        return self.high - self.low < least - 1e-9

    def __str__(self) -> str:
        return f"{self.name} in [{self.low:.4g}, {self.high:.4g}]"


class IntegerAttack:
    """The released numbers of a vendor JSON as integer constraints, and what they confine."""

    def __init__(self, vendor: Json, *, minimum: int = 11) -> None:
        self.vendor = vendor
        self.minimum = minimum
        tables = vendor["subgroups"]
        self.names = list(dict.fromkeys(a for t in tables for a in t["attributes"]))
        levels = {
            a: sorted(
                {g["attributes"][a] for t in tables for g in t["groups"] if a in g["attributes"]}
            )
            for a in self.names
        }
        self.cells = list(product(*(levels[a] for a in self.names)))
        self.multilabel = vendor["task"] == "multilabel"
        overall = vendor["overall"]
        self.labels: list[str | None] = list(overall["labels"]) if self.multilabel else [None]
        self.size = len(self.labels) * len(self.cells) * 4
        self.rows: list[NDArray[np.float64]] = []
        self.lower: list[float] = []
        self.upper: list[float] = []
        self.unmodelled: list[str] = []  # released numbers the attack cannot write down
        self.known: dict[tuple[str, int, str], float] = {}  # (population, label, rate): value
        self.masks = {"overall": np.ones(len(self.cells))}
        self.groups = {g["label"]: g for t in tables for g in t["groups"]}
        for key, group in self.groups.items():
            self.masks[key] = np.array(
                [
                    all(cell[self.names.index(a)] == v for a, v in group["attributes"].items())
                    for cell in self.cells
                ],
                dtype=np.float64,
            )
        self.points: list[NDArray[np.float64]] = []
        self.learn()
        self.matrix = csr_array(np.array(self.rows))

    # --- what is released ----------------------------------------------------------------

    def form(self, population: str, label: int, count: str) -> NDArray[np.float64]:
        out = np.zeros((len(self.labels), len(self.cells), 4))
        out[label] = np.outer(self.masks[population], CONFUSION[count])
        return out.ravel()

    def add(self, row: NDArray[np.float64], low: float, high: float) -> None:
        self.rows.append(row)
        self.lower.append(low)
        self.upper.append(high)

    def ratio(
        self, numerator: NDArray[np.float64], denominator: NDArray[np.float64], value: float
    ) -> None:
        self.add(numerator - (value + ATTACK_TOLERANCE) * denominator, -np.inf, 0.0)
        self.add(numerator - (value - ATTACK_TOLERANCE) * denominator, 0.0, np.inf)

    def rate(self, population: str, label: int, name: str, value: float) -> None:
        numerator, denominator = RATES[name]
        self.ratio(
            self.form(population, label, numerator),
            self.form(population, label, denominator),
            value,
        )
        self.known[population, label, name] = value

    def zero(self, population: str, label: int, reason: str) -> None:
        for marker, count in ZERO_DENOMINATOR.items():
            if marker in reason:
                self.add(self.form(population, label, count), 0.0, 0.0)

    def metrics(self, population: str, label: int, metrics: Json) -> None:
        sizes = {k: metrics[k] for k in ("n_cases", "n_positive", "n_negative")}
        for count, value in sizes.items():
            if value is not None:
                self.add(self.form(population, label, count), value, value)
        for name, estimate in metrics.items():
            if not isinstance(estimate, dict) or "status" not in estimate:
                continue
            if estimate["n_cases"] is not None:  # the cases it was computed over
                size = self.form(population, label, "n_cases")
                self.add(size, estimate["n_cases"], estimate["n_cases"])
            if estimate["status"] == "undefined":
                self.zero(population, label, estimate["reason"])
            elif estimate["status"] == "ok" and name in RATES:
                self.rate(population, label, name, estimate["estimate"])
            elif estimate["status"] == "ok" and name in (
                "balanced_accuracy",
                "lr_positive",
                "lr_negative",
            ):
                self.both_classes(population, label, name, estimate["estimate"], sizes)

    def both_classes(
        self, population: str, label: int, name: str, value: float, sizes: Json
    ) -> None:
        """Rates of both classes are linear once both class sizes are known."""
        p, n = sizes["n_positive"], sizes["n_negative"]
        if p is None or n is None:
            self.unmodelled.append(f"{population}: {name}")
            return
        tp, fn, fp, tn = (self.form(population, label, k) for k in ("tp", "fn", "fp", "tn"))
        if name == "balanced_accuracy":  # (TP / P + TN / N) / 2
            row, target = n * tp + p * tn, 2 * value * p * n
        elif name == "lr_positive":  # (TP / P) / (FP / N)
            row, target = n * tp - value * p * fp, 0.0
        else:  # (FN / P) / (TN / N)
            row, target = n * fn - value * p * tn, 0.0
        slack = ATTACK_TOLERANCE * 2 * p * n * max(value, 1.0)
        self.add(row, target - slack, target + slack)

    def pooled(self, population: str, averaged: Json) -> None:
        """Micro averages pool the labels' counts: linear in them too."""
        for name in ("sensitivity", "specificity", "ppv", "npv", "f1"):
            estimate = averaged[name]
            if estimate["status"] != "ok":
                continue
            numerator, denominator = RATES[name]
            labels = range(len(self.labels))
            self.ratio(
                np.sum([self.form(population, k, numerator) for k in labels], axis=0),
                np.sum([self.form(population, k, denominator) for k in labels], axis=0),
                estimate["estimate"],
            )

    def learn(self) -> None:
        overall = self.vendor["overall"]
        if self.multilabel:
            for label, entry in enumerate(overall["per_label"]):
                self.metrics("overall", label, entry["metrics"])
            self.pooled("overall", overall["micro"])
            for label in range(1, len(self.labels)):  # every label scores the same cases
                for cell in range(len(self.cells)):
                    row = np.zeros((len(self.labels), len(self.cells), 4))
                    row[label, cell], row[0, cell] = 1.0, -1.0
                    self.add(row.ravel(), 0.0, 0.0)
        else:
            self.metrics("overall", 0, overall)
        for key, group in self.groups.items():
            size = self.form(key, 0, "n_cases")
            if group["status"] == "empty":
                self.add(size, 0.0, 0.0)
                continue
            if group["status"] == "suppressed":
                self.add(size, 1.0, np.inf)  # withheld, so not empty
            if group["n_cases"] is not None:
                self.add(size, group["n_cases"], group["n_cases"])
            metrics = group["metrics"]
            if metrics is not None and self.multilabel:
                for label, entry in enumerate(metrics["per_label"]):
                    self.metrics(key, label, entry["metrics"])
                self.pooled(key, metrics["micro"])
            elif metrics is not None:
                self.metrics(key, 0, metrics)
        for _ in range(2):  # a rate learned from one disparity may give another's side
            for disparity in self.vendor["disparities"]:
                self.disparity(disparity)
        for gap in self.vendor["fairness"]:
            self.gap(gap)

    def label_of(self, name: str | None) -> int:
        return 0 if name is None else self.labels.index(name)

    def disparity(self, d: Json) -> None:
        value, metric, label = d["value"], d["metric"], self.label_of(d["label"])
        if value["status"] == "undefined":
            found = re.match(r"\w+ is undefined in (.+?): (.*)$", value["reason"])
            if found:
                self.zero(found.group(1), label, found.group(2))
            found = re.match(r"\w+ is 0 in (.+?), so", value["reason"])
            if found and metric in RATES:
                self.rate(found.group(1), label, metric, 0.0)
            return
        if value["status"] != "ok" or metric not in RATES:
            return
        group, reference, x = d["group"], d["reference"], value["estimate"]
        g, r = self.known.get((group, label, metric)), self.known.get((reference, label, metric))
        difference = d["kind"] == "difference"
        if g is None and r is not None:
            self.rate(group, label, metric, r + x if difference else r * x)
        elif r is None and g is not None and (difference or x != 0):
            self.rate(reference, label, metric, g - x if difference else g / x)
        elif g is None and r is None:
            self.unmodelled.append(f"{metric} of {group} against {reference}")

    def gap(self, gap: Json) -> None:
        """A released gap is over the groups with a known value, at least the minimum cases and
        a defined rate (its note names them): a withheld group in its table has fewer cases,
        and a released one left out has no positive case (equal opportunity)."""
        value, label = gap["value"], self.label_of(gap["label"])
        if value["status"] == "suppressed":
            return
        groups = [
            g
            for t in self.vendor["subgroups"]
            if t["attributes"] == gap["attributes"]
            for g in t["groups"]
            if MISSING not in g["attributes"].values() and g["status"] != "empty"
        ]
        reason = value["reason"] or ""
        named = reason.split(": ", 1)[1].split(", ") if reason.startswith("over ") else []
        for g in groups:
            if g["status"] == "suppressed":
                self.add(self.form(g["label"], 0, "n_cases"), 0.0, self.minimum - 1)
            elif g["label"] in named:
                if not self.released(g, label):
                    self.unmodelled.append(f"{gap['name']} over {g['label']}")
            elif (
                value["status"] == "ok"
                and g["n_cases"] >= self.minimum
                and gap["name"] == "equal_opportunity_difference"
            ):
                self.add(self.form(g["label"], label, "n_positive"), 0.0, 0.0)

    def released(self, group: Json, label: int) -> bool:
        metrics = group["metrics"]
        if metrics is None:
            return False
        metrics = metrics["per_label"][label]["metrics"] if self.multilabel else metrics
        return metrics["n_positive"] is not None

    # --- what it confines ---------------------------------------------------------------

    def solve(
        self, objective: NDArray[np.float64], defined: NDArray[np.float64] | None = None
    ) -> NDArray[np.float64] | None:
        """Minimize over the integer points consistent with the released numbers (and with
        `defined` >= 1: a rate's denominator); None when there is none."""
        matrix, lower, upper = self.matrix, self.lower, self.upper
        if defined is not None:
            matrix = vstack([matrix, csr_array(defined[None, :])])
            lower, upper = [*lower, 1.0], [*upper, np.inf]
        result = milp(
            objective,
            constraints=LinearConstraint(matrix, lower, upper),
            integrality=np.ones(self.size),
            bounds=Bounds(0, ATTACK_CAP),
            options={"mip_rel_gap": 0.0},
        )
        if result.status == 2:
            return None
        assert result.status == 0, result.message
        point = np.asarray(result.x, dtype=np.float64).round()
        self.points.append(point)
        return point

    def count_range(self, name: str, form: NDArray[np.float64], *, exact: bool) -> Range:
        """Greatest then least value; unless exact, stop once the points found are far apart."""
        for sign in (-1.0, 1.0):
            values = np.array(self.points) @ form if self.points else np.zeros(0)
            if not exact and values.size and values.max() - values.min() >= GUARANTEED_COUNT_RANGE:
                break
            assert self.solve(sign * form) is not None, "the released numbers must be consistent"
        values = np.array(self.points) @ form
        return Range(name, float(values.min()), float(values.max()), rate=False)

    def rate_range(
        self,
        name: str,
        numerator: NDArray[np.float64],
        denominator: NDArray[np.float64],
        *,
        exact: bool,
    ) -> Range | None:
        """Dinkelbach's method: maximize numerator - q x denominator at the best ratio q so far
        until no point beats it (then the least, alike); None if never defined."""

        def ratios() -> NDArray[np.float64]:
            points = np.array(self.points)
            den = points @ denominator if self.points else np.zeros(0)
            return (points @ numerator)[den > 0.5] / den[den > 0.5] if self.points else den

        if ratios().size == 0 and self.solve(denominator, denominator) is None:
            return None
        for sign in (1.0, -1.0):
            while True:
                values = ratios()
                if not exact and values.max() - values.min() >= GUARANTEED_RATE_RANGE:
                    break
                q = float(values.max() if sign > 0 else values.min())
                point = self.solve(-sign * (numerator - q * denominator), denominator)
                assert point is not None
                if sign * float(point @ numerator - q * (point @ denominator)) <= 1e-9:
                    break
        values = ratios()
        return Range(name, float(values.min()), float(values.max()), rate=True)

    def withheld(self) -> list[tuple[str, bool, list[int]]]:
        """Each population with withheld numbers: (label, size withheld, labels withheld)."""
        out = []
        overall = self.vendor["overall"]
        per_label = [e["metrics"] for e in overall["per_label"]] if self.multilabel else [overall]
        hidden = [k for k, m in enumerate(per_label) if m["n_positive"] is None]
        if hidden:
            out.append(("overall", per_label[0]["n_cases"] is None, hidden))
        for key, group in self.groups.items():
            if group["status"] == "suppressed":
                out.append((key, True, list(range(len(self.labels)))))
            elif group["status"] == "ok":
                hidden = [k for k in range(len(self.labels)) if not self.released(group, k)]
                if hidden:
                    out.append((key, False, hidden))
        return out

    def ranges(self, *, exact: bool = False) -> list[Range]:
        """The range of every withheld count and rate (exact: the true least and greatest;
        otherwise exact only where narrower than the guarantee)."""
        out = []
        for key, size, labels in self.withheld():
            if size:
                out.append(
                    self.count_range(f"{key}: n_cases", self.form(key, 0, "n_cases"), exact=exact)
                )
            for label in labels:
                name = key if not self.multilabel else f"{key} [{self.labels[label]}]"
                for count in WITHHELD_COUNTS:
                    form = self.form(key, label, count)
                    out.append(self.count_range(f"{name}: {count}", form, exact=exact))
                for rate in WITHHELD_RATES:
                    numerator, denominator = RATES[rate]
                    found = self.rate_range(
                        f"{name}: {rate}",
                        self.form(key, label, numerator),
                        self.form(key, label, denominator),
                        exact=exact,
                    )
                    if found is not None:
                        out.append(found)
        return out


def narrow_ranges(vendor: Json, *, exact: bool = False) -> list[str]:
    """Return every withheld count or rate the released numbers confine too narrowly."""
    attack = IntegerAttack(vendor)
    assert attack.unmodelled == [], "every released number is written down"
    return [str(r) for r in attack.ranges(exact=exact) if r.narrow]
