"""Tests of the speed protocol: percentiles, the figures per batch size, a run on a tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.validators.runtime import models
from validators.data.datasets import load_dataset
from validators.data.phantoms import write_phantom_dataset
from validators.results import SpeedProtocolUsed
from validators.runtime.runner import run_model
from validators.runtime.speed import batch_speed, measure_decode, percentile, summarize

PROTOCOL = SpeedProtocolUsed(
    warmup_iterations=2, min_iterations=7, min_time_s=0.0, batch_sizes=[1, 3], decode_sample=4
)


@pytest.mark.parametrize("q", [0, 12.5, 50, 90, 95, 99, 100])
def test_percentile_matches_numpy(q: float) -> None:
    values = sorted(np.random.default_rng(1).exponential(size=37).tolist())
    assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_batch_speed_orders_percentiles_and_counts_cases() -> None:
    latencies = np.random.default_rng(2).gamma(2.0, 0.01, size=200).tolist()
    figures = batch_speed(4, latencies, decode_ms_per_case=1.5)
    assert figures.iterations == 200
    assert (
        figures.latency_p50_ms
        <= figures.latency_p90_ms
        <= figures.latency_p95_ms
        <= figures.latency_p99_ms
    )
    assert figures.throughput_per_s == pytest.approx(4 * 200 / sum(latencies))
    assert figures.end_to_end_ms_per_case == pytest.approx(1.5 + figures.latency_p50_ms / 4)


def test_summarize_refuses_fewer_runs_than_the_protocol_asks() -> None:
    answer = {
        "timing": "perf_counter",
        "batches": [{"batch_size": 1, "latencies_s": [0.01] * 3}],
        "memory_kind": "resident",
        "fingerprint": {},
    }
    with pytest.raises(ValueError, match="fewer than the protocol's 7"):
        summarize(answer, PROTOCOL, decode_ms_per_case=None, decode_cases=0)


def test_protocol_on_a_tiny_model_gives_consistent_figures(tmp_path: Path) -> None:
    path = models.onnx_model(tmp_path / "m.onnx")
    settings = models.settings()
    outcome = run_model(
        path,
        models.manifest(),
        models.tensors(5),
        settings=settings,
        speed=PROTOCOL,
        decode=(2.0, 4),
    )
    assert outcome.status == "succeeded", outcome.reason
    speed = outcome.speed
    assert speed is not None
    assert [b.batch_size for b in speed.batches] == [1, 3]
    for figures in speed.batches:
        assert figures.iterations >= PROTOCOL.min_iterations
        assert (
            figures.latency_p50_ms
            <= figures.latency_p90_ms
            <= figures.latency_p95_ms
            <= figures.latency_p99_ms
        )
        assert figures.throughput_per_s > 0
        assert figures.end_to_end_ms_per_case == pytest.approx(
            2.0 + figures.latency_p50_ms / figures.batch_size
        )
    assert speed.timing == "perf_counter"
    assert speed.memory_kind == "resident" and (speed.peak_memory_bytes or 0) > 0
    assert speed.fingerprint.runtime == "onnxruntime"
    assert speed.fingerprint.execution_provider == "CPUExecutionProvider"
    assert speed.fingerprint.cpu_cores >= 1 and speed.fingerprint.gpu_name is None
    assert "onnxruntime" in speed.fingerprint.libraries


def test_decode_time_is_measured_on_a_sample_of_files(tmp_path: Path) -> None:
    root = write_phantom_dataset(tmp_path / "data", format="png", cases=6, size=32, seed=1)
    milliseconds, count = measure_decode(
        load_dataset(root), models.manifest(size=16).input, sample=4
    )
    assert count == 4
    assert milliseconds is not None and milliseconds > 0


@pytest.mark.slow
def test_protocol_on_a_monai_network_reports_torch(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    models.resnet_weights(path)
    manifest = models.manifest(size=32, architecture=models.TINY_RESNET)
    protocol = PROTOCOL.model_copy(update={"batch_sizes": [2]})
    outcome = run_model(
        path,
        manifest,
        models.tensors(3, size=32),
        settings=models.settings(batch_size=2),
        speed=protocol,
    )
    assert outcome.status == "succeeded", outcome.reason
    assert outcome.speed is not None
    (figures,) = outcome.speed.batches
    assert figures.iterations >= protocol.min_iterations
    assert outcome.speed.fingerprint.runtime == "torch"
    assert outcome.speed.timing == "perf_counter"
