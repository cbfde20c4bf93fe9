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
    REST_KINDS,
    check_kinds,
    distance_box_sql,
    in_box_sql,
    responsible_join,
    rest_point_sql,
)
from geoservice.routing import WALK_SPEED_M_PER_MIN, walk_routes, walk_start
from geoservice.vocab import AMENITIES, AMENITY_CODES, KIND_CODES, POINT_KINDS

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
# A millimetre added to a spheroidal bound, so the point that set it is not lost to rounding.
_ROUNDING_M = 0.001

_SPOT = "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)"
_DISTANCE = f"ST_Distance(p.geom::geography, {_SPOT}::geography)"
_COLUMNS = """p.id, p.name, p.kind, p.amenities, p.address, p.phone, p.opening_hours, p.season, p.capacity,
              p.occupancy, p.notice, p.live_updated_at, p.geom"""
_LIGHT_COLUMNS = "p.id, p.opening_hours, p.season, ST_X(p.geom) AS lon, ST_Y(p.geom) AS lat"


def _filters_sql(*, kind: str | None) -> str:
    """The SQL filters of a nearest question on ``point p``.

    Open, of ``kind`` (an SQL condition on ``p.kind``; None when every kind is asked for), with every amenity of
    ``:amenities``, a rest point when ``:rest``, free places when ``:vacancy``, with opening hours when ``:hours``
    (points without hours are never open now: ``hours.is_open`` says None). Vacancy's "offers overnight stays" is
    among ``:amenities`` (see :func:`_params`), so the amenities index serves it too. Booleans arrive as literals,
    and the planner drops the branches they switch off.
    """
    return f"""p.status = 'open' {f"AND {kind}" if kind else ""}
          AND p.amenities @> CAST(:amenities AS text[])
          AND (NOT :rest OR {rest_point_sql("p")})
          AND (NOT :vacancy OR p.capacity > coalesce(p.occupancy, 0))
          AND (NOT :hours OR p.opening_hours <> '')"""


def _knn_sql(*, of_kinds: bool, columns: str, limit: str, near: str = "") -> str:
    """The first ``limit`` matching points in index order (lon/lat degrees), with their geodesic ``distance_m``.

    ``near``: an extra (indexable) condition. With some kinds, each kind is walked on its own in the (kind, geom)
    index (migration 0005) and the lists merged: a GiST scan cannot take ``kind = ANY(…)`` as an index condition
    and would read past every point of the other kinds.
    """
    select = f"SELECT {columns}, {_DISTANCE} AS distance_m FROM point p"
    order = f"ORDER BY p.geom <-> {_SPOT} LIMIT {limit}"
    if not of_kinds:
        return f"{select} WHERE {_filters_sql(kind=None)} {near} {order}"
    return f"""
        SELECT c.* FROM unnest(CAST(:kinds AS text[])) AS kk(kind)
        CROSS JOIN LATERAL ({select} WHERE {_filters_sql(kind="p.kind = kk.kind")} {near} {order}) AS c
        ORDER BY c.distance_m, c.id LIMIT {limit}"""


def _kinds_sql(of_kinds: bool) -> str | None:
    return "p.kind = ANY(CAST(:kinds AS text[]))" if of_kinds else None


def _straight_sql(*, of_kinds: bool) -> sa.TextClause:
    """The k nearest with their grid and squad, in one statement (the argument: :func:`_by_straight_distance`)."""
    return sa.text(f"""
    WITH knn AS ({_knn_sql(of_kinds=of_kinds, columns="p.id", limit=":k")}),
    box AS MATERIALIZED ({distance_box_sql(
        f"least((SELECT max(distance_m) + {_ROUNDING_M} FROM knn), CAST(:within AS float8))")}),
    ranked AS (
        SELECT {_COLUMNS}, {_DISTANCE} AS distance_m
        FROM point p
        WHERE {_filters_sql(kind=_kinds_sql(of_kinds))}
          AND {in_box_sql("p.geom", "box")} AND {_DISTANCE} <= (SELECT m FROM box)
        ORDER BY distance_m, p.id
        LIMIT :k
    )
    SELECT r.*, ST_X(r.geom) AS lon, ST_Y(r.geom) AS lat, {", ".join(f"g.{c}" for c in RESPONSIBLE_COLUMNS)}
    FROM ranked r
    {responsible_join("r.geom", alias="g")}
    ORDER BY r.distance_m, r.id
""")


