"""Server-side tests of the dashboard on the real demo community (FastAPI TestClient).

The demo twin (``bright demo --no-serve``: 14 members, a year of 2016 quarter-hours) is built once per
module in a temporary directory; every figure a page shows is compared with the REST API's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.api.app import create_app
from bright.config import Settings
from bright.web import app as web
from bright.web import i18n
from bright.web.users import ANONYMOUS, SessionSigner, User, add_demo_users, hash_password, verify_password

CID = "urn:ngsi-ld:EnergyCommunity:school-371"
ME = "urn:ngsi-ld:EnergyProsumer:school-371:home01"
OTHER = "urn:ngsi-ld:EnergyProsumer:school-371:home02"
HTML = {"accept": "text/html"}


@pytest.fixture(scope="module")
def app(demo_url: str) -> object:
    application = create_app(Settings(database_url=demo_url))
    web.install(application)
    add_demo_users(application.state.twin.engine, CID, ME)
    return application


@pytest.fixture
def client(app: object) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:  # type: ignore[arg-type]
        yield c


def login(client: TestClient, user: str) -> None:
    r = client.post("/login", data={"username": user, "password": f"{user}-demo"}, follow_redirects=False)
    assert r.status_code == 303, r.text


def kpi(html: str, name: str) -> float:
    m = re.search(rf'data-kpi="{name}" data-value="([^"]+)"', html)
    assert m, f"no KPI {name} in the page"
    return float(m.group(1))


def api_balance(client: TestClient, **params: str) -> dict:
    r = client.get(f"/api/communities/{CID}/balance", params=params)
    assert r.status_code == 200, r.text
    return r.json()


# --- pages and figures ---------------------------------------------------------------------------


def test_home_lists_the_community(client: TestClient) -> None:
    r = client.get("/", headers=HTML)
    assert r.status_code == 200
    assert 'data-testid="community-card"' in r.text
    assert f'href="/communities/{CID}"' in r.text
    assert re.search(r'data-testid="card-members">14<', r.text)


def test_year_page_equals_the_api(client: TestClient) -> None:
    """Public view of 2016: the totals are the API's yearly balance; no member figures."""
    r = client.get(f"/communities/{CID}", headers=HTML)
    assert r.status_code == 200
    assert "2016-01-01" in r.text and "2017-01-01" in r.text
    row = api_balance(client, freq="1Y", level="community")["community"][0]
    for name in (
        "offtake_kwh",
        "injection_kwh",
        "shared_kwh",
        "residual_offtake_kwh",
        "residual_injection_kwh",
    ):
        assert kpi(r.text, name) == pytest.approx(row[name], rel=1e-9)
    assert kpi(r.text, "self_sufficiency") == pytest.approx(row["self_sufficiency"], rel=1e-9)
    assert kpi(r.text, "self_consumption_rate") == pytest.approx(row["self_consumption_rate"], rel=1e-9)
    assert 'data-testid="member-table"' not in r.text  # public: aggregates only
    assert '<script src="https://' not in r.text and "cdn" not in r.text.lower()


def test_day_page_and_previous_day_equal_the_api(client: TestClient) -> None:
    r = client.get(f"/communities/{CID}", params={"period": "day", "date": "2016-06-15"}, headers=HTML)
    assert r.status_code == 200
    rows = api_balance(client, freq="1D", start="2016-06-14", end="2016-06-16", level="community")[
        "community"
    ]
    assert kpi(r.text, "offtake_kwh") == pytest.approx(rows[1]["offtake_kwh"], rel=1e-9)
    prev = re.search(r'data-prev="offtake_kwh">([^<]+)<', r.text)
    assert prev and float(prev.group(1).replace("\u202f", "")) == pytest.approx(
        rows[0]["offtake_kwh"], abs=0.5
    )


def test_chart_data_is_downsampled_and_consistent(client: TestClient) -> None:
    year = client.get(f"/web/data/communities/{CID}/energy", params={"period": "year"}).json()
    assert (
        year["freq"] == "1D" and len(year["labels"]) == 366
    )  # 2016 is a leap year: 366 days, not 35,136 values
    daily = api_balance(client, freq="1D", level="community")["community"]
    assert year["series"]["consumption"][31] == pytest.approx(daily[31]["offtake_kwh"], abs=1e-3)
    assert year["previous"] is None  # no readings in 2015
    month = client.get(
        f"/web/data/communities/{CID}/energy", params={"period": "month", "date": "2016-03-10"}
    ).json()
    assert len(month["labels"]) == 31 * 24 - 1  # March 2016 lost an hour to DST
    assert month["previous"] is not None and len(month["previous"]["labels"]) == 29 * 24


