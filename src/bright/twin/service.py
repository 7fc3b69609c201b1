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
    merge_instances,
    now_iso,
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
from bright.twin.store import EntityQuery, TwinStore

MAX_LIMIT = 1000
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
            lookup=self.contexts.lookup, context_dir=self.settings.context_dir, fetch=self.settings.fetch_contexts
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

        def change(doc: dict[str, Any]) -> dict[str, Any]:
            doc = copy.deepcopy(doc)
            _append(doc, attrs, ctx, result, no_overwrite=no_overwrite)
            if types:
                doc["type"] = list(dict.fromkeys(doc["type"] + types))
            doc["modifiedAt"] = now
            self._validate(doc)
            return doc

        self.store.modify(tenant, eid, change)
        return result

    def update_attributes(self, tenant: str, eid: str, body: dict[str, Any], ctx: ActiveContext) -> dict[str, Any]:
        check_entity_id(eid)
        now = now_iso()
        attrs = parse_attributes(body, ctx, now)
        result: dict[str, Any] = {"updated": [], "notUpdated": []}

        def change(doc: dict[str, Any]) -> dict[str, Any]:
            doc = copy.deepcopy(doc)
            for iri, instances in attrs.items():
                name = ctx.compact(iri)
                old = doc["attrs"].get(iri)
                if old is None:
                    result["notUpdated"].append({"attributeName": name, "reason": "attribute does not exist"})
                    continue
                known = {i.get("datasetId") for i in old}
                missing = [i for i in instances if i.get("datasetId") not in known]
                if missing:
                    result["notUpdated"].append(
                        {"attributeName": name, "reason": f"no instance with datasetId {missing[0].get('datasetId')}"}
                    )
                    continue
                doc["attrs"][iri] = merge_instances(old, instances)
                result["updated"].append(name)
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
            frag = dict(body)
            if "type" not in frag:
                frag["type"] = target["type"]
            parsed = parse_instance(frag, ctx, attr, now, allow_null=True)
            merged = _merge_instance(target, parsed, body, ctx, now)
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
            insts = doc["attrs"].get(iri)
            if not insts:
                raise ResourceNotFound(f"entity {eid} has no attribute {attr}")
            if delete_all:
                keep: list[dict[str, Any]] = []
            else:
                keep = [i for i in insts if i.get("datasetId") != dataset_id]
                if len(keep) == len(insts):
                    raise ResourceNotFound(f"attribute {attr} of {eid} has no instance with datasetId {dataset_id}")
            if keep:
                doc["attrs"][iri] = keep
            else:
                del doc["attrs"][iri]
            doc["modifiedAt"] = now
            return doc

        self.store.modify(tenant, eid, change)

    # --- batches -------------------------------------------------------------------------------
    def _parse_batch(
        self, body: list[Any], ctx: ActiveContext, now: str, **kw: Any
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[Any]]:
        docs: list[dict[str, Any]] = []
        raws: list[Any] = []
        errors: list[dict[str, Any]] = []
        seen: set[str] = set()
        for raw in body:
            eid = raw.get("id") if isinstance(raw, dict) else None
            try:
                doc = parse_entity(raw, ctx, now, **kw)
                if kw.get("require_type", True):
                    self._validate(doc)
                if doc["id"] in seen:
                    raise BadRequestData(f"entity {doc['id']} appears twice in the batch")
            except NgsiLdError as err:
                errors.append({"entityId": eid if isinstance(eid, str) else str(eid), "error": err.problem()})
                continue
            seen.add(doc["id"])
            docs.append(doc)
            raws.append(raw)
        return docs, errors, raws

    def batch_create(self, tenant: str, body: list[Any], ctx: ActiveContext) -> dict[str, Any]:
        docs, errors, _ = self._parse_batch(body, ctx, now_iso())
        existing = self.store.get_many(tenant, [d["id"] for d in docs])
        new = [d for d in docs if d["id"] not in existing]
        for d in docs:
            if d["id"] in existing:
                errors.append(
                    {"entityId": d["id"], "error": AlreadyExists(f"entity {d['id']} already exists").problem()}
                )
        self.store.write_batch(tenant, new, merge=None)
        return {"success": [d["id"] for d in new], "errors": errors}

    def batch_upsert(self, tenant: str, body: list[Any], ctx: ActiveContext, *, replace: bool = True) -> dict[str, Any]:
        now = now_iso()
        docs, errors, _ = self._parse_batch(body, ctx, now)

        def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
            doc = copy.deepcopy(old)
            _append(doc, new["attrs"], ctx, {"updated": [], "notUpdated": []}, no_overwrite=False)
            doc["type"] = list(dict.fromkeys(doc["type"] + new["type"]))
            doc["modifiedAt"] = now
            return doc

        created = self.store.write_batch(tenant, docs, merge=None if replace else merge)
        return {"success": [d["id"] for d in docs], "errors": errors, "created": created}

    def batch_update(
        self, tenant: str, body: list[Any], ctx: ActiveContext, *, no_overwrite: bool = False
    ) -> dict[str, Any]:
        now = now_iso()
        docs, errors, _ = self._parse_batch(body, ctx, now, require_type=False)
        existing = self.store.get_many(tenant, [d["id"] for d in docs])
        ok: list[dict[str, Any]] = []
        for d in docs:
            if d["id"] not in existing:
                errors.append({"entityId": d["id"], "error": ResourceNotFound(f"entity {d['id']} not found").problem()})
            else:
                ok.append(d)

        def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
            doc = copy.deepcopy(old)
            _append(doc, new["attrs"], ctx, {"updated": [], "notUpdated": []}, no_overwrite=no_overwrite)
            doc["type"] = list(dict.fromkeys(doc["type"] + new["type"]))
            doc["modifiedAt"] = now
            return doc

        self.store.write_batch(tenant, ok, merge=merge)
        return {"success": [d["id"] for d in ok], "errors": errors}

    def batch_merge(self, tenant: str, body: list[Any], ctx: ActiveContext) -> dict[str, Any]:
        now = now_iso()
        errors: list[dict[str, Any]] = []
        frags: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for raw in body:
            eid = raw.get("id") if isinstance(raw, dict) else None
            try:
                if not isinstance(raw, dict):
                    raise BadRequestData("a batch item must be a JSON object")
                check_entity_id(eid)
                attrs = parse_attributes(raw, ctx, now, allow_null=True)
                types = parse_types(raw["type"], ctx) if "type" in raw else []
                frags.append(({"id": eid, "type": types, "attrs": attrs, "createdAt": now, "modifiedAt": now}, raw))
            except NgsiLdError as err:
                errors.append({"entityId": str(eid), "error": err.problem()})
        existing = self.store.get_many(tenant, [f["id"] for f, _ in frags])
        ok = []
        for f, raw in frags:
            if f["id"] not in existing:
                errors.append({"entityId": f["id"], "error": ResourceNotFound(f"entity {f['id']} not found").problem()})
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
                ids.append(check_entity_id(eid))
            except NgsiLdError as err:
                errors.append({"entityId": str(eid), "error": err.problem()})
        found = self.store.delete_many(tenant, ids)
        for eid in ids:
            if eid not in found:
                errors.append({"entityId": eid, "error": ResourceNotFound(f"entity {eid} not found").problem()})
        return {"success": [e for e in ids if e in found], "errors": errors}

    # --- queries -------------------------------------------------------------------------------
    def build_query(self, params: Mapping[str, Any], ctx: ActiveContext, *, require_filter: bool = True) -> EntityQuery:
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
            and not any((eq.ids, eq.id_pattern, eq.type_query, eq.q, eq.attrs, eq.geo, eq.scope_q))
        ):
            raise BadRequestData("a query needs at least one of type, id, idPattern, attrs, q, scopeQ or a geo-query")
        return eq

    def query_from_params(
        self, tenant: str, params: Mapping[str, Any], ctx: ActiveContext
    ) -> tuple[list[dict[str, Any]], int | None]:
        if not self.store.tenant_exists(tenant):
            raise ResourceNotFound(f"tenant {tenant!r} not found")
        eq = self.build_query(params, ctx)
        count = str(params.get("count", "false")).lower() == "true"
        return self.store.query(tenant, eq, count=count)

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
                for d in self.query_from_body(tenant, sub, {**params, "limit": str(MAX_LIMIT), "offset": "0"}, ctx)[0]:
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

    def purge_from_params(self, tenant: str, params: Mapping[str, Any], ctx: ActiveContext) -> int:
        if not self.store.tenant_exists(tenant):
            raise ResourceNotFound(f"tenant {tenant!r} not found")
        eq = self.build_query(params, ctx)
        return self.store.delete_matching(tenant, eq)

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
    if n < 0 or (name == "limit" and n == 0 and False):
        raise BadRequestData(f"{name} must be a non-negative integer, got {value!r}")
    return n


def _append(
    doc: dict[str, Any],
    attrs: dict[str, list[dict[str, Any]]],
    ctx: ActiveContext,
    result: dict[str, Any],
    *,
    no_overwrite: bool,
) -> None:
    for iri, instances in attrs.items():
        name = ctx.compact(iri)
        old = doc["attrs"].get(iri)
        if old is None:
            doc["attrs"][iri] = instances
            result["updated"].append(name)
            continue
        if no_overwrite:
            known = {i.get("datasetId") for i in old}
            fresh = [i for i in instances if i.get("datasetId") not in known]
            if fresh:
                doc["attrs"][iri] = old + fresh
                result["updated"].append(name)
            else:
                result["notUpdated"].append({"attributeName": name, "reason": "attribute exists and noOverwrite is set"})
            continue
        doc["attrs"][iri] = merge_instances(old, instances)
        result["updated"].append(name)


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
            sub_raw = next((v for k, v in raw.items() if ctx.expand(k) == key), {})
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
            is_null = inst.get("value") == NULL or inst.get("object") == NULL
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


__all__ = ["ENTITY_KEYS", "TwinService"]
