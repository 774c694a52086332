"""Tests of the scorecard's run parts: inputs, runtime and speed, shown only when present."""

from __future__ import annotations

from dashboards.scorecard import scorecard_text
from tests.validators.results.test_inputs import inputs
from tests.validators.results.test_speed import runtime_info, speed_result
from tests.validators.test_policy import result


def test_a_result_without_a_run_shows_no_run_parts() -> None:
    text = scorecard_text(result(), width=200)
    assert "Speed on" not in text and "Runtime" not in text and "Inputs" not in text


def test_the_speed_table_shows_every_batch_size_and_the_percentiles() -> None:
    evaluated = result().model_copy(update={"speed": speed_result()})
    text = scorecard_text(evaluated, width=200)
    assert "Speed on" in text and "p95 ms" in text and "end to end ms/case" in text
    rows = [line.split() for line in text.splitlines() if line.strip()[:2] in ("1 ", "16")]
    assert [row[0] for row in rows] == ["1", "16"]
    # The caption wraps at the table's width.
    assert "peak resident memory 300.0 MiB" in " ".join(text.split())


def test_the_runtime_and_inputs_are_named() -> None:
    evaluated = result().model_copy(update={"runtime": runtime_info(), "inputs": inputs()})
    text = scorecard_text(evaluated, width=200)
    assert "Runtime  onnx on onnxruntime" in text
    assert "model onnx sha256:" + "a" * 64 in text
    assert "policy test v1" in text
