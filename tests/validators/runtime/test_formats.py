"""Tests of format detection: accepted formats from their bytes, everything else refused."""

from __future__ import annotations

import io
import os
import pathlib
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest

from validators.manifest import parse_manifest
from validators.runtime.formats import ACCEPTED_FORMATS, IntakeRefused, detect_format
from validators.runtime.intake import inspect_artifact, inspect_in_subprocess

PICKLE_NAMES = ["model.pt", "model.onnx", "model.safetensors"]


class TouchOnUnpickle:
    """An object that creates a marker file when unpickled: proof that nothing unpickles."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        return (pathlib.Path.touch, (self.marker,))


def binary_manifest() -> Any:
    return parse_manifest(
        {
            "name": "m",
            "version_label": "1",
            "task": "binary",
            "labels": ["lesion"],
            "input": {
                "channels": 1,
                "height": 64,
                "width": 64,
                "intensity": {"kind": "minmax", "min": 0, "max": 255},
            },
            "output": {"kind": "logits", "shape": ["N", 1]},
        }
    )


def refusal_of(path: Path) -> IntakeRefused:
    with pytest.raises(IntakeRefused) as caught:
        detect_format(path)
    return caught.value


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", PICKLE_NAMES)
@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
def test_pickle_is_refused_under_any_name_and_never_unpickled(
    tmp_path: Path, name: str, protocol: int
) -> None:
    marker = tmp_path / "unpickled.marker"
    payload = pickle.dumps(TouchOnUnpickle(marker), protocol=protocol)
    path = write(tmp_path / name, payload)
    refusal = refusal_of(path)
    assert refusal.code == "unsupported_format"
    assert "pickle" in refusal.detail
    with pytest.raises(IntakeRefused):
        inspect_artifact(path, binary_manifest())
    assert not marker.exists()


def test_pickle_payload_really_would_create_the_marker(tmp_path: Path) -> None:
    marker = tmp_path / "control.marker"
    pickle.loads(pickle.dumps(TouchOnUnpickle(marker)))
    assert marker.exists()


def test_pickle_is_refused_in_the_subprocess_too(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled.marker"
    path = write(tmp_path / "model.onnx", pickle.dumps(TouchOnUnpickle(marker), protocol=4))
    with pytest.raises(IntakeRefused) as caught:
        inspect_in_subprocess(path, binary_manifest(), timeout_s=60)
    assert caught.value.code == "unsupported_format"
    assert not marker.exists()


def test_refusal_names_the_accepted_formats(tmp_path: Path) -> None:
    refusal = refusal_of(write(tmp_path / "x.bin", os.urandom(4096)))
    assert refusal.code == "unsupported_format"
    assert ACCEPTED_FORMATS in refusal.detail
    assert refusal.problems == []


@pytest.fixture(scope="module")
def torch_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch = pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("torch_files")
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten()).eval()
    files = {
        "state_dict": out / "weights.onnx",
        "torchscript": out / "scripted.safetensors",
        "pt2": out / "exported.onnx",
    }
    torch.save(model.state_dict(), files["state_dict"])
    torch.jit.script(model).save(str(files["torchscript"]))
    program = torch.export.export(model, (torch.randn(1, 1, 8, 8),))
    torch.export.save(program, files["pt2"])
    return files


@pytest.mark.parametrize(
    ("kind", "named"),
    [
        ("state_dict", "PyTorch zip checkpoint"),
        ("torchscript", "TorchScript archive"),
        ("pt2", ".pt2 archive"),
    ],
)
def test_torch_archives_are_refused_and_named(
    torch_files: dict[str, Path], kind: str, named: str
) -> None:
    refusal = refusal_of(torch_files[kind])
    assert refusal.code == "unsupported_format"
    assert named in refusal.detail


def test_zip_member_paths_are_only_read_as_names(tmp_path: Path) -> None:
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("../../outside/data.pkl", b"not read")
        archive.writestr("/abs/path", b"not read")
    assert "PyTorch zip checkpoint" in refusal_of(path).detail
    assert not (tmp_path.parent.parent / "outside").exists()


def test_npz_is_refused(tmp_path: Path) -> None:
    numpy = pytest.importorskip("numpy")
    path = tmp_path / "model.onnx"
    numpy.savez(path.with_suffix(".npz"), weights=numpy.zeros(4))
    path.with_suffix(".npz").rename(path)
    assert "NumPy .npz" in refusal_of(path).detail


def test_npy_is_refused(tmp_path: Path) -> None:
    numpy = pytest.importorskip("numpy")
    buffer = io.BytesIO()
    numpy.save(buffer, numpy.zeros(4))
    assert "NumPy .npy" in refusal_of(write(tmp_path / "w.npy", buffer.getvalue())).detail


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"\x89HDF\r\n\x1a\n" + b"\x00" * 100, "HDF5"),
        (b"\x00" * 512 + b"\x89HDF\r\n\x1a\n" + b"\x00" * 100, "HDF5"),
        (b"\x1f\x8b\x08\x00" + b"\x00" * 100, "gzip"),
        (b"\x7fELF" + b"\x00" * 100, "executable"),
        (b"", "empty"),
        (b"hello world, not a model\n", "not a format Assay recognises"),
    ],
)
def test_other_formats_are_refused_and_named(tmp_path: Path, data: bytes, named: str) -> None:
    refusal = refusal_of(write(tmp_path / "model.onnx", data))
    assert refusal.code == "unsupported_format"
    assert named in refusal.detail


def test_random_bytes_are_refused(tmp_path: Path) -> None:
    for seed in range(20):
        data = bytes((seed * 7919 + i * 104729) % 251 for i in range(2048))
        assert refusal_of(write(tmp_path / f"r{seed}.onnx", data)).code == "unsupported_format"


def test_safetensors_is_recognised_from_bytes_not_name(tmp_path: Path) -> None:
    header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    data = struct.pack("<Q", len(header)) + header + b"\x00" * 4
    assert detect_format(write(tmp_path / "model.onnx", data)) == "safetensors"


def test_safetensors_header_length_starting_with_0x80_is_not_called_pickle(
    tmp_path: Path,
) -> None:
    body = b'{"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}'
    header = body + b" " * (0x0380 - len(body))
    data = struct.pack("<Q", len(header)) + header + b"\x00" * 4
    assert data[:2] == b"\x80\x03"
    assert detect_format(write(tmp_path / "w.bin", data)) == "safetensors"


def test_onnx_is_recognised_from_bytes_not_name(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "weights.safetensors"
    onnx.save(helper.make_model(graph), path)
    assert detect_format(path) == "onnx"


def test_truncated_onnx_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    data = helper.make_model(graph).SerializeToString()
    assert refusal_of(write(tmp_path / "m.onnx", data[:-3])).code == "unsupported_format"
