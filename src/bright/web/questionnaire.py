"""S-BRIGHT in the dashboard: a member's questionnaire and profile, the community's engagement mix.

- ``/communities/{id}/members/{member}/questionnaire``: the member (only) answers the S-BRIGHT
  questionnaire in English, French or Dutch after ticking the consent statement; the answers are
  stored, scored and the community segmented again
  (:meth:`bright.services.engagement.EngagementService.submit_answers`). The page then shows the
  member's category, dimension scores and the recommended services and incentives with their reasons
  and the studies they rest on. The manager may read a member's profile (not answer for them).
  Withdrawing consent erases the answers and the profile.
- ``/communities/{id}/engagement``: the community mix (categories, shares, recommendations): an
  aggregate, public once at least 5 members are classified; the model's quality (BIC by number of
  classes, reliability) is shown to the manager.

Without consent nothing is stored and the message is shown next to the consent box; an answer out
of range is named next to its question.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from bright.services.community import Community
from bright.services.engagement import (
    MIN_AGGREGATE_MEMBERS,
    AnswerRejected,
    ConsentRequired,
    EngagementService,
    questionnaire_document,
)
from bright.social.questionnaire import QUESTIONNAIRE_V1
from bright.twin.errors import NgsiLdError, ResourceNotFound
from bright.twin.series import SeriesStore
from bright.web import i18n
from bright.web.app import TENANT, WebError, _community, _lang, _render, _twin, current_user

__all__ = ["parse_answers", "router"]

router = APIRouter(include_in_schema=False)


def _service(request: Request) -> EngagementService:
    svc = getattr(request.app.state, "engagement", None)
    if not isinstance(svc, EngagementService):
        twin, _ = _twin(request)
        svc = EngagementService(twin, SeriesStore(twin.engine))
        request.app.state.engagement = svc
    return svc


def _member_of(request: Request, community: Community, member_id: str) -> str:
    user = current_user(request)
    lang = _lang(request)
    if not (user.is_manager or user.role == "member"):
        raise WebError(403, i18n.translate("error.403", lang))
    try:
        mid = community.member(member_id).id
    except (KeyError, ValueError, NgsiLdError):
        raise WebError(404, i18n.translate("error.404", lang)) from None
    if not user.may_see_member(mid):
        raise WebError(403, i18n.translate("error.403", lang))
    return mid


def parse_answers(
    form: dict[str, str], document: dict[str, Any], lang: str = "en"
) -> tuple[dict[str, int | None], dict[str, str]]:
    """Answers of the form (``item id -> code``; empty = not answered) and per-item errors.

    Parameters
    ----------
    form
        Posted fields: one per item id (its option value).
    document
        :func:`bright.services.engagement.questionnaire_document` of the version answered.
    lang
        Language of the messages.
    """
    answers: dict[str, int | None] = {}
    errors: dict[str, str] = {}
    for item in document["items"]:
        raw = (form.get(item["id"]) or "").strip()
        if not raw:
            answers[item["id"]] = None
            continue
        allowed = {int(o["value"]) for o in item["options"]}
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or value not in allowed:
            errors[item["id"]] = i18n.translate("sb.err_option", lang)
        else:
            answers[item["id"]] = value
    return answers, errors


def _profile(svc: EngagementService, mid: str) -> dict[str, Any] | None:
    try:
        return svc.profile(mid, tenant=TENANT)
    except ResourceNotFound:
        return None


def _page(
    request: Request,
    community: Community,
    mid: str,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    done: str | None = None,
) -> HTMLResponse:
    svc = _service(request)
    lang = _lang(request)
    document = questionnaire_document(QUESTIONNAIRE_V1, lang=lang)
    profile = _profile(svc, mid)
    previous: dict[str, Any] = {}
    if profile is not None and not form:
        frame, _meta = svc.latest_answers(community.id, tenant=TENANT)
        if mid in frame.index:
            row = frame.loc[mid].to_numpy(dtype=float)
            previous = {
                str(k): ("" if v != v else str(int(v))) for k, v in zip(frame.columns, row, strict=True)
            }
    return _render(
        request,
        "questionnaire.html",
        status=status,
        community=community,
        member=community.member(mid),
        document=document,
        profile=profile,
        errors=errors or {},
        form=form or previous,
        may_answer=current_user(request).member_id == mid,
        done=done,
    )


@router.get("/communities/{community_id}/members/{member_id}/questionnaire", response_class=HTMLResponse)
def questionnaire_page(request: Request, community_id: str, member_id: str) -> HTMLResponse:
    community = _community(request, community_id)
    mid = _member_of(request, community, member_id)
    return _page(request, community, mid, done=request.query_params.get("done"))


@router.post("/communities/{community_id}/members/{member_id}/questionnaire", response_model=None)
async def questionnaire_submit(request: Request, community_id: str, member_id: str) -> Response:
    """The member's answers (with consent) or the withdrawal of consent (``action=withdraw``)."""
    community = _community(request, community_id)
    mid = _member_of(request, community, member_id)
    lang = _lang(request)
    if current_user(request).member_id != mid:  # nobody answers or withdraws for a member
        raise WebError(403, i18n.translate("error.403", lang))
    raw = await request.form()
    form = {k: str(v) for k, v in raw.items()}
    svc = _service(request)
    base = f"/communities/{community_id}/members/{member_id}/questionnaire"
    if form.get("action") == "withdraw":
        await run_in_threadpool(svc.withdraw, mid, tenant=TENANT)
        return RedirectResponse(f"{base}?done=withdrawn", status_code=303)
    document = questionnaire_document(QUESTIONNAIRE_V1, lang=lang)
    answers, errors = parse_answers(form, document, lang)
    consent = None
    if form.get("consent") == "yes":
        consent = {"given": True, "date": datetime.now(UTC).replace(microsecond=0).isoformat()}
    else:
        errors["consent"] = i18n.translate("sb.err_consent", lang)
    if errors:
        return _page(request, community, mid, status=400, errors=errors, form=form)
    try:
        await run_in_threadpool(
            svc.submit_answers, mid, answers, consent=consent, version=QUESTIONNAIRE_V1.version, tenant=TENANT
        )
    except ConsentRequired as exc:
        return _page(request, community, mid, status=400, errors={"consent": exc.detail}, form=form)
    except AnswerRejected as exc:
        item = getattr(exc, "item", None) or "consent"
        return _page(request, community, mid, status=400, errors={str(item): exc.detail}, form=form)
    return RedirectResponse(f"{base}?done=saved#profile-title", status_code=303)


@router.get("/communities/{community_id}/engagement", response_class=HTMLResponse)
async def engagement_page(request: Request, community_id: str) -> HTMLResponse:
    community = _community(request, community_id)
    svc = _service(request)
    try:
        mix = await run_in_threadpool(svc.mix, community.id, tenant=TENANT)
    except NgsiLdError as exc:
        mix = {"segmented": False, "reason": exc.detail, "categories": []}
    user = current_user(request)
    public_ok = int(mix.get("classified") or 0) >= MIN_AGGREGATE_MEMBERS
    categories = mix.get("categories") or []
    return _render(
        request,
        "engagement.html",
        community=community,
        mix=mix,
        categories=categories if (public_ok or user.is_manager) else [],
        hidden=not public_ok and not user.is_manager,
        minimum=MIN_AGGREGATE_MEMBERS,
        chart={
            "names": [c.get("names", {}).get(_lang(request)) or c.get("name") for c in categories],
            "members": [c.get("members") for c in categories],
        }
        if (public_ok or user.is_manager)
        else None,
    )
