"""What every command module of `assay` shares: exit codes, options, output, errors, plumbing.

Only typer (and a few light standard modules) at module level, like every module of the package:
rich, the HTTP client and the server are imported inside the functions that use them.
"""

import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from pydantic import BaseModel
    from rich.console import Console

    from registry.client import AssayClient, AssayError, Page
    from validators.problems import InputInvalid

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2

DEFAULT_URL = (
    "http://127.0.0.1:8000"  # the same as registry.client.DEFAULT_URL, without importing it
)


def command_group(help_text: str) -> typer.Typer:
    """Gives back a Typer for a command group (`assay <group> <command>`), set up like the root.

    Plain click help, as the root has: typer's rich help pulls in rich.markdown and markdown-it.
    """
    return typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode=None)


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


def console(*, stderr: bool = False, width: int | None = None) -> "Console":
    """Gives back a rich console on stdout (or stderr) that highlights nothing on its own."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, width=width)


def print_json(document: Any) -> None:
    """Prints `document` as indented JSON on stdout."""
    typer.echo(json.dumps(document, indent=2, default=str))


def dump(model: "BaseModel") -> dict[str, Any]:
    """Gives back the model as a JSON-ready dict, as the server would send it."""
    return model.model_dump(mode="json")


def printable(text: str) -> str:
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


def as_text(value: Any) -> str:
    """Gives back a value as the terminal shows it: "-" for nothing, escapes for controls."""
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return printable(str(value))


def print_fields(fields: Sequence[tuple[str, Any]]) -> None:
    """Prints `key: value` lines, aligned, unwrapped so ids and digests can be copied whole."""
    width = max((len(key) for key, _ in fields), default=0)
    for key, value in fields:
        typer.echo(f"  {key + ':':<{width + 1}} {as_text(value)}")


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
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
    out = console()
    needed = Measurement.get(out, out.options.update_width(10_000), table).maximum
    if needed > out.width:
        out = console(width=needed)
    out.print(table)


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        # Tables are read at a glance: minutes, in the reader's local time.
        return value.astimezone().strftime("%Y-%m-%d %H:%M")
    return as_text(value)


def print_page_footer(page: "Page[Any]", offset: int) -> None:
    """Prints "(none)" for an empty page, or how to ask for the next one when there is more."""
    shown = len(page.data)
    if shown == 0:
        typer.echo("(none)" if offset == 0 else f"(none at offset {offset}; {page.count} in all)")
    elif page.count > offset + shown:
        typer.echo(
            f"showing {offset + 1}-{offset + shown} of {page.count}; "
            f"use --offset {offset + shown} for more"
        )


def print_error(message: str) -> None:
    """Prints `error: <message>` on stderr."""
    from rich.text import Text

    out = console(stderr=True)
    out.print(Text("error: ", style="bold red") + Text(printable(message)), soft_wrap=True)


def print_warning(message: str) -> None:
    """Prints `warning: <message>` on stderr."""
    from rich.text import Text

    console(stderr=True).print(
        Text("warning: ", style="bold yellow") + Text(printable(message)), soft_wrap=True
    )


# --- failing -----------------------------------------------------------------------------------


def fail(
    detail: str,
    *,
    code: int,
    json_output: bool,
    error: str = "refused",
    problems: Sequence[Mapping[str, Any]] = (),
    status: int | None = None,
    hint: str | None = None,
    whole: str | None = None,
) -> NoReturn:
    """Prints the error (and, with --json, its JSON document on stdout) and exits with `code`.

    `whole` labels the problems of the whole document (no path), as `(dataset)`.
    """
    if json_output:
        print_json({"status": status, "error": error, "detail": detail, "problems": list(problems)})
    print_error(detail)
    for problem in problems:
        path, message = problem.get("path") or whole, problem.get("message", "")
        line = f"  {path}: {message}" if path else f"  {message}"
        typer.echo(printable(line), err=True)
    if hint:
        typer.echo(hint, err=True)
    raise typer.Exit(code)


def fail_invalid(
    exc: "InputInvalid", *, code: int, json_output: bool, error: str | None = None
) -> NoReturn:
    """Prints a refused document's problems, one a line with its path, and exits with `code`.

    Works for every kind of `validators.problems.InputInvalid` (a policy, a manifest, a dataset
    manifest...), so a command that reads a new kind of document prints its refusal unchanged.
    `error` is the --json error code, the exception's own code by default.
    """
    document = exc.document.removeprefix("the ")
    fail(
        f"{exc.source} is not a valid {document}: {len(exc.problems)} problem(s)",
        code=code,
        json_output=json_output,
        error=error or exc.code,
        problems=[problem.model_dump() for problem in exc.problems],
    )


def _fail_from(exc: "AssayError", *, json_output: bool, token_given: bool) -> NoReturn:
    from registry.client import ServerError, Unauthorized, UnexpectedResponse, Unreachable

    failed_to_answer = isinstance(exc, Unreachable | ServerError | UnexpectedResponse)
    hint = None
    if isinstance(exc, Unauthorized) and not token_given:
        hint = "no token was given: pass --token or set ASSAY_TOKEN"
    fail(
        exc.detail,
        code=EXIT_USAGE if failed_to_answer else EXIT_REFUSED,
        json_output=json_output,
        error=exc.error,
        problems=exc.problems,
        status=exc.status,
        hint=hint,
    )


# --- remote commands: plumbing -----------------------------------------------------------------


def make_client(url: str, token: str | None) -> "AssayClient":
    """Gives back the client the remote commands use (tests replace this to inject a transport)."""
    from registry.client import AssayClient

    return AssayClient(url, token)


@contextmanager
def remote(url: str, token: str | None, json_output: bool) -> Iterator["AssayClient"]:
    """Yields a client; an `AssayError` inside the block becomes a message and an exit code."""
    from registry.client import AssayError

    # Looked up in this module at call time, so a test's replacement of make_client is used.
    client = make_client(url, token)
    try:
        with client:
            yield client
    except AssayError as exc:
        _fail_from(exc, json_output=json_output, token_given=bool(token))


# --- local commands: plumbing ------------------------------------------------------------------


def _server_error(exc: BaseException) -> Any:
    """Gives back `exc` if it is a server domain error (`registry.errors`), else None."""
    # Looked up in sys.modules, not imported: a command that never loaded the server cannot have
    # raised one, and importing registry.errors here would pull the server into every command.
    errors = sys.modules.get("registry.errors")
    base = getattr(errors, "AssayError", None)
    if isinstance(base, type) and isinstance(exc, base):
        return exc
    return None


@contextmanager
def local(json_output: bool) -> Iterator[None]:
    """Runs a local command: server domain errors become messages and exit codes."""
    try:
        yield
    except ModuleNotFoundError as exc:
        fail(
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
        fail(
            str(getattr(error, "detail", error)),
            code=EXIT_REFUSED if refused else EXIT_USAGE,
            json_output=json_output,
            error=code_name,
            problems=problems,
            status=status,
        )
