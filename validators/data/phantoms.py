"""Synthetic chest-radiograph phantoms: images, tags and a dataset manifest, with no patient data.

`generate_phantoms` draws a cohort in memory (stored pixel values, labels, attributes and the
acquisition of every image); `write_phantom_dataset` writes it as a dataset that
`validators.data.datasets.load_dataset` accepts: DICOM files with real tags, 16-bit grayscale
PNG files, or one NPZ in the MedMNIST key layout, each with `cases.csv` beside it.

The image model (vectorized numpy, float32, one image at a time so memory stays flat):

- anatomy in attenuation units (0 air, 1 dense bone): a body, two lungs, the mediastinum and the
  heart shadow, the spine, posterior ribs as arcs across the thorax; a patient's images share
  the anatomy (drawn from the patient's own random stream), positioned a little differently;
- the positive class: a soft nodule (a Gaussian opacity) inside one lung, at the same place in
  every image of that patient;
- the acquisition: field of view (the anatomy's scale), detector contrast and gamma, a smooth
  background (heel effect), quantum noise, the detector's bit depth and its rescale slope and
  intercept, each set by the scanner manufacturer and changed by the view, the sex, the age and
  the site as in `docs/datasets.md` (whose table mirrors `MANUFACTURERS`). The image model
  lives in `phantom_anatomy.py`; this module draws the cohort and writes the files.

The defaults make one manufacturer ("Philips" here: the names are labels of made-up detector
profiles, not claims about real products) lower in contrast and noisier, so that a model can be
measurably worse on its images: the fairness table has something real to find.

Same arguments, same bytes: every random draw comes from a stream seeded by (seed, purpose,
index), the DICOM UIDs are derived from the seed, and no file carries a time stamp.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from validators.data.phantom_anatomy import (
    FULL_SCALE,
    MANUFACTURERS,
    REFERENCE_FOV_MM,
    SITES,
    DetectorProfile,
    PatientAnatomy,
    acquire,
    attenuation,
    draw_patient,
    random_stream,
    store,
    window,
)

__all__ = [
    "FULL_SCALE",
    "MANUFACTURERS",
    "SITES",
    "Acquisition",
    "DetectorProfile",
    "PhantomCase",
    "PhantomFormat",
    "PhantomSet",
    "generate_phantoms",
    "iter_phantoms",
    "write_phantom_dataset",
]

PhantomFormat = Literal["dicom", "png", "npz"]
ProgressCallback = Callable[[int, int], None]

DIGITAL_XRAY_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage
# A fixed date: a time stamp would make two runs with the same seed differ in bytes.
STUDY_DATE = "20250101"
SYNTHETIC_INSTITUTION = "Assay synthetic phantom (no patient data)"


@dataclass(frozen=True)
class Acquisition:
    """What the acquisition of one image was: its detector, view, and the derived tag values."""

    profile: DetectorProfile
    view: Literal["PA", "AP"]
    pixel_spacing_mm: float
    window_center: float
    window_width: float


@dataclass(frozen=True)
class PhantomCase:
    """One synthetic image with its label, attributes and acquisition."""

    index: int
    case_id: str
    patient_id: str
    patient_index: int
    label: int
    sex: Literal["F", "M"]
    age: int
    site: str
    acquisition: Acquisition
    # Stored values (H, W), before rescale slope and intercept; compared with numpy, not by ==.
    pixels: NDArray[np.uint16] = field(compare=False, repr=False)

    @property
    def rescaled(self) -> NDArray[np.float32]:
        """Gives back the modality values: stored values times slope plus intercept."""
        profile = self.acquisition.profile
        out: NDArray[np.float32] = self.pixels.astype(np.float32) * np.float32(
            profile.rescale_slope
        ) + np.float32(profile.rescale_intercept)
        return out

    def attributes(self) -> dict[str, str]:
        """Gives back the manifest's attribute columns of this case, as text."""
        return {
            "sex": self.sex,
            "age": str(self.age),
            "site": self.site,
            "manufacturer": self.acquisition.profile.manufacturer,
            "view": self.acquisition.view,
        }


