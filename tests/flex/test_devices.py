"""Every device constraint binds in one worked example; dropping it would change schedule and cost.

Most examples use 1-hour steps so that kW and kWh coincide and the arithmetic stays readable; the
import and export price is the same series unless said otherwise (cost = sum of price x net import).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bright.energy.flex.commitments import energy_price, feed_in
from bright.energy.flex.devices import (
    Battery,
    ElectricVehicle,
    EVSession,
    GridConnection,
    HeatPump,
    PVSystem,
    ShiftableLoad,
)
from bright.energy.flex.problem import FlexInputError, Site
from bright.energy.flex.solve import Schedule, schedule

TOL = 1e-6


def hours(n: int) -> pd.DatetimeIndex:
    return pd.date_range("2024-03-04", periods=n, freq="1h", tz="UTC")


def run(prices: list[float], devices: tuple, base: float | list[float] = 0.0, **site: object) -> Schedule:
    index = hours(len(prices))
    p = np.asarray(prices, dtype=float)
    s = Site("home", base, devices=devices, commitments=(energy_price(p), feed_in(p)), **site)  # type: ignore[arg-type]
    return schedule(index, s)


def bat(**kw: object) -> Battery:
    args: dict[str, object] = {
        "name": "bat",
        "capacity_kwh": 10.0,
        "charge_power_kw": 5.0,
        "discharge_power_kw": 5.0,
        "charge_efficiency": 1.0,
        "discharge_efficiency": 1.0,
        "initial_soc_kwh": 0.0,
    }
    args.update(kw)
    return Battery(**args)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# battery


def test_battery_power_limit_binds() -> None:
    # Buy at 0.1, sell at 0.3. With 2 kW: charge 2 kWh then discharge 2 kWh: 0.2 - 0.6 = -0.4.
    # With 5 kW the same trade is 5 kWh: -1.0.
    s = run([0.1, 0.3], (bat(charge_power_kw=2.0, discharge_power_kw=2.0),))
    b = s.devices["home"]["bat"]
    assert b["charge_kw"].max() <= 2.0 + TOL and b["discharge_kw"].max() <= 2.0 + TOL
    assert s.cost_eur == pytest.approx(-0.4)
    assert run([0.1, 0.3], (bat(),)).cost_eur == pytest.approx(-1.0)


def test_battery_capacity_binds() -> None:
    # 3 kWh of storage: charge 3 at 0.1, discharge 3 at 0.3: 0.3 - 0.9 = -0.6.
    s = run([0.1, 0.3], (bat(capacity_kwh=3.0),))
    assert s.devices["home"]["bat"]["soc_end_kwh"].max() == pytest.approx(3.0)
    assert s.cost_eur == pytest.approx(-0.6)


def test_battery_efficiency_losses() -> None:
    # 0.9 each way: 5 kWh charged at 0.1 become 4.5 kWh stored and 4.05 kWh delivered at 0.3:
    # 0.5 - 1.215 = -0.715.
    s = run([0.1, 0.3], (bat(charge_efficiency=0.9, discharge_efficiency=0.9),))
    b = s.devices["home"]["bat"]
    assert b["soc_end_kwh"].iloc[0] == pytest.approx(4.5)
    assert b["discharge_kw"].iloc[1] == pytest.approx(4.05)
    assert s.cost_eur == pytest.approx(-0.715)
    # a spread below the losses is not worth cycling: 0.12 x 0.81 = 0.0972 < 0.1
    idle = run([0.1, 0.12], (bat(charge_efficiency=0.9, discharge_efficiency=0.9),))
    assert idle.cost_eur == pytest.approx(0.0, abs=1e-9)
    assert idle.devices["home"]["bat"]["charge_kw"].abs().max() < TOL


def test_battery_soc_min_binds() -> None:
    # 5 kWh stored, 2 kWh must stay: sell 3 kWh at 0.3 = -0.9 (not 5 kWh = -1.5).
    s = run([0.3], (bat(initial_soc_kwh=5.0, soc_min_kwh=2.0),))
    assert s.devices["home"]["bat"]["soc_end_kwh"].iloc[-1] == pytest.approx(2.0)
    assert s.cost_eur == pytest.approx(-0.9)
    assert run([0.3], (bat(initial_soc_kwh=5.0),)).cost_eur == pytest.approx(-1.5)


def test_battery_soc_max_binds() -> None:
    # soc_max 6 of 10 kWh: the trade is 6 kWh: 0.6 - 1.8 = -1.2 (power 10 kW).
    s = run([0.1, 0.3], (bat(soc_max_kwh=6.0, charge_power_kw=10.0, discharge_power_kw=10.0),))
    assert s.devices["home"]["bat"]["soc_end_kwh"].max() == pytest.approx(6.0)
    assert s.cost_eur == pytest.approx(-1.2)


def test_battery_initial_soc_is_used() -> None:
    # 4 kWh already stored, sold at 0.3: -1.2.
    s = run([0.3], (bat(initial_soc_kwh=4.0),))
    assert s.cost_eur == pytest.approx(-1.2)
    with pytest.raises(FlexInputError, match="initial_soc_kwh"):
        bat(initial_soc_kwh=11.0)


def test_battery_target_soc_binds() -> None:
    # Start at 5 kWh. Free: sell the 5 kWh at 0.3 (5 kW is the most it can sell in the hour): -1.5.
    # Target 10 kWh at the end: charge 5 at 0.1 and keep it: +0.5.
    free = run([0.1, 0.3], (bat(initial_soc_kwh=5.0),))
    held = run([0.1, 0.3], (bat(initial_soc_kwh=5.0, target_soc_kwh=10.0),))
    assert free.cost_eur == pytest.approx(-1.5)
    assert held.cost_eur == pytest.approx(0.5)
    assert held.devices["home"]["bat"]["soc_end_kwh"].iloc[-1] == pytest.approx(10.0)
    assert held.status == "optimal"


def test_battery_degradation_cost() -> None:
    # Cycling 1 kWh earns 0.3 - 0.1 = 0.2 but wears 2 x 0.15 = 0.3: the battery stays idle.
    s = run([0.1, 0.3], (bat(degradation_eur_per_kwh=0.15),))
    assert s.cost_eur == pytest.approx(0.0, abs=1e-9)
    # at 0.05 EUR/kWh the full trade pays: 5 kWh x (0.2 - 0.1) = 0.5 saved, wear 0.5 in the statement
    s = run([0.1, 0.3], (bat(degradation_eur_per_kwh=0.05),))
    assert s.cost_eur == pytest.approx(-1.0 + 0.5)
    wear = s.statement.set_index("item").loc["bat wear"]
    assert wear["optimal_eur"] == pytest.approx(0.5)


def test_negative_price_never_charges_and_discharges_at_once() -> None:
    # Full battery at -0.2 EUR/kWh. The LP alone would charge 5 kW and discharge 4.05 kW at once
    # (SoC unchanged: 0.9 x 5 = 4.05 / 0.9 ... = 4.5 - 4.5) to import 0.95 kWh and be paid 0.19.
    # A real battery does one or the other: with a full battery it can only discharge, which costs.
    full = bat(initial_soc_kwh=10.0, charge_efficiency=0.9, discharge_efficiency=0.9)
    lp = run_opts([-0.2], (full,), exclusivity="none")
    assert lp.cost_eur == pytest.approx(-0.19)
    s = run_opts([-0.2], (full,))
    b = s.devices["home"]["bat"]
    assert not ((b["charge_kw"] > TOL) & (b["discharge_kw"] > TOL)).any()
    assert s.cost_eur == pytest.approx(0.0, abs=1e-9)
    assert s.binaries > 0


def run_opts(prices: list[float], devices: tuple, **opts: object) -> Schedule:
    index = hours(len(prices))
    p = np.asarray(prices, dtype=float)
    s = Site("home", 0.0, devices=devices, commitments=(energy_price(p), feed_in(p)))
    return schedule(index, s, **opts)


# --------------------------------------------------------------------------------------------------
# electric vehicle


def ev(sessions: list[EVSession], **kw: object) -> ElectricVehicle:
    args: dict[str, object] = {
        "name": "ev",
        "capacity_kwh": 60.0,
        "charge_power_kw": 11.0,
        "sessions": sessions,
    }
    args.update(kw)
    return ElectricVehicle(**args)  # type: ignore[arg-type]


def test_ev_charges_only_while_plugged() -> None:
    # Plugged in steps 1-2 only; the cheapest hour (step 0, 0.1) is out of reach: 2 kWh at 0.2.
    idx = hours(3)
    car = ev([EVSession(idx[1], idx[2] + pd.Timedelta(hours=1), 2.0)], charge_efficiency=1.0)
    s = run([0.1, 0.3, 0.2], (car,))
    e = s.devices["home"]["ev"]
    assert e["charge_kw"].iloc[0] == 0.0
    assert e["charge_kw"].iloc[2] == pytest.approx(2.0)
    assert s.cost_eur == pytest.approx(0.4)
    assert e["plugged"].tolist() == [0.0, 1.0, 1.0]


def test_ev_energy_by_departure_with_losses() -> None:
    # 9 kWh into the battery at 90 %: 10 kWh from the grid in the cheaper hour (0.2): 2.0.
    idx = hours(2)
    s = run([0.3, 0.2], (ev([EVSession(idx[0], idx[-1] + pd.Timedelta(hours=1), 9.0)]),))
    e = s.devices["home"]["ev"]
    assert e["energy_added_kwh"].iloc[-1] == pytest.approx(9.0)
    assert e["charge_kw"].tolist() == pytest.approx([0.0, 10.0])
    assert s.cost_eur == pytest.approx(2.0)


def test_ev_charger_power_binds() -> None:
    # 20 kWh with an 11 kW charger: 11 at 0.1 and 9 at 0.3 = 1.1 + 2.7 = 3.8.
    idx = hours(2)
    car = ev([EVSession(idx[0], idx[-1] + pd.Timedelta(hours=1), 20.0)], charge_efficiency=1.0)
    s = run([0.1, 0.3], (car,))
    assert s.devices["home"]["ev"]["charge_kw"].tolist() == pytest.approx([11.0, 9.0])
    assert s.cost_eur == pytest.approx(3.8)


def test_ev_vehicle_to_grid() -> None:
    # Arrives with 30 kWh, needs nothing more by departure. With 5 kW V2G: sell 5 at 0.5, buy 5 back at
    # 0.1: -2.5 + 0.5 = -2.0. Without V2G the EV does nothing.
    idx = hours(2)
    session = [EVSession(idx[0], idx[-1] + pd.Timedelta(hours=1), 0.0, arrival_soc_kwh=30.0)]
    v2g = ev(session, discharge_power_kw=5.0, charge_efficiency=1.0, discharge_efficiency=1.0)
    s = run([0.5, 0.1], (v2g,))
    e = s.devices["home"]["ev"]
    assert e["discharge_kw"].tolist() == pytest.approx([5.0, 0.0])
    assert e["soc_end_kwh"].tolist() == pytest.approx([25.0, 30.0])
    assert s.cost_eur == pytest.approx(-2.0)
    assert run([0.5, 0.1], (ev(session, charge_efficiency=1.0),)).cost_eur == pytest.approx(0.0, abs=1e-9)
    # the SoC floor binds: with 28 kWh as minimum only 2 kWh can be lent: -1.0 + 0.2 = -0.8
    low = ev(
        session, discharge_power_kw=5.0, charge_efficiency=1.0, discharge_efficiency=1.0, min_soc_kwh=28.0
    )
    assert run([0.5, 0.1], (low,)).cost_eur == pytest.approx(-0.8)
    with pytest.raises(FlexInputError, match="V2G needs arrival_soc_kwh"):
        ev([EVSession(idx[0], idx[1], 1.0)], discharge_power_kw=5.0)


def test_ev_departure_after_horizon_needs_only_what_cannot_wait() -> None:
    # Needs 20 kWh, leaves 1 h after the horizon end with a 10 kW charger (100 %): 10 kWh can be
    # charged after the horizon, so 10 kWh are needed inside it (at 0.2: 2.0).
    idx = hours(2)
    car = ev(
        [EVSession(idx[0], idx[-1] + pd.Timedelta(hours=2), 20.0)],
        charge_power_kw=10.0,
        charge_efficiency=1.0,
    )
    s = run([0.2, 0.3], (car,))
    assert s.devices["home"]["ev"]["energy_added_kwh"].iloc[-1] == pytest.approx(10.0)
    assert s.cost_eur == pytest.approx(2.0)


def test_ev_capacity_bounds_the_energy() -> None:
    # Arrives with 55 of 60 kWh: it can take 5 kWh even at a negative price.
    idx = hours(1)
    car = ev(
        [EVSession(idx[0], idx[0] + pd.Timedelta(hours=1), 2.0, arrival_soc_kwh=55.0)], charge_efficiency=1.0
    )
    s = run([-0.1], (car,))
    assert s.devices["home"]["ev"]["energy_added_kwh"].iloc[0] == pytest.approx(5.0)
    assert s.cost_eur == pytest.approx(-0.5)


# --------------------------------------------------------------------------------------------------
# heat pump


def hp(**kw: object) -> HeatPump:
    args: dict[str, object] = {
        "name": "hp",
        "power_kw": 3.0,
        "cop": 3.0,
        "resistance_k_per_kw": 10.0,
        "capacitance_kwh_per_k": 10.0,
        "outdoor_temp_c": 0.0,
        "initial_temp_c": 20.0,
        "comfort_min_c": 19.5,
        "comfort_max_c": 22.0,
    }
    args.update(kw)
    return HeatPump(**args)  # type: ignore[arg-type]


PRICES_HP = [0.1, 0.1, 0.4, 0.4, 0.4, 0.1]


def test_heat_pump_follows_the_rc_model() -> None:
    # T[t] = a T[t-1] + (1 - a)(T_out + R COP P[t]) with a = exp(-1 h / (10 K/kW x 10 kWh/K)).
    s = run(PRICES_HP, (hp(),))
    h = s.devices["home"]["hp"]
    a = math.exp(-1.0 / 100.0)
    temp, expected = 20.0, []
    for p in h["power_kw"]:
        temp = a * temp + (1 - a) * (0.0 + 10.0 * 3.0 * p)
        expected.append(temp)
    np.testing.assert_allclose(h["indoor_temp_c"].to_numpy(), expected, atol=1e-7)
    np.testing.assert_allclose(h["heat_kw"].to_numpy(), 3.0 * h["power_kw"].to_numpy())


def test_heat_pump_keeps_comfort_and_preheats_when_cheap() -> None:
    # 0 degC outside: without heat the house loses ~0.2 K/h, so it must heat. It stores heat in the
    # cheap hours (T above the minimum) and coasts through the expensive ones, for less than a
    # thermostat that holds 19.5 degC.
    s = run(PRICES_HP, (hp(),))
    h = s.devices["home"]["hp"]
    assert h["indoor_temp_c"].min() >= 19.5 - TOL and h["indoor_temp_c"].max() <= 22.0 + TOL
    assert h["power_kw"].iloc[2:5].sum() < h["power_kw"].iloc[:2].sum()
    value = s.statement.set_index("item").loc["energy", "value_eur"]
    assert value > 0.01
    # the comfort minimum binds: without it the heat pump would not run at all
    cold = run(PRICES_HP, (hp(comfort_min_c=-50.0),))
    assert cold.cost_eur == pytest.approx(0.0, abs=1e-9)
    assert s.cost_eur > 0.1


def test_heat_pump_comfort_max_binds() -> None:
    # Free electricity at a negative price: the heat pump heats as much as the band allows (22 degC).
    s = run([-0.1] * 4, (hp(),))
    assert s.devices["home"]["hp"]["indoor_temp_c"].max() == pytest.approx(22.0, abs=1e-6)
    hot = run([-0.1] * 4, (hp(comfort_max_c=40.0),))
    assert hot.devices["home"]["hp"]["indoor_temp_c"].max() > 22.5


def test_heat_pump_cop_scales_the_electricity() -> None:
    # The heat needed is the same; at COP 6 instead of 3 it takes half the electricity.
    c3 = run(PRICES_HP, (hp(power_kw=10.0),)).cost_eur
    c6 = run(PRICES_HP, (hp(power_kw=10.0, cop=6.0),)).cost_eur
    assert c6 == pytest.approx(c3 / 2, rel=1e-7)


def test_heat_pump_power_limit_binds() -> None:
    # 0.2 kW x COP 3 = 0.6 kW of heat against a ~2 kW loss: the house cools ~0.14 K/h and leaves the
    # band after ~4 h; comfort is relaxed (reported in K.h) and the heat pump runs flat out.
    s = run(PRICES_HP, (hp(power_kw=0.2),))
    assert s.devices["home"]["hp"]["power_kw"].min() == pytest.approx(0.2)
    assert s.status == "relaxed"
    low = s.unmet[s.unmet["constraint"] == "comfort_low"]
    assert len(low) > 0 and (low["unit"] == "K·h").all()


# --------------------------------------------------------------------------------------------------
# shiftable load


def test_shiftable_load_runs_once_at_the_cheapest_start() -> None:
    # Profile 2 kW then 1 kW. Cost by start: s0 0.7, s1 0.4, s2 0.45, s3 0.5, s4 0.9 -> start at 1.
    prices = [0.3, 0.1, 0.2, 0.05, 0.4, 0.1]
    idx = hours(6)
    wash = ShiftableLoad("wash", [2.0, 1.0], idx[0], idx[-1] + pd.Timedelta(hours=1))
    s = run(prices, (wash,))
    w = s.devices["home"]["wash"]
    assert w["power_kw"].tolist() == pytest.approx([0, 2, 1, 0, 0, 0])
    assert w["start"].tolist() == pytest.approx([0, 1, 0, 0, 0, 0])
    assert s.cost_eur == pytest.approx(0.4)
    # the window binds: from step 2 on the best start is 2 (0.45)
    late = ShiftableLoad("wash", [2.0, 1.0], idx[2], idx[-1] + pd.Timedelta(hours=1))
    assert run(prices, (late,)).cost_eur == pytest.approx(0.45)


def test_shiftable_load_window_too_short_raises() -> None:
    idx = hours(4)
    short = ShiftableLoad("wash", [1.0, 1.0, 1.0], idx[2], idx[-1] + pd.Timedelta(hours=1))
    with pytest.raises(FlexInputError, match="no start"):
        run([0.1] * 4, (short,))


# --------------------------------------------------------------------------------------------------
# PV and the connection


def test_pv_curtailment_at_a_negative_feed_in() -> None:
    # 3 kW of PV, 1 kW of load, injection costs 0.1 EUR/kWh: curtail 2 kW (cost 0) rather than pay 0.2.
    idx = hours(1)
    commit = (energy_price([0.3]), feed_in([-0.1]))
    s = schedule(idx, Site("home", 1.0, devices=(PVSystem("pv", 3.0),), commitments=commit))
    pv = s.devices["home"]["pv"]
    assert pv["curtailed_kw"].iloc[0] == pytest.approx(2.0)
    assert s.cost_eur == pytest.approx(0.0, abs=1e-9)
    fixed = schedule(
        idx, Site("home", 1.0, devices=(PVSystem("pv", 3.0, curtailable=False),), commitments=commit)
    )
    assert fixed.cost_eur == pytest.approx(0.2)


def test_site_import_limit_binds() -> None:
    # 1 kW load, 3 kW import limit: the battery charges 2 kW (not 5) at 0.1 and gives it back at 0.3.
    # Cost 0.3 - 0.3 = 0.0 instead of 0.6 - 1.2 = -0.6 without the limit.
    s = run([0.1, 0.3], (bat(),), base=1.0, connection=GridConnection(import_limit_kw=3.0))
    assert s.sites["home"]["import_kw"].max() <= 3.0 + TOL
    assert s.cost_eur == pytest.approx(0.0, abs=1e-9)
    assert run([0.1, 0.3], (bat(),), base=1.0).cost_eur == pytest.approx(-0.6)


def test_site_export_limit_binds() -> None:
    # Export limit 2 kW: the battery buys and sells 2 kWh, not 5: 0.2 - 0.6 = -0.4 (not -1.0).
    s = run([0.1, 0.3], (bat(),), connection=GridConnection(export_limit_kw=2.0))
    assert s.sites["home"]["export_kw"].max() <= 2.0 + TOL
    assert s.cost_eur == pytest.approx(-0.4)
