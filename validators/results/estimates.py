"""Typed estimates: the metric names, the subgroup vocabulary and `Estimate`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from validators.vocabulary import MetricName

BinaryMetricName = MetricName
"""The name of every `Estimate` of `BinaryMetrics`, in order (a test checks the two agree)."""
BINARY_METRIC_NAMES: tuple[BinaryMetricName, ...] = get_args(BinaryMetricName)

# Subgroup vocabulary, shared by the engine (validators.evaluation), the policy and the views.
AGE_COLUMN = "age"
"""The attribute column of ages in years, banded into `AGE_BAND`."""
AGE_BAND = "age_band"
MISSING = "(missing)"
"""The level of a case whose attribute value is missing (None, NaN or blank)."""
DEFAULT_AGE_BANDS: tuple[float, ...] = (0, 18, 40, 65)
"""Band edges in years: 0-18, 18-40, 40-65, 65+ (each band includes its lower edge)."""
DEFAULT_SUBGROUP_METRICS: tuple[str, ...] = ("auroc", "sensitivity", "specificity", "ppv", "npv")
"""The metrics every group gets intervals for, and disparities of, unless a policy says."""


def canonical_attribute(name: str) -> str:
    """Return the attribute a name stands for: `age` is grouped as `age_band`."""
    return AGE_BAND if name == AGE_COLUMN else name


MAX_CURVE_POINTS = 201
"""Most points a stored ROC or decision curve may hold: enough to plot, small to store."""

EstimateStatus = Literal["ok", "partial", "undefined", "suppressed"]
IntervalSides = Literal["two", "lower", "upper"]
BootstrapUnit = Literal["case", "patient"]


class _Result(BaseModel):
    """Base of every result model: unknown keys are errors, numbers are finite, values frozen."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class Estimate(_Result):
    """One number with its interval and how it was computed (DESIGN.md, "Results").

    `status` is `ok` (the estimate is a number), `partial` (a number over only part of what it
    should cover: a macro average that had to leave out a label whose metric is undefined;
    `reason` names what was left out, and a policy does not judge it), `undefined` (the data do
    not define it: one class only, a zero denominator, or an interval that could not be formed;
    `reason` says which) or
    `suppressed` (withheld from a vendor-facing view because a group or count is too small; then
    `n` and `n_cases` are withheld too, as they are themselves small counts). `reason` is required
    unless the status is `ok`; on an `ok` estimate it may carry a caveat.

    `n` counts the units the interval was computed over: patients where the bootstrap resamples
    patients, cases otherwise. `n_cases` always counts cases. `replicates_undefined` counts the
    bootstrap replicates in which the metric was undefined and that the percentile interval left
    out (0 for other methods).

    `sides` says what the interval is: `two` (lower and upper bounds, each at (1 - level) / 2),
    `upper` (a one-sided upper confidence bound at `level`: no lower bound is claimed), or
    `lower` (a one-sided lower bound). A bound that is infinite (a likelihood ratio whose
    replicates reach +inf, a calibration slope under complete separation) is never stored as a
    number: its value is None and `lower_unbounded` / `upper_unbounded` is True. `bound(side)`
    reads a bound as a float, infinite where unbounded.
    """

    estimate: float | None
    lower: float | None
    upper: float | None
    level: float = Field(gt=0.0, lt=1.0)
    n: int | None = Field(ge=0)
    n_cases: int | None = Field(ge=0)
    method: str
    status: EstimateStatus
    reason: str | None
    replicates_undefined: int = Field(default=0, ge=0)
    sides: IntervalSides = "two"
    lower_unbounded: bool = False
    upper_unbounded: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for side, value, unbounded in (
            ("lower", self.lower, self.lower_unbounded),
            ("upper", self.upper, self.upper_unbounded),
        ):
            if unbounded and value is not None:
                raise ValueError(f"an unbounded {side} side carries no number; got {value}")
        has_lower = self.lower is not None or self.lower_unbounded
        has_upper = self.upper is not None or self.upper_unbounded
        if self.sides == "two" and has_lower != has_upper:
            raise ValueError("a two-sided interval needs both bounds, or neither")
        if self.sides == "upper" and (has_lower or not has_upper):
            raise ValueError("a one-sided upper bound has an upper side and no lower one")
        if self.sides == "lower" and (has_upper or not has_lower):
            raise ValueError("a one-sided lower bound has a lower side and no upper one")
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise ValueError(f"lower bound {self.lower} is above upper bound {self.upper}")
        if self.status in ("ok", "partial"):
            if self.estimate is None:
                raise ValueError(
                    f"an {self.status} estimate needs a number; use status 'undefined' instead"
                )
            if self.n is None or self.n_cases is None:
                raise ValueError(f"an {self.status} estimate needs its n and n_cases")
            if self.status == "partial" and not self.reason:
                raise ValueError("a partial estimate needs the reason: what it left out")
            return self
        if self.estimate is not None or has_lower or has_upper:
            raise ValueError(f"a {self.status} estimate carries no numbers")
        if not self.reason:
            raise ValueError(f"a {self.status} estimate needs the reason")
        if self.status == "undefined" and (self.n is None or self.n_cases is None):
            raise ValueError("an undefined estimate still reports n and n_cases")
        if self.status == "suppressed" and (self.n is not None or self.n_cases is not None):
            raise ValueError("a suppressed estimate withholds n and n_cases")
        return self

    @classmethod
    def ok(
        cls,
        estimate: float,
        *,
        lower: float | None = None,
        upper: float | None = None,
        level: float,
        n: int,
        n_cases: int | None = None,
        method: str,
        replicates_undefined: int = 0,
        note: str | None = None,
        sides: IntervalSides = "two",
        lower_unbounded: bool = False,
        upper_unbounded: bool = False,
    ) -> Estimate:
        """Return a defined estimate; without bounds it is a point estimate only."""
        return cls(
            estimate=estimate,
            lower=lower,
            upper=upper,
            level=level,
            n=n,
            n_cases=n if n_cases is None else n_cases,
            method=method,
            status="ok",
            reason=note,
            replicates_undefined=replicates_undefined,
            sides=sides,
            lower_unbounded=lower_unbounded,
            upper_unbounded=upper_unbounded,
        )

    @classmethod
    def undefined(
        cls,
        reason: str,
        *,
        n: int,
        n_cases: int | None = None,
        level: float,
        method: str,
        replicates_undefined: int = 0,
    ) -> Estimate:
        """Return an estimate the data do not define, with the reason."""
        return cls(
            estimate=None,
            lower=None,
            upper=None,
            level=level,
            n=n,
            n_cases=n if n_cases is None else n_cases,
            method=method,
            status="undefined",
            reason=reason,
            replicates_undefined=replicates_undefined,
        )

    @classmethod
    def suppressed(
        cls,
        reason: str = "fewer cases than the policy's minimum group size",
        *,
        level: float,
        method: str,
    ) -> Estimate:
        """Return an estimate withheld from a vendor-facing view: no numbers, no counts."""
        return cls(
            estimate=None,
            lower=None,
            upper=None,
            level=level,
            n=None,
            n_cases=None,
            method=method,
            status="suppressed",
            reason=reason,
        )

    @property
    def has_interval(self) -> bool:
        """Whether the estimate reports an interval (two-sided or one-sided)."""
        return (
            self.lower is not None
            or self.upper is not None
            or self.lower_unbounded
            or self.upper_unbounded
        )

    def bound(self, side: Literal["lower", "upper"]) -> float | None:
        """Return the lower or upper bound as a float (+-inf where unbounded), None if absent."""
        if side == "lower":
            return -math.inf if self.lower_unbounded else self.lower
        return math.inf if self.upper_unbounded else self.upper

    def suppress(
        self, reason: str = "fewer cases than the policy's minimum group size"
    ) -> Estimate:
        """Return this estimate withheld: same level and method, no numbers, no counts."""
        return Estimate.suppressed(reason, level=self.level, method=self.method)


def _check_lengths(name: str, **columns: Sequence[object]) -> None:
    lengths = {key: len(values) for key, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{name} columns must have one length each; got {lengths}")
    longest = max(lengths.values(), default=0)
    if longest > MAX_CURVE_POINTS:
        raise ValueError(f"{name} holds {longest} points; at most {MAX_CURVE_POINTS} are stored")
