"""Preprocessing to the model's input spec, checked against values computed by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.validators.data.images import write_dicom, write_manifest, write_png
from validators.data.datasets import load_dataset
from validators.data.preprocess import (
    ImageIncompatible,
    load_case_tensor,
    preprocess,
    resize_weights,
)
from validators.data.readers import DecodedImage, read_image
from validators.manifest import InputSpec


def spec(
    *, channels: int = 1, height: int = 8, width: int = 8, intensity: dict[str, Any]
) -> InputSpec:
    return InputSpec.model_validate(
        {"channels": channels, "height": height, "width": width, "intensity": intensity}
    )


def window(center: float, width: float) -> dict[str, Any]:
    return {"kind": "dicom_window", "center": center, "width": width}


def minmax(low: float, high: float) -> dict[str, Any]:
    return {"kind": "minmax", "min": low, "max": high}


def meanstd(mean: list[float], std: list[float]) -> dict[str, Any]:
    return {"kind": "meanstd", "mean": mean, "std": std}


def image(pixels: Any, **kwargs: Any) -> DecodedImage:
    return DecodedImage(pixels=np.asarray(pixels, dtype=np.float32), **kwargs)


IDENTITY = minmax(0, 1)


# --- resizing ----------------------------------------------------------------------------------


def test_enlarging_is_bilinear_with_pixel_centres_aligned() -> None:
    # Target j samples the source at (j + 0.5) * 2 / 4 - 0.5 = -0.25, 0.25, 0.75, 1.25 (clamped).
    np.testing.assert_allclose(
        resize_weights(2, 4), np.array([[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    )


def test_shrinking_averages_areas() -> None:
    np.testing.assert_allclose(resize_weights(4, 2), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    # 3 -> 2: each target covers 1.5 source pixels.
    np.testing.assert_allclose(resize_weights(3, 2), [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]])


def test_same_size_is_the_identity() -> None:
    np.testing.assert_array_equal(resize_weights(5, 5), np.eye(5))


def test_shrinking_an_image_gives_block_means() -> None:
    pixels = np.arange(256, dtype=np.float32).reshape(16, 16) / 256
    out = preprocess(image(pixels), spec(height=8, width=8, intensity=IDENTITY))
    expected = pixels.reshape(8, 2, 8, 2).mean(axis=(1, 3))
    assert out.shape == (1, 8, 8)
    np.testing.assert_allclose(out[0], expected, rtol=1e-6)


def test_shrinking_is_anti_aliased() -> None:
    # A one-pixel checkerboard shrunk by 2 is flat grey: the box filter removes the pattern
    # that point sampling would turn into a false flat black or white.
    checker = (np.indices((16, 16)).sum(axis=0) % 2).astype(np.float32)
    out = preprocess(image(checker), spec(height=8, width=8, intensity=IDENTITY))
    np.testing.assert_allclose(out, 0.5)


def test_enlarging_an_image_interpolates_bilinearly() -> None:
    pixels = np.array([[0.0, 1.0], [1.0, 0.0]])
    out = preprocess(image(pixels), spec(height=8, width=8, intensity=IDENTITY))
    rows, cols = resize_weights(2, 8), resize_weights(2, 8)
    np.testing.assert_allclose(out[0], rows @ pixels @ cols.T, rtol=1e-6)
    assert out[0, 0, 0] == 0.0 and out[0, 0, 7] == 1.0  # corners clamp to the source pixels


def test_rectangular_image_is_stretched_to_the_spec() -> None:
    out = preprocess(image(np.ones((10, 30))), spec(height=8, width=16, intensity=IDENTITY))
    assert out.shape == (1, 8, 16)
    np.testing.assert_allclose(out, 1.0)


# --- channels ----------------------------------------------------------------------------------


def test_gray_is_repeated_to_three_channels() -> None:
    pixels = np.linspace(0, 1, 64).reshape(8, 8)
    out = preprocess(image(pixels), spec(channels=3, intensity=IDENTITY))
    assert out.shape == (3, 8, 8)
    for channel in range(3):
        np.testing.assert_allclose(out[channel], pixels, rtol=1e-6)


def test_rgb_becomes_bt601_luma() -> None:
    rgb = np.zeros((8, 8, 3))
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 100, 50, 200
    out = preprocess(image(rgb), spec(channels=1, intensity=minmax(0, 255)))
    luma = 0.299 * 100 + 0.587 * 50 + 0.114 * 200  # 81.05
    np.testing.assert_allclose(out, luma / 255, rtol=1e-6)


@pytest.mark.parametrize(("have", "want"), [(2, 1), (3, 2), (4, 3), (2, 3)])
def test_unmappable_channel_counts_are_refused(have: int, want: int) -> None:
    with pytest.raises(
        ImageIncompatible,
        match=f"the model expects {want} channel\\(s\\) but the image has {have}",
    ):
        preprocess(image(np.zeros((8, 8, have))), spec(channels=want, intensity=IDENTITY))


# --- intensity ---------------------------------------------------------------------------------


def test_dicom_window_clips_and_scales() -> None:
    # center 40, width 400: -160 -> 0, 40 -> 0.5, 240 -> 1; outside clipped.
    values = np.array([[-1000, -160, 40, 140, 240, 3000, -60, 190]] * 8)
    out = preprocess(image(values), spec(height=8, width=8, intensity=window(40, 400)))
    np.testing.assert_allclose(out[0, 0], [0, 0, 0.5, 0.75, 1, 1, 0.25, 0.875], rtol=1e-6)


def test_model_window_wins_over_the_file_window() -> None:
    values = np.full((8, 8), 40.0)
    out = preprocess(
        image(values, window=(1000.0, 10.0)),
        spec(intensity=window(40, 400)),
    )
    np.testing.assert_allclose(out, 0.5)


def test_minmax_clips_and_scales() -> None:
    values = np.array([[-5, 0, 25, 100, 500, 1000, 50, 10]] * 8)
    out = preprocess(image(values), spec(height=8, width=8, intensity=minmax(0, 100)))
    np.testing.assert_allclose(out[0, 0], [0, 0, 0.25, 1, 1, 1, 0.5, 0.1], rtol=1e-6)


def test_meanstd_standardizes_per_channel() -> None:
    rgb = np.zeros((8, 8, 3))
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    out = preprocess(image(rgb), spec(channels=3, intensity=meanstd([0, 10, 20], [2, 5, 10])))
    np.testing.assert_allclose(out[:, 0, 0], [5, 2, 1], rtol=1e-6)


def test_meanstd_with_one_value_applies_to_every_channel() -> None:
    out = preprocess(image(np.full((8, 8), 30.0)), spec(channels=3, intensity=meanstd([10], [4])))
    np.testing.assert_allclose(out, 5.0)


# --- MONOCHROME1 -------------------------------------------------------------------------------


def test_monochrome1_is_inverted_after_the_window() -> None:
    values = np.array([[-160, 40, 140, 240] * 2] * 8)
    out = preprocess(
        image(values, monochrome1=True),
        spec(height=8, width=8, intensity=window(40, 400)),
    )
    np.testing.assert_allclose(out[0, 0], [1, 0.5, 0.25, 0] * 2, rtol=1e-6)


def test_monochrome1_is_inverted_after_minmax() -> None:
    values = np.array([[0, 25, 100, 100] * 2] * 8)
    out = preprocess(
        image(values, monochrome1=True), spec(height=8, width=8, intensity=minmax(0, 100))
    )
    np.testing.assert_allclose(out[0, 0], [1, 0.75, 0, 0] * 2, rtol=1e-6)


def test_monochrome1_before_meanstd_reflects_in_the_file_window() -> None:
    # Window 500 +- 500: (lo, hi) = (0, 1000), so x -> 1000 - x, then (x - 100) / 10.
    values = np.array([[0, 100, 900, 1000] * 2] * 8)
    out = preprocess(
        image(values, monochrome1=True, window=(500.0, 1000.0)),
        spec(height=8, width=8, intensity=meanstd([100], [10])),
    )
    np.testing.assert_allclose(out[0, 0], [90, 80, 0, -10] * 2, rtol=1e-6)


def test_monochrome1_before_meanstd_without_window_reflects_in_the_image_range() -> None:
    values = np.array([[10, 20, 30, 50] * 2] * 8)  # range (10, 50): x -> 60 - x
    out = preprocess(
        image(values, monochrome1=True),
        spec(height=8, width=8, intensity=meanstd([0], [1])),
    )
    np.testing.assert_allclose(out[0, 0], [50, 40, 30, 10] * 2, rtol=1e-6)


def test_monochrome1_ct_small_reads_inverted(tmp_path: Path) -> None:
    import pydicom

    from tests.validators.data.images import pydicom_file

    normal = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    normal.save_as(tmp_path / "mono2.dcm")
    normal.PhotometricInterpretation = "MONOCHROME1"
    normal.save_as(tmp_path / "mono1.dcm")
    ct_window = spec(height=128, width=128, intensity=window(40, 400))
    two = preprocess(read_image(tmp_path, case_at("mono2.dcm")), ct_window)
    one = preprocess(read_image(tmp_path, case_at("mono1.dcm")), ct_window)
    np.testing.assert_allclose(one, 1.0 - two, atol=1e-6)


def case_at(path: str) -> Any:
    from validators.data.datasets import Case

    return Case("c", "p", path, None, {}, {}, 2)


# --- output and refusals -----------------------------------------------------------------------


def test_output_is_contiguous_float32_and_deterministic() -> None:
    rng = np.random.default_rng(7)
    pixels = rng.normal(100, 50, (37, 53)).astype(np.float32)
    target = spec(channels=3, height=32, width=64, intensity=meanstd([100], [50]))
    first, second = preprocess(image(pixels), target), preprocess(image(pixels), target)
    assert first.dtype == np.float32 and first.flags.c_contiguous
    assert first.shape == (3, 32, 64)
    assert first.tobytes() == second.tobytes()


def test_zero_size_and_non_finite_images_are_refused() -> None:
    with pytest.raises(ImageIncompatible, match=r"at least one pixel"):
        preprocess(image(np.zeros((0, 8))), spec(intensity=IDENTITY))
    with pytest.raises(ImageIncompatible, match=r"NaN or infinite"):
        preprocess(image([[np.nan, 1.0]]), spec(intensity=IDENTITY))


def test_wrong_rank_is_refused() -> None:
    with pytest.raises(ImageIncompatible, match=r"4 dimensions .*expected \(H, W\) or \(H, W, C\)"):
        preprocess(image(np.zeros((2, 8, 8, 1))), spec(intensity=IDENTITY))


def test_load_case_tensor_is_preprocess_of_read_image(tmp_path: Path) -> None:
    write_dicom(tmp_path / "a.dcm", pixels=np.arange(100, dtype=np.int16).reshape(10, 10))
    write_manifest(tmp_path, "case_id,patient_id,path,label", ["c1,p1,a.dcm,1"])
    dataset = load_dataset(tmp_path)
    target = spec(height=8, width=8, intensity=minmax(0, 99))
    tensor = load_case_tensor(dataset, dataset.cases[0], target)
    expected = preprocess(read_image(dataset.root, dataset.cases[0]), target)
    assert tensor.tobytes() == expected.tobytes()


def test_load_case_tensor_names_the_case_when_incompatible(tmp_path: Path) -> None:
    write_png(tmp_path / "c.png", np.zeros((8, 8, 3), np.uint8))
    write_manifest(tmp_path, "case_id,patient_id,path,label", ["c1,p1,c.png,0"])
    dataset = load_dataset(tmp_path)
    with pytest.raises(ImageIncompatible, match=r"c.png \(line 2\): the model expects 2"):
        load_case_tensor(dataset, dataset.cases[0], spec(channels=2, intensity=IDENTITY))


def test_ct_small_windowed_and_halved_matches_pydicom_by_hand(tmp_path: Path) -> None:
    import shutil

    import pydicom
    from pydicom.pixels.processing import apply_modality_lut

    from tests.validators.data.images import pydicom_file

    shutil.copy(pydicom_file("CT_small.dcm"), tmp_path / "ct.dcm")
    ds = pydicom.dcmread(tmp_path / "ct.dcm")
    hu = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)  # 128 x 128
    windowed = np.clip((hu - (40 - 200)) / 400, 0, 1)
    expected = windowed.reshape(64, 2, 64, 2).mean(axis=(1, 3))  # area averaging by 2
    out = preprocess(
        read_image(tmp_path, case_at("ct.dcm")),
        spec(channels=3, height=64, width=64, intensity=window(40, 400)),
    )
    assert out.shape == (3, 64, 64)
    for channel in range(3):
        np.testing.assert_allclose(out[channel], expected, rtol=1e-6, atol=1e-7)