def _pool_sql(*, of_kinds: bool) -> sa.TextClause:
    """The ``:pool`` matching points first in index order, within ``:within`` metres when given: id, hours, place."""
    near = f"AND (CAST(:within AS float8) IS NULL OR {in_box_sql('p.geom', 'box')} AND {_DISTANCE} <= :within)"
    return sa.text(f"""
    WITH box AS MATERIALIZED ({distance_box_sql("CAST(:within AS float8)")})
    SELECT * FROM ({_knn_sql(of_kinds=of_kinds, columns=_LIGHT_COLUMNS, limit=":pool", near=near)}) AS pool
    """)


# Every matching point within ``:within`` metres but those of ``:exclude``: those a bound says may still be nearer.
def _within_sql(*, of_kinds: bool) -> sa.TextClause:
    return sa.text(f"""
    WITH box AS MATERIALIZED ({distance_box_sql("CAST(:within AS float8)")})
    SELECT {_LIGHT_COLUMNS}, {_DISTANCE} AS distance_m
    FROM point p
    WHERE {_filters_sql(kind=_kinds_sql(of_kinds))}
      AND {in_box_sql("p.geom", "box")} AND {_DISTANCE} <= :within AND NOT p.id = ANY(CAST(:exclude AS int[]))
    """)


_STRAIGHT = {of_kinds: _straight_sql(of_kinds=of_kinds) for of_kinds in (False, True)}
_POOL = {of_kinds: _pool_sql(of_kinds=of_kinds) for of_kinds in (False, True)}
_WITHIN = {of_kinds: _within_sql(of_kinds=of_kinds) for of_kinds in (False, True)}

# The answer's rows by id, with their grid and squad.
_ROWS = sa.text(f"""
    SELECT {_COLUMNS}, {_DISTANCE} AS distance_m, ST_X(p.geom) AS lon, ST_Y(p.geom) AS lat,
           {", ".join(f"g.{c}" for c in RESPONSIBLE_COLUMNS)}
    FROM point p
    {responsible_join("p.geom", alias="g")}
    WHERE p.id = ANY(CAST(:ids AS int[]))
""")


def _kinds(query: NearestQuery) -> tuple[str, ...]:
    """The kinds that can answer: those asked for (all when none), only rest kinds when rest points are asked for."""
    kinds = check_kinds(query.kinds)
    return tuple(k for k in kinds if k in REST_KINDS) if query.rest else kinds


def _params(query: NearestQuery) -> dict:
    """The bound parameters of the filters (see :func:`_filters_sql`)."""
    kinds = _kinds(query)
    amenities = list(dict.fromkeys([*query.amenities, *(["overnight"] if query.vacancy else [])]))
    return {"lon": query.lon, "lat": query.lat, "kinds": list(kinds), "amenities": amenities,
            "vacancy": query.vacancy, "rest": query.rest, "hours": query.open_now}


def _of_kinds(query: NearestQuery) -> bool:
    """Whether the question names fewer than every kind (the vocabulary is a constraint: all kinds is no filter)."""
    return set(_kinds(query)) != set(KIND_CODES)


def _pool(conn: Connection, query: NearestQuery, *, now: datetime, pool: int, within: float | None) -> list[dict]:
    """:data:`_POOL` with ``open_now`` set on each row; sorted by spheroidal distance (then id)."""
    rows = conn.execute(_POOL[_of_kinds(query)], {**_params(query), "pool": pool, "within": within}).mappings().all()
    return sorted(_open_filter([dict(r) for r in rows], now), key=_by_distance)


def _within(conn: Connection, query: NearestQuery, *, now: datetime, within: float,
            exclude: Sequence[int]) -> list[dict]:
    """:data:`_WITHIN` with ``open_now`` set on each row; sorted by spheroidal distance (then id)."""
    rows = conn.execute(_WITHIN[_of_kinds(query)], {**_params(query), "within": within,
                                                    "exclude": list(exclude)}).mappings().all()
    return sorted(_open_filter([dict(r) for r in rows], now), key=_by_distance)


def _rows(conn: Connection, query: NearestQuery, ids: Sequence[int], *, now: datetime) -> dict[int, dict]:
    """The full rows of ``ids`` (with grid, squad and ``open_now``), by id."""
    if not ids:
        return {}
    rows = conn.execute(_ROWS, {"lon": query.lon, "lat": query.lat, "ids": list(ids)}).mappings().all()
    return {r["id"]: r for r in _open_filter([dict(r) for r in rows], now)}


