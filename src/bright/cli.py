"""The ``bright`` command line: run a node, import data, build the demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from bright.config import Settings

app = typer.Typer(help="BRIGHT: the digital twin node of an energy community.", no_args_is_help=True)
console = Console()

DatabaseOpt = Annotated[
    str | None,
    typer.Option("--database", "-d", help="Database URL (default sqlite:///bright.db; env BRIGHT_DATABASE_URL)"),
]


def _settings(database: str | None) -> Settings:
    return Settings.from_env(database_url=database)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    database: DatabaseOpt = None,
    workers: Annotated[int, typer.Option(help="Worker processes (PostgreSQL only)")] = 1,
) -> None:
    """Run the node: NGSI-LD API, REST API and dashboard over HTTP."""
    import uvicorn

    from bright.api.app import create_app

    settings = _settings(database)
    console.print(f"BRIGHT node on http://{host}:{port}  (database {settings.database_url})")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", access_log=False)


def _iter_entities(path: Path) -> list[dict[str, Any]]:
    text = path.read_text("utf-8")
    if path.suffix in (".jsonl", ".ndjson"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    if isinstance(data, dict) and "@graph" in data:
        ctx = data.get("@context")
        return [{**e, "@context": ctx} if ctx and "@context" not in e else e for e in data["@graph"]]
    return data if isinstance(data, list) else [data]


@app.command("import")
def import_(
    files: Annotated[list[Path], typer.Argument(help="NGSI-LD entity files (.json, .jsonld, .jsonl)")],
    database: DatabaseOpt = None,
    tenant: Annotated[str, typer.Option(help="NGSILD-Tenant to import into")] = "",
    batch: Annotated[int, typer.Option(help="Entities per transaction")] = 1000,
) -> None:
    """Upsert NGSI-LD entities from files into the node's database."""
    from bright.twin.db import make_engine
    from bright.twin.service import TwinService

    settings = _settings(database)
    service = TwinService(make_engine(settings.database_url), settings)
    total_ok, total_err = 0, 0
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    ) as progress:
        for path in files:
            if not path.is_file():
                raise typer.BadParameter(f"{path} is not a file")
            items = _iter_entities(path)
            task = progress.add_task(path.name, total=len(items))
            for i in range(0, len(items), batch):
                chunk = items[i : i + batch]
                ctx = chunk[0].get("@context") if isinstance(chunk[0], dict) else None
                res = service.batch_upsert(tenant, chunk, service.resolve_context(ctx))
                total_ok += len(res["success"])
                for err in res["errors"]:
                    total_err += 1
                    console.print(f"[red]rejected[/red] {err['entityId']}: {err['error']['detail']}")
                progress.advance(task, len(chunk))
    console.print(f"imported {total_ok} entities, rejected {total_err}")
    if total_err:
        raise typer.Exit(code=1)


if __name__ == "__main__":  # pragma: no cover
    app()
