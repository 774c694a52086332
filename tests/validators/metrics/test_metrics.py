"""Tests of the metric functions against sklearn, on random data and on edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn import metrics as sk

from validators import evaluation as ev
from validators import metrics as m
from validators.results import MAX_CURVE_POINTS

SEEDS = [0, 1, 2, 3]


def make_data(
    *, seed: int, n: int = 300, prevalence: float = 0.3, decimals: int | None = None
) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """Return labels and probabilities that separate the classes somewhat; rounded for ties."""
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < prevalence
    scores = 1.0 / (1.0 + np.exp(-(rng.normal(size=n) + 1.2 * labels - 0.8)))
    if decimals is not None:
        scores = np.round(scores, decimals)
    return labels, scores


def make_weights(*, seed: int, n: int) -> NDArray[np.float64]:
    """Return non-negative sample weights, some zero."""
    return np.random.default_rng(seed + 100).integers(0, 4, n).astype(np.float64)


def value(result: m.MetricValue) -> float:
    """Return a defined metric's value (fails the test when it is undefined)."""
    assert result.value is not None, result.reason
    return result.value


# --- equality with sklearn ----------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("decimals", [None, 1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_ranking_metrics_equal_sklearn(seed: int, decimals: int | None, weighted: bool) -> None:
    labels, scores = make_data(seed=seed, decimals=decimals)
    weights = make_weights(seed=seed, n=labels.shape[0]) if weighted else None
    assert value(m.roc_auc_score(labels, scores, sample_weight=weights)) == pytest.approx(
        sk.roc_auc_score(labels, scores, sample_weight=weights), abs=1e-12
    )
    assert value(m.average_precision_score(labels, scores, sample_weight=weights)) == (
        pytest.approx(sk.average_precision_score(labels, scores, sample_weight=weights), abs=1e-12)
    )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("weighted", [False, True])
def test_probability_metrics_equal_sklearn(seed: int, weighted: bool) -> None:
    labels, scores = make_data(seed=seed, decimals=3)
    scores[:3] = [0.0, 1.0, 1.0]  # clipping at the ends
    weights = make_weights(seed=seed, n=labels.shape[0]) if weighted else None
    assert value(m.brier_score_loss(labels, scores, sample_weight=weights)) == pytest.approx(
        sk.brier_score_loss(labels, scores, sample_weight=weights), abs=1e-12
    )
    assert value(m.log_loss(labels, scores, sample_weight=weights)) == pytest.approx(
        sk.log_loss(labels, scores, sample_weight=weights, labels=[0, 1]), abs=1e-12
    )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("weighted", [False, True])
def test_operating_point_metrics_equal_sklearn(seed: int, weighted: bool) -> None:
    labels, scores = make_data(seed=seed)
    predicted = scores >= 0.5
    weights = make_weights(seed=seed, n=labels.shape[0]) if weighted else None
    tn, fp, fn, tp = sk.confusion_matrix(labels, predicted, sample_weight=weights).ravel()
    counts = m.confusion_counts(labels, predicted, sample_weight=weights)
    assert counts == pytest.approx((tp, fp, tn, fn))

    def check(ours: m.MetricValue, reference: float) -> None:
        assert value(ours) == pytest.approx(reference, abs=1e-12)

    kw = {"sample_weight": weights}
    check(m.sensitivity_score(labels, predicted, **kw), sk.recall_score(labels, predicted, **kw))
    check(m.ppv_score(labels, predicted, **kw), sk.precision_score(labels, predicted, **kw))
    check(m.f1_score(labels, predicted, **kw), sk.f1_score(labels, predicted, **kw))
    check(
        m.balanced_accuracy_score(labels, predicted, **kw),
        sk.balanced_accuracy_score(labels, predicted, **kw),
    )
    check(m.specificity_score(labels, predicted, **kw), tn / (tn + fp))
    check(m.npv_score(labels, predicted, **kw), tn / (tn + fn))
    check(m.lr_positive(labels, predicted, **kw), (tp / (tp + fn)) / (fp / (fp + tn)))
    check(m.lr_negative(labels, predicted, **kw), (fn / (tp + fn)) / (tn / (tn + fp)))


