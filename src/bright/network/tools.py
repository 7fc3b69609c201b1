"""The tools a node runs for the network, with their input/output schemas, and a runner that keeps nothing.

A small community without its own server can use the tools of the driving node: it sends its own
data in the request, the tool computes, the answer comes back, and nothing is stored (the runners are
pure functions of the request: they never see the twin).

Catalogue of a node (:func:`catalogue`):

- ``sharing-calculator`` (available): energy sharing as the DSO computes it
  (:func:`bright.energy.sharing.share`) and the community balance (:func:`bright.energy.balance.balance`)
  for uploaded quarter-hourly offtake/injection of each member;
- ``mobility-scenarios`` (available): EV fleet scenarios and charging policies on the community's
  base load and PV (:func:`bright.energy.mobility.evaluate`), the fleet calibrated on the measured
  charging sessions bundled with BRIGHT;
- ``forecast`` (available): a member's day-ahead (or intraday) load or PV forecast from its history
  (:func:`bright.energy.forecast.select.forecast_member`, the fallback chain without a trained model);
- ``scheduler`` and ``s-bright`` (planned): listed, not runnable until their services land.

Schemas are JSON Schema (draft 2020-12) generated from the pydantic models that also validate the
requests, so the catalogue and the validation cannot disagree. Arrays of energies are kWh per
interval, ``null`` for a missing value (kept NaN, never zero); outputs give ``null`` for undefined
values (a rate without a denominator).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bright.network.cards import CardError, CommunityCard
from bright.twin.errors import OperationNotSupported, ResourceNotFound

__all__ = [
    "ForecastInput",
    "MobilityInput",
    "SharingInput",
    "Tool",
    "ToolError",
    "catalogue",
    "network_tools",
    "run_tool",
]

MAX_CELLS = 4_000_000  # intervals x members accepted by the sharing calculator
MAX_STEPS = 35_136  # a leap year of quarter-hours


class ToolError(CardError):
    """A tool request is invalid; the message names the tool and the field (HTTP 400)."""


def _finite_or_none(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _utc(ts: datetime, what: str) -> pd.Timestamp:
    t = pd.Timestamp(ts)
    if t.tzinfo is None:
        raise ValueError(f"{what} must carry a time zone (Z or an offset)")
    return t.tz_convert("UTC")


# --- sharing calculator -------------------------------------------------------------------------


class SharingInput(BaseModel):
    """Input of the sharing calculator.

    Attributes
    ----------
    member_ids
        One id per meter column (an EAN or a label).
    offtake_kwh, injection_kwh
        Gross offtake and injection, kWh per interval: one row per interval, one value per member
        (``null`` = missing: that interval is not shared).
    method
        ``fixed``, ``fixed_multi_round``, ``pro_rata``, ``hybrid`` or ``maximum``.
    key_percent
        Fixed key, % of the pool per member (sums to 100); required by fixed, multi-round and hybrid.
    hybrid_fixed_fraction
        Hybrid: share of the pool allocated by the fixed key first (0..1).
    roles
        ``consumer``, ``producer`` or ``prosumer`` per member (default prosumer).
    start
        Start of the first interval (timezone-aware), if the series should be dated.
    resolution_minutes
        Interval length, minutes.
    emission_factor_kg_per_kwh
        Grid emission factor, kgCO2e/kWh, to value the shared energy.
    include_intervals
        Also return the community's shared kWh per interval.
    """

    model_config = ConfigDict(extra="forbid")

    member_ids: list[str] = Field(min_length=1, max_length=1000)
    offtake_kwh: list[list[float | None]] = Field(min_length=1)
    injection_kwh: list[list[float | None]] = Field(min_length=1)
    method: Literal["fixed", "fixed_multi_round", "pro_rata", "hybrid", "maximum"] = "pro_rata"
    key_percent: dict[str, float] | None = None
    hybrid_fixed_fraction: float = Field(default=1.0, ge=0, le=1)
    roles: dict[str, Literal["consumer", "producer", "prosumer"]] | None = None
    start: datetime | None = None
    resolution_minutes: int = Field(default=15, ge=1, le=1440)
    emission_factor_kg_per_kwh: float = Field(default=0.0, ge=0, le=5)
    include_intervals: bool = False

    @model_validator(mode="after")
    def _shapes(self) -> SharingInput:
        n = len(self.member_ids)
        for name in ("offtake_kwh", "injection_kwh"):
            rows = getattr(self, name)
            bad = next((t for t, r in enumerate(rows) if len(r) != n), None)
            if bad is not None:
                raise ValueError(f"{name}[{bad}] has {len(rows[bad])} values for {n} members")
        if len(self.offtake_kwh) != len(self.injection_kwh):
            raise ValueError(
                f"offtake_kwh has {len(self.offtake_kwh)} intervals, injection_kwh {len(self.injection_kwh)}"
            )
        if len(self.offtake_kwh) * n > MAX_CELLS:
            raise ValueError(f"at most {MAX_CELLS:,} values (intervals x members) per request")
        if self.start is not None and self.start.tzinfo is None:
            raise ValueError("start must carry a time zone (Z or an offset)")
        return self


class MemberBalance(BaseModel):
    """A member's totals over the complete intervals (kWh; rates 0..1 or null)."""

    id: str
    offtake_kwh: float
    injection_kwh: float
    shared_offtake_kwh: float
    shared_injection_kwh: float
    self_sufficiency: float | None
    self_consumption_rate: float | None


