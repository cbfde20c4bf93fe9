"""Editing the city: points and grids created, replaced, patched, deleted and reverted; a kiosk's occupancy tapped.

Every write takes the acting user (:class:`geoservice.accounts.Actor`) and runs in the caller's transaction, which
the caller commits. In order, each write

1. finds the feature (:class:`NotFound`, 404) and locks its row;
2. checks on the server that the actor may make this change (:class:`Forbidden`, 403): a planner changes anything
   on points and grids; an officer the fields :data:`geoservice.accounts.OFFICER_POINT_FIELDS` of points inside a
   grid looked after by their squad (matched by name); kiosk staff the fields
   :data:`geoservice.accounts.LIVE_FIELDS` of the points assigned to them (``user_point``); an admin edits no data;
3. checks ``If-Match`` against the feature's current ETag (:class:`PreconditionRequired` 428 when missing,
   :class:`PreconditionFailed` 412 when stale) — except the occupancy tap, which is applied atomically instead;
4. validates the new feature with the import's validator (:func:`geoservice.ingest.validate.validate`, on a
   one-row frame, with the context an import builds): one set of rules for files and for the map. A rule the
   database enforces and the validator does not (a notice's length) is refused by the database's constraint and
   reported the same way: :class:`InvalidFeature` (400) naming the field;
5. writes only the columns that change, inside a savepoint, and adds one ``audit_log`` row — who, from where, the
   operation and the feature before and after as GeoJSON — in the same transaction. A refused or failed write
   leaves neither a change nor an audit row; a write that changes nothing leaves no audit row either.

A feature's representation — its GeoJSON as :func:`get_feature` returns it, with every property the catalogue
lists — is built in SQL (:func:`feature_sql`), so that the audit log, the answers and the occupancy tap's single
statement all produce the same document, and its ETag is a digest of that document.

Writing only the columns that change matters beyond tidiness: the data version (migration 0003) moves when a
statement's SET list names a column the whole-city answers read, so a notice or an occupancy change keeps the
planners' cached coverage, while a moved point retires it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg2.errors
import shapely
import shapely.geometry
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from geoservice import catalogue
from geoservice.accounts import LIVE_FIELDS, OFFICER_POINT_FIELDS, Actor
from geoservice.catalogue import Property, Table
from geoservice.errors import (
    Conflict,
    Forbidden,
    InvalidFeature,
    InvalidParameter,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
)
from geoservice.ingest.kinds import KINDS
from geoservice.ingest.readers import GEOMETRY_ERROR
from geoservice.ingest.validate import Context, validate

EDITABLE: dict[str, Table] = {t.id: t for t in (catalogue.POINT, catalogue.GRID)}
"""The layers the editing API writes, by id."""

OCCUPANCY_OPERATIONS = ("increment", "decrement", "full", "set")
"""What a tap does to a point's occupancy: +1, −1, to its capacity, to a given number."""

LIVE_PROPERTIES = ("id", "occupancy", "capacity", "status", "notice", "live_updated_at")
"""What a page polls (``/api/v1/points/live``) and what an occupancy tap answers."""

MAX_LIVE_IDS = 500
MAX_LIVE_POINTS = 5000
"""Most points one ``live`` answer lists (``truncated`` says when more changed)."""
LIVE_OVERLAP_S = 60
# A write commits after its transaction began, and live_updated_at is the time it began (now()): a poll asking for
# changes since its previous answer's "now" looks this much further back, so a write begun before that answer and
# committed after it is not missed. Writes are bounded far below it (the lookup statement timeout), and a page
# receiving a change twice shows the same thing twice.
MAX_HISTORY = 500
MAX_USER_AGENT_CHARS = 512
COORDINATE_DECIMALS = 7
# A geometry sent back as it was read (7 decimals, about 1 cm) is the same geometry: it is not rewritten.
_SAME_POSITION_DEGREES = 0.6 * 10 ** -COORDINATE_DECIMALS
_ROLE_FIELDS: dict[str, tuple[str, ...]] = {"kiosk_staff": LIVE_FIELDS, "officer": OFFICER_POINT_FIELDS}
# Import advice that means nothing to someone editing one feature on the map.
_IMPORT_HINTS = ("; --repair fixes it (make-valid)", "; swap the columns", ". Is the coordinate system right",
                 " (--replace replaces the whole layer)")


@dataclass(frozen=True, kw_only=True)
class Bounds:
    """Where the city's features may lie: what an import checks (settings ``city_center``, ``city_radius_km``)."""

    center: tuple[float, float]
    radius_km: float


@dataclass(frozen=True)
class Versioned:
    """A feature as GeoJSON and its ETag (a strong validator, quoted)."""

    feature: dict
    etag: str


@dataclass(frozen=True)
class Written:
    """What a write did.

    The feature after it (None once deleted), its ETag, and the audit row's id (None when the write changed nothing).
    """

    feature: dict | None
    etag: str | None
    version: int | None
    created: bool = False


# -- the representation -------------------------------------------------------------------------------------------

