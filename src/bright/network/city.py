"""The city twin: one aggregating node that sees the communities of its network as one twin.

A node started with ``bright serve --role network`` (``BRIGHT_ROLE=network``) is the **city**
(or network) node. Community nodes register with it as context sources
(:class:`bright.network.federation.ParentRegistration`); the city then reads, from every
registered node and in parallel, **open data only**:

- the communities' cards: the ``EnergyCommunity`` entities restricted to the card's public
  attributes (:data:`bright.network.cards.PUBLIC_ATTRIBUTES`; ``hasMember`` and anything else
  about members is never asked for, so it never crosses the wire);
- the communities' ``KeyPerformanceIndicator`` entities (community-level figures written by
  :mod:`bright.services.energy`; a KPI that names a member is ignored).

and computes the **aggregate** of the network for one period (:func:`aggregate_figures`, a pure
function): members by type, installed technologies, the flexible assets (storage, EV charging
points, heat pumps), gross offtake (consumption from the grid), gross injection (production fed
in), shared energy and CO2 avoided summed over the communities that report them, and the ratios
recomputed from those sums (self-sufficiency = Σ shared / Σ offtake, self-consumption =
Σ shared / Σ injection; never a mean of the communities' ratios).

The answer says which nodes did not answer (timeout, refused, error) and which communities have
no KPI for the period; a node that does not answer never fails the aggregate.

The result is served as REST (:mod:`bright.api.city`) and written into the city's own twin as
NGSI-LD entities (:meth:`CityTwin.entities`): ``urn:ngsi-ld:CityTwin:<name>`` (type
``bright:CityTwin``) and one ``KeyPerformanceIndicator`` per aggregated indicator and period, so
the same NGSI-LD API (queries, subscriptions, temporal history) serves the city view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bright.network.cards import (
    BRIGHT_NS,
    PUBLIC_ATTRIBUTES,
    TYPE_IRI,
    CardError,
    CommunityCard,
    card_from_entity,
    entity_view,
)
from bright.network.federation import Federation, SourceEntities, query_sources
from bright.twin.context import BRIGHT_CONTEXT_URL
from bright.twin.errors import BadRequestData

log = logging.getLogger("bright.network.city")

__all__ = [
    "ADDITIVE_INDICATORS",
    "CITY_TYPE",
    "FREQUENCIES",
    "RATIO_INDICATORS",
    "ROLES",
    "CityAggregate",
    "CityTwin",
    "CommunityFigures",
    "KpiRecord",
    "NodeStatus",
    "aggregate_figures",
    "community_figures",
    "kpi_records",
    "latest_period",
    "role_of",
]

#: Roles of a node: a community's own node, or the network (city) node that aggregates.
ROLES = ("community", "network")
#: Type IRI of the city twin entity.
CITY_TYPE = BRIGHT_NS + "CityTwin"
#: ``calculationFrequency`` values the aggregate can be computed for.
FREQUENCIES = ("daily", "monthly", "yearly")
#: KPIs summed over the communities (energy in kWh, emissions in kgCO2e).
ADDITIVE_INDICATORS: dict[str, tuple[str, str]] = {
    "offtake_kwh": ("Gross offtake (consumption from the grid)", "KWH"),
    "injection_kwh": ("Gross injection (production fed into the grid)", "KWH"),
    "shared_kwh": ("Shared energy", "KWH"),
    "residual_offtake_kwh": ("Residual offtake", "KWH"),
    "residual_injection_kwh": ("Residual injection", "KWH"),
    "co2_avoided_kg": ("CO2 avoided", "KGM"),
}
#: KPIs recomputed from summed ones: name -> (numerator, denominator, display name).
RATIO_INDICATORS: dict[str, tuple[str, str, str]] = {
    "self_sufficiency": ("shared_kwh", "offtake_kwh", "Self-sufficiency"),
    "self_consumption_rate": ("shared_kwh", "injection_kwh", "Self-consumption rate"),
}
#: Attributes of a KPI the city reads (BRIGHT @context terms).
KPI_TERMS = (
    "kpiValue",
    "indicator",
    "refEnergyCommunity",
    "calculationPeriod",
    "calculationFrequency",
    "sharingMethod",
    "pricingMethod",
)
# The card's sharing-method names that differ from the KPIs' (bright.energy.sharing.SharingMethod).
_METHOD_OF_CARD = {"max_sharing": "maximum"}
# Attributes of a KPI that would tie it to one member: such a KPI is never aggregated.
_MEMBER_REFS = ("refMember", "refEnergyProsumer", "refDevice", "refMeter")


def role_of(settings: Any = None) -> str:
    """The node's role: ``settings.extra["role"]``, else ``BRIGHT_ROLE``, else ``community``.

    Raises
    ------
    ValueError
        An unknown role (the message names it and the allowed ones).
    """
    extra: Mapping[str, str] = getattr(settings, "extra", None) or {}
    role = (extra.get("role") or os.environ.get("BRIGHT_ROLE") or "community").strip().lower()
    if role not in ROLES:
        raise ValueError(f"unknown node role {role!r}; use one of {', '.join(ROLES)}")
    return role


# --------------------------------------------------------------------------------------------------
# KPIs of the communities
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KpiRecord:
    """One community-level KPI value read from a ``KeyPerformanceIndicator`` entity.

    Attributes
    ----------
    community_id
        ``refEnergyCommunity`` of the KPI.
    indicator
        Machine name with its unit (``shared_kwh``, ``self_sufficiency``...).
    value
        ``kpiValue`` in the indicator's unit.
    frequency
        ``calculationFrequency`` (daily, monthly, yearly) or None for a one-off period.
    period_from, period_to
        ``calculationPeriod`` bounds as written (local time with offset).
    method
        ``sharingMethod`` of the figures, if given.
    pricing
        ``pricingMethod`` (settlement KPIs), if given.
    """

    community_id: str
    indicator: str
    value: float
    frequency: str | None
    period_from: str
    period_to: str
    method: str | None = None
    pricing: str | None = None

    @property
    def period(self) -> str:
        """The period's key: the local date its ``calculationPeriod`` starts (``YYYY-MM-DD``)."""
        return self.period_from[:10]


