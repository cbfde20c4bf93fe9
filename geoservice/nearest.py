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
from pyproj import Geod
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
    in_distance_box_sql,
    responsible_join,
    rest_point_sql,
)
from geoservice.routing import WALK_SPEED_M_PER_MIN, routes_to_positions, snap_from_row, snap_sql, walk_start
from geoservice.spatial import BOX_MARGIN_M, box_around, box_params, metric_srid
from geoservice.vocab import AMENITIES, AMENITY_CODES, KIND_CODES, POINT_KINDS

_GEOD = Geod(ellps="WGS84")
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
          AND {in_distance_box_sql("p.geom", "box")} AND {_DISTANCE} <= (SELECT m FROM box)
        ORDER BY distance_m, p.id
        LIMIT :k
    )
    SELECT r.*, ST_X(r.geom) AS lon, ST_Y(r.geom) AS lat, {", ".join(f"g.{c}" for c in RESPONSIBLE_COLUMNS)}
    FROM ranked r
    {responsible_join("r.geom", alias="g")}
    ORDER BY r.distance_m, r.id
""")


def _pool_sql(*, of_kinds: bool) -> sa.TextClause:
    """The ``:pool`` matching points first in index order: id, hours, position, distance.

    A distance limit is applied by the caller, after the LIMIT: inside, the planner cannot tell how much of the
    city the limit holds and may read every point in it to sort them.
    """
    return sa.text(_knn_sql(of_kinds=of_kinds, columns=_LIGHT_COLUMNS, limit=":pool"))


# Every matching point within ``:within`` metres but those of ``:exclude``: those a bound says may still be nearer.
def _within_sql(*, of_kinds: bool) -> sa.TextClause:
    return sa.text(f"""
    WITH box AS MATERIALIZED ({distance_box_sql("CAST(:within AS float8)")})
    SELECT {_LIGHT_COLUMNS}, {_DISTANCE} AS distance_m
    FROM point p
    WHERE {_filters_sql(kind=_kinds_sql(of_kinds))}
      AND {in_distance_box_sql("p.geom", "box")} AND {_DISTANCE} <= :within
      AND NOT p.id = ANY(CAST(:exclude AS int[]))
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


def _pool(conn: Connection, query: NearestQuery, *, now: datetime, pool: int) -> list[dict]:
    """:data:`_POOL` with ``open_now`` set on each row; sorted by spheroidal distance (then id)."""
    rows = conn.execute(_POOL[_of_kinds(query)], {**_params(query), "pool": pool}).mappings().all()
    return sorted(_open_filter([dict(r) for r in rows], now), key=_by_distance)


def _nearer(rows: list[dict], within: float | None) -> list[dict]:
    """``rows`` no farther than ``within`` metres (all when None)."""
    return rows if within is None else [r for r in rows if r["distance_m"] <= within]


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
    places = navigation.links_to_each([(r["lon"], r["lat"], r["name"]) for r in chosen], origin=(query.lon, query.lat))
    features = [_feature(query, row, place) for row, place in zip(chosen, places, strict=True)]
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
        rows = _pool(conn, query, now=now, pool=pool)
        complete = len(rows) < pool  # every candidate there is
        found = _nearer([r for r in rows if r["open_now"]], within)
        if len(found) >= query.k or complete:
            break
        if within is not None:  # the limit bounds the work: every candidate within it, at once
            more = _within(conn, query, now=now, within=within, exclude=[r["id"] for r in rows])
            found, complete = sorted(found + [r for r in more if r["open_now"]], key=_by_distance), True
            break
        pool *= 4
    if len(found) >= query.k and not complete:
        bound = found[query.k - 1]["distance_m"] + _ROUNDING_M
        missed = _within(conn, query, now=now, within=bound, exclude=[r["id"] for r in rows])
        found = sorted(found + [r for r in missed if r["open_now"]], key=_by_distance)
    chosen = [r["id"] for r in found[: query.k]]
    full = _rows(conn, query, chosen, now=now)
    return [full[i] for i in chosen]


def _walk_candidates_sql(*, of_kinds: bool) -> sa.TextClause:
    """Every matching point within a radius (hours, position, straight ``distance_m``), and the spot snapped.

    The radius is ``:radius``, or else ``:reach`` × the k-th straight distance + ``:slack``; never beyond
    ``:limit``; it comes back as ``radius_m``. The spot's row (``key`` 0, no point) carries its snap
    (:func:`geoservice.routing.snap_sql`), avoiding the edges ``:exclude``.
    """
    radius = ("least(coalesce(CAST(:radius AS float8), "
              "CAST(:reach AS float8) * (SELECT max(distance_m) FROM knn) + :slack), CAST(:limit AS float8))")
    return sa.text(f"""
    WITH knn AS ({_knn_sql(of_kinds=of_kinds, columns="p.id", limit=":k")}),
    box AS MATERIALIZED ({distance_box_sql(radius)}),
    positions AS (SELECT 0::bigint AS key, {_SPOT} AS g),
    spot AS ({snap_sql("positions")})
    SELECT spot.*, NULL::int AS id, NULL AS opening_hours, NULL AS season, NULL::float8 AS lon, NULL::float8 AS lat,
           NULL::float8 AS distance_m, (SELECT m FROM box) AS radius_m
    FROM spot
    UNION ALL
    SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, {_LIGHT_COLUMNS}, {_DISTANCE}, NULL
    FROM point p
    WHERE {_filters_sql(kind=_kinds_sql(of_kinds))}
      AND {in_distance_box_sql("p.geom", "box")} AND {_DISTANCE} <= (SELECT m FROM box)
""")


