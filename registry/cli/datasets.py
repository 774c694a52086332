"""`assay dataset ...`: check a held-out dataset on this machine (no server involved).

The `dataset` command group of `assay`. As in the rest of the CLI, only
typer is imported at module level (`assay --help` stays instant); the dataset library (numpy,
pydicom, Pillow) is imported inside the command.

Exit codes: 0 the dataset is valid; 1 it has problems (each listed with its manifest line);
2 usage error (the directory does not exist or is not a directory) or a failed read
(permissions, I/O).
"""

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from registry.cli.common import (
    EXIT_REFUSED,
    EXIT_USAGE,
    command_group,
    fail,
    print_json,
    printable,
)

if TYPE_CHECKING:
    from validators.data.datasets import DatasetInvalid

dataset_app = command_group("Held-out datasets (local).")


def _usage(message: str, *, json_output: bool) -> NoReturn:
    fail(message, code=EXIT_USAGE, json_output=json_output, error="usage")


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _print_summary(summary: dict[str, Any]) -> None:
    cases = int(summary["cases"])
    fields = [
        ("manifest", summary["manifest"]),
        ("format", summary["format"]),
        ("digest", summary["digest"]),
        ("cases", cases),
        ("patients", summary["patients"]),
    ]
    typer.echo(f"dataset {printable(str(summary['root']))}: valid")
    width = max(len(key) for key, _ in fields) + 1
    for key, value in fields:
        typer.echo(f"  {key + ':':<{width}} {printable(str(value))}")
    typer.echo("positives:")
    for label, positive in summary["positives"].items():
        typer.echo(f"  {printable(label)}: {positive} of {cases} ({_percent(positive, cases)})")
    attributes: dict[str, dict[str, int]] = summary["attributes"]
    if attributes:
        typer.echo("cases per attribute value:")
        for name, counts in attributes.items():
            given = sum(counts.values())
            listed = ", ".join(f"{printable(v)} {n}" for v, n in counts.items())
            missing = f" (no value: {cases - given})" if given < cases else ""
            typer.echo(f"  {printable(name)}: {listed or '-'}{missing}")


def _refused(exc: "DatasetInvalid", *, json_output: bool) -> NoReturn:
    """Prints every problem with its line (and the JSON document with --json); exits 1."""
    fail(
        f"{exc.source} has {len(exc.problems)} problem(s)",
        code=EXIT_REFUSED,
        json_output=json_output,
        error=exc.code,
        problems=[p.model_dump() for p in exc.problems],
        whole=exc.whole,
    )


@dataset_app.command("check")
def check(
    directory: Annotated[
        Path,
        typer.Argument(
            metavar="DIR",
            show_default=False,
            help="The dataset root: the images and, unless --cases says otherwise, cases.csv.",
        ),
    ],
    cases: Annotated[
        Path | None,
        typer.Option(
            "--cases",
            metavar="CSV",
            show_default=False,
            help="The manifest CSV (default: cases.csv in DIR); a relative path is taken from "
            "the current directory.",
        ),
    ] = None,
    decode: Annotated[
        bool,
        typer.Option(
            "--decode",
            help="Also decode every image, to find damage inside compressed pixel data that a "
            "header read cannot see (slower: every image is read whole).",
        ),
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON document on stdout instead of text.")
    ] = False,
) -> None:
    """Check a dataset: every problem with its manifest line, or its digest and counts.

    Exit codes: 0 valid, 1 the dataset has problems, 2 DIR is missing or not a directory,
    or the disk could not be read.
    """
    if not directory.is_symlink() and not directory.exists():
        _usage(
            f"no directory at {directory}; give the dataset root (the folder holding the "
            "images and cases.csv)",
            json_output=json_output,
        )
    if not directory.is_symlink() and not directory.is_dir():
        _usage(
            f"{directory} is a file, not a directory; give the dataset root (with --cases for "
            "a manifest elsewhere)",
            json_output=json_output,
        )
    from validators.data.datasets import DatasetInvalid, load_dataset

    manifest: str | Path = "cases.csv" if cases is None else Path.cwd() / cases
    try:
        dataset = load_dataset(directory, manifest)
        if decode:
            from validators.data.verify import decode_problems

            with typer.progressbar(
                length=dataset.n_cases, label="decoding", file=sys.stderr
            ) as progress:
                damaged = decode_problems(dataset, on_progress=progress.update)
            if damaged:
                raise DatasetInvalid(damaged, source=f"the dataset {dataset.root}")
    except DatasetInvalid as exc:
        _refused(exc, json_output=json_output)
    except OSError as exc:  # the disk itself failed (permissions, I/O), not the dataset's content
        _usage(f"could not read the dataset at {directory}: {exc}", json_output=json_output)
    summary = dataset.summary()
    if json_output:
        print_json(summary)
    else:
        _print_summary(summary)
