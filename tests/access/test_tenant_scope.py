"""Hosted tenants and access control: tenant managers stay in their tenant, the audit log is per tenant."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from bright.api.onboarding import registry_of
from bright.web.users import create_token, create_user

from .conftest import NGSI, AccessNode


def _login(client: TestClient, user: str, password: str) -> None:
    r = client.post("/login", data={"username": user, "password": password}, follow_redirects=False)
    assert r.status_code in (302, 303), r.text


def _bad_token_request(node: AccessNode, tenant: str, entity: str) -> None:
    """A request audited in ``tenant`` (a bad token is a 401) naming ``entity`` in its path."""
    h = {"NGSILD-Tenant": tenant, "Authorization": "Bearer brt_0_unknown"}
    assert node.client.get(f"{NGSI}/entities/{entity}", headers=h).status_code == 401


def _things(node: AccessNode, *tenants: str) -> None:
    for tenant in tenants:
        h = {**node.manager, **({"NGSILD-Tenant": tenant} if tenant else {})}
        r = node.client.post(
            NGSI + "/entities", json={"id": f"urn:ngsi-ld:Thing:{tenant}", "type": "Thing"}, headers=h
        )
        assert r.status_code == 201, r.text


def test_hosted_tenant_manager_account_stays_in_its_tenant(node: AccessNode) -> None:
    _things(node, "district-a", "district-b", "")
    registry_of(node.app).create(
        "district-a", manager="da-mgr", community_id="urn:ngsi-ld:EnergyCommunity:da"
    )
    create_user(node.engine, "da-mgr", "district a password", "manager")
    create_user(node.engine, "operator", "operator password", "manager")
    _login(node.client, "da-mgr", "district a password")
    own = node.client.get(NGSI + "/entities?type=Thing", headers={"NGSILD-Tenant": "district-a"})
    assert own.status_code == 200, own.text
    for headers, params in (
        ({"NGSILD-Tenant": "district-b"}, {}),
        ({}, {}),  # the default tenant is another tenant too
        ({"NGSILD-Tenant": "district-a"}, {"tenant": "district-b"}),
    ):
        r = node.client.get(NGSI + "/entities", params={"type": "Thing", **params}, headers=headers)
        assert r.status_code == 403, (headers, params, r.text)
        body = r.json()
        assert body["type"].endswith("/Forbidden")
        assert "district-a" in body["detail"] and body["tenant"] == "district-a"
    # Writes too (the manager writes everything, but only in its tenant).
    r = node.client.post(
        NGSI + "/entities",
        json={"id": "urn:ngsi-ld:Thing:x", "type": "Thing"},
        headers={"NGSILD-Tenant": "b"},
    )
    assert r.status_code == 403 and "district-a" in r.json()["detail"]
    node.client.cookies.clear()
    # A manager account that manages no hosted tenant is the node's operator: every tenant.
    _login(node.client, "operator", "operator password")
    for tenant in ("district-a", "district-b", ""):
        r = node.client.get(
            NGSI + "/entities?type=Thing", headers={"NGSILD-Tenant": tenant} if tenant else {}
        )
        assert r.status_code == 200, (tenant, r.text)
    node.client.cookies.clear()


def test_manager_token_of_a_tenant_stays_in_its_tenant(node: AccessNode) -> None:
    _things(node, "district-a", "district-b")
    _, value = create_token(node.engine, "da-manager", "manager", tenant="district-a")
    t = {"Authorization": f"Bearer {value}"}
    assert (
        node.client.get(
            NGSI + "/entities?type=Thing", headers={**t, "NGSILD-Tenant": "district-a"}
        ).status_code
        == 200
    )
    r = node.client.get(NGSI + "/entities?type=Thing", headers={**t, "NGSILD-Tenant": "district-b"})
    assert r.status_code == 403 and r.json()["tenant"] == "district-a" and "district-b" in r.json()["detail"]
    r = node.client.get("/api/audit", headers={**t, "NGSILD-Tenant": "district-b"})
    assert r.status_code == 403
    # The node-wide manager token reaches every tenant.
    for tenant in ("district-a", "district-b"):
        r = node.client.get(NGSI + "/entities?type=Thing", headers={**node.manager, "NGSILD-Tenant": tenant})
        assert r.status_code == 200


def test_audit_log_is_tenant_scoped(node: AccessNode) -> None:
    registry_of(node.app).create("district-a", manager="da-mgr")
    create_user(node.engine, "da-mgr", "district a password", "manager")
    _bad_token_request(node, "district-a", "urn:ngsi-ld:Meter:a-secret")
    _bad_token_request(node, "district-b", "urn:ngsi-ld:Meter:b-secret")
    _bad_token_request(node, "", "urn:ngsi-ld:Meter:default-secret")

    def paths(rows: list[dict[str, Any]]) -> str:
        return " ".join(str(e["path"]) for e in rows)

    _login(node.client, "da-mgr", "district a password")
    r = node.client.get("/api/audit?limit=1000", headers={"NGSILD-Tenant": "district-a"})
    assert r.status_code == 200, r.text
    rows = r.json()
    assert rows and {e["tenant"] for e in rows} == {"district-a"}
    assert "a-secret" in paths(rows) and "b-secret" not in paths(rows) and "default-secret" not in paths(rows)
    node.client.cookies.clear()
    # The node's operator reads one tenant at a time, each with its own rows.
    for tenant, mark in (("district-b", "b-secret"), ("", "default-secret")):
        h = {**node.manager, **({"NGSILD-Tenant": tenant} if tenant else {})}
        rows = node.client.get("/api/audit?limit=1000", headers=h).json()
        assert {e["tenant"] for e in rows} == {tenant} and mark in paths(rows)
        assert "a-secret" not in paths(rows)


def test_audit_cli_reads_every_tenant_or_one(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from bright.cli import app as cli
    from bright.network.policy import AuditEntry, AuditLog
    from bright.twin.db import make_engine

    db = f"sqlite:///{tmp_path / 'audit.db'}"
    engine = make_engine(db)
    log = AuditLog(engine)
    for tenant in ("district-a", "district-b", ""):
        log.record(
            AuditEntry(
                datetime.now(UTC),
                tenant,
                "public",
                None,
                "anonymous",
                "GET",
                f"/x/{tenant}",
                401,
                "unauthenticated",
                None,
                "no credentials",
            )
        )
    engine.dispose()
    runner = CliRunner()
    every = runner.invoke(cli, ["audit", "--json", "-d", db])
    assert every.exit_code == 0, every.output
    assert {json.loads(line)["tenant"] for line in every.output.splitlines()} == {
        "district-a",
        "district-b",
        "",
    }
    for tenant in ("district-a", ""):
        one = runner.invoke(cli, ["audit", "--json", "--tenant", tenant, "-d", db])
        assert one.exit_code == 0, one.output
        assert [json.loads(line)["tenant"] for line in one.output.splitlines()] == [tenant]
