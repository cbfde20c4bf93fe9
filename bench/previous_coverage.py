"""The SQL implementation of uncovered streets before the coverage engine, kept only as the bench's baseline.

Taken from git as it was at commit 90def95 (``git show 90def95:geoservice/coverage.py``), before
``geoservice/coverage_engine.py`` replaced it; ``bench/bench_coverage_engine.py`` times its
:func:`uncovered_streets` side by side with the engine and the naive ``ST_Union`` query. Nothing in geoservice
imports it. Changed from the original only where the code around it moved on: walking coverage needed
``geoservice.routing.reachable_street_portions``, which the engine's walking search replaced, so this copy answers
straight mode only (the bench times nothing else). The original docstring follows.

Where coverage is missing: street portions with no convenience point near enough, and coverage per unit grid.

A street portion is covered when a qualifying point — ``open``, of one of the requested kinds — is within the radius
of it (DESIGN.md, "Semantics of the queries"):

- ``straight``: the part of the street inside the union of the points' radius circles, in the metric CRS. It is
  computed exactly, segment by segment, as the stretch of each straight segment within the radius of each point
  (a quadratic in the position along the segment), not with polygonised buffers — exact, and cheap at any radius;
- ``walk``: the part of the street reachable within the radius along the network from any point, from either end
  of each edge (``geoservice.routing.reachable_street_portions``), access legs included.

Both modes produce covered stretches as fractions along each street; one SQL part merges them, takes the gaps as
the uncovered stretches, and cuts both out of the street (and to the bbox or district). Uncovered streets are the
uncovered portions, aggregated per street name. The default radius is 500 m (GB 50180-2018: a 10-minute living
circle is about a 500 m walk), 300 m when the only kind asked for is ``toilet``; every radius is a parameter. All
streets are cut in the city's metric CRS, which the caller passes from the settings (a zone chosen for the city, see
``geoservice.crs.metric_crs_for``: a cut moves by the zone's scale error, under 0.1 % of the radius), and every
length is then measured on the spheroid.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geoservice.errors import InvalidParameter, NotFound
from geoservice.query import BBox, check_bbox, check_kinds, check_mode, check_radius, clip_bbox, open_point_sql
from geoservice.spatial import box_params, metric_srid, without_jit

_OPEN_POINT = open_point_sql("p")

MIN_PORTION_M = 0.01
"""Uncovered pieces of a street shorter than this (floating-point crumbs) are not listed as features; they still
count in the summary's lengths."""

# -- validation --------------------------------------------------------------------------------------------

def _check_district(conn: Connection, district: str | None) -> str | None:
    if district is None:
        return None
    if not (isinstance(district, str) and len(district) == 6 and district.isdigit()):
        raise InvalidParameter(f"district must be a 6-digit district code, e.g. 411002; got {district!r}")
    if conn.execute(sa.text("SELECT 1 FROM district WHERE code = :code"), {"code": district}).first() is None:
        raise NotFound(f"there is no district with code {district}")
    return district


# -- SQL, composed from fixed parts (the mode decides where the covered spans come from) -----------------------
#
# Both modes describe coverage the same way: ``spans`` (edge_id, a, b) are stretches of a street, as fractions of
# its length in the metric CRS, that some point covers; they may overlap. The shared part merges them, takes the
# gaps between them as the uncovered stretches, cuts both out of the street and clips them to the area.

# The area the streets are cut to: the bbox, the district, both, or none (NULL).
_CLIP = """
    clip AS (
        SELECT g, ST_Transform(g, :srid) AS gm FROM (
            SELECT CASE WHEN CAST(:district AS text) IS NULL AND CAST(:x0 AS float8) IS NULL THEN NULL
                        WHEN CAST(:district AS text) IS NULL THEN b.g
                        WHEN CAST(:x0 AS float8) IS NULL THEN d.geom
                        ELSE ST_Intersection(d.geom, b.g) END AS g
            FROM (SELECT ST_Segmentize(ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326), 0.001) AS g) AS b
            LEFT JOIN district d ON d.code = CAST(:district AS text)
        ) AS c
    )
"""

