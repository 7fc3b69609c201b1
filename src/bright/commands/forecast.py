"""``bright forecast`` and ``bright backtest``: day-ahead forecasts of a community from the command line.

``bright forecast --community ID [--member M] [--day YYYY-MM-DD] [--retrain]`` forecasts the day for
every member and the community (reconciled), stores the Forecast entities and their quantile series
in the twin, and prints one line per target and quantity (model, daily totals of the quantiles, peak
of the median, why a fallback was used).

``bright backtest --community ID --member M [--days 60] [--csv backtest.csv]`` backtests a member's
day-ahead forecast (rolling origin, issued D-1 12:00 local) with every model side by side, prints the
score table and writes it to CSV (``--forecasts-csv`` also writes every forecast, ``--plot`` draws
a PNG: the last week of measurements against each model's median and the learned model's 80 %
interval, and the skill of every model against seasonal naive).

Mounted in the main CLI with ``app.command("forecast")(forecast)`` and
``app.command("backtest")(backtest)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from bright.config import Settings

app = typer.Typer(help="Day-ahead forecasts of a community.", no_args_is_help=True)
console = Console()

CommunityOpt = Annotated[str, typer.Option("--community", "-c", help="Entity id of the EnergyCommunity")]
DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database", "-d", help="Database URL (default sqlite:///bright.db; env BRIGHT_DATABASE_URL)"
    ),
]
TenantOpt = Annotated[str, typer.Option(help="NGSILD-Tenant of the community")]


def _fmt(value: Any, digits: int = 2) -> str:
    number = float(value)
    return "-" if not np.isfinite(number) else f"{number:,.{digits}f}"


def _short(entity_id: str) -> str:
    return entity_id.rsplit(":", 1)[-1]


@app.command()
def forecast(
    community: CommunityOpt,
    member: Annotated[str | None, typer.Option(help="Only this member (entity id, meter id or EAN)")] = None,
    day: Annotated[
        str | None, typer.Option(help="Local delivery day YYYY-MM-DD; default the day after the readings")
    ] = None,
    retrain: Annotated[bool, typer.Option("--retrain", help="Retrain every model now")] = False,
    max_age_days: Annotated[float, typer.Option(help="Retrain stored models older than this (days)")] = 7.0,
    score_days: Annotated[int, typer.Option(help="Backtest days stored with a newly trained model")] = 7,
    database: DatabaseOpt = None,
    tenant: TenantOpt = "",
) -> None:
    """Forecast a day for every member and the community and store it in the twin."""
    from bright.services.community import load_community
    from bright.services.forecasting import forecast_day
    from bright.twin.db import make_engine
    from bright.twin.errors import NgsiLdError
    from bright.twin.series import SeriesStore
    from bright.twin.service import TwinService

    settings = Settings.from_env(database_url=database)
    engine = make_engine(settings.database_url)
    try:
        twin = TwinService(engine, settings)
        c = load_community(twin, SeriesStore(engine), community, tenant=tenant)
        with console.status("forecasting (training the models that are missing or too old)..."):
            run = forecast_day(
                c,
                day=day,
                members=None if member is None else [member],
                retrain=retrain,
                max_model_age_days=max_age_days,
                score_days=score_days,
            )
    except (NgsiLdError, ValueError) as exc:
        console.print(f"[red]error:[/red] {getattr(exc, 'detail', exc)}")
        raise typer.Exit(code=1) from None
    finally:
        engine.dispose()
    table = Table(
        title=f"{c.name or c.id}: day-ahead forecast of {run.day.isoformat()} ({run.tz})",
        caption=f"issued {run.issue_time.tz_convert(run.tz):%Y-%m-%d %H:%M}; {len(run.trained)} model(s) "
        f"trained; {len(run.entities)} Forecast entities and {run.series_written:,} values stored; "
        f"{run.elapsed_s:.1f} s",
    )
    for col in (
        "target",
        "quantity",
        "model",
        "q10 kWh",
        "q50 kWh",
        "q90 kWh",
        "peak q50 kW",
        "skill",
        "note",
    ):
        table.add_column(col, justify="left" if col in ("target", "quantity", "model", "note") else "right")
    for tf in run.forecasts:
        n = len(tf.forecast.quantiles)
        totals = [float(tf.forecast.quantile(lv).sum(min_count=n)) for lv in (0.1, 0.5, 0.9)]
        skill = tf.model_scores.get("skill")
        note = (
            tf.forecast.reason
            if tf.forecast.model not in ("gbm", "pv_gbm") or tf.level == "community"
            else ""
        )
        table.add_row(
            _short(tf.target_id) if tf.level == "member" else "community",
            tf.quantity,
            tf.forecast.model,
            *[_fmt(t) for t in totals],
            _fmt(float(tf.forecast.median.max()) / 0.25),
            "-" if skill is None else f"{100 * skill:+.1f} %",
            note[:80],
            style="bold" if tf.level == "community" else None,
        )
    console.print(table)


@app.command()
def backtest(
    community: CommunityOpt,
    member: Annotated[str, typer.Option(help="The member (entity id, meter id or EAN)")],
    quantity: Annotated[str, typer.Option(help="consumption or production")] = "consumption",
    days: Annotated[int, typer.Option(help="Delivery days to backtest")] = 60,
    end_day: Annotated[str | None, typer.Option(help="Last delivery day; default the last full day")] = None,
    retrain_every_days: Annotated[int, typer.Option(help="Retrain the learned model every N days")] = 7,
    csv: Annotated[Path, typer.Option("--csv", help="Write the score table here")] = Path("backtest.csv"),
    forecasts_csv: Annotated[
        Path | None, typer.Option(help="Also write every forecast (model, issue, target, y, quantiles)")
    ] = None,
    store: Annotated[bool, typer.Option("--store", help="Store the scores with the member's model")] = False,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Draw the backtest (last week and skill per model) to this PNG"),
    ] = None,
    database: DatabaseOpt = None,
    tenant: TenantOpt = "",
) -> None:
    """Backtest a member's day-ahead forecast, print the score table and write it to CSV."""
    from bright.services.community import load_community
    from bright.services.forecasting import backtest_member
    from bright.twin.db import make_engine
    from bright.twin.errors import NgsiLdError
    from bright.twin.series import SeriesStore
    from bright.twin.service import TwinService

    settings = Settings.from_env(database_url=database)
    engine = make_engine(settings.database_url)
    try:
        twin = TwinService(engine, settings)
        c = load_community(twin, SeriesStore(engine), community, tenant=tenant)
        with console.status(f"backtesting {days} day(s)..."):
            report = backtest_member(
                c,
                member,
                quantity=quantity,
                days=days,
                end_day=end_day,
                retrain_every_days=retrain_every_days,
                store_scores=store,
            )
    except (NgsiLdError, ValueError) as exc:
        console.print(f"[red]error:[/red] {getattr(exc, 'detail', exc)}")
        raise typer.Exit(code=1) from None
    finally:
        engine.dispose()
    scores = report.scores
    table = Table(
        title=f"{_short(report.member_id)} {quantity}: day-ahead backtest "
        f"{report.days[0].date()} .. {report.days[-1].date()}",
        caption=f"issued D-1 12:00 local, rolling origin, retrained every {retrain_every_days} d; "
        f"MAE and pinball in kWh per 15 min; {report.elapsed_s:.1f} s",
    )
    for col in (
        "model",
        "MAE",
        "rMAE",
        "skill vs s-naive",
        "pinball",
        "CRPS",
        "80 % coverage",
        "days",
        "used",
    ):
        table.add_column(col, justify="left" if col in ("model", "used") else "right")
    for model, r in scores.iterrows():
        table.add_row(
            str(model),
            _fmt(r["mae"], 4),
            _fmt(r["rmae"], 3),
            f"{100 * r['skill']:+.1f} %" if np.isfinite(r["skill"]) else "-",
            _fmt(r["pinball"], 4),
            _fmt(r["crps"], 4),
            f"{100 * r['coverage']:.1f} %" if np.isfinite(r["coverage"]) else "-",
            str(int(r["days"])),
            str(r["used"]),
        )
    console.print(table)
    csv.parent.mkdir(parents=True, exist_ok=True)
    scores.to_csv(csv, float_format="%.6g", lineterminator="\n")
    console.print(f"score table written to {csv}")
    if forecasts_csv is not None:
        frame = report.result.frame.copy()
        frame.columns = [
            f"q{round(float(c) * 100):02d}" if isinstance(c, float) else str(c) for c in frame.columns
        ]
        forecasts_csv.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(forecasts_csv, index=False, float_format="%.6g", lineterminator="\n")
        console.print(f"{len(frame):,} forecasts written to {forecasts_csv}")
    if plot is not None:
        title = f"{_short(report.member_id)} {quantity}: day-ahead backtest"
        plot_backtest(report.result.frame, scores, plot, title=title)
        console.print(f"plot written to {plot}")


