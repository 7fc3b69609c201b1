"""The chunked time-series store on SQLite and PostgreSQL: writes, reads, aggregates, deletes."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from bright.twin import series
from bright.twin.db import make_engine
from bright.twin.series import (
    SeriesError,
    SeriesStore,
    chunks_table,
    instance_id,
    instance_time,
)

OFFTAKE = "https://w3id.org/bright/ns#offtakeKwh"
POWER = "https://w3id.org/bright/ns#powerKw"
M1, M2, M3 = "urn:ngsi-ld:Meter:m1", "urn:ngsi-ld:Meter:m2", "urn:ngsi-ld:Meter:m3"


@pytest.fixture(scope="module")
def postgres_store(pg_module_url: str) -> Iterator[SeriesStore]:
    engine = make_engine(pg_module_url)
    try:
        yield SeriesStore(engine)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[SeriesStore]:
    """An empty store on each backend: a new SQLite file, or the module's PostgreSQL database emptied."""
    if request.param == "postgresql":
        pg: SeriesStore = request.getfixturevalue("postgres_store")
        with pg.engine.begin() as conn:
            conn.execute(text("TRUNCATE series_chunks, series RESTART IDENTITY"))
        yield pg
        return
    engine = make_engine(f"sqlite:///{tmp_path / 'twin.db'}")
    try:
        yield SeriesStore(engine)
    finally:
        engine.dispose()


def qh(start: str, n: int) -> pd.DatetimeIndex:
    """``n`` quarter-hours from ``start`` (UTC)."""
    return pd.date_range(start, periods=n, freq="15min", tz="UTC")


def ts(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz="UTC")


# --- round trips ---------------------------------------------------------------------------------
def test_round_trip_wide_frame(store: SeriesStore) -> None:
    idx = qh("2024-01-01", 8)
    frame = pd.DataFrame({M1: np.arange(8) * 0.1, M2: np.arange(8) * 0.2}, index=idx)
    res = store.write(frame, attribute=OFFTAKE, unit_code="KWH")
    assert (res.values, res.series, res.chunks_inserted) == (16, 2, 2)

    got = store.read([M2, M1, M3], OFFTAKE)
    assert list(got.columns) == [M2, M1, M3]
    assert str(got.index.tz) == "UTC" and got.index.name == "time"
    assert (got.index == idx).all()
    np.testing.assert_array_equal(got[M1].to_numpy(), frame[M1].to_numpy())
    np.testing.assert_array_equal(got[M2].to_numpy(), frame[M2].to_numpy())
    assert got[M3].isna().all()  # no series: a NaN column, not zeros
    assert got.attrs["unit_codes"] == {M2: "KWH", M1: "KWH", M3: None}
    assert got.attrs["kinds"][M1] == "energy"

    # [start, end) is half-open: 00:30 included, 01:00 excluded.
    part = store.read(M1, OFFTAKE, "2024-01-01T00:30:00Z", ts("2024-01-01 01:00"))
    assert list(part[M1]) == [0.2, 0.30000000000000004]


def test_any_time_zone_is_stored_as_utc(store: SeriesStore) -> None:
    # 2024-07-01 02:00 in Brussels (CEST, UTC+2) is 00:00 UTC.
    idx = pd.date_range("2024-07-01 02:00", periods=4, freq="15min", tz="Europe/Brussels")
    store.write(pd.Series([1.0, 2.0, 3.0, 4.0], index=idx, name=M1), attribute=OFFTAKE)
    got = store.read(M1, OFFTAKE)
    assert got.index[0] == ts("2024-07-01 00:00")


def test_long_frame_with_offsets_datasets_and_attributes(store: SeriesStore) -> None:
    long = pd.DataFrame(
        {
            "entity_id": [M1, M1, M1, M2],
            "attribute": [OFFTAKE, OFFTAKE, POWER, OFFTAKE],
            "dataset_id": [None, "urn:ngsi-ld:Dataset:forecast", None, None],
            "time": [
                "2024-03-31T03:00:00+02:00",
                "2024-03-31T01:00:00Z",
                "2024-03-31T01:00:00Z",
                "2024-03-31T01:00Z",
            ],
            "value": [1.5, 9.0, 4.0, 2.5],
        }
    )
    store.write(long)
    assert store.read(M1, OFFTAKE)[M1].to_dict() == {ts("2024-03-31 01:00"): 1.5}
    assert store.read(M1, OFFTAKE, dataset_id="urn:ngsi-ld:Dataset:forecast")[M1].tolist() == [9.0]
    assert store.read(M1, POWER)[M1].tolist() == [4.0]
    cat = {(s.entity_id, s.attribute, s.dataset_id) for s in store.series()}
    assert cat == {
        (M1, OFFTAKE, None),
        (M1, OFFTAKE, "urn:ngsi-ld:Dataset:forecast"),
        (M1, POWER, None),
        (M2, OFFTAKE, None),
    }


