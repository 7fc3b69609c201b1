"""Creating and running a community through the REST API, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import pytest
from fastapi.testclient import TestClient
from sample_community import SETUP, make_community, valid_ean

from bright.services.engagement import EngagementService, answers_table
from bright.services.onboarding import consent_id
from bright.social.questionnaire import QUESTIONNAIRE_V1
from bright.twin.vocabulary import bright_context

TENANT = "ixelles"


def test_create_community_records_card_tariffs_and_policies(client: TestClient) -> None:
    c = make_community(client, TENANT, n_members=0)
    r = client.get(f"/api/onboarding/communities/{c.id}", headers=c.headers)
    assert r.status_code == 200
    s = r.json()
    assert s["name"] == SETUP["name"]
    assert (s["legalForm"], s["perimeter"], s["localityName"]) == ("REC", "lv_cabin", SETUP["locality_name"])
    assert s["tariffs"] == {
        "supplier_eur_per_kwh": 0.30,
        "feed_in_eur_per_kwh": 0.05,
        "community_eur_per_kwh": 0.17,
    }
    assert s["dataPolicy"]["card"] == "open" and s["dataPolicy"]["memberData"] == "private"
    # The default choice is seeded as ODRL DataPolicy entities of the tenant by the policy layer.
    assert s["dataPolicy"]["policies"], "default policies were not seeded"
    pol = client.get(
        "/ngsi-ld/v1/entities", params={"type": "DataPolicy", "limit": 100}, headers=c.headers
    ).json()
    assert {p["id"] for p in pol} >= set(s["dataPolicy"]["policies"])
    # The community entity is readable by the energy API (tariffs as the settlement uses them).
    comm = client.get(f"/api/communities/{c.id}", headers=c.headers)
    assert comm.status_code in (200, 400)  # 400: no member yet is a clear error, not a crash
    # Same slug twice in the tenant: 409; in another tenant it is another community.
    again = client.post(
        "/api/onboarding/communities", headers=c.headers, json={**SETUP, "slug": "tournesols"}
    )
    assert again.status_code == 409
    other = client.post(
        "/api/onboarding/communities",
        headers={"NGSILD-Tenant": "other"},
        json={**SETUP, "slug": "tournesols"},
    )
    assert other.status_code == 201


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("legal_form", "SARL", "REC or CEC"),
        ("perimeter", "beyond", "perimeter"),
        ("community_price", 0.40, "between feed_in_price"),
        ("supplier_price", "abc", "not a number"),
        ("name", "x", "3 to 120"),
    ],
)
def test_bad_wizard_field_is_named(client: TestClient, field: str, value: object, needle: str) -> None:
    r = client.post(
        "/api/onboarding/communities", headers={"NGSILD-Tenant": TENANT}, json={**SETUP, field: value}
    )
    assert r.status_code == 400
    body = r.json()
    assert body["field"] == field and needle in body["detail"]


def test_invitations_are_signed_single_use_and_expire(client: TestClient) -> None:
    c = make_community(client, TENANT, n_members=0)
    inv = client.post(
        f"/api/onboarding/communities/{c.id}/invitations", headers=c.headers, json={"email": "ana@example.be"}
    ).json()
    assert inv["url"].endswith(inv["token"]) and "/onboarding/join?token=" in inv["url"]
    assert inv["url"] in inv["email"]["text"] and SETUP["name"] in inv["email"]["subject"]
    assert inv["sentTo"] is None  # no SMTP configured: the text is to be copied
    assert client.get(f"/api/onboarding/invitations/{inv['token']}").json()["name"] == SETUP["name"]
    payload, mac = inv["token"].rsplit(".", 1)
    forged = payload + "." + ("A" if mac[0] != "A" else "B") + mac[1:]
    r = client.post("/api/onboarding/join", json={"token": forged, "name": "Ana", "ean": valid_ean(1)})
    assert r.status_code == 400 and "signature" in r.json()["detail"]
    ok = client.post("/api/onboarding/join", json={"token": inv["token"], "name": "Ana", "ean": valid_ean(1)})
    assert ok.status_code == 201
    reuse = client.post(
        "/api/onboarding/join", json={"token": inv["token"], "name": "Bob", "ean": valid_ean(2)}
    )
    assert reuse.status_code == 400 and "already used" in reuse.json()["detail"]
    bad_days = client.post(
        f"/api/onboarding/communities/{c.id}/invitations", headers=c.headers, json={"days": 0}
    )
    assert bad_days.status_code == 400 and bad_days.json()["field"] == "days"


@pytest.mark.parametrize(
    "mac",
    ["%C3%A9", "A%E2%82%ACB", "%F0%9F%94%91" * 11, "%00"],
    ids=["e-acute", "euro-sign", "emoji", "nul"],
)
def test_invitation_with_a_non_ascii_signature_is_refused_not_a_500(client: TestClient, mac: str) -> None:
    """Regression (schemathesis): hmac.compare_digest raised TypeError on non-ASCII str -> HTTP 500."""
    c = make_community(client, TENANT, n_members=0)
    inv = client.post(f"/api/onboarding/communities/{c.id}/invitations", headers=c.headers, json={}).json()
    payload = inv["token"].rsplit(".", 1)[0]
    r = client.get(f"/api/onboarding/invitations/{payload}.{mac}")
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "token" and "signature" in r.json()["detail"]
    # The same through the join form, with a lone surrogate in the JSON body as well.
    for token in (f"{payload}.\\u00e9", f"\\ud800{payload}.x"):  # JSON escapes
        body = f'{{"token": "{token}", "name": "Ana", "ean": "{valid_ean(5)}"}}'.encode()
        r = client.post("/api/onboarding/join", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["field"] == "token", r.text
    # The genuine token still opens the invitation.
    assert client.get(f"/api/onboarding/invitations/{inv['token']}").json()["name"] == SETUP["name"]


def test_expired_invitation_is_refused(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    import bright.services.onboarding as onb

    c = make_community(client, TENANT, n_members=0)
    inv = client.post(
        f"/api/onboarding/communities/{c.id}/invitations", headers=c.headers, json={"days": 1}
    ).json()
    real_now = onb._now
    monkeypatch.setattr(onb, "_now", lambda: real_now() + timedelta(days=1, seconds=5))
    r = client.post("/api/onboarding/join", json={"token": inv["token"], "name": "Ana", "ean": valid_ean(3)})
    assert r.status_code == 400 and "expired" in r.json()["detail"]


def test_join_checks_ean_and_binds_meter_assets(client: TestClient) -> None:
    c = make_community(client, TENANT, n_members=1)
    inv = client.post(f"/api/onboarding/communities/{c.id}/invitations", headers=c.headers, json={}).json()
    bad = valid_ean(7)[:-1] + str((int(valid_ean(7)[-1]) + 1) % 10)
    r = client.post("/api/onboarding/join", json={"token": inv["token"], "name": "Ana", "ean": bad})
    assert r.status_code == 400 and r.json()["field"] == "ean" and "check digit" in r.json()["detail"]
    dup = client.post(
        "/api/onboarding/join", json={"token": inv["token"], "name": "Ana", "ean": c.members[0]["ean"]}
    )
    assert dup.status_code == 400 and "already bound" in dup.json()["detail"]
    # The failed attempts did not use the invitation.
    ok = client.post(
        "/api/onboarding/join",
        json={
            "token": inv["token"],
            "name": "Ana",
            "ean": valid_ean(7),
            "role": "producer",
            "locality": "building",
        },
    )
    assert ok.status_code == 201
    mid = ok.json()["memberId"]
    members = {
        m["id"]: m
        for m in client.get(f"/api/onboarding/communities/{c.id}/members", headers=c.headers).json()
    }
    assert members[mid]["ean"] == valid_ean(7) and members[mid]["locality"] == "building"
    assert members[mid]["role"] == "producer"
    # Meter binding: a new EAN on the same meter; assets.
    r = client.put(
        f"/api/onboarding/communities/{c.id}/members/{mid}/meter",
        headers=c.headers,
        json={"ean": valid_ean(8)},
    )
    assert r.status_code == 200 and r.json()["meterId"] == ok.json()["meterId"]
    meter = client.get(f"/ngsi-ld/v1/entities/{r.json()['meterId']}", headers={**c.headers, "Link": _link()},
                       params={"options": "keyValues"}).json()  # fmt: skip
    assert meter["accessPointId"] == valid_ean(8)
    r = client.post(
        f"/api/onboarding/communities/{c.id}/members/{mid}/assets",
        headers=c.headers,
        json=[{"type": "Battery", "capacity": 10}, {"type": "HeatPump", "power": 3}],
    )
    assert r.status_code == 201 and len(r.json()["assets"]) == 2
    bad_asset = client.post(f"/api/onboarding/communities/{c.id}/members/{mid}/assets", headers=c.headers,
                            json=[{"type": "Windmill"}])  # fmt: skip
    assert bad_asset.status_code == 400 and bad_asset.json()["field"] == "assets"
    # The energy API sees the community with its members and their access points.
    comm = client.get(f"/api/communities/{c.id}", headers=c.headers)
    assert comm.status_code == 200, comm.text
    assert valid_ean(8) in comm.text


def _link() -> str:
    from bright.twin.context import BRIGHT_CONTEXT_URL

    return f'<{BRIGHT_CONTEXT_URL}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


def test_consents_are_entities_with_dates_and_revocation(client: TestClient) -> None:
    c = make_community(client, TENANT, n_members=2)
    m = c.members[0]["id"]
    consents = {
        x["purpose"]: x
        for x in client.get(
            f"/api/onboarding/communities/{c.id}/members/{m}/consents", headers=c.headers
        ).json()
    }
    assert set(consents) == {"sharing", "sbright"} and all(x["active"] for x in consents.values())
    # The Consent entity has the shape the policy engine reads.
    cid = consent_id(m, "sharing")
    assert cid == f"urn:ngsi-ld:Consent:{m.rsplit(':', 1)[-1]}:sharing"
    doc = client.get(f"/ngsi-ld/v1/entities/{cid}", headers=c.headers).json()
    assert doc["type"] == "Consent"
    assert doc["member"] == {"type": "Relationship", "object": m}
    assert doc["community"]["object"] == c.id and doc["purpose"]["value"] == "sharing"
    assert doc["grantedAt"]["value"]["@type"] == "DateTime"
    # An offer purpose, then revocation keeps grantedAt and adds revokedAt.
    r = client.put(f"/api/onboarding/communities/{c.id}/members/{m}/consents/offer:flex-2026", headers=c.headers,
                   json={"granted": True})  # fmt: skip
    assert (
        r.status_code == 200
        and r.json()["id"] == f"urn:ngsi-ld:Consent:{m.rsplit(':', 1)[-1]}:offer-flex-2026"
    )
    r = client.put(
        f"/api/onboarding/communities/{c.id}/members/{m}/consents/sharing",
        headers=c.headers,
        json={"granted": False},
    )
    assert r.status_code == 200
    body = r.json()
    assert body["active"] is False and body["revokedAt"] >= body["grantedAt"]
    doc = client.get(f"/ngsi-ld/v1/entities/{cid}", headers=c.headers).json()
    assert "revokedAt" in doc and "grantedAt" in doc
    # Granting again drops revokedAt.
    client.put(
        f"/api/onboarding/communities/{c.id}/members/{m}/consents/sharing",
        headers=c.headers,
        json={"granted": True},
    )
    assert "revokedAt" not in client.get(f"/ngsi-ld/v1/entities/{cid}", headers=c.headers).json()
    # Unknown purpose, revoking what was never granted, non-boolean body.
    r = client.put(
        f"/api/onboarding/communities/{c.id}/members/{m}/consents/marketing",
        headers=c.headers,
        json={"granted": True},
    )
    assert r.status_code == 400 and r.json()["field"] == "purpose"
    r = client.put(
        f"/api/onboarding/communities/{c.id}/members/{m}/consents/network",
        headers=c.headers,
        json={"granted": False},
    )
    assert r.status_code == 400 and "never consented" in r.json()["detail"]
    r = client.put(
        f"/api/onboarding/communities/{c.id}/members/{m}/consents/network",
        headers=c.headers,
        json={"granted": "yes"},
    )
    assert r.status_code == 400 and r.json()["field"] == "granted"


def test_revoking_sbright_erases_the_answers(client: TestClient) -> None:
    c = make_community(client, TENANT, n_members=2)
    m = c.members[1]["id"]
    twin = client.app.state.twin  # type: ignore[attr-defined]
    svc = EngagementService(twin)
    answers = {it.id: it.scale.values[len(it.scale.values) // 2] for it in QUESTIONNAIRE_V1.items}
    svc.submit_answers(
        m, answers, consent={"given": True, "date": "2026-01-05T10:00:00Z"}, tenant=TENANT, refresh=False
    )
    link = client.get(
        f"/api/onboarding/communities/{c.id}/members/{m}/questionnaire", headers=c.headers
    ).json()
    assert link == {"url": f"/api/members/{m}/questionnaire", "sbrightConsent": True}

    def stored() -> int:
        from sqlalchemy import func, select

        with twin.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(answers_table).where(answers_table.c.member_id == m)
                ).scalar_one()
            )

    assert stored() == 1
    r = client.put(
        f"/api/onboarding/communities/{c.id}/members/{m}/consents/sbright",
        headers=c.headers,
        json={"granted": False},
    )
    assert r.status_code == 200
    assert stored() == 0
    link = client.get(
        f"/api/onboarding/communities/{c.id}/members/{m}/questionnaire", headers=c.headers
    ).json()
    assert link["sbrightConsent"] is False


def test_sharing_key_and_dso_pack_follow_consents(client: TestClient) -> None:
    c = make_community(client, TENANT, n_members=3)
    ids = [m["id"] for m in c.members]
    bad = client.put(
        f"/api/onboarding/communities/{c.id}/sharing-key",
        headers=c.headers,
        json={"key": {ids[0]: 50, ids[1]: 30}},
    )
    assert bad.status_code == 400 and "sums to 80" in bad.json()["detail"]
    stranger = client.put(f"/api/onboarding/communities/{c.id}/sharing-key", headers=c.headers,
                          json={"key": {ids[0]: 50, ids[1]: 30, "urn:ngsi-ld:EnergyProsumer:x:y": 20}})  # fmt: skip
    assert stranger.status_code == 400 and "not a member" in stranger.json()["detail"]
    ok = client.put(f"/api/onboarding/communities/{c.id}/sharing-key", headers=c.headers,
                    json={"key": {ids[0]: 50, ids[1]: 30, ids[2]: 20}, "method": "fixed"})  # fmt: skip
    assert ok.status_code == 200
    # The energy API reads the same key.
    comm = client.get(f"/api/communities/{c.id}", headers=c.headers).json()
    assert comm["sharing_method"] == "fixed"

    def pack() -> list[dict[str, str]]:
        r = client.get(f"/api/onboarding/communities/{c.id}/dso-pack", headers=c.headers)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        return list(csv.DictReader(io.StringIO(r.text)))

    rows = pack()
    assert list(rows[0]) == ["community_id", "community_name", "legal_form", "perimeter", "locality_name", "ean",
                             "locality", "role", "key_percent", "sharing_method", "consent_granted_at"]  # fmt: skip
    assert sorted(r["ean"] for r in rows) == sorted(m["ean"] for m in c.members)
    assert {r["ean"]: float(r["key_percent"]) for r in rows} == {
        c.members[0]["ean"]: 50.0, c.members[1]["ean"]: 30.0, c.members[2]["ean"]: 20.0}  # fmt: skip
    assert all(r["locality_name"] == SETUP["locality_name"] and r["perimeter"] == "lv_cabin" for r in rows)
    # Revoking the sharing consent takes the member out of the declaration; keys renormalised.
    client.put(
        f"/api/onboarding/communities/{c.id}/members/{ids[1]}/consents/sharing",
        headers=c.headers,
        json={"granted": False},
    )
    rows = pack()
    assert c.members[1]["ean"] not in {r["ean"] for r in rows}
    assert {r["ean"]: float(r["key_percent"]) for r in rows} == pytest.approx(
        {c.members[0]["ean"]: 100 * 50 / 70, c.members[2]["ean"]: 100 * 20 / 70}, abs=1e-3)  # fmt: skip
    statutes = client.get(
        f"/api/onboarding/communities/{c.id}/statutes", params={"format": "json"}, headers=c.headers
    ).json()
    done = {i["key"]: i["done"] for i in statutes["items"]}
    assert done["members"] is True and done["sharing_key"] is True and done["legal_form"] is True
    md = client.get(f"/api/onboarding/communities/{c.id}/statutes", headers=c.headers).text
    assert md.startswith("# Statutes checklist: ") and "- [x] **Legal form chosen: REC" in md
    assert (
        client.get(
            f"/api/onboarding/communities/{c.id}/statutes", params={"format": "html"}, headers=c.headers
        ).status_code
        == 200
    )


def test_export_holds_entities_series_consents_and_statements(client: TestClient) -> None:
    import numpy as np
    import pandas as pd

    from bright.twin.series import SeriesStore

    c = make_community(client, TENANT, n_members=2)
    twin = client.app.state.twin  # type: ignore[attr-defined]
    store = SeriesStore(twin.engine)
    idx = pd.date_range("2026-03-01", periods=96 * 3, freq="15min", tz="UTC")
    rng = np.random.default_rng(1)
    ctx = bright_context()
    for m in c.members:
        store.write(pd.DataFrame({m["meter"]: rng.uniform(0.05, 0.4, len(idx))}, index=idx), tenant=TENANT,
                    attribute=ctx.expand("offtake"), unit_code="KWH")  # fmt: skip
        store.write(pd.DataFrame({m["meter"]: rng.uniform(0.0, 0.3, len(idx))}, index=idx), tenant=TENANT,
                    attribute=ctx.expand("injection"), unit_code="KWH")  # fmt: skip
    m = c.members[0]
    r = client.get(f"/api/onboarding/communities/{c.id}/members/{m['id']}/export", headers=c.headers)
    assert r.status_code == 200
    data = r.json()
    ids = {e["id"] for e in data["entities"]}
    assert m["id"] in ids and m["meter"] in ids and consent_id(m["id"], "sharing") in ids
    assert any(e.get("accessPointId") == m["ean"] for e in data["entities"])
    offtake = [s for s in data["series"] if s["entity"] == m["meter"] and s["attribute"] == "offtake"]
    assert len(offtake) == 1 and len(offtake[0]["values"]) == len(idx)
    assert {x["purpose"] for x in data["consents"]} == {"sharing", "sbright"}
    assert data["statements"], "the member's monthly statement is part of the export"
    assert all(s["member_id"] == m["id"] for s in data["statements"])
    # Nothing of the other member.
    assert c.members[1]["meter"] not in json.dumps(data)
    z = client.get(
        f"/api/onboarding/communities/{c.id}/members/{m['id']}/export",
        params={"format": "zip"},
        headers=c.headers,
    )
    assert z.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        names = zf.namelist()
        assert "member.json" in names and sum(n.startswith("series/") for n in names) == 2
        assert json.loads(zf.read("member.json"))["memberId"] == m["id"]


def test_ean_endpoint(client: TestClient) -> None:
    assert client.get(f"/api/onboarding/ean/{valid_ean(42)}").json() == {"ean": valid_ean(42), "valid": True}
    r = client.get("/api/onboarding/ean/12345")
    assert r.status_code == 400 and "5 digits" in r.json()["detail"]


def test_with_access_control_only_the_invitation_opens_writes(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under BRIGHT_AUTH=required: anonymous callers cannot create communities, but can join by token."""
    from bright.api.app import create_app
    from bright.config import Settings
    from bright.web.users import create_token

    monkeypatch.setenv("BRIGHT_AUTH", "required")
    app = create_app(Settings.from_env(database_url=db_url))
    with TestClient(app) as anon:
        r = anon.post("/api/onboarding/communities", headers={"NGSILD-Tenant": TENANT}, json=SETUP)
        assert r.status_code == 401
        _, secret = create_token(app.state.twin.engine, "founder", "manager")
        manager = {"NGSILD-Tenant": TENANT, "Authorization": f"Bearer {secret}"}
        r = anon.post("/api/onboarding/communities", headers=manager, json=SETUP)
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        token = anon.post(f"/api/onboarding/communities/{cid}/invitations", headers=manager, json={}).json()[
            "token"
        ]
        r = anon.post("/api/onboarding/join", json={"token": token, "name": "Ana", "ean": valid_ean(11)})
        assert r.status_code == 201, r.text
        # Without the token the same anonymous write is refused by the token check, not let through.
        r = anon.post("/api/onboarding/join", json={"name": "Eve", "ean": valid_ean(12)})
        assert r.status_code == 400 and r.json()["field"] == "token"
        mid = anon.get(f"/api/onboarding/communities/{cid}/members", headers=manager).json()[0]["id"]
        r = anon.put(f"/api/onboarding/communities/{cid}/members/{mid}/consents/sharing", json={"granted": True},
                     headers={"NGSILD-Tenant": TENANT})  # fmt: skip
        assert r.status_code == 401
    app.state.twin.engine.dispose()


