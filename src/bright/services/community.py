"""An energy community as the twin describes it: members, access points, sharing settings, readings.

The twin holds a community as NGSI-LD entities (see :mod:`bright.services.demo`):

- an ``EnergyCommunity`` with ``hasMember`` -> its ``EnergyProsumer`` members, its sharing method
  (``sharingMethod``), its allocation key and its prices (BRIGHT attributes, :data:`TERMS`);
- each ``EnergyProsumer`` (``memberOf`` the community, ``roleType`` consumer / producer / prosumer)
  ``isMeteredBy`` one ``Meter``: the access point, with its EAN (``accessPointId``) and its
  ``locality`` in the grid (``building``, ``lv_cabin``, ``substation`` or ``beyond``);
- on each Meter, the series ``offtake`` and ``injection`` (gross kWh per quarter-hour, both >= 0) in
  the :class:`~bright.twin.series.SeriesStore`.

:func:`load_community` reads all that once into a :class:`Community`; :func:`readings` reads the
meters of a period into :class:`~bright.energy.sharing.MeterReadings`, the input of every energy
computation. Forecasting, flexibility and the dashboard start from the same two calls.

Bad input is rejected with :class:`CommunityInputError` (an NGSI-LD ``BadRequestData``, so the API
answers ProblemDetails, and a ``ValueError``) whose message names the member, meter or attribute.
"""

from __future__ import annotations

import math
import re
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bright.energy.market import Tariff
from bright.energy.sharing import (
    AccessPoint,
    EnergyInputError,
    Locality,
    MeterReadings,
    Role,
    SharingKey,
    SharingMethod,
    TariffType,
    tariff_type,
)
from bright.twin.context import BRIGHT_NS
from bright.twin.entities import check_entity_id
from bright.twin.errors import BadRequestData, ResourceNotFound
from bright.twin.series import SeriesInfo, SeriesStore
from bright.twin.service import MAX_LIMIT, TwinService
from bright.twin.vocabulary import bright_context

__all__ = [
    "BRIGHT_NS",
    "LOCALITY_LEVELS",
    "PRICINGS",
    "TERMS",
    "Community",
    "CommunityInputError",
    "CommunityMember",
    "CommunitySummary",
    "check_tz",
    "community_tariff",
    "interval_setting",
    "list_communities",
    "load_community",
    "month_range",
    "parse_instant",
    "parse_method",
    "readings",
    "readings_span",
    "resolve_range",
]


#: Attributes this module reads or the energy services write that are not (yet) terms of the BRIGHT
#: @context: short term -> IRI. They are used by IRI, so adding the terms changes nothing here.
TERMS: dict[str, str] = {
    # EnergyCommunity: allocation and prices
    "sharingKey": BRIGHT_NS + "sharingKeyPercent",
    "hybridFixedFraction": BRIGHT_NS + "hybridFixedFraction",
    "pricingMethod": BRIGHT_NS + "pricingMethod",
    "communityPrice": BRIGHT_NS + "communityPriceEurPerKwh",
    "supplierEnergyPrice": BRIGHT_NS + "supplierEnergyPriceEurPerKwh",
    "feedInPrice": BRIGHT_NS + "feedInPriceEurPerKwh",
    "gridFee": BRIGHT_NS + "gridFeeEurPerKwh",
    "networkChargeReduction": BRIGHT_NS + "networkChargeReductionEurPerKwh",
    "auctionFee": BRIGHT_NS + "auctionFeeEurPerKwh",
    "emissionFactor": BRIGHT_NS + "emissionFactorKgPerKwh",
    # EnergyProsumer: limit prices in the double auction
    "bidPrice": BRIGHT_NS + "bidPriceEurPerKwh",
    "askPrice": BRIGHT_NS + "askPriceEurPerKwh",
    # Meter: sharing results (series)
    "sharedOfftake": BRIGHT_NS + "sharedOfftakeKwh",
    "sharedInjection": BRIGHT_NS + "sharedInjectionKwh",
    # KeyPerformanceIndicator
    "indicator": BRIGHT_NS + "indicator",
    "refEnergyCommunity": BRIGHT_NS + "refEnergyCommunity",
    "coverage": BRIGHT_NS + "coverage",
    "calculationMethod": "https://smartdatamodels.org/dataModel.KeyPerformanceIndicator/calculationMethod",
}

#: Grid levels an access point can share with the rest of its community, most local first.
LOCALITY_LEVELS = ("building", "lv_cabin", "substation", "beyond")
#: How the community prices its shared kWh (see :mod:`bright.energy.market`).
PRICINGS = ("fixed", "mid_market", "auction")
#: Spellings of the sharing methods accepted from the twin and from users (the SDM-style vocabulary
#: says ``max_sharing``; :mod:`bright.energy.sharing` says ``maximum``).
METHOD_ALIASES = {"max_sharing": SharingMethod.MAXIMUM, "max": SharingMethod.MAXIMUM}
#: How far back a price or emission-factor series is read to find the value in force at the start.
SETTING_LOOKBACK = pd.Timedelta(days=366)


