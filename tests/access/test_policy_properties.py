"""Properties of the policy engine over random policies, consents and callers (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bright.network.access import ROLES, Principal
from bright.network.policy import (
    AGGREGATES,
    ASSET_CLASSES,
    MEMBER_DATA,
    MEMBER_SERIES,
    MIN_MEMBERS,
    ODRL_CONTEXT,
    PARTIES,
    Consent,
    Ownership,
    PolicyEngine,
    Resource,
    parse_policy,
)

COMMUNITY = "urn:ngsi-ld:EnergyCommunity:c"
OWNER = "urn:ngsi-ld:EnergyProsumer:c:m1"
METER = "urn:ngsi-ld:Meter:c:m1"
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
PURPOSES = ["sharing", "network", "research", "offer:urn:ngsi-ld:ServiceOffer:1"]


class _Engine(PolicyEngine):
    """The engine over a given ownership (what the database would hold)."""

    def __init__(self, own: Ownership) -> None:
        super().__init__(service=None)
        self._own = own

    def ownership(self, tenant: str) -> Ownership:
        return self._own


rule = st.fixed_dictionaries(
    {
        "target": st.lists(
            st.sampled_from([*ASSET_CLASSES, METER, f"{METER}#offtake"]), min_size=1, max_size=3
        ),
        "assignee": st.lists(
            st.sampled_from([PARTIES + "any", *(PARTIES + r for r in ROLES), "token:p", "city"]), max_size=3
        ),
        "action": st.lists(st.sampled_from(["read", "use", "distribute"]), min_size=1, max_size=2),
        "purposes": st.lists(st.sampled_from(PURPOSES), max_size=2),
    }
)


def _policy(n: int, r: dict[str, Any], kind: str, conflict: str) -> Any:
    body: dict[str, Any] = {"target": r["target"], "action": r["action"]}
    if r["assignee"]:
        body["assignee"] = r["assignee"]
    if r["purposes"]:
        body["constraint"] = [
            {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": r["purposes"]}
        ]
    doc = {
        "@context": ODRL_CONTEXT,
        "@type": "Set",
        "uid": f"urn:ngsi-ld:DataPolicy:p{n}",
        kind: [body],
        "conflict": conflict,
    }
    return parse_policy(doc, community=COMMUNITY, entity_id=f"urn:ngsi-ld:DataPolicy:p{n}")


@settings(max_examples=300, deadline=None)
@given(
    rules=st.lists(
        st.tuples(
            rule, st.sampled_from(["permission", "prohibition"]), st.sampled_from(["perm", "prohibit"])
        ),
        max_size=5,
    ),
    consents=st.lists(st.tuples(st.sampled_from(PURPOSES), st.booleans()), max_size=3),
    role=st.sampled_from([r for r in ROLES if r not in ("manager", "member")]),
    subject=st.sampled_from(["token:p", "city", "token:q", None]),
    series=st.booleans(),
)
def test_member_data_needs_an_active_consent_for_a_permitted_purpose(
    rules, consents, role, subject, series
) -> None:
    own = Ownership(
        member_community={OWNER: COMMUNITY},
        community_members={COMMUNITY: {OWNER}},
        owned={METER: OWNER},
        consents={
            OWNER: [
                Consent(
                    f"urn:ngsi-ld:Consent:{i}",
                    OWNER,
                    p,
                    NOW - timedelta(days=1),
                    NOW - timedelta(hours=1) if revoked else None,
                )
                for i, (p, revoked) in enumerate(consents)
            ]
        },
        policies=[_policy(n, r, kind, conflict) for n, (r, kind, conflict) in enumerate(rules)],
    )
    engine = _Engine(own)
    resource = Resource(MEMBER_SERIES if series else MEMBER_DATA, METER, None, COMMUNITY, OWNER, 1)
    who = Principal(role=role, subject=subject, kind="node" if role == "peer" else "user")
    d = engine.decide(who, resource, "read", tenant="", now=NOW)
    active = {p for p, revoked in consents if not revoked}
    permitted_purposes = {p for r, kind, _ in rules if kind == "permission" for p in r["purposes"]}
    if d.allowed:
        assert active & permitted_purposes, (d, active, permitted_purposes)
    else:
        assert (d.policy_uid and d.policy_uid in d.reason) or d.policy_uid.startswith(
            "https://w3id.org/bright/roles"
        )


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=30),
    k=st.integers(min_value=1, max_value=20),
    role=st.sampled_from(ROLES),
)
def test_aggregates_are_shared_only_over_k_members(n: int, k: int, role: str) -> None:
    doc = {
        "@context": ODRL_CONTEXT,
        "@type": "Set",
        "uid": "urn:ngsi-ld:DataPolicy:c-network",
        "permission": [
            {
                "target": AGGREGATES,
                "assignee": PARTIES + "any",
                "action": "read",
                "constraint": [{"leftOperand": MIN_MEMBERS, "operator": "gteq", "rightOperand": k}],
            }
        ],
    }
    engine = _Engine(Ownership(policies=[parse_policy(doc, community=COMMUNITY)]))
    d = engine.decide(
        Principal(role=role, kind="user"), Resource(AGGREGATES, None, None, COMMUNITY, None, n), tenant=""
    )
    if role == "manager":
        assert d.allowed
    else:
        assert d.allowed == (n >= k)
        if not d.allowed:
            assert f"below the minimum of {k}" in d.reason
