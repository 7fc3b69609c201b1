"""Energy balance and KPIs: a hand-computed hour, local days across DST, missing data, bad input,
and the numpy period aggregation against the reference pandas resampling."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.energy.balance import COMMUNITY_COLUMNS, Balance, _balance, balance, interval_hours, ratio
from bright.energy.sharing import EnergyInputError, MeterReadings, SharingResult, share_pro_rata

# One hour, P produces, A and B consume, pro-rata sharing (kWh per quarter-hour):
#   t   P inj  A off  B off   shared A  shared B
#   0   1.0    0.4    0.4     0.4       0.4       (0.2 back to the grid)
#   1   0.2    0.4    0.4     0.1       0.1
#   2   0.0    0.2    0.6     0         0
#   3   0.5    0.0    1.0     0         0.5
# offtake A 1.0, B 2.4 (community 3.4); injection 1.7; shared 0.8 + 0.2 + 0 + 0.5 = 1.5.
HOUR = pd.date_range("2024-06-01 10:00", periods=4, freq="15min", tz="UTC")
READINGS = MeterReadings(
    ("P", "A", "B"),
    np.array([[0.0, 0.4, 0.4], [0.0, 0.4, 0.4], [0.0, 0.2, 0.6], [0.0, 0.0, 1.0]]),
    np.array([[1.0, 0, 0], [0.2, 0, 0], [0.0, 0, 0], [0.5, 0, 0]]),
    HOUR,
)


def test_hourly_community_kpis() -> None:
    result = share_pro_rata(READINGS)
    hourly = balance(result, freq="h", emission_factor_kg_per_kwh=0.2)
    row = hourly.community.iloc[0]
    assert list(hourly.community.columns) == list(COMMUNITY_COLUMNS)
    assert row["offtake_kwh"] == pytest.approx(3.4)
    assert row["injection_kwh"] == pytest.approx(1.7)
    assert row["shared_kwh"] == pytest.approx(1.5)
    assert row["residual_offtake_kwh"] == pytest.approx(1.9)
    assert row["residual_injection_kwh"] == pytest.approx(0.2)
    assert row["self_consumption_rate"] == pytest.approx(1.5 / 1.7)
    assert row["self_sufficiency"] == pytest.approx(1.5 / 3.4)
    # coincident offtake 0.8, 0.8, 0.8, 1.0 kWh per 15 min -> 4.0 kW peak
    assert row["peak_offtake_kw"] == pytest.approx(4.0)
    # net (offtake - injection): -0.2, 0.6, 0.8, 0.5 -> 0.8 kWh -> 3.2 kW
    assert row["peak_net_offtake_kw"] == pytest.approx(3.2)
    assert row["co2_avoided_kg"] == pytest.approx(1.5 * 0.2)
    assert row["coverage"] == 1.0


def test_hourly_member_kpis() -> None:
    hourly = balance(share_pro_rata(READINGS), freq="h", emission_factor_kg_per_kwh=0.2)
    a, b, p = hourly.member("A").iloc[0], hourly.member("B").iloc[0], hourly.member("P").iloc[0]
    assert a["shared_offtake_kwh"] == pytest.approx(0.5)
    assert a["self_sufficiency"] == pytest.approx(0.5)
    assert a["peak_offtake_kw"] == pytest.approx(1.6)
    assert b["shared_offtake_kwh"] == pytest.approx(1.0)
    assert b["self_sufficiency"] == pytest.approx(1.0 / 2.4)
    assert b["residual_offtake_kwh"] == pytest.approx(1.4)
    assert b["co2_avoided_kg"] == pytest.approx(0.2)
    assert p["self_consumption_rate"] == pytest.approx(1.5 / 1.7)
    assert p["residual_injection_kwh"] == pytest.approx(0.2)
    assert np.isnan(p["self_sufficiency"])  # no offtake: undefined, not 0
    assert hourly.self_sufficiency().loc[:, "A"].iloc[0] == pytest.approx(0.5)
    assert hourly.self_consumption_rate().loc[:, "P"].iloc[0] == pytest.approx(1.5 / 1.7)


def test_native_resolution_and_emission_factor_series() -> None:
    factor = pd.Series([0.1, 0.2, 0.3, 0.4], index=HOUR)
    native = balance(share_pro_rata(READINGS), emission_factor_kg_per_kwh=factor)
    assert native.freq == "native"
    # 0.8 x 0.1 + 0.2 x 0.2 + 0 x 0.3 + 0.5 x 0.4 = 0.32 kg
    assert native.community["co2_avoided_kg"].sum() == pytest.approx(0.32)
    assert native.peak_offtake_kw["B"].tolist() == pytest.approx([1.6, 1.6, 2.4, 4.0])
    assert native.community.index[0] == HOUR[0]


def _dst_readings() -> MeterReadings:
    # local 2024-03-31 (spring forward) has 92 quarter-hours: 23:00 UTC on the 30th .. 22:00 UTC
    index = pd.date_range("2024-03-30 23:00", "2024-04-01 21:45", freq="15min", tz="UTC")
    n = len(index)
    offtake = np.full((n, 2), 0.1)
    injection = np.zeros((n, 2))
    injection[:, 0] = 0.05
    offtake[:, 0] = 0.0
    return MeterReadings(("P", "A"), offtake, injection, index)


def test_local_days_across_dst() -> None:
    daily = balance(share_pro_rata(_dst_readings()), freq="D", tz="Europe/Brussels")
    community = daily.community
    assert len(community) == 2
    assert str(community.index[0]) == "2024-03-31 00:00:00+01:00"
    assert str(community.index[1]) == "2024-04-01 00:00:00+02:00"
    # 92 quarter-hours x 0.1 kWh on the short day, 96 on the next
    assert community["offtake_kwh"].tolist() == pytest.approx([9.2, 9.6])
    assert community["shared_kwh"].tolist() == pytest.approx([92 * 0.05, 96 * 0.05])
    assert daily.offtake_kwh["A"].tolist() == pytest.approx([9.2, 9.6])
    # UTC days cut elsewhere: 2024-03-30 has one hour, 03-31 all 96, 04-01 the rest
    utc = balance(share_pro_rata(_dst_readings()), freq="D")
    assert utc.community["offtake_kwh"].tolist() == pytest.approx([0.4, 9.6, 8.8])


def test_missing_interval_makes_its_period_nan() -> None:
    readings = _dst_readings()
    offtake = readings.offtake_kwh.copy()
    offtake[10, 1] = np.nan  # on the local 31st
    broken = MeterReadings(readings.member_ids, offtake, readings.injection_kwh, readings.index)
    daily = balance(share_pro_rata(broken), freq="D", tz="Europe/Brussels")
    assert np.isnan(daily.community["offtake_kwh"].iloc[0])
    assert np.isnan(daily.community["shared_kwh"].iloc[0])
    assert daily.community["coverage"].iloc[0] == pytest.approx(91 / 92)
    assert daily.community["offtake_kwh"].iloc[1] == pytest.approx(9.6)
    # injection of P is complete that day, the sharing is not
    assert daily.injection_kwh["P"].iloc[0] == pytest.approx(92 * 0.05)
    assert np.isnan(daily.shared_injection_kwh["P"].iloc[0])


def test_monthly_and_yearly_labels() -> None:
    result = share_pro_rata(_dst_readings())
    monthly = balance(result, freq="MS", tz="Europe/Brussels")
    assert [str(i) for i in monthly.community.index] == [
        "2024-03-01 00:00:00+01:00",
        "2024-04-01 00:00:00+02:00",
    ]
    yearly = balance(result, freq="YS", tz="Europe/Brussels")
    assert yearly.community["offtake_kwh"].iloc[0] == pytest.approx(18.8)


def test_bad_input() -> None:
    result = share_pro_rata(READINGS)
    with pytest.raises(EnergyInputError, match="unknown period alias 'fortnight'"):
        balance(result, freq="fortnight")
    with pytest.raises(EnergyInputError, match="emission factor series does not cover"):
        balance(result, emission_factor_kg_per_kwh=pd.Series([0.1, 0.2], index=HOUR[:2]))
    with pytest.raises(EnergyInputError, match=r"emission factor has shape \(3,\)"):
        balance(result, emission_factor_kg_per_kwh=np.ones(3))
    no_index = MeterReadings(READINGS.member_ids, READINGS.offtake_kwh, READINGS.injection_kwh)
    with pytest.raises(EnergyInputError, match="needs readings with a time index"):
        balance(share_pro_rata(no_index), freq="D")
    assert balance(share_pro_rata(no_index)).community["shared_kwh"].sum() == pytest.approx(1.5)
    with pytest.raises(EnergyInputError, match="member 'Z' is not in this balance"):
        balance(result).member("Z")
    with pytest.raises(EnergyInputError, match="not regular"):
        interval_hours(HOUR[[0, 1, 3]])
    with pytest.raises(EnergyInputError, match="interval length must be > 0"):
        balance(result, interval_length_h=0.0)


def test_interval_hours() -> None:
    assert interval_hours(HOUR) == 0.25
    assert interval_hours(pd.date_range("2024", periods=3, freq="h", tz="UTC")) == 1.0
    assert interval_hours(None) == 0.25


def test_ratio_is_nan_on_zero_denominator() -> None:
    out = ratio(np.array([1.0, 0.0, 2.0]), np.array([2.0, 0.0, np.nan]))
    assert out[0] == 0.5 and np.isnan(out[1]) and np.isnan(out[2])


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 5),
    days=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_aggregation_preserves_totals(n: int, days: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    index = pd.date_range("2024-10-26 22:00", periods=96 * days, freq="15min", tz="UTC")  # DST end
    offtake = np.round(rng.gamma(1.0, 0.2, (len(index), n)), 3)
    injection = np.where(
        rng.random((len(index), n)) < 0.3, np.round(rng.gamma(1.0, 0.4, (len(index), n)), 3), 0
    )
    result = share_pro_rata(MeterReadings(tuple(f"m{i}" for i in range(n)), offtake, injection, index))
    daily = balance(result, freq="D", tz="Europe/Brussels")
    assert daily.community["offtake_kwh"].sum() == pytest.approx(offtake.sum())
    assert daily.community["shared_kwh"].sum() == pytest.approx(np.sum(result.shared_offtake_kwh))
    assert daily.shared_injection_kwh.to_numpy().sum() == pytest.approx(daily.community["shared_kwh"].sum())
    for column in ("self_consumption_rate", "self_sufficiency"):
        rates = daily.community[column].dropna()
        assert ((rates >= 0) & (rates <= 1 + 1e-12)).all()
    np.testing.assert_allclose(
        daily.residual_offtake_kwh.to_numpy() + daily.shared_offtake_kwh.to_numpy(),
        daily.offtake_kwh.to_numpy(),
    )


FRAMES = (
    "offtake_kwh",
    "injection_kwh",
    "shared_offtake_kwh",
    "shared_injection_kwh",
    "residual_offtake_kwh",
    "residual_injection_kwh",
    "peak_offtake_kw",
    "co2_avoided_kg",
    "community",
)


def _by_resampling(result: SharingResult, **kwargs: Any) -> Balance:
    args = {"tz": "UTC", "emission_factor_kg_per_kwh": 0.0, "interval_length_h": None, **kwargs}
    return _balance(result, by_resampling=True, **args)


def test_period_without_interval() -> None:
    # two days of readings four days apart: the days between have no interval (sum 0, peak and
    # coverage undefined), as pandas resampling has it
    index = HOUR[:1].append(pd.DatetimeIndex([HOUR[0] + pd.Timedelta(days=4)]))
    readings = MeterReadings(
        ("A", "B"), np.array([[0.2, 0.0], [0.4, 0.1]]), np.array([[0.0, 0.3], [0, 0]]), index
    )
    result = share_pro_rata(readings)
    daily = balance(result, freq="D", interval_length_h=0.25)
    assert len(daily.community) == 5
    assert daily.community["offtake_kwh"].tolist() == pytest.approx([0.2, 0.0, 0.0, 0.0, 0.5])
    assert np.isnan(daily.community["peak_offtake_kw"].iloc[2])
    assert np.isnan(daily.community["coverage"].iloc[2])
    assert np.isnan(daily.peak_offtake_kw["A"].iloc[1])
    for name in FRAMES:
        pd.testing.assert_frame_equal(
            getattr(daily, name), getattr(_by_resampling(result, freq="D", interval_length_h=0.25), name)
        )


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 6),
    intervals=st.integers(1, 700),
    step=st.sampled_from(["15min", "1h"]),
    start=st.datetimes(min_value=datetime(2023, 1, 1), max_value=datetime(2025, 12, 31)),
    freq=st.sampled_from(["h", "D", "W", "MS", "QS", "YS"]),
    tz=st.sampled_from(["UTC", "Europe/Brussels", "America/New_York"]),
    missing=st.sampled_from([0.0, 0.01, 0.3]),
    factor=st.sampled_from(["none", "constant", "series"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_fast_path_equals_resampling(
    n: int,
    intervals: int,
    step: str,
    start: datetime,
    freq: str,
    tz: str,
    missing: float,
    factor: str,
    seed: int,
) -> None:
    """The numpy aggregation gives the reference (one pandas resample per frame) figures: the same
    labels and missing periods, the same values to the last bit when nothing is missing (pandas then
    reduces in the same order), within rounding otherwise (pandas then uses compensated sums)."""
    rng = np.random.default_rng(seed)
    index = pd.date_range(pd.Timestamp(start).floor(step), periods=intervals, freq=step, tz="UTC")
    offtake = np.round(rng.gamma(1.0, 0.2, (intervals, n)), 3)
    injection = np.where(
        rng.random((intervals, n)) < 0.4, np.round(rng.gamma(1.0, 0.4, (intervals, n)), 3), 0
    )
    offtake[rng.random((intervals, n)) < missing] = np.nan
    readings = MeterReadings(tuple(f"m{i}" for i in range(n)), offtake, injection, index)
    result = share_pro_rata(readings)
    ef: float | np.ndarray = {
        "none": np.nan,
        "constant": 0.16,
        "series": np.round(rng.uniform(0.05, 0.3, intervals), 4),
    }[factor]
    fast = balance(result, freq=freq, tz=tz, emission_factor_kg_per_kwh=ef)
    reference = _by_resampling(result, freq=freq, tz=tz, emission_factor_kg_per_kwh=ef)
    exact = not np.isnan(offtake).any() and factor != "none"
    assert fast.freq == reference.freq == freq
    for name in FRAMES:
        got, want = getattr(fast, name), getattr(reference, name)
        if exact:
            pd.testing.assert_frame_equal(got, want, check_exact=True)
        else:
            pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12, atol=1e-12)
