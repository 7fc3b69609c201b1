"""The dashboard of a twin node: server-rendered pages (Jinja2), charts (Apache ECharts) fed by JSON.

Pages (HTML):

- ``/``: the node's communities as cards;
- ``/communities/{id}``: the community's energy over a day, week, month or year with the previous
  period beside it (KPIs, energy graph, flow Sankey, gauges, per-member table);
- ``/communities/{id}/members/{member}``: a member's profile and energy (the manager and that member);
- ``/communities/{id}/sharing``: shared kWh per member and the monthly statement (settlement);
- ``/ngsi``: a small NGSI-LD entity browser (manager);
- ``/login``, ``/logout``.

The other pages live in their own modules, mounted by :func:`install` (:data:`PAGE_MODULES`):
:mod:`bright.web.analysis` (forecast, flexibility, fairness), :mod:`bright.web.sharing_key`,
:mod:`bright.web.questionnaire` (S-BRIGHT questionnaire and community mix), :mod:`bright.web.ledger`
(ledger, DVPP), :mod:`bright.web.network_pages` (map and discovery), :mod:`bright.web.mobility`.
They share this module's helpers (``_render``, ``current_user``, ``_community``, ``_cached``...).

Chart data (JSON, same access rules): ``/web/data/communities/{id}/energy``, ``.../flows`` and
``.../members/{member}/energy``. Long ranges are aggregated on the server (a year is sent as 366
daily values, a month as hourly values) so a page never ships 35,000 points per series.

The figures come from the same use cases as the REST API (:mod:`bright.services.energy`), so the page
and ``/api/communities/{id}/balance`` agree. Pages never show a stack trace: errors of HTML pages are
rendered as a short page (400/403/404/500) and the details go to the node's log.

Install on a node's app with :func:`install` (after its exception handlers are registered).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np
import pandas as pd
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bright.services.community import (
    Community,
    list_communities,
    load_community,
    readings_span,
)
from bright.services.energy import (
    BalanceReport,
    community_balance,
    community_settlement,
    community_sharing,
)
from bright.twin.context import BRIGHT_CONTEXT_URL
from bright.twin.errors import NgsiLdError
from bright.twin.series import SeriesStore
from bright.twin.service import TwinService
from bright.twin.vocabulary import bright_context
from bright.web import i18n
from bright.web.users import ANONYMOUS, SessionSigner, User, authenticate, data_dir, node_secret

__all__ = ["PERIODS", "Period", "install", "parse_period", "router"]

log = logging.getLogger("bright.web")

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)

TZ = "Europe/Brussels"
TENANT = ""
SESSION_COOKIE = "bright_session"
#: Period length -> (calendar offset, chart resolution of the API's balance).
PERIODS: dict[str, tuple[pd.DateOffset, str]] = {
    "day": (pd.DateOffset(days=1), "15min"),
    "week": (pd.DateOffset(weeks=1), "1h"),
    "month": (pd.DateOffset(months=1), "1h"),
    "year": (pd.DateOffset(years=1), "1D"),
}
#: Node-wide pages of the main menu: key -> (route prefix of the API the page needs, page path).
#: A page whose API is not mounted on the node is listed as unavailable. The community-level pages
#: (forecast, flexibility, sharing, fairness, engagement) are in the community's own menu.
CAPABILITIES: dict[str, tuple[str, str]] = {
    "nav.network": ("/api/network/", "/network"),
    "nav.ledger": ("/api/ledger", "/ledger"),
}
_CACHE_SECONDS = 60.0
_CACHE_SIZE = 32


class WebError(Exception):
    """An error page: HTTP status and a message (already in the visitor's language)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Period:
    """A calendar period of the dashboard, in local time (Europe/Brussels).

    Attributes
    ----------
    kind
        ``day``, ``week`` (Monday to Monday), ``month`` or ``year``.
    start, end
        Local bounds ``[start, end)`` (tz-aware).
    freq
        Resolution of the charts (``15min``, ``1h`` or ``1D``): the server-side downsampling.
    """

    kind: str
    start: pd.Timestamp
    end: pd.Timestamp
    freq: str

    @property
    def offset(self) -> pd.DateOffset:
        return PERIODS[self.kind][0]

    def previous(self) -> Period:
        return Period(self.kind, self.start - self.offset, self.start, self.freq)

    def next(self) -> Period:
        return Period(self.kind, self.end, self.end + self.offset, self.freq)

    def query(self) -> dict[str, str]:
        return {"period": self.kind, "date": self.start.strftime("%Y-%m-%d")}


class FieldErrors(ValueError):
    """Bad form fields: field name -> message (shown next to the field)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def parse_period(
    kind: str | None, date: str | None, *, default_date: pd.Timestamp, lang: str = "en"
) -> Period:
    """The period of a form: its length and a date inside it.

    Parameters
    ----------
    kind
        ``day``, ``week``, ``month`` or ``year``; None for ``year``.
    date
        ``YYYY-MM-DD`` (local date); None or empty for ``default_date``.
    default_date
        Local date used when ``date`` is empty (the last day with readings).
    lang
        Language of the error messages.

    Raises
    ------
    FieldErrors
        Unknown period length (field ``period``) or a malformed date (field ``date``).
    """
    errors: dict[str, str] = {}
    kind = kind or "year"
    if kind not in PERIODS:
        errors["period"] = i18n.translate("err.period", lang)
    day = default_date.normalize()
    if date:
        try:
            parsed = pd.Timestamp(date) if len(date) == 10 else None
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is not None or date != parsed.strftime("%Y-%m-%d"):
            errors["date"] = i18n.translate("err.date", lang)
        else:
            day = parsed.tz_localize(TZ)
    if errors:
        raise FieldErrors(errors)
    if kind == "day":
        start = day
    elif kind == "week":
        start = day - pd.Timedelta(days=day.weekday())
        start = start.tz_localize(None).tz_localize(TZ)  # midnight, also across a DST change
    elif kind == "month":
        start = day.replace(day=1)
    else:
        start = day.replace(month=1, day=1)
    offset, freq = PERIODS[kind]
    return Period(kind, start, start + offset, freq)


def _parse_factor(value: str | None, lang: str) -> float | None:
    """The optional emission factor field (kgCO2e/kWh)."""
    if value is None or not value.strip():
        return None
    try:
        number = float(value.replace(",", "."))
    except ValueError:
        raise FieldErrors({"ef": i18n.translate("err.number", lang)}) from None
    if not math.isfinite(number) or number < 0:
        raise FieldErrors({"ef": i18n.translate("err.number", lang)})
    return number


# --- request context -----------------------------------------------------------------------------


def _twin(request: Request) -> tuple[TwinService, SeriesStore]:
    twin: TwinService = request.app.state.twin
    store = getattr(request.app.state, "series", None)
    if not isinstance(store, SeriesStore) or store.engine is not twin.engine:
        store = SeriesStore(twin.engine)
        request.app.state.series = store
    return twin, store


def _signer(request: Request) -> SessionSigner:
    signer: SessionSigner = request.app.state.web_signer
    return signer


def current_user(request: Request) -> User:
    """The logged-in account of the request (the anonymous visitor without a valid cookie)."""
    return _signer(request).loads(request.cookies.get(SESSION_COOKIE))


def _lang(request: Request) -> str:
    return i18n.negotiate(
        request.query_params.get("lang"), request.cookies.get("lang"), request.headers.get("accept-language")
    )


def _route_paths(routes: list[Any], prefix: str = "") -> list[str]:
    """Paths of the app's routes, also those of included routers (FastAPI keeps them nested)."""
    out: list[str] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            out += _route_paths(list(inner.routes), prefix + (getattr(context, "prefix", "") or ""))
        elif getattr(route, "path", None):
            out.append(prefix + str(route.path))
    return out


def _capabilities(request: Request) -> list[tuple[str, str, bool]]:
    """(menu key, page path, available) of the node-wide pages."""
    paths = _route_paths(list(request.app.routes))
    return [
        (key, href, any(p.startswith(prefix) for p in paths)) for key, (prefix, href) in CAPABILITIES.items()
    ]


def _render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    lang = _lang(request)
    user = current_user(request)

    def t(key: str, **values: object) -> str:
        return i18n.translate(key, lang, **values)

    base = {
        "request": request,
        "lang": lang,
        "languages": i18n.LANGUAGES,
        "t": t,
        "user": user,
        "capabilities": _capabilities(request),
        "path_with_lang": lambda code: _with_query(request, lang=code),
        "fmt": _fmt,
        "pct": _pct,
    }
    response = templates.TemplateResponse(request, name, {**base, **context}, status_code=status)
    if request.query_params.get("lang") in i18n.LANGUAGES:
        response.set_cookie("lang", lang, max_age=365 * 86400, samesite="lax")
    return response


def _with_query(request: Request, **changes: str) -> str:
    params = dict(request.query_params)
    params.update(changes)
    return f"{request.url.path}?{urlencode(params)}"


def _fmt(value: Any, digits: int = 1) -> str:
    """A number with thin thousands separators, or an en dash when missing (NaN, None)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{float(value):,.{digits}f}".replace(",", "\u202f")


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{100.0 * float(value):.1f} %"


def _error(request: Request, status: int, message: str) -> HTMLResponse:
    return _render(request, "error.html", status=status, status_code=status, message=message)


# --- community data ------------------------------------------------------------------------------


def _community(request: Request, community_id: str) -> Community:
    twin, store = _twin(request)
    try:
        return load_community(twin, store, community_id, tenant=TENANT)
    except NgsiLdError as exc:
        if exc.status == 404:
            raise WebError(404, i18n.translate("error.404", _lang(request))) from None
        raise WebError(exc.status, exc.detail) from None


def _default_date(community: Community) -> pd.Timestamp:
    span = readings_span(community)
    if span is None:
        return pd.Timestamp.now(tz=TZ).normalize()
    return (span[1] - community.resolution).tz_convert(TZ).normalize()


def _clip(
    community: Community, lo: pd.Timestamp, hi: pd.Timestamp
) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """``[lo, hi)`` cut to the span of the readings (UTC), None when they do not overlap."""
    span = readings_span(community)
    if span is None:
        return None
    a, b = max(lo.tz_convert("UTC"), span[0]), min(hi.tz_convert("UTC"), span[1])
    return (a, b) if a < b else None


def _cache(request: Request) -> dict[Any, tuple[float, Any]]:
    cache = getattr(request.app.state, "web_cache", None)
    if cache is None:
        cache = {}
        request.app.state.web_cache = cache
    return cache


def _cached(request: Request, key: Any, compute: Callable[[], Any]) -> Any:
    """A result computed at most once a minute per key (charts ask for what the page just computed)."""
    cache, now = _cache(request), time.monotonic()
    hit = cache.get(key)
    if hit is not None and now - hit[0] < _CACHE_SECONDS:
        return hit[1]
    value = compute()
    if len(cache) >= _CACHE_SIZE:
        cache.pop(min(cache, key=lambda k: cache[k][0]))
    cache[key] = (now, value)
    return value


def _balance(
    request: Request, community: Community, period: Period, ef: float | None
) -> BalanceReport | None:
    """The balance of the period at the chart resolution, None without readings in the period."""
    clipped = _clip(community, period.start, period.end)
    if clipped is None:
        return None
    key = ("balance", id(request.app), community.id, clipped, period.freq, ef)

    def compute() -> BalanceReport:
        return community_balance(
            community,
            start=clipped[0],
            end=clipped[1],
            freq=period.freq,
            tz=TZ,
            emission_factor_kg_per_kwh=ef,
        )

    report: BalanceReport = _cached(request, key, compute)
    return report


def _sum(values: pd.Series) -> float:
    """Sum over the periods; missing as soon as one period is missing (NaN stays NaN)."""
    return float(values.sum(skipna=False)) if len(values) else math.nan


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 and math.isfinite(num) else math.nan


def community_totals(report: BalanceReport) -> dict[str, float]:
    """Community figures over the whole period (kWh, kW, kg; ratios dimensionless)."""
    frame = report.community_frame()
    out = {
        name: _sum(frame[name])
        for name in (
            "offtake_kwh",
            "injection_kwh",
            "shared_kwh",
            "residual_offtake_kwh",
            "residual_injection_kwh",
            "co2_avoided_kg",
        )
    }
    out["peak_offtake_kw"] = float(frame["peak_offtake_kw"].max(skipna=False)) if len(frame) else math.nan
    out["self_sufficiency"] = _ratio(out["shared_kwh"], out["offtake_kwh"])
    out["self_consumption_rate"] = _ratio(out["shared_kwh"], out["injection_kwh"])
    return out


def _strict_sum(values: pd.Series) -> float:
    return float(values.sum(skipna=False))


def member_totals(report: BalanceReport) -> pd.DataFrame:
    """Per member over the whole period: kWh sums, peak kW, ratios; index ``member_id``."""
    frame = report.members_frame()
    grouped = frame.groupby("member_id", sort=False)
    columns = [
        "offtake_kwh",
        "injection_kwh",
        "shared_offtake_kwh",
        "shared_injection_kwh",
        "residual_offtake_kwh",
        "residual_injection_kwh",
        "co2_avoided_kg",
    ]
    # a member's total is missing as soon as one of its periods is missing
    sums = grouped[columns].agg(_strict_sum)
    sums["peak_offtake_kw"] = grouped["peak_offtake_kw"].max()
    sums["self_sufficiency"] = [
        _ratio(a, b) for a, b in zip(sums["shared_offtake_kwh"], sums["offtake_kwh"], strict=True)
    ]
    sums["self_consumption_rate"] = [
        _ratio(a, b) for a, b in zip(sums["shared_injection_kwh"], sums["injection_kwh"], strict=True)
    ]
    return sums


def _production_kwh(request: Request, community: Community, lo: pd.Timestamp, hi: pd.Timestamp) -> float:
    """Total PV production of the community's PV devices over ``[lo, hi)`` (kWh), NaN if unknown."""
    twin, store = _twin(request)
    vocab = bright_context()
    pv_ids: list[str] = []
    controls = vocab.expand("controls")
    for member in community.members:
        doc = twin.store.get(TENANT, member.id)
        if doc is None:
            continue
        for inst in doc.get("attrs", {}).get(controls, []):
            obj = inst.get("object", inst.get("objectList"))
            objs = obj if isinstance(obj, list) else [obj]
            pv_ids += [str(o) for o in objs if isinstance(o, str) and ":PhotovoltaicDevice:" in o]
    if not pv_ids:
        return 0.0
    frame = store.read(pv_ids, vocab.expand("production"), lo, hi, tenant=TENANT)
    if frame.empty:
        return math.nan
    return float(frame.to_numpy().sum()) if not frame.isna().to_numpy().any() else math.nan


def _series_body(report: BalanceReport, columns: dict[str, str]) -> dict[str, Any]:
    frame = report.community_frame()
    return {
        "labels": [ts.isoformat() for ts in frame.index],
        "series": {key: _json_numbers(frame[col].to_numpy()) for key, col in columns.items()},
    }


def _json_numbers(values: np.ndarray) -> list[float | None]:
    return [None if not math.isfinite(v) else round(float(v), 4) for v in values]


def _page_inputs(request: Request, community: Community) -> tuple[Period, float | None]:
    lang = _lang(request)
    params = request.query_params
    errors: dict[str, str] = {}
    period: Period | None = None
    ef: float | None = None
    try:
        period = parse_period(
            params.get("period"), params.get("date"), default_date=_default_date(community), lang=lang
        )
    except FieldErrors as exc:
        errors.update(exc.errors)
    try:
        ef = _parse_factor(params.get("ef"), lang)
    except FieldErrors as exc:
        errors.update(exc.errors)
    if errors or period is None:
        raise FieldErrors(errors)
    return period, ef


# --- pages ---------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> HTMLResponse:
    twin, _ = _twin(request)
    communities = list_communities(twin, tenant=TENANT, limit=1000)
    return _render(request, "home.html", communities=communities)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return _render(request, "login.html", next=_safe_next(next), errors={}, username="")


def _safe_next(target: str) -> str:
    """Only local paths: never redirect a visitor to another site after login."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


@router.post("/login", response_model=None)
async def login(request: Request) -> Response:
    form = await request.form()
    username = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    target = _safe_next(str(form.get("next", "/")))
    lang = _lang(request)
    errors: dict[str, str] = {}
    if not username:
        errors["username"] = i18n.translate("auth.required", lang)
    if not password:
        errors["password"] = i18n.translate("auth.required", lang)
    user = None
    if not errors:
        twin, _ = _twin(request)
        user = authenticate(twin.engine, username, password)
        if user is None:
            errors["password"] = i18n.translate("auth.bad", lang)
    if errors or user is None:
        return _render(request, "login.html", status=400, next=target, errors=errors, username=username)
    if user.role == "member" and target == "/" and user.community_id and user.member_id:
        target = f"/communities/{user.community_id}/members/{user.member_id}"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        _signer(request).dumps(user),
        httponly=True,
        samesite="lax",
        max_age=_signer(request).max_age_s,
    )
    return response


@router.post("/logout")
def logout() -> RedirectResponse:
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/communities/{community_id}", response_class=HTMLResponse)
def community_page(request: Request, community_id: str) -> HTMLResponse:
    community = _community(request, community_id)
    user = current_user(request)
    try:
        period, ef = _page_inputs(request, community)
    except FieldErrors as exc:
        return _render(
            request,
            "community.html",
            status=400,
            community=community,
            errors=exc.errors,
            form=request.query_params,
            period=None,
            totals=None,
            previous=None,
            members=None,
            data_query="",
        )
    report = _balance(request, community, period, ef)
    prev_report = _balance(request, community, period.previous(), ef)
    totals = community_totals(report) if report is not None else None
    previous = community_totals(prev_report) if prev_report is not None else None
    members = None
    if report is not None and user.role in ("manager", "member"):
        table = member_totals(report)
        names = {m.id: m for m in community.members}
        members = [
            {
                "id": str(mid),
                "name": names[str(mid)].name,
                "role": names[str(mid)].role.value,
                "row": row,
                "mine": user.may_see_member(str(mid)),
            }
            for mid, row in table.iterrows()
            if user.is_manager or user.may_see_member(str(mid))
        ]
    query = {**period.query(), **({"ef": str(ef)} if ef is not None else {})}
    return _render(
        request,
        "community.html",
        community=community,
        errors={},
        form={
            "period": period.kind,
            "date": request.query_params.get("date", ""),
            "ef": request.query_params.get("ef", ""),
        },
        period=period,
        prev_link=urlencode({**query, **period.previous().query()}),
        next_link=urlencode({**query, **period.next().query()}),
        totals=totals,
        previous=previous,
        members=members,
        data_query=urlencode(query),
    )


def _member(request: Request, community: Community, member_id: str) -> Any:
    user = current_user(request)
    lang = _lang(request)
    if user.username is None or user.role == "public":
        raise WebError(403, i18n.translate("error.403", lang))
    try:
        member = community.member(member_id)
    except (KeyError, ValueError, NgsiLdError):
        raise WebError(404, i18n.translate("error.404", lang)) from None
    if not user.may_see_member(member.id):
        raise WebError(403, i18n.translate("error.403", lang))
    return member


def _key_values(doc: dict[str, Any] | None) -> dict[str, Any]:
    """An entity of the store as ``{short name: value}`` (default instances only)."""
    if doc is None:
        return {}
    vocab = bright_context()
    out: dict[str, Any] = {"id": doc.get("id"), "type": vocab.compact(str(doc.get("type", "")))}
    for iri, instances in doc.get("attrs", {}).items():
        inst = next((i for i in instances if "datasetId" not in i), instances[0] if instances else None)
        if inst is None:
            continue
        for key in ("value", "object", "objectList", "json", "vocab"):
            if key in inst:
                out[vocab.compact(iri)] = inst[key]
                break
    return out


@router.get("/communities/{community_id}/members/{member_id}", response_class=HTMLResponse)
def member_page(request: Request, community_id: str, member_id: str) -> HTMLResponse:
    community = _community(request, community_id)
    member = _member(request, community, member_id)
    twin, _ = _twin(request)
    profile = _key_values(twin.store.get(TENANT, member.id))
    controls = profile.get("controls") or []
    devices = [
        _key_values(twin.store.get(TENANT, d))
        for d in (controls if isinstance(controls, list) else [controls])
    ]
    try:
        period, ef = _page_inputs(request, community)
    except FieldErrors as exc:
        return _render(
            request,
            "member.html",
            status=400,
            community=community,
            member=member,
            profile=profile,
            devices=devices,
            errors=exc.errors,
            form=request.query_params,
            period=None,
            row=None,
            data_query="",
        )
    report = _balance(request, community, period, ef)
    row = member_totals(report).loc[member.id].to_dict() if report is not None else None
    query = {**period.query(), **({"ef": str(ef)} if ef is not None else {})}
    return _render(
        request,
        "member.html",
        community=community,
        member=member,
        profile=profile,
        devices=devices,
        errors={},
        form={
            "period": period.kind,
            "date": request.query_params.get("date", ""),
            "ef": request.query_params.get("ef", ""),
        },
        period=period,
        row=row,
        data_query=urlencode(query),
    )


PRICE_FIELDS = (
    ("supplier_energy_eur_per_kwh", "sharing.supplier"),
    ("feed_in_eur_per_kwh", "sharing.feed_in"),
    ("grid_fee_eur_per_kwh", "sharing.grid_fee"),
    ("community_price_eur_per_kwh", "sharing.community_price"),
)
PRICINGS_SHOWN = ("fixed", "mid_market")


@router.get("/communities/{community_id}/sharing", response_class=HTMLResponse)
def sharing_page(request: Request, community_id: str) -> HTMLResponse:
    community = _community(request, community_id)
    user = current_user(request)
    lang = _lang(request)
    if user.username is None or user.role == "public":
        raise WebError(403, i18n.translate("error.403", lang))
    params = request.query_params
    errors: dict[str, str] = {}
    try:
        period = parse_period(
            params.get("period") or "month",
            params.get("date"),
            default_date=_default_date(community),
            lang=lang,
        )
    except FieldErrors as exc:
        errors.update(exc.errors)
        period = None
    prices: dict[str, float | None] = {}
    for name, _label in PRICE_FIELDS:
        try:
            prices[name] = _parse_factor(params.get(name), lang)
        except FieldErrors:
            errors[name] = i18n.translate("err.number", lang)
    pricing = params.get("pricing") or None
    if pricing is not None and pricing not in PRICINGS_SHOWN:
        errors["pricing"] = f"{pricing!r}: " + ", ".join(PRICINGS_SHOWN)
    visible = lambda mid: user.may_see_member(mid)  # noqa: E731
    shares: list[dict[str, Any]] = []
    statements: list[dict[str, Any]] = []
    statement_error: str | None = None
    if not errors and period is not None:
        clipped = _clip(community, period.start, period.end)
        if clipped is None:
            errors["date"] = i18n.translate("err.nodata", lang)
        else:
            run = community_sharing(community, start=clipped[0], end=clipped[1])
            names = {m.id: m.name for m in community.members}
            for mid, row in run.member_totals().iterrows():
                if visible(str(mid)):
                    shares.append({"id": mid, "name": names[str(mid)], "row": row.to_dict()})
            if any(v is not None for v in prices.values()) or community.pricing is not None:
                try:
                    report = community_settlement(
                        community,
                        start=clipped[0],
                        end=clipped[1],
                        pricing=pricing,
                        tz=TZ,
                        supplier_energy_eur_per_kwh=prices["supplier_energy_eur_per_kwh"],
                        feed_in_eur_per_kwh=prices["feed_in_eur_per_kwh"],
                        grid_fee_eur_per_kwh=prices["grid_fee_eur_per_kwh"],
                        community_price_eur_per_kwh=prices["community_price_eur_per_kwh"],
                    )
                    lines = report.statements.reset_index()
                    for raw in lines.to_dict("records"):
                        rec = {str(k): v for k, v in raw.items()}
                        if visible(str(rec["member_id"])):
                            rec["name"] = names.get(str(rec["member_id"]), rec["member_id"])
                            rec["month"] = pd.Timestamp(rec["month"]).strftime("%Y-%m")
                            statements.append(rec)
                except NgsiLdError as exc:
                    statement_error = exc.detail
    fairness_query = (
        urlencode(
            {"start": period.start.strftime("%Y-%m-%d"), "end": period.end.strftime("%Y-%m-%d")}
            | {k: str(v) for k, v in prices.items() if v is not None}
            | ({"pricing": pricing} if pricing else {})
        )
        if period is not None
        else ""
    )
    return _render(
        request,
        "sharing.html",
        status=400 if errors else 200,
        community=community,
        period=period,
        errors=errors,
        form=params,
        price_fields=PRICE_FIELDS,
        pricings=PRICINGS_SHOWN,
        shares=shares,
        statements=statements,
        statement_error=statement_error,
        fairness_query=fairness_query,
    )


@router.get("/ngsi", response_class=HTMLResponse)
async def ngsi_page(request: Request) -> HTMLResponse:
    user = current_user(request)
    lang = _lang(request)
    if not user.is_manager:
        raise WebError(403, i18n.translate("error.403", lang))
    etype = (request.query_params.get("type") or "").strip()
    q = (request.query_params.get("q") or "").strip()
    params = {"limit": "100", "options": "keyValues"}
    if etype:
        params["type"] = etype
    if q:
        params["q"] = q
    if not etype and not q:
        params["type"] = "EnergyCommunity"
    headers = {
        "Link": f'<{BRIGHT_CONTEXT_URL}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"',
        "Accept": "application/json",
    }
    if request.headers.get("cookie"):  # the API sees the manager's session, as the browser's calls do
        headers["Cookie"] = request.headers["cookie"]
    transport = httpx.ASGITransport(app=request.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
        answer = await client.get("/ngsi-ld/v1/entities", params=params, headers=headers)
    errors: dict[str, str] = {}
    entities: list[dict[str, Any]] = []
    if answer.status_code >= 400:
        problem = answer.json() if answer.headers.get("content-type", "").endswith("json") else {}
        detail = str(problem.get("detail") or problem.get("title") or answer.text[:200])
        field = "q" if q and ("q" in detail.lower() or "query" in detail.lower() or not etype) else "type"
        errors[field] = f"{problem.get('title', 'Error')}: {detail}"
    else:
        entities = answer.json()
    return _render(
        request,
        "ngsi.html",
        status=400 if errors else 200,
        entities=[
            {"id": e.get("id"), "type": e.get("type"), "body": json.dumps(e, indent=1, ensure_ascii=False)}
            for e in entities
        ],
        errors=errors,
        form={"type": etype, "q": q},
        types=(
            "EnergyCommunity",
            "EnergyProsumer",
            "Meter",
            "Building",
            "PhotovoltaicDevice",
            "Battery",
            "EVChargingStation",
            "HeatPump",
            "KeyPerformanceIndicator",
        ),
    )


# --- chart data ----------------------------------------------------------------------------------


def _data_inputs(request: Request, community: Community) -> tuple[Period, float | None]:
    try:
        return _page_inputs(request, community)
    except FieldErrors as exc:
        raise WebError(400, "; ".join(f"{k}: {v}" for k, v in exc.errors.items())) from None


ENERGY_COLUMNS = {
    "consumption": "offtake_kwh",
    "production": "injection_kwh",
    "shared": "shared_kwh",
    "grid_in": "residual_offtake_kwh",
    "grid_out": "residual_injection_kwh",
}


@router.get("/web/data/communities/{community_id}/energy")
def energy_data(request: Request, community_id: str) -> JSONResponse:
    """Community energy per chart interval (kWh) and the previous period's consumption beside it."""
    community = _community(request, community_id)
    period, ef = _data_inputs(request, community)
    report = _balance(request, community, period, ef)
    if report is None:
        return JSONResponse(
            {"freq": period.freq, "labels": [], "series": {}, "previous": None, "totals": None}
        )
    body = {"freq": period.freq, **_series_body(report, ENERGY_COLUMNS)}
    prev = _balance(request, community, period.previous(), ef)
    body["previous"] = (
        None if prev is None else _series_body(prev, {"consumption": "offtake_kwh", "shared": "shared_kwh"})
    )
    totals = community_totals(report)
    body["totals"] = {k: (None if not math.isfinite(v) else v) for k, v in totals.items()}
    return JSONResponse(body)


@router.get("/web/data/communities/{community_id}/flows")
def flow_data(request: Request, community_id: str) -> JSONResponse:
    """The period's energy flows for the Sankey (kWh): PV -> own use / shared / grid; grid -> members."""
    community = _community(request, community_id)
    period, ef = _data_inputs(request, community)
    report = _balance(request, community, period, ef)
    if report is None:
        return JSONResponse({"nodes": [], "links": []})
    totals = community_totals(report)
    clipped = _clip(community, period.start, period.end)
    assert clipped is not None
    production = _cached(
        request,
        ("pv", id(request.app), community.id, clipped),
        lambda: _production_kwh(request, community, *clipped),
    )
    return JSONResponse(flows(totals, production))


def flows(totals: dict[str, float], production_kwh: float) -> dict[str, Any]:
    """Sankey nodes and links (kWh) from the period totals and the PV production.

    Own use = PV production - injection (what PV owners used behind their meter); consumption =
    own use + shared + bought from suppliers. Without a known production the source node is the
    injection and own use is left out (unknown, not zero).

    Parameters
    ----------
    totals
        :func:`community_totals` of the period (kWh).
    production_kwh
        PV production over the period (kWh), NaN when unknown.
    """
    shared, out, bought = (
        totals["shared_kwh"],
        totals["residual_injection_kwh"],
        totals["residual_offtake_kwh"],
    )
    source = "PV"
    links: list[tuple[str, str, float]] = []
    if math.isfinite(production_kwh) and production_kwh > 0:
        own = max(production_kwh - totals["injection_kwh"], 0.0)
        links += [(source, "own_use", own), ("own_use", "consumption", own)]
    else:
        source = "injection"
    links += [
        (source, "shared", shared),
        (source, "grid_out", out),
        ("shared", "consumption", shared),
        ("grid_in", "consumption", bought),
    ]
    kept = [(a, b, v) for a, b, v in links if math.isfinite(v) and v > 0]
    names = sorted({a for a, _, _ in kept} | {b for _, b, _ in kept})
    return {
        "nodes": [{"name": n} for n in names],
        "links": [{"source": a, "target": b, "value": round(v, 3)} for a, b, v in kept],
    }


@router.get("/web/data/communities/{community_id}/members/{member_id}/energy")
def member_energy_data(request: Request, community_id: str, member_id: str) -> JSONResponse:
    """A member's offtake, injection and shared energy per chart interval (kWh)."""
    community = _community(request, community_id)
    member = _member(request, community, member_id)
    period, ef = _data_inputs(request, community)
    report = _balance(request, community, period, ef)
    if report is None:
        return JSONResponse({"freq": period.freq, "labels": [], "series": {}})
    frame = report.members_frame()
    mine = frame[frame["member_id"] == member.id]
    return JSONResponse(
        {
            "freq": period.freq,
            "labels": [pd.Timestamp(ts).isoformat() for ts in mine["period_start"]],
            "series": {
                "consumption": _json_numbers(mine["offtake_kwh"].to_numpy()),
                "production": _json_numbers(mine["injection_kwh"].to_numpy()),
                "shared": _json_numbers(mine["shared_offtake_kwh"].to_numpy()),
                "shared_given": _json_numbers(mine["shared_injection_kwh"].to_numpy()),
            },
        }
    )


# --- errors and installation ---------------------------------------------------------------------

_API_PREFIXES = ("/api", "/ngsi-ld", "/health", "/openapi", "/docs", "/redoc", "/static", "/web/static")


class HtmlErrors:
    """Render errors of dashboard pages as HTML (never a stack trace), leave the APIs' JSON alone.

    A browser asking for an HTML page (``Accept: text/html``) outside the API prefixes gets a short
    error page for a 4xx/5xx JSON answer (an unknown path: 404) and for an unexpected exception
    (500, logged with its traceback). Pure ASGI, so it works whatever handlers the app registers.
    """

    def __init__(self, app: ASGIApp, render: Callable[[Scope, int], bytes]) -> None:
        self.app = app
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._html(scope):
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = {"started": False, "replace": None}

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = dict((k.lower(), v) for k, v in message.get("headers", []))
                ctype = headers.get(b"content-type", b"").decode("latin-1")
                if status >= 400 and "html" not in ctype:
                    state["replace"] = status
                    return
                state["started"] = True
                await send(message)
            elif message["type"] == "http.response.body" and state["replace"] is not None:
                if not message.get("more_body", False):
                    await self._send_page(send, state["replace"], scope)
                    state["started"] = True
            else:
                await send(message)

        try:
            await self.app(scope, receive, guarded_send)
        except Exception:
            log.exception("dashboard page %s failed", scope.get("path"))
            if state["started"]:
                raise
            await self._send_page(send, 500, scope)

    @staticmethod
    def _html(scope: Scope) -> bool:
        path = str(scope.get("path", ""))
        if path.startswith(_API_PREFIXES) or path.startswith("/web/data"):
            return False
        accept = dict(scope.get("headers", [])).get(b"accept", b"").decode("latin-1")
        return "text/html" in accept

    async def _send_page(self, send: Send, status: int, scope: Scope) -> None:
        body = self.render(scope, status)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/html; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _plain_error_page(scope: Scope, status: int) -> bytes:
    """The error page when no request context is at hand (middleware): language from the headers."""
    headers = dict(scope.get("headers", []))
    cookies = headers.get(b"cookie", b"").decode("latin-1")
    cookie_lang = next((c.split("=", 1)[1] for c in cookies.split("; ") if c.startswith("lang=")), None)
    lang = i18n.negotiate(None, cookie_lang, headers.get(b"accept-language", b"").decode("latin-1"))
    key = {404: "error.404", 403: "error.403"}.get(status, "error.500" if status >= 500 else "error.title")
    template = templates.get_template("error.html")
    return template.render(
        request=None,
        lang=lang,
        languages=i18n.LANGUAGES,
        t=lambda k, **v: i18n.translate(k, lang, **v),
        user=ANONYMOUS,
        capabilities=[],
        path_with_lang=lambda code: f"?lang={code}",
        status_code=status,
        message=i18n.translate(key, lang),
    ).encode("utf-8")


class CachedStaticFiles(StaticFiles):
    """The dashboard's static files; the vendored libraries may be kept by the browser for a day.

    ECharts is 1 MB: without a lifetime the browser asks again (ETag, 304) on every page; the
    vendored files change only with a new release of the package (their URL is the same, so a day,
    not a year). BRIGHT's own scripts and CSS are revalidated on every load.
    """

    def file_response(
        self, full_path: Any, stat_result: Any, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        if "/vendor/" in str(full_path).replace("\\", "/"):
            response.headers["Cache-Control"] = "public, max-age=86400"
        return response


#: Page modules of the dashboard mounted by :func:`install` (each has a ``router``); the optional ones
#: are mounted when they are installed (written by other parts of the project).
PAGE_MODULES = (
    "analysis",
    "sharing_key",
    "questionnaire",
    "ledger",
    "network_pages",
    "mobility",
    "admin_pages",
    "catalogue_pages",
)
OPTIONAL_PAGE_MODULES = ("onboarding", "offers")


def _page_modules() -> list[Any]:
    """The page modules to mount: all of :data:`PAGE_MODULES`, those of :data:`OPTIONAL_PAGE_MODULES`
    that exist (a module that exists but fails to import is an error, not skipped)."""
    modules = [importlib.import_module(f"bright.web.{name}") for name in PAGE_MODULES]
    for name in OPTIONAL_PAGE_MODULES:
        if importlib.util.find_spec(f"bright.web.{name}") is not None:
            modules.append(importlib.import_module(f"bright.web.{name}"))
    return modules


def install(app: FastAPI) -> None:
    """Add the dashboard to a node's app: pages, chart data, static files, login, HTML error pages.

    Idempotent. Reads the node secret from (or creates it in) the node's data directory.
    """
    if getattr(app.state, "web_installed", False):
        return
    app.state.web_installed = True
    settings = getattr(app.state, "settings", None)
    url = settings.database_url if settings is not None else "sqlite:///bright.db"
    app.state.web_signer = SessionSigner(node_secret(data_dir(url)))
    app.mount("/web/static", CachedStaticFiles(directory=str(HERE / "static")), name="web-static")
    app.include_router(router)
    for module in _page_modules():
        app.include_router(module.router)

    @app.exception_handler(WebError)
    async def _web_error(request: Request, exc: WebError) -> Response:
        if request.url.path.startswith("/web/data"):
            return JSONResponse(
                {"title": "error", "status": exc.status, "detail": exc.message}, status_code=exc.status
            )
        return _error(request, exc.status, exc.message)

    app.add_middleware(HtmlErrors, render=_plain_error_page)
