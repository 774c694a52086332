"""Tests of safetensors intake: strict header parsing and weights vs allowlisted architecture."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from validators.manifest import ModelManifest, parse_manifest
from validators.runtime.architectures import ARCHITECTURES, resolve_architecture
from validators.runtime.formats import IntakeRefused
from validators.runtime.intake import inspect_artifact
from validators.runtime.safetensors_check import read_safetensors_header

torch = pytest.importorskip("torch")
nets = pytest.importorskip("monai.networks.nets")
safetensors_torch = pytest.importorskip("safetensors.torch")

TINY_DENSENET = {"init_features": 8, "growth_rate": 4}
TINY_RESNET = {"widen_factor": 0.25}


def make_manifest(
    *,
    architecture: dict[str, Any] | None,
    labels: tuple[str, ...] = ("effusion", "nodule"),
    channels: int = 1,
    size: int = 64,
    output: dict[str, Any] | None = None,
) -> ModelManifest:
    raw: dict[str, Any] = {
        "name": "m",
        "version_label": "1",
        "task": "binary" if len(labels) == 1 else "multilabel",
        "labels": list(labels),
        "input": {
            "channels": channels,
            "height": size,
            "width": size,
            "intensity": {"kind": "minmax", "min": 0, "max": 255},
        },
        "output": output or {"kind": "logits", "shape": ["N", len(labels)]},
    }
    if architecture is not None:
        raw["architecture"] = architecture
    return parse_manifest(raw)


def densenet_manifest(**args: Any) -> ModelManifest:
    return make_manifest(architecture={"name": "DenseNet121", "args": {**TINY_DENSENET, **args}})


@pytest.fixture(scope="module")
def densenet_state() -> dict[str, Any]:
    torch.manual_seed(0)
    network = nets.DenseNet121(spatial_dims=2, in_channels=1, out_channels=2, **TINY_DENSENET)
    return dict(network.state_dict())


@pytest.fixture(scope="module")
def densenet_file(tmp_path_factory: pytest.TempPathFactory, densenet_state: dict[str, Any]) -> Path:
    path = tmp_path_factory.mktemp("densenet") / "weights.safetensors"
    safetensors_torch.save_file(densenet_state, str(path), metadata={"vendor": "tests"})
    return path


def save_state(state: dict[str, Any], path: Path) -> Path:
    safetensors_torch.save_file(state, str(path))
    return path


def refusal(path: Path, manifest: ModelManifest) -> IntakeRefused:
    with pytest.raises(IntakeRefused) as caught:
        inspect_artifact(path, manifest)
    return caught.value


def test_densenet_weights_pass_with_a_report(densenet_file: Path) -> None:
    report = inspect_artifact(densenet_file, densenet_manifest())
    assert report.format == "safetensors"
    details = report.safetensors
    assert details is not None
    assert details.architecture == "DenseNet121"
    assert details.architecture_args == {
        **TINY_DENSENET,
        "spatial_dims": 2,
        "pretrained": False,
        "progress": False,
        "in_channels": 1,
        "out_channels": 2,
    }
    assert details.metadata == {"vendor": "tests"}
    assert set(details.dtypes) == {"F32", "I64"}
    assert details.tensor_count == sum(details.dtypes.values())
    assert report.operators == {}
    assert report.inputs[0].shape == ["N", 1, 64, 64]
    assert report.outputs[0].shape == ["N", 2]
    network = nets.DenseNet121(spatial_dims=2, in_channels=1, out_channels=2, **TINY_DENSENET)
    assert report.parameter_count == sum(p.numel() for p in network.parameters())
    assert all(check.passed for check in report.checks)


def test_resnet18_weights_pass(tmp_path: Path) -> None:
    network = nets.resnet18(spatial_dims=2, n_input_channels=3, num_classes=1, **TINY_RESNET)
    path = save_state(network.state_dict(), tmp_path / "r.safetensors")
    manifest = make_manifest(
        architecture={"name": "resnet18", "args": TINY_RESNET}, labels=("lesion",), channels=3
    )
    report = inspect_artifact(path, manifest)
    assert report.safetensors is not None
    assert report.safetensors.architecture_args["n_input_channels"] == 3
    assert report.safetensors.architecture_args["num_classes"] == 1


def test_efficientnet_b0_weights_pass(tmp_path: Path) -> None:
    network = nets.EfficientNetBN(
        "efficientnet-b0", pretrained=False, spatial_dims=2, in_channels=1, num_classes=2
    )
    path = save_state(network.state_dict(), tmp_path / "e.safetensors")
    manifest = make_manifest(
        architecture={"name": "EfficientNetBN", "args": {"model_name": "efficientnet-b0"}}
    )
    assert inspect_artifact(path, manifest).safetensors is not None


def test_half_precision_weights_pass(tmp_path: Path, densenet_state: dict[str, Any]) -> None:
    state = {k: v.half() if v.is_floating_point() else v for k, v in densenet_state.items()}
    report = inspect_artifact(save_state(state, tmp_path / "h.safetensors"), densenet_manifest())
    assert report.safetensors is not None
    assert "F16" in report.safetensors.dtypes


def test_missing_tensor_is_listed(tmp_path: Path, densenet_state: dict[str, Any]) -> None:
    state = dict(densenet_state)
    del state["class_layers.out.weight"]
    found = refusal(save_state(state, tmp_path / "w.safetensors"), densenet_manifest())
    assert found.code == "manifest_mismatch"
    shape = list(densenet_state["class_layers.out.weight"].shape)
    assert found.problems == [
        {"path": "tensors.class_layers.out.weight", "message": f"missing; expected shape {shape}"}
    ]


def test_unexpected_and_wrong_shape_tensors_are_listed(
    tmp_path: Path, densenet_state: dict[str, Any]
) -> None:
    state = dict(densenet_state)
    state["class_layers.out.weight"] = torch.zeros(3, 1)
    state["backdoor"] = torch.zeros(1)
    found = refusal(save_state(state, tmp_path / "w.safetensors"), densenet_manifest())
    assert found.code == "manifest_mismatch"
    assert {p["path"] for p in found.problems} == {
        "tensors.class_layers.out.weight",
        "tensors.backdoor",
    }


def test_integer_tensor_for_a_float_parameter_is_refused(
    tmp_path: Path, densenet_state: dict[str, Any]
) -> None:
    state = dict(densenet_state)
    state["class_layers.out.bias"] = torch.zeros(2, dtype=torch.int32)
    found = refusal(save_state(state, tmp_path / "w.safetensors"), densenet_manifest())
    assert "floating-point" in found.problems[0]["message"]


def test_weights_for_other_label_count_are_refused(densenet_file: Path) -> None:
    manifest = make_manifest(
        architecture={"name": "DenseNet121", "args": TINY_DENSENET}, labels=("a", "b", "c")
    )
    found = refusal(densenet_file, manifest)
    assert found.code == "manifest_mismatch"
    assert {p["path"] for p in found.problems} == {
        "tensors.class_layers.out.weight",
        "tensors.class_layers.out.bias",
    }


def test_architecture_is_required(densenet_file: Path) -> None:
    found = refusal(densenet_file, make_manifest(architecture=None))
    assert found.code == "manifest_mismatch"
    assert found.problems[0]["path"] == "architecture"


def test_unknown_architecture_is_refused_with_the_allowlist(densenet_file: Path) -> None:
    found = refusal(densenet_file, make_manifest(architecture={"name": "VisionTransformer"}))
    assert found.code == "manifest_mismatch"
    assert found.problems[0]["path"] == "architecture.name"
    for name in ("DenseNet121", "resnet18", "EfficientNetBN"):
        assert name in found.detail


@pytest.mark.parametrize(
    ("args", "path"),
    [
        ({"pretrained": True}, "architecture.args.pretrained"),
        ({"spatial_dims": 3}, "architecture.args.spatial_dims"),
        ({"in_channels": 3}, "architecture.args.in_channels"),
        ({"out_channels": 5}, "architecture.args.out_channels"),
        ({"act": "prelu"}, "architecture.args.act"),
        ({"init_features": 100_000}, "architecture.args.init_features"),
        ({"growth_rate": 2.5}, "architecture.args.growth_rate"),
        ({"dropout_prob": "high"}, "architecture.args.dropout_prob"),
    ],
)
def test_forced_derived_and_bounded_arguments(
    densenet_file: Path, args: dict[str, Any], path: str
) -> None:
    found = refusal(densenet_file, densenet_manifest(**args))
    assert found.code == "manifest_mismatch"
    assert [p["path"] for p in found.problems] == [path]


def test_forced_arguments_given_correctly_are_accepted(densenet_file: Path) -> None:
    manifest = densenet_manifest(spatial_dims=2, pretrained=False, in_channels=1, out_channels=2)
    assert inspect_artifact(densenet_file, manifest).safetensors is not None


def test_architecture_outputs_logits_with_a_label_axis(densenet_file: Path) -> None:
    manifest = make_manifest(
        architecture={"name": "DenseNet121", "args": TINY_DENSENET},
        labels=("lesion",),
        output={"kind": "probabilities", "shape": ["N"]},
    )
    found = refusal(densenet_file, manifest)
    assert {p["path"] for p in found.problems} == {"output.kind", "output.shape"}


def test_input_too_small_for_the_network_is_refused(densenet_file: Path) -> None:
    manifest = make_manifest(architecture={"name": "DenseNet121", "args": TINY_DENSENET}, size=8)
    found = refusal(densenet_file, manifest)
    assert found.code == "manifest_mismatch"
    assert found.problems[0]["path"] == "input.height"


def test_every_allowlisted_architecture_resolves() -> None:
    for name in ARCHITECTURES:
        manifest = make_manifest(architecture={"name": name})
        architecture, args = resolve_architecture(manifest)
        assert args["spatial_dims"] == 2
        assert args["pretrained"] is False
        assert args[architecture.in_channels_arg] == 1
        assert args[architecture.out_channels_arg] == 2


# --- malformed headers -------------------------------------------------------------------------


def raw_file(path: Path, header: bytes | dict[str, Any], data: bytes = b"", **kw: Any) -> Path:
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    length = kw.get("length", len(body))
    path.write_bytes(struct.pack("<Q", length) + body + data)
    return path


def entry(dtype: str, shape: list[int], begin: int, end: int) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def malformed(path: Path) -> IntakeRefused:
    with pytest.raises(IntakeRefused) as caught:
        read_safetensors_header(path)
    assert caught.value.code == "invalid_artifact"
    return caught.value


def test_well_formed_handmade_header_parses(tmp_path: Path) -> None:
    header = {"a": entry("F32", [2], 0, 8), "b": entry("U8", [0], 8, 8), "__metadata__": {}}
    parsed = read_safetensors_header(raw_file(tmp_path / "w", header, b"\x00" * 8))
    assert set(parsed.tensors) == {"a", "b"}
    assert parsed.data_length == 8


def test_header_length_beyond_file_is_refused(tmp_path: Path) -> None:
    path = raw_file(tmp_path / "w", {"a": entry("U8", [1], 0, 1)}, b"\x00", length=10_000)
    assert "past the end" in malformed(path).detail


def test_header_length_over_the_limit_is_refused(tmp_path: Path) -> None:
    path = raw_file(tmp_path / "w", b"{}", length=2**40)
    assert "exceeds the limit" in malformed(path).detail


def test_header_that_is_not_json_is_refused(tmp_path: Path) -> None:
    assert "not valid UTF-8 JSON" in malformed(raw_file(tmp_path / "w", b"{not json}")).detail


def test_header_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    assert "JSON object" in malformed(raw_file(tmp_path / "w", b"[1, 2, 3]")).detail


def test_overlapping_offsets_are_refused(tmp_path: Path) -> None:
    header = {"a": entry("U8", [4], 0, 4), "b": entry("U8", [4], 2, 6)}
    found = malformed(raw_file(tmp_path / "w", header, b"\x00" * 6))
    assert any("overlap" in p["message"] for p in found.problems)


def test_gap_between_tensors_is_refused(tmp_path: Path) -> None:
    header = {"a": entry("U8", [4], 0, 4), "b": entry("U8", [4], 6, 10)}
    assert "gap" in malformed(raw_file(tmp_path / "w", header, b"\x00" * 10)).detail


def test_trailing_uncovered_bytes_are_refused(tmp_path: Path) -> None:
    header = {"a": entry("U8", [4], 0, 4)}
    assert "no tensor covers" in malformed(raw_file(tmp_path / "w", header, b"\x00" * 9)).detail


def test_offsets_past_the_data_are_refused(tmp_path: Path) -> None:
    header = {"a": entry("U8", [8], 0, 8)}
    assert "past the" in malformed(raw_file(tmp_path / "w", header, b"\x00" * 4)).detail


def test_wrong_byte_length_is_refused(tmp_path: Path) -> None:
    header = {"a": entry("F32", [2], 0, 4)}
    found = malformed(raw_file(tmp_path / "w", header, b"\x00" * 4))
    assert found.problems[0] == {
        "path": "tensors.a",
        "message": "data_offsets span 4 bytes; F32 [2] needs 8",
    }


@pytest.mark.parametrize(
    "bad_entry",
    [
        entry("F128", [1], 0, 16),
        entry("F32", [-1], 0, 4),
        entry("F32", [True], 0, 4),
        {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "code": "x"},
        {"dtype": "F32", "shape": [1]},
        entry("F32", [1], 4, 0),
    ],
)
def test_bad_entries_are_refused(tmp_path: Path, bad_entry: dict[str, Any]) -> None:
    found = malformed(raw_file(tmp_path / "w", {"a": bad_entry}, b"\x00" * 16))
    assert found.problems[0]["path"] == "tensors.a"


def test_bad_metadata_is_refused(tmp_path: Path) -> None:
    header = {"__metadata__": {"k": 1}, "a": entry("U8", [1], 0, 1)}
    assert "__metadata__" in malformed(raw_file(tmp_path / "w", header, b"\x00")).detail


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    body = (
        b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
        b'"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
    )
    assert "twice" in malformed(raw_file(tmp_path / "w", body, b"\x00")).detail


def test_malformed_header_is_refused_by_inspect_artifact(tmp_path: Path) -> None:
    header = {"a": entry("U8", [4], 0, 4), "b": entry("U8", [4], 2, 6)}
    path = raw_file(tmp_path / "model.safetensors", header, b"\x00" * 6)
    found = refusal(path, densenet_manifest())
    assert found.code == "invalid_artifact"


@pytest.mark.parametrize(
    "dtype", [["F32"], {"F32": 1}, None, 32], ids=["list", "dict", "null", "number"]
)
def test_dtype_that_is_not_a_string_is_invalid_artifact(tmp_path: Path, dtype: Any) -> None:
    header = {"a": {"dtype": dtype, "shape": [1], "data_offsets": [0, 4]}}
    found = malformed(raw_file(tmp_path / "w", header, b"\x00" * 4))
    assert found.problems[0]["path"] == "tensors.a"
    assert "dtype" in found.problems[0]["message"]


def test_very_deep_header_is_invalid_artifact(tmp_path: Path) -> None:
    deep = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert "nested" in malformed(raw_file(tmp_path / "w", deep)).detail


@pytest.mark.parametrize(
    "header",
    [
        {"a\x00": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}},
        {"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "__metadata__": {"k": "\x00"}},
        {
            "a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
            "__metadata__": {"\ud800": "v"},
        },
    ],
    ids=["tensor-name", "metadata-value", "metadata-key"],
)
def test_header_text_that_cannot_be_stored_is_invalid_artifact(
    tmp_path: Path, header: dict[str, Any]
) -> None:
    found = malformed(raw_file(tmp_path / "w", header, b"\x00"))
    assert any("NUL" in p["message"] or "surrogate" in p["message"] for p in found.problems)
