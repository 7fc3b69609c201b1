"""The entity store of a twin node: NGSI-LD entities on SQLite or PostgreSQL (SQLAlchemy 2 Core).

Writes are transactional and keep three index tables in step with each entity document
(types, scopes, attribute leaves, geometries), so that every filter of the NGSI-LD query language
runs in the database. Read-modify-write operations lock the entity row (``FOR UPDATE`` on
PostgreSQL; SQLite serialises writers).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, and_, delete, exists, func, select, update
from sqlalchemy.sql.elements import ColumnElement

from bright.twin import geo, query
from bright.twin.db import is_postgres
from bright.twin.errors import AlreadyExists, BadRequestData, ResourceNotFound
from bright.twin.migrations import migrate
from bright.twin.schema import attr_index, entities, entity_scopes, entity_types, geo_index

log = logging.getLogger("bright.twin.store")


@dataclass(frozen=True)
class EntityEvent:
    """A committed change of one entity, for listeners (subscriptions, audit, ledger).

    ``kind`` is ``created``, ``updated`` or ``deleted``; ``before``/``after`` are stored documents
    (None when the entity did not exist before / no longer exists).
    """

    kind: str
    tenant: str
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


Listener = Callable[[EntityEvent], None]


@dataclass
class EntityQuery:
    """Filters of an entity query, already expanded to IRIs where terms are involved.

    Attributes
    ----------
    ids, id_pattern
        Entity ids to match, or a regular expression over ids.
    type_query
        Parsed type expression (see :mod:`bright.twin.query`), or None for any type.
    q, scope_q
        Parsed ``q`` and ``scopeQ`` expressions, or None.
    attrs
        Attribute IRIs: entities having at least one of them.
    geo
        A parsed geo-query, or None.
    limit, offset
        The page; ``limit=0`` returns no entity (only the count).
    """

    ids: Sequence[str] | None = None
    id_pattern: str | None = None
    type_query: Any = None
    q: Any = None
    scope_q: Any = None
    attrs: Sequence[str] | None = None
    geo: Any = None
    limit: int = 20
    offset: int = 0
    expand: Callable[[str], str] = field(default=lambda s: s)


class TwinStore:
    """Entities of every tenant of one node.

    Parameters
    ----------
    engine
        The node's SQLAlchemy engine (see :func:`bright.twin.db.make_engine`).
    """

    def __init__(self, engine: Engine, *, create: bool = True) -> None:
        self.engine = engine
        self.postgres = is_postgres(engine)
        self.listeners: list[Listener] = []
        # Called once per committed write with all its events (bulk consumers: the history).
        self.batch_listeners: list[Callable[[list[EntityEvent]], None]] = []
        if create:
            migrate(engine)

    def _emit(self, events: Iterable[EntityEvent]) -> None:
        """Tell the listeners about committed changes; a failing listener never undoes a write."""
        if not self.listeners and not self.batch_listeners:
            return
        events = list(events)
        for batch_listener in self.batch_listeners:
            try:
                batch_listener(events)
            except Exception:  # pragma: no cover - logged, the write stands
                log.exception("entity batch listener %r failed on %d events", batch_listener, len(events))
        for ev in events:
            for listener in self.listeners:
                try:
                    listener(ev)
                except Exception:  # pragma: no cover - logged, the write stands
                    log.exception("entity listener %r failed on %s %s", listener, ev.kind, ev.entity_id)

    # --- transactions -----------------------------------------------------------------------------
    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def _load(
        self, conn: Connection, tenant: str, eid: str, *, lock: bool = False
    ) -> tuple[int, dict] | None:
        stmt = select(entities.c.pk, entities.c.doc).where(
            entities.c.tenant == tenant, entities.c.id == eid, entities.c.deleted_at.is_(None)
        )
        if lock and self.postgres:
            stmt = stmt.with_for_update()
        row = conn.execute(stmt).first()
        return (row[0], row[1]) if row else None

    # --- single-entity operations -------------------------------------------------------------------
    def get(self, tenant: str, eid: str) -> dict[str, Any] | None:
        """The stored document of entity ``eid`` in ``tenant``, or None."""
        with self.engine.connect() as conn:
            hit = self._load(conn, tenant, eid)
        return hit[1] if hit else None

    def get_many(self, tenant: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(entities.c.id, entities.c.doc).where(
                    entities.c.tenant == tenant, entities.c.id.in_(list(ids)), entities.c.deleted_at.is_(None)
                )
            ).all()
        return {r[0]: r[1] for r in rows}

    def create(self, tenant: str, doc: dict[str, Any]) -> None:
        """Insert a new entity; :class:`AlreadyExists` if its id is taken in the tenant."""
        with self.engine.begin() as conn:
            if self._load(conn, tenant, doc["id"]) is not None:
                raise AlreadyExists(f"entity {doc['id']} already exists")
            self._insert(conn, tenant, [doc])
        self._emit([EntityEvent("created", tenant, doc["id"], None, doc)])

    def modify(
        self, tenant: str, eid: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> dict[str, Any]:
        """Read, change and write one entity atomically.

        ``change`` receives the stored document and returns the new one (or None to delete the
        entity). Raises :class:`ResourceNotFound` when the entity does not exist.
        """
        with self.engine.begin() as conn:
            hit = self._load(conn, tenant, eid, lock=True)
            if hit is None:
                raise ResourceNotFound(f"entity {eid} not found")
            pk, doc = hit
            new = change(doc)
            if new is None:
                conn.execute(delete(entities).where(entities.c.pk == pk))
            else:
                self._rewrite(conn, pk, new)
        if new is None:
            self._emit([EntityEvent("deleted", tenant, eid, doc, None)])
            return doc
        self._emit([EntityEvent("updated", tenant, eid, doc, new)])
        return new

    def delete(self, tenant: str, eid: str) -> None:
        with self.engine.begin() as conn:
            row = conn.execute(
                delete(entities)
                .where(entities.c.tenant == tenant, entities.c.id == eid)
                .returning(entities.c.doc)
            ).first()
            if row is None:
                raise ResourceNotFound(f"entity {eid} not found")
        self._emit([EntityEvent("deleted", tenant, eid, row[0], None)])

    # --- batches ------------------------------------------------------------------------------------
    def write_batch(
        self, tenant: str, docs: Sequence[dict[str, Any]], merge: Callable[[dict, dict], dict] | None
    ) -> list[str]:
        """Insert new entities and update existing ones in one transaction.

        Parameters
        ----------
        docs
            Parsed entity documents (unique ids).
        merge
            ``merge(old, new) -> doc`` for entities that exist; None means existing ones are
            replaced by ``new`` (keeping ``createdAt``).

        Returns
        -------
        list of str
            The ids that were created (the others were updated).
        """
        if not docs:
            return []
        created: list[str] = []
        events: list[EntityEvent] = []
        with self.engine.begin() as conn:
            existing: dict[str, tuple[int, dict]] = {}
            ids = [d["id"] for d in docs]
            for chunk in _chunks(ids, 900):
                stmt = select(entities.c.id, entities.c.pk, entities.c.doc).where(
                    entities.c.tenant == tenant, entities.c.id.in_(chunk)
                )
                if self.postgres:
                    stmt = stmt.with_for_update()
                for eid, pk, doc in conn.execute(stmt):
                    existing[eid] = (pk, doc)
            new_docs = [d for d in docs if d["id"] not in existing]
            if new_docs:
                self._insert(conn, tenant, new_docs)
                created = [d["id"] for d in new_docs]
                events += [EntityEvent("created", tenant, d["id"], None, d) for d in new_docs]
            rewrites: list[tuple[int, dict[str, Any]]] = []
            for d in docs:
                if d["id"] in existing:
                    pk, old = existing[d["id"]]
                    doc = merge(old, d) if merge else {**d, "createdAt": old.get("createdAt", d["createdAt"])}
                    rewrites.append((pk, doc))
                    events.append(EntityEvent("updated", tenant, d["id"], old, doc))
            self._rewrite_many(conn, rewrites)
        self._emit(events)
        return created

    def delete_many(self, tenant: str, ids: Sequence[str]) -> set[str]:
        """Delete entities by id; returns the ids that existed."""
        found: dict[str, dict[str, Any]] = {}
        with self.engine.begin() as conn:
            for chunk in _chunks(list(ids), 900):
                rows = conn.execute(
                    delete(entities)
                    .where(entities.c.tenant == tenant, entities.c.id.in_(chunk))
                    .returning(entities.c.id, entities.c.doc)
                )
                found.update({r[0]: r[1] for r in rows})
        self._emit([EntityEvent("deleted", tenant, i, d, None) for i, d in found.items()])
        return set(found)

    # --- index maintenance --------------------------------------------------------------------------
    def _insert(self, conn: Connection, tenant: str, docs: Sequence[dict[str, Any]]) -> None:
        """Insert new entities and their index rows (driver-level executemany: the hot path)."""
        ph = "%s" if self.postgres else "?"
        jsonb = "::jsonb" if self.postgres else ""
        sql = (
            f"INSERT INTO entities (tenant, id, type, created_at, modified_at, doc) "
            f"VALUES ({ph}, {ph}, {ph}, {ph}, {ph}, {ph}{jsonb})"
        )
        rows = [
            (
                tenant,
                d["id"],
                d["type"][0] if d["type"] else "",
                d["createdAt"],
                d["modifiedAt"],
                orjson.dumps(d).decode(),
            )
            for d in docs
        ]
        pks: dict[str, int] = {}
        for chunk in _chunks(rows, 2000):
            conn.exec_driver_sql(sql, chunk)
            ids = [r[1] for r in chunk]
            found = conn.execute(
                select(entities.c.id, entities.c.pk).where(
                    entities.c.tenant == tenant, entities.c.id.in_(ids)
                )
            )
            pks.update({r[0]: r[1] for r in found})
        self._index(conn, [(pks[d["id"]], d) for d in docs])

    def _rewrite_many(self, conn: Connection, pairs: list[tuple[int, dict[str, Any]]]) -> None:
        """Replace the documents and index rows of existing entities, in bulk."""
        if not pairs:
            return
        ph = "%s" if self.postgres else "?"
        jsonb = "::jsonb" if self.postgres else ""
        conn.exec_driver_sql(
            f"UPDATE entities SET doc = {ph}{jsonb}, type = {ph}, modified_at = {ph}, created_at = {ph} WHERE pk = {ph}",
            [
                (
                    orjson.dumps(d).decode(),
                    d["type"][0] if d["type"] else "",
                    d["modifiedAt"],
                    d["createdAt"],
                    pk,
                )
                for pk, d in pairs
            ],
        )
        pks = [pk for pk, _ in pairs]
        for chunk in _chunks(pks, 900):
            for table in (attr_index, entity_types, entity_scopes, geo_index):
                conn.execute(delete(table).where(table.c.entity_pk.in_(chunk)))
        self._index(conn, pairs)

    def _rewrite(self, conn: Connection, pk: int, doc: dict[str, Any]) -> None:
        conn.execute(
            update(entities)
            .where(entities.c.pk == pk)
            .values(
                doc=doc,
                type=doc["type"][0] if doc["type"] else "",
                modified_at=doc["modifiedAt"],
                created_at=doc["createdAt"],
            )
        )
        for table in (attr_index, entity_types, entity_scopes, geo_index):
            conn.execute(delete(table).where(table.c.entity_pk == pk))
        self._index(conn, [(pk, doc)])

    def _index(self, conn: Connection, pairs: Sequence[tuple[int, dict[str, Any]]]) -> None:
        """Write the type, scope, attribute-leaf and geometry index rows of entities."""
        type_rows: list[tuple[Any, ...]] = []
        scope_rows: list[tuple[Any, ...]] = []
        attr_rows: list[tuple[Any, ...]] = []
        geo_rows: list[tuple[Any, ...]] = []
        for pk, doc in pairs:
            type_rows.extend((pk, t) for t in doc["type"])
            scope_rows.extend((pk, sc) for sc in doc.get("scope") or [])
            attr_rows.extend(
                (pk, r["attr"], r.get("path", ""), r.get("dataset_id"), r["kind"], r.get("num"), r.get("txt"))
                for r in query.index_rows(doc)
            )
            geo_rows.extend(
                (
                    pk,
                    r["attr"],
                    r.get("dataset_id"),
                    r["min_x"],
                    r["min_y"],
                    r["max_x"],
                    r["max_y"],
                    r["geojson"],
                )
                for r in geo.geo_rows(doc)
            )
        ph = "%s" if self.postgres else "?"
        for table, cols, rows in (
            ("entity_types", "entity_pk, type", type_rows),
            ("entity_scopes", "entity_pk, scope", scope_rows),
            ("attr_index", "entity_pk, attr, path, dataset_id, kind, num, txt", attr_rows),
            ("geo_index", "entity_pk, attr, dataset_id, min_x, min_y, max_x, max_y, geojson", geo_rows),
        ):
            if not rows:
                continue
            marks = ", ".join([ph] * (cols.count(",") + 1))
            sql = f"INSERT INTO {table} ({cols}) VALUES ({marks})"
            for chunk in _chunks(rows, 10000):
                conn.exec_driver_sql(sql, chunk)

    # --- queries --------------------------------------------------------------------------------
    def _where(self, tenant: str, eq: EntityQuery, conn: Connection) -> list[ColumnElement[bool]]:
        """SQL conditions of ``eq``; ``conn`` lets the query engine probe term selectivity first."""
        conds: list[ColumnElement[bool]] = [entities.c.tenant == tenant, entities.c.deleted_at.is_(None)]
        if eq.ids:
            conds.append(entities.c.id.in_(list(eq.ids)))
        if eq.id_pattern:
            try:
                re.compile(eq.id_pattern)
            except re.error as exc:
                raise BadRequestData(
                    f"idPattern {eq.id_pattern!r} is not a valid regular expression: {exc}"
                ) from None
            conds.append(entities.c.id.regexp_match(eq.id_pattern))
        if eq.type_query is not None:
            conds.append(query.type_filter(eq.type_query, eq.expand, connection=conn))
        if eq.q is not None:
            conds.append(query.q_filter(eq.q, eq.expand, connection=conn))
        if eq.scope_q is not None:
            conds.append(query.scope_filter(eq.scope_q))
        if eq.attrs:
            conds.append(
                exists().where(attr_index.c.entity_pk == entities.c.pk, attr_index.c.attr.in_(list(eq.attrs)))
            )
        return conds

    def query(
        self, tenant: str, eq: EntityQuery, *, count: bool = False
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Entities matching ``eq`` (one page, in creation order) and, if asked, the total count."""
        with self.engine.connect() as conn:
            conds = self._where(tenant, eq, conn)
            if eq.geo is not None:
                pks = list(
                    geo.refine(
                        eq.geo, conn.execute(geo.geo_candidates(eq.geo, select(entities.c.pk).where(*conds)))
                    )
                )
                conds.append(entities.c.pk.in_(pks) if pks else entities.c.pk.is_(None))
            total = None
            if count:
                total = conn.execute(select(func.count()).select_from(entities).where(*conds)).scalar_one()
            docs: list[dict[str, Any]] = []
            if eq.limit > 0:
                rows = conn.execute(
                    select(entities.c.doc)
                    .where(*conds)
                    .order_by(entities.c.pk)
                    .limit(eq.limit)
                    .offset(eq.offset)
                )
                docs = [r[0] for r in rows]
        return docs, total

    def delete_matching(self, tenant: str, eq: EntityQuery) -> int:
        """Delete every entity matching ``eq`` (purge); returns how many were deleted."""
        with self.engine.begin() as conn:
            conds = self._where(tenant, eq, conn)
            if eq.geo is not None:
                pks = list(
                    geo.refine(
                        eq.geo, conn.execute(geo.geo_candidates(eq.geo, select(entities.c.pk).where(*conds)))
                    )
                )
                conds.append(entities.c.pk.in_(pks) if pks else entities.c.pk.is_(None))
            rows = conn.execute(
                delete(entities)
                .where(entities.c.pk.in_(select(entities.c.pk).where(*conds)))
                .returning(entities.c.id, entities.c.doc)
            ).all()
        self._emit([EntityEvent("deleted", tenant, r[0], r[1], None) for r in rows])
        return len(rows)

    def tenant_exists(self, tenant: str) -> bool:
        if tenant == "":
            return True
        with self.engine.connect() as conn:
            return (
                conn.execute(select(entities.c.pk).where(entities.c.tenant == tenant).limit(1)).first()
                is not None
            )

    def tenants(self) -> list[str]:
        with self.engine.connect() as conn:
            return sorted(conn.execute(select(entities.c.tenant).distinct()).scalars())

    # --- discovery --------------------------------------------------------------------------------
    def types(self, tenant: str) -> dict[str, set[str]]:
        """Every entity type IRI of the tenant with the attribute IRIs its entities have."""
        stmt = (
            select(entity_types.c.type, attr_index.c.attr)
            .select_from(entity_types.join(entities, entities.c.pk == entity_types.c.entity_pk))
            .outerjoin(
                attr_index,
                and_(attr_index.c.entity_pk == entity_types.c.entity_pk, attr_index.c.path == ""),
            )
            .where(entities.c.tenant == tenant)
            .distinct()
        )
        out: dict[str, set[str]] = {}
        with self.engine.connect() as conn:
            for t, a in conn.execute(stmt):
                out.setdefault(t, set())
                if a is not None:
                    out[t].add(a)
        return out

    def type_details(self, tenant: str, type_iri: str) -> tuple[int, dict[str, set[str]]]:
        """Entity count of a type, and for each attribute IRI the attribute types seen."""
        with self.engine.connect() as conn:
            n = conn.execute(
                select(func.count())
                .select_from(entity_types.join(entities, entities.c.pk == entity_types.c.entity_pk))
                .where(entities.c.tenant == tenant, entity_types.c.type == type_iri)
            ).scalar_one()
            docs = conn.execute(
                select(entities.c.doc)
                .where(entities.c.tenant == tenant)
                .where(
                    exists().where(entity_types.c.entity_pk == entities.c.pk, entity_types.c.type == type_iri)
                )
            ).scalars()
            attrs: dict[str, set[str]] = {}
            for d in docs:
                for iri, insts in d.get("attrs", {}).items():
                    attrs.setdefault(iri, set()).update(i["type"] for i in insts)
        return int(n), attrs

    def attributes(self, tenant: str) -> dict[str, dict[str, Any]]:
        """Every attribute IRI of the tenant with its count, attribute types and entity types."""
        out: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for doc in conn.execute(select(entities.c.doc).where(entities.c.tenant == tenant)).scalars():
                for iri, insts in doc.get("attrs", {}).items():
                    info = out.setdefault(iri, {"count": 0, "attributeTypes": set(), "typeNames": set()})
                    info["count"] += 1
                    info["attributeTypes"].update(i["type"] for i in insts)
                    info["typeNames"].update(doc["type"])
        return out


def _chunks(items: Sequence[Any] | list[Any], size: int) -> Iterable[Any]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
