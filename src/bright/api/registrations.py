"""Context source registrations, csource subscriptions and distributed operations over HTTP.

Routers for ``/ngsi-ld/v1/csourceRegistrations`` and ``/ngsi-ld/v1/csourceSubscriptions``, and
:class:`FederationMiddleware`, which sits in front of the entity API: when the tenant has context
source registrations covering a request, it forwards the request to the registered nodes
(:mod:`bright.network.federation`), runs the local part through the node's own routes and
merges the answers; otherwise the request goes through untouched.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

from bright.api import ngsild
from bright.api.http import (
    GEO_JSON,
    JSON,
    JSON_LD,
    accept,
    check_content_type,
    dumps,
    json_response,
    problem_response,
)
from bright.api.ngsild import allowed, request_context, tenant_of
from bright.api.subscriptions import (
    LIST_PARAMS,
    ONE_PARAMS,
    WRITE_PARAMS,
    fragment_context,
    json_object,
    list_response,
    one_response,
    options_of,
    page_params,
    runtime,
)
from bright.network.federation import (
    NGSILD,
    WARNING_HEADER,
    Federation,
    Forward,
    ForwardResult,
    forward_path,
    forward_query,
    forwarded_via,
    loop_detected,
    merge_entities,
    merge_results,
    query_items,
)
from bright.network.registrations import (
    EntityFilter,
    Registration,
    info_matches,
    parse_discovery,
    render_registration,
)
from bright.network.subscriptions import expand_type_query, render_subscription
from bright.twin.context import CORE_CONTEXT_URL, ActiveContext
from bright.twin.entities import ENTITY_KEYS, now_iso, parse_entity
from bright.twin.errors import InternalError, NgsiLdError, ResourceNotFound
from bright.twin.service import MAX_LIMIT, TwinService, order_docs, parse_order_by

log = logging.getLogger("bright.api.registrations")

router = APIRouter(prefix="/ngsi-ld/v1", tags=["NGSI-LD context sources"])

DISCOVERY_PARAMS = {
    "id",
    "type",
    "idPattern",
    "attrs",
    "q",
    "csf",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "timeproperty",
    "timerel",
    "timeAt",
    "endTimeAt",
    "limit",
    "offset",
    "count",
    "options",
    "local",
    "via",
}


# --- context source registrations -------------------------------------------------------------------


@router.post("/csourceRegistrations", status_code=201)
async def create_registration(request: Request) -> Response:
    allowed(request, WRITE_PARAMS)
    service: TwinService = request.app.state.twin
    body = await json_object(request, service, "context source registration")
    ctx = request_context(request, body)
    rid = runtime(request).registrations.create(tenant_of(request), body, ctx.raw, ctx.active)
    return Response(status_code=201, headers={"Location": f"/ngsi-ld/v1/csourceRegistrations/{rid}"})


@router.get("/csourceRegistrations")
def query_registrations(request: Request) -> Response:
    allowed(request, DISCOVERY_PARAMS)
    opts = options_of(request)
    ctx = request_context(request)
    limit, offset = page_params(request)
    dq = parse_discovery(request.query_params, ctx.active)
    found = runtime(request).registrations.discover(tenant_of(request), dq)
    items = [
        render_registration(r, ctx.active, sys_attrs="sysAttrs" in opts)
        for r in found[offset : offset + limit]
    ]
    return list_response(request, items, ctx, limit=limit, offset=offset, total=len(found))


@router.get("/csourceRegistrations/{registration_id:path}")
def retrieve_registration(request: Request, registration_id: str) -> Response:
    allowed(request, ONE_PARAMS)
    opts = options_of(request)
    accept(request, geo=False)  # 406 before 404
    ctx = request_context(request)
    reg = runtime(request).registrations.get(tenant_of(request), registration_id)
    return one_response(request, render_registration(reg, ctx.active, sys_attrs="sysAttrs" in opts), ctx)


@router.patch("/csourceRegistrations/{registration_id:path}", status_code=204)
async def update_registration(request: Request, registration_id: str) -> Response:
    allowed(request, WRITE_PARAMS)
    service: TwinService = request.app.state.twin
    mgr = runtime(request).registrations
    if request.headers.get("content-type"):
        check_content_type(request, patch=True)  # 415 before 404
    stored = mgr.get(tenant_of(request), registration_id)
    body = await json_object(request, service, "registration fragment", patch=True)
    mgr.update(tenant_of(request), registration_id, body, fragment_context(request, body, stored.context))
    return Response(status_code=204)


@router.delete("/csourceRegistrations/{registration_id:path}", status_code=204)
def delete_registration(request: Request, registration_id: str) -> Response:
    allowed(request, WRITE_PARAMS)
    runtime(request).registrations.delete(tenant_of(request), registration_id)
    return Response(status_code=204)


# --- csource subscriptions ------------------------------------------------------------------------


@router.post("/csourceSubscriptions", status_code=201)
async def create_csource_subscription(request: Request) -> Response:
    allowed(request, WRITE_PARAMS)
    service: TwinService = request.app.state.twin
    body = await json_object(request, service, "subscription")
    ctx = request_context(request, body)
    sid = runtime(request).registrations.create_subscription(tenant_of(request), body, ctx.raw, ctx.active)
    return Response(status_code=201, headers={"Location": f"/ngsi-ld/v1/csourceSubscriptions/{sid}"})


@router.get("/csourceSubscriptions")
def query_csource_subscriptions(request: Request) -> Response:
    allowed(request, LIST_PARAMS)
    opts = options_of(request)
    ctx = request_context(request)
    limit, offset = page_params(request)
    subs, total = runtime(request).registrations.subscription_page(tenant_of(request), limit, offset)
    now = now_iso()
    items = [render_subscription(s, ctx.active, now=now, sys_attrs="sysAttrs" in opts) for s in subs]
    return list_response(request, items, ctx, limit=limit, offset=offset, total=total)


@router.get("/csourceSubscriptions/{subscription_id:path}")
def retrieve_csource_subscription(request: Request, subscription_id: str) -> Response:
    allowed(request, ONE_PARAMS)
    opts = options_of(request)
    accept(request, geo=False)  # 406 before 404
    ctx = request_context(request)
    stored = runtime(request).registrations.get_subscription(tenant_of(request), subscription_id)
    item = render_subscription(stored, ctx.active, now=now_iso(), sys_attrs="sysAttrs" in opts)
    return one_response(request, item, ctx)


@router.patch("/csourceSubscriptions/{subscription_id:path}", status_code=204)
async def update_csource_subscription(request: Request, subscription_id: str) -> Response:
    allowed(request, WRITE_PARAMS)
    service: TwinService = request.app.state.twin
    mgr = runtime(request).registrations
    if request.headers.get("content-type"):
        check_content_type(request, patch=True)  # 415 before 404
    stored = mgr.get_subscription(tenant_of(request), subscription_id)
    body = await json_object(request, service, "subscription fragment", patch=True)
    mgr.update_subscription(
        tenant_of(request), subscription_id, body, fragment_context(request, body, stored.context)
    )
    return Response(status_code=204)


@router.delete("/csourceSubscriptions/{subscription_id:path}", status_code=204)
def delete_csource_subscription(request: Request, subscription_id: str) -> Response:
    allowed(request, WRITE_PARAMS)
    runtime(request).registrations.delete_subscription(tenant_of(request), subscription_id)
    return Response(status_code=204)


# --------------------------------------------------------------------------------------------------
# Distributed operations
# --------------------------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_BATCH_OPS = {
    "create": "createBatch",
    "upsert": "upsertBatch",
    "update": "updateBatch",
    "delete": "deleteBatch",
    "merge": "mergeBatch",
}
_ERR = "https://uri.etsi.org/ngsi-ld/errors/"
# Parameters that only restate a default: not forwarded.
_DEFAULT_PARAMS = (("deleteAll", "false"), ("local", "false"))
_DEFAULT_OPTIONS: dict[str, tuple[tuple[str, str], ...]] = {"upsert": (("options", "replace"),)}


@dataclass
class LocalAnswer:
    """The node's own answer to (the local part of) a request."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and self.status != 207

    def header(self, name: str) -> str | None:
        low = name.lower().encode()
        for k, v in self.headers:
            if k.lower() == low:
                return v.decode()
        return None


