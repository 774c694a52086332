"""Closed-form intervals that stay honest at the boundary and under patient clustering.

Issue 7 asks that the default interval of a proportion (sensitivity, specificity, PPV, NPV,
prevalence, and each group's values) keeps nominal 95% coverage at the boundary (15/15 detected
must not read 1.000-1.000) and in small groups, and that intervals still cover 95% when patients
contribute 1-4 correlated images. This module holds the pieces, all vectorized over populations:

* `clustered_wilson_interval` / `clustered_wilson_batch`: Wilson's score interval on the
  effective sample size Σt / deff, with Kish's design effect from the ANOVA estimate of the
  intraclass correlation and a t(k-1) quantile (see (d) below); when deff cannot be estimated (the
  proportion is 0 or 1, or a single patient) the effective size is the number of distinct
  patients. With one image per patient it is exactly Wilson's interval.
* `mover_difference` / `mover_ratio`: MOVER (Newcombe 1998; Zou & Donner 2008) intervals for a
  disparity p1 - p2 or p1 / p2 of two correlated proportions, built from each one's interval and
  their correlation (`cluster_correlation`: cluster-robust, exactly 0 when no patient is in
  both).
* `obuchowski_auc_variance` / `obuchowski_interval`: Obuchowski's (1997) nonparametric variance
  of the AUROC of clustered data; with one image per patient it is exactly DeLong's.

Why these, by exact computation and simulation (95% intervals; the issue's acceptance band is
95 +- 1.7 points, 93.3-96.7%). The scripts are summarized in each paragraph; every number below
was computed for this module.

(a) Boundary, independent images. Positives ~ Binomial(100, 0.2) (mean 20), true sensitivity
0.95; exact average coverage (binomial sums over the number of detections, averaged over the
number of positives >= 1): plain Wilson 95.67%, Wilson with a t(k-1) quantile 96.36%, Jeffreys
97.38%, Clopper-Pearson 98.80%. At other true values Wilson stays inside the band (0.80: 95.43,
0.85: 95.68, 0.90: 95.94, 0.99: 94.70) while t(k-1) drifts to its upper edge (96.7-97.1 at 0.85-
0.99), Jeffreys leaves it on both sides (93.93 at 0.85, 98.21 at 0.99) and Clopper-Pearson is
always above it (97.6-98.8). For 15/15 Wilson gives [0.796, 1] (Clopper-Pearson [0.782, 1]).
Plain Wilson is the default: it is the only one inside the band everywhere.

(b) Clustered images. 150 patients with 1-4 images each (uniform), disease per patient
(prevalence 0.3, shared by its images: about 45 diseased patients and 112 positive images),
detection per image with a patient random effect on the logit (SD 1.5, latent ICC 0.41; SD 2.5,
ICC 0.66), true sensitivity 0.85 and 0.95; 10,000 datasets per cell (Monte Carlo SE 0.2
points). Coverage of clustered Wilson (z) / clustered Wilson (t, k-1 df) / Wilson on images /
Wilson on patients (n = k; this column from 20,000 datasets):
  SD 0   : 0.85: 95.9 / 96.4 / 95.3 / 99.8;   0.95: 96.2 / 96.7 / 95.5 / 99.7
  SD 1.5 : 0.85: 94.5 / 95.1 / 90.1 / 98.9;   0.95: 95.1 / 95.7 / 92.2 / 99.1
  SD 2.5 : 0.85: 94.0 / 94.6 / 86.1 / 97.7;   0.95: 94.8 / 95.7 / 89.3 / 98.1
(median deff 1.38 and 1.77 at 0.85). Small groups (50 patients, about 15 diseased, and 20
patients, about 6 diseased; true sensitivity 0.70, 0.85, 0.95; SD 0, 1.5, 2.5): clustered Wilson
(z) covers 93.2-96.6% and 93.7-96.8%, the t(k-1) version 95.4-97.7% and 98.1-99.3%; 3-58% of
the 6-patient groups have p = 0 or 1, where the k-patient rule applies. Wilson on images
under-covers (down to 84%) and Wilson on patients is needlessly wide (97-99.8%). With the
cluster-robust variance's k/(k-1) but the binomial's plain p(1-p)/n (deff = n/(n-1) under
independence) coverage is 0.05-0.4 points higher; the form used here is 1 on average under
independence and exactly 1 with one image per patient.

(c) Disparities. The same design with a group of about 30% of the patients (about 13 diseased)
whose sensitivity differs from the rest's; 5,000 datasets per cell, 500 patient-bootstrap
replicates each for the correlation. Coverage of the group minus the overall sensitivity:
  group/rest (SD)         MOVER, bootstrap r   identity + MOVER r = 0   percentile bootstrap
  0.80/0.90 (0)                 97.2                  96.0                     -
  0.80/0.90 (1.5, 2.5)       93.8, 93.1            93.4, 93.0               91.1, 90.7
  0.70/0.85 (1.5)               94.9                  93.0                     -
  0.90/0.90 (2.5)               91.3                  95.5                   88.6
  0.92/0.97 (1.5, 2.5)       90.5, 88.7            97.7, 97.3               85.2, 81.5
  0.95/0.95 (1.5)               91.0                  97.7                     -
(percentile bootstrap from 2,000 datasets). The direct MOVER with the bootstrap correlation (or
with the analytic r = w se_group / se_overall: 90.4-94.0%) is lopsided: the truth lies above it
in 4.6-11.6% of datasets and below in 0-1.7%. A group is part of the whole, so the variance of
the difference is Var(group) - Var(overall), a cancellation that Wilson's skewed margins do not
reproduce. `group_minus_overall` instead uses the identity
p_group - p_overall = (1 - w)(p_group - p_rest), w the group's share of the denominator, and
MOVER between the group and the rest of the patients, which are independent (r = 0); the ratio
(`group_over_overall`, 1 / (w + (1 - w) p_rest / p_group)) covers 93.0-97.7% the same way
(direct log-MOVER with bootstrap r: 88.1-96.8%). A group minus a reference group (disjoint
patients: `mover_difference` with r from the bootstrap, about 0) covers 93.4-97.9%. The
shortfalls to 93.0% follow the group's own interval (93.0-93.1% in those cells); the excess
near 1 is MOVER combining two boundary intervals that each already cover 95.5-96.6%.

Korn & Graubard (1998) replace z by a t quantile with k - 1 degrees of freedom (k patients)
when the design effect is estimated from few clusters. Wilson on n_eff with z replaced by t is the
same interval as Wilson with z on n_eff (z/t)^2, which is their effective-size form.

(d) What the engine uses, decided by the issue's own simulation design (tests/validators/
simulation.py, `clustered`: 180 patients of 1-4 images, a patient random effect of SD 1 with image
noise 0.5, latent ICC 0.8; site A has about 27 diseased patients and a true sensitivity of 0.878).
Site A's sensitivity over 4,000 datasets: the cluster-robust design effect above with z covered
91.9% (misses 4.7% high, 3.5% low), with t(k-1) 93.2%; Kish's design effect 1 + (m - 1) rho with
the ANOVA estimate of the intraclass correlation (m = Σt^2 / Σt) covered 93.4% with z and 94.6%
with t(k-1), misses balanced (2.5% / 2.9%). The ANOVA estimator pools the within-patient variance
of all patients, so a few patients with every image detected do not shrink it the way they shrink
the cluster-robust residuals. On the grid of (b) (patients 150 / 50 / 20 of which 30% diseased,
SD 0 / 1.5 / 2.5, sensitivity 0.70 / 0.85 / 0.95; 4,000 datasets a cell) ANOVA with t covers
95.1-97.2% (150 patients), 95.8-98.2% (50) and 97.8-99.5% (20, that is about 6 diseased patients:
conservative, as an interval from 6 patients should be), against 92.7-97.2% for the
cluster-robust z. The default (`quantile="auto"`) is therefore the ANOVA design effect with t(k-1)
wherever a patient has several images in the denominator, and exactly Wilson's interval (z)
where every patient has one. In the full `clustered` design (1,000 datasets) this gives overall
sensitivity 95.7%, specificity 94.0%, site A 95.5%, and site A minus overall (MOVER) 94.8%.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any, Literal, NamedTuple, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

from validators.metrics.validation import (
    BoolArray,
    FloatArray,
    IntArray,
    check_level,
    validate_binary,
)

Quantile: TypeAlias = Literal["auto", "normal", "t"]


def z_quantile(level: float) -> float:
    """Return the two-sided normal quantile of a confidence level (1.96 for 0.95)."""
    check_level(level)
    return NormalDist().inv_cdf(0.5 + level / 2.0)


# --------------------------------------------------------------------------------------------
# Patients and ranks
# --------------------------------------------------------------------------------------------


def one_per_case(groups: ArrayLike, n_cases: int) -> NDArray[Any]:
    """Return the patient ids as an array, refusing any shape but one id per case."""
    ids = np.asarray(groups)
    if ids.ndim != 1 or ids.shape[0] != n_cases:
        raise ValueError(
            f"groups must hold one patient id per case ({n_cases}); got shape {ids.shape}"
        )
    return ids


def cluster_index(groups: ArrayLike, n_cases: int) -> tuple[IntArray, int]:
    """Return each case's cluster number (0..k-1, in sorted order of the ids) and k."""
    ids = one_per_case(groups, n_cases)
    if ids.dtype.kind == "f" and np.isnan(ids).any():
        raise ValueError("groups holds NaN patient ids; expected an id for every case")
    if ids.dtype == object and any(value is None for value in ids):
        raise ValueError("groups holds missing patient ids; expected an id for every case")
    uniques, inverse = np.unique(ids, return_inverse=True)
    return inverse.astype(np.intp), int(uniques.shape[0])