# full_m: the whole street in the metric CRS (fractions refer to it); gm: the part inside the area. A street wholly
# inside the area (most of them, for a large one) is not intersected with it: that is the costly part.
_AREA_STREETS = """
    area_streets AS MATERIALIZED (
        SELECT s.id, s.name, s.class, s.geom, m.full_m, w.inside,
               CASE WHEN w.inside THEN m.full_m
                    ELSE ST_CollectionExtract(ST_Intersection(m.full_m, clip.gm), 2) END AS gm
        FROM street s
        CROSS JOIN clip
        CROSS JOIN LATERAL (SELECT ST_Transform(s.geom, :srid) AS full_m) AS m
        CROSS JOIN LATERAL (SELECT clip.g IS NULL OR ST_CoveredBy(s.geom, clip.g) AS inside) AS w
        WHERE clip.g IS NULL OR ST_Intersects(s.geom, clip.g)
    )
"""

# Straight: on each straight segment p0→p1 of a street, the points within the radius of a centre c are those with
# |p0 + t·(p1 - p0) - c| ≤ r, an interval of t found exactly from the quadratic (no polygonised circles). Candidate
# centres come from the GiST index on point.geom (a lon/lat box a little wider than the radius), then ST_DWithin in
# the metric CRS keeps those that reach each segment. A street wholly inside the circle of the point nearest to it
# (the common case at large radii) is covered end to end without looking at any other point; that point is
# projected on the spot, because joining it to ``centres`` would scan the whole CTE once per street.
_STRAIGHT_SPANS = f"""
    centres AS MATERIALIZED (
        SELECT p.id, ST_X(m.pm) AS cx, ST_Y(m.pm) AS cy, m.pm
        FROM point p CROSS JOIN LATERAL (SELECT ST_Transform(p.geom, :srid) AS pm) AS m
        WHERE {_OPEN_POINT}
    ),
    wholly_covered AS MATERIALIZED (
        SELECT a.id FROM area_streets a
        CROSS JOIN LATERAL (
            SELECT ST_Transform(p.geom, :srid) AS pm FROM point p
            WHERE {_OPEN_POINT}
            ORDER BY p.geom <-> ST_Centroid(a.geom) LIMIT 1
        ) AS nearest
        WHERE NOT ST_IsEmpty(a.gm) AND ST_DFullyWithin(a.full_m, nearest.pm, :radius)
    ),
    near AS MATERIALIZED (
        SELECT a.id AS edge_id, p.id AS point_id
        FROM area_streets a
        CROSS JOIN LATERAL (
            SELECT CAST(:radius AS float8) / 110500.0 AS dlat,
                   1.01 * CAST(:radius AS float8) / (111320.0 * greatest(0.01, cos(radians(least(89.0,
                       greatest(abs(ST_YMin(a.geom)), abs(ST_YMax(a.geom))) + CAST(:radius AS float8) / 110500.0)))))
                       AS dlon
        ) AS margin
        JOIN point p ON p.geom && ST_Expand(a.geom, margin.dlon, margin.dlat)
        WHERE {_OPEN_POINT} AND NOT ST_IsEmpty(a.gm)
          AND a.id NOT IN (SELECT id FROM wholly_covered)
    ),
    segments AS MATERIALIZED (
        SELECT a.id, d.geom AS seg, ST_X(ST_StartPoint(d.geom)) AS x0, ST_Y(ST_StartPoint(d.geom)) AS y0,
               ST_X(ST_EndPoint(d.geom)) AS x1, ST_Y(ST_EndPoint(d.geom)) AS y1,
               sum(ST_Length(d.geom)) OVER w - ST_Length(d.geom) AS before_m, ST_Length(d.geom) AS seg_m,
               ST_Length(a.full_m) AS line_m
        FROM area_streets a CROSS JOIN LATERAL ST_DumpSegments(a.full_m) AS d
        WHERE a.id IN (SELECT edge_id FROM near)
        WINDOW w AS (PARTITION BY a.id ORDER BY d.path[1])
    ),
    spans AS (
        SELECT s.id AS edge_id,
               (s.before_m + s.seg_m * greatest(0.0, (-q.b - sqrt(q.disc)) / (2 * q.a))) / s.line_m AS a,
               (s.before_m + s.seg_m * least(1.0, (-q.b + sqrt(q.disc)) / (2 * q.a))) / s.line_m AS b
        FROM segments s
        JOIN near n ON n.edge_id = s.id
        JOIN centres c ON c.id = n.point_id
        CROSS JOIN LATERAL (
            SELECT (s.x1 - s.x0) ^ 2 + (s.y1 - s.y0) ^ 2 AS a,
                   2 * ((s.x0 - c.cx) * (s.x1 - s.x0) + (s.y0 - c.cy) * (s.y1 - s.y0)) AS b,
                   greatest(0.0, (2 * ((s.x0 - c.cx) * (s.x1 - s.x0) + (s.y0 - c.cy) * (s.y1 - s.y0))) ^ 2
                            - 4 * ((s.x1 - s.x0) ^ 2 + (s.y1 - s.y0) ^ 2)
                                * ((s.x0 - c.cx) ^ 2 + (s.y0 - c.cy) ^ 2 - CAST(:radius AS float8) ^ 2)) AS disc
        ) AS q
        WHERE s.seg_m > 0 AND ST_DWithin(s.seg, c.pm, :radius)
        UNION ALL
        SELECT id, 0.0, 1.0 FROM wholly_covered
    )
"""

