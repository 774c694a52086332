"""Whole binary evaluations."""

from __future__ import annotations

from typing import Any

from numpy.typing import ArrayLike

from validators.blas import one_blas_thread
from validators.evaluation.population import BinaryPopulation, collect_replicates
from validators.evaluation.settings import EvaluationSettings, probabilities_from, settings_with
from validators.metrics.validation import validate_binary
from validators.resampling.intervals import one_per_case
from validators.resampling.plan import BootstrapPlan, score_order
from validators.results.metrics import BinaryMetrics

# --------------------------------------------------------------------------------------------
# Whole evaluations
# --------------------------------------------------------------------------------------------


@one_blas_thread
def evaluate_binary(
    y_true: ArrayLike,
    y_score: ArrayLike,
    *,
    settings: EvaluationSettings | None = None,
    groups: ArrayLike | None = None,
    **overrides: Any,
) -> BinaryMetrics:
    """Return every binary metric with its interval, and the ROC, calibration and decision curves.

    `settings` (default `EvaluationSettings()`), with any keyword of `EvaluationSettings.create`
    applied over it (`threshold=0.3, ci="wilson", replicates=200, seed=1`...), says how:
    `threshold` applies on the scale of `scores` ("positive when score >= threshold"); logits
    are turned into probabilities by a stable sigmoid for the probability metrics, and the net
    benefit uses the threshold's probability. `ci` names the interval method: "bootstrap"
    (percentile, `replicates` resamples, by patient when `groups` gives patient ids), "wilson"
    (proportions; the rest by bootstrap), "delong" (AUROC; the rest by bootstrap), both
    ("wilson", "delong"), or "none" (point estimates). Each estimate names its own method.
    """
    settings = settings_with(settings, overrides)
    labels, raw = validate_binary(y_true, y_score)
    probabilities = probabilities_from(raw, settings.scores)
    # Resample the cases in ascending score order: every gather in the kernels is then monotone.
    order = score_order(labels, raw)
    labels, raw, probabilities = labels[order], raw[order], probabilities[order]
    if groups is not None:
        groups = one_per_case(groups, labels.shape[0])[order]
    plan = BootstrapPlan.create(
        labels.shape[0], replicates=settings.replicates, seed=settings.seed, groups=groups
    )
    population = BinaryPopulation(labels, raw, probabilities, settings)
    point = population.evaluate_point()
    tables = collect_replicates(plan, [population]) if settings.needs_bootstrap else None
    estimates = population.estimates(
        point,
        tables[0] if tables else None,
        unit=plan.unit,
        n_units=plan.n_units,
        clusters=plan.clusters,
        n_clusters=plan.n_clusters,
    )
    n_patients = plan.n_clusters if groups is not None else None
    return population.result(estimates, n_patients=n_patients)


binary_metrics = evaluate_binary
"""The name the docs use for `evaluate_binary` (every binary metric with its interval)."""
