"""The Brussels demo network: community twins of four kinds built from real data, stage by stage.

Each community of the demo network (``bright demo``) is a full twin, built the way the single demo
community is (:mod:`bright.services.demo`), from parameters:

- ``school``: a community around a real school of the Brussels register (the school with PV, a
  battery and chargers, a shop, the neighbouring households);
- ``social_housing``: a social-housing block 300-600 m from a real school: flats (no PV of their
  own), the block's common services with the collective PV on the roof and two heat pumps, a fixed
  sharing key that gives each flat the same share;
- ``houses``: a neighbourhood of single-family homes, PV on most roofs, home batteries, EV chargers
  and heat pumps;
- ``sme``: an SME zone (offices, shops, a workshop) with large roofs and storage, a citizen energy
  community.

Members' loads are the real SimBench 2016 and UCI profiles scaled to each member's annual
consumption, PV the real SimBench PV profile scaled to the member's kWp (950 kWh/kWp/year); the
flexibility schedule and the forecasts use the bundled Belgian day-ahead prices and the
Brussels-Uccle weather year (:mod:`bright.datasets`). Everything is deterministic for a seed.

The pipeline of one community (:func:`build_community`) is a list of stages, each timed and
reported as ``ok``, ``skipped: <reason>`` or ``failed: <reason>``: twin (entities), metering (a
year of quarter-hours), live ingest (a hook: the MQTT simulator of the orchestrator), balance and
settlement, S-BRIGHT, forecasts, flexibility schedule, the 2030 mobility scenario and the service
offers. The layers above add their stages (``extra_stages``: the network's practices and the
public card, :mod:`bright.network.demo_nodes`). It runs on the community's own database in a worker
process; the steps that need running nodes (ledger cosigning, federation, discovery) are the
orchestrator's.
"""

from __future__ import annotations

import functools
import importlib
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bright import datasets
from bright.services.demo import DemoCommunity, Member, community_entities, meter_series

__all__ = [
    "KINDS",
    "BuildContext",
    "CommunityBuild",
    "CommunityPlan",
    "ExtraStage",
    "StageResult",
    "build_community",
    "demo_period",
    "period_frames",
    "plan_network",
]

#: Kinds of community in the demo network.
KINDS = ("school", "social_housing", "houses", "sme")
#: Municipalities of the school communities, in order (real schools of the register).
SCHOOL_MUNICIPALITIES = ("Ixelles", "Schaerbeek", "Anderlecht", "Uccle", "Etterbeek", "Forest")
_HOUSEHOLD_PROFILES = ("H0-A", "H0-B", "H0-C", "H0-G", "H0-H", "H0-L", "UCI")
_SME_PROFILES = ("G0-A", "G1-B", "G2-A", "G3-A", "G4-A", "G5-A", "G6-A", "G0-M")
#: Grid emission factor of the KPIs, kgCO2e/kWh (Belgian grid mix order of magnitude).
EMISSION_FACTOR_KG_PER_KWH = 0.16
#: Days of readings the forecast models of tomorrow are trained on.
FORECAST_HISTORY_DAYS = 60


