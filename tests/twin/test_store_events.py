"""Committed entity changes reach the store's listeners, once, with before/after documents."""

from __future__ import annotations

import contextlib

from bright.twin.db import make_engine
from bright.twin.service import TwinService
from bright.twin.store import EntityEvent


def test_every_write_path_emits_events(tmp_path) -> None:
    svc = TwinService(make_engine(f"sqlite:///{tmp_path / 'ev.db'}"))
    seen: list[EntityEvent] = []
    svc.store.listeners.append(seen.append)
    ctx = svc.resolve_context(None)
    svc.create_entity("", {"id": "urn:x:1", "type": "T", "p": 1}, ctx)
    svc.update_attributes("", "urn:x:1", {"p": 2}, ctx)
    svc.batch_upsert(
        "", [{"id": "urn:x:1", "type": "T", "p": 3}, {"id": "urn:x:2", "type": "T", "p": 1}], ctx
    )
    svc.batch_delete("", ["urn:x:2"])
    svc.delete_entity("", "urn:x:1")
    assert [(e.kind, e.entity_id) for e in seen] == [
        ("created", "urn:x:1"),
        ("updated", "urn:x:1"),
        ("created", "urn:x:2"),
        ("updated", "urn:x:1"),
        ("deleted", "urn:x:2"),
        ("deleted", "urn:x:1"),
    ]
    p = ctx.expand("p")
    assert seen[1].before["attrs"][p][0]["value"] == 1 and seen[1].after["attrs"][p][0]["value"] == 2
    assert seen[-1].after is None and seen[-1].before["id"] == "urn:x:1"


def test_failed_write_emits_nothing(tmp_path) -> None:
    svc = TwinService(make_engine(f"sqlite:///{tmp_path / 'ev.db'}"))
    seen: list[EntityEvent] = []
    svc.store.listeners.append(seen.append)
    ctx = svc.resolve_context(None)
    svc.create_entity("", {"id": "urn:x:1", "type": "T"}, ctx)
    with contextlib.suppress(Exception):
        svc.create_entity("", {"id": "urn:x:1", "type": "T"}, ctx)
    assert len(seen) == 1
