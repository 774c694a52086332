"""Tests of the result models: one shape, finite numbers, exact JSON round trips."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel, ValidationError

from validators.evaluation import binary_metrics, multilabel_metrics
from validators.results import (
    MAX_CURVE_POINTS,
    BinaryMetrics,
    CalibrationBin,
    CalibrationCurve,
    DecisionCurve,
    Estimate,
    EvaluationResult,
    MultilabelMetrics,
    Provenance,
    RocCurve,
)


def make_binary(*, n: int = 200, seed: int = 0, one_class: bool = False) -> BinaryMetrics:
    """Return binary metrics of a small random dataset (few replicates, for speed)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, dtype=bool) if one_class else rng.random(n) < 0.3
    scores = np.clip(rng.random(n) * 0.8 + labels * 0.2, 0, 1)
    return binary_metrics(labels, scores, replicates=40)


def make_provenance() -> Provenance:
    """Return provenance with a fixed time."""
    return Provenance.capture(
        seed=0,
        replicates=40,
        level=0.95,
        ci_method="bootstrap",
        bootstrap_unit="case",
        created_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    )


def round_trips(model: BaseModel) -> bool:
    """Return whether the model survives JSON exactly."""
    return type(model).model_validate_json(model.model_dump_json()) == model


def keys(value: Any, prefix: str = "") -> set[str]:
    """Return every dotted key path of a JSON value (list items share one path)."""
    if isinstance(value, dict):
        out = set()
        for key, item in value.items():
            out |= {f"{prefix}{key}"} | keys(item, f"{prefix}{key}.")
        return out
    if isinstance(value, list):
        return set().union(*(keys(item, prefix) for item in value)) if value else set()
    return set()


# --- Estimate ------------------------------------------------------------------------------


def test_estimate_constructors() -> None:
    ok = Estimate.ok(0.8, lower=0.7, upper=0.9, level=0.95, n=100, method="wilson")
    assert (ok.status, ok.n_cases, ok.reason) == ("ok", 100, None)
    undefined = Estimate.undefined("no positive cases", n=10, level=0.95, method="wilson")
    assert (undefined.status, undefined.estimate, undefined.lower) == ("undefined", None, None)
    suppressed = ok.suppress()
    assert suppressed.status == "suppressed"
    assert (suppressed.estimate, suppressed.n, suppressed.n_cases) == (None, None, None)
    assert suppressed.reason and suppressed.method == "wilson"
    for estimate in (ok, undefined, suppressed):
        assert round_trips(estimate)


@pytest.mark.parametrize(
    "fields",
    [
        {"estimate": None, "status": "ok"},
        {"estimate": 0.5, "status": "undefined", "reason": "x"},
        {"estimate": None, "status": "undefined", "reason": None},
        {"estimate": None, "status": "suppressed", "reason": "small", "n": 3},
        {"lower": 0.2},
        {"lower": 0.9, "upper": 0.1},
        {"estimate": math.nan},
        {"upper": math.inf, "lower": 0.0},
        {"level": 1.0},
    ],
)
def test_estimate_refuses_inconsistent_or_non_finite_fields(fields: dict[str, Any]) -> None:
    base: dict[str, Any] = {
        "estimate": 0.5,
        "lower": None,
        "upper": None,
        "level": 0.95,
        "n": 10,
        "n_cases": 10,
        "method": "none",
        "status": "ok",
        "reason": None,
    }
    with pytest.raises(ValidationError):
        Estimate(**(base | fields))


def test_estimate_is_frozen() -> None:
    estimate = Estimate.ok(0.5, level=0.95, n=3, method="none")
    with pytest.raises(ValidationError):
        estimate.estimate = 0.6  # type: ignore[misc]


# --- curves --------------------------------------------------------------------------------


def test_curves_refuse_mismatched_or_oversized_columns() -> None:
    with pytest.raises(ValidationError, match="one length"):
        RocCurve(fpr=[0.0, 1.0], tpr=[0.0], thresholds=[None, 0.5])
    too_many = [0.0] * (MAX_CURVE_POINTS + 1)
    with pytest.raises(ValidationError, match="at most"):
        DecisionCurve(thresholds=too_many, net_benefit_model=too_many, net_benefit_all=too_many)
    with pytest.raises(ValidationError):
        CalibrationCurve(
            strategy="uniform",
            n_bins=1,
            bins=[CalibrationBin(lower=0, upper=1, mean_predicted=0.5, observed_rate=0.5, count=2)]
            * 2,
        )


# --- whole results ------------------------------------------------------------------------


def test_binary_metrics_round_trip_through_json_exactly() -> None:
    result = make_binary()
    assert round_trips(result)
    text = result.model_dump_json()
    assert "NaN" not in text and "Infinity" not in text
    assert result.roc_curve is not None and result.roc_curve.thresholds[0] is None


def test_results_have_one_shape_whatever_the_data() -> None:
    normal = json.loads(make_binary().model_dump_json())
    degenerate = json.loads(make_binary(one_class=True).model_dump_json())
    # The same fields, numbers or not; only list contents (curve points) may differ.
    assert set(normal) == set(degenerate)
    for name, value in normal.items():
        if isinstance(value, dict) and "estimate" in value:
            assert set(value) == set(degenerate[name]), name
    assert degenerate["auroc"]["status"] == "undefined"
    assert degenerate["roc_curve"] is None


def test_multilabel_metrics_round_trip() -> None:
    rng = np.random.default_rng(1)
    truth = rng.random((120, 2)) < 0.3
    result = multilabel_metrics(truth, rng.random((120, 2)), ["a", "b"], replicates=30)
    assert isinstance(result, MultilabelMetrics)
    assert round_trips(result)
    with pytest.raises(ValidationError, match="order of labels"):
        MultilabelMetrics(
            labels=["b", "a"], per_label=result.per_label, macro=result.macro, micro=result.micro
        )


