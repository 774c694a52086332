"""Tests of the clustered Wilson, MOVER and Obuchowski intervals (validators.resampling).

The coverage simulations behind the choices are summarized in the module docstring; these tests
pin the algebra: exact reductions to the textbook intervals (Wilson, Newcombe's hybrid score,
DeLong), the boundary rules, and Obuchowski's formula against a brute-force O(n^2) version.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from validators import resampling as rs
from validators.resampling import delong_auc_variance, wilson_interval

FloatArray = NDArray[np.float64]


def wilson(successes: int, n: int) -> tuple[float, float, float]:
    """Return (p, lower, upper) of the plain Wilson interval."""
    interval = wilson_interval(successes, n)
    assert interval.lower is not None and interval.upper is not None
    return successes / n, interval.lower, interval.upper


def test_singleton_clusters_give_exactly_wilson() -> None:
    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 15, 40, 200):
        for successes in sorted({0, 1, n // 3, n // 2, n - 1, n} - {-1}):
            if not 0 <= successes <= n:
                continue
            hits = np.zeros(n)
            hits[rng.choice(n, successes, replace=False)] = 1
            result = rs.clustered_wilson_interval(hits, np.ones(n))
            expected = wilson_interval(successes, n)
            assert (result.lower, result.upper) == (expected.lower, expected.upper)
            assert result.design_effect == 1.0
            assert result.effective_n == n


def test_singletons_with_empty_patients_match_statsmodels() -> None:
    proportion = pytest.importorskip("statsmodels.stats.proportion")
    hits = np.array([1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1, 0])
    trials = np.array([1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1])  # two patients not in the denominator
    result = rs.clustered_wilson_interval(hits * trials, trials)
    lower, upper = proportion.proportion_confint(7, 10, alpha=0.05, method="wilson")
    assert result.clusters == 10
    assert result.lower == pytest.approx(lower, abs=1e-12)
    assert result.upper == pytest.approx(upper, abs=1e-12)


def test_all_detected_is_not_a_zero_width_interval() -> None:
    result = rs.clustered_wilson_interval(np.ones(15), np.ones(15))
    assert result.estimate == 1.0
    assert result.upper == 1.0
    # Exact (Clopper-Pearson) lower bound is 0.025^(1/15) = 0.782; Wilson's is 15/(15 + z^2).
    assert result.lower is not None and 0.78 < result.lower < 0.80
    assert result.lower == pytest.approx(15 / (15 + 1.959963984540054**2), abs=1e-12)
    assert result.upper - result.lower > 0.15


def test_none_detected_starts_at_zero() -> None:
    result = rs.clustered_wilson_interval(np.zeros(10), np.ones(10))
    assert result.lower == 0.0
    assert result.upper is not None and result.upper == pytest.approx(0.2775, abs=1e-4)


def _t(df: int) -> float:
    from scipy.stats import t as student_t

    return float(student_t.ppf(0.975, df))


def test_boundary_uses_the_number_of_patients() -> None:
    # 12 images from 4 patients, all detected: the design effect cannot be estimated, so the
    # interval is Wilson's on 4 patients, not on 12 images (with t on 3 degrees of freedom:
    # the images are clustered).
    result = rs.clustered_wilson_interval([3, 3, 3, 3], [3, 3, 3, 3])
    assert not result.design_effect_estimated
    assert result.effective_n == 4
    assert result.design_effect == 3.0
    lower, upper = rs.wilson_bounds(1.0, 4, _t(3))
    assert (result.lower, result.upper) == (float(lower), float(upper))
    z_bound = wilson_interval(4, 4).lower
    assert result.lower is not None and z_bound is not None and result.lower < z_bound
    missed = rs.clustered_wilson_interval([0, 0, 0, 0, 0], [2, 1, 3, 2, 2])
    assert missed.effective_n == 5
    assert missed.lower == 0.0
    assert missed.upper == float(rs.wilson_bounds(0.0, 5, _t(4))[1])


def test_positively_correlated_clusters_widen_the_interval() -> None:
    # Patients detected all-or-nothing: perfectly correlated images.
    trials = np.array([4, 4, 4, 4, 4, 4, 4, 4, 4, 4])
    hits = np.array([4, 4, 0, 4, 4, 0, 4, 4, 4, 0])
    result = rs.clustered_wilson_interval(hits, trials)
    naive = wilson_interval(int(hits.sum()), int(trials.sum()))
    # The intraclass correlation is 1 (no variation within a patient): deff is the cluster
    # size, 1 + (4 - 1) * 1, and the 40 images count as 10.
    assert result.design_effect == pytest.approx(4.0, abs=1e-12)
    assert result.effective_n == pytest.approx(10.0, abs=1e-12)
    assert result.lower is not None and naive.lower is not None and result.lower < naive.lower
    assert result.upper is not None and naive.upper is not None and result.upper > naive.upper
    lower, upper = rs.wilson_bounds(0.7, 10.0, _t(9))
    assert (result.lower, result.upper) == pytest.approx((float(lower), float(upper)), abs=1e-12)


def test_the_design_effect_is_kish_with_the_anova_intraclass_correlation() -> None:
    # An independent computation of the one-way ANOVA estimator on the images themselves.
    trials = np.array([1, 2, 3, 4, 2, 3, 1, 4, 3, 2])
    hits = np.array([1, 2, 1, 4, 0, 3, 0, 3, 3, 1])
    images = np.concatenate([[1] * h + [0] * (t - h) for h, t in zip(hits, trials, strict=True)])
    patient = np.repeat(np.arange(10), trials)
    n, k = trials.sum(), 10
    grand = images.mean()
    means = np.bincount(patient, weights=images) / trials
    msb = (trials * (means - grand) ** 2).sum() / (k - 1)
    msw = ((images - means[patient]) ** 2).sum() / (n - k)
    m0 = (n - (trials**2).sum() / n) / (k - 1)
    rho = (msb - msw) / (msb + (m0 - 1) * msw)
    assert 0 < rho < 1
    expected = 1 + ((trials**2).sum() / n - 1) * rho
    result = rs.clustered_wilson_interval(hits, trials)
    assert result.design_effect == pytest.approx(expected, rel=1e-12)
    assert result.effective_n == pytest.approx(n / expected, rel=1e-12)


def test_negatively_correlated_clusters_never_narrower_than_independent() -> None:
    result = rs.clustered_wilson_interval([1, 1, 1, 1, 1, 1], [2, 2, 2, 2, 2, 2])
    assert result.design_effect == 1.0
    assert result.effective_n == 12
    independent = wilson_interval(6, 12)
    assert result.lower is not None and independent.lower is not None
    assert result.upper is not None and independent.upper is not None
    assert result.lower <= independent.lower and result.upper >= independent.upper


def test_batch_matches_one_at_a_time_and_handles_empty_populations() -> None:
    rng = np.random.default_rng(11)
    trials = rng.integers(0, 5, size=(6, 30)).astype(float)
    trials[4] = 0.0
    hits = rng.binomial(trials.astype(int), 0.8).astype(float)
    batch = rs.clustered_wilson_batch(hits, trials)
    for g in range(6):
        one = rs.clustered_wilson_interval(hits[g], trials[g])
        if g == 4:
            assert one.reason == "no cases in the denominator"
            assert math.isnan(batch.lower[g]) and batch.clusters[g] == 0
            continue
        assert (one.lower, one.upper, one.design_effect) == (
            batch.lower[g],
            batch.upper[g],
            batch.design_effect[g],
        )


def test_t_quantile_is_wider_and_one_patient_says_nothing() -> None:
    hits, trials = np.array([2, 1, 3, 0, 2]), np.array([3, 2, 3, 1, 2])
    z = rs.clustered_wilson_interval(hits, trials, quantile="normal")
    t = rs.clustered_wilson_interval(hits, trials)
    assert t.effective_n == z.effective_n
    assert t.lower is not None and z.lower is not None and t.lower < z.lower
    single = rs.clustered_wilson_interval([2], [3], quantile="t")
    assert (single.lower, single.upper) == (0.0, 1.0)


def test_cluster_totals_and_input_checks() -> None:
    hits, trials = rs.cluster_totals(
        [True, False, True, False, False], [True, True, True, False, True], [0, 0, 2, 2, 1]
    )
    assert hits.tolist() == [1.0, 0.0, 1.0]
    assert trials.tolist() == [2.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="denominator"):
        rs.cluster_totals([True], [False], [0])
    with pytest.raises(ValueError, match="between 0 and its trials"):
        rs.clustered_wilson_interval([3], [2])


# Newcombe (1998), Table II, method 10 (hybrid score): 56/70 - 48/80 and 9/10 - 3/10.
@pytest.mark.parametrize(
    ("a", "m", "b", "n", "lower", "upper"),
    [(56, 70, 48, 80, 0.0524, 0.3339), (9, 10, 3, 10, 0.1705, 0.8090)],
)
def test_mover_with_zero_correlation_is_newcombes_hybrid_score(
    a: int, m: int, b: int, n: int, lower: float, upper: float
) -> None:
    result = rs.mover_difference(*wilson(a, m), *wilson(b, n), 0.0)
    assert float(result.estimate) == pytest.approx(a / m - b / n)
    assert round(float(result.lower), 4) == lower
    assert round(float(result.upper), 4) == upper


def test_mover_matches_statsmodels_newcombe() -> None:
    proportion = pytest.importorskip("statsmodels.stats.proportion")
    for a, m, b, n in [(6, 7, 2, 7), (5, 56, 0, 29), (0, 10, 0, 20), (10, 10, 0, 20)]:
        result = rs.mover_difference(*wilson(a, m), *wilson(b, n))
        expected = proportion.confint_proportions_2indep(a, m, b, n, method="newcomb")
        assert float(result.lower) == pytest.approx(expected[0], abs=1e-10)
        assert float(result.upper) == pytest.approx(expected[1], abs=1e-10)


def test_mover_positive_correlation_narrows_and_bad_correlations_are_tamed() -> None:
    args = (0.8, 0.7, 0.88, 0.75, 0.68, 0.81)
    independent = rs.mover_difference(*args, 0.0)
    correlated = rs.mover_difference(*args, 0.6)
    assert correlated.lower > independent.lower and correlated.upper < independent.upper
    assert float(rs.mover_difference(*args, np.nan).lower) == float(independent.lower)
    assert float(rs.mover_difference(*args, 7.0).lower) == float(
        rs.mover_difference(*args, 1.0).lower
    )


def test_mover_ratio_edges_are_never_nan() -> None:
    p1, l1, u1 = np.array([0.0, 0.5, 0.5, 0.0, 0.6]), [0.0, 0.3, 0.3, 0.0, 0.4], [0.2] + [0.7] * 4
    p2, l2, u2 = (
        np.array([0.5, 0.0, 0.5, 0.0, 0.6]),
        [0.3, 0.0, 0.3, 0.0, 0.4],
        [0.7, 0.2] + [0.7] * 3,
    )
    result = rs.mover_ratio(p1, l1, u1, p2, l2, u2, 0.5)
    assert not np.isnan(result.lower).any() and not np.isnan(result.upper).any()
    assert result.lower[0] == 0.0 and 0.0 < result.upper[0] < math.inf  # 0 / p: [0, finite]
    assert result.upper[1] == math.inf and result.lower[1] > 0.0  # p / 0: unbounded above
    assert result.lower[3] == 0.0 and result.upper[3] == math.inf  # 0 / 0: everything
    assert math.isnan(result.estimate[3]) and result.estimate[1] == math.inf
    assert result.lower[4] < 1.0 < result.upper[4]
    # Symmetry on the log scale: swapping the two inverts the interval.
    swapped = rs.mover_ratio(0.5, 0.3, 0.7, 0.25, 0.1, 0.5, 0.3)
    straight = rs.mover_ratio(0.25, 0.1, 0.5, 0.5, 0.3, 0.7, 0.3)
    assert float(swapped.lower) == pytest.approx(1.0 / float(straight.upper))


def test_mover_ratio_at_p1_zero_is_the_limit_of_the_formula() -> None:
    eps = 1e-250  # the approach is slow, O(1 / log(1 / eps))
    at_zero = rs.mover_ratio(0.0, 0.0, 0.2, 0.5, 0.3, 0.7, 0.4)
    near = rs.mover_ratio(eps, eps * 1e-3, 0.2, 0.5, 0.3, 0.7, 0.4)
    assert float(at_zero.upper) == pytest.approx(float(near.upper), rel=1e-3)


def test_group_minus_overall_is_the_identity_through_the_rest() -> None:
    rng = np.random.default_rng(5)
    trials = rng.integers(1, 5, size=60).astype(float)
    hits = rng.binomial(trials.astype(int), 0.85).astype(float)
    group = rng.random(60) < 0.3
    g = rs.clustered_wilson_batch(hits * group, trials * group)
    rest = rs.clustered_wilson_batch(hits * ~group, trials * ~group)
    overall = hits.sum() / trials.sum()
    share = trials[group].sum() / trials.sum()
    both = (g.estimate, g.lower, g.upper, rest.estimate, rest.lower, rest.upper, share)
    difference = rs.group_minus_overall(*both)
    assert float(difference.estimate) == pytest.approx(float(g.estimate) - overall)
    assert difference.lower < difference.estimate < difference.upper
    ratio = rs.group_over_overall(*both)
    assert float(ratio.estimate) == pytest.approx(float(g.estimate) / overall)
    assert ratio.lower < ratio.estimate < ratio.upper <= 1.0 / share
    whole = rs.group_minus_overall(0.8, 0.7, 0.9, np.nan, np.nan, np.nan, 1.0)
    assert (float(whole.lower), float(whole.upper)) == (0.0, 0.0)


def test_cluster_correlation_is_zero_for_disjoint_patients_and_one_for_the_same() -> None:
    hits = np.array([2.0, 1.0, 0.0, 3.0, 0.0, 0.0, 0.0])
    trials = np.array([3.0, 2.0, 1.0, 3.0, 0.0, 0.0, 0.0])
    assert rs.cluster_correlation(hits, trials, hits, trials) == pytest.approx(1.0)
    other_hits = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0])
    other_trials = np.array([0.0, 0.0, 0.0, 0.0, 2.0, 2.0, 1.0])
    assert rs.cluster_correlation(hits, trials, other_hits, other_trials) == 0.0
    # Patients in both: the covariance of their residuals, over the two standard errors.
    shared_hits, shared_trials = hits[:4][::-1].copy(), trials[:4][::-1].copy()
    pad = np.zeros(3)
    a = hits - hits.sum() / trials.sum() * trials
    b = (
        np.r_[shared_hits, pad]
        - shared_hits.sum() / shared_trials.sum() * np.r_[shared_trials, pad]
    )
    expected = float(a @ b / np.sqrt((a @ a) * (b @ b)))
    found = rs.cluster_correlation(hits, trials, np.r_[shared_hits, pad], np.r_[shared_trials, pad])
    assert found == pytest.approx(expected, rel=1e-12) and found != 0.0


def brute_force_obuchowski(
    labels: NDArray[np.bool_], scores: FloatArray, clusters: NDArray[np.int64]
) -> tuple[float, float]:
    """Obuchowski (1997) from the O(n^2) kernel psi, cluster by cluster, as printed."""
    x, y = scores[labels], scores[~labels]
    psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
    big_m, big_n = x.shape[0], y.shape[0]
    auc = psi.sum() / (big_m * big_n)
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    ids = np.unique(clusters)
    xc, yc, m, n = [], [], [], []
    for i in ids:
        pos, neg = clusters[labels] == i, clusters[~labels] == i
        xc.append(v10[pos].sum())
        yc.append(v01[neg].sum())
        m.append(pos.sum())
        n.append(neg.sum())
    dx = np.array(xc) - np.array(m) * auc
    dy = np.array(yc) - np.array(n) * auc
    i10, i01, k = (np.array(m) > 0).sum(), (np.array(n) > 0).sum(), ids.shape[0]
    s10 = i10 / ((i10 - 1) * big_m) * (dx**2).sum()
    s01 = i01 / ((i01 - 1) * big_n) * (dy**2).sum()
    s11 = k / (k - 1) * (dx * dy).sum()
    return float(auc), float(s10 / big_m + s01 / big_n + 2 * s11 / (big_m * big_n))


def test_obuchowski_with_one_image_per_patient_is_delong() -> None:
    rng = np.random.default_rng(2)
    labels = rng.random(120) < 0.35
    scores = np.round(rng.normal(size=120) + labels, 1)  # rounded: ties
    result = rs.obuchowski_auc_variance(labels, scores, np.arange(120)[::-1])
    expected = delong_auc_variance(labels, scores)
    assert not isinstance(result, str) and not isinstance(expected, str)
    assert result[0] == pytest.approx(expected[0], abs=1e-14)
    assert result[1] == pytest.approx(expected[1], rel=1e-12)


def test_obuchowski_matches_the_brute_force_formula_on_clusters() -> None:
    rng = np.random.default_rng(9)
    sizes = rng.integers(1, 5, size=40)
    clusters = np.repeat(np.arange(40), sizes)
    patient_effect = rng.normal(size=40)[clusters]
    labels = rng.random(clusters.shape[0]) < np.where(
        np.repeat(rng.random(40), sizes) < 0.4, 0.8, 0.1
    )
    scores = np.round(patient_effect + 1.2 * labels + rng.normal(size=labels.shape[0]), 1)
    ids = np.array([f"p{c:03d}" for c in clusters])  # string patient ids
    result = rs.obuchowski_auc_variance(labels, scores, ids)
    assert not isinstance(result, str)
    auc, variance = brute_force_obuchowski(labels, scores, clusters)
    assert result[0] == pytest.approx(auc, abs=1e-14)
    assert result[1] == pytest.approx(variance, rel=1e-10)
    interval = rs.obuchowski_interval(labels, scores, ids)
    assert interval.lower is not None and interval.upper is not None
    assert interval.lower < auc < interval.upper


def test_obuchowski_needs_two_patients_each_way() -> None:
    labels = np.array([1, 1, 1, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3])
    reason = rs.obuchowski_auc_variance(labels, scores, [0, 0, 0, 1, 2, 3])
    assert isinstance(reason, str) and "2 patients" in reason
    interval = rs.obuchowski_interval(labels, scores, [0, 0, 0, 1, 2, 3])
    assert interval.auc is None and interval.reason == reason
