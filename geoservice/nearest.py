"""The nearest convenience points to a spot, by straight (geodesic) or walking distance.

Straight distance is geodesic metres on the WGS 84 spheroid. Walking distance is what a person walks: from the spot
straight to its nearest street edge, along the street network (pgRouting, between the snapped positions — see
``geoservice.network``), and from the point's snapped position straight to the point. Counting those two access
legs keeps a spot far from every street from being told a short walk.

The walking search is exact, not a heuristic on the straight order: a walk is never shorter than the straight
distance, so once k points are reached within a walking distance W, only points whose straight distance is at most
W can still be nearer, and those are routed too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geoservice import hours, navigation
from geoservice.crs import within_area_of_use
from geoservice.errors import InvalidParameter
from geoservice.query import (
    MAX_DISTANCE_M,
    MAX_K,
    MODES,
    RESPONSIBLE_COLUMNS,
    check_kinds,
    open_point_sql,
    responsible_join,
    rest_point_sql,
)
from geoservice.routing import WALK_SPEED_M_PER_MIN, walk_routes, walk_start
from geoservice.vocab import AMENITIES, AMENITY_CODES, POINT_KINDS

# Without max_distance, a walking search looks this far (straight) for candidates: about 1 h on foot.
DEFAULT_WALK_SEARCH_M = 5000.0
CANDIDATE_CAP = 500


@dataclass(frozen=True, kw_only=True)
class NearestQuery:
    """A validated nearest-point question."""

    lon: float
    lat: float
    kinds: tuple[str, ...] = ()
    amenities: tuple[str, ...] = ()
    open_now: bool = False
    vacancy: bool = False
    rest: bool = False
    k: int = 5
    max_distance_m: float | None = None
    mode: str = "straight"

    def __post_init__(self) -> None:
        if not -180 <= self.lon <= 180 or not -90 <= self.lat <= 90:
            raise InvalidParameter("lon must be within -180..180 and lat within -90..90")
        check_kinds(self.kinds)
        unknown = [a for a in self.amenities if a not in AMENITY_CODES]
        if unknown:
            raise InvalidParameter(f"unknown amenity {unknown[0]!r}; allowed amenities: {', '.join(AMENITY_CODES)}")
        if not 1 <= self.k <= MAX_K:
            raise InvalidParameter(f"k must be between 1 and {MAX_K}, got {self.k}")
        if self.max_distance_m is not None and not 0 < self.max_distance_m <= MAX_DISTANCE_M:
            raise InvalidParameter(f"max_distance must be > 0 and at most {MAX_DISTANCE_M:g} m, "
                                   f"got {self.max_distance_m}")
        if self.mode not in MODES:
            raise InvalidParameter(f"mode must be one of {', '.join(MODES)}; got {self.mode!r}")


# Metric snapping and spheroidal distances differ by the projection's scale error (< 1e-3 here): a margin.
_BOUND_MARGIN_M = 1.0

# The distance limit is applied after the index-ordered LIMIT, not inside it: inside, the planner prefers the
# ST_DWithin index scan and reads every point in the disc (thousands in a big city) before sorting. Taking the
# nearest `pool` and then dropping those beyond the limit gives the same rows.
_CANDIDATES = sa.text(f"""
    WITH spot AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography AS g)
    SELECT c.*, ST_Distance(c.geom::geography, spot.g) AS distance_m
    FROM spot, LATERAL (
        SELECT p.id, p.name, p.kind, p.amenities, p.address, p.phone, p.opening_hours, p.season, p.capacity,
               p.occupancy, p.status, p.notice, p.live_updated_at, p.geom, ST_X(p.geom) AS lon,
               ST_Y(p.geom) AS lat
        FROM point p
        WHERE {open_point_sql("p")}
          AND (NOT :rest OR {rest_point_sql("p")})
          AND p.amenities @> CAST(:amenities AS text[])
          AND (NOT :vacancy OR ('overnight' = ANY(p.amenities) AND p.capacity > coalesce(p.occupancy, 0)))
        ORDER BY p.geom::geography <-> spot.g
        LIMIT :pool
    ) c
    WHERE CAST(:within AS float8) IS NULL OR ST_DWithin(c.geom::geography, spot.g, :within)
    ORDER BY distance_m, c.id
""")

_RESPONSIBLE = sa.text(f"""
    SELECT t.id, r.*
    FROM unnest(CAST(:ids AS bigint[]), CAST(:lons AS float8[]), CAST(:lats AS float8[])) AS t(id, lon, lat)
    {responsible_join("ST_SetSRID(ST_MakePoint(t.lon, t.lat), 4326)")}
