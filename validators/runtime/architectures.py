"""The networks Assay builds itself for safetensors weights, and the arguments each may take.

A safetensors file holds tensors only; the code that uses them is Assay's (MONAI's network zoo),
never the vendor's. Each entry names the MONAI constructor, the arguments a vendor may set (with
their types and bounds, so a manifest cannot ask for a network of unbounded size), and the
arguments Assay forces: 2-D, no pretrained download, input channels from the manifest, one
output per label.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pydantic import JsonValue

from validators.manifest import ModelManifest
from validators.runtime.formats import IntakeRefused

if TYPE_CHECKING:
    import torch

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "ArgRule",
    "build_on_meta",
    "resolve_architecture",
]


@dataclass(frozen=True)
class ArgRule:
    """What values one constructor argument may take."""

    kind: Literal["int", "float", "bool", "choice"]
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    def problem(self, value: JsonValue) -> str | None:
        """Return why `value` is not allowed, or None when it is."""
        if self.kind == "bool":
            return None if isinstance(value, bool) else "must be true or false"
        if self.kind == "choice":
            if isinstance(value, str) and value in self.choices:
                return None
            return f"must be one of {', '.join(repr(c) for c in self.choices)}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "must be a number"
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if (self.minimum is not None and value < self.minimum) or (
            self.maximum is not None and value > self.maximum
        ):
            return f"must be between {self.minimum:g} and {self.maximum:g}"
        if self.kind == "int" and isinstance(value, float) and not value.is_integer():
            return "must be an integer"
        return None

    def coerce(self, value: JsonValue) -> JsonValue:
        """Return the value in the type the constructor expects (JSON 2.0 becomes 2 for ints)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value
        return int(value) if self.kind == "int" else float(value) if self.kind == "float" else value


@dataclass(frozen=True)
class Architecture:
    """One allowlisted network: its MONAI constructor and the arguments it may take."""

    name: str
    constructor: str
    """Attribute of `monai.networks.nets` that builds the network (a class or factory)."""
    in_channels_arg: str
    out_channels_arg: str
    allowed: Mapping[str, ArgRule]
    forced: Mapping[str, JsonValue] = field(default_factory=dict)
    summary: str = ""


_FORCED_2D = {"spatial_dims": 2, "pretrained": False, "progress": False}

_DENSENET_ARGS = {
    "init_features": ArgRule("int", 1, 256),
    "growth_rate": ArgRule("int", 1, 128),
    "bn_size": ArgRule("int", 1, 16),
    "dropout_prob": ArgRule("float", 0.0, 0.95),
}
_RESNET_ARGS = {
    "conv1_t_size": ArgRule("int", 1, 15),
    "conv1_t_stride": ArgRule("int", 1, 4),
    "no_max_pool": ArgRule("bool"),
    "shortcut_type": ArgRule("choice", choices=("A", "B")),
    "widen_factor": ArgRule("float", 0.0625, 4.0),
    "bias_downsample": ArgRule("bool"),
}
_EFFICIENTNET_ARGS = {
    "model_name": ArgRule("choice", choices=tuple(f"efficientnet-b{i}" for i in range(8))),
}


def _densenet(name: str) -> Architecture:
    return Architecture(
        name=name,
        constructor=name,
        in_channels_arg="in_channels",
        out_channels_arg="out_channels",
        allowed=_DENSENET_ARGS,
        forced=_FORCED_2D,
        summary=f"monai.networks.nets.{name} (DenseNet, 2-D)",
    )


def _resnet(name: str) -> Architecture:
    return Architecture(
        name=name,
        constructor=name,
        in_channels_arg="n_input_channels",
        out_channels_arg="num_classes",
        allowed=_RESNET_ARGS,
        forced={**_FORCED_2D, "feed_forward": True},
        summary=f"monai.networks.nets.{name} (ResNet, 2-D)",
    )


ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch
    for arch in (
        _densenet("DenseNet121"),
        _densenet("DenseNet169"),
        _densenet("DenseNet201"),
        _resnet("resnet18"),
        _resnet("resnet34"),
        _resnet("resnet50"),
        _resnet("resnet101"),
        Architecture(
            name="EfficientNetBN",
            constructor="EfficientNetBN",
            in_channels_arg="in_channels",
            out_channels_arg="num_classes",
            allowed=_EFFICIENTNET_ARGS,
            forced={**_FORCED_2D, "adv_prop": False},
            summary="monai.networks.nets.EfficientNetBN (model_name efficientnet-b0..b7, 2-D)",
        ),
    )
}
"""The allowlist, by the name a manifest gives in `architecture.name`."""


