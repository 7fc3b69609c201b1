"""A city node and five community nodes on loopback, each its own uvicorn server and SQLite database.

The city is a separate process started as in production, ``bright serve --role network``; the
five community nodes are uvicorn servers in threads of the test process (one import of the
package instead of six), each registered at the city by its ``ParentRegistration``. Each
publishes its card (with members that must never reach the city) and its KPIs (official
figures, a what-if run of another sharing method, a member-level KPI). Checked:

- the city answers a federated NGSI-LD query with every community;
- the city's aggregate (REST and NGSI-LD entities) equals the sum of the KPIs each community
  node serves, ratios recomputed from the sums, what-if and member KPIs left out;
- a node frozen mid-test (its event loop blocked: it accepts connections and never answers) is
  cut at the forward timeout and named in the partial answer; a node stopped without
  unregistering (a crash) is named at once.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bright.twin.context import BRIGHT_CONTEXT_URL

from .loopback import NGSI, Node, admit

LINK = {
    "Link": f'<{BRIGHT_CONTEXT_URL}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
}
BRIGHT = str(Path(sys.executable).with_name("bright"))
FORWARD_TIMEOUT_S = 1.0
N = 5
PERIODS = (
    ("2026-09-01T00:00:00+02:00", "2026-10-01T00:00:00+02:00"),
    ("2026-10-01T00:00:00+02:00", "2026-11-01T00:00:00+01:00"),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A ``bright serve`` process on a free port."""

    def __init__(self, tmp: Path, name: str, *args: str, env: dict[str, str]) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {
            **os.environ,
            "BRIGHT_AUTH": "open",
            "BRIGHT_NODE_ID": name,
            "BRIGHT_NODE_NAME": name,
            "BRIGHT_FORWARD_TIMEOUT_S": str(FORWARD_TIMEOUT_S),
            **env,
        }
        self.log = open(tmp / f"{name}.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [BRIGHT, "serve", "--port", str(self.port), "--database", f"sqlite:///{tmp / name}.db", *args],
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc.poll() is None, (
                f"node {self.name} exited: {Path(self.log.name).read_text()[-2000:]}"
            )
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"node {self.name} did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def card(i: int) -> dict[str, Any]:
    return {
        "name": f"Community {i}",
        "lon": 4.35 + 0.01 * i,
        "lat": 50.84 + 0.005 * i,
        "municipality": "Ixelles" if i % 2 else "Schaerbeek",
        "members": {"households": 10 + i, "schools": i % 2, "smes": i, "public_buildings": 1},
        "technologies": {
            "pv_kwp": 40.0 + 7.5 * i,
            "storage_kwh": 10.0 * i,
            "ev_chargers": i,
            "heat_pumps": 2 * i,
        },
        "sharing_method": "pro_rata",
        "contact": {"organisation": f"Community {i}", "email": f"info@community{i}.example"},
    }


def official(i: int, month: int) -> dict[str, float]:
    """The community's official monthly figures (pro rata): offtake, injection, shared, CO2."""
    offtake = 1000.0 + 137.5 * i + 11.0 * month
    injection = 600.0 + 91.25 * i + 7.0 * month
    shared = 0.4 * min(offtake, injection) + i
    return {
        "offtake_kwh": offtake,
        "injection_kwh": injection,
        "shared_kwh": shared,
        "co2_avoided_kg": 0.16 * shared,
        "self_sufficiency": shared / offtake,
        "self_consumption_rate": shared / injection,
    }


def kpi(
    i: int, indicator: str, value: float, period: tuple[str, str], method: str, **extra: Any
) -> dict[str, Any]:
    cid = f"urn:ngsi-ld:EnergyCommunity:c{i}"
    e = {
        "id": f"urn:ngsi-ld:KeyPerformanceIndicator:c{i}:{indicator}:{method}:monthly:{period[0][:10]}",
        "type": "KeyPerformanceIndicator",
        "kpiValue": {"type": "Property", "value": value},
        "calculationPeriod": {"type": "Property", "value": {"from": period[0], "to": period[1]}},
        "calculationFrequency": {"type": "Property", "value": "monthly"},
        "sharingMethod": {"type": "Property", "value": method},
        "indicator": {"type": "Property", "value": indicator},
        "refEnergyCommunity": {"type": "Relationship", "object": cid},
    }
    e.update(extra)
    return e


def seed(node: Node, i: int) -> None:
    cid = f"urn:ngsi-ld:EnergyCommunity:c{i}"
    r = httpx.put(f"{node.url}/api/network/cards/{cid}", json=card(i), timeout=30)
    assert r.status_code == 201, r.text
    # Member-level data on the community entity: it must never reach the city.
    r = httpx.post(
        f"{node.url}{NGSI}/entities/{cid}/attrs",
        json={
            "hasMember": {"type": "Relationship", "object": f"urn:ngsi-ld:EnergyProsumer:c{i}-secret-member"}
        },
        headers=LINK,
        timeout=30,
    )
    assert r.status_code == 204, r.text
    batch = []
    for month, period in zip((9, 10), PERIODS, strict=True):
        for indicator, value in official(i, month).items():
            batch.append(kpi(i, indicator, value, period, "pro_rata"))
        # A what-if run of another method: never added to the official figures.
        batch.append(kpi(i, "shared_kwh", 99_999.0, period, "fixed"))
    # A member-level KPI: never aggregated.
    batch.append(
        kpi(
            i,
            "offtake_kwh",
            55_555.0,
            PERIODS[1],
            "member",
            refMember={"type": "Relationship", "object": f"urn:ngsi-ld:EnergyProsumer:c{i}-secret-member"},
        )
        | {"id": f"urn:ngsi-ld:KeyPerformanceIndicator:c{i}:member:offtake"}
    )
    r = httpx.post(f"{node.url}{NGSI}/entityOperations/upsert", json=batch, headers={**LINK}, timeout=30)
    assert r.status_code in (201, 204), r.text


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, list[Node]]]:
    tmp = tmp_path_factory.mktemp("multinode")
    city = Proc(
        tmp,
        "city",
        "--role",
        "network",
        env={"BRIGHT_CITY_NAME": "brussels", "BRIGHT_CITY_REFRESH_S": "0.5"},
    )
    nodes: list[Node] = []
    try:
        city.wait_ready()
        nodes += [
            Node(tmp, f"community-{i}", parent=city.url, timeout_s=FORWARD_TIMEOUT_S, refresh_s=2.0)
            for i in range(N)
        ]
        # The operators admit each other's nodes: the city and the communities sign their requests.
        city_did = httpx.get(city.url + "/api/network/node", timeout=10).json()["did"]
        for n in nodes:
            admit(city.url, n.did, n.name, n.url)
            admit(n.url, city_did, "city", city.url)
        for i, n in enumerate(nodes):
            seed(n, i)
        deadline = time.monotonic() + 60
        while True:
            # Registered with the types they hold once seeded (cards and KPIs).
            regs = httpx.get(
                city.url + NGSI + "/csourceRegistrations",
                params={"type": "KeyPerformanceIndicator"},
                headers=LINK,
            ).json()
            if len(regs) == N:
                break
            assert time.monotonic() < deadline, f"only {len(regs)} communities registered at the city"
            time.sleep(0.2)
        yield city, nodes
    finally:
        for p in [*nodes, city]:
            p.stop()


