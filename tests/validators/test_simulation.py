"""Fast checks of the coverage simulation (`tests/validators/simulation.py`): every design runs
on a few datasets with few replicates, the truths agree with quadrature and Monte Carlo, datasets
regenerate one by one, and worker processes give the same numbers as one process. The coverage
itself is checked by the slow `test_coverage.py`."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from tests.validators.simulation import (
    DESIGNS,
    TRUE_ECE_MISCALIBRATED,
    Clustered,
    EceMiscalibrated,
    FairnessGap,
    _clustered_by_monte_carlo,
    run_design,
)

# --------------------------------------------------------------------------------------------

FEW = 20


def test_designs_run_and_know_their_truths() -> None:
    """Every design runs on a few datasets, with few replicates: no exception, sane numbers."""
    for name, design in DESIGNS.items():
        few = replace(design, replicates=100)
        result = run_design(few, FEW, workers=1)
        assert result.n == FEW
        truths = few.truths()
        assert {c.quantity for c in few.checks} <= set(truths), name
        for quantity, truth in truths.items():
            assert math.isfinite(truth), (name, quantity)
            assert -1.0 <= truth <= 1.0, (name, quantity, truth)
        for summary in result.summaries:
            assert summary.n == FEW
            assert 0.0 <= summary.undefined < 0.5, (name, summary.quantity)
            if summary.kind != "mean-zero":
                assert 0.0 <= summary.value <= 1.0
        for quantity, records in result.records.items():
            assert records.shape == (FEW, 4), (name, quantity)
            # Estimates lie near the truth: the designs are what they claim to be.
            estimates = records[:, 0]
            assert np.nanmean(np.abs(estimates - truths[quantity])) < 0.1, (name, quantity)


def test_datasets_are_reproducible_one_by_one() -> None:
    design = DESIGNS["clustered"]
    a, b = design.dataset(7), design.dataset(7)
    assert np.array_equal(a.scores, b.scores) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(design.dataset(8).labels[:5], a.labels[:5]) or not np.array_equal(
        design.dataset(8).scores[:5], a.scores[:5]
    )


def test_worker_processes_give_the_same_numbers() -> None:
    design = replace(DESIGNS["independent"], replicates=100)
    serial = run_design(design, 6, workers=1, start=3)
    parallel = run_design(design, 6, workers=2, start=3)
    for quantity, records in serial.records.items():
        assert np.array_equal(records, parallel.records[quantity], equal_nan=True), quantity


def test_clustered_overall_is_binary_metrics_with_patient_groups() -> None:
    """The clustered design reads the overall from `evaluate_binary_with_subgroups`, which must
    equal `binary_metrics(..., groups=patient_ids)` (as `evaluate_predictions` computes it)."""
    from validators.metrics import binary_metrics

    design = replace(DESIGNS["clustered"], replicates=200)
    assert isinstance(design, Clustered)
    data = design.dataset(0)
    estimates = design.evaluate(data, 5)
    direct = binary_metrics(
        data.labels,
        data.scores,
        scores="logit",
        threshold=design.threshold,
        replicates=200,
        seed=5,
        groups=data.patients,
    )
    for name in ("auroc", "sensitivity", "specificity"):
        assert estimates[name] == getattr(direct, name), name
    assert estimates["auroc"].method == "bootstrap_percentile_patient"


def test_clustered_truths_match_monte_carlo() -> None:
    design = DESIGNS["clustered"]
    assert isinstance(design, Clustered)
    truths = design.truths()
    simulated = _clustered_by_monte_carlo(design, 500_000, seed=1)
    for quantity, value in simulated.items():
        assert value == pytest.approx(truths[quantity], abs=0.006), quantity


def test_miscalibrated_ece_truth() -> None:
    design = EceMiscalibrated()
    assert design.ece_by_quadrature() == pytest.approx(TRUE_ECE_MISCALIBRATED, abs=1e-9)
    value, se = design.ece_by_monte_carlo(10**6, seed=2)
    assert abs(value - TRUE_ECE_MISCALIBRATED) < max(4 * se, 1e-4)


def test_fairness_gap_design_has_a_clear_best_and_worst_group() -> None:
    design = DESIGNS["fairness_gap"]
    assert isinstance(design, FairnessGap)
    rates = sorted(design.sensitivities)
    assert design.truths()["equal-opportunity gap"] >= 0.1
    assert rates[1] - rates[0] >= 0.1 and rates[-1] - rates[-2] >= 0.1
