"""ODRL policies: validation, the 403 that names the policy, k, consents, filtering, the audit log."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bright.cli import app as cli
from bright.network.access import Principal
from bright.network.policy import (
    MEMBER_DATA,
    MIN_MEMBERS,
    ODRL_CONTEXT,
    PolicyError,
    Resource,
    default_policies,
    parse_policy,
)

from .conftest import NGSI, AccessNode

BIG, SMALL = "urn:ngsi-ld:EnergyCommunity:big", "urn:ngsi-ld:EnergyCommunity:small"
CTX = {
    "Link": '<https://w3id.org/bright/context.jsonld>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
}
OFFER = "offer:urn:ngsi-ld:ServiceOffer:heat-1"


def agreement(
    uid: str,
    assignee: str,
    target: str,
    *,
    purpose: str = OFFER,
    window: tuple[str, str] | None = None,
    action: str = "read",
) -> dict[str, Any]:
    constraints: list[dict[str, Any]] = [
        {"leftOperand": "purpose", "operator": "eq", "rightOperand": purpose}
    ]
    if window:
        constraints += [
            {
                "leftOperand": "dateTime",
                "operator": "gteq",
                "rightOperand": {"@value": window[0], "@type": "xsd:dateTime"},
            },
            {
                "leftOperand": "dateTime",
                "operator": "lt",
                "rightOperand": {"@value": window[1], "@type": "xsd:dateTime"},
            },
        ]
    return {
        "@context": ODRL_CONTEXT,
        "@type": "Agreement",
        "uid": uid,
        "permission": [{"target": target, "assignee": assignee, "action": action, "constraint": constraints}],
    }


def consent(node: AccessNode, cid: str, member: str, purpose: str, *, revoked: str | None = None) -> None:
    ent: dict[str, Any] = {
        "id": cid,
        "type": "Consent",
        "member": {"type": "Relationship", "object": member},
        "purpose": {"type": "Property", "value": purpose},
        "grantedAt": {"type": "Property", "value": {"@type": "DateTime", "@value": "2026-01-01T00:00:00Z"}},
    }
    if revoked:
        ent["revokedAt"] = {"type": "Property", "value": {"@type": "DateTime", "@value": revoked}}
    r = node.client.post(NGSI + "/entities", json=ent, headers=node.manager)
    assert r.status_code == 201, r.text


@pytest.fixture
def community(node: AccessNode) -> AccessNode:
    node.add_community("big", 6)
    node.add_community("small", 3)
    return node


# ----------------------------------------------------------------------------------------------- ODRL


GOOD = {
    "@context": ODRL_CONTEXT,
    "@type": "Set",
    "uid": "urn:ngsi-ld:DataPolicy:x",
    "permission": [
        {
            "target": "https://w3id.org/bright/assets#aggregates",
            "assignee": "https://w3id.org/bright/parties#researcher",
            "action": "odrl:use",
            "constraint": [{"leftOperand": MIN_MEMBERS, "operator": "gteq", "rightOperand": 10}],
        }
    ],
}


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("@context",), "http://example.org/ctx", "@context"),
        (("@type",), "Contract", "@type"),
        (("uid",), "not an iri", "uid"),
        (("permission", 0, "action"), "sell", "permission[0].action[0]"),
        (("permission", 0, "target"), "https://w3id.org/bright/assets#everything", "permission[0].target[0]"),
        (
            ("permission", 0, "assignee"),
            "https://w3id.org/bright/parties#pirate",
            "permission[0].assignee[0]",
        ),
        (
            ("permission", 0, "constraint", 0, "leftOperand"),
            "spatial",
            "permission[0].constraint[0].leftOperand",
        ),
        (("permission", 0, "constraint", 0, "operator"), "lt", "permission[0].constraint[0].operator"),
        (
            ("permission", 0, "constraint", 0, "rightOperand"),
            "many",
            "permission[0].constraint[0].rightOperand[0]",
        ),
    ],
)
def test_bad_odrl_names_the_part(path: tuple[Any, ...], value: Any, named: str) -> None:
    doc = copy.deepcopy(GOOD)
    parse_policy(doc)
    where: Any = doc
    for key in path[:-1]:
        where = where[key]
    where[path[-1]] = value
    with pytest.raises(PolicyError) as err:
        parse_policy(doc)
    assert str(err.value).startswith(named), str(err.value)


def test_rest_refuses_bad_policy_with_400_naming_the_part(node: AccessNode) -> None:
    doc = copy.deepcopy(GOOD)
    doc["permission"][0]["constraint"][0]["leftOperand"] = "spatial"
    r = node.client.post("/api/policies", json={"odrl": doc}, headers=node.manager)
    assert r.status_code == 400
    assert "permission[0].constraint[0].leftOperand" in r.json()["detail"]


def test_defaults_state_open_network_and_never(node: AccessNode) -> None:
    uids = [p.uid for p in default_policies(BIG)]
    assert uids == [
        "urn:ngsi-ld:DataPolicy:big-open",
        "urn:ngsi-ld:DataPolicy:big-network",
        "urn:ngsi-ld:DataPolicy:big-member-data",
    ]
    network = default_policies(BIG, k=7)[1]
    (rule,) = network.rules
    assert rule.constraints[0].right == (7,)
    # The defaults were written as DataPolicy entities at start-up (auth=required).
    listed = node.client.get("/api/policies").json()
    assert {p["uid"] for p in listed if p["stored"]} >= {"urn:ngsi-ld:DataPolicy:node-open"}


# ------------------------------------------------------------------------------------ enforcement


def test_member_data_denied_with_the_policy_named(community: AccessNode) -> None:
    r = community.client.get(
        f"{NGSI}/entities/urn:ngsi-ld:Meter:big:m1", headers=community.token("researcher")
    )
    assert r.status_code == 403
    body = r.json()
    assert body["policy"] == "urn:ngsi-ld:DataPolicy:big-member-data"
    assert "urn:ngsi-ld:DataPolicy:big-member-data" in body["detail"]
    t = community.client.get(
        f"{NGSI}/temporal/entities/urn:ngsi-ld:Meter:big:m1", headers=community.token("researcher")
    )
    assert t.status_code == 403 and t.json()["policy"] == "urn:ngsi-ld:DataPolicy:big-member-data"
    assert "member-series" in t.json()["detail"]


def test_aggregates_below_k_refused_and_k_is_editable(community: AccessNode) -> None:
    researcher = community.token("researcher")
    assert community.client.get(f"/api/communities/{BIG}", headers=researcher).status_code == 200
    r = community.client.get(f"/api/communities/{SMALL}", headers=researcher)
    assert r.status_code == 403
    assert r.json()["policy"] == "urn:ngsi-ld:DataPolicy:small-network"
    assert "3 members is below the minimum of 5" in r.json()["detail"]
    # The manager lowers k for the small community: a stored policy with the default's uid replaces it.
    (network,) = [p for p in default_policies(SMALL) if p.uid.endswith("-network")]
    doc = copy.deepcopy(network.document)
    doc["permission"][0]["constraint"][0]["rightOperand"] = 3
    put = community.client.put(
        "/api/policies/urn:ngsi-ld:DataPolicy:small-network",
        json={"odrl": doc, "community": SMALL},
        headers=community.manager,
    )
    assert put.status_code == 200, put.text
    assert community.client.get(f"/api/communities/{SMALL}", headers=researcher).status_code == 200


def test_lists_are_filtered_to_what_the_caller_may_see(community: AccessNode) -> None:
    c = community.client
    everything = c.get(
        f"{NGSI}/entities?type=Meter&count=true&limit=100", headers={**CTX, **community.manager}
    )
    assert len(everything.json()) == 9 and everything.headers["ngsild-results-count"] == "9"
    member = community.token("member", community_id=BIG, member_id="urn:ngsi-ld:EnergyProsumer:big:m0")
    mine = c.get(f"{NGSI}/entities?type=Meter&count=true&limit=100", headers={**CTX, **member})
    assert [e["id"] for e in mine.json()] == ["urn:ngsi-ld:Meter:big:m0"]
    assert mine.headers["bright-policy-filtered"] == "8" and mine.headers["ngsild-results-count"] == "1"
    researcher = community.token("researcher")
    cards = c.get(
        f"{NGSI}/entities?type=EnergyCommunity,Meter,KeyPerformanceIndicator&limit=100",
        headers={**CTX, **researcher},
    )
    assert sorted(e["type"] for e in cards.json()) == [
        "EnergyCommunity",
        "EnergyCommunity",
        "KeyPerformanceIndicator",
        "KeyPerformanceIndicator",
    ]
    # REST answers lose the objects that name a member the caller may not see.
    rest = c.get(f"/api/communities/{BIG}", headers=researcher)
    assert rest.json()["members"] == [] and "urn:ngsi-ld:Meter:big" not in rest.text
    assert rest.headers["bright-policy-filtered"] == "6"
    own_view = c.get(f"/api/communities/{BIG}", headers=member)
    assert [m["id"] for m in own_view.json()["members"]] == ["urn:ngsi-ld:EnergyProsumer:big:m0"]


def test_agreement_and_consent_let_a_provider_read_one_meter(community: AccessNode) -> None:
    c = community.client
    provider = community.token("energy_company")  # subject token:energy_company-0
    subject = "token:energy_company-0"
    meter = "urn:ngsi-ld:Meter:big:m1"
    uid = "urn:ngsi-ld:DataPolicy:agreement-heat-1-m1"
    assert (
        c.post(
            "/api/policies",
            json={"odrl": agreement(uid, subject, meter), "community": BIG},
            headers=community.manager,
        ).status_code
        == 201
    )
    no_consent = c.get(f"{NGSI}/entities/{meter}", headers=provider)
    assert no_consent.status_code == 403 and no_consent.json()["policy"] == uid
    assert "no active consent" in no_consent.json()["detail"]
    consent(community, "urn:ngsi-ld:Consent:m1-heat", "urn:ngsi-ld:EnergyProsumer:big:m1", OFFER)
    ok = c.get(f"{NGSI}/entities/{meter}", headers=provider)
    assert ok.status_code == 200 and ok.json()["id"] == meter
    # Another member's meter stays closed; another provider too.
    assert c.get(f"{NGSI}/entities/urn:ngsi-ld:Meter:big:m2", headers=provider).status_code == 403
    assert (
        c.get(f"{NGSI}/entities/{meter}", headers=community.token("technology_provider")).status_code == 403
    )
    # A declared purpose that the agreement does not cover is refused.
    other = c.get(f"{NGSI}/entities/{meter}", headers={**provider, "BRIGHT-Purpose": "marketing"})
    assert other.status_code == 403 and "marketing" in other.json()["detail"]
    # The member revokes the consent: the next request is refused.
    past = (datetime.now(UTC) - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = c.patch(
        f"{NGSI}/entities/urn:ngsi-ld:Consent:m1-heat/attrs",
        json={"revokedAt": {"type": "Property", "value": {"@type": "DateTime", "@value": past}}},
        headers=community.token("member", community_id=BIG, member_id="urn:ngsi-ld:EnergyProsumer:big:m1"),
    )
    assert r.status_code in (204, 207), r.text
    assert c.get(f"{NGSI}/entities/{meter}", headers=provider).status_code == 403


def test_agreement_outside_its_window_refused(community: AccessNode) -> None:
    subject = "token:energy_company-0"
    provider = community.token("energy_company")
    uid = "urn:ngsi-ld:DataPolicy:agreement-old"
    doc = agreement(
        uid, subject, "urn:ngsi-ld:Meter:big:m3", window=("2020-01-01T00:00:00Z", "2021-01-01T00:00:00Z")
    )
    assert (
        community.client.post("/api/policies", json={"odrl": doc}, headers=community.manager).status_code
        == 201
    )
    consent(community, "urn:ngsi-ld:Consent:m3", "urn:ngsi-ld:EnergyProsumer:big:m3", OFFER)
    r = community.client.get(f"{NGSI}/entities/urn:ngsi-ld:Meter:big:m3", headers=provider)
    assert r.status_code == 403 and r.json()["policy"] == uid and "dateTime" in r.json()["detail"]


def test_attribute_level_target_returns_only_that_attribute(community: AccessNode) -> None:
    researcher = community.token("researcher")
    uid = "urn:ngsi-ld:DataPolicy:locality-study"
    doc = {
        "@context": ODRL_CONTEXT,
        "@type": "Set",
        "uid": uid,
        "permission": [
            {
                "target": "urn:ngsi-ld:Meter:big:m4#locality",
                "assignee": "https://w3id.org/bright/parties#researcher",
                "action": "read",
                "constraint": [
                    {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["research"]}
                ],
            }
        ],
    }
    assert (
        community.client.post("/api/policies", json={"odrl": doc}, headers=community.manager).status_code
        == 201
    )
    consent(community, "urn:ngsi-ld:Consent:m4", "urn:ngsi-ld:EnergyProsumer:big:m4", "research")
    r = community.client.get(
        f"{NGSI}/entities/urn:ngsi-ld:Meter:big:m4?options=keyValues", headers={**CTX, **researcher}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"id": "urn:ngsi-ld:Meter:big:m4", "type": "Meter", "locality": "lv_cabin"}


def test_engine_prohibition_without_perm_conflict_wins(community: AccessNode) -> None:
    engine = community.app.state.access.policies
    res = Resource(MEMBER_DATA, "urn:ngsi-ld:Meter:big:m5", None, BIG, "urn:ngsi-ld:EnergyProsumer:big:m5", 6)
    who = Principal(role="researcher", subject="token:r", kind="user")
    consent(community, "urn:ngsi-ld:Consent:m5", "urn:ngsi-ld:EnergyProsumer:big:m5", "research")
    grant = {
        "@context": ODRL_CONTEXT,
        "@type": "Set",
        "uid": "urn:ngsi-ld:DataPolicy:grant",
        "permission": [
            {
                "target": "urn:ngsi-ld:Meter:big:m5",
                "assignee": "token:r",
                "action": "read",
                "constraint": [{"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"}],
            }
        ],
    }
    community.client.post("/api/policies", json={"odrl": grant}, headers=community.manager)
    assert engine.decide(who, res, tenant="").allowed
    strict = {
        "@context": ODRL_CONTEXT,
        "@type": "Set",
        "uid": "urn:ngsi-ld:DataPolicy:strict",
        "prohibition": [{"target": MEMBER_DATA, "action": "read"}],
    }
    community.client.post("/api/policies", json={"odrl": strict}, headers=community.manager)
    d = engine.decide(who, res, tenant="")
    assert not d.allowed and d.policy_uid == "urn:ngsi-ld:DataPolicy:strict"


# ------------------------------------------------------------------------------------------- audit


def test_denials_are_audited_and_readable_by_the_manager(community: AccessNode, tmp_path: Path) -> None:
    c = community.client
    researcher = community.token("researcher")
    since = (datetime.now(UTC) - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert c.get(f"{NGSI}/entities/urn:ngsi-ld:Meter:big:m2", headers=researcher).status_code == 403
    assert c.post(NGSI + "/entities", json={"id": "urn:ngsi-ld:T:1", "type": "T"}).status_code == 401
    assert c.get("/api/audit", headers=researcher).status_code == 403
    log = c.get(f"/api/audit?since={since}", headers=community.manager).json()
    denied = [e for e in log if e["decision"] == "denied"]
    assert any(
        e["path"] == f"{NGSI}/entities/urn:ngsi-ld:Meter:big:m2"
        and e["policy"] == "urn:ngsi-ld:DataPolicy:big-member-data"
        and e["role"] == "researcher"
        for e in denied
    )
    assert any(e["decision"] == "unauthenticated" and e["method"] == "POST" for e in log)
    only = c.get("/api/audit?decision=unauthenticated", headers=community.manager).json()
    assert only and all(e["decision"] == "unauthenticated" for e in only)
    future = c.get("/api/audit?since=2999-01-01T00:00:00Z", headers=community.manager).json()
    assert future == []
    bad = c.get("/api/audit?since=yesterday", headers=community.manager)
    assert bad.status_code == 400 and "since" in bad.json()["detail"]
    url = str(community.engine.url.render_as_string(hide_password=False))
    out = CliRunner().invoke(cli, ["audit", "--decision", "denied", "--json", "-d", url])
    assert out.exit_code == 0, out.output
    assert "urn:ngsi-ld:DataPolicy:big-member-data" in out.output


def test_open_card_does_not_leak_member_ids_even_inlined(community: AccessNode) -> None:
    c = community.client
    public = c.get(f"{NGSI}/entities/{BIG}?options=keyValues", headers=CTX)
    assert public.status_code == 200
    assert public.json()["name"] == "Community big"
    assert "urn:ngsi-ld:EnergyProsumer" not in public.text and "hasMember" not in public.json()
    assert int(public.headers["bright-policy-filtered"]) == 6
    joined = c.get(f"{NGSI}/entities/{BIG}?join=inline&joinLevel=2", headers=CTX)
    assert (
        joined.status_code == 200 and "EnergyProsumer" not in joined.text and "Meter:big" not in joined.text
    )
    # Trailing slashes are routed like the plain path: the list is filtered all the same.
    slash = c.get(f"{NGSI}/entities/?type=Meter&limit=100", headers={**CTX, **community.token("ngo")})
    assert slash.status_code == 200 and slash.json() == []
    member = community.token("member", community_id=BIG, member_id="urn:ngsi-ld:EnergyProsumer:big:m0")
    card = c.get(f"{NGSI}/entities/{BIG}?options=keyValues", headers={**CTX, **member}).json()
    assert card["hasMember"] == ["urn:ngsi-ld:EnergyProsumer:big:m0"]


def test_policies_naming_a_members_meter_are_hidden_from_others(community: AccessNode) -> None:
    doc = agreement(
        "urn:ngsi-ld:DataPolicy:agreement-m2", "token:energy_company-0", "urn:ngsi-ld:Meter:big:m2"
    )
    assert (
        community.client.post("/api/policies", json={"odrl": doc}, headers=community.manager).status_code
        == 201
    )
    manager_view = community.client.get("/api/policies", headers=community.manager).text
    assert "urn:ngsi-ld:Meter:big:m2" in manager_view
    for who in ({}, community.token("ngo")):
        listed = community.client.get("/api/policies", headers=who)
        assert listed.status_code == 200 and "urn:ngsi-ld:Meter:big:m2" not in listed.text
        assert "urn:ngsi-ld:DataPolicy:big-open" in listed.text
    owner = community.token("member", community_id=BIG, member_id="urn:ngsi-ld:EnergyProsumer:big:m2")
    assert "urn:ngsi-ld:Meter:big:m2" in community.client.get("/api/policies", headers=owner).text


def test_data_policy_written_through_ngsi_ld_is_validated(node: AccessNode) -> None:
    doc = copy.deepcopy(GOOD)
    doc["permission"][0]["action"] = "sell"
    ent = {
        "id": "urn:ngsi-ld:DataPolicy:bad",
        "type": "DataPolicy",
        "odrl": {"type": "JsonProperty", "json": doc},
    }
    r = node.client.post(NGSI + "/entities", json=ent, headers=node.manager)
    assert r.status_code == 400 and "permission[0].action[0]" in r.json()["detail"]
    ent["odrl"]["json"] = GOOD
    assert node.client.post(NGSI + "/entities", json=ent, headers=node.manager).status_code == 201
    listed = node.client.get("/api/policies/urn:ngsi-ld:DataPolicy:bad", headers=node.manager).json()
    assert listed["uid"] == "urn:ngsi-ld:DataPolicy:x" and listed["stored"] is True


def test_practices_are_open_to_peers_and_visitors_even_in_a_small_community(community: AccessNode) -> None:
    """Knowledge (practices, initiatives, documents) is open data, unlike the community's other
    entities: the city's network-wide search reads it from every node (issue 11)."""
    small = "urn:ngsi-ld:EnergyCommunity:small"
    for kind in ("Practice", "Initiative", "CommunityDocument", "Building"):
        ent = {
            "id": f"urn:ngsi-ld:{kind}:small:1",
            "type": kind,
            "community": {"type": "Relationship", "object": small},
            "name": {"type": "Property", "value": f"{kind} of the small community"},
        }
        r = community.client.post(NGSI + "/entities", json=ent, headers={**CTX, **community.manager})
        assert r.status_code == 201, r.text
    seen = {}
    for who, headers in (("public", {}), ("researcher", community.token("researcher"))):
        r = community.client.get(
            f"{NGSI}/entities?type=Practice,Initiative,CommunityDocument,Building&limit=100",
            headers={**CTX, **headers},
        )
        seen[who] = sorted(e["type"] for e in r.json())
    knowledge = ["CommunityDocument", "Initiative", "Practice"]
    assert seen["public"] == knowledge  # the building is community data: not for visitors
    assert set(knowledge) <= set(seen["researcher"])
