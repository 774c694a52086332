"""Tests of `evaluate_predictions`: a predictions file under a policy, end to end.

The synthetic file has 2,000 cases from about 700 patients (several images each), attributes
sex, age and site, and a site "D" with fewer than 11 cases for the small-cell rules.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from validators.data.predictions import Predictions, read_predictions
from validators.evaluation import (
    EvaluationInputError,
    align_baseline,
    binary_metrics,
    compare_with_baseline,
    evaluate_predictions,
    subgroup_spec_for,
)
from validators.policy import Policy, PolicyInvalid, parse_policy
from validators.resampling import obuchowski_interval
from validators.results import BinaryMetrics, EvaluationResult, MultilabelMetrics

REPLICATES = 200

# --------------------------------------------------------------------------------------------
# Synthetic predictions
# --------------------------------------------------------------------------------------------


def _sigmoid(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return 1.0 / (1.0 + np.exp(-x))


def write_predictions(
    path: Path,
    *,
    n_cases: int = 2000,
    n_patients: int = 700,
    seed: int = 0,
    separation: float = 1.2,
    small_site: bool = True,
    extra_columns: dict[str, list[str]] | None = None,
) -> Path:
    """Write a binary predictions CSV: several images per patient, who share label risk."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    patient = np.sort(rng.integers(0, n_patients, n_cases))
    sex = rng.choice(["F", "M"], n_patients)
    age = rng.integers(5, 95, n_patients).astype(float)
    site = rng.choice(["A", "B", "C"], n_patients, p=[0.5, 0.3, 0.2])
    if small_site:
        site[patient[:6]] = "D"  # the first patients' few images: fewer than 11 cases
    risk = rng.normal(size=n_patients)
    label = rng.random(n_cases) < _sigmoid(risk[patient] - 1.0)
    score = _sigmoid(separation * (2 * label - 1) + rng.normal(size=n_cases))
    frame = pd.DataFrame(
        {
            "case_id": [f"c{i:05d}" for i in range(n_cases)],
            "patient_id": [f"p{p:04d}" for p in patient],
            "label": label.astype(int),
            "score": np.round(score, 6),
            "sex": sex[patient],
            "age": age[patient],
            "site": site[patient],
            **(extra_columns or {}),
        }
    )
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def predictions_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_predictions(tmp_path_factory.mktemp("predictions") / "predictions.csv")


@pytest.fixture(scope="module")
def predictions(predictions_csv: Path) -> Predictions:
    return read_predictions(predictions_csv)


def quick_policy(*criteria: dict[str, Any], **fields: Any) -> Policy:
    numbered = [
        {"id": f"c{i}", "description": "A criterion.", **criterion}
        for i, criterion in enumerate(criteria)
    ]
    ci = {"replicates": REPLICATES, **fields.pop("ci", {})}
    return parse_policy(
        {
            "name": "quick",
            "version": "1",
            "task": "binary",
            "ci": ci,
            **fields,
            "criteria": numbered,
        }
    )


@pytest.fixture(scope="module")
def default_result(predictions: Predictions) -> EvaluationResult:
    return evaluate_predictions(predictions, policy=None)


# --------------------------------------------------------------------------------------------
# End to end
# --------------------------------------------------------------------------------------------


def test_synthetic_file_has_several_images_per_patient(predictions: Predictions) -> None:
    assert predictions.n_cases == 2000
    assert 600 <= predictions.n_patients <= 700


def test_default_evaluation(default_result: EvaluationResult, predictions: Predictions) -> None:
    result = default_result
    assert result.task == "binary" and result.view == "committee"
    assert result.verdict is None
    assert result.policy == Policy.default().model_dump(mode="json")
    assert result.provenance.bootstrap_unit == "patient"
    assert result.provenance.replicates == 1000
    overall = result.overall
    assert isinstance(overall, BinaryMetrics)
    assert overall.auroc.method == "bootstrap_percentile_patient"
    assert overall.auroc.n == predictions.n_patients
    assert overall.n_cases == 2000
    assert [t.attributes for t in result.subgroups] == [["sex"], ["age_band"], ["site"]]
    site = next(t for t in result.subgroups if t.attributes == ["site"])
    small = next(g for g in site.groups if g.label == "site=D")
    assert small.insufficient_n and small.metrics is not None  # committee: numbers, flagged
    assert result.disparities and result.fairness


