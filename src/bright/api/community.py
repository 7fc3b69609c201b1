"""BRIGHT's REST API for community energy: balance, sharing, settlement, statements and fairness.

Thin: it validates the query parameters, loads the community from the twin, calls a use case of
:mod:`bright.services.energy` and renders JSON (units in the field names) or CSV. Every error is an
NGSI-LD error rendered as ProblemDetails by the app's exception handler (400 ``BadRequestData`` for
bad parameters or an unusable community, 404 ``ResourceNotFound`` for an unknown one).

Install with :func:`install` (``create_app`` calls it); the tenant is the ``NGSILD-Tenant`` header.
"""

from __future__ import annotations

import io
import math
from typing import Annotated, Any, TypedDict

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import Response

from bright.api.http import json_response
from bright.api.ngsild import tenant_of
from bright.energy.sharing import to_wh
from bright.services.community import (
    PRICINGS,
    TERMS,
    Community,
    CommunityInputError,
    check_tz,
    list_communities,
    load_community,
    parse_method,
    readings_span,
    resolve_range,
)
from bright.services.energy import (
    KPI_FREQUENCIES,
    BalanceReport,
    FairnessReport,
    SettlementReport,
    SharingRun,
    community_balance,
    community_fairness,
    community_settlement,
    community_sharing,
    parse_freq,
    write_results,
)
from bright.twin.entities import check_entity_id
from bright.twin.errors import BadRequestData
from bright.twin.series import SeriesStore
from bright.twin.service import TwinService

__all__ = ["csv_bytes", "install", "router"]

router = APIRouter(prefix="/api", tags=["community energy"])

FORMATS = ("json", "csv")
LEVELS = ("all", "community", "members")
#: Largest community enumerated exactly by /fairness (2^20 coalitions); sample beyond.
MAX_EXACT_MEMBERS = 20
MAX_PERMUTATIONS = 20_000

# --- parameters ----------------------------------------------------------------------------------

Start = Annotated[
    str | None,
    Query(
        description="Start of the period: ISO 8601 date (local midnight in tz) or date-time; default: "
        "the start of the readings"
    ),
]
End = Annotated[
    str | None,
    Query(description="End of the period (exclusive), like start; default: the end of the readings"),
]
Month = Annotated[str | None, Query(description="A local calendar month YYYY-MM, instead of start/end")]
Tz = Annotated[str, Query(description="IANA time zone of dates, periods and labels")]
Method = Annotated[
    str | None,
    Query(
        description="Sharing method: fixed, fixed_multi_round, pro_rata, hybrid or maximum; default the "
        "community's sharingMethod"
    ),
]
Pricing = Annotated[
    str | None,
    Query(
        description="Price of shared kWh: fixed, mid_market or auction; default the community's pricingMethod"
    ),
]
Format = Annotated[str, Query(description="json or csv")]
Price = Annotated[float | None, Query(description="EUR/kWh, overrides the community's value")]


def _services(request: Request) -> tuple[TwinService, SeriesStore]:
    twin: TwinService = request.app.state.twin
    store = getattr(request.app.state, "series", None)
    if not isinstance(store, SeriesStore) or store.engine is not twin.engine:
        store = SeriesStore(twin.engine)
        request.app.state.series = store
    return twin, store


def _allowed(request: Request, names: set[str]) -> None:
    unknown = sorted(set(request.query_params.keys()) - names)
    if unknown:
        raise BadRequestData(
            f"unknown query parameter {unknown[0]!r}; this endpoint takes {', '.join(sorted(names))}"
        )


def _choice(value: str, allowed: tuple[str, ...], name: str) -> str:
    if value not in allowed:
        raise BadRequestData(f"{name} {value!r} is not one of {', '.join(allowed)}")
    return value


def _finite(value: float | None, name: str) -> float | None:
    if value is not None and not math.isfinite(value):
        raise BadRequestData(f"{name} must be a finite number (EUR/kWh), got {value}")
    return value


def _community(request: Request, community_id: str) -> Community:
    check_entity_id(community_id)
    twin, store = _services(request)
    return load_community(twin, store, community_id, tenant=tenant_of(request))


def _method(method: str | None) -> str | None:
    return None if method is None else parse_method(method).value


