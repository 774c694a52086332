"""Image readers: DICOM against pydicom's own decoding, PNG/JPEG modes, NPZ rows, and refusals."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.validators.data.images import pydicom_file, write_dicom, write_png
from validators.data.datasets import Case
from validators.data.readers import (
    READERS,
    DecodedImage,
    ImageUnreadable,
    detect_format,
    read_image,
)


def case(path: str, index: int | None = None) -> Case:
    return Case("c1", "p1", path, index, {"label": 0}, {}, 2)


def read(path: Path, index: int | None = None) -> DecodedImage:
    return read_image(path.parent, case(path.name, index))


def pydicom_reference(path: Path) -> np.ndarray:
    """pydicom's own decoding followed by its modality LUT: the independent reference."""
    import pydicom
    from pydicom.pixels.processing import apply_modality_lut

    ds = pydicom.dcmread(path)
    return np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float32)


# --- DICOM: pydicom's real files ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm", "SC_rgb_jpeg_dcmtk.dcm"],
)
def test_real_dicom_files_decode_as_pydicom_does(name: str, tmp_path: Path) -> None:
    path = Path(shutil.copy(pydicom_file(name), tmp_path / name))
    image = read(path)
    expected = pydicom_reference(path)
    assert image.pixels.dtype == np.float32
    assert image.pixels.shape == expected.shape
    np.testing.assert_array_equal(image.pixels, expected)


def test_ct_rescale_intercept_gives_hounsfield_units(tmp_path: Path) -> None:
    path = Path(shutil.copy(pydicom_file("CT_small.dcm"), tmp_path / "ct.dcm"))
    import pydicom

    stored = pydicom.dcmread(path).pixel_array.astype(np.float32)
    # CT_small.dcm: RescaleSlope 1, RescaleIntercept -1024.
    np.testing.assert_array_equal(read(path).pixels, stored - 1024.0)


def test_file_window_is_carried_and_ct_without_one_has_none(tmp_path: Path) -> None:
    mr = Path(shutil.copy(pydicom_file("MR_small.dcm"), tmp_path / "mr.dcm"))
    ct = Path(shutil.copy(pydicom_file("CT_small.dcm"), tmp_path / "ct.dcm"))
    assert read(mr).window == (600.0, 1600.0)
    assert read(ct).window is None


def test_rgb_jpeg_dicom_is_color_in_rgb_order(tmp_path: Path) -> None:
    path = Path(shutil.copy(pydicom_file("SC_rgb_jpeg_dcmtk.dcm"), tmp_path / "rgb.dcm"))
    image = read(path)
    assert image.pixels.shape == (100, 100, 3)
    assert not image.monochrome1


def test_real_dicom_acquisition_tags_are_read(tmp_path: Path) -> None:
    path = Path(shutil.copy(pydicom_file("CT_small.dcm"), tmp_path / "ct.dcm"))
    tags = read(path).tags
    assert tags["manufacturer"] == "GE MEDICAL SYSTEMS"
    assert tags["kvp"] == "120"
    assert tags["pixel_spacing"] == "0.661468x0.661468"
    assert READERS["dicom"].inspect(path) == tags


def test_monochrome1_written_from_ct_small_is_flagged(tmp_path: Path) -> None:
    import pydicom

    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    path = tmp_path / "mono1.dcm"
    ds.save_as(path)
    image = read(path)
    assert image.monochrome1
    np.testing.assert_array_equal(image.pixels, pydicom_reference(path))


def test_jpeg_ls_is_refused_naming_the_transfer_syntax(tmp_path: Path) -> None:
    path = Path(shutil.copy(pydicom_file("MR_small_jpeg_ls_lossless.dcm"), tmp_path / "ls.dcm"))
    for action in (lambda: read(path), lambda: READERS["dicom"].inspect(path)):
        with pytest.raises(ImageUnreadable) as caught:
            action()
        message = str(caught.value)
        assert message.startswith("ls.dcm uses JPEG-LS Lossless Image Compression")
        assert "1.2.840.10008.1.2.4.80" in message
        assert "no installed decoder handles" in message
        assert "uncompressed transfer syntax" in message  # what to do


def test_pydicom_truncated_file_is_refused_on_inspect_and_read(tmp_path: Path) -> None:
    path = Path(shutil.copy(pydicom_file("MR_truncated.dcm"), tmp_path / "cut.dcm"))
    with pytest.raises(ImageUnreadable, match=r"cut.dcm is truncated: .* declares 8192 bytes"):
        READERS["dicom"].inspect(path)
    with pytest.raises(ImageUnreadable, match=r"cut.dcm could not be decoded .*truncated"):
        read(path)


