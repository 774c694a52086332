"""`assay model`: models in a vendor's namespace."""

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

model_app = command_group("Models in a vendor's namespace.")


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
    with remote(url, token, json_output) as client:
        model = client.create_model(name, vendor_id=vendor, description=description)
    if json_output:
        print_json(dump(model))
        return
    typer.echo(f"Created model {as_text(model.name)}.")
    print_fields([("id", model.id), ("vendor", model.vendor_id)])
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
    with remote(url, token, json_output) as client:
        page = client.list_models(limit=limit, offset=offset)
    if json_output:
        print_json(dump(page))
        return
    rows = [(m.id, m.name, m.vendor_id, m.version_count, m.created_at) for m in page.data]
    print_table(["id", "name", "vendor", "versions", "created"], rows)
    print_page_footer(page, offset)


@model_app.command("show")
def model_show(
    model_id: Annotated[str, typer.Argument(help="Model id.")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show one model."""
    with remote(url, token, json_output) as client:
        model = client.get_model(model_id)
    if json_output:
        print_json(dump(model))
        return
    print_fields(
        [
            ("id", model.id),
            ("name", model.name),
            ("vendor", model.vendor_id),
            ("description", model.description),
            ("versions", model.version_count),
            ("created", model.created_at),
        ]
    )