def _pricing(pricing: str | None) -> str | None:
    return None if pricing is None else _choice(pricing, PRICINGS, "pricing")


# --- rendering -----------------------------------------------------------------------------------


def _iso(values: pd.Series | pd.Index) -> np.ndarray:
    """ISO 8601 text with the zone offset (``2016-06-01T00:00:00+02:00``), None where missing.

    Each distinct instant is formatted once (a long table repeats every interval per member).
    """
    codes, uniques = pd.factorize(pd.DatetimeIndex(values))
    text = [t[:-2] + ":" + t[-2:] for t in pd.DatetimeIndex(uniques).strftime("%Y-%m-%dT%H:%M:%S%z")]
    out = np.array([*text, None], dtype=object)
    return out[codes]  # code -1 (NaT) picks the trailing None


def _columns(frame: pd.DataFrame) -> dict[str, list[Any]]:
    """Columns as JSON-ready lists (timestamps as ISO 8601 text; NaN stays NaN, orjson writes null)."""
    cols: dict[str, list[Any]] = {}
    for name in frame.columns:
        col = frame[name]
        if isinstance(col.dtype, pd.DatetimeTZDtype):
            cols[str(name)] = _iso(col).tolist()
        else:
            cols[str(name)] = col.tolist()
    return cols


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON objects (NaN becomes null, timestamps ISO 8601 with offset)."""
    cols = _columns(frame)
    names = list(cols)
    return [dict(zip(names, row, strict=True)) for row in zip(*cols.values(), strict=True)]


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """A frame as CSV (UTF-8): header line, ISO 8601 timestamps with offset, empty cells for missing
    values, floats in their shortest round-trip form. Written with pyarrow (about 1 s per million cells).
    """
    columns = {}
    for name in frame.columns:
        col = frame[name]
        if isinstance(col.dtype, pd.DatetimeTZDtype):
            columns[str(name)] = pa.array(_iso(col), type=pa.string())
        else:
            columns[str(name)] = pa.array(col, from_pandas=True)  # NaN -> null (empty cell)
    sink = io.BytesIO()
    pa_csv.write_csv(pa.table(columns), sink, write_options=pa_csv.WriteOptions(quoting_style="needed"))
    return sink.getvalue()


def _csv(frame: pd.DataFrame, filename: str) -> Response:
    """A CSV download of ``frame`` (see :func:`csv_bytes`)."""
    return Response(
        content=csv_bytes(frame),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _stamp(ts: pd.Timestamp, tz: str) -> str:
    return str(_iso(pd.DatetimeIndex([ts]).tz_convert(tz))[0])


def _slug(community: Community) -> str:
    return community.id.rsplit(":", 1)[-1].replace('"', "")


def _run_meta(run: SharingRun, tz: str) -> dict[str, Any]:
    return {
        "community_id": run.community.id,
        "method": run.method.value,
        "tariff_type": run.group_type.value,
        "start": _stamp(run.start, tz),
        "end": _stamp(run.end, tz),
        "tz": tz,
        "interval_minutes": run.community.resolution / pd.Timedelta(minutes=1),
        "intervals": len(run.index),
        "missing_intervals": int(run.result.missing.sum()),
    }


def _member_info(community: Community) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "member_id": list(community.member_ids),
            "name": [m.name for m in community.members],
            "role": [m.role.value for m in community.members],
            "locality": [m.locality for m in community.members],
        }
    )


def _with_info(community: Community, frame: pd.DataFrame) -> pd.DataFrame:
    """Member-indexed figures with the member's name, role and locality in front."""
    return _member_info(community).merge(frame.reset_index(), on="member_id", how="right")


# --- endpoints -----------------------------------------------------------------------------------


@router.get("/communities", summary="List the energy communities of the node")
def get_communities(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size")] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1, description="Page offset")] = 0,
) -> Response:
    """The communities of the tenant: id, name, number of members, sharing method."""
    _allowed(request, {"limit", "offset"})
    twin, _ = _services(request)
    items = list_communities(twin, tenant=tenant_of(request), limit=limit, offset=offset)
    return json_response(
        {
            "communities": [
                {"id": c.id, "name": c.name, "members": c.n_members, "sharing_method": c.sharing_method}
                for c in items
            ]
        }
    )