def _value_sql(prop: Property) -> str:
    if prop.sql_type == "timestamp with time zone":
        # Spelled out, not to_jsonb(): its text follows the session's TimeZone, and the ETag must not.
        return f"""to_char({prop.select_sql} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
    return prop.select_sql


def feature_sql(table: Table) -> str:
    """The SQL (jsonb) of a feature of ``table`` aliased ``t``: every catalogue property, the geometry at 7 decimals."""
    properties = ", ".join(f"'{p.name}', {_value_sql(p)}" for p in table.properties)
    return (f"jsonb_build_object('type', 'Feature', 'id', t.{table.key}, 'geometry', "
            f"ST_AsGeoJSON(t.{table.geometry.column}, {COORDINATE_DECIMALS})::jsonb, "
            f"'properties', jsonb_build_object({properties}))")


def etag_of(feature: dict) -> str:
    """The strong ETag of a feature: a digest of its canonical JSON."""
    canonical = json.dumps(feature, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return '"' + hashlib.sha256(canonical.encode()).hexdigest()[:32] + '"'


def _ordered(table: Table, feature: dict) -> dict:
    """The feature with its properties in the catalogue's order (jsonb keeps its own)."""
    props = feature["properties"]
    return {"type": "Feature", "id": feature["id"], "geometry": feature["geometry"],
            "properties": {p.name: props.get(p.name) for p in table.properties}}


def _editable(kind: str) -> Table:
    try:
        return EDITABLE[kind]
    except KeyError:
        raise NotFound(f"no editable layer {kind!r}; editable: {', '.join(EDITABLE)}") from None


def _key(table: Table, raw: Any) -> int | str:
    """The primary-key value named by ``raw``, or NotFound saying what keys look like."""
    text = str(raw)
    if not (text.isascii() and text.isdigit()):
        raise NotFound(f"no {table.name} {text!r}: {table.name} keys are {_key_words(table)}")
    if table.integer_key_max is not None:
        if int(text) > table.integer_key_max:
            raise NotFound(f"no {table.name} {text}")
        return int(text)
    return text


def _key_words(table: Table) -> str:
    return "positive whole numbers" if table.integer_key_max is not None else f"{table.code_digits}-digit codes"


def _read(conn: Connection, table: Table, key: int | str, *, lock: bool = False,
          show_hidden: bool = True) -> dict | None:
    lock_sql = " FOR UPDATE OF t" if lock else ""
    text = conn.execute(sa.text(f"SELECT ({feature_sql(table)})::text FROM {table.name} t WHERE t.{table.key} = :key "
                                f"AND {table.visible_sql(show_hidden=show_hidden)}{lock_sql}"),
                        {"key": key}).scalar_one_or_none()
    return None if text is None else _ordered(table, json.loads(text))


def get_feature(conn: Connection, kind: str, key: Any, *, show_hidden: bool = False) -> Versioned:
    """The feature of layer ``kind`` (``points``, ``grids``) with key ``key``, and its ETag; NotFound otherwise.

    A planned point is not found unless ``show_hidden`` (planners and admins): the public cannot tell it from none.
    """
    table = _editable(kind)
    feature = _read(conn, table, _key(table, key), show_hidden=show_hidden)
    if feature is None:
        raise NotFound(f"no {table.name} {key}")
    return Versioned(feature, etag_of(feature))


# -- who may change what ------------------------------------------------------------------------------------------

def writable(table: Table) -> tuple[Property, ...]:
    """The properties a write sets: what an import reads, bar the numbered key (the database numbers new rows)."""
    return tuple(p for p in table.properties if p.check and not p.export_only and not p.identity)


def _require_planner(actor: Actor, what: str) -> None:
    role = actor.user.role
    if role == "admin":
        raise Forbidden("an administrator manages users and edits no data; a planner account makes this change")
    if role != "planner":
        raise Forbidden(f"only a planner may {what}; you are signed in as {role}")


# Whether the user may touch point :point at all: kiosk staff their assigned points, an officer the points inside a
# grid of their squad (matched by name).
_POINT_SCOPE = {
    "kiosk_staff": "EXISTS (SELECT FROM user_point WHERE user_id = :user AND point_id = :point)",
    "officer": """EXISTS (SELECT FROM point p JOIN grid g ON ST_Intersects(g.geom, p.geom)
                          JOIN squad s ON s.id = g.squad_id WHERE p.id = :point AND s.name = :squad)""",
}


def _allowed_fields(conn: Connection, actor: Actor, table: Table, key: int | str, *,
                    in_scope: bool | None = None) -> frozenset[str] | None:
    """The fields ``actor`` may change on the feature (None: every field and the geometry), or Forbidden.

    ``in_scope``: the point's scope (:data:`_POINT_SCOPE`) when the caller has read it already.
    """
    user = actor.user
    if user.role == "planner":
        return None
    if user.role not in _ROLE_FIELDS or table is not catalogue.POINT:
        _require_planner(actor, f"change {table.id}")
    if in_scope is None:
        in_scope = conn.execute(sa.text(f"SELECT {_POINT_SCOPE[user.role]}"), _scope_params(actor, key)).scalar_one()
    if not in_scope and user.role == "kiosk_staff":
        raise Forbidden(f"point {key} is not one of the points assigned to you ({user.username})")
    if not in_scope:
        raise Forbidden(f"point {key} lies in no grid looked after by your squad ({user.squad_name})")
    return frozenset(_ROLE_FIELDS[user.role])