def test_flows_balance(client: TestClient) -> None:
    """Sankey: what enters a node leaves it; consumption = own use + shared + bought."""
    flows = client.get(f"/web/data/communities/{CID}/flows", params={"period": "year"}).json()
    links = {(x["source"], x["target"]): x["value"] for x in flows["links"]}
    row = api_balance(client, freq="1Y", level="community")["community"][0]
    assert links[("PV", "shared")] == pytest.approx(row["shared_kwh"], abs=1e-3)
    assert links[("PV", "grid_out")] == pytest.approx(row["residual_injection_kwh"], abs=1e-3)
    assert links[("grid_in", "consumption")] == pytest.approx(row["residual_offtake_kwh"], abs=1e-3)
    into = sum(v for (a, b), v in links.items() if b == "consumption")
    assert into == pytest.approx(row["offtake_kwh"] + links[("PV", "own_use")], abs=1e-2)


def test_flows_worked_example() -> None:
    # PV 100 kWh, injection 40 -> own use 60; shared 10 + sold 30 = 40; consumption 60 + 10 + 50 = 120
    totals = {
        "shared_kwh": 10.0,
        "residual_injection_kwh": 30.0,
        "injection_kwh": 40.0,
        "residual_offtake_kwh": 50.0,
    }
    out = web.flows(totals, 100.0)
    links = {(x["source"], x["target"]): x["value"] for x in out["links"]}
    assert links == {
        ("PV", "own_use"): 60.0,
        ("own_use", "consumption"): 60.0,
        ("PV", "shared"): 10.0,
        ("PV", "grid_out"): 30.0,
        ("shared", "consumption"): 10.0,
        ("grid_in", "consumption"): 50.0,
    }
    unknown = web.flows(totals, math.nan)  # production unknown: no own-use node, injection is the source
    assert {x["name"] for x in unknown["nodes"]} == {
        "injection",
        "shared",
        "grid_out",
        "grid_in",
        "consumption",
    }


def test_manager_sees_every_member(client: TestClient) -> None:
    login(client, "manager")
    r = client.get(f"/communities/{CID}", headers=HTML)
    assert r.text.count("<tr data-member=") == 14
    members = api_balance(client, freq="1Y", level="members")["members"]
    mine = next(m for m in members if m["member_id"] == OTHER)
    cell = re.search(rf'data-member="{re.escape(OTHER)}">.*?data-col="offtake_kwh">([^<]+)<', r.text, re.S)
    assert cell and float(cell.group(1).replace("\u202f", "")) == pytest.approx(mine["offtake_kwh"], abs=0.05)
    assert client.get(f"/communities/{CID}/members/{OTHER}", headers=HTML).status_code == 200
    ngsi = client.get("/ngsi", params={"type": "EnergyProsumer"}, headers=HTML)
    assert ngsi.status_code == 200 and "14 entities" in ngsi.text


def test_member_sees_only_their_own_data(client: TestClient) -> None:
    r = client.post("/login", data={"username": "member", "password": "member-demo"}, follow_redirects=False)
    assert r.headers["location"] == f"/communities/{CID}/members/{ME}"
    own = client.get(f"/communities/{CID}/members/{ME}", headers=HTML)
    assert own.status_code == 200 and "Household 1" in own.text
    members = api_balance(client, freq="1Y", level="members")["members"]
    mine = next(m for m in members if m["member_id"] == ME)
    assert kpi(own.text, "offtake_kwh") == pytest.approx(mine["offtake_kwh"], rel=1e-9)
    assert kpi(own.text, "shared_offtake_kwh") == pytest.approx(mine["shared_offtake_kwh"], rel=1e-9)
    other = client.get(f"/communities/{CID}/members/{OTHER}", headers=HTML)
    assert other.status_code == 403 and "Household 2" not in other.text
    assert client.get(f"/web/data/communities/{CID}/members/{OTHER}/energy").status_code == 403
    community = client.get(f"/communities/{CID}", headers=HTML)
    assert community.text.count("<tr data-member=") == 1 and f'data-member="{ME}"' in community.text
    sharing = client.get(f"/communities/{CID}/sharing", headers=HTML)
    assert sharing.status_code == 200
    rows = re.findall(r'<tr data-member="([^"]+)"', sharing.text)
    assert rows and set(rows) == {ME}  # shares and statement lines: their own only
    assert client.get("/ngsi", headers=HTML).status_code == 403


