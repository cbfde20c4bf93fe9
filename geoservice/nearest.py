"""The nearest convenience points to a spot, by straight (geodesic) or walking distance.

Straight distance is geodesic metres on the WGS 84 spheroid. Walking distance is along the street network from
the spot snapped onto its nearest street edge to each point snapped the same way (see ``geoservice.network``).

The walking search is exact, not a heuristic on the straight order. The network distance between two snapped
positions is at least their straight distance, and each snapped position lies within its offset (distance to its
nearest street) of the spot or point itself. So once k points are reached within a walking distance W, a point can
still be nearer only if its straight distance minus both offsets is at most W, and those points are routed too.
The same bound widens the ``max_distance`` filter in walking mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geoservice import hours, navigation
from geoservice.errors import InvalidParameter
from geoservice.vocab import AMENITIES, AMENITY_CODES, KIND_CODES, POINT_KINDS

MODES = ("straight", "walk")
MAX_K = 50
# Without max_distance, a walking search looks this far (straight) for candidates: about 1 h on foot.
DEFAULT_WALK_SEARCH_M = 5000.0
CANDIDATE_CAP = 500
# Points stand beside a street; one farther than this from every street is not found past the walking limit.
MAX_POINT_OFFSET_M = 200.0


@dataclass(frozen=True, kw_only=True)
class NearestQuery:
    """A validated nearest-point question."""

    lon: float
    lat: float
    kinds: tuple[str, ...] = ()
    amenities: tuple[str, ...] = ()
    open_now: bool = False
    vacancy: bool = False
    k: int = 5
    max_distance_m: float | None = None
    mode: str = "straight"

    def __post_init__(self) -> None:
        if not -180 <= self.lon <= 180 or not -90 <= self.lat <= 90:
            raise InvalidParameter("lon must be within -180..180 and lat within -90..90")
        unknown = [k for k in self.kinds if k not in KIND_CODES]
        if unknown:
            raise InvalidParameter(f"unknown kind {unknown[0]!r}; allowed kinds: {', '.join(KIND_CODES)}")
        unknown = [a for a in self.amenities if a not in AMENITY_CODES]
        if unknown:
            raise InvalidParameter(f"unknown amenity {unknown[0]!r}; allowed amenities: {', '.join(AMENITY_CODES)}")
        if not 1 <= self.k <= MAX_K:
            raise InvalidParameter(f"k must be between 1 and {MAX_K}, got {self.k}")
        if self.max_distance_m is not None and not 0 < self.max_distance_m <= 100_000:
            raise InvalidParameter(f"max_distance must be > 0 and at most 100000 m, got {self.max_distance_m}")
        if self.mode not in MODES:
            raise InvalidParameter(f"mode must be one of {', '.join(MODES)}; got {self.mode!r}")


# Metres of a position to its nearest street: the street nearest by the index's planar order, measured on the
# spheroid. That street is at least as far as the truly nearest one, so this bounds the snap offset from above.
_STREET_OFFSET = """(
    SELECT ST_Distance(s.geom::geography, {g}::geography) FROM street s
    WHERE s.source IS NOT NULL ORDER BY s.geom <-> {g} LIMIT 1)"""
# Metric snapping and spheroidal distances differ by the projection's scale error (< 1e-3 here): a margin.
_BOUND_MARGIN_M = 1.0

# The distance limit is applied after the index-ordered LIMIT, not inside it: inside, the planner prefers the
# ST_DWithin index scan and reads every point in the disc (thousands in a big city) before sorting. Taking the
# nearest `pool` and then dropping those beyond the limit gives the same rows.
_CANDIDATES = sa.text("""
    WITH spot AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography AS g)
    SELECT c.*, ST_Distance(c.geom::geography, spot.g) AS distance_m
    FROM spot, LATERAL (
        SELECT p.id, p.name, p.kind, p.amenities, p.address, p.phone, p.opening_hours, p.season, p.capacity,
               p.occupancy, p.status, p.geom, ST_X(p.geom) AS lon, ST_Y(p.geom) AS lat
        FROM point p
        WHERE p.status = 'open'
          AND (cardinality(CAST(:kinds AS text[])) = 0 OR p.kind = ANY(CAST(:kinds AS text[])))
          AND p.amenities @> CAST(:amenities AS text[])
          AND (NOT :vacancy OR ('overnight' = ANY(p.amenities) AND p.capacity > coalesce(p.occupancy, 0)))
        ORDER BY p.geom::geography <-> spot.g
        LIMIT :pool
    ) c
    WHERE CAST(:within AS float8) IS NULL OR ST_DWithin(c.geom::geography, spot.g, :within)
    ORDER BY distance_m, c.id