class SharingOutput(BaseModel):
    """Output of the sharing calculator: totals over the complete intervals."""

    method: str
    n_intervals: int
    n_members: int
    missing_intervals: int
    offtake_kwh: float
    injection_kwh: float
    shared_kwh: float
    residual_offtake_kwh: float
    residual_injection_kwh: float
    self_sufficiency: float | None
    self_consumption_rate: float | None
    co2_avoided_kg: float
    peak_offtake_kw: float | None
    members: list[MemberBalance]
    shared_kwh_per_interval: list[float | None] | None = None


def _matrix(rows: list[list[float | None]]) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=np.float64)


def run_sharing(inp: SharingInput) -> SharingOutput:
    """Share the uploaded readings and sum the balance (see :class:`SharingInput`).

    Raises
    ------
    bright.energy.sharing.EnergyInputError
        Negative readings, keys naming unknown members... (the message names the member).
    """
    from bright.energy.balance import balance, ratio
    from bright.energy.sharing import AccessPoint, MeterReadings, Role, SharingKey, share

    index = None
    if inp.start is not None:
        index = pd.date_range(
            _utc(inp.start, "start"), periods=len(inp.offtake_kwh), freq=f"{inp.resolution_minutes}min"
        )
    readings = MeterReadings(
        tuple(inp.member_ids), _matrix(inp.offtake_kwh), _matrix(inp.injection_kwh), index
    )
    key = SharingKey.from_percent(inp.key_percent) if inp.key_percent else None
    points = (
        [AccessPoint(m, Role(inp.roles.get(m, "prosumer"))) for m in inp.member_ids] if inp.roles else None
    )
    result = share(
        readings, inp.method, key=key, access_points=points, fixed_fraction=inp.hybrid_fixed_fraction
    )
    b = balance(
        result,
        emission_factor_kg_per_kwh=inp.emission_factor_kg_per_kwh,
        interval_length_h=inp.resolution_minutes / 60.0,
    )
    ok = ~result.missing
    com = b.community[ok]
    off, inj, shr = (float(com[c].sum()) for c in ("offtake_kwh", "injection_kwh", "shared_kwh"))
    members = []
    for m in inp.member_ids:
        mo = float(b.offtake_kwh[m][ok].sum())
        mi = float(b.injection_kwh[m][ok].sum())
        so = float(b.shared_offtake_kwh[m][ok].sum())
        si = float(b.shared_injection_kwh[m][ok].sum())
        members.append(
            MemberBalance(
                id=m,
                offtake_kwh=mo,
                injection_kwh=mi,
                shared_offtake_kwh=so,
                shared_injection_kwh=si,
                self_sufficiency=_finite_or_none(float(ratio(so, mo))),
                self_consumption_rate=_finite_or_none(float(ratio(si, mi))),
            )
        )
    per_interval = None
    if inp.include_intervals:
        per_interval = [_finite_or_none(float(x)) for x in result.shared_kwh]
    peak = com["peak_offtake_kw"]
    return SharingOutput(
        method=result.method.value,
        n_intervals=readings.n_intervals,
        n_members=readings.n_members,
        missing_intervals=int(result.missing.sum()),
        offtake_kwh=off,
        injection_kwh=inj,
        shared_kwh=shr,
        residual_offtake_kwh=off - shr,
        residual_injection_kwh=inj - shr,
        self_sufficiency=_finite_or_none(float(ratio(shr, off))),
        self_consumption_rate=_finite_or_none(float(ratio(shr, inj))),
        co2_avoided_kg=float(com["co2_avoided_kg"].sum()),
        peak_offtake_kw=_finite_or_none(float(peak.max())) if len(peak) else None,
        members=members,
        shared_kwh_per_interval=per_interval,
    )


