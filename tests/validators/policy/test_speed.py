"""Tests of the speed criterion and the policy's speed protocol."""

from __future__ import annotations

from typing import Any

import pytest

from tests.validators.results.test_speed import batch, speed_result, with_blocks
from tests.validators.test_policy import judge, policy, result
from validators.results import EvaluationResult


def measured(**speed: Any) -> EvaluationResult:
    return with_blocks(result(), speed=speed_result(**speed).model_dump(mode="json"))


def test_speed_without_a_benchmark_lacks_data() -> None:
    outcome = judge({"kind": "speed", "metric": "latency_p90_ms", "max": 200})
    assert outcome.outcome == "insufficient_data"
    assert outcome.reason == "No speed benchmark in this result."


@pytest.mark.parametrize(
    ("criterion", "expected", "observed"),
    [
        ({"metric": "latency_p50_ms", "max": 20}, "pass", 10.0),
        ({"metric": "latency_p90_ms", "max": 11}, "fail", 12.0),
        ({"metric": "latency_p99_ms", "batch_size": 16, "max": 59}, "fail", 60.0),
        ({"metric": "throughput_per_s", "batch_size": 16, "min": 300}, "pass", 400.0),
        ({"metric": "end_to_end_ms_per_case", "max": 12.5}, "pass", 12.0),
        ({"metric": "peak_memory_mib", "max": 256}, "fail", 300.0),
    ],
)
def test_speed_judges_the_figure_at_its_batch_size(
    criterion: dict[str, Any], expected: str, observed: float
) -> None:
    outcome = judge({"kind": "speed", **criterion}, measured())
    assert outcome.outcome == expected
    assert outcome.observed == pytest.approx(observed)


def test_speed_reason_names_the_figure_and_batch_size() -> None:
    outcome = judge({"kind": "speed", "metric": "latency_p95_ms", "max": 10}, measured())
    assert outcome.reason == "latency_p95_ms at batch size 1, 13, is not at most 10."


def test_a_batch_size_that_was_not_timed_lacks_data() -> None:
    criterion = {"kind": "speed", "metric": "latency_p50_ms", "batch_size": 8, "max": 10}
    outcome = judge(criterion, measured())
    assert outcome.outcome == "insufficient_data"
    assert "did not run at batch size 8 (it ran at 1, 16)" in outcome.reason


def test_unmeasured_memory_and_end_to_end_lack_data() -> None:
    memory = judge(
        {"kind": "speed", "metric": "peak_memory_mib", "max": 10},
        measured(peak_memory_bytes=None),
    )
    assert memory.outcome == "insufficient_data"
    no_decode = measured(batches=[batch(1, end_to_end=None)])
    end_to_end = judge({"kind": "speed", "metric": "end_to_end_ms_per_case", "max": 10}, no_decode)
    assert end_to_end.outcome == "insufficient_data"
    assert "no case was decoded" in end_to_end.reason


def test_the_protocol_has_defaults() -> None:
    protocol = policy().speed_protocol()
    assert protocol.batch_sizes == [1, 16]
    assert (protocol.warmup_iterations, protocol.min_iterations, protocol.min_time_s) == (
        10,
        50,
        2.0,
    )


def test_the_protocol_times_every_batch_size_a_criterion_reads() -> None:
    chosen = policy(
        {"kind": "speed", "metric": "latency_p95_ms", "batch_size": 8, "max": 10},
        {"kind": "speed", "metric": "peak_memory_mib", "batch_size": 64, "max": 10},
        speed={"batch_sizes": [4], "min_iterations": 5},
    ).speed_protocol()
    assert chosen.batch_sizes == [4, 8]
    assert chosen.min_iterations == 5


def test_the_protocol_refuses_a_zero_batch_size() -> None:
    from validators.policy import PolicyInvalid

    with pytest.raises(PolicyInvalid):
        policy(speed={"batch_sizes": [0]})
