"""Reads a predictions file (DESIGN.md's contract) into typed arrays, naming any bad row."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from validators.vocabulary import Task

REQUIRED = ("case_id", "patient_id")
_LABEL_VALUES = {"0": False, "1": True, "0.0": False, "1.0": True, "false": False, "true": True}
_SHAPE_HINT = (
    "a predictions file has the columns case_id, patient_id, then label and score (binary) or "
    "label:<name> and score:<name> for each label (multilabel), then any attribute columns"
)


class PredictionsInvalid(ValueError):
    """The predictions file does not follow the contract; the message names the column or row."""


@dataclass(frozen=True)
class Predictions:
    """One predictions file: ground truth, scores and attributes, row-aligned."""

    task: Task
    labels: tuple[str, ...]
    case_ids: NDArray[np.str_]
    patient_ids: NDArray[np.str_]
    y_true: NDArray[np.bool_]  # [N] for binary, [N, L] for multilabel
    y_score: NDArray[np.float64]  # same shape as y_true
    attributes: dict[str, NDArray[np.object_]]  # column -> values (None where missing)

    @property
    def n_cases(self) -> int:
        return int(self.case_ids.shape[0])

    @property
    def n_patients(self) -> int:
        return int(np.unique(self.patient_ids).shape[0])

    def in_case_order(self) -> Predictions:
        """Return the same cases sorted by case id: the order the data define, not the file's.

        Case-level bootstrap replicates draw rows by position, and cases with tied scores keep
        their relative order through the score sort; starting from case-id order makes every
        interval independent of how the file's rows happen to be ordered.
        """
        order = np.argsort(self.case_ids, kind="stable")
        if np.array_equal(order, np.arange(order.shape[0])):
            return self
        return self.take(order)

    def take(self, order: NDArray[np.intp]) -> Predictions:
        """Return the cases at `order` (row indices), every column alike."""
        return Predictions(
            task=self.task,
            labels=self.labels,
            case_ids=self.case_ids[order],
            patient_ids=self.patient_ids[order],
            y_true=self.y_true[order],
            y_score=self.y_score[order],
            attributes={name: values[order] for name, values in self.attributes.items()},
        )


def _line(row: int) -> int:
    """The file line of a 0-based data row (line 1 is the header)."""
    return row + 2


def _rows(mask: NDArray[np.bool_], limit: int = 5) -> str:
    lines = [str(_line(int(i))) for i in np.flatnonzero(mask)[:limit]]
    more = int(mask.sum()) - len(lines)
    return ", ".join(lines) + (f" and {more} more" if more > 0 else "")


def _labels(column: str, values: NDArray[np.object_]) -> NDArray[np.bool_]:
    normalized = np.array([str(v).strip().lower() if v is not None else "" for v in values])
    known = np.isin(normalized, list(_LABEL_VALUES))
    if not known.all():
        first = int(np.flatnonzero(~known)[0])
        raise PredictionsInvalid(
            f"column {column!r}: line {_line(first)} has {values[first]!r} but a label is 0 or 1 "
            f"(lines {_rows(~known)})."
        )
    return np.array([_LABEL_VALUES[v] for v in normalized], dtype=bool)


def _scores(column: str, values: NDArray[np.object_]) -> NDArray[np.float64]:
    scores = np.empty(values.shape[0], dtype=np.float64)
    bad = np.zeros(values.shape[0], dtype=bool)
    for i, value in enumerate(values):
        try:
            scores[i] = float(value) if value is not None else np.nan
        except ValueError:
            scores[i] = np.nan
    bad = ~np.isfinite(scores)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise PredictionsInvalid(
            f"column {column!r}: line {_line(first)} has {values[first]!r} but a score is a "
            f"finite number (lines {_rows(bad)})."
        )
    return scores


def column_names(header: list[object]) -> list[str]:
    """The names of a CSV header row, trimmed; refuses every name that appears more than once.

    `header` is the header line as parsed, before any renaming (pandas makes a second `score`
    `score.1`). An empty cell gets pandas' name `Unnamed: <0-based position>`.
    """
    names = [
        str(cell).strip() if isinstance(cell, str) and cell.strip() else f"Unnamed: {i}"
        for i, cell in enumerate(header)
    ]
    positions: dict[str, list[int]] = {}
    for i, name in enumerate(names, start=1):
        positions.setdefault(name, []).append(i)
    repeated = [
        f"column {name!r} appears {len(at)} times (columns "
        f"{', '.join(map(str, at[:-1]))} and {at[-1]})"
        for name, at in positions.items()
        if len(at) > 1
    ]
    if repeated:
        raise PredictionsInvalid(
            "; ".join(repeated) + "; each column name must appear once. Rename or remove the "
            "repeated columns (the reader will not guess which one holds the data)."
        )
    return names


def _unreadable(exc: Exception) -> str:
    """The reason pandas could not parse the file, as what was expected and what to do."""
    if isinstance(exc, UnicodeDecodeError):
        return (
            f"the predictions file is not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "save it as a UTF-8 CSV."
        )
    text = str(exc).strip().removeprefix("Error tokenizing data. C error: ").rstrip(".")
    fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if fields:
        expected, line, saw = fields.groups()
        return (
            f"line {line} has {saw} fields but the header has {expected}; give every line one "
            "field per header column, and quote a value that contains a comma."
        )
    return f"the predictions file is not a readable CSV ({text}); {_SHAPE_HINT}."


def read_predictions(source: str | Path | io.TextIOBase) -> Predictions:
    """Reads and validates a predictions CSV; raises PredictionsInvalid naming what is wrong."""
    import pandas as pd

    try:
        # header=None: the header line comes back as the first row, verbatim. With header=0 pandas
        # renames a repeated `score` to `score.1` (and takes the first field of rows one field too
        # long as an index, shifting every column), so a repeated name could never be seen.
        frame = pd.read_csv(source, header=None, dtype=str, keep_default_na=False, na_values=[""])
    except FileNotFoundError as exc:
        raise PredictionsInvalid(f"no predictions file at {source}; check the path.") from exc
    except pd.errors.EmptyDataError as exc:
        raise PredictionsInvalid(f"the predictions file is empty; {_SHAPE_HINT}.") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise PredictionsInvalid(_unreadable(exc)) from exc
    frame.columns = column_names(frame.iloc[0].tolist())
    frame = frame.iloc[1:]
    for column in REQUIRED:
        if column not in frame.columns:
            raise PredictionsInvalid(f"column {column!r} is missing; {_SHAPE_HINT}.")
    if frame.empty:
        raise PredictionsInvalid(
            "the predictions file has a header but no rows; add one row per case."
        )
    columns = {c: frame[c].astype(object).where(frame[c].notna(), None).to_numpy() for c in frame}

    for column in REQUIRED:
        missing = np.array([v is None or str(v).strip() == "" for v in columns[column]])
        if missing.any():
            raise PredictionsInvalid(
                f"column {column!r} is empty on lines {_rows(missing)}; every row needs one."
            )
    case_ids = np.array([str(v).strip() for v in columns["case_id"]])
    patient_ids = np.array([str(v).strip() for v in columns["patient_id"]])
    _, first_index, counts = np.unique(case_ids, return_index=True, return_counts=True)
    if (counts > 1).any():
        repeated = str(case_ids[np.sort(first_index[counts > 1])][0])  # not np.str_('c3')
        mask = case_ids == repeated
        raise PredictionsInvalid(
            f"case_id {repeated!r} appears on more than one line (lines {_rows(mask)}); "
            "a case_id is unique."
        )

    multi = sorted(c.split(":", 1)[1] for c in frame.columns if c.startswith("label:"))
    multi_scores = sorted(c.split(":", 1)[1] for c in frame.columns if c.startswith("score:"))
    binary = "label" in frame.columns or "score" in frame.columns
    if binary and (multi or multi_scores):
        raise PredictionsInvalid(
            "the file mixes binary (label, score) and multilabel (label:<name>, score:<name>) "
            "columns; use one form."
        )
    if binary:
        for column in ("label", "score"):
            if column not in frame.columns:
                raise PredictionsInvalid(f"column {column!r} is missing; {_SHAPE_HINT}.")
        task: Task = "binary"
        labels: tuple[str, ...] = ("label",)
        y_true = _labels("label", columns["label"])
        y_score = _scores("score", columns["score"])
        used = {"label", "score"}
    elif multi or multi_scores:
        if multi != multi_scores:
            unpaired = sorted(set(multi) ^ set(multi_scores))
            raise PredictionsInvalid(
                f"label {unpaired[0]!r} needs both label:{unpaired[0]} and score:{unpaired[0]} "
                "columns."
            )
        task = "multilabel"
        labels = tuple(multi)
        y_true = np.column_stack([_labels(f"label:{n}", columns[f"label:{n}"]) for n in labels])
        y_score = np.column_stack([_scores(f"score:{n}", columns[f"score:{n}"]) for n in labels])
        used = {f"label:{n}" for n in labels} | {f"score:{n}" for n in labels}
    else:
        raise PredictionsInvalid(f"no label and score columns; {_SHAPE_HINT}.")

    attributes = {
        c: np.array([None if v is None else str(v).strip() for v in columns[c]], dtype=object)
        for c in frame.columns
        if c not in used and c not in REQUIRED
    }
    return Predictions(
        task=task,
        labels=labels,
        case_ids=case_ids,
        patient_ids=patient_ids,
        y_true=y_true,
        y_score=y_score,
        attributes=attributes,
    )