@dataclass(frozen=True)
class PhantomSet:
    """A whole cohort in memory: stored pixels (N, H, W) uint16 and the cases in order."""

    images: NDArray[np.uint16]
    cases: tuple[PhantomCase, ...]

    @property
    def labels(self) -> NDArray[np.int64]:
        """Gives back the binary labels (N,) in case order."""
        return np.array([case.label for case in self.cases], dtype=np.int64)

    def column(self, name: str) -> NDArray[np.str_]:
        """Gives back one attribute column (sex, age, site, manufacturer, view) in case order."""
        return np.array([case.attributes()[name] for case in self.cases])


def _assign_patients(cases: int, patients: int, seed: int) -> NDArray[np.int64]:
    """Gives back each case's patient index: every patient has one image or more, in order."""
    rng = random_stream(seed, 0, 0)
    extra = rng.choice(patients, size=cases - patients, replace=True)
    counts = np.ones(patients, dtype=np.int64) + np.bincount(extra, minlength=patients)
    return np.repeat(np.arange(patients, dtype=np.int64), counts)


def _choose_positive_patients(
    counts: NDArray[np.int64], prevalence: float, seed: int
) -> NDArray[np.bool_]:
    """Gives back which patients carry a lesion, so the share of positive images is closest."""
    target = round(prevalence * int(counts.sum()))
    order = random_stream(seed, 0, 1).permutation(len(counts))
    positive = np.zeros(len(counts), dtype=bool)
    total = 0
    for patient in order:
        # Greedy over a random order: a patient's images are all positive or all negative.
        if total + counts[patient] <= target or (
            total < target and target - total > (total + counts[patient]) - target
        ):
            positive[patient] = True
            total += int(counts[patient])
        if total >= target:
            break
    return positive


def _checked_patients(
    cases: int, size: int, prevalence: float, seed: int, patients: int | None
) -> int:
    """Gives back the number of patients, after refusing arguments that cannot make a cohort."""
    if cases < 1:
        raise ValueError(f"cases must be at least 1, got {cases}; ask for one image or more")
    if not 16 <= size <= 4096:
        raise ValueError(f"size must be 16 to 4096 pixels, got {size}; pick a size in that range")
    if not 0.0 <= prevalence <= 1.0:
        raise ValueError(f"prevalence must be within 0 and 1, got {prevalence}")
    if seed < 0:
        raise ValueError(f"seed must be 0 or more, got {seed}")
    # About 1.5 images per patient by default, as in a cohort with follow-up images.
    patients = max(1, round(cases / 1.5)) if patients is None else patients
    if not 1 <= patients <= cases:
        raise ValueError(
            f"patients must be 1 to the number of cases ({cases}), got {patients}; "
            "every patient has at least one image"
        )
    return patients


def iter_phantoms(
    *,
    cases: int = 200,
    size: int = 256,
    prevalence: float = 0.3,
    seed: int = 0,
    patients: int | None = None,
) -> Iterator[PhantomCase]:
    """Gives back the cohort's cases one at a time, in order (memory stays one image).

    The arguments are checked at once (ValueError), not when the first case is drawn.
    """
    patients = _checked_patients(cases, size, prevalence, seed, patients)
    return _draw_cases(cases, size, prevalence, seed, patients)


