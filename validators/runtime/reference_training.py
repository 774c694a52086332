"""Deterministic training of the three reference models on synthetic phantoms.

Internal to `validators.runtime.reference_models` (which caches and exports what this trains).
Each recipe names an allowlisted MONAI architecture (so the weights load through Assay's own
safetensors intake), the input spec it was trained with, and how it is trained:

- `good`: a narrow ResNet-18 (widen_factor 0.125) trained end to end on every manufacturer;
- `biased`: the same network and schedule, but with one fixed intensity window (min-max over
  the full rescaled range, as a model tuned on one site's scanners) instead of each file's own,
  and trained without one manufacturer's images (`BIASED_MANUFACTURER`, whose detector is the
  low-contrast, noisy one): that detector's images reach it with a contrast it never saw, so it
  is clearly worse on them. Leaving the images out alone was not enough: with each file's own
  window the gap was 0.01 to 0.09 AUROC depending on the bits of training, not a robust finding;
- `slow`: a full-width ResNet-50 on a large input (256 x 256, sixteen times the pixels of the
  others). Training it end to end costs far more than the time budget allows, so its
  convolutional trunk keeps its seeded initialisation and only its final layer is fitted
  (logistic regression on the trunk's pooled features, folded back into `fc`): a random-feature
  model whose accuracy is near chance (docs/reference-models.md). Its point is its cost per
  image, which misses the example policy's latency limit on a CPU of a few cores.

Training images are phantoms drawn with seed `TRAINING_SEED_OFFSET + seed`; held-out example
datasets (`assay example-dataset --seed S`) use seeds below that offset, so no training image
is ever evaluated on. Images go through `validators.data.preprocess.preprocess` exactly as
evaluation maps a DICOM phantom: the rescaled values with the recipe's intensity mapping.

Torch and MONAI are imported inside functions only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import JsonValue

from validators.data.phantom_anatomy import FULL_SCALE
from validators.manifest import InputSpec

if TYPE_CHECKING:
    import torch

    from validators.data.phantoms import PhantomSet

__all__ = [
    "BIASED_MANUFACTURER",
    "PHANTOM_SIZE",
    "RECIPES",
    "REFERENCE_NAMES",
    "TRAINING_SEED_OFFSET",
    "TRAINING_THREADS",
    "ReferenceName",
    "ReferenceRecipe",
    "build_network",
    "phantom_tensors",
    "train_reference",
    "training_seed",
]

ReferenceName = Literal["good", "biased", "slow"]
REFERENCE_NAMES: tuple[ReferenceName, ...] = ("good", "biased", "slow")

TRAINING_SEED_OFFSET = 10_000
"""Training phantoms use seed TRAINING_SEED_OFFSET + seed; held-out sets use seeds below it."""

TRAINING_THREADS = 1
"""Torch threads while training: fixed, because a reduction split differently changes the bits.

One, not two: on a two-core machine shared with other work, two OpenMP threads wait on each
other whenever one core is taken; measured on such a machine, all three models trained in 303 s
with two threads and 63 s with one (docs/reference-models.md)."""

BIASED_MANUFACTURER = "Philips"
"""The manufacturer whose images the biased model never sees in training."""

PHANTOM_SIZE = 256
"""Side of the training phantoms, as `assay example-dataset` writes them by default."""

ProgressCallback = Callable[[str], None]


@dataclass(frozen=True)
class ReferenceRecipe:
    """How one reference model is built and trained."""

    name: ReferenceName
    architecture: str
    args: dict[str, JsonValue]
    size: int
    training_cases: int
    epochs: int
    excluded_manufacturer: str | None = None
    head_only: bool = False
    intensity: tuple[tuple[str, JsonValue], ...] = (("kind", "dicom_window"),)
    """The manifest's input.intensity, as pairs so the recipe stays hashable."""
    summary: str = ""

    @property
    def input_spec(self) -> InputSpec:
        """Gives back the input spec the model is trained with (and its manifest declares)."""
        return InputSpec.model_validate(
            {
                "channels": 1,
                "height": self.size,
                "width": self.size,
                "intensity": dict(self.intensity),
            }
        )