def midranks(values: FloatArray) -> FloatArray:
    """Return 1-based ranks with ties given the mean of their positions."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ordered)) + 1]
    ends = np.r_[starts[1:], ordered.shape[0]]
    ranks = np.empty(values.shape[0])
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


# --------------------------------------------------------------------------------------------
# Wilson, vectorized
# --------------------------------------------------------------------------------------------


def wilson_bounds(
    proportion: ArrayLike, n: ArrayLike, critical: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Return Wilson's (lower, upper) bounds of proportions `proportion` observed on `n` cases.

    `critical` is the quantile (z = 1.96 for 95%; an infinite one gives [0, 1]). The arithmetic is
    the scalar `validators.resampling.wilson_interval`'s, operation for operation, so that with
    the same p and n the bounds are equal to the last bit. n <= 0 gives NaN bounds.
    """
    p = np.asarray(proportion, dtype=np.float64)
    size = np.asarray(n, dtype=np.float64)
    q = np.asarray(critical, dtype=np.float64)
    p, size, q = np.broadcast_arrays(p, size, q)
    with np.errstate(divide="ignore", invalid="ignore"):
        denominator = 1.0 + q * q / size
        center = (p + q * q / (2.0 * size)) / denominator
        half = q * np.sqrt(p * (1.0 - p) / size + q * q / (4.0 * size * size)) / denominator
        # At p = 0 and p = 1 the bounds are exactly 0 and 1; floating point leaves 1e-17 of dust.
        lower = np.where(p <= 0.0, 0.0, np.maximum(0.0, center - half))
        upper = np.where(p >= 1.0, 1.0, np.minimum(1.0, center + half))
    # An unbounded quantile (t with no degrees of freedom) says nothing: the whole [0, 1].
    unbounded = np.isinf(q)
    lower = np.where(unbounded, 0.0, lower)
    upper = np.where(unbounded, 1.0, upper)
    empty = ~(size > 0.0)
    return np.where(empty, np.nan, lower), np.where(empty, np.nan, upper)


