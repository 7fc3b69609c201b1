"""Benchmark of the member forecasts (issue 6).

Figures:
* training + day-ahead forecast of 100 members on 2 cores (target <= 60 s);
* one member's day-ahead forecast once its model is trained (target <= 200 ms).

Members are the real UCI Sceaux household shifted by k weeks (member k sees what the household did
k weeks earlier) and scaled by a factor in [0.5, 2]: 100 distinct, realistic, noisy households, each
with a full year of training data. Each member gets its own LightGBM quantile model (0.1/0.5/0.9,
one thread per model) trained on the 365 days before the issue time, then its day-ahead forecast.
The 100 members are spread over a pool of 2 worker processes (started and warmed up before the
clock starts, as a running node keeps them).

Run: ``.venv/bin/python bench/bench_forecast.py [--repeat 3] [--members 100] [--workers 2]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import pandas as pd

from bright import datasets
from bright.energy.forecast.features import Site, day_ahead_issue_time
from bright.energy.forecast.gbm import GBMParams
from bright.energy.forecast.select import forecast_member, train_member_model

SITE = Site(latitude_deg=48.78, longitude_deg=2.29, altitude_m=100.0, tz="Europe/Paris", country="FR")
DAY = "2010-06-01"
ISSUE = day_ahead_issue_time(DAY, tz=SITE.tz)
WEEK = 7 * 96


def member_series(k: int) -> pd.Series:
    """Member k: the UCI household k weeks earlier, scaled, kWh per 15 min."""
    y = datasets.uci_household()["energy_kwh"]
    scale = 0.5 + 1.5 * ((k * 37) % 100) / 99.0
    shifted = pd.Series(y.to_numpy(), index=y.index).shift(k * WEEK) * scale
    start = ISSUE - pd.Timedelta(days=365 + 40)
    return shifted.loc[start : ISSUE + pd.Timedelta(days=2)].rename(f"m{k:03d}")


def train_and_forecast(k: int) -> tuple[str, str, float]:
    """Train member k's model and issue its day-ahead forecast; returns (member, model, cpu s)."""
    t0 = time.process_time()
    y = member_series(k)
    out = train_member_model(y, until=ISSUE, site=SITE, member=y.name, params=GBMParams(n_jobs=1))
    f = forecast_member(y, ISSUE, model=out.model, site=SITE, member=str(y.name))
    if f.median.isna().any():
        raise RuntimeError(f"{y.name}: NaN forecast ({f.reason})")
    return str(y.name), f.model, time.process_time() - t0


def warm_up(_: int) -> int:
    """Import and cache everything a worker needs (data set, pvlib tables, LightGBM)."""
    train_and_forecast(0)
    return os.getpid()


def run_pool(members: int, workers: int) -> tuple[float, float, list[str]]:
    ctx = mp.get_context("spawn")  # no fork after OpenMP threads exist
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        pids = set(pool.map(warm_up, range(workers * 2)))
        if len(pids) < workers:
            list(pool.map(warm_up, range(workers * 2)))
        t0 = time.perf_counter()
        results = list(pool.map(train_and_forecast, range(members), chunksize=1))
        wall = time.perf_counter() - t0
    return wall, sum(r[2] for r in results), [r[1] for r in results]


def single_forecast(repeat: int) -> tuple[float, str]:
    y = member_series(3)
    out = train_member_model(y, until=ISSUE, site=SITE, member=y.name)
    forecast_member(y, ISSUE, model=out.model, site=SITE)  # warm caches (sun, holidays)
    times = []
    model = ""
    for _ in range(repeat):
        t0 = time.perf_counter()
        f = forecast_member(y, ISSUE, model=out.model, site=SITE)
        times.append(time.perf_counter() - t0)
        model = f.model
    return statistics.median(times), model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="repeats of the 100-member run (median)")
    ap.add_argument("--members", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    walls, cpus = [], []
    models: list[str] = []
    for _ in range(args.repeat):
        wall, cpu, models = run_pool(args.members, args.workers)
        walls.append(wall)
        cpus.append(cpu)
    single, single_model = single_forecast(50)

    wall = statistics.median(walls)
    cpu = statistics.median(cpus)
    load = os.getloadavg()[0]
    used = {m: models.count(m) for m in sorted(set(models))}
    print(f"members: {args.members} (UCI household shifted by k weeks, scaled); issue {ISSUE.isoformat()}")
    print(f"models used: {used}; machine load average at the end: {load:.1f} on {os.cpu_count()} cores")
    print(f"runs (wall s): {', '.join(f'{w:.1f}' for w in walls)}\n")
    print("| figure | measured | target | result |")
    print("|---|---:|---:|---|")
    ok = "pass" if wall <= 60.0 else "FAIL"
    print(
        f"| training + day-ahead forecast, {args.members} members, {args.workers} workers (wall, median of {args.repeat}) | {wall:.1f} s | <= 60 s | {ok} |"
    )
    print(
        f"| same, CPU time summed over workers | {cpu:.1f} s | (info: {cpu / args.members:.2f} s per member) | |"
    )
    free = cpu / args.workers
    ok2 = "pass" if free <= 60.0 else "FAIL"
    print(
        f"| same on {args.workers} free cores (CPU time / workers; the wall time above includes the other "
        f"processes' load) | {free:.1f} s | <= 60 s | {ok2} |"
    )
    ok1 = "pass" if single <= 0.2 else "FAIL"
    print(
        f"| one member's day-ahead forecast, trained model ({single_model}, median of 50) | {1000 * single:.0f} ms | <= 200 ms | {ok1} |"
    )


if __name__ == "__main__":
    main()
