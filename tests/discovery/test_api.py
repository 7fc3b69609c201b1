"""The network API on a node: cards, search, compare, practices, questions, tools, open data."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy import func, inspect, select, table

from bright.api.app import create_app
from bright.api.network import install
from bright.config import Settings
from bright.network.demo_network import DemoNetwork, demo_network
from bright.services.demo import build_demo_community
from bright.twin.context import BRIGHT_CONTEXT_URL
from bright.twin.errors import Forbidden

REPLY = {"organisation": "Zonnewijk Jette", "email": "info@zonnewijk-jette.example"}


def make_client(url: str, **install_options: Any) -> Iterator[tuple[TestClient, FastAPI]]:
    app = create_app(Settings(database_url=url))
    install(app, encoder="tfidf", **install_options)
    with TestClient(app) as client:
        yield client, app
    app.state.discovery.close()
    app.state.twin.engine.dispose()


@pytest.fixture
def sqlite_client(tmp_path) -> Iterator[tuple[TestClient, FastAPI]]:  # type: ignore[no-untyped-def]
    yield from make_client(f"sqlite:///{tmp_path / 'node.db'}")


@pytest.fixture(scope="module")
def small_net() -> DemoNetwork:
    return demo_network(16, practices_per_card=2, seed=4)


def publish(app: FastAPI, net: DemoNetwork) -> None:
    directory = app.state.discovery
    directory.publish_cards(net.cards)
    directory.publish_items([*net.practices, *net.initiatives])


def row_counts(app: FastAPI) -> dict[str, int]:
    engine = app.state.twin.engine
    out = {}
    with engine.connect() as conn:
        for name in inspect(engine).get_table_names():
            out[name] = conn.execute(select(func.count()).select_from(table(name))).scalar_one()
    return out


def test_network_api_on_both_backends(db_url: str, small_net: DemoNetwork) -> None:
    for client, app in make_client(db_url):
        publish(app, small_net)
        r = client.get("/api/network/cards", params={"limit": 5})
        assert r.status_code == 200
        assert r.json()["count"] == 16 and len(r.json()["cards"]) == 5

        x = small_net.cards_of("school")[0]
        r = client.get(
            "/api/network/search", params={"like": x.id, "schools": "true", "within_km": 8, "limit": 10}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["encoder"] == "tfidf" and body["results"]
        for m in body["results"]:
            assert m["card"]["members"]["schools"] > 0
            assert m["distance_km"] <= 8
            assert m["explanation"].startswith("also involves")

        r = client.get(f"/api/network/compare/{x.id}", params={"k": 5})
        assert r.status_code == 200
        assert {k["kpi"] for k in r.json()["kpis"]} >= {"self_sufficiency", "shared_kwh_per_member"}
        assert len(r.json()["peers"]) == 5

        r = client.get("/api/network/practices", params={"q": "panneaux solaires", "lang": "fr", "limit": 3})
        assert r.status_code == 200
        assert r.json()["results"] and all(h["lang"] == "fr" for h in r.json()["results"])

        r = client.post(
            "/api/network/questions",
            json={"to": x.id, "subject": "Roof study", "text": "How long did it take?", "reply_to": REPLY},
        )
        assert r.status_code == 201, r.text
        r = client.get("/api/network/questions", params={"to": x.id})
        assert [q["subject"] for q in r.json()["questions"]] == ["Roof study"]

        # a manager edits the card: the index sees it at once
        assert client.get("/api/network/search", params={"q": "quokka telescope"}).json()["results"] == []
        edited = {
            **x.to_json(),
            "name": "Renamed school community",
            "description": {"en": "A quokka telescope"},
        }
        r = client.put(f"/api/network/cards/{x.id}", json=edited)
        assert r.status_code == 200
        r = client.get("/api/network/search", params={"q": "quokka telescope"})
        assert [m["card"]["id"] for m in r.json()["results"]] == [x.id]
        assert client.get(f"/api/network/cards/{x.id}").json()["name"] == "Renamed school community"

        r = client.get("/api/opendata/cards.csv")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        frame = pd.read_csv(io.BytesIO(r.content))
        assert "Renamed school community" in set(frame["name"])
        r = client.get("/api/opendata/catalog.jsonld")
        assert r.status_code == 200 and r.headers["content-type"] == "application/ld+json"
        urls = [
            d["dcat:downloadURL"]["@id"] for ds in r.json()["dcat:dataset"] for d in ds["dcat:distribution"]
        ]
        assert "http://testserver/api/opendata/practices.parquet" in urls


def test_private_fields_never_leave_the_node(sqlite_client: tuple[TestClient, FastAPI]) -> None:
    client, app = sqlite_client
    twin = app.state.twin
    demo = build_demo_community("Ixelles")
    result = twin.batch_upsert("", demo.entities, twin.resolve_context(BRIGHT_CONTEXT_URL))
    assert not result["errors"]
    cid = next(e["id"] for e in demo.entities if e["type"] == "EnergyCommunity")
    r = client.post(f"/api/network/cards/{cid}/refresh")
    assert r.status_code == 200, r.text
    assert r.json()["members"] == {
        "households": 12,
        "schools": 1,
        "smes": 1,
        "public_buildings": 0,
        "other": 0,
    }
    # the community entity still lists its members in the twin (the card is a view of it)
    assert twin.store.get("", cid)["attrs"]["https://smartdatamodels.org/dataModel.EnergyCommunity/hasMember"]
    eans = [e["accessPointId"]["value"] for e in demo.entities if e["type"] == "Meter"]
    prosumers = [e["id"] for e in demo.entities if e["type"] == "EnergyProsumer"]
    private = [*eans, *prosumers, "Household 1", "Bakery", "hasMember", "annualConsumption"]
    bodies = [
        client.get("/api/network/cards").content,
        client.get(f"/api/network/cards/{cid}").content,
        client.get("/api/network/search", params={"q": "school energy community"}).content,
        client.get("/api/network/search", params={"lat": 50.83, "lon": 4.36, "within_km": 3}).content,
        client.get(f"/api/network/compare/{cid}").content,
        client.get("/api/opendata/catalog.jsonld").content,
        *(
            client.get(f"/api/opendata/{d}.{f}").content
            for d in ("cards", "kpis", "practices")
            for f in ("csv", "parquet", "jsonld")
        ),
    ]
    assert cid.encode() in bodies[1]
    for body in bodies:
        for secret in private:
            assert secret.encode() not in body, secret


def test_tools_run_keeps_nothing(sqlite_client: tuple[TestClient, FastAPI], small_net: DemoNetwork) -> None:
    client, app = sqlite_client
    publish(app, small_net)
    events: list[Any] = []
    app.state.twin.store.listeners.append(events.append)
    before = row_counts(app)
    r = client.post(
        "/api/network/tools/sharing-calculator/run",
        json={
            "member_ids": ["P", "A"],
            "offtake_kwh": [[0, 1.0]],
            "injection_kwh": [[0.5, 0]],
            "method": "pro_rata",
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["shared_kwh"] == pytest.approx(0.5)  # A takes all of P's 0.5 kWh
    assert r.headers["cache-control"] == "no-store"
    r = client.post(
        "/api/network/tools/sharing-calculator/run",
        json={"member_ids": ["P"], "offtake_kwh": [[-1]], "injection_kwh": [[0]]},
    )
    assert r.status_code == 400 and "member 'P'" in r.json()["detail"]
    assert row_counts(app) == before
    assert events == []
    r = client.get("/api/network/tools")
    assert r.status_code == 200
    names = {t["name"]: t for t in r.json()["tools"]}
    assert names["forecast"]["inputSchema"]["properties"]["history_kwh"]["type"] == "array"
    offered = {(t["community"], t["tool"]) for t in r.json()["network"]}
    assert offered == {(c.id, t) for c in small_net.cards for t in c.offered_tools}


def test_manager_hook_can_refuse(tmp_path, small_net: DemoNetwork) -> None:  # type: ignore[no-untyped-def]
    def managers_only(request: Request, action: str, resource: str) -> None:
        if request.headers.get("x-role") != "manager":
            raise Forbidden(f"{action} on {resource} needs the manager role")

    for client, app in make_client(f"sqlite:///{tmp_path / 'n.db'}", authorize=managers_only):
        publish(app, small_net)
        card = small_net.cards[0].to_json()
        r = client.put(f"/api/network/cards/{card['id']}", json=card)
        assert r.status_code == 403 and "manager role" in r.json()["detail"]
        assert client.get("/api/network/questions").status_code == 403
        r = client.put(f"/api/network/cards/{card['id']}", json=card, headers={"x-role": "manager"})
        assert r.status_code == 200
        assert client.get("/api/network/search", params={"q": "solar"}).status_code == 200


def test_errors_are_problem_details(
    sqlite_client: tuple[TestClient, FastAPI], small_net: DemoNetwork
) -> None:
    client, app = sqlite_client
    publish(app, small_net)
    x = small_net.cards[0]
    cases = [
        (client.get("/api/network/search", params={"near": "x"}), 400, "unknown query parameter 'near'"),
        (
            client.get("/api/network/search", params={"schools": "maybe"}),
            400,
            "schools must be true or false",
        ),
        (client.get("/api/network/search", params={"lat": 50.8}), 400, "both lat and lon"),
        (
            client.get("/api/network/search", params={"like": "urn:ngsi-ld:EnergyCommunity:nope"}),
            404,
            "no community card",
        ),
        (client.get("/api/network/search", params={"within_km": 5}), 400, "within_km needs a reference"),
        (client.get("/api/network/cards/urn:ngsi-ld:EnergyCommunity:nope"), 404, "no community card"),
        (client.get("/api/network/practices"), 400, "q (the text to search) is required"),
        (client.get("/api/opendata/members.csv"), 404, "no open dataset"),
        (client.post("/api/network/tools/teleporter/run", json={}), 404, "no tool"),
        (client.post("/api/network/tools/s-bright/run", json={}), 501, "planned"),
        (
            client.put(f"/api/network/cards/{x.id}", json={**x.to_json(), "hasMember": ["a"]}),
            400,
            "field hasMember",
        ),
        (
            client.post(
                "/api/network/questions",
                json={
                    "to": "urn:ngsi-ld:EnergyCommunity:elsewhere",
                    "subject": "s",
                    "text": "t",
                    "reply_to": REPLY,
                },
            ),
            404,
            "not on this node",
        ),
        (
            client.post(
                "/api/network/questions",
                json={
                    "to": x.id,
                    "subject": "s",
                    "text": "t",
                    "reply_to": {"organisation": "REC", "email": "an.de.smet@example.org"},
                },
            ),
            400,
            "looks like a person",
        ),
    ]
    for r, status, message in cases:
        assert r.status_code == status, (r.request.url, r.text)
        body = json.loads(r.content)
        assert body["type"].startswith("https://uri.etsi.org/ngsi-ld/errors/")
        assert message in body["detail"], body["detail"]
