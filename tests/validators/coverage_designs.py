"""Coverage designs: simulated data whose true values are known, for `simulation.py`.

Each design is a frozen dataclass that draws one dataset from a seeded numpy Generator
(dataset k of a design uses `np.random.default_rng((design.seed, k))`, so any dataset can be
regenerated on its own), evaluates it through the production entry points with the production
settings (1,000 bootstrap replicates, level 0.95, bootstrap seed k), knows the true value of
every quantity it checks, in closed form or by numerical integration (`truths()`), and declares
its acceptance checks (`checks`, read by `simulation.py`). `monte_carlo_truths` recomputes the
truths by a 10^7-sample Monte Carlo (`python -m tests.validators.simulation --truths`).

- `independent`: binormal cases; AUROC Phi(d / sqrt 2), sensitivity Phi(d - t), specificity Phi(t).
- `clustered`: patients with 1-4 images sharing the label, a random effect and a site; image-level
  AUROC, sensitivity, specificity, site A's sensitivity and its disparity to overall (patient
  bootstrap). `clustered_naive` evaluates the same datasets as if the images were independent.
- `boundary`: Binomial(100, 0.2) positives, true sensitivity 0.95.
- `ece_calibrated` / `ece_miscalibrated`: 1,000 cases, p ~ Beta(1, 4), y ~ Bernoulli(p) or
  Bernoulli(sigmoid(logit p - 0.4)); `ece_calibrated_mid_risk`: p ~ Beta(2, 5), the hard case.
- `fairness_gap`: three groups with sensitivities 0.65, 0.80, 0.92 (equal-opportunity gap 0.27).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

from validators.results import Estimate

__all__ = [
    "DESIGNS",
    "NOMINAL",
    "REPLICATES",
    "TRUE_ECE_MISCALIBRATED",
    "Boundary",
    "Check",
    "CheckKind",
    "Clustered",
    "Dataset",
    "Design",
    "EceCalibrated",
    "EceMiscalibrated",
    "FairnessGap",
    "Independent",
    "monte_carlo_truths",
]

NOMINAL = 0.95
"""The confidence level of every interval checked (the production default)."""
REPLICATES = 1000
"""Bootstrap replicates per dataset (the production default)."""

_PHI = NormalDist().cdf
_PHI_INV = NormalDist().inv_cdf

CheckKind = Literal["two-sided", "lower", "upper", "mean-zero", "upper-below", "undercover"]


@dataclass(frozen=True)
class Check:
    """One acceptance check of a quantity (the rules and constants are in `simulation.py`).

    - `two-sided`: the interval contains the truth in NOMINAL +- (2 SE + 1 point) of datasets;
    - `lower` / `upper`: the lower (upper) bound is at most (at least) the truth in at least
      NOMINAL - 2 SE of datasets;
    - `mean-zero`: the estimate averages the truth (0) within 2 SE of the mean;
    - `upper-below`: the upper bound is under ECE_LIMIT in at least ECE_SHARE_BELOW of datasets;
    - `undercover`: a method known to be wrong here covers in at most UNDERCOVER of datasets
      (images resampled as if independent, on clustered data).

    An estimate's interval is read by its `sides`: a one-sided bound claims nothing on its other
    side (that side counts as infinite), an unbounded side is infinite, and an undefined estimate
    or one without an interval is a miss.
    """

    quantity: str
    kind: CheckKind


@dataclass(frozen=True)
class Dataset:
    """One simulated dataset: labels, scores, and optionally patient ids and an attribute."""

    labels: NDArray[np.bool_]
    scores: NDArray[np.float64]
    patients: NDArray[np.str_] | None = None
    attribute: NDArray[np.object_] | None = None


@dataclass(frozen=True)
class Design:
    """Base of the designs: a name, a seed, the bootstrap settings, and the abstract parts."""

    name: ClassVar[str] = "design"
    seed: int = 0
    replicates: int = REPLICATES
    level: float = NOMINAL

    @property
    def label(self) -> str:
        """The design's name in tables (`name`, unless a variant says otherwise)."""
        return self.name

    def rng(self, k: int) -> np.random.Generator:
        """Return the generator of dataset k: seeded by (design seed, k)."""
        return np.random.default_rng((self.seed, k))

    def dataset(self, k: int) -> Dataset:
        """Return dataset k (the same every time)."""
        return self.draw(self.rng(k))

    def draw(self, rng: np.random.Generator) -> Dataset:
        raise NotImplementedError

    def truths(self) -> dict[str, float]:
        raise NotImplementedError

    @property
    def checks(self) -> tuple[Check, ...]:
        raise NotImplementedError

    def evaluate(self, data: Dataset, bootstrap_seed: int) -> dict[str, Estimate]:
        """Return the estimate of every quantity, from the production entry point."""
        raise NotImplementedError

    def evaluate_dataset(self, k: int) -> dict[str, Estimate]:
        """Draw dataset k and evaluate it with bootstrap seed k."""
        return self.evaluate(self.dataset(k), k)