def _scope_params(actor: Actor, key: int | str) -> dict:
    return {"user": actor.user.id, "squad": actor.user.squad_name, "point": key}


def _refuse_fields(table: Table, changed: Iterable[str], allowed: frozenset[str] | None, actor: Actor) -> None:
    if allowed is None:
        return
    refused = sorted(set(changed) - allowed)
    if refused:
        raise Forbidden(f"as {actor.user.role} you may change only {', '.join(sorted(allowed))} of a "
                        f"{table.name}, not {', '.join(refused)}")


def _check_if_match(if_match: str | None, current: Versioned) -> None:
    if if_match is None or not if_match.strip():
        raise PreconditionRequired("send If-Match with the ETag of the feature as you read it (GET gives it in "
                                   "its ETag header)")
    tags = [tag.strip() for tag in if_match.split(",")]
    if current.etag not in tags:
        raise PreconditionFailed(f"the feature has changed since you read it (its ETag is now {current.etag}); "
                                 "read it again and redo your change")


# -- the body: a GeoJSON Feature ----------------------------------------------------------------------------------

def _type_problem(prop: Property, value: Any) -> str | None:
    """Why a JSON value cannot be this property's (a number for a name, text for a capacity …), or None."""
    if value is None:
        return None
    if prop.sql_type == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"must be a whole number or null, got {json.dumps(value, ensure_ascii=False)[:40]}"
    if prop.sql_type == "text[]":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return None if ok else "must be a list of codes (text) or null"
    if not isinstance(value, str):
        return f"must be text or null, got {json.dumps(value, ensure_ascii=False)[:40]}"
    if "\x00" in value:
        return "must not contain a NUL character"
    return None


@dataclass
class _Input:
    """A body's writable properties (only those given) and geometry (None: not given), checked for JSON types."""

    properties: dict[str, Any]
    geometry: Any
    geometry_given: bool
    problems: dict[str, str]


def _read_body(table: Table, body: Any, *, partial: bool) -> _Input:
    """The body's parts; problems (not raised yet: a 403 or 412 goes first) as field → reason."""
    problems: dict[str, str] = {}
    if not isinstance(body, dict):
        return _Input({}, None, False, {"body": "must be a GeoJSON Feature: a JSON object with properties and "
                                                "geometry"})
    if body.get("type", "Feature") != "Feature":
        problems["type"] = f"must be Feature, got {json.dumps(body.get('type'), ensure_ascii=False)[:40]}"
    props = body.get("properties", {} if partial else None)
    if not isinstance(props, dict):
        problems["properties"] = "must be an object of the feature's properties"
        props = {}
    known = {p.name: p for p in table.properties}
    settable = {p.name: p for p in writable(table)}
    given: dict[str, Any] = {}
    for name, value in props.items():
        if name not in known:
            problems[name] = f"unknown property; {table.id} have {', '.join(settable)}"
        elif name in settable:
            problem = _type_problem(settable[name], value)
            if problem:
                problems[name] = problem
            given[name] = value
    geometry_given = "geometry" in body
    if not geometry_given and not partial:
        problems["geometry"] = "missing geometry"
    return _Input(given, body.get("geometry"), geometry_given, problems)


def _same_geometry(a: Any, b: Any) -> bool:
    try:
        return bool(shapely.equals_exact(shapely.geometry.shape(a), shapely.geometry.shape(b),
                                         tolerance=_SAME_POSITION_DEGREES))
    except Exception:  # noqa: BLE001 (not a geometry: then it differs)
        return False


def _raw_changes(table: Table, before: dict | None, given: _Input, *, partial: bool) -> set[str]:
    """The fields a body would change, judged on its JSON before validation (for the 403 that precedes a 400)."""
    if before is None:
        return {p.name for p in writable(table)} | {"geometry"}
    props = before["properties"]
    names = given.properties if partial else {p.name: given.properties.get(p.name) for p in writable(table)}
    changed = {name for name, value in names.items() if value != props.get(name)}
    if given.geometry_given and not _same_geometry(given.geometry, before["geometry"]):
        changed.add("geometry")
    return changed


# -- validation with the import's rules ----------------------------------------------------------------------------

def _as_file_value(prop: Property, value: Any) -> Any:
    """A JSON value as an import would read it from a file (a list of amenities is ``a;b``)."""
    if prop.sql_type == "text[]" and isinstance(value, list):
        return ";".join(value)
    return value


def _context(conn: Connection, table: Table, record: dict, bounds: Bounds) -> Context:
    """What the import's validation knows beyond the row — as an import builds it, for this one row."""
    parents = None
    if table.parent is not None:
        code = str(record.get("code") or "")
        candidates = [c for c in {code[:table.parent.code_digits], record.get(table.parent_column)} if c]
        parents = frozenset(conn.execute(sa.text(f"SELECT code FROM {table.parent.name} WHERE code = ANY(:c)"),
                                         {"c": [str(c) for c in candidates]}).scalars())
    squads = frozenset()
    if any(p.check == "squad" for p in table.properties):
        squads = frozenset(conn.execute(sa.text("SELECT name FROM squad")).scalars())
    return Context(city_center=bounds.center, radius_km=bounds.radius_km, parent_codes=parents, squads=squads)


