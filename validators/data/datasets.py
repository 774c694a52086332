"""Held-out datasets: a root directory and a manifest CSV, checked whole, hashed and counted.

`load_dataset(root)` reads the manifest (`cases.csv` in the root by default), checks every row
and every image file's header, and raises DatasetInvalid listing every problem at once, each
with its manifest line. A dataset that passes carries its cases, its labels, its attribute
table (manifest columns plus DICOM acquisition tags) and a digest over the manifest and every
image file, so the same bytes give the same digest and any changed byte a different one.

The manifest (DESIGN.md): `case_id`, `patient_id`, `path` (relative to the root, never leaving
it), label columns (`label`, or `label:<name>` per label; 0 or 1), and attribute columns. An NPZ
dataset (one `*.npz` in the root, MedMNIST keys) has no `path` column: row i is image i.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np

from validators.data.casefile import (
    DatasetInvalid,
    DatasetProblem,
    ManifestRow,
    ManifestTable,
    dataset_problem,
    parse_manifest_csv,
)
from validators.data.readers import READERS, ImageUnreadable, detect_format
from validators.data.readers.base import ImageFormat
from validators.data.readers.dicom import ACQUISITION_TAGS
from validators.data.readers.npz import IMAGES_KEY, LABELS_KEY, npz_labels, npz_layout

__all__ = [
    "DEFAULT_MANIFEST",
    "DICOM_TAG_ATTRIBUTES",
    "PATIENT_LEVEL_ATTRIBUTES",
    "Case",
    "Dataset",
    "DatasetInvalid",
    "DatasetProblem",
    "load_dataset",
]

DEFAULT_MANIFEST = "cases.csv"
PATIENT_LEVEL_ATTRIBUTES = ("sex", "race", "ethnicity")
"""Attributes of the patient, not the image: every row of one patient must agree on them."""
DICOM_TAG_ATTRIBUTES = tuple(ACQUISITION_TAGS)
"""The attribute names DICOM acquisition tags are read into (see readers.dicom)."""

_ID_COLUMNS = ("case_id", "patient_id")
_LABEL_VALUES = {"0": 0, "1": 1}
_CHUNK = 1024 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")
_SHAPE_HINT = (
    "a dataset manifest has the columns case_id, patient_id, path, then `label` (one binary "
    "label) or `label:<name>` per label, then attribute columns"
)


@dataclass(frozen=True)
class Case:
    """One case: one image of one patient, its labels and attributes, and its manifest line."""

    case_id: str
    patient_id: str
    path: str  # relative POSIX path inside the root; for NPZ the npz file's name
    index: int | None  # row in the NPZ arrays, else None
    labels: dict[str, int]
    attributes: dict[str, str]  # manifest attributes plus DICOM acquisition tags (non-empty)
    line: int


@dataclass(frozen=True)
class Dataset:
    """A checked dataset: its cases in manifest order, labels, attributes, format and digest."""

    root: Path
    manifest: Path
    cases: tuple[Case, ...]
    labels: tuple[str, ...]
    attribute_names: tuple[str, ...]
    digest: str
    format: Literal["dicom", "png", "jpeg", "npz"]

    @property
    def n_cases(self) -> int:
        """Gives back the number of cases (images)."""
        return len(self.cases)

    @property
    def n_patients(self) -> int:
        """Gives back the number of distinct patients."""
        return len({case.patient_id for case in self.cases})

    @property
    def positives(self) -> dict[str, int]:
        """Gives back the number of positive cases per label."""
        return {name: sum(case.labels[name] for case in self.cases) for name in self.labels}

    @property
    def attribute_counts(self) -> dict[str, dict[str, int]]:
        """Gives back, per attribute, the number of cases per value (cases without one omitted)."""
        counts: dict[str, dict[str, int]] = {}
        for name in self.attribute_names:
            values = Counter(c.attributes[name] for c in self.cases if name in c.attributes)
            counts[name] = dict(sorted(values.items()))
        return counts

    def image_path(self, case: Case) -> Path:
        """Gives back the absolute path of a case's image file."""
        return self.root / case.path

    def summary(self) -> dict[str, object]:
        """Gives back the digest and counts as one JSON-ready document."""
        return {
            "root": str(self.root),
            "manifest": str(self.manifest),
            "format": self.format,
            "digest": self.digest,
            "cases": self.n_cases,
            "patients": self.n_patients,
            "labels": list(self.labels),
            "positives": self.positives,
            "attributes": self.attribute_counts,
        }


# --- the root and the manifest -----------------------------------------------------------------


def _refuse(message: str) -> DatasetInvalid:
    return DatasetInvalid([dataset_problem(message)])


