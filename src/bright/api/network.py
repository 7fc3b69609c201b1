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

import asyncio
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

from bright.api.http import check_content_type, json_response, read_json
from bright.api.ngsild import tenant_of
from bright.network import opendata
from bright.network.cards import TYPE_IRI, parse_card
from bright.network.discovery import Filters, NetworkDirectory, NetworkView, NodeRef
from bright.network.federation import loop_detected
from bright.network.knowledge import KIND_TYPES, KnowledgeError, new_question
from bright.network.tools import catalogue, network_tools, run_tool
from bright.twin.errors import BadRequestData, InvalidRequest, NgsiLdError, ResourceNotFound

__all__ = ["Authorize", "allow_all", "install", "router"]

router = APIRouter(tags=["network"])

#: ``authorize(request, action, resource_id)``: return to allow, raise an NgsiLdError to refuse.
Authorize = Callable[[Request, str, str], None]


def allow_all(_request: Request, _action: str, _resource: str) -> None:
    """The default authorisation: everything is allowed (until the network roles are installed)."""
    return None


class LoopDetected(NgsiLdError):
    kind, status, title = "LoopDetected", 508, "Loop detected"


class QuestionNotDelivered(NgsiLdError):
    kind, status, title = "BadGateway", 502, "The question could not be delivered"


def _directory(request: Request) -> NetworkDirectory:
    return request.app.state.discovery  # type: ignore[no-any-return]


def _federation(request: Request) -> Any:
    network = getattr(request.app.state, "network", None)
    return getattr(network, "federation", None)


_NETWORK_TYPES = (TYPE_IRI["EnergyCommunity"], *KIND_TYPES.values())


def _max_age_s() -> float:
    raw = os.environ.get("BRIGHT_DISCOVERY_MAX_AGE_S", "30")
    try:
        return float(raw)
    except ValueError:
        raise InvalidRequest(f"BRIGHT_DISCOVERY_MAX_AGE_S must be a number of seconds, got {raw!r}") from None


async def _view(request: Request, p: dict[str, str]) -> NetworkView:
    """What a read sees: this node's cards and knowledge, plus the registered nodes' (``local`` not true).

    A node with context source registrations for EnergyCommunity or the knowledge types (a city
    node, a district) asks those nodes for their open cards and knowledge (cached
    ``BRIGHT_DISCOVERY_MAX_AGE_S`` seconds, default 30) and searches them all.
    """
    d = _directory(request)
    tenant = tenant_of(request)
    fed = _federation(request)
    if _bool(p, "local") is not True and fed is not None:
        if loop_detected(request.headers.get("via"), fed.node_id):
            raise LoopDetected(f"this request already went through node {fed.node_id}")
        if any(fed.targets(tenant, "queryEntity", types=[t]) for t in _NETWORK_TYPES):
            await d.gather(fed, tenant, max_age_s=_max_age_s())
            return await asyncio.to_thread(d.network_view, tenant)

    def local() -> NetworkView:
        return NetworkView(d.index(tenant), d.knowledge(tenant), d.cards(tenant), d.items(tenant))

    return await asyncio.to_thread(local)


def _warned(view: NetworkView) -> dict[str, str]:
    return {"NGSILD-Warning": ", ".join(view.warnings)} if view.warnings else {}


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
async def list_cards(request: Request) -> Response:
    """The community cards of this node and of the nodes registered here (public fields only).

    ``local=true``: this node's only. Each card says which node holds it.
    """
    p = _params(request, {"limit", "offset", "local"})
    limit = _number(p, "limit", int) or 100
    offset = _number(p, "offset", int) or 0
    if not 1 <= limit <= 1000 or offset < 0:
        raise BadRequestData(f"limit must be within 1..1000 and offset >= 0, got {limit}, {offset}")
    view = await _view(request, p)
    page = view.cards[offset : offset + limit]
    return json_response(
        {
            "count": len(view.cards),
            "cards": [{**c.to_json(), "node": view.node_of(c.id).to_json()} for c in page],
            "unanswered": list(view.unanswered),
        },
        headers=_warned(view),
    )


