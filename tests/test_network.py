"""The walking network against independent computations: networkx on the same street table, shapely, pyproj.

The reference (``StreetGraph``) reads the streets' geometries, measures them on the WGS 84 ellipsoid with pyproj,
snaps positions with shapely in the demo city's metric CRS (EPSG:4547) and splits edges at the snapped fractions
before running Dijkstra in networkx. It shares no code with ``geoservice.routing``, ``geoservice.service_area`` or
``geoservice.ingest.topology``.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from functools import partial
from itertools import pairwise

import networkx as nx
import numpy as np
import pytest
import shapely
import sqlalchemy as sa
from pyproj import Geod, Transformer
from shapely.geometry import LineString, Point, shape

from geoservice import routing, service_area
from geoservice.citygen import demo_spec
from geoservice.coverage_engine import engine_for
from geoservice.crs import metric_crs_for
from geoservice.errors import InvalidParameter, NotFound
from geoservice.ingest import topology
from geoservice.vocab import KIND_CODES

GEOD = Geod(ellps="WGS84")
# The demo city's metric CRS as the settings choose it (EPSG:4547); only the snapping of the reference uses it.
METRIC_CRS = metric_crs_for(*demo_spec().center)
TO_METRIC = Transformer.from_crs("EPSG:4326", METRIC_CRS, always_xy=True)
walk_routes = partial(routing.walk_routes, metric_crs=METRIC_CRS)
service_area_of = partial(service_area.service_area, metric_crs=METRIC_CRS)
rebuild_topology = partial(topology.rebuild_topology, metric_crs=METRIC_CRS)
TO_WGS84 = Transformer.from_crs(METRIC_CRS, "EPSG:4326", always_xy=True)
TOLERANCE_M = 0.5


def to_metric(geom):
    return shapely.transform(geom, lambda xy: np.column_stack(TO_METRIC.transform(xy[:, 0], xy[:, 1])))


def to_wgs84(geom):
    return shapely.transform(geom, lambda xy: np.column_stack(TO_WGS84.transform(xy[:, 0], xy[:, 1])))


def geodesic_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    return GEOD.inv(a[0], a[1], b[0], b[1])[2]


@dataclass(frozen=True)
class Edge:
    id: int
    source: int
    target: int
    length: float  # geodesic metres
    line: LineString  # WGS 84
    line_m: LineString  # metric CRS


class StreetGraph:
    """The street table as an independent reference: geodesic lengths, shapely snapping, networkx Dijkstra."""

    def __init__(self, conn) -> None:
        rows = conn.execute(sa.text("SELECT id, source, target, ST_AsBinary(geom) FROM street ORDER BY id")).all()
        lines = shapely.from_wkb([bytes(r[3]) for r in rows])
        lines_m = to_metric(lines)
        self.edges = {r[0]: Edge(r[0], r[1], r[2], GEOD.geometry_length(line), line, line_m)
                      for r, line, line_m in zip(rows, lines, lines_m, strict=True)}
        self.ids = np.array([r[0] for r in rows])
        self.tree = shapely.STRtree(lines_m)

    def snap(self, lon: float, lat: float) -> tuple[int, float, float]:
        """(edge id, fraction, offset metres) of the nearest edge in the metric CRS (ties: lowest id)."""
        p = to_metric(Point(lon, lat))
        found, distances = self.tree.query_nearest(p, all_matches=True, return_distance=True)
        best = min(zip(distances, self.ids[found], found, strict=True))
        line_m = self.edges[int(best[1])].line_m
        return int(best[1]), line_m.project(p, normalized=True), float(best[0])

    def position(self, edge_id: int, fraction: float) -> tuple[float, float]:
        """WGS 84 lon/lat of the place at ``fraction`` along an edge (metric CRS)."""
        p = to_wgs84(self.edges[edge_id].line_m.interpolate(fraction, normalized=True))
        return p.x, p.y

    def graph(self, placed: dict[Hashable, tuple[int, float]]) -> nx.MultiGraph:
        """The network with each placed (edge, fraction) inserted as a node, splitting its edge."""
        on_edge: dict[int, list[tuple[float, Hashable]]] = defaultdict(list)
        for name, (edge_id, fraction) in placed.items():
            on_edge[edge_id].append((fraction, name))
        g = nx.MultiGraph()
        for e in self.edges.values():
            chain = [(0.0, e.source), *sorted(on_edge.get(e.id, []), key=lambda t: t[0]), (1.0, e.target)]
            for (fa, a), (fb, b) in pairwise(chain):
                g.add_edge(a, b, key=(e.id, fa), weight=(fb - fa) * e.length, edge=e.id, fa=fa, fb=fb,
                           at_fa=a, at_fb=b)
        return g

    def walk_distances(self, spot: tuple[float, float], targets: Iterable[tuple[int, float, float]],
                       cutoff: float) -> dict[int, float]:
        """Network distance from the snapped spot to each snapped target, for those within ``cutoff``."""
        placed = {("spot",): self.snap(*spot)[:2]}
        for key, lon, lat in targets:
            placed[("target", key)] = self.snap(lon, lat)[:2]
        lengths = nx.single_source_dijkstra_path_length(self.graph(placed), ("spot",), cutoff=cutoff)
        return {name[1]: d for name, d in lengths.items() if isinstance(name, tuple) and name[0] == "target"}

    def reach(self, sources: Iterable[tuple[float, float]], radius: float) -> dict[int, list[tuple[float, float]]]:
        """Per edge, the fractions within ``radius`` of any source, walking from the source onto its street (the
        access leg counts) and then along the network."""
        snaps = {("source", n): self.snap(lon, lat) for n, (lon, lat) in enumerate(sources)}
        g = self.graph({key: snap[:2] for key, snap in snaps.items()})
        # One directed super-source joined to each source by its access leg: a walk cannot pass through it.
        walk = g.to_directed()
        walk.add_weighted_edges_from((("start", key, snap[2]) for key, snap in snaps.items()), weight="weight")
        dist = nx.single_source_dijkstra_path_length(walk, "start", cutoff=radius)
        reached: dict[int, list[tuple[float, float]]] = defaultdict(list)
        for _, _, data in g.edges(data=True):
            e = self.edges[data["edge"]]
            fa, fb = data["fa"], data["fb"]
            # networkx may hand the pair back in either order; the data says which end is where.
            start, end = data["at_fa"], data["at_fb"]
            piece = (fb - fa) * e.length
            for node, at_start in ((start, True), (end, False)):
                if node in dist and dist[node] < radius:
                    span = min(piece, radius - dist[node]) / e.length
                    reached[e.id].append((fa, fa + span) if at_start else (fb - span, fb))
        return {k: union(v) for k, v in reached.items()}


def union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1] + 1e-12:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def measure(intervals) -> float:
    return sum(b - a for a, b in intervals)


def overlap(x, y) -> float:
    return sum(max(0.0, min(b1, b2) - max(a1, a2)) for a1, b1 in x for a2, b2 in y)


@pytest.fixture()
def streets(conn) -> StreetGraph:
    return StreetGraph(conn)


def open_points(conn, kinds: tuple[str, ...] | None = None) -> list[tuple[int, float, float, str]]:
    rows = conn.execute(sa.text("SELECT id, ST_X(geom), ST_Y(geom), kind FROM point WHERE status = 'open' "
                                "ORDER BY id")).all()
    return [tuple(r) for r in rows if kinds is None or r[3] in kinds]


def assert_routes_match(routes: dict[int, routing.WalkRoute], expected: dict[int, float], limit: float) -> None:
    # Targets within half a metre of the limit may fall either way.
    clear = {k for k, d in expected.items() if d < limit - TOLERANCE_M}
    assert clear <= set(routes)
    assert set(routes) <= set(expected)
    for key, route in routes.items():
        assert route.distance_m == pytest.approx(expected[key], abs=TOLERANCE_M, rel=1e-3), key
        assert route.minutes == pytest.approx(route.distance_m / 75.0)


# -- walking routes ----------------------------------------------------------------------------------------

HAND_PICKED_SPOTS = [
    (113.826, 34.026),  # the city centre
    (113.8031, 34.0102),
    (113.8500, 34.0400),
    (113.7900, 33.9950),  # the south-west corner, far from points
]


@pytest.mark.parametrize("spot", HAND_PICKED_SPOTS)
def test_walk_distances_match_networkx(conn, streets, spot):
    targets = [(pid, lon, lat) for pid, lon, lat, _ in open_points(conn)][::4]
    routes = walk_routes(conn, lon=spot[0], lat=spot[1], targets=targets, max_distance_m=3000)
    expected = streets.walk_distances(spot, targets, cutoff=3000 + 10)
    assert_routes_match(routes, expected, 3000)
    assert routes or spot == (113.7900, 33.9950)


def test_walk_distances_match_networkx_at_random_spots(conn, streets):
    rng = random.Random(20230715)
    minx, miny, maxx, maxy = conn.execute(sa.text(
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) AS e FROM street) x"
    )).one()
    points = [(pid, lon, lat) for pid, lon, lat, _ in open_points(conn)]
    for _ in range(8):
        spot = (rng.uniform(minx, maxx), rng.uniform(miny, maxy))
        targets = rng.sample(points, 15)
        limit = rng.uniform(800, 4000)
        routes = walk_routes(conn, lon=spot[0], lat=spot[1], targets=targets, max_distance_m=limit)
        assert_routes_match(routes, streets.walk_distances(spot, targets, cutoff=limit + 10), limit)


def test_route_geometry_runs_along_the_streets_between_the_snapped_positions(conn, streets):
    spot = (113.826, 34.026)
    targets = [(pid, lon, lat) for pid, lon, lat, _ in open_points(conn)][:40]
    routes = walk_routes(conn, lon=spot[0], lat=spot[1], targets=targets, max_distance_m=4000)
    assert len(routes) >= 5
    start = streets.position(*streets.snap(*spot)[:2])
    by_id = {t[0]: t for t in targets}
    for key, route in routes.items():
        line = shape(route.geometry)
        assert route.geometry["type"] == "LineString"
        end = streets.position(*streets.snap(*by_id[key][1:])[:2])
        assert geodesic_m(line.coords[0], start) < TOLERANCE_M
        assert geodesic_m(line.coords[-1], end) < TOLERANCE_M
        assert GEOD.geometry_length(line) == pytest.approx(route.distance_m, abs=1.0, rel=1e-3)
        # Every vertex of the route lies on a street.
        for x, y in line.coords:
            assert streets.snap(x, y)[2] < 0.05


def offset_position(streets: StreetGraph, edge_id: int, fraction: float, metres: float) -> tuple[float, float]:
    """A place ``metres`` to the left of an edge at ``fraction`` (metric CRS), in lon/lat."""
    line = streets.edges[edge_id].line_m
    p = line.interpolate(fraction, normalized=True)
    q = line.interpolate(min(1.0, fraction + 0.01), normalized=True)
    dx, dy = q.x - p.x, q.y - p.y
    norm = math.hypot(dx, dy)
    shifted = to_wgs84(Point(p.x - metres * dy / norm, p.y + metres * dx / norm))
    return shifted.x, shifted.y


def two_adjacent_edges(streets: StreetGraph) -> tuple[Edge, Edge]:
    """Two straight edges A = (u, v) and B = (v, w), both over 150 m, sharing v."""
    by_node: dict[int, list[Edge]] = defaultdict(list)
    for e in streets.edges.values():
        by_node[e.source].append(e)
        by_node[e.target].append(e)
    for a in sorted(streets.edges.values(), key=lambda e: e.id):
        if a.length < 150:
            continue
        for b in by_node[a.target]:
            if b.id != a.id and b.length > 150 and b.source == a.target:
                return a, b
    raise AssertionError("the demo city has no two adjacent long edges")


def test_spot_snaps_at_its_fraction_not_to_the_nearest_vertex(conn, streets):
    a, b = two_adjacent_edges(streets)
    # The spot is nearer A's start u, the target nearer B's end w: snapping to vertices would give the whole
    # u → v → w walk, 45 % longer on each edge than the walk between the snapped positions.
    spot = offset_position(streets, a.id, 0.45, 5.0)
    target = offset_position(streets, b.id, 0.55, -5.0)
    assert streets.snap(*spot)[0] == a.id and streets.snap(*target)[0] == b.id
    routes = walk_routes(conn, lon=spot[0], lat=spot[1], targets=[(7, *target)], max_distance_m=2000)
    at_fraction = 0.55 * a.length + 0.55 * b.length
    at_vertices = a.length + b.length
    assert routes[7].distance_m == pytest.approx(at_fraction, abs=TOLERANCE_M)
    assert at_vertices - routes[7].distance_m > 100


def test_spot_and_target_on_the_same_edge_walk_along_it(conn, streets):
    a, _ = two_adjacent_edges(streets)
    spot = offset_position(streets, a.id, 0.3, 6.0)
    target = offset_position(streets, a.id, 0.8, -6.0)
    routes = walk_routes(conn, lon=spot[0], lat=spot[1], targets=[(1, *target), (2, *spot)],
                                 max_distance_m=1000)
    assert routes[1].distance_m == pytest.approx(0.5 * a.length, abs=TOLERANCE_M)
    line = shape(routes[1].geometry)
    assert GEOD.geometry_length(line) == pytest.approx(0.5 * a.length, abs=TOLERANCE_M)
    # A target snapping where the spot does is reached at once.
    assert routes[2].distance_m == pytest.approx(0.0, abs=1e-6)
    assert routes[2].minutes == pytest.approx(0.0, abs=1e-6)
    assert routes[2].geometry["type"] == "LineString"


def test_targets_beyond_the_limit_are_left_out(conn, streets):
    spot = (113.826, 34.026)
    targets = [(pid, lon, lat) for pid, lon, lat, _ in open_points(conn)]
    expected = streets.walk_distances(spot, targets, cutoff=800)
    routes = walk_routes(conn, lon=spot[0], lat=spot[1], targets=targets, max_distance_m=800)
    assert_routes_match(routes, expected, 800)
    assert len(routes) < len(targets)
    far = walk_routes(conn, lon=spot[0], lat=spot[1], targets=[(1, 113.60, 34.00)], max_distance_m=5000)
    assert far == {}
    assert walk_routes(conn, lon=spot[0], lat=spot[1], targets=[], max_distance_m=5000) == {}


# -- reachable street portions -----------------------------------------------------------------------------

@pytest.mark.parametrize(("kinds", "radius"), [
    (None, 500.0),  # many sources with overlapping reach: pgr_withPointsDD's equicost got some nodes wrong here
    (("kiosk", "toilet"), 650.0),
    (("vendor_point",), 300.0),
    (("rest_station",), 2500.0),
])
def test_reachable_portions_of_the_whole_city_match_networkx(conn, streets, kinds, radius):
    """The coverage engine's walking reach, edge by edge (``geoservice.coverage_engine``)."""
    sources = [(lon, lat) for _, lon, lat, _ in open_points(conn, kinds)]
    engine = engine_for(conn, metric_crs=METRIC_CRS)
    starts, ends = engine.walk_covered(kinds or KIND_CODES, radius)
    got: dict[int, list[tuple[float, float]]] = {}
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        street = int(a // 2)
        got.setdefault(int(engine.street_ids[street]), []).append((a - 2 * street, b - 2 * street))
    expected = streets.reach(sources, radius)
    assert set(got) == set(expected)
    total_got = sum(measure(v) * streets.edges[k].length for k, v in got.items())
    total_ref = sum(measure(v) * streets.edges[k].length for k, v in expected.items())
    assert total_got == pytest.approx(total_ref, rel=1e-6)
    for edge_id, ref in expected.items():
        length = streets.edges[edge_id].length
        assert measure(got[edge_id]) * length == pytest.approx(measure(ref) * length, abs=TOLERANCE_M), edge_id
        assert overlap(got[edge_id], ref) * length == pytest.approx(measure(ref) * length, abs=TOLERANCE_M), edge_id


# -- service areas -----------------------------------------------------------------------------------------

def point_row(conn, point_id: int) -> tuple[float, float]:
    return tuple(conn.execute(sa.text("SELECT ST_X(geom), ST_Y(geom) FROM point WHERE id = :i"),
                              {"i": point_id}).one())


@pytest.mark.parametrize("radius", [300.0, 500.0, 1200.0])
def test_straight_service_area_is_the_geodesic_circle(conn, radius):
    feature = service_area_of(conn, point_id=1, radius_m=radius, mode="straight")
    polygon = shape(feature["geometry"])
    area, _ = GEOD.geometry_area_perimeter(polygon)
    assert abs(area) == pytest.approx(math.pi * radius**2, rel=0.01)
    assert feature["properties"]["area_m2"] == pytest.approx(math.pi * radius**2, rel=0.01)
    centre = point_row(conn, 1)
    for x, y in polygon.exterior.coords:
        assert geodesic_m(centre, (x, y)) == pytest.approx(radius, abs=0.05)
    assert feature["properties"]["mode"] == "straight" and feature["id"] == 1


@pytest.mark.parametrize("point_id", [1, 2, 10, 60])
def test_walking_service_area_holds_the_reachable_streets_and_stays_in_the_circle(conn, streets, point_id):
    radius = 500.0
    feature = service_area_of(conn, point_id=point_id, radius_m=radius, mode="walk")
    polygon = shape(feature["geometry"])
    centre = point_row(conn, point_id)
    assert polygon.contains(Point(centre))
    _, _, offset = streets.snap(*centre)
    band = service_area.SERVICE_AREA_BUFFER_M
    for ring in [polygon.exterior] if polygon.geom_type == "Polygon" else [p.exterior for p in polygon.geoms]:
        for x, y in ring.coords:
            assert geodesic_m(centre, (x, y)) <= radius + offset + band + 1.0
    # Every place the reference reaches lies inside the area.
    for edge_id, intervals in streets.reach([centre], radius).items():
        for a, b in intervals:
            for f in (a, (a + b) / 2, b):
                assert polygon.contains(Point(streets.position(edge_id, f))), (edge_id, f)
    area, _ = GEOD.geometry_area_perimeter(polygon)
    assert 0 < abs(area) < math.pi * (radius + band) ** 2
    assert abs(area) == pytest.approx(feature["properties"]["area_m2"], rel=0.01)


def test_service_area_of_a_missing_point_is_not_found(conn):
    with pytest.raises(NotFound, match="999999"):
        service_area_of(conn, point_id=999999, radius_m=500, mode="walk")


# -- topology ----------------------------------------------------------------------------------------------

def test_rebuild_topology_reproduces_the_generators_connectivity(conn):
    before = conn.execute(sa.text("SELECT id, source, target FROM street ORDER BY id")).all()
    counts = rebuild_topology(conn)
    after = conn.execute(sa.text("SELECT id, source, target FROM street ORDER BY id")).all()
    old_to_new: dict[int, int] = {}
    new_to_old: dict[int, int] = {}
    for (i, s0, t0), (j, s1, t1) in zip(before, after, strict=True):
        assert i == j
        for old, new in ((s0, s1), (t0, t1)):
            assert old_to_new.setdefault(old, new) == new
            assert new_to_old.setdefault(new, old) == old
    assert counts["nodes"] == len(old_to_new) == len({n for _, s, t in before for n in (s, t)})
    assert counts["edges"] == len(before)
    assert counts["components"] == 1 and counts["loops"] == 0
    degree = defaultdict(int)
    for _, s, t in before:
        degree[s] += 1
        degree[t] += 1
    assert counts["dead_ends"] == sum(1 for d in degree.values() if d == 1)
    # Ids follow positions, so a second run changes nothing.
    assert rebuild_topology(conn)["changed"] == 0


def insert_street(conn, name: str, coords: list[tuple[float, float]]) -> int:
    return conn.execute(sa.text("INSERT INTO street (name, class, geom) VALUES (:n, 'residential', "
                                "ST_GeomFromText(:w, 4326)) RETURNING id"),
                        {"n": name, "w": LineString(coords).wkt}).scalar_one()


def test_rebuild_topology_joins_endpoints_within_the_tolerance(conn):
    # A lane whose end stops 0.3 m short (east) of an existing lane's end: one node at 0.5 m, two at 0.1 m.
    insert_street(conn, "测试甲路", [(113.600, 34.000), (113.601, 34.000)])
    gap = 0.3 / (111_320 * math.cos(math.radians(34.0)))
    insert_street(conn, "测试乙路", [(113.601 + gap, 34.000), (113.602, 34.001)])
    rebuild_topology(conn, tolerance_m=0.5)
    ends = dict(conn.execute(sa.text("SELECT name, ARRAY[source, target] FROM street WHERE name LIKE '测试%'")).all())
    assert ends["测试甲路"][1] == ends["测试乙路"][0]
    rebuild_topology(conn, tolerance_m=0.1)
    ends = dict(conn.execute(sa.text("SELECT name, ARRAY[source, target] FROM street WHERE name LIKE '测试%'")).all())
    assert ends["测试甲路"][1] != ends["测试乙路"][0]


def test_split_at_intersections_nodes_crossing_and_touching_lines(conn):
    assert topology.split_at_intersections(conn) == 0  # the demo city is noded already
    west, east = (113.600, 34.000), (113.604, 34.000)
    south, north = (113.602, 33.998), (113.602, 34.002)
    insert_street(conn, "测试东西路", [west, east])
    insert_street(conn, "测试南北路", [south, north])
    insert_street(conn, "测试丁字巷", [(113.601, 34.000), (113.601, 33.999)])  # ends on the middle of 东西路
    lengths_before = dict(conn.execute(sa.text(
        "SELECT name, sum(length_m) FROM street WHERE name LIKE '测试%' GROUP BY name")).all())
    assert topology.split_at_intersections(conn) == 3
    pieces = dict(conn.execute(sa.text(
        "SELECT name, count(*) FROM street WHERE name LIKE '测试%' GROUP BY name")).all())
    assert pieces == {"测试东西路": 3, "测试南北路": 2, "测试丁字巷": 1}
    lengths_after = dict(conn.execute(sa.text(
        "SELECT name, sum(length_m) FROM street WHERE name LIKE '测试%' GROUP BY name")).all())
    for name, length in lengths_before.items():
        assert lengths_after[name] == pytest.approx(length, abs=1e-3)
    assert topology.split_at_intersections(conn) == 0
    # Until the topology is rebuilt the split streets are not routable, and nothing snaps onto them.
    snapped = routing.snap_points(conn, [(1, *west), (2, *north)], srid=4547)
    names = conn.execute(sa.text("SELECT name FROM street WHERE id = ANY(:ids)"),
                         {"ids": [s.edge_id for s in snapped.values()]}).scalars().all()
    assert names and not any(name.startswith("测试") for name in names)
    rebuild_topology(conn)
    degree = dict(conn.execute(sa.text("""
        SELECT node, count(*) FROM (SELECT source AS node FROM street WHERE name LIKE '测试%'
                                    UNION ALL SELECT target FROM street WHERE name LIKE '测试%') AS ends
        GROUP BY node""")).all())
    assert sorted(degree.values()) == [1, 1, 1, 1, 1, 3, 4]
    # The crossing is walkable now: west end → crossing → north end.
    routes = walk_routes(conn, lon=west[0], lat=west[1], targets=[(1, *north)], max_distance_m=2000)
    expected = geodesic_m(west, (113.602, 34.000)) + geodesic_m((113.602, 34.000), north)
    assert routes[1].distance_m == pytest.approx(expected, abs=TOLERANCE_M)


# -- bad arguments -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("call", "message"), [
    (lambda c: walk_routes(c, lon=200, lat=34, targets=[], max_distance_m=100), "lon must be between"),
    (lambda c: walk_routes(c, lon=113.8, lat=95, targets=[], max_distance_m=100), "lat must be between"),
    (lambda c: walk_routes(c, lon=113.8, lat=34, targets=[], max_distance_m=0),
     "max_distance_m must be a number of metres > 0 and at most 100000"),
    (lambda c: walk_routes(c, lon=113.8, lat=34, targets=[], max_distance_m=float("nan")),
     "max_distance_m must be a number"),
    (lambda c: walk_routes(c, lon=113.8, lat=34, targets=[(1, 113.8, 34), (1, 113.9, 34)],
                                   max_distance_m=100), "unique"),
    (lambda c: walk_routes(c, lon=113.8, lat=34, targets=[(1, 113.8)], max_distance_m=100),
     r"\(id, lon, lat\)"),
    (lambda c: walk_routes(c, lon=113.8, lat=34, targets=[], max_distance_m=100, metric_crs="EPSG:999999"),
     "not known"),
    (lambda c: walk_routes(c, lon=113.8, lat=34, targets=[], max_distance_m=100, metric_crs="utm"),
     "EPSG:<code>"),
    (lambda c: service_area_of(c, point_id=1, radius_m=500, mode="drive"), "mode must be one of straight, walk"),
    (lambda c: service_area_of(c, point_id=1, radius_m=0, mode="walk"),
     "radius must be a number of metres > 0 and at most 10000"),
    (lambda c: service_area_of(c, point_id=1, radius_m=20000, mode="walk"), "at most 10000"),
    (lambda c: rebuild_topology(c, tolerance_m=-1), "tolerance_m must be a number of metres between 0"),
    (lambda c: topology.split_at_intersections(c, tolerance_m=1000), "between 0 and 100"),
])
def test_bad_arguments_say_what_is_allowed(conn, call, message):
    with pytest.raises(InvalidParameter, match=message):
        call(conn)
