"""REST API to create and run a community: ``/api/onboarding/...`` (tenant: ``NGSILD-Tenant``).

Thin over :mod:`bright.services.onboarding`:

==========================================================================  =====================================
``POST /api/onboarding/communities``                                         create a community (the wizard)
``GET  /api/onboarding/communities/{cid}``                                   card, settings, members, invitations
``POST /api/onboarding/communities/{cid}/invitations``                       a signed, expiring invitation
``GET  /api/onboarding/invitations/{token}``                                 what an invitation is for
``POST /api/onboarding/join``                                                self-registration with the token
``GET  /api/onboarding/communities/{cid}/members``                           members, EANs, consents
``PUT  /api/onboarding/communities/{cid}/members/{mid}/meter``               bind the meter to an EAN
``POST /api/onboarding/communities/{cid}/members/{mid}/assets``              declare assets
``GET  /api/onboarding/communities/{cid}/members/{mid}/consents``            consents with their dates
``PUT  /api/onboarding/communities/{cid}/members/{mid}/consents/{purpose}``  grant / revoke (``{"granted"}``)
``GET  /api/onboarding/communities/{cid}/members/{mid}/questionnaire``       the S-BRIGHT questionnaire link
``GET  /api/onboarding/communities/{cid}/members/{mid}/export``              GDPR export (``format=json|zip``)
``POST /api/onboarding/communities/{cid}/members/{mid}/leave``               erase or anonymise, then leave
``PUT  /api/onboarding/communities/{cid}/sharing-key``                       the fixed key (percent per member)
``GET  /api/onboarding/communities/{cid}/dso-pack``                          access points for the DSO (CSV/JSON)
``GET  /api/onboarding/communities/{cid}/statutes``                          statutes checklist (md/html/json)
``GET  /api/onboarding/ean/{ean}``                                           check an EAN (format and check digit)
==========================================================================  =====================================

:func:`install` also puts the tenant-quota middleware in front of the app; the web wizard
(:mod:`bright.web.onboarding`) is mounted with the dashboard's pages. Errors are NGSI-LD ProblemDetails; a bad form field is
named in ``field``.
"""

from __future__ import annotations

import asyncio
import html
import json
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from bright.api.http import json_response, problem_response
from bright.api.ngsild import tenant_of
from bright.services.onboarding import (
    Onboarding,
    OnboardingError,
    check_ean,
    dso_csv,
    statutes_checklist,
)
from bright.services.tenants import TenantQuotaExceeded, TenantRegistry
from bright.twin.errors import BadRequestData
from bright.twin.series import SeriesStore
from bright.twin.service import TwinService

__all__ = ["TenantQuotaMiddleware", "install", "onboarding_of", "registry_of", "router"]

router = APIRouter(prefix="/api/onboarding", tags=["onboarding"])


def onboarding_of(request: Request) -> Onboarding:
    """The node's :class:`Onboarding` (one per app, on the app's twin)."""
    twin: TwinService = request.app.state.twin
    found = getattr(request.app.state, "onboarding", None)
    if not isinstance(found, Onboarding) or found.twin is not twin:
        series = getattr(request.app.state, "series", None)
        if not isinstance(series, SeriesStore) or series.engine is not twin.engine:
            series = None
        found = Onboarding(twin, series, base_url=str(request.base_url).rstrip("/"))
        request.app.state.onboarding = found
    return found


def registry_of(app: Any) -> TenantRegistry:
    """The node's registry of hosted tenants."""
    twin: TwinService = app.state.twin
    found = getattr(app.state, "tenants", None)
    if not isinstance(found, TenantRegistry) or found.engine is not twin.engine:
        found = TenantRegistry(twin.engine)
        app.state.tenants = found
    return found


async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BadRequestData(f"the body is not JSON: {exc}") from None


async def _object(request: Request) -> dict[str, Any]:
    body = await _body(request)
    if not isinstance(body, dict):
        raise BadRequestData("the body must be a JSON object")
    return body


def account_maker(request: Request) -> Any:
    """``(username, password, community_id, member_id)`` -> a member's dashboard account."""
    from sqlalchemy import select

    from bright.web.users import UserInputError, create_user, users_table

    engine = request.app.state.twin.engine

    def make(username: str, password: str, community_id: str, member_id: str) -> None:
        # create_user replaces an existing account: a joiner must never take over someone's name.
        with engine.connect() as conn:
            taken = conn.execute(
                select(users_table.c.username).where(users_table.c.username == username)
            ).first()
        if taken is not None:
            raise OnboardingError(f"the user name {username!r} is taken; choose another", field="username")
        if len(password) < 8:
            raise OnboardingError("the password needs at least 8 characters", field="password")
        try:
            create_user(engine, username, password, "member", community_id=community_id, member_id=member_id)
        except UserInputError as exc:
            raise OnboardingError(str(exc), field="username") from None

    return make


