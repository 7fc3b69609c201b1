"""Geo-queries: validation, index rows, bounding-box prefilter in SQL and exact refinement."""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString, Point, Polygon
from sqlalchemy import Connection, Engine, create_engine, delete, insert, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool

from bright.twin.geo import (
    EARTH_RADIUS_M,
    GeoQuery,
    GeoQueryError,
    distance_m,
    geo_candidates,
    geo_filter,
    geo_matches,
    geo_rows,
    haversine_m,
    parse_geoquery,
    refine,
)
from bright.twin.schema import entities, entity_types, geo_index, metadata

CORE = "https://uri.etsi.org/ngsi-ld/"
V = "https://ex.org/"
LOCATION = CORE + "location"
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def expand(term: str) -> str:
    if ":" in term:
        return term
    return CORE + term if term == "location" else V + term


# --------------------------------------------------------------------------------------------------
# Databases
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_db() -> Iterator[Engine]:
    engine = create_engine("sqlite://", poolclass=StaticPool)
    metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def pg_db() -> Iterator[Engine]:
    """A fresh PostgreSQL database with a random name, dropped at teardown."""
    name = f"bright_geo_{uuid.uuid4().hex[:12]}"
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        if os.environ.get("BRIGHT_REQUIRE_SERVICES") == "1":
            pytest.fail(f"PostgreSQL on 127.0.0.1:5432 is required: {exc}")
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 unreachable: {exc}")
    engine = create_engine(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    metadata.create_all(engine)
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest) -> Engine:
    return request.getfixturevalue("sqlite_db" if request.param == "sqlite" else "pg_db")


