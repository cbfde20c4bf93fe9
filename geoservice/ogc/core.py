"""OGC API – Features core: the collections and the queries behind them.

Framework-free: every function takes a SQLAlchemy connection and validated arguments and returns plain data. The
collections, their properties and their filters are the catalogue's (:mod:`geoservice.catalogue`): table and column
names come only from there; every value a client sends is a bound parameter.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geoservice import catalogue
from geoservice.catalogue import Property, Table
from geoservice.errors import InvalidParameter, NotFound
from geoservice.ogc.temporal import Interval, temporal_property
from geoservice.params import absent
from geoservice.query import BBox
from geoservice.spatial import box_params, in_box_sql

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
MAX_OFFSET = 1_000_000_000
NUMBER_MATCHED_MAX = 10_000
"""``numberMatched`` is given when at most this many features match (counted with a LIMIT, so a count never reads
more than this many rows); beyond it, it is left out — never estimated, as GDAL and QGIS show it as the count. Pages
reached by key (``after``, ``before``) leave it out: the first page of the walk gave it."""
COORDINATE_DECIMALS = 7  # about 1 cm at Xuchang's latitude

COLLECTIONS: dict[str, Table] = dict(catalogue.FEATURE_TABLES)
"""The feature collections, by id: the catalogue's tables with a geometry."""


def get_collection(collection_id: str) -> Table:
    """The collection called ``collection_id``, or :class:`NotFound` listing the collections."""
    try:
        return COLLECTIONS[collection_id]
    except KeyError:
        raise NotFound(f"no collection {collection_id!r}; collections: {', '.join(COLLECTIONS)}") from None


Key = str | int
"""A feature id: an integer key, or a numeric code (text)."""


@dataclass(frozen=True)
class ItemsQuery:
    """Validated arguments of an items request.

    Paging is by key: ``after`` (the features whose id follows it, what our ``next`` links ask) or ``before`` (the
    last ``limit`` of those preceding it, what ``prev`` asks); both together read the features between them, from
    ``after`` on. ``offset`` (kept for clients that send it; its cost grows with its depth) skips that many features
    from where the page would start.
    """

    bbox: BBox | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    after: Key | None = None
    before: Key | None = None
    datetime: Interval | None = None
    filters: dict[str, str] = field(default_factory=dict)  # filter name → value, already parsed

    @property
    def by_key(self) -> bool:
        """Paged by key (``after`` or ``before``): where the page lies among all matching features is not known."""
        return self.after is not None or self.before is not None

    @property
    def backwards(self) -> bool:
        """The page is read downwards from ``before`` (then put back in key order)."""
        return self.before is not None and self.after is None


@dataclass(frozen=True)
class ItemsPage:
    """One page of features (in key order), and what the links need.

    Attributes:
        feature_texts: each feature as GeoJSON text, written by PostgreSQL (a JSON answer splices them in as they
            are: turning rows into dicts and encoding them again was about a fifth of a small page's Python time).
        ids: the features' ids, in the same order.
        number_matched: how many features match in all when that is cheap (:data:`NUMBER_MATCHED_MAX`), else None.
        more: there are further features in the direction read (after the page; before it when read backwards,
            :attr:`ItemsQuery.backwards`).
    """

    feature_texts: list[str]
    ids: list[Key]
    number_matched: int | None
    more: bool

    @property
    def features(self) -> list[dict]:
        """The features as dicts (for the HTML page)."""
        return [json.loads(text) for text in self.feature_texts]


def parse_limit(raw: str | None) -> int:
    """Features per page: a whole number >= 1; above :data:`MAX_LIMIT` it is served as MAX_LIMIT (not an error)."""
    if absent("limit", raw):
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParameter(f"limit must be a whole number from 1 to {MAX_LIMIT} (larger values are served as "
                               f"{MAX_LIMIT}), got {raw!r}") from None
    if value < 1:
        raise InvalidParameter(f"limit must be at least 1 (at most {MAX_LIMIT} are served), got {value}")
    return min(value, MAX_LIMIT)


