"""The FastAPI application of a twin node: NGSI-LD API, BRIGHT REST API, dashboard."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from bright import __version__
from bright.api.http import problem_response
from bright.config import Settings
from bright.twin.db import make_engine
from bright.twin.errors import (
    BadRequestData,
    InternalError,
    InvalidRequest,
    NgsiLdError,
    OperationNotSupported,
    ResourceNotFound,
)
from bright.twin.service import TwinService

log = logging.getLogger("bright.api")


class StripTrailingSlash:
    """Route ``/ngsi-ld/v1/entities/`` like ``/ngsi-ld/v1/entities`` (clients use both forms)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if len(path) > 1 and path.endswith("/"):
                scope = dict(scope)
                scope["path"] = path.rstrip("/") or "/"
                scope["raw_path"] = scope["path"].encode()
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None, *, service: TwinService | None = None) -> FastAPI:
    """Build the node's ASGI app.

    Parameters
    ----------
    settings
        Node settings; read from the environment when omitted.
    service
        An existing twin service (tests share one); created from ``settings.database_url`` otherwise.
    """
    settings = settings or Settings.from_env()
    if service is None:
        service = TwinService(make_engine(settings.database_url), settings)
    app = FastAPI(
        title="BRIGHT twin node",
        version=__version__,
        description=(
            "The digital twin node of an energy community: the NGSI-LD API (ETSI GS CIM 009) under "
            "/ngsi-ld/v1 and BRIGHT's own REST API under /api."
        ),
    )
    app.state.twin = service
    app.add_middleware(StripTrailingSlash)
    app.state.settings = settings

    from bright.api import ngsild, temporal

    # The temporal router first: /temporal/entities/... must not be taken for an entity id.
    temporal.install(app, service)
    app.include_router(ngsild.router)

    from bright.api import analytics as analytics_api
    from bright.api import community as community_api
    from bright.api import edge as edge_api
    from bright.api import engagement as engagement_api
    from bright.api import ledger as ledger_api
    from bright.api import network as network_api

    community_api.install(app)
    analytics_api.install(app)
    edge_api.install(app, service)
    network_api.install(app)
    engagement_api.install(app)
    ledger_api.install(app)
    from bright.api import mobility as mobility_api  # mobility scenarios (issue 12)

    mobility_api.install(app)
    from bright.api import onboarding as onboarding_api  # creation, members, tenant quotas

    onboarding_api.install(app)
    from bright.api import offers as offers_api  # B-BRIGHT service offers and bundles (issue 15)

    offers_api.install(app)
    if settings.mqtt_url:
        _start_mqtt_ingest(app, settings.mqtt_url)

    @app.exception_handler(NgsiLdError)
    async def _ngsild_error(_request: Request, exc: NgsiLdError) -> Response:
        return problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return problem_response(BadRequestData(f"{where}: {first.get('msg', 'invalid request')}"))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return problem_response(ResourceNotFound(str(exc.detail) if exc.detail else "no such resource"))
        if exc.status_code == 405:
            err: NgsiLdError = OperationNotSupported("method not allowed on this resource", status=405)
            return problem_response(err)
        return problem_response(InvalidRequest(str(exc.detail), status=exc.status_code))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> Response:
        log.exception("unexpected error")
        return problem_response(InternalError(f"unexpected {type(exc).__name__}; see the node's log"))

    from bright.api.subscriptions import install as install_network_layer
    from bright.web.app import install as install_web

    install_web(app)
    # Subscriptions, context source registrations and distributed operations (a middleware in
    # front of the entity API that only acts when registrations cover a request).
    install_network_layer(app, service)
    # The city twin: aggregate of the registered communities (refreshed on a --role network node).
    from bright.api import city as city_api

    city_api.install(app)

    @app.get("/health", tags=["node"])
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    # Access control last: its middleware is the outermost and covers every route (docs/access.md).
    from bright.api.auth import install as install_access

    install_access(app)

    return app


def _start_mqtt_ingest(app: FastAPI, url: str) -> None:
    """Ingest SenML readings from the broker while the app runs (started and stopped with it)."""
    from bright.edge.mqtt import MqttIngest, MqttSettings

    ingest = MqttIngest(app.state.ingestor, MqttSettings(url=url))

    @app.on_event("startup")
    def _start() -> None:
        ingest.start(wait_connected=None)

    @app.on_event("shutdown")
    def _stop() -> None:
        ingest.stop()


def app_from_env() -> FastAPI:
    """ASGI factory for ``uvicorn --factory bright.api.app:app_from_env`` (settings from BRIGHT_*)."""
    return create_app(Settings.from_env())
