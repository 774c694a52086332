"""The cases of an NPZ dataset: one `*.npz` in the root (MedMNIST keys), row i is image i."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from validators.data.casefile import DatasetProblem, ManifestTable, dataset_problem
from validators.data.readers import ImageUnreadable
from validators.data.readers.npz import IMAGES_KEY, LABELS_KEY, npz_labels, npz_layout
from validators.data.rows import Case, ManifestColumns, row_ids, row_labels

__all__ = ["npz_cases", "npz_files"]


def npz_files(root: Path) -> list[Path]:
    """Gives back the `*.npz` files directly in `root`, sorted by name."""
    return sorted(p for p in root.iterdir() if p.suffix.lower() == ".npz" and not p.is_dir())


def npz_cases(
    root: Path,
    table: ManifestTable,
    columns: ManifestColumns,
    problems: list[DatasetProblem],
) -> tuple[list[Case], tuple[str, ...], Path | None]:
    """Gives back the cases, the label names and the npz file; appends every problem found.

    The arrays' shapes and types come from their headers; only `test_labels` is loaded.
    """
    files = npz_files(root)
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
        case_id, patient_id = row_ids(row, seen, problems)
        if columns.label_columns:
            labels = row_labels(row, columns.label_columns, problems)
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
