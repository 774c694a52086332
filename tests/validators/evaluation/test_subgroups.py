"""Tests of subgroup tables, paired disparities and fairness gaps.

Point estimates are checked against fairlearn's `MetricFrame` (with sklearn's metrics inside)
and its fairness functions; bootstrap intervals against fairlearn's `n_boot` intervals on the
same data, within Monte Carlo error.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fairlearn import metrics as fl
from numpy.typing import NDArray
from sklearn import metrics as sk

from validators import resampling as rs
from validators.evaluation import (
    EvaluationSettings,
    SubgroupAnalysisSpec,
    age_band_labels,
    binary_metrics,
    evaluate_binary_with_subgroups,
    evaluate_subgroups,
)
from validators.resampling import BootstrapPlan, score_order
from validators.results import (
    MISSING,
    OVERALL,
    BinaryMetrics,
    Disparity,
    EvaluationResult,
    FairnessGap,
    GroupResult,
    Provenance,
    SubgroupTable,
)

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]
ObjectArray = NDArray[np.object_]
THRESHOLD = 0.5
SETTINGS = EvaluationSettings.create(threshold=THRESHOLD)
POINTS = EvaluationSettings.create(threshold=THRESHOLD, ci="none")
"""Point estimates only: the fairness gaps are then the plug-in max - min, as fairlearn's."""


