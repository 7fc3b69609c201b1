"""NGSI-LD queries, batches and discovery over HTTP, on both backends."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

SUITE_CTX = "https://forge.etsi.org/rep/cim/ngsi-ld-test-suite/-/raw/develop/resources/jsonld-contexts/ngsi-ld-test-suite.jsonld"
LINK = f'<{SUITE_CTX}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
H = {"Link": LINK}


def meters(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"urn:ngsi-ld:Meter:m{i:03d}",
            "type": "Meter" if i % 2 == 0 else "Vehicle",
            "speed": {"type": "Property", "value": float(i)},
            "name": {"type": "Property", "value": f"meter {i}"},
            "location": {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [4.3 + i * 0.001, 50.8]},
            },
        }
        for i in range(n)
    ]


def load(client: TestClient, n: int = 20) -> None:
    r = client.post("/ngsi-ld/v1/entityOperations/create", json=meters(n), headers=H)
    assert r.status_code == 201, r.text
    assert len(r.json()) == n


def ids(r: Any) -> list[str]:
    return [e["id"] for e in r.json()]


def test_query_by_type_q_and_count(client: TestClient) -> None:
    load(client)
    r = client.get(
        "/ngsi-ld/v1/entities", params={"type": "Meter", "q": "speed>10", "count": "true"}, headers=H
    )
    assert r.status_code == 200
    assert ids(r) == [f"urn:ngsi-ld:Meter:m{i:03d}" for i in (12, 14, 16, 18)]
    assert r.headers["NGSILD-Results-Count"] == "4"
    r = client.get("/ngsi-ld/v1/entities", params={"type": "Meter,Vehicle", "q": "speed==3..5"}, headers=H)
    assert ids(r) == [f"urn:ngsi-ld:Meter:m{i:03d}" for i in (3, 4, 5)]
    r = client.get("/ngsi-ld/v1/entities", params={"type": "Meter", "q": 'name~="meter 1.*"'}, headers=H)
    assert ids(r) == [f"urn:ngsi-ld:Meter:m{i:03d}" for i in (10, 12, 14, 16, 18)]


def test_pagination_limit_offset(client: TestClient) -> None:
    load(client)
    r = client.get(
        "/ngsi-ld/v1/entities", params={"type": "Meter,Vehicle", "limit": 5, "offset": 5}, headers=H
    )
    assert ids(r) == [f"urn:ngsi-ld:Meter:m{i:03d}" for i in range(5, 10)]
    r = client.get("/ngsi-ld/v1/entities", params={"type": "Meter", "limit": 0, "count": "true"}, headers=H)
    assert r.json() == [] and r.headers["NGSILD-Results-Count"] == "10"
    assert client.get("/ngsi-ld/v1/entities", params={"type": "Meter", "limit": "x"}).status_code == 400
    assert client.get("/ngsi-ld/v1/entities", params={"type": "Meter", "limit": 5000}).status_code == 403


def test_query_errors(client: TestClient) -> None:
    load(client, 2)
    assert client.get("/ngsi-ld/v1/entities").status_code == 400
    r = client.get("/ngsi-ld/v1/entities", params={"type": "Meter", "q": "speed>>1"})
    assert r.status_code == 400 and r.json()["type"].endswith(("BadRequestData", "InvalidRequest"))


def test_geo_near(client: TestClient) -> None:
    load(client)
    r = client.get(
        "/ngsi-ld/v1/entities",
        params={
            "type": "Meter,Vehicle",
            "georel": "near;maxDistance==150",
            "geometry": "Point",
            "coordinates": "[4.3,50.8]",
        },
        headers=H,
    )
    assert r.status_code == 200, r.text
    # 0.001 deg of longitude at 50.8 N is about 70 m: m000 (0 m) and m001 (70 m), m002 (141 m).
    assert ids(r) == [f"urn:ngsi-ld:Meter:m{i:03d}" for i in (0, 1, 2)]


def test_batch_upsert_update_delete(client: TestClient) -> None:
    load(client, 4)
    items = meters(6)
    items[0]["speed"]["value"] = 100.0
    r = client.post("/ngsi-ld/v1/entityOperations/upsert", json=items, headers=H)
    assert r.status_code == 201 and sorted(r.json()) == ["urn:ngsi-ld:Meter:m004", "urn:ngsi-ld:Meter:m005"]
    r = client.post("/ngsi-ld/v1/entityOperations/upsert", json=items[:2], headers=H)
    assert r.status_code == 204
    e = client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Meter:m000", headers=H).json()
    assert e["speed"]["value"] == 100.0
    r = client.post(
        "/ngsi-ld/v1/entityOperations/update",
        json=[
            {"id": "urn:ngsi-ld:Meter:m000", "speed": {"type": "Property", "value": 7.0}},
            {"id": "urn:ngsi-ld:Meter:nope", "speed": {"type": "Property", "value": 7.0}},
        ],
        headers=H,
    )
    assert r.status_code == 207
    assert r.json()["success"] == ["urn:ngsi-ld:Meter:m000"]
    assert r.json()["errors"][0]["entityId"] == "urn:ngsi-ld:Meter:nope"
    r = client.post(
        "/ngsi-ld/v1/entityOperations/delete", json=["urn:ngsi-ld:Meter:m000", "urn:ngsi-ld:Meter:zz"]
    )
    assert r.status_code == 207
    assert r.json()["success"] == ["urn:ngsi-ld:Meter:m000"]
    r = client.post(
        "/ngsi-ld/v1/entityOperations/create", json=[*meters(2), {"id": "bad", "type": "X"}], headers=H
    )
    assert r.status_code == 207
    assert [e["entityId"] for e in r.json()["errors"]] == ["bad", "urn:ngsi-ld:Meter:m001"]


def test_post_query(client: TestClient) -> None:
    load(client)
    body = {"type": "Query", "entities": [{"type": "Meter"}], "q": "speed<4"}
    r = client.post("/ngsi-ld/v1/entityOperations/query", json=body, headers=H)
    assert r.status_code == 200
    assert ids(r) == ["urn:ngsi-ld:Meter:m000", "urn:ngsi-ld:Meter:m002"]


def test_types_and_attributes(client: TestClient) -> None:
    load(client, 4)
    r = client.get("/ngsi-ld/v1/types", headers=H)
    # The node also publishes its own identity (LedgerNode); the loaded types are all there.
    assert {"Meter", "Vehicle"} <= set(r.json()["typeList"])
    r = client.get("/ngsi-ld/v1/types/Meter", headers=H)
    info = r.json()
    assert info["entityCount"] == 2 and info["typeName"] == "Meter"
    assert {a["attributeName"] for a in info["attributeDetails"]} == {"speed", "name", "location"}
    r = client.get("/ngsi-ld/v1/attributes", headers=H)
    assert {"location", "name", "speed"} <= set(r.json()["attributeList"])
    r = client.get("/ngsi-ld/v1/attributes/speed", headers=H)
    assert r.json()["attributeCount"] == 4 and r.json()["typeNames"] == ["Meter", "Vehicle"]
    assert client.get("/ngsi-ld/v1/types/Nothing", headers=H).status_code == 404


def test_jsonld_contexts_endpoint(client: TestClient) -> None:
    r = client.post("/ngsi-ld/v1/jsonldContexts", json={"@context": {"kwh": "https://example.org/kwh"}})
    assert r.status_code == 201
    url = r.headers["location"]
    assert url in client.get("/ngsi-ld/v1/jsonldContexts").json()
    cid = url.rsplit("/", 1)[1]
    assert client.get(f"/ngsi-ld/v1/jsonldContexts/{cid}").json() == {
        "@context": {"kwh": "https://example.org/kwh"}
    }
    link = f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
    r = client.post(
        "/ngsi-ld/v1/entities", json={"id": "urn:x:1", "type": "T", "kwh": 1}, headers={"Link": link}
    )
    assert r.status_code == 201
    assert "https://example.org/kwh" in client.get("/ngsi-ld/v1/entities/urn:x:1").json()
    assert client.delete(f"/ngsi-ld/v1/jsonldContexts/{cid}").status_code == 204
    assert client.get(f"/ngsi-ld/v1/jsonldContexts/{cid}").status_code == 404
