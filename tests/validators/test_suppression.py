"""Tests of small-cell suppression: the vendor view withholds small and derivable counts.

The central check is an attack: from the vendor JSON alone, an attacker writes every released
count as a linear equation over the cells of the full cross-classification of the attributes
(non-negative unknowns: positive and negative cases per cell) and asks a linear program for the
smallest and largest value each withheld count can take. A count is recovered when the two meet.
The attacker knows nothing of how `vendor_view` chose what to withhold.
"""

from __future__ import annotations

import json
from itertools import product
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.optimize import linprog

from validators import suppression
from validators.bootstrap import EvaluationSettings
from validators.fairness import MISSING, SubgroupSpec, evaluate_subgroups
from validators.metrics import binary_metrics, multilabel_metrics
from validators.results import (
    BinaryMetrics,
    CriterionResult,
    EvaluationResult,
    GroupResult,
    Provenance,
    Verdict,
)
from validators.suppression import committee_view, vendor_view

ObjectArray = NDArray[np.object_]
Json = dict[str, Any]


def make_result(
    labels: NDArray[np.bool_],
    scores: NDArray[np.float64],
    attributes: dict[str, ObjectArray],
    *,
    spec: SubgroupSpec | None = None,
    patient_ids: NDArray[np.str_] | None = None,
    verdict: Verdict | None = None,
) -> EvaluationResult:
    """Return a committee result with overall, subgroup tables, disparities and gaps."""
    spec = spec or SubgroupSpec()
    settings = EvaluationSettings.create()
    tables, disparities, gaps = evaluate_subgroups(
        labels,
        scores,
        attributes,
        spec=spec,
        settings=settings,
        patient_ids=patient_ids,
        replicates=30,
    )
    return EvaluationResult(
        task="binary",
        provenance=Provenance.capture(
            seed=0,
            replicates=30,
            level=0.95,
            ci_method="bootstrap",
            bootstrap_unit="case" if patient_ids is None else "patient",
        ),
        overall=binary_metrics(labels, scores, replicates=30, groups=patient_ids),
        subgroups=tables,
        disparities=disparities,
        fairness=gaps,
        verdict=verdict,
    )


def cases(
    *,
    n: int,
    seed: int,
    sizes: dict[str, dict[str, float]],
    prevalence: float = 0.3,
) -> tuple[NDArray[np.bool_], NDArray[np.float64], dict[str, ObjectArray]]:
    """Return labels, scores and attributes drawn with the given level probabilities."""
    rng = np.random.default_rng(seed)
    attributes = {}
    for name, levels in sizes.items():
        values = np.array([None if k == MISSING else k for k in levels], dtype=object)
        p = np.array(list(levels.values()))
        attributes[name] = values[rng.choice(len(values), n, p=p / p.sum())]
    labels = rng.random(n) < prevalence
    scores = np.round(1 / (1 + np.exp(-(rng.normal(size=n) + 1.5 * labels - 0.8))), 3)
    return labels, scores, attributes


def with_exact_counts(
    counts: dict[str, int], *, seed: int = 0, other: dict[str, int] | None = None
) -> tuple[NDArray[np.bool_], NDArray[np.float64], dict[str, ObjectArray]]:
    """Return cases whose `site` has exactly the given counts (and `sex` if `other`)."""
    rng = np.random.default_rng(seed)
    site = np.array([k for k, c in counts.items() for _ in range(c)], dtype=object)
    n = site.shape[0]
    labels = rng.random(n) < 0.3
    scores = np.round(1 / (1 + np.exp(-(rng.normal(size=n) + 1.5 * labels - 0.8))), 3)
    attributes = {"site": site}
    if other is not None:
        sex = np.array([k for k, c in other.items() for _ in range(c)], dtype=object)
        attributes["sex"] = sex[rng.permutation(n)]
    return labels, scores, attributes


# --- the attacker -----------------------------------------------------------------------------


