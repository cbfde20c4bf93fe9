"""Walking at query time (pgRouting): snapping onto the streets, walking routes, the street portions reachable on foot.

The street table is the graph: every row is an undirected edge between the routing nodes ``source`` and
``target`` (kept by ``geoservice.ingest.topology``), costing its geodesic length ``length_m`` in either direction
(people walk both ways along one-way streets).

Snapping (DESIGN.md, "Semantics of the queries"). A spot is snapped onto its nearest street edge (nearest in
metres) at its *fraction* along that edge — the position of the foot of the perpendicular, found with
``ST_LineLocatePoint`` in the city's metric CRS — never onto the nearest vertex. Points of interest are snapped the
same way. The network distance is the distance along the streets between the two snapped positions; the access legs
from the spot onto the street and from the street to the point are given apart (``offset_m``) and added by the
callers (``geoservice.nearest``). Network distances use pgRouting's *with points* functions, where a snapped
position is a point ``(pid, edge_id, fraction)`` and is referred to by the negative id ``-pid``.

Reachable portions. A street edge (u, v) of length L, reached at u at network distance du and at v at dv, is
reachable within r on [0, r - du] from u and on [L - (r - dv), L] from v, plus the stretch within r of any source
lying on the edge itself. All sources are searched together by one ``pgr_drivingDistance`` from a virtual
super-source joined to both ends of each source's edge (a point's service area; whole-city coverage searches the
same way in memory, ``geoservice.coverage_engine``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geoservice.errors import InvalidParameter
from geoservice.query import MAX_DISTANCE_M, BBox, check_lonlat, check_metres
from geoservice.spatial import BOX_MARGIN_M, box_around, box_params, metric_srid

WALK_SPEED_M_PER_MIN = 75.0
"""Walking speed: 4.5 km/h, an unhurried adult pace."""


# pgRouting 3.4 drops points whose fraction is exactly 0 or 1 (they coincide with a vertex); nudging them inward
# by 1e-9 of the edge moves them by well under a millimetre.
_FRACTION_EPS = 1e-9


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



# -- snapping ----------------------------------------------------------------------------------------------

# The nearest edge in metres: `<->` on lon/lat geometry ranks by degrees, which stretch east-west by 1/cos(lat),
# so the metric nearest is among the edges within (degree distance of the degree-nearest) / cos(lat).
def snap_sql(positions: str) -> str:
    """A SELECT snapping each row of the relation ``positions`` onto its nearest routable street edge.

    ``positions`` has the columns ``key`` and ``g`` (a lon/lat point); the SELECT gives the fields of :class:`Snap`
    (``key, edge_id, source, target, length_m, offset_m, fraction, inside``) and where the access leg meets the
    street (``foot_lon, foot_lat``). It binds ``:srid`` (the metric CRS),
    ``:exclude`` (edges the position keyed 0 — a walk's spot — may not be snapped onto) and the box
    ``:x0, :y0, :x1, :y1`` (or NULLs) that ``inside`` is about.
    """
    avoid = f"NOT ({positions}.key = 0 AND s.id = ANY(CAST(:exclude AS bigint[])))"
    return f"""
    SELECT {positions}.key, e.id AS edge_id, e.source, e.target, e.length_m, leg.offset_m,
           ST_X(leg.foot) AS foot_lon, ST_Y(leg.foot) AS foot_lat, ST_LineLocatePoint(e.gm, e.pm) AS fraction,
           (CAST(:x0 AS float8) IS NULL
            OR e.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)) AS inside
    FROM {positions}
    CROSS JOIN LATERAL (
        SELECT ST_Distance(s.geom, {positions}.g) AS d,
               1.02 / greatest(cos(radians(abs(ST_Y({positions}.g)))), 0.01) AS stretch
        FROM street s
        WHERE s.source IS NOT NULL AND s.target IS NOT NULL AND {avoid}
        ORDER BY s.geom <-> {positions}.g LIMIT 1
    ) AS first
    CROSS JOIN LATERAL (
        SELECT s.id, s.source, s.target, s.length_m, s.geom, m.gm, m.pm
        FROM street s
        CROSS JOIN LATERAL (SELECT ST_Transform(s.geom, :srid) AS gm, ST_Transform({positions}.g, :srid) AS pm) AS m
        WHERE ST_DWithin(s.geom, {positions}.g, first.d * first.stretch + 1e-9)
          AND s.source IS NOT NULL AND s.target IS NOT NULL AND {avoid}
        ORDER BY ST_Distance(m.gm, m.pm), s.id
        LIMIT 1
    ) AS e
    -- The access leg is measured on the spheroid, from the position to the foot of the perpendicular.
    CROSS JOIN LATERAL (SELECT ST_Transform(ST_ClosestPoint(e.gm, e.pm), 4326) AS foot) AS f
    CROSS JOIN LATERAL (SELECT f.foot, ST_Distance(f.foot::geography, {positions}.g::geography) AS offset_m) AS leg
    """


_SNAP = sa.text(f"""
    WITH spot AS (
        SELECT t.key, ST_SetSRID(ST_MakePoint(t.lon, t.lat), 4326) AS g
        FROM unnest(CAST(:keys AS bigint[]), CAST(:lons AS float8[]), CAST(:lats AS float8[])) AS t(key, lon, lat)
    )
    {snap_sql("spot")}
