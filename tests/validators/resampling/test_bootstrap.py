"""Tests of the vectorized bootstrap, its kernels, Wilson and DeLong.

The central check: integer resampling weights mean repeated rows, so every batch kernel's value
for replicate r must equal the plain metric (sklearn's, or ours on unit weights) on the data with
each case repeated W[r, i] times (`np.repeat`). That is what makes the vectorized bootstrap right.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn import metrics as sk

from validators import evaluation as ev
from validators import metrics as m
from validators import resampling as rs
from validators import results as res
from validators.evaluation.settings import PROPORTIONS
from validators.metrics import calibration_slope_intercept
from validators.metrics.counts import LR_POSITIVE_INFINITE

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]


def make_data(
    *, seed: int, n: int = 200, prevalence: float = 0.3, decimals: int | None = 2
) -> tuple[BoolArray, FloatArray]:
    """Return labels and probabilities, rounded to `decimals` so that ties occur."""
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < prevalence
    scores = 1.0 / (1.0 + np.exp(-(rng.normal(size=n) + 1.2 * labels - 0.8)))
    if decimals is not None:
        scores = np.round(scores, decimals)
    return labels, scores


def repeated(weights_row: NDArray[np.integer], *arrays: NDArray[Any]) -> list[NDArray[Any]]:
    """Return each array with row i repeated weights_row[i] times."""
    index = np.repeat(np.arange(weights_row.shape[0]), weights_row)
    return [array[index] for array in arrays]


# --- the weight matrix ----------------------------------------------------------------------


def test_plan_weights_are_reproducible_and_independent_of_block_size() -> None:
    # 150 replicates span three draw groups of 64; blocks of 23 and 4 cut across them.
    long = rs.BootstrapPlan.create(50, replicates=150, seed=7, block_size=23)
    stacked = np.concatenate([block.counts for block in long.blocks()])
    np.testing.assert_array_equal(stacked, long.weights(0, 150))
    np.testing.assert_array_equal(long.weights(60, 70), long.weights(0, 150)[60:70])
    assert len({row.tobytes() for row in stacked}) == 150  # no group repeats another
    whole = rs.BootstrapPlan.create(50, replicates=23, seed=7, block_size=23)
    small = rs.BootstrapPlan.create(50, replicates=23, seed=7, block_size=4)
    blocks = list(small.blocks())
    assert [block.start for block in blocks] == [0, 4, 8, 12, 16, 20]
    stacked = np.concatenate([block.counts for block in blocks])
    np.testing.assert_array_equal(stacked, whole.weights(0, 23))
    np.testing.assert_array_equal(whole.weights(0, 23), whole.weights(0, 23))
    np.testing.assert_array_equal(whole.weights(5, 9), whole.weights(0, 23)[5:9])
    other = rs.BootstrapPlan.create(50, replicates=23, seed=8).weights(0, 23)
    assert not np.array_equal(other, whole.weights(0, 23))


def test_case_bootstrap_draws_n_cases_per_replicate() -> None:
    plan = rs.BootstrapPlan.create(300, replicates=40, seed=1)
    weights = plan.weights(0, 40)
    assert weights.dtype == np.int8  # compact; the kernels accumulate in int32
    assert plan.unit == "case"
    np.testing.assert_array_equal(weights.sum(axis=1), 300)
    # About 1 - 1/e of the cases appear in a replicate.
    assert np.mean(weights > 0) == pytest.approx(1 - math.exp(-1), abs=0.03)


def test_a_block_with_a_count_beyond_int8_is_widened(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = rs.BootstrapPlan.create(300, replicates=6, seed=1)
    expected = plan.weights(0, 6).astype(np.int64)
    expected[3, 0] = (
        128  # drawn 128 times in replicate 3, one past int8: forged, as no seed does it
    )
    real_draw = rs.BootstrapPlan._draw_group

    def forged(self: rs.BootstrapPlan, group: int) -> np.ndarray:
        counts = real_draw(self, group)
        counts[3, 0] = 128
        return counts

    monkeypatch.setattr(rs.BootstrapPlan, "_draw_group", forged)
    weights = plan.weights(0, 6)
    assert weights.dtype == plan.dtype == np.int32
    np.testing.assert_array_equal(weights, expected)


def test_cluster_bootstrap_moves_all_images_of_a_patient_together() -> None:
    rng = np.random.default_rng(3)
    patients = rng.integers(0, 40, size=150)
    plan = rs.BootstrapPlan.create(150, replicates=30, seed=2, groups=[f"p{k}" for k in patients])
    weights = plan.weights(0, 30)
    assert plan.unit == "patient"
    assert plan.n_units == np.unique(patients).shape[0]
    for patient in np.unique(patients):
        columns = weights[:, patients == patient]
        assert (columns == columns[:, :1]).all(), "a patient's images must share one count"
    # Each replicate draws as many patients as there are.
    first_image = np.unique(patients, return_index=True)[1]
    np.testing.assert_array_equal(weights[:, first_image].sum(axis=1), plan.n_units)


def test_cluster_ids_must_be_complete() -> None:
    with pytest.raises(ValueError, match="one patient id per case"):
        rs.BootstrapPlan.create(3, groups=[1, 2])
    with pytest.raises(ValueError, match="NaN"):
        rs.BootstrapPlan.create(2, groups=[1.0, np.nan])


# --- kernels equal the metric on repeated rows, exactly ----------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("decimals", [None, 1, 2])
@pytest.mark.parametrize("sorted_columns", [False, True])
def test_ranking_batch_equals_sklearn_on_repeated_rows(
    seed: int, decimals: int | None, sorted_columns: bool
) -> None:
    labels, scores = make_data(seed=seed, decimals=decimals)
    if sorted_columns:
        order = np.argsort(scores, kind="stable")
        labels, scores = labels[order], scores[order]
    weights = rs.BootstrapPlan.create(labels.shape[0], replicates=6, seed=seed).weights(0, 6)
    ranked = m.RankedCases.build(labels, scores)
    batch = m.ranking_batch(weights, ranked, average_precision=True, threshold=0.4)
    assert batch.average_precision is not None and batch.counts is not None
    for r in range(weights.shape[0]):
        y, s = repeated(weights[r], labels, scores)
        assert batch.auroc.values[r] == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
        assert batch.average_precision.values[r] == pytest.approx(
            sk.average_precision_score(y, s), abs=1e-12
        )
        tn, fp, fn, tp = sk.confusion_matrix(y, s >= 0.4, labels=[False, True]).ravel()
        assert [c[r] for c in batch.counts] == [tp, fp, tn, fn]


@pytest.mark.parametrize("seed", [0, 1])
def test_auroc_batch_of_a_subgroup_mask_equals_sklearn_on_the_subgroup(seed: int) -> None:
    labels, scores = make_data(seed=seed, n=300)
    group = np.random.default_rng(seed).random(300) < 0.4
    weights = rs.BootstrapPlan.create(300, replicates=5, seed=seed).weights(0, 5)
    values = rs.auroc_batch(weights, m.RankedCases.build(labels, scores, mask=group))
    for r in range(5):
        y, s = repeated(weights[r] * group, labels, scores)
        assert values.values[r] == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)


def test_grouped_confusion_counts_equal_confusion_matrix_on_repeated_rows() -> None:
    labels, scores = make_data(seed=4, n=250)
    predicted = scores >= 0.35
    groups = np.random.default_rng(4).integers(0, 3, 250)
    masks = np.stack([groups == g for g in range(3)])
    weights = rs.BootstrapPlan.create(250, replicates=4, seed=4).weights(0, 4)
    per_group = rs.grouped_confusion_counts_batch(weights, labels, predicted, masks)
    for g, counts in enumerate(per_group):
        for r in range(4):
            y, p = repeated(weights[r] * masks[g], labels, predicted)
            tn, fp, fn, tp = sk.confusion_matrix(y, p, labels=[False, True]).ravel()
            assert [c[r] for c in counts] == [tp, fp, tn, fn]
    overall = rs.confusion_counts_batch(weights, labels, predicted)
    np.testing.assert_array_equal(overall.tp, sum(c.tp for c in per_group))


def test_kernels_accept_int64_and_float_weights() -> None:
    labels, scores = make_data(seed=5, n=80)
    ranked = m.RankedCases.build(labels, scores)
    weights = rs.BootstrapPlan.create(80, replicates=3, seed=5).weights(0, 3)
    reference = m.ranking_batch(weights, ranked, average_precision=True)
    for converted in (weights.astype(np.int64), weights.astype(np.float64)):
        other = m.ranking_batch(converted, ranked, average_precision=True)
        np.testing.assert_allclose(other.auroc.values, reference.auroc.values, rtol=1e-14)
        assert other.average_precision is not None and reference.average_precision is not None
        np.testing.assert_allclose(
            other.average_precision.values, reference.average_precision.values, rtol=1e-14
        )


@pytest.mark.parametrize("scores_scale", ["probability", "logit"])
def test_population_evaluate_equals_point_metrics_on_repeated_rows(scores_scale: str) -> None:
    labels, probabilities = make_data(seed=11, n=250, decimals=3)
    probabilities = np.clip(probabilities, 0.001, 0.999)
    raw = np.log(probabilities / (1 - probabilities)) if scores_scale == "logit" else probabilities
    threshold = 0.0 if scores_scale == "logit" else 0.5
    settings = ev.EvaluationSettings.create(threshold=threshold, scores=scores_scale)
    population = ev.BinaryPopulation(
        labels, raw, ev.probabilities_from(raw, settings.scores), settings
    )
    weights = rs.BootstrapPlan.create(250, replicates=4, seed=3).weights(0, 4)
    batch = population.evaluate(weights)
    for r in range(4):
        y, s = repeated(weights[r], labels, raw)
        point = ev.binary_metrics(y, s, scores=scores_scale, threshold=threshold, ci="none")  # type: ignore[arg-type]
        for name in res.BINARY_METRIC_NAMES:
            if name.startswith("ece_equal_mass"):
                continue  # equal-mass edges are fixed at the original sample's quantiles
            expected = getattr(point, name).estimate
            tolerance = 1e-4 if name.startswith("calibration") else 1e-12
            assert batch.metrics[name].values[r] == pytest.approx(expected, abs=tolerance), name


def test_recalibration_refit_matches_the_direct_fit_per_replicate() -> None:
    labels, probabilities = make_data(seed=12, n=400, decimals=None)
    settings = ev.EvaluationSettings.create()
    population = ev.BinaryPopulation(labels, probabilities, probabilities, settings)
    weights = rs.BootstrapPlan.create(400, replicates=8, seed=1).weights(0, 8)
    batch = population.evaluate(weights)
    for r in range(8):
        fit = calibration_slope_intercept(labels, probabilities, sample_weight=weights[r])
        assert fit.slope.value is not None and fit.intercept.value is not None
        assert batch.metrics["calibration_slope"].values[r] == pytest.approx(
            fit.slope.value, rel=1e-4
        )
        assert batch.metrics["calibration_intercept"].values[r] == pytest.approx(
            fit.intercept.value, rel=1e-4, abs=1e-5
        )


def test_replicates_undefined_in_a_replicate_are_nan_with_reason() -> None:
    labels = np.zeros(30, dtype=bool)
    labels[0] = True  # one positive: absent from about a third of the replicates
    scores = np.linspace(0, 1, 30)
    weights = rs.BootstrapPlan.create(30, replicates=60, seed=0).weights(0, 60)
    values = rs.auroc_batch(weights, m.RankedCases.build(labels, scores))
    absent = weights[:, 0] == 0
    assert absent.any()
    assert np.isnan(values.values[absent]).all()
    assert not np.isnan(values.values[~absent]).any()
    assert values.reason(int(np.flatnonzero(absent)[0])) == m.NO_POSITIVES


def test_subgroups_share_replicates_so_differences_are_paired() -> None:
    labels, scores = make_data(seed=6, n=200)
    settings = ev.EvaluationSettings.create()
    probabilities = scores
    everyone = ev.BinaryPopulation(labels, scores, probabilities, settings)
    same_as_everyone = ev.BinaryPopulation(
        labels, scores, probabilities, settings, mask=np.ones(200, dtype=bool)
    )
    plan = rs.BootstrapPlan.create(200, replicates=30, seed=0, block_size=7)
    tables = ev.collect_replicates(plan, [everyone, same_as_everyone])
    for name in ("auroc", "sensitivity", "brier", "calibration_slope"):
        np.testing.assert_allclose(tables[0][name], tables[1][name], rtol=1e-12)


@pytest.mark.parametrize(
    "metrics",
    [["auroc"], ["sensitivity", "ppv", "average_precision", "net_benefit"], ["brier", "auroc"]],
)
def test_replicates_of_some_metrics_equal_those_of_every_metric(metrics: list[str]) -> None:
    labels, scores = make_data(seed=9, n=250)
    population = ev.BinaryPopulation(labels, scores, scores, ev.EvaluationSettings.create())
    plan = rs.BootstrapPlan.create(250, replicates=40, seed=3, block_size=9)
    (every,) = ev.collect_replicates(plan, [population])
    (some,) = ev.collect_replicates(plan, [population], metrics)
    assert list(some) == metrics
    for name in metrics:
        np.testing.assert_array_equal(some[name], every[name])


def test_lean_refuses_metrics_that_need_the_full_evaluation() -> None:
    labels, scores = make_data(seed=9, n=50)
    population = ev.BinaryPopulation(labels, scores, scores, ev.EvaluationSettings.create())
    with pytest.raises(ValueError, match="not lean metrics: brier, ece"):
        population.lean(np.ones((1, 50), dtype=np.int8), ["auroc", "brier", "ece"])


# --- whole evaluations ----------------------------------------------------------------------


def test_seeded_binary_metrics_are_bit_identical() -> None:
    labels, scores = make_data(seed=8, n=300)
    first = ev.binary_metrics(labels, scores, replicates=120, seed=5)
    second = ev.binary_metrics(labels, scores, replicates=120, seed=5)
    assert first.model_dump_json() == second.model_dump_json()
    other_seed = ev.binary_metrics(labels, scores, replicates=120, seed=6)
    assert other_seed.auroc.lower != first.auroc.lower
    assert other_seed.auroc.estimate == first.auroc.estimate


def test_bootstrap_interval_is_close_to_delong_for_auroc() -> None:
    labels, scores = make_data(seed=9, n=600, decimals=None)
    boot = ev.binary_metrics(labels, scores, replicates=1000, seed=0)
    delong = rs.delong_interval(labels, scores)
    assert boot.auroc.lower is not None and delong.lower is not None
    assert boot.auroc.lower == pytest.approx(delong.lower, abs=0.01)
    assert boot.auroc.upper == pytest.approx(delong.upper, abs=0.01)


def test_patient_bootstrap_is_wider_when_patients_are_correlated() -> None:
    rng = np.random.default_rng(10)
    patients = np.repeat(np.arange(100), 4)
    effect = rng.normal(size=100)[patients] * 1.5
    # Disease and a score offset per patient: a patient's four images move together.
    labels = (rng.random(100) < 0.4)[patients]
    scores = 1 / (1 + np.exp(-(labels + effect + rng.normal(size=400) * 0.3)))
    by_case = ev.binary_metrics(labels, scores, replicates=400, ci="bootstrap")
    by_patient = ev.binary_metrics(labels, scores, replicates=400, groups=patients)
    assert by_patient.auroc.n == 100
    width = lambda e: e.upper - e.lower  # noqa: E731
    assert by_patient.auroc.method == "bootstrap_percentile_patient"
    assert width(by_patient.auroc) > 1.3 * width(by_case.auroc)


def test_clustered_wilson_widens_a_proportion_by_the_design_effect() -> None:
    rng = np.random.default_rng(10)
    patients = np.repeat(np.arange(100), 4)
    effect = rng.normal(size=100)[patients] * 1.5
    labels = rng.random(400) < 1 / (1 + np.exp(-effect))
    scores = 1 / (1 + np.exp(-(effect + rng.normal(size=400) * 0.5)))
    by_case = ev.binary_metrics(labels, scores, replicates=50)
    by_patient = ev.binary_metrics(labels, scores, replicates=50, groups=patients)
    independent, clustered = by_case.prevalence, by_patient.prevalence
    assert (independent.method, clustered.method) == ("wilson", "wilson_clustered")
    assert clustered.n == 100 and clustered.n_cases == 400
    # Per patient: s_i = its positive images of t_i = 4, whatever the order the engine sorted
    # the cases into; the interval is the clustered Wilson interval of those totals.
    s = np.bincount(patients, weights=labels)
    expected = rs.clustered_wilson_interval(s, np.full(100, 4.0))
    assert expected.design_effect is not None and expected.design_effect > 1.4
    assert (clustered.lower, clustered.upper) == (expected.lower, expected.upper)
    assert clustered.reason is not None
    assert f"design effect {expected.design_effect:.2f}" in clustered.reason
    assert (independent.lower, independent.upper) == rs.wilson_interval(labels.sum(), 400)[:2]


# --- intervals ------------------------------------------------------------------------------


def test_percentile_interval_skips_and_counts_undefined_replicates() -> None:
    values = np.r_[np.arange(100.0), [np.nan] * 10]
    interval = rs.percentile_interval(values, 0.9)
    assert interval.replicates_undefined == 10
    assert (interval.lower, interval.upper) == tuple(np.quantile(np.arange(100.0), [0.05, 0.95]))


def test_percentile_interval_is_undefined_when_most_replicates_are() -> None:
    interval = rs.percentile_interval(np.r_[np.ones(4), [np.nan] * 6], 0.95)
    assert interval.lower is None
    assert interval.replicates_undefined == 6
    assert interval.reason is not None and "6 of 10" in interval.reason


def test_wilson_interval_closed_form_values() -> None:
    lower, upper = rs.wilson_interval(8, 10, 0.95)[:2]
    assert (lower, upper) == (pytest.approx(0.4902, abs=5e-5), pytest.approx(0.9433, abs=5e-5))
    assert rs.wilson_interval(0, 10).lower == 0.0
    assert rs.wilson_interval(10, 10).upper == 1.0
    assert rs.wilson_interval(0, 0).reason == "no cases in the denominator"
    # 90% is narrower than 95%.
    narrow = rs.wilson_interval(8, 10, 0.90)
    assert narrow.lower is not None and narrow.lower > 0.4902


def slow_delong(labels: BoolArray, *scores: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return AUCs and their covariance straight from DeLong, DeLong & Clarke-Pearson (1988).

    psi(X, Y) = 1 if X > Y, 1/2 if X = Y, 0 otherwise; V10(X_i) = mean_j psi(X_i, Y_j),
    V01(Y_j) = mean_i psi(X_i, Y_j); S10 and S01 their sample covariances across models;
    Cov(AUC) = S10 / m + S01 / n.
    """
    positives = [s[labels] for s in scores]
    negatives = [s[~labels] for s in scores]
    m_pos, n_neg = positives[0].shape[0], negatives[0].shape[0]

    def psi(x: float, y: float) -> float:
        return 1.0 if x > y else 0.5 if x == y else 0.0

    v10 = np.array(
        [
            [np.mean([psi(x, y) for y in neg]) for x in pos]
            for pos, neg in zip(positives, negatives, strict=True)
        ]
    )
    v01 = np.array(
        [
            [np.mean([psi(x, y) for x in pos]) for y in neg]
            for pos, neg in zip(positives, negatives, strict=True)
        ]
    )
    aucs = v10.mean(axis=1)
    s10 = (v10 - aucs[:, None]) @ (v10 - aucs[:, None]).T / (m_pos - 1)
    s01 = (v01 - aucs[:, None]) @ (v01 - aucs[:, None]).T / (n_neg - 1)
    return aucs, s10 / m_pos + s01 / n_neg


