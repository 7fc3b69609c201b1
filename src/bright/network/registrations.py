"""NGSI-LD context source registrations, discovery and csource subscriptions (clauses 5.2.9, 5.9-5.11).

A context source registration (CSR) tells a node that another node (a community twin, a
device gateway) can answer for some entities: which entity types/ids (``information``), which
attributes, at which ``endpoint``, in which ``mode`` (inclusive, exclusive, redirect,
auxiliary) and for which ``operations``. The federation layer (:mod:`bright.network.federation`)
forwards requests along them; discovery (``GET /csourceRegistrations?type=...``) lists them; a
csource subscription notifies when registrations matching it appear, change or go
(``newlyMatching``, ``updated``, ``noLongerMatching``).

Registrations are stored per tenant with entity types and attribute names expanded to IRIs
(compacted again with the reader's @context). Expired registrations are ignored and purged.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote, urlsplit

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

from bright.network import subscriptions as subs
from bright.network.subscriptions import (
    CSOURCE_KIND,
    Delivery,
    OutgoingNotification,
    StoredSubscription,
    SubscriptionStore,
    check_subscription,
    context_url_of,
    validate_members,
)
from bright.twin import geo, migrations, query
from bright.twin.context import CORE_CONTEXT_URL, ActiveContext
from bright.twin.entities import check_geometry, check_name, is_uri, now_iso, parse_datetime
from bright.twin.errors import AlreadyExists, BadRequestData, NgsiLdError, ResourceNotFound, TooManyResults
from bright.twin.schema import PK, JsonDoc

log = logging.getLogger("bright.network.registrations")

MODES = ("inclusive", "exclusive", "redirect", "auxiliary")
# Operation groups of clause 4.20 (Table 4.20-1) and the operations they stand for.
OPERATION_GROUPS: dict[str, tuple[str, ...]] = {
    "federationOps": (
        "retrieveEntity",
        "queryEntity",
        "queryBatch",
        "retrieveTemporal",
        "queryTemporal",
        "retrieveEntityTypes",
        "retrieveEntityTypeDetails",
        "retrieveEntityTypeInfo",
        "retrieveAttrTypes",
        "retrieveAttrTypeDetails",
        "retrieveAttrTypeInfo",
        "createSubscription",
        "updateSubscription",
        "retrieveSubscription",
        "querySubscription",
        "deleteSubscription",
    ),
    "updateOps": ("updateEntity", "updateAttrs", "replaceEntity", "replaceAttrs"),
    "retrieveOps": ("retrieveEntity", "queryEntity"),
    "redirectionOps": (
        "createEntity",
        "updateEntity",
        "appendAttrs",
        "updateAttrs",
        "deleteAttrs",
        "deleteEntity",
        "createBatch",
        "upsertBatch",
        "updateBatch",
        "deleteBatch",
        "upsertTemporal",
        "appendAttrsTemporal",
        "deleteAttrsTemporal",
        "updateAttrsTemporal",
        "deleteAttrInstanceTemporal",
        "deleteTemporal",
        "mergeEntity",
        "replaceEntity",
        "replaceAttrs",
        "mergeBatch",
        "purgeEntity",
        "retrieveEntity",
        "queryEntity",
        "queryBatch",
        "retrieveTemporal",
        "queryTemporal",
        "retrieveEntityTypes",
        "retrieveEntityTypeDetails",
        "retrieveEntityTypeInfo",
        "retrieveAttrTypes",
        "retrieveAttrTypeDetails",
        "retrieveAttrTypeInfo",
    ),
}
OPERATIONS = frozenset(op for ops in OPERATION_GROUPS.values() for op in ops) | {
    "createEntity",
    "purgeEntity",
    "mergeEntity",
    "retrieveContextSourceRegistration",
    "queryContextSourceRegistration",
}
DEFAULT_OPERATIONS = ("federationOps",)
_KNOWN = {
    "id",
    "type",
    "registrationName",
    "description",
    "information",
    "tenant",
    "observationInterval",
    "managementInterval",
    "location",
    "observationSpace",
    "operationSpace",
    "expiresAt",
    "endpoint",
    "contextSourceInfo",
    "scope",
    "mode",
    "operations",
    "refreshRate",
    "management",
}
_SYSTEM = {
    "createdAt",
    "modifiedAt",
    "deletedAt",
    "status",
    "timesSent",
    "timesFailed",
    "lastSuccess",
    "lastFailure",
}
_MANDATORY = {"type", "information", "endpoint"}

# --------------------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------------------

metadata = MetaData()
registrations_table = Table(
    "ngsild_registrations",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("tenant", String(128), nullable=False, default=""),
    Column("id", Text, nullable=False),
    Column("doc", JsonDoc, nullable=False),
    Column("context", JsonDoc, nullable=True),
    Column("created_at", String(32), nullable=False),
    Column("modified_at", String(32), nullable=False),
    UniqueConstraint("tenant", "id", name="uq_ngsild_registrations"),
)


def _create_tables(conn: Connection) -> None:
    metadata.create_all(conn, checkfirst=True)


migrations.register(21, "NGSI-LD context source registrations", _create_tables)


@dataclass
class StoredRegistration:
    """One stored registration: its (expanded) document, @context and timestamps."""

    tenant: str
    id: str
    doc: dict[str, Any]
    context: Any
    created_at: str
    modified_at: str


class RegistrationStore:
    """Context source registrations of every tenant, in the node's database.

    Parameters
    ----------
    engine
        The node's SQLAlchemy engine; tables are created on first use (migration step 21).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        migrations.migrate(engine)
        self.generation = 0

    @staticmethod
    def _row(row: Any) -> StoredRegistration:
        return StoredRegistration(row.tenant, row.id, row.doc, row.context, row.created_at, row.modified_at)

    def insert(self, reg: StoredRegistration) -> None:
        t = registrations_table
        with self.engine.begin() as conn:
            if conn.execute(select(t.c.pk).where(t.c.tenant == reg.tenant, t.c.id == reg.id)).first():
                raise AlreadyExists(f"context source registration {reg.id} already exists")
            conn.execute(
                t.insert().values(
                    tenant=reg.tenant,
                    id=reg.id,
                    doc=reg.doc,
                    context=reg.context,
                    created_at=reg.created_at,
                    modified_at=reg.modified_at,
                )
            )
        self.generation += 1

    def get(self, tenant: str, rid: str) -> StoredRegistration | None:
        t = registrations_table
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.tenant == tenant, t.c.id == rid)).first()
        return self._row(row) if row is not None else None

    def list(self, tenant: str | None) -> list[StoredRegistration]:
        t = registrations_table
        stmt = select(t).order_by(t.c.pk)
        if tenant is not None:
            stmt = stmt.where(t.c.tenant == tenant)
        with self.engine.connect() as conn:
            return [self._row(r) for r in conn.execute(stmt)]

    def any(self, tenant: str) -> bool:
        t = registrations_table
        with self.engine.connect() as conn:
            return (
                conn.execute(select(func.count()).select_from(t).where(t.c.tenant == tenant)).scalar_one() > 0
            )

    def replace(self, reg: StoredRegistration) -> None:
        t = registrations_table
        with self.engine.begin() as conn:
            res = conn.execute(
                update(t)
                .where(t.c.tenant == reg.tenant, t.c.id == reg.id)
                .values(doc=reg.doc, context=reg.context, modified_at=reg.modified_at)
            )
            if res.rowcount == 0:
                raise ResourceNotFound(f"context source registration {reg.id} not found")
        self.generation += 1

    def delete(self, tenant: str, rid: str) -> None:
        t = registrations_table
        with self.engine.begin() as conn:
            if conn.execute(delete(t).where(t.c.tenant == tenant, t.c.id == rid)).rowcount == 0:
                raise ResourceNotFound(f"context source registration {rid} not found")
        self.generation += 1


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


