"""REST API of the network of communities: cards, discovery, knowledge, questions, tools, open data.

Routes (all JSON unless said; errors are ProblemDetails like the NGSI-LD API):

- ``GET /api/network/cards`` (``limit``, ``offset``), ``GET /api/network/cards/{id}``,
  ``PUT /api/network/cards/{id}`` (manager: publish the community's card),
  ``POST /api/network/cards/{id}/refresh`` (manager: recount members and devices from the twin);
- ``GET /api/network/search?like=&q=&schools=&within_km=&lat=&lon=&has_storage=&has_pv=&has_ev=&
  has_heat_pumps=&legal_form=&municipality=&sharing_method=&min_members=&max_members=&scope=&limit=``:
  ranked communities with the reasons they match;
- ``GET /api/network/compare/{id}?k=10``: the community's KPIs beside its k most similar peers;
- ``GET /api/network/practices?q=&lang=&kind=&community=&topic=&limit=``: full-text search;
- ``POST /api/network/questions`` (deliver a question to a community of this node),
  ``GET /api/network/questions?to=`` (manager: read them);
- ``GET /api/network/tools``, ``POST /api/network/tools/{name}/run`` (nothing is kept);
- ``GET /api/opendata/catalog.jsonld`` (DCAT-AP), ``GET /api/opendata/{dataset}.{csv|parquet|jsonld}``.

Authorisation hook: writes of a card and reading questions call ``app.state.network_authorize(request,
action, resource_id)``, which raises an :class:`~bright.twin.errors.NgsiLdError` (``Unauthorized``,
``Forbidden``) to refuse. :func:`install` sets it to :func:`allow_all` until the roles of the network
layer (managers, members, peers) plug their own check in with ``install(app, authorize=...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

from bright.api.http import check_content_type, json_response, read_json
from bright.api.ngsild import tenant_of
from bright.network import opendata
from bright.network.cards import parse_card
from bright.network.discovery import Filters, NetworkDirectory
from bright.network.knowledge import KnowledgeError, new_question
from bright.network.tools import catalogue, network_tools, run_tool
from bright.twin.errors import BadRequestData, InvalidRequest, ResourceNotFound

__all__ = ["Authorize", "allow_all", "install", "router"]

router = APIRouter(tags=["network"])

#: ``authorize(request, action, resource_id)``: return to allow, raise an NgsiLdError to refuse.
Authorize = Callable[[Request, str, str], None]


def allow_all(_request: Request, _action: str, _resource: str) -> None:
    """The default authorisation: everything is allowed (until the network roles are installed)."""
    return None


def _directory(request: Request) -> NetworkDirectory:
    return request.app.state.discovery  # type: ignore[no-any-return]


def _authorize(request: Request, action: str, resource: str) -> None:
    check: Authorize = getattr(request.app.state, "network_authorize", allow_all)
    check(request, action, resource)


def _params(request: Request, allowed: set[str]) -> dict[str, str]:
    params = dict(request.query_params)
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidRequest(f"unknown query parameter {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")
    return params


def _bool(params: dict[str, str], name: str) -> bool | None:
    v = params.get(name)
    if v is None:
        return None
    if v.lower() in ("true", "1", "yes"):
        return True
    if v.lower() in ("false", "0", "no"):
        return False
    raise BadRequestData(f"{name} must be true or false, got {v!r}")


def _number(params: dict[str, str], name: str, kind: type = float) -> Any:
    v = params.get(name)
    if v is None:
        return None
    try:
        return kind(v)
    except ValueError:
        raise BadRequestData(
            f"{name} must be a {'number' if kind is float else 'whole number'}, got {v!r}"
        ) from None


async def _body(request: Request) -> Any:
    check_content_type(request)
    return await read_json(request, request.app.state.settings.max_body_bytes)


# --- cards ----------------------------------------------------------------------------------------


@router.get("/api/network/cards")
def list_cards(request: Request) -> Response:
    """The community cards of this node (public fields only), in creation order."""
    p = _params(request, {"limit", "offset"})
    limit = _number(p, "limit", int) or 100
    offset = _number(p, "offset", int) or 0
    if not 1 <= limit <= 1000 or offset < 0:
        raise BadRequestData(f"limit must be within 1..1000 and offset >= 0, got {limit}, {offset}")
    cards = _directory(request).cards(tenant_of(request))
    page = cards[offset : offset + limit]
    return json_response({"count": len(cards), "cards": [c.to_json() for c in page]})


@router.get("/api/network/cards/{card_id}")
def get_card(card_id: str, request: Request) -> Response:
    """One community card."""
    _params(request, set())
    return json_response(_directory(request).card(card_id, tenant_of(request)).to_json())


@router.put("/api/network/cards/{card_id}")
async def put_card(card_id: str, request: Request) -> Response:
    """Publish (create or replace) a community's card; the manager of the community only."""
    _params(request, set())
    _authorize(request, "card:write", card_id)
    card = parse_card(await _body(request), card_id=card_id)
    created = _directory(request).publish_card(card, tenant_of(request))
    return json_response(card.to_json(), status=201 if created else 200)


