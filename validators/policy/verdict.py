"""The verdict: each criterion judged on a result, and the policy passed or failed.

A `required` criterion that fails or lacks data fails the verdict (the registry fails closed);
an `advisory` one is reported only. Each criterion judges itself (`CriterionBase.judge`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from validators.policy.criterion import BaselineComparison, JudgingContext
from validators.policy.spec import Policy
from validators.results import CriterionResult, EvaluationResult, Verdict, canonical_attribute

__all__ = ["evaluate_policy", "subgroup_tables_named"]


def _ids(results: Iterable[CriterionResult]) -> str:
    return ", ".join(r.id for r in results)


def _summary(results: Sequence[CriterionResult], passed: bool) -> str:
    required = [r for r in results if r.severity == "required"]
    advisory = [r for r in results if r.severity == "advisory"]
    failed = [r for r in required if r.outcome == "fail"]
    lacking = [r for r in required if r.outcome == "insufficient_data"]
    advisory_missed = [r for r in advisory if r.outcome != "pass"]
    if not results:
        return "Passed: the policy has no criteria."
    if passed:
        text = (
            f"Passed: all {len(required)} required criteria met"
            if required
            else "Passed: the policy has no required criteria"
        )
    else:
        parts = []
        if failed:
            parts.append(
                f"{len(failed)} required {'criterion' if len(failed) == 1 else 'criteria'} "
                f"failed ({_ids(failed)})"
            )
        if lacking:
            parts.append(
                f"{len(lacking)} required {'criterion' if len(lacking) == 1 else 'criteria'} "
                f"lacked data ({_ids(lacking)})"
            )
        text = "Failed: " + " and ".join(parts)
    if advisory_missed:
        text += f"; advisory not met: {_ids(advisory_missed)}"
    elif advisory:
        text += f"; all {len(advisory)} advisory criteria met"
    return text + "."


def evaluate_policy(
    policy: Policy,
    result: EvaluationResult,
    *,
    baseline_comparisons: Sequence[BaselineComparison] | None = None,
) -> Verdict:
    """Return the policy's verdict on `result`: each criterion's outcome, passed or not.

    A required criterion that fails or lacks data fails the verdict; advisory criteria are
    reported only. Judge the committee view (suppressed groups lack data). `baseline_comparisons`
    (from `validators.evaluation`) are what non-inferiority criteria read; None means no baseline.
    """
    if policy.task != result.task:
        raise ValueError(
            f"the policy {policy.name!r} is for {policy.task} tasks; the result is {result.task}"
        )
    context = JudgingContext(
        min_group_size=policy.subgroups.min_group_size, comparisons=baseline_comparisons
    )
    outcomes = [criterion.judge(result, context) for criterion in policy.criteria]
    passed = all(r.outcome == "pass" for r in outcomes if r.severity == "required")
    return Verdict(
        policy_name=policy.name,
        policy_version=policy.version,
        passed=passed,
        criteria=outcomes,
        summary=_summary(outcomes, passed),
    )


def subgroup_tables_named(policy: Policy) -> Iterator[tuple[str, ...]]:
    """Yield the subgroup tables the policy's criteria name (canonical attribute names)."""
    for criterion in policy.criteria:
        for table in criterion.needs().tables:
            yield tuple(canonical_attribute(n) for n in table)
