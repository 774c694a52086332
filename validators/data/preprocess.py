"""From a decoded image to the model's input tensor (C, H, W) float32, as its manifest says.

The same function serves evaluation now and monitoring later, so a model sees the same mapping
of the same image in both. The steps, in order:

1. Channels: 1 -> C by repetition; 3 (RGB) -> 1 by the ITU-R BT.601 luma weights
   Y = 0.299 R + 0.587 G + 0.114 B (the weights Pillow's "L" conversion uses); C -> C as is;
   anything else is refused naming what the model expects and what the image has.
2. Intensity: `dicom_window` clips to center +- width/2 and scales to [0, 1] (the model's window
   always: the manifest requires one, so a validation never depends on each file's own window);
   `minmax` clips to [min, max] and scales to [0, 1]; `meanstd` standardizes per channel,
   (x - mean) / std, on the values as decoded.
3. MONOCHROME1 (larger values darker): after a window or min-max, x -> 1 - x (the inversion
   DICOM defines after the VOI window); before mean/std, x -> lo + hi - x, where (lo, hi) is the
   file's own VOI window (center -+ width/2) when it has one, else the image's own minimum and
   maximum. Either way bright bone stays bright for the model.
4. Size: each axis separately, area averaging when shrinking (every source pixel contributes
   by its overlap with the target pixel: a box filter, so shrinking is anti-aliased), bilinear
   interpolation when enlarging (pixel centres aligned, edges clamped: align_corners=False, as
   OpenCV's INTER_LINEAR and torch's interpolate), nothing when the size matches. Aspect ratio
   is not kept: the image is stretched to height x width, as most radiograph models are trained.

Everything is computed in float64 and rounded once to float32, with fixed-order numpy
operations, so the same image and spec give the same bytes every time.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from validators.data.readers import DecodedImage, read_image
from validators.manifest import DicomWindow, InputSpec, MeanStd, MinMax

if TYPE_CHECKING:
    from validators.data.datasets import Case, Dataset

__all__ = [
    "LUMA_WEIGHTS",
    "ImageIncompatible",
    "load_case_tensor",
    "preprocess",
    "resize_weights",
]

LUMA_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights for R, G, B: how an RGB image becomes one channel."""


class ImageIncompatible(ValueError):
    """An image cannot be turned into the model's input (e.g. a channel count it cannot map)."""


def _as_hwc(pixels: np.ndarray) -> np.ndarray:
    """Gives back the pixels as float64 (H, W, C)."""
    array = np.asarray(pixels, dtype=np.float64)
    if array.ndim == 2:
        return array[:, :, np.newaxis]
    if array.ndim == 3:
        return array
    raise ImageIncompatible(
        f"the image has {array.ndim} dimensions (shape {array.shape}); expected (H, W) or (H, W, C)"
    )


def _map_channels(image: np.ndarray, channels: int) -> np.ndarray:
    have = image.shape[2]
    if have == channels:
        return image
    if have == 1:
        return np.repeat(image, channels, axis=2)
    if have == 3 and channels == 1:
        weights = np.asarray(LUMA_WEIGHTS, dtype=np.float64)
        luma = image[:, :, 0] * weights[0] + image[:, :, 1] * weights[1]
        gray: np.ndarray = (luma + image[:, :, 2] * weights[2])[:, :, np.newaxis]
        return gray
    raise ImageIncompatible(
        f"the model expects {channels} channel(s) but the image has {have}; only 1 -> any "
        "(repeated) and 3 -> 1 (BT.601 luma) are mapped, so give images with 1 channel or "
        f"{channels}"
    )