def _checked_root(root: str | Path) -> Path:
    given = Path(root)
    if given.is_symlink():
        raise _refuse(
            f"the dataset root {given} is a symbolic link (to {os.readlink(given)}); give the "
            "real directory, so that what is registered cannot be redirected later"
        )
    if not given.exists():
        raise _refuse(f"the dataset root {given} does not exist; check the path")
    if not given.is_dir():
        raise _refuse(f"the dataset root {given} is not a directory; give the dataset's folder")
    return given.resolve()


def _manifest_path(root: Path, cases: str | Path) -> Path:
    given = Path(cases)
    if given.is_absolute():
        return given
    target = (root / given).resolve()
    if not target.is_relative_to(root):
        raise _refuse(
            f"the manifest {given} resolves to {target}, outside the dataset root {root}; keep "
            "it inside the root or give its absolute path"
        )
    return target


def _read_manifest_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise _refuse(
            f"no manifest at {path}; write one ({_SHAPE_HINT}) or name it with --cases"
        ) from None
    except IsADirectoryError:
        raise _refuse(f"the manifest {path} is a directory; give the CSV file") from None
    except OSError as exc:
        raise _refuse(
            f"the manifest {path} could not be read ({exc.strerror or exc}); check its permissions"
        ) from None


# --- columns -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Columns:
    label_columns: dict[str, str]  # label name -> column
    attributes: tuple[str, ...]


def _split_columns(table: ManifestTable, *, npz: bool, problems: list[DatasetProblem]) -> _Columns:
    columns = table.columns
    required = _ID_COLUMNS if npz else (*_ID_COLUMNS, "path")
    for name in required:
        if name not in columns:
            problems.append(dataset_problem(f"column {name!r} is missing; {_SHAPE_HINT}", line=1))
    if npz and "path" in columns:
        problems.append(
            dataset_problem(
                "an NPZ dataset has no 'path' column (row i of the manifest is image i of "
                f"{IMAGES_KEY}); remove the column",
                line=1,
                column="path",
            )
        )
    label_columns: dict[str, str] = {}
    for column in columns:
        if column == "label":
            label_columns["label"] = column
        elif column.startswith("label:"):
            name = column.removeprefix("label:").strip()
            if not name:
                problems.append(
                    dataset_problem(
                        "a label column is named 'label:' without a label name; name it "
                        "label:<name>",
                        line=1,
                        column=column,
                    )
                )
                continue
            label_columns[name] = column
    if "label" in columns and len(label_columns) > 1:
        problems.append(
            dataset_problem(
                "the manifest mixes `label` with `label:<name>` columns; use `label` for one "
                "binary label or `label:<name>` for each label",
                line=1,
            )
        )
    if not label_columns and not npz:
        problems.append(
            dataset_problem(
                "there is no label column; a held-out dataset needs its ground truth as `label` "
                "(one binary label) or `label:<name>` per label, 0 or 1",
                line=1,
            )
        )
    skip = {*required, "path", *label_columns.values()}
    attributes = tuple(c for c in columns if c and c not in skip and not c.startswith("label:"))
    return _Columns(label_columns=label_columns, attributes=attributes)


# --- rows --------------------------------------------------------------------------------------


def _row_ids(
    row: ManifestRow, seen: dict[str, int], problems: list[DatasetProblem]
) -> tuple[str, str]:
    case_id, patient_id = row.cells.get("case_id", ""), row.cells.get("patient_id", "")
    for column, value in (("case_id", case_id), ("patient_id", patient_id)):
        if not value:
            problems.append(
                dataset_problem(
                    f"{column} is empty; every row needs one", line=row.line, column=column
                )
            )
    if case_id:
        if case_id in seen:
            problems.append(
                dataset_problem(
                    f"case_id {case_id!r} is already used on line {seen[case_id]}; a case_id "
                    "is unique",
                    line=row.line,
                    column="case_id",
                )
            )
        else:
            seen[case_id] = row.line
    return case_id, patient_id


def _row_labels(
    row: ManifestRow, label_columns: dict[str, str], problems: list[DatasetProblem]
) -> dict[str, int]:
    labels: dict[str, int] = {}
    for name, column in label_columns.items():
        value = row.cells.get(column, "")
        if value in _LABEL_VALUES:
            labels[name] = _LABEL_VALUES[value]
        else:
            shown = repr(value) if value else "empty"
            problems.append(
                dataset_problem(
                    f"the label is {shown} but a label is 0 or 1; give every case its ground truth",
                    line=row.line,
                    column=column,
                )
            )
    return labels


