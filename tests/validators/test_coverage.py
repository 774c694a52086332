"""Coverage of the 95% percentile bootstrap interval of the AUROC, by simulation (slow).

Datasets are drawn from binormal models whose true AUROC is known in closed form, then evaluated
by `binary_metrics` exactly as in production (500 replicates per dataset to keep the run short;
production uses 1,000). The interval should contain the true AUROC in about 95% of datasets; with
400 datasets the Monte Carlo standard error of a coverage is about 1.1 points, so the accepted
band 92-98% is wide enough for a correct method and narrow enough to catch a wrong one.

- Case level: independent cases, negatives N(0, 1), positives N(d, 1): AUC = Phi(d / sqrt(2)).
- Patient level: 150 patients, each with 1-5 images sharing the patient's label and a random effect
  u ~ N(0, sd_u^2); an image scores d * label + u + e, e ~ N(0, sd_e^2). A positive and a negative
  image always come from different patients, so AUC = Phi(d / sqrt(2 (sd_u^2 + sd_e^2))). Here
  the patient (cluster) bootstrap must cover, and resampling images as if independent must not.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
from numpy.typing import NDArray

from validators.metrics import binary_metrics

pytestmark = pytest.mark.slow

DATASETS = 400
REPLICATES = 500
SEED = 20_260_101
SEPARATION = 1.2


def covers(lower: float | None, upper: float | None, truth: float) -> bool:
    """Return whether [lower, upper] contains the truth (an undefined interval does not)."""
    return lower is not None and upper is not None and lower <= truth <= upper


def case_level_dataset(
    rng: np.random.Generator, *, n: int = 250, prevalence: float = 0.3
) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """Return independent binormal cases."""
    labels = rng.random(n) < prevalence
    return labels, rng.normal(size=n) + SEPARATION * labels


def patient_level_dataset(
    rng: np.random.Generator,
    *,
    patients: int = 150,
    prevalence: float = 0.3,
    sd_patient: float = 1.0,
    sd_image: float = 0.5,
) -> tuple[NDArray[np.bool_], NDArray[np.float64], NDArray[np.intp]]:
    """Return images clustered in patients: shared label and random effect per patient."""
    images = rng.integers(1, 6, size=patients)
    patient = np.repeat(np.arange(patients), images)
    diseased = rng.random(patients) < prevalence
    effect = rng.normal(0.0, sd_patient, size=patients)
    labels = diseased[patient]
    scores = (
        SEPARATION * labels + effect[patient] + rng.normal(0.0, sd_image, size=patient.shape[0])
    )
    return labels, scores, patient


def test_case_level_bootstrap_covers_95_percent() -> None:
    truth = NormalDist().cdf(SEPARATION / math.sqrt(2))
    rng = np.random.default_rng(SEED)
    hits = 0
    for k in range(DATASETS):
        labels, scores = case_level_dataset(rng)
        auroc = binary_metrics(
            labels, scores, scores="logit", threshold=0.0, replicates=REPLICATES, seed=k
        ).auroc
        assert auroc.method == "bootstrap_percentile_case"
        hits += covers(auroc.lower, auroc.upper, truth)
    coverage = hits / DATASETS
    assert 0.92 <= coverage <= 0.98, f"case-level coverage {coverage:.3f}"


def test_patient_level_bootstrap_covers_95_percent_and_case_level_does_not() -> None:
    sd_patient, sd_image = 1.0, 0.5
    truth = NormalDist().cdf(SEPARATION / math.sqrt(2 * (sd_patient**2 + sd_image**2)))
    rng = np.random.default_rng(SEED + 1)
    by_patient = by_image = 0
    for k in range(DATASETS):
        labels, scores, patient = patient_level_dataset(
            rng, sd_patient=sd_patient, sd_image=sd_image
        )
        clustered = binary_metrics(
            labels,
            scores,
            scores="logit",
            threshold=0.0,
            replicates=REPLICATES,
            seed=k,
            groups=patient,
        ).auroc
        assert clustered.method == "bootstrap_percentile_patient"
        by_patient += covers(clustered.lower, clustered.upper, truth)
        naive = binary_metrics(
            labels, scores, scores="logit", threshold=0.0, replicates=REPLICATES, seed=k
        ).auroc
        by_image += covers(naive.lower, naive.upper, truth)
    coverage = by_patient / DATASETS
    assert 0.92 <= coverage <= 0.98, f"patient-level coverage {coverage:.3f}"
    # Treating a patient's images as independent makes the interval too narrow.
    assert by_image / DATASETS < coverage - 0.05, f"image-level coverage {by_image / DATASETS:.3f}"
