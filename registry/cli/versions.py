"""`assay submit`, `assay versions`, `assay version`, and what a submission needs.

`manifest-schema` prints the manifest's JSON Schema and `example-model` writes a model ready to
submit. The top-level commands are plain functions, registered in `registry/cli/__init__.py`.
"""

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from registry.cli.common import (
    DEFAULT_URL,
    EXIT_REFUSED,
    JsonOption,
    LimitOption,
    OffsetOption,
    TokenOption,
    UrlOption,
    as_text,
    command_group,
    console,
    dump,
    fail,
    local,
    print_fields,
    print_json,
    print_page_footer,
    print_table,
    remote,
)

if TYPE_CHECKING:
    from registry.client import ProgressCallback, Version


version_app = command_group("Model versions.")


def _human_size(size: int | None) -> str:
    """Gives back a byte count as people read it: "512 B", "2.5 MB"; "-" when unknown."""
    if size is None:
        return "-"
    amount = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if amount < 1000 or unit == "GB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1000
    return f"{size} B"  # unreachable; keeps mypy sure of a return


def _first(report: Mapping[str, Any], *keys: str) -> Any:
    """Gives back the value of the first of `keys` the report holds, else None."""
    for key in keys:
        if report.get(key) is not None:
            return report[key]
    return None


def _summarize_operators(operators: Any) -> str | None:
    """Returns e.g. "7 types: Conv x12, Relu x12, Gemm x1, ..." from a list or a counts map."""
    if operators is None:
        return None
    if isinstance(operators, Mapping):
        counted = sorted(operators.items(), key=lambda item: (-_as_int(item[1]), str(item[0])))
        names = [f"{name} x{count}" for name, count in counted]
    elif isinstance(operators, list):
        names = [
            str(op.get("op_type") or op.get("name") or op) if isinstance(op, Mapping) else str(op)
            for op in operators
        ]
    else:
        return str(operators)
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    return f"{len(names)} types: {shown}" if names else "none"


def _as_int(value: Any) -> int:
    """Gives back `value` if it is an int, else 0 (for sorting counts of any shape)."""
    return value if isinstance(value, int) else 0


def _intake_fields(version: "Version") -> list[tuple[str, Any]]:
    """Returns the intake report's headline: format, parameter count, operators, warnings."""
    report = version.intake_report
    parameters = _first(report, "parameter_count", "parameters", "num_parameters", "n_parameters")
    operators = _first(report, "operators", "operator_counts", "operator_types", "ops")
    fields: list[tuple[str, Any]] = [
        ("format", version.format or report.get("format")),
        ("parameters", f"{parameters:,}" if isinstance(parameters, int) else parameters),
        ("operators", _summarize_operators(operators)),
    ]
    for key in ("inputs", "outputs"):
        tensors = _summarize_tensors(report.get(key))
        if tensors:
            fields.append((key, tensors))
    checks = report.get("checks")
    if isinstance(checks, list) and checks:
        failed = [
            str(check.get("name"))
            for check in checks
            if isinstance(check, Mapping) and check.get("passed") is False
        ]
        passed = len(checks) - len(failed)
        fields.append(
            ("checks", f"{passed} passed" + (f", failed: {', '.join(failed)}" if failed else ""))
        )
    warnings = report.get("warnings")
    if isinstance(warnings, list) and warnings:
        fields.append(("warnings", "; ".join(str(w) for w in warnings)))
    return fields


def _summarize_tensors(tensors: Any) -> str | None:
    """Returns e.g. "x float32 [N, 1, 224, 224]" for the report's list of inputs or outputs."""
    if not isinstance(tensors, list):
        return None
    described = []
    for tensor in tensors:
        if not isinstance(tensor, Mapping):
            continue
        shape = tensor.get("shape")
        dims = ", ".join(str(dim) for dim in shape) if isinstance(shape, list) else "?"
        described.append(f"{tensor.get('name', '?')} {tensor.get('dtype', '?')} [{dims}]")
    return "; ".join(described) or None


def _version_fields(version: "Version") -> list[tuple[str, Any]]:
    """Gives back the (key, value) lines `assay version show` and `assay submit` print."""
    return [
        ("id", version.id),
        ("model", version.model_id),
        ("number", version.number),
        ("label", version.version_label),
        ("status", version.status),
        ("digest", version.digest),
        ("size", _human_size(version.size_bytes)),
        *_intake_fields(version),
        ("submitted by", version.submitted_by),
        ("created", version.created_at),
    ]


