"""OGC API – Features core: the collections, their property filters and the queries behind them.

Framework-free: every function takes a SQLAlchemy connection and validated arguments and returns plain data. The
table and column names come only from the fixed :data:`COLLECTIONS` table below; every value a client sends is a
bound parameter.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geoservice.errors import InvalidParameter, NotFound
from geoservice.params import BBox
from geoservice.vocab import AMENITY_CODES, KIND_CODES, POINT_STATUSES, STREET_CLASSES

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
MAX_OFFSET = 1_000_000_000
MAX_TEXT_LENGTH = 200
COORDINATE_DECIMALS = 7  # about 1 cm at Xuchang's latitude

STRING = {"type": "string"}
NULLABLE_STRING = {"type": "string", "nullable": True}
TIMESTAMP = {"type": "string", "format": "date-time"}


@dataclass(frozen=True)
class Property:
    """One feature property: its name, the SQL that reads it (``t`` is the table) and its JSON schema."""

    name: str
    sql: str
    schema: dict


@dataclass(frozen=True)
class PropertyFilter:
    """A simple ``?name=value`` filter: equality on one property, declared in the OpenAPI document.

    ``condition`` is fixed SQL with the placeholder ``:value`` (renamed per query); only the value is the
    client's. ``enum`` or ``pattern`` (with ``what`` saying it in words) restrict the values allowed.
    """

    name: str
    condition: str
    description: str
    enum: tuple[str, ...] | None = None
    pattern: str | None = None
    what: str = ""

    @property
    def schema(self) -> dict:
        """The JSON schema of the parameter value."""
        schema: dict = {"type": "string"}
        if self.enum:
            schema["enum"] = list(self.enum)
        if self.pattern:
            schema["pattern"] = self.pattern
        else:
            schema["maxLength"] = MAX_TEXT_LENGTH
        return schema

    def parse(self, raw: str) -> str:
        """The value to bind, or :class:`InvalidParameter` saying what is allowed."""
        if self.enum is not None:
            if raw not in self.enum:
                raise InvalidParameter(f"{self.name} must be one of {', '.join(self.enum)}; got {raw!r}")
            return raw
        if self.pattern is not None:
            if not re.fullmatch(self.pattern, raw):
                raise InvalidParameter(f"{self.name} must be {self.what}; got {raw!r}")
            return raw
        return parse_text(self.name, raw)


@dataclass(frozen=True)
class Collection:
    """A feature collection served under ``/ogc/collections/{id}``: one table, keyed by its primary key."""

    id: str
    table: str
    key: str
    integer_key_max: int | None  # the largest id of an integer key; None for text codes
    title_zh: str
    title_en: str
    description: str
    geometry_type: str
    properties: tuple[Property, ...]
    filters: tuple[PropertyFilter, ...] = field(default=())

    @property
    def title(self) -> str:
        """Chinese and English title in one string (what QGIS and GDAL show)."""
        return f"{self.title_zh} {self.title_en}"

    @property
    def filter_names(self) -> tuple[str, ...]:
        """The query parameters that filter this collection's items."""
        return tuple(f.name for f in self.filters)


def parse_text(name: str, raw: str) -> str:
    """A text value PostgreSQL can take (no NUL character) of reasonable length."""
    if "\x00" in raw:
        raise InvalidParameter(f"{name} must not contain a NUL character")
    if len(raw) > MAX_TEXT_LENGTH:
        raise InvalidParameter(f"{name} must be at most {MAX_TEXT_LENGTH} characters long, got {len(raw)}")
    return raw


def _code_filter(name: str, digits: int, level: str) -> PropertyFilter:
    return PropertyFilter(name, f"t.{name} = :value", f"Only features in this {level} ({digits}-digit code)",
                          pattern=f"^[0-9]{{{digits}}}$", what=f"a {digits}-digit {level} code")


def _text(name: str, *, nullable: bool = True) -> Property:
    return Property(name, f"t.{name}", NULLABLE_STRING if nullable else STRING)


NAME_FILTER = PropertyFilter("name", "t.name = :value", "Only features with exactly this name")
UPDATED_AT = Property("updated_at", "t.updated_at", TIMESTAMP)
INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1


def _area_collection(cid: str, table: str, digits: int, zh: str, en: str, description: str,
                     parent: tuple[str, int, str] | None) -> Collection:
    props = [Property("code", "t.code", {"type": "string", "pattern": f"^[0-9]{{{digits}}}$"}),
             _text("name", nullable=False)]
    filters = [NAME_FILTER]
    if parent:
        parent_table, parent_digits, parent_level = parent
        props.insert(1, Property(f"{parent_table}_code", f"t.{parent_table}_code", STRING))
        filters.insert(0, _code_filter(f"{parent_table}_code", parent_digits, parent_level))
    return Collection(cid, table, "code", None, zh, en, description, "MultiPolygon",
                      (*props, UPDATED_AT), tuple(filters))


