"""Mobility scenarios of a community in the twin: what more EVs, smart charging, V2G, new chargers,
more PV or shared cars do to its energy, evaluated over a year at 15 min and written back.

A scenario is **the current twin plus changes**. The current twin is read once per period
(:func:`load_inputs`):

* **Load and PV.** Per member, the consumption and PV production histories of
  :func:`bright.services.forecasting.histories` (consumption = offtake - injection + metered PV
  production; without a production series the injection stands in for it), summed over the members,
  kWh per quarter-hour / 0.25 h = kW. This is the community *as metered*: EVs that already charge
  behind the meters stay in the base load, the scenario's EVs come on top. A missing reading is an
  error naming the member and the quarter-hour (never read as zero).
* **Period.** The span every member's readings cover, cut to its last calendar year (local clock)
  when longer; or the spec's ``start``/``end``.
* **Prices.** Import: the community's ``supplierEnergyPrice`` plus ``gridFee`` (constants or series;
  an absent grid fee is 0), export: its ``feedInPrice``. Without a supplier price or a feed-in
  price the cost stays NaN (``sources.prices`` says so).
* **CO2.** The spec's ``emission_kg_per_kwh``, else the community's ``emissionFactor``, else
  :data:`DEFAULT_EMISSION_KG_PER_KWH` (0.16 kgCO2e/kWh, the Belgian grid-mix figure the demo's
  balance uses); ``sources.emission`` names which.
* **Grid limits.** The connection limit ``connectionLimitKw`` (BRIGHT IRI, as the flexibility
  schedule reads it) and the LV-cabin rating ``lvCabinLimitKva`` (BRIGHT IRI) of the
  ``EnergyCommunity``, unless the spec overrides them; unknown limits leave their hours NaN.
* **Chargers.** The ``EVChargingStation``\\ s the members control give the charger mix of the new EVs:
  ``chargingPower`` (kW) weighted by ``numberOfSockets``, at *home* when the charger's building (or
  the member's) is residential, at *work* otherwise; the defaults of
  :class:`~bright.energy.mobility.FleetParameters` where the twin has none. The spec's ``chargers``
  (new chargers) replace the mix of their location.
* **PV.** ``added_pv_kwp`` scales the community's PV profile by ``1 + added / installed kWp``
  (installed = the ``peakPower`` of its ``PhotovoltaicDevice``\\ s); ``pv_scale`` multiplies it.

The spec (:class:`ScenarioSpec`, pydantic, unknown keys rejected) says the changes; it becomes a
:class:`bright.energy.mobility.Scenario` and is evaluated with :func:`bright.energy.mobility.evaluate`.

In the twin
-----------
One entity per scenario, type ``MobilityScenario`` (IRI :data:`SCENARIO_TYPE`), id
``urn:ngsi-ld:MobilityScenario:<community>:<slug of the name>`` (running a name again replaces it):
its ``name``, ``scenarioYear``, ``chargingPolicy``, the spec as ``scenarioParameters``, the period
(``validFrom``, ``validTo``), the input sources (``inputSources``), ``computedAt``, every KPI as its own Property with a
``unitCode`` (``peakImportKw``, ``unmetKwh``, ``selfSufficiency``, ``hoursAboveConnectionH``,
``costEur``, ``co2Kg`` ...; see :data:`METRICS`) and all of them as the JSON Property ``kpis``
(NaN left out); relationship ``refEnergyCommunity``; attribute IRIs in :data:`SCENARIO_TERMS`. Its 15-min series, in kW under datasetId
:data:`MOBILITY_DATASET`: ``siteLoadKw`` (the community's net import with the EVs:
``base + charge - discharge - pv``, negative when it exports), ``evChargeKw`` and ``evDischargeKw``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bright import datasets
from bright.energy import mobility as mob
from bright.services.community import (
    BRIGHT_NS,
    TERMS,
    Community,
    CommunityInputError,
    interval_setting,
    load_community,
    parse_instant,
    readings_span,
)
from bright.services.forecasting import (
    attr_objects,
    attr_value,
    community_site,
    histories,
    is_type,
    member_devices,
)
from bright.twin.errors import InternalError, ResourceNotFound
from bright.twin.series import SeriesStore
from bright.twin.service import MAX_LIMIT, TwinService
from bright.twin.vocabulary import bright_context

__all__ = [
    "CURVES",
    "DEFAULT_EMISSION_KG_PER_KWH",
    "DEMO_ASSUMPTIONS",
    "METRICS",
    "MOBILITY_DATASET",
    "SCENARIO_TYPE",
    "SERIES",
    "ChargerSpec",
    "DemoScenarioResult",
    "MobilityInputs",
    "ScenarioRun",
    "ScenarioSpec",
    "StoredScenario",
    "compare_stored",
    "demo_specs",
    "list_scenarios",
    "load_inputs",
    "parse_spec",
    "run_demo_scenario",
    "run_scenarios",
    "scenario_curves",
    "scenario_entity_id",
    "stored_scenario",
    "to_scenario",
    "with_limits",
]

STEP = pd.Timedelta(minutes=15)
DT_H = 0.25
#: datasetId of the scenario series.
MOBILITY_DATASET = "urn:ngsi-ld:Dataset:mobility"
#: Type IRI of the scenario entities.
SCENARIO_TYPE = BRIGHT_NS + "MobilityScenario"
#: kgCO2e per kWh imported when neither the spec nor the twin sets one (the demo balance's figure).
DEFAULT_EMISSION_KG_PER_KWH = 0.16
RESIDENTIAL = frozenset({"house", "apartments", "residential", "social_housing"})
#: The longest default period: a calendar year of readings (local clock), ending with the readings.
DEFAULT_PERIOD = pd.DateOffset(years=1)

#: KPI -> (label, unit for display, UN/CEFACT unit code), in display order.
METRICS: dict[str, tuple[str, str, str]] = {
    "n_vehicles": ("vehicles", "", "C62"),
    "n_shared_cars": ("shared cars", "", "C62"),
    "n_sessions": ("charging sessions", "", "C62"),
    "peak_import_kw": ("peak import", "kW", "KWT"),
    "baseline_peak_import_kw": ("peak import today", "kW", "KWT"),
    "peak_increase_kw": ("peak increase", "kW", "KWT"),
    "requested_kwh": ("EV energy requested", "kWh", "KWH"),
    "delivered_kwh": ("EV energy delivered", "kWh", "KWH"),
    "unmet_kwh": ("EV energy unmet", "kWh", "KWH"),
    "capped_kwh": ("requests capped by the generator", "kWh", "KWH"),
    "ev_charged_kwh": ("EV charging", "kWh", "KWH"),
    "ev_discharged_kwh": ("EV discharging (V2G)", "kWh", "KWH"),
    "load_kwh": ("consumption with EVs", "kWh", "KWH"),
    "pv_kwh": ("PV production", "kWh", "KWH"),
    "import_kwh": ("grid import", "kWh", "KWH"),
    "export_kwh": ("grid export", "kWh", "KWH"),
    "self_consumption": ("self-consumption", "", "C62"),
    "self_sufficiency": ("self-sufficiency", "", "C62"),
    "shared_kwh": ("PV surplus into EVs (shared)", "kWh", "KWH"),
    "hours_above_connection_h": ("hours above the connection limit", "h", "HUR"),
    "hours_above_transformer_h": ("hours above the LV-cabin limit", "h", "HUR"),
    "cost_eur": ("energy cost", "EUR", "EUR"),
    "co2_kg": ("CO2", "kgCO2e", "KGM"),
}
#: Series of a scenario: short name -> (attribute IRI, what it is).
SERIES: dict[str, tuple[str, str]] = {
    "site_load": (BRIGHT_NS + "siteLoadKw", "net import of the community with the EVs, kW"),
    "ev_charge": (BRIGHT_NS + "evChargeKw", "EV charging power, kW"),
    "ev_discharge": (BRIGHT_NS + "evDischargeKw", "EV discharging power (V2G), kW"),
}
#: Plot views of :func:`scenario_curves`.
CURVES = ("duration", "daily_profile", "daily_peak", "timeseries")


def _camel(metric: str) -> str:
    head, *rest = metric.split("_")
    return head + "".join(w.capitalize() for w in rest)


#: Attribute IRIs of the scenario entities.
SCENARIO_TERMS: dict[str, str] = {
    "refEnergyCommunity": TERMS["refEnergyCommunity"],
    "year": BRIGHT_NS + "scenarioYear",
    "policy": BRIGHT_NS + "chargingPolicy",
    "parameters": BRIGHT_NS + "scenarioParameters",
    "kpis": BRIGHT_NS + "kpis",
    "sources": BRIGHT_NS + "inputSources",
    "validFrom": BRIGHT_NS + "validFrom",
    "validTo": BRIGHT_NS + "validTo",
    "computedAt": BRIGHT_NS + "computedAt",
    "connectionLimit": BRIGHT_NS + "connectionLimitKw",
    "lvCabinLimit": BRIGHT_NS + "lvCabinLimitKva",
    **{m: BRIGHT_NS + _camel(m) for m in METRICS},
}


# --------------------------------------------------------------------------------------------------
# The scenario spec
# --------------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChargerSpec(_Strict):
    """New chargers at one location: their power and share of that location's vehicles."""

    location: Literal["home", "work", "public", "shared"] = Field(description="Where they are")
    power_kw: float = Field(gt=0, le=350, description="Rated power, kW (3.7, 11, 22 ...)")
    share: float = Field(1.0, ge=0, description="Share of the location's vehicles on this charger")