_SMALL_RESNET: dict[str, JsonValue] = {"widen_factor": 0.125}

RECIPES: dict[ReferenceName, ReferenceRecipe] = {
    "good": ReferenceRecipe(
        name="good",
        architecture="resnet18",
        args=_SMALL_RESNET,
        size=64,
        training_cases=1200,
        epochs=10,
        summary="ResNet-18 at widen_factor 0.125, 64 x 64, trained on every manufacturer",
    ),
    "biased": ReferenceRecipe(
        name="biased",
        architecture="resnet18",
        args=_SMALL_RESNET,
        size=64,
        training_cases=1200,
        epochs=10,
        excluded_manufacturer=BIASED_MANUFACTURER,
        intensity=(("kind", "minmax"), ("min", 0.0), ("max", FULL_SCALE)),
        summary=f"the good model's network, one fixed window, no {BIASED_MANUFACTURER} images",
    ),
    "slow": ReferenceRecipe(
        name="slow",
        architecture="resnet50",
        args={},
        size=256,
        training_cases=32,
        epochs=0,
        head_only=True,
        summary="ResNet-50 at full width, 256 x 256, seeded trunk and a fitted final layer",
    ),
}


def training_seed(seed: int) -> int:
    """Gives back the phantom seed of the training images for reference seed `seed`."""
    if seed < 0:
        raise ValueError(f"the reference seed must be 0 or more, got {seed}")
    return TRAINING_SEED_OFFSET + seed


def phantom_tensors(
    phantoms: PhantomSet, spec: InputSpec
) -> tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.str_]]:
    """Gives back (inputs (N, C, H, W), labels (N,), manufacturers (N,)) of a phantom set.

    Each image is mapped as evaluation maps its DICOM file: the rescaled values and the file's
    own VOI window through `preprocess`.
    """
    from validators.data.preprocess import preprocess
    from validators.data.readers.base import DecodedImage

    inputs = np.empty((len(phantoms.cases), spec.channels, spec.height, spec.width), np.float32)
    for case in phantoms.cases:
        acquisition = case.acquisition
        image = DecodedImage(
            pixels=case.rescaled, window=(acquisition.window_center, acquisition.window_width)
        )
        inputs[case.index] = preprocess(image, spec)
    return inputs, phantoms.labels, phantoms.column("manufacturer")


def build_network(recipe: ReferenceRecipe) -> torch.nn.Module:
    """Gives back the recipe's network as Assay builds it for safetensors (on the CPU)."""
    from validators.manifest import ModelManifest
    from validators.runtime.architectures import resolve_architecture

    manifest = ModelManifest.model_validate(
        {
            "name": recipe.name,
            "version_label": recipe.name,
            "task": "binary",
            "labels": ["lesion"],
            "input": recipe.input_spec.model_dump(),
            "output": {"kind": "logits", "shape": ["N", 1]},
            "architecture": {"name": recipe.architecture, "args": recipe.args},
        }
    )
    architecture, args = resolve_architecture(manifest)
    from monai.networks import nets

    network: torch.nn.Module = getattr(nets, architecture.constructor)(**args)
    return network


@contextmanager
def deterministic_torch(seed: int) -> Iterator[None]:
    """Sets torch's seed, deterministic algorithms and thread count; restores them afterwards."""
    import torch

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(TRAINING_THREADS)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)


def _recipe_seed(seed: int, recipe: ReferenceRecipe) -> int:
    """Gives back the torch seed of one recipe: the models differ even at the same seed."""
    return seed * 10 + REFERENCE_NAMES.index(recipe.name)


