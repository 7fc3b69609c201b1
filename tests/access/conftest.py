"""Fixtures of the access-control tests: nodes built with ``auth="required"``, a community, tokens."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bright.api.app import create_app
from bright.config import Settings
from bright.twin.context import BRIGHT_CONTEXT_URL
from bright.twin.vocabulary import bright_context
from bright.web.users import create_token

NGSI = "/ngsi-ld/v1"


def community_entities(key: str, n_members: int) -> list[dict[str, Any]]:
    """An EnergyCommunity with ``n_members`` members, each with a meter and a PV device."""
    cid = f"urn:ngsi-ld:EnergyCommunity:{key}"
    ents: list[dict[str, Any]] = []
    members = []
    for i in range(n_members):
        pid = f"urn:ngsi-ld:EnergyProsumer:{key}:m{i}"
        mid = f"urn:ngsi-ld:Meter:{key}:m{i}"
        pv = f"urn:ngsi-ld:PhotovoltaicDevice:{key}:m{i}"
        members.append(pid)
        ents.append(
            {
                "id": mid,
                "type": "Meter",
                "accessPointId": {"type": "Property", "value": f"54144800000000{i:04d}"},
                "locality": {"type": "Property", "value": "lv_cabin"},
                "offtake": {"type": "Property", "value": 0.25 + i, "unitCode": "KWH"},
            }
        )
        ents.append({"id": pv, "type": "PhotovoltaicDevice", "peakPower": {"type": "Property", "value": 3.0}})
        ents.append(
            {
                "id": pid,
                "type": "EnergyProsumer",
                "name": {"type": "Property", "value": f"Household {i}"},
                "memberOf": {"type": "Relationship", "object": cid},
                "isMeteredBy": {"type": "Relationship", "object": mid},
                "controls": {"type": "Relationship", "object": pv},
            }
        )
    ents.insert(
        0,
        {
            "id": cid,
            "type": "EnergyCommunity",
            "name": {"type": "Property", "value": f"Community {key}"},
            "hasMember": {"type": "Relationship", "object": members},
        },
    )
    ents.append(
        {
            "id": f"urn:ngsi-ld:KeyPerformanceIndicator:{key}:selfsufficiency",
            "type": "KeyPerformanceIndicator",
            "kpiValue": {"type": "Property", "value": 0.42},
            "refEnergyCommunity": {"type": "Relationship", "object": cid},
        }
    )
    ents.append(
        {
            "id": f"urn:ngsi-ld:Building:{key}:hall",
            "type": "Building",
            "category": {"type": "Property", "value": ["public"]},
            "refEnergyCommunity": {"type": "Relationship", "object": cid},
        }
    )
    return ents


@dataclass
class AccessNode:
    """A node with access control required, its test client and a manager token."""

    app: Any
    client: TestClient
    manager: dict[str, str]
    tmp: Path

    @property
    def service(self) -> Any:
        return self.app.state.twin

    @property
    def engine(self) -> Any:
        return self.app.state.twin.engine

    def token(self, role: str, **kw: Any) -> dict[str, str]:
        _, value = create_token(self.engine, f"{role}-{len(kw)}", role, **kw)
        return {"Authorization": f"Bearer {value}"}

    def add_community(self, key: str, n_members: int) -> str:
        ctx = bright_context()
        for e in community_entities(key, n_members):
            self.service.create_entity("", {**e, "@context": BRIGHT_CONTEXT_URL}, ctx)
        return f"urn:ngsi-ld:EnergyCommunity:{key}"


def build_node(db_url: str, tmp: Path, *, auth: str = "required", name: str = "node") -> AccessNode:
    data = tmp / f"{name}-data"
    settings = Settings(database_url=db_url, auth=auth, node_name=name, extra={"data_dir": str(data)})
    app = create_app(settings)
    client = TestClient(app)
    client.__enter__()
    _, value = create_token(app.state.twin.engine, "root", "manager")
    return AccessNode(app, client, {"Authorization": f"Bearer {value}"}, tmp)


@pytest.fixture
def node(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AccessNode]:
    """A node with ``auth=required`` on each backend."""
    monkeypatch.setenv("BRIGHT_DATA_DIR", str(tmp_path / "web"))
    n = build_node(db_url, tmp_path)
    try:
        yield n
    finally:
        n.client.__exit__(None, None, None)
        n.engine.dispose()