_WALK_CANDIDATES = {of_kinds: _walk_candidates_sql(of_kinds=of_kinds) for of_kinds in (False, True)}
# The points gathered reach this many times the k-th straight distance, plus the slack. Measured on the
# 100,000-point city (k = 3): the k-th walk is 1.5 times the k-th straight distance at the median, and within
# 2 × + 60 m for all but one spot in a hundred; so the search very seldom widens. The nearest 2k + 2 of them are
# routed first: about as many lie within 1.5 times the k-th straight distance.
_WALK_REACH = 2.0
_WALK_SLACK_M = 60.0
_WALK_FIRST_ROUTED = 2


def _by_walking(conn: Connection, query: NearestQuery, *, now: datetime, limit_m: float, metric_crs: str,
                avoid: Sequence[int] = ()) -> list[dict]:
    """The k points nearest by walking (access legs included), routed exactly.

    A walk is never shorter than the straight line (up to the snapping's scale error, ``_BOUND_MARGIN_M``). So the
    matching points within a straight radius R are gathered (one statement, with the spot's snap), the nearest of
    them routed (one statement, snapping them too: the graph is the streets within R of the spot); once k walks of
    at most W are found, the gathered points straight within W + margin not yet routed are routed too, and no
    other can be nearer on foot — provided W + margin ≤ R; otherwise R doubles, up to ``limit_m``.
    """
    srid = _srid(conn, metric_crs)
    radius = None
    while True:
        found = _walks_within(conn, query, now=now, radius=radius, limit_m=limit_m, srid=srid, avoid=avoid)
        if found is None:  # no routable street, or no matching point at all
            return []
        radius, routes = found
        # Within the last radius only what the straight bound vouches for; at the limit, every walk up to it.
        cutoff = limit_m if radius >= limit_m else radius - _BOUND_MARGIN_M
        reached = [i for i, r in routes.items() if _walk_total(r) <= cutoff]
        if len(reached) >= query.k or radius >= limit_m:
            break
        radius = min(2 * radius, limit_m)
    reached = sorted(reached, key=lambda i: (_walk_total(routes[i]), i))[: query.k]
    full = _rows(conn, query, reached, now=now)
    return [dict(full[i], walk=routes[i]) for i in reached]


_SRIDS: dict[tuple[str, str], int] = {}


def _srid(conn: Connection, metric_crs: str) -> int:
    """:func:`geoservice.spatial.metric_srid`, asked once per database and CRS (it is a round trip per walk)."""
    key = (conn.engine.url.render_as_string(), metric_crs)
    if key not in _SRIDS:
        _SRIDS[key] = metric_srid(conn, metric_crs)
    return _SRIDS[key]


def _walks_within(conn: Connection, query: NearestQuery, *, now: datetime, radius: float | None, limit_m: float,
                  srid: int, avoid: Sequence[int]) -> tuple[float, dict] | None:
    """The radius searched, and the walks to every point straight within it that may be among the k nearest.

    None when no street is routable or no point matches at all.
    """
    rows = conn.execute(_WALK_CANDIDATES[_of_kinds(query)], {
        **_params(query), "k": query.k, "radius": radius, "reach": _WALK_REACH, "slack": _WALK_SLACK_M,
        "limit": limit_m, "srid": srid, "exclude": list(avoid), **box_params(None)}).mappings().all()
    spot = next((snap_from_row(r) for r in rows if r["key"] == 0), None)
    radius = next((r["radius_m"] for r in rows if r["key"] == 0), None)
    if spot is None or radius is None:
        return None
    gathered = _open_only(query, _open_filter([dict(r) for r in rows if r["key"] is None], now))
    # A lower bound of each walk: the straight line, and the access leg plus the straight line from where it meets
    # the street (the rest of the walk is never shorter) — much the larger for a spot far from every street.
    foot = next(r for r in rows if r["key"] == 0)
    if gathered:
        from_foot = _GEOD.inv([foot["foot_lon"]] * len(gathered), [foot["foot_lat"]] * len(gathered),
                              [r["lon"] for r in gathered], [r["lat"] for r in gathered])[2]
        for r, d in zip(gathered, from_foot, strict=True):
            r["at_least_m"] = max(r["distance_m"], spot.offset_m + float(d)) - _BOUND_MARGIN_M
    gathered.sort(key=lambda r: (r["at_least_m"], r["id"]))
    bbox = box_around(query.lon, query.lat, radius + spot.offset_m + BOX_MARGIN_M)
    routes: dict = {}

    def route(batch: list[dict]) -> None:
        routes.update(routes_to_positions(conn, spot, [(r["id"], r["lon"], r["lat"]) for r in batch], bbox=bbox,
                                          srid=srid, limit=radius, keep=query.k))

    first = gathered[: _WALK_FIRST_ROUTED * query.k + 2]
    route(first)
    walks = sorted(_walk_total(r) for r in routes.values())
    rest = gathered[len(first):]
    if len(walks) >= query.k:  # only the points that may still walk less than the k-th
        rest = [r for r in rest if r["at_least_m"] <= walks[query.k - 1]]
    route(rest)
    return radius, routes


def _walk_total(route) -> float:
    return route.spot_offset_m + route.distance_m + route.target_offset_m


def _feature(query: NearestQuery, row: dict, navigation_links: dict) -> dict:
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
        "navigation": navigation_links,
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
