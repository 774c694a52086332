"""Fast checks of the coverage simulation (`simulation.py`, `coverage_designs.py`): every
design runs on a few datasets with few replicates, the truths agree with quadrature and Monte
Carlo, datasets regenerate one by one, worker processes give the same numbers as one process, and
the acceptance rules judge known records right. The coverage itself is checked by the slow
`test_coverage.py`."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pytest

from tests.validators.coverage_designs import (
    DESIGNS,
    TRUE_ECE_MISCALIBRATED,
    Check,
    CheckKind,
    Clustered,
    Design,
    EceMiscalibrated,
    FairnessGap,
    _clustered_by_monte_carlo,
)
from tests.validators.simulation import (
    _LOWER,
    _POINT,
    _TWO,
    _UNDEFINED,
    _UPPER,
    Summary,
    _summarize,
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
            # The estimates average the truth within 4 SE: the designs are what they claim to be.
            estimates = records[:, 0][~np.isnan(records[:, 0])]
            mean, truth = estimates.mean(), truths[quantity]
            if name == "ece_miscalibrated":
                # Debiased ECE is biased downward off calibration (docs/statistics.md, "ECE").
                assert 0.0 < mean < truth, (name, quantity, mean, truth)
                continue
            se = estimates.std(ddof=1) / math.sqrt(estimates.size)
            assert abs(mean - truth) <= 4 * se, (name, quantity, mean, truth, se)


def test_datasets_are_reproducible_one_by_one() -> None:
    design = DESIGNS["clustered"]
    a, b, other = design.dataset(7), design.dataset(7), design.dataset(8)
    assert np.array_equal(a.scores, b.scores) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(other.scores[:5], a.scores[:5])


def test_worker_processes_give_the_same_numbers() -> None:
    design = replace(DESIGNS["independent"], replicates=100)
    serial = run_design(design, 6, workers=1, start=3)
    parallel = run_design(design, 6, workers=2, start=3)
    for quantity, records in serial.records.items():
        assert np.array_equal(records, parallel.records[quantity], equal_nan=True), quantity


def test_clustered_overall_is_binary_metrics_with_patient_groups() -> None:
    """The clustered design reads the overall from `evaluate_binary_with_subgroups`, which must
    equal `binary_metrics(..., groups=patient_ids)` (as `evaluate_predictions` computes it)."""
    from validators.evaluation import binary_metrics

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


# --------------------------------------------------------------------------------------------
# The acceptance rules, on records whose outcome is known (the slow tests rely on them)


@dataclass(frozen=True)
class _Known(Design):
    name: ClassVar[str] = "known"

    def truths(self) -> dict[str, float]:
        return {"q": 0.5, "zero": 0.0}


def _summary(kind: CheckKind, *rows: tuple[int, tuple[float, float, float, int]]) -> Summary:
    """Summarize `count` copies of each (estimate, lower, upper, shape) row under one check."""
    records = np.array([row for count, row in rows for _ in range(count)], dtype=np.float64)
    quantity = "zero" if kind in ("mean-zero", "upper-below") else "q"
    return _summarize(_Known(), Check(quantity, kind), records, Counter(m=1))


COVERS = (0.5, 0.4, 0.6, _TWO)
BELOW = (0.3, 0.2, 0.4, _TWO)  # the interval lies under the truth 0.5
ABOVE = (0.7, 0.6, 0.8, _TWO)
NAN = math.nan


def test_two_sided_coverage_passes_near_95_percent_only() -> None:
    hit = _summary("two-sided", (950, COVERS), (25, BELOW), (25, ABOVE))
    assert (hit.hits, hit.value, hit.passed) == (950, 0.95, True)
    assert hit.se == pytest.approx(math.sqrt(0.95 * 0.05 / 1000))
    assert hit.lower_limit == pytest.approx(0.95 - 2 * hit.se - 0.01)
    assert not _summary("two-sided", (900, COVERS), (100, BELOW)).passed
    assert not _summary("two-sided", (990, COVERS), (10, ABOVE)).passed  # too wide fails too


def test_an_undefined_estimate_or_a_point_without_interval_is_a_miss() -> None:
    undefined = (NAN, NAN, NAN, _UNDEFINED)
    point = (0.5, NAN, NAN, _POINT)
    summary = _summary("two-sided", (900, COVERS), (50, undefined), (50, point))
    assert (summary.hits, summary.passed) == (900, False)
    assert (summary.undefined, summary.one_sided) == (0.1, 0.0)  # `undefined`: no interval


def test_one_sided_checks_read_only_their_side() -> None:
    # Under the truth: the lower bound holds, the upper does not.
    assert _summary("lower", (1000, BELOW)).value == 1.0
    assert _summary("upper", (1000, BELOW)).value == 0.0
    assert _summary("upper", (1000, ABOVE)).value == 1.0
    assert _summary("lower", (920, COVERS), (80, ABOVE)).passed is False
    # A one-sided upper bound claims nothing below: it covers any truth under it.
    upper_only = (0.3, -math.inf, 0.6, _UPPER)
    assert _summary("two-sided", (1000, upper_only)).value == 1.0
    assert _summary("upper", (1000, upper_only)).passed
    lower_only = (0.3, 0.4, math.inf, _LOWER)
    summary = _summary("lower", (1000, lower_only))
    assert (summary.value, summary.one_sided) == (1.0, 1.0)


def test_mean_zero_needs_every_estimate_and_a_mean_within_2_se() -> None:
    noise = np.random.default_rng(0).normal(0.0, 0.01, size=1000)
    centred = [(1, (e, -math.inf, e + 0.03, _UPPER)) for e in noise - noise.mean()]
    summary = _summary("mean-zero", *centred)
    assert summary.passed and summary.value == pytest.approx(0.0, abs=1e-15)
    assert summary.se == pytest.approx(0.01 / math.sqrt(1000), rel=0.1)
    shifted = [(1, (e + 3 * summary.se, lo, up, shape)) for _, (e, lo, up, shape) in centred]
    assert not _summary("mean-zero", *shifted).passed
    assert not _summary("mean-zero", *centred[1:], (1, (NAN, NAN, NAN, _UNDEFINED))).passed


def test_upper_below_counts_upper_bounds_under_the_ece_limit() -> None:
    under, over = (0.01, -math.inf, 0.04, _UPPER), (0.01, -math.inf, 0.06, _UPPER)
    point = (0.01, NAN, NAN, _POINT)
    assert _summary("upper-below", (800, under), (200, over)).passed
    summary = _summary("upper-below", (790, under), (10, point), (200, over))
    assert (summary.value, summary.passed) == (0.79, False)


def test_undercover_passes_only_at_most_90_percent() -> None:
    assert _summary("undercover", (900, COVERS), (100, BELOW)).passed
    assert not _summary("undercover", (910, COVERS), (90, BELOW)).passed
