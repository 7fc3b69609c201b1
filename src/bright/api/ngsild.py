"""The NGSI-LD API (ETSI GS CIM 009) of a twin node: entities, batches, discovery, @contexts.

Thin: it parses HTTP (media types, Link header, query parameters), calls the twin service and
renders. Every error is an :class:`~bright.twin.errors.NgsiLdError` turned into ProblemDetails.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from bright.api import openapi as oa
from bright.api.http import (
    GEO_JSON,
    JSON,
    JSON_LD,
    accept,
    check_content_type,
    json_response,
    link_context,
    read_json,
)
from bright.twin.context import CORE_CONTEXT_URL, ActiveContext
from bright.twin.entities import ENTITY_KEYS, RenderOptions, check_entity_id, check_name, render_entity
from bright.twin.errors import (
    BadRequestData,
    InvalidRequest,
    NgsiLdError,
    OperationNotSupported,
    ResourceNotFound,
)
from bright.twin.projection import parse_projection
from bright.twin.service import TwinService

router = APIRouter(prefix="/ngsi-ld/v1", tags=["NGSI-LD"])

_KNOWN_OPTIONS = {
    "keyValues",
    "simplified",
    "concise",
    "normalized",
    "sysAttrs",
    "noOverwrite",
    "replace",
    "update",
    "temporalValues",
    "aggregatedValues",
    "audit",
    "splitEntities",
}


def svc(request: Request) -> TwinService:
    return request.app.state.twin  # type: ignore[no-any-return]


def tenant_of(request: Request) -> str:
    t = request.headers.get("ngsild-tenant", "").strip()
    if t and (len(t) > 128 or not all(c.isalnum() or c in "-_.:/" for c in t)):
        raise BadRequestData(f"NGSILD-Tenant {t!r} is not a valid tenant name")
    return t


class Ctx:
    """The request's @context: where it came from and the active context."""

    def __init__(self, url: str | None, raw: Any, active: ActiveContext) -> None:
        self.url = url
        self.raw = raw
        self.active = active

    @property
    def response_url(self) -> str:
        if self.url:
            return self.url
        if isinstance(self.raw, str):
            return self.raw
        return CORE_CONTEXT_URL


def request_context(request: Request, body: Any = None) -> Ctx:
    """The active @context: from the JSON-LD body, the Link header, or the core context."""
    service = svc(request)
    link = link_context(request)
    is_ld = request.headers.get("content-type", "").split(";")[0].strip().lower() == JSON_LD
    if body is not None and request.method in ("POST", "PATCH", "PUT"):
        bodies = body if isinstance(body, list) else [body]
        if is_ld:
            if link:
                raise BadRequestData("a JSON-LD body must not come with a @context Link header")
            for b in bodies:
                if isinstance(b, dict) and "@context" not in b:
                    raise BadRequestData("a JSON-LD (application/ld+json) body must contain @context")
            first = bodies[0] if bodies and isinstance(bodies[0], dict) else {}
            raw = first.get("@context")
            return Ctx(raw if isinstance(raw, str) else None, raw, service.resolve_context(raw))
        for b in bodies:
            if isinstance(b, dict) and "@context" in b:
                raise BadRequestData(
                    "@context in a body is only allowed with Content-Type application/ld+json"
                )
    return Ctx(link, link, service.resolve_context(link))


QUERY_PARAMS = {
    "type",
    "id",
    "idPattern",
    "q",
    "scopeQ",
    "attrs",
    "pick",
    "omit",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "geometryProperty",
    "lang",
    "options",
    "format",
    "limit",
    "offset",
    "count",
    "csf",
    "local",
    "datasetId",
    "join",
    "joinLevel",
    "containedBy",
    "entityMap",
    "expandValues",
    "orderBy",
    "collation",
    "via",
}
RETRIEVE_PARAMS = {
    "type",
    "attrs",
    "pick",
    "omit",
    "geometryProperty",
    "lang",
    "options",
    "format",
    "local",
    "datasetId",
    "join",
    "joinLevel",
    "containedBy",
    "entityMap",
    "expandValues",
    "via",
}
PURGE_PARAMS = {
    "type",
    "id",
    "idPattern",
    "q",
    "scopeQ",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "drop",
    "keep",
    "local",
    "csf",
    "via",
}
WRITE_PARAMS = {"options", "local", "via"}
ATTR_PARAMS = {"options", "datasetId", "deleteAll", "lang", "local", "via"}
DISCOVERY_PARAMS = {"details", "local", "via"}