def _draw_cases(
    cases: int, size: int, prevalence: float, seed: int, patients: int
) -> Iterator[PhantomCase]:
    owner = _assign_patients(cases, patients, seed)
    positive = _choose_positive_patients(np.bincount(owner, minlength=patients), prevalence, seed)
    drawn: dict[int, PatientAnatomy] = {}
    for index in range(cases):
        patient_index = int(owner[index])
        patient = drawn.get(patient_index)
        if patient is None:
            # Patients are contiguous in case order: the previous one is no longer needed.
            drawn.clear()
            patient = drawn[patient_index] = draw_patient(
                patient_index, bool(positive[patient_index]), seed
            )
        rng = random_stream(seed, 2, index)
        mix, site_offset = SITES[patient.site]
        profile = MANUFACTURERS[int(rng.choice(len(MANUFACTURERS), p=mix))]
        # Older patients are more often imaged at the bedside (AP).
        view: Literal["PA", "AP"] = "AP" if rng.random() < 0.1 + 0.004 * patient.age else "PA"
        fov_scale = profile.fov_mm / REFERENCE_FOV_MM
        density = attenuation(patient, view, size, fov_scale, rng)
        image = acquire(density, profile, view=view, site_offset=site_offset, rng=rng)
        pixels = store(image, profile)
        rescaled = pixels.astype(np.float32) * np.float32(profile.rescale_slope) + np.float32(
            profile.rescale_intercept
        )
        center, width = window(rescaled)
        yield PhantomCase(
            index=index,
            case_id=f"phantom-{index + 1:05d}",
            patient_id=patient.patient_id,
            patient_index=patient_index,
            label=int(patient.positive),
            sex=patient.sex,
            age=patient.age,
            site=patient.site,
            acquisition=Acquisition(
                profile=profile,
                view=view,
                pixel_spacing_mm=round(profile.fov_mm / size, 6),
                window_center=center,
                window_width=width,
            ),
            pixels=pixels,
        )


def generate_phantoms(
    *,
    cases: int = 200,
    size: int = 256,
    prevalence: float = 0.3,
    seed: int = 0,
    patients: int | None = None,
) -> PhantomSet:
    """Gives back a whole cohort in memory: stored pixels (N, H, W) uint16 and the cases."""
    drawn = iter_phantoms(
        cases=cases, size=size, prevalence=prevalence, seed=seed, patients=patients
    )
    images = np.empty((cases, size, size), dtype=np.uint16)
    collected = []
    for case in drawn:
        images[case.index] = case.pixels
        collected.append(case)
    return PhantomSet(images=images, cases=tuple(collected))


# --- writers -----------------------------------------------------------------------------------


def _dicom_bytes(case: PhantomCase, seed: int) -> bytes:
    """Gives back one DICOM Part 10 file (Digital X-Ray, for presentation) for the case."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    profile, acquisition = case.acquisition.profile, case.acquisition

    def uid(kind: str, key: str) -> UID:
        # The same seed and case give the same UIDs: a rerun writes the same bytes.
        return generate_uid(entropy_srcs=["assay-phantom", str(seed), kind, key])

    study_uid = uid("study", f"{case.patient_id}/{case.index}")
    sop_uid = uid("sop", case.case_id)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(DIGITAL_XRAY_FOR_PRESENTATION)
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = uid("implementation", "assay")
    meta.ImplementationVersionName = "ASSAY_PHANTOM"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SOPClassUID = DIGITAL_XRAY_FOR_PRESENTATION
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = STUDY_DATE
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = f"PH{case.index + 1:08d}"
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = profile.manufacturer
    ds.InstitutionName = SYNTHETIC_INSTITUTION
    ds.StationName = f"PHANTOM-{case.site.upper()}"
    ds.StudyDescription = "Synthetic chest radiograph phantom"
    ds.SeriesDescription = f"Chest {acquisition.view}"
    ds.ManufacturerModelName = profile.model
    ds.PatientName = f"Phantom^{case.patient_index + 1:04d}"
    ds.PatientID = case.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = case.sex
    ds.PatientAge = f"{case.age:03d}Y"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "Synthetic phantom: generated, never acquired from a person"
    ds.BodyPartExamined = "CHEST"
    ds.KVP = profile.kvp
    ds.ExposureInmAs = profile.exposure_mas
    ds.ProtocolName = profile.protocol
    ds.ViewPosition = acquisition.view
    ds.PatientOrientation = ["L", "F"] if acquisition.view == "PA" else ["R", "F"]
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = uid("series", f"{case.patient_id}/{case.index}")
    ds.StudyID = f"{case.index + 1}"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = case.pixels.shape
    ds.PixelSpacing = [acquisition.pixel_spacing_mm, acquisition.pixel_spacing_mm]
    ds.ImagerPixelSpacing = [acquisition.pixel_spacing_mm, acquisition.pixel_spacing_mm]
    ds.BitsAllocated = 16
    ds.BitsStored = profile.bits_stored
    ds.HighBit = profile.bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = profile.rescale_intercept
    ds.RescaleSlope = profile.rescale_slope
    ds.RescaleType = "US"
    ds.WindowCenter = acquisition.window_center
    ds.WindowWidth = acquisition.window_width
    ds.VOILUTFunction = "LINEAR"
    ds.LossyImageCompression = "00"
    ds.PixelData = np.ascontiguousarray(case.pixels, dtype="<u2").tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _png_bytes(case: PhantomCase) -> bytes:
    """Gives back a 16-bit grayscale PNG: the stored values scaled to the full 16-bit range."""
    from PIL import Image

    # An export to PNG drops the rescale, so the detector's range is stretched to 16 bits, as
    # PACS exports do; the bit depth then no longer tells the detectors apart, the image does.
    shift = 16 - case.acquisition.profile.bits_stored
    values = (case.pixels.astype(np.uint32) << shift).astype(np.uint16)
    buffer = io.BytesIO()
    # Level 1: noisy 16-bit images barely compress further, and level 6 is several times slower.
    Image.fromarray(values).save(buffer, format="PNG", optimize=False, compress_level=1)
    return buffer.getvalue()


def _uint8_windowed(case: PhantomCase) -> NDArray[np.uint8]:
    """Gives back the image windowed with its own window into 0..255, as MedMNIST stores it."""
    center, width = case.acquisition.window_center, case.acquisition.window_width
    scaled = (case.rescaled - (center - width / 2.0)) / width
    out: NDArray[np.uint8] = np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)
    return out


def _write_deterministic_npz(path: Path, arrays: dict[str, NDArray[np.generic]]) -> None:
    """Writes an NPZ whose bytes depend on the arrays only (np.savez stamps the current time)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            archive.writestr(info, buffer.getvalue())