def _binary_metrics(design: Design, data: Dataset, seed: int, **kwargs: Any) -> Any:
    from validators.evaluation import binary_metrics

    return binary_metrics(
        data.labels,
        data.scores,
        replicates=design.replicates,
        level=design.level,
        seed=seed,
        **kwargs,
    )


# --------------------------------------------------------------------------------------------
# (a) Independent binormal cases
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Independent(Design):
    """Independent cases: label ~ Bernoulli(prevalence), score ~ N(separation * label, 1).

    Scores are logits, positive when score >= threshold. AUROC = Phi(d / sqrt 2), sensitivity
    = Phi(d - t), specificity = Phi(t). Case bootstrap (`binary_metrics`).
    """

    name: ClassVar[str] = "independent"
    seed: int = 101
    n: int = 250
    prevalence: float = 0.3
    separation: float = 1.2
    threshold: float = 0.8

    def draw(self, rng: np.random.Generator) -> Dataset:
        labels = rng.random(self.n) < self.prevalence
        return Dataset(labels, rng.normal(size=self.n) + self.separation * labels)

    def truths(self) -> dict[str, float]:
        d, t = self.separation, self.threshold
        return {
            "auroc": _PHI(d / math.sqrt(2.0)),
            "sensitivity": _PHI(d - t),
            "specificity": _PHI(t),
        }

    @property
    def checks(self) -> tuple[Check, ...]:
        return tuple(Check(q, "two-sided") for q in ("auroc", "sensitivity", "specificity"))

    def evaluate(self, data: Dataset, bootstrap_seed: int) -> dict[str, Estimate]:
        m = _binary_metrics(self, data, bootstrap_seed, scores="logit", threshold=self.threshold)
        return {"auroc": m.auroc, "sensitivity": m.sensitivity, "specificity": m.specificity}