def test_a_file_cut_short_is_refused(tmp_path: Path) -> None:
    whole = pydicom_file("CT_small.dcm").read_bytes()
    path = tmp_path / "half.dcm"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImageUnreadable, match=r"half.dcm is truncated"):
        READERS["dicom"].inspect(path)
    with pytest.raises(ImageUnreadable, match=r"half.dcm"):
        read(path)


def test_a_file_cut_inside_its_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "head.dcm"
    path.write_bytes(pydicom_file("CT_small.dcm").read_bytes()[:400])
    with pytest.raises(ImageUnreadable, match=r"head.dcm"):
        READERS["dicom"].inspect(path)
    with pytest.raises(ImageUnreadable, match=r"head.dcm"):
        read(path)


# --- DICOM: synthetic files --------------------------------------------------------------------


def test_synthetic_rescale_slope_and_intercept_are_applied(tmp_path: Path) -> None:
    stored = np.array([[0, 1, 2], [3, 4, 100]], dtype=np.int16)
    path = write_dicom(tmp_path / "r.dcm", pixels=stored, slope=2.5, intercept=-10)
    expected = stored.astype(np.float32) * 2.5 - 10
    np.testing.assert_array_equal(read(path).pixels, expected)


def test_synthetic_multi_valued_window_takes_the_first(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "w.dcm", window=([40, 400], [400, 2000]))
    assert read(path).window == (40.0, 400.0)


def test_synthetic_tags_present_are_read_under_assay_names(tmp_path: Path) -> None:
    path = write_dicom(
        tmp_path / "t.dcm",
        tags={
            "Manufacturer": "Acme",
            "ManufacturerModelName": "X1",
            "KVP": 110,
            "ExposureInmAs": 2.5,
            "PixelSpacing": [0.2, 0.25],
            "ViewPosition": "PA",
            "BodyPartExamined": "CHEST",
            "ProtocolName": "Chest PA",
        },
    )
    assert read(path).tags == {
        "manufacturer": "Acme",
        "manufacturer_model": "X1",
        "kvp": "110",
        "exposure_mas": "2.5",
        "pixel_spacing": "0.2x0.25",
        "view": "PA",
        "body_part": "CHEST",
        "protocol": "Chest PA",
    }


def test_synthetic_tags_absent_or_empty_are_left_out(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "t.dcm", tags={"Manufacturer": "", "ViewPosition": "AP"})
    assert read(path).tags == {"view": "AP"}


def test_multi_frame_dicom_is_refused(tmp_path: Path) -> None:
    frames = np.zeros((2, 4, 4), dtype=np.int16)
    path = write_dicom(tmp_path / "mf.dcm", pixels=frames, frames=2)
    with pytest.raises(ImageUnreadable, match=r"mf.dcm holds 2 frames but a case is one image"):
        READERS["dicom"].inspect(path)
    with pytest.raises(ImageUnreadable, match=r"holds 2 frames"):
        read(path)


def test_zero_size_dicom_is_refused(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "z.dcm", pixels=np.zeros((0, 4), dtype=np.int16))
    with pytest.raises(ImageUnreadable, match=r"z.dcm has an image of 0x4 pixels"):
        READERS["dicom"].inspect(path)


# --- PNG and JPEG ------------------------------------------------------------------------------


def test_png_8_bit_gray_values_as_stored(tmp_path: Path) -> None:
    pixels = np.array([[0, 128], [200, 255]], dtype=np.uint8)
    image = read(write_png(tmp_path / "g.png", pixels))
    np.testing.assert_array_equal(image.pixels, pixels.astype(np.float32))
    assert image.window is None and not image.monochrome1 and image.tags == {}


def test_png_16_bit_gray_values_as_stored(tmp_path: Path) -> None:
    pixels = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    image = read(write_png(tmp_path / "g16.png", pixels))
    np.testing.assert_array_equal(image.pixels, pixels.astype(np.float32))


def test_png_rgb_is_height_width_channels(tmp_path: Path) -> None:
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    image = read(write_png(tmp_path / "c.png", pixels))
    np.testing.assert_array_equal(image.pixels, pixels.astype(np.float32))


