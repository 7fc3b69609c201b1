"""Edge routes of the node: quarantine listing, replay after a fix, deletion."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from bright.edge.mqtt import Message

H = {
    "Link": '<https://w3id.org/bright/context.jsonld>; rel="http://www.w3.org/ns/json-ld#context"; '
    'type="application/ld+json"'
}


def test_unknown_meter_is_quarantined_then_replayed(client: TestClient) -> None:
    ingestor = client.app.state.ingestor  # type: ignore[attr-defined]
    pack = [{"bn": "urn:ngsi-ld:Meter:c1:m1/", "bt": 1767225600, "n": "offtake", "u": "kWh", "v": 0.25}]
    msg = Message(
        topic="bright/c1/m1/senml", payload=json.dumps(pack).encode(), mid=1, qos=1, received_us=0, epoch=0
    )
    ingestor.process([msg])
    r = client.get("/api/edge/quarantine")
    assert r.status_code == 200
    entries = r.json()["entries"]
    assert len(entries) == 1 and "m1" in json.dumps(entries[0])
    assert client.get("/api/edge/quarantine", params={"status": "nonsense"}).status_code == 400
    # The fix: the meter now exists in the twin; the replay accepts the payload.
    body = {"id": "urn:ngsi-ld:Meter:c1:m1", "type": "Meter"}
    assert client.post("/ngsi-ld/v1/entities", json=body, headers=H).status_code == 201
    r = client.post("/api/edge/quarantine/replay")
    assert r.status_code == 200 and r.json()["replayed"] == [entries[0]["id"]]
    assert client.get("/api/edge/quarantine").json()["entries"] == []
    assert client.delete("/api/edge/quarantine/999999").status_code == 404
