"""Two real nodes on loopback (uvicorn in threads), a recording proxy between them.

The city node forwards queries to the community node as signed peer requests; what crosses the
wire is recorded by a TCP proxy and checked: member-level data never crosses unless a policy
and the member's consent allow it; replayed, forged and unknown-key requests are refused.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from bright.api.app import create_app
from bright.config import Settings
from bright.ledger.identity import NodeIdentity
from bright.network.policy import ODRL_CONTEXT
from bright.network.signing import signed_headers
from bright.twin.context import BRIGHT_CONTEXT_URL
from bright.twin.vocabulary import bright_context
from bright.web.users import create_token

from .conftest import NGSI, community_entities

CTX = {
    "Link": f'<{BRIGHT_CONTEXT_URL}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
}


def _free_socket() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s


class Node:
    """A node with auth=required served by uvicorn in a thread."""

    def __init__(self, db: str, tmp: Path, name: str) -> None:
        self.sock = _free_socket()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.data = tmp / f"{name}-data"
        settings = Settings(
            database_url=db,
            auth="required",
            node_name=name,
            extra={"data_dir": str(self.data), "node_id": name, "public_url": self.url},
        )
        self.app = create_app(settings)
        self.name = name
        _, value = create_token(self.app.state.twin.engine, "root", "manager")
        self.manager = {"Authorization": f"Bearer {value}"}
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, f"node {name} did not start"
            time.sleep(0.02)

    @property
    def identity(self) -> NodeIdentity:
        return NodeIdentity.load(self.data / "keys")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.app.state.twin.engine.dispose()


class RecordingProxy:
    """A TCP proxy 127.0.0.1:<port> -> target that keeps every byte in each direction."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = _free_socket()
        self.listener.listen(16)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.upstream = bytearray()  # city -> community (requests)
        self.downstream = bytearray()  # community -> city (answers)
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _pipe(self, src: socket.socket, dst: socket.socket, record: bytearray) -> None:
        try:
            while chunk := src.recv(65536):
                with self.lock:
                    record.extend(chunk)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, server, self.upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, self.downstream), daemon=True).start()

    def clear(self) -> None:
        with self.lock:
            self.upstream.clear()
            self.downstream.clear()

    def stop(self) -> None:
        self.running = False
        self.listener.close()


