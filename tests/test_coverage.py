"""Coverage against independent computations.

Straight coverage is recomputed exactly, without polygons: for every segment of every street (metric CRS, shapely
+ pyproj) the stretch within the radius of a point is solved from |p0 + t·(p1 - p0) - c| = r. Walking coverage is
recomputed with networkx (``tests.test_network.StreetGraph``). The planted defects of the demo city come from the
generator, not from the database.
"""

from __future__ import annotations

import math
import re
from functools import partial
from itertools import pairwise

import numpy as np
import pytest
import shapely
import shapely.ops
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import shape

from geoservice import coverage, query
from geoservice.errors import InvalidParameter, NotFound
from geoservice.vocab import KIND_CODES
from tests.test_network import GEOD, METRIC_CRS, StreetGraph, measure, open_points, to_metric

uncovered_streets = partial(coverage.uncovered_streets, metric_crs=METRIC_CRS)
grid_coverage = partial(coverage.grid_coverage, metric_crs=METRIC_CRS)

REL = 1e-3  # 0.1 %: consistency of the summary with itself and its features
# Against the references: straight is exact on both sides; walking lengths are metric-CRS metres here and geodesic
# in networkx, which differ by the projection's scale factor (about 4e-6 in Xuchang).
CLOSE = 2e-5


def covered_on_line(line, centres: np.ndarray, radius: float) -> float:
    """Metres of a (metric) line within ``radius`` of any centre: exact circles, segment by segment."""
    total = 0.0
    parts = [line] if line.geom_type == "LineString" else list(getattr(line, "geoms", []))
    for part in parts:
        for p0, p1 in pairwise(np.asarray(part.coords)):
            d = p1 - p0
            a = d @ d
            if a == 0:
                continue
            f = p0 - centres
            b = 2 * f @ d
            c = (f * f).sum(axis=1) - radius**2
            disc = b * b - 4 * a * c
            hit = disc >= 0
            root = np.sqrt(disc[hit])
            t0 = np.clip((-b[hit] - root) / (2 * a), 0, 1)
            t1 = np.clip((-b[hit] + root) / (2 * a), 0, 1)
            spans = sorted((s, e) for s, e in zip(t0, t1, strict=True) if e > s)
            merged: list[list[float]] = []
            for s, e in spans:
                if merged and s <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], e)
                else:
                    merged.append([s, e])
            total += sum(e - s for s, e in merged) * math.sqrt(a)
    return total


def straight_reference(streets: StreetGraph, centres: np.ndarray, radius: float, clip=None) -> tuple[float, float]:
    """(total, covered) metres of the streets, cut to ``clip`` (a metric polygon) when given."""
    total = covered = 0.0
    for e in streets.edges.values():
        line = e.line_m if clip is None else e.line_m.intersection(clip)
        if line.is_empty:
            continue
        total += line.length
        near = centres[np.hypot(*(centres - np.asarray(line.centroid.coords[0])).T) <= radius + line.length]
        covered += covered_on_line(line, near, radius) if len(near) else 0.0
    return total, covered


def centres_of(conn, kinds=None) -> np.ndarray:
    rows = open_points(conn, kinds)
    return np.array([to_metric(shapely.Point(lon, lat)).coords[0] for _, lon, lat, _ in rows]).reshape(-1, 2)


@pytest.fixture()
def streets(conn) -> StreetGraph:
    return StreetGraph(conn)


def km(metres: float) -> float:
    return metres / 1000.0


def assert_consistent(result: dict) -> None:
    s = result["summary"]
    assert s["covered_km"] + s["uncovered_km"] == pytest.approx(s["total_km"], rel=REL, abs=0.002)
    assert 0 <= s["covered_km"] <= s["total_km"] + 0.001
    if s["total_km"]:
        assert s["covered_pct"] == pytest.approx(100 * s["covered_km"] / s["total_km"], abs=0.01)
    assert sum(f["properties"]["length_m"] for f in result["features"]) / 1000 == pytest.approx(
        s["uncovered_km"], rel=REL, abs=0.002)
    ranking = [r["uncovered_km"] for r in s["uncovered_by_street"]]
    assert ranking == sorted(ranking, reverse=True)
    assert sum(ranking) == pytest.approx(s["uncovered_km"], rel=REL, abs=0.002)


