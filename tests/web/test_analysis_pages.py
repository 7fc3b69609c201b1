"""Server-side tests of the analysis, sharing-key, S-BRIGHT, ledger and network pages (TestClient).

Every figure a page shows is compared with the REST API's answer for the same question (asked with
the manager's session, as the API's access control requires); role restrictions and the messages
of bad form input are checked on the real demo community.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from urllib.parse import quote

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.api.app import create_app
from bright.config import Settings
from bright.network.demo_network import demo_network
from bright.web import app as web
from bright.web.analysis import day_error
from bright.web.network_pages import COS_LAT, parse_search, project
from bright.web.users import add_demo_users

CID = "urn:ngsi-ld:EnergyCommunity:school-371"
ME = "urn:ngsi-ld:EnergyProsumer:school-371:home01"
OTHER = "urn:ngsi-ld:EnergyProsumer:school-371:home02"
NO_PV = "urn:ngsi-ld:EnergyProsumer:school-371:home06"  # a consumer without devices
HTML = {"accept": "text/html"}
DAY = "2016-06-15"


@pytest.fixture(scope="module")
def app(demo_url: str) -> object:
    application = create_app(Settings(database_url=demo_url))
    web.install(application)
    add_demo_users(application.state.twin.engine, CID, ME)
    return application


@pytest.fixture(scope="module")
def client(app: object) -> Iterator[TestClient]:
    # one client per module: its lifespan owns the ledger node, which closes at shutdown
    with TestClient(app, raise_server_exceptions=False) as c:  # type: ignore[arg-type]
        yield c


def as_user(client: TestClient, user: str | None) -> TestClient:
    """Switch the client's session to ``user`` (None: the anonymous visitor)."""
    client.cookies.clear()
    if user is not None:
        r = client.post("/login", data={"username": user, "password": f"{user}-demo"}, follow_redirects=False)
        assert r.status_code == 303, r.text
    return client


def value(html: str, attr: str, name: str) -> float:
    m = re.search(rf'{attr}="{re.escape(name)}"[^>]*data-value="([^"]+)"', html)
    assert m, f"no {attr}={name} in the page"
    return float(m.group(1))


def api(client: TestClient, method: str, path: str, **kwargs: object) -> dict:
    """An API answer with the manager's session (restores nothing: callers switch users)."""
    as_user(client, "manager")
    r = client.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert r.status_code < 300, r.text
    return r.json()  # type: ignore[no-any-return]


# --- forecast ------------------------------------------------------------------------------------


def test_forecast_page_shows_the_stored_forecast_of_the_api(client: TestClient) -> None:
    body = api(client, "GET", f"/api/communities/{CID}/forecast")
    community = {f["quantity"]: f for f in body["forecasts"] if f["target"] == CID}
    r = as_user(client, None).get(f"/communities/{CID}/forecast", headers=HTML)
    assert r.status_code == 200
    assert body["day"] in r.text
    for q, f in community.items():
        assert value(r.text, "data-fc", f"{q}-q50") == pytest.approx(f["total_kwh"]["q50"], rel=1e-6)
        assert re.search(rf'data-testid="model-{q}">{re.escape(f["model"])}<', r.text)
    assert 'data-testid="make-forecast"' not in r.text  # only the manager makes forecasts


def test_forecast_member_level_is_restricted(client: TestClient) -> None:
    me, other = quote(ME, safe=""), quote(OTHER, safe="")
    assert (
        as_user(client, None).get(f"/communities/{CID}/forecast?target={me}", headers=HTML).status_code == 403
    )
    as_user(client, "member")
    assert client.get(f"/communities/{CID}/forecast?target={me}", headers=HTML).status_code == 200
    r = client.get(f"/communities/{CID}/forecast?target={other}", headers=HTML)
    assert r.status_code == 403 and "Household 2" not in r.text
    assert (
        as_user(client, "manager")
        .get(f"/communities/{CID}/forecast?target={other}", headers=HTML)
        .status_code
        == 200
    )


def test_forecast_bad_day_is_shown_next_to_the_field(client: TestClient) -> None:
    r = as_user(client, None).get(f"/communities/{CID}/forecast?day=2016-13-01", headers=HTML)
    assert r.status_code == 400
    assert 'id="day-error"' in r.text and "Traceback" not in r.text


