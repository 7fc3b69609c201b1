"""Browser tests of the analysis, sharing-key, S-BRIGHT, ledger and network pages.

Playwright drives Debian's chromium against a real uvicorn server of the demo node. The pages are
walked as the public visitor, the member and the manager; the figures shown are compared with the
REST API's (asked with the manager's session), forms are filled in with bad input (the message must
appear next to the field), the ledger's inclusion proof is checked by the page's own script, and
screenshots are written to ``docs/img/web-*.png`` (the documentation's) and to
``artifacts/screenshots/``. The time until each page's charts are drawn is written to
``artifacts/screenshots/timing-pages.txt``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.browser

CID = "urn:ngsi-ld:EnergyCommunity:school-371"
ME = "urn:ngsi-ld:EnergyProsumer:school-371:home01"
OTHER = "urn:ngsi-ld:EnergyProsumer:school-371:home02"
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
DOC_IMG = ROOT / "docs" / "img"
VIEW = {"width": 1100, "height": 800}
TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def manager_api(server: str) -> Iterator[httpx.Client]:
    """An HTTP client of the server with the manager's session (the API's access control)."""
    with httpx.Client(base_url=server, timeout=120) as c:
        r = c.post("/login", data={"username": "manager", "password": "manager-demo"})
        assert r.status_code in (200, 303), r.text
        yield c


@pytest.fixture(scope="module", autouse=True)
def _timings() -> Iterator[None]:
    yield
    if TIMES:
        SHOTS.mkdir(parents=True, exist_ok=True)
        lines = [f"{k} {v:.0f}" for k, v in sorted(TIMES.items())]
        (SHOTS / "timing-pages.txt").write_text("\n".join(lines) + "\n", "utf-8")
        print("\ncharts drawn after (ms): " + ", ".join(lines))


def _page(browser: object, **kwargs: object) -> object:
    context = browser.new_context(viewport=VIEW, **kwargs)  # type: ignore[attr-defined]
    return context.new_page()


def _login(page: object, base: str, user: str) -> None:
    page.goto(f"{base}/login")  # type: ignore[attr-defined]
    page.get_by_label("User name").fill(user)  # type: ignore[attr-defined]
    page.get_by_label("Password").fill(f"{user}-demo")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Log in").click()  # type: ignore[attr-defined]
    page.wait_for_load_state()  # type: ignore[attr-defined]


def _shot(page: object, name: str, *, full: bool = False) -> None:
    """Screenshot for the documentation (docs/img/web-NAME.png) and the test artefacts."""
    DOC_IMG.mkdir(parents=True, exist_ok=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOC_IMG / f"web-{name}.png"), full_page=full)  # type: ignore[attr-defined]
    page.screenshot(path=str(SHOTS / f"web-{name}.png"), full_page=True)  # type: ignore[attr-defined]


def _charts(page: object, name: str) -> None:
    page.wait_for_selector("body[data-charts-ready='1']", timeout=60_000)  # type: ignore[attr-defined]
    TIMES[name] = float(page.evaluate("window.brightChartsReadyAt"))  # type: ignore[attr-defined]


def _value(page: object, selector: str) -> float:
    return float(page.locator(selector).first.get_attribute("data-value"))  # type: ignore[attr-defined]


def test_public_forecast_network_and_ledger(server: str, browser: object, manager_api: httpx.Client) -> None:
    page = _page(browser)
    page.goto(f"{server}/communities/{CID}/forecast")  # type: ignore[attr-defined]
    _charts(page, "forecast")
    api = manager_api.get(f"/api/communities/{CID}/forecast").json()
    cons = next(f for f in api["forecasts"] if f["target"] == CID and f["quantity"] == "consumption")
    assert _value(page, "[data-fc='consumption-q50']") == pytest.approx(cons["total_kwh"]["q50"], rel=1e-6)
    assert page.locator("#chart-consumption canvas").count() >= 1  # type: ignore[attr-defined]
    assert page.locator("[data-testid=make-forecast]").count() == 0  # type: ignore[attr-defined]
    _shot(page, "forecast")

    # the network: publish the node's card (manager), then the public map and the school search
    assert manager_api.post(f"/network/cards/{CID}/refresh").status_code in (200, 303)
    page.goto(f"{server}/network")  # type: ignore[attr-defined]
    _charts(page, "network")
    page.get_by_label("schools").check()  # type: ignore[attr-defined]
    page.get_by_role("button", name="Find").click()  # type: ignore[attr-defined]
    page.wait_for_load_state()  # type: ignore[attr-defined]
    found = manager_api.get("/api/network/search", params={"schools": "true"}).json()
    shown = page.locator("[data-testid=results] li").evaluate_all(  # type: ignore[attr-defined]
        "els => els.map(e => e.dataset.card)"
    )
    assert shown == [m["card"]["id"] for m in found["results"]] and CID in shown
    _charts(page, "network_search")
    _shot(page, "network")
    page.get_by_label("At least (members)").fill("many")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Find").click()  # type: ignore[attr-defined]
    page.wait_for_load_state()  # type: ignore[attr-defined]
    assert page.locator("#min_members-error").is_visible()  # type: ignore[attr-defined]

    # mobility scenarios of the demo, side by side
    page.goto(f"{server}/communities/{CID}/mobility")  # type: ignore[attr-defined]
    _charts(page, "mobility")
    stored = manager_api.get(f"/api/communities/{CID}/scenarios").json()["scenarios"]
    columns = page.locator("[data-testid=scenario-table] thead th[data-scenario]")  # type: ignore[attr-defined]
    assert columns.count() == min(len(stored), 6) > 0
    _shot(page, "mobility")

    # a public visitor may not open member-level or manager pages
    for path in (f"/communities/{CID}/flexibility", f"/communities/{CID}/sharing-key"):
        page.goto(server + path)  # type: ignore[attr-defined]
        assert "403" in page.locator("[data-testid=error]").inner_text()  # type: ignore[attr-defined]


def test_manager_sharing_key_flexibility_fairness_ledger(
    server: str, browser: object, manager_api: httpx.Client
) -> None:
    page = _page(browser)
    _login(page, server, "manager")
    # sharing-key editor: a key that does not sum to 100 is refused next to the key
    page.goto(f"{server}/communities/{CID}/sharing-key")  # type: ignore[attr-defined]
    page.select_option("#method", "fixed")  # type: ignore[attr-defined]
    inputs = page.locator("fieldset.keys input")  # type: ignore[attr-defined]
    roles = manager_api.get(f"/api/communities/{CID}").json()["members"]
    takers = [i for i, m in enumerate(roles) if m["role"] != "producer"]
    for i in range(inputs.count()):
        inputs.nth(i).fill("10" if i in takers else "")
    page.get_by_label("Preview day (YYYY-MM-DD)").fill("2016-06-15")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Preview").click()  # type: ignore[attr-defined]
    page.wait_for_load_state()  # type: ignore[attr-defined]
    assert page.locator("[data-testid=key-sum-error]").is_visible()  # type: ignore[attr-defined]
    assert f"{10 * len(takers)}" in page.locator("[data-testid=key-sum-error]").inner_text()  # type: ignore[attr-defined]
    share = round(100 / len(takers), 4)
    for k, i in enumerate(takers):
        inputs.nth(i).fill(f"{share if k else 100 - share * (len(takers) - 1):.4f}")
    page.get_by_role("button", name="Preview").click()  # type: ignore[attr-defined]
    _charts(page, "sharing_key_preview")
    assert page.locator("[data-testid=preview-table] tbody tr").count() == len(roles)  # type: ignore[attr-defined]
    _shot(page, "sharing-key")

    # flexibility in compare mode: the value stacked equals the API's
    page.goto(f"{server}/communities/{CID}/flexibility?mode=compare")  # type: ignore[attr-defined]
    _charts(page, "flexibility")
    sched = manager_api.get(f"/api/communities/{CID}/schedule", params={"mode": "compare"}).json()
    assert _value(page, "[data-flex=value_total_eur]") == pytest.approx(sched["value_total_eur"], abs=1e-9)
    assert page.locator("[data-testid=device-table] tbody tr").count() == len(sched["devices"])  # type: ignore[attr-defined]
    assert page.locator("[data-testid=compare-summary]").is_visible()  # type: ignore[attr-defined]
    _shot(page, "flexibility")

    # fairness of a week
    page.goto(f"{server}/communities/{CID}/fairness?period=week&date=2016-06-15")  # type: ignore[attr-defined]
    _charts(page, "fairness")
    fair = manager_api.get(
        f"/api/communities/{CID}/fairness", params={"start": "2016-06-13", "end": "2016-06-20"}
    ).json()
    assert _value(page, "[data-fair=grand_coalition_eur]") == pytest.approx(
        fair["grand_coalition_eur"], abs=1e-9
    )
    _shot(page, "fairness")

    # engagement mix
    page.goto(f"{server}/communities/{CID}/engagement")  # type: ignore[attr-defined]
    _charts(page, "engagement")
    _shot(page, "engagement")

    # ledger: record two hours of settlement, then check a record's proof in this browser
    page.goto(f"{server}/ledger")  # type: ignore[attr-defined]
    page.get_by_label("From (YYYY-MM-DD)").fill("2016-06-15")  # type: ignore[attr-defined]
    page.get_by_label("To, excluded (YYYY-MM-DD)").fill("2016-06-15T02:00")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Settle and record").click()  # type: ignore[attr-defined]
    page.wait_for_load_state()  # type: ignore[attr-defined]
    assert page.locator("[data-testid=settled]").is_visible()  # type: ignore[attr-defined]
    heads = manager_api.get("/api/ledger/heads").json()
    assert heads["size"] > 0
    assert page.locator("[data-testid=heads-table] tbody tr").count() == len(heads["heads"])  # type: ignore[attr-defined]
    record = heads["size"] - 1
    page.get_by_label("Record number").fill(str(record))  # type: ignore[attr-defined]
    page.get_by_role("button", name="Check in this browser").click()  # type: ignore[attr-defined]
    page.wait_for_selector("body[data-verified='ok']", timeout=30_000)  # type: ignore[attr-defined]
    bundle = manager_api.get(f"/api/ledger/records/{record}/proof").json()
    assert bundle["head"]["root"] in page.locator("[data-testid=verify-result]").inner_text()  # type: ignore[attr-defined]
    _shot(page, "ledger")
    page.get_by_label("Record number").fill("seven")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Check in this browser").click()  # type: ignore[attr-defined]
    assert page.locator("#record-error").is_visible()  # type: ignore[attr-defined]


def test_member_questionnaire_and_own_pages(server: str, browser: object, manager_api: httpx.Client) -> None:
    page = _page(browser)
    _login(page, server, "member")
    page.goto(f"{server}/communities/{CID}/members/{ME}/questionnaire")  # type: ignore[attr-defined]
    items = page.locator("form.questionnaire fieldset.item")  # type: ignore[attr-defined]
    n = items.count()
    assert n > 20
    for i in range(n):
        radios = items.nth(i).locator("input[type=radio]")
        radios.nth(radios.count() - 1).check()
    page.get_by_role("button", name="Send my answers").click()  # type: ignore[attr-defined]
    page.wait_for_load_state()  # type: ignore[attr-defined]
    assert page.locator("#consent-error").is_visible()  # type: ignore[attr-defined]
    page.locator("#consent").check()  # type: ignore[attr-defined]
    for i in range(n):  # the answers are kept on the page shown again
        assert items.nth(i).locator("input[type=radio]:checked").count() == 1
    page.get_by_role("button", name="Send my answers").click()  # type: ignore[attr-defined]
    page.wait_for_selector("[data-testid=saved]", timeout=120_000)  # type: ignore[attr-defined]
    profile = manager_api.get(f"/api/members/{ME}/profile").json()
    assert profile["source"] == "member"
    category = page.locator("[data-testid=category]").inner_text()  # type: ignore[attr-defined]
    assert category == profile["category"]["names"]["en"]
    _shot(page, "questionnaire")

    # flexibility: only the member's own devices
    page.goto(f"{server}/communities/{CID}/flexibility")  # type: ignore[attr-defined]
    _charts(page, "flexibility_member")
    sched = manager_api.get(f"/api/communities/{CID}/schedule", params={"mode": "compare"}).json()
    mine = [d for d in sched["devices"] if d["member"] == ME]
    assert page.locator("[data-testid=device-table] tbody tr").count() == len(mine)  # type: ignore[attr-defined]
    assert re.search("Household 2", page.content()) is None  # type: ignore[attr-defined]
    # another member's questionnaire, forecast or DVPP statement: refused
    for path in (
        f"/communities/{CID}/members/{OTHER}/questionnaire",
        f"/communities/{CID}/members/{OTHER}/dvpp",
        f"/communities/{CID}/forecast?target={OTHER}",
        f"/communities/{CID}/sharing-key",
    ):
        page.goto(server + path)  # type: ignore[attr-defined]
        assert "403" in page.locator("[data-testid=error]").inner_text()  # type: ignore[attr-defined]
    page.goto(f"{server}/communities/{CID}/members/{ME}/dvpp")  # type: ignore[attr-defined]
    _shot(page, "dvpp")


def test_new_pages_fit_a_phone(server: str, browser: object) -> None:
    """Nothing wider than a 390 px phone screen (tables scroll inside the page), in French."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="fr-BE")  # type: ignore[attr-defined]
    page = context.new_page()
    for path in (f"/communities/{CID}/forecast", f"/communities/{CID}/mobility", "/network", "/ledger"):
        page.goto(server + path)
        if page.locator("#page-data").count():
            page.wait_for_selector("body[data-charts-ready='1']", timeout=60_000)
        assert page.locator("html").get_attribute("lang") == "fr"
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (path, width)
    page.screenshot(path=str(SHOTS / "web-ledger-phone-fr.png"), full_page=True)