def test_irregular_sub_second_instants_round_trip(store: SeriesStore) -> None:
    idx = pd.DatetimeIndex(
        ["2024-01-01 00:00:00.000001", "2024-01-01 00:00:00.5", "2024-01-01 00:00:07", "2024-01-03 12:00"],
        tz="UTC",
    )
    store.write(pd.Series([1.0, -2.0, 3.25, 0.0], index=idx, name=M1), attribute=POWER)
    got = store.read(M1, POWER)
    assert (got.index == idx).all()
    assert got[M1].tolist() == [1.0, -2.0, 3.25, 0.0]


# --- replace, out-of-order, idempotence, gaps -----------------------------------------------------
def test_same_instant_twice_replaces(store: SeriesStore) -> None:
    t = qh("2024-05-01", 1)
    store.write(pd.Series([1.0], index=t, name=M1), attribute=OFFTAKE)
    store.write(pd.Series([2.0], index=t, name=M1), attribute=OFFTAKE)
    assert store.read(M1, OFFTAKE)[M1].tolist() == [2.0]
    assert store.series()[0].count == 1
    # Within one write the last row of an instant wins.
    dup = pd.DatetimeIndex([t[0], t[0] + pd.Timedelta("15min"), t[0]])
    store.write(pd.Series([5.0, 6.0, 7.0], index=dup, name=M1), attribute=OFFTAKE)
    assert store.read(M1, OFFTAKE)[M1].tolist() == [7.0, 6.0]


def test_out_of_order_writes_are_merged_in_time_order(store: SeriesStore) -> None:
    idx = qh("2024-01-20", 96 * 4)  # four days across the 2024-01-22 00:00 UTC chunk boundary
    values = np.arange(len(idx), dtype=float)
    s = pd.Series(values, index=idx, name=M1)
    store.write(s.iloc[200:], attribute=OFFTAKE)  # the later part first
    store.write(s.iloc[:100][::-1], attribute=OFFTAKE)  # then the start, in reverse order
    store.write(s.iloc[100:200].sample(frac=1.0, random_state=1), attribute=OFFTAKE)  # the middle, shuffled
    got = store.read(M1, OFFTAKE)
    assert (got.index == idx).all()
    np.testing.assert_array_equal(got[M1].to_numpy(), values)


def test_writes_span_chunks_and_read_ranges_cut_inside_chunks(store: SeriesStore) -> None:
    # 15-min series -> 28-day chunks from Monday 1970-01-05: 1970-01-05 + 704 x 28 days = 2023-12-25,
    # then 2024-01-22.
    idx = qh("2024-01-20", 96 * 20)
    s = pd.Series(np.arange(len(idx), dtype=float), index=idx, name=M1)
    store.write(s, attribute=OFFTAKE)
    assert store.series()[0].chunk_span == pd.Timedelta(days=28)
    with store.engine.connect() as conn:
        starts = (
            conn.execute(select(chunks_table.c.chunk_start).order_by(chunks_table.c.chunk_start))
            .scalars()
            .all()
        )
    assert [pd.Timestamp(x, unit="us", tz="UTC") for x in starts] == [ts("2023-12-25"), ts("2024-01-22")]
    got = store.read(M1, OFFTAKE, "2024-01-21T23:00Z", "2024-01-22T01:00Z")[M1]
    # 2024-01-21 23:00 is quarter-hour 1 day x 96 + 23 x 4 = 188 after 2024-01-20.
    assert got.tolist() == [float(v) for v in range(188, 196)]