def policy_seeder(twin: TwinService) -> Any:
    """``(tenant, community_id, choice) -> [DataPolicy ids]`` from the policy layer, or None.

    :func:`bright.network.policy.seed_default_policies` writes the node's default ODRL policies
    (open card and KPIs, aggregates of at least 5 members to the network, member data private) as
    ``DataPolicy`` entities. They are seeded when the wizard's choice is that default; another
    choice is only recorded on the community (``dataPolicy``) for the manager to edit.
    """
    try:
        from bright.network import policy
    except ImportError:  # pragma: no cover - the policy layer is part of the package
        return None
    seed = getattr(policy, "seed_default_policies", None)
    if not callable(seed):  # pragma: no cover
        return None

    def seeder(tenant: str, community_id: str, choice: dict[str, Any]) -> list[str]:
        if (choice.get("card"), choice.get("kpis"), choice.get("memberData")) != ("open", "open", "private"):
            return []
        return [str(x) for x in seed(twin, tenant)]

    return seeder


# --- creation ---------------------------------------------------------------------------------------


@router.post("/communities", summary="Create a community (the guided creation)", status_code=201)
async def post_community(request: Request) -> Response:
    body = await _object(request)
    svc = onboarding_of(request)
    tenant = tenant_of(request)
    seeder = policy_seeder(svc.twin)
    created = await run_in_threadpool(lambda: svc.create_community(body, tenant=tenant, seed_policies=seeder))
    return json_response(
        created, status=201, headers={"Location": f"/api/onboarding/communities/{created['id']}"}
    )


@router.get("/communities/{community_id}", summary="A community being set up: card, settings, members")
async def get_community(request: Request, community_id: str) -> Response:
    svc = onboarding_of(request)
    return json_response(await run_in_threadpool(svc.summary, community_id, tenant=tenant_of(request)))


# --- invitations and joining -------------------------------------------------------------------------


@router.post("/communities/{community_id}/invitations", summary="Invite a member", status_code=201)
async def post_invitation(request: Request, community_id: str) -> Response:
    body = await _object(request)
    svc = onboarding_of(request)
    try:
        days = int(body.get("days", 14))
    except (TypeError, ValueError):
        raise OnboardingError("days must be a whole number", field="days") from None
    inv = await run_in_threadpool(
        lambda: svc.invite(
            community_id,
            tenant=tenant_of(request),
            email=body.get("email"),
            days=days,
            lang=str(body.get("lang", "en")),
        )
    )
    return json_response(inv.to_json(), status=201)


@router.get("/invitations/{token}", summary="What an invitation is for (community name)")
async def get_invitation(request: Request, token: str) -> Response:
    svc = onboarding_of(request)
    found = await run_in_threadpool(svc.check_invitation, token)
    return json_response({"communityId": found["communityId"], "name": found["name"]})


@router.post("/join", summary="Join a community with an invitation token", status_code=201)
async def post_join(request: Request) -> Response:
    body = await _object(request)
    svc = onboarding_of(request)
    token = str(body.get("token") or "")
    maker = account_maker(request)
    joined = await run_in_threadpool(lambda: svc.join(token, body, make_account=maker))
    return json_response(joined, status=201)


# --- members -------------------------------------------------------------------------------------------


@router.get("/communities/{community_id}/members", summary="Members with EAN, locality and consents")
async def get_members(request: Request, community_id: str) -> Response:
    svc = onboarding_of(request)
    tenant = tenant_of(request)
    await run_in_threadpool(svc.community_doc, community_id, tenant=tenant)
    return json_response(await run_in_threadpool(svc.members, community_id, tenant=tenant))


@router.put("/communities/{community_id}/members/{member_id}/meter", summary="Bind the member's meter")
async def put_meter(request: Request, community_id: str, member_id: str) -> Response:
    body = await _object(request)
    svc = onboarding_of(request)
    meter = await run_in_threadpool(
        lambda: svc.bind_meter(
            community_id, member_id, body.get("ean"), locality=body.get("locality"), tenant=tenant_of(request)
        )
    )
    return json_response({"meterId": meter})


@router.post(
    "/communities/{community_id}/members/{member_id}/assets", summary="Declare assets", status_code=201
)
async def post_assets(request: Request, community_id: str, member_id: str) -> Response:
    body = await _body(request)
    items = body if isinstance(body, list) else [body]
    svc = onboarding_of(request)
    ids = await run_in_threadpool(
        lambda: svc.add_assets(community_id, member_id, items, tenant=tenant_of(request))
    )
    return json_response({"assets": ids}, status=201)


