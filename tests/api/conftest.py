from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from bright.api.app import create_app
from bright.config import Settings
from bright.twin.db import make_engine
from bright.twin.service import TwinService


@pytest.fixture
def service(db_url: str) -> Iterator[TwinService]:
    engine = make_engine(db_url)
    svc = TwinService(engine, Settings(database_url=db_url))
    yield svc
    engine.dispose()


@pytest.fixture
def client(service: TwinService) -> Iterator[TestClient]:
    with TestClient(create_app(service.settings, service=service)) as c:
        yield c
