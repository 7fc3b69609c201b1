"""Benchmark: a federated NGSI-LD query over 20 community nodes on loopback.

A city node and 20 community nodes, each a uvicorn server (SQLite file) in its own process on
127.0.0.1; every community registers itself at the city (ParentRegistration) and holds one
EnergyCommunity entity and 10 Buildings. Measured at the city, with ``time.perf_counter``:

- ``GET /entities?type=EnergyCommunity``: forwarded to the 20 nodes in parallel and merged
  (median and p95 of repeated queries; target p50 <= 300 ms);
- the same query with one node down (its process killed, registration left behind): connection
  refused, partial answer flagged in ``NGSILD-Warning``;
- the same query with one node hung (accepts connections, never answers): cut at the per-source
  timeout (1.5 s by default); target <= 2 s;
- the city twin (``GET /api/network/aggregate``): every node's open card and KPIs read in
  parallel and summed (the city runs with the ``network`` role);
- "communities like mine" at the city over the 20 nodes' cards, fetched anew for every query
  (``BRIGHT_DISCOVERY_MAX_AGE_S=0``: the worst case; the default reuses them for 30 s).

Nodes run with ``auth="open"`` and admit each other as network members (their requests are
signed, RFC 9421). Wall time per query (``time.perf_counter``) and the CPU time of all the node
processes together during each series (``/proc/<pid>/stat``), since the machine is shared.

Run: ``.venv/bin/python bench/bench_federation.py [--nodes 20] [--repeat 30]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

NGSI = "/ngsi-ld/v1"


def free_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def serve(
    db: str, name: str, port: int, parent: str | None, timeout_s: float, unsigned: bool = False
) -> None:
    """Run one node (in a child process) until killed; the node without a parent is the city."""
    import logging

    import uvicorn

    from bright.api.app import create_app
    from bright.api.subscriptions import install
    from bright.config import Settings
    from bright.network.federation import FederationConfig
    from bright.twin.db import make_engine
    from bright.twin.service import TwinService

    logging.basicConfig(level=logging.ERROR)
    os.environ["BRIGHT_DISCOVERY_MAX_AGE_S"] = "0"
    extra = {"role": "network", "city_refresh_s": "3600"} if parent is None else {}
    settings = Settings(database_url=db, node_name=name, auth="open", extra=extra)
    service = TwinService(make_engine(db), settings)
    app = create_app(settings, service=service)
    url = f"http://127.0.0.1:{port}"
    config = FederationConfig(
        node_id=name, public_url=url, parent_url=parent, refresh_s=5.0, forward_timeout_s=timeout_s
    )
    install(app, service, config=config)
    if unsigned:
        from bright.network.signing import attach_identity

        attach_identity(service, None)  # the node's requests go out unsigned (--unsigned)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="on")
    )
    server.run()


def start_node(
    tmp: Path,
    name: str,
    parent: str | None = None,
    timeout_s: float = 1.5,
    *,
    wait: bool = True,
    unsigned: bool = False,
) -> tuple[mp.Process, str]:
    """Start a node in a child process; ``wait``: until it answers (else see :func:`wait_ready`)."""
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    proc = mp.Process(
        target=serve, args=(f"sqlite:///{tmp / name}.db", name, port, parent, timeout_s), daemon=True
    )
    proc.start()
    url = f"http://127.0.0.1:{port}"
    if wait:
        wait_ready(url, name)
    return proc, url


def wait_ready(url: str, name: str, timeout_s: float = 300.0) -> None:
    """Wait until a node answers ``/health`` (starting 20 nodes on a loaded 2-CPU machine is slow)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"node {name} did not start")
        time.sleep(0.1)


BRIGHT_LINK = {
    "Link": '<https://w3id.org/bright/context.jsonld>; rel="http://www.w3.org/ns/json-ld#context"; '
    'type="application/ld+json"'
}


def admit(city: str, community_urls: list[str]) -> None:
    """The operators admit each other's nodes (signed requests from unknown keys are refused)."""
    did = {u: httpx.get(u + "/api/network/node", timeout=10).json()["did"] for u in [city, *community_urls]}
    for i, u in enumerate(community_urls):
        for at, who, name in ((city, u, f"community-{i}"), (u, city, "city")):
            r = httpx.post(
                at + "/api/network/members", json={"did": did[who], "nodeId": name, "url": who}, timeout=10
            )
            r.raise_for_status()