def _ctx_iri(term: str) -> str:
    from bright.twin.vocabulary import bright_context

    return bright_context().expand(term)


def kpi_records(entities: Iterable[Mapping[str, Any]]) -> tuple[list[KpiRecord], list[str]]:
    """Read community-level KPIs from ``KeyPerformanceIndicator`` entities (any form).

    Parameters
    ----------
    entities
        Stored or normalized entities (BRIGHT @context names or IRIs).

    Returns
    -------
    (records, skipped)
        The KPIs, and one reason per entity left out (not a KPI, no community, no numeric value,
        tied to a member, no period).
    """
    records: list[KpiRecord] = []
    skipped: list[str] = []
    iri = {n: _ctx_iri(n) for n in KPI_TERMS}
    for entity in entities:
        try:
            view = entity_view(entity)
        except CardError as exc:
            skipped.append(f"?: {exc.detail}")
            continue
        if not view.has_type("KeyPerformanceIndicator"):
            skipped.append(f"{view.id}: not a KeyPerformanceIndicator")
            continue
        if any(_local_name(a) in _MEMBER_REFS for a in view.attrs):
            skipped.append(f"{view.id}: refers to a member; only community figures are aggregated")
            continue
        community = view.get(iri["refEnergyCommunity"])
        if isinstance(community, list):
            community = community[0] if len(community) == 1 else None
        indicator = view.get(iri["indicator"])
        value = view.get(iri["kpiValue"])
        period = view.get(iri["calculationPeriod"])
        if not isinstance(community, str) or not isinstance(indicator, str):
            skipped.append(f"{view.id}: no refEnergyCommunity or indicator")
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            skipped.append(f"{view.id}: kpiValue is not a finite number")
            continue
        if not isinstance(period, dict) or not period.get("from"):
            skipped.append(f"{view.id}: no calculationPeriod with a start")
            continue
        frequency = view.get(iri["calculationFrequency"])
        method = view.get(iri["sharingMethod"])
        pricing = view.get(iri["pricingMethod"])
        records.append(
            KpiRecord(
                community_id=community,
                indicator=indicator,
                value=float(value),
                frequency=frequency if isinstance(frequency, str) else None,
                period_from=str(period["from"]),
                period_to=str(period.get("to") or ""),
                method=method if isinstance(method, str) else None,
                pricing=pricing if isinstance(pricing, str) else None,
            )
        )
    return records, skipped