def make_cases(
    *,
    n: int,
    seed: int,
    prevalence: float = 0.3,
    missing_fraction: float = 0.0,
) -> tuple[BoolArray, FloatArray, dict[str, ObjectArray]]:
    """Return labels, probabilities and attributes (sex, site, age) with group differences."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(np.array(["F", "M"], dtype=object), n, p=[0.45, 0.55])
    site = rng.choice(np.array(["A", "B", "C"], dtype=object), n, p=[0.5, 0.3, 0.2])
    age = rng.integers(20, 90, n).astype(object)
    labels = rng.random(n) < prevalence
    # The model separates the classes less well at site C and for women: real disparities.
    signal = 1.6 - 0.8 * (site == "C") - 0.4 * (sex == "F")
    scores = np.round(1.0 / (1.0 + np.exp(-(rng.normal(size=n) + signal * labels - 0.8))), 3)
    if missing_fraction:
        sex[rng.random(n) < missing_fraction] = None
    return labels, scores, {"sex": sex, "site": site, "age": age}


def run(
    labels: BoolArray,
    scores: FloatArray,
    attributes: dict[str, ObjectArray],
    *,
    spec: SubgroupAnalysisSpec | None = None,
    settings: EvaluationSettings = SETTINGS,
    **kwargs: Any,
) -> tuple[list[SubgroupTable], list[Disparity], list[FairnessGap]]:
    return evaluate_subgroups(
        labels, scores, attributes, spec=spec or SubgroupAnalysisSpec(), settings=settings, **kwargs
    )


def table_of(tables: list[SubgroupTable], *attributes: str) -> SubgroupTable:
    return next(t for t in tables if tuple(t.attributes) == attributes)


def group_of(table: SubgroupTable, label: str) -> GroupResult:
    return next(g for g in table.groups if g.label == label)


def metrics_of(group: GroupResult) -> BinaryMetrics:
    assert isinstance(group.metrics, BinaryMetrics)
    return group.metrics


def value(estimate: Any) -> float:
    assert estimate.status == "ok", estimate.reason
    assert estimate.estimate is not None
    return float(estimate.estimate)


def gap_of(gaps: list[FairnessGap], name: str, *attributes: str) -> FairnessGap:
    return next(g for g in gaps if g.name == name and tuple(g.attributes) == attributes)


# Independent implementations for fairlearn's MetricFrame: y_pred is the score, thresholded
# here, so that AUROC (sklearn's) sees the scores and the rates see the decisions.
def _called(y_score: Any) -> BoolArray:
    return np.asarray(y_score) >= THRESHOLD


def fl_sensitivity(y_true: Any, y_score: Any) -> float:
    return float(sk.recall_score(y_true, _called(y_score), zero_division=np.nan))


def fl_specificity(y_true: Any, y_score: Any) -> float:
    return float(fl.true_negative_rate(y_true, _called(y_score)))


def fl_fpr(y_true: Any, y_score: Any) -> float:
    return float(fl.false_positive_rate(y_true, _called(y_score)))


def fl_ppv(y_true: Any, y_score: Any) -> float:
    return float(sk.precision_score(y_true, _called(y_score), zero_division=np.nan))


def fl_npv(y_true: Any, y_score: Any) -> float:
    return float(sk.precision_score(~np.asarray(y_true), ~_called(y_score), zero_division=np.nan))


def fl_selection_rate(y_true: Any, y_score: Any) -> float:
    return float(fl.selection_rate(y_true, _called(y_score)))


FAIRLEARN_METRICS = {
    "auroc": sk.roc_auc_score,
    "sensitivity": fl_sensitivity,
    "specificity": fl_specificity,
    "ppv": fl_ppv,
    "npv": fl_npv,
}


def ages(*values: object) -> ObjectArray:
    return np.array(values, dtype=object)


# --- age bands ------------------------------------------------------------------------------


def test_age_bands_are_left_closed_at_every_edge() -> None:
    bands = age_band_labels(ages(0, 17.99, 18, "39.5", 40, 64, "65", 101), (0, 18, 40, 65))
    assert bands.tolist() == ["0-18", "0-18", "18-40", "18-40", "40-65", "40-65", "65+", "65+"]


def test_missing_ages_have_no_band_and_ages_below_the_first_edge_get_their_own() -> None:
    bands = age_band_labels(ages(None, "", "  ", float("nan"), 5, 18.5, 70), (18, 65))
    assert bands.tolist() == [None, None, None, None, "<18", "18-65", "65+"]
    assert age_band_labels(ages(3, 45), (0, 17.5)).tolist() == ["0-17.5", "17.5+"]


@pytest.mark.parametrize("bad", ["forty", "-3", "inf", "NA"])
def test_an_unreadable_age_is_refused_naming_its_line(bad: str) -> None:
    with pytest.raises(ValueError, match=r"column 'age': line 4 has .* non-negative number"):
        age_band_labels(ages("30", None, bad, "50"), (0, 18, 40, 65))


@pytest.mark.parametrize("edges", [(), (18, 18), (40, 18), (-5, 18)])
def test_invalid_band_edges_are_refused(edges: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="age band"):
        SubgroupAnalysisSpec(age_bands=edges)


# --- groups and their point estimates against fairlearn ---------------------------------------


def test_group_point_estimates_equal_fairlearn_metric_frame() -> None:
    labels, scores, attributes = make_cases(n=3000, seed=1)
    spec = SubgroupAnalysisSpec(intersections=(("sex", "site"),))
    tables, _, _ = run(labels, scores, attributes, spec=spec, settings=SETTINGS, replicates=20)
    bands = age_band_labels(attributes["age"], spec.age_bands)
    features = {"sex": attributes["sex"], "site": attributes["site"], "age_band": bands}
    checked = 0
    for columns in (("sex",), ("site",), ("age_band",), ("sex", "site")):
        frame = fl.MetricFrame(
            metrics=FAIRLEARN_METRICS,
            y_true=labels,
            y_pred=scores,
            sensitive_features=pd.DataFrame({c: features[c] for c in columns}),
        )
        table = table_of(tables, *columns)
        assert len(table.groups) == len(frame.by_group)
        for key, row in frame.by_group.iterrows():
            levels = key if isinstance(key, tuple) else (key,)
            label = " & ".join(f"{c}={v}" for c, v in zip(columns, levels, strict=True))
            metrics = metrics_of(group_of(table, label))
            for name in FAIRLEARN_METRICS:
                assert value(getattr(metrics, name)) == pytest.approx(row[name], abs=1e-12)
                checked += 1
    assert checked == 5 * (2 + 3 + 3 + 6)


def test_group_counts_and_labels() -> None:
    labels, scores, attributes = make_cases(n=500, seed=2)
    tables, _, _ = run(labels, scores, attributes, replicates=10)
    assert [t.attributes for t in tables] == [["sex"], ["site"], ["age_band"]]
    sex = table_of(tables, "sex")
    assert [g.label for g in sex.groups] == ["sex=F", "sex=M"]
    assert sum(g.n_cases or 0 for g in sex.groups) == 500
    female = group_of(sex, "sex=F")
    assert female.attributes == {"sex": "F"}
    assert female.n_cases == int((attributes["sex"] == "F").sum())
    assert metrics_of(female).n_positive == int(labels[attributes["sex"] == "F"].sum())
    # Groups keep no curves; every metric is present, with an interval only where asked.
    assert metrics_of(female).roc_curve is None
    assert metrics_of(female).brier.method == "none"
    assert metrics_of(female).auroc.method == "bootstrap_percentile_case"
    assert female.n_patients is None
    age = table_of(tables, "age_band")
    assert [g.label for g in age.groups] == ["age_band=18-40", "age_band=40-65", "age_band=65+"]


def test_fairness_gaps_equal_fairlearn_when_every_group_is_large() -> None:
    labels, scores, attributes = make_cases(n=4000, seed=3)
    spec = SubgroupAnalysisSpec(attributes=("sex", "site"), intersections=(("sex", "site"),))
    # Without the bootstrap a gap is the plug-in max - min (with it, the debiased estimate).
    _, _, gaps = run(labels, scores, attributes, spec=spec, settings=POINTS)
    predicted = scores >= THRESHOLD
    for columns in (("sex",), ("site",), ("sex", "site")):
        features = pd.DataFrame({c: attributes[c] for c in columns})
        expected = {
            "equal_opportunity_difference": fl.equal_opportunity_difference(
                labels, predicted, sensitive_features=features
            ),
            "equalized_odds_difference": fl.equalized_odds_difference(
                labels, predicted, sensitive_features=features, agg="worst_case"
            ),
            "demographic_parity_difference": fl.demographic_parity_difference(
                labels, predicted, sensitive_features=features
            ),
        }
        for name, reference in expected.items():
            ours = gap_of(gaps, name, *columns)
            assert value(ours.value) == pytest.approx(reference, abs=1e-12), (name, columns)
            assert ours.value.method == "none" and not ours.value.has_interval


def test_fairness_gaps_leave_out_small_and_missing_groups() -> None:
    labels, scores, attributes = make_cases(n=2000, seed=4, missing_fraction=0.05)
    site = attributes["site"].copy()
    site[:8] = "D"  # a site with 8 cases: shown, flagged, left out of the gaps
    attributes["site"] = site
    tables, _, gaps = run(labels, scores, attributes, settings=POINTS)
    d = group_of(table_of(tables, "site"), "site=D")
    assert d.n_cases == 8 and d.insufficient_n and d.status == "ok"
    assert d.metrics is not None  # the committee view keeps the numbers
    large = site != "D"
    expected = fl.demographic_parity_difference(
        labels[large], scores[large] >= THRESHOLD, sensitive_features=site[large]
    )
    gap = gap_of(gaps, "demographic_parity_difference", "site")
    assert value(gap.value) == pytest.approx(expected, abs=1e-12)
    assert gap.value.reason == "over 3 groups: site=A, site=B, site=C"
    # The (missing) sex group is shown but is not a group of the gap.
    missing = group_of(table_of(tables, "sex"), f"sex={MISSING}")
    assert missing.n_cases == int(pd.isna(attributes["sex"]).sum()) > 0
    sex_gap = gap_of(gaps, "equal_opportunity_difference", "sex")
    assert sex_gap.value.reason == "over 2 groups: sex=F, sex=M"


# --- bootstrap intervals against fairlearn's ---------------------------------------------------


def test_bootstrap_intervals_agree_with_fairlearn_within_monte_carlo_error() -> None:
    labels, scores, attributes = make_cases(n=4000, seed=5)
    spec = SubgroupAnalysisSpec(attributes=("sex",), metrics=("auroc", "sensitivity"))
    tables, _, gaps = run(labels, scores, attributes, spec=spec, replicates=1000, seed=0)
    frame = fl.MetricFrame(
        metrics={
            "auroc": sk.roc_auc_score,
            "sensitivity": fl_sensitivity,
            "selection_rate": fl_selection_rate,
        },
        y_true=labels,
        y_pred=scores,
        sensitive_features=pd.Series(attributes["sex"], name="sex"),
        n_boot=100,
        ci_quantiles=[0.025, 0.5, 0.95, 0.975],
        random_state=0,
    )
    lower, _, _, upper = frame.by_group_ci

    # Monte Carlo error of a 2.5% or 97.5% bootstrap quantile from B replicates, for a normal
    # sampling distribution of sd sigma: sigma * sqrt(q (1 - q) / B) / phi(z_q) = 0.267 sigma at
    # B = 100 (fairlearn) and 0.085 sigma at B = 1000 (ours); their difference has sd 0.28 sigma.
    # sigma is our interval's width / 3.92. We allow 4 such sd: 0.29 x the interval's width.
    def tolerance(lo: float, hi: float) -> float:
        return 4 * 0.28 * (hi - lo) / 3.92

    for level in ("F", "M"):
        metrics = metrics_of(group_of(table_of(tables, "sex"), f"sex={level}"))
        for name in ("auroc", "sensitivity"):
            ours = getattr(metrics, name)
            assert ours.lower is not None and ours.upper is not None
            allowed = tolerance(ours.lower, ours.upper)
            assert ours.lower == pytest.approx(lower.loc[level, name], abs=allowed)
            assert ours.upper == pytest.approx(upper.loc[level, name], abs=allowed)
    # Fairlearn's between-groups differences are taken per replicate, as ours: paired. A gap
    # is reported debiased, 2 gap - median, with the upper bound max(estimate, gap) + (q95 -
    # median) of the replicates: built from fairlearn's replicate quantiles, they agree within
    # Monte Carlo error. Quantile errors at B = 100 (fairlearn): 0.125 sigma (median), 0.215
    # sigma (95%); the estimate's difference has sd about 0.26 sigma, the bound's about 0.34
    # sigma (sigma = our bound's distance from the estimate / 1.645); 4 sd are allowed.
    plug_in = frame.difference(method="between_groups")
    _, median, top, _ = frame.difference_ci(method="between_groups")
    for gap_name, metric in (
        ("equal_opportunity_difference", "sensitivity"),
        ("demographic_parity_difference", "selection_rate"),
    ):
        ours = gap_of(gaps, gap_name, "sex").value
        assert ours.sides == "upper" and ours.lower is None and ours.upper is not None
        sigma = (ours.upper - value(ours)) / 1.645
        theirs = 2 * plug_in[metric] - median[metric]
        assert value(ours) == pytest.approx(theirs, abs=4 * 0.26 * sigma)
        bound = max(theirs, plug_in[metric]) + top[metric] - median[metric]
        assert ours.upper == pytest.approx(bound, abs=4 * 0.34 * sigma)


def test_a_group_of_every_case_has_the_overall_intervals_of_binary_metrics() -> None:
    # Same sort, same plan: replicate r draws the same cases here as in `binary_metrics`.
    labels, scores, _ = make_cases(n=800, seed=6)
    patients = np.array([f"p{i // 2}" for i in range(800)])
    view = np.full(800, "PA", dtype=object)
    spec = SubgroupAnalysisSpec(attributes=("view",), metrics=("auroc", "sensitivity", "ppv"))
    tables, _, _ = run(
        labels, scores, {"view": view}, spec=spec, replicates=200, seed=3, patient_ids=patients
    )
    overall = binary_metrics(labels, scores, replicates=200, seed=3, groups=patients)
    group = metrics_of(tables[0].groups[0])
    for name in ("auroc", "sensitivity", "ppv"):
        assert getattr(group, name) == getattr(overall, name)
    assert group.n_patients == overall.n_patients == 400
    assert group.auroc.method == "bootstrap_percentile_patient"
    assert group.auroc.n == 400


# --- intersections, missing values, references ----------------------------------------------


def test_empty_intersections_are_shown() -> None:
    labels, scores, attributes = make_cases(n=600, seed=7)
    attributes["site"][attributes["sex"] == "F"] = "A"  # no woman at sites B and C
    spec = SubgroupAnalysisSpec(attributes=("sex", "site"), intersections=(("sex", "site"),))
    tables, disparities, _ = run(labels, scores, attributes, spec=spec, replicates=20)
    crossed = table_of(tables, "sex", "site")
    assert [g.label for g in crossed.groups] == [
        "sex=F & site=A",
        "sex=F & site=B",
        "sex=F & site=C",
        "sex=M & site=A",
        "sex=M & site=B",
        "sex=M & site=C",
    ]
    empty = group_of(crossed, "sex=F & site=B")
    assert empty.status == "empty"
    assert empty.n_cases == 0 and empty.metrics is None
    assert empty.attributes == {"sex": "F", "site": "B"}
    assert not [d for d in disparities if d.group == "sex=F & site=B"]


def test_missing_values_form_a_group_of_their_own() -> None:
    labels, scores, attributes = make_cases(n=900, seed=8, missing_fraction=0.1)
    attributes["age"][:30] = None
    tables, _, _ = run(labels, scores, attributes, replicates=20)
    sex = table_of(tables, "sex")
    assert sex.groups[-1].label == f"sex={MISSING}"
    assert sum(g.n_cases or 0 for g in sex.groups) == 900
    age = table_of(tables, "age_band")
    assert group_of(age, f"age_band={MISSING}").n_cases == 30


def test_disparities_to_overall_and_to_the_largest_group() -> None:
    labels, scores, attributes = make_cases(n=3000, seed=9)
    spec = SubgroupAnalysisSpec(attributes=("site",), disparity_metrics=("sensitivity", "auroc"))
    tables, disparities, _ = run(labels, scores, attributes, spec=spec, replicates=200)
    overall = binary_metrics(labels, scores, ci="none")
    site = table_of(tables, "site")
    # Site A is the largest: the reference; it is compared to overall only.
    assert {d.reference for d in disparities if d.group == "site=A"} == {"overall"}
    for label in ("site=B", "site=C"):
        group = metrics_of(group_of(site, label))
        reference = metrics_of(group_of(site, "site=A"))
        for metric in ("sensitivity", "auroc"):
            found = {
                (d.kind, d.reference): d.value
                for d in disparities
                if d.group == label and d.metric == metric
            }
            own = value(getattr(group, metric))
            assert value(found["difference", "overall"]) == pytest.approx(
                own - value(getattr(overall, metric)), abs=1e-12
            )
            assert value(found["ratio", "site=A"]) == pytest.approx(
                own / value(getattr(reference, metric)), abs=1e-12
            )
            assert found["difference", "site=A"].n_cases == (
                (group.n_cases or 0) + (reference.n_cases or 0)
            )
            assert found["difference", "overall"].n_cases == 3000
    # Site C is worse by design: its AUROC is below overall, with the interval excluding 0.
    c = next(
        d
        for d in disparities
        if d.group == "site=C" and d.metric == "auroc" and d.kind == "difference"
    )
    assert c.value.upper is not None and c.value.upper < 0


def test_paired_disparity_interval_is_narrower_than_an_unpaired_one() -> None:
    # Site A holds half the cases, so its metric and overall's move together across replicates.
    labels, scores, attributes = make_cases(n=2000, seed=10)
    spec = SubgroupAnalysisSpec(
        attributes=("site",), metrics=("auroc",), disparity_metrics=("auroc",)
    )
    tables, disparities, _ = run(labels, scores, attributes, spec=spec, replicates=500)
    overall = binary_metrics(labels, scores, replicates=500)
    group = metrics_of(group_of(table_of(tables, "site"), "site=A")).auroc
    paired = next(d.value for d in disparities if d.group == "site=A" and d.kind == "difference")
    assert group.lower is not None and group.upper is not None
    assert overall.auroc.lower is not None and overall.auroc.upper is not None
    assert paired.lower is not None and paired.upper is not None
    # Independent replicates would give a difference of width about sqrt(w_group^2 + w_all^2).
    unpaired = math.hypot(group.upper - group.lower, overall.auroc.upper - overall.auroc.lower)
    assert paired.upper - paired.lower < 0.8 * unpaired


def test_undefined_metrics_and_disparities_say_why() -> None:
    labels, scores, attributes = make_cases(n=600, seed=11)
    site = attributes["site"]
    labels = labels & (site != "C")  # no positive case at site C
    spec = SubgroupAnalysisSpec(attributes=("site",), disparity_metrics=("sensitivity",))
    tables, disparities, gaps = run(labels, scores, attributes, spec=spec, replicates=50)
    c = metrics_of(group_of(table_of(tables, "site"), "site=C"))
    assert c.sensitivity.status == "undefined"
    assert c.sensitivity.reason == "no positive cases (TP + FN = 0)"
    found = [d for d in disparities if d.group == "site=C"]
    assert found and all(d.value.status == "undefined" for d in found)
    assert found[0].value.reason == (
        "sensitivity is undefined in site=C: no positive cases (TP + FN = 0)"
    )
    # Equal opportunity is taken over the groups whose TPR is defined.
    gap = gap_of(gaps, "equal_opportunity_difference", "site")
    assert gap.value.reason == "over 2 groups: site=A, site=B"


def test_a_ratio_to_a_zero_reference_is_undefined() -> None:
    labels = np.array([1, 0] * 30, dtype=bool)
    scores = np.where(np.arange(60) < 40, 0.1, 0.9)  # A never calls positive
    site = np.array(["A"] * 40 + ["B"] * 20, dtype=object)
    spec = SubgroupAnalysisSpec(attributes=("site",), disparity_metrics=("sensitivity",))
    _, disparities, _ = run(labels, scores, {"site": site}, spec=spec, replicates=20)
    ratio = next(
        d
        for d in disparities
        if d.group == "site=B" and d.reference == "site=A" and d.kind == "ratio"
    )
    assert ratio.value.status == "undefined"
    assert ratio.value.reason == "sensitivity is 0 in site=A, so the ratio is undefined"


# --- behaviour of the engine --------------------------------------------------------------


def test_results_are_reproducible_with_the_seed() -> None:
    labels, scores, attributes = make_cases(n=700, seed=12)
    first = run(labels, scores, attributes, replicates=100, seed=4)
    assert run(labels, scores, attributes, replicates=100, seed=4) == first
    assert run(labels, scores, attributes, replicates=100, seed=5) != first


def test_many_weight_blocks_give_the_same_results_as_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import validators.resampling.plan as b

    labels, scores, attributes = make_cases(n=300, seed=12)
    one_block = run(labels, scores, attributes, replicates=50, seed=4)
    monkeypatch.setattr(b, "BLOCK_ELEMENTS", 300 * 7)  # blocks of 7 replicates, the last of 1
    assert run(labels, scores, attributes, replicates=50, seed=4) == one_block


def test_twin_groups_have_paired_intervals_of_no_width() -> None:
    # Every case is in the file twice, once at site A and once at site B, under one patient: a
    # resample moves both copies, so paired differences are exactly 0 and ratios exactly 1.
    labels, scores, _ = make_cases(n=400, seed=3)
    site = np.array(["A"] * 400 + ["B"] * 400, dtype=object)
    spec = SubgroupAnalysisSpec(attributes=("site",), disparity_metrics=("auroc", "sensitivity"))
    _, disparities, gaps = run(
        np.concatenate([labels, labels]),
        np.concatenate([scores, scores]),
        {"site": site},
        spec=spec,
        replicates=100,
        patient_ids=np.array([f"p{i}" for i in range(400)] * 2),
    )
    between = [d for d in disparities if d.reference != OVERALL]
    assert len(between) == 4  # B vs A: two metrics, difference and ratio
    for d in between:
        target = 0.0 if d.kind == "difference" else 1.0
        assert d.value.lower == d.value.upper == target, d
    assert gaps and all(g.value.upper == 0.0 for g in gaps)


def test_ratio_intervals_hold_their_estimate_and_equalized_odds_bounds_equal_opportunity() -> None:
    labels, scores, attributes = make_cases(n=3000, seed=9)
    spec = SubgroupAnalysisSpec(attributes=("site",), disparity_metrics=("sensitivity", "auroc"))
    _, disparities, gaps = run(labels, scores, attributes, spec=spec, replicates=200)
    ratios = [d.value for d in disparities if d.kind == "ratio" and d.value.status == "ok"]
    assert ratios
    for v in ratios:
        assert v.lower is not None and v.upper is not None and v.estimate is not None
        assert v.lower <= v.estimate <= v.upper
    # Gaps are debiased with a one-sided upper bound: no lower bound, the estimate below the
    # bound. (The debiased estimates are not ordered like the plug-in gaps: each subtracts its
    # own bootstrap bias.)
    for gap in gaps:
        v = gap.value
        assert v.sides == "upper" and v.lower is None and not v.lower_unbounded, gap
        assert v.upper is not None and value(v) <= v.upper, gap


def _replicate_tprs(
    labels: BoolArray, scores: FloatArray, groups: ObjectArray, *, replicates: int, seed: int
) -> dict[str, FloatArray]:
    """Return each group's true-positive rate per case-bootstrap replicate, computed directly.

    The engine sorts cases with `score_order` and draws `BootstrapPlan` weights over them.
    """
    order = score_order(labels, scores)
    weights = BootstrapPlan.create(labels.shape[0], replicates=replicates, seed=seed).weights(
        0, replicates
    )
    y, called, g = labels[order], scores[order] >= THRESHOLD, groups[order]
    out = {}
    for level in sorted(set(g)):
        member = g == level
        hits = weights[:, member & y & called].sum(axis=1)
        out[str(level)] = hits / weights[:, member & y].sum(axis=1)
    return out


@pytest.mark.parametrize("seed", [21, 22])
def test_fairness_gap_is_debiased_with_a_one_sided_upper_bound(seed: int) -> None:
    labels, scores, attributes = make_cases(n=1500, seed=seed)
    spec = SubgroupAnalysisSpec(
        attributes=("site",), metrics=("sensitivity",), disparity_metrics=()
    )
    _, _, gaps = run(labels, scores, attributes, spec=spec, replicates=300, seed=seed)
    gap = gap_of(gaps, "equal_opportunity_difference", "site").value
    site = attributes["site"]
    point = [
        float(np.mean(scores[(site == level) & labels] >= THRESHOLD)) for level in ("A", "B", "C")
    ]
    plug_in = max(point) - min(point)
    rates = np.stack(
        list(_replicate_tprs(labels, scores, site, replicates=300, seed=seed).values())
    )
    spread = rates.max(axis=0) - rates.min(axis=0)
    median, top = np.quantile(spread, [0.5, 0.95])
    assert gap.sides == "upper" and gap.lower is None and not gap.lower_unbounded
    assert gap.method == "debiased_bootstrap_upper_case"
    assert value(gap) == pytest.approx(2 * plug_in - median, abs=1e-12)
    expected_upper = max(2 * plug_in - median, plug_in) + (top - median)
    assert gap.upper == pytest.approx(expected_upper, abs=1e-12)


def test_a_fairness_gap_estimate_is_never_above_its_upper_bound() -> None:
    # Groups unrelated to the outcome: true gaps of 0, where the plug-in's bias is largest and
    # the debiased estimate can be negative. Still never above its bound.
    seen_negative = False
    for seed in range(6):
        labels, scores, attributes = make_cases(n=600, seed=30 + seed)
        attributes = {
            "noise": np.random.default_rng(seed).choice(np.array(list("PQRS"), dtype=object), 600)
        }
        spec = SubgroupAnalysisSpec(
            attributes=("noise",), metrics=("sensitivity",), disparity_metrics=()
        )
        _, _, gaps = run(labels, scores, attributes, spec=spec, replicates=200, seed=seed)
        for gap in gaps:
            v = gap.value
            assert v.status == "ok" and v.upper is not None and v.sides == "upper"
            assert value(v) <= v.upper
            seen_negative |= value(v) < 0
    assert seen_negative


def test_count_only_metrics_give_the_same_intervals_as_with_a_ranking_metric() -> None:
    # Without a ranking metric, counts come from one matrix product for all groups; with one,
    # from the ranking kernel: the two paths must agree to the last digit.
    labels, scores, attributes = make_cases(n=900, seed=13)
    counts = SubgroupAnalysisSpec(
        metrics=("sensitivity", "ppv"), disparity_metrics=("sensitivity",)
    )
    ranked = SubgroupAnalysisSpec(
        metrics=("sensitivity", "ppv", "auroc"), disparity_metrics=("sensitivity",)
    )
    a_tables, a_disparities, a_gaps = run(labels, scores, attributes, spec=counts, replicates=80)
    b_tables, b_disparities, b_gaps = run(labels, scores, attributes, spec=ranked, replicates=80)
    for a, b in zip(a_tables, b_tables, strict=True):
        for group_a, group_b in zip(a.groups, b.groups, strict=True):
            for name in ("sensitivity", "ppv"):
                assert getattr(group_a.metrics, name) == getattr(group_b.metrics, name)
    assert a_disparities == b_disparities
    assert a_gaps == b_gaps


def test_other_metrics_get_intervals_through_the_full_population() -> None:
    labels, scores, attributes = make_cases(n=600, seed=14)
    spec = SubgroupAnalysisSpec(attributes=("sex",), metrics=("brier", "auroc"))
    tables, _, _ = run(labels, scores, attributes, spec=spec, replicates=50)
    female = metrics_of(group_of(table_of(tables, "sex"), "sex=F"))
    mask = attributes["sex"] == "F"
    assert value(female.brier) == pytest.approx(
        sk.brier_score_loss(labels[mask], scores[mask]), abs=1e-12
    )
    assert female.brier.lower is not None and female.brier.method == "bootstrap_percentile_case"


def test_without_intervals_there_are_point_estimates_only() -> None:
    labels, scores, attributes = make_cases(n=400, seed=15)
    settings = EvaluationSettings.create(ci="none")
    tables, disparities, gaps = run(labels, scores, attributes, settings=settings)
    auroc = metrics_of(tables[0].groups[0]).auroc
    assert auroc.method == "none" and auroc.lower is None and auroc.status == "ok"
    assert all(d.value.method == "none" for d in disparities)
    assert all(g.value.lower is None for g in gaps)


def test_wilson_intervals_in_groups_and_mover_or_bootstrap_for_disparities() -> None:
    labels, scores, attributes = make_cases(n=400, seed=16)
    settings = EvaluationSettings.create(ci="wilson")
    tables, disparities, _ = run(labels, scores, attributes, settings=settings, replicates=50)
    sensitivity = metrics_of(tables[0].groups[0]).sensitivity
    assert sensitivity.method == "wilson" and sensitivity.lower is not None
    methods = {d.metric: d.value.method for d in disparities if d.value.status == "ok"}
    assert methods == {
        "auroc": "bootstrap_percentile_case",
        **{metric: "mover_wilson" for metric in ("sensitivity", "specificity", "ppv", "npv")},
    }


def test_logit_scores_and_their_threshold() -> None:
    labels, scores, attributes = make_cases(n=500, seed=17)
    logits = np.log(np.clip(scores, 1e-6, 1 - 1e-6) / np.clip(1 - scores, 1e-6, 1))
    settings = EvaluationSettings.create(scores="logit", threshold=0.0)
    tables, _, _ = run(labels, logits, attributes, settings=settings, replicates=20)
    female = metrics_of(group_of(table_of(tables, "sex"), "sex=F"))
    mask = attributes["sex"] == "F"
    expected = sk.recall_score(labels[mask], logits[mask] >= 0.0)
    assert value(female.sensitivity) == pytest.approx(expected, abs=1e-12)


def test_unknown_and_identifier_like_attributes_are_refused() -> None:
    labels, scores, attributes = make_cases(n=300, seed=18)
    with pytest.raises(ValueError, match="attribute 'race' is not a column"):
        run(labels, scores, attributes, spec=SubgroupAnalysisSpec(attributes=("race",)))
    attributes["accession"] = np.array([f"x{i}" for i in range(300)], dtype=object)
    with pytest.raises(ValueError, match="'accession' has 300 distinct values"):
        run(labels, scores, attributes, replicates=10)
    with pytest.raises(ValueError, match="one value per case"):
        run(labels, scores, {"sex": attributes["sex"][:10]})


@pytest.mark.parametrize(
    "spec",
    [
        {"metrics": ("auroc", "nonsense")},
        {"disparity_metrics": ("auroc", "auroc")},
        {"intersections": (("sex",),)},
        {"intersections": (("age", "age_band"),)},
        {"min_group_size": 0},
    ],
)
def test_invalid_specs_are_refused(spec: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SubgroupAnalysisSpec(**spec)


def test_results_fit_the_evaluation_result_and_round_trip_through_json() -> None:
    labels, scores, attributes = make_cases(n=500, seed=19)
    spec = SubgroupAnalysisSpec(intersections=(("sex", "age"),))
    tables, disparities, gaps = run(labels, scores, attributes, spec=spec, replicates=30)
    result = EvaluationResult(
        task="binary",
        provenance=Provenance.capture(
            seed=0, replicates=30, level=0.95, ci_method="bootstrap", bootstrap_unit="case"
        ),
        overall=binary_metrics(labels, scores, replicates=30),
        subgroups=tables,
        disparities=disparities,
        fairness=gaps,
    )
    assert EvaluationResult.model_validate_json(result.model_dump_json()) == result
    assert table_of(tables, "sex", "age_band").groups[0].label == "sex=F & age_band=18-40"


@pytest.mark.parametrize("patients", [False, True])
def test_overall_in_one_pass_equals_binary_metrics(patients: bool) -> None:
    labels, scores, attributes = make_cases(n=700, seed=20)
    ids = np.array([f"p{i // 3}" for i in range(700)]) if patients else None
    overall, tables, disparities, gaps = evaluate_binary_with_subgroups(
        labels,
        scores,
        attributes,
        spec=SubgroupAnalysisSpec(),
        settings=SETTINGS,
        patient_ids=ids,
        replicates=120,
        seed=2,
    )
    assert overall == binary_metrics(labels, scores, replicates=120, seed=2, groups=ids)
    assert (tables, disparities, gaps) == run(
        labels, scores, attributes, patient_ids=ids, replicates=120, seed=2
    )


def test_overall_with_the_spec_metrics_only() -> None:
    labels, scores, attributes = make_cases(n=500, seed=21)
    spec = SubgroupAnalysisSpec(metrics=("auroc", "sensitivity"))
    overall, _, _, _ = evaluate_binary_with_subgroups(
        labels,
        scores,
        attributes,
        spec=spec,
        settings=SETTINGS,
        replicates=100,
        overall_metrics="spec",
    )
    full = binary_metrics(labels, scores, replicates=100)
    assert overall.auroc == full.auroc and overall.sensitivity == full.sensitivity
    assert overall.brier.method == "none" and overall.roc_curve == full.roc_curve


def test_no_attribute_columns_give_no_tables() -> None:
    labels, scores, _ = make_cases(n=100, seed=22)
    assert run(labels, scores, {}, replicates=10) == ([], [], [])


# --------------------------------------------------------------------------------------------
# Proportions at the edges and under clustering (issue 7, items 4 and 7)
# --------------------------------------------------------------------------------------------


def test_a_group_that_detects_every_positive_gets_an_interval_with_width() -> None:
    # Site B: 15 positives, all detected. A percentile bootstrap says 1.000 to 1.000.
    rng = np.random.default_rng(40)
    labels = np.r_[np.ones(15, bool), np.zeros(45, bool), rng.random(300) < 0.3]
    scores = np.r_[np.full(15, 0.9), np.full(45, 0.2), rng.random(300)]
    site = np.array(["B"] * 60 + ["A"] * 300, dtype=object)
    tables, disparities, _ = run(labels, scores, {"site": site}, replicates=200)
    sensitivity = metrics_of(group_of(tables[0], "site=B")).sensitivity
    assert sensitivity.estimate == 1.0 and sensitivity.method == "wilson"
    # The exact (Clopper-Pearson) lower bound is 0.782; Wilson's is 0.796.
    assert sensitivity.lower == pytest.approx(0.7961, abs=1e-4) and sensitivity.upper == 1.0
    to_overall = next(
        d
        for d in disparities
        if d.group == "site=B"
        and d.reference == OVERALL
        and d.metric == "sensitivity"
        and d.kind == "difference"
    )
    assert to_overall.value.method == "mover_wilson"
    assert to_overall.value.lower is not None and to_overall.value.upper is not None
    assert to_overall.value.lower < to_overall.value.estimate < to_overall.value.upper


def test_a_disparity_to_overall_is_the_group_against_the_rest_scaled_by_its_share() -> None:
    labels, scores, attributes = make_cases(n=800, seed=41)
    patients = np.array([f"p{i // 2}" for i in range(800)])
    # A patient's two images share a site: the group and the rest have no patient in common.
    attributes["site"] = np.repeat(attributes["site"][::2], 2)
    spec = SubgroupAnalysisSpec(attributes=("site",), disparity_metrics=("sensitivity",))
    _, disparities, _ = run(
        labels, scores, attributes, spec=spec, replicates=50, patient_ids=patients
    )
    site = attributes["site"]
    level = SETTINGS.level
    called = scores >= SETTINGS.threshold
    number = np.unique(patients, return_inverse=True)[1]

    def totals(mask: NDArray[np.bool_]) -> tuple[NDArray[Any], NDArray[Any]]:
        hits = np.bincount(number, weights=mask & labels & called, minlength=400)
        return hits, np.bincount(number, weights=mask & labels, minlength=400)

    for group_level in np.unique(site):
        label = f"site={group_level}"
        found = next(
            d
            for d in disparities
            if d.group == label and d.reference == OVERALL and d.kind == "difference"
        )
        assert found.value.method == "mover_wilson_clustered"
        # Independent computation: per patient (positives detected, positives) in the group
        # and in the rest, clustered Wilson on each, MOVER with r = 0 (disjoint patients).
        inside = site == group_level
        group, rest = totals(inside), totals(~inside)
        g = rs.clustered_wilson_interval(*group, level)
        o = rs.clustered_wilson_interval(*rest, level)
        share = group[1].sum() / (group[1].sum() + rest[1].sum())
        r = rs.cluster_correlation(*group, *rest)
        expected = rs.group_minus_overall(
            g.estimate, g.lower, g.upper, o.estimate, o.lower, o.upper, share, r
        )
        assert r == 0.0
        assert found.value.lower == pytest.approx(float(expected.lower), abs=1e-12)
        assert found.value.upper == pytest.approx(float(expected.upper), abs=1e-12)
