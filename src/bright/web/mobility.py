"""Mobility scenarios in the dashboard: the stored scenarios side by side, with plots; define and run.

``/communities/{id}/mobility`` (everyone: the scenarios are community aggregates) lists the community's
stored ``MobilityScenario``\\ s (:func:`bright.services.mobility.list_scenarios`); the ones ticked
(``scenario=``, all by default, at most :data:`MAX_COMPARED`) are compared KPI by KPI
(:func:`bright.services.mobility.compare_stored`) and plotted: the load-duration curve and the mean
daily profile of the community's net import with the EVs (:func:`bright.services.mobility.scenario_curves`).

``POST /communities/{id}/mobility`` (manager): a scenario from the form (name, EVs added, charging
policy, connection limit, PV added, shared cars) is validated by :func:`bright.services.mobility.parse_spec`
(a message next to the field it names), evaluated over the community's last year at 15 min and written
(:func:`bright.services.mobility.run_scenarios`); the page shows the elapsed time while it runs.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from bright.services.community import Community
from bright.services.mobility import (
    METRICS,
    compare_stored,
    list_scenarios,
    parse_spec,
    run_scenarios,
    scenario_curves,
)
from bright.twin.errors import NgsiLdError
from bright.web import i18n
from bright.web.app import WebError, _community, _lang, _render, current_user

__all__ = ["MAX_COMPARED", "POLICIES", "router", "spec_of_form"]

router = APIRouter(include_in_schema=False)

MAX_COMPARED = 6
POLICIES = (
    "uncontrolled",
    "time_of_use",
    "earliest_deadline_first",
    "pv_following",
    "community_optimal",
    "vehicle_to_grid",
)
#: Form fields -> spec keys and kinds (empty fields are left to the spec's defaults).
FIELDS: dict[str, str] = {
    "n_evs": "int",
    "connection_limit_kw": "float",
    "ev_site_limit_kw": "float",
    "added_pv_kwp": "float",
    "shared_replacing": "int",
}


def spec_of_form(form: dict[str, str], lang: str = "en") -> tuple[dict[str, Any], dict[str, str]]:
    """The scenario spec of the form (a JSON object for :func:`parse_spec`) and field errors."""
    errors: dict[str, str] = {}
    spec: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "policy": form.get("policy", "uncontrolled"),
    }
    if form.get("follow_connection_limit") == "on":
        spec["follow_connection_limit"] = True
    for name, kind in FIELDS.items():
        raw = (form.get(name) or "").strip().replace(",", ".")
        if not raw:
            continue
        try:
            number = int(raw) if kind == "int" else float(raw)
            if not math.isfinite(number):
                raise ValueError
            spec[name] = number
        except ValueError:
            errors[name] = i18n.translate("err.number", lang)
    return spec, errors


def _field_of(message: str) -> str:
    """The form field a spec error names (the spec's messages name the key), else ``name``."""
    for name in ("name", "policy", *FIELDS, "follow_connection_limit"):
        if name in message:
            return "follow_connection_limit" if name == "follow_connection_limit" else name
    return "name"


def _view(community: Community, chosen: list[str]) -> dict[str, Any]:
    stored = list_scenarios(community)
    names = [s.name for s in stored]
    picked = [n for n in chosen if n in names] or names[:MAX_COMPARED]
    table: list[dict[str, Any]] = []
    plots: dict[str, Any] = {}
    if picked:
        frame = compare_stored(community, picked)
        for metric, row in frame.iterrows():
            label, unit, _ = METRICS[str(metric)]
            table.append(
                {
                    "metric": str(metric),
                    "label": label,
                    "unit": unit,
                    "values": {str(k): (float(v) if math.isfinite(v) else None) for k, v in row.items()},
                }
            )
        for curve in ("duration", "daily_profile"):
            plots[curve] = scenario_curves(community, picked, curve=curve, quantity="site_load", points=200)
    return {"stored": stored, "picked": picked, "table": table, "plots": plots}


def _page(
    request: Request,
    community: Community,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> HTMLResponse:
    chosen = request.query_params.getlist("scenario")
    view = _view(community, chosen[:MAX_COMPARED])
    return _render(
        request,
        "mobility.html",
        status=status,
        community=community,
        errors=errors or {},
        form=form or {"policy": "uncontrolled"},
        policies=POLICIES,
        max_compared=MAX_COMPARED,
        **view,
    )


@router.get("/communities/{community_id}/mobility", response_class=HTMLResponse)
def mobility_page(request: Request, community_id: str) -> HTMLResponse:
    community = _community(request, community_id)
    return _page(request, community)


@router.post("/communities/{community_id}/mobility", response_model=None)
async def mobility_run(request: Request, community_id: str) -> Response:
    community = _community(request, community_id)
    lang = _lang(request)
    if not current_user(request).is_manager:
        raise WebError(403, i18n.translate("error.403", lang))
    raw = await request.form()
    form = {k: str(v) for k, v in raw.items()}
    body, errors = spec_of_form(form, lang)
    if errors:
        return _page(request, community, status=400, errors=errors, form=form)
    try:
        spec = parse_spec(body)
        await run_in_threadpool(run_scenarios, community, [spec])
    except NgsiLdError as exc:
        return _page(request, community, status=400, errors={_field_of(exc.detail): exc.detail}, form=form)
    picked = [s.name for s in list_scenarios(community) if s.name != spec.name][: MAX_COMPARED - 1]
    query = urlencode([("scenario", n) for n in [*picked, spec.name]])
    return RedirectResponse(f"/communities/{community_id}/mobility?{query}", status_code=303)
