"""DICOM images through pydicom: modality rescale, the file's VOI window, acquisition tags.

Decoders: uncompressed and deflated syntaxes and RLE (pydicom itself), JPEG baseline and
extended (Pillow), JPEG 2000 (Pillow or pylibjpeg-openjpeg). JPEG-LS and lossless JPEG have no
installed decoder under a permissive licence, so such a file is refused with the transfer syntax
named. One image per case: a multi-frame file is refused (a case is one image, and choosing a
frame for the hospital would be a guess).
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from validators.data.readers.base import DecodedImage, ImageFormat, ImageUnreadable

if TYPE_CHECKING:
    from pydicom.dataset import Dataset as DicomDataset

__all__ = ["ACQUISITION_TAGS", "DicomReader", "acquisition_tags"]

ACQUISITION_TAGS: dict[str, tuple[str, ...]] = {
    "manufacturer": ("Manufacturer",),
    "manufacturer_model": ("ManufacturerModelName",),
    "kvp": ("KVP",),
    "exposure_mas": ("ExposureInmAs", "Exposure"),
    "pixel_spacing": ("PixelSpacing", "ImagerPixelSpacing"),
    "view": ("ViewPosition",),
    "body_part": ("BodyPartExamined",),
    "protocol": ("ProtocolName",),
}
"""Attribute name -> DICOM keywords tried in order (the first present and non-empty wins)."""

_PIXEL_DATA = (0x7FE0, 0x0010)
_WHAT_TO_DO = (
    "convert it to an uncompressed transfer syntax (for example `gdcmconv --raw` or "
    "`dcmdjpeg`/`dcmdjpls` from DCMTK) and register the dataset again"
)


def _text(value: Any) -> str:
    """Gives back one tag value as attribute text: numbers as %g, multi-values joined by 'x'."""
    from pydicom.multival import MultiValue

    if isinstance(value, MultiValue | list | tuple):
        return "x".join(_text(v) for v in value)
    if isinstance(value, float | int):  # DS and IS are float and int subclasses
        return f"{float(value):g}"
    return str(value).strip()


def acquisition_tags(ds: DicomDataset) -> dict[str, str]:
    """Gives back the acquisition tags present in `ds`, under Assay's attribute names."""
    tags: dict[str, str] = {}
    for name, keywords in ACQUISITION_TAGS.items():
        for keyword in keywords:
            value = ds.get(keyword)
            if value is None or value == "":
                continue
            text = _text(value).replace("\x00", "").strip()
            if text and text.isprintable():
                tags[name] = text
                break
    return tags


def _first(value: Any) -> float | None:
    """Gives back the first value of a (possibly multi-valued) numeric tag, or None."""
    from pydicom.multival import MultiValue

    if value is None or value == "":
        return None
    if isinstance(value, MultiValue | list | tuple):
        if not value:
            return None
        value = value[0]
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _transfer_syntax(ds: DicomDataset) -> Any:
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if uid is None:
        from pydicom.uid import ImplicitVRLittleEndian

        return ImplicitVRLittleEndian  # pydicom's own assumption for a file without meta
    return uid


def _check_decodable(path: Path, uid: Any) -> None:
    """Raises ImageUnreadable naming the transfer syntax when no installed decoder handles it."""
    from pydicom.pixels.decoders.base import get_decoder

    name = getattr(uid, "name", str(uid))
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        available = False
    else:
        available = decoder.is_available
    if not available:
        raise ImageUnreadable(
            path,
            f"uses {name} ({uid}), which no installed decoder handles; {_WHAT_TO_DO}.",
        )


def _check_geometry(path: Path, ds: DicomDataset) -> None:
    """Raises ImageUnreadable for no pixel data, zero size, several frames or odd samples."""
    if "Rows" not in ds or "Columns" not in ds:
        raise ImageUnreadable(
            path,
            "has no image size (Rows, Columns): its header is cut short or it holds no image; "
            "copy the file again from the source",
        )
    rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    if rows == 0 or columns == 0:
        raise ImageUnreadable(
            path,
            f"has an image of {rows}x{columns} pixels (Rows x Columns); a case needs at least "
            "one pixel: check the export",
        )
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        raise ImageUnreadable(
            path,
            f"holds {frames} frames but a case is one image; export one frame per file (one "
            "row of the manifest each)",
        )
    samples = int(ds.get("SamplesPerPixel") or 1)
    if samples not in (1, 3):
        raise ImageUnreadable(
            path,
            f"has {samples} samples per pixel but only 1 (grayscale) or 3 (color) are read; "
            "export the image as grayscale or RGB",
        )