def test_delong_hand_checked_case() -> None:
    # Positives X = (0.8, 0.6, 0.4), negatives Y = (0.6, 0.2).
    # V10: X=0.8 beats both -> 1; X=0.6 ties 0.6, beats 0.2 -> 0.75; X=0.4 beats 0.2 -> 0.5.
    # AUC = (1 + 0.75 + 0.5) / 3 = 0.75. V01: Y=0.6 -> (1 + 0.5 + 0) / 3 = 0.5; Y=0.2 -> 1.
    # S10 = (0.25^2 + 0 + 0.25^2) / 2 = 0.0625; S01 = (0.25^2 + 0.25^2) / 1 = 0.125.
    # Var = S10 / 3 + S01 / 2 = 0.0208333 + 0.0625 = 1/12.
    labels = np.array([1, 1, 1, 0, 0], dtype=bool)
    scores = np.array([0.8, 0.6, 0.4, 0.6, 0.2])
    result = rs.delong_auc_variance(labels, scores)
    assert not isinstance(result, str)
    auc, variance = result
    assert auc == pytest.approx(0.75)
    assert variance == pytest.approx(1 / 12)
    aucs, covariance = slow_delong(labels, scores)
    assert (aucs[0], covariance[0, 0]) == (pytest.approx(0.75), pytest.approx(1 / 12))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_delong_variance_and_paired_test_equal_the_direct_formulas(seed: int) -> None:
    labels, score_a = make_data(seed=seed, n=40, decimals=1)
    score_b = np.round(score_a + np.random.default_rng(seed).normal(0, 0.2, 40), 1)
    aucs, covariance = slow_delong(labels, score_a, score_b)
    result = rs.delong_auc_variance(labels, score_a)
    assert not isinstance(result, str)
    assert result == (pytest.approx(aucs[0], abs=1e-12), pytest.approx(covariance[0, 0], abs=1e-12))
    test = rs.delong_paired_test(labels, score_a, score_b)
    se = math.sqrt(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])
    z = (aucs[0] - aucs[1]) / se
    assert test.auc_a == pytest.approx(aucs[0], abs=1e-12)
    assert test.auc_b == pytest.approx(aucs[1], abs=1e-12)
    assert test.se == pytest.approx(se, abs=1e-12)
    assert test.z == pytest.approx(z, abs=1e-9)
    assert test.p_value == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), abs=1e-12)
    assert test.lower == pytest.approx(aucs[0] - aucs[1] - 1.959964 * se, abs=1e-6)


