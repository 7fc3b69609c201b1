"""The manager's administration pages: data policies, consents, audit log, hosting (TestClient).

What a page shows is compared with the REST API's answer (asked with the manager's session); the
policy form's messages are compared with those of ``POST /api/policies`` for the same body; the
roles (public visitor, member, hosted tenant's manager) are checked on every page.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from bright.api.app import create_app
from bright.config import Settings
from bright.network.policy import AuditEntry
from bright.web import app as web
from bright.web.admin_pages import PAGE_SIZE, parse_audit_filters
from bright.web.users import add_demo_users, create_user

CID = "urn:ngsi-ld:EnergyCommunity:school-371"
ME = "urn:ngsi-ld:EnergyProsumer:school-371:home01"
OTHER = "urn:ngsi-ld:EnergyProsumer:school-371:home02"
ODRL = "http://www.w3.org/ns/odrl.jsonld"
AGG = "https://w3id.org/bright/assets#aggregates"
ADMIN_PAGES = ("/admin/policies", "/admin/consents", "/admin/audit", "/admin/hosting")


@pytest.fixture(scope="module")
def app(demo_url: str) -> object:
    application = create_app(Settings(database_url=demo_url))
    web.install(application)
    add_demo_users(application.state.twin.engine, CID, ME)
    return application


@pytest.fixture(scope="module")
def client(app: object) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:  # type: ignore[arg-type]
        yield c


def as_user(client: TestClient, user: str | None, password: str | None = None) -> TestClient:
    client.cookies.clear()
    if user is not None:
        r = client.post(
            "/login", data={"username": user, "password": password or f"{user}-demo"}, follow_redirects=False
        )
        assert r.status_code == 303, r.text
    return client


def errors_of(page: str) -> dict[str, str]:
    """Field id -> the message shown next to it."""
    return {
        k: html.unescape(v)
        for k, v in re.findall(r'class="error-msg" id="([a-z_]+)-error"[^>]*>([^<]*)<', page)
    }


def policy(action: str = "read", uid: str = "urn:ngsi-ld:DataPolicy:web-test") -> dict:
    return {
        "@context": ODRL,
        "@type": "Set",
        "uid": uid,
        "permission": [
            {
                "target": AGG,
                "assignee": "https://w3id.org/bright/parties#researcher",
                "action": action,
                "constraint": [{"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"}],
            }
        ],
    }


# --- roles ---------------------------------------------------------------------------------------


def test_admin_pages_are_for_managers_only(client: TestClient) -> None:
    as_user(client, None)
    for path in ADMIN_PAGES:
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
    as_user(client, "member")
    for path in ADMIN_PAGES:
        r = client.get(path)
        assert r.status_code == 403, path
        assert 'data-testid="error"' in r.text and "Traceback" not in r.text
    r = client.post("/admin/policies/new", data={"odrl": json.dumps(policy())})
    assert r.status_code == 403
    as_user(client, "manager")
    for path in ADMIN_PAGES:
        assert client.get(path).status_code == 200, path
    assert 'href="/admin/policies"' in client.get("/").text  # the manager's menu


# --- policies ------------------------------------------------------------------------------------


def test_policy_list_is_the_apis(client: TestClient) -> None:
    as_user(client, "manager")
    api = client.get("/api/policies").json()
    page = client.get("/admin/policies").text
    shown = re.findall(r'<tr data-policy="([^"]+)"', page)
    assert shown == [p["id"] for p in api]
    stored = dict(re.findall(r'<tr data-policy="([^"]+)">.*?data-stored="(true|false)"', page, re.S))
    assert stored == {p["id"]: str(p["stored"]).lower() for p in api}


def test_a_policy_is_shown_in_words(client: TestClient) -> None:
    as_user(client, "manager")
    pid = "urn:ngsi-ld:DataPolicy:school-371-network"
    doc = client.get(f"/api/policies/{pid}").json()
    page = client.get("/admin/policy", params={"id": pid}).text
    rule = re.search(r'data-testid="rule" data-kind="permission">(.*?)</li>', page, re.S)
    assert rule, page
    words = " ".join(html.unescape(rule.group(1)).split())
    k = doc["odrl"]["permission"][0]["constraint"][0]["rightOperand"]
    assert f"the number of members is at least {k}" in words
    assert "aggregates, community data" in words and "read, use, distribute" in words
    assert "role peer" in words
    fr = client.get("/admin/policy", params={"id": pid, "lang": "fr"}).text
    assert f"le nombre de membres est au moins {k}" in html.unescape(fr)
    client.cookies.delete("lang")
    assert client.get("/admin/policy", params={"id": "urn:ngsi-ld:DataPolicy:nope"}).status_code == 404


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"odrl": json.dumps(policy("fly"))}, "odrl"),
        ({"odrl": json.dumps({**policy(), "@context": "https://example.org"})}, "odrl"),
        ({"odrl": json.dumps(policy()), "community": "school-371"}, "community"),
        ({"odrl": json.dumps(policy()), "id": "urn:ngsi-ld:Building:x"}, "id"),
    ],
)
def test_the_policy_form_shows_the_apis_message_next_to_the_field(
    client: TestClient, form: dict[str, str], field: str
) -> None:
    as_user(client, "manager")
    body: dict = {"odrl": json.loads(form["odrl"])}
    if form.get("community"):
        body["community"] = form["community"]
    if form.get("id"):
        body["id"] = form["id"]
    api = client.post("/api/policies", json=body)
    assert api.status_code == 400
    r = client.post("/admin/policies/new", data={"community": "", "id": "", **form})
    assert r.status_code == 400
    assert errors_of(r.text) == {field: api.json()["detail"]}


def test_bad_json_is_named_next_to_the_policy(client: TestClient) -> None:
    as_user(client, "manager")
    r = client.post("/admin/policies/new", data={"odrl": '{"@type": "Set",', "community": "", "id": ""})
    assert r.status_code == 400
    msg = errors_of(r.text)["odrl"]
    assert msg.startswith("JSON: ") and "line 1" in msg
    assert '{"@type": "Set",' in html.unescape(r.text)  # the text typed is kept


def test_create_edit_and_remove_a_policy(client: TestClient) -> None:
    as_user(client, "manager")
    uid = "urn:ngsi-ld:DataPolicy:web-roundtrip"
    r = client.post(
        "/admin/policies/new", data={"odrl": json.dumps(policy(uid=uid)), "community": CID, "id": ""},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303, r.text
    stored = client.get(f"/api/policies/{uid}").json()
    assert stored["stored"] is True and stored["community"] == CID
    assert stored["odrl"]["permission"][0]["action"] == "read"
    again = client.post("/admin/policies/new", data={"odrl": json.dumps(policy(uid=uid)), "id": ""})
    assert again.status_code == 409 and "id" in errors_of(again.text)
    edit = client.post(
        "/admin/policy/edit", params={"id": uid},
        data={"odrl": json.dumps(policy("distribute", uid=uid)), "community": CID}, follow_redirects=False,
    )  # fmt: skip
    assert edit.status_code == 303
    assert client.get(f"/api/policies/{uid}").json()["odrl"]["permission"][0]["action"] == "distribute"
    bad = client.post(
        "/admin/policy/edit", params={"id": uid}, data={"odrl": json.dumps(policy("x", uid=uid))}
    )
    assert bad.status_code == 400 and "action[0]" in errors_of(bad.text)["odrl"]
    gone = client.post("/admin/policy/delete", params={"id": uid}, follow_redirects=False)
    assert gone.status_code == 303
    assert client.get(f"/api/policies/{uid}").status_code == 404
    assert uid not in client.get("/admin/policies").text


# --- consents ------------------------------------------------------------------------------------


def test_consents_per_member_with_their_dates(app: object, client: TestClient) -> None:
    from bright.api.onboarding import onboarding_of

    class _Req:  # onboarding_of reads request.app, and request.base_url when it builds the service
        def __init__(self, a: object) -> None:
            self.app = a
            self.base_url = "http://testserver/"

    svc = onboarding_of(_Req(app))  # type: ignore[arg-type]
    svc.set_consent(CID, ME, "sharing", True)
    svc.set_consent(CID, OTHER, "sbright", True)
    svc.set_consent(CID, OTHER, "sbright", False)
    as_user(client, "manager")
    page = client.get("/admin/consents").text
    for member in (ME, OTHER):
        api = client.get(f"/api/onboarding/communities/{CID}/members/{member}/consents").json()
        assert api
        for c in api:
            row = re.search(
                rf'<tr data-member="{re.escape(member)}" data-purpose="{re.escape(c["purpose"])}">(.*?)</tr>',
                page, re.S,
            )  # fmt: skip
            assert row, (member, c)
            assert str(c["grantedAt"]) in row.group(1)
            if c["revokedAt"]:
                assert str(c["revokedAt"]) in row.group(1)
            assert f'data-active="{str(c["active"]).lower()}"' in row.group(1)
    assert re.search(rf'data-member="{re.escape(OTHER)}" data-purpose="sbright">.*?withdrawn', page, re.S)


# --- audit log -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def audit_rows(app: object) -> list[AuditEntry]:
    """70 entries over 70 minutes: peers node-a / node-b, decisions in turn, one other tenant's."""
    log = app.state.access.audit  # type: ignore[attr-defined]
    t0 = datetime(2031, 5, 1, 8, 0, tzinfo=UTC)
    decisions = ("allowed", "denied", "filtered", "allowed", "unauthenticated")
    rows = []
    for i in range(70):
        e = AuditEntry(
            at=t0 + timedelta(minutes=i), tenant="", role="peer", subject=f"node-{'ab'[i % 2]}", kind="node",
            method="GET", path=f"/ngsi-ld/v1/entities?n={i}", status=200, decision=decisions[i % 5],
            policy_uid=None, reason=None,
        )  # fmt: skip
        log.record(e)
        rows.append(e)
    log.record(AuditEntry(t0, "elsewhere", "peer", "node-a", "node", "GET", "/x", 200, "allowed", None, None))
    return rows