def test_identical_rewrite_changes_nothing(store: SeriesStore) -> None:
    frame = pd.DataFrame({M1: [0.1, np.nan, 0.3]}, index=qh("2024-01-01", 3))
    first = store.write(frame, attribute=OFFTAKE)
    with store.engine.connect() as conn:
        before = conn.execute(select(chunks_table.c.modified_us, chunks_table.c.vals)).all()
    again = store.write(frame, attribute=OFFTAKE)
    assert first.chunks_inserted == 1
    assert (again.chunks_inserted, again.chunks_updated) == (0, 0)
    with store.engine.connect() as conn:
        assert conn.execute(select(chunks_table.c.modified_us, chunks_table.c.vals)).all() == before
    got = store.read(M1, OFFTAKE)[M1]
    assert got.iloc[0] == 0.1 and np.isnan(got.iloc[1]) and got.iloc[2] == 0.3


def test_gaps_and_missing_values_stay_nan(store: SeriesStore) -> None:
    # 00:00-00:45 and 02:00-02:45 stored; 01:00-01:45 never written; 02:15 explicitly missing.
    a = pd.Series([0.1, 0.2, 0.3, 0.4], index=qh("2024-01-01 00:00", 4), name=M1)
    b = pd.Series([1.0, np.nan, 1.0, 1.0], index=qh("2024-01-01 02:00", 4), name=M1)
    store.write(a, attribute=OFFTAKE, unit_code="KWH")
    store.write(b, attribute=OFFTAKE)
    quarter = store.read(M1, OFFTAKE, ts("2024-01-01"), ts("2024-01-01 03:00"), resolution="15min")[M1]
    assert len(quarter) == 12
    assert quarter.iloc[4:8].isna().all()  # the gap: NaN, never 0
    assert np.isnan(quarter.iloc[9])  # the explicit missing value
    hourly = store.read(M1, OFFTAKE, ts("2024-01-01"), ts("2024-01-01 03:00"), resolution="1h")[M1]
    # 0.1 + 0.2 + 0.3 + 0.4 = 1.0; no value in hour 1 -> NaN; hour 2 sums its 3 valid values = 3.0.
    assert hourly.iloc[0] == pytest.approx(1.0) and np.isnan(hourly.iloc[1]) and hourly.iloc[2] == 3.0
    # Requiring complete hours (4 quarter-hours) turns the incomplete hour 2 into NaN too.
    strict = store.read(M1, OFFTAKE, ts("2024-01-01"), ts("2024-01-01 03:00"), resolution="1h", min_count=4)[
        M1
    ]
    assert strict.iloc[0] == pytest.approx(1.0) and strict.iloc[1:].isna().all()
    counts = store.read(
        M1, OFFTAKE, ts("2024-01-01"), ts("2024-01-01 03:00"), resolution="PT1H", how="count"
    )[M1]
    assert counts.tolist() == [4.0, 0.0, 3.0]
    # The stored explicit NaN is skipped by instances, kept on request.
    assert len(list(store.instances(M1, OFFTAKE))) == 7
    assert len(list(store.instances(M1, OFFTAKE, include_missing=True))) == 8


def test_skip_missing_does_not_overwrite(store: SeriesStore) -> None:
    idx = qh("2024-01-01", 2)
    store.write(pd.DataFrame({M1: [1.0, 2.0], M2: [3.0, 4.0]}, index=idx), attribute=OFFTAKE)
    # M2's second value is NaN because M2 stops earlier: skip it instead of erasing 4.0.
    store.write(
        pd.DataFrame({M1: [5.0, 6.0], M2: [7.0, np.nan]}, index=idx), attribute=OFFTAKE, skip_missing=True
    )
    got = store.read([M1, M2], OFFTAKE)
    assert got[M1].tolist() == [5.0, 6.0] and got[M2].tolist() == [7.0, 4.0]
    # Without skip_missing a NaN is an explicitly missing value that replaces.
    store.write(pd.DataFrame({M2: [np.nan]}, index=idx[1:]), attribute=OFFTAKE)
    assert np.isnan(store.read(M2, OFFTAKE)[M2].iloc[1])


def test_entities_with_different_instants_are_aligned(store: SeriesStore) -> None:
    store.write(pd.Series([1.0, 2.0], index=qh("2024-01-01 00:00", 2), name=M1), attribute=OFFTAKE)
    store.write(pd.Series([3.0, 4.0], index=qh("2024-01-01 00:15", 2), name=M2), attribute=OFFTAKE)
    got = store.read([M1, M2], OFFTAKE)
    assert list(got.index) == list(qh("2024-01-01 00:00", 3))
    assert got[M1].tolist()[:2] == [1.0, 2.0] and np.isnan(got[M1].iloc[2])
    assert np.isnan(got[M2].iloc[0]) and got[M2].tolist()[1:] == [3.0, 4.0]