def _path_problem(text: str) -> str | None:
    """Gives back why a manifest path is not a relative POSIX path inside the root, or None."""
    if not text:
        return "path is empty; give the image file's path relative to the dataset root"
    if "\\" in text:
        return f"path {text!r} holds a backslash; write paths with forward slashes (a/b.dcm)"
    if text.startswith("/") or _DRIVE.match(text):
        return f"path {text!r} is absolute; give it relative to the dataset root"
    if ".." in PurePosixPath(text).parts:
        return f"path {text!r} leaves the dataset root ('..'); keep every image inside the root"
    return None


def _row_file(
    root: Path,
    row: ManifestRow,
    used: dict[str, int],
    problems: list[DatasetProblem],
) -> tuple[str, Path] | None:
    """Gives back the case's normalized relative path and its file, or None with a problem."""
    text = row.cells.get("path", "")
    reason = _path_problem(text)
    if reason is not None:
        problems.append(dataset_problem(reason, line=row.line, column="path"))
        return None
    relative = str(PurePosixPath(text))
    target = (root / relative).resolve()
    if not target.is_relative_to(root):
        problems.append(
            dataset_problem(
                f"path {text!r} is a symbolic link (or lies under one) that points outside the "
                f"dataset root, to {target}; copy the image into the root",
                line=row.line,
                column="path",
            )
        )
        return None
    if not target.exists():
        problems.append(
            dataset_problem(
                f"no file at {text!r} in the dataset root; check the path (it is case-sensitive)",
                line=row.line,
                column="path",
            )
        )
        return None
    if not target.is_file():
        problems.append(
            dataset_problem(
                f"{text!r} is not a file; give one image file per case",
                line=row.line,
                column="path",
            )
        )
        return None
    key = str(target)
    if key in used:
        problems.append(
            dataset_problem(
                f"{text!r} is the image of line {used[key]} too; each case is its own image",
                line=row.line,
                column="path",
            )
        )
        return None
    used[key] = row.line
    return relative, target


def _patient_attribute_problems(
    table: ManifestTable, columns: Sequence[str]
) -> list[DatasetProblem]:
    problems: list[DatasetProblem] = []
    for column in PATIENT_LEVEL_ATTRIBUTES:
        if column not in columns:
            continue
        first: dict[str, tuple[str, int]] = {}
        for row in table.rows:
            patient, value = row.cells.get("patient_id", ""), row.cells.get(column, "")
            if not patient:
                continue
            if patient not in first:
                first[patient] = (value, row.line)
            elif first[patient][0] != value:
                earlier, line = first[patient]
                problems.append(
                    dataset_problem(
                        f"patient {patient!r} has {column} {value or '(empty)'!r} here but "
                        f"{earlier or '(empty)'!r} on line {line}; {column} belongs to the "
                        "patient, so every row of one patient must agree",
                        line=row.line,
                        column=column,
                    )
                )
    return problems


def _required_attribute_problems(
    cases: Sequence[Case],
    required: Iterable[str],
    columns: Sequence[str],
    *,
    tags_read: bool,
) -> list[DatasetProblem]:
    problems: list[DatasetProblem] = []
    for name in required:
        from_tags = tags_read and name in DICOM_TAG_ATTRIBUTES
        if name not in columns and not from_tags:
            problems.append(
                dataset_problem(
                    f"attribute column {name!r} is missing but is required (the policy's "
                    f"subgroups); add the column, one value per case",
                    line=1,
                )
            )
            continue
        for case in cases:
            if name not in case.attributes:
                source = "the manifest" + (" nor the DICOM header" if from_tags else "")
                problems.append(
                    dataset_problem(
                        f"attribute {name!r} is required but {source} gives none for this "
                        "case; fill it in",
                        line=case.line,
                        column=name if name in columns else None,
                    )
                )
    return problems


# --- NPZ ---------------------------------------------------------------------------------------


def _npz_files(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.suffix.lower() == ".npz" and not p.is_dir())


