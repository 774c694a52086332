"""Small models built in the tests: ONNX graphs made with onnx.helper, a tiny MONAI network."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from validators.manifest import ModelManifest, parse_manifest
from validators.runtime import sandbox
from validators.runtime.runner import RunnerSettings

SIZE = 8

FULL_SANDBOX = sandbox._namespace_support()[1] is None and os.geteuid() == 0
"""Whether the sandbox can apply every measure here (namespaces, and root to switch to nobody).

The runner's tests check the runner, not the isolation (tests/validators/runtime/test_sandbox*
do): where the full sandbox cannot be set up they run in the recorded weaker mode.
"""


def settings(**overrides: Any) -> RunnerSettings:
    """Return test runner settings: one thread, batches of 4, the weaker mode only if needed."""
    chosen: dict[str, Any] = {
        "batch_size": 4,
        "intra_op_threads": 1,
        "batch_timeout_s": 30.0,
        "load_timeout_s": 60.0,
        "allow_weaker_isolation": not FULL_SANDBOX,
    }
    return RunnerSettings(**{**chosen, **overrides})


def manifest(
    *,
    size: int = SIZE,
    kind: str = "logits",
    shape: list[Any] | None = None,
    thresholds: dict[str, float] | None = None,
    architecture: dict[str, Any] | None = None,
) -> ModelManifest:
    """Return a binary manifest for a [N, 1, size, size] input."""
    document: dict[str, Any] = {
        "name": "test model",
        "version_label": "t1",
        "task": "binary",
        "labels": ["lesion"],
        "input": {
            "channels": 1,
            "height": size,
            "width": size,
            "intensity": {"kind": "minmax", "min": 0.0, "max": 1.0},
        },
        "output": {"kind": kind, "shape": shape or ["N", 1]},
    }
    if thresholds is not None:
        document["thresholds"] = thresholds
    if architecture is not None:
        document["architecture"] = architecture
    return parse_manifest(document)


def tensors(count: int, *, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """Return `count` random float32 images [count, 1, size, size]."""
    return np.random.default_rng(seed).random((count, 1, size, size), dtype=np.float32)


def onnx_model(path: Path, *, variant: str = "good", weight: float = 3.0) -> Path:
    """Write a tiny ONNX model: logit = weight * mean(image) - 1.5, shaped [N, 1].

    Variants: "nan" (the weight is NaN), "two_outputs" ([N, 2]), "lying" (declares [N, 1] but
    reshapes to [1, N] at run time), "hang" (a Loop of 10^12 empty turns before the output),
    "huge" (allocates a 40 GB tensor).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def const(name: str, value: Any, dtype: Any = np.float32) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)

    scale = float("nan") if variant == "nan" else weight
    initializers = [const("w", [scale]), const("b", [-1.5])]
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mean4"], axes=[2, 3], keepdims=0),
        helper.make_node("Mul", ["mean4", "w"], ["scaled"]),
        helper.make_node("Add", ["scaled", "b"], ["logit"]),
    ]
    out_name = "logit"
    if variant == "two_outputs":
        nodes.append(helper.make_node("Concat", ["logit", "logit"], ["both"], axis=1))
        out_name = "both"
    elif variant == "lying":
        initializers.append(const("flat", [1, -1], np.int64))
        nodes.append(helper.make_node("Reshape", ["logit", "flat"], ["lie"]))
        out_name = "lie"
    elif variant == "hang":
        body = helper.make_graph(
            [
                helper.make_node("Identity", ["cond_in"], ["cond_out"]),
                helper.make_node("Identity", ["x_in"], ["x_out"]),
            ],
            "spin",
            [
                helper.make_tensor_value_info("i", TensorProto.INT64, []),
                helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                helper.make_tensor_value_info("x_in", TensorProto.FLOAT, [1]),
            ],
            [
                helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
                helper.make_tensor_value_info("x_out", TensorProto.FLOAT, [1]),
            ],
        )
        initializers += [
            const("trips", 10**12, np.int64),
            const("go", True, np.bool_),
            const("zero", [0.0]),
        ]
        nodes += [
            helper.make_node("Loop", ["trips", "go", "zero"], ["spun"], body=body),
            helper.make_node("Add", ["logit", "spun"], ["after_spin"]),
        ]
        out_name = "after_spin"
    elif variant == "huge":
        initializers.append(const("big", [100_000, 100_000], np.int64))
        nodes += [
            helper.make_node("ConstantOfShape", ["big"], ["block"]),
            helper.make_node("ReduceSum", ["block"], ["total"], keepdims=0),
            helper.make_node("Add", ["logit", "total"], ["with_total"]),
        ]
        out_name = "with_total"
    width = 2 if variant == "two_outputs" else 1
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, SIZE, SIZE])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["N", width])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


TINY_RESNET = {"name": "resnet18", "args": {"widen_factor": 0.0625, "conv1_t_stride": 1}}


def resnet_weights(path: Path, *, drop: str | None = None, add: str | None = None) -> Any:
    """Save a seeded tiny MONAI resnet18's weights as safetensors; return the network.

    `drop` leaves out a key, `add` adds an unexpected one.
    """
    import torch
    from monai.networks import nets
    from safetensors.torch import save_file

    torch.manual_seed(0)
    # monai re-exports its networks without __all__ entries (mypy's attr-defined).
    network = nets.resnet18(  # type: ignore[attr-defined]
        spatial_dims=2,
        n_input_channels=1,
        num_classes=1,
        widen_factor=0.0625,
        conv1_t_stride=1,
        pretrained=False,
        feed_forward=True,
    ).eval()
    state = {key: value.contiguous() for key, value in network.state_dict().items()}
    if drop is not None:
        del state[drop]
    if add is not None:
        state[add] = torch.zeros(3)
    save_file(state, str(path))
    return network
