"""Calibration of the session generator on the measured Trondheim sessions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from bright.datasets import ev_sessions
from bright.energy.mobility import MobilityInputError, calibrate, ks_distance


@pytest.fixture(scope="module")
def measured() -> pd.DataFrame:
    return ev_sessions()


def test_calibration_summarises_the_measured_sessions(measured: pd.DataFrame) -> None:
    cal = calibrate(measured)
    assert cal.n_sessions == 6878
    assert cal.n_users == 97
    assert cal.mean_energy_kwh == pytest.approx(measured["energy_kwh"].mean())
    # Active user-days counted independently: distinct (user, local date) pairs.
    user_days = measured.groupby(["user_id", measured["plugin_local"].dt.date]).size()
    assert cal.n_user_days == len(user_days)
    assert cal.mean_day_energy_kwh == pytest.approx(measured["energy_kwh"].sum() / len(user_days))
    # Every measured session with a plug-out is in the pool, once; user-days with a missing
    # plug-out (34 sessions) are left out whole.
    assert cal.energy_kwh.size == cal.day_count.sum()
    assert cal.energy_kwh.size <= measured["duration_h"].notna().sum()
    assert cal.energy_kwh.size >= measured["duration_h"].notna().sum() - 2 * 34
    assert np.all(cal.dwell_h > 0)
    # Pool cells are contiguous and all filled.
    assert np.all(np.diff(cal.day_cell) >= 0)
    assert np.all(cal.cell_hi - cal.cell_lo >= 20)
    assert cal.weekday_factor.mean() == pytest.approx(1.0)
    # 6,878 sessions over ~15,370 user-days of activity: about 0.45 sessions per user-day.
    assert 0.40 < cal.sessions_per_user_day < 0.50
    assert cal.sessions_per_user_day == pytest.approx(cal.active_day_share * len(measured) / len(user_days))


def test_lognormal_reference_fit(measured: pd.DataFrame) -> None:
    cal = calibrate(measured)
    log_e = np.log(measured["energy_kwh"].to_numpy())
    assert cal.lognormal_mu == pytest.approx(log_e.mean())
    assert cal.lognormal_sigma == pytest.approx(log_e.std())
    # Median of the fit exp(mu) near the measured median (9.05 kWh) but not equal: the body of the
    # distribution is skewed by many small top-ups.
    assert 7.0 < np.exp(cal.lognormal_mu) < 10.0


def _sessions(rows: list[tuple[str, str, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "session_id": range(len(rows)),
            "user_id": [r[0] for r in rows],
            "plugin_local": pd.to_datetime([r[1] for r in rows]),
            "energy_kwh": [r[2] for r in rows],
            "duration_h": [r[3] for r in rows],
        }
    )


# One user-day per (day type, season) cell: 2019-01-07 Mon (winter weekday), 2019-01-12 Sat,
# 2019-04-08 Mon, 2019-04-13 Sat, 2019-07-08 Mon, 2019-07-13 Sat, 2019-10-07 Mon, 2019-10-12 Sat.
CELL_DAYS = [
    "2019-01-07",
    "2019-01-12",
    "2019-04-08",
    "2019-04-13",
    "2019-07-08",
    "2019-07-13",
    "2019-10-07",
    "2019-10-12",
]


def test_user_days_group_sessions_in_time_order() -> None:
    rows = [("u1", f"{d} 18:00", 10.0, 12.0) for d in CELL_DAYS]
    # A second user-day on the winter Monday for user u2: two sessions, given out of order.
    rows += [("u2", "2019-01-07 19:30", 6.0, 10.0), ("u2", "2019-01-07 07:15", 2.0, 1.0)]
    cal = calibrate(_sessions(rows), min_user_days=1)
    assert cal.n_user_days == 9
    assert cal.cell_hi[0] - cal.cell_lo[0] == 2  # winter weekday cell holds u1's and u2's day
    two = np.flatnonzero(cal.day_count == 2)
    assert two.size == 1
    first = cal.day_first[two[0]]
    assert cal.plugin_minute[first : first + 2].tolist() == [7 * 60 + 15, 19 * 60 + 30]
    assert cal.energy_kwh[first : first + 2].tolist() == [2.0, 6.0]
    # 10 sessions with 8 x 10 + 6 + 2 = 88 kWh on 9 active user-days.
    assert cal.mean_day_energy_kwh == pytest.approx(88.0 / 9)


def test_calibrate_rejects_bad_input() -> None:
    rows = [("u1", f"{d} 18:00", 10.0, 12.0) for d in CELL_DAYS]
    good = _sessions(rows)
    with pytest.raises(MobilityInputError, match="missing column 'energy_kwh'"):
        calibrate(good.drop(columns="energy_kwh"), min_user_days=1)
    bad = good.copy()
    bad.loc[3, "energy_kwh"] = -1.0
    with pytest.raises(MobilityInputError, match=r"energy_kwh: -1.0 in session 3"):
        calibrate(bad, min_user_days=1)
    bad = good.copy()
    bad.loc[5, "duration_h"] = 0.0
    with pytest.raises(MobilityInputError, match=r"duration_h: 0.0 in session 5"):
        calibrate(bad, min_user_days=1)
    with pytest.raises(MobilityInputError, match="weekends in summer"):
        calibrate(good.drop(index=5), min_user_days=1)
    aware = good.copy()
    aware["plugin_local"] = aware["plugin_local"].dt.tz_localize("Europe/Oslo")
    with pytest.raises(MobilityInputError, match="naive"):
        calibrate(aware, min_user_days=1)


def test_ks_distance_worked_example() -> None:
    # F_a jumps at 1, 2, 3 and F_b at 2, 3, 4 (steps of 1/3): the gap is 1/3 at x = 1, 2 and 3.
    assert ks_distance(np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0])) == pytest.approx(1 / 3)
    assert ks_distance(np.array([1.0, 2.0]), np.array([5.0, 6.0])) == 1.0
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=300), rng.normal(0.2, 1.0, size=200)
    assert ks_distance(a, b) == pytest.approx(ks_2samp(a, b).statistic)
    with pytest.raises(MobilityInputError):
        ks_distance(np.array([np.nan]), a)
