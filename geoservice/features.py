"""The city's layers as GeoJSON: what the maps draw, read straight from PostGIS; and the search for points.

Point features carry everything a popup needs, so the city map makes one request per view: labels in zh-CN and
English, free places, whether the point is open now (when the caller passes the city's local time) and the unit
grid the point lies in with the squad that answers for it.
"""

from __future__ import annotations

import json
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geoservice import hours
from geoservice.catalogue import FEATURE_TABLES, POINT, Table
from geoservice.errors import InvalidParameter
from geoservice.query import BBox, responsible_join
from geoservice.spatial import box_params, in_box_sql
from geoservice.vocab import AMENITIES, POINT_KINDS

# The grid a point lies in (the first by code where grids overlap) and its squad.
_POINT_GRID = responsible_join("t.geom", "r")
_POINT_GRID_PROPERTIES = {"grid_code": "r.grid_code", "grid_name": "r.grid_name", "squad": "r.squad_name",
                          "squad_phone": "r.squad_phone"}


def _properties_sql(table: Table, extra: dict[str, str] | None = None) -> str:
    """The ``jsonb_build_object`` of what the layer carries (the catalogue's map properties), plus ``extra``."""
    pairs = [(p.name, p.map_sql) for p in table.map_properties] + list((extra or {}).items())
    return "jsonb_build_object(" + ", ".join(f"'{name}', {sql}" for name, sql in pairs) + ")"


# Properties are built in SQL so one query returns finished GeoJSON; points add the grid and squad they lie in.
_POINT_PROPERTIES = _properties_sql(POINT, _POINT_GRID_PROPERTIES)
MAX_LIMIT = 100_000
SEARCH_MAX_RESULTS = 50
SEARCH_MAX_LENGTH = 100


def layer_collection(conn: Connection, layer: str, *, bbox: BBox | None = None, limit: int = MAX_LIMIT,
                     now: datetime | None = None, show_hidden: bool = False) -> dict:
    """The features of ``layer`` (within ``bbox`` if given) as a GeoJSON FeatureCollection dict.

    Args:
        conn: database connection.
        layer: the id of a table with a geometry (:data:`geoservice.catalogue.FEATURE_TABLES`).
        bbox: only features that meet this box (WGS 84).
        limit: at most this many features (lowest keys first; at most and by default :data:`MAX_LIMIT`, so no
            answer is unbounded); ``truncated`` says whether more were there, so a map can ask the user to zoom
            in instead of loading a whole big city.
        now: the city's local time; points then carry ``open_now`` (True, False, or None for unknown hours).
        show_hidden: include the rows the public does not see (planned points; ``catalogue.Table.hidden``) — for
            planners and admins.

    Raises:
        InvalidParameter: an unknown layer or a limit out of range.
    """
    if layer not in FEATURE_TABLES:
        raise InvalidParameter(f"layer must be one of {', '.join(FEATURE_TABLES)}; got {layer!r}")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidParameter(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    table = FEATURE_TABLES[layer]
    conditions = [table.visible_sql(show_hidden=show_hidden)]
    params: dict = {"limit": limit + 1}
    if bbox is not None:
        conditions.append(in_box_sql(table.geometry.column, table.geometry.srid))
        params.update(box_params(bbox))
    if table is POINT:
        properties, joins = _POINT_PROPERTIES, _POINT_GRID
    else:
        properties, joins = _properties_sql(table), ""
    features = _features(conn, table=table, order=f"t.{table.key}", properties=properties, joins=joins,
                         rows=f"SELECT * FROM {table.name} t WHERE {' AND '.join(conditions)} ORDER BY {table.key} "
                              "LIMIT :limit", params=params)
    collection: dict = {"type": "FeatureCollection", "features": features}
    collection["truncated"] = len(features) > limit
    del features[limit:]
    if table is POINT:
        _add_point_fields(features, now)
    return collection


def search_points(conn: Connection, text: str, *, limit: int = 10, now: datetime | None = None,
                  show_hidden: bool = False) -> dict:
    """Points whose name or address contains ``text`` (case-insensitive), best matches first.

    Order: name equal to the text, name starting with it, name containing it, then address only; ties by id.
    Planned points only with ``show_hidden`` (planners and admins).
    Returns a FeatureCollection of point features (as in the ``points`` layer) with ``query`` echoing the search.

    Raises:
        InvalidParameter: empty or overlong text, or a limit out of 1..50.
    """
    needle = (text or "").strip()
    if not needle:
        raise InvalidParameter("q is required: part of a point's name or address, e.g. q=三八路")
    if len(needle) > SEARCH_MAX_LENGTH:
        raise InvalidParameter(f"q must be at most {SEARCH_MAX_LENGTH} characters, got {len(needle)}")
    if any(ord(c) < 32 or ord(c) == 127 for c in needle):
        raise InvalidParameter("q must be text without control characters (NUL, tabs, line breaks, …)")
    if not 1 <= limit <= SEARCH_MAX_RESULTS:
        raise InvalidParameter(f"limit must be between 1 and {SEARCH_MAX_RESULTS}, got {limit}")
    # The text is matched literally: LIKE's wildcards and escape character in it match only themselves.
    pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rank = ("CASE WHEN lower(name) = lower(:needle) THEN 0 WHEN name ILIKE :prefix THEN 1 "
            "WHEN name ILIKE :pattern THEN 2 ELSE 3 END")
    rows = (f"SELECT *, {rank} AS rank FROM point t WHERE (name ILIKE :pattern OR address ILIKE :pattern) "
            f"AND {POINT.visible_sql(show_hidden=show_hidden)} ORDER BY rank, id LIMIT :limit")
    params = {"needle": needle, "pattern": pattern, "prefix": pattern[1:], "limit": limit}
    features = _features(conn, table=POINT, order="t.rank, t.id", properties=_POINT_PROPERTIES, joins=_POINT_GRID,
                         rows=rows, params=params)
    _add_point_fields(features, now)
    return {"type": "FeatureCollection", "features": features, "query": {"q": needle, "limit": limit}}


def _features(conn: Connection, *, table: Table, order: str, properties: str, joins: str, rows: str,
              params: dict) -> list[dict]:
    """GeoJSON features of the ``rows`` subquery (aliased ``t``, rows of ``table``), in ``order``."""
    query = sa.text(f"""
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'type', 'Feature', 'id', t.{table.key},
                   'geometry', ST_AsGeoJSON(t.{table.geometry.column}, 7)::jsonb,
                   'properties', {properties}) ORDER BY {order}), '[]'::jsonb)::text
        FROM ({rows}) t {joins}
    """)
    return json.loads(conn.execute(query, params).scalar_one())


def _add_point_fields(features: list[dict], now: datetime | None) -> None:
    """Labels, free places and (given the local time) open_now: what every popup shows, computed once here."""
    kinds = {t.code: t for t in POINT_KINDS}
    amenities = {t.code: t for t in AMENITIES}
    for feature in features:
        props = feature["properties"]
        kind = kinds[props["kind"]]
        props["kind_label"] = {"zh": kind.zh, "en": kind.en}
        props["amenity_labels"] = [{"code": a, "zh": amenities[a].zh, "en": amenities[a].en}
                                   for a in props["amenities"]]
        capacity = props["capacity"]
        props["free_places"] = None if capacity is None else capacity - (props["occupancy"] or 0)
        if now is not None:
            props["open_now"] = _open_now(props, now)


def _open_now(props: dict, now: datetime) -> bool | None:
    """Closed when the point is not in service; otherwise what its hours and season say."""
    if props["status"] != "open":
        return False
    return hours.is_open(props["opening_hours"], props["season"], now)
