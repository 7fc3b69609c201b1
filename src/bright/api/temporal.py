"""The NGSI-LD temporal API (``/ngsi-ld/v1/temporal/...``): history of the twin's attributes.

Creating or updating a temporal representation stores every instance in the history and brings
the entity's current state (the latest instance of each attribute and dataset) into the core
store, so the core API and the temporal API describe the same twin.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import Response

from bright.api import openapi as oa
from bright.api.http import JSON_LD, accept, check_content_type, json_response, read_json
from bright.api.ngsild import Ctx, Params, allowed, request_context, svc, tenant_of
from bright.twin.context import CORE_CONTEXT_URL, ActiveContext
from bright.twin.entities import (
    RenderOptions,
    check_entity_id,
    check_name,
    is_uri,
    now_iso,
    parse_attribute,
    parse_entity,
    render_instance,
)
from bright.twin.errors import BadRequestData, InvalidRequest, ResourceNotFound
from bright.twin.projection import parse_projection
from bright.twin.service import TwinService
from bright.twin.temporal import AGGR_METHODS, TemporalStore, TimeFilter, aggregate_instances, canonical_time

router = APIRouter(prefix="/ngsi-ld/v1/temporal", tags=["NGSI-LD temporal"])

TEMPORAL_QUERY_PARAMS = {
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
    "timerel",
    "timeAt",
    "endTimeAt",
    "timeproperty",
    "lastN",
    "options",
    "format",
    "aggrMethods",
    "aggrPeriodDuration",
    "limit",
    "offset",
    "count",
    "lang",
    "local",
    "csf",
    "datasetId",
    "via",
    "orderBy",
    "join",
    "joinLevel",
}
VALUES_KEY = {
    "Property": ("values", "value"),
    "GeoProperty": ("values", "value"),
    "Relationship": ("objects", "object"),
    "LanguageProperty": ("languageMaps", "languageMap"),
    "VocabularyProperty": ("vocabs", "vocab"),
    "JsonProperty": ("jsons", "json"),
    "ListProperty": ("valueLists", "valueList"),
    "ListRelationship": ("objectLists", "objectList"),
}


def temporal(request: Request) -> TemporalStore:
    return request.app.state.temporal  # type: ignore[no-any-return]


# --- writes ---------------------------------------------------------------------------------------


def _latest(attrs: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The current state: the most recent instance of each attribute and datasetId."""
    out: dict[str, list[dict[str, Any]]] = {}
    for iri, insts in attrs.items():
        best: dict[Any, dict[str, Any]] = {}
        for inst in insts:
            ds = inst.get("datasetId")
            t = inst.get("observedAt") or ""
            if ds not in best or t >= (best[ds].get("observedAt") or ""):
                best[ds] = inst
        out[iri] = list(best.values())
    return out


def write_temporal(
    service: TwinService,
    store: TemporalStore,
    tenant: str,
    body: dict[str, Any],
    ctx: ActiveContext,
    now: str,
) -> bool:
    """Store a temporal representation; returns True when the entity was created."""
    raw_attrs = {
        k: (v if isinstance(v, list) else [v])
        for k, v in body.items()
        if k not in ("id", "type", "@context", "scope")
    }
    history: dict[str, list[dict[str, Any]]] = {}
    for name, items in raw_attrs.items():
        check_name(name)
        instances = [parse_attribute(it, ctx, name, now)[0] for it in items]
        history[ctx.expand(name)] = instances
    base = {k: body[k] for k in ("id", "type", "scope") if k in body}
    doc = parse_entity(base, ctx, now, require_type="type" in body)
    doc["attrs"] = _latest(history)
    existing = service.store.get(tenant, doc["id"])
    if existing is None:
        if not doc.get("type"):
            raise BadRequestData(f"temporal entity {doc['id']} does not exist and has no type")
        service.store.write_batch(tenant, [doc], merge=None)
    else:
        service.store.modify(tenant, doc["id"], lambda old: _merge_current(old, doc, now))
    store.add(tenant, doc["id"], history, now)
    return existing is None