def _by_distance(row: dict) -> tuple[float, int]:
    return row["distance_m"], row["id"]


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
    features = [_feature(query, row) for row in chosen]
    return {"type": "FeatureCollection", "features": features, **extra,
            "query": {"lon": query.lon, "lat": query.lat, "mode": query.mode, "k": query.k,
                      "kinds": list(query.kinds), "amenities": list(query.amenities), "open_now": query.open_now,
                      "vacancy": query.vacancy, "rest": query.rest, "max_distance_m": query.max_distance_m}}


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


def _open_only(query: NearestQuery, rows: list[dict]) -> list[dict]:
    """``rows`` without those closed now, when the question asks for points open now."""
    return [r for r in rows if r["open_now"]] if query.open_now else rows


def _by_straight_distance(conn: Connection, query: NearestQuery, *, now: datetime,
                          within: float | None) -> list[dict]:
    """The k points nearest on the spheroid, with their grid and squad.

    The index orders by distance on a sphere, which can rank two points differently from the spheroid (by up to
    about 0.5 %). So the index's first k give an upper bound on the k-th spheroidal distance (k points lie within
    it), and every point within that bound is then ranked exactly — all in one statement. ``open_now`` cannot be
    said in SQL (:func:`geoservice.hours.is_open`): see :func:`_open_now_by_straight_distance`.
    """
    if query.open_now:
        return _open_now_by_straight_distance(conn, query, now=now, within=within)
    rows = conn.execute(_STRAIGHT[_of_kinds(query)], {**_params(query), "k": query.k, "within": within})
    return _open_filter([dict(r) for r in rows.mappings()], now)


def _open_now_by_straight_distance(conn: Connection, query: NearestQuery, *, now: datetime,
                                   within: float | None) -> list[dict]:
    """The k nearest points open now: a pool in index order, checked in Python, then a bound made exact.

    A pool of the nearest points with opening hours grows until it holds k open ones or every candidate; the
    k-th open one's spheroidal distance then bounds the answer, and the points within that bound the pool did not
    hold (possible where the sphere and the spheroid disagree at the pool's edge) are checked too.
    """
    pool = CANDIDATE_CAP
    while True:
        rows = _pool(conn, query, now=now, pool=pool, within=within)
        held = len(rows) < pool
        found = [r for r in rows if r["open_now"]]
        if len(found) >= query.k or held:
            break
        pool *= 4
    if len(found) >= query.k and not held:
        bound = found[query.k - 1]["distance_m"] + _ROUNDING_M
        missed = _within(conn, query, now=now, within=bound, exclude=[r["id"] for r in rows])
        found = sorted(found + [r for r in missed if r["open_now"]], key=_by_distance)
    chosen = [r["id"] for r in found[: query.k]]
    full = _rows(conn, query, chosen, now=now)
    return [full[i] for i in chosen]


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
    first = _open_only(query, _pool(conn, query, now=now, within=limit_m, pool=max(3 * query.k, 20)))
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
        rest = _open_only(query, _within(conn, query, now=now, within=kth + _BOUND_MARGIN_M, exclude=seen))
        route(rest, kth)
    else:
        rest = [r for r in _open_only(query, _pool(conn, query, now=now, within=limit_m, pool=CANDIDATE_CAP))
                if r["id"] not in seen]
        route(rest, limit_m)
    reached = sorted((r["id"] for r in first + rest if r["id"] in routes and _walk_total(routes[r["id"]]) <= limit_m),
                     key=lambda i: (_walk_total(routes[i]), i))[: query.k]
    full = _rows(conn, query, reached, now=now)
    return [dict(full[i], walk=routes[i]) for i in reached]


def _walk_total(route) -> float:
    return route.spot_offset_m + route.distance_m + route.target_offset_m


def _first_limit(rows: Sequence[dict], *, k: int, ceiling: float) -> float:
    """A first walking limit: twice the straight distance of the k-th candidate, at least 300 m."""
    if len(rows) < k:
        return ceiling
    return min(max(2 * rows[k - 1]["distance_m"] + _BOUND_MARGIN_M, 300.0), ceiling)


def _feature(query: NearestQuery, row: dict) -> dict:
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
        "grid": {c: row[c] for c in RESPONSIBLE_COLUMNS} if row["grid_code"] is not None else None,
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
