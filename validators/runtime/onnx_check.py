"""Static checks of an ONNX model: safe to load, standard operators only, shaped as declared.

Order matters. The file is parsed with external data loading off, then every tensor is checked
for external data before `onnx.checker` sees the path (the checker would resolve and stat the
referenced files). Operator domains are checked on every node, including nodes in subgraphs of
control-flow operators and in model-local functions, because the checker lets custom domains
such as `com.microsoft` through. Only then does the full checker (with shape inference) run, and
the graph's input and output are compared with the manifest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from validators.manifest import ModelManifest
from validators.runtime.formats import IntakeRefused
from validators.runtime.reports import (
    IntakeCheck,
    IntakeReport,
    OnnxDetails,
    TensorSpec,
)

if TYPE_CHECKING:
    from onnx import (
        AttributeProto,
        GraphProto,
        ModelProto,
        NodeProto,
        TensorProto,
        ValueInfoProto,
    )

__all__ = ["STANDARD_DOMAINS", "inspect_onnx"]

STANDARD_DOMAINS = frozenset({"", "ai.onnx"})
"""Operator domains accepted: the ONNX standard operator set, under either of its names."""

_SCORE_ELEM_TYPES = {1: "float32", 10: "float16", 11: "float64"}
_MAX_LISTED = 50
_TEXT_MAX = 200


def _short(text: str) -> str:
    return text if len(text) <= _TEXT_MAX else text[: _TEXT_MAX - 1] + "…"


def _capped(problems: list[dict[str, str]]) -> list[dict[str, str]]:
    if len(problems) <= _MAX_LISTED:
        return problems
    rest = len(problems) - _MAX_LISTED
    return [*problems[:_MAX_LISTED], {"path": "", "message": f"and {rest} more like these"}]


def inspect_onnx(path: Path, manifest: ModelManifest) -> IntakeReport:
    """Return the intake report of an ONNX file, or raise IntakeRefused."""
    import onnx

    if manifest.architecture is not None:
        # An ONNX file carries its own graph: an architecture block would be stored unchecked,
        # arguments and all (a `weights` URL, say), for nothing to ever read.
        raise IntakeRefused(
            "manifest_mismatch",
            "The manifest names an architecture, but an ONNX model carries its own graph: "
            "`architecture` is for safetensors weights only; remove it and resubmit.",
            [{"path": "architecture", "message": "not allowed with an ONNX artifact"}],
        )
    checks = [IntakeCheck(name="format", passed=True, detail="ONNX protobuf (from its bytes)")]
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise IntakeRefused(
            "invalid_artifact",
            f"The file looks like ONNX but its protobuf could not be parsed "
            f"({_short(str(exc))}); export the model again and resubmit.",
        ) from exc

    _refuse_external_data(model)
    checks.append(
        IntakeCheck(name="no_external_data", passed=True, detail="all tensors are stored inline")
    )
    _refuse_nonstandard_domains(model)
    checks.append(
        IntakeCheck(
            name="standard_operators",
            passed=True,
            detail="every node, subgraph and function uses the standard ai.onnx domain",
        )
    )
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # ValidationError, InferenceError
        raise IntakeRefused(
            "invalid_artifact",
            f"The ONNX model fails onnx.checker's full check ({_short(str(exc).strip())}); fix "
            "the export and resubmit.",
            [{"path": "", "message": str(exc).strip()[:2000]}],
        ) from exc
    checks.append(
        IntakeCheck(
            name="onnx_checker",
            passed=True,
            detail=f"onnx.checker full check passed (onnx {onnx.__version__})",
        )
    )

    inputs, outputs, io_checks = _check_io(model, manifest)
    checks.extend(io_checks)

    operators = Counter(node.op_type for _, node in _iter_nodes(model))
    opset = {(entry.domain or "ai.onnx"): int(entry.version) for entry in model.opset_import}
    parameter_count = sum(
        _numel(tensor) for graph in _iter_graphs(model) for tensor in (graph[1].initializer)
    )
    return IntakeReport(
        format="onnx",
        size_bytes=path.stat().st_size,
        onnx=OnnxDetails(
            ir_version=int(model.ir_version),
            producer_name=_short(model.producer_name),
            producer_version=_short(model.producer_version),
            model_version=int(model.model_version),
            graph_name=_short(model.graph.name),
            node_count=sum(operators.values()),
            initializer_count=len(model.graph.initializer),
            metadata={
                _short(entry.key): _short(entry.value) for entry in model.metadata_props[:50]
            },
        ),
        inputs=inputs,
        outputs=outputs,
        parameter_count=parameter_count,
        operators=dict(sorted(operators.items())),
        opset=dict(sorted(opset.items())),
        checks=checks,
    )


def _iter_graphs(model: ModelProto) -> Iterator[tuple[str, GraphProto]]:
    """Yield every graph with a readable location: the main graph, subgraphs, training graphs."""
    stack: list[tuple[str, GraphProto]] = [("graph", model.graph)]
    for index, info in enumerate(model.training_info):
        stack.append((f"training_info.{index}.initialization", info.initialization))
        stack.append((f"training_info.{index}.algorithm", info.algorithm))
    for index, function in enumerate(model.functions):
        for node_index, node in enumerate(function.node):
            stack.extend(_subgraphs(f"functions.{index}.node.{node_index}", node))
    while stack:
        where, graph = stack.pop()
        yield where, graph
        for node_index, node in enumerate(graph.node):
            stack.extend(_subgraphs(f"{where}.node.{node_index}", node))


def _subgraphs(where: str, node: NodeProto) -> list[tuple[str, GraphProto]]:
    found: list[tuple[str, GraphProto]] = []
    for attribute in node.attribute:
        if attribute.HasField("g"):
            found.append((f"{where}.{attribute.name}", attribute.g))
        found.extend(
            (f"{where}.{attribute.name}.{i}", graph) for i, graph in enumerate(attribute.graphs)
        )
    return found


def _iter_nodes(model: ModelProto) -> Iterator[tuple[str, NodeProto]]:
    """Yield every node of every graph and of every model-local function."""
    for where, graph in _iter_graphs(model):
        for index, node in enumerate(graph.node):
            yield f"{where}.node.{index}", node
    for function_index, function in enumerate(model.functions):
        for index, node in enumerate(function.node):
            yield f"functions.{function_index}.node.{index}", node


def _attribute_tensors(attribute: AttributeProto) -> Iterator[TensorProto]:
    if attribute.HasField("t"):
        yield attribute.t
    yield from attribute.tensors
    if attribute.HasField("sparse_tensor"):
        yield attribute.sparse_tensor.values
        yield attribute.sparse_tensor.indices
    for sparse in attribute.sparse_tensors:
        yield sparse.values
        yield sparse.indices


def _iter_tensors(model: ModelProto) -> Iterator[tuple[str, TensorProto]]:
    """Yield every tensor stored in the model: initializers and tensor-valued attributes."""
    for where, graph in _iter_graphs(model):
        for tensor in graph.initializer:
            yield f"{where}.initializer", tensor
        for sparse in graph.sparse_initializer:
            yield f"{where}.sparse_initializer", sparse.values
            yield f"{where}.sparse_initializer", sparse.indices
    for where, node in _iter_nodes(model):
        for attribute in node.attribute:
            for tensor in _attribute_tensors(attribute):
                yield f"{where}.{attribute.name}", tensor
    for index, function in enumerate(model.functions):
        for attribute in function.attribute_proto:
            for tensor in _attribute_tensors(attribute):
                yield f"functions.{index}.{attribute.name}", tensor


def _refuse_external_data(model: ModelProto) -> None:
    from onnx import TensorProto

    problems: list[dict[str, str]] = []
    for where, tensor in _iter_tensors(model):
        if tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data) > 0:
            location = next(
                (entry.value for entry in tensor.external_data if entry.key == "location"), ""
            )
            problems.append(
                {
                    "path": f"{where}.{_short(tensor.name)}",
                    "message": f"tensor data is stored outside the file (location "
                    f"{_short(location)!r}); it was not opened",
                }
            )
    if problems:
        raise IntakeRefused(
            "invalid_artifact",
            f"The ONNX model keeps {len(problems)} tensor(s) in external data files, which Assay "
            "does not read; export one self-contained file with "
            "torch.onnx.export(..., external_data=False) or onnx.save(model, path, "
            "save_as_external_data=False) and resubmit.",
            _capped(problems),
        )


def _refuse_nonstandard_domains(model: ModelProto) -> None:
    problems: list[dict[str, str]] = []
    for index, entry in enumerate(model.opset_import):
        if entry.domain not in STANDARD_DOMAINS:
            problems.append(
                {
                    "path": f"opset_import.{index}",
                    "message": f"imports operator domain {_short(entry.domain)!r}",
                }
            )
    for function_index, function in enumerate(model.functions):
        for index, entry in enumerate(function.opset_import):
            if entry.domain not in STANDARD_DOMAINS:
                problems.append(
                    {
                        "path": f"functions.{function_index}.opset_import.{index}",
                        "message": f"imports operator domain {_short(entry.domain)!r}",
                    }
                )
    for where, node in _iter_nodes(model):
        if node.domain not in STANDARD_DOMAINS:
            problems.append(
                {
                    "path": where,
                    "message": f"node {_short(node.name)!r} uses operator "
                    f"{_short(node.domain)}::{_short(node.op_type)}",
                }
            )
    if problems:
        domains = sorted(
            {entry.domain for entry in model.opset_import if entry.domain not in STANDARD_DOMAINS}
            | {node.domain for _, node in _iter_nodes(model) if node.domain not in STANDARD_DOMAINS}
        )
        raise IntakeRefused(
            "invalid_artifact",
            f"The ONNX model uses operators outside the standard ai.onnx domain "
            f"({', '.join(repr(_short(d)) for d in domains[:10])}), which Assay does not run; "
            "export with standard operators only (no custom, contrib or ai.onnx.ml operators, "
            "model-local functions inlined) and resubmit.",
            _capped(problems),
        )


def _numel(tensor: TensorProto) -> int:
    count = 1
    for dim in tensor.dims:
        count *= int(dim)
    return count


def _dims(value: ValueInfoProto) -> list[int | str] | None:
    """Return the declared dims (symbolic as their name, unknown as "?"), None if no shape."""
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    dims: list[int | str] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param"):
            dims.append(_short(dim.dim_param))
        else:
            dims.append("?")
    return dims


_ELEM_TYPE_NAMES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    8: "string",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    14: "complex64",
    15: "complex128",
    16: "bfloat16",
}


def _dtype_name(elem_type: int) -> str:
    return _ELEM_TYPE_NAMES.get(elem_type, f"elem_type {elem_type}")


def _spec(value: ValueInfoProto) -> TensorSpec:
    return TensorSpec(
        name=_short(value.name),
        shape=_dims(value) or [],
        dtype=_dtype_name(value.type.tensor_type.elem_type),
    )


def _check_io(
    model: ModelProto, manifest: ModelManifest
) -> tuple[list[TensorSpec], list[TensorSpec], list[IntakeCheck]]:
    """Compare the graph's one input and one output with the manifest."""
    initializer_names = {tensor.name for tensor in model.graph.initializer}
    graph_inputs = [value for value in model.graph.input if value.name not in initializer_names]
    graph_outputs = list(model.graph.output)
    if any(not _has_shape(value) for value in graph_outputs):
        graph_outputs = _inferred_outputs(model) or graph_outputs
    problems: list[dict[str, str]] = []
    checks: list[IntakeCheck] = []

    if len(graph_inputs) != 1:
        problems.append(
            {
                "path": "input",
                "message": f"the model has {len(graph_inputs)} graph inputs; Assay feeds exactly "
                "one image tensor",
            }
        )
    else:
        problems.extend(_input_problems(graph_inputs[0], manifest, checks))

    if len(graph_outputs) != 1:
        problems.append(
            {
                "path": "output",
                "message": f"the model has {len(graph_outputs)} graph outputs; Assay reads "
                "exactly one score tensor",
            }
        )
    else:
        problems.extend(_output_problems(graph_outputs[0], manifest, checks))

    if problems:
        raise IntakeRefused(
            "manifest_mismatch",
            "The ONNX model's input or output does not match the manifest; correct the manifest "
            "or the export so that they agree, and resubmit.",
            _capped(problems),
        )
    return (
        [_spec(value) for value in graph_inputs],
        [_spec(value) for value in graph_outputs],
        checks,
    )