""")

_SPOT_OFFSET = sa.text("SELECT " + _STREET_OFFSET.format(g="ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)"))
_POINT_OFFSETS = sa.text(f"""
    SELECT p.id, {_STREET_OFFSET.format(g="p.geom")} AS offset_m FROM point p WHERE p.id = ANY(CAST(:ids AS bigint[]))
""")

_RESPONSIBLE = sa.text("""
    SELECT g.code AS grid_code, g.name AS grid_name, g.officer_name, g.officer_phone,
           s.name AS squad_name, s.leader AS squad_leader, s.phone AS squad_phone
    FROM grid g LEFT JOIN squad s ON s.id = g.squad_id
    WHERE ST_Covers(g.geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))
    ORDER BY g.code LIMIT 1
""")


def _candidates(conn: Connection, query: NearestQuery, *, within: float | None, pool: int) -> list[dict]:
    rows = conn.execute(_CANDIDATES, {
        "lon": query.lon, "lat": query.lat, "kinds": list(query.kinds), "amenities": list(query.amenities),
        "vacancy": query.vacancy, "within": within, "pool": pool,
    }).mappings().all()
    return [dict(r) for r in rows]


def _open_filter(rows: list[dict], now: datetime) -> list[dict]:
    for row in rows:
        row["open_now"] = hours.is_open(row["opening_hours"], row["season"], now)
    return rows


def nearest_points(conn: Connection, query: NearestQuery, *, now: datetime) -> dict:
    """The k nearest points answering ``query``, as a GeoJSON FeatureCollection ordered by distance.

    Args:
        conn: database connection.
        query: the validated question.
        now: the local time in the city's time zone (for ``open_now`` and the ``open_now`` property).

    Returns:
        A FeatureCollection; each feature carries distance_m (and walk_distance_m, walk_minutes, route in walk
        mode), open_now, free places, the responsible grid and squad, and navigation links.
    """
    within = query.max_distance_m
    spot_offset = 0.0
    if query.mode == "walk":
        within = within or DEFAULT_WALK_SEARCH_M
        spot_offset = conn.execute(_SPOT_OFFSET, {"lon": query.lon, "lat": query.lat}).scalar_one() or 0.0
    if query.mode == "walk":
        # A point up to both offsets farther than the walking limit may still be within it along the network.
        search = within + spot_offset + MAX_POINT_OFFSET_M
        chosen = _by_walking(conn, query, now=now, limit_m=within, search_m=search, spot_offset_m=spot_offset)
    else:
        chosen = _by_straight_distance(conn, query, now=now, within=within)
    features = [_feature(conn, query, row) for row in chosen]
    return {"type": "FeatureCollection", "features": features,
            "query": {"lon": query.lon, "lat": query.lat, "mode": query.mode, "k": query.k,
                      "kinds": list(query.kinds), "amenities": list(query.amenities), "open_now": query.open_now,
                      "vacancy": query.vacancy, "max_distance_m": query.max_distance_m}}


def _fetch(conn: Connection, query: NearestQuery, *, now: datetime, within: float | None, pool: int,
           exclude: frozenset[int] = frozenset()) -> list[dict]:
    """Candidates nearest by straight distance, with ``open_now`` set (and applied when asked)."""
    rows = [r for r in _open_filter(_candidates(conn, query, within=within, pool=pool), now) if r["id"] not in exclude]
    return [r for r in rows if r["open_now"]] if query.open_now else rows


def _by_straight_distance(conn: Connection, query: NearestQuery, *, now: datetime,
                          within: float | None) -> list[dict]:
    """The k points nearest on the spheroid.

    The index orders by distance on a sphere, which can rank two points differently from the spheroid (by up to
    about 0.5 %). So the index's first k give an upper bound on the k-th spheroidal distance, and every point
    within that bound is then ranked exactly.
    """
    rows = _fetch(conn, query, now=now, within=within, pool=CANDIDATE_CAP if query.open_now else query.k)
    if len(rows) < query.k:
        return rows
    bound = rows[query.k - 1]["distance_m"] + 0.001  # a millimetre, so the k-th itself is not lost to rounding
    return _fetch(conn, query, now=now, within=bound, pool=CANDIDATE_CAP)[: query.k]


def _by_walking(conn: Connection, query: NearestQuery, *, now: datetime, limit_m: float, search_m: float,
                spot_offset_m: float) -> list[dict]:
    """The k points nearest by walking, routed exactly (see the module docstring)."""
    from geoservice.network import walk_routes

    def route(batch: Sequence[dict], limit: float) -> None:
        if batch:
            found = walk_routes(conn, lon=query.lon, lat=query.lat, max_distance_m=limit,
                                targets=[(r["id"], r["lon"], r["lat"]) for r in batch])
            routes.update(found)

    routes: dict = {}
    first_pool = max(3 * query.k, 20)
    first = _fetch(conn, query, now=now, within=search_m, pool=first_pool)
    # The graph grows with the limit, so start near where the k-th point should be and widen until k are reached;
    # a route found within a limit is the same as with any larger one.
    limit = _first_limit(first, k=query.k, spot_offset_m=spot_offset_m, ceiling=limit_m)
    while True:
        route([r for r in first if r["id"] not in routes], limit)
        if len(routes) >= query.k or limit >= limit_m:
            break
        limit = min(2 * limit, limit_m)
    seen = frozenset(r["id"] for r in first)
    rest: list[dict] = []
    if len(routes) >= query.k:
        kth = sorted(r.distance_m for r in routes.values())[query.k - 1]
        bound = kth + spot_offset_m + _BOUND_MARGIN_M
        rest = _fetch(conn, query, now=now, within=min(search_m, bound + MAX_POINT_OFFSET_M), pool=CANDIDATE_CAP,
                      exclude=seen)
        offsets = dict(conn.execute(_POINT_OFFSETS, {"ids": [r["id"] for r in rest]}).all()) if rest else {}
        route([r for r in rest if r["distance_m"] - (offsets[r["id"]] or 0.0) <= bound], kth)
    else:
        rest = _fetch(conn, query, now=now, within=search_m, pool=CANDIDATE_CAP, exclude=seen)
        route(rest, limit_m)
    rows = first + rest
    reached = [dict(r, walk=routes[r["id"]]) for r in rows if r["id"] in routes]
    reached.sort(key=lambda r: (r["walk"].distance_m, r["id"]))
    return reached[: query.k]


def _first_limit(rows: Sequence[dict], *, k: int, spot_offset_m: float, ceiling: float) -> float:
    """A first walking limit: twice the straight distance of the k-th candidate, at least 300 m."""
    if len(rows) < k:
        return ceiling
    guess = 2 * (rows[k - 1]["distance_m"] + spot_offset_m) + _BOUND_MARGIN_M
    return min(max(guess, 300.0), ceiling)


def _feature(conn: Connection, query: NearestQuery, row: dict) -> dict:
    kinds = {t.code: t for t in POINT_KINDS}
    amenity_terms = {t.code: t for t in AMENITIES}
    responsible = conn.execute(_RESPONSIBLE, {"lon": row["lon"], "lat": row["lat"]}).mappings().first()
    free = row["capacity"] - (row["occupancy"] or 0) if row["capacity"] is not None else None
    props = {
        "id": row["id"], "name": row["name"], "kind": row["kind"],
        "kind_label": {"zh": kinds[row["kind"]].zh, "en": kinds[row["kind"]].en},
        "amenities": row["amenities"],
        "amenity_labels": [{"code": a, "zh": amenity_terms[a].zh, "en": amenity_terms[a].en}
                           for a in row["amenities"]],
        "address": row["address"], "phone": row["phone"], "opening_hours": row["opening_hours"],
        "season": row["season"], "open_now": row["open_now"], "capacity": row["capacity"],
        "occupancy": row["occupancy"], "free_places": free,
        "distance_m": round(row["distance_m"], 1),
        "grid": dict(responsible) if responsible else None,
        "navigation": navigation.links(lon=row["lon"], lat=row["lat"], name=row["name"],
                                       origin=(query.lon, query.lat)),
    }
    if "walk" in row:
        walk = row["walk"]
        props.update(walk_distance_m=round(walk.distance_m, 1), walk_minutes=round(walk.minutes, 1),
                     route=walk.geometry)
    return {"type": "Feature", "id": row["id"],
            "geometry": {"type": "Point", "coordinates": [row["lon"], row["lat"]]}, "properties": props}
