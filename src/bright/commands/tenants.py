"""``bright tenants ...``, ``bright backup``, ``bright restore``: hosting many communities on one node.

Mounted in the main CLI with ``app.add_typer(hosting_app)`` (no name: its commands join the root).

``bright tenants create NAME [--manager USER --manager-password PW] [--max-entities N]``
``bright tenants list [--json]``                      tenants with their usage and quotas
``bright tenants delete NAME --yes``                  delete the tenant and every row of it
``bright tenants register NAME --parent-url URL --public-url URL``
                                                      register the tenant at a parent node as its own node
``bright backup TENANT [--output FILE]``              one tenant to a ZIP (docs/onboarding.md "Backup format")
``bright restore FILE [--tenant NAME] [--replace]``   a backup into this node (migrated first)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bright.config import Settings

hosting_app = typer.Typer(no_args_is_help=True)
tenants_app = typer.Typer(
    help="Communities hosted as NGSI-LD tenants: create, list, delete, register.", no_args_is_help=True
)
hosting_app.add_typer(tenants_app, name="tenants")
console = Console(emoji=False, markup=False, highlight=False)

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database", "-d", help="Database URL (default sqlite:///bright.db; env BRIGHT_DATABASE_URL)"
    ),
]


def _engine(database: str | None):  # type: ignore[no-untyped-def]
    from bright.twin.db import make_engine

    settings = Settings.from_env(database_url=database) if database else Settings.from_env()
    return make_engine(settings.database_url)


def _fail(message: str) -> None:
    console.print(f"error: {message}")
    raise typer.Exit(1)


@tenants_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Tenant name (the NGSILD-Tenant header)")],
    title: Annotated[str | None, typer.Option(help="Display name")] = None,
    community_id: Annotated[str | None, typer.Option("--community-id", help="The community it hosts")] = None,
    manager: Annotated[str | None, typer.Option(help="User name of the tenant's manager account")] = None,
    manager_password: Annotated[str | None, typer.Option("--manager-password", help="Its password")] = None,
    max_entities: Annotated[int | None, typer.Option("--max-entities", help="Entity quota")] = None,
    max_series_points: Annotated[
        int | None, typer.Option("--max-series-points", help="Series-point quota")
    ] = None,
    database: DatabaseOpt = None,
) -> None:
    """Register a tenant (and create its manager account)."""
    from bright.services.tenants import DEFAULT_MAX_ENTITIES, DEFAULT_MAX_SERIES_POINTS, TenantRegistry
    from bright.twin.errors import NgsiLdError

    engine = _engine(database)
    if manager and not manager_password:
        _fail("--manager needs --manager-password")
    try:
        tenant = TenantRegistry(engine).create(
            name,
            title=title,
            community_id=community_id,
            manager=manager,
            max_entities=max_entities or DEFAULT_MAX_ENTITIES,
            max_series_points=max_series_points or DEFAULT_MAX_SERIES_POINTS,
        )
    except NgsiLdError as exc:
        _fail(exc.detail)
        return
    if manager and manager_password:
        from bright.web.users import create_user

        create_user(engine, manager, manager_password, "manager", community_id=community_id)
    console.print(f"tenant {tenant.name} created (quota {tenant.max_entities} entities, "
                  f"{tenant.max_series_points} series points)")  # fmt: skip


@tenants_app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table")] = False,
    database: DatabaseOpt = None,
) -> None:
    """The hosted tenants with their usage and quotas."""
    from bright.services.tenants import TenantRegistry

    registry = TenantRegistry(_engine(database))
    rows = [(t, registry.usage(t.name)) for t in registry.list()]
    if as_json:
        print(json.dumps([t.to_json(u) for t, u in rows], indent=1))
        return
    table = Table(title=f"{len(rows)} hosted tenants")
    for col in ("tenant", "title", "manager", "entities", "series points"):
        table.add_column(col)
    for t, u in rows:
        table.add_row(t.name, t.title, t.manager or "", f"{u.entities}/{t.max_entities}",
                      f"{u.series_points}/{t.max_series_points}")  # fmt: skip
    console.print(table)


@tenants_app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="Tenant to delete")],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: every row of the tenant is deleted")] = False,
    database: DatabaseOpt = None,
) -> None:
    """Delete a tenant and all its data (entities, series, history, accounts...)."""
    from bright.services.tenants import TenantRegistry

    if not yes:
        _fail(f"deleting tenant {name!r} erases all its data; pass --yes")
    registry = TenantRegistry(_engine(database))
    if registry.find(name) is None and not registry.usage(name).entities:
        _fail(f"tenant {name!r} is not hosted here")
    counts = registry.delete(name)
    console.print(f"tenant {name} deleted: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


@tenants_app.command("register")
def register(
    name: Annotated[str, typer.Argument(help="Tenant to register at the parent")],
    parent_url: Annotated[str, typer.Option("--parent-url", help="Base URL of the parent node")],
    public_url: Annotated[str, typer.Option("--public-url", help="Base URL the parent reaches this node at")],
    node_id: Annotated[str, typer.Option("--node-id", help="This node's id")] = "bright",
    parent_tenant: Annotated[str, typer.Option("--parent-tenant", help="Tenant at the parent")] = "",
    database: DatabaseOpt = None,
) -> None:
    """Register a hosted tenant at a parent node as its own context source."""
    import httpx

    from bright.services.tenants import register_at_parent
    from bright.twin.errors import NgsiLdError

    with httpx.Client(timeout=10) as client:
        try:
            body = register_at_parent(
                _engine(database),
                name,
                node_id=node_id,
                public_url=public_url,
                client=client,
                parent_url=parent_url,
                parent_tenant=parent_tenant,
            )
        except (NgsiLdError, httpx.HTTPError) as exc:
            _fail(getattr(exc, "detail", str(exc)))
            return
    console.print(f"registered {body['id']} at {parent_url}")


@hosting_app.command("backup")
def backup(
    tenant: Annotated[str, typer.Argument(help="Tenant to back up ('' for the default tenant)")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="ZIP file")] = None,
    database: DatabaseOpt = None,
) -> None:
    """Back up one tenant to a ZIP (entities, series, history, accounts; docs/onboarding.md)."""
    from bright.services.tenants import backup_tenant, read_manifest

    path = output or Path(f"bright-backup-{tenant or 'default'}.zip")
    data = backup_tenant(_engine(database), tenant, path)
    counts = read_manifest(data)["counts"]
    console.print(
        f"{path}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + f" ({len(data)} bytes)"
    )


@hosting_app.command("restore")
def restore(
    source: Annotated[Path, typer.Argument(help="Backup ZIP made by bright backup", exists=True)],
    tenant: Annotated[str | None, typer.Option(help="Restore under another tenant name")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite a tenant that holds data")] = False,
    database: DatabaseOpt = None,
) -> None:
    """Restore one tenant from a backup (the database is migrated to this release first)."""
    from bright.services.tenants import restore_tenant
    from bright.twin.errors import NgsiLdError

    try:
        counts = restore_tenant(_engine(database), source, tenant=tenant, replace=replace)
    except NgsiLdError as exc:
        _fail(exc.detail)
        return
    console.print("restored: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