def attack(vendor: Json) -> list[str]:
    """Return the withheld counts that the released numbers pin down (should be none)."""
    tables = vendor["subgroups"]
    names = list(dict.fromkeys(a for t in tables for a in t["attributes"]))
    levels = {
        a: sorted({g["attributes"][a] for t in tables for g in t["groups"] if a in g["attributes"]})
        for a in names
    }
    cells = list(product(*(levels[a] for a in names)))
    k = len(cells)

    def member(attributes: dict[str, str]) -> NDArray[np.float64]:
        return np.array(
            [all(cell[names.index(a)] == v for a, v in attributes.items()) for cell in cells],
            dtype=np.float64,
        )

    # Unknowns: positives per cell, then negatives per cell.
    def positives(m: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.concatenate([m, np.zeros(k)])

    def negatives(m: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.concatenate([np.zeros(k), m])

    rows: list[NDArray[np.float64]] = []
    values: list[float] = []
    targets: list[tuple[str, NDArray[np.float64]]] = []

    def learn(label: str, m: NDArray[np.float64], metrics: Json | None, n: int | None) -> None:
        n_pos = None if metrics is None else metrics["n_positive"]
        n_neg = None if metrics is None else metrics["n_negative"]
        for what, row, known in (
            ("n_cases", positives(m) + negatives(m), n),
            ("n_positive", positives(m), n_pos),
            ("n_negative", negatives(m), n_neg),
        ):
            if known is None:
                targets.append((f"{label}: {what}", row))
            else:
                rows.append(row)
                values.append(float(known))

    everyone = np.ones(k)
    learn("overall", everyone, vendor["overall"], vendor["overall"]["n_cases"])
    for table in tables:
        for g in table["groups"]:
            m = member(g["attributes"])
            if g["status"] == "empty":
                rows += [positives(m), negatives(m)]
                values += [0.0, 0.0]
            else:
                learn(g["label"], m, g["metrics"], g["n_cases"])
    a_eq = np.array(rows) if rows else None
    b_eq = np.array(values) if rows else None
    recovered = []
    for label, row in targets:
        low = linprog(row, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
        high = linprog(-row, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
        assert low.status == 0, "the released numbers must be consistent"
        if high.status == 0 and -high.fun - low.fun < 0.5:
            recovered.append(f"{label} = {low.fun:.0f}")
    return recovered


def vendor_json(result: EvaluationResult) -> Json:
    loaded: Json = json.loads(vendor_view(result).model_dump_json())
    return loaded


def test_the_attacker_recovers_a_cell_withheld_without_a_complement() -> None:
    labels, scores, attributes = with_exact_counts({"A": 300, "B": 200, "C": 5})
    committee: Json = json.loads(make_result(labels, scores, attributes).model_dump_json())
    naive = json.loads(json.dumps(committee))
    small = naive["subgroups"][0]["groups"][2]
    assert small["label"] == "site=C"
    small.update(status="suppressed", n_cases=None, n_patients=None, metrics=None)
    assert attack(naive) == [
        "site=C: n_cases = 5",
        "site=C: n_positive = "
        + str(committee["subgroups"][0]["groups"][2]["metrics"]["n_positive"]),
        "site=C: n_negative = "
        + str(committee["subgroups"][0]["groups"][2]["metrics"]["n_negative"]),
    ]


# --- what the vendor sees ---------------------------------------------------------------------


def test_a_small_group_is_suppressed_with_the_next_smallest_as_complement() -> None:
    labels, scores, attributes = with_exact_counts({"A": 300, "B": 200, "C": 40, "D": 5})
    vendor = vendor_view(make_result(labels, scores, attributes))
    groups = {g.label: g for g in vendor.subgroups[0].groups}
    assert groups["site=D"].status == "suppressed"
    assert groups["site=C"].status == "suppressed"  # the complement: D = 545 - A - B - C
    assert groups["site=C"].insufficient_n  # withheld groups look alike
    assert groups["site=A"].status == groups["site=B"].status == "ok"
    assert groups["site=A"].n_cases == 300
    assert vendor.view == "vendor"
    assert attack(json.loads(vendor.model_dump_json())) == []


def test_withheld_groups_holding_few_cases_together_are_widened() -> None:
    # C and D, one case each: each withheld, neither derivable alone, but overall - A - B = 2
    # and a withheld non-empty group holds at least one case, so each holds exactly one.
    labels, scores, attributes = with_exact_counts({"A": 300, "B": 200, "C": 1, "D": 1})
    vendor = vendor_view(make_result(labels, scores, attributes))
    groups = {g.label: g for g in vendor.subgroups[0].groups}
    assert groups["site=C"].status == groups["site=D"].status == "suppressed"
    assert groups["site=B"].status == "suppressed"  # so the withheld total is 202, not 2
    assert groups["site=A"].n_cases == 300


def test_withheld_classes_summing_to_zero_are_widened() -> None:
    # B and C have no positive case: withholding both still tells that each has 0 positives.
    site = np.array(["A"] * 400 + ["B"] * 300 + ["C"] * 200, dtype=object)
    rng = np.random.default_rng(1)
    labels = np.zeros(900, dtype=bool)
    labels[:400] = rng.random(400) < 0.3
    scores = np.round(1 / (1 + np.exp(-(rng.normal(size=900) + 1.5 * labels - 0.8))), 3)
    vendor = vendor_view(make_result(labels, scores, {"site": site}))
    groups = {g.label: g for g in vendor.subgroups[0].groups}
    for label in ("site=B", "site=C"):
        assert isinstance(groups[label].metrics, BinaryMetrics)
        assert groups[label].metrics.n_positive is None
    assert attack(json.loads(vendor.model_dump_json())) == []
    assert isinstance(groups["site=A"].metrics, BinaryMetrics)
    assert groups["site=A"].metrics.n_positive is None  # widened: the total would be 0


def test_a_criterion_quoting_a_withheld_gap_is_withheld() -> None:
    # C (200 cases, no positive) takes part in the equal-opportunity gap but has no TPR, so the
    # gap's note names only A and B: a criterion quoting that note would tell that C has none.
    from validators.data.predictions import Predictions
    from validators.evaluate import evaluate_predictions
    from validators.policy import parse_policy

    rng = np.random.default_rng(2)
    site = np.array(["A"] * 400 + ["B"] * 300 + ["C"] * 200 + [None] * 30, dtype=object)
    labels = rng.random(930) < 0.3
    labels[700:900] = False
    scores = 1 / (1 + np.exp(-(rng.normal(size=930) + 1.5 * labels - 0.8)))
    predictions = Predictions(
        task="binary",
        labels=("label",),
        case_ids=np.array([f"c{i}" for i in range(930)]),
        patient_ids=np.array([f"p{i}" for i in range(930)]),
        y_true=labels,
        y_score=scores,
        attributes={"site": site},
    )
    policy = parse_policy(
        {
            "name": "eo",
            "version": "1",
            "task": "binary",
            "ci": {"replicates": 30},
            "criteria": [
                {"id": "eo", "description": "d", "kind": "fairness_gap",
                 "name": "equal_opportunity_difference", "max": 0.5},
            ],
        }
    )  # fmt: skip
    committee = evaluate_predictions(predictions, policy=policy)
    assert committee.verdict is not None
    assert "over 2 groups: site=A, site=B" in committee.verdict.criteria[0].reason
    vendor = evaluate_predictions(predictions, policy=policy, view="vendor")
    assert vendor.verdict is not None
    (criterion,) = vendor.verdict.criteria
    assert criterion.observed is None and "site=A" not in criterion.reason
    assert all(g.value.status == "suppressed" for g in vendor.fairness if g.attributes == ["site"])


def test_no_group_is_suppressed_when_every_group_is_large() -> None:
    labels, scores, attributes = with_exact_counts({"A": 300, "B": 200, "C": 40})
    committee = make_result(labels, scores, attributes)
    vendor = vendor_view(committee)
    assert vendor == committee.model_copy(update={"view": "vendor"})


SCENARIOS: dict[str, dict[str, Any]] = {
    "one small site": {
        "sizes": {"site": {"A": 0.6, "B": 0.35, "C": 0.045, "D": 0.005}, "sex": {"F": 1, "M": 1}}
    },
    "a small missing group": {
        "sizes": {"sex": {"F": 0.5, "M": 0.495, MISSING: 0.005}, "site": {"A": 1, "B": 1}}
    },
    "intersections with published margins": {
        "sizes": {"sex": {"F": 0.5, "M": 0.5}, "site": {"A": 0.6, "B": 0.35, "C": 0.05}},
        "intersections": (("sex", "site"),),
    },
    "three-way intersection": {
        "sizes": {
            "sex": {"F": 0.5, "M": 0.49, MISSING: 0.01},
            "site": {"A": 0.7, "B": 0.25, "C": 0.05},
            "age": {"30": 0.6, "50": 0.3, "70": 0.09, "10": 0.01},
        },
        "intersections": (("sex", "site"), ("sex", "age"), ("sex", "site", "age")),
    },
    "rare positives": {
        "sizes": {"site": {"A": 0.5, "B": 0.3, "C": 0.2}, "sex": {"F": 1, "M": 1}},
        "prevalence": 0.02,
    },
}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_no_withheld_count_can_be_recovered_from_the_vendor_json(scenario: str, seed: int) -> None:
    settings = SCENARIOS[scenario]
    labels, scores, attributes = cases(
        n=1200, seed=seed, sizes=settings["sizes"], prevalence=settings.get("prevalence", 0.3)
    )
    if "age" in attributes:
        attributes["age"] = np.array([v if v is None else int(v) for v in attributes["age"]])
    spec = SubgroupSpec(intersections=settings.get("intersections", ()))
    committee = make_result(labels, scores, attributes, spec=spec)
    vendor = vendor_json(committee)
    withheld = [
        g
        for t in vendor["subgroups"]
        for g in t["groups"]
        if g["status"] == "suppressed" or (g["metrics"] and g["metrics"]["n_positive"] is None)
    ]
    assert withheld, "each scenario has something small to protect"
    assert attack(vendor) == []


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_without_complements_the_attacker_recovers_counts(
    scenario: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The attack is strong enough to matter: primary suppression alone fails it.
    settings = SCENARIOS[scenario]
    labels, scores, attributes = cases(
        n=1200, seed=0, sizes=settings["sizes"], prevalence=settings.get("prevalence", 0.3)
    )
    if "age" in attributes:
        attributes["age"] = np.array([v if v is None else int(v) for v in attributes["age"]])
    committee = make_result(
        labels,
        scores,
        attributes,
        spec=SubgroupSpec(intersections=settings.get("intersections", ())),
    )
    monkeypatch.setattr(suppression, "_protect", lambda *args: None)
    assert attack(vendor_json(committee)) != []


def numbers(value: Any, path: str = "") -> list[str]:
    """Return the paths of every number in a JSON value (booleans are not numbers)."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in numbers(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in numbers(v, f"{path}[{i}]")]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [path]
    return []


def settings_only(paths: list[str]) -> list[str]:
    """Drop numbers that describe the method, not the data: level and a zero count of none."""
    return [p for p in paths if not p.endswith((".level", ".replicates_undefined"))]


def test_the_vendor_json_holds_no_number_for_a_suppressed_group() -> None:
    labels, scores, attributes = cases(
        n=1500,
        seed=3,
        sizes={"site": {"A": 0.6, "B": 0.3, "C": 0.095, "D": 0.005}, "sex": {"F": 1, "M": 1}},
    )
    spec = SubgroupSpec(intersections=(("sex", "site"),))
    vendor = vendor_json(make_result(labels, scores, attributes, spec=spec))
    suppressed = {
        (tuple(t["attributes"]), g["label"])
        for t in vendor["subgroups"]
        for g in t["groups"]
        if g["status"] == "suppressed"
    }
    assert (("site",), "site=D") in suppressed
    for t in vendor["subgroups"]:
        for g in t["groups"]:
            if g["status"] == "suppressed":
                assert numbers(g) == []
    for d in vendor["disparities"]:
        involved = {(tuple(d["attributes"]), d["group"]), (tuple(d["attributes"]), d["reference"])}
        if involved & suppressed:
            assert d["value"]["status"] == "suppressed"
            assert settings_only(numbers(d["value"])) == []
            assert d["value"]["replicates_undefined"] == 0
    site_gaps = [g for g in vendor["fairness"] if g["attributes"] == ["site"]]
    # Site C (a complement with more than 11 cases) took part in the gaps: they are withheld.
    assert all(g["value"]["status"] == "suppressed" for g in site_gaps)
    assert all(settings_only(numbers(g["value"])) == [] for g in site_gaps)


def test_a_group_with_few_positive_cases_keeps_its_size_and_withholds_the_rest() -> None:
    rng = np.random.default_rng(4)
    site = np.array(["A"] * 400 + ["B"] * 300 + ["C"] * 200, dtype=object)
    labels = rng.random(900) < 0.3
    labels[site == "C"] = False
    labels[np.flatnonzero(site == "C")[:4]] = True  # 4 positive cases at site C
    scores = np.round(1 / (1 + np.exp(-(rng.normal(size=900) + 1.5 * labels - 0.8))), 3)
    vendor = vendor_view(make_result(labels, scores, {"site": site}))
    groups = {g.label: g for g in vendor.subgroups[0].groups}
    c = groups["site=C"]
    assert c.status == "ok" and c.n_cases == 200
    assert isinstance(c.metrics, BinaryMetrics)
    assert c.metrics.n_positive is None and c.metrics.n_negative is None
    assert c.metrics.prevalence.status == "suppressed"
    assert c.metrics.specificity.status == "suppressed"
    # Overall and A, B publish their positives: one other site must withhold its own.
    withheld = [
        g.label
        for g in groups.values()
        if isinstance(g.metrics, BinaryMetrics) and g.metrics.n_positive is None
    ]
    assert withheld == ["site=B", "site=C"]
    assert attack(json.loads(vendor.model_dump_json())) == []


def test_few_positive_cases_overall_withhold_every_metric_and_curve() -> None:
    labels, scores, attributes = with_exact_counts({"A": 300, "B": 200})
    labels[:] = False
    labels[[3, 50, 320, 400]] = True
    vendor = vendor_view(make_result(labels, scores, attributes))
    overall = vendor.overall
    assert isinstance(overall, BinaryMetrics)
    assert overall.n_cases == 500
    assert overall.n_positive is None and overall.n_negative is None
    assert overall.roc_curve is None and overall.calibration_curve is None
    assert overall.decision_curve is None
    assert {e.status for _, e in overall if hasattr(e, "status")} == {"suppressed"}
    assert all(d.value.status == "suppressed" for d in vendor.disparities)
    assert all(g.value.status == "suppressed" for g in vendor.fairness)
    assert attack(json.loads(vendor.model_dump_json())) == []


def test_a_group_of_few_patients_is_suppressed() -> None:
    labels, scores, attributes = with_exact_counts({"A": 300, "B": 200, "C": 60})
    patients = np.array([f"p{i // 3}" for i in range(500)] + [f"q{i % 4}" for i in range(60)])
    vendor = vendor_view(make_result(labels, scores, attributes, patient_ids=patients))
    c = next(g for g in vendor.subgroups[0].groups if g.label == "site=C")
    assert c.status == "suppressed"  # 60 images, but of 4 patients


def test_vendor_view_is_idempotent() -> None:
    settings = SCENARIOS["three-way intersection"]
    labels, scores, attributes = cases(n=1200, seed=5, sizes=settings["sizes"])
    spec = SubgroupSpec(intersections=settings["intersections"])
    once = vendor_view(make_result(labels, scores, attributes, spec=spec))
    assert vendor_view(once) == once


def test_the_committee_view_keeps_every_number_with_flags() -> None:
    labels, scores, attributes = with_exact_counts({"A": 300, "B": 200, "C": 5})
    committee = make_result(labels, scores, attributes)
    assert committee_view(committee) is committee
    c = next(g for g in committee.subgroups[0].groups if g.label == "site=C")
    assert c.status == "ok" and c.insufficient_n and c.n_cases == 5
    assert isinstance(c.metrics, BinaryMetrics) and c.metrics.n_positive is not None
    with pytest.raises(ValueError, match="cannot become a committee view"):
        committee_view(vendor_view(committee))


def test_verdict_criteria_about_withheld_groups_lose_their_observed_values() -> None:
    labels, scores, attributes = with_exact_counts({"A": 300, "B": 200, "C": 5})
    verdict = Verdict(
        policy_name="p",
        policy_version="1",
        passed=False,
        criteria=[
            CriterionResult(
                id="subgroup-sensitivity",
                description="sensitivity >= 0.7 in every group",
                severity="required",
                outcome="fail",
                reason="sensitivity in site=C is 0.5, below 0.7",
                observed=0.5,
                limit=0.7,
            ),
            CriterionResult(
                id="auroc",
                description="AUROC lower bound >= 0.7",
                severity="required",
                outcome="pass",
                reason="0.81 >= 0.7",
                observed=0.81,
                limit=0.7,
            ),
        ],
        summary="failed 1 of 2 required criteria",
    )
    vendor = vendor_view(make_result(labels, scores, attributes, verdict=verdict))
    assert vendor.verdict is not None
    about_c, about_all = vendor.verdict.criteria
    assert about_c.observed is None and "site=C" not in about_c.reason
    assert about_c.outcome == "fail" and about_c.limit == 0.7
    assert about_all == verdict.criteria[1]


def test_a_multilabel_overall_with_a_rare_label_withholds_the_averages() -> None:
    rng = np.random.default_rng(6)
    truth = rng.random((300, 2)) < [0.3, 0.01]
    scores = np.round(rng.random((300, 2)), 3)
    overall = multilabel_metrics(truth, scores, ["a", "b"], ci="none")
    committee = EvaluationResult(
        task="multilabel",
        provenance=Provenance.capture(
            seed=0, replicates=0, level=0.95, ci_method="none", bootstrap_unit=None
        ),
        overall=overall,
    )
    vendor = vendor_view(committee).overall
    assert vendor.task == "multilabel"
    assert [r.metrics.n_positive for r in vendor.per_label] == [None, None]
    assert vendor.macro.auroc.status == "suppressed"
    assert vendor.micro.auroc.status == "suppressed"


def test_a_group_result_with_suppressed_status_has_no_numbers() -> None:
    # The contract the view relies on: the result type itself refuses numbers there.
    group = GroupResult(
        attributes={"site": "C"},
        label="site=C",
        status="suppressed",
        insufficient_n=True,
        n_cases=None,
        n_patients=None,
        metrics=None,
    )
    assert numbers(json.loads(group.model_dump_json())) == []


def test_a_tiny_dataset_is_withheld_whole() -> None:
    labels, scores, attributes = with_exact_counts({"A": 5, "B": 3})
    labels[:4] = [True, False, True, False]
    vendor = vendor_view(make_result(labels, scores, attributes))
    assert isinstance(vendor.overall, BinaryMetrics)
    assert vendor.overall.n_cases is None and vendor.overall.auroc.status == "suppressed"
    assert {g.status for g in vendor.subgroups[0].groups} == {"suppressed"}
    assert attack(json.loads(vendor.model_dump_json())) == []
