"""Web pages to create and run a community (server-rendered forms, no script needed).

- ``/onboarding``: the manager's communities and a button to create one;
- ``/onboarding/new``: the guided creation (card, legal form, perimeter and locality, sharing method,
  tariffs, data policy);
- ``/onboarding/c/{id}``: one community: members with their consents, invitations (link and e-mail
  text to copy), the sharing key, the DSO pack (CSV) and the statutes checklist;
- ``/onboarding/join?token=...``: the invited person's registration (EAN, role, assets, consents,
  an account);
- ``/onboarding/me``: a member's consents (grant or revoke, with the dates), their data export
  and leaving.

The tenant of a page is the one of the invitation (join), of the manager's hosted tenant
(:meth:`bright.services.tenants.TenantRegistry.of_manager`), or of the member's invitation; the
node's default tenant otherwise. A manager of a hosted tenant only reaches that tenant's communities.
Mounted with the dashboard's pages (:func:`bright.web.app.install`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from bright.services.onboarding import (
    ASSET_TYPES,
    CONSENT_PURPOSES,
    LEGAL_FORMS,
    MEMBER_ROLES,
    PERIMETERS,
    Onboarding,
    OnboardingError,
    dso_csv,
    invitations_table,
    statutes_checklist,
)
from bright.twin.errors import NgsiLdError
from bright.web import i18n
from bright.web.app import _lang, _render, current_user
from bright.web.users import User

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


def _svc(request: Request) -> Onboarding:
    from bright.api.onboarding import onboarding_of

    return onboarding_of(request)


def _t(request: Request, key: str, **values: object) -> str:
    return i18n.translate(key, _lang(request), **values)


def _page_error(request: Request, status: int, key_or_text: str) -> HTMLResponse:
    message = _t(request, key_or_text) if key_or_text in i18n.MESSAGES else key_or_text
    return _render(request, "error.html", status=status, status_code=status, message=message)


def manager_tenant(request: Request, user: User) -> str | None:
    """The tenant a manager account runs ('' = the node's own), None for anyone else."""
    if not user.is_manager:
        return None
    from bright.api.onboarding import registry_of

    hosted = registry_of(request.app).of_manager(user.username or "")
    return hosted.name if hosted is not None else ""


def member_tenant(request: Request, user: User) -> str:
    """The tenant of a member account (from the invitation it joined with)."""
    engine = request.app.state.twin.engine
    with engine.connect() as conn:
        row = conn.execute(
            select(invitations_table.c.tenant).where(invitations_table.c.member_id == user.member_id)
        ).first()
    return str(row[0]) if row else ""


def _manager(request: Request) -> tuple[User, str] | HTMLResponse:
    user = current_user(request)
    tenant = manager_tenant(request, user)
    if tenant is None:
        if user.username is None:
            return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)  # type: ignore[return-value]
        return _page_error(request, 403, "onb.managers_only")
    return user, tenant


def _choices(request: Request) -> dict[str, Any]:
    return {
        "legal_forms": list(LEGAL_FORMS),
        "perimeters": list(PERIMETERS),
        "roles": list(MEMBER_ROLES),
        "purposes": list(CONSENT_PURPOSES),
        "methods": ["pro_rata", "fixed", "hybrid", "maximum"],
        "asset_types": list(ASSET_TYPES),
    }


# --- manager ----------------------------------------------------------------------------------------


@router.get("/onboarding", response_class=HTMLResponse)
def onboarding_home(request: Request) -> Response:
    who = _manager(request)
    if not isinstance(who, tuple):
        return who
    _, tenant = who
    from bright.services.community import list_communities

    communities = list_communities(_svc(request).twin, tenant=tenant, limit=1000)
    return _render(request, "onboarding_home.html", communities=communities, tenant=tenant)


@router.get("/onboarding/new", response_class=HTMLResponse)
def new_form(request: Request) -> Response:
    who = _manager(request)
    if not isinstance(who, tuple):
        return who
    defaults = {"supplier_price": "0.30", "feed_in_price": "0.05", "community_price": "0.17", "legal_form": "REC",
                "perimeter": "lv_cabin", "sharing_method": "pro_rata", "card_open": "on", "kpis_open": "on"}  # fmt: skip
    return _render(request, "onboarding_new.html", form=defaults, errors={}, **_choices(request))