def _local_name(iri: str) -> str:
    """The last segment of an IRI (``https://w3id.org/bright/ns#refMember`` -> ``refMember``)."""
    return iri.rsplit("#", 1)[-1].rsplit("/", 1)[-1].rsplit(":", 1)[-1]


def latest_period(records: Iterable[KpiRecord], frequency: str) -> str | None:
    """The latest period start (``YYYY-MM-DD``) of any KPI of that frequency, or None."""
    starts = [r.period for r in records if r.frequency == frequency]
    return max(starts) if starts else None


# --------------------------------------------------------------------------------------------------
# Figures of one community and of the network
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommunityFigures:
    """A community's open figures for the aggregate (from its card and its KPIs of one period).

    Attributes
    ----------
    card
        Its public card.
    node
        Name of the node it was read from (``local`` for the city's own).
    kpis
        Indicator -> value for the period (only the indicators it reports).
    method
        Sharing method of the KPIs used (one method per community, so nothing counts twice).
    period
        ``(from, to)`` of the KPIs used, None when the community has none for the period.
    """

    card: CommunityCard
    node: str
    kpis: Mapping[str, float] = field(default_factory=dict)
    method: str | None = None
    period: tuple[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        c = self.card
        return {
            "id": c.id,
            "name": c.name,
            "node": self.node,
            "municipality": c.municipality,
            "members": {**c.members.model_dump(), "total": c.members.total},
            "technologies": c.technologies.model_dump(),
            "sharing_method": self.method,
            "period": {"from": self.period[0], "to": self.period[1]} if self.period else None,
            "kpis": dict(self.kpis),
        }


def community_figures(
    card: CommunityCard,
    records: Sequence[KpiRecord],
    *,
    node: str,
    frequency: str,
    period: str | None,
) -> CommunityFigures:
    """Select a community's KPIs of one period, one sharing method only.

    The method is the card's (``sharing_method``) when the community has KPIs for it, else the
    method with the most indicators in the period (ties: alphabetical), so what-if runs of other
    methods are never added to the official figures. Settlement KPIs (with a ``pricingMethod``)
    are left out: their pricings are alternatives, not parts.

    Parameters
    ----------
    card
        The community's card.
    records
        KPIs of its node (any community; filtered here).
    node
        Name of the node.
    frequency, period
        The ``calculationFrequency`` and the period start (``YYYY-MM-DD``) to use.
    """
    mine = [
        r
        for r in records
        if r.community_id == card.id
        and r.frequency == frequency
        and period is not None
        and r.period == period
        and r.pricing is None
    ]
    if not mine:
        return CommunityFigures(card, node)
    by_method: dict[str | None, list[KpiRecord]] = {}
    for r in mine:
        by_method.setdefault(r.method, []).append(r)
    wanted = _METHOD_OF_CARD.get(card.sharing_method or "", card.sharing_method)
    if wanted in by_method:
        method = wanted
    else:
        method = sorted(by_method, key=lambda m: (-len(by_method[m]), m or ""))[0]
    chosen = by_method[method]
    kpis = {r.indicator: r.value for r in chosen}
    first = chosen[0]
    return CommunityFigures(card, node, kpis, method, (first.period_from, first.period_to))


def aggregate_figures(communities: Sequence[CommunityFigures]) -> dict[str, Any]:
    """The network's totals over its communities (a pure function).

    Returns
    -------
    dict
        ``communities`` (count), ``reporting`` (communities with KPIs for the period),
        ``members`` (by type and ``total``), ``technologies`` (``pv_kwp`` kWp, ``storage_kwh`` kWh,
        ``ev_chargers``, ``heat_pumps``), ``flexibility`` (the flexible assets: ``storage_kwh``,
        ``ev_charging_points``, ``heat_pumps``, ``communities_with_flexible_assets``) and ``kpis``:
        per indicator ``{"value", "communities", "unit"}``: sums of :data:`ADDITIVE_INDICATORS`
        over the communities reporting them, and :data:`RATIO_INDICATORS` recomputed as the ratio
        of the sums over the communities reporting both parts (None when the denominator is 0).
    """
    members = {"households": 0, "schools": 0, "smes": 0, "public_buildings": 0, "other": 0}
    tech: dict[str, float] = {"pv_kwp": 0.0, "storage_kwh": 0.0, "ev_chargers": 0, "heat_pumps": 0}
    flexible = 0
    for f in communities:
        for k, v in f.card.members.model_dump().items():
            members[k] += int(v)
        t = f.card.technologies
        tech["pv_kwp"] += t.pv_kwp
        tech["storage_kwh"] += t.storage_kwh
        tech["ev_chargers"] += t.ev_chargers
        tech["heat_pumps"] += t.heat_pumps
        if t.storage_kwh > 0 or t.ev_chargers > 0 or t.heat_pumps > 0:
            flexible += 1
    kpis: dict[str, dict[str, Any]] = {}
    for name, (_, unit) in ADDITIVE_INDICATORS.items():
        values = [f.kpis[name] for f in communities if name in f.kpis]
        if values:
            kpis[name] = {"value": math.fsum(values), "communities": len(values), "unit": unit}
    for name, (num, den, _) in RATIO_INDICATORS.items():
        pairs = [(f.kpis[num], f.kpis[den]) for f in communities if num in f.kpis and den in f.kpis]
        if not pairs:
            continue
        total_den = math.fsum(d for _, d in pairs)
        value = math.fsum(n for n, _ in pairs) / total_den if total_den > 0 else None
        kpis[name] = {"value": value, "communities": len(pairs), "unit": "C62"}
    return {
        "communities": len(communities),
        "reporting": sum(1 for f in communities if f.kpis),
        "members": {**members, "total": sum(members.values())},
        "technologies": tech,
        "flexibility": {
            "storage_kwh": tech["storage_kwh"],
            "ev_charging_points": tech["ev_chargers"],
            "heat_pumps": tech["heat_pumps"],
            "communities_with_flexible_assets": flexible,
        },
        "kpis": kpis,
    }


# --------------------------------------------------------------------------------------------------
# The city twin of a node
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeStatus:
    """How one community node answered the city.

    Attributes
    ----------
    node
        Its name (``registrationName`` of its registration, else the registration id).
    registration_id, endpoint
        Where the city found it.
    answered
        True when both its cards and its KPIs came back.
    error
        Why not (timeout, refused connection, HTTP status), None when it answered.
    communities
        Card ids it answered with; for a node that did not answer, those it had last time.
    elapsed_ms
        Time spent on it (both queries), ms.
    skipped
        Entities it sent that could not be used (with the reason).
    """

    node: str
    registration_id: str
    endpoint: str
    answered: bool
    error: str | None
    communities: tuple[str, ...]
    elapsed_ms: float
    skipped: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "registration": self.registration_id,
            "endpoint": self.endpoint,
            "answered": self.answered,
            "error": self.error,
            "communities": list(self.communities),
            "elapsed_ms": round(self.elapsed_ms, 1),
            "skipped": list(self.skipped),
        }

    def warning(self) -> str:
        return (
            f'199 - "context source {self.endpoint} (registration {self.registration_id}) '
            f'did not answer: {self.error}"'
        )