def _npz_cases(
    root: Path,
    table: ManifestTable,
    columns: _Columns,
    problems: list[DatasetProblem],
) -> tuple[list[Case], tuple[str, ...], Path | None]:
    files = _npz_files(root)
    if len(files) != 1:
        problems.append(
            dataset_problem(
                f"the dataset root holds {len(files)} NPZ files "
                f"({', '.join(p.name for p in files)}); an NPZ dataset is exactly one"
            )
        )
        return [], (), None
    npz = files[0]
    if not npz.resolve().is_relative_to(root):
        problems.append(
            dataset_problem(
                f"{npz.name} is a symbolic link pointing outside the dataset root; copy the "
                "file into the root"
            )
        )
        return [], (), None
    try:
        layout = npz_layout(npz)
    except ImageUnreadable as exc:
        problems.append(dataset_problem(str(exc)))
        return [], (), None
    shape, dtype = layout.images_shape, layout.images_dtype
    image_problem = None
    if dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        image_problem = f"{IMAGES_KEY} is {dtype}; expected uint8 or uint16"
    elif len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3)):
        image_problem = (
            f"{IMAGES_KEY} has shape {shape}; expected (N, H, W) or (N, H, W, C) with C 1 or 3"
        )
    elif 0 in shape[1:]:
        image_problem = f"{IMAGES_KEY} has shape {shape}; an image needs at least one pixel"
    if image_problem is not None:
        problems.append(dataset_problem(f"{npz.name}: {image_problem}; save the array again"))
    n = shape[0] if shape else 0
    labels_shape = layout.labels_shape
    label_matrix: np.ndarray | None = None
    if layout.labels_dtype.kind not in "iub" or len(labels_shape) not in (1, 2):
        problems.append(
            dataset_problem(
                f"{npz.name}: {LABELS_KEY} is {layout.labels_dtype} of shape {labels_shape}; "
                "expected integers 0/1 of shape (N,) or (N, L)"
            )
        )
    elif labels_shape[0] != n:
        problems.append(
            dataset_problem(
                f"{npz.name}: {LABELS_KEY} has {labels_shape[0]} rows but {IMAGES_KEY} has {n} "
                "images; give one label row per image"
            )
        )
    else:
        label_matrix = npz_labels(npz).reshape(n, -1).astype(np.int64)
        bad = np.flatnonzero(~np.isin(label_matrix, (0, 1)).all(axis=1))
        if bad.size:
            problems.append(
                dataset_problem(
                    f"{npz.name}: {LABELS_KEY} holds values other than 0 and 1 (rows "
                    f"{', '.join(map(str, bad[:5]))}); a label is 0 or 1"
                )
            )
            label_matrix = None
    if len(table.rows) != n:
        problems.append(
            dataset_problem(
                f"the manifest has {len(table.rows)} rows but {npz.name} holds {n} images; row "
                "i of the manifest describes image i, so give exactly one row per image",
                line=1,
            )
        )
    names = tuple(columns.label_columns)
    if label_matrix is not None and not names:
        if label_matrix.shape[1] == 1:
            names = ("label",)
        else:
            problems.append(
                dataset_problem(
                    f"{npz.name}: {LABELS_KEY} has {label_matrix.shape[1]} labels but the "
                    "manifest names none; add a label:<name> column per label, in the array's "
                    "order",
                    line=1,
                )
            )
    elif label_matrix is not None and len(names) != label_matrix.shape[1]:
        problems.append(
            dataset_problem(
                f"the manifest has {len(names)} label columns but {LABELS_KEY} has "
                f"{label_matrix.shape[1]} labels; give one label:<name> column per label",
                line=1,
            )
        )
        label_matrix = None
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(table.rows):
        case_id, patient_id = _row_ids(row, seen, problems)
        if columns.label_columns:
            labels = _row_labels(row, columns.label_columns, problems)
            if label_matrix is not None and i < n:
                for j, name in enumerate(names):
                    stored = int(label_matrix[i, j])
                    if name in labels and labels[name] != stored:
                        problems.append(
                            dataset_problem(
                                f"the label is {labels[name]} here but {LABELS_KEY}[{i}] holds "
                                f"{stored}; the manifest and the array must agree",
                                line=row.line,
                                column=columns.label_columns[name],
                            )
                        )
        elif label_matrix is not None and i < n and names:
            labels = {name: int(label_matrix[i, j]) for j, name in enumerate(names)}
        else:
            labels = {}
        attributes = {a: row.cells[a] for a in columns.attributes if row.cells.get(a)}
        cases.append(Case(case_id, patient_id, npz.name, i, labels, attributes, row.line))
    return cases, names, npz


# --- digest ------------------------------------------------------------------------------------


def _update_with_file(digest: hashlib._Hash, relative: str, path: Path) -> None:
    """Feeds one file to the digest: its relative path, its size, then its bytes in chunks.

    The path and size frame the bytes, so moving bytes from one file to the next changes the
    digest. Files are streamed, never loaded whole.
    """
    name = relative.encode("utf-8")
    digest.update(len(name).to_bytes(8, "big") + name)
    digest.update(path.stat().st_size.to_bytes(8, "big"))
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)