# Merge overlapping spans (gaps and islands), take the gaps between them, cut both out of the streets.
_COVER = """
    ordered AS (
        SELECT edge_id, a, b,
               max(b) OVER (PARTITION BY edge_id ORDER BY a, b ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                   AS reach
        FROM spans WHERE b > a
    ),
    islands AS (
        SELECT edge_id, a, b,
               count(*) FILTER (WHERE reach IS NULL OR reach < a - 1e-12)
                   OVER (PARTITION BY edge_id ORDER BY a, b) AS island
        FROM ordered
    ),
    covered_spans AS (SELECT edge_id, min(a) AS a, max(b) AS b FROM islands GROUP BY edge_id, island),
    bounds AS (
        SELECT edge_id, a, b, lag(b) OVER w AS prev_b, lead(a) OVER w AS next_a
        FROM covered_spans WINDOW w AS (PARTITION BY edge_id ORDER BY a)
    ),
    all_spans AS (
        SELECT edge_id, a, b, true AS covered FROM covered_spans
        UNION ALL SELECT edge_id, coalesce(prev_b, 0.0), a, false FROM bounds
        UNION ALL SELECT edge_id, b, 1.0, false FROM bounds WHERE next_a IS NULL
        UNION ALL SELECT id, 0.0, 1.0, false FROM area_streets
                  WHERE NOT EXISTS (SELECT 1 FROM covered_spans c WHERE c.edge_id = area_streets.id)
    ),
    per_edge AS (
        SELECT t.edge_id,
               ST_Collect(ST_LineSubstring(a.full_m, t.a, t.b)) FILTER (WHERE t.covered) AS covered,
               ST_Collect(ST_LineSubstring(a.full_m, t.a, t.b)) FILTER (WHERE NOT t.covered) AS uncovered
        FROM all_spans t JOIN area_streets a ON a.id = t.edge_id
        WHERE t.b > t.a
        GROUP BY t.edge_id
    ),
    cover AS (
        SELECT a.id, a.name, a.class, a.gm,
               CASE WHEN a.inside THEN e.covered ELSE ST_Intersection(e.covered, clip.gm) END AS covered,
               CASE WHEN a.inside THEN e.uncovered ELSE ST_Intersection(e.uncovered, clip.gm) END AS uncovered
        FROM area_streets a CROSS JOIN clip LEFT JOIN per_edge e ON e.edge_id = a.id
        WHERE NOT ST_IsEmpty(a.gm)
    )
"""

# Lengths are measured on the spheroid: the pieces are cut in the metric CRS (where a position moves by the zone's
# scale error times the radius, centimetres), but their lengths carry no scale error at all, wherever the city lies
# in its zone.
def _geodesic_m(metric_geometry: str) -> str:
    return f"ST_Length(ST_Transform({metric_geometry}, 4326)::geography)"