# --------------------------------------------------------------------------------------------
# Wilson with the design effect (clustered proportions)
# --------------------------------------------------------------------------------------------


class ClusteredWilsonBatch(NamedTuple):
    """Per population: the proportion, its bounds, the design effect and the effective n.

    `design_effect_estimated` is False where deff could not be estimated (the proportion is 0
    or 1, or one patient): there `effective_n` is the number of patients and `design_effect` the
    Σt / k that implies. Populations with no trials have NaN everywhere and 0 clusters.
    """

    estimate: FloatArray
    lower: FloatArray
    upper: FloatArray
    design_effect: FloatArray
    effective_n: FloatArray
    clusters: IntArray
    design_effect_estimated: BoolArray


class ClusteredWilson(NamedTuple):
    """One proportion's clustered Wilson interval, or None with the reason it is undefined."""

    estimate: float | None
    lower: float | None
    upper: float | None
    design_effect: float | None
    effective_n: float | None
    clusters: int
    design_effect_estimated: bool
    reason: str | None = None


def _critical(
    level: float, quantile: Quantile, clusters: IntArray, clustered: BoolArray
) -> FloatArray:
    """Return z, or Student's t with k - 1 degrees of freedom per population.

    `auto` takes t where the population is clustered (some patient has several images in the
    denominator) and z where every patient has one image (then the images are independent and
    the interval is exactly Wilson's).
    """
    z = z_quantile(level)
    if quantile not in ("t", "auto", "normal"):
        raise ValueError(f"quantile must be 'auto', 'normal' or 't'; got {quantile!r}")
    if quantile == "normal" or (quantile == "auto" and not np.any(clustered)):
        return np.full(clusters.shape, z)
    # scipy.special's inverse t CDF: scipy.stats would take over a second to import.
    from scipy.special import stdtrit

    df = clusters.astype(np.float64) - 1.0
    with np.errstate(invalid="ignore"):
        quantiles = np.asarray(stdtrit(np.maximum(df, 1.0), 0.5 + level / 2.0), np.float64)
    # One patient: no between-patient variability can be seen, so no finite quantile.
    critical = np.where(df >= 1.0, quantiles, np.inf)
    if quantile == "auto":
        critical = np.where(clustered, critical, z)
    return critical


