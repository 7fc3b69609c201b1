"""NGSI-LD geo-queries (ETSI GS CIM 009 clause 4.10) on the twin store.

A geo-query is ``georel`` + ``geometry`` + ``coordinates`` (+ ``geoproperty``, default
``location``). It runs in two steps:

1. **Prefilter in SQL** on ``geo_index`` bounding boxes (one row per GeoProperty instance, written
   by :func:`geo_rows`): :func:`geo_filter` is an ``EXISTS`` to put in the entity query,
   :func:`geo_candidates` selects the ``(entity_pk, geojson)`` rows of candidate entities.
2. **Exact refinement in Python** with shapely on those rows: :func:`refine`, or
   :func:`geometry_matches` for one geometry, :func:`geo_matches` for one entity document.

Relations read "the entity's geometry *georel* the query geometry" (``within``: the entity lies
within the query polygon; ``contains``: the entity contains the query geometry), with the OGC
simple-feature meaning that shapely implements, on longitude/latitude in degrees (WGS84).
``near;maxDistance==d`` / ``near;minDistance==d`` use distances in metres on the sphere of radius
6,371,008.8 m: exact (haversine) between points; between a point and a line or polygon, the
distance in an azimuthal equidistant projection centred on the query point (exact along every
direction from the centre), after densifying edges to 0.01 degree so that edges follow the
sphere closely. An entity with several instances of the geoproperty matches when any instance does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import orjson
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import ColumnElement, Select, and_, select

from bright.twin.schema import entities, geo_index

__all__ = [
    "DEFAULT_GEOPROPERTY",
    "EARTH_RADIUS_M",
    "GEOMETRIES",
    "GEORELS",
    "GeoQuery",
    "GeoQueryError",
    "distance_m",
    "geo_candidates",
    "geo_filter",
    "geo_matches",
    "geo_rows",
    "geometry_matches",
    "haversine_m",
    "parse_geoquery",
    "refine",
]

EARTH_RADIUS_M = 6_371_008.8
"""Mean Earth radius (IUGG), metres."""
GEORELS = ("near", "within", "contains", "intersects", "disjoint", "equals", "overlaps")
GEOMETRIES = ("Point", "LineString", "Polygon", "MultiPoint", "MultiLineString", "MultiPolygon")
DEFAULT_GEOPROPERTY = "location"
_DENSIFY_DEG = 0.01
_METRES_PER_DEGREE = EARTH_RADIUS_M * math.pi / 180.0


class GeoQueryError(ValueError):
    """A geo-query parameter that is missing or malformed.

    Parameters
    ----------
    parameter : str
        ``'georel'``, ``'geometry'``, ``'coordinates'`` or ``'geoproperty'``.
    reason : str
        What is wrong, with the offending value.
    """

    def __init__(self, parameter: str, reason: str) -> None:
        super().__init__(f"invalid geo-query {parameter}: {reason}")
        self.parameter = parameter
        self.reason = reason


@dataclass(frozen=True, slots=True)
class GeoQuery:
    """A validated geo-query.

    Attributes
    ----------
    georel : str
        One of :data:`GEORELS`.
    geometry : shapely geometry
        The query geometry, longitude/latitude in degrees (2-D; a third coordinate is dropped).
    geoproperty : str
        Expanded IRI of the GeoProperty to test.
    max_distance_m, min_distance_m : float or None
        ``near`` bounds in metres (inclusive).
    """

    georel: str
    geometry: BaseGeometry
    geoproperty: str
    max_distance_m: float | None = None
    min_distance_m: float | None = None


# --------------------------------------------------------------------------------------------------
# Parsing and validation
# --------------------------------------------------------------------------------------------------


def _parse_georel(text: str) -> tuple[str, float | None, float | None]:
    parts = [p.strip() for p in text.split(";")]
    name = parts[0]
    if name not in GEORELS:
        raise GeoQueryError("georel", f"{name!r} is not one of {', '.join(GEORELS)}")
    bounds: dict[str, float] = {}
    for modifier in parts[1:]:
        if name != "near":
            raise GeoQueryError("georel", f"{name!r} takes no modifier, got {modifier!r}")
        key, sep, raw = modifier.partition("==")
        if not sep or key not in ("maxDistance", "minDistance"):
            raise GeoQueryError(
                "georel", f"expected maxDistance==<metres> or minDistance==<metres>, got {modifier!r}"
            )
        try:
            metres = float(raw)
        except ValueError:
            raise GeoQueryError("georel", f"{key} must be a number of metres, got {raw!r}") from None
        if not math.isfinite(metres) or metres < 0:
            raise GeoQueryError("georel", f"{key} must be a finite number of metres >= 0, got {raw!r}")
        if key in bounds:
            raise GeoQueryError("georel", f"{key} is given twice")
        bounds[key] = metres
    if name == "near" and not bounds:
        raise GeoQueryError("georel", "near needs ;maxDistance==<metres> or ;minDistance==<metres>")
    return name, bounds.get("maxDistance"), bounds.get("minDistance")


def _position(item: Any, where: str) -> list[float]:
    if not isinstance(item, list | tuple) or len(item) not in (2, 3):
        raise GeoQueryError("coordinates", f"{where}: a position is [longitude, latitude], got {item!r}")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in item):
        raise GeoQueryError("coordinates", f"{where}: position {item!r} must hold finite numbers")
    lon, lat = float(item[0]), float(item[1])
    if not -180.0 <= lon <= 180.0 or not -90.0 <= lat <= 90.0:
        raise GeoQueryError(
            "coordinates", f"{where}: position {item!r} is outside longitude [-180, 180] / latitude [-90, 90]"
        )
    return [lon, lat]


def _positions(items: Any, where: str, minimum: int) -> list[list[float]]:
    if not isinstance(items, list | tuple) or len(items) < minimum:
        raise GeoQueryError(
            "coordinates", f"{where}: expected a list of at least {minimum} positions, got {items!r}"
        )
    return [_position(p, f"{where} position {i}") for i, p in enumerate(items)]


def _line(items: Any, where: str) -> list[list[float]]:
    return _positions(items, where, 2)


def _polygon(rings: Any, where: str) -> list[list[list[float]]]:
    if not isinstance(rings, list | tuple) or not rings:
        raise GeoQueryError("coordinates", f"{where}: a Polygon is a list of linear rings, got {rings!r}")
    out = []
    for i, ring in enumerate(rings):
        positions = _positions(ring, f"{where} ring {i}", 4)
        if positions[0] != positions[-1]:
            raise GeoQueryError(
                "coordinates", f"{where} ring {i}: not closed (first {positions[0]} != last {positions[-1]})"
            )
        out.append(positions)
    return out


def _multi(items: Any, where: str, part: Callable[[Any, str], Any]) -> list[Any]:
    if not isinstance(items, list | tuple) or not items:
        raise GeoQueryError("coordinates", f"{where}: expected a non-empty list, got {items!r}")
    return [part(item, f"{where} member {i}") for i, item in enumerate(items)]


def _coordinates(kind: str, raw: Any) -> Any:
    if kind == "Point":
        return _position(raw, "Point")
    if kind == "LineString":
        return _line(raw, "LineString")
    if kind == "Polygon":
        return _polygon(raw, "Polygon")
    if kind == "MultiPoint":
        return _multi(raw, "MultiPoint", _position)
    if kind == "MultiLineString":
        return _multi(raw, "MultiLineString", _line)
    return _multi(raw, "MultiPolygon", _polygon)


def _load_coordinates(coordinates: str | list[Any]) -> Any:
    if not isinstance(coordinates, str):
        return coordinates
    text = coordinates.strip()
    try:
        return json.loads(text if text.startswith("[") else f"[{text}]")
    except json.JSONDecodeError as exc:
        raise GeoQueryError("coordinates", f"not a JSON array ({exc.msg}): {coordinates!r}") from None


def parse_geoquery(
    georel: str | None,
    geometry: str | None,
    coordinates: str | list[Any] | None,
    geoproperty: str | None = None,
    *,
    expand: Callable[[str], str],
) -> GeoQuery | None:
    """Validate the geo-query parameters of a query (GET parameters or the POST ``geoQ`` member).

    Parameters
    ----------
    georel : str or None
        ``near;maxDistance==<m>``, ``near;minDistance==<m>``, ``within``, ``contains``,
        ``intersects``, ``disjoint``, ``equals`` or ``overlaps``.
    geometry : str or None
        One of :data:`GEOMETRIES`.
    coordinates : str or list or None
        GeoJSON coordinates in degrees (longitude first): JSON text (``'[8,40]'``; the outer
        brackets may be omitted) or the already decoded list.
    geoproperty : str, optional
        The GeoProperty to test, a term expanded with ``expand`` (default ``location``).
    expand : callable
        Term to IRI with the active @context.

    Returns
    -------
    GeoQuery or None
        None when ``georel``, ``geometry`` and ``coordinates`` are all absent.

    Raises
    ------
    GeoQueryError
        A parameter is missing or malformed; the message names it and the offending value.
    """
    given = {"georel": georel, "geometry": geometry, "coordinates": coordinates}
    if all(v is None or v == "" for v in given.values()):
        return None
    for name, value in given.items():
        if value is None or value == "":
            present = ", ".join(k for k, v in given.items() if v not in (None, ""))
            raise GeoQueryError(
                name, f"missing (georel, geometry and coordinates go together; got {present})"
            )
    assert georel is not None and geometry is not None and coordinates is not None
    name, max_distance, min_distance = _parse_georel(georel)
    if geometry not in GEOMETRIES:
        raise GeoQueryError("geometry", f"{geometry!r} is not one of {', '.join(GEOMETRIES)}")
    coords = _coordinates(geometry, _load_coordinates(coordinates))
    try:
        geom = shape({"type": geometry, "coordinates": coords})
    except (ValueError, TypeError, shapely.errors.GEOSException) as exc:
        raise GeoQueryError("coordinates", f"not a valid {geometry}: {exc}") from None
    if geoproperty is not None and not geoproperty.strip():
        raise GeoQueryError("geoproperty", "empty attribute name")
    prop = expand(geoproperty or DEFAULT_GEOPROPERTY)
    return GeoQuery(name, geom, prop, max_distance, min_distance)


# --------------------------------------------------------------------------------------------------
# Index rows
# --------------------------------------------------------------------------------------------------


def _entity_geometry(value: Any) -> BaseGeometry | None:
    """A shapely geometry from a stored GeoJSON value (None if it is not one)."""
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return None
    try:
        geom = shape(value)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, shapely.errors.GEOSException):
        return None
    if geom.is_empty:
        return None
    bounds = geom.bounds
    if not all(math.isfinite(b) for b in bounds):
        return None
    return geom


# Nesting depth of the positions in the coordinates of each GeoJSON geometry type.
_DEPTH = {"Point": 0, "LineString": 1, "MultiPoint": 1, "Polygon": 2, "MultiLineString": 2, "MultiPolygon": 3}


def _positions_of(coordinates: Any, depth: int) -> Iterator[tuple[float, float]]:
    """The (x, y) of every position; raises ValueError/TypeError on a malformed array."""
    if depth == 0:
        if not isinstance(coordinates, list) or len(coordinates) < 2:
            raise ValueError("not a position")
        x, y = coordinates[0], coordinates[1]
        if (
            isinstance(x, bool)
            or isinstance(y, bool)
            or not isinstance(x, int | float)
            or not isinstance(y, int | float)
        ):
            raise TypeError("not a number")
        yield float(x), float(y)
        return
    if not isinstance(coordinates, list) or not coordinates:
        raise ValueError("empty coordinates")
    for item in coordinates:
        yield from _positions_of(item, depth - 1)


def _bounds(value: Any) -> tuple[float, float, float, float] | None:
    """Bounding box (min_x, min_y, max_x, max_y) of a GeoJSON geometry, None if it is not one."""
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    try:
        if kind == "GeometryCollection":
            boxes = [_bounds(g) for g in value.get("geometries") or []]
            if not boxes or any(b is None for b in boxes):
                return None
            b = cast(list[tuple[float, float, float, float]], boxes)
            return (min(x[0] for x in b), min(x[1] for x in b), max(x[2] for x in b), max(x[3] for x in b))
        if not isinstance(kind, str) or kind not in _DEPTH:
            return None
        xs, ys = zip(*_positions_of(value.get("coordinates"), _DEPTH[kind]), strict=True)
    except (ValueError, TypeError, RecursionError):
        return None
    box = (min(xs), min(ys), max(xs), max(ys))
    return box if all(math.isfinite(v) for v in box) else None


def geo_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of ``geo_index`` for an expanded entity document: one per GeoProperty instance.

    Parameters
    ----------
    doc : dict
        The stored entity document (``attrs`` maps expanded attribute IRIs to instances).

    Returns
    -------
    list of dict
        Keys ``attr``, ``dataset_id``, ``min_x``, ``min_y``, ``max_x``, ``max_y`` (bounding box,
        degrees) and ``geojson`` (the value as compact JSON text); the caller adds ``entity_pk``.
        Values that are not GeoJSON geometries get no row.
    """
    out: list[dict[str, Any]] = []
    for attr, value in (doc.get("attrs") or {}).items():
        for instance in value if isinstance(value, list) else [value]:
            if not isinstance(instance, dict) or instance.get("type") != "GeoProperty":
                continue
            box = _bounds(instance.get("value"))
            if box is None:
                continue
            min_x, min_y, max_x, max_y = box
            dataset = instance.get("datasetId")
            out.append(
                {
                    "attr": attr,
                    "dataset_id": dataset if isinstance(dataset, str) else None,
                    "min_x": min_x,
                    "min_y": min_y,
                    "max_x": max_x,
                    "max_y": max_y,
                    "geojson": orjson.dumps(instance["value"]).decode(),
                }
            )
    return out


