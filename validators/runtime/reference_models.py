"""Three reference models trained on phantoms, cached by seed, exported as ONNX and safetensors.

`reference_models(seed)` gives back the cache directory of one seed, training the three models
(`good`, `biased`, `slow`; see `validators.runtime.reference_training`) only when the cache is
missing or damaged. `write_reference_models` copies chosen models and formats out of the cache
for `assay example-model --reference`.

The cache lives under `default_cache_root()`: `$ASSAY_REFERENCE_CACHE` when set, else
`$XDG_CACHE_HOME/assay/reference-models` (`~/.cache/...`), on purpose not under `ASSAY_HOME`:
the models are demonstration artifacts, not registry data. One seed's directory holds, per
model, `<name>.onnx`, `<name>.safetensors`, `<name>.onnx.json` and `<name>.safetensors.json`
(the two manifests: an ONNX manifest must not name an architecture), and `cache.json` with
every file's SHA-256. A directory whose files do not match `cache.json` is trained again. A
new cache is written into a temporary sibling and renamed into place, so a reader never sees
half a cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from validators.runtime.example import export_onnx_network
from validators.runtime.reference_training import (
    BIASED_MANUFACTURER,
    PHANTOM_SIZE,
    RECIPES,
    REFERENCE_NAMES,
    TRAINING_SEED_OFFSET,
    ReferenceName,
    ReferenceRecipe,
    build_network,
    train_reference,
    training_seed,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "BIASED_MANUFACTURER",
    "CACHE_ENV",
    "FORMATS",
    "REFERENCE_NAMES",
    "TRAINING_SEED_OFFSET",
    "ReferenceFormat",
    "ReferenceName",
    "ReferenceSet",
    "default_cache_root",
    "export_onnx",
    "load_network",
    "reference_manifest",
    "reference_models",
    "save_safetensors",
    "write_reference_models",
]

CACHE_ENV = "ASSAY_REFERENCE_CACHE"
CACHE_VERSION = 3
"""Bumped whenever a recipe changes, so older caches are trained again rather than trusted."""

ReferenceFormat = Literal["onnx", "safetensors"]
FORMATS: tuple[ReferenceFormat, ...] = ("onnx", "safetensors")
ProgressCallback = Callable[[str], None]
_Choice = TypeVar("_Choice", bound=str)


@dataclass(frozen=True)
class ReferenceSet:
    """One seed's cached reference models: where they are and how they were obtained."""

    seed: int
    directory: Path
    trained: bool
    """True when this call trained the models, False when it loaded them from the cache."""
    training_seconds: float
    """Wall-clock time the training took when the cache was built (informative only)."""

    def artifact(self, name: ReferenceName, format: ReferenceFormat) -> Path:
        """Gives back the path of one model file in the cache."""
        return self.directory / f"{name}.{format}"

    def manifest(self, name: ReferenceName, format: ReferenceFormat) -> Path:
        """Gives back the path of one model's manifest for one format."""
        return self.directory / f"{name}.{format}.json"


