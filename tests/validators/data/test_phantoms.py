"""Tests of the synthetic chest-radiograph phantoms: the cohort, its images, the three writers."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from validators.data.phantoms import (
    FULL_SCALE,
    MANUFACTURERS,
    PhantomFormat,
    generate_phantoms,
    iter_phantoms,
    write_phantom_dataset,
)

FORMATS: tuple[PhantomFormat, ...] = ("dicom", "png", "npz")


def tree_digest(root: Path) -> dict[str, str]:
    """Gives back the SHA-256 of every file under `root`, by relative path."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def read_manifest(root: Path) -> list[dict[str, str]]:
    with open(root / "cases.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def small_dataset(root: Path, format: PhantomFormat, *, seed: int = 0, cases: int = 8) -> Path:
    return write_phantom_dataset(root, format=format, cases=cases, size=48, seed=seed)


# --- the cohort --------------------------------------------------------------------------------


def test_cohort_has_the_requested_shape_and_stored_values() -> None:
    cohort = generate_phantoms(cases=30, size=40, seed=3)
    assert cohort.images.shape == (30, 40, 40)
    assert cohort.images.dtype == np.uint16
    assert [case.index for case in cohort.cases] == list(range(30))
    for case in cohort.cases:
        np.testing.assert_array_equal(cohort.images[case.index], case.pixels)
        top = (1 << case.acquisition.profile.bits_stored) - 1
        assert int(case.pixels.max()) <= top


def test_prevalence_is_close_to_the_request_with_whole_patients_positive() -> None:
    cohort = generate_phantoms(cases=300, size=16, prevalence=0.3, seed=1)
    assert abs(cohort.labels.mean() - 0.3) <= 0.02
    by_patient: dict[str, set[int]] = {}
    for case in cohort.cases:
        by_patient.setdefault(case.patient_id, set()).add(case.label)
    assert all(len(labels) == 1 for labels in by_patient.values())


@pytest.mark.parametrize("prevalence", [0.0, 1.0])
def test_prevalence_extremes(prevalence: float) -> None:
    cohort = generate_phantoms(cases=20, size=16, prevalence=prevalence, seed=0)
    assert set(cohort.labels.tolist()) == {int(prevalence)}


def test_patients_have_several_images_with_shared_patient_attributes() -> None:
    cohort = generate_phantoms(cases=60, size=16, patients=25, seed=2)
    patients = {case.patient_id for case in cohort.cases}
    assert len(patients) == 25
    seen: dict[str, tuple[str, str, str]] = {}
    for case in cohort.cases:
        attributes = case.attributes()
        fixed = (attributes["sex"], attributes["age"], attributes["site"])
        assert seen.setdefault(case.patient_id, fixed) == fixed
    counts = [sum(c.patient_id == p for c in cohort.cases) for p in patients]
    assert max(counts) >= 2


def test_the_same_seed_gives_the_same_cohort_and_another_seed_another() -> None:
    first = generate_phantoms(cases=10, size=32, seed=7)
    again = generate_phantoms(cases=10, size=32, seed=7)
    other = generate_phantoms(cases=10, size=32, seed=8)
    np.testing.assert_array_equal(first.images, again.images)
    assert first.cases == again.cases
    assert not np.array_equal(first.images, other.images)


def test_iterating_gives_the_same_images_as_the_whole_cohort() -> None:
    cohort = generate_phantoms(cases=6, size=24, seed=4)
    for case in iter_phantoms(cases=6, size=24, seed=4):
        np.testing.assert_array_equal(case.pixels, cohort.images[case.index])


def test_lesion_is_a_local_opacity_inside_the_lung() -> None:
    """A positive image is brighter than its patient's lesion-free twin only around the nodule."""
    positive = next(c for c in generate_phantoms(cases=40, size=64, seed=5).cases if c.label)
    # The same patient and acquisition without a lesion: the other prevalence extreme.
    twin = generate_phantoms(cases=40, size=64, seed=5, prevalence=0.0).cases[positive.index]
    assert twin.label == 0 and twin.patient_id == positive.patient_id
    difference = positive.rescaled - twin.rescaled
    # The acquisition noise is the same draw in both, so the difference is the lesion alone.
    assert difference.max() > 0.03 * FULL_SCALE
    assert (difference > 0.01 * FULL_SCALE).mean() < 0.1


def test_manufacturers_differ_in_noise_and_contrast_as_documented() -> None:
    cohort = generate_phantoms(cases=150, size=64, seed=6, prevalence=0.0)
    noise: dict[str, list[float]] = {}
    spread: dict[str, list[float]] = {}
    for case in cohort.cases:
        if case.acquisition.view != "PA":
            continue
        image = case.rescaled / FULL_SCALE
        # The top corners are air beside the shoulders: there, neighbouring pixels differ by
        # the noise alone (the background varies smoothly), std(difference) = sqrt(2) x noise.
        air = np.concatenate([image[:4, :4], image[:4, -4:]], axis=1)
        name = case.acquisition.profile.manufacturer
        noise.setdefault(name, []).append(float(np.std(np.diff(air, axis=0)) / np.sqrt(2.0)))
        low, high = np.percentile(image, [5, 95])
        spread.setdefault(name, []).append(float(high - low))
    profiles = {p.manufacturer: p for p in MANUFACTURERS}
    ordered = sorted(profiles, key=lambda name: profiles[name].noise)
    medians = [np.median(noise[name]) for name in ordered]
    assert medians == sorted(medians)
    # The noisiest profile is also the one with the least contrast.
    assert np.median(spread[ordered[-1]]) < min(np.median(spread[n]) for n in ordered[:-1])


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"cases": 0}, "cases must be at least 1"),
        ({"size": 8}, "size must be 16 to 4096"),
        ({"prevalence": 1.5}, "prevalence must be within 0 and 1"),
        ({"seed": -1}, "seed must be 0 or more"),
        ({"cases": 5, "patients": 6}, "patients must be 1 to the number of cases"),
    ],
)
def test_bad_arguments_are_refused_with_what_to_do(
    arguments: dict[str, float], fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment):
        iter_phantoms(**arguments)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=fragment):
        generate_phantoms(**arguments)  # type: ignore[arg-type]


