"""NGSI-LD core API on both backends: create/retrieve/replace/merge/delete, attributes, errors."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

LD = "application/ld+json"
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
SUITE_CTX = "https://forge.etsi.org/rep/cim/ngsi-ld-test-suite/-/raw/develop/resources/jsonld-contexts/ngsi-ld-test-suite.jsonld"
LINK = f'<{SUITE_CTX}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


def building(eid: str = "urn:ngsi-ld:Building:b1", **extra: Any) -> dict[str, Any]:
    body = {
        "id": eid,
        "type": "Building",
        "name": {"type": "Property", "value": "Ecole 1", "observedAt": "2026-01-01T00:00:00Z"},
        "floors": {"type": "Property", "value": 3, "unitCode": "C62"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [4.35, 50.85]}},
        "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:p1"},
        "@context": SUITE_CTX,
    }
    body.update(extra)
    return body


def create(client: TestClient, body: dict[str, Any]) -> None:
    r = client.post("/ngsi-ld/v1/entities", json=body, headers={"Content-Type": LD})
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/ngsi-ld/v1/entities/{body['id']}"


def test_create_and_retrieve_with_context(client: TestClient) -> None:
    create(client, building())
    r = client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:b1", headers={"Link": LINK})
    assert r.status_code == 200
    e = r.json()
    assert e["type"] == "Building"
    assert e["name"] == {"type": "Property", "value": "Ecole 1", "observedAt": "2026-01-01T00:00:00Z"}
    assert e["floors"]["unitCode"] == "C62"
    assert e["owner"] == {"type": "Relationship", "object": "urn:ngsi-ld:Person:p1"}
    assert "createdAt" not in e
    assert SUITE_CTX in r.headers["link"]


def test_retrieve_without_context_gives_expanded_names(client: TestClient) -> None:
    create(client, building())
    e = client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:b1").json()
    assert e["type"] == "https://ngsi-ld-test-suite/context#Building"
    assert "https://ngsi-ld-test-suite/context#name" in e
    # location is a core term: compacted whatever the context.
    assert e["location"]["value"]["type"] == "Point"


def test_key_values_concise_and_sysattrs(client: TestClient) -> None:
    create(client, building())
    url = "/ngsi-ld/v1/entities/urn:ngsi-ld:Building:b1"
    kv = client.get(url, params={"options": "keyValues"}, headers={"Link": LINK}).json()
    assert kv["name"] == "Ecole 1" and kv["floors"] == 3 and kv["owner"] == "urn:ngsi-ld:Person:p1"
    concise = client.get(url, params={"format": "concise"}, headers={"Link": LINK}).json()
    assert concise["owner"] == {"object": "urn:ngsi-ld:Person:p1"}
    assert concise["name"] == {"value": "Ecole 1", "observedAt": "2026-01-01T00:00:00Z"}
    sa = client.get(url, params={"options": "sysAttrs"}, headers={"Link": LINK}).json()
    assert sa["createdAt"].endswith("Z") and sa["name"]["modifiedAt"].endswith("Z")


def test_create_twice_is_409_already_exists(client: TestClient) -> None:
    create(client, building())
    r = client.post("/ngsi-ld/v1/entities", json=building(), headers={"Content-Type": LD})
    assert r.status_code == 409
    assert r.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists"


def test_bad_inputs_are_problem_details_and_store_unchanged(client: TestClient) -> None:
    cases = [
        (b"{not json", "application/json", 400, "InvalidRequest"),
        (b'{"id": "not a uri", "type": "T"}', "application/json", 400, "BadRequestData"),
        (b'{"id": "urn:a:b"}', "application/json", 400, "BadRequestData"),
        (
            b'{"id": "urn:a:b", "type": "T", "p": {"type": "Property"}}',
            "application/json",
            400,
            "BadRequestData",
        ),
        (
            b'{"id": "urn:a:b", "type": "T", "r": {"type": "Relationship", "object": "x y"}}',
            "application/json",
            400,
            "BadRequestData",
        ),
        (b'{"id": "urn:a:b", "type": "T", "bad(name)": 1}', "application/json", 400, "BadRequestData"),
        (b'{"id": "urn:a:b", "type": "T"}', "text/plain", 415, None),
        (
            b'{"id": "urn:a:b", "type": "T", "@context": "http://unknown.example/ctx.jsonld"}',
            LD,
            503,
            "LdContextNotAvailable",
        ),
        (b'{"id": "urn:a:b", "type": "T"}', LD, 400, "BadRequestData"),  # JSON-LD without @context
    ]
    for body, ctype, status, kind in cases:
        r = client.post("/ngsi-ld/v1/entities", content=body, headers={"Content-Type": ctype})
        assert r.status_code == status, (body, r.text)
        if kind:
            assert r.json()["type"].endswith(kind), (body, r.json())
        assert "detail" in r.json()
    r = client.get("/ngsi-ld/v1/entities", params={"local": "true"})
    assert [e["id"] for e in r.json() if "urn:a:b" in e["id"]] == []


def test_not_acceptable(client: TestClient) -> None:
    create(client, building())
    r = client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:b1", headers={"Accept": "text/html"})
    assert r.status_code == 406


def test_append_no_overwrite_update_and_partial(client: TestClient) -> None:
    create(client, building())
    url = "/ngsi-ld/v1/entities/urn:ngsi-ld:Building:b1/attrs"
    h = {"Link": LINK}
    r = client.post(
        url,
        json={"floors": {"type": "Property", "value": 9}, "roof": {"type": "Property", "value": "flat"}},
        params={"options": "noOverwrite"},
        headers=h,
    )
    assert r.status_code == 207
    assert r.json()["updated"] == ["https://uri.etsi.org/ngsi-ld/default-context/roof"]
    assert r.json()["notUpdated"][0]["attributeName"] == "https://uri.etsi.org/ngsi-ld/default-context/floors"
    r = client.patch(
        url,
        json={
            "floors": {"type": "Property", "value": 4, "unitCode": "C62"},
            "ghost": {"type": "Property", "value": 1},
        },
        headers=h,
    )
    # Update overwrites existing attributes and adds new ones (ETSI suite 011_01_03).
    assert r.status_code == 204
    r = client.patch(url + "/floors", json={"value": 5}, headers=h)
    assert r.status_code == 204
    e = client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:b1", headers=h).json()
    assert e["floors"] == {"type": "Property", "value": 5, "unitCode": "C62"}
    assert e["roof"]["value"] == "flat" and e["ghost"]["value"] == 1
    # NGSI-LD Null in an update deletes the attribute.
    assert (
        client.patch(
            url, json={"ghost": {"type": "Property", "value": "urn:ngsi-ld:null"}}, headers=h
        ).status_code
        == 204
    )
    assert "ghost" not in client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:b1", headers=h).json()
    assert client.patch(url + "/nothing", json={"value": 1}, headers=h).status_code == 404


def test_multi_attribute_datasets_and_delete(client: TestClient) -> None:
    body = building(
        power={"type": "Property", "value": 1.5},
    )
    body["power"] = [
        {"type": "Property", "value": 1.5},
        {"type": "Property", "value": 2.5, "datasetId": "urn:ngsi-ld:Dataset:forecast"},
    ]
    create(client, body)
    h = {"Link": LINK}
    e = client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:b1", headers=h).json()
    assert len(e["power"]) == 2
    url = "/ngsi-ld/v1/entities/urn:ngsi-ld:Building:b1/attrs/power"
    assert (
        client.delete(url, params={"datasetId": "urn:ngsi-ld:Dataset:forecast"}, headers=h).status_code == 204
    )
    e = client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:b1", headers=h).json()
    assert e["power"] == {"type": "Property", "value": 1.5}
    assert client.delete(url, params={"datasetId": "urn:ngsi-ld:Dataset:x"}, headers=h).status_code == 404
    assert client.delete(url, params={"deleteAll": "true"}, headers=h).status_code == 204
    e = client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:b1", headers=h).json()
    assert "power" not in e


def test_replace_and_merge(client: TestClient) -> None:
    create(client, building())
    url = "/ngsi-ld/v1/entities/urn:ngsi-ld:Building:b1"
    h = {"Link": LINK}
    r = client.put(
        url, json={"type": "Building", "name": {"type": "Property", "value": "Nouvelle"}}, headers=h
    )
    assert r.status_code == 204
    e = client.get(url, headers=h).json()
    assert set(e) == {"id", "type", "name"}
    r = client.patch(url, json={"name": {"value": "Merged"}, "floors": 2}, headers=h)
    assert r.status_code == 204
    e = client.get(url, headers=h).json()
    assert e["name"]["value"] == "Merged" and e["floors"]["value"] == 2
    r = client.patch(url, json={"floors": "urn:ngsi-ld:null"}, headers=h)
    assert r.status_code == 204
    assert "floors" not in client.get(url, headers=h).json()


def test_language_and_vocab_properties(client: TestClient) -> None:
    create(
        client,
        building(
            label={
                "type": "LanguageProperty",
                "languageMap": {"en": "School", "fr": "Ecole", "nl": "School"},
            },
            category={"type": "VocabularyProperty", "vocab": "name"},
        ),
    )
    url = "/ngsi-ld/v1/entities/urn:ngsi-ld:Building:b1"
    e = client.get(url, params={"lang": "fr"}, headers={"Link": LINK}).json()
    assert e["label"] == {"type": "Property", "value": "Ecole", "lang": "fr"}
    assert e["category"] == {"type": "VocabProperty", "vocab": "name"}  # the v1.8+ core context term
    e = client.get(url).json()
    # category is not in the suite context: it lives in the core default vocabulary, compacted back.
    assert e["category"]["vocab"] == "https://ngsi-ld-test-suite/context#name"


def test_delete_entity(client: TestClient) -> None:
    create(client, building())
    assert client.delete("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:b1").status_code == 204
    r = client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:b1")
    assert r.status_code == 404 and r.json()["type"].endswith("ResourceNotFound")
    assert client.delete("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:b1").status_code == 404


def test_tenants_are_isolated(client: TestClient) -> None:
    r = client.post(
        "/ngsi-ld/v1/entities", json=building(), headers={"Content-Type": LD, "NGSILD-Tenant": "ixelles"}
    )
    assert r.status_code == 201
    assert client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:b1").status_code == 404
    r = client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:b1", headers={"NGSILD-Tenant": "ixelles"})
    assert r.status_code == 200
    r = client.get("/ngsi-ld/v1/entities", params={"type": "Building"}, headers={"NGSILD-Tenant": "nowhere"})
    assert r.status_code == 404