def test_result_round_trips_through_json(default_result: EvaluationResult) -> None:
    assert EvaluationResult.model_validate_json(default_result.model_dump_json()) == default_result


def test_overall_equals_binary_metrics_with_the_same_settings(predictions: Predictions) -> None:
    result = evaluate_predictions(predictions, policy=quick_policy())
    direct = binary_metrics(
        predictions.y_true,
        predictions.y_score,
        replicates=REPLICATES,
        groups=predictions.patient_ids,
    )
    assert result.overall == direct


def test_policy_settings_reach_the_result(predictions: Predictions) -> None:
    policy = quick_policy(threshold=0.3, ci={"unit": "case", "level": 0.9, "seed": 7})
    result = evaluate_predictions(predictions, policy=policy)
    overall = result.overall
    assert isinstance(overall, BinaryMetrics)
    assert overall.threshold == 0.3
    assert overall.auroc.level == 0.9 and overall.auroc.n == 2000
    assert overall.auroc.method == "bootstrap_percentile_case"
    assert (result.provenance.seed, result.provenance.bootstrap_unit) == (7, "case")
    assert result.policy is not None and result.policy["name"] == "quick"
    assert result.verdict is not None and result.verdict.passed


def test_wilson_and_delong_methods(predictions: Predictions) -> None:
    result = evaluate_predictions(
        predictions, policy=quick_policy(ci={"method": ["wilson", "delong"]})
    )
    overall = result.overall
    assert isinstance(overall, BinaryMetrics)
    # Patients contribute several images: both are adjusted for the clustering, never
    # reported as if the images were independent.
    assert (overall.sensitivity.method, overall.auroc.method) == ("wilson_clustered", "obuchowski")
    assert overall.sensitivity.reason is not None and "design effect" in overall.sensitivity.reason
    by_patient = obuchowski_interval(
        predictions.y_true, predictions.y_score, predictions.patient_ids, 0.95
    )
    assert (overall.auroc.lower, overall.auroc.upper) == pytest.approx(
        (by_patient.lower, by_patient.upper), abs=1e-12
    )
    assert overall.brier.method == "bootstrap_percentile_patient"
    assert result.provenance.ci_method == "wilson+delong"


def test_wilson_and_delong_on_independent_cases_are_the_classic_ones(
    predictions: Predictions,
) -> None:
    one_each = dataclasses.replace(predictions, patient_ids=predictions.case_ids)
    result = evaluate_predictions(
        one_each, policy=quick_policy(ci={"method": ["wilson", "delong"]})
    )
    overall = result.overall
    assert isinstance(overall, BinaryMetrics)
    assert (overall.sensitivity.method, overall.auroc.method) == ("wilson", "delong")
    assert overall.sensitivity.reason is None


def test_point_estimates_only(predictions: Predictions) -> None:
    result = evaluate_predictions(predictions, policy=quick_policy(ci={"method": "none"}))
    overall = result.overall
    assert isinstance(overall, BinaryMetrics)
    assert overall.auroc.lower is None and overall.auroc.method == "none"
    assert result.provenance.bootstrap_unit is None


def test_threshold_and_scores_override_the_policy(predictions: Predictions) -> None:
    result = evaluate_predictions(predictions, policy=quick_policy(), threshold=0.7)
    assert isinstance(result.overall, BinaryMetrics)
    assert result.overall.threshold == 0.7
    assert result.policy is not None and result.policy["threshold"] == 0.7


def test_override_that_breaks_the_policy_is_refused(predictions: Predictions) -> None:
    with pytest.raises(PolicyInvalid, match="threshold: a threshold on probabilities"):
        evaluate_predictions(predictions, policy=quick_policy(), threshold=1.5)


def test_verdict_of_a_policy(predictions: Predictions) -> None:
    policy = quick_policy(
        {"kind": "metric", "metric": "auroc", "on": "lower", "op": ">=", "value": 0.8},
        {"kind": "metric", "metric": "auroc", "op": ">=", "value": 0.99},
        {
            "kind": "subgroup_metric",
            "metric": "sensitivity",
            "attributes": ["sex"],
            "op": ">=",
            "value": 0.7,
        },
        {"kind": "fairness_gap", "name": "equalized_odds_difference", "max": 0.5},
    )
    result = evaluate_predictions(predictions, policy=policy)
    assert result.verdict is not None
    assert [c.outcome for c in result.verdict.criteria] == ["pass", "fail", "pass", "pass"]
    assert not result.verdict.passed