""")


def _candidates(conn: Connection, query: NearestQuery, *, within: float | None, pool: int) -> list[dict]:
    rows = conn.execute(_CANDIDATES, {
        "lon": query.lon, "lat": query.lat, "kinds": list(check_kinds(query.kinds)),
        "amenities": list(query.amenities), "vacancy": query.vacancy, "rest": query.rest, "within": within,
        "pool": pool,
    }).mappings().all()
    return [dict(r) for r in rows]


def _open_filter(rows: list[dict], now: datetime) -> list[dict]:
    for row in rows:
        row["open_now"] = hours.is_open(row["opening_hours"], row["season"], now)
    return rows


def nearest_points(conn: Connection, query: NearestQuery, *, now: datetime, metric_crs: str) -> dict:
    """The k nearest points answering ``query``, as a GeoJSON FeatureCollection ordered by distance.

    Args:
        conn: database connection.
        query: the validated question.
        now: the local time in the city's time zone (for ``open_now`` and the ``open_now`` property).
        metric_crs: the city's metric CRS ("EPSG:<code>"), in which walking positions are snapped.

    Returns:
        A FeatureCollection; each feature carries distance_m (and walk_distance_m, walk_minutes, route in walk
        mode), open_now, free places, the responsible grid and squad, and navigation links. In walk mode, when
        fewer than k points were reached, ``walk_search`` says why: the street the spot was placed on, how far
        away, and whether that street is a separate piece of the network — in which case the walk crosses
        straight to the nearest street of the rest of the network (``rejoined``) and the search is made again
        from there.
    """
    within = query.max_distance_m
    extra = {}
    if query.mode == "walk" and not within_area_of_use(metric_crs, query.lon, query.lat):
        # Far outside the city's zone no street can be reached on foot: said, not computed.
        extra["walk_search"] = {"street": None, "distance_m": None, "separate_piece": False, "piece_street_m": None,
                                "rejoined": None, "searched_m": within or DEFAULT_WALK_SEARCH_M, "wanted": query.k,
                                "found": 0, "message": "the spot is far outside the city: no street of it can be "
                                "reached on foot (mode=straight gives straight distances from anywhere)"}
        chosen = []
    elif query.mode == "walk":
        within = within or DEFAULT_WALK_SEARCH_M
        chosen = _by_walking(conn, query, now=now, limit_m=within, metric_crs=metric_crs)
        if len(chosen) < query.k:
            chosen, extra["walk_search"] = _walk_search(conn, query, chosen, now=now, limit_m=within,
                                                        metric_crs=metric_crs)
    else:
        chosen = _by_straight_distance(conn, query, now=now, within=within)
    responsible = _responsible(conn, chosen)
    features = [_feature(query, row, responsible.get(row["id"])) for row in chosen]
    return {"type": "FeatureCollection", "features": features, **extra,
            "query": {"lon": query.lon, "lat": query.lat, "mode": query.mode, "k": query.k,
                      "kinds": list(query.kinds), "amenities": list(query.amenities), "open_now": query.open_now,
                      "vacancy": query.vacancy, "rest": query.rest, "max_distance_m": query.max_distance_m}}


def _responsible(conn: Connection, rows: Sequence[dict]) -> dict[int, dict]:
    """The grid and squad at each point, by point id (points in no grid are absent)."""
    if not rows:
        return {}
    found = conn.execute(_RESPONSIBLE, {"ids": [r["id"] for r in rows], "lons": [r["lon"] for r in rows],
                                        "lats": [r["lat"] for r in rows]}).mappings()
    return {r["id"]: {c: r[c] for c in RESPONSIBLE_COLUMNS} for r in found if r["grid_code"] is not None}


def _walk_search(conn: Connection, query: NearestQuery, chosen: list[dict], *, now: datetime, limit_m: float,
                 metric_crs: str) -> tuple[list[dict], dict]:
    """Fewer than k points were reached on foot: say why, and leave a separate piece of the network if that is it.

    A spot whose street is joined to no other (a courtyard, a clipped lane) walks straight to the nearest street of
    the rest of the network; the points reached from there join those reached on the piece itself.
    """
    start = walk_start(conn, lon=query.lon, lat=query.lat, limit_m=limit_m, metric_crs=metric_crs)
    report = {"street": start.street, "distance_m": round(start.snap.offset_m, 1) if start.snap else None,
              "separate_piece": start.separate_piece,
              "piece_street_m": round(start.piece_street_m, 1) if start.separate_piece else None,
              "rejoined": None, "searched_m": limit_m, "wanted": query.k}
    if start.snap is None:
        return chosen, {**report, "found": len(chosen),
                        "message": "there are no routable streets: walking distances cannot be computed"}
    name = _street_name(start.street)
    message = f"the walk starts on {name}, {start.snap.offset_m:.0f} m from the spot"
    if start.separate_piece:
        message += (f"; {name} is a separate piece of the street network ({start.piece_street_m:.0f} m of streets "
                    "joined to no other street)")
        joined = walk_start(conn, lon=query.lon, lat=query.lat, limit_m=limit_m, metric_crs=metric_crs,
                            avoid=start.piece_edges)
        if joined.snap is not None and joined.snap.offset_m < limit_m:
            more = _by_walking(conn, query, now=now, limit_m=limit_m, metric_crs=metric_crs,
                               avoid=start.piece_edges)
            best = {r["id"]: r for r in chosen}
            for row in more:
                if row["id"] not in best or _walk_total(row["walk"]) < _walk_total(best[row["id"]]["walk"]):
                    best[row["id"]] = row
            chosen = sorted(best.values(), key=lambda r: (_walk_total(r["walk"]), r["id"]))[: query.k]
            report["rejoined"] = {"street": joined.street, "distance_m": round(joined.snap.offset_m, 1)}
            message += (f"; to reach the rest, the walk crosses {joined.snap.offset_m:.0f} m straight to "
                        f"{_street_name(joined.street)}")
        else:
            message += f", and no other street lies within {limit_m:g} m, so points elsewhere cannot be reached"
    message += f"; {len(chosen)} of {query.k} points asked for are within {limit_m:g} m on foot"
    return chosen, {**report, "found": len(chosen), "message": message}


def _street_name(street: dict) -> str:
    return street["name"] or f"street {street['id']}"


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


def _by_walking(conn: Connection, query: NearestQuery, *, now: datetime, limit_m: float, metric_crs: str,
                avoid: Sequence[int] = ()) -> list[dict]:
    """The k points nearest by walking (access legs included), routed exactly (see the module docstring)."""

    def route(batch: Sequence[dict], limit: float) -> None:
        if batch:
            routes.update(walk_routes(conn, lon=query.lon, lat=query.lat, max_distance_m=limit,
                                      metric_crs=metric_crs, avoid=avoid,
                                      targets=[(r["id"], r["lon"], r["lat"]) for r in batch]))

    def settled(limit: float) -> list[float]:
        # A point not reached within `limit` along the network walks more than `limit` in all.
        return sorted(t for t in (_walk_total(r) for r in routes.values()) if t <= limit)

    routes: dict = {}
    first = _fetch(conn, query, now=now, within=limit_m, pool=max(3 * query.k, 20))
    # The graph grows with the limit, so start near where the k-th point should be and widen until k are settled.
    limit = _first_limit(first, k=query.k, ceiling=limit_m)
    while True:
        route([r for r in first if r["id"] not in routes], limit)
        if len(settled(limit)) >= query.k or limit >= limit_m:
            break
        limit = min(2 * limit, limit_m)
    seen = frozenset(r["id"] for r in first)
    done = settled(limit)
    if len(done) >= query.k:
        kth = done[query.k - 1]
        rest = _fetch(conn, query, now=now, within=kth + _BOUND_MARGIN_M, pool=CANDIDATE_CAP, exclude=seen)
        route(rest, kth)
    else:
        rest = _fetch(conn, query, now=now, within=limit_m, pool=CANDIDATE_CAP, exclude=seen)
        route(rest, limit_m)
    reached = [dict(r, walk=routes[r["id"]]) for r in first + rest
               if r["id"] in routes and _walk_total(routes[r["id"]]) <= limit_m]
    reached.sort(key=lambda r: (_walk_total(r["walk"]), r["id"]))
    return reached[: query.k]


def _walk_total(route) -> float:
    return route.spot_offset_m + route.distance_m + route.target_offset_m


def _first_limit(rows: Sequence[dict], *, k: int, ceiling: float) -> float:
    """A first walking limit: twice the straight distance of the k-th candidate, at least 300 m."""
    if len(rows) < k:
        return ceiling
    return min(max(2 * rows[k - 1]["distance_m"] + _BOUND_MARGIN_M, 300.0), ceiling)


def _feature(query: NearestQuery, row: dict, responsible: dict | None) -> dict:
    kinds = {t.code: t for t in POINT_KINDS}
    amenity_terms = {t.code: t for t in AMENITIES}
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
        "notice": row["notice"], "live_updated_at": row["live_updated_at"].isoformat(),
        "distance_m": round(row["distance_m"], 1),
        "grid": responsible,
        "navigation": navigation.links(lon=row["lon"], lat=row["lat"], name=row["name"],
                                       origin=(query.lon, query.lat)),
    }
    if "walk" in row:
        props.update(_walk_properties(row["walk"], spot=(query.lon, query.lat), point=(row["lon"], row["lat"])))
    return {"type": "Feature", "id": row["id"],
            "geometry": {"type": "Point", "coordinates": [row["lon"], row["lat"]]}, "properties": props}


def _walk_properties(walk, *, spot: tuple[float, float], point: tuple[float, float]) -> dict:
    """walk_distance_m and walk_minutes of the whole walk, its parts, and the route from the spot to the point."""
    total = _walk_total(walk)
    # The access legs are straight lines from the spot onto the street and from the street to the point.
    coordinates = [list(spot), *walk.geometry["coordinates"], list(point)]
    return {"walk_distance_m": round(total, 1), "walk_minutes": round(total / WALK_SPEED_M_PER_MIN, 1),
            "walk_network_m": round(walk.distance_m, 1),
            "walk_access_m": round(walk.spot_offset_m + walk.target_offset_m, 1),
            "route": {"type": "LineString", "coordinates": coordinates}}