def brute_force_operating_points(
    labels: NDArray[np.bool_], scores: NDArray[np.float64], weights: NDArray[np.float64]
) -> list[tuple[float, float]]:
    """Return (sensitivity, specificity) for "positive when score >= t" at every candidate t."""
    points = []
    for t in [*np.unique(scores), np.inf]:
        called = scores >= t
        tp = weights[labels & called].sum()
        fn = weights[labels & ~called].sum()
        tn = weights[~labels & ~called].sum()
        fp = weights[~labels & called].sum()
        points.append((tp / (tp + fn), tn / (tn + fp)))
    return points


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("decimals", [None, 1])
@pytest.mark.parametrize("target", [0.0, 0.5, 0.8, 0.9, 0.95, 1.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_sensitivity_at_specificity_is_best_feasible_operating_point(
    seed: int, decimals: int | None, target: float, weighted: bool
) -> None:
    labels, scores = make_data(seed=seed, n=120, decimals=decimals)
    weights = make_weights(seed=seed, n=120) if weighted else np.ones(120)
    points = brute_force_operating_points(labels, scores, weights)
    sample_weight = weights if weighted else None
    best_sensitivity = max(sens for sens, spec in points if spec >= target)
    best_specificity = max(spec for sens, spec in points if sens >= target)
    ours = m.sensitivity_at_specificity(labels, scores, target, sample_weight=sample_weight)
    assert value(ours) == pytest.approx(best_sensitivity, abs=1e-12)
    ours = m.specificity_at_sensitivity(labels, scores, target, sample_weight=sample_weight)
    assert value(ours) == pytest.approx(best_specificity, abs=1e-12)


def test_sensitivity_at_specificity_agrees_with_sklearn_roc_curve() -> None:
    labels, scores = make_data(seed=7, n=500)
    fpr, tpr, _ = sk.roc_curve(labels, scores, drop_intermediate=False)
    # A target away from every attainable specificity, so rounding cannot matter.
    target = 0.9012345
    assert value(m.sensitivity_at_specificity(labels, scores, target)) == pytest.approx(
        tpr[1.0 - fpr >= target].max()
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_points_equal_sklearn(seed: int) -> None:
    labels, scores = make_data(seed=seed, decimals=2)
    points = m.roc_points(labels, scores)
    assert points is not None
    fpr, tpr, thresholds = points
    sk_fpr, sk_tpr, sk_thresholds = sk.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thresholds, sk_thresholds)


def test_roc_curve_is_thinned_and_keeps_both_ends() -> None:
    labels, scores = make_data(seed=0, n=20_000)
    curve = m.roc_curve(labels, scores)
    assert curve is not None
    assert len(curve.fpr) <= MAX_CURVE_POINTS
    assert (curve.fpr[0], curve.tpr[0], curve.thresholds[0]) == (0.0, 0.0, None)
    assert (curve.fpr[-1], curve.tpr[-1]) == (1.0, 1.0)
    assert curve.fpr == sorted(curve.fpr)
    assert curve.tpr == sorted(curve.tpr)
    # Thinning keeps the area: trapezoids over the kept points stay close to the AUROC.
    area = np.trapezoid(curve.tpr, curve.fpr)
    assert area == pytest.approx(sk.roc_auc_score(labels, scores), abs=2e-3)


def test_small_roc_curve_keeps_sklearn_points() -> None:
    labels, scores = make_data(seed=1, n=60)
    curve = m.roc_curve(labels, scores)
    assert curve is not None
    sk_fpr, sk_tpr, _ = sk.roc_curve(labels, scores)
    np.testing.assert_allclose(curve.fpr, sk_fpr)
    np.testing.assert_allclose(curve.tpr, sk_tpr)


# --- edge cases: undefined is never 0 -----------------------------------------------------


def test_one_class_only_makes_auroc_undefined_with_reason() -> None:
    labels = np.zeros(10, dtype=bool)
    scores = np.linspace(0, 1, 10)
    auroc = m.roc_auc_score(labels, scores)
    assert auroc.value is None
    assert auroc.reason == m.NO_POSITIVES
    assert m.roc_auc_score(~labels, scores).reason == m.NO_NEGATIVES
    assert m.average_precision_score(labels, scores).value is None
    assert m.roc_curve(labels, scores) is None


def test_sensitivity_is_undefined_without_positives() -> None:
    labels = np.zeros(5, dtype=bool)
    predicted = np.array([1, 0, 1, 0, 0], dtype=bool)
    sensitivity = m.sensitivity_score(labels, predicted)
    assert sensitivity == m.MetricValue(None, m.NO_POSITIVES)
    assert not sensitivity.defined
    assert value(m.specificity_score(labels, predicted)) == pytest.approx(0.6)


def test_ppv_undefined_when_nothing_called_positive() -> None:
    labels = np.array([1, 0, 1], dtype=bool)
    ppv = m.ppv_score(labels, np.zeros(3, dtype=bool))
    assert ppv.value is None
    assert ppv.reason is not None and "called positive" in ppv.reason


def test_likelihood_ratio_undefined_when_infinite() -> None:
    labels = np.array([1, 1, 0, 0], dtype=bool)
    perfect = labels.copy()
    lr = m.lr_positive(labels, perfect)
    assert lr.value is None
    assert lr.reason is not None and "infinite" in lr.reason
    assert value(m.lr_negative(labels, perfect)) == 0.0


def test_constant_scores_give_auroc_one_half() -> None:
    labels, _ = make_data(seed=0, n=50)
    scores = np.full(50, 0.3)
    assert value(m.roc_auc_score(labels, scores)) == 0.5
    assert value(m.roc_auc_score(labels, scores)) == sk.roc_auc_score(labels, scores)


def test_all_ties_across_classes_count_half() -> None:
    labels = np.array([1, 0, 1, 0], dtype=bool)
    scores = np.array([0.5, 0.5, 0.9, 0.1])
    # Pairs (pos, neg): (0.5, 0.5) half, (0.5, 0.1) win, (0.9, 0.5) win, (0.9, 0.1) win.
    assert value(m.roc_auc_score(labels, scores)) == pytest.approx(3.5 / 4)


def test_safe_divide_defines_zero_denominators_as_undefined() -> None:
    assert m.safe_divide(1.0, 4.0) == m.MetricValue(0.25, None)
    assert m.safe_divide(0.0, 0.0, reason="nothing") == m.MetricValue(None, "nothing")
    assert m.safe_divide(3.0, 0.0).value is None
    values = m.safe_divide_array([1.0, 0.0, 2.0], [2.0, 0.0, 0.0])
    assert values[0] == 0.5 and np.isnan(values[1:]).all()


def test_count_metric_batch_marks_each_undefined_row_with_its_reason() -> None:
    counts = m.ConfusionCountsBatch(
        tp=np.array([5.0, 0.0, 3.0]),
        fp=np.array([1.0, 2.0, 0.0]),
        tn=np.array([4.0, 3.0, 0.0]),
        fn=np.array([0.0, 0.0, 1.0]),
    )
    sensitivity = m.count_metric_batch("sensitivity", counts)
    assert sensitivity.value(0) == m.MetricValue(1.0, None)
    assert sensitivity.value(1) == m.MetricValue(None, m.NO_POSITIVES)
    lr = m.count_metric_batch("lr_positive", counts)
    assert lr.reason(1) == m.NO_POSITIVES
    assert lr.reason(2) == m.NO_NEGATIVES
    assert np.isnan(lr.values[1:]).all()


# --- validation: refused with a message that says what was expected ------------------------


def test_nan_scores_are_refused_naming_the_problem() -> None:
    with pytest.raises(ValueError, match=r"NaN in 2 values \(first at index 1\).*finite score"):
        m.roc_auc_score([0, 1, 1], [0.1, np.nan, np.nan])


def test_infinite_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="infinite"):
        m.validate_binary([0, 1], [0.1, np.inf])


def test_empty_input_is_refused() -> None:
    with pytest.raises(ValueError, match="no cases"):
        m.roc_auc_score([], [])


def test_length_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="y_true has 3 values but y_score has 2"):
        m.validate_binary([0, 1, 1], [0.1, 0.2])


