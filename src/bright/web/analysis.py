"""Dashboard pages of a community's analyses: forecasts, tomorrow's flexibility schedule, fairness.

Pages (HTML, same access rules as the rest of the dashboard):

- ``/communities/{id}/forecast?day=&target=``: the day-ahead forecast of the community (everyone: an
  aggregate) or of a member (the manager, that member) with its 80 % band (q10..q90) beside what
  was measured, the model that made it, why a fallback was used, the stored model's scores, the
  day's error (MAE of the median, share of quarter-hours inside the band) and, on request (htmx),
  a rolling-origin backtest of a member's models (:func:`bright.services.forecasting.backtest_member`).
  The manager can make the forecast of a day that has none (``POST``: :func:`forecast_day`).
- ``/communities/{id}/flexibility?day=&mode=&limit_kw=``: the day's schedule
  (:func:`bright.services.scheduling.schedule_day`, not written): prices and community flows, the
  setpoints of every device, the value stacked per member and commitment, what was not met, and in
  ``compare`` mode every member alone beside the community. A member sees its own devices and lines.
- ``/communities/{id}/fairness``: each member's Shapley value of the community's savings beside the
  savings the settlement gave it (:func:`bright.services.energy.community_fairness`); a member sees
  its own line and the community total.

Each page shows the figures of the same service call the REST API makes (``/api/communities/{id}/
forecast``, ``/schedule``, ``/fairness``), so the numbers agree (tested).
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from bright.api.analytics import schedule_json
from bright.services.community import Community, readings_span
from bright.services.energy import community_fairness
from bright.services.forecasting import (
    QUANTITIES,
    ForecastRun,
    ModelStore,
    backtest_member,
    community_site,
    default_day,
    forecast_day,
    histories,
    member_devices,
    parse_day,
    stored_forecast,
)
from bright.services.scheduling import MODES, ScheduleSettings, schedule_day
from bright.twin.errors import NgsiLdError
from bright.web import i18n
from bright.web.app import (
    PRICE_FIELDS,
    PRICINGS_SHOWN,
    TZ,
    FieldErrors,
    WebError,
    _cache,
    _cached,
    _clip,
    _community,
    _default_date,
    _json_numbers,
    _lang,
    _parse_factor,
    _render,
    _twin,
    current_user,
    parse_period,
)

__all__ = ["day_error", "forecast_figures", "router"]

router = APIRouter(include_in_schema=False)

STEP = pd.Timedelta(minutes=15)


def _models(request: Request) -> ModelStore:
    twin, _ = _twin(request)
    models = getattr(request.app.state, "forecast_models", None)
    if not isinstance(models, ModelStore) or models.engine is not twin.engine:
        models = ModelStore(twin.engine)
        request.app.state.forecast_models = models
    return models


def _day(value: str | None, community: Community, lang: str) -> date:
    """The delivery day of a form (default: the day after the readings), FieldErrors on ``day``."""
    if not value:
        try:
            return default_day(community, TZ)
        except NgsiLdError as exc:
            raise FieldErrors({"day": exc.detail}) from None
    try:
        return parse_day(value)
    except NgsiLdError:
        raise FieldErrors({"day": i18n.translate("err.date", lang)}) from None


def _login_required(request: Request) -> None:
    user = current_user(request)
    if not (user.is_manager or user.role == "member"):
        raise WebError(403, i18n.translate("error.403", _lang(request)))


# --- forecasts -----------------------------------------------------------------------------------


def day_error(
    median: np.ndarray, low: np.ndarray, high: np.ndarray, measured: np.ndarray
) -> dict[str, float]:
    """Error of one day's forecast against what was measured (quarter-hours where both are known).

    Parameters
    ----------
    median, low, high
        Forecast median, 10 % and 90 % quantiles (kWh per quarter-hour).
    measured
        Measured kWh per quarter-hour (NaN where unknown).

    Returns
    -------
    dict
        ``mae_kwh`` (mean absolute error of the median, kWh per quarter-hour), ``coverage_80``
        (share of quarter-hours whose measurement lies inside [q10, q90], 0..1), ``n`` (quarter-hours
        compared); NaN figures when nothing can be compared.
    """
    ok = np.isfinite(median) & np.isfinite(measured) & np.isfinite(low) & np.isfinite(high)
    n = int(ok.sum())
    if n == 0:
        return {"mae_kwh": math.nan, "coverage_80": math.nan, "n": 0}
    m = measured[ok]
    return {
        "mae_kwh": float(np.mean(np.abs(median[ok] - m))),
        "coverage_80": float(np.mean((m >= low[ok]) & (m <= high[ok]))),
        "n": n,
    }


def _measured(community: Community, run: ForecastRun, target: str) -> dict[str, np.ndarray]:
    """Measured consumption and production of the target over the run's day (kWh per quarter-hour)."""
    span = readings_span(community)
    start, end = run.targets[0], run.targets[-1] + STEP
    if span is None or end <= span[0] or start >= span[1]:
        return {}
    lo, hi = max(start, span[0]), min(end, span[1])
    hist = histories(community, lo, hi, site=community_site(community), devices=member_devices(community))
    out: dict[str, np.ndarray] = {}
    for q in QUANTITIES:
        if target == community.id:
            cols = [h.values for (m, qq), h in hist.items() if qq == q]
            if not cols:
                continue
            frame = pd.concat(cols, axis=1)
            values = frame.sum(axis=1, min_count=frame.shape[1])
        elif (target, q) in hist:
            values = hist[(target, q)].values
        else:
            continue
        out[q] = values.reindex(run.targets).to_numpy(dtype=np.float64)
    return out