def _for_an_editor(reason: str) -> str:
    for hint in _IMPORT_HINTS:
        reason = reason.split(hint, maxsplit=1)[0]
    return reason


def _geometry(raw: Any) -> tuple[Any, str | None]:
    """A shapely geometry from GeoJSON, or None and why not."""
    if raw is None:
        return None, None
    example = '{"type": "Point", "coordinates": [lon, lat]}'
    if not isinstance(raw, dict):
        return None, f"must be a GeoJSON geometry object, e.g. {example}"
    try:
        geom = shapely.geometry.shape(raw)
    except KeyError as exc:
        return None, f"a GeoJSON geometry needs {exc}, e.g. {example}"
    except Exception as exc:  # noqa: BLE001 (shapely raises many kinds on malformed GeoJSON)
        return None, f"not a GeoJSON geometry ({str(exc)[:80] or type(exc).__name__}), e.g. {example}"
    coordinates = shapely.get_coordinates(geom)
    if len(coordinates) and not np.isfinite(coordinates).all():
        return None, "coordinates must be finite numbers"
    return geom, None


def _validated(conn: Connection, table: Table, record: dict, geometry: Any, bounds: Bounds,
               problems: dict[str, str] | None = None) -> dict:
    """``record`` (every writable property) and ``geometry`` checked by the import's validator: the database values.

    ``problems`` found in the body already (a number sent as text …) are reported with the validator's, which then
    does not see those fields.

    Raises:
        InvalidFeature: naming each field that breaks a rule.
    """
    spec = KINDS[table.id]
    problems = problems or {}
    geom, geometry_error = _geometry(geometry)
    row = {f.name: pd.Series([_as_file_value(table.property_named(f.name), record.get(f.name))], dtype=object)
           for f in spec.fields}
    ctx = _context(conn, table, record, bounds)

    def check(geom: Any, geometry_error: str | None):
        frame = gpd.GeoDataFrame({**row, GEOMETRY_ERROR: pd.Series([geometry_error], dtype=object)},
                                 geometry=[geom], crs="EPSG:4326")
        return validate(frame, spec, row_numbers=np.array([1]), ctx=ctx)

    try:
        checked = check(geom, geometry_error)
    except InvalidParameter as exc:
        # The whole "file" (our one feature) lies outside the city: the import refuses it at once. Checked again
        # with that as the geometry's problem, the other fields are judged too.
        checked = check(None, _for_an_editor(exc.description))
    found: dict[str, str] = {}
    for issue in checked.rejections:
        reason = _for_an_editor(issue.reason)
        found[issue.field] = f"{found[issue.field]}; {reason}" if issue.field in found else reason
    if found or problems:
        raise InvalidFeature({**found, **problems})
    values = checked.rows.iloc[0].to_dict()
    return {name: _plain(values.get(name)) for name in (*spec.columns, "geom")}


def _plain(value: Any) -> Any:
    """A validated pandas/numpy value as the plain Python value a driver binds."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


# -- writing ----------------------------------------------------------------------------------------------------

def _changes(table: Table, before: dict | None, values: dict) -> dict[str, Any]:
    """The validated values that differ from the feature's (all of them for a new feature); ``geom`` for the shape."""
    if before is None:
        return {p.name: values.get(p.name) for p in writable(table)} | {"geom": values["geom"]}
    props = before["properties"]
    changed = {p.name: values.get(p.name) for p in writable(table) if values.get(p.name) != props.get(p.name)}
    if not _same_geometry(shapely.geometry.mapping(values["geom"]), before["geometry"]):
        changed["geom"] = values["geom"]
    return changed


def _assignments(table: Table, changes: dict[str, Any]) -> tuple[list[str], list[str], dict]:
    """Target columns, their SQL values and the bound parameters (a grid's squad by name → its squad_id)."""
    targets, sql, params = [], [], {}
    for number, (name, value) in enumerate(changes.items()):
        param = f"v{number}"
        if name == "geom":
            targets.append(table.geometry.column)
            sql.append(f"ST_GeomFromWKB(decode(:{param}, 'hex'), {table.geometry.srid})")
            params[param] = shapely.to_wkb(value, hex=True)
        else:
            prop = table.property_named(name)
            targets.append(prop.stored_as or name)
            sql.append(prop.store_sql.format(value=f":{param}") if prop.store_sql else f":{param}")
            params[param] = value
    return targets, sql, params


