"""``bright scenario``: mobility scenarios of a community from the command line.

``bright scenario run -c ID --name "2030 smart" --year 2030 --n-evs 20 --policy earliest_deadline_first
--site-limit-kw 40`` (or ``--spec scenarios.json``, one spec object or an array) evaluates the
scenarios on the community's last year of readings with a progress bar, writes them to the twin
(``--no-write`` to only look) and prints their KPIs side by side; ``--plot out.png`` draws them.

``--adoption 200:2031:0.4 --years 2025,2030,2035`` runs one scenario per year on a logistic EV
adoption path (the number of EVs of each year).

``bright scenario compare -c ID "2030 uncontrolled" "2030 smart"`` (or ``--all``) prints stored
scenarios side by side (``--csv``, ``--plot``); ``bright scenario list -c ID`` lists them.

Mounted in the main CLI with ``app.add_typer(scenario_app, name="scenario")``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd

    from bright.services.community import Community
    from bright.services.mobility import DemoScenarioResult, ScenarioRun
    from bright.twin.service import TwinService

scenario_app = typer.Typer(
    help="Mobility scenarios: more EVs, smart charging, V2G, chargers, PV, shared cars.", no_args_is_help=True
)
console = Console(highlight=False)

CommunityOpt = Annotated[str, typer.Option("--community", "-c", help="Entity id of the EnergyCommunity")]
DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database", "-d", help="Database URL (default sqlite:///bright.db; env BRIGHT_DATABASE_URL)"
    ),
]
TenantOpt = Annotated[str, typer.Option(help="NGSILD-Tenant of the community")]
PlotOpt = Annotated[
    Path | None,
    typer.Option(
        "--plot", help="Draw the scenarios (duration curve, daily profile, daily peaks) to this PNG"
    ),
]
#: KPIs of the short demo table.
DEMO_ROWS = (
    "n_vehicles",
    "peak_import_kw",
    "peak_increase_kw",
    "delivered_kwh",
    "unmet_kwh",
    "self_consumption",
    "self_sufficiency",
    "shared_kwh",
    "hours_above_connection_h",
    "hours_above_transformer_h",
    "cost_eur",
    "co2_kg",
)


def _fmt(metric: str, value: float) -> str:
    if not math.isfinite(value):
        return "-"
    if metric in ("self_consumption", "self_sufficiency"):
        return f"{value:.1%}"
    if metric.startswith("n_"):
        return f"{value:,.0f}"
    if metric.endswith("_h"):
        return f"{value:,.2f}"
    return f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"


def kpi_table(table: pd.DataFrame, *, title: str, rows: Sequence[str] | None = None) -> Table:
    """A rich table of KPIs (rows) by scenario (columns), labels and units from ``METRICS``."""
    from bright.services.mobility import METRICS

    out = Table(title=title)
    out.add_column("KPI")
    out.add_column("unit")
    for name in table.columns:
        out.add_column(str(name), justify="right")
    for metric in rows or list(table.index):
        if metric not in table.index:
            continue
        label, unit, _ = METRICS.get(str(metric), (str(metric), "", ""))
        out.add_row(label, unit, *(_fmt(str(metric), float(v)) for v in table.loc[metric].to_numpy()))
    return out


def _open(database: str | None) -> tuple[TwinService, Any]:
    from bright.config import Settings
    from bright.twin.db import make_engine
    from bright.twin.series import SeriesStore
    from bright.twin.service import TwinService

    settings = Settings.from_env(database_url=database)
    twin = TwinService(make_engine(settings.database_url), settings)
    return twin, SeriesStore(twin.engine)


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {getattr(exc, 'detail', exc)}", markup=True)
    return typer.Exit(code=1)


def _charger(text: str) -> dict[str, Any]:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise typer.BadParameter(f"{text!r}: use LOCATION:KW[:SHARE], e.g. home:11 or work:22:0.5")
    try:
        out: dict[str, Any] = {"location": parts[0], "power_kw": float(parts[1])}
        if len(parts) == 3:
            out["share"] = float(parts[2])
    except ValueError:
        raise typer.BadParameter(f"{text!r}: KW and SHARE must be numbers") from None
    return out


def _adoption(text: str) -> dict[str, float]:
    parts = text.split(":")
    try:
        fleet, midpoint, growth = (float(p) for p in parts)
    except ValueError:
        raise typer.BadParameter(
            f"--adoption {text!r}: use FLEET:MIDPOINT_YEAR:GROWTH, e.g. 200:2031:0.4"
        ) from None
    return {"fleet_size": int(fleet), "midpoint_year": midpoint, "growth_per_year": growth}


def _specs_from_file(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"{path}: {exc}") from None
    return data if isinstance(data, list) else [data]


def curves_from_runs(runs: Sequence[ScenarioRun]) -> dict[str, dict[str, Any]]:
    """Plot data of computed runs (the same views as the stored ones): name -> curve -> values."""
    from bright.energy import mobility as mob

    out: dict[str, dict[str, Any]] = {}
    for r in runs:
        tz = r.inputs.model.tz
        start = r.inputs.model.start
        out[r.spec.name] = {
            "duration": mob.duration_curve(r.result.net_kw, 400),
            "hours": r.inputs.model.n_steps * r.inputs.model.step_h,
            "profile": mob.daily_profile(r.result.charge_kw, start, tz=tz),
            "peaks": mob.daily_peaks(r.result.net_kw, start, tz=tz),
        }
    return out


def curves_from_twin(community: Community, refs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Plot data of stored scenarios, read from their series in the twin."""
    import numpy as np
    import pandas as pd

    from bright.services.mobility import scenario_curves

    dur = scenario_curves(community, refs, curve="duration", points=400)
    prof = scenario_curves(community, refs, curve="daily_profile", quantity="ev_charge")
    peaks = scenario_curves(community, refs, curve="daily_peak")
    out: dict[str, dict[str, Any]] = {}
    for name in dur["series"]:
        out[name] = {
            "duration": np.array(dur["series"][name], dtype=float),
            "hours": float(dur["x"][-1]) if dur["x"] else 0.0,
            "profile": pd.Series(prof["series"][name], index=prof["x"], dtype=float),
            "peaks": pd.Series(
                peaks["series"][name], index=pd.to_datetime(pd.Index(peaks["x"])), dtype=float
            ),
        }
    return out