@router.get("/api/network/cards/{card_id}")
async def get_card(card_id: str, request: Request) -> Response:
    """One community card (of this node or of a node registered here)."""
    p = _params(request, {"local"})
    view = await _view(request, p)
    if card_id not in view.index.position:
        raise ResourceNotFound(f"no community card {card_id}")
    return json_response(view.index.card(card_id).to_json(), headers=_warned(view))


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
    "local",
}


@router.get("/api/network/search")
async def search(request: Request) -> Response:
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
    limit = _number(p, "limit", int) or 10
    view = await _view(request, p)
    index = view.index
    like = p.get("like")
    if like is not None and like not in index.position:
        raise ResourceNotFound(f"no community card {like}")
    matches = index.search(like=like, q=p.get("q"), filters=filters, limit=limit)
    return json_response(
        {
            "like": like,
            "q": p.get("q"),
            "encoder": index.encoder_name,
            "count": len(matches),
            "results": [{**m.to_json(), "node": view.node_of(m.card.id).to_json()} for m in matches],
            "unanswered": list(view.unanswered),
        },
        headers=_warned(view),
    )


@router.get("/api/network/compare/{card_id}")
async def compare(card_id: str, request: Request) -> Response:
    """The community's KPIs beside those of its k most similar peers (median, quartiles, percentile)."""
    p = _params(request, {"k", "local"})
    k = _number(p, "k", int) or 10
    view = await _view(request, p)
    if card_id not in view.index.position:
        raise ResourceNotFound(f"no community card {card_id}")
    return json_response(view.index.compare(card_id, k=k).to_json(), headers=_warned(view))


# --- knowledge ------------------------------------------------------------------------------------


@router.get("/api/network/practices")
async def practices(request: Request) -> Response:
    """Full-text search over practices, initiatives and documents (en/fr/nl) of the network."""
    p = _params(request, {"q", "lang", "kind", "community", "topic", "limit", "local"})
    if not p.get("q"):
        raise BadRequestData("q (the text to search) is required")
    limit = _number(p, "limit", int) or 10
    view = await _view(request, p)
    hits = view.knowledge.search(
        p["q"],
        lang=p.get("lang"),
        kind=p.get("kind"),
        community=p.get("community"),
        topic=p.get("topic"),
        limit=limit,
    )
    return json_response(
        {
            "q": p["q"],
            "count": len(hits),
            "results": [{**h.to_json(), "node": view.node_of(h.item.id).to_json()} for h in hits],
            "unanswered": list(view.unanswered),
        },
        headers=_warned(view),
    )


