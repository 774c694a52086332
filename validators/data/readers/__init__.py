"""Image readers, one module per format, found through one registry (format -> reader).

`read_image(root, case)` decodes one case's image; `detect_format(path)` tells which reader a
file belongs to from its first bytes (and, for DICOM without a preamble and NPZ, its name).
A new format is one module with a class following `Reader` and one entry in `READERS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from validators.data.readers.base import DecodedImage, ImageFormat, ImageUnreadable, Reader
from validators.data.readers.dicom import DicomReader
from validators.data.readers.npz import NpzReader
from validators.data.readers.pillow import PillowReader

if TYPE_CHECKING:
    from validators.data.datasets import Case

__all__ = [
    "READERS",
    "DecodedImage",
    "ImageFormat",
    "ImageUnreadable",
    "Reader",
    "detect_format",
    "read_image",
    "resolve_inside",
]

READERS: dict[ImageFormat, Reader] = {
    "png": PillowReader("png"),
    "jpeg": PillowReader("jpeg"),
    "npz": NpzReader(),
    "dicom": DicomReader(),  # last: it also claims files by name (.dcm) without the marker
}
"""Every image format Assay reads, in the order `detect_format` asks them."""

_HEAD_BYTES = 132  # DICOM's marker sits after a 128-byte preamble


def detect_format(path: Path) -> ImageFormat:
    """Gives back the format of the file at `path`; raises ImageUnreadable when none matches."""
    try:
        with path.open("rb") as handle:
            head = handle.read(_HEAD_BYTES)
    except OSError as exc:
        raise ImageUnreadable(path, f"could not be read ({exc.strerror or exc})") from exc
    if not head:
        raise ImageUnreadable(path, "is empty (0 bytes); copy the file again from the source")
    for image_format, reader in READERS.items():
        if reader.matches(head, path.suffix):
            return image_format
    raise ImageUnreadable(
        path,
        "is not DICOM, PNG, JPEG or NPZ (its first bytes match none of them); give images in "
        "one of those formats",
    )


def resolve_inside(root: Path, relative: str) -> Path:
    """Gives back `root / relative` resolved; raises ImageUnreadable if it leaves `root`.

    Symlinks are resolved first, so a link inside the root that points outside it is refused.
    `root` must already be resolved.
    """
    target = (root / relative).resolve()
    if not target.is_relative_to(root):
        raise ImageUnreadable(
            Path(relative),
            f"resolves to {target}, outside the dataset root {root}; keep every image inside "
            "the root (no '..', absolute paths or symlinks pointing out)",
        )
    return target


def read_image(root: Path, case: Case) -> DecodedImage:
    """Gives back the decoded image of `case`, whose path is relative to the dataset `root`."""
    resolved_root = Path(root).resolve()
    path = resolve_inside(resolved_root, case.path)
    image_format = detect_format(path)
    return READERS[image_format].read(path, case.index)