# --- resolutions ---------------------------------------------------------------------------------
def test_resolution_sums_energy_and_averages_power(store: SeriesStore) -> None:
    idx = qh("2024-01-01", 8)
    store.write(
        pd.Series([0.1, 0.2, 0.3, 0.4, 1, 1, 1, 1], index=idx, name=M1), attribute=OFFTAKE, unit_code="KWH"
    )
    store.write(pd.Series([4.0, 8, 8, 4, 2, 2, 2, 2], index=idx, name=M1), attribute=POWER, unit_code="KWT")
    energy = store.read(M1, OFFTAKE, resolution="1h")[M1]
    assert energy.tolist() == pytest.approx([1.0, 4.0])  # kWh per hour = sum of the quarter-hours
    power = store.read(M1, POWER, resolution="PT1H")[M1]
    assert power.tolist() == [6.0, 2.0]  # kW = mean of (4 + 8 + 8 + 4) / 4
    assert store.read(M1, POWER, resolution="1h", how="max")[M1].tolist() == [8.0, 2.0]
    assert store.read(M1, OFFTAKE, resolution="1h", how="mean")[M1].tolist() == pytest.approx([0.25, 1.0])
    with pytest.raises(SeriesError, match="unknown aggregation method 'median'"):
        store.read(M1, POWER, resolution="1h", how="median")
    with pytest.raises(SeriesError, match="not a duration"):
        store.read(M1, POWER, resolution="hourly")


def test_local_days_across_dst(store: SeriesStore) -> None:
    # 1 kWh per quarter-hour from 29 to 31 March 2024 (local): Brussels' 31 March has 23 hours.
    start = pd.Timestamp("2024-03-29", tz="Europe/Brussels")
    end = pd.Timestamp("2024-04-01", tz="Europe/Brussels")
    idx = pd.date_range(start, end, freq="15min", inclusive="left").tz_convert("UTC")
    store.write(pd.Series(1.0, index=idx, name=M1), attribute=OFFTAKE, unit_code="KWH")
    daily = store.read(M1, OFFTAKE, start, end, resolution="1D", tz="Europe/Brussels")[M1]
    assert daily.tolist() == [96.0, 96.0, 92.0]
    # The index stays UTC: local midnight of 31 March is 30 March 23:00 UTC.
    assert list(daily.index) == [ts("2024-03-28 23:00"), ts("2024-03-29 23:00"), ts("2024-03-30 23:00")]
    # UTC days cut differently: 29 March 00:00 UTC starts an hour after local midnight.
    utc_days = store.read(M1, OFFTAKE, start, end, resolution="P1D")[M1]
    assert utc_days.tolist() == [4.0, 96.0, 96.0, 88.0]


def test_monthly_resolution(store: SeriesStore) -> None:
    idx = pd.date_range("2024-01-01", "2024-04-01", freq="1h", tz="UTC", inclusive="left")
    store.write(pd.Series(0.5, index=idx, name=M1), attribute=OFFTAKE, unit_code="KWH")
    monthly = store.read(M1, OFFTAKE, resolution="P1M")[M1]
    # 31, 29 (leap year) and 31 days of 24 h x 0.5 kWh.
    assert monthly.tolist() == [372.0, 348.0, 372.0]
    assert store.read(M1, OFFTAKE, resolution="1MS")[M1].tolist() == [372.0, 348.0, 372.0]


# --- lastN and instances -------------------------------------------------------------------------
def test_last_n_reads_newest_chunks_first(store: SeriesStore) -> None:
    # Hourly values for 120 days -> 28-day chunks of 672 values: lastN=1000 needs two chunks or more.
    idx = pd.date_range("2024-01-01", periods=24 * 120, freq="1h", tz="UTC")
    store.write(pd.Series(np.arange(len(idx), dtype=float), index=idx, name=M1), attribute=POWER)
    last = store.history(M1, POWER, last_n=1000)
    assert len(last) == 1000 and last.iloc[-1] == len(idx) - 1 and last.iloc[0] == len(idx) - 1000
    assert last.index.is_monotonic_increasing
    three = list(store.instances(M1, POWER, end=idx[10], last_n=3))
    assert [i.value for i in three] == [7.0, 8.0, 9.0]
    assert three[0].time == idx[7]
    assert list(store.instances(M1, POWER, start=idx[-2], last_n=5)) == [
        (idx[-2], len(idx) - 2.0),
        (idx[-1], len(idx) - 1.0),
    ]
    assert store.history(M3, POWER, last_n=2).empty
    # A page of a long history: the first 5 values from idx[100], then the next page after them.
    page = store.history(M1, POWER, idx[100], limit=5)
    assert page.tolist() == [100.0, 101.0, 102.0, 103.0, 104.0]
    nxt = store.history(M1, POWER, page.index[-1] + pd.Timedelta("1us"), limit=2)
    assert nxt.tolist() == [105.0, 106.0]
    with pytest.raises(SeriesError, match="lastN"):
        store.history(M1, POWER, last_n=0)
    with pytest.raises(SeriesError, match="has no time zone"):
        store.instances(M1, POWER, start="2024-01-01")  # raised at the call, not at iteration