class LocationShare(_Strict):
    """Where the private EVs charge in the community (shares, normalised)."""

    home: float = Field(1.0, ge=0)
    work: float = Field(0.0, ge=0)
    public: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _positive(self) -> LocationShare:
        if self.home + self.work + self.public <= 0:
            raise ValueError("location_share: at least one share must be > 0")
        return self


class Adoption(_Strict):
    """A logistic EV adoption path: ``fleet_size / (1 + exp(-growth (year - midpoint)))`` EVs."""

    fleet_size: int = Field(ge=0, le=100_000, description="Cars when all are electric")
    midpoint_year: float = Field(ge=2000, le=2100, description="Year half of them are electric")
    growth_per_year: float = Field(gt=0, le=5, description="Logistic growth rate, 1/year")


class ScenarioSpec(_Strict):
    """A mobility scenario: the changes to the current twin (unknown keys are rejected)."""

    name: str = Field(
        min_length=1,
        max_length=80,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._+-]*$",
        description="Label and key of the scenario (letters, digits, space . _ + -)",
    )
    year: int | None = Field(None, ge=2000, le=2100, description="Year the scenario stands for")
    n_evs: int | None = Field(None, ge=0, le=100_000, description="Private EVs added (or give adoption)")
    adoption: Adoption | None = Field(None, description="EVs from an adoption path at `year`")
    policy: Literal[
        "uncontrolled",
        "time_of_use",
        "earliest_deadline_first",
        "pv_following",
        "community_optimal",
        "vehicle_to_grid",
    ] = "uncontrolled"
    ev_site_limit_kw: float | None = Field(None, gt=0, description="Limit on total EV power, kW")
    follow_connection_limit: bool = Field(
        False, description="Keep EV power within the connection's headroom: limit - (load - PV)"
    )
    import_cap_kw: float | None = Field(
        None, ge=0, description="Keep the community's import at or below this, kW (EV power limited)"
    )
    chargers: tuple[ChargerSpec, ...] = Field((), description="New chargers (replace their location's mix)")
    location_share: LocationShare | None = None
    daily_km_mean: float | None = Field(None, ge=0, le=500, description="Mean km per car and day")
    pv_scale: float = Field(1.0, ge=0, le=100, description="Multiplier on the community's PV")
    added_pv_kwp: float = Field(0.0, ge=0, le=1e6, description="PV added, kWp (same profile per kWp)")
    shared_replacing: int = Field(0, ge=0, description="Private EVs replaced by shared cars")
    users_per_shared_car: int = Field(4, ge=1, le=50)
    shared_km_factor: float = Field(1.0, ge=0, le=5)
    tou_hours: tuple[float, float] = Field((22.0, 7.0), description="Local cheap window [start, end) h")
    v2g_min_soc: float = Field(0.2, ge=0, le=1)
    v2g_reserve_power_share: float = Field(0.5, gt=0, le=1)
    v2g_discharge_above_kw: float = Field(0.0, ge=0)
    v2g_price_low_eur_per_kwh: float | None = None
    v2g_price_high_eur_per_kwh: float | None = None
    v2g_export: bool = False
    discharge_efficiency: float = Field(0.9, gt=0, le=1)
    peak_weight_eur_per_kw: float = Field(0.0, ge=0)
    optimal_solver: Literal["lp", "flex"] = Field(
        "lp", description="community_optimal: the bundled LP or the flexibility solver (no EV site limit)"
    )
    connection_limit_kw: float | None = Field(None, gt=0, description="Override of the twin's, kW")
    lv_cabin_limit_kva: float | None = Field(None, gt=0, description="Override of the twin's, kVA")
    power_factor: float = Field(1.0, gt=0, le=1, description="kW to kVA at the LV cabin")
    emission_kg_per_kwh: float | None = Field(None, ge=0, le=5, description="Override, kgCO2e/kWh")
    start: str | None = Field(None, description="Period start (ISO 8601 date or date-time)")
    end: str | None = Field(None, description="Period end, exclusive (ISO 8601)")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of the fleet generator")

    @model_validator(mode="after")
    def _consistent(self) -> ScenarioSpec:
        if self.n_evs is not None and self.adoption is not None:
            raise ValueError("give n_evs or adoption, not both")
        if self.adoption is not None and self.year is None:
            raise ValueError("adoption needs a year to read the number of EVs at")
        if self.n_evs is not None and self.shared_replacing > self.n_evs:
            raise ValueError(f"shared_replacing {self.shared_replacing} exceeds n_evs {self.n_evs}")
        if (
            self.policy == "earliest_deadline_first"
            and self.ev_site_limit_kw is None
            and self.import_cap_kw is None
            and not self.follow_connection_limit
        ):
            raise ValueError(
                "earliest_deadline_first needs ev_site_limit_kw, import_cap_kw or follow_connection_limit"
            )
        for a, b in ((self.tou_hours[0], "start"), (self.tou_hours[1], "end")):
            if not 0 <= a <= 24:
                raise ValueError(f"tou_hours {b} {a} must be within 0..24")
        return self

    @property
    def evs(self) -> int:
        """Private EVs of the scenario (``n_evs``, or the adoption path at ``year``, or 0)."""
        if self.adoption is not None and self.year is not None:
            a = self.adoption
            return mob.ev_adoption(
                [self.year],
                fleet_size=a.fleet_size,
                midpoint_year=a.midpoint_year,
                growth_per_year=a.growth_per_year,
            )[self.year]
        return self.n_evs or 0