def allowed(request: Request, names: set[str]) -> None:
    """Reject unknown query parameters (InvalidRequest, as the spec's clause 6.3.20 asks)."""
    unknown = sorted(set(request.query_params.keys()) - names)
    if unknown:
        raise InvalidRequest(f"unknown query parameter(s): {', '.join(unknown)}")


class Params:
    """Query parameters, optionally completed by the members of a POST query body."""

    def __init__(self, request: Request, body: dict[str, Any] | None = None) -> None:
        self._q = request.query_params
        self._body = body or {}

    def getlist(self, name: str) -> list[str]:
        if name in self._body:
            v = self._body[name]
            if isinstance(v, list):
                return [",".join(str(x) for x in v)]
            return [str(v)]
        return self._q.getlist(name)

    def get(self, name: str, default: str | None = None) -> str | None:
        vals = self.getlist(name)
        return vals[0] if vals else default

    def __contains__(self, name: str) -> bool:
        return bool(self.getlist(name))


def render_options(
    request: Request, active: ActiveContext, body: dict[str, Any] | None = None
) -> RenderOptions:
    """Representation options from the query (and a POST query body): format, attrs, pick/omit, joins."""
    params = Params(request, body)
    opts = {o.strip() for v in params.getlist("options") for o in v.split(",") if o.strip()}
    unknown = opts - _KNOWN_OPTIONS
    if unknown:
        raise InvalidRequest(f"unknown option(s) {', '.join(sorted(unknown))}")
    fmt = params.get("format")
    if fmt is None:
        fmt = (
            "keyValues"
            if opts & {"keyValues", "simplified"}
            else "concise"
            if "concise" in opts
            else "normalized"
        )
    if fmt == "simplified":
        fmt = "keyValues"
    if fmt not in ("normalized", "concise", "keyValues"):
        raise InvalidRequest(f"format {fmt!r} is not one of normalized, concise, keyValues, simplified")
    attrs = _csv(params, "attrs")
    for a in attrs:
        check_attr_name(a)
    pick = parse_projection(params.get("pick") or "", "pick") if "pick" in params else None
    omit = parse_projection(params.get("omit") or "", "omit") if "omit" in params else None
    if (pick is not None or omit is not None) and attrs:
        raise BadRequestData("pick/omit and attrs cannot be used together")
    if pick is not None and omit is not None and set(pick) & set(omit):
        raise BadRequestData(f"{sorted(set(pick) & set(omit))[0]!r} is both in pick and omit")
    join = params.get("join")
    if join not in (None, "inline", "flat", "@none"):
        raise BadRequestData(f"join {join!r} is not one of inline, flat, @none")
    level = params.get("joinLevel") or "1"
    if not level.isdigit() or int(level) < 1:
        raise BadRequestData(f"joinLevel {level!r} must be a positive integer")
    ds = _csv(params, "datasetId")
    return RenderOptions(
        fmt=fmt,
        sys_attrs="sysAttrs" in opts,
        attrs=frozenset(active.expand(a) for a in attrs) if attrs else None,
        pick=pick,
        omit=omit,
        join=None if join == "@none" else join,
        join_level=int(level),
        lang=params.get("lang"),
        dataset_ids=frozenset(ds) if ds else None,
    )


def check_attr_name(name: str) -> None:
    if name in ENTITY_KEYS:
        raise BadRequestData(f"{name!r} is an entity member, not an attribute name")
    check_name(name)


