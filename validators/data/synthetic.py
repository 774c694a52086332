"""Synthetic predictions files, for trying `assay score` and for the demo: no patient data.

`write_example_predictions` writes two files in the predictions-file contract of DESIGN.md, on
the same cases: the scores of a model under evaluation and those of the (weaker) deployed
version it would replace, for the example policy's non-inferiority criterion. Each patient has
one to several images that share the patient's risk, so the bootstrap resamples patients.

The generative model: a latent severity per image (patient risk plus image noise), the label
drawn from a logistic function of it, and each model seeing the severity through noise of its
own; its score is the probability the label is positive given what it saw (fitted once on a
large simulation, so the scores are calibrated). With the defaults: prevalence about 0.44,
AUROC about 0.94 for the new model and 0.92 for the deployed one, sensitivity about 0.83 at 0.5.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

SITES = ("north", "south", "east")
MANUFACTURERS = ("Siemens", "GE", "Philips")
VIEWS = ("PA", "AP")


@dataclass(frozen=True)
class _Model:
    """What a model sees of the latent severity, and its calibrated logistic read-out."""

    noise: float
    slope: float
    intercept: float


NEW = _Model(noise=0.2, slope=3.5, intercept=-0.553)
DEPLOYED = _Model(noise=0.3, slope=3.043, intercept=-0.504)


@dataclass(frozen=True)
class ExampleFiles:
    predictions: Path
    baseline: Path
    n_cases: int
    n_patients: int


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    out: NDArray[np.float64] = 1.0 / (1.0 + np.exp(-x))
    return out


def write_example_predictions(
    directory: Path, *, n_cases: int = 2000, n_patients: int = 800, seed: int = 0
) -> ExampleFiles:
    """Write `predictions.csv` (new model) and `baseline.csv` (deployed model) into `directory`.

    Both files hold the same cases, labels and attributes; only the scores differ. Files are
    written to a temporary name and renamed, so a failure leaves no half-written file.
    """
    if n_cases < 1:
        raise ValueError(f"n_cases must be at least 1; got {n_cases}")
    if not 1 <= n_patients <= n_cases:
        raise ValueError(f"n_patients must be between 1 and n_cases ({n_cases}); got {n_patients}")
    rng = np.random.default_rng(seed)
    # Every patient has at least one image; the rest are spread at random.
    patient = np.sort(
        np.concatenate([np.arange(n_patients), rng.integers(0, n_patients, n_cases - n_patients)])
    )
    sex = rng.choice(np.array(["F", "M"]), n_patients)
    age = rng.integers(2, 96, n_patients)
    site = rng.choice(np.array(SITES), n_patients, p=[0.5, 0.3, 0.2])
    manufacturer = rng.choice(np.array(MANUFACTURERS), n_patients, p=[0.45, 0.35, 0.2])
    view = rng.choice(np.array(VIEWS), n_cases, p=[0.7, 0.3])
    latent = 0.8 * rng.normal(size=n_patients)[patient] + 0.6 * rng.normal(size=n_cases)
    label = rng.random(n_cases) < _sigmoid(4.0 * latent - 0.6)

    def scores(model: _Model) -> NDArray[np.float64]:
        seen = latent + model.noise * rng.normal(size=n_cases)
        return np.round(_sigmoid(model.slope * seen + model.intercept), 6)

    new, deployed = scores(NEW), scores(DEPLOYED)
    header = [
        "case_id",
        "patient_id",
        "label",
        "score",
        "sex",
        "age",
        "site",
        "scanner_manufacturer",
        "view",
    ]
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, score in (("predictions.csv", new), ("baseline.csv", deployed)):
        path = directory / name
        partial = directory / f".{name}.partial"
        with partial.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for i in range(n_cases):
                p = int(patient[i])
                writer.writerow(
                    [
                        f"img-{i:05d}",
                        f"pat-{p:04d}",
                        int(label[i]),
                        f"{score[i]:.6f}",
                        sex[p],
                        int(age[p]),
                        site[p],
                        manufacturer[p],
                        view[i],
                    ]
                )
        partial.replace(path)
        paths.append(path)
    return ExampleFiles(
        predictions=paths[0], baseline=paths[1], n_cases=n_cases, n_patients=n_patients
    )
