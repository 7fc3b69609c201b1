"""Community cards: built from a twin, validated, public by construction."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.network.cards import (
    PUBLIC_ATTRIBUTES,
    PUBLIC_FIELDS,
    CardError,
    CommunityCard,
    Contact,
    card_from_entity,
    card_from_twin,
    entity_view,
    haversine_km,
    member_type,
    parse_card,
)
from bright.services.demo import build_demo_community, default_members
from bright.twin.vocabulary import bright_context

CID = "urn:ngsi-ld:EnergyCommunity:test-1"


def minimal_card(**extra: object) -> CommunityCard:
    return parse_card({"id": CID, "name": "Test", "lon": 4.35, "lat": 50.85, **extra})


@pytest.fixture(scope="module")
def demo():  # type: ignore[no-untyped-def]
    return build_demo_community("Ixelles")


def test_card_from_twin_counts_members_by_building_and_sums_devices(demo) -> None:  # type: ignore[no-untyped-def]
    card = card_from_twin(demo.entities)
    members = default_members()
    # the school (category school), the bakery (commercial -> SME), 12 homes (house / apartments)
    assert card.members.model_dump() == {
        "households": 12,
        "schools": 1,
        "smes": 1,
        "public_buildings": 0,
        "other": 0,
    }
    assert card.members.total == 14
    # PV: the school's 80 kWp plus the homes' roofs; storage 60 (school) + 2 x 10 (homes 3 and 8)
    assert card.technologies.pv_kwp == pytest.approx(sum(m.pv_kwp for m in members))
    assert card.technologies.pv_kwp >= 80
    assert card.technologies.storage_kwh == pytest.approx(80.0)
    # chargers: the school's has 2 sockets, three homes have one each; heat pumps in homes 4 and 9
    assert card.technologies.ev_chargers == 5
    assert card.technologies.heat_pumps == 2
    assert card.sharing_method == "pro_rata"
    assert card.legal_form == "REC"
    assert card.municipality == "Ixelles"
    # homes are within +-0.004 deg lon (~0.28 km) and +-0.003 deg lat (~0.33 km) of the school
    assert 0 < card.radius_km <= math.hypot(0.29, 0.34)
    assert "/education/school" in card.scope and "/technology/storage" in card.scope


def test_private_fields_never_reach_the_card(demo) -> None:  # type: ignore[no-untyped-def]
    card = card_from_twin(demo.entities)
    text = json.dumps(card.to_json()) + json.dumps(card.to_entity())
    eans = [e["accessPointId"]["value"] for e in demo.entities if e["type"] == "Meter"]
    assert len(eans) == 14
    for private in [*eans, "Household 1", "hasMember", "EnergyProsumer", "annualConsumption", "Bakery"]:
        assert private not in text, private
    # the entity carries only whitelisted attributes
    ctx = bright_context()
    names = {ctx.expand(k) for k in card.to_entity() if k not in ("id", "type", "@context", "scope")}
    assert names <= PUBLIC_ATTRIBUTES
    # and reading the community entity (which lists its members) keeps none of them
    community = next(e for e in demo.entities if e["type"] == "EnergyCommunity")
    assert "hasMember" in community
    assert set(card_from_entity(community).to_json()) == set(PUBLIC_FIELDS)


def test_unknown_or_personal_fields_are_refused() -> None:
    with pytest.raises(CardError, match="field hasMember"):
        minimal_card(hasMember=["urn:ngsi-ld:EnergyProsumer:x"])
    with pytest.raises(CardError, match="contactPerson"):
        minimal_card(contactPerson={"name": "Jan Peeters"})
    with pytest.raises(CardError, match="looks like a person"):
        minimal_card(contact={"organisation": "REC Ixelles", "email": "jan.peeters@example.org"})
    with pytest.raises(CardError, match="e-mail address or a URL"):
        minimal_card(contact={"organisation": "REC Ixelles"})
    ok = minimal_card(contact={"organisation": "REC Ixelles", "email": "info@rec-ixelles.example"})
    assert ok.contact == Contact(organisation="REC Ixelles", email="info@rec-ixelles.example")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("id", "urn:ngsi-ld:Building:b1", "not an EnergyCommunity id"),
        ("goals", ["world_peace"], "unknown goal 'world_peace'"),
        ("legal_form", "SA", "legal_form"),
        ("founding_year", 2999, "founding_year"),
        ("scope", ["education/school"], "not a path"),
        ("languages", ["french"], "ISO 639-1"),
        ("lat", 95.0, "lat"),
        ("members", {"households": -1}, "members.households"),
        ("offered_tools", ["Sharing Calculator"], "tool name"),
    ],
)
def test_invalid_fields_are_named(field: str, value: object, message: str) -> None:
    with pytest.raises(CardError, match=message):
        minimal_card(**{field: value})


def test_card_id_must_match_the_url() -> None:
    with pytest.raises(CardError, match="differs from the URL"):
        parse_card({"id": CID, "name": "x", "lon": 4, "lat": 50}, card_id="urn:ngsi-ld:EnergyCommunity:other")
    assert parse_card({"name": "x", "lon": 4, "lat": 50}, card_id=CID).id == CID


def test_entity_round_trip_in_stored_and_normalized_forms() -> None:
    from bright.twin.entities import parse_entity

    card = minimal_card(
        description={"fr": "Une communauté", "nl": "Een gemeenschap"},
        municipality="Forest",
        postcode="1190",
        members={"households": 20, "schools": 2},
        technologies={"pv_kwp": 120.5, "storage_kwh": 40, "ev_chargers": 3},
        sharing_method="hybrid",
        goals=["education", "lower_bills"],
        kpis={"period": "2025", "self_sufficiency": 0.31, "shared_kwh": 12000},
        initiatives=["Solar roof"],
        languages=["fr", "nl"],
        contact={"organisation": "REC Forest", "url": "https://rec-forest.example"},
        scope=["/education/school"],
        offered_tools=["sharing-calculator"],
    )
    entity = card.to_entity()
    assert card_from_entity(entity) == card
    stored = parse_entity(
        {k: v for k, v in entity.items() if k != "@context"}, bright_context(), "2026-01-01T00:00:00Z"
    )
    assert card_from_entity(stored) == card


def test_kpis_come_from_the_latest_period() -> None:
    d = build_demo_community("Forest")
    cid = next(e["id"] for e in d.entities if e["type"] == "EnergyCommunity")

    def kpi(n: int, indicator: str, value: float, year: int) -> dict[str, object]:
        return {
            "id": f"urn:ngsi-ld:KeyPerformanceIndicator:k{n}",
            "type": "KeyPerformanceIndicator",
            "https://w3id.org/bright/ns#indicator": {"type": "Property", "value": indicator},
            "kpiValue": {"type": "Property", "value": value},
            "calculationPeriod": {
                "type": "Property",
                "value": {"from": f"{year}-01-01", "to": f"{year}-12-31"},
            },
            "https://w3id.org/bright/ns#refEnergyCommunity": {"type": "Relationship", "object": cid},
        }

    kpis = [
        kpi(1, "self_sufficiency", 0.2, 2024),
        kpi(2, "self_sufficiency", 0.3, 2025),
        kpi(3, "shared_kwh", 900, 2025),
    ]
    card = card_from_twin([*d.entities, *kpis])
    assert card.kpis.self_sufficiency == 0.3
    assert card.kpis.shared_kwh == 900
    assert card.kpis.period == "2025-01-01/2025-12-31"


def test_several_communities_need_an_id() -> None:
    a = build_demo_community("Ixelles").entities
    b = build_demo_community("Forest").entities
    with pytest.raises(CardError, match="say which one"):
        card_from_twin([*a, *b])
    assert card_from_twin([*a, *b], b[0]["id"]).municipality == "Forest"
    with pytest.raises(CardError, match="no EnergyCommunity"):
        card_from_twin([e for e in a if e["type"] != "EnergyCommunity"])


def test_member_type_priority_and_distance() -> None:
    assert member_type(["office", "school"]) == "schools"
    assert member_type(["apartments"]) == "households"
    assert member_type(["social_housing"]) == "households"
    assert member_type(["sports"]) == "public_buildings"
    assert member_type([]) == "other"
    # Brussels Grand-Place to Antwerp Groenplaats: 41.5 km (great circle)
    assert haversine_km(50.8467, 4.3525, 51.2194, 4.4009) == pytest.approx(41.5, abs=0.2)
    # one degree of latitude = 111.19 km on the 6371.0088 km sphere
    assert haversine_km(50.0, 4.0, 51.0, 4.0) == pytest.approx(6371.0088 * math.pi / 180, rel=1e-9)


def test_entity_view_reads_key_values() -> None:
    v = entity_view(
        {
            "id": CID,
            "type": "EnergyCommunity",
            "name": "X",
            "location": {"type": "Point", "coordinates": [4, 50]},
        }
    )
    assert v.get("name") == "X"
    assert v.get("location") == {"type": "Point", "coordinates": [4, 50]}
    assert v.has_type("EnergyCommunity")


counts = st.integers(min_value=0, max_value=500)


@settings(max_examples=40, deadline=None)
@given(
    hh=counts,
    schools=st.integers(0, 5),
    smes=counts,
    pv=st.floats(0, 5000, allow_nan=False),
    storage=st.floats(0, 5000, allow_nan=False),
    ss=st.none() | st.floats(0, 1),
    lon=st.floats(-180, 180),
    lat=st.floats(-90, 90),
)
def test_any_valid_card_survives_the_entity_round_trip(
    hh: int, schools: int, smes: int, pv: float, storage: float, ss: float | None, lon: float, lat: float
) -> None:
    card = minimal_card(
        members={"households": hh, "schools": schools, "smes": smes},
        technologies={"pv_kwp": pv, "storage_kwh": storage},
        kpis={"self_sufficiency": ss},
        lon=lon,
        lat=lat,
    )
    back = card_from_entity(card.to_entity())
    assert back == card
    assert back.members.total == hh + schools + smes
