"""The query vocabulary, stated once: modes, limits, argument checks, rest points, and the SQL the queries share.

What a rest point is; the open-point condition; the grid and squad at a spot.

The HTTP parameters (``geoservice.params``, ``geoservice.api.openapi``), the CLI and the core functions all read
their limits from here, so the documents, the server and the core cannot disagree about what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geoservice.errors import InvalidParameter, NotFound
from geoservice.vocab import KIND_CODES

BBox = tuple[float, float, float, float]

MODES = ("straight", "walk")
"""``straight``: geodesic metres. ``walk``: along the street network, with the access legs (DESIGN.md)."""

MAX_RADIUS_M = 10_000.0
"""Largest coverage / service-area radius: beyond 10 km a 'living circle' means nothing."""
MAX_DISTANCE_M = 100_000.0
"""Largest ``max_distance`` of a nearest search (and of a walking route)."""
MAX_K = 50
"""Most points one nearest search returns."""

DEFAULT_RADIUS_M = 500.0
"""GB 50180-2018: a 10-minute living circle is about a 500 m walk."""
TOILET_RADIUS_M = 300.0
"""Public toilets are expected closer."""

# -- what a rest point is ------------------------------------------------------------------------------------
#
# A melon farmer asking for "the nearest rest point" (找最近的休息点) wants a place to stop: sit in the shade, drink
# water, spend the night. A rest point is an open point of a kind that receives people (a kiosk, a rest station, a
# vendor or melon-farmer point) offering at least one of the rest amenities below. A notice board, a car park or a
# toilet is not one, whatever its amenities; a kiosk that offers none of them is not one either.
REST_KINDS: tuple[str, ...] = ("kiosk", "rest_station", "vendor_point", "melon_point")
REST_AMENITIES: tuple[str, ...] = ("drinking_water", "hot_water", "seating", "shade", "overnight", "tent")


def is_rest_point(kind: str, amenities: Sequence[str]) -> bool:
    """Whether a point of ``kind`` with ``amenities`` is a rest point (see above)."""
    return kind in REST_KINDS and any(a in REST_AMENITIES for a in amenities)


# -- shared SQL ----------------------------------------------------------------------------------------------

def open_point_sql(alias: str = "p") -> str:
    """The condition "an open point of one of ``:kinds``" on the point table aliased ``alias``.

    The caller binds ``kinds`` (a list of kind codes, never empty: :func:`check_kinds` turns "any" into all).
    """
    return f"{alias}.status = 'open' AND {alias}.kind = ANY(CAST(:kinds AS text[]))"


def rest_point_sql(alias: str = "p") -> str:
    """The condition "a rest point" on the point table aliased ``alias`` (no parameters)."""
    kinds = ", ".join(f"'{k}'" for k in REST_KINDS)
    amenities = ", ".join(f"'{a}'" for a in REST_AMENITIES)
    return f"({alias}.kind IN ({kinds}) AND {alias}.amenities && ARRAY[{amenities}]::text[])"


# The WGS 84 ellipsoid: equatorial radius, and the smallest meridional radius of curvature, a(1 - e²) (at the
# equator). Nothing is nearer to the centre of curvature than these, so they turn metres into the most degrees.
_WGS84_A_M = 6378137.0
_WGS84_MERIDIAN_MIN_M = 6335439.0


def distance_box_sql(metres: str) -> str:
    """A one-row query of lon/lat boxes holding every position within ``metres`` (SQL) of ``(:lon, :lat)``.

    Its columns: ``m`` (the metres), ``a`` and ``b`` (``b`` is the part beyond the antimeridian, else NULL). Use it
    as a ``MATERIALIZED`` CTE and test rows with :func:`in_distance_box_sql`: the boxes let a search run on a
    geometry GiST index (lon/lat degrees), and an exact geodesic test on the few rows inside decides.

    Why the boxes hold every such position: along a geodesic of length s the latitude moves at most s / M_min
    radians (M ≥ M_min), so it stays within |lat| + dlat of the equator, where a degree of longitude is at least
    a·cos(|lat| + dlat) long (N ≥ a); so the longitude moves at most s / (a·cos(|lat| + dlat)). Near a pole every
    longitude is in.
    """
    lon, lat = "CAST(:lon AS float8)", "CAST(:lat AS float8)"
    south, north = f"greatest({lat} - dlat, -90)", f"least({lat} + dlat, 90)"
    return f"""
        SELECT m,
               ST_MakeEnvelope(greatest({lon} - dlon, -180), {south}, least({lon} + dlon, 180), {north}, 4326) AS a,
               CASE WHEN {lon} - dlon < -180 THEN ST_MakeEnvelope({lon} - dlon + 360, {south}, 180, {north}, 4326)
                    WHEN {lon} + dlon > 180 THEN ST_MakeEnvelope(-180, {south}, {lon} + dlon - 360, {north}, 4326)
               END AS b
        FROM (
            SELECT m, dlat,
                   CASE WHEN abs({lat}) + dlat >= 90 THEN 180.0
                        ELSE least(180.0, degrees(m / ({_WGS84_A_M} * cos(radians(abs({lat}) + dlat))))) END AS dlon
            FROM (SELECT m, degrees(m / {_WGS84_MERIDIAN_MIN_M}) AS dlat
                  FROM (SELECT {metres} AS m OFFSET 0) AS given) AS lat_reach  -- OFFSET 0: worked out once
        ) AS reach
    """


def in_distance_box_sql(geom: str, box: str) -> str:
    """The condition "``geom`` lies in the boxes of the CTE ``box``" (see :func:`distance_box_sql`), indexable."""
    return f"({geom} && (SELECT a FROM {box}) OR {geom} && (SELECT b FROM {box}))"


RESPONSIBLE_COLUMNS = ("grid_code", "grid_name", "officer_name", "officer_phone", "squad_name", "squad_leader",
                       "squad_phone")


def responsible_join(geom_sql: str, alias: str = "r") -> str:
    """A ``LEFT JOIN LATERAL`` giving, as ``alias``, the grid covering ``geom_sql`` and the squad answering for it.

    Its columns are :data:`RESPONSIBLE_COLUMNS`. Where grids overlap, the first by code answers.
    """
    return f"""
    LEFT JOIN LATERAL (
        SELECT g.code AS grid_code, g.name AS grid_name, g.officer_name, g.officer_phone,
               s.name AS squad_name, s.leader AS squad_leader, s.phone AS squad_phone
        FROM grid g LEFT JOIN squad s ON s.id = g.squad_id
        WHERE ST_Covers(g.geom, {geom_sql}) ORDER BY g.code LIMIT 1
    ) AS {alias} ON true
    """


# -- checks on core arguments ----------------------------------------------------------------------------------

def check_metres(name: str, value: float, maximum: float) -> float:
    """A number of metres > 0 and at most ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not 0 < value <= maximum:
        raise InvalidParameter(f"{name} must be a number of metres > 0 and at most {maximum:g}, got {value!r}")
    return float(value)