@router.post("/onboarding/new", response_model=None)
async def new_submit(request: Request) -> Response:
    who = _manager(request)
    if not isinstance(who, tuple):
        return who
    _, tenant = who
    form = {k: str(v) for k, v in (await request.form()).items()}
    form.setdefault("card_open", "off")
    form.setdefault("kpis_open", "off")
    svc = _svc(request)
    from bright.api.onboarding import policy_seeder

    seeder = policy_seeder(svc.twin)
    try:
        created = svc.create_community(form, tenant=tenant, seed_policies=seeder)
    except OnboardingError as exc:
        errors = {exc.field or "name": exc.detail}
        return _render(
            request, "onboarding_new.html", status=400, form=form, errors=errors, **_choices(request)
        )
    except NgsiLdError as exc:
        return _render(request, "onboarding_new.html", status=exc.status, form=form,
                       errors={"slug": exc.detail}, **_choices(request))  # fmt: skip
    return RedirectResponse(f"/onboarding/c/{quote(created['id'], safe=':')}", status_code=303)


def _manage_page(
    request: Request, community_id: str, tenant: str, *, status: int = 200, **extra: Any
) -> HTMLResponse:
    svc = _svc(request)
    try:
        summary = svc.summary(community_id, tenant=tenant)
    except NgsiLdError as exc:
        return _page_error(request, exc.status, exc.detail)
    checklist = statutes_checklist(summary)
    return _render(
        request,
        "onboarding_community.html",
        status=status,
        c=summary,
        checklist=checklist.items,
        invitation=extra.pop("invitation", None),
        errors=extra.pop("errors", {}),
        **_choices(request),
        **extra,
    )


@router.get("/onboarding/c/{community_id}", response_class=HTMLResponse)
def manage(request: Request, community_id: str) -> Response:
    who = _manager(request)
    if not isinstance(who, tuple):
        return who
    return _manage_page(request, community_id, who[1])


@router.post("/onboarding/c/{community_id}/invite", response_model=None)
async def invite(request: Request, community_id: str) -> Response:
    who = _manager(request)
    if not isinstance(who, tuple):
        return who
    form = await request.form()
    email = str(form.get("email") or "").strip() or None
    try:
        inv = _svc(request).invite(community_id, tenant=who[1], email=email, lang=_lang(request))
    except NgsiLdError as exc:
        return _manage_page(request, community_id, who[1], status=exc.status, errors={"email": exc.detail})
    return _manage_page(request, community_id, who[1], invitation=inv)


@router.post("/onboarding/c/{community_id}/key", response_model=None)
async def set_key(request: Request, community_id: str) -> Response:
    who = _manager(request)
    if not isinstance(who, tuple):
        return who
    form = await request.form()
    key = {str(k)[len("key:") :]: str(v) for k, v in form.items() if str(k).startswith("key:")}
    method = str(form.get("sharing_method") or "") or None
    try:
        _svc(request).set_sharing_key(community_id, key, tenant=who[1], method=method)
    except NgsiLdError as exc:
        return _manage_page(
            request, community_id, who[1], status=exc.status, errors={"sharing_key": exc.detail}
        )
    return RedirectResponse(f"/onboarding/c/{quote(community_id, safe=':')}?saved=key", status_code=303)


@router.get("/onboarding/c/{community_id}/dso-pack.csv", response_model=None)
def dso_pack(request: Request, community_id: str) -> Response:
    who = _manager(request)
    if not isinstance(who, tuple):
        return who
    try:
        frame = _svc(request).dso_pack(community_id, tenant=who[1])
    except NgsiLdError as exc:
        return _page_error(request, exc.status, exc.detail)
    slug = community_id.rsplit(":", 1)[-1]
    return Response(
        dso_csv(frame),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="dso-pack-{slug}.csv"'},
    )


@router.get("/onboarding/c/{community_id}/statutes", response_class=HTMLResponse)
def statutes(request: Request, community_id: str) -> Response:
    who = _manager(request)
    if not isinstance(who, tuple):
        return who
    try:
        summary = _svc(request).summary(community_id, tenant=who[1])
    except NgsiLdError as exc:
        return _page_error(request, exc.status, exc.detail)
    return _render(
        request, "onboarding_statutes.html", c=summary, checklist=statutes_checklist(summary).items
    )


# --- joining ------------------------------------------------------------------------------------------


@router.get("/onboarding/join", response_class=HTMLResponse)
def join_form(request: Request, token: str = "") -> Response:
    try:
        inv = _svc(request).check_invitation(token)
    except OnboardingError as exc:
        return _page_error(request, 400, exc.detail)
    form = {"role": "consumer", "consent_sharing": "on"}
    return _render(
        request, "onboarding_join.html", token=token, inv=inv, form=form, errors={}, **_choices(request)
    )