COLLECTIONS: dict[str, Collection] = {c.id: c for c in (
    _area_collection("districts", "district", 6, "区/县", "Districts",
                     "Administrative districts with their 6-digit admin codes.", None),
    _area_collection("subdistricts", "subdistrict", 9, "街道/乡镇", "Subdistricts",
                     "Subdistricts and towns; the 9-digit code starts with the district code.",
                     ("district", 6, "district")),
    _area_collection("communities", "community", 12, "社区/村", "Communities",
                     "Communities and villages; the 12-digit code starts with the subdistrict code.",
                     ("subdistrict", 9, "subdistrict")),
    Collection(
        "grids", "grid", "code", None, "单元网格", "Unit grids",
        "Unit grids (单元网格) with the 15-digit code (community code + 3-digit sequence), the grid officer "
        "(网格员) and the enforcement squad (执法中队) responsible.",
        "Polygon",
        (Property("code", "t.code", {"type": "string", "pattern": "^[0-9]{15}$"}),
         Property("community_code", "t.community_code", STRING),
         _text("name", nullable=False),
         Property("squad_id", "t.squad_id", {"type": "integer", "nullable": True}),
         Property("squad", "(SELECT s.name FROM squad s WHERE s.id = t.squad_id)", NULLABLE_STRING),
         Property("squad_phone", "(SELECT s.phone FROM squad s WHERE s.id = t.squad_id)", NULLABLE_STRING),
         _text("officer_name"), _text("officer_phone"),
         Property("area_m2", "t.area_m2", {"type": "number"}),
         UPDATED_AT),
        (_code_filter("community_code", 12, "community"),
         PropertyFilter("squad", "t.squad_id IN (SELECT s.id FROM squad s WHERE s.name = :value)",
                        "Only grids looked after by this enforcement squad (执法中队), by its name, e.g. 文博中队"),
         NAME_FILTER),
    ),
    Collection(
        "streets", "street", "id", INT8_MAX, "道路路段", "Street segments",
        "Street centreline segments between intersections, with their OSM highway class and length in metres "
        "(synthetic in the demo city).",
        "LineString",
        (Property("id", "t.id", {"type": "integer"}), _text("name"),
         Property("class", "t.class", {"type": "string", "enum": list(STREET_CLASSES)}),
         Property("length_m", "t.length_m", {"type": "number"}),
         Property("source", "t.source", {"type": "integer", "nullable": True}),
         Property("target", "t.target", {"type": "integer", "nullable": True}),
         UPDATED_AT),
        (PropertyFilter("name", "t.name = :value", "Only segments of the street with exactly this name"),
         PropertyFilter("class", "t.class = :value", "Only segments of this OSM highway class", enum=STREET_CLASSES)),
    ),
    Collection(
        "points", "point", "id", INT4_MAX, "便民点", "Convenience points",
        "Convenience points: kiosks, rest stations, vendor and melon-farmer points, night-market zones, odd-job "
        "boards, car parks and toilets, with their amenities, opening hours and overnight capacity.",
        "Point",
        (Property("id", "t.id", {"type": "integer"}), _text("name", nullable=False),
         Property("kind", "t.kind", {"type": "string", "enum": list(KIND_CODES)}),
         Property("amenities", "t.amenities",
                  {"type": "array", "items": {"type": "string", "enum": list(AMENITY_CODES)}}),
         _text("address"), _text("phone"), _text("opening_hours"), _text("season"),
         Property("capacity", "t.capacity", {"type": "integer", "nullable": True}),
         Property("occupancy", "t.occupancy", {"type": "integer", "nullable": True}),
         Property("status", "t.status", {"type": "string", "enum": list(POINT_STATUSES)}),
         UPDATED_AT),
        (PropertyFilter("kind", "t.kind = :value", "Only points of this kind", enum=KIND_CODES),
         PropertyFilter("status", "t.status = :value", "Only points with this status", enum=POINT_STATUSES),
         PropertyFilter("amenity", ":value = ANY(t.amenities)", "Only points offering this amenity",
                        enum=AMENITY_CODES),
         NAME_FILTER),
    ),
)}


def get_collection(collection_id: str) -> Collection:
    """The collection called ``collection_id``, or :class:`NotFound` listing the collections."""
    try:
        return COLLECTIONS[collection_id]
    except KeyError:
        raise NotFound(f"no collection {collection_id!r}; collections: {', '.join(COLLECTIONS)}") from None


@dataclass(frozen=True)
class ItemsQuery:
    """Validated arguments of an items request."""

    bbox: BBox | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    filters: dict[str, str] = field(default_factory=dict)  # filter name → value, already parsed