# --------------------------------------------------------------------------------------------
# (b) Clustered: patients with several images, two sites
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clustered(Design):
    """Patients with 1-4 images (uniform), each patient at site A or B, diseased or not.

    A patient's images share the label (disease is patient-level), a random effect u ~ N(0,
    sd_patient^2) and the site; an image scores mean[site, label] + u + e, e ~ N(0,
    sd_image^2). Positive and negative images always come from different patients, and the
    number of images is independent of everything else, so with s^2 = sd_patient^2 + sd_image^2
    and w1 (w0) the share of positive (negative) images by site:

    - sensitivity of site S = Phi((mean[S, 1] - t) / s); overall (image-level, as the engine
      pools images) = sum_S w1_S sens_S; specificity = sum_S w0_S Phi((t - mean[S, 0]) / s);
    - AUROC = sum_{S, S'} w1_S w0_S' Phi((mean[S, 1] - mean[S', 0]) / (s sqrt 2));
    - the disparity is site A's sensitivity minus the overall one (`validators.evaluation`,
      difference to `overall`).

    `resample="patient"` evaluates with the patient bootstrap (`evaluate_binary_with_subgroups`,
    whose overall equals `binary_metrics(..., groups=patient_ids)`); `"image"` resamples images
    as if independent (`binary_metrics` without groups), which must undercover.
    """

    name: ClassVar[str] = "clustered"
    seed: int = 102
    patients: int = 180
    max_images: int = 4
    share_a: float = 0.5
    prevalence_a: float = 0.3
    prevalence_b: float = 0.3
    mean_negative_a: float = 0.0
    mean_negative_b: float = 0.0
    mean_positive_a: float = 1.8
    mean_positive_b: float = 0.9
    sd_patient: float = 1.0
    sd_image: float = 0.5
    threshold: float = 0.5
    resample: Literal["patient", "image"] = "patient"

    @property
    def label(self) -> str:
        return "clustered_naive" if self.resample == "image" else self.name

    def images(
        self, rng: np.random.Generator
    ) -> tuple[NDArray[np.intp], NDArray[np.bool_], NDArray[np.bool_], NDArray[np.float64]]:
        """Return per image: the patient index, whether at site A, the label and the score."""
        p = self.patients
        images = rng.integers(1, self.max_images + 1, size=p)
        site_a = rng.random(p) < self.share_a
        prevalence = np.where(site_a, self.prevalence_a, self.prevalence_b)
        diseased = rng.random(p) < prevalence
        mean = np.where(
            site_a,
            np.where(diseased, self.mean_positive_a, self.mean_negative_a),
            np.where(diseased, self.mean_positive_b, self.mean_negative_b),
        )
        effect = rng.normal(0.0, self.sd_patient, size=p)
        patient = np.repeat(np.arange(p), images)
        scores = (mean + effect)[patient] + rng.normal(0.0, self.sd_image, size=patient.shape[0])
        return patient, site_a[patient], diseased[patient], scores

    def draw(self, rng: np.random.Generator) -> Dataset:
        patient, site_a, labels, scores = self.images(rng)
        return Dataset(
            labels=labels,
            scores=scores,
            patients=np.char.add("p", patient.astype(str)),
            attribute=np.where(site_a, "A", "B").astype(object),
        )

    def _weights(self) -> tuple[dict[str, float], dict[str, float]]:
        share = {"A": self.share_a, "B": 1.0 - self.share_a}
        prevalence = {"A": self.prevalence_a, "B": self.prevalence_b}
        pos = {s: share[s] * prevalence[s] for s in share}
        neg = {s: share[s] * (1.0 - prevalence[s]) for s in share}
        return (
            {s: v / sum(pos.values()) for s, v in pos.items()},
            {s: v / sum(neg.values()) for s, v in neg.items()},
        )

    def truths(self) -> dict[str, float]:
        s = math.hypot(self.sd_patient, self.sd_image)
        t = self.threshold
        positive = {"A": self.mean_positive_a, "B": self.mean_positive_b}
        negative = {"A": self.mean_negative_a, "B": self.mean_negative_b}
        w1, w0 = self._weights()
        sens = {site: _PHI((positive[site] - t) / s) for site in positive}
        overall = sum(w1[site] * sens[site] for site in sens)
        out = {
            "auroc": sum(
                w1[a] * w0[b] * _PHI((positive[a] - negative[b]) / (s * math.sqrt(2.0)))
                for a in positive
                for b in negative
            ),
            "sensitivity": overall,
            "specificity": sum(w0[site] * _PHI((t - negative[site]) / s) for site in negative),
        }
        if self.resample == "patient":
            out["site A sensitivity"] = sens["A"]
            out["site A - overall sensitivity"] = sens["A"] - overall
        return out

    @property
    def checks(self) -> tuple[Check, ...]:
        if self.resample == "image":
            return (Check("auroc", "undercover"),)
        names = ("auroc", "sensitivity", "specificity", "site A sensitivity")
        return (
            *(Check(q, "two-sided") for q in names),
            Check("site A - overall sensitivity", "two-sided"),
        )

    def evaluate(self, data: Dataset, bootstrap_seed: int) -> dict[str, Estimate]:
        if self.resample == "image":
            m = _binary_metrics(
                self, data, bootstrap_seed, scores="logit", threshold=self.threshold
            )
            return {"auroc": m.auroc}
        from validators.evaluation import (
            EvaluationSettings,
            SubgroupAnalysisSpec,
            evaluate_binary_with_subgroups,
        )

        assert data.attribute is not None and data.patients is not None
        overall, tables, disparities, _ = evaluate_binary_with_subgroups(
            data.labels,
            data.scores,
            {"site": data.attribute},
            spec=SubgroupAnalysisSpec(
                attributes=("site",),
                metrics=("auroc", "sensitivity", "specificity"),
                disparity_metrics=("sensitivity",),
            ),
            settings=EvaluationSettings.create(
                threshold=self.threshold, scores="logit", level=self.level
            ),
            patient_ids=data.patients,
            replicates=self.replicates,
            seed=bootstrap_seed,
            overall_metrics="spec",
        )
        group = next(g for g in tables[0].groups if g.attributes == {"site": "A"})
        assert group.metrics is not None and group.metrics.task == "binary"
        disparity = next(
            d
            for d in disparities
            if d.metric == "sensitivity"
            and d.kind == "difference"
            and d.group == "site=A"
            and d.reference == "overall"
        )
        return {
            "auroc": overall.auroc,
            "sensitivity": overall.sensitivity,
            "specificity": overall.specificity,
            "site A sensitivity": group.metrics.sensitivity,
            "site A - overall sensitivity": disparity.value,
        }


