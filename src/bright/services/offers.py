"""B-BRIGHT use case: service offers around flexibility, members' bundles, consents and grants.

Providers publish offers as NGSI-LD ``ServiceOffer`` entities whose property ``odrl`` carries the
terms as an ODRL 2.2 ``Offer`` (what the provider may read and control, for which purpose) and whose
property ``terms`` carries the economic terms (:meth:`bright.energy.offers.Offer.to_json`).

Subscribing a member records

* a ``Consent`` (``urn:ngsi-ld:Consent:<member slug>:<purpose slug>``, relationships ``member`` and
  ``community``, ``purpose`` = ``offer:<offer id>``, ``grantedAt``, ``revokedAt`` once unsubscribed), and
* an ODRL ``Agreement`` in a ``DataPolicy`` entity (``urn:ngsi-ld:DataPolicy:<slug>``, property ``odrl``,
  relationship ``community``): one ``read`` permission per data stream (target: the member's meter or
  device entity, or ``<entity id>#<attribute>``) and one ``https://w3id.org/bright/odrl#control``
  permission per control right (target: the device entity; the daily window as an action
  refinement ``https://w3id.org/bright/odrl#hourOfDay``), each with ``assignee`` = the provider,
  ``purpose`` = ``offer:<offer id>`` and ``dateTime`` bounds (the subscription period).

:meth:`OfferService.check_grant` decides a provider's read or control request against the stored
Agreements and Consents (the node's general policy engine reads the same entities; the daily window
is checked here because ODRL has no hour-of-day operand). Revenue splits are settled in the same
monthly statement layout as energy sharing and recorded in the ledger as activation records.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from bright import datasets
from bright.energy.flex.devices import Battery, ElectricVehicle, EVSession, GridConnection, HeatPump
from bright.energy.offers import (
    BuildingUpgrade,
    BundleComparison,
    ComfortBound,
    ControlRight,
    DataNeed,
    MemberHome,
    Offer,
    OfferError,
    RevenueSplit,
    ValueStream,
    evaluate_bundles,
    recommend_offers,
)
from bright.twin.context import BRIGHT_CONTEXT_URL
from bright.twin.entities import check_entity_id
from bright.twin.errors import BadRequestData, Forbidden, NgsiLdError, ResourceNotFound
from bright.twin.service import MAX_LIMIT, TwinService
from bright.twin.vocabulary import bright_context

ODRL_CONTEXT = "http://www.w3.org/ns/odrl.jsonld"
CONTROL = "https://w3id.org/bright/odrl#control"
HOUR_OF_DAY = "https://w3id.org/bright/odrl#hourOfDay"
OFFER_PREFIX = "urn:ngsi-ld:ServiceOffer:"
CONSENT_PREFIX = "urn:ngsi-ld:Consent:"
POLICY_PREFIX = "urn:ngsi-ld:DataPolicy:"
TZ = "Europe/Brussels"


class OfferInputError(BadRequestData, ValueError):
    """Bad offer terms or request (400, ProblemDetails naming the field)."""


class GrantDenied(Forbidden, PermissionError):
    """A provider asked for data or control its agreement does not grant (403, names the agreement).

    The ProblemDetails carry ``agreement`` (and ``policy``, as the node's other 403 answers) = the
    closest Agreement's id, None when the provider has none.
    """

    title = "Not granted by the member's agreement"

    def __init__(self, detail: str, *, agreement: str | None = None) -> None:
        super().__init__(detail, agreement=agreement, policy=agreement)
        self.agreement = agreement


def slug(text: str) -> str:
    """``urn:ngsi-ld:EnergyProsumer:m-01`` -> ``m-01``; ``offer:urn:...:fcr`` -> ``offer-fcr``."""
    tail = text.split(":", 3)[-1] if text.startswith("urn:ngsi-ld:") else text
    return re.sub(r"[^A-Za-z0-9._\-]+", "-", tail).strip("-") or "x"


def purpose_of(offer_id: str) -> str:
    """The consent purpose of an offer: ``offer:<offer id>``."""
    return f"offer:{offer_id}"


def consent_id(member_id: str, offer_id: str) -> str:
    """``urn:ngsi-ld:Consent:<member slug>:<purpose slug>``."""
    return f"{CONSENT_PREFIX}{slug(member_id)}:{slug('offer-' + slug(offer_id))}"


def agreement_id(member_id: str, offer_id: str) -> str:
    """``urn:ngsi-ld:DataPolicy:offer-<offer slug>-<member slug>``."""
    return f"{POLICY_PREFIX}offer-{slug(offer_id)}-{slug(member_id)}"


# --------------------------------------------------------------------------------------------------
# Demo catalogue and demo member
# --------------------------------------------------------------------------------------------------


def demo_offers() -> list[Offer]:
    """Six real-world-like offers; each figure's basis is in ``benefit_basis`` and docs/offers.md."""
    meter_15 = DataNeed("offtake", "measurement and verification of savings (IPMVP option C)", 1095)
    return [
        Offer(
            id=OFFER_PREFIX + "esco-renovation",
            name="Insulation and heat-pump performance contract",
            provider_id="urn:ngsi-ld:Organization:renovate-esco",
            provider_kind="esco",
            member_gets="Roof and cavity-wall insulation, heat pump run on cheap hours, 19-23 degC guaranteed",
            data_needs=(meter_15, DataNeed("heat_pump", "heat-pump control and savings verification", 1095)),
            control=(ControlRight("heat_pump", 0, 24),),
            comfort=(ComfortBound("heat_pump", 19.0, 23.0),),
            upgrade=BuildingUpgrade(resistance_factor=1.35),
            fee_eur_per_month=22.0,
            duration_months=120,
            features=("bill_protection", "comfort_guarantee", "low_carbon"),
            benefit_basis=(
                "Insulation raises the thermal resistance by 35 % (roof + cavity wall cut the losses of a "
                "1970s Belgian house by about a quarter); fee: about 2,600 EUR of works repaid over 10 years."
            ),
        ),
        Offer(
            id=OFFER_PREFIX + "fcr-aggregator",
            name="Home battery in the FCR pool",
            provider_id="urn:ngsi-ld:Organization:flex-aggregator",
            provider_kind="dr_aggregator",
            member_gets="70 % of the FCR availability revenue of 3 kW of your battery",
            data_needs=(DataNeed("battery", "FCR prequalification and activation proof (Elia)", 400),),
            control=(ControlRight("battery", 0, 24, reserved_kw=3.0),),
            streams=(ValueStream("reserve", 0.012, direction="symmetric", duration_h=0.25, block_steps=16),),
            provider_share=0.30,
            duration_months=12,
            features=("automation_with_override",),
            benefit_basis=(
                "Belgian FCR capacity prices (Elia/Regelleistung 4-h blocks) averaged about 12 EUR/MW/h "
                "in 2023 = 0.012 EUR/kW/h; aggregators keep 20-40 % of the revenue."
            ),
        ),
        Offer(
            id=OFFER_PREFIX + "ev-smart-charging",
            name="EV smart charging",
            provider_id="urn:ngsi-ld:Organization:ev-charge-manager",
            provider_kind="emobility_manager",
            member_gets="Your car charged by departure on the cheapest night hours; override from the app",
            data_needs=(
                DataNeed("ev", "charging sessions and state of charge", 365),
                DataNeed("offtake", "load management under the connection limit", 30),
            ),
            control=(ControlRight("ev", 18, 8),),
            fee_eur_per_month=3.0,
            features=("automation_with_override", "low_carbon"),
            benefit_basis="Subscription of Belgian smart-charging apps: 2-5 EUR/month.",
        ),
        Offer(
            id=OFFER_PREFIX + "aal-activity",
            name="Activity monitoring for living at home",
            provider_id="urn:ngsi-ld:Organization:care-at-home",
            provider_kind="care_operator",
            member_gets="An alert to a relative when the daily activity pattern breaks; a warm home kept",
            data_needs=(DataNeed("offtake", "activity monitoring from the smart-meter load (AAL)", 30),),
            comfort=(ComfortBound("heat_pump", 20.0),),
            fee_eur_per_month=19.0,
            benefit_eur_per_year=300.0,
            features=("care", "comfort_guarantee", "minimal_data"),
            benefit_basis=(
                "Fee of Belgian telecare subscriptions (15-30 EUR/month); benefit: a personal alarm "
                "subscription it replaces (~25 EUR/month). 20 degC minimum: WHO housing and health "
                "guidelines (2018) for older occupants."
            ),
        ),
        Offer(
            id=OFFER_PREFIX + "home-security",
            name="Alarm and intrusion monitoring",
            provider_id="urn:ngsi-ld:Organization:safe-home",
            provider_kind="security_operator",
            member_gets="24/7 monitored alarm; the battery keeps 2 kWh for the alarm and router in a blackout",
            data_needs=(
                DataNeed("door_contact", "intrusion detection", 30),
                DataNeed("motion", "intrusion detection", 30),
            ),
            comfort=(ComfortBound("battery", 2.0),),
            fee_eur_per_month=25.0,
            benefit_eur_per_year=330.0,
            features=("minimal_data",),
            benefit_basis=(
                "Monitored-alarm fees in Belgium: 20-35 EUR/month; benefit: insurance discount and the "
                "monitoring it replaces. Backup: 40 W of alarm and router for 48 h = 2 kWh."
            ),
        ),
        Offer(
            id=OFFER_PREFIX + "community-battery",
            name="Community self-consumption",
            provider_id="urn:ngsi-ld:EnergyCommunity:demo",
            provider_kind="community",
            member_gets="Your battery steered for the community; surplus sold to neighbours at +3 ct/kWh",
            data_needs=(
                DataNeed("offtake", "energy-sharing settlement", 400),
                DataNeed("injection", "energy-sharing settlement", 400),
            ),
            control=(ControlRight("battery", 0, 24),),
            streams=(ValueStream("export_bonus", 0.03),),
            provider_share=0.10,
            features=("community_benefit", "low_carbon"),
            benefit_basis=(
                "Brussels community price for shared kWh about 3 ct above the feed-in price; the community "
                "keeps 10 % for its costs."
            ),
        ),
    ]


def demo_member_home(member_id: str = "urn:ngsi-ld:EnergyProsumer:demo-1", *, year: int = 2023) -> MemberHome:
    """A Brussels home over a year at 15 min: 3.5 MWh load, 5 kWp PV, 10 kWh battery, EV, heat pump.

    Load: SimBench ``H0-A`` (2016 profile, taken from 1 January for the year's length) scaled to
    3,500 kWh; PV: SimBench ``PV3`` x 5 kWp; prices: Belgian day-ahead of ``year`` + 0.15 EUR/kWh
    (network fees and taxes) for offtake, day-ahead - 0.01 EUR/kWh for injection; weather: the
    Uccle typical year. EV: 60 kWh, 7.4 kW charger, home 18:30-07:30 on working days (12 kWh),
    17:00-10:00 at weekends (8 kWh). Heat pump: 3 kW, R 6 K/kW, C 12 kWh/K, COP 3 at 7 degC.
    """
    start = pd.Timestamp(f"{year}-01-01", tz=TZ).tz_convert("UTC")
    end = pd.Timestamp(f"{year + 1}-01-01", tz=TZ).tz_convert("UTC")
    index = pd.date_range(start, end, freq="15min", inclusive="left")
    n = len(index)
    prof = datasets.simbench_profiles()
    load = prof["H0-A"].to_numpy()[:n]
    load = load * (3500.0 / (load.sum() * 0.25))
    pv = 5.0 * prof["PV3"].to_numpy()[:n]
    price = datasets.dayahead_prices().reindex(index, method="ffill").to_numpy()
    if np.isnan(price).any():
        price = pd.Series(price).ffill().bfill().to_numpy()
    w = datasets.weather(year)["temp_air_c"].reindex(index, method="ffill").ffill().bfill().to_numpy()
    cop = np.clip(3.0 + 0.08 * (w - 7.0), 2.0, 5.0)
    sessions = home_ev_sessions(index)
    eta = math.sqrt(0.9)
    return MemberHome(
        member_id=member_id,
        index=index,
        base_load_kw=load,
        import_price_eur_per_kwh=price + 0.15,
        export_price_eur_per_kwh=price - 0.01,
        pv_kw=pv,
        battery=Battery("battery", 10.0, 5.0, 5.0, eta, eta, initial_soc_kwh=5.0),
        ev=ElectricVehicle("ev", 60.0, 7.4, sessions),
        heat_pump=HeatPump("heat_pump", 3.0, cop, 6.0, 12.0, w, 20.0, comfort_min_c=19.0, comfort_max_c=23.0),
        connection=GridConnection(17.0, 17.0),
        tz=TZ,
        source=f"reference Brussels home ({year}: SimBench load and PV, day-ahead prices, Uccle weather)",
    )


def home_ev_sessions(index: pd.DatetimeIndex) -> list[EVSession]:
    """A commuter's EV at home over ``index``: 18:30-07:30 on working days (12 kWh to add, about
    60 km), 17:00-10:00 at weekends (8 kWh), local time; sessions past the end are left out."""
    end = index[-1] + (index[1] - index[0] if len(index) > 1 else pd.Timedelta(minutes=15))
    local = index.tz_convert(TZ)
    out = []
    for day in pd.date_range(
        local[0].normalize().tz_localize(None), local[-1].normalize().tz_localize(None), freq="D"
    ):
        weekend = day.weekday() >= 5
        arr = (day + pd.Timedelta(hours=17 if weekend else 18.5)).tz_localize(TZ, nonexistent="shift_forward")
        dep = (day + pd.Timedelta(days=1, hours=10 if weekend else 7.5)).tz_localize(
            TZ, nonexistent="shift_forward", ambiguous=True
        )
        if arr.tz_convert("UTC") < index[0] or dep.tz_convert("UTC") > end:
            continue
        out.append(EVSession(arr.tz_convert("UTC"), dep.tz_convert("UTC"), 8.0 if weekend else 12.0))
    return out


def _number(doc: Mapping[str, Any], *names: str) -> float | None:
    """The first of the attributes ``names`` (local names) that holds a finite number."""
    for name in names:
        v = _attr(doc, name)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    return None


def twin_member_home(
    twin: TwinService,
    series: Any,
    community_id: str,
    member_id: str,
    *,
    tenant: str = "",
    max_days: int = 365,
) -> MemberHome | None:
    """A member's home from the twin: its metered net offtake and its devices.

    The last ``max_days`` whole days of readings every member covers (the community's span) give the
    base load ``(offtake - injection) / dt`` (PV and appliances behind the meter are in it); a
    ``Battery`` (``capacity``, ``maxChargePower``, ``maxDischargePower``, ``roundTripEfficiency``) and
    an ``EVChargingStation`` (``chargingPower``; the car: 60 kWh, :func:`home_ev_sessions`) located in
    the member's building are its flexible devices. Prices: the Belgian day-ahead price of 2023 at the
    same local month, day and hour (the bundled prices start in 2021) + 0.15 EUR/kWh for offtake and
    - 0.01 EUR/kWh for injection.

    Returns
    -------
    MemberHome or None
        None when the node holds no readings for the community.

    Raises
    ------
    OfferInputError
        A reading missing (NaN) in the period (the member and the interval are named).
    """
    from bright.services.community import load_community, readings, readings_span

    community = load_community(twin, series, community_id, tenant=tenant)
    if member_id not in community.member_ids:
        raise ResourceNotFound(f"member {member_id} is not a member of {community_id}")
    span = readings_span(community)
    if span is None:
        return None
    lo, hi = span
    lo_local, hi_local = lo.tz_convert(TZ), hi.tz_convert(TZ)
    first = lo_local.ceil("D") if lo_local != lo_local.normalize() else lo_local
    last = hi_local.floor("D")
    if last - first < pd.Timedelta(days=1):
        return None
    first = max(first, last - pd.Timedelta(days=max_days))
    r = readings(community, first.tz_convert("UTC"), last.tz_convert("UTC"))
    assert r.index is not None
    j = list(r.member_ids).index(member_id)
    off, inj = r.offtake_kwh[:, j], r.injection_kwh[:, j]
    bad = np.flatnonzero(~np.isfinite(off) | ~np.isfinite(inj))
    if len(bad):
        raise OfferInputError(
            f"member {member_id}: reading missing at {r.index[int(bad[0])].isoformat()}; "
            "the evaluation needs a period without gaps"
        )
    index = pd.DatetimeIndex(r.index)
    dt_h = (index[1] - index[0]).total_seconds() / 3600.0
    local = index.tz_convert(TZ)
    prices = datasets.dayahead_prices()
    p23 = prices.loc["2023-01-01":"2024-01-01"]
    p23_local = pd.DatetimeIndex(p23.index).tz_convert(TZ)
    by_key = pd.Series(
        p23.to_numpy(), index=pd.MultiIndex.from_arrays([p23_local.month, p23_local.day, p23_local.hour])
    )
    by_key = by_key[~by_key.index.duplicated(keep="first")]
    day = np.where((local.month == 2) & (local.day == 29), 28, local.day)
    keys = pd.MultiIndex.from_arrays([local.month, day, local.hour])
    price = by_key.reindex(keys).ffill().bfill().to_numpy()
    member = twin.store.get(tenant, member_id) or {}
    buildings = {str(b) for b in [_attr(member, "represents")] if b}
    battery = ev = None
    for type_name in ("Battery", "EVChargingStation"):
        for doc in OfferService(twin)._query(tenant, type_name):
            if str(_attr(doc, "locatedIn")) not in buildings:
                continue
            if type_name == "Battery" and battery is None:
                cap = _number(doc, "capacityKwh", "capacity") or 0.0
                if cap > 0:
                    eta = math.sqrt(_number(doc, "roundTripEfficiency") or 0.9)
                    p_c = _number(doc, "maxChargePowerKw", "maxChargePower") or cap / 2
                    p_d = _number(doc, "maxDischargePowerKw", "maxDischargePower") or cap / 2
                    battery = Battery("battery", cap, p_c, p_d, eta, eta, initial_soc_kwh=cap / 2)
            elif type_name == "EVChargingStation" and ev is None:
                power = min(_number(doc, "chargingPowerKw", "chargingPower") or 7.4, 11.0)
                ev = ElectricVehicle("ev", 60.0, power, home_ev_sessions(index))
    return MemberHome(
        member_id=member_id,
        index=index,
        base_load_kw=(off - inj) / dt_h,
        import_price_eur_per_kwh=price + 0.15,
        export_price_eur_per_kwh=price - 0.01,
        battery=battery,
        ev=ev,
        connection=None,  # the twin does not hold the connection's rating
        tz=TZ,
        source=(
            f"metered {first.date()} to {last.date()} (twin readings); 2023 day-ahead prices by calendar position"
        ),
    )


def demo_bundles(offers: Sequence[Offer] | None = None) -> dict[str, list[Offer]]:
    """Ten bundles of the demo catalogue (the benchmark's and the demo's)."""
    by = {o.id.rsplit(":", 1)[-1]: o for o in (offers or demo_offers())}

    def pick(*names: str) -> list[Offer]:
        return [by[n] for n in names]

    return {
        "energy trio": pick("fcr-aggregator", "ev-smart-charging", "esco-renovation"),
        "battery: FCR + community": pick("fcr-aggregator", "community-battery"),
        "battery + backup": pick("fcr-aggregator", "home-security"),
        "warm and cared for": pick("esco-renovation", "aal-activity"),
        "mobility + care": pick("ev-smart-charging", "aal-activity"),
        "community + EV": pick("community-battery", "ev-smart-charging"),
        "safe home": pick("home-security", "community-battery", "ev-smart-charging"),
        "all energy": pick("fcr-aggregator", "community-battery", "ev-smart-charging", "esco-renovation"),
        "care + security": pick("aal-activity", "home-security"),
        "everything": pick(
            "fcr-aggregator",
            "community-battery",
            "ev-smart-charging",
            "esco-renovation",
            "aal-activity",
            "home-security",
        ),
    }


# --------------------------------------------------------------------------------------------------
# ODRL documents
# --------------------------------------------------------------------------------------------------

MEMBER_SERIES = "https://w3id.org/bright/assets#member-series"
MEMBER_DATA = "https://w3id.org/bright/assets#member-data"
RETENTION = "https://w3id.org/bright/odrl#retentionDays"
STREAM = "https://w3id.org/bright/odrl#stream"
METER_STREAMS = {"offtake": "offtake", "injection": "injection"}


def offer_policy(offer: Offer) -> dict[str, Any]:
    """The offer's terms as an ODRL 2.2 ``Offer``: what the provider would read and control, and why."""
    purpose = {"leftOperand": "purpose", "operator": "eq", "rightOperand": purpose_of(offer.id)}
    permissions: list[dict[str, Any]] = []
    for d in offer.data_needs:
        permissions.append(
            {
                "target": MEMBER_SERIES,
                "assigner": offer.provider_id,
                "action": "read",
                "constraint": [purpose],
                STREAM: d.stream,
                RETENTION: d.retention_days,
            }
        )
    for c in offer.control:
        permissions.append(
            {
                "target": MEMBER_DATA,
                "assigner": offer.provider_id,
                "action": [{"@id": CONTROL, "refinement": _window_refinement(c)}],
                "constraint": [purpose],
                STREAM: c.device,
            }
        )
    if not permissions:  # an offer that needs nothing still states its purpose
        permissions.append(
            {"target": MEMBER_DATA, "assigner": offer.provider_id, "action": "use", "constraint": [purpose]}
        )
    return {
        "@context": ODRL_CONTEXT,
        "@type": "Offer",
        "uid": offer.id,
        "assigner": offer.provider_id,
        "permission": permissions,
    }


def _window_refinement(c: ControlRight) -> list[dict[str, Any]]:
    if c.whole_day:
        return []
    if c.start_hour < c.end_hour:
        return [
            {"leftOperand": HOUR_OF_DAY, "operator": "gteq", "rightOperand": c.start_hour},
            {"leftOperand": HOUR_OF_DAY, "operator": "lt", "rightOperand": c.end_hour},
        ]
    # a window past midnight: outside [end, start)
    return [
        {
            "leftOperand": HOUR_OF_DAY,
            "operator": "isNoneOf",
            "rightOperand": list(range(c.end_hour, c.start_hour)),
        }
    ]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def agreement_policy(
    offer: Offer,
    member_id: str,
    targets: Mapping[str, str],
    *,
    granted_at: datetime,
    until: datetime | None = None,
) -> dict[str, Any]:
    """The ODRL ``Agreement`` a subscription makes.

    Parameters
    ----------
    offer
        The offer subscribed to.
    member_id
        The member (the assigner).
    targets
        Entity id (or ``<entity id>#<attribute>``) of each data stream and controlled device.
    granted_at, until
        Validity of the agreement (``dateTime`` constraints).
    """
    when = [{"leftOperand": "dateTime", "operator": "gteq", "rightOperand": _iso(granted_at)}]
    end = until or (pd.Timestamp(granted_at) + pd.DateOffset(months=offer.duration_months)).to_pydatetime()
    when.append({"leftOperand": "dateTime", "operator": "lt", "rightOperand": _iso(end)})
    purpose = {"leftOperand": "purpose", "operator": "eq", "rightOperand": purpose_of(offer.id)}
    permissions: list[dict[str, Any]] = []
    for d in offer.data_needs:
        permissions.append(
            {
                "target": targets[d.stream],
                "assignee": offer.provider_id,
                "assigner": member_id,
                "action": "read",
                "constraint": [purpose, *when],
                STREAM: d.stream,
                RETENTION: d.retention_days,
            }
        )
    for c in offer.control:
        permissions.append(
            {
                "target": targets[c.device],
                "assignee": offer.provider_id,
                "assigner": member_id,
                "action": [{"@id": CONTROL, "refinement": _window_refinement(c)}],
                "constraint": [purpose, *when],
                STREAM: c.device,
            }
        )
    # the provider knows who its subscriber is (the member entity: name, community), nothing more
    permissions.append(
        {
            "target": member_id,
            "assignee": offer.provider_id,
            "assigner": member_id,
            "action": "read",
            "constraint": [purpose, *when],
            STREAM: "subscriber",
        }
    )
    return {
        "@context": ODRL_CONTEXT,
        "@type": "Agreement",
        "uid": agreement_id(member_id, offer.id),
        "conflict": "perm",
        "assigner": member_id,
        "assignee": offer.provider_id,
        "target": sorted(set(targets.values())) or [member_id],
        "permission": permissions,
    }


def _hour_ok(refinement: Sequence[Mapping[str, Any]], hour: int) -> bool:
    for r in refinement:
        op, right = r.get("operator"), r.get("rightOperand")
        if op == "gteq" and not hour >= int(right):  # type: ignore[arg-type]
            return False
        if op == "lt" and not hour < int(right):  # type: ignore[arg-type]
            return False
        if op == "isNoneOf" and hour in {int(v) for v in right}:  # type: ignore[union-attr]
            return False
        if op == "isAnyOf" and hour not in {int(v) for v in right}:  # type: ignore[union-attr]
            return False
    return True


def _when_ok(constraints: Sequence[Mapping[str, Any]], at: datetime) -> bool:
    for c in constraints:
        if c.get("leftOperand") != "dateTime":
            continue
        right = datetime.fromisoformat(str(c["rightOperand"]).replace("Z", "+00:00"))
        op = c.get("operator")
        ok = {
            "gteq": at >= right,
            "gt": at > right,
            "lt": at < right,
            "lteq": at <= right,
            "eq": at == right,
        }.get(str(op), False)
        if not ok:
            return False
    return True


def _actions(rule: Mapping[str, Any]) -> list[tuple[str, list[Mapping[str, Any]]]]:
    raw = rule.get("action")
    out = []
    for a in raw if isinstance(raw, list) else [raw]:
        if isinstance(a, Mapping):
            out.append((str(a.get("@id")), list(a.get("refinement") or [])))
        else:
            out.append((str(a), []))
    return out


# --------------------------------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------------------------------


def _prop(value: Any, unit: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "Property", "value": value}
    if unit:
        out["unitCode"] = unit
    return out


def _rel(obj: str) -> dict[str, Any]:
    return {"type": "Relationship", "object": obj}


def _when(moment: datetime) -> dict[str, Any]:
    return {"type": "Property", "value": {"@type": "DateTime", "@value": _iso(moment)}}


def _attr(doc: Mapping[str, Any] | None, name: str) -> Any:
    """The first value/object/json of the attribute of ``doc`` (stored form) whose local name is ``name``."""
    if not doc:
        return None
    for iri, insts in (doc.get("attrs") or {}).items():
        if re.split(r"[/#:]", iri.rstrip("/#"))[-1] != name:
            continue
        for inst in insts:
            for key in ("json", "value", "object", "objectList"):
                if key in inst:
                    v = inst[key]
                    if isinstance(v, Mapping) and "@value" in v:
                        return v["@value"]
                    return v
    return None


def _parse_at(value: Any, what: str) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise OfferInputError(f"{what}: {value!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        raise OfferInputError(f"{what}: {value!r} needs a time zone (e.g. Z)")
    return moment.astimezone(UTC)


@dataclass
class Subscription:
    """A member's subscription: the consent, the agreement and what it grants."""

    member_id: str
    community_id: str
    offer_id: str
    provider_id: str
    consent_id: str
    agreement_id: str
    granted_at: str
    revoked_at: str | None
    agreement: dict[str, Any]

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def grants(self) -> list[dict[str, Any]]:
        """One line per permission: what may be read or controlled, and when."""
        out = []
        for p in self.agreement.get("permission", []):
            for action, refinement in _actions(p):
                out.append(
                    {
                        "target": p.get("target"),
                        "action": action,
                        "stream": p.get(STREAM),
                        "retentionDays": p.get(RETENTION),
                        "hours": _hours_text(refinement),
                    }
                )
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "member": self.member_id,
            "community": self.community_id,
            "offer": self.offer_id,
            "provider": self.provider_id,
            "consent": self.consent_id,
            "agreement": self.agreement_id,
            "grantedAt": self.granted_at,
            "revokedAt": self.revoked_at,
            "active": self.active,
            "grants": self.grants(),
        }


def _hours_text(refinement: Sequence[Mapping[str, Any]]) -> str:
    allowed = [h for h in range(24) if _hour_ok(refinement, h)]
    if len(allowed) == 24:
        return "all day"
    runs: list[str] = []
    start = prev = None
    for h in [*allowed, None]:
        if h is not None and prev is not None and h == prev + 1:
            prev = h
            continue
        if start is not None and prev is not None:
            runs.append(f"{start:02d}-{prev + 1:02d}h")
        start = prev = h
    if len(runs) == 2 and runs[-1].endswith("-24h") and runs[0].startswith("00-"):
        runs = [runs[-1].replace("-24h", "") + "-" + runs[0].split("-")[1]]
    return ", ".join(runs)


class OfferService:
    """Offers, subscriptions, grants and bundle evaluations of a node.

    Parameters
    ----------
    twin
        The node's entities.
    home_of
        ``(community_id, member_id, tenant) -> MemberHome`` giving the year a member's bundles are
        evaluated on; default: the member's readings in the twin (with ``series``), else
        :func:`demo_member_home` (the reference Brussels home).
    series
        The node's :class:`bright.twin.series.SeriesStore` (meter readings).
    """

    def __init__(self, twin: TwinService, *, home_of: Any = None, series: Any = None) -> None:
        self.twin = twin
        self.ctx = bright_context()
        self.series = series
        self.home_of = home_of or self._home_from_twin
        self._homes: dict[tuple[str, str, str], MemberHome] = {}

    def _home_from_twin(self, community_id: str, member_id: str, tenant: str) -> MemberHome:
        """The member's metered year from the twin (:func:`twin_member_home`) when the node holds
        readings for it, the reference home (:func:`demo_member_home`) otherwise."""
        if self.series is not None:
            home = twin_member_home(self.twin, self.series, community_id, member_id, tenant=tenant)
            if home is not None:
                return home
        return demo_member_home(member_id)

    # -- storage --------------------------------------------------------------------------------
    def _upsert(self, tenant: str, entities: list[dict[str, Any]], *, replace: bool = True) -> None:
        body = [{**e, "@context": BRIGHT_CONTEXT_URL} for e in entities]
        result = self.twin.batch_upsert(tenant, body, self.ctx, replace=replace)
        if result["errors"]:
            first = result["errors"][0]
            raise OfferInputError(
                f"entity {first.get('entityId')}: {first.get('error', {}).get('detail', 'rejected')}"
            )

    def _query(self, tenant: str, type_name: str) -> list[dict[str, Any]]:
        if not self.twin.store.tenant_exists(tenant):
            return []
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            eq = self.twin.build_query(
                {"type": type_name, "limit": str(MAX_LIMIT), "offset": str(offset)}, self.ctx
            )
            docs, _ = self.twin.store.query(tenant, eq)
            out.extend(docs)
            if len(docs) < MAX_LIMIT:
                return out
            offset += MAX_LIMIT

    def _get(self, tenant: str, entity_id: str) -> dict[str, Any] | None:
        if not self.twin.store.tenant_exists(tenant):
            return None
        return self.twin.store.get(tenant, entity_id)

    def _typed(self, tenant: str, entity_id: str, type_name: str, what: str) -> dict[str, Any]:
        check_entity_id(entity_id)
        doc = self._get(tenant, entity_id)
        if doc is None or not any(t.endswith(type_name) for t in doc.get("type", [])):
            raise ResourceNotFound(f"{what} {entity_id} not found")
        return doc

    # -- offers ---------------------------------------------------------------------------------
    def publish(
        self, offer: Offer | Mapping[str, Any], *, tenant: str = "", community_id: str | None = None
    ) -> Offer:
        """Store an offer as a ``ServiceOffer`` entity (replacing a previous version).

        Raises
        ------
        OfferInputError
            Invalid terms (the field is named) or an id outside ``urn:ngsi-ld:ServiceOffer:``.
        """
        try:
            o = offer if isinstance(offer, Offer) else Offer.from_json(offer)
        except OfferError as exc:
            raise OfferInputError(str(exc)) from None
        if not o.id.startswith(OFFER_PREFIX):
            raise OfferInputError(f"offer id {o.id!r} must start with {OFFER_PREFIX}")
        ent: dict[str, Any] = {
            "id": o.id,
            "type": "ServiceOffer",
            "name": _prop(o.name),
            "providerId": _prop(o.provider_id),
            "providerKind": _prop(o.provider_kind),
            "terms": {"type": "JsonProperty", "json": o.to_json()},
            "odrl": {"type": "JsonProperty", "json": offer_policy(o)},
        }
        if community_id:
            ent["community"] = _rel(community_id)
        self._upsert(tenant, [ent])
        return o

    def offers(self, *, tenant: str = "", provider_id: str | None = None) -> list[Offer]:
        """The published offers (of one provider), by id."""
        out = []
        for doc in self._query(tenant, "ServiceOffer"):
            terms = _attr(doc, "terms")
            if not isinstance(terms, Mapping):
                continue
            o = Offer.from_json(terms)
            if provider_id is None or o.provider_id == provider_id:
                out.append(o)
        return sorted(out, key=lambda o: o.id)

    def offer(self, offer_id: str, *, tenant: str = "") -> Offer:
        """One published offer; ResourceNotFound otherwise."""
        doc = self._typed(tenant, offer_id, "ServiceOffer", "offer")
        terms = _attr(doc, "terms")
        if not isinstance(terms, Mapping):
            raise ResourceNotFound(f"offer {offer_id} has no terms")
        return Offer.from_json(terms)

    # -- subscriptions --------------------------------------------------------------------------
    def _targets(self, community_id: str, member_id: str, offer: Offer, tenant: str) -> dict[str, str]:
        """The entity (or ``<entity>#<attribute>``) behind each stream and device of the offer."""
        member = self._get(tenant, member_id) or {}
        devices: dict[str, str] = {}
        meter = None
        for insts in (member.get("attrs") or {}).values():
            for inst in insts:
                obj = inst.get("object")
                for o in obj if isinstance(obj, list) else [obj]:
                    if not isinstance(o, str):
                        continue
                    kind = o.split(":")[2] if o.startswith("urn:ngsi-ld:") and o.count(":") >= 3 else ""
                    if kind == "Meter":
                        meter = meter or o
                    elif kind == "Battery":
                        devices.setdefault("battery", o)
                    elif kind in ("EVChargingStation", "ElectricVehicle"):
                        devices.setdefault("ev", o)
                    elif kind == "HeatPump":
                        devices.setdefault("heat_pump", o)
        buildings = {str(b) for b in [_attr(member, "represents")] if b}
        for type_name, kind in (
            ("Battery", "battery"),
            ("EVChargingStation", "ev"),
            ("HeatPump", "heat_pump"),
        ):
            if kind in devices or not buildings:
                continue
            for doc in self._query(tenant, type_name):
                if str(_attr(doc, "locatedIn")) in buildings:
                    devices[kind] = doc["id"]
                    break
        out: dict[str, str] = {}
        for d in offer.data_needs:
            if d.stream in METER_STREAMS and meter:
                out[d.stream] = f"{meter}#{METER_STREAMS[d.stream]}"
            elif d.stream in devices:
                out[d.stream] = devices[d.stream]
            else:  # a stream of the member's home not in the twin (alarm sensors)
                out[d.stream] = f"{member_id}#{d.stream}"
        for c in offer.control:
            out[c.device] = devices.get(c.device, f"{member_id}#{c.device}")
        return out

    def subscribe(
        self, community_id: str, member_id: str, offer_id: str, *, tenant: str = "", at: Any = None
    ) -> Subscription:
        """Subscribe a member: record its consent and the ODRL Agreement of the offer's grants."""
        self._typed(tenant, community_id, "EnergyCommunity", "community")
        self._typed(tenant, member_id, "EnergyProsumer", "member")
        offer = self.offer(offer_id, tenant=tenant)
        moment = _parse_at(at, "at") if at is not None else datetime.now(UTC)
        targets = self._targets(community_id, member_id, offer, tenant)
        odrl = agreement_policy(offer, member_id, targets, granted_at=moment)
        cid, aid = consent_id(member_id, offer.id), agreement_id(member_id, offer.id)
        self._upsert(
            tenant,
            [
                {
                    "id": cid,
                    "type": "Consent",
                    "member": _rel(member_id),
                    "community": _rel(community_id),
                    "purpose": _prop(purpose_of(offer.id)),
                    "grantedAt": _when(moment),
                },
                {
                    "id": aid,
                    "type": "DataPolicy",
                    "odrl": {"type": "JsonProperty", "json": odrl},
                    "community": _rel(community_id),
                    "offer": _rel(offer.id),
                    "member": _rel(member_id),
                },
            ],
        )
        return self.subscription(member_id, offer.id, tenant=tenant)

    def unsubscribe(
        self, community_id: str, member_id: str, offer_id: str, *, tenant: str = "", at: Any = None
    ) -> Subscription:
        """Revoke the consent and end the agreement (its dateTime bound becomes the revocation)."""
        sub = self.subscription(member_id, offer_id, tenant=tenant)
        if sub.community_id != community_id:
            raise ResourceNotFound(f"member {member_id} has no subscription to {offer_id} in {community_id}")
        moment = _parse_at(at, "at") if at is not None else datetime.now(UTC)
        odrl = dict(sub.agreement)
        perms = []
        for p in odrl.get("permission", []):
            cons = [
                c
                for c in p.get("constraint", [])
                if not (c.get("leftOperand") == "dateTime" and c.get("operator") in ("lt", "lteq"))
            ]
            cons.append({"leftOperand": "dateTime", "operator": "lt", "rightOperand": _iso(moment)})
            perms.append({**p, "constraint": cons})
        odrl["permission"] = perms
        self._upsert(
            tenant,
            [
                {"id": sub.consent_id, "type": "Consent", "revokedAt": _when(moment)},
                {
                    "id": sub.agreement_id,
                    "type": "DataPolicy",
                    "odrl": {"type": "JsonProperty", "json": odrl},
                },
            ],
            replace=False,
        )
        return self.subscription(member_id, offer_id, tenant=tenant)

    def subscription(self, member_id: str, offer_id: str, *, tenant: str = "") -> Subscription:
        """A member's subscription to an offer; ResourceNotFound if it never subscribed."""
        cid, aid = consent_id(member_id, offer_id), agreement_id(member_id, offer_id)
        consent, policy = self._get(tenant, cid), self._get(tenant, aid)
        if consent is None or policy is None:
            raise ResourceNotFound(f"member {member_id} has no subscription to {offer_id}")
        odrl = _attr(policy, "odrl") or {}
        return Subscription(
            member_id=member_id,
            community_id=str(_attr(consent, "community") or ""),
            offer_id=offer_id,
            provider_id=str(odrl.get("assignee", "")),
            consent_id=cid,
            agreement_id=aid,
            granted_at=str(_attr(consent, "grantedAt")),
            revoked_at=None if _attr(consent, "revokedAt") is None else str(_attr(consent, "revokedAt")),
            agreement=dict(odrl),
        )

    def subscriptions(
        self, *, tenant: str = "", provider_id: str | None = None, member_id: str | None = None
    ) -> list[Subscription]:
        """Subscriptions (of one provider's offers, or of one member), from the stored consents."""
        out = []
        for doc in self._query(tenant, "Consent"):
            purpose = str(_attr(doc, "purpose") or "")
            if not purpose.startswith("offer:"):
                continue
            member = str(_attr(doc, "member") or "")
            if member_id is not None and member != member_id:
                continue
            try:
                sub = self.subscription(member, purpose[len("offer:") :], tenant=tenant)
            except ResourceNotFound:
                continue
            if provider_id is None or sub.provider_id == provider_id:
                out.append(sub)
        return sorted(out, key=lambda s: (s.offer_id, s.member_id))

    # -- enforcement ----------------------------------------------------------------------------
    def check_grant(
        self,
        provider_id: str,
        target: str,
        action: str,
        *,
        tenant: str = "",
        at: Any = None,
        hours: Sequence[int] | None = None,
    ) -> str:
        """Whether the provider's agreements let it ``action`` (``read`` or ``control``) the target now.

        Parameters
        ----------
        provider_id
            The provider (the principal's subject).
        target
            Entity id or ``<entity id>#<attribute>``; a read of an entity is granted by a permission on
            the entity or on the attribute read.
        action
            ``read`` or ``control``.
        at
            The instant of the request (default now).
        hours
            For control: the local hours (Europe/Brussels) the control would act in; each must be inside
            the agreement's window.

        Returns
        -------
        str
            The id of the agreement that grants it.

        Raises
        ------
        GrantDenied
            No active agreement of this provider grants it (the detail names the closest agreement).
        """
        moment = _parse_at(at, "at") if at is not None else datetime.now(UTC)
        wanted = CONTROL if action == "control" else "read"
        if action not in ("read", "control"):
            raise OfferInputError(f"action {action!r} must be read or control")
        base = target.split("#", 1)[0]
        closest: str | None = None
        why = f"no agreement grants {provider_id} to {action} {target}"
        for doc in self._query(tenant, "DataPolicy"):
            odrl = _attr(doc, "odrl")
            if (
                not isinstance(odrl, Mapping)
                or odrl.get("@type") != "Agreement"
                or odrl.get("assignee") != provider_id
            ):
                continue
            consent_ok = self._consent_active(str(odrl.get("assigner", "")), odrl, moment, tenant)
            for p in odrl.get("permission", []):
                t = str(p.get("target", ""))
                if not (t in (target, base) or (target == base and t.startswith(base + "#"))):
                    continue
                for act, refinement in _actions(p):
                    if act != wanted and not (wanted == "read" and act == "use"):
                        continue
                    closest = doc["id"]
                    if not _when_ok(p.get("constraint", []), moment):
                        why = f"agreement {doc['id']} is not in force at {_iso(moment)}"
                        continue
                    if not consent_ok:
                        why = f"agreement {doc['id']}: the member's consent is revoked"
                        continue
                    bad = [h for h in (hours or []) if not _hour_ok(refinement, h)]
                    if bad:
                        why = (
                            f"agreement {doc['id']} grants control of {t} only {_hours_text(refinement)}, "
                            f"not at {bad[0]:02d}h"
                        )
                        continue
                    return str(doc["id"])
        raise GrantDenied(why, agreement=closest)

    def _consent_active(self, member_id: str, odrl: Mapping[str, Any], moment: datetime, tenant: str) -> bool:
        purposes = {
            str(c.get("rightOperand"))
            for p in odrl.get("permission", [])
            for c in p.get("constraint", [])
            if c.get("leftOperand") == "purpose"
        }
        for purpose in purposes:
            offer_id = purpose[len("offer:") :] if purpose.startswith("offer:") else purpose
            doc = self._get(tenant, consent_id(member_id, offer_id))
            if doc is None:
                continue
            granted, revoked = _attr(doc, "grantedAt"), _attr(doc, "revokedAt")
            g = _parse_at(granted, "grantedAt") if granted else None
            r = _parse_at(revoked, "revokedAt") if revoked else None
            if g is not None and g <= moment and (r is None or r > moment):
                return True
        return False

    def control_request(
        self,
        provider_id: str,
        device_id: str,
        start: Any,
        end: Any,
        power_kw: float,
        *,
        tenant: str = "",
        at: Any = None,
    ) -> dict[str, Any]:
        """A provider's setpoint for a device over ``[start, end)``, accepted only inside its window.

        Raises
        ------
        GrantDenied
            The device is not granted to the provider, or part of the period is outside its window.
        """
        t0, t1 = _parse_at(start, "start"), _parse_at(end, "end")
        if t1 <= t0:
            raise OfferInputError("end must be after start")
        if not math.isfinite(float(power_kw)):
            raise OfferInputError("powerKw must be a finite number (kW)")
        steps = pd.date_range(t0, t1, freq="15min", inclusive="left")
        hours = sorted({int(h) for h in steps.tz_convert(TZ).hour})
        agreement = self.check_grant(
            provider_id, device_id, "control", tenant=tenant, at=at or t0, hours=hours
        )
        rid = f"urn:ngsi-ld:ControlRequest:{slug(device_id)}-{t0.strftime('%Y%m%dT%H%M')}-{slug(provider_id)}"
        self._upsert(
            tenant,
            [
                {
                    "id": rid,
                    "type": "ControlRequest",
                    "device": _rel(device_id),
                    "provider": _prop(provider_id),
                    "agreement": _rel(agreement),
                    "validFrom": _when(t0),
                    "validTo": _when(t1),
                    "power": _prop(float(power_kw), "KWT"),
                }
            ],
        )
        return {
            "id": rid,
            "device": device_id,
            "agreement": agreement,
            "steps": len(steps),
            "powerKw": float(power_kw),
        }

    # -- evaluation and recommendations ---------------------------------------------------------
    def member_home(
        self, community_id: str, member_id: str, *, tenant: str = "", days: int | None = None
    ) -> MemberHome:
        """The home a member's bundles are evaluated on (the first ``days`` days if given)."""
        key = (tenant, community_id, member_id)
        if key not in self._homes:
            self._homes[key] = self.home_of(community_id, member_id, tenant)
        home = self._homes[key]
        if days is None:
            return home
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 366:
            raise OfferInputError(f"days must be an integer 1-366, got {days!r}")
        n = min(len(home.index), round(days * 24 / home.dt_h))
        cut = dict(
            index=home.index[:n],
            base_load_kw=home.base_load_kw[:n],
            import_price_eur_per_kwh=home.import_price_eur_per_kwh[:n],
            export_price_eur_per_kwh=home.export_price_eur_per_kwh[:n],
            pv_kw=None if home.pv_kw is None else home.pv_kw[:n],
        )
        import dataclasses

        return dataclasses.replace(home, **cut)  # type: ignore[arg-type]

    def evaluate(
        self,
        community_id: str,
        member_id: str,
        bundles: Mapping[str, Sequence[str]],
        *,
        tenant: str = "",
        days: int | None = None,
    ) -> BundleComparison:
        """Value bundles of published offers (by id) for a member.

        Raises
        ------
        OfferInputError
            An empty bundle, an unknown offer, or offers the member's home cannot take.
        """
        self._typed(tenant, community_id, "EnergyCommunity", "community")
        self._typed(tenant, member_id, "EnergyProsumer", "member")
        if not bundles:
            raise OfferInputError("bundles: give at least one bundle {name: [offer ids]}")
        named: dict[str, list[Offer]] = {}
        for name, ids in bundles.items():
            if not ids:
                raise OfferInputError(f"bundle {name!r} is empty")
            named[name] = [self.offer(i, tenant=tenant) for i in ids]
        home = self.member_home(community_id, member_id, tenant=tenant, days=days)
        try:
            return evaluate_bundles(home, named)
        except OfferError as exc:
            raise OfferInputError(str(exc)) from None

    def settle_revenue(
        self,
        offer_id: str,
        month: str,
        revenue_eur: Mapping[str, float],
        *,
        method: str = "pro_rata",
        community_share: float = 0.0,
        shares: Mapping[str, float] | None = None,
        contributions: Mapping[str, float] | None = None,
        min_bid_kw: float | None = None,
        ledger: Any = None,
        tenant: str = "",
    ) -> dict[str, Any]:
        """Split one month's stacked revenue of an offer among its subscribers, the community and
        the provider; return the statement lines and record the members' shares in the ledger.

        Parameters
        ----------
        offer_id
            The offer.
        month
            ``YYYY-MM`` (local months).
        revenue_eur
            Gross revenue each subscriber's flexibility earned under the offer, EUR (the provider's
            settlement).
        method
            ``fixed`` (``shares``), ``pro_rata`` (``contributions``, default the revenue itself) or
            ``shapley`` (the pooled-reserve game over ``contributions`` in kW with ``min_bid_kw``).
        community_share
            The community's share (0-1), after the provider's contractual ``provider_share``.
        ledger
            A :class:`bright.services.ledger.LedgerNode` to record in, or None.

        Raises
        ------
        OfferInputError
            Members without an active subscription, bad shares, an unknown method.
        """
        from bright.energy.offers import pooled_reserve_game, split_revenue

        offer = self.offer(offer_id, tenant=tenant)
        if not revenue_eur:
            raise OfferInputError("revenueEur: give each subscriber's gross revenue")
        active = {
            s.member_id for s in self.subscriptions(tenant=tenant) if s.offer_id == offer_id and s.active
        }
        missing = sorted(set(revenue_eur) - active)
        if missing:
            raise OfferInputError(f"member(s) {', '.join(missing)} have no active subscription to {offer_id}")
        total = math.fsum(float(v) for v in revenue_eur.values())
        try:
            if method == "shapley":
                kw = dict(contributions or {})
                if set(kw) != set(revenue_eur) or min_bid_kw is None:
                    raise OfferInputError(
                        "a Shapley split needs each member's reserve kW (contributions) and minBidKw"
                    )
                price = total / max(math.fsum(kw.values()), 1e-12)
                game = pooled_reserve_game(kw, price, min_bid_kw=min_bid_kw)
                split = split_revenue(
                    total, method="shapley", provider_share=offer.provider_share, community_share=community_share,
                    game=game, members=sorted(kw),
                )  # fmt: skip
            else:
                split = split_revenue(
                    total,
                    method=method,
                    provider_share=offer.provider_share,
                    community_share=community_share,
                    shares=shares,
                    contributions=contributions if contributions is not None else dict(revenue_eur),
                )
        except OfferError as exc:
            raise OfferInputError(str(exc)) from None
        lines = revenue_statements({(month, offer_id): split})
        records: list[int] = []
        if ledger is not None:
            records = list(
                record_revenue(ledger, split, offer_id=offer_id, month=month, energy_kwh=contributions)
            )
        return {
            "offer": offer_id,
            "month": month,
            "split": split.to_json(),
            "statements": [
                {
                    "month": pd.Timestamp(key[0]).strftime("%Y-%m"),  # type: ignore[index]
                    "member": key[1],  # type: ignore[index]
                    **{k: round(float(v), 2) for k, v in row.items()},
                }
                for key, row in lines.iterrows()
            ],
            "ledgerRecords": records,
        }

    def recommendations(
        self,
        member_id: str,
        *,
        tenant: str = "",
        category: str | None = None,
        values_eur: Mapping[str, float] | None = None,
    ) -> dict[str, Any]:
        """The offers in the order the member's S-BRIGHT category suggests, each with its reason."""
        cat = category
        if cat is None:
            try:
                from bright.services.engagement import EngagementService

                profile = EngagementService(self.twin, None).profile(member_id, tenant=tenant)  # type: ignore[arg-type]
                found = profile.get("category") or {}
                cat = found.get("archetype")
            except (NgsiLdError, TypeError, AttributeError, KeyError):
                cat = None
        recs = recommend_offers(self.offers(tenant=tenant), category=cat, values_eur=values_eur)
        return {"member": member_id, "category": cat, "offers": [r.to_json() for r in recs]}


# --------------------------------------------------------------------------------------------------
# Revenue: statements and ledger
# --------------------------------------------------------------------------------------------------

REVENUE_COLUMNS = ("service_revenue_eur", "provider_share_eur", "community_share_eur")


def revenue_statements(splits: Mapping[tuple[str, str], RevenueSplit], *, tz: str = TZ) -> pd.DataFrame:
    """Monthly statement lines of stacked service revenue, in the energy-sharing statement layout.

    Parameters
    ----------
    splits
        ``(month "YYYY-MM", offer id) -> RevenueSplit``.
    tz
        Zone the months are cut in.

    Returns
    -------
    pandas.DataFrame
        Indexed by (``month``: local month start, ``member_id``) like
        :func:`bright.energy.market.monthly_statements`, with :data:`REVENUE_COLUMNS` (EUR): the
        member's share, and the provider's and community's shares of the revenue its flexibility
        earned (allocated to members pro rata to their share).
    """
    rows: dict[tuple[pd.Timestamp, str], list[float]] = {}
    for (month, _offer), split in splits.items():
        start = pd.Timestamp(f"{month}-01", tz=tz)
        member_total = sum(split.members.values())
        for member, eur in split.members.items():
            w = eur / member_total if member_total else 1.0 / max(len(split.members), 1)
            line = rows.setdefault((start, member), [0.0, 0.0, 0.0])
            line[0] += eur
            line[1] += split.provider_eur * w
            line[2] += split.community_eur * w
    index = pd.MultiIndex.from_tuples(sorted(rows), names=["month", "member_id"])
    return pd.DataFrame([rows[k] for k in index], index=index, columns=list(REVENUE_COLUMNS))


def with_service_revenue(statements: pd.DataFrame, revenue: pd.DataFrame) -> pd.DataFrame:
    """Energy-sharing statements (``monthly_statements``) with the service revenue lines added.

    ``net_cost_after_services_eur = net_cost_eur - service_revenue_eur``; a member without service
    revenue gets 0 on the revenue lines.
    """
    out = statements.join(revenue, how="left")
    for c in REVENUE_COLUMNS:
        out[c] = out[c].fillna(0.0)
    if "net_cost_eur" in out:
        out["net_cost_after_services_eur"] = out["net_cost_eur"] - out["service_revenue_eur"]
    return out


def record_revenue(
    ledger: Any,
    split: RevenueSplit,
    *,
    offer_id: str,
    month: str,
    energy_kwh: Mapping[str, float] | None = None,
    tz: str = TZ,
) -> range:
    """Record each member's share of one month's revenue of an offer in the ledger.

    One ``activation`` record per member (id ``<offer id>#revenue-<month>-<member slug>``, period = the
    local month, ``amount_cents`` = its share, ``energy_wh`` = the flexibility it contributed), signed
    by the node and covered by a new tree head.

    Raises
    ------
    OfferInputError
        A negative share (the ledger records remunerations) or a malformed month.
    """
    from bright.ledger.records import Activation

    try:
        start = pd.Timestamp(f"{month}-01", tz=tz)
    except ValueError:
        raise OfferInputError(f"month {month!r} is not YYYY-MM") from None
    end = start + pd.DateOffset(months=1)
    done = {a["activationId"] for a in ledger.activations()}
    records = []
    for member, eur in sorted(split.members.items()):
        aid = f"{offer_id}#revenue-{month}-{slug(member)}"
        if aid in done:
            raise OfferInputError(
                f"the revenue of {offer_id} for {month} is already recorded for member {member}"
            )
        if eur < 0:
            raise OfferInputError(
                f"member {member}: a negative revenue share ({eur:.2f} EUR) cannot be recorded"
            )
        kwh = float((energy_kwh or {}).get(member, 0.0))
        records.append(
            Activation(
                activation_id=aid,
                offer_id=offer_id,
                community=ledger.community,
                member=member,
                start=start.tz_convert("UTC").to_pydatetime(),
                end=end.tz_convert("UTC").to_pydatetime(),
                power_w=1,
                energy_wh=round(kwh * 1000),
                amount_cents=round(eur * 100),
            )
        )
    indices: range = ledger.append_records(records)
    return indices


# --------------------------------------------------------------------------------------------------
# Demo
# --------------------------------------------------------------------------------------------------


def seed_demo_offers(service: OfferService, community_id: str, *, tenant: str = "") -> list[str]:
    """Publish the demo catalogue in a community (the community's own offer names it as provider)."""
    import dataclasses

    ids = []
    for o in demo_offers():
        if o.provider_kind == "community":
            o = dataclasses.replace(o, provider_id=community_id)
        ids.append(service.publish(o, tenant=tenant, community_id=community_id).id)
    return ids


def demo_bundle_comparison(
    member_id: str = "urn:ngsi-ld:EnergyProsumer:demo-1", *, days: int | None = None
) -> BundleComparison:
    """The demo member's ten bundles valued over 2023 (or its first ``days`` days)."""
    home = demo_member_home(member_id)
    if days is not None:
        n = days * 96
        import dataclasses

        home = dataclasses.replace(
            home,
            index=home.index[:n],
            base_load_kw=home.base_load_kw[:n],
            import_price_eur_per_kwh=home.import_price_eur_per_kwh[:n],
            export_price_eur_per_kwh=home.export_price_eur_per_kwh[:n],
            pv_kw=None if home.pv_kw is None else home.pv_kw[:n],
        )
    return evaluate_bundles(home, demo_bundles())


def format_comparison(cmp: BundleComparison) -> str:
    """A plain-text table of a bundle comparison (what the demo prints)."""
    lines = [
        f"member {cmp.member_id}: energy cost without offers {cmp.baseline_cost_eur:,.0f} EUR",
        f"{'bundle':<26} {'value EUR':>10} {'best single':>22} {'gain EUR':>9}  plan",
    ]
    for b in cmp.bundles:
        best, value = b.best_single
        plan = "joint" if b.chosen is b.joint else f"fallback (drop {len(b.idle_offers)})"
        lines.append(
            f"{b.name:<26} {b.value_eur:>10,.0f} {best.rsplit(':', 1)[-1]:>16} {value:>5,.0f} {b.stacking_gain_eur:>9,.0f}  {plan}"
        )
    return "\n".join(lines)
