"""Factories for the data tests: small DICOM, PNG, NPZ files and manifests written on the spot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def write_dicom(
    path: Path,
    *,
    pixels: np.ndarray | None = None,
    photometric: str = "MONOCHROME2",
    slope: float | None = None,
    intercept: float | None = None,
    window: tuple[object, object] | None = None,
    tags: dict[str, object] | None = None,
    frames: int = 1,
) -> Path:
    """Writes an uncompressed DICOM file (int16 grayscale unless `pixels` is uint8 RGB)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    if pixels is None:
        pixels = np.arange(48, dtype=np.int16).reshape(6, 8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.PatientID = "p"
    rgb = frames == 1 and pixels.ndim == 3  # (H, W, 3); several frames are (F, H, W) gray
    ds.Rows, ds.Columns = int(pixels.shape[0 if rgb else -2]), int(pixels.shape[1 if rgb else -1])
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = "RGB" if rgb else photometric
    if rgb:
        ds.PlanarConfiguration = 0
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None:
        ds.RescaleIntercept = intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    for keyword, value in (tags or {}).items():
        setattr(ds, keyword, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_png(path: Path, pixels: np.ndarray, mode: str | None = None) -> Path:
    """Writes `pixels` as a PNG (uint8 gray/RGB/RGBA/LA, or uint16 gray)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    if pixels.dtype == np.uint16:
        image = Image.fromarray(pixels.astype(np.uint16))
    else:
        image = Image.fromarray(pixels, mode=mode) if mode else Image.fromarray(pixels)
    image.save(path)
    return path


def write_manifest(root: Path, header: str, rows: Sequence[str], name: str = "cases.csv") -> Path:
    """Writes a manifest CSV (header and rows joined by newlines) into `root`."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def pydicom_file(name: str) -> Path:
    """Gives back the path of one of pydicom's bundled test files."""
    from pydicom.data import get_testdata_file

    found = get_testdata_file(name, download=False)
    assert found is not None, f"pydicom ships {name}"
    return Path(str(found))
