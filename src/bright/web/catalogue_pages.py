"""The network's knowledge in the dashboard: practices, initiatives, documents, questions, tools, city.

- ``/catalogue`` (everyone): the practices, initiatives and documents of the network. With a query
  ``q`` (English, French or Dutch) the page shows the ranked hits of ``GET /api/network/practices``
  (asked in-process, so the page and the API agree, the registered nodes' items included); without
  one it lists this node's items. Filters: item ``kind`` (practice, initiative, document), text
  ``lang``, ``community`` (card id), ``topic`` and ``ckind``: the kind of community, from the item's
  community card (:func:`community_kind`: ``school``, ``households``, ``smes``,
  ``public_buildings`` or ``other``).
- ``/catalogue/tools`` and ``/catalogue/tools/{name}`` (everyone): the tools this node runs
  (:func:`bright.network.tools.catalogue`) with their inputs and outputs (from the JSON schemas), and
  the tools the network's other nodes offer on their cards.
- ``/catalogue/questions`` (member, manager): the form to ask a community a question, posted to
  ``POST /api/network/questions`` in-process (stored here or forwarded to the community's node);
  the API's message is shown next to the field it names. The manager also sees the questions
  delivered to this node's communities.
- ``/city`` (everyone; meaningful on a ``--role network`` node): the city twin's aggregate of the
  communities (``GET /api/network/aggregate?breakdown=true``): totals, offtake / injection / shared
  energy per community as ECharts bars, and which nodes did not answer.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bright.network.knowledge import LANGUAGES, TOPICS
from bright.network.tools import catalogue, network_tools
from bright.web import i18n
from bright.web.app import TENANT, WebError, _lang, _render, current_user

__all__ = ["COMMUNITY_KINDS", "KINDS", "QUESTION_FIELDS", "community_kind", "question_field", "router"]

router = APIRouter(include_in_schema=False)

#: Kinds of knowledge items.
KINDS = ("practice", "initiative", "document")
#: Kinds of community (see :func:`community_kind`).
COMMUNITY_KINDS = ("school", "households", "smes", "public_buildings", "other")
#: Fields of the question form, in the order a message is matched against them.
QUESTION_FIELDS = ("reply_to", "organisation", "email", "subject", "text", "lang", "to")


def _t(request: Request, key: str, **values: object) -> str:
    return i18n.translate(key, _lang(request), **values)


async def _api(request: Request, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """This node's own API, in-process, with the visitor's session cookie (its access rules apply)."""
    headers = {"Accept": "application/json"}
    if request.headers.get("cookie"):
        headers["Cookie"] = request.headers["cookie"]
    transport = httpx.ASGITransport(app=request.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://node", timeout=60) as client:
        return await client.request(method, path, headers=headers, **kwargs)


def _problem(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:300]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)
    return str(body)[:300]


def _directory(request: Request) -> Any:
    directory = getattr(request.app.state, "discovery", None)
    if directory is None:
        raise WebError(404, _t(request, "unavailable"))
    return directory


def _cards(request: Request) -> dict[str, Any]:
    directory = _directory(request)
    return {c.id: c for c in directory.network_view(TENANT).cards}


def community_kind(card: Any) -> str | None:
    """The kind of a community from its card's member counts.

    ``school`` when a school is a member, else its largest member group (``households``,
    ``smes``, ``public_buildings``, ``other``; ties in that order); None without members.
    """
    if card is None:
        return None
    m = card.members
    if m.schools > 0:
        return "school"
    counts = {"households": m.households, "smes": m.smes, "public_buildings": m.public_buildings,
              "other": m.other}  # fmt: skip
    best = max(counts, key=lambda k: counts[k])
    return best if counts[best] > 0 else None


def _item_view(item: Any, lang: str, cards: dict[str, Any]) -> dict[str, Any]:
    title = item.title.get(lang) or next(iter(item.title.values()), item.id)
    card = cards.get(item.community)
    return {
        "id": item.id,
        "kind": item.kind,
        "community": item.community,
        "community_name": card.name if card else item.community,
        "ckind": community_kind(card),
        "title": title,
        "languages": list(item.languages()),
        "topics": list(getattr(item, "topics", ()) or ()),
    }


@router.get("/catalogue", response_class=HTMLResponse)
async def catalogue_page(request: Request) -> HTMLResponse:
    lang = _lang(request)
    params = {k: str(v).strip() for k, v in request.query_params.items()}
    errors: dict[str, str] = {}
    if params.get("kind") and params["kind"] not in KINDS:
        errors["kind"] = _t(request, "cat.err_choice", choices=", ".join(KINDS))
    if params.get("lang_text") and params["lang_text"] not in LANGUAGES:
        errors["lang_text"] = _t(request, "cat.err_choice", choices=", ".join(LANGUAGES))
    if params.get("topic") and params["topic"] not in TOPICS:
        errors["topic"] = _t(request, "cat.err_choice", choices=", ".join(TOPICS))
    cards = _cards(request)
    if params.get("ckind") and params["ckind"] not in COMMUNITY_KINDS:
        errors["ckind"] = _t(request, "cat.err_choice", choices=", ".join(COMMUNITY_KINDS))
    results: list[dict[str, Any]] = []
    searched = bool(params.get("q"))
    if not errors and searched:
        query = {"q": params["q"], "limit": "100"}
        for name, api_name in (("kind", "kind"), ("lang_text", "lang"), ("community", "community"),
                               ("topic", "topic")):  # fmt: skip
            if params.get(name):
                query[api_name] = params[name]
        answer = await _api(request, "GET", "/api/network/practices", params=query)
        if answer.status_code >= 400:
            errors["q"] = _problem(answer)
        else:
            for hit in answer.json()["results"]:
                card = cards.get(hit["community"])
                results.append(
                    {
                        "id": hit["id"],
                        "kind": hit["kind"],
                        "community": hit["community"],
                        "community_name": card.name if card else hit["community"],
                        "ckind": community_kind(card),
                        "title": hit["title"],
                        "lang": hit["lang"],
                        "snippet": hit["snippet"],
                        "score": hit["score"],
                        "node": hit.get("node", {}).get("node")
                        if isinstance(hit.get("node"), dict)
                        else None,
                    }
                )
    elif not errors:
        for item in _directory(request).items(TENANT):
            view = _item_view(item, lang, cards)
            if params.get("kind") and view["kind"] != params["kind"]:
                continue
            if params.get("lang_text") and params["lang_text"] not in view["languages"]:
                continue
            if params.get("community") and view["community"] != params["community"]:
                continue
            if params.get("topic") and params["topic"] not in view["topics"]:
                continue
            results.append(view)
        results.sort(key=lambda r: (r["kind"], str(r["title"]).lower()))
    if params.get("ckind") and not errors:
        results = [r for r in results if r["ckind"] == params["ckind"]]
    return _render(
        request,
        "catalogue.html",
        status=400 if errors else 200,
        form=params,
        errors=errors,
        results=results,
        searched=searched,
        kinds=KINDS,
        text_languages=LANGUAGES,
        topics=TOPICS,
        cards=sorted(cards.values(), key=lambda c: c.name),
        community_kinds=COMMUNITY_KINDS,
    )


# --- tools ---------------------------------------------------------------------------------------


def _schema_fields(schema: dict[str, Any] | None) -> list[dict[str, str]]:
    """The top-level fields of a JSON schema: name, type, required, description."""
    if not schema:
        return []
    required = set(schema.get("required", []))
    out = []
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type") or " | ".join(
            str(p.get("type") or p.get("$ref", "").rsplit("/", 1)[-1]) for p in prop.get("anyOf", [])
        )
        if not kind and "$ref" in prop:
            kind = prop["$ref"].rsplit("/", 1)[-1]
        out.append(
            {
                "name": name,
                "type": str(kind or "object"),
                "required": "yes" if name in required else "",
                "description": str(prop.get("description") or prop.get("title") or ""),
            }
        )
    return out


@router.get("/catalogue/tools", response_class=HTMLResponse)
def tools_page(request: Request) -> HTMLResponse:
    local = [t.describe(schemas=False) for t in catalogue().values()]
    offered = network_tools(list(_cards(request).values()))
    return _render(request, "catalogue_tools.html", tools=local, offered=offered)


@router.get("/catalogue/tools/{name}", response_class=HTMLResponse)
def tool_page(request: Request, name: str) -> HTMLResponse:
    tool = catalogue().get(name)
    offered = [o for o in network_tools(list(_cards(request).values())) if o["tool"] == name]
    if tool is None and not offered:
        raise WebError(404, _t(request, "cat.no_tool", name=name))
    described = tool.describe(schemas=True) if tool is not None else None
    return _render(
        request,
        "catalogue_tool.html",
        tool_name=name,
        tool=described,
        inputs=_schema_fields(described["inputSchema"]) if described else [],
        outputs=_schema_fields(described["outputSchema"]) if described else [],
        offered=offered,
    )


# --- questions -----------------------------------------------------------------------------------


def question_field(message: str) -> str:
    """The form field an API message about a question names (``text`` when it names none)."""
    for name in QUESTION_FIELDS:
        if re.search(rf"\b{name}\b", message):
            if name in ("reply_to", "organisation"):
                return "organisation"
            return name
    return "text"


def _asker(request: Request) -> Any:
    user = current_user(request)
    if user.username is None:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    if user.role not in ("member", "manager"):
        raise WebError(403, _t(request, "cat.members_only"))
    return user


def _questions_page(
    request: Request, user: Any, form: dict[str, str], errors: dict[str, str], *, status: int = 200,
    sent: dict[str, Any] | None = None,
) -> HTMLResponse:  # fmt: skip
    delivered = []
    if user.is_manager:
        delivered = [q.model_dump(mode="json") for q in _directory(request).questions(None, TENANT)]
        delivered.reverse()
    cards = sorted(_cards(request).values(), key=lambda c: c.name)
    return _render(
        request,
        "catalogue_questions.html",
        status=status,
        form=form,
        errors=errors,
        cards=cards,
        text_languages=LANGUAGES,
        delivered=delivered,
        sent=sent,
    )


@router.get("/catalogue/questions", response_class=HTMLResponse)
def questions_form(request: Request) -> Response:
    user = _asker(request)
    if isinstance(user, Response):
        return user
    form = {"to": request.query_params.get("to", ""), "about": request.query_params.get("about", ""),
            "lang": _lang(request), "from": user.community_id or ""}  # fmt: skip
    return _questions_page(request, user, form, {})


@router.post("/catalogue/questions", response_model=None)
async def questions_submit(request: Request) -> Response:
    user = _asker(request)
    if isinstance(user, Response):
        return user
    form = {k: str(v).strip() for k, v in (await request.form()).items()}
    errors: dict[str, str] = {}
    for name in ("to", "subject", "text", "organisation"):
        if not form.get(name):
            errors[name] = _t(request, "cat.err_required")
    if not form.get("email") and not form.get("url"):
        errors["email"] = _t(request, "cat.err_contact")
    if errors:
        return _questions_page(request, user, form, errors, status=400)
    reply_to = {"organisation": form["organisation"]}
    for name in ("email", "url"):
        if form.get(name):
            reply_to[name] = form[name]
    body: dict[str, Any] = {
        "to": form["to"],
        "subject": form["subject"],
        "text": form["text"],
        "lang": form.get("lang") or "en",
        "reply_to": reply_to,
    }
    if form.get("from"):
        body["from"] = form["from"]
    if form.get("about"):
        body["about"] = form["about"]
    answer = await _api(request, "POST", "/api/network/questions", json=body)
    if answer.status_code >= 400:
        message = _problem(answer)
        return _questions_page(
            request, user, form, {question_field(message): message}, status=answer.status_code
        )
    sent = {"id": answer.json().get("id"), "to": answer.headers.get("BRIGHT-Delivered-To")}
    return _questions_page(request, user, {"lang": form.get("lang", "en")}, {}, sent=sent, status=201)


# --- city twin -----------------------------------------------------------------------------------

#: KPIs drawn as bars per community: key -> message key.
CITY_BARS = {"offtake_kwh": "kpi.consumption", "injection_kwh": "city.injection", "shared_kwh": "kpi.shared"}


@router.get("/city", response_class=HTMLResponse)
async def city_page(request: Request) -> HTMLResponse:
    if getattr(request.app.state, "city", None) is None:
        raise WebError(404, _t(request, "unavailable"))
    params = {k: str(v).strip() for k, v in request.query_params.items()}
    query = {"breakdown": "true", "frequency": params.get("frequency") or "monthly"}
    if params.get("period"):
        query["period"] = params["period"]
    answer = await _api(request, "GET", "/api/network/aggregate", params=query)
    errors: dict[str, str] = {}
    body: dict[str, Any] = {}
    if answer.status_code >= 400:
        message = _problem(answer)
        errors["period" if "period" in message else "frequency"] = message
    else:
        body = answer.json()
    communities = body.get("communities", [])
    chart = {
        "names": [c["name"] for c in communities],
        "series": [
            {"key": key, "name": _t(request, label), "values": [c["kpis"].get(key) for c in communities]}
            for key, label in CITY_BARS.items()
        ],
    }
    from bright.network.city import role_of

    return _render(
        request,
        "city.html",
        status=400 if errors else 200,
        form=params,
        errors=errors,
        city=body,
        communities=communities,
        chart_json=json.dumps(chart).replace("</", "<\\/"),
        role=role_of(getattr(request.app.state, "settings", None)),
    )