""")


def snap_from_row(row) -> Snap:
    """A :class:`Snap` from a row of :func:`snap_sql`."""
    return Snap(key=row["key"], edge_id=row["edge_id"], fraction=row["fraction"], source=row["source"],
                target=row["target"], length_m=row["length_m"], offset_m=row["offset_m"], inside=row["inside"])


def snap_points(conn: Connection, positions: Sequence[tuple[int, float, float]], *, srid: int,
                bbox: BBox | None = None, exclude: Sequence[int] = ()) -> dict[int, Snap]:
    """Snap each ``(key, lon, lat)`` onto its nearest routable street edge at its fraction along the edge.

    Streets without ``source``/``target`` (not yet through :func:`rebuild_topology`) are not routable and ignored.

    Args:
        conn: database connection.
        positions: the positions, keyed by the caller's ids.
        srid: SRID of the metric CRS the distances and fractions are measured in.
        bbox: optional lon/lat box; each snap says whether its edge touches it (``inside``).
        exclude: street edges the position keyed 0 — a walk's spot — is not snapped onto (a separate piece of the
            network the spot should leave); other positions may lie on them.

    Returns:
        Snaps by key; empty when there are no streets at all.
    """
    if not positions:
        return {}
    keys, lons, lats = zip(*positions, strict=True)
    rows = conn.execute(_SNAP, {"keys": list(keys), "lons": list(lons), "lats": list(lats), "srid": srid,
                                "exclude": list(exclude), **box_params(bbox)}).mappings()
    return {r["key"]: snap_from_row(r) for r in rows}


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
# in the metric CRS, so the pieces are cut there. The points come from the CTE `pts` (pid, edge_id, fraction —
# nudged off the vertices —, offset_m; pid 1 is the spot), handed to pgRouting as arrays quoted into its SQL.
def _routes_sql(pts: str) -> sa.TextClause:
    return sa.text(f"""
    WITH pts AS ({pts}),
    given AS (
        SELECT array_agg(pid ORDER BY pid) AS pids, array_agg(edge_id ORDER BY pid) AS edges,
               array_agg(fraction ORDER BY pid) AS fractions, array_agg(DISTINCT edge_id) AS edge_ids,
               array_agg(-pid ORDER BY pid) FILTER (WHERE pid <> 1) AS ends
        FROM pts
    ),
    route AS (
        SELECT r.end_pid, r.path_seq, r.node, r.edge, r.agg_cost,
               lead(r.node) OVER (PARTITION BY r.end_pid ORDER BY r.path_seq) AS next_node
        FROM given CROSS JOIN LATERAL pgr_withPoints(
            format('SELECT id, source, target, length_m AS cost, length_m AS reverse_cost FROM street
                    WHERE source IS NOT NULL AND target IS NOT NULL
                      AND (geom && ST_MakeEnvelope(%L::float8, %L::float8, %L::float8, %L::float8, 4326)
                           OR id = ANY(%L::bigint[]))',
                   CAST(:x0 AS float8), CAST(:y0 AS float8), CAST(:x1 AS float8), CAST(:y1 AS float8),
                   given.edge_ids),
            format('SELECT pid, edge_id, fraction, %L::char AS side
                    FROM unnest(%L::bigint[], %L::bigint[], %L::float8[]) AS t(pid, edge_id, fraction)',
                   'b', given.pids, given.edges, given.fractions),
            -1::bigint, given.ends, directed := false, driving_side := 'b', details := true) AS r
        WHERE given.ends IS NOT NULL
    ),
    totals AS (
        SELECT end_pid, max(agg_cost) AS distance_m FROM route GROUP BY end_pid HAVING max(agg_cost) <= :max_distance
    ),
    -- The route's line only for the `keep` best walks, access legs counted (all without `keep`).
    kept AS (
        SELECT t.end_pid FROM (
            SELECT totals.end_pid, rank() OVER (ORDER BY totals.distance_m + pts.offset_m) AS place
            FROM totals JOIN pts ON pts.pid = -totals.end_pid
        ) AS t
        WHERE CAST(:keep AS int) IS NULL OR t.place <= :keep
    ),
    steps AS (
        SELECT r.end_pid, r.path_seq, s.geom,
               CASE WHEN r.node < 0 THEN pa.fraction WHEN r.node = s.source THEN 0.0 ELSE 1.0 END AS fa,
               CASE WHEN r.next_node < 0 THEN pb.fraction WHEN r.next_node = s.source THEN 0.0 ELSE 1.0 END AS fb
        FROM route r
        JOIN street s ON s.id = r.edge
        LEFT JOIN pts pa ON pa.pid = -r.node
        LEFT JOIN pts pb ON pb.pid = -r.next_node
        WHERE r.next_node IS NOT NULL AND r.end_pid IN (SELECT end_pid FROM kept)
    ),
    pieces AS (
        SELECT end_pid, path_seq,
               CASE WHEN fa <= fb THEN ST_LineSubstring(ST_Transform(geom, :srid), fa, fb)
                    ELSE ST_Reverse(ST_LineSubstring(ST_Transform(geom, :srid), fb, fa)) END AS g
        FROM steps
        WHERE fa <> fb
    ),
    lines AS (
        SELECT end_pid, ST_AsGeoJSON(ST_Transform(ST_MakeLine(g ORDER BY path_seq), 4326), 7) AS geometry
        FROM pieces GROUP BY end_pid
    )
    SELECT pts.*, t.distance_m, l.geometry
    FROM pts LEFT JOIN totals t ON t.end_pid = -pts.pid LEFT JOIN lines l ON l.end_pid = -pts.pid
    WHERE pts.pid <> 1
