"""Who is responsible here, and where the unit grids do not tile the land.

``grid_at`` answers a farmer's or resident's "which grid is this, who looks after it": the unit grid covering the
spot with its community, subdistrict and district, the grid officer and the squad.

``grid_gaps`` answers a planner's "is every part of the district in exactly one grid": gaps are parts of the
district (or one community) inside no grid; overlaps are parts inside two or more grids, with the codes involved.
Pieces under ``sliver_m2`` (default 1 m², a setting) are digitising noise: counted separately, not listed.
Areas are geodesic square metres.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geoservice.errors import InvalidParameter, NotFound

_GRID_AT = sa.text("""
    SELECT g.code, g.name, round(g.area_m2::numeric, 1)::float8 AS area_m2, g.officer_name, g.officer_phone,
           c.code AS community_code, c.name AS community_name,
           sd.code AS subdistrict_code, sd.name AS subdistrict_name,
           d.code AS district_code, d.name AS district_name,
           s.name AS squad_name, s.leader AS squad_leader, s.phone AS squad_phone,
           ST_AsGeoJSON(g.geom, 7) AS geometry
    FROM grid g
    JOIN community c ON c.code = g.community_code
    JOIN subdistrict sd ON sd.code = c.subdistrict_code
    JOIN district d ON d.code = sd.district_code
    LEFT JOIN squad s ON s.id = g.squad_id
    WHERE ST_Covers(g.geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))
    ORDER BY g.code
""")

_NEAREST_GRID = sa.text("""
    SELECT g.code, g.name,
           ST_Distance(g.geom::geography, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography) AS distance_m
    FROM grid g
    ORDER BY g.geom <-> ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)
    LIMIT 5
""")


def grid_at(conn: Connection, *, lon: float, lat: float) -> dict:
    """The unit grid covering (lon, lat) as a GeoJSON Feature with its hierarchy, officer and squad.

    A spot on a shared boundary or in a planted overlap is covered by several grids: the first by code is
    returned and the others are listed in ``also_in``.

    Raises:
        NotFound: the spot is in no grid; the message says how far the nearest grid is.
    """
    rows = conn.execute(_GRID_AT, {"lon": lon, "lat": lat}).mappings().all()
    if not rows:
        nearest = conn.execute(_NEAREST_GRID, {"lon": lon, "lat": lat}).mappings().all()
        if not nearest:
            raise NotFound("there are no unit grids in the database")
        # <-> on geometry orders by degrees; the geodesic minimum among the few closest is the true one.
        best = min(nearest, key=lambda r: r["distance_m"])
        raise NotFound(f"the spot ({lon}, {lat}) is in no unit grid; the nearest grid is {best['code']} "
                       f"({best['name']}), {best['distance_m']:.0f} m away")
    first = dict(rows[0])
    geometry = json.loads(first.pop("geometry"))
    first["also_in"] = [r["code"] for r in rows[1:]]
    return {"type": "Feature", "id": first["code"], "geometry": geometry, "properties": first}


def _area_filter(district: str | None, community: str | None) -> tuple[str, dict]:
    if district and community and not community.startswith(district):
        raise NotFound(f"community {community} is not in district {district}")
    if community:
        if not (len(community) == 12 and community.isdigit()):
            raise InvalidParameter(f"community must be a 12-digit community code, got {community!r}")
        return "SELECT geom, code FROM community WHERE code = :area", {"area": community}
    if district and not (len(district) == 6 and district.isdigit()):
        raise InvalidParameter(f"district must be a 6-digit district code, got {district!r}")
    if district:
        return "SELECT geom, code FROM district WHERE code = :area", {"area": district}
    return "SELECT geom, code FROM district", {}


def grid_gaps(conn: Connection, *, district: str | None = None, community: str | None = None,
              sliver_m2: float = 1.0) -> dict:
    """Gaps (in no grid) and overlaps (in two or more grids) as a GeoJSON FeatureCollection with a summary.

    Args:
        conn: database connection.
        district: 6-digit district code to check (default: every district).
        community: 12-digit community code to check instead of a district.
        sliver_m2: pieces smaller than this are counted as slivers, not listed.

    Raises:
        NotFound: the district or community does not exist.
        InvalidParameter: malformed codes, or both given.
    """
    area_sql, params = _area_filter(district, community)
    if conn.execute(sa.text(f"SELECT count(*) FROM ({area_sql}) a"), params).scalar_one() == 0:
        raise NotFound(f"no {'community' if community else 'district'} with code {community or district}")
    rows = conn.execute(sa.text(f"""
        WITH area AS ({area_sql}),
        gap AS (
            SELECT a.code AS area_code, (ST_Dump(ST_Difference(a.geom, coalesce(
                (SELECT ST_Union(g.geom) FROM grid g WHERE g.geom && a.geom), ST_GeomFromText('POLYGON EMPTY', 4326)
            )))).geom AS geom
            FROM area a
        ),
        overlap AS (
            SELECT ARRAY[g1.code, g2.code] AS grids,
                   (ST_Dump(ST_CollectionExtract(ST_Intersection(g1.geom, g2.geom), 3))).geom AS geom
            FROM grid g1 JOIN grid g2 ON g1.code < g2.code AND g1.geom && g2.geom
                 AND ST_Relate(g1.geom, g2.geom, '2********')
            WHERE EXISTS (SELECT 1 FROM area a WHERE ST_Intersects(a.geom, g1.geom))
        )
        SELECT 'gap' AS type, area_code, NULL::text[] AS grids, ST_Area(geom::geography) AS area_m2,
               ST_AsGeoJSON(geom, 7) AS geometry
        FROM gap WHERE NOT ST_IsEmpty(geom)
        UNION ALL
        SELECT 'overlap', NULL, grids, ST_Area(geom::geography), ST_AsGeoJSON(geom, 7) FROM overlap
        ORDER BY 1, 4 DESC
    """), params).mappings().all()
    return _gap_collection(rows, sliver_m2)


def _gap_collection(rows, sliver_m2: float) -> dict:
    features, slivers = [], {"gap": [0, 0.0], "overlap": [0, 0.0]}
    for row in rows:
        if row["area_m2"] < sliver_m2:
            slivers[row["type"]][0] += 1
            slivers[row["type"]][1] += row["area_m2"]
            continue
        props = {"type": row["type"], "area_m2": round(row["area_m2"], 1)}
        props["grids" if row["type"] == "overlap" else "area_code"] = (
            row["grids"] if row["type"] == "overlap" else row["area_code"])
        features.append({"type": "Feature", "geometry": json.loads(row["geometry"]), "properties": props})
    gaps = [f for f in features if f["properties"]["type"] == "gap"]
    overlaps = [f for f in features if f["properties"]["type"] == "overlap"]
    return {"type": "FeatureCollection", "features": features, "summary": {
        "gaps": len(gaps), "gap_area_m2": round(sum(f["properties"]["area_m2"] for f in gaps), 1),
        "overlaps": len(overlaps),
        "overlap_area_m2": round(sum(f["properties"]["area_m2"] for f in overlaps), 1),
        "sliver_m2": sliver_m2,
        "sliver_gaps": slivers["gap"][0], "sliver_gap_area_m2": round(slivers["gap"][1], 3),
        "sliver_overlaps": slivers["overlap"][0], "sliver_overlap_area_m2": round(slivers["overlap"][1], 3),
    }}