@dataclass(frozen=True)
class CommunityPlan:
    """What one community of the demo network is made of (no data yet).

    Attributes
    ----------
    key
        Key in the entity ids and the node's name (``school-371``, ``housing-1``...).
    kind
        One of :data:`KINDS`.
    name
        Name of the community.
    site
        The place: a school of the register, or a point near one (``name``, ``address``,
        ``postcode``, ``municipality``, ``lat``, ``lon``).
    members
        The members (annual kWh, kWp, kWh of storage, kW of chargers and heat pumps).
    sharing_method
        ``pro_rata`` or ``fixed`` (with a key that gives each consumer the same share).
    legal_form
        ``REC`` or ``CEC``.
    spread_deg
        Largest offset of the buildings from the site, (lon, lat) degrees.
    seed
        Seed of the positions and the simulated questionnaire answers.
    """

    key: str
    kind: str
    name: str
    site: dict[str, Any]
    members: tuple[Member, ...]
    sharing_method: str = "pro_rata"
    legal_form: str = "REC"
    spread_deg: tuple[float, float] = (0.004, 0.003)
    seed: int = 7

    @property
    def community_id(self) -> str:
        """Entity id of the ``EnergyCommunity``."""
        return f"urn:ngsi-ld:EnergyCommunity:{self.key}"

    @property
    def demo_community(self) -> DemoCommunity:
        """The plan as the single demo's :class:`~bright.services.demo.DemoCommunity` (no entities)."""
        return DemoCommunity(self.key, self.name, self.site, list(self.members))

    @property
    def description(self) -> str:
        """One sentence about the community (its kind, its place)."""
        return _DESCRIPTIONS[self.kind].format(place=self.site["name"], town=self.site["municipality"])

    def sharing_key(self) -> dict[str, float] | None:
        """Percent per consumer (member id) for a ``fixed`` key: equal shares; None otherwise."""
        if self.sharing_method != "fixed":
            return None
        consumers = [m for m in self.members if m.pv_kwp == 0]
        pct = round(100.0 / len(consumers), 6)
        key = {f"urn:ngsi-ld:EnergyProsumer:{self.key}:{m.key}": pct for m in consumers}
        first = next(iter(key))
        key[first] = round(100.0 - pct * (len(consumers) - 1), 6)
        return key

    def entities(self) -> list[dict[str, Any]]:
        """The NGSI-LD entities of the community, its members and their assets."""
        from bright.services.community import TERMS

        # The grid's emission factor on the community: the dashboard and the KPIs show CO2 avoided.
        extra: dict[str, Any] = {
            TERMS["emissionFactor"]: {"type": "Property", "value": EMISSION_FACTOR_KG_PER_KWH}
        }
        key = self.sharing_key()
        if key is not None:
            extra["sharingKey"] = {"type": "Property", "value": key}
        return community_entities(
            self.key,
            self.name,
            self.site,
            list(self.members),
            self.seed,
            description=_DESCRIPTIONS[self.kind].format(
                place=self.site["name"], town=self.site["municipality"]
            ),
            sharing_method=self.sharing_method,
            legal_form=self.legal_form,
            spread_deg=self.spread_deg,
            extra=extra,
        )


_DESCRIPTIONS = {
    "school": "Renewable energy community around {place} ({town}): the school's roof feeds its neighbours.",
    "social_housing": "Social-housing block in {town}: collective PV and heat pumps, an equal share for every flat.",
    "houses": "Neighbourhood of single-family homes in {town} with PV on most roofs, batteries, EVs and heat pumps.",
    "sme": "SME zone in {town}: large roofs, storage and fleet charging shared between businesses.",
}


def _households(rng: np.random.Generator, n: int, *, lo: float, hi: float, category: str) -> list[Member]:
    return [
        Member(
            key=f"home{i + 1:02d}",
            name=f"Household {i + 1}",
            role="consumer",
            category=category,
            profile=_HOUSEHOLD_PROFILES[i % len(_HOUSEHOLD_PROFILES)],
            annual_kwh=float(np.round(rng.uniform(lo, hi), -1)),
            locality="building" if category == "apartments" else "lv_cabin",
        )
        for i in range(n)
    ]


def _with(m: Member, **changes: Any) -> Member:
    values = {f: getattr(m, f) for f in m.__dataclass_fields__}
    values.update(changes)
    if values.get("pv_kwp"):
        values["role"] = "prosumer"
    return Member(**values)