""")


_ROUTES = _routes_sql("""
    SELECT * FROM unnest(CAST(:pids AS bigint[]), CAST(:pedges AS bigint[]), CAST(:pfractions AS float8[]),
                         CAST(:poffsets AS float8[])) AS t(pid, edge_id, fraction, offset_m)
""")

# Targets snapped in the same statement (as snap_sql does); pid 1 is the spot, snapped already (its snap bound).
_ROUTES_SNAPPING = _routes_sql(f"""
    WITH positions AS (
        SELECT t.key, ST_SetSRID(ST_MakePoint(t.lon, t.lat), 4326) AS g
        FROM unnest(CAST(:keys AS bigint[]), CAST(:lons AS float8[]), CAST(:lats AS float8[])) AS t(key, lon, lat)
    ),
    snapped AS ({snap_sql("positions")})
    SELECT 1::bigint AS pid, NULL::bigint AS key, CAST(:spot_edge AS bigint) AS edge_id,
           CAST(:spot_fraction AS float8) AS fraction, CAST(:spot_offset AS float8) AS offset_m,
           NULL::float8 AS snapped_fraction, NULL::bigint AS source, NULL::bigint AS target, NULL::float8 AS length_m
    UNION ALL
    SELECT 1 + row_number() OVER (ORDER BY key), key, edge_id, least(greatest(fraction, {_FRACTION_EPS}),
           1 - {_FRACTION_EPS}), offset_m, fraction, source, target, length_m
    FROM snapped
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


