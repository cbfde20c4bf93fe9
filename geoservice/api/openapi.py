"""The description of /api/v1: one table of endpoints and parameters, served as OpenAPI 3 and as an HTML page.

The same table is what the views check query parameters against (an unknown parameter is a 400 that lists the
known ones), so the document cannot drift from what the API accepts.
"""

from __future__ import annotations

from flask import request

from geoservice import __version__, query
from geoservice.downloads import FORMATS
from geoservice.errors import InvalidParameter
from geoservice.vocab import AMENITY_CODES, KIND_CODES


def _p(name: str, description: str, schema: dict, *, required: bool = False, repeated: bool = False,
       where: str = "query") -> dict:
    if repeated:
        schema = {"type": "array", "items": schema}
    param = {"name": name, "in": where, "required": required, "description": description, "schema": schema}
    if repeated:
        param.update(style="form", explode=True)
    return param


NUMBER = {"type": "number"}


def metres(maximum: float) -> dict:
    """Schema of a distance: more than 0, at most ``maximum`` (OpenAPI 3.0 spells exclusiveMinimum as a flag)."""
    return {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": maximum}


LON = _p("lon", "WGS 84 longitude of the spot, degrees", {"type": "number", "minimum": -180, "maximum": 180},
         required=True)
LAT = _p("lat", "WGS 84 latitude of the spot, degrees", {"type": "number", "minimum": -90, "maximum": 90},
         required=True)
KIND = _p("kind", "point kind (repeat or comma-separate for several)", {"type": "string", "enum": list(KIND_CODES)},
          repeated=True)
MODE = _p("mode", "straight = geodesic distance; walk = along the street network",
          {"type": "string", "enum": list(query.MODES), "default": "straight"})
RADIUS = _p("radius", f"coverage radius in metres (default {query.DEFAULT_RADIUS_M:g}; {query.TOILET_RADIUS_M:g} "
            "when kind is only toilet)", metres(query.MAX_RADIUS_M))
BBOX = _p("bbox", "minlon,minlat,maxlon,maxlat (WGS 84)", {"type": "string"})
DISTRICT = _p("district", "6-digit district code", {"type": "string", "pattern": "^[0-9]{6}$"})
FEATURES = {"description": "GeoJSON", "content": {"application/geo+json": {"schema": {"type": "object"}}}}
FORMAT = _p("f", "json = the answer inline (default); csv (UTF-8, geometry as WKT), geojson or gpkg (GeoPackage) = "
                 "the same result as a file download (Content-Disposition: attachment)",
            {"type": "string", "enum": list(FORMATS), "default": "json"})
DOWNLOADS = {"text/csv": {"schema": {"type": "string"}},
             "application/geopackage+sqlite3": {"schema": {"type": "string", "format": "binary"}}}

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
            _p("amenity", "required amenity; all given are required", {"type": "string", "enum": list(AMENITY_CODES)},
               repeated=True),
            _p("open_now", "only points open now (Asia/Shanghai)", {"type": "boolean", "default": False}),
            _p("vacancy", "only points with free overnight places", {"type": "boolean", "default": False}),
            _p("rest", "only rest points: open kiosks, rest stations, vendor and melon-farmer points offering "
               f"at least one of {', '.join(query.REST_AMENITIES)} (the farmer finder's default)",
               {"type": "boolean", "default": False}),
            _p("k", "how many points", {"type": "integer", "minimum": 1, "maximum": query.MAX_K, "default": 5}),
            _p("max_distance", "farthest distance in metres", metres(query.MAX_DISTANCE_M)),
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
        "parameters": [RADIUS, KIND, MODE, BBOX, DISTRICT, FORMAT],
        "responses": {"200": {**FEATURES, "content": {**FEATURES["content"], **DOWNLOADS}}},
    },
    "/api/v1/coverage/grid-gaps": {
        "summary": "Land in no unit grid (gaps) and in two or more (overlaps)",
        "description": "Each with area_m2; overlaps list the grid codes. Pieces under min_area are counted as "
                       "slivers in the summary.",
        "parameters": [
            DISTRICT,
            _p("community", "12-digit community code (instead of district)",
               {"type": "string", "pattern": "^[0-9]{12}$"}),
            _p("min_area", "sliver threshold in m² (default: the GEOSERVICE_SLIVER_AREA_M2 setting, 1)",
               {"type": "number", "minimum": 0}),
        ],
        "responses": {"200": FEATURES},
    },
    "/api/v1/coverage/grids": {
        "summary": "Coverage per unit grid",
        "description": "Per grid: street km, covered km and %, points by kind; weakest first.",
        "parameters": [RADIUS, KIND, MODE, FORMAT],
        "responses": {"200": {"description": "JSON (f=geojson: grid outlines with the same numbers as properties)",
                              "content": {"application/json": {"schema": {"type": "object"}},
                                          "application/geo+json": {"schema": {"type": "object"}}, **DOWNLOADS}}},
    },
    "/api/v1/points/{id}/service-area": {
        "summary": "The area reachable from a point within the radius",
        "description": "walk: along the street network (default); straight: a geodesic circle.",
        "parameters": [
            _p("id", "point id", {"type": "integer"}, required=True, where="path"),
            _p("radius", f"metres (default {query.DEFAULT_RADIUS_M:g})", metres(query.MAX_RADIUS_M)),
            _p("mode", "walk (default) or straight", {"type": "string", "enum": list(query.MODES)}),
        ],
        "responses": {"200": FEATURES, "404": {"$ref": "#/components/responses/Error"}},
    },
    "/api/v1/layers/{layer}": {
        "summary": "A whole layer of the city map",
        "description": "districts, subdistricts, communities, grids, streets or points as GeoJSON. Points carry "
                       "zh/en labels, free_places, open_now (city time zone), the grid they lie in and its squad.",
        "parameters": [
            _p("layer", "the layer", {"type": "string", "enum": ["districts", "subdistricts", "communities", "grids",
                                                                 "streets", "points"]}, required=True, where="path"),
            BBOX,
            _p("limit", "at most this many features (lowest ids first); the answer then has truncated: true when "
               "there were more", {"type": "integer", "minimum": 1, "maximum": 100000}),
        ],
        "responses": {"200": FEATURES},
    },
    "/api/v1/points/search": {
        "summary": "Convenience points by name or address",
        "description": "Points whose name or address contains q (case-insensitive, literal), best first: name equal "
                       "to q, name starting with q, name containing q, then address only. Features carry the same "
                       "properties as the points layer: labels, open_now, free places, grid and squad.",
        "parameters": [
            _p("q", "part of the name or address, 1-100 characters", {"type": "string", "minLength": 1,
                                                                         "maxLength": 100}, required=True),
            _p("limit", "how many points", {"type": "integer", "minimum": 1, "maximum": 50, "default": 10}),
        ],
        "responses": {"200": FEATURES},
    },
}


def check_known_params(path: str) -> None:
    """Refuse query parameters the endpoint does not declare, listing the ones it does."""
    known = [p["name"] for p in PATHS[path]["parameters"] if p["in"] == "query"]
    unknown = [name for name in request.args if name not in known]
    if unknown:
        raise InvalidParameter(f"unknown parameter {unknown[0]!r}; {path} accepts: {', '.join(known)}")


def document() -> dict:
    """The OpenAPI 3.0 document."""
    error = {"description": "Bad input or not found",
             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    paths = {}
    for path, spec in PATHS.items():
        responses = {**spec["responses"], "400": {"$ref": "#/components/responses/Error"}}
        paths[path] = {"get": {"summary": spec["summary"], "description": spec["description"],
                               "parameters": spec["parameters"], "responses": responses,
                               "operationId": path.strip("/").replace("/", "_").replace("{", "").replace("}", "")}}
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
        },
    }
