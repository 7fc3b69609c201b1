"""Benchmark of the B-DLT ledger (issue 9): signing and appending, proof verification, head storage.

Run: ``.venv/bin/python bench/bench_ledger.py`` (about 3 minutes on one core; ``--quick`` for a
smaller run whose storage figure is extrapolated).  Prints a markdown table: figure, measured
value, target, pass/fail.  Rates are medians over repeats, measured with ``time.perf_counter``
(wall clock); the CPU-time rate is given alongside because the reference machine is shared.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event

from bright.ledger.heads import COSIGNATURE_CONTEXT, Cosignature, SignedTreeHead, is_final
from bright.ledger.identity import NodeIdentity
from bright.ledger.merkle import MerkleLog, leaf_hash, verify_inclusion
from bright.ledger.records import Settlement, SignedRecord, sign_record, sign_records
from bright.ledger.store import LedgerStore

COMMUNITY = "urn:bright:community:bench"
MEMBERS = 100
START = datetime(2024, 1, 1, tzinfo=UTC)
QUARTER_HOURS_PER_YEAR = 35_040


def _settlement(n: int) -> Settlement:
    """Settlement of member ``n % 100`` in quarter-hour ``n // 100``."""
    return Settlement(
        COMMUNITY,
        f"EAN5414480000000{n % MEMBERS:05d}",
        START + timedelta(minutes=15 * (n // MEMBERS)),
        offtake_wh=250 + n % 700,
        injection_wh=n % 400,
        shared_offtake_wh=n % 250,
        shared_injection_wh=(n * 7) % 400 if (n * 7) % 400 <= n % 400 else 0,
        amount_cents=(n % 31) - 15,
    )


def _sqlite_engine(path: Path) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _pragmas(connection, _record) -> None:  # type: ignore[no-untyped-def]
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def _rate(work: Callable[[], int], repeats: int) -> tuple[float, float]:
    """Median of (items / wall second) and (items / CPU second) over repeats."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        count = work()
        wall.append(count / (time.perf_counter() - t0))
        cpu.append(count / max(time.process_time() - c0, 1e-9))
    return statistics.median(wall), statistics.median(cpu)


def bench_sign_append(identity: NodeIdentity, count: int, repeats: int) -> tuple[float, float]:
    """One record at a time: build, sign, append (one core)."""

    def work() -> int:
        log = MerkleLog()
        for n in range(count):
            log.append(sign_record(_settlement(n), identity).to_bytes())
        return count

    return _rate(work, repeats)


def bench_sign_append_batches(
    identity: NodeIdentity, count: int, batch: int, repeats: int
) -> tuple[float, float]:
    """Batches of ``batch`` bodies signed by :func:`sign_records` (two threads), then appended."""

    def work() -> int:
        log = MerkleLog()
        for first in range(0, count, batch):
            bodies = [_settlement(n) for n in range(first, first + batch)]
            for signed in sign_records(bodies, identity):
                log.append(signed.to_bytes())
        return count

    return _rate(work, repeats)


def bench_sign_append_sqlite(
    identity: NodeIdentity, count: int, batch: int, repeats: int
) -> tuple[float, float]:
    def work() -> int:
        with tempfile.TemporaryDirectory() as directory:
            engine = _sqlite_engine(Path(directory) / "ledger.db")
            store = LedgerStore(engine)
            for first in range(0, count, batch):
                store.append(
                    [
                        s.to_bytes()
                        for s in sign_records([_settlement(n) for n in range(first, first + batch)], identity)
                    ]
                )
            engine.dispose()
        return count

    return _rate(work, repeats)


def bench_append_alone(count: int, repeats: int) -> dict[str, float]:
    """Appends per second of pre-signed leaves: our MerkleLog, and pymerkle's in-memory tree."""
    signer = NodeIdentity.from_seed(bytes(32))
    leaves = [sign_record(_settlement(n), signer).to_bytes() for n in range(1_000)]
    data = [leaves[n % 1_000] + n.to_bytes(4, "big") for n in range(count)]  # distinct leaves

    def ours() -> int:
        log = MerkleLog()
        for leaf in data:
            log.append(leaf)
        return count

    rates = {"ours": _rate(ours, repeats)[0]}
    try:
        from pymerkle import InmemoryTree
    except ImportError:  # pragma: no cover
        return rates

    def theirs() -> int:
        tree = InmemoryTree()
        for leaf in data:
            tree.append_entry(leaf)
        return count

    rates["pymerkle"] = _rate(theirs, repeats)[0]
    return rates


def bench_proofs(identity: NodeIdentity, size: int, samples: int) -> dict[str, float]:
    """Median times (ms) of proof generation and verification in a log of ``size`` records."""
    log = MerkleLog()
    # Leaf hashes of distinct records; only a few real records are needed for the full check.
    for n in range(size):
        log.append_hash(sha256(n.to_bytes(8, "big")).digest())
    real = sign_record(_settlement(size), identity)
    real_index = log.append(real.to_bytes())
    head = SignedTreeHead.for_log(log, identity, community=COMMUNITY)
    rng = random.Random(9)
    indices = [rng.randrange(log.size) for _ in range(samples)]
    generate, verify, full, lengths = [], [], [], []
    for index in indices:
        t0 = time.perf_counter()
        proof = log.inclusion_proof(index)
        t1 = time.perf_counter()
        lengths.append(len(proof.path))
        ok = verify_inclusion(log.leaf_hash(index), proof, head.root)
        t2 = time.perf_counter()
        assert ok
        generate.append(t1 - t0)
        verify.append(t2 - t1)
    proof = log.inclusion_proof(real_index)
    data = real.to_bytes()
    for _ in range(min(samples, 300)):
        t0 = time.perf_counter()
        record = SignedRecord.from_bytes(data)
        ok = (
            record.verify()
            and head.verify_signature()
            and verify_inclusion(leaf_hash(data), proof, head.root)
        )
        full.append(time.perf_counter() - t0)
        assert ok
    return {
        "generate_ms": statistics.median(generate) * 1e3,
        "verify_ms": statistics.median(verify) * 1e3,
        "verify_p99_ms": sorted(verify)[int(0.99 * len(verify))] * 1e3,
        "full_ms": statistics.median(full) * 1e3,
        "path": float(statistics.median(lengths)),
    }


def bench_head_storage(heads: int, members: int, cosigners: int) -> tuple[float, float, float]:
    """SQLite file size (MB) of ``heads`` heads each cosigned by ``cosigners`` of ``members``.

    Returns (file MB, seconds spent, finality check ms for one head).
    """
    operator = NodeIdentity.from_seed(bytes([1]) * 32)
    peers = [NodeIdentity.from_seed(sha256(bytes([m])).digest()) for m in range(members)]
    member_dids = [peer.did for peer in peers]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "heads.db"
        engine = _sqlite_engine(path)
        store = LedgerStore(engine)
        day: list[SignedTreeHead] = []
        sample = None
        for interval in range(heads):
            size = (interval + 1) * members  # one settlement record per member and quarter-hour
            root = sha256(size.to_bytes(8, "big")).digest()  # the roots' values do not change the size
            head = SignedTreeHead.sign(
                operator,
                community=COMMUNITY,
                size=size,
                root=root,
                timestamp=START + timedelta(minutes=15 * interval),
            )
            statement = COSIGNATURE_CONTEXT + head.statement()
            chosen = random.Random(interval).sample(peers, cosigners)
            head = SignedTreeHead(
                head.community, head.size, head.root, head.timestamp, head.signer, head.signature,
                tuple(Cosignature(peer.did, peer.sign(statement)) for peer in chosen),
            )  # fmt: skip
            sample = sample or head
            day.append(head)
            if len(day) == 96:  # one transaction per day of quarter-hours
                store.add_heads(day, local=False, check_signatures=False)
                day = []
        if day:
            store.add_heads(day, local=False, check_signatures=False)
        engine.dispose()
        megabytes = sum(p.stat().st_size for p in Path(directory).iterdir()) / 1e6
    seconds = time.perf_counter() - t0
    assert sample is not None
    t1 = time.perf_counter()
    final = is_final(sample, member_dids)
    finality_ms = (time.perf_counter() - t1) * 1e3
    assert final
    return megabytes, seconds, finality_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller run; the storage figure is extrapolated"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-storage", action="store_true", help="skip the (slow) head-storage figure")
    arguments = parser.parse_args()
    quick = arguments.quick
    repeats = arguments.repeats
    identity = NodeIdentity.from_seed(bytes([5]) * 32)
    rows: list[tuple[str, str, str, bool | None]] = []

    wall, cpu = bench_sign_append_batches(identity, 20_000, 1_000, repeats)
    rows.append(
        (
            "sign (Ed25519, 2 threads) + append to Merkle log, in memory, batches of 1,000",
            f"{wall:,.0f} records/s (CPU: {cpu:,.0f}/s)",
            ">= 20,000 records/s",
            wall >= 20_000,
        )
    )
    wall, cpu = bench_sign_append(identity, 20_000, repeats)
    rows.append(
        (
            "same, one record at a time on one core",
            f"{wall:,.0f} records/s (CPU: {cpu:,.0f}/s)",
            "-",
            None,
        )
    )
    for batch in (100, 1_000):
        wall, cpu = bench_sign_append_sqlite(identity, 20_000, batch, max(3, repeats // 2))
        rows.append((f"sign + append + SQLite commit per {batch:,} records (WAL)", f"{wall:,.0f} records/s (CPU: {cpu:,.0f}/s)", ">= 20,000 records/s", wall >= 20_000))  # fmt: skip
    alone = bench_append_alone(200_000, 3)
    rows.append(
        ("MerkleLog append alone, 200,000 signed records", f"{alone['ours']:,.0f} records/s", "-", None)
    )
    if "pymerkle" in alone:
        rows.append(("pymerkle 7 InmemoryTree append alone, same records", f"{alone['pymerkle']:,.0f} records/s", "-", None))  # fmt: skip

    size = 350_400 if quick else MEMBERS * QUARTER_HOURS_PER_YEAR
    proofs = bench_proofs(identity, size, 2_000)
    rows.append((f"inclusion proof verification, log of {size + 1:,} records ({proofs['path']:.0f} hashes)", f"{proofs['verify_ms']:.3f} ms (p99 {proofs['verify_p99_ms']:.3f} ms)", "<= 1 ms", proofs["verify_ms"] <= 1.0))  # fmt: skip
    rows.append(("inclusion proof generation", f"{proofs['generate_ms']:.3f} ms", "O(log n)", None))
    rows.append(("record check: decode + record signature + head signature + inclusion", f"{proofs['full_ms']:.3f} ms", "<= 1 ms", proofs["full_ms"] <= 1.0))  # fmt: skip

    seconds = 0.0
    if not arguments.skip_storage:
        heads = QUARTER_HOURS_PER_YEAR // 10 if quick else QUARTER_HOURS_PER_YEAR
        megabytes, seconds, finality_ms = bench_head_storage(heads, MEMBERS, 67)
        scale = QUARTER_HOURS_PER_YEAR / heads
        label = "extrapolated x10 from 3,504 heads" if quick else "measured"
        rows.append((f"SQLite size of 35,040 heads x 67 cosignatures, 100 members ({label})", f"{megabytes * scale:,.1f} MB", "<= 200 MB", megabytes * scale <= 200))  # fmt: skip
        rows.append(
            ("finality check of one head (67 cosignature verifications)", f"{finality_ms:.1f} ms", "-", None)
        )

    built = "" if arguments.skip_storage else f"; head storage built in {seconds:.0f} s"
    print(f"\nB-DLT ledger benchmark ({'quick' if quick else 'full'} run, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs{built})\n")  # fmt: skip
    print("| figure | measured | target | result |")
    print("|---|---|---|---|")
    for name, value, target, passed in rows:
        verdict = "-" if passed is None else ("pass" if passed else "FAIL")
        print(f"| {name} | {value} | {target} | {verdict} |")
    return 0 if all(passed is not False for *_, passed in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