# --- mobility scenarios -------------------------------------------------------------------------

Policy = Literal[
    "uncontrolled",
    "time_of_use",
    "earliest_deadline_first",
    "pv_following",
    "community_optimal",
    "vehicle_to_grid",
]

DEFAULT_POLICIES: tuple[Policy, ...] = ("uncontrolled", "pv_following")


class MobilityInput(BaseModel):
    """Input of the mobility-scenario tool.

    Attributes
    ----------
    start
        Start of the first quarter-hour (timezone-aware, on a quarter-hour).
    base_kwh, pv_kwh
        The community's load without EVs and its PV production, kWh per quarter-hour (>= 0, same
        length: 1 day to 1 year).
    n_evs
        Private EVs charging in the community.
    shared_replacing
        How many of them are replaced by shared cars.
    policies
        Charging policies to compare (one scenario each).
    import_price_eur_per_kwh, export_price_eur_per_kwh
        Energy prices, EUR/kWh (import needed by ``community_optimal``).
    emission_kg_per_kwh
        Grid emission factor, kgCO2e/kWh.
    connection_limit_kw, ev_site_limit_kw
        Grid connection limit and EV charging limit, kW (``earliest_deadline_first`` needs one).
    seed
        Seed of the fleet generator.
    """

    model_config = ConfigDict(extra="forbid")

    start: datetime
    base_kwh: list[float] = Field(min_length=96, max_length=MAX_STEPS)
    pv_kwh: list[float] = Field(min_length=96, max_length=MAX_STEPS)
    n_evs: int = Field(ge=0, le=2000)
    shared_replacing: int = Field(default=0, ge=0)
    policies: list[Policy] = Field(default_factory=lambda: list(DEFAULT_POLICIES), min_length=1, max_length=6)
    import_price_eur_per_kwh: float | None = None
    export_price_eur_per_kwh: float = 0.0
    emission_kg_per_kwh: float | None = Field(default=None, ge=0, le=5)
    connection_limit_kw: float | None = Field(default=None, gt=0)
    ev_site_limit_kw: float | None = Field(default=None, gt=0)
    seed: int = Field(default=0, ge=0)

    @field_validator("start")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("start must carry a time zone (Z or an offset)")
        if v.minute % 15 or v.second or v.microsecond:
            raise ValueError("start must be on a quarter-hour")
        return v

    @model_validator(mode="after")
    def _lengths(self) -> MobilityInput:
        if len(self.base_kwh) != len(self.pv_kwh):
            raise ValueError(f"base_kwh has {len(self.base_kwh)} values, pv_kwh {len(self.pv_kwh)}")
        if self.shared_replacing > self.n_evs:
            raise ValueError("shared_replacing cannot exceed n_evs")
        if len(set(self.policies)) != len(self.policies):
            raise ValueError("a policy is listed twice")
        return self


class MobilityOutput(BaseModel):
    """Scenario metrics by policy (metric names carry their units; null = undefined)."""

    n_steps: int
    scenarios: dict[str, dict[str, float | None]]


@lru_cache(maxsize=1)
def _calibration() -> Any:
    """Fleet statistics fitted once on the measured charging sessions bundled with BRIGHT."""
    from bright import datasets
    from bright.energy.mobility import calibrate

    return calibrate(datasets.ev_sessions())


def run_mobility(inp: MobilityInput) -> MobilityOutput:
    """Evaluate one scenario per policy on the uploaded community (see :class:`MobilityInput`).

    Raises
    ------
    bright.energy.mobility.MobilityInputError
        A policy lacks an input it needs (the message names the scenario and the input).
    """
    from bright.energy.mobility import Community, Scenario, evaluate

    community = Community.from_kwh(
        pd.Timestamp(inp.start).tz_convert("UTC"),
        np.asarray(inp.base_kwh, dtype=np.float64),
        np.asarray(inp.pv_kwh, dtype=np.float64),
        import_price_eur_per_kwh=inp.import_price_eur_per_kwh,
        export_price_eur_per_kwh=inp.export_price_eur_per_kwh,
        emission_kg_per_kwh=inp.emission_kg_per_kwh,
        connection_limit_kw=inp.connection_limit_kw,
    )
    calibration = _calibration()
    out: dict[str, dict[str, float | None]] = {}
    for policy in inp.policies:
        scenario = Scenario(
            name=policy,
            n_evs=inp.n_evs,
            shared_replacing=inp.shared_replacing,
            policy=policy,
            ev_site_limit_kw=inp.ev_site_limit_kw,
            seed=inp.seed,
        )
        result = evaluate(community, scenario, calibration)
        out[policy] = {k: _finite_or_none(v) for k, v in result.metrics.items()}
    return MobilityOutput(n_steps=community.n_steps, scenarios=out)