def _digest(manifest: bytes, files: Iterable[tuple[str, Path]]) -> str:
    digest = hashlib.sha256()
    digest.update(len(manifest).to_bytes(8, "big") + manifest)
    for relative, path in files:
        _update_with_file(digest, relative, path)
    return digest.hexdigest()


# --- the entry point ---------------------------------------------------------------------------


def _image_cases(
    root: Path,
    table: ManifestTable,
    columns: _Columns,
    *,
    read_tags: bool,
    problems: list[DatasetProblem],
) -> tuple[list[Case], dict[str, Path], ImageFormat | None]:
    cases: list[Case] = []
    files: dict[str, Path] = {}
    seen: dict[str, int] = {}
    used: dict[str, int] = {}
    dataset_format: tuple[ImageFormat, int] | None = None
    for row in table.rows:
        case_id, patient_id = _row_ids(row, seen, problems)
        labels = _row_labels(row, columns.label_columns, problems)
        attributes: dict[str, str] = {}
        located = _row_file(root, row, used, problems)
        relative = row.cells.get("path", "")
        if located is not None:
            relative, target = located
            files[relative] = target
            try:
                image_format = detect_format(target)
                if dataset_format is None:
                    dataset_format = (image_format, row.line)
                elif image_format != dataset_format[0]:
                    raise ImageUnreadable(
                        target,
                        f"is {image_format.upper()} but the dataset is "
                        f"{dataset_format[0].upper()} (line {dataset_format[1]}); a dataset "
                        "holds one image format",
                    )
                if image_format == "npz":
                    raise ImageUnreadable(
                        target,
                        "is an NPZ file; an NPZ dataset has no path column (row i of the "
                        f"manifest is image i of {IMAGES_KEY}), so remove the column",
                    )
                if read_tags:
                    attributes.update(READERS[image_format].inspect(target))
            except ImageUnreadable as exc:
                problems.append(dataset_problem(str(exc), line=row.line, column="path"))
        # A manifest value wins over the DICOM header's (the hospital corrected it on purpose).
        attributes.update({a: row.cells[a] for a in columns.attributes if row.cells.get(a)})
        cases.append(Case(case_id, patient_id, relative, None, labels, attributes, row.line))
    return cases, files, dataset_format[0] if dataset_format else None


def load_dataset(
    root: str | Path,
    cases: str | Path = DEFAULT_MANIFEST,
    *,
    attributes: Sequence[str] = (),
    read_tags: bool = True,
) -> Dataset:
    """Gives back the checked dataset at `root`; raises DatasetInvalid listing every problem.

    `cases` is the manifest, relative to the root unless absolute. `attributes` names attribute
    columns that must be present with a value on every row (a policy's subgroups; a DICOM tag
    attribute may come from the headers). `read_tags=False` skips opening the image headers (no
    acquisition tags, no header checks): for reopening a dataset already checked.
    """
    resolved_root = _checked_root(root)
    manifest = _manifest_path(resolved_root, cases)
    data = _read_manifest_bytes(manifest)
    table, problems = parse_manifest_csv(data, manifest)
    if table is None:
        raise DatasetInvalid(problems, source=f"the dataset manifest {manifest}")
    npz = "path" not in table.columns and bool(_npz_files(resolved_root))
    columns = _split_columns(table, npz=npz, problems=problems)
    problems.extend(_patient_attribute_problems(table, table.columns))

    image_format: ImageFormat | None
    if npz:
        case_list, labels, npz_file = _npz_cases(resolved_root, table, columns, problems)
        files = {npz_file.name: npz_file} if npz_file is not None else {}
        image_format = "npz"
    else:
        case_list, files, image_format = _image_cases(
            resolved_root, table, columns, read_tags=read_tags, problems=problems
        )
        labels = tuple(columns.label_columns)
    problems.extend(
        _required_attribute_problems(
            case_list, attributes, table.columns, tags_read=read_tags and image_format == "dicom"
        )
    )
    if problems or image_format is None:
        if not problems:
            problems.append(dataset_problem("the dataset has no readable image"))
        problems.sort(key=lambda p: p.line or 0)
        raise DatasetInvalid(problems, source=f"the dataset {resolved_root}")

    tag_names = (
        [n for n in DICOM_TAG_ATTRIBUTES if any(n in c.attributes for c in case_list)]
        if image_format == "dicom"
        else []
    )
    attribute_names = (*columns.attributes, *(n for n in tag_names if n not in columns.attributes))
    return Dataset(
        root=resolved_root,
        manifest=manifest,
        cases=tuple(case_list),
        labels=labels,
        attribute_names=attribute_names,
        digest=_digest(data, files.items()),
        format=image_format,
    )