def school_members(rng: np.random.Generator, households: int = 10) -> list[Member]:
    """A school (45-90 MWh/year, 60-120 kWp, battery, chargers), a shop and PV on a third of the homes."""
    school = Member(
        "school",
        "School",
        "prosumer",
        "school",
        "G1-A",
        float(np.round(rng.uniform(45_000, 90_000), -2)),
        pv_kwp=float(np.round(rng.uniform(60, 120))),
        battery_kwh=float(rng.choice([0.0, 60.0])),
        ev_charger_kw=22.0,
    )
    shop = Member(
        "shop", "Bakery", "consumer", "commercial", "G5-A", float(np.round(rng.uniform(15_000, 30_000), -2))
    )
    homes = _households(rng, households, lo=1_600, hi=4_500, category="house")
    for i, h in enumerate(homes):
        pv = float(rng.choice([0, 0, 3.2, 4.5, 6.0]))
        homes[i] = _with(
            h,
            category="house" if i % 3 else "apartments",
            pv_kwp=pv,
            battery_kwh=10.0 if i == 2 else 0.0,
            ev_charger_kw=11.0 if i % 4 == 1 else 0.0,
            heat_pump_kw=3.0 if i % 5 == 3 else 0.0,
        )
    return [school, shop, *homes]


def housing_members(rng: np.random.Generator, flats: int = 16) -> list[Member]:
    """The block's common services (lifts, lights, collective heat pumps; 40-80 kWp on the roof) and flats."""
    common = Member(
        "block",
        "Common services",
        "prosumer",
        "residential",
        "G0-A",
        float(np.round(rng.uniform(18_000, 30_000), -2)),
        pv_kwp=float(np.round(rng.uniform(40, 80))),
        heat_pump_kw=12.0,
        locality="building",
    )
    return [common, *_households(rng, flats, lo=1_300, hi=2_800, category="apartments")]


def houses_members(rng: np.random.Generator, homes: int = 12) -> list[Member]:
    """Single-family homes: PV of 3-8 kWp on three roofs in four, batteries, EVs and heat pumps."""
    out = []
    for i, h in enumerate(_households(rng, homes, lo=2_500, hi=5_500, category="house")):
        pv = float(np.round(rng.uniform(3, 8), 1)) if i % 4 != 3 else 0.0
        out.append(
            _with(
                h,
                pv_kwp=pv,
                battery_kwh=float(rng.choice([0.0, 0.0, 10.0, 13.5])) if pv else 0.0,
                ev_charger_kw=11.0 if i % 5 in (0, 2) else 0.0,
                heat_pump_kw=4.0 if i % 4 == 1 else 0.0,
            )
        )
    return out


def sme_members(rng: np.random.Generator, smes: int = 8) -> list[Member]:
    """Offices, shops and a workshop (20-120 MWh/year), big PV on most roofs, storage, fleet chargers."""
    kinds = ("office", "commercial", "industrial")
    out = []
    for i in range(smes):
        pv = float(np.round(rng.uniform(30, 250))) if i % 3 != 2 else 0.0
        out.append(
            Member(
                key=f"sme{i + 1:02d}",
                name=f"Business {i + 1}",
                role="prosumer" if pv else "consumer",
                category=kinds[i % 3],
                profile=_SME_PROFILES[i % len(_SME_PROFILES)],
                annual_kwh=float(np.round(rng.uniform(20_000, 120_000), -2)),
                pv_kwp=pv,
                battery_kwh=100.0 if i == 0 else 0.0,
                ev_charger_kw=22.0 if i % 2 == 0 else 0.0,
                locality="lv_cabin" if i < smes // 2 else "substation",
            )
        )
    return out


def _offset(
    lat: float, lon: float, rng: np.random.Generator, lo_m: float, hi_m: float
) -> tuple[float, float]:
    d = rng.uniform(lo_m, hi_m) / 1000.0
    a = rng.uniform(0, 2 * np.pi)
    return lat + d * np.cos(a) / 111.32, lon + d * np.sin(a) / (111.32 * np.cos(np.radians(lat)))


