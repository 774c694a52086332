"""The `assay` command: a thin shell over `registry.client`, plus local administration commands.

One module per command group; `common` holds what they share (exit codes, options, printing,
failing, the `remote` and `local` plumbing). This module only builds the root command and lists,
one line each, every top-level command and group, in the order `assay --help` shows them.

Adding a command group is one module and one line here. For `assay dataset check`:
  1. `registry/cli/datasets.py`:
         dataset_app = command_group("Held-out datasets.")

         @dataset_app.command("check")
         def dataset_check(...) -> None: ...
  2. below: `app.add_typer(datasets.dataset_app, name="dataset")`.
A top-level command (`assay example-dataset`) is a plain function in its module, registered below
with `app.command()(datasets.example_dataset)`; typer names it after the function.

Start-up time matters (`assay --help` must be instant), so every module of this package imports
only typer (and light standard modules) at module level: a test reads each module to hold it to
that. The HTTP client, rich and every server module (settings, database, app, validators) are
imported inside the commands that use them; vendors and CI install the client only, without the
server's dependencies.

Exit codes: 0 success; 1 refused, by the server (4xx) or by a check; 2 usage error, server
unreachable or server failure (5xx).
"""

from typing import Annotated

import typer

from registry.cli import (
    audit,
    datasets,
    evaluate,
    example_dataset,
    local_admin,
    models,
    scoring,
    tokens,
    vendors,
    versions,
)

__all__ = ["app", "main"]

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

# Top-level commands.
app.command()(tokens.whoami)
app.command()(versions.submit)
app.command()(versions.versions)
app.command()(versions.manifest_schema)
app.command()(local_admin.serve)
app.command()(local_admin.doctor)
app.command()(versions.example_model)
app.command()(scoring.score)
app.command()(evaluate.evaluate)
app.command()(scoring.example_predictions)
app.command()(example_dataset.example_dataset)

# Command groups.
app.add_typer(vendors.vendor_app, name="vendor")
app.add_typer(tokens.token_app, name="token")
app.add_typer(models.model_app, name="model")
app.add_typer(versions.version_app, name="version")
app.add_typer(audit.audit_app, name="audit")
app.add_typer(local_admin.db_app, name="db")
app.add_typer(local_admin.admin_app, name="admin")
app.add_typer(datasets.dataset_app, name="dataset")


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
