"""BRIGHT's REST API for mobility scenarios of a community: run, list, read, compare, plot.

Thin: it parses the request, loads the community from the twin, calls
:mod:`bright.services.mobility` and renders JSON (units in the field names or in ``units``, times
ISO 8601 UTC, unknown values ``null``). Every error is an NGSI-LD error rendered as ProblemDetails
by the app's exception handler: 400 ``BadRequestData`` for a bad spec (an unknown key is named with
the allowed ones) or parameter, 404 ``ResourceNotFound`` for an unknown community or scenario.

==============================================================  ==============================================
``POST /api/communities/{id}/scenarios``                        run one spec (object) or several (array); write
``GET  /api/communities/{id}/scenarios``                        the stored scenarios with their main KPIs
``GET  /api/communities/{id}/scenarios/compare?scenario=..``    stored scenarios side by side (KPI rows)
``GET  /api/communities/{id}/scenarios/plot?scenario=..``       plot data: duration curve, daily profile ...
``GET  /api/communities/{id}/scenarios/{scenario}``             one stored scenario (id or name)
==============================================================  ==============================================

Install with :func:`install`; the tenant is the ``NGSILD-Tenant`` header.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import Response

from bright.api.http import json_response, read_json
from bright.api.ngsild import tenant_of
from bright.services.community import Community, load_community
from bright.services.mobility import (
    CURVES,
    METRICS,
    SERIES,
    ScenarioRun,
    ScenarioSpec,
    compare_stored,
    list_scenarios,
    parse_spec,
    run_scenarios,
    scenario_curves,
    stored_scenario,
)
from bright.twin.entities import check_entity_id
from bright.twin.errors import BadRequestData
from bright.twin.series import SeriesStore
from bright.twin.service import TwinService

__all__ = ["install", "router", "run_json"]

router = APIRouter(prefix="/api/communities", tags=["mobility scenarios"])

#: Most scenarios one POST may run (each is a year of 15-min simulation).
MAX_SCENARIOS = 12
#: KPIs shown in the list of scenarios.
LIST_KPIS = ("n_vehicles", "peak_import_kw", "peak_increase_kw", "unmet_kwh", "self_sufficiency", "cost_eur")


def _spec_schema() -> dict[str, Any]:
    """The spec's JSON schema with its nested models inlined (no $ref to resolve)."""
    schema = ScenarioSpec.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)  # type: ignore[no-any-return]


SPEC_SCHEMA = _spec_schema()
RUN_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One scenario spec, or an array of them (distinct names). Unknown keys are rejected.",
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        SPEC_SCHEMA,
                        {"type": "array", "items": SPEC_SCHEMA, "minItems": 1, "maxItems": MAX_SCENARIOS},
                    ]
                },
                "example": {
                    "name": "2030 smart",
                    "year": 2030,
                    "n_evs": 20,
                    "policy": "earliest_deadline_first",
                    "ev_site_limit_kw": 40,
                },
            }
        },
    }
}


def _community(request: Request, community_id: str) -> Community:
    check_entity_id(community_id)
    twin: TwinService = request.app.state.twin
    store = getattr(request.app.state, "series", None)
    if not isinstance(store, SeriesStore) or store.engine is not twin.engine:
        store = SeriesStore(twin.engine)
        request.app.state.series = store
    return load_community(twin, store, community_id, tenant=tenant_of(request))


def _allowed(request: Request, names: set[str]) -> None:
    unknown = sorted(set(request.query_params.keys()) - names)
    if unknown:
        raise BadRequestData(
            f"unknown query parameter {unknown[0]!r}; this endpoint takes {', '.join(sorted(names)) or 'none'}"
        )


def _refs(request: Request) -> list[str]:
    refs = [r for v in request.query_params.getlist("scenario") for r in v.split(",") if r.strip()]
    if not refs:
        raise BadRequestData("name the scenarios: ?scenario=<id or name>&scenario=... (or comma-separated)")
    if len(refs) > 20:
        raise BadRequestData(f"at most 20 scenarios at once, got {len(refs)}")
    return [r.strip() for r in refs]


def run_json(run: ScenarioRun) -> dict[str, Any]:
    """A scenario run as JSON: spec, period, KPIs with units, input sources, what was written."""
    inputs = run.inputs
    kpis = run.kpis
    return {
        "id": run.entity_id,
        "name": run.spec.name,
        "community": inputs.community.id,
        "year": run.spec.year,
        "policy": run.spec.policy,
        "period": {
            "start": inputs.model.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": inputs.model.end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "steps": inputs.model.n_steps,
        },
        "parameters": run.spec.model_dump(mode="json", exclude_none=True),
        "kpis": {k: (round(v, 6) if math.isfinite(v) else None) for k, v in kpis.items()},
        "units": {k: METRICS[k][1] for k in kpis if k in METRICS},
        "sources": dict(inputs.sources),
        "series": {k: v[0] for k, v in SERIES.items()},
        "series_values_written": run.series_written,
        "elapsed_s": round(run.elapsed_s, 3),
    }