@router.get("/communities/{community_id}", summary="A community: members, access points, sharing settings")
def get_community(request: Request, community_id: str) -> Response:
    """The community as the energy services see it: members with role, meter, EAN and locality, the
    sharing method and key, the prices and the span of the readings."""
    _allowed(request, set())
    c = _community(request, community_id)
    span = readings_span(c)

    def setting(term: str) -> Any:
        iri = TERMS[term]
        return "series" if iri in c.setting_series else c.settings.get(iri)

    key = c.sharing_key
    body = {
        "id": c.id,
        "name": c.name,
        "sharing_method": None if c.sharing_method is None else c.sharing_method.value,
        "sharing_key_percent": None if key is None else {m: v * 100.0 for m, v in key.fractions.items()},
        "hybrid_fixed_fraction": c.hybrid_fixed_fraction,
        "pricing": c.pricing,
        "tariff_type": c.group_type.value,
        "interval_minutes": c.resolution / pd.Timedelta(minutes=1),
        "prices": {
            "supplier_energy_eur_per_kwh": setting("supplierEnergyPrice"),
            "feed_in_eur_per_kwh": setting("feedInPrice"),
            "grid_fee_eur_per_kwh": setting("gridFee"),
            "community_price_eur_per_kwh": setting("communityPrice"),
            "auction_fee_eur_per_kwh": setting("auctionFee"),
            "network_reduction_eur_per_kwh": {k.value: v for k, v in c.network_reduction_eur_per_kwh.items()},
        },
        "emission_factor_kg_per_kwh": setting("emissionFactor"),
        "readings": None if span is None else {"start": span[0].isoformat(), "end": span[1].isoformat()},
        "members": [
            {
                "id": m.id,
                "name": m.name,
                "role": m.role.value,
                "meter_id": m.meter_id,
                "access_point_id": m.access_point_id,
                "locality": m.locality,
                "bid_eur_per_kwh": m.bid_eur_per_kwh,
                "ask_eur_per_kwh": m.ask_eur_per_kwh,
            }
            for m in c.members
        ],
    }
    return json_response(body)


def _balance_csv(report: BalanceReport, level: str) -> pd.DataFrame:
    community = report.community_frame().reset_index()
    community.insert(1, "member_id", "community")
    if level == "community":
        return community
    members = report.members_frame()
    if level == "members":
        return members
    return pd.concat([community, members], ignore_index=True, sort=False)


@router.get("/communities/{community_id}/balance", summary="Energy balance and KPIs per period")
def get_balance(
    request: Request,
    community_id: str,
    start: Start = None,
    end: End = None,
    month: Month = None,
    freq: Annotated[
        str, Query(description="Period: 15min, 1h, 1D, 1M or 1Y (calendar periods in tz)")
    ] = "1M",
    tz: Tz = "Europe/Brussels",
    method: Method = None,
    level: Annotated[str, Query(description="all, community or members")] = "all",
    emission_factor_kg_per_kwh: Annotated[
        float | None, Query(description="Grid emission factor (kgCO2e/kWh); default the community's")
    ] = None,
    format: Format = "json",
) -> Response:
    """Gross offtake and injection, shared, residual, self-consumption rate, self-sufficiency, peaks and
    CO2 avoided, per period, for the community and each member."""
    _allowed(
        request,
        {"start", "end", "month", "freq", "tz", "method", "level", "emission_factor_kg_per_kwh", "format"},
    )
    parse_freq(freq)
    check_tz(tz)
    _choice(level, LEVELS, "level")
    _choice(format, FORMATS, "format")
    if emission_factor_kg_per_kwh is not None and not math.isfinite(emission_factor_kg_per_kwh):
        raise BadRequestData(f"emission_factor_kg_per_kwh must be finite, got {emission_factor_kg_per_kwh}")
    lo, hi = resolve_range(start, end, month=month, tz=tz)
    c = _community(request, community_id)
    report = community_balance(
        c,
        start=lo,
        end=hi,
        freq=freq,
        tz=tz,
        method=_method(method),
        emission_factor_kg_per_kwh=emission_factor_kg_per_kwh,
    )
    if format == "csv":
        return _csv(_balance_csv(report, level), f"balance-{_slug(c)}-{freq}.csv")
    body = {**_run_meta(report.sharing, tz), "freq": freq}
    if level in ("all", "community"):
        body["community"] = _records(report.community_frame().reset_index())
    if level in ("all", "members"):
        body["members"] = _records(report.members_frame())
    return json_response(body)


