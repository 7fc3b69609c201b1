"""Hosting benchmark: one PostgreSQL node hosting 200 communities x 50 members, a year of 15-min data.

Each community is its own NGSI-LD tenant (``c001``..``c200``) with an EnergyCommunity, 50
EnergyProsumers and their Meters; every meter has a year (2016, 35,136 quarter-hours) of gross
offtake, and the 40 % of members with PV also of injection, built from the bundled SimBench
profiles (households and small businesses, PV), scaled and shifted per member.

The data set is bulk-loaded straight into the series store (chunks encoded with the store's own
codec, ``COPY`` into ``series`` and ``series_chunks``), and its build time is reported apart. A
uvicorn server (subprocess) then answers the community dashboard's data request for random
communities: the year view (``/api/communities/{id}/balance?freq=1D&level=community``, daily values
as the dashboard's year chart draws them) and the month view (``freq=1h``), with ``NGSILD-Tenant``.
Reported: p50/p95 wall time per request (client side) and the CPU time per request of the server
process and of the PostgreSQL backends serving it. The machine is shared with other work: wall time
includes waiting for the CPU.

Usage::

    python bench/bench_hosting.py [--communities 200] [--members 50] [--requests 100] [--keep]

Target: year-view p50 <= 300 ms with 200 communities hosted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
import zlib
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bright.config import Settings  # noqa: E402
from bright.datasets import simbench_profiles  # noqa: E402
from bright.twin.db import make_engine  # noqa: E402
from bright.twin.series import CHUNK_ORIGIN_US, _encode, kind_for_unit  # noqa: E402
from bright.twin.service import TwinService  # noqa: E402
from bright.twin.vocabulary import bright_context  # noqa: E402

ADMIN = os.environ.get("BRIGHT_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
SPAN_US = 28 * 86_400 * 1_000_000  # the store's chunk span for quarter-hour series
LOADS = ["H0-A", "H0-B", "H0-C", "H0-G", "H0-H", "H0-L", "G0-A", "G1-A", "G4-A", "L0-A"]


def _prop(value: object, unit: str | None = None) -> dict[str, object]:
    out: dict[str, object] = {"type": "Property", "value": value}
    if unit:
        out["unitCode"] = unit
    return out


def community_entities(key: str, n: int) -> list[dict[str, object]]:
    cid = f"urn:ngsi-ld:EnergyCommunity:{key}"
    members = [f"urn:ngsi-ld:EnergyProsumer:{key}:m{i:02d}" for i in range(n)]
    ents: list[dict[str, object]] = [
        {
            "id": cid,
            "type": "EnergyCommunity",
            "name": _prop(f"Community {key}"),
            "legalForm": _prop("REC"),
            "sharingMethod": _prop("pro_rata"),
            "pricingMethod": _prop("fixed"),
            "supplierEnergyPrice": _prop(0.30),
            "feedInPrice": _prop(0.05),
            "communityPrice": _prop(0.17),
            "hasMember": {"type": "Relationship", "object": members},
        }
    ]
    for i, pid in enumerate(members):
        meter = f"urn:ngsi-ld:Meter:{key}:m{i:02d}"
        ents.append({"id": meter, "type": "Meter", "accessPointId": _prop(f"54144800{zlib.crc32(key.encode()) % 10**4:04d}{i:06d}"),
                     "locality": _prop("lv_cabin")})  # fmt: skip
        ents.append({"id": pid, "type": "EnergyProsumer", "name": _prop(f"Member {i}"),
                     "roleType": _prop("prosumer" if i % 5 < 2 else "consumer"),
                     "memberOf": {"type": "Relationship", "object": cid},
                     "isMeteredBy": {"type": "Relationship", "object": meter}})  # fmt: skip
    for e in ents:
        e["@context"] = "https://w3id.org/bright/context.jsonld"
    return ents


def member_energy(
    profiles: pd.DataFrame, rng: np.random.Generator, n: int
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Gross offtake and injection (kWh per quarter-hour) of ``n`` members; injection None without PV."""
    pv = profiles["PV3"].to_numpy()
    out = []
    for i in range(n):
        load = profiles[LOADS[rng.integers(len(LOADS))]].to_numpy()
        load = np.roll(load, int(rng.integers(-8, 9))) * rng.uniform(0.8, 4.0) * 0.25
        if i % 5 < 2:
            gen = pv * rng.uniform(3.0, 9.0) * 0.25
            net = load - gen
            out.append((np.round(np.maximum(net, 0.0), 4), np.round(np.maximum(-net, 0.0), 4)))
        else:
            out.append((np.round(load, 4), None))
    return out


