"""Distributed operations on loopback: a city node and community nodes, each a real uvicorn server.

Community nodes register themselves with the city (ParentRegistration); the city forwards
queries, retrievals and writes along the registrations and merges the answers. Plus the pure
pieces: entity merging (with hypothesis properties), Via loop detection, canonical forwarding.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.network.federation import (
    forward_path,
    forward_query,
    forwarded_via,
    loop_detected,
    merge_entities,
    merge_results,
    via_names,
)

from .loopback import NGSI, Node, connect, wait_for

DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"


def community(i: int) -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:EnergyCommunity:c{i}",
        "type": "EnergyCommunity",
        "name": {"type": "Property", "value": f"Community {i}"},
        "members": {"type": "Property", "value": 10 + i},
    }


@pytest.fixture
def city_and_communities(tmp_path: Path) -> Iterator[tuple[Node, list[Node]]]:
    city = Node(tmp_path, "city")
    # Registrations expire 3 refresh periods (6 s) after the last refresh: long enough to see the
    # crashed node named in the partial answer below.
    nodes = [Node(tmp_path, f"community-{i}", parent=city.url, refresh_s=2.0) for i in range(5)]
    try:
        connect(city, *nodes)
        for i, n in enumerate(nodes):
            assert n.post("/entities", community(i)).status_code == 201
        city.post("/entities", {"id": "urn:ngsi-ld:EnergyCommunity:city", "type": "EnergyCommunity"})

        def registered() -> bool:
            r = city.get("/csourceRegistrations", params={"type": "EnergyCommunity"})
            return r.status_code == 200 and len(r.json()) == 5

        wait_for(registered, "the five community registrations at the city")
        yield city, nodes
    finally:
        for n in [*nodes, city]:
            n.stop()


def test_city_answers_a_federated_query_then_a_partial_one(
    city_and_communities: tuple[Node, list[Node]],
) -> None:
    city, nodes = city_and_communities
    reg = city.get("/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:community-3").json()
    assert reg["endpoint"] == nodes[3].url and reg["mode"] == "inclusive"
    # The node registers the entity types it holds (EnergyCommunity, and whatever else it publishes).
    assert {"type": "EnergyCommunity"} in reg["information"][0]["entities"]

    r = city.get("/entities", params={"type": "EnergyCommunity", "limit": 100})
    assert r.status_code == 200 and "NGSILD-Warning" not in r.headers
    got = {e["id"].rsplit(":", 1)[1]: e for e in r.json()}
    assert sorted(got) == ["c0", "c1", "c2", "c3", "c4", "city"]
    assert got["c2"]["members"] == {"type": "Property", "value": 12}
    # Ordering and paging apply to the merged answer: members 14, 13, 12, ... (city has none: last).
    r = city.get(
        "/entities", params={"type": "EnergyCommunity", "orderBy": "members;desc", "limit": 2, "offset": 1}
    )
    assert [e["id"].rsplit(":", 1)[1] for e in r.json()] == ["c3", "c2"]

    # One community crashes mid-test: the city still answers, says which node is missing.
    nodes[2].stop(crash=True)
    r = city.get("/entities", params={"type": "EnergyCommunity", "limit": 100, "count": "true"})
    assert r.status_code == 200
    assert sorted(e["id"].rsplit(":", 1)[1] for e in r.json()) == ["c0", "c1", "c3", "c4", "city"]
    assert r.headers["NGSILD-Results-Count"] == "5"
    warning = r.headers["NGSILD-Warning"]
    assert warning.startswith("199 - ") and nodes[2].url in warning
    assert "urn:ngsi-ld:ContextSourceRegistration:community-2" in warning

    # A clean stop unregisters: the city no longer asks that node.
    nodes[4].stop()
    # (The crashed node's registration may expire meanwhile: look for this one by name.)
    wait_for(
        lambda: (
            "community-4"
            not in {
                g.get("registrationName")
                for g in city.get("/csourceRegistrations", params={"type": "EnergyCommunity"}).json()
            }
        ),
        "unregistration",
    )

    # Retrieval by id is forwarded to the registered nodes and merged too.
    r = city.get("/entities/urn:ngsi-ld:EnergyCommunity:c1")
    assert r.status_code == 200 and r.json()["name"]["value"] == "Community 1"
    # local=true stays on the city.
    assert city.get("/entities/urn:ngsi-ld:EnergyCommunity:c1", params={"local": "true"}).status_code == 404


def test_a_source_that_hangs_is_cut_at_its_timeout(tmp_path: Path) -> None:
    city = Node(tmp_path, "city", timeout_s=0.5)
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)  # accepts connections, never answers
    try:
        city.post("/entities", community(0))
        reg = {
            "id": "urn:ngsi-ld:ContextSourceRegistration:hung",
            "type": "ContextSourceRegistration",
            "information": [{"entities": [{"type": "EnergyCommunity"}]}],
            "endpoint": f"http://127.0.0.1:{hung.getsockname()[1]}",
        }
        assert city.post("/csourceRegistrations", reg).status_code == 201
        r = city.get("/entities", params={"type": "EnergyCommunity"})
        assert r.status_code == 200 and [e["id"] for e in r.json()] == ["urn:ngsi-ld:EnergyCommunity:c0"]
        assert "Timeout after 0.5 s" in r.headers["NGSILD-Warning"]
        assert "urn:ngsi-ld:ContextSourceRegistration:hung" in r.headers["NGSILD-Warning"]
    finally:
        hung.close()
        city.stop()


def test_via_loop_detection(tmp_path: Path) -> None:
    city = Node(tmp_path, "city")
    a = Node(tmp_path, "district-a")
    try:
        connect(city, a)
        a.post("/entities", community(1))
        city.post("/entities", community(0))
        # city -> a for EnergyCommunity, and a -> city: a registration loop.
        for src, dst, rid in ((city, a, "to-a"), (a, city, "to-city")):
            body = {
                "id": f"urn:ngsi-ld:ContextSourceRegistration:{rid}",
                "type": "ContextSourceRegistration",
                "information": [{"entities": [{"type": "EnergyCommunity"}]}],
                "endpoint": dst.url,
            }
            assert src.post("/csourceRegistrations", body).status_code == 201
        # A request that already went through the city is refused by the city.
        r = city.get(
            "/entities", params={"type": "EnergyCommunity"}, headers={"Via": "1.1 district-a, 1.1 city"}
        )
        assert r.status_code == 508 and r.json()["type"].endswith("LoopDetected")
        # The loop ends after one round: city -> a -> (city refuses) and the answer still comes back.
        r = city.get("/entities", params={"type": "EnergyCommunity"})
        assert r.status_code == 200
        assert sorted(e["id"] for e in r.json()) == [
            "urn:ngsi-ld:EnergyCommunity:c0",
            "urn:ngsi-ld:EnergyCommunity:c1",
        ]
    finally:
        a.stop()
        city.stop()


def test_exclusive_redirect_and_failing_writes(tmp_path: Path) -> None:
    city = Node(tmp_path, "city")
    meters = Node(tmp_path, "meters")
    try:
        # Forwarded writes, unsigned: a signed peer may not write entities (docs/roles.md).
        city.unsigned()
        excl = {
            "id": "urn:ngsi-ld:ContextSourceRegistration:production",
            "type": "ContextSourceRegistration",
            "information": [
                {
                    "entities": [{"id": "urn:ngsi-ld:Building:school-1", "type": "Building"}],
                    "propertyNames": ["production"],
                }
            ],
            "endpoint": meters.url,
            "mode": "exclusive",
            "operations": ["redirectionOps"],
        }
        redirect = {
            "id": "urn:ngsi-ld:ContextSourceRegistration:meters",
            "type": "ContextSourceRegistration",
            "information": [{"entities": [{"type": "Meter"}]}],
            "endpoint": meters.url,
            "mode": "redirect",
            "operations": ["redirectionOps"],
        }
        for body in (excl, redirect):
            assert city.post("/csourceRegistrations", body).status_code == 201
        school = {
            "id": "urn:ngsi-ld:Building:school-1",
            "type": "Building",
            "name": {"type": "Property", "value": "École 1"},
            "production": {"type": "Property", "value": 12.5, "unitCode": "KWH"},
        }
        assert city.post("/entities", school).status_code == 201
        # The exclusive attribute lives only at the source, the rest only at the city.
        local = city.get("/entities/urn:ngsi-ld:Building:school-1", params={"local": "true"}).json()
        remote = meters.get("/entities/urn:ngsi-ld:Building:school-1").json()
        assert set(local) == {"id", "type", "name"} and set(remote) == {"id", "type", "production"}
        merged = city.get("/entities/urn:ngsi-ld:Building:school-1").json()
        assert merged["production"]["value"] == 12.5 and merged["name"]["value"] == "École 1"

        meter = {"id": "urn:ngsi-ld:Meter:m1", "type": "Meter", "offtake": {"type": "Property", "value": 0.4}}
        assert city.post("/entities", meter).status_code == 201
        assert city.get("/entities/urn:ngsi-ld:Meter:m1", params={"local": "true"}).status_code == 404
        assert meters.get("/entities/urn:ngsi-ld:Meter:m1").json()["offtake"]["value"] == 0.4
        r = httpx.patch(
            f"{city.url}{NGSI}/entities/urn:ngsi-ld:Meter:m1/attrs",
            json={"offtake": {"type": "Property", "value": 0.6}},
        )
        assert r.status_code == 204
        assert city.get("/entities/urn:ngsi-ld:Meter:m1").json()["offtake"]["value"] == 0.6
        assert httpx.delete(f"{city.url}{NGSI}/entities/urn:ngsi-ld:Meter:m1").status_code == 204
        assert meters.get("/entities/urn:ngsi-ld:Meter:m1").status_code == 404

        # An inclusive source that is down: the local write stands, the answer names the source.
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        dead_port = dead.getsockname()[1]
        dead.close()
        down = {
            "id": "urn:ngsi-ld:ContextSourceRegistration:down",
            "type": "ContextSourceRegistration",
            "information": [{"entities": [{"type": "Sensor"}]}],
            "endpoint": f"http://127.0.0.1:{dead_port}",
            "operations": ["redirectionOps"],
        }
        assert city.post("/csourceRegistrations", down).status_code == 201
        r = city.post("/entities", {"id": "urn:ngsi-ld:Sensor:s1", "type": "Sensor"})
        assert r.status_code == 207
        (error,) = r.json()["errors"]
        assert error["registrationId"] == "urn:ngsi-ld:ContextSourceRegistration:down"
        assert error["error"]["status"] == 502
        assert city.get("/entities/urn:ngsi-ld:Sensor:s1", params={"local": "true"}).status_code == 200
    finally:
        meters.stop()
        city.stop()


# --- pure pieces ----------------------------------------------------------------------------------


def test_via_helpers() -> None:
    assert via_names("1.1 city, 1.0 district-a,HTTP/2 x") == ["city", "district-a", "x"]
    assert loop_detected("1.1 city, 1.1 a", "a") and not loop_detected("1.1 city", "a")
    assert not loop_detected(None, "a")
    assert forwarded_via(None, "city") == "1.1 city"
    assert forwarded_via("1.1 a", "city") == "1.1 a, 1.1 city"


def test_forwarding_is_canonical() -> None:
    assert forward_path("/ngsi-ld/v1/entities/") == "/ngsi-ld/v1/entities"
    assert (
        forward_path("/ngsi-ld/v1/entities/urn%3Angsi-ld%3AV%3A1/attrs/")
        == "/ngsi-ld/v1/entities/urn:ngsi-ld:V:1/attrs/"
    )
    assert forward_path("/ngsi-ld/v1/entityOperations/upsert/") == "/ngsi-ld/v1/entityOperations/upsert"
    assert forward_query("id=urn%3Aa%3A1&type=V&local=true") == "id=urn:a:1&type=V"
    assert forward_query("q=name%3D%3D%22a%20b%22") == "q=name==%22a%20b%22"
    assert forward_query(
        "type=V&options=replace", drop_items=[("options", "replace")], extra=[("attrs", "speed")]
    ) == ("type=V&attrs=speed")


def inst(value: Any, observed: str | None = None, ds: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "Property", "value": value}
    if observed:
        out["observedAt"] = observed
    if ds:
        out["datasetId"] = ds
    return out


def test_merge_rules() -> None:
    local = {
        "id": "urn:e:1",
        "type": ["T"],
        "attrs": {"a": [inst(1, "2026-01-01T00:00:00Z")], "b": [inst("local")]},
    }
    newer = {
        "id": "urn:e:1",
        "type": ["T", "U"],
        "attrs": {"a": [inst(2, "2026-02-01T00:00:00Z")], "c": [inst(3)]},
    }
    aux = {"id": "urn:e:1", "type": ["T"], "attrs": {"b": [inst("aux")], "d": [inst(4, ds="urn:d:1")]}}
    out = merge_entities([("local", local), ("inclusive", newer), ("auxiliary", aux)])
    assert out["type"] == ["T", "U"]
    assert out["attrs"]["a"] == [inst(2, "2026-02-01T00:00:00Z")]  # latest observedAt wins
    assert out["attrs"]["b"] == [inst("local")]  # auxiliary never overrides
    assert out["attrs"]["c"] == [inst(3)] and out["attrs"]["d"] == [inst(4, ds="urn:d:1")]
    merged = merge_results(
        [local], [("inclusive", newer), ("inclusive", {"id": "urn:e:2", "type": ["T"], "attrs": {}})]
    )
    assert [d["id"] for d in merged] == ["urn:e:1", "urn:e:2"]


names = st.sampled_from(["a", "b", "c", "d"])
stamps = st.one_of(st.none(), st.sampled_from(["2026-01-01T00:00:00Z", "2026-06-01T00:00:00Z"]))
instances = st.builds(inst, st.integers(0, 9), stamps, st.sampled_from([None, "urn:d:1"]))
docs = st.builds(
    lambda attrs: {"id": "urn:e:1", "type": ["T"], "attrs": attrs},
    st.dictionaries(
        names, st.lists(instances, min_size=1, max_size=2, unique_by=lambda i: i.get("datasetId"))
    ),
)
modes = st.sampled_from(["inclusive", "exclusive", "redirect", "auxiliary"])


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(modes, docs), min_size=1, max_size=4))
def test_merge_properties(parts: list[tuple[str, dict[str, Any]]]) -> None:
    out = merge_entities(parts)
    main = [d for m, d in parts if m != "auxiliary"]
    # Every attribute of every source is there, nothing else.
    assert set(out["attrs"]) == {a for _, d in parts for a in d["attrs"]}
    for iri, insts in out["attrs"].items():
        # one instance per datasetId
        assert len({i.get("datasetId") for i in insts}) == len(insts)
        if any(iri in d["attrs"] for d in main):
            # a non-auxiliary attribute comes from a non-auxiliary source, with the newest stamp
            offered = [i for d in main for i in d["attrs"].get(iri, [])]
            for i in insts:
                same = [o for o in offered if o.get("datasetId") == i.get("datasetId")]
                assert i in same
                assert (i.get("observedAt") or "") == max((o.get("observedAt") or "") for o in same)
    # Merging is idempotent.
    assert merge_entities([("local", out), ("local", out)])["attrs"] == out["attrs"]
