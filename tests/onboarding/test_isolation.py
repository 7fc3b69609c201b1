"""Tenant isolation over EVERY route of the app (including routes added later by other parts).

Tenant ``alpha`` holds a community with members, meter readings, consents, a subscription, a
context source registration and a subscription to registrations. Every route of ``app.routes`` is
then called as tenant ``beta`` (anonymously, and as beta's own manager logged in on the
dashboard) and as the default tenant, with alpha's ids in the path where the route takes an id.
No answer may contain anything of alpha that the caller did not send itself (EANs, names, e-mail
addresses, the locality name, ids of other members, the subscription's description, the
registration's endpoint), and alpha's data must be unchanged afterwards (write routes included).

Routes that are legitimately tenant-independent are in :data:`TENANT_INDEPENDENT` with the reason;
a route that is neither called nor listed fails the test, as does a listed route that no longer
exists.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sample_community import SETUP, valid_ean

from bright.api.app import create_app
from bright.api.onboarding import registry_of
from bright.config import Settings
from bright.twin.context import BRIGHT_CONTEXT_URL
from bright.twin.schema import entities
from bright.twin.series import SeriesStore
from bright.twin.vocabulary import bright_context
from bright.web.users import create_user

MARK = "alphamarker"
LINK = f'<{BRIGHT_CONTEXT_URL}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'

#: (method, path) -> why the route does not answer per tenant. Checked: every entry exists.
TENANT_INDEPENDENT: dict[tuple[str, str], str] = {
    ("GET", "/openapi.json"): "the API description of the node: no data",
    ("GET", "/docs"): "Swagger UI page: no data",
    ("GET", "/docs/oauth2-redirect"): "Swagger UI helper page: no data",
    ("GET", "/redoc"): "ReDoc page: no data",
    ("GET", "/health"): "node status and version: no data",
    ("MOUNT", "/web/static"): "the dashboard's static files (CSS, JS): no data",
    ("GET", "/api/onboarding/invitations/{token}"): "the signed invitation names its tenant and community; "
    "whoever holds the token is invited into that tenant (it answers the community's name only)",
    ("POST", "/api/onboarding/join"): "joins the tenant named by the signed invitation token",
    ("GET", "/onboarding/join"): "the join form of the tenant named by the signed invitation token",
    ("POST", "/onboarding/join"): "joins the tenant named by the signed invitation token",
}

#: Routes whose answer shows the caller's tenant the requests made to it (the audit log): what this
#: test itself sent to that tenant (alpha's ids in paths) counts as sent by the caller. Alpha's own
#: audited request names an id the test never sends as another tenant (see ``setup``).
ECHOES_REQUESTS: dict[tuple[str, str], str] = {
    ("GET", "/api/audit"): "the access audit log of the caller's tenant (bright.api.auth), tenant-scoped",
    ("GET", "/admin/audit"): "the dashboard's page of the same audit log, of the manager's tenant",
}

_WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def _path_value(name: str, alpha: dict[str, Any]) -> str:
    values = {
        "community_id": alpha["community"],
        "community_key": alpha["community"].rsplit(":", 1)[-1],
        "card_id": alpha["community"],
        "member_id": alpha["members"][0]["id"],
        "entity_id": alpha["members"][0]["meter"],
        "attr": "offtake",
        "instance_id": "urn:ngsi-ld:attribute:instance:1767225600000000",
        "type_name": "EnergyProsumer",
        "subscription_id": alpha["subscription"],
        "registration_id": alpha["registration"],
        "policy_id": alpha["policy"],
        "token": alpha["token"],
        "ean": valid_ean(9_999_999),
        "purpose": "sharing",
        "operation": "query",
        "filename": "cards.csv",
        "entry_id": "1",
        "size": "1",
        "index": "0",
    }
    return values.get(name, "probe")


_BODIES: dict[str, Any] = {
    "/ngsi-ld/v1/entityOperations/{operation}": {"type": "Query", "entities": [{"type": "EnergyProsumer"}]},
    "/ngsi-ld/v1/temporal/entityOperations/query": {
        "type": "Query", "entities": [{"type": "Meter"}], "temporalQ": {"timerel": "after", "timeAt": "2000-01-01T00:00:00Z"}},
    "/ngsi-ld/v1/entities": {"id": "urn:ngsi-ld:Thing:probe", "type": "Thing"},
}  # fmt: skip
_QUERIES: dict[str, dict[str, str]] = {
    "/api/audit": {"limit": "1000"},
    "/ngsi-ld/v1/entities": {"type": "EnergyProsumer,Meter,Consent,EnergyCommunity,Building", "limit": "1000"},
    "/ngsi-ld/v1/temporal/entities": {"type": "Meter,EnergyProsumer", "timerel": "after", "timeAt": "2000-01-01T00:00:00Z"},
    "/ngsi-ld/v1/temporal/entities/{entity_id:path}": {"attrs": "offtake"},
    "/ngsi-ld/v1/csourceRegistrations": {"type": "EnergyCommunity,Meter,EnergyProsumer"},
    "/ngsi-ld/v1/entities/{entity_id:path}": {},
}  # fmt: skip


def _seed_alpha(client: TestClient) -> dict[str, Any]:
    h = {"NGSILD-Tenant": "alpha"}
    setup = {
        **SETUP,
        "slug": "alpha-c",
        "locality_name": f"Cabine {MARK}-loc",
        "description": f"{MARK} community",
    }
    r = client.post("/api/onboarding/communities", headers=h, json=setup)
    assert r.status_code == 201, r.text
    cid, policies = r.json()["id"], r.json()["policies"]
    members = []
    token = ""
    for i in range(3):
        token = client.post(f"/api/onboarding/communities/{cid}/invitations", headers=h, json={}).json()[
            "token"
        ]
        r = client.post("/api/onboarding/join", json={
            "token": token, "name": f"Quentin {MARK}{i}", "email": f"{MARK}{i}@example.be", "ean": valid_ean(500 + i),
            "role": "prosumer", "assets": [{"type": "PhotovoltaicDevice", "peakPower": 3}],
            "consents": {"sharing": True, "sbright": True, "network": i == 0}})  # fmt: skip
        assert r.status_code == 201, r.text
        members.append({"id": r.json()["memberId"], "meter": r.json()["meterId"], "ean": valid_ean(500 + i)})
    # An unused invitation (for the token routes).
    token = client.post(f"/api/onboarding/communities/{cid}/invitations", headers=h, json={}).json()["token"]
    ctx = bright_context()
    idx = pd.date_range("2026-01-01", periods=96 * 14, freq="15min", tz="UTC")
    frame = pd.DataFrame(np.random.default_rng(2).uniform(0.01, 0.5, (len(idx), 3)), index=idx,
                         columns=[m["meter"] for m in members])  # fmt: skip
    store = SeriesStore(client.app.state.twin.engine)  # type: ignore[attr-defined]
    store.write(frame, tenant="alpha", attribute=ctx.expand("offtake"), unit_code="KWH")
    store.write(frame * 0.3, tenant="alpha", attribute=ctx.expand("injection"), unit_code="KWH")
    hj = {**h, "Content-Type": "application/json", "Link": LINK}
    r = client.post("/ngsi-ld/v1/subscriptions", headers=hj, content=json.dumps({
        "type": "Subscription", "entities": [{"type": "Meter"}], "description": f"{MARK} subscription",
        "notification": {"endpoint": {"uri": f"http://{MARK}.example/notify"}}}))  # fmt: skip
    assert r.status_code == 201, r.text
    sub = r.headers["Location"].rsplit("/", 1)[-1]
    r = client.post("/ngsi-ld/v1/csourceRegistrations", headers=hj, content=json.dumps({
        "type": "ContextSourceRegistration", "information": [{"entities": [{"type": "Meter"}]}],
        "endpoint": f"http://{MARK}.example", "description": f"{MARK} registration"}))  # fmt: skip
    assert r.status_code == 201, r.text
    reg = r.headers["Location"].rsplit("/", 1)[-1]
    r = client.post("/ngsi-ld/v1/csourceSubscriptions", headers=hj, content=json.dumps({
        "type": "Subscription", "entities": [{"type": "Meter"}], "description": f"{MARK} csub",
        "notification": {"endpoint": {"uri": f"http://{MARK}.example/csub"}}}))  # fmt: skip
    assert r.status_code == 201, r.text
    return {"community": cid, "members": members, "subscription": sub, "registration": reg,
            "policy": policies[-1] if policies else "urn:ngsi-ld:DataPolicy:probe", "token": token}  # fmt: skip


def _seed_beta(client: TestClient) -> None:
    h = {"NGSILD-Tenant": "beta"}
    r = client.post(
        "/api/onboarding/communities", headers=h, json={**SETUP, "slug": "beta-c", "name": "Beta community"}
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    for i in range(2):
        token = client.post(f"/api/onboarding/communities/{cid}/invitations", headers=h, json={}).json()[
            "token"
        ]
        client.post("/api/onboarding/join", json={"token": token, "name": f"Beta person {i}", "ean": valid_ean(800 + i),
                                                  "consents": {"sharing": True}})  # fmt: skip


def _alpha_state(client: TestClient) -> tuple[Any, ...]:
    from sqlalchemy import func, select

    from bright.twin.series import chunks_table, series_table

    engine = client.app.state.twin.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        docs = conn.execute(select(entities.c.id, entities.c.doc).where(entities.c.tenant == "alpha")).all()
        points = conn.execute(
            select(func.sum(chunks_table.c.n)).select_from(chunks_table.join(series_table))
            .where(series_table.c.tenant == "alpha")
        ).scalar_one()  # fmt: skip
    attrs = {
        i: json.dumps((d if isinstance(d, dict) else json.loads(d))["attrs"], sort_keys=True) for i, d in docs
    }
    return (attrs, int(points or 0))


@pytest.fixture
def setup(
    db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> Iterator[tuple[TestClient, dict[str, Any]]]:
    monkeypatch.setenv("BRIGHT_AUTH", "open")
    app = create_app(Settings.from_env(database_url=db_url))
    with TestClient(app) as client:
        alpha = _seed_alpha(client)
        _seed_beta(client)
        registry = registry_of(app)
        registry.create("alpha", manager="alpha-mgr", community_id=alpha["community"])
        registry.create("beta", manager="beta-mgr", community_id="urn:ngsi-ld:EnergyCommunity:beta-c")
        create_user(app.state.twin.engine, "beta-mgr", "beta manager password", "manager",
                    community_id="urn:ngsi-ld:EnergyCommunity:beta-c")  # fmt: skip
        # An audited request of alpha (a bad token is a 401 in every mode) naming alpha's second
        # member, whose id the test never sends as another tenant: the audit log must not show it.
        r = client.get(f"/ngsi-ld/v1/entities/{alpha['members'][1]['id']}",
                       headers={"NGSILD-Tenant": "alpha", "Authorization": "Bearer brt_0_bad"})  # fmt: skip
        assert r.status_code == 401
        yield client, alpha
    app.state.twin.engine.dispose()


def _routes(client: TestClient) -> list[tuple[str, str, list[str]]]:
    out = []
    for r in iter_route_contexts(client.app.routes):  # type: ignore[attr-defined]
        path = r.path or ""
        params = re.findall(r"{([^}:]+)(?::[^}]+)?}", path)
        methods = sorted(m for m in (r.methods or []) if m != "HEAD") or ["MOUNT"]
        for m in methods:
            out.append((m, path, params))
    return out


def _leaks(text: str, alpha: dict[str, Any], sent: str) -> list[str]:
    """Markers of alpha found in ``text`` that the caller did not send itself (``sent``)."""
    found = []
    low = text.lower()
    if MARK in low and MARK not in sent.lower():
        found.append(MARK)
    for m in alpha["members"]:
        for value in (m["ean"], m["id"], m["meter"]):
            if value in text and value not in sent:
                found.append(value)
    return found


def test_no_route_returns_another_tenants_data(setup: tuple[TestClient, dict[str, Any]]) -> None:
    client, alpha = setup
    before = _alpha_state(client)
    routes = _routes(client)
    listed = {(m, p) for m, p, _ in routes}
    assert set(TENANT_INDEPENDENT) <= listed, f"stale allow-list entries: {set(TENANT_INDEPENDENT) - listed}"
    assert len(routes) > 150  # the whole app, not a sample

    def call(method: str, path: str, params: list[str], headers: dict[str, str]) -> tuple[str, str]:
        url = path
        for name in params:
            url = re.sub(r"{" + name + r"(:[^}]+)?}", _path_value(name, alpha), url)
        query = _QUERIES.get(path, {})
        body = _BODIES.get(path, {}) if method in _WRITE_METHODS else None
        h = {**headers, "Link": LINK}
        if body is not None:
            h["Content-Type"] = "application/json"
        content = json.dumps(body) if body is not None else None
        r = client.request(method, url, params=query, headers=h, content=content, follow_redirects=False)
        sent = url + json.dumps(query) + json.dumps(body)
        return r.text + json.dumps(dict(r.headers)), sent

    checked: set[tuple[str, str]] = set()
    sent_to: dict[str, list[str]] = {}
    failures: list[str] = []
    anonymous_beta = {"NGSILD-Tenant": "beta"}
    passes: list[tuple[str, dict[str, str], bool]] = [("anonymous beta", anonymous_beta, False),
                                                      ("default tenant", {}, False),
                                                      ("beta manager", anonymous_beta, True)]  # fmt: skip
    for label, headers, login in passes:
        if login:
            r = client.post("/login", data={"username": "beta-mgr", "password": "beta manager password", "next": "/"},
                            follow_redirects=False)  # fmt: skip
            assert r.status_code in (302, 303), r.text
        for method, path, params in routes:
            if method == "MOUNT" or (method, path) in TENANT_INDEPENDENT:
                continue
            if path in ("/logout",) or path.endswith("/leave"):
                continue  # would end the session or the test's own member; covered by the tenant checks below
            text, sent = call(method, path, params, headers)
            tenant_sent = sent_to.setdefault(headers.get("NGSILD-Tenant", ""), [])
            tenant_sent.append(sent)
            if (method, path) in ECHOES_REQUESTS:
                sent = "".join(tenant_sent)
            leaks = _leaks(text, alpha, sent)
            if leaks:
                failures.append(f"{label}: {method} {path} returned alpha's {sorted(set(leaks))[:3]}")
            checked.add((method, path))
        client.cookies.clear()
    assert not failures, "\n".join(failures)
    # The two routes skipped above, as beta: they must not reach alpha's member.
    r = client.post(f"/api/onboarding/communities/{alpha['community']}/members/{alpha['members'][0]['id']}/leave",
                    headers=anonymous_beta, json={})  # fmt: skip
    assert r.status_code == 404
    checked.update({("POST", p) for m, p, _ in routes if p.endswith("/leave")} | {("POST", "/logout")})
    not_covered = {(m, p) for m, p, _ in routes if m != "MOUNT"} - checked - set(TENANT_INDEPENDENT)
    assert not not_covered, f"routes neither checked nor allow-listed: {sorted(not_covered)}"
    assert _alpha_state(client) == before, "a request as another tenant changed alpha's data"
    # And alpha does see its own data (the markers are there to be found).
    own = client.get(
        f"/api/onboarding/communities/{alpha['community']}/members", headers={"NGSILD-Tenant": "alpha"}
    )
    assert alpha["members"][1]["ean"] in own.text
