"""BRIGHT's energy vocabulary is validated on write; other types pass untouched."""

from __future__ import annotations

import pytest

from bright.twin.context import BRIGHT_CONTEXT_URL, ContextResolver
from bright.twin.entities import now_iso, parse_entity
from bright.twin.errors import BadRequestData
from bright.twin.vocabulary import validate

CTX = ContextResolver().resolve(BRIGHT_CONTEXT_URL)


def doc(body: dict) -> dict:
    return parse_entity(body, CTX, now_iso())


def test_valid_energy_entities_pass() -> None:
    validate(
        doc(
            {
                "id": "urn:ngsi-ld:Meter:1",
                "type": "Meter",
                "accessPointId": {"type": "Property", "value": "541448000000000001"},
                "locality": {"type": "Property", "value": "lv_cabin"},
            }
        )
    )
    validate(
        doc(
            {
                "id": "urn:ngsi-ld:PhotovoltaicDevice:1",
                "type": "PhotovoltaicDevice",
                "peakPower": {"type": "Property", "value": 6.0},
                "tilt": {"type": "Property", "value": 35},
            }
        )
    )
    validate(
        doc(
            {
                "id": "urn:ngsi-ld:Building:1",
                "type": "Building",
                "category": {"type": "Property", "value": ["school"]},
            }
        )
    )


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            {
                "id": "urn:ngsi-ld:Meter:1",
                "type": "Meter",
                "accessPointId": {"type": "Property", "value": "12345"},
            },
            "accessPointId",
        ),
        (
            {
                "id": "urn:ngsi-ld:PhotovoltaicDevice:1",
                "type": "PhotovoltaicDevice",
                "peakPower": {"type": "Property", "value": -1},
            },
            "peakPower",
        ),
        ({"id": "urn:ngsi-ld:PhotovoltaicDevice:1", "type": "PhotovoltaicDevice"}, "peakPower"),
        (
            {
                "id": "urn:ngsi-ld:Battery:1",
                "type": "Battery",
                "capacity": {"type": "Property", "value": 10},
                "roundTripEfficiency": {"type": "Property", "value": 1.4},
            },
            "roundTripEfficiency",
        ),
        (
            {
                "id": "urn:ngsi-ld:Building:1",
                "type": "Building",
                "category": {"type": "Property", "value": ["castle"]},
            },
            "castle",
        ),
        (
            {
                "id": "urn:ngsi-ld:EnergyProsumer:1",
                "type": "EnergyProsumer",
                "roleType": {"type": "Property", "value": "boss"},
            },
            "roleType",
        ),
    ],
)
def test_violations_name_entity_and_attribute(body: dict, fragment: str) -> None:
    with pytest.raises(BadRequestData) as err:
        validate(doc(body))
    assert body["id"] in err.value.detail and fragment in err.value.detail


def test_foreign_types_are_not_validated() -> None:
    other = ContextResolver().core
    validate(
        parse_entity(
            {"id": "urn:x:1", "type": "Meter", "accessPointId": {"type": "Property", "value": "1"}},
            other,
            now_iso(),
        )
    )