def default_cache_root() -> Path:
    """Gives back the cache root: $ASSAY_REFERENCE_CACHE, else the user's cache directory."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "assay" / "reference-models"


_KNOWN_LIMITATIONS: dict[ReferenceName, list[str]] = {
    "good": [
        "Trained for seconds on synthetic phantoms; it has learned the phantoms' nodule, not "
        "any real finding.",
    ],
    "biased": [
        f"Trained without {BIASED_MANUFACTURER} images and with one fixed intensity window on "
        f"purpose: its AUROC is clearly lower on {BIASED_MANUFACTURER} phantoms than on the "
        "others, for the fairness table to find.",
    ],
    "slow": [
        "Deliberately oversized (a full-width ResNet-50 on 256 x 256 inputs) so that it misses "
        "the example policy's latency limit on a CPU; its trunk is untrained and only the "
        "final layer was fitted, so its accuracy is weak.",
    ],
}


def reference_manifest(
    name: ReferenceName, format: ReferenceFormat, *, seed: int = 0
) -> dict[str, Any]:
    """Gives back the model manifest (JSON-ready) of one reference model in one format."""
    recipe = RECIPES[name]
    manifest: dict[str, Any] = {
        "name": f"Assay reference model ({name})",
        "version_label": f"reference-{name}-seed{seed}",
        "task": "binary",
        "labels": ["lesion"],
        "input": recipe.input_spec.model_dump(mode="json", exclude_none=True),
        "output": {"kind": "logits", "shape": ["N", 1]},
        "thresholds": {"lesion": 0.0},
        "card": {
            "intended_use": "Demonstration only: a reference model for exercising Assay's "
            "evaluation on synthetic phantoms; not for clinical use.",
            "intended_users": ["Assay developers", "people evaluating Assay"],
            "target_population": "None: synthetic chest-radiograph phantoms, no patients.",
            "out_of_scope_uses": ["Any clinical, diagnostic or screening use"],
            "known_limitations": _KNOWN_LIMITATIONS[name],
            "risks": ["Mistaking the demo's numbers for the performance of a real model."],
            "training_data_summary": (
                f"Synthetic phantoms only: {recipe.training_cases if recipe.head_only else 1200}"
                f" {PHANTOM_SIZE} x {PHANTOM_SIZE} images from validators.data.phantoms with "
                f"seed {training_seed(seed)} (training seed {TRAINING_SEED_OFFSET} + {seed}), "
                + (
                    "mapped with one fixed min-max window; "
                    if recipe.excluded_manufacturer
                    else "mapped with each file's own VOI window; "
                )
                + (
                    f"{BIASED_MANUFACTURER} images left out."
                    if recipe.excluded_manufacturer
                    else "every manufacturer included."
                )
            ),
            "regulatory_status": "Not a medical device; not cleared or approved anywhere.",
            "developer": "Assay project",
            "contact": "The hospital's Assay administrators",
            "license": "Apache-2.0",
        },
    }
    if format == "safetensors":
        manifest["architecture"] = {"name": recipe.architecture, "args": dict(recipe.args)}
    return manifest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cache_record(directory: Path) -> dict[str, Any] | None:
    """Gives back the cache's record when every listed file matches its digest, else None."""
    try:
        record = json.loads((directory / "cache.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("version") != CACHE_VERSION:
        return None
    files = record.get("files")
    expected = {f"{name}.{suffix}" for name in REFERENCE_NAMES for suffix in _suffixes()}
    if not isinstance(files, dict) or set(files) != expected:
        return None
    for file_name, digest in files.items():
        path = directory / file_name
        if not path.is_file() or _sha256(path) != digest:
            return None
    return record


def _suffixes() -> tuple[str, ...]:
    return tuple(s for format in FORMATS for s in (format, f"{format}.json"))


def reference_models(
    seed: int = 0,
    *,
    cache_root: Path | None = None,
    progress: ProgressCallback | None = None,
) -> ReferenceSet:
    """Gives back the seed's reference models, from the cache when it is intact, else trained.

    Training all three takes under a minute on two cores; see docs/reference-models.md.
    """
    training_seed(seed)  # refuses a negative seed before anything is written
    root = (cache_root or default_cache_root()).expanduser()
    directory = root / str(seed)
    record = _cache_record(directory)
    if record is not None:
        return ReferenceSet(seed, directory, False, float(record["training_seconds"]))
    if directory.exists() and progress is not None:
        progress(f"the cache in {directory} is incomplete or damaged; training again")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{seed}.partial-", dir=root))
    try:
        seconds = _build(staging, seed, progress)
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ReferenceSet(seed, directory, True, seconds)


def _build(directory: Path, seed: int, progress: ProgressCallback | None) -> float:
    """Trains and exports the three models into `directory`; gives back the training seconds."""
    from validators.data.phantoms import generate_phantoms

    started = time.perf_counter()
    say = progress or (lambda _: None)
    cases = max(recipe.training_cases for recipe in RECIPES.values())
    say(f"drawing {cases} training phantoms (seed {training_seed(seed)})")
    phantoms = generate_phantoms(cases=cases, size=PHANTOM_SIZE, seed=training_seed(seed))
    files: dict[str, str] = {}
    for name in REFERENCE_NAMES:
        recipe = RECIPES[name]
        say(f"training {name}: {recipe.summary}")
        weights = train_reference(recipe, phantoms, seed=seed, progress=progress)
        for format in FORMATS:
            artifact = directory / f"{name}.{format}"
            if format == "onnx":
                export_onnx(recipe, weights, artifact)
            else:
                save_safetensors(weights, artifact)
            manifest = directory / f"{name}.{format}.json"
            manifest.write_text(
                json.dumps(reference_manifest(name, format, seed=seed), indent=2) + "\n"
            )
            files[artifact.name] = _sha256(artifact)
            files[manifest.name] = _sha256(manifest)
    seconds = time.perf_counter() - started
    record = {"version": CACHE_VERSION, "seed": seed, "training_seconds": seconds, "files": files}
    (directory / "cache.json").write_text(json.dumps(record, indent=2) + "\n")
    say(f"trained and exported the three models in {seconds:.1f} s")
    return seconds


def save_safetensors(weights: dict[str, torch.Tensor], path: Path) -> None:
    """Writes the state dict as safetensors, the keys Assay's MONAI network expects."""
    from safetensors.torch import save_file

    save_file({key: value.contiguous() for key, value in weights.items()}, str(path))


def load_network(recipe: ReferenceRecipe, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
    """Gives back the recipe's network with `weights` loaded strictly, in eval mode."""
    network = build_network(recipe)
    network.load_state_dict(weights, strict=True)
    return network.eval()


def export_onnx(recipe: ReferenceRecipe, weights: dict[str, torch.Tensor], path: Path) -> None:
    """Writes the trained network as one self-contained ONNX file (opset 17, dynamic batch)."""
    spec = recipe.input_spec
    export_onnx_network(
        load_network(recipe, weights), (spec.channels, spec.height, spec.width), path
    )


def write_reference_models(
    out: Path,
    *,
    names: Iterable[str] = REFERENCE_NAMES,
    formats: Iterable[str] = FORMATS,
    seed: int = 0,
    cache_root: Path | None = None,
    progress: ProgressCallback | None = None,
) -> list[tuple[Path, Path]]:
    """Gives back (artifact, manifest) pairs written as `out/<name>/model.<format>`.

    Each artifact's manifest is `out/<name>/manifest.<format>.json`. Unknown names or formats
    raise ValueError before anything is trained or written.
    """
    chosen_names = [_checked(name, REFERENCE_NAMES, "reference model") for name in names]
    chosen_formats = [_checked(format, FORMATS, "format") for format in formats]
    models = reference_models(seed, cache_root=cache_root, progress=progress)
    written: list[tuple[Path, Path]] = []
    for name in chosen_names:
        target = Path(out) / name
        target.mkdir(parents=True, exist_ok=True)
        for format in chosen_formats:
            artifact = target / f"model.{format}"
            manifest = target / f"manifest.{format}.json"
            shutil.copyfile(models.artifact(name, format), artifact)
            shutil.copyfile(models.manifest(name, format), manifest)
            written.append((artifact, manifest))
    return written


def _checked(value: str, allowed: tuple[_Choice, ...], what: str) -> _Choice:
    """Gives back `value` as one of `allowed`, or raises ValueError naming the choices."""
    for choice in allowed:
        if value == choice:
            return choice
    raise ValueError(f"unknown {what} {value!r}; choose from {', '.join(allowed)}")