# --------------------------------------------------------------------------------------------
# (c) Boundary: a sensitivity near 1 on few positives
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Boundary(Design):
    """n cases, each positive with probability `prevalence` (so positives ~ Binomial(100, 0.2),
    mean 20: no one lattice of sensitivities decides coverage), positives' scores N(z, 1) with
    z = Phi^-1(0.95) so that a positive scores above the threshold 0 with probability 0.95;
    negatives N(-1.5, 1). Case bootstrap (`binary_metrics`)."""

    name: ClassVar[str] = "boundary"
    seed: int = 103
    n: int = 100
    prevalence: float = 0.2
    sensitivity: float = 0.95
    mean_negative: float = -1.5

    def draw(self, rng: np.random.Generator) -> Dataset:
        labels = rng.random(self.n) < self.prevalence
        mean = np.where(labels, _PHI_INV(self.sensitivity), self.mean_negative)
        return Dataset(labels, mean + rng.normal(size=self.n))

    def truths(self) -> dict[str, float]:
        return {"sensitivity": self.sensitivity}

    @property
    def checks(self) -> tuple[Check, ...]:
        return (Check("sensitivity", "two-sided"), Check("sensitivity", "lower"))

    def evaluate(self, data: Dataset, bootstrap_seed: int) -> dict[str, Estimate]:
        m = _binary_metrics(self, data, bootstrap_seed, scores="logit", threshold=0.0)
        return {"sensitivity": m.sensitivity}


# --------------------------------------------------------------------------------------------
# (d, e) Expected calibration error
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EceCalibrated(Design):
    """n cases, predicted p ~ Beta(a, b), outcome y ~ Bernoulli(p): a calibrated model, whose
    true binned ECE is 0 (`binary_metrics`, probabilities, 10 equal-width bins).

    Beta(1, 4) by default: most predicted risks low, a long tail towards 1, mean 0.2, the shape
    of a screening classifier's output. `ece_calibrated_mid_risk` (Beta(2, 5): risks massed
    between 0.1 and 0.5, where a bin's outcome rate is noisiest) is the hard case reported in
    docs/statistics.md: there no upper bound that keeps its coverage can stay under 0.05 in 80%
    of datasets (docs/statistics.md, "ECE").
    """

    name: ClassVar[str] = "ece_calibrated"
    seed: int = 104
    n: int = 1000
    beta_a: float = 1.0
    beta_b: float = 4.0
    label_suffix: str = ""

    @property
    def label(self) -> str:
        return self.name + self.label_suffix

    def true_risk(self, p: NDArray[np.float64]) -> NDArray[np.float64]:
        """P(y = 1 | predicted p)."""
        return p

    def draw(self, rng: np.random.Generator) -> Dataset:
        p = rng.beta(self.beta_a, self.beta_b, size=self.n)
        return Dataset(rng.random(self.n) < self.true_risk(p), p)

    def truths(self) -> dict[str, float]:
        return {"ece": 0.0}

    @property
    def checks(self) -> tuple[Check, ...]:
        return (Check("ece", "mean-zero"), Check("ece", "upper-below"))

    def evaluate(self, data: Dataset, bootstrap_seed: int) -> dict[str, Estimate]:
        m = _binary_metrics(self, data, bootstrap_seed, threshold=0.5)
        return {"ece": m.ece}