@router.post("/api/network/questions")
async def ask(request: Request) -> Response:
    """Deliver a question to a community: stored here if it is this node's, else forwarded.

    A community held by a node registered here (a city asked on behalf of a member of another
    community, or a community node whose parent knows the asked one) gets the question through
    federation: ``POST /api/network/questions`` on that node, signed, with ``Via``, retried on a
    timeout or a 5xx. 201 with the delivered entity (``Location`` on the receiving node); 404 if
    no node known here holds the community; 502 if its node did not take it (naming the node).
    """
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
    sent_at = None
    if body.get("sent_at") is not None:
        try:
            sent_at = datetime.fromisoformat(str(body["sent_at"]).replace("Z", "+00:00"))
        except ValueError:
            raise KnowledgeError(
                f"question: field sent_at is not an ISO 8601 time: {body['sent_at']!r}"
            ) from None
        if sent_at.tzinfo is None:
            raise KnowledgeError("question: field sent_at needs a time zone (UTC: ...Z)")
    question = new_question(
        str(body["to"]),
        str(body["subject"]),
        str(body["text"]),
        body["reply_to"],
        lang=str(body.get("lang", "en")),
        from_community=body.get("from"),
        about=body.get("about"),
        question_id=body.get("id"),
        sent_at=sent_at,
    )
    directory = _directory(request)
    tenant = tenant_of(request)
    fed = _federation(request)
    if fed is not None and loop_detected(request.headers.get("via"), fed.node_id):
        raise LoopDetected(f"this request already went through node {fed.node_id}")
    node = await asyncio.to_thread(directory.locate, question.to_community, tenant)
    if (
        node is None
        and fed is not None
        and fed.targets(tenant, "queryEntity", types=[TYPE_IRI["EnergyCommunity"]])
    ):
        # Not here and not in the last snapshot of the network: ask the registered nodes now.
        await directory.gather(fed, tenant, max_age_s=0)
        node = directory.locate(question.to_community, tenant)
    if node is None and fed is not None and fed.config.parent_url:
        # Unknown here: the parent (city) node knows the network.
        node = NodeRef("parent", fed.config.parent_url.rstrip("/"))
    if node is None or node.endpoint is None:
        # This node's own community (or nobody's: deliver_question answers 404).
        entity = await asyncio.to_thread(directory.deliver_question, question, tenant)
        here = fed.node_id if fed is not None else "local"
        return json_response(
            entity,
            status=201,
            headers={"Location": f"/ngsi-ld/v1/entities/{question.id}", "BRIGHT-Delivered-To": here},
        )
    timeout = (
        node.registration.timeout_s if node.registration is not None else None
    ) or fed.config.forward_timeout_s
    status, answer, error, delivered_to = await directory.forward_question(
        question, node, node_id=fed.node_id, via=request.headers.get("via"), timeout_s=max(timeout, 2.0)
    )
    if status is not None and 200 <= status < 300:
        return json_response(
            answer if isinstance(answer, dict) else question.to_entity(),
            status=201,
            headers={
                "Location": f"{node.endpoint}/ngsi-ld/v1/entities/{question.id}",
                "BRIGHT-Delivered-To": delivered_to,
            },
        )
    if status is not None and status < 500 and isinstance(answer, dict) and "status" in answer:
        err = NgsiLdError(str(answer.get("detail", "")), status=status)
        err.kind = str(answer.get("type", "")).rsplit("/", 1)[-1] or "BadRequestData"
        err.title = str(answer.get("title", "The receiving node refused the question"))
        raise err
    raise QuestionNotDelivered(
        f"node {node.node} ({node.endpoint}) did not take the question to {question.to_community}: "
        f"{error or f'HTTP {status}'}",
        node=node.node,
    )


@router.get("/api/network/questions")
def questions(request: Request) -> Response:
    """Questions delivered to this node's communities (manager only)."""
    p = _params(request, {"to"})
    _authorize(request, "questions:read", p.get("to", "*"))
    found = _directory(request).questions(p.get("to"), tenant_of(request))
    return json_response({"count": len(found), "questions": [q.model_dump(mode="json") for q in found]})


# --- tools ----------------------------------------------------------------------------------------


@router.get("/api/network/tools")
async def tools(request: Request) -> Response:
    """The tools this node runs (with JSON schemas) and those other nodes of the network offer."""
    p = _params(request, {"schemas", "local"})
    schemas = _bool(p, "schemas")
    local = [t.describe(schemas=schemas is not False) for t in catalogue().values()]
    view = await _view(request, p)
    return json_response({"tools": local, "network": network_tools(view.cards)}, headers=_warned(view))


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


_QUESTION_WRITE = r"^/api/network/questions$"


def _allow_questions() -> None:
    """Let every authenticated role ask a question, and peer nodes deliver them (role table row)."""
    from bright.api.auth import WRITE_RULES, allow_write
    from bright.network.access import ROLES

    if any(rule.pattern.pattern == _QUESTION_WRITE for rule in WRITE_RULES):
        return
    allow_write(
        _QUESTION_WRITE,
        [r for r in ROLES if r != "public"],
        "members of the network ask other communities; peer nodes deliver the questions",
        methods=("POST",),
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
    _allow_questions()
    app.state.network_authorize = authorize or allow_all
    app.include_router(router)
    return directory
