"""The walking network: street topology, walking routes, what is reachable on foot, service areas (pgRouting).

The street table is the graph: every row is an undirected edge between the routing nodes ``source`` and
``target``, costing its geodesic length ``length_m`` in either direction (people walk both ways along one-way
streets).

Topology. ``source``/``target`` are derived from the geometries by :func:`rebuild_topology`, which **must run after
streets change** (the importer and the CLI call it after loading or editing streets; the demo generator writes
them itself). Imported data whose segments cross without sharing a vertex is made routable first by
:func:`split_at_intersections`.

Snapping (DESIGN.md, "Semantics of the queries"). A spot is snapped onto its nearest street edge (nearest in
metres) at its *fraction* along that edge — the position of the foot of the perpendicular, found with
``ST_LineLocatePoint`` in the metric CRS — never onto the nearest vertex. Points of interest are snapped the same
way. The walking distance is the network distance between the two snapped positions; the short walk from the spot
to the street is not counted. Network distances use pgRouting's *with points* functions, where a snapped position
is a point ``(pid, edge_id, fraction)`` and is referred to by the negative id ``-pid``.

Reachable portions. A street edge (u, v) of length L, reached at u at network distance du and at v at dv, is
reachable within r on [0, r - du] from u and on [L - (r - dv), L] from v, plus the stretch within r of any source
lying on the edge itself. All sources are searched together by one ``pgr_drivingDistance`` from a virtual
super-source joined to both ends of each source's edge.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geoservice.errors import InvalidParameter, NotFound

WALK_SPEED_M_PER_MIN = 75.0
"""Walking speed: 4.5 km/h, an unhurried adult pace."""
DEFAULT_METRIC_CRS = "EPSG:4547"
MODES = ("straight", "walk")
MAX_WALK_DISTANCE_M = 100_000.0
MAX_RADIUS_M = 10_000.0
SERVICE_AREA_BUFFER_M = 25.0
"""Half-width of the band drawn around reachable streets in a walking service area (a street and its pavements)."""
CIRCLE_VERTICES = 128
"""Vertices of a geodesic circle; the polygon's area is within 0.05 % of the circle's."""

# pgRouting 3.4 drops points whose fraction is exactly 0 or 1 (they coincide with a vertex); nudging them inward
# by 1e-9 of the edge moves them by well under a millimetre.
_FRACTION_EPS = 1e-9
# Margin added to every search box, in metres: rounding of degrees, the ellipsoid's curvature.
_BOX_MARGIN_M = 10.0

BBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class WalkRoute:
    """A walking route from the snapped spot to a snapped target.

    Attributes:
        distance_m: network distance in metres between the two snapped positions.
        minutes: walking time at :data:`WALK_SPEED_M_PER_MIN`.
        geometry: GeoJSON LineString (WGS 84 lon/lat) along the streets, from the spot's snapped position to the
            target's.
        spot_offset_m: metres from the spot to its snapped position (not part of ``distance_m``).
        target_offset_m: metres from the target's snapped position to the target (not part of ``distance_m``).
    """

    distance_m: float
    minutes: float
    geometry: dict
    spot_offset_m: float = 0.0
    target_offset_m: float = 0.0


@dataclass(frozen=True)
class Snap:
    """Where a position lies on the street network.

    Attributes:
        key: the caller's id of the position.
        edge_id: the street edge it was snapped onto (its nearest, in metres).
        fraction: position along the edge from its first vertex, 0..1 (by length in the metric CRS).
        source: routing node at fraction 0.
        target: routing node at fraction 1.
        length_m: the edge's length.
        offset_m: distance from the position to the edge (not part of any walking distance).
        inside: whether the edge touches the search box the snap was made for (always True without one).
    """

    key: int
    edge_id: int
    fraction: float
    source: int
    target: int
    length_m: float
    offset_m: float
    inside: bool = True


# -- helpers -----------------------------------------------------------------------------------------------

def metric_srid(conn: Connection, metric_crs: str) -> int:
    """The SRID of ``metric_crs`` ("EPSG:<code>"), checked against the database's ``spatial_ref_sys``.

    Raises:
        InvalidParameter: not of the form EPSG:<code>, or unknown to PostGIS.
    """
    authority, _, code = metric_crs.partition(":") if isinstance(metric_crs, str) else ("", "", "")
    if authority.upper() != "EPSG" or not code.isdigit():
        raise InvalidParameter(f"metric_crs must be EPSG:<code> of a projected CRS in metres, got {metric_crs!r}")
    found = conn.execute(sa.text("SELECT srid FROM spatial_ref_sys WHERE auth_name = 'EPSG' AND auth_srid = :c"),
                         {"c": int(code)}).scalar()
    if found is None:
        raise InvalidParameter(f"metric_crs {metric_crs!r} is not known to PostGIS (spatial_ref_sys)")
    return int(found)


@contextmanager
def without_jit(conn: Connection) -> Iterator[None]:
    """Run the enclosed queries with PostgreSQL's JIT compiler off, then restore the setting.

    PostGIS and pgRouting functions declare high planner costs, so their queries pass ``jit_above_cost`` although
    they run in well under a second; compiling them would add a few hundred milliseconds to each. The setting is
    changed for the current transaction only (``set_config(..., true)``) and put back afterwards; if a query fails,
    the caller's rollback restores it.
    """
    previous = conn.execute(sa.text("SELECT current_setting('jit')")).scalar_one()
    conn.execute(sa.text("SELECT set_config('jit', 'off', true)"))
    yield
    conn.execute(sa.text("SELECT set_config('jit', :previous, true)"), {"previous": previous})


def _check_radius(name: str, value: float, maximum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidParameter(f"{name} must be a number of metres > 0 and at most {maximum:g}, got {value!r}")
    if not 0 < value <= maximum:
        raise InvalidParameter(f"{name} must be > 0 and at most {maximum:g} m, got {value:g}")
    return float(value)


def _check_lonlat(lon: float, lat: float, what: str = "lon/lat") -> None:
    for name, value, limit in (("lon", lon, 180), ("lat", lat, 90)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidParameter(f"{what}: {name} must be a number, got {value!r}")
        if not -limit <= value <= limit:
            raise InvalidParameter(f"{what}: {name} must be between -{limit} and {limit}, got {value}")


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InvalidParameter(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    return mode


def _degrees(lat: float, metres: float) -> tuple[float, float]:
    """(dlon, dlat): degrees that span at least ``metres`` east-west and north-south near latitude ``lat``."""
    dlat = metres / 110_500.0  # a degree of latitude is at least 110.57 km
    cos_lat = math.cos(math.radians(min(89.0, abs(lat) + dlat)))
    return 1.01 * metres / (111_320.0 * max(cos_lat, 0.01)), dlat


def box_around(lon: float, lat: float, metres: float) -> BBox:
    """A lon/lat box holding every place within ``metres`` of (lon, lat), a little generously."""
    dlon, dlat = _degrees(lat, metres)
    return (lon - dlon, max(-90.0, lat - dlat), lon + dlon, min(90.0, lat + dlat))


def expand_box(bbox: BBox, metres: float) -> BBox:
    """``bbox`` grown by ``metres`` on every side (generously, as :func:`box_around`)."""
    minx, miny, maxx, maxy = bbox
    dlon, dlat = _degrees(max(abs(miny), abs(maxy)), metres)
    return (minx - dlon, max(-90.0, miny - dlat), maxx + dlon, min(90.0, maxy + dlat))


def _box_params(bbox: BBox | None) -> dict:
    keys = ("x0", "y0", "x1", "y1")
    return dict(zip(keys, bbox if bbox is not None else (None,) * 4, strict=True))


# -- snapping ----------------------------------------------------------------------------------------------

# The nearest edge in metres: `<->` on lon/lat geometry ranks by degrees, which stretch east-west by 1/cos(lat),
# so the metric nearest is among the edges within (degree distance of the degree-nearest) / cos(lat).
_SNAP = sa.text("""
    WITH spot AS (
        SELECT t.key, ST_SetSRID(ST_MakePoint(t.lon, t.lat), 4326) AS g,
               1.02 / greatest(cos(radians(abs(t.lat))), 0.01) AS stretch
        FROM unnest(CAST(:keys AS bigint[]), CAST(:lons AS float8[]), CAST(:lats AS float8[])) AS t(key, lon, lat)
    )
    SELECT spot.key, e.id AS edge_id, e.source, e.target, e.length_m, e.offset_m,
           ST_LineLocatePoint(e.gm, e.pm) AS fraction,
           (CAST(:x0 AS float8) IS NULL
            OR e.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)) AS inside
    FROM spot
    CROSS JOIN LATERAL (
        SELECT ST_Distance(s.geom, spot.g) AS d FROM street s
        WHERE s.source IS NOT NULL AND s.target IS NOT NULL
        ORDER BY s.geom <-> spot.g LIMIT 1
    ) AS first
    CROSS JOIN LATERAL (
        SELECT s.id, s.source, s.target, s.length_m, s.geom, m.gm, m.pm, ST_Distance(m.gm, m.pm) AS offset_m
        FROM street s
        CROSS JOIN LATERAL (SELECT ST_Transform(s.geom, :srid) AS gm, ST_Transform(spot.g, :srid) AS pm) AS m
        WHERE ST_DWithin(s.geom, spot.g, first.d * spot.stretch + 1e-9)
          AND s.source IS NOT NULL AND s.target IS NOT NULL
        ORDER BY ST_Distance(m.gm, m.pm), s.id
        LIMIT 1
    ) AS e