@contextmanager
def _upload_progress(artifact: Path) -> Iterator["ProgressCallback"]:
    """Yields a progress callback that drives a transfer bar on stderr while the upload runs."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TransferSpeedColumn,
    )

    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console(stderr=True),
        transient=True,
    )
    task = progress.add_task(f"uploading {artifact.name}", total=None)

    def on_progress(sent: int, total: int) -> None:
        progress.update(task, completed=sent, total=total)
        if sent >= total:
            progress.update(task, description="waiting for the intake report")

    with progress:
        yield on_progress


def submit(
    model_id: Annotated[str, typer.Argument(help="Id of the model this is a version of.")],
    artifact: Annotated[
        Path,
        typer.Option(exists=True, dir_okay=False, readable=True, help="Model file (ONNX, ...)."),
    ],
    manifest: Annotated[
        Path,
        typer.Option(exists=True, dir_okay=False, readable=True, help="Manifest JSON file."),
    ],
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="Reuse the same key when retrying, so a lost answer is not a duplicate."),
    ] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Upload a model version: the artifact and its manifest."""
    try:
        manifest_document = json.loads(manifest.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        # Checked before uploading a possibly large artifact for nothing.
        fail(f"{manifest} is not valid JSON: {exc}", code=EXIT_REFUSED, json_output=json_output)
    if not isinstance(manifest_document, dict):
        fail(f"{manifest} must hold a JSON object", code=EXIT_REFUSED, json_output=json_output)
    with (
        remote(url, token, json_output) as client,
        _upload_progress(artifact) as on_progress,
    ):
        version = client.submit_version(
            model_id, artifact, manifest, idempotency_key, on_progress=on_progress
        )
    if json_output:
        print_json(dump(version))
        return
    label = f" ({as_text(version.version_label)})" if version.version_label else ""
    typer.echo(f"Submitted version {version.number}{label} of model {version.model_id}.")
    print_fields(_version_fields(version))
    typer.echo(f"Follow it with: assay version show {version.id}")


def versions(
    model_id: Annotated[str, typer.Argument(help="Model id.")],
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """List a model's versions."""
    with remote(url, token, json_output) as client:
        page = client.list_versions(model_id, limit=limit, offset=offset)
    if json_output:
        print_json(dump(page))
        return
    rows = [(v.id, v.number, v.version_label, v.status, _short_digest(v.digest)) for v in page.data]
    # Narrow on purpose, for an 80-column terminal: `assay version show` has the rest.
    columns = ["id", "#", "label", "status", "digest"]
    print_table(columns, rows)
    print_page_footer(page, offset)


def _short_digest(digest: str) -> str:
    """Gives back the digest cut to its algorithm and first 12 hex digits."""
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}:{hexdigest[:12]}" if hexdigest else digest[:12]


@version_app.command("show")
def version_show(
    version_id: Annotated[str, typer.Argument(help="Version id.")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show one version: status, digest and intake report."""
    with remote(url, token, json_output) as client:
        version = client.get_version(version_id)
    if json_output:
        print_json(dump(version))
        return
    print_fields(_version_fields(version))


def manifest_schema(url: UrlOption = DEFAULT_URL, token: TokenOption = None) -> None:
    """Print the JSON Schema of the model manifest (always JSON)."""
    with remote(url, token, json_output=True) as client:
        schema = client.manifest_schema()
    print_json(schema)


class ReferenceChoice(StrEnum):
    good = "good"
    biased = "biased"
    slow = "slow"
    all = "all"


class ReferenceFormatChoice(StrEnum):
    onnx = "onnx"
    safetensors = "safetensors"
    both = "both"


def example_model(
    out: Annotated[Path, typer.Option(file_okay=False, help="Directory to write into.")],
    variant: Annotated[
        int, typer.Option(min=0, help="Which untrained example (each has its own digest).")
    ] = 0,
    reference: Annotated[
        ReferenceChoice | None,
        typer.Option(
            help="Write trained reference models instead: good, biased (worse on one "
            "manufacturer), slow (misses the example policy's latency limit) or all."
        ),
    ] = None,
    format: Annotated[
        ReferenceFormatChoice,
        typer.Option("--format", help="Reference models only: ONNX, safetensors or both."),
    ] = ReferenceFormatChoice.both,
    seed: Annotated[
        int, typer.Option(min=0, help="Reference models only: the training seed (cached by seed).")
    ] = 0,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            file_okay=False,
            help="Reference models only: cache root (default $ASSAY_REFERENCE_CACHE or "
            "~/.cache/assay/reference-models).",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Write a small example model and its manifest, ready to submit."""
    if reference is not None:
        _write_references(out, reference, format, seed, cache_dir, json_output)
        return
    with local(json_output):
        from validators.runtime.example import write_example_model

        model_path, manifest_path = write_example_model(Path(out), variant=variant)
    if json_output:
        print_json({"artifact": str(model_path), "manifest": str(manifest_path)})
        return
    typer.echo(f"Wrote the example model to {model_path}")
    typer.echo(f"  and its manifest to {manifest_path}")
    typer.echo("Submit it with:")
    typer.echo(f"  assay submit MODEL_ID --artifact {model_path} --manifest {manifest_path}")


def _write_references(
    out: Path,
    reference: ReferenceChoice,
    format: ReferenceFormatChoice,
    seed: int,
    cache_dir: Path | None,
    json_output: bool,
) -> None:
    """Writes the chosen reference models (trained once per seed, then from the cache)."""

    def say(message: str) -> None:
        # Progress goes to stderr so that --json keeps stdout one JSON document.
        typer.echo(message, err=True)

    with local(json_output):
        from validators.runtime.reference_models import REFERENCE_NAMES, write_reference_models

        written = write_reference_models(
            Path(out),
            names=REFERENCE_NAMES if reference == ReferenceChoice.all else (reference.value,),
            formats=("onnx", "safetensors")
            if format == ReferenceFormatChoice.both
            else (format.value,),
            seed=seed,
            cache_root=cache_dir,
            progress=say,
        )
    if json_output:
        print_json([{"artifact": str(a), "manifest": str(m)} for a, m in written])
        return
    for artifact, manifest in written:
        typer.echo(f"Wrote {artifact}")
        typer.echo(f"  and its manifest {manifest}")
    typer.echo("Submit one with:")
    artifact, manifest = written[0]
    typer.echo(f"  assay submit MODEL_ID --artifact {artifact} --manifest {manifest}")