@dataclass
class Incoming:
    """The parts of a request the federation needs, read once."""

    scope: Scope
    body: bytes
    method: str
    raw_path: str
    query: str
    headers: dict[str, str]
    tenant: str
    parts: list[str] = field(default_factory=list)

    def request(self) -> Request:
        body = self.body

        async def receive() -> MutableMapping[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        return Request(self.scope, receive)


def _problem(status: int, kind: str, title: str, detail: str) -> Response:
    body = {"type": _ERR + kind, "title": title, "status": status, "detail": detail}
    return Response(content=dumps(body), status_code=status, media_type="application/json")


class FederationMiddleware:
    """ASGI middleware running distributed NGSI-LD operations in front of the entity API.

    Requests under ``/ngsi-ld/v1/entities`` and ``/ngsi-ld/v1/entityOperations`` whose tenant has
    registrations covering them are forwarded and merged; the local part goes through the app's
    own routes. ``local=true`` requests and tenants without registrations pass straight through.
    A ``Via`` header naming this node is a loop: 508.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            send = _canonical_header_names(send)
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path.startswith(NGSILD + "/entities") or path.startswith(NGSILD + "/entityOperations")):
            await self.app(scope, receive, send)
            return
        rt = getattr(scope["app"].state, "network", None)
        if rt is None:
            await self.app(scope, receive, send)
            return
        fed: Federation = rt.federation
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if loop_detected(headers.get("via"), fed.node_id):
            resp = _problem(
                508, "LoopDetected", "Loop detected", f"this request already went through node {fed.node_id}"
            )
            await resp(scope, receive, send)
            return
        raw_query = scope.get("query_string", b"").decode("latin-1")
        if any(k == "local" and unquote(v).lower() == "true" for k, v in query_items(raw_query)):
            await self.app(scope, receive, send)
            return
        tenant = headers.get("ngsild-tenant", "").strip()
        if not rt.registrations.live(tenant):
            await self.app(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
        raw_path = (scope.get("raw_path") or path.encode()).decode("latin-1")
        inc = Incoming(scope, body, scope["method"], raw_path, raw_query, headers, tenant)
        try:
            response = await Distributor(self.app, fed, inc).run()
        except NgsiLdError as err:
            response = problem_response(err)
        except Exception:
            log.exception("distributed operation failed")
            response = problem_response(InternalError("the distributed operation failed; see the node's log"))
        if response is None:
            await self.app(scope, _replay(body), send)
            return
        await response(scope, _replay(body), send)


def canonical_header_name(name: bytes) -> bytes:
    """``location`` -> ``Location``, ``ngsild-results-count`` -> ``NGSILD-Results-Count``.

    Header names are case-insensitive (RFC 9110), but some NGSI-LD clients look them up with
    the canonical case; ASGI servers send names as the app gives them.
    """
    parts = name.decode("latin-1").split("-")
    out = [
        p.upper() if i == 0 and p.lower() == "ngsild" else p[:1].upper() + p[1:].lower()
        for i, p in enumerate(parts)
    ]
    return "-".join(out).encode("latin-1")


def _canonical_header_names(send: Send) -> Send:
    async def wrapped(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = [(canonical_header_name(k), v) for k, v in message.get("headers", [])]
        await send(message)

    return wrapped


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> MutableMapping[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


class Distributor:
    """One distributed request: which sources, what each gets, how the answers combine."""

    def __init__(self, app: Any, fed: Federation, inc: Incoming) -> None:
        self.app = app
        self.fed = fed
        self.inc = inc
        self.service: TwinService = inc.scope["app"].state.twin
        rest = inc.raw_path[len(NGSILD) :]
        self.segments = [s for s in rest.split("/") if s != ""]

    # --- plumbing ---------------------------------------------------------------------------------
    async def local(
        self, *, method: str | None = None, body: bytes | None = None, query: str | None = None
    ) -> LocalAnswer:
        """Run (part of) the request through the node's own routes."""
        scope = dict(self.inc.scope)
        data = self.inc.body if body is None else body
        scope["method"] = method or self.inc.method
        if query is not None:
            scope["query_string"] = query.encode("latin-1")
        hdrs = [(k, v) for k, v in scope.get("headers", []) if k.lower() not in (b"content-length", b"via")]
        hdrs.append((b"content-length", str(len(data)).encode()))
        scope["headers"] = hdrs
        started: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def send(msg: MutableMapping[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                started.update(msg)
            elif msg["type"] == "http.response.body":
                chunks.append(msg.get("body", b""))

        await self.app(scope, _replay(data), send)
        return LocalAnswer(
            int(started.get("status", 500)), list(started.get("headers", [])), b"".join(chunks)
        )

    def forward_headers(self, reg: Registration, *, content: bool) -> dict[str, str]:
        h = {
            "Accept": "application/json",
            "Via": forwarded_via(self.inc.headers.get("via"), self.fed.node_id),
        }
        if self.inc.headers.get("link"):
            h["Link"] = self.inc.headers["link"]
        if content and self.inc.headers.get("content-type"):
            h["Content-Type"] = self.inc.headers["content-type"]
        tenant = reg.doc.get("tenant")
        if tenant:
            h["NGSILD-Tenant"] = str(tenant)
        return h

    def context(self, body: Any = None) -> ngsild.Ctx:
        return request_context(self.inc.request(), body)

    def parse_remote(
        self, results: list[ForwardResult], ctx: ActiveContext
    ) -> list[tuple[str, dict[str, Any]]]:
        """Entities returned by sources, in stored form, with the mode of their registration."""
        out = []
        now = now_iso()
        for res in results:
            if not res.ok:
                continue
            items = (
                res.body if isinstance(res.body, list) else [res.body] if isinstance(res.body, dict) else []
            )
            rctx = ctx
            link = res.headers.get("link") or res.headers.get("Link")
            if link and "json-ld#context" in link and link.startswith("<"):
                try:
                    rctx = self.service.resolve_context(link[1 : link.index(">")])
                except NgsiLdError:
                    rctx = ctx
            for item in items:
                if not isinstance(item, dict) or "id" not in item:
                    continue
                entity = {
                    k: v
                    for k, v in item.items()
                    if k not in ("@context", "createdAt", "modifiedAt", "deletedAt")
                }
                try:
                    doc = parse_entity(
                        entity,
                        rctx if "@context" not in item else self.service.resolve_context(item["@context"]),
                        now,
                        require_type=False,
                    )
                except NgsiLdError as exc:
                    log.info("entity %s from %s ignored: %s", item.get("id"), res.forward.url, exc)
                    continue
                out.append((res.forward.registration.mode, doc))
        return out

    @staticmethod
    def warnings(results: list[ForwardResult]) -> dict[str, str]:
        bad = [r.warning() for r in results if not r.ok]
        return {WARNING_HEADER: ", ".join(bad)} if bad else {}

    def url(self, reg: Registration, suffix: str, query: str = "") -> str:
        return reg.endpoint + NGSILD + suffix + (f"?{query}" if query else "")

    # --- dispatch -----------------------------------------------------------------------------------
    async def run(self) -> Response | None:
        seg, method = self.segments, self.inc.method
        if not seg:
            return None
        if seg[0] == "entityOperations" and len(seg) == 2 and method == "POST":
            if seg[1] == "query":
                return await self.query_post()
            if seg[1] in _BATCH_OPS:
                return await self.batch(seg[1])
            return None
        if seg[0] != "entities":
            return None
        if len(seg) == 1:
            if method == "GET":
                return await self.query_get()
            if method == "POST":
                return await self.create()
            if method == "DELETE":
                return await self.purge()
            return None
        rest = "/".join(seg[1:])
        eid, sep, tail = rest.partition("/attrs")
        eid = unquote(eid)
        attr = unquote(tail.strip("/")) if sep else None
        if not sep:
            if method == "GET":
                return await self.retrieve(eid)
            op = {"PUT": "replaceEntity", "PATCH": "mergeEntity", "DELETE": "deleteEntity"}.get(method)
            return await self.entity_write(op, eid, with_body=method != "DELETE") if op else None
        if attr:
            op = {"PATCH": "updateAttrs", "PUT": "replaceAttrs", "DELETE": "deleteAttrs"}.get(method)
            return await self.attribute_write(op, eid, attr) if op else None
        op = {"POST": "appendAttrs", "PATCH": "updateAttrs"}.get(method)
        return await self.entity_write(op, eid, with_body=True) if op else None

    # --- queries ----------------------------------------------------------------------------------
    def _filter(self, ctx: ActiveContext, params: Any) -> EntityFilter:
        from bright.twin import query as q

        ids = tuple(i.strip() for i in str(params.get("id") or "").split(",") if i.strip())
        tq = None
        if params.get("type"):
            tq = q.parse_type_query(expand_type_query(str(params.get("type")), ctx))
        attrs = None
        if params.get("attrs"):
            attrs = frozenset(ctx.expand(a.strip()) for a in str(params.get("attrs")).split(",") if a.strip())
        return EntityFilter(ids, params.get("idPattern") or None, tq, attrs)

    def query_targets(
        self, flt: EntityFilter, ops: tuple[str, ...]
    ) -> list[tuple[Registration, str, list[dict[str, Any]]]]:
        out = []
        for reg in self.fed.registrations.live(self.inc.tenant):
            op = next((o for o in ops if reg.supports(o)), None)
            if op is None:
                continue
            infos = [i for i in reg.doc.get("information") or [] if info_matches(i, flt)]
            if infos:
                out.append((reg, op, infos))
        return out

    def restriction(
        self, infos: list[dict[str, Any]], flt: EntityFilter, ctx: ActiveContext
    ) -> tuple[list[str], list[str], list[str]]:
        """Entity ids, compact type names and attribute names a registration limits a query to."""
        ids = [e["id"] for i in infos for e in i.get("entities") or [] if "id" in e]
        types = list(dict.fromkeys(ctx.compact(e["type"]) for i in infos for e in i.get("entities") or []))
        names: list[str] = []
        if all(i.get("propertyNames") or i.get("relationshipNames") for i in infos):
            for i in infos:
                names += [
                    ctx.compact(a)
                    for a in (i.get("propertyNames") or []) + (i.get("relationshipNames") or [])
                ]
        if flt.ids:
            ids = []
        if flt.attrs is not None:
            names = [] if not names else [n for n in names if ctx.expand(n) in flt.attrs]
        return ids, types, list(dict.fromkeys(names))

    async def query_get(self) -> Response | None:
        request = self.inc.request()
        allowed(request, ngsild.QUERY_PARAMS)
        media = accept(request)
        ctx = self.context()
        params = request.query_params
        flt = self._filter(ctx.active, params)
        targets = self.query_targets(flt, ("queryEntity", "queryBatch"))
        if not targets:
            return None
        forwards = []
        for reg, op, infos in targets:
            ids, _types, names = self.restriction(infos, flt, ctx.active)
            extra = ([("id", ",".join(ids))] if ids else []) + ([("attrs", ",".join(names))] if names else [])
            if op == "queryEntity":
                qs = forward_query(self.inc.query, drop=("local", "limit", "offset", "count"), extra=extra)
                forwards.append(
                    Forward(
                        reg, "GET", self.url(reg, "/entities", qs), self.forward_headers(reg, content=False)
                    )
                )
            else:
                body = _query_body(params, extra)
                hdrs = self.forward_headers(reg, content=False)
                hdrs["Content-Type"] = "application/json"
                forwards.append(
                    Forward(
                        reg, "POST", self.url(reg, "/entityOperations/query"), hdrs, json.dumps(body).encode()
                    )
                )
        local_params = {k: v for k, v in params.items() if k not in ("limit", "offset", "count", "orderBy")}
        local_params.update({"limit": str(MAX_LIMIT), "offset": "0"})
        results, local = await asyncio.gather(
            self.fed.send(forwards),
            asyncio.to_thread(self.service.query_from_params, self.inc.tenant, local_params, ctx.active),
        )
        docs = merge_results(local[0], self._keep(self.parse_remote(results, ctx.active), flt))
        if params.get("orderBy"):
            docs = order_docs(docs, parse_order_by(str(params.get("orderBy")), ctx.active))
        return self._entities_response(request, docs, ctx, media, params, results, None)

    @staticmethod
    def _keep(
        remote: list[tuple[str, dict[str, Any]]], flt: EntityFilter
    ) -> list[tuple[str, dict[str, Any]]]:
        if not flt.ids:
            return remote
        return [(m, d) for m, d in remote if d["id"] in flt.ids]

    def _entities_response(
        self,
        request: Request,
        docs: list[dict[str, Any]],
        ctx: ngsild.Ctx,
        media: str,
        params: Any,
        results: list[ForwardResult],
        body: dict[str, Any] | None,
    ) -> Response:
        limit = int(params.get("limit") or 20)
        offset = int(params.get("offset") or 0)
        headers = self.warnings(results)
        if str(params.get("count", "false")).lower() == "true":
            headers["NGSILD-Results-Count"] = str(len(docs))
        return ngsild.respond_entities(
            request, docs[offset : offset + limit], ctx, media, headers=headers or None, body=body
        )

    async def query_post(self) -> Response | None:
        request = self.inc.request()
        try:
            body = json.loads(self.inc.body)
        except ValueError:
            return None
        if not isinstance(body, dict):
            return None
        ctx = self.context(body)
        media = accept(request)
        selectors = body.get("entities") or [{}]
        flat = {
            "attrs": ",".join(body["attrs"]) if isinstance(body.get("attrs"), list) else body.get("attrs")
        }
        targets: dict[str, tuple[Registration, str, list[dict[str, Any]]]] = {}
        filters = []
        for sel in selectors if isinstance(selectors, list) else []:
            flt = self._filter(ctx.active, {**flat, **(sel if isinstance(sel, dict) else {})})
            filters.append(flt)
            for reg, op, infos in self.query_targets(flt, ("queryBatch", "queryEntity")):
                targets.setdefault(reg.id, (reg, op, infos))
        if not targets:
            return None
        forwards = []
        for reg, op, infos in targets.values():
            if op == "queryBatch":
                qs = forward_query(self.inc.query, drop=("local",))
                forwards.append(
                    Forward(
                        reg,
                        "POST",
                        self.url(reg, "/entityOperations/query", qs),
                        self.forward_headers(reg, content=True),
                        self.inc.body,
                    )
                )
            else:
                ids, _types, names = self.restriction(infos, filters[0], ctx.active)
                items = _params_of_query(body, ids, names)
                qs = forward_query("", extra=items)
                forwards.append(
                    Forward(
                        reg, "GET", self.url(reg, "/entities", qs), self.forward_headers(reg, content=False)
                    )
                )
        local_params = {"limit": str(MAX_LIMIT), "offset": "0"}
        results, local = await asyncio.gather(
            self.fed.send(forwards),
            asyncio.to_thread(self.service.query_from_body, self.inc.tenant, body, local_params, ctx.active),
        )
        remote = self.parse_remote(results, ctx.active)
        wanted = {i for f in filters for i in f.ids}
        if wanted and all(f.ids for f in filters):
            remote = [(m, d) for m, d in remote if d["id"] in wanted]
        docs = merge_results(local[0], remote)
        return self._entities_response(request, docs, ctx, media, request.query_params, results, body)

    async def retrieve(self, eid: str) -> Response | None:
        request = self.inc.request()
        allowed(request, ngsild.RETRIEVE_PARAMS)
        ctx = self.context()
        types = [ctx.active.expand(t) for t in (request.query_params.get("type") or "").split(",") if t]
        targets = self.fed.targets(
            self.inc.tenant,
            "retrieveEntity",
            entity_id=eid,
            types=types,
            alternatives=("queryEntity", "queryBatch"),
        )
        if not targets:
            return None
        media = accept(request)
        forwards = []
        for reg, op in targets:
            qs = forward_query(self.inc.query)
            if op == "retrieveEntity":
                forwards.append(
                    Forward(
                        reg,
                        "GET",
                        self.url(reg, "/entities/" + quote(eid, safe=":/#@!$&'()*+,;=")),
                        self.forward_headers(reg, content=False),
                    )
                )
                forwards[-1].url = reg.endpoint + forward_path(self.inc.raw_path) + (f"?{qs}" if qs else "")
                continue
            reg_types = list(
                dict.fromkeys(
                    ctx.active.compact(e["type"])
                    for i in reg.doc.get("information") or []
                    for e in i.get("entities") or []
                )
            )
            if op == "queryEntity":
                qs = forward_query(self.inc.query, extra=[("type", ",".join(reg_types))] if reg_types else [])
                forwards.append(
                    Forward(
                        reg, "GET", self.url(reg, "/entities", qs), self.forward_headers(reg, content=False)
                    )
                )
            else:
                q_body: dict[str, Any] = {
                    "type": "Query",
                    "entities": [{"id": eid, **({"type": reg_types[0]} if reg_types else {})}],
                }
                hdrs = self.forward_headers(reg, content=False)
                hdrs["Content-Type"] = "application/json"
                forwards.append(
                    Forward(
                        reg,
                        "POST",
                        self.url(reg, "/entityOperations/query"),
                        hdrs,
                        json.dumps(q_body).encode(),
                    )
                )

        def local_doc() -> dict[str, Any] | None:
            try:
                return self.service.get_entity(self.inc.tenant, eid)
            except ResourceNotFound:
                return None

        results, doc = await asyncio.gather(self.fed.send(forwards), asyncio.to_thread(local_doc))
        remote = [(m, d) for m, d in self.parse_remote(results, ctx.active) if d["id"] == eid]
        parts = ([("local", doc)] if doc is not None else []) + remote
        headers = self.warnings(results)
        if not parts:
            err = ResourceNotFound(f"entity {eid} not found")
            resp = problem_response(err)
            resp.headers.update(headers)
            return resp
        merged = merge_entities(parts)
        opts = ngsild.render_options(request, ctx.active)
        if opts.attrs is not None and not any(a in merged.get("attrs", {}) for a in opts.attrs):
            raise ResourceNotFound(f"entity {eid} has none of the requested attributes")
        out = ngsild.render_with_joins(request, [merged], ctx, opts)[0]
        if media == GEO_JSON:
            geoprop = ctx.active.expand(request.query_params.get("geometryProperty", "location"))
            feat = ngsild._feature(merged, out, geoprop, ctx)
            feat["@context"] = ctx.response_url
            return json_response(feat, media=GEO_JSON, headers=headers)
        if media == JSON_LD:
            out["@context"] = ctx.raw if ctx.raw is not None else CORE_CONTEXT_URL
        return json_response(out, media=media, context_url=ctx.response_url, headers=headers)

    # --- writes -------------------------------------------------------------------------------------
    def _entity_types(self, eid: str, body: dict[str, Any] | None, ctx: ActiveContext) -> list[str]:
        if body and body.get("type"):
            t = body["type"]
            return [ctx.expand(x) for x in (t if isinstance(t, list) else [t]) if isinstance(x, str)]
        doc = self.service.store.get(self.inc.tenant, eid)
        return list(doc["type"]) if doc else []

    def split(
        self,
        eid: str,
        types: list[str],
        body: dict[str, Any],
        ctx: ActiveContext,
        targets: list[tuple[Registration, str]],
    ) -> tuple[dict[str, Any] | None, list[tuple[Registration, str, dict[str, Any]]]]:
        """Share an entity (fragment) between the local store and the registrations.

        Returns the local part (None: nothing to do locally) and, per registration, its part.
        """
        attr_keys = [k for k in body if k not in ENTITY_KEYS]
        head = {k: v for k, v in body.items() if k in ENTITY_KEYS}
        local_keys = set(attr_keys)
        parts = []
        whole_elsewhere = False
        claimed = False
        for reg, op in targets:
            if reg.mode == "auxiliary":
                continue
            covered = reg.attributes(eid, types)
            if reg.mode == "exclusive" and covered is None:
                continue  # an exclusive registration without attribute names claims nothing
            keys = [k for k in attr_keys if covered is None or ctx.expand(k) in covered]
            if reg.mode in ("exclusive", "redirect"):
                local_keys -= set(keys)
                claimed = claimed or bool(keys)
                if reg.mode == "redirect" and covered is None:
                    whole_elsewhere = True
            if keys or not attr_keys:
                parts.append((reg, op, {**head, **{k: body[k] for k in keys}}))
        if whole_elsewhere:
            return None, parts
        if claimed and not local_keys:
            return None, parts
        return {**head, **{k: body[k] for k in attr_keys if k in local_keys}}, parts

    async def combine(
        self,
        eid: str,
        local: LocalAnswer | None,
        results: list[ForwardResult],
        *,
        success_status: int,
        location: str | None = None,
    ) -> Response:
        """One answer from the local one and the sources': success, or 207 naming who failed."""
        if not results and local is not None:
            return Response(
                content=local.body, status_code=local.status, headers=_plain_headers(local.headers)
            )
        errors: list[dict[str, Any]] = []
        if local is not None and not local.ok:
            err = local.json()
            errors.append(
                {"entityId": eid, "error": err if isinstance(err, dict) else {"status": local.status}}
            )
        for res in results:
            if not res.ok:
                errors.append(
                    {"entityId": eid, "registrationId": res.forward.registration.id, "error": res.problem()}
                )
        if not errors:
            if local is not None:
                return Response(
                    content=local.body, status_code=local.status, headers=_plain_headers(local.headers)
                )
            headers = {"Location": location} if location else {}
            return Response(status_code=success_status, headers=headers)
        success = [eid] if (local is not None and local.ok) or any(r.ok for r in results) else []
        return json_response({"success": success, "errors": errors}, status=207)

    async def create(self) -> Response | None:
        try:
            body = json.loads(self.inc.body)
            ctx = self.context(body)
        except (ValueError, NgsiLdError):
            return None
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            return None
        from bright.twin.entities import is_uri

        eid = body["id"]
        if not is_uri(eid) or not body.get("type"):
            return None
        types = self._entity_types(eid, body, ctx.active)
        targets = self.fed.targets(self.inc.tenant, "createEntity", entity_id=eid, types=types)
        if not targets:
            return None
        local_body, parts = self.split(eid, types, body, ctx.active, targets)
        forwards = [
            Forward(
                reg,
                "POST",
                reg.endpoint + forward_path(self.inc.raw_path) + self._qs(),
                self.forward_headers(reg, content=True),
                _encode(part, body, self.inc.body),
            )
            for reg, _op, part in parts
        ]
        return await self._write(
            eid, local_body, body, forwards, success_status=201, location=f"/ngsi-ld/v1/entities/{eid}"
        )

    def _qs(self, drop_items: tuple[tuple[str, str], ...] = ()) -> str:
        qs = forward_query(self.inc.query, drop_items=(*_DEFAULT_PARAMS, *drop_items))
        return f"?{qs}" if qs else ""

    async def _write(
        self,
        eid: str,
        local_body: dict[str, Any] | None,
        original: dict[str, Any] | None,
        forwards: list[Forward],
        *,
        success_status: int,
        location: str | None = None,
        method: str | None = None,
    ) -> Response:
        async def run_local() -> LocalAnswer | None:
            if local_body is None and original is not None:
                return None
            data = (
                self.inc.body
                if local_body is None or local_body == original
                else json.dumps(local_body).encode()
            )
            return await self.local(method=method, body=data)

        results, local = await asyncio.gather(self.fed.send(forwards), run_local())
        return await self.combine(eid, local, results, success_status=success_status, location=location)

    async def entity_write(self, op: str, eid: str, *, with_body: bool) -> Response | None:
        body: dict[str, Any] | None = None
        try:
            if with_body:
                body = json.loads(self.inc.body)
                ctx = self.context(body)
            else:
                ctx = self.context()
        except (ValueError, NgsiLdError):
            return None
        if with_body and not isinstance(body, dict):
            return None
        types = self._entity_types(eid, body, ctx.active)
        targets = self.fed.targets(self.inc.tenant, op, entity_id=eid, types=types)
        if not targets:
            return None
        if body is None:
            # delete entity: every covering registration; the local one unless redirected away
            redirected = any(
                reg.mode == "redirect" and reg.attributes(eid, types) is None for reg, _ in targets
            )
            forwards = [
                Forward(
                    reg,
                    self.inc.method,
                    reg.endpoint + forward_path(self.inc.raw_path) + self._qs(),
                    self.forward_headers(reg, content=False),
                )
                for reg, _op in targets
                if reg.mode != "auxiliary"
            ]
            results, local = await asyncio.gather(self.fed.send(forwards), self._maybe_local(not redirected))
            return await self.combine(eid, local, results, success_status=204)
        local_body, parts = self.split(eid, types, body, ctx.active, targets)
        forwards = [
            Forward(
                reg,
                self.inc.method,
                reg.endpoint + forward_path(self.inc.raw_path) + self._qs(),
                self.forward_headers(reg, content=True),
                _encode(part, body, self.inc.body),
            )
            for reg, _op, part in parts
            if any(k not in ENTITY_KEYS for k in part) or op in ("replaceEntity",)
        ]
        return await self._write(eid, local_body, body, forwards, success_status=204)

    async def _maybe_local(self, run: bool) -> LocalAnswer | None:
        return await self.local() if run else None

    async def attribute_write(self, op: str, eid: str, attr: str) -> Response | None:
        try:
            ctx = self.context(
                json.loads(self.inc.body) if self.inc.body and self.inc.method != "DELETE" else None
            )
        except (ValueError, NgsiLdError):
            return None
        types = self._entity_types(eid, None, ctx.active)
        targets = self.fed.targets(self.inc.tenant, op, entity_id=eid, types=types)
        iri = ctx.active.expand(attr)
        chosen = []
        local_runs = True
        for reg, _op in targets:
            if reg.mode == "auxiliary":
                continue
            covered = reg.attributes(eid, types)
            if reg.mode == "exclusive" and covered is None:
                continue
            if covered is not None and iri not in covered:
                continue
            chosen.append(reg)
            if reg.mode in ("exclusive", "redirect"):
                local_runs = False
        if not chosen:
            return None
        forwards = [
            Forward(
                reg,
                self.inc.method,
                reg.endpoint + forward_path(self.inc.raw_path) + self._qs(),
                self.forward_headers(reg, content=True),
                self.inc.body or None,
            )
            for reg in chosen
        ]
        results, local = await asyncio.gather(self.fed.send(forwards), self._maybe_local(local_runs))
        return await self.combine(eid, local, results, success_status=204)

    async def purge(self) -> Response | None:
        request = self.inc.request()
        try:
            ctx = self.context()
        except NgsiLdError:
            return None
        flt = self._filter(ctx.active, request.query_params)
        targets = self.query_targets(flt, ("purgeEntity", "deleteEntity"))
        if not targets:
            return None
        forwards = [
            Forward(
                reg,
                "DELETE",
                self.url(reg, "/entities", forward_query(self.inc.query)),
                self.forward_headers(reg, content=False),
            )
            for reg, _op, _infos in targets
            if reg.mode != "auxiliary"
        ]
        results, answer = await asyncio.gather(self.fed.send(forwards), self.local())
        # Entities only at the sources (redirect) leave nothing to purge here: not an error.
        local = None if any(r.ok for r in results) and answer.status == 404 else answer
        if local is None and all(r.ok for r in results):
            return Response(status_code=204)
        return await self.combine("", local, results, success_status=204)

    async def batch(self, name: str) -> Response | None:
        try:
            items = json.loads(self.inc.body)
        except ValueError:
            return None
        if not isinstance(items, list) or not items:
            return None
        op = _BATCH_OPS[name]
        try:
            ctx = self.context() if name == "delete" else ngsild.batch_contexts(self.inc.request(), items)[0]
        except NgsiLdError:
            return None
        per_reg: dict[str, tuple[Registration, list[Any], list[str]]] = {}
        local_items: list[Any] = []
        touched = False
        for item in items:
            if name == "delete":
                if not isinstance(item, str):
                    local_items.append(item)
                    continue
                eid = item
                types = self._entity_types(eid, None, ctx.active)
                targets = [
                    (r, o)
                    for r, o in self.fed.targets(self.inc.tenant, op, entity_id=eid, types=types)
                    if r.mode != "auxiliary"
                ]
                redirected = any(
                    r.mode == "redirect" and r.attributes(eid, types) is None for r, _ in targets
                )
                for reg, _o in targets:
                    per_reg.setdefault(reg.id, (reg, [], []))[1].append(eid)
                    per_reg[reg.id][2].append(eid)
                    touched = True
                if not redirected:
                    local_items.append(eid)
                continue
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                local_items.append(item)
                continue
            eid = item["id"]
            ictx = self.service.resolve_context(item["@context"]) if "@context" in item else ctx.active
            types = self._entity_types(eid, item, ictx)
            targets = self.fed.targets(self.inc.tenant, op, entity_id=eid, types=types)
            if not targets:
                local_items.append(item)
                continue
            local_part, parts = self.split(eid, types, item, ictx, targets)
            for reg, _o, part in parts:
                if any(k not in ENTITY_KEYS for k in part):
                    per_reg.setdefault(reg.id, (reg, [], []))[1].append(part)
                    per_reg[reg.id][2].append(eid)
                    touched = True
            if local_part is not None:
                local_items.append(local_part)
        if not touched:
            return None
        forwards = []
        for reg, payload, ids in per_reg.values():
            fwd = Forward(
                reg,
                "POST",
                reg.endpoint + forward_path(self.inc.raw_path) + self._qs(_DEFAULT_OPTIONS.get(name, ())),
                self.forward_headers(reg, content=True),
                json.dumps(payload).encode(),
                tuple(ids),
            )
            forwards.append(fwd)

        async def run_local() -> LocalAnswer | None:
            if not local_items:
                return None
            return await self.local(body=json.dumps(local_items).encode())

        results, local = await asyncio.gather(self.fed.send(forwards), run_local())
        success: list[str] = []
        errors: list[dict[str, Any]] = []
        created_status = None
        if local is not None:
            data = local.json()
            if local.status == 207 and isinstance(data, dict):
                success += list(data.get("success") or [])
                errors += list(data.get("errors") or [])
            elif local.ok:
                created_status = local.status
                if isinstance(data, list):
                    success += data
                else:
                    success += [
                        str(i if isinstance(i, str) else i.get("id"))
                        for i in local_items
                        if isinstance(i, str | dict)
                    ]
            else:
                err = local.json()
                errors += [
                    {"entityId": i if isinstance(i, str) else i.get("id"), "error": err}
                    for i in local_items
                    if isinstance(i, str | dict)
                ]
        for res in results:
            for eid in res.forward.entity_ids:
                if res.ok:
                    if eid not in success:
                        success.append(eid)
                else:
                    errors.append(
                        {
                            "entityId": eid,
                            "registrationId": res.forward.registration.id,
                            "error": res.problem(),
                        }
                    )
        failed = {e.get("entityId") for e in errors}
        success = [s for s in success if s not in failed]
        if errors:
            return json_response({"success": success, "errors": errors}, status=207)
        if name == "create":
            return json_response(success, status=201)
        if name == "upsert" and created_status == 201 and local is not None:
            return Response(content=local.body, status_code=201, media_type=JSON)
        return Response(status_code=204)


def _plain_headers(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k.lower() != b"content-length"}


def _encode(part: dict[str, Any], original: dict[str, Any], raw: bytes) -> bytes:
    return raw if part == original else json.dumps(part).encode()


def _query_body(params: Any, extra: list[tuple[str, str]]) -> dict[str, Any]:
    """A Query object (POST /entityOperations/query) equivalent to GET query parameters."""
    sel: dict[str, Any] = {}
    values = dict(params.items())
    values.update(dict(extra))
    if values.get("type"):
        sel["type"] = values["type"]
    if values.get("id"):
        ids = values["id"].split(",")
        sel["id"] = ids[0] if len(ids) == 1 else values["id"]
    if values.get("idPattern"):
        sel["idPattern"] = values["idPattern"]
    body: dict[str, Any] = {"type": "Query"}
    if sel:
        body["entities"] = [sel]
    if values.get("attrs"):
        body["attrs"] = values["attrs"].split(",")
    for key in ("q", "scopeQ", "lang"):
        if values.get(key):
            body[key] = values[key]
    if values.get("georel"):
        body["geoQ"] = {
            k: values[k] for k in ("georel", "geometry", "coordinates", "geoproperty") if values.get(k)
        }
    return body


def _params_of_query(body: dict[str, Any], ids: list[str], names: list[str]) -> list[tuple[str, str]]:
    """GET query parameters equivalent to a Query object (for sources without queryBatch)."""
    out: list[tuple[str, str]] = []
    sel = (body.get("entities") or [{}])[0]
    if isinstance(sel, dict):
        if sel.get("id") or ids:
            out.append(("id", str(sel.get("id") or ",".join(ids))))
        if sel.get("type"):
            out.append(("type", str(sel["type"])))
        if sel.get("idPattern"):
            out.append(("idPattern", str(sel["idPattern"])))
    attrs = body.get("attrs") or names
    if attrs:
        out.append(("attrs", ",".join(attrs) if isinstance(attrs, list) else str(attrs)))
    for key in ("q", "scopeQ"):
        if body.get(key):
            out.append((key, str(body[key])))
    geoq = body.get("geoQ")
    if isinstance(geoq, dict):
        for key in ("georel", "geometry", "coordinates", "geoproperty"):
            if geoq.get(key) is not None:
                v = geoq[key]
                out.append((key, json.dumps(v) if not isinstance(v, str) else v))
    return out


def add_federation_middleware(app: FastAPI) -> None:
    """Put :class:`FederationMiddleware` in front of the app (outermost of the user middleware)."""
    app.add_middleware(FederationMiddleware)


__all__ = ["FederationMiddleware", "add_federation_middleware", "router"]
