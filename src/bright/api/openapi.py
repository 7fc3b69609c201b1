"""OpenAPI descriptions of the NGSI-LD routes (the handlers parse requests themselves, so the
parameters and bodies are declared here for the generated document, clients and schemathesis)."""

from __future__ import annotations

from typing import Any

ENTITY_ID = {"type": "string", "format": "uri", "example": "urn:ngsi-ld:Meter:m1"}
ATTRIBUTE = {
    "oneOf": [
        {
            "type": "object",
            "properties": {
                "type": {
                    "type": "string",
                    "enum": [
                        "Property",
                        "Relationship",
                        "GeoProperty",
                        "LanguageProperty",
                        "VocabProperty",
                        "JsonProperty",
                        "ListProperty",
                        "ListRelationship",
                    ],
                },
                "value": {},
                "object": {"type": "string"},
                "observedAt": {"type": "string", "format": "date-time"},
                "unitCode": {"type": "string"},
                "datasetId": {"type": "string", "format": "uri"},
            },
        },
        {"type": "array", "items": {"type": "object"}},
        {"type": "number"},
        {"type": "string"},
    ]
}
ENTITY: dict[str, Any] = {
    "type": "object",
    "required": ["id", "type"],
    "properties": {
        "id": ENTITY_ID,
        "type": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "scope": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "@context": {},
    },
    "additionalProperties": ATTRIBUTE,
}
FRAGMENT: dict[str, Any] = {"type": "object", "additionalProperties": ATTRIBUTE}
PROBLEM = {
    "description": "ProblemDetails (RFC 9457) with an NGSI-LD error type",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["type", "title"],
                "properties": {
                    "type": {"type": "string", "format": "uri"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                },
            }
        }
    },
}
ERRORS = {str(c): PROBLEM for c in (400, 404, 406, 409, 413, 415, 422, 503)}


def _q(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": schema}, "application/ld+json": {"schema": schema}},
    }


QUERY_PARAMS = [
    _q("type", {"type": "string"}, "Entity type expression (A,B | (A;B)|C)"),
    _q("id", {"type": "string"}, "Comma-separated entity ids"),
    _q("idPattern", {"type": "string"}, "Regular expression over entity ids"),
    _q("q", {"type": "string"}, 'NGSI-LD query language, e.g. offtake>0.5;locality=="lv_cabin"'),
    _q("scopeQ", {"type": "string"}, "Scope query, e.g. /Brussels/#"),
    _q("attrs", {"type": "string"}, "Attributes to return (and entities having one of them)"),
    _q("pick", {"type": "string"}, "Projection of members to keep"),
    _q("omit", {"type": "string"}, "Projection of members to drop"),
    _q(
        "georel",
        {"type": "string"},
        "near;maxDistance==m, within, contains, intersects, disjoint, equals, overlaps",
    ),
    _q("geometry", {"type": "string"}, "Point, LineString, Polygon, Multi*"),
    _q("coordinates", {"type": "string"}, "GeoJSON coordinates, e.g. [4.35,50.85]"),
    _q("geoproperty", {"type": "string"}, "GeoProperty to test (default location)"),
    _q("options", {"type": "string"}, "keyValues, concise, sysAttrs"),
    _q(
        "format",
        {"type": "string", "enum": ["normalized", "concise", "keyValues", "simplified"]},
        "Representation",
    ),
    _q("limit", {"type": "integer", "minimum": 0, "maximum": 1000}, "Page size (default 20)"),
    _q("offset", {"type": "integer", "minimum": 0}, "Page start"),
    _q("count", {"type": "boolean"}, "Return NGSILD-Results-Count"),
    _q("lang", {"type": "string"}, "Language for LanguageProperty values"),
    _q("join", {"type": "string", "enum": ["inline", "flat", "@none"]}, "Linked entity retrieval"),
    _q("joinLevel", {"type": "integer", "minimum": 1}, "Depth of linked entity retrieval"),
    _q("orderBy", {"type": "string"}, "Sort members, e.g. name;desc,id"),
    _q("local", {"type": "boolean"}, "Local entities only"),
]
RETRIEVE_PARAMS = [
    p
    for p in QUERY_PARAMS
    if p["name"] in {"attrs", "pick", "omit", "options", "format", "lang", "join", "joinLevel", "local"}
]


def entity_path_param() -> dict[str, Any]:
    return {"name": "entity_id", "in": "path", "required": True, "schema": ENTITY_ID}


CREATE = {"requestBody": _body(ENTITY), "responses": ERRORS}
QUERY = {"parameters": QUERY_PARAMS, "responses": ERRORS}
RETRIEVE = {"parameters": RETRIEVE_PARAMS, "responses": ERRORS}
FRAGMENT_BODY = {"requestBody": _body(FRAGMENT), "responses": ERRORS}
BATCH = {"requestBody": _body({"type": "array", "items": ENTITY}), "responses": ERRORS}
BATCH_DELETE = {"requestBody": _body({"type": "array", "items": ENTITY_ID}), "responses": ERRORS}
PLAIN = {"responses": ERRORS}