def _merge_current(old: dict[str, Any], new: dict[str, Any], now: str) -> dict[str, Any]:
    doc = {**old, "attrs": dict(old["attrs"]), "modifiedAt": now}
    doc["type"] = list(dict.fromkeys(old["type"] + new.get("type", [])))
    for iri, insts in new["attrs"].items():
        by_ds = {i.get("datasetId"): i for i in doc["attrs"].get(iri, [])}
        for inst in insts:
            prev = by_ds.get(inst.get("datasetId"))
            if prev is None or (inst.get("observedAt") or "") >= (prev.get("observedAt") or ""):
                by_ds[inst.get("datasetId")] = inst
        doc["attrs"][iri] = list(by_ds.values())
    return doc


@router.post("/entities", status_code=201, openapi_extra=oa.CREATE)
async def create_temporal(request: Request) -> Response:
    allowed(request, {"local", "via"})
    check_content_type(request)
    body = await read_json(request, svc(request).settings.max_body_bytes)
    if not isinstance(body, dict) or not body:
        raise InvalidRequest("a temporal entity must be a non-empty JSON object")
    ctx = request_context(request, body)
    if "id" not in body:
        raise BadRequestData("temporal entity without id")
    check_entity_id(body["id"])
    created = write_temporal(svc(request), temporal(request), tenant_of(request), body, ctx.active, now_iso())
    if created:
        return Response(status_code=201, headers={"Location": f"/ngsi-ld/v1/temporal/entities/{body['id']}"})
    return Response(status_code=204)


@router.post("/entities/{entity_id:path}/attrs", status_code=204, openapi_extra=oa.FRAGMENT_BODY)
async def append_temporal_attrs(request: Request, entity_id: str) -> Response:
    allowed(request, {"options", "local", "via"})
    check_content_type(request)
    check_entity_id(entity_id)
    body = await read_json(request, svc(request).settings.max_body_bytes)
    if not isinstance(body, dict):
        raise BadRequestData("the attributes must be a JSON object")
    ctx = request_context(request, body)
    tenant = tenant_of(request)
    if svc(request).store.get(tenant, entity_id) is None:
        raise ResourceNotFound(f"temporal entity {entity_id} not found")
    write_temporal(svc(request), temporal(request), tenant, {**body, "id": entity_id}, ctx.active, now_iso())
    return Response(status_code=204)


@router.delete("/entities/{entity_id:path}/attrs/{attr}/{instance_id:path}", status_code=204)
def delete_temporal_instance(request: Request, entity_id: str, attr: str, instance_id: str) -> Response:
    allowed(request, {"local", "via"})
    _check_instance_path(entity_id, attr, instance_id)
    ctx = request_context(request)
    _require_entity(request, entity_id)
    temporal(request).delete_instance(tenant_of(request), entity_id, ctx.active.expand(attr), instance_id)
    return Response(status_code=204)


@router.patch("/entities/{entity_id:path}/attrs/{attr}/{instance_id:path}", status_code=204)
async def modify_temporal_instance(request: Request, entity_id: str, attr: str, instance_id: str) -> Response:
    allowed(request, {"local", "via"})
    check_content_type(request)
    _check_instance_path(entity_id, attr, instance_id)
    body = await read_json(request, svc(request).settings.max_body_bytes)
    if not isinstance(body, dict):
        raise BadRequestData("the instance fragment must be a JSON object")
    ctx = request_context(request, body)
    _require_entity(request, entity_id)
    frag = {k: v for k, v in body.items() if k != "@context"}
    value = frag.get(attr, frag)
    if isinstance(value, list):
        value = value[0] if value else {}
    inst = parse_attribute(value, ctx.active, attr, now_iso())[0]
    temporal(request).modify_instance(
        tenant_of(request), entity_id, ctx.active.expand(attr), instance_id, inst, now_iso()
    )
    return Response(status_code=204)


