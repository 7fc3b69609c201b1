"""``bright forecast``, ``bright backtest`` and ``bright schedule`` on the demo slice (SQLite file)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer
from test_analytics_forecasting import CID, build_twin, member_id
from typer.testing import CliRunner

from bright.commands import forecast as forecast_cmd
from bright.commands import schedule as schedule_cmd

# Mounted as the main CLI mounts them.
app = typer.Typer()
app.command("forecast")(forecast_cmd.forecast)
app.command("backtest")(forecast_cmd.backtest)
app.command("schedule")(schedule_cmd.schedule)
runner = CliRunner()


def test_forecast_backtest_and_schedule_commands(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    svc, _ = build_twin(db, keys=("bakery", "home03"))
    svc.engine.dispose()
    env = {"COLUMNS": "220"}

    res = runner.invoke(app, ["forecast", "-c", CID, "-d", db, "--score-days", "0"], env=env)
    assert res.exit_code == 0, res.output
    assert "day-ahead forecast of 2016-03-01" in res.output
    # Two members' consumption, home03's PV, and the community's two totals.
    assert "5 model(s) trained; 5 Forecast entities" in res.output
    assert "community" in res.output and "pv_gbm" in res.output

    csv = tmp_path / "bt" / "scores.csv"
    res = runner.invoke(
        app,
        ["backtest", "-c", CID, "--member", member_id("bakery"), "--days", "2", "--end-day", "2016-02-28",
         "--csv", str(csv), "--plot", str(tmp_path / "bt" / "backtest.png"), "-d", db],
        env=env,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    png = (tmp_path / "bt" / "backtest.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1210, 770)  # 11 x 7 in at 110 dpi
    table = pd.read_csv(csv, index_col=0)
    assert list(table.index) == ["seasonal_naive", "persistence", "profile_average", "gbm"]
    assert (table["days"] == 2).all() and (table["n"] == 192).all()
    assert table.loc["seasonal_naive", "skill"] == 0.0

    res = runner.invoke(
        app, ["schedule", "-c", CID, "-d", db, "--mode", "compare", "--limit-kw", "8"], env=env
    )
    assert res.exit_code == 0, res.output
    assert "Value stack" in res.output and "Individually optimal vs community optimal" in res.output
    assert "8 kW" in res.output and "optimal" in res.output

    res = runner.invoke(app, ["schedule", "-c", "urn:ngsi-ld:EnergyCommunity:nope", "-d", db], env=env)
    assert res.exit_code == 1 and "error:" in res.output and "nope" in res.output