@dataclass(frozen=True)
class CityAggregate:
    """The aggregate of the network's communities for one period, with who answered."""

    city_id: str
    name: str
    computed_at: str
    frequency: str
    period: str | None
    communities: tuple[CommunityFigures, ...]
    nodes: tuple[NodeStatus, ...]
    totals: Mapping[str, Any]

    @property
    def partial(self) -> bool:
        """True when a node did not answer."""
        return any(not n.answered for n in self.nodes)

    @property
    def unanswered(self) -> list[NodeStatus]:
        return [n for n in self.nodes if not n.answered]

    def to_json(self, *, breakdown: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.city_id,
            "name": self.name,
            "computed_at": self.computed_at,
            "frequency": self.frequency,
            "period": self.period,
            "partial": self.partial,
            "totals": dict(self.totals),
            "nodes": [n.to_json() for n in self.nodes],
            "unanswered": [
                {"node": n.node, "endpoint": n.endpoint, "error": n.error, "communities": list(n.communities)}
                for n in self.unanswered
            ],
            "without_kpis": [f.card.id for f in self.communities if not f.kpis],
        }
        if breakdown:
            out["communities"] = [f.to_json() for f in self.communities]
        return out


def _iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


class CityTwin:
    """The aggregating view of a network node over its registered community nodes.

    Parameters
    ----------
    twin
        The city node's twin service (its own communities count too, as node ``local``).
    federation
        The city node's federation (registrations, HTTP client, timeouts), or a callable
        returning it (the network runtime may be re-installed).
    name
        The city's name; its entity is ``urn:ngsi-ld:CityTwin:<name>``.
    """

    def __init__(self, twin: Any, federation: Any, name: str) -> None:
        if not name or any(c in name for c in " /?#"):
            raise ValueError(f"city name {name!r} must be non-empty without spaces, '/', '?' or '#'")
        self.twin = twin
        self._federation = federation
        self.name = name
        self.city_id = f"urn:ngsi-ld:CityTwin:{name}"
        # Card ids each node answered with last time (to say which communities are missing).
        self._known: dict[str, tuple[str, ...]] = {}
        self.last: CityAggregate | None = None

    @property
    def federation(self) -> Federation:
        fed = self._federation() if callable(self._federation) else self._federation
        return fed  # type: ignore[no-any-return]

    # --- reading -------------------------------------------------------------------------------
    def _local_entities(self, tenant: str, type_iri: str) -> list[dict[str, Any]]:
        from bright.twin.query import parse_type_query
        from bright.twin.store import EntityQuery

        store = self.twin.store
        if not store.tenant_exists(tenant):
            return []
        docs, _ = store.query(tenant, EntityQuery(type_query=parse_type_query(type_iri), limit=10**9))
        return list(docs)

    async def _remote(self, tenant: str) -> list[SourceEntities]:
        """One query per registered node: its cards (public attributes) and its KPIs."""
        from bright.twin.vocabulary import bright_context

        ctx = bright_context()
        kpi_attrs = [*KPI_TERMS, *(ctx.compact(BRIGHT_NS + r) for r in _MEMBER_REFS)]
        attrs = sorted({*(ctx.compact(i) for i in PUBLIC_ATTRIBUTES), *kpi_attrs})
        return await query_sources(
            self.federation,
            tenant,
            {
                "EnergyCommunity": TYPE_IRI["EnergyCommunity"],
                "KeyPerformanceIndicator": TYPE_IRI["KeyPerformanceIndicator"],
            },
            context_url=BRIGHT_CONTEXT_URL,
            attrs=attrs,
        )

    async def aggregate(
        self, tenant: str = "", *, frequency: str = "monthly", period: str | None = None
    ) -> CityAggregate:
        """Read every node's open cards and KPIs and compute the network's aggregate.

        Parameters
        ----------
        tenant
            The city's tenant whose registrations name the community nodes.
        frequency
            ``daily``, ``monthly`` or ``yearly`` KPIs.
        period
            Period start ``YYYY-MM-DD``; default the latest one any community reports.

        Raises
        ------
        BadRequestData
            Unknown frequency or a malformed period.
        """
        if frequency not in FREQUENCIES:
            raise BadRequestData(f"frequency must be one of {', '.join(FREQUENCIES)}, got {frequency!r}")
        if period is not None:
            try:
                datetime.strptime(period, "%Y-%m-%d")
            except ValueError:
                raise BadRequestData(
                    f"period must be a date YYYY-MM-DD (its start), got {period!r}"
                ) from None
        started = time.perf_counter()
        remote = await self._remote(tenant)

        # (node name, cards, KPI records) per source; the city's own first.
        sources: list[tuple[str, list[CommunityCard], list[KpiRecord]]] = []
        statuses: list[NodeStatus] = []
        local_cards, local_skipped = _cards(self._local_entities(tenant, TYPE_IRI["EnergyCommunity"]))
        local_records, _ = kpi_records(self._local_entities(tenant, TYPE_IRI["KeyPerformanceIndicator"]))
        sources.append(("local", local_cards, local_records))
        seen = {c.id for c in local_cards}
        ec_iri, kpi_iri = TYPE_IRI["EnergyCommunity"], TYPE_IRI["KeyPerformanceIndicator"]
        for src in remote:
            reg = src.registration
            if src.error is not None:
                statuses.append(
                    NodeStatus(
                        src.node,
                        reg.id,
                        reg.endpoint,
                        False,
                        src.error,
                        self._known.get(reg.endpoint, ()),
                        src.elapsed_s * 1000,
                    )
                )
                continue
            ctx_types = [(e, _types_of(e)) for e in src.entities]
            cards, skipped = _cards([e for e, t in ctx_types if ec_iri in t])
            records, kpi_skipped = kpi_records([e for e, t in ctx_types if kpi_iri in t and ec_iri not in t])
            fresh = [c for c in cards if c.id not in seen]
            seen.update(c.id for c in fresh)
            ids = tuple(c.id for c in fresh)
            self._known[reg.endpoint] = ids
            statuses.append(
                NodeStatus(
                    src.node,
                    reg.id,
                    reg.endpoint,
                    True,
                    None,
                    ids,
                    src.elapsed_s * 1000,
                    tuple(skipped + [s for s in kpi_skipped if "refers to a member" in s]),
                )
            )
            sources.append((src.node, fresh, records))

        all_records = [r for _, _, recs in sources for r in recs]
        chosen = period or latest_period(all_records, frequency)
        figures = tuple(
            community_figures(card, records, node=node, frequency=frequency, period=chosen)
            for node, cards, records in sources
            for card in cards
        )
        if local_skipped:
            log.info("city %s: local entities not usable as cards: %s", self.name, local_skipped[:3])
        result = CityAggregate(
            city_id=self.city_id,
            name=self.name,
            computed_at=_iso_now(),
            frequency=frequency,
            period=chosen,
            communities=figures,
            nodes=tuple(statuses),
            totals=aggregate_figures(figures),
        )
        log.debug("city aggregate in %.0f ms", (time.perf_counter() - started) * 1000)
        self.last = result
        return result

    # --- the NGSI-LD view ------------------------------------------------------------------------
    def entities(self, result: CityAggregate) -> list[dict[str, Any]]:
        """The city twin as NGSI-LD entities (normalized, BRIGHT @context terms or IRIs).

        ``urn:ngsi-ld:CityTwin:<name>``: counts of communities, nodes and members by type,
        technologies and flexible assets, the aggregated KPIs (latest computation), the nodes
        that did not answer and ``hasCommunity`` relationships to the communities' card ids; and
        one ``KeyPerformanceIndicator`` per aggregated indicator of the period
        (``urn:ngsi-ld:KeyPerformanceIndicator:city-<name>:<indicator>:<frequency>:<period>``).
        """
        t = result.totals
        b = BRIGHT_NS

        def prop(value: Any, unit: str | None = None) -> dict[str, Any]:
            p: dict[str, Any] = {"type": "Property", "value": value}
            if unit:
                p["unitCode"] = unit
            return p

        city: dict[str, Any] = {
            "id": self.city_id,
            "type": CITY_TYPE,
            "name": prop(self.name),
            b + "communityCount": prop(t["communities"]),
            b + "reportingCommunityCount": prop(t["reporting"]),
            b + "nodeCount": prop(len(result.nodes)),
            b + "unansweredNodes": prop([n.node for n in result.unanswered]),
            "memberCount": prop(t["members"]["total"]),
            "householdCount": prop(t["members"]["households"]),
            "schoolCount": prop(t["members"]["schools"]),
            "smeCount": prop(t["members"]["smes"]),
            "publicBuildingCount": prop(t["members"]["public_buildings"]),
            "pvPeakPower": prop(t["technologies"]["pv_kwp"]),
            "storageCapacity": prop(t["technologies"]["storage_kwh"], "KWH"),
            "evChargerCount": prop(t["technologies"]["ev_chargers"]),
            "heatPumpCount": prop(t["technologies"]["heat_pumps"]),
            b + "computedAt": {
                "type": "Property",
                "value": {"@type": "DateTime", "@value": result.computed_at},
            },
        }
        if result.period:
            city["kpiPeriod"] = prop(f"{result.frequency} {result.period}")
        names = {
            "offtake_kwh": b + "offtakeKwh",
            "injection_kwh": b + "injectionKwh",
            "shared_kwh": "sharedEnergy",
            "co2_avoided_kg": "co2Avoided",
            "self_sufficiency": "selfSufficiency",
            "self_consumption_rate": "selfConsumptionRate",
        }
        for indicator, attr in names.items():
            k = t["kpis"].get(indicator)
            if k is not None and k["value"] is not None:
                city[attr] = prop(k["value"], k["unit"])
        ids = [f.card.id for f in result.communities]
        if ids:
            city[b + "hasCommunity"] = {"type": "Relationship", "object": ids if len(ids) > 1 else ids[0]}
        out = [city]
        if not result.period:
            return out
        span = [f.period for f in result.communities if f.period]
        start = min(p[0] for p in span) if span else result.period
        end = max(p[1] for p in span) if span else result.period
        labels = {n: d for n, (d, _) in ADDITIVE_INDICATORS.items()}
        labels.update({n: d for n, (_, _, d) in RATIO_INDICATORS.items()})
        for indicator, k in t["kpis"].items():
            if k["value"] is None:
                continue
            kpi: dict[str, Any] = {
                "id": f"urn:ngsi-ld:KeyPerformanceIndicator:city-{self.name}:{indicator}:"
                f"{result.frequency}:{result.period}",
                "type": "KeyPerformanceIndicator",
                "name": prop(f"{labels.get(indicator, indicator)} of {self.name}"),
                "description": prop(
                    f"{indicator} over the {k['communities']} communities of the network that report it"
                ),
                "category": prop(["quantitative"]),
                "kpiValue": prop(k["value"], k["unit"]),
                "calculationPeriod": prop({"from": start, "to": end}),
                "calculationFrequency": prop(result.frequency),
                "calculationMethod": prop("automatic"),
                "indicator": prop(indicator),
                b + "communitiesReporting": prop(k["communities"]),
                b + "refCityTwin": {"type": "Relationship", "object": self.city_id},
            }
            out.append(kpi)
        return out

    def write(self, result: CityAggregate, tenant: str = "") -> list[str]:
        """Write the city twin's entities into the city node's own twin (upsert, replacing them).

        Returns
        -------
        list of str
            The ids written.
        """
        from bright.twin.errors import InternalError
        from bright.twin.vocabulary import bright_context

        res = self.twin.batch_upsert(tenant, self.entities(result), bright_context())
        if res["errors"]:
            first = res["errors"][0]
            raise InternalError(
                f"city twin entity {first['entityId']} was rejected: {first['error'].get('detail')}"
            )
        return list(res["success"])

    async def refresh(self, tenant: str = "", *, frequency: str = "monthly") -> CityAggregate:
        """Compute the aggregate and write it into the twin (what the refresher does periodically)."""
        result = await self.aggregate(tenant, frequency=frequency)
        await asyncio.to_thread(self.write, result, tenant)
        return result