# --------------------------------------------------------------------------------------------------
# SQL prefilter
# --------------------------------------------------------------------------------------------------


def _near_box(bounds: tuple[float, float, float, float], metres: float) -> tuple[float, float, float, float]:
    """Bounding box (degrees) of every point within ``metres`` of a box, on the sphere.

    The latitude margin is the angular distance; the longitude margin of a spherical cap of angular
    radius d centred at latitude phi is asin(sin d / cos phi), largest at the box's highest |lat|.
    """
    min_x, min_y, max_x, max_y = bounds
    delta = metres / EARTH_RADIUS_M * (1 + 1e-9) + 1e-12  # radians, with a hair of float slack
    delta_deg = math.degrees(delta)
    south, north = min_y - delta_deg, max_y + delta_deg
    if south <= -90 or north >= 90 or delta >= math.pi / 2:
        return (-180.0, max(south, -90.0), 180.0, min(north, 90.0))
    phi = math.radians(max(abs(min_y), abs(max_y)))
    ratio = math.sin(delta) / math.cos(phi)
    if ratio >= 1:
        return (-180.0, south, 180.0, north)
    dlon = math.degrees(math.asin(ratio))
    west, east = min_x - dlon, max_x + dlon
    if west < -180 or east > 180:  # crosses the antimeridian: keep every longitude
        return (-180.0, south, 180.0, north)
    return (west, south, east, north)