def test_manager_makes_a_forecast_and_sees_it_against_the_measurement(client: TestClient) -> None:
    """POST makes the forecast of a past day; the page's measured total is the metered offtake of a
    member without PV and its error is recomputed from the API's quantiles."""
    as_user(client, "member")
    assert client.post(f"/communities/{CID}/forecast", data={"day": DAY}).status_code == 403
    as_user(client, "manager")
    r = client.post(
        f"/communities/{CID}/forecast", data={"day": DAY, "target": NO_PV}, follow_redirects=False
    )
    assert r.status_code == 303, r.text
    page = client.get(r.headers["location"], headers=HTML)
    assert page.status_code == 200
    fc = api(client, "GET", f"/api/communities/{CID}/forecast", params={"day": DAY, "member": NO_PV})
    cons = next(f for f in fc["forecasts"] if f["quantity"] == "consumption")
    assert value(page.text, "data-fc", "consumption-q50") == pytest.approx(cons["total_kwh"]["q50"], rel=1e-6)
    # Household 6 has no PV: its measured consumption is its offtake
    bal = api(
        client,
        "GET",
        f"/api/communities/{CID}/balance",
        params={"freq": "15min", "start": DAY, "end": "2016-06-16", "level": "members"},
    )
    rows = [m for m in bal["members"] if m["member_id"] == NO_PV]
    measured = np.array([m["offtake_kwh"] for m in rows])
    assert value(page.text, "data-fc", "consumption-measured") == pytest.approx(measured.sum(), rel=1e-9)
    err = day_error(
        np.array(cons["values"]["q50"], dtype=float),
        np.array(cons["values"]["q10"], dtype=float),
        np.array(cons["values"]["q90"], dtype=float),
        measured,
    )
    # the API rounds the quantiles to 1e-6 kWh
    assert value(page.text, "data-fc", "consumption-mae") == pytest.approx(err["mae_kwh"], abs=1e-6)
    assert value(page.text, "data-fc", "consumption-coverage") == pytest.approx(err["coverage_80"], abs=1e-12)


def test_backtest_fragment_equals_the_api(client: TestClient) -> None:
    as_user(client, "member")
    url = f"/web/fragments/communities/{CID}/backtest?member={quote(ME, safe='')}&quantity=consumption&days=3"
    r = client.get(url)
    assert r.status_code == 200 and 'data-testid="backtest-table"' in r.text
    body = api(
        client,
        "GET",
        f"/api/communities/{CID}/forecast/backtest",
        params={"member": ME, "days": 3, "quantity": "consumption"},
    )
    for row in body["scores"]:
        m = re.search(
            rf'data-model="{row["model"]}"><th scope="row">[^<]+</th><td data-col="mae">([^<]+)<', r.text
        )
        assert m, row["model"]
        assert float(m.group(1).replace("\u202f", "")) == pytest.approx(row["mae_kwh"], abs=6e-5)
    as_user(client, "member")
    bad = client.get(url.replace("days=3", "days=0"))
    assert 'data-testid="backtest-error"' in bad.text
    other = client.get(url.replace(quote(ME, safe=""), quote(OTHER, safe="")))
    assert other.status_code == 403


# --- flexibility ---------------------------------------------------------------------------------


def test_flexibility_page_equals_the_schedule_api(client: TestClient) -> None:
    body = api(client, "GET", f"/api/communities/{CID}/schedule", params={"mode": "compare"})
    r = client.get(f"/communities/{CID}/flexibility?mode=compare", headers=HTML)
    assert r.status_code == 200
    assert re.search(rf'data-flex="status">{body["status"]}<', r.text)
    assert value(r.text, "data-flex", "value_total_eur") == pytest.approx(body["value_total_eur"], abs=1e-9)
    assert value(r.text, "data-flex", "cost_eur") == pytest.approx(body["cost_eur"], abs=1e-9)
    assert r.text.count("<tr data-device=") == len(body["devices"])
    for member, items in body["value_statement"].items():
        if items:
            total = sum(v["value_eur"] for v in items.values())
            m = re.search(
                rf'<tr data-member="{re.escape(member)}">.*?data-col="total" data-value="([^"]+)"',
                r.text,
                re.S,
            )
            assert m and float(m.group(1)) == pytest.approx(total, abs=1e-9)
    assert 'data-testid="compare-summary"' in r.text


