"""Hosting: the tenant registry, quotas over HTTP, backup/restore round trips, upgrades, parent registration."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sample_community import make_community
from sqlalchemy import func, select
from typer.testing import CliRunner

from bright.api.app import create_app
from bright.api.onboarding import registry_of
from bright.config import Settings
from bright.services.tenants import (
    TenantRegistry,
    TenantUsage,
    backup_tenant,
    read_manifest,
    registration_body,
    restore_tenant,
)
from bright.twin import migrations
from bright.twin.db import make_engine
from bright.twin.schema import entities
from bright.twin.series import SeriesStore
from bright.twin.service import TwinService
from bright.twin.vocabulary import bright_context


def _meter_year(client: TestClient, tenant: str, meters: list[str], days: int = 30) -> pd.DataFrame:
    idx = pd.date_range("2026-01-01", periods=96 * days, freq="15min", tz="UTC")
    frame = pd.DataFrame(
        np.random.default_rng(5).uniform(0, 0.6, (len(idx), len(meters))), index=idx, columns=meters
    )
    frame.iloc[7, 0] = np.nan  # an explicitly missing value must survive the round trip
    store = SeriesStore(client.app.state.twin.engine)  # type: ignore[attr-defined]
    store.write(frame, tenant=tenant, attribute=bright_context().expand("offtake"), unit_code="KWH")
    store.write(
        frame.fillna(0.0) * 0.25,
        tenant=tenant,
        attribute=bright_context().expand("injection"),
        unit_code="KWH",
    )
    return frame


def test_quotas_are_enforced_with_problem_details(client: TestClient) -> None:
    registry = registry_of(client.app)
    registry.create("small", max_entities=100, max_series_points=10_000)
    c = make_community(client, "small", slug="small", n_members=1)
    usage = registry.usage("small")
    assert usage.entities >= 6  # community, policies, member, meter, building, asset, consents
    limit = usage.entities + 3
    registry.update("small", max_entities=limit)
    h = {"NGSILD-Tenant": "small", "Content-Type": "application/json"}
    batch = [{"id": f"urn:ngsi-ld:Thing:{i}", "type": "Thing"} for i in range(4)]
    registry.forget_usage("small")
    r = client.post("/ngsi-ld/v1/entityOperations/create", headers=h, content=json.dumps(batch))
    assert r.status_code == 403, r.text
    problem = r.json()
    assert problem["type"] == "https://w3id.org/bright/errors/TenantQuotaExceeded"
    assert problem["quota"] == "entities" and problem["limit"] == limit and "small" in problem["detail"]
    # One entity fewer fits.
    r = client.post("/ngsi-ld/v1/entityOperations/create", headers=h, content=json.dumps(batch[:-1]))
    assert r.status_code in (201, 207), r.text
    registry.forget_usage("small")
    r = client.post(
        "/ngsi-ld/v1/entities", headers=h, content=json.dumps({"id": "urn:ngsi-ld:Thing:x", "type": "Thing"})
    )
    assert r.status_code == 403
    # Series points: fill to the quota, then every write is 413; deletions still pass.
    _meter_year(client, "small", [c.members[0]["meter"]], days=53)  # 2 x 5,088 points
    registry.forget_usage("small")
    r = client.patch(f"/ngsi-ld/v1/entities/{c.members[0]['meter']}/attrs", headers=h,
                     content=json.dumps({"meterType": {"type": "Property", "value": "digital"}}))  # fmt: skip
    assert r.status_code == 413 and r.json()["quota"] == "seriesPoints"
    r = client.delete("/ngsi-ld/v1/entities/urn:ngsi-ld:Thing:0", headers={"NGSILD-Tenant": "small"})
    assert r.status_code == 204
    # Another tenant is not affected by this one's quota.
    r = client.post("/ngsi-ld/v1/entities", headers={**h, "NGSILD-Tenant": "big"},
                    content=json.dumps({"id": "urn:ngsi-ld:Thing:x", "type": "Thing"}))  # fmt: skip
    assert r.status_code == 201
    registry.update("small", max_series_points=50_000)
    r = client.patch(f"/ngsi-ld/v1/entities/{c.members[0]['meter']}/attrs", headers=h,
                     content=json.dumps({"meterType": {"type": "Property", "value": "digital"}}))  # fmt: skip
    assert r.status_code == 204


def test_strict_hosting_refuses_unknown_tenants(client: TestClient) -> None:
    registry = TenantRegistry(client.app.state.twin.engine, strict=True)  # type: ignore[attr-defined]
    client.app.state.tenants = registry  # type: ignore[attr-defined]
    r = client.post("/ngsi-ld/v1/entities", headers={"NGSILD-Tenant": "nobody", "Content-Type": "application/json"},
                    content=json.dumps({"id": "urn:ngsi-ld:Thing:x", "type": "Thing"}))  # fmt: skip
    assert r.status_code == 403 and "not hosted" in r.json()["detail"]
    registry.create("nobody")
    r = client.post("/ngsi-ld/v1/entities", headers={"NGSILD-Tenant": "nobody", "Content-Type": "application/json"},
                    content=json.dumps({"id": "urn:ngsi-ld:Thing:x", "type": "Thing"}))  # fmt: skip
    assert r.status_code == 201


def _snapshot(client: TestClient, tenant: str) -> dict[str, object]:
    """What a tenant holds, in comparable form: entity documents (no timestamps), series values, accounts."""
    engine = client.app.state.twin.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        docs = conn.execute(select(entities.c.doc).where(entities.c.tenant == tenant)).scalars().all()
    ents = {}
    for d in docs:
        d = d if isinstance(d, dict) else json.loads(d)
        ents[d["id"]] = json.dumps(d["attrs"], sort_keys=True)
    store = SeriesStore(engine)
    series = {}
    for info in store.series(tenant):
        frame = store.read(info.entity_id, info.attribute, tenant=tenant, dataset_id=info.dataset_id)
        col = frame[info.entity_id]
        series[(info.entity_id, info.attribute)] = (
            list(col.index.asi8),
            np.nan_to_num(col.to_numpy(), nan=-1.0).tolist(),
        )
    return {"entities": ents, "series": series}


def test_backup_restore_round_trip(client: TestClient, tmp_path) -> None:
    c = make_community(client, "hosted-a", slug="alpha", n_members=3)
    frame = _meter_year(client, "hosted-a", [m["meter"] for m in c.members], days=40)
    registry = registry_of(client.app)
    registry.create("hosted-a", title="Alpha", community_id=c.id, manager="alpha-manager", max_entities=5000)
    before = _snapshot(client, "hosted-a")
    assert len(before["series"]) == 6  # type: ignore[arg-type]
    data = backup_tenant(client.app.state.twin.engine, "hosted-a", tmp_path / "a.zip")  # type: ignore[attr-defined]
    manifest = read_manifest(data)
    assert manifest["format"] == "bright-tenant-backup" and manifest["tenant"] == "hosted-a"
    assert manifest["counts"]["series"] == 6 and manifest["counts"]["entities"] == len(before["entities"])  # type: ignore[arg-type]
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = set(zf.namelist())
    assert {"manifest.json", "entities.jsonl", "series.jsonl", "tables/web_users.jsonl",
            "tables/onboarding_invitations.jsonl"} <= names  # fmt: skip
    # Restore under another name, on the same node: identical content, separate tenant.
    counts = restore_tenant(client.app.state.twin.engine, tmp_path / "a.zip", tenant="hosted-b")  # type: ignore[attr-defined]
    assert counts["entities"] == len(before["entities"])  # type: ignore[arg-type]
    assert _snapshot(client, "hosted-b") == before
    assert registry.get("hosted-b").max_entities == 5000

    # The restored community answers the energy API exactly as the original (NaN stays missing).
    def balance(tenant: str) -> list[dict[str, object]]:
        r = client.get(f"/api/communities/{c.id}/balance", params={"freq": "1D", "level": "community"},
                       headers={"NGSILD-Tenant": tenant})  # fmt: skip
        assert r.status_code == 200, r.text
        return r.json()["community"]

    original = balance("hosted-a")
    assert original == balance("hosted-b")
    assert any(row["offtake_kwh"] is None for row in original)  # the day with the missing value
    assert sum(row["offtake_kwh"] or 0 for row in original) > 0.5 * float(np.nansum(frame.to_numpy()))
    # Restoring onto a tenant with data needs replace; delete then restore the original name.
    with pytest.raises(Exception, match="holds data"):
        restore_tenant(client.app.state.twin.engine, data, tenant="hosted-a")  # type: ignore[attr-defined]
    deleted = registry.delete("hosted-a")
    assert deleted["entities"] == len(before["entities"]) and deleted["series"] == 6  # type: ignore[arg-type]
    assert _snapshot(client, "hosted-a") == {"entities": {}, "series": {}}
    restore_tenant(client.app.state.twin.engine, data)  # type: ignore[attr-defined]
    assert _snapshot(client, "hosted-a") == before
    with pytest.raises(Exception, match="not a BRIGHT tenant backup"):
        restore_tenant(client.app.state.twin.engine, b"not a zip")  # type: ignore[attr-defined]


def test_backup_from_sqlite_restores_into_postgresql(
    tmp_path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backup format is backend-neutral: SQLite node -> PostgreSQL node."""
    monkeypatch.setenv("BRIGHT_AUTH", "open")
    clients = []
    for url in (f"sqlite:///{tmp_path / 'src.db'}", pg_url):
        clients.append(TestClient(create_app(Settings.from_env(database_url=url))))
    src, dst = clients
    c = make_community(src, "move-me", slug="mover", n_members=2)
    _meter_year(src, "move-me", [m["meter"] for m in c.members], days=10)
    before = _snapshot(src, "move-me")
    data = backup_tenant(src.app.state.twin.engine, "move-me")  # type: ignore[attr-defined]
    restore_tenant(dst.app.state.twin.engine, data)  # type: ignore[attr-defined]
    assert _snapshot(dst, "move-me") == before
    members = dst.get(
        f"/api/onboarding/communities/{c.id}/members", headers={"NGSILD-Tenant": "move-me"}
    ).json()
    assert sorted(m["ean"] for m in members) == sorted(m["ean"] for m in c.members)
    for cl in clients:
        cl.app.state.twin.engine.dispose()  # type: ignore[attr-defined]