# --- the writers -------------------------------------------------------------------------------


@pytest.mark.parametrize("format", FORMATS)
def test_same_seed_writes_the_same_bytes(tmp_path: Path, format: PhantomFormat) -> None:
    first = tree_digest(small_dataset(tmp_path / "a", format, seed=11))
    second = tree_digest(small_dataset(tmp_path / "b", format, seed=11))
    other = tree_digest(small_dataset(tmp_path / "c", format, seed=12))
    assert first == second
    assert first != other


@pytest.mark.parametrize("format", FORMATS)
def test_manifest_has_the_contract_columns(tmp_path: Path, format: PhantomFormat) -> None:
    root = small_dataset(tmp_path, format)
    rows = read_manifest(root)
    assert len(rows) == 8
    expected = ["case_id", "patient_id"] + (["path"] if format != "npz" else [])
    expected += ["label", "sex", "age", "site", "manufacturer", "view"]
    assert list(rows[0]) == expected
    assert {row["label"] for row in rows} <= {"0", "1"}
    if format != "npz":
        assert all((root / row["path"]).is_file() for row in rows)


def test_dicom_files_carry_real_tags_and_the_stored_pixels(tmp_path: Path) -> None:
    root = small_dataset(tmp_path, "dicom", cases=12)
    cohort = generate_phantoms(cases=12, size=48, seed=0)
    uids: set[str] = set()
    for row, case in zip(read_manifest(root), cohort.cases, strict=True):
        ds = pydicom.dcmread(root / row["path"])
        profile = case.acquisition.profile
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.Modality == "DX"
        assert ds.PhotometricInterpretation == "MONOCHROME2"
        assert ds.PatientID == row["patient_id"] == case.patient_id
        assert str(ds.PatientName).startswith("Phantom^")
        assert "synthetic" in ds.InstitutionName.lower()
        assert ds.Manufacturer == row["manufacturer"] == profile.manufacturer
        assert ds.ManufacturerModelName == profile.model
        assert float(ds.KVP) == profile.kvp and float(ds.ExposureInmAs) == profile.exposure_mas
        assert ds.BodyPartExamined == "CHEST"
        assert ds.ProtocolName == profile.protocol
        assert ds.ViewPosition == row["view"]
        assert ds.PatientSex == row["sex"] and ds.PatientAge == f"{int(row['age']):03d}Y"
        assert float(ds.PixelSpacing[0]) == pytest.approx(profile.fov_mm / 48, rel=1e-5)
        assert (ds.BitsAllocated, ds.BitsStored) == (16, profile.bits_stored)
        assert float(ds.RescaleSlope) == profile.rescale_slope
        assert float(ds.RescaleIntercept) == profile.rescale_intercept
        assert float(ds.WindowWidth) > 0
        np.testing.assert_array_equal(ds.pixel_array, case.pixels)
        for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID):
            assert pydicom.uid.UID(uid).is_valid
            uids.add(uid)
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert len(uids) == 3 * 12


