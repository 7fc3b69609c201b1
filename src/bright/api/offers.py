"""B-BRIGHT REST API: service offers, members' bundles and subscriptions, providers' grants.

Routes (tenant in the ``NGSILD-Tenant`` header):

``GET    /api/offers``                                                  published offers (terms + ODRL Offer)
``POST   /api/offers``                                                  publish an offer (its provider or a manager)
``GET    /api/offers/{offer_id}``                                       one offer
``POST   /api/offers/{offer_id}/revenue``                               split a month's revenue (manager), ledger
``POST   /api/communities/{id}/members/{mid}/bundles/evaluate``         ``{"bundles": {name: [offer ids]}, "days": 365}``
``GET    /api/communities/{id}/members/{mid}/offers``                   the member's subscriptions and recommendations
``POST   /api/communities/{id}/members/{mid}/offers/{offer_id}/subscription``   subscribe (consent + agreement)
``DELETE /api/communities/{id}/members/{mid}/offers/{offer_id}/subscription``   unsubscribe (consent revoked)
``GET    /api/providers/{pid}/subscribers``                             a provider's subscribers and what it may use
``GET    /api/providers/{pid}/data?target=&start=&end=``                read a granted stream
``POST   /api/providers/{pid}/control``                                 ``{"device", "start", "end", "powerKw"}``

Providers are principals (``request.state.principal``, :mod:`bright.network.access`) with role
``energy_company`` or ``technology_provider`` and subject = the provider id (or ``token:<provider
id>``, an API token named after the provider): they see only their own
subscribers, read only the streams an Agreement grants them and control a device only inside the
agreement's window; anything else is a 403 ProblemDetails naming the agreement. A member (or the
community's manager) evaluates bundles and subscribes; an authenticated principal acting for
another member is refused, and an anonymous caller is accepted as on the rest of a node without
authentication.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from bright.api.http import json_response, read_json
from bright.network.access import Principal, principal_of
from bright.services.offers import GrantDenied, OfferInputError, OfferService, offer_policy
from bright.twin.errors import BadRequestData
from bright.twin.series import SeriesStore
from bright.twin.vocabulary import bright_context

__all__ = ["install", "router"]

router = APIRouter(prefix="/api", tags=["offers (B-BRIGHT)"])
PROVIDER_ROLES = ("energy_company", "technology_provider")


def _service(request: Request) -> OfferService:
    svc: OfferService = request.app.state.offers
    return svc


def _tenant(request: Request) -> str:
    tenant = request.headers.get("ngsild-tenant", "").strip()
    if tenant and (len(tenant) > 128 or not all(c.isalnum() or c in "-_.:/" for c in tenant)):
        raise BadRequestData(f"NGSILD-Tenant {tenant!r} is not a valid tenant name")
    return tenant


def _provider(request: Request, provider_id: str) -> Principal:
    """The caller, who must be the provider itself (or the community's manager)."""
    p = principal_of(request)
    if p.role == "manager":
        return p
    # the subject of a provider's API token is ``token:<name>``: a token named after the provider
    if p.role in PROVIDER_ROLES and p.subject in (provider_id, f"token:{provider_id}"):
        return p
    who = "an anonymous caller" if p.anonymous else f"{p.role} {p.subject or ''}".strip()
    raise GrantDenied(f"{who} may not act for provider {provider_id}")


def _for_member(request: Request, member_id: str) -> None:
    p = principal_of(request)
    if p.anonymous or p.role == "manager" or p.member_id == member_id:
        return
    raise GrantDenied(f"{p.role} {p.subject or ''} may not act for member {member_id}".replace("  ", " "))


def _offer_json(svc: OfferService, offer: Any) -> dict[str, Any]:
    return {**offer.to_json(), "odrl": offer_policy(offer)}


@router.get("/offers", summary="Published service offers")
def list_offers(request: Request, provider: str | None = None) -> Response:
    """Every published offer with its terms and its ODRL 2.2 ``Offer`` policy."""
    svc = _service(request)
    return json_response(
        [_offer_json(svc, o) for o in svc.offers(tenant=_tenant(request), provider_id=provider)]
    )


@router.post("/offers", summary="Publish a service offer", status_code=201)
async def post_offer(request: Request) -> Response:
    """Publish (or replace) an offer; the body is the terms of ``GET /api/offers/{id}`` without ``odrl``."""
    svc = _service(request)
    body = await read_json(request, request.app.state.settings.max_body_bytes)
    if not isinstance(body, dict):
        raise BadRequestData("the body must be the offer's terms (an object)")
    body.pop("odrl", None)
    provider = body.get("providerId")
    if not isinstance(provider, str) or not provider:
        raise OfferInputError("providerId is required")
    _provider(request, provider)
    offer = await run_in_threadpool(svc.publish, body, tenant=_tenant(request))
    return json_response(_offer_json(svc, offer), status=201)


@router.get("/offers/{offer_id}", summary="One offer")
def get_offer(request: Request, offer_id: str) -> Response:
    svc = _service(request)
    return json_response(_offer_json(svc, svc.offer(offer_id, tenant=_tenant(request))))


@router.post(
    "/offers/{offer_id}/revenue", summary="Split and settle an offer's monthly revenue", status_code=201
)
async def post_revenue(request: Request, offer_id: str) -> Response:
    """The community's rule over one month's revenue of an offer (manager only): body ``{"month":
    "2024-01", "revenueEur": {member: EUR}, "method": "fixed|pro_rata|shapley", "communityShare",
    "shares", "contributions", "minBidKw"}``; the members' shares are recorded in the node's ledger."""
    p = principal_of(request)
    if p.role != "manager":
        raise GrantDenied(f"role {p.role} may not settle revenue (the community's manager does)")
    svc = _service(request)
    body = await read_json(request, request.app.state.settings.max_body_bytes)
    allowed = {"month", "revenueEur", "method", "communityShare", "shares", "contributions", "minBidKw"}
    if not isinstance(body, dict) or not {"month", "revenueEur"} <= set(body) or set(body) - allowed:
        raise BadRequestData(
            f"the body must be an object with month and revenueEur (fields: {', '.join(sorted(allowed))})"
        )
    if not isinstance(body["revenueEur"], dict):
        raise BadRequestData("revenueEur must map members to EUR")
    out = await run_in_threadpool(
        svc.settle_revenue,
        offer_id,
        str(body["month"]),
        body["revenueEur"],
        method=str(body.get("method", "pro_rata")),
        community_share=body.get("communityShare", 0.0),
        shares=body.get("shares"),
        contributions=body.get("contributions"),
        min_bid_kw=body.get("minBidKw"),
        ledger=getattr(request.app.state, "ledger", None),
        tenant=_tenant(request),
    )
    return json_response(out, status=201)


@router.post(
    "/communities/{community_id}/members/{member_id}/bundles/evaluate", summary="Value bundles of offers"
)
async def evaluate(request: Request, community_id: str, member_id: str) -> Response:
    """Value each bundle over a year (or ``days``) with the flexibility optimiser, against its best
    single offer; the answer names the plan taken, each offer's value and what the member grants."""
    _for_member(request, member_id)
    svc = _service(request)
    body = await read_json(request, request.app.state.settings.max_body_bytes)
    if not isinstance(body, dict):
        raise BadRequestData('the body must be an object {"bundles": {name: [offer ids]}, "days": 365}')
    unknown = sorted(set(body) - {"bundles", "days"})
    if unknown:
        raise BadRequestData(f"unknown field(s) {', '.join(unknown)}; expected bundles, days")
    bundles = body.get("bundles")
    if isinstance(bundles, list):
        bundles = {f"bundle {i + 1}": b for i, b in enumerate(bundles)}
    if not isinstance(bundles, dict) or not all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in bundles.values()
    ):
        raise BadRequestData("bundles must map a name to a list of offer ids")
    days = body.get("days")
    if days is not None and (isinstance(days, bool) or not isinstance(days, int)):
        raise BadRequestData(f"days must be an integer 1-366, got {days!r}")
    cmp = await run_in_threadpool(
        svc.evaluate, community_id, member_id, bundles, tenant=_tenant(request), days=days
    )
    return json_response(
        {
            "member": member_id,
            "community": community_id,
            "home": svc.member_home(community_id, member_id, tenant=_tenant(request), days=days).source,
            "baselineCostEur": round(cmp.baseline_cost_eur, 2),
            "plansSolved": cmp.plans_solved,
            "bundles": [b.to_json() for b in cmp.bundles],
        }
    )


