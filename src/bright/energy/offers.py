"""Service offers around a member's flexibility: terms, bundle valuation, revenue sharing, ranking.

Providers (an ESCO, a demand-response aggregator, an e-mobility manager, a care/AAL operator, a
security operator, the community itself) publish :class:`Offer` terms: what the member gets, which data
streams they need (purpose, retention), which devices they may control and when, the comfort bounds
they guarantee, their price or revenue share, and the contract duration.

:func:`evaluate_bundles` values bundles of offers for one member over a year at the resolution of
the member's series (15 min) with the flexibility optimiser (:mod:`bright.energy.flex`):

* every offer of a bundle adds its commitments (value streams) and control rights to **one** model of
  the home, so the optimiser decides how the devices serve all of them together;
* **the same kW is never sold twice**: a reserve product is sold, per step, to one offer only (the one
  paying the member most); its kW are held back from energy use by the model's headroom rows
  (``discharge - charge + reserve <= P``) and capped by the offer's ``reserved_kw``; a device moves
  away from its reference behaviour only in the windows of an offer holding an energy control right;
* **care and comfort constraints always win**: a bundle's comfort minimum (heat pump) and backup
  energy (battery) are the strictest of its offers', in the optimal schedule and in the reference;
* each offer's value in a bundle is its stream revenue (member part), its share of the tariff savings
  from flexibility (pro rata to the flexibility its control rights moved), its reference shift
  (insulation saves, a warmer comfort band costs), its declared benefit and minus its fee; the offers'
  values add up to the bundle's value exactly;
* **a bundle is worth at least its best single offer**: when the joint plan is worth less than an
  offer alone (a fee larger than what an offer adds, a care constraint that costs flexibility), the
  evaluation falls back to the better plan and names the offers to leave out.

Pure computation: numpy, pandas and HiGHS through the flexibility model builder; no I/O.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bright.energy.flex.commitments import energy_price, feed_in, reserve_capacity
from bright.energy.flex.devices import Battery, ElectricVehicle, EVSession, GridConnection, HeatPump, PVSystem
from bright.energy.flex.problem import (
    BuildContext,
    FlexInputError,
    FloatArray,
    Penalties,
    Site,
    build_problem,
    horizon_step_h,
    site_quantities,
)

__all__ = [
    "DEVICE_KINDS",
    "FEATURES",
    "PROVIDER_KINDS",
    "STREAM_KINDS",
    "BuildingUpgrade",
    "BundleComparison",
    "BundleEvaluation",
    "ComfortBound",
    "ControlRight",
    "DataNeed",
    "MemberHome",
    "Offer",
    "OfferError",
    "OfferRecommendation",
    "OfferValue",
    "PlanResult",
    "RevenueSplit",
    "ValueStream",
    "evaluate_bundle",
    "evaluate_bundles",
    "pooled_reserve_game",
    "recommend_offers",
    "shapley_values",
    "split_fixed",
    "split_pro_rata",
    "split_revenue",
]

PROVIDER_KINDS = (
    "esco",
    "dr_aggregator",
    "emobility_manager",
    "care_operator",
    "security_operator",
    "community",
)
DEVICE_KINDS = ("battery", "ev", "heat_pump")
STREAM_KINDS = ("reserve", "export_bonus", "self_consumption_bonus")
FEATURES = (
    "automation_with_override",
    "bill_protection",
    "comfort_guarantee",
    "low_carbon",
    "community_benefit",
    "minimal_data",
    "care",
)
_ID = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S+$")
_TOL = 1e-6


class OfferError(ValueError):
    """Invalid offer terms or member data; the message names the offer and the field."""


def _finite(value: float, what: str, *, minimum: float | None = 0.0, maximum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise OfferError(f"{what}: expected a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise OfferError(f"{what}: must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise OfferError(f"{what}: must be <= {maximum}, got {value}")
    return float(value)


# --------------------------------------------------------------------------------------------------
# Offer terms
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataNeed:
    """A data stream the provider needs.

    Attributes
    ----------
    stream
        What is read: ``offtake``, ``injection`` (smart-meter registers), ``battery``, ``ev``,
        ``heat_pump`` (device telemetry), or a sensor stream (``motion``, ``door_contact`` ...).
    purpose
        Why, in words (shown to the member and written into the consent).
    retention_days
        How long the provider may keep the data, days (> 0).
    resolution_min
        Time resolution the provider receives, minutes.
    """

    stream: str
    purpose: str
    retention_days: int
    resolution_min: int = 15

    def __post_init__(self) -> None:
        if not re.match(r"^[a-z][a-z0-9_]*$", self.stream or ""):
            raise OfferError(f"data need: stream {self.stream!r} must be a lower-case identifier")
        if not self.purpose or not self.purpose.strip():
            raise OfferError(f"data need {self.stream!r}: purpose is required")
        for name in ("retention_days", "resolution_min"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise OfferError(f"data need {self.stream!r}: {name} must be a positive integer, got {v!r}")


@dataclass(frozen=True)
class ControlRight:
    """A right to control one device of the member in a daily window (local time).

    Attributes
    ----------
    device
        ``battery``, ``ev`` or ``heat_pump``.
    start_hour, end_hour
        Window ``[start_hour, end_hour)`` on the member's local clock (0-24); a window with
        ``end_hour <= start_hour`` wraps past midnight (18 -> 7). ``0, 24`` is all day. Heat-pump
        rights cover whole days (the building's temperature couples the hours).
    reserved_kw
        For a capacity reservation (a reserve product): the kW of the device held for the offer in the
        window, removed from every other use. None: an energy control right (the device may be
        scheduled to follow prices within the window).
    """

    device: str
    start_hour: int = 0
    end_hour: int = 24
    reserved_kw: float | None = None

    def __post_init__(self) -> None:
        if self.device not in DEVICE_KINDS:
            raise OfferError(f"control right: device {self.device!r} is not one of {', '.join(DEVICE_KINDS)}")
        for name in ("start_hour", "end_hour"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 24:
                raise OfferError(f"control right on {self.device}: {name} must be an integer 0-24, got {v!r}")
        if self.start_hour == self.end_hour or (self.start_hour, self.end_hour) == (24, 0):
            raise OfferError(f"control right on {self.device}: the window is empty")
        if self.device == "heat_pump" and not self.whole_day:
            raise OfferError("control right on heat_pump: the window must be the whole day (0-24)")
        if self.reserved_kw is not None:
            _finite(self.reserved_kw, f"control right on {self.device}: reserved_kw")
            if self.device != "battery":
                raise OfferError(f"control right on {self.device}: only a battery takes a reserved_kw")

    @property
    def whole_day(self) -> bool:
        """Whether the window covers the 24 hours."""
        return (self.start_hour % 24) == (self.end_hour % 24)

    def active(self, local_hours: FloatArray) -> np.ndarray:
        """Boolean mask of the steps (given by their local hour of day, fractional) inside the window."""
        if self.whole_day:
            return np.ones(len(local_hours), dtype=bool)
        s, e = self.start_hour, self.end_hour
        if s < e:
            return (local_hours >= s) & (local_hours < e)
        return (local_hours >= s) | (local_hours < e)

    def describe(self) -> str:
        """``battery 00-24h, 3 kW reserved``."""
        span = "all day" if self.whole_day else f"{self.start_hour:02d}-{self.end_hour:02d}h"
        extra = f", {self.reserved_kw:g} kW reserved" if self.reserved_kw is not None else ""
        return f"{self.device} {span}{extra}"


@dataclass(frozen=True)
class ComfortBound:
    """A care or comfort constraint the offer guarantees (it wins over every other offer).

    Attributes
    ----------
    device
        ``heat_pump`` (indoor temperature, degC) or ``battery`` (backup energy kept, kWh).
    minimum
        Lowest indoor temperature (degC) or the energy the battery always keeps (kWh).
    maximum
        Highest indoor temperature (degC), heat pump only; None: the home's own.
    """

    device: str
    minimum: float
    maximum: float | None = None

    def __post_init__(self) -> None:
        if self.device not in ("heat_pump", "battery"):
            raise OfferError(f"comfort bound: device {self.device!r} must be heat_pump or battery")
        _finite(self.minimum, f"comfort bound on {self.device}: minimum", minimum=None)
        if self.maximum is not None:
            if self.device != "heat_pump":
                raise OfferError("comfort bound on battery: no maximum (the minimum is the backup energy)")
            if _finite(self.maximum, "comfort bound on heat_pump: maximum", minimum=None) < self.minimum:
                raise OfferError("comfort bound on heat_pump: maximum below minimum")
        if self.device == "battery" and self.minimum < 0:
            raise OfferError("comfort bound on battery: the backup energy must be >= 0 kWh")


@dataclass(frozen=True)
class ValueStream:
    """A way the offer earns money with the member's flexibility.

    Attributes
    ----------
    kind
        ``reserve`` (availability payment for holding battery power, e.g. FCR: ``price`` EUR/kW/h),
        ``export_bonus`` (EUR/kWh paid on top of the feed-in price for injected energy, e.g. shared in
        the community) or ``self_consumption_bonus`` (EUR/kWh of on-site generation not injected).
    price
        Gross price paid for the stream (before the provider's share), EUR/kW/h or EUR/kWh.
    direction
        Reserve only: ``symmetric`` (FCR), ``up`` or ``down``.
    duration_h
        Reserve only: hours of full activation the battery must hold in energy (0.25 for FCR).
    block_steps
        Reserve only: steps over which the reservation is constant (16 = 4-h FCR blocks at 15 min).
    """

    kind: str
    price: float
    direction: str = "symmetric"
    duration_h: float = 0.25
    block_steps: int = 16

    def __post_init__(self) -> None:
        if self.kind not in STREAM_KINDS:
            raise OfferError(f"value stream: kind {self.kind!r} is not one of {', '.join(STREAM_KINDS)}")
        _finite(self.price, f"value stream {self.kind}: price")
        if self.direction not in ("symmetric", "up", "down"):
            raise OfferError(
                f"value stream {self.kind}: direction {self.direction!r} is not symmetric, up or down"
            )
        _finite(self.duration_h, f"value stream {self.kind}: duration_h")
        if (
            isinstance(self.block_steps, bool)
            or not isinstance(self.block_steps, int)
            or self.block_steps < 1
        ):
            raise OfferError(f"value stream {self.kind}: block_steps must be an integer >= 1")

    @property
    def quantity(self) -> str:
        """The flexibility-model quantity the stream prices."""
        if self.kind == "reserve":
            return f"reserve_{self.direction}"
        return "export" if self.kind == "export_bonus" else "self_consumption"


@dataclass(frozen=True)
class BuildingUpgrade:
    """Works an ESCO carries out: better insulation and/or a more efficient heat pump.

    Attributes
    ----------
    resistance_factor
        Factor (>= 1) on the building's thermal resistance (insulation lowers the losses 1/R).
    cop_factor
        Factor (> 0) on the heat pump's COP.
    """

    resistance_factor: float = 1.0
    cop_factor: float = 1.0

    def __post_init__(self) -> None:
        _finite(self.resistance_factor, "upgrade: resistance_factor", minimum=1.0)
        if _finite(self.cop_factor, "upgrade: cop_factor") <= 0:
            raise OfferError("upgrade: cop_factor must be > 0")


@dataclass(frozen=True)
class Offer:
    """A provider's offer to the members of a community.

    Attributes
    ----------
    id
        Identifier (a URN: ``urn:ngsi-ld:ServiceOffer:fcr-aggregator``).
    name
        Short title.
    provider_id
        The provider (its principal's subject in the API; a URN or a name).
    provider_kind
        One of :data:`PROVIDER_KINDS`.
    member_gets
        What the member gets, in words.
    data_needs, control, comfort, streams
        Data streams, control rights, care/comfort constraints, value streams.
    fee_eur_per_month
        What the member pays the provider, EUR/month (>= 0).
    provider_share
        Share (0-1) of the streams' gross revenue the provider keeps.
    benefit_eur_per_year
        Value of what the member gets that is not energy (care, security), EUR/year, as declared by
        the provider (``benefit_basis`` says how it was estimated).
    duration_months
        Contract duration, months.
    upgrade
        Building works included (ESCO), or None.
    features
        Tags from :data:`FEATURES` used by the recommendations.
    benefit_basis
        Source or reasoning of the figures.
    """

    id: str
    name: str
    provider_id: str
    provider_kind: str
    member_gets: str
    data_needs: tuple[DataNeed, ...] = ()
    control: tuple[ControlRight, ...] = ()
    comfort: tuple[ComfortBound, ...] = ()
    streams: tuple[ValueStream, ...] = ()
    fee_eur_per_month: float = 0.0
    provider_share: float = 0.0
    benefit_eur_per_year: float = 0.0
    duration_months: int = 12
    upgrade: BuildingUpgrade | None = None
    features: tuple[str, ...] = ()
    benefit_basis: str = ""

    def __post_init__(self) -> None:
        who = f"offer {self.id!r}"
        if not isinstance(self.id, str) or not _ID.match(self.id):
            raise OfferError(f"offer: id {self.id!r} is not a URI (e.g. urn:ngsi-ld:ServiceOffer:fcr)")
        if not self.name or not self.provider_id or not self.member_gets:
            raise OfferError(f"{who}: name, provider_id and member_gets are required")
        if self.provider_kind not in PROVIDER_KINDS:
            raise OfferError(
                f"{who}: provider_kind {self.provider_kind!r} is not one of {', '.join(PROVIDER_KINDS)}"
            )
        _finite(self.fee_eur_per_month, f"{who}: fee_eur_per_month")
        _finite(self.provider_share, f"{who}: provider_share", maximum=1.0)
        _finite(self.benefit_eur_per_year, f"{who}: benefit_eur_per_year")
        if (
            isinstance(self.duration_months, bool)
            or not isinstance(self.duration_months, int)
            or self.duration_months < 1
        ):
            raise OfferError(f"{who}: duration_months must be a positive integer")
        for f in self.features:
            if f not in FEATURES:
                raise OfferError(f"{who}: feature {f!r} is not one of {', '.join(FEATURES)}")
        reserves_kw = any(c.device == "battery" and c.reserved_kw is not None for c in self.control)
        for s in self.streams:
            if s.kind == "reserve" and not reserves_kw:
                raise OfferError(f"{who}: a reserve stream needs a battery control right with reserved_kw")
        for c in self.control:
            if c.reserved_kw is not None and not any(s.kind == "reserve" for s in self.streams):
                raise OfferError(
                    f"{who}: control right on {c.device} reserves kW but the offer sells no reserve"
                )
        if len([c for c in self.control if c.reserved_kw is not None]) > 1:
            raise OfferError(f"{who}: one capacity reservation per offer")
        if len({s.kind for s in self.streams}) != len(self.streams):
            raise OfferError(f"{who}: one value stream per kind")

    @property
    def fee_eur_per_year(self) -> float:
        """The fee over a year, EUR."""
        return 12.0 * self.fee_eur_per_month

    def to_json(self) -> dict[str, Any]:
        """The terms as plain JSON (camelCase keys)."""
        return {
            "id": self.id,
            "name": self.name,
            "providerId": self.provider_id,
            "providerKind": self.provider_kind,
            "memberGets": self.member_gets,
            "dataNeeds": [
                {
                    "stream": d.stream,
                    "purpose": d.purpose,
                    "retentionDays": d.retention_days,
                    "resolutionMin": d.resolution_min,
                }
                for d in self.data_needs
            ],
            "control": [
                {
                    "device": c.device,
                    "startHour": c.start_hour,
                    "endHour": c.end_hour,
                    "reservedKw": c.reserved_kw,
                }
                for c in self.control
            ],
            "comfort": [
                {"device": c.device, "minimum": c.minimum, "maximum": c.maximum} for c in self.comfort
            ],
            "streams": [
                {
                    "kind": s.kind,
                    "price": s.price,
                    "direction": s.direction,
                    "durationH": s.duration_h,
                    "blockSteps": s.block_steps,
                }
                for s in self.streams
            ],
            "feeEurPerMonth": self.fee_eur_per_month,
            "providerShare": self.provider_share,
            "benefitEurPerYear": self.benefit_eur_per_year,
            "durationMonths": self.duration_months,
            "upgrade": None
            if self.upgrade is None
            else {"resistanceFactor": self.upgrade.resistance_factor, "copFactor": self.upgrade.cop_factor},
            "features": list(self.features),
            "benefitBasis": self.benefit_basis,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Offer:
        """Read terms written by :meth:`to_json`; unknown keys raise :class:`OfferError`."""
        if not isinstance(raw, Mapping):
            raise OfferError("offer: the terms are a JSON object")
        keys = {
            "id", "name", "providerId", "providerKind", "memberGets", "dataNeeds", "control", "comfort",
            "streams", "feeEurPerMonth", "providerShare", "benefitEurPerYear", "durationMonths", "upgrade",
            "features", "benefitBasis",
        }  # fmt: skip
        unknown = sorted(set(raw) - keys)
        if unknown:
            raise OfferError(f"offer {raw.get('id', '?')!r}: unknown field(s) {', '.join(unknown)}")

        def items(name: str, allowed: set[str]) -> list[Mapping[str, Any]]:
            value = raw.get(name) or []
            if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
                raise OfferError(f"offer {raw.get('id', '?')!r}: {name} must be a list of objects")
            for v in value:
                bad = sorted(set(v) - allowed)
                if bad:
                    raise OfferError(
                        f"offer {raw.get('id', '?')!r}: {name}: unknown field(s) {', '.join(bad)}"
                    )
            return value

        try:
            up = raw.get("upgrade")
            return cls(
                id=raw.get("id"),  # type: ignore[arg-type]
                name=raw.get("name", ""),
                provider_id=raw.get("providerId", ""),
                provider_kind=raw.get("providerKind", ""),
                member_gets=raw.get("memberGets", ""),
                data_needs=tuple(
                    DataNeed(
                        d.get("stream", ""),
                        d.get("purpose", ""),
                        d.get("retentionDays", 0),
                        d.get("resolutionMin", 15),
                    )
                    for d in items("dataNeeds", {"stream", "purpose", "retentionDays", "resolutionMin"})
                ),
                control=tuple(
                    ControlRight(
                        c.get("device", ""), c.get("startHour", 0), c.get("endHour", 24), c.get("reservedKw")
                    )
                    for c in items("control", {"device", "startHour", "endHour", "reservedKw"})
                ),
                comfort=tuple(
                    ComfortBound(c.get("device", ""), c.get("minimum"), c.get("maximum"))  # type: ignore[arg-type]
                    for c in items("comfort", {"device", "minimum", "maximum"})
                ),
                streams=tuple(
                    ValueStream(
                        s.get("kind", ""),
                        s.get("price"),  # type: ignore[arg-type]
                        s.get("direction", "symmetric"),  # type: ignore[arg-type]
                        s.get("durationH", 0.25),
                        s.get("blockSteps", 16),
                    )
                    for s in items("streams", {"kind", "price", "direction", "durationH", "blockSteps"})
                ),
                fee_eur_per_month=raw.get("feeEurPerMonth", 0.0),
                provider_share=raw.get("providerShare", 0.0),
                benefit_eur_per_year=raw.get("benefitEurPerYear", 0.0),
                duration_months=raw.get("durationMonths", 12),
                upgrade=None
                if up is None
                else BuildingUpgrade(up.get("resistanceFactor", 1.0), up.get("copFactor", 1.0)),
                features=tuple(raw.get("features") or ()),
                benefit_basis=raw.get("benefitBasis", ""),
            )
        except (TypeError, AttributeError) as exc:
            raise OfferError(f"offer {raw.get('id', '?')!r}: malformed terms ({exc})") from None


# --------------------------------------------------------------------------------------------------
# The member's home
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberHome:
    """One member's access point over the evaluated period.

    Attributes
    ----------
    member_id
        The member.
    index
        Regular UTC step starts (15 min), a year typically.
    base_load_kw
        Inflexible consumption, kW per step.
    import_price_eur_per_kwh, export_price_eur_per_kwh
        The member's supply price (all-in: energy, network, taxes) and feed-in price per step.
    pv_kw
        PV production per step (kW, not curtailed), or None.
    battery, ev, heat_pump
        The member's flexible devices (:mod:`bright.energy.flex.devices`), each optional. The EV's
        sessions and the heat pump's per-step inputs (``outdoor_temp_c``, ``cop``) cover ``index``.
        Each evaluation window starts and ends the battery at ``initial_soc_kwh`` and starts the
        building at ``initial_temp_c``.
    connection
        Import/export limits, or None.
    tz
        The member's clock (control windows are local hours).
    source
        Where the series come from (shown with the evaluation).
    """

    member_id: str
    index: pd.DatetimeIndex
    base_load_kw: FloatArray
    import_price_eur_per_kwh: FloatArray
    export_price_eur_per_kwh: FloatArray
    pv_kw: FloatArray | None = None
    battery: Battery | None = None
    ev: ElectricVehicle | None = None
    heat_pump: HeatPump | None = None
    connection: GridConnection | None = None
    tz: str = "Europe/Brussels"
    source: str = ""

    def __post_init__(self) -> None:
        try:
            horizon_step_h(self.index)
        except FlexInputError as exc:
            raise OfferError(f"member {self.member_id}: {exc}") from None
        n = len(self.index)
        for name in ("base_load_kw", "import_price_eur_per_kwh", "export_price_eur_per_kwh", "pv_kw"):
            arr = getattr(self, name)
            if arr is None:
                continue
            arr = np.asarray(arr, dtype=np.float64)
            if arr.shape != (n,):
                raise OfferError(f"member {self.member_id}: {name} has {arr.size} values for {n} steps")
            if not np.isfinite(arr).all():
                t = int(np.flatnonzero(~np.isfinite(arr))[0])
                raise OfferError(f"member {self.member_id}: {name} is missing (NaN) at {self.index[t]}")
            object.__setattr__(self, name, arr)

    @property
    def dt_h(self) -> float:
        """Step length, h."""
        return horizon_step_h(self.index)


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OfferValue:
    """What one offer is worth to the member in a plan, EUR over the period (positive = gain).

    Attributes
    ----------
    offer_id
        The offer.
    streams_eur
        The member's part of the offer's stream revenue (reserve, bonuses).
    provider_eur
        The provider's part of that revenue.
    flexibility_eur
        The offer's share of the tariff savings (and device wear) from the flexibility used, pro rata
        to ``flexibility_kwh``.
    reference_eur
        Tariff change of the member's reference behaviour due to the offer (insulation saves, a
        warmer comfort minimum costs).
    benefit_eur, fee_eur
        Declared non-energy benefit and the fee, over the period.
    flexibility_kwh
        Energy moved away from the reference by devices under the offer's energy control rights.
    reserve_kwh
        Reserve held for the offer, kW x h.
    value_eur
        ``streams + flexibility + reference + benefit - fee``.
    """

    offer_id: str
    streams_eur: float
    provider_eur: float
    flexibility_eur: float
    reference_eur: float
    benefit_eur: float
    fee_eur: float
    flexibility_kwh: float
    reserve_kwh: float

    @property
    def value_eur(self) -> float:
        return self.streams_eur + self.flexibility_eur + self.reference_eur + self.benefit_eur - self.fee_eur

    def to_json(self) -> dict[str, Any]:
        return {
            "offer": self.offer_id,
            "valueEur": round(self.value_eur, 2),
            "streamsEur": round(self.streams_eur, 2),
            "providerEur": round(self.provider_eur, 2),
            "flexibilityEur": round(self.flexibility_eur, 2),
            "referenceEur": round(self.reference_eur, 2),
            "benefitEur": round(self.benefit_eur, 2),
            "feeEur": round(self.fee_eur, 2),
            "flexibilityKwh": round(self.flexibility_kwh, 1),
            "reserveKwh": round(self.reserve_kwh, 1),
        }


@dataclass(frozen=True)
class PlanResult:
    """One plan (a set of active offers) valued over the period.

    Attributes
    ----------
    offer_ids
        The active offers.
    baseline_cost_eur
        The member's energy cost without any offer (reference behaviour, original home).
    cost_eur
        The member's energy cost under the plan (tariff + device wear - member's stream revenue).
    offers
        Value of each offer.
    monthly_streams_eur
        Gross stream revenue per (local month start, offer id), EUR (for the revenue statements).
    reserve_kw_max
        Highest reserve held per step, kW.
    battery_headroom_ok
        Whether ``|battery power| + reserve <= power rating`` held at every step (never sold twice).
    """

    offer_ids: tuple[str, ...]
    baseline_cost_eur: float
    cost_eur: float
    offers: dict[str, OfferValue]
    monthly_streams_eur: dict[tuple[str, str], float] = field(default_factory=dict)
    reserve_kw_max: float = 0.0
    battery_headroom_ok: bool = True

    @property
    def value_eur(self) -> float:
        """Value to the member: ``baseline - cost + benefits - fees`` (= sum of the offers' values)."""
        return float(sum(v.value_eur for v in self.offers.values()))

    def to_json(self) -> dict[str, Any]:
        return {
            "offers": list(self.offer_ids),
            "valueEur": round(self.value_eur, 2),
            "baselineCostEur": round(self.baseline_cost_eur, 2),
            "costEur": round(self.cost_eur, 2),
            "perOffer": [self.offers[o].to_json() for o in self.offer_ids],
        }


@dataclass(frozen=True)
class BundleEvaluation:
    """A bundle valued for one member, against its best single offer.

    Attributes
    ----------
    name
        The bundle's name.
    offer_ids
        The offers of the bundle.
    joint
        The plan with every offer active.
    singles
        Each offer alone.
    chosen
        The plan the member should take: ``joint``, or the best single offer when it is worth more
        (the fall-back).
    idle_offers
        Offers of the bundle the chosen plan leaves out, with the reason.
    grants
        What the member would grant: ``data`` (stream, purpose, retention, provider) and ``control``
        (device, window, provider) of the chosen plan's offers.
    """

    name: str
    offer_ids: tuple[str, ...]
    joint: PlanResult
    singles: dict[str, PlanResult]
    chosen: PlanResult
    idle_offers: dict[str, str]
    grants: dict[str, list[dict[str, Any]]]

    @property
    def value_eur(self) -> float:
        """Value of the bundle: the chosen plan's (never below the best single offer's)."""
        return self.chosen.value_eur

    @property
    def best_single(self) -> tuple[str, float]:
        """The single offer worth most alone, and its value."""
        oid = max(self.singles, key=lambda o: (self.singles[o].value_eur, o))
        return oid, self.singles[oid].value_eur

    @property
    def stacking_gain_eur(self) -> float:
        """Value of the bundle over its best single offer (>= 0)."""
        return self.value_eur - self.best_single[1]

    def to_json(self) -> dict[str, Any]:
        best, best_value = self.best_single
        return {
            "name": self.name,
            "offers": list(self.offer_ids),
            "valueEur": round(self.value_eur, 2),
            "jointValueEur": round(self.joint.value_eur, 2),
            "bestSingle": {"offer": best, "valueEur": round(best_value, 2)},
            "stackingGainEur": round(self.stacking_gain_eur, 2),
            "chosen": self.chosen.to_json(),
            "idleOffers": [{"offer": k, "reason": v} for k, v in self.idle_offers.items()],
            "singles": {k: round(v.value_eur, 2) for k, v in self.singles.items()},
            "grants": self.grants,
        }


@dataclass(frozen=True)
class BundleComparison:
    """Several bundles valued for one member.

    Attributes
    ----------
    member_id
        The member.
    baseline_cost_eur
        Energy cost without any offer, EUR over the period.
    bundles
        One evaluation per bundle, in the order given.
    plans_solved
        Distinct plans optimised (singles are shared between bundles).
    """

    member_id: str
    baseline_cost_eur: float
    bundles: list[BundleEvaluation]
    plans_solved: int

    def table(self) -> pd.DataFrame:
        """One row per bundle: value, best single offer, stacking gain, plan taken."""
        rows = []
        for b in self.bundles:
            best, best_value = b.best_single
            rows.append(
                {
                    "bundle": b.name,
                    "offers": len(b.offer_ids),
                    "value_eur": b.value_eur,
                    "joint_value_eur": b.joint.value_eur,
                    "best_single": best,
                    "best_single_eur": best_value,
                    "stacking_gain_eur": b.stacking_gain_eur,
                    "plan": "joint" if b.chosen is b.joint else "fallback",
                }
            )
        return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# Valuation
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Variant:
    """Home modifications shared by the plans solved on one model: the building works."""

    resistance_factor: float = 1.0
    cop_factor: float = 1.0


@dataclass
class _Window:
    """One evaluation window: its model (per variant) and the column layout."""

    start: int
    stop: int
    index: pd.DatetimeIndex
    local_hour: FloatArray
    month: str


@dataclass
class _Layout:
    """Where the columns of one built window model are."""

    problem: Any
    highs: Any
    col_lower: FloatArray
    col_upper: FloatArray
    col_cost: FloatArray
    imp: np.ndarray
    exp: np.ndarray
    bat_c: np.ndarray | None = None
    bat_d: np.ndarray | None = None
    bat_e: np.ndarray | None = None
    bat_r_up: np.ndarray | None = None
    site_r_up: np.ndarray | None = None
    site_r_dn: np.ndarray | None = None
    reserve_rows: np.ndarray | None = None  # rows e - r D/eta >= soc_min, their base lower bound
    ev_c: np.ndarray | None = None
    ev_steps: np.ndarray | None = None
    ev_ref: FloatArray | None = None
    hp_p: np.ndarray | None = None
    hp_t: np.ndarray | None = None
    hp_hard: bool = False
    hp_series: dict[str, FloatArray] | None = None
    hp_device: HeatPump | None = None
    ctx: BuildContext | None = None
    base: FloatArray | None = None
    pv: FloatArray | None = None
    imp_price: FloatArray | None = None
    exp_price: FloatArray | None = None
    reserve: ValueStream | None = None
    hp_cache: dict[tuple[float | None, float | None], tuple[FloatArray, bool]] = field(default_factory=dict)

    def reserve_cols(self) -> np.ndarray:
        """The site's reserve columns the reserve product is priced on."""
        cols = (
            self.site_r_dn
            if self.reserve is not None and self.reserve.direction == "down"
            else self.site_r_up
        )
        assert cols is not None
        return cols


def _windows(home: MemberHome, boundary_hour_utc: int, days: int = 1) -> list[_Window]:
    idx = home.index
    n = len(idx)
    cut = np.flatnonzero((idx.hour == boundary_hour_utc) & (idx.minute == 0))[::days]
    starts = sorted({0, *[int(c) for c in cut if c > 0]})
    bounds = [*starts, n]
    local = idx.tz_convert(home.tz)
    hours = np.asarray(local.hour + local.minute / 60.0, dtype=np.float64)
    out = []
    for a, b in itertools.pairwise(bounds):
        if b <= a:
            continue
        month = local[a].strftime("%Y-%m")
        out.append(_Window(a, b, idx[a:b], hours[a:b], month))
    return out


def _slice(value: Any, sl: slice) -> Any:
    if isinstance(value, pd.Series):
        return value.to_numpy(dtype=np.float64)[sl]
    arr = np.asarray(value, dtype=np.float64)
    return float(arr) if arr.ndim == 0 else arr[sl]


def _window_sessions(ev: ElectricVehicle, start: pd.Timestamp, stop: pd.Timestamp) -> list[EVSession]:
    """The EV sessions inside ``[start, stop)``, a session crossing a boundary split pro rata to time."""
    arr_ns, dep_ns, sessions = _session_table(ev)
    lo, hi = start.value, stop.value
    out = []
    for k in np.flatnonzero((dep_ns > lo) & (arr_ns < hi)):
        s = sessions[int(k)]
        a, d = max(int(arr_ns[k]), lo), min(int(dep_ns[k]), hi)
        share = (d - a) / (dep_ns[k] - arr_ns[k])
        out.append(
            EVSession(pd.Timestamp(a, tz="UTC"), pd.Timestamp(d, tz="UTC"), float(s.energy_kwh) * share)
        )
    return out


_SESSION_TABLES: dict[int, tuple[ElectricVehicle, np.ndarray, np.ndarray, list[EVSession]]] = {}


def _session_table(ev: ElectricVehicle) -> tuple[np.ndarray, np.ndarray, list[EVSession]]:
    """Arrival and departure (ns since epoch, UTC) of the EV's sessions, cached per EV object."""
    hit = _SESSION_TABLES.get(id(ev))
    if hit is not None and hit[0] is ev:
        return hit[1], hit[2], hit[3]
    sessions = list(ev.sessions)
    arr = np.array([pd.Timestamp(s.arrival).value for s in sessions], dtype=np.int64)
    dep = np.array([pd.Timestamp(s.departure).value for s in sessions], dtype=np.int64)
    if len(_SESSION_TABLES) > 64:
        _SESSION_TABLES.clear()
    _SESSION_TABLES[id(ev)] = (ev, arr, dep, sessions)
    return arr, dep, sessions


def _build_window(
    home: MemberHome, w: _Window, variant: _Variant, reserve: ValueStream | None, t0_c: float | None
) -> _Layout:

    sl = slice(w.start, w.stop)
    devices: list[Any] = []
    bat = home.battery
    if bat is not None:
        devices.append(dataclasses.replace(bat, target_soc_kwh=bat.initial_soc_kwh, provides_reserve=True))
    ev = home.ev
    if ev is not None:
        sessions = _window_sessions(ev, w.index[0], w.index[-1] + pd.Timedelta(hours=home.dt_h))
        devices.append(dataclasses.replace(ev, sessions=sessions, discharge_power_kw=0.0))
    hp = home.heat_pump
    if hp is not None:
        cop = _slice(hp.cop, sl)
        hp = dataclasses.replace(
            hp,
            cop=cop * variant.cop_factor,
            resistance_k_per_kw=hp.resistance_k_per_kw * variant.resistance_factor,
            outdoor_temp_c=_slice(hp.outdoor_temp_c, sl),
            comfort_min_c=_slice(hp.comfort_min_c, sl),
            comfort_max_c=_slice(hp.comfort_max_c, sl),
            heat_gains_kw=_slice(hp.heat_gains_kw, sl),
            initial_temp_c=hp.initial_temp_c if t0_c is None else max(hp.initial_temp_c, t0_c),
        )
        devices.append(hp)
    if home.pv_kw is not None:
        devices.append(PVSystem("pv", home.pv_kw[sl], curtailable=False))
    imp_price = home.import_price_eur_per_kwh[sl]
    exp_price = home.export_price_eur_per_kwh[sl]
    commitments = [energy_price(imp_price), feed_in(exp_price)]
    if reserve is not None:
        commitments.append(
            reserve_capacity(
                0.0,
                direction=reserve.direction,
                duration_h=reserve.duration_h,
                block_steps=reserve.block_steps,
            )
        )
    site = Site(
        home.member_id,
        home.base_load_kw[sl],
        devices=tuple(devices),
        connection=home.connection,
        commitments=tuple(commitments),
    )
    problem = build_problem(w.index, [site], penalties=Penalties())
    model = problem.model
    h = model.to_highs({"presolve": "off"})
    sb = problem.site_blocks[0]
    lay = _Layout(
        problem=problem,
        highs=h,
        col_lower=np.asarray(model.col_lower, dtype=np.float64).copy(),
        col_upper=np.asarray(model.col_upper, dtype=np.float64).copy(),
        col_cost=np.asarray(model.col_cost, dtype=np.float64).copy(),
        imp=np.asarray(sb.imp),
        exp=np.asarray(sb.exp),
        base=np.asarray(sb.base_load_kw, dtype=np.float64),
        pv=np.zeros(w.stop - w.start) if home.pv_kw is None else home.pv_kw[sl],
        imp_price=imp_price,
        exp_price=exp_price,
        ctx=BuildContext(w.index, problem.dt_h, home.member_id, problem.penalties),
        reserve=reserve,
    )
    lay.site_r_up = None if sb.reserve_up is None else np.asarray(sb.reserve_up)
    lay.site_r_dn = None if sb.reserve_down is None else np.asarray(sb.reserve_down)
    for blk in sb.devices:
        if blk.kind == "battery":
            lay.bat_c = np.asarray(blk.outputs["charge_kw"].cols)
            lay.bat_d = np.asarray(blk.outputs["discharge_kw"].cols)
            lay.bat_e = np.asarray(blk.outputs["soc_end_kwh"].cols)
            if blk.reserve_up is not None:
                lay.bat_r_up = np.asarray(blk.reserve_up)
                row_of_entry = np.repeat(np.arange(model.num_row), np.diff(model.a_start))
                rows = np.unique(row_of_entry[np.isin(model.a_index, lay.bat_r_up)])
                lo = np.asarray(model.row_lower)[rows]
                hi = np.asarray(model.row_upper)[rows]
                soc_min = bat.soc_min_kwh if bat is not None else 0.0
                # the energy rows e - r D / eta >= soc_min (the headroom and sum rows have other bounds)
                keep = np.isfinite(lo) & np.isinf(hi) & (np.abs(lo - soc_min) < 1e-12)
                lay.reserve_rows = rows[keep]
        elif blk.kind == "ev":
            t = blk.outputs["charge_kw"]
            lay.ev_c = np.asarray(t.cols)
            lay.ev_steps = np.asarray(t.steps)
            lay.ev_ref = np.asarray(blk.reference_consumption_kw, dtype=np.float64)
        elif blk.kind == "heat_pump":
            lay.hp_p = np.asarray(blk.outputs["power_kw"].cols)
            lay.hp_t = np.asarray(blk.outputs["indoor_temp_c"].cols)
            lay.hp_device = hp
            assert hp is not None and lay.ctx is not None
            lay.hp_series = hp.series(lay.ctx)
            lay.hp_hard = hp.comfort_reachable(lay.ctx, lay.hp_series)
    return lay


@dataclass(frozen=True)
class _PlanTerms:
    """What a plan asks of the model, independent of the window."""

    offers: tuple[Offer, ...]
    variant: _Variant
    comfort_min_c: float | None
    comfort_max_c: float | None
    backup_kwh: float


def _plan_terms(offers: Sequence[Offer]) -> _PlanTerms:
    rf = cf = 1.0
    tmin: float | None = None
    tmax: float | None = None
    backup = 0.0
    for o in offers:
        if o.upgrade is not None:
            rf *= o.upgrade.resistance_factor
            cf *= o.upgrade.cop_factor
        for c in o.comfort:
            if c.device == "heat_pump":
                tmin = c.minimum if tmin is None else max(tmin, c.minimum)
                if c.maximum is not None:
                    tmax = c.maximum if tmax is None else min(tmax, c.maximum)
            else:
                backup = max(backup, c.minimum)
    if tmin is not None and tmax is not None and tmax < tmin:
        raise OfferError(
            f"offers {', '.join(o.id for o in offers)}: their comfort bounds leave no temperature band "
            f"({tmin} degC minimum above {tmax} degC maximum)"
        )
    return _PlanTerms(tuple(offers), _Variant(rf, cf), tmin, tmax, backup)


class _Accumulator:
    """Sums of one plan over the windows."""

    def __init__(self, offer_ids: Sequence[str]) -> None:
        self.ids = tuple(offer_ids)
        self.ref_tariff = 0.0
        self.opt_tariff = 0.0
        self.wear = 0.0
        self.streams_gross = dict.fromkeys(self.ids, 0.0)
        self.streams_member = dict.fromkeys(self.ids, 0.0)
        self.flex_kwh = dict.fromkeys(self.ids, 0.0)
        self.reserve_kwh = dict.fromkeys(self.ids, 0.0)
        self.monthly: dict[tuple[str, str], float] = {}
        self.reserve_max = 0.0
        self.headroom_ok = True


def _tariff(imp: FloatArray, exp: FloatArray, lay: _Layout, dt: float) -> float:
    assert lay.imp_price is not None and lay.exp_price is not None
    return float(np.sum(imp * lay.imp_price - exp * lay.exp_price) * dt)


def _owner_per_step(candidates: Sequence[tuple[int, FloatArray]], n: int) -> tuple[np.ndarray, FloatArray]:
    """Per step, the candidate (index) paying most where several apply (-1: none), and its price."""
    owner = np.full(n, -1, dtype=np.int64)
    price = np.zeros(n)
    for k, p in candidates:
        better = np.isfinite(p) & ((owner < 0) | (p > price))
        owner[better] = k
        price[better] = p[better]
    return owner, price


def _solve_plan_window(
    lay: _Layout, w: _Window, terms: _PlanTerms, acc: _Accumulator, home: MemberHome, dt: float
) -> None:
    n = w.stop - w.start
    offers = terms.offers
    lower = lay.col_lower.copy()
    upper = lay.col_upper.copy()
    cost = lay.col_cost.copy()
    hours = w.local_hour
    # energy control masks per device: which offers may move the device at each step
    energy_owners: dict[str, list[tuple[int, np.ndarray]]] = {d: [] for d in DEVICE_KINDS}
    for k, o in enumerate(offers):
        for c in o.control:
            if c.reserved_kw is None:
                energy_owners[c.device].append((k, c.active(hours)))

    def controlled(device: str) -> np.ndarray:
        mask = np.zeros(n, dtype=bool)
        for _, m in energy_owners[device]:
            mask |= m
        return mask

    # battery: energy use only under an energy right, the backup energy always kept
    if lay.bat_c is not None and home.battery is not None:
        free = controlled("battery")
        upper[lay.bat_c] = np.where(free, home.battery.charge_power_kw, 0.0)
        upper[lay.bat_d] = np.where(free, home.battery.discharge_power_kw, 0.0)
        lower[lay.bat_e] = home.battery.soc_min_kwh + terms.backup_kwh
    # reserve: sold per step to the offer paying the member most, capped by its reserved kW
    res_owner = np.full(n, -1, dtype=np.int64)
    res_price_member = np.zeros(n)
    res_price_gross = np.zeros(n)
    if lay.site_r_up is not None or lay.site_r_dn is not None:
        cands = []
        caps = []
        gross_prices = []
        for k, o in enumerate(offers):
            for s in o.streams:
                if s.kind != "reserve":
                    continue
                right = next(c for c in o.control if c.reserved_kw is not None)
                p = np.where(right.active(hours), s.price * (1.0 - o.provider_share), np.nan)
                cands.append((k, p))
                caps.append((k, float(right.reserved_kw or 0.0)))
                gross_prices.append((k, s.price))
        res_owner, res_price_member = _owner_per_step(cands, n)
        cap = np.zeros(n)
        for k, kw in caps:
            cap[res_owner == k] = kw
        for k, g in gross_prices:
            res_price_gross[res_owner == k] = g
        for cols in (lay.site_r_up, lay.site_r_dn):
            if cols is not None:
                upper[cols] = cap
        cost[lay.reserve_cols()] += -res_price_member * dt
    # bonuses on export / self-consumption (linear on the export columns)
    bonus_streams: dict[str, list[tuple[int, FloatArray, float, float]]] = {
        "export_bonus": [],
        "self_consumption_bonus": [],
    }
    for k, o in enumerate(offers):
        for s in o.streams:
            if s.kind in bonus_streams:
                bonus_streams[s.kind].append(
                    (k, np.full(n, s.price * (1.0 - o.provider_share)), s.price, o.provider_share)
                )
    for kind, items in bonus_streams.items():
        if not items:
            continue
        owner, member_price = _owner_per_step([(k, p) for k, p, _, _ in items], n)
        sign = -1.0 if kind == "export_bonus" else 1.0  # a bonus on self-consumption is lost on export
        cost[lay.exp] += sign * member_price * dt
    # EV: moved only in an energy window, otherwise charging as it would without control
    if lay.ev_c is not None and lay.ev_steps is not None and lay.ev_ref is not None and len(lay.ev_c):
        free = controlled("ev")[lay.ev_steps]
        ref = lay.ev_ref[lay.ev_steps]
        lower[lay.ev_c] = np.where(free, 0.0, ref)
        upper[lay.ev_c] = np.where(free, lay.col_upper[lay.ev_c], ref)
    # heat pump: comfort of the plan (care wins), moved only under an energy right
    hp_ref = None
    if (
        lay.hp_p is not None
        and lay.hp_device is not None
        and lay.hp_series is not None
        and lay.ctx is not None
    ):
        hp_s = dict(lay.hp_series)
        if terms.comfort_min_c is not None:
            hp_s["t_min"] = np.maximum(hp_s["t_min"], terms.comfort_min_c)
        if terms.comfort_max_c is not None:
            hp_s["t_max"] = np.minimum(hp_s["t_max"], np.maximum(terms.comfort_max_c, hp_s["t_min"]))
        band = (terms.comfort_min_c, terms.comfort_max_c)
        if band not in lay.hp_cache:  # plans with the same comfort share the reference
            lay.hp_cache[band] = (
                lay.hp_device.thermostat(lay.ctx, hp_s),
                lay.hp_hard and lay.hp_device.comfort_reachable(lay.ctx, hp_s),
            )
        hp_ref, reach = lay.hp_cache[band]
        free_hp = bool(controlled("heat_pump").all()) and reach
        if free_hp:
            lower[lay.hp_t] = hp_s["t_min"]
            upper[lay.hp_t] = hp_s["t_max"]
        else:  # the thermostat's power, and whatever temperature it gives
            lower[lay.hp_t] = -np.inf
            upper[lay.hp_t] = np.inf
            lower[lay.hp_p] = hp_ref
            upper[lay.hp_p] = hp_ref
    # reference: the home's behaviour without control, under the plan's comfort
    assert lay.base is not None and lay.pv is not None
    ref_net = lay.base.copy() - lay.pv
    refs: dict[str, tuple[Any, FloatArray]] = {}
    sb = lay.problem.site_blocks[0]
    for blk in sb.devices:
        if blk.kind == "pv":
            continue
        r = (
            hp_ref
            if (blk.kind == "heat_pump" and hp_ref is not None)
            else np.asarray(blk.reference_consumption_kw)
        )
        ref_net += r
        refs[blk.kind] = (blk, r)
    decide = any(owners for owners in energy_owners.values()) or bool(np.any(res_owner >= 0))
    if not decide:  # every device follows its reference: nothing for the optimiser to choose
        ref_imp0, ref_exp0 = np.maximum(ref_net, 0.0), np.maximum(-ref_net, 0.0)
        zero = np.zeros(n)
        q = {"import": ref_imp0, "export": ref_exp0, "reserve_up": zero, "reserve_down": zero}
        dev_p = {kind: (r, r) for kind, (_blk, r) in refs.items()}
        x = None
    else:
        # backup energy also bounds the energy reserve rows
        h = lay.highs
        if lay.reserve_rows is not None and len(lay.reserve_rows) and home.battery is not None:
            lo = np.full(len(lay.reserve_rows), home.battery.soc_min_kwh + terms.backup_kwh)
            h.changeRowsBounds(len(lay.reserve_rows), lay.reserve_rows, lo, np.full(len(lo), np.inf))
            if lay.bat_r_up is not None and lay.reserve is not None:
                per_kw = lay.reserve.duration_h / home.battery.discharge_efficiency
                if per_kw > 0:  # the first step's reserve is backed by the known initial energy
                    room = home.battery.initial_soc_kwh - home.battery.soc_min_kwh - terms.backup_kwh
                    upper[lay.bat_r_up[0]] = min(upper[lay.bat_r_up[0]], max(room / per_kw, 0.0))
        idx = np.arange(len(lower), dtype=np.int32)
        h.changeColsBounds(len(idx), idx, lower, upper)
        h.changeColsCost(len(idx), idx, cost)
        h.run()
        import highspy

        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            # a basis from another plan can stall; solve this one from scratch before giving up
            h.clearSolver()
            h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            raise OfferError(
                f"member {home.member_id}: plan {', '.join(o.id for o in offers) or '(no offer)'} has no schedule "
                f"in the window starting {w.index[0]} ({h.modelStatusToString(h.getModelStatus())}): "
                "the offers' constraints cannot all be met"
            )
        x = np.asarray(h.getSolution().col_value, dtype=np.float64)
        q = site_quantities(sb.series(x))
        dev_p = {kind: (blk.consumption.value(x), r) for kind, (blk, r) in refs.items()}
    imp, exp = q["import"], q["export"]
    ref_imp, ref_exp = np.maximum(ref_net, 0.0), np.maximum(-ref_net, 0.0)
    acc.ref_tariff += _tariff(ref_imp, ref_exp, lay, dt)
    acc.opt_tariff += _tariff(imp, exp, lay, dt)
    if (
        x is not None
        and lay.bat_c is not None
        and home.battery is not None
        and home.battery.degradation_eur_per_kwh > 0
    ):
        acc.wear += float(np.sum(x[lay.bat_c] + x[lay.bat_d]) * home.battery.degradation_eur_per_kwh * dt)
    # streams per owner
    r_up = (
        q["reserve_down"] if lay.reserve is not None and lay.reserve.direction == "down" else q["reserve_up"]
    )
    if np.any(res_owner >= 0):
        acc.reserve_max = max(acc.reserve_max, float(np.max(r_up)))
        for k, o in enumerate(offers):
            mine = res_owner == k
            if not mine.any():
                continue
            gross = float(np.sum(res_price_gross[mine] * r_up[mine]) * dt)
            member = float(np.sum(res_price_member[mine] * r_up[mine]) * dt)
            acc.streams_gross[o.id] += gross
            acc.streams_member[o.id] += member
            acc.reserve_kwh[o.id] += float(np.sum(r_up[mine]) * dt)
            key = (w.month, o.id)
            acc.monthly[key] = acc.monthly.get(key, 0.0) + gross
    if x is not None and lay.bat_c is not None and home.battery is not None:
        power = np.abs(x[lay.bat_c] - x[lay.bat_d])
        r_any = np.maximum(r_up, q["reserve_down"])
        rating = max(home.battery.charge_power_kw, home.battery.discharge_power_kw)
        if np.any(power + r_any > rating + 1e-6):
            acc.headroom_ok = False
    for kind, items in bonus_streams.items():
        if not items:
            continue
        owner, _ = _owner_per_step([(k, p) for k, p, _, _ in items], n)
        qty = (
            exp if kind == "export_bonus" else lay.pv - exp
        )  # as the model prices it (exports count against)
        for k, _p, gross_price, share in items:
            mine = owner == k
            gross = float(np.sum(qty[mine]) * gross_price * dt)
            oid = offers[k].id
            acc.streams_gross[oid] += gross
            acc.streams_member[oid] += gross * (1.0 - share)
            key = (w.month, oid)
            acc.monthly[key] = acc.monthly.get(key, 0.0) + gross
    # flexibility moved, shared among the energy-right holders of the device at each step
    for device, (p_opt, p_ref) in dev_p.items():
        owners = energy_owners.get(device, [])
        if not owners:
            continue
        moved = np.abs(p_opt - p_ref) * dt
        count = np.zeros(n)
        for _, m in owners:
            count += m
        per_owner = np.where(count > 0, moved / np.maximum(count, 1), 0.0)
        for k, m in owners:
            acc.flex_kwh[offers[k].id] += float(np.sum(per_owner[m]))


def _finish(
    acc: _Accumulator, terms: _PlanTerms, baseline: float, solo_shift: Mapping[str, float], years: float
) -> PlanResult:
    offers = terms.offers
    ids = acc.ids
    ref_shift = baseline - acc.ref_tariff
    flex_total = acc.ref_tariff - acc.opt_tariff - acc.wear
    shifters = [o.id for o in offers if o.upgrade is not None or o.comfort]
    alloc_ref = dict.fromkeys(ids, 0.0)
    if shifters:
        known = {oid: solo_shift.get(oid, 0.0) for oid in shifters}
        rest = (ref_shift - sum(known.values())) / len(shifters)
        for oid in shifters:
            alloc_ref[oid] = known[oid] + rest
    elif ids:
        alloc_ref[ids[0]] += ref_shift  # numerically zero: no offer changes the reference
    total_flex = sum(acc.flex_kwh.values())
    alloc_flex = dict.fromkeys(ids, 0.0)
    if total_flex > _TOL:
        for oid in ids:
            alloc_flex[oid] = flex_total * acc.flex_kwh[oid] / total_flex
    elif ids:
        alloc_flex[ids[0]] += flex_total  # nothing moved: the difference is solver noise
    values = {}
    for o in offers:
        values[o.id] = OfferValue(
            o.id,
            streams_eur=acc.streams_member[o.id],
            provider_eur=acc.streams_gross[o.id] - acc.streams_member[o.id],
            flexibility_eur=alloc_flex[o.id],
            reference_eur=alloc_ref[o.id],
            benefit_eur=o.benefit_eur_per_year * years,
            fee_eur=o.fee_eur_per_year * years,
            flexibility_kwh=acc.flex_kwh[o.id],
            reserve_kwh=acc.reserve_kwh[o.id],
        )
    cost = acc.opt_tariff + acc.wear - sum(acc.streams_member.values())
    return PlanResult(ids, baseline, cost, values, dict(acc.monthly), acc.reserve_max, acc.headroom_ok)


def _check_catalogue(home: MemberHome, offers: Sequence[Offer]) -> ValueStream | None:
    reserves = [s for o in offers for s in o.streams if s.kind == "reserve"]
    first = reserves[0] if reserves else None
    for s in reserves:
        assert first is not None
        if (s.direction, s.duration_h, s.block_steps) != (
            first.direction,
            first.duration_h,
            first.block_steps,
        ):
            raise OfferError(
                "reserve offers evaluated together must sell the same product (direction, duration_h, "
                f"block_steps); got {first} and {s}"
            )
    for o in offers:
        for c in o.control:
            if c.device == "battery" and home.battery is None:
                raise OfferError(f"offer {o.id!r}: member {home.member_id} has no battery to control")
            if c.device == "ev" and home.ev is None:
                raise OfferError(f"offer {o.id!r}: member {home.member_id} has no EV to control")
            if c.device == "heat_pump" and home.heat_pump is None:
                raise OfferError(f"offer {o.id!r}: member {home.member_id} has no heat pump to control")
        for cb in o.comfort:
            if cb.device == "battery" and home.battery is not None:
                room = home.battery.initial_soc_kwh - home.battery.soc_min_kwh
                if cb.minimum > room + 1e-9:
                    raise OfferError(
                        f"offer {o.id!r}: backup of {cb.minimum} kWh exceeds the {room} kWh the battery of "
                        f"member {home.member_id} starts each day with"
                    )
    return first


def _similar_order(keys: Sequence[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Plans in an order where each differs little from the previous (HiGHS restarts from its basis)."""
    left = list(keys)
    out = [left.pop(0)]
    while left:
        last = set(out[-1])
        k = min(range(len(left)), key=lambda i: (len(last ^ set(left[i])), i))
        out.append(left.pop(k))
    return out


def evaluate_bundles(
    home: MemberHome,
    bundles: Mapping[str, Sequence[Offer]] | Sequence[Sequence[Offer]],
    *,
    window_boundary_hour_utc: int = 11,
    window_days: int = 1,
) -> BundleComparison:
    """Value bundles of offers for one member over the home's period.

    Parameters
    ----------
    home
        The member's home, series over the period (a year at 15 min typically).
    bundles
        Named bundles (or a list, named ``bundle 1``...), each a sequence of offers.
    window_boundary_hour_utc
        The period is optimised in independent daily windows starting at this UTC hour (11 = noon in
        Brussels in winter, so overnight EV sessions stay whole); each window starts and ends the
        battery at its initial energy and starts the building at its initial temperature.

    Returns
    -------
    BundleComparison

    Raises
    ------
    OfferError
        Inconsistent offers (a control right on a device the member does not have, reserve products
        that differ), or a plan whose constraints cannot all be met.

    Notes
    -----
    Each window's model is built once per building variant (with and without an ESCO's works) and
    every plan is solved on it by changing bounds and costs, HiGHS restarting from the previous
    plan's basis. The bundle value is never below its best single offer: when the joint plan is
    worth less, the evaluation takes the best single plan and names the offers it leaves out.
    """
    named = (
        dict(bundles)
        if isinstance(bundles, Mapping)
        else {f"bundle {i + 1}": b for i, b in enumerate(bundles)}
    )
    if not named:
        raise OfferError("evaluate_bundles: give at least one bundle")
    catalogue: dict[str, Offer] = {}
    for name, offers in named.items():
        if not offers:
            raise OfferError(f"bundle {name!r} is empty")
        ids = [o.id for o in offers]
        if len(set(ids)) != len(ids):
            raise OfferError(f"bundle {name!r} holds the same offer twice")
        for o in offers:
            if catalogue.setdefault(o.id, o) != o:
                raise OfferError(f"two different offers share the id {o.id!r}")
    reserve = _check_catalogue(home, list(catalogue.values()))
    plans: list[tuple[str, ...]] = [()]
    plans += [(oid,) for oid in catalogue]
    for offers in named.values():
        key = tuple(o.id for o in offers)
        if len(key) > 1 and key not in plans:
            plans.append(key)
    terms = {key: _plan_terms([catalogue[o] for o in key]) for key in plans}
    t0 = max((t.comfort_min_c for t in terms.values() if t.comfort_min_c is not None), default=None)
    accs = {key: _Accumulator(key) for key in plans}
    dt = home.dt_h
    by_variant: dict[_Variant, list[tuple[str, ...]]] = {}
    for key in plans:
        by_variant.setdefault(terms[key].variant, []).append(key)
    by_variant = {v: _similar_order(keys) for v, keys in by_variant.items()}
    for w in _windows(home, window_boundary_hour_utc, window_days):
        for variant, keys in by_variant.items():
            lay = _build_window(home, w, variant, reserve, t0)
            for key in keys:
                _solve_plan_window(lay, w, terms[key], accs[key], home, dt)
    years = (len(home.index) * dt) / (365.0 * 24.0)
    baseline = accs[()].ref_tariff
    solo_shift = {oid: baseline - accs[(oid,)].ref_tariff for oid in catalogue}
    results = {key: _finish(accs[key], terms[key], baseline, solo_shift, years) for key in plans}
    out = []
    for name, offers in named.items():
        key = tuple(o.id for o in offers)
        singles = {o.id: results[(o.id,)] for o in offers}
        joint = results[key]
        best = max(singles, key=lambda o: (singles[o].value_eur, o))
        idle: dict[str, str] = {}
        chosen = joint
        if singles[best].value_eur > joint.value_eur + _TOL:
            chosen = singles[best]
            for o in offers:
                if o.id != best:
                    v = joint.offers[o.id].value_eur
                    idle[o.id] = (
                        f"adds {v:+.2f} EUR to the joint plan, which is worth "
                        f"{joint.value_eur:.2f} EUR against {singles[best].value_eur:.2f} EUR for {best} alone"
                    )
        active = [catalogue[o] for o in chosen.offer_ids]
        out.append(BundleEvaluation(name, key, joint, singles, chosen, idle, grants_of(active)))
    return BundleComparison(home.member_id, baseline, out, len(plans))


def evaluate_bundle(home: MemberHome, offers: Sequence[Offer], *, name: str = "bundle") -> BundleEvaluation:
    """Value one bundle (see :func:`evaluate_bundles`)."""
    return evaluate_bundles(home, {name: offers}).bundles[0]


def grants_of(offers: Iterable[Offer]) -> dict[str, list[dict[str, Any]]]:
    """The data and control a member grants by subscribing to ``offers``."""
    data = [
        {
            "provider": o.provider_id,
            "offer": o.id,
            "stream": d.stream,
            "purpose": d.purpose,
            "retentionDays": d.retention_days,
        }
        for o in offers
        for d in o.data_needs
    ]
    control = [
        {
            "provider": o.provider_id,
            "offer": o.id,
            "device": c.device,
            "window": c.describe(),
            "reservedKw": c.reserved_kw,
        }
        for o in offers
        for c in o.control
    ]
    return {"data": data, "control": control}


# --------------------------------------------------------------------------------------------------
# Revenue sharing
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RevenueSplit:
    """How a stacked revenue is split, EUR.

    Attributes
    ----------
    total_eur
        The revenue split.
    provider_eur
        The provider's contractual share.
    community_eur
        The community's share.
    members
        Each member's share.
    method
        ``fixed``, ``pro_rata`` or ``shapley``.
    """

    total_eur: float
    provider_eur: float
    community_eur: float
    members: dict[str, float]
    method: str

    def to_json(self) -> dict[str, Any]:
        return {
            "totalEur": round(self.total_eur, 2),
            "providerEur": round(self.provider_eur, 2),
            "communityEur": round(self.community_eur, 2),
            "members": {k: round(v, 2) for k, v in self.members.items()},
            "method": self.method,
        }


def split_fixed(total_eur: float, shares: Mapping[str, float]) -> dict[str, float]:
    """Split ``total_eur`` by fixed shares (>= 0, summing to 1)."""
    _finite(total_eur, "total_eur", minimum=None)
    if not shares:
        raise OfferError("fixed shares: give at least one party")
    for k, v in shares.items():
        _finite(v, f"fixed share of {k!r}")
    s = sum(shares.values())
    if abs(s - 1.0) > 1e-9:
        raise OfferError(f"fixed shares must sum to 1, they sum to {s}")
    out = {k: total_eur * v for k, v in shares.items()}
    last = list(out)[-1]
    out[last] = total_eur - sum(v for k, v in out.items() if k != last)  # the sum is exact
    return out


def split_pro_rata(total_eur: float, contributions: Mapping[str, float]) -> dict[str, float]:
    """Split ``total_eur`` pro rata to contributions (kWh of flexibility, kW reserved; >= 0).

    With no contribution at all, the revenue is split equally.
    """
    _finite(total_eur, "total_eur", minimum=None)
    if not contributions:
        raise OfferError("pro-rata split: give at least one party")
    for k, v in contributions.items():
        _finite(v, f"contribution of {k!r}")
    s = sum(contributions.values())
    if s <= 0:
        return split_fixed(total_eur, dict.fromkeys(contributions, 1.0 / len(contributions)))
    return split_fixed(total_eur, {k: v / s for k, v in contributions.items()})


def shapley_values(
    players: Sequence[str], value: Callable[[frozenset[str]], float], *, max_players: int = 12
) -> dict[str, float]:
    """Exact Shapley values of a cooperative game.

    ``phi_i = sum over coalitions S without i of |S|! (n - |S| - 1)! / n! (v(S + i) - v(S))``, by
    enumerating the ``2^n`` coalitions (each value computed once), so ``n`` is limited to
    ``max_players``. Efficiency (the values sum to ``v(N) - v({})``), symmetry, the null player and
    additivity hold exactly.

    Parameters
    ----------
    players
        Distinct player names.
    value
        Characteristic function, EUR, of a coalition (a frozenset of players).
    max_players
        Largest game accepted.
    """
    names = list(players)
    n = len(names)
    if len(set(names)) != n:
        raise OfferError("Shapley: players must be distinct")
    if n == 0:
        return {}
    if n > max_players:
        raise OfferError(f"Shapley: {n} players exceed the exact limit of {max_players} (2^n coalitions)")
    v = {}
    for mask in range(1 << n):
        members = frozenset(names[i] for i in range(n) if mask >> i & 1)
        v[mask] = float(value(members))
    fact = [math.factorial(k) for k in range(n + 1)]
    weight = [fact[k] * fact[n - k - 1] / fact[n] for k in range(n)]
    phi = dict.fromkeys(names, 0.0)
    for mask in range(1 << n):
        size = mask.bit_count()
        for i in range(n):
            if not mask >> i & 1:
                phi[names[i]] += weight[size] * (v[mask | (1 << i)] - v[mask])
    return phi


def pooled_reserve_game(
    reserve_kw: Mapping[str, float], price_eur_per_kw_year: float, *, min_bid_kw: float
) -> Callable[[frozenset[str]], float]:
    """Characteristic function of members pooling battery reserve for one bid.

    A coalition earns ``price x pooled kW`` if its pooled kW reach the market's minimum bid
    (``min_bid_kw``), nothing otherwise: members below the minimum alone earn only together, which
    is what a Shapley split rewards.
    """
    for k, kw in reserve_kw.items():
        _finite(kw, f"reserve of {k!r}")
    _finite(price_eur_per_kw_year, "price_eur_per_kw_year")
    _finite(min_bid_kw, "min_bid_kw")

    def v(coalition: frozenset[str]) -> float:
        kw = sum(reserve_kw[m] for m in coalition)
        return price_eur_per_kw_year * kw if kw >= min_bid_kw - 1e-12 and kw > 0 else 0.0

    return v


def split_revenue(
    total_eur: float,
    *,
    method: str,
    provider_share: float = 0.0,
    community_share: float = 0.0,
    shares: Mapping[str, float] | None = None,
    contributions: Mapping[str, float] | None = None,
    game: Callable[[frozenset[str]], float] | None = None,
    members: Sequence[str] | None = None,
) -> RevenueSplit:
    """The community's rule: the provider's share first, then the community's, the rest to members.

    Parameters
    ----------
    total_eur
        Gross stacked revenue, EUR.
    method
        ``fixed`` (``shares`` per member), ``pro_rata`` (``contributions`` per member) or ``shapley``
        (``game`` over ``members``: each member gets the rest in proportion to its Shapley value of the
        game; a game worth nothing splits equally).
    provider_share, community_share
        Shares (0-1) taken before the members'.

    Raises
    ------
    OfferError
        Unknown method, missing inputs, shares outside 0-1.
    """
    _finite(total_eur, "total_eur", minimum=None)
    _finite(provider_share, "provider_share", maximum=1.0)
    _finite(community_share, "community_share", maximum=1.0)
    if provider_share + community_share > 1.0 + 1e-12:
        raise OfferError("provider_share + community_share exceed 1")
    provider = total_eur * provider_share
    community = total_eur * community_share
    rest = total_eur - provider - community
    if method == "fixed":
        if not shares:
            raise OfferError("fixed split: give the members' shares")
        out = split_fixed(rest, shares)
    elif method == "pro_rata":
        if not contributions:
            raise OfferError("pro-rata split: give the members' contributions")
        out = split_pro_rata(rest, contributions)
    elif method == "shapley":
        if game is None or not members:
            raise OfferError("Shapley split: give the game and its members")
        phi = shapley_values(members, game)
        pos = {k: max(v, 0.0) for k, v in phi.items()}
        out = split_pro_rata(rest, pos)
    else:
        raise OfferError(f"revenue split: unknown method {method!r} (fixed, pro_rata, shapley)")
    return RevenueSplit(total_eur, provider, community, out, method)


# --------------------------------------------------------------------------------------------------
# Recommendations
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OfferRecommendation:
    """An offer in the order a member should see it, with the reason.

    Attributes
    ----------
    offer_id
        The offer.
    rank
        1 = first.
    score
        The ranking score (category fit + value).
    reason_code
        ``category:<archetype>:<feature>`` or ``value``.
    reason
        The reason shown (English; the web translates the code).
    """

    offer_id: str
    rank: int
    score: float
    reason_code: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "offer": self.offer_id,
            "rank": self.rank,
            "score": round(self.score, 3),
            "reasonCode": self.reason_code,
            "reason": self.reason,
        }


#: What each S-BRIGHT archetype looks for first, with the reason shown.
CATEGORY_PREFERENCES: Mapping[str, tuple[tuple[str, str], ...]] = {
    "tech_enthusiast": (
        ("automation_with_override", "automation you can override at any time suits a tech enthusiast"),
        ("low_carbon", "new technology that cuts emissions"),
    ),
    "cost_focused": (
        ("bill_protection", "protects your bill: a guaranteed saving or a capped price"),
        ("minimal_data", "earns money with little data shared"),
    ),
    "eco_committed": (
        ("low_carbon", "cuts your home's emissions"),
        ("community_benefit", "keeps local solar energy in the community"),
    ),
    "community_minded": (
        ("community_benefit", "run by and for your community"),
        ("care", "helps people of your community live at home safely"),
    ),
    "comfort_first": (
        ("comfort_guarantee", "your comfort is guaranteed whatever the market does"),
        ("care", "care that adapts to you"),
    ),
    "sceptical": (
        ("minimal_data", "asks for the least data and no device control"),
        ("bill_protection", "a fixed saving, no surprises"),
    ),
}


def recommend_offers(
    offers: Sequence[Offer],
    *,
    category: str | None,
    values_eur: Mapping[str, float] | None = None,
) -> list[OfferRecommendation]:
    """Order offers for a member of an S-BRIGHT category, with the reason shown.

    An offer carrying the category's first preferred feature scores 2, its second 1; the member's
    value of the offer (EUR/year, if known) breaks ties and orders the rest (scaled to at most 0.9,
    so a category match always comes first). Unknown or missing categories (``mainstream``) are
    ordered by value, then by the least data and control asked.
    """
    prefs = CATEGORY_PREFERENCES.get(category or "", ())
    vals = dict(values_eur or {})
    top = max((abs(v) for v in vals.values()), default=0.0) or 1.0
    scored = []
    for o in offers:
        score = 0.0
        code, reason = "value", ""
        for weight, (feature, why) in zip((2.0, 1.0), prefs, strict=False):
            if feature in o.features:
                score += weight
                if not reason:
                    code, reason = f"category:{category}:{feature}", why
        v = vals.get(o.id)
        if v is not None:
            score += 0.9 * v / top
            if not reason:
                reason = f"worth {v:.0f} EUR a year to you"
        else:
            score -= 0.01 * (len(o.data_needs) + len(o.control))
            if not reason:
                code, reason = "minimal", "asks for little data and control"
        scored.append((score, o.id, code, reason))
    scored.sort(key=lambda t: (-t[0], t[1]))
    return [
        OfferRecommendation(oid, i + 1, s, code, reason) for i, (s, oid, code, reason) in enumerate(scored)
    ]
