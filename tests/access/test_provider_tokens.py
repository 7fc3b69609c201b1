"""API tokens issued for a service provider: the principal's subject is the provider id, so the
Agreements of the provider's offers (assignee = provider id) apply to the token on the NGSI-LD API."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from tests.offers.home import small_home
from typer.testing import CliRunner

from bright.api import offers as offers_api
from bright.api.app import create_app
from bright.cli import app as cli_app
from bright.config import Settings
from bright.services.demo import DemoCommunity, build_demo_community, meter_series
from bright.services.offers import OfferService, seed_demo_offers
from bright.twin.context import BRIGHT_CONTEXT_URL
from bright.twin.series import SeriesStore
from bright.twin.vocabulary import bright_context
from bright.web.users import create_token

NGSI = "/ngsi-ld/v1"
LINK = {
    "Link": f'<{BRIGHT_CONTEXT_URL}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
}
CARE = "urn:ngsi-ld:Organization:care-at-home"
SAFE = "urn:ngsi-ld:Organization:safe-home"


@functools.lru_cache(maxsize=1)
def _demo() -> tuple[DemoCommunity, dict[str, pd.DataFrame]]:
    community = build_demo_community()
    frames = meter_series(community)
    return community, {k: frames[k].loc["2016-03-01":"2016-03-02"] for k in ("offtake", "injection")}


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
    offers_api.install(app, service=OfferService(twin, home_of=lambda c, m, t: small_home(2)))
    with TestClient(app) as c:
        yield c
    twin.engine.dispose()


def _bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def _subscribed(client: TestClient) -> tuple[str, str, dict[str, str]]:
    """The demo's 4th household subscribes to the activity-monitoring offer; (member, meter, manager)."""
    community, _ = _demo()
    cid = f"urn:ngsi-ld:EnergyCommunity:{community.key}"
    member = f"urn:ngsi-ld:EnergyProsumer:{community.key}:{community.members[3].key}"
    engine = client.app.state.twin.engine  # type: ignore[attr-defined]
    svc: OfferService = client.app.state.offers  # type: ignore[attr-defined]
    seed_demo_offers(svc, cid)
    _, mine = create_token(engine, "m3", "member", member_id=member)
    _, root = create_token(engine, "root", "manager")
    offer = "urn:ngsi-ld:ServiceOffer:aal-activity"
    r = client.post(
        f"/api/communities/{cid}/members/{member}/offers/{offer}/subscription", headers=_bearer(mine)
    )
    assert r.status_code == 201, r.text
    subs = client.get(f"/api/communities/{cid}/members/{member}/offers", headers=_bearer(mine)).json()
    grant = next(
        g
        for s in subs["subscriptions"]
        if s["offer"] == offer
        for g in s["grants"]
        if g["stream"] == "offtake"
    )
    meter, attr = grant["target"].split("#")
    assert attr == "offtake"
    return member, meter, _bearer(root)