def test_criteria_widen_the_subgroups(predictions: Predictions) -> None:
    policy = quick_policy(
        {
            "kind": "subgroup_metric",
            "metric": "f1",
            "attributes": ["site", ["sex", "age"]],
            "op": ">=",
            "value": 0.1,
            "small_groups": "ignore",
        },
        {"kind": "disparity", "metric": "balanced_accuracy", "attributes": ["sex"], "min": -0.5},
        subgroups={"attributes": ["sex"]},
    )
    spec = subgroup_spec_for(policy)
    assert spec.attributes == ("sex", "site")
    assert spec.intersections == (("sex", "age_band"),)
    assert "f1" in spec.metrics and "balanced_accuracy" in spec.disparity_metrics
    result = evaluate_predictions(predictions, policy=policy)
    assert [t.attributes for t in result.subgroups] == [["sex"], ["site"], ["sex", "age_band"]]
    assert result.verdict is not None
    assert [c.outcome for c in result.verdict.criteria] == ["pass", "pass"]


def test_vendor_view_suppresses_the_small_group(predictions: Predictions) -> None:
    result = evaluate_predictions(predictions, policy=quick_policy(), view="vendor")
    assert result.view == "vendor"
    site = next(t for t in result.subgroups if t.attributes == ["site"])
    small = next(g for g in site.groups if g.label == "site=D")
    assert small.status == "suppressed"
    assert small.metrics is None and small.n_cases is None


def test_vendor_view_uses_the_policys_minimum_group_size(predictions: Predictions) -> None:
    committee = evaluate_predictions(predictions, policy=quick_policy())
    sizes = {
        g.label: g.n_cases for t in committee.subgroups if t.attributes == ["sex"] for g in t.groups
    }
    smaller = min(n for n in sizes.values() if n is not None)
    policy = quick_policy(subgroups={"min_group_size": smaller + 1})
    vendor = evaluate_predictions(predictions, policy=policy, view="vendor")
    sex = next(t for t in vendor.subgroups if t.attributes == ["sex"])
    assert all(g.status == "suppressed" for g in sex.groups)  # below the policy's minimum
    default = evaluate_predictions(predictions, policy=quick_policy(), view="vendor")
    sex = next(t for t in default.subgroups if t.attributes == ["sex"])
    assert all(g.status == "ok" for g in sex.groups)


def test_identifier_like_columns_are_left_out_with_a_warning(tmp_path: Path) -> None:
    accession = [f"A{i}" for i in range(300)]
    path = write_predictions(
        tmp_path / "p.csv", n_cases=300, n_patients=200, extra_columns={"accession": accession}
    )
    with pytest.warns(UserWarning, match="'accession' has 300 distinct values"):
        result = evaluate_predictions(read_predictions(path), policy=quick_policy())
    assert ["accession"] not in [t.attributes for t in result.subgroups]