def _design_effect(s: FloatArray, t: FloatArray, p: FloatArray, k: IntArray) -> FloatArray:
    """Return Kish's design effect 1 + (m - 1) rho from the ANOVA estimate of the ICC rho.

    m = Σt^2 / Σt is the size-weighted mean number of images per patient; rho is the one-way
    ANOVA (moment) estimator of the intraclass correlation of the binary outcomes, with the
    between- and within-patient mean squares MSB = Σ t_i (p_i - p)^2 / (k - 1) and MSW = Σ t_i
    p_i (1 - p_i) / (n - k) and the adjusted mean size m0 = (n - Σt^2 / n) / (k - 1):
    rho = (MSB - MSW) / (MSB + (m0 - 1) MSW), clipped to [0, 1]. It pools the within-patient
    variance over all patients, so with few patients it is steadier than the cluster-robust
    variance ratio (which under-covered a 27-patient group at 92%; see the module docstring).
    With one image per patient m = 1 and the design effect is exactly 1.
    """
    used = t > 0.0
    n = t.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        own = np.where(used, s / np.where(used, t, 1.0), 0.0)
        between = np.einsum("...k,...k->...", t, (own - p[..., None]) ** 2) / (k - 1.0)
        within_sum = np.einsum("...k,...k->...", t, own * (1.0 - own))
        within = np.where(n > k, within_sum / (n - k), 0.0)
        squares = np.einsum("...k,...k->...", t, t)
        size = (n - squares / n) / (k - 1.0)
        denominator = between + (size - 1.0) * within
        rho = np.where(denominator > 0.0, (between - within) / denominator, 0.0)
        mean_size = squares / n
    deff: FloatArray = 1.0 + (mean_size - 1.0) * np.clip(np.nan_to_num(rho), 0.0, 1.0)
    return deff


def clustered_wilson_batch(
    successes: ArrayLike,
    trials: ArrayLike,
    level: float = 0.95,
    *,
    quantile: Quantile = "auto",
) -> ClusteredWilsonBatch:
    """Return clustered Wilson intervals of Σs/Σt for each population (leading axes).

    `successes` and `trials` are `[..., K]`: per population, per patient (cluster) the count in
    the numerator and in the denominator (for sensitivity: detected positive images and positive
    images). Patients with 0 trials are ignored. With p = Σs/Σt, n = Σt and k the patients with
    t_i > 0, Wilson's interval is taken on the effective size n_eff = n / deff, with Kish's
    design effect deff = 1 + (m - 1) rho from the ANOVA estimate of the intraclass correlation
    (`_design_effect`; never below 1: an interval is never narrower than the independent one),
    and with Student's t on k - 1 degrees of freedom instead of z (Korn & Graubard 1998), since
    the design effect is itself estimated from k patients. Where deff cannot be estimated (p is
    0 or 1, or k = 1) n_eff = k, the number of distinct patients. With one image per patient
    deff is 1, z is used, and the interval is exactly Wilson's. `quantile` forces z (`normal`)
    or t everywhere.
    """
    s = np.asarray(successes, dtype=np.float64)
    t = np.asarray(trials, dtype=np.float64)
    if s.shape != t.shape or s.ndim == 0:
        raise ValueError(
            f"successes and trials must be arrays of the same shape [..., patients]; got "
            f"{s.shape} and {t.shape}"
        )
    if not (np.isfinite(s).all() and np.isfinite(t).all()):
        raise ValueError("successes and trials must be finite counts")
    if (s < 0).any() or (s > t).any():
        raise ValueError("each patient's successes must lie between 0 and its trials")
    used = t > 0.0
    k = used.sum(axis=-1).astype(np.intp)
    n = t.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = s.sum(axis=-1) / n
    estimable = (k >= 2) & (p > 0.0) & (p < 1.0)
    clustered: BoolArray = np.asarray((t > 1.0).any(axis=-1))
    # With one image per patient deff is 1 in exact arithmetic; pin it so rounding cannot move
    # the interval off Wilson's.
    deff = np.where(clustered, _design_effect(s, t, p, k), 1.0)
    effective = np.where(estimable, n / deff, k.astype(np.float64))
    empty = ~(n > 0.0)
    design_effect = np.where(estimable, deff, n / np.maximum(k, 1))
    lower, upper = wilson_bounds(p, effective, _critical(level, quantile, k, clustered))
    nan = np.nan
    return ClusteredWilsonBatch(
        estimate=np.where(empty, nan, p),
        lower=lower,
        upper=upper,
        design_effect=np.where(empty, nan, design_effect),
        effective_n=np.where(empty, nan, effective),
        clusters=k,
        design_effect_estimated=estimable & ~empty,
    )