def parse_key(collection: Table, name: str, raw: str | None) -> Key | None:
    """The feature id a paging parameter (``after``, ``before``) names, or :class:`InvalidParameter`."""
    if absent(name, raw):
        return None
    if collection.integer_key_max is not None:
        if not (raw.isascii() and raw.isdigit()) or int(raw) > collection.integer_key_max:
            raise InvalidParameter(f"{name} must be the id of a {collection.id} feature (a whole number from 0 to "
                                   f"{collection.integer_key_max}), got {raw!r}")
        return int(raw)
    if not re.fullmatch(key_pattern(collection), raw):
        raise InvalidParameter(f"{name} must be the id of a {collection.id} feature (a {collection.code_digits}-digit "
                               f"code), got {raw!r}")
    return raw


def key_pattern(collection: Table) -> str:
    """The regular expression a text key of ``collection`` matches."""
    return f"^[0-9]{{{collection.code_digits}}}$"


def _extent_sql(collection: Table, show_hidden: bool) -> str:
    return (f"SELECT '{collection.id}' AS id, ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) "
            f"FROM (SELECT ST_Extent(t.{collection.geometry.column}) AS e FROM {collection.name} t "
            f"WHERE {collection.visible_sql(show_hidden=show_hidden)}) x")


def spatial_extent(conn: Connection, collection: Table, *, show_hidden: bool = False) -> list[float] | None:
    """``[minlon, minlat, maxlon, maxlat]`` of the collection's data (ST_Extent), None when it has none.

    Rows the public does not see (planned points) count only with ``show_hidden`` (planners and admins).
    """
    row = conn.execute(sa.text(_extent_sql(collection, show_hidden))).one()
    return None if row[1] is None else [float(v) for v in row[1:]]


def spatial_extents(conn: Connection, *, show_hidden: bool = False) -> dict[str, list[float] | None]:
    """:func:`spatial_extent` of every collection, in one round trip."""
    rows = conn.execute(sa.text(" UNION ALL ".join(_extent_sql(c, show_hidden) for c in COLLECTIONS.values())))
    return {row[0]: None if row[1] is None else [float(v) for v in row[1:]] for row in rows}


def _where(collection: Table, query: ItemsQuery, show_hidden: bool) -> tuple[str, dict]:
    conditions, params = [collection.visible_sql(show_hidden=show_hidden)], {}
    if query.bbox is not None:
        conditions.append(in_box_sql(f"t.{collection.geometry.column}", collection.geometry.srid))
        params.update(box_params(query.bbox))
    for number, flt in enumerate(collection.filters):
        if flt.name in query.filters:
            conditions.append(flt.condition.replace(":value", f":filter_{number}"))
            params[f"filter_{number}"] = query.filters[flt.name]
    time_column = temporal_property(collection)
    if query.datetime is not None and time_column is not None:
        condition, time_params = query.datetime.sql(f't."{time_column}"')
        conditions.append(condition)
        params.update(time_params)
    return " WHERE " + " AND ".join(conditions), params


_UTC_TIME = "to_char(({value}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
"""RFC 3339 in UTC with a Z, as every date-time of the API is written."""


def _json_sql(prop: Property) -> str:
    """The SQL of a property's JSON value."""
    if prop.sql_type == "timestamp with time zone":
        return _UTC_TIME.format(value=prop.select_sql)
    return prop.select_sql


def _select(collection: Table, extra: str = "") -> str:
    """``SELECT`` of the key (``key``) and the GeoJSON Feature text (``feature``) of each row of ``t``.

    The JSON is built by PostgreSQL (json, not jsonb: the properties keep the catalogue's order).
    """
    properties = ", ".join(f"'{p.name}', {_json_sql(p)}" for p in collection.properties)
    geometry = f"ST_AsGeoJSON(t.{collection.geometry.column}, {COORDINATE_DECIMALS})::json"
    feature = (f"json_build_object('type', 'Feature', 'id', t.{collection.key}, 'geometry', {geometry}, "
               f"'properties', json_build_object({properties}))::text")
    return f"SELECT t.{collection.key} AS key, {feature} AS feature{extra} FROM {collection.name} t"