def test_dicom_tags_differ_by_manufacturer(tmp_path: Path) -> None:
    root = small_dataset(tmp_path, "dicom", cases=40)
    seen: dict[str, tuple[float, float, int, float]] = {}
    for row in read_manifest(root):
        ds = pydicom.dcmread(root / row["path"], stop_before_pixels=True)
        seen[ds.Manufacturer] = (
            float(ds.KVP),
            float(ds.RescaleSlope),
            int(ds.BitsStored),
            float(ds.PixelSpacing[0]),
        )
    assert len(seen) == len(MANUFACTURERS)
    assert len(set(seen.values())) == len(MANUFACTURERS)


def test_png_is_16_bit_grayscale_scaled_to_the_full_range(tmp_path: Path) -> None:
    root = small_dataset(tmp_path, "png")
    cohort = generate_phantoms(cases=8, size=48, seed=0)
    for row, case in zip(read_manifest(root), cohort.cases, strict=True):
        with Image.open(root / row["path"]) as image:
            assert image.mode.startswith("I;16") or image.mode == "I"
            values = np.asarray(image).astype(np.uint32)
        shift = 16 - case.acquisition.profile.bits_stored
        np.testing.assert_array_equal(values, case.pixels.astype(np.uint32) << shift)


def test_npz_has_the_medmnist_keys_and_matches_the_manifest(tmp_path: Path) -> None:
    root = small_dataset(tmp_path, "npz")
    assert sorted(p.name for p in root.iterdir()) == ["cases.csv", "phantoms.npz"]
    with np.load(root / "phantoms.npz") as archive:
        assert sorted(archive.files) == ["test_images", "test_labels"]
        images, labels = archive["test_images"], archive["test_labels"]
    assert images.dtype == np.uint8 and images.shape == (8, 48, 48)
    assert labels.shape == (8, 1)
    assert labels[:, 0].tolist() == [int(row["label"]) for row in read_manifest(root)]
    # Windowed with each image's own window: the full 8-bit range is used.
    assert images.max() == 255 and images.min() == 0


def test_progress_is_reported_per_image(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    write_phantom_dataset(
        tmp_path, format="png", cases=4, size=16, progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_an_unknown_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dicom, png or npz"):
        write_phantom_dataset(tmp_path, format="tiff", cases=1)  # type: ignore[arg-type]


def test_dicom_bytes_round_trip_through_a_buffer(tmp_path: Path) -> None:
    """Each DICOM file is a complete Part 10 file (preamble and meta) that reads from bytes."""
    root = small_dataset(tmp_path, "dicom", cases=1)
    data = (root / read_manifest(root)[0]["path"]).read_bytes()
    assert data[128:132] == b"DICM"
    assert pydicom.dcmread(io.BytesIO(data)).SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.1"


@pytest.mark.parametrize("format", FORMATS)
def test_load_dataset_accepts_every_format_written(tmp_path: Path, format: PhantomFormat) -> None:
    from validators.data.datasets import load_dataset

    root = write_phantom_dataset(tmp_path, format=format, cases=10, size=32, seed=2)
    dataset = load_dataset(root, attributes=("sex", "age", "site", "manufacturer", "view"))
    cohort = generate_phantoms(cases=10, size=32, seed=2)
    assert dataset.format == format
    assert [c.case_id for c in dataset.cases] == [c.case_id for c in cohort.cases]
    assert [c.labels["label"] for c in dataset.cases] == cohort.labels.tolist()
    assert dataset.n_patients == len({c.patient_id for c in cohort.cases})
    for case, phantom in zip(dataset.cases, cohort.cases, strict=True):
        assert {k: case.attributes[k] for k in phantom.attributes()} == phantom.attributes()
    if format == "dicom":
        # The acquisition tags are read into the attribute table, for the fairness tables.
        first = dataset.cases[0].attributes
        profile = cohort.cases[0].acquisition.profile
        assert first["manufacturer_model"] == profile.model
        assert first["body_part"] == "CHEST"
        assert first["protocol"] == profile.protocol


def test_bad_arguments_write_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="prevalence"):
        write_phantom_dataset(tmp_path / "out", cases=3, prevalence=-0.1)
    assert not (tmp_path / "out").exists()