# --- forecast ------------------------------------------------------------------------------------


class PVInput(BaseModel):
    """A PV installation: kWp, orientation (degrees; azimuth 180 = south) and place (WGS84 degrees)."""

    model_config = ConfigDict(extra="forbid")

    kwp: float = Field(gt=0, le=100_000)
    tilt_deg: float = Field(default=35.0, ge=0, le=90)
    azimuth_deg: float = Field(default=180.0, ge=0, lt=360)
    latitude_deg: float = Field(default=50.85, ge=-90, le=90)
    longitude_deg: float = Field(default=4.35, ge=-180, le=180)


class ForecastInput(BaseModel):
    """Input of the forecast tool.

    Attributes
    ----------
    kind
        ``load`` (offtake) or ``pv`` (production).
    start
        Start of the first interval of the history (timezone-aware).
    history_kwh
        Measured kWh per quarter-hour (``null`` = missing), at least one day.
    issue_time
        When the forecast is issued (default: the end of the history).
    horizon
        ``day-ahead`` (the next local day) or a number of hours ahead (intraday, 1..48).
    pv
        The installation (required for ``pv``).
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["load", "pv"] = "load"
    start: datetime
    history_kwh: list[float | None] = Field(min_length=96, max_length=4 * MAX_STEPS)
    issue_time: datetime | None = None
    horizon: Literal["day-ahead"] | int = "day-ahead"
    pv: PVInput | None = None

    @model_validator(mode="after")
    def _check(self) -> ForecastInput:
        if self.start.tzinfo is None or (self.issue_time is not None and self.issue_time.tzinfo is None):
            raise ValueError("start and issue_time must carry a time zone (Z or an offset)")
        if isinstance(self.horizon, int) and not 1 <= self.horizon <= 48:
            raise ValueError("an intraday horizon is 1..48 hours")
        if self.kind == "pv" and self.pv is None:
            raise ValueError("a PV forecast needs the installation (pv)")
        return self


class ForecastOutput(BaseModel):
    """Forecast quantiles, kWh per quarter-hour, at the UTC interval starts of ``index``."""

    model: str
    reason: str
    issue_time: str
    index: list[str]
    quantiles: dict[str, list[float | None]]


def run_forecast(inp: ForecastInput) -> ForecastOutput:
    """Forecast the uploaded history with the model chain of :func:`forecast_member` (no trained model)."""
    from bright.energy.forecast.features import Site
    from bright.energy.forecast.pv import PVSystem
    from bright.energy.forecast.select import forecast_member

    start = _utc(inp.start, "start")
    index = pd.date_range(start, periods=len(inp.history_kwh), freq="15min")
    history = pd.Series([np.nan if v is None else v for v in inp.history_kwh], index=index, dtype=np.float64)
    issue = _utc(inp.issue_time, "issue_time") if inp.issue_time else index[-1] + pd.Timedelta(minutes=15)
    horizon: str | pd.Timedelta = (
        "day-ahead" if inp.horizon == "day-ahead" else pd.Timedelta(hours=int(inp.horizon))
    )
    system = None
    if inp.pv is not None:
        site = Site(inp.pv.latitude_deg, inp.pv.longitude_deg)
        system = PVSystem(kwp=inp.pv.kwp, tilt_deg=inp.pv.tilt_deg, azimuth_deg=inp.pv.azimuth_deg, site=site)
    f = forecast_member(history, issue, horizon, kind=inp.kind, pv_system=system, member="uploaded")
    q = f.quantiles
    return ForecastOutput(
        model=f.model,
        reason=f.reason,
        issue_time=pd.Timestamp(f.issue_time).isoformat(),
        index=[t.isoformat() for t in q.index],
        quantiles={f"{c:g}": [_finite_or_none(float(v)) for v in q[c].to_numpy()] for c in q.columns},
    )


# --- the catalogue --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tool:
    """A tool a node runs for network members.

    Attributes
    ----------
    name
        Identifier in URLs (``/api/network/tools/{name}/run``).
    title, description
        What it does.
    status
        ``available`` (runnable) or ``planned`` (listed; runnable when its service lands).
    input_model, output_model
        Pydantic models of the request and the answer (their JSON schemas are published).
    runner
        Pure function from the validated request to the answer.
    """

    name: str
    title: str
    description: str
    status: Literal["available", "planned"]
    input_model: type[BaseModel] | None = None
    output_model: type[BaseModel] | None = None
    runner: Callable[[Any], BaseModel] | None = None

    def describe(self, *, schemas: bool = True) -> dict[str, Any]:
        """The catalogue entry as JSON (with the input/output JSON schemas)."""
        out: dict[str, Any] = {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "status": self.status,
            "run": f"/api/network/tools/{self.name}/run" if self.status == "available" else None,
            "keepsData": False,
        }
        if schemas:
            out["inputSchema"] = self.input_model.model_json_schema() if self.input_model else None
            out["outputSchema"] = self.output_model.model_json_schema() if self.output_model else None
        return out


_TOOLS: tuple[Tool, ...] = (
    Tool(
        "sharing-calculator",
        "Energy-sharing calculator",
        "Allocates the members' injection to the members' offtake per interval as the DSO does (fixed, "
        "multi-round, pro-rata, hybrid or maximum keys) and returns the community and member balance.",
        "available",
        SharingInput,
        SharingOutput,
        run_sharing,
    ),
    Tool(
        "mobility-scenarios",
        "Mobility scenarios",
        "Generates an EV fleet calibrated on measured charging sessions, runs charging policies on the "
        "community's load and PV and compares peak, self-consumption, cost and CO2.",
        "available",
        MobilityInput,
        MobilityOutput,
        run_mobility,
    ),
    Tool(
        "forecast",
        "Load and PV forecast",
        "Day-ahead or intraday quantile forecast of a member's offtake or PV production from its own "
        "history (profile average, persistence or physical PV model, whichever the data allow).",
        "available",
        ForecastInput,
        ForecastOutput,
        run_forecast,
    ),
    Tool(
        "scheduler",
        "Flexibility scheduler",
        "Tomorrow's schedule of batteries, heat pumps and EV charging with value stacking; runnable "
        "when the flexibility service lands on this node.",
        "planned",
    ),
    Tool(
        "s-bright",
        "S-BRIGHT member categories",
        "Segmentation of members from the S-BRIGHT questionnaire and their load profiles; runnable when "
        "the social service lands on this node.",
        "planned",
    ),
)


def catalogue() -> dict[str, Tool]:
    """The tools this node runs, by name."""
    return {t.name: t for t in _TOOLS}


def run_tool(name: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Run a tool on the caller's data and return its answer; nothing is kept.

    Parameters
    ----------
    name
        The tool's name.
    payload
        The request (validated against the tool's input schema).

    Returns
    -------
    dict
        The answer (JSON-ready; NaN as null).

    Raises
    ------
    ResourceNotFound
        No such tool.
    OperationNotSupported
        The tool is planned, not yet runnable (HTTP 501).
    ToolError
        The request does not match the schema, or the computation rejected the data (the message
        names the field, member or interval).
    """
    tool = catalogue().get(name)
    if tool is None:
        raise ResourceNotFound(f"no tool {name!r} on this node; see /api/network/tools")
    if tool.status != "available" or tool.runner is None or tool.input_model is None:
        raise OperationNotSupported(f"tool {name!r} is planned and not runnable yet", status=501)
    if not isinstance(payload, Mapping):
        raise ToolError(f"tool {name}: the request must be a JSON object")
    try:
        request = tool.input_model.model_validate(dict(payload))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "request"
        raise ToolError(f"tool {name}: field {where}: {err['msg']}") from None
    try:
        answer = tool.runner(request)
    except ValueError as exc:  # EnergyInputError, MobilityInputError, HistoryError...
        if isinstance(exc, ToolError):
            raise
        raise ToolError(f"tool {name}: {exc}") from None
    return answer.model_dump(mode="json")


def network_tools(cards: Sequence[CommunityCard], *, exclude: str | None = None) -> list[dict[str, Any]]:
    """The tools other nodes offer, from their cards (``offered_tools`` and ``node_url``).

    Parameters
    ----------
    cards
        The network's cards.
    exclude
        A card id to leave out (this node's own).
    """
    out = []
    for c in cards:
        if c.id == exclude or not c.offered_tools:
            continue
        for t in c.offered_tools:
            run = f"{c.node_url.rstrip('/')}/api/network/tools/{t}/run" if c.node_url else None
            out.append({"tool": t, "community": c.id, "name": c.name, "node": c.node_url, "run": run})
    return out