def test_a_file_without_attributes_has_no_subgroups(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(
        "case_id,patient_id,label,score\n"
        + "".join(f"c{i},p{i},{i % 2},{0.2 + 0.6 * (i % 2) * (i % 7) / 7}\n" for i in range(60))
    )
    result = evaluate_predictions(read_predictions(path), policy=quick_policy())
    assert result.subgroups == [] and result.disparities == [] and result.fairness == []
    assert result.provenance.bootstrap_unit == "case"


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def test_task_mismatch(predictions: Predictions) -> None:
    with pytest.raises(EvaluationInputError, match="is for a multilabel task"):
        evaluate_predictions(predictions, policy=Policy.default("multilabel"))


def test_probabilities_outside_zero_one_name_the_line(predictions: Predictions) -> None:
    scores = predictions.y_score.copy()
    scores[3] = 1.7
    bad = dataclasses.replace(predictions, y_score=scores)
    with pytest.raises(EvaluationInputError, match=r"line 5 has 1.7 .* --scores logit"):
        evaluate_predictions(bad)


def test_logit_scores(predictions: Predictions) -> None:
    logits = np.log(predictions.y_score / (1 - predictions.y_score))
    as_logits = dataclasses.replace(predictions, y_score=logits)
    result = evaluate_predictions(as_logits, policy=quick_policy(), scores="logit", threshold=0.0)
    direct = evaluate_predictions(predictions, policy=quick_policy())
    assert isinstance(result.overall, BinaryMetrics) and isinstance(direct.overall, BinaryMetrics)
    assert result.overall.auroc.estimate == pytest.approx(direct.overall.auroc.estimate)
    assert result.overall.sensitivity.estimate == direct.overall.sensitivity.estimate


def test_policy_naming_a_missing_attribute(predictions: Predictions) -> None:
    policy = quick_policy(subgroups={"attributes": ["scanner"]})
    with pytest.raises(ValueError, match="'scanner' is not a column"):
        evaluate_predictions(predictions, policy=policy)


# --------------------------------------------------------------------------------------------
# Baseline
# --------------------------------------------------------------------------------------------


def reordered(predictions: Predictions, order: np.ndarray[Any, Any]) -> Predictions:
    return predictions.take(order)


def test_baseline_is_aligned_by_case_id(predictions: Predictions) -> None:
    shuffled = reordered(predictions, np.random.default_rng(1).permutation(predictions.n_cases))
    aligned = align_baseline(predictions, shuffled)
    assert (aligned.case_ids == predictions.case_ids).all()
    assert (aligned.y_score == predictions.y_score).all()


def test_baseline_with_missing_and_extra_cases(predictions: Predictions) -> None:
    fewer = reordered(predictions, np.arange(2, predictions.n_cases))
    with pytest.raises(EvaluationInputError, match=r"lacks 2 case\(s\).*'c00000', 'c00001'"):
        align_baseline(predictions, fewer)
    renamed = dataclasses.replace(
        predictions, case_ids=np.array([*predictions.case_ids[:-1], "zz"])
    )
    with pytest.raises(EvaluationInputError, match=r"lacks 1 .* and has 1 case\(s\) .*'zz'"):
        align_baseline(predictions, renamed)


def test_baseline_with_other_ground_truth(predictions: Predictions) -> None:
    truth = predictions.y_true.copy()
    truth[[0, 5]] = ~truth[[0, 5]]
    other = dataclasses.replace(predictions, y_true=truth)
    with pytest.raises(EvaluationInputError, match=r"ground truth differs .* on 2 case"):
        align_baseline(predictions, other)


def test_baseline_with_other_patients(predictions: Predictions) -> None:
    patients = predictions.patient_ids.copy()
    patients[0] = "someone else"
    with pytest.raises(EvaluationInputError, match="other patient_ids"):
        align_baseline(predictions, dataclasses.replace(predictions, patient_ids=patients))


def test_baseline_of_another_task(predictions: Predictions) -> None:
    multi = multilabel_predictions()
    with pytest.raises(EvaluationInputError, match="a baseline scores the same labels"):
        align_baseline(predictions, multi)


# --------------------------------------------------------------------------------------------
# Non-inferiority on synthetic paired scores
# --------------------------------------------------------------------------------------------


def paired(
    *, n: int = 1500, separations: tuple[float, ...], images_per_patient: int = 1, seed: int = 3
) -> list[Predictions]:
    """Models scored on the same cases, with correlated noise (as two versions of one model)."""
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.3
    shared = rng.normal(size=n)
    patients = np.array([f"p{i // images_per_patient}" for i in range(n)])
    out = []
    for separation in separations:
        noise = 0.6 * shared + 0.8 * rng.normal(size=n)
        scores = _sigmoid(separation * (2 * labels - 1) + noise)
        out.append(
            Predictions(
                task="binary",
                labels=("label",),
                case_ids=np.array([f"c{i}" for i in range(n)]),
                patient_ids=patients,
                y_true=labels,
                y_score=scores,
                attributes={},
            )
        )
    return out


def non_inferiority(margin: float, **fields: Any) -> Policy:
    return quick_policy({"kind": "non_inferiority", "metric": "auroc", "margin": margin, **fields})


def outcome_against(new: Predictions, old: Predictions, policy: Policy) -> str:
    result = evaluate_predictions(new, policy=policy, baseline=old)
    assert result.verdict is not None
    return result.verdict.criteria[0].outcome


def test_clearly_better_model_is_non_inferior() -> None:
    baseline, better = paired(separations=(0.8, 1.6))
    assert outcome_against(better, baseline, non_inferiority(0.02)) == "pass"


def test_clearly_worse_model_is_not() -> None:
    baseline, worse = paired(separations=(1.6, 0.8))
    assert outcome_against(worse, baseline, non_inferiority(0.02)) == "fail"


def test_identical_models_depend_on_the_margin() -> None:
    (model,) = paired(separations=(1.0,))
    assert outcome_against(model, model, non_inferiority(0.02)) == "pass"
    # The difference is exactly 0 with an interval of no width: not above -0.
    assert outcome_against(model, model, non_inferiority(0.0)) == "fail"


def test_auto_uses_delong_for_independent_cases() -> None:
    baseline, better = paired(separations=(0.8, 1.6))
    (comparison,) = compare_with_baseline(better, baseline, non_inferiority(0.02))
    assert comparison.method == "delong_paired"
    assert comparison.difference.estimate == pytest.approx(
        (comparison.new.estimate or 0) - (comparison.baseline.estimate or 0)
    )
    assert comparison.p_value is not None and comparison.p_value < 0.001


def test_clustered_cases_use_the_paired_patient_bootstrap() -> None:
    baseline, better = paired(separations=(0.8, 1.6), images_per_patient=3)
    result = evaluate_predictions(better, policy=non_inferiority(0.02), baseline=baseline)
    assert result.verdict is not None
    (criterion,) = result.verdict.criteria
    assert criterion.outcome == "pass"
    assert "paired_bootstrap_percentile_patient" in criterion.reason


def test_bootstrap_and_delong_agree_roughly() -> None:
    baseline, new = paired(separations=(1.0, 1.1))
    delong = compare_with_baseline(new, baseline, non_inferiority(0.02, method="delong"))[0]
    boot = compare_with_baseline(new, baseline, non_inferiority(0.02, method="bootstrap"))[0]
    assert boot.method == "paired_bootstrap_percentile_case"
    assert boot.difference.estimate == pytest.approx(delong.difference.estimate)
    assert boot.difference.lower == pytest.approx(delong.difference.lower, abs=0.01)
    assert boot.difference.upper == pytest.approx(delong.difference.upper, abs=0.01)


def test_non_inferiority_of_sensitivity() -> None:
    baseline, worse = paired(separations=(1.6, 0.6))
    policy = quick_policy(
        {"kind": "non_inferiority", "metric": "sensitivity", "margin": 0.02},
        {"kind": "non_inferiority", "metric": "brier", "margin": 0.01},
    )
    result = evaluate_predictions(worse, policy=policy, baseline=baseline)
    assert result.verdict is not None
    assert [c.outcome for c in result.verdict.criteria] == ["fail", "fail"]
    better = evaluate_predictions(baseline, policy=policy, baseline=worse)
    assert better.verdict is not None and better.verdict.passed


def test_bootstrap_comparisons_of_several_metrics_equal_one_at_a_time() -> None:
    baseline, new = paired(separations=(1.0, 1.2), images_per_patient=2)
    criteria = [
        {"kind": "non_inferiority", "metric": metric, "margin": 0.02}
        for metric in ("auroc", "sensitivity", "brier")
    ]
    together = compare_with_baseline(new, baseline, quick_policy(*criteria), groups=new.patient_ids)
    alone = [
        compare_with_baseline(new, baseline, quick_policy(c), groups=new.patient_ids)[0]
        for c in criteria
    ]
    assert [c.metric for c in together] == ["auroc", "sensitivity", "brier"]
    assert together == alone  # one set of replicates serves every metric, with the same digits
    assert all(c.method == "paired_bootstrap_percentile_patient" for c in together)
    assert all(c.difference.lower is not None for c in together)


# --------------------------------------------------------------------------------------------
# Multilabel
# --------------------------------------------------------------------------------------------


def multilabel_predictions(n: int = 600, seed: int = 5) -> Predictions:
    rng = np.random.default_rng(seed)
    truth = rng.random((n, 2)) < [0.3, 0.2]
    scores = _sigmoid(1.5 * (2 * truth - 1) + rng.normal(size=(n, 2)))
    return Predictions(
        task="multilabel",
        labels=("effusion", "nodule"),
        case_ids=np.array([f"c{i}" for i in range(n)]),
        patient_ids=np.array([f"p{i // 2}" for i in range(n)]),
        y_true=truth,
        y_score=scores,
        attributes={"sex": np.array(["F", "M"] * (n // 2), dtype=object)},
    )


def test_multilabel_evaluation() -> None:
    policy = parse_policy(
        {
            "name": "ml",
            "version": "1",
            "task": "multilabel",
            "threshold": {"effusion": 0.4, "nodule": 0.6},
            "ci": {"replicates": REPLICATES},
            "criteria": [
                {"id": "macro", "description": "d", "kind": "metric", "metric": "auroc",
                 "label": "macro", "op": ">=", "value": 0.8},
                {"id": "nodule", "description": "d", "kind": "metric", "metric": "sensitivity",
                 "label": "nodule", "op": ">=", "value": 0.5},
            ],
        }
    )  # fmt: skip
    result = evaluate_predictions(multilabel_predictions(), policy=policy)
    assert isinstance(result.overall, MultilabelMetrics)
    thresholds = [entry.metrics.threshold for entry in result.overall.per_label]
    assert thresholds == [0.4, 0.6]
    assert [t.attributes for t in result.subgroups] == [["sex"]]
    for group in result.subgroups[0].groups:  # groups follow the policy like the overall does
        assert isinstance(group.metrics, MultilabelMetrics)
        assert [e.metrics.threshold for e in group.metrics.per_label] == [0.4, 0.6]
        assert group.metrics.per_label[0].metrics.auroc.method == "bootstrap_percentile_patient"
    assert result.provenance.bootstrap_unit == "patient"
    assert result.verdict is not None and result.verdict.passed


def multilabel_with_groups(n: int = 900, seed: int = 11) -> Predictions:
    """Two labels, a site attribute with a small site, and nodule harder to find at site B."""
    rng = np.random.default_rng(seed)
    site = rng.choice(np.array(["A", "B", "C"], dtype=object), n, p=[0.6, 0.39, 0.01])
    truth = rng.random((n, 2)) < [0.35, 0.3]
    signal = np.stack([np.full(n, 2.0), np.where(site == "B", 0.3, 2.0)], axis=1)
    scores = _sigmoid(signal * (2 * truth - 1) + rng.normal(size=(n, 2)))
    return Predictions(
        task="multilabel",
        labels=("effusion", "nodule"),
        case_ids=np.array([f"c{i}" for i in range(n)]),
        patient_ids=np.array([f"p{i}" for i in range(n)]),
        y_true=truth,
        y_score=scores,
        attributes={"site": site},
    )


def test_multilabel_subgroups_per_label_with_disparities_and_gaps() -> None:
    from validators.evaluation import binary_metrics

    predictions = multilabel_with_groups()
    policy = parse_policy(
        {
            "name": "ml-groups",
            "version": "1",
            "task": "multilabel",
            "ci": {"replicates": REPLICATES},
            "subgroups": {"metrics": ["auroc", "sensitivity"]},
            "criteria": [
                {"id": "effusion-groups", "description": "d", "kind": "subgroup_metric",
                 "metric": "auroc", "label": "effusion", "op": ">=", "value": 0.8,
                 "small_groups": "ignore"},
                {"id": "nodule-groups", "description": "d", "kind": "subgroup_metric",
                 "metric": "auroc", "label": "nodule", "op": ">=", "value": 0.8,
                 "small_groups": "ignore"},
                {"id": "nodule-gap", "description": "d", "kind": "disparity",
                 "metric": "auroc", "label": "nodule", "min": -0.1},
                {"id": "effusion-eo", "description": "d", "kind": "fairness_gap",
                 "name": "equal_opportunity_difference", "label": "effusion", "max": 0.5},
            ],
        }
    )  # fmt: skip
    result = evaluate_predictions(predictions, policy=policy)
    (table,) = result.subgroups
    assert [g.label for g in table.groups] == ["site=A", "site=B", "site=C"]
    for group in table.groups:
        assert isinstance(group.metrics, MultilabelMetrics)
        assert group.metrics.labels == ["effusion", "nodule"]
        index = predictions.attributes["site"] == group.attributes["site"]
        for k, entry in enumerate(group.metrics.per_label):
            expected = binary_metrics(
                predictions.y_true[index, k], predictions.y_score[index, k], ci="none"
            )
            assert entry.metrics.auroc.estimate == pytest.approx(expected.auroc.estimate)
            assert entry.metrics.roc_curve is None  # a group's curves are not kept
        assert group.metrics.macro.auroc.estimate == pytest.approx(
            np.mean([e.metrics.auroc.estimate for e in group.metrics.per_label])
        )
    assert table.groups[2].insufficient_n  # site C has about 9 cases
    assert {d.label for d in result.disparities} == {"effusion", "nodule"}
    assert {g.label for g in result.fairness} == {"effusion", "nodule"}
    nodule_b = next(
        d
        for d in result.disparities
        if d.label == "nodule" and d.group == "site=B" and d.reference == "overall"
        and d.metric == "auroc" and d.kind == "difference"
    )  # fmt: skip
    assert nodule_b.value.estimate is not None and nodule_b.value.estimate < -0.1

    assert result.verdict is not None and not result.verdict.passed
    outcomes = {c.id: c.outcome for c in result.verdict.criteria}
    assert outcomes == {
        "effusion-groups": "pass",
        "nodule-groups": "fail",
        "nodule-gap": "fail",
        "effusion-eo": "pass",
    }
    failing = next(c for c in result.verdict.criteria if c.id == "nodule-groups")
    assert "auroc (nodule)" in failing.reason and "site=B" in failing.reason

    vendor = evaluate_predictions(predictions, policy=policy, view="vendor")
    small = vendor.subgroups[0].groups[2]
    assert small.status == "suppressed" and small.metrics is None and small.n_cases is None
    assert all(
        d.value.status == "suppressed"
        for d in vendor.disparities
        if "site=C" in (d.group, d.reference)
    )


def test_multilabel_thresholds_must_match_the_labels() -> None:
    policy = parse_policy(
        {"name": "ml", "version": "1", "task": "multilabel", "threshold": {"effusion": 0.4}}
    )
    with pytest.raises(EvaluationInputError, match="has no threshold for 'nodule'"):
        evaluate_predictions(multilabel_predictions(), policy=policy)


def test_multilabel_criterion_naming_an_unknown_label() -> None:
    policy = parse_policy(
        {
            "name": "ml",
            "version": "1",
            "task": "multilabel",
            "criteria": [
                {"id": "x", "description": "d", "kind": "metric", "metric": "auroc",
                 "label": "mass", "op": ">=", "value": 0.5}
            ],
        }
    )  # fmt: skip
    with pytest.raises(EvaluationInputError, match="names the label 'mass'"):
        evaluate_predictions(multilabel_predictions(), policy=policy)


def test_vendor_view_withholds_a_verdict_reason_about_withheld_groups(
    predictions: Predictions,
) -> None:
    policy = quick_policy(
        {"kind": "fairness_gap", "name": "equal_opportunity_difference", "max": 1.0},
        {
            "kind": "fairness_gap",
            "name": "equal_opportunity_difference",
            "attributes": ["sex"],
            "max": 1.0,
        },
    )
    committee = evaluate_predictions(predictions, policy=policy)
    vendor = evaluate_predictions(predictions, policy=policy, view="vendor")
    assert committee.verdict is not None and vendor.verdict is not None
    every_table, sex = vendor.verdict.criteria
    # Every table: the site gap is taken over a group withheld as a complementary cell.
    assert every_table.observed is None and "withheld" in every_table.reason
    assert sex == committee.verdict.criteria[1]  # nothing about sex is withheld
    assert [c.outcome for c in vendor.verdict.criteria] == ["pass", "pass"]


# --------------------------------------------------------------------------------------------
# The scorecard
# --------------------------------------------------------------------------------------------


def test_scorecard_of_a_multilabel_result() -> None:
    from dashboards.scorecard import scorecard_text

    result = evaluate_predictions(multilabel_predictions(), policy=Policy.default("multilabel"))
    text = scorecard_text(result)
    assert "multilabel task, 600 cases, 300 patients" in text
    for column in ("effusion", "nodule", "macro", "micro"):
        assert column in text


def test_scorecard_of_a_vendor_view(predictions: Predictions) -> None:
    from dashboards.scorecard import scorecard_text

    text = scorecard_text(evaluate_predictions(predictions, policy=quick_policy(), view="vendor"))
    assert "vendor view" in text
    site_d = next(line for line in text.splitlines() if line.strip().startswith("site=D"))
    assert "suppressed" in site_d and "0." not in site_d


def test_multilabel_vendor_view_withholds_a_group_with_a_rare_label() -> None:
    rng = np.random.default_rng(2)
    n = 600
    site = np.array(["A"] * 300 + ["B"] * 250 + ["C"] * 50, dtype=object)
    truth = rng.random((n, 2)) < [0.4, 0.3]
    truth[550:, 1] = False
    truth[550:555, 1] = True  # site C: 50 cases, but only 5 with a nodule
    predictions = Predictions(
        task="multilabel",
        labels=("effusion", "nodule"),
        case_ids=np.array([f"c{i}" for i in range(n)]),
        patient_ids=np.array([f"p{i}" for i in range(n)]),
        y_true=truth,
        y_score=_sigmoid(2 * (2 * truth - 1) + rng.normal(size=(n, 2))),
        attributes={"site": site},
    )
    policy = parse_policy(
        {"name": "ml", "version": "1", "task": "multilabel", "ci": {"replicates": REPLICATES}}
    )
    committee = evaluate_predictions(predictions, policy=policy)
    site_c = committee.subgroups[0].groups[2].metrics
    assert isinstance(site_c, MultilabelMetrics)
    assert [e.metrics.n_positive for e in site_c.per_label][1] == 5

    vendor = evaluate_predictions(predictions, policy=policy, view="vendor")
    # C's nodule count is small, so C's numbers are withheld, and with them enough of A and B
    # that no withheld count can be pinned to within 3 from what is released (A = overall - B -
    # C; with A released, B's effusion false negatives were confined to 0-2). The overall
    # result stays released.
    overall = vendor.overall
    assert isinstance(overall, MultilabelMetrics)
    assert overall.per_label[1].metrics.n_positive == int(truth[:, 1].sum())
    for group in vendor.subgroups[0].groups:
        if group.status == "suppressed":
            assert group.metrics is None and group.n_cases is None
            continue
        assert isinstance(group.metrics, MultilabelMetrics)
        assert all(e.metrics.n_positive is None for e in group.metrics.per_label)
        assert group.metrics.macro.auroc.status == "suppressed"
    assert vendor.subgroups[0].groups[2].status == "suppressed"
    involving_c = [d for d in vendor.disparities if "site=C" in (d.group, d.reference)]
    assert involving_c and all(d.value.status == "suppressed" for d in involving_c)


# --------------------------------------------------------------------------------------------
# Row order (issue 7, item 8)
# --------------------------------------------------------------------------------------------


def _shuffled(predictions: Predictions, seed: int) -> Predictions:
    return predictions.take(np.random.default_rng(seed).permutation(predictions.n_cases))


@pytest.mark.parametrize("unit", ["case", "patient"])
def test_shuffling_the_rows_changes_no_digit(tmp_path: Path, unit: str) -> None:
    predictions = read_predictions(write_predictions(tmp_path / "p.csv", n_cases=600))
    # Scores rounded to one decimal: many ties, across labels and across subgroups; one image
    # per patient for the case bootstrap.
    tied = dataclasses.replace(
        predictions,
        y_score=np.round(predictions.y_score, 1),
        patient_ids=predictions.case_ids if unit == "case" else predictions.patient_ids,
    )
    policy = quick_policy(
        {"kind": "metric", "metric": "auroc", "op": ">=", "value": 0.5, "on": "lower"},
        subgroups={"attributes": ["sex", "site"], "intersections": [["sex", "site"]]},
    )

    def digits(p: Predictions) -> dict[str, Any]:
        result = evaluate_predictions(p, policy=policy).model_dump(mode="json")
        result["provenance"].pop("created_at")
        return result

    reference = digits(tied)
    assert reference["provenance"]["bootstrap_unit"] == unit
    for seed in (1, 2):
        assert digits(_shuffled(tied, seed)) == reference


def test_binary_metrics_of_tied_cases_do_not_depend_on_their_order() -> None:
    rng = np.random.default_rng(5)
    labels = rng.random(300) < 0.4
    scores = np.round(np.clip(0.3 * labels + rng.random(300) * 0.7, 0, 1), 1)
    order = rng.permutation(300)
    first = binary_metrics(labels, scores, replicates=200)
    second = binary_metrics(labels[order], scores[order], replicates=200)
    assert first == second