def test_instance_ids_are_reversible() -> None:
    t = pd.Timestamp("2024-03-31T01:15:00.000250Z")
    iid = instance_id(t)
    assert iid == "urn:ngsi-ld:attribute:instance:1711847700000250"
    assert instance_time(iid) == t
    with pytest.raises(SeriesError):
        instance_time("urn:ngsi-ld:something:else")


# --- NGSI-LD aggregation ---------------------------------------------------------------------------
def test_aggregate_the_etsi_vehicle_example(store: SeriesStore) -> None:
    speed = pd.Series(
        [120.0, 80.0, 100.0],
        index=pd.DatetimeIndex(["2020-08-01T12:03Z", "2020-08-01T12:05Z", "2020-08-01T12:07Z"]),
    )
    fuel = pd.Series(
        [67.0, 53.0, 40.0],
        index=pd.DatetimeIndex(["2020-08-01T12:03Z", "2020-08-01T13:05Z", "2020-08-01T14:07Z"]),
    )
    store.write(speed.rename("urn:v"), attribute="speed")
    store.write(fuel.rename("urn:v"), attribute="fuelLevel")
    # Without a time range the buckets start at the attribute's first instant; empty ones are left out.
    avg = store.aggregate("urn:v", "fuelLevel", period="PT1H", methods=["avg"])
    assert avg["avg"].tolist() == [67.0, 53.0, 40.0]
    assert list(avg.index) == [ts("2020-08-01 12:03"), ts("2020-08-01 13:03"), ts("2020-08-01 14:03")]
    assert avg["end"].iloc[-1] == ts("2020-08-01 15:03")
    day = store.aggregate("urn:v", "speed", period="P1D", methods="min,max")
    assert day[["min", "max"]].values.tolist() == [[80.0, 120.0]]
    assert day.index[0] == ts("2020-08-01 12:03") and day["end"].iloc[0] == ts("2020-08-02 12:03")
    every = store.aggregate(
        "urn:v",
        "speed",
        methods=["totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq"],
    ).iloc[0]
    # sum 300, mean 100, sumsq 120^2 + 80^2 + 100^2 = 30,800, sample stddev sqrt((400 + 400 + 0) / 2) = 20.
    assert every.drop("end").tolist() == [3.0, 3.0, 300.0, 100.0, 80.0, 120.0, 20.0, 30800.0]
    with_empty = store.aggregate(
        "urn:v",
        "speed",
        ts("2020-08-01 12:00"),
        ts("2020-08-01 12:06"),
        "PT2M",
        ["totalCount"],
        include_empty=True,
    )
    assert with_empty["totalCount"].tolist() == [0.0, 1.0, 1.0]
    assert store.aggregate("urn:none", "speed", methods=["sum"]).empty