def _error_text(exc: ValidationError, allowed: Sequence[str]) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(x) for x in err.get("loc", ())) or "spec"
        if err.get("type") == "extra_forbidden":
            parts.append(f"unknown field {where!r} (allowed: {', '.join(allowed)})")
        else:
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            parts.append(f"{where}: {msg}")
    more = len(exc.errors()) - 3
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def parse_spec(data: Any) -> ScenarioSpec:
    """A validated scenario spec from a JSON object.

    Raises
    ------
    CommunityInputError
        Not an object, an unknown key (the message lists the allowed ones), a value out of range or
        inconsistent fields; the message names the field.
    """
    if isinstance(data, ScenarioSpec):
        return data
    if not isinstance(data, Mapping):
        raise CommunityInputError(f"scenario spec must be a JSON object, got {type(data).__name__}")
    try:
        return ScenarioSpec.model_validate(dict(data))
    except ValidationError as exc:
        name = data.get("name")
        who = f"scenario {name!r}" if isinstance(name, str) else "scenario spec"
        raise CommunityInputError(f"{who}: {_error_text(exc, list(ScenarioSpec.model_fields))}") from None


# --------------------------------------------------------------------------------------------------
# The current twin
# --------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _calibration() -> mob.Calibration:
    return mob.calibrate(datasets.ev_sessions())


@dataclass(frozen=True, eq=False)
class MobilityInputs:
    """The current community as the scenarios see it.

    Attributes
    ----------
    community : Community
        The community in the twin.
    model : bright.energy.mobility.Community
        Base load (without the scenarios' EVs) and PV in kW per quarter-hour, prices (EUR/kWh),
        emission factor (kgCO2e/kWh) and limits (kW, kVA).
    index : pandas.DatetimeIndex
        Quarter-hour starts of the period (UTC).
    pv_kwp : float
        Installed PV (sum of ``peakPower``), kWp.
    chargers : dict of str to tuple
        Charger mix (``(kW, share)`` pairs) per location found in the twin (``home``, ``work``).
    sources : dict of str to str
        Where every input came from (load, prices, emission, limits, chargers).
    """

    community: Community
    model: mob.Community
    index: pd.DatetimeIndex
    pv_kwp: float
    chargers: dict[str, tuple[tuple[float, float], ...]]
    sources: dict[str, str]