def items(conn: Connection, collection: Table, query: ItemsQuery, *, show_hidden: bool = False) -> ItemsPage:
    """A page of the collection's features in primary-key order, and how many match when that is cheap.

    A page after (or before) a key starts at that key in the primary-key index, so a deep page costs what the first
    does; ``offset`` reads and skips every row before the page. One row more than the page is read to tell whether
    another page follows. ``numberMatched`` (:data:`NUMBER_MATCHED_MAX`) is counted for a first page (or an offset
    page) with a cap, not at all when a first page holds every match, and left out of pages reached by key.

    Rows the public does not see (planned points) are left out unless ``show_hidden`` (planners and admins).
    """
    where, params = _where(collection, query, show_hidden)
    key = f"t.{collection.key}"
    page_where = where
    page_params = {**params, "limit": query.limit + 1, "offset": query.offset, "cap": NUMBER_MATCHED_MAX + 1,
                   "table": collection.name}
    if query.after is not None:
        page_where += f" AND {key} > :after"
        page_params["after"] = query.after
    if query.before is not None:
        page_where += f" AND {key} < :before"
        page_params["before"] = query.before
    # The count rides along with the page (one statement, planned once); a page reached by key has none: the walk's
    # first page said it, and every page after it would count the same rows again.
    count = "" if query.by_key else f", {_capped_count_sql(collection, where, _selective(query))} AS number_matched"
    # A page before a key is read downwards from it, then put back in key order.
    order = f"{key} DESC" if query.backwards else key
    if query.offset:
        # PostgreSQL computes the select list of every row an OFFSET skips: only the keys are skipped here.
        page_where = (f" WHERE {key} IN (SELECT {key} FROM {collection.name} t{page_where} ORDER BY {order} "
                      "LIMIT :limit OFFSET :offset)")
    rows = conn.execute(
        sa.text(f"{_select(collection, count)}{page_where} ORDER BY {order} LIMIT :limit"), page_params,
    ).all()
    more = len(rows) > query.limit
    if query.by_key:
        matched = None
    elif not more and query.offset == 0:
        matched = len(rows)
    else:
        # No row, no count with it (an offset past the end): asked on its own.
        counted = rows[0].number_matched if rows else conn.execute(
            sa.text(f"SELECT {_capped_count_sql(collection, where, _selective(query))}"), page_params).scalar_one()
        matched = counted if counted is not None and counted <= NUMBER_MATCHED_MAX else None
    rows = rows[:query.limit]
    if query.backwards:
        rows.reverse()
    return ItemsPage([row.feature for row in rows], [row.key for row in rows], matched, more)


def _selective(query: ItemsQuery) -> bool:
    return query.bbox is not None or bool(query.filters) or query.datetime is not None


def _capped_count_sql(collection: Table, where: str, selective: bool) -> str:
    """SQL of the count of the rows ``where`` selects, stopping one row past the cap (bind ``:cap``, ``:table``).

    Without a selection, a table the planner's statistics put at more than twice the cap is not counted at all
    (NULL): the number would be left out anyway — the statistics only ever leave the number out, never give it.
    """
    capped = f"(SELECT count(*) FROM (SELECT 1 FROM {collection.name} t{where} LIMIT :cap) x)"
    if selective:
        return capped
    # An uncorrelated subquery in a CASE branch (an InitPlan) runs only if that branch is taken.
    return (f"CASE WHEN (SELECT c.reltuples FROM pg_class c WHERE c.oid = CAST(:table AS regclass)) > 2 * :cap "
            f"THEN NULL ELSE {capped} END")


def parse_feature_id(collection: Table, raw: str) -> str | int:
    """The primary-key value named by ``raw``; :class:`NotFound` saying what ids look like when it cannot be one."""
    if collection.integer_key_max is not None:
        if not (raw.isascii() and raw.isdigit()) or int(raw) > collection.integer_key_max:
            raise NotFound(f"no feature {raw!r} in {collection.id}: its feature ids are positive whole numbers")
        return int(raw)
    if not (raw.isascii() and raw.isdigit()):
        raise NotFound(f"no feature {raw!r} in {collection.id}: its feature ids are numeric codes")
    return raw


def item(conn: Connection, collection: Table, raw_id: str, *, show_hidden: bool = False) -> dict:
    """The feature with primary key ``raw_id``, or :class:`NotFound`.

    A row hidden from the public (a planned point) is not found unless ``show_hidden``: the public cannot tell it from
    no point at all.
    """
    key = parse_feature_id(collection, raw_id)
    row = conn.execute(sa.text(f"{_select(collection)} WHERE t.{collection.key} = :key "
                               f"AND {collection.visible_sql(show_hidden=show_hidden)}"), {"key": key}).one_or_none()
    if row is None:
        raise NotFound(f"no feature {raw_id!r} in {collection.id}")
    return json.loads(row.feature)