def test_aggregate_from_chunk_statistics_matches_the_values(store: SeriesStore, monkeypatch) -> None:
    # Hourly power for a year: 28-day chunks; P28D buckets from a chunk boundary are whole chunks
    # (answered from statistics), P1D buckets are not (values decoded). Both must equal numpy.
    real_decode = series._decode
    rng = np.random.default_rng(7)
    idx = pd.date_range("2024-01-01", "2025-01-01", freq="1h", tz="UTC", inclusive="left")
    values = rng.normal(5.0, 2.0, len(idx)).round(3)
    values[100:110] = np.nan
    s = pd.Series(values, index=idx, name=M1)
    store.write(s, attribute=POWER, unit_code="KWT")
    start, end = ts("2024-01-22"), ts("2024-12-23")  # both chunk boundaries (28-day grid)
    methods = ["totalCount", "sum", "avg", "min", "max", "stddev", "sumsq"]
    decoded = []
    monkeypatch.setattr(series, "_decode", lambda *a: decoded.append(a) or real_decode(*a))
    for period, freq in (("P28D", "672h"), ("P1D", "24h")):
        decoded.clear()
        got = store.aggregate(M1, POWER, start, end, period, methods)
        # Whole chunks per bucket: nothing decoded for P28D; every chunk in range for P1D.
        assert len(decoded) == (0 if period == "P28D" else 12)
        ref = (
            s[start : end - pd.Timedelta("1us")]
            .resample(freq, origin=start)
            .agg(["count", "sum", "mean", "min", "max", "std"])
        )
        ref["sumsq"] = (s[start : end - pd.Timedelta("1us")] ** 2).resample(freq, origin=start).sum()
        np.testing.assert_allclose(got["totalCount"], ref["count"])
        np.testing.assert_allclose(got["sum"], ref["sum"], rtol=1e-12)
        np.testing.assert_allclose(got["avg"], ref["mean"], rtol=1e-12)
        np.testing.assert_allclose(got["min"], ref["min"])
        np.testing.assert_allclose(got["max"], ref["max"])
        np.testing.assert_allclose(got["stddev"], ref["std"], rtol=1e-9)
        np.testing.assert_allclose(got["sumsq"], ref["sumsq"], rtol=1e-12)
    # The whole year in one bucket (no period): partial edge chunks decoded, whole ones from statistics.
    total = store.aggregate(
        M1, POWER, ts("2024-02-10 05:00"), ts("2024-11-03 17:00"), None, ["sum", "totalCount"]
    )
    part = s[ts("2024-02-10 05:00") : ts("2024-11-03 16:00")]
    assert total["totalCount"].iloc[0] == part.count()
    assert total["sum"].iloc[0] == pytest.approx(part.sum(), rel=1e-12)


# --- deletes -------------------------------------------------------------------------------------
def test_delete_instant_range_and_series(store: SeriesStore) -> None:
    idx = qh("2024-01-21", 96 * 3)  # crosses the 2024-01-22 chunk boundary
    store.write(
        pd.Series(np.arange(len(idx), dtype=float), index=idx, name=M1), attribute=OFFTAKE, unit_code="KWH"
    )
    store.write(pd.Series(1.0, index=idx, name=M2), attribute=OFFTAKE)
    assert store.delete(M1, OFFTAKE, at=idx[5]) == 1
    assert store.delete(M1, OFFTAKE, at=idx[5]) == 0
    assert idx[5] not in store.history(M1, OFFTAKE).index
    # A range across the chunk boundary: 2024-01-21 23:00 to 2024-01-22 01:00 = 8 quarter-hours.
    assert store.delete(M1, OFFTAKE, ts("2024-01-21 23:00"), ts("2024-01-22 01:00")) == 8
    left = store.history(M1, OFFTAKE)
    assert len(left) == len(idx) - 9
    # Deleting the first values moves the catalogue's first instant.
    assert store.delete(M1, OFFTAKE, None, idx[10]) == 9
    info = {s.entity_id: s for s in store.series()}
    assert info[M1].first == idx[10] and info[M1].last == idx[-1]
    assert info[M1].count == len(idx) - 18
    assert info[M2].count == len(idx)  # the other meter is untouched
    # Whole series: catalogue entry gone too.
    assert store.delete(M1, OFFTAKE) == len(idx) - 18
    assert [s.entity_id for s in store.series()] == [M2]
    assert store.read(M1, OFFTAKE)[M1].isna().all()


def test_delete_every_attribute_of_an_entity(store: SeriesStore) -> None:
    idx = qh("2024-01-01", 4)
    store.write(pd.Series(1.0, index=idx, name=M1), attribute=OFFTAKE)
    store.write(pd.Series(2.0, index=idx, name=M1), attribute=POWER)
    store.write(pd.Series(3.0, index=idx, name=M1), attribute=POWER, dataset_id="urn:ds:1")
    store.write(pd.Series(4.0, index=idx, name=M2), attribute=POWER)
    assert store.delete(M1, POWER) == 4  # the default instance only
    assert store.delete(M1, None, all_datasets=True) == 8
    assert [(s.entity_id, s.attribute) for s in store.series()] == [(M2, POWER)]
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(chunks_table)).scalar_one() == 1