""")


def snap_points(conn: Connection, positions: Sequence[tuple[int, float, float]], *, srid: int,
                bbox: BBox | None = None) -> dict[int, Snap]:
    """Snap each ``(key, lon, lat)`` onto its nearest routable street edge at its fraction along the edge.

    Streets without ``source``/``target`` (not yet through :func:`rebuild_topology`) are not routable and ignored.

    Args:
        conn: database connection.
        positions: the positions, keyed by the caller's ids.
        srid: SRID of the metric CRS the distances and fractions are measured in.
        bbox: optional lon/lat box; each snap says whether its edge touches it (``inside``).

    Returns:
        Snaps by key; empty when there are no streets at all.
    """
    if not positions:
        return {}
    keys, lons, lats = zip(*positions, strict=True)
    rows = conn.execute(_SNAP, {"keys": list(keys), "lons": list(lons), "lats": list(lats), "srid": srid,
                                **_box_params(bbox)}).mappings()
    return {r["key"]: Snap(key=r["key"], edge_id=r["edge_id"], fraction=r["fraction"], source=r["source"],
                           target=r["target"], length_m=r["length_m"], offset_m=r["offset_m"], inside=r["inside"])
            for r in rows}


def _routing_fraction(fraction: float) -> float:
    return min(max(fraction, _FRACTION_EPS), 1.0 - _FRACTION_EPS)


# The graph and the points are handed to pgRouting as SQL text. Values never go into that text from Python: the
# server quotes the bound parameters into it with format(%L).
_EDGES_SQL = """
    format('SELECT id, source, target, length_m AS cost, length_m AS reverse_cost FROM street
            WHERE source IS NOT NULL AND target IS NOT NULL
              AND (geom && ST_MakeEnvelope(%L::float8, %L::float8, %L::float8, %L::float8, 4326)
                   OR id = ANY(%L::bigint[]))',
           CAST(:x0 AS float8), CAST(:y0 AS float8), CAST(:x1 AS float8), CAST(:y1 AS float8),
           CAST(:edge_ids AS bigint[]))