@pytest.fixture
def network(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A community node (on each backend) with 6 + 3 members, a city node, a proxy between them."""
    monkeypatch.setenv("BRIGHT_DATA_DIR", str(tmp_path / "web"))
    community = Node(db_url, tmp_path, "community-a")
    city = Node(f"sqlite:///{tmp_path / 'city.db'}", tmp_path, "city")
    proxy = RecordingProxy(int(community.url.rsplit(":", 1)[1]))
    try:
        ctx = bright_context()
        for key, n in (("big", 6), ("small", 3)):
            for e in community_entities(key, n):
                community.app.state.twin.create_entity("", {**e, "@context": BRIGHT_CONTEXT_URL}, ctx)
        # The organisers admit each other's nodes (by DID, read from GET /api/network/node).
        city_did = httpx.get(city.url + "/api/network/node").json()["did"]
        community_did = httpx.get(community.url + "/api/network/node").json()["did"]
        r = httpx.post(
            community.url + "/api/network/members",
            json={"did": city_did, "nodeId": "city", "url": city.url},
            headers=community.manager,
        )
        assert r.status_code == 201, r.text
        r = httpx.post(
            city.url + "/api/network/members",
            json={"did": community_did, "nodeId": "community-a", "url": proxy.url},
            headers=city.manager,
        )
        assert r.status_code == 201, r.text
        reg = {
            "id": "urn:ngsi-ld:ContextSourceRegistration:community-a",
            "type": "ContextSourceRegistration",
            "information": [
                {"entities": [{"type": t} for t in ("Meter", "EnergyCommunity", "EnergyProsumer")]}
            ],
            "endpoint": proxy.url,
            "mode": "inclusive",
            "operations": ["federationOps"],
        }
        r = httpx.post(city.url + NGSI + "/csourceRegistrations", json=reg, headers={**CTX, **city.manager})
        assert r.status_code == 201, r.text
        yield {"community": community, "city": city, "proxy": proxy}
    finally:
        proxy.stop()
        city.stop()
        community.stop()


def _city_query(city: Node, type_: str) -> list[dict[str, Any]]:
    r = httpx.get(
        city.url + NGSI + f"/entities?type={type_}&limit=100&options=keyValues",
        headers={**CTX, **city.manager},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_member_level_data_never_crosses_to_a_peer_without_policy_and_consent(
    network: dict[str, Any],
) -> None:
    city, community, proxy = network["city"], network["community"], network["proxy"]
    proxy.clear()
    cards = _city_query(city, "EnergyCommunity")
    assert {e["id"] for e in cards} == {
        "urn:ngsi-ld:EnergyCommunity:big",
        "urn:ngsi-ld:EnergyCommunity:small",
    }
    assert b"urn:ngsi-ld:EnergyCommunity:big" in bytes(proxy.downstream)
    # The forwarded request was signed by the city.
    assert b"Signature-Input: bright=" in bytes(proxy.upstream) or b"signature-input: bright=" in bytes(
        proxy.upstream
    )

    proxy.clear()
    assert _city_query(city, "Meter") == []
    assert _city_query(city, "EnergyProsumer") == []
    wire = bytes(proxy.downstream)
    assert b"/entities" in bytes(proxy.upstream)  # the community was asked...
    assert (
        b"urn:ngsi-ld:Meter:" not in wire and b"urn:ngsi-ld:EnergyProsumer:" not in wire
    )  # ...and said nothing personal
    assert b"541448" not in wire  # no access-point id either

    # The community's manager lets the city read member m1's meter for the network's purpose, and
    # m1 consents: that one meter crosses, no other.
    agreement = {
        "@context": ODRL_CONTEXT,
        "@type": "Agreement",
        "uid": "urn:ngsi-ld:DataPolicy:city-m1",
        "permission": [
            {
                "target": "urn:ngsi-ld:Meter:big:m1",
                "assignee": "city",
                "action": "read",
                "constraint": [{"leftOperand": "purpose", "operator": "eq", "rightOperand": "network"}],
            }
        ],
    }
    r = httpx.post(
        community.url + "/api/policies",
        json={"odrl": agreement, "community": "urn:ngsi-ld:EnergyCommunity:big"},
        headers=community.manager,
    )
    assert r.status_code == 201, r.text
    proxy.clear()
    assert _city_query(city, "Meter") == []  # no consent yet
    assert b"urn:ngsi-ld:Meter:" not in bytes(proxy.downstream)
    consent = {
        "id": "urn:ngsi-ld:Consent:m1-network",
        "type": "Consent",
        "member": {"type": "Relationship", "object": "urn:ngsi-ld:EnergyProsumer:big:m1"},
        "purpose": {"type": "Property", "value": "network"},
        "grantedAt": {"type": "Property", "value": {"@type": "DateTime", "@value": "2026-01-01T00:00:00Z"}},
    }
    r = httpx.post(community.url + NGSI + "/entities", json=consent, headers=community.manager)
    assert r.status_code == 201, r.text
    community.app.state.access.policies.invalidate()
    proxy.clear()
    assert [e["id"] for e in _city_query(city, "Meter")] == ["urn:ngsi-ld:Meter:big:m1"]
    wire = bytes(proxy.downstream)
    assert b"urn:ngsi-ld:Meter:big:m1" in wire
    assert not any(f"urn:ngsi-ld:Meter:big:m{i}".encode() in wire for i in (0, 2, 3, 4, 5))

    # Every access of the peer is in the community's audit log, with what was filtered out.
    log = httpx.get(community.url + "/api/audit?peer=city", headers=community.manager).json()
    assert log and all(e["kind"] == "node" and e["subject"] == "city" for e in log)
    assert any(e["decision"] == "filtered" and e["filtered"] >= 6 for e in log)


def test_replayed_forged_and_unknown_key_requests_refused_on_the_wire(network: dict[str, Any]) -> None:
    city, community = network["city"], network["community"]
    url = community.url + NGSI + "/entities/urn:ngsi-ld:EnergyCommunity:big"
    h = signed_headers(city.identity, "GET", url)
    first = httpx.get(url, headers=h)
    assert first.status_code == 200, first.text
    replay = httpx.get(url, headers=h)
    assert replay.status_code == 401 and "replayed" in replay.json()["detail"]
    stale = signed_headers(city.identity, "GET", url, created=int(time.time()) - 400)
    r = httpx.get(url, headers=stale)
    assert r.status_code == 401 and "created" in r.json()["detail"]
    forged = signed_headers(city.identity, "GET", url)
    other = community.url + NGSI + "/entities/urn:ngsi-ld:Meter:big:m0"
    r = httpx.get(other, headers=forged)  # a signature of another target
    assert r.status_code == 401 and "does not verify" in r.json()["detail"]
    stranger = signed_headers(NodeIdentity.generate(), "GET", url)
    r = httpx.get(url, headers=stranger)
    assert r.status_code == 401 and "unknown key" in r.json()["detail"]
    log = httpx.get(community.url + "/api/audit?decision=unauthenticated", headers=community.manager).json()
    assert len(log) >= 4


def test_aggregates_below_k_refused_to_a_peer(network: dict[str, Any]) -> None:
    city, community = network["city"], network["community"]
    for key, status in (("big", 200), ("small", 403)):
        url = community.url + f"/api/communities/urn:ngsi-ld:EnergyCommunity:{key}"
        r = httpx.get(url, headers=signed_headers(city.identity, "GET", url))
        assert r.status_code == status, r.text
    assert r.json()["policy"] == "urn:ngsi-ld:DataPolicy:small-network"
    assert "below the minimum of 5" in r.json()["detail"]


def test_a_node_that_leaves_is_unregistered_and_refused(network: dict[str, Any]) -> None:
    city, community = network["city"], network["community"]
    organiser = city.manager
    r = httpx.delete(city.url + "/api/network/members/community-a", headers=organiser)
    assert r.status_code == 200, r.text
    assert r.json()["unregistered"] == ["urn:ngsi-ld:ContextSourceRegistration:community-a"]
    regs = httpx.get(
        city.url + NGSI + "/csourceRegistrations?type=Meter", headers={**CTX, **city.manager}
    ).json()
    assert regs == []
    # The community, removing the city, refuses its signed requests from now on.
    assert (
        httpx.delete(community.url + "/api/network/members/city", headers=community.manager).status_code
        == 200
    )
    url = community.url + NGSI + "/entities/urn:ngsi-ld:EnergyCommunity:big"
    r = httpx.get(url, headers=signed_headers(city.identity, "GET", url))
    assert r.status_code == 401 and "unknown key" in r.json()["detail"]


def test_open_cards_cross_with_member_attributes_withheld_and_a_notice(network: dict[str, Any]) -> None:
    """Asked for every attribute of the communities (hasMember names members), the community node
    sends the open cards without hasMember and says so; the city gets both communities."""
    city, community, proxy = network["city"], network["community"], network["proxy"]
    _, gov = create_token(city.app.state.twin.engine, "city-dashboard", "local_government")
    for who in (city.manager, {"Authorization": f"Bearer {gov}"}):
        for attrs in ("", "&attrs=name,hasMember"):
            proxy.clear()
            r = httpx.get(
                city.url + NGSI + f"/entities?type=EnergyCommunity&limit=100{attrs}",
                headers={**CTX, **who},
                timeout=10,
            )
            assert r.status_code == 200, r.text
            cards = {e["id"]: e for e in r.json()}
            assert set(cards) == {"urn:ngsi-ld:EnergyCommunity:big", "urn:ngsi-ld:EnergyCommunity:small"}
            assert cards["urn:ngsi-ld:EnergyCommunity:big"]["name"]["value"] == "Community big"
            assert all("hasMember" not in e for e in cards.values())
            head, _, body = bytes(proxy.downstream).partition(b"\r\n\r\n")
            assert b"urn:ngsi-ld:EnergyProsumer:" not in body
            notice = [
                line
                for line in head.decode("latin-1").split("\r\n")
                if line.lower().startswith("ngsild-warning:")
            ]
            assert len(notice) == 1, head
            assert (
                notice[0]
                .split(":", 1)[1]
                .strip()
                .startswith('199 - "attributes withheld by the data policies')
            )
            assert "urn:ngsi-ld:EnergyCommunity:big (hasMember)" in notice[0]
            assert "urn:ngsi-ld:EnergyCommunity:small (hasMember)" in notice[0]
            assert b"bright-attributes-withheld: 2" in head.lower()
    # Directly, on one card: the same notice.
    url = community.url + NGSI + "/entities/urn:ngsi-ld:EnergyCommunity:big"
    r = httpx.get(url, headers={**CTX, **signed_headers(city.identity, "GET", url)})
    assert (
        r.status_code == 200 and "hasMember" not in r.json() and r.json()["name"]["value"] == "Community big"
    )
    assert "(hasMember)" in r.headers["NGSILD-Warning"]
    # The community's manager sees everything, without a notice.
    r = httpx.get(url, headers={**CTX, **community.manager})
    assert len(r.json()["hasMember"]["object"]) == 6 and "NGSILD-Warning" not in r.headers
