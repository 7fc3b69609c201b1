"""S-BRIGHT REST API: the questionnaire, members' answers and profiles, the community's engagement mix.

Routes (tenant in the ``NGSILD-Tenant`` header, as for the NGSI-LD API):

``GET  /api/members/{id}/questionnaire?lang=en|fr|nl``  the questionnaire and the consent statement
``POST /api/members/{id}/questionnaire``                 ``{"answers": {...}, "consent": {"given", "date"}}``
``DELETE /api/members/{id}/questionnaire``               consent withdrawn: answers and profile erased
``GET  /api/members/{id}/profile``                       category, scores, recommendations with references
``GET  /api/communities/{id}/engagement``                the community's mix (segmented on first request)
``POST /api/communities/{id}/engagement``                segment the community again now

Mounted with :func:`install`. Errors are ProblemDetails naming the member, item or field.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from bright.api.http import json_response, read_json
from bright.services.engagement import EngagementConfig, EngagementService, questionnaire_document
from bright.social.questionnaire import LANGUAGES, QUESTIONNAIRE_V1
from bright.twin.errors import BadRequestData
from bright.twin.series import SeriesStore

__all__ = ["install", "router"]

router = APIRouter(prefix="/api", tags=["engagement (S-BRIGHT)"])


def _service(request: Request) -> EngagementService:
    svc: EngagementService = request.app.state.engagement
    return svc


def _tenant(request: Request) -> str:
    tenant = request.headers.get("ngsild-tenant", "").strip()
    if tenant and (len(tenant) > 128 or not all(c.isalnum() or c in "-_.:/" for c in tenant)):
        raise BadRequestData(f"NGSILD-Tenant {tenant!r} is not a valid tenant name")
    return tenant


def _language(request: Request, lang: str | None) -> str:
    if lang is not None:
        return lang
    for part in request.headers.get("accept-language", "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return "en"


@router.get("/members/{member_id}/questionnaire", summary="The S-BRIGHT questionnaire for a member")
def get_questionnaire(request: Request, member_id: str, lang: str | None = None) -> Response:
    """The current questionnaire in English, French or Dutch (``lang`` or ``Accept-Language``),
    the consent statement, and whether the member has answered it already."""
    svc = _service(request)
    tenant = _tenant(request)
    community = svc.community_of(member_id, tenant=tenant)
    body: dict[str, Any] = questionnaire_document(QUESTIONNAIRE_V1, lang=_language(request, lang))
    _, meta = svc.latest_answers(community, tenant=tenant)
    previous = meta.get(member_id)
    body["member"] = member_id
    body["community"] = community
    body["previousSubmission"] = (
        None
        if previous is None
        else {"submittedAt": previous["submittedAt"], "complete": not previous["missingItems"]}
    )
    return json_response(body)


@router.post("/members/{member_id}/questionnaire", summary="Submit a member's answers", status_code=201)
async def post_questionnaire(request: Request, member_id: str) -> Response:
    """Store the answers with the member's consent, score them and re-segment the community.

    Body: ``{"answers": {"nep_1": 5, ...}, "consent": {"given": true, "date": "2024-05-01T10:00:00Z"},
    "version": "sbright-q-1.0"}``. Without consent nothing is stored (400); an out-of-range answer is
    rejected with the item named (400, ``item`` in the ProblemDetails); unanswered items are
    allowed and flagged.
    """
    svc = _service(request)
    tenant = _tenant(request)
    body = await read_json(request, request.app.state.settings.max_body_bytes)
    if not isinstance(body, dict):
        raise BadRequestData("the body must be an object {answers, consent}")
    unknown = sorted(set(body) - {"answers", "consent", "version"})
    if unknown:
        raise BadRequestData(f"unknown field(s) {', '.join(unknown)}; expected answers, consent, version")
    answers = body.get("answers")
    if not isinstance(answers, dict):
        raise BadRequestData("answers must be an object {item id: answer code}")
    version = body.get("version", QUESTIONNAIRE_V1.version)
    if not isinstance(version, str):
        raise BadRequestData("version must be a string")
    result = await run_in_threadpool(
        svc.submit_answers, member_id, answers, consent=body.get("consent"), version=version, tenant=tenant
    )
    return json_response(result.to_json(), status=201)


@router.delete(
    "/members/{member_id}/questionnaire", summary="Withdraw consent: erase answers", status_code=204
)
async def delete_questionnaire(request: Request, member_id: str) -> Response:
    """Erase the member's answers and profile and re-segment its community without them."""
    svc = _service(request)
    tenant = _tenant(request)
    svc.community_of(member_id, tenant=tenant)
    await run_in_threadpool(svc.withdraw, member_id, tenant=tenant)
    return Response(status_code=204)


@router.get("/members/{member_id}/profile", summary="A member's engagement profile")
def get_profile(request: Request, member_id: str) -> Response:
    """Category, dimension scores, load features, structural gain and recommended services and
    incentives, each with the studies it rests on."""
    svc = _service(request)
    tenant = _tenant(request)
    svc.community_of(member_id, tenant=tenant)
    return json_response(svc.profile(member_id, tenant=tenant))


@router.get("/communities/{community_id}/engagement", summary="The community's engagement mix")
async def get_engagement(request: Request, community_id: str) -> Response:
    """Categories with their shares, descriptions and recommendations, model quality (BIC by k,
    relative entropy, bootstrap ARI) and Cronbach's alpha of the respondents."""
    svc = _service(request)
    tenant = _tenant(request)
    mix = await run_in_threadpool(svc.mix, community_id, tenant=tenant)
    return json_response(mix)


@router.post("/communities/{community_id}/engagement", summary="Segment the community again")
async def post_engagement(request: Request, community_id: str) -> Response:
    """Re-run the segmentation with the latest answers and metering; returns the new mix."""
    svc = _service(request)
    tenant = _tenant(request)
    mix = await run_in_threadpool(svc.refresh_community, community_id, tenant=tenant)
    return json_response(mix)


def install(app: FastAPI, *, service: EngagementService | None = None) -> EngagementService:
    """Mount the engagement routes on a node's app.

    Parameters
    ----------
    app : FastAPI
        The app of :func:`bright.api.app.create_app` (``app.state.twin`` and ``app.state.settings``).
    service : EngagementService, optional
        An existing service (tests); created on the app's twin otherwise, configured from
        ``settings.extra`` (:meth:`EngagementConfig.from_settings`).

    Returns
    -------
    EngagementService
        Also stored on ``app.state.engagement``.
    """
    if service is None:
        twin = app.state.twin
        service = EngagementService(
            twin, SeriesStore(twin.engine), config=EngagementConfig.from_settings(app.state.settings)
        )
    app.state.engagement = service
    app.include_router(router)
    return service
