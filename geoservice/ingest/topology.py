"""The routing topology of the streets: split where segments cross, then number the nodes (``source``/``target``).

Topology **must be rebuilt after streets change**: the importer and ``geoservice network rebuild`` call
:func:`split_at_intersections` and :func:`rebuild_topology`; the demo generator writes the topology itself.
Imported data whose segments cross without sharing a vertex is made routable by :func:`split_at_intersections`.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geoservice.errors import InvalidParameter
from geoservice.spatial import metric_srid, without_jit

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


def rebuild_topology(conn: Connection, *, metric_crs: str, tolerance_m: float = 0.5) -> dict[str, int]:
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
