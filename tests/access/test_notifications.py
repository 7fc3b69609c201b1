"""Notifications carry only what a GET by the subscription's creator would return."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from bright.ledger.identity import NodeIdentity
from bright.network.signing import signed_headers
from bright.twin.context import BRIGHT_CONTEXT_URL

from .conftest import NGSI, AccessNode

CTX = {
    "Link": f'<{BRIGHT_CONTEXT_URL}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
}
WATCHED = ("Meter", "EnergyCommunity", "Building", "EnergyProsumer")


class _Receiver(BaseHTTPRequestHandler):
    seen: dict[str, list[dict[str, Any]]] = {}

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        _Receiver.seen.setdefault(self.path, []).append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.seen = {}
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Peer:
    """A member node sending signed requests."""

    def __init__(self, node: AccessNode, node_id: str) -> None:
        self.node = node
        self.identity = NodeIdentity.generate()
        node.app.state.access.membership.join(self.identity.did, node_id, url=f"http://{node_id}.example")

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        content = json.dumps(body).encode() if body is not None else b""
        h = {**CTX, **(headers or {})}
        if body is not None:
            h["Content-Type"] = "application/json"
        h.update(signed_headers(self.identity, method, "http://testserver" + path, h, content))
        return self.node.client.request(method, path, content=content or None, headers=h)


def _subscription(endpoint: str, sid: str | None = None) -> dict[str, Any]:
    sub: dict[str, Any] = {
        "type": "Subscription",
        "entities": [{"type": t} for t in WATCHED],
        "notification": {"endpoint": {"uri": endpoint, "accept": "application/json"}},
    }
    if sid:
        sub["id"] = sid
    return sub


def _touch(node: AccessNode, entity_id: str, value: float) -> None:
    r = node.client.patch(
        f"{NGSI}/entities/{entity_id}/attrs",
        json={"note": {"type": "Property", "value": value}},
        headers={**CTX, **node.manager},
    )
    assert r.status_code == 204, r.text


def _delivered(node: AccessNode, path: str, n: int) -> list[dict[str, Any]]:
    node.app.state.network.delivery.flush(10)
    deadline = time.monotonic() + 15
    while len(_Receiver.seen.get(path, [])) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return [e for note in _Receiver.seen.get(path, []) for e in note["data"]]


def test_notifications_carry_what_a_get_by_the_subscriber_returns(node: AccessNode, receiver: str) -> None:
    node.add_community("big", 6)
    node.add_community("small", 3)
    peer = Peer(node, "city")
    r = peer.request("POST", NGSI + "/subscriptions", _subscription(receiver + "/peer"))
    assert r.status_code == 201, r.text
    peer_sid = r.headers["Location"].rsplit("/", 1)[-1]
    assert peer_sid.startswith("urn:ngsi-ld:Subscription:")
    r = node.client.post(
        NGSI + "/subscriptions", json=_subscription(receiver + "/manager"), headers={**CTX, **node.manager}
    )
    assert r.status_code == 201, r.text
    touched = [
        "urn:ngsi-ld:Meter:big:m0",
        "urn:ngsi-ld:EnergyProsumer:big:m1",
        "urn:ngsi-ld:EnergyCommunity:big",
        "urn:ngsi-ld:Building:big:hall",
        "urn:ngsi-ld:Building:small:hall",
    ]
    for i, eid in enumerate(touched):
        _touch(node, eid, float(i))
    everything = _delivered(node, "/manager", len(touched))
    assert {e["id"] for e in everything} == set(touched)  # the manager's subscription: all of it
    got = {e["id"]: e for e in _delivered(node, "/peer", 2)}
    # Exactly what the peer may GET: the open card (without hasMember), the 6-member community's
    # building; not the meter or the prosumer of a member, not the 3-member community's building.
    for eid in touched:
        r = peer.request("GET", f"{NGSI}/entities/{eid}")
        assert (eid in got) == (r.status_code == 200), (eid, r.status_code)
        if eid in got:
            assert set(got[eid]) == set(r.json()), eid
    assert set(got) == {"urn:ngsi-ld:EnergyCommunity:big", "urn:ngsi-ld:Building:big:hall"}
    assert "hasMember" not in got["urn:ngsi-ld:EnergyCommunity:big"]
    assert "hasMember" in next(e for e in everything if e["id"] == "urn:ngsi-ld:EnergyCommunity:big")
    raw = json.dumps(_Receiver.seen["/peer"])
    assert "urn:ngsi-ld:Meter:" not in raw and "urn:ngsi-ld:EnergyProsumer:" not in raw

    # A peer that leaves gets nothing more; the record of a deleted subscription goes with it.
    node.app.state.access.membership.leave("city")
    before = len(_Receiver.seen["/peer"])
    _touch(node, "urn:ngsi-ld:EnergyCommunity:big", 9.0)
    assert len(_delivered(node, "/manager", len(touched) + 1)) == len(touched) + 1
    assert len(_Receiver.seen["/peer"]) == before
    subs = node.app.state.access.subscriptions
    assert subs.get("", peer_sid) is not None
    r = node.client.delete(f"{NGSI}/subscriptions/{peer_sid}", headers=node.manager)
    assert r.status_code == 204
    # The manager's DELETE goes through the write path too: the record is dropped.
    assert subs.get("", peer_sid) is None


def test_subscription_with_its_own_id_and_failed_creation(node: AccessNode, receiver: str) -> None:
    node.add_community("big", 6)
    peer = Peer(node, "city")
    sid = "urn:ngsi-ld:Subscription:city-1"
    assert (
        peer.request("POST", NGSI + "/subscriptions", _subscription(receiver + "/p", sid)).status_code == 201
    )
    subs = node.app.state.access.subscriptions
    recorded = subs.get("", sid)
    assert recorded is not None and recorded[0].role == "peer" and recorded[0].subject == "city"
    # A second creation with the same id fails (409) and leaves the first record alone.
    other = Peer(node, "intruder")
    assert (
        other.request("POST", NGSI + "/subscriptions", _subscription(receiver + "/o", sid)).status_code == 409
    )
    recorded = subs.get("", sid)
    assert recorded is not None and recorded[0].subject == "city"
    # A bad subscription is refused and nothing is recorded for it.
    bad = {**_subscription(receiver + "/b", "urn:ngsi-ld:Subscription:bad"), "entities": "Meter"}
    assert peer.request("POST", NGSI + "/subscriptions", bad).status_code == 400
    assert subs.get("", "urn:ngsi-ld:Subscription:bad") is None