def shown_paths(page: str) -> list[str]:
    return re.findall(r'data-testid="audit-row"[^>]*>.*?<code>GET ([^<]+)</code>', page, re.S)


def test_audit_pages_equal_the_api(client: TestClient, audit_rows: list[AuditEntry]) -> None:
    as_user(client, "manager")
    api = client.get("/api/audit", params={"limit": 1000}).json()
    p1 = client.get("/admin/audit").text
    p2 = client.get("/admin/audit", params={"page": 2}).text
    assert shown_paths(p1) == [e["path"] for e in api[:PAGE_SIZE]]
    assert shown_paths(p2) == [e["path"] for e in api[PAGE_SIZE : 2 * PAGE_SIZE]]
    assert 'data-testid="next"' in p1 and 'data-testid="prev"' in p2
    assert "/x" not in shown_paths(p1) + shown_paths(p2)  # another tenant's row


@pytest.mark.parametrize(
    "query",
    [
        {"decision": "denied"},
        {"peer": "node-b"},
        {"since": "2031-05-01T08:10:00Z", "until": "2031-05-01T08:30:00"},
        {"peer": "node-a", "decision": "allowed", "since": "2031-05-01T08:20:00+00:00"},
    ],
)
def test_audit_filters_equal_the_api(
    client: TestClient, audit_rows: list[AuditEntry], query: dict[str, str]
) -> None:
    as_user(client, "manager")
    api = client.get("/api/audit", params={**query, "limit": PAGE_SIZE}).json()
    page = client.get("/admin/audit", params=query).text
    assert shown_paths(page) == [e["path"] for e in api]
    assert api, query
    for e in api:
        assert (query.get("decision") or e["decision"]) == e["decision"]


