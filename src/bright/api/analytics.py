"""BRIGHT's REST API for forecasts and flexibility schedules of a community.

Thin: it checks the query parameters, loads the community from the twin, calls
:mod:`bright.services.forecasting` or :mod:`bright.services.scheduling` and renders JSON (units in the
field names, times ISO 8601 with the community's local offset, missing values ``null``). Every error
is an NGSI-LD error rendered as ProblemDetails by the app's exception handler: 400 ``BadRequestData``
for a bad parameter or an unusable community, 404 ``ResourceNotFound`` for an unknown community or
member or a forecast that was never made.

==========================================================  =====================================================
``GET  /api/communities/{id}/forecast``                     the stored day-ahead forecast of a day (nothing computed)
``POST /api/communities/{id}/forecast``                     forecast the day (train or reuse models), write it to the twin
``GET  /api/communities/{id}/forecast/backtest``            rolling-origin backtest of a member (nothing written)
``POST /api/communities/{id}/forecast/backtest``            same, the scores stored with the member's model
``GET  /api/communities/{id}/schedule``                     the day's schedule, computed, not written (a preview)
``POST /api/communities/{id}/schedule``                     schedule the day and write the FlexibilitySchedules
==========================================================  =====================================================

Install with :func:`install`; the tenant is the ``NGSILD-Tenant`` header.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import Response

from bright.api.http import json_response
from bright.api.ngsild import tenant_of
from bright.services.community import Community, load_community
from bright.services.forecasting import (
    QUANTITIES,
    BacktestReport,
    ForecastRun,
    ModelStore,
    backtest_member,
    forecast_day,
    stored_forecast,
)
from bright.services.scheduling import (
    MODES,
    ScheduleRun,
    ScheduleSettings,
    comparison_json,
    device_setpoints,
    member_statement,
    schedule_day,
    unmet_rows,
)
from bright.twin.entities import check_entity_id
from bright.twin.errors import BadRequestData
from bright.twin.series import SeriesStore
from bright.twin.service import TwinService

__all__ = ["backtest_json", "forecast_json", "install", "router", "schedule_json"]

router = APIRouter(prefix="/api/communities", tags=["forecasts and flexibility"])

Day = Annotated[
    str | None,
    Query(description="Local delivery day YYYY-MM-DD; default the day after the readings (tomorrow live)"),
]
Member = Annotated[
    str | None, Query(description="Only this member (entity id, meter id or EAN); no community total then")
]
Quantity = Annotated[str | None, Query(description="consumption or production; default both")]


def _services(request: Request) -> tuple[TwinService, SeriesStore, ModelStore]:
    twin: TwinService = request.app.state.twin
    store = getattr(request.app.state, "series", None)
    if not isinstance(store, SeriesStore) or store.engine is not twin.engine:
        store = SeriesStore(twin.engine)
        request.app.state.series = store
    models = getattr(request.app.state, "forecast_models", None)
    if not isinstance(models, ModelStore) or models.engine is not twin.engine:
        models = ModelStore(twin.engine)
        request.app.state.forecast_models = models
    return twin, store, models


def _community(request: Request, community_id: str) -> tuple[Community, ModelStore]:
    check_entity_id(community_id)
    twin, store, models = _services(request)
    return load_community(twin, store, community_id, tenant=tenant_of(request)), models


def _allowed(request: Request, names: set[str]) -> None:
    unknown = sorted(set(request.query_params.keys()) - names)
    if unknown:
        raise BadRequestData(
            f"unknown query parameter {unknown[0]!r}; this endpoint takes {', '.join(sorted(names)) or 'none'}"
        )


def _quantities(quantity: str | None) -> tuple[str, ...]:
    if quantity is None:
        return QUANTITIES
    if quantity not in QUANTITIES:
        raise BadRequestData(f"quantity {quantity!r} is not one of {', '.join(QUANTITIES)}")
    return (quantity,)


# --- rendering -----------------------------------------------------------------------------------


def _times(index: pd.DatetimeIndex, tz: str) -> list[str]:
    text = pd.Series(pd.DatetimeIndex(index).tz_convert(tz).strftime("%Y-%m-%dT%H:%M:%S%z"), dtype=object)
    return (text.str[:-2] + ":" + text.str[-2:]).tolist()


def _stamp(ts: pd.Timestamp, tz: str) -> str:
    return _times(pd.DatetimeIndex([ts]), tz)[0]


def _values(a: Any, digits: int = 6) -> list[float | None]:
    arr = np.asarray(a, dtype=np.float64)
    return [None if not math.isfinite(v) else round(float(v), digits) for v in arr]


def _num(v: Any, digits: int = 6) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else round(float(v), digits)


def forecast_json(run: ForecastRun, *, quantities: tuple[str, ...] = QUANTITIES) -> dict[str, Any]:
    """A forecast run as JSON: per target and quantity its model, reason and quantiles per quarter-hour.

    Parameters
    ----------
    run : ForecastRun
        Computed or stored forecasts.
    quantities : tuple of str
        Quantities to include.
    """
    tz = run.tz
    out = []
    for tf in run.forecasts:
        if tf.quantity not in quantities:
            continue
        q = tf.forecast.quantiles
        totals = q.sum(axis=0, min_count=len(q))
        out.append(
            {
                "target": tf.target_id,
                "level": tf.level,
                "quantity": tf.quantity,
                "entity": tf.entity_id,
                "model": tf.forecast.model,
                "reason": tf.forecast.reason,
                "issue_time": _stamp(tf.forecast.issue_time, tz),
                "unit": "kWh per 15 min",
                "quantiles": [float(v) for v in q.columns],
                "total_kwh": {f"q{round(float(lv) * 100):02d}": _num(totals[lv]) for lv in q.columns},
                "model_trained_until": None
                if tf.model_trained_until is None
                else _stamp(tf.model_trained_until, tz),
                "model_scores": {k: _num(v) for k, v in tf.model_scores.items()},
                "values": {f"q{round(float(lv) * 100):02d}": _values(q[lv]) for lv in q.columns},
            }
        )
    return {
        "community": run.community.id,
        "day": run.day.isoformat(),
        "timezone": tz,
        "horizon": "day-ahead",
        "issue_time": _stamp(run.issue_time, tz),
        "time": _times(run.targets, tz),
        "forecasts": out,
        "trained": [
            {
                "target": m.target_id,
                "quantity": m.quantity,
                "model": m.model,
                "scores": {k: _num(v) for k, v in m.scores.items()},
            }
            for m in run.trained
        ],
        "entities_written": len(run.entities),
        "series_values_written": run.series_written,
        "elapsed_s": round(run.elapsed_s, 3),
    }


def backtest_json(report: BacktestReport) -> dict[str, Any]:
    """A backtest as JSON: the score table per model and the days."""
    rows = []
    for model, r in report.scores.iterrows():
        rows.append(
            {
                "model": str(model),
                "mae_kwh": _num(r["mae"]),
                "rmae": _num(r["rmae"]),
                "skill_vs_seasonal_naive": _num(r["skill"]),
                "pinball_kwh": _num(r["pinball"]),
                "crps_kwh": _num(r["crps"]),
                "coverage_80": _num(r["coverage"]),
                "n": int(r["n"]),
                "days": int(r["days"]),
                "used": str(r["used"]),
            }
        )
    return {
        "member": report.member_id,
        "quantity": report.quantity,
        "first_day": report.days[0].date().isoformat(),
        "last_day": report.days[-1].date().isoformat(),
        "issue": "D-1 12:00 local, rolling origin",
        "scores": rows,
        "elapsed_s": round(report.elapsed_s, 3),
    }


def schedule_json(run: ScheduleRun) -> dict[str, Any]:
    """A schedule as JSON: status, costs, value stack, what was not met, flows and device setpoints."""
    setup = run.setup
    tz = setup.tz
    setpoints = device_setpoints(run)
    devices = []
    for ref in setup.devices:
        p = setpoints[ref.device_id].to_numpy()
        devices.append(
            {
                "device": ref.device_id,
                "member": ref.member_id,
                "kind": ref.kind,
                "max_consumption_kw": _num(ref.max_consumption_kw),
                "max_production_kw": _num(ref.max_production_kw),
                "energy_in_kwh": _num(float(np.clip(p, 0.0, None).sum() * 0.25)),
                "energy_out_kwh": _num(float(np.clip(-p, 0.0, None).sum() * 0.25) + 0.0),
                "setpoint_kw": _values(p),
            }
        )
    return {
        "community": setup.community.id,
        "day": setup.day.isoformat(),
        "timezone": tz,
        "mode": run.mode,
        "status": run.status,
        "cost_eur": _num(run.cost_eur),
        "penalty_eur": _num(run.penalty_eur),
        "connection_limit_kw": _num(setup.connection_limit_kw)
        if math.isfinite(setup.connection_limit_kw)
        else None,
        "sharing_value_eur_per_kwh": _num(setup.sharing_value_eur_per_kwh),
        "price_source": setup.price_source,
        "forecast_source": setup.forecast_source,
        "time": _times(setup.index, tz),
        "prices_eur_per_kwh": {k: _values(setup.prices[k]) for k in setup.prices.columns},
        "flows_kw": {k: _values(run.flows[k]) for k in run.flows.columns},
        "value_statement": {m: member_statement(run, m) for m in setup.community.member_ids},
        "value_total_eur": _num(float(run.statement["value_eur"].sum()) if len(run.statement) else 0.0),
        "unmet": unmet_rows(run),
        "comparison": comparison_json(run),
        "devices": devices,
        "entities_written": len(run.entities),
        "series_values_written": run.series_written,
        "solve_time_s": round(run.solve_time_s, 4),
        "elapsed_s": round(run.elapsed_s, 3),
    }


# --- endpoints -----------------------------------------------------------------------------------


@router.get("/{community_id}/forecast", summary="The stored day-ahead forecast of a day")
def get_forecast(
    request: Request, community_id: str, day: Day = None, member: Member = None, quantity: Quantity = None
) -> Response:
    """The forecasts stored for a delivery day (members and community; quantiles per quarter-hour),
    with the model that made each and why. 404 when none was made: POST to make it."""
    _allowed(request, {"day", "member", "quantity", "retrain"})
    if "retrain" in request.query_params:
        raise BadRequestData(
            "retrain makes a new forecast: use POST /api/communities/{id}/forecast?retrain=true"
        )
    c, models = _community(request, community_id)
    qs = _quantities(quantity)
    run = stored_forecast(
        c, day=day, members=None if member is None else [member], quantities=qs, models=models
    )
    return json_response(forecast_json(run, quantities=qs))


@router.post("/{community_id}/forecast", summary="Forecast a day and write it to the twin")
def post_forecast(
    request: Request,
    community_id: str,
    day: Day = None,
    member: Member = None,
    quantity: Quantity = None,
    retrain: Annotated[bool, Query(description="Retrain every model now")] = False,
    max_age_days: Annotated[
        float, Query(ge=0, le=3650, description="Retrain a stored model older than this (days)")
    ] = 7.0,
    score_days: Annotated[int, Query(ge=0, le=60, description="Backtest days stored with a new model")] = 7,
) -> Response:
    """Forecast the day for every member (or one) and the community (reconciled: the community median
    is the sum of the members'), reusing stored models or training them, and write the Forecast
    entities and their quantile series."""
    _allowed(request, {"day", "member", "quantity", "retrain", "max_age_days", "score_days"})
    c, models = _community(request, community_id)
    qs = _quantities(quantity)
    run = forecast_day(
        c,
        day=day,
        members=None if member is None else [member],
        retrain=retrain,
        max_model_age_days=max_age_days,
        score_days=score_days,
        models=models,
    )
    return json_response(forecast_json(run, quantities=qs))


def _backtest(
    request: Request,
    community_id: str,
    member: str | None,
    quantity: str | None,
    days: int,
    end_day: str | None,
    retrain_every_days: int,
    store: bool,
) -> Response:
    _allowed(request, {"member", "quantity", "days", "end_day", "retrain_every_days"})
    if member is None:
        raise BadRequestData("member is required: the backtest is of one member's forecast")
    c, models = _community(request, community_id)
    q = _quantities(quantity)[0]
    report = backtest_member(
        c,
        member,
        quantity=q,
        days=days,
        end_day=end_day,
        retrain_every_days=retrain_every_days,
        models=models,
        store_scores=store,
    )
    return json_response(backtest_json(report))


BacktestDays = Annotated[int, Query(ge=1, le=366, description="Delivery days to backtest")]
EndDay = Annotated[str | None, Query(description="Last delivery day YYYY-MM-DD; default the last full day")]
Retrain = Annotated[int, Query(ge=1, le=366, description="Retrain the learned model every this many days")]
BacktestMember = Annotated[str | None, Query(description="The member (entity id, meter id or EAN); required")]


@router.get("/{community_id}/forecast/backtest", summary="Backtest a member's day-ahead forecast")
def get_backtest(
    request: Request,
    community_id: str,
    member: BacktestMember = None,
    quantity: Annotated[str | None, Query(description="consumption (default) or production")] = None,
    days: BacktestDays = 60,
    end_day: EndDay = None,
    retrain_every_days: Retrain = 7,
) -> Response:
    """Rolling-origin backtest (issued D-1 12:00 local, no leakage) of every model side by side:
    MAE, rMAE, skill vs seasonal naive, pinball, CRPS, 80 % coverage. Nothing is written."""
    return _backtest(
        request, community_id, member, quantity or "consumption", days, end_day, retrain_every_days, False
    )


@router.post("/{community_id}/forecast/backtest", summary="Backtest a member and store the scores")
def post_backtest(
    request: Request,
    community_id: str,
    member: BacktestMember = None,
    quantity: Annotated[str | None, Query(description="consumption (default) or production")] = None,
    days: BacktestDays = 60,
    end_day: EndDay = None,
    retrain_every_days: Retrain = 7,
) -> Response:
    """The backtest of GET, with the learned model's scores stored (``backtest_*``) with the member's model."""
    return _backtest(
        request, community_id, member, quantity or "consumption", days, end_day, retrain_every_days, True
    )


def _schedule(
    request: Request, community_id: str, day: str | None, mode: str, limit_kw: float | None, write: bool
) -> Response:
    _allowed(request, {"day", "mode", "limit_kw"})
    if mode not in MODES:
        raise BadRequestData(f"mode {mode!r} is not one of {', '.join(MODES)}")
    if limit_kw is not None and not (math.isfinite(limit_kw) and limit_kw > 0):
        raise BadRequestData(f"limit_kw must be a number > 0 (kW), got {limit_kw}")
    c, _ = _community(request, community_id)
    run = schedule_day(
        c, day=day, mode=mode, settings=ScheduleSettings(connection_limit_kw=limit_kw), write=write
    )
    return json_response(schedule_json(run))


Mode = Annotated[str, Query(description="individual, community or compare")]
Limit = Annotated[float | None, Query(description="Community connection limit in kW (overrides the twin's)")]


@router.get("/{community_id}/schedule", summary="The day's flexibility schedule (a preview)")
def get_schedule(
    request: Request, community_id: str, day: Day = None, mode: Mode = "community", limit_kw: Limit = None
) -> Response:
    """Schedule the day's batteries, EVs, heat pumps and PV from the stored forecasts (persistence
    where there are none) and the day-ahead prices; nothing is written."""
    return _schedule(request, community_id, day, mode, limit_kw, False)


@router.post("/{community_id}/schedule", summary="Schedule the day and write it to the twin")
def post_schedule(
    request: Request, community_id: str, day: Day = None, mode: Mode = "community", limit_kw: Limit = None
) -> Response:
    """Schedule the day and write a FlexibilitySchedule per device (setpoints ``powerKw`` under
    ``urn:ngsi-ld:Dataset:schedule``) and one for the community (value stack, unmet, comparison)."""
    return _schedule(request, community_id, day, mode, limit_kw, True)


def install(app: FastAPI) -> None:
    """Mount the forecast and schedule endpoints on the node's app."""
    app.include_router(router)