class _SmtpCapture:
    """A minimal SMTP server on a free port (one thread) keeping the messages it receives."""

    def __init__(self) -> None:
        import socket
        import threading

        self.messages: list[tuple[str, str]] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        f = conn.makefile("rwb")

        def say(line: str) -> None:
            f.write((line + "\r\n").encode())
            f.flush()

        say("220 test")
        rcpt = ""
        while True:
            line = f.readline().decode().strip()
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                say("250 test")
            elif verb == "MAIL":
                say("250 ok")
            elif verb == "RCPT":
                rcpt = line.split(":", 1)[1].strip("<> ")
                say("250 ok")
            elif verb == "DATA":
                say("354 go")
                lines = []
                while (data := f.readline().decode()) not in (".\r\n", ""):
                    lines.append(data)
                self.messages.append((rcpt, "".join(lines)))
                say("250 queued")
            elif verb == "QUIT" or not line:
                say("221 bye")
                break
            else:
                say("250 ok")
        conn.close()
        self.sock.close()


def test_invitation_is_sent_when_smtp_is_configured(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bright.services.onboarding as onb

    smtp = _SmtpCapture()
    c = make_community(client, TENANT, n_members=0)
    svc = client.app.state.onboarding  # type: ignore[attr-defined]
    monkeypatch.setattr(svc, "smtp", onb.SmtpSettings(f"smtp://127.0.0.1:{smtp.port}", "bright@node.example"))
    r = client.post(
        f"/api/onboarding/communities/{c.id}/invitations",
        headers=c.headers,
        json={"email": "ana@example.be", "lang": "fr"},
    )
    assert r.status_code == 201
    inv = r.json()
    assert inv["sentTo"] == "ana@example.be"
    smtp.thread.join(timeout=10)
    assert len(smtp.messages) == 1
    to, message = smtp.messages[0]
    assert to == "ana@example.be"
    assert inv["token"] in message.replace("=\r\n", "") and "From: bright@node.example" in message
    assert "Subject: =?utf-8?" in message or "Invitation" in message


def test_joining_cannot_take_over_an_existing_account(client: TestClient) -> None:
    from bright.web.users import authenticate, create_user

    engine = client.app.state.twin.engine  # type: ignore[attr-defined]
    create_user(engine, "founder", "the manager's password", "manager")
    c = make_community(client, TENANT, n_members=0)
    token = client.post(f"/api/onboarding/communities/{c.id}/invitations", headers=c.headers, json={}).json()[
        "token"
    ]
    form = {"token": token, "name": "Mallory", "ean": valid_ean(66), "username": "founder", "password": "takeover-1",
            "consents": {"sharing": True}, "assets": [{"type": "Battery", "capacity": 5}]}  # fmt: skip
    r = client.post("/api/onboarding/join", json=form)
    assert r.status_code == 400 and r.json()["field"] == "username" and "taken" in r.json()["detail"]
    user = authenticate(engine, "founder", "the manager's password")
    assert user is not None and user.role == "manager"
    # Nothing half-registered was left behind, and the invitation is still usable.
    assert client.get(f"/api/onboarding/communities/{c.id}/members", headers=c.headers).json() == []
    r = client.post("/api/onboarding/join", json={**form, "username": "mallory"})
    assert r.status_code == 201, r.text
