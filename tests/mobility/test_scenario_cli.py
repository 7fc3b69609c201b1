"""``bright scenario run / compare / list`` on the mobility test twin (both backends)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import typer
from mobility_twin import CID, build_twin
from typer.testing import CliRunner

from bright.commands.scenario import scenario_app
from bright.services.community import load_community
from bright.services.mobility import stored_scenario

# Mounted as the main CLI mounts it.
app = typer.Typer()
app.add_typer(scenario_app, name="scenario")
runner = CliRunner()
ENV = {"COLUMNS": "220"}


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_run_compare_list(db_url: str, tmp_path: Path) -> None:
    twin, series, _ = build_twin(db_url)
    try:
        res = runner.invoke(
            app,
            ["scenario", "run", "-c", CID, "-d", db_url, "--name", "2030 edf", "--year", "2030", "--n-evs", "6",
             "--policy", "earliest_deadline_first", "--site-limit-kw", "8", "--charger", "home:22",
             "--plot", str(tmp_path / "run.png")],
            env=ENV,
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        assert "2030 edf" in res.output and "peak import" in res.output and "EV energy unmet" in res.output
        assert "1 MobilityScenario entities written (6,048 series values)" in res.output
        assert "chargers: home: 11 kW x 1; work: 22 kW x 2" in res.output  # the twin's
        assert png_size(tmp_path / "run.png") == (1200, 800)
        c = load_community(twin, series, CID)
        stored = stored_scenario(c, "2030 edf")
        assert stored.parameters["chargers"] == [{"location": "home", "power_kw": 22.0, "share": 1.0}]
        assert stored.kpis["n_vehicles"] == 6

        specs = tmp_path / "specs.json"
        specs.write_text(
            json.dumps(
                [
                    {"name": "today"},
                    {"name": "2030 v2g", "year": 2030, "n_evs": 6, "policy": "vehicle_to_grid"},
                ]
            )
        )
        res = runner.invoke(app, ["scenario", "run", "-c", CID, "-d", db_url, "--spec", str(specs)], env=ENV)
        assert res.exit_code == 0, res.output
        assert "2 MobilityScenario entities written" in res.output

        csv = tmp_path / "out" / "cmp.csv"
        res = runner.invoke(
            app,
            ["scenario", "compare", "-c", CID, "-d", db_url, "today", "2030 v2g", "2030 edf",
             "--csv", str(csv), "--plot", str(tmp_path / "cmp.png")],
            env=ENV,
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        assert "side by side" in res.output
        table = pd.read_csv(csv, index_col=0)
        assert list(table.columns) == ["today", "2030 v2g", "2030 edf"]
        assert table.loc["n_vehicles", "2030 v2g"] == 6 and table.loc["ev_discharged_kwh", "2030 v2g"] > 0
        assert table.loc["peak_increase_kw", "today"] == 0
        assert table.loc["unmet_kwh", "2030 v2g"] == pytest.approx(0.0, abs=1e-6)
        assert png_size(tmp_path / "cmp.png") == (1200, 800)

        # n EVs by year on an adoption path: 40 cars, half electric in 2030, growth 0.5/year.
        res = runner.invoke(
            app,
            ["scenario", "run", "-c", CID, "-d", db_url, "--name", "path", "--adoption", "40:2030:0.5",
             "--years", "2026,2030,2034", "--policy", "pv_following", "--no-write"],
            env=ENV,
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        assert "path 2026" in res.output and "path 2034" in res.output
        vehicles = next(line for line in res.output.splitlines() if line.startswith("│ vehicles"))
        # 40 / (1 + exp(-0.5 (y - 2030))): 4.8 -> 5, 20, 35.2 -> 35.
        assert [cell.strip() for cell in vehicles.split("│")[3:6]] == ["5", "20", "35"]
        assert "MobilityScenario entities written" not in res.output
        res = runner.invoke(app, ["scenario", "list", "-c", CID, "-d", db_url], env=ENV)
        assert res.exit_code == 0, res.output
        assert "urn:ngsi-ld:MobilityScenario:mob:2030-edf" in res.output and "vehicle_to_grid" in res.output
        res = runner.invoke(app, ["scenario", "compare", "-c", CID, "-d", db_url, "--all"], env=ENV)
        assert res.exit_code == 0 and "2030 edf" in res.output and "today" in res.output

        # Errors: a spec with an unknown key, an unknown scenario, an unknown community.
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"name": "x", "n_ev": 3}))
        res = runner.invoke(app, ["scenario", "run", "-c", CID, "-d", db_url, "--spec", str(bad)], env=ENV)
        assert res.exit_code == 1 and "unknown field 'n_ev'" in res.output
        res = runner.invoke(app, ["scenario", "compare", "-c", CID, "-d", db_url, "ghost"], env=ENV)
        assert res.exit_code == 1 and "ghost" in res.output
        res = runner.invoke(
            app, ["scenario", "list", "-c", "urn:ngsi-ld:EnergyCommunity:nope", "-d", db_url], env=ENV
        )
        assert res.exit_code == 1 and "not found" in res.output
        res = runner.invoke(app, ["scenario", "run", "-c", CID, "-d", db_url], env=ENV)
        assert res.exit_code != 0 and "--spec" in res.output
    finally:
        twin.engine.dispose()
