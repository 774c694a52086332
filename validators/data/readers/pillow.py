"""PNG and JPEG images through Pillow: 8- and 16-bit grayscale and 8-bit RGB, values as stored.

Other modes are refused rather than converted: a palette, an alpha channel or CMYK says the
export was not the one intended for a model (an alpha channel would have to be dropped or
composited on a guessed background), and a silent conversion would hide that.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from validators.data.readers.base import DecodedImage, ImageFormat, ImageUnreadable

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["ACCEPTED_MODES", "PillowReader"]

ACCEPTED_MODES: dict[str, str] = {
    "L": "8-bit grayscale",
    "I;16": "16-bit grayscale",
    "I;16B": "16-bit grayscale",
    "I;16L": "16-bit grayscale",
    "I": "16-bit grayscale",  # how some Pillow versions open a 16-bit PNG
    "RGB": "8-bit RGB",
}
"""Pillow image mode -> what it is; every other mode is refused."""

_MODE_NAMES = {
    "1": "1-bit black and white",
    "P": "palette (indexed color)",
    "PA": "palette with alpha",
    "LA": "grayscale with alpha, 2 channels",
    "La": "grayscale with alpha, 2 channels",
    "RGBA": "RGB with alpha, 4 channels",
    "RGBa": "RGB with alpha, 4 channels",
    "RGBX": "RGB with padding, 4 channels",
    "CMYK": "CMYK, 4 channels",
    "YCbCr": "YCbCr",
    "F": "32-bit float",
}
_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpeg": (b"\xff\xd8\xff",),
}
_SUFFIXES: dict[str, tuple[str, ...]] = {"png": (".png",), "jpeg": (".jpg", ".jpeg")}


class PillowReader:
    """Reads one of PNG or JPEG (one reader object per format)."""

    def __init__(self, image_format: ImageFormat) -> None:
        self.format: ImageFormat = image_format

    def matches(self, head: bytes, suffix: str) -> bool:
        """Gives back whether the file starts with this format's signature."""
        del suffix  # the signature decides: a .png that holds a JPEG is read as a JPEG
        return head.startswith(_SIGNATURES[self.format])

    def _open(self, path: Path) -> Image.Image:
        from PIL import Image, UnidentifiedImageError

        try:
            image = Image.open(path)
        except UnidentifiedImageError as exc:
            raise ImageUnreadable(
                path, f"is not a readable {self.format.upper()} image; check the export"
            ) from exc
        except OSError as exc:
            raise ImageUnreadable(path, f"could not be read ({exc})") from exc
        except Exception as exc:  # a damaged header (e.g. a zero-size PNG) raises ValueError
            raise ImageUnreadable(
                path, f"has a damaged {self.format.upper()} header ({exc}); check the export"
            ) from exc
        return image

    def _check(self, path: Path, image: Image.Image) -> None:
        width, height = image.size
        if width == 0 or height == 0:
            raise ImageUnreadable(
                path, f"is {width}x{height} pixels; a case needs at least one pixel"
            )
        if image.mode not in ACCEPTED_MODES:
            what = _MODE_NAMES.get(image.mode, image.mode)
            raise ImageUnreadable(
                path,
                f"is an image in Pillow mode {image.mode} ({what}), but only 8- or 16-bit "
                "grayscale and 8-bit RGB are read; save it as grayscale or RGB without alpha "
                "or palette (for example `convert in.png -alpha off -type Grayscale out.png`)",
            )
        if getattr(image, "n_frames", 1) > 1:
            raise ImageUnreadable(
                path, "holds several frames but a case is one image; save one image per file"
            )

    def inspect(self, path: Path) -> dict[str, str]:
        """Gives back no tags after checking the header's size, mode and frame count."""
        with self._open(path) as image:
            self._check(path, image)
        return {}

    def read(self, path: Path, index: int | None) -> DecodedImage:
        """Gives back the pixel values as stored, (H, W) for grayscale or (H, W, 3) for RGB."""
        with self._open(path) as image:
            self._check(path, image)
            try:
                image.load()
            except Exception as exc:  # truncated or damaged image data
                raise ImageUnreadable(
                    path,
                    f"could not be decoded ({exc}); the file is probably truncated, copy it "
                    "again from the source",
                ) from exc
            pixels = np.asarray(image)
        return DecodedImage(pixels=np.ascontiguousarray(pixels, dtype=np.float32))