def check_lonlat(lon: float, lat: float, what: str = "lon/lat") -> None:
    """A WGS 84 position in degrees."""
    for name, value, limit in (("lon", lon, 180), ("lat", lat, 90)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidParameter(f"{what}: {name} must be a number, got {value!r}")
        if not -limit <= value <= limit:
            raise InvalidParameter(f"{what}: {name} must be between -{limit} and {limit}, got {value}")


def check_mode(mode: str) -> str:
    """One of :data:`MODES`."""
    if mode not in MODES:
        raise InvalidParameter(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    return mode


def check_kinds(kinds: Sequence[str] | None) -> tuple[str, ...]:
    """The requested kinds, de-duplicated in order; all kinds when None or empty."""
    if kinds is None:
        return KIND_CODES
    if isinstance(kinds, str):
        raise InvalidParameter(f"kinds must be a list of kinds, not one string; allowed kinds: {', '.join(KIND_CODES)}")
    unique = tuple(dict.fromkeys(kinds))
    unknown = [k for k in unique if k not in KIND_CODES]
    if unknown:
        raise InvalidParameter(f"unknown kind {unknown[0]!r}; allowed kinds: {', '.join(KIND_CODES)}")
    return unique or KIND_CODES


def default_radius_m(kinds: Sequence[str] | None) -> float:
    """The radius used when none is given: 300 m when only toilets are asked for, else 500 m."""
    return TOILET_RADIUS_M if kinds is not None and tuple(dict.fromkeys(kinds)) == ("toilet",) else DEFAULT_RADIUS_M


def check_radius(radius_m: float | None, kinds: Sequence[str] | None) -> float:
    """The coverage radius in metres, or the default for ``kinds``."""
    if radius_m is None:
        return default_radius_m(kinds)
    return check_metres("radius", radius_m, MAX_RADIUS_M)


def clip_bbox(bbox: BBox, extent: BBox) -> BBox | None:
    """``bbox`` cut to ``extent`` (the city's), or None when they do not meet.

    A box far larger than the city would otherwise reach the metric CRS whole, where it is no longer a valid
    polygon (and costs minutes to densify): a globe-sized box must give the same answer as the whole city.
    """
    minx, miny = max(bbox[0], extent[0]), max(bbox[1], extent[1])
    maxx, maxy = min(bbox[2], extent[2]), min(bbox[3], extent[3])
    return (minx, miny, maxx, maxy) if minx < maxx and miny < maxy else None


def check_bbox(bbox: Sequence[float] | None) -> BBox | None:
    """``(minlon, minlat, maxlon, maxlat)`` in WGS 84, or None."""
    if bbox is None:
        return None
    values = tuple(bbox)
    if len(values) != 4 or not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
        raise InvalidParameter(f"bbox must be 4 numbers minlon,minlat,maxlon,maxlat, got {bbox!r}")
    minx, miny, maxx, maxy = (float(v) for v in values)
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise InvalidParameter("bbox must be minlon,minlat,maxlon,maxlat with -180 ≤ minlon ≤ maxlon ≤ 180 and "
                               f"-90 ≤ minlat ≤ maxlat ≤ 90, got {bbox!r}")
    return (minx, miny, maxx, maxy)


def check_district(conn: Connection, district: str | None) -> str | None:
    """A 6-digit code of a district that exists, or None.

    Raises:
        InvalidParameter: not six digits.
        NotFound: no district has that code.
    """
    if district is None:
        return None
    if not (isinstance(district, str) and len(district) == 6 and district.isdigit()):
        raise InvalidParameter(f"district must be a 6-digit district code, e.g. 411002; got {district!r}")
    if conn.execute(sa.text("SELECT 1 FROM district WHERE code = :code"), {"code": district}).first() is None:
        raise NotFound(f"there is no district with code {district}")
    return district
