"""Percentile and Wilson intervals."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from validators.metrics.validation import FloatArray, check_level
from validators.resampling.intervals import wilson_bounds, z_quantile

# --------------------------------------------------------------------------------------------
# Intervals
# --------------------------------------------------------------------------------------------


class Interval(NamedTuple):
    """Bounds of an interval, or None with the reason; undefined bootstrap replicates skipped.

    `determined` says that the data fix the value exactly (a disparity between two sides made
    of the same cases), so an interval of no width is the truth, not a method's collapse.
    """

    lower: float | None
    upper: float | None
    replicates_undefined: int = 0
    reason: str | None = None
    determined: bool = False


def percentile_interval(
    values: ArrayLike, level: float = 0.95, *, max_undefined_fraction: float = 0.5
) -> Interval:
    """Return the percentile bootstrap interval of replicate values (NaN = undefined replicate).

    Undefined replicates are left out and counted; when more than `max_undefined_fraction` of
    them are undefined there is no interval. Quantiles use numpy's default (linear) rule.
    An infinite replicate (+inf or -inf) is a value, never left out: a bound whose quantile
    reaches it is infinite (`Interval` carries it as `math.inf`; `make_estimate` stores it as
    an unbounded side).
    """
    check_level(level)
    replicate_values = np.asarray(values, dtype=np.float64)
    defined = replicate_values[~np.isnan(replicate_values)]
    undefined = int(replicate_values.shape[0] - defined.shape[0])
    if replicate_values.shape[0] == 0:
        return Interval(None, None, 0, "no bootstrap replicates")
    if defined.shape[0] == 0 or undefined > max_undefined_fraction * replicate_values.shape[0]:
        return Interval(
            None,
            None,
            undefined,
            f"undefined in {undefined} of {replicate_values.shape[0]} bootstrap replicates "
            f"(more than {max_undefined_fraction:.0%}): too few cases to estimate its uncertainty",
        )
    # Levels are decimals (0.95, 0.9): round away the binary error of 1 - level.
    alpha = round((1.0 - level) / 2.0, 12)
    lower, upper = _quantiles(np.sort(defined), alpha)
    return Interval(lower, upper, undefined, None)


def _quantiles(ordered: FloatArray, alpha: float) -> tuple[float, float]:
    """Return the alpha and 1 - alpha quantiles of sorted values (numpy's linear rule).

    Where interpolation would touch an infinite value (inf - inf has no meaning, and a finite
    number between a value and infinity is no bound), the lower quantile takes its lower
    neighbour and the upper quantile its upper one: the interval only widens, to infinity.
    """
    if np.isfinite(ordered[[0, -1]]).all():
        lower, upper = np.quantile(ordered, [alpha, 1.0 - alpha])
        return float(lower), float(upper)
    out = []
    for q, take_upper in ((alpha, False), (1.0 - alpha, True)):
        position = (ordered.shape[0] - 1) * q
        below = math.floor(position)
        above = min(below + 1, ordered.shape[0] - 1)
        a, b = float(ordered[below]), float(ordered[above])
        if position == below:
            out.append(a)
        elif math.isinf(a) or math.isinf(b):
            out.append(b if take_upper else a)
        else:
            out.append(a + (position - below) * (b - a))
    return out[0], out[1]


def wilson_interval(successes: float, n: float, level: float = 0.95) -> Interval:
    """Return the Wilson score interval of a proportion successes / n (Wilson 1927).

    (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n); for 8/10 at 95%: [0.4902, 0.9433].
    """
    z = z_quantile(level)
    if n <= 0:
        return Interval(None, None, 0, "no cases in the denominator")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie between 0 and n = {n}; got {successes}")
    lower, upper = wilson_bounds(successes / n, n, z)
    return Interval(float(lower), float(upper))
