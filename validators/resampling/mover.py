"""MOVER: differences and ratios of correlated proportions, and group-versus-overall."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from validators.metrics.validation import FloatArray

# --------------------------------------------------------------------------------------------
# MOVER: differences and ratios of correlated proportions
# --------------------------------------------------------------------------------------------


class MoverInterval(NamedTuple):
    """A difference or ratio of two proportions with its MOVER bounds (arrays, broadcast)."""

    estimate: FloatArray
    lower: FloatArray
    upper: FloatArray


def _correlation(correlation: ArrayLike) -> FloatArray:
    """Return r clipped to [-1, 1], NaN (undefined, e.g. a constant replicate) as 0."""
    r = np.asarray(correlation, dtype=np.float64)
    return np.clip(np.where(np.isnan(r), 0.0, r), -1.0, 1.0)


def mover_difference(
    p1: ArrayLike,
    lower1: ArrayLike,
    upper1: ArrayLike,
    p2: ArrayLike,
    lower2: ArrayLike,
    upper2: ArrayLike,
    correlation: ArrayLike = 0.0,
) -> MoverInterval:
    """Return p1 - p2 with its MOVER interval from each proportion's interval (Zou & Donner 2008).

    L = d - sqrt((p1-l1)^2 + (u2-p2)^2 - 2r (p1-l1)(u2-p2)),
    U = d + sqrt((u1-p1)^2 + (p2-l2)^2 - 2r (u1-p1)(p2-l2)).
    With r = 0 and Wilson inputs this is Newcombe's (1998) hybrid score interval (his method 10);
    r is the correlation of the two estimates (for a group against the whole population, or two
    groups of the same patients, from the paired bootstrap), clipped to [-1, 1], NaN taken as 0.
    """
    a1, l1, u1 = (np.asarray(x, dtype=np.float64) for x in (p1, lower1, upper1))
    a2, l2, u2 = (np.asarray(x, dtype=np.float64) for x in (p2, lower2, upper2))
    r = _correlation(correlation)
    d = a1 - a2
    below1, above1 = a1 - l1, u1 - a1
    below2, above2 = a2 - l2, u2 - a2
    # With r = 1 and equal margins the radicand is 0 up to rounding; never take sqrt of -1e-18.
    low = np.maximum(below1**2 + above2**2 - 2.0 * r * below1 * above2, 0.0)
    high = np.maximum(above1**2 + below2**2 - 2.0 * r * above1 * below2, 0.0)
    return MoverInterval(
        estimate=d,
        lower=np.maximum(d - np.sqrt(low), -1.0),
        upper=np.minimum(d + np.sqrt(high), 1.0),
    )


def mover_ratio(
    p1: ArrayLike,
    lower1: ArrayLike,
    upper1: ArrayLike,
    p2: ArrayLike,
    lower2: ArrayLike,
    upper2: ArrayLike,
    correlation: ArrayLike = 0.0,
) -> MoverInterval:
    """Return p1 / p2 with its MOVER interval on the log scale (bounds never NaN).

    log L = log p1 - log p2 - sqrt((log p1 - log l1)^2 + (log u2 - log p2)^2 - 2r (..)(..)),
    log U = log p1 - log p2 + sqrt((log u1 - log p1)^2 + (log p2 - log l2)^2 - 2r (..)(..)).
    At the edges the bounds are the formula's limits: l1 = 0 gives L = 0; p1 = 0 gives
    U = (u1 / p2)(l2 / p2)^r; l2 = 0 (so p2 = 0) gives U = inf, an unbounded upper side the
    caller must flag, and p2 = 0 < p1 gives L = (p1 / u2)(p1 / l1)^r. The estimate is p1 / p2:
    inf when only p2 is 0, and NaN (undefined) when both are.
    """
    arrays = [np.asarray(x, dtype=np.float64) for x in (p1, lower1, upper1, p2, lower2, upper2)]
    r = _correlation(correlation)
    a1, l1, u1, a2, l2, u2, r = np.broadcast_arrays(*arrays, r)
    with np.errstate(divide="ignore", invalid="ignore"):
        log = np.log
        below1, above1 = log(a1) - log(l1), log(u1) - log(a1)
        below2, above2 = log(a2) - log(l2), log(u2) - log(a2)
        centre = log(a1) - log(a2)
        low = np.maximum(below1**2 + above2**2 - 2.0 * r * below1 * above2, 0.0)
        high = np.maximum(above1**2 + below2**2 - 2.0 * r * above1 * below2, 0.0)
        lower = np.exp(centre - np.sqrt(low))
        upper = np.exp(centre + np.sqrt(high))
        # The limits of the same formula as a proportion or a lower bound reaches 0.
        lower_no_p2 = (a1 / u2) * np.exp(r * below1)
        upper_no_p1 = (u1 / a2) * np.exp(-r * below2)
        estimate = a1 / a2
    lower = np.where(a2 <= 0.0, np.where(l1 > 0.0, lower_no_p2, 0.0), lower)
    lower = np.where((l1 <= 0.0) | (a1 <= 0.0), 0.0, lower)
    upper = np.where((a1 <= 0.0) & (a2 > 0.0), upper_no_p1, upper)
    upper = np.where((l2 <= 0.0) | (a2 <= 0.0), np.inf, upper)
    return MoverInterval(estimate=estimate, lower=lower, upper=upper)


def group_minus_overall(
    p_group: ArrayLike,
    lower_group: ArrayLike,
    upper_group: ArrayLike,
    p_rest: ArrayLike,
    lower_rest: ArrayLike,
    upper_rest: ArrayLike,
    group_share: ArrayLike,
    correlation: ArrayLike = 0.0,
) -> MoverInterval:
    """Return a group's proportion minus the overall one, with its interval, via the rest.

    With w = the group's share of the denominator (its trials over all trials), the overall
    proportion is w p_group + (1 - w) p_rest exactly, so p_group - p_overall =
    (1 - w)(p_group - p_rest). The interval is (1 - w) times the MOVER interval of
    p_group - p_rest; the group and the rest are different patients, so `correlation` is 0
    unless the caller knows better. A direct MOVER of group against overall under-covers near
    the boundary (88.7% in the module's simulation); this covers 93.0-97.7%. A group holding
    everything (w = 1) differs by exactly 0.
    """
    w = np.asarray(group_share, dtype=np.float64)
    inner = mover_difference(
        p_group, lower_group, upper_group, p_rest, lower_rest, upper_rest, correlation
    )
    whole = w >= 1.0
    with np.errstate(invalid="ignore"):
        scale = 1.0 - w
        return MoverInterval(
            estimate=np.where(whole, 0.0, scale * inner.estimate),
            lower=np.where(whole, 0.0, scale * inner.lower),
            upper=np.where(whole, 0.0, scale * inner.upper),
        )


def group_over_overall(
    p_group: ArrayLike,
    lower_group: ArrayLike,
    upper_group: ArrayLike,
    p_rest: ArrayLike,
    lower_rest: ArrayLike,
    upper_rest: ArrayLike,
    group_share: ArrayLike,
    correlation: ArrayLike = 0.0,
) -> MoverInterval:
    """Return a group's proportion over the overall one, with its interval, via the rest.

    p_group / p_overall = 1 / (w + (1 - w) q) with q = p_rest / p_group and w the group's share
    of the denominator; it decreases in q, so the bounds are those of the log-MOVER interval of
    q (`mover_ratio`, group and rest independent) mapped through it: they never exceed 1 / w and
    are never NaN. The estimate is NaN only when both proportions are 0 (0 / 0).
    """
    w = np.asarray(group_share, dtype=np.float64)
    q = mover_ratio(p_rest, lower_rest, upper_rest, p_group, lower_group, upper_group, correlation)
    whole = w >= 1.0
    a1 = np.asarray(p_group, dtype=np.float64)
    a2 = np.asarray(p_rest, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        overall = w * a1 + (1.0 - w) * a2
        estimate = a1 / overall
        # (1 - w) * inf is inf for w < 1, and 1 / inf = 0: an unbounded q gives the bound 0.
        lower = 1.0 / (w + (1.0 - w) * q.upper)
        upper = 1.0 / (w + (1.0 - w) * q.lower)
    return MoverInterval(
        estimate=np.where(whole & (a1 > 0.0), 1.0, estimate),
        lower=np.where(whole, 1.0, lower),
        upper=np.where(whole, 1.0, upper),
    )
