"""Fleet and session generator: reproducibility, invariants, calibration fit, worked examples."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from bright.datasets import ev_sessions
from bright.energy.mobility import (
    KS_TOLERANCE,
    Calibration,
    ChargingSessions,
    FleetParameters,
    MobilityInputError,
    calibrate,
    fit_report,
    generate_sessions,
    plugin_hours,
)

START = pd.Timestamp("2016-01-01", tz="Europe/Brussels")
END = pd.Timestamp("2017-01-01", tz="Europe/Brussels")


@pytest.fixture(scope="module")
def measured() -> pd.DataFrame:
    return ev_sessions()


@pytest.fixture(scope="module")
def cal(measured: pd.DataFrame) -> Calibration:
    return calibrate(measured)


@pytest.fixture(scope="module")
def year(cal: Calibration) -> ChargingSessions:
    return generate_sessions(cal, 300, START, END, 7)


def test_same_seed_same_sessions(cal: Calibration) -> None:
    a = generate_sessions(cal, 40, START, START + pd.Timedelta(days=60), 11)
    b = generate_sessions(cal, 40, START, START + pd.Timedelta(days=60), np.random.default_rng(11))
    for name in (
        "vehicle",
        "arrival",
        "departure",
        "energy_kwh",
        "max_power_kw",
        "battery_kwh",
        "arrival_soc",
    ):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    c = generate_sessions(cal, 40, START, START + pd.Timedelta(days=60), 12)
    assert len(c) != len(a) or not np.array_equal(c.arrival, a.arrival)


def test_generated_sessions_fit_the_measured_ones(year: ChargingSessions, measured: pd.DataFrame) -> None:
    report = fit_report(year, measured)
    assert len(report) == 3 * 7  # 3 quantities x (all, weekday, weekend, 4 seasons)
    checked = report[report["quantity"].isin(["plugin_hour", "energy_kwh"]) & (report["season"] == "all")]
    assert len(checked) == 6  # plug-in hour and kWh, each for all days, weekdays, weekends
    assert (checked["ks"] <= KS_TOLERANCE).all(), checked
    assert (checked["tolerance"] == KS_TOLERANCE).all()
    # Reported only: the dwell, and each season (a few hundred measured sessions in spring and
    # summer, so sampling noise alone reaches 0.05-0.06); the bootstrap keeps them close as well.
    reported = report[report["tolerance"].isna()]
    assert len(reported) == 21 - 6
    assert (reported["ks"] < 0.1).all(), reported


def test_session_invariants(year: ChargingSessions) -> None:
    s, p = year, FleetParameters()
    assert s.n_steps == 366 * 96  # 2016 is a leap year
    assert np.all((s.arrival >= 0) & (s.arrival < s.departure) & (s.departure <= s.n_steps))
    # Feasible alone, within the usable battery, and the departure target is the driver's target.
    assert np.all(s.feasible_alone())
    assert np.all(s.energy_kwh <= s.battery_kwh * (p.target_soc - p.min_arrival_soc) + 1e-9)
    np.testing.assert_allclose(s.departure_soc, p.target_soc)
    # Sessions of one vehicle never overlap.
    order = np.lexsort((s.arrival, s.vehicle))
    v, a, d = s.vehicle[order], s.arrival[order], s.departure[order]
    same = v[1:] == v[:-1]
    assert np.all(d[:-1][same] <= a[1:][same])
    # Chronological order.
    assert np.all(np.diff(s.arrival) >= 0)
    # Power is min(charger, on-board) from the default mixes: 3.7, 7.4 or 11 kW at home.
    assert set(np.unique(s.max_power_kw)) <= {3.7, 7.4, 11.0}


def test_fleet_energy_matches_daily_distance(year: ChargingSessions, cal: Calibration) -> None:
    fleet = year.vehicles
    assert fleet is not None
    # Expected kWh = sum over vehicles of distance x consumption x days; the generator's draws
    # (requested + what the caps removed) must land within 5 % on 300 vehicles x 366 days.
    expected = fleet.daily_kwh.sum() * 366
    drawn = year.energy_kwh.sum() + year.capped_kwh
    assert drawn == pytest.approx(expected, rel=0.05)
    # Calibrated mean distance: 0.349 active user-days x 16.3 kWh / 0.175 kWh/km = 32.5 km/day.
    assert fleet.daily_km.mean() == pytest.approx(32.5, rel=0.06)
    assert np.all((fleet.consumption_kwh_per_km >= 0.15) & (fleet.consumption_kwh_per_km <= 0.20))


def _one_day_calibration() -> Calibration:
    """Every cell holds one user-day: a single 18:00 plug-in, 10 kWh, 12 h; no smoothing, flat week."""
    days = ["2019-01-07", "2019-01-12", "2019-04-08", "2019-04-13", "2019-07-08", "2019-07-13"]
    days += ["2019-10-07", "2019-10-12"]
    frame = pd.DataFrame(
        {
            "user_id": ["u"] * 8,
            "plugin_local": pd.to_datetime([f"{d} 18:00" for d in days]),
            "energy_kwh": [10.0] * 8,
            "duration_h": [12.0] * 8,
        }
    )
    cal = calibrate(frame, min_user_days=1)
    # The eight days are Mondays and Saturdays only: flatten the weekday profile.
    return replace(
        cal,
        log_bandwidth_energy=0.0,
        log_bandwidth_dwell=0.0,
        time_bandwidth_h=0.0,
        weekday_factor=np.ones(7),
    )


def test_copied_day_lands_on_local_time_across_dst() -> None:
    cal = _one_day_calibration()
    # Brussels springs forward on Sunday 27 March 2016: 18:00 is 17:00 UTC before, 16:00 UTC after.
    start = pd.Timestamp("2016-03-25 00:00", tz="Europe/Brussels")
    end = pd.Timestamp("2016-03-30 00:00", tz="Europe/Brussels")
    params = FleetParameters(daily_km_mean=500.0, daily_km_sigma=0.0)  # every day active
    s = generate_sessions(cal, 3, start, end, 0, parameters=params)
    assert len(s) == 3 * 5
    np.testing.assert_array_equal(plugin_hours(s), np.full(15, 18.0))
    utc_hours = (s.start + pd.to_timedelta(s.arrival * 0.25, unit="h")).hour
    assert sorted(set(utc_hours)) == [16, 17]
    # 23:00 UTC on the 24th is step 0; 25 March 18:00 CET = 17:00 UTC = step 72.
    assert s.arrival.min() == 72
    # 12 h = 48 steps, except the last evening: the horizon ends 6 h (24 steps) after 18:00.
    np.testing.assert_array_equal(s.departure - s.arrival, np.minimum(48, s.n_steps - s.arrival))
    assert s.n_steps - s.arrival.max() == 24
    np.testing.assert_allclose(s.energy_kwh, 10.0)
    np.testing.assert_allclose(s.arrival_soc, 0.9 - 10.0 / s.battery_kwh)
    assert s.capped_kwh == 0.0


def test_sessions_are_capped_to_power_and_battery() -> None:
    cal = _one_day_calibration()
    cal = replace(cal, energy_kwh=np.full(8, 60.0), dwell_h=np.full(8, 2.0))
    params = FleetParameters(
        daily_km_mean=500.0,
        daily_km_sigma=0.0,
        battery_kwh=((40.0, 1.0),),
        home_chargers=((3.7, 1.0),),
    )
    s = generate_sessions(cal, 2, START, START + pd.Timedelta(days=3), 0, parameters=params)
    # 2 h at 3.7 kW = 7.4 kWh, below the usable 40 x (0.9 - 0.1) = 32 kWh.
    np.testing.assert_allclose(s.energy_kwh, 7.4)
    assert s.capped_kwh == pytest.approx(len(s) * (60.0 - 7.4))


def test_shared_cars_serve_several_users(cal: Calibration) -> None:
    params = FleetParameters(users_per_shared_car=4, shared_km_factor=0.8)
    s = generate_sessions(cal, 30, START, START + pd.Timedelta(days=90), 5, parameters=params, n_shared=10)
    fleet = s.vehicles
    assert fleet is not None
    np.testing.assert_array_equal(fleet.users, [1] * 20 + [4] * 10)
    assert fleet.user_vehicle.size == 20 + 40
    np.testing.assert_allclose(fleet.daily_km, np.bincount(fleet.user_vehicle, weights=fleet.user_daily_km))
    assert np.all(fleet.location[20:] == 3)
    # Default shared chargers are 22 kW, limited to the on-board 7.4 or 11 kW.
    assert set(np.unique(fleet.max_power_kw[20:])) <= {7.4, 11.0}
    # A shared car has about 4 x 0.8 = 3.2 times a private car's sessions.
    per_vehicle = np.bincount(s.vehicle, minlength=30)
    ratio = per_vehicle[20:].mean() / per_vehicle[:20].mean()
    assert 2.2 < ratio < 4.2


def test_work_sessions_are_weekday_mornings(cal: Calibration) -> None:
    params = FleetParameters(location_share=(0.0, 1.0, 0.0))
    s = generate_sessions(cal, 50, START, START + pd.Timedelta(days=28), 2, parameters=params)
    local = (s.start + pd.to_timedelta(s.arrival * 0.25, unit="h")).tz_convert("Europe/Brussels")
    assert np.all(local.weekday < 5)
    hours = local.hour + local.minute / 60
    assert 8.0 < hours.to_numpy().mean() < 9.0
    assert np.all(s.max_power_kw <= 11.0)


def test_generate_rejects_bad_horizon(cal: Calibration) -> None:
    with pytest.raises(MobilityInputError, match="naive"):
        generate_sessions(cal, 5, pd.Timestamp("2016-01-01"), END, 0)
    with pytest.raises(MobilityInputError, match="15-min grid"):
        generate_sessions(cal, 5, START + pd.Timedelta(minutes=5), END, 0)
    with pytest.raises(MobilityInputError, match="n_vehicles, n_shared"):
        generate_sessions(cal, 5, START, END, 0, n_shared=6)
    with pytest.raises(MobilityInputError, match="target_soc"):
        FleetParameters(target_soc=0.05)


def test_hand_made_sessions_are_validated() -> None:
    with pytest.raises(MobilityInputError, match=r"sessions.departure: .* in session 1"):
        ChargingSessions.build(START, 8, [0, 3], [2, 3], [1.0, 1.0], 4.0)
    with pytest.raises(MobilityInputError, match=r"sessions.departure: .* in session 0"):
        ChargingSessions.build(START, 8, [0], [9], [1.0], 4.0)
    with pytest.raises(MobilityInputError, match=r"sessions.energy_kwh: .* in session 0"):
        ChargingSessions.build(START, 8, [0], [2], [np.nan], 4.0)
    s = ChargingSessions.build(START, 8, [0, 2], [2, 8], [1.0, 3.0], [4.0, 2.0], arrival_soc=0.25)
    np.testing.assert_allclose(s.battery_kwh, [4 / 3, 4.0])  # sized so that the target is 100 %
    np.testing.assert_array_equal(s.feasible_alone(), [True, True])  # 2 kW x 6 x 0.25 h = 3 kWh