class CommunityInputError(BadRequestData, ValueError):
    """The community in the twin, or a request about it, is not usable; the message names why.

    An NGSI-LD ``BadRequestData`` (HTTP 400 ProblemDetails in the API) and a ``ValueError``.
    """


@dataclass(frozen=True)
class CommunityMember:
    """One member of a community and its access point.

    Attributes
    ----------
    id : str
        Entity id of the member (its ``EnergyProsumer``); the column name of its readings.
    meter_id : str
        Entity id of the ``Meter`` of its access point, which holds its offtake/injection series.
    role : Role
        Which registers take part in the sharing (``roleType``; prosumer when not given).
    locality : str
        The most local grid level it shares with the community: ``building``, ``lv_cabin``,
        ``substation`` or ``beyond`` (``beyond`` when the meter does not say).
    name : str or None
        Display name.
    access_point_id : str or None
        EAN code of the access point (18 digits).
    bid_eur_per_kwh, ask_eur_per_kwh : float or None
        Limit prices in the double auction (EUR/kWh): most it pays for a shared kWh, least it accepts
        for one before the fee. None = does not take part on that side.
    """

    id: str
    meter_id: str
    role: Role = Role.PROSUMER
    locality: str = "beyond"
    name: str | None = None
    access_point_id: str | None = None
    bid_eur_per_kwh: float | None = None
    ask_eur_per_kwh: float | None = None


@dataclass(frozen=True)
class CommunitySummary:
    """A line of the list of communities: id, name, number of members, sharing method."""

    id: str
    name: str | None
    n_members: int
    sharing_method: str | None


@dataclass(frozen=True)
class Community:
    """An energy community loaded from the twin (see :func:`load_community`).

    Attributes
    ----------
    id : str
        Entity id of the ``EnergyCommunity``.
    tenant : str
        NGSI-LD tenant of its entities and series.
    name : str or None
        Display name.
    members : tuple of CommunityMember
        Its members, in ``hasMember`` order (then members found only by ``memberOf``).
    sharing_method : SharingMethod or None
        The allocation method the DSO applies (``sharingMethod``).
    sharing_key : SharingKey or None
        The fixed allocation key over member ids (``sharingKey``, percent per member).
    hybrid_fixed_fraction : float
        Hybrid method: fraction of the pool allocated by the fixed key first (dimensionless, 0..1).
    pricing : str or None
        Default pricing of the shared kWh: ``fixed``, ``mid_market`` or ``auction``.
    settings : mapping of str to float
        Constant prices and factors by attribute IRI (EUR/kWh; kgCO2e/kWh for the emission factor).
    setting_series : frozenset of str
        Attribute IRIs that have a time series on the community entity (dynamic prices, hourly
        emission factors); a series takes precedence over the constant.
    network_reduction_eur_per_kwh : mapping of TariffType to float
        Network-charge reduction per shared kWh by tariff type (EUR/kWh).
    resolution : pandas.Timedelta
        Length of the settlement interval of the readings (15 min by default).
    twin, series : TwinService, SeriesStore
        Where the community was read from (results are written back there).
    """

    id: str
    tenant: str
    name: str | None
    members: tuple[CommunityMember, ...]
    sharing_method: SharingMethod | None
    sharing_key: SharingKey | None
    hybrid_fixed_fraction: float
    pricing: str | None
    settings: Mapping[str, float]
    setting_series: frozenset[str]
    network_reduction_eur_per_kwh: Mapping[TariffType, float]
    resolution: pd.Timedelta
    twin: TwinService = field(repr=False, compare=False)
    series: SeriesStore = field(repr=False, compare=False)

    @property
    def member_ids(self) -> tuple[str, ...]:
        """Member entity ids, in column order of the readings."""
        return tuple(m.id for m in self.members)

    @property
    def meter_ids(self) -> tuple[str, ...]:
        """Meter entity ids, in member order."""
        return tuple(m.meter_id for m in self.members)

    def member(self, member_id: str) -> CommunityMember:
        """The member with entity id (or meter id, or EAN) ``member_id``.

        Raises
        ------
        ResourceNotFound
            If no member has that id.
        """
        for m in self.members:
            if member_id in (m.id, m.meter_id, m.access_point_id):
                return m
        raise ResourceNotFound(f"community {self.id} has no member {member_id!r}")

    def access_points(self) -> tuple[AccessPoint, ...]:
        """The members as access points of :mod:`bright.energy.sharing` (role and locality).

        The twin gives each meter the most local grid level it shares with the community; this is
        turned into grid identifiers common to the members at that level: a ``building`` member is
        in the community's building, LV cabin and substation; an ``lv_cabin`` member in its cabin and
        substation only; ``beyond`` shares none. A group's tariff type (A-D) is then its least
        local level, coalitions of the fairness game included.
        """
        return tuple(AccessPoint(m.id, m.role, _locality(self.id, m.locality)) for m in self.members)

    @property
    def group_type(self) -> TariffType:
        """Brussels tariff type of the whole community (A = one building ... D = beyond)."""
        return tariff_type(self.access_points())

    def setting(self, term: str) -> float | None:
        """Constant value of a price or factor attribute (short term of :data:`TERMS`), or None."""
        return self.settings.get(TERMS.get(term, term))


