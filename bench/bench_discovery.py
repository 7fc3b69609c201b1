"""Benchmark of discovery and knowledge search (issue 11).

Run: ``.venv/bin/python bench/bench_discovery.py`` (about a minute on one core; ``--cards`` and
``--practices-per-card`` to change the size). Generates the demo network (10,000 community cards
around real Brussels schools, 5 practices per card on average: ~50,000 practices), builds the indexes,
then measures with ``time.perf_counter`` the median (and the 95th percentile) over repeated queries:

- top-10 similar communities among the cards, with their explanations, for reference cards spread
  over the network; and with filters (``schools``, ``within_km=5``, ``has_storage``);
- full-text search over the practices (BM25, en/fr/nl queries), top 10.

Prints a markdown table: figure, measured value, target, pass/fail. Exit status 1 if a target fails.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from bright.network.demo_network import demo_network
from bright.network.discovery import DiscoveryIndex, Filters
from bright.network.knowledge import KnowledgeIndex

QUERIES = (
    "solar panels on the school roof",
    "panneaux solaires école",
    "clé de répartition locataires",
    "verdeelsleutel huurders",
    "heat pump insulation",
    "warmtepomp",
    "financement participatif parents",
    "EV charging business park",
    "batterie",
    "energy poverty tenants",
)


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median and 95th percentile of ``repeat`` calls, ms (one warm-up call first)."""
    fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(0.95 * len(samples)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cards", type=int, default=10_000)
    parser.add_argument("--practices-per-card", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=100)
    args = parser.parse_args()

    t0 = time.perf_counter()
    net = demo_network(args.cards, practices_per_card=args.practices_per_card, seed=11)
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = DiscoveryIndex(net.cards, net.texts(), encoder="tfidf")
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    knowledge = KnowledgeIndex.build(net.practices)
    t_knowledge = time.perf_counter() - t0

    refs = [net.cards[(i * 7919) % len(net.cards)].id for i in range(args.repeat)]
    it = iter(refs * 3)

    def similar() -> object:
        return index.search(like=next(it), limit=10)

    def similar_filtered() -> object:
        return index.search(
            like=next(it), limit=10, filters=Filters(schools=True, within_km=5, has_storage=True)
        )

    qit = iter(QUERIES * (args.repeat // len(QUERIES) + 2))

    def fulltext() -> object:
        return knowledge.search(next(qit), limit=10)

    sim_med, sim_p95 = timed(similar, args.repeat)
    filt_med, filt_p95 = timed(similar_filtered, args.repeat)
    full_med, full_p95 = timed(fulltext, args.repeat)

    rows = [
        (f"top-10 similar among {len(net.cards):,} cards, with explanations (median)", sim_med, 50.0),
        ("  same, 95th percentile", sim_p95, None),
        ("top-10 with filters schools + within 5 km + storage (median)", filt_med, 50.0),
        ("  same, 95th percentile", filt_p95, None),
        (f"full-text search over {len(net.practices):,} practices, top 10 (median)", full_med, 100.0),
        ("  same, 95th percentile", full_p95, None),
    ]
    print(
        f"network: {len(net.cards):,} cards, {len(net.practices):,} practices "
        f"({knowledge.n_documents:,} language versions), generated in {t_gen:.1f} s; "
        f"discovery index built in {t_index:.1f} s ({index.encoder_name}), BM25 index in {t_knowledge:.1f} s\n"
    )
    print("| figure | measured | target | result |")
    print("|---|---|---|---|")
    failed = False
    for name, value, target in rows:
        if target is None:
            print(f"| {name} | {value:.1f} ms | | |")
            continue
        ok = value <= target
        failed |= not ok
        print(f"| {name} | {value:.1f} ms | <= {target:.0f} ms | {'pass' if ok else 'FAIL'} |")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
