"""Communities like mine: ranking, filters, explanations, benchmarking, encoder selection."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.network.cards import CardError, CommunityCard, haversine_km, parse_card
from bright.network.demo_network import DemoNetwork, demo_network
from bright.network.discovery import (
    EMBEDDING_PACKAGE,
    DiscoveryIndex,
    Filters,
    haversine_km_many,
    select_encoder,
)


@pytest.fixture(scope="module")
def net() -> DemoNetwork:
    return demo_network(80, seed=11)


@pytest.fixture(scope="module")
def index(net: DemoNetwork) -> DiscoveryIndex:
    return DiscoveryIndex(net.cards, net.texts(), encoder="tfidf")


def test_communities_like_x_that_involve_schools(net: DemoNetwork, index: DiscoveryIndex) -> None:
    """The acceptance test: "communities like X that involve schools" gives school communities first."""
    x = net.cards_of("school")[0]
    assert x.members.schools >= 1
    results = index.search(like=x.id, filters=Filters(schools=True), limit=10)
    assert len(results) == 10
    assert all(net.kinds[m.card.id] == "school" and m.card.members.schools > 0 for m in results)
    assert x.id not in {m.card.id for m in results}
    for m in results:
        assert m.reasons, m.card.id
        n = m.card.members.schools
        assert m.reasons[0] == f"also involves {n} school{'s' if n > 1 else ''}"
        assert any(r.endswith("km away") or r.endswith(" m away") for r in m.reasons)
    scores = [m.score for m in results]
    assert scores == sorted(scores, reverse=True)
    # without the filter, the structure alone already puts school communities first
    unfiltered = index.search(like=x.id, limit=5)
    assert [net.kinds[m.card.id] for m in unfiltered] == ["school"] * 5


def test_explanations_name_the_similar_features(net: DemoNetwork, index: DiscoveryIndex) -> None:
    x = net.cards_of("houses")[0]
    (best,) = index.search(like=x.id, limit=1)
    text = best.explanation
    assert "; " in text
    assert any(r.startswith("similar ") and " vs " in r for r in best.reasons), best.reasons
    assert set(best.components) == {"structure", "categories", "place", "text"}
    assert all(0 <= v <= 1 for v in best.components.values())


def test_within_km_is_exact(net: DemoNetwork, index: DiscoveryIndex) -> None:
    x = net.cards_of("school")[3]
    results = index.search(like=x.id, filters=Filters(within_km=5), limit=100)
    expected = {c.id for c in net.cards if c.id != x.id and haversine_km(x.lat, x.lon, c.lat, c.lon) <= 5}
    assert {m.card.id for m in results} == expected
    for m in results:
        assert m.distance_km == pytest.approx(haversine_km(x.lat, x.lon, m.card.lat, m.card.lon), rel=1e-9)


def test_filters_match_brute_force(net: DemoNetwork, index: DiscoveryIndex) -> None:
    x = net.cards_of("sme")[0]
    cases: list[tuple[Filters, object]] = [
        (Filters(has_storage=True), lambda c: c.technologies.storage_kwh > 0),
        (Filters(has_storage=False), lambda c: c.technologies.storage_kwh == 0),
        (Filters(legal_form="CEC"), lambda c: c.legal_form == "CEC"),
        (Filters(municipality="anderlecht"), lambda c: (c.municipality or "").lower() == "anderlecht"),
        (Filters(sharing_method="fixed"), lambda c: c.sharing_method == "fixed"),
        (Filters(min_members=50, max_members=100), lambda c: 50 <= c.members.total <= 100),
        (Filters(scope="/housing"), lambda c: any(s.startswith("/housing/") for s in c.scope)),
        (
            Filters(has_ev=True, has_heat_pumps=True),
            lambda c: c.technologies.ev_chargers > 0 and c.technologies.heat_pumps > 0,
        ),
        (Filters(schools=True, within_km=5, has_storage=True), None),
    ]
    for f, predicate in cases:
        got = {m.card.id for m in index.search(like=x.id, filters=f, limit=100)}
        if predicate is None:
            expected = {
                c.id
                for c in net.cards
                if c.id != x.id
                and c.members.schools > 0
                and c.technologies.storage_kwh > 0
                and haversine_km(x.lat, x.lon, c.lat, c.lon) <= 5
            }
        else:
            expected = {c.id for c in net.cards if c.id != x.id and predicate(c)}  # type: ignore[operator]
        assert got == expected, f


def test_place_and_text_without_a_reference_card(net: DemoNetwork, index: DiscoveryIndex) -> None:
    grand_place = (50.8467, 4.3525)
    near = index.search(filters=Filters(near=grand_place, within_km=2), limit=100)
    assert near and all(m.distance_km is not None and m.distance_km <= 2 for m in near)
    assert [m.distance_km for m in near] == sorted(m.distance_km for m in near)  # type: ignore[type-var]
    with pytest.raises(CardError, match="within_km needs a reference"):
        index.search(filters=Filters(within_km=2))
    hits = index.search(q="batterie sociale huurders", limit=5)
    assert hits[0].components == {"text": pytest.approx(hits[0].score)}
    assert any(r.startswith("mentions ") for r in hits[0].reasons)
    plain = index.search(filters=Filters(legal_form="other"), limit=100)
    assert [m.card.name for m in plain] == sorted(m.card.name for m in plain)


def test_identical_cards_score_one() -> None:
    base = {
        "lon": 4.35,
        "lat": 50.85,
        "municipality": "Ixelles",
        "members": {"households": 10, "schools": 1},
        "technologies": {"pv_kwp": 50, "storage_kwh": 20},
        "sharing_method": "pro_rata",
        "kpis": {"self_sufficiency": 0.3, "self_consumption": 0.8, "shared_kwh": 5000},
        "description": {"en": "solar school"},
    }
    a = parse_card({"id": "urn:ngsi-ld:EnergyCommunity:a", "name": "A", **base})
    b = parse_card({"id": "urn:ngsi-ld:EnergyCommunity:b", "name": "B", **base})
    c = parse_card(
        {**a.to_json(), "id": "urn:ngsi-ld:EnergyCommunity:c", "lon": 4.40, "members": {"households": 80}}
    )
    idx = DiscoveryIndex([a, b, c], encoder="tfidf")
    first, second = idx.search(like="urn:ngsi-ld:EnergyCommunity:a", limit=2)
    assert first.card.id == "urn:ngsi-ld:EnergyCommunity:b"
    assert first.score == pytest.approx(1.0)
    assert first.components == {k: pytest.approx(1.0) for k in ("structure", "categories", "place", "text")}
    assert first.distance_km == 0
    assert second.score < 1


def _card(i: int, ss: float, members: int = 10) -> CommunityCard:
    return parse_card(
        {
            "id": f"urn:ngsi-ld:EnergyCommunity:k{i}",
            "name": f"K{i}",
            "lon": 4.35 + 0.01 * i,
            "lat": 50.85,
            "members": {"households": members},
            "technologies": {"pv_kwp": 40.0},
            "kpis": {"self_sufficiency": ss, "shared_kwh": 1000.0 * (i + 1)},
        }
    )


def test_benchmark_against_peers() -> None:
    # A has 30 % self-sufficiency; its four peers 10, 20, 30, 50 %.
    cards = [_card(0, 0.3), _card(1, 0.1), _card(2, 0.2), _card(3, 0.3), _card(4, 0.5)]
    idx = DiscoveryIndex(cards, encoder="tfidf")
    bench = idx.compare("urn:ngsi-ld:EnergyCommunity:k0", k=4)
    row = bench.table.loc["self_sufficiency"]
    assert row["value"] == 0.3
    assert row["peers"] == 4
    assert row["peer_median"] == pytest.approx(0.25)  # median of 0.1, 0.2, 0.3, 0.5
    assert row["peer_min"] == 0.1 and row["peer_max"] == 0.5
    # two peers below, one tie counted half: (2 + 0.5) / 4 = 62.5 %
    assert row["percentile"] == pytest.approx(62.5)
    # shared kWh per member: A 1000 / 10 = 100; peers 200, 300, 400, 500 -> 0th percentile
    assert bench.table.loc["shared_kwh_per_member", "percentile"] == 0.0
    assert math.isnan(bench.table.loc["self_consumption", "percentile"])  # nobody has it
    body = bench.to_json()
    assert body["kpis"][1]["percentile"] is None
    assert len(body["peers"]) == 4
    with pytest.raises(CardError, match="no card"):
        idx.compare("urn:ngsi-ld:EnergyCommunity:nope")


def test_arguments_are_checked(index: DiscoveryIndex) -> None:
    with pytest.raises(CardError, match="limit"):
        index.search(q="solar", limit=0)
    with pytest.raises(CardError, match="no card"):
        index.search(like="urn:ngsi-ld:EnergyCommunity:nope")
    with pytest.raises(CardError, match="legal_form"):
        Filters(legal_form="SA")
    with pytest.raises(CardError, match="near"):
        Filters(near=(120.0, 4.0))
    with pytest.raises(CardError, match="twice"):
        DiscoveryIndex([_card(1, 0.1), _card(1, 0.2)], encoder="tfidf")


def test_tfidf_when_the_embedding_package_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, EMBEDDING_PACKAGE, None)  # import fails
    choice = select_encoder("auto")
    assert choice.encoder.name == "tfidf"
    assert EMBEDDING_PACKAGE in choice.reason
    with pytest.raises(CardError, match="not available"):
        select_encoder("embeddings")
    assert select_encoder("tfidf").encoder.name == "tfidf"
    with pytest.raises(CardError, match="encoder"):
        select_encoder("bert")


class _LetterModel:
    """A stand-in sentence model: counts of letters (deterministic, offline)."""

    def encode(self, texts: list[str], show_progress_bar: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), 26))
        for i, t in enumerate(texts):
            for ch in t.lower():
                if "a" <= ch <= "z":
                    out[i, ord(ch) - 97] += 1
        return out


def test_embeddings_are_used_when_the_package_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType(EMBEDDING_PACKAGE)
    fake.load_model = _LetterModel  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, EMBEDDING_PACKAGE, fake)
    choice = select_encoder("auto")
    assert choice.encoder.name == "embeddings"
    cards = [_card(i, 0.1 * i) for i in range(4)]
    idx = DiscoveryIndex(
        cards, {cards[1].id: "solar school roof", cards[2].id: "solar school"}, encoder=choice
    )
    assert idx.encoder_name == "embeddings"
    hits = idx.search(q="solar school", limit=2)
    assert hits[0].card.id == cards[2].id  # identical letters: cosine 1
    assert hits[0].components["text"] == pytest.approx(1.0)


def test_a_broken_embedding_package_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType(EMBEDDING_PACKAGE)  # no loader, no model files

    monkeypatch.setitem(sys.modules, EMBEDDING_PACKAGE, fake)
    choice = select_encoder("auto")
    assert choice.encoder.name == "tfidf"
    assert "not usable" in choice.reason


@settings(max_examples=30, deadline=None)
@given(
    lat=st.floats(-89, 89),
    lon=st.floats(-179, 179),
    lats=st.lists(st.floats(-89, 89), min_size=1, max_size=8),
    dlon=st.floats(-30, 30),
)
def test_vectorised_haversine_matches_the_scalar_one(
    lat: float, lon: float, lats: list[float], dlon: float
) -> None:
    lons = np.array([lon + dlon * (k + 1) / len(lats) for k in range(len(lats))])
    got = haversine_km_many(lat, lon, np.array(lats), lons)
    want = [haversine_km(lat, lon, a, b) for a, b in zip(lats, lons, strict=True)]
    assert np.allclose(got, want, rtol=1e-9, atol=1e-6)
    assert np.all(got >= 0) and np.all(got <= math.pi * 6371.0088 + 1e-6)


@settings(max_examples=25, deadline=None)
@given(
    which=st.integers(0, 79),
    schools=st.none() | st.booleans(),
    storage=st.none() | st.booleans(),
    within=st.none() | st.floats(0.5, 15),
    limit=st.integers(1, 30),
)
def test_any_query_respects_its_filters_and_order(
    net: DemoNetwork,
    index: DiscoveryIndex,
    which: int,
    schools: bool | None,
    storage: bool | None,
    within: float | None,
    limit: int,
) -> None:
    x = net.cards[which]
    f = Filters(schools=schools, has_storage=storage, within_km=within)
    results = index.search(like=x.id, filters=f, limit=limit)
    assert len(results) <= limit
    assert [m.score for m in results] == sorted((m.score for m in results), reverse=True)
    for m in results:
        assert 0 <= m.score <= 1
        assert m.card.id != x.id
        if schools is not None:
            assert (m.card.members.schools > 0) == schools
        if storage is not None:
            assert (m.card.technologies.storage_kwh > 0) == storage
        if within is not None:
            assert m.distance_km is not None and m.distance_km <= within
