"""Benchmark of the flexibility scheduler (issue 7).

Figures measured (median of repeated runs, wall time with ``time.perf_counter``):

* the reference home (10 kWh / 5 kW battery at 90 % round trip, 11 kW EV needing +30 kWh by
  07:00 CET each day, the UCI Sceaux household as fixed load, 6 kWp of SimBench PV3, 17 kW site
  limit, Belgian day-ahead prices, 15-min steps) over 1, 2, 3 and 7 days, model building included;
* a community of 200 homes (battery + EV + heat pump each, PV on every other home) under one 250 kW
  connection limit with a sharing value, 96 steps.

Run: ``.venv/bin/python bench/bench_flex.py`` (``--repeat N`` to change the number of runs).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import numpy as np
import pandas as pd

from bright import datasets
from bright.energy.flex.commitments import energy_price, feed_in, sharing_value
from bright.energy.flex.community import Community, schedule_community
from bright.energy.flex.devices import (
    Battery,
    ElectricVehicle,
    EVSession,
    GridConnection,
    HeatPump,
    PVSystem,
)
from bright.energy.flex.problem import Site, build_problem
from bright.energy.flex.solve import solve

HOME_START = pd.Timestamp("2023-02-06 11:00", tz="UTC")  # 12:00 CET, a week without negative prices
HOME_TARGETS_S = {1: 0.035, 2: 0.100, 3: 0.150, 7: 0.600}
COMMUNITY_START = pd.Timestamp("2023-03-13 11:00", tz="UTC")
COMMUNITY_TARGET_S = 10.0


def reference_home(days: int) -> tuple[pd.DatetimeIndex, Site]:
    """The issue's reference home over ``days`` days from Monday 6 February 2023, 12:00 CET."""
    n = 96 * days
    index = pd.date_range(HOME_START, periods=n, freq="15min")
    load = datasets.uci_household()["power_kw"]
    load_kw = load.loc[pd.Timestamp("2008-02-04 11:00", tz="UTC") :].iloc[:n].to_numpy()  # also a Monday
    pv = datasets.simbench_profiles()["PV3"]
    pv_kw = 6.0 * pv.loc[pd.Timestamp("2016-02-08 11:00", tz="UTC") :].iloc[:n].to_numpy()  # also a Monday
    midnight = HOME_START.normalize()
    sessions = [
        EVSession(
            midnight + pd.Timedelta(days=d, hours=17), midnight + pd.Timedelta(days=d + 1, hours=6), 30.0
        )
        for d in range(days)
    ]
    eta = math.sqrt(0.9)
    price = datasets.dayahead_prices()
    site = Site(
        "home",
        load_kw,
        devices=(
            Battery("battery", 10.0, 5.0, 5.0, eta, eta, initial_soc_kwh=5.0),
            ElectricVehicle("ev", 60.0, 11.0, sessions),
            PVSystem("pv", pv_kw, curtailable=False),
        ),
        connection=GridConnection(17.0, 17.0),
        commitments=(energy_price(price), feed_in(price)),
    )
    return index, site


