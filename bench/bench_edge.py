"""Edge ingest benchmark (issue 4): SenML packs through Mosquitto into the SQLite twin.

The demo community's devices (real profiles, :mod:`bright.edge.simulator`) publish 1,000,000
readings as SenML packs of one device-day (96 quarter-hours x 2-4 quantities) with QoS 1, from a
separate process, as fast as the broker takes them. The node's ingest
(:class:`bright.edge.mqtt.MqttIngest`: persistent session, manual acknowledgement after commit,
batched transactions) writes them into a fresh SQLite twin holding the community's entities.

Figures (median of ``--repeat`` runs):

- sustained ingest rate: readings / (last commit - first message received), target >= 50,000/s;
- readings lost: published readings - stored instants, target 0 (count of stored instants, and
  the sum of every attribute's stored values equals the published sum);
- the publisher's rate, for context.

The broker is a Mosquitto started for the benchmark on a free port (persistence on,
``max_queued_messages 0`` so that a slow consumer's queue is never cut, as a node's broker should be
configured); ``--mqtt mqtt://host:port`` uses an existing broker instead.

Usage: python bench/bench_edge.py [--readings 1000000] [--repeat 3] [--mqtt URL]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from bright.edge.mqtt import Ingestor, MqttIngest, MqttSettings
from bright.edge.senml import QUANTITIES
from bright.edge.simulator import DevicePack, Simulator, community_packs
from bright.services.demo import DemoCommunity, build_demo_community
from bright.twin.db import make_engine
from bright.twin.series import chunks_table, series_table
from bright.twin.service import TwinService

TARGET_RATE = 50_000
# SenML unit -> BRIGHT unit factor of the simulator's quantities (% state of charge -> fraction).
SCALE = {"stateOfCharge": 0.01}


@contextmanager
def mosquitto(url: str | None) -> Iterator[str]:
    """An existing broker, or a Mosquitto of our own on a free port."""
    if url:
        yield url
        return
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as d:
        conf = Path(d) / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {pwd.getpwuid(os.getuid()).pw_name}\n"
            "persistence true\n"
            f"persistence_location {d}/\nmax_queued_messages 0\nmax_inflight_messages 0\n"
        )
        proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            yield f"mqtt://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def _publish(url: str, packs: list[DevicePack], out: mp.Queue) -> None:  # runs in a child process
    with Simulator(url, client_id=f"bench-sim-{uuid.uuid4().hex[:8]}", window=1000) as sim:
        rep = sim.publish(packs)
    out.put((rep.messages, rep.readings, rep.elapsed_s))


def expected_sums(packs: list[DevicePack]) -> dict[str, float]:
    """Published sum per attribute IRI, in BRIGHT units."""
    out: dict[str, float] = {}
    for p in packs:
        for q, s in p.sums.items():
            iri = QUANTITIES[q].attribute
            out[iri] = out.get(iri, 0.0) + s * SCALE.get(q, 1.0)
    return out


def stored(engine: Engine) -> tuple[int, dict[str, float]]:
    s, c = series_table, chunks_table
    with engine.connect() as conn:
        n = conn.execute(select(func.coalesce(func.sum(c.c.n), 0))).scalar_one()
        rows = conn.execute(
            select(s.c.attr, func.sum(c.c.v_sum))
            .select_from(s.join(c, c.c.series_id == s.c.id))
            .group_by(s.c.attr)
        ).all()
    return int(n), {a: float(v) for a, v in rows}


def run_once(url: str, packs: list[DevicePack], community: DemoCommunity) -> dict[str, float]:
    readings = sum(p.readings for p in packs)
    with tempfile.TemporaryDirectory() as d:
        engine = make_engine(f"sqlite:///{Path(d) / 'twin.db'}")
        svc = TwinService(engine)
        svc.batch_upsert("", community.entities, svc.resolve_context(community.entities[0]["@context"]))
        first: list[float] = []
        ingestor = Ingestor(engine)
        ingest = MqttIngest(
            ingestor,
            MqttSettings(url=url, client_id=f"bench-ingest-{uuid.uuid4().hex[:8]}", receive_maximum=5000),
        )
        original = ingest._on_message

        def stamp(client: Any, userdata: Any, msg: Any) -> None:
            if not first:
                first.append(time.perf_counter())
            original(client, userdata, msg)

        ingest.client.on_message = stamp
        ingest.start()
        ctx = mp.get_context("spawn")
        out: mp.Queue = ctx.Queue()
        pub = ctx.Process(target=_publish, args=(url, packs, out))
        pub.start()
        deadline = time.monotonic() + 600
        while ingest.stats.written + ingest.stats.rejected < readings and time.monotonic() < deadline:
            time.sleep(0.005)
        last = time.perf_counter()
        messages, published, pub_s = out.get(timeout=60)
        pub.join()
        ingest.stop()
        n, sums = stored(engine)
        want = expected_sums(packs)
        sums_ok = all(math.isclose(sums.get(a, 0.0), v, rel_tol=1e-9, abs_tol=1e-6) for a, v in want.items())
        engine.dispose()
    return {
        "rate": readings / (last - first[0]),
        "seconds": last - first[0],
        "lost": published - n,
        "published": published,
        "quarantined": ingest.stats.rejected,
        "sums_ok": float(sums_ok),
        "publisher_rate": published / pub_s,
        "messages": messages,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--readings", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--mqtt", default=None, help="use this broker instead of a Mosquitto of our own")
    args = ap.parse_args()
    community = build_demo_community()
    packs = list(
        community_packs(
            community, "2016-01-01T00:00Z", "2017-01-01T00:00Z", steps_per_pack=96, max_readings=args.readings
        )
    )
    readings = sum(p.readings for p in packs)
    runs = []
    with mosquitto(args.mqtt) as url:
        for _ in range(args.repeat):
            runs.append(run_once(url, packs, community))
            print(
                f"run: {runs[-1]['rate']:,.0f} readings/s over {runs[-1]['seconds']:.1f} s, "
                f"lost {runs[-1]['lost']}, sums {'ok' if runs[-1]['sums_ok'] else 'WRONG'}",
                flush=True,
            )
    rate = statistics.median(r["rate"] for r in runs)
    lost = max(r["lost"] for r in runs)
    sums_ok = all(r["sums_ok"] for r in runs)
    pub = statistics.median(r["publisher_rate"] for r in runs)
    print()
    print(
        f"{readings:,} readings in {len(packs):,} SenML packs (one device-day each), {args.repeat} runs, median"
    )
    print()
    print("| figure | measured | target | pass |")
    print("|---|---:|---:|:---:|")
    print(
        f"| sustained ingest, readings/s (SQLite twin) | {rate:,.0f} | >= {TARGET_RATE:,} | {'yes' if rate >= TARGET_RATE else 'NO'} |"
    )
    print(f"| readings lost (count) | {lost} | 0 | {'yes' if lost == 0 else 'NO'} |")
    print(
        f"| stored sums equal published sums | {'yes' if sums_ok else 'no'} | yes | {'yes' if sums_ok else 'NO'} |"
    )
    print(f"| publisher rate, readings/s (context) | {pub:,.0f} | - | - |")
    ok = rate >= TARGET_RATE and lost == 0 and sums_ok
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
