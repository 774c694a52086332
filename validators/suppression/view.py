"""Withholding numbers, and the vendor and committee views."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from validators.results.estimates import Estimate
from validators.results.evaluation import CriterionResult, EvaluationResult, Verdict
from validators.results.metrics import AveragedMetrics, BinaryMetrics, LabelResult
from validators.results.subgroups import OVERALL, GroupResult, SubgroupTable
from validators.suppression.cells import (
    Metrics,
    _blocks,
    _class_reason,
    _group_reason,
    _involves_reason,
    _Population,
    _populations,
    _protect,
    _released_gaps,
)
from validators.suppression.ranges import _secure

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
