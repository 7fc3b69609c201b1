"""The demo community twin built from real data (``bright demo``).

One energy community around a real Brussels school from the school register: the school itself
(SimBench G1 school/office profile, PV on its roof, a battery, an EV charger), households whose
load follows the SimBench household profiles and the measured UCI household, and a small
business. Annual consumptions and PV sizes are typical Brussels figures; the profiles are real.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bright import datasets
from bright.twin.context import BRIGHT_CONTEXT_URL


@dataclass(frozen=True)
class Member:
    """One member of the demo community.

    Attributes
    ----------
    key
        Short identifier used in entity ids.
    role
        ``consumer``, ``producer`` or ``prosumer``.
    category
        Building category (``school``, ``house``, ``apartments``, ``commercial``).
    profile
        Name of the load profile (a SimBench column, or ``UCI`` for the measured household).
    annual_kwh
        Annual consumption the profile is scaled to, kWh.
    pv_kwp
        Installed PV, kWp (0 for none).
    battery_kwh
        Battery capacity, kWh (0 for none).
    ev_charger_kw
        EV charger power, kW (0 for none).
    """

    key: str
    name: str
    role: str
    category: str
    profile: str
    annual_kwh: float
    pv_kwp: float = 0.0
    battery_kwh: float = 0.0
    ev_charger_kw: float = 0.0
    heat_pump_kw: float = 0.0
    locality: str = "lv_cabin"


@dataclass
class DemoCommunity:
    """The demo community: its school, members and the NGSI-LD entities describing them."""

    key: str
    name: str
    school: dict[str, Any]
    members: list[Member]
    entities: list[dict[str, Any]] = field(default_factory=list)


def pick_school(municipality: str = "Ixelles", index: int = 0) -> dict[str, Any]:
    """A real school site from the Brussels register (sorted by name within the municipality)."""
    schools = datasets.brussels_schools()
    here = schools[schools["municipality"].str.lower() == municipality.lower()].sort_values("name")
    if here.empty:
        raise ValueError(f"no school in municipality {municipality!r} in the register")
    return dict(here.iloc[index % len(here)])


def default_members(seed: int = 7) -> list[Member]:
    """The members of the demo school community (deterministic for a seed).

    Households get 1,600-4,500 kWh/year (Brussels averages about 2,000-3,500), PV of 3-6 kWp on
    some roofs; the school 60 MWh/year with 80 kWp; a bakery 25 MWh/year.
    """
    rng = np.random.default_rng(seed)
    household_profiles = ["H0-A", "H0-B", "H0-C", "H0-G", "H0-H", "H0-L", "UCI"]
    members = [
        Member(
            "school",
            "School",
            "prosumer",
            "school",
            "G1-A",
            60_000,
            pv_kwp=80,
            battery_kwh=60,
            ev_charger_kw=22,
            locality="lv_cabin",
        ),
        Member("bakery", "Bakery", "consumer", "commercial", "G5-A", 25_000, locality="lv_cabin"),
    ]
    for i in range(12):
        pv = float(rng.choice([0, 0, 3.2, 4.5, 6.0]))
        members.append(
            Member(
                key=f"home{i + 1:02d}",
                name=f"Household {i + 1}",
                role="prosumer" if pv > 0 else "consumer",
                category="house" if i % 3 else "apartments",
                profile=household_profiles[i % len(household_profiles)],
                annual_kwh=float(np.round(rng.uniform(1_600, 4_500), -1)),
                pv_kwp=pv,
                battery_kwh=10.0 if i in (2, 7) else 0.0,
                ev_charger_kw=11.0 if i in (1, 4, 9) else 0.0,
                heat_pump_kw=3.0 if i in (3, 8) else 0.0,
                locality="building" if i % 3 == 0 else "lv_cabin",
            )
        )
    return members


def _prop(value: Any, unit: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "Property", "value": value}
    if unit:
        out["unitCode"] = unit
    return out


def _rel(obj: str | list[str]) -> dict[str, Any]:
    return {"type": "Relationship", "object": obj}


def _point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [round(lon, 6), round(lat, 6)]}}


def community_entities(
    community_key: str,
    name: str,
    school: dict[str, Any],
    members: list[Member],
    seed: int = 7,
    *,
    description: str | None = None,
    sharing_method: str = "pro_rata",
    legal_form: str = "REC",
    spread_deg: tuple[float, float] = (0.004, 0.003),
    extra: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """NGSI-LD entities (normalized, BRIGHT @context) of a community and its members' assets.

    Parameters
    ----------
    community_key
        Key in the entity ids (``urn:ngsi-ld:EnergyCommunity:<key>``...).
    name
        Name of the community.
    school
        The place the community is built around (a row of the school register, or any mapping
        with ``name``, ``address``, ``postcode``, ``municipality``, ``lat``, ``lon``): the first
        member's building stands there, with that address.
    members
        The members; the first one is the anchor (the school, the block, the first home...).
    seed
        Seed of the other buildings' positions.
    description
        Description of the community (default: a renewable energy community around the place).
    sharing_method
        ``sharingMethod`` of the community (``pro_rata``, ``fixed``, ``hybrid``...).
    legal_form
        ``REC``, ``CEC`` or ``other``.
    spread_deg
        Largest offset of the other buildings from the place, (longitude, latitude) in degrees
        (0.004 deg of longitude is about 280 m in Brussels).
    extra
        More attributes of the ``EnergyCommunity`` entity (normalized NGSI-LD), e.g. a sharing key.
    """
    rng = np.random.default_rng(seed)
    cid = f"urn:ngsi-ld:EnergyCommunity:{community_key}"
    lon0, lat0 = float(school["lon"]), float(school["lat"])
    ents: list[dict[str, Any]] = []
    member_ids = []
    for n, m in enumerate(members):
        # The anchor (the school) at the place; the others within spread_deg (~300 m by default).
        lon, lat = (
            (lon0, lat0)
            if n == 0
            else (
                lon0 + float(rng.uniform(-spread_deg[0], spread_deg[0])),
                lat0 + float(rng.uniform(-spread_deg[1], spread_deg[1])),
            )
        )
        pid = f"urn:ngsi-ld:EnergyProsumer:{community_key}:{m.key}"
        bid = f"urn:ngsi-ld:Building:{community_key}:{m.key}"
        mid = f"urn:ngsi-ld:Meter:{community_key}:{m.key}"
        member_ids.append(pid)
        ean = f"5414480{zlib.crc32(community_key.encode()) % 10_000:04d}{n:07d}"
        building: dict[str, Any] = {
            "id": bid,
            "type": "Building",
            "name": _prop(school["name"] if n == 0 and m.category == "school" else f"{m.name} building"),
            "category": _prop([m.category]),
            "location": _point(lon, lat),
        }
        if n == 0:
            building["address"] = _prop(
                {
                    "streetAddress": school["address"],
                    "postalCode": school["postcode"],
                    "addressLocality": school["municipality"],
                    "addressCountry": "BE",
                }
            )
        ents.append(building)
        ents.append(
            {
                "id": mid,
                "type": "Meter",
                "accessPointId": _prop(ean),
                "meterType": _prop("smart"),
                "locality": _prop(m.locality),
                "locatedIn": _rel(bid),
            }
        )
        controls = []
        if m.pv_kwp:
            pv = f"urn:ngsi-ld:PhotovoltaicDevice:{community_key}:{m.key}"
            controls.append(pv)
            ents.append(
                {
                    "id": pv,
                    "type": "PhotovoltaicDevice",
                    "peakPower": _prop(m.pv_kwp, "KWT"),
                    "tilt": _prop(35 if m.category != "school" else 15),
                    "azimuth": _prop(180),
                    "locatedIn": _rel(bid),
                }
            )
        if m.battery_kwh:
            bat = f"urn:ngsi-ld:Battery:{community_key}:{m.key}"
            controls.append(bat)
            ents.append(
                {
                    "id": bat,
                    "type": "Battery",
                    "capacity": _prop(m.battery_kwh, "KWH"),
                    "maxChargePower": _prop(round(m.battery_kwh / 2, 1), "KWT"),
                    "maxDischargePower": _prop(round(m.battery_kwh / 2, 1), "KWT"),
                    "roundTripEfficiency": _prop(0.9),
                    "locatedIn": _rel(bid),
                }
            )
        if m.ev_charger_kw:
            ev = f"urn:ngsi-ld:EVChargingStation:{community_key}:{m.key}"
            controls.append(ev)
            ents.append(
                {
                    "id": ev,
                    "type": "EVChargingStation",
                    "chargingPower": _prop(m.ev_charger_kw, "KWT"),
                    "numberOfSockets": _prop(2 if m.category == "school" else 1),
                    "locatedIn": _rel(bid),
                }
            )
        if m.heat_pump_kw:
            hp = f"urn:ngsi-ld:HeatPump:{community_key}:{m.key}"
            controls.append(hp)
            ents.append(
                {"id": hp, "type": "HeatPump", "power": _prop(m.heat_pump_kw, "KWT"), "locatedIn": _rel(bid)}
            )
        prosumer: dict[str, Any] = {
            "id": pid,
            "type": "EnergyProsumer",
            "name": _prop(m.name),
            "roleType": _prop(m.role),
            "timezone": _prop("Europe/Brussels"),
            "annualConsumption": _prop(m.annual_kwh, "KWH"),
            "memberOf": _rel(cid),
            "isMeteredBy": _rel(mid),
            "represents": _rel(bid),
        }
        if controls:
            prosumer["controls"] = (
                _rel(controls[0]) if len(controls) == 1 else {"type": "Relationship", "object": controls}
            )
        ents.append(prosumer)
    ents.insert(
        0,
        {
            "id": cid,
            "type": "EnergyCommunity",
            "name": _prop(name),
            "description": _prop(
                description
                or f"Renewable energy community around {school['name']} ({school['municipality']})"
            ),
            "communityType": _prop(
                "CitizenEnergyCommunity" if legal_form == "CEC" else "RenewableEnergyCommunity"
            ),
            "legalForm": _prop(legal_form),
            "sharingMethod": _prop(sharing_method),
            # Brussels 2024 orders of magnitude: energy component of a supplier contract, a feed-in
            # buy-back, and the community's own price for shared kWh between the two (EUR/kWh).
            "pricingMethod": _prop("fixed"),
            "supplierEnergyPrice": _prop(0.30),
            "feedInPrice": _prop(0.05),
            "communityPrice": _prop(0.17),
            "foundingYear": _prop(2024),
            "location": _point(lon0, lat0),
            "hasMember": {"type": "Relationship", "object": member_ids},
            **(extra or {}),
        },
    )
    for e in ents:
        e["@context"] = BRIGHT_CONTEXT_URL
    return ents


def build_demo_community(municipality: str = "Ixelles", seed: int = 7) -> DemoCommunity:
    """The demo community around a real school of ``municipality``."""
    school = pick_school(municipality)
    key = f"school-{school['site_id']}"
    members = default_members(seed)
    name = f"Energy community {school['name']}"
    return DemoCommunity(key, name, school, members, community_entities(key, name, school, members, seed))


def member_load_kwh(member: Member, index: pd.DatetimeIndex | None = None) -> pd.Series:
    """A member's quarter-hourly offtake before PV (kWh), its real profile scaled to ``annual_kwh``.

    SimBench profiles are per unit of peak power over 2016; the UCI household is taken over
    2007-2009 and shifted to 2016 by whole weeks so weekdays stay weekdays.
    """
    if member.profile == "UCI":
        uci = datasets.uci_household()["energy_kwh"]
        start = pd.Timestamp("2008-01-06 23:00", tz="UTC")  # a Sunday 00:00 CET, like 2016-01-03
        part = uci.loc[start : start + pd.Timedelta(days=366) - pd.Timedelta(minutes=15)]
        shifted = pd.Series(
            part.to_numpy(),
            index=pd.DatetimeIndex(part.index) + (pd.Timestamp("2016-01-03 23:00", tz="UTC") - start),
        )
        profile = shifted.reindex(datasets.simbench_profiles().index).interpolate(limit=8)
        profile = profile.fillna(profile.mean())
    else:
        profile = datasets.simbench_profiles()[member.profile]
    scaled = profile / profile.sum() * member.annual_kwh
    return scaled if index is None else scaled.reindex(index)


def member_pv_kwh(member: Member, pv_profile: str = "PV3") -> pd.Series:
    """Quarter-hourly PV production (kWh) for the member's kWp from a SimBench PV profile.

    The per-unit profile is scaled so that 1 kWp yields 950 kWh/year, typical for Brussels.
    """
    p = datasets.simbench_profiles()[pv_profile]
    return p / p.sum() * 950.0 * member.pv_kwp


def meter_series(community: DemoCommunity) -> dict[str, pd.DataFrame]:
    """The year of quarter-hourly metering of every member's access point (2016, UTC).

    What the DSO's smart meter records is the net of load and own PV per quarter-hour, split
    into gross offtake and gross injection (both >= 0, kWh). PV production is returned as the
    ``production`` of each PV device.

    Returns
    -------
    dict
        ``offtake`` and ``injection`` (one column per meter id) and ``production`` (one column per
        PV device id), each a DataFrame of kWh per quarter-hour.
    """
    offtake, injection, production = {}, {}, {}
    for m in community.members:
        load = member_load_kwh(m).to_numpy()
        pv = member_pv_kwh(m).to_numpy() if m.pv_kwp else np.zeros_like(load)
        net = load - pv
        meter = f"urn:ngsi-ld:Meter:{community.key}:{m.key}"
        offtake[meter] = np.clip(net, 0.0, None)
        injection[meter] = np.clip(-net, 0.0, None)
        if m.pv_kwp:
            production[f"urn:ngsi-ld:PhotovoltaicDevice:{community.key}:{m.key}"] = pv
    index = datasets.simbench_profiles().index
    return {
        "offtake": pd.DataFrame(offtake, index=index),
        "injection": pd.DataFrame(injection, index=index),
        "production": pd.DataFrame(production, index=index),
    }
