"""The manifest's columns and rows checked one by one: ids, labels, paths, patient attributes.

Each check appends located problems (`DatasetProblem`) instead of raising, so `load_dataset`
reports every problem of a dataset at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from validators.data.casefile import DatasetProblem, ManifestRow, ManifestTable, dataset_problem
from validators.data.readers.dicom import ACQUISITION_TAGS
from validators.data.readers.npz import IMAGES_KEY

__all__ = [
    "DICOM_TAG_ATTRIBUTES",
    "ID_COLUMNS",
    "PATIENT_LEVEL_ATTRIBUTES",
    "SHAPE_HINT",
    "Case",
    "ManifestColumns",
    "patient_attribute_problems",
    "required_attribute_problems",
    "row_file",
    "row_ids",
    "row_labels",
    "split_columns",
]

PATIENT_LEVEL_ATTRIBUTES = ("sex", "race", "ethnicity")
"""Attributes of the patient, not the image: every row of one patient must agree on them."""
DICOM_TAG_ATTRIBUTES = tuple(ACQUISITION_TAGS)
"""The attribute names DICOM acquisition tags are read into (see readers.dicom)."""

ID_COLUMNS = ("case_id", "patient_id")
_LABEL_VALUES = {"0": 0, "1": 1}
_DRIVE = re.compile(r"^[A-Za-z]:")
SHAPE_HINT = (
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


# --- columns -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestColumns:
    """The manifest's label columns (label name -> column) and attribute columns."""

    label_columns: dict[str, str]  # label name -> column
    attributes: tuple[str, ...]


def split_columns(
    table: ManifestTable, *, npz: bool, problems: list[DatasetProblem]
) -> ManifestColumns:
    """Gives back the label and attribute columns; appends a problem for each missing column."""
    columns = table.columns
    required = ID_COLUMNS if npz else (*ID_COLUMNS, "path")
    for name in required:
        if name not in columns:
            problems.append(dataset_problem(f"column {name!r} is missing; {SHAPE_HINT}", line=1))
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
            if name in label_columns:
                problems.append(
                    dataset_problem(
                        f"label {name!r} has two columns ({label_columns[name]!r} and "
                        f"{column!r}); give each label one column",
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
    return ManifestColumns(label_columns=label_columns, attributes=attributes)


# --- rows --------------------------------------------------------------------------------------


def row_ids(
    row: ManifestRow, seen: dict[str, int], problems: list[DatasetProblem]
) -> tuple[str, str]:
    """Gives back the row's case and patient ids; appends a problem for an empty or repeated one."""
    case_id, patient_id = row.cells.get("case_id", ""), row.cells.get("patient_id", "")
    for column, value in (("case_id", case_id), ("patient_id", patient_id)):
        # A missing column is one problem on line 1 (split_columns), not one on every row.
        if not value and column in row.cells:
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


def row_labels(
    row: ManifestRow, label_columns: dict[str, str], problems: list[DatasetProblem]
) -> dict[str, int]:
    """Gives back the row's labels (0 or 1); appends a problem for any other value."""
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


def path_problem(text: str) -> str | None:
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


def row_file(
    root: Path,
    row: ManifestRow,
    used: dict[str, int],
    problems: list[DatasetProblem],
) -> tuple[str, Path] | None:
    """Gives back the case's normalized relative path and its file, or None with a problem."""
    text = row.cells.get("path", "")
    reason = path_problem(text)
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


def patient_attribute_problems(
    table: ManifestTable, columns: Sequence[str]
) -> list[DatasetProblem]:
    """Gives back a problem for each row disagreeing with its patient's first row (sex...)."""
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


def required_attribute_problems(
    cases: Sequence[Case],
    required: Iterable[str],
    columns: Sequence[str],
    *,
    tags_read: bool,
) -> list[DatasetProblem]:
    """Gives back a problem for each required attribute missing as a column or on a case."""
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
                source = (
                    "neither the manifest nor the DICOM header gives one"
                    if from_tags
                    else "the manifest gives none"
                )
                problems.append(
                    dataset_problem(
                        f"attribute {name!r} is required but {source} for this case; fill it in",
                        line=case.line,
                        column=name if name in columns else None,
                    )
                )
    return problems
