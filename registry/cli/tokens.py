"""`assay whoami` and `assay token`: who a token belongs to; issuing and revoking tokens (admin).

`whoami` is a plain function, registered in `registry/cli/__init__.py`.
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated

import typer

from registry.cli.common import (
    DEFAULT_URL,
    JsonOption,
    LimitOption,
    OffsetOption,
    TokenOption,
    UrlOption,
    as_text,
    command_group,
    dump,
    print_fields,
    print_json,
    print_page_footer,
    print_table,
    print_warning,
    remote,
)


class Role(StrEnum):
    admin = "admin"
    reviewer = "reviewer"
    vendor = "vendor"
    ci = "ci"
    monitor = "monitor"


token_app = command_group("API tokens (admin).")


def whoami(
    url: UrlOption = DEFAULT_URL, token: TokenOption = None, json_output: JsonOption = False
) -> None:
    """Show who the token belongs to: principal, role and vendor."""
    with remote(url, token, json_output) as client:
        me = client.me()
    if json_output:
        print_json(dump(me))
        return
    vendor = f"{me.vendor_name} ({me.vendor_id})" if me.vendor_id else None
    print_fields(
        [
            ("name", me.name),
            ("role", me.role),
            ("vendor", vendor),
            ("principal", me.id),
            ("token", me.token_id),
            ("server", url),
        ]
    )


def _parse_expiry(value: str | None) -> datetime | None:
    """Gives back --expires-at as an aware time (local when no zone is given), or None."""
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
    with remote(url, token, json_output) as client:
        created = client.create_token(role.value, name, vendor_id=vendor, expires_at=expiry)
    if json_output:
        print_json(dump(created))
        return
    typer.echo(f"Created {created.role} token '{as_text(created.name)}' (id {created.id}).")
    if created.expires_at:
        typer.echo(f"It expires at {as_text(created.expires_at)}.")
    typer.echo("")
    typer.echo(f"  {created.token}")
    typer.echo("")
    print_warning("store it now: it will not be shown again.")


@token_app.command("list")
def token_list(
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """List tokens (prefixes only; secrets are never stored)."""
    with remote(url, token, json_output) as client:
        page = client.list_tokens(limit=limit, offset=offset)
    if json_output:
        print_json(dump(page))
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
    print_table(columns, rows)
    print_page_footer(page, offset)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="Id of the token to revoke.")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Revoke a token; it stops working at once."""
    with remote(url, token, json_output) as client:
        revoked = client.revoke_token(token_id)
    if json_output:
        print_json(dump(revoked))
        return
    typer.echo(
        f"Revoked token '{as_text(revoked.name)}' ({revoked.id}) at {as_text(revoked.revoked_at)}."
    )