def _locality(community_id: str, level: str) -> Locality:
    rank = LOCALITY_LEVELS.index(level)
    return Locality(
        building=f"{community_id}#building" if rank <= 0 else None,
        lv_cabin=f"{community_id}#lv_cabin" if rank <= 1 else None,
        substation=f"{community_id}#substation" if rank <= 2 else None,
    )


# --------------------------------------------------------------------------------------------------
# Reading entities
# --------------------------------------------------------------------------------------------------


def _iri(term: str) -> str:
    return bright_context().expand(term)


def _instance(doc: Mapping[str, Any], iri: str) -> dict[str, Any] | None:
    """The default instance (no datasetId) of an attribute, else its first one."""
    instances = doc.get("attrs", {}).get(iri)
    if not instances:
        return None
    for inst in instances:
        if "datasetId" not in inst:
            return dict(inst)
    return dict(instances[0])


def _value(doc: Mapping[str, Any], iri: str) -> Any:
    inst = _instance(doc, iri)
    if inst is None:
        return None
    for key in ("value", "object", "json", "vocab", "valueList", "objectList"):
        if key in inst:
            return inst[key]
    return None


def _objects(doc: Mapping[str, Any], iri: str) -> list[str]:
    out: list[str] = []
    for inst in doc.get("attrs", {}).get(iri, []):
        obj = inst.get("object", inst.get("objectList"))
        if isinstance(obj, list):
            out.extend(str(o) for o in obj)
        elif obj is not None:
            out.append(str(obj))
    return list(dict.fromkeys(out))


