"""Tests of the sandboxed runner: scores as the model computes them, and every fault's reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.validators.runtime import models
from validators.runtime import runner
from validators.runtime.runner import (
    RunFailure,
    at_operating_point,
    choose_device,
    run_model,
    to_probabilities,
)

QUICK = models.settings()


def _direct_onnx(path: Path, tensors: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"image": tensors})[0])


def test_onnx_scores_match_running_the_model_directly(tmp_path: Path) -> None:
    path = models.onnx_model(tmp_path / "m.onnx")
    images = models.tensors(10)
    seen: list[tuple[int, int]] = []
    one_batch_per_request = models.settings(batches_per_request=1)
    outcome = run_model(
        path,
        models.manifest(),
        images,
        settings=one_batch_per_request,
        progress=lambda *p: seen.append(p),
    )
    assert outcome.status == "succeeded", outcome.reason
    assert seen == [(4, 10), (8, 10), (10, 10)]
    assert outcome.scores is not None
    np.testing.assert_array_equal(outcome.scores, _direct_onnx(path, images))


def test_several_batches_per_request_give_the_same_scores(tmp_path: Path) -> None:
    # Batches of 4, two per request: the child answers 8 rows at once, then the last 2.
    path = models.onnx_model(tmp_path / "m.onnx")
    images = models.tensors(10)
    seen: list[tuple[int, int]] = []
    outcome = run_model(
        path,
        models.manifest(),
        images,
        settings=models.settings(batches_per_request=2),
        progress=lambda *p: seen.append(p),
    )
    assert outcome.status == "succeeded", outcome.reason
    assert seen == [(8, 10), (10, 10)]
    assert outcome.scores is not None
    np.testing.assert_array_equal(outcome.scores, _direct_onnx(path, images))


def test_the_child_is_sent_no_path_only_rows_and_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    sent: list[dict[str, object]] = []
    from validators.runtime.frames import write_frame as original

    def recording(stream: object, head: dict[str, object], payload: bytes = b"") -> None:
        sent.append(head)
        original(stream, head, payload)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "write_frame", recording)
    path = models.onnx_model(tmp_path / "m.onnx")
    outcome = run_model(path, models.manifest(), models.tensors(6), settings=QUICK)
    assert outcome.status == "succeeded"
    text = json.dumps(sent)
    assert str(tmp_path) not in text and "m.onnx" not in text
    assert {str(head["op"]) for head in sent} == {"load", "infer", "end"}
    assert set(sent[0]) <= {
        "op",
        "format",
        "device",
        "intra_op_threads",
        "inter_op_threads",
        "device_memory_fraction",
        "device_memory_bytes",
        "tensors",
    }


def test_outcome_carries_probabilities_and_decisions_at_the_manifest_threshold(
    tmp_path: Path,
) -> None:
    path = models.onnx_model(tmp_path / "m.onnx")
    manifest = models.manifest(thresholds={"lesion": 0.0})
    outcome = run_model(path, manifest, models.tensors(9), settings=QUICK)
    assert outcome.scores is not None and outcome.probabilities is not None
    expected = 1 / (1 + np.exp(-outcome.scores.astype(np.float64)))
    np.testing.assert_allclose(outcome.probabilities, expected)
    assert outcome.positive is not None
    np.testing.assert_array_equal(outcome.positive, outcome.scores >= 0.0)


def test_outcome_says_where_it_ran(tmp_path: Path) -> None:
    path = models.onnx_model(tmp_path / "m.onnx")
    outcome = run_model(path, models.manifest(), models.tensors(3), settings=QUICK)
    assert outcome.runtime is not None
    assert outcome.runtime.runtime == "onnxruntime"
    assert outcome.runtime.execution_provider == "CPUExecutionProvider"
    assert outcome.runtime.intra_op_threads == 1
    assert outcome.runtime.device == "cpu"
    assert outcome.runtime.isolation is not None
    assert "address_space_bytes" in outcome.runtime.isolation.rlimits


def test_probabilities_pass_through_and_logits_get_a_sigmoid() -> None:
    scores = np.array([[-2.0], [0.0], [3.0]], dtype=np.float32)
    logits = to_probabilities(scores, models.manifest(kind="logits"))
    np.testing.assert_allclose(logits.ravel(), 1 / (1 + np.exp([2.0, 0.0, -3.0])))
    probabilities = np.array([[0.2], [0.7]], dtype=np.float32)
    same = to_probabilities(probabilities, models.manifest(kind="probabilities"))
    np.testing.assert_allclose(same, probabilities)


def test_decisions_compare_on_the_declared_scale() -> None:
    manifest = models.manifest(kind="probabilities", thresholds={"lesion": 0.7})
    scores = np.array([[0.69], [0.7], [0.9]], dtype=np.float32)
    np.testing.assert_array_equal(at_operating_point(scores, manifest).ravel(), [False, True, True])


@pytest.mark.parametrize(
    ("variant", "words"),
    [
        ("nan", "NaN scores"),
        ("two_outputs", "shape [4, 2]"),
        ("lying", "shape [1, 4]"),
    ],
)
def test_bad_outputs_fail_with_the_reason(tmp_path: Path, variant: str, words: str) -> None:
    path = models.onnx_model(tmp_path / f"{variant}.onnx", variant=variant)
    outcome = run_model(path, models.manifest(), models.tensors(8), settings=QUICK)
    assert outcome.status == "failed"
    assert outcome.reason is not None and words in outcome.reason
    assert outcome.scores is None


def test_a_model_that_hangs_is_stopped_and_failed(tmp_path: Path) -> None:
    path = models.onnx_model(tmp_path / "hang.onnx", variant="hang")
    settings = models.settings(batch_timeout_s=1.0)
    outcome = run_model(path, models.manifest(), models.tensors(8), settings=settings)
    assert outcome.status == "failed"
    assert outcome.reason is not None and "did not answer" in outcome.reason


def test_a_model_that_runs_out_of_memory_fails(tmp_path: Path) -> None:
    path = models.onnx_model(tmp_path / "huge.onnx", variant="huge")
    settings = models.settings(memory_limit_bytes=2 * 1024**3)
    outcome = run_model(path, models.manifest(), models.tensors(4), settings=settings)
    assert outcome.status == "failed"
    assert outcome.reason is not None and "out of memory" in outcome.reason


def test_a_crashing_child_ends_the_run_with_the_signal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "_CHILD_MODULE", "tests.validators.runtime.crashing_child")
    path = models.onnx_model(tmp_path / "m.onnx")
    outcome = run_model(path, models.manifest(), models.tensors(4), settings=QUICK)
    assert outcome.status == "failed"
    assert outcome.reason is not None and "SIGSEGV" in outcome.reason


def test_a_child_that_cannot_start_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "_CHILD_MODULE", "validators.runtime.no_such_module")
    path = models.onnx_model(tmp_path / "m.onnx")
    outcome = run_model(path, models.manifest(), models.tensors(4), settings=QUICK)
    assert outcome.status == "error"
    assert outcome.reason is not None and "runner's process ended while starting" in outcome.reason


def test_a_sandbox_that_cannot_be_set_up_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from validators.runtime.sandbox import SandboxUnavailable

    def refuse(*args: object, **kwargs: object) -> None:
        raise SandboxUnavailable("network, mount and PID namespaces", "refused in this test")

    monkeypatch.setattr(runner, "start", refuse)
    path = models.onnx_model(tmp_path / "m.onnx")
    outcome = run_model(path, models.manifest(), models.tensors(4), settings=QUICK)
    assert outcome.status == "error"
    assert outcome.reason is not None and "refused in this test" in outcome.reason


def test_a_file_intake_would_refuse_fails_without_running(tmp_path: Path) -> None:
    import pickle

    path = tmp_path / "model.onnx"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    outcome = run_model(path, models.manifest(), models.tensors(2), settings=QUICK)
    assert outcome.status == "failed"
    assert outcome.reason is not None and "a Python pickle" in outcome.reason
    assert outcome.runtime is None


def test_tensors_of_another_spec_are_an_error(tmp_path: Path) -> None:
    path = models.onnx_model(tmp_path / "m.onnx")
    outcome = run_model(path, models.manifest(), models.tensors(4, size=16), settings=QUICK)
    assert outcome.status == "error"
    assert outcome.reason is not None and "[N>0, 1, 8, 8]" in outcome.reason


def test_cpu_is_chosen_without_a_gpu_and_cuda_with_one() -> None:
    assert choose_device("auto", gpu_visible=False, runtime_has_cuda=lambda: True) == "cpu"
    assert choose_device("auto", gpu_visible=True, runtime_has_cuda=lambda: False) == "cpu"
    assert choose_device("auto", gpu_visible=True, runtime_has_cuda=lambda: True) == "cuda"
    assert choose_device("cpu", gpu_visible=True, runtime_has_cuda=lambda: True) == "cpu"


def test_cuda_without_a_device_memory_cap_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from validators.runtime import speed

    monkeypatch.setattr(runner, "cuda_visible", lambda: True)
    monkeypatch.setattr(runner, "_runtime_has_cuda", lambda model_format: True)
    monkeypatch.setattr(speed, "gpu_description", lambda: None)
    path = models.onnx_model(tmp_path / "m.onnx")
    outcome = run_model(path, models.manifest(), models.tensors(2), settings=QUICK)
    assert outcome.status == "error"
    assert outcome.reason is not None and "device-memory cap cannot be set" in outcome.reason


def test_cuda_requested_without_cuda_is_an_infrastructure_error() -> None:
    with pytest.raises(RunFailure) as raised:
        choose_device("cuda", gpu_visible=False, runtime_has_cuda=lambda: True)
    assert raised.value.status == "error"


@pytest.mark.slow
def test_safetensors_scores_match_the_monai_network(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "w.safetensors"
    network = models.resnet_weights(path)
    images = models.tensors(6, size=32)
    manifest = models.manifest(size=32, architecture=models.TINY_RESNET)
    outcome = run_model(path, manifest, images, settings=QUICK)
    assert outcome.status == "succeeded", outcome.reason
    with torch.inference_mode():
        expected = network(torch.from_numpy(images)).numpy()
    assert outcome.scores is not None
    np.testing.assert_allclose(outcome.scores, expected, rtol=1e-5, atol=1e-6)
    assert outcome.runtime is not None and outcome.runtime.architecture == "resnet18"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"drop": "fc.bias"}, "1 missing: fc.bias"),
        ({"add": "extra.weight"}, "1 unexpected: extra.weight"),
    ],
)
def test_safetensors_with_a_missing_or_extra_key_fail(
    tmp_path: Path, change: dict[str, str], words: str
) -> None:
    path = tmp_path / "w.safetensors"
    models.resnet_weights(path, **change)
    manifest = models.manifest(size=32, architecture=models.TINY_RESNET)
    outcome = run_model(path, manifest, models.tensors(2, size=32), settings=QUICK)
    assert outcome.status == "failed"
    assert outcome.reason is not None and words in outcome.reason
