"""A full check of a dataset: decode every image, for damage a header read cannot see.

`load_dataset` reads headers only; a compressed image damaged or cut inside its pixel data
(a JPEG 2000 DICOM, a PNG) is found only when decoded. `decode_problems` decodes every case
once and lists each failure with its manifest line, as `load_dataset` lists its problems.
"""

from __future__ import annotations

from collections.abc import Callable

from validators.data.casefile import DatasetProblem, dataset_problem
from validators.data.datasets import Dataset
from validators.data.readers import ImageUnreadable, read_image

__all__ = ["decode_problems"]


def decode_problems(
    dataset: Dataset, *, on_progress: Callable[[int], None] | None = None
) -> list[DatasetProblem]:
    """Gives back a problem for each case whose image cannot be decoded, with its line.

    `on_progress(n)` is called after each case with the number decoded since the last call (1).
    """
    problems: list[DatasetProblem] = []
    for case in dataset.cases:
        try:
            read_image(dataset.root, case)
        except ImageUnreadable as exc:
            column = "path" if dataset.format != "npz" else None
            problems.append(dataset_problem(str(exc), line=case.line, column=column))
        if on_progress is not None:
            on_progress(1)
    return problems