def test_delong_interval_contains_auc_and_clips() -> None:
    labels = np.array([1, 1, 0, 0], dtype=bool)
    interval = rs.delong_interval(labels, np.array([0.9, 0.8, 0.2, 0.1]))
    assert interval.auc == 1.0
    assert interval.upper == 1.0


def test_delong_needs_two_cases_per_class() -> None:
    result = rs.delong_interval([1, 0, 0], [0.9, 0.1, 0.2])
    assert result.lower is None and result.reason is not None and "at least 2" in result.reason
    paired = rs.delong_paired_test([1, 0, 0], [0.9, 0.1, 0.2], [0.1, 0.2, 0.3])
    assert paired.p_value is None and paired.reason is not None


def test_delong_paired_test_of_identical_scores_has_no_p_value() -> None:
    labels, scores = make_data(seed=1, n=50)
    test = rs.delong_paired_test(labels, scores, scores)
    assert test.difference == 0.0 and test.se == 0.0
    assert test.p_value is None and test.reason is not None


def test_delong_paired_test_detects_a_better_model() -> None:
    rng = np.random.default_rng(2)
    labels = rng.random(400) < 0.4
    strong = rng.normal(size=400) + 2.0 * labels
    weak = rng.normal(size=400) + 0.5 * labels
    test = rs.delong_paired_test(labels, strong, weak)
    assert test.difference is not None and test.difference > 0.2
    assert test.p_value is not None and test.p_value < 1e-6