@router.get("/communities/{community_id}/members/{member_id}/offers", summary="A member's offers")
def member_offers(
    request: Request, community_id: str, member_id: str, category: str | None = None
) -> Response:
    """The member's subscriptions and the offers in the order its S-BRIGHT category suggests."""
    _for_member(request, member_id)
    svc = _service(request)
    tenant = _tenant(request)
    subs = [s.to_json() for s in svc.subscriptions(tenant=tenant, member_id=member_id)]
    recs = svc.recommendations(member_id, tenant=tenant, category=category)
    return json_response({"member": member_id, "community": community_id, "subscriptions": subs, **recs})


@router.post(
    "/communities/{community_id}/members/{member_id}/offers/{offer_id}/subscription",
    summary="Subscribe a member to an offer",
    status_code=201,
)
async def subscribe(request: Request, community_id: str, member_id: str, offer_id: str) -> Response:
    """Record the member's consent (purpose ``offer:<id>``) and the ODRL Agreement of the grants."""
    _for_member(request, member_id)
    svc = _service(request)
    sub = await run_in_threadpool(svc.subscribe, community_id, member_id, offer_id, tenant=_tenant(request))
    return json_response(sub.to_json(), status=201)


@router.delete(
    "/communities/{community_id}/members/{member_id}/offers/{offer_id}/subscription",
    summary="Unsubscribe: revoke the consent",
)
async def unsubscribe(request: Request, community_id: str, member_id: str, offer_id: str) -> Response:
    _for_member(request, member_id)
    svc = _service(request)
    sub = await run_in_threadpool(svc.unsubscribe, community_id, member_id, offer_id, tenant=_tenant(request))
    return json_response(sub.to_json())


