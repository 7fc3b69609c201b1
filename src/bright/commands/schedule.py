"""``bright schedule``: the flexibility schedule of a community's day, from the command line.

``bright schedule --community ID [--day YYYY-MM-DD] [--mode individual|community|compare]
[--limit-kw 250]`` builds the day's problem from the twin (devices, stored forecasts or persistence,
day-ahead prices, the community's connection limit), solves it, writes the FlexibilitySchedule
entities and setpoints (``--no-write`` to only look), and prints the summary, the value stack per
member and commitment, every device's setpoints, what could not be met and, with ``compare``,
individual against community.

Mounted in the main CLI with ``app.command("schedule")(schedule)``.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from bright.config import Settings

app = typer.Typer(help="Flexibility schedules of a community.", no_args_is_help=True)
console = Console()


def _fmt(value: Any, digits: int = 2) -> str:
    number = float(value)
    return "-" if not np.isfinite(number) else f"{number:,.{digits}f}"


def _short(entity_id: str) -> str:
    """``urn:ngsi-ld:Battery:c1:home03`` -> ``Battery:home03``; a member -> ``home03``."""
    parts = entity_id.split(":")
    if len(parts) < 4 or parts[0] != "urn":
        return entity_id
    return parts[-1] if parts[2] == "EnergyProsumer" else f"{parts[2]}:{parts[-1]}"


def _item(item: str) -> str:
    """A statement item for a column header: device wear items name the device briefly."""
    return f"wear {_short(item[: -len(' wear')])}" if item.endswith(" wear") else item


@app.command()
def schedule(
    community: Annotated[str, typer.Option("--community", "-c", help="Entity id of the EnergyCommunity")],
    day: Annotated[
        str | None, typer.Option(help="Local delivery day YYYY-MM-DD; default the day after the readings")
    ] = None,
    mode: Annotated[str, typer.Option(help="individual, community or compare")] = "community",
    limit_kw: Annotated[
        float | None, typer.Option(help="Community connection limit in kW (overrides the twin's)")
    ] = None,
    write: Annotated[
        bool,
        typer.Option("--write/--no-write", help="Store the FlexibilitySchedules and setpoints in the twin"),
    ] = True,
    database: Annotated[
        str | None,
        typer.Option(
            "--database", "-d", help="Database URL (default sqlite:///bright.db; env BRIGHT_DATABASE_URL)"
        ),
    ] = None,
    tenant: Annotated[str, typer.Option(help="NGSILD-Tenant of the community")] = "",
) -> None:
    """Schedule a community's batteries, EVs, heat pumps and PV for a day and print the value stack."""
    from bright.services.community import load_community
    from bright.services.scheduling import ScheduleSettings, device_setpoints, schedule_day
    from bright.twin.db import make_engine
    from bright.twin.errors import NgsiLdError
    from bright.twin.series import SeriesStore
    from bright.twin.service import TwinService

    settings = Settings.from_env(database_url=database)
    engine = make_engine(settings.database_url)
    try:
        twin = TwinService(engine, settings)
        c = load_community(twin, SeriesStore(engine), community, tenant=tenant)
        run = schedule_day(
            c, day=day, mode=mode, settings=ScheduleSettings(connection_limit_kw=limit_kw), write=write
        )
    except (NgsiLdError, ValueError) as exc:
        console.print(f"[red]error:[/red] {getattr(exc, 'detail', exc)}")
        raise typer.Exit(code=1) from None
    finally:
        engine.dispose()
    setup = run.setup
    limit = "none" if not np.isfinite(setup.connection_limit_kw) else f"{setup.connection_limit_kw:g} kW"
    summary = Table(title=f"{c.name or c.id}: {mode} schedule of {setup.day.isoformat()} ({setup.tz})")
    summary.add_column("figure")
    summary.add_column("value", justify="right")
    for name, value in (
        ("status", run.status),
        ("cost EUR", _fmt(run.cost_eur)),
        ("penalty EUR", _fmt(run.penalty_eur)),
        (
            "value of flexibility EUR",
            _fmt(float(run.statement["value_eur"].sum()) if len(run.statement) else 0.0),
        ),
        ("connection limit", limit),
        ("peak net import kW", _fmt(float(run.flows["net_import_kw"].max()))),
        ("shared kWh", _fmt(float(run.flows["shared_kw"].sum()) * 0.25)),
        ("prices", setup.price_source),
        ("solve time s", f"{run.solve_time_s:.3f}"),
        (
            "written",
            f"{len(run.entities)} entities, {run.series_written:,} values" if write else "no (--no-write)",
        ),
    ):
        summary.add_row(name, value)
    console.print(summary)

    stack = run.value_stack()
    vt = Table(title="Value stack (EUR, reference without flexibility minus optimal)")
    vt.add_column("member")
    for col in stack.columns:
        vt.add_column(_item(str(col)), justify="right")
    for member, row in stack.iterrows():
        vt.add_row(
            "total" if member == "total" else _short(str(member)),
            *[_fmt(v) for v in row],
            style="bold" if member == "total" else None,
        )
    console.print(vt)

    setpoints = device_setpoints(run)
    dt = Table(title="Device setpoints (kW per 15 min, + = consumption / charging)")
    for col in ("device", "member", "kind", "min kW", "max kW", "in kWh", "out kWh", "inputs"):
        dt.add_column(col, justify="right" if col.endswith(("kW", "kWh")) else "left")
    for ref in setup.devices:
        p = setpoints[ref.device_id].to_numpy()
        dt.add_row(
            _short(ref.device_id),
            _short(ref.member_id),
            ref.kind,
            _fmt(p.min()),
            _fmt(p.max()),
            _fmt(float(np.clip(p, 0.0, None).sum()) * 0.25),
            _fmt(float(np.clip(-p, 0.0, None).sum()) * 0.25 + 0.0),
            setup.forecast_source.get(ref.member_id, ""),
        )
    console.print(dt)

    if len(run.unmet):
        ut = Table(title="Not met")
        for col in ("member", "item", "constraint", "time", "shortfall", "unit", "penalty EUR"):
            ut.add_column(col)
        for r in run.unmet.itertuples():
            ut.add_row(
                _short(str(r.member)), str(r.item), str(r.constraint), str(r.time), _fmt(r.shortfall, 3), str(r.unit),
                _fmt(r.penalty_eur),
            )  # fmt: skip
        console.print(ut)
    if run.comparison is not None:
        ct = Table(title="Individually optimal vs community optimal")
        ct.add_column("schedule")
        for col in run.comparison.summary.columns:
            ct.add_column(str(col), justify="right")
        for label, row in run.comparison.summary.iterrows():
            ct.add_row(str(label), *[_fmt(v) for v in row])
        console.print(ct)
