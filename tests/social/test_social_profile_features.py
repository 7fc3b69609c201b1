"""Load-profile features: worked examples, DST days, missing data, bad input, invariants."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.social.profile_features import (
    COVARIATE_COLUMNS,
    FlexibleAssets,
    ProfileDataError,
    covariate_frame,
    load_profile_features,
)


def _two_days() -> pd.Series:
    """Day 1: 1 kW, 2 kW from 17 to 21 h local. Day 2: the same profile doubled. 15-min kWh, UTC."""
    local = pd.date_range("2024-03-05", periods=192, freq="15min", tz="Europe/Brussels")
    kw = np.where((local.hour >= 17) & (local.hour < 21), 2.0, 1.0)
    kw[96:] *= 2.0
    return pd.Series(kw * 0.25, index=local.tz_convert("UTC"))


def test_worked_example() -> None:
    f = load_profile_features(_two_days(), member="M01")
    # daily mean power: day 1 (20 x 1 + 4 x 2)/24 = 7/6 kW, day 2 7/3 kW; overall 1.75 kW
    assert f.mean_power_kw == pytest.approx(1.75)
    # peak window mean (2 + 4)/2 = 3 kW over 4 h, against 1.75 kW x 24 h: 12/42
    assert f.peak_share == pytest.approx(12 / 42)
    # solar window 10-16 h: (1 + 2)/2 = 1.5 kW -> 3 / 1.5
    assert f.evening_peak_ratio == pytest.approx(2.0)
    # CV of (7/6, 7/3): sd = (7/6)/sqrt(2), mean = 7/4 -> 0.4714
    assert f.day_to_day_variability == pytest.approx((7 / 6) / np.sqrt(2) / 1.75)
    # 5th percentile of power = 1 kW (80 of 192 intervals) -> 1 / 1.75
    assert f.base_load_share == pytest.approx(1 / 1.75)
    assert f.n_complete_days == 2 and f.coverage == 1.0 and f.member == "M01"


def test_dst_day_counts_92_quarter_hours_as_complete() -> None:
    local = pd.date_range("2024-03-31", "2024-04-01", freq="15min", tz="Europe/Brussels", inclusive="left")
    assert len(local) == 92
    e = pd.Series(0.25, index=local.tz_convert("UTC"))
    assert load_profile_features(e).n_complete_days == 1
    e.iloc[40] = np.nan
    f = load_profile_features(e)
    assert f.n_complete_days == 0
    assert f.coverage == pytest.approx(91 / 92)
    assert f.peak_share == pytest.approx(4 / 24)  # flat profile


def test_missing_intervals_stay_missing_and_do_not_bias_shares() -> None:
    e = _two_days()
    gaps = e.copy()
    gaps.iloc[100:110] = np.nan  # night of day 2, at 2 kW like the rest of its off-peak hours
    dropped = e.drop(e.index[120:124])  # stamps absent from the grid are missing too
    f_gaps = load_profile_features(gaps)
    assert f_gaps.n_complete_days == 1
    assert np.isnan(f_gaps.day_to_day_variability)  # one complete day: undefined, not zero
    assert f_gaps.coverage == pytest.approx(182 / 192)
    f_drop = load_profile_features(dropped)
    assert f_drop.coverage == pytest.approx(188 / 192)
    assert f_drop.evening_peak_ratio == pytest.approx(2.0)


def test_low_coverage_gives_nan_features() -> None:
    e = _two_days()
    e.iloc[:150] = np.nan
    f = load_profile_features(e, min_coverage=0.5)
    assert np.isnan(f.peak_share) and np.isnan(f.base_load_share)
    assert f.coverage == pytest.approx(42 / 192)


def test_zero_consumption_gives_nan_not_zero() -> None:
    e = _two_days() * 0.0
    f = load_profile_features(e)
    assert np.isnan(f.peak_share) and np.isnan(f.evening_peak_ratio) and np.isnan(f.base_load_share)


def test_bad_input_is_rejected_with_member_and_timestamp() -> None:
    e = _two_days()
    neg = e.copy()
    neg.iloc[5] = -0.1
    with pytest.raises(ProfileDataError, match=r"member 'M9'.*negative offtake.*2024-03-05T00:15:00"):
        load_profile_features(neg, member="M9")
    with pytest.raises(ProfileDataError, match="timezone-aware"):
        load_profile_features(e.tz_localize(None), member="M9")
    with pytest.raises(ProfileDataError, match="duplicate timestamp"):
        load_profile_features(pd.concat([e.iloc[:3], e.iloc[2:5]]), member="M9")
    with pytest.raises(ProfileDataError, match="sorted"):
        load_profile_features(e.iloc[::-1], member="M9")
    with pytest.raises(ValueError, match="peak_hours"):
        load_profile_features(e, peak_hours=(21, 17))


def test_assets_and_covariate_frame() -> None:
    a = FlexibleAssets(electric_vehicle=True, heat_pump=True, pv=True)
    assert a.controllable == ("electric_vehicle", "heat_pump")
    assert a.n_flexible == 2
    assert a.flags() == {
        "electric_vehicle": 1, "heat_pump": 1, "home_battery": 0, "electric_water_heater": 0, "pv": 1
    }  # fmt: skip
    f1 = load_profile_features(_two_days(), member="A")
    f2 = load_profile_features(_two_days() * 3, member="B")
    frame = covariate_frame([f1, f2], {"A": a})
    assert list(frame.columns) == list(COVARIATE_COLUMNS)
    assert frame.loc["A", "n_flexible_assets"] == 2 and frame.loc["A", "has_pv"] == 1
    assert frame["n_flexible_assets"].isna().tolist() == [False, True]  # unknown assets stay unknown
    with pytest.raises(ValueError, match="appears twice"):
        covariate_frame([f1, f1])


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(0.0, 2.0), min_size=192, max_size=192),
    st.floats(0.1, 50.0),
)
def test_features_are_scale_invariant_and_bounded(values: list[float], factor: float) -> None:
    idx = pd.date_range("2024-06-10", periods=192, freq="15min", tz="UTC")
    e = pd.Series(values, index=idx)
    f = load_profile_features(e)
    g = load_profile_features(e * factor)
    for name in ("peak_share", "evening_peak_ratio", "day_to_day_variability", "base_load_share"):
        a, b = getattr(f, name), getattr(g, name)
        assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-12)
    if not np.isnan(f.peak_share):
        assert 0.0 <= f.peak_share <= 1.0 + 1e-12
        assert 0.0 <= f.base_load_share <= 1.0
