"""The `assay` command: a thin shell over `registry.client`, plus local administration commands.

Start-up time matters (`assay --help` must be instant), so only typer is imported here at module
level. The HTTP client, rich and every server module (settings, database, app, validators) are
imported inside the commands that use them; vendors and CI install the client only, without the
server's dependencies.

Exit codes: 0 success; 1 refused, by the server (4xx) or by a check; 2 usage error, server
unreachable or server failure (5xx).
"""

import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from pydantic import BaseModel
    from rich.console import Console

    from registry.client import AssayClient, AssayError, Page, ProgressCallback, Version

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2

DEFAULT_URL = (
    "http://127.0.0.1:8000"  # the same as registry.client.DEFAULT_URL, without importing it
)

app = typer.Typer(
    name="assay",
    help="Assay: validate, approve and monitor medical-imaging AI inside the hospital.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals would include the token
    # Plain click help: typer's rich help pulls in rich.markdown and markdown-it, several times
    # the cost of everything else `assay --help` imports.
    rich_markup_mode=None,
)
vendor_app = typer.Typer(help="Vendors (admin).", no_args_is_help=True, rich_markup_mode=None)
token_app = typer.Typer(help="API tokens (admin).", no_args_is_help=True, rich_markup_mode=None)
model_app = typer.Typer(
    help="Models in a vendor's namespace.", no_args_is_help=True, rich_markup_mode=None
)
version_app = typer.Typer(help="Model versions.", no_args_is_help=True, rich_markup_mode=None)
audit_app = typer.Typer(
    help="The hash-chained audit trail.", no_args_is_help=True, rich_markup_mode=None
)
db_app = typer.Typer(
    help="The installation's database (local).", no_args_is_help=True, rich_markup_mode=None
)
admin_app = typer.Typer(
    help="Installation bootstrap and recovery (local).", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(vendor_app, name="vendor")
app.add_typer(token_app, name="token")
app.add_typer(model_app, name="model")
app.add_typer(version_app, name="version")
app.add_typer(audit_app, name="audit")
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")


class Role(StrEnum):
    admin = "admin"
    reviewer = "reviewer"
    vendor = "vendor"
    ci = "ci"
    monitor = "monitor"


UrlOption = Annotated[
    str,
    typer.Option(
        "--url", envvar="ASSAY_URL", show_envvar=True, help="Base URL of the Assay server."
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="ASSAY_TOKEN",
        show_envvar=True,
        show_default=False,
        help="API token (prefer the environment variable: arguments show up in `ps`).",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")
]
LimitOption = Annotated[int, typer.Option(min=1, max=500, help="How many items to list.")]
OffsetOption = Annotated[int, typer.Option(min=0, help="How many items to skip.")]


# --- output ------------------------------------------------------------------------------------


def _console(*, stderr: bool = False, width: int | None = None) -> "Console":
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, width=width)


def _print_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2, default=str))


def _dump(model: "BaseModel") -> dict[str, Any]:
    return model.model_dump(mode="json")


def _printable(text: str) -> str:
    """Gives back `text` with every non-printable character written as a visible escape.

    Names and labels come from the server, which may hold them from before it refused control
    characters, or may be older: printed raw, an ESC sequence would rewrite the reader's terminal
    and a bidirectional override would reorder what they read. So anything `str.isprintable`
    refuses (controls, bidi and other format characters, separators other than the space) is
    shown as `\\x1b`, `\\u202e` or `\\U000e0001`, as Python writes it in a string literal.
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    code = ord(char)
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _text(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return _printable(str(value))


def _print_fields(fields: Sequence[tuple[str, Any]]) -> None:
    """Prints `key: value` lines, aligned, unwrapped so ids and digests can be copied whole."""
    width = max((len(key) for key, _ in fields), default=0)
    for key, value in fields:
        typer.echo(f"  {key + ':':<{width + 1}} {_text(value)}")


def _print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Prints a rich table at its natural width, never squeezed to the terminal's.

    Ids and digests must stay whole so they can be copied into the next command: on a narrow
    terminal a row runs long (as `docker ps` does) instead of folding cells or cutting them.
    """
    from rich import box
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=True)
    for row in rows:
        # Text, not str: a value holding Rich markup ("[bold]") is printed as it is.
        table.add_row(*(Text(_cell(value)) for value in row))
    console = _console()
    needed = Measurement.get(console, console.options.update_width(10_000), table).maximum
    if needed > console.width:
        console = _console(width=needed)
    console.print(table)


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        # Tables are read at a glance: minutes, in the reader's local time.
        return value.astimezone().strftime("%Y-%m-%d %H:%M")
    return _text(value)