"""
_POINTS_SQL = """
    format('SELECT pid, edge_id, fraction, %L::char AS side
            FROM unnest(%L::bigint[], %L::bigint[], %L::float8[]) AS t(pid, edge_id, fraction)',
           'b', CAST(:pids AS bigint[]), CAST(:pedges AS bigint[]), CAST(:pfractions AS float8[]))
"""


def _points_params(snaps: Sequence[tuple[int, Snap]]) -> dict:
    """The points SQL parameters for ``(pid, snap)`` pairs, and the edges they lie on (always in the graph)."""
    return {"pids": [pid for pid, _ in snaps], "pedges": [s.edge_id for _, s in snaps],
            "pfractions": [_routing_fraction(s.fraction) for _, s in snaps],
            "edge_ids": sorted({s.edge_id for _, s in snaps})}


# -- walking routes ----------------------------------------------------------------------------------------

# One-to-many with details: every step is (node, edge); a node is a routing vertex (> 0) or a point (-pid). The
# step's piece of street runs from the node's position on the edge to the next node's; positions are fractions
# in the metric CRS, so the pieces are cut there.
_ROUTES = sa.text(f"""
    WITH pts AS (
        SELECT * FROM unnest(CAST(:pids AS bigint[]), CAST(:pfractions AS float8[])) AS t(pid, fraction)
    ),
    route AS (
        SELECT r.end_pid, r.path_seq, r.node, r.edge, r.agg_cost,
               lead(r.node) OVER (PARTITION BY r.end_pid ORDER BY r.path_seq) AS next_node
        FROM pgr_withPoints({_EDGES_SQL}, {_POINTS_SQL}, CAST(:start AS bigint), CAST(:ends AS bigint[]),
                            directed := false, driving_side := 'b', details := true) AS r
    ),
    totals AS (SELECT end_pid, max(agg_cost) AS distance_m FROM route GROUP BY end_pid),
    steps AS (
        SELECT r.end_pid, r.path_seq, s.geom,
               CASE WHEN r.node < 0 THEN pa.fraction WHEN r.node = s.source THEN 0.0 ELSE 1.0 END AS fa,
               CASE WHEN r.next_node < 0 THEN pb.fraction WHEN r.next_node = s.source THEN 0.0 ELSE 1.0 END AS fb
        FROM route r
        JOIN street s ON s.id = r.edge
        LEFT JOIN pts pa ON pa.pid = -r.node
        LEFT JOIN pts pb ON pb.pid = -r.next_node
        WHERE r.next_node IS NOT NULL
    ),
    pieces AS (
        SELECT end_pid, path_seq,
               CASE WHEN fa <= fb THEN ST_LineSubstring(ST_Transform(geom, :srid), fa, fb)
                    ELSE ST_Reverse(ST_LineSubstring(ST_Transform(geom, :srid), fb, fa)) END AS g
        FROM steps
        WHERE fa <> fb
    )
    SELECT t.end_pid, t.distance_m,
           ST_AsGeoJSON(ST_Transform(ST_MakeLine(p.g ORDER BY p.path_seq), 4326), 7) AS geometry
    FROM totals t LEFT JOIN pieces p ON p.end_pid = t.end_pid
    WHERE t.distance_m <= :max_distance
    GROUP BY t.end_pid, t.distance_m
""")

_ALONG_EDGE = sa.text("""
    SELECT t.key, ST_AsGeoJSON(ST_Transform(
               CASE WHEN t.fa <= t.fb THEN ST_LineSubstring(ST_Transform(s.geom, :srid), t.fa, t.fb)
                    ELSE ST_Reverse(ST_LineSubstring(ST_Transform(s.geom, :srid), t.fb, t.fa)) END, 4326), 7)
    FROM unnest(CAST(:keys AS bigint[]), CAST(:edges AS bigint[]), CAST(:fa AS float8[]), CAST(:fb AS float8[]))
         AS t(key, edge_id, fa, fb)
    JOIN street s ON s.id = t.edge_id
