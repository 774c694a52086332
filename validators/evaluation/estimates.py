"""An `Estimate` from a point value and its interval."""

from __future__ import annotations

import math

import numpy as np

from validators.metrics.validation import MetricBatch, MetricValue
from validators.resampling.percentile import Interval
from validators.results.estimates import Estimate


def _single(value: MetricValue) -> MetricBatch:
    if value.value is None:
        return MetricBatch.undefined(1, value.reason or "undefined")
    return MetricBatch(np.array([value.value]), np.zeros(1, dtype=np.int16), ())


def make_estimate(
    value: MetricValue,
    interval: Interval | None,
    *,
    level: float,
    n: int,
    n_cases: int,
    method: str,
    note: str | None = None,
) -> Estimate:
    """Return an Estimate; ok only when both the value and its requested interval exist."""
    if value.value is None:
        return Estimate.undefined(
            value.reason or "undefined", n=n, n_cases=n_cases, level=level, method=method
        )
    if interval is None:
        return Estimate.ok(value.value, level=level, n=n, n_cases=n_cases, method=method)
    if interval.lower is None or interval.upper is None:
        return Estimate.undefined(
            interval.reason or "no interval",
            n=n,
            n_cases=n_cases,
            level=level,
            method=method,
            replicates_undefined=interval.replicates_undefined,
        )
    if interval.lower == math.inf or interval.upper == -math.inf:
        # Nearly every replicate is infinite while the estimate is finite: no finite bound.
        return Estimate.undefined(
            "infinite in nearly every bootstrap replicate although finite on the data: "
            "the interval has no finite bound on either side",
            n=n,
            n_cases=n_cases,
            level=level,
            method=method,
            replicates_undefined=interval.replicates_undefined,
        )
    if interval.lower == interval.upper and not interval.determined:
        # A method that collapses to a point (every replicate alike, as for an AUROC of 1 in
        # a small sample; DeLong's variance of 0 there) shows no uncertainty it cannot see.
        # No interval is reported rather than one of no width.
        collapsed = (
            f"the {method} interval has no width ({interval.lower:g} to {interval.upper:g}): "
            "every resample gives the same value, which does not make it certain, so no "
            "interval is reported"
        )
        return Estimate.ok(
            value.value,
            level=level,
            n=n,
            n_cases=n_cases,
            method=method,
            replicates_undefined=interval.replicates_undefined,
            note=collapsed if note is None else f"{note}; {collapsed}",
        )
    lower_unbounded = interval.lower == -math.inf
    upper_unbounded = interval.upper == math.inf
    if lower_unbounded or upper_unbounded:
        side = "upper" if upper_unbounded else "lower"
        infinite = f"infinite in some bootstrap replicates: the {side} side is unbounded"
        note = infinite if note is None else f"{note}; {infinite}"
    return Estimate.ok(
        value.value,
        lower=None if lower_unbounded else interval.lower,
        upper=None if upper_unbounded else interval.upper,
        lower_unbounded=lower_unbounded,
        upper_unbounded=upper_unbounded,
        level=level,
        n=n,
        n_cases=n_cases,
        method=method,
        replicates_undefined=interval.replicates_undefined,
        note=note,
    )