def test_non_binary_labels_are_refused() -> None:
    with pytest.raises(ValueError, match=r"binary labels 0/1.*found \[2\]"):
        m.validate_binary([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="binary labels"):
        m.validate_binary(["yes", "no"], [0.1, 0.2])


def test_probabilities_out_of_range_suggest_logits() -> None:
    with pytest.raises(ValueError, match="scores='logit'"):
        m.brier_score_loss([0, 1], [0.2, 1.5])


def test_negative_sample_weights_are_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        m.roc_auc_score([0, 1], [0.1, 0.2], sample_weight=[1.0, -1.0])


def test_column_vector_scores_are_accepted() -> None:
    labels, scores = make_data(seed=0, n=40)
    assert m.roc_auc_score(labels, scores[:, None]) == m.roc_auc_score(labels, scores)


# --- binary_metrics and multilabel_metrics -------------------------------------------------


def test_binary_metrics_point_estimates_equal_the_functions() -> None:
    labels, scores = make_data(seed=5, n=400)
    result = ev.binary_metrics(labels, scores, ci="none", threshold=0.4)
    predicted = scores >= 0.4
    assert result.auroc.estimate == pytest.approx(value(m.roc_auc_score(labels, scores)))
    assert result.sensitivity.estimate == pytest.approx(
        value(m.sensitivity_score(labels, predicted))
    )
    assert result.average_precision.estimate == pytest.approx(
        value(m.average_precision_score(labels, scores))
    )
    assert result.brier.estimate == pytest.approx(value(m.brier_score_loss(labels, scores)))
    assert result.net_benefit.estimate == pytest.approx(value(m.net_benefit(labels, scores, 0.4)))
    assert result.sensitivity_at_specificity.estimate == pytest.approx(
        value(m.sensitivity_at_specificity(labels, scores, 0.9))
    )
    assert result.auroc.method == "none"
    assert result.auroc.lower is None
    assert (result.n_cases, result.n_positive) == (400, int(labels.sum()))


def test_binary_metrics_on_logits_matches_probabilities() -> None:
    labels, probabilities = make_data(seed=6, n=300)
    logits = np.log(probabilities / (1 - probabilities))
    on_probabilities = ev.binary_metrics(labels, probabilities, threshold=0.3, ci="none")
    on_logits = ev.binary_metrics(
        labels, logits, scores="logit", threshold=float(np.log(0.3 / 0.7)), ci="none"
    )
    for name in ("auroc", "sensitivity", "specificity", "brier", "log_loss", "ece", "net_benefit"):
        ours, reference = getattr(on_logits, name), getattr(on_probabilities, name)
        assert ours.estimate == pytest.approx(reference.estimate, abs=1e-9), name
    assert on_logits.calibration_slope.estimate == pytest.approx(
        on_probabilities.calibration_slope.estimate, abs=1e-6
    )


def test_binary_metrics_one_class_reports_undefined_never_zero() -> None:
    scores = np.linspace(0.05, 0.95, 30)
    result = ev.binary_metrics(np.zeros(30), scores, replicates=50)
    for name in ("auroc", "sensitivity", "average_precision", "calibration_slope", "lr_positive"):
        estimate = getattr(result, name)
        assert estimate.status == "undefined", name
        assert estimate.estimate is None and estimate.reason
    assert result.specificity.status == "ok"
    assert result.roc_curve is None


def test_binary_metrics_interval_methods_are_named() -> None:
    labels, scores = make_data(seed=2, n=200)
    result = ev.binary_metrics(labels, scores, ci=("wilson", "delong"), replicates=50)
    assert result.sensitivity.method == "wilson"
    assert result.prevalence.method == "wilson"
    assert result.auroc.method == "delong"
    assert result.brier.method == "bootstrap_percentile_case"
    by_patient = ev.binary_metrics(labels, scores, replicates=50, groups=np.arange(200) // 2)
    assert by_patient.auroc.method == "bootstrap_percentile_patient"
    assert (by_patient.auroc.n, by_patient.auroc.n_cases, by_patient.n_patients) == (100, 200, 100)


def test_binary_metrics_refuses_unknown_interval_methods() -> None:
    labels, scores = make_data(seed=2, n=20)
    with pytest.raises(ValueError, match="ci must be"):
        ev.binary_metrics(labels, scores, ci="jackknife")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot be combined"):
        ev.binary_metrics(labels, scores, ci=("none", "wilson"))


def test_multilabel_point_estimates_per_label_macro_and_micro() -> None:
    rng = np.random.default_rng(9)
    n = 300
    truth = rng.random((n, 3)) < [0.2, 0.4, 0.1]
    scores = np.clip(rng.random((n, 3)) * 0.7 + truth * 0.3, 0, 1)
    result = ev.multilabel_metrics(
        truth, scores, ["a", "b", "c"], threshold={"a": 0.5, "b": 0.4, "c": 0.6}, ci="none"
    )
    aurocs = [sk.roc_auc_score(truth[:, k], scores[:, k]) for k in range(3)]
    for k, label in enumerate(result.per_label):
        assert label.metrics.auroc.estimate == pytest.approx(aurocs[k])
    assert result.macro.auroc.estimate == pytest.approx(np.mean(aurocs))
    assert result.micro.auroc.estimate == pytest.approx(
        sk.roc_auc_score(truth, scores, average="micro")
    )
    predicted = scores >= [0.5, 0.4, 0.6]
    assert result.micro.sensitivity.estimate == pytest.approx(
        sk.recall_score(truth, predicted, average="micro")
    )
    assert result.macro.ppv.estimate == pytest.approx(
        sk.precision_score(truth, predicted, average="macro")
    )


def test_multilabel_macro_skips_undefined_labels_and_bootstraps_together() -> None:
    rng = np.random.default_rng(4)
    truth = np.column_stack([rng.random(200) < 0.3, np.zeros(200, dtype=bool)])
    scores = rng.random((200, 2))
    result = ev.multilabel_metrics(truth, scores, ["x", "never"], replicates=100)
    assert result.per_label[1].metrics.auroc.status == "undefined"
    assert result.macro.auroc.estimate == pytest.approx(result.per_label[0].metrics.auroc.estimate)
    assert result.macro.auroc.lower == pytest.approx(result.per_label[0].metrics.auroc.lower)


def test_multilabel_refuses_misshapen_input() -> None:
    with pytest.raises(ValueError, match=r"shape \[N, 2\]"):
        ev.multilabel_metrics(np.zeros((4, 3)), np.zeros((4, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="label 'b'"):
        ev.multilabel_metrics(np.zeros((2, 2)), np.array([[0.1, np.nan], [0.2, 0.3]]), ["a", "b"])
