"""Static checks of safetensors weights: a well-formed header that fits an allowlisted network.

The header is parsed here, by hand, before any library sees the file: its length is bounded,
it must be one JSON object, every tensor entry must have a known dtype, a shape of non-negative
integers and byte offsets that tile the data section exactly. Then the network named in the
manifest is built on the meta device (no weight memory) and its `state_dict()` names and shapes
must equal the file's. Tensor bytes are never read; nothing in the file is executed.
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from validators.jsontext import MAX_JSON_DEPTH, json_text_problems
from validators.manifest import ModelManifest
from validators.problems import loads_strict_json
from validators.runtime.architectures import build_on_meta, resolve_architecture
from validators.runtime.formats import SAFETENSORS_MAX_HEADER_BYTES, IntakeRefused
from validators.runtime.reports import IntakeCheck, IntakeReport, SafetensorsDetails, TensorSpec

__all__ = [
    "DTYPE_ITEMSIZE",
    "SafetensorsHeader",
    "TensorEntry",
    "inspect_safetensors",
    "read_safetensors_header",
]

DTYPE_ITEMSIZE = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
"""Tensor dtypes accepted in a header, with their size in bytes."""

_FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
_INTEGER_DTYPES = frozenset({"U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64"})
_MAX_TENSORS = 100_000
_MAX_METADATA_ENTRIES = 1_000
_MAX_LISTED = 50


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as the header declares it."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def numel(self) -> int:
        """Return the number of elements."""
        count = 1
        for dim in self.shape:
            count *= dim
        return count


@dataclass(frozen=True)
class SafetensorsHeader:
    """A validated safetensors header."""

    header_length: int
    data_length: int
    tensors: dict[str, TensorEntry]
    metadata: dict[str, str]


def _malformed(reason: str, problems: list[dict[str, str]] | None = None) -> IntakeRefused:
    return IntakeRefused(
        "invalid_artifact",
        f"The safetensors header is malformed ({reason}); save the weights again with "
        "safetensors.torch.save_file(model.state_dict(), path) and resubmit.",
        problems or [{"path": "", "message": reason}],
    )


def _capped(problems: list[dict[str, str]]) -> list[dict[str, str]]:
    if len(problems) <= _MAX_LISTED:
        return problems
    rest = len(problems) - _MAX_LISTED
    return [*problems[:_MAX_LISTED], {"path": "", "message": f"and {rest} more like these"}]


def _twice(key: str) -> str:
    return f"key {key[:100]!r} appears twice"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_safetensors_header(path: Path) -> SafetensorsHeader:
    """Return the parsed and validated header, or raise IntakeRefused ("invalid_artifact")."""
    size = path.stat().st_size
    with path.open("rb") as stream:
        prefix = stream.read(8)
        if len(prefix) < 8:
            raise _malformed("the file is shorter than the 8-byte header length")
        (header_length,) = struct.unpack("<Q", prefix)
        if header_length > SAFETENSORS_MAX_HEADER_BYTES:
            raise _malformed(
                f"header length {header_length} exceeds the limit of "
                f"{SAFETENSORS_MAX_HEADER_BYTES} bytes"
            )
        if 8 + header_length > size:
            raise _malformed(
                f"header length {header_length} runs past the end of the {size}-byte file"
            )
        raw = stream.read(header_length)
    if not raw.startswith(b"{"):
        raise _malformed("the header does not start with a JSON object")
    try:
        header = loads_strict_json(raw.decode("utf-8"), key_message=_twice)
    except RecursionError as exc:
        raise _malformed(f"the header is nested more than {MAX_JSON_DEPTH} levels deep") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise _malformed(f"the header is not valid UTF-8 JSON: {str(exc)[:200]}") from exc
    if not isinstance(header, dict):
        raise _malformed("the header is not a JSON object")
    # A header is two levels deep; its names and metadata end up in the stored intake report.
    if text_problems := json_text_problems(header, max_depth=3):
        first_path, first = text_problems[0]
        raise _malformed(
            f"{first_path[:100]}: {first}", [{"path": p, "message": m} for p, m in text_problems]
        )

    metadata = _read_metadata(header.pop("__metadata__", {}))
    if len(header) > _MAX_TENSORS:
        raise _malformed(f"the header lists {len(header)} tensors; the limit is {_MAX_TENSORS}")
    data_length = size - 8 - header_length
    tensors: dict[str, TensorEntry] = {}
    problems: list[dict[str, str]] = []
    for name, entry in header.items():
        parsed = _read_entry(name, entry, problems)
        if parsed is not None:
            tensors[name] = parsed
    if not problems:
        problems.extend(_layout_problems(tensors, data_length))
    if problems:
        first = problems[0]["message"]
        more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
        raise _malformed(f"{first}{more}", _capped(problems))
    return SafetensorsHeader(
        header_length=header_length,
        data_length=data_length,
        tensors=tensors,
        metadata=metadata,
    )


def _read_metadata(value: object) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _malformed("__metadata__ must map strings to strings")
    if len(value) > _MAX_METADATA_ENTRIES:
        raise _malformed(f"__metadata__ has more than {_MAX_METADATA_ENTRIES} entries")
    return {k[:200]: v[:200] for k, v in value.items()}


def _read_entry(name: str, entry: object, problems: list[dict[str, str]]) -> TensorEntry | None:
    path = f"tensors.{name[:200]}"

    def bad(message: str) -> None:
        problems.append({"path": path, "message": message})

    if not name:
        bad("a tensor name is empty")
        return None
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        bad("an entry must be an object with exactly dtype, shape and data_offsets")
        return None
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_ITEMSIZE:
        bad(f"dtype {str(dtype)[:20]!r} is not one of {', '.join(DTYPE_ITEMSIZE)}")
        return None
    if (
        not isinstance(shape, list)
        or len(shape) > 16
        or not all(_is_int(d) and d >= 0 for d in shape)
    ):
        bad("shape must be a list of at most 16 non-negative integers")
        return None
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_int(o) and o >= 0 for o in offsets)
        or offsets[0] > offsets[1]
    ):
        bad("data_offsets must be [begin, end] with 0 <= begin <= end")
        return None
    tensor = TensorEntry(
        name=name, dtype=dtype, shape=tuple(shape), begin=offsets[0], end=offsets[1]
    )
    expected = tensor.numel * DTYPE_ITEMSIZE[dtype]
    if tensor.end - tensor.begin != expected:
        bad(
            f"data_offsets span {tensor.end - tensor.begin} bytes; {dtype} {list(shape)} needs "
            f"{expected}"
        )
        return None
    return tensor


def _layout_problems(tensors: dict[str, TensorEntry], data_length: int) -> list[dict[str, str]]:
    """Require the tensors to tile the data section: in order, no gap, no overlap, no excess."""
    problems: list[dict[str, str]] = []
    cursor = 0
    for tensor in sorted(tensors.values(), key=lambda t: (t.begin, t.end)):
        path = f"tensors.{tensor.name[:200]}"
        if tensor.begin < cursor:
            problems.append({"path": path, "message": "its bytes overlap another tensor's"})
        elif tensor.begin > cursor:
            problems.append(
                {"path": path, "message": f"a gap of {tensor.begin - cursor} bytes precedes it"}
            )
        if tensor.end > data_length:
            problems.append(
                {
                    "path": path,
                    "message": f"its bytes end at {tensor.end}, past the {data_length}-byte "
                    "data section",
                }
            )
        cursor = max(cursor, tensor.end)
    if not problems and cursor != data_length:
        problems.append(
            {
                "path": "",
                "message": f"the data section has {data_length - cursor} bytes that no tensor "
                "covers",
            }
        )
    return problems


def inspect_safetensors(path: Path, manifest: ModelManifest) -> IntakeReport:
    """Return the intake report of safetensors weights, or raise IntakeRefused."""
    header = read_safetensors_header(path)
    checks = [
        IntakeCheck(name="format", passed=True, detail="safetensors (from its bytes)"),
        IntakeCheck(
            name="header",
            passed=True,
            detail=f"{len(header.tensors)} tensors; dtypes, shapes and offsets tile the "
            f"{header.data_length}-byte data section exactly",
        ),
    ]
    architecture, args = resolve_architecture(manifest)
    checks.append(
        IntakeCheck(
            name="architecture_allowlisted",
            passed=True,
            detail=f"{architecture.summary} with {json.dumps(args, sort_keys=True)}",
        )
    )
    try:
        network = build_on_meta(architecture, args)
    except (TypeError, ValueError, RuntimeError, AssertionError) as exc:
        # A constructor refusing an argument combination; anything else is an intake failure.
        _reraise_memory_error(exc)
        raise IntakeRefused(
            "manifest_mismatch",
            f"{architecture.name} could not be built with the manifest's arguments "
            f"({str(exc)[:200]}); correct architecture.args and resubmit.",
            [{"path": "architecture.args", "message": str(exc)[:500]}],
        ) from exc

    _refuse_state_dict_mismatch(network, header)
    checks.append(
        IntakeCheck(
            name="weights_match_architecture",
            passed=True,
            detail=f"the file's {len(header.tensors)} tensor names and shapes equal "
            f"{architecture.name}'s state_dict",
        )
    )
    output_shape = _meta_forward_shape(network, manifest)
    checks.append(
        IntakeCheck(
            name="input_size_supported",
            passed=True,
            detail=f"a {manifest.input.channels}x{manifest.input.height}x{manifest.input.width} "
            f"input gives output {output_shape} (shape-only pass on the meta device)",
        )
    )
    spec = manifest.input
    parameter_count = sum(int(p.numel()) for p in network.parameters())
    return IntakeReport(
        format="safetensors",
        size_bytes=path.stat().st_size,
        safetensors=SafetensorsDetails(
            architecture=architecture.name,
            architecture_args=args,
            monai_class=f"{type(network).__module__}.{type(network).__qualname__}",
            tensor_count=len(header.tensors),
            element_count=sum(t.numel for t in header.tensors.values()),
            dtypes=dict(sorted(Counter(t.dtype for t in header.tensors.values()).items())),
            metadata=header.metadata,
        ),
        inputs=[
            TensorSpec(
                name="input", shape=["N", spec.channels, spec.height, spec.width], dtype="float32"
            )
        ],
        outputs=[TensorSpec(name="output", shape=["N", len(manifest.labels)], dtype="float32")],
        parameter_count=parameter_count,
        operators={},
        opset={},
        checks=checks,
    )


_MEMORY_ERROR_MARKERS = ("bad_alloc", "can't allocate memory", "out of memory")


def _reraise_memory_error(exc: BaseException) -> None:
    """Raise MemoryError for a C++ allocation failure that torch reports as RuntimeError.

    Running out of memory under the intake limit is an intake failure, not a finding about the
    vendor's manifest.
    """
    if isinstance(exc, RuntimeError) and any(m in str(exc) for m in _MEMORY_ERROR_MARKERS):
        raise MemoryError(str(exc)[:200]) from exc


def _refuse_state_dict_mismatch(network: Any, header: SafetensorsHeader) -> None:
    expected = network.state_dict()
    problems: list[dict[str, str]] = []
    for name, tensor in expected.items():
        shape = [int(d) for d in tensor.shape]
        entry = header.tensors.get(name)
        if entry is None:
            problems.append(
                {"path": f"tensors.{name}", "message": f"missing; expected shape {shape}"}
            )
            continue
        if list(entry.shape) != shape:
            problems.append(
                {
                    "path": f"tensors.{name}",
                    "message": f"shape {list(entry.shape)}; the architecture expects {shape}",
                }
            )
        wanted = _FLOAT_DTYPES if tensor.is_floating_point() else _INTEGER_DTYPES
        if entry.dtype not in wanted:
            kind = "floating-point" if tensor.is_floating_point() else "integer"
            problems.append(
                {
                    "path": f"tensors.{name}",
                    "message": f"dtype {entry.dtype}; the architecture expects a {kind} tensor",
                }
            )
    for name in header.tensors:
        if name not in expected:
            problems.append(
                {
                    "path": f"tensors.{name[:200]}",
                    "message": "unexpected; the architecture has no such tensor",
                }
            )
    if problems:
        raise IntakeRefused(
            "manifest_mismatch",
            f"The weights do not fit the architecture the manifest names ({len(problems)} "
            "tensor problem(s)); save the state_dict of the same MONAI network built with the "
            "manifest's architecture arguments, or correct the manifest, and resubmit.",
            _capped(problems),
        )


def _meta_forward_shape(network: Any, manifest: ModelManifest) -> list[int]:
    """Return the output shape for one input image, computed on the meta device (no data)."""
    import torch

    spec = manifest.input
    try:
        with torch.no_grad():
            output = network(torch.empty(1, spec.channels, spec.height, spec.width, device="meta"))
    except Exception as exc:  # e.g. the image is too small for the network's poolings
        _reraise_memory_error(exc)
        raise IntakeRefused(
            "manifest_mismatch",
            f"The network cannot process a {spec.height}x{spec.width} input "
            f"({str(exc)[:200]}); use a larger input size in the manifest and resubmit.",
            [{"path": "input.height", "message": str(exc)[:500]}],
        ) from exc
    shape = [int(d) for d in output.shape]
    if shape != [1, len(manifest.labels)]:
        raise IntakeRefused(
            "manifest_mismatch",
            f"The network returns shape {shape} for one image, not [1, {len(manifest.labels)}]; "
            "correct the manifest and resubmit.",
            [{"path": "output.shape", "message": f"the network returns {shape} for one image"}],
        )
    return shape
