"""The knowledge catalogue, tools, questions and city twin pages (TestClient), and a browser walk of
the new administration and catalogue pages (Playwright, screenshots in ``docs/img/web-*.png``).

Figures and rankings are compared with the REST API's answers; roles and the messages of bad form
input are checked.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from bright.api.app import create_app
from bright.config import Settings
from bright.network.demo_network import demo_network
from bright.network.tools import catalogue
from bright.web import app as web
from bright.web.catalogue_pages import community_kind, question_field
from bright.web.users import add_demo_users

CID = "urn:ngsi-ld:EnergyCommunity:school-371"
ME = "urn:ngsi-ld:EnergyProsumer:school-371:home01"
ROOT = Path(__file__).resolve().parents[2]
DOC_IMG = ROOT / "docs" / "img"
SHOTS = ROOT / "artifacts" / "screenshots"


@pytest.fixture(scope="module")
def app(demo_url: str) -> object:
    application = create_app(Settings(database_url=demo_url))
    web.install(application)
    add_demo_users(application.state.twin.engine, CID, ME)
    net = demo_network(12, practices_per_card=2, seed=5)
    directory = application.state.discovery
    directory.publish_cards(net.cards)
    directory.publish_items([*net.practices, *net.initiatives])
    application.state.demo_net = net
    return application


@pytest.fixture(scope="module")
def client(app: object) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:  # type: ignore[arg-type]
        yield c


def as_user(client: TestClient, user: str | None) -> TestClient:
    client.cookies.clear()
    if user is not None:
        r = client.post("/login", data={"username": user, "password": f"{user}-demo"}, follow_redirects=False)
        assert r.status_code == 303, r.text
    return client


def errors_of(page: str) -> dict[str, str]:
    return {
        k: html.unescape(v)
        for k, v in re.findall(r'class="error-msg" id="([a-z_]+)-error"[^>]*>([^<]*)<', page)
    }


def shown_items(page: str) -> list[str]:
    return re.findall(r'<li data-item="([^"]+)"', page)


# --- knowledge -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "extra"),
    [
        ("solar panels on the school roof", {}),
        ("panneaux solaires", {}),  # French finds English and Dutch texts
        ("zonnepanelen", {"kind": "practice"}),
        ("battery", {"lang_text": "en"}),
    ],
)
def test_search_ranks_as_the_api(client: TestClient, q: str, extra: dict[str, str]) -> None:
    as_user(client, None)
    params = {"q": q, "limit": 100}
    if "kind" in extra:
        params["kind"] = extra["kind"]
    if "lang_text" in extra:
        params["lang"] = extra["lang_text"]
    api = client.get("/api/network/practices", params=params).json()["results"]
    page = client.get("/catalogue", params={"q": q, **extra})
    assert page.status_code == 200
    assert shown_items(page.text) == [h["id"] for h in api]
    scores = [float(s) for s in re.findall(r'data-score="([^"]+)"', page.text)]
    assert scores == [h["score"] for h in api]
    if q != "battery":
        assert api, q


def test_browse_and_filter_by_kind_and_community_kind(app: object, client: TestClient) -> None:
    net = app.state.demo_net  # type: ignore[attr-defined]
    cards = {c.id: c for c in net.cards}
    items = [*net.practices, *net.initiatives]
    as_user(client, None)
    everything = shown_items(client.get("/catalogue").text)
    assert sorted(everything) == sorted(i.id for i in items)
    initiatives = shown_items(client.get("/catalogue", params={"kind": "initiative"}).text)
    assert sorted(initiatives) == sorted(i.id for i in net.initiatives)
    schools = shown_items(client.get("/catalogue", params={"ckind": "school"}).text)
    expected = sorted(i.id for i in items if community_kind(cards[i.community]) == "school")
    assert schools == sorted(schools, key=everything.index) and sorted(schools) == expected and expected
    hits = shown_items(client.get("/catalogue", params={"q": "school", "ckind": "households"}).text)
    assert all(
        community_kind(cards[next(i for i in items if i.id == h).community]) == "households" for h in hits
    )


def test_bad_filters_are_named_next_to_the_field(client: TestClient) -> None:
    as_user(client, None)
    r = client.get("/catalogue", params={"kind": "poem", "ckind": "castle", "lang_text": "de"})
    assert r.status_code == 400
    errs = errors_of(r.text)
    assert set(errs) == {"kind", "ckind", "lang_text"}
    assert "practice, initiative, document" in errs["kind"]
    assert "Traceback" not in r.text


def test_community_kind_of_a_card() -> None:
    net = demo_network(12, practices_per_card=0, seed=5)
    for card in net.cards:
        kind = community_kind(card)
        if card.members.schools:
            assert kind == "school"
        elif card.members.total:
            counts = card.members.model_dump()
            assert counts[kind] == max(counts[k] for k in ("households", "smes", "public_buildings", "other"))
    assert {community_kind(c) for c in net.cards_of("school")} == {"school"}


# --- tools ---------------------------------------------------------------------------------------


def test_tools_pages_show_the_catalogue_and_schemas(client: TestClient) -> None:
    as_user(client, None)
    api = client.get("/api/network/tools").json()
    page = client.get("/catalogue/tools").text
    assert re.findall(r'data-tool="([^"]+)"', page) == [t["name"] for t in api["tools"]]
    for tool in api["tools"]:
        r = client.get(f"/catalogue/tools/{tool['name']}")
        assert r.status_code == 200
        schema = tool["inputSchema"]
        if schema:
            fields = re.findall(r'<tr data-field="([^"]+)"', r.text.split('data-testid="outputs"')[0])
            assert fields == list(schema["properties"]), tool["name"]
        if tool["run"]:
            assert f"POST {tool['run']}" in r.text
    assert client.get("/catalogue/tools/teleporter").status_code == 404
    assert "sharing-calculator" in catalogue()


# --- questions -----------------------------------------------------------------------------------


def test_asking_a_question_needs_a_member_or_manager(client: TestClient) -> None:
    as_user(client, None)
    r = client.get("/catalogue/questions", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    as_user(client, "public")
    assert client.get("/catalogue/questions").status_code == 403


def test_a_member_asks_and_the_manager_sees_it(client: TestClient) -> None:
    as_user(client, "member")
    form = {"to": CID, "subject": "Roof PV", "text": "How did you finance the panels?",
            "organisation": "Ecole 12", "email": "direction@ecole12.be", "lang": "en"}  # fmt: skip
    r = client.post("/catalogue/questions", data=form)
    assert r.status_code == 201, errors_of(r.text)
    assert 'data-testid="sent"' in r.text
    as_user(client, "manager")
    api = client.get("/api/network/questions", params={"to": CID}).json()
    asked = [q for q in api["questions"] if q["subject"] == "Roof PV"]
    assert len(asked) == 1
    page = client.get("/catalogue/questions").text
    assert f'data-question="{asked[0]["id"]}"' in page


def test_question_form_messages(client: TestClient) -> None:
    as_user(client, "member")
    r = client.post("/catalogue/questions", data={"to": "", "subject": "", "text": "x", "organisation": ""})
    assert r.status_code == 400
    assert set(errors_of(r.text)) == {"to", "subject", "organisation", "email"}
    body = {
        "to": CID,
        "subject": "s",
        "text": "t",
        "reply_to": {"organisation": "O", "email": "not-an-email"},
    }
    api = client.post("/api/network/questions", json=body)
    assert api.status_code == 400
    r = client.post("/catalogue/questions", data={"to": CID, "subject": "s", "text": "t", "organisation": "O",
                                                  "email": "not-an-email"})  # fmt: skip
    assert r.status_code == 400
    assert errors_of(r.text) == {question_field(api.json()["detail"]): api.json()["detail"]}


def test_question_field_names_the_field() -> None:
    assert question_field("question to x: reply_to.email: value is not a valid email") == "organisation"
    assert question_field("question: field subject is required") == "subject"
    assert question_field("something else") == "text"


# --- city twin -----------------------------------------------------------------------------------


def test_city_page_equals_the_aggregate(client: TestClient) -> None:
    as_user(client, None)
    api = client.get("/api/network/aggregate", params={"breakdown": "true"}).json()
    page = client.get("/city").text
    for c in api["communities"]:
        row = re.search(rf'<tr data-community="{re.escape(c["id"])}">(.*?)</tr>', page, re.S)
        assert row, c["id"]
        values = [float(v) if v else None for v in re.findall(r'data-value="([^"]*)"', row.group(1))]
        assert values == [c["kpis"].get(k) for k in ("offtake_kwh", "injection_kwh", "shared_kwh")]
    assert any(c["kpis"] for c in api["communities"])  # the demo community has its figures
    for key, v in api["totals"].get("energy", {}).items():
        if isinstance(v, dict) and "value" in v:
            assert f'data-total="{key}"' in page
            assert re.search(rf'data-total="{key}">.*?data-value="{re.escape(str(v["value"]))}"', page, re.S)
    assert ('data-testid="all-answered"' in page) == (not api["unanswered"])
    bad = client.get("/city", params={"frequency": "hourly"})
    assert bad.status_code == 400 and errors_of(bad.text)


# --- browser walk --------------------------------------------------------------------------------


@pytest.mark.browser
def test_browser_walks_the_new_pages(server: str, browser: object) -> None:
    """Manager: policies, a policy, a bad form, audit, consents, hosting; everyone: catalogue, tool,
    city (chart drawn). Screenshots to docs/img/web-<page>.png."""
    with httpx.Client(base_url=server, timeout=60) as api:
        api.post("/login", data={"username": "manager", "password": "manager-demo"})
        agg = api.get("/api/network/aggregate", params={"breakdown": "true"}).json()
        policies = api.get("/api/policies").json()
    context = browser.new_context(viewport={"width": 1000, "height": 700})  # type: ignore[attr-defined]
    page = context.new_page()
    DOC_IMG.mkdir(parents=True, exist_ok=True)
    SHOTS.mkdir(parents=True, exist_ok=True)

    def shot(name: str) -> None:
        data = page.screenshot(type="png")
        (DOC_IMG / f"web-{name}.png").write_bytes(data)
        (SHOTS / f"web-{name}.png").write_bytes(data)

    page.goto(f"{server}/login")
    page.get_by_label("User name").fill("manager")
    page.get_by_label("Password").fill("manager-demo")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    page.goto(f"{server}/admin/policies")
    assert page.locator("tr[data-policy]").count() == len(policies)
    shot("policies")
    page.locator("tr[data-policy] a").first.click()
    assert page.locator("[data-testid=rule]").count() >= 1
    shot("policy")
    page.goto(f"{server}/admin/policies/new")
    page.get_by_label("ODRL 2.2 policy (JSON)").fill('{"@context": "x"}')
    page.get_by_role("button", name="Save").click()
    assert "@context" in page.locator("#odrl-error").inner_text()
    page.goto(f"{server}/admin/audit?decision=maybe")
    assert page.locator("#decision-error").is_visible()
    shot("audit")
    page.goto(f"{server}/admin/consents")
    shot("consents")
    page.goto(f"{server}/admin/hosting")
    shot("hosting")
    page.goto(f"{server}/catalogue?q=solar")
    shot("catalogue")
    page.goto(f"{server}/catalogue/tools/sharing-calculator")
    assert page.locator("[data-testid=inputs] tr[data-field]").count() >= 1
    shot("tool")
    page.goto(f"{server}/city")
    page.wait_for_selector("#chart-city[data-drawn='1']", timeout=15000)
    assert page.locator("tr[data-community]").count() == len(agg["communities"])
    page.locator("#chart-city").scroll_into_view_if_needed()
    shot("city")
    context.close()
