"""Browser tests of the dashboard: Playwright driving Debian's chromium against a real uvicorn server.

Logs in as manager, member and public visitor, checks that the figures shown are the REST API's, that a
member cannot open another member's page, saves screenshots to ``artifacts/screenshots/`` and prints
the time until the community page with a year of data is interactive (charts rendered).
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

CID = "urn:ngsi-ld:EnergyCommunity:school-371"
ME = "urn:ngsi-ld:EnergyProsumer:school-371:home01"
OTHER = "urn:ngsi-ld:EnergyProsumer:school-371:home02"

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


def _page(browser: object, **kwargs: object) -> object:
    context = browser.new_context(**kwargs)  # type: ignore[attr-defined]
    return context.new_page()


def _login(page: object, base: str, user: str) -> None:
    page.goto(f"{base}/login")  # type: ignore[attr-defined]
    page.get_by_label("User name").fill(user)  # type: ignore[attr-defined]
    page.get_by_label("Password").fill(f"{user}-demo")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Log in").click()  # type: ignore[attr-defined]
    page.wait_for_load_state()  # type: ignore[attr-defined]


def _number(text: str) -> float:
    return float(re.sub(r"[^\d.\-]", "", text))


def _year_api(base: str) -> dict:
    r = httpx.get(f"{base}/api/communities/{CID}/balance", params={"freq": "1Y", "level": "all"}, timeout=60)
    r.raise_for_status()
    return r.json()


def test_public_visitor_sees_aggregates_and_time_to_interactive(server: str, browser: object) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = _page(browser)
    page.goto(server + "/")  # type: ignore[attr-defined]
    assert page.locator("[data-testid=community-card]").count() == 1  # type: ignore[attr-defined]
    page.screenshot(path=str(SHOTS / "home-public.png"), full_page=True)  # type: ignore[attr-defined]
    api = _year_api(server)["community"][0]
    times = []
    for _ in range(3):  # the first load also warms the caches; report the median of three
        page.goto(f"{server}/communities/{CID}")  # type: ignore[attr-defined]
        page.wait_for_selector("body[data-charts-ready='1']", timeout=30_000)  # type: ignore[attr-defined]
        times.append(page.evaluate("window.brightChartsReadyAt"))  # type: ignore[attr-defined]
    ms = sorted(times)[1]
    print(
        f"\ncommunity page (year of 15-min data) interactive after {ms:.0f} ms (median of 3: {times}); target 1500 ms"
    )
    (SHOTS / "timing.txt").write_text(f"community_page_interactive_ms {ms:.0f}\n", "utf-8")
    shown = _number(page.locator("[data-kpi=offtake_kwh]").inner_text())  # type: ignore[attr-defined]
    assert shown == pytest.approx(api["offtake_kwh"], abs=0.5)
    shared = _number(page.locator("[data-kpi=shared_kwh]").inner_text())  # type: ignore[attr-defined]
    assert shared == pytest.approx(api["shared_kwh"], abs=0.5)
    assert page.locator("[data-testid=member-table]").count() == 0  # type: ignore[attr-defined]
    assert page.locator("#chart-energy canvas").count() >= 1  # type: ignore[attr-defined]
    page.screenshot(path=str(SHOTS / "community-year-public.png"), full_page=True)  # type: ignore[attr-defined]
    page.goto(f"{server}/communities/{CID}/members/{ME}")  # type: ignore[attr-defined]
    assert "403" in page.locator("[data-testid=error]").inner_text()  # type: ignore[attr-defined]


def test_manager_sees_everything(server: str, browser: object) -> None:
    page = _page(browser)
    _login(page, server, "manager")
    assert "manager" in page.locator("[data-testid=who]").inner_text()  # type: ignore[attr-defined]
    page.goto(f"{server}/communities/{CID}")  # type: ignore[attr-defined]
    page.wait_for_selector("body[data-charts-ready='1']", timeout=30_000)  # type: ignore[attr-defined]
    rows = page.locator("[data-testid=member-table] tbody tr")  # type: ignore[attr-defined]
    assert rows.count() == 14
    members = {m["member_id"]: m for m in _year_api(server)["members"]}
    cell = page.locator(f'tr[data-member="{OTHER}"] td[data-col=offtake_kwh]').inner_text()  # type: ignore[attr-defined]
    assert _number(cell) == pytest.approx(members[OTHER]["offtake_kwh"], abs=0.05)
    page.screenshot(path=str(SHOTS / "community-year-manager.png"), full_page=True)  # type: ignore[attr-defined]
    page.goto(  # type: ignore[attr-defined]
        f"{server}/communities/{CID}/sharing?period=month&date=2016-06-01&pricing=mid_market"
        "&supplier_energy_eur_per_kwh=0.30&feed_in_eur_per_kwh=0.04"
    )
    assert page.locator("[data-testid=statement-table] tbody tr").count() == 14  # type: ignore[attr-defined]
    page.screenshot(path=str(SHOTS / "sharing-manager.png"), full_page=True)  # type: ignore[attr-defined]
    page.goto(f"{server}/ngsi?type=EnergyProsumer")  # type: ignore[attr-defined]
    assert "14 entities" in page.locator("[data-testid=entity-count]").inner_text()  # type: ignore[attr-defined]
    page.get_by_label(re.compile("Query")).fill("roleType==")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Search").click()  # type: ignore[attr-defined]
    assert page.locator("#q-error").is_visible()  # type: ignore[attr-defined]
    page.screenshot(path=str(SHOTS / "ngsi-error-manager.png"), full_page=True)  # type: ignore[attr-defined]


def test_member_sees_only_their_page(server: str, browser: object) -> None:
    page = _page(browser)
    _login(page, server, "member")
    assert page.url.endswith(f"/members/{ME}")  # type: ignore[attr-defined]
    page.wait_for_selector("body[data-charts-ready='1']", timeout=30_000)  # type: ignore[attr-defined]
    members = {m["member_id"]: m for m in _year_api(server)["members"]}
    shown = _number(page.locator("[data-kpi=offtake_kwh]").inner_text())  # type: ignore[attr-defined]
    assert shown == pytest.approx(members[ME]["offtake_kwh"], abs=0.05)
    page.screenshot(path=str(SHOTS / "member-own-page.png"), full_page=True)  # type: ignore[attr-defined]
    page.goto(f"{server}/communities/{CID}/members/{OTHER}")  # type: ignore[attr-defined]
    assert "403" in page.locator("[data-testid=error]").inner_text()  # type: ignore[attr-defined]
    assert "Household 2" not in page.content()  # type: ignore[attr-defined]
    page.screenshot(path=str(SHOTS / "member-other-forbidden.png"), full_page=True)  # type: ignore[attr-defined]


def test_phone_layout_and_bad_input(server: str, browser: object) -> None:
    page = _page(browser, viewport={"width": 390, "height": 844}, locale="fr-BE")
    page.goto(f"{server}/communities/{CID}?period=month&date=2016-06-01")  # type: ignore[attr-defined]
    page.wait_for_selector("body[data-charts-ready='1']", timeout=30_000)  # type: ignore[attr-defined]
    assert page.locator("html").get_attribute("lang") == "fr"  # type: ignore[attr-defined]
    width = page.evaluate("document.documentElement.scrollWidth")  # type: ignore[attr-defined]
    assert width <= 390  # nothing wider than the phone's screen
    page.screenshot(path=str(SHOTS / "community-month-phone-fr.png"), full_page=True)  # type: ignore[attr-defined]
    page.get_by_label("Date dans la période").fill("2016-02-30")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Afficher").click()  # type: ignore[attr-defined]
    page.wait_for_load_state()  # type: ignore[attr-defined]
    assert "AAAA-MM-JJ" in page.locator("#date-error").inner_text()  # type: ignore[attr-defined]
    page.screenshot(path=str(SHOTS / "bad-date-phone-fr.png"), full_page=True)  # type: ignore[attr-defined]
