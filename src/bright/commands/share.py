"""``bright share``: the energy sharing of a community over a period, as a file and a summary table.

Reads the community and its meters from the node's database, allocates the shared energy with the
community's method (or ``--method``), optionally settles it (``--pricing``), writes the allocation per
interval and member to CSV or Parquet and prints a summary per member. ``--write`` also stores the
sharing series and the monthly KPIs in the twin.

Mounted in the main CLI with ``app.command("share")(share)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from bright.config import Settings

if TYPE_CHECKING:
    from bright.services.energy import SettlementReport, SharingRun

app = typer.Typer(help="Energy sharing of a community.", no_args_is_help=True)
console = Console()

OUTPUT_SUFFIXES = (".csv", ".parquet")


def interval_table(run: SharingRun, settlement: SettlementReport | None, tz: str) -> pd.DataFrame:
    """The allocation per interval and member, with the money lines when a settlement is given.

    Parameters
    ----------
    run : bright.services.energy.SharingRun
        The sharing.
    settlement : bright.services.energy.SettlementReport or None
        Its settlement (adds EUR columns per interval and member).
    tz : str
        Zone of ``interval_start``.

    Returns
    -------
    pandas.DataFrame
        ``interval_start``, ``member_id``, ``access_point_id``, kWh columns and, with a settlement,
        ``supplier_eur``, ``community_purchase_eur``, ``network_reduction_eur``,
        ``community_sales_eur``, ``feed_in_eur``, ``net_cost_eur``, ``savings_eur`` (EUR).
    """
    table = run.interval_frame(tz=tz)
    if settlement is not None:
        s = settlement.settlement
        for name, values in (
            ("supplier_eur", s.supplier_eur),
            ("community_purchase_eur", s.community_purchase_eur),
            ("network_reduction_eur", s.network_reduction_eur),
            ("community_sales_eur", s.community_sales_eur),
            ("feed_in_eur", s.feed_in_eur),
            ("net_cost_eur", s.net_cost_eur),
            ("savings_eur", s.savings_eur),
        ):
            table[name] = np.asarray(values).reshape(-1)
    return table


def _fmt(value: Any, digits: int = 1) -> str:
    number = float(value)
    return "-" if not np.isfinite(number) else f"{number:,.{digits}f}"


@app.command()
def share(
    community: Annotated[str, typer.Option("--community", "-c", help="Entity id of the EnergyCommunity")],
    start: Annotated[
        str | None,
        typer.Option(help="Start: ISO date (local midnight in --tz) or date-time; default the readings'"),
    ] = None,
    end: Annotated[str | None, typer.Option(help="End (exclusive), like --start")] = None,
    month: Annotated[str | None, typer.Option(help="A local month YYYY-MM instead of --start/--end")] = None,
    method: Annotated[
        str | None,
        typer.Option(help="fixed, fixed_multi_round, pro_rata, hybrid or maximum; default the community's"),
    ] = None,
    pricing: Annotated[
        str | None, typer.Option(help="Also settle the shared kWh: fixed, mid_market or auction")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write the allocation per interval and member (.csv or .parquet)"
        ),
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(
            "--database", "-d", help="Database URL (default sqlite:///bright.db; env BRIGHT_DATABASE_URL)"
        ),
    ] = None,
    tenant: Annotated[str, typer.Option(help="NGSILD-Tenant of the community")] = "",
    tz: Annotated[
        str, typer.Option(help="Time zone of dates and of the output's timestamps")
    ] = "Europe/Brussels",
    write: Annotated[
        bool, typer.Option("--write/--no-write", help="Store the sharing series and monthly KPIs in the twin")
    ] = False,
) -> None:
    """Allocate a community's shared energy per quarter-hour (and settle it), print a summary per member."""
    from bright.api.community import csv_bytes
    from bright.services.community import CommunityInputError, load_community, resolve_range
    from bright.services.energy import (
        community_balance,
        community_settlement,
        community_sharing,
        write_results,
    )
    from bright.twin.db import make_engine
    from bright.twin.errors import NgsiLdError
    from bright.twin.series import SeriesStore
    from bright.twin.service import TwinService

    if output is not None and output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise typer.BadParameter(f"{output} must end in .csv or .parquet", param_hint="--output")
    settings = Settings.from_env(database_url=database)
    engine = make_engine(settings.database_url)
    try:
        twin = TwinService(engine, settings)
        lo, hi = resolve_range(start, end, month=month, tz=tz)
        c = load_community(twin, SeriesStore(engine), community, tenant=tenant)
        settlement = None
        if pricing is not None:
            settlement = community_settlement(c, start=lo, end=hi, method=method, pricing=pricing, tz=tz)
            run = settlement.sharing
        else:
            run = community_sharing(c, start=lo, end=hi, method=method)
        written: list[str] = []
        stored = 0
        if write:  # everything computed before anything is written
            monthly = community_balance(c, start=lo, end=hi, method=run.method, freq="1M", tz=tz)
            monthly = write_results(monthly)
            written += monthly.kpi_ids
            stored = monthly.sharing.series_written
            if settlement is not None:
                written += write_results(settlement, series=False).kpi_ids
        if output is not None:
            table = interval_table(run, settlement, tz)
            output.parent.mkdir(parents=True, exist_ok=True)
            if output.suffix.lower() == ".parquet":
                table.to_parquet(output, index=False)
            else:
                output.write_bytes(csv_bytes(table))
    except (NgsiLdError, CommunityInputError, ValueError) as exc:
        console.print(f"[red]error:[/red] {getattr(exc, 'detail', exc)}")
        raise typer.Exit(code=1) from None
    finally:
        engine.dispose()

    totals = run.member_totals()
    savings = None
    if settlement is not None:
        savings = settlement.member_totals()["savings_eur"]
    period = f"{run.start.tz_convert(tz):%Y-%m-%d %H:%M} .. {run.end.tz_convert(tz):%Y-%m-%d %H:%M} ({tz})"
    table_out = Table(
        title=f"{c.name or c.id}: {run.method.value} sharing, tariff type {run.group_type.value}",
        caption=f"{period}, {len(run.index):,} intervals, {int(run.result.missing.sum())} not shared "
        f"(missing readings), {run.result.rounds} round(s)",
    )
    columns = [
        "member",
        "role",
        "locality",
        "offtake kWh",
        "injection kWh",
        "shared in kWh",
        "shared out kWh",
        "self-suff. %",
    ]
    if savings is not None:
        columns.append(f"savings EUR ({settlement.pricing if settlement else ''})")
    for col in columns:
        table_out.add_column(col, justify="left" if col in ("member", "role", "locality") else "right")
    for m in c.members:
        row = totals.loc[m.id]
        cells = [
            m.name or m.id,
            m.role.value,
            m.locality,
            _fmt(row["offtake_kwh"]),
            _fmt(row["injection_kwh"]),
            _fmt(row["shared_offtake_kwh"]),
            _fmt(row["shared_injection_kwh"]),
            _fmt(100.0 * row["self_sufficiency"]),
        ]
        if savings is not None:
            cells.append(_fmt(float(savings[m.id]), 2))
        table_out.add_row(*cells)
    total = totals.sum(axis=0, skipna=False)
    cells = [
        "community",
        "",
        "",
        _fmt(total["offtake_kwh"]),
        _fmt(total["injection_kwh"]),
        _fmt(total["shared_offtake_kwh"]),
        _fmt(total["shared_injection_kwh"]),
        _fmt(
            100.0 * total["shared_offtake_kwh"] / total["offtake_kwh"] if total["offtake_kwh"] > 0 else np.nan
        ),
    ]
    if savings is not None:
        cells.append(_fmt(float(savings.sum(skipna=False)), 2))
    table_out.add_row(*cells, style="bold")
    console.print(table_out)
    if output is not None:
        console.print(f"allocation per interval and member written to {output}")
    if write:
        console.print(f"{len(written)} KPI entities and {stored:,} sharing values stored in the twin")