def _check_instance_path(entity_id: str, attr: str, instance_id: str) -> None:
    check_entity_id(entity_id)
    check_name(attr)
    if not is_uri(instance_id):
        raise BadRequestData(f"instanceId {instance_id!r} is not a URI")


@router.delete("/entities/{entity_id:path}/attrs/{attr}", status_code=204)
def delete_temporal_attr(request: Request, entity_id: str, attr: str) -> Response:
    allowed(request, {"datasetId", "deleteAll", "local", "via"})
    check_entity_id(entity_id)
    check_name(attr)
    ctx = request_context(request)
    tenant = tenant_of(request)
    _require_entity(request, entity_id)
    p = request.query_params
    iri = ctx.active.expand(attr)
    n = temporal(request).delete_attribute(
        tenant, entity_id, iri, dataset_id=p.get("datasetId"), delete_all=p.get("deleteAll") == "true"
    )
    if n == 0:
        raise ResourceNotFound(f"temporal entity {entity_id} has no history of {attr}")
    return Response(status_code=204)


@router.delete("/entities/{entity_id:path}", status_code=204)
def delete_temporal_entity(request: Request, entity_id: str) -> Response:
    allowed(request, {"local", "via"})
    check_entity_id(entity_id)
    tenant = tenant_of(request)
    _require_entity(request, entity_id)
    temporal(request).delete_entity(tenant, entity_id)
    with contextlib.suppress(ResourceNotFound):
        svc(request).store.delete(tenant, entity_id)
    return Response(status_code=204)


def _require_entity(request: Request, entity_id: str) -> None:
    tenant = tenant_of(request)
    if svc(request).store.get(tenant, entity_id) is None and not temporal(request).has_history(
        tenant, entity_id
    ):
        raise ResourceNotFound(f"temporal entity {entity_id} not found")


# --- reads ----------------------------------------------------------------------------------------


class TemporalOptions:
    """The representation asked for: normalized, temporalValues or aggregatedValues (+ methods)."""

    def __init__(self, params: Params, active: ActiveContext) -> None:
        opts = {o.strip() for v in params.getlist("options") for o in v.split(",") if o.strip()}
        fmt = params.get("format")
        unknown = opts - {
            "temporalValues",
            "aggregatedValues",
            "sysAttrs",
            "keyValues",
            "simplified",
            "concise",
            "normalized",
            "audit",
        }
        if unknown:
            raise InvalidRequest(f"unknown option(s) {', '.join(sorted(unknown))}")
        if fmt not in (None, "normalized", "temporalValues", "simplified", "aggregatedValues", "concise"):
            raise InvalidRequest(f"format {fmt!r} is not normalized, temporalValues or aggregatedValues")
        if fmt is not None:  # format wins over options
            self.values = fmt in ("temporalValues", "simplified")
            self.aggregated = fmt == "aggregatedValues"
        else:
            self.values = bool(opts & {"temporalValues", "keyValues", "simplified"})
            self.aggregated = "aggregatedValues" in opts
        self.sys_attrs = "sysAttrs" in opts
        self.methods: list[str] = []
        self.period: str | None = None
        if self.aggregated:
            raw = params.get("aggrMethods")
            if not raw:
                raise BadRequestData("aggregatedValues needs aggrMethods")
            self.methods = [m.strip() for m in raw.split(",")]
            bad = [m for m in self.methods if m not in AGGR_METHODS]
            if bad:
                raise BadRequestData(f"aggrMethods {bad[0]!r} is not one of {', '.join(AGGR_METHODS)}")
            self.period = params.get("aggrPeriodDuration") or None
        last_n = params.get("lastN")
        if last_n is not None and (not last_n.isdigit() or int(last_n) < 1):
            raise BadRequestData(f"lastN {last_n!r} must be a positive integer")
        self.last_n = int(last_n) if last_n is not None else None
        self.when = TimeFilter.parse(
            params.get("timerel"), params.get("timeAt"), params.get("endTimeAt"), params.get("timeproperty")
        )
        attrs = [a.strip() for v in params.getlist("attrs") for a in v.split(",") if a.strip()]
        self.attrs = {active.expand(a) for a in attrs} if attrs else None
        ds = [d.strip() for v in params.getlist("datasetId") for d in v.split(",") if d.strip()]
        self.dataset_ids = set(ds) if ds else None
        self.lang = params.get("lang")
        self.pick = parse_projection(params.get("pick") or "", "pick") if "pick" in params else None
        self.omit = parse_projection(params.get("omit") or "", "omit") if "omit" in params else None
        if (self.pick is not None or self.omit is not None) and attrs:
            raise BadRequestData("pick/omit and attrs cannot be used together")
        if self.pick is not None and self.omit is not None and set(self.pick) & set(self.omit):
            raise BadRequestData(f"{sorted(set(self.pick) & set(self.omit))[0]!r} is both in pick and omit")