def _school_sites(n: int) -> list[dict[str, Any]]:
    schools = datasets.brussels_schools()
    ordinary = schools[schools["level"].isin(["Fondamental", "Secondaire"])]
    out = []
    for i in range(n):
        town = SCHOOL_MUNICIPALITIES[i % len(SCHOOL_MUNICIPALITIES)]
        here = ordinary[ordinary["municipality"] == town].sort_values("name", kind="stable")
        out.append(dict(here.iloc[i // len(SCHOOL_MUNICIPALITIES)]))
    return out


def _title(name: str) -> str:
    name = " ".join(str(name).split())
    return name.title() if name.isupper() else name


def plan_network(
    *,
    schools: int = 3,
    kinds: Sequence[str] = ("social_housing", "houses", "sme"),
    size: float = 1.0,
    seed: int = 11,
) -> list[CommunityPlan]:
    """The communities of the demo network (deterministic for a seed).

    Parameters
    ----------
    schools
        Communities around real schools (Ixelles, Schaerbeek, Anderlecht, then Uccle...).
    kinds
        Other kinds, one community each (``social_housing``, ``houses``, ``sme``).
    size
        Scale of the member counts (1: 12-17 members per community; 0.5 for quick tests).
    seed
        Random seed.

    Returns
    -------
    list of CommunityPlan
        The school communities first, then one per kind in ``kinds``.
    """
    bad = [k for k in kinds if k not in KINDS or k == "school"]
    if bad:
        raise ValueError(f"unknown community kind {bad[0]!r}; use social_housing, houses or sme")
    if schools < 0 or not 0 < size <= 4:
        raise ValueError(f"schools must be >= 0 and size in (0, 4], got {schools} and {size}")
    rng = np.random.default_rng(seed)

    def count(n: int) -> int:
        return max(2, round(n * size))

    plans = []
    sites = _school_sites(max(schools, 1))
    for i in range(schools):
        site = sites[i]
        site = {**site, "name": _title(site["name"])}
        plans.append(
            CommunityPlan(
                key=f"school-{site['site_id']}",
                kind="school",
                name=f"Energy community {site['name']}",
                site=site,
                members=tuple(school_members(rng, count(10))),
                seed=seed + i,
            )
        )
    for j, kind in enumerate(kinds):
        base = sites[j % len(sites)]
        lat, lon = _offset(float(base["lat"]), float(base["lon"]), rng, 300, 600)
        town = str(base["municipality"])
        if kind == "social_housing":
            name, members, method, legal, spread = (
                f"Cité des Tilleuls ({town})",
                housing_members(rng, count(16)),
                "fixed",
                "REC",
                (0.0006, 0.0004),
            )
            address = "Rue des Tilleuls 12"
        elif kind == "houses":
            name, members, method, legal, spread = (
                f"Quartier solaire {town}",
                houses_members(rng, count(12)),
                "pro_rata",
                "REC",
                (0.003, 0.002),
            )
            address = "Avenue des Tournesols 3"
        else:
            name, members, method, legal, spread = (
                f"Zone PME {town}",
                sme_members(rng, count(8)),
                "pro_rata",
                "CEC",
                (0.004, 0.003),
            )
            address = "Rue de l'Industrie 40"
        site = {
            "name": name,
            "address": address,
            "postcode": str(base["postcode"]),
            "municipality": town,
            "lat": round(lat, 6),
            "lon": round(lon, 6),
        }
        plans.append(
            CommunityPlan(
                key=f"{kind.replace('_', '-')}-{zlib.crc32(name.encode()) % 1000:03d}",
                kind=kind,
                name=name,
                site=site,
                members=tuple(members),
                sharing_method=method,
                legal_form=legal,
                spread_deg=spread,
                seed=seed + 100 + j,
            )
        )
    return plans


# --------------------------------------------------------------------------------------------------
# Period and metering
# --------------------------------------------------------------------------------------------------


def demo_period(days: int | None = None, *, end: str = "2017-01-01") -> tuple[pd.Timestamp, pd.Timestamp]:
    """The metered period ``[start, end)`` (Europe/Brussels midnights, as UTC timestamps).

    Parameters
    ----------
    days
        Length in days ending at ``end``; None: the whole year 2016 of the real profiles.
    end
        Local day after the last metered day (at most 2017-01-01, the end of the profiles).
    """
    stop = pd.Timestamp(end, tz="Europe/Brussels")
    if stop > pd.Timestamp("2017-01-01", tz="Europe/Brussels"):
        raise ValueError(f"the real profiles end on 2016-12-31; end {end} is after")
    first = pd.Timestamp("2016-01-01", tz="Europe/Brussels")
    start = first if days is None else max(first, stop - pd.Timedelta(days=days))
    if not start < stop:
        raise ValueError(f"empty period ending {end}")
    return start.tz_convert("UTC"), stop.tz_convert("UTC")


def period_frames(plan: CommunityPlan, start: pd.Timestamp, end: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """Every member's quarter-hourly offtake, injection and PV production over ``[start, end)`` (kWh)."""
    frames = meter_series(plan.demo_community)
    return {name: f.loc[(f.index >= start) & (f.index < end)] for name, f in frames.items()}


# --------------------------------------------------------------------------------------------------
# The pipeline of one community
# --------------------------------------------------------------------------------------------------


@dataclass
class StageResult:
    """One stage of a community's build.

    Attributes
    ----------
    name
        Stage name (``twin``, ``metering``, ``balance``...).
    status
        ``ok``, ``skipped: <reason>`` or ``failed: <reason>``.
    wall_s, cpu_s
        Wall and CPU time of the stage in its process, s.
    figures
        What it produced (numbers the summary and the tests check).
    """

    name: str
    status: str = "ok"
    wall_s: float = 0.0
    cpu_s: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class CommunityBuild:
    """The outcome of :func:`build_community`: every stage, in order."""

    key: str
    community_id: str
    database_url: str
    stages: list[StageResult] = field(default_factory=list)

    def stage(self, name: str) -> StageResult:
        """The stage called ``name``."""
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage {name!r} in the build of {self.key}")

    @property
    def wall_s(self) -> float:
        return sum(s.wall_s for s in self.stages)

    @property
    def cpu_s(self) -> float:
        return sum(s.cpu_s for s in self.stages)


class StageSkipped(Exception):
    """Raised inside a stage to report it as ``skipped: <reason>``."""


LiveIngest = Callable[["CommunityPlan", str, dict[str, pd.DataFrame]], dict[str, Any]]


def _run(build: CommunityBuild, name: str, fn: Callable[[], dict[str, Any] | None]) -> StageResult:
    t0, c0 = time.perf_counter(), time.process_time()
    result = StageResult(name)
    try:
        result.figures = fn() or {}
    except StageSkipped as skip:
        result.status = f"skipped: {skip}"
    except Exception as exc:  # a failed stage is reported, the next ones still run
        result.status = f"failed: {type(exc).__name__}: {exc}"
    result.wall_s = time.perf_counter() - t0
    result.cpu_s = time.process_time() - c0
    build.stages.append(result)
    return result


@dataclass(frozen=True)
class BuildContext:
    """What a stage added by an upper layer gets (see ``extra_stages`` of :func:`build_community`).

    Attributes
    ----------
    plan
        The community.
    twin, series
        Its node's entities and time series.
    node_url
        Base URL of its node, if known.
    index
        Position of the community among those of its kind.
    """

    plan: CommunityPlan
    twin: Any
    series: Any
    node_url: str | None
    index: int


#: A stage added by an upper layer: a name and a function of the build context returning figures.
ExtraStage = tuple[str, Callable[[BuildContext], dict[str, Any]]]


def build_community(
    plan: CommunityPlan,
    database_url: str,
    *,
    start: pd.Timestamp,
    end: pd.Timestamp,
    live_days: int = 0,
    live_ingest: LiveIngest | None = None,
    node_url: str | None = None,
    index: int = 0,
    extra_stages: Sequence[ExtraStage] = (),
    only: Sequence[str] | None = None,
) -> CommunityBuild:
    """Build one community's twin on its own database and run its local pipeline.

    Parameters
    ----------
    plan
        The community.
    database_url
        Its node's database (created when missing).
    start, end
        The metered period (UTC); tomorrow is the local day starting at ``end``.
    live_days
        The last days of the period come through ``live_ingest`` (the MQTT simulator) instead of
        being written directly (0: everything direct).
    live_ingest
        ``(plan, database_url, frames) -> figures``: publishes ``frames`` (the live window) and
        returns once the node wrote them; required when ``live_days > 0``.
    node_url
        Base URL of the community's node, written on its card.
    index
        Position of the community among those of its kind (which generated card it takes after).
    extra_stages
        Stages of the layers above (the network's practices and card, see
        :mod:`bright.network.demo_nodes`), run after the others with a :class:`BuildContext`.
    only
        Run only these stages (tests); default all, in order.

    Returns
    -------
    CommunityBuild
        The stages in order: twin, metering, live_ingest, balance, settlement, sbright, forecast,
        schedule, mobility, offers, then ``extra_stages``.
    """
    from bright.config import Settings
    from bright.services.community import load_community
    from bright.twin.db import make_engine
    from bright.twin.series import SeriesStore
    from bright.twin.service import TwinService
    from bright.twin.vocabulary import bright_context

    build = CommunityBuild(plan.key, plan.community_id, database_url)
    settings = Settings(database_url=database_url)
    engine = make_engine(database_url)
    twin = TwinService(engine, settings)
    series = SeriesStore(engine)
    cid = plan.community_id
    live_start = end - pd.Timedelta(days=live_days) if live_days else end
    if live_days and live_ingest is None:
        raise ValueError("live_days > 0 needs a live_ingest hook")

    def stage_twin() -> dict[str, Any]:
        ents = plan.entities()
        res = twin.batch_upsert("", ents, twin.resolve_context(ents[0]["@context"]))
        if res["errors"]:
            err = res["errors"][0]
            raise ValueError(f"entity {err['entityId']} rejected: {err['error']['detail']}")
        return {
            "entities": len(res["success"]),
            "members": len(plan.members),
            "pv_kwp": sum(m.pv_kwp for m in plan.members),
        }

    def stage_metering() -> dict[str, Any]:
        vocab = bright_context()
        frames = period_frames(plan, start, live_start)
        n = 0
        for name, frame in frames.items():
            if frame.size:
                series.write(frame, attribute=vocab.expand(name), unit_code="KWH")
                n += int(frame.size)
        return {"values": n, "from": str(start), "to": str(live_start)}

    def stage_live() -> dict[str, Any]:
        if not live_days or live_ingest is None:
            raise StageSkipped("no --mqtt broker: readings written directly")
        frames = period_frames(plan, live_start, end)
        return live_ingest(plan, database_url, frames)

    state: dict[str, Any] = {}

    def community() -> Any:
        return load_community(twin, series, cid)

    def stage_balance() -> dict[str, Any]:
        from bright.services.energy import community_balance

        loaded = community()
        for freq in ("1Y", "1M"):  # KPI entities of the year and of every month
            report = community_balance(
                loaded,
                start=start,
                end=end,
                freq=freq,
                emission_factor_kg_per_kwh=EMISSION_FACTOR_KG_PER_KWH,
                write=True,
            )
            state[freq] = report
        year = (
            state["1Y"]
            .community_frame()[["offtake_kwh", "injection_kwh", "shared_kwh", "co2_avoided_kg"]]
            .sum()
        )
        return {
            "kpis": len(state["1Y"].kpi_ids) + len(state["1M"].kpi_ids),
            "offtake_kwh": float(year.offtake_kwh),
            "injection_kwh": float(year.injection_kwh),
            "shared_kwh": float(year.shared_kwh),
            "co2_avoided_kg": float(year.co2_avoided_kg),
            "self_sufficiency": float(year.shared_kwh / year.offtake_kwh) if year.offtake_kwh else None,
        }

    def stage_settlement() -> dict[str, Any]:
        from bright.services.energy import community_settlement

        report = community_settlement(community(), start=start, end=end, write=True)
        totals = report.community_totals()
        return {
            "pricing": report.pricing,
            "shared_kwh": float(np.nansum(report.sharing.result.shared_offtake_kwh)),
            "community_purchase_eur": float(np.nansum(report.settlement.community_purchase_eur)),
            "community_sales_eur": float(np.nansum(report.settlement.community_sales_eur)),
            "community_account_eur": float(np.nansum(report.settlement.community_account_eur)),
            "kpis": len(report.kpi_ids),
            **{k: v for k, v in totals.items() if k.endswith("_eur")},
        }

    def stage_sbright() -> dict[str, Any]:
        from bright.services.engagement import EngagementService

        eng = EngagementService(twin, series)
        eng.seed_simulated_answers(cid, seed=plan.seed)
        mix = eng.mix(cid)
        cats = {c["name"]: c["members"] for c in mix.get("categories", []) if c["members"]}
        return {"classified": mix.get("classified"), "categories": cats}

    def stage_forecast() -> dict[str, Any]:
        from bright.services.forecasting import forecast_day

        # Models trained on the last 60 days: enough for tomorrow, a quarter of the cost of a year.
        run = forecast_day(community(), score_days=0, history_days=FORECAST_HISTORY_DAYS)
        return {"day": str(run.day)}

    def stage_schedule() -> dict[str, Any]:
        from bright.services.scheduling import schedule_day

        run = schedule_day(community(), mode="compare", time_limit_s=20.0)
        # Value stacking: what each commitment (energy bill, sharing, limits...) is worth against
        # the reference schedule, summed over the members (EUR for the day).
        items = run.statement.groupby("item")["value_eur"].sum()
        out: dict[str, Any] = {
            "status": run.status,
            "cost_eur": float(run.cost_eur),
            "value_stack_eur": float(items.sum()),
            "value_items": {str(k): round(float(v), 2) for k, v in items.items()},
        }
        if run.comparison is not None:
            costs = run.comparison.summary["cost_eur"].astype(float).to_dict()
            out["individual_eur"] = costs["individual"]
            out["community_eur"] = costs["community"]
        return out

    def stage_mobility() -> dict[str, Any]:
        run_demo_scenario = _optional("bright.services.mobility", "run_demo_scenario")
        result = run_demo_scenario(twin, cid, year=2030, series=series)
        return {k: getattr(result, k) for k in ("year", "n_evs", "fleet_size", "home_evs", "work_evs")}

    def stage_offers() -> dict[str, Any]:
        offer_service = _optional("bright.services.offers", "OfferService")
        demo_offers = _optional("bright.services.offers", "demo_offers")
        svc = offer_service(twin)
        published = [svc.publish(o, community_id=cid) for o in demo_offers()]
        return {"offers": len(published), "providers": len({o.provider_kind for o in published})}

    try:
        for name, fn in (
            ("twin", stage_twin),
            ("metering", stage_metering),
            ("live_ingest", stage_live),
            ("balance", stage_balance),
            ("settlement", stage_settlement),
            ("sbright", stage_sbright),
            ("forecast", stage_forecast),
            ("schedule", stage_schedule),
            ("mobility", stage_mobility),
            ("offers", stage_offers),
        ):
            if only is None or name in only:
                _run(build, name, fn)
        context = BuildContext(plan, twin, series, node_url, index)
        for name, extra in extra_stages:
            if only is None or name in only:
                _run(build, name, functools.partial(extra, context))
    finally:
        engine.dispose()
    return build


def _optional(module: str, name: str) -> Callable[..., Any]:
    """A function of another component if it is installed, else :class:`StageSkipped`."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise StageSkipped(f"{module} is not available") from None
    fn = getattr(mod, name, None)
    if fn is None:
        raise StageSkipped(f"{module}.{name} is not available")
    return fn  # type: ignore[no-any-return]