@router.get("/communities/{community_id}/members/{member_id}/consents", summary="A member's consents")
async def get_consents(request: Request, community_id: str, member_id: str) -> Response:
    svc = onboarding_of(request)
    return json_response(
        await run_in_threadpool(lambda: svc.consents(community_id, member_id, tenant=tenant_of(request)))
    )


@router.put(
    "/communities/{community_id}/members/{member_id}/consents/{purpose}",
    summary="Grant or revoke a consent (body {granted: true|false})",
)
async def put_consent(request: Request, community_id: str, member_id: str, purpose: str) -> Response:
    body = await _object(request)
    if not isinstance(body.get("granted"), bool):
        raise OnboardingError("granted must be true or false", field="granted")
    svc = onboarding_of(request)
    doc = await run_in_threadpool(
        lambda: svc.set_consent(
            community_id, member_id, purpose, bool(body["granted"]), tenant=tenant_of(request)
        )
    )
    return json_response(doc)


@router.get("/communities/{community_id}/members/{member_id}/questionnaire", summary="The questionnaire link")
async def get_questionnaire(request: Request, community_id: str, member_id: str) -> Response:
    svc = onboarding_of(request)
    tenant = tenant_of(request)
    await run_in_threadpool(svc.member_doc, community_id, member_id, tenant=tenant)
    consented = await run_in_threadpool(
        lambda: svc.has_consent(community_id, member_id, "sbright", tenant=tenant)
    )
    return json_response({"url": svc.questionnaire_link(member_id), "sbrightConsent": consented})


@router.get("/communities/{community_id}/members/{member_id}/export", summary="All of a member's data (GDPR)")
async def get_export(request: Request, community_id: str, member_id: str, format: str = "json") -> Response:
    svc = onboarding_of(request)
    tenant = tenant_of(request)
    if format == "zip":
        data = await run_in_threadpool(lambda: svc.export_member_zip(community_id, member_id, tenant=tenant))
        slug = member_id.rsplit(":", 1)[-1]
        return Response(
            data,
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="bright-export-{slug}.zip"'},
        )
    if format != "json":
        raise BadRequestData(f"format {format!r} must be json or zip")
    return json_response(
        await run_in_threadpool(lambda: svc.export_member(community_id, member_id, tenant=tenant))
    )


@router.post("/communities/{community_id}/members/{member_id}/leave", summary="Leave: erase or anonymise")
async def post_leave(request: Request, community_id: str, member_id: str) -> Response:
    body = await _object(request)
    svc = onboarding_of(request)
    receipt = await run_in_threadpool(
        lambda: svc.leave(community_id, member_id, tenant=tenant_of(request), mode=body.get("mode"))
    )
    registry_of(request.app).forget_usage(tenant_of(request))
    return json_response(receipt)


# --- sharing key, DSO pack, statutes ---------------------------------------------------------------


@router.put("/communities/{community_id}/sharing-key", summary="Set the fixed sharing key (percent)")
async def put_sharing_key(request: Request, community_id: str) -> Response:
    body = await _object(request)
    key = body.get("key")
    if not isinstance(key, dict):
        raise OnboardingError("key must be an object {member id: percent}", field="sharing_key")
    svc = onboarding_of(request)
    stored = await run_in_threadpool(
        lambda: svc.set_sharing_key(community_id, key, tenant=tenant_of(request), method=body.get("method"))
    )
    return json_response({"key": stored})


@router.get("/communities/{community_id}/dso-pack", summary="Access points, keys and locality for the DSO")
async def get_dso_pack(request: Request, community_id: str, format: str = "csv") -> Response:
    svc = onboarding_of(request)
    frame = await run_in_threadpool(lambda: svc.dso_pack(community_id, tenant=tenant_of(request)))
    if format == "csv":
        slug = community_id.rsplit(":", 1)[-1]
        return Response(
            dso_csv(frame),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="dso-pack-{slug}.csv"'},
        )
    if format != "json":
        raise BadRequestData(f"format {format!r} must be csv or json")
    return json_response(json.loads(frame.to_json(orient="records")))


