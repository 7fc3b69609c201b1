"""Context source registrations: CRUD on both backends, discovery, csource subscriptions."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bright.api.app import create_app
from bright.api.subscriptions import NetworkRuntime, install
from bright.config import Settings
from bright.network.federation import FederationConfig
from bright.network.registrations import (
    EntityFilter,
    Registration,
    StoredRegistration,
    info_matches,
    operations_of,
)
from bright.twin.db import make_engine
from bright.twin.service import TwinService

BASE = "/ngsi-ld/v1"
LD = "application/ld+json"
DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"
SUITE_CTX = "https://forge.etsi.org/rep/cim/ngsi-ld-test-suite/-/raw/develop/resources/jsonld-contexts/ngsi-ld-test-suite.jsonld"
LINK = f'<{SUITE_CTX}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records the JSON bodies it receives."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                outer.bodies.append(json.loads(self.rfile.read(n)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_node(url: str) -> tuple[TestClient, NetworkRuntime, TwinService]:
    settings = Settings(database_url=url)
    service = TwinService(make_engine(url), settings)
    app = create_app(settings, service=service)
    rt = install(app, service, config=FederationConfig(node_id="reg-node", notification_backoff_s=0.01))
    return TestClient(app), rt, service


@pytest.fixture
def any_node(db_url: str) -> Iterator[tuple[TestClient, NetworkRuntime]]:
    client, rt, service = make_node(db_url)
    yield client, rt
    service.engine.dispose()


@pytest.fixture
def node(tmp_path) -> Iterator[tuple[TestClient, NetworkRuntime]]:
    client, rt, service = make_node(f"sqlite:///{tmp_path / 'reg.db'}")
    yield client, rt
    service.engine.dispose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def registration(rid: str = "urn:ngsi-ld:ContextSourceRegistration:ixelles", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": rid,
        "type": "ContextSourceRegistration",
        "information": [
            {"entities": [{"type": "EnergyCommunity"}], "propertyNames": ["sharedEnergy", "members"]},
            {"entities": [{"idPattern": "^urn:ngsi-ld:Building:ixl-.*", "type": "Building"}]},
        ],
        "endpoint": "http://ixelles.example.org:8000",
    }
    body.update(extra)
    return body


def create(client: TestClient, body: dict[str, Any], path: str = "/csourceRegistrations") -> None:
    r = client.post(BASE + path, json=body)
    assert r.status_code == 201, r.text


def test_registration_crud(any_node: tuple[TestClient, NetworkRuntime]) -> None:
    client, _ = any_node
    create(client, registration(expiresAt="2099-01-01T00:00:00Z", cooperative="yes"))
    r = client.get(f"{BASE}/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:ixelles")
    assert r.status_code == 200
    # Defaults are shown; names come back compacted (core context here); extra members are kept.
    assert r.json() == {
        **registration(expiresAt="2099-01-01T00:00:00Z", cooperative="yes"),
        "mode": "inclusive",
        "operations": ["federationOps"],
    }
    r = client.patch(
        f"{BASE}/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:ixelles",
        json={"endpoint": "http://ixelles.example.org:9000", "expiresAt": None},
    )
    assert r.status_code == 204, r.text
    got = client.get(f"{BASE}/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:ixelles").json()
    assert got["endpoint"] == "http://ixelles.example.org:9000" and "expiresAt" not in got
    assert (
        client.delete(
            f"{BASE}/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:ixelles"
        ).status_code
        == 204
    )
    assert (
        client.get(f"{BASE}/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:ixelles").status_code
        == 404
    )


@pytest.mark.parametrize(
    ("what", "body"),
    [
        ("no information", {k: v for k, v in registration().items() if k != "information"}),
        ("null information", registration(information=None)),
        ("no endpoint", {k: v for k, v in registration().items() if k != "endpoint"}),
        ("bad mode", registration(mode="sometimes")),
        ("unknown operation", registration(operations=["teleport"])),
        ("past expiry", registration(expiresAt="2018-11-29T14:53:15Z")),
        ("entity without type", registration(information=[{"entities": [{"id": "urn:x:1"}]}])),
        ("wrong type", registration(type="Registration")),
    ],
)
def test_invalid_registrations(
    node: tuple[TestClient, NetworkRuntime], what: str, body: dict[str, Any]
) -> None:
    client, _ = node
    r = client.post(f"{BASE}/csourceRegistrations", json=body)
    assert r.status_code == 400, what
    assert r.json()["type"].endswith("BadRequestData")


def test_duplicate_and_mandatory_members_on_update(node: tuple[TestClient, NetworkRuntime]) -> None:
    client, _ = node
    create(client, registration())
    assert client.post(f"{BASE}/csourceRegistrations", json=registration()).status_code == 409
    url = f"{BASE}/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:ixelles"
    assert client.patch(url, json={"information": None}).status_code == 400
    assert client.patch(url, json={"type": "Building"}).status_code == 400
    assert client.delete(f"{BASE}/csourceRegistrations/invalid").status_code == 400


def test_discovery_by_type_attrs_id_q_and_geo(node: tuple[TestClient, NetworkRuntime]) -> None:
    client, _ = node
    create(client, registration(cooperative="yes", location={"type": "Point", "coordinates": [4.37, 50.83]}))
    create(
        client,
        registration(
            "urn:ngsi-ld:ContextSourceRegistration:liege",
            information=[{"entities": [{"type": "EnergyCommunity"}], "propertyNames": ["kpi"]}],
            location={"type": "Point", "coordinates": [5.57, 50.63]},
        ),
    )

    def ids(query: str) -> list[str]:
        r = client.get(f"{BASE}/csourceRegistrations?{query}")
        assert r.status_code == 200, r.text
        return [x["id"].rsplit(":", 1)[1] for x in r.json()]

    assert ids("type=EnergyCommunity") == ["ixelles", "liege"]
    assert ids("type=EnergyCommunity&attrs=members") == ["ixelles"]  # liege registers only kpi
    assert ids("type=Building") == ["ixelles"]
    assert ids("type=Building&id=urn:ngsi-ld:Building:ixl-7") == ["ixelles"]
    assert ids("type=Building&id=urn:ngsi-ld:Building:other") == []
    assert ids('q=cooperative=="yes"') == ["ixelles"]
    # 10 km around Brussels-Centre: Ixelles (~2.5 km), not Liège (~90 km).
    assert ids("georel=near;maxDistance==10000&geometry=Point&coordinates=[4.35,50.85]") == ["ixelles"]
    assert client.get(f"{BASE}/csourceRegistrations").status_code == 400  # no selector at all
    assert client.get(f"{BASE}/csourceRegistrations?type=Building&id=notauri").status_code == 400


def test_registration_terms_follow_the_context(node: tuple[TestClient, NetworkRuntime]) -> None:
    client, _rt = node
    body = registration(information=[{"entities": [{"type": "Building"}], "propertyNames": ["name"]}])
    r = client.post(f"{BASE}/csourceRegistrations", json=body, headers={"Link": LINK})
    assert r.status_code == 201, r.text
    url = f"{BASE}/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:ixelles"
    expanded = client.get(url).json()["information"][0]
    assert expanded == {
        "entities": [{"type": "https://ngsi-ld-test-suite/context#Building"}],
        "propertyNames": ["https://ngsi-ld-test-suite/context#name"],
    }
    compact = client.get(url, headers={"Link": LINK}).json()["information"][0]
    assert compact == {"entities": [{"type": "Building"}], "propertyNames": ["name"]}


def test_operation_groups_and_info_matching() -> None:
    ops = operations_of({"operations": ["retrieveOps", "createEntity"]})
    assert ops == {"retrieveEntity", "queryEntity", "createEntity"}
    assert "updateAttrs" in operations_of({"operations": ["redirectionOps"]})
    assert "queryEntity" in operations_of({})  # default federationOps
    info = {"entities": [{"type": "T", "idPattern": "^urn:a:"}], "propertyNames": ["p"]}
    assert info_matches(info, EntityFilter(ids=("urn:a:1",)))
    assert not info_matches(info, EntityFilter(ids=("urn:b:1",)))
    assert not info_matches(info, EntityFilter(attrs=frozenset({"q"})))
    reg = Registration(
        StoredRegistration("", "urn:r:1", {"information": [info], "endpoint": "http://x/"}, None, "", "")
    )
    assert reg.attributes("urn:a:1", ["T"]) == {"p"} and reg.covers("urn:a:9", [])
    assert reg.attributes("urn:b:1", ["T"]) == set() and reg.endpoint == "http://x"


# --- csource subscriptions --------------------------------------------------------------------------


def csub(endpoint: str, sid: str = "urn:ngsi-ld:Subscription:cs1", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": sid,
        "type": "Subscription",
        "entities": [{"type": "Building"}],
        "notification": {"endpoint": {"uri": endpoint}},
    }
    body.update(extra)
    return body


def test_csource_subscription_crud(any_node: tuple[TestClient, NetworkRuntime]) -> None:
    client, _ = any_node
    create(client, csub("http://127.0.0.1:9/n"), "/csourceSubscriptions")
    got = client.get(f"{BASE}/csourceSubscriptions/urn:ngsi-ld:Subscription:cs1").json()
    assert got == {**csub("http://127.0.0.1:9/n"), "status": "active"}  # no notificationTrigger here
    assert (
        client.patch(
            f"{BASE}/csourceSubscriptions/urn:ngsi-ld:Subscription:cs1", json={"isActive": False}
        ).status_code
        == 204
    )
    assert (
        client.get(f"{BASE}/csourceSubscriptions/urn:ngsi-ld:Subscription:cs1").json()["status"] == "paused"
    )
    assert [s["id"] for s in client.get(f"{BASE}/csourceSubscriptions").json()] == [
        "urn:ngsi-ld:Subscription:cs1"
    ]
    assert client.delete(f"{BASE}/csourceSubscriptions/urn:ngsi-ld:Subscription:cs1").status_code == 204
    assert client.get(f"{BASE}/csourceSubscriptions/urn:ngsi-ld:Subscription:cs1").status_code == 404
    assert (
        client.post(
            f"{BASE}/csourceSubscriptions", json={**csub("x"), "expiresAt": "2001-01-01T00:00:00Z"}
        ).status_code
        == 400
    )


def test_csource_notifications_follow_matching_registrations(
    node: tuple[TestClient, NetworkRuntime], receiver: Receiver
) -> None:
    client, rt = node
    create(client, registration())  # matches Building through its second RegistrationInfo
    create(client, csub(receiver.url), "/csourceSubscriptions")  # initial: newlyMatching
    url = f"{BASE}/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:ixelles"
    client.patch(url, json={"endpoint": "http://ixelles.example.org:9000"})  # updated
    client.patch(url, json={"information": [{"entities": [{"type": "EnergyCommunity"}]}]})  # noLongerMatching
    other = registration(
        "urn:ngsi-ld:ContextSourceRegistration:other", information=[{"entities": [{"type": "Vehicle"}]}]
    )
    create(client, other)  # does not match: no notification
    assert rt.flush()
    reasons = [
        (b["type"], b["triggerReason"], [d["id"].rsplit(":", 1)[1] for d in b["data"]])
        for b in receiver.bodies
    ]
    assert reasons == [
        ("ContextSourceNotification", "newlyMatching", ["ixelles"]),
        ("ContextSourceNotification", "updated", ["ixelles"]),
        ("ContextSourceNotification", "noLongerMatching", ["ixelles"]),
    ]
    # Only the RegistrationInfo relevant to the subscription is notified.
    first = receiver.bodies[0]["data"][0]
    assert first["information"] == [
        {"entities": [{"idPattern": "^urn:ngsi-ld:Building:ixl-.*", "type": "Building"}]}
    ]


def test_periodic_csource_notification(node: tuple[TestClient, NetworkRuntime], receiver: Receiver) -> None:
    client, rt = node
    create(client, registration())
    create(client, csub(receiver.url, timeInterval=30), "/csourceSubscriptions")
    rt.registrations.tick(mono=1000.0)  # at once
    rt.registrations.tick(mono=1010.0)  # not due
    rt.registrations.tick(mono=1031.0)  # due again
    assert rt.flush()
    assert [b["triggerReason"] for b in receiver.bodies] == ["newlyMatching", "newlyMatching"]
