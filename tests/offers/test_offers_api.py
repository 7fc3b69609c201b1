"""Offers API on both backends: publish, evaluate, subscribe, and the grants enforced on providers."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from tests.offers.home import small_home

from bright.api import offers as offers_api
from bright.api.app import create_app
from bright.config import Settings
from bright.services.demo import DemoCommunity, build_demo_community, meter_series
from bright.services.offers import OfferService, demo_offers, seed_demo_offers
from bright.twin.series import SeriesStore
from bright.twin.vocabulary import bright_context
from bright.web.users import User, create_token

OFFER = "urn:ngsi-ld:ServiceOffer:"


@functools.lru_cache(maxsize=1)
def _demo() -> tuple[DemoCommunity, dict[str, pd.DataFrame]]:
    community = build_demo_community()
    frames = meter_series(community)
    return community, {k: frames[k].loc["2016-03-01":"2016-03-03"] for k in ("offtake", "injection")}


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=db_url, auth="required"))
    twin = app.state.twin
    community, frames = _demo()
    res = twin.batch_upsert("", community.entities, twin.resolve_context(community.entities[0]["@context"]))
    assert not res["errors"]
    series = SeriesStore(twin.engine)
    for name, frame in frames.items():
        series.write(frame, attribute=bright_context().expand(name), unit_code="KWH")
    svc = OfferService(twin, home_of=lambda c, m, t: small_home(2))
    offers_api.install(app, service=svc)
    with TestClient(app) as c:
        yield c
    twin.engine.dispose()


_TOKENS: dict[tuple[str, str, str], str] = {}


def _as(client: TestClient, role: str, name: str = "", member: str = "") -> dict[str, str]:
    """Credentials of ``role``: a provider has a dashboard session whose user name is the provider id
    (its principal's subject is the provider id); the others an API token created once per database."""
    if role in ("energy_company", "technology_provider"):
        cookie = client.app.state.web_signer.dumps(User(name, role))  # type: ignore[attr-defined]
        return {"Cookie": f"bright_session={cookie}"}
    engine = client.app.state.twin.engine  # type: ignore[attr-defined]
    key = (str(engine.url), role, name + member)
    if key not in _TOKENS:
        _, secret = create_token(engine, name or role, role, member_id=member or None)
        _TOKENS[key] = secret
    return {"Authorization": f"Bearer {_TOKENS[key]}"}


def _ids() -> tuple[str, list[str]]:
    community, _ = _demo()
    return (
        f"urn:ngsi-ld:EnergyCommunity:{community.key}",
        [f"urn:ngsi-ld:EnergyProsumer:{community.key}:{m.key}" for m in community.members],
    )


def test_offers_subscribe_and_grants_enforced(client: TestClient) -> None:
    cid, members = _ids()
    svc: OfferService = client.app.state.offers  # type: ignore[attr-defined]
    assert len(seed_demo_offers(svc, cid)) == 6
    listed = client.get("/api/offers").json()
    assert len(listed) == 6 and all(o["odrl"]["@type"] == "Offer" for o in listed)
    ev_offer = next(o for o in listed if o["id"].endswith("ev-smart-charging"))
    ev_provider = ev_offer["providerId"]
    aal = next(o for o in listed if o["id"].endswith("aal-activity"))
    sec = next(o for o in listed if o["id"].endswith("home-security"))
    member = members[3]  # a household with an EV charger and a meter
    me = _as(client, "member", "m3", member)
    manager = _as(client, "manager", "boss")

    # a provider publishes only its own offers
    body = {**ev_offer, "name": "EV smart charging v2"}
    denied = client.post("/api/offers", json=body, headers=_as(client, "energy_company", aal["providerId"]))
    assert denied.status_code == 403
    ok = client.post("/api/offers", json=body, headers=_as(client, "technology_provider", ev_provider))
    assert ok.status_code == 201 and ok.json()["name"] == "EV smart charging v2"
    bad = client.post(
        "/api/offers",
        json={**body, "feeEurPerMonth": -1},
        headers=_as(client, "technology_provider", ev_provider),
    )
    assert bad.status_code == 400 and "fee_eur_per_month" in bad.json()["detail"]

    for o in (ev_offer, aal, sec):
        r = client.post(f"/api/communities/{cid}/members/{member}/offers/{o['id']}/subscription", headers=me)
        assert r.status_code == 201, r.text
    sub = r.json()
    assert sub["consent"].startswith("urn:ngsi-ld:Consent:") and sub["active"]
    consent = client.get(
        f"/ngsi-ld/v1/entities/{sub['consent']}", params={"options": "keyValues"}, headers=manager
    ).json()
    assert consent["purpose"] == f"offer:{sec['id']}" and consent["member"] == member
    policy = client.get(
        f"/ngsi-ld/v1/entities/{sub['agreement']}", params={"options": "keyValues"}, headers=manager
    ).json()
    odrl = policy["odrl"]["json"]  # a JsonProperty in keyValues
    assert odrl["@type"] == "Agreement" and policy["community"] == cid
    assert {p["assignee"] for p in odrl["permission"]} == {sec["providerId"]}
    try:  # the node's general policy engine accepts the agreement as written
        from bright.network.policy import parse_policy

        assert parse_policy(odrl, community=cid).type == "Agreement"
    except ImportError:  # pragma: no cover - the engine is optional here
        pass

    # the AAL operator reads the smart-meter offtake it was granted ...
    ev_sub = client.get(f"/api/communities/{cid}/members/{member}/offers", headers=me).json()
    aal_grant = next(g for s in ev_sub["subscriptions"] if s["offer"] == aal["id"] for g in s["grants"])
    target = aal_grant["target"]
    assert target.endswith("#offtake")
    read = client.get(
        f"/api/providers/{aal['providerId']}/data",
        params={"target": target},
        headers=_as(client, "energy_company", aal["providerId"]),
    )
    assert read.status_code == 200 and len(read.json()["values"]) > 0
    # ... the security operator was never granted it
    no = client.get(
        f"/api/providers/{sec['providerId']}/data",
        params={"target": target},
        headers=_as(client, "energy_company", sec["providerId"]),
    )
    assert no.status_code == 403 and "no agreement grants" in no.json()["detail"]
    # another member's meter is not granted either
    other = target.replace(member.rsplit(":", 1)[-1], members[4].rsplit(":", 1)[-1])
    no2 = client.get(
        f"/api/providers/{aal['providerId']}/data",
        params={"target": other},
        headers=_as(client, "energy_company", aal["providerId"]),
    )
    assert no2.status_code == 403
    # a provider cannot act as another one
    imp = client.get(
        f"/api/providers/{aal['providerId']}/data",
        params={"target": target},
        headers=_as(client, "energy_company", sec["providerId"]),
    )
    assert imp.status_code == 403

    # the EV manager controls the charger in its window (18-08 local) only
    ev_grant = next(
        g
        for s in ev_sub["subscriptions"]
        if s["offer"] == ev_offer["id"]
        for g in s["grants"]
        if g["action"].endswith("control")
    )
    charger = ev_grant["target"]
    day = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    assert charger.startswith("urn:ngsi-ld:EVChargingStation:") and ev_grant["hours"] == "18-08h"
    night = {
        "device": charger,
        "start": f"{day}T20:00:00Z",
        "end": f"{day}T23:00:00Z",
        "powerKw": 7.4,
    }
    evening = client.post(
        f"/api/providers/{ev_provider}/control",
        json=night,
        headers=_as(client, "technology_provider", ev_provider),
    )
    assert evening.status_code == 201, evening.text
    assert evening.json()["agreement"] == sub["agreement"].replace("home-security", "ev-smart-charging")
    noon = {**night, "start": f"{day}T11:00:00Z", "end": f"{day}T13:00:00Z"}
    refused = client.post(
        f"/api/providers/{ev_provider}/control",
        json=noon,
        headers=_as(client, "technology_provider", ev_provider),
    )
    assert refused.status_code == 403
    problem = refused.json()
    assert (
        problem["agreement"]
        and problem["agreement"] in problem["detail"]
        and "only 18-08h" in problem["detail"]
    )

    # the provider sees its subscribers and what it may use
    view = client.get(
        f"/api/providers/{ev_provider}/subscribers", headers=_as(client, "technology_provider", ev_provider)
    ).json()
    assert [s["member"] for s in view["subscriptions"]] == [member]
    assert {g["stream"] for g in view["subscriptions"][0]["grants"]} == {"ev", "offtake", "subscriber"}
    assert client.get(f"/api/providers/{ev_provider}/subscribers").status_code == 403

    # the manager settles a month of the EV offer's revenue: statement lines and ledger records
    settled = client.post(
        f"/api/offers/{ev_offer['id']}/revenue",
        json={"month": "2024-01", "revenueEur": {member: 12.5}, "method": "pro_rata", "communityShare": 0.1},
        headers=manager,
    )
    assert settled.status_code == 201, settled.text
    out = settled.json()
    assert out["split"]["members"][member] == pytest.approx(12.5 * 0.9, abs=0.01)
    assert out["statements"][0]["service_revenue_eur"] == pytest.approx(11.25, abs=0.01)
    assert len(out["ledgerRecords"]) == 1
    again = client.post(
        f"/api/offers/{ev_offer['id']}/revenue",
        json={"month": "2024-01", "revenueEur": {member: 12.5}},
        headers=manager,
    )
    assert again.status_code == 400 and "already recorded" in again.json()["detail"]
    stranger = client.post(
        f"/api/offers/{ev_offer['id']}/revenue",
        json={"month": "2024-02", "revenueEur": {members[5]: 3.0}},
        headers=manager,
    )
    assert stranger.status_code == 400 and "no active subscription" in stranger.json()["detail"]
    not_manager = client.post(
        f"/api/offers/{ev_offer['id']}/revenue",
        json={"month": "2024-02", "revenueEur": {member: 1.0}},
        headers=me,
    )
    assert not_manager.status_code == 403

    # unsubscribing revokes the consent: the grants end
    gone = client.delete(
        f"/api/communities/{cid}/members/{member}/offers/{aal['id']}/subscription", headers=me
    )
    assert gone.status_code == 200 and gone.json()["revokedAt"]
    after = client.get(
        f"/api/providers/{aal['providerId']}/data",
        params={"target": target},
        headers=_as(client, "energy_company", aal["providerId"]),
    )
    assert after.status_code == 403 and aal_grant["target"] not in ("",)
    # a member cannot subscribe another member
    cross = client.post(
        f"/api/communities/{cid}/members/{member}/offers/{aal['id']}/subscription",
        headers=_as(client, "member", "m4", members[4]),
    )
    assert cross.status_code == 403


def test_evaluate_bundles_endpoint(client: TestClient) -> None:
    cid, members = _ids()
    svc: OfferService = client.app.state.offers  # type: ignore[attr-defined]
    for o in demo_offers():
        svc.publish(o)
    bundles = {
        "battery": [OFFER + "fcr-aggregator", OFFER + "community-battery"],
        "ev+care": [OFFER + "ev-smart-charging", OFFER + "aal-activity"],
    }
    me = _as(client, "member", "m3", members[3])
    r = client.post(
        f"/api/communities/{cid}/members/{members[3]}/bundles/evaluate",
        json={"bundles": bundles, "days": 1},
        headers=me,
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert [b["name"] for b in out["bundles"]] == ["battery", "ev+care"]
    for b in out["bundles"]:
        assert b["valueEur"] >= b["bestSingle"]["valueEur"] - 0.01
        assert abs(sum(o["valueEur"] for o in b["chosen"]["perOffer"]) - b["valueEur"]) < 0.05
    assert out["plansSolved"] == 1 + 4 + 2
    unknown = client.post(
        f"/api/communities/{cid}/members/{members[3]}/bundles/evaluate",
        json={"bundles": {"x": [OFFER + "nope"]}},
        headers=me,
    )
    assert unknown.status_code == 404
    bad = client.post(
        f"/api/communities/{cid}/members/{members[3]}/bundles/evaluate",
        json={"bundles": {"x": []}, "days": 1},
        headers=me,
    )
    assert bad.status_code == 400 and "empty" in bad.json()["detail"]
    bad_days = client.post(
        f"/api/communities/{cid}/members/{members[3]}/bundles/evaluate",
        json={"bundles": bundles, "days": 0},
        headers=me,
    )
    assert bad_days.status_code == 400 and "days" in bad_days.json()["detail"]
    recs = client.get(
        f"/api/communities/{cid}/members/{members[3]}/offers", params={"category": "cost_focused"}, headers=me
    ).json()
    assert recs["category"] == "cost_focused" and recs["offers"][0]["offer"].endswith("esco-renovation")
    assert recs["offers"][0]["reason"]