def _allowlist_text() -> str:
    return ", ".join(ARCHITECTURES)


def resolve_architecture(manifest: ModelManifest) -> tuple[Architecture, dict[str, JsonValue]]:
    """Return the allowlisted architecture and the full constructor arguments Assay will use.

    Raises IntakeRefused ("manifest_mismatch") listing every argument that is unknown, out of
    bounds, or contradicts what Assay forces or derives from the manifest.
    """
    spec = manifest.architecture
    if spec is None:
        raise IntakeRefused(
            "manifest_mismatch",
            "Safetensors weights need the manifest's architecture ({name, args}) so Assay knows "
            f"which network to build; add one of {_allowlist_text()} and resubmit.",
            [{"path": "architecture", "message": "required for safetensors weights"}],
        )
    architecture = ARCHITECTURES.get(spec.name)
    if architecture is None:
        raise IntakeRefused(
            "manifest_mismatch",
            f"The architecture {spec.name[:100]!r} is not on Assay's allowlist; use one of "
            f"{_allowlist_text()}, or export the model to ONNX instead.",
            [
                {
                    "path": "architecture.name",
                    "message": f"unknown architecture; allowed: {_allowlist_text()}",
                }
            ],
        )
    out_channels = len(manifest.labels)
    derived: dict[str, JsonValue] = {
        architecture.in_channels_arg: manifest.input.channels,
        architecture.out_channels_arg: out_channels,
    }
    problems: list[dict[str, str]] = []
    args: dict[str, JsonValue] = {}
    for key, value in spec.args.items():
        path = f"architecture.args.{key}"
        if key in architecture.forced:
            if value != architecture.forced[key] or isinstance(value, bool) != isinstance(
                architecture.forced[key], bool
            ):
                problems.append(
                    {
                        "path": path,
                        "message": f"Assay always builds with {key}="
                        f"{_json(architecture.forced[key])}; remove it or set it to that",
                    }
                )
        elif key in derived:
            if value != derived[key] or isinstance(value, bool):
                source = "input.channels" if key == architecture.in_channels_arg else "labels"
                problems.append(
                    {
                        "path": path,
                        "message": f"must be {derived[key]}, as derived from the manifest's "
                        f"{source}; remove it or correct it",
                    }
                )
        elif key in architecture.allowed:
            reason = architecture.allowed[key].problem(value)
            if reason is None:
                args[key] = architecture.allowed[key].coerce(value)
            else:
                problems.append({"path": path, "message": reason})
        else:
            allowed = ", ".join(architecture.allowed) or "none"
            problems.append(
                {
                    "path": path,
                    "message": f"not an argument Assay accepts for {architecture.name} "
                    f"(allowed: {allowed})",
                }
            )
    if manifest.output.kind != "logits":
        problems.append(
            {
                "path": "output.kind",
                "message": f"{architecture.name} returns logits (no final activation); "
                'declare "logits"',
            }
        )
    if manifest.output.shape != ["N", out_channels]:
        problems.append(
            {
                "path": "output.shape",
                "message": f"{architecture.name} built with {out_channels} output(s) returns "
                f'["N", {out_channels}]',
            }
        )
    if problems:
        raise IntakeRefused(
            "manifest_mismatch",
            f"The manifest's architecture section for {architecture.name} cannot be built as "
            "given; correct the listed arguments and resubmit.",
            problems,
        )
    if architecture.name == "EfficientNetBN":
        args.setdefault("model_name", "efficientnet-b0")
    return architecture, {**args, **architecture.forced, **derived}


def _json(value: JsonValue) -> str:
    import json

    return json.dumps(value)


def build_on_meta(architecture: Architecture, args: Mapping[str, JsonValue]) -> torch.nn.Module:
    """Return the network built on the meta device: shapes only, no weight memory, no download."""
    import torch
    from monai.networks import nets

    constructor = getattr(nets, architecture.constructor)
    with torch.device("meta"):
        network: torch.nn.Module = constructor(**args)
    return network.eval()