@router.post("/onboarding/join", response_model=None)
async def join_submit(request: Request) -> Response:
    raw = {k: str(v) for k, v in (await request.form()).items()}
    token = raw.get("token", "")
    svc = _svc(request)
    try:
        inv = svc.check_invitation(token)
    except OnboardingError as exc:
        return _page_error(request, 400, exc.detail)
    assets: list[dict[str, Any]] = []
    if raw.get("pv_kwp", "").strip():
        assets.append({"type": "PhotovoltaicDevice", "peakPower": raw["pv_kwp"].replace(",", ".")})
    if raw.get("battery_kwh", "").strip():
        assets.append({"type": "Battery", "capacity": raw["battery_kwh"].replace(",", ".")})
    if raw.get("ev_kw", "").strip():
        assets.append({"type": "EVChargingStation", "chargingPower": raw["ev_kw"].replace(",", ".")})
    if raw.get("heat_pump_kw", "").strip():
        assets.append({"type": "HeatPump", "power": raw["heat_pump_kw"].replace(",", ".")})
    consents = {p: raw.get(f"consent_{p}") == "on" for p in CONSENT_PURPOSES}
    form = {**raw, "assets": assets, "consents": consents}
    from bright.api.onboarding import account_maker

    try:
        joined = svc.join(token, form, make_account=account_maker(request))
    except NgsiLdError as exc:
        field = getattr(exc, "field", None) or "name"
        return _render(request, "onboarding_join.html", status=400, token=token, inv=inv, form=raw,
                       errors={field: exc.detail}, **_choices(request))  # fmt: skip
    return _render(
        request,
        "onboarding_joined.html",
        joined=joined,
        inv=inv,
        username=raw.get("username"),
        **_choices(request),
    )


# --- the member's own page ----------------------------------------------------------------------------


def _member(request: Request) -> tuple[User, str] | Response:
    user = current_user(request)
    if user.role != "member" or not user.member_id or not user.community_id:
        if user.username is None:
            return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
        return _page_error(request, 403, "onb.members_only")
    return user, member_tenant(request, user)


@router.get("/onboarding/me", response_class=HTMLResponse)
def me(request: Request) -> Response:
    who = _member(request)
    if not isinstance(who, tuple):
        return who
    user, tenant = who
    assert user.community_id and user.member_id
    svc = _svc(request)
    try:
        consents = svc.consents(user.community_id, user.member_id, tenant=tenant)
    except NgsiLdError as exc:
        return _page_error(request, exc.status, exc.detail)
    by_purpose = {c["purpose"]: c for c in consents}
    return _render(
        request,
        "onboarding_me.html",
        consents=by_purpose,
        questionnaire=svc.questionnaire_link(user.member_id),
        **_choices(request),
    )


@router.post("/onboarding/me/consents", response_model=None)
async def me_consent(request: Request) -> Response:
    who = _member(request)
    if not isinstance(who, tuple):
        return who
    user, tenant = who
    assert user.community_id and user.member_id
    form = await request.form()
    purpose = str(form.get("purpose") or "")
    granted = str(form.get("granted") or "") == "1"
    try:
        _svc(request).set_consent(user.community_id, user.member_id, purpose, granted, tenant=tenant)
    except NgsiLdError as exc:
        return _page_error(request, exc.status, exc.detail)
    return RedirectResponse("/onboarding/me", status_code=303)


@router.get("/onboarding/me/export.zip", response_model=None)
def me_export(request: Request) -> Response:
    who = _member(request)
    if not isinstance(who, tuple):
        return who
    user, tenant = who
    assert user.community_id and user.member_id
    data = _svc(request).export_member_zip(user.community_id, user.member_id, tenant=tenant)
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="my-data.zip"'},
    )


@router.post("/onboarding/me/leave", response_model=None)
async def me_leave(request: Request) -> Response:
    who = _member(request)
    if not isinstance(who, tuple):
        return who
    user, tenant = who
    assert user.community_id and user.member_id
    form = await request.form()
    if str(form.get("confirm") or "") != "leave":
        return _page_error(request, 400, "onb.leave_confirm")
    receipt = _svc(request).leave(user.community_id, user.member_id, tenant=tenant)
    response = _render(request, "onboarding_left.html", receipt=receipt)
    response.delete_cookie("bright_session")
    return response