def store(conn: Connection, docs: list[dict[str, Any]]) -> None:
    for table in (geo_index, entity_types, entities):
        conn.execute(delete(table))
    for doc in docs:
        pk = conn.execute(
            insert(entities).values(
                tenant="", id=doc["id"], type=doc["type"][0], created_at="x", modified_at="x", doc=doc
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        conn.execute(insert(entity_types), [{"entity_pk": pk, "type": t} for t in doc["type"]])
        if rows := geo_rows(doc):
            conn.execute(insert(geo_index), [dict(r, entity_pk=pk) for r in rows])


def ids_of(conn: Connection, pks: set[Any]) -> set[str]:
    if not pks:
        return set()
    return set(conn.execute(select(entities.c.id).where(entities.c.pk.in_(pks))).scalars())


def run_both_ways(conn: Connection, query: GeoQuery) -> set[str]:
    """The two SQL routes (candidate rows, or an EXISTS filter then the rows) must agree."""
    via_candidates = ids_of(conn, refine(query, conn.execute(geo_candidates(query)).tuples()))
    filtered = select(entities.c.pk).where(geo_filter(query))
    rows = conn.execute(
        select(geo_index.c.entity_pk, geo_index.c.geojson).where(
            geo_index.c.attr == query.geoproperty, geo_index.c.entity_pk.in_(filtered.scalar_subquery())
        )
    ).tuples()
    assert ids_of(conn, refine(query, rows)) == via_candidates
    return via_candidates


def entity(ident: str, *geometries: dict[str, Any], attr: str = LOCATION) -> dict[str, Any]:
    instances = [{"type": "GeoProperty", "value": g} for g in geometries]
    for i, inst in enumerate(instances[1:], start=1):
        inst["datasetId"] = f"urn:ds:{i}"
    return {"id": ident, "type": [V + "Building"], "attrs": {attr: instances}}


# The three points and two polygons of the ETSI conformance cases 019_10 and 019_11 (Berlin).
TOWER = {"type": "Point", "coordinates": [13.3986, 52.5547]}
AIRPORT = {"type": "Point", "coordinates": [13.509818, 52.363457]}
GRUNEWALD = {"type": "Point", "coordinates": [13.215983, 52.470441]}
P1 = {
    "type": "Polygon",
    "coordinates": [
        [
            [13.2865906, 52.5648645],
            [13.2879639, 52.5648645],
            [13.2797241, 52.4988679],
            [13.477478, 52.4712703],
            [13.5049438, 52.5373084],
            [13.2865906, 52.5648645],
        ]
    ],
}
P2 = {
    "type": "Polygon",
    "coordinates": [
        [[13.315773, 52.4757209], [13.339119, 52.4443421], [13.3892441, 52.4669371], [13.315773, 52.4757209]]
    ],
}
BIG = "[[[13.1616211,52.5438124],[13.597641,52.4840224],[13.5948944,52.3402782],[13.142395,52.386428],[13.1616211,52.5438124]]]"
WEST = "[[[13.1369019,52.5198225],[13.1365585,52.5200314],[13.131752,52.4980907],[13.1832504,52.5026887],[13.1369019,52.5198225]]]"
CROSSING = "[[[13.3456421,52.4794848],[13.3641815,52.4428773],[13.4177399,52.4730023],[13.3459854,52.479903],[13.3456421,52.4794848]]]"

POINT_CASES = [
    ("equals", "Point", "[13.3986, 52.5547]", {"tower"}),
    # from (13.38893, 52.534473): tower 2.3 km, Grunewald 13.7 km, airport 20.7 km
    ("near;maxDistance==15000", "Point", "[13.388930, 52.534473]", {"tower", "grunewald"}),
    ("near;minDistance==15000", "Point", "[13.388930, 52.534473]", {"airport"}),
    ("near;minDistance==3000;maxDistance==15000", "Point", "[13.388930, 52.534473]", {"grunewald"}),
    ("within", "Polygon", BIG, {"airport", "grunewald"}),  # the tower lies north of it
    ("disjoint", "Polygon", BIG, {"tower"}),
    ("disjoint", "Point", "[13.3986, 52.5547]", {"airport", "grunewald"}),
    ("contains", "Point", "[13.3986, 52.5547]", {"tower"}),
    ("intersects", "Point", "13.3986, 52.5547", {"tower"}),
]
POLYGON_CASES = [
    ("equals", "Polygon", str(P1["coordinates"]), {"p1"}),
    ("intersects", "Polygon", CROSSING, {"p2"}),
    (
        "contains",
        "Polygon",
        "[[[13.3844376,52.5356966],[13.3844376,52.5356966],[13.381691,52.5123012],[13.4235764,52.5100027],[13.4331894,52.5273425],[13.3844376,52.5356966]]]",
        {"p1"},
    ),
    ("contains", "Polygon", WEST, set()),
    ("disjoint", "Polygon", WEST, {"p1", "p2"}),
    (
        "within",
        "Polygon",
        "[[[13.3023834,52.4903066],[13.3027267,52.4905156],[13.2745743,52.465632],[13.3343124,52.4185447],[13.4311295,52.47107],[13.3023834,52.4903066]]]",
        {"p2"},
    ),
    ("overlaps", "Polygon", CROSSING, {"p2"}),
    ("contains", "Point", "[13.3442688,52.4650045]", {"p2"}),
    # 0.005 degree due south of P2's lowest vertex (13.339119, 52.4443421): 0.005 * 111,195 = 556 m
    ("near;maxDistance==600", "Point", "[13.339119, 52.4393421]", {"p2"}),
    ("near;maxDistance==500", "Point", "[13.339119, 52.4393421]", set()),
]


@pytest.mark.parametrize(("georel", "geometry", "coordinates", "expected"), POINT_CASES)
def test_etsi_point_cases(
    db: Engine, georel: str, geometry: str, coordinates: str, expected: set[str]
) -> None:
    docs = [entity("tower", TOWER), entity("airport", AIRPORT), entity("grunewald", GRUNEWALD)]
    query = parse_geoquery(georel, geometry, coordinates, expand=expand)
    assert query is not None
    assert {d["id"] for d in docs if geo_matches(query, d)} == expected
    with db.connect() as conn:
        store(conn, docs)
        assert run_both_ways(conn, query) == expected
        conn.rollback()


@pytest.mark.parametrize(("georel", "geometry", "coordinates", "expected"), POLYGON_CASES)
def test_etsi_polygon_cases(
    db: Engine, georel: str, geometry: str, coordinates: str, expected: set[str]
) -> None:
    docs = [entity("p1", P1), entity("p2", P2)]
    query = parse_geoquery(georel, geometry, coordinates, expand=expand)
    assert query is not None
    assert {d["id"] for d in docs if geo_matches(query, d)} == expected
    with db.connect() as conn:
        store(conn, docs)
        assert run_both_ways(conn, query) == expected
        conn.rollback()


def test_candidates_respect_the_entity_select(sqlite_db: Engine) -> None:
    docs = [entity("tower", TOWER), entity("airport", AIRPORT)]
    docs[1]["type"] = [V + "Airport"]
    query = parse_geoquery("near;maxDistance==50000", "Point", "[13.4, 52.5]", expand=expand)
    assert query is not None
    with sqlite_db.connect() as conn:
        store(conn, docs)
        buildings = select(entities).where(entities.c.type == V + "Building").order_by(entities.c.id).limit(1)
        rows = conn.execute(geo_candidates(query, buildings)).tuples().all()
        assert ids_of(conn, refine(query, rows)) == {"tower"}
        assert ids_of(conn, refine(query, conn.execute(geo_candidates(query)).tuples())) == {
            "tower",
            "airport",
        }
        conn.rollback()


def test_bbox_prefilter_excludes_far_geometries(sqlite_db: Engine) -> None:
    """The SQL step does real work: far entities never reach the refinement."""
    query = parse_geoquery("near;maxDistance==20000", "Point", "[4.35, 50.85]", expand=expand)  # Brussels
    assert query is not None
    docs = [
        entity("brussels", {"type": "Point", "coordinates": [4.40, 50.80]}),
        entity("ghent", {"type": "Point", "coordinates": [3.72, 51.05]}),
    ]
    with sqlite_db.connect() as conn:
        store(conn, docs)
        pks = {pk for pk, _ in conn.execute(geo_candidates(query)).tuples()}
        assert ids_of(conn, pks) == {"brussels"}
        conn.rollback()


# --------------------------------------------------------------------------------------------------
# Distances
# --------------------------------------------------------------------------------------------------


def test_haversine_worked_examples() -> None:
    # one degree of a great circle: R * pi / 180 = 6,371,008.8 * 0.0174533 = 111,195.08 m
    assert haversine_m(0, 0, 0, 1) == pytest.approx(111_195.08, abs=0.01)
    assert haversine_m(0, 0, 1, 0) == pytest.approx(111_195.08, abs=0.01)
    # a quarter of the equator: R * pi / 2 = 10,007,557 m
    assert haversine_m(0, 0, 90, 0) == pytest.approx(EARTH_RADIUS_M * math.pi / 2, rel=1e-12)
    # 10 degrees of longitude at 80 N: cos 80 * sin 5 = 0.17364818 * 0.08715574 = 0.015134435,
    # asin = 0.015135013, times 2R = 12,742,017.6 m gives 192,850.6 m (not 10 * 111 km)
    assert haversine_m(0, 80, 10, 80) == pytest.approx(
        2 * EARTH_RADIUS_M * math.asin(math.cos(math.radians(80)) * math.sin(math.radians(5)))
    )
    assert haversine_m(0, 80, 10, 80) == pytest.approx(192_850.6, abs=0.1)


def test_distance_to_lines_and_polygons() -> None:
    meridian = LineString([(1, -1), (1, 1)])
    # nearest point (1, 0): one degree of the equator away
    assert distance_m(meridian, Point(0, 0)) == pytest.approx(111_195.08, abs=1.0)
    square = Polygon([(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)])
    assert distance_m(square, Point(0.5, 0.5)) == 0.0
    # (0.5, -0.1) is 0.1 degree of meridian south of the edge y = 0: 11,119.5 m
    assert distance_m(square, Point(0.5, -0.1)) == pytest.approx(11_119.5, abs=1.0)


@pytest.mark.parametrize(
    ("centre", "other", "limit", "expected"),
    [
        # at 80 N the box must widen in longitude by asin(sin d / cos 80)
        ([0, 80], [10, 80], 193_000, True),
        ([0, 80], [10, 80], 192_000, False),
        # across the antimeridian: 0.2 degree of the equator = 22,239 m
        ([179.9, 0], [-179.9, 0], 22_300, True),
        ([179.9, 0], [-179.9, 0], 22_200, False),
        # over the pole: (0, 89.9) and (180, 89.9) are 0.2 degree of a meridian apart
        ([0, 89.9], [180, 89.9], 22_300, True),
    ],
)
def test_near_at_the_edges_of_the_map(
    sqlite_db: Engine, centre: list[float], other: list[float], limit: float, expected: bool
) -> None:
    query = parse_geoquery(f"near;maxDistance=={limit}", "Point", centre, expand=expand)
    assert query is not None
    doc = entity("other", {"type": "Point", "coordinates": other})
    assert geo_matches(query, doc) is expected
    with sqlite_db.connect() as conn:
        store(conn, [doc])
        assert run_both_ways(conn, query) == ({"other"} if expected else set())
        conn.rollback()


# --------------------------------------------------------------------------------------------------
# Parsing and index rows
# --------------------------------------------------------------------------------------------------


def test_parse_forms() -> None:
    assert parse_geoquery(None, None, None, expand=expand) is None
    q = parse_geoquery("near;maxDistance==2000", "Point", "[8,40]", expand=expand)
    assert q is not None and q.max_distance_m == 2000.0 and q.min_distance_m is None
    assert q.geometry.equals(Point(8, 40)) and q.geoproperty == LOCATION
    listed = parse_geoquery("within", "Polygon", [[[0, 0], [1, 0], [1, 1], [0, 0]]], "place", expand=expand)
    assert listed is not None and listed.geoproperty == V + "place" and listed.geometry.area == 0.5
    multi = parse_geoquery("intersects", "MultiPoint", "[[0,0],[1,1,5]]", expand=expand)
    assert multi is not None and len(multi.geometry.geoms) == 2


@pytest.mark.parametrize(
    ("args", "parameter", "fragment"),
    [
        (("invalid", "Point", "[1,2]"), "georel", "'invalid' is not one of"),
        (("near", "Point", "[1,2]"), "georel", "needs ;maxDistance"),
        (("near;maxDistance==-1", "Point", "[1,2]"), "georel", ">= 0"),
        (("near;maxDistance==x", "Point", "[1,2]"), "georel", "number of metres"),
        (("near;maxDistance:5", "Point", "[1,2]"), "georel", "expected maxDistance=="),
        (("within;maxDistance==5", "Point", "[1,2]"), "georel", "takes no modifier"),
        (("near;maxDistance==1;maxDistance==2", "Point", "[1,2]"), "georel", "given twice"),
        (("within", "Circle", "[1,2]"), "geometry", "'Circle' is not one of"),
        (("within", "Point", "[1,"), "coordinates", "not a JSON array"),
        (("within", "Point", "[200,2]"), "coordinates", "outside longitude"),
        (("within", "Point", "[1]"), "coordinates", "[longitude, latitude]"),
        (("within", "Point", '["1",2]'), "coordinates", "finite numbers"),
        (("within", "LineString", "[[1,2]]"), "coordinates", "at least 2 positions"),
        (("within", "Polygon", "[[[0,0],[1,0],[1,1]]]"), "coordinates", "at least 4 positions"),
        (("within", "Polygon", "[[[0,0],[1,0],[1,1],[0,1]]]"), "coordinates", "not closed"),
        (("within", "MultiPolygon", "[]"), "coordinates", "non-empty list"),
        ((None, "Point", "[1,2]"), "georel", "missing"),
        (("within", None, "[1,2]"), "geometry", "missing"),
        (("within", "Point", None), "coordinates", "missing"),
    ],
)
def test_parse_errors(args: tuple[Any, Any, Any], parameter: str, fragment: str) -> None:
    with pytest.raises(GeoQueryError) as info:
        parse_geoquery(*args, expand=expand)
    assert info.value.parameter == parameter
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_geo_rows() -> None:
    doc = entity("e", P2, TOWER)
    doc["attrs"][V + "name"] = [{"type": "Property", "value": {"type": "Point", "coordinates": [0, 0]}}]
    doc["attrs"][V + "broken"] = [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": "x"}}]
    rows = geo_rows(doc)
    assert [(r["attr"], r["dataset_id"]) for r in rows] == [(LOCATION, None), (LOCATION, "urn:ds:1")]
    assert (rows[0]["min_x"], rows[0]["min_y"], rows[0]["max_x"], rows[0]["max_y"]) == (
        13.315773,
        52.4443421,
        13.3892441,
        52.4757209,
    )
    assert rows[1]["geojson"] == '{"type":"Point","coordinates":[13.3986,52.5547]}'
    collection = {
        "type": "GeometryCollection",
        "geometries": [
            TOWER,
            {"type": "MultiLineString", "coordinates": [[[0, 1], [2, 3]], [[-1, 5], [4, 4]]]},
        ],
    }
    boxes = [(r["min_x"], r["min_y"], r["max_x"], r["max_y"]) for r in geo_rows(entity("c", collection, P1))]
    assert boxes == [(-1.0, 1.0, 13.3986, 52.5547), (13.2797241, 52.4712703, 13.5049438, 52.5648645)]
    for bad in (
        {"type": "Polygon", "coordinates": []},
        {"type": "Point", "coordinates": [True, 1]},
        {"type": "Blob"},
    ):
        assert geo_rows(entity("b", bad)) == []


def test_any_instance_matches() -> None:
    doc = entity("e", AIRPORT, TOWER)
    query = parse_geoquery("near;maxDistance==5000", "Point", "[13.3986, 52.56]", expand=expand)
    assert query is not None and geo_matches(query, doc)
    assert not geo_matches(query, entity("e", AIRPORT))
    other = parse_geoquery("near;maxDistance==5000", "Point", "[13.3986, 52.56]", "elsewhere", expand=expand)
    assert other is not None and not geo_matches(other, doc)


# --------------------------------------------------------------------------------------------------
# Property: the prefilter never drops a true match
# --------------------------------------------------------------------------------------------------

lons = st.floats(-180, 180, allow_nan=False)
lats = st.floats(-89, 89, allow_nan=False)


@st.composite
def geometries(draw: st.DrawFn) -> dict[str, Any]:
    lon, lat = draw(lons), draw(lats)
    if draw(st.booleans()):
        return {"type": "Point", "coordinates": [lon, lat]}
    w, h = draw(st.floats(0.001, 2)), draw(st.floats(0.001, 2))
    lon, lat = min(lon, 180 - w), min(lat, 89 - h)
    return {
        "type": "Polygon",
        "coordinates": [[[lon, lat], [lon + w, lat], [lon + w, lat + h], [lon, lat + h], [lon, lat]]],
    }


@st.composite
def geoqueries(draw: st.DrawFn, near_to: list[dict[str, Any]]) -> GeoQuery:
    georel = draw(
        st.sampled_from(
            [
                "near;maxDistance==",
                "near;minDistance==",
                "within",
                "contains",
                "intersects",
                "disjoint",
                "overlaps",
                "equals",
            ]
        )
    )
    anchor = draw(st.sampled_from(near_to))
    if anchor["type"] == "Point" or georel.startswith("near"):
        x, y = anchor["coordinates"] if anchor["type"] == "Point" else anchor["coordinates"][0][0]
        x = max(-180.0, min(180.0, x + draw(st.floats(-0.5, 0.5))))
        y = max(-89.0, min(89.0, y + draw(st.floats(-0.5, 0.5))))
        geometry, coordinates = "Point", [x, y]
    else:
        geometry, coordinates = "Polygon", anchor["coordinates"]
    if georel.startswith("near"):
        georel += str(draw(st.floats(0, 300_000)))
    query = parse_geoquery(georel, geometry, coordinates, expand=expand)
    assert query is not None
    return query


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), shapes=st.lists(geometries(), min_size=1, max_size=5))
def test_prefilter_and_refinement_equal_the_python_evaluation(
    sqlite_db: Engine, data: st.DataObject, shapes: list[dict[str, Any]]
) -> None:
    docs = [entity(f"e{i}", g) for i, g in enumerate(shapes)]
    query = data.draw(geoqueries(shapes))
    want = {d["id"] for d in docs if geo_matches(query, d)}
    with sqlite_db.connect() as conn:
        store(conn, docs)
        assert run_both_ways(conn, query) == want
        conn.rollback()
