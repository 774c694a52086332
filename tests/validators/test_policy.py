"""Tests of evaluation policies: parsing with located problems, and each criterion's verdict.

Criteria are judged on hand-built results (`Estimate`s made directly), so each test states the
numbers it judges; `tests/validators/evaluation/test_predictions.py` runs them on computed results.
"""

from __future__ import annotations

import json
import typing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from validators.policy import (
    BaselineComparison,
    Policy,
    PolicyInvalid,
    evaluate_policy,
    load_policy,
    parse_policy,
    policy_json_schema,
)
from validators.results import (
    AVERAGED_METRIC_NAMES,
    AveragedMetrics,
    BinaryMetricName,
    BinaryMetrics,
    CriterionResult,
    Disparity,
    Estimate,
    EvaluationResult,
    FairnessGap,
    GroupResult,
    LabelResult,
    MultilabelMetrics,
    Provenance,
    SubgroupTable,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "policies" / "example-binary.yaml"
LEVEL = 0.95

# --------------------------------------------------------------------------------------------
# Factories
# --------------------------------------------------------------------------------------------


def est(
    value: float | None,
    lower: float | None = None,
    upper: float | None = None,
    *,
    n: int = 200,
    status: str = "ok",
    method: str = "bootstrap_percentile_case",
) -> Estimate:
    """An estimate: ok with the given numbers, or undefined / suppressed when asked."""
    if status == "undefined":
        return Estimate.undefined(
            "no positive cases (TP + FN = 0)", n=n, level=LEVEL, method=method
        )
    if status == "suppressed":
        return Estimate.suppressed(level=LEVEL, method=method)
    assert value is not None
    return Estimate.ok(value, lower=lower, upper=upper, level=LEVEL, n=n, method=method)


BINARY_FIELDS = [n for n, f in BinaryMetrics.model_fields.items() if f.annotation is Estimate]


def binary(*, n_cases: int = 200, **estimates: Estimate) -> BinaryMetrics:
    """BinaryMetrics where every estimate is 0.8 [0.75, 0.85] unless given."""
    values = {name: estimates.get(name, est(0.8, 0.75, 0.85, n=n_cases)) for name in BINARY_FIELDS}
    return BinaryMetrics(
        scores="probability",
        threshold=0.5,
        target_specificity=0.9,
        target_sensitivity=0.9,
        calibration_bins=10,
        n_cases=n_cases,
        n_patients=None,
        n_positive=n_cases // 2,
        n_negative=n_cases - n_cases // 2,
        roc_curve=None,
        calibration_curve=None,
        calibration_curve_equal_mass=None,
        decision_curve=None,
        **values,
    )


def group(
    attribute: str, value: str, *, n_cases: int = 100, minimum: int = 11, **estimates: Estimate
) -> GroupResult:
    return GroupResult(
        attributes={attribute: value},
        label=f"{attribute}={value}",
        status="ok" if n_cases else "empty",
        insufficient_n=n_cases < minimum,
        n_cases=n_cases,
        n_patients=None,
        metrics=binary(n_cases=n_cases, **estimates) if n_cases else None,
    )


def table(attribute: str, *groups: GroupResult) -> SubgroupTable:
    return SubgroupTable(attributes=[attribute], groups=list(groups))


def provenance() -> Provenance:
    return Provenance.capture(
        seed=0,
        replicates=200,
        level=LEVEL,
        ci_method="bootstrap",
        bootstrap_unit="case",
        created_at=datetime(2026, 1, 15, tzinfo=UTC),
    )


def result(
    *,
    overall: BinaryMetrics | MultilabelMetrics | None = None,
    subgroups: list[SubgroupTable] | None = None,
    disparities: list[Disparity] | None = None,
    fairness: list[FairnessGap] | None = None,
) -> EvaluationResult:
    overall = overall or binary()
    return EvaluationResult(
        task=overall.task,
        provenance=provenance(),
        overall=overall,
        subgroups=subgroups or [],
        disparities=disparities or [],
        fairness=fairness or [],
    )


def policy(*criteria: dict[str, Any], task: str = "binary", **fields: Any) -> Policy:
    numbered = [
        {"id": f"c{i}", "description": "A criterion.", **criterion}
        for i, criterion in enumerate(criteria)
    ]
    return parse_policy(
        {"name": "test", "version": "1", "task": task, **fields, "criteria": numbered}
    )


def judge(
    criterion: dict[str, Any],
    evaluation: EvaluationResult | None = None,
    *,
    comparisons: list[BaselineComparison] | None = None,
    **fields: Any,
) -> CriterionResult:
    """The one criterion's result."""
    task = evaluation.task if evaluation is not None else "binary"
    verdict = evaluate_policy(
        policy(criterion, task=task, **fields),
        evaluation or result(),
        baseline_comparisons=comparisons,
    )
    (only,) = verdict.criteria
    return only


def problems(document: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy(document)
    return {p.path: p.message for p in caught.value.problems}


MINIMAL = {"name": "p", "version": "1", "task": "binary"}


def crit(kind: str, ident: str, **fields: Any) -> dict[str, Any]:
    """A criterion document."""
    return {"kind": kind, "id": ident, "description": "d", **fields}


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def test_metric_names_are_the_fields_of_binary_metrics() -> None:
    assert list(typing.get_args(BinaryMetricName)) == BINARY_FIELDS


def test_example_policy_loads() -> None:
    loaded = load_policy(EXAMPLE)
    assert loaded.name == "pneumothorax-triage"
    assert loaded.version == "2"
    kinds = {c.kind for c in loaded.criteria}
    assert kinds == {
        "metric",
        "subgroup_metric",
        "disparity",
        "fairness_gap",
        "calibration",
        "speed",
        "non_inferiority",
    }


def test_example_policy_is_the_one_in_the_docs() -> None:
    docs = (ROOT / "docs" / "policies.md").read_text(encoding="utf-8")
    assert EXAMPLE.read_text(encoding="utf-8").strip() in docs


def test_yaml_on_key_is_a_string_not_a_boolean(tmp_path: Path) -> None:
    # YAML 1.1 reads `on` as True; the loader keeps YAML 1.2 booleans (true/false only).
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: p\nversion: '1'\ntask: binary\ncriteria:\n"
        "  - {id: a, description: d, kind: metric, metric: auroc, on: lower, op: '>=',\n"
        "     value: 0.8}\n"
    )
    (criterion,) = load_policy(path).criteria
    assert criterion.on == "lower"  # type: ignore[union-attr]


def test_yaml_and_json_give_the_same_policy(tmp_path: Path) -> None:
    loaded = load_policy(EXAMPLE)
    as_json = tmp_path / "example.json"
    as_json.write_text(loaded.model_dump_json(indent=2))
    assert load_policy(as_json) == loaded


def test_every_problem_is_listed_with_its_path() -> None:
    found = problems(
        {
            "name": "p",
            "version": 1.10,
            "task": "binary",
            "threshold": 1.5,
            "colour": "red",
            "ci": {"method": ["none", "wilson"], "replicates": 0},
            "subgroups": {"age_bands": [0, 40, 18], "intersections": [["sex"]]},
            "criteria": [
                crit("metric", "a", metric="aucroc", op=">=", value=0.8),
                crit("metric", "b", metric="auroc", op=">=", value=0.8, label="x"),
                crit("disparity", "b", metric="auroc"),
                {"kind": "bogus", "id": "c"},
                {"id": "e"},
                crit("calibration", "f", metric="ece", min=0.2, max=0.1),
            ],
        }
    )
    assert set(found) == {
        "version",
        "threshold",
        "colour",
        "ci.method",
        "ci.replicates",
        "subgroups.age_bands",
        "subgroups.intersections.0",
        "criteria.0.metric",
        "criteria.1.label",
        "criteria.2",
        "criteria.2.id",
        "criteria.3",
        "criteria.4",
        "criteria.5.max",
    }
    assert "quote it" in found["version"]
    assert "unknown field" in found["colour"]
    assert "cannot be combined" in found["ci.method"]
    assert "give min, max or both" in found["criteria.2"]
    assert "unknown criterion kind" in found["criteria.3"]
    assert "needs its kind" in found["criteria.4"]
    assert "leave it out" in found["criteria.1.label"]
    # Found although both criteria are invalid otherwise.
    assert found["criteria.2.id"] == "id 'b' is already used by criteria.1"
    assert found["criteria.0.metric"].startswith("got 'aucroc'; expected one of 'prevalence'")


def test_duplicate_ids_name_the_first_use() -> None:
    criterion = {"kind": "speed", "description": "d", "metric": "latency_p50_ms", "max": 1}
    found = problems({**MINIMAL, "criteria": [{**criterion, "id": "x"}, {**criterion, "id": "x"}]})
    assert found == {"criteria.1.id": "id 'x' is already used by criteria.0"}


def test_multilabel_rules() -> None:
    metric = {"kind": "metric", "description": "d", "op": ">=", "value": 0.5}
    found = problems(
        {
            **MINIMAL,
            "task": "multilabel",
            "threshold": {"effusion": 0.3, "nodule": 2.0},
            "criteria": [
                {**metric, "id": "a", "metric": "auroc"},
                {**metric, "id": "b", "metric": "ece", "label": "macro"},
                crit("fairness_gap", "c", name="equal_opportunity_difference", max=0.1),
                crit("non_inferiority", "d", metric="auroc", margin=0.02, label="micro"),
                crit("disparity", "e", metric="sensitivity", min=-0.1, label="macro"),
                crit("subgroup_metric", "f", metric="auroc", op=">=", value=0.7, label="macro"),
                crit("fairness_gap", "g", name="equal_opportunity_difference", max=0.1,
                     label="effusion"),
            ],
        }
    )  # fmt: skip
    assert found == {
        "threshold.nodule": "a threshold on probabilities lies in [0, 1]; got 2.0",
        "criteria.0.label": "a multilabel policy names the label: a label name, macro or micro",
        "criteria.1.metric": "ece has no macro average; averaged metrics are auroc, "
        "average_precision, balanced_accuracy, brier, f1, log_loss, npv, ppv, sensitivity, "
        "specificity",
        "criteria.2.label": "a multilabel policy names the label: a label name, macro or micro",
        "criteria.3.label": "non-inferiority compares one label; name it instead of macro or micro",
        "criteria.4.label": "disparity criteria judge one label's groups (disparities and "
        "fairness gaps are per label); name it instead of macro or micro",
    }


def test_repeats_and_bad_ids_are_named() -> None:
    found = problems(
        {
            **MINIMAL,
            "subgroups": {
                "metrics": ["auroc", "ppv", "auroc"],
                "intersections": [["age", "age_band"]],
            },
            "criteria": [crit("speed", "-bad id", metric="latency_p50_ms", max=1)],
        }
    )
    assert found == {
        "subgroups.metrics": "name each entry once; repeated: auroc",
        "subgroups.intersections.0": "an intersection names each attribute once (age and "
        "age_band are the same); got age, age_band",
        "criteria.0.id": "got '-bad id'; an id starts with a letter or digit and holds only "
        "letters, digits and _ . : -",
    }


def test_per_label_thresholds_are_for_multilabel_only() -> None:
    assert problems({**MINIMAL, "threshold": {"a": 0.5}}) == {
        "threshold": "a binary policy has one threshold, a number"
    }


def test_logit_thresholds_may_leave_zero_to_one() -> None:
    assert parse_policy({**MINIMAL, "scores": "logit", "threshold": -1.5}).threshold == -1.5


def test_delong_non_inferiority_is_for_auroc() -> None:
    found = problems(
        {
            **MINIMAL,
            "criteria": [
                crit("non_inferiority", "a", metric="sensitivity", margin=0.05, method="delong")
            ],
        }
    )
    assert set(found) == {"criteria.0.method"}


def test_integer_version_becomes_text() -> None:
    assert parse_policy({**MINIMAL, "version": 3}).version == "3"


def test_yaml_duplicate_key_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: p\nversion: '1'\ntask: binary\nname: q\n")
    with pytest.raises(PolicyInvalid) as caught:
        load_policy(path)
    (problem,) = caught.value.problems
    assert problem.path == ""
    assert "line 4" in problem.message and "'name' appears twice" in problem.message


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: p\ncriteria: [\n  {id: a\n")
    with pytest.raises(PolicyInvalid) as caught:
        load_policy(path)
    assert "not valid YAML at line" in caught.value.problems[0].message


def test_invalid_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"name": "p",\n "version": }')
    with pytest.raises(PolicyInvalid) as caught:
        load_policy(path)
    assert "not valid JSON at line 2" in caught.value.problems[0].message


def test_a_list_is_not_a_policy(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(PolicyInvalid, match="a policy is a mapping"):
        load_policy(path)


def test_missing_file() -> None:
    with pytest.raises(PolicyInvalid, match="no policy file at"):
        load_policy("/nonexistent/policy.yaml")


def test_default_policy() -> None:
    default = Policy.default()
    assert (default.task, default.threshold, default.scores, default.criteria) == (
        "binary",
        0.5,
        "probability",
        [],
    )
    assert (default.ci.replicates, default.ci.level, default.ci.seed) == (1000, 0.95, 0)
    assert default.subgroups.min_group_size == 11
    assert Policy.default("multilabel").task == "multilabel"


def test_json_schema_accepts_the_example() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = policy_json_schema()
    assert schema["title"] == "Assay evaluation policy"
    document = json.loads(load_policy(EXAMPLE).model_dump_json())
    jsonschema.validate(document, schema)


# --------------------------------------------------------------------------------------------
# Criteria: metric, calibration, speed
# --------------------------------------------------------------------------------------------

AUROC_AT_LEAST = {"kind": "metric", "metric": "auroc", "op": ">=", "value": 0.8}


@pytest.mark.parametrize(
    ("on", "outcome", "observed"),
    [("estimate", "pass", 0.85), ("lower", "fail", 0.78), ("upper", "pass", 0.9)],
)
def test_metric_reads_the_estimate_or_a_bound(on: str, outcome: str, observed: float) -> None:
    evaluation = result(overall=binary(auroc=est(0.85, 0.78, 0.9)))
    outcome_of = judge({**AUROC_AT_LEAST, "on": on}, evaluation)
    assert (outcome_of.outcome, outcome_of.observed, outcome_of.limit) == (outcome, observed, 0.8)


def test_metric_at_most() -> None:
    evaluation = result(overall=binary(brier=est(0.12, 0.1, 0.14)))
    criterion = {"kind": "metric", "metric": "brier", "op": "<=", "value": 0.15, "on": "upper"}
    assert judge(criterion, evaluation).outcome == "pass"
    assert judge({**criterion, "value": 0.13}, evaluation).outcome == "fail"


def test_an_unbounded_upper_side_fails_an_at_most_criterion_on_the_upper_bound() -> None:
    lr = Estimate.ok(6.0, lower=2.5, upper_unbounded=True, level=LEVEL, n=80, method="m")
    evaluation = result(overall=binary(lr_positive=lr))
    criterion = {"kind": "metric", "metric": "lr_positive", "op": "<=", "value": 50, "on": "upper"}
    outcome = judge(criterion, evaluation)
    assert outcome.outcome == "fail" and outcome.observed is None
    assert "unbounded" in outcome.reason
    assert judge({**criterion, "op": ">=", "value": 2, "on": "lower"}, evaluation).outcome == "pass"


def test_metric_undefined_is_insufficient_data() -> None:
    evaluation = result(overall=binary(auroc=est(None, status="undefined")))
    outcome = judge(AUROC_AT_LEAST, evaluation)
    assert outcome.outcome == "insufficient_data"
    assert "no positive cases" in outcome.reason


def test_metric_bound_without_interval_is_insufficient_data() -> None:
    evaluation = result(overall=binary(auroc=est(0.9, method="none")))
    outcome = judge({**AUROC_AT_LEAST, "on": "lower"}, evaluation)
    assert outcome.outcome == "insufficient_data"
    assert "no interval" in outcome.reason


def multilabel(**per_label: BinaryMetrics) -> MultilabelMetrics:
    averaged = AveragedMetrics(
        covers={n: list(per_label) for n in AVERAGED_METRIC_NAMES},
        **{n: est(0.7, 0.6, 0.8) for n in AVERAGED_METRIC_NAMES},
    )
    return MultilabelMetrics(
        labels=list(per_label),
        per_label=[LabelResult(label=k, metrics=v) for k, v in per_label.items()],
        macro=averaged,
        micro=averaged.model_copy(update={"auroc": est(0.9, 0.85, 0.95)}),
    )


def test_metric_of_a_label_and_of_an_average() -> None:
    evaluation = result(
        overall=multilabel(effusion=binary(auroc=est(0.95)), nodule=binary(auroc=est(0.6)))
    )
    assert judge({**AUROC_AT_LEAST, "label": "effusion"}, evaluation).outcome == "pass"
    assert judge({**AUROC_AT_LEAST, "label": "nodule"}, evaluation).outcome == "fail"
    assert judge({**AUROC_AT_LEAST, "label": "macro"}, evaluation).outcome == "fail"
    assert judge({**AUROC_AT_LEAST, "label": "micro"}, evaluation).outcome == "pass"
    missing = judge({**AUROC_AT_LEAST, "label": "mass"}, evaluation)
    assert missing.outcome == "insufficient_data" and "no label 'mass'" in missing.reason


def test_calibration_range() -> None:
    evaluation = result(overall=binary(calibration_slope=est(1.1, 0.7, 1.5)))
    criterion = {"kind": "calibration", "metric": "calibration_slope", "min": 0.8, "max": 1.2}
    assert judge(criterion, evaluation).outcome == "pass"
    # On the interval, the whole interval must lie within the limits: 0.7 < 0.8.
    strict = judge({**criterion, "on": "interval"}, evaluation)
    assert (strict.outcome, strict.observed, strict.limit) == ("fail", 0.7, 0.8)
    high = result(overall=binary(calibration_slope=est(1.3, 1.25, 1.4)))
    assert judge(criterion, high).outcome == "fail"
    assert judge(criterion, high).limit == 1.2


def test_calibration_interval_with_an_unbounded_side_is_judged_not_lacking_data() -> None:
    # Near separation the slope's upper side is unbounded: the interval [0.9, +inf) is within a
    # min of 0.8 and not within a max of 1.2, and both are judged (not "no interval").
    slope = Estimate.ok(3.0, lower=0.9, upper_unbounded=True, level=LEVEL, n=80, method="m")
    evaluation = result(overall=binary(calibration_slope=slope))
    criterion = {"kind": "calibration", "metric": "calibration_slope", "on": "interval"}
    assert judge({**criterion, "min": 0.8}, evaluation).outcome == "pass"
    bounded = judge({**criterion, "min": 0.8, "max": 1.2}, evaluation)
    assert (bounded.outcome, bounded.observed, bounded.limit) == ("fail", None, 1.2)
    assert "interval [0.9, unbounded]" in bounded.reason


def upper_only(value: float, upper: float, *, method: str = "debiased_upper") -> Estimate:
    """A debiased estimate with a one-sided upper bound, as ECE and fairness gaps are reported."""
    return Estimate.ok(value, upper=upper, sides="upper", level=LEVEL, n=200, method=method)


def test_calibration_ece_at_most() -> None:
    evaluation = result(overall=binary(ece=upper_only(0.04, 0.06)))
    criterion = {"kind": "calibration", "metric": "ece", "max": 0.05}
    assert judge(criterion, evaluation).outcome == "pass"
    upper = judge({**criterion, "on": "upper"}, evaluation)
    assert (upper.outcome, upper.observed, upper.limit) == ("fail", 0.06, 0.05)
    assert judge({**criterion, "on": "upper", "max": 0.07}, evaluation).outcome == "pass"


@pytest.mark.parametrize("metric", ["ece", "ece_equal_mass"])
@pytest.mark.parametrize("on", ["lower", "interval"])
def test_a_calibration_criterion_on_the_lower_side_of_an_ece_is_refused(
    metric: str, on: str
) -> None:
    found = problems(
        {
            **MINIMAL,
            "criteria": [
                crit("calibration", "fine", metric=metric, on="upper", max=0.05),
                crit("calibration", "ece-demonstrated", metric=metric, on=on, max=0.05),
            ],
        }
    )
    assert set(found) == {"criteria.1.on"}
    message = found["criteria.1.on"]
    assert "'ece-demonstrated'" in message and metric in message
    assert "one-sided upper bound" in message
    assert "on: estimate or on: upper" in message


def test_the_upper_bound_only_metrics_are_those_calibration_reports_one_sided() -> None:
    # The vocabulary spells the list out (no numpy on the load path); it must not drift from the
    # metrics calibration.ece_estimate reports with a one-sided upper bound only.
    from validators.metrics.calibration import ECE_METRICS
    from validators.vocabulary import ONE_SIDED_UPPER_METRICS

    assert frozenset(ECE_METRICS) == ONE_SIDED_UPPER_METRICS


def test_ece_and_gaps_on_their_estimate_or_upper_bound_and_other_calibration_bounds_load() -> None:
    policy_of = parse_policy(
        {
            **MINIMAL,
            "criteria": [
                crit("calibration", "a", metric="ece", max=0.05),
                crit("calibration", "b", metric="ece_equal_mass", on="upper", max=0.05),
                crit("calibration", "c", metric="calibration_slope", on="interval", min=0.8),
                crit("calibration", "d", metric="brier", on="lower", min=0.0),
                crit("metric", "e", metric="ece", on="upper", op="<=", value=0.05),
                crit("fairness_gap", "f", name="equal_opportunity_difference", max=0.1),
                crit("fairness_gap", "g", name="equalized_odds_difference", on="upper", max=0.1),
            ],
        }
    )
    assert [c.id for c in policy_of.criteria] == list("abcdefg")


def test_a_fairness_gap_or_an_ece_judged_on_a_lower_bound_is_refused_naming_it() -> None:
    found = problems(
        {
            **MINIMAL,
            "criteria": [
                crit(
                    "fairness_gap",
                    "gap-low",
                    name="equal_opportunity_difference",
                    on="lower",
                    max=0.1,
                ),
                crit("metric", "ece-low", metric="ece", on="lower", op="<=", value=0.05),
                crit(
                    "subgroup_metric",
                    "ece-groups",
                    metric="ece_equal_mass",
                    on="lower",
                    op="<=",
                    value=0.05,
                ),
            ],
        }
    )
    assert set(found) == {"criteria.0.on", "criteria.1.on", "criteria.2.on"}
    assert "'gap-low'" in found["criteria.0.on"]
    assert "the fairness gap equal_opportunity_difference" in found["criteria.0.on"]
    assert "'ece-low'" in found["criteria.1.on"]
    assert "'ece-groups'" in found["criteria.2.on"]
    for message in found.values():
        assert "the lower bound" in message and "on: estimate or on: upper" in message


def test_speed_lacks_data_until_results_carry_a_benchmark() -> None:
    outcome = judge({"kind": "speed", "metric": "latency_p95_ms", "max": 200})
    assert outcome.outcome == "insufficient_data"
    assert outcome.reason == "No speed benchmark in this result."
    assert outcome.limit == 200


# --------------------------------------------------------------------------------------------
# Criteria: subgroups, disparities, fairness gaps
# --------------------------------------------------------------------------------------------

SENSITIVITY_EVERY_GROUP = {
    "kind": "subgroup_metric",
    "metric": "sensitivity",
    "attributes": ["sex"],
    "op": ">=",
    "value": 0.7,
}


def sex_table(f: float, m: float, *, small: float | None = None) -> SubgroupTable:
    groups = [group("sex", "F", sensitivity=est(f)), group("sex", "M", sensitivity=est(m))]
    if small is not None:
        groups.append(group("sex", "X", n_cases=5, sensitivity=est(small)))
    return table("sex", *groups)


def test_subgroup_metric_passes_when_every_group_meets_it() -> None:
    outcome = judge(SENSITIVITY_EVERY_GROUP, result(subgroups=[sex_table(0.8, 0.75)]))
    assert (outcome.outcome, outcome.observed) == ("pass", 0.75)
    assert "sex=M" in outcome.reason


def test_subgroup_metric_fails_on_the_worst_group() -> None:
    outcome = judge(SENSITIVITY_EVERY_GROUP, result(subgroups=[sex_table(0.8, 0.6)]))
    assert (outcome.outcome, outcome.observed, outcome.limit) == ("fail", 0.6, 0.7)
    assert "sex=M" in outcome.reason


def test_small_group_makes_it_insufficient_unless_ignored() -> None:
    evaluation = result(subgroups=[sex_table(0.8, 0.75, small=0.2)])
    outcome = judge(SENSITIVITY_EVERY_GROUP, evaluation)
    assert outcome.outcome == "insufficient_data"
    assert "sex=X: fewer than 11 cases" in outcome.reason
    ignored = judge({**SENSITIVITY_EVERY_GROUP, "small_groups": "ignore"}, evaluation)
    assert ignored.outcome == "pass"
    assert "Left out" in ignored.reason


def test_a_failing_group_wins_over_a_small_one() -> None:
    outcome = judge(SENSITIVITY_EVERY_GROUP, result(subgroups=[sex_table(0.8, 0.5, small=0.9)]))
    assert outcome.outcome == "fail"


def test_the_minimum_group_size_comes_from_the_policy() -> None:
    small = group("sex", "X", n_cases=5, minimum=5, sensitivity=est(0.9))
    evaluation = result(subgroups=[table("sex", *sex_table(0.8, 0.75).groups, small)])
    outcome = judge(SENSITIVITY_EVERY_GROUP, evaluation, subgroups={"min_group_size": 5})
    assert outcome.outcome == "pass"


def test_undefined_group_metric_is_insufficient() -> None:
    evaluation = result(
        subgroups=[
            table(
                "sex",
                group("sex", "F", sensitivity=est(0.9)),
                group("sex", "M", sensitivity=est(None, status="undefined")),
            )
        ]
    )
    outcome = judge(SENSITIVITY_EVERY_GROUP, evaluation)
    assert outcome.outcome == "insufficient_data"
    assert "sex=M" in outcome.reason and "no positive cases" in outcome.reason


def test_groups_with_a_missing_value_are_not_judged() -> None:
    evaluation = result(
        subgroups=[
            table(
                "sex",
                group("sex", "F", sensitivity=est(0.9)),
                group("sex", "(missing)", n_cases=4, sensitivity=est(0.1)),
            )
        ]
    )
    outcome = judge(SENSITIVITY_EVERY_GROUP, evaluation)
    assert outcome.outcome == "pass"
    assert "Not judged (unknown attribute value): sex=(missing)" in outcome.reason


def test_empty_intersection_counts_as_a_small_group() -> None:
    cells = SubgroupTable(
        attributes=["sex", "site"],
        groups=[
            GroupResult(
                attributes={"sex": "F", "site": "A"},
                label="sex=F & site=A",
                status="ok",
                insufficient_n=False,
                n_cases=50,
                n_patients=None,
                metrics=binary(n_cases=50, sensitivity=est(0.9)),
            ),
            GroupResult(
                attributes={"sex": "F", "site": "B"},
                label="sex=F & site=B",
                status="empty",
                insufficient_n=True,
                n_cases=0,
                n_patients=None,
                metrics=None,
            ),
        ],
    )
    criterion = {**SENSITIVITY_EVERY_GROUP, "attributes": [["site", "sex"]]}
    outcome = judge(criterion, result(subgroups=[cells]))
    assert outcome.outcome == "insufficient_data"
    assert "sex=F & site=B" in outcome.reason


def test_subgroup_table_absent_is_insufficient() -> None:
    outcome = judge({**SENSITIVITY_EVERY_GROUP, "attributes": ["site"]}, result())
    assert outcome.outcome == "insufficient_data"
    assert "no subgroup table for site" in outcome.reason


def test_age_names_the_age_band_table() -> None:
    bands = table("age_band", group("age_band", "0-18", sensitivity=est(0.9)))
    outcome = judge({**SENSITIVITY_EVERY_GROUP, "attributes": ["age"]}, result(subgroups=[bands]))
    assert outcome.outcome == "pass"


def difference(
    group_label: str, value: float, lower: float, upper: float, *, reference: str = "overall"
) -> Disparity:
    return Disparity(
        attributes=["sex"],
        metric="sensitivity",
        kind="difference",
        group=group_label,
        reference=reference,
        value=est(value, lower, upper),
    )


SENSITIVITY_GAP = {
    "kind": "disparity",
    "metric": "sensitivity",
    "attributes": ["sex"],
    "min": -0.1,
}


def test_disparity_passes_within_the_limit_and_fails_beyond() -> None:
    within = result(
        subgroups=[sex_table(0.8, 0.75)],
        disparities=[
            difference("sex=F", 0.03, -0.02, 0.08),
            difference("sex=M", -0.05, -0.12, 0.0),
        ],
    )
    assert judge(SENSITIVITY_GAP, within).outcome == "pass"
    lower = judge({**SENSITIVITY_GAP, "on": "lower"}, within)
    assert (lower.outcome, lower.observed, lower.limit) == ("fail", -0.12, -0.1)
    beyond = result(
        subgroups=[sex_table(0.8, 0.6)],
        disparities=[difference("sex=F", 0.1, 0.05, 0.15), difference("sex=M", -0.15, -0.2, -0.1)],
    )
    assert judge(SENSITIVITY_GAP, beyond).outcome == "fail"


def test_disparity_to_the_reference_group() -> None:
    evaluation = result(
        subgroups=[sex_table(0.8, 0.6)],
        disparities=[
            difference("sex=F", 0.05, 0.0, 0.1),
            difference("sex=M", -0.15, -0.2, -0.1),
            difference("sex=M", -0.2, -0.3, -0.1, reference="sex=F"),
        ],
    )
    outcome = judge({**SENSITIVITY_GAP, "reference": "group", "min": -0.25}, evaluation)
    assert (outcome.outcome, outcome.observed) == ("pass", -0.2)
    assert "sex=M (vs sex=F)" in outcome.reason


def test_disparity_interval_must_lie_within_both_limits() -> None:
    evaluation = result(
        subgroups=[sex_table(0.8, 0.75)],
        disparities=[
            difference("sex=F", 0.02, -0.04, 0.09),
            difference("sex=M", -0.02, -0.04, 0.04),
        ],
    )
    criterion = {**SENSITIVITY_GAP, "min": -0.05, "max": 0.05, "on": "interval"}
    outcome = judge(criterion, evaluation)
    assert outcome.outcome == "fail"
    assert outcome.observed == 0.09 and outcome.limit == 0.05


def test_two_sided_disparity_names_the_group_furthest_from_the_limits() -> None:
    criterion = {**SENSITIVITY_GAP, "min": -0.1, "max": 0.1}
    failing = result(
        subgroups=[sex_table(0.8, 0.75)],
        disparities=[difference("sex=F", 0.3, 0.2, 0.4), difference("sex=M", 0.15, 0.1, 0.2)],
    )
    outcome = judge(criterion, failing)
    assert (outcome.outcome, outcome.observed) == ("fail", 0.3)
    assert "sex=F is 0.3" in outcome.reason
    passing = result(
        subgroups=[sex_table(0.8, 0.75)],
        disparities=[difference("sex=F", -0.05, -0.1, 0.0), difference("sex=M", 0.09, 0.0, 0.1)],
    )
    outcome = judge(criterion, passing)
    assert (outcome.outcome, outcome.observed) == ("pass", 0.09)  # 0.01 from the upper limit
    assert "nearest to the limit is sex=M" in outcome.reason


def test_disparity_of_a_small_group_is_insufficient() -> None:
    evaluation = result(
        subgroups=[sex_table(0.8, 0.75, small=0.5)],
        disparities=[
            difference("sex=F", 0.0, -0.05, 0.05),
            difference("sex=M", 0.0, -0.05, 0.05),
            difference("sex=X", -0.3, -0.6, 0.1),
        ],
    )
    assert judge(SENSITIVITY_GAP, evaluation).outcome == "insufficient_data"
    assert judge({**SENSITIVITY_GAP, "small_groups": "ignore"}, evaluation).outcome == "pass"


def test_disparity_absent_from_the_result_is_insufficient() -> None:
    outcome = judge(
        {**SENSITIVITY_GAP, "measure": "ratio"}, result(subgroups=[sex_table(0.8, 0.8)])
    )
    assert outcome.outcome == "insufficient_data"
    assert "no ratio in sensitivity" in outcome.reason


def gap(value: float | None, lower: float = 0.0, upper: float = 0.2) -> FairnessGap:
    estimate = est(None, status="undefined") if value is None else est(value, lower, upper)
    return FairnessGap(attributes=["sex"], name="equal_opportunity_difference", value=estimate)


EOD = {"kind": "fairness_gap", "name": "equal_opportunity_difference", "max": 0.1}


def test_fairness_gap() -> None:
    assert judge(EOD, result(fairness=[gap(0.05, 0.01, 0.12)])).outcome == "pass"
    upper = judge({**EOD, "on": "upper"}, result(fairness=[gap(0.05, 0.01, 0.12)]))
    assert (upper.outcome, upper.observed, upper.limit) == ("fail", 0.12, 0.1)
    # As reported: debiased, with a one-sided upper bound.
    one_sided = FairnessGap(
        attributes=["sex"], name="equal_opportunity_difference", value=upper_only(0.04, 0.09)
    )
    judged = judge({**EOD, "on": "upper"}, result(fairness=[one_sided]))
    assert (judged.outcome, judged.observed, judged.limit) == ("pass", 0.09, 0.1)
    assert judge(EOD, result(fairness=[gap(0.15)])).outcome == "fail"
    lacking = judge(EOD, result(fairness=[gap(None)]))
    assert lacking.outcome == "insufficient_data"
    assert judge(EOD, result()).outcome == "insufficient_data"


# --------------------------------------------------------------------------------------------
# Non-inferiority on hand-built comparisons
# --------------------------------------------------------------------------------------------


def comparison(metric: str, diff: float, lower: float, upper: float) -> BaselineComparison:
    return BaselineComparison(
        metric=metric,
        label=None,
        method="delong_paired",
        new=est(0.85),
        baseline=est(0.85 - diff),
        difference=est(diff, lower, upper, method="delong_paired"),
    )


NI_AUROC = {"kind": "non_inferiority", "metric": "auroc", "margin": 0.02}


def test_non_inferiority_reads_the_lower_bound_of_the_difference() -> None:
    passed = judge(NI_AUROC, comparisons=[comparison("auroc", 0.0, -0.015, 0.015)])
    assert (passed.outcome, passed.observed, passed.limit) == ("pass", -0.015, -0.02)
    failed = judge(NI_AUROC, comparisons=[comparison("auroc", 0.0, -0.03, 0.03)])
    assert failed.outcome == "fail"


def test_non_inferiority_of_a_loss_reads_the_upper_bound() -> None:
    criterion = {"kind": "non_inferiority", "metric": "brier", "margin": 0.01}
    passed = judge(criterion, comparisons=[comparison("brier", 0.0, -0.005, 0.008)])
    assert (passed.outcome, passed.observed, passed.limit) == ("pass", 0.008, 0.01)
    assert judge(criterion, comparisons=[comparison("brier", 0.01, 0.0, 0.02)]).outcome == "fail"


def test_non_inferiority_reads_an_unbounded_side_of_the_difference() -> None:
    # A likelihood ratio infinite in some replicates leaves a side of the paired difference
    # unbounded: the judged side reads as infinite, the other is said, never a crash.
    criterion = {"kind": "non_inferiority", "metric": "lr_positive", "margin": 0.5}

    def lr_comparison(difference: Estimate) -> BaselineComparison:
        return BaselineComparison(
            metric="lr_positive",
            label=None,
            method="paired_bootstrap",
            new=est(6.0),
            baseline=est(5.5),
            difference=difference,
        )

    above = Estimate.ok(0.5, lower=-0.2, upper_unbounded=True, level=LEVEL, n=80, method="b")
    passed = judge(criterion, comparisons=[lr_comparison(above)])
    assert (passed.outcome, passed.observed, passed.limit) == ("pass", -0.2, -0.5)
    assert "-0.2 to unbounded" in passed.reason
    below = Estimate.ok(0.5, lower_unbounded=True, upper=1.0, level=LEVEL, n=80, method="b")
    failed = judge(criterion, comparisons=[lr_comparison(below)])
    assert (failed.outcome, failed.observed, failed.limit) == ("fail", None, -0.5)
    assert "unbounded below to 1" in failed.reason


def test_non_inferiority_without_baseline_lacks_data() -> None:
    outcome = judge(NI_AUROC)
    assert outcome.outcome == "insufficient_data"
    assert "no baseline" in outcome.reason.lower()
    other = judge(NI_AUROC, comparisons=[comparison("sensitivity", 0.0, -0.01, 0.01)])
    assert other.outcome == "insufficient_data"


# --------------------------------------------------------------------------------------------
# The verdict: required and advisory
# --------------------------------------------------------------------------------------------


def verdict_of(*criteria: dict[str, Any]) -> Any:
    evaluation = result(overall=binary(auroc=est(0.85, 0.8, 0.9)))
    return evaluate_policy(policy(*criteria), evaluation)


def test_required_failure_fails_the_verdict() -> None:
    verdict = verdict_of({**AUROC_AT_LEAST, "value": 0.9})
    assert not verdict.passed
    assert verdict.summary.startswith("Failed: 1 required criterion failed (c0)")


def test_required_insufficient_data_fails_the_verdict() -> None:
    verdict = verdict_of(AUROC_AT_LEAST, {"kind": "speed", "metric": "latency_p95_ms", "max": 1})
    assert not verdict.passed
    assert "lacked data (c1)" in verdict.summary


def test_advisory_is_reported_only() -> None:
    verdict = verdict_of(
        AUROC_AT_LEAST,
        {**AUROC_AT_LEAST, "value": 0.95, "severity": "advisory"},
        {"kind": "speed", "metric": "latency_p95_ms", "max": 1, "severity": "advisory"},
    )
    assert verdict.passed
    assert [c.outcome for c in verdict.criteria] == ["pass", "fail", "insufficient_data"]
    assert verdict.summary == "Passed: all 1 required criteria met; advisory not met: c1, c2."


def test_no_criteria_passes() -> None:
    verdict = evaluate_policy(Policy.default(), result())
    assert verdict.passed and verdict.criteria == []
    assert (verdict.policy_name, verdict.policy_version) == ("default", "1")


def test_task_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="is for multilabel tasks; the result is binary"):
        evaluate_policy(Policy.default("multilabel"), result())


def test_verdict_round_trips_through_json() -> None:
    evaluation = result(overall=binary(auroc=est(0.85, 0.8, 0.9)))
    verdict = evaluate_policy(load_policy(EXAMPLE), evaluation)
    with_verdict = evaluation.model_copy(update={"verdict": verdict})
    assert EvaluationResult.model_validate_json(with_verdict.model_dump_json()) == with_verdict


def test_a_sensitivity_of_fifteen_of_fifteen_does_not_prove_ninety_percent() -> None:
    from validators.evaluation import binary_metrics

    labels = [1] * 15 + [0] * 30
    scores = [0.9] * 15 + [0.1] * 30
    overall = binary_metrics(labels, scores, replicates=100)
    criterion = {"kind": "metric", "metric": "sensitivity", "op": ">=", "value": 0.9}
    outcome = judge({**criterion, "on": "lower"}, result(overall=overall))
    assert outcome.outcome == "fail" and outcome.observed is not None and outcome.observed < 0.8


def test_a_partial_macro_average_is_not_judged() -> None:
    from validators.evaluation import multilabel_metrics

    rng = np.random.default_rng(7)
    truth = rng.random((300, 2)) < 0.3
    truth[:, 1] = False
    overall = multilabel_metrics(truth, rng.random((300, 2)), ["a", "b"], replicates=30)
    evaluation = result(overall=overall)
    criterion = {
        "kind": "metric",
        "metric": "sensitivity",
        "label": "macro",
        "op": ">=",
        "value": 0,
    }
    outcome = judge(criterion, evaluation)
    assert outcome.outcome == "insufficient_data"
    assert "partial" in outcome.reason and "'b'" in outcome.reason