def _scaled(image: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.clip((image - low) / (high - low), 0.0, 1.0)


def _invert_range(image: DecodedImage, values: np.ndarray) -> tuple[float, float]:
    if image.window is not None:
        center, width = image.window
        return center - width / 2.0, center + width / 2.0
    return float(values.min()), float(values.max())


def _intensity(values: np.ndarray, image: DecodedImage, spec: InputSpec) -> np.ndarray:
    intensity = spec.intensity
    if isinstance(intensity, DicomWindow):
        low = intensity.center - intensity.width / 2.0
        mapped = _scaled(values, low, low + intensity.width)
        return 1.0 - mapped if image.monochrome1 else mapped
    if isinstance(intensity, MinMax):
        mapped = _scaled(values, intensity.min, intensity.max)
        return 1.0 - mapped if image.monochrome1 else mapped
    if isinstance(intensity, MeanStd):
        if image.monochrome1:
            low, high = _invert_range(image, values)
            values = (low + high) - values
        count = values.shape[2]
        mean = np.asarray(intensity.mean * (count if len(intensity.mean) == 1 else 1))
        std = np.asarray(intensity.std * (count if len(intensity.std) == 1 else 1))
        standardized: np.ndarray = (values - mean) / std
        return standardized
    raise ImageIncompatible(f"unknown intensity mapping {intensity!r}")


@lru_cache(maxsize=64)
def _weights(source: int, target: int) -> np.ndarray:
    matrix = np.zeros((target, source), dtype=np.float64)
    if target == source:
        np.fill_diagonal(matrix, 1.0)
    elif target < source:
        # Area averaging: target pixel j covers [j * s, (j + 1) * s) of the source, s = n / m.
        scale = source / target
        for j in range(target):
            start, stop = j * scale, (j + 1) * scale
            first, last = int(np.floor(start)), min(int(np.ceil(stop)), source)
            for i in range(first, last):
                overlap = min(stop, i + 1) - max(start, i)
                if overlap > 0:
                    matrix[j, i] = overlap / scale
    else:
        # Bilinear, pixel centres aligned: target j samples the source at (j + 0.5) * s - 0.5.
        scale = source / target
        for j in range(target):
            position = min(max((j + 0.5) * scale - 0.5, 0.0), source - 1.0)
            left = int(np.floor(position))
            right = min(left + 1, source - 1)
            fraction = position - left
            matrix[j, left] += 1.0 - fraction
            matrix[j, right] += fraction
    matrix.setflags(write=False)
    return matrix


def resize_weights(source: int, target: int) -> np.ndarray:
    """Gives back the (target, source) matrix resizing one axis: area when shrinking, bilinear
    when enlarging, identity when equal. Each row sums to 1."""
    if source < 1 or target < 1:
        raise ImageIncompatible(f"cannot resize an axis of {source} pixels to {target}")
    return _weights(source, target)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Gives back (H, W, C) resized to (height, width, C)."""
    rows = resize_weights(image.shape[0], height)
    columns = resize_weights(image.shape[1], width)
    # Two fixed matrix products (rows first, then columns): the same sequence every time.
    tall = np.tensordot(rows, image, axes=(1, 0))  # (height, W, C)
    return np.tensordot(tall, columns, axes=(1, 1)).transpose(0, 2, 1)  # (height, width, C)


def preprocess(image: DecodedImage, spec: InputSpec) -> np.ndarray:
    """Gives back the model's input for one image: float32 (channels, height, width)."""
    pixels = _as_hwc(image.pixels)
    if 0 in pixels.shape:
        raise ImageIncompatible(
            f"the image has shape {image.pixels.shape}; it needs at least one pixel"
        )
    if not np.isfinite(pixels).all():
        raise ImageIncompatible("the image holds NaN or infinite values; check the export")
    values = _map_channels(pixels, spec.channels)
    values = _intensity(values, image, spec)
    values = _resize(values, spec.height, spec.width)
    return np.ascontiguousarray(values.transpose(2, 0, 1), dtype=np.float32)


def load_case_tensor(dataset: Dataset, case: Case, spec: InputSpec) -> np.ndarray:
    """Gives back the model's input for one case: preprocess(read_image(...))."""
    image = read_image(dataset.root, case)
    try:
        return preprocess(image, spec)
    except ImageIncompatible as exc:
        raise ImageIncompatible(f"{case.path} (line {case.line}): {exc}") from exc
