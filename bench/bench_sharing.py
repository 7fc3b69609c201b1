"""Benchmark of the energy-sharing computations (issue 5).

Measures, on synthetic but realistic data (fixed seed):

- each sharing method on 1,000 members x 35,040 quarter-hours (a year), target <= 2 s;
- the quarter-hourly double auction on the same shared volumes, target <= 5 s;
- the exact Shapley values of 12 members over a month (2,976 quarter-hours).

Run: ``.venv/bin/python bench/bench_sharing.py [--repeat 5] [--workers 2]``. Prints a markdown table
(median wall time over the repeats, and the median CPU time of this process, which is less sensitive
to other programs sharing the machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from bright.energy.fairness import shapley
from bright.energy.market import DoubleAuction, Tariff, double_auction, settle
from bright.energy.sharing import MeterReadings, SharingKey, SharingMethod, share

SEED = 20240501
QUARTER_HOURS_PER_DAY = 96


def synthetic_community(
    n_members: int, n_days: int, producer_share: float = 0.2, seed: int = SEED
) -> tuple[MeterReadings, SharingKey]:
    """Meter readings of a community: households, 20 % of them with PV (prosumers), in whole Wh.

    Load: a household profile (night base, morning and evening peaks) scaled per member, with noise.
    PV: a clear-sky bell over the day whose width and height follow the season, times a daily
    cloudiness factor and quarter-hour noise. The meter sees mostly net values at 15 min (offtake =
    max(load - pv, 0), injection = max(pv - load, 0)) plus a few % of the overlap on both registers.
    """
    rng = np.random.default_rng(seed)
    n_intervals = n_days * QUARTER_HOURS_PER_DAY
    index = pd.date_range("2023-01-01", periods=n_intervals, freq="15min", tz="UTC")
    hour = (np.arange(n_intervals) % QUARTER_HOURS_PER_DAY) / 4.0 + 0.125
    day = np.arange(n_intervals) // QUARTER_HOURS_PER_DAY
    season = np.cos(2 * np.pi * (day - 172) / 365.0)  # 1 at the summer solstice
    daylight = 12.0 + 4.0 * season
    sun = np.clip(np.cos(np.pi * (hour - 13.0) / daylight), 0.0, None) ** 1.5 * (0.55 + 0.45 * season)
    clouds = rng.uniform(0.2, 1.0, n_days)[day]
    shape = 0.25 + 0.5 * np.exp(-((hour - 7.5) ** 2) / 2) + 0.9 * np.exp(-((hour - 19.0) ** 2) / 4)
    annual_kwh = rng.lognormal(np.log(3500.0), 0.4, n_members)
    per_interval = annual_kwh / (shape.sum() / n_days * 365.0)
    load = shape[:, None] * per_interval[None, :] * rng.gamma(4.0, 0.25, (n_intervals, n_members))
    producer = rng.random(n_members) < producer_share
    kwp = np.where(producer, rng.uniform(3.0, 10.0, n_members), 0.0)
    pv_kw = (sun * clouds)[:, None] * kwp[None, :] * rng.uniform(0.85, 1.0, (n_intervals, n_members))
    pv = pv_kw * 0.25
    # within a quarter-hour load and PV fluctuate: a prosumer's meter registers some offtake and some
    # injection in the same interval (a share of the overlap), with the same net
    both = rng.uniform(0.0, 0.1, (n_intervals, n_members)) * np.minimum(load, pv)
    offtake = np.round(np.maximum(load - pv, 0.0) + both, 3)  # whole Wh, as the DSO publishes
    injection = np.round(np.maximum(pv - load, 0.0) + both, 3)
    ids = tuple(f"EAN{i:04d}" for i in range(n_members))
    readings = MeterReadings(ids, offtake, injection, index)
    return readings, SharingKey.equal(ids)


def measure(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Median wall time and median CPU time (s) of ``fn`` over ``repeat`` runs, after one warm-up."""
    out = fn()
    walls, cpus = [], []
    for _ in range(repeat):
        del out
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="threads for the sharing methods")
    args = parser.parse_args()

    readings, key = synthetic_community(args.members, args.days)
    size = f"{args.members:,} x {readings.n_intervals:,}"
    rows: list[tuple[str, float, float, str, bool | None]] = []
    results = {}
    for method in SharingMethod:
        for workers in sorted({1, args.workers}):
            wall, cpu, result = measure(
                lambda m=method, w=workers: share(readings, m, key=key, workers=w), args.repeat
            )
            rows.append((f"{method.value}, {size}, {workers} thread(s)", wall, cpu, "<= 2 s", wall <= 2.0))
        results[method] = result
        rounds = f" ({result.rounds} rounds)" if method is SharingMethod.FIXED_MULTI_ROUND else ""
        print(f"{method.value}: shared {np.sum(result.shared_kwh):,.0f} kWh{rounds}")

    fixed = results[SharingMethod.FIXED]
    rng = np.random.default_rng(SEED)
    bids = rng.uniform(0.10, 0.35, args.members)
    asks = rng.uniform(0.02, 0.20, args.members)
    wall, cpu, _ = measure(
        lambda: double_auction(fixed.shared_offtake_kwh, fixed.shared_injection_kwh, bids, asks, 0.01),
        args.repeat,
    )
    rows.append((f"double auction (clearing), {size}", wall, cpu, "<= 5 s", wall <= 5.0))
    ids = readings.member_ids
    pricing = DoubleAuction(dict(zip(ids, bids, strict=True)), dict(zip(ids, asks, strict=True)), 0.01)
    tariff = Tariff(0.30, 0.05, 0.12)
    wall, cpu, _ = measure(lambda: settle(fixed, tariff, pricing), args.repeat)
    rows.append((f"double auction settlement (clearing + bills), {size}", wall, cpu, "<= 5 s", wall <= 5.0))

    month, month_key = synthetic_community(12, 31, producer_share=0.25, seed=SEED + 1)
    for method in (SharingMethod.FIXED, SharingMethod.FIXED_MULTI_ROUND, SharingMethod.MAXIMUM):
        wall, cpu, value = measure(
            lambda m=method: shapley(month, tariff, method=m, key=month_key), max(1, args.repeat // 2)
        )
        assert value.exact
        rows.append(
            (f"Shapley exact, 12 members x 2,976 (a month), {method.value}", wall, cpu, "report", None)
        )

    load = os.getloadavg()
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")
    print(f"median of {args.repeat} runs after a warm-up\n")
    print("| figure | wall (s) | CPU (s) | target | result |")
    print("|---|---:|---:|---|---|")
    for name, wall, cpu, target, ok in rows:
        verdict = "-" if ok is None else ("pass" if ok else "FAIL")
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {target} | {verdict} |")


if __name__ == "__main__":
    main()
