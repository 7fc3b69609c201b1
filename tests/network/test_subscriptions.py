"""NGSI-LD subscriptions: CRUD on both backends, notifications over HTTP and MQTT, filters, status.

Notifications go to a real HTTP server on 127.0.0.1 (a thread) and to the real Mosquitto broker;
the app's worker is not started, so ``runtime.flush()`` sends pending notifications in the test
thread, deterministically.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bright.api.app import create_app
from bright.api.subscriptions import NetworkRuntime, install
from bright.config import Settings
from bright.network.federation import FederationConfig
from bright.network.subscriptions import attribute_changes
from bright.twin.db import make_engine
from bright.twin.service import TwinService

LD = "application/ld+json"
BASE = "/ngsi-ld/v1"
DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records what it receives and answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[tuple[str, dict[str, str], Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(n)) if n else None
                outer.received.append((self.path, dict(self.headers), body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/notify"

    def bodies(self) -> list[Any]:
        return [b for _, _, b in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def make_node(url: str) -> tuple[TestClient, NetworkRuntime, TwinService]:
    settings = Settings(database_url=url)
    service = TwinService(make_engine(url), settings)
    app = create_app(settings, service=service)
    config = FederationConfig(node_id="test-node", notification_backoff_s=0.01, notification_timeout_s=2.0)
    rt = install(app, service, config=config)
    return TestClient(app), rt, service


@pytest.fixture
def node(tmp_path) -> Iterator[tuple[TestClient, NetworkRuntime]]:
    client, rt, service = make_node(f"sqlite:///{tmp_path / 'node.db'}")
    yield client, rt
    service.engine.dispose()


@pytest.fixture
def any_node(db_url: str) -> Iterator[tuple[TestClient, NetworkRuntime]]:
    client, rt, service = make_node(db_url)
    yield client, rt
    service.engine.dispose()


def building(eid: str = "urn:ngsi-ld:Building:b1", **extra: Any) -> dict[str, Any]:
    body = {
        "id": eid,
        "type": "Building",
        "name": {"type": "Property", "value": "Ecole 1"},
        "floors": {"type": "Property", "value": 3},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [4.35, 50.85]}},
    }
    body.update(extra)
    return body


def subscription(endpoint: str, sid: str = "urn:ngsi-ld:Subscription:s1", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": sid,
        "type": "Subscription",
        "entities": [{"type": "Building"}],
        "notification": {"endpoint": {"uri": endpoint, "accept": "application/json"}},
    }
    body.update(extra)
    return body


def post(client: TestClient, path: str, body: Any, status: int = 201) -> Any:
    r = client.post(BASE + path, json=body)
    assert r.status_code == status, r.text
    return r


def patch_attrs(client: TestClient, eid: str, body: dict[str, Any]) -> None:
    r = client.patch(f"{BASE}/entities/{eid}/attrs", json=body)
    assert r.status_code == 204, r.text


# --- CRUD on both backends ------------------------------------------------------------------------


def test_create_retrieve_list_update_delete(any_node: tuple[TestClient, NetworkRuntime]) -> None:
    client, _ = any_node
    r = post(client, "/subscriptions", subscription("http://127.0.0.1:9/notify", throttling=5))
    assert r.headers["Location"] == f"{BASE}/subscriptions/urn:ngsi-ld:Subscription:s1"
    got = client.get(f"{BASE}/subscriptions/urn:ngsi-ld:Subscription:s1").json()
    # Echoed as given, plus status and the default notification triggers; no counters before a send.
    assert got == {
        "id": "urn:ngsi-ld:Subscription:s1",
        "type": "Subscription",
        "entities": [{"type": "Building"}],
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify", "accept": "application/json"}},
        "throttling": 5,
        "notificationTrigger": ["attributeCreated", "attributeUpdated"],
        "status": "active",
    }
    post(
        client, "/subscriptions", subscription("http://127.0.0.1:9/notify", sid="urn:ngsi-ld:Subscription:s2")
    )
    listed = client.get(f"{BASE}/subscriptions").json()
    assert [s["id"] for s in listed] == ["urn:ngsi-ld:Subscription:s1", "urn:ngsi-ld:Subscription:s2"]

    r = client.patch(
        f"{BASE}/subscriptions/urn:ngsi-ld:Subscription:s1", json={"isActive": False, "q": "floors>2"}
    )
    assert r.status_code == 204, r.text
    got = client.get(f"{BASE}/subscriptions/urn:ngsi-ld:Subscription:s1").json()
    assert (got["status"], got["q"], got["isActive"]) == ("paused", "floors>2", False)

    assert client.delete(f"{BASE}/subscriptions/urn:ngsi-ld:Subscription:s1").status_code == 204
    assert client.get(f"{BASE}/subscriptions/urn:ngsi-ld:Subscription:s1").status_code == 404
    assert [s["id"] for s in client.get(f"{BASE}/subscriptions").json()] == ["urn:ngsi-ld:Subscription:s2"]


def test_terms_are_expanded_and_compacted_with_the_readers_context(
    node: tuple[TestClient, NetworkRuntime],
) -> None:
    client, _ = node
    post(client, "/subscriptions", subscription("http://127.0.0.1:9/n", watchedAttributes=["floors"]))
    # Without a user @context, short names live in the core context's default vocabulary.
    stored = node[1].subscriptions.get("", "urn:ngsi-ld:Subscription:s1").doc
    assert stored["entities"] == [{"type": DEFAULT + "Building"}]
    assert stored["watchedAttributes"] == [DEFAULT + "floors"]
    ld = client.get(f"{BASE}/subscriptions/urn:ngsi-ld:Subscription:s1", headers={"Accept": LD}).json()
    assert ld["entities"] == [{"type": "Building"}] and ld["watchedAttributes"] == ["floors"]
    assert ld["@context"].startswith("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ("timeInterval with throttling", {"timeInterval": 10, "throttling": 5}),
        ("negative throttling", {"throttling": -1}),
        ("empty watchedAttributes", {"watchedAttributes": []}),
        ("unknown trigger", {"notificationTrigger": ["entityTouched"]}),
        ("invalid q", {"q": "floors>>2"}),
        (
            "pick and attributes",
            {"notification": {"endpoint": {"uri": "http://x.org/n"}, "pick": ["id"], "attributes": ["a"]}},
        ),
        ("expiresAt in the past", {"expiresAt": "2020-01-01T00:00:00Z"}),
        ("endpoint without uri", {"notification": {"endpoint": {"accept": "application/json"}}}),
        ("ftp endpoint", {"notification": {"endpoint": {"uri": "ftp://x.org/n"}}}),
        ("wrong type", {"type": "Registration"}),
    ],
)
def test_invalid_subscriptions_are_rejected(
    node: tuple[TestClient, NetworkRuntime], change: str, fragment: dict[str, Any]
) -> None:
    client, _ = node
    r = client.post(f"{BASE}/subscriptions", json=subscription("http://127.0.0.1:9/n", **fragment))
    assert r.status_code == 400, change
    assert r.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"


def test_conflicts_missing_and_bad_ids(node: tuple[TestClient, NetworkRuntime]) -> None:
    client, _ = node
    post(client, "/subscriptions", subscription("http://127.0.0.1:9/n"))
    assert client.post(f"{BASE}/subscriptions", json=subscription("http://127.0.0.1:9/n")).status_code == 409
    assert client.get(f"{BASE}/subscriptions/not-a-uri").status_code == 400
    assert client.get(f"{BASE}/subscriptions/urn:ngsi-ld:Subscription:none").status_code == 404
    assert (
        client.patch(f"{BASE}/subscriptions/urn:ngsi-ld:Subscription:none", json={"q": "a==1"}).status_code
        == 404
    )
    assert client.get(f"{BASE}/subscriptions?bogus=1").status_code == 400
    # Removing a mandatory member is refused; the subscription is unchanged.
    r = client.patch(f"{BASE}/subscriptions/urn:ngsi-ld:Subscription:s1", json={"notification": None})
    assert r.status_code == 400
    assert client.get(f"{BASE}/subscriptions/urn:ngsi-ld:Subscription:s1").json()["status"] == "active"


def test_pagination_links(node: tuple[TestClient, NetworkRuntime]) -> None:
    client, _ = node
    for i in range(3):
        post(
            client,
            "/subscriptions",
            subscription("http://127.0.0.1:9/n", sid=f"urn:ngsi-ld:Subscription:{i}"),
        )
    r = client.get(f"{BASE}/subscriptions?limit=1&offset=1", headers={"Accept": LD})
    assert [s["id"] for s in r.json()] == ["urn:ngsi-ld:Subscription:1"]
    assert r.headers["Link"] == (
        '</ngsi-ld/v1/subscriptions?limit=1&offset=0>;rel="prev";type="application/ld+json", '
        '</ngsi-ld/v1/subscriptions?limit=1&offset=2>;rel="next";type="application/ld+json"'
    )
    assert client.get(f"{BASE}/subscriptions?limit=-1").status_code == 400


# --- notifications over HTTP ------------------------------------------------------------------------


def test_update_notifies_with_the_entity_and_updates_the_status(
    node: tuple[TestClient, NetworkRuntime], receiver: Receiver
) -> None:
    client, rt = node
    post(client, "/entities", building())
    post(client, "/subscriptions", subscription(receiver.url))
    patch_attrs(client, "urn:ngsi-ld:Building:b1", {"floors": {"type": "Property", "value": 4}})
    assert rt.flush()
    assert len(receiver.received) == 1
    path, headers, body = receiver.received[0]
    assert path == "/notify"
    assert headers["Content-Type"] == "application/json"
    assert headers["Link"].startswith("<https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context")
    assert body["type"] == "Notification" and body["subscriptionId"] == "urn:ngsi-ld:Subscription:s1"
    assert body["triggerReason"] == "attributeUpdated"
    assert body["data"] == [
        {
            "id": "urn:ngsi-ld:Building:b1",
            "type": "Building",
            "name": {"type": "Property", "value": "Ecole 1"},
            "floors": {"type": "Property", "value": 4},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [4.35, 50.85]}},
        }
    ]
    note = client.get(f"{BASE}/subscriptions/urn:ngsi-ld:Subscription:s1").json()["notification"]
    assert note["status"] == "ok" and note["timesSent"] == 1
    assert note["lastSuccess"] >= note["lastNotification"]


def test_key_values_attributes_jsonld_and_receiver_info(
    node: tuple[TestClient, NetworkRuntime], receiver: Receiver
) -> None:
    client, rt = node
    post(client, "/entities", building())
    endpoint = {
        "uri": receiver.url,
        "accept": LD,
        "receiverInfo": [{"key": "X-Community", "value": "ixelles"}],
    }
    sub = subscription(
        receiver.url, notification={"endpoint": endpoint, "format": "keyValues", "attributes": ["floors"]}
    )
    post(client, "/subscriptions", sub)
    patch_attrs(client, "urn:ngsi-ld:Building:b1", {"floors": {"type": "Property", "value": 5}})
    assert rt.flush()
    _, headers, body = receiver.received[0]
    assert headers["Content-Type"] == LD and "Link" not in headers
    assert headers["X-Community"] == "ixelles"
    (entity,) = body["data"]
    assert {k: v for k, v in entity.items() if k != "@context"} == {
        "id": "urn:ngsi-ld:Building:b1",
        "type": "Building",
        "floors": 5,
    }
    assert "@context" in entity


def test_watched_attributes_q_and_geo_filters(
    node: tuple[TestClient, NetworkRuntime], receiver: Receiver
) -> None:
    client, rt = node
    post(client, "/entities", building())
    post(
        client,
        "/entities",
        building(
            "urn:ngsi-ld:Building:far",
            location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.57, 50.63]}},
        ),
    )
    near = {"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": [4.36, 50.85]}
    post(client, "/subscriptions", subscription(receiver.url, "urn:ngsi-ld:Subscription:geo", geoQ=near))
    post(client, "/subscriptions", subscription(receiver.url, "urn:ngsi-ld:Subscription:q", q="floors>=4"))
    post(
        client,
        "/subscriptions",
        subscription(receiver.url, "urn:ngsi-ld:Subscription:w", watchedAttributes=["name"]),
    )
    # b1 is ~710 m from the geoQ point, 'far' (Liège) ~90 km.
    patch_attrs(client, "urn:ngsi-ld:Building:b1", {"floors": {"type": "Property", "value": 3}})
    patch_attrs(client, "urn:ngsi-ld:Building:far", {"floors": {"type": "Property", "value": 4}})
    patch_attrs(client, "urn:ngsi-ld:Building:far", {"name": {"type": "Property", "value": "Liège"}})
    assert rt.flush()
    got = sorted(
        (b["subscriptionId"].rsplit(":", 1)[1], b["data"][0]["id"].rsplit(":", 1)[1])
        for b in receiver.bodies()
    )
    # geo: only b1; q (floors>=4): far twice (after the floors update and after the name update);
    # watched name: only the name update.
    assert got == [("geo", "b1"), ("q", "far"), ("q", "far"), ("w", "far")]


def test_throttling_drops_notifications_inside_the_window(
    node: tuple[TestClient, NetworkRuntime], receiver: Receiver
) -> None:
    client, rt = node
    post(client, "/entities", building())
    post(client, "/subscriptions", subscription(receiver.url, throttling=3600))
    for floors in (4, 5, 6):
        patch_attrs(client, "urn:ngsi-ld:Building:b1", {"floors": {"type": "Property", "value": floors}})
    assert rt.flush()
    assert [b["data"][0]["floors"]["value"] for b in receiver.bodies()] == [4]


def test_time_interval_sends_matching_entities_periodically(
    node: tuple[TestClient, NetworkRuntime], receiver: Receiver
) -> None:
    client, rt = node
    post(client, "/entities", building())
    post(client, "/entities", building("urn:ngsi-ld:Building:b2"))
    post(client, "/subscriptions", subscription(receiver.url, timeInterval=60, q="floors==3"))
    patch_attrs(client, "urn:ngsi-ld:Building:b2", {"floors": {"type": "Property", "value": 7}})
    t0 = time.monotonic() + 1000.0
    rt.subscriptions.tick(mono=t0)  # first sight: due 60 s after creation
    assert rt.flush() and receiver.received == []  # and changes never notify a periodic subscription
    rt.subscriptions.tick(mono=t0 + 61)
    rt.subscriptions.tick(mono=t0 + 62)  # not due again before t0 + 121
    rt.subscriptions.tick(mono=t0 + 122)
    assert rt.flush()
    assert [[e["id"] for e in b["data"]] for b in receiver.bodies()] == [["urn:ngsi-ld:Building:b1"]] * 2
    assert {b["triggerReason"] for b in receiver.bodies()} == {"timeInterval"}


def test_failing_endpoint_is_retried_then_marked_failed(node: tuple[TestClient, NetworkRuntime]) -> None:
    client, rt = node
    failing = Receiver(status=503)
    try:
        post(client, "/entities", building())
        post(client, "/subscriptions", subscription(failing.url))
        patch_attrs(client, "urn:ngsi-ld:Building:b1", {"floors": {"type": "Property", "value": 4}})
        assert rt.flush()
        # one notification, three attempts (two retries with backoff)
        assert len(failing.received) == 3
        note = client.get(f"{BASE}/subscriptions/urn:ngsi-ld:Subscription:s1").json()["notification"]
        assert (note["status"], note["timesSent"], note["timesFailed"]) == ("failed", 1, 1)
        assert "lastFailure" in note and "lastSuccess" not in note
    finally:
        failing.close()


def test_expired_and_paused_subscriptions_do_not_notify(
    node: tuple[TestClient, NetworkRuntime], receiver: Receiver
) -> None:
    client, rt = node
    post(client, "/entities", building())
    post(
        client,
        "/subscriptions",
        subscription(receiver.url, "urn:ngsi-ld:Subscription:exp", expiresAt="2099-01-01T00:00:00Z"),
    )
    post(
        client,
        "/subscriptions",
        subscription(receiver.url, "urn:ngsi-ld:Subscription:paused", isActive=False),
    )
    # Let the first one expire (the API refuses a past expiresAt, so rewrite the stored document).
    store = rt.subscriptions.store
    stored = store.get("", "entity", "urn:ngsi-ld:Subscription:exp")
    assert stored is not None
    stored.doc["expiresAt"] = "2020-01-01T00:00:00Z"
    store.replace(stored)
    patch_attrs(client, "urn:ngsi-ld:Building:b1", {"floors": {"type": "Property", "value": 4}})
    assert rt.flush()
    assert receiver.received == []
    assert client.get(f"{BASE}/subscriptions/urn:ngsi-ld:Subscription:exp").json()["status"] == "expired"
    # Reactivating the paused one makes it notify again.
    client.patch(f"{BASE}/subscriptions/urn:ngsi-ld:Subscription:paused", json={"isActive": True})
    patch_attrs(client, "urn:ngsi-ld:Building:b1", {"floors": {"type": "Property", "value": 5}})
    assert rt.flush()
    assert [b["subscriptionId"] for b in receiver.bodies()] == ["urn:ngsi-ld:Subscription:paused"]


def test_deletions_and_show_changes(node: tuple[TestClient, NetworkRuntime], receiver: Receiver) -> None:
    client, rt = node
    post(client, "/entities", building())
    triggers = {"notificationTrigger": ["attributeDeleted", "attributeUpdated", "entityDeleted"]}
    note = {"endpoint": {"uri": receiver.url}, "showChanges": True}
    post(client, "/subscriptions", subscription(receiver.url, notification=note, **triggers))
    patch_attrs(client, "urn:ngsi-ld:Building:b1", {"floors": {"type": "Property", "value": 4}})
    assert client.delete(f"{BASE}/entities/urn:ngsi-ld:Building:b1/attrs/name").status_code == 204
    assert client.delete(f"{BASE}/entities/urn:ngsi-ld:Building:b1").status_code == 204
    assert rt.flush()
    updated, attr_deleted, entity_deleted = (b["data"][0] for b in receiver.bodies())
    assert updated["floors"] == {"type": "Property", "value": 4, "previousValue": 3}
    assert attr_deleted["name"] == {
        "type": "Property",
        "value": "urn:ngsi-ld:null",
        "previousValue": "Ecole 1",
    }
    assert set(entity_deleted) == {"id", "type", "deletedAt", "floors", "location"}
    assert entity_deleted["floors"] == {"type": "Property", "value": "urn:ngsi-ld:null", "previousValue": 4}


def test_deleted_subscription_drops_pending_retries(node: tuple[TestClient, NetworkRuntime]) -> None:
    client, rt = node
    failing = Receiver(status=500)
    try:
        post(client, "/entities", building())
        post(client, "/subscriptions", subscription(failing.url))
        patch_attrs(client, "urn:ngsi-ld:Building:b1", {"floors": {"type": "Property", "value": 4}})
        client.delete(f"{BASE}/subscriptions/urn:ngsi-ld:Subscription:s1")
        assert rt.flush()
        assert failing.received == []
    finally:
        failing.close()


def test_attribute_changes_classifies_dataset_instances() -> None:
    before = {
        "attrs": {
            "a": [{"type": "Property", "value": 1}, {"type": "Property", "value": 2, "datasetId": "urn:d:1"}],
            "b": [{"type": "Property", "value": 1}],
        }
    }
    after = {
        "attrs": {
            "a": [{"type": "Property", "value": 1}],
            "c": [{"type": "Property", "value": 1}],
            "b": [{"type": "Property", "value": 9}],
        }
    }
    assert attribute_changes(before, after) == {
        "attributeCreated": {"c"},
        "attributeUpdated": {"b"},
        "attributeDeleted": {"a"},  # lost its urn:d:1 instance
    }


# --- MQTT -------------------------------------------------------------------------------------------


def test_notification_over_mqtt(
    node: tuple[TestClient, NetworkRuntime], mqtt_broker: tuple[str, int]
) -> None:
    import paho.mqtt.client as mqtt

    host, port = mqtt_broker
    topic = f"bright/test/{uuid.uuid4().hex}"
    got: list[dict[str, Any]] = []
    ready = threading.Event()
    arrived = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_connect = lambda c, *_: (c.subscribe(topic, qos=1), ready.set())
    sub.on_message = lambda _c, _u, msg: (got.append(json.loads(msg.payload)), arrived.set())
    sub.connect(host, port)
    sub.loop_start()
    try:
        assert ready.wait(10)
        time.sleep(0.2)  # let the SUBACK land before publishing
        client, rt = node
        post(client, "/entities", building())
        endpoint = {
            "uri": f"mqtt://{host}:{port}/{topic}",
            "accept": "application/json",
            "notifierInfo": [{"key": "MQTT-QoS", "value": "1"}],
            "receiverInfo": [{"key": "X-Community", "value": "ixelles"}],
        }
        post(
            client,
            "/subscriptions",
            subscription("", notification={"endpoint": endpoint, "format": "keyValues"}),
        )
        patch_attrs(client, "urn:ngsi-ld:Building:b1", {"floors": {"type": "Property", "value": 4}})
        assert rt.flush()
        assert arrived.wait(10)
    finally:
        sub.loop_stop()
        sub.disconnect()
        node[1].delivery.mqtt.close()
    (message,) = got
    assert message["metadata"]["Content-Type"] == "application/json"
    assert message["metadata"]["X-Community"] == "ixelles"
    assert "Link" in message["metadata"]
    assert message["body"]["type"] == "Notification"
    assert message["body"]["data"][0]["floors"] == 4
