"""Series written one instant at a time (the history of entity updates): the one-instant fast path.

A batch upsert records one reading per entity and attribute. Those single instants skip the array
passes of the general chunk encoder; these tests check that the stored chunks, the read-back values
and the aggregates are those of the general path, and that a later instant merges with them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bright.twin import series
from bright.twin.db import make_engine
from bright.twin.series import SeriesStore, chunks_table, series_table

OFFTAKE = "https://w3id.org/bright/ns#offtakeKwh"
_US = 1_000_000


def _long(points: list[tuple[str, pd.Timestamp, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "entity_id": [p[0] for p in points],
            "time": [p[1] for p in points],
            "value": [p[2] for p in points],
        }
    )


def _chunks(store: SeriesStore) -> dict[str, list[dict]]:
    """Chunk rows per entity id."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(series_table.c.entity_id, series_table.c.chunk_span_s, chunks_table).join(
                chunks_table, chunks_table.c.series_id == series_table.c.id
            )
        ).mappings()
        out: dict[str, list[dict]] = {}
        for r in rows:
            out.setdefault(r["entity_id"], []).append(dict(r))
    return out


@pytest.mark.parametrize(
    ("value", "when"),
    [
        (12.5, "2026-11-01T00:00:00Z"),
        (-3.25, "1969-12-31T23:59:59.5Z"),  # before the epoch: floor, not truncation
        (0.0, "1970-01-01T00:00:00Z"),  # before the chunk origin (1970-01-05)
        (float("nan"), "2026-11-01T00:15:00Z"),  # an explicitly missing value
    ],
)
def test_encode_one_instant_matches_the_general_encoder(value: float, when: str) -> None:
    t_us = int(pd.Timestamp(when).value // 1000)
    one = series._encode(np.array([t_us], dtype=np.int64), np.array([value]), now=7)
    # The general encoder on the same instant given twice is the reference for everything but n.
    two = series._encode(np.array([t_us, t_us + 1], dtype=np.int64), np.array([value, value]), now=7)
    assert one["n"] == 1 and one["t_first"] == one["t_last"] == t_us
    assert one["step_us"] == 0 and one["times"] == b"" and one["modified_us"] == 7
    assert np.frombuffer(one["vals"], dtype="<f8").tobytes() == np.array([value], dtype="<f8").tobytes()
    if math.isnan(value):
        assert one["n_valid"] == 0 and two["n_valid"] == 0
        assert one["v_sum"] is one["v_min"] is one["v_max"] is one["v_sumsq"] is None
    else:
        assert one["n_valid"] == 1
        assert one["v_sum"] == value and one["v_min"] == two["v_min"] and one["v_max"] == two["v_max"]
        assert one["v_sumsq"] == value * value


@pytest.fixture
def store(db_url: str) -> Iterator[SeriesStore]:
    engine = make_engine(db_url)
    try:
        yield SeriesStore(engine)
    finally:
        engine.dispose()


def test_single_instants_of_many_series_then_a_second_instant(store: SeriesStore) -> None:
    t1 = pd.Timestamp("2026-11-01T00:00:00Z")
    t2 = pd.Timestamp("2026-11-01T00:15:00Z")
    points = [(f"urn:ngsi-ld:Meter:{i}", t1, i / 10) for i in range(50)]
    res = store.write(_long(points), attribute=OFFTAKE, unit_code="KWH")
    assert (res.values, res.series, res.chunks_inserted, res.chunks_updated) == (50, 50, 50, 0)
    chunks = _chunks(store)
    assert len(chunks) == 50
    t1_us = t1.value // 1000
    for i in range(50):
        (c,) = chunks[f"urn:ngsi-ld:Meter:{i}"]
        span = int(c["chunk_span_s"]) * _US
        assert c["chunk_start"] <= t1_us < c["chunk_start"] + span
        assert (c["chunk_start"] - series.CHUNK_ORIGIN_US) % span == 0
        assert c["n"] == c["n_valid"] == 1 and c["v_sum"] == pytest.approx(i / 10)
    # A second instant of the same series merges into the chunk written by the fast path.
    store.write(_long([("urn:ngsi-ld:Meter:7", t2, 2.0)]), attribute=OFFTAKE, unit_code="KWH")
    frame = store.read("urn:ngsi-ld:Meter:7", OFFTAKE)
    assert list(frame.index) == [t1, t2]
    assert frame["urn:ngsi-ld:Meter:7"].tolist() == pytest.approx([0.7, 2.0])
    agg = store.aggregate("urn:ngsi-ld:Meter:7", OFFTAKE, methods=["sum", "totalCount", "max"])
    assert agg["sum"].sum() == pytest.approx(2.7)
    assert agg["totalCount"].sum() == 2 and agg["max"].max() == 2.0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    readings=st.lists(
        st.tuples(
            # Seconds from 1960 to 2100, to cover instants before the epoch and the chunk origin.
            st.integers(min_value=-315_619_200, max_value=4_102_444_800),
            st.one_of(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), st.just(float("nan"))),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_one_instant_per_series_reads_back(tmp_path_factory: pytest.TempPathFactory, readings: list) -> None:
    """Every single instant reads back exactly, in the chunk that covers it (SQLite)."""
    path = tmp_path_factory.mktemp("single") / "s.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        store = SeriesStore(engine)
        points = [
            (f"urn:ngsi-ld:Meter:{k}", pd.Timestamp(s, unit="s", tz="UTC"), v)
            for k, (s, v) in enumerate(readings)
        ]
        store.write(_long(points), attribute=OFFTAKE, unit_code="KWH")
        chunks = _chunks(store)
        for eid, t, v in points:
            (c,) = chunks[eid]
            t_us = t.value // 1000
            span = int(c["chunk_span_s"]) * _US
            assert c["chunk_start"] <= t_us < c["chunk_start"] + span
            assert c["t_first"] == c["t_last"] == t_us
            assert c["n_valid"] == (0 if math.isnan(v) else 1)
            got = store.read(eid, OFFTAKE)[eid]
            assert list(got.index) == [t]
            assert (math.isnan(got.iloc[0]) and math.isnan(v)) or got.iloc[0] == v
    finally:
        engine.dispose()
