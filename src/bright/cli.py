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
    typer.Option(
        "--database", "-d", help="Database URL (default sqlite:///bright.db; env BRIGHT_DATABASE_URL)"
    ),
]


def _settings(database: str | None) -> Settings:
    return Settings.from_env(database_url=database)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    database: DatabaseOpt = None,
    workers: Annotated[int, typer.Option(help="Worker processes (PostgreSQL only)")] = 1,
    mqtt: Annotated[
        str | None, typer.Option(help="Ingest SenML readings from this broker (env BRIGHT_MQTT_URL)")
    ] = None,
    role: Annotated[
        str,
        typer.Option(
            envvar="BRIGHT_ROLE",
            help="community: a community's node; network: the city node aggregating its communities",
        ),
    ] = "community",
) -> None:
    """Run the node: NGSI-LD API, REST API and dashboard over HTTP."""
    import uvicorn

    from bright.api.app import create_app

    if role not in ("community", "network"):
        raise typer.BadParameter(f"unknown role {role!r}; use community or network", param_hint="--role")
    settings = Settings.from_env(database_url=database, mqtt_url=mqtt, extra={"role": role})
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
    series: Annotated[
        str | None,
        typer.Option(
            help="Import time series instead of entities: dso (DSO 15-min export), csv (time + one column "
            "per entity), json (NGSI-LD temporal representation)"
        ),
    ] = None,
    attribute: Annotated[str, typer.Option(help="csv: the attribute the columns are values of")] = "offtake",
    unit: Annotated[str | None, typer.Option(help="csv: unit of the values (W, kW, Wh, kWh, MWh)")] = None,
    tz: Annotated[str, typer.Option(help="Time zone of local timestamps")] = "Europe/Brussels",
    time_column: Annotated[str, typer.Option(help="csv: the timestamp column")] = "time",
    rejects: Annotated[Path | None, typer.Option(help="Write rejected records to this CSV")] = None,
    column: Annotated[
        list[str] | None,
        typer.Option(help="csv: COLUMN=ENTITY_ID, repeatable: import only these columns, as these entities"),
    ] = None,
    time_format: Annotated[str | None, typer.Option(help="csv: strptime format of the timestamps")] = None,
    sep: Annotated[str | None, typer.Option(help="csv: field separator")] = None,
) -> None:
    """Upsert NGSI-LD entities, or import time series (--series), from files into the node's database.

    Time series: local time is converted to UTC across daylight-saving changes, rejected records
    are reported with their line and reason (and written to --rejects), nothing is dropped silently.
    """
    if series is not None:
        from bright.edge.cli import import_csv

        import_csv(
            files,
            fmt=series,
            database=database,
            tenant=tenant,
            attribute=attribute,
            unit=unit,
            quantity=None,
            tz=tz,
            time_column=time_column,
            time_format=time_format,
            sep=sep,
            decimal=None,
            rejects=rejects,
            strict=True,
            column=column,
        )
        return
    from bright.twin.db import make_engine
    from bright.twin.service import TwinService

    settings = _settings(database)
    service = TwinService(make_engine(settings.database_url), settings)
    total_ok, total_err = 0, 0
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
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


def _demo_year(engine: Any, service: Any, community_id: str) -> None:
    """The community's year as the DSO computes it: balance KPIs (written to the twin) and settlement."""
    from rich.table import Table

    from bright.services.community import load_community
    from bright.services.energy import community_balance, community_settlement
    from bright.twin.series import SeriesStore

    with console.status("computing the year: sharing per quarter-hour, balance, settlement..."):
        community = load_community(service, SeriesStore(engine), community_id)
        year = community_balance(community, freq="1M", emission_factor_kg_per_kwh=0.16, write=True)
        settled = community_settlement(community)
    months = year.community_frame()
    total = months[["offtake_kwh", "injection_kwh", "shared_kwh", "co2_avoided_kg"]].sum()
    table = Table(title="The community's year (2016, pro-rata sharing key)")
    for col in ("", "offtake kWh", "injection kWh", "shared kWh", "self-sufficiency", "self-consumption"):
        table.add_column(col, justify="right")
    for start, row in months.iterrows():
        table.add_row(
            str(start)[:7],
            f"{row.offtake_kwh:,.0f}",
            f"{row.injection_kwh:,.0f}",
            f"{row.shared_kwh:,.0f}",
            f"{row.self_sufficiency:.1%}",
            f"{row.self_consumption_rate:.1%}",
        )
    table.add_row(
        "year",
        f"{total.offtake_kwh:,.0f}",
        f"{total.injection_kwh:,.0f}",
        f"{total.shared_kwh:,.0f}",
        f"{total.shared_kwh / total.offtake_kwh:.1%}",
        f"{total.shared_kwh / total.injection_kwh:.1%}",
    )
    console.print(table)
    st = settled.statements
    money = {c: float(st[c].sum()) for c in st.columns if c.endswith("_eur") and st[c].dtype.kind == "f"}
    console.print(
        f"{len(year.kpi_ids)} KeyPerformanceIndicator entities written; CO2 avoided {total.co2_avoided_kg:,.0f} kg "
        "(0.16 kg/kWh); settlement: "
        + ", ".join(
            f"{k.removesuffix('_eur').replace('_', ' ')} {v:,.0f} EUR" for k, v in list(money.items())[:4]
        )
    )