def _print_page_footer(page: "Page[Any]", offset: int) -> None:
    shown = len(page.data)
    if shown == 0:
        typer.echo("(none)" if offset == 0 else f"(none at offset {offset}; {page.count} in all)")
    elif page.count > offset + shown:
        typer.echo(
            f"showing {offset + 1}-{offset + shown} of {page.count}; "
            f"use --offset {offset + shown} for more"
        )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _error(message: str) -> None:
    from rich.text import Text

    console = _console(stderr=True)
    console.print(Text("error: ", style="bold red") + Text(_printable(message)), soft_wrap=True)


def _fail(
    detail: str,
    *,
    code: int,
    json_output: bool,
    error: str = "refused",
    problems: Sequence[Mapping[str, Any]] = (),
    status: int | None = None,
    hint: str | None = None,
) -> NoReturn:
    """Prints the error (and, with --json, its JSON document on stdout) and exits with `code`."""
    if json_output:
        _print_json(
            {"status": status, "error": error, "detail": detail, "problems": list(problems)}
        )
    _error(detail)
    for problem in problems:
        path, message = problem.get("path"), problem.get("message", "")
        line = f"  {path}: {message}" if path else f"  {message}"
        typer.echo(_printable(line), err=True)
    if hint:
        typer.echo(hint, err=True)
    raise typer.Exit(code)


def _fail_from(exc: "AssayError", *, json_output: bool, token_given: bool) -> NoReturn:
    from registry.client import ServerError, Unauthorized, UnexpectedResponse, Unreachable

    failed_to_answer = isinstance(exc, Unreachable | ServerError | UnexpectedResponse)
    hint = None
    if isinstance(exc, Unauthorized) and not token_given:
        hint = "no token was given: pass --token or set ASSAY_TOKEN"
    _fail(
        exc.detail,
        code=EXIT_USAGE if failed_to_answer else EXIT_REFUSED,
        json_output=json_output,
        error=exc.error,
        problems=exc.problems,
        status=exc.status,
        hint=hint,
    )


# --- remote commands: plumbing -----------------------------------------------------------------


def _make_client(url: str, token: str | None) -> "AssayClient":
    """Returns the client the remote commands use (tests replace this to inject a transport)."""
    from registry.client import AssayClient

    return AssayClient(url, token)


@contextmanager
def _remote(url: str, token: str | None, json_output: bool) -> Iterator["AssayClient"]:
    """Yields a client; an `AssayError` inside the block becomes a message and an exit code."""
    from registry.client import AssayError

    client = _make_client(url, token)
    try:
        with client:
            yield client
    except AssayError as exc:
        _fail_from(exc, json_output=json_output, token_given=bool(token))


# --- remote commands ---------------------------------------------------------------------------


@app.command()
def whoami(
    url: UrlOption = DEFAULT_URL, token: TokenOption = None, json_output: JsonOption = False
) -> None:
    """Show who the token belongs to: principal, role and vendor."""
    with _remote(url, token, json_output) as client:
        me = client.me()
    if json_output:
        _print_json(_dump(me))
        return
    vendor = f"{me.vendor_name} ({me.vendor_id})" if me.vendor_id else None
    _print_fields(
        [
            ("name", me.name),
            ("role", me.role),
            ("vendor", vendor),
            ("principal", me.id),
            ("token", me.token_id),
            ("server", url),
        ]
    )