def _number(value: Any, what: str, *, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CommunityInputError(f"{what} is {value!r}; it must be a finite number")
    if minimum is not None and value < minimum:
        raise CommunityInputError(f"{what} is {value}; it must be >= {minimum:g}")
    return float(value)


def _query(twin: TwinService, tenant: str, params: dict[str, str]) -> list[dict[str, Any]]:
    """Every entity matching NGSI-LD query parameters (BRIGHT @context), page by page."""
    out: list[dict[str, Any]] = []
    offset = 0
    while True:
        eq = twin.build_query({**params, "limit": str(MAX_LIMIT), "offset": str(offset)}, bright_context())
        docs, _ = twin.store.query(tenant, eq)
        out.extend(docs)
        if len(docs) < MAX_LIMIT:
            return out
        offset += MAX_LIMIT


def list_communities(
    twin: TwinService, *, tenant: str = "", limit: int = 100, offset: int = 0
) -> list[CommunitySummary]:
    """The energy communities of a tenant, in creation order.

    Parameters
    ----------
    twin : TwinService
        The node's entities.
    tenant : str
        NGSI-LD tenant ('' = default).
    limit, offset : int
        Page of the list (limit 1..1000).

    Raises
    ------
    CommunityInputError
        On a limit out of 1..1000 or a negative offset.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise CommunityInputError(f"limit must be within 1..{MAX_LIMIT}, got {limit}")
    if offset < 0:
        raise CommunityInputError(f"offset must be >= 0, got {offset}")
    if not twin.store.tenant_exists(tenant):
        return []
    eq = twin.build_query(
        {"type": "EnergyCommunity", "limit": str(limit), "offset": str(offset)}, bright_context()
    )
    docs, _ = twin.store.query(tenant, eq)
    method = _iri("sharingMethod")
    return [
        CommunitySummary(
            id=d["id"],
            name=_text(_value(d, _iri("name"))),
            n_members=len(_objects(d, _iri("hasMember"))),
            sharing_method=_text(_value(d, method)),
        )
        for d in docs
    ]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def parse_method(value: Any, *, what: str = "sharing method") -> SharingMethod:
    """A sharing method from its name (``fixed``, ``fixed_multi_round``, ``pro_rata``, ``hybrid``,
    ``maximum``; ``max_sharing`` is accepted for ``maximum``).

    Raises
    ------
    CommunityInputError
        For an unknown name (the message lists the known ones).
    """
    text = str(value).strip()
    if text in METHOD_ALIASES:
        return METHOD_ALIASES[text]
    try:
        return SharingMethod(text)
    except ValueError:
        known = ", ".join(m.value for m in SharingMethod)
        raise CommunityInputError(f"{what} {text!r} is unknown; use one of {known}") from None


def load_community(
    twin: TwinService,
    series: SeriesStore,
    community_id: str,
    *,
    tenant: str = "",
    resolution: str | pd.Timedelta = "15min",
) -> Community:
    """Read a community, its members, their access points and its sharing settings from the twin.

    Parameters
    ----------
    twin : TwinService
        The node's entities.
    series : SeriesStore
        The node's time series (meters' readings, price series of the community).
    community_id : str
        Entity id of the ``EnergyCommunity``.
    tenant : str
        NGSI-LD tenant ('' = default).
    resolution : str or pandas.Timedelta
        Settlement interval of the readings (default 15 min, the Belgian settlement period).

    Returns
    -------
    Community

    Raises
    ------
    ResourceNotFound
        No such community (or tenant), or the entity is not an EnergyCommunity.
    CommunityInputError
        A member that does not exist, has no meter or shares its meter with another member; an
        unknown role, locality or sharing method; a key that names no member or does not sum to
        100 %; a price that is not a number. The message names the member, meter or attribute.
    """
    check_entity_id(community_id)
    step = _resolution(resolution)
    doc = twin.store.get(tenant, community_id)
    if doc is None:  # a tenant exists while it has an entity: asked only on a miss (one query less)
        if not twin.store.tenant_exists(tenant):
            raise ResourceNotFound(f"tenant {tenant!r} not found")
        raise ResourceNotFound(f"community {community_id} not found")
    if _iri("EnergyCommunity") not in doc.get("type", []):
        raise ResourceNotFound(f"entity {community_id} is not an EnergyCommunity")

    listed = _objects(doc, _iri("hasMember"))
    by_relation = [
        d["id"] for d in _query(twin, tenant, {"q": f'memberOf=="{community_id}"'}) if d["id"] not in listed
    ]
    member_ids = listed + by_relation
    if not member_ids:
        raise CommunityInputError(f"community {community_id} has no member (hasMember is empty)")
    member_docs = twin.store.get_many(tenant, member_ids)
    for mid in member_ids:
        if mid not in member_docs:
            raise CommunityInputError(f"member {mid} listed in hasMember of {community_id} does not exist")
    meter_of: dict[str, str] = {}
    for mid in member_ids:
        meters = _objects(member_docs[mid], _iri("isMeteredBy"))
        if not meters:
            raise CommunityInputError(f"member {mid} of community {community_id} has no meter (isMeteredBy)")
        if len(meters) > 1:
            raise CommunityInputError(
                f"member {mid} has {len(meters)} meters ({', '.join(meters)}); one access point per member"
            )
        meter_of[mid] = meters[0]
    seen: dict[str, str] = {}
    for mid, meter in meter_of.items():
        if meter in seen:
            raise CommunityInputError(f"members {seen[meter]} and {mid} share the meter {meter}")
        seen[meter] = mid
    meter_docs = twin.store.get_many(tenant, list(meter_of.values()))
    members = tuple(
        _member(mid, member_docs[mid], meter_of[mid], meter_docs.get(meter_of[mid])) for mid in member_ids
    )

    method_raw = _value(doc, _iri("sharingMethod"))
    method = None if method_raw is None else parse_method(method_raw, what=f"sharingMethod of {community_id}")
    key = _key(doc, community_id, members)
    fraction_raw = _value(doc, TERMS["hybridFixedFraction"])
    fraction = 1.0
    if fraction_raw is not None:
        fraction = _number(fraction_raw, f"hybridFixedFraction of {community_id}", minimum=0.0)
        if fraction > 1.0:
            raise CommunityInputError(f"hybridFixedFraction of {community_id} is {fraction}; it must be <= 1")
    pricing = _text(_value(doc, TERMS["pricingMethod"]))
    if pricing is not None and pricing not in PRICINGS:
        raise CommunityInputError(
            f"pricingMethod of {community_id} is {pricing!r}; use one of {', '.join(PRICINGS)}"
        )
    settings: dict[str, float] = {}
    for term in (
        "communityPrice",
        "supplierEnergyPrice",
        "feedInPrice",
        "gridFee",
        "auctionFee",
        "emissionFactor",
    ):
        raw = _value(doc, TERMS[term])
        if raw is not None:
            settings[TERMS[term]] = _number(raw, f"{term} of {community_id}")
    reductions = _reductions(doc, community_id)
    setting_series = frozenset(
        info.attribute
        for info in series.series(tenant, entity_id=community_id)
        if info.dataset_id is None and info.attribute in TERMS.values()
    )
    return Community(
        id=community_id,
        tenant=tenant,
        name=_text(_value(doc, _iri("name"))),
        members=members,
        sharing_method=method,
        sharing_key=key,
        hybrid_fixed_fraction=fraction,
        pricing=pricing,
        settings=settings,
        setting_series=setting_series,
        network_reduction_eur_per_kwh=reductions,
        resolution=step,
        twin=twin,
        series=series,
    )


def _resolution(value: str | pd.Timedelta) -> pd.Timedelta:
    try:
        step = pd.Timedelta(value)
    except (ValueError, TypeError):
        raise CommunityInputError(f"resolution {value!r} is not a duration") from None
    if step <= pd.Timedelta(0) or pd.Timedelta(days=1) % step != pd.Timedelta(0):
        raise CommunityInputError(f"resolution {value!r} must divide a day (15min, 1h ...)")
    return step


def _member(mid: str, doc: dict[str, Any], meter_id: str, meter: dict[str, Any] | None) -> CommunityMember:
    if meter is None:
        raise CommunityInputError(f"meter {meter_id} of member {mid} does not exist")
    role_raw = _value(doc, _iri("roleType"))
    try:
        role = Role(str(role_raw)) if role_raw is not None else Role.PROSUMER
    except ValueError:
        raise CommunityInputError(
            f"roleType of member {mid} is {role_raw!r}; use consumer, producer or prosumer"
        ) from None
    level = _value(meter, _iri("locality"))
    level = "beyond" if level is None else str(level)
    if level not in LOCALITY_LEVELS:
        raise CommunityInputError(
            f"locality of meter {meter_id} is {level!r}; use one of {', '.join(LOCALITY_LEVELS)}"
        )
    bid = _value(doc, TERMS["bidPrice"])
    ask = _value(doc, TERMS["askPrice"])
    return CommunityMember(
        id=mid,
        meter_id=meter_id,
        role=role,
        locality=level,
        name=_text(_value(doc, _iri("name"))),
        access_point_id=_text(_value(meter, _iri("accessPointId"))),
        bid_eur_per_kwh=None if bid is None else _number(bid, f"bidPrice of member {mid}"),
        ask_eur_per_kwh=None if ask is None else _number(ask, f"askPrice of member {mid}"),
    )


def _key(doc: dict[str, Any], community_id: str, members: Sequence[CommunityMember]) -> SharingKey | None:
    """The allocation key: percent per member, members named by entity id, meter id or EAN."""
    raw = _value(doc, TERMS["sharingKey"])
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not raw:
        raise CommunityInputError(
            f"sharingKey of {community_id} must be an object {{member id: percent}}, got {raw!r}"
        )
    names: dict[str, str] = {}
    for m in members:
        for alias in (m.id, m.meter_id, m.access_point_id):
            if alias:
                names[alias] = m.id
    percents: dict[str, float] = {}
    for who, pct in raw.items():
        if who not in names:
            raise CommunityInputError(f"sharingKey of {community_id} names {who!r}, which is not a member")
        member = names[who]
        if member in percents:
            raise CommunityInputError(f"sharingKey of {community_id} names member {member} twice")
        percents[member] = _number(pct, f"sharingKey of member {who}", minimum=0.0)
    try:
        return SharingKey.from_percent(percents)
    except EnergyInputError as exc:
        raise CommunityInputError(f"sharingKey of {community_id}: {exc}") from None


def _reductions(doc: dict[str, Any], community_id: str) -> dict[TariffType, float]:
    raw = _value(doc, TERMS["networkChargeReduction"])
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise CommunityInputError(
            f"networkChargeReduction of {community_id} must be an object {{'A'..'D': EUR/kWh}}, got {raw!r}"
        )
    out: dict[TariffType, float] = {}
    for kind, value in raw.items():
        try:
            tt = TariffType(str(kind))
        except ValueError:
            raise CommunityInputError(
                f"networkChargeReduction of {community_id} has tariff type {kind!r}; use A, B, C or D"
            ) from None
        out[tt] = _number(value, f"networkChargeReduction {kind} of {community_id}", minimum=0.0)
    return out


# --------------------------------------------------------------------------------------------------
# Time
# --------------------------------------------------------------------------------------------------


def check_tz(tz: str) -> str:
    """``tz`` if it is an IANA time-zone name, else :class:`CommunityInputError`."""
    try:
        zoneinfo.ZoneInfo(str(tz))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise CommunityInputError(f"tz {tz!r} is not an IANA time zone (e.g. Europe/Brussels, UTC)") from None
    return str(tz)


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")


def parse_instant(value: Any, *, tz: str = "Europe/Brussels", what: str = "start") -> pd.Timestamp:
    """A UTC timestamp from an ISO 8601 date or date-time.

    Parameters
    ----------
    value : str, datetime or pandas.Timestamp
        ``2016-06-01`` (local midnight in ``tz``), ``2016-06-01T10:15`` (local time in ``tz``) or a
        date-time with a zone (``...Z``, ``...+02:00``).
    tz : str
        Zone of dates and naive date-times.
    what : str
        Name of the parameter, for error messages.

    Raises
    ------
    CommunityInputError
        If the value is not such a date or date-time, or a local time does not exist (DST gap).
    """
    if isinstance(value, str):
        text = value.strip()
        if not _DATE_RE.match(text):
            raise CommunityInputError(f"{what} {value!r} is not an ISO 8601 date or date-time")
        value = text
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        raise CommunityInputError(f"{what} {value!r} is not an ISO 8601 date or date-time") from None
    if ts is pd.NaT:
        raise CommunityInputError(f"{what} {value!r} is not a date-time")
    if ts.tzinfo is None:
        try:
            ts = ts.tz_localize(check_tz(tz), ambiguous="raise", nonexistent="raise")
        except (ValueError, pd.errors.OutOfBoundsDatetime) as exc:
            raise CommunityInputError(
                f"{what} {value!r} does not exist or is ambiguous in {tz}: {exc}"
            ) from None
    return ts.tz_convert("UTC")


def month_range(month: str, *, tz: str = "Europe/Brussels") -> tuple[pd.Timestamp, pd.Timestamp]:
    """Start and end (exclusive, UTC) of a local calendar month ``YYYY-MM``.

    Raises
    ------
    CommunityInputError
        If ``month`` is not ``YYYY-MM``.
    """
    if not isinstance(month, str) or not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month.strip()):
        raise CommunityInputError(f"month {month!r} is not YYYY-MM")
    start = pd.Timestamp(f"{month.strip()}-01").tz_localize(check_tz(tz))
    return start.tz_convert("UTC"), (start + pd.offsets.MonthBegin(1)).tz_convert("UTC")


def resolve_range(
    start: Any = None,
    end: Any = None,
    *,
    month: str | None = None,
    tz: str = "Europe/Brussels",
) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """The period asked by a user: ``start``/``end`` (ISO 8601) or a local ``month``.

    Returns
    -------
    start, end : pandas.Timestamp or None
        UTC bounds of ``[start, end)``; None leaves a side to the readings' span.

    Raises
    ------
    CommunityInputError
        Unparseable values, a month given together with start/end, or ``end <= start``.
    """
    if month is not None:
        if start is not None or end is not None:
            raise CommunityInputError("give either month or start/end, not both")
        return month_range(month, tz=tz)
    lo = None if start is None else parse_instant(start, tz=tz, what="start")
    hi = None if end is None else parse_instant(end, tz=tz, what="end")
    if lo is not None and hi is not None and hi <= lo:
        raise CommunityInputError(f"end {hi.isoformat()} must be after start {lo.isoformat()}")
    return lo, hi


# --------------------------------------------------------------------------------------------------
# Readings
# --------------------------------------------------------------------------------------------------


def _catalogue(community: Community, attribute: str) -> dict[str, SeriesInfo]:
    """The default-instance series of ``attribute`` on the community's meters."""
    meters = set(community.meter_ids)
    return {
        info.entity_id: info
        for info in community.series.series(community.tenant, attribute=attribute)
        if info.entity_id in meters and info.dataset_id is None and info.first is not None
    }


