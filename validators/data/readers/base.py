"""What every image reader gives back (DecodedImage), how it fails, and what it must provide."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

__all__ = [
    "DecodedImage",
    "ImageFormat",
    "ImageUnreadable",
    "Reader",
]

ImageFormat = Literal["dicom", "png", "jpeg", "npz"]
"""The image formats a dataset can hold; one format per dataset."""


class ImageUnreadable(ValueError):
    """An image file could not be read; the message names the file and the reason."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path.name} {reason}")


@dataclass(frozen=True)
class DecodedImage:
    """One decoded image, before any preprocessing.

    `pixels` is float32, (H, W) or (H, W, C): DICOM after the modality rescale (slope and
    intercept, or the modality LUT), PNG and JPEG as stored (0..255 or 0..65535), NPZ as stored.
    `window` is the file's own VOI window (center, width), `monochrome1` whether larger values
    are darker (DICOM MONOCHROME1; preprocessing inverts it), `tags` the acquisition tags read.
    """

    pixels: np.ndarray
    window: tuple[float, float] | None = None
    monochrome1: bool = False
    tags: dict[str, str] = field(default_factory=dict)


class Reader(Protocol):
    """One image format: recognise a file, check its header cheaply, decode it."""

    format: ImageFormat

    def matches(self, head: bytes, suffix: str) -> bool:
        """Gives back whether a file starting with `head` (and named `*suffix`) is this format."""
        ...

    def inspect(self, path: Path) -> dict[str, str]:
        """Gives back the acquisition tags after a header-only check; raises ImageUnreadable."""
        ...

    def read(self, path: Path, index: int | None) -> DecodedImage:
        """Gives back the decoded image (`index`: row of an NPZ array); raises ImageUnreadable."""
        ...
