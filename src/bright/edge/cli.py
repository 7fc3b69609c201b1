"""``bright edge``: MQTT ingest, simulator, quarantine and CSV imports from the command line.

Mounted in :mod:`bright.cli` with ``app.add_typer(edge_app, name="edge")``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from bright.edge import topics
from bright.edge.mqtt import DEFAULT_MAX_POWER_KW

edge_app = typer.Typer(
    help="Edge: MQTT/SenML ingest, meter simulator, quarantine, CSV imports.", no_args_is_help=True
)
quarantine_app = typer.Typer(
    help="Readings the ingest refused: list, replay after a fix, delete.", no_args_is_help=True
)
edge_app.add_typer(quarantine_app, name="quarantine")
console = Console()

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database", "-d", help="Database URL (default sqlite:///bright.db; env BRIGHT_DATABASE_URL)"
    ),
]
MqttOpt = Annotated[str, typer.Option("--mqtt", help="Broker URL, mqtt://[user:password@]host[:port]")]
TenantOpt = Annotated[str, typer.Option(help="NGSILD-Tenant to write to")]
RootOpt = Annotated[str, typer.Option(help="Root of the topic tree")]


def _engine(database: str | None) -> Engine:
    from bright.config import Settings
    from bright.twin.db import make_engine

    return make_engine(Settings.from_env(database_url=database).database_url)


@edge_app.command()
def run(
    mqtt: MqttOpt = "mqtt://127.0.0.1:1883",
    database: DatabaseOpt = None,
    tenant: TenantOpt = "",
    root: RootOpt = topics.DEFAULT_ROOT,
    client_id: Annotated[str, typer.Option(help="Fixed MQTT client id (the broker keeps its session)")] = (
        "bright-edge-ingest"
    ),
    interval: Annotated[int, typer.Option(help="Length of the energy intervals, s")] = 900,
    max_power_kw: Annotated[
        float, typer.Option(help="Largest power of an entity that states none (maxPower), kW")
    ] = DEFAULT_MAX_POWER_KW,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every connection event")] = False,
) -> None:
    """Ingest SenML readings from MQTT into the twin until interrupted (Ctrl-C)."""
    from bright.edge.mqtt import IngestStats
    from bright.edge.mqtt import run as run_ingest

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(message)s")
    console.print(f"ingesting {', '.join(topics.subscriptions(root))} from {mqtt} (Ctrl-C to stop)")

    def report(st: IngestStats) -> None:
        console.print(
            f"received {st.received} packs, wrote {st.written} readings, quarantined {st.quarantined} "
            f"({st.rejected} records), {st.connects} connection(s)"
        )

    run_ingest(
        mqtt,
        database,
        tenant=tenant,
        root=root,
        client_id=client_id,
        interval_s=interval,
        default_max_power_kw=max_power_kw,
        report=report,
    )


@edge_app.command()
def simulate(
    mqtt: MqttOpt = "mqtt://127.0.0.1:1883",
    start: Annotated[
        str, typer.Option(help="Start of the simulated period (UTC, within 2016)")
    ] = "2016-06-01T00:00Z",
    end: Annotated[
        str, typer.Option(help="End of the simulated period (UTC, within 2016)")
    ] = "2016-06-02T00:00Z",
    speed: Annotated[
        float, typer.Option(help="Simulated seconds per real second (1440 = a day per minute; 0 = no pacing)")
    ] = 1440.0,
    steps_per_pack: Annotated[int, typer.Option(help="Quarter-hours per SenML pack")] = 1,
    root: RootOpt = topics.DEFAULT_ROOT,
    municipality: Annotated[str, typer.Option(help="Municipality of the demo school")] = "Ixelles",
    now: Annotated[
        bool, typer.Option("--now", help="Shift timestamps by whole weeks to the current week")
    ] = False,
    max_readings: Annotated[int | None, typer.Option(help="Stop after this many readings")] = None,
) -> None:
    """Publish the demo community's real profiles as SenML packs (QoS 1)."""
    from bright.edge.simulator import simulate as run_simulation

    console.print(f"publishing the demo community's devices to {mqtt} at x{speed:g} ...")
    rep = run_simulation(
        mqtt,
        start=start,
        end=end,
        speed=speed or None,
        steps_per_pack=steps_per_pack,
        root=root,
        municipality=municipality,
        shift_to_now=now,
        max_readings=max_readings,
    )
    console.print(
        f"published {rep.messages} packs, {rep.readings} readings in {rep.elapsed_s:.1f} s "
        f"({rep.readings / max(rep.elapsed_s, 1e-9):,.0f} readings/s)"
    )