def render_temporal(
    doc: dict[str, Any],
    history: dict[str, list[dict[str, Any]]],
    ctx: ActiveContext,
    topts: TemporalOptions,
    store: TemporalStore,
    tenant: str,
) -> tuple[dict[str, Any], list[str]]:
    """The temporal representation of one entity; also the instants of the page (for Content-Range)."""
    out: dict[str, Any] = {"id": doc["id"]}
    types = [ctx.compact(t) for t in doc.get("type", [])]
    out["type"] = types[0] if len(types) == 1 else types
    if doc.get("scope"):
        out["scope"] = doc["scope"][0] if len(doc["scope"]) == 1 else doc["scope"]
    if topts.sys_attrs:
        out["createdAt"], out["modifiedAt"] = doc.get("createdAt"), doc.get("modifiedAt")
    ropts = RenderOptions(sys_attrs=topts.sys_attrs, lang=topts.lang)
    times: list[str] = []
    for iri, insts in history.items():
        name = ctx.compact(iri)
        times += [i.get("observedAt") or i.get("createdAt") or "" for i in insts]
        if topts.aggregated:
            start, end, _ = topts.when.bounds()
            agg = aggregate_instances(insts, topts.methods, topts.period, start, end)
            out[name] = {"type": insts[0]["type"] if insts else "Property", **agg}
        elif topts.values:
            groups: dict[Any, list[dict[str, Any]]] = {}
            for i in insts:
                groups.setdefault(i.get("datasetId"), []).append(i)
            objs = []
            for ds, group in groups.items():
                t = group[0]["type"]
                key, member = VALUES_KEY.get(t, ("values", "value"))
                obj: dict[str, Any] = {"type": "VocabProperty" if t == "VocabularyProperty" else t}
                if ds is not None:
                    obj["datasetId"] = ds
                obj[key] = [
                    [_simple(i, member, ctx), i.get("observedAt") or i.get("createdAt")] for i in group
                ]
                objs.append(obj)
            out[name] = objs[0] if len(objs) == 1 else objs
        else:
            rendered = []
            for inst in insts:
                r = render_instance(inst, ctx, ropts)
                if isinstance(r, dict) and "instanceId" in inst:
                    r["instanceId"] = inst["instanceId"]
                rendered.append(r)
            out[name] = rendered
    if topts.pick is not None:
        out = {k: v for k, v in out.items() if k in topts.pick}
    if topts.omit is not None:
        out = {k: v for k, v in out.items() if k not in topts.omit}
    return out, [t for t in times if t]


def _simple(inst: dict[str, Any], member: str, ctx: ActiveContext) -> Any:
    """One value of a temporalValues pair (objects for the non-Property kinds, as the spec shows)."""
    v = inst.get(member)
    if member == "vocab":
        return {"vocab": [ctx.compact(x) for x in v] if isinstance(v, list) else ctx.compact(str(v))}
    if member in ("languageMap", "json"):
        return {member: v}
    return v


