"""The description of /api/v1: one table of endpoints and parameters, served as OpenAPI 3 and as an HTML page.

Each parameter is stated once (:class:`Param`): its schema in the document and the reader the views call
(:func:`read_query`) come from the same definition and the same limits (``geoservice.query``), so the document
cannot drift from what the API accepts. An unknown or repeated parameter is a 400 that lists the known ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import request

from geoservice import __version__, coverage, editing, query
from geoservice.catalogue import FEATURE_TABLES, Table
from geoservice.downloads import FORMATS, INLINE
from geoservice.errors import Forbidden, InvalidParameter, Unauthorized
from geoservice.features import MAX_LIMIT, SEARCH_MAX_LENGTH, SEARCH_MAX_RESULTS
from geoservice.params import absent, parse_bbox, parse_bool, parse_choice, parse_float, parse_int, parse_list
from geoservice.siting import DEFAULT_COUNT as SITING_DEFAULT_COUNT
from geoservice.siting import MAX_COUNT as SITING_MAX_COUNT
from geoservice.siting import MAX_UPLOADED_CANDIDATES
from geoservice.vocab import AMENITY_CODES, KIND_CODES
from geoservice.web import auth


@dataclass(frozen=True)
class Param:
    """One parameter: its OpenAPI description and how its raw value is read — one statement for both.

    ``read`` turns the raw string (None when absent) — or the list of raw strings when ``repeated`` — into the typed
    value, raising :class:`InvalidParameter` naming the parameter and what is allowed.
    """

    name: str
    description: str
    schema: dict
    read: Callable[[Any], Any]
    required: bool = False
    repeated: bool = False
    where: str = "query"

    def openapi(self) -> dict:
        """The OpenAPI 3.0 parameter object."""
        schema = {"type": "array", "items": self.schema} if self.repeated else self.schema
        param = {"name": self.name, "in": self.where, "required": self.required, "description": self.description,
                 "schema": schema}
        if self.repeated:
            param.update(style="form", explode=True)
        return param


def number(name: str, description: str, *, minimum: float, maximum: float, exclusive_minimum: bool = False,
           default: float | None = None) -> Param:
    """A finite number within its bounds (> minimum when ``exclusive_minimum``)."""
    schema: dict = {"type": "number", "minimum": minimum, "maximum": maximum}
    if exclusive_minimum:
        schema["exclusiveMinimum"] = True  # OpenAPI 3.0 spells it as a flag
    if default is not None:
        schema["default"] = default

    def read(raw: str | None) -> float | None:
        value = parse_float(name, raw, default=default, minimum=minimum, maximum=maximum)
        if exclusive_minimum and value is not None and value <= minimum:
            raise InvalidParameter(f"{name} must be greater than {minimum:g} and at most {maximum:g}, got {raw}")
        return value

    return Param(name, description, schema, read)


def metres(name: str, description: str, maximum: float) -> Param:
    """A distance in metres: more than 0, at most ``maximum``."""
    return number(name, description, minimum=0, maximum=maximum, exclusive_minimum=True)


def integer(name: str, description: str, *, minimum: int, maximum: int, default: int | None = None) -> Param:
    """A whole number within its bounds."""
    schema: dict = {"type": "integer", "minimum": minimum, "maximum": maximum}
    if default is not None:
        schema["default"] = default
    return Param(name, description, schema,
                 lambda raw: parse_int(name, raw, default=default, minimum=minimum, maximum=maximum))


def boolean(name: str, description: str) -> Param:
    """true/false (also 1/0, yes/no, on/off); false when absent."""
    return Param(name, description, {"type": "boolean", "default": False}, lambda raw: parse_bool(name, raw))


def choice(name: str, description: str, allowed: tuple[str, ...], *, default: str | None = None) -> Param:
    """One of ``allowed``."""
    schema: dict = {"type": "string", "enum": list(allowed)}
    if default is not None:
        schema["default"] = default
    return Param(name, description, schema, lambda raw: parse_choice(name, raw, allowed, default=default))


def several(name: str, description: str, allowed: tuple[str, ...]) -> Param:
    """Any of ``allowed``, repeated (``kind=a&kind=b``) or comma-separated (``kind=a,b``)."""
    return Param(name, description, {"type": "string", "enum": list(allowed)},
                 lambda raws: parse_list(name, raws, allowed), repeated=True)


def text(name: str, description: str, schema: dict, *, required: bool = False, where: str = "query") -> Param:
    """A string, checked by the core (codes, search text)."""
    return Param(name, description, schema, lambda raw: None if absent(name, raw) else raw, required=required,
                 where=where)


# Read together by ``geoservice.params.parse_lonlat``, which also recognises a swapped pair.
LON = Param("lon", "WGS 84 longitude of the spot, degrees", {"type": "number", "minimum": -180, "maximum": 180},
            lambda raw: raw, required=True)
LAT = Param("lat", "WGS 84 latitude of the spot, degrees", {"type": "number", "minimum": -90, "maximum": 90},
            lambda raw: raw, required=True)
KIND = several("kind", "point kind (repeat or comma-separate for several)", KIND_CODES)
MODE = choice("mode", "straight = geodesic distance; walk = along the street network", query.MODES,
              default="straight")
RADIUS = metres("radius", f"coverage radius in metres (default {query.DEFAULT_RADIUS_M:g}; "
                f"{query.TOILET_RADIUS_M:g} when kind is only toilet)", query.MAX_RADIUS_M)
_NUMBER_RE = r"\s*[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?\s*"
BBOX = Param("bbox", "minlon,minlat,maxlon,maxlat (WGS 84 degrees; min must not exceed max)",
             {"type": "string", "pattern": f"^{_NUMBER_RE}(,{_NUMBER_RE}){{3}}$"}, parse_bbox)
DISTRICT = text("district", "6-digit district code", {"type": "string", "pattern": "^[0-9]{6}$"})
def _what_if(raw: str | None) -> bool:
    """planned=true, for those who may see planned points (the answer shows where they would stand)."""
    planned = parse_bool("planned", raw)
    if planned and not auth.sees_hidden():
        problem = Unauthorized if auth.current_user() is None else Forbidden
        raise problem("planned=true (what if) shows where planned points would stand, which only planners and admins "
                      "see: log in as one, or leave planned out")
    return planned


PLANNED = Param("planned", "what if: count planned points as if they were open (default false: open points only). "
                "Planners and admins only: 401 without a login, 403 for other roles",
                {"type": "boolean", "default": False}, _what_if)
FORMAT = choice("f", "json = the answer inline (default); csv (UTF-8, geometry as WKT), geojson or gpkg "
                "(GeoPackage) = the same result as a file download (Content-Disposition: attachment)",
                FORMATS, default="json")
FEATURES = {"description": "GeoJSON", "content": {"application/geo+json": {"schema": {"type": "object"}}}}
DOWNLOADS = {"text/csv": {"schema": {"type": "string"}},
             "application/geopackage+sqlite3": {"schema": {"type": "string", "format": "binary"}}}

# -- editing (geoservice.api.editing) ---------------------------------------------------------------------------------

def _ids(raw: str | None) -> list[int] | None:
    if absent("ids", raw):
        return None
    try:
        ids = [int(v) for v in raw.split(",")]
    except ValueError:
        raise InvalidParameter(f"ids must be point ids separated by commas, e.g. ids=1,2,3; got {raw!r}") from None
    if len(ids) > editing.MAX_LIVE_IDS or min(ids) < 0:
        raise InvalidParameter(f"ids must list 1 to {editing.MAX_LIVE_IDS} point ids (whole numbers ≥ 0)")
    return ids


def _time(raw: str | None) -> datetime | None:
    if absent("since", raw):
        return None
    try:
        value = datetime.fromisoformat(raw.strip().upper().replace(" ", "T"))
    except ValueError:
        raise InvalidParameter(f"since must be an ISO 8601 time with its zone, e.g. 2026-07-01T20:00:00Z; got "
                               f"{raw!r}") from None
    if value.tzinfo is None:
        raise InvalidParameter(f"since must carry its time zone (Z or +08:00), got {raw!r}")
    try:
        return value.astimezone(UTC)  # PostgreSQL takes offsets up to ±15:59 only
    except OverflowError:  # within a day of year 1 or 9999: as early (late) as a time can be
        return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)


_KEYS = {"points": text("id", "point id", {"type": "integer", "minimum": 0}, required=True, where="path"),
         "grids": text("code", "the grid's 15-digit code", {"type": "string", "pattern": "^[0-9]{15}$"},
                       required=True, where="path")}
_FEATURE_PATHS = {"points": "/api/v1/points/{id}", "grids": "/api/v1/grids/{code}"}
_ETAG = {"ETag": {"description": "The feature's strong ETag: send it back as If-Match to change the feature",
                  "required": True, "schema": {"type": "string"}}}
_ERROR = {"$ref": "#/components/responses/Error"}
LOGIN = [{"bearer": []}, {"session": []}]
_WHO = (" Needs a login: an API token (Authorization: Bearer <token>) or the session cookie of the pages (their "
        "writes also send X-CSRF-Token). 401 without one; 403 when the user's role, squad or assigned points do "
        "not allow it.")


def _history(kind: str) -> dict:
    return {
        "summary": f"The history of a {kind[:-1]}: every change, newest first",
        "description": "Each version: its number (what revert takes), when, who (username, role), the operation "
                       "(create, replace, update, delete, occupancy, revert) and the feature before and after as "
                       "GeoJSON; address and user_agent only for planners and admins. next_before pages on."
                       + _WHO,
        "parameters": [
            _KEYS[kind],
            integer("limit", "how many versions", minimum=1, maximum=editing.MAX_HISTORY, default=50),
            integer("before", "only versions older than this one (next_before of the previous page)", minimum=1,
                    maximum=2**63 - 1),
        ],
        "responses": {"200": {"description": "JSON", "content": {"application/json": {"schema": {"type": "object"}}}},
                      "401": _ERROR},
        "security": LOGIN,
    }


def _feature_read(kind: str) -> dict:
    return {
        "summary": f"One {kind[:-1]} with every property, and its ETag",
        "description": "The GeoJSON Feature a write sends back (PUT) or changes (PATCH), with its ETag header.",
        "parameters": [_KEYS[kind]],
        "responses": {"200": {**FEATURES, "headers": _ETAG}},
    }


PATHS: dict[str, dict] = {
    "/api/v1/nearest": {
        "summary": "The k nearest convenience points to a spot",
        "description": "Ordered by distance. Each feature has distance_m (walk mode: walk_distance_m and "
                       "walk_minutes of the whole walk, its parts walk_network_m along the streets and walk_access_m "
                       "from the spot onto the street and off it to the point, and the route as a LineString), "
                       "open_now, free places, the grid and squad at the point, and Amap (GCJ-02) / Baidu "
                       "(coord_type=wgs84) navigation links. In walk mode, when fewer than k points are reached, "
                       "walk_search says why: the street the walk starts on, how far it is, and whether it is a "
                       "separate piece of the street network.",
        "parameters": [
            LON, LAT, KIND,
            several("amenity", "required amenity; all given are required", AMENITY_CODES),
            boolean("open_now", "only points open now (in the city's time zone)"),
            boolean("vacancy", "only points with free overnight places"),
            boolean("rest", "only rest points: open kiosks, rest stations, vendor and melon-farmer points offering "
                    f"at least one of {', '.join(query.REST_AMENITIES)} (the farmer finder's default)"),
            integer("k", "how many points", minimum=1, maximum=query.MAX_K, default=5),
            metres("max_distance", "farthest distance in metres", query.MAX_DISTANCE_M),
            MODE,
        ],
        "responses": {"200": FEATURES},
    },
    "/api/v1/grids/at": {
        "summary": "The unit grid at a spot and who is responsible for it",
        "description": "Grid code and name, community, subdistrict, district, grid officer and phone, squad and "
                       "phone. 404 when the spot is in no grid, saying how far the nearest grid is.",
        "parameters": [LON, LAT],
        "responses": {"200": FEATURES, "404": {"$ref": "#/components/responses/Error"}},
    },
    "/api/v1/coverage/streets": {
        "summary": "Street portions with no qualifying point within the radius",
        "description": "Uncovered portions as GeoJSON, with a summary: total, covered and uncovered km, covered %, "
                       "and uncovered km per street name.",
        "parameters": [RADIUS, KIND, MODE, BBOX, DISTRICT, PLANNED, FORMAT],
        "responses": {"200": {**FEATURES, "content": {**FEATURES["content"], **DOWNLOADS}}},
    },
    "/api/v1/coverage/grid-gaps": {
        "summary": "Land in no unit grid (gaps) and in two or more (overlaps)",
        "description": "Each with area_m2; overlaps list the grid codes. Pieces under min_area are counted as "
                       "slivers in the summary.",
        "parameters": [
            DISTRICT,
            text("community", "12-digit community code (instead of district)",
                 {"type": "string", "pattern": "^[0-9]{12}$"}),
            number("min_area", "sliver threshold in m² (default: the GEOSERVICE_SLIVER_AREA_M2 setting, 1)",
                   minimum=0, maximum=1e6),
        ],
        "responses": {"200": FEATURES},
    },
    "/api/v1/coverage/grids": {
        "summary": "Coverage per unit grid",
        "description": "Per grid: street km, covered km and %, points by kind; weakest first.",
        "parameters": [RADIUS, KIND, MODE, PLANNED, FORMAT],
        "responses": {"200": {"description": "JSON (f=geojson: grid outlines with the same numbers as properties)",
                              "content": {"application/json": {"schema": {"type": "object"}},
                                          "application/geo+json": {"schema": {"type": "object"}}, **DOWNLOADS}}},
    },
    "/api/v1/points/{id}/service-area": {
        "summary": "The area reachable from a point within the radius",
        "description": "walk: along the street network (default); straight: a geodesic circle.",
        "parameters": [
            text("id", "point id", {"type": "integer"}, required=True, where="path"),
            metres("radius", f"metres (default {query.DEFAULT_RADIUS_M:g})", query.MAX_RADIUS_M),
            choice("mode", "walk (default) or straight", query.MODES, default="walk"),
        ],
        "responses": {"200": FEATURES, "404": {"$ref": "#/components/responses/Error"}},
    },
    "/api/v1/layers/{layer}": {
        "summary": "A whole layer of the city map",
        "description": "districts, subdistricts, communities, grids, streets or points as GeoJSON. Points carry "
                       "zh/en labels, free_places, open_now (city time zone), the grid they lie in and its squad.",
        "parameters": [
            text("layer", "the layer", {"type": "string", "enum": list(FEATURE_TABLES)}, required=True, where="path"),
            BBOX,
            integer("limit", f"at most this many features (lowest ids first; default and most {MAX_LIMIT}); "
                    "truncated: true says there were more", minimum=1, maximum=MAX_LIMIT, default=MAX_LIMIT),
        ],
        "responses": {"200": FEATURES},
    },
    "/api/v1/me": {
        "summary": "Who is logged in",
        "description": "{\"user\": null} for the public. For a login session or an API token (Authorization: Bearer "
                       "<token>): user (username, display_name, role, role_label {zh, en}, squad, points: the ids "
                       "a kiosk staff member looks after) and csrf_token, the token a page sends as X-CSRF-Token "
                       "with its writes (null for an API token, which needs none). Never cached.",
        "parameters": [],
        "responses": {"200": {"description": "JSON", "content": {"application/json": {"schema": {"type": "object"}}}}},
    },
    "/api/v1/points/search": {
        "summary": "Convenience points by name or address",
        "description": "Points whose name or address contains q (case-insensitive, literal), best first: name equal "
                       "to q, name starting with q, name containing q, then address only. Features carry the same "
                       "properties as the points layer: labels, open_now, free places, grid and squad.",
        "parameters": [
            text("q", f"part of the name or address, 1-{SEARCH_MAX_LENGTH} characters",
                 {"type": "string", "minLength": 1, "maxLength": SEARCH_MAX_LENGTH,
                  "pattern": "^[^\\u0000-\\u001f\\u007f]*$"}, required=True),
            integer("limit", "how many points", minimum=1, maximum=SEARCH_MAX_RESULTS, default=10),
        ],
        "responses": {"200": FEATURES},
    },
    "/api/v1/points/{id}": _feature_read("points"),
    "/api/v1/grids/{code}": _feature_read("grids"),
    "/api/v1/points/{id}/history": _history("points"),
    "/api/v1/grids/{code}/history": _history("grids"),
    "/api/v1/points/live": {
        "summary": "The live state of points: occupancy, capacity, status, notice and when they changed",
        "description": "What pages poll every few seconds: the points in ids and/or those whose live state changed "
                       f"since a time (the answer's now, for the next poll; since looks {editing.LIVE_OVERLAP_S} s "
                       "further back so that no change is missed); every point when neither is given (at most "
                       f"{editing.MAX_LIVE_POINTS}: truncated says there were more). stale_after_minutes: a count "
                       "older than this should be shown as possibly out of date.",
        "parameters": [
            Param("ids", f"point ids, comma-separated (at most {editing.MAX_LIVE_IDS})", {
                "type": "string", "pattern": f"^[0-9]{{1,9}}(,[0-9]{{1,9}}){{0,{editing.MAX_LIVE_IDS - 1}}}$"}, _ids),
            Param("since", "only points whose live state changed since this time (ISO 8601 with its zone)",
                  {"type": "string", "format": "date-time"}, _time),
        ],
        "responses": {"200": {"description": "JSON", "content": {"application/json": {"schema": {"type": "object"}}}}},
    },
}

# -- coverage analytics: the planner page's charts (issue 11) ----------------------------------------------------------


def _radii(raws: list[str]) -> tuple[float, ...] | None:
    """Radii for the coverage curve: repeated or comma-separated metres; None (the core's default radii) when absent.

    How many may be given is the core's rule (``coverage.MAX_CURVE_RADII``), checked there.
    """
    values = [v for raw in raws for v in raw.split(",")]
    return tuple(RADIUS.read(v) for v in values) or None


_ANALYTICS_JSON = {"200": {"description": "JSON", "content": {"application/json": {"schema": {"type": "object"}}}}}
PATHS.update({
    "/api/v1/coverage/curve": {
        "summary": "Covered % of the street length against the radius, in one call",
        "description": "For the kinds and mode: total_km, and per radius covered_km and covered_pct (default radii "
                       "50, 100 … 1000 m). At 500 m it equals the summary of /api/v1/coverage/streets at 500 m.",
        "parameters": [
            Param("radius", f"radii in metres (repeat or comma-separate; at most {coverage.MAX_CURVE_RADII}; each "
                  f"above 0 and at most {query.MAX_RADIUS_M:g}; default 50, 100 … 1000)",
                  {"type": "number", "minimum": 0, "maximum": query.MAX_RADIUS_M, "exclusiveMinimum": True},
                  _radii, repeated=True),
            KIND, MODE, PLANNED,
        ],
        "responses": _ANALYTICS_JSON,
    },
    "/api/v1/coverage/areas": {
        "summary": "Coverage per subdistrict or per community",
        "description": "Per area: code, name, street_km, covered_km, uncovered_km, covered_pct (null without "
                       "streets); weakest first.",
        "parameters": [
            choice("level", "subdistrict (街道) or community (社区)", coverage.AREA_LEVELS, default="subdistrict"),
            RADIUS, KIND, MODE, PLANNED,
        ],
        "responses": _ANALYTICS_JSON,
    },
    "/api/v1/coverage/distances": {
        "summary": "Street length by distance to the nearest qualifying point",
        "description": "bins of 50 m from 0 to 1000 m (from_m, to_m, km) and beyond_km: the street km farther "
                       "than the last bin (or with no qualifying point at all); bins and beyond_km add up to "
                       "total_km.",
        "parameters": [KIND, MODE, PLANNED],
        "responses": _ANALYTICS_JSON,
    },
})


def feature_body(table: Table, *, partial: bool) -> dict:
    """The JSON schema of a GeoJSON Feature a write sends: the writable properties (from the catalogue)."""
    properties = {p.name: p.schema for p in editing.writable(table)}
    geometry = {"type": "object", "required": ["type", "coordinates"], "description": f"GeoJSON {table.geometry.type}",
                "properties": {"type": {"type": "string", "enum": [table.geometry.type]},
                               "coordinates": {"type": "array"}}}
    required = [p.name for p in editing.writable(table) if p.required]
    props: dict = {"type": "object", "properties": properties}
    if required and not partial:
        props["required"] = required
    body: dict = {"type": "object", "properties": {"type": {"type": "string", "enum": ["Feature"]},
                                                   "properties": props, "geometry": geometry}}
    if not partial:
        body["required"] = ["type", "properties", "geometry"]
    return body


def _json_body(schema: dict, description: str) -> dict:
    return {"required": True, "description": description,
            "content": {"application/json": {"schema": schema}, "application/geo+json": {"schema": schema}}}


IF_MATCH = {"name": "If-Match", "in": "header", "required": True, "schema": {"type": "string", "minLength": 1},
             "description": "the ETag of the feature as you read it; 428 without it, 412 when the feature has "
                            "changed since"}
_FEATURE_ANSWER = {**FEATURES, "headers": _ETAG}
_WRITE_ERRORS = {"401": _ERROR, "403": _ERROR, "409": _ERROR}
_CONDITIONAL_ERRORS = {**_WRITE_ERRORS, "412": _ERROR, "428": _ERROR}


def _write(summary: str, description: str, *, responses: dict, parameters: tuple = (),
           body: dict | None = None) -> dict:
    operation = {"summary": summary, "description": description + _WHO, "parameters": list(parameters),
                 "responses": responses, "security": LOGIN}
    if body is not None:
        operation["requestBody"] = body
    return operation


def _feature_writes(kind: str) -> dict[str, dict]:
    table, key, one = editing.EDITABLE[kind], _KEYS[kind].openapi(), kind[:-1]
    rules = ("Validated by the same rules as imports (codes, vocabularies, phone numbers, opening hours, "
             "0 ≤ occupancy ≤ capacity, a valid geometry inside the city) and the database's constraints; 400 "
             "names each field: errors: [{field, reason}]. One audit row per change.")
    return {
        f"/api/v1/{kind}": {"post": _write(
            f"Create a {one} (planners)", f"A GeoJSON Feature; 201 with Location and ETag. {rules}",
            responses={"201": {**_FEATURE_ANSWER, "headers": {**_ETAG, "Location": {
                "description": "the new feature's URL", "required": True, "schema": {"type": "string"}}}},
                **_WRITE_ERRORS},
            body=_json_body(feature_body(table, partial=False), "the new feature"))},
        _FEATURE_PATHS[kind]: {
            "put": _write(f"Replace a {one}", "Every property (read-only ones are ignored; those left out become "
                          f"empty) and the geometry. Officers and kiosk staff may change only their fields. {rules}",
                          parameters=(key, IF_MATCH), responses={"200": _FEATURE_ANSWER, **_CONDITIONAL_ERRORS},
                          body=_json_body(feature_body(table, partial=False), "the whole feature")),
            "patch": _write(f"Change some properties (or the geometry) of a {one}",
                            '{"properties": {the changed ones}, "geometry"?: …}; the rest is kept. Changing '
                            f"nothing writes nothing. {rules}", parameters=(key, IF_MATCH),
                            responses={"200": _FEATURE_ANSWER, **_CONDITIONAL_ERRORS},
                            body=_json_body(feature_body(table, partial=True), "the changes")),
            "delete": _write(f"Delete a {one} (planners)", "204; its history stays and revert brings it back.",
                             parameters=(key, IF_MATCH), responses={"204": {"description": "deleted"},
                                                                     **_CONDITIONAL_ERRORS}),
        },
        f"{_FEATURE_PATHS[kind]}/revert": {"post": _write(
            f"Put a {one} back as it was after an earlier version (planners)",
            'Body {"version": N} (a version from its history). Audited as revert. A deleted feature is brought '
            "back with its key (201, without If-Match: there is nothing to match).",
            parameters=(key, {**IF_MATCH, "required": False}),
            responses={"200": _FEATURE_ANSWER, "201": _FEATURE_ANSWER, **_CONDITIONAL_ERRORS},
            body=_json_body({"type": "object", "required": ["version"], "properties": {
                "version": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}}}, "the version"))},
    }


def _occupancy_write() -> dict:
    body = {"type": "object", "required": ["op"], "properties": {
        "op": {"type": "string", "enum": list(editing.OCCUPANCY_OPERATIONS)},
        "value": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1, "description": "with op set only"}}}
    return {"post": _write(
        "A tap on a kiosk's occupancy: +1, −1, full or set N",
        "Applied atomically in the database (two taps at once both count); no If-Match. 409 when it would go "
        "below 0 or above the capacity, or the point has no capacity. Answers the live state (id, occupancy, "
        "capacity, status, notice, live_updated_at) and the feature's new ETag. Kiosk staff on their points, "
        "officers inside their squad's grids, planners anywhere.",
        parameters=(_KEYS["points"].openapi(),),
        responses={"200": {"description": "the live state", "headers": _ETAG,
                           "content": {"application/json": {"schema": {"type": "object"}}}}, **_WRITE_ERRORS},
        body=_json_body(body, "the tap"))}


SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "an API token (geoservice user token create), shown once when made"},
    "session": {"type": "apiKey", "in": "cookie", "name": auth.SESSION_COOKIE,
                "description": "the session POST /login sets (pages); writes also send X-CSRF-Token"},
}
"""How a write says who makes it (the /ogc document declares the same)."""

WRITES: dict[str, dict[str, dict]] = {**_feature_writes("points"), **_feature_writes("grids"),
                                      "/api/v1/points/{id}/occupancy": _occupancy_write()}
"""The write operations, path → method → OpenAPI operation (their bodies checked by geoservice.editing)."""


# -- siting: where new points would cover the most (issue 11; geoservice.api.siting) ---------------------------------

SITING_PATH = "/api/v1/siting"
_SITES_ANSWER = {"description": "GeoJSON: the chosen sites in order, and a summary (f=csv: one row per site)",
                 "content": {"application/geo+json": {"schema": {"type": "object"}},
                             "text/csv": {"schema": {"type": "string"}}}}
_LON = r"-?(180(\.0+)?|(1[0-7][0-9]|[0-9]{1,2})(\.[0-9]+)?)"
_LAT = r"-?(90(\.0+)?|[0-8]?[0-9](\.[0-9]+)?)"
_CANDIDATE_ROWS = f"^({_LON},{_LAT}\\r?\\n){{1,{MAX_UPLOADED_CANDIDATES}}}$"
_SITING_DESCRIPTION = (
    "count: at most that many new sites maximising the newly covered street length (maximal covering); target: the "
    "fewest new sites after which that % of the street length is covered (set covering); both: the target with at "
    "most count sites (when more are needed, the best count sites; target_reached says which). A target beyond what "
    "all candidates together reach (most_pct) gets the fewest sites reaching that. "
    "Existing open points (and planned ones with planned=true) stay where they are. Solved exactly (MILP, HiGHS) "
    "within the GEOSERVICE_SITING_TIME_LIMIT_S setting, else greedy. Features: rank, lon, lat, gain_km (marginal), "
    "covered_pct (cumulative), source (intersection, midpoint, uploaded), street_id. summary: method (milp or "
    "greedy), optimal, gap, bound, objective_km, seconds, candidates, total_km, covered_pct before, "
    "covered_pct_after, most_pct and target_reached.")
PATHS[SITING_PATH] = {
    "summary": "Where new points would cover the most street (default candidate sites)",
    "description": "Candidates: street intersections (3 or more segments) and segment midpoints inside the area, "
                   "not at a junction of an arterial road nor along one. " + _SITING_DESCRIPTION,
    "parameters": [
        integer("count", f"how many new sites at most (1-{SITING_MAX_COUNT}; {SITING_DEFAULT_COUNT} when no target "
                "is given)", minimum=1, maximum=SITING_MAX_COUNT),
        number("target", "the covered % of the street length to reach with the fewest new sites (above 0, at most "
               "100)", minimum=0, maximum=100, exclusive_minimum=True),
        RADIUS, KIND, MODE, DISTRICT, BBOX, PLANNED,
        choice("f", "json = the answer inline (default); csv (UTF-8, one row per site) or geojson = a file download",
               (INLINE, "csv", "geojson"), default=INLINE),
    ],
    "responses": {"200": _SITES_ANSWER},
}
ANALYSIS_POSTS: dict[str, dict[str, dict]] = {SITING_PATH: {"post": {
    "summary": "Where new points would cover the most street, among the planner's own candidate sites",
    "description": "The body is the candidate sites: CSV rows lon,lat (a header row allowed), or a GeoJSON "
                   "FeatureCollection of Point / MultiPoint features sent as application/geo+json or "
                   f"application/json; WGS 84, at most {MAX_UPLOADED_CANDIDATES} sites. The query parameters are "
                   "those of GET. " + _SITING_DESCRIPTION,
    "parameters": [p.openapi() for p in PATHS[SITING_PATH]["parameters"]],
    "requestBody": {"required": True, "description": "the candidate sites",
                    "content": {"text/csv": {"schema": {"type": "string", "pattern": _CANDIDATE_ROWS}}}},
    "responses": {"200": _SITES_ANSWER},
}}}
"""Analyses that take a body (they change nothing: not writes), path → method → OpenAPI operation."""


# What any operation may answer besides its own: bad input, nothing there, an over-long address or header block,
# and the database away, busy or past its time limit (with Retry-After) — all in the one JSON error shape.
ERROR_STATUSES = ("400", "404", "414", "431", "503")
_LOGIN_ERRORS = {"401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}}


def read_query(path: str) -> dict[str, Any]:
    """The query parameters of ``path``, read and checked as its table states: name → typed value.

    Unknown parameters, and a parameter given twice that is not a list, are refused, naming what is allowed.
    """
    params = {p.name: p for p in PATHS[path]["parameters"] if p.where == "query"}
    unknown = [name for name in request.args if name not in params]
    if unknown:
        raise InvalidParameter(f"unknown parameter {unknown[0]!r}; {path} accepts: {', '.join(params)}")
    values = {}
    for name, param in params.items():
        raws = request.args.getlist(name)
        if param.repeated:
            values[name] = param.read(raws)
            continue
        if len(raws) > 1:
            raise InvalidParameter(f"{name} is given {len(raws)} times; give it once")
        values[name] = param.read(raws[0] if raws else None)
    return values


def document() -> dict:
    """The OpenAPI 3.0 document."""
    error = {"description": "Bad input or not found",
             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    paths: dict[str, dict] = {}
    errors = {status: {"$ref": "#/components/responses/Error"} for status in ERROR_STATUSES}
    for path, spec in PATHS.items():
        login = _LOGIN_ERRORS if PLANNED in spec["parameters"] else {}
        paths[path] = {"get": {"summary": spec["summary"], "description": spec["description"],
                               "parameters": [p.openapi() for p in spec["parameters"]],
                               "responses": {**spec["responses"], **errors, **login},
                               "operationId": _operation_id(path)}}
        if "security" in spec:
            paths[path]["get"]["security"] = spec["security"]
    for path, operations in [*WRITES.items(), *ANALYSIS_POSTS.items()]:
        for method, operation in operations.items():
            login = _LOGIN_ERRORS if any(p.get("name") == PLANNED.name for p in operation.get("parameters", ())) \
                else {}
            paths.setdefault(path, {})[method] = {**operation, "responses": {**operation["responses"], **errors,
                                                                             **login},
                                                  "operationId": f"{method}_{_operation_id(path)}"}
    return {
        "openapi": "3.0.3",
        "info": {"title": "geoservice domain API", "version": __version__,
                 "description": "Convenience points, coverage and unit grids of the city. Coordinates are WGS 84 "
                                "lon/lat; distances in metres."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": {"Error": {"type": "object", "required": ["code", "description"], "properties": {
                "code": {"type": "string"}, "description": {"type": "string"}}}},
            "responses": {"Error": error},
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def _operation_id(path: str) -> str:
    return path.strip("/").replace("/", "_").replace("{", "").replace("}", "")