def clustered_wilson_interval(
    successes: ArrayLike,
    trials: ArrayLike,
    level: float = 0.95,
    *,
    quantile: Quantile = "auto",
) -> ClusteredWilson:
    """Return the clustered Wilson interval of one proportion from per-patient counts.

    See `clustered_wilson_batch`; `successes` and `trials` are 1-D, one entry per patient.
    With no trials at all there is no interval (None, with the reason).
    """
    s = np.asarray(successes, dtype=np.float64)
    t = np.asarray(trials, dtype=np.float64)
    if s.ndim != 1 or t.ndim != 1:
        raise ValueError(
            f"successes and trials must be 1-D, one count per patient; got {s.shape}, {t.shape}"
        )
    # Patients outside the denominator change nothing: drop them before the arithmetic (a
    # subgroup's totals are indexed by every patient of the dataset).
    used = t > 0.0
    batch = clustered_wilson_batch(s[used], t[used], level, quantile=quantile)
    if int(batch.clusters) == 0:
        return ClusteredWilson(
            None, None, None, None, None, 0, False, "no cases in the denominator"
        )
    return ClusteredWilson(
        estimate=float(batch.estimate),
        lower=float(batch.lower),
        upper=float(batch.upper),
        design_effect=float(batch.design_effect),
        effective_n=float(batch.effective_n),
        clusters=int(batch.clusters),
        design_effect_estimated=bool(batch.design_effect_estimated),
    )


def cluster_totals(
    successes: ArrayLike,
    in_denominator: ArrayLike,
    clusters: ArrayLike,
    n_clusters: int | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Return per-patient (successes, trials) from per-image indicators and patient numbers.

    `successes` and `in_denominator` are per image (for sensitivity: detected & positive, and
    positive); `clusters` holds each image's patient number 0..k-1 (`cluster_index` makes them
    from ids). A success outside the denominator is an error.
    """
    hit = np.asarray(successes, dtype=bool)
    member = np.asarray(in_denominator, dtype=bool)
    index = np.asarray(clusters, dtype=np.intp)
    if not hit.shape == member.shape == index.shape or hit.ndim != 1:
        raise ValueError(
            f"successes, in_denominator and clusters must be 1-D of one length; got "
            f"{hit.shape}, {member.shape} and {index.shape}"
        )
    if (hit & ~member).any():
        raise ValueError("a success must be in the denominator")
    if index.size and index.min() < 0:
        raise ValueError("patient numbers must be 0..k-1")
    size = int(index.max()) + 1 if index.size else 0
    k = size if n_clusters is None else n_clusters
    if k < size:
        raise ValueError(f"n_clusters is {k} but patient number {size - 1} occurs")
    hits = np.bincount(index, weights=hit.astype(np.float64), minlength=k)
    trials = np.bincount(index, weights=member.astype(np.float64), minlength=k)
    return hits.astype(np.float64), trials.astype(np.float64)


# --------------------------------------------------------------------------------------------
# Obuchowski's clustered AUROC variance
# --------------------------------------------------------------------------------------------


class ClusteredAucInterval(NamedTuple):
    """AUROC with Obuchowski's clustered variance and Wald interval (clipped to [0, 1])."""

    auc: float | None
    variance: float | None
    lower: float | None
    upper: float | None
    reason: str | None