_STREETS_TAIL = f"""
    SELECT id, name, class, {_geodesic_m("gm")} AS total_m, coalesce({_geodesic_m("covered")}, 0) AS covered_m,
           coalesce({_geodesic_m("uncovered")}, 0) AS uncovered_m,
           CASE WHEN ST_Length(uncovered) >= :min_portion
                THEN ST_AsGeoJSON(ST_Transform(ST_CollectionExtract(uncovered, 2), 4326), 7) END AS geometry
    FROM cover
    ORDER BY id
"""

_GRIDS_TAIL = f"""
    , covered_streets AS MATERIALIZED (SELECT id, gm, covered FROM cover),
    grid_m AS MATERIALIZED (SELECT code, name, geom, ST_Transform(geom, :srid) AS gm FROM grid),
    per_grid AS (
        SELECT g.code, sum({_geodesic_m("ST_Intersection(c.gm, g.gm)")}) AS street_m,
               sum(coalesce({_geodesic_m("ST_Intersection(c.covered, g.gm)")}, 0)) AS covered_m
        FROM grid_m g
        JOIN street s ON ST_Intersects(s.geom, g.geom)
        JOIN covered_streets c ON c.id = s.id
        GROUP BY g.code
    )
    SELECT g.code, g.name, coalesce(p.street_m, 0) AS street_m, coalesce(p.covered_m, 0) AS covered_m
    FROM grid_m g LEFT JOIN per_grid p ON p.code = g.code
"""

_POINTS_IN_GRIDS = sa.text(f"""
    SELECT g.code, p.kind, count(*) AS n
    FROM grid g JOIN point p ON ST_Covers(g.geom, p.geom)
    WHERE {_OPEN_POINT}
    GROUP BY g.code, p.kind
""")

def _cover_query(conn: Connection, *, tail: str, mode: str, kinds: tuple[str, ...], radius: float, area: dict,
                 metric_crs: str, extra: dict) -> list[sa.RowMapping]:
    srid = metric_srid(conn, metric_crs)
    params = {**area, **extra, "srid": srid, "radius": radius, "kinds": list(kinds)}
    if mode != "straight":
        raise InvalidParameter("this copy of the previous implementation answers straight mode only")
    with without_jit(conn):
        return conn.execute(sa.text(f"WITH {_CLIP}, {_AREA_STREETS}, {_STRAIGHT_SPANS}, {_COVER} {tail}"),
                            params).mappings().all()


# -- the queries -------------------------------------------------------------------------------------------