def test_flexibility_member_sees_own_devices_only(client: TestClient) -> None:
    body = api(client, "GET", f"/api/communities/{CID}/schedule", params={"mode": "compare"})
    mine = [d["device"] for d in body["devices"] if d["member"] == ME]
    r = as_user(client, "member").get(f"/communities/{CID}/flexibility", headers=HTML)
    assert r.status_code == 200
    assert r.text.count("<tr data-device=") == len(mine)
    assert f'data-member="{OTHER}"' not in r.text
    assert 'data-flex="cost_eur"' not in r.text  # the community's cost is the manager's
    assert as_user(client, None).get(f"/communities/{CID}/flexibility", headers=HTML).status_code == 403


def test_flexibility_bad_input(client: TestClient) -> None:
    as_user(client, "manager")
    r = client.get(f"/communities/{CID}/flexibility?mode=alone&limit_kw=-3", headers=HTML)
    assert r.status_code == 400
    assert 'id="mode-error"' in r.text and 'id="limit_kw-error"' in r.text


# --- fairness ------------------------------------------------------------------------------------


def test_fairness_page_equals_the_api(client: TestClient) -> None:
    body = api(
        client, "GET", f"/api/communities/{CID}/fairness", params={"start": "2016-06-13", "end": "2016-06-20"}
    )
    r = client.get(f"/communities/{CID}/fairness?period=week&date={DAY}", headers=HTML)
    assert r.status_code == 200
    assert value(r.text, "data-fair", "grand_coalition_eur") == pytest.approx(
        body["grand_coalition_eur"], abs=1e-9
    )
    assert value(r.text, "data-fair", "gap_eur") == pytest.approx(body["gap_eur"], abs=1e-9)
    for m in body["members"]:
        cell = re.search(
            rf'<tr data-member="{re.escape(m["member_id"])}">.*?data-value="([^"]+)"', r.text, re.S
        )
        assert cell and float(cell.group(1)) == pytest.approx(m["shapley_eur"], abs=1e-9)
    member = as_user(client, "member").get(
        f"/communities/{CID}/fairness?period=week&date={DAY}", headers=HTML
    )
    assert member.text.count("<tr data-member=") == 1 and f'data-member="{ME}"' in member.text
    assert 'data-fair="gap_eur"' not in member.text
    bad = client.get(f"/communities/{CID}/fairness?period=year&feed_in_eur_per_kwh=abc", headers=HTML)
    assert bad.status_code == 400
    assert 'id="period-error"' in bad.text and 'id="feed_in_eur_per_kwh-error"' in bad.text


# --- sharing key editor --------------------------------------------------------------------------


def _key_form(percents: list[str], method: str = "fixed", **extra: str) -> dict[str, str]:
    return {"method": method, "day": DAY, **{f"key-{i}": p for i, p in enumerate(percents)}, **extra}


def test_sharing_key_editor_is_for_the_manager(client: TestClient) -> None:
    for user in (None, "member"):
        as_user(client, user)
        assert client.get(f"/communities/{CID}/sharing-key", headers=HTML).status_code == 403
        assert client.post(f"/communities/{CID}/sharing-key", data=_key_form(["100"])).status_code == 403


def test_sharing_key_editor_rejects_bad_keys_next_to_the_field(client: TestClient) -> None:
    as_user(client, "manager")
    community = api(client, "GET", f"/api/communities/{CID}")
    n = len(community["members"])
    r = client.post(f"/communities/{CID}/sharing-key", data=_key_form(["10"] * n))
    assert r.status_code == 400 and 'data-testid="key-sum-error"' in r.text and "140" in r.text
    r = client.post(f"/communities/{CID}/sharing-key", data=_key_form(["abc"] + ["0"] * (n - 1)))
    assert r.status_code == 400 and 'id="key-0-error"' in r.text
    r = client.post(f"/communities/{CID}/sharing-key", data=_key_form(["100"], method="hybrid", hybrid="150"))
    assert r.status_code == 400 and 'id="hybrid-error"' in r.text
    r = client.post(f"/communities/{CID}/sharing-key", data=_key_form(["100"], method="lottery"))
    assert r.status_code == 400 and 'id="method-error"' in r.text