def expected_totals(month: int, nodes: range | list[int]) -> dict[str, float]:
    sums: dict[str, float] = {}
    for i in nodes:
        for k, v in official(i, month).items():
            sums[k] = sums.get(k, 0.0) + v
    return sums


def served_kpis(node: Node, period_start: str) -> dict[str, float]:
    """What a community node itself serves: its official KPIs of one month, by indicator."""
    r = httpx.get(
        node.url + NGSI + "/entities",
        params={"type": "KeyPerformanceIndicator", "q": 'sharingMethod=="pro_rata"', "limit": 1000},
        headers=LINK,
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return {
        e["indicator"]["value"]: e["kpiValue"]["value"]
        for e in r.json()
        if e["calculationPeriod"]["value"]["from"].startswith(period_start)
    }


def test_city_answers_a_federated_query(network: tuple[Proc, list[Node]]) -> None:
    city, _ = network
    r = httpx.get(
        city.url + NGSI + "/entities",
        params={"type": "EnergyCommunity", "limit": 100},
        headers=LINK,
        timeout=10,
    )
    assert r.status_code == 200 and "NGSILD-Warning" not in r.headers
    assert sorted(e["id"] for e in r.json()) == [f"urn:ngsi-ld:EnergyCommunity:c{i}" for i in range(N)]
    by_id = {e["id"]: e for e in r.json()}
    assert by_id["urn:ngsi-ld:EnergyCommunity:c3"]["name"]["value"] == "Community 3"
    # Every community node registered itself under its node id.
    regs = httpx.get(
        city.url + NGSI + "/csourceRegistrations", params={"type": "EnergyCommunity"}, headers=LINK
    )
    assert sorted(g["registrationName"] for g in regs.json()) == [f"community-{i}" for i in range(N)]


def test_city_aggregate_equals_the_sum_of_the_communities_kpis(network: tuple[Proc, list[Node]]) -> None:
    city, nodes = network
    r = httpx.get(city.url + "/api/network/aggregate", timeout=30)
    assert r.status_code == 200, r.text
    agg = r.json()
    assert agg["id"] == "urn:ngsi-ld:CityTwin:brussels"
    assert agg["partial"] is False and agg["unanswered"] == [] and "NGSILD-Warning" not in r.headers
    assert agg["period"] == "2026-10-01" and agg["frequency"] == "monthly"  # the latest month by default
    totals = agg["totals"]
    assert totals["communities"] == N and totals["reporting"] == N

    # The sums of what each community node itself serves (asked directly, not through the city).
    served = [served_kpis(n, "2026-10-01") for n in nodes]
    for indicator in ("offtake_kwh", "injection_kwh", "shared_kwh", "co2_avoided_kg"):
        assert totals["kpis"][indicator]["communities"] == N
        assert math.isclose(
            totals["kpis"][indicator]["value"], sum(s[indicator] for s in served), rel_tol=1e-12
        )
    expected = expected_totals(10, range(N))
    assert math.isclose(totals["kpis"]["shared_kwh"]["value"], expected["shared_kwh"], rel_tol=1e-12)
    # Ratios are recomputed from the sums, not averaged.
    assert math.isclose(
        totals["kpis"]["self_sufficiency"]["value"],
        expected["shared_kwh"] / expected["offtake_kwh"],
        rel_tol=1e-12,
    )
    assert math.isclose(
        totals["kpis"]["self_consumption_rate"]["value"],
        expected["shared_kwh"] / expected["injection_kwh"],
        rel_tol=1e-12,
    )
    # Members, technologies and flexible assets from the cards.
    assert totals["members"]["households"] == sum(10 + i for i in range(N))
    assert totals["members"]["total"] == sum(10 + i + i % 2 + i + 1 for i in range(N))
    assert math.isclose(totals["technologies"]["pv_kwp"], sum(40.0 + 7.5 * i for i in range(N)))
    assert totals["flexibility"] == {
        "storage_kwh": sum(10.0 * i for i in range(N)),
        "ev_charging_points": sum(range(N)),
        "heat_pumps": sum(2 * i for i in range(N)),
        "communities_with_flexible_assets": N - 1,
    }
    # Per community: its own figures, the official method, its node.
    c2 = next(c for c in agg["communities"] if c["id"] == "urn:ngsi-ld:EnergyCommunity:c2")
    assert c2["node"] == "community-2" and c2["sharing_method"] == "pro_rata"
    assert c2["kpis"] == pytest.approx(official(2, 10))
    # An earlier month on request.
    sep = httpx.get(city.url + "/api/network/aggregate", params={"period": "2026-09-01"}, timeout=30).json()
    assert math.isclose(
        sep["totals"]["kpis"]["offtake_kwh"]["value"], expected_totals(9, range(N))["offtake_kwh"]
    )

    # Member-level data never reaches the city's aggregate (the card query asks public attributes only).
    text = json.dumps(agg)
    assert "secret-member" not in text and "55555" not in text and "99999" not in text

    # The same figures through the NGSI-LD API of the city (written by the refresher).
    def city_entity() -> dict[str, Any]:
        got = httpx.get(city.url + NGSI + "/entities/urn:ngsi-ld:CityTwin:brussels", headers=LINK, timeout=10)
        return got.json() if got.status_code == 200 else {}

    deadline = time.monotonic() + 30
    while city_entity().get("bright:communityCount", {}).get("value") != N:
        assert time.monotonic() < deadline, f"city entity not refreshed: {city_entity()}"
        time.sleep(0.2)
    ent = city_entity()
    assert ent["memberCount"]["value"] == totals["members"]["total"]
    assert math.isclose(ent["sharedEnergy"]["value"], expected["shared_kwh"], rel_tol=1e-12)
    assert "secret-member" not in json.dumps(ent)
    r = httpx.get(
        city.url + NGSI + "/entities",
        params={
            "type": "KeyPerformanceIndicator",
            "idPattern": "^urn:ngsi-ld:KeyPerformanceIndicator:city-brussels:",
            "local": "true",
        },
        headers=LINK,
        timeout=10,
    )
    assert r.status_code == 200, r.text
    city_kpis = {e["indicator"]["value"]: e for e in r.json()}
    assert math.isclose(city_kpis["offtake_kwh"]["kpiValue"]["value"], expected["offtake_kwh"], rel_tol=1e-12)
    assert math.isclose(
        city_kpis["self_sufficiency"]["kpiValue"]["value"],
        expected["shared_kwh"] / expected["offtake_kwh"],
        rel_tol=1e-12,
    )
    assert city_kpis["shared_kwh"]["calculationPeriod"]["value"] == {
        "from": PERIODS[1][0],
        "to": PERIODS[1][1],
    }


def test_a_node_stopped_mid_test_gives_a_partial_answer_naming_it(network: tuple[Proc, list[Node]]) -> None:
    city, nodes = network
    # Frozen: the kernel still accepts connections, the node never answers: cut at the timeout.
    with nodes[3].frozen():
        t0 = time.perf_counter()
        r = httpx.get(
            city.url + NGSI + "/entities",
            params={"type": "EnergyCommunity", "limit": 100},
            headers=LINK,
            timeout=30,
        )
        elapsed = time.perf_counter() - t0
        assert r.status_code == 200
        assert sorted(e["id"] for e in r.json()) == [
            f"urn:ngsi-ld:EnergyCommunity:c{i}" for i in (0, 1, 2, 4)
        ]
        warning = r.headers["NGSILD-Warning"]
        assert nodes[3].url in warning and f"Timeout after {FORWARD_TIMEOUT_S:g} s" in warning
        assert elapsed < FORWARD_TIMEOUT_S + 5.0  # bounded by the timeout, not by the frozen node

        agg = httpx.get(city.url + "/api/network/aggregate", timeout=30)
        body = agg.json()
        assert body["partial"] is True
        (missing,) = body["unanswered"]
        assert missing["node"] == "community-3" and "Timeout" in missing["error"]
        assert missing["communities"] == ["urn:ngsi-ld:EnergyCommunity:c3"]  # known from the last answer
        assert nodes[3].url in agg.headers["NGSILD-Warning"]
        others = [0, 1, 2, 4]
        assert math.isclose(
            body["totals"]["kpis"]["shared_kwh"]["value"],
            expected_totals(10, others)["shared_kwh"],
            rel_tol=1e-12,
        )

    # Stopped without unregistering (a crash): connection refused, named at once.
    nodes[1].stop(crash=True)
    r = httpx.get(
        city.url + NGSI + "/entities",
        params={"type": "EnergyCommunity", "limit": 100},
        headers=LINK,
        timeout=30,
    )
    assert r.status_code == 200
    assert "urn:ngsi-ld:EnergyCommunity:c1" not in {e["id"] for e in r.json()}
    assert nodes[1].url in r.headers["NGSILD-Warning"]
    body = httpx.get(city.url + "/api/network/aggregate", timeout=30).json()
    assert [m["node"] for m in body["unanswered"]] == ["community-1"]
    assert body["totals"]["communities"] == N - 1
    # Back to normal: the frozen node answers again.
    assert nodes[3].url not in httpx.get(city.url + "/api/network/aggregate", timeout=30).headers.get(
        "NGSILD-Warning", ""
    )
