"""Tests of the speed and runtime result blocks: round trips, and the statistics digest."""

from __future__ import annotations

from typing import Any

from tests.validators.test_policy import result
from validators.results import (
    BatchSpeed,
    EvaluationResult,
    Fingerprint,
    IsolationMeasures,
    RuntimeInfo,
    SpeedProtocolUsed,
    SpeedResult,
)


def batch(batch_size: int = 1, *, p50: float = 10.0, end_to_end: float | None = 12.0) -> BatchSpeed:
    """Figures at one batch size with increasing percentiles from `p50`."""
    return BatchSpeed(
        batch_size=batch_size,
        iterations=50,
        measured_s=2.5,
        latency_mean_ms=p50 * 1.05,
        latency_p50_ms=p50,
        latency_p90_ms=p50 * 1.2,
        latency_p95_ms=p50 * 1.3,
        latency_p99_ms=p50 * 1.5,
        throughput_per_s=1000.0 * batch_size / p50,
        end_to_end_ms_per_case=end_to_end,
    )


def speed_result(
    *, batches: list[BatchSpeed] | None = None, peak_memory_bytes: int | None = 300 * 2**20
) -> SpeedResult:
    """A speed block measured on a CPU, at batch sizes 1 and 16 unless given."""
    chosen = batches or [batch(1), batch(16, p50=40.0)]
    return SpeedResult(
        protocol=SpeedProtocolUsed(
            warmup_iterations=10,
            min_iterations=50,
            min_time_s=2.0,
            batch_sizes=[b.batch_size for b in chosen],
            decode_sample=32,
        ),
        timing="perf_counter",
        batches=chosen,
        peak_memory_bytes=peak_memory_bytes,
        memory_kind="resident",
        decode_ms_per_case=2.0,
        decode_cases=32,
        fingerprint=Fingerprint(
            cpu_model="Test CPU",
            cpu_cores=2,
            runtime="onnxruntime",
            runtime_version="1.0",
            execution_provider="CPUExecutionProvider",
            python_version="3.11",
            platform="Linux",
        ),
    )


def runtime_info() -> RuntimeInfo:
    """Where a test model ran: onnxruntime on the CPU, fully isolated."""
    return RuntimeInfo(
        format="onnx",
        runtime="onnxruntime",
        runtime_version="1.0",
        execution_provider="CPUExecutionProvider",
        intra_op_threads=2,
        inter_op_threads=1,
        device="cpu",
        isolation=IsolationMeasures(
            namespaces=["net", "mount", "pid"],
            user="nobody (65534)",
            rlimits={"address_space_bytes": 2**33},
            device="cpu",
            wall_seconds=600.0,
        ),
    )


def with_blocks(base: EvaluationResult, **blocks: Any) -> EvaluationResult:
    return EvaluationResult.model_validate({**base.model_dump(mode="json"), **blocks})


def test_a_result_without_speed_serializes_as_before() -> None:
    document = result().model_dump(mode="json")
    assert "speed" not in document and "runtime" not in document


def test_speed_and_runtime_stay_outside_the_statistics_digest() -> None:
    plain = result()
    measured = with_blocks(
        plain,
        speed=speed_result().model_dump(mode="json"),
        runtime=runtime_info().model_dump(mode="json"),
    )
    assert measured.statistics_digest == plain.statistics_digest


def test_a_result_written_before_the_blocks_existed_still_verifies() -> None:
    document = result().model_dump(mode="json")
    # The digest it carries was computed without the blocks; it must still match.
    assert (
        EvaluationResult.model_validate(document).statistics_digest == document["statistics_digest"]
    )


def test_speed_and_runtime_round_trip_through_json() -> None:
    measured = with_blocks(
        result(),
        speed=speed_result().model_dump(mode="json"),
        runtime=runtime_info().model_dump(mode="json"),
    )
    again = EvaluationResult.model_validate_json(measured.model_dump_json())
    assert again == measured
    assert again.speed is not None and again.speed.at_batch(16) == batch(16, p50=40.0)
    assert again.speed.at_batch(8) is None