def snapped_positions(conn: Connection, snaps: Sequence[Snap], *, srid: int) -> dict[int, tuple[float, float]]:
    """The WGS 84 ``(lon, lat)`` of each snapped position, by the snap's key."""
    rows = conn.execute(_POSITION, {"keys": [s.key for s in snaps], "edges": [s.edge_id for s in snaps],
                                    "fractions": [s.fraction for s in snaps], "srid": srid})
    return {key: (lon, lat) for key, lon, lat in rows}


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
        check_lonlat(lon, lat, what=f"target {key}")


def walk_routes(conn: Connection, *, lon: float, lat: float, targets: Sequence[tuple[int, float, float]],
                max_distance_m: float, metric_crs: str, avoid: Sequence[int] = ()) -> dict[int, WalkRoute]:
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
        avoid: street edges the spot is not placed on (to leave a separate piece of the network, see
            :func:`walk_start`); targets may still lie on them.

    Returns:
        Routes by target id, for the targets reachable within ``max_distance_m``.

    Raises:
        InvalidParameter: a bad position, target list or distance.
    """
    check_lonlat(lon, lat)
    _check_targets(targets)
    limit = check_metres("max_distance_m", max_distance_m, MAX_DISTANCE_M)
    srid = metric_srid(conn, metric_crs)
    if not targets:
        return {}
    spot = snap_points(conn, [(0, lon, lat)], srid=srid, exclude=avoid).get(0)
    if spot is None:
        return {}
    bbox = box_around(lon, lat, limit + spot.offset_m + BOX_MARGIN_M)
    snapped = snap_points(conn, targets, srid=srid, bbox=bbox)
    return routes_between(conn, spot, {key: snap for key, snap in snapped.items() if snap.inside}, bbox=bbox,
                          srid=srid, limit=limit)


def routes_between(conn: Connection, spot: Snap, targets: dict[int, Snap], *, bbox: BBox, srid: int, limit: float,
                   keep: int | None = None) -> dict[int, WalkRoute]:
    """Walking routes from an already snapped spot to already snapped targets (by the caller's ids), within ``limit``.

    The graph is the edges touching ``bbox`` (it must hold the disc of radius ``limit`` + the spot's access leg
    around the spot for the routes to be the shortest) and the targets' own edges. With ``keep``, only the ``keep``
    best walks (access legs counted, ties kept) get their line (``geometry`` None for the others): the caller
    ranks all and shows a few.
    """
    # pid 1 is the spot; targets are 2, 3, … in the order given (their own ids may be anything).
    pid_of = {key: n for n, key in enumerate(targets, start=2)}
    reachable = [(pid_of[key], snap) for key, snap in targets.items()]
    routes = _network_routes(conn, spot, reachable, bbox=bbox, srid=srid, limit=limit,
                             keep=keep) if reachable else {}
    routes.update(_along_own_edge(conn, spot, reachable, routes, srid=srid, limit=limit))
    key_of = {pid: key for key, pid in pid_of.items()}
    return {key_of[pid]: replace(route, spot_offset_m=spot.offset_m, target_offset_m=targets[key_of[pid]].offset_m)
            for pid, route in sorted(routes.items())}


def routes_to_positions(conn: Connection, spot: Snap, targets: Sequence[tuple[int, float, float]], *, bbox: BBox,
                        srid: int, limit: float, keep: int | None = None) -> dict[int, WalkRoute]:
    """Like :func:`routes_between`, with the targets ``(id, lon, lat)`` snapped in the same statement as the routing.

    Ids must be unique and not 0.
    """
    if not targets:
        return {}
    keys, lons, lats = zip(*targets, strict=True)
    rows = conn.execute(_ROUTES_SNAPPING, {
        "keys": list(keys), "lons": list(lons), "lats": list(lats), "spot_edge": spot.edge_id,
        "spot_fraction": _routing_fraction(spot.fraction), "spot_offset": spot.offset_m, "exclude": [],
        "srid": srid, "max_distance": limit, "keep": keep, **box_params(bbox)}).mappings().all()
    snaps = {r["pid"]: Snap(key=r["key"], edge_id=r["edge_id"], fraction=r["snapped_fraction"], source=r["source"],
                            target=r["target"], length_m=r["length_m"], offset_m=r["offset_m"]) for r in rows}
    routes = {r["pid"]: _route(r["distance_m"], r["geometry"]) for r in rows if r["distance_m"] is not None}
    routes.update(_along_own_edge(conn, spot, list(snaps.items()), routes, srid=srid, limit=limit))
    return {snaps[pid].key: replace(route, spot_offset_m=spot.offset_m, target_offset_m=snaps[pid].offset_m)
            for pid, route in sorted(routes.items())}


def _network_routes(conn: Connection, spot: Snap, reachable: list[tuple[int, Snap]], *, bbox: BBox, srid: int,
                    limit: float, keep: int | None = None) -> dict[int, WalkRoute]:
    params = {**box_params(bbox), **_points_params([(1, spot), *reachable]), "srid": srid, "max_distance": limit,
              "keep": keep, "poffsets": [spot.offset_m] + [snap.offset_m for _, snap in reachable]}
    return {r["pid"]: _route(r["distance_m"], r["geometry"])
            for r in conn.execute(_ROUTES, params).mappings() if r["distance_m"] is not None}


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


# -- why a walk found less than asked ---------------------------------------------------------------------------

# The streets reachable from the spot's edge within the limit; the piece is closed (a separate part of the network)
# when no street joins a reached node to one that was not reached.
_PIECE = sa.text(f"""
    WITH reached AS (
        SELECT node FROM pgr_drivingDistance({_EDGES_SQL}, CAST(:start AS bigint), :limit, directed := false)
    ),
    edges AS (
        SELECT s.id, s.length_m,
               s.source IN (SELECT node FROM reached) AS a, s.target IN (SELECT node FROM reached) AS b
        FROM street s WHERE s.source IS NOT NULL AND s.target IS NOT NULL
    )
    SELECT coalesce(bool_and(a = b), true) AS closed,
           coalesce(sum(length_m) FILTER (WHERE a AND b), 0) AS piece_m,
           coalesce(array_agg(id) FILTER (WHERE a AND b), ARRAY[]::bigint[]) AS piece_edges,
           count(*) FILTER (WHERE NOT (a AND b)) AS elsewhere
    FROM edges
""")
_STREET = sa.text("SELECT id, name, class FROM street WHERE id = :id")


@dataclass(frozen=True)
class WalkStart:
    """Where a walk from a spot starts, and whether it can leave that part of the network.

    Attributes:
        snap: the spot's position on its nearest street edge (None without routable streets).
        street: ``id``, ``name`` and ``class`` of that edge.
        separate_piece: the edge belongs to a part of the network that no street joins to the rest within the
            search limit (a courtyard, a clipped lane).
        piece_street_m: metres of streets in that part (None when it is not separate).
        piece_edges: the street edges of that part (empty when it is not separate).
    """

    snap: Snap | None
    street: dict | None = None
    separate_piece: bool = False
    piece_street_m: float | None = None
    piece_edges: tuple[int, ...] = ()


def walk_start(conn: Connection, *, lon: float, lat: float, limit_m: float, metric_crs: str,
               avoid: Sequence[int] = ()) -> WalkStart:
    """Where a walk from (lon, lat) starts (avoiding the edges ``avoid``), and whether that is a separate piece."""
    srid = metric_srid(conn, metric_crs)
    spot = snap_points(conn, [(0, lon, lat)], srid=srid, exclude=avoid).get(0)
    if spot is None:
        return WalkStart(snap=None)
    street = dict(conn.execute(_STREET, {"id": spot.edge_id}).mappings().one())
    box = box_around(lon, lat, limit_m + spot.offset_m + BOX_MARGIN_M)
    piece = conn.execute(_PIECE, {**box_params(box), "edge_ids": [spot.edge_id], "start": spot.source,
                                  "limit": limit_m}).mappings().one()
    if not (piece["closed"] and piece["elsewhere"] > 0):
        return WalkStart(snap=spot, street=street)
    return WalkStart(snap=spot, street=street, separate_piece=True, piece_street_m=float(piece["piece_m"]),
                     piece_edges=tuple(piece["piece_edges"]))


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


def reachable_from_snaps(conn: Connection, snaps: Sequence[Snap], *, radius_m: float,
                         box: BBox | None = None) -> dict[int, Intervals]:
    """Reachable intervals of the edges touching ``box`` (all edges without one) from already snapped sources.

    A source's walk starts with its access leg (``offset_m``, from the source onto its edge): it is counted, so a
    source 40 m off the street reaches 40 m less along it.
    """
    if not snaps:
        return {}
    world = (-180.0, -90.0, 180.0, 90.0)
    ends = [node for snap in snaps for node in (snap.source, snap.target)]
    costs = [snap.offset_m + cost for snap in snaps
             for cost in (snap.fraction * snap.length_m, (1 - snap.fraction) * snap.length_m)]
    params = {**box_params(box or world), "edge_ids": sorted({s.edge_id for s in snaps}), "ends": ends,
              "costs": costs, "radius": radius_m}
    node_distance = dict(conn.execute(_MULTI_SOURCE_DISTANCE, params).all())
    on_edge: dict[int, list[tuple[float, float]]] = {}
    for snap in snaps:
        on_edge.setdefault(snap.edge_id, []).append((snap.fraction, snap.offset_m))
    portions = {}
    for edge_id, source, target, length_m in conn.execute(_EDGES_IN_BOX, box_params(box)):
        intervals = edge_reach(length_m, node_distance.get(source), node_distance.get(target),
                               on_edge.get(edge_id, ()), radius_m)
        if intervals:
            portions[edge_id] = intervals
    return portions


def edge_reach(length_m: float, d_source: float | None, d_target: float | None,
               sources_on_edge: Sequence[tuple[float, float]], radius_m: float) -> Intervals:
    """The reachable intervals (fractions) of one edge, from its ends' network distances and the sources on it.

    ``sources_on_edge`` are ``(fraction, access leg in metres)``.
    """
    raw = []
    if d_source is not None and d_source < radius_m:
        raw.append((0.0, min(1.0, (radius_m - d_source) / length_m)))
    if d_target is not None and d_target < radius_m:
        raw.append((max(0.0, 1.0 - (radius_m - d_target) / length_m), 1.0))
    for fraction, offset_m in sources_on_edge:
        if offset_m < radius_m:
            reach = (radius_m - offset_m) / length_m
            raw.append((max(0.0, fraction - reach), min(1.0, fraction + reach)))
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