def test_public_cannot_see_members(client: TestClient) -> None:
    for path in (f"/communities/{CID}/members/{ME}", f"/communities/{CID}/sharing", "/ngsi"):
        r = client.get(path, headers=HTML)
        assert r.status_code == 403 and "Household 1" not in r.text, path
    assert client.get(f"/web/data/communities/{CID}/members/{ME}/energy").status_code == 403
    login(client, "public")
    assert client.get(f"/communities/{CID}/members/{ME}", headers=HTML).status_code == 403


def test_statement_equals_the_api(client: TestClient) -> None:
    login(client, "manager")
    prices = {"supplier_energy_eur_per_kwh": "0.30", "feed_in_eur_per_kwh": "0.04", "pricing": "mid_market"}
    r = client.get(
        f"/communities/{CID}/sharing",
        params={"period": "month", "date": "2016-06-01", **prices},
        headers=HTML,
    )
    assert r.status_code == 200, r.text
    api = client.get(f"/api/communities/{CID}/statements", params={"month": "2016-06", **prices}).json()
    line = next(s for s in api["statements"] if s["member_id"] == ME)
    cell = re.search(
        rf'data-member="{re.escape(ME)}"><td>[^<]*</td>.*?data-col="savings_eur">([^<]+)<', r.text, re.S
    )
    assert cell and float(cell.group(1).replace("\u202f", "")) == pytest.approx(
        line["savings_eur"], abs=0.005
    )
    sharing = client.get(f"/api/communities/{CID}/sharing", params={"month": "2016-06"}).json()
    got = next(m for m in sharing["members"] if m["member_id"] == ME)
    share = re.search(
        rf'<tr data-member="{re.escape(ME)}"><th scope="row">.*?data-col="shared_offtake_kwh">([^<]+)<',
        r.text,
        re.S,
    )
    assert share and float(share.group(1).replace("\u202f", "")) == pytest.approx(
        got["shared_offtake_kwh"], abs=0.005
    )


# --- bad input and errors ------------------------------------------------------------------------


def field_error(html: str, field: str) -> str:
    m = re.search(
        rf'id="{field}"[^>]*aria-invalid="true" aria-describedby="{field}-error".*?'
        rf'<p class="error-msg" id="{field}-error" role="alert">([^<]+)</p>',
        html,
        re.S,
    )
    assert m, f"no message next to field {field}"
    return m.group(1)


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"date": "2016-99-01"}, "date", "YYYY-MM-DD"),
        ({"date": "15/06/2016"}, "date", "YYYY-MM-DD"),
        ({"period": "fortnight"}, "period", "day, week, month or year"),
        ({"ef": "-1"}, "ef", "finite number"),
        ({"ef": "abc"}, "ef", "finite number"),
    ],
)
def test_bad_period_input_is_named_next_to_the_field(
    client: TestClient, params: dict, field: str, words: str
) -> None:
    r = client.get(f"/communities/{CID}", params=params, headers=HTML)
    assert r.status_code == 400
    assert words in field_error(r.text, field)
    assert "Traceback" not in r.text


def test_bad_prices_and_login(client: TestClient) -> None:
    r = client.post("/login", data={"username": "", "password": ""}, follow_redirects=False)
    assert r.status_code == 400 and "required" in field_error(r.text, "username")
    r = client.post("/login", data={"username": "manager", "password": "nope"}, follow_redirects=False)
    assert r.status_code == 400 and "wrong password" in field_error(r.text, "password")
    assert "bright_session" not in r.headers.get("set-cookie", "")
    login(client, "manager")
    r = client.get(f"/communities/{CID}/sharing", params={"feed_in_eur_per_kwh": "cheap"}, headers=HTML)
    assert r.status_code == 400 and "finite number" in field_error(r.text, "feed_in_eur_per_kwh")
    r = client.get(f"/communities/{CID}/sharing", params={"pricing": "barter"}, headers=HTML)
    assert r.status_code == 400 and "barter" in field_error(r.text, "pricing")


def test_ngsi_problem_details_next_to_the_field(client: TestClient) -> None:
    login(client, "manager")
    r = client.get("/ngsi", params={"type": "EnergyProsumer", "q": "roleType=="}, headers=HTML)
    assert r.status_code == 400
    assert "BadRequestData" in field_error(r.text, "q") or "request" in field_error(r.text, "q").lower()