def _has_shape(value: ValueInfoProto) -> bool:
    return bool(value.type.tensor_type.HasField("shape"))


def _inferred_outputs(model: ModelProto) -> list[ValueInfoProto] | None:
    from onnx import shape_inference

    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # inference is best effort here; the checker already ran
        return None
    return list(inferred.graph.output)


def _input_problems(
    value: ValueInfoProto, manifest: ModelManifest, checks: list[IntakeCheck]
) -> list[dict[str, str]]:
    problems: list[dict[str, str]] = []
    spec = manifest.input
    elem_type = value.type.tensor_type.elem_type
    if elem_type != 1:
        problems.append(
            {
                "path": "input.dtype",
                "message": f"the model input {value.name!r} is {_dtype_name(elem_type)}; the "
                "manifest and Assay feed float32",
            }
        )
    dims = _dims(value)
    if dims is None or len(dims) != 4:
        rank = "no declared shape" if dims is None else f"rank {len(dims)}"
        problems.append(
            {
                "path": "input",
                "message": f"the model input {value.name!r} has {rank}; Assay feeds "
                f"[N, {spec.channels}, {spec.height}, {spec.width}] (NCHW)",
            }
        )
        return problems
    symbolic: list[str] = []
    for field, dim, expected in zip(
        ("channels", "height", "width"),
        dims[1:],
        (spec.channels, spec.height, spec.width),
        strict=True,
    ):
        if isinstance(dim, int) and dim != expected:
            problems.append(
                {
                    "path": f"input.{field}",
                    "message": f"the model input has {field} {dim}; the manifest says {expected}",
                }
            )
        elif isinstance(dim, str):
            symbolic.append(field)
    if not problems:
        batch = dims[0]
        note = f"batch axis fixed at {batch}" if isinstance(batch, int) else f"batch axis {batch!r}"
        extra = f"; symbolic {', '.join(symbolic)} accepted" if symbolic else ""
        checks.append(
            IntakeCheck(
                name="input_matches_manifest",
                passed=True,
                detail=f"input {value.name!r} is float32 {dims} ({note}{extra})",
            )
        )
    return problems