def _store(conn: Connection, table: Table, key: int | str | None, changes: dict[str, Any], *, insert: bool) -> Any:
    """INSERT the feature (``key`` None: the database numbers it) or UPDATE the changed columns; its key."""
    targets, values, params = _assignments(table, changes)
    if insert:
        if key is not None and table.key not in targets:
            targets.insert(0, table.key)
            values.insert(0, ":key")
        statement = (f"INSERT INTO {table.name} ({', '.join(targets)}) VALUES ({', '.join(values)}) "
                     f"RETURNING {table.key}")
    else:
        sets = ", ".join(f"{t} = {v}" for t, v in zip(targets, values, strict=True))
        statement = f"UPDATE {table.name} SET {sets} WHERE {table.key} = :key RETURNING {table.key}"
    return conn.execute(sa.text(statement), {**params, "key": key}).scalar_one()


def _audit(conn: Connection, actor: Actor, table: Table, key: Any, operation: str, before: dict | None,
           after: dict | None) -> int:
    user = actor.user
    return conn.execute(sa.text("""
        INSERT INTO audit_log (user_id, username, role, address, user_agent, table_name, feature_key, operation,
                               before, after)
        VALUES (:user_id, :username, :role, :address, :user_agent, :table, :key, :operation,
                CAST(:before AS jsonb), CAST(:after AS jsonb))
        RETURNING id
    """), {"user_id": user.id, "username": user.username, "role": user.role, "address": actor.address,
           "user_agent": (actor.user_agent or None) and actor.user_agent[:MAX_USER_AGENT_CHARS], "table": table.name,
           "key": str(key), "operation": operation, "before": _json_or_none(before),
           "after": _json_or_none(after)}).scalar_one()


def _json_or_none(feature: dict | None) -> str | None:
    return None if feature is None else json.dumps(feature, ensure_ascii=False)


def _constraint_field(table: Table, constraint: str | None, column: str | None) -> str:
    """The field a refused row names: the column, or the one the constraint's name starts with after the table's."""
    if column:
        return "geometry" if column == table.geometry.column else column
    rest = (constraint or "").removeprefix(f"{table.name}_")
    names = sorted((p.name for p in table.columns), key=len, reverse=True)
    if rest.startswith(table.geometry.column):
        return "geometry"
    return next((name for name in names if rest.startswith(name)), "feature")


def _refused_by_database(conn: Connection, table: Table, exc: sa.exc.DBAPIError) -> Exception:
    """What a refused write means: Conflict for a taken key, InvalidFeature naming the field for any other rule."""
    orig = exc.orig
    diag = getattr(orig, "diag", None)
    constraint = getattr(diag, "constraint_name", None)
    column = getattr(diag, "column_name", None)
    if isinstance(orig, psycopg2.errors.UniqueViolation):
        return Conflict(f"a {table.name} with this {table.key} exists already; change it with PUT or PATCH")
    reason = (getattr(diag, "message_primary", None) or "refused by the database").strip()
    if constraint:
        definition = conn.execute(sa.text("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = :c "
                                          "AND conrelid = CAST(:t AS regclass)"),
                                  {"c": constraint, "t": table.name}).scalar_one_or_none()
        reason = f"the database's rule {constraint} refuses it: {definition or reason}"
    return InvalidFeature({_constraint_field(table, constraint, column): reason})


def _write(conn: Connection, actor: Actor, table: Table, *, key: Any, operation: str, before: dict | None,
           changes: dict[str, Any] | None) -> Written:
    """Apply ``changes`` (None: delete) to the feature and audit it, inside a savepoint: all or nothing."""
    try:
        with conn.begin_nested():
            if changes is None:
                conn.execute(sa.text(f"DELETE FROM {table.name} WHERE {table.key} = :key"), {"key": key})
                after = None
            else:
                key = _store(conn, table, key, changes, insert=before is None)
                after = _read(conn, table, key)
            version = _audit(conn, actor, table, key, operation, before, after)
    except (sa.exc.IntegrityError, sa.exc.DataError, sa.exc.InternalError) as exc:
        raise _refused_by_database(conn, table, exc) from None
    return Written(after, None if after is None else etag_of(after), version, created=before is None)


def _unchanged(before: dict) -> Written:
    return Written(before, etag_of(before), None)


def _locked(conn: Connection, table: Table, key: int | str) -> Versioned:
    feature = _read(conn, table, key, lock=True)
    if feature is None:
        raise NotFound(f"no {table.name} {key}")
    return Versioned(feature, etag_of(feature))


def _record(table: Table, before: dict | None, given: _Input, *, partial: bool) -> tuple[dict, Any]:
    """The whole new record (every writable property) and geometry a body asks for (bar values of the wrong type)."""
    base = dict(before["properties"]) if (partial and before) else {}
    sound = {name: value for name, value in given.properties.items() if name not in given.problems}
    record = {p.name: base.get(p.name) for p in writable(table)} | sound
    geometry = given.geometry if given.geometry_given or before is None else before["geometry"]
    return record, geometry


# -- the writes -------------------------------------------------------------------------------------------------