@router.get(
    "/communities/{community_id}/sharing", summary="Shared volumes per member, as the DSO allocates them"
)
def get_sharing(
    request: Request,
    community_id: str,
    start: Start = None,
    end: End = None,
    month: Month = None,
    tz: Tz = "Europe/Brussels",
    method: Method = None,
    intervals: Annotated[bool, Query(description="Include the allocation of every interval (JSON)")] = False,
    wh: Annotated[
        bool, Query(description="Add whole-Wh columns per interval, rounded as the DSO publishes")
    ] = False,
    format: Format = "json",
) -> Response:
    """JSON: totals per member over the period (and per interval with ``intervals=true``). CSV: the
    allocation per interval and member, like the DSO's file."""
    _allowed(request, {"start", "end", "month", "tz", "method", "intervals", "wh", "format"})
    check_tz(tz)
    _choice(format, FORMATS, "format")
    lo, hi = resolve_range(start, end, month=month, tz=tz)
    c = _community(request, community_id)
    run = community_sharing(c, start=lo, end=hi, method=_method(method))
    detail = format == "csv" or intervals
    table = run.interval_frame(tz=tz) if detail else None
    if table is not None and wh:
        try:
            rounded = to_wh(run.result)
        except ValueError as exc:
            raise CommunityInputError(f"wh=true: {exc}") from None
        table["shared_offtake_wh"] = rounded.shared_offtake_wh.reshape(-1)
        table["shared_injection_wh"] = rounded.shared_injection_wh.reshape(-1)
        table["returned_injection_wh"] = rounded.returned_injection_wh.reshape(-1)
    if format == "csv":
        assert table is not None
        return _csv(table, f"sharing-{_slug(c)}-{run.method.value}.csv")
    totals = run.member_totals()
    community_totals = {name: float(totals[name].sum(skipna=False)) for name in totals.columns[:6]}
    community_totals["shared_kwh"] = community_totals["shared_offtake_kwh"]
    body: dict[str, Any] = {
        **_run_meta(run, tz),
        "rounds": run.result.rounds,
        "key_percent": None if run.key is None else {m: v * 100.0 for m, v in run.key.fractions.items()},
        "community": community_totals,
        "members": _records(_with_info(c, totals)),
    }
    if table is not None:
        body["intervals"] = _records(table)
    return json_response(body)


class _Prices(TypedDict):
    supplier_energy_eur_per_kwh: float | None
    feed_in_eur_per_kwh: float | None
    grid_fee_eur_per_kwh: float | None
    community_price_eur_per_kwh: float | None


def _prices(
    supplier: float | None, feed_in: float | None, grid_fee: float | None, community: float | None
) -> _Prices:
    return {
        "supplier_energy_eur_per_kwh": _finite(supplier, "supplier_energy_eur_per_kwh"),
        "feed_in_eur_per_kwh": _finite(feed_in, "feed_in_eur_per_kwh"),
        "grid_fee_eur_per_kwh": _finite(grid_fee, "grid_fee_eur_per_kwh"),
        "community_price_eur_per_kwh": _finite(community, "community_price_eur_per_kwh"),
    }


_PRICE_PARAMS = {
    "supplier_energy_eur_per_kwh",
    "feed_in_eur_per_kwh",
    "grid_fee_eur_per_kwh",
    "community_price_eur_per_kwh",
}


def _tariff_body(values: Any, mean: bool) -> Any:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0:
        return float(array)
    if mean:
        return {"mean": float(array.mean()), "min": float(array.min()), "max": float(array.max())}
    return float(array[0])


