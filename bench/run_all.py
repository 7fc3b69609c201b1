"""Run every benchmark under bench/ (``make bench``); each prints its own markdown table.

Usage: ``python bench/run_all.py [name ...]`` where name is e.g. ``twin`` for bench_twin.py.
Results go to stdout; docs/benchmarks.md records them with the date and the machine.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in argv]
    failed = 0
    for script in scripts:
        print(f"\n## {script.stem}\n", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script)])
        print(f"\n({script.name}: exit {rc}, {time.perf_counter() - t0:.1f} s)", flush=True)
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