@vendor_app.command("create")
def vendor_create(
    name: Annotated[str, typer.Argument(help="Short unique name, e.g. acme.")],
    display_name: Annotated[str | None, typer.Option(help="Name shown to people.")] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Register a vendor."""
    with _remote(url, token, json_output) as client:
        vendor = client.create_vendor(name, display_name=display_name)
    if json_output:
        _print_json(_dump(vendor))
        return
    typer.echo(f"Created vendor {_text(vendor.name)}.")
    _print_fields([("id", vendor.id), ("display name", vendor.display_name)])


@vendor_app.command("list")
def vendor_list(
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """List vendors."""
    with _remote(url, token, json_output) as client:
        page = client.list_vendors(limit=limit, offset=offset)
    if json_output:
        _print_json(_dump(page))
        return
    rows = [(v.id, v.name, v.display_name, v.created_at) for v in page.data]
    _print_table(["id", "name", "display name", "created"], rows)
    _print_page_footer(page, offset)


def _parse_expiry(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 time; write e.g. 2026-06-30 or 2026-06-30T17:00:00Z",
            param_hint="--expires-at",
        ) from exc
    # A time without a zone means local time, as the person typing it would read it.
    return parsed if parsed.tzinfo is not None else parsed.astimezone()


@token_app.command("create")
def token_create(
    role: Annotated[Role, typer.Option(help="What the token may do.")],
    name: Annotated[str, typer.Option(help="Who or what uses it, e.g. ci-main or jane.doe.")],
    vendor: Annotated[
        str | None, typer.Option(help="Vendor id (required for the vendor role).")
    ] = None,
    expires_at: Annotated[
        str | None,
        typer.Option(help="ISO 8601 expiry time; without a zone, local time.", show_default=False),
    ] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Issue a token; its secret is printed once and never again."""
    expiry = _parse_expiry(expires_at)
    with _remote(url, token, json_output) as client:
        created = client.create_token(role.value, name, vendor_id=vendor, expires_at=expiry)
    if json_output:
        _print_json(_dump(created))
        return
    typer.echo(f"Created {created.role} token '{_text(created.name)}' (id {created.id}).")
    if created.expires_at:
        typer.echo(f"It expires at {_text(created.expires_at)}.")
    typer.echo("")
    typer.echo(f"  {created.token}")
    typer.echo("")
    _warn("store it now: it will not be shown again.")


def _warn(message: str) -> None:
    from rich.text import Text

    _console(stderr=True).print(
        Text("warning: ", style="bold yellow") + Text(_printable(message)), soft_wrap=True
    )


@token_app.command("list")
def token_list(
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """List tokens (prefixes only; secrets are never stored)."""
    with _remote(url, token, json_output) as client:
        page = client.list_tokens(limit=limit, offset=offset)
    if json_output:
        _print_json(_dump(page))
        return
    rows = [
        (
            t.id,
            t.name,
            t.role,
            t.prefix,
            t.vendor_id,
            t.expires_at,
            "revoked" if t.revoked_at else "active",
            t.last_used_at,
        )
        for t in page.data
    ]
    columns = ["id", "name", "role", "prefix", "vendor", "expires", "state", "last used"]
    _print_table(columns, rows)
    _print_page_footer(page, offset)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="Id of the token to revoke.")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Revoke a token; it stops working at once."""
    with _remote(url, token, json_output) as client:
        revoked = client.revoke_token(token_id)
    if json_output:
        _print_json(_dump(revoked))
        return
    typer.echo(
        f"Revoked token '{_text(revoked.name)}' ({revoked.id}) at {_text(revoked.revoked_at)}."
    )


@model_app.command("create")
def model_create(
    name: Annotated[str, typer.Argument(help="Model name, unique within the vendor.")],
    vendor: Annotated[
        str | None, typer.Option(help="Vendor id (admins only; vendors use their own).")
    ] = None,
    description: Annotated[str | None, typer.Option(help="One line about the model.")] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create a model; its versions are then submitted with `assay submit`."""
    with _remote(url, token, json_output) as client:
        model = client.create_model(name, vendor_id=vendor, description=description)
    if json_output:
        _print_json(_dump(model))
        return
    typer.echo(f"Created model {_text(model.name)}.")
    _print_fields([("id", model.id), ("vendor", model.vendor_id)])
    typer.echo(f"Submit a version with: assay submit {model.id} --artifact FILE --manifest FILE")


@model_app.command("list")
def model_list(
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """List the models you may see."""
    with _remote(url, token, json_output) as client:
        page = client.list_models(limit=limit, offset=offset)
    if json_output:
        _print_json(_dump(page))
        return
    rows = [(m.id, m.name, m.vendor_id, m.version_count, m.created_at) for m in page.data]
    _print_table(["id", "name", "vendor", "versions", "created"], rows)
    _print_page_footer(page, offset)


@model_app.command("show")
def model_show(
    model_id: Annotated[str, typer.Argument(help="Model id.")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show one model."""
    with _remote(url, token, json_output) as client:
        model = client.get_model(model_id)
    if json_output:
        _print_json(_dump(model))
        return
    _print_fields(
        [
            ("id", model.id),
            ("name", model.name),
            ("vendor", model.vendor_id),
            ("description", model.description),
            ("versions", model.version_count),
            ("created", model.created_at),
        ]
    )


def _human_size(size: int | None) -> str:
    if size is None:
        return "-"
    amount = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if amount < 1000 or unit == "GB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1000
    return f"{size} B"  # unreachable; keeps mypy sure of a return


def _first(report: Mapping[str, Any], *keys: str) -> Any:
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
        console=_console(stderr=True),
        transient=True,
    )
    task = progress.add_task(f"uploading {artifact.name}", total=None)

    def on_progress(sent: int, total: int) -> None:
        progress.update(task, completed=sent, total=total)
        if sent >= total:
            progress.update(task, description="waiting for the intake report")

    with progress:
        yield on_progress


@app.command()
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
        _fail(f"{manifest} is not valid JSON: {exc}", code=EXIT_REFUSED, json_output=json_output)
    if not isinstance(manifest_document, dict):
        _fail(f"{manifest} must hold a JSON object", code=EXIT_REFUSED, json_output=json_output)
    with (
        _remote(url, token, json_output) as client,
        _upload_progress(artifact) as on_progress,
    ):
        version = client.submit_version(
            model_id, artifact, manifest, idempotency_key, on_progress=on_progress
        )
    if json_output:
        _print_json(_dump(version))
        return
    label = f" ({_text(version.version_label)})" if version.version_label else ""
    typer.echo(f"Submitted version {version.number}{label} of model {version.model_id}.")
    _print_fields(_version_fields(version))
    typer.echo(f"Follow it with: assay version show {version.id}")


@app.command()
def versions(
    model_id: Annotated[str, typer.Argument(help="Model id.")],
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """List a model's versions."""
    with _remote(url, token, json_output) as client:
        page = client.list_versions(model_id, limit=limit, offset=offset)
    if json_output:
        _print_json(_dump(page))
        return
    rows = [(v.id, v.number, v.version_label, v.status, _short_digest(v.digest)) for v in page.data]
    # Narrow on purpose, for an 80-column terminal: `assay version show` has the rest.
    columns = ["id", "#", "label", "status", "digest"]
    _print_table(columns, rows)
    _print_page_footer(page, offset)


def _short_digest(digest: str) -> str:
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
    with _remote(url, token, json_output) as client:
        version = client.get_version(version_id)
    if json_output:
        _print_json(_dump(version))
        return
    _print_fields(_version_fields(version))


@audit_app.command("list")
def audit_list(
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """List audit events, oldest first (admin, reviewer)."""
    with _remote(url, token, json_output) as client:
        page = client.audit_events(limit=limit, offset=offset)
    if json_output:
        _print_json(_dump(page))
        return
    rows = [
        (e.seq, e.at, e.actor or e.actor_name, e.action, e.object_type, e.object_id, e.hash[:12])
        for e in page.data
    ]
    columns = ["seq", "at", "actor", "action", "object", "object id", "hash"]
    _print_table(columns, rows)
    _print_page_footer(page, offset)


@app.command("manifest-schema")
def manifest_schema(url: UrlOption = DEFAULT_URL, token: TokenOption = None) -> None:
    """Print the JSON Schema of the model manifest (always JSON)."""
    with _remote(url, token, json_output=True) as client:
        schema = client.manifest_schema()
    _print_json(schema)


# --- local commands ----------------------------------------------------------------------------


def _server_error(exc: BaseException) -> Any:
    """Returns `exc` if it is one of the server's domain errors (`registry.errors`), else None."""
    errors = sys.modules.get("registry.errors")
    base = getattr(errors, "AssayError", None)
    if isinstance(base, type) and isinstance(exc, base):
        return exc
    return None


@contextmanager
def _local(json_output: bool) -> Iterator[None]:
    """Runs a local command: server domain errors become messages and exit codes."""
    try:
        yield
    except ModuleNotFoundError as exc:
        _fail(
            f"this command needs the server installation (pip install 'assay[server]'): {exc}",
            code=EXIT_USAGE,
            json_output=json_output,
            error="server_not_installed",
        )
    except Exception as exc:
        error = _server_error(exc)
        if error is None:
            raise
        status = int(getattr(error, "status", 500))
        code_name = str(getattr(error, "code", "error"))
        refused = status < 500 or code_name == "database_behind"
        problems = [
            p.model_dump() if hasattr(p, "model_dump") else dict(p)
            for p in getattr(error, "problems", [])
        ]
        _fail(
            str(getattr(error, "detail", error)),
            code=EXIT_REFUSED if refused else EXIT_USAGE,
            json_output=json_output,
            error=code_name,
            problems=problems,
            status=status,
        )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    json_output: JsonOption = False,
) -> None:
    """Run the server for the installation in ASSAY_HOME / ASSAY_DATABASE_URL."""
    with _local(json_output):
        from registry.app import serve as run_server

        run_server(host=host, port=port)


@db_app.command("upgrade")
def db_upgrade(json_output: JsonOption = False) -> None:
    """Migrate the installation's database to the newest schema."""
    with _local(json_output):
        from registry.db import upgrade_database

        revision = upgrade_database()
    if json_output:
        _print_json({"revision": revision})
        return
    typer.echo(f"Database is at revision {revision}.")


@admin_app.command("init")
def admin_init(
    name: Annotated[str, typer.Option(help="Name of the first admin.")] = "admin",
    json_output: JsonOption = False,
) -> None:
    """Create the first admin and print its token (once)."""
    with _local(json_output):
        from registry.principals.admin import init_admin

        admin_token = init_admin(name=name)
    if json_output:
        _print_json({"token": admin_token})
        return
    typer.echo(f"Created the first admin, {name!r}. Its token:")
    typer.echo("")
    typer.echo(f"  {admin_token}")
    typer.echo("")
    typer.echo("Use it in this shell with:")
    typer.echo(f"  export ASSAY_TOKEN={admin_token}")
    _warn("store it now: it will not be shown again.")


@admin_app.command("recover")
def admin_recover(
    name: Annotated[
        str, typer.Option(help="Admin to issue the token to (created if it does not exist).")
    ] = "admin",
    json_output: JsonOption = False,
) -> None:
    """Issue a new admin token locally, when no admin token works any more (audited)."""
    with _local(json_output):
        from registry.principals.admin import recover_admin

        recovery = recover_admin(name=name)
    before = int(recovery.active_admin_tokens_before)
    if json_output:
        _print_json(
            {
                "token": recovery.token,
                "token_id": str(recovery.token_id),
                "principal_id": str(recovery.principal_id),
                "principal_name": recovery.principal_name,
                "active_admin_tokens_before": before,
            }
        )
        return
    if before == 0:
        typer.echo("No active admin token existed: this restores admin access.")
    else:
        tokens = "token" if before == 1 else "tokens"
        typer.echo(
            f"{before} other active admin {tokens} existed; this adds one (none was revoked)."
        )
    typer.echo(f"Issued a new admin token to '{_text(recovery.principal_name)}':")
    typer.echo("")
    typer.echo(f"  {recovery.token}")
    typer.echo("")
    typer.echo("Use it in this shell with:")
    typer.echo(f"  export ASSAY_TOKEN={recovery.token}")
    typer.echo("The audit trail records it as admin.recovered, by the local user running this.")
    _warn("store it now: it will not be shown again.")


@audit_app.command("verify")
def audit_verify(
    expect_head: Annotated[
        str | None,
        typer.Option(
            help="A head hash recorded earlier, outside the database: it must still be in the "
            "chain (events appended since are fine; deleted ones are not).",
            show_default=False,
        ),
    ] = None,
    public_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--public-key",
            dir_okay=False,
            help="The checkpoint signing key's public key (PEM, from `assay audit key`), as "
            "recorded outside the database; repeat for a key used earlier. Verifies the signed "
            "checkpoints too.",
            show_default=False,
        ),
    ] = None,
    checkpoints: Annotated[
        Path | None,
        typer.Option(
            "--checkpoints",
            dir_okay=False,
            help="Checkpoints exported earlier (`assay audit checkpoint --export`): each must "
            "still be in the database and the chain must match it. Needs --public-key.",
            show_default=False,
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Verify the audit hash chain in the local database (not over HTTP)."""
    if checkpoints is not None and not public_key:
        _fail(
            "--checkpoints needs --public-key: the checkpoints are only as good as the key "
            "they are checked against",
            code=EXIT_USAGE,
            json_output=json_output,
            error="usage",
        )
    with _local(json_output):
        if public_key:
            from registry.checkpoints import verify_installation as verify_signed

            result = verify_signed(
                public_key_paths=public_key, checkpoints_path=checkpoints, expect_head=expect_head
            )
        else:
            from registry.audit import verify_installation

            result = verify_installation(expect_head=expect_head)
    if json_output:
        _print_json(result.model_dump(mode="json"))
        if not result.ok:
            raise typer.Exit(EXIT_REFUSED)
        return
    if result.ok:
        events = "event" if result.length == 1 else "events"
        typer.echo(f"Audit chain intact: {result.length} {events}.")
        typer.echo(f"  head: {result.head or '- (empty chain)'}")
        grown = result.grown_since_expected
        if expect_head is not None:
            since = f"; {grown} appended since" if grown else ""
            typer.echo(f"  expected head found in the chain{since}")
        matched = result.checkpoints_verified
        if matched is not None:
            source = "stored and exported" if checkpoints is not None else "stored"
            after = result.events_after_last_checkpoint
            typer.echo(
                f"  signed checkpoints matched: {matched} ({source}); "
                f"events after the last one: {after}"
            )
            if matched == 0:
                _warn("no signed checkpoint to check the chain against")
        return
    seq, reason = result.first_broken_seq, result.reason or "no reason given"
    if seq is not None:
        # The server's reason may already name the event; do not say it twice.
        reason = reason.removeprefix(f"event {seq}: ")
        _error(f"audit chain broken at event {seq}: {reason}")
        typer.echo(f"  intact events before it: {result.length}", err=True)
        typer.echo(f"  last intact head: {result.head or '-'}", err=True)
    elif (broken_checkpoint := result.broken_checkpoint) is not None:
        _error(f"audit chain fails its signed checkpoints: {reason}")
        typer.echo(f"  first failing checkpoint: {broken_checkpoint}", err=True)
    else:
        _error(f"audit chain verification failed: {reason}")
        typer.echo(f"  events: {result.length}", err=True)
        typer.echo(f"  head: {result.head or '-'}", err=True)
    raise typer.Exit(EXIT_REFUSED)


@audit_app.command("key")
def audit_key(json_output: JsonOption = False) -> None:
    """Print the public key that signs audit checkpoints (local; the key is created if absent).

    Record it outside the database: `assay audit verify --public-key` checks against it.
    """
    with _local(json_output):
        from registry.checkpoints import public_key_of_installation
        from registry.settings import get_settings

        pem, key_id = public_key_of_installation(get_settings())
    if json_output:
        _print_json({"public_key": pem, "key_id": key_id})
        return
    typer.echo(pem, nl=False)
    typer.echo(f"key id (SHA-256 of the raw public key): {key_id}", err=True)


@audit_app.command("checkpoint")
def audit_checkpoint(
    export: Annotated[
        Path | None,
        typer.Option(
            "--export",
            dir_okay=False,
            help="Then write every checkpoint to this file (`-` for stdout), to keep outside "
            "the database.",
            show_default=False,
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Sign a checkpoint of the audit chain now, if it moved since the last one (local)."""
    with _local(json_output):
        from registry.checkpoints import (
            checkpoint_installation,
            export_installation,
            write_export,
        )
        from registry.settings import get_settings

        settings = get_settings()
        newest, created = checkpoint_installation(settings)
        document = export_installation(settings) if export is not None else None
        if document is not None and export is not None and str(export) != "-":
            write_export(document, export)
    to_stdout = export is not None and str(export) == "-"
    if document is not None and to_stdout:
        _print_json(document.model_dump(mode="json"))
    elif json_output:
        record = None if newest is None else newest.model_dump(mode="json")
        _print_json({"created": created, "checkpoint": record})
    message = (
        "no checkpoint"
        if newest is None
        else f"checkpoint {newest.seq}: {_count(newest.length, 'event')}, head {newest.head}"
    )
    typer.echo(
        ("Signed " if created else "The chain has not moved since ") + message,
        err=to_stdout or json_output,
    )
    if document is not None and not to_stdout:
        typer.echo(f"Wrote {len(document.checkpoints)} checkpoint(s) to {export}.")


@app.command("doctor")
def doctor(json_output: JsonOption = False) -> None:
    """Check the artifact store against the database and clean up what a crash left (local).

    Removes staging files no running server holds, moves artifacts that no version references to
    ASSAY_HOME/quarantine/ (one audit event each), and reports versions whose artifact is missing
    (exit 1). The server runs the same check at start-up; running it beside a live server is safe.
    """
    with _local(json_output):
        from registry.db import check_current, get_engine
        from registry.doctor import reconcile
        from registry.settings import get_settings
        from registry.storage import ArtifactStore

        settings = get_settings()
        engine = get_engine(settings)
        check_current(engine)
        store = ArtifactStore(settings.artifacts_dir, settings.tmp_dir)
        report = reconcile(engine, store, quarantine_dir=settings.quarantine_dir)
    if json_output:
        _print_json(report.model_dump(mode="json"))
    else:
        for staged in report.removed_staging:
            typer.echo(f"removed stale staging file tmp/{staged.name} ({staged.size_bytes} bytes)")
        for item in report.quarantined:
            typer.echo(
                f"quarantined {item.digest} ({item.size_bytes} bytes, no version references it)"
                f" to {item.moved_to}"
            )
        for path in report.unexpected_files:
            _warn(f"the artifact store holds a file it did not name, left alone: {path}")
        for lost in report.missing_artifacts:
            _error(
                f"version {lost.version_id} (model {lost.model_id}, number {lost.number}) "
                f"references {lost.digest}, which is not in the artifact store"
            )
        typer.echo(
            f"Store checked: {report.referenced_artifacts} referenced artifact(s); "
            f"{len(report.removed_staging)} staging file(s) removed, "
            f"{len(report.quarantined)} artifact(s) quarantined, "
            f"{len(report.missing_artifacts)} missing."
        )
    if not report.ok:
        if not json_output:
            typer.echo(
                "A missing artifact cannot be rebuilt: restore it from a backup of "
                "ASSAY_HOME/artifacts.",
                err=True,
            )
        raise typer.Exit(EXIT_REFUSED)


@app.command("example-model")
def example_model(
    out: Annotated[Path, typer.Option(file_okay=False, help="Directory to write into.")],
    variant: Annotated[
        int, typer.Option(min=0, help="Which example (each has its own digest).")
    ] = 0,
    json_output: JsonOption = False,
) -> None:
    """Write a small example model and its manifest, ready to submit."""
    with _local(json_output):
        from validators.runtime.example import write_example_model

        model_path, manifest_path = write_example_model(Path(out), variant=variant)
    if json_output:
        _print_json({"artifact": str(model_path), "manifest": str(manifest_path)})
        return
    typer.echo(f"Wrote the example model to {model_path}")
    typer.echo(f"  and its manifest to {manifest_path}")
    typer.echo("Submit it with:")
    typer.echo(f"  assay submit MODEL_ID --artifact {model_path} --manifest {manifest_path}")


# --- scoring a predictions file (local, no server) ---------------------------------------------


class ScoreScale(StrEnum):
    probability = "probability"
    logit = "logit"


class ResultView(StrEnum):
    committee = "committee"
    vendor = "vendor"


@contextmanager
def _scoring(json_output: bool) -> Iterator[None]:
    """Runs `assay score`: bad input (file, policy, options) becomes a message and exit 2."""
    try:
        yield
    except ModuleNotFoundError as exc:
        _fail(
            f"assay score needs the statistics libraries (pip install 'assay[server]'): {exc}",
            code=EXIT_USAGE,
            json_output=json_output,
            error="server_not_installed",
        )
    except Exception as exc:
        from validators.data.predictions import PredictionsInvalid
        from validators.policy import PolicyInvalid

        if isinstance(exc, PolicyInvalid):
            _fail(
                f"{exc.source} is not a valid policy: {len(exc.problems)} problem(s)",
                code=EXIT_USAGE,
                json_output=json_output,
                error="policy_invalid",
                problems=[p.model_dump() for p in exc.problems],
            )
        if isinstance(exc, PredictionsInvalid):
            _fail(str(exc), code=EXIT_USAGE, json_output=json_output, error="predictions_invalid")
        if isinstance(exc, ValueError):
            # The statistics refuse unusable data with a ValueError that says what was expected.
            _fail(str(exc), code=EXIT_USAGE, json_output=json_output, error="invalid_input")
        raise


def _read_predictions(path: Path, role: str) -> Any:
    from validators.data.predictions import PredictionsInvalid, read_predictions

    try:
        return read_predictions(path)
    except PredictionsInvalid as exc:
        message = str(exc)
        raise PredictionsInvalid(
            message if str(path) in message else f"{role} {path}: {message}"
        ) from exc


@app.command()
def score(
    predictions: Annotated[
        Path,
        typer.Argument(
            show_default=False,
            help="Predictions CSV: case_id, patient_id, label and score (or label:<name> and "
            "score:<name> per label), then attribute columns (sex, age, site...).",
        ),
    ],
    policy: Annotated[
        Path | None,
        typer.Option(
            metavar="POLICY.yaml",
            show_default=False,
            help="Evaluation policy (YAML or JSON). Without one: the default metrics, 95% "
            "bootstrap intervals, every attribute column, and no verdict.",
        ),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            metavar="BASELINE.csv",
            show_default=False,
            help="The same cases scored by the model being replaced (non_inferiority criteria).",
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(show_default=False, help="Operating threshold; overrides the policy's."),
    ] = None,
    scores: Annotated[
        ScoreScale | None,
        typer.Option(show_default=False, help="Scale of the scores; overrides the policy's."),
    ] = None,
    view: Annotated[
        ResultView,
        typer.Option(help="committee: every number, small groups flagged; vendor: suppressed."),
    ] = ResultView.committee,
    json_output: JsonOption = False,
) -> None:
    """Evaluate a predictions file: metrics with CIs, subgroups, fairness and the policy verdict.

    Exit codes: 0 evaluated (and the policy passed), 1 the policy failed, 2 bad input.
    """
    import warnings

    status = _console(stderr=True).status("reading the predictions", spinner="dots")
    with _scoring(json_output), status, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        from validators.evaluation import evaluate_predictions
        from validators.policy import load_policy

        loaded_policy = load_policy(policy) if policy is not None else None
        table = _read_predictions(predictions, "predictions file")
        reference = None
        if baseline is not None:
            status.update("reading the baseline")
            reference = _read_predictions(baseline, "baseline file")
        result = evaluate_predictions(
            table,
            policy=loaded_policy,
            baseline=reference,
            threshold=threshold,
            scores=scores.value if scores is not None else None,
            view=view.value,
            on_progress=lambda step: status.update(step),
        )
    for warning in caught:
        _warn(str(warning.message))
    criteria = loaded_policy.criteria if loaded_policy is not None else []
    if baseline is not None and not any(c.kind == "non_inferiority" for c in criteria):
        _warn("no non_inferiority criterion reads the baseline, so it was only checked.")
    if json_output:
        _print_json(_dump(result))
    else:
        from validators.scorecard import render_scorecard

        console = _console()
        # Piped output has no terminal width; tables then keep a readable width of their own.
        render_scorecard(result, console=console if console.is_terminal else _console(width=160))
    if result.verdict is not None and not result.verdict.passed:
        raise typer.Exit(EXIT_REFUSED)


@app.command("example-predictions")
def example_predictions(
    out: Annotated[Path, typer.Option(file_okay=False, help="Directory to write into.")],
    cases: Annotated[int, typer.Option(min=1, help="Number of cases (images).")] = 2000,
    patients: Annotated[
        int, typer.Option(min=1, help="Number of patients (at most the number of cases).")
    ] = 800,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the synthetic data.")] = 0,
    json_output: JsonOption = False,
) -> None:
    """Write a synthetic predictions file and a baseline on the same cases, to try `assay score`."""
    with _scoring(json_output):
        from validators.data.synthetic import write_example_predictions

        files = write_example_predictions(Path(out), n_cases=cases, n_patients=patients, seed=seed)
    if json_output:
        _print_json(
            {
                "predictions": str(files.predictions),
                "baseline": str(files.baseline),
                "cases": files.n_cases,
                "patients": files.n_patients,
            }
        )
        return
    typer.echo(
        f"Wrote {files.n_cases:,} synthetic cases of {files.n_patients:,} patients "
        f"to {files.predictions}"
    )
    typer.echo(f"  and the deployed model's scores on the same cases to {files.baseline}")
    typer.echo("Score them with:")
    typer.echo(
        f"  assay score {files.predictions} --baseline {files.baseline} "
        "--policy policies/example-binary.yaml"
    )


# --- entry point -------------------------------------------------------------------------------


def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"assay {version('assay')}")
        except PackageNotFoundError:
            typer.echo("assay (version unknown: not installed as a package)")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
) -> None:
    """Assay: validate, approve and monitor medical-imaging AI inside the hospital."""


def main() -> None:
    """Runs the `assay` command."""
    app()