@router.get("/communities/{community_id}/statutes", summary="The statutes checklist")
async def get_statutes(request: Request, community_id: str, format: str = "md") -> Response:
    svc = onboarding_of(request)
    summary = await run_in_threadpool(svc.summary, community_id, tenant=tenant_of(request))
    checklist = statutes_checklist(summary)
    title = str(summary.get("name") or community_id)
    if format == "md":
        return Response(checklist.markdown(title), media_type="text/markdown; charset=utf-8")
    if format == "json":
        return json_response({"community": community_id, "items": checklist.to_json()})
    if format == "html":
        rows = "".join(
            f"<li data-done='{int(bool(i.done))}'><input type='checkbox' disabled{' checked' if i.done else ''}> "
            f"<strong>{html.escape(i.text)}</strong> <small>({html.escape(i.basis)})</small></li>"
            for i in checklist.items
        )
        page = f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title><h1>Statutes checklist: {html.escape(title)}</h1><ul>{rows}</ul>"
        return HTMLResponse(page)
    raise BadRequestData(f"format {format!r} must be md, html or json")


@router.get("/ean/{ean}", summary="Check an access-point EAN (18 digits, prefix 54, GS1 check digit)")
async def get_ean(ean: str) -> Response:
    return json_response({"ean": check_ean(ean), "valid": True})


# --- quotas -----------------------------------------------------------------------------------------------

_CREATES = ("/ngsi-ld/v1/entities", "/ngsi-ld/v1/temporal/entities", "/api/onboarding/", "/onboarding/")
_BATCH = ("/ngsi-ld/v1/entityOperations/create", "/ngsi-ld/v1/entityOperations/upsert")
_FREEING = ("/leave", "/entityOperations/delete", "/entityOperations/purge")


class TenantQuotaMiddleware:
    """ASGI middleware: the quotas of the request's tenant, checked before every write.

    POST, PUT and PATCH requests carrying an ``NGSILD-Tenant`` of a hosted tenant are checked with
    :meth:`bright.services.tenants.TenantRegistry.check_write`: requests that create entities
    (entity and temporal entity creation, batch create/upsert counted per entity, onboarding) get
    ``403`` at the entity quota; every write gets ``413`` at the series-point quota. Deletions and
    ``.../leave`` always pass, so a tenant at its quota can free space.
    """

    def __init__(self, app: Any, registry_app: Any) -> None:
        self.app = app
        self.registry_app = registry_app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        path = scope["path"].rstrip("/") or "/"
        tenant = ""
        for k, v in scope.get("headers", []):
            if k.lower() == b"ngsild-tenant":
                tenant = v.decode("latin-1").strip()
        if not tenant or path.endswith(_FREEING):
            await self.app(scope, receive, send)
            return
        new = 1 if (path in _CREATES or path.startswith(_CREATES[2:])) else 0
        if path in _BATCH:
            body, receive = await _buffer(receive)
            try:
                items = json.loads(body or b"[]")
                new = len(items) if isinstance(items, list) else 1
            except ValueError:
                new = 1
        registry = registry_of(self.registry_app)
        try:
            await asyncio.to_thread(registry.check_write, tenant, new_entities=new, adds_points=True)
        except TenantQuotaExceeded as exc:
            await problem_response(exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _buffer(receive: Any) -> tuple[bytes, Any]:
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = bool(message.get("more_body", False))
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Any:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


#: Role-table rows for the routes whose credential is not an account (bright.api.auth).
ANONYMOUS_WRITES = (
    (
        r"^/api/onboarding/join$",
        "joining a community: the signed, single-use invitation token is the credential",
    ),
    (r"^/onboarding/join$", "the join form: the signed, single-use invitation token is the credential"),
)
MEMBER_WRITES = (
    (r"^/onboarding/me/(consents|leave)$", "a member grants or revokes their own consents, or leaves "
     "(the page acts on the session's own member only)"),
)  # fmt: skip


def _register_access_rules() -> None:
    """Add this module's rows to the node's role table, once per process."""
    from bright.api import auth

    known = {pat.pattern for pat, _, _ in auth.ANONYMOUS_WRITES}
    for pattern, reason in ANONYMOUS_WRITES:
        if pattern not in known:
            auth.allow_anonymous_write(pattern, reason)
    rules = {r.pattern.pattern for r in auth.WRITE_RULES}
    for pattern, reason in MEMBER_WRITES:
        if pattern not in rules:
            auth.allow_write(pattern, ("member",), reason, ("POST",))


def install(app: FastAPI) -> None:
    """Mount the onboarding API and the tenant-quota middleware (idempotent).

    The web pages (:mod:`bright.web.onboarding`) are mounted by the dashboard's own install.
    """
    if getattr(app.state, "onboarding_installed", False):
        return
    app.state.onboarding_installed = True
    _register_access_rules()
    app.include_router(router)
    app.add_middleware(TenantQuotaMiddleware, registry_app=app)
