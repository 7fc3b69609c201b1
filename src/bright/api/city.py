"""REST API of the city twin: the aggregate of the network's communities.

- ``GET /api/network/aggregate?frequency=monthly&period=YYYY-MM-DD&breakdown=true``: totals of
  the communities of every registered node (members, technologies, flexible assets, offtake,
  injection, shared energy, CO2, ratios), the per-community breakdown, the nodes and which of
  them did not answer (also one ``NGSILD-Warning`` each). Computed on request.
- ``POST /api/network/aggregate/refresh?frequency=``: compute it and write the city twin's
  NGSI-LD entities (``urn:ngsi-ld:CityTwin:<name>`` and its ``KeyPerformanceIndicator``
  entities) into this node's twin now.

On a node with the ``network`` role (``bright serve --role network``, ``BRIGHT_ROLE=network``)
the entities are also rewritten every ``BRIGHT_CITY_REFRESH_S`` seconds (default 60) while the
node runs. The city's name is ``BRIGHT_CITY_NAME``, else the node name (``BRIGHT_NODE_NAME``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

from bright.api.http import json_response
from bright.api.network import _authorize, _bool, _params
from bright.api.ngsild import tenant_of
from bright.network.city import CityRefresher, CityTwin, role_of

__all__ = ["install", "router"]

router = APIRouter(tags=["city twin"])


def _city(request: Request) -> CityTwin:
    return request.app.state.city  # type: ignore[no-any-return]


def _warnings(result: Any) -> dict[str, str]:
    missing = [n.warning() for n in result.unanswered]
    return {"NGSILD-Warning": ", ".join(missing)} if missing else {}


@router.get("/api/network/aggregate")
async def aggregate(request: Request) -> Response:
    """The aggregate of all communities of the network for one period, with who answered."""
    p = _params(request, {"frequency", "period", "breakdown"})
    result = await _city(request).aggregate(
        tenant_of(request), frequency=p.get("frequency", "monthly"), period=p.get("period")
    )
    breakdown = _bool(p, "breakdown")
    return json_response(result.to_json(breakdown=breakdown is not False), headers=_warnings(result))


@router.post("/api/network/aggregate/refresh")
async def refresh(request: Request) -> Response:
    """Compute the aggregate and write the city twin's NGSI-LD entities now (manager)."""
    p = _params(request, {"frequency"})
    city = _city(request)
    _authorize(request, "aggregate:write", city.city_id)
    result = await city.refresh(tenant_of(request), frequency=p.get("frequency", "monthly"))
    body = result.to_json(breakdown=False)
    body["written"] = [e["id"] for e in city.entities(result)]
    return json_response(body, headers=_warnings(result))


def install(app: FastAPI, *, name: str | None = None, refresh_s: float | None = None) -> CityTwin:
    """Add the city twin to a node's app (after the network layer of :mod:`bright.api.subscriptions`).

    Parameters
    ----------
    app
        The node's app (``app.state.twin``, ``app.state.network``).
    name
        The city's name (default ``BRIGHT_CITY_NAME``, else the node name).
    refresh_s
        Period of the refresher on a ``network`` node (default ``BRIGHT_CITY_REFRESH_S`` or 60 s).

    Returns
    -------
    CityTwin
        Also ``app.state.city``; ``app.state.city_refresher`` is the refresher (None on a
        community node).

    Raises
    ------
    ValueError
        An unknown role, a bad name or a refresh period that is not > 0.
    """
    settings = app.state.settings
    role = role_of(settings)
    extra = getattr(settings, "extra", None) or {}
    city_name = name or extra.get("city_name") or os.environ.get("BRIGHT_CITY_NAME") or settings.node_name
    city = CityTwin(app.state.twin, lambda: app.state.network.federation, city_name)
    if getattr(app.state, "city", None) is not None:  # installed again: keep routes and lifespan
        app.state.city = city
        return city
    app.state.city = city
    app.state.role = role
    app.state.city_refresher = None
    app.include_router(router)
    if role != "network":
        return city
    period = refresh_s
    if period is None:
        raw = extra.get("city_refresh_s") or os.environ.get("BRIGHT_CITY_REFRESH_S") or "60"
        try:
            period = float(raw)
        except ValueError:
            raise ValueError(f"BRIGHT_CITY_REFRESH_S must be a number of seconds, got {raw!r}") from None
    refresher = CityRefresher(city, period)
    app.state.city_refresher = refresher
    previous = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with previous(a) as state:
            refresher.city = app.state.city
            await refresher.start()
            try:
                yield state
            finally:
                await refresher.stop()

    app.router.lifespan_context = lifespan
    return city
