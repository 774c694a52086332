"""Tests of the static ONNX checks: external data, operator domains, input/output vs manifest."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from validators.manifest import ModelManifest, parse_manifest
from validators.runtime.formats import IntakeRefused
from validators.runtime.intake import inspect_artifact

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

OPSET = [helper.make_opsetid("", 17)]


def make_manifest(
    *, channels: int = 1, size: int = 32, labels: tuple[str, ...] = ("lesion",), **extra: Any
) -> ModelManifest:
    task = "binary" if len(labels) == 1 else "multilabel"
    raw: dict[str, Any] = {
        "name": "m",
        "version_label": "1",
        "task": task,
        "labels": list(labels),
        "input": {
            "channels": channels,
            "height": size,
            "width": size,
            "intensity": {"kind": "minmax", "min": 0, "max": 1},
        },
        "output": {"kind": "logits", "shape": ["N", len(labels)]},
    }
    raw.update(extra)
    return parse_manifest(raw)


def make_model(
    *,
    channels: int = 1,
    size: int | str = 32,
    outputs: int = 1,
    extra_nodes: list[Any] | None = None,
    opset: list[Any] | None = None,
    input_type: int = TensorProto.FLOAT,
    functions: list[Any] | None = None,
) -> Any:
    """Return a ModelProto: image -> GlobalAveragePool -> Flatten -> Gemm -> scores."""
    weight = helper.make_tensor(
        "W", TensorProto.FLOAT, [channels, outputs], [0.1] * (channels * outputs)
    )
    bias = helper.make_tensor("B", TensorProto.FLOAT, [outputs], [0.0] * outputs)
    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W", "B"], ["scores"]),
        *(extra_nodes or []),
    ]
    graph = helper.make_graph(
        nodes,
        "test_graph",
        [helper.make_tensor_value_info("image", input_type, ["N", channels, size, size])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", outputs])],
        initializer=[weight, bias],
    )
    return helper.make_model(
        graph,
        opset_imports=opset or OPSET,
        functions=functions or [],
        producer_name="assay-tests",
        producer_version="1",
    )


def save(model: Any, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def refusal(path: Path, manifest: ModelManifest | None = None) -> IntakeRefused:
    with pytest.raises(IntakeRefused) as caught:
        inspect_artifact(path, manifest or make_manifest())
    return caught.value


def test_valid_model_passes_with_a_full_report(tmp_path: Path) -> None:
    path = save(make_model(), tmp_path / "m.onnx")
    report = inspect_artifact(path, make_manifest())
    assert report.format == "onnx"
    assert report.size_bytes == path.stat().st_size
    assert report.onnx is not None
    assert report.onnx.producer_name == "assay-tests"
    assert report.onnx.initializer_count == 2
    assert report.safetensors is None
    assert report.operators == {"Flatten": 1, "Gemm": 1, "GlobalAveragePool": 1}
    assert report.opset == {"ai.onnx": 17}
    assert report.parameter_count == 2
    assert [(t.name, t.shape, t.dtype) for t in report.inputs] == [
        ("image", ["N", 1, 32, 32], "float32")
    ]
    assert [(t.name, t.shape, t.dtype) for t in report.outputs] == [("scores", ["N", 1], "float32")]
    assert {c.name for c in report.checks} >= {
        "no_external_data",
        "standard_operators",
        "onnx_checker",
        "input_matches_manifest",
        "output_matches_manifest",
    }
    assert all(c.passed for c in report.checks)


def test_contrib_operator_is_refused(tmp_path: Path) -> None:
    gelu = helper.make_node("Gelu", ["scores"], ["activated"], domain="com.microsoft")
    model = make_model(extra_nodes=[gelu], opset=[*OPSET, helper.make_opsetid("com.microsoft", 1)])
    found = refusal(save(model, tmp_path / "m.onnx"))
    assert found.code == "invalid_artifact"
    assert "'com.microsoft'" in found.detail
    assert any("com.microsoft::Gelu" in p["message"] for p in found.problems)


def test_ai_onnx_ml_domain_is_refused(tmp_path: Path) -> None:
    model = make_model(opset=[*OPSET, helper.make_opsetid("ai.onnx.ml", 3)])
    found = refusal(save(model, tmp_path / "m.onnx"))
    assert found.code == "invalid_artifact"
    assert found.problems[0]["path"] == "opset_import.1"


def test_custom_node_inside_if_subgraph_is_refused(tmp_path: Path) -> None:
    def branch(name: str, domain: str) -> Any:
        return helper.make_graph(
            [helper.make_node("Identity", ["scores"], [f"{name}_out"], domain=domain)],
            name,
            [],
            [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, ["N", 1])],
        )

    condition = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    if_node = helper.make_node(
        "If",
        ["cond_value"],
        ["chosen"],
        then_branch=branch("then", "evil.custom"),
        else_branch=branch("else", ""),
    )
    constant = helper.make_node("Constant", [], ["cond_value"], value=condition)
    model = make_model(extra_nodes=[constant, if_node])
    found = refusal(save(model, tmp_path / "m.onnx"))
    assert found.code == "invalid_artifact"
    assert any(
        "then_branch" in p["path"] and "evil.custom::Identity" in p["message"]
        for p in found.problems
    )


def test_model_local_function_in_custom_domain_is_refused(tmp_path: Path) -> None:
    function = helper.make_function(
        "vendor.ops",
        "Twice",
        ["x"],
        ["y"],
        [helper.make_node("Add", ["x", "x"], ["y"])],
        OPSET,
    )
    call = helper.make_node("Twice", ["scores"], ["doubled"], domain="vendor.ops")
    model = make_model(
        extra_nodes=[call],
        opset=[*OPSET, helper.make_opsetid("vendor.ops", 1)],
        functions=[function],
    )
    found = refusal(save(model, tmp_path / "m.onnx"))
    assert found.code == "invalid_artifact"
    assert "'vendor.ops'" in found.detail


def with_external_weight(location: str) -> Any:
    model = make_model()
    weight = model.graph.initializer[0]
    weight.ClearField("float_data")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "4")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    return model


@pytest.mark.timeout(60)
@pytest.mark.parametrize("relative", [True, False])
def test_external_data_is_refused_without_opening_it(tmp_path: Path, relative: bool) -> None:
    # The referenced file is a FIFO: opening it for reading would block, so the test would hang
    # (and time out) if intake or the checker opened it.
    outside = tmp_path / "outside"
    outside.mkdir()
    fifo = outside / "secret"
    os.mkfifo(fifo)
    model_dir = tmp_path / "models" / "v1"
    model_dir.mkdir(parents=True)
    location = "../../outside/secret" if relative else str(fifo)
    found = refusal(save(with_external_weight(location), model_dir / "m.onnx"))
    assert found.code == "invalid_artifact"
    assert "external data" in found.detail
    assert found.problems[0]["path"].endswith(".W")
    assert repr(location) in found.problems[0]["message"]


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd", "weights.bin"])
def test_any_external_data_location_is_refused(tmp_path: Path, location: str) -> None:
    found = refusal(save(with_external_weight(location), tmp_path / "m.onnx"))
    assert found.code == "invalid_artifact"


def test_external_tensor_in_constant_attribute_is_refused(tmp_path: Path) -> None:
    tensor = helper.make_tensor("c", TensorProto.FLOAT, [1], [1.0])
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    constant = helper.make_node("Constant", [], ["c_out"], value=tensor)
    found = refusal(save(make_model(extra_nodes=[constant]), tmp_path / "m.onnx"))
    assert found.code == "invalid_artifact"
    assert "external data" in found.detail


def test_input_channel_mismatch_names_the_manifest_path(tmp_path: Path) -> None:
    path = save(make_model(channels=3), tmp_path / "m.onnx")
    found = refusal(path, make_manifest(channels=1))
    assert found.code == "manifest_mismatch"
    assert [p["path"] for p in found.problems] == ["input.channels"]


def test_input_size_mismatch_lists_height_and_width(tmp_path: Path) -> None:
    path = save(make_model(size=32), tmp_path / "m.onnx")
    found = refusal(path, make_manifest(size=64))
    assert [p["path"] for p in found.problems] == ["input.height", "input.width"]


def test_symbolic_spatial_dims_are_accepted(tmp_path: Path) -> None:
    path = save(make_model(size="S"), tmp_path / "m.onnx")
    report = inspect_artifact(path, make_manifest(size=64))
    assert report.inputs[0].shape == ["N", 1, "S", "S"]


def test_non_float_input_is_refused(tmp_path: Path) -> None:
    model = make_model(input_type=TensorProto.UINT8)
    model.graph.node.insert(0, helper.make_node("Cast", ["image"], ["image_f"], to=1))
    model.graph.node[1].input[0] = "image_f"
    found = refusal(save(model, tmp_path / "m.onnx"))
    assert found.code == "manifest_mismatch"
    assert [p["path"] for p in found.problems] == ["input.dtype"]


def test_output_width_must_match_labels(tmp_path: Path) -> None:
    path = save(make_model(outputs=2), tmp_path / "m.onnx")
    found = refusal(path, make_manifest(labels=("a", "b", "c")))
    assert found.code == "manifest_mismatch"
    assert [p["path"] for p in found.problems] == ["output.shape.1"]


def test_output_rank_must_match_manifest(tmp_path: Path) -> None:
    path = save(make_model(), tmp_path / "m.onnx")
    manifest = make_manifest(output={"kind": "logits", "shape": ["N"]})
    found = refusal(path, manifest)
    assert [p["path"] for p in found.problems] == ["output.shape"]


def test_multilabel_model_passes(tmp_path: Path) -> None:
    path = save(make_model(outputs=3, channels=3), tmp_path / "m.onnx")
    report = inspect_artifact(path, make_manifest(channels=3, labels=("a", "b", "c")))
    assert report.outputs[0].shape == ["N", 3]


def test_two_outputs_are_refused(tmp_path: Path) -> None:
    model = make_model()
    model.graph.node.append(helper.make_node("Sigmoid", ["scores"], ["probs"]))
    model.graph.output.append(helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 1]))
    found = refusal(save(model, tmp_path / "m.onnx"))
    assert found.code == "manifest_mismatch"
    assert [p["path"] for p in found.problems] == ["output"]


def test_checker_failure_is_invalid_artifact(tmp_path: Path) -> None:
    model = make_model()
    model.graph.node.append(helper.make_node("NoSuchOperator", ["scores"], ["other"]))
    found = refusal(save(model, tmp_path / "m.onnx"))
    assert found.code == "invalid_artifact"
    assert "onnx.checker" in found.detail


def test_an_architecture_block_is_refused_for_onnx(tmp_path: Path) -> None:
    # Issue 8, item 10: it used to be stored unchecked, arguments and all.
    path = save(make_model(), tmp_path / "m.onnx")
    manifest = make_manifest(
        architecture={"name": "DenseNet121", "args": {"weights": "https://example.org/w.pt"}}
    )
    found = refusal(path, manifest)
    assert found.code == "manifest_mismatch"
    assert [p["path"] for p in found.problems] == ["architecture"]
    assert "safetensors weights only" in found.detail


@pytest.mark.parametrize("where", ["producer_name", "graph_name", "input_name"])
def test_nul_in_names_copied_into_the_report_is_invalid_artifact(
    tmp_path: Path, where: str
) -> None:
    model = make_model()
    if where == "producer_name":
        model.producer_name = "assay\x00tests"
    elif where == "graph_name":
        model.graph.name = "graph\x00"
    else:
        model.graph.input[0].name = "ima\x00ge"
        model.graph.node[0].input[0] = "ima\x00ge"
    onnx.checker.check_model(model, full_check=True)  # the checker lets NUL through
    found = refusal(save(model, tmp_path / "m.onnx"))
    assert found.code == "invalid_artifact"
    assert "NUL" in found.problems[0]["message"]
