"""Tests of reliability curves, ECE, logistic recalibration and the decision curve."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression

from validators import evaluation as ev
from validators import metrics as m
from validators.metrics.calibration import _normal_stream


def make_data(
    *, seed: int, n: int = 500, slope: float = 1.0, intercept: float = 0.0
) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """Return outcomes drawn from sigmoid(intercept + slope * logit(p)) for uniform-ish p."""
    rng = np.random.default_rng(seed)
    probabilities = 1.0 / (1.0 + np.exp(-rng.normal(0, 1.5, n)))
    truth = 1.0 / (1.0 + np.exp(-(intercept + slope * m.logit(probabilities))))
    return rng.random(n) < truth, probabilities


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reliability_curve_equals_sklearn_calibration_curve(strategy: str, seed: int) -> None:
    labels, probabilities = make_data(seed=seed, n=300)
    probabilities = np.round(probabilities, 1)  # values on the bin edges
    curve = m.reliability_curve(labels, probabilities, n_bins=8, strategy=strategy)  # type: ignore[arg-type]
    observed, predicted = calibration_curve(labels, probabilities, n_bins=8, strategy=strategy)
    np.testing.assert_allclose([b.observed_rate for b in curve.bins], observed)
    np.testing.assert_allclose([b.mean_predicted for b in curve.bins], predicted)
    assert sum(b.count for b in curve.bins) == 300
    assert curve.n_bins == 8 and curve.strategy == strategy


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_ece_is_the_count_weighted_gap_of_the_reliability_curve_less_its_null_mean(
    strategy: str,
) -> None:
    labels, probabilities = make_data(seed=3, n=400, slope=0.6)
    curve = m.reliability_curve(labels, probabilities, strategy=strategy)  # type: ignore[arg-type]
    plug_in = sum(b.count * abs(b.mean_predicted - b.observed_rate) for b in curve.bins) / 400
    raw = m.expected_calibration_error(
        labels,
        probabilities,
        strategy=strategy,  # type: ignore[arg-type]
        debiased=False,
    )
    assert raw.value == pytest.approx(plug_in, abs=1e-12)
    # Debiased: less sqrt(2 / pi) tau_b per bin, tau_b^2 = sum of p (1 - p) over the bin.
    edges = m.bin_edges(probabilities, 10, strategy)  # type: ignore[arg-type]
    index = m.bin_index(probabilities, edges)
    null = sum(
        np.sqrt(np.sum(probabilities[index == b] * (1 - probabilities[index == b])))
        for b in range(10)
    ) * np.sqrt(2 / np.pi)
    ece = m.expected_calibration_error(labels, probabilities, strategy=strategy)  # type: ignore[arg-type]
    assert ece.value == pytest.approx(plug_in - null / 400, abs=1e-12)


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_debiased_ece_averages_zero_on_a_calibrated_model(strategy: str) -> None:
    # 400 calibrated datasets of 500 cases: the plug-in averages about 0.03, the debiased ECE 0
    # (its standard error over the datasets is about 0.0005; 4 of them are allowed).
    rng = np.random.default_rng(7)
    values, plug_ins = [], []
    for _ in range(400):
        p = rng.beta(2.0, 5.0, 500)
        y = rng.random(500) < p
        values.append(m.expected_calibration_error(y, p, strategy=strategy).value)  # type: ignore[arg-type]
        plug_ins.append(m.expected_calibration_error(y, p, strategy=strategy, debiased=False).value)  # type: ignore[arg-type]
    mean, se = float(np.mean(values)), float(np.std(values) / np.sqrt(400))
    assert abs(mean) < 4 * se
    assert float(np.mean(plug_ins)) > 0.02
    assert min(v for v in values if v is not None) < 0  # an unbiased estimate of 0 goes below it


def test_weighted_ece_equals_ece_on_repeated_rows() -> None:
    labels, probabilities = make_data(seed=4, n=200)
    weights = np.random.default_rng(4).integers(0, 4, 200)
    index = np.repeat(np.arange(200), weights)
    weighted = m.expected_calibration_error(labels, probabilities, sample_weight=weights)
    plain = m.expected_calibration_error(labels[index], probabilities[index])
    assert weighted.value == pytest.approx(plain.value, abs=1e-12)


def test_ece_upper_bound_is_never_below_the_estimate_and_is_deterministic() -> None:
    rng = np.random.default_rng(8)
    for k in range(40):
        p = rng.beta(2.0, 5.0, 300)
        shift = [0.0, -0.3, 0.5][k % 3]
        y = rng.random(300) < 1 / (1 + np.exp(-(m.logit(p) + shift)))
        value = m.expected_calibration_error(y, p).value
        assert value is not None
        scales = m.ece_null_scales(p, m.bin_edges(p, 10, "uniform"))
        upper = m.ece_upper_bound(value, scales, 300.0, 0.95)
        assert upper >= value and upper >= 0.0
        # Same digits from freshly drawn normals, as in a new process: the kept draws alone
        # would repeat themselves even from an unseeded generator.
        _normal_stream.cache_clear()
        assert m.ece_upper_bound(value, scales, 300.0, 0.95) == upper
    # A negative estimate (fewer misses than chance allows) may get the bound 0, never below.
    assert m.ece_upper_bound(-0.5, np.array([1.0, 2.0]), 100.0, 0.95) == 0.0
    # Every prediction 0 or 1: nothing is random under calibration, the bound is the estimate.
    assert m.ece_upper_bound(0.1, np.zeros(3), 10.0, 0.95) == 0.1


@pytest.mark.parametrize("level", [0.0, 1.0, 1.5, -0.2])
def test_ece_upper_bound_refuses_a_level_outside_zero_to_one(level: float) -> None:
    # Outside (0, 1) the quantile position would index the draws from the wrong end.
    with pytest.raises(ValueError, match="level must be strictly between 0 and 1"):
        m.ece_upper_bound(0.01, np.array([1.0, 2.0, 3.0]), 100.0, level)


def test_ece_upper_bound_covers_the_least_favourable_configuration() -> None:
    # Every bin off by the same number of standard errors (the configuration the bound guards
    # against): R_b ~ N(t tau_b, tau_b^2), true ECE sum t tau_b / n. 95% bounds cover in about
    # 95% of 300 draws (SE 1.3 points); a bound built without the bias allowance (estimate +
    # 1.645 SD) covers far less, and so does the old plug-in's percentile spread around A.
    rng = np.random.default_rng(9)
    tau = np.array([2.0, 4.0, 5.0, 5.0, 4.0, 3.0, 2.0, 1.0])
    n = 1000.0
    for t in (0.5, 1.0, 2.0):
        truth = t * tau.sum() / n
        sums = rng.normal(t * tau, tau, size=(300, tau.shape[0]))
        estimates = (np.abs(sums) - np.sqrt(2 / np.pi) * tau).sum(axis=1) / n
        covered = np.mean([m.ece_upper_bound(a, tau, n, 0.95) >= truth for a in estimates])
        assert 0.92 <= covered <= 0.99, (t, covered)


def test_binary_metrics_report_ece_debiased_with_a_one_sided_upper_bound() -> None:
    labels, probabilities = make_data(seed=10, n=600)
    result = ev.binary_metrics(labels, probabilities, replicates=100)
    for name, strategy in (("ece", "uniform"), ("ece_equal_mass", "quantile")):
        estimate = getattr(result, name)
        assert estimate.sides == "upper" and estimate.lower is None
        assert estimate.method == "debiased_least_favourable_upper_case"
        assert estimate.upper is not None and estimate.estimate is not None
        assert estimate.estimate <= estimate.upper
        expected = m.expected_calibration_error(labels, probabilities, strategy=strategy)  # type: ignore[arg-type]
        assert estimate.estimate == pytest.approx(expected.value, abs=1e-12)


def test_patient_clustering_widens_the_ece_bound() -> None:
    # Each patient's case appears 3 times: the patient bootstrap sees a design effect near 3,
    # so its bound is wider than the bound of cases taken as independent.
    labels, probabilities = make_data(seed=11, n=300)
    labels, probabilities = np.repeat(labels, 3), np.repeat(probabilities, 3)
    patients = np.repeat(np.arange(300), 3)
    independent = ev.binary_metrics(labels, probabilities, replicates=200).ece
    clustered = ev.binary_metrics(labels, probabilities, replicates=200, groups=patients).ece
    assert clustered.method == "debiased_least_favourable_upper_patient"
    assert clustered.estimate == independent.estimate
    assert clustered.upper is not None and independent.upper is not None
    assert clustered.upper > independent.upper + 0.01


def test_ece_is_small_for_a_calibrated_model_and_large_for_a_miscalibrated_one() -> None:
    calibrated = m.expected_calibration_error(*make_data(seed=5, n=20_000))
    overconfident = m.expected_calibration_error(*make_data(seed=5, n=20_000, slope=0.4))
    assert calibrated.value is not None and calibrated.value < 0.015
    assert overconfident.value is not None and overconfident.value > 0.05


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_calibration_slope_intercept_equal_sklearn_unpenalized_logistic_regression(
    seed: int, weighted: bool
) -> None:
    labels, probabilities = make_data(seed=seed, n=400, slope=0.7, intercept=0.3)
    weights = np.random.default_rng(seed).integers(1, 4, 400).astype(float) if weighted else None
    fit = m.calibration_slope_intercept(labels, probabilities, sample_weight=weights)
    reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(
        m.logit(probabilities)[:, None], labels, sample_weight=weights
    )
    assert fit.slope.value == pytest.approx(reference.coef_[0, 0], abs=1e-6)
    assert fit.intercept.value == pytest.approx(reference.intercept_[0], abs=1e-6)


def test_calibration_slope_is_one_and_intercept_zero_when_calibrated() -> None:
    fit = m.calibration_slope_intercept(*make_data(seed=6, n=100_000))
    assert fit.slope.value == pytest.approx(1.0, abs=0.03)
    assert fit.intercept.value == pytest.approx(0.0, abs=0.03)
    shrunk = m.calibration_slope_intercept(*make_data(seed=6, n=100_000, slope=0.5))
    assert shrunk.slope.value == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize(
    ("labels", "probabilities", "reason"),
    [
        ([0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4], m.NO_POSITIVES),
        ([1, 0, 1, 0], [0.3, 0.3, 0.3, 0.3], "all predicted probabilities are equal"),
        ([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], "separated"),
    ],
)
def test_calibration_slope_undefined_cases(
    labels: list[int], probabilities: list[float], reason: str
) -> None:
    fit = m.calibration_slope_intercept(labels, probabilities)
    assert fit.slope.value is None and fit.intercept.value is None
    assert fit.slope.reason is not None and reason in fit.slope.reason


def test_decision_curve_matches_the_net_benefit_formula() -> None:
    labels, probabilities = make_data(seed=7, n=300)
    curve = m.decision_curve(labels, probabilities)
    assert len(curve.thresholds) == 99
    assert curve.thresholds[0] == 0.01 and curve.thresholds[-1] == 0.99
    prevalence = labels.mean()
    for k in (0, 19, 49, 98):
        pt = curve.thresholds[k]
        treated = probabilities >= pt
        tp, fp = np.sum(treated & labels), np.sum(treated & ~labels)
        expected = tp / 300 - fp / 300 * pt / (1 - pt)
        assert curve.net_benefit_model[k] == pytest.approx(expected)
        assert curve.net_benefit_model[k] == pytest.approx(
            m.net_benefit(labels, probabilities, pt).value
        )
        assert curve.net_benefit_all[k] == pytest.approx(
            prevalence - (1 - prevalence) * pt / (1 - pt)
        )
    assert curve.net_benefit_none == 0.0


def test_net_benefit_needs_a_threshold_strictly_inside_zero_one() -> None:
    result = m.net_benefit([0, 1], [0.2, 0.8], 1.0)
    assert result.value is None and result.reason is not None and "strictly" in result.reason
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        m.decision_curve([0, 1], [0.2, 0.8], thresholds=[0.0, 0.5])


def test_brier_is_reexported_here() -> None:
    assert m.brier_score_loss([0, 1], [0.0, 0.5]).value == pytest.approx(0.125)
