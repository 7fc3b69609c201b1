"""B-BRIGHT in the dashboard: a member compares bundles of service offers and subscribes; a
provider sees its subscribers and the data and control it may use.

- ``/communities/{id}/members/{member}/offers``: the offers in the order the member's S-BRIGHT
  category suggests (with the reason), a bundle comparison (tick offers, value them over ``days`` of
  the member's year with the flexibility optimiser, against the best single offer) and, per offer, a
  subscription form whose consent box lists the data and control granted; the member's active
  subscriptions with an unsubscribe button. The member only subscribes for themselves; the manager
  may look.
- ``/providers/{provider}/subscribers``: a provider account (role ``energy_company`` or
  ``technology_provider`` whose user name is the provider id) or the manager sees each subscriber,
  the agreement and what it grants (stream or device, purpose, retention, hours).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from bright.energy.offers import grants_of
from bright.services.offers import OfferService, purpose_of
from bright.twin.errors import NgsiLdError
from bright.web import i18n
from bright.web.app import TENANT, WebError, _community, _lang, _render, _twin, current_user

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
PROVIDER_ROLES = ("energy_company", "technology_provider")
DAYS = (7, 28, 365)


def _service(request: Request) -> OfferService:
    svc = getattr(request.app.state, "offers", None)
    if not isinstance(svc, OfferService):
        twin, _ = _twin(request)
        svc = OfferService(twin)
        request.app.state.offers = svc
    return svc


def _member(request: Request, community_id: str, member_id: str) -> tuple[Any, str]:
    community = _community(request, community_id)
    lang = _lang(request)
    try:
        mid = community.member(member_id).id
    except (KeyError, ValueError, NgsiLdError):
        raise WebError(404, i18n.translate("error.404", lang)) from None
    if not current_user(request).may_see_member(mid):
        raise WebError(403, i18n.translate("error.403", lang))
    return community, mid


def _page(
    request: Request,
    community: Any,
    mid: str,
    *,
    status: int = 200,
    comparison: Any = None,
    selected: list[str] | None = None,
    days: int = 28,
    error: str | None = None,
    done: str | None = None,
) -> HTMLResponse:
    svc = _service(request)
    offers = svc.offers(tenant=TENANT)
    by_id = {o.id: o for o in offers}
    recs = svc.recommendations(mid, tenant=TENANT)
    subs = {s.offer_id: s for s in svc.subscriptions(tenant=TENANT, member_id=mid)}
    return _render(
        request,
        "offers_member.html",
        status=status,
        community=community,
        member=community.member(mid),
        recs=recs,
        offers=by_id,
        grants={o.id: grants_of([o]) for o in offers},
        subs=subs,
        comparison=comparison,
        selected=selected or [],
        days=days,
        day_choices=DAYS,
        error=error,
        done=done,
        may_act=current_user(request).member_id == mid,
        purpose_of=purpose_of,
    )


@router.get("/communities/{community_id}/members/{member_id}/offers", response_class=HTMLResponse)
def offers_page(request: Request, community_id: str, member_id: str) -> HTMLResponse:
    community, mid = _member(request, community_id, member_id)
    return _page(request, community, mid, done=request.query_params.get("done"))


@router.post("/communities/{community_id}/members/{member_id}/offers/compare", response_class=HTMLResponse)
async def compare(request: Request, community_id: str, member_id: str) -> HTMLResponse:
    """Value the ticked offers together (the bundle) and each alone."""
    community, mid = _member(request, community_id, member_id)
    lang = _lang(request)
    form = await request.form()
    chosen = [str(v) for v in form.getlist("offer")]
    try:
        days = int(str(form.get("days") or 28))
    except ValueError:
        days = 0
    if days not in DAYS:
        return _page(
            request, community, mid, status=400, selected=chosen, error=i18n.translate("of.err_days", lang)
        )
    if not chosen:
        return _page(
            request, community, mid, status=400, error=i18n.translate("of.err_none", lang), days=days
        )
    svc = _service(request)
    try:
        cmp = await run_in_threadpool(
            svc.evaluate, community.id, mid, {"bundle": chosen}, tenant=TENANT, days=days
        )
    except NgsiLdError as exc:
        return _page(request, community, mid, status=400, selected=chosen, error=exc.detail, days=days)
    return _page(request, community, mid, comparison=cmp.bundles[0], selected=chosen, days=days)


@router.post("/communities/{community_id}/members/{member_id}/offers/subscription", response_model=None)
async def subscription(request: Request, community_id: str, member_id: str) -> Response:
    """Subscribe (the consent box ticked) or unsubscribe (``action=unsubscribe``) the member itself."""
    community, mid = _member(request, community_id, member_id)
    lang = _lang(request)
    if current_user(request).member_id != mid:  # nobody consents for a member
        raise WebError(403, i18n.translate("error.403", lang))
    form = await request.form()
    offer_id = str(form.get("offer") or "")
    svc = _service(request)
    base = f"/communities/{community_id}/members/{member_id}/offers"
    try:
        if form.get("action") == "unsubscribe":
            await run_in_threadpool(svc.unsubscribe, community.id, mid, offer_id, tenant=TENANT)
            return RedirectResponse(f"{base}?done=unsubscribed", status_code=303)
        if form.get("consent") != "yes":
            return _page(request, community, mid, status=400, error=i18n.translate("of.err_consent", lang))
        await run_in_threadpool(svc.subscribe, community.id, mid, offer_id, tenant=TENANT)
    except NgsiLdError as exc:
        return _page(
            request, community, mid, status=exc.status if exc.status < 500 else 400, error=exc.detail
        )
    return RedirectResponse(f"{base}?done=subscribed", status_code=303)


@router.get("/providers/{provider_id:path}/subscribers", response_class=HTMLResponse)
def provider_page(request: Request, provider_id: str) -> HTMLResponse:
    user = current_user(request)
    if not (user.is_manager or (user.role in PROVIDER_ROLES and user.username == provider_id)):
        raise WebError(403, i18n.translate("error.403", _lang(request)))
    svc = _service(request)
    subs = svc.subscriptions(tenant=TENANT, provider_id=provider_id)
    offers = svc.offers(tenant=TENANT, provider_id=provider_id)
    return _render(request, "offers_provider.html", provider=provider_id, subs=subs, offers=offers)
