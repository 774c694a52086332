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
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from validators.data.casefile import (
    DatasetInvalid,
    DatasetProblem,
    ManifestTable,
    dataset_problem,
    parse_manifest_csv,
)
from validators.data.npz_cases import npz_cases, npz_files
from validators.data.readers import READERS, ImageUnreadable, detect_format
from validators.data.readers.base import ImageFormat
from validators.data.readers.npz import IMAGES_KEY
from validators.data.rows import (
    DICOM_TAG_ATTRIBUTES,
    PATIENT_LEVEL_ATTRIBUTES,
    SHAPE_HINT,
    Case,
    ManifestColumns,
    patient_attribute_problems,
    required_attribute_problems,
    row_file,
    row_ids,
    row_labels,
    split_columns,
)

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
_CHUNK = 1024 * 1024


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
            f"no manifest at {path}; write one ({SHAPE_HINT}) or name it with --cases"
        ) from None
    except IsADirectoryError:
        raise _refuse(f"the manifest {path} is a directory; give the CSV file") from None
    except OSError as exc:
        raise _refuse(
            f"the manifest {path} could not be read ({exc.strerror or exc}); check its permissions"
        ) from None


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
    columns: ManifestColumns,
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
        case_id, patient_id = row_ids(row, seen, problems)
        labels = row_labels(row, columns.label_columns, problems)
        attributes: dict[str, str] = {}
        # A missing path column is one problem on line 1, not one on every row.
        located = row_file(root, row, used, problems) if "path" in row.cells else None
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
    npz = "path" not in table.columns and bool(npz_files(resolved_root))
    columns = split_columns(table, npz=npz, problems=problems)
    problems.extend(patient_attribute_problems(table, table.columns))

    image_format: ImageFormat | None
    if npz:
        case_list, labels, npz_file = npz_cases(resolved_root, table, columns, problems)
        files = {npz_file.name: npz_file} if npz_file is not None else {}
        image_format = "npz"
    else:
        case_list, files, image_format = _image_cases(
            resolved_root, table, columns, read_tags=read_tags, problems=problems
        )
        labels = tuple(columns.label_columns)
    problems.extend(
        required_attribute_problems(
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
