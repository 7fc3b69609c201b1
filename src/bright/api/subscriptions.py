"""NGSI-LD subscriptions API (``/ngsi-ld/v1/subscriptions``) and the installation of the network layer.

:func:`install` mounts the subscription, context-source registration and csource-subscription
routers on a node's app, listens to the entity store, adds the federation middleware (distributed
operations) and starts/stops the notification worker and the parent-registration refresher with
the app's lifespan. Same conventions as :mod:`bright.api.ngsild`: ProblemDetails errors, content
negotiation, @context from the body or the Link header, unknown query parameters rejected,
tenants through ``NGSILD-Tenant``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

from bright.api.http import JSON, JSON_LD, accept, check_content_type, json_response, read_json
from bright.api.ngsild import allowed, request_context, tenant_of
from bright.network.subscriptions import (
    Delivery,
    SubscriptionManager,
    SubscriptionStore,
    render_subscription,
)
from bright.twin.context import CORE_CONTEXT_URL
from bright.twin.entities import now_iso
from bright.twin.errors import BadRequestData, InvalidRequest
from bright.twin.service import TwinService

log = logging.getLogger("bright.api.subscriptions")

router = APIRouter(prefix="/ngsi-ld/v1", tags=["NGSI-LD subscriptions"])

LIST_PARAMS = {"limit", "offset", "count", "options", "local", "via"}
ONE_PARAMS = {"options", "local", "via"}
WRITE_PARAMS = {"local", "via"}


@dataclass
class NetworkRuntime:
    """What :func:`install` wires into an app (kept on ``app.state.network``).

    Attributes
    ----------
    subscriptions
        Entity subscriptions: CRUD, event matching, periodic notifications.
    registrations
        Context source registrations, discovery and csource subscriptions.
    delivery
        The notification sender (worker threads, retries, status bookkeeping).
    federation
        Distributed operations (forwarding to context sources, merging, Via loop detection).
    """

    subscriptions: SubscriptionManager
    registrations: Any
    delivery: Delivery
    federation: Any

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every pending notification is delivered (or given up); for tests."""
        return self.delivery.flush(timeout_s)


def runtime(request: Request) -> NetworkRuntime:
    return request.app.state.network  # type: ignore[no-any-return]


def page_params(request: Request, default_limit: int = 20) -> tuple[int, int]:
    """``limit`` and ``offset`` query parameters (BadRequestData when negative or not integers)."""
    out = []
    for name, default in (("limit", default_limit), ("offset", 0)):
        raw = request.query_params.get(name)
        if raw is None:
            out.append(default)
            continue
        try:
            value = int(raw)
        except ValueError:
            raise BadRequestData(f"{name} must be a non-negative integer, got {raw!r}") from None
        if value < 0 or (name == "limit" and value == 0):
            raise BadRequestData(
                f"{name} must be {'a positive' if name == 'limit' else 'a non-negative'} integer, got {raw!r}"
            )
        out.append(value)
    return out[0], out[1]


def page_links(path: str, params: dict[str, str], limit: int, offset: int, total: int) -> str | None:
    """``Link`` header with ``prev``/``next`` pages (clause 5.5.9), or None for a single page."""
    links = []
    base = {k: v for k, v in params.items() if k not in ("limit", "offset")}
    if offset > 0:
        prev = max(0, offset - limit)
        links.append(
            f'<{path}?{urlencode({**base, "limit": limit, "offset": prev})}>;rel="prev";type="application/ld+json"'
        )
    if offset + limit < total:
        links.append(
            f'<{path}?{urlencode({**base, "limit": limit, "offset": offset + limit})}>;rel="next";type="application/ld+json"'
        )
    return ", ".join(links) if links else None


def options_of(request: Request) -> set[str]:
    opts = {o.strip() for v in request.query_params.getlist("options") for o in v.split(",") if o.strip()}
    unknown = opts - {"sysAttrs"}
    if unknown:
        raise InvalidRequest(f"unknown option(s) {', '.join(sorted(unknown))}")
    return opts


def list_response(
    request: Request, items: list[dict[str, Any]], ctx: Any, *, limit: int, offset: int, total: int
) -> Response:
    media = accept(request, geo=False)
    headers: dict[str, str] = {}
    if request.query_params.get("count", "false").lower() == "true":
        headers["NGSILD-Results-Count"] = str(total)
    links = page_links(request.url.path, dict(request.query_params), limit, offset, total)
    if media == JSON_LD:
        for item in items:
            item["@context"] = ctx.raw if ctx.raw is not None else CORE_CONTEXT_URL
        if links:
            headers["Link"] = links
        return json_response(items, media=JSON_LD, headers=headers)
    resp = json_response(items, media=JSON, context_url=ctx.response_url, headers=headers)
    if links:
        resp.headers["Link"] = resp.headers["Link"] + ", " + links
    return resp


def one_response(request: Request, item: dict[str, Any], ctx: Any) -> Response:
    media = accept(request, geo=False)
    if media == JSON_LD:
        item["@context"] = ctx.raw if ctx.raw is not None else CORE_CONTEXT_URL
    return json_response(item, media=media, context_url=ctx.response_url)


async def json_object(
    request: Request, service: TwinService, what: str, *, patch: bool = False
) -> dict[str, Any]:
    """The request body as a JSON object; a missing Content-Type on PATCH is taken as JSON."""
    if request.headers.get("content-type") or not patch:
        check_content_type(request, patch=patch)
    body = await read_json(request, service.settings.max_body_bytes)
    if not isinstance(body, dict):
        raise BadRequestData(f"a {what} must be a JSON object")
    return body


