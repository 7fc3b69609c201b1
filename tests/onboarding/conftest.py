"""Fixtures of the onboarding and hosting tests: an app on each backend, a community with members."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from bright.api.app import create_app
from bright.config import Settings


@pytest.fixture
def client(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[TestClient]:
    """An app on each backend; access control open (the role table is not what these tests check)."""
    monkeypatch.setenv("BRIGHT_AUTH", "open")
    app = create_app(Settings.from_env(database_url=db_url))
    with TestClient(app) as c:
        yield c
    app.state.twin.engine.dispose()