@router.get("/providers/{provider_id}/subscribers", summary="A provider's subscribers and grants")
def subscribers(request: Request, provider_id: str) -> Response:
    """Each subscription to the provider's offers with the data and control it grants."""
    _provider(request, provider_id)
    svc = _service(request)
    subs = svc.subscriptions(tenant=_tenant(request), provider_id=provider_id)
    return json_response({"provider": provider_id, "subscriptions": [s.to_json() for s in subs]})


@router.get("/providers/{provider_id}/data", summary="Read a granted stream")
def provider_data(
    request: Request, provider_id: str, target: str, start: str | None = None, end: str | None = None
) -> Response:
    """The series of ``target`` (``<entity id>#<attribute>``) if an active agreement grants it."""
    _provider(request, provider_id)
    svc = _service(request)
    tenant = _tenant(request)
    agreement = svc.check_grant(provider_id, target, "read", tenant=tenant)
    entity, _, attribute = target.partition("#")
    values: list[dict[str, Any]] = []
    if attribute:
        store = getattr(request.app.state, "series", None)
        if store is None:
            store = SeriesStore(request.app.state.twin.engine)
            request.app.state.series = store
        frame = store.read(entity, bright_context().expand(attribute), start, end, tenant=tenant)
        col = frame.get(entity)
        if col is not None:
            kept = col.dropna()
            stamps = pd.DatetimeIndex(kept.index).strftime("%Y-%m-%dT%H:%M:%SZ")
            values = [{"time": t, "value": float(v)} for t, v in zip(stamps, kept.to_numpy(), strict=True)]
    return json_response(
        {"provider": provider_id, "target": target, "agreement": agreement, "values": values}
    )


@router.post("/providers/{provider_id}/control", summary="Schedule a granted device")
async def provider_control(request: Request, provider_id: str) -> Response:
    """Accept a setpoint ``{"device", "start", "end", "powerKw"}`` only inside the agreement's window."""
    _provider(request, provider_id)
    svc = _service(request)
    body = await read_json(request, request.app.state.settings.max_body_bytes)
    if not isinstance(body, dict) or not {"device", "start", "end", "powerKw"} <= set(body):
        raise BadRequestData('the body must be {"device", "start", "end", "powerKw"}')
    power = body["powerKw"]
    if isinstance(power, bool) or not isinstance(power, int | float):
        raise BadRequestData("powerKw must be a number (kW)")
    out = await run_in_threadpool(
        svc.control_request,
        provider_id,
        str(body["device"]),
        body["start"],
        body["end"],
        float(power),
        tenant=_tenant(request),
    )
    return json_response(out, status=201)


def install(app: FastAPI, *, service: OfferService | None = None) -> OfferService:
    """Mount the offer routes; the service is stored on ``app.state.offers``."""
    if service is None:
        twin = app.state.twin
        service = OfferService(twin, series=SeriesStore(twin.engine))
    app.state.offers = service
    app.include_router(router)
    _register_access_rules()
    return service


_RULES_REGISTERED = False


def _register_access_rules() -> None:
    """Rows of the node's role table (:mod:`bright.api.auth`) for the routes that check providers here."""
    global _RULES_REGISTERED
    if _RULES_REGISTERED:
        return
    from bright.api import auth

    auth.allow_write(r"^/api/offers$", PROVIDER_ROLES, "providers publish their own offers", ("POST",))
    auth.allow_write(
        r"^/api/providers/[^/]+/control$",
        PROVIDER_ROLES,
        "providers schedule devices an offer agreement grants them (checked by the offers API)",
        ("POST",),
    )
    if "/api/providers/" not in auth.SELF_GUARDED:
        auth.SELF_GUARDED.append("/api/providers/")  # the routes check the provider and its agreements
    _RULES_REGISTERED = True