def _check_length(path: Path, ds: DicomDataset, offset: int, size: int) -> None:
    """Raises ImageUnreadable when the pixel data is cut short (uncompressed syntaxes only).

    `offset` is where pydicom stopped (stop_before_pixels: the pixel data element). An
    encapsulated (compressed) element has an undefined length and is checked when decoded.
    """
    with path.open("rb") as handle:
        handle.seek(offset)
        head = handle.read(12)
    uid = _transfer_syntax(ds)
    little = bool(getattr(uid, "is_little_endian", True))
    if len(head) < 8:
        raise ImageUnreadable(path, "has no pixel data (the file ends before it); check the export")
    endian = "<" if little else ">"
    group, element = struct.unpack(endian + "HH", head[:4])
    if (group, element) != _PIXEL_DATA:
        return  # float pixel data or trailing elements: left to the decoder
    if bool(getattr(uid, "is_implicit_VR", False)):
        (length,) = struct.unpack(endian + "I", head[4:8])
        start = offset + 8
    else:
        (length,) = struct.unpack(endian + "I", head[8:12])
        start = offset + 12
    if length == 0xFFFFFFFF:
        _check_encapsulated_end(path, start, size)
        return
    if size - start < length:
        raise ImageUnreadable(
            path,
            f"is truncated: its pixel data declares {length} bytes but the file holds "
            f"{max(size - start, 0)}; copy the file again from the source",
        )


_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"  # (FFFE,E0DD), length 0
_TAIL_BYTES = 64 * 1024
_TRUNCATED = (
    "is truncated: the file ends inside its pixel data; copy the file again from the source"
)


def _check_encapsulated_end(path: Path, start: int, size: int) -> None:
    """Raises ImageUnreadable when compressed pixel data has no end (the file was cut short).

    Encapsulated pixel data ends with a sequence delimiter, normally the file's last 8 bytes;
    a little trailing padding is allowed, so the last 64 KiB after `start` (where the pixel
    data's items begin; earlier sequences end with the same delimiter) are searched.
    """
    with path.open("rb") as handle:
        handle.seek(max(size - _TAIL_BYTES, start))
        tail = handle.read()
    if _SEQUENCE_DELIMITER not in tail:
        raise ImageUnreadable(path, _TRUNCATED)


class DicomReader:
    """Reads DICOM files (Part 10, with or without the 128-byte preamble)."""

    format: ImageFormat = "dicom"

    def matches(self, head: bytes, suffix: str) -> bool:
        """Gives back whether the file has the DICM marker or a DICOM file name."""
        return head[128:132] == b"DICM" or suffix.lower() in (".dcm", ".dicom")

    def _header(self, path: Path) -> tuple[DicomDataset, int]:
        from pydicom import dcmread
        from pydicom.errors import InvalidDicomError

        try:
            with path.open("rb") as handle:
                ds = dcmread(handle, stop_before_pixels=True)
                offset = handle.tell()
        except InvalidDicomError as exc:
            raise ImageUnreadable(path, f"is not a DICOM file ({exc}); check the path") from exc
        except OSError as exc:
            raise ImageUnreadable(path, f"could not be read ({exc.strerror or exc})") from exc
        except Exception as exc:  # pydicom raises many types on a damaged header
            raise ImageUnreadable(
                path,
                f"has a damaged DICOM header ({type(exc).__name__}: {exc}); "
                "copy the file again from the source",
            ) from exc
        return ds, offset

    def inspect(self, path: Path) -> dict[str, str]:
        """Gives back the acquisition tags after checking the header, geometry and length."""
        ds, offset = self._header(path)
        _check_geometry(path, ds)
        _check_decodable(path, _transfer_syntax(ds))
        _check_length(path, ds, offset, path.stat().st_size)
        return acquisition_tags(ds)

    def read(self, path: Path, index: int | None) -> DecodedImage:
        """Gives back the image after the modality rescale, with its window and tags."""
        from pydicom import dcmread
        from pydicom.errors import InvalidDicomError
        from pydicom.pixels.processing import apply_modality_lut

        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ds = dcmread(path)
        except InvalidDicomError as exc:
            raise ImageUnreadable(path, f"is not a DICOM file ({exc}); check the path") from exc
        except OSError as exc:
            raise ImageUnreadable(path, f"could not be read ({exc.strerror or exc})") from exc
        except Exception as exc:
            raise ImageUnreadable(
                path,
                f"has a damaged DICOM file structure ({type(exc).__name__}: {exc}); "
                "copy the file again from the source",
            ) from exc
        if any("End of file reached" in str(w.message) for w in caught):
            raise ImageUnreadable(path, _TRUNCATED)  # pydicom only warns, and drops the element
        if "PixelData" not in ds:
            raise ImageUnreadable(path, "has no pixel data; a case needs an image")
        _check_geometry(path, ds)
        uid = _transfer_syntax(ds)
        _check_decodable(path, uid)
        try:
            stored = ds.pixel_array
        except Exception as exc:  # a short or damaged pixel data element
            name = getattr(uid, "name", str(uid))
            raise ImageUnreadable(
                path,
                f"could not be decoded ({name}): {exc}; the file is probably truncated or "
                "damaged, copy it again from the source",
            ) from exc
        pixels = np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)
        center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
        window = (center, width) if center is not None and width is not None and width > 0 else None
        photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
        return DecodedImage(
            pixels=np.ascontiguousarray(pixels),
            window=window,
            monochrome1=photometric == "MONOCHROME1",
            tags=acquisition_tags(ds),
        )
