"""Browser test of creating a community: Playwright driving Debian's chromium against a uvicorn server.

A manager of a hosted tenant creates a community with the wizard, three people join through their
invitation links (EAN, assets, consents, an account), one of them revokes the sharing consent, the
manager sets the sharing key and downloads the DSO pack: the member who revoked is not declared
(the revocation takes effect) and the key is renormalised over the others.
"""

from __future__ import annotations

import csv
import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sample_community import valid_ean

from bright.api.app import create_app
from bright.config import Settings
from bright.services.tenants import TenantRegistry
from bright.web.users import create_user

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
TENANT = "tournesols"


def _require_browser() -> None:
    required = os.environ.get("BRIGHT_REQUIRE_SERVICES", "").strip() in {"1", "true", "yes"}
    missing = not Path(CHROMIUM).exists()
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = True
    if missing:
        if required:
            pytest.fail(f"{CHROMIUM} or playwright is missing and BRIGHT_REQUIRE_SERVICES=1", pytrace=False)
        pytest.skip(f"{CHROMIUM} or playwright is missing")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A uvicorn server (thread) of an empty node hosting tenant ``tournesols`` with its manager."""
    _require_browser()
    import uvicorn

    directory = tmp_path_factory.mktemp("onboarding-browser")
    saved = {k: os.environ.get(k) for k in ("BRIGHT_AUTH",)}
    os.environ["BRIGHT_AUTH"] = "open"  # the role table is not what this test checks
    app = create_app(Settings.from_env(database_url=f"sqlite:///{directory / 'node.db'}"))
    engine = app.state.twin.engine
    TenantRegistry(engine).create(TENANT, title="Les Tournesols", manager="founder")
    create_user(engine, "founder", "founder-password", "manager")
    port = _free_port()
    srv = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
        engine.dispose()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def _login(page: object, base: str, user: str, password: str, next_path: str) -> None:
    page.goto(f"{base}/login?next={next_path}")  # type: ignore[attr-defined]
    page.get_by_label("User name").fill(user)  # type: ignore[attr-defined]
    page.get_by_label("Password").fill(password)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Log in").click()  # type: ignore[attr-defined]
    page.wait_for_load_state()  # type: ignore[attr-defined]


def test_create_invite_consent_key_and_dso_pack(server: str, browser: object) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    manager = browser.new_context(accept_downloads=True).new_page()  # type: ignore[attr-defined]
    _login(manager, server, "founder", "founder-password", "/onboarding")
    assert manager.url.endswith("/onboarding")
    manager.get_by_test_id("new-community").click()
    # The wizard: card, legal form, perimeter and locality, sharing, tariffs, data policy.
    manager.fill("#name", "Les Tournesols de Forest")
    manager.fill("#postal_code", "1190")
    manager.fill("#municipality", "Forest")
    manager.select_option("#legal_form", "CEC")
    manager.select_option("#perimeter", "lv_cabin")
    manager.fill("#locality_name", "Cabine BT 7731 Avenue Van Volxem")
    manager.select_option("#sharing_method", "fixed")
    manager.fill("#community_price", "0.40")  # above the supplier price: refused, field named
    manager.get_by_role("button", name="Create the community").click()
    manager.wait_for_load_state()
    assert manager.locator("#community_price-error").is_visible()
    manager.fill("#community_price", "0.16")
    manager.screenshot(path=str(SHOTS / "onboarding-wizard.png"), full_page=True)
    manager.get_by_role("button", name="Create the community").click()
    manager.wait_for_load_state()
    assert "/onboarding/c/urn:ngsi-ld:EnergyCommunity:les-tournesols-de-forest" in manager.url
    assert manager.get_by_test_id("community-name").inner_text() == "Les Tournesols de Forest"
    community_url = manager.url

    people = [("Aline Dupont", valid_ean(1101), "4.2", "aline"), ("Bram Peeters", valid_ean(1102), "", "bram"),
              ("Chloé Martin", valid_ean(1103), "", "chloe")]  # fmt: skip
    for name, ean, pv, user in people:
        manager.goto(community_url)
        manager.get_by_test_id("invite").click()
        manager.wait_for_load_state()
        link = manager.get_by_test_id("invitation-link").get_attribute("href")
        assert link and "/onboarding/join?token=" in link
        assert link in manager.locator("#email-text").input_value()
        person = browser.new_context().new_page()  # type: ignore[attr-defined]
        person.goto(link)
        person.fill("#name", name)
        person.fill("#email", f"{user}@example.be")
        person.fill("#ean", ean[:-1] + str((int(ean[-1]) + 3) % 10))  # a typo in the check digit first
        person.fill("#username", user)
        person.fill("#password", f"{user}-password")
        if pv:
            person.fill("#pv_kwp", pv)
            person.select_option("#role", "prosumer")
        person.check("input[name=consent_sbright]")
        person.get_by_role("button", name="Join the community").click()
        person.wait_for_load_state()
        assert "check digit" in person.locator("#ean-error").inner_text()
        person.fill("#ean", ean)
        person.fill("#password", f"{user}-password")
        person.get_by_role("button", name="Join the community").click()
        person.wait_for_load_state()
        assert person.get_by_test_id("joined").is_visible()
        if user == "aline":
            person.screenshot(path=str(SHOTS / "onboarding-joined.png"), full_page=True)
        person.context.close()

    # Bram revokes his sharing consent from his own page.
    bram = browser.new_context().new_page()  # type: ignore[attr-defined]
    _login(bram, server, "bram", "bram-password", "/onboarding/me")
    assert "granted" in bram.get_by_test_id("consent-sharing").inner_text()
    bram.get_by_test_id("revoke-sharing").click()
    bram.wait_for_load_state()
    assert "revoked" in bram.get_by_test_id("consent-sharing").inner_text()
    assert "granted" in bram.get_by_test_id("consent-sbright").inner_text()
    bram.screenshot(path=str(SHOTS / "onboarding-consents.png"), full_page=True)
    bram.context.close()

    # The manager sees the three members, Bram's revocation, and sets the key.
    manager.goto(community_url)
    rows = manager.locator("[data-testid=members] tbody tr")
    assert rows.count() == 3
    bram_row = manager.locator("[data-testid=members] tbody tr", has_text="Bram Peeters")
    assert "revoked" in bram_row.locator("[data-consent=sharing]").inner_text()
    for name, pct in (("Aline Dupont", "50"), ("Bram Peeters", "30"), ("Chloé Martin", "20")):
        manager.get_by_label(f"{name} (%)").fill(pct)
    manager.select_option("#sharing_method", "fixed")
    manager.get_by_test_id("save-key").click()
    manager.wait_for_load_state()
    assert manager.get_by_label("Aline Dupont (%)").input_value() in ("50", "50.0")
    manager.screenshot(path=str(SHOTS / "onboarding-community.png"), full_page=True)

    with manager.expect_download() as info:
        manager.get_by_test_id("dso-pack").click()
    pack = Path(info.value.path()).read_text("utf-8")
    rows_csv = list(csv.DictReader(io.StringIO(pack)))
    declared = {r["ean"]: float(r["key_percent"]) for r in rows_csv}
    # The revoked consent takes effect: Bram's access point is not declared; the key is renormalised.
    assert set(declared) == {valid_ean(1101), valid_ean(1103)}
    assert declared[valid_ean(1101)] == pytest.approx(100 * 50 / 70, abs=1e-3)
    assert declared[valid_ean(1103)] == pytest.approx(100 * 20 / 70, abs=1e-3)
    assert all(
        r["legal_form"] == "CEC" and r["locality_name"] == "Cabine BT 7731 Avenue Van Volxem"
        for r in rows_csv
    )
    manager.get_by_test_id("statutes").click()
    manager.wait_for_load_state()
    assert manager.locator("[data-testid=statutes-list] li").count() >= 8
    manager.context.close()