def _optional_register(member: CommunityMember, attribute: str) -> bool:
    """A register that does not exist for the member's role: a consumer-only access point has no
    injection register, a producer-only one no offtake register (their readings are 0 kWh)."""
    return (member.role is Role.CONSUMER and attribute == _iri("injection")) or (
        member.role is Role.PRODUCER and attribute == _iri("offtake")
    )


def readings_span(community: Community) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The period ``[start, end)`` (UTC) that every member's offtake and injection series cover.

    Returns None when a required series is missing or the series do not overlap.
    """
    try:
        return _span(community, None, None)
    except CommunityInputError:
        return None


def _span(
    community: Community, start: pd.Timestamp | None, end: pd.Timestamp | None
) -> tuple[pd.Timestamp, pd.Timestamp]:
    step = community.resolution
    firsts: list[tuple[pd.Timestamp, str]] = []
    lasts: list[tuple[pd.Timestamp, str]] = []
    for attribute, label in ((_iri("offtake"), "offtake"), (_iri("injection"), "injection")):
        found = _catalogue(community, attribute)
        for m in community.members:
            info = found.get(m.meter_id)
            if info is None:
                if _optional_register(m, attribute):
                    continue
                raise CommunityInputError(
                    f"member {m.id} (meter {m.meter_id}) has no {label} readings in the twin"
                )
            assert info.first is not None and info.last is not None
            span = f"{info.first.isoformat()} .. {info.last.isoformat()}"
            if start is not None and info.first > start:
                raise CommunityInputError(
                    f"member {m.id} (meter {m.meter_id}): {label} readings start at "
                    f"{info.first.isoformat()}, after the requested start {start.isoformat()} "
                    f"(its readings cover {span})"
                )
            if end is not None and info.last + step < end:
                raise CommunityInputError(
                    f"member {m.id} (meter {m.meter_id}): {label} readings end at {info.last.isoformat()}, "
                    f"before the requested end {end.isoformat()} (its readings cover {span})"
                )
            firsts.append((info.first, f"{m.id} ({label})"))
            lasts.append((info.last, f"{m.id} ({label})"))
    if not firsts:
        raise CommunityInputError(f"community {community.id} has no readings")
    lo = start if start is not None else max(firsts)[0]
    hi = end if end is not None else min(lasts)[0] + step
    if hi <= lo:
        late, early = max(firsts), min(lasts)
        if start is not None:
            raise CommunityInputError(
                f"readings of member {early[1]} end at {early[0].isoformat()}, before the requested "
                f"start {start.isoformat()}"
            )
        if end is not None:
            raise CommunityInputError(
                f"readings of member {late[1]} start at {late[0].isoformat()}, after the requested "
                f"end {end.isoformat()}"
            )
        raise CommunityInputError(
            f"the members' readings do not overlap: {late[1]} starts at {late[0].isoformat()}, "
            f"{early[1]} ends at {early[0].isoformat()}"
        )
    return lo, hi


def _aligned(ts: pd.Timestamp, step: pd.Timedelta, what: str) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    if ts.tzinfo is None:
        raise CommunityInputError(f"{what} {ts} has no time zone; give a timezone-aware instant")
    ts = ts.tz_convert("UTC")
    if (ts - pd.Timestamp(0, tz="UTC")) % step != pd.Timedelta(0):
        raise CommunityInputError(f"{what} {ts.isoformat()} is not on the {step} grid of the readings")
    return ts


def readings(community: Community, start: Any = None, end: Any = None) -> MeterReadings:
    """Gross offtake and injection of every member over ``[start, end)``, on the community's grid.

    Parameters
    ----------
    community : Community
        The community (from :func:`load_community`).
    start, end : pandas.Timestamp, datetime or ISO 8601 string with a zone, optional
        Bounds of the period (UTC or any zone, on the resolution grid). None: the span that every
        member's readings cover (:func:`readings_span`).

    Returns
    -------
    MeterReadings
        kWh per interval, columns = member ids (``community.member_ids``), index = interval starts
        (UTC). A value missing in the twin is NaN (never 0); the registers a role does not have (a
        consumer's injection, a producer's offtake) are 0 kWh when no series exists for them.

    Raises
    ------
    CommunityInputError
        A member without offtake or injection readings, readings that do not cover the requested
        period (mismatched ranges: the message names the member and its span), readings off the
        grid, a negative reading (member and interval named).
    """
    step = community.resolution
    lo = None if start is None else _aligned(_timestamp(start, "start"), step, "start")
    hi = None if end is None else _aligned(_timestamp(end, "end"), step, "end")
    if lo is not None and hi is not None and hi <= lo:
        raise CommunityInputError(f"end {hi.isoformat()} must be after start {lo.isoformat()}")
    bounded = lo is not None and hi is not None
    if lo is None or hi is None:
        lo, hi = _span(community, lo, hi)
    terms = ("offtake", "injection")
    raws = {
        term: community.series.read(list(community.meter_ids), _iri(term), lo, hi, tenant=community.tenant)
        for term in terms
    }
    if bounded and not _covers(community, raws, lo, hi):
        _span(community, lo, hi)  # the catalogue names the member whose readings do not cover the period
    grid = pd.date_range(lo, hi, freq=step, inclusive="left", name="time")
    grid_us = np.asarray(grid.as_unit("us").asi8, dtype=np.int64)
    step_us = step // pd.Timedelta(microseconds=1)
    values: dict[str, np.ndarray] = {}
    for term in terms:
        attribute = _iri(term)
        raw = raws[term]
        times = pd.DatetimeIndex(raw.index)
        t_us = np.asarray(times.as_unit("us").asi8, dtype=np.int64)
        if t_us.size == grid_us.size and np.array_equal(t_us, grid_us):
            array = raw.to_numpy(dtype=np.float64, copy=True)  # the usual case: every interval stored
        else:
            off = ((t_us - grid_us[0]) % step_us != 0) | (t_us < grid_us[0]) | (t_us > grid_us[-1])
            if off.any():
                extra = times[off]
                column = raw.loc[extra].notna().any(axis=0)
                meter = column.index[column.to_numpy()][0] if column.any() else raw.columns[0]
                raise CommunityInputError(
                    f"meter {meter}: {term} reading at {extra[0].isoformat()} is off the {step} grid of "
                    f"community {community.id}; aggregate it to {step} first"
                )
            array = np.full((grid_us.size, raw.shape[1]), np.nan)
            array[(t_us - grid_us[0]) // step_us] = raw.to_numpy(dtype=np.float64)
        present = {k for k, v in raw.attrs.get("kinds", {}).items() if v is not None}
        for j, m in enumerate(community.members):
            if m.meter_id not in present and _optional_register(m, attribute):
                array[:, j] = 0.0
        values[term] = array
    try:
        return MeterReadings(community.member_ids, values["offtake"], values["injection"], grid)
    except EnergyInputError as exc:
        raise CommunityInputError(f"readings of community {community.id}: {exc}") from None


def _covers(
    community: Community, raws: Mapping[str, pd.DataFrame], lo: pd.Timestamp, hi: pd.Timestamp
) -> bool:
    """True when the frames read show that :func:`_span` would accept ``[lo, hi)`` (no catalogue query).

    Every register with a series has a value at ``lo`` and at the last interval before ``hi``,
    and every register a member's role requires has a series; otherwise False (the caller then asks
    the catalogue, which names the culprit).
    """
    last = hi - community.resolution
    checked = 0
    for term, raw in raws.items():
        attribute = _iri(term)
        if raw.empty or raw.index[0] != lo or raw.index[-1] != last:
            return False
        kinds = raw.attrs.get("kinds", {})
        table = raw.to_numpy(dtype=np.float64)
        ends = np.isnan(table[0]) | np.isnan(table[-1])
        for j, m in enumerate(community.members):
            if kinds.get(m.meter_id) is None:
                if _optional_register(m, attribute):
                    continue
                return False
            if ends[j]:
                return False
            checked += 1
    return checked > 0


def _timestamp(value: Any, what: str) -> pd.Timestamp:
    if isinstance(value, str) and (
        not _DATE_RE.match(value.strip()) or not re.search(r"(Z|[+-]\d{2}:?\d{2})$", value.strip())
    ):
        raise CommunityInputError(f"{what} {value!r} is not an ISO 8601 date-time with a zone")
    try:
        return pd.Timestamp(value)
    except (ValueError, TypeError):
        raise CommunityInputError(f"{what} {value!r} is not a date-time") from None


# --------------------------------------------------------------------------------------------------
# Prices and factors
# --------------------------------------------------------------------------------------------------


def interval_setting(community: Community, term: str, index: pd.DatetimeIndex) -> float | np.ndarray | None:
    """A price or factor of the community per interval: its series if it has one, else its constant.

    Parameters
    ----------
    community : Community
        The community.
    term : str
        Short term of :data:`TERMS` (``supplierEnergyPrice``, ``feedInPrice``, ``gridFee``,
        ``communityPrice``, ``auctionFee``, ``emissionFactor``).
    index : pandas.DatetimeIndex
        Interval starts of the readings (UTC).

    Returns
    -------
    float, ndarray (n_intervals,) or None
        The constant (EUR/kWh, or kgCO2e/kWh), the series' value in force at each interval start
        (a value holds until the next one, at most as long as the series' largest step), or None
        when the community sets neither.

    Raises
    ------
    CommunityInputError
        If the series does not cover an interval (the message names the attribute and interval).
    """
    iri = TERMS[term]
    if iri not in community.setting_series:
        return community.settings.get(iri)
    if len(index) == 0:
        return np.empty(0)
    raw = community.series.read(
        community.id,
        iri,
        index[0] - SETTING_LOOKBACK,
        index[-1] + community.resolution,
        tenant=community.tenant,
    )[community.id].dropna()
    times = pd.DatetimeIndex(raw.index)
    if raw.empty:
        raise CommunityInputError(
            f"{term} series of {community.id} has no value before {index[-1].isoformat()}"
        )
    # a value holds until the next one, at most as long as the series' largest step
    hold = pd.Timedelta(np.diff(times.to_numpy()).max()) if len(times) > 1 else SETTING_LOOKBACK
    position = times.searchsorted(index, side="right") - 1
    values = raw.to_numpy()[np.clip(position, 0, None)]
    since: pd.TimedeltaIndex = index - times[np.clip(position, 0, None)]
    stale = (position < 0) | (since >= hold)
    if stale.any():
        t = index[int(np.flatnonzero(stale)[0])]
        raise CommunityInputError(f"{term} series of {community.id} has no value in force at {t.isoformat()}")
    return np.asarray(values, dtype=np.float64)


def community_tariff(
    community: Community,
    index: pd.DatetimeIndex,
    *,
    supplier_energy_eur_per_kwh: float | None = None,
    feed_in_eur_per_kwh: float | None = None,
    grid_fee_eur_per_kwh: float | None = None,
) -> Tariff:
    """The outside prices of the community per interval, as :class:`~bright.energy.market.Tariff`.

    Parameters
    ----------
    community : Community
        The community; its ``supplierEnergyPrice``, ``feedInPrice``, ``gridFee`` (constants or
        series) and ``networkChargeReduction`` are used.
    index : pandas.DatetimeIndex
        Interval starts of the readings (UTC).
    supplier_energy_eur_per_kwh, feed_in_eur_per_kwh, grid_fee_eur_per_kwh : float, optional
        Constant overrides (EUR/kWh), e.g. from a request.

    Raises
    ------
    CommunityInputError
        If the supplier's energy price or the feed-in value is set neither in the twin nor here.
        An absent grid fee is 0 EUR/kWh (it is due with or without the community, so it changes
        bills, not savings); an absent network-charge reduction is 0 for every tariff type.
    """
    energy = (
        supplier_energy_eur_per_kwh
        if supplier_energy_eur_per_kwh is not None
        else interval_setting(community, "supplierEnergyPrice", index)
    )
    feed_in = (
        feed_in_eur_per_kwh
        if feed_in_eur_per_kwh is not None
        else interval_setting(community, "feedInPrice", index)
    )
    fee = (
        grid_fee_eur_per_kwh
        if grid_fee_eur_per_kwh is not None
        else interval_setting(community, "gridFee", index)
    )
    for value, term in ((energy, "supplierEnergyPrice"), (feed_in, "feedInPrice")):
        if value is None:
            raise CommunityInputError(
                f"community {community.id} has no {term} ({TERMS[term]}); set it on the EnergyCommunity "
                "entity (EUR/kWh, a number or a series) or pass it with the request"
            )
    assert energy is not None and feed_in is not None
    return Tariff(energy, feed_in, 0.0 if fee is None else fee, dict(community.network_reduction_eur_per_kwh))
