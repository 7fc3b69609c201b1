"""Discovery and questions across nodes: a city node asks its community nodes for their cards.

A city node and two community nodes on loopback (uvicorn servers, one SQLite file each): one
node holds the communities around schools, the other the rest of a demo network, each with its
practices. Checked:

- "communities like this school's" asked at the city ranks the cards held by the community
  nodes exactly as one index over all of them would, school communities first, with the node
  that holds each result and an explanation;
- a practice search at the city finds practices held by the nodes;
- a question posted at the city, or at another community's node, reaches the asked
  community's node (through the city) and is stored there, nowhere else;
- a node that does not answer is named, never fatal; ``local=true`` stays on the node.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.network.loopback import Node, connect, wait_for

from bright.network.demo_network import DemoNetwork, demo_network
from bright.network.discovery import DiscoveryIndex, Filters, TfidfEncoder, select_encoder
from bright.network.knowledge import community_texts
from bright.twin.context import BRIGHT_CONTEXT_URL

LINK = {
    "Link": f'<{BRIGHT_CONTEXT_URL}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
}
REPLY = {"organisation": "Zonnewijk Jette", "email": "info@zonnewijk-jette.example"}


@pytest.fixture(scope="module")
def net() -> DemoNetwork:
    return demo_network(14, practices_per_card=2, seed=4)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, net: DemoNetwork) -> Iterator[tuple[Node, Node, Node]]:
    tmp = tmp_path_factory.mktemp("discovery-network")
    city = Node(tmp, "city")
    schools = Node(tmp, "schools-node", parent=city.url)
    others = Node(tmp, "others-node", parent=city.url)
    try:
        for n in (city, schools, others):
            # These tests compare rankings with a TF-IDF index: no optional embedding model.
            n.app.state.discovery.encoder = "tfidf"
        connect(city, schools, others)
        # The city reads the nodes' practices unsigned (as their manager on these open nodes): the
        # policy engine (network/policy.py) classifies practices as community data, which a peer
        # only reads for communities of >= k member entities, and the demo cards have none.
        # The community nodes' requests to the city stay signed (peer).
        city.unsigned()
        school_ids = {c.id for c in net.cards_of("school")}
        for node, keep in (
            (schools, lambda cid: cid in school_ids),
            (others, lambda cid: cid not in school_ids),
        ):
            directory = node.app.state.discovery
            directory.publish_cards([c for c in net.cards if keep(c.id)])
            directory.publish_items([i for i in (*net.practices, *net.initiatives) if keep(i.community)])

        def registered() -> bool:
            # Registered with every type they hold (cards first, then practices and initiatives).
            return all(
                len(city.get("/csourceRegistrations", params={"type": t}, headers=LINK).json()) == 2
                for t in ("EnergyCommunity", "Practice", "Initiative")
            )

        wait_for(registered, "both community nodes registered at the city")
        yield city, schools, others
    finally:
        for n in (others, schools, city):
            n.stop()


def search(base: str, **params: Any) -> httpx.Response:
    return httpx.get(base + "/api/network/search", params=params, timeout=30)


def test_communities_like_a_school_asked_at_the_city(
    nodes: tuple[Node, Node, Node], net: DemoNetwork
) -> None:
    city, _, others = nodes
    school = net.cards_of("school")[0]
    r = search(city.url, like=school.id, limit=8)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["unanswered"] == [] and "NGSILD-Warning" not in r.headers
    results = body["results"]
    # The city holds no card itself: every result comes from a community node, which is named.
    school_ids = {c.id for c in net.cards_of("school")}
    for m in results:
        expected = "schools-node" if m["card"]["id"] in school_ids else "others-node"
        assert m["node"]["node"] == expected
        assert m["explanation"]
    # Same ranking as one index over the whole network (nothing lost or changed on the way).
    whole = DiscoveryIndex(
        list(net.cards), community_texts([*net.practices, *net.initiatives]), encoder=select_encoder("tfidf")
    )
    assert isinstance(whole.encoder, TfidfEncoder)
    reference = whole.search(like=school.id, limit=8)
    assert [m["card"]["id"] for m in results] == [m.card.id for m in reference]
    # Scores travel as JSON with 4 decimals.
    assert [m["score"] for m in results] == pytest.approx([m.score for m in reference], abs=6e-5)
    # The school communities first.
    n_schools = len(school_ids) - 1
    assert {m["card"]["id"] for m in results[:n_schools]} <= school_ids

    # With the filter: only communities that involve schools, all from the schools' node.
    r = search(city.url, like=school.id, schools="true", within_km=50)
    filtered = r.json()["results"]
    assert filtered and all(m["card"]["members"]["schools"] > 0 for m in filtered)
    ref = whole.search(like=school.id, filters=Filters(schools=True, within_km=50), limit=10)
    assert [m["card"]["id"] for m in filtered] == [m.card.id for m in ref]

    # local=true: the city's own cards only (none), and the community node sees only its own.
    assert search(city.url, q="school", local="true").json()["count"] == 0
    r = httpx.get(others.url + "/api/network/cards", timeout=10).json()
    assert all(c["id"] not in school_ids for c in r["cards"])
    r = httpx.get(city.url + "/api/network/cards", params={"limit": 1000}, timeout=10).json()
    assert r["count"] == len(net.cards)


def test_practices_of_the_network_are_searchable_at_the_city(
    nodes: tuple[Node, Node, Node], net: DemoNetwork
) -> None:
    city, _, _ = nodes
    r = httpx.get(
        city.url + "/api/network/practices", params={"q": "school roof solar", "limit": 5}, timeout=30
    )
    assert r.status_code == 200, r.text
    hits = r.json()["results"]
    assert hits, "no practice found across the network"
    held = {i.id: i.community for i in (*net.practices, *net.initiatives)}
    school_ids = {c.id for c in net.cards_of("school")}
    for h in hits:
        community = held[h["id"]]
        assert h["node"]["node"] == ("schools-node" if community in school_ids else "others-node")


def questions_at(node: Node, to: str) -> list[dict[str, Any]]:
    r = httpx.get(node.url + "/api/network/questions", params={"to": to}, timeout=10)
    assert r.status_code == 200, r.text
    return list(r.json()["questions"])


def test_a_question_reaches_the_asked_communitys_node(
    nodes: tuple[Node, Node, Node], net: DemoNetwork
) -> None:
    city, schools, others = nodes
    school_ids = {c.id for c in net.cards_of("school")}
    asked = net.cards_of("school")[1].id
    asker = next(c.id for c in net.cards if c.id not in school_ids)

    # Posted at another community's node: it goes up to the city, then down to the schools' node.
    q = {
        "to": asked,
        "from": asker,
        "subject": "Sharing with the school",
        "text": "How did you split the school's PV production on Wednesday afternoons?",
        "reply_to": REPLY,
    }
    r = httpx.post(others.url + "/api/network/questions", json=q, timeout=30)
    assert r.status_code == 201, r.text
    assert r.headers["BRIGHT-Delivered-To"] == "schools-node"
    qid = r.json()["id"]
    stored = questions_at(schools, asked)
    assert [s["id"] for s in stored] == [qid]
    assert stored[0]["from_community"] == asker and stored[0]["text"] == q["text"]
    assert questions_at(others, asked) == [] and questions_at(city, asked) == []

    # Posted at the city: straight to the schools' node.
    r = httpx.post(city.url + "/api/network/questions", json={**q, "subject": "Second question"}, timeout=30)
    assert r.status_code == 201, r.text
    assert [s["subject"] for s in questions_at(schools, asked)] == [
        "Sharing with the school",
        "Second question",
    ]

    # The same question twice (same id) is refused by the receiving node, named as such.
    again = httpx.post(city.url + "/api/network/questions", json={**q, "id": qid}, timeout=30)
    assert again.status_code == 409 and again.json()["type"].endswith("AlreadyExists")

    # A community nobody holds: 404 naming it.
    r = httpx.post(
        city.url + "/api/network/questions",
        json={**q, "to": "urn:ngsi-ld:EnergyCommunity:nowhere"},
        timeout=30,
    )
    assert r.status_code == 404 and "urn:ngsi-ld:EnergyCommunity:nowhere" in r.json()["detail"]

    # A request that already went through the city is refused there (no loop).
    r = httpx.post(city.url + "/api/network/questions", json=q, headers={"Via": "1.1 others-node, 1.1 city"})
    assert r.status_code == 508


def test_a_node_that_does_not_answer_is_named(nodes: tuple[Node, Node, Node], net: DemoNetwork) -> None:
    city, _, others = nodes
    school = net.cards_of("school")[0]
    with others.frozen():
        # Fetch now (the snapshot of the network is otherwise reused for 30 s).
        city.app.state.discovery.forget_network()
        r = search(city.url, like=school.id, limit=50)
    assert r.status_code == 200
    body = r.json()
    assert [u["node"] for u in body["unanswered"]] == ["others-node"]
    assert others.url in r.headers["NGSILD-Warning"]
    school_ids = {c.id for c in net.cards_of("school")}
    assert {m["card"]["id"] for m in body["results"]} <= school_ids
    city.app.state.discovery.forget_network()
    assert search(city.url, like=school.id).json()["unanswered"] == []