def uncovered_streets(conn: Connection, *, radius_m: float | None = None, kinds: Sequence[str] | None = None,
                      mode: str = "straight", bbox: Sequence[float] | None = None, district: str | None = None,
                      metric_crs: str, extent: BBox | None = None) -> dict:
    """The street portions no qualifying point covers, with a summary.

    Args:
        conn: database connection.
        radius_m: coverage radius in metres (0 < r ≤ 10 000); None: 300 for toilets only, else 500.
        kinds: point kinds that count (None or empty: all); only ``open`` points count.
        mode: ``straight`` (distance in the metric CRS) or ``walk`` (along the street network).
        bbox: ``(minlon, minlat, maxlon, maxlat)``: only streets touching it, cut to it.
        district: 6-digit district code: only streets inside the district, cut to its outline.
        metric_crs: projected CRS for lengths and distances ("EPSG:<code>").
        extent: the city's extent (lon/lat): ``bbox`` is cut to it first, so a box far larger than the city is the
            whole city, and a box outside it covers no street (answered without a query).

    Returns:
        A GeoJSON FeatureCollection of the uncovered portion of each street segment (id, name, class, length_m,
        street_length_m) and a ``summary``: radius_m, mode, kinds, total_km, covered_km, uncovered_km,
        covered_pct (None when there are no streets) and ``uncovered_by_street`` — uncovered km per street name,
        most first.

    Raises:
        InvalidParameter: a bad radius, kind, mode, bbox or district code.
        NotFound: no district with that code.
    """
    kinds_ok = check_kinds(kinds)
    radius = check_radius(radius_m, kinds)
    check_mode(mode)
    box = check_bbox(bbox)
    clipped = clip_bbox(box, extent) if box is not None and extent is not None else box
    outside = box is not None and clipped is None
    if clipped is not None and clipped == extent:
        clipped = None  # the box holds the whole city: the same answer as no box, without cutting anything
    area = {**box_params(clipped), "district": _check_district(conn, district)}
    rows = [] if outside else _cover_query(
        conn, tail=_STREETS_TAIL, mode=mode, kinds=kinds_ok, radius=radius, area=area, metric_crs=metric_crs,
        extra={"min_portion": MIN_PORTION_M})
    features, by_name = [], {}
    for row in rows:
        if row["uncovered_m"] > 0:
            by_name[row["name"]] = by_name.get(row["name"], 0.0) + row["uncovered_m"]
        if row["geometry"] is not None:
            features.append({"type": "Feature", "id": row["id"], "geometry": json.loads(row["geometry"]),
                             "properties": {"id": row["id"], "name": row["name"], "class": row["class"],
                                            "length_m": round(row["uncovered_m"], 1),
                                            "street_length_m": round(row["total_m"], 1)}})
    total = sum(r["total_m"] for r in rows)
    covered = sum(r["covered_m"] for r in rows)
    uncovered = sum(r["uncovered_m"] for r in rows)
    ranking = sorted(by_name.items(), key=lambda item: (-item[1], item[0] or ""))
    summary = {"radius_m": radius, "mode": mode, "kinds": list(kinds_ok), "bbox": list(bbox) if bbox else None,
               "district": district, "total_km": round(total / 1000, 3), "covered_km": round(covered / 1000, 3),
               "uncovered_km": round(uncovered / 1000, 3), "covered_pct": _pct(covered, total),
               "uncovered_by_street": [{"name": name, "uncovered_km": round(m / 1000, 3)} for name, m in ranking]}
    return {"type": "FeatureCollection", "features": features, "summary": summary}


def grid_coverage(conn: Connection, *, radius_m: float | None = None, kinds: Sequence[str] | None = None,
                  mode: str = "straight", metric_crs: str) -> list[dict]:
    """Street coverage per unit grid, weakest first.

    Args:
        conn: database connection.
        radius_m: coverage radius in metres (0 < r ≤ 10 000); None: 300 for toilets only, else 500.
        kinds: point kinds that count (None or empty: all); only ``open`` points count.
        mode: ``straight`` or ``walk`` (as :func:`uncovered_streets`).
        metric_crs: projected CRS for lengths and distances.

    Returns:
        One dict per grid: code, name, street_km (street length inside the grid), covered_km, uncovered_km,
        covered_pct (None when the grid has no streets) and points_by_kind (open points of the requested kinds
        inside the grid). Sorted by covered_pct ascending, grids without streets last, then by code. A street on
        the boundary between two grids counts in both.

    Raises:
        InvalidParameter: a bad radius, kind or mode.
    """
    kinds_ok = check_kinds(kinds)
    radius = check_radius(radius_m, kinds)
    check_mode(mode)
    area = {**box_params(None), "district": None}
    rows = _cover_query(conn, tail=_GRIDS_TAIL, mode=mode, kinds=kinds_ok, radius=radius, area=area,
                        metric_crs=metric_crs, extra={})
    points: dict[str, dict[str, int]] = {}
    for code, kind, n in conn.execute(_POINTS_IN_GRIDS, {"kinds": list(kinds_ok)}):
        points.setdefault(code, {})[kind] = n
    grids = [{"code": r["code"], "name": r["name"], "street_km": round(r["street_m"] / 1000, 3),
              "covered_km": round(r["covered_m"] / 1000, 3),
              "uncovered_km": round(max(0.0, r["street_m"] - r["covered_m"]) / 1000, 3),
              "covered_pct": _pct(r["covered_m"], r["street_m"]),
              "points_by_kind": dict(sorted(points.get(r["code"], {}).items()))} for r in rows]
    grids.sort(key=lambda g: (g["covered_pct"] is None, g["covered_pct"] or 0.0, g["code"]))
    return grids


def _pct(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 2) if whole > 0 else None
