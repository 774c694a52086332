"""One NPZ file in the MedMNIST key layout: `test_images` (N, H, W[, C]) and `test_labels`.

The header of each array is read without loading it, so a dataset is checked without reading
every image. An uncompressed member (np.savez) is memory-mapped; a compressed one
(np.savez_compressed, as MedMNIST ships) is loaded once per process and kept (one file at a time).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from validators.data.readers.base import DecodedImage, ImageFormat, ImageUnreadable

__all__ = ["IMAGES_KEY", "LABELS_KEY", "NpzLayout", "NpzReader", "npz_labels", "npz_layout"]

IMAGES_KEY = "test_images"
LABELS_KEY = "test_labels"
_IMAGE_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))


@dataclass(frozen=True)
class NpzLayout:
    """The shapes and element types of the two arrays, read from their headers."""

    images_shape: tuple[int, ...]
    images_dtype: np.dtype[np.generic]
    labels_shape: tuple[int, ...]
    labels_dtype: np.dtype[np.generic]


def _member_header(
    archive: zipfile.ZipFile, key: str
) -> tuple[tuple[int, ...], np.dtype[np.generic]]:
    with archive.open(f"{key}.npy") as member:
        version = np.lib.format.read_magic(member)
        reader = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }.get(version)
        if reader is None:
            raise ValueError(f"{key}.npy has NPY format version {version}, not 1.0 or 2.0")
        shape, fortran, dtype = reader(member)
    if fortran:
        raise ValueError(f"{key}.npy is stored in Fortran order; save it with C order")
    if dtype.hasobject:
        raise ValueError(f"{key}.npy holds Python objects, which are never loaded")
    return tuple(int(d) for d in shape), dtype


def npz_layout(path: Path) -> NpzLayout:
    """Gives back the two arrays' shapes and types; raises ImageUnreadable naming what is wrong."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            missing = [k for k in (IMAGES_KEY, LABELS_KEY) if f"{k}.npy" not in names]
            if missing:
                raise ImageUnreadable(
                    path,
                    f"has no {' or '.join(missing)} array (it holds "
                    f"{', '.join(sorted(n.removesuffix('.npy') for n in names)) or 'nothing'}); "
                    f"an NPZ dataset holds {IMAGES_KEY} and {LABELS_KEY} (the MedMNIST layout)",
                )
            images_shape, images_dtype = _member_header(archive, IMAGES_KEY)
            labels_shape, labels_dtype = _member_header(archive, LABELS_KEY)
    except ImageUnreadable:
        raise
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as exc:
        raise ImageUnreadable(
            path, f"is not a readable NPZ file ({exc}); save it again with numpy.savez"
        ) from exc
    return NpzLayout(images_shape, images_dtype, labels_shape, labels_dtype)


def npz_labels(path: Path) -> np.ndarray:
    """Gives back the `test_labels` array (small; loaded whole)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return np.asarray(archive[LABELS_KEY])
    except Exception as exc:
        raise ImageUnreadable(path, f"could not read {LABELS_KEY} ({exc})") from exc


def _stored_offset(path: Path, key: str) -> int | None:
    """Gives back the file offset of an uncompressed member's data, or None when compressed."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{key}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        with path.open("rb") as handle:
            handle.seek(info.header_offset)
            local = handle.read(30)
            name_length = int.from_bytes(local[26:28], "little")
            extra_length = int.from_bytes(local[28:30], "little")
            start = info.header_offset + 30 + name_length + extra_length
            handle.seek(start)
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                np.lib.format.read_array_header_1_0(handle)
            else:
                np.lib.format.read_array_header_2_0(handle)
            return handle.tell()


@lru_cache(maxsize=1)
def _images(path: Path, mtime_ns: int, size: int) -> np.ndarray:
    """Gives back `test_images`, memory-mapped when stored, else loaded (cached per file state)."""
    del mtime_ns, size  # part of the cache key: a rewritten file is read again
    offset = _stored_offset(path, IMAGES_KEY)
    if offset is not None:
        with zipfile.ZipFile(path) as archive:
            shape, dtype = _member_header(archive, IMAGES_KEY)
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    with np.load(path, allow_pickle=False) as archive:
        return np.asarray(archive[IMAGES_KEY])


class NpzReader:
    """Reads one image (row `index`) of the dataset's NPZ file."""

    format: ImageFormat = "npz"

    def matches(self, head: bytes, suffix: str) -> bool:
        """Gives back whether the file is a zip archive named *.npz."""
        return head.startswith(b"PK") and suffix.lower() == ".npz"

    def inspect(self, path: Path) -> dict[str, str]:
        """Gives back no tags after checking the arrays' layout (see npz_layout)."""
        npz_layout(path)
        return {}

    def read(self, path: Path, index: int | None) -> DecodedImage:
        """Gives back image `index` of `test_images` as (H, W) or (H, W, C) float32."""
        if index is None:
            raise ImageUnreadable(path, "is an NPZ file but the case names no row index")
        layout = npz_layout(path)
        shape = layout.images_shape
        if layout.images_dtype not in _IMAGE_DTYPES or len(shape) not in (3, 4):
            raise ImageUnreadable(
                path,
                f"holds {IMAGES_KEY} as {layout.images_dtype} of shape {shape}; expected uint8 or "
                "uint16 of shape (N, H, W) or (N, H, W, C)",
            )
        if not 0 <= index < shape[0]:
            raise ImageUnreadable(path, f"has {shape[0]} images but the case asks for row {index}")
        stat = path.stat()
        try:
            images = _images(path.resolve(), stat.st_mtime_ns, stat.st_size)
            image = np.array(images[index], dtype=np.float32)
        except ImageUnreadable:
            raise
        except Exception as exc:
            raise ImageUnreadable(
                path, f"could not be decoded ({exc}); save it again with numpy.savez"
            ) from exc
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        return DecodedImage(pixels=np.ascontiguousarray(image))