def _bad(member: str, msg: str) -> BadRequestData:
    return BadRequestData(f"registration member {member}: {msg}")


def _names(value: Any, member: str, ctx: ActiveContext) -> list[str]:
    if not isinstance(value, list) or not value:
        raise _bad(member, "must be a non-empty array of attribute names")
    out = []
    for name in value:
        try:
            check_name(name)
        except BadRequestData as exc:
            raise _bad(member, exc.detail) from None
        out.append(ctx.expand(name))
    return out


def _entity_infos(value: Any, ctx: ActiveContext) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise _bad("information.entities", "must be a non-empty array of EntityInfo")
    out = []
    for ent in value:
        if not isinstance(ent, dict) or not isinstance(ent.get("type"), str) or not ent["type"].strip():
            raise _bad("information.entities", f"{ent!r} is not an EntityInfo with a type")
        try:
            check_name(ent["type"], "entity type")
        except BadRequestData as exc:
            raise _bad("information.entities", exc.detail) from None
        item: dict[str, Any] = {}
        if "id" in ent:
            if not is_uri(ent["id"]):
                raise _bad("information.entities", f"id {ent['id']!r} is not a URI")
            item["id"] = ent["id"]
        if "idPattern" in ent:
            try:
                re.compile(ent["idPattern"])
            except (re.error, TypeError) as exc:
                raise _bad(
                    "information.entities", f"idPattern {ent['idPattern']!r} is not valid ({exc})"
                ) from None
            item["idPattern"] = ent["idPattern"]
        item["type"] = ctx.expand(ent["type"])
        out.append(item)
    return out