# --- quarantine ------------------------------------------------------------------------------------
@quarantine_app.command("list")
def quarantine_list(
    database: DatabaseOpt = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant")] = None,
    status: Annotated[str, typer.Option(help="open, replayed or all")] = "open",
    topic: Annotated[str | None, typer.Option(help="Only topics starting with this")] = None,
    limit: Annotated[int, typer.Option(help="Entries shown")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines with the raw payloads")] = False,
) -> None:
    """List quarantined payloads with their reasons."""
    from bright.edge.quarantine import Quarantine

    q = Quarantine(_engine(database))
    st = None if status == "all" else status
    entries = q.list(tenant=tenant, status=st, topic=topic, limit=limit)
    if as_json:
        for e in entries:
            typer.echo(json.dumps(e.as_dict(), ensure_ascii=False))
        return
    table = Table(title=f"quarantine ({q.count(tenant=tenant, status=st, topic=topic)} {status})")
    for col in ("id", "received (UTC)", "topic", "refused", "reason", "status"):
        table.add_column(col)
    for e in entries:
        table.add_row(
            str(e.id),
            e.received.strftime("%Y-%m-%d %H:%M:%S"),
            e.topic,
            "all" if e.records is None else str(e.rejected),
            e.reason,
            f"{e.status} ({e.attempts} replays)" if e.attempts else e.status,
        )
    console.print(table)


@quarantine_app.command("replay")
def quarantine_replay(
    ids: Annotated[list[int] | None, typer.Argument(help="Entry ids (default: every open entry)")] = None,
    database: DatabaseOpt = None,
    tenant: TenantOpt = "",
    topic: Annotated[str | None, typer.Option(help="Only topics starting with this")] = None,
    root: RootOpt = topics.DEFAULT_ROOT,
    interval: Annotated[int, typer.Option(help="Length of the energy intervals, s")] = 900,
    max_power_kw: Annotated[float, typer.Option(help="Largest power of an entity that states none, kW")] = (
        DEFAULT_MAX_POWER_KW
    ),
) -> None:
    """Re-process quarantined payloads after a fix (a meter created, a limit corrected)."""
    from bright.edge.mqtt import Ingestor

    ingestor = Ingestor(
        _engine(database), tenant=tenant, root=root, interval_s=interval, default_max_power_kw=max_power_kw
    )
    rep = ingestor.replay(ids or None, topic=topic)
    console.print(
        f"replayed {len(rep.replayed)} entries ({rep.readings_written} readings written); "
        f"{len(rep.still_open)} still refused"
    )
    for i in rep.still_open[:20]:
        console.print(f"  #{i}: {ingestor.quarantine.get(i).reason}")
    if rep.still_open:
        raise typer.Exit(code=1)


@quarantine_app.command("delete")
def quarantine_delete(
    ids: Annotated[list[int] | None, typer.Argument(help="Entry ids")] = None,
    database: DatabaseOpt = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant")] = None,
    status: Annotated[str | None, typer.Option(help="Only entries with this status (open, replayed)")] = None,
    before: Annotated[
        str | None, typer.Option(help="Only entries received before this instant (ISO, with zone)")
    ] = None,
) -> None:
    """Delete quarantine entries (by id, or by status and age)."""
    from bright.edge.quarantine import Quarantine

    try:
        n = Quarantine(_engine(database)).delete(ids or None, tenant=tenant, status=status, before=before)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    console.print(f"deleted {n} entries")


# --- CSV imports -------------------------------------------------------------------------------------
def _column_map(pairs: list[str] | None) -> dict[str, str] | None:
    """``COLUMN=ENTITY_ID`` options as a mapping (None: every column, named by entity id)."""
    if not pairs:
        return None
    out: dict[str, str] = {}
    for pair in pairs:
        col, sep, entity = pair.partition("=")
        if not sep or not col or not entity:
            raise typer.BadParameter(f"--column {pair!r}: use COLUMN=ENTITY_ID")
        out[col] = entity
    return out


@edge_app.command("import-csv")
def import_csv(
    files: Annotated[list[Path], typer.Argument(help="CSV (.csv, .csv.gz) or NGSI-LD temporal JSON files")],
    fmt: Annotated[
        str, typer.Option("--format", help="dso (DSO 15-min export), csv (time + columns), json")
    ] = "dso",
    database: DatabaseOpt = None,
    tenant: TenantOpt = "",
    attribute: Annotated[
        str, typer.Option(help="csv: attribute the columns are values of (a BRIGHT term or an IRI)")
    ] = "offtake",
    entity: Annotated[
        str, typer.Option(help="dso: entity id pattern of an access point")
    ] = "urn:ngsi-ld:Meter:{ean}",
    unit: Annotated[str | None, typer.Option(help="csv: unit of the values (W, kW, Wh, kWh, MWh)")] = None,
    quantity: Annotated[str | None, typer.Option(help="csv: store as energy (kWh) or power (kW)")] = None,
    tz: Annotated[str, typer.Option(help="Zone of stamps without offset")] = "Europe/Brussels",
    time_column: Annotated[str, typer.Option(help="csv: the timestamp column")] = "time",
    time_format: Annotated[str | None, typer.Option(help="csv: strptime format of the stamps")] = None,
    sep: Annotated[
        str | None, typer.Option(help="Field separator (default: ',' for csv, ';' for dso)")
    ] = None,
    decimal: Annotated[
        str | None, typer.Option(help="Decimal mark (default: '.' for csv, ',' for dso)")
    ] = None,
    rejects: Annotated[Path | None, typer.Option(help="Write the rejected records to this CSV")] = None,
    strict: Annotated[bool, typer.Option(help="Exit with code 1 when a record is rejected")] = False,
    column: Annotated[
        list[str] | None,
        typer.Option(help="csv: COLUMN=ENTITY_ID, repeatable: import only these columns, as these entities"),
    ] = None,
) -> None:
    """Import time series files into the twin, with a validation report per file."""
    from bright.twin import timeseries_import as ti
    from bright.twin.series import SeriesError, SeriesStore
    from bright.twin.vocabulary import bright_context

    if fmt not in ("dso", "csv", "json"):
        raise typer.BadParameter(f"--format {fmt!r}: use dso, csv or json")
    if quantity not in (None, "energy", "power"):
        raise typer.BadParameter(f"--quantity {quantity!r}: use energy or power")
    store = SeriesStore(_engine(database))
    ctx = bright_context()
    rejected = 0
    for i, path in enumerate(files):
        if not path.is_file():
            raise typer.BadParameter(f"{path} is not a file")
        out = None if rejects is None else (rejects if len(files) == 1 else rejects.with_suffix(f".{i}.csv"))
        try:
            if fmt == "dso":
                opts = {
                    "tz": tz,
                    **({"sep": sep} if sep else {}),
                    **({"decimal": decimal} if decimal else {}),
                }
                report = ti.import_dso_export(
                    store, path, entity_id=entity, tenant=tenant, rejects_path=out, **opts
                )
            elif fmt == "csv":
                report = ti.import_csv(
                    store,
                    path,
                    attribute=ctx.expand(attribute),
                    tenant=tenant,
                    rejects_path=out,
                    time_column=time_column,
                    unit=unit,
                    quantity=quantity,  # type: ignore[arg-type]
                    tz=tz,
                    time_format=time_format,
                    sep=sep or ",",
                    decimal=decimal or ".",
                    columns=_column_map(column),
                )
            else:
                report = ti.import_temporal_json(
                    store, path, tenant=tenant, expand=ctx.expand, rejects_path=out
                )
        except SeriesError as exc:
            console.print(f"[red]{path}: {exc}[/red]")
            raise typer.Exit(code=1) from None
        console.print(report.summary())
        for r in report.rejected[:10]:
            where = f"line {r.line}" if r.line is not None else (r.column or "record")
            console.print(f"  [yellow]rejected[/yellow] {where}: {r.reason}")
        if len(report.rejected) > 10:
            console.print(f"  ... and {len(report.rejected) - 10} more" + (f" (see {out})" if out else ""))
        rejected += len(report.rejected)
    if strict and rejected:
        raise typer.Exit(code=1)
