"""Benchmark of the B-BRIGHT bundle valuation (issue 15): ten bundles for one member over a year.

The demo home (2023 at 15 min: 35,040 quarter-hours; load, 5 kWp PV, 10 kWh battery, EV, heat
pump; Belgian day-ahead prices) and the ten demo bundles of the six demo offers
(:func:`bright.services.offers.demo_bundles`). Loading the data sets is excluded; everything else
(the window models, the 17 plans solved in 365 daily windows, the statements) is timed. Wall and
CPU time (``time.process_time``) are both printed: the development machine is shared.

Usage: ``python bench/bench_offers.py [runs]`` (default 1 run; the median is reported).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

TARGET_S = 20.0


def main(argv: list[str]) -> int:
    from bright.energy.offers import evaluate_bundles
    from bright.services.offers import demo_bundles, demo_member_home

    runs = int(argv[0]) if argv else 1
    home = demo_member_home()
    bundles = demo_bundles()
    walls, cpus = [], []
    cmp = None
    for _ in range(runs):
        load = os.getloadavg()[0]
        w0, c0 = time.perf_counter(), time.process_time()
        cmp = evaluate_bundles(home, bundles)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    assert cmp is not None
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    print(
        f"member: {len(home.index):,} quarter-hours, {len(bundles)} bundles, {cmp.plans_solved} plans solved"
    )
    print("| case | wall | CPU | target | pass (wall) | pass (CPU) | load average |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| 10 bundles, 1 member, 1 year at 15 min | {wall:.1f} s | {cpu:.1f} s | {TARGET_S:.0f} s | "
        f"{'pass' if wall <= TARGET_S else 'FAIL'} | {'pass' if cpu <= TARGET_S else 'FAIL'} | {load:.1f} |"
    )
    print()
    print("| bundle | value EUR/year | best single | alone EUR/year | stacking gain EUR | plan |")
    print("|---|---|---|---|---|---|")
    for b in cmp.bundles:
        best, value = b.best_single
        plan = "joint" if b.chosen is b.joint else "fallback"
        print(
            f"| {b.name} | {b.value_eur:,.0f} | {best.rsplit(':', 1)[-1]} | {value:,.0f} | "
            f"{b.stacking_gain_eur:,.0f} | {plan} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
