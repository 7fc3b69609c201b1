"""Cost of an exact ``count=true`` for a filtered caller (docs/access.md, "Counts").

A node with ``auth=required`` holds one community of N members (a meter, a PV device and an
EnergyProsumer each: 3 N entities). ``GET /ngsi-ld/v1/entities?type=Meter,EnergyProsumer,
PhotovoltaicDevice&limit=0`` is timed for the node's manager (no filtering) and for a member
(filtered: the middleware re-runs the query in pages of 1000 and decides every entity), with and
without ``count=true``. Wall and CPU time (``time.process_time``) per request, median of 5; the
machine may be shared, so wall time includes waiting for the CPU.

Usage: ``python bench/bench_access_counts.py [N ...]`` (default 300 1000).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from bright.api.app import create_app
from bright.config import Settings
from bright.twin.context import BRIGHT_CONTEXT_URL
from bright.twin.vocabulary import bright_context
from bright.web.users import create_token

LINK = {
    "Link": f'<{BRIGHT_CONTEXT_URL}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
}
QUERY = "/ngsi-ld/v1/entities?type=Meter,EnergyProsumer,PhotovoltaicDevice&limit=0"


def _entities(n: int) -> list[dict[str, object]]:
    cid = "urn:ngsi-ld:EnergyCommunity:bench"
    out: list[dict[str, object]] = []
    members = []
    for i in range(n):
        pid, mid, pv = (
            f"urn:ngsi-ld:{t}:bench:m{i}" for t in ("EnergyProsumer", "Meter", "PhotovoltaicDevice")
        )
        members.append(pid)
        out.append(
            {"id": mid, "type": "Meter", "accessPointId": {"type": "Property", "value": f"5414{i:014d}"}}
        )
        out.append({"id": pv, "type": "PhotovoltaicDevice", "peakPower": {"type": "Property", "value": 3.0}})
        out.append(
            {
                "id": pid,
                "type": "EnergyProsumer",
                "memberOf": {"type": "Relationship", "object": cid},
                "isMeteredBy": {"type": "Relationship", "object": mid},
                "controls": {"type": "Relationship", "object": pv},
            }
        )
    out.insert(
        0, {"id": cid, "type": "EnergyCommunity", "hasMember": {"type": "Relationship", "object": members}}
    )
    return out


def run(n: int) -> list[tuple[str, str, float, float]]:
    """(case, count header, wall ms, cpu ms) for a community of ``n`` members."""
    db = Path(tempfile.mkdtemp()) / "bench.db"
    app = create_app(Settings(database_url=f"sqlite:///{db}", auth="required"))
    twin = app.state.twin
    ctx = bright_context()
    for e in _entities(n):
        twin.create_entity("", {**e, "@context": BRIGHT_CONTEXT_URL}, ctx)
    _, member = create_token(twin.engine, "m", "member", member_id="urn:ngsi-ld:EnergyProsumer:bench:m2")
    _, root = create_token(twin.engine, "root", "manager")
    rows = []
    with TestClient(app) as client:
        for case, token, extra in (
            ("manager, count=true", root, "&count=true"),
            ("member, no count", member, ""),
            ("member, count=true", member, "&count=true"),
        ):
            h = {"Authorization": f"Bearer {token}", **LINK}
            client.get(QUERY + extra, headers=h)  # warm the caches
            walls, cpus = [], []
            header = ""
            for _ in range(5):
                w0, c0 = time.perf_counter(), time.process_time()
                r = client.get(QUERY + extra, headers=h)
                walls.append((time.perf_counter() - w0) * 1000)
                cpus.append((time.process_time() - c0) * 1000)
                header = r.headers.get("NGSILD-Results-Count", "-")
            rows.append((case, header, statistics.median(walls), statistics.median(cpus)))
    twin.engine.dispose()
    return rows


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [300, 1000]
    print(f"{'members':>8} {'entities':>9}  {'case':<22} {'count':>6} {'wall ms':>9} {'cpu ms':>8}")
    for n in sizes:
        for case, header, wall, cpu in run(n):
            print(f"{n:>8} {3 * n:>9}  {case:<22} {header:>6} {wall:>9.0f} {cpu:>8.0f}")


if __name__ == "__main__":
    main(sys.argv[1:])