""")

_POSITION = sa.text("""
    SELECT t.key, ST_X(q), ST_Y(q)
    FROM unnest(CAST(:keys AS bigint[]), CAST(:edges AS bigint[]), CAST(:fractions AS float8[]))
         AS t(key, edge_id, fraction)
    JOIN street s ON s.id = t.edge_id
    CROSS JOIN LATERAL ST_Transform(ST_LineInterpolatePoint(ST_Transform(s.geom, :srid), t.fraction), 4326) AS q
""")


def _check_targets(targets: Sequence[tuple[int, float, float]]) -> None:
    seen: set[int] = set()
    for target in targets:
        if len(target) != 3:
            raise InvalidParameter(f"each target must be (id, lon, lat), got {target!r}")
        key, lon, lat = target
        if isinstance(key, bool) or not isinstance(key, int):
            raise InvalidParameter(f"target id must be an integer, got {key!r}")
        if key in seen:
            raise InvalidParameter(f"target ids must be unique; {key} appears twice")
        seen.add(key)
        _check_lonlat(lon, lat, what=f"target {key}")


def walk_routes(conn: Connection, *, lon: float, lat: float, targets: Sequence[tuple[int, float, float]],
                max_distance_m: float, metric_crs: str = DEFAULT_METRIC_CRS) -> dict[int, WalkRoute]:
    """Walking routes from a spot to each target, along the streets.

    The spot and every target are snapped onto their nearest street edge at their fraction along it (see the
    module docstring); the distance is the network distance between the snapped positions. A target on the
    spot's own edge may be reached directly along that edge. Only edges within ``max_distance_m`` of the spot
    form the graph, which is exact: a walk of length d never leaves the disc of radius d.

    Args:
        conn: database connection.
        lon: WGS 84 longitude of the spot.
        lat: WGS 84 latitude of the spot.
        targets: ``(id, lon, lat)`` of each target; ids unique.
        max_distance_m: targets farther than this along the network are left out (0 < d ≤ 100 km).
        metric_crs: projected CRS in which positions are snapped ("EPSG:<code>").

    Returns:
        Routes by target id, for the targets reachable within ``max_distance_m``.

    Raises:
        InvalidParameter: a bad position, target list or distance.
    """
    _check_lonlat(lon, lat)
    _check_targets(targets)
    limit = _check_radius("max_distance_m", max_distance_m, MAX_WALK_DISTANCE_M)
    srid = metric_srid(conn, metric_crs)
    if not targets:
        return {}
    spot = snap_points(conn, [(0, lon, lat)], srid=srid).get(0)
    if spot is None:
        return {}
    bbox = box_around(lon, lat, limit + spot.offset_m + _BOX_MARGIN_M)
    snapped = snap_points(conn, targets, srid=srid, bbox=bbox)
    # pid 1 is the spot; targets are 2, 3, … in the order given (their own ids may be anything).
    pid_of = {key: n for n, key in enumerate((t[0] for t in targets), start=2)}
    reachable = [(pid_of[key], snap) for key, snap in snapped.items() if snap.inside]
    routes = _network_routes(conn, spot, reachable, bbox=bbox, srid=srid, limit=limit) if reachable else {}
    routes.update(_along_own_edge(conn, spot, reachable, routes, srid=srid, limit=limit))
    key_of = {pid: key for key, pid in pid_of.items()}
    return {key_of[pid]: replace(route, spot_offset_m=spot.offset_m, target_offset_m=snapped[key_of[pid]].offset_m)
            for pid, route in sorted(routes.items())}


def _network_routes(conn: Connection, spot: Snap, reachable: list[tuple[int, Snap]], *, bbox: BBox, srid: int,
                    limit: float) -> dict[int, WalkRoute]:
    params = {**_box_params(bbox), **_points_params([(1, spot), *reachable]), "start": -1,
              "ends": [-pid for pid, _ in reachable], "srid": srid, "max_distance": limit}
    routes = {}
    for end_pid, distance, geometry in conn.execute(_ROUTES, params):
        routes[-end_pid] = _route(distance, geometry)
    return routes


def _along_own_edge(conn: Connection, spot: Snap, reachable: list[tuple[int, Snap]], routes: dict[int, WalkRoute],
                    *, srid: int, limit: float) -> dict[int, WalkRoute]:
    """Targets on the spot's own edge: straight along it, when that is no longer than the network route.

    It also covers a target snapped to the very position of the spot, for which pgRouting returns no path.
    """
    direct = {}
    for pid, snap in reachable:
        if snap.edge_id != spot.edge_id:
            continue
        distance = abs(snap.fraction - spot.fraction) * spot.length_m
        known = routes.get(pid)
        if distance <= limit and (known is None or distance <= known.distance_m):
            direct[pid] = (distance, snap.fraction)
    if not direct:
        return {}
    rows = conn.execute(_ALONG_EDGE, {"keys": list(direct), "edges": [spot.edge_id] * len(direct),
                                      "fa": [spot.fraction] * len(direct), "fb": [f for _, f in direct.values()],
                                      "srid": srid})
    return {pid: _route(direct[pid][0], geometry) for pid, geometry in rows}


def _route(distance: float, geometry: str | None) -> WalkRoute:
    line = json.loads(geometry) if geometry else None
    if line is None or line["type"] != "LineString":
        # Zero length (the target snaps where the spot does): a degenerate line at that position.
        position = line["coordinates"] if line and line["type"] == "Point" else None
        line = {"type": "LineString", "coordinates": [position, position] if position else []}
    return WalkRoute(distance_m=distance, minutes=distance / WALK_SPEED_M_PER_MIN, geometry=line)


# -- reachable street portions -----------------------------------------------------------------------------

Intervals = tuple[tuple[float, float], ...]

_EDGES_IN_BOX = sa.text("""
    SELECT id, source, target, length_m FROM street
    WHERE source IS NOT NULL AND target IS NOT NULL
      AND (CAST(:x0 AS float8) IS NULL OR geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326))
