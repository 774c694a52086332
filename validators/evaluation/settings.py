"""The evaluation settings, the interval method of each metric and its stored name."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from validators.metrics.validation import (
    BoolArray,
    FloatArray,
    ScoreScale,
    check_level,
    sigmoid,
    validate_probabilities,
)
from validators.results.estimates import BootstrapUnit
from validators.vocabulary import CI_METHODS, METRICS, SCORE_SCALES

if TYPE_CHECKING:
    from validators.policy import Policy

PROPORTIONS = tuple(name for name, info in METRICS.items() if info.family == "proportion")
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
    """Every setting of an evaluation: operating point, targets, bins, intervals and bootstrap.

    The one object every layer passes (engines, subgroups, baseline comparison): a new setting
    is one field here (and its check in `__post_init__`), not a keyword threaded through each
    entry point. Build it with `create(**settings)` (friendly forms: `ci` as one method or
    several, `threshold` as one number or one per label) or `from_policy(policy)`; the public
    entry points take `settings=` and/or the same keywords as overrides.
    """

    threshold: float = 0.5
    label_thresholds: tuple[tuple[str, float], ...] = ()
    """Per-label operating points (label, threshold) of a multilabel task; other labels use
    `threshold`."""
    scores: ScoreScale = "probability"
    target_specificity: float = 0.9
    target_sensitivity: float = 0.9
    n_bins: int = 10
    level: float = 0.95
    ci: frozenset[str] = frozenset({"bootstrap"})
    max_undefined_fraction: float = 0.5
    replicates: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        """Refuse settings no evaluation can run with, saying what is expected."""
        unknown = self.ci - set(CI_METHODS)
        if unknown or not self.ci:
            raise ValueError(
                f"ci must be 'bootstrap', 'wilson', 'delong' or 'none' (or wilson and delong "
                f"together); got {sorted(unknown) or 'nothing'}"
            )
        if "none" in self.ci and len(self.ci) > 1:
            raise ValueError("ci 'none' cannot be combined with another interval method")
        if self.scores not in SCORE_SCALES:
            raise ValueError(f"scores must be 'probability' or 'logit'; got {self.scores!r}")
        for label, threshold in (("threshold", self.threshold), *self.label_thresholds):
            if not math.isfinite(threshold):
                name = "threshold" if label == "threshold" else f"the threshold of {label!r}"
                raise ValueError(f"{name} must be a finite number; got {threshold!r}")
        for name, target in (
            ("target_specificity", self.target_specificity),
            ("target_sensitivity", self.target_sensitivity),
        ):
            if not 0.0 <= target <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1; got {target!r}")
        if self.n_bins < 1:
            raise ValueError(f"n_bins must be at least 1; got {self.n_bins}")
        check_level(self.level)
        if self.replicates < 0:
            raise ValueError(f"replicates must be 0 or more; got {self.replicates}")
        if self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer; got {self.seed}")

    @classmethod
    def create(cls, **settings: Any) -> EvaluationSettings:
        """Return validated settings from keywords named as the fields.

        `ci` may be one method or several ("wilson", "delong"); `threshold` one number, or a
        mapping from label to threshold (multilabel).
        """
        return cls().updated(**settings)

    @classmethod
    def from_policy(cls, policy: Policy, **overrides: Any) -> EvaluationSettings:
        """Return the settings a policy asks for (its thresholds, targets, bins and intervals)."""
        from_policy: dict[str, Any] = {
            "threshold": policy.threshold,
            "scores": policy.scores,
            "target_specificity": policy.target_specificity,
            "target_sensitivity": policy.target_sensitivity,
            "n_bins": policy.calibration_bins,
            "level": policy.ci.level,
            "ci": list(policy.ci.methods),
            "replicates": policy.ci.replicates,
            "seed": policy.ci.seed,
        }
        return cls.create(**{**from_policy, **overrides})

    def updated(self, **overrides: Any) -> EvaluationSettings:
        """Return these settings with `overrides` applied (same keywords as `create`), checked."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(
                f"unknown evaluation setting {', '.join(map(repr, unknown))}; expected one of "
                f"{', '.join(sorted(known))}"
            )
        values = dict(overrides)
        if "ci" in values:
            ci = values["ci"]
            values["ci"] = frozenset([ci] if isinstance(ci, str) else ci)
        if "threshold" in values:
            threshold = values["threshold"]
            if isinstance(threshold, Mapping):
                # One threshold per label: the labels' own; `threshold` stays the default.
                values["label_thresholds"] = tuple((str(k), float(v)) for k, v in threshold.items())
                del values["threshold"]
            else:
                values["threshold"] = float(threshold)
        for name in ("target_specificity", "target_sensitivity", "level"):
            if name in values:
                values[name] = float(values[name])
        return replace(self, **values)

    def threshold_for(self, label: str) -> float:
        """Return the operating point of `label`: its own threshold, else the default one."""
        return dict(self.label_thresholds).get(label, self.threshold)

    def for_label(self, label: str) -> EvaluationSettings:
        """Return the settings of one label of a multilabel task (its threshold as `threshold`)."""
        threshold = self.threshold_for(label)
        if threshold == self.threshold and not self.label_thresholds:
            return self
        return replace(self, threshold=threshold, label_thresholds=())

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


def settings_with(
    settings: EvaluationSettings | None, overrides: Mapping[str, Any]
) -> EvaluationSettings:
    """Return `settings` (the defaults when None) with an entry point's keyword overrides."""
    return (settings or EvaluationSettings()).updated(**overrides)


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
