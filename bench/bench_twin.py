"""Twin node benchmarks (issue 2), on SQLite and PostgreSQL, over HTTP against a real uvicorn.

- batch upsert of 10,000 entities (POST /entityOperations/upsert, 1,000 per request): entities/s
- GET /entities?type=T&q=attr>x over 100,000 entities, 10-entity page: p50 latency
- GET /entities/{id}: p50 latency

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
    env = {**os.environ, "BRIGHT_DATABASE_URL": url}
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


def run(backend: str) -> list[tuple[str, str, str, str]]:
    url, cleanup = fresh_database(backend)

    proc, base = start(url)
    rows = []
    try:
        with httpx.Client(base_url=base, timeout=120, headers={"Link": LINK}) as cl:
            ents = [entity(i) for i in range(100_000)]
            # 1. upsert 10,000 (fresh), timed
            t0 = time.perf_counter()
            for i in range(0, 10_000, 1000):
                r = cl.post("/ngsi-ld/v1/entityOperations/upsert", json=ents[i : i + 1000])
                assert r.status_code in (201, 204), r.text
            rate = 10_000 / (time.perf_counter() - t0)
            rows.append((backend, "batch upsert 10,000 entities", f"{rate:,.0f} entities/s", ">= 5,000"))
            # again, as updates of existing entities
            t0 = time.perf_counter()
            for i in range(0, 10_000, 1000):
                cl.post("/ngsi-ld/v1/entityOperations/upsert", json=ents[i : i + 1000])
            rate = 10_000 / (time.perf_counter() - t0)
            rows.append(
                (backend, "batch upsert 10,000 existing entities", f"{rate:,.0f} entities/s", ">= 5,000")
            )
            for i in range(10_000, 100_000, 2000):
                cl.post("/ngsi-ld/v1/entityOperations/upsert", json=ents[i : i + 2000])
            # 2. query over 100,000
            samples = []
            for k in range(60):
                x = (k * 13) % 90
                t0 = time.perf_counter()
                r = cl.get("/ngsi-ld/v1/entities", params={"type": "Meter", "q": f"offtake>{x}", "limit": 10})
                samples.append(time.perf_counter() - t0)
                assert r.status_code == 200 and len(r.json()) == 10, r.text
            rows.append(
                (
                    backend,
                    "GET type=Meter&q=offtake>x, 100k entities, page 10",
                    f"p50 {p50(samples):.1f} ms",
                    "<= 50 ms",
                )
            )
            # 3. retrieve one
            samples = []
            for k in range(300):
                t0 = time.perf_counter()
                r = cl.get(f"/ngsi-ld/v1/entities/urn:ngsi-ld:Meter:bench-{(k * 331) % 100_000:06d}")
                samples.append(time.perf_counter() - t0)
                assert r.status_code == 200
            rows.append((backend, "GET /entities/{id}", f"p50 {p50(samples):.2f} ms", "<= 5 ms"))
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
    print("| backend | measure | result | target |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