""")

# All sources at once: a virtual super-source joined to both ends of every source's edge, one way, at the cost of
# walking from the source to that end; one driving-distance search from it gives every node its distance to the
# nearest source. (pgr_withPointsDD with several start points and equicost := true returns wrong distances for some
# nodes in pgRouting 3.4.2 — a node reached by one start is not relaxed from a nearer one — and equicost := false
# searches once per source.) The super-source's id is one above every routing node's.
_MULTI_SOURCE_DISTANCE = sa.text("""
    WITH super AS (SELECT coalesce(max(greatest(source, target)), 0) + 1 AS id FROM street)
    SELECT dd.node, dd.agg_cost
    FROM super
    CROSS JOIN LATERAL pgr_drivingDistance(
        format('SELECT id, source, target, length_m AS cost, length_m AS reverse_cost FROM street
                WHERE source IS NOT NULL AND target IS NOT NULL
                  AND (geom && ST_MakeEnvelope(%L::float8, %L::float8, %L::float8, %L::float8, 4326)
                       OR id = ANY(%L::bigint[]))
                UNION ALL
                SELECT -n, %L::bigint, node, cost, -1.0
                FROM unnest(%L::bigint[], %L::float8[]) WITH ORDINALITY AS t(node, cost, n)',
               CAST(:x0 AS float8), CAST(:y0 AS float8), CAST(:x1 AS float8), CAST(:y1 AS float8),
               CAST(:edge_ids AS bigint[]), super.id, CAST(:ends AS bigint[]), CAST(:costs AS float8[])),
        super.id, :radius, directed := true) AS dd
    WHERE dd.node <> super.id
""")


def reachable_street_portions(conn: Connection, *, sources: Sequence[tuple[float, float]], radius_m: float,
                              bbox: BBox | None = None,
                              metric_crs: str = DEFAULT_METRIC_CRS) -> dict[int, Intervals]:
    """The portion of every street edge within ``radius_m`` along the network from any of ``sources``.

    Sources are snapped onto their nearest edges at their fractions; one multi-source driving-distance search
    gives each routing node its distance to the nearest source, and each edge is reachable from either end as
    far as the remaining radius allows, and around any source lying on it (see the module docstring).

    Args:
        conn: database connection.
        sources: ``(lon, lat)`` of each source, e.g. every qualifying convenience point.
        radius_m: walking radius in metres (0 < r ≤ 10 km).
        bbox: optional ``(minlon, minlat, maxlon, maxlat)``: only edges touching it are returned, and only the
            network within ``radius_m`` of it is searched. The parts inside the box are exact (a walk of length
            r to a place never leaves the disc of radius r around it); parts of those edges outside it may be
            under-reported.
        metric_crs: projected CRS in which positions are snapped.

    Returns:
        Edge id → the reachable intervals of the edge, as sorted, disjoint ``(from, to)`` fractions of its length
        from its first vertex. Edges with nothing reachable are absent.
    """
    radius = _check_radius("radius_m", radius_m, MAX_RADIUS_M)
    for lon, lat in sources:
        _check_lonlat(lon, lat, what="source")
    srid = metric_srid(conn, metric_crs)
    if not sources:
        return {}
    search = expand_box(bbox, radius + _BOX_MARGIN_M) if bbox is not None else None
    snaps = snap_points(conn, [(n, lon, lat) for n, (lon, lat) in enumerate(sources, start=1)], srid=srid,
                        bbox=search)
    portions = reachable_from_snaps(conn, [s for s in snaps.values() if s.inside], radius_m=radius, box=search)
    if bbox is None:
        return portions
    touching = conn.execute(_EDGES_IN_BOX, _box_params(bbox)).scalars().all()
    return {edge_id: portions[edge_id] for edge_id in touching if edge_id in portions}


def reachable_from_snaps(conn: Connection, snaps: Sequence[Snap], *, radius_m: float,
                         box: BBox | None = None) -> dict[int, Intervals]:
    """Reachable intervals of the edges touching ``box`` (all edges without one) from already snapped sources."""
    if not snaps:
        return {}
    world = (-180.0, -90.0, 180.0, 90.0)
    ends = [node for snap in snaps for node in (snap.source, snap.target)]
    costs = [cost for snap in snaps for cost in (snap.fraction * snap.length_m, (1 - snap.fraction) * snap.length_m)]
    params = {**_box_params(box or world), "edge_ids": sorted({s.edge_id for s in snaps}), "ends": ends,
              "costs": costs, "radius": radius_m}
    node_distance = dict(conn.execute(_MULTI_SOURCE_DISTANCE, params).all())
    on_edge: dict[int, list[float]] = {}
    for snap in snaps:
        on_edge.setdefault(snap.edge_id, []).append(snap.fraction)
    portions = {}
    for edge_id, source, target, length_m in conn.execute(_EDGES_IN_BOX, _box_params(box)):
        intervals = edge_reach(length_m, node_distance.get(source), node_distance.get(target),
                               on_edge.get(edge_id, ()), radius_m)
        if intervals:
            portions[edge_id] = intervals
    return portions


def edge_reach(length_m: float, d_source: float | None, d_target: float | None, source_fractions: Sequence[float],
               radius_m: float) -> Intervals:
    """The reachable intervals (fractions) of one edge, given its ends' network distances and sources on it."""
    raw = []
    if d_source is not None and d_source < radius_m:
        raw.append((0.0, min(1.0, (radius_m - d_source) / length_m)))
    if d_target is not None and d_target < radius_m:
        raw.append((max(0.0, 1.0 - (radius_m - d_target) / length_m), 1.0))
    reach = radius_m / length_m
    raw.extend((max(0.0, f - reach), min(1.0, f + reach)) for f in source_fractions)
    return merge_intervals(raw)


