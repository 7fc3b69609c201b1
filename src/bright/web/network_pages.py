"""The network of communities in the dashboard: a map of the cards and the discovery search.

``/network`` (everyone: cards are public by construction) shows

- a **map** drawn by ECharts without any tile server: the cards are placed by longitude and latitude
  on an equirectangular projection around Brussels (x = lon * cos(50.85 deg), y = lat, so distances
  look right at this latitude), over the 700 school sites of the Brussels register
  (:func:`bright.datasets.brussels_schools`) as a faint background that draws the city's shape;
- the **search** (:meth:`bright.network.discovery.DiscoveryIndex.search`): free text (``q``), a
  reference card (``like``: "communities like mine"), filters (schools, PV, storage, EV chargers,
  heat pumps, municipality, member counts) and the reasons each result matches;
- the cards themselves (members, technologies, KPIs of the card's period).

``POST /network/cards/{id}/refresh`` (manager): recount the community's card from the twin
(:meth:`bright.network.discovery.NetworkDirectory.refresh_card`), which publishes it.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bright import datasets
from bright.network.discovery import Filters, NetworkDirectory
from bright.services.community import list_communities
from bright.twin.errors import NgsiLdError
from bright.web import i18n
from bright.web.app import TENANT, WebError, _lang, _render, _twin, current_user

__all__ = ["COS_LAT", "parse_search", "project", "router"]

router = APIRouter(include_in_schema=False)

#: cos(50.85 deg): the scale of a degree of longitude against one of latitude in Brussels.
COS_LAT = math.cos(math.radians(50.85))
TECHNOLOGIES = ("has_pv", "has_storage", "has_ev", "has_heat_pumps")


def project(lon: float, lat: float) -> tuple[float, float]:
    """Equirectangular map coordinates of a point around Brussels (degrees of latitude as unit)."""
    return round(lon * COS_LAT, 6), round(lat, 6)


@lru_cache(maxsize=1)
def _school_sites() -> tuple[tuple[float, float], ...]:
    schools = datasets.brussels_schools().dropna(subset=["lat", "lon"])
    return tuple(
        project(float(lon), float(lat)) for lon, lat in zip(schools["lon"], schools["lat"], strict=True)
    )


def _directory(request: Request) -> NetworkDirectory | None:
    directory = getattr(request.app.state, "discovery", None)
    return directory if isinstance(directory, NetworkDirectory) else None


def parse_search(params: dict[str, str], lang: str = "en") -> tuple[dict[str, Any], dict[str, str]]:
    """The search form: (arguments of ``DiscoveryIndex.search`` without the index, field errors).

    Checkboxes (``schools`` and the technologies) filter on "with"; numbers must be whole and >= 0.
    """
    errors: dict[str, str] = {}
    numbers: dict[str, int | None] = {}
    for name in ("min_members", "max_members", "limit"):
        raw = (params.get(name) or "").strip()
        if not raw:
            numbers[name] = None
            continue
        try:
            value = int(raw)
            if value < 0 or (name == "limit" and not 1 <= value <= 100):
                raise ValueError
            numbers[name] = value
        except ValueError:
            errors[name] = i18n.translate("net.err_whole", lang)
    if (
        numbers.get("min_members") is not None
        and numbers.get("max_members") is not None
        and numbers["min_members"] > numbers["max_members"]  # type: ignore[operator]
    ):
        errors["max_members"] = i18n.translate("net.err_range", lang)
    flags = {
        name: (True if params.get(name) in ("on", "true", "1") else None)
        for name in (*TECHNOLOGIES, "schools")
    }
    filters = None
    if not errors:
        filters = Filters(
            schools=flags["schools"],
            has_pv=flags["has_pv"],
            has_storage=flags["has_storage"],
            has_ev=flags["has_ev"],
            has_heat_pumps=flags["has_heat_pumps"],
            municipality=(params.get("municipality") or "").strip() or None,
            min_members=numbers.get("min_members"),
            max_members=numbers.get("max_members"),
        )
    return {
        "q": (params.get("q") or "").strip() or None,
        "like": (params.get("like") or "").strip() or None,
        "filters": filters,
        "limit": numbers.get("limit") or 10,
    }, errors


def _card_view(card: dict[str, Any]) -> dict[str, Any]:
    m = card.get("members") or {}
    return {**card, "n_members": sum(int(v or 0) for v in m.values())}


@router.get("/network", response_class=HTMLResponse)
def network_page(request: Request) -> HTMLResponse:
    lang = _lang(request)
    directory = _directory(request)
    params = {k: str(v) for k, v in request.query_params.items()}
    searched = any(
        k in params for k in ("q", "like", "schools", *TECHNOLOGIES, "municipality", "min_members")
    )
    cards: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    if directory is not None:
        cards = [_card_view(c.to_json()) for c in directory.cards(TENANT)]
        if searched:
            args, errors = parse_search(params, lang)
            if not errors:
                index = directory.index(TENANT)
                if args["like"] is not None and args["like"] not in index.position:
                    errors["like"] = i18n.translate("net.err_like", lang)
                else:
                    try:
                        matches = index.search(
                            like=args["like"], q=args["q"], filters=args["filters"], limit=args["limit"]
                        )
                    except (NgsiLdError, ValueError) as exc:
                        errors["q"] = exc.detail if isinstance(exc, NgsiLdError) else str(exc)
                    else:
                        results = [m.to_json() | {"card": _card_view(m.card.to_json())} for m in matches]
    found = {r["card"]["id"] for r in results}
    points = [
        {
            "id": c["id"],
            "name": c["name"],
            "value": [*project(c["lon"], c["lat"]), c["n_members"]],
            "found": c["id"] in found,
            "schools": int((c.get("members") or {}).get("schools") or 0),
        }
        for c in cards
    ]
    return _render(
        request,
        "network.html",
        status=400 if errors else 200,
        cards=cards,
        results=results,
        searched=searched and not errors,
        errors=errors,
        form=params,
        available=directory is not None,
        own=list_communities(_twin(request)[0], tenant=TENANT, limit=1000)
        if current_user(request).is_manager
        else [],
        map_data={"points": points, "background": _school_sites(), "cos_lat": COS_LAT},
    )


@router.post("/network/cards/{card_id}/refresh", response_model=None)
def refresh_card(request: Request, card_id: str) -> Response:
    """The manager publishes (recounts) the community's card from the twin."""
    lang = _lang(request)
    if not current_user(request).is_manager:
        raise WebError(403, i18n.translate("error.403", lang))
    directory = _directory(request)
    if directory is None:
        raise WebError(404, i18n.translate("error.404", lang))
    try:
        directory.refresh_card(card_id, TENANT)
    except NgsiLdError as exc:
        raise WebError(exc.status, exc.detail) from None
    return RedirectResponse("/network?refreshed=1", status_code=303)