# --- bad input: clear errors, nothing written ------------------------------------------------------
def _nothing_stored(store: SeriesStore) -> None:
    assert store.series() == []
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(chunks_table)).scalar_one() == 0


def test_naive_timestamps_are_rejected(store: SeriesStore) -> None:
    naive = pd.DataFrame({M1: [1.0, 2.0]}, index=pd.date_range("2024-01-01", periods=2, freq="15min"))
    with pytest.raises(SeriesError, match=r"no time zone \(first: 2024-01-01 00:00:00\)") as err:
        store.write(naive, attribute=OFFTAKE)
    assert M1 in str(err.value)
    long = pd.DataFrame(
        {"entity_id": [M1, M2], "time": ["2024-01-01T00:00Z", "2024-01-01T00:15"], "value": [1, 2]}
    )
    with pytest.raises(SeriesError, match=f"entity '{M2}': time '2024-01-01T00:15' has no time zone"):
        store.write(long, attribute=OFFTAKE)
    with pytest.raises(SeriesError, match="has no time zone"):
        store.read(M1, OFFTAKE, start="2024-01-01T00:00")
    _nothing_stored(store)


def test_non_numeric_and_infinite_values_name_entity_and_instant(store: SeriesStore) -> None:
    idx = qh("2024-01-01", 3)
    frame = pd.DataFrame({M1: [1.0, 2.0, 3.0], M2: [1.0, "abc", 3.0]}, index=idx)
    with pytest.raises(
        SeriesError, match=f"entity '{M2}': value 'abc' at 2024-01-01T00:15:00Z is not a number"
    ) as e:
        store.write(frame, attribute=OFFTAKE)
    assert e.value.entity_id == M2 and e.value.time == "2024-01-01T00:15:00Z"
    frame = pd.DataFrame({M1: [1.0, 2.0, 3.0], M2: [1.0, 2.0, -np.inf]}, index=idx)
    with pytest.raises(SeriesError, match=f"entity '{M2}': value -inf at 2024-01-01T00:30:00Z is infinite"):
        store.write(frame, attribute=OFFTAKE)
    with pytest.raises(SeriesError, match="boolean"):
        store.write(pd.DataFrame({M1: [True, False, True]}, index=idx), attribute=OFFTAKE)
    long = pd.DataFrame({"entity_id": [M1, M2], "time": [idx[0], idx[1]], "value": ["1.5", 2.0]})
    with pytest.raises(
        SeriesError, match=f"entity '{M1}': value '1.5' at 2024-01-01T00:00:00Z is not a number"
    ):
        store.write(long, attribute=OFFTAKE)
    with pytest.raises(SeriesError, match="non-empty string"):
        store.write(pd.DataFrame({"": [1.0]}, index=idx[:1]), attribute=OFFTAKE)
    with pytest.raises(SeriesError, match=r"ends .* before it starts"):
        store.read(M1, OFFTAKE, idx[2], idx[0])
    _nothing_stored(store)  # M1's good column was not written either


def test_unit_conflict_rolls_back_the_whole_write(store: SeriesStore) -> None:
    idx = qh("2024-01-01", 2)
    store.write(pd.Series([1.0, 2.0], index=idx, name=M1), attribute=OFFTAKE, unit_code="KWH")
    frame = pd.DataFrame({"urn:ngsi-ld:Meter:m0": [9.0, 9.0], M1: [5.0, 6.0]}, index=idx)
    with pytest.raises(SeriesError, match=f"entity '{M1}': series .* is in KWH, not KWT"):
        store.write(frame, attribute=OFFTAKE, unit_code="KWT")
    assert [s.entity_id for s in store.series()] == [M1]  # m0 was not created
    assert store.read(M1, OFFTAKE)[M1].tolist() == [1.0, 2.0]
    with pytest.raises(SeriesError, match="is of kind 'energy', not 'power'"):
        store.write(pd.Series([1.0], index=idx[:1], name=M1), attribute=OFFTAKE, kind="power")
    # A series written without unit adopts the first unit given, and its kind with it.
    store.write(pd.Series([1.0], index=idx[:1], name=M2), attribute=OFFTAKE)
    assert {s.entity_id: s.kind for s in store.series()}[M2] == "power"
    store.write(pd.Series([1.0], index=idx[1:], name=M2), attribute=OFFTAKE, unit_code="KWH")
    assert {s.entity_id: (s.unit_code, s.kind) for s in store.series()}[M2] == ("KWH", "energy")