# -- straight ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kinds", "radius", "expected_radius"), [
    (None, 500.0, 500.0),
    (["toilet"], None, 300.0),
    (["kiosk", "rest_station"], 800.0, 800.0),
    (["vendor_point"], 150.0, 150.0),
])
def test_straight_coverage_matches_exact_circles(conn, streets, kinds, radius, expected_radius):
    result = uncovered_streets(conn, radius_m=radius, kinds=kinds, mode="straight")
    total, covered = straight_reference(streets, centres_of(conn, kinds), expected_radius)
    s = result["summary"]
    assert s["radius_m"] == expected_radius and s["mode"] == "straight"
    assert s["total_km"] == pytest.approx(km(total), rel=1e-4)
    assert s["covered_km"] == pytest.approx(km(covered), rel=CLOSE, abs=0.001)
    assert s["uncovered_km"] == pytest.approx(km(total - covered), rel=CLOSE, abs=0.001)
    assert_consistent(result)


def test_straight_coverage_in_a_bbox_matches(conn, streets):
    bbox = (113.80, 34.00, 113.84, 34.03)
    result = uncovered_streets(conn, radius_m=400, kinds=None, mode="straight", bbox=bbox)
    clip = to_metric(shapely.box(*bbox).segmentize(0.001))
    total, covered = straight_reference(streets, centres_of(conn), 400, clip=clip)
    assert result["summary"]["total_km"] == pytest.approx(km(total), rel=1e-4)
    assert result["summary"]["covered_km"] == pytest.approx(km(covered), rel=CLOSE, abs=0.001)
    assert_consistent(result)
    # Every uncovered piece lies in the box.
    grown = shapely.box(*bbox).buffer(1e-6)
    assert all(grown.contains(shape(f["geometry"])) for f in result["features"])


def test_district_cuts_streets_to_its_outline(conn, streets):
    wkb = conn.execute(sa.text("SELECT ST_AsBinary(geom) FROM district WHERE code = '411002'")).scalar_one()
    outline = to_metric(shapely.from_wkb(bytes(wkb)))
    result = uncovered_streets(conn, radius_m=500, kinds=["toilet"], district="411002")
    total, covered = straight_reference(streets, centres_of(conn, ["toilet"]), 500, clip=outline)
    assert result["summary"]["total_km"] == pytest.approx(km(total), rel=1e-4)
    assert result["summary"]["covered_km"] == pytest.approx(km(covered), rel=CLOSE, abs=0.001)
    with pytest.raises(NotFound, match="411099"):
        uncovered_streets(conn, radius_m=500, kinds=None, district="411099")


def test_features_are_the_uncovered_portions(conn):
    result = uncovered_streets(conn, radius_m=500, kinds=None, mode="straight")
    names = dict(conn.execute(sa.text("SELECT id, name FROM street")).all())
    assert result["features"]
    for feature in result["features"][:300]:
        props = feature["properties"]
        geom = shape(feature["geometry"])
        assert geom.geom_type in ("LineString", "MultiLineString")
        assert GEOD.geometry_length(geom) == pytest.approx(props["length_m"], abs=0.5, rel=REL)
        assert props["length_m"] <= props["street_length_m"] + 0.1
        assert props["name"] == names[props["id"]] and feature["id"] == props["id"]


def test_only_open_points_count(conn):
    conn.execute(sa.text("UPDATE point SET status = 'closed' WHERE kind = 'toilet'"))
    for mode in ("straight", "walk"):
        s = uncovered_streets(conn, radius_m=300, kinds=["toilet"], mode=mode)["summary"]
        assert s["covered_km"] == 0 and s["uncovered_km"] == pytest.approx(s["total_km"], abs=0.001)
        assert s["covered_pct"] == 0


# -- walk --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kinds", "radius"), [(None, 500.0), (["toilet"], 300.0), (["kiosk", "parking"], 1500.0)])
def test_walking_covers_no_more_than_straight(conn, kinds, radius):
    walk = uncovered_streets(conn, radius_m=radius, kinds=kinds, mode="walk")["summary"]
    straight = uncovered_streets(conn, radius_m=radius, kinds=kinds, mode="straight")["summary"]
    assert walk["total_km"] == pytest.approx(straight["total_km"], rel=1e-6)
    assert walk["covered_km"] <= straight["covered_km"]
    assert walk["covered_km"] > 0


