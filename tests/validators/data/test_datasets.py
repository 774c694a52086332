"""Datasets: a valid one read whole, and every bad input refused at once with its line."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.validators.data.images import pydicom_file, write_dicom, write_manifest, write_png
from validators.data.datasets import (
    Case,
    Dataset,
    DatasetInvalid,
    DatasetProblem,
    load_dataset,
)
from validators.problems import InputInvalid

HEADER = "case_id,patient_id,path,label"


def dicom_dataset(root: Path, rows: int = 3) -> Path:
    for i in range(rows):
        write_dicom(
            root / "img" / f"{i}.dcm",
            pixels=np.full((4, 4), i, dtype=np.int16),
            tags={"Manufacturer": "Acme" if i % 2 else "Zeta", "KVP": 100 + i},
        )
    write_manifest(
        root,
        "case_id,patient_id,path,label,sex,site",
        [f"c{i},p{i // 2},img/{i}.dcm,{i % 2},{'F' if i < 2 else 'M'},A" for i in range(rows)],
    )
    return root


def refused(root: Path, **kwargs: object) -> list[DatasetProblem]:
    with pytest.raises(DatasetInvalid) as caught:
        load_dataset(root, **kwargs)  # type: ignore[arg-type]
    problems = list(caught.value.problems)
    assert all(isinstance(p, DatasetProblem) for p in problems)
    return problems  # type: ignore[return-value]


def where(problems: list[DatasetProblem]) -> list[str]:
    return [p.path for p in problems]


# --- a valid dataset ---------------------------------------------------------------------------


def test_dicom_dataset_reads_cases_labels_attributes_and_tags(tmp_path: Path) -> None:
    dataset = load_dataset(dicom_dataset(tmp_path))
    assert isinstance(dataset, Dataset)
    assert dataset.root == tmp_path.resolve()
    assert dataset.manifest == tmp_path.resolve() / "cases.csv"
    assert dataset.format == "dicom"
    assert dataset.labels == ("label",)
    assert dataset.cases[1] == Case(
        case_id="c1",
        patient_id="p0",
        path="img/1.dcm",
        index=None,
        labels={"label": 1},
        attributes={"manufacturer": "Acme", "kvp": "101", "sex": "F", "site": "A"},
        line=3,
    )
    assert dataset.attribute_names == ("sex", "site", "manufacturer", "kvp")
    assert dataset.n_cases == 3 and dataset.n_patients == 2
    assert dataset.positives == {"label": 1}
    assert dataset.attribute_counts["manufacturer"] == {"Acme": 1, "Zeta": 2}
    assert dataset.attribute_counts["sex"] == {"F": 2, "M": 1}


def test_digest_is_sha256_over_manifest_then_each_file_framed(tmp_path: Path) -> None:
    dataset = load_dataset(dicom_dataset(tmp_path))
    manifest = (tmp_path / "cases.csv").read_bytes()
    expected = hashlib.sha256(len(manifest).to_bytes(8, "big") + manifest)
    for case in dataset.cases:
        data = (tmp_path / case.path).read_bytes()
        name = case.path.encode()
        expected.update(len(name).to_bytes(8, "big") + name + len(data).to_bytes(8, "big") + data)
    assert dataset.digest == expected.hexdigest()


def test_digest_changes_with_one_image_byte_and_not_otherwise(tmp_path: Path) -> None:
    first = load_dataset(dicom_dataset(tmp_path)).digest
    assert load_dataset(tmp_path).digest == first
    image = tmp_path / "img" / "2.dcm"
    data = bytearray(image.read_bytes())
    data[-1] ^= 1
    image.write_bytes(bytes(data))
    assert load_dataset(tmp_path).digest != first


def test_manifest_value_wins_over_the_dicom_tag(tmp_path: Path) -> None:
    write_dicom(tmp_path / "a.dcm", tags={"Manufacturer": "Acme"})
    write_dicom(tmp_path / "b.dcm", tags={"Manufacturer": "Acme"})
    write_manifest(tmp_path, f"{HEADER},manufacturer", ["c1,p1,a.dcm,0,Fixed", "c2,p2,b.dcm,1,"])
    dataset = load_dataset(tmp_path)
    # A filled cell wins; an empty one leaves the header's value.
    assert [c.attributes["manufacturer"] for c in dataset.cases] == ["Fixed", "Acme"]


def test_read_tags_false_opens_no_header(tmp_path: Path) -> None:
    dataset = load_dataset(dicom_dataset(tmp_path), read_tags=False)
    assert dataset.attribute_names == ("sex", "site")
    assert "manufacturer" not in dataset.cases[0].attributes


def test_multilabel_png_dataset(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    write_png(tmp_path / "b.png", np.zeros((4, 4, 3), np.uint8))
    write_manifest(
        tmp_path,
        "case_id,patient_id,path,label:effusion,label:nodule",
        ["c1,p1,a.png,1,0", "c2,p2,b.png,1,1"],
    )
    dataset = load_dataset(tmp_path)
    assert dataset.format == "png"
    assert dataset.labels == ("effusion", "nodule")
    assert dataset.positives == {"effusion": 2, "nodule": 1}


def test_manifest_elsewhere_by_absolute_path_and_utf8_bom(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_png(root / "a.png", np.zeros((4, 4), np.uint8))
    other = tmp_path / "lists" / "mine.csv"
    other.parent.mkdir()
    other.write_bytes(b"\xef\xbb\xbfcase_id,patient_id,path,label\r\nc1,p1,a.png,1\r\n")
    dataset = load_dataset(root, other)
    assert dataset.manifest == other and dataset.cases[0].case_id == "c1"


def test_required_attribute_from_dicom_tags(tmp_path: Path) -> None:
    dataset = load_dataset(dicom_dataset(tmp_path), attributes=["manufacturer", "sex"])
    assert dataset.n_cases == 3


# --- every problem at once ---------------------------------------------------------------------


def test_every_bad_row_is_listed_at_once_with_its_line(tmp_path: Path) -> None:
    for name in ("a", "b", "c", "d"):
        write_png(tmp_path / f"{name}.png", np.zeros((4, 4), np.uint8))
    (tmp_path.parent / "outside.png").write_bytes((tmp_path / "a.png").read_bytes())
    (tmp_path / "link.png").symlink_to(tmp_path.parent / "outside.png")
    write_manifest(
        tmp_path,
        f"{HEADER},sex",
        [
            "c1,p1,a.png,1,F",  # line 2: fine
            "c1,p2,b.png,0,M",  # line 3: duplicate case id
            "c3,p1,c.png,2,M",  # line 4: label 2, and patient p1 was F on line 2
            "c4,p4,missing.png,0,F",  # line 5: no such file
            "c5,p5,../outside.png,0,F",  # line 6: leaves the root
            "c6,p6,/etc/passwd,0,F",  # line 7: absolute
            "c7,p7,link.png,1,F",  # line 8: symlink pointing out
            "c8,p8,d.png,,F",  # line 9: empty label
            ",p9,a.png,1,F",  # line 10: no case id, and a.png used on line 2
        ],
    )
    problems = refused(tmp_path)
    assert where(problems) == [
        "line 3, column case_id",
        "line 4, column sex",
        "line 4, column label",
        "line 5, column path",
        "line 6, column path",
        "line 7, column path",
        "line 8, column path",
        "line 9, column label",
        "line 10, column case_id",
        "line 10, column path",
    ]
    assert [p.line for p in problems] == [3, 4, 4, 5, 6, 7, 8, 9, 10, 10]
    messages = [p.message for p in problems]
    assert "already used on line 2" in messages[0]
    assert "'M' here but 'F' on line 2" in messages[1]
    assert "the label is '2' but a label is 0 or 1" in messages[2]
    assert "no file at 'missing.png'" in messages[3]
    assert "leaves the dataset root ('..')" in messages[4]
    assert "is absolute" in messages[5]
    assert "symbolic link" in messages[6] and "outside the dataset root" in messages[6]
    assert "the label is empty" in messages[7]
    assert "case_id is empty" in messages[8]
    assert "is the image of line 2 too" in messages[9]


def test_refusal_is_an_input_invalid_with_a_readable_message(tmp_path: Path) -> None:
    write_manifest(tmp_path, HEADER, ["c1,p1,nothing.png,1"])
    with pytest.raises(InputInvalid) as caught:
        load_dataset(tmp_path)
    assert isinstance(caught.value, DatasetInvalid)
    assert caught.value.code == "dataset_invalid"
    assert "has 1 problem(s): line 2, column path: no file at 'nothing.png'" in str(caught.value)


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        ("patient_id,path,label", "case_id"),
        ("case_id,path,label", "patient_id"),
        ("case_id,patient_id,label", "path"),
    ],
)
def test_missing_required_column(tmp_path: Path, header: str, missing: str) -> None:
    write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    write_manifest(tmp_path, header, ["x,a.png,1", "y,a.png,0"])
    problems = refused(tmp_path)
    # One problem on the header, not one more on every row.
    assert [p.path for p in problems if missing in p.message] == ["line 1"]
    assert f"column {missing!r} is missing" in problems[0].message


def test_a_label_with_two_columns(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    write_manifest(tmp_path, "case_id,patient_id,path,label:a,label: a", ["c1,p1,a.png,1,1"])
    (problem,) = refused(tmp_path)
    assert problem.path == "line 1, column label: a"
    assert "label 'a' has two columns ('label:a' and 'label: a')" in problem.message


def test_no_label_column(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    write_manifest(tmp_path, "case_id,patient_id,path,sex", ["c1,p1,a.png,F"])
    (problem,) = refused(tmp_path)
    assert problem.path == "line 1" and "there is no label column" in problem.message


def test_missing_required_attribute_column(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    write_manifest(tmp_path, f"{HEADER},sex", ["c1,p1,a.png,1,F"])
    (problem,) = refused(tmp_path, attributes=["sex", "site"])
    assert problem.path == "line 1"
    assert "attribute column 'site' is missing but is required" in problem.message


def test_required_attribute_empty_on_a_row(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    write_png(tmp_path / "b.png", np.zeros((4, 4), np.uint8))
    write_manifest(tmp_path, f"{HEADER},site", ["c1,p1,a.png,1,A", "c2,p2,b.png,1,"])
    (problem,) = refused(tmp_path, attributes=["site"])
    assert problem.path == "line 3, column site"


def test_required_dicom_attribute_absent_from_a_header(tmp_path: Path) -> None:
    write_dicom(tmp_path / "a.dcm", tags={"ViewPosition": "PA"})
    write_dicom(tmp_path / "b.dcm")
    write_manifest(tmp_path, HEADER, ["c1,p1,a.dcm,1", "c2,p2,b.dcm,0"])
    (problem,) = refused(tmp_path, attributes=["view"])
    assert problem.path == "line 3"
    assert problem.message == (
        "attribute 'view' is required but neither the manifest nor the DICOM header gives one "
        "for this case; fill it in"
    )


def test_patient_level_attributes_must_agree(tmp_path: Path) -> None:
    for name in "abc":
        write_png(tmp_path / f"{name}.png", np.zeros((4, 4), np.uint8))
    write_manifest(
        tmp_path,
        f"{HEADER},race,ethnicity,age",
        ["c1,p1,a.png,1,Asian,X,50", "c2,p1,b.png,0,White,X,51", "c3,p1,c.png,0,Asian,Y,52"],
    )
    problems = refused(tmp_path)
    # age changes between studies, so it is not a patient-level attribute.
    assert where(problems) == ["line 3, column race", "line 4, column ethnicity"]


@pytest.mark.parametrize(
    ("content", "path", "needle"),
    [
        (b"", "", "is empty"),
        (b"\n\n  \n", "", "is empty"),
        (b"case_id,patient_id,path,label\n", "line 1", "a header but no rows"),
        (b"case_id,patient_id,path,label\nc1,p1,a\x00.png,1\n", "line 2", "NUL byte"),
        (b"case_id,patient_id,path,label\nc1,p1,\xe9.png,1\n", "line 2", "is not UTF-8"),
        (b"case_id,patient_id,path,label\nc1,p1,a.png\n", "line 2", "has 3 fields"),
        (b'case_id,patient_id,path,label\nc1,p1,"a.png"x,1\n', "line 2", "not valid CSV"),
        (b"case_id,case_id,path,label\nc1,p1,a.png,1\n", "line 1, column case_id", "twice"),
    ],
)
def test_unusable_manifest_text(tmp_path: Path, content: bytes, path: str, needle: str) -> None:
    write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "cases.csv").write_bytes(content)
    problems = refused(tmp_path)
    assert any(p.path == path and needle in p.message for p in problems), problems


def test_utf16_manifest_is_refused_line_by_line_with_a_summary(tmp_path: Path) -> None:
    text = "case_id,patient_id,path,label\n" + "".join(f"c{i},p,a.png,1\n" for i in range(20))
    (tmp_path / "cases.csv").write_bytes(text.encode("utf-16"))
    problems = refused(tmp_path)
    # 22 lines hold a NUL: 21 of text, and the high byte of the last newline after it.
    assert len(problems) == 11 and "UTF-16" in problems[0].message
    assert problems[-1].message == "and 12 more lines with NUL bytes"


def test_root_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    real = dicom_dataset(tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(real)
    (problem,) = refused(link)
    assert problem.path == "" and problem.line is None
    assert "is a symbolic link" in problem.message and "give the real directory" in problem.message


def test_missing_root_and_missing_manifest(tmp_path: Path) -> None:
    (problem,) = refused(tmp_path / "nowhere")
    assert "does not exist" in problem.message
    (problem,) = refused(tmp_path)
    assert "no manifest at" in problem.message


def test_manifest_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = write_manifest(tmp_path, HEADER, ["c1,p1,a.png,1"], name="elsewhere.csv")
    (root / "cases.csv").symlink_to(outside)
    (problem,) = refused(root)
    assert "outside the dataset root" in problem.message


def test_directory_as_path_and_mixed_formats(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    write_dicom(tmp_path / "b.dcm")
    write_manifest(tmp_path, HEADER, ["c1,p1,a.png,1", "c2,p2,b.dcm,0", "c3,p3,folder,0"])
    problems = refused(tmp_path)
    assert where(problems) == ["line 3, column path", "line 4, column path"]
    assert "b.dcm is DICOM but the dataset is PNG (line 2)" in problems[0].message
    assert "'folder' is not a file" in problems[1].message


def test_bad_images_are_found_by_their_headers(tmp_path: Path) -> None:
    shutil.copy(pydicom_file("MR_truncated.dcm"), tmp_path / "cut.dcm")
    shutil.copy(pydicom_file("MR_small_jpeg_ls_lossless.dcm"), tmp_path / "ls.dcm")
    write_dicom(tmp_path / "mf.dcm", pixels=np.zeros((2, 4, 4), np.int16), frames=2)
    write_dicom(tmp_path / "zero.dcm", pixels=np.zeros((0, 4), np.int16))
    write_dicom(tmp_path / "fine.dcm")
    (tmp_path / "empty.dcm").write_bytes(b"")
    write_manifest(
        tmp_path,
        HEADER,
        [
            "c1,p1,fine.dcm,1",
            "c2,p2,cut.dcm,0",
            "c3,p3,ls.dcm,0",
            "c4,p4,mf.dcm,0",
            "c5,p5,zero.dcm,0",
            "c6,p6,empty.dcm,0",
        ],
    )
    problems = refused(tmp_path)
    assert [p.line for p in problems] == [3, 4, 5, 6, 7]
    assert "cut.dcm is truncated" in problems[0].message
    assert "JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80)" in problems[1].message
    assert "holds 2 frames" in problems[2].message
    assert "0x4 pixels" in problems[3].message
    assert "empty.dcm is empty" in problems[4].message


@pytest.mark.parametrize(("shape", "mode"), [((4, 4, 4), "RGBA"), ((4, 4, 2), "LA")])
def test_png_with_a_channel_count_that_is_not_read(
    tmp_path: Path, shape: tuple[int, ...], mode: str
) -> None:
    write_png(tmp_path / "a.png", np.zeros(shape, np.uint8), mode=mode)
    write_manifest(tmp_path, HEADER, ["c1,p1,a.png,1"])
    (problem,) = refused(tmp_path)
    assert problem.path == "line 2, column path"
    assert f"Pillow mode {mode}" in problem.message


# --- NPZ ---------------------------------------------------------------------------------------


def npz(root: Path, images: np.ndarray, labels: object, name: str = "data.npz") -> None:
    root.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(root / name, test_images=images, test_labels=np.asarray(labels))


def test_npz_dataset_takes_labels_from_the_array(tmp_path: Path) -> None:
    npz(tmp_path, np.zeros((3, 8, 8), np.uint8), [[0], [1], [1]])
    write_manifest(tmp_path, "case_id,patient_id,sex", ["a,p1,F", "b,p1,F", "c,p2,M"])
    dataset = load_dataset(tmp_path)
    assert dataset.format == "npz" and dataset.labels == ("label",)
    assert [(c.path, c.index, c.labels["label"]) for c in dataset.cases] == [
        ("data.npz", 0, 0),
        ("data.npz", 1, 1),
        ("data.npz", 2, 1),
    ]
    assert dataset.positives == {"label": 2}


def test_npz_label_columns_must_equal_the_array(tmp_path: Path) -> None:
    npz(tmp_path, np.zeros((2, 8, 8, 3), np.uint8), [[0, 1], [1, 1]])
    write_manifest(tmp_path, "case_id,patient_id,label:a,label:b", ["x,p1,0,1", "y,p2,1,0"])
    (problem,) = refused(tmp_path)
    assert problem.path == "line 3, column label:b"
    assert "test_labels[1] holds 1" in problem.message


def test_npz_several_labels_need_names(tmp_path: Path) -> None:
    npz(tmp_path, np.zeros((1, 8, 8), np.uint8), [[0, 1]])
    write_manifest(tmp_path, "case_id,patient_id", ["x,p1"])
    (problem,) = refused(tmp_path)
    assert "has 2 labels but the manifest names none" in problem.message


@pytest.mark.parametrize(
    ("images", "needle"),
    [
        (np.zeros((2, 8), np.uint8), "expected (N, H, W) or (N, H, W, C)"),
        (np.zeros((2, 8, 8, 2), np.uint8), "expected (N, H, W) or (N, H, W, C)"),
        (np.zeros((2, 8, 8), np.float32), "expected uint8 or uint16"),
        (np.zeros((2, 0, 8), np.uint8), "at least one pixel"),
    ],
)
def test_npz_image_array_of_the_wrong_shape_or_type(
    tmp_path: Path, images: np.ndarray, needle: str
) -> None:
    npz(tmp_path, images, [0, 1])
    write_manifest(tmp_path, "case_id,patient_id", ["x,p1", "y,p2"])
    problems = refused(tmp_path)
    assert any(needle in p.message for p in problems), problems


def test_npz_rows_must_match_images_and_labels_be_binary(tmp_path: Path) -> None:
    npz(tmp_path, np.zeros((3, 8, 8), np.uint8), [0, 2, 1])
    write_manifest(tmp_path, "case_id,patient_id", ["x,p1", "y,p2"])
    messages = [p.message for p in refused(tmp_path)]
    assert any("values other than 0 and 1 (rows 1)" in m for m in messages)
    assert any("the manifest has 2 rows but data.npz holds 3 images" in m for m in messages)


def test_npz_refuses_two_files_and_a_path_column(tmp_path: Path) -> None:
    npz(tmp_path, np.zeros((1, 8, 8), np.uint8), [0])
    npz(tmp_path, np.zeros((1, 8, 8), np.uint8), [0], name="other.npz")
    write_manifest(tmp_path, "case_id,patient_id", ["x,p1"])
    (problem,) = refused(tmp_path)
    assert "holds 2 NPZ files (data.npz, other.npz)" in problem.message
    (tmp_path / "other.npz").unlink()
    write_manifest(tmp_path, "case_id,patient_id,path,label", ["x,p1,data.npz,0"])
    (problem,) = refused(tmp_path)
    assert problem.path == "line 2, column path" and "is an NPZ file" in problem.message