@router.post("/api/network/cards/{card_id}/refresh")
def refresh_card(card_id: str, request: Request) -> Response:
    """Recount the card's members, devices, place and KPIs from this node's twin (manager only)."""
    _params(request, set())
    _authorize(request, "card:write", card_id)
    return json_response(_directory(request).refresh_card(card_id, tenant_of(request)).to_json())


# --- discovery ------------------------------------------------------------------------------------

_SEARCH = {
    "like",
    "q",
    "schools",
    "within_km",
    "lat",
    "lon",
    "has_storage",
    "has_pv",
    "has_ev",
    "has_heat_pumps",
    "legal_form",
    "municipality",
    "sharing_method",
    "min_members",
    "max_members",
    "scope",
    "limit",
}


@router.get("/api/network/search")
def search(request: Request) -> Response:
    """Communities like a card and/or matching a text, filtered, best first, with explanations."""
    p = _params(request, _SEARCH)
    lat, lon = _number(p, "lat"), _number(p, "lon")
    if (lat is None) != (lon is None):
        raise BadRequestData("give both lat and lon (degrees) for a place")
    filters = Filters(
        schools=_bool(p, "schools"),
        within_km=_number(p, "within_km"),
        near=(lat, lon) if lat is not None else None,
        has_storage=_bool(p, "has_storage"),
        has_pv=_bool(p, "has_pv"),
        has_ev=_bool(p, "has_ev"),
        has_heat_pumps=_bool(p, "has_heat_pumps"),
        legal_form=p.get("legal_form"),
        municipality=p.get("municipality"),
        sharing_method=p.get("sharing_method"),
        min_members=_number(p, "min_members", int),
        max_members=_number(p, "max_members", int),
        scope=p.get("scope"),
    )
    index = _directory(request).index(tenant_of(request))
    like = p.get("like")
    if like is not None and like not in index.position:
        raise ResourceNotFound(f"no community card {like}")
    matches = index.search(like=like, q=p.get("q"), filters=filters, limit=_number(p, "limit", int) or 10)
    return json_response(
        {
            "like": like,
            "q": p.get("q"),
            "encoder": index.encoder_name,
            "count": len(matches),
            "results": [m.to_json() for m in matches],
        }
    )


@router.get("/api/network/compare/{card_id}")
def compare(card_id: str, request: Request) -> Response:
    """The community's KPIs beside those of its k most similar peers (median, quartiles, percentile)."""
    p = _params(request, {"k"})
    index = _directory(request).index(tenant_of(request))
    if card_id not in index.position:
        raise ResourceNotFound(f"no community card {card_id}")
    return json_response(index.compare(card_id, k=_number(p, "k", int) or 10).to_json())


# --- knowledge ------------------------------------------------------------------------------------


@router.get("/api/network/practices")
def practices(request: Request) -> Response:
    """Full-text search over practices, initiatives and documents (en/fr/nl)."""
    p = _params(request, {"q", "lang", "kind", "community", "topic", "limit"})
    if not p.get("q"):
        raise BadRequestData("q (the text to search) is required")
    hits = (
        _directory(request)
        .knowledge(tenant_of(request))
        .search(
            p["q"],
            lang=p.get("lang"),
            kind=p.get("kind"),
            community=p.get("community"),
            topic=p.get("topic"),
            limit=_number(p, "limit", int) or 10,
        )
    )
    return json_response({"q": p["q"], "count": len(hits), "results": [h.to_json() for h in hits]})