def community_of_homes(n_homes: int = 200, seed: int = 7) -> tuple[pd.DatetimeIndex, Community]:
    """200 homes with battery, EV and heat pump (PV on every other home), one 250 kW limit, 96 steps."""
    rng = np.random.default_rng(seed)
    n = 96
    index = pd.date_range(COMMUNITY_START, periods=n, freq="15min")
    prof = datasets.simbench_profiles()
    day = prof.loc[pd.Timestamp("2016-03-14 11:00", tz="UTC") :].iloc[:n]  # a Monday in March
    households = ["H0-A", "H0-B", "H0-C", "H0-G", "H0-H", "H0-L"]
    t_out = datasets.weather(2023)["temp_air_c"]
    price = datasets.dayahead_prices()
    midnight = COMMUNITY_START.normalize()
    members = []
    for i in range(n_homes):
        shape = day[households[i % len(households)]].to_numpy()
        annual_kwh = rng.uniform(2500, 4500)
        yearly = prof[households[i % len(households)]].sum() * 0.25
        load = shape * annual_kwh / yearly
        devices: list = [
            Battery(
                "battery",
                float(rng.choice([5.0, 10.0, 13.5])),
                float(rng.choice([2.5, 5.0])),
                float(rng.choice([2.5, 5.0])),
                0.95,
                0.95,
                initial_soc_kwh=2.0,
                degradation_eur_per_kwh=0.02,
            ),
            ElectricVehicle(
                "ev",
                60.0,
                float(rng.choice([7.4, 11.0])),
                [
                    EVSession(
                        midnight + pd.Timedelta(hours=float(rng.uniform(16, 20))),
                        midnight + pd.Timedelta(days=1, hours=float(rng.uniform(5.5, 8))),
                        float(rng.uniform(4, 14)),
                    )
                ],
            ),
            HeatPump(
                "heat pump",
                power_kw=float(rng.choice([2.0, 3.0])),
                cop=3.2,
                resistance_k_per_kw=float(rng.uniform(8, 12)),
                capacitance_kwh_per_k=float(rng.uniform(6, 14)),
                outdoor_temp_c=t_out,
                initial_temp_c=20.0,
                comfort_min_c=19.0,
                comfort_max_c=22.0,
            ),
        ]
        if i % 2 == 0:
            devices.append(PVSystem("pv", float(rng.uniform(3, 6)) * day[f"PV{1 + i % 8}"].to_numpy()))
        members.append(
            Site(
                f"home{i:03d}",
                load,
                devices=tuple(devices),
                connection=GridConnection(17.0, 17.0),
                commitments=(energy_price(price + 0.12), feed_in(price - 0.01)),
            )
        )
    community = Community(
        "bench", members, import_limit_kw=250.0, export_limit_kw=250.0, commitments=(sharing_value(0.04),)
    )
    return index, community


def _median_time(fn, repeat: int) -> tuple[float, float, object]:
    """Median wall time and median CPU time (s) of ``repeat`` calls, and the last result."""
    wall, cpu = [], []
    out = None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per figure (median reported)")
    parser.add_argument("--community-repeat", type=int, default=5)
    args = parser.parse_args()

    # warm-up: data loading and the first HiGHS instance are not part of a schedule computation
    index, site = reference_home(1)
    solve(build_problem(index, [site]))

    rows = []
    for days, target in HOME_TARGETS_S.items():
        index, site = reference_home(days)
        med, cpu, sched = _median_time(
            lambda index=index, site=site: solve(build_problem(index, [site])), args.repeat
        )
        rows.append(
            (
                f"home, {days} day{'s' if days > 1 else ''} ({len(index)} steps), build + solve",
                med,
                cpu,
                target,
                f"cost {sched.cost_eur:.4f} EUR, {sched.problem.model.num_col} cols, "  # type: ignore[attr-defined]
                f"{sched.problem.model.num_row} rows",  # type: ignore[attr-defined]
            )
        )

    index, community = community_of_homes()
    med, cpu, sched = _median_time(lambda: schedule_community(index, community), args.community_repeat)
    model = sched.problem.model  # type: ignore[attr-defined]
    peak = float(sched.community["net_import_kw"].max())  # type: ignore[attr-defined]
    rows.append(
        (
            "community, 200 homes (battery + EV + heat pump), 250 kW limit, 96 steps",
            med,
            cpu,
            COMMUNITY_TARGET_S,
            f"cost {sched.cost_eur:.2f} EUR, peak {peak:.1f} kW, {model.num_col} cols, {model.num_row} rows, "  # type: ignore[attr-defined]
            f"status {sched.status}, method {sched.solver_info.get('method')}",  # type: ignore[attr-defined]
        )
    )

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Flexibility scheduler, median of {args.repeat} runs (community: {args.community_repeat}),")
    print(f"{os.cpu_count()} CPUs, load average {load:.1f} at the end\n")
    print("| case | median wall | median CPU | target | pass | notes |")
    print("|---|---|---|---|---|---|")
    for name, med, cpu, target, notes in rows:
        ok = "pass" if med <= target else "FAIL"
        print(f"| {name} | {_fmt(med)} | {_fmt(cpu)} | {_fmt(target)} | {ok} | {notes} |")


def _fmt(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


if __name__ == "__main__":
    main()