def create_feature(conn: Connection, actor: Actor, kind: str, body: Any, *, bounds: Bounds) -> Written:
    """A new feature of layer ``kind`` from a GeoJSON Feature (planners only); a point's id is given by the database.

    Raises:
        Forbidden: the actor is not a planner. InvalidFeature: the body breaks a rule (each field named).
        Conflict: a grid with that code exists.
    """
    table = _editable(kind)
    _require_planner(actor, f"create {table.id}")
    given = _read_body(table, body, partial=False)
    if "body" in given.problems:
        raise InvalidFeature(given.problems)
    record, geometry = _record(table, None, given, partial=False)
    if table.key in record and record[table.key] is not None:
        key = _key_or_invalid(table, record[table.key])
        if _read(conn, table, key) is not None:
            raise Conflict(f"{table.name} {key} exists already; change it with PUT or PATCH "
                           f"/api/v1/{table.id}/{key}")
    values = _validated(conn, table, record, geometry, bounds, given.problems)
    return _write(conn, actor, table, key=values.get(table.key) if table.key != "id" else None, operation="create",
                  before=None, changes=_changes(table, None, values))


def _key_or_invalid(table: Table, raw: Any) -> int | str:
    try:
        return _key(table, raw)
    except NotFound:
        raise InvalidFeature({table.key: f"must be {_key_words(table)[:-1]}, got {raw!r}"}) from None


def replace_feature(conn: Connection, actor: Actor, kind: str, key: Any, body: Any, *, if_match: str | None,
                    bounds: Bounds) -> Written:
    """The feature replaced by a whole GeoJSON Feature (PUT): properties left out become empty."""
    return _update(conn, actor, kind, key, body, if_match=if_match, bounds=bounds, partial=False)


def patch_feature(conn: Connection, actor: Actor, kind: str, key: Any, body: Any, *, if_match: str | None,
                  bounds: Bounds) -> Written:
    """The feature with the properties (and geometry) a body names changed (PATCH); the rest kept."""
    return _update(conn, actor, kind, key, body, if_match=if_match, bounds=bounds, partial=True)


def _update(conn: Connection, actor: Actor, kind: str, key: Any, body: Any, *, if_match: str | None, bounds: Bounds,
            partial: bool) -> Written:
    """PUT or PATCH, checked in the order 404 → 403 → 428/412 → 400."""
    table = _editable(kind)
    key = _key(table, key)
    current = _locked(conn, table, key)
    allowed = _allowed_fields(conn, actor, table, key)
    given = _read_body(table, body, partial=partial)
    _refuse_fields(table, _raw_changes(table, current.feature, given, partial=partial), allowed, actor)
    _check_if_match(if_match, current)
    if "body" in given.problems:
        raise InvalidFeature(given.problems)
    if table.key in given.properties and str(given.properties[table.key]) != str(key):
        given.problems[table.key] = (f"is the {table.name}'s key and cannot change (it is {key}); create a new "
                                     f"{table.name} and delete this one instead")
    record, geometry = _record(table, current.feature, given, partial=partial)
    record[table.key] = key
    values = _validated(conn, table, record, geometry, bounds, given.problems)
    changes = _changes(table, current.feature, values)
    _refuse_fields(table, ["geometry" if c == "geom" else c for c in changes], allowed, actor)
    if not changes:
        return _unchanged(current.feature)
    return _write(conn, actor, table, key=key, operation="replace" if not partial else "update",
                  before=current.feature, changes=changes)


def delete_feature(conn: Connection, actor: Actor, kind: str, key: Any, *, if_match: str | None) -> Written:
    """The feature deleted (planners only); its history stays, and :func:`revert_feature` can bring it back."""
    table = _editable(kind)
    key = _key(table, key)
    current = _locked(conn, table, key)
    _require_planner(actor, f"delete {table.id}")
    _check_if_match(if_match, current)
    return _write(conn, actor, table, key=key, operation="delete", before=current.feature, changes=None)


def revert_feature(conn: Connection, actor: Actor, kind: str, key: Any, body: Any, *, if_match: str | None,
                   bounds: Bounds) -> Written:
    """The feature put back as it was after an earlier change (``{"version": <audit id>}``; planners only).

    A deleted feature is brought back with its key (then without If-Match: there is nothing to match). The revert
    is validated like any write (the squad it names may be gone) and audited as ``revert``.
    """
    table = _editable(kind)
    key = _key(table, key)
    current = _read(conn, table, key, lock=True)
    if current is None and not _has_history(conn, table, key):
        raise NotFound(f"no {table.name} {key}, and none ever was")
    _require_planner(actor, f"revert {table.id}")
    if current is not None:
        _check_if_match(if_match, Versioned(current, etag_of(current)))
    elif if_match is not None:
        raise PreconditionFailed(f"{table.name} {key} is deleted: nothing matches If-Match; send none to restore it")
    state = _version_state(conn, table, key, body)
    given = _read_body(table, state, partial=False)
    record, geometry = _record(table, None, given, partial=False)
    record[table.key] = key
    values = _validated(conn, table, record, geometry, bounds)
    changes = _changes(table, current, values)
    if not changes:
        return _unchanged(current)
    return _write(conn, actor, table, key=key, operation="revert", before=current, changes=changes)


def _has_history(conn: Connection, table: Table, key: Any) -> bool:
    return conn.execute(sa.text("SELECT EXISTS (SELECT FROM audit_log WHERE table_name = :t AND feature_key = :k)"),
                        {"t": table.name, "k": str(key)}).scalar_one()


