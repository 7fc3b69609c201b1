"""Temporal API benchmark (issue 3): aggrMethods=sum&aggrPeriodDuration=P1D over one meter-year,
over HTTP against a real uvicorn, on SQLite and PostgreSQL (p50 of 30 requests; target 100 ms).

Usage: python bench/bench_temporal.py [sqlite|postgresql ...]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from bench_twin import LINK, fresh_database, start
from bright.twin.db import make_engine
from bright.twin.series import SeriesStore
from bright.twin.service import TwinService
from bright.twin.vocabulary import bright_context


def run(backend: str) -> list[tuple[str, str, str, str]]:
    url, cleanup = fresh_database(backend)
    try:
        engine = make_engine(url)
        twin = TwinService(engine)
        ctx = bright_context()
        meter = "urn:ngsi-ld:Meter:bench-year"
        twin.create_entity(
            "", {"id": meter, "type": "Meter"}, twin.resolve_context("https://w3id.org/bright/context.jsonld")
        )
        idx = pd.date_range("2025-01-01", periods=35_040, freq="15min", tz="UTC")
        values = np.random.default_rng(1).gamma(2.0, 0.1, len(idx))
        SeriesStore(engine).write(
            pd.DataFrame({meter: values}, index=idx), attribute=ctx.expand("offtake"), unit_code="KWH"
        )
        engine.dispose()
        proc, base = start(url)
        try:
            with httpx.Client(base_url=base, timeout=60, headers={"Link": LINK}) as cl:
                params = {
                    "options": "aggregatedValues",
                    "aggrMethods": "sum",
                    "aggrPeriodDuration": "P1D",
                    "attrs": "offtake",
                }
                samples = []
                for _ in range(30):
                    t0 = time.perf_counter()
                    r = cl.get(f"/ngsi-ld/v1/temporal/entities/{meter}", params=params)
                    samples.append(time.perf_counter() - t0)
                    assert r.status_code == 200, r.status_code
                days = r.json()["offtake"]["sum"]
                assert len(days) == 365 and abs(sum(d[0] for d in days) - values.sum()) < 1e-6
        finally:
            proc.terminate()
            proc.wait(30)
    finally:
        cleanup()
    p50 = statistics.median(samples) * 1000
    return [
        (backend, "temporal aggr sum P1D, one meter-year (35,040 values)", f"p50 {p50:.1f} ms", "<= 100 ms")
    ]


def main() -> None:
    rows = []
    for b in sys.argv[1:] or ["sqlite", "postgresql"]:
        rows += run(b)
    print("| backend | measure | result | target |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
