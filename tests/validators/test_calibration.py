"""Tests of reliability curves, ECE, logistic recalibration and the decision curve."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression

from validators import calibration as c
from validators import metrics as m


def make_data(
    *, seed: int, n: int = 500, slope: float = 1.0, intercept: float = 0.0
) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """Return outcomes drawn from sigmoid(intercept + slope * logit(p)) for uniform-ish p."""
    rng = np.random.default_rng(seed)
    probabilities = 1.0 / (1.0 + np.exp(-rng.normal(0, 1.5, n)))
    truth = 1.0 / (1.0 + np.exp(-(intercept + slope * c.logit(probabilities))))
    return rng.random(n) < truth, probabilities


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reliability_curve_equals_sklearn_calibration_curve(strategy: str, seed: int) -> None:
    labels, probabilities = make_data(seed=seed, n=300)
    probabilities = np.round(probabilities, 1)  # values on the bin edges
    curve = c.reliability_curve(labels, probabilities, n_bins=8, strategy=strategy)  # type: ignore[arg-type]
    observed, predicted = calibration_curve(labels, probabilities, n_bins=8, strategy=strategy)
    np.testing.assert_allclose([b.observed_rate for b in curve.bins], observed)
    np.testing.assert_allclose([b.mean_predicted for b in curve.bins], predicted)
    assert sum(b.count for b in curve.bins) == 300
    assert curve.n_bins == 8 and curve.strategy == strategy


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_ece_is_the_count_weighted_gap_of_the_reliability_curve(strategy: str) -> None:
    labels, probabilities = make_data(seed=3, n=400, slope=0.6)
    curve = c.reliability_curve(labels, probabilities, strategy=strategy)  # type: ignore[arg-type]
    expected = sum(b.count * abs(b.mean_predicted - b.observed_rate) for b in curve.bins) / 400
    ece = c.expected_calibration_error(labels, probabilities, strategy=strategy)  # type: ignore[arg-type]
    assert ece.value == pytest.approx(expected, abs=1e-12)


def test_weighted_ece_equals_ece_on_repeated_rows() -> None:
    labels, probabilities = make_data(seed=4, n=200)
    weights = np.random.default_rng(4).integers(0, 4, 200)
    index = np.repeat(np.arange(200), weights)
    weighted = c.expected_calibration_error(labels, probabilities, sample_weight=weights)
    plain = c.expected_calibration_error(labels[index], probabilities[index])
    assert weighted.value == pytest.approx(plain.value, abs=1e-12)


def test_ece_is_small_for_a_calibrated_model_and_large_for_a_miscalibrated_one() -> None:
    calibrated = c.expected_calibration_error(*make_data(seed=5, n=20_000))
    overconfident = c.expected_calibration_error(*make_data(seed=5, n=20_000, slope=0.4))
    assert calibrated.value is not None and calibrated.value < 0.015
    assert overconfident.value is not None and overconfident.value > 0.05


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_calibration_slope_intercept_equal_sklearn_unpenalized_logistic_regression(
    seed: int, weighted: bool
) -> None:
    labels, probabilities = make_data(seed=seed, n=400, slope=0.7, intercept=0.3)
    weights = np.random.default_rng(seed).integers(1, 4, 400).astype(float) if weighted else None
    fit = c.calibration_slope_intercept(labels, probabilities, sample_weight=weights)
    reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(
        c.logit(probabilities)[:, None], labels, sample_weight=weights
    )
    assert fit.slope.value == pytest.approx(reference.coef_[0, 0], abs=1e-6)
    assert fit.intercept.value == pytest.approx(reference.intercept_[0], abs=1e-6)


def test_calibration_slope_is_one_and_intercept_zero_when_calibrated() -> None:
    fit = c.calibration_slope_intercept(*make_data(seed=6, n=100_000))
    assert fit.slope.value == pytest.approx(1.0, abs=0.03)
    assert fit.intercept.value == pytest.approx(0.0, abs=0.03)
    shrunk = c.calibration_slope_intercept(*make_data(seed=6, n=100_000, slope=0.5))
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
    fit = c.calibration_slope_intercept(labels, probabilities)
    assert fit.slope.value is None and fit.intercept.value is None
    assert fit.slope.reason is not None and reason in fit.slope.reason


def test_decision_curve_matches_the_net_benefit_formula() -> None:
    labels, probabilities = make_data(seed=7, n=300)
    curve = c.decision_curve(labels, probabilities)
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
        c.decision_curve([0, 1], [0.2, 0.8], thresholds=[0.0, 0.5])


def test_brier_is_reexported_here() -> None:
    assert c.brier_score_loss([0, 1], [0.0, 0.5]).value == pytest.approx(0.125)
