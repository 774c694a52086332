"""The model files the benchmarks submit: one large valid ONNX model, many small variants."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from benchmarks._common import progress

INPUT_SIZE = 64


def binary_manifest(name: str, version_label: str) -> dict[str, Any]:
    """A binary-task manifest for a [N, 1, 64, 64] float input and [N, 1] logits."""
    return {
        "name": name,
        "version_label": version_label,
        "task": "binary",
        "labels": ["lesion"],
        "input": {
            "channels": 1,
            "height": INPUT_SIZE,
            "width": INPUT_SIZE,
            "intensity": {"kind": "minmax", "min": 0.0, "max": 255.0},
        },
        "output": {"kind": "logits", "shape": ["N", 1]},
        "card": {"intended_use": "Benchmark artifact; not a clinical model."},
    }


def build_linear_onnx(path: Path, *, target_bytes: int, doc_string: str = "") -> Path:
    """Writes a valid ONNX model of about `target_bytes`: Flatten, MatMul, MatMul, Add.

    Nearly all of the file is the first MatMul's float32 weight [4096, hidden]; the graph takes
    [N, 1, 64, 64] and returns [N, 1] logits, and passes `onnx.checker` with full_check. The
    model is saved as one file, without external data.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    features = INPUT_SIZE * INPUT_SIZE
    hidden = max(1, target_bytes // (4 * (features + 1)))
    rng = np.random.default_rng(20240601)
    weight = rng.standard_normal((features, hidden), dtype=np.float32)
    weight *= np.float32(1.0 / np.sqrt(features))
    initializers = [
        numpy_helper.from_array(weight, "hidden_weight"),
        numpy_helper.from_array(
            (rng.standard_normal((hidden, 1)) / np.sqrt(hidden)).astype(np.float32),
            "head_weight",
        ),
        numpy_helper.from_array(np.zeros((1,), dtype=np.float32), "head_bias"),
    ]
    del weight
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["image"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "hidden_weight"], ["hidden"]),
            helper.make_node("MatMul", ["hidden", "head_weight"], ["score"]),
            helper.make_node("Add", ["score", "head_bias"], ["logits"]),
        ],
        "assay_benchmark_linear",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 64, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17)],
        ir_version=8,
        producer_name="assay-benchmarks",
        producer_version="1",
        doc_string=doc_string,
    )
    del initializers, graph
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path), save_as_external_data=False)
    return path


def large_artifact(directory: Path, *, target_bytes: int) -> Path:
    """Builds the large ONNX model, checks it as intake will, and gives its path."""
    path = directory / f"large-{target_bytes // 1_000_000}mb.onnx"
    started = time.perf_counter()
    build_linear_onnx(path, target_bytes=target_bytes)
    size = path.stat().st_size
    progress(f"built {path.name}: {size / 1e6:.1f} MB in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    check_full(path)
    progress(f"onnx.checker full_check accepts it ({time.perf_counter() - started:.1f} s)")
    return path


def check_full(path: Path) -> None:
    """Raises unless `onnx.checker` with full_check accepts the file (as Assay's intake will)."""
    import onnx

    onnx.checker.check_model(str(path), full_check=True)


def _with_doc_string(source: Path, target: Path, doc_string: str) -> None:
    import onnx

    model = onnx.load_model(str(source))
    model.doc_string = doc_string
    onnx.save_model(model, str(target))


def small_variants(
    directory: Path, *, count: int, model_name: str
) -> tuple[list[tuple[Path, dict[str, Any]]], str]:
    """Writes `count` copies of the example model that differ in digest only; gives them and how.

    The project's example model (`validators.runtime.example`) is written once per variant when
    that is quick; otherwise (it is exported from PyTorch) the first is copied with a different
    `doc_string`, a free-text field: the digest changes and the model stays valid.
    """
    from validators.runtime.example import write_example_model

    directory.mkdir(parents=True, exist_ok=True)
    variants: list[tuple[Path, dict[str, Any]]] = []
    started = time.perf_counter()
    base, manifest_path = write_example_model(directory / "variant-0", variant=0)
    one_s = time.perf_counter() - started
    base_manifest = json.loads(Path(manifest_path).read_text())
    if one_s < 0.5:
        variants.append((Path(base), _renamed(base_manifest, model_name, 0)))
        for index in range(1, count):
            artifact, manifest_path = write_example_model(
                directory / f"variant-{index}", variant=index
            )
            manifest = json.loads(Path(manifest_path).read_text())
            variants.append((Path(artifact), _renamed(manifest, model_name, index)))
        return variants, f"validators.runtime.example, one variant each ({one_s:.2f} s to write)"
    for index in range(count):
        target = directory / f"small-{index}.onnx"
        _with_doc_string(Path(base), target, f"assay benchmark variant {index}")
        variants.append((target, _renamed(base_manifest, model_name, index)))
    method = (
        f"validators.runtime.example variant 0 ({one_s:.2f} s to write), copied with a "
        "different doc_string each"
    )
    return variants, method


def _renamed(manifest: dict[str, Any], model_name: str, index: int) -> dict[str, Any]:
    return {**manifest, "name": model_name, "version_label": f"bench-{index}"}