def _information(value: Any, ctx: ActiveContext) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise _bad("information", "must be a non-empty array of RegistrationInfo")
    out = []
    for info in value:
        if not isinstance(info, dict) or not any(
            k in info for k in ("entities", "propertyNames", "relationshipNames")
        ):
            raise _bad("information", f"{info!r} has none of entities, propertyNames, relationshipNames")
        item: dict[str, Any] = {}
        for key, val in info.items():
            if key == "entities":
                item[key] = _entity_infos(val, ctx)
            elif key in ("propertyNames", "relationshipNames"):
                item[key] = _names(val, f"information.{key}", ctx)
            else:
                raise _bad("information", f"unknown member {key!r} of RegistrationInfo")
        out.append(item)
    return out


def _interval(value: Any, member: str) -> dict[str, Any]:
    if not isinstance(value, dict) or "startAt" not in value:
        raise _bad(member, "must be a TimeInterval with startAt (and optionally endAt)")
    out = {"startAt": parse_datetime(value["startAt"], f"{member}.startAt")}
    if value.get("endAt") is not None:
        out["endAt"] = parse_datetime(value["endAt"], f"{member}.endAt")
        if out["endAt"] < out["startAt"]:
            raise _bad(member, "endAt is before startAt")
    return {k: value[k] for k in out}