def _token(client: TestClient, manager: dict[str, str], **body: Any) -> dict[str, Any]:
    r = client.post("/api/tokens", json=body, headers=manager)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_provider_token_reads_exactly_its_granted_streams(client: TestClient) -> None:
    member, meter, manager = _subscribed(client)
    care = _token(client, manager, name="care-api", role="energy_company", subject=CARE)
    assert care["subject"] == CARE
    care_h = _bearer(care["token"])
    window = {"timerel": "between", "timeAt": "2016-03-01T00:00:00Z", "endTimeAt": "2016-03-01T02:00:00Z",
              "options": "temporalValues"}  # fmt: skip
    manager_view = client.get(f"{NGSI}/temporal/entities/{meter}", params=window, headers={**manager, **LINK})
    assert {"offtake", "injection"} <= set(manager_view.json())
    # The granted stream: the subscriber's meter offtake series, and nothing else of it.
    r = client.get(f"{NGSI}/temporal/entities/{meter}", params=window, headers={**care_h, **LINK})
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"id", "type", "offtake"} and len(r.json()["offtake"]["values"]) == 8
    assert r.json()["offtake"] == manager_view.json()["offtake"]
    # In a list: that meter only (no other member's), again with offtake only.
    r = client.get(
        f"{NGSI}/temporal/entities", params={**window, "type": "Meter"}, headers={**care_h, **LINK}
    )
    assert r.status_code == 200, r.text
    assert [e["id"] for e in r.json()] == [meter] and set(r.json()[0]) == {"id", "type", "offtake"}
    assert int(r.headers["BRIGHT-Policy-Filtered"]) > 0
    # The meter entity itself: no attribute is granted (not its EAN), the subscriber entity is.
    r = client.get(f"{NGSI}/entities/{meter}", params={"options": "keyValues"}, headers={**care_h, **LINK})
    assert r.status_code == 200 and set(r.json()) <= {"id", "type", "@context"}
    assert client.get(f"{NGSI}/entities/{member}", headers=care_h).status_code == 200
    # Nothing of another member.
    community, _ = _demo()
    other_meter = meter.replace(community.members[3].key, community.members[4].key)
    assert other_meter != meter
    for url in (f"{NGSI}/entities/{other_meter}", f"{NGSI}/temporal/entities/{other_meter}"):
        r = client.get(url, params=window if "temporal" in url else {}, headers={**care_h, **LINK})
        assert r.status_code == 403 and r.json()["type"].endswith("/Forbidden"), r.text
    # The provider routes accept the token too (their own check: the subject is the provider).
    r = client.get(f"/api/providers/{CARE}/subscribers", headers=care_h)
    assert r.status_code == 200 and [s["member"] for s in r.json()["subscriptions"]] == [member]

    # The same role without the subject (token:<name>) or as another provider gets none of it.
    plain = _token(client, manager, name=CARE, role="energy_company")
    safe = _token(client, manager, name="safe-api", role="energy_company", subject=SAFE)
    for other in (plain, safe):
        h = {**_bearer(other["token"]), **LINK}
        assert client.get(f"{NGSI}/temporal/entities/{meter}", params=window, headers=h).status_code == 403
        r = client.get(f"{NGSI}/temporal/entities", params={**window, "type": "Meter"}, headers=h)
        assert r.status_code == 200 and r.json() == []
    listed = {t["name"]: t["subject"] for t in client.get("/api/tokens", headers=manager).json()}
    assert listed["care-api"] == CARE and listed[CARE] is None


def test_token_subject_is_validated_and_manager_only(client: TestClient) -> None:
    _, _, manager = _subscribed(client)
    for subject, role, why in (
        ("care-at-home", "energy_company", "urn:ngsi-ld:<Type>:<id>"),
        ("urn:ngsi-ld:EnergyProsumer:x:m1", "energy_company", "EnergyProsumer"),
        (CARE, "manager", "cannot act as"),
        (CARE, "member", "cannot act as"),
        ("urn:ngsi-ld:Organization:a b", "energy_company", "white space"),
        (42, "energy_company", "not a string"),
    ):
        r = client.post("/api/tokens", json={"name": "x", "role": role, "subject": subject}, headers=manager)
        assert r.status_code == 400 and why in r.json()["detail"], (subject, role, r.text)
    care = _token(client, manager, name="care-api", role="energy_company", subject=CARE)
    # A provider cannot issue tokens, not even for itself.
    r = client.post(
        "/api/tokens",
        json={"name": "y", "role": "energy_company", "subject": CARE},
        headers=_bearer(care["token"]),
    )
    assert r.status_code == 403


def test_cli_token_create_with_subject(tmp_path: Path) -> None:
    from bright.network.access import TokenSubjects
    from bright.twin.db import make_engine
    from bright.web.users import token_principal

    db = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    bad = runner.invoke(
        cli_app, ["token", "create", "x", "--role", "energy_company", "--subject", "nope", "-d", db]
    )
    assert bad.exit_code == 1 and "urn:ngsi-ld:<Type>:<id>" in bad.output
    ok = runner.invoke(
        cli_app, ["token", "create", "care", "--role", "energy_company", "--subject", CARE, "-d", db]
    )
    assert ok.exit_code == 0, ok.output
    value = ok.output.strip().splitlines()[-1]
    engine = make_engine(db)
    try:
        p = token_principal(engine, value)
        assert p is not None and TokenSubjects(engine).get(str(p.attributes["token_id"])) == CARE
        listed = runner.invoke(cli_app, ["token", "list", "-d", db], env={"COLUMNS": "300"})
        assert listed.exit_code == 0 and "care-at-home" in listed.output and value not in listed.output
    finally:
        engine.dispose()