def test_write_inside_a_caller_transaction_rolls_back_with_it(store: SeriesStore) -> None:
    idx = qh("2024-01-01", 2)
    with pytest.raises(RuntimeError), store.engine.begin() as conn:
        store.write(pd.Series([1.0, 2.0], index=idx, name=M1), attribute=OFFTAKE, connection=conn)
        raise RuntimeError("the entity update failed")
    _nothing_stored(store)
    with store.engine.begin() as conn:
        store.write(pd.Series([1.0, 2.0], index=idx, name=M1), attribute=OFFTAKE, connection=conn)
        assert store.delete(M1, OFFTAKE, at=idx[0], connection=conn) == 1
    assert store.read(M1, OFFTAKE)[M1].tolist() == [2.0]


def test_concurrent_writers_of_one_chunk_lose_nothing(store: SeriesStore) -> None:
    # Eight threads write 10 different quarter-hours each into the same chunk of the same series.
    idx = qh("2024-01-01", 80)
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(10):
                j = k * 10 + i
                store.write(pd.Series([float(j)], index=idx[j : j + 1], name=M1), attribute=OFFTAKE)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    got = store.read(M1, OFFTAKE)[M1]
    assert got.tolist() == [float(j) for j in range(80)]


def test_tenants_are_separate(store: SeriesStore) -> None:
    idx = qh("2024-01-01", 1)
    store.write(pd.Series([1.0], index=idx, name=M1), attribute=OFFTAKE, tenant="a")
    store.write(pd.Series([2.0], index=idx, name=M1), attribute=OFFTAKE, tenant="b")
    assert store.read(M1, OFFTAKE, tenant="a")[M1].tolist() == [1.0]
    assert store.read(M1, OFFTAKE, tenant="b")[M1].tolist() == [2.0]
    assert store.read(M1, OFFTAKE)[M1].isna().all()
    assert [s.entity_id for s in store.series("a")] == [M1]
    info = store.series("a")[0]
    assert info.created <= info.modified and info.created.year >= 2024


# --- property: any sequence of writes == the last-write-wins dict model ------------------------------
_write_ops = st.lists(
    st.lists(
        st.tuples(
            st.integers(0, 6 * 96 * 30),  # quarter-hour slot within ~6 months: several chunks
            st.one_of(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), st.just(float("nan"))),
        ),
        min_size=1,
        max_size=40,
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=_write_ops, cut=st.integers(0, 6 * 96 * 30))
def test_random_writes_equal_the_last_write_wins_model(store: SeriesStore, batches, cut: int) -> None:
    tenant = uuid.uuid4().hex  # a fresh series per example
    base = ts("2024-01-01")
    model: dict[pd.Timestamp, float] = {}
    for batch in batches:
        times = pd.DatetimeIndex([base + pd.Timedelta(minutes=15 * k) for k, _ in batch])
        store.write(pd.Series([v for _, v in batch], index=times, name=M1), attribute=OFFTAKE, tenant=tenant)
        for t, (_, v) in zip(times, batch, strict=True):
            model[t] = v
    expected = pd.Series(model).sort_index()
    got = store.read(M1, OFFTAKE, tenant=tenant)[M1]
    assert list(got.index) == list(expected.index)
    np.testing.assert_array_equal(got.to_numpy(), expected.to_numpy())
    # Aggregates and lastN agree with the model too.
    valid = expected.dropna()
    agg = store.aggregate(M1, OFFTAKE, methods=["totalCount", "sum"], tenant=tenant)
    if len(valid):
        assert agg["totalCount"].iloc[0] == len(valid)
        assert agg["sum"].iloc[0] == pytest.approx(valid.sum(), rel=1e-9, abs=1e-6)
    assert store.history(M1, OFFTAKE, tenant=tenant, last_n=3).tolist() == valid.iloc[-3:].tolist()
    # A range delete removes exactly the model's instants in the range.
    cut_t = base + pd.Timedelta(minutes=15 * cut)
    assert store.delete(M1, OFFTAKE, cut_t, None, tenant=tenant) == int((expected.index >= cut_t).sum())
    rest = store.read(M1, OFFTAKE, tenant=tenant)[M1]
    assert list(rest.index) == [t for t in expected.index if t < cut_t]