@pytest.mark.parametrize(("kinds", "radius"), [(None, 500.0), (None, 300.0), (["toilet"], 300.0)])
def test_walking_coverage_matches_networkx(conn, streets, kinds, radius):
    sources = [(lon, lat) for _, lon, lat, _ in open_points(conn, kinds)]
    reached = streets.reach(sources, radius)
    covered = sum(measure(v) * streets.edges[k].length for k, v in reached.items())
    total = sum(e.length for e in streets.edges.values())
    result = uncovered_streets(conn, radius_m=radius, kinds=kinds, mode="walk")
    assert result["summary"]["total_km"] == pytest.approx(km(total), rel=CLOSE, abs=0.001)
    assert result["summary"]["covered_km"] == pytest.approx(km(covered), rel=CLOSE, abs=0.001)
    assert_consistent(result)


def test_walking_coverage_in_a_bbox_matches_networkx(conn, streets):
    bbox = (113.81, 34.01, 113.83, 34.03)
    kinds = ["vendor_point", "toilet"]
    sources = [(lon, lat) for _, lon, lat, _ in open_points(conn, kinds)]
    reached = streets.reach(sources, 500)
    clip = to_metric(shapely.box(*bbox).segmentize(0.001))
    covered = 0.0
    for edge_id, intervals in reached.items():
        line = streets.edges[edge_id].line_m
        for a, b in intervals:
            piece = shapely.ops.substring(line, a, b, normalized=True)
            covered += piece.intersection(clip).length
    result = uncovered_streets(conn, radius_m=500, kinds=kinds, mode="walk", bbox=bbox)
    assert result["summary"]["covered_km"] == pytest.approx(km(covered), rel=CLOSE, abs=0.001)
    assert_consistent(result)


# -- the planted defect ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["straight", "walk"])
def test_the_planted_uncovered_corner_is_reported(conn, demo_city, mode):
    corner = next(d for d in demo_city.defects if d["type"] == "uncovered_streets")
    zone = corner["geom"]
    inside = uncovered_streets(conn, radius_m=500, kinds=None, mode=mode, bbox=zone.bounds)
    assert inside["summary"]["covered_km"] == 0
    reported = {r["name"] for r in inside["summary"]["uncovered_by_street"]}
    assert set(corner["streets"]) <= reported
    # In the whole city, every segment inside the corner is uncovered from end to end.
    city = uncovered_streets(conn, radius_m=500, kinds=None, mode=mode)
    uncovered = {f["id"]: f["properties"] for f in city["features"]}
    ids = conn.execute(sa.text("SELECT id FROM street WHERE ST_Within(geom, ST_GeomFromText(:w, 4326))"),
                       {"w": zone.wkt}).scalars().all()
    assert len(ids) > 20
    for street_id in ids:
        assert uncovered[street_id]["length_m"] == pytest.approx(uncovered[street_id]["street_length_m"], abs=0.1)
    city_names = {r["name"] for r in city["summary"]["uncovered_by_street"]}
    assert set(corner["streets"]) <= city_names


# -- properties --------------------------------------------------------------------------------------------

@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(radius=st.floats(min_value=30, max_value=3000),
       kinds=st.lists(st.sampled_from(KIND_CODES), max_size=3, unique=True),
       mode=st.sampled_from(query.MODES))
def test_covered_and_uncovered_add_up_to_the_total(conn, radius, kinds, mode):
    result = uncovered_streets(conn, radius_m=radius, kinds=kinds, mode=mode)
    assert result["summary"]["total_km"] == pytest.approx(718.23, rel=1e-3)
    assert_consistent(result)


# -- grids -------------------------------------------------------------------------------------------------