def series_aggregates(
    store: TemporalStore, tenant: str, entity_id: str, topts: TemporalOptions, ctx: ActiveContext
) -> dict[str, dict[str, Any]]:
    """``aggregatedValues`` of the entity's compact numeric series, computed from their chunks."""
    start, end, _ = topts.when.bounds()
    # Buckets are aligned on the first stored instant of the range (as the ETSI suite expects);
    # with timerel=after an instant exactly at timeAt is counted too (documented limit).
    s_start = start
    out: dict[str, dict[str, Any]] = {}
    for info in store.series.series(tenant, entity_id=entity_id):
        if topts.attrs is not None and info.attribute not in topts.attrs:
            continue
        if topts.dataset_ids is not None and (info.dataset_id or "@none") not in topts.dataset_ids:
            continue
        frame = store.series.aggregate(
            entity_id,
            info.attribute,
            s_start,
            end,
            topts.period or None,
            topts.methods,
            tenant=tenant,
            dataset_id=info.dataset_id,
        )
        agg: dict[str, Any] = {"type": "Property"}
        if info.dataset_id:
            agg["datasetId"] = info.dataset_id
        ends = [_iso(e) for e in frame["end"]]
        starts = [_iso(b) for b in frame.index]
        for m in topts.methods:
            col = frame[m].to_numpy()
            agg[m] = [[float(v), a, b] for v, a, b in zip(col, starts, ends, strict=True) if v == v]
        out.setdefault(ctx.compact(info.attribute), agg)
    return out


def _iso(ts: Any) -> str:
    from bright.twin.entities import format_datetime

    return format_datetime(pd.Timestamp(ts).to_pydatetime())


def paginate(
    history: dict[str, list[dict[str, Any]]], page: int, topts: TemporalOptions
) -> tuple[dict[str, list[dict[str, Any]]], bool]:
    """Cut a history longer than ``page`` instances on the time axis, across attributes.

    Without ``lastN`` the page holds the oldest instances; with ``lastN`` the most recent ones.
    Every attribute keeps the instances inside the page's time range (possibly none), so a
    client continues with ``timerel`` from the range's end. Returns the page and whether it was cut.
    """
    stamped = [
        (canonical_time(str(i.get("observedAt") or i.get("modifiedAt") or i.get("createdAt"))), iri, k)
        for iri, insts in history.items()
        for k, i in enumerate(insts)
        if i.get("observedAt") or i.get("modifiedAt") or i.get("createdAt")
    ]
    if len(stamped) <= page:
        return history, False
    stamped.sort(reverse=topts.last_n is not None)
    keep = {(iri, k) for _, iri, k in stamped[:page]}
    return {iri: [i for k, i in enumerate(insts) if (iri, k) in keep] for iri, insts in history.items()}, True


def content_range(times: list[str], topts: TemporalOptions) -> str:
    """``date-time <start>-<end>/<size>``: from the query bound (or the page's first instant) to the
    page's last instant; with ``lastN`` the range runs backwards in time and the size is lastN."""
    ordered = sorted(times)
    first, last = (ordered[0], ordered[-1]) if ordered else ("", "")
    when = topts.when
    if topts.last_n is not None:
        start = (
            when.time_at
            if when.timerel == "before"
            else when.end_time_at
            if when.timerel == "between"
            else last
        )
        return f"date-time {_plain(start or last)}-{_plain(first)}/{topts.last_n}"
    start = when.time_at if when.timerel in ("after", "between") else first
    return f"date-time {_plain(start or first)}-{_plain(last)}/*"


def _plain(t: str) -> str:
    from bright.twin.entities import format_datetime

    return format_datetime(datetime.fromisoformat(canonical_time(t).replace("Z", "+00:00"))) if t else t


def _respond(
    request: Request, body: Any, ctx: Ctx, media: str, headers: dict[str, str], status: int = 200
) -> Response:
    if media == JSON_LD:
        items = body if isinstance(body, list) else [body]
        for o in items:
            o["@context"] = ctx.raw if ctx.raw is not None else CORE_CONTEXT_URL
    return json_response(body, status=status, media=media, context_url=ctx.response_url, headers=headers)


