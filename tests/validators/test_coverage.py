"""Coverage of Assay's intervals by simulation (slow; `simulation.py`, `coverage_designs.py`).

Each slow test draws DATASETS (4,000) datasets of one design whose true values are known, evaluates
them through the production entry points with the production settings (1,000 bootstrap
replicates, level 0.95) on 2 worker processes, and asserts the acceptance bands of issue 7:

- two-sided 95% intervals (AUROC, sensitivity, specificity, a group's sensitivity, a disparity,
  the equal-opportunity gap) cover within 95% +- (2 SE + 1 point), SE = sqrt(c (1 - c) / n);
- one-sided bounds cover in at least 95% - 2 SE;
- ECE on a calibrated model: the estimate averages 0 within 2 SE, and the upper bound is under
  0.05 in at least 80% of 1,000-case datasets; on a miscalibrated model the upper bound covers
  the true binned ECE (one-sided rule).

The whole module took 667 s on 2 cores at 401624a, all six passing (docs/statistics.md,
"Coverage"). `python -m tests.validators.simulation` prints the same checks as a table.
`tests/validators/test_simulation.py` (fast, not slow) runs every design on a few datasets
(plumbing, truths, determinism) and the acceptance rules on records whose outcome is known.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from multiprocessing.pool import Pool

import pytest

from tests.validators.coverage_designs import DESIGNS
from tests.validators.simulation import DesignResult, make_pool, markdown_table, run_design

DATASETS = int(os.environ.get("ASSAY_COVERAGE_DATASETS", "4000"))
"""Datasets per design (issue 7 asks for at least 4,000; the variable is for local trials)."""
NAIVE_DATASETS = 500
"""Datasets for the image-level (naive) bootstrap on clustered data: enough to see it fail."""

pytestmark = pytest.mark.slow


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
        f"{result.design.label} ({result.n} datasets):\n{result.failures()}\n\n"
        f"{markdown_table([result])}"
    )


def test_independent_cases(pool: Pool) -> None:
    _assert_passes(run_design(DESIGNS["independent"], DATASETS, pool=pool))


def test_clustered_patient_bootstrap_covers_and_image_bootstrap_does_not(pool: Pool) -> None:
    clustered = run_design(DESIGNS["clustered"], DATASETS, pool=pool)
    # The same datasets with images resampled as if independent: the interval is too narrow.
    naive = run_design(DESIGNS["clustered_naive"], NAIVE_DATASETS, pool=pool)
    by_patient = clustered.hits("auroc")[:NAIVE_DATASETS].mean()
    by_image = naive.hits("auroc").mean()
    assert by_image < by_patient - 0.05, (
        f"image-level AUROC coverage {by_image:.3f}, patient-level {by_patient:.3f}"
    )
    _assert_passes(naive)  # its check is "undercover": at most 90%
    _assert_passes(clustered)


def test_boundary_sensitivity(pool: Pool) -> None:
    _assert_passes(run_design(DESIGNS["boundary"], DATASETS, pool=pool))


def test_ece_calibrated(pool: Pool) -> None:
    _assert_passes(run_design(DESIGNS["ece_calibrated"], DATASETS, pool=pool))


def test_ece_miscalibrated(pool: Pool) -> None:
    _assert_passes(run_design(DESIGNS["ece_miscalibrated"], DATASETS, pool=pool))


def test_fairness_gap(pool: Pool) -> None:
    _assert_passes(run_design(DESIGNS["fairness_gap"], DATASETS, pool=pool))