def fragment_context(request: Request, body: dict[str, Any], stored_context: Any) -> Any:
    """The @context to read an update fragment with.

    The fragment's own (JSON-LD body or Link header) when it has one; otherwise the @context the
    resource was created with, so that a partial update keeps the resource's term definitions
    (the default core context would silently change what ``Vehicle`` means).
    """
    ctx = request_context(request, body)
    if ctx.raw is None and stored_context is not None:
        service: TwinService = request.app.state.twin
        return service.resolve_context(stored_context)
    return ctx.active


# --- routes -----------------------------------------------------------------------------------------


@router.post("/subscriptions", status_code=201)
async def create_subscription(request: Request) -> Response:
    allowed(request, WRITE_PARAMS)
    service: TwinService = request.app.state.twin
    body = await json_object(request, service, "subscription")
    ctx = request_context(request, body)
    sid = runtime(request).subscriptions.create(tenant_of(request), body, ctx.raw, ctx.active)
    headers = {"Location": f"/ngsi-ld/v1/subscriptions/{sid}"}
    if tenant_of(request):
        headers["NGSILD-Tenant"] = tenant_of(request)
    return Response(status_code=201, headers=headers)


@router.get("/subscriptions")
def query_subscriptions(request: Request) -> Response:
    allowed(request, LIST_PARAMS)
    opts = options_of(request)
    ctx = request_context(request)
    limit, offset = page_params(request)
    subs, total = runtime(request).subscriptions.page(tenant_of(request), limit, offset)
    now = now_iso()
    items = [render_subscription(s, ctx.active, now=now, sys_attrs="sysAttrs" in opts) for s in subs]
    return list_response(request, items, ctx, limit=limit, offset=offset, total=total)


@router.get("/subscriptions/{subscription_id:path}")
def retrieve_subscription(request: Request, subscription_id: str) -> Response:
    allowed(request, ONE_PARAMS)
    opts = options_of(request)
    accept(request, geo=False)  # 406 before 404
    ctx = request_context(request)
    stored = runtime(request).subscriptions.get(tenant_of(request), subscription_id)
    item = render_subscription(stored, ctx.active, now=now_iso(), sys_attrs="sysAttrs" in opts)
    return one_response(request, item, ctx)


@router.patch("/subscriptions/{subscription_id:path}", status_code=204)
async def update_subscription(request: Request, subscription_id: str) -> Response:
    allowed(request, WRITE_PARAMS)
    service: TwinService = request.app.state.twin
    mgr = runtime(request).subscriptions
    if request.headers.get("content-type"):
        check_content_type(request, patch=True)  # 415 before 404
    stored = mgr.get(tenant_of(request), subscription_id)
    body = await json_object(request, service, "subscription fragment", patch=True)
    ctx = fragment_context(request, body, stored.context)
    mgr.update(tenant_of(request), subscription_id, body, ctx)
    return Response(status_code=204)


@router.delete("/subscriptions/{subscription_id:path}", status_code=204)
def delete_subscription(request: Request, subscription_id: str) -> Response:
    allowed(request, WRITE_PARAMS)
    runtime(request).subscriptions.delete(tenant_of(request), subscription_id)
    return Response(status_code=204)


# --- installation -----------------------------------------------------------------------------------


def install(app: FastAPI, service: TwinService, *, config: Any = None) -> NetworkRuntime:
    """Add the network layer to a node's app: subscriptions, registrations, federation.

    Parameters
    ----------
    app
        The app from :func:`bright.api.app.create_app`.
    service
        Its twin service (``app.state.twin``).
    config
        A :class:`bright.network.federation.FederationConfig` (node identity, parent node,
        timeouts); read from the settings and ``BRIGHT_*`` environment when omitted.

    Returns
    -------
    NetworkRuntime
        Also stored on ``app.state.network``; ``runtime.flush()`` waits for pending notifications.
    """
    from bright.api import registrations as reg_api
    from bright.network.federation import Federation, FederationConfig
    from bright.network.registrations import RegistrationManager

    config = config or FederationConfig.from_settings(service.settings)
    existing: NetworkRuntime | None = getattr(app.state, "network", None)
    # Installed again (create_app installs it; a caller may re-install with its own config): the
    # new runtime replaces the old one; routes, middleware and lifespan stay single.
    if existing is not None and existing.subscriptions.on_event in service.store.listeners:
        service.store.listeners.remove(existing.subscriptions.on_event)
    store = SubscriptionStore(service.engine)
    delivery = Delivery(
        retries=config.notification_retries,
        backoff_s=config.notification_backoff_s,
        timeout_s=config.notification_timeout_s,
    )
    manager = SubscriptionManager(service, store, delivery)
    registrations = RegistrationManager(service, store, delivery)
    federation = Federation(service, registrations, config)
    delivery.add_tick(manager.tick)
    delivery.add_tick(registrations.tick)
    service.store.listeners.append(manager.on_event)
    rt = NetworkRuntime(manager, registrations, delivery, federation)
    app.state.network = rt
    if existing is not None:
        return rt
    app.include_router(router)
    app.include_router(reg_api.router)
    reg_api.add_federation_middleware(app)

    previous = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        current: NetworkRuntime = app.state.network  # the runtime installed last
        current.delivery.start()
        await current.federation.start()
        try:
            async with previous(a) as state:
                yield state
        finally:
            await current.federation.stop()
            current.delivery.stop()

    app.router.lifespan_context = lifespan
    return rt


__all__ = ["NetworkRuntime", "fragment_context", "install", "router"]