def test_audit_form_rejects_bad_input_next_to_the_field(client: TestClient) -> None:
    as_user(client, "manager")
    r = client.get("/admin/audit", params={"since": "yesterday", "decision": "maybe", "page": "0"})
    assert r.status_code == 400
    errs = errors_of(r.text)
    assert set(errs) == {"since", "decision", "page"}
    assert "allowed, filtered, denied, unauthenticated" in errs["decision"]
    r = client.get("/admin/audit", params={"since": "2031-05-02T00:00:00Z", "until": "2031-05-01"})
    assert errors_of(r.text) == {"until": "The end must come after the start."}


def test_parse_audit_filters_accepts_what_the_api_accepts() -> None:
    out, errors = parse_audit_filters({"since": "2031-05-01T08:00", "decision": "filtered", "page": "3"})
    assert errors == {}
    assert out["since"] == datetime(2031, 5, 1, 8, 0, tzinfo=UTC)
    assert out["decision"] == "filtered" and out["page"] == 3


# --- hosting -------------------------------------------------------------------------------------


def test_hosting_lists_tenants_with_quotas_and_usage(app: object, client: TestClient) -> None:
    from bright.api.onboarding import registry_of

    registry = registry_of(app)
    engine = app.state.twin.engine  # type: ignore[attr-defined]
    create_user(engine, "coop-manager", "coop-pass-1", "manager")
    registry.create("coop-a", title="Coop A", community_id="urn:ngsi-ld:EnergyCommunity:coop-a",
                    manager="coop-manager", max_entities=40, max_series_points=5000)  # fmt: skip
    registry.create("coop-b", title="Coop B", max_entities=10)
    as_user(client, "manager")
    for i in range(3):
        r = client.post(
            "/ngsi-ld/v1/entities",
            json={"id": f"urn:ngsi-ld:Building:coop-a-{i}", "type": "Building"},
            headers={"NGSILD-Tenant": "coop-a", "content-type": "application/json"},
        )
        assert r.status_code == 201, r.text
    page = client.get("/admin/hosting").text
    for hosted in registry.list():
        usage = registry.usage(hosted.name)
        row = re.search(rf'<tr data-tenant="{hosted.name}">(.*?)</tr>', page, re.S)
        assert row, hosted.name
        assert f'data-used="{usage.entities}" data-quota="{hosted.max_entities}"' in row.group(1)
        assert f'data-used="{usage.series_points}" data-quota="{hosted.max_series_points}"' in row.group(1)
    assert registry.usage("coop-a").entities == 3
    assert "7.5 %" in page  # 3 of 40 entities
    link = quote("/onboarding/c/urn:ngsi-ld:EnergyCommunity:coop-a", safe="/")
    assert f'href="/login?next={link}"' in page
    # the hosted tenant's manager is a manager, but not the node's administrator
    as_user(client, "coop-manager", "coop-pass-1")
    r = client.get("/admin/hosting")
    assert r.status_code == 403 and "administrator" in r.text
    assert client.get("/admin/policies").status_code == 200