def plot_scenarios(curves: Mapping[str, Mapping[str, Any]], path: Path, *, title: str) -> None:
    """Draw scenarios to a PNG: load-duration curve of the net import, mean daily EV charging
    profile (local time) and weekly peak of the net import, one line per scenario."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a node
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    fig = plt.figure(figsize=(12, 8))
    grid = fig.add_gridspec(2, 2, height_ratios=[1, 1])
    ax_d, ax_p, ax_t = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, :])
    for name, c in curves.items():
        dur = np.asarray(c["duration"], dtype=float)
        x = np.linspace(0.0, float(c["hours"]), dur.size) if dur.size else dur
        ax_d.plot(x, dur, lw=1.2, label=name)
        prof = c["profile"]
        ax_p.plot(np.asarray(prof.index, dtype=float), prof.to_numpy(), lw=1.2, label=name)
        peaks = c["peaks"]
        weekly = pd.Series(peaks.to_numpy(), index=pd.to_datetime(pd.Index(peaks.index))).resample("W").max()
        ax_t.plot(weekly.index, weekly.to_numpy(), lw=1.2, marker=".", label=name)
    ax_d.set(title="Load-duration curve of the net import", xlabel="hours at or above", ylabel="kW")
    ax_d.axhline(0.0, color="grey", lw=0.5)
    ax_p.set(title="Mean EV charging by local time of day", xlabel="local hour", ylabel="kW", xlim=(0, 24))
    ax_t.set(title="Weekly peak of the net import", ylabel="kW")
    for ax in (ax_d, ax_p, ax_t):
        ax.grid(alpha=0.3)
    ax_d.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@scenario_app.command("run")
def run(
    community: CommunityOpt,
    spec: Annotated[
        Path | None, typer.Option(help="JSON file: one scenario spec or an array (see docs/mobility.md)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Scenario name (when no --spec)")] = None,
    year: Annotated[int | None, typer.Option(help="Year the scenario stands for")] = None,
    n_evs: Annotated[int | None, typer.Option("--n-evs", help="Private EVs added")] = None,
    adoption: Annotated[
        str | None,
        typer.Option(
            help="EVs from a logistic path FLEET:MIDPOINT_YEAR:GROWTH (e.g. 200:2031:0.4) at --year or --years"
        ),
    ] = None,
    years: Annotated[
        str | None, typer.Option(help="One scenario per year, e.g. 2025,2030,2035 (with --adoption)")
    ] = None,
    policy: Annotated[
        str,
        typer.Option(
            help="uncontrolled, time_of_use, earliest_deadline_first, pv_following, community_optimal, "
            "vehicle_to_grid"
        ),
    ] = "uncontrolled",
    site_limit_kw: Annotated[float | None, typer.Option(help="Limit on total EV power, kW")] = None,
    import_cap_kw: Annotated[
        float | None, typer.Option(help="Keep the community's import at or below this, kW")
    ] = None,
    follow_connection: Annotated[
        bool, typer.Option("--follow-connection", help="Keep EV power within the connection's headroom")
    ] = False,
    pv_scale: Annotated[float, typer.Option(help="Multiplier on the community's PV")] = 1.0,
    added_pv_kwp: Annotated[float, typer.Option(help="PV added, kWp")] = 0.0,
    shared_replacing: Annotated[int, typer.Option(help="Private EVs replaced by shared cars")] = 0,
    charger: Annotated[
        list[str] | None, typer.Option(help="New chargers LOCATION:KW[:SHARE], repeatable (home:11)")
    ] = None,
    connection_limit_kw: Annotated[float | None, typer.Option(help="Connection limit, kW")] = None,
    lv_cabin_limit_kva: Annotated[float | None, typer.Option(help="LV-cabin rating, kVA")] = None,
    start: Annotated[str | None, typer.Option(help="Period start (ISO 8601); default a year back")] = None,
    end: Annotated[str | None, typer.Option(help="Period end, exclusive (ISO 8601)")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the fleet generator")] = 0,
    write: Annotated[
        bool, typer.Option("--write/--no-write", help="Store the MobilityScenario entities and series")
    ] = True,
    plot: PlotOpt = None,
    database: DatabaseOpt = None,
    tenant: TenantOpt = "",
) -> None:
    """Evaluate mobility scenarios over the community's last year of readings and print their KPIs."""
    from bright.energy.mobility import compare
    from bright.services.community import load_community
    from bright.services.mobility import METRICS, parse_spec, run_scenarios
    from bright.twin.errors import NgsiLdError

    if spec is not None and name is not None:
        raise typer.BadParameter("give --spec FILE or --name with options, not both")
    if spec is None and name is None:
        raise typer.BadParameter("give --spec FILE (JSON) or --name NAME with the scenario's options")
    if spec is not None:
        raw = _specs_from_file(spec)
    else:
        item: dict[str, Any] = {
            "name": name,
            "policy": policy,
            "pv_scale": pv_scale,
            "added_pv_kwp": added_pv_kwp,
            "shared_replacing": shared_replacing,
            "follow_connection_limit": follow_connection,
            "seed": seed,
            "chargers": [_charger(c) for c in charger or []],
        }
        optional = {
            "year": year,
            "n_evs": n_evs,
            "ev_site_limit_kw": site_limit_kw,
            "import_cap_kw": import_cap_kw,
            "connection_limit_kw": connection_limit_kw,
            "lv_cabin_limit_kva": lv_cabin_limit_kva,
            "start": start,
            "end": end,
        }
        item.update({k: v for k, v in optional.items() if v is not None})
        if adoption is not None:
            item["adoption"] = _adoption(adoption)
        raw = [item]
        if years is not None:
            if adoption is None or year is not None:
                raise typer.BadParameter("--years needs --adoption (and no --year)")
            try:
                ys = [int(y) for y in years.split(",") if y.strip()]
            except ValueError:
                raise typer.BadParameter(f"--years {years!r}: use years separated by commas") from None
            raw = [{**item, "name": f"{name} {y}", "year": y, "seed": seed + y} for y in ys]
    twin, series = _open(database)
    try:
        specs = [parse_spec(x) for x in raw]
        c = load_community(twin, series, community, tenant=tenant)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("scenarios", total=len(specs))

            def step(done: int, total: int, label: str) -> None:
                progress.update(task, completed=done, description=f"scenario: {label}")

            runs = run_scenarios(c, specs, write=write, series=series, progress=step)
    except (NgsiLdError, ValueError) as exc:
        raise _fail(exc) from None
    finally:
        twin.engine.dispose()
    table = compare([r.result for r in runs]).reindex(list(METRICS))
    first = runs[0].inputs
    tz = first.model.tz
    period = (
        f"{first.model.start.tz_convert(tz).date()} .. {first.model.end.tz_convert(tz).date()} (end excluded)"
    )
    console.print(kpi_table(table, title=f"{c.name or c.id}: {period} at 15 min"))
    for key, value in first.sources.items():
        console.print(f"  {key}: {value}")
    if write:
        console.print(
            f"{len(runs)} MobilityScenario entities written ({sum(r.series_written for r in runs):,} series values)"
        )
    if plot is not None:
        plot_scenarios(curves_from_runs(runs), plot, title=f"{c.name or c.id}: mobility scenarios")
        console.print(f"plot written to {plot}")


