"""The area a convenience point serves within a radius: a geodesic circle, or the streets reachable on foot.

Walking: the street portions reachable within the radius along the network from the point's snapped position
(``geoservice.routing``), widened into a band, with the walk from the point to where it meets the street.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geoservice.catalogue import POINT
from geoservice.errors import NotFound
from geoservice.query import MAX_RADIUS_M, check_metres, check_mode
from geoservice.routing import reachable_from_snaps, snap_points, snapped_positions
from geoservice.spatial import BOX_MARGIN_M, box_around, metric_srid

SERVICE_AREA_BUFFER_M = 25.0
"""Half-width of the band drawn around reachable streets in a walking service area (a street and its pavements)."""
CIRCLE_VERTICES = 128
"""Vertices of a geodesic circle; the polygon's area is within 0.05 % of the circle's."""

_POINT = "SELECT id, name, kind, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM point t WHERE id = :id AND {visible}"

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
           (SELECT coalesce(sum(ST_Length(ST_Transform(g, 4326)::geography)), 0) FROM pieces)
    FROM area
""")


def service_area(conn: Connection, *, point_id: int, radius_m: float, mode: str, show_hidden: bool = False,
                 metric_crs: str) -> dict:
    """The area served by a convenience point within ``radius_m``, as a GeoJSON Feature (WGS 84).

    Mode ``walk``: the streets reachable within the radius along the network from the point's snapped position,
    widened by :data:`SERVICE_AREA_BUFFER_M` on each side, with the walk from the point to the street. Mode
    ``straight``: the geodesic circle of the radius around the point.

    Args:
        conn: database connection.
        point_id: id of the convenience point (any status; a planned one only with ``show_hidden``).
        radius_m: radius in metres (0 < r ≤ 10 km).
        mode: ``walk`` or ``straight``.
        metric_crs: projected CRS in which streets are cut and widened.
        show_hidden: a planned point is found (planners and admins); for the public it is no point at all.

    Returns:
        A Feature whose properties are point_id, name, kind, mode, radius_m, area_m2 (geodesic), and in walk mode
        buffer_m and street_m (geodesic length of the reachable streets).

    Raises:
        InvalidParameter: a bad radius or mode.
        NotFound: no point with that id.
    """
    radius = check_metres("radius", radius_m, MAX_RADIUS_M)
    check_mode(mode)
    visible = POINT.visible_sql(show_hidden=show_hidden)
    point = conn.execute(sa.text(_POINT.format(visible=visible)), {"id": point_id}).mappings().first()
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
        box = box_around(point["lon"], point["lat"], radius + snap.offset_m + BOX_MARGIN_M)
        for edge_id, intervals in sorted(reachable_from_snaps(conn, [snap], radius_m=radius, box=box).items()):
            for a, b in intervals:
                edges.append(edge_id)
                starts.append(a)
                ends.append(b)
        snap_lon, snap_lat = snapped_positions(conn, [snap], srid=srid)[snap.key]
    return conn.execute(_WALK_AREA, {"edges": edges, "a": starts, "b": ends, "srid": srid, "lon": point["lon"],
                                     "lat": point["lat"], "snap_lon": snap_lon, "snap_lat": snap_lat,
                                     "band": SERVICE_AREA_BUFFER_M}).one()

