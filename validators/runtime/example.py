"""A small synthetic ONNX model and its manifest, exported from PyTorch, for demos and tests.

The network is a seeded, untrained 2-D CNN: it has no diagnostic value. Each `variant` uses a
different seed, so demos can submit several versions with different artifact digests.

Run `python -m validators.runtime.example OUT_DIR [VARIANT]` to write `model.onnx` and
`manifest.json` into OUT_DIR.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

__all__ = ["EXAMPLE_IMAGE_SIZE", "example_manifest", "write_example_model"]

EXAMPLE_IMAGE_SIZE = 64
_OPSET = 17


def example_manifest(*, variant: int = 0) -> dict[str, Any]:
    """Return the manifest (as a JSON-ready dict) of the example model."""
    return {
        "name": "Assay demo lesion classifier",
        "version_label": f"demo-{variant}",
        "task": "binary",
        "labels": ["lesion"],
        "input": {
            "channels": 1,
            "height": EXAMPLE_IMAGE_SIZE,
            "width": EXAMPLE_IMAGE_SIZE,
            "dtype": "float32",
            "layout": "NCHW",
            "intensity": {"kind": "minmax", "min": 0.0, "max": 255.0},
        },
        "output": {"kind": "logits", "shape": ["N", 1]},
        "thresholds": {"lesion": 0.0},
        "card": {
            "intended_use": (
                "Synthetic demonstration model for exercising the Assay registry; not for "
                "clinical use."
            ),
            "intended_users": ["Assay developers", "people evaluating Assay"],
            "target_population": "None: the model was never trained on patient data.",
            "out_of_scope_uses": ["Any clinical, diagnostic or screening use"],
            "known_limitations": [
                f"Untrained network with random weights (seed {variant}); its scores carry no "
                "information about lesions."
            ],
            "risks": ["Mistaking the demo's numbers for the performance of a real model."],
            "training_data_summary": "No training data; weights are seeded random values.",
            "regulatory_status": "Not a medical device; not cleared or approved anywhere.",
            "developer": "Assay project",
            "contact": "The hospital's Assay administrators",
            "license": "Apache-2.0",
        },
    }


def _build_network(variant: int) -> Any:
    import torch
    from torch import nn

    torch.manual_seed(variant)
    network = nn.Sequential(
        nn.Conv2d(1, 8, kernel_size=3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, kernel_size=3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 1),
    )
    return network.eval()


def export_onnx_network(network: Any, image_shape: tuple[int, int, int], path: Path) -> None:
    """Writes `network` (a torch module) as one self-contained ONNX file, opset 17, dynamic batch.

    The TorchScript-based exporter (`dynamo=False`) needs no extra package, and
    `external_data=False` keeps the weights inside the file, as intake requires. The input is
    named `image` ([N, *image_shape]) and the output `logits` ([N, ...]).
    """
    import torch

    example_input = torch.zeros(2, *image_shape)
    with warnings.catch_warnings(), torch.no_grad():
        # The legacy exporter announces its deprecation; the export itself is what we want.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            network,
            (example_input,),
            str(path),
            dynamo=False,
            external_data=False,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}},
            opset_version=_OPSET,
        )


def write_example_model(out_dir: Path, *, variant: int = 0) -> tuple[Path, Path]:
    """Return the paths of `model.onnx` and `manifest.json`, written into `out_dir`.

    The model is exported with PyTorch's TorchScript-based exporter (`dynamo=False`), which
    needs no extra package; `external_data=False` keeps the weights inside the one file.
    """

    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / "model.onnx"
    manifest_path = out_dir / "manifest.json"
    network = _build_network(variant)
    export_onnx_network(network, (1, EXAMPLE_IMAGE_SIZE, EXAMPLE_IMAGE_SIZE), model_path)
    manifest_path.write_text(json.dumps(example_manifest(variant=variant), indent=2) + "\n")
    return model_path, manifest_path


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m validators.runtime.example OUT_DIR [VARIANT]")
    chosen_variant = int(sys.argv[2]) if len(sys.argv) == 3 else 0
    paths = write_example_model(Path(sys.argv[1]), variant=chosen_variant)
    print("\n".join(str(p) for p in paths))