def obuchowski_auc_variance(
    y_true: ArrayLike, y_score: ArrayLike, clusters: ArrayLike
) -> tuple[float, float] | str:
    """Return (AUROC, Obuchowski's clustered variance), or the reason it is undefined.

    Obuchowski (1997, Biometrics 53:567-578), as in her Cleveland Clinic code and iMRMC's
    `doAUCcluster`. DeLong's structural components of each positive image, V10 (the share of
    negatives it outranks, ties 1/2) and of each negative, V01, come from midranks; they are
    summed per patient i (V10_i over its m_i positives, V01_i over its n_i negatives). With M, N
    the positive and negative images, I10 and I01 the patients with at least one of each, and I
    all patients:

        S10 = I10 / ((I10 - 1) M) Σ_i (V10_i - m_i AUC)^2
        S01 = I01 / ((I01 - 1) N) Σ_i (V01_i - n_i AUC)^2
        S11 = I / (I - 1) Σ_i (V10_i - m_i AUC)(V01_i - n_i AUC)
        Var = S10 / M + S01 / N + 2 S11 / (M N).

    With one image per patient this is DeLong's variance exactly. `clusters` holds a patient id
    per image. Undefined with fewer than 2 patients with a positive or with a negative image.
    """
    labels, scores = validate_binary(y_true, y_score)
    index, k = cluster_index(clusters, labels.shape[0])
    positives = np.bincount(index, weights=labels.astype(np.float64), minlength=k)
    negatives = np.bincount(index, weights=(~labels).astype(np.float64), minlength=k)
    with_positive = int((positives > 0).sum())
    with_negative = int((negatives > 0).sum())
    if with_positive < 2 or with_negative < 2:
        return (
            "Obuchowski's variance needs at least 2 patients with a positive and 2 with a "
            f"negative image; got {with_positive} and {with_negative}"
        )
    m = int(labels.sum())
    n = int(labels.shape[0] - m)
    overall = midranks(scores)
    within_positive = midranks(scores[labels])
    within_negative = midranks(scores[~labels])
    auc = (overall[labels].sum() - m * (m + 1) / 2.0) / (m * n)
    v10 = (overall[labels] - within_positive) / n
    v01 = 1.0 - (overall[~labels] - within_negative) / m
    x = np.bincount(index[labels], weights=v10, minlength=k) - positives * auc
    y = np.bincount(index[~labels], weights=v01, minlength=k) - negatives * auc
    s10 = with_positive / ((with_positive - 1.0) * m) * float(x @ x)
    s01 = with_negative / ((with_negative - 1.0) * n) * float(y @ y)
    s11 = k / (k - 1.0) * float(x @ y)
    return float(auc), s10 / m + s01 / n + 2.0 * s11 / (m * n)


def obuchowski_interval(
    y_true: ArrayLike, y_score: ArrayLike, clusters: ArrayLike, level: float = 0.95
) -> ClusteredAucInterval:
    """Return AUROC +- z * Obuchowski's clustered standard error, clipped to [0, 1]."""
    z = z_quantile(level)
    result = obuchowski_auc_variance(y_true, y_score, clusters)
    if isinstance(result, str):
        return ClusteredAucInterval(None, None, None, None, result)
    auc, variance = result
    half = z * math.sqrt(max(variance, 0.0))
    return ClusteredAucInterval(auc, variance, max(0.0, auc - half), min(1.0, auc + half), None)


def cluster_correlation(
    successes_a: ArrayLike, trials_a: ArrayLike, successes_b: ArrayLike, trials_b: ArrayLike
) -> float:
    """Return the correlation of two proportions estimated on the same patients (clusters).

    The cluster-robust (ratio-estimator) covariance over the product of the two cluster-robust
    standard errors: with e_i = s_i - p t_i per patient, r = Σ e_a,i e_b,i / sqrt(Σ e_a,i^2 Σ
    e_b,i^2) (the k / (k - 1) factors and the denominators cancel). Patients in only one of the
    two populations contribute nothing to the covariance, so disjoint patients give exactly 0.
    A proportion with no spread (0 or 1, or one patient) gives 0.
    """
    sa, ta, sb, tb = (
        np.asarray(x, dtype=np.float64) for x in (successes_a, trials_a, successes_b, trials_b)
    )
    if not sa.shape == ta.shape == sb.shape == tb.shape or sa.ndim != 1:
        raise ValueError("the counts must be 1-D, one entry per patient, of one length")
    na, nb = float(ta.sum()), float(tb.sum())
    if na <= 0.0 or nb <= 0.0:
        return 0.0
    ea = sa - (float(sa.sum()) / na) * ta
    eb = sb - (float(sb.sum()) / nb) * tb
    scale = math.sqrt(float(ea @ ea) * float(eb @ eb))
    if scale == 0.0:
        return 0.0
    return float(np.clip(float(ea @ eb) / scale, -1.0, 1.0))