def bulk_load(engine, tenant: str, series: list[tuple[str, str, np.ndarray]], t_us: np.ndarray) -> int:  # type: ignore[no-untyped-def]
    """COPY catalogue rows and encoded chunks of ``(entity_id, attribute IRI, values)`` into the store."""
    now = int(time.time() * 1e6)
    cidx = (t_us - CHUNK_ORIGIN_US) // SPAN_US
    bounds = np.flatnonzero(np.diff(cidx)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [t_us.size]])
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            with cur.copy("COPY series (tenant, entity_id, attr, dataset_id, unit_code, kind, chunk_span_s, first_us, "
                          "last_us, created_us, modified_us) FROM STDIN") as cp:  # fmt: skip
                for eid, attr, _ in series:
                    cp.write_row((tenant, eid, attr, "", "KWH", kind_for_unit("KWH"), SPAN_US // 1_000_000,
                                  int(t_us[0]), int(t_us[-1]), now, now))  # fmt: skip
            cur.execute("SELECT id, entity_id, attr FROM series WHERE tenant = %s", (tenant,))
            ids = {(e, a): i for i, e, a in cur.fetchall()}
            cols = ("series_id", "chunk_start", "n", "n_valid", "t_first", "t_last", "step_us", "v_sum", "v_sumsq",
                    "v_min", "v_max", "modified_us", "times", "vals")  # fmt: skip
            with cur.copy(f"COPY series_chunks ({', '.join(cols)}) FROM STDIN") as cp:
                for eid, attr, values in series:
                    sid = ids[(eid, attr)]
                    for a, b in zip(starts, ends, strict=True):
                        row = _encode(t_us[a:b], values[a:b], now)
                        cp.write_row(
                            (sid, CHUNK_ORIGIN_US + int(cidx[a]) * SPAN_US, *(row[c] for c in cols[2:]))
                        )
        raw.commit()
    finally:
        raw.close()
    return len(series)


def build(url: str, n_communities: int, n_members: int) -> dict[str, float]:
    engine = make_engine(url)
    twin = TwinService(engine, Settings(database_url=url))  # creates the schema (all migrations)
    from bright.services.tenants import TenantRegistry

    registry = TenantRegistry(engine)
    profiles = simbench_profiles()
    t_us = np.asarray(pd.DatetimeIndex(profiles.index).as_unit("us").asi8, dtype=np.int64)
    ctx = bright_context()
    off_iri, inj_iri = ctx.expand("offtake"), ctx.expand("injection")
    rng = np.random.default_rng(16)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    ent_s = ser_s = 0.0
    n_series = n_points = 0
    for c in range(n_communities):
        key = f"c{c + 1:03d}"
        a = time.perf_counter()
        registry.create(key, title=f"Community {key}", community_id=f"urn:ngsi-ld:EnergyCommunity:{key}")
        res = twin.batch_upsert(key, community_entities(key, n_members), ctx)
        assert not res["errors"], res["errors"][:1]
        b = time.perf_counter()
        series = []
        for i, (off, inj) in enumerate(member_energy(profiles, rng, n_members)):
            meter = f"urn:ngsi-ld:Meter:{key}:m{i:02d}"
            series.append((meter, off_iri, off))
            if inj is not None:
                series.append((meter, inj_iri, inj))
        n_series += bulk_load(engine, key, series, t_us)
        n_points += len(series) * t_us.size
        ent_s += b - a
        ser_s += time.perf_counter() - b
        if (c + 1) % 20 == 0:
            print(
                f"  {c + 1}/{n_communities} communities built ({time.perf_counter() - wall0:.0f} s)",
                flush=True,
            )
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    engine.dispose()
    return {
        "wall_s": time.perf_counter() - wall0,
        "cpu_s": time.process_time() - cpu0,
        "entities_s": ent_s,
        "series_s": ser_s,
        "series": n_series,
        "points": n_points,
    }


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pg_cpu(admin, database: str) -> dict[int, float]:  # type: ignore[no-untyped-def]
    """CPU seconds of the PostgreSQL backends serving ``database`` (same machine), by pid."""
    with admin.connect() as conn:
        pids = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"),
            {"d": database},
        ).scalars()
        out = {}
        for pid in pids:
            try:
                out[int(pid)] = _cpu_of(int(pid))
            except (FileNotFoundError, PermissionError):
                continue
    return out