def test_sharing_key_preview_then_save_equals_the_sharing_api(client: TestClient) -> None:
    as_user(client, "manager")
    community = api(client, "GET", f"/api/communities/{CID}")
    members = community["members"]
    takers = [i for i, m in enumerate(members) if m["role"] != "producer"]
    percents = ["0"] * len(members)
    for k, i in enumerate(takers):  # unequal shares that sum to 100
        percents[i] = str(round(100 / len(takers), 6)) if k else "0"
    percents[takers[0]] = str(round(100 - sum(float(p) for p in percents), 6))
    form = _key_form(percents, method="fixed_multi_round")
    r = client.post(f"/communities/{CID}/sharing-key", data=form)
    assert r.status_code == 200, r.text[-800:]
    proposed = value(r.text, "data-preview", "total_proposed_kwh")
    saved = client.post(
        f"/communities/{CID}/sharing-key", data={**form, "action": "save"}, follow_redirects=False
    )
    assert saved.status_code == 303
    assert 'data-testid="saved"' in client.get(saved.headers["location"], headers=HTML).text
    after = api(client, "GET", f"/api/communities/{CID}")
    assert after["sharing_method"] == "fixed_multi_round"
    shares = api(client, "GET", f"/api/communities/{CID}/sharing", params={"start": DAY, "end": "2016-06-16"})
    total = sum(m["shared_offtake_kwh"] for m in shares["members"])
    assert proposed == pytest.approx(total, rel=1e-9)


# --- S-BRIGHT ------------------------------------------------------------------------------------