def _box_condition(query: GeoQuery) -> ColumnElement[bool] | None:
    g = geo_index.c
    q_min_x, q_min_y, q_max_x, q_max_y = query.geometry.bounds
    if query.georel == "near":
        if query.max_distance_m is None:
            return None  # minDistance only: every geometry is a candidate
        q_min_x, q_min_y, q_max_x, q_max_y = _near_box(query.geometry.bounds, query.max_distance_m)
    if query.georel == "disjoint":
        return None
    if query.georel == "within":
        return and_(g.min_x >= q_min_x, g.max_x <= q_max_x, g.min_y >= q_min_y, g.max_y <= q_max_y)
    if query.georel == "contains":
        return and_(g.min_x <= q_min_x, g.max_x >= q_max_x, g.min_y <= q_min_y, g.max_y >= q_max_y)
    # near (max), intersects, overlaps, equals: the boxes intersect
    return and_(g.min_x <= q_max_x, g.max_x >= q_min_x, g.min_y <= q_max_y, g.max_y >= q_min_y)


def geo_filter(query: GeoQuery, *, entity_pk: Any = None) -> ColumnElement[bool]:
    """The SQL prefilter: the entity has an instance of the geoproperty whose box may match.

    Parameters
    ----------
    query : GeoQuery
        From :func:`parse_geoquery`.
    entity_pk : column, optional
        Entity key to correlate with (default ``entities.c.pk``).

    Returns
    -------
    ColumnElement
        ``EXISTS (SELECT 1 FROM geo_index WHERE entity_pk = <pk> AND attr = :geoproperty AND <box>)``.
        Candidates still need :func:`refine`.
    """
    pk = entities.c.pk if entity_pk is None else entity_pk
    conditions = [geo_index.c.entity_pk == pk, geo_index.c.attr == query.geoproperty]
    box = _box_condition(query)
    if box is not None:
        conditions.append(box)
    return select(geo_index.c.entity_pk).where(*conditions).exists()