@scenario_app.command("compare")
def compare_command(
    community: CommunityOpt,
    scenarios: Annotated[
        list[str] | None, typer.Argument(help="Scenario names or entity ids (default with --all: every one)")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every stored scenario of the community")] = False,
    csv: Annotated[Path | None, typer.Option(help="Write the side-by-side table to this CSV")] = None,
    plot: PlotOpt = None,
    database: DatabaseOpt = None,
    tenant: TenantOpt = "",
) -> None:
    """Print stored scenarios side by side (one row per KPI, one column per scenario)."""
    from bright.services.community import load_community
    from bright.services.mobility import compare_stored, list_scenarios
    from bright.twin.errors import NgsiLdError

    twin, series = _open(database)
    try:
        c = load_community(twin, series, community, tenant=tenant)
        refs = list(scenarios or [])
        if all_:
            refs = refs or [s.id for s in list_scenarios(c)]
        if not refs:
            raise typer.BadParameter("name the scenarios to compare, or pass --all")
        with console.status("reading the scenarios from the twin..."):
            table = compare_stored(c, refs)
            curves = curves_from_twin(c, refs) if plot is not None else {}
    except (NgsiLdError, ValueError) as exc:
        raise _fail(exc) from None
    finally:
        twin.engine.dispose()
    console.print(kpi_table(table, title=f"{c.name or c.id}: mobility scenarios side by side"))
    if csv is not None:
        csv.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(csv, float_format="%.6g", lineterminator="\n")
        console.print(f"table written to {csv}")
    if plot is not None:
        plot_scenarios(curves, plot, title=f"{c.name or c.id}: mobility scenarios")
        console.print(f"plot written to {plot}")


@scenario_app.command("list")
def list_command(community: CommunityOpt, database: DatabaseOpt = None, tenant: TenantOpt = "") -> None:
    """List the community's stored scenarios with their main KPIs."""
    from bright.services.community import load_community
    from bright.services.mobility import list_scenarios
    from bright.twin.errors import NgsiLdError

    twin, series = _open(database)
    try:
        found = list_scenarios(load_community(twin, series, community, tenant=tenant))
    except (NgsiLdError, ValueError) as exc:
        raise _fail(exc) from None
    finally:
        twin.engine.dispose()
    out = Table(title=f"Mobility scenarios of {community}")
    for col in ("name", "year", "policy", "vehicles", "peak kW", "unmet kWh", "id"):
        out.add_column(col, justify="right" if col[0].islower() and " " in col else "left")
    for s in found:
        out.add_row(
            s.name,
            "-" if s.year is None else str(s.year),
            s.policy,
            _fmt("n_vehicles", s.kpis["n_vehicles"]),
            _fmt("peak_import_kw", s.kpis["peak_import_kw"]),
            _fmt("unmet_kwh", s.kpis["unmet_kwh"]),
            s.id,
        )
    console.print(out)


def print_demo_scenario(service: TwinService, community_id: str, year: int = 2030) -> DemoScenarioResult:
    """Run the documented demo scenario of ``year`` (written to the twin) and print the comparison."""
    from bright.services.mobility import run_demo_scenario

    with console.status(
        f"mobility in {year}: EV fleet, uncontrolled vs smart charging vs V2G over the year..."
    ):
        result = run_demo_scenario(service, community_id, year)
    a = result.assumptions
    console.print(
        kpi_table(
            result.table,
            title=f"Mobility in {year}: {result.n_evs} EVs ({result.home_evs} at home, {result.work_evs} at work)",
            rows=DEMO_ROWS,
        )
    )
    console.print(
        f"assumptions: {a['cars_per_household']:g} car per household x {a['households']} + "
        f"{a['cars_per_workplace_socket']:g} per workplace socket x {a['workplace_sockets']:g} = "
        f"{result.fleet_size} cars; EV share {result.n_evs / result.fleet_size:.0%} in {year} (logistic, half "
        f"in {a['midpoint_year']:g}); connection {a.get('connection_limit_kw', 'from the twin')} kW, "
        f"LV cabin {a.get('lv_cabin_limit_kva', 'from the twin')} kVA; smart = no new peak "
        f"({a['peak_import_today_kw']:.1f} kW); {len(result.runs)} MobilityScenario entities written"
    )
    return result
