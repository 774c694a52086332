"""Local administration of the installation: `assay serve`, `assay doctor`, `db`, `admin`.

These run on the server's machine against ASSAY_HOME / ASSAY_DATABASE_URL, not over HTTP. The
top-level commands are plain functions, registered in `registry/cli/__init__.py`.
"""

from typing import Annotated

import typer

from registry.cli.common import (
    EXIT_REFUSED,
    JsonOption,
    as_text,
    command_group,
    local,
    print_error,
    print_json,
    print_warning,
)

db_app = command_group("The installation's database (local).")
admin_app = command_group("Installation bootstrap and recovery (local).")


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    json_output: JsonOption = False,
) -> None:
    """Run the server for the installation in ASSAY_HOME / ASSAY_DATABASE_URL."""
    with local(json_output):
        from registry.app import serve as run_server

        run_server(host=host, port=port)


@db_app.command("upgrade")
def db_upgrade(json_output: JsonOption = False) -> None:
    """Migrate the installation's database to the newest schema."""
    with local(json_output):
        from registry.db import upgrade_database

        revision = upgrade_database()
    if json_output:
        print_json({"revision": revision})
        return
    typer.echo(f"Database is at revision {revision}.")


@admin_app.command("init")
def admin_init(
    name: Annotated[str, typer.Option(help="Name of the first admin.")] = "admin",
    json_output: JsonOption = False,
) -> None:
    """Create the first admin and print its token (once)."""
    with local(json_output):
        from registry.principals.admin import init_admin

        admin_token = init_admin(name=name)
    if json_output:
        print_json({"token": admin_token})
        return
    typer.echo(f"Created the first admin, {name!r}. Its token:")
    typer.echo("")
    typer.echo(f"  {admin_token}")
    typer.echo("")
    typer.echo("Use it in this shell with:")
    typer.echo(f"  export ASSAY_TOKEN={admin_token}")
    print_warning("store it now: it will not be shown again.")


@admin_app.command("recover")
def admin_recover(
    name: Annotated[
        str, typer.Option(help="Admin to issue the token to (created if it does not exist).")
    ] = "admin",
    json_output: JsonOption = False,
) -> None:
    """Issue a new admin token locally, when no admin token works any more (audited)."""
    with local(json_output):
        from registry.principals.admin import recover_admin

        recovery = recover_admin(name=name)
    before = int(recovery.active_admin_tokens_before)
    if json_output:
        print_json(
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
    typer.echo(f"Issued a new admin token to '{as_text(recovery.principal_name)}':")
    typer.echo("")
    typer.echo(f"  {recovery.token}")
    typer.echo("")
    typer.echo("Use it in this shell with:")
    typer.echo(f"  export ASSAY_TOKEN={recovery.token}")
    typer.echo("The audit trail records it as admin.recovered, by the local user running this.")
    print_warning("store it now: it will not be shown again.")


def doctor(json_output: JsonOption = False) -> None:
    """Check the artifact store against the database and clean up what a crash left (local).

    Removes staging files no running server holds, moves artifacts that no version references to
    ASSAY_HOME/quarantine/ (one audit event each), and reports versions whose artifact is missing
    (exit 1). The server runs the same check at start-up; running it beside a live server is safe.
    """
    with local(json_output):
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
        print_json(report.model_dump(mode="json"))
    else:
        for staged in report.removed_staging:
            typer.echo(f"removed stale staging file tmp/{staged.name} ({staged.size_bytes} bytes)")
        for item in report.quarantined:
            typer.echo(
                f"quarantined {item.digest} ({item.size_bytes} bytes, no version references it)"
                f" to {item.moved_to}"
            )
        for path in report.unexpected_files:
            print_warning(f"the artifact store holds a file it did not name, left alone: {path}")
        for lost in report.missing_artifacts:
            print_error(
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