def geo_candidates(query: GeoQuery, entity_select: Select[Any] | None = None) -> Select[Any]:
    """Select the ``(entity_pk, geojson)`` rows that pass the bounding-box prefilter.

    Parameters
    ----------
    query : GeoQuery
        From :func:`parse_geoquery`.
    entity_select : Select, optional
        A select over ``entities`` carrying the other filters (tenant, type, q...); its columns,
        ORDER BY, LIMIT and OFFSET are ignored (page after :func:`refine`). None: all entities.

    Returns
    -------
    Select
        Rows ``(entity_pk, geojson)``, one per candidate GeoProperty instance; feed them to
        :func:`refine`.
    """
    g = geo_index.c
    conditions: list[ColumnElement[bool]] = [g.attr == query.geoproperty]
    box = _box_condition(query)
    if box is not None:
        conditions.append(box)
    if entity_select is not None:
        pks = entity_select.with_only_columns(entities.c.pk).order_by(None).limit(None).offset(None)
        conditions.append(g.entity_pk.in_(pks.scalar_subquery()))
    return select(g.entity_pk, g.geojson).where(*conditions)


# --------------------------------------------------------------------------------------------------
# Exact refinement
# --------------------------------------------------------------------------------------------------


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres between two longitude/latitude points (degrees).

    Parameters
    ----------
    lon1, lat1, lon2, lat2 : float
        Degrees (WGS84 longitude, latitude).

    Returns
    -------
    float
        Metres on the sphere of radius :data:`EARTH_RADIUS_M`.
    """
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def _azimuthal_equidistant(lon0: float, lat0: float) -> Callable[[np.ndarray], np.ndarray]:
    """Spherical azimuthal equidistant projection centred at (lon0, lat0): degrees to metres."""
    l0, p0 = math.radians(lon0), math.radians(lat0)

    def project(xy: np.ndarray) -> np.ndarray:
        lon, lat = np.radians(xy[:, 0]), np.radians(xy[:, 1])
        dl = lon - l0
        h = np.sin((lat - p0) / 2) ** 2 + math.cos(p0) * np.cos(lat) * np.sin(dl / 2) ** 2
        c = 2 * np.arcsin(np.minimum(1.0, np.sqrt(h)))  # angular distance from the centre
        azimuth = np.arctan2(
            np.sin(dl) * np.cos(lat), math.cos(p0) * np.sin(lat) - math.sin(p0) * np.cos(lat) * np.cos(dl)
        )
        return np.column_stack((EARTH_RADIUS_M * c * np.sin(azimuth), EARTH_RADIUS_M * c * np.cos(azimuth)))

    return project


def distance_m(entity: BaseGeometry, reference: BaseGeometry) -> float:
    """Distance in metres between two lon/lat geometries (see the module docstring for the method).

    Parameters
    ----------
    entity, reference : shapely geometry
        Longitude/latitude in degrees; ``reference`` is the query geometry (usually a Point).

    Returns
    -------
    float
        Metres; 0 when they intersect.
    """
    if entity.geom_type == "Point" and reference.geom_type == "Point":
        return haversine_m(entity.x, entity.y, reference.x, reference.y)
    if entity.intersects(reference):
        return 0.0
    centre = reference if reference.geom_type == "Point" else reference.centroid
    project = _azimuthal_equidistant(centre.x, centre.y)
    planar_entity = shapely.transform(shapely.segmentize(entity, _DENSIFY_DEG), project)
    planar_reference = shapely.transform(shapely.segmentize(reference, _DENSIFY_DEG), project)
    return float(planar_entity.distance(planar_reference))


def geometry_matches(query: GeoQuery, geometry: BaseGeometry) -> bool:
    """Whether one entity geometry satisfies the geo-query (exact test).

    Parameters
    ----------
    query : GeoQuery
        From :func:`parse_geoquery`.
    geometry : shapely geometry
        The entity's GeoProperty value, lon/lat degrees.
    """
    try:
        return _relate(query, geometry, query.geometry)
    except shapely.errors.GEOSException:
        pass
    try:  # self-intersecting input: retry on the repaired geometries
        return _relate(query, shapely.make_valid(geometry), shapely.make_valid(query.geometry))
    except shapely.errors.GEOSException:
        return False


def _relate(query: GeoQuery, geometry: BaseGeometry, q: BaseGeometry) -> bool:
    match query.georel:
        case "near":
            d = distance_m(geometry, q)
            return (query.max_distance_m is None or d <= query.max_distance_m) and (
                query.min_distance_m is None or d >= query.min_distance_m
            )
        case "within":
            return bool(geometry.within(q))
        case "contains":
            return bool(geometry.contains(q))
        case "intersects":
            return bool(geometry.intersects(q))
        case "disjoint":
            return bool(geometry.disjoint(q))
        case "equals":
            return bool(geometry.equals(q))
        case _:
            return bool(geometry.overlaps(q))


def refine(query: GeoQuery, rows: Iterable[tuple[Any, str]]) -> set[Any]:
    """Exact refinement of prefiltered ``(entity_pk, geojson)`` rows.

    Parameters
    ----------
    query : GeoQuery
        From :func:`parse_geoquery`.
    rows : iterable of (pk, str)
        As selected by :func:`geo_candidates` (GeoJSON text of one GeoProperty instance each).

    Returns
    -------
    set
        The entity keys with at least one matching instance.
    """
    matched: set[Any] = set()
    for pk, text in rows:
        if pk in matched:
            continue
        try:
            geom = _entity_geometry(json.loads(text))
        except (json.JSONDecodeError, TypeError):
            geom = None
        if geom is not None and geometry_matches(query, geom):
            matched.add(pk)
    return matched


def geo_matches(query: GeoQuery, doc: dict[str, Any]) -> bool:
    """Evaluate a geo-query on an expanded entity document (subscriptions, tests).

    Parameters
    ----------
    query : GeoQuery
        From :func:`parse_geoquery`.
    doc : dict
        The stored entity document.
    """
    rows = [(0, row["geojson"]) for row in geo_rows(doc) if row["attr"] == query.geoproperty]
    return bool(refine(query, rows))
