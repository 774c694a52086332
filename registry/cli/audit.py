"""`assay audit`: the hash-chained audit trail.

`list` reads it over HTTP; `verify`, `key` and `checkpoint` work on the local installation (its
database and its checkpoint signing key), not over HTTP.
"""

from pathlib import Path
from typing import Annotated

import typer

from registry.cli.common import (
    DEFAULT_URL,
    EXIT_REFUSED,
    EXIT_USAGE,
    JsonOption,
    LimitOption,
    OffsetOption,
    TokenOption,
    UrlOption,
    command_group,
    dump,
    fail,
    local,
    print_error,
    print_json,
    print_page_footer,
    print_table,
    print_warning,
    remote,
)

audit_app = command_group("The hash-chained audit trail.")


@audit_app.command("list")
def audit_list(
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """List audit events, oldest first (admin, reviewer)."""
    with remote(url, token, json_output) as client:
        page = client.audit_events(limit=limit, offset=offset)
    if json_output:
        print_json(dump(page))
        return
    rows = [
        (e.seq, _moment(e.at), e.actor_name, e.action, e.object_type, e.object_id, e.hash[:12])
        for e in page.data
    ]
    columns = ["seq", "at", "actor", "action", "object", "object id", "hash"]
    print_table(columns, rows)
    print_page_footer(page, offset)


def _moment(at: str) -> object:
    """Gives back the event's time as a datetime for the table (minutes, local time), or the
    server's string as sent when it is not an ISO-8601 time."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(at)
    except ValueError:
        return at


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
        fail(
            "--checkpoints needs --public-key: the checkpoints are only as good as the key "
            "they are checked against",
            code=EXIT_USAGE,
            json_output=json_output,
            error="usage",
        )
    with local(json_output):
        if public_key:
            from registry.checkpoints import verify_installation as verify_signed

            result = verify_signed(
                public_key_paths=public_key, checkpoints_path=checkpoints, expect_head=expect_head
            )
        else:
            from registry.audit import verify_installation

            result = verify_installation(expect_head=expect_head)
    if json_output:
        print_json(result.model_dump(mode="json"))
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
                print_warning("no signed checkpoint to check the chain against")
        return
    seq, reason = result.first_broken_seq, result.reason or "no reason given"
    if seq is not None:
        # The server's reason may already name the event; do not say it twice.
        reason = reason.removeprefix(f"event {seq}: ")
        print_error(f"audit chain broken at event {seq}: {reason}")
        typer.echo(f"  intact events before it: {result.length}", err=True)
        typer.echo(f"  last intact head: {result.head or '-'}", err=True)
    elif (broken_checkpoint := result.broken_checkpoint) is not None:
        print_error(f"audit chain fails its signed checkpoints: {reason}")
        typer.echo(f"  first failing checkpoint: {broken_checkpoint}", err=True)
    else:
        print_error(f"audit chain verification failed: {reason}")
        typer.echo(f"  events: {result.length}", err=True)
        typer.echo(f"  head: {result.head or '-'}", err=True)
    raise typer.Exit(EXIT_REFUSED)


@audit_app.command("key")
def audit_key(json_output: JsonOption = False) -> None:
    """Print the public key that signs audit checkpoints (local; the key is created if absent).

    Record it outside the database: `assay audit verify --public-key` checks against it.
    """
    with local(json_output):
        from registry.checkpoints import public_key_of_installation
        from registry.settings import get_settings

        pem, key_id = public_key_of_installation(get_settings())
    if json_output:
        print_json({"public_key": pem, "key_id": key_id})
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
    with local(json_output):
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
        print_json(document.model_dump(mode="json"))
    elif json_output:
        record = None if newest is None else newest.model_dump(mode="json")
        print_json({"created": created, "checkpoint": record})
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


def _count(number: int, noun: str) -> str:
    """Gives back "1 event" or "3 events"."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