@router.get(
    "/communities/{community_id}/settlement", summary="Settlement of the shared energy between members"
)
def get_settlement(
    request: Request,
    community_id: str,
    start: Start = None,
    end: End = None,
    month: Month = None,
    tz: Tz = "Europe/Brussels",
    method: Method = None,
    pricing: Pricing = None,
    supplier_energy_eur_per_kwh: Price = None,
    feed_in_eur_per_kwh: Price = None,
    grid_fee_eur_per_kwh: Price = None,
    community_price_eur_per_kwh: Price = None,
    format: Format = "json",
) -> Response:
    """What each member pays its supplier and the community, the network-charge reduction, what it earns
    from shared and fed-in energy, and what the community saved it (EUR over the period)."""
    _allowed(request, {"start", "end", "month", "tz", "method", "pricing", "format"} | _PRICE_PARAMS)
    check_tz(tz)
    _choice(format, FORMATS, "format")
    prices = _prices(
        supplier_energy_eur_per_kwh, feed_in_eur_per_kwh, grid_fee_eur_per_kwh, community_price_eur_per_kwh
    )
    lo, hi = resolve_range(start, end, month=month, tz=tz)
    c = _community(request, community_id)
    report = community_settlement(
        c, start=lo, end=hi, method=_method(method), pricing=_pricing(pricing), tz=tz, **prices
    )
    members = _with_info(c, report.member_totals())
    if format == "csv":
        return _csv(members, f"settlement-{_slug(c)}-{report.pricing}.csv")
    s = report.settlement
    body = {
        **_run_meta(report.sharing, tz),
        "pricing": report.pricing,
        "tariff": {
            "supplier_energy_eur_per_kwh": _tariff_body(s.supplier_energy_eur_per_kwh, True),
            "feed_in_eur_per_kwh": _tariff_body(s.feed_in_eur_per_kwh, True),
            "grid_fee_eur_per_kwh": _tariff_body(s.grid_fee_eur_per_kwh, True),
            "network_reduction_eur_per_kwh": s.reduction_eur_per_kwh,
        },
        "community": report.community_totals(),
        "members": _records(members),
    }
    return json_response(body)


@router.get("/communities/{community_id}/statements", summary="Monthly statements of every member")
def get_statements(
    request: Request,
    community_id: str,
    month: Month = None,
    start: Start = None,
    end: End = None,
    tz: Tz = "Europe/Brussels",
    method: Method = None,
    pricing: Pricing = None,
    supplier_energy_eur_per_kwh: Price = None,
    feed_in_eur_per_kwh: Price = None,
    grid_fee_eur_per_kwh: Price = None,
    community_price_eur_per_kwh: Price = None,
    format: Format = "json",
) -> Response:
    """One line per local month and member: supplier part, community part, network-charge reduction,
    community sales, feed-in earnings, net and standalone cost, savings (EUR)."""
    _allowed(request, {"start", "end", "month", "tz", "method", "pricing", "format"} | _PRICE_PARAMS)
    check_tz(tz)
    _choice(format, FORMATS, "format")
    prices = _prices(
        supplier_energy_eur_per_kwh, feed_in_eur_per_kwh, grid_fee_eur_per_kwh, community_price_eur_per_kwh
    )
    lo, hi = resolve_range(start, end, month=month, tz=tz)
    c = _community(request, community_id)
    report = community_settlement(
        c, start=lo, end=hi, method=_method(method), pricing=_pricing(pricing), tz=tz, **prices
    )
    rows = report.statements.reset_index()
    rows = rows.merge(_member_info(c)[["member_id", "name"]], on="member_id", how="left")
    rows = rows[["month", "member_id", "name", *report.statements.columns]]
    if format == "csv":
        return _csv(rows, f"statements-{_slug(c)}-{report.pricing}.csv")
    return json_response(
        {**_run_meta(report.sharing, tz), "pricing": report.pricing, "statements": _records(rows)}
    )