def _demo_tomorrow(engine: Any, service: Any, community_id: str) -> None:
    """Members' S-BRIGHT profiles, tomorrow's forecasts and the flexibility schedule of the demo."""
    from bright.commands.engagement import print_mix
    from bright.services.community import load_community
    from bright.services.engagement import EngagementService
    from bright.services.forecasting import forecast_day
    from bright.services.scheduling import schedule_day
    from bright.twin.series import SeriesStore

    series = SeriesStore(engine)
    with console.status("S-BRIGHT: questionnaire answers of the members (simulated), segmentation..."):
        eng = EngagementService(service, series)
        eng.seed_simulated_answers(community_id)
        mix = eng.mix(community_id)
    print_mix(mix)
    community = load_community(service, series, community_id)
    with console.status("training a load/PV model per member and forecasting tomorrow..."):
        run = forecast_day(community, score_days=0)
    console.print(f"day-ahead forecasts for {run.day} (every member and the community) written to the twin")
    with console.status("scheduling tomorrow's batteries, EVs and heat pumps (individual vs community)..."):
        sched = schedule_day(community, mode="compare")
    console.print(
        f"flexibility schedule ({sched.mode}): status {sched.status}, cost {sched.cost_eur:,.2f} EUR for the day; "
        "setpoints per device written to the twin"
    )


