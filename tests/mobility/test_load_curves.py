"""Load-duration curve, daily profile and daily peaks of a per-step power series."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bright.energy.mobility import MobilityInputError, daily_peaks, daily_profile, duration_curve

START = pd.Timestamp("2016-03-21 23:00", tz="UTC")  # local 2016-03-22 00:00 CET (DST on the 27th)

power = arrays(
    np.float64,
    st.integers(min_value=1, max_value=400),
    elements=st.floats(min_value=-500, max_value=500, allow_nan=False),
)


@settings(max_examples=60, deadline=None)
@given(values=power)
def test_duration_curve_is_the_sorted_series(values: np.ndarray) -> None:
    curve = duration_curve(values)
    assert curve.size == values.size
    assert np.all(np.diff(curve) <= 0)
    np.testing.assert_array_equal(np.sort(curve), np.sort(values))
    few = duration_curve(values, 5)
    assert few[0] == values.max() and few[-1] == values.min() and few.size == min(5, values.size)


@settings(max_examples=40, deadline=None)
@given(days=st.integers(min_value=1, max_value=5), data=st.data())
def test_daily_profile_and_peaks_of_whole_days(days: int, data: st.DataObject) -> None:
    values = data.draw(
        arrays(np.float64, days * 96, elements=st.floats(min_value=0, max_value=100, allow_nan=False))
    )
    prof = daily_profile(values, START)
    assert len(prof) == 96 and prof.index[0] == 0.0 and prof.index[-1] == 23.75
    # Whole local days: the mean of the profile is the mean of the series, slot by slot too.
    assert prof.mean() == pytest.approx(values.mean())
    np.testing.assert_allclose(prof.to_numpy(), values.reshape(days, 96).mean(axis=0))
    peaks = daily_peaks(values, START)
    assert list(peaks.index) == [dt.date(2016, 3, 22) + dt.timedelta(days=d) for d in range(days)]
    np.testing.assert_allclose(peaks.to_numpy(), values.reshape(days, 96).max(axis=1))


def test_missing_values_and_bad_input() -> None:
    values = np.array([1.0, np.nan, 3.0, 2.0])
    np.testing.assert_array_equal(duration_curve(values), [3.0, 2.0, 1.0])
    prof = daily_profile(values, START)
    assert prof.iloc[0] == 1.0 and np.isnan(prof.iloc[1]) and np.isnan(prof.iloc[10])
    assert daily_peaks(np.array([np.nan, np.nan]), START).isna().all()
    # A DST day (2016-03-27 has 92 quarter-hours): local slots, no 02:00-03:00 values.
    dst = pd.Timestamp("2016-03-26 23:00", tz="UTC")
    prof = daily_profile(np.arange(92, dtype=float), dst)
    assert prof.loc[1.75] == 7.0 and np.isnan(prof.loc[2.0]) and prof.loc[3.0] == 8.0
    with pytest.raises(MobilityInputError, match="naive"):
        daily_profile(values, pd.Timestamp("2016-01-01"))
    with pytest.raises(MobilityInputError, match="n_points"):
        duration_curve(values, 1)
    with pytest.raises(MobilityInputError, match="infinite"):
        duration_curve(np.array([1.0, np.inf]))
