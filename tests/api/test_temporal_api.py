"""NGSI-LD temporal API on both backends: create, query, timerel, lastN, temporalValues, aggregates."""

from __future__ import annotations

from fastapi.testclient import TestClient

SUITE_CTX = "https://forge.etsi.org/rep/cim/ngsi-ld-test-suite/-/raw/develop/resources/jsonld-contexts/ngsi-ld-test-suite.jsonld"
H = {"Link": f'<{SUITE_CTX}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'}
VEHICLE = {
    "id": "urn:ngsi-ld:Vehicle:v1",
    "type": "Vehicle",
    "speed": [
        {"type": "Property", "value": 120, "observedAt": "2020-08-01T12:03:00Z"},
        {"type": "Property", "value": 80, "observedAt": "2020-08-01T12:05:00Z"},
        {"type": "Property", "value": 100, "observedAt": "2020-08-01T12:07:00Z"},
    ],
    "fuelLevel": [
        {"type": "Property", "value": 67, "observedAt": "2020-08-01T12:03:00Z"},
        {"type": "Property", "value": 53, "observedAt": "2020-08-01T13:05:00Z"},
        {"type": "Property", "value": 40, "observedAt": "2020-08-01T14:07:00Z"},
    ],
    "brandName": [
        {"type": "Property", "value": "Mercedes", "observedAt": "2020-08-01T12:03:00Z"},
        {"type": "Property", "value": "Volvo", "observedAt": "2020-08-01T12:04:00Z"},
    ],
}


def create(client: TestClient) -> None:
    r = client.post("/ngsi-ld/v1/temporal/entities", json=VEHICLE, headers=H)
    assert r.status_code == 201, r.text


def test_create_and_retrieve_normalized(client: TestClient) -> None:
    create(client)
    r = client.get("/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Vehicle:v1", headers=H)
    assert r.status_code == 200, r.text
    e = r.json()
    assert [i["value"] for i in e["speed"]] == [120, 80, 100]
    assert [i["value"] for i in e["brandName"]] == ["Mercedes", "Volvo"]
    assert all(i["instanceId"].startswith("urn:ngsi-ld:") for i in e["speed"] + e["brandName"])
    # The core entity holds the latest instance of each attribute.
    core = client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:v1", headers=H).json()
    assert core["speed"]["value"] == 100 and core["brandName"]["value"] == "Volvo"


def test_timerel_lastn_and_temporal_values(client: TestClient) -> None:
    create(client)
    url = "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Vehicle:v1"
    r = client.get(
        url, params={"timerel": "after", "timeAt": "2020-08-01T12:03:00Z", "attrs": "speed"}, headers=H
    )
    assert [i["value"] for i in r.json()["speed"]] == [80, 100]  # after is strict
    r = client.get(
        url,
        params={
            "timerel": "between",
            "timeAt": "2020-08-01T12:03:00Z",
            "endTimeAt": "2020-08-01T12:07:00Z",
            "attrs": "speed",
        },
        headers=H,
    )
    assert [i["value"] for i in r.json()["speed"]] == [120, 80]  # [timeAt, endTimeAt)
    r = client.get(url, params={"lastN": 1, "options": "temporalValues"}, headers=H)
    body = r.json()
    assert body["speed"] == {"type": "Property", "values": [[100, "2020-08-01T12:07:00Z"]]}
    assert body["brandName"]["values"] == [["Volvo", "2020-08-01T12:04:00Z"]]


def test_aggregated_values(client: TestClient) -> None:
    create(client)
    r = client.get(
        "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Vehicle:v1",
        params={
            "options": "aggregatedValues",
            "aggrMethods": "avg,max,totalCount",
            "aggrPeriodDuration": "PT1H",
            "attrs": "speed,fuelLevel",
        },
        headers=H,
    )
    assert r.status_code == 200, r.text
    e = r.json()
    assert e["speed"]["avg"] == [[100.0, "2020-08-01T12:03:00Z", "2020-08-01T13:03:00Z"]]
    assert e["speed"]["max"][0][0] == 120.0 and e["speed"]["totalCount"][0][0] == 3
    assert [b[0] for b in e["fuelLevel"]["avg"]] == [67.0, 53.0, 40.0]