@router.post(
    "/{community_id}/scenarios",
    status_code=201,
    summary="Run mobility scenarios and write them to the twin",
    openapi_extra=RUN_BODY,
)
async def post_scenarios(
    request: Request,
    community_id: str,
    write: Annotated[bool, Query(description="Write the MobilityScenario entities and series")] = True,
) -> Response:
    """Evaluate one scenario spec (a JSON object) or several (an array) on the community's last year
    of readings at 15 min: EV fleet, charging policy, KPIs (peak and its increase, energy delivered
    and unmet, self-consumption, self-sufficiency, shared kWh, hours above the connection and
    LV-cabin limits, cost, CO2). Writes a ``MobilityScenario`` entity per scenario and its series
    ``siteLoadKw``, ``evChargeKw``, ``evDischargeKw`` (datasetId ``urn:ngsi-ld:Dataset:mobility``)."""
    _allowed(request, {"write"})
    check_entity_id(community_id)
    body = await read_json(request, request.app.state.settings.max_body_bytes)
    many = isinstance(body, list)
    items = body if many else [body]
    if not items:
        raise BadRequestData("the array of scenario specs is empty")
    if len(items) > MAX_SCENARIOS:
        raise BadRequestData(f"at most {MAX_SCENARIOS} scenarios per request, got {len(items)}")
    specs = [parse_spec(item) for item in items]
    community = _community(request, community_id)
    runs = run_scenarios(community, specs, write=write)
    out: Any = [run_json(r) for r in runs] if many else run_json(runs[0])
    return json_response(out, status=201 if write else 200)


@router.get("/{community_id}/scenarios", summary="The stored mobility scenarios of a community")
def get_scenarios(request: Request, community_id: str) -> Response:
    """Every stored scenario of the community (by name) with its year, policy, period and main KPIs."""
    _allowed(request, set())
    community = _community(request, community_id)
    rows = []
    for s in list_scenarios(community):
        body = s.as_json()
        rows.append(
            {
                "id": s.id,
                "name": s.name,
                "year": s.year,
                "policy": s.policy,
                "period": body["period"],
                "computed_at": s.computed_at,
                "kpis": {k: body["kpis"][k] for k in LIST_KPIS},
            }
        )
    return json_response({"community": community.id, "scenarios": rows})


@router.get(
    "/{community_id}/scenarios/compare",
    summary="Stored scenarios side by side",
    openapi_extra={
        "parameters": [
            {
                "name": "scenario",
                "in": "query",
                "required": True,
                "schema": {"type": "array", "items": {"type": "string"}},
                "description": "Scenario ids or names (repeat, or comma-separated)",
            }
        ]
    },
)
def get_compare(request: Request, community_id: str) -> Response:
    """One row per KPI (label, unit, value per scenario), the scenarios in the order asked."""
    _allowed(request, {"scenario"})
    community = _community(request, community_id)
    refs = _refs(request)
    table = compare_stored(community, refs)
    found = [stored_scenario(community, r) for r in refs]
    rows = []
    for metric, row in table.iterrows():
        label, unit, _ = METRICS[str(metric)]
        rows.append(
            {
                "metric": metric,
                "label": label,
                "unit": unit,
                "values": {
                    str(k): (round(float(v), 6) if math.isfinite(v) else None) for k, v in row.items()
                },
            }
        )
    return json_response(
        {
            "community": community.id,
            "scenarios": [{"id": s.id, "name": s.name, "year": s.year, "policy": s.policy} for s in found],
            "rows": rows,
        }
    )


@router.get(
    "/{community_id}/scenarios/plot",
    summary="Plot data of stored scenarios (for the dashboard)",
    openapi_extra={
        "parameters": [
            {
                "name": "scenario",
                "in": "query",
                "required": True,
                "schema": {"type": "array", "items": {"type": "string"}},
                "description": "Scenario ids or names (repeat, or comma-separated)",
            }
        ]
    },
)
def get_plot(
    request: Request,
    community_id: str,
    curve: Annotated[str, Query(description=f"One of {', '.join(CURVES)}")] = "duration",
    quantity: Annotated[str, Query(description=f"One of {', '.join(SERIES)} (kW)")] = "site_load",
    points: Annotated[int, Query(ge=2, le=2000, description="Points of the duration curve")] = 200,
    resolution: Annotated[str, Query(description="timeseries: bucket (15min, 1h, 1D ...)")] = "1D",
    how: Annotated[str, Query(description="timeseries: max, mean or min per bucket")] = "max",
) -> Response:
    """x values and one y series per scenario (kW): load-duration curve, mean daily profile (local
    time), daily peaks, or the series aggregated per bucket; ready for an ECharts line chart."""
    _allowed(request, {"scenario", "curve", "quantity", "points", "resolution", "how"})
    community = _community(request, community_id)
    data = scenario_curves(
        community,
        _refs(request),
        curve=curve,
        quantity=quantity,
        points=points,
        resolution=resolution,
        how=how,
    )
    return json_response({"community": community.id, **data})


@router.get("/{community_id}/scenarios/{scenario_id:path}", summary="One stored mobility scenario")
def get_scenario(request: Request, community_id: str, scenario_id: str) -> Response:
    """The scenario (entity id or name): its spec, period, every KPI with its unit, input sources."""
    _allowed(request, set())
    community = _community(request, community_id)
    return json_response(stored_scenario(community, scenario_id).as_json())


def install(app: FastAPI) -> None:
    """Mount the mobility scenario endpoints on the node's app."""
    app.include_router(router)