def _version_state(conn: Connection, table: Table, key: Any, body: Any) -> dict:
    version = body.get("version") if isinstance(body, dict) else None
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= 2**63 - 1:
        raise InvalidFeature({"version": "must be the version (a whole number ≥ 1) to go back to, from the "
                                         "feature's history"})
    row = conn.execute(sa.text("SELECT operation, after::text FROM audit_log WHERE id = :id AND table_name = :t "
                               "AND feature_key = :k"), {"id": version, "t": table.name, "k": str(key)}).first()
    if row is None:
        raise InvalidFeature({"version": f"{table.name} {key} has no version {version}; its history lists them"})
    if row.after is None:
        raise InvalidFeature({"version": f"version {version} is the {table.name}'s deletion; choose a version "
                                         "before it"})
    return json.loads(row.after)


# -- occupancy --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Live:
    """A point's live state (:data:`LIVE_PROPERTIES`) after a tap, its new ETag and the audit row's id."""

    state: dict
    etag: str
    version: int


def _occupancy_expression(body: Any) -> tuple[str, dict]:
    """The SQL of the new occupancy (of the row aliased ``p``) a tap's body asks for, or InvalidFeature."""
    if not isinstance(body, dict):
        raise InvalidFeature({"body": f"must be an object {{\"op\": one of {', '.join(OCCUPANCY_OPERATIONS)}, "
                                      "\"value\": N with set}"})
    op, value = body.get("op"), body.get("value")
    unknown = sorted(set(body) - {"op", "value"})
    if unknown:
        raise InvalidFeature({unknown[0]: "unknown member; a tap has op and (with set) value"})
    if op not in OCCUPANCY_OPERATIONS:
        raise InvalidFeature({"op": f"must be one of {', '.join(OCCUPANCY_OPERATIONS)}, got "
                                    f"{json.dumps(op, ensure_ascii=False)[:40]}"})
    if op != "set":
        if value is not None:
            raise InvalidFeature({"value": f"is given only with op set (got op {op})"})
        return {"increment": "coalesce(p.occupancy, 0) + 1", "decrement": "p.occupancy - 1",
                "full": "p.capacity"}[op], {}
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**31 - 1:
        raise InvalidFeature({"value": "must be the number of places taken: a whole number ≥ 0"})
    return ":value", {"value": value}


_LIVE_SQL = ", ".join(f"'{p}', {_value_sql(catalogue.POINT.property_named(p))}" for p in LIVE_PROPERTIES)


def change_occupancy(conn: Connection, actor: Actor, point_id: Any, body: Any) -> Live:
    """A tap on a point's occupancy (``{"op": "increment" | "decrement" | "full" | "set", "value"?: N}``).

    The change and its audit row are one SQL statement: the row is locked, the new occupancy computed from the
    value it holds then, written and audited together — two taps at once both count, neither waits for anything
    but the other's row lock (and never for the data version: occupancy does not move it). No If-Match: a tap
    means "one more" whatever the count was.

    Raises:
        NotFound, Forbidden (staff on another point, an officer outside their squad's grids, an admin),
        InvalidFeature (the body), Conflict (below 0, above the capacity, or no capacity).
    """
    table = catalogue.POINT
    key = _key(table, point_id)
    # Whether the point exists and (staff, officers) is theirs, in one round trip: a tap is the busiest write.
    scope = _POINT_SCOPE.get(actor.user.role, "NULL")
    exists, in_scope = conn.execute(sa.text(f"SELECT EXISTS (SELECT FROM point WHERE id = :point), {scope}"),
                                    _scope_params(actor, key)).one()
    if not exists:
        raise NotFound(f"no point {key}")
    allowed = _allowed_fields(conn, actor, table, key, in_scope=in_scope)
    _refuse_fields(table, ["occupancy"], allowed, actor)
    expression, params = _occupancy_expression(body)
    user = actor.user
    row = conn.execute(sa.text(f"""
        WITH old AS (
            SELECT t.id, {feature_sql(table)} AS feature FROM point t WHERE t.id = :id FOR UPDATE
        ), new AS (
            UPDATE point p SET occupancy = {expression} FROM old
            WHERE p.id = old.id AND p.capacity IS NOT NULL AND {expression} BETWEEN 0 AND p.capacity
            RETURNING p.*
        ), audit AS (
            INSERT INTO audit_log (user_id, username, role, address, user_agent, table_name, feature_key, operation,
                                   before, after)
            SELECT :user_id, :username, :role, :address, :user_agent, 'point', t.id::text, 'occupancy',
                   old.feature, {feature_sql(table)}
            FROM old JOIN new t ON t.id = old.id
            RETURNING id, after
        )
        SELECT audit.id, audit.after::text AS feature, (SELECT jsonb_build_object({_LIVE_SQL}) FROM new t)::text
               AS live
        FROM audit
    """), {**params, "id": key, "user_id": user.id, "username": user.username, "role": user.role,
           "address": actor.address,
           "user_agent": (actor.user_agent or None) and actor.user_agent[:MAX_USER_AGENT_CHARS]}).first()
    if row is None:
        raise _occupancy_conflict(conn, key, body)
    feature = _ordered(table, json.loads(row.feature))
    live = json.loads(row.live)
    return Live({name: live[name] for name in LIVE_PROPERTIES}, etag_of(feature), row.id)