def serve_and_measure(url: str, n_communities: int, n_requests: int) -> dict[str, dict[str, float]]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "BRIGHT_DATABASE_URL": url, "BRIGHT_AUTH": "open"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "bright.api.app:app_from_env", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        env=env, cwd=str(ROOT),
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    out: dict[str, dict[str, float]] = {}
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with httpx.Client(timeout=60) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if client.get(base + "/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not start")
                time.sleep(0.3)
            rng = np.random.default_rng(7)
            views = {
                "year view (freq=1D)": {"freq": "1D", "level": "community", "start": "2016-01-01", "end": "2017-01-01"},
                "month view (freq=1h)": {"freq": "1h", "level": "community", "month": "2016-06"},
            }  # fmt: skip
            for label, params in views.items():
                keys = [f"c{int(k) + 1:03d}" for k in rng.integers(0, n_communities, n_requests)]
                # Warm-up on other communities (imports, connection pool).
                for k in ("c001", f"c{n_communities:03d}"):
                    client.get(f"{base}/api/communities/urn:ngsi-ld:EnergyCommunity:{k}/balance", params=params,
                               headers={"NGSILD-Tenant": k})  # fmt: skip
                times = []
                database = url.rsplit("/", 1)[-1]
                pg0 = _pg_cpu(admin, database)
                cpu0 = _cpu_of(proc.pid)
                for k in keys:
                    t0 = time.perf_counter()
                    r = client.get(f"{base}/api/communities/urn:ngsi-ld:EnergyCommunity:{k}/balance", params=params,
                                   headers={"NGSILD-Tenant": k})  # fmt: skip
                    times.append(time.perf_counter() - t0)
                    assert r.status_code == 200, r.text[:300]
                    body = r.json()
                    assert body["community"] and body["community"][0]["offtake_kwh"] is not None
                cpu = _cpu_of(proc.pid) - cpu0
                pg1 = _pg_cpu(admin, database)
                pg_cpu = sum(v - pg0.get(pid, 0.0) for pid, v in pg1.items())
                times.sort()
                out[label] = {
                    "p50_ms": 1000 * statistics.median(times),
                    "p95_ms": 1000 * times[int(0.95 * (len(times) - 1))],
                    "server_cpu_ms": 1000 * cpu / len(times),
                    "postgres_cpu_ms": 1000 * pg_cpu / len(times),
                    "n": len(times),
                }
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        admin.dispose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--communities", type=int, default=200)
    ap.add_argument("--members", type=int, default=50)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--keep", action="store_true", help="keep the database (its URL is printed)")
    ap.add_argument("--url", help="reuse an existing database built by this script (skips the build)")
    args = ap.parse_args()
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    name = None
    url = args.url
    if url is None:
        name = f"bright_bench_hosting_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = ADMIN.rsplit("/", 1)[0] + f"/{name}"
    try:
        if args.url is None:
            print(
                f"building {args.communities} communities x {args.members} members, a year of 15-min data ..."
            )
            b = build(url, args.communities, args.members)
            size = None
            with admin.connect() as conn:
                size = conn.execute(text(f"SELECT pg_database_size('{name}')")).scalar_one()
            print(
                f"build: {b['wall_s']:.0f} s wall, {b['cpu_s']:.0f} s CPU (entities {b['entities_s']:.0f} s, "
                f"series {b['series_s']:.0f} s); {b['series']:,} series, {b['points']:,} values, "
                f"database {size / 1e9:.2f} GB"
            )
        results = serve_and_measure(url, args.communities, args.requests)
        for label, r in results.items():
            print(
                f"{label}: p50 {r['p50_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms; CPU per request: server "
                f"{r['server_cpu_ms']:.0f} ms + PostgreSQL {r['postgres_cpu_ms']:.0f} ms ({r['n']} requests over "
                "random communities)"
            )
        year = results["year view (freq=1D)"]["p50_ms"]
        print(f"target year-view p50 <= 300 ms: {'met' if year <= 300 else 'NOT met'} ({year:.0f} ms)")
    finally:
        if name is not None and not args.keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        elif name is not None:
            print(f"kept {url}")
        admin.dispose()


if __name__ == "__main__":
    main()
