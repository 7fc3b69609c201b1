"""Tomorrow's flexibility schedule of a community in the twin, and its handover to the devices.

This use case builds the flexibility problem of one local delivery day from the twin, solves it with
:mod:`bright.energy.flex` (every member alone, the community as one, or both side by side), and writes
the result back as ``FlexibilitySchedule`` entities with power setpoints that the edge's S2 control
(:mod:`bright.edge.s2`) sends to the devices.

What the problem is made of
---------------------------
* **Members** are the community's ``EnergyProsumer``\\ s, one site each, named by entity id. Their fixed
  load is the median (``q50``) of the day's ``consumption`` forecast and their PV the median of the
  ``production`` forecast (:mod:`bright.services.forecasting`), kWh per quarter-hour / 0.25 h = kW. A
  member without a stored forecast for the day falls back to **persistence** (same local time on the
  last day known at D-1 12:00); ``forecast_source`` says which was used. A member's access point is
  limited by its ``contractedPower`` (kW) when set.
* **Devices** are the entities a member ``controls``:

  - ``Battery``: ``capacity`` (kWh), ``maxChargePower`` / ``maxDischargePower`` (kW, default half the
    capacity per hour), ``roundTripEfficiency`` (default 0.9, split sqrt/sqrt), ``stateOfCharge``
    (fraction, default :attr:`ScheduleSettings.battery_initial_soc`) as the initial state and, softly,
    as the state to end the day with; wear :attr:`ScheduleSettings.battery_wear_eur_per_kwh`.
  - ``EVChargingStation``: ``chargingPower`` (kW per socket) x ``numberOfSockets`` vehicles with a
    **default session profile** (the twin has no booking data): at a residential building (the
    charger's ``locatedIn`` building, else the member's, of category house / apartments / residential /
    social_housing) a car plugs in every day at 19:00 and leaves at 08:00 needing 11 kWh (the medians of
    the 3,850 overnight sessions of the bundled Trondheim data set: 19:06, 08:12, 11.4 kWh); elsewhere
    (school, office ...) a car stays 08:30-17:00 on working days needing 11 kWh. Sessions are cut at
    midnight, each part needing the energy in proportion to its plugged-in hours (the morning part of
    an overnight stay 8/13, the evening part 5/13), so each day charges its share; 60 kWh batteries,
    no V2G.
  - ``HeatPump``: ``power`` (kW electric) heating a **default first-order RC building** sized so that the
    pump holds 20 degC at the design outdoor temperature -8 degC (Uccle) with COP 2.5::

        UA = P_el * COP_design / (20 - (-8))   [kW/K],   R = 1 / UA,   C = tau / R  with tau = 40 h
        COP(T_out) = clip(2.5 + 0.1 (T_out + 8), 1.5, 5)

    comfort band 19-23 degC from 20.5 degC at midnight; the upper bound follows the free-floating
    temperature on warm days (the pump only heats). Outdoor temperature: the typical meteorological
    year of Brussels-Uccle mapped on the day (``bright.datasets.weather``), not a weather forecast.
  - ``PhotovoltaicDevice``: its kWp, tilt and azimuth shape the production forecast; the schedule may
    curtail it (inverter limitation), the setpoint is then the allowed production (negative kW).
* **Prices**: the Belgian day-ahead price (``bright.datasets.dayahead_prices``, EUR/kWh, hourly, held
  over its quarter-hours by local clock time). The bundled prices cover 2021-01-01 .. 2024-07-29; a day
  outside takes the prices of the **same ISO week and weekday of the latest year that has them** (weekly
  and seasonal shapes kept), which ``price_source`` names. Members import at day-ahead +
  :attr:`ScheduleSettings.import_adder_eur_per_kwh` (network, taxes, supplier margin) and feed in at
  day-ahead - :attr:`ScheduleSettings.feed_in_discount_eur_per_kwh`.
* **Community**: a connection limit on its net flow (``connectionLimitKw`` on the EnergyCommunity,
  BRIGHT IRI ``https://w3id.org/bright/ns#connectionLimitKw``, or the request's ``limit_kw``; none
  otherwise) and a sharing value per shared kWh (the community's ``networkChargeReduction`` for its
  tariff type, else 0.04 EUR/kWh).

Modes
-----
``individual``: every member optimises alone (no limit, no sharing value); ``community``: one problem
with the shared limit and sharing; ``compare``: both, the community schedule being the one written.

In the twin
-----------
One ``FlexibilitySchedule`` entity per device (``urn:ngsi-ld:FlexibilitySchedule:<device id tail>``)
with its setpoints as series ``powerKw`` (kW per quarter-hour, + = consumption / charging, - =
discharge / production) under datasetId ``urn:ngsi-ld:Dataset:schedule``, and the member's
value-stacking statement; one for the community (``...:EnergyCommunity:<id tail>``) with the planned
net import and shared power (series), the cost, the value stack per member and commitment, what could
not be met, and (compare) the individual-vs-community summary.

The handover to S2 is :func:`device_setpoints` (from a run) or :func:`stored_setpoints` (from the twin):
a ``pandas.Series`` of kW per 15-minute step per device entity, exactly what
``bright.edge.s2.CemSession.send_schedule`` takes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import holidays
import numpy as np
import pandas as pd

from bright import datasets
from bright.energy.flex.commitments import Commitment, energy_price, feed_in, sharing_value
from bright.energy.flex.community import (
    Community as FlexCommunity,
)
from bright.energy.flex.community import (
    CommunityComparison,
    compare_individual_and_community,
    schedule_community,
)
from bright.energy.flex.devices import Battery, ElectricVehicle, EVSession, GridConnection, HeatPump, PVSystem
from bright.energy.flex.problem import FlexInputError, ScheduleError, Site
from bright.energy.flex.solve import Schedule, schedule
from bright.energy.forecast.baselines import persistence
from bright.energy.forecast.features import day_ahead_issue_time, delivery_day_index
from bright.services.community import BRIGHT_NS, TERMS, Community, CommunityInputError, readings_span
from bright.services.forecasting import (
    attr_objects,
    attr_value,
    community_site,
    default_day,
    histories,
    is_type,
    member_devices,
    parse_day,
    stored_forecast,
)
from bright.twin.errors import InternalError
from bright.twin.series import SeriesStore
from bright.twin.vocabulary import bright_context

__all__ = [
    "MODES",
    "SCHEDULE_DATASET",
    "SCHEDULE_TERMS",
    "DeviceRef",
    "FlexSetup",
    "ScheduleRun",
    "ScheduleSettings",
    "build_flex_problem",
    "comparison_json",
    "dayahead_price",
    "default_ev_sessions",
    "device_setpoints",
    "heat_pump_building",
    "member_statement",
    "outdoor_temperature",
    "schedule_day",
    "schedule_entity_id",
    "stored_setpoints",
    "unmet_rows",
]

#: Scheduling modes.
MODES = ("individual", "community", "compare")
#: datasetId of the setpoint series on FlexibilitySchedule entities.
SCHEDULE_DATASET = "urn:ngsi-ld:Dataset:schedule"
STEP = pd.Timedelta(minutes=15)
DT_H = 0.25
RESIDENTIAL = frozenset({"house", "apartments", "residential", "social_housing"})
#: Sharing value when the community sets no network-charge reduction, EUR per shared kWh.
DEFAULT_SHARING_VALUE = 0.04


def _iri(term: str) -> str:
    return bright_context().expand(term)


#: Attributes of FlexibilitySchedule entities (BRIGHT namespace; not yet @context terms) and the
#: community's connection limit.
SCHEDULE_TERMS: dict[str, str] = {
    "power": _iri("power"),
    "netImport": BRIGHT_NS + "netImportKw",
    "shared": BRIGHT_NS + "sharedKw",
    "refDevice": BRIGHT_NS + "refDevice",
    "refMember": BRIGHT_NS + "refMember",
    "refEnergyCommunity": TERMS["refEnergyCommunity"],
    "deviceKind": BRIGHT_NS + "deviceKind",
    "mode": BRIGHT_NS + "scheduleMode",
    "status": BRIGHT_NS + "scheduleStatus",
    "deliveryDay": BRIGHT_NS + "deliveryDay",
    "validFrom": BRIGHT_NS + "validFrom",
    "validTo": BRIGHT_NS + "validTo",
    "issuedAt": BRIGHT_NS + "issuedAt",
    "energyKwh": BRIGHT_NS + "scheduledEnergyKwh",
    "productionKwh": BRIGHT_NS + "scheduledProductionKwh",
    "peakPowerKw": BRIGHT_NS + "scheduledPeakPowerKw",
    "valueEur": BRIGHT_NS + "valueEur",
    "costEur": BRIGHT_NS + "costEur",
    "penaltyEur": BRIGHT_NS + "penaltyEur",
    "objectiveEur": BRIGHT_NS + "objectiveEur",
    "valueStatement": BRIGHT_NS + "valueStatement",
    "valueStack": BRIGHT_NS + "valueStack",
    "unmet": BRIGHT_NS + "unmetRequests",
    "comparison": BRIGHT_NS + "individualVsCommunity",
    "forecastSource": BRIGHT_NS + "forecastSource",
    "priceSource": BRIGHT_NS + "priceSource",
    "connectionLimit": BRIGHT_NS + "connectionLimitKw",
}


@dataclass(frozen=True)
class ScheduleSettings:
    """Defaults of the scheduling problem where the twin says nothing (all documented in the module).

    Attributes
    ----------
    import_adder_eur_per_kwh : float
        Added to the day-ahead price for imported energy (network, taxes, margin), EUR/kWh.
    feed_in_discount_eur_per_kwh : float
        Taken off the day-ahead price for injected energy, EUR/kWh.
    sharing_value_eur_per_kwh : float or None
        Value of a shared kWh, EUR/kWh (None: the community's network-charge reduction, else 0.04).
    connection_limit_kw : float or None
        Community connection limit on the net flow, kW (None: the community's ``connectionLimitKw``).
    battery_wear_eur_per_kwh : float
        Battery wear per kWh charged plus discharged, EUR/kWh.
    battery_initial_soc : float
        State of charge at midnight when the battery entity has none, fraction of capacity.
    ev_capacity_kwh : float
        Battery of the default vehicles, kWh.
    ev_home_arrival_h, ev_home_departure_h, ev_home_kwh : float
        Residential overnight stay: plug-in and plug-out local hour, energy per stay (kWh).
    ev_work_arrival_h, ev_work_departure_h, ev_work_kwh : float
        Workplace stay on working days: local hours and energy (kWh).
    comfort_min_c, comfort_max_c, initial_indoor_c : float
        Heat-pump comfort band and indoor temperature at midnight, degC.
    hp_design_outdoor_c, hp_design_indoor_c, hp_design_cop, hp_time_constant_h : float
        Sizing of the default RC building (degC, degC, -, h).
    """

    import_adder_eur_per_kwh: float = 0.12
    feed_in_discount_eur_per_kwh: float = 0.01
    sharing_value_eur_per_kwh: float | None = None
    connection_limit_kw: float | None = None
    battery_wear_eur_per_kwh: float = 0.01
    battery_initial_soc: float = 0.5
    ev_capacity_kwh: float = 60.0
    ev_home_arrival_h: float = 19.0
    ev_home_departure_h: float = 8.0
    ev_home_kwh: float = 11.0
    ev_work_arrival_h: float = 8.5
    ev_work_departure_h: float = 17.0
    ev_work_kwh: float = 11.0
    comfort_min_c: float = 19.0
    comfort_max_c: float = 23.0
    initial_indoor_c: float = 20.5
    hp_design_outdoor_c: float = -8.0
    hp_design_indoor_c: float = 20.0
    hp_design_cop: float = 2.5
    hp_time_constant_h: float = 40.0

    def __post_init__(self) -> None:
        for key, value in self.__dict__.items():
            if value is not None and not math.isfinite(float(value)):
                raise CommunityInputError(f"schedule setting {key} must be finite, got {value}")
        if self.connection_limit_kw is not None and self.connection_limit_kw <= 0:
            raise CommunityInputError(f"limit_kw must be > 0, got {self.connection_limit_kw}")
        spread = self.import_adder_eur_per_kwh + self.feed_in_discount_eur_per_kwh
        if self.sharing_value_eur_per_kwh is not None and not 0 <= self.sharing_value_eur_per_kwh < spread:
            raise CommunityInputError(
                f"sharing value {self.sharing_value_eur_per_kwh} EUR/kWh must be within [0, {spread:g}) "
                "(import price minus feed-in price), or members would import and export at once"
            )
        if not 0.0 <= self.battery_initial_soc <= 1.0:
            raise CommunityInputError(
                f"battery_initial_soc must be within [0, 1], got {self.battery_initial_soc}"
            )


# --------------------------------------------------------------------------------------------------
# Inputs: prices, temperature, default device models
# --------------------------------------------------------------------------------------------------


def _local_day_bounds(day: date, tz: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    index = delivery_day_index(day, tz=tz)
    return index[0], index[-1] + STEP


def _covered(prices: pd.Series, day: date, tz: str) -> bool:
    lo, hi = _local_day_bounds(day, tz)
    part = prices.loc[(prices.index >= lo) & (prices.index < hi)]
    hours = round((hi - lo) / pd.Timedelta(hours=1))
    return len(part) == hours and not part.isna().any()


def _price_day(day: date, tz: str, prices: pd.Series) -> date:
    if _covered(prices, day, tz):
        return day
    _, week, weekday = day.isocalendar()
    first, last = prices.index[0].year, prices.index[-1].year
    for year in range(last, first - 1, -1):
        for w in (week, week - 1):  # week 53 exists only in some years
            try:
                candidate = date.fromisocalendar(year, w, weekday)
            except ValueError:
                continue
            if _covered(prices, candidate, tz):
                return candidate
    raise CommunityInputError(f"no day-ahead prices to map onto {day.isoformat()}")


def dayahead_price(day: Any, *, tz: str = "Europe/Brussels") -> tuple[pd.Series, str]:
    """The day-ahead price of every quarter-hour of a local day (EUR/kWh), and where it comes from.

    Parameters
    ----------
    day : str or date
        The local delivery day.
    tz : str
        Local clock of the day.

    Returns
    -------
    prices : pandas.Series
        EUR/kWh per quarter-hour (UTC starts, 92/96/100 steps): each hour's price over its four
        quarter-hours, matched by local clock time (a DST day takes the source day's hours by clock).
    source : str
        ``"day-ahead prices of 2024-03-05"``, and why when another day is used.

    Notes
    -----
    A day outside the bundled prices (2021-01-01 .. 2024-07-29) takes the same ISO week and weekday of
    the latest year with prices (week 52 for a week 53 the year lacks).
    """
    d = parse_day(day)
    prices = datasets.dayahead_prices()
    src = _price_day(d, tz, prices)
    lo, hi = _local_day_bounds(src, tz)
    part = prices.loc[(prices.index >= lo) & (prices.index < hi)]
    local = pd.DatetimeIndex(part.index).tz_convert(tz)
    by_hour: dict[int, float] = {}
    for h, v in zip(local.hour, part.to_numpy(), strict=True):
        by_hour.setdefault(int(h), float(v))  # the repeated autumn hour keeps its first price
    index = delivery_day_index(d, tz=tz)
    hours = index.tz_convert(tz).hour
    values = np.array([by_hour.get(int(h), by_hour.get(int(h) - 1, np.nan)) for h in hours], dtype=np.float64)
    if np.isnan(values).any():
        raise CommunityInputError(
            f"day-ahead prices of {src.isoformat()} miss a local hour of {d.isoformat()}"
        )
    note = (
        f"day-ahead prices of {src.isoformat()}"
        if src == d
        else f"day-ahead prices of {src.isoformat()} (same ISO week and weekday; the bundled prices cover "
        f"{prices.index[0].tz_convert(tz).date().isoformat()} .. "
        f"{prices.index[-1].tz_convert(tz).date().isoformat()})"
    )
    return pd.Series(values, index=index, name="price_eur_per_kwh"), note


def outdoor_temperature(index: pd.DatetimeIndex) -> np.ndarray:
    """Outdoor temperature per step (degC): the Brussels-Uccle typical year mapped on the steps' year."""
    years = sorted({int(y) for y in index.year})
    weather = pd.concat([datasets.weather(y)["temp_air_c"] for y in years]).sort_index()
    weather = weather[~weather.index.duplicated()]
    pos = weather.index.searchsorted(index, side="right") - 1
    return np.asarray(weather.to_numpy()[np.clip(pos, 0, None)], dtype=np.float64)


def heat_pump_building(power_kw: float, settings: ScheduleSettings) -> tuple[float, float]:
    """Resistance (K/kW) and capacitance (kWh/K) of the default building of a heat pump.

    ``UA = P * COP_design / (T_in - T_design)``, ``R = 1 / UA``, ``C = tau / R``: a 3 kW pump with COP 2.5
    at -8 degC for 20 degC inside gives UA = 7.5 / 28 = 0.268 kW/K, R = 3.733 K/kW, C = 40 / 3.733 =
    10.71 kWh/K.

    Parameters
    ----------
    power_kw : float
        Electric power of the pump, kW (> 0).
    settings : ScheduleSettings
        Design temperatures (degC), design COP and time constant (h).
    """
    if not power_kw > 0:
        raise CommunityInputError(f"heat pump power must be > 0 kW, got {power_kw}")
    ua = power_kw * settings.hp_design_cop / (settings.hp_design_indoor_c - settings.hp_design_outdoor_c)
    r = 1.0 / ua
    return r, settings.hp_time_constant_h / r


def _cop(t_out: np.ndarray, settings: ScheduleSettings) -> np.ndarray:
    return np.clip(settings.hp_design_cop + 0.1 * (t_out - settings.hp_design_outdoor_c), 1.5, 5.0)


def _comfort_max(t_out: np.ndarray, r: float, c: float, settings: ScheduleSettings) -> np.ndarray:
    """The upper comfort bound, raised to the free-floating temperature (+0.5 K) on warm days."""
    a = math.exp(-DT_H / (r * c))
    temp = settings.initial_indoor_c
    free = np.empty(len(t_out))
    for t, to in enumerate(t_out):
        temp = a * temp + (1.0 - a) * to
        free[t] = temp
    return np.maximum(settings.comfort_max_c, free + 0.5)


def _is_working_day(day: date) -> bool:
    return day.weekday() < 5 and day not in holidays.country_holidays("BE", years=day.year)


def default_ev_sessions(
    day: Any, *, residential: bool, tz: str = "Europe/Brussels", settings: ScheduleSettings | None = None
) -> list[EVSession]:
    """The default sessions of one charger socket on a local day, cut at midnight.

    Parameters
    ----------
    day : str or date
        Local delivery day.
    residential : bool
        Overnight stays at home (True) or working-day stays at a workplace (False).
    tz : str
        Local clock.
    settings : ScheduleSettings, optional
        Hours and energies (kWh per stay).

    Returns
    -------
    list of EVSession
        Residential: ``[00:00, 08:00)`` needing 11 x 8/13 = 6.77 kWh and ``[19:00, 24:00)`` needing
        11 x 5/13 = 4.23 kWh; workplace: ``[08:30, 17:00)`` needing 11 kWh on working days (Belgian
        holidays off), none otherwise.
    """
    s = settings or ScheduleSettings()
    d = parse_day(day)
    start, end = _local_day_bounds(d, tz)

    def at(hours: float) -> pd.Timestamp:
        """The local wall-clock time ``hours`` after midnight (right on DST days too), in UTC."""
        if hours >= 24:
            return end
        wall = pd.Timestamp(d) + pd.Timedelta(hours=hours)
        return wall.tz_localize(tz, ambiguous=True, nonexistent="shift_forward").tz_convert("UTC")

    if not residential:
        if not _is_working_day(d):
            return []
        return [EVSession(at(s.ev_work_arrival_h), at(s.ev_work_departure_h), s.ev_work_kwh)]
    stay_h = 24.0 - s.ev_home_arrival_h + s.ev_home_departure_h
    morning = s.ev_home_kwh * s.ev_home_departure_h / stay_h
    evening = s.ev_home_kwh * (24.0 - s.ev_home_arrival_h) / stay_h
    return [
        EVSession(start, at(s.ev_home_departure_h), morning),
        EVSession(at(s.ev_home_arrival_h), end, evening),
    ]


# --------------------------------------------------------------------------------------------------
# Building the problem from the twin
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceRef:
    """A device of the problem and the twin entity it schedules.

    Attributes
    ----------
    member_id : str
        The member (flex site name).
    device_id : str
        The device entity (Battery, EVChargingStation, HeatPump, PhotovoltaicDevice).
    names : tuple of str
        The flex device names that make it up (one per EV socket; empty when it has nothing to do
        that day, e.g. a workplace charger on a Sunday: its setpoint is then 0 kW).
    kind : str
        ``battery``, ``ev``, ``heat_pump`` or ``pv``.
    max_consumption_kw, max_production_kw : float
        Power limits of the device (kW), for checks and displays.
    share : float
        Share of the member's PV forecast this device carries (PV: kWp share; else 1).
    """

    member_id: str
    device_id: str
    names: tuple[str, ...]
    kind: str
    max_consumption_kw: float
    max_production_kw: float
    share: float = 1.0


@dataclass(frozen=True)
class FlexSetup:
    """The flexibility problem of a community's delivery day, built from the twin.

    Attributes
    ----------
    community : Community
        The community in the twin.
    day : datetime.date
        Local delivery day.
    tz : str
        Local clock.
    index : pandas.DatetimeIndex
        The day's quarter-hours (UTC starts).
    flex : bright.energy.flex.community.Community
        Members as flex sites (named by member id) with the shared terms.
    devices : tuple of DeviceRef
        Every scheduled device entity.
    prices : pandas.DataFrame
        ``dayahead``, ``import``, ``feed_in`` in EUR/kWh per step.
    price_source : str
        Where the day-ahead prices come from.
    forecast_source : dict of str to str
        Member -> ``forecast (<model>)`` or ``persistence``.
    connection_limit_kw : float
        Community limit (inf for none).
    sharing_value_eur_per_kwh : float
        Value of a shared kWh.
    """

    community: Community
    day: date
    tz: str
    index: pd.DatetimeIndex
    flex: FlexCommunity
    devices: tuple[DeviceRef, ...]
    prices: pd.DataFrame
    price_source: str
    forecast_source: dict[str, str]
    connection_limit_kw: float
    sharing_value_eur_per_kwh: float


def _number(doc: Mapping[str, Any], term: str, default: float | None, what: str) -> float | None:
    v = attr_value(doc, term)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise CommunityInputError(f"{what}: {term} is {v!r}; it must be a finite number")
    return float(v)


def _member_inputs(
    community: Community, day: date, tz: str, index: pd.DatetimeIndex, devices: Mapping[str, Sequence[Any]]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Base load and PV (kW per step) per member from the stored forecast, else persistence."""
    stored = stored_forecast(community, day=day, require=False)
    have = {(tf.target_id, tf.quantity): tf.forecast for tf in stored.forecasts if tf.level == "member"}
    wants_pv = {
        m: any(is_type(d, "PhotovoltaicDevice") for d in devices.get(m, [])) for m in community.member_ids
    }
    base: dict[str, np.ndarray] = {}
    pv: dict[str, np.ndarray] = {}
    source: dict[str, str] = {}
    missing: list[tuple[str, str]] = []
    for m in community.member_ids:
        labels = []
        for q, out in (("consumption", base), ("production", pv)):
            if q == "production" and not wants_pv[m]:
                continue
            f = have.get((m, q))
            if f is not None and not f.median.isna().any():
                out[m] = f.median.to_numpy(dtype=np.float64) / DT_H
                labels.append(f"{q}: forecast ({f.model})")
            else:
                missing.append((m, q))
        source[m] = "; ".join(labels)
    if missing:
        issue = day_ahead_issue_time(day, tz=tz)
        span = readings_span(community)
        if span is None or span[0] >= issue:
            m, q = missing[0]
            raise CommunityInputError(
                f"member {m} has no {q} forecast for {day.isoformat()} and no readings before "
                f"{issue.isoformat()} to fall back on"
            )
        start = max(span[0], (issue - pd.Timedelta(days=35)).floor(STEP))
        end = min(span[1], issue.floor(STEP))
        hist = histories(community, start, end, site=community_site(community), devices=devices)
        for m, q in missing:
            h = hist.get((m, q))
            f = persistence(h.values, issue, index, tz=tz, member=m) if h is not None else None
            if f is None or f.median.isna().any():
                t = index[int(np.flatnonzero(f.median.isna().to_numpy())[0])] if f is not None else index[0]
                raise CommunityInputError(
                    f"member {m}: no {q} forecast for {day.isoformat()} and persistence has no value for "
                    f"{t.isoformat()} (no reading of that clock time in the days before); POST a forecast first"
                )
            (base if q == "consumption" else pv)[m] = f.median.to_numpy(dtype=np.float64) / DT_H
            source[m] = "; ".join(x for x in (source[m], f"{q}: persistence") if x)
    return pd.DataFrame(base, index=index), pd.DataFrame(pv, index=index), source


def _building_category(
    twin_docs: Mapping[str, Any], device: Mapping[str, Any], member_doc: Mapping[str, Any]
) -> set[str]:
    for ref in (attr_objects(device, "locatedIn"), attr_objects(member_doc, "represents")):
        for b in ref:
            cat = attr_value(twin_docs.get(b, {}), "category")
            if cat is not None:
                return {str(c) for c in (cat if isinstance(cat, list) else [cat])}
    return set()


def build_flex_problem(
    community: Community, *, day: Any = None, settings: ScheduleSettings | None = None
) -> FlexSetup:
    """The flexibility problem of a delivery day from the twin (see the module docstring).

    Parameters
    ----------
    community : Community
        The community.
    day : str or date, optional
        Local delivery day; default the day after the readings (tomorrow in a live node).
    settings : ScheduleSettings, optional
        Defaults and overrides.

    Returns
    -------
    FlexSetup

    Raises
    ------
    CommunityInputError
        A device entity with a bad attribute, no forecast and no readings to fall back on, no prices.
    """
    s = settings or ScheduleSettings()
    site = community_site(community)
    tz = site.tz
    d = default_day(community, tz) if day is None else parse_day(day)
    index = delivery_day_index(d, tz=tz)
    devices = member_devices(community)
    base, pv, source = _member_inputs(community, d, tz, index, devices)
    price, price_source = dayahead_price(d, tz=tz)
    import_price = price.to_numpy() + s.import_adder_eur_per_kwh
    feed_in_price = price.to_numpy() - s.feed_in_discount_eur_per_kwh
    twin, tenant = community.twin, community.tenant
    member_docs = twin.store.get_many(tenant, list(community.member_ids))
    buildings = {b for doc in devices.values() for dev in doc for b in attr_objects(dev, "locatedIn")}
    buildings |= {b for doc in member_docs.values() for b in attr_objects(doc, "represents")}
    building_docs = twin.store.get_many(tenant, sorted(buildings)) if buildings else {}
    t_out = outdoor_temperature(index)
    sites: list[Site] = []
    refs: list[DeviceRef] = []
    for m in community.member_ids:
        who = f"member {m}"
        flex_devices: list[Any] = []
        pv_devices = [dev for dev in devices[m] if is_type(dev, "PhotovoltaicDevice")]
        for dev in devices[m]:
            did = dev["id"]
            what = f"{who} device {did}"
            if is_type(dev, "Battery"):
                cap = _number(dev, "capacity", None, what)
                if cap is None or cap <= 0:
                    raise CommunityInputError(f"{what}: a Battery needs a capacity > 0 kWh")
                p_c = _number(dev, "maxChargePower", cap / 2, what) or cap / 2
                p_d = _number(dev, "maxDischargePower", cap / 2, what) or cap / 2
                rte = _number(dev, "roundTripEfficiency", 0.9, what) or 0.9
                soc = _number(dev, "stateOfCharge", s.battery_initial_soc, what)
                eta = math.sqrt(rte)
                initial = cap * float(soc if soc is not None else s.battery_initial_soc)
                flex_devices.append(
                    Battery(
                        did, cap, p_c, p_d, eta, eta,
                        initial_soc_kwh=initial, target_soc_kwh=initial,
                        degradation_eur_per_kwh=s.battery_wear_eur_per_kwh,
                    )
                )  # fmt: skip
                refs.append(DeviceRef(m, did, (did,), "battery", p_c, p_d))
            elif is_type(dev, "EVChargingStation"):
                power = _number(dev, "chargingPower", None, what)
                if power is None or power <= 0:
                    raise CommunityInputError(f"{what}: an EVChargingStation needs a chargingPower > 0 kW")
                sockets = int(_number(dev, "numberOfSockets", 1.0, what) or 1)
                residential = bool(
                    _building_category(building_docs, dev, member_docs.get(m, {})) & RESIDENTIAL
                )
                sessions = default_ev_sessions(d, residential=residential, tz=tz, settings=s)
                names: list[str] = []
                if sessions:
                    for k in range(sockets):
                        name = did if sockets == 1 else f"{did}#socket{k + 1}"
                        names.append(name)
                        flex_devices.append(ElectricVehicle(name, s.ev_capacity_kwh, power, sessions))
                refs.append(DeviceRef(m, did, tuple(names), "ev", power * sockets, 0.0))
            elif is_type(dev, "HeatPump"):
                power = _number(dev, "power", None, what)
                if power is None or power <= 0:
                    raise CommunityInputError(f"{what}: a HeatPump needs a power > 0 kW")
                r, c = heat_pump_building(power, s)
                flex_devices.append(
                    HeatPump(
                        did, power, _cop(t_out, s), r, c, t_out, s.initial_indoor_c,
                        comfort_min_c=s.comfort_min_c, comfort_max_c=_comfort_max(t_out, r, c, s),
                    )
                )  # fmt: skip
                refs.append(DeviceRef(m, did, (did,), "heat_pump", power, 0.0))
        if pv_devices and m in pv.columns:
            kwp = np.array([float(attr_value(dev, "peakPower") or 0.0) for dev in pv_devices])
            shares = kwp / kwp.sum() if kwp.sum() > 0 else np.full(len(kwp), 1.0 / len(kwp))
            name = pv_devices[0]["id"]
            flex_devices.append(PVSystem(name, pv[m].clip(lower=0.0).to_numpy(), curtailable=True))
            for dev, share in zip(pv_devices, shares, strict=True):
                refs.append(
                    DeviceRef(m, dev["id"], (name,), "pv", 0.0, float(kwp.sum() * share), share=float(share))
                )
        contracted = _number(member_docs.get(m, {}), "contractedPower", None, who)
        connection = GridConnection(contracted, contracted) if contracted else None
        commitments: tuple[Commitment, ...] = (energy_price(import_price), feed_in(feed_in_price))
        try:
            sites.append(Site(m, base[m].to_numpy(), tuple(flex_devices), connection, commitments))
        except FlexInputError as exc:
            raise CommunityInputError(str(exc)) from None
    limit = s.connection_limit_kw
    if limit is None:
        doc = twin.store.get(tenant, community.id) or {}
        limit = _number(doc, SCHEDULE_TERMS["connectionLimit"], None, f"community {community.id}")
        if limit is not None and limit <= 0:
            raise CommunityInputError(f"connectionLimitKw of {community.id} is {limit}; it must be > 0")
    limit_kw = math.inf if limit is None else float(limit)
    share_value = s.sharing_value_eur_per_kwh
    if share_value is None:
        reduction = community.network_reduction_eur_per_kwh.get(community.group_type)
        share_value = DEFAULT_SHARING_VALUE if reduction is None else float(reduction)
    spread = s.import_adder_eur_per_kwh + s.feed_in_discount_eur_per_kwh
    share_value = min(share_value, 0.99 * spread)
    flex = FlexCommunity(
        community.id, sites, import_limit_kw=limit_kw, export_limit_kw=limit_kw,
        commitments=(sharing_value(share_value),),
    )  # fmt: skip
    prices = pd.DataFrame(
        {"dayahead": price.to_numpy(), "import": import_price, "feed_in": feed_in_price}, index=index
    )
    return FlexSetup(
        community, d, tz, index, flex, tuple(refs), prices, price_source, source, limit_kw, share_value
    )


# --------------------------------------------------------------------------------------------------
# Solving
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleRun:
    """A community's schedule for a delivery day.

    Attributes
    ----------
    setup : FlexSetup
        The problem.
    mode : str
        ``individual``, ``community`` or ``compare``.
    schedules : dict of str to Schedule
        ``{"community": joint schedule}`` (community, compare) or one schedule per member id
        (individual).
    comparison : CommunityComparison or None
        Individual vs community (compare).
    status : str
        ``optimal``, ``relaxed`` (something could not be met: see ``unmet``) or ``time_limit``.
    cost_eur, penalty_eur : float
        Money of the adopted schedule and penalties of what was not met, EUR.
    statement : pandas.DataFrame
        Value stacking: ``member``, ``item``, ``kind``, ``quantity``, ``reference_eur``,
        ``optimal_eur``, ``value_eur``.
    unmet : pandas.DataFrame
        What was not met and by how much.
    flows : pandas.DataFrame
        Community flows per step in kW: ``import_kw``, ``export_kw``, ``net_import_kw``, ``shared_kw``
        (sum over members; shared = min(import, export)).
    entities : tuple of str
        FlexibilitySchedule entities written.
    series_written : int
        Values written.
    solve_time_s, elapsed_s : float
        Time in HiGHS and for the whole run, s.
    """

    setup: FlexSetup
    mode: str
    schedules: dict[str, Schedule]
    comparison: CommunityComparison | None
    status: str
    cost_eur: float
    penalty_eur: float
    statement: pd.DataFrame
    unmet: pd.DataFrame
    flows: pd.DataFrame
    entities: tuple[str, ...] = ()
    series_written: int = 0
    solve_time_s: float = 0.0
    elapsed_s: float = 0.0

    def member_schedule(self, member_id: str) -> Schedule:
        """The schedule holding a member (the joint one, or the member's own)."""
        return self.schedules.get("community") or self.schedules[member_id]

    def value_stack(self) -> pd.DataFrame:
        """Value (EUR) per member (rows) and commitment (columns), with totals."""
        table = self.statement.pivot_table(
            index="member", columns="item", values="value_eur", aggfunc="sum", fill_value=0.0
        )
        table["total"] = table.sum(axis=1)
        table.loc["total"] = table.sum(axis=0)
        return table


def _flows(setup: FlexSetup, schedules: Mapping[str, Schedule]) -> pd.DataFrame:
    imp = np.zeros(len(setup.index))
    exp = np.zeros(len(setup.index))
    for m in setup.community.member_ids:
        sched = schedules.get("community") or schedules[m]
        imp += sched.sites[m]["import_kw"].to_numpy()
        exp += sched.sites[m]["export_kw"].to_numpy()
    return pd.DataFrame(
        {"import_kw": imp, "export_kw": exp, "net_import_kw": imp - exp, "shared_kw": np.minimum(imp, exp)},
        index=setup.index,
    )


def schedule_day(
    community: Community,
    *,
    day: Any = None,
    mode: str = "community",
    settings: ScheduleSettings | None = None,
    write: bool = True,
    time_limit_s: float = 60.0,
) -> ScheduleRun:
    """Schedule a community's delivery day and (``write``) store it in the twin.

    Parameters
    ----------
    community : Community
        The community.
    day : str or date, optional
        Local delivery day; default the day after the readings (tomorrow in a live node).
    mode : str
        ``individual``, ``community`` or ``compare`` (the community schedule is the one written).
    settings : ScheduleSettings, optional
        Defaults and overrides (connection limit, prices, device defaults).
    write : bool
        Write the FlexibilitySchedule entities and their setpoint series.
    time_limit_s : float
        HiGHS time limit per solve, s.

    Returns
    -------
    ScheduleRun

    Raises
    ------
    CommunityInputError
        Unknown mode, bad device attributes, no inputs for a member.
    InternalError
        The solver failed.
    """
    t0 = time.perf_counter()
    if mode not in MODES:
        raise CommunityInputError(f"mode {mode!r} is unknown; use one of {', '.join(MODES)}")
    setup = build_flex_problem(community, day=day, settings=settings)
    comparison: CommunityComparison | None = None
    try:
        if mode == "community":
            schedules = {"community": schedule_community(setup.index, setup.flex, time_limit_s=time_limit_s)}
        elif mode == "individual":
            schedules = {
                m.name: schedule(setup.index, m, time_limit_s=time_limit_s) for m in setup.flex.members
            }
        else:
            comparison = compare_individual_and_community(setup.index, setup.flex, time_limit_s=time_limit_s)
            schedules = {"community": comparison.joint}
    except FlexInputError as exc:
        raise CommunityInputError(f"community {community.id}: {exc}") from None
    except ScheduleError as exc:
        raise InternalError(f"community {community.id}: the schedule could not be solved: {exc}") from None
    parts = list(schedules.values())
    statement = pd.concat([p.statement for p in parts], ignore_index=True)
    unmet = (
        pd.concat([p.unmet for p in parts], ignore_index=True)
        if any(len(p.unmet) for p in parts)
        else parts[0].unmet
    )
    statuses = {p.status for p in parts}
    status = next((x for x in ("time_limit", "relaxed") if x in statuses), "optimal")
    run = ScheduleRun(
        setup=setup,
        mode=mode,
        schedules=schedules,
        comparison=comparison,
        status=status,
        cost_eur=float(sum(p.cost_eur for p in parts)),
        penalty_eur=float(sum(p.penalty_eur for p in parts)),
        statement=statement,
        unmet=unmet,
        flows=_flows(setup, schedules),
        solve_time_s=float(sum(p.solve_time_s for p in parts)),
    )
    entities: tuple[str, ...] = ()
    written = 0
    if write:
        entities, written = _write(run)
    return ScheduleRun(
        **{
            **run.__dict__,
            "entities": entities,
            "series_written": written,
            "elapsed_s": time.perf_counter() - t0,
        }
    )


# --------------------------------------------------------------------------------------------------
# Handover to the devices (S2) and writing to the twin
# --------------------------------------------------------------------------------------------------


def device_setpoints(run: ScheduleRun) -> dict[str, pd.Series]:
    """Power setpoints per device entity: the handover to the edge's S2 control.

    Parameters
    ----------
    run : ScheduleRun
        A schedule.

    Returns
    -------
    dict of str to pandas.Series
        Device entity id -> kW per 15-minute step (float, no NaN), indexed by the step starts (UTC,
        tz-aware, increasing), named by the entity id; + = consumption / charging, - = discharge /
        production. A battery gets ``charge - discharge``; an EV charger the sum over its sockets; a
        heat pump its electric power; a PV device minus its allowed production (its kWp share of the
        member's PV) -- a curtailment limit. This is what
        ``bright.edge.s2.CemSession.send_schedule(schedule_kw)`` takes.
    """
    out: dict[str, pd.Series] = {}
    index = run.setup.index.rename("time")
    for ref in run.setup.devices:
        sched = run.member_schedule(ref.member_id)
        frames = sched.devices[ref.member_id]
        total = np.zeros(len(index))
        for name in ref.names:
            f = frames[name]
            if ref.kind == "pv":
                total += -f["generation_kw"].to_numpy() * ref.share
            else:
                total += f["power_kw"].to_numpy()
        total = np.where(np.abs(total) < 1e-9, 0.0, total)
        out[ref.device_id] = pd.Series(total, index=index, name=ref.device_id, dtype="float64")
    return out


def schedule_entity_id(entity_id: str) -> str:
    """Id of the FlexibilitySchedule entity of a device or community.

    ``urn:ngsi-ld:Battery:c1:home03`` gives ``urn:ngsi-ld:FlexibilitySchedule:Battery:c1:home03``.
    """
    tail = entity_id[len("urn:ngsi-ld:") :] if entity_id.startswith("urn:ngsi-ld:") else entity_id
    return f"urn:ngsi-ld:FlexibilitySchedule:{tail}"


def stored_setpoints(
    series: SeriesStore, device_id: str, start: Any, end: Any, *, tenant: str = ""
) -> pd.Series:
    """The setpoints of a device as stored in the twin (kW per step over ``[start, end)``).

    Parameters
    ----------
    series : SeriesStore
        The node's series.
    device_id : str
        The device entity (Battery, EVChargingStation, HeatPump, PhotovoltaicDevice).
    start, end : pandas.Timestamp or ISO 8601 string with a zone
        Period (UTC bounds).
    tenant : str
        NGSI-LD tenant.

    Returns
    -------
    pandas.Series
        kW per step (UTC starts), named by the device id; empty when nothing is scheduled. The
        series ``powerKw``/``urn:ngsi-ld:Dataset:schedule`` of its FlexibilitySchedule entity.
    """
    eid = schedule_entity_id(device_id)
    frame = series.read(eid, SCHEDULE_TERMS["power"], start, end, tenant=tenant, dataset_id=SCHEDULE_DATASET)
    return frame[eid].dropna().rename(device_id)


def _iso(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _prop(value: Any, unit: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "Property", "value": value}
    if unit:
        out["unitCode"] = unit
    return out


def _round(v: Any) -> float:
    return round(float(v), 6)


def member_statement(run: ScheduleRun, member_id: str) -> dict[str, dict[str, float]]:
    """A member's value-stacking statement: item -> reference, optimal and value (EUR)."""
    rows = run.statement[run.statement["member"] == member_id]
    return {
        str(r.item): {
            "reference_eur": _round(r.reference_eur),
            "optimal_eur": _round(r.optimal_eur),
            "value_eur": _round(r.value_eur),
        }
        for r in rows.itertuples()
    }


def _value_stack_json(run: ScheduleRun) -> dict[str, dict[str, float]]:
    table = run.value_stack()
    return {str(m): {str(k): _round(v) for k, v in row.items()} for m, row in table.iterrows()}


def unmet_rows(run: ScheduleRun) -> list[dict[str, Any]]:
    """What could not be met, as JSON-ready rows (time in ISO 8601 UTC)."""
    rows = []
    for r in run.unmet.itertuples():
        rows.append(
            {
                "member": str(r.member),
                "item": str(r.item),
                "constraint": str(r.constraint),
                "time": _iso(r.time) if isinstance(r.time, pd.Timestamp) else str(r.time),
                "shortfall": _round(r.shortfall),
                "unit": str(r.unit),
                "penalty_eur": _round(r.penalty_eur),
            }
        )
    return rows


def comparison_json(run: ScheduleRun) -> dict[str, Any] | None:
    """The individual-vs-community comparison (compare mode) as JSON-ready dicts."""
    if run.comparison is None:
        return None
    summary = run.comparison.summary
    members = run.comparison.members
    return {
        "summary": {str(i): {str(k): _round(v) for k, v in row.items()} for i, row in summary.iterrows()},
        "members": {str(i): {str(k): _round(v) for k, v in row.items()} for i, row in members.iterrows()},
    }


def _write(run: ScheduleRun) -> tuple[tuple[str, ...], int]:
    setup = run.setup
    community = setup.community
    st = SCHEDULE_TERMS
    issued = _iso(pd.Timestamp.now(tz="UTC"))
    common = {
        st["refEnergyCommunity"]: {"type": "Relationship", "object": community.id},
        st["mode"]: _prop(run.mode),
        st["status"]: _prop(run.status),
        st["deliveryDay"]: _prop(setup.day.isoformat()),
        st["validFrom"]: _prop(_iso(setup.index[0])),
        st["validTo"]: _prop(_iso(setup.index[-1] + STEP)),
        st["issuedAt"]: _prop(issued),
        st["priceSource"]: _prop(setup.price_source),
    }
    setpoints = device_setpoints(run)
    entities: list[dict[str, Any]] = []
    for ref in setup.devices:
        p = setpoints[ref.device_id].to_numpy()
        member_rows = member_statement(run, ref.member_id)
        entities.append(
            {
                "id": schedule_entity_id(ref.device_id),
                "type": "FlexibilitySchedule",
                "name": _prop(f"Schedule of {ref.device_id} for {setup.day.isoformat()}"),
                st["refDevice"]: {"type": "Relationship", "object": ref.device_id},
                st["refMember"]: {"type": "Relationship", "object": ref.member_id},
                st["deviceKind"]: _prop(ref.kind),
                **common,
                st["energyKwh"]: _prop(_round(float(np.clip(p, 0.0, None).sum() * DT_H)), "KWH"),
                st["productionKwh"]: _prop(_round(float(np.clip(-p, 0.0, None).sum() * DT_H) + 0.0), "KWH"),
                st["peakPowerKw"]: _prop(_round(float(np.abs(p).max()) if len(p) else 0.0), "KWT"),
                st["valueEur"]: _prop(_round(sum(r["value_eur"] for r in member_rows.values()))),
                st["valueStatement"]: _prop(member_rows or {"none": {"value_eur": 0.0}}),
                st["forecastSource"]: _prop(setup.forecast_source.get(ref.member_id) or "-"),
            }
        )
    community_entity: dict[str, Any] = {
        "id": schedule_entity_id(community.id),
        "type": "FlexibilitySchedule",
        "name": _prop(f"Community schedule of {community.id} for {setup.day.isoformat()}"),
        **common,
        st["costEur"]: _prop(_round(run.cost_eur)),
        st["penaltyEur"]: _prop(_round(run.penalty_eur)),
        st["objectiveEur"]: _prop(_round(run.cost_eur + run.penalty_eur)),
        st["valueStack"]: _prop(_value_stack_json(run)),
        st["unmet"]: _prop({"count": len(run.unmet), "rows": unmet_rows(run)}),
    }
    if math.isfinite(setup.connection_limit_kw):
        community_entity[st["connectionLimit"]] = _prop(setup.connection_limit_kw, "KWT")
    comparison = comparison_json(run)
    if comparison is not None:
        community_entity[st["comparison"]] = _prop(comparison)
    entities.append(community_entity)
    res = community.twin.batch_upsert(community.tenant, entities, bright_context())
    if res["errors"]:
        first = res["errors"][0]
        raise InternalError(
            f"FlexibilitySchedule entity {first['entityId']} was rejected: {first['error'].get('detail')}"
        )
    frames = [
        pd.DataFrame(
            {
                "entity_id": schedule_entity_id(dev),
                "time": s.index,
                "value": s.to_numpy(),
                "attribute": st["power"],
            }
        )
        for dev, s in setpoints.items()
    ]
    cid = schedule_entity_id(community.id)
    for col, term in (("net_import_kw", "netImport"), ("shared_kw", "shared")):
        frames.append(
            pd.DataFrame(
                {
                    "entity_id": cid,
                    "time": setup.index,
                    "value": run.flows[col].to_numpy(),
                    "attribute": st[term],
                }
            )
        )
    result = community.series.write(
        pd.concat(frames, ignore_index=True),
        tenant=community.tenant,
        dataset_id=SCHEDULE_DATASET,
        unit_code="KWT",
    )
    return tuple(res["success"]), result.values
