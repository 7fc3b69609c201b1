"""Twin node benchmarks (issue 2), on SQLite and PostgreSQL, over HTTP against a real uvicorn.

- batch upsert of 10,000 entities (POST /entityOperations/upsert, 1,000 per request): entities/s
- GET /entities?type=T&q=attr>x over 100,000 entities, 10-entity page: p50 latency
- GET /entities/{id}: p50 latency

Besides wall time, each measure reports the CPU time the node spent on it: the uvicorn process
(user + system, from /proc) and, on PostgreSQL, the database backends serving it. On a shared,
loaded machine the wall time mostly measures the queue for the CPU; the CPU time does not.

Usage: python bench/bench_twin.py [sqlite|postgresql ...]
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
CTX = "https://w3id.org/bright/context.jsonld"
LINK = f'<{CTX}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def entity(i: int) -> dict:
    return {
        "id": f"urn:ngsi-ld:Meter:bench-{i:06d}",
        "type": "Meter",
        "accessPointId": {"type": "Property", "value": f"{541448000000000000 + i}"},
        "locality": {"type": "Property", "value": "lv_cabin"},
        "offtake": {
            "type": "Property",
            "value": (i * 7919) % 1000 / 10.0,
            "unitCode": "KWH",
            "observedAt": "2026-11-01T00:00:00Z",
        },
        "location": {
            "type": "GeoProperty",
            "value": {
                "type": "Point",
                "coordinates": [4.30 + (i % 300) * 0.0005, 50.80 + (i // 300) * 0.0005],
            },
        },
        "memberOf": {"type": "Relationship", "object": "urn:ngsi-ld:EnergyCommunity:bench"},
    }


def start(url: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "BRIGHT_DATABASE_URL": url, "BRIGHT_AUTH": "open"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "bright.api.app:app_from_env",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(base + "/health", timeout=0.5)
            return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def database_cpu(url: str) -> float:
    """CPU seconds so far of the PostgreSQL backends connected to the database of ``url``."""
    if not url.startswith("postgresql"):
        return 0.0
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN)
    try:
        with admin.connect() as c:
            pids = c.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": url.rsplit("/", 1)[1]}
            ).scalars()
            return sum(process_cpu(p) for p in pids)
    finally:
        admin.dispose()


class NodeCpu:
    """CPU time of the node (server process + database backends) between start() and stop()."""

    def __init__(self, pid: int, url: str) -> None:
        self.pid, self.url = pid, url
        self.server = self.database = 0.0

    def start(self) -> None:
        self._s0, self._d0 = process_cpu(self.pid), database_cpu(self.url)

    def stop(self) -> str:
        self.server = process_cpu(self.pid) - self._s0
        self.database = database_cpu(self.url) - self._d0
        if self.url.startswith("postgresql"):
            return f"server {self.server:.2f} s + database {self.database:.2f} s"
        return f"server {self.server:.2f} s"


def p50(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def fresh_database(backend: str) -> tuple[str, Callable[[], None]]:
    """A new SQLite file or PostgreSQL database, and the function that removes it."""
    if backend == "sqlite":
        tmp = tempfile.mkdtemp()
        return f"sqlite:///{Path(tmp) / 'bench.db'}", lambda: shutil.rmtree(tmp, ignore_errors=True)
    from sqlalchemy import create_engine, text

    name = f"bright_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))

    def cleanup() -> None:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name, cleanup


def run(backend: str) -> list[tuple[str, str, str, str, str]]:
    url, cleanup = fresh_database(backend)

    proc, base = start(url)
    cpu = NodeCpu(proc.pid, url)
    rows = []
    try:
        with httpx.Client(base_url=base, timeout=120, headers={"Link": LINK}) as cl:
            ents = [entity(i) for i in range(100_000)]
            # 1. upsert 10,000 (fresh), timed; then again, as updates of existing entities
            for label in ("batch upsert 10,000 entities", "batch upsert 10,000 existing entities"):
                cpu.start()
                t0 = time.perf_counter()
                for i in range(0, 10_000, 1000):
                    r = cl.post("/ngsi-ld/v1/entityOperations/upsert", json=ents[i : i + 1000])
                    assert r.status_code in (201, 204), r.text
                wall = time.perf_counter() - t0
                used = cpu.stop()
                rate = 10_000 / wall
                node = cpu.server + cpu.database
                rows.append(
                    (
                        backend,
                        label,
                        f"{rate:,.0f} entities/s (wall {wall:.2f} s)",
                        f"{used}: {10_000 / node:,.0f} entities per CPU-s",
                        ">= 5,000",
                    )
                )
            for i in range(10_000, 100_000, 2000):
                cl.post("/ngsi-ld/v1/entityOperations/upsert", json=ents[i : i + 2000])
            # 2. query over 100,000
            samples = []
            cpu.start()
            for k in range(60):
                x = (k * 13) % 90
                t0 = time.perf_counter()
                r = cl.get("/ngsi-ld/v1/entities", params={"type": "Meter", "q": f"offtake>{x}", "limit": 10})
                samples.append(time.perf_counter() - t0)
                assert r.status_code == 200 and len(r.json()) == 10, r.text
            used = cpu.stop()
            rows.append(
                (
                    backend,
                    "GET type=Meter&q=offtake>x, 100k entities, page 10",
                    f"p50 {p50(samples):.1f} ms",
                    f"{used} for 60 requests",
                    "<= 50 ms",
                )
            )
            # 3. retrieve one
            samples = []
            cpu.start()
            for k in range(300):
                t0 = time.perf_counter()
                r = cl.get(f"/ngsi-ld/v1/entities/urn:ngsi-ld:Meter:bench-{(k * 331) % 100_000:06d}")
                samples.append(time.perf_counter() - t0)
                assert r.status_code == 200
            used = cpu.stop()
            rows.append(
                (
                    backend,
                    "GET /entities/{id}",
                    f"p50 {p50(samples):.2f} ms",
                    f"{used} for 300 requests",
                    "<= 5 ms",
                )
            )
    finally:
        proc.terminate()
        proc.wait(30)
        cleanup()
    return rows


def main() -> None:
    backends = sys.argv[1:] or ["sqlite", "postgresql"]
    rows = []
    for b in backends:
        rows += run(b)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"load average at the end: {' '.join(load)} (2 cores)")
    print("| backend | measure | result | node CPU | target |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
