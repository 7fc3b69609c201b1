"""The bulk write path of the store (batch upserts): COPY on PostgreSQL, unchanged index rows kept,
index rows deleted with their entity, planner statistics refreshed, history written in bulk."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select, text

from bright.twin import store as store_module
from bright.twin.db import make_engine
from bright.twin.schema import attr_index, entity_scopes, entity_types, geo_index
from bright.twin.series import SeriesStore
from bright.twin.service import TwinService
from bright.twin.store import CollectorPause
from bright.twin.temporal import TemporalStore

INDEX_TABLES = (attr_index, entity_types, entity_scopes, geo_index)


def meter(i: int, value: float = 1.5, observed: str = "2026-11-01T00:00:00Z") -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:Meter:m{i:04d}",
        "type": "Meter",
        "scope": "/Brussels/Ixelles",
        "label": {"type": "Property", "value": f"meter {i}"},
        "reading": {"type": "Property", "value": value + i, "observedAt": observed, "unitCode": "KWH"},
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [4.3 + i * 1e-3, 50.8]},
        },
        "feeds": {"type": "Relationship", "object": "urn:ngsi-ld:Building:b1"},
    }


@pytest.fixture
def service(db_url: str) -> Iterator[TwinService]:
    svc = TwinService(make_engine(db_url))
    yield svc
    svc.engine.dispose()


def index_counts(svc: TwinService) -> dict[str, int]:
    with svc.engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in INDEX_TABLES}


def ids_matching(svc: TwinService, q: str) -> list[str]:
    ctx = svc.resolve_context(None)
    docs, _ = svc.store.query("", svc.build_query({"type": "Meter", "q": q, "limit": "1000"}, ctx))
    return sorted(d["id"] for d in docs)


def test_batch_of_new_entities_is_indexed_like_single_creates(service: TwinService, tmp_path) -> None:
    # More than the COPY threshold of the history and series writes (50 rows).
    ctx = service.resolve_context(None)
    res = service.batch_upsert("", [meter(i) for i in range(120)], ctx)
    assert not res["errors"] and len(res["created"]) == 120
    single = TwinService(make_engine(f"sqlite:///{tmp_path / 'single.db'}"))
    for i in range(120):
        single.create_entity("", meter(i), single.resolve_context(None))
    assert index_counts(service) == index_counts(single)
    assert ids_matching(service, "reading>100") == ids_matching(single, "reading>100")
    assert ids_matching(service, "reading>100") == [f"urn:ngsi-ld:Meter:m{i:04d}" for i in range(99, 120)]
    assert ids_matching(service, 'feeds=="urn:ngsi-ld:Building:b1"') == [
        m["id"] for m in map(meter, range(120))
    ]
    single.engine.dispose()


def test_upsert_rewrites_changed_index_rows_and_keeps_unchanged_ones(service: TwinService) -> None:
    ctx = service.resolve_context(None)
    service.batch_upsert("", [meter(i) for i in range(60)], ctx)
    with service.engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM attr_index")).scalar_one()
    # Same content again (only system times change), then new values for the even ones.
    service.batch_upsert("", [meter(i) for i in range(60)], ctx)
    assert ids_matching(service, "reading>50") == [f"urn:ngsi-ld:Meter:m{i:04d}" for i in range(49, 60)]
    service.batch_upsert("", [meter(i, value=1000.0) for i in range(0, 60, 2)], ctx)
    assert index_counts(service)["attr_index"] == before
    changed = {i for i in range(0, 60, 2)} | {i for i in range(49, 60, 2)}
    assert ids_matching(service, "reading>50") == [f"urn:ngsi-ld:Meter:m{i:04d}" for i in sorted(changed)]
    assert ids_matching(service, "reading==2.5") == ["urn:ngsi-ld:Meter:m0001"]  # odd: unchanged
    assert ids_matching(service, "reading==1.5") == []  # the old value of m0000 is gone
    doc = service.store.get("", "urn:ngsi-ld:Meter:m0002")
    assert doc is not None and doc["attrs"][ctx.expand("reading")][0]["value"] == 1002.0


def test_unchanged_upsert_writes_no_index_row(service: TwinService) -> None:
    ctx = service.resolve_context(None)
    service.batch_upsert("", [meter(i) for i in range(5)], ctx)
    key = "ctid" if service.store.postgres else "rowid"
    with service.engine.connect() as conn:
        before = sorted(map(str, conn.execute(text(f"SELECT {key} FROM attr_index")).scalars()))
    service.batch_upsert("", [meter(i) for i in range(5)], ctx)
    with service.engine.connect() as conn:
        after = sorted(map(str, conn.execute(text(f"SELECT {key} FROM attr_index")).scalars()))
    assert before == after


def test_index_rows_go_with_their_entity_on_every_delete_path(service: TwinService) -> None:
    ctx = service.resolve_context(None)
    service.batch_upsert("", [meter(i) for i in range(10)], ctx)
    service.batch_upsert("other", [meter(i) for i in range(10)], ctx)
    per_tenant = {name: n // 2 for name, n in index_counts(service).items()}
    assert all(n > 0 for n in per_tenant.values())
    service.delete_entity("", "urn:ngsi-ld:Meter:m0000")
    service.batch_delete("", ["urn:ngsi-ld:Meter:m0001", "urn:ngsi-ld:Meter:m0002"])
    assert index_counts(service) == {name: n * 2 - n * 3 // 10 for name, n in per_tenant.items()}
    # A plain SQL delete of a whole tenant (as the hosting service does) takes the rows along too.
    with service.engine.begin() as conn:
        conn.execute(text("DELETE FROM entities WHERE tenant = ''"))
    assert index_counts(service) == per_tenant


def test_postgres_index_tables_have_no_foreign_keys_but_a_cascade_trigger(pg_url: str) -> None:
    svc = TwinService(make_engine(pg_url))
    with svc.engine.connect() as conn:
        keys = conn.execute(
            text(
                "SELECT conrelid::regclass::text FROM pg_constraint WHERE contype = 'f' "
                "AND confrelid = 'entities'::regclass"
            )
        ).scalars()
        triggers = conn.execute(
            text("SELECT tgname FROM pg_trigger WHERE tgrelid = 'entities'::regclass AND NOT tgisinternal")
        ).scalars()
        assert set(keys) == set()
        assert list(triggers) == ["entities_index_cascade"]
    svc.engine.dispose()


def test_postgres_statistics_are_refreshed_after_bulk_growth(pg_url: str, monkeypatch) -> None:
    monkeypatch.setattr(store_module, "ANALYZE_MIN_ROWS", 40)
    svc = TwinService(make_engine(pg_url))
    ctx = svc.resolve_context(None)

    def analyzed() -> int:
        with svc.engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'entities'")
                ).scalar_one()
            )

    start = analyzed()
    svc.batch_upsert("", [meter(i) for i in range(30)], ctx)
    assert analyzed() == start  # 30 < 40
    svc.batch_upsert("", [meter(i) for i in range(30, 45)], ctx)
    assert analyzed() == start + 1  # 45 >= 40
    svc.batch_upsert("", [meter(i) for i in range(45, 80)], ctx)
    assert analyzed() == start + 1  # 35 more < the 45 of the table at the last ANALYZE
    svc.batch_upsert("", [meter(i) for i in range(80, 95)], ctx)
    assert analyzed() == start + 2
    with svc.engine.connect() as conn:
        tuples = conn.execute(text("SELECT reltuples FROM pg_class WHERE relname = 'entities'")).scalar_one()
    assert tuples == 95
    svc.engine.dispose()


def test_history_of_a_batch_is_written_in_bulk_and_replaces_the_same_instant(db_url: str) -> None:
    engine = make_engine(db_url)
    temporal = TemporalStore(engine, SeriesStore(engine))
    now = "2026-11-22T10:00:00.000000Z"
    items = [
        (
            f"urn:ngsi-ld:Meter:m{i:04d}",
            {
                "urn:x:reading": [
                    {"type": "Property", "value": float(i), "observedAt": "2026-11-01T00:00:00Z"}
                ],
                "urn:x:label": [{"type": "Property", "value": f"v{i}", "createdAt": now, "modifiedAt": now}],
            },
        )
        for i in range(80)
    ]
    assert temporal.add_many("", items, now) == 160
    # The same instants again with other content: replaced, not added.
    items[3][1]["urn:x:label"][0]["value"] = "changed"
    items[3][1]["urn:x:reading"][0]["value"] = 99.0
    temporal.add_many("", items[:10], now)
    hist = temporal.history("", "urn:ngsi-ld:Meter:m0003")
    assert [i["value"] for i in hist["urn:x:label"]] == ["changed"]
    assert [i["value"] for i in hist["urn:x:reading"]] == [99.0]
    assert hist["urn:x:reading"][0]["observedAt"] == "2026-11-01T00:00:00Z"
    with engine.connect() as conn:
        ids = conn.execute(text("SELECT instance_id FROM temporal_instances")).scalars().all()
    assert len(ids) == 80 and len(set(ids)) == 80
    assert all(i.startswith("urn:ngsi-ld:instance:") for i in ids)
    for i in (0, 41, 79):
        values = temporal.series.history(f"urn:ngsi-ld:Meter:m{i:04d}", "urn:x:reading")
        assert values.tolist() == [float(i)]
    engine.dispose()


def test_collector_pause_is_reentrant_and_restores_the_collector() -> None:
    pause = CollectorPause()
    assert gc.isenabled()
    with pause:
        assert not gc.isenabled()
        with pause:
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ValueError), pause:
        raise ValueError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with pause:
            pass
        assert not gc.isenabled()  # it was off before: left off
    finally:
        gc.enable()