def plot_backtest(
    frame: Any, scores: Any, path: Path, *, title: str, days: int = 7, band_model: str = "gbm"
) -> None:
    """Draw a backtest to a PNG: the last ``days`` of measurements and forecasts, and the skill per model.

    Parameters
    ----------
    frame
        :attr:`bright.energy.forecast.backtest.BacktestResult.frame` (long form, one row per model
        and target; quantile columns are float levels).
    scores
        The score table (index model; columns ``skill``, ``coverage``).
    path
        PNG file to write (its directory is created).
    title
        Figure title.
    days
        Days shown in the time-series panel (the last ones of the backtest).
    band_model
        The model whose central interval is shaded (the learned one).
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a node
    import matplotlib.pyplot as plt
    import pandas as pd

    levels = sorted(c for c in frame.columns if isinstance(c, float))
    lo, mid, hi = levels[0], min(levels, key=lambda x: abs(x - 0.5)), levels[-1]
    end = frame["target"].max()
    recent = frame[frame["target"] > end - pd.Timedelta(days=days)]
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(11, 7), gridspec_kw={"height_ratios": [3, 1.4]})
    measured = recent.drop_duplicates("target").set_index("target")["y"].sort_index()
    ax.plot(measured.index, measured.to_numpy(), color="black", lw=1.0, label="measured")
    for name, g in recent.groupby("model", sort=False):
        g = g.set_index("target").sort_index()
        ax.plot(g.index, g[mid].to_numpy(), lw=1.0, label=f"{name} (median)")
        if name == band_model:
            band = f"{name} {lo:.0%}-{hi:.0%}"
            ax.fill_between(g.index, g[lo].to_numpy(), g[hi].to_numpy(), alpha=0.25, label=band)
    ax.set_ylabel("kWh per 15 min")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8, ncol=2)
    skill = scores["skill"].astype(float) * 100.0
    bx.barh([str(m) for m in skill.index], skill.to_numpy(), color="tab:blue")
    bx.axvline(0.0, color="black", lw=0.8)
    bx.set_xlabel("skill vs seasonal naive, % (MAE of the median)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