def seed(url: str, i: int) -> None:
    cid = f"urn:ngsi-ld:EnergyCommunity:c{i}"
    card = {
        "name": f"Community {i}",
        "lon": 4.30 + 0.005 * i,
        "lat": 50.82 + 0.003 * i,
        "municipality": "Ixelles",
        "members": {"households": 20 + i, "schools": int(i % 3 == 0)},
        "technologies": {"pv_kwp": 50.0 + i, "storage_kwh": 10.0 * (i % 4)},
        "sharing_method": "pro_rata",
        "description": {
            "en": "A neighbourhood sharing rooftop solar" + (" with its school" if i % 3 == 0 else "")
        },
    }
    httpx.put(f"{url}/api/network/cards/{cid}", json=card, timeout=30).raise_for_status()
    period = {"from": "2026-10-01T00:00:00+02:00", "to": "2026-11-01T00:00:00+01:00"}
    kpis = [
        {
            "id": f"urn:ngsi-ld:KeyPerformanceIndicator:c{i}:{name}:pro_rata:monthly:2026-10-01",
            "type": "KeyPerformanceIndicator",
            "kpiValue": {"type": "Property", "value": value},
            "calculationPeriod": {"type": "Property", "value": period},
            "calculationFrequency": {"type": "Property", "value": "monthly"},
            "sharingMethod": {"type": "Property", "value": "pro_rata"},
            "indicator": {"type": "Property", "value": name},
            "refEnergyCommunity": {"type": "Relationship", "object": cid},
        }
        for name, value in (
            ("offtake_kwh", 4000.0 + i),
            ("injection_kwh", 2500.0 + i),
            ("shared_kwh", 900.0 + i),
        )
    ]
    r = httpx.post(url + NGSI + "/entityOperations/upsert", json=kpis, headers=BRIGHT_LINK, timeout=30)
    r.raise_for_status()
    batch = [
        {
            "id": f"urn:ngsi-ld:Building:c{i}-b{j}",
            "type": "Building",
            "category": {"type": "Property", "value": "school" if j == 0 else "residential"},
            "offtake": {"type": "Property", "value": 1.5 * j, "unitCode": "KWH"},
        }
        for j in range(10)
    ]
    r = httpx.post(url + NGSI + "/entityOperations/create", json=batch, timeout=30)
    r.raise_for_status()


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes (Linux ``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def timed_queries(
    city: str,
    repeat: int,
    path: str = NGSI + "/entities",
    params: dict[str, Any] | None = None,
    *,
    check: bool = True,
) -> tuple[list[float], httpx.Response]:
    times = []
    last = None
    params = params if params is not None else {"type": "EnergyCommunity", "limit": 100}
    with httpx.Client(timeout=30) as client:
        for _ in range(repeat):
            t0 = time.perf_counter()
            last = client.get(city + path, params=params, headers=BRIGHT_LINK)
            times.append(time.perf_counter() - t0)
            if check:
                last.raise_for_status()
    assert last is not None
    return times, last


def p(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument(
        "--unsigned",
        action="store_true",
        help="the nodes send unsigned requests (no RFC 9421 signature, nonce or peer audit): the cost of signing",
    )
    args = ap.parse_args()
    mp.set_start_method("spawn", force=True)
    procs: list[mp.Process] = []
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        try:
            city_proc, city = start_node(tmp, "city", unsigned=args.unsigned)
            procs.append(city_proc)
            community_urls = []
            for i in range(args.nodes):
                proc, url = start_node(tmp, f"community-{i}", parent=city, wait=False, unsigned=args.unsigned)
                procs.append(proc)
                community_urls.append(url)
            for i, url in enumerate(community_urls):
                wait_ready(url, f"community-{i}")
            admit(city, community_urls)
            for i, url in enumerate(community_urls):
                seed(url, i)
            deadline = time.monotonic() + 300
            while (
                len(
                    httpx.get(
                        city + NGSI + "/csourceRegistrations",
                        params={"type": "KeyPerformanceIndicator"},
                        headers=BRIGHT_LINK,
                    ).json()
                )
                < args.nodes
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("communities did not all register at the city")
                time.sleep(0.2)

            pids = [p.pid for p in procs if p.pid is not None]
            timed_queries(city, 3)  # warm-up: connections, caches
            c0 = cpu_s(pids)
            all_up, resp = timed_queries(city, args.repeat)
            cpu_query = (cpu_s(pids) - c0) / args.repeat
            n_all = len(resp.json())

            # The city twin: every node's card and KPIs, summed.
            timed_queries(city, 2, "/api/network/aggregate", {})
            c0 = cpu_s(pids)
            agg_times, agg = timed_queries(city, args.repeat, "/api/network/aggregate", {})
            cpu_agg = (cpu_s(pids) - c0) / args.repeat
            totals = agg.json()["totals"]
            agg_ok = (
                totals["communities"] == args.nodes
                and abs(totals["kpis"]["shared_kwh"]["value"] - sum(900.0 + i for i in range(args.nodes)))
                < 1e-6
            )

            # Communities like c0 at the city, over every node's cards (fetched for each query).
            like = {"like": "urn:ngsi-ld:EnergyCommunity:c0", "schools": "true"}
            timed_queries(city, 2, "/api/network/search", like, check=False)
            c0 = cpu_s(pids)
            n_search = max(5, args.repeat // 3)
            search_times, found = timed_queries(city, n_search, "/api/network/search", like, check=False)
            cpu_search = (cpu_s(pids) - c0) / n_search
            search_ok = found.status_code == 200 and bool(found.json()["results"])
            if not search_ok:
                print("search at the city:", found.status_code, found.text[:500], file=sys.stderr)
            missing_agg = [u["node"] for u in agg.json()["unanswered"]]
            if missing_agg:
                print("aggregate: nodes that did not answer:", missing_agg, file=sys.stderr)

            # One node down: kill its process (its registration stays at the city).
            os.kill(procs[1 + args.nodes // 2].pid, signal.SIGKILL)
            procs[1 + args.nodes // 2].join(5)
            one_down, resp_down = timed_queries(city, max(5, args.repeat // 3))
            warned_down = "NGSILD-Warning" in resp_down.headers

            # One node hung: a socket that accepts and never answers, registered at the city.
            hung = free_socket()
            hung.listen(64)
            reg = {
                "id": "urn:ngsi-ld:ContextSourceRegistration:hung",
                "type": "ContextSourceRegistration",
                "information": [{"entities": [{"type": "EnergyCommunity"}]}],
                "endpoint": f"http://127.0.0.1:{hung.getsockname()[1]}",
            }
            httpx.post(
                city + NGSI + "/csourceRegistrations", json=reg, headers=BRIGHT_LINK, timeout=10
            ).raise_for_status()
            one_hung, resp_hung = timed_queries(city, 5)
            warned_hung = "Timeout" in resp_hung.headers.get("NGSILD-Warning", "")
            hung.close()
        finally:
            for proc in procs:
                if proc.is_alive():
                    proc.kill()
                    proc.join(5)

    p50 = statistics.median(all_up)
    rows = [
        (f"federated query, {args.nodes} nodes up: p50", f"{p50 * 1000:.0f} ms", "<= 300 ms", p50 <= 0.3),
        (f"federated query, {args.nodes} nodes up: p95", f"{p(all_up, 0.95) * 1000:.0f} ms", "-", None),
        ("federated query: CPU of all nodes per query", f"{cpu_query * 1000:.0f} ms", "-", None),
        (
            "entities in the answer (20 communities + none local)",
            str(n_all),
            str(args.nodes),
            n_all == args.nodes,
        ),
        (
            "one node down (killed): median",
            f"{statistics.median(one_down) * 1000:.0f} ms",
            "<= 2000 ms",
            max(one_down) <= 2.0 and warned_down,
        ),
        (
            "one node hung (no answer, 1.5 s timeout): max",
            f"{max(one_hung) * 1000:.0f} ms",
            "<= 2000 ms",
            max(one_hung) <= 2.0 and warned_hung,
        ),
        (
            f"city twin aggregate over {args.nodes} nodes: p50 (CPU of all nodes per query)",
            f"{statistics.median(agg_times) * 1000:.0f} ms ({cpu_agg * 1000:.0f} ms)",
            "-",
            agg_ok,
        ),
        (
            f"communities like c0 at the city, {args.nodes} nodes' cards fetched each time: p50 (CPU)",
            f"{statistics.median(search_times) * 1000:.0f} ms ({cpu_search * 1000:.0f} ms)",
            "-",
            search_ok,
        ),
    ]
    signed = "unsigned requests" if args.unsigned else "signed requests (RFC 9421)"
    print(f"\nFederated query benchmark ({os.cpu_count()} CPUs, {args.repeat} repeats, {signed})\n")
    print("| figure | measured | target | pass |")
    print("|---|---|---|---|")
    for name, val, target, ok in rows:
        print(f"| {name} | {val} | {target} | {'-' if ok is None else ('pass' if ok else 'FAIL')} |")
    return 0 if all(ok is not False for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
