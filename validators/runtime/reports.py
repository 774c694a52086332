"""The intake report: what static intake found in a vendor model file, in one shape per format.

Plain pydantic types with no behaviour, so the intake, the per-format checkers and the service
import them without importing one another.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, JsonValue

from validators.runtime.formats import ArtifactFormat

__all__ = [
    "IntakeCheck",
    "IntakeReport",
    "OnnxDetails",
    "SafetensorsDetails",
    "TensorSpec",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Frozen):
    """A model input or output: name, shape (symbolic dims as strings) and element type."""

    name: str
    shape: list[int | str]
    dtype: str


class IntakeCheck(_Frozen):
    """One check made at intake and what it found."""

    name: str
    passed: bool
    detail: str


class OnnxDetails(_Frozen):
    """What the ONNX protobuf declares about itself."""

    ir_version: int
    producer_name: str
    producer_version: str
    model_version: int
    graph_name: str
    node_count: int
    initializer_count: int
    metadata: dict[str, str]


class SafetensorsDetails(_Frozen):
    """The architecture Assay built for safetensors weights, and what the file holds."""

    architecture: str
    architecture_args: dict[str, JsonValue]
    monai_class: str
    tensor_count: int
    element_count: int
    dtypes: dict[str, int]
    metadata: dict[str, str]


class IntakeReport(_Frozen):
    """The result of static intake; one shape for both formats."""

    format: ArtifactFormat
    size_bytes: int
    onnx: OnnxDetails | None = None
    safetensors: SafetensorsDetails | None = None
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    parameter_count: int
    operators: dict[str, int]
    opset: dict[str, int]
    checks: list[IntakeCheck]