@router.post("/api/network/questions")
async def ask(request: Request) -> Response:
    """Deliver a question to a community of this node (201 with the stored NGSI-LD entity)."""
    _params(request, set())
    body = await _body(request)
    if not isinstance(body, dict):
        raise BadRequestData("a question must be a JSON object")
    allowed = {"to", "from", "about", "subject", "text", "lang", "reply_to", "id", "sent_at"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise KnowledgeError(f"question: unknown field {unknown[0]!r}; use {', '.join(sorted(allowed))}")
    missing = [k for k in ("to", "subject", "text", "reply_to") if k not in body]
    if missing:
        raise KnowledgeError(f"question: field {missing[0]} is required")
    if not isinstance(body["reply_to"], dict):
        raise KnowledgeError("question: field reply_to must be an object (organisation, email, url)")
    question = new_question(
        str(body["to"]),
        str(body["subject"]),
        str(body["text"]),
        body["reply_to"],
        lang=str(body.get("lang", "en")),
        from_community=body.get("from"),
        about=body.get("about"),
        question_id=body.get("id"),
    )
    entity = _directory(request).deliver_question(question, tenant_of(request))
    return json_response(entity, status=201, headers={"Location": f"/ngsi-ld/v1/entities/{question.id}"})


@router.get("/api/network/questions")
def questions(request: Request) -> Response:
    """Questions delivered to this node's communities (manager only)."""
    p = _params(request, {"to"})
    _authorize(request, "questions:read", p.get("to", "*"))
    found = _directory(request).questions(p.get("to"), tenant_of(request))
    return json_response({"count": len(found), "questions": [q.model_dump(mode="json") for q in found]})


# --- tools ----------------------------------------------------------------------------------------


@router.get("/api/network/tools")
def tools(request: Request) -> Response:
    """The tools this node runs (with JSON schemas) and those other nodes of the network offer."""
    p = _params(request, {"schemas"})
    schemas = _bool(p, "schemas")
    local = [t.describe(schemas=schemas is not False) for t in catalogue().values()]
    others = network_tools(_directory(request).cards(tenant_of(request)))
    return json_response({"tools": local, "network": others})


@router.post("/api/network/tools/{name}/run")
async def run(name: str, request: Request) -> Response:
    """Run a tool on the data in the request; the answer comes back and nothing is stored."""
    _params(request, set())
    return json_response(run_tool(name, await _body(request)), headers={"Cache-Control": "no-store"})


# --- open data ------------------------------------------------------------------------------------


@router.get("/api/opendata/catalog.jsonld")
def open_catalog(request: Request) -> Response:
    """The DCAT-AP catalogue of this node's open datasets (JSON-LD)."""
    _params(request, set())
    d = _directory(request)
    tenant = tenant_of(request)
    practices = [i for i in d.items(tenant) if i.kind == "practice"]
    publisher = f"BRIGHT node {request.app.state.settings.node_name}"
    body = opendata.catalog(str(request.base_url), d.cards(tenant), practices, publisher=publisher)  # type: ignore[arg-type]
    return json_response(body, media="application/ld+json")


@router.get("/api/opendata/{filename}")
def open_dataset(filename: str, request: Request) -> Response:
    """One open dataset (``cards``, ``kpis``, ``practices``) as ``.csv``, ``.parquet`` or ``.jsonld``."""
    _params(request, set())
    name, dot, ext = filename.rpartition(".")
    if not dot or name not in opendata.DATASETS or ext not in opendata.FORMATS:
        raise ResourceNotFound(
            f"no open dataset {filename!r}; use {{{','.join(opendata.DATASETS)}}}.{{{','.join(opendata.FORMATS)}}}"
        )
    d = _directory(request)
    tenant = tenant_of(request)
    practices = [i for i in d.items(tenant) if i.kind == "practice"]
    content, media = opendata.export(name, ext, d.cards(tenant), practices)  # type: ignore[arg-type]
    return Response(
        content=content,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def install(app: FastAPI, *, authorize: Authorize | None = None, encoder: str = "auto") -> NetworkDirectory:
    """Add the network-of-communities API to a node's app.

    Parameters
    ----------
    app
        The app of :func:`bright.api.app.create_app` (its twin is ``app.state.twin``).
    authorize
        ``authorize(request, action, resource_id)`` for manager operations (``card:write``,
        ``questions:read``); raise an NgsiLdError to refuse. Default: :func:`allow_all`.
    encoder
        Text encoder of discovery: ``auto`` (embeddings if their package is installed, else TF-IDF),
        ``tfidf`` or ``embeddings``.

    Returns
    -------
    NetworkDirectory
        The directory (also ``app.state.discovery``), listening to the twin's changes.
    """
    existing = getattr(app.state, "discovery", None)
    if isinstance(existing, NetworkDirectory):
        if authorize is not None:
            app.state.network_authorize = authorize
        return existing
    directory = NetworkDirectory(app.state.twin, encoder=encoder)
    app.state.discovery = directory
    app.state.network_authorize = authorize or allow_all
    app.include_router(router)
    return directory
