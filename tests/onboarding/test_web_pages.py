"""The onboarding web pages without a browser: manager pages per tenant, the member's own page, leaving."""

from __future__ import annotations

import io
import json
import zipfile

from fastapi.testclient import TestClient
from sample_community import make_community

from bright.api.onboarding import registry_of
from bright.web.users import authenticate, create_user


def _login(client: TestClient, user: str, password: str) -> None:
    r = client.post(
        "/login", data={"username": user, "password": password, "next": "/"}, follow_redirects=False
    )
    assert r.status_code in (302, 303), r.text


def test_manager_pages_stay_in_the_managers_tenant(client: TestClient) -> None:
    mine = make_community(client, "north", slug="north", n_members=2)
    theirs = make_community(client, "south", slug="south", n_members=1, ean_base=50)
    registry_of(client.app).create("north", manager="north-mgr")
    create_user(client.app.state.twin.engine, "north-mgr", "north manager pw", "manager")  # type: ignore[attr-defined]
    assert client.get("/onboarding", follow_redirects=False).status_code == 303  # log in first
    _login(client, "north-mgr", "north manager pw")
    home = client.get("/onboarding")
    assert (
        home.status_code == 200
        and "north" in home.text
        and mine.id in home.text
        and theirs.id not in home.text
    )
    page = client.get(f"/onboarding/c/{mine.id}")
    assert page.status_code == 200 and mine.members[1]["ean"] in page.text
    assert client.get(f"/onboarding/c/{theirs.id}").status_code == 404
    assert client.get(f"/onboarding/c/{theirs.id}/dso-pack.csv").status_code == 404
    r = client.post(f"/onboarding/c/{mine.id}/invite", data={"email": "not-an-address"})
    assert r.status_code == 400 and "not valid" in r.text
    r = client.post(f"/onboarding/c/{mine.id}/invite", data={})
    assert r.status_code == 200 and "/onboarding/join?token=" in r.text
    bad = {f"key:{m['id']}": "10" for m in mine.members}
    r = client.post(f"/onboarding/c/{mine.id}/key", data=bad)
    assert r.status_code == 400 and "sums to 20" in r.text


def test_member_page_revoke_export_and_leave(client: TestClient) -> None:
    c = make_community(client, "north", slug="north", n_members=2)
    me = c.members[0]
    _login(client, "north-member0", "a long member password")
    page = client.get("/onboarding/me")
    assert page.status_code == 200 and 'data-testid="revoke-sharing"' in page.text
    r = client.post(
        "/onboarding/me/consents", data={"purpose": "sharing", "granted": "0"}, follow_redirects=True
    )
    assert r.status_code == 200 and 'data-testid="grant-sharing"' in r.text
    session = dict(client.cookies)
    client.cookies.clear()  # the manager's view of the pack (open node), not the member's session
    pack = client.get(f"/api/onboarding/communities/{c.id}/dso-pack", headers=c.headers).text
    client.cookies.update(session)
    assert me["ean"] not in pack and c.members[1]["ean"] in pack
    z = client.get("/onboarding/me/export.zip")
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        data = json.loads(zf.read("member.json"))
    assert data["memberId"] == me["id"] and {x["purpose"]: x["active"] for x in data["consents"]} == {
        "sharing": False,
        "sbright": True,
    }
    assert client.post("/onboarding/me/leave", data={}).status_code == 400  # needs the confirmation
    r = client.post("/onboarding/me/leave", data={"confirm": "leave"})
    assert r.status_code == 200 and 'data-testid="left"' in r.text
    engine = client.app.state.twin.engine  # type: ignore[attr-defined]
    assert authenticate(engine, "north-member0", "a long member password") is None
    client.cookies.clear()
    members = client.get(f"/api/onboarding/communities/{c.id}/members", headers=c.headers).json()
    assert [m["id"] for m in members] == [c.members[1]["id"]]
