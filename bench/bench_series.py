"""Time-series store benchmarks (issue 3), through the Python API, on SQLite and PostgreSQL.

- bulk write of 1,000,000 readings (100 meters x 10,000 quarter-hours, one ``write`` call, fresh
  database): readings/s (targets: 300,000/s on SQLite, 150,000/s on PostgreSQL)
- the same 1,000,000 readings written as 100 daily batches of 10,000 readings into existing chunks
  (read-modify-write path): readings/s (reported, no target)
- read 100 meters x 1 year of 15-min values (3,513,600 values) into a DataFrame: seconds (<= 0.5 s)
- ``aggregate(sum, P1D)`` over one meter-year: milliseconds (<= 100 ms)

Usage: python bench/bench_series.py [sqlite|postgresql ...]   (default: both; PostgreSQL on
127.0.0.1:5432 as user postgres, a throw-away database is created and dropped)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import create_engine, text

from bright.twin.db import make_engine
from bright.twin.series import SeriesStore

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ATTR = "https://w3id.org/bright/ns#offtakeKwh"
YEAR = pd.date_range("2025-01-01", "2026-01-01", freq="15min", tz="UTC", inclusive="left")  # 35,040


def meters(n: int) -> list[str]:
    return [f"urn:ngsi-ld:Meter:bench-{i:03d}" for i in range(n)]


def frame(index: pd.DatetimeIndex, n_meters: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.gamma(2.0, 0.1, size=(len(index), n_meters)).round(3)  # kWh per quarter-hour
    return pd.DataFrame(values, index=index, columns=meters(n_meters))


@contextmanager
def database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as d:
            yield f"sqlite:///{Path(d) / 'series.db'}"
        return
    name = f"bright_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_backend(backend: str) -> dict[str, float]:
    out: dict[str, float] = {}
    bulk = frame(YEAR[:10_000], 100, seed=1)
    n_bulk = bulk.size
    # 1. bulk write into a fresh database, median of 3.
    times = []
    for _ in range(3):
        with database(backend) as url:
            engine = make_engine(url)
            store = SeriesStore(engine)
            t0 = time.perf_counter()
            store.write(bulk, attribute=ATTR, unit_code="KWH")
            times.append(time.perf_counter() - t0)
            engine.dispose()
    out["write_bulk"] = n_bulk / statistics.median(times)

    with database(backend) as url:
        engine = make_engine(url)
        store = SeriesStore(engine)
        # 2. daily batches (96 quarter-hours x 100 meters = 9,600 readings per call) into existing chunks.
        store.write(bulk.iloc[:1], attribute=ATTR, unit_code="KWH")
        days = [bulk.iloc[i : i + 96] for i in range(0, len(bulk), 96)]
        t0 = time.perf_counter()
        for day in days:
            store.write(day, attribute=ATTR)
        out["write_daily"] = n_bulk / (time.perf_counter() - t0)

        # 3. a year of 100 meters, read back.
        year = frame(YEAR, 100, seed=2)
        store.write(year, attribute=ATTR, unit_code="KWH")
        ids = list(year.columns)
        start, end = YEAR[0], YEAR[-1] + pd.Timedelta("15min")
        got = store.read(ids, ATTR, start, end)
        assert got.shape == year.shape and np.allclose(got.to_numpy(), year.to_numpy())
        out["read_values"] = float(got.size)
        out["read_s"] = median_time(lambda: store.read(ids, ATTR, start, end), 7)

        # 4. one meter-year aggregated per day.
        agg = store.aggregate(ids[0], ATTR, start, end, "P1D", ["sum"])
        assert len(agg) == 365 and np.isclose(agg["sum"].sum(), year[ids[0]].sum())
        out["aggregate_ms"] = 1000 * median_time(
            lambda: store.aggregate(ids[0], ATTR, start, end, "P1D", ["sum"]), 21
        )
        out["read_resolution_ms"] = 1000 * median_time(
            lambda: store.read(ids[:1], ATTR, start, end, resolution="P1D"), 21
        )
        engine.dispose()
    return out


def main(argv: list[str]) -> None:
    backends = argv or ["sqlite", "postgresql"]
    targets = {"sqlite": 300_000, "postgresql": 150_000}
    rows = []
    for backend in backends:
        r = bench_backend(backend)
        w = targets[backend]
        rows += [
            (
                backend,
                "bulk write 1,000,000 readings (one call)",
                f"{r['write_bulk']:,.0f} readings/s",
                f">= {w:,} /s",
                r["write_bulk"] >= w,
            ),
            (
                backend,
                "write 1,000,000 readings in 105 daily batches",
                f"{r['write_daily']:,.0f} readings/s",
                "-",
                None,
            ),
            (
                backend,
                f"read 100 meters x 1 year ({r['read_values']:,.0f} values) into a DataFrame",
                f"{r['read_s']:.3f} s",
                "<= 0.5 s",
                r["read_s"] <= 0.5,
            ),
            (
                backend,
                "aggregate sum P1D, one meter-year (Python API)",
                f"{r['aggregate_ms']:.1f} ms",
                "<= 100 ms",
                r["aggregate_ms"] <= 100,
            ),
            (
                backend,
                "read(resolution='P1D'), one meter-year",
                f"{r['read_resolution_ms']:.1f} ms",
                "-",
                None,
            ),
        ]
    print("| backend | figure | measured | target | pass |")
    print("|---|---|---|---|---|")
    for backend, what, got, target, ok in rows:
        verdict = "-" if ok is None else ("pass" if ok else "FAIL")
        print(f"| {backend} | {what} | {got} | {target} | {verdict} |")


if __name__ == "__main__":
    main(sys.argv[1:])