@router.get("/entities/{entity_id:path}", openapi_extra=oa.RETRIEVE)
def retrieve_temporal(request: Request, entity_id: str) -> Response:
    allowed(request, TEMPORAL_QUERY_PARAMS)
    media = accept(request, geo=False)
    ctx = request_context(request)
    check_entity_id(entity_id)
    topts = TemporalOptions(Params(request), ctx.active)
    tenant = tenant_of(request)
    doc = svc(request).store.get(tenant, entity_id)
    store = temporal(request)
    if doc is None:
        if not store.has_history(tenant, entity_id):
            raise ResourceNotFound(f"temporal entity {entity_id} not found")
        doc = {"id": entity_id, "type": [], "attrs": {}}
    history = store.history(
        tenant,
        entity_id,
        attrs=topts.attrs,
        when=topts.when,
        last_n=topts.last_n,
        dataset_ids=topts.dataset_ids,
        include_series=not topts.aggregated,
    )
    numeric = series_aggregates(store, tenant, entity_id, topts, ctx.active) if topts.aggregated else {}
    if topts.attrs is not None and not history and not numeric:
        raise ResourceNotFound(f"temporal entity {entity_id} has no history of the requested attributes")
    page = svc(request).settings.temporal_page
    history, cut = (history, False) if topts.aggregated else paginate(history, page, topts)
    out, times = render_temporal(doc, history, ctx.active, topts, store, tenant)
    out.update({k: v for k, v in numeric.items() if k not in out})
    if not out:
        raise ResourceNotFound(f"the projection leaves nothing of temporal entity {entity_id}")
    headers: dict[str, str] = {}
    status = 200
    if cut:
        headers["Content-Range"] = content_range(times, topts)
        status = 206
    return _respond(request, out, ctx, media, headers, status)


@router.get("/entities", openapi_extra=oa.QUERY)
def query_temporal(request: Request) -> Response:
    allowed(request, TEMPORAL_QUERY_PARAMS)
    media = accept(request, geo=False)
    ctx = request_context(request)
    params = Params(request)
    return _query(request, params, ctx, media, {k: request.query_params.get(k) for k in request.query_params})


def _query(request: Request, params: Params, ctx: Ctx, media: str, flat: dict[str, Any]) -> Response:
    topts = TemporalOptions(params, ctx.active)
    service = svc(request)
    tenant = tenant_of(request)
    if not service.store.tenant_exists(tenant):
        raise ResourceNotFound(f"tenant {tenant!r} not found")
    core = {
        k: v
        for k, v in flat.items()
        if k
        in (
            "type",
            "id",
            "idPattern",
            "q",
            "scopeQ",
            "georel",
            "geometry",
            "coordinates",
            "geoproperty",
            "limit",
            "offset",
            "local",
        )
    }
    if flat.get("attrs"):
        core["attrs"] = flat["attrs"]
    eq = service.build_query(core, ctx.active)
    if flat.get("orderBy"):
        from bright.twin.service import order_docs, parse_order_by

        keys = parse_order_by(str(flat["orderBy"]), ctx.active)
        limit, offset = eq.limit, eq.offset
        eq.limit, eq.offset = 10_000, 0
        docs, _ = service.store.query(tenant, eq)
        docs = order_docs(docs, keys)[offset : offset + limit]
    count = str(flat.get("count", "false")).lower() == "true"
    total = None
    if not flat.get("orderBy"):
        docs, total = service.store.query(tenant, eq, count=count)
    store = temporal(request)
    out = []
    cut, times = False, list[str]()
    for doc in docs:
        history = store.history(
            tenant,
            doc["id"],
            attrs=topts.attrs,
            when=topts.when,
            last_n=topts.last_n,
            dataset_ids=topts.dataset_ids,
            include_series=not topts.aggregated,
        )
        numeric = series_aggregates(store, tenant, doc["id"], topts, ctx.active) if topts.aggregated else {}
        if (topts.attrs is not None or topts.when.timerel is not None) and not history and not numeric:
            continue
        history, was_cut = (
            (history, False) if topts.aggregated else paginate(history, service.settings.temporal_page, topts)
        )
        rendered, page_times = render_temporal(doc, history, ctx.active, topts, store, tenant)
        rendered.update({k: v for k, v in numeric.items() if k not in rendered})
        if was_cut:
            cut, times = True, times + page_times
        out.append(rendered)
    headers = {"NGSILD-Results-Count": str(total)} if total is not None else {}
    if cut:
        headers["Content-Range"] = content_range(times, topts)
    return _respond(request, out, ctx, media, headers, 206 if cut else 200)