def test_grid_coverage_matches_shapely_and_is_weakest_first(conn, streets):
    grids = grid_coverage(conn, radius_m=500, kinds=None)
    assert len(grids) == 400
    pcts = [g["covered_pct"] for g in grids if g["covered_pct"] is not None]
    assert pcts == sorted(pcts)
    assert all(g["covered_pct"] is None for g in grids[len(pcts):])
    assert all((g["covered_pct"] is None) == (g["street_km"] == 0) for g in grids)
    rows = conn.execute(sa.text("SELECT code, ST_AsBinary(geom) FROM grid")).all()
    polygons = {code: to_metric(shapely.from_wkb(bytes(wkb))) for code, wkb in rows}
    tree = shapely.STRtree([e.line_m for e in streets.edges.values()])
    lines = [e.line_m for e in streets.edges.values()]
    centres = centres_of(conn)
    for g in grids[:: 8]:
        polygon = polygons[g["code"]]
        pieces = [lines[i].intersection(polygon) for i in tree.query(polygon, predicate="intersects")]
        assert g["street_km"] == pytest.approx(km(sum(p.length for p in pieces)), rel=1e-4, abs=1e-3)
        covered = sum(covered_on_line(p, centres, 500) for p in pieces if not p.is_empty)
        assert g["covered_km"] == pytest.approx(km(covered), rel=CLOSE, abs=0.001)
        assert g["covered_km"] + g["uncovered_km"] == pytest.approx(g["street_km"], abs=0.002)


def test_grid_points_by_kind_counts_open_points_inside(conn):
    grids = grid_coverage(conn, radius_m=300, kinds=["toilet", "kiosk"])
    rows = conn.execute(sa.text("SELECT code, ST_AsBinary(geom) FROM grid")).all()
    polygons = {code: shapely.from_wkb(bytes(wkb)) for code, wkb in rows}
    points = [(kind, shapely.Point(lon, lat)) for _, lon, lat, kind in open_points(conn, ("toilet", "kiosk"))]
    for g in grids:
        expected: dict[str, int] = {}
        for kind, p in points:
            if polygons[g["code"]].covers(p):
                expected[kind] = expected.get(kind, 0) + 1
        assert g["points_by_kind"] == expected, g["code"]


def test_grid_coverage_by_walking_is_below_straight(conn):
    straight = {g["code"]: g for g in grid_coverage(conn, radius_m=500, kinds=None, mode="straight")}
    walk = grid_coverage(conn, radius_m=500, kinds=None, mode="walk")
    assert sum(g["covered_km"] for g in walk) < sum(g["covered_km"] for g in straight.values())
    for g in walk:
        assert g["street_km"] == pytest.approx(straight[g["code"]]["street_km"], abs=0.001)


# -- bad arguments -----------------------------------------------------------------------------------------

ALL_KINDS = ", ".join(KIND_CODES)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kinds": ["bogus"]}, f"unknown kind 'bogus'; allowed kinds: {ALL_KINDS}"),
    ({"kinds": "toilet"}, "kinds must be a list"),
    ({"mode": "fly"}, "mode must be one of straight, walk"),
    ({"radius_m": 0}, "radius must be a number of metres > 0 and at most 10000"),
    ({"radius_m": -10}, "at most 10000"),
    ({"radius_m": 10001}, "at most 10000"),
    ({"radius_m": float("nan")}, "radius must be a number"),
    ({"radius_m": "500"}, "radius must be a number"),
    ({"bbox": (1, 2, 3)}, "bbox must be 4 numbers"),
    ({"bbox": (114, 34, 113, 35)}, "minlon ≤ maxlon"),
    ({"district": "4110"}, "district must be a 6-digit district code"),
    ({"metric_crs": "EPSG:0"}, "not known"),
])
def test_bad_arguments_say_what_is_allowed(conn, kwargs, message):
    args = {"radius_m": 500, "kinds": None, "mode": "straight", **kwargs}
    with pytest.raises(InvalidParameter, match=re.escape(message)):
        uncovered_streets(conn, **args)
    if "bbox" not in kwargs and "district" not in kwargs:
        with pytest.raises(InvalidParameter, match=re.escape(message)):
            grid_coverage(conn, **args)


def test_default_radius():
    assert query.default_radius_m(["toilet"]) == 300
    assert query.default_radius_m(["toilet", "toilet"]) == 300
    assert query.default_radius_m(["toilet", "kiosk"]) == 500
    assert query.default_radius_m(None) == 500