@dataclass(frozen=True)
class ItemsPage:
    """One page of features, and how many match in all."""

    features: list[dict]
    number_matched: int


def parse_limit(raw: str | None) -> int:
    """Features per page: a whole number >= 1; above :data:`MAX_LIMIT` it is served as MAX_LIMIT (not an error)."""
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParameter(f"limit must be a whole number from 1 to {MAX_LIMIT} (larger values are served as "
                               f"{MAX_LIMIT}), got {raw!r}") from None
    if value < 1:
        raise InvalidParameter(f"limit must be at least 1 (at most {MAX_LIMIT} are served), got {value}")
    return min(value, MAX_LIMIT)


def _extent_sql(collection: Collection) -> str:
    return (f"SELECT '{collection.id}' AS id, ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) "
            f"FROM (SELECT ST_Extent(t.geom) AS e FROM {collection.table} t) x")


def spatial_extent(conn: Connection, collection: Collection) -> list[float] | None:
    """``[minlon, minlat, maxlon, maxlat]`` of the collection's data (ST_Extent), None when it has none."""
    row = conn.execute(sa.text(_extent_sql(collection))).one()
    return None if row[1] is None else [float(v) for v in row[1:]]


def spatial_extents(conn: Connection) -> dict[str, list[float] | None]:
    """:func:`spatial_extent` of every collection, in one round trip."""
    rows = conn.execute(sa.text(" UNION ALL ".join(_extent_sql(c) for c in COLLECTIONS.values())))
    return {row[0]: None if row[1] is None else [float(v) for v in row[1:]] for row in rows}


def _where(collection: Collection, query: ItemsQuery) -> tuple[str, dict]:
    conditions, params = [], {}
    if query.bbox is not None:
        conditions.append("ST_Intersects(t.geom, ST_MakeEnvelope(:minx, :miny, :maxx, :maxy, 4326))")
        params.update(zip(("minx", "miny", "maxx", "maxy"), query.bbox, strict=True))
    for number, flt in enumerate(collection.filters):
        if flt.name in query.filters:
            conditions.append(flt.condition.replace(":value", f":filter_{number}"))
            params[f"filter_{number}"] = query.filters[flt.name]
    return (" WHERE " + " AND ".join(conditions) if conditions else ""), params


def _select(collection: Collection) -> str:
    columns = ", ".join(f'{p.sql} AS "{p.name}"' for p in collection.properties)
    return (f"SELECT {columns}, ST_AsGeoJSON(t.geom, {COORDINATE_DECIMALS}) AS geometry_geojson "
            f"FROM {collection.table} t")


def _json_value(value):
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def _feature(collection: Collection, row: sa.Row) -> dict:
    values = row._mapping
    properties = {p.name: _json_value(values[p.name]) for p in collection.properties}
    geometry = values["geometry_geojson"]
    return {"type": "Feature", "id": properties[collection.key],
            "geometry": json.loads(geometry) if geometry is not None else None,
            "properties": properties}


def items(conn: Connection, collection: Collection, query: ItemsQuery) -> ItemsPage:
    """A page of the collection's features in primary-key order, and the exact count of all that match."""
    where, params = _where(collection, query)
    matched = conn.execute(sa.text(f"SELECT count(*) FROM {collection.table} t{where}"), params).scalar_one()
    rows = conn.execute(
        sa.text(f"{_select(collection)}{where} ORDER BY t.{collection.key} LIMIT :limit OFFSET :offset"),
        {**params, "limit": query.limit, "offset": query.offset},
    )
    return ItemsPage([_feature(collection, row) for row in rows], matched)


def parse_feature_id(collection: Collection, raw: str) -> str | int:
    """The primary-key value named by ``raw``; :class:`NotFound` saying what ids look like when it cannot be one."""
    if collection.integer_key_max is not None:
        if not (raw.isascii() and raw.isdigit()) or int(raw) > collection.integer_key_max:
            raise NotFound(f"no feature {raw!r} in {collection.id}: its feature ids are positive whole numbers")
        return int(raw)
    if not (raw.isascii() and raw.isdigit()):
        raise NotFound(f"no feature {raw!r} in {collection.id}: its feature ids are numeric codes")
    return raw


def item(conn: Connection, collection: Collection, raw_id: str) -> dict:
    """The feature with primary key ``raw_id``, or :class:`NotFound`."""
    key = parse_feature_id(collection, raw_id)
    row = conn.execute(sa.text(f"{_select(collection)} WHERE t.{collection.key} = :key"), {"key": key}).one_or_none()
    if row is None:
        raise NotFound(f"no feature {raw_id!r} in {collection.id}")
    return _feature(collection, row)