def test_query_delete_and_errors(client: TestClient) -> None:
    create(client)
    r = client.get(
        "/ngsi-ld/v1/temporal/entities",
        params={"type": "Vehicle", "timerel": "before", "timeAt": "2020-08-01T12:04:00Z"},
        headers=H,
    )
    assert r.status_code == 200 and [i["value"] for i in r.json()[0]["speed"]] == [120]
    bad = [
        {"timerel": "during", "timeAt": "2020-01-01T00:00:00Z", "type": "Vehicle"},
        {
            "timerel": "between",
            "timeAt": "2020-01-02T00:00:00Z",
            "endTimeAt": "2020-01-01T00:00:00Z",
            "type": "Vehicle",
        },
        {"timerel": "after", "timeAt": "yesterday", "type": "Vehicle"},
        {
            "options": "aggregatedValues",
            "type": "Vehicle",
            "timerel": "after",
            "timeAt": "2020-01-01T00:00:00Z",
        },
    ]
    for params in bad:
        r = client.get("/ngsi-ld/v1/temporal/entities", params=params, headers=H)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["type"].endswith("BadRequestData")
    speed = client.get("/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Vehicle:v1", headers=H).json()["speed"]
    iid = speed[0]["instanceId"]
    assert (
        client.delete(
            f"/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Vehicle:v1/attrs/speed/{iid}", headers=H
        ).status_code
        == 204
    )
    speed = client.get("/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Vehicle:v1", headers=H).json()["speed"]
    assert [i["value"] for i in speed] == [80, 100]
    assert client.delete("/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Vehicle:v1").status_code == 204
    assert client.get("/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Vehicle:v1").status_code == 404


def test_core_updates_become_history(client: TestClient) -> None:
    body = {
        "id": "urn:ngsi-ld:Meter:m1",
        "type": "Meter",
        "power": {"type": "Property", "value": 1.5, "observedAt": "2026-01-01T00:00:00Z"},
    }
    assert client.post("/ngsi-ld/v1/entities", json=body, headers=H).status_code == 201
    for k, v in enumerate((2.0, 2.5)):
        frag = {
            "power": {"type": "Property", "value": v, "observedAt": f"2026-01-01T00:{15 * (k + 1):02d}:00Z"}
        }
        assert (
            client.patch("/ngsi-ld/v1/entities/urn:ngsi-ld:Meter:m1/attrs", json=frag, headers=H).status_code
            == 204
        )
    r = client.get(
        "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Meter:m1", params={"options": "temporalValues"}, headers=H
    )
    assert [v for v, _ in r.json()["power"]["values"]] == [1.5, 2.0, 2.5]


def test_long_histories_are_paged_on_the_time_axis(client: TestClient) -> None:
    client.app.state.twin.settings = type(client.app.state.twin.settings)(temporal_page=5)  # type: ignore[attr-defined]
    body = {
        "id": "urn:ngsi-ld:Vehicle:p1",
        "type": "Vehicle",
        "speed": [
            {"type": "Property", "value": k, "observedAt": f"2020-01-01T01:{k:02d}:00Z"} for k in range(10)
        ],
    }
    assert client.post("/ngsi-ld/v1/temporal/entities", json=body, headers=H).status_code == 201
    url = "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Vehicle:p1"
    r = client.get(url, headers=H)
    assert r.status_code == 206
    assert [i["value"] for i in r.json()["speed"]] == [0, 1, 2, 3, 4]
    assert r.headers["Content-Range"] == "date-time 2020-01-01T01:00:00Z-2020-01-01T01:04:00Z/*"
    r = client.get(url, params={"lastN": 8}, headers=H)
    assert r.status_code == 206 and [i["value"] for i in r.json()["speed"]] == [5, 6, 7, 8, 9]
    assert r.headers["Content-Range"] == "date-time 2020-01-01T01:09:00Z-2020-01-01T01:05:00Z/8"
    r = client.get(url, params={"timerel": "after", "timeAt": "2020-01-01T01:04:00Z"}, headers=H)
    assert r.status_code == 200 and [i["value"] for i in r.json()["speed"]] == [5, 6, 7, 8, 9]
