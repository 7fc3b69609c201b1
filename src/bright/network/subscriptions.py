"""NGSI-LD subscriptions and notifications (ETSI GS CIM 009, clauses 5.2.12, 5.8, 5.11).

A subscription asks the node to tell an endpoint (HTTP or MQTT) when entities change, or
periodically. This module models it one to one with the spec and runs it:

- :func:`validate_members` / :func:`check_subscription` turn a request body into the stored
  document (entity types and attribute names expanded to IRIs with the request's @context);
  :func:`render_subscription` compacts it back with the reader's @context.
- :class:`SubscriptionStore` keeps subscriptions per tenant in SQL (SQLite and PostgreSQL), with
  their notification status (``timesSent``, ``lastSuccess``, ``lastFailure``...).
- :class:`SubscriptionManager` receives every committed :class:`~bright.twin.store.EntityEvent`,
  finds the subscriptions it triggers (entity selectors, ``watchedAttributes``,
  ``notificationTrigger``, ``q``, ``geoQ``, ``scopeQ``, throttling), renders the notification
  *at event time* and hands it to the :class:`Delivery` worker; it also fires the periodic
  (``timeInterval``) notifications.
- :class:`Delivery` sends notifications off the request path, in worker threads: HTTP POST with
  the Notification body (JSON with a Link header, or JSON-LD, per ``endpoint.accept``), or an
  MQTT publish (``mqtt://user:pass@host:port/topic``, NGSI-LD MQTT binding: ``{"metadata",
  "body"}``), with retries and exponential backoff; the outcome updates the status counters.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    func,
    select,
    update,
)

from bright.network.signing import request_hooks
from bright.twin import geo, migrations, query
from bright.twin.context import CORE_CONTEXT_URL, ActiveContext
from bright.twin.entities import (
    NULL,
    RenderOptions,
    check_name,
    is_uri,
    now_iso,
    parse_datetime,
    render_entity,
)
from bright.twin.errors import AlreadyExists, BadRequestData, NgsiLdError, ResourceNotFound, TooManyResults
from bright.twin.projection import parse_projection
from bright.twin.schema import PK, JsonDoc
from bright.twin.store import EntityEvent

log = logging.getLogger("bright.network.subscriptions")

ENTITY_KIND = "entity"
CSOURCE_KIND = "csource"
TRIGGERS = (
    "entityCreated",
    "entityUpdated",
    "entityDeleted",
    "attributeCreated",
    "attributeUpdated",
    "attributeDeleted",
)
DEFAULT_TRIGGERS = ("attributeCreated", "attributeUpdated")
FORMATS = ("normalized", "concise", "keyValues", "simplified")
ACCEPTS = ("application/json", "application/ld+json", "application/geo+json")
ENDPOINT_SCHEMES = ("http", "https", "mqtt", "mqtts")
MAX_PAGE = 1000
# Members the node computes; ignored when a client sends them.
_SYSTEM_MEMBERS = {"status", "createdAt", "modifiedAt", "deletedAt"}
_STATUS_MEMBERS = ("status", "timesSent", "timesFailed", "lastNotification", "lastSuccess", "lastFailure")
_MANDATORY = {"type", "notification"}
_NULL_VALUE_KEY = {
    "Property": "value",
    "GeoProperty": "value",
    "Relationship": "object",
    "LanguageProperty": "languageMap",
    "JsonProperty": "json",
    "VocabularyProperty": "vocab",
    "ListProperty": "valueList",
    "ListRelationship": "objectList",
}
_PREVIOUS_KEY = {
    "value": "previousValue",
    "object": "previousObject",
    "languageMap": "previousLanguageMap",
    "json": "previousJson",
    "vocab": "previousVocab",
    "valueList": "previousValueList",
    "objectList": "previousObjectList",
}

# --------------------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------------------

metadata = MetaData()
subscriptions_table = Table(
    "ngsild_subscriptions",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("tenant", String(128), nullable=False, default=""),
    # 'entity' (/subscriptions) or 'csource' (/csourceSubscriptions)
    Column("kind", String(16), nullable=False),
    Column("id", Text, nullable=False),
    # the validated document, entity types and attribute names expanded to IRIs
    Column("doc", JsonDoc, nullable=False),
    # the @context of the creating request (term expansion of q, rendering of notifications)
    Column("context", JsonDoc, nullable=True),
    # notification status: timesSent, timesFailed, lastNotification, lastSuccess, lastFailure, status
    Column("state", JsonDoc, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("modified_at", String(32), nullable=False),
    UniqueConstraint("tenant", "kind", "id", name="uq_ngsild_subscriptions"),
)


def _create_tables(conn: Connection) -> None:
    metadata.create_all(conn, checkfirst=True)


migrations.register(20, "NGSI-LD subscriptions", _create_tables)


@dataclass
class StoredSubscription:
    """One stored subscription: its document, @context, status counters and timestamps."""

    tenant: str
    kind: str
    id: str
    doc: dict[str, Any]
    context: Any
    state: dict[str, Any]
    created_at: str
    modified_at: str


class SubscriptionStore:
    """Subscriptions (entity and context-source ones) of every tenant, in the node's database.

    Parameters
    ----------
    engine
        The node's SQLAlchemy engine; the tables are created on first use (migration step 20).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        migrations.migrate(engine)
        self._lock = threading.Lock()
        self.generation = 0  # bumped on every write, so caches know when to reload

    @staticmethod
    def _row(row: Any) -> StoredSubscription:
        return StoredSubscription(
            tenant=row.tenant,
            kind=row.kind,
            id=row.id,
            doc=row.doc,
            context=row.context,
            state=row.state or {},
            created_at=row.created_at,
            modified_at=row.modified_at,
        )

    def insert(self, sub: StoredSubscription) -> None:
        """Store a new subscription; :class:`AlreadyExists` when its id is taken in the tenant."""
        t = subscriptions_table
        with self.engine.begin() as conn:
            taken = conn.execute(
                select(t.c.pk).where(t.c.tenant == sub.tenant, t.c.kind == sub.kind, t.c.id == sub.id)
            ).first()
            if taken is not None:
                raise AlreadyExists(f"subscription {sub.id} already exists")
            conn.execute(
                t.insert().values(
                    tenant=sub.tenant,
                    kind=sub.kind,
                    id=sub.id,
                    doc=sub.doc,
                    context=sub.context,
                    state=sub.state,
                    created_at=sub.created_at,
                    modified_at=sub.modified_at,
                )
            )
        self.generation += 1

    def get(self, tenant: str, kind: str, sid: str) -> StoredSubscription | None:
        t = subscriptions_table
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.tenant == tenant, t.c.kind == kind, t.c.id == sid)).first()
        return self._row(row) if row is not None else None

    def list(
        self, tenant: str | None, kind: str, *, limit: int | None = None, offset: int = 0
    ) -> list[StoredSubscription]:
        """Subscriptions of a tenant (all tenants when None), in creation order."""
        t = subscriptions_table
        stmt = select(t).where(t.c.kind == kind)
        if tenant is not None:
            stmt = stmt.where(t.c.tenant == tenant)
        stmt = stmt.order_by(t.c.pk).offset(offset)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            return [self._row(r) for r in conn.execute(stmt)]

    def count(self, tenant: str, kind: str) -> int:
        t = subscriptions_table
        with self.engine.connect() as conn:
            n = conn.execute(
                select(func.count()).select_from(t).where(t.c.tenant == tenant, t.c.kind == kind)
            ).scalar_one()
        return int(n)

    def replace(self, sub: StoredSubscription) -> None:
        """Write a changed document (and @context) of an existing subscription."""
        t = subscriptions_table
        with self.engine.begin() as conn:
            res = conn.execute(
                update(t)
                .where(t.c.tenant == sub.tenant, t.c.kind == sub.kind, t.c.id == sub.id)
                .values(doc=sub.doc, context=sub.context, modified_at=sub.modified_at, state=sub.state)
            )
            if res.rowcount == 0:
                raise ResourceNotFound(f"subscription {sub.id} not found")
        self.generation += 1

    def delete(self, tenant: str, kind: str, sid: str) -> None:
        t = subscriptions_table
        with self.engine.begin() as conn:
            res = conn.execute(delete(t).where(t.c.tenant == tenant, t.c.kind == kind, t.c.id == sid))
            if res.rowcount == 0:
                raise ResourceNotFound(f"subscription {sid} not found")
        self.generation += 1

    def update_state(
        self, tenant: str, kind: str, sid: str, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> None:
        """Read-modify-write the notification status of one subscription (no-op if it is gone)."""
        t = subscriptions_table
        with self._lock, self.engine.begin() as conn:
            row = conn.execute(
                select(t.c.pk, t.c.state).where(t.c.tenant == tenant, t.c.kind == kind, t.c.id == sid)
            ).first()
            if row is None:
                return
            conn.execute(update(t).where(t.c.pk == row[0]).values(state=change(dict(row[1] or {}))))


# --------------------------------------------------------------------------------------------------
# Validation (request body -> stored document)
# --------------------------------------------------------------------------------------------------


def _bad(member: str, msg: str) -> BadRequestData:
    return BadRequestData(f"subscription member {member}: {msg}")


def _names(value: Any, member: str, ctx: ActiveContext, *, allow_empty: bool = False) -> list[str]:
    if not isinstance(value, list) or (not value and not allow_empty):
        raise _bad(member, "must be a non-empty array of attribute names")
    out = []
    for name in value:
        if not isinstance(name, str):
            raise _bad(member, f"{name!r} is not an attribute name")
        try:
            check_name(name)
        except BadRequestData as exc:
            raise _bad(member, exc.detail) from None
        out.append(ctx.expand(name))
    return out


def _number(value: Any, member: str, *, positive: bool) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(member, f"must be a number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise _bad(member, f"must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return value


def _key_values(value: Any, member: str) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise _bad(member, "must be an array of {key, value} pairs")
    for kv in value:
        if not (isinstance(kv, dict) and isinstance(kv.get("key"), str) and isinstance(kv.get("value"), str)):
            raise _bad(member, f"{kv!r} is not a {{key, value}} pair of strings")
    return value


def _entity_selectors(value: Any, ctx: ActiveContext, member: str = "entities") -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise _bad(member, "must be a non-empty array of entity selectors")
    out = []
    for sel in value:
        if not isinstance(sel, dict):
            raise _bad(member, f"{sel!r} is not an entity selector object")
        typ = sel.get("type")
        if not isinstance(typ, str) or not typ.strip():
            raise _bad(member, "each entity selector needs a type")
        try:
            item: dict[str, Any] = {"type": expand_type_query(typ, ctx)}
        except ValueError as exc:
            raise _bad(member, str(exc)) from None
        if "id" in sel:
            if not is_uri(sel["id"]):
                raise _bad(member, f"id {sel['id']!r} is not a URI")
            item["id"] = sel["id"]
        if "idPattern" in sel:
            pat = sel["idPattern"]
            try:
                re.compile(pat)
            except (re.error, TypeError) as exc:
                raise _bad(member, f"idPattern {pat!r} is not a regular expression ({exc})") from None
            item["idPattern"] = pat
        out.append(item)
    return out


def type_names(node: Any) -> list[str]:
    """The entity type names of a parsed type expression, left to right."""
    return [t.name for t in query.iter_terms(node) if isinstance(t, query.TypeName)]


def expand_type_query(text: str, ctx: ActiveContext) -> str:
    """Expand every type name of a type expression (``(Building|Tower)``), keeping its operators.

    Raises
    ------
    ValueError
        ``text`` is not a type expression.
    """
    node = query.parse_type_query(text)
    names = set(type_names(node))
    if len(names) == 1 and text.strip() == next(iter(names)):
        return ctx.expand(text.strip())
    out = text
    for name in sorted(names, key=len, reverse=True):
        out = re.sub(rf"(?<![\w:/#.-]){re.escape(name)}(?![\w:/#.-])", ctx.expand(name), out)
    return out


def _compact_type_query(text: str, ctx: ActiveContext) -> str:
    try:
        node = query.parse_type_query(text)
    except ValueError:
        return text
    out = text
    for name in sorted(set(type_names(node)), key=len, reverse=True):
        out = out.replace(name, ctx.compact(name))
    return out


def _endpoint(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad("notification.endpoint", "must be an object with a uri")
    uri = value.get("uri")
    if not isinstance(uri, str) or not is_uri(uri):
        raise _bad("notification.endpoint.uri", f"{uri!r} is not an absolute URI")
    scheme = urlsplit(uri).scheme.lower()
    if scheme not in ENDPOINT_SCHEMES:
        raise _bad(
            "notification.endpoint.uri", f"scheme {scheme!r} is not one of {', '.join(ENDPOINT_SCHEMES)}"
        )
    out: dict[str, Any] = {"uri": uri}
    for key, val in value.items():
        if key == "uri":
            continue
        if key == "accept":
            if val not in ACCEPTS:
                raise _bad("notification.endpoint.accept", f"{val!r} is not one of {', '.join(ACCEPTS)}")
        elif key in ("receiverInfo", "notifierInfo"):
            _key_values(val, f"notification.endpoint.{key}")
        elif key in ("timeout", "cooldown"):
            _number(val, f"notification.endpoint.{key}", positive=True)
        out[key] = val
    return out


def _notification(value: Any, ctx: ActiveContext) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad("notification", "must be an object")
    if "endpoint" not in value or value["endpoint"] is None:
        raise _bad("notification", "endpoint is mandatory")
    out: dict[str, Any] = {}
    for key, val in value.items():
        if key in _STATUS_MEMBERS:
            continue  # computed by the node
        if key == "endpoint":
            out[key] = _endpoint(val)
        elif key == "attributes":
            out[key] = _names(val, "notification.attributes", ctx)
        elif key == "format":
            if val not in FORMATS:
                raise _bad("notification.format", f"{val!r} is not one of {', '.join(FORMATS)}")
            out[key] = val
        elif key in ("sysAttrs", "showChanges"):
            if not isinstance(val, bool):
                raise _bad(f"notification.{key}", "must be true or false")
            out[key] = val
        elif key in ("pick", "omit"):
            if not isinstance(val, list) or not val or not all(isinstance(v, str) for v in val):
                raise _bad(f"notification.{key}", "must be a non-empty array of entity member names")
            parse_projection(",".join(val), key)
            out[key] = val
        elif key == "join":
            if val not in ("flat", "inline", "@none"):
                raise _bad("notification.join", f"{val!r} is not one of flat, inline, @none")
            out[key] = val
        elif key == "joinLevel":
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise _bad("notification.joinLevel", "must be a positive integer")
            out[key] = val
        else:
            out[key] = val
    if ("pick" in out or "omit" in out) and "attributes" in out:
        raise _bad("notification", "pick/omit and attributes cannot be used together")
    both = set(out.get("pick", [])) & set(out.get("omit", []))
    if both:
        raise _bad("notification", f"{sorted(both)[0]!r} is both in pick and omit")
    return out


def _geoq(value: Any, ctx: ActiveContext) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad("geoQ", "must be an object with geometry, coordinates and georel")
    coords = value.get("coordinates")
    try:
        geo.parse_geoquery(
            value.get("georel"),
            value.get("geometry"),
            coords,
            value.get("geoproperty"),
            expand=ctx.expand,
        )
    except ValueError as exc:
        raise _bad("geoQ", str(exc)) from None
    if any(value.get(k) in (None, "") for k in ("georel", "geometry", "coordinates")):
        raise _bad("geoQ", "georel, geometry and coordinates are mandatory")
    return dict(value)


def _temporal_q(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad("temporalQ", "must be an object")
    rel = value.get("timerel")
    if rel not in ("before", "after", "between"):
        raise _bad("temporalQ.timerel", f"{rel!r} is not one of before, after, between")
    parse_datetime(value.get("timeAt"), "temporalQ.timeAt")
    if rel == "between":
        parse_datetime(value.get("endTimeAt"), "temporalQ.endTimeAt")
    return dict(value)


def validate_members(body: Mapping[str, Any], ctx: ActiveContext, *, kind: str, now: str) -> dict[str, Any]:
    """Validate and normalise the members present in ``body`` (a whole subscription or a fragment).

    Entity types, watched attributes and notified attributes are expanded with ``ctx``; system
    members (``status``, ``timesSent``...) are dropped; ``null`` is kept to mean "remove"
    (PATCH). Cross-member rules are checked by :func:`check_subscription`.

    Raises
    ------
    BadRequestData
        The first member that breaks clause 5.2.12, named in the message.
    """
    out: dict[str, Any] = {}
    for key, val in body.items():
        if key == "@context" or key in _SYSTEM_MEMBERS:
            continue
        if val is None:
            if key in _MANDATORY:
                raise _bad(key, "is mandatory and cannot be removed")
            out[key] = None
            continue
        if key == "id":
            if not is_uri(val):
                raise _bad("id", f"{val!r} is not a URI")
            out[key] = val
        elif key == "type":
            if val != "Subscription":
                raise _bad("type", f"must be 'Subscription', got {val!r}")
            out[key] = val
        elif key == "entities":
            out[key] = _entity_selectors(val, ctx)
        elif key == "watchedAttributes":
            out[key] = _names(val, key, ctx)
        elif key == "notificationTrigger":
            if kind != ENTITY_KIND:
                raise _bad(key, "is only for entity subscriptions")
            if not isinstance(val, list) or not val or any(t not in TRIGGERS for t in val):
                raise _bad(key, f"must be a non-empty array of {', '.join(TRIGGERS)}")
            out[key] = list(dict.fromkeys(val))
        elif key in ("timeInterval",):
            out[key] = _number(val, key, positive=True)
        elif key == "throttling":
            out[key] = _number(val, key, positive=False)
        elif key == "q":
            if not isinstance(val, str):
                raise _bad("q", "must be a string")
            try:
                query.parse_q(unquote(val))
            except ValueError as exc:
                raise _bad("q", str(exc)) from None
            out[key] = val
        elif key == "scopeQ":
            if not isinstance(val, str):
                raise _bad("scopeQ", "must be a string")
            try:
                query.parse_scope_query(val)
            except ValueError as exc:
                raise _bad("scopeQ", str(exc)) from None
            out[key] = val
        elif key == "geoQ":
            out[key] = _geoq(val, ctx)
        elif key == "temporalQ":
            out[key] = _temporal_q(val)
        elif key == "isActive":
            if not isinstance(val, bool):
                raise _bad("isActive", "must be true or false")
            out[key] = val
        elif key == "expiresAt":
            when = parse_datetime(val, "expiresAt")
            if when <= now:
                raise _bad("expiresAt", f"{val!r} is in the past")
            out[key] = when
        elif key == "notification":
            out[key] = _notification(val, ctx)
        elif key == "datasetId":
            items = val if isinstance(val, list) else [val]
            if not items or not all(isinstance(d, str) and (d == "@none" or is_uri(d)) for d in items):
                raise _bad("datasetId", "must be an array of URIs")
            out[key] = items
        elif key == "jsonldContext":
            if not isinstance(val, str) or not is_uri(val):
                raise _bad("jsonldContext", f"{val!r} is not a URI")
            out[key] = val
        elif key in ("subscriptionName", "description", "lang", "csf"):
            if not isinstance(val, str):
                raise _bad(key, "must be a string")
            out[key] = val
        else:
            out[key] = val
    return out


def check_subscription(doc: Mapping[str, Any], *, kind: str) -> None:
    """Cross-member rules of a complete subscription document (clause 5.2.12).

    Raises
    ------
    BadRequestData
        Missing ``type``/``notification``, neither ``entities`` nor ``watchedAttributes``,
        ``timeInterval`` with ``throttling`` or ``watchedAttributes``.
    """
    if doc.get("type") != "Subscription":
        raise _bad("type", "is mandatory and must be 'Subscription'")
    if not doc.get("notification"):
        raise _bad("notification", "is mandatory")
    if not doc.get("entities") and not doc.get("watchedAttributes"):
        raise _bad("entities", "entities or watchedAttributes must be given")
    if "timeInterval" in doc and "throttling" in doc:
        raise _bad("timeInterval", "cannot be combined with throttling")
    if "timeInterval" in doc and "watchedAttributes" in doc:
        raise _bad("timeInterval", "cannot be combined with watchedAttributes")


# --------------------------------------------------------------------------------------------------
# The parsed subscription
# --------------------------------------------------------------------------------------------------


@dataclass
class Subscription:
    """A stored subscription with its filters parsed, ready to match entity events.

    Parameters
    ----------
    stored
        The stored record.
    ctx
        The active @context of the creating request (term expansion of ``q``, ``geoQ``).
    """

    stored: StoredSubscription
    ctx: ActiveContext
    selectors: list[tuple[str | None, re.Pattern[str] | None, Any]] = field(default_factory=list)
    q: Any = None
    scope_q: Any = None
    geo_q: Any = None

    def __post_init__(self) -> None:
        doc = self.stored.doc
        for sel in doc.get("entities") or []:
            pat = re.compile(sel["idPattern"]) if sel.get("idPattern") else None
            self.selectors.append((sel.get("id"), pat, query.parse_type_query(sel["type"])))
        if doc.get("q"):
            self.q = query.parse_q(unquote(doc["q"]))
        if doc.get("scopeQ"):
            self.scope_q = query.parse_scope_query(doc["scopeQ"])
        if doc.get("geoQ"):
            g = doc["geoQ"]
            self.geo_q = geo.parse_geoquery(
                g.get("georel"),
                g.get("geometry"),
                g.get("coordinates"),
                g.get("geoproperty"),
                expand=self.ctx.expand,
            )

    @property
    def id(self) -> str:
        return self.stored.id

    @property
    def doc(self) -> dict[str, Any]:
        return self.stored.doc

    @property
    def notification(self) -> dict[str, Any]:
        return self.stored.doc.get("notification") or {}

    @property
    def triggers(self) -> tuple[str, ...]:
        return tuple(self.stored.doc.get("notificationTrigger") or DEFAULT_TRIGGERS)

    @property
    def watched(self) -> set[str] | None:
        w = self.stored.doc.get("watchedAttributes")
        return set(w) if w else None

    @property
    def time_interval(self) -> float | None:
        ti = self.stored.doc.get("timeInterval")
        return float(ti) if ti else None

    @property
    def throttling(self) -> float:
        return float(self.stored.doc.get("throttling") or 0)

    def status(self, now: str) -> str:
        """``expired`` past ``expiresAt``, ``paused`` when ``isActive`` is false, else ``active``."""
        exp = self.stored.doc.get("expiresAt")
        if exp and exp <= now:
            return "expired"
        if self.stored.doc.get("isActive") is False:
            return "paused"
        return "active"

    def selects(self, doc: Mapping[str, Any]) -> bool:
        """True when the entity matches one of the entity selectors (or there are none)."""
        if not self.selectors:
            return True
        types = doc.get("type", [])
        for sid, pat, tq in self.selectors:
            if sid is not None and doc["id"] != sid:
                continue
            if pat is not None and not pat.search(doc["id"]):
                continue
            if query.type_matches(tq, types, lambda t: t):
                return True
        return False

    def filters(self, doc: Mapping[str, Any]) -> bool:
        """``q``, ``scopeQ`` and ``geoQ`` on an entity document."""
        if self.q is not None and not query.matches(self.q, dict(doc), self.ctx.expand):
            return False
        if self.scope_q is not None and not query.scope_matches(self.scope_q, doc.get("scope") or []):
            return False
        return not (self.geo_q is not None and not geo.geo_matches(self.geo_q, dict(doc)))


def status_of(doc: Mapping[str, Any], now: str) -> str:
    exp = doc.get("expiresAt")
    if exp and exp <= now:
        return "expired"
    if doc.get("isActive") is False:
        return "paused"
    return "active"


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


def render_subscription(
    stored: StoredSubscription, ctx: ActiveContext, *, now: str, sys_attrs: bool = False
) -> dict[str, Any]:
    """The subscription as the API returns it: terms compacted with the reader's @context.

    Only members the client gave are echoed, plus ``status``, the default ``notificationTrigger``
    (entity subscriptions) and the notification status once a notification was attempted.
    """
    doc = stored.doc
    out: dict[str, Any] = {"id": stored.id, "type": "Subscription"}
    for key, val in doc.items():
        if key in ("id", "type"):
            continue
        if key == "entities":
            items = []
            for sel in val:
                item = dict(sel)
                item["type"] = _compact_type_query(sel["type"], ctx)
                items.append(item)
            out[key] = items
        elif key == "watchedAttributes":
            out[key] = [ctx.compact(a) for a in val]
        elif key == "notification":
            out[key] = _render_notification(val, stored.state, ctx)
        else:
            out[key] = copy.deepcopy(val)
    if stored.kind == ENTITY_KIND and "notificationTrigger" not in out:
        out["notificationTrigger"] = list(DEFAULT_TRIGGERS)
    if "notification" not in out:
        out["notification"] = _render_notification({}, stored.state, ctx)
    out["status"] = status_of(doc, now)
    if sys_attrs:
        out["createdAt"] = stored.created_at
        out["modifiedAt"] = stored.modified_at
    return out


def _render_notification(
    params: Mapping[str, Any], state: Mapping[str, Any], ctx: ActiveContext
) -> dict[str, Any]:
    out = copy.deepcopy(dict(params))
    if "attributes" in out:
        out["attributes"] = [ctx.compact(a) for a in out["attributes"]]
    if state.get("timesSent"):
        for key in _STATUS_MEMBERS:
            if state.get(key) not in (None, 0):
                out[key] = state[key]
    return out


# --------------------------------------------------------------------------------------------------
# Change detection and notification data
# --------------------------------------------------------------------------------------------------


def _instance_key(inst: Mapping[str, Any]) -> str | None:
    return inst.get("datasetId")


def attribute_changes(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> dict[str, set[str]]:
    """Which attribute IRIs were created, updated or deleted between two entity documents.

    Returns
    -------
    dict
        ``{"attributeCreated": {...}, "attributeUpdated": {...}, "attributeDeleted": {...}}``; an
        attribute that lost one of its datasetId instances counts as deleted (and updated if
        another instance changed).
    """
    b = (before or {}).get("attrs", {})
    a = (after or {}).get("attrs", {})
    created = {iri for iri in a if iri not in b}
    deleted = {iri for iri in b if iri not in a}
    updated: set[str] = set()
    for iri in set(a) & set(b):
        old = {_instance_key(i): i for i in b[iri]}
        new = {_instance_key(i): i for i in a[iri]}
        if set(old) - set(new):
            deleted.add(iri)
        if any(k not in old or old[k] != v for k, v in new.items()):
            updated.add(iri)
    return {"attributeCreated": created, "attributeUpdated": updated, "attributeDeleted": deleted}


def _null_instance(
    inst: Mapping[str, Any], *, deleted_at: str | None, keep_dataset: bool = True, plain: bool = False
) -> dict[str, Any]:
    """An NGSI-LD Null instance standing for a deleted attribute instance.

    A LanguageProperty's null is ``{"@none": "urn:ngsi-ld:null"}`` for an attribute deletion and
    the plain null string when the whole entity went (``plain``).
    """
    t = inst.get("type", "Property")
    key = _NULL_VALUE_KEY.get(t, "value")
    out: dict[str, Any] = {"type": t}
    if t == "LanguageProperty" and not plain:
        out[key] = {"@none": NULL}
    elif key in ("valueList", "objectList"):
        out[key] = [NULL]
    else:
        out[key] = NULL
    if keep_dataset and "datasetId" in inst:
        out["datasetId"] = inst["datasetId"]
    for k in ("createdAt", "modifiedAt"):
        if k in inst:
            out[k] = inst[k]
    if deleted_at:
        out["deletedAt"] = deleted_at
    return out


def _previous(inst: Mapping[str, Any], ctx: ActiveContext) -> dict[str, Any]:
    """The ``previous*`` members of a changed instance (vocab values compacted like ``vocab``)."""
    out = {prev: inst[key] for key, prev in _PREVIOUS_KEY.items() if key in inst}
    if "previousVocab" in out:
        v = out["previousVocab"]
        out["previousVocab"] = [ctx.compact(x) for x in v] if isinstance(v, list) else ctx.compact(v)
    return out


def _whole_attribute_gone(
    insts: list[dict[str, Any]], ctx: ActiveContext, *, deleted_at: str | None, plain: bool
) -> tuple[list[dict[str, Any]], dict[str | None, dict[str, Any]]]:
    """One Null instance for an attribute deleted with all its instances, and its previous value."""
    main = next((i for i in insts if "datasetId" not in i), insts[0])
    null = _null_instance(main, deleted_at=deleted_at, keep_dataset=False, plain=plain)
    return [null], {None: _previous(main, ctx)}


@dataclass
class Change:
    """What an entity event changed, as a subscription sees it."""

    kind: str  # created | updated | deleted
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    attrs: dict[str, set[str]]
    at: str

    @classmethod
    def of(cls, event: EntityEvent, at: str | None = None) -> Change:
        return cls(
            event.kind,
            event.entity_id,
            event.before,
            event.after,
            attribute_changes(event.before, event.after),
            at or now_iso(),
        )

    @property
    def doc(self) -> dict[str, Any]:
        return self.after if self.after is not None else (self.before or {})

    def triggered(self, triggers: Iterable[str], watched: set[str] | None) -> list[str]:
        """The notification triggers of ``triggers`` that this change fires, given the watch list."""
        fired = []
        for trig in triggers:
            if (trig == "entityCreated" and self.kind == "created") or (
                trig == "entityDeleted" and self.kind == "deleted"
            ):
                fired.append(trig)
            elif trig == "entityUpdated" and self.kind == "updated":
                if watched is None or any(self.attrs[k] & watched for k in self.attrs):
                    fired.append(trig)
            elif trig in self.attrs:
                names = self.attrs[trig]
                if trig == "attributeCreated" and self.kind == "created":
                    names = set((self.after or {}).get("attrs", {}))
                if trig == "attributeDeleted" and self.kind == "deleted":
                    names = set((self.before or {}).get("attrs", {}))
                if watched is not None:
                    names = names & watched
                if names:
                    fired.append(trig)
        return fired


def notification_options(params: Mapping[str, Any], doc: Mapping[str, Any]) -> RenderOptions:
    """The :class:`RenderOptions` of a subscription's notification parameters."""
    fmt = params.get("format", "normalized")
    if fmt == "simplified":
        fmt = "keyValues"
    pick = parse_projection(",".join(params["pick"]), "pick") if params.get("pick") else None
    omit = parse_projection(",".join(params["omit"]), "omit") if params.get("omit") else None
    ds = doc.get("datasetId")
    join = params.get("join")
    return RenderOptions(
        fmt=fmt,
        sys_attrs=bool(params.get("sysAttrs")),
        attrs=frozenset(params["attributes"]) if params.get("attributes") else None,
        pick=pick,
        omit=omit,
        join=None if join in (None, "@none") else join,
        join_level=int(params.get("joinLevel") or 1),
        lang=doc.get("lang"),
        dataset_ids=frozenset(ds) if ds else None,
    )


def _key_values_datasets(
    rendered: dict[str, Any], doc: Mapping[str, Any], ctx: ActiveContext, opts: RenderOptions
) -> None:
    """keyValues of a multi-instance attribute: ``{"dataset": {datasetId or @none: value}}``."""
    for iri, insts in doc.get("attrs", {}).items():
        name = ctx.compact(iri)
        if name in rendered and isinstance(rendered[name], list) and len(insts) > 1:
            chosen = [
                i
                for i in insts
                if opts.dataset_ids is None or i.get("datasetId", "@none") in opts.dataset_ids
            ]
            if len(chosen) == len(rendered[name]):
                rendered[name] = {
                    "dataset": {
                        i.get("datasetId", "@none"): v for i, v in zip(chosen, rendered[name], strict=True)
                    }
                }


def render_change(
    change: Change,
    fired: list[str],
    sub: Subscription,
    ctx: ActiveContext,
    linked: Callable[[list[dict[str, Any]], int], dict[str, dict[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """The entities a notification carries for one change, rendered with the subscription's options.

    Deleted attributes (trigger ``attributeDeleted``) appear as NGSI-LD Null instances; with
    ``showChanges`` changed attributes carry their previous value (``previousValue``,
    ``previousObject``, ``previousLanguageMap``...). A deleted entity (``entityDeleted``) is
    ``{id, type, deletedAt}`` (plus previous values with ``showChanges``).
    """
    params = sub.notification
    opts = notification_options(params, sub.doc)
    show = bool(params.get("showChanges"))
    watched = sub.watched
    extras: dict[str, dict[str | None, dict[str, Any]]] = {}
    doc: dict[str, Any]
    if change.kind == "deleted":
        before = change.before or {"id": change.entity_id, "type": [], "attrs": {}}
        doc = {k: v for k, v in before.items() if k != "attrs"}
        doc["attrs"] = {}
        names: set[str] = set()
        if "attributeDeleted" in fired:
            names = set(before.get("attrs", {}))
            if watched is not None:
                names &= watched
        if show and "entityDeleted" in fired:
            names = set(before.get("attrs", {}))
        for iri in names:
            nulls, prev = _whole_attribute_gone(
                before["attrs"][iri], ctx, deleted_at=change.at if opts.sys_attrs else None, plain=True
            )
            doc["attrs"][iri] = nulls
            if show:
                extras[iri] = prev
        if "entityDeleted" in fired and not names:
            doc["attrs"] = {}
    else:
        after = change.after or {}
        before = change.before or {}
        doc = copy.deepcopy(after)
        if "attributeDeleted" in fired:
            gone = change.attrs["attributeDeleted"]
            if watched is not None:
                gone = gone & watched
            for iri in gone:
                if iri not in after.get("attrs", {}):
                    nulls, prev = _whole_attribute_gone(
                        before["attrs"][iri],
                        ctx,
                        deleted_at=change.at if opts.sys_attrs else None,
                        plain=False,
                    )
                    doc["attrs"][iri] = nulls
                    if show:
                        extras[iri] = prev
                    continue
                new_keys = {_instance_key(i) for i in after.get("attrs", {}).get(iri, [])}
                for inst in before.get("attrs", {}).get(iri, []):
                    if _instance_key(inst) not in new_keys:
                        doc["attrs"].setdefault(iri, []).append(
                            _null_instance(inst, deleted_at=change.at if opts.sys_attrs else None)
                        )
                        if show:
                            extras.setdefault(iri, {})[_instance_key(inst)] = _previous(inst, ctx)
        if show and change.kind == "updated":
            for iri in change.attrs["attributeUpdated"]:
                old = {_instance_key(i): i for i in before.get("attrs", {}).get(iri, [])}
                for inst in after.get("attrs", {}).get(iri, []):
                    before_inst = old.get(_instance_key(inst))
                    if before_inst is not None:
                        extras.setdefault(iri, {})[_instance_key(inst)] = _previous(before_inst, ctx)
    if change.kind == "deleted":
        out = render_entity(doc, ctx, replace(opts, join=None))
        out["deletedAt"] = change.at
        if opts.sys_attrs:
            out["createdAt"] = doc.get("createdAt")
            out["modifiedAt"] = doc.get("modifiedAt")
        _apply_extras(out, doc, ctx, opts, extras)
        return [_reorder_deleted(out)]
    return _render_with_joins(doc, ctx, opts, extras, linked)


def _reorder_deleted(out: dict[str, Any]) -> dict[str, Any]:
    head: dict[str, Any] = {
        k: out[k] for k in ("id", "type", "createdAt", "modifiedAt", "deletedAt") if k in out
    }
    head.update({k: v for k, v in out.items() if k not in head})
    return head


def _apply_extras(
    out: dict[str, Any],
    doc: Mapping[str, Any],
    ctx: ActiveContext,
    opts: RenderOptions,
    extras: Mapping[str, Mapping[str | None, Mapping[str, Any]]],
) -> None:
    """Add ``previous*`` members and ``deletedAt`` to rendered instances (normalized/concise)."""
    for iri, insts in doc.get("attrs", {}).items():
        name = ctx.compact(iri)
        rendered = out.get(name)
        if rendered is None:
            continue
        items = rendered if isinstance(rendered, list) else [rendered]
        chosen = [
            i for i in insts if opts.dataset_ids is None or i.get("datasetId", "@none") in opts.dataset_ids
        ]
        if len(items) != len(chosen):
            continue
        for inst, item in zip(chosen, items, strict=True):
            if not isinstance(item, dict) or opts.fmt == "keyValues":
                continue
            if "deletedAt" in inst and opts.sys_attrs:
                item["deletedAt"] = inst["deletedAt"]
            prev = extras.get(iri, {}).get(_instance_key(inst))
            if prev:
                item.update(prev)


def _render_with_joins(
    doc: dict[str, Any],
    ctx: ActiveContext,
    opts: RenderOptions,
    extras: Mapping[str, Mapping[str | None, Mapping[str, Any]]],
    linked: Callable[[list[dict[str, Any]], int], dict[str, dict[str, Any]]] | None,
) -> list[dict[str, Any]]:
    base = replace(opts, join=None)
    out = render_entity(doc, ctx, base)
    _apply_extras(out, doc, ctx, base, extras)
    if opts.fmt == "keyValues":
        _key_values_datasets(out, doc, ctx, base)
        if opts.sys_attrs:
            out.update({k: doc[k] for k in ("createdAt", "modifiedAt") if doc.get(k)})
    if opts.join is None or linked is None:
        return [out]
    links = linked([doc], opts.join_level)
    # Linked entities are shown whole: notification.attributes selects the notified entity's own.
    sub_opts = replace(base, attrs=None, pick=None, omit=None, dataset_ids=None)
    if opts.join == "inline":
        _inline(out, doc, ctx, sub_opts, links, opts.join_level)
        return [out]
    result = [out]
    seen = {doc["id"]}
    frontier = [doc]
    for _ in range(opts.join_level):
        nxt = []
        for d in frontier:
            for insts in _kept_attrs(d, out if d is doc else None, ctx):
                for inst in insts:
                    obj = inst.get("object")
                    target = (
                        links.get(obj)
                        if inst.get("type") == "Relationship" and isinstance(obj, str)
                        else None
                    )
                    if target is not None and target["id"] not in seen:
                        seen.add(target["id"])
                        result.append(render_entity(target, ctx, sub_opts))
                        nxt.append(target)
        frontier = nxt
    return result


def _kept_attrs(
    doc: Mapping[str, Any], rendered: Mapping[str, Any] | None, ctx: ActiveContext
) -> list[list[dict[str, Any]]]:
    out = []
    for iri, insts in doc.get("attrs", {}).items():
        if rendered is None or ctx.compact(iri) in rendered:
            out.append(insts)
    return out


def _inline(
    out: dict[str, Any],
    doc: Mapping[str, Any],
    ctx: ActiveContext,
    opts: RenderOptions,
    links: Mapping[str, dict[str, Any]],
    depth: int,
) -> None:
    if depth <= 0:
        return
    for iri, insts in doc.get("attrs", {}).items():
        name = ctx.compact(iri)
        if name not in out:
            continue
        for inst in insts[:1]:
            target = links.get(inst.get("object")) if inst.get("type") == "Relationship" else None
            if target is None:
                continue
            nested = render_entity(target, ctx, opts)
            _inline(nested, target, ctx, opts, links, depth - 1)
            if opts.fmt == "keyValues":
                out[name] = nested
            elif isinstance(out[name], dict):
                out[name]["entity"] = nested


# --------------------------------------------------------------------------------------------------
# Delivery
# --------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """How one notification went: delivered or not, when, and why not."""

    ok: bool
    at: str
    detail: str = ""


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    notification: OutgoingNotification = field(compare=False)
    attempt: int = field(default=0, compare=False)


@dataclass
class OutgoingNotification:
    """A rendered notification on its way to an endpoint.

    Attributes
    ----------
    key
        ``(tenant, kind, subscription id)``: whose status counters the outcome updates.
    endpoint
        The subscription's ``notification.endpoint`` (uri, accept, receiverInfo, notifierInfo).
    body
        The Notification (or ContextSourceNotification) object.
    context_url
        The @context URL for the Link header of a JSON notification, if any.
    tenant
        Sent as ``NGSILD-Tenant`` when not the default tenant.
    """

    key: tuple[str, str, str]
    endpoint: dict[str, Any]
    body: dict[str, Any]
    context_url: str | None = None
    tenant: str = ""


class MqttPublisher:
    """Publishes notifications over MQTT with paho-mqtt, one connected client per broker and user.

    Endpoint URIs follow the NGSI-LD MQTT binding: ``mqtt[s]://[user[:password]@]host[:port]/topic``;
    ``notifierInfo`` may set ``MQTT-QoS`` (0, 1, 2) and ``MQTT-Version`` (``mqtt3.1.1``,
    ``mqtt5.0``). The message is ``{"metadata": {...headers}, "body": notification}``.
    """

    def __init__(self, timeout_s: float = 5.0) -> None:
        self.timeout_s = timeout_s
        self._clients: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()

    def _client(
        self, host: str, port: int, user: str | None, password: str | None, version: str, tls: bool
    ) -> Any:
        import paho.mqtt.client as mqtt

        key = (host, port, user, password, version, tls)
        with self._lock:
            client = self._clients.get(key)
            if client is not None and client.is_connected():
                return client
            protocol = mqtt.MQTTv5 if version == "mqtt5.0" else mqtt.MQTTv311
            client = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2,
                client_id=f"bright-{uuid.uuid4().hex[:12]}",
                protocol=protocol,
            )
            if user:
                client.username_pw_set(user, password)
            if tls:
                client.tls_set()
            connected = threading.Event()
            client.on_connect = lambda *_a, **_k: connected.set()
            client.connect(host, port, keepalive=60)
            client.loop_start()
            if not connected.wait(self.timeout_s):
                client.loop_stop()
                raise ConnectionError(f"MQTT broker {host}:{port} did not accept the connection")
            self._clients[key] = client
            return client

    def publish(self, uri: str, message: bytes, notifier_info: Iterable[Mapping[str, str]] = ()) -> None:
        """Publish ``message`` to the topic of ``uri``; raises on connection or publish failure."""
        parts = urlsplit(uri)
        info = {kv["key"]: kv["value"] for kv in notifier_info}
        qos = int(info.get("MQTT-QoS", "0"))
        if qos not in (0, 1, 2):
            raise ValueError(f"MQTT-QoS {qos} is not 0, 1 or 2")
        version = info.get("MQTT-Version", "mqtt3.1.1")
        tls = parts.scheme == "mqtts"
        port = parts.port or (8883 if tls else 1883)
        topic = unquote(parts.path.lstrip("/"))
        if not topic:
            raise ValueError(f"MQTT endpoint {uri!r} has no topic")
        client = self._client(
            parts.hostname or "localhost",
            port,
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
            version,
            tls,
        )
        info_pub = client.publish(topic, message, qos=qos)
        info_pub.wait_for_publish(self.timeout_s)
        if not info_pub.is_published():
            raise ConnectionError(
                f"MQTT publish to {topic!r} on {parts.hostname}:{port} was not acknowledged"
            )

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                try:
                    client.disconnect()
                    client.loop_stop()
                except Exception:  # pragma: no cover - best effort at shutdown
                    pass
            self._clients.clear()


class Delivery:
    """Sends notifications in background threads, with retries and status bookkeeping.

    Parameters
    ----------
    on_outcome
        Called with the notification and its :class:`Outcome` after the last attempt (success,
        or failure once ``retries`` are spent).
    on_attempt
        Called when a notification is first sent (``timesSent`` and ``lastNotification``).
    is_live
        Asked before every attempt: a notification whose subscription was deleted (or paused)
        meanwhile is dropped, retries included.
    retries
        Extra attempts after a failed one (network error or non-2xx answer).
    backoff_s
        Delay before the first retry, in seconds; doubled at each further retry.
    timeout_s
        Per-request timeout, in seconds (``endpoint.timeout`` in ms overrides it).
    workers
        Concurrent sends.
    """

    def __init__(
        self,
        on_outcome: Callable[[OutgoingNotification, Outcome], None] | None = None,
        on_attempt: Callable[[OutgoingNotification, str], None] | None = None,
        is_live: Callable[[OutgoingNotification], bool] | None = None,
        *,
        retries: int = 2,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
        workers: int = 8,
    ) -> None:
        self.on_outcome = on_outcome
        self.on_attempt = on_attempt
        self.is_live = is_live
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.workers = workers
        self.mqtt = MqttPublisher(timeout_s)
        self._heap: list[_Job] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._pending = 0  # queued + in flight
        self._running = False
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._http: httpx.Client | None = None
        self._ticks: list[Callable[[], None]] = []
        self.tick_s = 0.5

    # --- lifecycle ------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._running

    def add_tick(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` every :attr:`tick_s` seconds in the worker (periodic notifications, expiry)."""
        self._ticks.append(fn)

    def start(self) -> None:
        if self._running:
            return
        self._running = True
        self._http = httpx.Client(
            timeout=self.timeout_s, follow_redirects=False, event_hooks=request_hooks(self)
        )
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="bright-notify")
        self._thread = threading.Thread(target=self._loop, name="bright-notifications", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        if not self._running:
            return
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._http is not None:
            self._http.close()
        self.mqtt.close()
        self._thread = self._pool = self._http = None

    def submit(self, note: OutgoingNotification) -> None:
        """Queue a notification (sent at once by the worker, or by :meth:`flush` in tests)."""
        with self._cond:
            heapq.heappush(self._heap, _Job(time.monotonic(), next(self._seq), note))
            self._pending += 1
            self._cond.notify_all()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued notification (and its retries) is done; True if all are.

        Without a running worker (no app lifespan, e.g. a bare test), sends them in this thread.
        """
        deadline = time.monotonic() + timeout_s
        if not self._running:
            while True:
                with self._cond:
                    if not self._heap:
                        return True
                    job = heapq.heappop(self._heap)
                wait = job.due - time.monotonic()
                if wait > 0:
                    if time.monotonic() + wait > deadline:
                        with self._cond:
                            heapq.heappush(self._heap, job)
                        return False
                    time.sleep(wait)
                self._run(job, inline=True)
        with self._cond:
            while self._pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    # --- worker ---------------------------------------------------------------------------------
    def _loop(self) -> None:
        next_tick = time.monotonic()
        while True:
            with self._cond:
                if not self._running:
                    return
                now = time.monotonic()
                due = [
                    heapq.heappop(self._heap)
                    for _ in range(len(self._heap))
                    if self._heap and self._heap[0].due <= now
                ]
                if not due:
                    wake = min(next_tick, self._heap[0].due if self._heap else next_tick)
                    self._cond.wait(max(0.0, min(wake - now, self.tick_s)))
            for job in due:
                assert self._pool is not None
                fut: Future[None] = self._pool.submit(self._run, job)
                fut.add_done_callback(_log_future)
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.tick_s
                for fn in self._ticks:
                    try:
                        fn()
                    except Exception:
                        log.exception("periodic notification task failed")

    def _run(self, job: _Job, *, inline: bool = False) -> None:
        note = job.notification
        try:
            if self.is_live is not None and not self.is_live(note):
                log.info("notification for %s dropped: the subscription is gone", note.key[2])
                return
            if job.attempt == 0 and self.on_attempt is not None:
                try:
                    self.on_attempt(note, now_iso())
                except Exception:  # pragma: no cover - bookkeeping must not stop delivery
                    log.exception("notification bookkeeping failed")
            try:
                self._send(note)
                outcome = Outcome(True, now_iso())
            except Exception as exc:
                detail = f"{type(exc).__name__}: {exc}"
                if job.attempt < self.retries:
                    retry = _Job(
                        time.monotonic() + self.backoff_s * (2**job.attempt),
                        next(self._seq),
                        note,
                        job.attempt + 1,
                    )
                    with self._cond:
                        heapq.heappush(self._heap, retry)
                        self._pending += 1
                        self._cond.notify_all()
                    log.info(
                        "notification to %s failed (%s); retry %d",
                        note.endpoint.get("uri"),
                        detail,
                        job.attempt + 1,
                    )
                    return
                outcome = Outcome(False, now_iso(), detail)
                log.warning("notification to %s failed: %s", note.endpoint.get("uri"), detail)
            try:
                if self.on_outcome is not None:
                    self.on_outcome(note, outcome)
            except Exception:  # pragma: no cover
                log.exception("notification bookkeeping failed")
        finally:
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()

    def _send(self, note: OutgoingNotification) -> None:
        ep = note.endpoint
        uri = ep["uri"]
        accept = ep.get("accept", "application/json")
        body = note.body
        headers: dict[str, str] = {}
        if accept == "application/ld+json":
            content_type = "application/ld+json"
        else:
            content_type = "application/json"
            if note.context_url:
                headers["Link"] = (
                    f'<{note.context_url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
                )
        if note.tenant:
            headers["NGSILD-Tenant"] = note.tenant
        for kv in ep.get("receiverInfo") or []:
            headers[kv["key"]] = kv["value"]
        scheme = urlsplit(uri).scheme.lower()
        if scheme in ("mqtt", "mqtts"):
            message = {"metadata": {"Content-Type": content_type, **headers}, "body": body}
            self.mqtt.publish(uri, json.dumps(message).encode(), ep.get("notifierInfo") or [])
            return
        timeout = float(ep["timeout"]) / 1000.0 if ep.get("timeout") else self.timeout_s
        client = self._http or httpx.Client(timeout=self.timeout_s, event_hooks=request_hooks(self))
        try:
            r = client.post(
                uri,
                content=json.dumps(body).encode(),
                headers={"Content-Type": content_type, **headers},
                timeout=timeout,
            )
        finally:
            if client is not self._http:
                client.close()
        if not 200 <= r.status_code < 300:
            raise ConnectionError(f"endpoint answered HTTP {r.status_code}")


def _log_future(fut: Future[None]) -> None:
    exc = fut.exception()
    if exc is not None:  # pragma: no cover - _run catches everything
        log.error("notification worker crashed: %r", exc)


# --------------------------------------------------------------------------------------------------
# The manager: API operations, entity events, periodic notifications
# --------------------------------------------------------------------------------------------------


def context_url_of(raw: Any) -> str | None:
    """The single @context URL a JSON notification's Link header can carry, if there is one."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list) and len(raw) == 1 and isinstance(raw[0], str):
        return raw[0]
    return None


class SubscriptionManager:
    """Subscriptions of a node: CRUD, matching of entity events, periodic notifications.

    Parameters
    ----------
    service
        The twin service (entity store, @context resolution, queries for periodic notifications).
    store
        Where subscriptions live.
    delivery
        The notification sender.
    """

    def __init__(self, service: Any, store: SubscriptionStore, delivery: Delivery) -> None:
        self.service = service
        self.store = store
        self.delivery = delivery
        # The delivery reports to the subscriptions' status counters (entity and csource ones).
        delivery.on_attempt = self.on_attempt
        delivery.on_outcome = self.on_outcome
        delivery.is_live = self.is_live
        self._cache: dict[str, tuple[int, float, list[Subscription]]] = {}
        self._cache_ttl_s = 2.0
        self._last_sent: dict[tuple[str, str], float] = {}
        self._next_periodic: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    # --- API operations ---------------------------------------------------------------------------
    def create(self, tenant: str, body: dict[str, Any], raw_context: Any, ctx: ActiveContext) -> str:
        """Validate and store a new subscription; returns its id."""
        now = now_iso()
        doc = validate_members(body, ctx, kind=ENTITY_KIND, now=now)
        doc = {k: v for k, v in doc.items() if v is not None}
        doc.setdefault("id", f"urn:ngsi-ld:Subscription:{uuid.uuid4()}")
        check_subscription(doc, kind=ENTITY_KIND)
        if doc.get("jsonldContext"):
            self.service.resolve_context(doc["jsonldContext"])
        self.store.insert(StoredSubscription(tenant, ENTITY_KIND, doc["id"], doc, raw_context, {}, now, now))
        return str(doc["id"])

    def get(self, tenant: str, sid: str) -> StoredSubscription:
        if not is_uri(sid):
            raise BadRequestData(f"subscription id {sid!r} is not a URI")
        stored = self.store.get(tenant, ENTITY_KIND, sid)
        if stored is None:
            raise ResourceNotFound(f"subscription {sid} not found")
        return stored

    def update(self, tenant: str, sid: str, fragment: dict[str, Any], ctx: ActiveContext) -> None:
        """Merge a fragment into a subscription (``null`` removes optional members)."""
        stored = self.get(tenant, sid)
        now = now_iso()
        if "id" in fragment and fragment["id"] != sid:
            raise BadRequestData(f"the fragment's id {fragment['id']!r} differs from the URL's {sid!r}")
        if not any(k != "@context" for k in fragment):
            raise BadRequestData("the subscription fragment is empty")
        changes = validate_members(fragment, ctx, kind=ENTITY_KIND, now=now)
        doc = dict(stored.doc)
        for key, val in changes.items():
            if val is None:
                doc.pop(key, None)
            else:
                doc[key] = val
        check_subscription(doc, kind=ENTITY_KIND)
        if changes.get("jsonldContext"):
            self.service.resolve_context(changes["jsonldContext"])
        state = dict(stored.state)
        self.store.replace(replace(stored, doc=doc, modified_at=now, state=state))
        with self._lock:
            self._next_periodic.pop((tenant, sid), None)

    def delete(self, tenant: str, sid: str) -> None:
        if not is_uri(sid):
            raise BadRequestData(f"subscription id {sid!r} is not a URI")
        self.store.delete(tenant, ENTITY_KIND, sid)

    def page(self, tenant: str, limit: int, offset: int) -> tuple[list[StoredSubscription], int]:
        if limit > MAX_PAGE:
            raise TooManyResults(f"limit {limit} is larger than the maximum page size {MAX_PAGE}")
        return self.store.list(tenant, ENTITY_KIND, limit=limit, offset=offset), self.store.count(
            tenant, ENTITY_KIND
        )

    # --- matching -------------------------------------------------------------------------------
    def active(self, tenant: str) -> list[Subscription]:
        """The parsed subscriptions of a tenant (cached; reloaded after writes or every 2 s)."""
        gen = self.store.generation
        now = time.monotonic()
        hit = self._cache.get(tenant)
        if hit is not None and hit[0] == gen and now - hit[1] < self._cache_ttl_s:
            return hit[2]
        subs = []
        for stored in self.store.list(tenant, ENTITY_KIND):
            try:
                subs.append(Subscription(stored, self.service.resolve_context(stored.context)))
            except (NgsiLdError, ValueError) as exc:
                log.warning("subscription %s cannot be evaluated: %s", stored.id, exc)
        self._cache[tenant] = (gen, now, subs)
        return subs

    def on_event(self, event: EntityEvent) -> None:
        """Store listener: notify the subscriptions an entity change triggers."""
        subs = self.active(event.tenant)
        if not subs:
            return
        now = now_iso()
        change = Change.of(event, now)
        doc = change.doc
        for sub in subs:
            try:
                self._consider(event.tenant, sub, change, doc, now)
            except Exception:
                log.exception("subscription %s failed on %s %s", sub.id, event.kind, event.entity_id)

    def _consider(
        self, tenant: str, sub: Subscription, change: Change, doc: dict[str, Any], now: str
    ) -> None:
        if sub.time_interval or sub.status(now) != "active":
            return
        if not sub.selects(doc):
            return
        fired = change.triggered(sub.triggers, sub.watched)
        if not fired:
            return
        if change.kind != "deleted" and not sub.filters(doc):
            return
        if sub.throttling:
            key = (tenant, sub.id)
            mono = time.monotonic()
            with self._lock:
                last = self._last_sent.get(key)
                if last is not None and mono - last < sub.throttling:
                    return
                self._last_sent[key] = mono
        ctx, ctx_url = self._render_context(sub)
        data = render_change(
            change, fired, sub, ctx, lambda docs, level: self.service.linked(tenant, docs, level)
        )
        self._send(tenant, sub, data, ctx, ctx_url, fired[0])

    def _render_context(self, sub: Subscription) -> tuple[ActiveContext, Any]:
        raw = sub.doc.get("jsonldContext") or sub.stored.context
        if raw is None:
            return self.service.resolve_context(None), CORE_CONTEXT_URL
        return self.service.resolve_context(raw), raw

    def _send(
        self,
        tenant: str,
        sub: Subscription,
        data: list[dict[str, Any]],
        ctx: ActiveContext,
        raw_ctx: Any,
        reason: str,
    ) -> None:
        endpoint = sub.notification.get("endpoint") or {}
        if endpoint.get("accept") == "application/ld+json":
            for entity in data:
                entity["@context"] = raw_ctx if raw_ctx is not None else CORE_CONTEXT_URL
        body = {
            "id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}",
            "type": "Notification",
            "subscriptionId": sub.id,
            "notifiedAt": now_iso(),
            "data": data,
            "triggerReason": reason,
        }
        self.delivery.submit(
            OutgoingNotification(
                (tenant, ENTITY_KIND, sub.id),
                endpoint,
                body,
                context_url_of(raw_ctx) or CORE_CONTEXT_URL,
                tenant,
            )
        )

    # --- periodic notifications -------------------------------------------------------------------
    def tick(self, mono: float | None = None) -> None:
        """Send the periodic (``timeInterval``) notifications that are due.

        Parameters
        ----------
        mono
            The current ``time.monotonic()`` in seconds (injectable for deterministic tests). A
            subscription's first periodic notification is due ``timeInterval`` seconds after its
            creation or last update, then every ``timeInterval`` seconds.
        """
        now = now_iso()
        mono = time.monotonic() if mono is None else mono
        for tenant in self._tenants_with_periodic():
            for sub in self.active(tenant):
                ti = sub.time_interval
                if not ti or sub.status(now) != "active":
                    continue
                key = (tenant, sub.id)
                with self._lock:
                    due = self._next_periodic.get(key)
                    if due is None:
                        age = _age_s(sub.stored.modified_at)
                        due = mono + max(0.0, ti - age)
                        self._next_periodic[key] = due
                    if mono < due:
                        continue
                    self._next_periodic[key] = mono + ti
                try:
                    self._periodic(tenant, sub)
                except Exception:
                    log.exception("periodic notification of %s failed", sub.id)

    def _tenants_with_periodic(self) -> list[str]:
        t = subscriptions_table
        with self.store.engine.connect() as conn:
            return list(conn.execute(select(t.c.tenant).where(t.c.kind == ENTITY_KIND).distinct()).scalars())

    def _periodic(self, tenant: str, sub: Subscription) -> None:
        docs = self.matching_entities(tenant, sub)
        if not docs:
            return
        ctx, raw = self._render_context(sub)
        opts = notification_options(sub.notification, sub.doc)
        data: list[dict[str, Any]] = []
        for d in docs:
            data.extend(
                _render_with_joins(d, ctx, opts, {}, lambda ds, lv: self.service.linked(tenant, ds, lv))
            )
        self._send(tenant, sub, data, ctx, raw, "timeInterval")

    def matching_entities(
        self, tenant: str, sub: Subscription, limit: int = MAX_PAGE
    ) -> list[dict[str, Any]]:
        """Entities currently matching a subscription's selectors and filters."""
        out: dict[str, dict[str, Any]] = {}
        selectors = sub.doc.get("entities") or [{}]
        for sel in selectors:
            params: dict[str, Any] = {"limit": str(limit), "local": "true"}
            for key in ("type", "id", "idPattern"):
                if sel.get(key):
                    params[key] = sel[key]
            if sub.watched:
                params["attrs"] = ",".join(sub.watched)
            eq = self.service.build_query(params, _identity_context(), require_filter=False)
            docs, _ = self.service.store.query(tenant, eq)
            for d in docs:
                if sub.filters(d):
                    out.setdefault(d["id"], d)
        return list(out.values())

    # --- status bookkeeping -----------------------------------------------------------------------
    def is_live(self, note: OutgoingNotification) -> bool:
        """Is the subscription a notification belongs to still there and active?"""
        stored = self.store.get(*note.key)
        return stored is not None and status_of(stored.doc, now_iso()) == "active"

    def on_attempt(self, note: OutgoingNotification, at: str) -> None:
        def change(state: dict[str, Any]) -> dict[str, Any]:
            state["timesSent"] = int(state.get("timesSent") or 0) + 1
            state["lastNotification"] = at
            return state

        self.store.update_state(*note.key, change)

    def on_outcome(self, note: OutgoingNotification, outcome: Outcome) -> None:
        def change(state: dict[str, Any]) -> dict[str, Any]:
            if outcome.ok:
                state["status"] = "ok"
                state["lastSuccess"] = outcome.at
            else:
                state["status"] = "failed"
                state["lastFailure"] = outcome.at
                state["timesFailed"] = int(state.get("timesFailed") or 0) + 1
                state["lastFailureReason"] = outcome.detail
            return state

        self.store.update_state(*note.key, change)


class _IdentityContext(ActiveContext):
    """A context that leaves IRIs as they are (stored subscription terms are already expanded)."""

    def expand(self, term: str, *, vocab: bool = True) -> str:
        return term


def _identity_context() -> ActiveContext:
    return _IdentityContext()


def _age_s(stamp: str) -> float:
    try:
        dt = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return max(0.0, (datetime.now(UTC) - dt).total_seconds())


__all__ = [
    "CSOURCE_KIND",
    "DEFAULT_TRIGGERS",
    "ENTITY_KIND",
    "Change",
    "Delivery",
    "MqttPublisher",
    "Outcome",
    "OutgoingNotification",
    "StoredSubscription",
    "Subscription",
    "SubscriptionManager",
    "SubscriptionStore",
    "attribute_changes",
    "check_subscription",
    "context_url_of",
    "render_change",
    "render_subscription",
    "status_of",
    "validate_members",
]