@pytest.fixture
def restore_steps() -> Iterator[None]:
    saved = list(migrations._extra_steps)
    yield
    migrations._extra_steps[:] = saved


def test_upgrade_from_an_older_migration_level_keeps_every_tenant(db_url: str, restore_steps: None) -> None:
    """A node at the level before hosting (steps < 160) holds two tenants; upgrading registers both."""
    release_steps = list(migrations._extra_steps)
    migrations._extra_steps[:] = [s for s in release_steps if s[0] < 160]
    engine = make_engine(db_url)
    twin = TwinService(engine, Settings(database_url=db_url))
    ctx = bright_context()
    for tenant in ("old-a", "old-b"):
        twin.batch_upsert(tenant, [{"id": f"urn:ngsi-ld:Building:{tenant}-{i}", "type": "Building",
                                    "category": {"type": "Property", "value": ["school"]}} for i in range(4)], ctx)  # fmt: skip
        SeriesStore(engine).write(
            pd.DataFrame({f"urn:ngsi-ld:Meter:{tenant}": [1.0, 2.0, 3.0]},
                         index=pd.date_range("2026-01-01", periods=3, freq="15min", tz="UTC")),
            tenant=tenant, attribute=ctx.expand("offtake"), unit_code="KWH",
        )  # fmt: skip
    with engine.connect() as conn:
        steps = set(conn.execute(select(migrations.migrations_table.c.step)).scalars())
    assert not any(s >= 160 for s in steps)
    from sqlalchemy import inspect

    assert "hosted_tenants" not in inspect(engine).get_table_names()
    # Upgrade: this release's code brings its steps back (as a new package version would).
    migrations._extra_steps[:] = release_steps
    applied = migrations.migrate(engine)
    assert {160, 161, 162} <= set(applied)
    registry = TenantRegistry(engine)
    assert [t.name for t in registry.list()] == ["old-a", "old-b"]
    for tenant in ("old-a", "old-b"):
        assert registry.usage(tenant) == TenantUsage(entities=4, series_points=3)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(entities)).scalar_one() == 8
    assert migrations.migrate(engine) == []  # idempotent
    engine.dispose()


