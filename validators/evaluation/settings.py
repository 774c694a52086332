"""The evaluation settings, the interval method of each metric and its stored name."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from validators.metrics.validation import (
    BoolArray,
    CiMethod,
    FloatArray,
    ScoreScale,
    check_level,
    sigmoid,
    validate_probabilities,
)
from validators.results.estimates import BootstrapUnit

# --------------------------------------------------------------------------------------------
# Populations: everything one label needs per weight block
# --------------------------------------------------------------------------------------------

PROPORTIONS = ("sensitivity", "specificity", "ppv", "npv", "prevalence")
"""Metrics that are one count over another: their intervals are score (Wilson) intervals."""


def proportion_members(
    metric: str, labels: BoolArray, called: BoolArray
) -> tuple[BoolArray, BoolArray]:
    """Return (in the numerator, in the denominator) per case for a proportion metric."""
    if metric == "sensitivity":
        return labels & called, labels
    if metric == "specificity":
        return ~labels & ~called, ~labels
    if metric == "ppv":
        return labels & called, called
    if metric == "npv":
        return ~labels & ~called, ~called
    if metric == "prevalence":
        return labels, np.ones_like(labels)
    raise ValueError(f"{metric!r} is not a proportion; expected one of {', '.join(PROPORTIONS)}")


@dataclass(frozen=True)
class EvaluationSettings:
    """How a population is evaluated: operating point, targets, bins and interval method."""

    threshold: float = 0.5
    scores: ScoreScale = "probability"
    target_specificity: float = 0.9
    target_sensitivity: float = 0.9
    n_bins: int = 10
    level: float = 0.95
    ci: frozenset[str] = frozenset({"bootstrap"})
    max_undefined_fraction: float = 0.5

    @classmethod
    def create(
        cls,
        *,
        threshold: float = 0.5,
        scores: ScoreScale = "probability",
        target_specificity: float = 0.9,
        target_sensitivity: float = 0.9,
        n_bins: int = 10,
        level: float = 0.95,
        ci: CiMethod | Sequence[CiMethod] = "bootstrap",
        max_undefined_fraction: float = 0.5,
    ) -> EvaluationSettings:
        """Return validated settings; `ci` is one method or several ("wilson", "delong")."""
        methods = frozenset([ci] if isinstance(ci, str) else ci)
        unknown = methods - {"bootstrap", "wilson", "delong", "none"}
        if unknown or not methods:
            raise ValueError(
                f"ci must be 'bootstrap', 'wilson', 'delong' or 'none' (or wilson and delong "
                f"together); got {sorted(unknown) or 'nothing'}"
            )
        if "none" in methods and len(methods) > 1:
            raise ValueError("ci 'none' cannot be combined with another interval method")
        if scores not in ("probability", "logit"):
            raise ValueError(f"scores must be 'probability' or 'logit'; got {scores!r}")
        if not math.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number; got {threshold!r}")
        for name, target in (
            ("target_specificity", target_specificity),
            ("target_sensitivity", target_sensitivity),
        ):
            if not 0.0 <= target <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1; got {target!r}")
        if n_bins < 1:
            raise ValueError(f"n_bins must be at least 1; got {n_bins}")
        check_level(level)
        return cls(
            threshold=float(threshold),
            scores=scores,
            target_specificity=float(target_specificity),
            target_sensitivity=float(target_sensitivity),
            n_bins=n_bins,
            level=float(level),
            ci=methods,
            max_undefined_fraction=max_undefined_fraction,
        )

    @property
    def threshold_probability(self) -> float:
        """The operating threshold as a probability (for the net benefit)."""
        if self.scores == "probability":
            return self.threshold
        return float(sigmoid(np.array([self.threshold]))[0])

    def method_for(self, metric: str) -> str:
        """Return the interval method of `metric`: wilson, delong, bootstrap or none."""
        if "none" in self.ci:
            return "none"
        # A proportion's percentile interval collapses to a point at 0/n and n/n (15 of 15
        # detected read 1.000 to 1.000) and under-covers small groups; the score interval, with
        # the design effect of patient clustering, keeps its level there (docs/statistics.md).
        if metric in PROPORTIONS:
            return "wilson"
        if metric == "auroc" and "delong" in self.ci:
            return "delong"
        return "bootstrap"

    @property
    def needs_bootstrap(self) -> bool:
        """Whether any metric's interval comes from the bootstrap."""
        return "none" not in self.ci


UNIT_SUFFIXED_METHODS = ("debiased_least_favourable_upper", "debiased_bootstrap_upper")
"""Methods whose stored name ends with the resampled unit, as the percentile bootstrap's does."""


def method_name(method: str, unit: BootstrapUnit) -> str:
    """Return the method string stored in an `Estimate` (the one place these names are made)."""
    if method == "bootstrap":
        return f"bootstrap_percentile_{unit}"
    if method in UNIT_SUFFIXED_METHODS:
        return f"{method}_{unit}"
    if method in ("wilson", "mover_wilson") and unit == "patient":
        return f"{method}_clustered"
    if method == "delong" and unit == "patient":
        return "obuchowski"
    return method


def probabilities_from(scores: FloatArray, scale: ScoreScale) -> FloatArray:
    """Return probabilities: the scores themselves (checked) or the sigmoid of logits."""
    if scale == "probability":
        return validate_probabilities(scores, name="y_score")
    return sigmoid(scores)
