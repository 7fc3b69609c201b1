"""Shared fixtures: real PostgreSQL databases and SQLite files per test, API clients on both.

``BRIGHT_REQUIRE_SERVICES=1`` (set by .ci/run) turns a skip for a missing PostgreSQL or MQTT
broker into a failure, so CI cannot pass by skipping the real-service tests.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

# Tests that are not about access control run the node without it (docs/access.md); the access
# tests (tests/access) build their nodes with Settings(auth="required").
os.environ["BRIGHT_AUTH"] = "open"

PG_ADMIN_URL = os.environ.get("BRIGHT_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883


def services_required() -> bool:
    return os.environ.get("BRIGHT_REQUIRE_SERVICES", "").strip() in {"1", "true", "yes"}


def missing_service(what: str) -> None:
    """Skip the test, or fail it when services are required."""
    if services_required():
        pytest.fail(f"{what} is not reachable and BRIGHT_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(f"{what} is not reachable")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@contextmanager
def fresh_pg_database(prefix: str = "bright_test") -> Iterator[str]:
    """Create a PostgreSQL database with a random name, yield its URL, drop it afterwards."""
    if not port_open("127.0.0.1", 5432):
        missing_service("PostgreSQL on 127.0.0.1:5432")
    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - depends on the machine
        admin.dispose()
        missing_service(f"PostgreSQL ({exc})")
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    with fresh_pg_database() as url:
        yield url


@pytest.fixture(scope="module")
def pg_module_url() -> Iterator[str]:
    """A fresh PostgreSQL database shared by the tests of one module (they empty what they use)."""
    with fresh_pg_database("bright_module") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """The database URL of each backend in turn (a temporary SQLite file, a fresh PostgreSQL db)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'twin.db'}"
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture
def mqtt_broker() -> tuple[str, int]:
    if not port_open(MQTT_HOST, MQTT_PORT):
        missing_service(f"MQTT broker on {MQTT_HOST}:{MQTT_PORT}")
    return MQTT_HOST, MQTT_PORT


@pytest.fixture(autouse=True)
def _wide_cli_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    """CLI tests assert on the text of rich tables: give the commands' consoles a fixed width.

    The width rich finds otherwise depends on the process (terminal, ``COLUMNS`` at the time the
    console was built), which differs between a pytest-xdist worker and a single run.
    """
    import sys

    from rich.console import Console

    for name, module in list(sys.modules.items()):
        console = getattr(module, "console", None) if name.startswith("bright.") else None
        if isinstance(console, Console):
            monkeypatch.setattr(console, "_width", 250)