@router.get(
    "/communities/{community_id}/fairness", summary="Shapley values of the savings beside the settlement"
)
def get_fairness(
    request: Request,
    community_id: str,
    start: Start = None,
    end: End = None,
    month: Month = None,
    tz: Tz = "Europe/Brussels",
    method: Method = None,
    pricing: Pricing = None,
    exact_max_members: Annotated[
        int, Query(ge=0, le=MAX_EXACT_MEMBERS, description="Enumerate all coalitions up to this many members")
    ] = 18,
    n_permutations: Annotated[
        int, Query(ge=2, le=MAX_PERMUTATIONS, description="Join orders sampled beyond exact_max_members")
    ] = 500,
    seed: Annotated[int, Query(ge=0, le=2**32 - 1, description="Seed of the sampler")] = 0,
    supplier_energy_eur_per_kwh: Price = None,
    feed_in_eur_per_kwh: Price = None,
    grid_fee_eur_per_kwh: Price = None,
    community_price_eur_per_kwh: Price = None,
    format: Format = "json",
) -> Response:
    """Each member's Shapley value of the community's savings (exact, or sampled with a 95 % interval)
    beside the savings the settlement gave it (EUR over the period)."""
    _allowed(
        request,
        {
            "start",
            "end",
            "month",
            "tz",
            "method",
            "pricing",
            "exact_max_members",
            "n_permutations",
            "seed",
            "format",
        }
        | _PRICE_PARAMS,
    )
    check_tz(tz)
    _choice(format, FORMATS, "format")
    prices = _prices(
        supplier_energy_eur_per_kwh, feed_in_eur_per_kwh, grid_fee_eur_per_kwh, community_price_eur_per_kwh
    )
    lo, hi = resolve_range(start, end, month=month, tz=tz)
    c = _community(request, community_id)
    report = community_fairness(
        c,
        start=lo,
        end=hi,
        method=_method(method),
        pricing=_pricing(pricing),
        tz=tz,
        exact_max_members=exact_max_members,
        n_permutations=n_permutations,
        seed=seed,
        **prices,
    )
    members = _with_info(c, report.comparison)
    if format == "csv":
        return _csv(members, f"fairness-{_slug(c)}.csv")
    sv = report.shapley
    body = {
        **_run_meta(report.sharing, tz),
        "pricing": report.settlement.pricing,
        "exact": sv.exact,
        "n_permutations": sv.n_permutations,
        "excluded_intervals": sv.excluded_intervals,
        "grand_coalition_eur": sv.grand_coalition_eur,
        "gap_eur": report.gap_eur,
        "members": _records(members),
    }
    return json_response(body)


@router.post(
    "/communities/{community_id}/kpis", status_code=201, summary="Compute and store the KPIs in the twin"
)
def post_kpis(
    request: Request,
    community_id: str,
    start: Start = None,
    end: End = None,
    month: Month = None,
    freq: Annotated[str, Query(description="Period of the KPI entities: 1D, 1M or 1Y")] = "1M",
    tz: Tz = "Europe/Brussels",
    method: Method = None,
    pricing: Annotated[
        str | None,
        Query(
            description="Also store the monthly settlement KPIs with this pricing (default the community's, "
            "if it has one)"
        ),
    ] = None,
    fairness: Annotated[
        bool, Query(description="Also store the Shapley KPIs of the period (needs a pricing)")
    ] = False,
) -> Response:
    """Write the sharing series on the members' meters and the community KPIs as NGSI-LD
    KeyPerformanceIndicator entities (one per indicator and period); returns their ids."""
    _allowed(request, {"start", "end", "month", "freq", "tz", "method", "pricing", "fairness"})
    _choice(freq, tuple(KPI_FREQUENCIES), "freq")
    check_tz(tz)
    lo, hi = resolve_range(start, end, month=month, tz=tz)
    chosen = _pricing(pricing)
    c = _community(request, community_id)
    kwargs: dict[str, Any] = {"start": lo, "end": hi, "method": _method(method), "tz": tz}
    # compute everything first: a rejected request writes nothing
    balance_report = community_balance(c, freq=freq, **kwargs)
    extra: list[SettlementReport | FairnessReport] = []
    if fairness:
        extra.append(community_fairness(c, pricing=chosen, **kwargs))
    elif chosen is not None or c.pricing is not None:
        extra.append(community_settlement(c, pricing=chosen, **kwargs))
    report = write_results(balance_report)
    ids = list(report.kpi_ids)
    for item in extra:
        if isinstance(item, FairnessReport):
            written = write_results(item, series=False)
            ids += list(written.settlement.kpi_ids) + list(written.kpi_ids)
        else:
            ids += list(write_results(item, series=False).kpi_ids)
    return json_response(
        {
            **_run_meta(report.sharing, tz),
            "kpis": ids,
            "series_values_written": report.sharing.series_written,
        },
        status=201,
    )


def install(app: FastAPI) -> None:
    """Add the community-energy routes (``/api/communities/...``) to a node's app."""
    app.include_router(router)