def test_no_stack_trace_anywhere(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    r = client.get("/no/such/page", headers=HTML)
    assert r.status_code == 404 and "text/html" in r.headers["content-type"] and "does not exist" in r.text
    r = client.get("/communities/urn:ngsi-ld:EnergyCommunity:nowhere", headers=HTML)
    assert r.status_code == 404 and "text/html" in r.headers["content-type"]

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(web, "community_balance", broken)
    r = client.get(f"/communities/{CID}", params={"period": "week", "date": "2016-02-03"}, headers=HTML)
    assert r.status_code == 500 and "text/html" in r.headers["content-type"]
    assert "secret internal detail" not in r.text and "Traceback" not in r.text
    # the APIs keep their ProblemDetails JSON
    api = client.get("/api/communities/urn:ngsi-ld:EnergyCommunity:nowhere", headers=HTML)
    assert api.status_code == 404 and api.headers["content-type"].startswith("application/json")


def test_language_switch(client: TestClient) -> None:
    r = client.get("/", params={"lang": "fr"}, headers=HTML)
    assert 'lang="fr"' in r.text and "Communautés de ce nœud" in r.text
    assert "lang=fr" in r.headers["set-cookie"]
    assert "Communautés de ce nœud" in client.get("/", headers=HTML).text  # remembered
    client.cookies.clear()
    r = client.get("/", headers={**HTML, "accept-language": "nl-BE,nl;q=0.9,en;q=0.5"})
    assert "Gemeenschappen van dit knooppunt" in r.text


# --- units ---------------------------------------------------------------------------------------


def test_catalogue_is_complete() -> None:
    for key, entry in i18n.MESSAGES.items():
        assert set(entry) == set(i18n.LANGUAGES), key
    assert i18n.translate("no.such.key", "fr") == "no.such.key"
    assert i18n.negotiate(None, None, "de-DE,fr;q=0.4,nl;q=0.6") == "nl"
    assert i18n.negotiate("xx", "fr", None) == "fr"


def test_periods() -> None:
    d = pd.Timestamp("2016-06-30", tz="Europe/Brussels")
    week = web.parse_period("week", "2016-06-15", default_date=d)  # a Wednesday
    assert (week.start, week.end) == (
        pd.Timestamp("2016-06-13", tz="Europe/Brussels"),
        pd.Timestamp("2016-06-20", tz="Europe/Brussels"),
    )
    dst = web.parse_period("week", "2016-03-27", default_date=d)  # the Sunday clocks went forward
    assert dst.start == pd.Timestamp("2016-03-21", tz="Europe/Brussels")
    assert dst.end - dst.start == pd.Timedelta(hours=7 * 24 - 1)
    march = web.parse_period("month", "2016-03-31", default_date=d)
    assert march.previous().start == pd.Timestamp("2016-02-01", tz="Europe/Brussels")
    assert march.next().start == pd.Timestamp("2016-04-01", tz="Europe/Brussels")
    assert web.parse_period(None, None, default_date=d).start == pd.Timestamp(
        "2016-01-01", tz="Europe/Brussels"
    )
    with pytest.raises(web.FieldErrors) as err:
        web.parse_period("hour", "2016-02-30", default_date=d)
    assert set(err.value.errors) == {"period", "date"}


def test_sessions_and_passwords() -> None:
    signer = SessionSigner(b"k" * 32, max_age_s=60)
    user = User("ann", "member", CID, ME)
    cookie = signer.dumps(user, now=1000.0)
    assert signer.loads(cookie, now=1010.0) == user
    assert signer.loads(cookie, now=1061.0) == ANONYMOUS  # expired
    payload, mac = cookie.rsplit(".", 1)
    assert signer.loads(payload + "." + "0" * len(mac), now=1010.0) == ANONYMOUS  # forged
    assert SessionSigner(b"x" * 32).loads(cookie, now=1010.0) == ANONYMOUS  # another node's secret
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$") and verify_password("correct horse", stored)
    assert not verify_password("Correct horse", stored)


@settings(max_examples=20, deadline=None)
@given(st.text(min_size=1, max_size=30), st.sampled_from(["manager", "member", "public"]))
def test_session_roundtrip(name: str, role: str) -> None:
    signer = SessionSigner(b"s" * 32)
    user = User(name, role, None, "urn:x" if role == "member" else None)
    assert signer.loads(signer.dumps(user)) == user


def test_secret_file_is_private(tmp_path: Path) -> None:
    from bright.web.users import node_secret

    first = node_secret(tmp_path)
    assert (tmp_path / "web-secret.key").stat().st_mode & 0o777 == 0o600
    assert node_secret(tmp_path) == first and len(first) == 32


def test_member_paths_are_quoted_safely(client: TestClient) -> None:
    login(client, "manager")
    r = client.get(f"/communities/{CID}/members/{quote('<script>', safe='')}", headers=HTML)
    assert r.status_code == 404 and "<script>" not in r.text