def _occupancy_conflict(conn: Connection, key: int, body: dict) -> Exception:
    point = conn.execute(sa.text("SELECT occupancy, capacity FROM point WHERE id = :id"), {"id": key}).first()
    if point is None:
        return NotFound(f"no point {key} (deleted meanwhile)")
    occupancy, capacity = point
    if capacity is None:
        return Conflict(f"point {key} has no capacity, so no occupancy; an officer or planner gives it one first")
    op = body["op"]
    if op == "decrement":
        return Conflict(f"point {key} has no place taken (occupancy {occupancy or 0}): nothing to take away")
    if op == "set":
        return Conflict(f"point {key} has {capacity} places: occupancy {body['value']} exceeds them")
    return Conflict(f"point {key} is full ({occupancy} of {capacity} places taken)")


# -- reading: history and live state ------------------------------------------------------------------------------

def history(conn: Connection, actor: Actor, kind: str, key: Any, *, limit: int = 50,
            before: int | None = None) -> dict:
    """The feature's changes, newest first: ``{"id", "versions": [...], "next_before"}``.

    Each version: its id (what :func:`revert_feature` takes), when, who (username and role), the operation and the
    feature before and after. Where it came from (address, user agent) only a planner or an admin sees.
    ``before`` pages on: versions older than that id; ``next_before`` is the value for the next page (None at the
    first change).
    """
    table = _editable(kind)
    key = _key(table, key)
    if not 1 <= limit <= MAX_HISTORY:
        raise InvalidParameter(f"limit must be between 1 and {MAX_HISTORY}, got {limit}")
    rows = conn.execute(sa.text("""
        SELECT id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at, username, role, address,
               user_agent, operation, before::text, after::text
        FROM audit_log WHERE table_name = :t AND feature_key = :k AND (CAST(:before AS bigint) IS NULL OR id < :before)
        ORDER BY id DESC LIMIT :limit
    """), {"t": table.name, "k": str(key), "before": before, "limit": limit + 1}).all()
    if not rows and before is None and _read(conn, table, key) is None:
        raise NotFound(f"no {table.name} {key}, and none ever was")
    sees_where = actor.user.role in ("planner", "admin")
    versions = []
    for row in rows[:limit]:
        version = {"version": row.id, "at": row.at, "user": row.username, "role": row.role,
                   "operation": row.operation, "before": _loads(row.before), "after": _loads(row.after)}
        if sees_where:
            version.update(address=row.address, user_agent=row.user_agent)
        versions.append(version)
    return {"id": key, "versions": versions, "next_before": versions[-1]["version"] if len(rows) > limit else None}


def _loads(text: str | None) -> dict | None:
    return None if text is None else json.loads(text)


def live_points(conn: Connection, *, ids: list[int] | None = None, since: datetime | None = None,
                stale_after_minutes: int, show_hidden: bool = False) -> dict:
    """The live state of points: those in ``ids`` and/or whose state changed since ``since`` (tz-aware).

    Every point (up to :data:`MAX_LIVE_POINTS`) when neither is given; planned ones only with ``show_hidden``.
    ``now`` is the database's time, for the next ``since`` (which looks :data:`LIVE_OVERLAP_S` further back);
    ``stale_after_minutes`` (the setting ``occupancy_stale_minutes``) tells pages when a count is too old to trust;
    ``truncated`` says more points matched than are listed.

    Raises:
        InvalidParameter: too many ids, a time without its zone.
    """
    conditions, params = [catalogue.POINT.visible_sql(show_hidden=show_hidden)], {"limit": MAX_LIVE_POINTS + 1}
    if ids is not None:
        if len(ids) > MAX_LIVE_IDS:
            raise InvalidParameter(f"ids must list at most {MAX_LIVE_IDS} point ids, got {len(ids)}")
        conditions.append("t.id = ANY(:ids)")
        params["ids"] = list(ids)
    if since is not None:
        if since.tzinfo is None:
            raise InvalidParameter("since must carry its time zone, e.g. 2026-07-01T20:00:00Z")
        conditions.append(f"t.live_updated_at > CAST(:since AS timestamptz) - interval '{LIVE_OVERLAP_S} seconds'")
        params["since"] = since
    live = ", ".join(f'{_value_sql(catalogue.POINT.property_named(p))} AS "{p}"' for p in LIVE_PROPERTIES)
    rows = conn.execute(sa.text(f"SELECT {live} FROM point t WHERE {' AND '.join(conditions)} ORDER BY t.id "
                                "LIMIT :limit"), params).mappings().all()
    now = conn.execute(sa.text("""SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')""")
                       ).scalar_one()
    points = [dict(row) for row in rows[:MAX_LIVE_POINTS]]
    return {"points": points, "now": now, "stale_after_minutes": stale_after_minutes,
            "truncated": len(rows) > MAX_LIVE_POINTS}