def _operations(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise _bad("operations", "must be a non-empty array of operation names")
    for op in value:
        if op not in OPERATIONS and op not in OPERATION_GROUPS:
            raise _bad("operations", f"{op!r} is not an NGSI-LD operation or operation group")
    return list(dict.fromkeys(value))


def validate_registration_members(body: Mapping[str, Any], ctx: ActiveContext, *, now: str) -> dict[str, Any]:
    """Validate and normalise the members of a registration (whole or fragment).

    Entity types, property and relationship names, and the names of extra context source
    properties are expanded with ``ctx``. ``null`` values are kept (they remove optional members
    on update).

    Raises
    ------
    BadRequestData
        The first member that breaks clause 5.2.9, named in the message.
    """
    out: dict[str, Any] = {}
    for key, val in body.items():
        if key == "@context" or key in _SYSTEM:
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
            if val != "ContextSourceRegistration":
                raise _bad("type", f"must be 'ContextSourceRegistration', got {val!r}")
            out[key] = val
        elif key == "information":
            out[key] = _information(val, ctx)
        elif key == "endpoint":
            if not isinstance(val, str) or not is_uri(val) or urlsplit(val).scheme not in ("http", "https"):
                raise _bad("endpoint", f"{val!r} is not an http(s) URI")
            out[key] = val
        elif key == "mode":
            if val not in MODES:
                raise _bad("mode", f"{val!r} is not one of {', '.join(MODES)}")
            out[key] = val
        elif key == "operations":
            out[key] = _operations(val)
        elif key == "expiresAt":
            when = parse_datetime(val, "expiresAt")
            if when <= now:
                raise _bad("expiresAt", f"{val!r} is in the past")
            out[key] = val.strip() if isinstance(val, str) else val
        elif key in ("observationInterval", "managementInterval"):
            out[key] = _interval(val, key)
        elif key in ("location", "observationSpace", "operationSpace"):
            out[key] = check_geometry(val, key)
        elif key == "contextSourceInfo":
            if not isinstance(val, list) or not all(
                isinstance(kv, dict) and isinstance(kv.get("key"), str) and isinstance(kv.get("value"), str)
                for kv in val
            ):
                raise _bad(key, "must be an array of {key, value} string pairs")
            out[key] = val
        elif key == "management":
            if not isinstance(val, dict):
                raise _bad(key, "must be an object")
            for k in ("timeout", "cooldown", "cacheDuration"):
                if k in val and (
                    isinstance(val[k], bool) or not isinstance(val[k], int | float) or val[k] <= 0
                ):
                    raise _bad(f"management.{k}", "must be a positive number of milliseconds")
            out[key] = val
        elif key == "refreshRate":
            if not isinstance(val, str):
                raise _bad(key, "must be an ISO-8601 duration string")
            out[key] = val
        elif key in ("registrationName", "description", "tenant"):
            if not isinstance(val, str):
                raise _bad(key, "must be a string")
            out[key] = val
        elif key == "scope":
            out[key] = val
        else:
            # A context source property (clause 5.2.9: any other member), name expanded.
            out[ctx.expand(key)] = val
    return out


def check_registration(doc: Mapping[str, Any]) -> None:
    """Mandatory members of a complete registration (type, information, endpoint)."""
    if doc.get("type") != "ContextSourceRegistration":
        raise _bad("type", "is mandatory and must be 'ContextSourceRegistration'")
    if not doc.get("information"):
        raise _bad("information", "is mandatory")
    if not doc.get("endpoint"):
        raise _bad("endpoint", "is mandatory")


def operations_of(doc: Mapping[str, Any]) -> frozenset[str]:
    """The individual operations a registration supports (groups expanded)."""
    out: set[str] = set()
    for op in doc.get("operations") or DEFAULT_OPERATIONS:
        out.update(OPERATION_GROUPS.get(op, (op,)))
    return frozenset(out)


def render_registration(
    stored: StoredRegistration, ctx: ActiveContext, *, sys_attrs: bool = False
) -> dict[str, Any]:
    """A registration as the API returns it, terms compacted with the reader's @context."""
    out: dict[str, Any] = {"id": stored.id, "type": "ContextSourceRegistration"}
    for key, val in stored.doc.items():
        if key in ("id", "type"):
            continue
        if key == "information":
            out[key] = [_render_info(i, ctx) for i in val]
        elif key in _KNOWN:
            out[key] = copy.deepcopy(val)
        else:
            out[ctx.compact(key)] = copy.deepcopy(val)
    out.setdefault("mode", "inclusive")
    out.setdefault("operations", list(DEFAULT_OPERATIONS))
    if sys_attrs:
        out["createdAt"] = stored.created_at
        out["modifiedAt"] = stored.modified_at
    return out


def _render_info(info: Mapping[str, Any], ctx: ActiveContext) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, val in info.items():
        if key == "entities":
            out[key] = [{**e, "type": ctx.compact(e["type"])} for e in val]
        else:
            out[key] = [ctx.compact(a) for a in val]
    return out


# --------------------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntityFilter:
    """What a request is about: entity ids, id pattern, type expression (IRIs) and attributes."""

    ids: tuple[str, ...] = ()
    id_pattern: str | None = None
    type_query: Any = None
    attrs: frozenset[str] | None = None


def _entity_info_matches(ent: Mapping[str, Any], flt: EntityFilter) -> bool:
    if flt.type_query is not None and not query.type_matches(flt.type_query, [ent["type"]], lambda t: t):
        return False
    if flt.ids:
        if "id" in ent and ent["id"] not in flt.ids:
            return False
        if "idPattern" in ent and not any(re.search(ent["idPattern"], i) for i in flt.ids):
            return False
    return not (flt.id_pattern is not None and "id" in ent and not re.search(flt.id_pattern, ent["id"]))


def info_matches(info: Mapping[str, Any], flt: EntityFilter) -> bool:
    """Does one RegistrationInfo cover the request's entities and attributes?"""
    ents = info.get("entities")
    if (
        ents
        and (flt.type_query is not None or flt.ids or flt.id_pattern)
        and not any(_entity_info_matches(e, flt) for e in ents)
    ):
        return False
    names = set(info.get("propertyNames") or []) | set(info.get("relationshipNames") or [])
    return not (flt.attrs and names and not (names & flt.attrs))


def _as_entity(doc: Mapping[str, Any], expand: Callable[[str], str]) -> dict[str, Any]:
    """Context source properties and geometries as an entity document, for q and geo matching.

    ``location``, ``observationSpace`` and ``operationSpace`` become GeoProperties under their
    expanded names (as a geo-query's ``geoproperty`` is expanded).
    """
    attrs: dict[str, Any] = {}
    for key, val in doc.items():
        if key in ("location", "observationSpace", "operationSpace"):
            attrs[expand(key)] = [{"type": "GeoProperty", "value": val}]
        elif key not in _KNOWN:
            attrs[key] = [{"type": "Property", "value": val}]
    return {"id": doc.get("id", ""), "type": [], "attrs": attrs}


def _temporal_matches(doc: Mapping[str, Any], rel: str, at: str, end: str | None, prop: str) -> bool:
    interval = doc.get("managementInterval" if prop in ("createdAt", "modifiedAt") else "observationInterval")
    if not interval:
        return False
    start = parse_datetime(interval["startAt"], "startAt")
    stop = parse_datetime(interval["endAt"], "endAt") if interval.get("endAt") else None
    if rel == "before":
        return start < at
    if rel == "after":
        return stop is None or stop > at
    assert end is not None
    return start < end and (stop is None or stop > at)


@dataclass
class DiscoveryQuery:
    """A ``GET /csourceRegistrations`` query, parsed (terms expanded)."""

    flt: EntityFilter
    q: Any = None
    geo_q: Any = None
    temporal: tuple[str, str, str | None, str] | None = None
    csf: Any = None
    expand: Any = None

    def matches(self, doc: Mapping[str, Any]) -> bool:
        infos = doc.get("information") or []
        if (
            self.flt.type_query is not None or self.flt.ids or self.flt.id_pattern or self.flt.attrs
        ) and not any(info_matches(i, self.flt) for i in infos):
            return False
        pseudo = _as_entity(doc, self.expand)
        if self.q is not None and not query.matches(self.q, pseudo, self.expand):
            return False
        if self.csf is not None and not query.matches(self.csf, pseudo, self.expand):
            return False
        if self.geo_q is not None and not geo.geo_matches(self.geo_q, pseudo):
            return False
        if self.temporal is not None:
            rel, at, end, prop = self.temporal
            if not _temporal_matches(doc, rel, at, end, prop):
                return False
        return True


def parse_discovery(params: Mapping[str, Any], ctx: ActiveContext) -> DiscoveryQuery:
    """Parse the discovery parameters (``id``, ``type``, ``idPattern``, ``attrs``, ``q``, ``csf``,
    geo-query, ``timerel``/``timeAt``/``endTimeAt``/``timeproperty``).

    Raises
    ------
    BadRequestData
        A malformed parameter, or none of type, attrs, id, idPattern, q, csf and a geo-query.
    """

    def get(name: str) -> str | None:
        v = params.get(name)
        return None if v is None or v == "" else str(v)

    ids: tuple[str, ...] = ()
    if get("id"):
        ids = tuple(i.strip() for i in str(get("id")).split(","))
        for i in ids:
            if not is_uri(i):
                raise BadRequestData(f"id {i!r} is not a URI")
    pattern = get("idPattern")
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise BadRequestData(f"idPattern {pattern!r} is not a regular expression ({exc})") from None
    tq = None
    if get("type"):
        try:
            tq = query.parse_type_query(str(get("type")))
        except ValueError as exc:
            raise BadRequestData(f"type: {exc}") from None
        tq = _expanded_type_node(tq, ctx)
    attrs = None
    if get("attrs"):
        names = [a.strip() for a in str(get("attrs")).split(",")]
        for n in names:
            check_name(n)
        attrs = frozenset(ctx.expand(n) for n in names)
    out = DiscoveryQuery(EntityFilter(ids, pattern, tq, attrs), expand=ctx.expand)
    for key in ("q", "csf"):
        text = get(key)
        if text is not None:
            try:
                setattr(out, key, query.parse_q(text))
            except ValueError as exc:
                raise BadRequestData(f"{key}: {exc}") from None
    if any(get(k) is not None for k in ("georel", "geometry", "coordinates")):
        try:
            out.geo_q = geo.parse_geoquery(
                get("georel"), get("geometry"), get("coordinates"), get("geoproperty"), expand=ctx.expand
            )
        except ValueError as exc:
            raise BadRequestData(f"geo-query: {exc}") from None
    rel = get("timerel")
    if rel is not None or get("timeAt") is not None:
        if rel not in ("before", "after", "between"):
            raise BadRequestData(f"timerel {rel!r} is not one of before, after, between")
        at = parse_datetime(get("timeAt"), "timeAt")
        end = parse_datetime(get("endTimeAt"), "endTimeAt") if rel == "between" else None
        out.temporal = (rel, at, end, get("timeproperty") or "observedAt")
    if not (
        tq is not None or attrs or ids or pattern or out.q is not None or out.csf is not None or out.geo_q
    ):
        raise BadRequestData(
            "discovery needs at least one of type, attrs, id, idPattern, q, csf or a geo-query"
        )
    return out


def _expanded_type_node(node: Any, ctx: ActiveContext) -> Any:
    """A type expression whose names are expanded IRIs (matched against stored types)."""
    return query.parse_type_query(subs.expand_type_query(str(node), ctx))


# --------------------------------------------------------------------------------------------------
# The registration the federation layer uses
# --------------------------------------------------------------------------------------------------


@dataclass
class Registration:
    """A live registration: where it points, what it covers, how requests use it."""

    stored: StoredRegistration
    operations: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        self.operations = operations_of(self.stored.doc)

    @property
    def id(self) -> str:
        return self.stored.id

    @property
    def doc(self) -> dict[str, Any]:
        return self.stored.doc

    @property
    def mode(self) -> str:
        return str(self.stored.doc.get("mode", "inclusive"))

    @property
    def endpoint(self) -> str:
        """The source's base URL, without a trailing ``/`` or ``/ngsi-ld/v1``.

        Requests append ``/ngsi-ld/v1/...``; some clients (the ETSI IOP tests among them)
        register a broker's API root ``http://host/ngsi-ld/v1`` instead of its base URL.
        """
        ep = str(self.stored.doc["endpoint"]).rstrip("/")
        return ep[: -len("/ngsi-ld/v1")] if ep.endswith("/ngsi-ld/v1") else ep

    @property
    def timeout_s(self) -> float | None:
        t = (self.stored.doc.get("management") or {}).get("timeout")
        return float(t) / 1000.0 if t else None

    def supports(self, op: str) -> bool:
        return op in self.operations

    def attributes(self, entity_id: str | None, types: Iterable[str]) -> set[str] | None:
        """Attributes this registration covers for an entity (None: all of them; empty: none)."""
        covered: set[str] = set()
        types = list(types)
        for info in self.doc.get("information") or []:
            if not self._entity_in(info, entity_id, types):
                continue
            names = set(info.get("propertyNames") or []) | set(info.get("relationshipNames") or [])
            if not names:
                return None
            covered |= names
        return covered

    def covers(self, entity_id: str | None, types: Iterable[str]) -> bool:
        types = list(types)
        return any(self._entity_in(i, entity_id, types) for i in self.doc.get("information") or [])

    @staticmethod
    def _entity_in(info: Mapping[str, Any], entity_id: str | None, types: list[str]) -> bool:
        ents = info.get("entities")
        if not ents:
            return True
        for e in ents:
            if types and e["type"] not in types:
                continue
            if entity_id is not None:
                if "id" in e and e["id"] != entity_id:
                    continue
                if "idPattern" in e and not re.search(e["idPattern"], entity_id):
                    continue
            return True
        return False

    def entity_ids(self) -> list[str]:
        return [
            e["id"] for i in self.doc.get("information") or [] for e in i.get("entities") or [] if "id" in e
        ]


# --------------------------------------------------------------------------------------------------
# Manager: CRUD, discovery, csource subscriptions
# --------------------------------------------------------------------------------------------------


class RegistrationManager:
    """Registrations and csource subscriptions of a node.

    Parameters
    ----------
    service
        The twin service (@context resolution).
    subscriptions
        The subscription store (csource subscriptions live there with kind ``csource``).
    delivery
        The notification sender shared with entity subscriptions.
    """

    def __init__(self, service: Any, subscriptions: SubscriptionStore, delivery: Delivery) -> None:
        self.service = service
        self.store = RegistrationStore(service.engine)
        self.subs = subscriptions
        self.delivery = delivery
        self._cache: dict[str, tuple[int, float, list[Registration]]] = {}
        self._cache_ttl_s = 2.0
        self._next_periodic: dict[tuple[str, str], float] = {}
        self._last_sent: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    # --- registrations --------------------------------------------------------------------------
    def create(self, tenant: str, body: Mapping[str, Any], raw_context: Any, ctx: ActiveContext) -> str:
        now = now_iso()
        doc = {k: v for k, v in validate_registration_members(body, ctx, now=now).items() if v is not None}
        doc.setdefault("id", f"urn:ngsi-ld:ContextSourceRegistration:{uuid.uuid4()}")
        check_registration(doc)
        stored = StoredRegistration(tenant, doc["id"], doc, raw_context, now, now)
        self.store.insert(stored)
        self._changed(tenant, None, stored)
        return str(doc["id"])

    def get(self, tenant: str, rid: str) -> StoredRegistration:
        if not is_uri(rid):
            raise BadRequestData(f"registration id {rid!r} is not a URI")
        reg = self.store.get(tenant, rid)
        if reg is None or _expired(reg.doc, now_iso()):
            raise ResourceNotFound(f"context source registration {rid} not found")
        return reg

    def update(self, tenant: str, rid: str, fragment: Mapping[str, Any], ctx: ActiveContext) -> None:
        before = self.get(tenant, rid)
        if "id" in fragment and fragment["id"] != rid:
            raise BadRequestData(f"the fragment's id {fragment['id']!r} differs from the URL's {rid!r}")
        changes = validate_registration_members(fragment, ctx, now=now_iso())
        doc = dict(before.doc)
        for key, val in changes.items():
            if val is None:
                doc.pop(key, None)
            else:
                doc[key] = val
        check_registration(doc)
        after = replace(before, doc=doc, modified_at=now_iso())
        self.store.replace(after)
        self._changed(tenant, before, after)

    def delete(self, tenant: str, rid: str) -> None:
        before = self.get(tenant, rid)
        self.store.delete(tenant, rid)
        self._changed(tenant, before, None)

    def discover(self, tenant: str, dq: DiscoveryQuery) -> list[StoredRegistration]:
        now = now_iso()
        return [r for r in self.store.list(tenant) if not _expired(r.doc, now) and dq.matches(r.doc)]

    def live(self, tenant: str) -> list[Registration]:
        """The tenant's unexpired registrations (cached; reloaded after writes or every 2 s)."""
        gen = self.store.generation
        mono = time.monotonic()
        hit = self._cache.get(tenant)
        if hit is not None and hit[0] == gen and mono - hit[1] < self._cache_ttl_s:
            return hit[2]
        now = now_iso()
        regs = [Registration(r) for r in self.store.list(tenant) if not _expired(r.doc, now)]
        self._cache[tenant] = (gen, mono, regs)
        return regs

    # --- csource subscriptions --------------------------------------------------------------------
    def create_subscription(
        self, tenant: str, body: Mapping[str, Any], raw_context: Any, ctx: ActiveContext
    ) -> str:
        now = now_iso()
        doc = {
            k: v for k, v in validate_members(body, ctx, kind=CSOURCE_KIND, now=now).items() if v is not None
        }
        doc.setdefault("id", f"urn:ngsi-ld:Subscription:{uuid.uuid4()}")
        check_subscription(doc, kind=CSOURCE_KIND)
        stored = StoredSubscription(tenant, CSOURCE_KIND, doc["id"], doc, raw_context, {}, now, now)
        self.subs.insert(stored)
        if not doc.get("timeInterval"):  # a periodic one gets its first notification from tick()
            self._initial(tenant, stored)
        return str(doc["id"])

    def get_subscription(self, tenant: str, sid: str) -> StoredSubscription:
        if not is_uri(sid):
            raise BadRequestData(f"subscription id {sid!r} is not a URI")
        stored = self.subs.get(tenant, CSOURCE_KIND, sid)
        if stored is None:
            raise ResourceNotFound(f"csource subscription {sid} not found")
        return stored

    def update_subscription(
        self, tenant: str, sid: str, fragment: Mapping[str, Any], ctx: ActiveContext
    ) -> None:
        stored = self.get_subscription(tenant, sid)
        if "id" in fragment and fragment["id"] != sid:
            raise BadRequestData(f"the fragment's id {fragment['id']!r} differs from the URL's {sid!r}")
        # A past expiresAt on update expires the subscription (it is refused on creation).
        body = dict(fragment)
        expires = body.pop("expiresAt", None)
        changes = validate_members(body, ctx, kind=CSOURCE_KIND, now=now_iso())
        doc = dict(stored.doc)
        for key, val in changes.items():
            if val is None:
                doc.pop(key, None)
            else:
                doc[key] = val
        if "expiresAt" in fragment:
            if expires is None:
                doc.pop("expiresAt", None)
            else:
                doc["expiresAt"] = parse_datetime(expires, "expiresAt")
        check_subscription(doc, kind=CSOURCE_KIND)
        after = replace(stored, doc=doc, modified_at=now_iso())
        self.subs.replace(after)
        if any(
            k in changes
            for k in ("entities", "watchedAttributes", "q", "geoQ", "csf", "temporalQ", "isActive")
        ):
            self._initial(tenant, after)

    def delete_subscription(self, tenant: str, sid: str) -> None:
        if not is_uri(sid):
            raise BadRequestData(f"subscription id {sid!r} is not a URI")
        self.subs.delete(tenant, CSOURCE_KIND, sid)

    def subscription_page(self, tenant: str, limit: int, offset: int) -> tuple[list[StoredSubscription], int]:
        if limit > subs.MAX_PAGE:
            raise TooManyResults(f"limit {limit} is larger than the maximum page size {subs.MAX_PAGE}")
        return self.subs.list(tenant, CSOURCE_KIND, limit=limit, offset=offset), self.subs.count(
            tenant, CSOURCE_KIND
        )

    # --- csource notifications ----------------------------------------------------------------------
    def _matching_infos(
        self, sub: StoredSubscription, ctx: ActiveContext, reg: Mapping[str, Any]
    ) -> list[dict[str, Any]] | None:
        """The RegistrationInfo items of ``reg`` relevant to ``sub`` (None: the registration does not match)."""
        doc = sub.doc
        now = now_iso()
        if _expired(reg, now):
            return None
        infos = reg.get("information") or []
        selectors = doc.get("entities") or []
        watched = frozenset(doc.get("watchedAttributes") or []) or None
        kept = []
        for info in infos:
            if selectors:
                ok = False
                for sel in selectors:
                    flt = EntityFilter(
                        (sel["id"],) if sel.get("id") else (),
                        sel.get("idPattern"),
                        query.parse_type_query(sel["type"]),
                        watched,
                    )
                    if info_matches(info, flt):
                        ok = True
                        break
            else:
                ok = info_matches(info, EntityFilter(attrs=watched))
            if ok:
                kept.append(info)
        if not kept:
            return None
        pseudo = _as_entity(reg, ctx.expand)
        if doc.get("q") and not query.matches(query.parse_q(unquote(doc["q"])), pseudo, ctx.expand):
            return None
        if doc.get("csf") and not query.matches(query.parse_q(doc["csf"]), pseudo, ctx.expand):
            return None
        if doc.get("geoQ"):
            g = doc["geoQ"]
            gq = geo.parse_geoquery(
                g.get("georel"),
                g.get("geometry"),
                g.get("coordinates"),
                g.get("geoproperty"),
                expand=ctx.expand,
            )
            if gq is not None and not geo.geo_matches(gq, pseudo):
                return None
        if doc.get("temporalQ"):
            t = doc["temporalQ"]
            at = parse_datetime(t["timeAt"], "timeAt")
            end = parse_datetime(t["endTimeAt"], "endTimeAt") if t.get("endTimeAt") else None
            if not _temporal_matches(reg, t["timerel"], at, end, t.get("timeproperty") or "observedAt"):
                return None
        return kept

    def _csource_subs(self, tenant: str) -> list[tuple[StoredSubscription, ActiveContext]]:
        out = []
        now = now_iso()
        for s in self.subs.list(tenant, CSOURCE_KIND):
            if subs.status_of(s.doc, now) != "active":
                continue
            try:
                out.append((s, self.service.resolve_context(s.context)))
            except NgsiLdError as exc:
                log.warning("csource subscription %s cannot be evaluated: %s", s.id, exc)
        return out

    def _changed(
        self, tenant: str, before: StoredRegistration | None, after: StoredRegistration | None
    ) -> None:
        """Notify the csource subscriptions a registration change concerns."""
        for sub, ctx in self._csource_subs(tenant):
            if sub.doc.get("timeInterval"):
                continue
            try:
                was = self._matching_infos(sub, ctx, before.doc) if before is not None else None
                now_infos = self._matching_infos(sub, ctx, after.doc) if after is not None else None
                if now_infos is not None:
                    reason = "updated" if was is not None else "newlyMatching"
                    assert after is not None
                    self._notify(tenant, sub, [(after, now_infos)], reason)
                elif was is not None:
                    assert before is not None
                    self._notify(tenant, sub, [(before, was)], "noLongerMatching")
            except Exception:
                log.exception("csource subscription %s failed", sub.id)

    def _initial(self, tenant: str, sub: StoredSubscription) -> None:
        """On (re)subscription: notify every currently matching registration (``newlyMatching``)."""
        if subs.status_of(sub.doc, now_iso()) != "active":
            return
        ctx = self.service.resolve_context(sub.context)
        found = []
        for reg in self.store.list(tenant):
            infos = self._matching_infos(sub, ctx, reg.doc)
            if infos is not None:
                found.append((reg, infos))
        if found:
            self._notify(tenant, sub, found, "newlyMatching")

    def _notify(
        self,
        tenant: str,
        sub: StoredSubscription,
        regs: list[tuple[StoredRegistration, list[dict[str, Any]]]],
        reason: str,
    ) -> None:
        throttling = float(sub.doc.get("throttling") or 0)
        if throttling:
            key = (tenant, sub.id)
            mono = time.monotonic()
            with self._lock:
                last = self._last_sent.get(key)
                if last is not None and mono - last < throttling:
                    return
                self._last_sent[key] = mono
        raw = sub.doc.get("jsonldContext") or sub.context
        ctx = self.service.resolve_context(raw)
        endpoint = (sub.doc.get("notification") or {}).get("endpoint") or {}
        data = []
        for reg, infos in regs:
            item = render_registration(replace(reg, doc={**reg.doc, "information": infos}), ctx)
            if endpoint.get("accept") == "application/ld+json":
                item["@context"] = raw if raw is not None else CORE_CONTEXT_URL
            data.append(item)
        body = {
            "id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}",
            "type": "ContextSourceNotification",
            "subscriptionId": sub.id,
            "notifiedAt": now_iso(),
            "data": data,
            "triggerReason": reason,
        }
        self.delivery.submit(
            OutgoingNotification(
                (tenant, CSOURCE_KIND, sub.id),
                endpoint,
                body,
                context_url_of(raw) or CORE_CONTEXT_URL,
                tenant,
            )
        )

    def tick(self, mono: float | None = None) -> None:
        """Periodic csource notifications (``timeInterval``) and purge of expired registrations.

        Parameters
        ----------
        mono
            The current ``time.monotonic()`` in seconds (injectable for deterministic tests); the
            first periodic notification goes at once, then every ``timeInterval`` seconds.
        """
        mono = time.monotonic() if mono is None else mono
        now = now_iso()
        tenants = {s.tenant for s in self.subs.list(None, CSOURCE_KIND) if s.doc.get("timeInterval")}
        for tenant in tenants:
            for sub, ctx in self._csource_subs(tenant):
                ti = sub.doc.get("timeInterval")
                if not ti:
                    continue
                key = (tenant, sub.id)
                with self._lock:
                    due = self._next_periodic.get(key)
                    if due is None:
                        # first one at once ("initially on subscription"), then every timeInterval
                        due = mono
                    if mono < due:
                        continue
                    self._next_periodic[key] = mono + float(ti)
                found = []
                for reg in self.store.list(tenant):
                    infos = self._matching_infos(sub, ctx, reg.doc)
                    if infos is not None:
                        found.append((reg, infos))
                if found:
                    self._notify(tenant, sub, found, "newlyMatching")
        for reg in self.store.list(None):
            if _expired(reg.doc, now):
                try:
                    self.store.delete(reg.tenant, reg.id)
                    self._changed(reg.tenant, reg, None)
                except ResourceNotFound:
                    pass


def _expired(doc: Mapping[str, Any], now: str) -> bool:
    exp = doc.get("expiresAt")
    if not exp:
        return False
    try:
        return parse_datetime(exp, "expiresAt") <= now
    except BadRequestData:
        return False


__all__ = [
    "DEFAULT_OPERATIONS",
    "MODES",
    "OPERATION_GROUPS",
    "DiscoveryQuery",
    "EntityFilter",
    "Registration",
    "RegistrationManager",
    "RegistrationStore",
    "StoredRegistration",
    "check_registration",
    "info_matches",
    "operations_of",
    "parse_discovery",
    "render_registration",
    "validate_registration_members",
]
