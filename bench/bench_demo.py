"""Benchmark: build the Brussels demo network (``make demo`` without serving).

Runs :func:`bright.network.demo_nodes.run_demo` as ``bright demo --no-serve`` does (six
communities, a year of 2016 quarter-hours each, the city node; two worker processes build the
communities) into a temporary directory, on free ports, and prints the wall time of each phase and
the CPU time of every stage summed over the communities (``time.process_time`` in the worker that
ran it). The machine may be shared: the CPU times say what the build costs, the wall times what it
took here. Target: the whole build <= 3 minutes of wall time on 2 free cores.

Run: ``.venv/bin/python bench/bench_demo.py [--days N] [--schools 3] [--workers 2]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bright.network.demo_nodes import COMMUNITY_STAGES, NETWORK_STAGES, DemoOptions, run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=None, help="metered days (default: the year 2016)")
    parser.add_argument("--schools", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        options = DemoOptions(
            directory=Path(tmp),
            city_port=0,
            first_port=0,
            schools=args.schools,
            days=args.days,
            workers=args.workers,
            serve=False,
        )
        t0, c0 = time.perf_counter(), time.process_time()
        result = run_demo(options)
        wall = time.perf_counter() - t0
        load = os.getloadavg()
    children_cpu = sum(b.cpu_s for b in result.builds.values())
    print(f"communities: {len(result.plans)}, members: {sum(len(p.members) for p in result.plans)}, "
          f"period: {'year 2016' if args.days is None else f'{args.days} days'}, workers: {args.workers}")  # fmt: skip
    print(f"load average at the end: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min)\n")
    print("| phase | wall s |\n|---|---|")
    for name in ("build", "nodes", "network", "total"):
        print(f"| {name} | {result.timings.get(name, float('nan')):.1f} |")
    print(f"| measured around run_demo | {wall:.1f} |")
    print("\n| stage | status | CPU s (sum) | wall s (sum) |\n|---|---|---|---|")
    statuses = result.stage_statuses()
    for name in COMMUNITY_STAGES:
        cpu = sum(b.stage(name).cpu_s for b in result.builds.values())
        w = sum(b.stage(name).wall_s for b in result.builds.values())
        print(f"| {name} | {statuses[name][:60]} | {cpu:.1f} | {w:.1f} |")
    for name in NETWORK_STAGES:
        if name in result.network:
            s = result.network[name]
            print(f"| {name} | {s.status[:60]} | {s.cpu_s:.1f} | {s.wall_s:.1f} |")
    print(
        f"\nCPU: {children_cpu:.1f} s in the community stages (workers), "
        f"{time.process_time() - c0:.1f} s in the orchestrator (node processes not counted)"
    )


if __name__ == "__main__":
    main()