def test_evaluation_result_round_trips_and_picks_the_metrics_type_by_task() -> None:
    result = EvaluationResult(task="binary", provenance=make_provenance(), overall=make_binary())
    assert round_trips(result)
    parsed = EvaluationResult.model_validate_json(result.model_dump_json())
    assert isinstance(parsed.overall, BinaryMetrics)
    assert parsed.provenance.created_at == datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    with pytest.raises(ValidationError, match="holds binary metrics"):
        EvaluationResult(task="multilabel", provenance=make_provenance(), overall=make_binary())


def test_provenance_records_versions() -> None:
    provenance = make_provenance()
    assert provenance.numpy_version == np.__version__
    assert provenance.assay_version
    assert provenance.seed == 0 and provenance.replicates == 40


def test_an_unbounded_side_is_flagged_never_stored_as_a_number() -> None:
    estimate = Estimate.ok(
        3.2, lower=1.5, upper=None, upper_unbounded=True, level=0.95, n=40, method="m"
    )
    assert estimate.has_interval
    assert estimate.bound("lower") == 1.5
    assert estimate.bound("upper") == math.inf
    assert round_trips(estimate)
    assert "Infinity" not in estimate.model_dump_json()
    with pytest.raises(ValidationError, match="unbounded upper side carries no number"):
        Estimate.ok(3.2, lower=1.5, upper=9.0, upper_unbounded=True, level=0.95, n=40, method="m")


def test_a_one_sided_upper_bound_has_no_lower_side() -> None:
    bound = Estimate.ok(0.01, upper=0.03, sides="upper", level=0.95, n=1000, method="m")
    assert bound.bound("lower") is None and bound.bound("upper") == 0.03
    assert round_trips(bound)
    with pytest.raises(ValidationError, match="one-sided upper bound"):
        Estimate.ok(0.01, lower=0.0, upper=0.03, sides="upper", level=0.95, n=9, method="m")
    with pytest.raises(ValidationError, match="one-sided lower bound"):
        Estimate.ok(0.9, upper=0.95, sides="lower", level=0.95, n=9, method="m")
    with pytest.raises(ValidationError, match="two-sided interval needs both bounds"):
        Estimate.ok(0.9, lower=0.8, level=0.95, n=9, method="m")


def test_an_undefined_estimate_carries_no_unbounded_side() -> None:
    with pytest.raises(ValidationError, match="carries no numbers"):
        Estimate(
            estimate=None,
            lower=None,
            upper=None,
            upper_unbounded=True,
            lower_unbounded=True,
            level=0.95,
            n=3,
            n_cases=3,
            method="m",
            status="undefined",
            reason="why",
        )


# --------------------------------------------------------------------------------------------
# The statistics digest (issue 7, item 9)
# --------------------------------------------------------------------------------------------


def make_result(**provenance: Any) -> EvaluationResult:
    return EvaluationResult(
        task="binary",
        provenance=make_provenance().model_copy(update=provenance),
        overall=make_binary(),
    )


def test_the_statistics_digest_ignores_time_and_software_but_not_settings() -> None:
    result = make_result()
    assert len(result.statistics_digest) == 64
    assert json.loads(result.model_dump_json())["statistics_digest"] == result.statistics_digest
    later = make_result(created_at=datetime(2027, 1, 1, tzinfo=UTC), numpy_version="9.9")
    assert later.statistics_digest == result.statistics_digest
    assert make_result(seed=1).statistics_digest != result.statistics_digest
    assert round_trips(result)


def test_a_changed_number_changes_the_digest_and_a_stale_digest_is_refused() -> None:
    result = make_result()
    document = json.loads(result.model_dump_json())
    document["overall"]["auroc"]["estimate"] = 0.999
    with pytest.raises(ValidationError, match="does not match the result's content"):
        EvaluationResult.model_validate(document)
    document.pop("statistics_digest")
    changed = EvaluationResult.model_validate(document)
    assert changed.statistics_digest != result.statistics_digest


def test_the_digest_is_identical_at_one_and_two_blas_threads(tmp_path: Any) -> None:
    from threadpoolctl import threadpool_limits

    from validators.data.predictions import Predictions
    from validators.evaluation import evaluate_predictions
    from validators.policy import parse_policy

    # Large enough that a two-thread BLAS splits its sums (the point ECE differed in the last
    # bit, and calibration bounds in the eighth digit, before the engines pinned one thread).
    rng = np.random.default_rng(0)
    n = 20_000
    labels = rng.random(n) < 0.3
    scores = 1 / (1 + np.exp(-(1.2 * (2 * labels - 1) + rng.normal(size=n))))
    predictions = Predictions(
        task="binary",
        labels=("label",),
        case_ids=np.array([f"c{i:05d}" for i in range(n)]),
        patient_ids=np.array([f"p{i // 2:05d}" for i in range(n)]),
        y_true=labels,
        y_score=scores,
        attributes={"site": np.array(["A", "B"], dtype=object)[rng.integers(0, 2, n)]},
    )
    policy = parse_policy(
        {
            "name": "p",
            "version": "1",
            "task": "binary",
            "ci": {"replicates": 40},
            "subgroups": {"attributes": ["site"]},
            "criteria": [],
        }
    )
    digests = set()
    for threads in (1, 2, 1):
        with threadpool_limits(threads, user_api="blas"):
            digests.add(evaluate_predictions(predictions, policy=policy).statistics_digest)
    assert len(digests) == 1