def test_each_tenant_registers_at_the_parent_as_its_own_node(
    client: TestClient, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bright.services.tenants import register_at_parent

    for name, slug in (("north", "north"), ("south", "south")):
        make_community(client, name, slug=slug, n_members=1)
    parent = TestClient(create_app(Settings.from_env(database_url=f"sqlite:///{tmp_path / 'parent.db'}")))
    for name in ("north", "south"):
        body = register_at_parent(
            client.app.state.twin.engine, name, node_id="host-1", public_url="http://host-1.example:8000",  # type: ignore[attr-defined]
            client=parent, parent_url="",
        )  # fmt: skip
        assert body["tenant"] == name
    community_type = {"type": bright_context().expand("EnergyCommunity")}
    regs = parent.get("/ngsi-ld/v1/csourceRegistrations", params=community_type).json()
    by_id = {r["id"]: r for r in regs}
    assert set(by_id) == {
        "urn:ngsi-ld:ContextSourceRegistration:host-1:north",
        "urn:ngsi-ld:ContextSourceRegistration:host-1:south",
    }
    assert {r["tenant"] for r in regs} == {"north", "south"}
    assert all(r["endpoint"] == "http://host-1.example:8000" for r in regs)
    # Refreshing is an update, not a duplicate.
    register_at_parent(client.app.state.twin.engine, "north", node_id="host-1", public_url="http://host-1.example:8000",  # type: ignore[attr-defined]
                       client=parent)  # fmt: skip
    assert len(parent.get("/ngsi-ld/v1/csourceRegistrations", params=community_type).json()) == 2
    body = registration_body("x", node_id="n", public_url="http://a/", types=["B", "A"])
    assert (
        body["information"] == [{"entities": [{"type": "A"}, {"type": "B"}]}]
        and body["endpoint"] == "http://a"
    )
    parent.app.state.twin.engine.dispose()  # type: ignore[attr-defined]


def test_cli_tenants_backup_restore(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bright.cli import app

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    r = runner.invoke(app, ["tenants", "create", "school-1", "--title", "École 1", "--manager", "school1-mgr",
                            "--manager-password", "pw-pw-pw", "--max-entities", "100", "--database", url])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert runner.invoke(app, ["tenants", "create", "school-1", "--database", url]).exit_code == 1
    engine = make_engine(url)
    twin = TwinService(engine, Settings(database_url=url))
    twin.batch_upsert("school-1", [{"id": "urn:ngsi-ld:Building:s1", "type": "Building"}], bright_context())
    r = runner.invoke(app, ["tenants", "list", "--json", "--database", url])
    listed = json.loads(r.output)
    assert (
        listed[0]["name"] == "school-1"
        and listed[0]["usage"]["entities"] == 1
        and listed[0]["quota"]["entities"] == 100
    )
    assert listed[0]["manager"] == "school1-mgr"
    from bright.web.users import authenticate

    assert authenticate(engine, "school1-mgr", "pw-pw-pw") is not None
    out = tmp_path / "s1.zip"
    r = runner.invoke(app, ["backup", "school-1", "--output", str(out), "--database", url])
    assert r.exit_code == 0 and out.exists(), r.output
    assert (
        runner.invoke(app, ["tenants", "delete", "school-1", "--database", url]).exit_code == 1
    )  # needs --yes
    r = runner.invoke(app, ["tenants", "delete", "school-1", "--yes", "--database", url])
    assert r.exit_code == 0 and "entities 1" in r.output
    assert twin.store.get("school-1", "urn:ngsi-ld:Building:s1") is None
    r = runner.invoke(app, ["restore", str(out), "--database", url])
    assert r.exit_code == 0, r.output
    assert twin.store.get("school-1", "urn:ngsi-ld:Building:s1") is not None
    assert (
        json.loads(runner.invoke(app, ["tenants", "list", "--json", "--database", url]).output)[0]["manager"]
        == "school1-mgr"
    )
    engine.dispose()
