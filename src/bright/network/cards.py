"""The community card: what an energy community publishes about itself to the network of twins.

A card is the community's ``EnergyCommunity`` entity (FIWARE Smart Data Models) seen through a
whitelist of public attributes: place and area, legal form, founding year, members counted by type,
technologies, sharing method, goals, KPIs, initiatives, languages, an organisation's contact and
``scope`` tags. It is open data by default and edited by the community's manager.

Privacy by construction
    :class:`CommunityCard` is a closed pydantic model (``extra="forbid"``): it has no field for a
    person, a member or a meter, so a payload carrying one (``hasMember``, ``contactPerson``...) is
    rejected, and :func:`card_from_entity` reads only the attributes of :data:`PUBLIC_ATTRIBUTES`
    (the community entity's ``hasMember``, EANs and member names are never read). The contact must
    be an organisation's: an e-mail whose local part is a role word (``info@``, ``contact@``...) and/or
    a web address; an address that looks like a person's (``jan.peeters@``) is refused.

Building a card from a node's twin (:func:`card_from_twin`) is a pure function over entity
documents: members are counted by the category of the building they represent (school, household,
SME, public building, other), devices are summed (kWp of PV, kWh of storage, EV charging points,
heat pumps), KPIs come from the latest ``KeyPerformanceIndicator`` entities of the community.

Vocabulary: the attributes are IRIs under ``https://w3id.org/bright/ns#`` (:data:`CARD_TERMS`);
entities are written with the BRIGHT @context, each name compacted by it (a CURIE such as
``bright:schoolCount`` until the term is added to the context, the short term afterwards).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bright.twin.context import BRIGHT_CONTEXT_URL, BRIGHT_NS, ActiveContext
from bright.twin.errors import BadRequestData

__all__ = [
    "BRIGHT_NS",
    "CARD_TERMS",
    "GOALS",
    "IRI",
    "PUBLIC_ATTRIBUTES",
    "PUBLIC_FIELDS",
    "TYPE_IRI",
    "CardError",
    "CommunityCard",
    "Contact",
    "EntityView",
    "Kpis",
    "MemberCounts",
    "Technologies",
    "card_from_entity",
    "card_from_twin",
    "compact",
    "default_scope",
    "entity_view",
    "haversine_km",
    "member_type",
    "parse_card",
]

SDM = "https://smartdatamodels.org/"
EC = "https://smartdatamodels.org/dataModel.EnergyCommunity/"
NGSI_LOCATION = "https://uri.etsi.org/ngsi-ld/location"
KPI_NS = "https://smartdatamodels.org/dataModel.KeyPerformanceIndicator/"

#: New vocabulary of the card: short term -> IRI (to be added to the BRIGHT @context).
CARD_TERMS: dict[str, str] = {
    "householdCount": BRIGHT_NS + "householdCount",
    "schoolCount": BRIGHT_NS + "schoolCount",
    "smeCount": BRIGHT_NS + "smeCount",
    "publicBuildingCount": BRIGHT_NS + "publicBuildingCount",
    "otherMemberCount": BRIGHT_NS + "otherMemberCount",
    "memberCount": BRIGHT_NS + "memberCount",
    "pvPeakPower": BRIGHT_NS + "pvPeakPowerKwp",
    "storageCapacity": BRIGHT_NS + "storageCapacityKwh",
    "evChargerCount": BRIGHT_NS + "evChargerCount",
    "heatPumpCount": BRIGHT_NS + "heatPumpCount",
    "areaRadius": BRIGHT_NS + "areaRadiusKm",
    "goals": BRIGHT_NS + "goals",
    "selfSufficiency": BRIGHT_NS + "selfSufficiency",
    "selfConsumptionRate": BRIGHT_NS + "selfConsumptionRate",
    "sharedEnergy": BRIGHT_NS + "sharedEnergyKwh",
    "co2Avoided": BRIGHT_NS + "co2AvoidedKg",
    "kpiPeriod": BRIGHT_NS + "kpiPeriod",
    "initiatives": BRIGHT_NS + "initiatives",
    "languages": BRIGHT_NS + "languages",
    "nodeUrl": BRIGHT_NS + "nodeUrl",
    "offeredTools": BRIGHT_NS + "offeredTools",
    "contactPoint": SDM + "contactPoint",
}

# Terms the BRIGHT @context already has.
_EXISTING: dict[str, str] = {
    "name": SDM + "name",
    "description": "http://purl.org/dc/terms/description",
    "address": SDM + "address",
    "category": SDM + "category",
    "communityType": EC + "communityType",
    "legalForm": BRIGHT_NS + "legalForm",
    "foundingYear": BRIGHT_NS + "foundingYear",
    "sharingMethod": BRIGHT_NS + "sharingMethod",
    "location": NGSI_LOCATION,
    "hasMember": EC + "hasMember",
    "memberOf": EC + "memberOf",
    "represents": EC + "represents",
    "controls": EC + "controls",
    "locatedIn": BRIGHT_NS + "locatedIn",
    "peakPower": BRIGHT_NS + "peakPowerKwp",
    "capacity": BRIGHT_NS + "capacityKwh",
    "numberOfSockets": BRIGHT_NS + "numberOfSockets",
    "kpiValue": KPI_NS + "kpiValue",
    "calculationPeriod": KPI_NS + "calculationPeriod",
    "indicator": BRIGHT_NS + "indicator",
    "refEnergyCommunity": BRIGHT_NS + "refEnergyCommunity",
}
IRI: dict[str, str] = {**_EXISTING, **CARD_TERMS}

TYPE_IRI = {
    "EnergyCommunity": EC + "EnergyCommunity",
    "EnergyProsumer": EC + "EnergyProsumer",
    "Building": SDM + "dataModel.Building/Building",
    "PhotovoltaicDevice": SDM + "dataModel.GreenEnergy/PhotovoltaicDevice",
    "EVChargingStation": SDM + "dataModel.Transportation/EVChargingStation",
    "KeyPerformanceIndicator": KPI_NS + "KeyPerformanceIndicator",
    "Battery": BRIGHT_NS + "Battery",
    "HeatPump": BRIGHT_NS + "HeatPump",
}

#: The attributes a card publishes (IRIs). Nothing else of the community entity is ever read.
PUBLIC_ATTRIBUTES: frozenset[str] = frozenset(
    IRI[n]
    for n in (
        "name",
        "description",
        "address",
        "communityType",
        "legalForm",
        "foundingYear",
        "sharingMethod",
        "location",
        *CARD_TERMS,
    )
)

#: Goals a community can declare (a controlled vocabulary, so that cards compare).
GOALS = (
    "lower_bills",
    "local_renewables",
    "energy_poverty",
    "education",
    "grid_support",
    "e_mobility",
    "heat_transition",
    "social_cohesion",
    "climate",
)
LegalForm = Literal["REC", "CEC", "other"]
SharingMethodName = Literal["fixed", "fixed_multi_round", "pro_rata", "hybrid", "max_sharing"]
COMMUNITY_TYPE = {
    "REC": "RenewableEnergyCommunity",
    "CEC": "CitizenEnergyCommunity",
    "other": "EnergyCommunity",
}

#: Local parts of organisation (role) e-mail addresses, in en/fr/nl; one of them must appear.
ROLE_WORDS = frozenset(
    {
        "info",
        "contact",
        "hello",
        "bonjour",
        "hallo",
        "welcome",
        "bienvenue",
        "welkom",
        "energy",
        "energie",
        "energies",
        "cer",
        "rec",
        "cec",
        "community",
        "communaute",
        "gemeenschap",
        "coop",
        "cooperative",
        "cooperatie",
        "board",
        "bestuur",
        "office",
        "bureau",
        "secretariat",
        "secretariaat",
        "admin",
        "team",
        "members",
        "membres",
        "leden",
        "school",
        "ecole",
        "direction",
        "directie",
        "questions",
        "vragen",
        "mail",
        "solar",
        "solaire",
        "zon",
        "network",
        "reseau",
        "netwerk",
    }
)
_EMAIL = re.compile(r"^([A-Za-z0-9._%+-]+)@([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)$")
_SCOPE = re.compile(r"^(/[^/+#\s]+)+$")
_LANG = re.compile(r"^[a-z]{2}$")
_CARD_ID = re.compile(r"^urn:ngsi-ld:EnergyCommunity:[A-Za-z0-9._:\-]+$")


class CardError(BadRequestData, ValueError):
    """A card (or a request about one) is invalid; the message names the card and the field.

    An NGSI-LD ``BadRequestData`` (HTTP 400 ProblemDetails in the API) and a ``ValueError``.
    """


def _folded_words(text: str) -> list[str]:
    import unicodedata

    flat = unicodedata.normalize("NFKD", text.lower())
    flat = "".join(c for c in flat if not unicodedata.combining(c))
    return [w for w in re.split(r"[^a-z0-9]+", flat) if w]


class Contact(BaseModel):
    """An organisation's public contact (never a person's).

    Attributes
    ----------
    organisation
        Name of the organisation answering (the community, its cooperative, the school...).
    email
        A role address (``info@``, ``contact@``, ``energie@``...), optional.
    url
        A web page (``http``/``https``), optional; at least one of e-mail and URL is required.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    organisation: str = Field(min_length=2, max_length=200)
    email: str | None = Field(default=None, max_length=254)
    url: str | None = Field(default=None, max_length=500)

    @field_validator("email")
    @classmethod
    def _role_address(cls, v: str | None) -> str | None:
        if v is None:
            return v
        m = _EMAIL.match(v)
        if not m:
            raise ValueError(f"{v!r} is not an e-mail address")
        if not ROLE_WORDS.intersection(_folded_words(m.group(1))):
            raise ValueError(
                f"{v!r} looks like a person's address; publish an organisation address "
                f"(a role word such as info@, contact@, energie@)"
            )
        return v

    @field_validator("url")
    @classmethod
    def _web(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s/$.?#].[^\s]*$", v):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v

    @model_validator(mode="after")
    def _reachable(self) -> Contact:
        if self.email is None and self.url is None:
            raise ValueError("a contact needs an e-mail address or a URL")
        return self


class MemberCounts(BaseModel):
    """Members counted by type (each member once, by the main use of the building it represents)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    households: int = Field(default=0, ge=0, le=1_000_000)
    schools: int = Field(default=0, ge=0, le=100_000)
    smes: int = Field(default=0, ge=0, le=100_000)
    public_buildings: int = Field(default=0, ge=0, le=100_000)
    other: int = Field(default=0, ge=0, le=1_000_000)

    @property
    def total(self) -> int:
        """All members."""
        return self.households + self.schools + self.smes + self.public_buildings + self.other


class Technologies(BaseModel):
    """Installed technologies, summed over the members.

    Attributes
    ----------
    pv_kwp
        Photovoltaic peak power, kWp.
    storage_kwh
        Stationary storage capacity, kWh.
    ev_chargers
        EV charging points (sockets).
    heat_pumps
        Heat pumps.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    pv_kwp: float = Field(default=0.0, ge=0, le=1_000_000)
    storage_kwh: float = Field(default=0.0, ge=0, le=10_000_000)
    ev_chargers: int = Field(default=0, ge=0, le=100_000)
    heat_pumps: int = Field(default=0, ge=0, le=100_000)


class Kpis(BaseModel):
    """The community's KPIs over one period (as :mod:`bright.energy.balance` defines them).

    Attributes
    ----------
    period
        The period, e.g. ``"2025"`` or ``"2025-01/2025-06"``.
    self_sufficiency
        Shared kWh / gross offtake of the members (0..1).
    self_consumption
        Shared kWh / gross injection of the members (0..1).
    shared_kwh
        Energy shared between members over the period, kWh.
    co2_avoided_kg
        Shared kWh times the grid emission factor, kgCO2e.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    period: str | None = Field(default=None, max_length=40)
    self_sufficiency: float | None = Field(default=None, ge=0, le=1)
    self_consumption: float | None = Field(default=None, ge=0, le=1)
    shared_kwh: float | None = Field(default=None, ge=0)
    co2_avoided_kg: float | None = Field(default=None, ge=0)


class CommunityCard(BaseModel):
    """The public card of an energy community (every field is public; nothing else can be added).

    Attributes
    ----------
    id
        The community's entity id, ``urn:ngsi-ld:EnergyCommunity:<key>``.
    name
        Its name.
    description
        Free text by language code (``en``, ``fr``, ``nl``...; ``@none`` when unknown).
    lon, lat
        WGS84 position of the community (its main site), degrees.
    municipality, postcode
        Where it is (no street address).
    radius_km
        Radius of the area its members are in, km.
    legal_form
        ``REC`` (renewable energy community), ``CEC`` (citizen energy community) or ``other``.
    founding_year
        Year the community was founded.
    members
        Members by type.
    technologies
        PV kWp, storage kWh, EV charging points, heat pumps.
    sharing_method
        How shared energy is allocated (the DSO's key type).
    goals
        Declared goals, from :data:`GOALS`.
    kpis
        KPIs of the latest period.
    initiatives
        Short titles of its initiatives and projects.
    languages
        Languages it works in (ISO 639-1).
    contact
        The organisation to contact.
    scope
        NGSI-LD scope tags (``/education/school``, ``/housing/social``...).
    node_url
        Base URL of the community's BRIGHT node (questions and tools), if it runs one.
    offered_tools
        Names of the tools its node lets network members run.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str = Field(min_length=1, max_length=200)
    description: dict[str, str] = Field(default_factory=dict)
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    municipality: str | None = Field(default=None, max_length=100)
    postcode: str | None = Field(default=None, max_length=16)
    radius_km: float | None = Field(default=None, ge=0, le=200)
    legal_form: LegalForm = "REC"
    founding_year: int | None = Field(default=None, ge=1900, le=2100)
    members: MemberCounts = Field(default_factory=MemberCounts)
    technologies: Technologies = Field(default_factory=Technologies)
    sharing_method: SharingMethodName | None = None
    goals: tuple[str, ...] = ()
    kpis: Kpis = Field(default_factory=Kpis)
    initiatives: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    contact: Contact | None = None
    scope: tuple[str, ...] = ()
    node_url: str | None = Field(default=None, max_length=500)
    offered_tools: tuple[str, ...] = ()

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _CARD_ID.match(v):
            raise ValueError(f"{v!r} is not an EnergyCommunity id (urn:ngsi-ld:EnergyCommunity:<key>)")
        return v

    @field_validator("description")
    @classmethod
    def _languages_of_text(cls, v: dict[str, str]) -> dict[str, str]:
        for lang, text in v.items():
            if lang != "@none" and not _LANG.match(lang):
                raise ValueError(f"language {lang!r} is not an ISO 639-1 code (or @none)")
            if len(text) > 5000:
                raise ValueError(f"the {lang} description is longer than 5000 characters")
        return v

    @field_validator("goals")
    @classmethod
    def _goals(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [g for g in v if g not in GOALS]
        if unknown:
            raise ValueError(f"unknown goal {unknown[0]!r}; use one of {list(GOALS)}")
        return tuple(dict.fromkeys(v))

    @field_validator("initiatives")
    @classmethod
    def _initiatives(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(v) > 50:
            raise ValueError("at most 50 initiatives")
        for t in v:
            if not t.strip() or len(t) > 200:
                raise ValueError(f"initiative title {t[:40]!r} must be 1-200 characters")
        return v

    @field_validator("languages")
    @classmethod
    def _langs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [x for x in v if not _LANG.match(x)]
        if bad:
            raise ValueError(f"language {bad[0]!r} is not an ISO 639-1 code")
        return tuple(dict.fromkeys(v))

    @field_validator("scope")
    @classmethod
    def _scope(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [s for s in v if not _SCOPE.match(s)]
        if bad:
            raise ValueError(f"scope {bad[0]!r} is not a path like /education/school")
        return tuple(dict.fromkeys(v))

    @field_validator("node_url")
    @classmethod
    def _node(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s]+$", v):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v

    @field_validator("offered_tools")
    @classmethod
    def _tools(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [t for t in v if not re.match(r"^[a-z][a-z0-9-]{1,40}$", t)]
        if bad:
            raise ValueError(f"tool name {bad[0]!r} must be lowercase words joined by '-'")
        return tuple(dict.fromkeys(v))

    @model_validator(mode="after")
    def _founded_not_in_future(self) -> CommunityCard:
        if self.founding_year is not None and self.founding_year > datetime.now(UTC).year + 1:
            raise ValueError(f"founding_year {self.founding_year} is in the future")
        return self

    # --- views -------------------------------------------------------------------------------------
    @property
    def key(self) -> str:
        """The community key (the id after ``urn:ngsi-ld:EnergyCommunity:``)."""
        return self.id.split(":", 3)[3]

    def text(self) -> str:
        """The card's free text (description, goals, initiatives, scope), for text similarity."""
        parts = [*self.description.values(), *(g.replace("_", " ") for g in self.goals), *self.initiatives]
        parts += [s.strip("/").replace("/", " ").replace("_", " ") for s in self.scope]
        return "\n".join(parts)

    def to_json(self) -> dict[str, Any]:
        """The card as plain JSON (the REST API's representation)."""
        return self.model_dump(mode="json")

    def to_entity(self, *, context: bool = True) -> dict[str, Any]:
        """The card as a normalized NGSI-LD ``EnergyCommunity`` entity (BRIGHT @context).

        Only :data:`PUBLIC_ATTRIBUTES` are written; empty values are left out.
        """
        e: dict[str, Any] = {"id": self.id, "type": "EnergyCommunity"}
        put = _Writer(e)
        put.prop("name", self.name)
        if self.description:
            put.raw("description", {"type": "LanguageProperty", "languageMap": dict(self.description)})
        put.raw(
            "location",
            {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [self.lon, self.lat]}},
        )
        address = {
            k: v
            for k, v in (("addressLocality", self.municipality), ("postalCode", self.postcode))
            if v is not None
        }
        if address:
            put.prop("address", {**address, "addressCountry": "BE"})
        put.prop("areaRadius", self.radius_km, "KMT")
        put.prop("communityType", COMMUNITY_TYPE[self.legal_form])
        put.prop("legalForm", self.legal_form)
        put.prop("foundingYear", self.founding_year)
        m = self.members
        put.prop("householdCount", m.households)
        put.prop("schoolCount", m.schools)
        put.prop("smeCount", m.smes)
        put.prop("publicBuildingCount", m.public_buildings)
        put.prop("otherMemberCount", m.other)
        put.prop("memberCount", m.total)
        t = self.technologies
        put.prop("pvPeakPower", t.pv_kwp, "KWT")
        put.prop("storageCapacity", t.storage_kwh, "KWH")
        put.prop("evChargerCount", t.ev_chargers)
        put.prop("heatPumpCount", t.heat_pumps)
        put.prop("sharingMethod", self.sharing_method)
        put.prop("goals", list(self.goals) or None)
        k = self.kpis
        put.prop("kpiPeriod", k.period)
        put.prop("selfSufficiency", k.self_sufficiency)
        put.prop("selfConsumptionRate", k.self_consumption)
        put.prop("sharedEnergy", k.shared_kwh, "KWH")
        put.prop("co2Avoided", k.co2_avoided_kg, "KGM")
        put.prop("initiatives", list(self.initiatives) or None)
        put.prop("languages", list(self.languages) or None)
        if self.contact is not None:
            put.prop(
                "contactPoint",
                {"contactType": "organisation", **self.contact.model_dump(exclude_none=True)},
            )
        put.prop("nodeUrl", self.node_url)
        put.prop("offeredTools", list(self.offered_tools) or None)
        if self.scope:
            e["scope"] = list(self.scope)
        if context:
            e["@context"] = BRIGHT_CONTEXT_URL
        return e


#: The fields of the card's JSON representation: everything a card can say.
PUBLIC_FIELDS: tuple[str, ...] = tuple(CommunityCard.model_fields)


def _bright_context() -> ActiveContext:
    from bright.twin.vocabulary import bright_context

    return bright_context()


@lru_cache(maxsize=256)
def compact(iri: str) -> str:
    """The attribute name written for ``iri``: the BRIGHT context's term, else a ``bright:`` CURIE."""
    return _bright_context().compact(iri)


class _Writer:
    def __init__(self, entity: dict[str, Any]) -> None:
        self.e = entity

    def raw(self, name: str, attr: dict[str, Any]) -> None:
        self.e[compact(IRI[name])] = attr

    def prop(self, name: str, value: Any, unit: str | None = None) -> None:
        if value is None:
            return
        attr: dict[str, Any] = {"type": "Property", "value": value}
        if unit:
            attr["unitCode"] = unit
        self.e[compact(IRI[name])] = attr


# --- reading entities in any form ----------------------------------------------------------------


@dataclass(frozen=True)
class EntityView:
    """An entity reduced to its id, type IRIs, scope and plain attribute values keyed by IRI.

    Values: a Property's ``value``, a Relationship's ``object`` (a list for several), a
    LanguageProperty's ``languageMap``, a GeoProperty's GeoJSON; only the default instance
    (no datasetId) of each attribute, else its first instance.
    """

    id: str
    types: frozenset[str]
    attrs: Mapping[str, Any]
    scope: tuple[str, ...] = ()

    def get(self, name: str, default: Any = None) -> Any:
        """The value of attribute ``name`` (a key of :data:`IRI`, or an IRI)."""
        return self.attrs.get(IRI.get(name, name), default)

    def has_type(self, name: str) -> bool:
        return TYPE_IRI.get(name, name) in self.types


def _instance_value(inst: Any) -> Any:
    if not isinstance(inst, dict) or "type" not in inst:
        if isinstance(inst, dict) and "languageMap" in inst and len(inst) == 1:
            return inst["languageMap"]
        return inst
    t = inst["type"]
    if t in ("Relationship", "ngsi-ld:Relationship"):
        return inst.get("object")
    if t == "LanguageProperty":
        return inst.get("languageMap")
    if t in ("VocabProperty", "VocabularyProperty"):
        return inst.get("vocab")
    if t == "ListProperty":
        return inst.get("valueList")
    if t == "ListRelationship":
        return inst.get("objectList")
    if t == "JsonProperty":
        return inst.get("json")
    if t in ("Property", "GeoProperty") or "value" in inst:
        return inst.get("value")
    return inst  # a keyValues object value that happens to have a "type" member (GeoJSON...)


def _first(instances: Any) -> Any:
    if isinstance(instances, list):
        if not instances:
            return None
        if all(isinstance(i, dict) and "type" in i for i in instances):
            default = next((i for i in instances if "datasetId" not in i), instances[0])
            return _instance_value(default)
        return instances  # a keyValues list value
    return _instance_value(instances)


_ENTITY_MEMBERS = {"id", "type", "@context", "scope", "createdAt", "modifiedAt", "deletedAt"}


def entity_view(entity: Mapping[str, Any], ctx: ActiveContext | None = None) -> EntityView:
    """Read an entity document in any of the node's forms into an :class:`EntityView`.

    Parameters
    ----------
    entity
        A stored document (``attrs`` keyed by IRI, as :class:`~bright.twin.store.TwinStore` returns),
        or a normalized / keyValues entity whose names are terms of ``ctx`` or IRIs.
    ctx
        The @context of compact names (default: the BRIGHT context).

    Raises
    ------
    CardError
        The document has no id.
    """
    if "id" not in entity:
        raise CardError("an entity document without id")
    ctx = ctx or _bright_context()
    raw_types = entity.get("type", [])
    types = raw_types if isinstance(raw_types, list) else [raw_types]
    scope_raw = entity.get("scope") or ()
    scope = tuple(scope_raw) if isinstance(scope_raw, list | tuple) else (str(scope_raw),)
    attrs: dict[str, Any] = {}
    if isinstance(entity.get("attrs"), dict):  # stored form
        for iri, instances in entity["attrs"].items():
            attrs[iri] = _first(instances)
    else:
        for key, value in entity.items():
            if key in _ENTITY_MEMBERS:
                continue
            attrs[ctx.expand(key)] = _first(value)
    return EntityView(
        id=str(entity["id"]),
        types=frozenset(ctx.expand(t) for t in types),
        attrs=attrs,
        scope=scope,
    )


# --- building cards ------------------------------------------------------------------------------


def _errors(exc: ValidationError, what: str) -> CardError:
    err = exc.errors()[0]
    where = ".".join(str(x) for x in err["loc"]) or "card"
    return CardError(f"{what}: field {where}: {err['msg']}")


def parse_card(data: Mapping[str, Any], *, card_id: str | None = None) -> CommunityCard:
    """Validate a card given as JSON (the REST representation).

    Parameters
    ----------
    data
        The card's fields (:data:`PUBLIC_FIELDS`); any other field is refused.
    card_id
        The id the card must have (the URL's), if any; filled in when the body has none.

    Raises
    ------
    CardError
        A field is unknown, missing or invalid; the message names the card and the field.
    """
    if not isinstance(data, Mapping):
        raise CardError("a card must be a JSON object")
    body = dict(data)
    if card_id is not None and body.setdefault("id", card_id) != card_id:
        raise CardError(f"the body's id {body['id']!r} differs from the URL's {card_id!r}")
    try:
        return CommunityCard.model_validate(body)
    except ValidationError as exc:
        raise _errors(exc, f"card {body.get('id', '?')}") from None


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | float) and math.isfinite(v):
        return float(v)
    return None


def _int(v: Any) -> int:
    n = _num(v)
    return int(n) if n is not None else 0


def _strings(v: Any) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, str):
        return (v,)
    if isinstance(v, list | tuple):
        return tuple(str(x) for x in v if isinstance(x, str))
    return ()


def _text_map(v: Any) -> dict[str, str]:
    if isinstance(v, dict):
        return {str(k): str(t) for k, t in v.items() if isinstance(t, str)}
    if isinstance(v, str) and v.strip():
        return {"@none": v}
    return {}


def _point(v: Any) -> tuple[float, float] | None:
    if isinstance(v, dict) and v.get("type") == "Point":
        c = v.get("coordinates")
        if isinstance(c, list) and len(c) >= 2 and all(_num(x) is not None for x in c[:2]):
            return float(c[0]), float(c[1])
    return None


def card_from_entity(entity: Mapping[str, Any]) -> CommunityCard:
    """The card of an ``EnergyCommunity`` entity: its public attributes, nothing else.

    Parameters
    ----------
    entity
        The entity in any form :func:`entity_view` reads.

    Raises
    ------
    CardError
        The entity is not an EnergyCommunity, has no location, or a public attribute is invalid.
    """
    view = entity_view(entity)
    return _card_from_view(view)


def _card_from_view(view: EntityView, **override: Any) -> CommunityCard:
    if not view.has_type("EnergyCommunity"):
        raise CardError(f"entity {view.id} is not an EnergyCommunity")
    point = _point(view.get("location"))
    address = view.get("address") if isinstance(view.get("address"), dict) else {}
    contact = view.get("contactPoint")
    if isinstance(contact, dict):
        contact = {k: contact[k] for k in ("organisation", "email", "url") if k in contact}
        if "organisation" not in contact and isinstance(view.get("name"), str):
            contact["organisation"] = view.get("name")
    else:
        contact = None
    fields: dict[str, Any] = {
        "id": view.id,
        "name": view.get("name") if isinstance(view.get("name"), str) else view.id.rsplit(":", 1)[-1],
        "description": _text_map(view.get("description")),
        "lon": point[0] if point else None,
        "lat": point[1] if point else None,
        "municipality": address.get("addressLocality"),
        "postcode": None if address.get("postalCode") is None else str(address.get("postalCode")),
        "radius_km": _num(view.get("areaRadius")),
        "legal_form": view.get("legalForm") if view.get("legalForm") in ("REC", "CEC") else "other",
        "founding_year": _num(view.get("foundingYear")),
        "members": {
            "households": _int(view.get("householdCount")),
            "schools": _int(view.get("schoolCount")),
            "smes": _int(view.get("smeCount")),
            "public_buildings": _int(view.get("publicBuildingCount")),
            "other": _int(view.get("otherMemberCount")),
        },
        "technologies": {
            "pv_kwp": _num(view.get("pvPeakPower")) or 0.0,
            "storage_kwh": _num(view.get("storageCapacity")) or 0.0,
            "ev_chargers": _int(view.get("evChargerCount")),
            "heat_pumps": _int(view.get("heatPumpCount")),
        },
        "sharing_method": view.get("sharingMethod"),
        "goals": _strings(view.get("goals")),
        "kpis": {
            "period": view.get("kpiPeriod") if isinstance(view.get("kpiPeriod"), str) else None,
            "self_sufficiency": _num(view.get("selfSufficiency")),
            "self_consumption": _num(view.get("selfConsumptionRate")),
            "shared_kwh": _num(view.get("sharedEnergy")),
            "co2_avoided_kg": _num(view.get("co2Avoided")),
        },
        "initiatives": _strings(view.get("initiatives")),
        "languages": _strings(view.get("languages")),
        "contact": contact,
        "scope": view.scope,
        "node_url": view.get("nodeUrl"),
        "offered_tools": _strings(view.get("offeredTools")),
    }
    if fields["founding_year"] is not None:
        fields["founding_year"] = int(fields["founding_year"])
    fields.update(override)
    if fields["lon"] is None or fields["lat"] is None:
        raise CardError(f"community {view.id} has no location (a GeoProperty Point) for its card")
    try:
        return CommunityCard.model_validate(fields)
    except ValidationError as exc:
        raise _errors(exc, f"card {view.id}") from None


#: Building category (``Building.category``) -> member type on the card, most specific first.
CATEGORY_TYPE: dict[str, str] = {
    "school": "schools",
    "public": "public_buildings",
    "hospital": "public_buildings",
    "sports": "public_buildings",
    "office": "smes",
    "commercial": "smes",
    "industrial": "smes",
    "house": "households",
    "apartments": "households",
    "residential": "households",
    "social_housing": "households",
}
_PRIORITY = ("schools", "public_buildings", "smes", "households")


def member_type(categories: Iterable[str]) -> str:
    """The card's member type for a building's categories (``school`` wins over ``office``...).

    Returns one of ``schools``, ``public_buildings``, ``smes``, ``households``, ``other``.
    """
    found = {CATEGORY_TYPE[c] for c in categories if c in CATEGORY_TYPE}
    return next((t for t in _PRIORITY if t in found), "other")


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two WGS84 points, km (sphere of radius 6371.0088 km)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))


def default_scope(card: CommunityCard) -> tuple[str, ...]:
    """Scope tags implied by the card's members and technologies (added to the manager's own)."""
    tags = []
    m, t = card.members, card.technologies
    if m.schools:
        tags.append("/education/school")
    if m.smes:
        tags.append("/business/sme")
    if m.public_buildings:
        tags.append("/public/building")
    if m.households:
        tags.append("/housing/household")
    if t.storage_kwh > 0:
        tags.append("/technology/storage")
    if t.ev_chargers > 0:
        tags.append("/technology/ev_charging")
    if t.heat_pumps > 0:
        tags.append("/technology/heat_pump")
    return tuple(tags)


_KPI_FIELDS = {
    "self_sufficiency": "self_sufficiency",
    "self_consumption_rate": "self_consumption",
    "self_consumption": "self_consumption",
    "shared_kwh": "shared_kwh",
    "co2_avoided_kg": "co2_avoided_kg",
}


def _period_label(p: Any) -> tuple[str, str | None]:
    """(sort key, label) of a KPI's calculationPeriod (``{"from","to"}`` or a string)."""
    if isinstance(p, dict):
        start = str(p.get("from") or p.get("startDate") or "")
        end = str(p.get("to") or p.get("endDate") or "")
        label = f"{start[:10]}/{end[:10]}" if start or end else None
        return end or start, label
    if isinstance(p, str):
        return p, p[:40]
    return "", None


def card_from_twin(
    entities: Sequence[Mapping[str, Any]],
    community_id: str | None = None,
    *,
    base: CommunityCard | None = None,
) -> CommunityCard:
    """Build a community's card from its node's entity documents (a pure function).

    Parameters
    ----------
    entities
        Documents of the node (stored or normalized BRIGHT form): the ``EnergyCommunity``, its
        ``EnergyProsumer`` members, their ``Building`` (``category``), devices
        (``PhotovoltaicDevice.peakPower`` kWp, ``Battery.capacity`` kWh, ``EVChargingStation``
        sockets, ``HeatPump``) and ``KeyPerformanceIndicator`` entities (``indicator``,
        ``kpiValue``, ``refEnergyCommunity``, ``calculationPeriod``). Other entities are ignored.
    community_id
        Which community (needed when the documents hold several).
    base
        The card as the manager edited it: its descriptive fields (description, goals,
        initiatives, languages, contact, node URL, tools, scope) are kept; the counts,
        technologies, place and KPIs are derived from the twin.

    Returns
    -------
    CommunityCard
        Members by type (a member is typed by the building it ``represents``; without one it is
        ``other``); devices a member ``controls`` or that are ``locatedIn`` a member's building,
        summed; location = the community's, else the centroid of the member buildings;
        radius = the farthest member building, km; municipality and postcode from the community's
        address, else the most common among the member buildings; KPIs from the latest period of
        the community's KPI entities (when there are any, else the base card's).

    Raises
    ------
    CardError
        No (or no unique) EnergyCommunity, or no location anywhere.
    """
    views = [entity_view(e) for e in entities]
    communities = [v for v in views if v.has_type("EnergyCommunity")]
    if community_id is not None:
        communities = [v for v in communities if v.id == community_id]
    if not communities:
        raise CardError(f"no EnergyCommunity {community_id or ''} among the entities".replace("  ", " "))
    if len(communities) > 1:
        raise CardError(
            f"{len(communities)} EnergyCommunity entities ({communities[0].id}, {communities[1].id}...): "
            "say which one with community_id"
        )
    com = communities[0]
    by_id = {v.id: v for v in views}
    listed = set(_strings(com.get("hasMember")))
    members = [
        v
        for v in views
        if v.has_type("EnergyProsumer") and (v.id in listed or com.id in _strings(v.get("memberOf")))
    ]
    counts: Counter[str] = Counter()
    buildings: list[EntityView] = []
    controlled: set[str] = set()
    for m in members:
        b = by_id.get(str(m.get("represents")))
        if b is not None and b.has_type("Building"):
            buildings.append(b)
            counts[member_type(_strings(b.get("category")))] += 1
        else:
            counts["other"] += 1
        controlled.update(_strings(m.get("controls")))
    building_ids = {b.id for b in buildings}
    pv = storage = 0.0
    chargers = heat_pumps = 0
    for v in views:
        if v.id not in controlled and str(v.get("locatedIn")) not in building_ids:
            continue
        if v.has_type("PhotovoltaicDevice"):
            pv += _num(v.get("peakPower")) or 0.0
        elif v.has_type("Battery"):
            storage += _num(v.get("capacity")) or 0.0
        elif v.has_type("EVChargingStation"):
            chargers += _int(v.get("numberOfSockets")) or 1
        elif v.has_type("HeatPump"):
            heat_pumps += 1
    points = [p for b in buildings if (p := _point(b.get("location"))) is not None]
    here = _point(com.get("location"))
    if here is None and points:
        here = (sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points))
    if here is None:
        raise CardError(f"community {com.id}: no location, and no member building has one")
    radius = max((haversine_km(here[1], here[0], p[1], p[0]) for p in points), default=0.0)
    address = com.get("address") if isinstance(com.get("address"), dict) else None
    if address is None:
        places = Counter(
            (a.get("addressLocality"), a.get("postalCode"))
            for b in buildings
            if isinstance(a := b.get("address"), dict) and a.get("addressLocality")
        )
        address = (
            {"addressLocality": places.most_common(1)[0][0][0], "postalCode": places.most_common(1)[0][0][1]}
            if places
            else {}
        )
    kpis = _latest_kpis(views, com.id)
    derived: dict[str, Any] = {
        "lon": here[0],
        "lat": here[1],
        "radius_km": round(radius, 2),
        "municipality": address.get("addressLocality"),
        "postcode": None if address.get("postalCode") is None else str(address.get("postalCode")),
        "members": {
            "households": counts["households"],
            "schools": counts["schools"],
            "smes": counts["smes"],
            "public_buildings": counts["public_buildings"],
            "other": counts["other"],
        },
        "technologies": {
            "pv_kwp": round(pv, 3),
            "storage_kwh": round(storage, 3),
            "ev_chargers": chargers,
            "heat_pumps": heat_pumps,
        },
    }
    if kpis is not None:
        derived["kpis"] = kpis
    if base is not None:
        if base.id != com.id:
            raise CardError(f"the base card {base.id} is not the card of {com.id}")
        for name in ("description", "goals", "initiatives", "languages", "node_url", "offered_tools"):
            derived[name] = getattr(base, name)
        derived["contact"] = base.contact.model_dump() if base.contact else None
        derived["name"] = base.name
        derived["legal_form"] = base.legal_form
        derived["founding_year"] = base.founding_year
        derived["sharing_method"] = base.sharing_method or com.get("sharingMethod")
        if kpis is None:
            derived["kpis"] = base.kpis.model_dump()
        manager_scope = base.scope
    else:
        manager_scope = com.scope
    card = _card_from_view(com, **derived)
    scope = tuple(dict.fromkeys((*manager_scope, *default_scope(card))))
    return card.model_copy(update={"scope": scope})


def _latest_kpis(views: Sequence[EntityView], community_id: str) -> dict[str, Any] | None:
    """KPI values of the latest period among the community's KeyPerformanceIndicator entities."""
    found: dict[str, tuple[str, str | None, float]] = {}
    for v in views:
        if not v.has_type("KeyPerformanceIndicator"):
            continue
        if community_id not in _strings(v.get("refEnergyCommunity")):
            continue
        field = _KPI_FIELDS.get(str(v.get("indicator")))
        value = _num(v.get("kpiValue"))
        if field is None or value is None:
            continue
        key, label = _period_label(v.get("calculationPeriod"))
        if field not in found or key > found[field][0]:
            found[field] = (key, label, value)
    if not found:
        return None
    latest = max(k for k, _, _ in found.values())
    out: dict[str, Any] = {f: val for f, (k, _, val) in found.items() if k == latest}
    out["period"] = next(label for k, label, _ in found.values() if k == latest)
    for f in ("self_sufficiency", "self_consumption"):
        if f in out:
            out[f] = min(1.0, max(0.0, out[f]))
    return out
