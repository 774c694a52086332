"""`assay example-dataset`: write a synthetic phantom dataset (DICOM, PNG or NPZ) to try Assay.

A top-level command of `assay` (registered in `registry/cli/__init__.py`). Like the rest of the
command line, only typer is imported at module level so `assay --help` stays instant; numpy,
pydicom and Pillow load inside the command.

The dataset is written to a temporary sibling of `--out` and renamed into place only once every
file is written, so an interrupted or failed run leaves nothing half-written behind.

Exit codes: 0 written; 1 refused (the directory is not empty, or cannot be written); 2 usage.
"""

import os
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from registry.cli.common import EXIT_REFUSED, fail, print_json


class DatasetFormat(StrEnum):
    dicom = "dicom"
    png = "png"
    npz = "npz"


def _fail(detail: str, *, json_output: bool, code: int = EXIT_REFUSED) -> NoReturn:
    fail(detail, code=code, json_output=json_output)


def _refusal(out: Path) -> str | None:
    """Gives back why `out` cannot receive a dataset, or None when it can."""
    if out.exists() and not out.is_dir():
        return f"{out} exists and is not a directory; give a new or empty directory as --out"
    if out.is_dir() and any(out.iterdir()):
        return (
            f"{out} is not empty; a dataset needs a directory of its own, so give a new or "
            "empty directory as --out (nothing was written)"
        )
    return None


class _ProgressLine:
    """Prints `writing N/total images` on stderr, overwritten in place on a terminal."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.terminal = sys.stderr.isatty()
        self.started = time.perf_counter()
        self.shown = self.started  # the first line after 0.2 s, not for image 1

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        # About five lines a second at most: printing every image would slow small images.
        if done != total and now - self.shown < 0.2:
            return
        self.shown = now
        rate = done / max(now - self.started, 1e-9)
        line = f"writing {done:,}/{total:,} images ({rate:,.0f} images/s)"
        if self.terminal:
            typer.echo(f"\r{line}", err=True, nl=done == total)
        else:
            typer.echo(line, err=True)


def example_dataset(
    out: Annotated[
        Path,
        typer.Option(
            file_okay=False, show_default=False, help="New or empty directory to write into."
        ),
    ],
    format: Annotated[
        DatasetFormat, typer.Option("--format", help="DICOM files, 16-bit PNG files, or one NPZ.")
    ] = DatasetFormat.dicom,
    cases: Annotated[int, typer.Option(min=1, max=100_000, help="Number of images.")] = 200,
    seed: Annotated[
        int, typer.Option(min=0, help="Seed: the same seed writes the same bytes.")
    ] = 0,
    size: Annotated[
        int, typer.Option(min=16, max=4096, help="Image width and height in pixels.")
    ] = 256,
    prevalence: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of images with a lesion.")
    ] = 0.3,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON document on stdout instead of text.")
    ] = False,
) -> None:
    """Write a synthetic chest-radiograph dataset (no patient data) with its cases.csv."""
    out = out.expanduser()
    refusal = _refusal(out)
    if refusal is not None:
        _fail(refusal, json_output=json_output)

    import shutil

    from validators.data.phantoms import write_phantom_dataset

    # A hidden sibling on the same file system, so the final rename is atomic.
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        write_phantom_dataset(
            staging,
            format=format.value,
            cases=cases,
            size=size,
            prevalence=prevalence,
            seed=seed,
            progress=_ProgressLine(quiet=json_output),
        )
        if out.is_dir():
            out.rmdir()  # empty (checked above); rename cannot replace a directory otherwise
        staging.rename(out)
    except OSError as exc:
        _fail(
            f"could not write the dataset to {out}: {exc.strerror or exc}; check that the "
            "directory's parent exists, is writable and has space (nothing was left behind)",
            json_output=json_output,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    files = sorted(p for p in out.rglob("*") if p.is_file())
    written_bytes = sum(p.stat().st_size for p in files)
    if json_output:
        print_json(
            {
                "out": str(out),
                "format": format.value,
                "cases": cases,
                "size": size,
                "seed": seed,
                "manifest": str(out / "cases.csv"),
                "files": len(files),
                "bytes": written_bytes,
            }
        )
        return
    typer.echo(
        f"Wrote {cases:,} synthetic {format.value.upper()} images ({size}x{size}, seed {seed}, "
        f"{written_bytes / 1e6:,.1f} MB) and their manifest to {out / 'cases.csv'}"
    )
    typer.echo("Check it with:")
    typer.echo(f"  assay dataset check {out}")