def merge_intervals(intervals: Sequence[tuple[float, float]]) -> Intervals:
    """Sorted, disjoint union of closed intervals."""
    merged: list[list[float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple((a, b) for a, b in merged)


# -- service areas -----------------------------------------------------------------------------------------

_POINT = sa.text("SELECT id, name, kind, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM point WHERE id = :id")

_CIRCLE = sa.text("""
    SELECT ST_AsGeoJSON(c, 7), ST_Area(c::geography)
    FROM (
        SELECT ST_MakePolygon(ST_MakeLine(
                   ST_Project(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography, :radius,
                              radians(360.0 * (k % :n) / :n))::geometry ORDER BY k)) AS c
        FROM generate_series(0, :n) AS k
    ) AS circle
""")

# The reachable streets, widened by the band, plus the walk from the point to where it meets the street.
_WALK_AREA = sa.text("""
    WITH pieces AS (
        SELECT ST_LineSubstring(ST_Transform(s.geom, :srid), t.a, t.b) AS g
        FROM unnest(CAST(:edges AS bigint[]), CAST(:a AS float8[]), CAST(:b AS float8[])) AS t(edge_id, a, b)
        JOIN street s ON s.id = t.edge_id
    ),
    access AS (
        SELECT ST_MakeLine(ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :srid),
                           ST_Transform(ST_SetSRID(ST_MakePoint(:snap_lon, :snap_lat), 4326), :srid)) AS g
    ),
    area AS (
        SELECT ST_Transform(ST_Union(ST_Buffer(g, :band, 'quad_segs=8')), 4326) AS g
        FROM (SELECT g FROM pieces UNION ALL SELECT g FROM access) AS lines
    )
    SELECT ST_AsGeoJSON(area.g, 7), ST_Area(area.g::geography),
           (SELECT coalesce(sum(ST_Length(g)), 0) FROM pieces)
    FROM area
""")


def service_area(conn: Connection, *, point_id: int, radius_m: float, mode: str,
                 metric_crs: str = DEFAULT_METRIC_CRS) -> dict:
    """The area served by a convenience point within ``radius_m``, as a GeoJSON Feature (WGS 84).

    Mode ``walk``: the streets reachable within the radius along the network from the point's snapped position,
    widened by :data:`SERVICE_AREA_BUFFER_M` on each side, with the walk from the point to the street. Mode
    ``straight``: the geodesic circle of the radius around the point.

    Args:
        conn: database connection.
        point_id: id of the convenience point (any status).
        radius_m: radius in metres (0 < r ≤ 10 km).
        mode: ``walk`` or ``straight``.
        metric_crs: projected CRS in which streets are cut and widened.

    Returns:
        A Feature whose properties are point_id, name, kind, mode, radius_m, area_m2 (geodesic), and in walk mode
        buffer_m and street_m (length of the reachable streets).

    Raises:
        InvalidParameter: a bad radius or mode.
        NotFound: no point with that id.
    """
    radius = _check_radius("radius_m", radius_m, MAX_RADIUS_M)
    _check_mode(mode)
    point = conn.execute(_POINT, {"id": point_id}).mappings().first()
    if point is None:
        raise NotFound(f"there is no convenience point with id {point_id}")
    props = {"point_id": point["id"], "name": point["name"], "kind": point["kind"], "mode": mode,
             "radius_m": radius}
    if mode == "straight":
        geometry, area = conn.execute(_CIRCLE, {"lon": point["lon"], "lat": point["lat"], "radius": radius,
                                                "n": CIRCLE_VERTICES}).one()
    else:
        geometry, area, street_m = _walk_area(conn, point, radius, metric_srid(conn, metric_crs))
        props.update(buffer_m=SERVICE_AREA_BUFFER_M, street_m=round(street_m, 1))
    props["area_m2"] = round(area, 1)
    return {"type": "Feature", "id": point["id"], "geometry": json.loads(geometry), "properties": props}


def _walk_area(conn: Connection, point: sa.RowMapping, radius: float, srid: int) -> tuple[str, float, float]:
    snap = snap_points(conn, [(point["id"], point["lon"], point["lat"])], srid=srid).get(point["id"])
    edges: list[int] = []
    starts: list[float] = []
    ends: list[float] = []
    snap_lon, snap_lat = point["lon"], point["lat"]
    if snap is not None:
        box = box_around(point["lon"], point["lat"], radius + snap.offset_m + _BOX_MARGIN_M)
        for edge_id, intervals in sorted(reachable_from_snaps(conn, [snap], radius_m=radius, box=box).items()):
            for a, b in intervals:
                edges.append(edge_id)
                starts.append(a)
                ends.append(b)
        _, snap_lon, snap_lat = conn.execute(_POSITION, {"keys": [0], "edges": [snap.edge_id],
                                                         "fractions": [snap.fraction], "srid": srid}).one()
    return conn.execute(_WALK_AREA, {"edges": edges, "a": starts, "b": ends, "srid": srid, "lon": point["lon"],
                                     "lat": point["lat"], "snap_lon": snap_lon, "snap_lat": snap_lat,
                                     "band": SERVICE_AREA_BUFFER_M}).one()


# -- topology ----------------------------------------------------------------------------------------------

# Endpoints within the tolerance (in the metric CRS) form one node. Node ids follow the nodes' positions (west to
# east, then south to north), so the same streets always get the same ids whatever order they were loaded in.
_REBUILD = sa.text("""
    WITH ends AS (
        SELECT id, 0 AS side, ST_Transform(ST_StartPoint(geom), :srid) AS g FROM street
        UNION ALL
        SELECT id, 1, ST_Transform(ST_EndPoint(geom), :srid) FROM street
    ),
    clustered AS (
        SELECT id, side, g, ST_ClusterDBSCAN(g, eps := :tolerance, minpoints := 1) OVER () AS cluster FROM ends
    ),
    nodes AS (
        SELECT cluster, row_number() OVER (ORDER BY min(ST_X(g)), min(ST_Y(g)), min(id)) AS node
        FROM clustered GROUP BY cluster
    ),
    ends_node AS (
        SELECT c.id, max(n.node) FILTER (WHERE c.side = 0) AS source, max(n.node) FILTER (WHERE c.side = 1) AS target
        FROM clustered c JOIN nodes n USING (cluster)
        GROUP BY c.id
    ),
    changed AS (
        UPDATE street s SET source = e.source, target = e.target
        FROM ends_node e
        WHERE s.id = e.id AND (s.source IS DISTINCT FROM e.source OR s.target IS DISTINCT FROM e.target)
        RETURNING s.id
    )
    SELECT (SELECT count(*) FROM nodes) AS nodes, (SELECT count(*) FROM ends_node) AS edges,
           (SELECT count(*) FROM changed) AS changed,
           (SELECT count(*) FROM ends_node WHERE source = target) AS loops
""")

_COMPONENTS = sa.text("""
    SELECT count(DISTINCT component) FROM pgr_connectedComponents(
        'SELECT id, source, target, length_m AS cost, length_m AS reverse_cost FROM street')
""")

_DEAD_ENDS = sa.text("""
    SELECT count(*) FROM (
        SELECT node FROM (SELECT source AS node FROM street UNION ALL SELECT target FROM street) AS ends
        GROUP BY node HAVING count(*) = 1
    ) AS dead
""")


def rebuild_topology(conn: Connection, *, tolerance_m: float = 0.5,
                     metric_crs: str = DEFAULT_METRIC_CRS) -> dict[str, int]:
    """Recompute every street's ``source``/``target`` routing nodes from the geometries.

    Endpoints closer than ``tolerance_m`` (chained) become one node; nodes are numbered 1, 2, … by position, so
    the result does not depend on row order. Run it after any change to the streets (the importer and the CLI
    do); run :func:`split_at_intersections` first when segments may cross without sharing a vertex. The update
    happens in the caller's transaction.

    Args:
        conn: database connection.
        tolerance_m: endpoints within this many metres are one node (0 ≤ tolerance ≤ 100).
        metric_crs: projected CRS in which the tolerance is measured.

    Returns:
        Counts: ``nodes``, ``edges``, ``changed`` (streets whose source or target changed), ``components``
        (connected parts of the network: more than one means some streets cannot be reached from others),
        ``dead_ends`` (nodes with a single street) and ``loops`` (streets starting and ending at one node).
    """
    if isinstance(tolerance_m, bool) or not isinstance(tolerance_m, int | float) or not 0 <= tolerance_m <= 100:
        raise InvalidParameter(f"tolerance_m must be a number of metres between 0 and 100, got {tolerance_m!r}")
    srid = metric_srid(conn, metric_crs)
    with without_jit(conn):
        counts = dict(conn.execute(_REBUILD, {"srid": srid, "tolerance": float(tolerance_m)}).mappings().one())
    counts["components"] = conn.execute(_COMPONENTS).scalar_one() if counts["edges"] else 0
    counts["dead_ends"] = conn.execute(_DEAD_ENDS).scalar_one()
    return {key: int(value) for key, value in counts.items()}


# Where a segment's interior meets another segment (a crossing, or the other's end touching it), cut it. Every
# piece is a substring between consecutive cuts whose ends are set to the exact cut point, so the pieces of both
# streets share that coordinate and rebuild_topology joins them at any tolerance.
_SPLIT = sa.text("""
    WITH pairs AS MATERIALIZED (
        SELECT s.id, s.geom AS sg, t.geom AS tg, ST_Relate(s.geom, t.geom) AS m
        FROM street s JOIN street t ON t.id <> s.id AND s.geom && t.geom
    ),
    meets AS (
        -- Only where s's interior meets t's interior or t's end (DE-9IM cells II and IB): not shared ends.
        SELECT id, (ST_Dump(ST_Intersection(sg, tg))).geom AS g
        FROM pairs WHERE left(m, 1) <> 'F' OR substr(m, 2, 1) <> 'F'
    ),
    cut_points AS (
        SELECT id, g FROM meets WHERE GeometryType(g) = 'POINT'
        UNION ALL
        SELECT id, ST_StartPoint(g) FROM meets WHERE GeometryType(g) = 'LINESTRING'
        UNION ALL
        SELECT id, ST_EndPoint(g) FROM meets WHERE GeometryType(g) = 'LINESTRING'
    ),
    cuts AS (
        SELECT DISTINCT ON (c.id, round(CAST(f.fraction * s.length_m AS numeric), 3))
               c.id, f.fraction, c.g
        FROM cut_points c
        JOIN street s ON s.id = c.id
        CROSS JOIN LATERAL (SELECT ST_LineLocatePoint(s.geom, c.g) AS fraction) AS f
        WHERE f.fraction * s.length_m > :tolerance AND (1 - f.fraction) * s.length_m > :tolerance
        ORDER BY c.id, round(CAST(f.fraction * s.length_m AS numeric), 3), f.fraction
    ),
    bounds AS (
        SELECT id, fraction, g,
               lead(fraction) OVER w AS next_fraction, lead(g) OVER w AS next_g,
               row_number() OVER w AS piece
        FROM (SELECT id, 0.0 AS fraction, NULL::geometry AS g FROM (SELECT DISTINCT id FROM cuts) AS ids
              UNION ALL SELECT id, fraction, g FROM cuts
              UNION ALL SELECT id, 1.0, NULL FROM (SELECT DISTINCT id FROM cuts) AS ids) AS b
        WINDOW w AS (PARTITION BY id ORDER BY fraction)
    ),
    pieces AS (
        SELECT b.id, b.piece, s.name, s.class, s.geom AS original, b.fraction, b.next_fraction, b.g, b.next_g
        FROM bounds b JOIN street s ON s.id = b.id
        WHERE b.next_fraction IS NOT NULL
    ),
    shaped AS (
        SELECT id, piece, name, class,
               CASE WHEN next_g IS NULL THEN sub ELSE ST_SetPoint(sub, ST_NPoints(sub) - 1, next_g) END AS geom
        FROM (
            SELECT p.*, CASE WHEN p.g IS NULL THEN l.sub ELSE ST_SetPoint(l.sub, 0, p.g) END AS sub
            FROM pieces p
            CROSS JOIN LATERAL (SELECT ST_LineSubstring(p.original, p.fraction, p.next_fraction) AS sub) AS l
        ) AS first_fixed
    ),
    shortened AS (
        UPDATE street s SET geom = sh.geom, source = NULL, target = NULL
        FROM shaped sh WHERE sh.id = s.id AND sh.piece = 1
        RETURNING s.id
    )
    INSERT INTO street (name, class, geom)
    SELECT name, class, geom FROM shaped WHERE piece > 1 ORDER BY id, piece
    RETURNING id
""")


def split_at_intersections(conn: Connection, *, tolerance_m: float = 0.5) -> int:
    """Split street segments wherever another segment crosses them or ends on their interior.

    Imported streets are often not noded: two roads cross without a shared vertex, or a side street ends on
    the middle of a road. The router can only turn at shared nodes, so each such segment is cut at those points;
    every piece keeps the street's name and class. Meetings closer than ``tolerance_m`` to a segment's own end
    are left to :func:`rebuild_topology`'s tolerance. Split streets lose their ``source``/``target`` until
    :func:`rebuild_topology` runs, which it must next. Runs in the caller's transaction.

    Args:
        conn: database connection.
        tolerance_m: metres; a meeting point closer than this to either end of a segment does not cut it.

    Returns:
        The number of street segments added (0 when the network was already noded).
    """
    if isinstance(tolerance_m, bool) or not isinstance(tolerance_m, int | float) or not 0 <= tolerance_m <= 100:
        raise InvalidParameter(f"tolerance_m must be a number of metres between 0 and 100, got {tolerance_m!r}")
    with without_jit(conn):
        return len(conn.execute(_SPLIT, {"tolerance": float(tolerance_m)}).all())