TRUE_ECE_MISCALIBRATED = 0.04869987908575697
"""Binned ECE (10 equal-width bins) of `EceMiscalibrated()`: sum over bins b of
|integral over b of (p - sigmoid(logit p - 0.4)) Beta(1, 4)(p) dp|, by `scipy.integrate.quad`
(`EceMiscalibrated.ece_by_quadrature`); `EceMiscalibrated.ece_by_monte_carlo(10**7)` agrees
(the fast test checks both)."""


@dataclass(frozen=True)
class EceMiscalibrated(EceCalibrated):
    """As `EceCalibrated`, but the model over-predicts: y ~ Bernoulli(sigmoid(logit p + shift)),
    shift -0.4. Every bin is off in the same direction, so no bin's true gap is near 0."""

    name: ClassVar[str] = "ece_miscalibrated"
    seed: int = 105
    shift: float = -0.4

    def true_risk(self, p: NDArray[np.float64]) -> NDArray[np.float64]:
        from validators.metrics import logit, sigmoid

        return sigmoid(logit(p) + self.shift)

    def truths(self) -> dict[str, float]:
        if (self.beta_a, self.beta_b, self.shift) == (1.0, 4.0, -0.4):
            return {"ece": TRUE_ECE_MISCALIBRATED}
        return {"ece": self.ece_by_quadrature()}

    @property
    def checks(self) -> tuple[Check, ...]:
        return (Check("ece", "upper"),)

    def ece_by_quadrature(self, bins: int = 10) -> float:
        """Return the true binned ECE by numerical integration (needs scipy)."""
        from scipy import integrate, stats

        density = stats.beta(self.beta_a, self.beta_b).pdf
        total = 0.0
        for b in range(bins):
            part, _ = integrate.quad(
                lambda p: (p - float(self.true_risk(np.array([p]))[0])) * density(p),
                b / bins,
                (b + 1) / bins,
                epsabs=1e-13,
                epsrel=1e-12,
                limit=200,
            )
            total += abs(part)
        return total

    def ece_by_monte_carlo(
        self, samples: int = 10**7, *, seed: int = 0, bins: int = 10
    ) -> tuple[float, float]:
        """Return the binned ECE by Monte Carlo (engine binning) and its standard error.

        Uses P(y = 1 | p) in place of a drawn y (same expectation, less noise); the standard
        error comes from 10 independent batches.
        """
        from validators.metrics import bin_edges, bin_index

        rng = np.random.default_rng(seed)
        edges = bin_edges(np.empty(0), bins, "uniform")
        batches = []
        for _ in range(10):
            p = rng.beta(self.beta_a, self.beta_b, size=samples // 10)
            sums = np.bincount(bin_index(p, edges), weights=p - self.true_risk(p), minlength=bins)
            batches.append(sums / p.shape[0])
        per_bin = np.mean(batches, axis=0)
        values = [float(np.abs(b).sum()) for b in batches]
        return float(np.abs(per_bin).sum()), float(np.std(values, ddof=1) / math.sqrt(10))


# --------------------------------------------------------------------------------------------
# (f) Fairness gap
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FairnessGap(Design):
    """n independent cases in groups X, Y, Z (equally likely), label ~ Bernoulli(prevalence);
    a positive in group g scores N(Phi^-1(sens_g), 1), a negative N(-1, 1), threshold 0. The
    equal-opportunity gap is max - min of the groups' true-positive rates: 0.92 - 0.65 = 0.27,
    with the best and worst groups 0.12 and 0.15 away from the middle one (no ties).
    `evaluate_subgroups` (`validators.evaluation`), case bootstrap."""

    name: ClassVar[str] = "fairness_gap"
    seed: int = 106
    n: int = 1200
    prevalence: float = 0.3
    sensitivities: tuple[float, ...] = (0.65, 0.80, 0.92)
    mean_negative: float = -1.0

    @property
    def groups(self) -> list[str]:
        return [chr(ord("X") + g) for g in range(len(self.sensitivities))]

    def draw(self, rng: np.random.Generator) -> Dataset:
        group = rng.integers(0, len(self.sensitivities), size=self.n)
        labels = rng.random(self.n) < self.prevalence
        means = np.array([_PHI_INV(s) for s in self.sensitivities])
        mean = np.where(labels, means[group], self.mean_negative)
        attribute = np.array(self.groups, dtype=object)[group]
        return Dataset(labels, mean + rng.normal(size=self.n), attribute=attribute)

    def truths(self) -> dict[str, float]:
        return {"equal-opportunity gap": max(self.sensitivities) - min(self.sensitivities)}

    @property
    def checks(self) -> tuple[Check, ...]:
        return (Check("equal-opportunity gap", "upper"),)

    def evaluate(self, data: Dataset, bootstrap_seed: int) -> dict[str, Estimate]:
        from validators.evaluation import (
            EvaluationSettings,
            SubgroupAnalysisSpec,
            evaluate_subgroups,
        )

        assert data.attribute is not None
        _, _, gaps = evaluate_subgroups(
            data.labels,
            data.scores,
            {"group": data.attribute},
            spec=SubgroupAnalysisSpec(
                attributes=("group",), metrics=("sensitivity",), disparity_metrics=("sensitivity",)
            ),
            settings=EvaluationSettings.create(threshold=0.0, scores="logit", level=self.level),
            replicates=self.replicates,
            seed=bootstrap_seed,
        )
        gap = next(g for g in gaps if g.name == "equal_opportunity_difference")
        return {"equal-opportunity gap": gap.value}


DESIGNS: dict[str, Design] = {
    "independent": Independent(),
    "clustered": Clustered(),
    "clustered_naive": Clustered(resample="image"),
    "boundary": Boundary(),
    "ece_calibrated": EceCalibrated(),
    "ece_miscalibrated": EceMiscalibrated(),
    "ece_calibrated_mid_risk": EceCalibrated(beta_a=2.0, beta_b=5.0, label_suffix="_mid_risk"),
    "fairness_gap": FairnessGap(),
}
"""Every design by name; `clustered_naive` draws the same datasets as `clustered`."""


# --------------------------------------------------------------------------------------------
# Truths by Monte Carlo
# --------------------------------------------------------------------------------------------


def monte_carlo_truths(samples: int = 10**7, seed: int = 0) -> dict[str, dict[str, float]]:
    """Return the truths recomputed by Monte Carlo (to check the closed forms and constants)."""
    out: dict[str, dict[str, float]] = {}
    ece, se = EceMiscalibrated().ece_by_monte_carlo(samples, seed=seed)
    out["ece_miscalibrated"] = {"ece": ece, "ece SE": se}
    out["clustered"] = _clustered_by_monte_carlo(Clustered(), samples, seed)
    return out


def _clustered_by_monte_carlo(design: Clustered, samples: int, seed: int) -> dict[str, float]:
    """Image-level truths of the clustered design from about `samples` images.

    AUROC: `samples` pairs of an image-weighted random positive and an independent random
    negative image (always from different patients, as disease is patient-level).
    """
    rng = np.random.default_rng(seed)
    mean_images = (1 + design.max_images) / 2
    big = replace(design, patients=max(1, round(samples / mean_images)))
    _, site_a, labels, scores = big.images(rng)
    called = scores >= design.threshold
    sens = float(called[labels].mean())
    sens_a = float(called[labels & site_a].mean())
    positives, negatives = scores[labels], scores[~labels]
    x = positives[rng.integers(0, positives.shape[0], size=samples)]
    y = negatives[rng.integers(0, negatives.shape[0], size=samples)]
    return {
        "auroc": float(np.mean(x > y)),
        "sensitivity": sens,
        "specificity": float((~called[~labels]).mean()),
        "site A sensitivity": sens_a,
        "site A - overall sensitivity": sens_a - sens,
    }