def test_jpeg_gray_is_read(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "g.jpg"
    Image.fromarray(np.full((8, 8), 100, dtype=np.uint8)).save(path, quality=100)
    image = read(path)
    assert detect_format(path) == "jpeg"
    assert image.pixels.shape == (8, 8)
    assert np.abs(image.pixels - 100).max() <= 1  # lossy, but a flat image survives


@pytest.mark.parametrize(
    ("shape", "mode", "what"),
    [
        ((4, 4, 4), "RGBA", "RGB with alpha, 4 channels"),
        ((4, 4, 2), "LA", "grayscale with alpha, 2 channels"),
    ],
)
def test_png_with_alpha_is_refused(
    tmp_path: Path, shape: tuple[int, ...], mode: str, what: str
) -> None:
    path = write_png(tmp_path / "a.png", np.zeros(shape, dtype=np.uint8), mode=mode)
    with pytest.raises(
        ImageUnreadable,
        match=f"a.png is an image in Pillow mode {mode} \\({what}\\), but only 8- or 16-bit",
    ):
        READERS["png"].inspect(path)
    with pytest.raises(ImageUnreadable, match=what):
        read(path)


def test_palette_png_is_refused(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "p.png"
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).convert("P").save(path)
    with pytest.raises(ImageUnreadable, match=r"palette"):
        read(path)


def test_truncated_png_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    whole = write_png(tmp_path / "w.png", rng.integers(0, 255, (64, 64), dtype=np.uint8))
    path = tmp_path / "t.png"
    path.write_bytes(whole.read_bytes()[:200])
    with pytest.raises(ImageUnreadable, match=r"t.png could not be decoded .*truncated"):
        read(path)


# --- NPZ ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_row_is_read(tmp_path: Path, compressed: bool) -> None:
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    path = tmp_path / "d.npz"
    save = np.savez_compressed if compressed else np.savez
    save(path, test_images=images, test_labels=np.array([0, 1, 0]))
    for index in range(3):
        np.testing.assert_array_equal(read(path, index).pixels, images[index].astype(np.float32))


def test_npz_single_channel_axis_is_dropped_and_rgb_kept(tmp_path: Path) -> None:
    gray = np.zeros((2, 4, 4, 1), dtype=np.uint16)
    np.savez(tmp_path / "g.npz", test_images=gray, test_labels=np.zeros(2, dtype=np.int64))
    assert read(tmp_path / "g.npz", 1).pixels.shape == (4, 4)
    rgb = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / "c.npz", test_images=rgb, test_labels=np.zeros(2, dtype=np.int64))
    assert read(tmp_path / "c.npz", 0).pixels.shape == (4, 4, 3)


def test_npz_row_out_of_range_and_missing_index_are_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", test_images=np.zeros((2, 4, 4), np.uint8), test_labels=[0, 1])
    with pytest.raises(ImageUnreadable, match=r"has 2 images but the case asks for row 5"):
        read(tmp_path / "d.npz", 5)
    with pytest.raises(ImageUnreadable, match=r"names no row index"):
        read(tmp_path / "d.npz", None)


def test_npz_image_array_of_the_wrong_rank_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", test_images=np.zeros((2, 4), np.uint8), test_labels=[0, 1])
    with pytest.raises(
        ImageUnreadable, match=r"d.npz holds test_images as uint8 of shape \(2, 4\)"
    ):
        read(tmp_path / "d.npz", 0)


# --- format detection and containment ----------------------------------------------------------


def test_unknown_and_empty_files_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(ImageUnreadable, match=r"is not DICOM, PNG, JPEG or NPZ"):
        detect_format(text)
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    with pytest.raises(ImageUnreadable, match=r"empty.dcm is empty"):
        detect_format(empty)


def test_detect_format_by_signature_not_name(tmp_path: Path) -> None:
    from PIL import Image

    png = tmp_path / "really_png.jpg"
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(png, format="PNG")
    assert detect_format(png) == "png"
    dicom = write_dicom(tmp_path / "no_suffix")
    assert detect_format(dicom) == "dicom"


def test_read_image_refuses_a_path_that_leaves_the_root(tmp_path: Path) -> None:
    outside = write_png(tmp_path / "outside.png", np.zeros((2, 2), np.uint8))
    root = tmp_path / "root"
    root.mkdir()
    (root / "link.png").symlink_to(outside)
    for relative in ("../outside.png", "link.png"):
        with pytest.raises(ImageUnreadable, match=r"outside the dataset root"):
            read_image(root, case(relative))


@pytest.mark.parametrize("name", ["JPEG2000.dcm", "SC_rgb_jpeg_dcmtk.dcm", "MR_small_RLE.dcm"])
def test_compressed_dicom_cut_short_is_refused(tmp_path: Path, name: str) -> None:
    whole = pydicom_file(name).read_bytes()
    path = tmp_path / "cut.dcm"
    # MR_small_RLE.dcm has 146 bytes after its pixel data: cut into the pixel data itself.
    path.write_bytes(whole[: len(whole) - 200])
    with pytest.raises(ImageUnreadable, match=r"cut.dcm is truncated: the file ends inside"):
        READERS["dicom"].inspect(path)
    with pytest.raises(ImageUnreadable, match=r"cut.dcm is truncated: the file ends inside"):
        read(path)


def test_zero_size_png_is_refused(tmp_path: Path) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 0, 4, 8, 0, 0, 0, 0)  # width 0, height 4, 8-bit gray
    path = tmp_path / "zero.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )
    with pytest.raises(ImageUnreadable, match=r"zero.png is not a readable PNG image"):
        READERS["png"].inspect(path)