def train_reference(
    recipe: ReferenceRecipe,
    phantoms: PhantomSet,
    *,
    seed: int,
    progress: ProgressCallback | None = None,
) -> dict[str, torch.Tensor]:
    """Gives back the trained weights (a CPU state dict) of one recipe, the same for one seed."""
    import torch

    from validators.data.phantoms import PhantomSet

    # Only the recipe's first cases are mapped: the slow model's large input makes mapping
    # the whole set cost more than the few images its final layer is fitted on.
    count = min(recipe.training_cases, len(phantoms.cases))
    chosen = PhantomSet(images=phantoms.images[:count], cases=phantoms.cases[:count])
    inputs, labels, manufacturers = phantom_tensors(chosen, recipe.input_spec)
    if recipe.excluded_manufacturer is not None:
        keep = manufacturers != recipe.excluded_manufacturer
        inputs, labels = inputs[keep], labels[keep]
    with deterministic_torch(_recipe_seed(seed, recipe)), torch.inference_mode(False):
        network = build_network(recipe)
        if recipe.head_only:
            _fit_head(network, inputs, labels)
        else:
            _fit_end_to_end(network, inputs, labels, recipe, progress)
        network.eval()
        return {key: value.detach().clone() for key, value in network.state_dict().items()}


_BATCH = 32
_LEARNING_RATE = 3e-3


def _fit_end_to_end(
    network: torch.nn.Module,
    inputs: NDArray[np.float32],
    labels: NDArray[np.int64],
    recipe: ReferenceRecipe,
    progress: ProgressCallback | None,
) -> None:
    """Trains every weight with AdamW and a one-cycle schedule (robust for a few epochs)."""
    import torch
    from torch.nn.functional import binary_cross_entropy_with_logits

    images = torch.from_numpy(inputs)
    targets = torch.from_numpy(labels.astype(np.float32))
    steps_per_epoch = (len(images) + _BATCH - 1) // _BATCH
    optimizer = torch.optim.AdamW(network.parameters(), lr=_LEARNING_RATE, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=_LEARNING_RATE,
        total_steps=recipe.epochs * steps_per_epoch,
        pct_start=0.15,
    )
    # The shuffle has its own generator, so the order does not depend on other draws.
    order = torch.Generator().manual_seed(torch.initial_seed())
    network.train()
    for epoch in range(recipe.epochs):
        permutation = torch.randperm(len(images), generator=order)
        for start in range(0, len(images), _BATCH):
            batch = permutation[start : start + _BATCH]
            logits = network(images[batch])[:, 0]
            loss = binary_cross_entropy_with_logits(logits, targets[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            schedule.step()
        if progress is not None:
            progress(f"{recipe.name}: epoch {epoch + 1}/{recipe.epochs}, loss {loss.item():.3f}")


def _fit_head(
    network: torch.nn.Module, inputs: NDArray[np.float32], labels: NDArray[np.int64]
) -> None:
    """Fits the final linear layer on the seeded trunk's pooled features; the trunk stays."""
    import torch

    head: Any = network.fc
    network.fc = torch.nn.Identity()
    network.eval()
    with torch.no_grad():
        features = torch.cat([network(torch.from_numpy(chunk)) for chunk in _chunks(inputs, 8)])
    network.fc = head
    # Standardized features make one L2 penalty fit every direction; the scaling is folded
    # back into the layer afterwards so the network itself takes the raw features.
    mean = features.mean(dim=0)
    std = features.std(dim=0).clamp_min(1e-6)
    standardized = (features - mean) / std
    targets = torch.from_numpy(labels.astype(np.float32))
    weight = torch.zeros(features.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = standardized @ weight + bias
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
        loss = loss + 0.05 * weight.square().sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimizer.step(closure)  # type: ignore[no-untyped-call]
    with torch.no_grad():
        scaled = weight / std
        head.weight.copy_(scaled.unsqueeze(0))
        head.bias.copy_(bias - (scaled * mean).sum())


def _chunks(array: NDArray[np.float32], size: int) -> Iterator[NDArray[np.float32]]:
    for start in range(0, len(array), size):
        yield array[start : start + size]