def forecast_figures(
    run: ForecastRun, target: str, measured: dict[str, np.ndarray], scores: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per quantity of the target: model, reason, totals per quantile, measured total and day error."""
    out = []
    for tf in run.forecasts:
        if tf.target_id != target:
            continue
        q = tf.forecast.quantiles
        levels = {f"q{round(float(lv) * 100):02d}": q[lv].to_numpy(dtype=np.float64) for lv in q.columns}
        meas = measured.get(tf.quantity)
        totals = {k: (float(v.sum()) if np.isfinite(v).all() else math.nan) for k, v in levels.items()}
        err = (
            day_error(levels["q50"], levels["q10"], levels["q90"], meas)
            if meas is not None and {"q10", "q50", "q90"} <= levels.keys()
            else {"mae_kwh": math.nan, "coverage_80": math.nan, "n": 0}
        )
        out.append(
            {
                "quantity": tf.quantity,
                "model": tf.forecast.model,
                "reason": tf.forecast.reason,
                "issue_time": tf.forecast.issue_time.tz_convert(TZ).strftime("%Y-%m-%d %H:%M"),
                "totals": totals,
                "measured_kwh": float(np.sum(meas))
                if meas is not None and np.isfinite(meas).all()
                else math.nan,
                "error": err,
                "scores": scores.get(tf.quantity, {}),
                "series": {k: _json_numbers(v) for k, v in levels.items()}
                | ({"measured": _json_numbers(meas)} if meas is not None else {}),
            }
        )
    return out


def _forecast_context(request: Request, community: Community) -> dict[str, Any]:
    user = current_user(request)
    lang = _lang(request)
    params = request.query_params
    target = params.get("target") or community.id
    if target != community.id:
        if not (user.is_manager or user.role == "member"):
            raise WebError(403, i18n.translate("error.403", lang))
        try:
            target = community.member(target).id
        except (KeyError, ValueError, NgsiLdError):
            raise WebError(404, i18n.translate("error.404", lang)) from None
        if not user.may_see_member(target):
            raise WebError(403, i18n.translate("error.403", lang))
    day = _day(params.get("day"), community, lang)
    models = _models(request)

    def compute() -> tuple[list[dict[str, Any]], pd.DatetimeIndex]:
        run = stored_forecast(
            community,
            day=day,
            members=None if target == community.id else [target],
            models=models,
            require=False,
        )
        measured = _measured(community, run, target)
        scores: dict[str, dict[str, Any]] = {}
        for q in QUANTITIES:
            stored = models.get(community.tenant, target, q)
            if stored is not None:
                scores[q] = {
                    "model": stored.model,
                    "trained_until": stored.trained_until.tz_convert(TZ).strftime("%Y-%m-%d"),
                    "values": {k: v for k, v in stored.scores.items() if v is not None and math.isfinite(v)},
                }
        return forecast_figures(run, target, measured, scores), run.targets

    # read once a minute per day and target (making a forecast empties the cache)
    figures, index = _cached(request, ("forecast", id(request.app), community.id, day, target), compute)
    if user.is_manager:
        targets = [(community.id, community.name or community.id)] + [
            (m.id, m.name) for m in community.members
        ]
    elif user.role == "member" and user.member_id in community.member_ids:
        targets = [(community.id, community.name or community.id)] + [
            (m.id, m.name) for m in community.members if m.id == user.member_id
        ]
    else:
        targets = [(community.id, community.name or community.id)]
    times = [ts.isoformat() for ts in index.tz_convert(TZ)]
    return {
        "community": community,
        "day": day,
        "target": target,
        "targets": targets,
        "figures": figures,
        "times": times,
        "is_member_target": target != community.id,
    }


@router.get("/communities/{community_id}/forecast", response_class=HTMLResponse)
def forecast_page(request: Request, community_id: str) -> HTMLResponse:
    community = _community(request, community_id)
    try:
        ctx = _forecast_context(request, community)
    except FieldErrors as exc:
        return _render(
            request,
            "forecast.html",
            status=400,
            community=community,
            errors=exc.errors,
            form=request.query_params,
            figures=[],
            day=None,
            target=community.id,
            targets=[(community.id, community.name or community.id)],
            times=[],
            is_member_target=False,
        )
    return _render(
        request, "forecast.html", errors={}, form=request.query_params, timedelta_day=timedelta(days=1), **ctx
    )


@router.post("/communities/{community_id}/forecast", response_model=None)
async def make_forecast(request: Request, community_id: str) -> Response:
    """The manager makes (trains and writes) the forecast of a day, then sees it."""
    community = _community(request, community_id)
    user = current_user(request)
    lang = _lang(request)
    if not user.is_manager:
        raise WebError(403, i18n.translate("error.403", lang))
    form = await request.form()
    target = str(form.get("target") or community.id)
    try:
        day = _day(str(form.get("day") or ""), community, lang)
        models = _models(request)
        await run_in_threadpool(lambda: forecast_day(community, day=day, score_days=0, models=models))
        _cache(request).clear()
    except FieldErrors as exc:
        return _render(
            request,
            "forecast.html",
            status=400,
            community=community,
            errors=exc.errors,
            form=form,
            figures=[],
            day=None,
            target=community.id,
            targets=[(community.id, community.name or community.id)],
            times=[],
            is_member_target=False,
        )
    except NgsiLdError as exc:
        return _render(
            request,
            "forecast.html",
            status=exc.status,
            community=community,
            errors={"day": exc.detail},
            form=form,
            figures=[],
            day=None,
            target=community.id,
            targets=[(community.id, community.name or community.id)],
            times=[],
            is_member_target=False,
        )
    query = urlencode({"day": day.isoformat(), "target": target})
    return RedirectResponse(f"/communities/{community_id}/forecast?{query}", status_code=303)


@router.get("/web/fragments/communities/{community_id}/backtest", response_class=HTMLResponse)
def backtest_fragment(request: Request, community_id: str) -> HTMLResponse:
    """The backtest table of a member's models (htmx fragment; manager or that member)."""
    community = _community(request, community_id)
    user = current_user(request)
    lang = _lang(request)
    params = request.query_params
    member = params.get("member") or ""
    try:
        mid = community.member(member).id
    except (KeyError, ValueError, NgsiLdError):
        raise WebError(404, i18n.translate("error.404", lang)) from None
    if not user.may_see_member(mid):
        raise WebError(403, i18n.translate("error.403", lang))
    quantity = params.get("quantity") or "consumption"
    error: str | None = None
    rows: list[dict[str, Any]] = []
    days = 14
    try:
        days = int(params.get("days") or "14")
        if not 1 <= days <= 60:
            raise ValueError
    except ValueError:
        error = i18n.translate("forecast.err_days", lang)
    report = None
    if error is None:
        try:
            report = _cached(
                request,
                ("backtest", id(request.app), community.id, mid, quantity, days, params.get("end_day")),
                lambda: backtest_member(
                    community,
                    mid,
                    quantity=quantity,
                    days=days,
                    end_day=params.get("end_day") or None,
                    models=_models(request),
                ),
            )
        except NgsiLdError as exc:
            error = exc.detail
    if report is not None:
        for model, r in report.scores.iterrows():
            rows.append({"model": str(model), **{k: r[k] for k in report.scores.columns}})
    return _render(
        request,
        "_backtest.html",
        rows=rows,
        error=error,
        report=report,
        quantity=quantity,
    )


# --- flexibility ---------------------------------------------------------------------------------


@router.get("/communities/{community_id}/flexibility", response_class=HTMLResponse)
def flexibility_page(request: Request, community_id: str) -> HTMLResponse:
    community = _community(request, community_id)
    _login_required(request)
    user = current_user(request)
    lang = _lang(request)
    params = request.query_params
    errors: dict[str, str] = {}
    mode = params.get("mode") or "compare"
    if mode not in MODES:
        errors["mode"] = i18n.translate("flex.err_mode", lang, modes=", ".join(MODES))
    limit: float | None = None
    raw_limit = (params.get("limit_kw") or "").strip()
    if raw_limit:
        try:
            limit = float(raw_limit.replace(",", "."))
            if not (math.isfinite(limit) and limit > 0):
                raise ValueError
        except ValueError:
            errors["limit_kw"] = i18n.translate("flex.err_limit", lang)
    day: date | None = None
    try:
        day = _day(params.get("day"), community, lang)
    except FieldErrors as exc:
        errors.update(exc.errors)
    body: dict[str, Any] | None = None
    if not errors and day is not None:
        chosen_day = day
        try:
            body = _cached(
                request,
                ("schedule", id(request.app), community.id, chosen_day, mode, limit),
                lambda: schedule_json(
                    schedule_day(
                        community,
                        day=chosen_day,
                        mode=mode,
                        settings=ScheduleSettings(connection_limit_kw=limit),
                        write=False,
                    )
                ),
            )
        except NgsiLdError as exc:
            errors["day"] = exc.detail
    view = (
        None
        if body is None
        else _schedule_view(body, community, user.member_id if not user.is_manager else None)
    )
    return _render(
        request,
        "flexibility.html",
        status=400 if errors else 200,
        community=community,
        errors=errors,
        form={
            "day": params.get("day") or (day.isoformat() if day else ""),
            "mode": mode,
            "limit_kw": raw_limit,
        },
        modes=MODES,
        day=day,
        view=view,
    )


def _sources(value: Any) -> str:
    """The forecasts a schedule used, in words: each distinct source with its number of members."""
    if not isinstance(value, dict):
        return str(value)
    counts: dict[str, int] = {}
    for source in value.values():
        counts[str(source)] = counts.get(str(source), 0) + 1
    return "; ".join(f"{source} ({n})" for source, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def _schedule_view(body: dict[str, Any], community: Community, only: str | None) -> dict[str, Any]:
    """What the flexibility page shows of a schedule (a member: its own devices and lines only)."""
    names = {m.id: m.name for m in community.members}
    visible = (lambda m: True) if only is None else (lambda m: m == only)
    devices = [d for d in body["devices"] if visible(d["member"])]
    statement = {m: items for m, items in body["value_statement"].items() if visible(m) and items}
    items = sorted({item for lines in statement.values() for item in lines})
    stack = [
        {
            "member": m,
            "name": names.get(m, m),
            "items": {i: lines.get(i) for i in items},
            "total": sum(v["value_eur"] for v in lines.values()),
        }
        for m, lines in statement.items()
    ]
    comparison = body.get("comparison")
    compare_members = []
    if comparison:
        for m, row in comparison["members"].items():
            if visible(m):
                compare_members.append({"member": m, "name": names.get(m, m), "row": row})
    return {
        "status": body["status"],
        "cost_eur": body["cost_eur"],
        "penalty_eur": body["penalty_eur"],
        "value_total_eur": body["value_total_eur"] if only is None else sum(s["total"] for s in stack),
        "price_source": body["price_source"],
        "forecast_source": _sources(body["forecast_source"]),
        "connection_limit_kw": body["connection_limit_kw"],
        "mode": body["mode"],
        "devices": [
            {
                **{k: v for k, v in d.items() if k != "setpoint_kw"},
                "name": names.get(d["member"], d["member"]),
            }
            for d in devices
        ],
        "items": items,
        "stack": stack,
        "unmet": [
            u | {"name": names.get(u["member"], u["member"])} for u in body["unmet"] if visible(u["member"])
        ],
        "summary": comparison["summary"] if comparison else None,
        "compare_members": compare_members,
        "chart": {
            "time": body["time"],
            "prices": body["prices_eur_per_kwh"],
            "flows": body["flows_kw"],
            "devices": {d["device"]: d["setpoint_kw"] for d in devices},
        },
    }


# --- fairness ------------------------------------------------------------------------------------


@router.get("/communities/{community_id}/fairness", response_class=HTMLResponse)
def fairness_page(request: Request, community_id: str) -> HTMLResponse:
    community = _community(request, community_id)
    _login_required(request)
    user = current_user(request)
    lang = _lang(request)
    params = request.query_params
    errors: dict[str, str] = {}
    period = None
    try:
        period = parse_period(
            params.get("period") or "week",
            params.get("date"),
            default_date=_default_date(community),
            lang=lang,
        )
        if period.kind == "year":
            errors["period"] = i18n.translate("fair.err_year", lang)
    except FieldErrors as exc:
        errors.update(exc.errors)
    prices: dict[str, float | None] = {}
    for name, _label in PRICE_FIELDS:
        try:
            prices[name] = _parse_factor(params.get(name), lang)
        except FieldErrors:
            errors[name] = i18n.translate("err.number", lang)
    pricing = params.get("pricing") or None
    if pricing is not None and pricing not in PRICINGS_SHOWN:
        errors["pricing"] = f"{pricing!r}: " + ", ".join(PRICINGS_SHOWN)
    rows: list[dict[str, Any]] = []
    result: dict[str, Any] | None = None
    if not errors and period is not None:
        clipped = _clip(community, period.start, period.end)
        if clipped is None:
            errors["date"] = i18n.translate("err.nodata", lang)
        else:
            lo, hi = clipped
            try:
                report = _cached(
                    request,
                    ("fairness", id(request.app), community.id, clipped, pricing, tuple(prices.items())),
                    lambda: community_fairness(
                        community,
                        start=lo,
                        end=hi,
                        pricing=pricing,
                        tz=TZ,
                        supplier_energy_eur_per_kwh=prices["supplier_energy_eur_per_kwh"],
                        feed_in_eur_per_kwh=prices["feed_in_eur_per_kwh"],
                        grid_fee_eur_per_kwh=prices["grid_fee_eur_per_kwh"],
                        community_price_eur_per_kwh=prices["community_price_eur_per_kwh"],
                    ),
                )
            except NgsiLdError as exc:
                errors["pricing"] = exc.detail
            else:
                names = {m.id: m.name for m in community.members}
                for mid, row in report.comparison.iterrows():
                    if user.may_see_member(str(mid)):
                        rows.append(
                            {"id": str(mid), "name": names.get(str(mid), str(mid)), "row": row.to_dict()}
                        )
                sv = report.shapley
                result = {
                    "exact": sv.exact,
                    "n_permutations": sv.n_permutations,
                    "grand_coalition_eur": sv.grand_coalition_eur,
                    "gap_eur": report.gap_eur if user.is_manager else None,
                    "pricing": report.settlement.pricing,
                    "start": lo,
                    "end": hi,
                }
    chart = {
        "members": [r["name"] for r in rows],
        "shapley": _json_numbers(np.array([r["row"]["shapley_eur"] for r in rows], dtype=np.float64)),
        "settled": _json_numbers(np.array([r["row"]["settled_savings_eur"] for r in rows], dtype=np.float64)),
    }
    return _render(
        request,
        "fairness.html",
        status=400 if errors else 200,
        community=community,
        period=period,
        errors=errors,
        form=params,
        price_fields=PRICE_FIELDS,
        pricings=PRICINGS_SHOWN,
        rows=rows,
        result=result,
        chart=chart,
    )
