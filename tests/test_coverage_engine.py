"""The coverage engine's new answers against independent computations.

The curve, per-area coverage and the distance distribution are recomputed without the engine: exact segment–circle
stretches per street in shapely + pyproj (``tests.test_coverage.straight_reference``), walking reach with networkx
(``tests.test_network.StreetGraph``), area pieces by shapely intersection. The interval algebra is checked against
brute force on a fine grid of positions; the snapping of points against PostGIS (``geoservice.routing``).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import shapely
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import shape

from geoservice import coverage, routing
from geoservice.coverage_engine import complement, engine_for, intersect, merge
from geoservice.errors import InvalidParameter
from geoservice.spatial import metric_srid
from tests.test_coverage import CLOSE, centres_of, covered_on_line, km, straight_reference
from tests.test_network import METRIC_CRS, StreetGraph, measure, open_points, to_metric

coverage_curve = partial(coverage.coverage_curve, metric_crs=METRIC_CRS)
coverage_by_area = partial(coverage.coverage_by_area, metric_crs=METRIC_CRS)
distance_distribution = partial(coverage.distance_distribution, metric_crs=METRIC_CRS)
uncovered_streets = partial(coverage.uncovered_streets, metric_crs=METRIC_CRS)
grid_coverage = partial(coverage.grid_coverage, metric_crs=METRIC_CRS)


@pytest.fixture()
def streets(conn) -> StreetGraph:
    return StreetGraph(conn)


# -- interval algebra ----------------------------------------------------------------------------------------

intervals = st.lists(st.tuples(st.integers(0, 3), st.floats(0, 1), st.floats(0, 1)), max_size=12)


def as_axis(items) -> tuple[np.ndarray, np.ndarray]:
    starts = np.array([2.0 * s + min(a, b) for s, a, b in items])
    ends = np.array([2.0 * s + max(a, b) for s, a, b in items])
    return starts, ends


def sampled(x: tuple[np.ndarray, np.ndarray], grid: np.ndarray) -> np.ndarray:
    starts, ends = x
    return ((grid[:, None] >= starts[None, :]) & (grid[:, None] <= ends[None, :])).any(axis=1)


GRID = np.array([2.0 * s + f for s in range(4) for f in np.linspace(0.0005, 0.9995, 1000)])


@settings(max_examples=60, deadline=None)
@given(intervals, intervals)
def test_interval_algebra_agrees_with_brute_force(x, y):
    xs = as_axis(x)
    merged = merge(*xs)
    assert np.all(merged[0][1:] > merged[1][:-1])  # sorted and disjoint
    assert np.array_equal(sampled(merged, GRID), sampled(xs, GRID))
    gaps = complement(merged, 4)
    assert not np.any(sampled(gaps, GRID) & sampled(merged, GRID) & ~np.isin(GRID, np.r_[gaps[0], gaps[1]]))
    assert np.all(sampled(gaps, GRID) | sampled(merged, GRID))
    ys = merge(*as_axis(y))
    _, a, b = intersect(xs, ys)
    assert np.array_equal(sampled((a, b), GRID), sampled(xs, GRID) & sampled(ys, GRID))


# -- the curve and the distances --------------------------------------------------------------------------------

def test_curve_matches_exact_circles_and_the_streets_answer(conn, streets):
    kinds = ["vendor_point", "toilet"]
    centres = centres_of(conn, tuple(kinds))
    curve = coverage_curve(conn, kinds=kinds, radii=[100, 250, 600])
    assert [c["radius_m"] for c in curve["curve"]] == [100.0, 250.0, 600.0]
    for point in curve["curve"]:
        total, covered = straight_reference(streets, centres, point["radius_m"])
        assert curve["total_km"] == pytest.approx(km(total), rel=CLOSE)
        assert point["covered_km"] == pytest.approx(km(covered), rel=CLOSE, abs=0.001)
        summary = uncovered_streets(conn, radius_m=point["radius_m"], kinds=kinds)["summary"]
        assert point["covered_pct"] == summary["covered_pct"]
    pcts = [c["covered_pct"] for c in coverage_curve(conn)["curve"]]
    assert len(pcts) == 20 and pcts == sorted(pcts)


def test_walking_curve_matches_networkx(conn, streets):
    sources = [(lon, lat) for _, lon, lat, _ in open_points(conn, ("kiosk", "rest_station"))]
    curve = coverage_curve(conn, kinds=["kiosk", "rest_station"], mode="walk", radii=[300, 800])
    for point in curve["curve"]:
        reached = streets.reach(sources, point["radius_m"])
        covered = sum(measure(v) * streets.edges[k].length for k, v in reached.items())
        assert point["covered_km"] == pytest.approx(km(covered), rel=CLOSE, abs=0.001)


def test_distance_bins_are_the_street_length_at_each_distance(conn, streets):
    kinds = ("toilet",)
    answer = distance_distribution(conn, kinds=list(kinds), edges=[0, 100, 300, 700])
    assert [(b["from_m"], b["to_m"]) for b in answer["bins"]] == [(0, 100), (100, 300), (300, 700)]
    centres = centres_of(conn, kinds)
    within = [0.0] + [straight_reference(streets, centres, r)[1] for r in (100, 300, 700)]
    for b, lo, hi in zip(answer["bins"], within[:-1], within[1:], strict=True):
        assert b["km"] == pytest.approx(km(hi - lo), rel=CLOSE, abs=0.002)
    assert sum(b["km"] for b in answer["bins"]) + answer["beyond_km"] == pytest.approx(answer["total_km"], abs=0.005)


# -- per area ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("level", ["subdistrict", "community"])
def test_area_coverage_matches_shapely(conn, streets, level):
    areas = coverage_by_area(conn, level=level, radius_m=400, kinds=["vendor_point"])
    rows = conn.execute(sa.text(f"SELECT code, name, ST_AsBinary(geom) FROM {level} WHERE geom IS NOT NULL")).all()
    assert sorted(a["code"] for a in areas) == sorted(r[0] for r in rows)
    pcts = [a["covered_pct"] for a in areas if a["covered_pct"] is not None]
    assert pcts == sorted(pcts)
    lines = [e.line_m for e in streets.edges.values()]
    tree = shapely.STRtree(lines)
    centres = centres_of(conn, ("vendor_point",))
    answers = {a["code"]: a for a in areas}
    for code, _, wkb in rows[:: max(1, len(rows) // 6)]:
        polygon = to_metric(shapely.from_wkb(bytes(wkb)))
        pieces = [lines[i].intersection(polygon) for i in tree.query(polygon, predicate="intersects")]
        assert answers[code]["street_km"] == pytest.approx(km(sum(p.length for p in pieces)), rel=1e-4, abs=1e-3)
        covered = sum(covered_on_line(p, centres, 400) for p in pieces if not p.is_empty)
        assert answers[code]["covered_km"] == pytest.approx(km(covered), rel=CLOSE, abs=0.001)


# -- what if: planned points ----------------------------------------------------------------------------------

def test_planned_points_count_only_in_what_if(conn, streets):
    before = uncovered_streets(conn, radius_m=300, kinds=["toilet"])
    worst = max(before["features"], key=lambda f: f["properties"]["length_m"])
    lon, lat = shape(worst["geometry"]).representative_point().coords[0]
    conn.execute(sa.text("INSERT INTO point (name, kind, status, geom) VALUES ('规划公厕', 'toilet', 'planned', "
                         "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))"), {"lon": lon, "lat": lat})
    assert uncovered_streets(conn, radius_m=300, kinds=["toilet"])["summary"] == before["summary"]
    what_if = uncovered_streets(conn, radius_m=300, kinds=["toilet"], include_planned=True)["summary"]
    centres = np.vstack([centres_of(conn, ("toilet",)), np.array(to_metric(shapely.Point(lon, lat)).coords)])
    total, covered = straight_reference(streets, centres, 300)
    assert what_if["covered_km"] == pytest.approx(km(covered), rel=CLOSE, abs=0.001)
    assert what_if["covered_km"] > before["summary"]["covered_km"]
    grids = {g["code"]: g for g in grid_coverage(conn, radius_m=300, kinds=["toilet"], include_planned=True)}
    holder = conn.execute(sa.text("SELECT code FROM grid WHERE ST_Covers(geom, ST_SetSRID(ST_MakePoint(:lon, :lat), "
                                  "4326))"), {"lon": lon, "lat": lat}).scalars().all()
    for code in holder:
        assert grids[code]["points_by_kind"].get("toilet", 0) >= 1


def test_a_change_in_the_transaction_is_seen_at_once(conn):
    before = uncovered_streets(conn, radius_m=200, kinds=["job_board"])["summary"]
    conn.execute(sa.text("UPDATE point SET status = 'closed' WHERE kind = 'job_board'"))
    after = uncovered_streets(conn, radius_m=200, kinds=["job_board"])["summary"]
    assert before["covered_km"] > 0 and after["covered_km"] == 0


# -- the engine's snapping agrees with PostGIS ---------------------------------------------------------------------

def test_points_snap_where_postgis_snaps_them(conn):
    engine = engine_for(conn, metric_crs=METRIC_CRS)
    net = engine._network
    rows = conn.execute(sa.text("SELECT id, ST_X(geom), ST_Y(geom) FROM point ORDER BY id LIMIT 300")).all()
    snaps = routing.snap_points(conn, [tuple(r) for r in rows], srid=metric_srid(conn, METRIC_CRS))
    index = {pid: k for k, pid in enumerate(engine.point_ids.tolist())}
    for pid, snap in snaps.items():
        k = index[pid]
        street = engine.street_ids[net["routable"][net["edge"][k]]]
        assert net["offset_m"][k] == pytest.approx(snap.offset_m, abs=0.01)
        if street == snap.edge_id:
            assert net["fraction"][k] == pytest.approx(snap.fraction, abs=1e-6)
        else:  # a tie between two edges at the same distance (a point at a junction)
            assert net["offset_m"][k] == pytest.approx(snap.offset_m, abs=1e-6)


@pytest.mark.parametrize(("call", "kwargs", "message"), [
    (coverage_by_area, {"level": "province"}, "level must be one of subdistrict, community"),
    (coverage_curve, {"radii": [0]}, "radius must be a number of metres > 0"),
    (coverage_curve, {"radii": list(range(1, 50))}, "at most 40 times"),
    (distance_distribution, {"edges": [0, -5]}, "radius must be a number of metres > 0"),
    (coverage_curve, {"mode": "swim"}, "mode must be one of straight, walk"),
])
def test_bad_arguments_say_what_is_allowed(conn, call, kwargs, message):
    with pytest.raises(InvalidParameter, match=message):
        call(conn, **kwargs)


@pytest.mark.parametrize("bbox", [(113.82, 34.0, 113.82, 34.05), (113.8, 34.02, 113.85, 34.02)])
def test_a_box_without_width_or_height_holds_no_street(conn, bbox):
    summary = uncovered_streets(conn, radius_m=300, bbox=bbox)["summary"]
    assert summary["total_km"] == 0 and summary["covered_pct"] is None


def test_each_sites_walking_reach_matches_networkx(conn, streets):
    """What siting counts for a candidate on foot: its own reach, searched on the neighbourhood's graph only."""
    engine = engine_for(conn, metric_crs=METRIC_CRS)
    middles = engine.street_midpoints()
    rng = np.random.default_rng(11)
    chosen = rng.choice(len(middles["lon"]), size=12, replace=False)
    sites = np.column_stack([middles["lon"][chosen] + rng.normal(0, 2e-4, 12),
                             middles["lat"][chosen] + rng.normal(0, 2e-4, 12)])
    site, (starts, ends) = engine.site_spans(mode="walk", radius=400.0, sites_lonlat=sites)
    for k, (lon, lat) in enumerate(sites):
        mine = merge(starts[site == k], ends[site == k])
        got = sum(((b - a) * streets.edges[int(engine.street_ids[int(a // 2)])].length
                   for a, b in zip(*mine, strict=True)), 0.0)
        reached = streets.reach([(lon, lat)], 400.0)
        expected = sum(measure(v) * streets.edges[e].length for e, v in reached.items())
        assert got == pytest.approx(expected, rel=CLOSE, abs=0.5), k