def _csv(params: Any, name: str) -> list[str]:
    vals = [x.strip() for v in params.getlist(name) for x in v.split(",")]
    if any(v == "" for v in vals) and vals:
        raise BadRequestData(f"parameter {name} has an empty item")
    return vals


def respond_entities(
    request: Request,
    docs: list[dict[str, Any]],
    ctx: Ctx,
    media: str,
    *,
    headers: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> Response:
    opts = render_options(request, ctx.active, body)
    out = render_with_joins(request, docs, ctx, opts)
    if opts.pick is not None or opts.omit is not None:
        out = [o for o in out if o]
    if media == GEO_JSON:
        params = Params(request, body)
        geoprop = ctx.active.expand(params.get("geometryProperty") or "location")
        by_id = {d["id"]: d for d in docs}
        body_out: Any = {
            "type": "FeatureCollection",
            "features": [_feature(by_id.get(o.get("id"), {}), o, geoprop, ctx) for o in out],
        }
        body_out["@context"] = ctx.response_url
        return json_response(body_out, media=GEO_JSON, headers=headers)
    if media == JSON_LD:
        for o in out:
            o["@context"] = ctx.raw if ctx.raw is not None else CORE_CONTEXT_URL
    return json_response(out, media=media, context_url=ctx.response_url, headers=headers)


def render_with_joins(
    request: Request, docs: list[dict[str, Any]], ctx: Ctx, opts: RenderOptions
) -> list[Any]:
    """Render entities with ``join=inline`` (linked entities nested) or ``flat`` (listed after).

    With ``flat``, linked entities are followed only through the Relationships the projection
    keeps, each rendered with its level's projection (``pick=id,locatedAt{id,name}``).
    """
    if opts.join is None:
        return [render_entity(d, ctx.active, opts) for d in docs]
    links = svc(request).linked(tenant_of(request), docs, opts.join_level)
    if opts.join == "inline":
        return [render_entity(d, ctx.active, opts, links) for d in docs]
    out: list[dict[str, Any]] = []
    seen: set[str] = set()

    def walk(doc: dict[str, Any], o: RenderOptions, depth: int) -> None:
        rendered = render_entity(doc, ctx.active, replace(o, join=None), None, 0)
        if doc["id"] not in seen:
            seen.add(doc["id"])
            out.append(rendered)
        if depth <= 0:
            return
        for iri, insts in doc.get("attrs", {}).items():
            name = ctx.active.compact(iri)
            if name not in rendered:
                continue
            for inst in insts:
                target = links.get(inst.get("object")) if inst.get("type") == "Relationship" else None
                if isinstance(inst.get("object"), str) and target is not None:
                    walk(target, _sub(o, name), depth - 1)

    for d in docs:
        walk(d, opts, opts.join_level)
    return out


def _sub(opts: RenderOptions, name: str) -> RenderOptions:
    pick = opts.pick.get(name) if opts.pick is not None else None
    omit = opts.omit.get(name) if opts.omit is not None else None
    return replace(opts, pick=pick, omit=omit)


def _feature(doc: dict[str, Any], rendered: dict[str, Any], geoprop: str, ctx: Ctx) -> dict[str, Any]:
    geom = None
    for inst in doc.get("attrs", {}).get(geoprop, []):
        if inst.get("type") == "GeoProperty":
            geom = inst.get("value")
            break
    props = {k: v for k, v in rendered.items() if k != "id"}
    return {"id": doc["id"], "type": "Feature", "geometry": geom, "properties": props}


# --- entities -----------------------------------------------------------------------------------------


@router.patch("/entities")
@router.put("/entities")
def entity_id_missing(request: Request) -> Response:
    raise BadRequestData("the entity id is missing from the URL")


@router.post("/entities", status_code=201, openapi_extra=oa.CREATE)
async def create_entity(request: Request) -> Response:
    allowed(request, WRITE_PARAMS)
    check_content_type(request)
    body = await read_json(request, svc(request).settings.max_body_bytes)
    if not isinstance(body, dict) or not body:
        raise InvalidRequest("an entity must be a non-empty JSON object")
    ctx = request_context(request, body)
    eid = svc(request).create_entity(tenant_of(request), body, ctx.active)
    headers = {"Location": f"/ngsi-ld/v1/entities/{eid}"}
    if tenant_of(request):
        headers["NGSILD-Tenant"] = tenant_of(request)
    return Response(status_code=201, headers=headers)


@router.get("/entities", openapi_extra=oa.QUERY)
def query_entities(request: Request) -> Response:
    allowed(request, QUERY_PARAMS)
    media = accept(request)
    ctx = request_context(request)
    docs, count = svc(request).query_from_params(tenant_of(request), request.query_params, ctx.active)
    headers = {"NGSILD-Results-Count": str(count)} if count is not None else None
    return respond_entities(request, docs, ctx, media, headers=headers)


@router.delete("/entities", status_code=204, openapi_extra=oa.QUERY)
def purge_entities(request: Request) -> Response:
    allowed(request, PURGE_PARAMS)
    ctx = request_context(request)
    p = request.query_params
    keep, drop = _csv(p, "keep"), _csv(p, "drop")
    if keep and drop:
        raise BadRequestData("keep and drop cannot be used together")
    svc(request).purge_from_params(tenant_of(request), p, ctx.active, keep=keep or None, drop=drop or None)
    return Response(status_code=204)


@router.get("/entities/{entity_id:path}/attrs/{attr}")
def retrieve_attribute(request: Request, entity_id: str, attr: str) -> Response:
    allowed(request, RETRIEVE_PARAMS)
    media = accept(request, geo=False)
    ctx = request_context(request)
    doc = svc(request).get_entity(tenant_of(request), entity_id)
    iri = ctx.active.expand(attr)
    if iri not in doc.get("attrs", {}):
        raise ResourceNotFound(f"entity {entity_id} has no attribute {attr}")
    opts = render_options(request, ctx.active)
    rendered = render_entity({**doc, "attrs": {iri: doc["attrs"][iri]}}, ctx.active, opts)
    return json_response(rendered.get(attr, rendered), media=media, context_url=ctx.response_url)


@router.get("/entities/{entity_id:path}", openapi_extra=oa.RETRIEVE)
def retrieve_entity(request: Request, entity_id: str) -> Response:
    if entity_id.endswith("/attrs"):
        raise BadRequestData("an attribute name is missing")
    allowed(request, RETRIEVE_PARAMS)
    media = accept(request)
    ctx = request_context(request)
    check_entity_id(entity_id)
    opts = render_options(request, ctx.active)
    doc = svc(request).get_entity(tenant_of(request), entity_id)
    if opts.attrs is not None and not any(a in doc.get("attrs", {}) for a in opts.attrs):
        raise ResourceNotFound(f"entity {entity_id} has none of the requested attributes")
    rendered = render_with_joins(request, [doc], ctx, opts)
    if not rendered[0]:
        raise ResourceNotFound(f"the projection leaves nothing of entity {entity_id}")
    if opts.join == "flat" and len(rendered) > 1:
        if media == JSON_LD:
            for o in rendered:
                o["@context"] = ctx.raw if ctx.raw is not None else CORE_CONTEXT_URL
        return json_response(rendered, media=media, context_url=ctx.response_url)
    out = rendered[0]
    if media == GEO_JSON:
        geoprop = ctx.active.expand(request.query_params.get("geometryProperty", "location"))
        feat = _feature(doc, out, geoprop, ctx)
        feat["@context"] = ctx.response_url
        return json_response(feat, media=GEO_JSON)
    if media == JSON_LD:
        out["@context"] = ctx.raw if ctx.raw is not None else CORE_CONTEXT_URL
    return json_response(out, media=media, context_url=ctx.response_url)


@router.put("/entities/{entity_id:path}/attrs/{attr}", status_code=204)
async def replace_attribute(request: Request, entity_id: str, attr: str) -> Response:
    allowed(request, ATTR_PARAMS)
    check_content_type(request)
    body = await read_json(request, svc(request).settings.max_body_bytes)
    ctx = request_context(request, body)
    svc(request).replace_attribute(tenant_of(request), entity_id, attr, body, ctx.active)
    return Response(status_code=204)


@router.patch("/entities/{entity_id:path}/attrs/{attr}", status_code=204)
async def partial_attribute_update(request: Request, entity_id: str, attr: str) -> Response:
    allowed(request, ATTR_PARAMS)
    check_content_type(request, patch=True)
    body = await read_json(request, svc(request).settings.max_body_bytes)
    ctx = request_context(request, body)
    svc(request).partial_update_attribute(tenant_of(request), entity_id, attr, body, ctx.active)
    return Response(status_code=204)


@router.delete("/entities/{entity_id:path}/attrs/{attr}", status_code=204)
def delete_attribute(request: Request, entity_id: str, attr: str) -> Response:
    allowed(request, ATTR_PARAMS)
    ctx = request_context(request)
    p = request.query_params
    delete_all = p.get("deleteAll", "false").lower() == "true"
    svc(request).delete_attribute(
        tenant_of(request), entity_id, attr, ctx.active, dataset_id=p.get("datasetId"), delete_all=delete_all
    )
    return Response(status_code=204)


@router.post("/entities/{entity_id:path}/attrs", openapi_extra=oa.FRAGMENT_BODY)
async def append_attributes(request: Request, entity_id: str) -> Response:
    allowed(request, ATTR_PARAMS)
    check_content_type(request)
    body = await read_json(request, svc(request).settings.max_body_bytes)
    if not isinstance(body, dict):
        raise BadRequestData("the attributes must be a JSON object")
    ctx = request_context(request, body)
    opts = {o for v in request.query_params.getlist("options") for o in v.split(",")}
    result = svc(request).append_attributes(
        tenant_of(request), entity_id, body, ctx.active, no_overwrite="noOverwrite" in opts
    )
    return _update_result(result, ctx)


@router.patch("/entities/{entity_id:path}/attrs", openapi_extra=oa.FRAGMENT_BODY)
async def update_attributes(request: Request, entity_id: str) -> Response:
    allowed(request, ATTR_PARAMS)
    check_content_type(request)
    body = await read_json(request, svc(request).settings.max_body_bytes)
    if not isinstance(body, dict):
        raise BadRequestData("the attributes must be a JSON object")
    ctx = request_context(request, body)
    result = svc(request).update_attributes(tenant_of(request), entity_id, body, ctx.active)
    return _update_result(result, ctx)


def _update_result(result: dict[str, Any], ctx: Ctx) -> Response:
    if result["notUpdated"]:
        return json_response(result, status=207, context_url=ctx.response_url)
    return Response(status_code=204)


@router.put("/entities/{entity_id:path}", status_code=204, openapi_extra=oa.CREATE)
async def replace_entity(request: Request, entity_id: str) -> Response:
    allowed(request, WRITE_PARAMS)
    check_content_type(request)
    body = await read_json(request, svc(request).settings.max_body_bytes)
    if not isinstance(body, dict):
        raise BadRequestData("an entity must be a JSON object")
    ctx = request_context(request, body)
    svc(request).replace_entity(tenant_of(request), entity_id, body, ctx.active)
    return Response(status_code=204)


@router.patch("/entities/{entity_id:path}", status_code=204, openapi_extra=oa.FRAGMENT_BODY)
async def merge_entity(request: Request, entity_id: str) -> Response:
    allowed(request, WRITE_PARAMS)
    check_content_type(request, patch=True)
    body = await read_json(request, svc(request).settings.max_body_bytes)
    if not isinstance(body, dict):
        raise BadRequestData("a merge fragment must be a JSON object")
    ctx = request_context(request, body)
    svc(request).merge_entity(tenant_of(request), entity_id, body, ctx.active)
    return Response(status_code=204)


@router.delete("/entities/{entity_id:path}", status_code=204, openapi_extra=oa.PLAIN)
def delete_entity(request: Request, entity_id: str) -> Response:
    if entity_id.endswith("/attrs"):
        raise OperationNotSupported(
            "DELETE needs an attribute name: /entities/{id}/attrs/{attrId}", status=405
        )
    allowed(request, WRITE_PARAMS)
    check_entity_id(entity_id)
    svc(request).delete_entity(tenant_of(request), entity_id)
    return Response(status_code=204)


def batch_contexts(request: Request, body: list[Any]) -> tuple[Ctx, list[Any]]:
    """The @context of each batch item: its own (JSON-LD) or the Link header's (JSON).

    An item that breaks the media-type rules gets an error in its slot instead of failing the
    whole batch, so the result is a 207 naming it.
    """
    service = svc(request)
    link = link_context(request)
    is_ld = request.headers.get("content-type", "").split(";")[0].strip().lower() == JSON_LD
    if is_ld and link:
        raise BadRequestData("a JSON-LD body must not come with a @context Link header")
    base = Ctx(link, link, service.resolve_context(link))
    out: list[Any] = []
    for item in body:
        if not isinstance(item, dict):
            out.append(BadRequestData("a batch item must be a JSON object"))
        elif is_ld and "@context" not in item:
            out.append(BadRequestData("a JSON-LD (application/ld+json) item must contain @context"))
        elif not is_ld and "@context" in item:
            out.append(
                BadRequestData("@context in a body is only allowed with Content-Type application/ld+json")
            )
        elif is_ld:
            try:
                out.append(service.resolve_context(item["@context"]))
            except NgsiLdError as err:
                out.append(err)
        else:
            out.append(base.active)
    first = next((b for b in body if isinstance(b, dict) and "@context" in b), None)
    if is_ld and first is not None:
        raw = first["@context"]
        with contextlib.suppress(NgsiLdError):
            base = Ctx(raw if isinstance(raw, str) else None, raw, service.resolve_context(raw))
    return base, out


# --- batch operations ----------------------------------------------------------------------------------


@router.post("/entityOperations/{operation}", openapi_extra=oa.BATCH)
async def batch_operation(request: Request, operation: str) -> Response:
    service = svc(request)
    if operation == "query":
        check_content_type(request)
        body = await read_json(request, service.settings.max_body_bytes)
        if not isinstance(body, dict):
            raise BadRequestData("a query must be a JSON object")
        ctx = request_context(request, body)
        media = accept(request)
        docs, count = service.query_from_body(tenant_of(request), body, request.query_params, ctx.active)
        headers = {"NGSILD-Results-Count": str(count)} if count is not None else None
        return respond_entities(request, docs, ctx, media, headers=headers, body=body)
    if operation not in ("create", "upsert", "update", "delete", "merge"):
        raise ResourceNotFound(f"no batch operation {operation!r}")
    check_content_type(request)
    body = await read_json(request, service.settings.max_body_bytes)
    if not isinstance(body, list):
        raise BadRequestData("a batch operation takes a JSON array")
    if not body:
        raise BadRequestData("a batch operation needs at least one item")
    allowed(request, WRITE_PARAMS)
    ctx, contexts = (
        batch_contexts(request, body) if operation != "delete" else (request_context(request), None)
    )
    opts = {o for v in request.query_params.getlist("options") for o in v.split(",")}
    tenant = tenant_of(request)
    if operation == "create":
        res = service.batch_create(tenant, body, ctx.active, contexts=contexts)
        if not res["errors"]:
            return json_response(res["success"], status=201)
    elif operation == "upsert":
        res = service.batch_upsert(tenant, body, ctx.active, replace="update" not in opts, contexts=contexts)
        if not res["errors"]:
            created = res.pop("created")
            return json_response(created, status=201) if created else Response(status_code=204)
        res.pop("created", None)
    elif operation == "update":
        res = service.batch_update(
            tenant, body, ctx.active, no_overwrite="noOverwrite" in opts, contexts=contexts
        )
        if not res["errors"]:
            return Response(status_code=204)
    elif operation == "merge":
        res = service.batch_merge(tenant, body, ctx.active, contexts=contexts)
        if not res["errors"]:
            return Response(status_code=204)
    else:
        res = service.batch_delete(tenant, body)
        if not res["errors"]:
            return Response(status_code=204)
    return json_response(res, status=207)


# --- discovery --------------------------------------------------------------------------------------


def _discovery_response(request: Request, body: Any, ctx: Ctx) -> Response:
    media = accept(request, geo=False)
    if media == JSON_LD and isinstance(body, dict):
        body = {"@context": ctx.raw if ctx.raw is not None else CORE_CONTEXT_URL, **body}
    return json_response(body, media=media, context_url=ctx.response_url)


@router.get("/types")
def list_types(request: Request) -> Response:
    allowed(request, DISCOVERY_PARAMS)
    ctx = request_context(request)
    details = request.query_params.get("details", "false").lower() == "true"
    return _discovery_response(
        request, svc(request).types(tenant_of(request), ctx.active, details=details), ctx
    )


@router.get("/types/{type_name:path}")
def type_info(request: Request, type_name: str) -> Response:
    allowed(request, DISCOVERY_PARAMS)
    ctx = request_context(request)
    return _discovery_response(
        request, svc(request).type_info(tenant_of(request), type_name, ctx.active), ctx
    )


@router.get("/attributes")
def list_attributes(request: Request) -> Response:
    allowed(request, DISCOVERY_PARAMS)
    ctx = request_context(request)
    details = request.query_params.get("details", "false").lower() == "true"
    body = svc(request).attributes(tenant_of(request), ctx.active, details=details)
    return _discovery_response(request, body, ctx)


@router.get("/attributes/{attr:path}")
def attribute_info(request: Request, attr: str) -> Response:
    allowed(request, DISCOVERY_PARAMS)
    ctx = request_context(request)
    return _discovery_response(
        request, svc(request).attribute_info(tenant_of(request), attr, ctx.active), ctx
    )


# --- @contexts ------------------------------------------------------------------------------------


@router.get("/jsonldContexts")
def list_contexts(request: Request) -> Response:
    p = request.query_params
    details = p.get("details", "false").lower() == "true"
    kind = p.get("kind")
    if kind is not None and kind not in ("Hosted", "Cached", "ImplicitlyCreated"):
        raise BadRequestData(f"kind {kind!r} is not Hosted, Cached or ImplicitlyCreated")
    return json_response(svc(request).contexts.list(details=details, kind=kind))


@router.post("/jsonldContexts", status_code=201)
async def add_context(request: Request) -> Response:
    body = await read_json(request, svc(request).settings.max_body_bytes)
    if not isinstance(body, dict) or "@context" not in body:
        raise BadRequestData("a context document must be a JSON object with @context")
    if not isinstance(body["@context"], (dict, list)):
        raise BadRequestData("@context of a hosted context must be an object or an array")
    url = svc(request).contexts.add(body)
    svc(request).resolver.clear()
    return Response(status_code=201, headers={"Location": url})


@router.get("/jsonldContexts/{context_id:path}")
def get_context(request: Request, context_id: str) -> Response:
    p = request.query_params
    details = p.get("details", "false").lower() == "true"
    body = svc(request).contexts.get(context_id, details=details)
    return json_response(body, media=JSON if details else JSON_LD)


@router.delete("/jsonldContexts/{context_id:path}", status_code=204)
def delete_context(request: Request, context_id: str) -> Response:
    reload = request.query_params.get("reload", "false").lower() == "true"
    if reload and request.query_params.get("kind"):
        raise InvalidRequest("reload and kind cannot be combined")
    svc(request).contexts.delete(context_id, reload=reload)
    svc(request).resolver.clear()
    return Response(status_code=204)
