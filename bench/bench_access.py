"""Cost of access control: RFC 9421 signing and verification, and the middleware on a query.

Prints a markdown table: per-operation time of ``signed_headers`` and ``verify_request`` (1 KiB
body, in-memory and database nonce caches), then the p50 of ``GET /ngsi-ld/v1/entities`` (a
community of 50 members: 50 meters, keyValues, limit 100) on one node in-process, with access
control open, as the manager (no filtering) and as a researcher (every meter filtered out).
Wall and CPU (``time.process_time``) times; the machine is shared, so wall times vary.

Usage: ``python bench/bench_access.py``
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def _per_op(fn, n: int) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    return (time.perf_counter() - w0) / n * 1e6, (time.process_time() - c0) / n * 1e6


def main() -> int:
    from fastapi.testclient import TestClient
    from tests.access.conftest import community_entities

    from bright.api.app import create_app
    from bright.config import Settings
    from bright.ledger.identity import NodeIdentity
    from bright.network.signing import DatabaseNonceCache, MemoryNonceCache, signed_headers, verify_request
    from bright.twin.context import BRIGHT_CONTEXT_URL
    from bright.twin.db import make_engine
    from bright.twin.vocabulary import bright_context
    from bright.web.users import create_token

    me = NodeIdentity.generate()
    url = "http://127.0.0.1:8000/ngsi-ld/v1/entities?type=Meter&limit=100"
    body = b"x" * 1024
    rows = []
    sign_w, sign_c = _per_op(lambda: signed_headers(me, "POST", url, {}, body), 2000)
    rows.append(("signed_headers (1 KiB body)", f"{sign_w:.0f} us", f"{sign_c:.0f} us"))
    known = {me.did: me.public}.get

    def verify(cache) -> None:
        h = {k.lower(): v for k, v in signed_headers(me, "POST", url, {}, body).items()}
        verify_request("POST", url, "127.0.0.1:8000", h, body, known_key=known, nonces=cache)

    mem = MemoryNonceCache()
    w, c = _per_op(lambda: verify(mem), 2000)
    rows.append(("sign + verify, nonces in memory", f"{w:.0f} us", f"{c:.0f} us"))
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/n.db")  # the node's engine (WAL)
        db = DatabaseNonceCache(engine)
        w, c = _per_op(lambda: verify(db), 500)
        rows.append(("sign + verify, nonces in SQLite", f"{w:.0f} us", f"{c:.0f} us"))
        engine.dispose()

        os.environ["BRIGHT_DATA_DIR"] = tmp
        ctx = bright_context()
        results = {}
        for label, auth, role in (
            ("open, no credentials", "open", None),
            ("required, manager token", "required", "manager"),
            ("required, researcher token (50 filtered)", "required", "researcher"),
        ):
            dbu = f"sqlite:///{tmp}/{auth}-{role}.db"
            app = create_app(
                Settings(database_url=dbu, auth=auth, extra={"data_dir": f"{tmp}/{auth}-{role}"})
            )
            with TestClient(app) as client:
                for e in community_entities("bench", 50):
                    app.state.twin.create_entity("", {**e, "@context": BRIGHT_CONTEXT_URL}, ctx)
                headers = {
                    "Link": f'<{BRIGHT_CONTEXT_URL}>; rel="http://www.w3.org/ns/json-ld#context"; '
                    'type="application/ld+json"'
                }
                if role:
                    _, value = create_token(app.state.twin.engine, role, role)
                    headers["Authorization"] = f"Bearer {value}"
                walls, c0 = [], time.process_time()
                n = 150
                for _ in range(n):
                    t0 = time.perf_counter()
                    r = client.get(
                        "/ngsi-ld/v1/entities?type=Meter&limit=100&options=keyValues", headers=headers
                    )
                    walls.append(time.perf_counter() - t0)
                    assert r.status_code == 200
                cpu = (time.process_time() - c0) / n
                results[label] = (statistics.median(walls) * 1000, cpu * 1000, len(r.json()))
            app.state.twin.engine.dispose()
    print("| operation | wall per op | CPU per op |")
    print("|---|---|---|")
    for name, w_, c_ in rows:
        print(f"| {name} | {w_} | {c_} |")
    print()
    print("| GET 50 meters (keyValues) | p50 wall | CPU per request | entities returned |")
    print("|---|---|---|---|")
    for label, (w_, c_, n_) in results.items():
        print(f"| {label} | {w_:.1f} ms | {c_:.1f} ms | {n_} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