MANIFEST_ATTRIBUTES = ("sex", "age", "site", "manufacturer", "view")


def write_phantom_dataset(
    out: Path,
    *,
    format: PhantomFormat = "dicom",
    cases: int = 200,
    size: int = 256,
    prevalence: float = 0.3,
    seed: int = 0,
    patients: int | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """Gives back `out` after writing a phantom dataset into it: images and `cases.csv`.

    DICOM and PNG: one file per case under `images/`, and `cases.csv` with case_id, patient_id,
    path, label and the attribute columns. NPZ: `phantoms.npz` (`test_images` uint8 (N, H, W),
    `test_labels` (N, 1)) and `cases.csv` without a path column, row i describing image i.
    `out` is created if needed; files already there with the same names are overwritten (the
    command line refuses a non-empty directory before calling this). `progress(done, total)`
    is called after each image.
    """
    if format not in ("dicom", "png", "npz"):
        raise ValueError(f"format must be dicom, png or npz, got {format!r}")
    drawn = iter_phantoms(
        cases=cases, size=size, prevalence=prevalence, seed=seed, patients=patients
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []
    npz_images: list[NDArray[np.uint8]] = []
    if format != "npz":
        (out / "images").mkdir(exist_ok=True)
    for case in drawn:
        row = {"case_id": case.case_id, "patient_id": case.patient_id}
        if format == "npz":
            npz_images.append(_uint8_windowed(case))
        else:
            relative = f"images/{case.case_id}.{'dcm' if format == 'dicom' else 'png'}"
            data = _dicom_bytes(case, seed) if format == "dicom" else _png_bytes(case)
            (out / relative).write_bytes(data)
            row["path"] = relative
        rows.append({**row, "label": str(case.label), **case.attributes()})
        if progress is not None:
            progress(case.index + 1, cases)
    if format == "npz":
        labels = np.array([[int(row["label"])] for row in rows], dtype=np.uint8)
        _write_deterministic_npz(
            out / "phantoms.npz", {"test_images": np.stack(npz_images), "test_labels": labels}
        )
    with open(out / "cases.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return out
