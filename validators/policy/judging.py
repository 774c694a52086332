"""The words and arithmetic criteria share when they judge a result.

Reading an estimate or a bound (`pick`, `in_range`), finding what a criterion names in a result
(`estimate_of`, `group_estimate`, `selected`), folding per-group outcomes into one (`Tally`,
`fold`), and saying it in a sentence (`number`, `criterion_result`). The criterion kinds
(`validators/policy/criteria/`) are built from these; nothing here knows a kind.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal

from validators.policy.criterion import CriterionBase, RangeSide, Side
from validators.results import (
    AVERAGED_METRIC_NAMES,
    MISSING,
    BinaryMetrics,
    CriterionResult,
    Estimate,
    EvaluationResult,
    GroupResult,
    MultilabelMetrics,
    SubgroupTable,
    canonical_attribute,
)
from validators.vocabulary import AVERAGES

Outcome = Literal["pass", "fail", "insufficient_data"]


def number(value: float) -> str:
    """Return a number as a reason says it: a few significant digits, "unbounded" for inf."""
    if math.isinf(value):
        return "unbounded" if value > 0 else "unbounded below"
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}" if abs(value) >= 1 else f"{value:.3f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


def side_name(on: str, level: float, metric: str) -> str:
    """Return what a criterion reads, in words: the metric, or a bound of its interval."""
    if on == "estimate":
        return metric
    percent = f"{level * 100:g}%"
    return f"the {on} bound of the {percent} interval of {metric}"


def pick(estimate: Estimate, on: Side) -> tuple[float | None, str | None]:
    """Return the number a criterion reads (estimate, lower or upper), or why there is none."""
    if estimate.status != "ok":
        return None, f"{estimate.status}: {estimate.reason}"
    value = estimate.estimate if on == "estimate" else estimate.bound(on)
    if value is None:
        return None, f"it has no interval (method {estimate.method})"
    return value, None


def compare(value: float, op: str, limit: float) -> bool:
    """Return whether `value` meets `limit` under `op` (">=" or "<=")."""
    return value >= limit if op == ">=" else value <= limit


def op_words(op: str) -> str:
    """Return `op` in words: "at least" or "at most"."""
    return "at least" if op == ">=" else "at most"


_SENTENCE_STARTS = frozenset({"the", "no", "a"})


def _sentence(text: str) -> str:
    """Return `text` with a capital first letter, unless it starts with an identifier."""
    first = text.split(" ", 1)[0]
    return text[:1].upper() + text[1:] if first in _SENTENCE_STARTS else text


def criterion_result(
    criterion: CriterionBase,
    outcome: Outcome,
    reason: str,
    *,
    observed: float | None = None,
    limit: float | None = None,
) -> CriterionResult:
    """Return the `CriterionResult` of `criterion`: its outcome, the reason as a sentence."""
    return CriterionResult(
        id=criterion.id,
        description=criterion.description,
        severity=criterion.severity,
        outcome=outcome,
        reason=_sentence(reason),
        # An unbounded interval side is said in the reason; the stored number must be finite.
        observed=observed if observed is None or math.isfinite(observed) else None,
        limit=limit,
    )


def _binary_metrics_of(result: EvaluationResult, label: str | None) -> BinaryMetrics | str:
    overall = result.overall
    if isinstance(overall, BinaryMetrics):
        return overall
    for entry in overall.per_label:
        if entry.label == label:
            return entry.metrics
    return f"the result has no label {label!r} (labels: {', '.join(overall.labels)})"


def estimate_of(result: EvaluationResult, metric: str, label: str | None) -> Estimate | str:
    """Return the overall estimate a criterion names, or why the result does not hold it."""
    overall = result.overall
    if isinstance(overall, MultilabelMetrics) and label in AVERAGES:
        averaged = overall.macro if label == "macro" else overall.micro
        if metric not in AVERAGED_METRIC_NAMES:
            return f"{metric} has no {label} average"
        value = getattr(averaged, metric)
        assert isinstance(value, Estimate)
        return value
    metrics = _binary_metrics_of(result, label)
    if isinstance(metrics, str):
        return metrics
    value = getattr(metrics, metric, None)
    if not isinstance(value, Estimate):
        return f"the result has no metric {metric!r}"
    return value


def subject_of(metric: str, label: str | None) -> str:
    """Return the metric a criterion names, with its label in a multilabel task."""
    return metric if label is None else f"{metric} ({label})"


def in_range(
    estimate: Estimate, on: RangeSide, low: float | None, high: float | None
) -> tuple[bool | None, float | None, str]:
    """Return (within the limits, the value read, a description), or (None, None, why)."""
    if estimate.status != "ok" or estimate.estimate is None:
        return None, None, f"{estimate.status}: {estimate.reason}"
    if on == "interval":
        lower, upper = estimate.bound("lower"), estimate.bound("upper")
        if lower is None or upper is None:
            return None, None, f"it has no two-sided interval (method {estimate.method})"
        ok_low = low is None or lower >= low
        ok_high = high is None or upper <= high
        # The observed number is the bound nearest to a limit it breaks (or to the limit at all).
        observed = lower if not ok_low or high is None else upper
        text = f"interval [{number(lower)}, {number(upper)}]"
        return ok_low and ok_high, observed, text
    value, why = pick(estimate, on)
    if value is None:
        return None, None, why or "not available"
    met = (low is None or value >= low) and (high is None or value <= high)
    return met, value, number(value) if on == "estimate" else f"{on} bound {number(value)}"


def limits_text(low: float | None, high: float | None) -> str:
    """Return the limits in words: "within [a, b]", "at least a" or "at most b"."""
    if low is not None and high is not None:
        return f"within [{number(low)}, {number(high)}]"
    if low is not None:
        return f"at least {number(low)}"
    assert high is not None
    return f"at most {number(high)}"


def limit_of(low: float | None, high: float | None, observed: float | None) -> float | None:
    """Return the limit a criterion reports: the one broken, or the one nearest the value."""
    if low is None or high is None:
        return low if high is None else high
    if observed is None or observed <= low:
        return low
    if observed >= high:  # an unbounded upper side (inf) broke the max, not the min
        return high
    return low if observed - low <= high - observed else high


def selected(attributes: Sequence[str], selectors: Sequence[str | list[str]]) -> bool:
    """Return whether a table of `attributes` is one the selectors name (all, when none)."""
    if not selectors:
        return True
    have = frozenset(attributes)
    for selector in selectors:
        names = [selector] if isinstance(selector, str) else selector
        if frozenset(canonical_attribute(n) for n in names) == have:
            return True
    return False


def missing_tables(
    tables: Iterable[Sequence[str]], selectors: Sequence[str | list[str]]
) -> list[str]:
    """Return the selectors that match no table of the result, as text."""
    have = {frozenset(t) for t in tables}
    missing = []
    for selector in selectors:
        names = [selector] if isinstance(selector, str) else selector
        if frozenset(canonical_attribute(n) for n in names) not in have:
            missing.append(" x ".join(names))
    return missing


def is_judged(group: GroupResult) -> bool:
    """Whether a group is one a subgroup criterion judges: every attribute value known."""
    return MISSING not in group.attributes.values()


def bounds_of(op: str, value: float) -> tuple[float | None, float | None]:
    """Return (low, high) of a one-sided `>=` or `<=` comparison."""
    return (value, None) if op == ">=" else (None, value)


def too_small(group: GroupResult, min_group_size: int) -> bool:
    """Return whether a group is below the minimum size, withheld, or flagged too small."""
    return group.status != "ok" or group.insufficient_n or (group.n_cases or 0) < min_group_size


class Tally:
    """Per-group outcomes of a subgroup criterion, folded into one.

    The worst item is the one furthest past (or nearest to) the limits `low` and `high`: with
    both, the distance to the nearer of the two counts, so a group far above the upper limit is
    worse than one just above it, whichever side the others fail on.
    """

    def __init__(self, low: float | None, high: float | None) -> None:
        self.failed: list[tuple[str, float, str]] = []
        self.passed: list[tuple[str, float, str]] = []
        self.lacking: list[tuple[str, str]] = []
        self.low, self.high = low, high

    def _badness(self, value: float) -> float:
        below = -math.inf if self.low is None else self.low - value
        above = -math.inf if self.high is None else value - self.high
        return max(below, above)

    def worst(self, items: list[tuple[str, float, str]]) -> tuple[str, float, str]:
        return max(items, key=lambda item: self._badness(item[1]))


def plural(count: int, noun: str) -> str:
    """Return "<count> <noun>", with the noun in the plural unless the count is 1."""
    return f"{count} {noun}{'s' if count != 1 else ''}"


def fold(
    criterion: CriterionBase,
    tally: Tally,
    *,
    what: str,
    limits: str,
    limit: float | None,
    small_groups: str,
    ignored: list[str],
    unit: str = "group",
) -> CriterionResult:
    """Return the criterion's outcome from its per-group (or per-table) outcomes.

    Any judged group outside the limits fails it; otherwise a group that cannot be judged
    makes it lack data (unless `small_groups` is `ignore`); otherwise it passes. It also lacks
    data when no group at all could be judged.
    """
    lacking_text = "; ".join(f"{label}: {why}" for label, why in tally.lacking[:5])
    if len(tally.lacking) > 5:
        lacking_text += f"; and {len(tally.lacking) - 5} more"
    if tally.failed:
        label, value, text = tally.worst(tally.failed)
        others = len(tally.failed) - 1
        more = f" (and {plural(others, 'other ' + unit)})" if others else ""
        return criterion_result(
            criterion,
            "fail",
            f"{what} in {label} is {text}, not {limits}{more}.",
            observed=value,
            limit=limit,
        )
    if tally.lacking and small_groups == "insufficient_data":
        rest = f"; the other {plural(len(tally.passed), unit)} are {limits}" if tally.passed else ""
        return criterion_result(
            criterion,
            "insufficient_data",
            f"{what} cannot be judged in {plural(len(tally.lacking), unit)} "
            f"({lacking_text}){rest}.",
            limit=limit,
        )
    if not tally.passed:
        detail = f" ({lacking_text})" if lacking_text else ""
        return criterion_result(
            criterion,
            "insufficient_data",
            f"no {unit} could be judged on {what}{detail}.",
            limit=limit,
        )
    label, value, text = tally.worst(tally.passed)
    skipped = f" Left out (small_groups: ignore): {lacking_text}." if tally.lacking else ""
    also = f" Not judged (unknown attribute value): {', '.join(ignored)}." if ignored else ""
    judged = (
        f"in the one judged {unit}, {label}: {text}"
        if len(tally.passed) == 1
        else f"in all {plural(len(tally.passed), 'judged ' + unit)}; the nearest to the "
        f"limit is {label}, {text}"
    )
    return criterion_result(
        criterion,
        "pass",
        f"{what} is {limits} {judged}.{skipped}{also}",
        observed=value,
        limit=limit,
    )


def small_reason(min_group_size: int) -> str:
    """Return why a group too small is not judged."""
    return f"fewer than {min_group_size} cases"


def group_estimate(group: GroupResult, metric: str, label: str | None) -> object:
    """Return a group's estimate of `metric` (of `label` in a multilabel task), or None."""
    metrics = group.metrics
    if isinstance(metrics, BinaryMetrics):
        return getattr(metrics, metric, None) if label is None else None
    if isinstance(metrics, MultilabelMetrics) and label is not None:
        if label in AVERAGES:
            return getattr(metrics.macro if label == "macro" else metrics.micro, metric, None)
        for entry in metrics.per_label:
            if entry.label == label:
                return getattr(entry.metrics, metric, None)
    return None


def level_of(result: EvaluationResult) -> float:
    """Return the confidence level of the result's intervals."""
    return result.provenance.level


def groups_by_label(
    tables: Iterable[SubgroupTable],
) -> dict[tuple[frozenset[str], str], GroupResult]:
    """Return every group of `tables`, keyed by (its attributes, its label)."""
    return {(frozenset(t.attributes), g.label): g for t in tables for g in t.groups}
