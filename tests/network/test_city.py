"""The city twin's computations (pure) and its API on one node (no community node needed).

The multi-node behaviour (communities registered at a city, partial answers) is in
test_multinode.py; here: which KPIs count, how they add up, the NGSI-LD entities written, the
role option and the errors.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bright.api.app import create_app
from bright.config import Settings
from bright.network.cards import CommunityCard, MemberCounts, Technologies
from bright.network.city import (
    ADDITIVE_INDICATORS,
    CommunityFigures,
    KpiRecord,
    aggregate_figures,
    community_figures,
    kpi_records,
    latest_period,
    role_of,
)
from bright.twin.context import BRIGHT_CONTEXT_URL

LINK = {
    "Link": f'<{BRIGHT_CONTEXT_URL}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
}
OCT = ("2026-10-01T00:00:00+02:00", "2026-11-01T00:00:00+01:00")
SEP = ("2026-09-01T00:00:00+02:00", "2026-10-01T00:00:00+02:00")


def make_card(i: int, **kw: Any) -> CommunityCard:
    values: dict[str, Any] = {
        "id": f"urn:ngsi-ld:EnergyCommunity:k{i}",
        "name": f"Community {i}",
        "lon": 4.35,
        "lat": 50.85,
        "members": MemberCounts(households=10 + i, schools=i % 2),
        "technologies": Technologies(pv_kwp=30.0 + i, storage_kwh=5.0 * i, ev_chargers=i, heat_pumps=0),
        "sharing_method": "pro_rata",
    }
    values.update(kw)
    return CommunityCard(**values)


def kpi(
    cid: str,
    indicator: str,
    value: Any,
    *,
    period: tuple[str, str] = OCT,
    method: str = "pro_rata",
    **extra: Any,
) -> dict[str, Any]:
    e: dict[str, Any] = {
        "id": f"urn:ngsi-ld:KeyPerformanceIndicator:{cid.rsplit(':', 1)[1]}:{indicator}:{method}:{period[0][:10]}",
        "type": "KeyPerformanceIndicator",
        "kpiValue": {"type": "Property", "value": value},
        "calculationPeriod": {"type": "Property", "value": {"from": period[0], "to": period[1]}},
        "calculationFrequency": {"type": "Property", "value": "monthly"},
        "sharingMethod": {"type": "Property", "value": method},
        "indicator": {"type": "Property", "value": indicator},
        "refEnergyCommunity": {"type": "Relationship", "object": cid},
    }
    e.update(extra)
    return e


# --- which KPIs count ---------------------------------------------------------------------------


def test_kpi_records_keep_community_figures_only() -> None:
    cid = "urn:ngsi-ld:EnergyCommunity:k1"
    docs = [
        kpi(cid, "shared_kwh", 120.5),
        kpi(cid, "offtake_kwh", "a lot"),
        kpi(
            cid,
            "injection_kwh",
            10.0,
            refMember={"type": "Relationship", "object": "urn:ngsi-ld:EnergyProsumer:m1"},
        ),
        {**kpi(cid, "co2_avoided_kg", 3.0), "calculationPeriod": {"type": "Property", "value": "2026"}},
        {"id": "urn:ngsi-ld:Building:b1", "type": "Building"},
    ]
    records, skipped = kpi_records(docs)
    assert records == [KpiRecord(cid, "shared_kwh", 120.5, "monthly", OCT[0], OCT[1], "pro_rata", None)]
    reasons = " | ".join(skipped)
    assert "not a finite number" in reasons and "refers to a member" in reasons
    assert "no calculationPeriod" in reasons and "not a KeyPerformanceIndicator" in reasons
    assert latest_period(records, "monthly") == "2026-10-01" and latest_period(records, "yearly") is None


def test_one_sharing_method_per_community() -> None:
    card = make_card(1, sharing_method="max_sharing")
    cid = card.id
    records, _ = kpi_records(
        [
            kpi(cid, "shared_kwh", 100.0, method="maximum"),
            kpi(cid, "offtake_kwh", 400.0, method="maximum"),
            kpi(cid, "shared_kwh", 90.0, method="pro_rata"),  # what-if run: not counted
            kpi(cid, "offtake_kwh", 400.0, method="pro_rata"),
            kpi(cid, "injection_kwh", 300.0, method="pro_rata"),
            kpi(cid, "shared_kwh", 80.0, period=SEP, method="maximum"),
            kpi(
                cid,
                "savings_eur",
                12.0,
                method="maximum",
                pricingMethod={"type": "Property", "value": "fixed"},
            ),
            kpi("urn:ngsi-ld:EnergyCommunity:other", "shared_kwh", 1e6, method="maximum"),
        ]
    )
    f = community_figures(card, records, node="n", frequency="monthly", period="2026-10-01")
    assert f.method == "maximum"  # the card's method (max_sharing is the KPIs' maximum)
    assert dict(f.kpis) == {"shared_kwh": 100.0, "offtake_kwh": 400.0}
    assert f.period == OCT
    # Without a method on the card: the method reporting the most indicators.
    g = community_figures(
        make_card(1, sharing_method=None), records, node="n", frequency="monthly", period="2026-10-01"
    )
    assert g.method == "pro_rata" and g.kpis["shared_kwh"] == 90.0
    # No KPI for the period: figures without KPIs (listed as such, never zero).
    h = community_figures(card, records, node="n", frequency="monthly", period="2026-08-01")
    assert h.kpis == {} and h.period is None


# --- how they add up ----------------------------------------------------------------------------

values = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)
kpi_sets = st.dictionaries(st.sampled_from(sorted(ADDITIVE_INDICATORS)), values)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 3), kpi_sets), min_size=0, max_size=8))
def test_aggregate_is_the_sum_of_the_communities(rows: list[tuple[int, int, dict[str, float]]]) -> None:
    figures = [
        CommunityFigures(make_card(i, members=MemberCounts(households=h, schools=s)), "n", k)
        for i, (h, s, k) in enumerate(rows)
    ]
    totals = aggregate_figures(figures)
    assert totals["communities"] == len(rows)
    assert totals["reporting"] == sum(1 for *_, k in rows if k)
    assert totals["members"]["households"] == sum(h for h, _, _ in rows)
    assert totals["members"]["total"] == sum(h + s for h, s, _ in rows)
    for name in ADDITIVE_INDICATORS:
        have = [k[name] for *_, k in rows if name in k]
        if have:
            assert totals["kpis"][name]["value"] == pytest.approx(math.fsum(have))
            assert totals["kpis"][name]["communities"] == len(have)
        else:
            assert name not in totals["kpis"]
    # Ratios of sums, over the communities with both parts; None when nothing was taken from the grid.
    pairs = [
        (k["shared_kwh"], k["offtake_kwh"]) for *_, k in rows if "shared_kwh" in k and "offtake_kwh" in k
    ]
    if pairs:
        den = math.fsum(d for _, d in pairs)
        got = totals["kpis"]["self_sufficiency"]["value"]
        if den > 0:
            assert got == pytest.approx(math.fsum(n for n, _ in pairs) / den)
        else:
            assert got is None
    flexible = sum(
        1 for f in figures if f.card.technologies.storage_kwh > 0 or f.card.technologies.ev_chargers > 0
    )
    assert totals["flexibility"]["communities_with_flexible_assets"] == flexible


# --- on a node ----------------------------------------------------------------------------------


@pytest.fixture
def city(tmp_path: Any) -> Iterator[TestClient]:
    settings_ = Settings(
        database_url=f"sqlite:///{tmp_path / 'city.db'}",
        auth="open",
        extra={"role": "network", "city_name": "leuven", "city_refresh_s": "3600"},
    )
    app = create_app(settings_)
    with TestClient(app) as client:
        yield client
    app.state.twin.engine.dispose()


def test_a_city_with_its_own_communities(city: TestClient) -> None:
    for i in (1, 2):
        card = make_card(i).model_dump(mode="json", exclude={"id"})
        assert city.put(f"/api/network/cards/urn:ngsi-ld:EnergyCommunity:k{i}", json=card).status_code == 201
    cid = "urn:ngsi-ld:EnergyCommunity:k1"
    batch = [kpi(cid, "shared_kwh", 50.0), kpi(cid, "offtake_kwh", 200.0), kpi(cid, "injection_kwh", 125.0)]
    assert city.post("/ngsi-ld/v1/entityOperations/upsert", json=batch, headers=LINK).status_code in (
        201,
        204,
    )

    r = city.get("/api/network/aggregate")
    assert r.status_code == 200, r.text
    agg = r.json()
    assert agg["id"] == "urn:ngsi-ld:CityTwin:leuven" and agg["nodes"] == [] and agg["partial"] is False
    assert agg["period"] == "2026-10-01"
    assert agg["totals"]["kpis"]["self_sufficiency"]["value"] == pytest.approx(0.25)
    assert agg["totals"]["kpis"]["self_consumption_rate"]["value"] == pytest.approx(0.4)
    assert agg["without_kpis"] == ["urn:ngsi-ld:EnergyCommunity:k2"]
    assert {c["node"] for c in agg["communities"]} == {"local"}
    assert "communities" not in city.get("/api/network/aggregate", params={"breakdown": "false"}).json()

    r = city.post("/api/network/aggregate/refresh")
    assert r.status_code == 200, r.text
    assert "urn:ngsi-ld:CityTwin:leuven" in r.json()["written"]
    ent = city.get("/ngsi-ld/v1/entities/urn:ngsi-ld:CityTwin:leuven", headers=LINK).json()
    assert ent["type"] == "bright:CityTwin"
    assert ent["memberCount"]["value"] == 11 + 1 + 12  # households 11 and 12, one school
    assert ent["sharedEnergy"]["value"] == 50.0 and ent["sharedEnergy"]["unitCode"] == "KWH"
    assert ent["bright:hasCommunity"]["object"] == [
        "urn:ngsi-ld:EnergyCommunity:k1",
        "urn:ngsi-ld:EnergyCommunity:k2",
    ]
    kpis = city.get(
        "/ngsi-ld/v1/entities",
        params={"type": "KeyPerformanceIndicator", "idPattern": "city-leuven"},
        headers=LINK,
    ).json()
    assert {k["indicator"]["value"]: k["kpiValue"]["value"] for k in kpis} == pytest.approx(
        {
            "shared_kwh": 50.0,
            "offtake_kwh": 200.0,
            "injection_kwh": 125.0,
            "self_sufficiency": 0.25,
            "self_consumption_rate": 0.4,
        }
    )


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"frequency": "weekly"}, "frequency"),
        ({"period": "October"}, "period"),
        ({"month": "10"}, "month"),
        ({"breakdown": "maybe"}, "breakdown"),
    ],
)
def test_bad_aggregate_requests_are_named(city: TestClient, params: dict[str, str], named: str) -> None:
    r = city.get("/api/network/aggregate", params=params)
    assert r.status_code == 400 and named in r.json()["detail"]


def test_the_role_of_a_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRIGHT_ROLE", raising=False)
    assert role_of(Settings(database_url="sqlite://")) == "community"
    assert role_of(Settings(database_url="sqlite://", extra={"role": "network"})) == "network"
    monkeypatch.setenv("BRIGHT_ROLE", "Network")
    assert role_of(None) == "network"
    with pytest.raises(ValueError, match="unknown node role 'city'"):
        role_of(Settings(database_url="sqlite://", extra={"role": "city"}))

    from bright.cli import app as cli

    result = CliRunner().invoke(cli, ["serve", "--role", "city"])
    assert result.exit_code != 0 and "unknown role 'city'" in result.output
