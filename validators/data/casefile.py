"""The dataset manifest (cases CSV) as text: bytes to rows with their line numbers, and problems.

Only the file's shape is checked here (encoding, NUL bytes, quoting, one field per header
column, unique column names); what the columns mean is checked in `datasets`.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from validators.problems import InputInvalid, Problem

__all__ = [
    "DatasetInvalid",
    "DatasetProblem",
    "ManifestRow",
    "ManifestTable",
    "dataset_problem",
    "parse_manifest_csv",
]

_LISTED_LINES = 10  # problems of one kind listed line by line before the rest are summarised


class DatasetProblem(Problem):
    """One thing wrong with a dataset: where ("line N", "line N, column X", "" for all) and what."""

    line: int | None = None


class DatasetInvalid(InputInvalid):
    """A dataset was refused; `problems` lists every reason, each with its manifest line."""

    document = "the dataset"
    code = "dataset_invalid"
    whole = "(dataset)"


def dataset_problem(
    message: str, *, line: int | None = None, column: str | None = None
) -> DatasetProblem:
    """Gives back a problem located at `line` (1 is the header) and `column` when given."""
    if line is None:
        path = ""
    elif column is None:
        path = f"line {line}"
    else:
        path = f"line {line}, column {column}"
    return DatasetProblem(path=path, message=message, line=line)


@dataclass(frozen=True)
class ManifestRow:
    """One data row of the manifest: its first line in the file and its cells by column."""

    line: int
    cells: dict[str, str]


@dataclass(frozen=True)
class ManifestTable:
    """The manifest's column names (trimmed, header order) and data rows."""

    columns: tuple[str, ...]
    rows: tuple[ManifestRow, ...]


def _byte_lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _limited(problems: list[DatasetProblem], kind: str) -> list[DatasetProblem]:
    """Gives back the first problems of one kind and one more summarising the rest."""
    if len(problems) <= _LISTED_LINES:
        return problems
    rest = len(problems) - _LISTED_LINES
    return [*problems[:_LISTED_LINES], dataset_problem(f"and {rest} more lines with {kind}")]


def _encoding_problems(data: bytes, source: Path) -> list[DatasetProblem]:
    """Gives back a problem for each line holding a NUL byte or bytes that are not UTF-8."""
    nul: list[DatasetProblem] = []
    undecodable: list[DatasetProblem] = []
    for number, raw in enumerate(_byte_lines(data), start=1):
        if b"\x00" in raw:
            at = raw.index(b"\x00") + 1
            nul.append(
                dataset_problem(
                    f"holds a NUL byte (at byte {at} of the line); "
                    f"{source.name} must be UTF-8 text (a UTF-16 export has NULs everywhere: "
                    "save it again as CSV UTF-8)",
                    line=number,
                )
            )
            continue
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            undecodable.append(
                dataset_problem(
                    f"is not UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the "
                    f"line); save {source.name} as CSV UTF-8",
                    line=number,
                )
            )
    return _limited(nul, "NUL bytes") + _limited(undecodable, "bytes that are not UTF-8")


def _header(cells: list[str], problems: list[DatasetProblem]) -> tuple[str, ...]:
    names = tuple(cell.strip() for cell in cells)
    first_at: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if not name:
            problems.append(
                dataset_problem(
                    f"column {position} has no name; give every column a header",
                    line=1,
                )
            )
            continue
        if name in first_at:
            problems.append(
                dataset_problem(
                    f"column {name!r} appears twice (columns {first_at[name]} and {position}); "
                    "each column name must appear once",
                    line=1,
                    column=name,
                )
            )
        else:
            first_at[name] = position
    return names


def parse_manifest_csv(
    data: bytes, source: Path
) -> tuple[ManifestTable | None, list[DatasetProblem]]:
    """Gives back the manifest's table and every problem of its shape (None if it is unusable)."""
    problems = _encoding_problems(data, source)
    if problems:
        return None, problems
    text = data.decode("utf-8").removeprefix("\ufeff")
    if not text.strip():
        return None, [
            dataset_problem(
                f"{source.name} is empty; give a header line (case_id, patient_id, path, label "
                "columns, attribute columns) and one row per case"
            )
        ]
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    columns: tuple[str, ...] | None = None
    rows: list[ManifestRow] = []
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(
                dataset_problem(
                    f"is not valid CSV ({exc}); quote a value that holds a comma or a quote, "
                    "and double a quote inside a quoted value",
                    line=start,
                )
            )
            break  # the reader cannot find the next record reliably after a quoting error
        if not cells or all(not cell.strip() for cell in cells):
            continue  # a blank line
        if columns is None:
            columns = _header(cells, problems)
            continue
        if len(cells) != len(columns):
            problems.append(
                dataset_problem(
                    f"has {len(cells)} fields but the header has {len(columns)}; give one field "
                    "per column (quote a value that holds a comma)",
                    line=start,
                )
            )
            continue
        rows.append(
            ManifestRow(
                line=start, cells={c: v.strip() for c, v in zip(columns, cells, strict=True)}
            )
        )
    if columns is None:
        return None, [*problems, dataset_problem(f"{source.name} has no header line")]
    if not rows and not problems:
        problems.append(
            dataset_problem(f"{source.name} has a header but no rows; add one row per case", line=1)
        )
    return ManifestTable(columns=columns, rows=tuple(rows)), problems
