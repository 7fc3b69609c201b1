"""Pure parts of the series store: periods, bucket edges, the numpy reductions and the chunk codec."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.twin.series import (
    Period,
    SeriesError,
    _bucket_edges,
    _bucket_reduce,
    _decode,
    _encode,
    _merge,
    _span_for,
    kind_for_unit,
    parse_period,
)

US = 1_000_000
H = 3600 * US


def us(s: str) -> int:
    return int((pd.Timestamp(s, tz="UTC") - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1))


@pytest.mark.parametrize(
    ("text", "period"),
    [
        ("PT15M", Period(micros=15 * 60 * US)),
        ("PT1H", Period(micros=H)),
        ("PT0.5S", Period(micros=US // 2)),
        ("P1D", Period(days=1)),
        ("P1W", Period(days=7)),
        ("P1DT12H", Period(days=1, micros=12 * H)),
        ("P1M", Period(months=1)),
        ("P1Y2M", Period(months=14)),
        ("PT0S", Period()),
        ("15min", Period(micros=15 * 60 * US)),
        ("1h", Period(micros=H)),
        ("1D", Period(days=1)),
        ("1W", Period(days=7)),
        ("1MS", Period(months=1)),
        ("1YS", Period(months=12)),
        (pd.Timedelta("90min"), Period(micros=90 * 60 * US)),
    ],
)
def test_parse_period(text, period: Period) -> None:
    assert parse_period(text) == period


@pytest.mark.parametrize("bad", ["P", "PT", "P1DT", "P1.5D", "hourly", "", "-1h", 3600, pd.Timedelta("-1h")])
def test_bad_periods_raise(bad) -> None:
    with pytest.raises(SeriesError):
        parse_period(bad)


def test_kind_for_unit() -> None:
    assert [kind_for_unit(u) for u in ("KWH", "kwh", "MWH", "WHR", "KWT", "EUR", None)] == [
        "energy",
        "energy",
        "energy",
        "energy",
        "power",
        "power",
        "power",
    ]


def test_bucket_edges_from_an_origin_and_on_the_grid() -> None:
    # NGSI-LD: buckets start at the query start (12:03) and cover [start, end).
    e = _bucket_edges(
        Period(micros=H),
        us("2020-08-01 12:03"),
        us("2020-08-01 14:10"),
        origin=us("2020-08-01 12:03"),
        tz=None,
    )
    assert [pd.Timestamp(x, unit="us") for x in e] == [
        pd.Timestamp(f"2020-08-01 {h}") for h in ("12:03", "13:03", "14:03", "15:03")
    ]
    # Grid: hours on the hour, UTC days at midnight, weeks on Monday, months on the 1st.
    assert _bucket_edges(
        Period(micros=H), us("2024-01-01 00:10"), us("2024-01-01 01:00"), origin=None, tz=None
    ).tolist() == [us("2024-01-01 00:00"), us("2024-01-01 01:00")]
    week = _bucket_edges(Period(days=7), us("2024-01-04 10:00"), us("2024-01-09"), origin=None, tz=None)
    assert week.tolist() == [us("2024-01-01"), us("2024-01-08"), us("2024-01-15")]  # 2024-01-01 is a Monday
    months = _bucket_edges(Period(months=1), us("2024-01-15"), us("2024-03-02"), origin=None, tz=None)
    assert months.tolist() == [us("2024-01-01"), us("2024-02-01"), us("2024-03-01"), us("2024-04-01")]
    # Local days in Brussels: 31 March 2024 lasts 23 h, 27 October 25 h (edges in UTC).
    spring = _bucket_edges(
        Period(days=1), us("2024-03-30 23:00"), us("2024-04-01 22:00"), origin=None, tz="Europe/Brussels"
    )
    assert np.diff(spring).tolist() == [23 * H, 24 * H]
    autumn = _bucket_edges(
        Period(days=1), us("2024-10-26 22:00"), us("2024-10-27 23:00"), origin=None, tz="Europe/Brussels"
    )
    assert np.diff(autumn).tolist() == [25 * H]
    with pytest.raises(SeriesError, match="buckets"):
        _bucket_edges(Period(micros=1), 0, 10**15, origin=None, tz=None)


def test_bucket_reduce_worked_example() -> None:
    # Two columns; buckets [0, 4), [4, 8), [8, 12): the middle one is empty, NaN is skipped.
    t = np.array([0, 1, 2, 3, 8, 9], dtype=np.int64)
    v = np.array([[1.0, 2.0], [3.0, np.nan], [3.0, 2.0], [5.0, 2.0], [np.nan, np.nan], [7.0, 4.0]])
    edges = np.array([0, 4, 8, 12], dtype=np.int64)
    r = _bucket_reduce(
        t, v, edges, ["count", "sum", "mean", "min", "max", "sumsq", "stddev", "distinct_count"]
    )
    assert r["count"].tolist() == [[4, 3], [0, 0], [1, 1]]
    np.testing.assert_array_equal(
        r["sum"], [[12.0, 6.0], [np.nan, np.nan], [7.0, 4.0]]
    )  # empty -> NaN, not 0
    np.testing.assert_array_equal(r["mean"], [[3.0, 2.0], [np.nan, np.nan], [7.0, 4.0]])
    np.testing.assert_array_equal(r["min"], [[1.0, 2.0], [np.nan, np.nan], [7.0, 4.0]])
    np.testing.assert_array_equal(r["max"], [[5.0, 2.0], [np.nan, np.nan], [7.0, 4.0]])
    np.testing.assert_array_equal(r["sumsq"], [[44.0, 12.0], [np.nan, np.nan], [49.0, 16.0]])
    # Sample stddev of 1, 3, 3, 5: mean 3, squared deviations 4 + 0 + 0 + 4 = 8, / 3 -> sqrt(8/3).
    np.testing.assert_allclose(r["stddev"][0], [np.sqrt(8 / 3), 0.0])
    assert np.isnan(r["stddev"][1:]).all()  # fewer than two values
    assert r["distinct_count"].tolist() == [[3, 1], [0, 0], [1, 1]]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 10_000), st.one_of(st.floats(-1e3, 1e3), st.just(np.nan))),
        min_size=1,
        max_size=200,
    ),
    st.integers(1, 3_000),
)
def test_bucket_reduce_equals_pandas(points, width: int) -> None:
    df = pd.DataFrame(points, columns=["t", "v"]).drop_duplicates("t", keep="last").sort_values("t")
    t = df["t"].to_numpy(dtype=np.int64)
    edges = np.arange(0, 10_001 + width, width, dtype=np.int64)
    r = _bucket_reduce(t, df[["v"]].to_numpy(), edges, ["count", "sum", "min", "max", "mean"])
    g = df.groupby(np.searchsorted(edges, t, side="right") - 1)["v"]
    ref = pd.DataFrame(
        {"count": g.count(), "sum": g.sum(min_count=1), "min": g.min(), "max": g.max(), "mean": g.mean()}
    ).reindex(range(len(edges) - 1))
    ref["count"] = ref["count"].fillna(0)
    for m in ("count", "sum", "min", "max", "mean"):
        np.testing.assert_allclose(r[m][:, 0], ref[m].to_numpy(), rtol=1e-9, atol=1e-9, err_msg=m)


def test_chunk_span_follows_the_series_resolution() -> None:
    def grid(step_s: int) -> np.ndarray:
        return np.arange(10, dtype=np.int64) * step_s * US

    # Largest span holding <= 4,096 instants: 15 min -> 28 d (2,688), 1 h -> 28 d (672), 1 d -> 364 d,
    # 1 min -> 1 d (1,440), 1 s -> 1 h (3,600).
    assert [_span_for(grid(s)) // 86_400 for s in (900, 3600, 86_400)] == [28, 28, 364]
    assert _span_for(grid(60)) == 86_400 and _span_for(grid(1)) == 3_600
    assert _span_for(np.array([5], dtype=np.int64)) == 28 * 86_400


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-(10**12), 10**12), min_size=1, max_size=50, unique=True),
    st.booleans(),
)
def test_chunk_codec_round_trip(times, regular: bool) -> None:
    t = (
        np.arange(len(times), dtype=np.int64) * 900 * US + 10**12
        if regular
        else np.sort(np.array(times, np.int64))
    )
    v = np.linspace(-1, 1, t.size)
    v[::3] = np.nan
    row = _encode(t, v, now=0)
    assert (row["times"] == b"") == (regular or t.size == 1 or bool((np.diff(t) == np.diff(t)[0]).all()))
    t2, v2 = _decode(row["t_first"], row["step_us"], row["n"], row["times"], row["vals"])
    np.testing.assert_array_equal(t2, t)
    np.testing.assert_array_equal(v2, v)
    valid = v[~np.isnan(v)]
    assert row["n_valid"] == valid.size
    if valid.size:
        assert row["v_sum"] == pytest.approx(valid.sum()) and row["v_min"] == valid.min()


def test_merge_new_values_win() -> None:
    t, v = _merge(
        np.array([1, 3, 5], np.int64),
        np.array([1.0, 3.0, 5.0]),
        np.array([0, 3, 6], np.int64),
        np.array([0.5, 30.0, 60.0]),
    )
    assert t.tolist() == [0, 1, 3, 5, 6] and v.tolist() == [0.5, 1.0, 30.0, 5.0, 60.0]