@app.command()
def demo(
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            "-d",
            help="Database of the single demo node (implies --single; default sqlite:///demo/bright-demo.db)",
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to serve on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the dashboard and APIs")] = 8000,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve the node when built")] = True,
    municipality: Annotated[str, typer.Option(help="Brussels municipality of the demo school")] = "Ixelles",
    single: Annotated[
        bool, typer.Option("--single", help="Only the single demo community (one node on --database)")
    ] = False,
    mqtt: Annotated[
        str | None, typer.Option(help="Network demo: the last days of metering go through this MQTT broker")
    ] = None,
    directory: Annotated[
        Path, typer.Option(help="Network demo: directory of the nodes' databases and logs")
    ] = Path("demo-network"),
    schools: Annotated[int, typer.Option(help="Network demo: communities around real schools")] = 3,
    days: Annotated[
        int | None, typer.Option(help="Network demo: metered days (default: all of 2016)")
    ] = None,
    workers: Annotated[int, typer.Option(help="Network demo: processes building communities")] = 2,
) -> None:
    """Build the Brussels demo network (six community nodes and the city node) from real data, print its
    summary, then serve it (``--single``: one demo community twin on one node)."""
    if not single and database is None:
        from bright.network.demo_nodes import DemoOptions, run_demo

        options = DemoOptions(
            directory=directory,
            host=host,
            city_port=port,
            first_port=port + 1,
            schools=schools,
            days=days,
            mqtt_url=mqtt,
            workers=workers,
            serve=serve_after,
        )
        try:
            run_demo(options, console=console)
        except KeyboardInterrupt:
            console.print("stopped: every node process ended")
        except RuntimeError as exc:  # a busy port, a node that did not start: said plainly
            console.print(f"[red]demo network: {exc}[/red]")
            raise typer.Exit(code=1) from None
        return
    from rich.table import Table

    from bright.services.demo import build_demo_community
    from bright.twin.db import make_engine
    from bright.twin.service import TwinService

    database = database or "sqlite:///demo/bright-demo.db"
    if database.startswith("sqlite:///") and not database.startswith("sqlite:////"):
        path = Path(database.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    settings = _settings(database)
    with console.status("building the demo community from the real data sets..."):
        community = build_demo_community(municipality)
        engine = make_engine(settings.database_url)
        service = TwinService(engine, settings)
        res = service.batch_upsert(
            "", community.entities, service.resolve_context(community.entities[0]["@context"])
        )
    if res["errors"]:
        for err in res["errors"]:
            console.print(f"[red]rejected[/red] {err['entityId']}: {err['error']['detail']}")
        raise typer.Exit(code=1)
    from bright.services.demo import meter_series
    from bright.twin.series import SeriesStore
    from bright.twin.vocabulary import bright_context

    vocab = bright_context()
    series = SeriesStore(engine)
    with console.status("writing a year of quarter-hourly metering for every member..."):
        frames = meter_series(community)
        n_values = 0
        for name, frame in frames.items():
            series.write(frame, attribute=vocab.expand(name), unit_code="KWH")
            n_values += frame.size
    console.print(f"{n_values:,} quarter-hourly values written (offtake, injection, PV production, 2016)")
    cid = community.entities[0]["id"]
    _demo_year(engine, service, community_id=cid)
    _demo_tomorrow(engine, service, community_id=cid)
    from bright.commands.scenario import print_demo_scenario  # the 2030 mobility comparison (issue 12)

    print_demo_scenario(service, cid, 2030)
    from bright.commands.offers import print_demo_offers  # service offers, one member's bundles (issue 15)

    print_demo_offers(service, cid, f"urn:ngsi-ld:EnergyProsumer:{community.key}:home01")
    from bright.web.users import add_demo_users

    add_demo_users(engine, cid, f"urn:ngsi-ld:EnergyProsumer:{community.key}:home01")
    console.print(
        "dashboard accounts: manager / manager-demo, member / member-demo (Household 1), public / public-demo"
    )
    table = Table(title=community.name)
    for col in ("member", "kind", "profile", "kWh/year", "PV kWp", "battery kWh", "EV kW", "locality"):
        table.add_column(col, justify="right" if col[0].isupper() or "/" in col else "left")
    for m in community.members:
        table.add_row(
            m.name,
            m.category,
            m.profile,
            f"{m.annual_kwh:,.0f}",
            f"{m.pv_kwp:g}",
            f"{m.battery_kwh:g}",
            f"{m.ev_charger_kw:g}",
            m.locality,
        )
    console.print(table)
    school = community.school
    console.print(
        f"school: {school['name']}, {school['address']}, {school['postcode']} {school['municipality']} "
        f"({school['lat']:.5f}, {school['lon']:.5f}); {len(res['success'])} entities in {settings.database_url}"
    )
    engine.dispose()
    if serve_after:
        console.print(
            f"open http://{host}:{port}/ngsi-ld/v1/entities?type=EnergyProsumer&options=keyValues "
            f"(Link: the BRIGHT @context) or http://{host}:{port}/docs"
        )
        serve(host=host, port=port, database=database, workers=1, mqtt=None)


from bright.commands.access import audit as audit_command  # noqa: E402
from bright.commands.access import peers_app, token_app  # noqa: E402
from bright.commands.engagement import engagement_app  # noqa: E402
from bright.commands.forecast import backtest as backtest_command  # noqa: E402
from bright.commands.forecast import forecast as forecast_command  # noqa: E402
from bright.commands.ledger import ledger_app  # noqa: E402
from bright.commands.scenario import scenario_app  # noqa: E402
from bright.commands.schedule import schedule as schedule_command  # noqa: E402
from bright.commands.share import share  # noqa: E402
from bright.edge.cli import edge_app  # noqa: E402

app.command("share")(share)
app.command("forecast")(forecast_command)
app.command("backtest")(backtest_command)
app.command("schedule")(schedule_command)
app.add_typer(edge_app, name="edge")
app.add_typer(engagement_app, name="engagement")
app.add_typer(ledger_app, name="ledger")
app.add_typer(token_app, name="token")
app.add_typer(peers_app, name="peers")
app.command("audit")(audit_command)
app.add_typer(scenario_app, name="scenario")
app.add_typer(__import__("bright.commands.offers", fromlist=["x"]).offers_app, name="offers")  # issue 15
app.add_typer(__import__("bright.commands.offers", fromlist=["x"]).bundle_app, name="bundle")  # issue 15
app.add_typer(
    __import__("bright.commands.tenants", fromlist=["hosting_app"]).hosting_app
)  # tenants, backup, restore

if __name__ == "__main__":  # pragma: no cover
    app()
