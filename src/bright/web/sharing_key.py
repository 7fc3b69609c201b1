"""The manager's sharing-key editor: method, fixed percentages, hybrid split, preview, save.

``/communities/{id}/sharing-key`` (manager only). The form holds the allocation method
(:class:`bright.energy.sharing.SharingMethod`), the fixed key in percent per member (used by
``fixed``, ``fixed_multi_round`` and ``hybrid``) and, for ``hybrid``, the part of the pool allocated
by the fixed key first (percent; the rest pro rata). Two actions:

- **preview**: the allocation of a chosen day with the current settings and with the proposed ones
  side by side, per member (:func:`bright.services.energy.community_sharing` on the community with
  the proposal applied, nothing written);
- **save**: the proposal is written to the ``EnergyCommunity`` entity (``sharingMethod``,
  ``sharingKeyPercent``, ``hybridFixedFraction``) and the dashboard's cache is emptied, so every page
  computes with the new key.

Validation (message next to the field): a number >= 0 per member; for the keyed methods the
percentages sum to 100 (tolerance 0.0001 %, as the DSO's key) and a producer-only member gets 0;
the hybrid part within 0..100 %; the preview day a date within the readings.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from bright.energy.sharing import EnergyInputError, Role, SharingKey, SharingMethod
from bright.services.community import TERMS, Community
from bright.services.energy import community_sharing
from bright.twin.context import BRIGHT_CONTEXT_URL
from bright.twin.errors import NgsiLdError
from bright.twin.vocabulary import bright_context
from bright.web import i18n
from bright.web.app import (
    TENANT,
    TZ,
    FieldErrors,
    WebError,
    _cache,
    _clip,
    _community,
    _default_date,
    _json_numbers,
    _lang,
    _render,
    _twin,
    current_user,
    parse_period,
)

__all__ = ["KEYED", "Proposal", "parse_proposal", "router"]

router = APIRouter(include_in_schema=False)

#: Methods that use the fixed key.
KEYED = (SharingMethod.FIXED, SharingMethod.FIXED_MULTI_ROUND, SharingMethod.HYBRID)


class Proposal:
    """A validated sharing setting: method, key (or None) and the hybrid fixed fraction (0..1)."""

    def __init__(self, method: SharingMethod, key: SharingKey | None, hybrid_fraction: float) -> None:
        self.method = method
        self.key = key
        self.hybrid_fraction = hybrid_fraction

    def apply(self, community: Community) -> Community:
        """The community with this setting (for a preview; nothing is written)."""
        return replace(
            community,
            sharing_method=self.method,
            sharing_key=self.key if self.key is not None else community.sharing_key,
            hybrid_fixed_fraction=self.hybrid_fraction,
        )


def _number(text: str, lang: str) -> float:
    try:
        value = float(text.replace(",", ".").replace("%", "").strip())
    except ValueError:
        raise ValueError(i18n.translate("err.number", lang)) from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(i18n.translate("err.number", lang))
    return value


def parse_proposal(form: dict[str, str], community: Community, lang: str = "en") -> Proposal:
    """Read and check the editor's form.

    Parameters
    ----------
    form
        ``method``, ``hybrid`` (percent of the pool by the fixed key), ``key-<i>`` (percent of member
        ``i`` in the community's member order).
    community
        The community edited.
    lang
        Language of the messages.

    Raises
    ------
    FieldErrors
        Per field: ``method``, ``hybrid``, ``key-<i>`` and ``key_sum`` (the sum, the key as a whole).
    """
    errors: dict[str, str] = {}
    method: SharingMethod | None = None
    try:
        method = SharingMethod(form.get("method", ""))
    except ValueError:
        errors["method"] = i18n.translate(
            "key.err_method", lang, methods=", ".join(m.value for m in SharingMethod)
        )
    hybrid = 1.0
    if method == SharingMethod.HYBRID:
        try:
            hybrid = _number(form.get("hybrid", ""), lang) / 100.0
            if hybrid > 1.0:
                raise ValueError(i18n.translate("key.err_hybrid", lang))
        except ValueError as exc:
            errors["hybrid"] = str(exc) if str(exc) else i18n.translate("key.err_hybrid", lang)
    else:
        hybrid = community.hybrid_fixed_fraction
    percents: dict[str, float] = {}
    for i, m in enumerate(community.members):
        raw = (form.get(f"key-{i}") or "").strip()
        if not raw:
            percents[m.id] = 0.0
            continue
        try:
            percents[m.id] = _number(raw, lang)
        except ValueError as exc:
            errors[f"key-{i}"] = str(exc)
            continue
        if percents[m.id] > 0 and m.role == Role.PRODUCER:
            errors[f"key-{i}"] = i18n.translate("key.err_producer", lang)
    key: SharingKey | None = None
    if method in KEYED and not any(k.startswith("key-") for k in errors):
        try:
            key = SharingKey.from_percent(percents)
        except EnergyInputError:
            errors["key_sum"] = i18n.translate("key.err_sum", lang, total=f"{sum(percents.values()):.4g}")
    if errors or method is None:
        raise FieldErrors(errors)
    return Proposal(method, key, hybrid)


def _form_of(community: Community) -> dict[str, str]:
    form: dict[str, str] = {
        "method": community.sharing_method.value
        if community.sharing_method
        else SharingMethod.PRO_RATA.value,
        "hybrid": f"{100.0 * community.hybrid_fixed_fraction:g}",
    }
    fractions = community.sharing_key.fractions if community.sharing_key is not None else {}
    for i, m in enumerate(community.members):
        value = fractions.get(m.id)
        form[f"key-{i}"] = "" if value is None else f"{100.0 * value:.6g}"
    return form


def _preview(
    request: Request, community: Community, proposal: Proposal, day_text: str, lang: str
) -> dict[str, Any]:
    """Current vs proposed shared offtake per member over one local day (kWh)."""
    period = parse_period("day", day_text or None, default_date=_default_date(community), lang=lang)
    clipped = _clip(community, period.start, period.end)
    if clipped is None:
        raise FieldErrors({"day": i18n.translate("err.nodata", lang)})
    rows: list[dict[str, Any]] = []
    try:
        proposed = community_sharing(
            proposal.apply(community), start=clipped[0], end=clipped[1]
        ).member_totals()
    except NgsiLdError as exc:
        raise FieldErrors({"key_sum": exc.detail}) from None
    current: pd.DataFrame | None
    try:
        current = community_sharing(community, start=clipped[0], end=clipped[1]).member_totals()
    except NgsiLdError:
        current = None  # the community has no usable setting yet: nothing to compare with

    def at(frame: pd.DataFrame, member: str, column: str) -> float:
        return float(frame[column].loc[member])

    for m in community.members:
        now = math.nan if current is None else at(current, m.id, "shared_offtake_kwh")
        new = at(proposed, m.id, "shared_offtake_kwh")
        rows.append(
            {
                "id": m.id,
                "name": m.name or m.id,
                "offtake_kwh": at(proposed, m.id, "offtake_kwh"),
                "current_kwh": now,
                "proposed_kwh": new,
                "given_kwh": at(proposed, m.id, "shared_injection_kwh"),
            }
        )
    total_now = sum(r["current_kwh"] for r in rows)
    total_new = sum(r["proposed_kwh"] for r in rows)
    return {
        "day": period.start.strftime("%Y-%m-%d"),
        "rows": rows,
        "total_current_kwh": total_now,
        "total_proposed_kwh": total_new,
        "chart": {
            "members": [r["name"] for r in rows],
            "current": _json_numbers(pd.Series([r["current_kwh"] for r in rows]).to_numpy(dtype=float)),
            "proposed": _json_numbers(pd.Series([r["proposed_kwh"] for r in rows]).to_numpy(dtype=float)),
        },
    }


def _save(request: Request, community: Community, proposal: Proposal) -> None:
    """Write the proposal on the EnergyCommunity entity and empty the dashboard's cache."""
    twin, _ = _twin(request)
    vocab = bright_context()
    body: dict[str, Any] = {
        vocab.expand("sharingMethod"): {"type": "Property", "value": proposal.method.value},
        TERMS["hybridFixedFraction"]: {"type": "Property", "value": proposal.hybrid_fraction},
    }
    if proposal.key is not None:
        body[TERMS["sharingKey"]] = {
            "type": "Property",
            "value": {m: round(100.0 * f, 9) for m, f in proposal.key.fractions.items()},
        }
    twin.append_attributes(TENANT, community.id, body, twin.resolve_context(BRIGHT_CONTEXT_URL))
    _cache(request).clear()


def _page(
    request: Request,
    community: Community,
    *,
    form: dict[str, str],
    errors: dict[str, str],
    preview: dict[str, Any] | None = None,
    saved: bool = False,
) -> HTMLResponse:
    return _render(
        request,
        "sharing_key.html",
        status=400 if errors else 200,
        community=community,
        form=form,
        errors=errors,
        methods=[m.value for m in SharingMethod],
        keyed=[m.value for m in KEYED],
        members=list(enumerate(community.members)),
        preview=preview,
        saved=saved,
        tz=TZ,
    )


def _manager(request: Request) -> None:
    if not current_user(request).is_manager:
        raise WebError(403, i18n.translate("error.403", _lang(request)))


@router.get("/communities/{community_id}/sharing-key", response_class=HTMLResponse)
def sharing_key_form(request: Request, community_id: str) -> HTMLResponse:
    _manager(request)
    community = _community(request, community_id)
    form = _form_of(community)
    form["day"] = request.query_params.get("day", "")
    return _page(request, community, form=form, errors={}, saved=request.query_params.get("saved") == "1")


@router.post("/communities/{community_id}/sharing-key", response_model=None)
async def sharing_key_submit(request: Request, community_id: str) -> Response:
    _manager(request)
    community = _community(request, community_id)
    lang = _lang(request)
    raw = await request.form()
    form = {k: str(v) for k, v in raw.items()}
    action = form.get("action", "preview")
    try:
        proposal = parse_proposal(form, community, lang)
        if action == "save":
            await run_in_threadpool(_save, request, community, proposal)
            return RedirectResponse(f"/communities/{community_id}/sharing-key?saved=1", status_code=303)
        preview = await run_in_threadpool(_preview, request, community, proposal, form.get("day", ""), lang)
    except FieldErrors as exc:
        return _page(request, community, form=form, errors=exc.errors)
    return _page(request, community, form=form, errors={}, preview=preview)