@router.post("/entityOperations/query", openapi_extra=oa.PLAIN)
async def query_temporal_post(request: Request) -> Response:
    allowed(request, {"limit", "offset", "count", "options", "format", "local", "lastN", "via"})
    check_content_type(request)
    body = await read_json(request, svc(request).settings.max_body_bytes)
    if not isinstance(body, dict):
        raise BadRequestData("a query must be a JSON object")
    ctx = request_context(request, body)
    media = accept(request, geo=False)
    flat: dict[str, Any] = {k: request.query_params.get(k) for k in request.query_params}
    sel = (body.get("entities") or [{}])[0] if isinstance(body.get("entities"), list) else {}
    for k in ("type", "id", "idPattern"):
        if isinstance(sel, dict) and k in sel:
            flat[k] = sel[k]
    for k in ("q", "scopeQ", "attrs"):
        if k in body:
            flat[k] = ",".join(body[k]) if isinstance(body[k], list) else body[k]
    tq = body.get("temporalQ") or {}
    for k in ("timerel", "timeAt", "endTimeAt", "timeproperty", "lastN"):
        if k in tq:
            flat[k] = str(tq[k])
    merged = {**flat, **{k: body[k] for k in ("aggrMethods", "aggrPeriodDuration") if k in body}}
    return _query(request, _DictParams(merged), ctx, media, merged)


class _DictParams(Params):
    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def getlist(self, name: str) -> list[str]:
        v = self._values.get(name)
        if v is None:
            return []
        return [",".join(map(str, v))] if isinstance(v, list) else [str(v)]


def _content(inst: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in inst.items() if k not in ("createdAt", "modifiedAt")}


def install(app: Any, service: TwinService) -> None:
    """Mount the temporal API and record the history of core updates (instances with observedAt)."""
    from bright.twin.series import SeriesStore
    from bright.twin.store import EntityEvent

    store = TemporalStore(service.engine, SeriesStore(service.engine))
    app.state.temporal = store
    app.include_router(router)

    def on_changes(events: list[EntityEvent]) -> None:
        by_tenant: dict[str, list[tuple[str, dict[str, list[dict[str, Any]]]]]] = {}
        for ev in events:
            if ev.kind == "deleted":
                store.delete_entity(ev.tenant, ev.entity_id)  # the history goes with the entity
                continue
            after = ev.after or {}
            if ev.before is None:  # a new entity: every instance is new history
                created = {iri: insts for iri, insts in after.get("attrs", {}).items() if insts}
                if created:
                    by_tenant.setdefault(ev.tenant, []).append((ev.entity_id, created))
                continue
            before = ev.before.get("attrs", {})
            fresh: dict[str, list[dict[str, Any]]] = {}
            for iri, insts in after.get("attrs", {}).items():
                # An instance is new history when its content changed (system times aside).
                old = [_content(i) for i in before.get(iri, [])]
                new = [i for i in insts if _content(i) not in old]
                if new:
                    fresh[iri] = new
            if fresh:
                by_tenant.setdefault(ev.tenant, []).append((ev.entity_id, fresh))
        for tenant, items in by_tenant.items():
            store.add_many(tenant, items, now_iso())

    service.store.batch_listeners.append(on_changes)