def _output_problems(
    value: ValueInfoProto, manifest: ModelManifest, checks: list[IntakeCheck]
) -> list[dict[str, str]]:
    problems: list[dict[str, str]] = []
    elem_type = value.type.tensor_type.elem_type
    if elem_type not in _SCORE_ELEM_TYPES:
        problems.append(
            {
                "path": "output",
                "message": f"the model output {value.name!r} is {_dtype_name(elem_type)}; "
                "scores must be float32, float16 or float64",
            }
        )
    declared = manifest.output.shape
    dims = _dims(value)
    if dims is None:
        problems.append(
            {
                "path": "output.shape",
                "message": f"the model output {value.name!r} has no declared or inferable shape; "
                f"the manifest says {declared}",
            }
        )
    elif len(dims) != len(declared):
        problems.append(
            {
                "path": "output.shape",
                "message": f"the model output has rank {len(dims)} {dims}; the manifest says "
                f"{declared}",
            }
        )
    else:
        for index, (dim, expected) in enumerate(zip(dims[1:], declared[1:], strict=True), 1):
            if isinstance(dim, int) and dim != expected:
                problems.append(
                    {
                        "path": f"output.shape.{index}",
                        "message": f"the model output has {dim} at axis {index}; the manifest "
                        f"says {expected}",
                    }
                )
    if not problems:
        checks.append(
            IntakeCheck(
                name="output_matches_manifest",
                passed=True,
                detail=f"output {value.name!r} is {_dtype_name(elem_type)} {dims}, "
                f"consistent with {declared}",
            )
        )
    return problems