def _answers(client: TestClient) -> dict[str, str]:
    """Answers to every item: the middle option of each scale."""
    q = api(client, "GET", f"/api/members/{ME}/questionnaire")
    return {it["id"]: str(it["options"][len(it["options"]) // 2]["value"]) for it in q["items"]}


def test_questionnaire_needs_consent_and_shows_the_profile(client: TestClient) -> None:
    answers = _answers(client)
    before = api(client, "GET", f"/api/members/{ME}/profile")["submittedAt"]
    url = f"/communities/{CID}/members/{ME}/questionnaire"
    as_user(client, "member")
    r = client.post(url, data=answers)
    assert r.status_code == 400 and 'id="consent-error"' in r.text
    assert api(client, "GET", f"/api/members/{ME}/profile")["submittedAt"] == before  # nothing stored
    as_user(client, "member")
    bad = client.post(url, data={**answers, next(iter(answers)): "99", "consent": "yes"})
    assert bad.status_code == 400 and f'id="{next(iter(answers))}-error"' in bad.text
    ok = client.post(url, data={**answers, "consent": "yes"}, follow_redirects=False)
    assert ok.status_code == 303
    page = client.get(ok.headers["location"].split("#")[0], headers=HTML)
    profile = api(client, "GET", f"/api/members/{ME}/profile")
    assert profile["source"] == "member" and profile["submittedAt"] != before
    assert re.search(rf'data-testid="category">{re.escape(profile["category"]["names"]["en"])}<', page.text)
    for offer in profile["recommendations"]["services"]:
        assert f'data-offer="{offer["offer"]}"' in page.text


def test_questionnaire_roles(client: TestClient) -> None:
    url = f"/communities/{CID}/members/{ME}/questionnaire"
    assert as_user(client, None).get(url, headers=HTML).status_code == 403
    as_user(client, "member")
    assert client.get(f"/communities/{CID}/members/{OTHER}/questionnaire", headers=HTML).status_code == 403
    manager = as_user(client, "manager").get(url, headers=HTML)
    assert manager.status_code == 200 and 'data-testid="profile"' in manager.text
    assert 'name="consent"' not in manager.text  # nobody answers for a member
    assert client.post(url, data={"consent": "yes"}).status_code == 403


def test_engagement_mix_equals_the_api(client: TestClient) -> None:
    mix = api(client, "GET", f"/api/communities/{CID}/engagement")
    r = as_user(client, None).get(f"/communities/{CID}/engagement", headers=HTML)
    assert r.status_code == 200
    for c in mix["categories"]:
        assert re.search(rf'data-share="{c["archetype"]}" data-members="{c["members"]}"', r.text)
    assert 'data-testid="bic-table"' not in r.text
    assert 'data-testid="bic-table"' in as_user(client, "manager").get(f"/communities/{CID}/engagement").text


# --- ledger and DVPP -----------------------------------------------------------------------------


def test_ledger_settlement_heads_and_roles(client: TestClient) -> None:
    assert as_user(client, None).get("/ledger", headers=HTML).status_code == 200
    assert client.post("/ledger/settlements", data={"start": DAY, "end": "2016-06-16"}).status_code in (
        401,
        403,
    )
    as_user(client, "manager")
    bad = client.post("/ledger/settlements", data={"start": "", "end": "2016-06-16"})
    assert bad.status_code == 400 and 'id="start-error"' in bad.text
    r = client.post(
        "/ledger/settlements", data={"start": DAY, "end": "2016-06-15T02:00"}, follow_redirects=False
    )
    assert r.status_code == 303, r.text[-600:]
    heads = api(client, "GET", "/api/ledger/heads")
    page = as_user(client, None).get("/ledger", headers=HTML)
    assert re.search(rf'data-ledger="size">{heads["size"]}<', page.text)
    assert heads["size"] > 0
    for h in heads["heads"]:
        assert f'<tr data-size="{h["size"]}">' in page.text
    assert 'id="record-error"' in page.text  # the place of the proof form's message
    bad_index = client.get("/ledger?record=x", headers=HTML)
    assert bad_index.status_code == 400


def test_dvpp_statement_equals_the_api(client: TestClient) -> None:
    devices = api(client, "GET", f"/api/communities/{CID}/schedule")["devices"]
    device = next(d["device"] for d in devices if d["member"] == ME)
    offer = {
        "member": ME,
        "device": device,
        "direction": "up",
        "windowStart": "2017-01-01T17:00:00Z",
        "windowEnd": "2017-01-01T19:00:00Z",
        "powerKw": 2.5,
        "priceEurPerKwh": 0.12,
    }
    api(client, "POST", "/api/dvpp/offers", json=offer)
    statement = api(client, "GET", f"/api/dvpp/members/{ME}/statement")
    r = as_user(client, "member").get(f"/communities/{CID}/members/{ME}/dvpp", headers=HTML)
    assert r.status_code == 200
    assert re.search(rf'data-dvpp="offers">{statement["totals"]["offers"]}<', r.text)
    assert statement["totals"]["offers"] >= 1
    for i in statement["records"]:
        assert f'data-verify-index="{i}"' in r.text
    assert client.get(f"/communities/{CID}/members/{OTHER}/dvpp", headers=HTML).status_code == 403


# --- network -------------------------------------------------------------------------------------


def test_network_map_and_school_search_equal_the_api(app: object, client: TestClient) -> None:
    directory = app.state.discovery  # type: ignore[attr-defined]
    directory.publish_cards(demo_network(16, practices_per_card=1, seed=4).cards)
    as_user(client, "manager")
    assert client.post(f"/network/cards/{CID}/refresh", follow_redirects=False).status_code == 303
    found = api(client, "GET", "/api/network/search", params={"schools": "true", "limit": 10})
    r = as_user(client, None).get("/network?schools=on&limit=10", headers=HTML)
    assert r.status_code == 200
    shown = re.findall(r'<li data-card="([^"]+)">', r.text)
    assert shown == [m["card"]["id"] for m in found["results"]]
    assert all(m["card"]["members"]["schools"] > 0 for m in found["results"])
    assert r.text.count('data-testid="network-card"') == len(directory.cards())
    assert f'data-card="{CID}"' in r.text
    bad = client.get("/network?min_members=-1&max_members=x", headers=HTML)
    assert (
        bad.status_code == 400
        and 'id="min_members-error"' in bad.text
        and 'id="max_members-error"' in bad.text
    )
    assert client.post(f"/network/cards/{CID}/refresh").status_code == 403


# --- pure functions ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0, 5, allow_nan=False), min_size=1, max_size=40),
    st.floats(0, 2, allow_nan=False),
    st.floats(0, 2, allow_nan=False),
)
def test_day_error_properties(measured: list[float], below: float, above: float) -> None:
    m = np.array(measured)
    exact = day_error(m, m - below, m + above, m)
    assert exact["mae_kwh"] == 0.0 and exact["coverage_80"] == 1.0 and exact["n"] == len(m)
    shifted = day_error(m + 1.0, m + 0.5, m + 2.0, m)
    assert shifted["mae_kwh"] == pytest.approx(1.0) and shifted["coverage_80"] == 0.0
    gaps = m.copy()
    gaps[0] = np.nan
    assert day_error(m, m, m, gaps)["n"] == len(m) - 1
    if len(m) == 1:
        assert math.isnan(day_error(m, m, m, gaps)["mae_kwh"])


def test_search_form_and_projection() -> None:
    args, errors = parse_search({"q": " school ", "schools": "on", "min_members": "5", "limit": "7"})
    assert not errors and args["q"] == "school" and args["limit"] == 7
    assert (
        args["filters"].schools is True
        and args["filters"].min_members == 5
        and args["filters"].has_pv is None
    )
    _, errors = parse_search({"min_members": "9", "max_members": "3", "limit": "0"})
    assert set(errors) == {"max_members", "limit"}
    x, y = project(4.35, 50.85)
    assert x == pytest.approx(4.35 * COS_LAT) and y == 50.85


# --- mobility ------------------------------------------------------------------------------------


def test_mobility_page_compares_the_stored_scenarios_like_the_api(client: TestClient) -> None:
    stored = api(client, "GET", f"/api/communities/{CID}/scenarios")["scenarios"]
    assert stored, "the demo runs mobility scenarios"
    names = [s["name"] for s in stored][:2]
    body = api(
        client, "GET", f"/api/communities/{CID}/scenarios/compare", params={"scenario": ",".join(names)}
    )
    r = as_user(client, None).get(
        f"/communities/{CID}/mobility?" + "&".join(f"scenario={quote(n)}" for n in names), headers=HTML
    )
    assert r.status_code == 200
    for row in body["rows"]:
        for name, v in row["values"].items():
            m = re.search(
                rf'<tr data-metric="{row["metric"]}">.*?<td data-scenario="{re.escape(name)}" data-value="([^"]+)"',
                r.text,
                re.S,
            )
            assert m, (row["metric"], name)
            shown = float(m.group(1)) if m.group(1) != "None" else None
            assert (shown is None and v is None) or shown == pytest.approx(v, rel=1e-6, abs=1e-9)
    assert 'id="run-form"' not in r.text  # running is the manager's


def test_mobility_run_form(client: TestClient) -> None:
    url = f"/communities/{CID}/mobility"
    assert as_user(client, "member").post(url, data={"name": "x", "n_evs": "3"}).status_code == 403
    as_user(client, "manager")
    bad = client.post(url, data={"name": "more evs", "n_evs": "three"})
    assert bad.status_code == 400 and 'id="n_evs-error"' in bad.text
    bad = client.post(url, data={"name": "!!", "n_evs": "3"})
    assert bad.status_code == 400 and 'id="name-error"' in bad.text
    ok = client.post(
        url, data={"name": "web test 4 EVs", "n_evs": "4", "policy": "time_of_use"}, follow_redirects=False
    )
    assert ok.status_code == 303, ok.text[-600:]
    stored = api(client, "GET", f"/api/communities/{CID}/scenarios")["scenarios"]
    run = next(s for s in stored if s["name"] == "web test 4 EVs")
    assert run["policy"] == "time_of_use" and run["kpis"]["n_vehicles"] == 4
    page = client.get(ok.headers["location"], headers=HTML)
    assert 'data-scenario="web test 4 EVs"' in page.text


def test_every_message_of_the_pages_exists_in_three_languages() -> None:
    """Each key the templates and page modules use is in the catalogue in English, French and Dutch."""
    from pathlib import Path

    from bright.web import i18n

    web_dir = Path(web.__file__).parent
    others = ("onboarding", "offers", "users")  # the pages of other parts of the project
    files = [*web_dir.glob("templates/*.html"), *web_dir.glob("*.py")]
    texts = [p.read_text("utf-8") for p in files if not p.stem.startswith(others)]
    keys = set()
    for text in texts:
        keys |= set(re.findall(r"\bt\('([a-z_0-9]+\.[a-z_0-9.]+)'", text))
        keys |= set(re.findall(r'translate\("([a-z_0-9]+\.[a-z_0-9.]+)"', text))
    dynamic = {
        "flex.mode_": ("individual", "community", "compare"),
        "forecast.": ("consumption", "production"),
        "key.m_": ("fixed", "fixed_multi_round", "pro_rata", "hybrid", "maximum"),
        "net.": (
            "schools",
            "has_pv",
            "has_storage",
            "has_ev",
            "has_heat_pumps",
            "min_members",
            "max_members",
        ),
        "sb.": ("services", "incentives"),
        "ledger.": ("start", "end"),
        "mob.": ("n_evs", "ev_site_limit_kw", "connection_limit_kw", "added_pv_kwp", "shared_replacing"),
    }
    keys |= {prefix + rest for prefix, rests in dynamic.items() for rest in rests}
    keys = {k for k in keys if not k.endswith((".", "_"))}
    missing = sorted(
        f"{k} ({lang})" for k in keys for lang in i18n.LANGUAGES if not i18n.MESSAGES.get(k, {}).get(lang)
    )
    ours = [
        m
        for m in missing
        if m.split(".")[0] in {"nav", "forecast", "flex", "fair", "key", "sb", "ledger", "dvpp", "net", "mob"}
    ]
    assert not ours, ours
