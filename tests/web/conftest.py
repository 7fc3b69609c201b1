"""Fixtures of the dashboard tests: the demo twin built once per test process, copied per module.

``bright demo --no-serve`` (14 members, a year of 2016 quarter-hours, S-BRIGHT answers, the
forecast and schedule of 2017-01-01) takes a minute; each test module gets its own copy of the
SQLite file (and of the node's data directory), so a module that saves a sharing key, answers the
questionnaire or records a settlement does not change what another module sees.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CID = "urn:ngsi-ld:EnergyCommunity:school-371"
ME = "urn:ngsi-ld:EnergyProsumer:school-371:home01"
OTHER = "urn:ngsi-ld:EnergyProsumer:school-371:home02"


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the demo twin ``demo.db`` (built once per test process)."""
    directory = tmp_path_factory.mktemp("web-demo-template")
    url = f"sqlite:///{directory / 'demo.db'}"
    subprocess.run(
        [sys.executable, "-m", "bright.cli", "demo", "--no-serve", "--database", url],
        check=True,
        capture_output=True,
        timeout=600,
        cwd=directory,  # anything the command writes next to its working directory stays here
    )
    return directory


def copy_demo(template: Path, directory: Path) -> str:
    """Copy the demo twin (and its data directory) into ``directory``; returns the database URL."""
    target = directory / "demo"
    shutil.copytree(template, target)
    return f"sqlite:///{target / 'demo.db'}"


@pytest.fixture(scope="module")
def demo_url(demo_template: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """This module's own copy of the demo twin."""
    return copy_demo(demo_template, tmp_path_factory.mktemp("web-demo"))


# --- a real server and Debian's chromium for the browser tests ----------------------------------

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def require_browser() -> None:
    """Skip without chromium or Playwright (fail when BRIGHT_REQUIRE_SERVICES=1)."""
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    """A uvicorn server of this module's demo node on a free port (in a thread); yields its base URL."""
    require_browser()
    import uvicorn

    from bright.api.app import create_app
    from bright.config import Settings
    from bright.web import app as web
    from bright.web.users import add_demo_users

    url = request.getfixturevalue("demo_url")
    app = create_app(Settings(database_url=url))
    web.install(app)
    add_demo_users(app.state.twin.engine, CID, ME)
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


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[object]:
    """Debian's chromium driven by Playwright (headless)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()