def _period(community: Community, start: Any, end: Any, tz: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    span = readings_span(community)
    if span is None:
        raise CommunityInputError(
            f"community {community.id} has no common readings (offtake and injection of every member)"
        )
    lo = span[0] if start is None else parse_instant(start, tz=tz, what="start")
    hi = span[1] if end is None else parse_instant(end, tz=tz, what="end")
    try:
        year_back = (hi.tz_convert(tz) - DEFAULT_PERIOD).tz_convert("UTC")
    except (ValueError, OverflowError):  # a wall-clock time that does not exist a year before
        year_back = hi - pd.Timedelta(days=365)
    if start is None and lo < year_back:
        lo = year_back
    if hi <= lo:
        raise CommunityInputError(f"end {hi.isoformat()} must be after start {lo.isoformat()}")
    for ts, what in ((lo, "start"), (hi, "end")):
        if (ts - pd.Timestamp(0, tz="UTC")) % STEP != pd.Timedelta(0):
            raise CommunityInputError(f"{what} {ts.isoformat()} is not on the 15-minute grid")
    if lo < span[0] or hi > span[1]:
        raise CommunityInputError(
            f"period {lo.isoformat()} .. {hi.isoformat()} is outside the readings of {community.id} "
            f"({span[0].isoformat()} .. {span[1].isoformat()})"
        )
    return lo, hi


def _number(doc: Mapping[str, Any], term: str, what: str) -> float | None:
    v = attr_value(doc, term)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
        raise CommunityInputError(f"{what}: {term.rsplit('#', 1)[-1]} is {v!r}; it must be a number > 0")
    return float(v)


def _charger_mix(community: Community, devices: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    twin, tenant = community.twin, community.tenant
    members = twin.store.get_many(tenant, list(community.member_ids))
    chargers = [
        (m, d) for m in community.member_ids for d in devices.get(m, []) if is_type(d, "EVChargingStation")
    ]
    wanted = {b for _, d in chargers for b in attr_objects(d, "locatedIn")}
    wanted |= {b for m, _ in chargers for b in attr_objects(members.get(m, {}), "represents")}
    buildings = twin.store.get_many(tenant, sorted(wanted)) if wanted else {}
    mixes: dict[str, dict[float, float]] = {}
    for m, dev in chargers:
        what = f"member {m} device {dev['id']}"
        power = _number(dev, "chargingPower", what)
        if power is None:
            raise CommunityInputError(f"{what}: an EVChargingStation needs a chargingPower > 0 kW")
        sockets = _number(dev, "numberOfSockets", what) or 1.0
        category: set[str] = set()
        for ref in (attr_objects(dev, "locatedIn"), attr_objects(members.get(m, {}), "represents")):
            for b in ref:
                cat = attr_value(buildings.get(b, {}), "category")
                if cat is not None and not category:
                    category = {str(c) for c in (cat if isinstance(cat, list) else [cat])}
        where = "home" if category & RESIDENTIAL else "work"
        mixes.setdefault(where, {})
        mixes[where][power] = mixes[where].get(power, 0.0) + sockets
    return {k: tuple(sorted(v.items())) for k, v in mixes.items()}


def load_inputs(
    community: Community,
    *,
    start: Any = None,
    end: Any = None,
    connection_limit_kw: float | None = None,
    lv_cabin_limit_kva: float | None = None,
    power_factor: float = 1.0,
    emission_kg_per_kwh: float | None = None,
) -> MobilityInputs:
    """Read the current community for the scenarios (see the module docstring).

    Parameters
    ----------
    community : Community
        The community (:func:`bright.services.community.load_community`), at 15-minute resolution.
    start, end : str or pandas.Timestamp, optional
        Period (ISO 8601; dates are local midnight); default the last year of readings.
    connection_limit_kw, lv_cabin_limit_kva : float, optional
        Overrides of the twin's limits, kW and kVA.
    power_factor : float
        Power factor of the net load at the LV cabin.
    emission_kg_per_kwh : float, optional
        Override of the emission factor, kgCO2e/kWh.

    Returns
    -------
    MobilityInputs

    Raises
    ------
    CommunityInputError
        Another resolution than 15 min, a period outside the readings, a missing reading (member and
        quarter-hour named), a bad charger or limit attribute.
    """
    base = _read_inputs(community, start, end, emission_kg_per_kwh)
    return with_limits(
        base,
        connection_limit_kw=connection_limit_kw,
        lv_cabin_limit_kva=lv_cabin_limit_kva,
        power_factor=power_factor,
    )


def _read_inputs(
    community: Community, start: Any, end: Any, emission_kg_per_kwh: float | None
) -> MobilityInputs:
    """Series, prices, emission factor, PV size, chargers and the twin's own limits."""
    if community.resolution != STEP:
        raise CommunityInputError(
            f"community {community.id}: resolution {community.resolution}; mobility scenarios run at 15 min"
        )
    site = community_site(community)
    tz = site.tz
    lo, hi = _period(community, start, end, tz)
    devices = member_devices(community)
    hist = histories(community, lo, hi, site=site, devices=devices)
    index = pd.date_range(lo, hi, freq=STEP, inclusive="left")
    base = np.zeros(len(index))
    pv = np.zeros(len(index))
    notes: set[str] = set()
    for (member, quantity), h in hist.items():
        values = h.values.reindex(index).to_numpy(dtype=np.float64)
        bad = np.flatnonzero(np.isnan(values))
        if bad.size:
            raise CommunityInputError(
                f"member {member}: {quantity} is missing at {index[bad[0]].isoformat()} ({bad.size} "
                "quarter-hours of the period); complete the readings or choose another start/end"
            )
        (base if quantity == "consumption" else pv)[:] += values / DT_H
        if quantity == "production" and h.note:
            notes.add(h.note)
    pv_kwp = float(
        sum(
            float(attr_value(d, "peakPower") or 0.0)
            for m in community.member_ids
            for d in devices.get(m, [])
            if is_type(d, "PhotovoltaicDevice")
        )
    )
    sources: dict[str, str] = {
        "load": "members' consumption: offtake - injection + PV production (metered readings)",
        "pv": "; ".join(sorted(notes)) or "no PV in the community",
    }
    energy = interval_setting(community, "supplierEnergyPrice", index)
    fee = interval_setting(community, "gridFee", index)
    feed_in = interval_setting(community, "feedInPrice", index)
    import_price: Any = None
    export_price: Any = 0.0
    if energy is not None and feed_in is not None:
        import_price = np.asarray(energy, dtype=np.float64) + (0.0 if fee is None else np.asarray(fee))
        export_price = feed_in
        sources["prices"] = "supplierEnergyPrice + gridFee (import), feedInPrice (export) of the community"
    else:
        sources["prices"] = "none: the community sets no supplierEnergyPrice or feedInPrice (cost NaN)"
    emission: Any
    if emission_kg_per_kwh is not None:
        emission, sources["emission"] = emission_kg_per_kwh, f"spec: {emission_kg_per_kwh:g} kgCO2e/kWh"
    else:
        emission = interval_setting(community, "emissionFactor", index)
        if emission is not None:
            sources["emission"] = "emissionFactor of the community"
        else:
            emission = DEFAULT_EMISSION_KG_PER_KWH
            sources["emission"] = f"default {DEFAULT_EMISSION_KG_PER_KWH:g} kgCO2e/kWh (Belgian grid mix)"
    doc = community.twin.store.get(community.tenant, community.id) or {}
    what = f"community {community.id}"
    connection = _number(doc, SCENARIO_TERMS["connectionLimit"], what)
    cabin = _number(doc, SCENARIO_TERMS["lvCabinLimit"], what)
    sources["connection_limit"] = (
        "none (hours above it NaN)" if connection is None else "connectionLimitKw of the community"
    )
    sources["lv_cabin_limit"] = (
        "none (hours above it NaN)" if cabin is None else "lvCabinLimitKva of the community"
    )
    chargers = _charger_mix(community, devices)
    sources["chargers"] = (
        "; ".join(
            f"{k}: " + ", ".join(f"{p:g} kW x {n:g}" for p, n in v) for k, v in sorted(chargers.items())
        )
        or "none in the twin: fleet defaults"
    )
    try:
        model = mob.Community(
            lo,
            base,
            pv,
            import_price_eur_per_kwh=import_price,
            export_price_eur_per_kwh=export_price,
            emission_kg_per_kwh=emission,
            connection_limit_kw=connection,
            transformer_limit_kva=cabin,
            tz=tz,
        )
    except mob.MobilityInputError as exc:
        raise CommunityInputError(f"{what}: {exc}") from None
    return MobilityInputs(community, model, index, pv_kwp, chargers, sources)


def with_limits(
    inputs: MobilityInputs,
    *,
    connection_limit_kw: float | None = None,
    lv_cabin_limit_kva: float | None = None,
    power_factor: float = 1.0,
) -> MobilityInputs:
    """The inputs with the connection limit (kW), LV-cabin rating (kVA) or power factor overridden
    (``None`` keeps the twin's)."""
    sources = dict(inputs.sources)
    changes: dict[str, Any] = {"power_factor": power_factor}
    if connection_limit_kw is not None:
        changes["connection_limit_kw"] = connection_limit_kw
        sources["connection_limit"] = f"spec: {connection_limit_kw:g} kW"
    if lv_cabin_limit_kva is not None:
        changes["transformer_limit_kva"] = lv_cabin_limit_kva
        sources["lv_cabin_limit"] = f"spec: {lv_cabin_limit_kva:g} kVA"
    try:
        model = replace(inputs.model, **changes)
    except mob.MobilityInputError as exc:
        raise CommunityInputError(f"community {inputs.community.id}: {exc}") from None
    return replace(inputs, model=model, sources=sources)


def to_scenario(spec: ScenarioSpec, inputs: MobilityInputs) -> mob.Scenario:
    """The pure scenario of a spec on the current community.

    Raises
    ------
    CommunityInputError
        PV added to a community without PV, more shared replacements than EVs, or a setting the
        pure model rejects.
    """
    who = f"scenario {spec.name!r}"
    n = spec.evs
    if spec.shared_replacing > n:
        raise CommunityInputError(f"{who}: shared_replacing {spec.shared_replacing} exceeds its {n} EVs")
    pv_scale = spec.pv_scale
    if spec.added_pv_kwp > 0:
        if inputs.pv_kwp <= 0 or inputs.model.pv_kw.sum() <= 0:
            raise CommunityInputError(
                f"{who}: added_pv_kwp needs PV in the community to take its profile from (it has none)"
            )
        pv_scale = spec.pv_scale + spec.added_pv_kwp / inputs.pv_kwp
    mixes: dict[str, Any] = {f"{k}_chargers": v for k, v in inputs.chargers.items()}
    new: dict[str, list[tuple[float, float]]] = {}
    for c in spec.chargers:
        new.setdefault(c.location, []).append((c.power_kw, c.share))
    for loc, mix in new.items():
        if sum(s for _, s in mix) <= 0:
            raise CommunityInputError(f"{who}: the {loc} chargers' shares sum to 0")
        mixes[f"{loc}_chargers"] = tuple(mix)
    extra: dict[str, Any] = {}
    if spec.location_share is not None:
        ls = spec.location_share
        extra["location_share"] = (ls.home, ls.work, ls.public)
    try:
        fleet = mob.FleetParameters(
            daily_km_mean=spec.daily_km_mean,
            users_per_shared_car=spec.users_per_shared_car,
            shared_km_factor=spec.shared_km_factor,
            **mixes,
            **extra,
        )
        thresholds = spec.v2g_price_low_eur_per_kwh is not None or spec.v2g_price_high_eur_per_kwh is not None
        if thresholds and inputs.model.import_price_eur_per_kwh is None and spec.policy == "vehicle_to_grid":
            raise CommunityInputError(f"{who}: V2G price thresholds need the community's prices")
        if spec.policy == "community_optimal" and inputs.model.import_price_eur_per_kwh is None:
            raise CommunityInputError(f"{who}: community_optimal needs the community's prices")
        if spec.follow_connection_limit and inputs.model.connection_limit_kw is None:
            raise CommunityInputError(
                f"{who}: follow_connection_limit needs a connection limit (connectionLimitKw on the "
                "community, or connection_limit_kw in the spec)"
            )
        return mob.Scenario(
            spec.name,
            year=spec.year,
            n_evs=n,
            shared_replacing=spec.shared_replacing,
            policy=spec.policy,
            fleet=fleet,
            pv_scale=pv_scale,
            ev_site_limit_kw=spec.ev_site_limit_kw,
            follow_connection_limit=spec.follow_connection_limit,
            import_cap_kw=spec.import_cap_kw,
            tou_hours=spec.tou_hours,
            v2g_min_soc=spec.v2g_min_soc,
            v2g_reserve_power_share=spec.v2g_reserve_power_share,
            v2g_discharge_above_kw=spec.v2g_discharge_above_kw,
            v2g_price_low_eur_per_kwh=spec.v2g_price_low_eur_per_kwh,
            v2g_price_high_eur_per_kwh=spec.v2g_price_high_eur_per_kwh,
            v2g_export=spec.v2g_export,
            discharge_efficiency=spec.discharge_efficiency,
            peak_weight_eur_per_kw=spec.peak_weight_eur_per_kw,
            solver=mob.flex_charging_solver if spec.optimal_solver == "flex" else None,
            seed=spec.seed,
        )
    except mob.MobilityInputError as exc:
        raise CommunityInputError(f"{who}: {exc}") from None


# --------------------------------------------------------------------------------------------------
# Running and writing
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ScenarioRun:
    """A scenario evaluated on the current community.

    Attributes
    ----------
    spec : ScenarioSpec
        What was asked.
    scenario : bright.energy.mobility.Scenario
        The pure scenario it became.
    result : bright.energy.mobility.ScenarioResult
        KPIs and the 15-min series (kW).
    inputs : MobilityInputs
        The current community it ran on.
    entity_id : str
        Its ``MobilityScenario`` entity.
    series_written : int
        Series values written (0 when not written).
    elapsed_s : float
        Time to evaluate and write, s.
    """

    spec: ScenarioSpec
    scenario: mob.Scenario
    result: mob.ScenarioResult
    inputs: MobilityInputs
    entity_id: str
    series_written: int = 0
    elapsed_s: float = 0.0

    @property
    def kpis(self) -> dict[str, float]:
        """KPI name -> value (units in the names; NaN = unknown)."""
        return dict(self.result.metrics)


def _tail(community_id: str) -> str:
    prefix = "urn:ngsi-ld:EnergyCommunity:"
    return community_id[len(prefix) :] if community_id.startswith(prefix) else community_id


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "scenario"


def scenario_entity_id(community_id: str, name: str) -> str:
    """Entity id of a community's scenario: ``urn:ngsi-ld:MobilityScenario:<community>:<slug>``.

    ``urn:ngsi-ld:EnergyCommunity:c1`` and ``"2030 V2G"`` give
    ``urn:ngsi-ld:MobilityScenario:c1:2030-v2g``.
    """
    return f"urn:ngsi-ld:MobilityScenario:{_tail(community_id)}:{_slug(name)}"


def _iso(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _prop(value: Any, unit: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "Property", "value": value}
    if unit:
        out["unitCode"] = unit
    return out


def _finite(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: round(float(v), 6) for k, v in metrics.items() if math.isfinite(float(v))}


def _entity(run: ScenarioRun, computed_at: str) -> dict[str, Any]:
    st = SCENARIO_TERMS
    inputs = run.inputs
    kpis = _finite(run.result.metrics)
    ent: dict[str, Any] = {
        "id": run.entity_id,
        "type": SCENARIO_TYPE,
        "name": _prop(run.spec.name),
        st["refEnergyCommunity"]: {"type": "Relationship", "object": inputs.community.id},
        st["policy"]: _prop(run.spec.policy),
        st["parameters"]: _prop(run.spec.model_dump(mode="json", exclude_none=True)),
        st["kpis"]: _prop(kpis),
        st["sources"]: _prop(dict(inputs.sources)),
        st["validFrom"]: _prop(_iso(inputs.index[0])),
        st["validTo"]: _prop(_iso(inputs.index[-1] + STEP)),
        st["computedAt"]: _prop(computed_at),
    }
    if run.spec.year is not None:
        ent[st["year"]] = _prop(run.spec.year)
    if inputs.model.connection_limit_kw is not None:
        ent[st["connectionLimit"]] = _prop(inputs.model.connection_limit_kw, "KWT")
    if inputs.model.transformer_limit_kva is not None:
        ent[st["lvCabinLimit"]] = _prop(inputs.model.transformer_limit_kva, "KVA")
    for metric, value in kpis.items():
        if metric in METRICS:
            ent[st[metric]] = _prop(value, METRICS[metric][2])
    return ent


def _write(runs: Sequence[ScenarioRun], series: SeriesStore) -> list[int]:
    if not runs:
        return []
    community = runs[0].inputs.community
    computed_at = _iso(pd.Timestamp.now(tz="UTC"))
    res = community.twin.batch_upsert(
        community.tenant, [_entity(r, computed_at) for r in runs], bright_context()
    )
    if res["errors"]:
        first = res["errors"][0]
        raise InternalError(
            f"MobilityScenario entity {first['entityId']} was rejected: {first['error'].get('detail')}"
        )
    written = []
    for run in runs:
        for attribute, _ in SERIES.values():
            series.delete(run.entity_id, attribute, tenant=community.tenant, dataset_id=MOBILITY_DATASET)
        frames = []
        for key, (attribute, _) in SERIES.items():
            values = {
                "site_load": run.result.net_kw,
                "ev_charge": run.result.charge_kw,
                "ev_discharge": run.result.discharge_kw,
            }[key]
            frames.append(
                pd.DataFrame(
                    {
                        "entity_id": run.entity_id,
                        "time": run.inputs.index,
                        "value": values,
                        "attribute": attribute,
                    }
                )
            )
        out = series.write(
            pd.concat(frames, ignore_index=True),
            tenant=community.tenant,
            dataset_id=MOBILITY_DATASET,
            unit_code="KWT",
        )
        written.append(out.values)
    return written


def _input_key(spec: ScenarioSpec) -> tuple[Any, ...]:
    return (spec.start, spec.end, spec.emission_kg_per_kwh)


def run_scenarios(
    community: Community,
    specs: Sequence[ScenarioSpec | Mapping[str, Any]],
    *,
    write: bool = True,
    series: SeriesStore | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    inputs_cache: dict[tuple[Any, ...], MobilityInputs] | None = None,
) -> list[ScenarioRun]:
    """Evaluate scenarios on the current community and (``write``) store them in the twin.

    Parameters
    ----------
    community : Community
        The community.
    specs : sequence of ScenarioSpec or JSON objects
        The scenarios; names must be distinct (they key the entities).
    write : bool
        Write the ``MobilityScenario`` entities and their series.
    series : SeriesStore, optional
        Where to write the series (default: the community's).
    progress : callable, optional
        Called as ``progress(done, total, name)`` before each scenario and once at the end.
    inputs_cache : dict, optional
        The current community read before, keyed by ``(start, end, emission_kg_per_kwh)`` of the
        specs; filled as the specs need it (a year is read once for many scenarios).

    Returns
    -------
    list of ScenarioRun
        In the order of ``specs``.

    Raises
    ------
    CommunityInputError
        A bad spec, duplicate names, or an input the scenarios cannot use (named).
    """
    parsed = [parse_spec(s) for s in specs]
    if not parsed:
        raise CommunityInputError("no scenario to run")
    ids = [scenario_entity_id(community.id, s.name) for s in parsed]
    dupes = sorted({s.name for s, i in zip(parsed, ids, strict=True) if ids.count(i) > 1})
    if dupes:
        raise CommunityInputError(f"scenario names {dupes} appear more than once (or give the same id)")
    store = series or community.series
    cal = _calibration()
    cache = {} if inputs_cache is None else inputs_cache
    runs: list[ScenarioRun] = []
    for k, (spec, eid) in enumerate(zip(parsed, ids, strict=True)):
        if progress is not None:
            progress(k, len(parsed), spec.name)
        t0 = time.perf_counter()
        key = _input_key(spec)
        if key not in cache:
            cache[key] = _read_inputs(community, spec.start, spec.end, spec.emission_kg_per_kwh)
        inputs = with_limits(
            cache[key],
            connection_limit_kw=spec.connection_limit_kw,
            lv_cabin_limit_kva=spec.lv_cabin_limit_kva,
            power_factor=spec.power_factor,
        )
        scenario = to_scenario(spec, inputs)
        try:
            result = mob.evaluate(inputs.model, scenario, cal)
        except mob.MobilityInputError as exc:
            raise CommunityInputError(f"scenario {spec.name!r}: {exc}") from None
        run = ScenarioRun(spec, scenario, result, inputs, eid, 0, time.perf_counter() - t0)
        if write:
            t1 = time.perf_counter()
            (n,) = _write([run], store)
            run = ScenarioRun(
                spec, scenario, result, inputs, eid, n, run.elapsed_s + time.perf_counter() - t1
            )
        runs.append(run)
    if progress is not None:
        progress(len(parsed), len(parsed), "done")
    return runs


# --------------------------------------------------------------------------------------------------
# Reading back, comparing, plotting
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredScenario:
    """A scenario as stored in the twin.

    Attributes
    ----------
    id, name, community_id : str
        Entity id, name, community.
    year : int or None
        Year it stands for.
    policy : str
        Charging policy.
    parameters : dict
        The spec (JSON).
    kpis : dict of str to float
        Every KPI of :data:`METRICS` (NaN where unknown).
    sources : dict of str to str
        Where the inputs came from.
    start, end : pandas.Timestamp
        The period (UTC).
    computed_at : str
        When it was computed (ISO 8601 UTC).
    """

    id: str
    name: str
    community_id: str
    year: int | None
    policy: str
    parameters: dict[str, Any]
    kpis: dict[str, float]
    sources: dict[str, str]
    start: pd.Timestamp
    end: pd.Timestamp
    computed_at: str = field(default="")

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form (NaN as null, times ISO 8601 UTC)."""
        return {
            "id": self.id,
            "name": self.name,
            "community": self.community_id,
            "year": self.year,
            "policy": self.policy,
            "period": {"start": _iso(self.start), "end": _iso(self.end)},
            "parameters": self.parameters,
            "kpis": {k: (v if math.isfinite(v) else None) for k, v in self.kpis.items()},
            "units": {k: METRICS[k][1] for k in self.kpis if k in METRICS},
            "sources": self.sources,
            "computed_at": self.computed_at,
        }


def _stored(doc: Mapping[str, Any]) -> StoredScenario:
    st = SCENARIO_TERMS
    raw = attr_value(doc, st["kpis"]) or {}
    kpis = {m: float(raw[m]) if m in raw and raw[m] is not None else float("nan") for m in METRICS}
    refs = attr_objects(doc, st["refEnergyCommunity"])
    year = attr_value(doc, st["year"])
    return StoredScenario(
        id=str(doc["id"]),
        name=str(attr_value(doc, "name") or doc["id"]),
        community_id=refs[0] if refs else "",
        year=None if year is None else int(year),
        policy=str(attr_value(doc, st["policy"]) or ""),
        parameters=dict(attr_value(doc, st["parameters"]) or {}),
        kpis=kpis,
        sources={str(k): str(v) for k, v in (attr_value(doc, st["sources"]) or {}).items()},
        start=pd.Timestamp(str(attr_value(doc, st["validFrom"]))),
        end=pd.Timestamp(str(attr_value(doc, st["validTo"]))),
        computed_at=str(attr_value(doc, st["computedAt"]) or ""),
    )


def list_scenarios(community: Community) -> list[StoredScenario]:
    """The community's stored scenarios, by name."""
    twin, tenant = community.twin, community.tenant
    out: list[StoredScenario] = []
    offset = 0
    while True:
        eq = twin.build_query(
            {"type": SCENARIO_TYPE, "limit": str(MAX_LIMIT), "offset": str(offset)}, bright_context()
        )
        docs, _ = twin.store.query(tenant, eq)
        out.extend(
            _stored(d) for d in docs if community.id in attr_objects(d, SCENARIO_TERMS["refEnergyCommunity"])
        )
        if len(docs) < MAX_LIMIT:
            break
        offset += MAX_LIMIT
    return sorted(out, key=lambda s: s.name)


def stored_scenario(community: Community, ref: str) -> StoredScenario:
    """One stored scenario of the community, by entity id or by name.

    Raises
    ------
    ResourceNotFound
        The community has no such scenario.
    """
    eid = ref if ref.startswith("urn:ngsi-ld:MobilityScenario:") else scenario_entity_id(community.id, ref)
    doc = community.twin.store.get(community.tenant, eid)
    if doc is None or SCENARIO_TYPE not in doc.get("type", []):
        raise ResourceNotFound(f"community {community.id} has no mobility scenario {ref!r} ({eid})")
    found = _stored(doc)
    if found.community_id != community.id:
        raise ResourceNotFound(f"scenario {eid} belongs to {found.community_id}, not {community.id}")
    return found


def compare_stored(community: Community, refs: Sequence[str]) -> pd.DataFrame:
    """Stored scenarios side by side: one row per KPI (:data:`METRICS` order), one column per name.

    Raises
    ------
    CommunityInputError
        No scenario named, or the same one twice.
    ResourceNotFound
        An unknown scenario.
    """
    if not refs:
        raise CommunityInputError("name at least one scenario to compare")
    found = [stored_scenario(community, r) for r in refs]
    ids = [s.id for s in found]
    if len(set(ids)) < len(ids):
        raise CommunityInputError(f"scenario {sorted(i for i in ids if ids.count(i) > 1)[0]} is named twice")
    table = pd.DataFrame({s.name: pd.Series(s.kpis, dtype="float64") for s in found}).reindex(list(METRICS))
    table.index.name = "metric"
    return table


def scenario_curves(
    community: Community,
    refs: Sequence[str],
    *,
    curve: str = "duration",
    quantity: str = "site_load",
    points: int = 200,
    resolution: str = "1D",
    how: str = "max",
) -> dict[str, Any]:
    """Plot data of stored scenarios (read from their series).

    Parameters
    ----------
    community : Community
        The community.
    refs : sequence of str
        Scenario ids or names.
    curve : str
        ``duration`` (load-duration curve, ``points`` points from the maximum to the minimum),
        ``daily_profile`` (mean kW per local time of day), ``daily_peak`` (max kW per local day) or
        ``timeseries`` (``how`` of each ``resolution`` bucket, local calendar).
    quantity : str
        ``site_load`` (net import with the EVs), ``ev_charge`` or ``ev_discharge``; kW.
    points : int
        Points of the duration curve (2..2000).
    resolution, how : str
        Bucket (``15min``, ``1h``, ``1D`` ...) and ``max``/``mean``/``min`` of ``timeseries``.

    Returns
    -------
    dict
        ``{"curve", "quantity", "unit": "kW", "x": [...], "x_label", "series": {name: [...]}}``.

    Raises
    ------
    CommunityInputError
        An unknown curve, quantity, method or resolution.
    ResourceNotFound
        An unknown scenario.
    """
    if curve not in CURVES:
        raise CommunityInputError(f"curve {curve!r} is not one of {', '.join(CURVES)}")
    if quantity not in SERIES:
        raise CommunityInputError(f"quantity {quantity!r} is not one of {', '.join(SERIES)}")
    if not 2 <= points <= 2000:
        raise CommunityInputError(f"points must be within 2..2000, got {points}")
    if how not in ("max", "mean", "min"):
        raise CommunityInputError(f"how {how!r} is not one of max, mean, min")
    if not refs:
        raise CommunityInputError("name at least one scenario to plot")
    found = [stored_scenario(community, r) for r in refs]
    tz = community_site(community).tz
    attribute = SERIES[quantity][0]
    out: dict[str, list[float | None]] = {}
    x: list[Any] = []
    x_label = ""
    for s in found:
        if curve == "timeseries":
            try:
                frame = community.series.read(
                    s.id, attribute, s.start, s.end, tenant=community.tenant, dataset_id=MOBILITY_DATASET,
                    resolution=resolution, how=how, tz=tz,
                )  # fmt: skip
            except ValueError as exc:
                raise CommunityInputError(f"resolution {resolution!r}: {exc}") from None
            values = frame[s.id].to_numpy()
            x = [t.isoformat() for t in pd.DatetimeIndex(frame.index).tz_convert(tz)]
            x_label = f"{how} per {resolution} (local time)"
        else:
            frame = community.series.read(
                s.id, attribute, s.start, s.end, tenant=community.tenant, dataset_id=MOBILITY_DATASET
            )
            grid = pd.date_range(s.start, s.end, freq=STEP, inclusive="left")
            raw = frame[s.id].reindex(grid).to_numpy()
            if curve == "duration":
                values = mob.duration_curve(raw, points)
                x = [round(i / max(values.size - 1, 1) * raw.size * DT_H, 3) for i in range(values.size)]
                x_label = "hours at or above"
            elif curve == "daily_profile":
                prof = mob.daily_profile(raw, s.start, tz=tz)
                values, x, x_label = prof.to_numpy(), [float(h) for h in prof.index], "local hour"
            else:
                peaks = mob.daily_peaks(raw, s.start, tz=tz)
                values, x, x_label = peaks.to_numpy(), [d.isoformat() for d in peaks.index], "local day"
        out[s.name] = [None if not math.isfinite(float(v)) else round(float(v), 4) for v in values]
    return {"curve": curve, "quantity": quantity, "unit": "kW", "x": x, "x_label": x_label, "series": out}


# --------------------------------------------------------------------------------------------------
# The 2030 demo scenario
# --------------------------------------------------------------------------------------------------

#: Documented assumptions of :func:`run_demo_scenario` (see docs/mobility.md).
DEMO_ASSUMPTIONS: dict[str, float] = {
    # Cars charging in the community: one per household (Brussels averages about 0.6-0.7; a
    # community of engaged members around a school is taken at one), four staff or visitor cars
    # per socket of a non-residential charger (the school's day-time users).
    "cars_per_household": 1.0,
    "cars_per_workplace_socket": 4.0,
    # EV share of those cars: logistic path with half the cars electric in 2031 and a growth rate
    # of 0.4/year (10 % in 2025.5, 90 % in 2036.5): an assumption in line with the Brussels
    # low-emission zone (diesel out in 2030) and zero-emission company cars from 2026, not a forecast.
    "midpoint_year": 2031.0,
    "growth_per_year": 0.4,
    # Connection limit when the twin has none: today's largest flow (import or export) plus 20 %
    # (a connection is sized for both directions); LV cabin rating when
    # the twin has none: 160 kVA (the smallest standard cabin transformer) at power factor 0.95.
    "connection_headroom": 1.2,
    "lv_cabin_kva": 160.0,
    "power_factor": 0.95,
}


@dataclass(frozen=True, eq=False)
class DemoScenarioResult:
    """The 2030 demo comparison.

    Attributes
    ----------
    year : int
        The scenario year.
    n_evs : int
        EVs in that year; ``home_evs`` + ``work_evs``.
    fleet_size : int
        Cars charging in the community when all are electric.
    runs : list of ScenarioRun
        Today, uncontrolled, smart, PV-following and V2G.
    table : pandas.DataFrame
        KPIs side by side (rows :data:`METRICS`, columns the scenario names).
    assumptions : dict
        The assumptions used (:data:`DEMO_ASSUMPTIONS` and the limits).
    """

    year: int
    n_evs: int
    fleet_size: int
    home_evs: int
    work_evs: int
    runs: list[ScenarioRun]
    table: pd.DataFrame
    assumptions: dict[str, Any]


def _households_and_sockets(community: Community) -> tuple[int, float]:
    twin, tenant = community.twin, community.tenant
    members = twin.store.get_many(tenant, list(community.member_ids))
    building_ids = sorted({b for d in members.values() for b in attr_objects(d, "represents")})
    buildings = twin.store.get_many(tenant, building_ids) if building_ids else {}
    households = 0
    for doc in members.values():
        cats: set[str] = set()
        for b in attr_objects(doc, "represents"):
            cat = attr_value(buildings.get(b, {}), "category")
            cats |= {str(c) for c in (cat if isinstance(cat, list) else [cat])} if cat is not None else set()
        households += bool(cats & RESIDENTIAL)
    devices = member_devices(community)
    mixes = _charger_mix(community, devices)
    sockets = float(sum(n for _, n in mixes.get("work", ())))
    return households, sockets


def demo_specs(
    community: Community,
    year: int = 2030,
    *,
    assumptions: Mapping[str, float] | None = None,
    inputs_cache: dict[tuple[Any, ...], MobilityInputs] | None = None,
) -> tuple[list[ScenarioSpec], dict[str, Any]]:
    """The specs of the demo comparison and the figures they rest on (see :func:`run_demo_scenario`)."""
    a = {**DEMO_ASSUMPTIONS, **(assumptions or {})}
    households, sockets = _households_and_sockets(community)
    home_cars = round(a["cars_per_household"] * households)
    work_cars = round(a["cars_per_workplace_socket"] * sockets)
    fleet = home_cars + work_cars
    if fleet == 0:
        raise CommunityInputError(
            f"community {community.id} has no household and no workplace charger: no cars to electrify"
        )
    n = mob.ev_adoption(
        [year], fleet_size=fleet, midpoint_year=a["midpoint_year"], growth_per_year=a["growth_per_year"]
    )[year]
    home_evs = round(n * home_cars / fleet)
    work_evs = n - home_evs
    doc = community.twin.store.get(community.tenant, community.id) or {}
    cache = {} if inputs_cache is None else inputs_cache
    key = (None, None, None)
    if key not in cache:
        cache[key] = _read_inputs(community, None, None, None)
    net_today = cache[key].model.base_kw - cache[key].model.pv_kw
    peak_import = float(np.max(np.maximum(net_today, 0.0)))
    limits: dict[str, Any] = {"power_factor": a["power_factor"]}
    if _number(doc, SCENARIO_TERMS["connectionLimit"], community.id) is None:
        limits["connection_limit_kw"] = float(math.ceil(a["connection_headroom"] * np.max(np.abs(net_today))))
    if _number(doc, SCENARIO_TERMS["lvCabinLimit"], community.id) is None:
        limits["lv_cabin_limit_kva"] = a["lv_cabin_kva"]
    share = LocationShare(home=float(home_evs), work=float(work_evs), public=0.0) if n else None
    common: dict[str, Any] = {"year": year, "n_evs": n, "location_share": share, "seed": year, **limits}
    # Smart charging: no new peak (import kept at today's peak where the cars can) and within the
    # connection's headroom.
    smart: dict[str, Any] = {"import_cap_kw": round(peak_import, 3), "follow_connection_limit": True}
    specs = [
        ScenarioSpec(
            name="today",
            n_evs=0,
            **{k: v for k, v in common.items() if k not in ("year", "n_evs", "location_share")},
        ),
        ScenarioSpec(name=f"{year} uncontrolled", policy="uncontrolled", **common),
        ScenarioSpec(name=f"{year} smart", policy="earliest_deadline_first", **smart, **common),
        ScenarioSpec(name=f"{year} PV-following", policy="pv_following", **smart, **common),
        ScenarioSpec(name=f"{year} V2G", policy="vehicle_to_grid", **common),
    ]
    facts = {
        **a,
        "households": households,
        "workplace_sockets": sockets,
        "fleet_size": fleet,
        "n_evs": n,
        "home_evs": home_evs,
        "work_evs": work_evs,
        "peak_import_today_kw": peak_import,
        **limits,
    }
    return specs, facts


def run_demo_scenario(
    service: TwinService,
    community_id: str,
    year: int = 2030,
    *,
    tenant: str = "",
    series: SeriesStore | None = None,
    assumptions: Mapping[str, float] | None = None,
    write: bool = True,
    progress: Callable[[int, int, str], None] | None = None,
) -> DemoScenarioResult:
    """Evaluate the documented demo scenario of ``year`` for a community and write it to the twin.

    Five scenarios over the last year of readings: ``today`` (no added EV), ``<year>
    uncontrolled`` (full power on arrival), ``<year> smart`` (earliest-deadline-first keeping the
    import at today's peak where the cars can, within the connection's headroom), ``<year>
    PV-following`` (PV surplus first, same limits) and ``<year> V2G`` (cars as two-way batteries
    covering the community's deficit). The number of EVs
    follows :data:`DEMO_ASSUMPTIONS`: ``cars_per_household`` x residential members plus
    ``cars_per_workplace_socket`` x sockets of non-residential chargers, times the logistic EV
    share of ``year``; home EVs charge on the twin's residential chargers, the others at work.

    Parameters
    ----------
    service : TwinService
        The node's entities.
    community_id : str
        The ``EnergyCommunity``.
    year : int
        Scenario year.
    tenant : str
        NGSI-LD tenant.
    series : SeriesStore, optional
        The node's series (default: one on the service's engine).
    assumptions : mapping, optional
        Overrides of :data:`DEMO_ASSUMPTIONS`.
    write : bool
        Write the scenarios to the twin.
    progress : callable, optional
        ``progress(done, total, name)``.

    Returns
    -------
    DemoScenarioResult
    """
    store = series or SeriesStore(service.engine)
    community = load_community(service, store, community_id, tenant=tenant)
    cache: dict[tuple[Any, ...], MobilityInputs] = {}
    specs, facts = demo_specs(community, year, assumptions=assumptions, inputs_cache=cache)
    runs = run_scenarios(community, specs, write=write, series=store, progress=progress, inputs_cache=cache)
    table = mob.compare([r.result for r in runs]).reindex(list(METRICS))
    return DemoScenarioResult(
        year=year,
        n_evs=int(facts["n_evs"]),
        fleet_size=int(facts["fleet_size"]),
        home_evs=int(facts["home_evs"]),
        work_evs=int(facts["work_evs"]),
        runs=runs,
        table=table,
        assumptions=facts,
    )