def test_an_empty_subgroup_is_all_undefined_with_no_curves() -> None:
    labels, scores = make_data(seed=3, n=60)
    population = ev.BinaryPopulation(
        labels, scores, scores, ev.EvaluationSettings.create(), mask=np.zeros(60, dtype=bool)
    )
    plan = rs.BootstrapPlan.create(60, replicates=20)
    estimates = population.estimates(
        population.evaluate_point(),
        ev.collect_replicates(plan, [population])[0],
        unit="case",
        n_units=0,
        clusters=None,
    )
    assert all(e.status == "undefined" and e.reason for e in estimates.values())
    result = population.result(estimates, n_patients=None)
    assert (result.n_cases, result.roc_curve, result.decision_curve) == (0, None, None)


# --------------------------------------------------------------------------------------------
# Infinite replicates are values (issue 7, item 2)
# --------------------------------------------------------------------------------------------


def test_percentile_interval_counts_an_infinite_replicate_as_a_value() -> None:
    # 10 of 100 replicates are +inf: the 97.5th percentile is infinite, never a finite number
    # computed from the other 90.
    values = np.r_[np.arange(90.0), [np.inf] * 10]
    interval = rs.percentile_interval(values, 0.95)
    assert interval.upper == math.inf and interval.replicates_undefined == 0
    assert interval.lower == pytest.approx(np.quantile(values[:90], 0.025 * 99 / 89), abs=2.0)
    # Interpolating towards an infinite neighbour widens to it; a finite neighbour pair does not.
    assert rs.percentile_interval(np.r_[np.arange(97.0), [-np.inf] * 3], 0.95).lower == -math.inf
    assert rs.percentile_interval(np.r_[np.arange(99.0), np.inf], 0.95).upper < math.inf


