"""Browser test of the offers pages: a member compares a bundle and subscribes with consent; the
provider sees its subscriber and what it may use. Playwright drives Debian's chromium against a
uvicorn server (same launch options as tests/web)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from tests.offers.home import small_home
from tests.web.conftest import ARGS, CHROMIUM, free_port, require_browser

pytestmark = pytest.mark.browser

CID = "urn:ngsi-ld:EnergyCommunity:school-371"
ME = "urn:ngsi-ld:EnergyProsumer:school-371:home02"
EV_PROVIDER = "urn:ngsi-ld:Organization:ev-charge-manager"
OFFER = "urn:ngsi-ld:ServiceOffer:"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_browser()
    import uvicorn

    from bright.api import offers as offers_api
    from bright.api.app import create_app
    from bright.config import Settings
    from bright.services.demo import build_demo_community
    from bright.services.offers import OfferService, seed_demo_offers
    from bright.web.users import create_user

    url = f"sqlite:///{tmp_path_factory.mktemp('offers-web') / 'twin.db'}"
    app = create_app(Settings(database_url=url))
    twin = app.state.twin
    community = build_demo_community()
    res = twin.batch_upsert("", community.entities, twin.resolve_context(community.entities[0]["@context"]))
    assert not res["errors"]
    svc = OfferService(twin, home_of=lambda c, m, t: small_home(7))
    offers_api.install(app, service=svc)
    seed_demo_offers(svc, CID)
    create_user(twin.engine, "member", "member-pw", "member", community_id=CID, member_id=ME)
    create_user(twin.engine, EV_PROVIDER, "provider-pw", "technology_provider")
    port = free_port()
    srv = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
        twin.engine.dispose()


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def _login(browser: object, base: str, user: str, password: str) -> object:
    page = browser.new_context().new_page()  # type: ignore[attr-defined]
    page.goto(f"{base}/login")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    return page


def test_member_compares_and_subscribes_provider_sees_grants(server: str, browser: object) -> None:
    page = _login(browser, server, "member", "member-pw")
    page.goto(f"{server}/communities/{CID}/members/{ME}/offers")  # type: ignore[attr-defined]
    rows = page.locator("[data-testid=offers] tbody tr")  # type: ignore[attr-defined]
    assert rows.count() == 6
    assert page.locator("[data-testid=reason]").first.inner_text().strip()  # type: ignore[attr-defined]
    # compare a bundle of two offers over 7 days
    for oid in ("fcr-aggregator", "community-battery"):
        page.locator(f'tr[data-offer="{OFFER}{oid}"] input[type=checkbox]').check()  # type: ignore[attr-defined]
    page.locator("select[name=days]").select_option("7")  # type: ignore[attr-defined]
    page.get_by_test_id("compare").click()  # type: ignore[attr-defined]
    page.wait_for_selector("[data-testid=comparison]", timeout=120_000)  # type: ignore[attr-defined]
    gain = float(page.get_by_test_id("gain").inner_text().replace(",", ""))  # type: ignore[attr-defined]
    assert gain >= 0
    assert page.locator("[data-testid=per-offer] tbody tr").count() == 2  # type: ignore[attr-defined]
    # subscribing without ticking the consent box is refused
    form = page.locator(f'form.subscribe[data-offer="{OFFER}ev-smart-charging"]')  # type: ignore[attr-defined]
    form.get_by_test_id("subscribe").click()
    page.wait_for_selector("[data-testid=error]")  # type: ignore[attr-defined]
    # with consent
    form = page.locator(f'form.subscribe[data-offer="{OFFER}ev-smart-charging"]')  # type: ignore[attr-defined]
    form.locator("input[name=consent]").check()
    form.get_by_test_id("subscribe").click()
    page.wait_for_selector("[data-testid=done]")  # type: ignore[attr-defined]
    assert (
        page.locator(
            f'form.subscribe[data-offer="{OFFER}ev-smart-charging"] [data-testid=subscribed]'
        ).count()
        == 1
    )  # type: ignore[attr-defined]

    provider = _login(browser, server, EV_PROVIDER, "provider-pw")
    provider.goto(f"{server}/providers/{EV_PROVIDER}/subscribers")  # type: ignore[attr-defined]
    sub = provider.locator(f'[data-testid=subscriber][data-member="{ME}"]')  # type: ignore[attr-defined]
    assert sub.count() == 1
    text = sub.locator("[data-testid=grants]").inner_text()
    assert "EVChargingStation" in text and "18-08h" in text and "offtake" in text
    # the member's page of another provider is not the provider's business
    provider.goto(f"{server}/providers/urn:ngsi-ld:Organization:safe-home/subscribers")  # type: ignore[attr-defined]
    assert "403" in provider.locator("[data-testid=error]").inner_text()  # type: ignore[attr-defined]