def _types_of(entity: Mapping[str, Any]) -> frozenset[str]:
    """The type IRIs of an entity in any form (compact names expanded with the BRIGHT @context)."""
    try:
        return entity_view(entity).types
    except CardError:
        return frozenset()


def _cards(entities: Iterable[Mapping[str, Any]]) -> tuple[list[CommunityCard], list[str]]:
    cards, skipped = [], []
    for e in entities:
        try:
            cards.append(card_from_entity(e))
        except CardError as exc:
            skipped.append(f"{e.get('id', '?')}: {exc.detail}")
    return cards, skipped


class CityRefresher:
    """Recomputes and writes the city twin every ``period_s`` seconds while the node runs.

    Parameters
    ----------
    city
        The city twin.
    period_s
        Seconds between refreshes (``BRIGHT_CITY_REFRESH_S``, default 60).
    tenant, frequency
        What to aggregate.
    """

    def __init__(
        self, city: CityTwin, period_s: float = 60.0, *, tenant: str = "", frequency: str = "monthly"
    ) -> None:
        if not period_s > 0:
            raise ValueError(f"the city refresh period must be > 0 s, got {period_s}")
        self.city = city
        self.period_s = period_s
        self.tenant = tenant
        self.frequency = frequency
        self.last_error: str | None = None
        self.runs = 0
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.city.refresh(self.tenant, frequency=self.frequency)
                self.last_error = None
            except Exception as exc:  # keep refreshing; the error is logged and kept
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("city twin refresh failed: %s", self.last_error)
            self.runs += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.period_s)

    async def start(self) -> None:
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="bright-city-twin")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=5.0)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            self._task = None