def _few_false_positives(seed: int = 4) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """Return 80 cases whose 2 false positives are absent from many bootstrap replicates."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(40, dtype=bool), np.zeros(40, dtype=bool)]
    scores = np.r_[rng.uniform(0.3, 1.0, 40), rng.uniform(0.0, 0.45, 38), [0.7, 0.8]]
    return labels, scores


def test_likelihood_ratio_replicates_without_false_positives_leave_the_upper_side_unbounded() -> (
    None
):
    labels, scores = _few_false_positives()
    result = ev.binary_metrics(labels, scores, replicates=400, seed=1)
    lr = result.lr_positive
    assert lr.status == "ok" and lr.estimate is not None and lr.lower is not None
    # About (1 - 1/40)^80 ~ 13% of replicates draw neither false positive: LR+ is +inf there.
    assert lr.upper is None and lr.upper_unbounded and lr.bound("upper") == math.inf
    assert lr.replicates_undefined == 0
    assert lr.reason is not None and "upper side is unbounded" in lr.reason


def test_a_point_likelihood_ratio_that_is_infinite_is_undefined_with_the_reason() -> None:
    labels = np.array([1, 1, 0, 0], dtype=bool)
    batch = m.count_metric_batch(
        "lr_positive", m.ConfusionCountsBatch.of(m.ConfusionCounts(2, 0, 2, 0))
    )
    assert batch.values[0] == math.inf and batch.codes[0] == 0
    assert batch.value().value is None and "infinite" in (batch.value().reason or "")
    assert m.lr_positive(labels, labels).reason == LR_POSITIVE_INFINITE
    # 0 / 0 stays undefined, never infinite.
    none_called = m.ConfusionCounts(tp=0, fp=0, tn=2, fn=2)
    assert m.count_metric("lr_positive", none_called).value is None


def test_separated_replicates_make_the_calibration_slope_infinite_not_undefined() -> None:
    # One negative above one positive: the data are not separated, many replicates are.
    labels = np.r_[np.zeros(15, dtype=bool), np.ones(15, dtype=bool)]
    probabilities = np.r_[np.linspace(0.05, 0.45, 15), np.linspace(0.4, 0.95, 15)]
    result = ev.binary_metrics(labels, probabilities, replicates=300, seed=0)
    slope = result.calibration_slope
    assert slope.status == "ok" and slope.lower is not None and slope.upper_unbounded
    # Only replicates whose fit genuinely failed (not separated) may be left out.
    population = ev.BinaryPopulation(
        labels, probabilities, probabilities, ev.EvaluationSettings.create()
    )
    plan = rs.BootstrapPlan.create(labels.shape[0], replicates=300, seed=0)
    batch = population.evaluate(plan.weights(0, 300))
    infinite = np.isinf(batch.metrics["calibration_slope"].values)
    assert infinite.sum() >= 20
    assert (batch.metrics["calibration_slope"].values[infinite] > 0).all()
    # Each infinite replicate really is separated: its drawn positives sit above its negatives.
    weights = plan.weights(0, 300)[infinite] > 0
    for row in weights:
        assert probabilities[row & labels].min() >= probabilities[row & ~labels].max()
    # Separation below logit 0 on both sides: the intercept is +inf there.
    intercepts = batch.metrics["calibration_intercept"]
    assert np.isposinf(intercepts.values[infinite & (intercepts.codes == 0)]).any()


# --------------------------------------------------------------------------------------------
# Proportions at the boundary (issue 7, item 4)
# --------------------------------------------------------------------------------------------


def test_fifteen_of_fifteen_detected_is_not_a_zero_width_interval() -> None:
    rng = np.random.default_rng(2)
    labels = np.r_[np.ones(15, dtype=bool), np.zeros(85, dtype=bool)]
    scores = np.r_[rng.uniform(0.6, 1.0, 15), rng.uniform(0.0, 0.7, 85)]
    result = ev.binary_metrics(labels, scores, replicates=300)
    sensitivity = result.sensitivity
    assert sensitivity.estimate == 1.0 and sensitivity.method == "wilson"
    assert sensitivity.upper == 1.0
    assert sensitivity.lower == pytest.approx(rs.wilson_interval(15, 15).lower)
    assert 0.78 < sensitivity.lower < 0.8
    # Every proportion takes the score interval; the others keep the bootstrap.
    for name in PROPORTIONS:
        assert getattr(result, name).method == "wilson"
    assert result.auroc.method == "bootstrap_percentile_case"


def test_a_percentile_interval_that_collapses_to_a_point_is_not_reported() -> None:
    # Perfect separation in 30 cases: every resample has AUROC 1. That is no certainty.
    labels = np.r_[np.zeros(15, dtype=bool), np.ones(15, dtype=bool)]
    scores = np.r_[np.linspace(0.05, 0.45, 15), np.linspace(0.55, 0.95, 15)]
    auroc = ev.binary_metrics(labels, scores, replicates=200).auroc
    assert auroc.status == "ok" and auroc.estimate == 1.0
    assert not auroc.has_interval
    assert auroc.reason is not None and "no width" in auroc.reason
    # DeLong's variance is 0 there too: no interval either.
    assert not ev.binary_metrics(labels, scores, ci="delong").auroc.has_interval


# --------------------------------------------------------------------------------------------
# A macro average that leaves a label out says so (issue 7, item 3)
# --------------------------------------------------------------------------------------------


def test_a_macro_average_over_fewer_labels_is_partial_and_names_the_one_left_out() -> None:
    rng = np.random.default_rng(7)
    truth = rng.random((300, 3)) < 0.3
    truth[:, 2] = False  # 'mass' has no positive case: its sensitivity is undefined
    scores = np.clip(truth * 0.4 + rng.random((300, 3)) * 0.6, 0, 1)
    result = ev.multilabel_metrics(truth, scores, ["effusion", "nodule", "mass"], replicates=50)
    sensitivity = result.macro.sensitivity
    assert sensitivity.status == "partial"
    assert result.macro.covers["sensitivity"] == ["effusion", "nodule"]
    assert sensitivity.reason is not None
    assert (
        "2 of 3 labels" in sensitivity.reason and "'mass' (no positive cases" in sensitivity.reason
    )
    per_label = [result.per_label[k].metrics.sensitivity.estimate for k in range(2)]
    assert sensitivity.estimate == pytest.approx(np.mean(per_label))
    # Specificity is defined for every label: an ordinary mean over all three.
    assert result.macro.specificity.status == "ok"
    assert result.macro.covers["specificity"] == ["effusion", "nodule", "mass"]
    assert result.micro.covers["sensitivity"] == ["effusion", "nodule", "mass"]
