"""Requests that cannot be met: the closest schedule comes back with a report of what is missing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bright.energy.flex.commitments import energy_price, feed_in
from bright.energy.flex.devices import Battery, ElectricVehicle, EVSession, GridConnection, HeatPump, PVSystem
from bright.energy.flex.problem import Penalties, Site, build_problem
from bright.energy.flex.solve import schedule, solve


def hours(n: int) -> pd.DatetimeIndex:
    return pd.date_range("2024-03-04", periods=n, freq="1h", tz="UTC")


def test_unreachable_soc_target() -> None:
    # 2 kW for 2 h from empty reaches 4 kWh; the target is 6 kWh: 2 kWh short. The battery still
    # charges all it can (not an all-zero schedule), in the cheaper hour first.
    b = Battery("bat", 10.0, 2.0, 2.0, 1.0, 1.0, initial_soc_kwh=0.0, target_soc_kwh=6.0)
    s = schedule(hours(2), Site("home", 0.0, devices=(b,), commitments=(energy_price([0.2, 0.1]),)))
    assert s.status == "relaxed"
    assert s.devices["home"]["bat"]["soc_end_kwh"].iloc[-1] == pytest.approx(4.0)
    assert len(s.unmet) == 1
    row = s.unmet.iloc[0]
    assert (row["item"], row["constraint"], row["unit"]) == ("bat", "soc_target", "kWh")
    assert row["shortfall"] == pytest.approx(2.0)
    assert row["time"] == pd.Timestamp("2024-03-04 02:00", tz="UTC")
    assert row["penalty_eur"] == pytest.approx(2.0 * Penalties().energy_eur_per_kwh)
    assert s.cost_eur == pytest.approx(0.6)  # 2 kWh at 0.2 + 2 kWh at 0.1
    assert s.objective_eur == pytest.approx(s.cost_eur + s.penalty_eur)


def test_ev_with_too_little_time() -> None:
    # 30 kWh needed in 2 h at 11 kW and 90 %: 19.8 kWh possible, 10.2 kWh short at departure.
    idx = hours(2)
    dep = idx[-1] + pd.Timedelta(hours=1)
    car = ElectricVehicle("ev", 60.0, 11.0, [EVSession(idx[0], dep, 30.0)])
    s = schedule(idx, Site("home", 0.0, devices=(car,), commitments=(energy_price([0.1, 0.2]),)))
    assert s.devices["home"]["ev"]["charge_kw"].tolist() == pytest.approx([11.0, 11.0])
    row = s.unmet.iloc[0]
    assert (row["item"], row["constraint"], row["time"]) == ("ev", "ev_energy", dep)
    assert row["shortfall"] == pytest.approx(10.2)


def test_ev_session_outside_the_available_steps() -> None:
    # Plugged for 30 minutes inside a 1-hour step: no whole step available, all 5 kWh reported.
    idx = hours(2)
    car = ElectricVehicle(
        "ev",
        60.0,
        11.0,
        [EVSession(idx[0] + pd.Timedelta(minutes=15), idx[0] + pd.Timedelta(minutes=45), 5.0)],
    )
    s = schedule(idx, Site("home", 0.0, devices=(car,), commitments=(energy_price(0.1),)))
    assert s.unmet["shortfall"].tolist() == pytest.approx([5.0])
    assert s.unmet["penalty_eur"].tolist() == pytest.approx([0.0])  # nothing could be decided


def test_fixed_load_above_the_connection_limit() -> None:
    # 20 kW of fixed load on a 17 kW connection for 2 h: 6 kWh above the limit. The battery's 5 kWh
    # cover 5 of them (3 in the first hour, the remaining 2 in the second); 1 kWh is reported.
    b = Battery("bat", 5.0, 5.0, 5.0, 1.0, 1.0, initial_soc_kwh=5.0)
    site = Site(
        "home", 20.0, devices=(b,), connection=GridConnection(17.0, 17.0), commitments=(energy_price(0.1),)
    )
    s = schedule(hours(2), site)
    over = s.unmet[s.unmet["constraint"] == "import_limit"]
    assert over["shortfall"].sum() == pytest.approx(1.0)
    assert sorted(s.sites["home"]["import_kw"].tolist()) == pytest.approx([17.0, 18.0])


def test_non_curtailable_pv_above_the_export_limit() -> None:
    pv = PVSystem("pv", 8.0, curtailable=False)
    site = Site(
        "home", 1.0, devices=(pv,), connection=GridConnection(17.0, 5.0), commitments=(feed_in(0.05),)
    )
    s = schedule(hours(1), site)
    row = s.unmet.iloc[0]
    assert (row["constraint"], row["shortfall"]) == ("export_limit", pytest.approx(2.0))


def test_comfort_band_out_of_reach_from_the_start() -> None:
    # The house starts at 15 degC with a 19-23 band and a 1 kW heat pump: it cannot be in the band in
    # the first hours. The deviation is reported per step in K.h and the heat pump runs at full power.
    hp = HeatPump("hp", 1.0, 3.0, 10.0, 5.0, 5.0, 15.0, comfort_min_c=19.0, comfort_max_c=23.0)
    s = schedule(hours(4), Site("home", 0.0, devices=(hp,), commitments=(energy_price(0.2),)))
    low = s.unmet[s.unmet["constraint"] == "comfort_low"]
    assert len(low) == 4 and (low["unit"] == "K·h").all()
    assert s.devices["home"]["hp"]["power_kw"].tolist() == pytest.approx([1.0] * 4)
    temps = s.devices["home"]["hp"]["indoor_temp_c"].to_numpy()
    np.testing.assert_allclose(low["shortfall"].to_numpy(), 19.0 - temps, atol=1e-6)


def test_relax_all_fallback_after_an_infeasible_tight_model() -> None:
    # The heat pump must draw power to keep the band, but the import limit (0.5 kW) forbids it; the
    # tight model is infeasible, the solver relaxes every limit and reports both violations' trade-off.
    hp = HeatPump("hp", 3.0, 3.0, 10.0, 10.0, -10.0, 20.0, comfort_min_c=19.9, comfort_max_c=23.0)
    site = Site(
        "home", 0.0, devices=(hp,), connection=GridConnection(0.5, 0.5), commitments=(energy_price(0.2),)
    )
    problem = build_problem(hours(6), [site])
    s = solve(problem)
    assert s.problem.relax_all
    assert s.status == "relaxed" and len(s.unmet) > 0
    assert s.devices["home"]["hp"]["power_kw"].sum() > 0
