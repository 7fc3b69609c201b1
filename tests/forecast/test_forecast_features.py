"""Features: clock and delivery days across DST, leakage guards, flat lines, sun and weather."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.energy.forecast.features import (
    BRUSSELS,
    HistoryError,
    LeakageError,
    calendar_features,
    day_ahead_issue_time,
    day_ahead_issue_times,
    delivery_day_index,
    flat_line_mask,
    known_at,
    lag_features,
    level_features,
    local_day_shift,
    min_known_lag_days,
    profile_mean,
    regular_series,
    solar_geometry,
    targets_for_horizon,
    weather_to_intervals,
)

TZ = "Europe/Brussels"


def ramp(start: str = "2016-03-01", days: int = 40) -> pd.Series:
    """Value = hours since start: every lag is readable from the value itself."""
    idx = pd.date_range(pd.Timestamp(start, tz="UTC"), periods=days * 96, freq="15min")
    return pd.Series(np.arange(len(idx)) / 4.0, index=idx)


def test_delivery_days_have_92_96_100_quarter_hours() -> None:
    spring = delivery_day_index("2016-03-27", tz=TZ)
    assert len(spring) == 92
    assert spring[0] == pd.Timestamp("2016-03-26 23:00", tz="UTC")  # local midnight, CET
    assert len(delivery_day_index("2016-10-30", tz=TZ)) == 100
    summer = delivery_day_index("2016-06-01", tz=TZ)
    assert len(summer) == 96 and summer[0] == pd.Timestamp("2016-05-31 22:00", tz="UTC")


def test_day_ahead_issue_time_is_noon_local_the_day_before() -> None:
    assert day_ahead_issue_time("2016-06-01", tz=TZ) == pd.Timestamp("2016-05-31 10:00", tz="UTC")
    # The day before the spring change is still CET: 12:00 local = 11:00 UTC.
    assert day_ahead_issue_time("2016-03-27", tz=TZ) == pd.Timestamp("2016-03-26 11:00", tz="UTC")
    targets = delivery_day_index("2016-06-01", tz=TZ)
    issues = day_ahead_issue_times(targets, tz=TZ)
    assert (issues == pd.Timestamp("2016-05-31 10:00", tz="UTC")).all()


def test_targets_for_horizon() -> None:
    issue = pd.Timestamp("2016-05-31 10:00", tz="UTC")
    assert targets_for_horizon(issue, "day-ahead", tz=TZ).equals(delivery_day_index("2016-06-01", tz=TZ))
    intraday = targets_for_horizon(pd.Timestamp("2016-05-31 10:05", tz="UTC"), pd.Timedelta(hours=2), tz=TZ)
    # Rounded up to 10:15; starts 10:15, 10:30, ..., 12:00 (before 12:05) = 8 intervals
    assert intraday[0] == pd.Timestamp("2016-05-31 10:15", tz="UTC") and len(intraday) == 8
    with pytest.raises(ValueError, match="horizon"):
        targets_for_horizon(issue, "week-ahead", tz=TZ)


def test_local_day_shift_keeps_the_wall_clock_across_dst() -> None:
    # 2016-03-28 08:00 CEST (06:00 UTC) -> 2016-03-27 08:00 CEST (06:00 UTC): 24 h
    t = pd.DatetimeIndex([pd.Timestamp("2016-03-28 06:00", tz="UTC")])
    assert local_day_shift(t, 1, tz=TZ)[0] == pd.Timestamp("2016-03-27 06:00", tz="UTC")
    # ... and two days back is 2016-03-26 08:00 CET = 07:00 UTC: 49 h
    assert local_day_shift(t, 2, tz=TZ)[0] == pd.Timestamp("2016-03-26 07:00", tz="UTC")
    # 02:30 on 2016-03-28 does not exist a day earlier: moves forward to 03:00 CEST = 01:00 UTC
    t2 = pd.DatetimeIndex([pd.Timestamp("2016-03-28 00:30", tz="UTC")])
    assert local_day_shift(t2, 1, tz=TZ)[0] == pd.Timestamp("2016-03-27 01:00", tz="UTC")


def test_known_at_uses_interval_ends() -> None:
    y = ramp(days=1)
    issue = pd.Timestamp("2016-03-01 01:00", tz="UTC")
    k = known_at(y, issue)
    # 00:00, 00:15, 00:30, 00:45 have ended by 01:00; 01:00 itself has not.
    assert list(k.index.strftime("%H:%M")) == ["00:00", "00:15", "00:30", "00:45"]


def test_regular_series_checks_and_fills_gaps() -> None:
    y = ramp(days=1).drop(pd.Timestamp("2016-03-01 00:30", tz="UTC"))
    r = regular_series(y, name="m1")
    assert len(r) == 96 and np.isnan(r.iloc[2])
    with pytest.raises(HistoryError, match="m1: timestamps must be timezone-aware"):
        regular_series(pd.Series([1.0], index=pd.DatetimeIndex(["2016-01-01"])), name="m1")
    off = pd.Series([1.0, 2.0], index=pd.DatetimeIndex(["2016-01-01 00:00", "2016-01-01 00:20"], tz="UTC"))
    with pytest.raises(HistoryError, match="m2: stamp 2016-01-01T00:20:00\\+00:00 is off"):
        regular_series(off, name="m2")
    dup = pd.Series([1.0, 2.0], index=pd.DatetimeIndex(["2016-01-01 00:00", "2016-01-01 00:00"], tz="UTC"))
    with pytest.raises(HistoryError, match="duplicate"):
        regular_series(dup, name="m3")


def test_lag_features_read_the_right_stamp_and_refuse_the_future() -> None:
    y = ramp()
    targets = delivery_day_index("2016-03-20", tz=TZ)  # 2016-03-19 23:00 UTC .. (CET)
    issues = day_ahead_issue_times(targets, tz=TZ)
    lags = lag_features(y, targets, issues, tz=TZ, lag_days=(2, 7))
    hours = (targets - y.index[0]) / pd.Timedelta(hours=1)
    np.testing.assert_allclose(lags["lag_2d"], hours - 48.0)
    np.testing.assert_allclose(lags["lag_7d"], hours - 168.0)
    # One day back is not known for afternoon targets at a D-1 12:00 issue.
    with pytest.raises(LeakageError, match="not known at issue time"):
        lag_features(y, targets, issues, tz=TZ, lag_days=(1,))
    # The smoothed 2-day lag reads 2 intervals after its centre: still known at 12:00 on D-1.
    sm = lag_features(y, targets, issues, tz=TZ, lag_days=(2,), smooth_intervals=2)
    np.testing.assert_allclose(sm["lag_2d_smooth"].iloc[10:80], sm["lag_2d"].iloc[10:80])  # linear ramp


def test_min_known_lag_and_profile_mean() -> None:
    y = ramp()
    targets = delivery_day_index("2016-03-20", tz=TZ)
    issues = day_ahead_issue_times(targets, tz=TZ)
    lag = min_known_lag_days(targets, issues, tz=TZ)
    # 00:00..11:45 local: yesterday is known (1); from 12:00 on: 2 days.
    assert (lag[:48] == 1).all() and (lag[48:] == 2).all()
    weekly = profile_mean(y, targets, issues, tz=TZ, step_days=7, count=2)
    hours = ((targets - y.index[0]) / pd.Timedelta(hours=1)).to_numpy()
    # mean of lags 7 and 14 days on a ramp = value - 10.5 days
    np.testing.assert_allclose(weekly, hours - 10.5 * 24)


def test_level_features_are_means_before_the_issue() -> None:
    y = ramp()
    issue = pd.Timestamp("2016-03-10 00:00", tz="UTC")
    lv = level_features(y, issue, 1)
    # The issue is 216 h after the start; the last known value is 215.75 (the 23:45 interval).
    # Last 96 values 192.00 .. 215.75 -> mean 203.875; last 672 values 48.00 .. 215.75 -> 131.875
    assert lv["level_24h"].iloc[0] == pytest.approx(203.875)
    assert lv["level_7d"].iloc[0] == pytest.approx(131.875)


def test_flat_line_mask_example() -> None:
    v = np.array([1.0, 2.0, 2.0, 2.0, 2.0, 3.0, np.nan, 3.0, 3.0])
    # run of four 2.0 flagged with min_run 4; the NaN splits nothing because it is skipped,
    # so 3.0, 3.0, 3.0 (positions 5, 7, 8) is a run of 3 < 4.
    np.testing.assert_array_equal(
        flat_line_mask(v, min_run=4), [False, True, True, True, True, False, False, False, False]
    )
    ignore = np.array([False, False, False, True, False, False, False, False, False])
    # Ignored interval 3 is neither flagged nor breaks the run: 2.0 at 1, 2, 4 = run of 3.
    np.testing.assert_array_equal(flat_line_mask(v, min_run=4, ignore=ignore), np.zeros(9, bool))
    with pytest.raises(ValueError):
        flat_line_mask(v, min_run=1)


def test_calendar_features_holidays_and_local_quarter_hours() -> None:
    # 21 July 2016 (Thursday) is the Belgian National Day.
    targets = delivery_day_index("2016-07-21", tz=TZ)
    cal = calendar_features(targets, site=BRUSSELS)
    assert (cal["holiday"] == 1.0).all() and (cal["day_off"] == 1.0).all()
    assert (cal["weekday"] == 3).all()
    assert cal["quarter_hour"].iloc[0] == 0 and cal["quarter_hour"].iloc[-1] == 95
    normal = calendar_features(delivery_day_index("2016-07-20", tz=TZ), site=BRUSSELS)
    assert (normal["holiday"] == 0.0).all() and (normal["day_off"] == 0.0).all()


def test_solar_geometry_night_and_noon() -> None:
    targets = delivery_day_index("2016-06-21", tz=TZ)
    geo = solar_geometry(targets, site=BRUSSELS)
    night = geo.loc[pd.Timestamp("2016-06-21 00:00", tz="UTC")]
    assert night["sun_up"] == 0.0 and night["clearsky_ghi_w_m2"] == 0.0
    noon = geo.loc[pd.Timestamp("2016-06-21 11:30", tz="UTC")]
    # Brussels, summer solstice: 90 - 50.85 + 23.44 = 62.6 deg at solar noon (~11:40 UTC)
    assert noon["solar_elevation_deg"] == pytest.approx(62.5, abs=0.7)
    assert 750.0 < noon["clearsky_ghi_w_m2"] < 1000.0


def test_weather_to_intervals_keeps_hourly_irradiance_energy() -> None:
    hours = pd.date_range("2016-06-21 00:00", periods=24, freq="h", tz="UTC")
    rng = np.random.default_rng(3)
    geo = solar_geometry(pd.date_range(hours[0], periods=96, freq="15min"), site=BRUSSELS)
    ghi_h = geo["clearsky_ghi_w_m2"].groupby(np.arange(96) // 4).mean().to_numpy() * rng.uniform(0.2, 1.0, 24)
    w = pd.DataFrame({"temp_air_c": np.linspace(10, 20, 24), "ghi_w_m2": ghi_h}, index=hours)
    targets = pd.date_range(hours[0], periods=96, freq="15min")
    q = weather_to_intervals(w, targets, site=BRUSSELS)
    np.testing.assert_allclose(
        q["ghi_w_m2"].to_numpy().reshape(24, 4).mean(axis=1), ghi_h, rtol=1e-9, atol=1e-9
    )
    assert (q["ghi_w_m2"] >= 0).all()
    # Temperature: hourly means sit at the middle of their hour; 00:30 -> 10.0, halfway to 01:30.
    assert q["temp_air_c"].iloc[0] == pytest.approx(10.0)  # before the first mid-stamp: its own hour
    assert q["temp_air_c"].iloc[4] == pytest.approx(10.0 + 10 / 23 * 0.625)  # 01:00-01:15 mid = 01:07:30


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 365), st.integers(1, 30))
def test_lag_features_never_read_after_the_issue(day_offset: int, lag: int) -> None:
    day = pd.Timestamp("2016-01-15") + pd.Timedelta(days=day_offset)
    targets = delivery_day_index(day, tz=TZ)
    issues = day_ahead_issue_times(targets, tz=TZ)
    y = pd.Series(
        1.0,
        index=pd.date_range(day.tz_localize("UTC") - pd.Timedelta(days=40), periods=45 * 96, freq="15min"),
    )
    if lag >= 2:
        lag_features(y, targets, issues, tz=TZ, lag_days=(lag,))  # always known
    else:
        with pytest.raises(LeakageError):
            lag_features(y, targets, issues, tz=TZ, lag_days=(lag,))
