"""Coverage of Assay's intervals by simulation (slow; `tests/validators/simulation.py`).

Each slow test draws DATASETS (4,000) datasets of one design whose true values are known, evaluates
them through the production entry points with the production settings (1,000 bootstrap
replicates, level 0.95) on 2 worker processes, and asserts the acceptance bands of issue 7:

- two-sided 95% intervals (AUROC, sensitivity, specificity, a group's sensitivity, a disparity,
  the equal-opportunity gap) cover within 95% +- (2 SE + 1 point), SE = sqrt(c (1 - c) / n);
- one-sided bounds cover in at least 95% - 2 SE;
- ECE on a calibrated model: the estimate averages 0 within 2 SE, and the upper bound is under
  0.05 in at least 80% of 1,000-case datasets; on a miscalibrated model the upper bound covers
  the true binned ECE (one-sided rule).

The whole module takes about 13-14 minutes on 2 cores (docs/statistics.md, "Coverage").
`python -m tests.validators.simulation` prints the same checks as a table. The fast test at the
end runs every design on a few datasets (plumbing, truths, determinism) and is not slow.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import replace
from multiprocessing.pool import Pool

import numpy as np
import pytest

from tests.validators.simulation import (
    DESIGNS,
    TRUE_ECE_MISCALIBRATED,
    Clustered,
    DesignResult,
    EceMiscalibrated,
    make_pool,
    markdown_table,
    run_design,
)

DATASETS = int(os.environ.get("ASSAY_COVERAGE_DATASETS", "4000"))
"""Datasets per design (issue 7 asks for at least 4,000; the variable is for local trials)."""
NAIVE_DATASETS = 500
"""Datasets for the image-level (naive) bootstrap on clustered data: enough to see it fail."""


@pytest.fixture(scope="module")
def pool() -> Iterator[Pool]:
    workers = make_pool(2)
    try:
        yield workers
    finally:
        workers.close()
        workers.join()


def _assert_passes(result: DesignResult) -> None:
    assert result.passed, (
        f"{result.design.name} ({result.n} datasets):\n{result.failures()}\n\n"
        f"{markdown_table([result])}"
    )


@pytest.mark.slow
def test_independent_cases(pool: Pool) -> None:
    _assert_passes(run_design(DESIGNS["independent"], DATASETS, pool=pool))


@pytest.mark.slow
def test_clustered_patient_bootstrap_covers_and_image_bootstrap_does_not(pool: Pool) -> None:
    clustered = run_design(DESIGNS["clustered"], DATASETS, pool=pool)
    _assert_passes(clustered)
    # The same datasets with images resampled as if independent: the interval is too narrow.
    naive = run_design(DESIGNS["clustered_naive"], NAIVE_DATASETS, pool=pool)
    by_patient = clustered.hits("auroc")[:NAIVE_DATASETS].mean()
    by_image = naive.hits("auroc").mean()
    assert by_image < by_patient - 0.05, (
        f"image-level AUROC coverage {by_image:.3f}, patient-level {by_patient:.3f}"
    )
    assert by_image < 0.90, f"image-level AUROC coverage {by_image:.3f}"


@pytest.mark.slow
def test_boundary_sensitivity(pool: Pool) -> None:
    _assert_passes(run_design(DESIGNS["boundary"], DATASETS, pool=pool))


@pytest.mark.slow
def test_ece_calibrated(pool: Pool) -> None:
    _assert_passes(run_design(DESIGNS["ece_calibrated"], DATASETS, pool=pool))


@pytest.mark.slow
def test_ece_miscalibrated(pool: Pool) -> None:
    _assert_passes(run_design(DESIGNS["ece_miscalibrated"], DATASETS, pool=pool))


@pytest.mark.slow
def test_fairness_gap(pool: Pool) -> None:
    _assert_passes(run_design(DESIGNS["fairness_gap"], DATASETS, pool=pool))


# --------------------------------------------------------------------------------------------
# Fast: plumbing and truths
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
    from tests.validators.simulation import _clustered_by_monte_carlo

    design = DESIGNS["clustered"]
    assert isinstance(design, Clustered)
    truths = design.truths()
    simulated = _clustered_by_monte_carlo(design, 200_000, seed=1)
    for quantity, value in simulated.items():
        assert value == pytest.approx(truths[quantity], abs=0.006), quantity


def test_miscalibrated_ece_truth() -> None:
    design = EceMiscalibrated()
    assert design.ece_by_quadrature() == pytest.approx(TRUE_ECE_MISCALIBRATED, abs=1e-9)
    value, se = design.ece_by_monte_carlo(10**6, seed=2)
    assert abs(value - TRUE_ECE_MISCALIBRATED) < max(4 * se, 1e-4)


def test_fairness_gap_design_has_a_clear_best_and_worst_group() -> None:
    design = DESIGNS["fairness_gap"]
    rates = sorted(design.sensitivities)  # type: ignore[attr-defined]
    assert design.truths()["equal-opportunity gap"] >= 0.1
    assert rates[1] - rates[0] >= 0.1 and rates[-1] - rates[-2] >= 0.1
