"""BRIGHT's energy vocabulary: the Smart Data Models we use, as pydantic models checked on write.

An entity whose type is one of ours (after @context expansion) is rendered in keyValues with the
BRIGHT @context and validated by the model of its type; a violation is rejected as BadRequestData
naming the entity, the attribute and the rule. Entities of other types pass untouched: the node is
a general NGSI-LD broker too.

Units are in the attribute names of the @context (``peakPower`` is ``bright:peakPowerKwp``) and in
the model fields' descriptions.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bright.twin.context import BRIGHT_CONTEXT_URL, ActiveContext, ContextResolver
from bright.twin.entities import RenderOptions, render_entity
from bright.twin.errors import BadRequestData

BUILDING_CATEGORIES = {
    "school",
    "house",
    "apartments",
    "residential",
    "office",
    "commercial",
    "industrial",
    "public",
    "hospital",
    "sports",
    "social_housing",
    "other",
}
LOCALITIES = ("building", "lv_cabin", "substation", "beyond")


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    id: str
    type: str | list[str]


class EnergyCommunity(_Model):
    """An energy community (SDM EnergyCommunity): a REC or CEC sharing energy among members."""

    name: str | None = None
    communityType: str | None = None
    legalForm: Literal["REC", "CEC", "other"] | None = None
    sharingMethod: (
        Literal["fixed", "fixed_multi_round", "pro_rata", "hybrid", "maximum", "max_sharing"] | None
    ) = None
    foundingYear: int | None = Field(default=None, ge=1900, le=2100)


class EnergyProsumer(_Model):
    """A member's role in the community (SDM EnergyProsumer)."""

    roleType: Literal["consumer", "producer", "prosumer"] | None = None
    timezone: str | None = None
    contractedPower: float | None = Field(default=None, ge=0, description="kW")
    annualConsumption: float | None = Field(default=None, ge=0, description="kWh per year")


class Building(_Model):
    """A building (SDM Building); ``category`` lists what it is used for (``school``...)."""

    category: list[str] | str | None = None

    @field_validator("category")
    @classmethod
    def _known_categories(cls, v: Any) -> Any:
        cats = v if isinstance(v, list) else [v] if v is not None else []
        unknown = [c for c in cats if c not in BUILDING_CATEGORIES]
        if unknown:
            raise ValueError(f"unknown category {unknown[0]!r}; use one of {sorted(BUILDING_CATEGORIES)}")
        return v


class PhotovoltaicDevice(_Model):
    """A PV installation: peak power in kWp, tilt and azimuth in degrees (azimuth 180 = south)."""

    peakPower: float = Field(gt=0, le=100_000, description="kWp")
    tilt: float | None = Field(default=None, ge=0, le=90, description="degrees from horizontal")
    azimuth: float | None = Field(default=None, ge=0, lt=360, description="degrees clockwise from north")


class Battery(_Model):
    """A stationary battery: usable capacity in kWh, power limits in kW, round-trip efficiency."""

    capacity: float = Field(gt=0, le=100_000, description="kWh")
    maxChargePower: float | None = Field(default=None, gt=0, description="kW")
    maxDischargePower: float | None = Field(default=None, gt=0, description="kW")
    roundTripEfficiency: float | None = Field(default=None, gt=0, le=1)
    stateOfCharge: float | None = Field(default=None, ge=0, le=1)


class EVChargingStation(_Model):
    """An EV charger: charging power in kW per socket."""

    chargingPower: float | None = Field(default=None, gt=0, le=1000, description="kW")
    numberOfSockets: int | None = Field(default=None, ge=1)


class HeatPump(_Model):
    """A heat pump: electrical power in kW."""

    power: float | None = Field(default=None, gt=0, description="kW electrical")


class Meter(_Model):
    """An access-point meter: EAN, locality in the grid (the Brussels tariff types A-D)."""

    accessPointId: str | None = None
    meterType: Literal["smart", "digital", "analogue", "submeter"] | None = None
    locality: Literal["building", "lv_cabin", "substation", "beyond"] | None = None

    @field_validator("accessPointId")
    @classmethod
    def _ean(cls, v: str | None) -> str | None:
        if v is not None and not (len(v) == 18 and v.isdigit()):
            raise ValueError("an EAN access-point id has 18 digits")
        return v


class KeyPerformanceIndicator(_Model):
    """A KPI (SDM KeyPerformanceIndicator) computed by the node."""

    kpiValue: float | None = None
    calculationPeriod: Any = None


MODELS: dict[str, type[_Model]] = {
    "EnergyCommunity": EnergyCommunity,
    "EnergyProsumer": EnergyProsumer,
    "Building": Building,
    "PhotovoltaicDevice": PhotovoltaicDevice,
    "Battery": Battery,
    "EVChargingStation": EVChargingStation,
    "HeatPump": HeatPump,
    "Meter": Meter,
    "KeyPerformanceIndicator": KeyPerformanceIndicator,
}


@lru_cache(maxsize=1)
def bright_context() -> ActiveContext:
    """The active BRIGHT @context (bundled, offline)."""
    return ContextResolver().resolve(BRIGHT_CONTEXT_URL)


@lru_cache(maxsize=1)
def _models_by_iri() -> dict[str, type[_Model]]:
    ctx = bright_context()
    return {ctx.expand(name): model for name, model in MODELS.items()}


def validate(doc: dict[str, Any]) -> None:
    """Validate a stored entity document against the model of each of its BRIGHT types.

    Raises
    ------
    BadRequestData
        The entity violates its model; the message names entity, attribute and rule.
    """
    models = [m for t in doc.get("type", []) if (m := _models_by_iri().get(t)) is not None]
    if not models:
        return
    kv = render_entity(doc, bright_context(), RenderOptions(fmt="keyValues"))
    for model in models:
        try:
            model.model_validate(kv)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"]) or "entity"
            raise BadRequestData(
                f"entity {doc['id']} ({model.__name__}): attribute {where}: {err['msg']}"
            ) from None
