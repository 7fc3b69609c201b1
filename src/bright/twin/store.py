"""The entity store of a twin node: NGSI-LD entities on SQLite or PostgreSQL (SQLAlchemy 2 Core).

Writes are transactional and keep three index tables in step with each entity document
(types, scopes, attribute leaves, geometries), so that every filter of the NGSI-LD query language
runs in the database. Read-modify-write operations lock the entity row (``FOR UPDATE`` on
PostgreSQL; SQLite serialises writers).
"""

from __future__ import annotations

import gc
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ContextDecorator, contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, and_, delete, exists, func, select, update
from sqlalchemy.sql.elements import ColumnElement

from bright.twin import geo, query
from bright.twin.db import copy_rows, is_postgres, staging_table
from bright.twin.errors import AlreadyExists, BadRequestData, ResourceNotFound
from bright.twin.migrations import migrate
from bright.twin.schema import attr_index, entities, entity_scopes, entity_types, geo_index

log = logging.getLogger("bright.twin.store")

ANALYZE_MIN_ROWS = 5000
"""Entities created by one process before it refreshes PostgreSQL's statistics (see TwinStore)."""


class CollectorPause(ContextDecorator):
    """Python's cyclic garbage collector paused while bulk writes run (re-entrant, thread-safe).

    A batch of entities builds hundreds of thousands of short-lived, acyclic objects (parsed
    documents, index rows, history rows). Each allocation counts towards a collection and the
    full collections walk every object of the process (a node holds millions: pandas, the web
    app): about a fifth of a batch's CPU time. Reference counting still frees everything at
    once; the collector runs again when the last bulk write of the process ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._was_enabled = False

    def __enter__(self) -> CollectorPause:
        with self._lock:
            if self._holders == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._holders += 1
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0 and self._was_enabled:
                gc.enable()


bulk_write = CollectorPause()
"""Use as ``with bulk_write:`` or ``@bulk_write`` around batch operations."""


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
        # Planner statistics (PostgreSQL): entities created since the last ANALYZE, and the
        # table size then (None: not read yet). See _note_created.
        self._stats_lock = threading.Lock()
        self._created_since_analyze = 0
        self._entities_at_analyze: float | None = None
        if create:
            migrate(engine)

    def _note_created(self, n: int) -> None:
        """Refresh PostgreSQL's planner statistics when the entity tables have grown a lot.

        Without statistics (a fresh database after a bulk import, before autovacuum gets to it)
        PostgreSQL takes ``tenant = ''`` for a rare value and plans a paged query as "collect
        every match, then sort" instead of "walk the (tenant, pk) order and stop at the page":
        hundreds of milliseconds instead of one. An ``ANALYZE`` of the entity tables runs after
        a write that brings the entities created by this process since the last one to the size
        of the table then (at least :data:`ANALYZE_MIN_ROWS`): a handful of times while a table
        grows by orders of magnitude, never on steady traffic (autovacuum keeps them fresh).
        """
        if not self.postgres or n <= 0:
            return
        with self._stats_lock:
            if self._entities_at_analyze is None:
                with self.engine.connect() as conn:
                    tuples = conn.exec_driver_sql(
                        "SELECT reltuples FROM pg_class WHERE relname = 'entities' AND relkind = 'r'"
                    ).scalar()
                self._entities_at_analyze = max(float(tuples or 0), 0.0)
            self._created_since_analyze += n
            if self._created_since_analyze < max(ANALYZE_MIN_ROWS, self._entities_at_analyze):
                return
            self._entities_at_analyze += self._created_since_analyze
            self._created_since_analyze = 0
        try:
            with self.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE entities, entity_types, entity_scopes, attr_index, geo_index")
        except Exception:  # pragma: no cover - statistics are an optimisation; the write stands
            log.exception("ANALYZE of the entity tables failed")

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
        self._note_created(1)
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
            rewrites: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
            for d in docs:
                if d["id"] in existing:
                    pk, old = existing[d["id"]]
                    doc = merge(old, d) if merge else {**d, "createdAt": old.get("createdAt", d["createdAt"])}
                    rewrites.append((pk, old, doc))
                    events.append(EntityEvent("updated", tenant, d["id"], old, doc))
            self._rewrite_many(conn, rewrites)
        self._note_created(len(created))
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
        """Insert new entities and their index rows (the hot path of imports and batch upserts).

        PostgreSQL: the keys are taken from the sequence in one round trip and the rows are
        streamed with ``COPY``. SQLite: one prepared ``INSERT`` run over all rows (executemany),
        then the keys are read back by id.
        """
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
        if self.postgres:
            keys = conn.exec_driver_sql(
                "SELECT nextval(pg_get_serial_sequence('entities', 'pk')) FROM generate_series(1, %s)",
                (len(rows),),
            ).scalars()
            keyed = [(pk, *r) for pk, r in zip(keys, rows, strict=True)]
            copy_rows(
                conn, "entities", ("pk", "tenant", "id", "type", "created_at", "modified_at", "doc"), keyed
            )
            pks = {r[2]: r[0] for r in keyed}
        else:
            sql = "INSERT INTO entities (tenant, id, type, created_at, modified_at, doc) VALUES (?, ?, ?, ?, ?, ?)"
            for chunk in _chunks(rows, 2000):
                conn.exec_driver_sql(sql, chunk)
                found = conn.execute(
                    select(entities.c.id, entities.c.pk).where(
                        entities.c.tenant == tenant, entities.c.id.in_([r[1] for r in chunk])
                    )
                )
                pks.update({r[0]: r[1] for r in found})
        self._write_index(conn, _index_rows([(pks[d["id"]], d) for d in docs]))

    def _rewrite_many(
        self, conn: Connection, triples: list[tuple[int, dict[str, Any], dict[str, Any]]]
    ) -> None:
        """Replace the documents of existing entities (pk, old, new) and their index rows, in bulk.

        The index rows of an entity are rewritten only when they differ from the old ones (a
        re-sent entity, or one whose changes only touch system times, keeps its rows).
        """
        if not triples:
            return
        values = [
            (pk, orjson.dumps(d).decode(), d["type"][0] if d["type"] else "", d["modifiedAt"], d["createdAt"])
            for pk, _old, d in triples
        ]
        if self.postgres:
            staging_table(
                conn,
                "entities_incoming",
                "pk bigint, doc jsonb, type text, modified_at text, created_at text",
            )
            copy_rows(conn, "entities_incoming", ("pk", "doc", "type", "modified_at", "created_at"), values)
            conn.exec_driver_sql(
                "UPDATE entities SET doc = u.doc, type = u.type, modified_at = u.modified_at, "
                "created_at = u.created_at FROM entities_incoming AS u WHERE entities.pk = u.pk"
            )
        else:
            conn.exec_driver_sql(
                "UPDATE entities SET doc = ?, type = ?, modified_at = ?, created_at = ? WHERE pk = ?",
                [(doc, t, m, c, pk) for pk, doc, t, m, c in values],
            )
        changed: list[int] = []
        fresh = _IndexRows()
        for pk, old, new in triples:
            new_rows = _index_rows([(pk, new)])
            if not _index_rows([(pk, old)]).same(new_rows):
                changed.append(pk)
                fresh.extend(new_rows)
        self._delete_index(conn, changed)
        self._write_index(conn, fresh)

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
        self._delete_index(conn, [pk])
        self._write_index(conn, _index_rows([(pk, doc)]))

    def _delete_index(self, conn: Connection, pks: Sequence[int]) -> None:
        """Delete the index rows of entities (before their new rows are written)."""
        if not pks:
            return
        for table in _INDEX_TABLES:
            if self.postgres:
                conn.exec_driver_sql(f"DELETE FROM {table.name} WHERE entity_pk = ANY(%s)", (list(pks),))
            else:
                for chunk in _chunks(pks, 900):
                    conn.execute(delete(table).where(table.c.entity_pk.in_(chunk)))

    def _write_index(self, conn: Connection, rows: _IndexRows) -> None:
        """Write type, scope, attribute-leaf and geometry index rows (COPY on PostgreSQL)."""
        for table, cols, table_rows in rows.tables():
            if not table_rows:
                continue
            if self.postgres:
                copy_rows(conn, table, cols, table_rows)
                continue
            sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            for chunk in _chunks(table_rows, 10000):
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


_INDEX_TABLES = (attr_index, entity_types, entity_scopes, geo_index)


@dataclass
class _IndexRows:
    """Index rows of some entities, per table, as tuples in column order."""

    types: list[tuple[Any, ...]] = field(default_factory=list)
    scopes: list[tuple[Any, ...]] = field(default_factory=list)
    attrs: list[tuple[Any, ...]] = field(default_factory=list)
    geos: list[tuple[Any, ...]] = field(default_factory=list)

    def extend(self, other: _IndexRows) -> None:
        self.types += other.types
        self.scopes += other.scopes
        self.attrs += other.attrs
        self.geos += other.geos

    def same(self, other: _IndexRows) -> bool:
        """The same rows in every table (in any order: JSONB does not keep the key order)."""
        return all(
            set(a) == set(b) for (_t, _c, a), (_u, _d, b) in zip(self.tables(), other.tables(), strict=True)
        )

    def tables(self) -> list[tuple[str, tuple[str, ...], list[tuple[Any, ...]]]]:
        return [
            ("entity_types", ("entity_pk", "type"), self.types),
            ("entity_scopes", ("entity_pk", "scope"), self.scopes),
            ("attr_index", ("entity_pk", "attr", "path", "dataset_id", "kind", "num", "txt"), self.attrs),
            (
                "geo_index",
                ("entity_pk", "attr", "dataset_id", "min_x", "min_y", "max_x", "max_y", "geojson"),
                self.geos,
            ),
        ]


def _index_rows(pairs: Iterable[tuple[int, dict[str, Any]]]) -> _IndexRows:
    """The type, scope, attribute-leaf and geometry index rows of entities ``(pk, doc)``."""
    out = _IndexRows()
    for pk, doc in pairs:
        out.types.extend((pk, t) for t in doc["type"])
        out.scopes.extend((pk, sc) for sc in doc.get("scope") or [])
        out.attrs.extend(
            (pk, r["attr"], r["path"], r["dataset_id"], r["kind"], r["num"], r["txt"])
            for r in query.index_rows(doc)
        )
        out.geos.extend(
            (pk, r["attr"], r["dataset_id"], r["min_x"], r["min_y"], r["max_x"], r["max_y"], r["geojson"])
            for r in geo.geo_rows(doc)
        )
    return out


def _chunks(items: Sequence[Any] | list[Any], size: int) -> Iterable[Any]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
