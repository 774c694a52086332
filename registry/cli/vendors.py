"""`assay vendor`: register and list vendors (admin)."""

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
    remote,
)

vendor_app = command_group("Vendors (admin).")


@vendor_app.command("create")
def vendor_create(
    name: Annotated[str, typer.Argument(help="Short unique name, e.g. acme.")],
    display_name: Annotated[str | None, typer.Option(help="Name shown to people.")] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Register a vendor."""
    with remote(url, token, json_output) as client:
        vendor = client.create_vendor(name, display_name=display_name)
    if json_output:
        print_json(dump(vendor))
        return
    typer.echo(f"Created vendor {as_text(vendor.name)}.")
    print_fields([("id", vendor.id), ("display name", vendor.display_name)])


@vendor_app.command("list")
def vendor_list(
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """List vendors."""
    with remote(url, token, json_output) as client:
        page = client.list_vendors(limit=limit, offset=offset)
    if json_output:
        print_json(dump(page))
        return
    rows = [(v.id, v.name, v.display_name, v.created_at) for v in page.data]
    print_table(["id", "name", "display name", "created"], rows)
    print_page_footer(page, offset)
