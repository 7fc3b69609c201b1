"""Baselines: which past value they use, their residual quantiles and the forecast frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.energy.forecast.baselines import (
    Forecast,
    persistence,
    profile_average,
    residual_quantiles,
    seasonal_naive,
    sort_quantiles,
)
from bright.energy.forecast.features import day_ahead_issue_time, delivery_day_index

TZ = "Europe/Brussels"
DAY = "2016-02-20"  # a Saturday in winter (CET, UTC+1), no DST change nearby


def ramp(days: int = 60) -> pd.Series:
    """Value = hours since 2016-01-01 00:00 UTC."""
    idx = pd.date_range(pd.Timestamp("2016-01-01", tz="UTC"), periods=days * 96, freq="15min")
    return pd.Series(np.arange(len(idx)) / 4.0, index=idx)


def test_persistence_uses_the_latest_known_same_clock_time() -> None:
    y = ramp()
    issue = day_ahead_issue_time(DAY, tz=TZ)
    targets = delivery_day_index(DAY, tz=TZ)
    f = persistence(y, issue, targets, tz=TZ)
    hours = ((targets - y.index[0]) / pd.Timedelta(hours=1)).to_numpy()
    # Before noon local the same time yesterday is known (-24 h); from noon on, two days back.
    np.testing.assert_allclose(f.median.to_numpy()[:48], hours[:48] - 24.0)
    np.testing.assert_allclose(f.median.to_numpy()[48:], hours[48:] - 48.0)
    assert f.model == "persistence" and f.issue_time == issue


def test_seasonal_naive_and_profile_average() -> None:
    y = ramp()
    issue = day_ahead_issue_time(DAY, tz=TZ)
    targets = delivery_day_index(DAY, tz=TZ)
    hours = ((targets - y.index[0]) / pd.Timedelta(hours=1)).to_numpy()
    np.testing.assert_allclose(seasonal_naive(y, issue, targets, tz=TZ).median, hours - 168.0)
    # Mean of 1, 2, 3, 4 weeks back = value - 2.5 weeks
    np.testing.assert_allclose(profile_average(y, issue, targets, tz=TZ, weeks=4).median, hours - 2.5 * 168.0)
    # A missing week is skipped, not counted as zero: drop week 2 -> mean of 1, 3, 4 = -8/3 weeks
    gap = y.copy()
    gap.loc[targets[0] - pd.Timedelta(days=14) : targets[-1] - pd.Timedelta(days=14)] = np.nan
    np.testing.assert_allclose(
        profile_average(gap, issue, targets, tz=TZ, weeks=4).median, hours - 8.0 / 3.0 * 168.0
    )


def test_band_is_the_centred_residual_distribution() -> None:
    # Weekly-periodic series plus a known error pattern in the last 28 days: at 10:00-10:59 local the
    # value exceeds last week's by 0, 1, 2 ... (cycling over 0..9 kWh) -> the residuals of that hour
    # are uniform on 0..9 minus last week's pattern; a constant series gives a zero-width band.
    idx = pd.date_range(pd.Timestamp("2016-01-01", tz="UTC"), periods=60 * 96, freq="15min")
    flat = pd.Series(1.0, index=idx)
    issue = day_ahead_issue_time(DAY, tz=TZ)
    targets = delivery_day_index(DAY, tz=TZ)
    f = seasonal_naive(flat, issue, targets, tz=TZ)
    np.testing.assert_allclose(f.quantiles.to_numpy(), 1.0)
    # Residuals y(t) - y(t - 7 d) = +/-1 alternating by week: 0.1 and 0.9 quantiles are -1 and +1,
    # the median residual is 0 (equal counts) -> band = point -/+ 1.
    weeks = ((idx - idx[0]) // pd.Timedelta(days=7)).to_numpy()
    alt = pd.Series(np.where(weeks % 2 == 0, 1.0, 2.0), index=idx)
    g = seasonal_naive(alt, issue, targets, tz=TZ)
    np.testing.assert_allclose((g.quantile(0.9) - g.median).to_numpy(), 1.0)
    np.testing.assert_allclose((g.quantile(0.1) - g.median).to_numpy(), -1.0)


def test_residual_quantiles_by_hour_and_pooled() -> None:
    hours = np.repeat(np.arange(24), 30)
    resid = hours.astype(float)  # hour h always has error h
    out = residual_quantiles(resid, hours, np.array([0, 5, 23]), [0.1, 0.9], min_residuals=28)
    np.testing.assert_allclose(out, [[0, 0], [5, 5], [23, 23]])
    # Too few per hour -> pooled over all hours: quantiles of 0..23 (each 30 times)
    few = residual_quantiles(resid, hours, np.array([0]), [0.5], min_residuals=31)
    assert few[0, 0] == pytest.approx(np.quantile(resid, 0.5))
    none = residual_quantiles(resid[:5], hours[:5], np.array([0]), [0.5], min_residuals=28)
    assert np.isnan(none).all()


def test_short_history_gives_nan_band_not_zero() -> None:
    y = ramp(days=60).iloc[-10 * 96 :]  # ten days
    issue = y.index[-1] + pd.Timedelta(hours=2)
    targets = pd.date_range(issue.ceil("D") + pd.Timedelta(days=1), periods=96, freq="15min")
    f = seasonal_naive(y, issue, targets, tz=TZ, min_residuals=10_000)
    assert f.median.notna().all()
    assert f.quantile(0.1).isna().all() and f.quantile(0.9).isna().all()


def test_forecast_frame_validation() -> None:
    idx = pd.date_range("2016-01-01", periods=2, freq="15min", tz="UTC")
    ok = pd.DataFrame([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]], index=idx, columns=[0.1, 0.5, 0.9])
    f = Forecast(ok, pd.Timestamp("2015-12-31 11:00", tz="UTC"), "test")
    lo, hi = f.interval(0.8)
    assert list(lo) == [0.0, 1.0] and list(hi) == [2.0, 1.0]
    with pytest.raises(ValueError, match="cross at 2016-01-01T00:00:00"):
        Forecast(ok[[0.9, 0.5, 0.1]].set_axis([0.1, 0.5, 0.9], axis=1), f.issue_time, "test")
    with pytest.raises(ValueError, match="ascending"):
        Forecast(ok.set_axis([0.5, 0.1, 0.9], axis=1), f.issue_time, "test")
    with pytest.raises(ValueError, match="timezone-aware"):
        Forecast(ok.set_axis(idx.tz_localize(None)), f.issue_time, "test")
    with pytest.raises(KeyError):
        f.quantile(0.25)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.floats(-100, 100), min_size=3, max_size=3), min_size=1, max_size=20))
def test_sort_quantiles_never_crosses(rows: list[list[float]]) -> None:
    v = sort_quantiles(np.array(rows))
    assert (np.diff(v, axis=1) >= 0).all()


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["persistence", "seasonal_naive", "profile_average"]))
def test_baseline_quantiles_never_cross_on_noisy_data(seed: int, name: str) -> None:
    rng = np.random.default_rng(seed)
    idx = pd.date_range(pd.Timestamp("2016-01-01", tz="UTC"), periods=50 * 96, freq="15min")
    y = pd.Series(rng.gamma(2.0, 0.1, len(idx)), index=idx)
    issue = day_ahead_issue_time(DAY, tz=TZ)
    fn = {"persistence": persistence, "seasonal_naive": seasonal_naive, "profile_average": profile_average}[
        name
    ]
    f = fn(y, issue, delivery_day_index(DAY, tz=TZ), tz=TZ)
    assert (np.diff(f.quantiles.to_numpy(), axis=1) >= 0).all()
