"""Use cases of the NGSI-LD node over the entity store: the semantics of every core operation.

The API layer only parses HTTP; everything NGSI-LD means (append vs update vs merge, datasetIds,
``noOverwrite``, multi-status results, batch errors per entity, query parameters) lives here, so
the REST API, the CLI importer, the demo and the federation layer share one implementation.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Engine

from bright.config import Settings
from bright.twin import geo, query
from bright.twin.context import ActiveContext, ContextResolver
from bright.twin.entities import (
    ENTITY_KEYS,
    INSTANCE_KEYS,
    NULL,
    check_entity_id,
    check_name,
    is_null_instance,
    linked_ids,
    merge_instances,
    now_iso,
    parse_attr_type,
    parse_attribute,
    parse_attributes,
    parse_entity,
    parse_instance,
    parse_scope,
    parse_types,
)
from bright.twin.errors import (
    AlreadyExists,
    BadRequestData,
    NgsiLdError,
    ResourceNotFound,
    TooManyResults,
)
from bright.twin.jsonld_store import ContextStore
from bright.twin.store import EntityQuery, TwinStore, bulk_write

MAX_LIMIT = 1000
ORDER_BY_MAX = 10_000
_VALUE_KEYS = ("value", "object", "languageMap", "vocab", "json", "valueList", "objectList")
Validator = Callable[[dict[str, Any]], None]


class TwinService:
    """The NGSI-LD operations of one node.

    Parameters
    ----------
    engine
        The node's database engine.
    settings
        Node settings (context directory, fetch policy, limits).
    """

    def __init__(self, engine: Engine, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.engine = engine
        self.store = TwinStore(engine)
        self.contexts = ContextStore(engine)
        self.resolver = ContextResolver(
            lookup=self.contexts.lookup,
            context_dir=self.settings.context_dir,
            fetch=self.settings.fetch_contexts,
        )
        from bright.twin import vocabulary

        self.validators: list[Validator] = [vocabulary.validate]

    def resolve_context(self, raw: Any) -> ActiveContext:
        return self.resolver.resolve(raw)

    def _validate(self, doc: dict[str, Any]) -> None:
        for v in self.validators:
            v(doc)

    # --- single entity -----------------------------------------------------------------------------
    def create_entity(self, tenant: str, body: dict[str, Any], ctx: ActiveContext) -> str:
        doc = parse_entity(body, ctx, now_iso())
        self._validate(doc)
        self.store.create(tenant, doc)
        return str(doc["id"])

    def get_entity(self, tenant: str, eid: str) -> dict[str, Any]:
        check_entity_id(eid)
        if not self.store.tenant_exists(tenant):
            raise ResourceNotFound(f"tenant {tenant!r} not found")
        doc = self.store.get(tenant, eid)
        if doc is None:
            raise ResourceNotFound(f"entity {eid} not found")
        return doc

    def delete_entity(self, tenant: str, eid: str) -> None:
        check_entity_id(eid)
        self.store.delete(tenant, eid)

    def replace_entity(self, tenant: str, eid: str, body: dict[str, Any], ctx: ActiveContext) -> None:
        check_entity_id(eid)
        if "id" in body and body["id"] != eid:
            raise BadRequestData(f"the body's id {body['id']!r} differs from the URL's {eid!r}")
        now = now_iso()
        new = parse_entity({**body, "id": eid}, ctx, now, require_type=True)
        self._validate(new)

        def change(old: dict[str, Any]) -> dict[str, Any]:
            new["createdAt"] = old["createdAt"]
            return new

        self.store.modify(tenant, eid, change)

    def merge_entity(self, tenant: str, eid: str, body: dict[str, Any], ctx: ActiveContext) -> None:
        check_entity_id(eid)
        if "id" in body and body["id"] != eid:
            raise BadRequestData(f"the body's id {body['id']!r} differs from the URL's {eid!r}")
        now = now_iso()
        frag = parse_attributes(body, ctx, now, allow_null=True)
        types = parse_types(body["type"], ctx) if "type" in body else None
        scope = parse_scope(body["scope"]) if "scope" in body else None

        def change(old: dict[str, Any]) -> dict[str, Any]:
            doc = _merge_doc(old, frag, types, scope, now)
            self._validate(doc)
            return doc

        self.store.modify(tenant, eid, change)

    # --- attributes --------------------------------------------------------------------------------
    def append_attributes(
        self, tenant: str, eid: str, body: dict[str, Any], ctx: ActiveContext, *, no_overwrite: bool = False
    ) -> dict[str, Any]:
        check_entity_id(eid)
        if "id" in body and body["id"] != eid:
            raise BadRequestData(f"the body's id {body['id']!r} differs from the URL's {eid!r}")
        now = now_iso()
        attrs = parse_attributes(body, ctx, now)
        types = parse_types(body["type"], ctx) if "type" in body else None
        result: dict[str, Any] = {"updated": [], "notUpdated": []}

        scope = parse_scope(body["scope"]) if "scope" in body else None

        def change(doc: dict[str, Any]) -> dict[str, Any]:
            doc = copy.deepcopy(doc)
            _append(doc, attrs, result, no_overwrite=no_overwrite)
            if scope is not None:
                if no_overwrite:
                    doc["scope"] = list(dict.fromkeys((doc.get("scope") or []) + scope))
                else:
                    doc["scope"] = scope
                result["updated"].append("scope")
            if types:
                doc["type"] = list(dict.fromkeys(doc["type"] + types))
            doc["modifiedAt"] = now
            self._validate(doc)
            return doc

        self.store.modify(tenant, eid, change)
        return result

    def update_attributes(
        self, tenant: str, eid: str, body: dict[str, Any], ctx: ActiveContext
    ) -> dict[str, Any]:
        """PATCH /entities/{id}/attrs: overwrite or add the given attributes; NGSI-LD Null deletes."""
        check_entity_id(eid)
        if "id" in body and body["id"] != eid:
            raise BadRequestData(f"the body's id {body['id']!r} differs from the URL's {eid!r}")
        now = now_iso()
        attrs = parse_attributes(body, ctx, now, allow_null=True)
        types = parse_types(body["type"], ctx) if "type" in body else None
        scope = parse_scope(body["scope"]) if "scope" in body else None
        result: dict[str, Any] = {"updated": [], "notUpdated": []}

        def change(doc: dict[str, Any]) -> dict[str, Any]:
            doc = copy.deepcopy(doc)
            _append(doc, attrs, result, no_overwrite=False)
            if types:
                doc["type"] = list(dict.fromkeys(doc["type"] + types))
            if scope is not None:
                if doc.get("scope"):
                    doc["scope"] = scope
                    result["updated"].append("scope")
                else:
                    result["notUpdated"].append(
                        {"attributeName": "scope", "reason": "the entity has no scope to update"}
                    )
            doc["modifiedAt"] = now
            self._validate(doc)
            return doc

        self.store.modify(tenant, eid, change)
        return result

    def partial_update_attribute(
        self, tenant: str, eid: str, attr: str, body: Any, ctx: ActiveContext
    ) -> None:
        check_entity_id(eid)
        check_name(attr)
        if not isinstance(body, dict):
            raise BadRequestData("an attribute fragment must be a JSON object")
        iri = ctx.expand(attr)
        now = now_iso()
        ds = body.get("datasetId")

        def change(doc: dict[str, Any]) -> dict[str, Any]:
            doc = copy.deepcopy(doc)
            insts = doc["attrs"].get(iri)
            if not insts:
                raise ResourceNotFound(f"entity {eid} has no attribute {attr}")
            target = next((i for i in insts if i.get("datasetId") == ds), None)
            if target is None:
                raise ResourceNotFound(f"attribute {attr} of {eid} has no instance with datasetId {ds}")
            frag = {k: v for k, v in body.items() if k != "@context"}
            if "type" in frag:
                given = parse_attr_type(frag["type"], ctx, attr)
                if given != target["type"]:
                    raise BadRequestData(
                        f"attribute {attr}: the fragment's type {frag['type']} differs from the attribute's "
                        f"type {target['type']}"
                    )
            frag["type"] = target["type"]
            for key in ("value", "object", "languageMap", "vocab", "json", "valueList", "objectList"):
                if key in target and not any(k in frag for k in _VALUE_KEYS):
                    frag[key] = target[key]
            parsed = parse_instance(frag, ctx, attr, now, allow_null=True)
            if is_null_instance(parsed):
                rest = [i for i in insts if i is not target]
                if rest:
                    doc["attrs"][iri] = rest
                else:
                    del doc["attrs"][iri]
            else:
                merged = _merge_instance(target, parsed, frag, ctx, now)
                doc["attrs"][iri] = [merged if i is target else i for i in insts]
            doc["modifiedAt"] = now
            self._validate(doc)
            return doc

        self.store.modify(tenant, eid, change)

    def replace_attribute(self, tenant: str, eid: str, attr: str, body: Any, ctx: ActiveContext) -> None:
        check_entity_id(eid)
        check_name(attr)
        iri = ctx.expand(attr)
        now = now_iso()
        if isinstance(body, dict):
            body = {k: v for k, v in body.items() if k != "@context"}
        instances = parse_attribute(body, ctx, attr, now)

        def change(doc: dict[str, Any]) -> dict[str, Any]:
            doc = copy.deepcopy(doc)
            if iri not in doc["attrs"]:
                raise ResourceNotFound(f"entity {eid} has no attribute {attr}")
            doc["attrs"][iri] = merge_instances(doc["attrs"][iri], instances)
            doc["modifiedAt"] = now
            self._validate(doc)
            return doc

        self.store.modify(tenant, eid, change)

    def delete_attribute(
        self,
        tenant: str,
        eid: str,
        attr: str,
        ctx: ActiveContext,
        *,
        dataset_id: str | None = None,
        delete_all: bool = False,
    ) -> None:
        check_entity_id(eid)
        check_name(attr)
        iri = ctx.expand(attr)
        now = now_iso()

        def change(doc: dict[str, Any]) -> dict[str, Any]:
            doc = copy.deepcopy(doc)
            if attr == "scope" and iri not in doc["attrs"]:
                if not doc.get("scope"):
                    raise ResourceNotFound(f"entity {eid} has no scope")
                del doc["scope"]
                doc["modifiedAt"] = now
                return doc
            insts = doc["attrs"].get(iri)
            if not insts:
                raise ResourceNotFound(f"entity {eid} has no attribute {attr}")
            if delete_all:
                keep: list[dict[str, Any]] = []
            else:
                keep = [i for i in insts if i.get("datasetId") != dataset_id]
                if len(keep) == len(insts):
                    raise ResourceNotFound(
                        f"attribute {attr} of {eid} has no instance with datasetId {dataset_id}"
                    )
            if keep:
                doc["attrs"][iri] = keep
            else:
                del doc["attrs"][iri]
            doc["modifiedAt"] = now
            return doc

        self.store.modify(tenant, eid, change)

    # --- batches -------------------------------------------------------------------------------
    def _items(
        self, body: list[Any], ctx: ActiveContext, contexts: list[Any] | None
    ) -> tuple[list[tuple[Any, ActiveContext]], list[dict[str, Any]]]:
        """Pair each batch item with its @context; items whose context failed become errors."""
        items: list[tuple[Any, ActiveContext]] = []
        errors: list[dict[str, Any]] = []
        for i, raw in enumerate(body):
            c = contexts[i] if contexts is not None else ctx
            if isinstance(c, NgsiLdError):
                eid = raw.get("id") if isinstance(raw, dict) else None
                errors.append({"entityId": str(eid), "error": c.problem()})
            else:
                items.append((raw, c))
        return items, errors

    def _parse_batch(
        self,
        items: list[tuple[Any, ActiveContext]],
        now: str,
        *,
        require_type: bool = True,
        dedupe: bool = False,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        docs: dict[str, dict[str, Any]] = {}
        errors: list[dict[str, Any]] = []
        for raw, c in items:
            eid = raw.get("id") if isinstance(raw, dict) else None
            try:
                if isinstance(raw, dict) and "@context" in raw:
                    raw = {k: v for k, v in raw.items() if k != "@context"}
                doc = parse_entity(raw, c, now, require_type=require_type)
                if require_type:
                    self._validate(doc)
                if doc["id"] in docs:
                    if not dedupe:
                        raise BadRequestData(f"entity {doc['id']} appears twice in the batch")
                    prev = docs[doc["id"]]
                    _append(prev, doc["attrs"], {"updated": [], "notUpdated": []}, no_overwrite=False)
                    prev["type"] = list(dict.fromkeys(prev["type"] + doc["type"]))
                    continue
            except NgsiLdError as err:
                errors.append({"entityId": eid if isinstance(eid, str) else str(eid), "error": err.problem()})
                continue
            docs[doc["id"]] = doc
        return list(docs.values()), errors

    @bulk_write
    def batch_create(
        self, tenant: str, body: list[Any], ctx: ActiveContext, *, contexts: list[Any] | None = None
    ) -> dict[str, Any]:
        items, errors = self._items(body, ctx, contexts)
        docs, errs = self._parse_batch(items, now_iso())
        errors += errs
        existing = self.store.get_many(tenant, [d["id"] for d in docs])
        new = [d for d in docs if d["id"] not in existing]
        for d in docs:
            if d["id"] in existing:
                errors.append(
                    {
                        "entityId": d["id"],
                        "error": AlreadyExists(f"entity {d['id']} already exists").problem(),
                    }
                )
        self.store.write_batch(tenant, new, merge=None)
        return {"success": [d["id"] for d in new], "errors": errors}

    @bulk_write
    def batch_upsert(
        self,
        tenant: str,
        body: list[Any],
        ctx: ActiveContext,
        *,
        replace: bool = True,
        contexts: list[Any] | None = None,
    ) -> dict[str, Any]:
        now = now_iso()
        items, errors = self._items(body, ctx, contexts)
        docs, errs = self._parse_batch(items, now, dedupe=True)
        errors += errs

        def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
            doc = copy.deepcopy(old)
            _append(doc, new["attrs"], {"updated": [], "notUpdated": []}, no_overwrite=False)
            doc["type"] = list(dict.fromkeys(doc["type"] + new["type"]))
            doc["modifiedAt"] = now
            return doc

        created = self.store.write_batch(tenant, docs, merge=None if replace else merge)
        return {"success": [d["id"] for d in docs], "errors": errors, "created": created}

    @bulk_write
    def batch_update(
        self,
        tenant: str,
        body: list[Any],
        ctx: ActiveContext,
        *,
        no_overwrite: bool = False,
        contexts: list[Any] | None = None,
    ) -> dict[str, Any]:
        now = now_iso()
        items, errors = self._items(body, ctx, contexts)
        docs, errs = self._parse_batch(items, now, require_type=False)
        errors += errs
        existing = self.store.get_many(tenant, [d["id"] for d in docs])
        ok: list[dict[str, Any]] = []
        for d in docs:
            if d["id"] not in existing:
                errors.append(
                    {"entityId": d["id"], "error": ResourceNotFound(f"entity {d['id']} not found").problem()}
                )
            else:
                ok.append(d)
        partial: dict[str, list[Any]] = {}

        def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
            doc = copy.deepcopy(old)
            result: dict[str, Any] = {"updated": [], "notUpdated": []}
            _append(doc, new["attrs"], result, no_overwrite=no_overwrite)
            if result["notUpdated"]:
                partial[new["id"]] = result["notUpdated"]
            doc["type"] = list(dict.fromkeys(doc["type"] + new["type"]))
            doc["modifiedAt"] = now
            return doc

        self.store.write_batch(tenant, ok, merge=merge)
        for eid, not_updated in partial.items():
            names = ", ".join(n["attributeName"] for n in not_updated)
            errors.append(
                {
                    "entityId": eid,
                    "error": BadRequestData(
                        f"attributes not updated: {names}", notUpdated=not_updated
                    ).problem(),
                }
            )
        return {"success": [d["id"] for d in ok if d["id"] not in partial], "errors": errors}

    @bulk_write
    def batch_merge(
        self, tenant: str, body: list[Any], ctx: ActiveContext, *, contexts: list[Any] | None = None
    ) -> dict[str, Any]:
        now = now_iso()
        items, errors = self._items(body, ctx, contexts)
        frags: list[dict[str, Any]] = []
        for raw, c in items:
            eid = raw.get("id") if isinstance(raw, dict) else None
            try:
                if not isinstance(raw, dict):
                    raise BadRequestData("a batch item must be a JSON object")
                check_entity_id(eid)
                attrs = parse_attributes(raw, c, now, allow_null=True)
                types = parse_types(raw["type"], c) if "type" in raw else []
                frags.append({"id": eid, "type": types, "attrs": attrs, "createdAt": now, "modifiedAt": now})
            except NgsiLdError as err:
                errors.append({"entityId": str(eid), "error": err.problem()})
        existing = self.store.get_many(tenant, [f["id"] for f in frags])
        ok = []
        for f in frags:
            if f["id"] not in existing:
                errors.append(
                    {"entityId": f["id"], "error": ResourceNotFound(f"entity {f['id']} not found").problem()}
                )
            else:
                ok.append(f)

        def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
            return _merge_doc(old, new["attrs"], new["type"] or None, None, now)

        self.store.write_batch(tenant, ok, merge=merge)
        return {"success": [f["id"] for f in ok], "errors": errors}

    def batch_delete(self, tenant: str, body: list[Any]) -> dict[str, Any]:
        errors: list[dict[str, Any]] = []
        ids: list[str] = []
        for eid in body:
            try:
                check_entity_id(eid)
                if eid in ids:
                    raise BadRequestData(f"entity {eid} appears twice in the batch")
                ids.append(eid)
            except NgsiLdError as err:
                errors.append({"entityId": str(eid), "error": err.problem()})
        found = self.store.delete_many(tenant, ids)
        for eid in ids:
            if eid not in found:
                errors.append(
                    {"entityId": eid, "error": ResourceNotFound(f"entity {eid} not found").problem()}
                )
        return {"success": [e for e in ids if e in found], "errors": errors}

    def linked(self, tenant: str, docs: list[dict[str, Any]], level: int) -> dict[str, dict[str, Any]]:
        """Entities reachable from ``docs`` through Relationships, up to ``level`` hops (joins)."""
        found: dict[str, dict[str, Any]] = {}
        frontier = docs
        for _ in range(level):
            wanted = [i for i in linked_ids(frontier) if i not in found]
            if not wanted:
                break
            batch = self.store.get_many(tenant, wanted)
            found.update({i: batch[i] for i in wanted if i in batch})
            frontier = [batch[i] for i in wanted if i in batch]
        return found

    # --- queries -------------------------------------------------------------------------------
    def build_query(
        self,
        params: Mapping[str, Any],
        ctx: ActiveContext,
        *,
        require_filter: bool = True,
        by_id_ok: bool = False,
    ) -> EntityQuery:
        """Turn query parameters (``type``, ``id``, ``idPattern``, ``q``, ``scopeQ``, ``attrs``,
        geo-query, ``limit``, ``offset``) into an :class:`EntityQuery`."""

        def get(name: str) -> str | None:
            v = params.get(name)
            if v is None:
                return None
            if isinstance(v, list):
                return ",".join(str(x) for x in v)
            return str(v)

        eq = EntityQuery(expand=ctx.expand)
        ids = get("id")
        if ids:
            eq.ids = [check_entity_id(i.strip()) for i in ids.split(",")]
        eq.id_pattern = get("idPattern")
        t = get("type")
        if t is not None:
            if not t.strip():
                raise BadRequestData("type is empty")
            eq.type_query = _parsed(query.parse_type_query, t, "type")
        q = get("q")
        if q is not None:
            eq.q = _parsed(query.parse_q, q, "q")
        sq = get("scopeQ")
        if sq is not None:
            eq.scope_q = _parsed(query.parse_scope_query, sq, "scopeQ")
        attrs = get("attrs")
        if attrs:
            names = [a.strip() for a in attrs.split(",")]
            for n in names:
                if n in ENTITY_KEYS:
                    raise BadRequestData(f"attrs: {n!r} is an entity member, not an attribute name")
                check_name(n)
            eq.attrs = [ctx.expand(a) for a in names]
        georel = get("georel")
        geometry = get("geometry")
        coords = params.get("coordinates")
        if georel is not None or geometry is not None or coords is not None:
            try:
                eq.geo = geo.parse_geoquery(georel, geometry, coords, get("geoproperty"), expand=ctx.expand)
            except ValueError as exc:
                raise BadRequestData(f"geo-query: {exc}") from None
        eq.limit = _int(get("limit"), "limit", 20)
        eq.offset = _int(get("offset"), "offset", 0)
        if eq.limit > MAX_LIMIT:
            raise TooManyResults(f"limit {eq.limit} is larger than the maximum page size {MAX_LIMIT}")
        local = (get("local") or "").lower() == "true"
        if (
            require_filter
            and not local
            and not any((eq.type_query, eq.q, eq.attrs, eq.geo, eq.scope_q))
            and not (by_id_ok and (eq.ids or eq.id_pattern))
        ):
            raise BadRequestData(
                "a query needs at least one of type, attrs, q, scopeQ or a geo-query (or local=true)"
            )
        return eq

    def query_from_params(
        self, tenant: str, params: Mapping[str, Any], ctx: ActiveContext
    ) -> tuple[list[dict[str, Any]], int | None]:
        if not self.store.tenant_exists(tenant):
            raise ResourceNotFound(f"tenant {tenant!r} not found")
        eq = self.build_query(params, ctx)
        count = str(params.get("count", "false")).lower() == "true"
        order = params.get("orderBy")
        if not order:
            return self.store.query(tenant, eq, count=count)
        keys = parse_order_by(str(order), ctx)
        limit, offset = eq.limit, eq.offset
        eq.limit, eq.offset = ORDER_BY_MAX + 1, 0
        docs, _ = self.store.query(tenant, eq)
        if len(docs) > ORDER_BY_MAX:
            raise TooManyResults(f"orderBy sorts at most {ORDER_BY_MAX} matching entities; narrow the query")
        docs = order_docs(docs, keys)
        return docs[offset : offset + limit], (len(docs) if count else None)

    def query_from_body(
        self, tenant: str, body: dict[str, Any], params: Mapping[str, Any], ctx: ActiveContext
    ) -> tuple[list[dict[str, Any]], int | None]:
        """``POST /entityOperations/query``: a Query object (``entities``, ``attrs``, ``q``, ``geoQ``...)."""
        if body.get("type") not in ("Query", None):
            raise BadRequestData("the body of entityOperations/query must have type Query")
        flat: dict[str, Any] = {}
        selectors = body.get("entities") or []
        if not isinstance(selectors, list):
            raise BadRequestData("entities must be an array of entity selectors")
        if len(selectors) > 1:
            # Several selectors are ORed: merge results of one query per selector.
            docs: dict[str, dict[str, Any]] = {}
            for sel in selectors:
                sub = {**body, "entities": [sel]}
                for d in self.query_from_body(
                    tenant, sub, {**params, "limit": str(MAX_LIMIT), "offset": "0"}, ctx
                )[0]:
                    docs.setdefault(d["id"], d)
            items = list(docs.values())
            limit, offset = _int(params.get("limit"), "limit", 20), _int(params.get("offset"), "offset", 0)
            count = len(items) if str(params.get("count", "false")).lower() == "true" else None
            return items[offset : offset + limit], count
        if selectors:
            sel = selectors[0]
            if not isinstance(sel, dict):
                raise BadRequestData("an entity selector must be an object")
            if "type" in sel:
                flat["type"] = sel["type"]
            if "id" in sel:
                flat["id"] = sel["id"]
            if "idPattern" in sel:
                flat["idPattern"] = sel["idPattern"]
        if "attrs" in body:
            flat["attrs"] = ",".join(body["attrs"]) if isinstance(body["attrs"], list) else body["attrs"]
        for key in ("q", "scopeQ"):
            if key in body:
                flat[key] = body[key]
        gq = body.get("geoQ")
        if gq is not None:
            if not isinstance(gq, dict):
                raise BadRequestData("geoQ must be an object")
            flat["georel"] = gq.get("georel")
            flat["geometry"] = gq.get("geometry")
            flat["coordinates"] = gq.get("coordinates")
            if "geoproperty" in gq:
                flat["geoproperty"] = gq["geoproperty"]
        for key in ("limit", "offset", "count", "local"):
            if key in params:
                flat[key] = params[key]
        return self.query_from_params(tenant, flat, ctx)

    def purge_from_params(
        self,
        tenant: str,
        params: Mapping[str, Any],
        ctx: ActiveContext,
        *,
        keep: list[str] | None = None,
        drop: list[str] | None = None,
    ) -> int:
        """DELETE /entities: delete the matching entities, or only drop (or keep) some attributes."""
        if not self.store.tenant_exists(tenant):
            raise ResourceNotFound(f"tenant {tenant!r} not found")
        eq = self.build_query(
            {k: v for k, v in params.items() if k not in ("keep", "drop")}, ctx, by_id_ok=True
        )
        if keep is None and drop is None:
            n = self.store.delete_matching(tenant, eq)
        else:
            names = {ctx.expand(a) for a in (keep or drop or [])}
            eq.limit, eq.offset = 10**9, 0
            docs, _ = self.store.query(tenant, eq)
            now = now_iso()
            changed = []
            for d in docs:
                attrs = {
                    k: v
                    for k, v in d["attrs"].items()
                    if (k in names if keep is not None else k not in names)
                }
                if attrs != d["attrs"]:
                    changed.append({**d, "attrs": attrs, "modifiedAt": now})
            self.store.write_batch(tenant, changed, merge=lambda old, new: new)
            n = len(docs)
        if n == 0:
            raise ResourceNotFound("no entity matches the purge request")
        return n

    # --- discovery ------------------------------------------------------------------------------
    def types(self, tenant: str, ctx: ActiveContext, *, details: bool = False) -> Any:
        types = self.store.types(tenant)
        if details:
            return [
                {
                    "id": t,
                    "type": "EntityType",
                    "typeName": ctx.compact(t),
                    "attributeNames": sorted(ctx.compact(a) for a in attrs),
                }
                for t, attrs in sorted(types.items())
            ]
        return {
            "id": f"urn:ngsi-ld:EntityTypeList:{uuid.uuid4()}",
            "type": "EntityTypeList",
            "typeList": sorted(ctx.compact(t) for t in types),
        }

    def type_info(self, tenant: str, type_name: str, ctx: ActiveContext) -> dict[str, Any]:
        iri = ctx.expand(type_name)
        n, attrs = self.store.type_details(tenant, iri)
        if n == 0:
            raise ResourceNotFound(f"no entity of type {type_name}")
        return {
            "id": iri,
            "type": "EntityTypeInfo",
            "typeName": ctx.compact(iri),
            "entityCount": n,
            "attributeDetails": [
                {"id": a, "type": "Attribute", "attributeName": ctx.compact(a), "attributeTypes": sorted(ts)}
                for a, ts in sorted(attrs.items())
            ],
        }

    def attributes(self, tenant: str, ctx: ActiveContext, *, details: bool = False) -> Any:
        attrs = self.store.attributes(tenant)
        if details:
            return [
                {
                    "id": a,
                    "type": "Attribute",
                    "attributeName": ctx.compact(a),
                    "typeNames": sorted(ctx.compact(t) for t in info["typeNames"]),
                }
                for a, info in sorted(attrs.items())
            ]
        return {
            "id": f"urn:ngsi-ld:AttributeList:{uuid.uuid4()}",
            "type": "AttributeList",
            "attributeList": sorted(ctx.compact(a) for a in attrs),
        }

    def attribute_info(self, tenant: str, attr: str, ctx: ActiveContext) -> dict[str, Any]:
        iri = ctx.expand(attr)
        info = self.store.attributes(tenant).get(iri)
        if info is None:
            raise ResourceNotFound(f"no attribute {attr}")
        return {
            "id": iri,
            "type": "Attribute",
            "attributeName": ctx.compact(iri),
            "attributeCount": info["count"],
            "attributeTypes": sorted(info["attributeTypes"]),
            "typeNames": sorted(ctx.compact(t) for t in info["typeNames"]),
        }


def parse_order_by(text: str, ctx: ActiveContext) -> list[tuple[list[str], bool]]:
    """``orderBy``: comma-separated members (``id``, ``type``, ``createdAt``, ``attr``, ``attr.sub``,
    ``attr.observedAt``), each optionally ``;asc`` or ``;desc``. Returns (path, descending) pairs,
    the first path element expanded to its IRI (or kept for entity members)."""
    keys: list[tuple[list[str], bool]] = []
    for part in text.split(","):
        term, _, direction = part.strip().partition(";")
        if not term or direction not in ("", "asc", "desc"):
            raise BadRequestData(f"orderBy: {part!r} is not 'member' or 'member;asc|desc'")
        path = term.split(".")
        if path[0] not in ("id", "type", "createdAt", "modifiedAt"):
            path = [ctx.expand(path[0])] + [
                p if p in ENTITY_KEYS or p == "observedAt" else ctx.expand(p) for p in path[1:]
            ]
        keys.append((path, direction == "desc"))
    return keys


def _order_value(doc: dict[str, Any], path: list[str]) -> Any:
    if path[0] == "id":
        return doc["id"]
    if path[0] == "type":
        return doc["type"][0] if doc["type"] else None
    if path[0] in ("createdAt", "modifiedAt"):
        return doc.get(path[0])
    insts = doc.get("attrs", {}).get(path[0])
    if not insts:
        return None
    node: Any = insts[0]
    for p in path[1:]:
        node = node.get(p) if isinstance(node, dict) else None
        if node is None:
            return None
    if isinstance(node, dict):
        for k in ("value", "object", "vocab", "json"):
            if k in node:
                return node[k]
        return None
    return node


def order_docs(docs: list[dict[str, Any]], keys: list[tuple[list[str], bool]]) -> list[dict[str, Any]]:
    """Stable multi-key sort; missing values last whatever the direction; mixed types by type name."""
    out = list(docs)
    for path, desc in reversed(keys):
        present = [d for d in out if _order_value(d, path) is not None]
        missing = [d for d in out if _order_value(d, path) is None]
        present.sort(
            key=lambda d: (type(_order_value(d, path)).__name__, _sortable(_order_value(d, path))),
            reverse=desc,
        )
        out = present + missing
    return out


def _sortable(v: Any) -> Any:
    return v if isinstance(v, (int, float, str)) else str(v)


def _parsed(parse: Callable[[str], Any], text: str, name: str) -> Any:
    try:
        return parse(text)
    except ValueError as exc:
        raise BadRequestData(f"{name}: {exc}") from None


def _int(value: Any, name: str, default: int) -> int:
    if value is None:
        return default
    try:
        n = int(str(value))
    except ValueError:
        raise BadRequestData(f"{name} must be a non-negative integer, got {value!r}") from None
    if not 0 <= n < 2**31:
        raise BadRequestData(f"{name} must be an integer from 0 to 2^31 - 1, got {value!r}")
    return n


def _append(
    doc: dict[str, Any],
    attrs: dict[str, list[dict[str, Any]]],
    result: dict[str, Any],
    *,
    no_overwrite: bool,
) -> None:
    """Add or overwrite attribute instances (by datasetId); NGSI-LD Null instances delete.

    ``result`` collects the attribute IRIs under ``updated`` and ``notUpdated`` (UpdateResult).
    """
    for iri, instances in attrs.items():
        old = doc["attrs"].get(iri)
        nulls = [i for i in instances if is_null_instance(i)]
        real = [i for i in instances if not is_null_instance(i)]
        if nulls:
            if old is None:
                result["notUpdated"].append({"attributeName": iri, "reason": "attribute does not exist"})
                continue
            drop = {i.get("datasetId") for i in nulls}
            old = [i for i in old if i.get("datasetId") not in drop]
            if old:
                doc["attrs"][iri] = old
            else:
                doc["attrs"].pop(iri, None)
                old = None
            if not real:
                result["updated"].append(iri)
                continue
        if old is None:
            doc["attrs"][iri] = real
            result["updated"].append(iri)
            continue
        if no_overwrite:
            known = {i.get("datasetId") for i in old}
            fresh = [i for i in real if i.get("datasetId") not in known]
            if fresh:
                doc["attrs"][iri] = old + fresh
                result["updated"].append(iri)
            else:
                result["notUpdated"].append(
                    {"attributeName": iri, "reason": "attribute exists and noOverwrite is set"}
                )
            continue
        doc["attrs"][iri] = merge_instances(old, real)
        result["updated"].append(iri)


def _merge_instance(
    old: dict[str, Any], new: dict[str, Any], raw: dict[str, Any], ctx: ActiveContext, now: str
) -> dict[str, Any]:
    """Merge-patch of one instance: given fields replace, null/urn:ngsi-ld:null deletes sub-attributes."""
    out = dict(old)
    for key, val in new.items():
        if key in ("createdAt",):
            continue
        if key in INSTANCE_KEYS:
            if key in raw or key in ("modifiedAt",):
                out[key] = val
            continue
        if isinstance(val, dict) and val.get("value") == NULL:
            out.pop(key, None)
        elif key in out and isinstance(out[key], dict) and isinstance(val, dict):
            sub_raw: Any = next((v for k, v in raw.items() if ctx.expand(k) == key), {})
            out[key] = _merge_instance(out[key], val, sub_raw if isinstance(sub_raw, dict) else {}, ctx, now)
        else:
            out[key] = val
    if new.get("type") != old.get("type") and "type" in raw:
        out["type"] = new["type"]
    out["modifiedAt"] = now
    return out


def _merge_doc(
    old: dict[str, Any],
    frag: dict[str, list[dict[str, Any]]],
    types: list[str] | None,
    scope: list[str] | None,
    now: str,
) -> dict[str, Any]:
    doc = copy.deepcopy(old)
    for iri, instances in frag.items():
        for inst in instances:
            is_null = is_null_instance(inst)
            existing = doc["attrs"].get(iri, [])
            match = next((i for i in existing if i.get("datasetId") == inst.get("datasetId")), None)
            if is_null:
                if match is not None:
                    existing = [i for i in existing if i is not match]
                    if existing:
                        doc["attrs"][iri] = existing
                    else:
                        doc["attrs"].pop(iri, None)
                continue
            if match is None:
                doc["attrs"].setdefault(iri, []).append(_drop_nulls(inst))
            else:
                merged = dict(match)
                for key, val in inst.items():
                    if key == "createdAt":
                        continue
                    if key not in INSTANCE_KEYS and isinstance(val, dict) and val.get("value") == NULL:
                        merged.pop(key, None)
                    else:
                        merged[key] = val
                if inst.get("type") != match.get("type"):
                    for k in ("value", "object", "languageMap", "vocab", "json", "valueList", "objectList"):
                        if k not in inst:
                            merged.pop(k, None)
                doc["attrs"][iri] = [merged if i is match else i for i in existing]
    if types:
        doc["type"] = list(dict.fromkeys(doc["type"] + types))
    if scope is not None:
        doc["scope"] = scope
    doc["modifiedAt"] = now
    return doc


def _drop_nulls(inst: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in inst.items() if not (isinstance(v, dict) and v.get("value") == NULL)}


__all__ = ["TwinService", "order_docs", "parse_order_by"]
