"""The JSON endpoints: /healthz and the domain API under /api/v1.

Each view is one line deep: parse and validate the parameters (``geoservice.params``), call a core function with
the request's connection, serialise. The parameters are described once, in ``geoservice.api.openapi``.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from geoservice import coverage, db, downloads, features, grids, health, hours, nearest, query
from geoservice.api import openapi
from geoservice.params import (
    parse_bbox,
    parse_bool,
    parse_choice,
    parse_float,
    parse_int,
    parse_list,
    parse_lonlat,
)
from geoservice.service_area import service_area as point_service_area
from geoservice.vocab import AMENITY_CODES, KIND_CODES

bp = Blueprint("api", __name__)


def _settings():
    return current_app.config["GEOSERVICE_SETTINGS"]


def _cached(name: str, compute, **query):
    """``compute(conn, **query)``, or its answer kept from an earlier request while the data is unchanged."""
    conn = db.get_connection()
    key = (name, tuple(sorted(query.items())))
    return current_app.extensions["geoservice_results"].get(conn, key, lambda: compute(conn, **query))


@bp.get("/healthz")
def healthz():
    """200 with versions and row counts when the database answers; 503 when it does not."""
    try:
        report = health.probe(db.get_engine(), timeout_s=_settings().health_timeout)
    except health.Unreachable as exc:
        return jsonify({"status": "unavailable", "database": {"reachable": False, "error": str(exc)},
                        "metric_crs": _settings().metric_crs_report()}), 503
    return jsonify({"status": "ok", "database": report, "metric_crs": _settings().metric_crs_report()})


@bp.get("/api/v1/layers/<layer>")
def layer(layer: str):
    """One layer of the city map as a GeoJSON FeatureCollection, optionally cut to a bbox."""
    openapi.check_known_params("/api/v1/layers/{layer}")
    bbox = parse_bbox(request.args.get("bbox"))
    limit = parse_int("limit", request.args.get("limit"), default=None, minimum=1, maximum=features.MAX_LIMIT)
    now = hours.local_now(_settings().timezone)
    return _geojson(features.layer_collection(db.get_connection(), layer, bbox=bbox, limit=limit, now=now))


@bp.get("/api/v1/points/search")
def search_points():
    """Convenience points by name or address, best matches first."""
    openapi.check_known_params("/api/v1/points/search")
    limit = parse_int("limit", request.args.get("limit"), default=10, minimum=1, maximum=features.SEARCH_MAX_RESULTS)
    now = hours.local_now(_settings().timezone)
    return _geojson(features.search_points(db.get_connection(), request.args.get("q", ""), limit=limit, now=now))


@bp.get("/api/v1/nearest")
def nearest_points():
    """The k nearest convenience points (straight or walking)."""
    openapi.check_known_params("/api/v1/nearest")
    args = request.args
    lon, lat = parse_lonlat(args.get("lon"), args.get("lat"))
    question = nearest.NearestQuery(
        lon=lon, lat=lat, kinds=parse_list("kind", args.getlist("kind"), KIND_CODES),
        amenities=parse_list("amenity", args.getlist("amenity"), AMENITY_CODES),
        open_now=parse_bool("open_now", args.get("open_now")), vacancy=parse_bool("vacancy", args.get("vacancy")),
        rest=parse_bool("rest", args.get("rest")),
        k=parse_int("k", args.get("k"), default=5, minimum=1, maximum=query.MAX_K),
        max_distance_m=parse_float("max_distance", args.get("max_distance"), minimum=0, maximum=query.MAX_DISTANCE_M),
        mode=parse_choice("mode", args.get("mode"), query.MODES, default="straight"),
    )
    now = hours.local_now(_settings().timezone)
    return _geojson(nearest.nearest_points(db.get_connection(), question, now=now,
                                           metric_crs=_settings().metric_crs))


@bp.get("/api/v1/grids/at")
def grid_at():
    """The unit grid at a spot, with who is responsible for it."""
    openapi.check_known_params("/api/v1/grids/at")
    lon, lat = parse_lonlat(request.args.get("lon"), request.args.get("lat"))
    return _geojson(grids.grid_at(db.get_connection(), lon=lon, lat=lat))


@bp.get("/api/v1/coverage/grid-gaps")
def grid_gaps():
    """Land in no unit grid, and land in two or more."""
    openapi.check_known_params("/api/v1/coverage/grid-gaps")
    args = request.args
    sliver = parse_float("min_area", args.get("min_area"), default=_settings().sliver_area_m2, minimum=0,
                         maximum=1e6)
    return _geojson(_cached("grid_gaps", grids.grid_gaps, district=args.get("district") or None,
                            community=args.get("community") or None, sliver_m2=sliver))


def _coverage_args() -> dict:
    args = request.args
    kinds = parse_list("kind", args.getlist("kind"), KIND_CODES)
    radius = parse_float("radius", args.get("radius"), default=query.default_radius_m(kinds), minimum=0,
                         maximum=query.MAX_RADIUS_M)
    return {"radius_m": radius, "kinds": kinds or None,
            "mode": parse_choice("mode", args.get("mode"), query.MODES, default="straight")}


@bp.get("/api/v1/coverage/streets")
def uncovered_streets():
    """Street portions with no qualifying point within the radius, and a summary."""
    openapi.check_known_params("/api/v1/coverage/streets")
    args = request.args
    fmt = parse_choice("f", args.get("f"), downloads.FORMATS, default=downloads.INLINE)
    result = _cached("uncovered_streets", coverage.uncovered_streets, **_coverage_args(),
                     bbox=parse_bbox(args.get("bbox")), district=args.get("district") or None,
                     metric_crs=_settings().metric_crs)
    if fmt == downloads.INLINE:
        return _geojson(result)
    return _attachment(downloads.uncovered_streets_file(result, fmt=fmt))


@bp.get("/api/v1/coverage/grids")
def grid_coverage():
    """Per unit grid: street km, covered km and %, points by kind."""
    openapi.check_known_params("/api/v1/coverage/grids")
    fmt = parse_choice("f", request.args.get("f"), downloads.FORMATS, default=downloads.INLINE)
    args = _coverage_args()
    result = _cached("grid_coverage", coverage.grid_coverage, **args, metric_crs=_settings().metric_crs)
    if fmt == downloads.INLINE:
        return jsonify({"grids": result})
    return _attachment(downloads.grid_coverage_file(db.get_connection(), result, **args, fmt=fmt))


@bp.get("/api/v1/points/<int:point_id>/service-area")
def service_area(point_id: int):
    """The area reachable from a point within a radius."""
    openapi.check_known_params("/api/v1/points/{id}/service-area")
    args = request.args
    radius = parse_float("radius", args.get("radius"), default=query.DEFAULT_RADIUS_M, minimum=0,
                         maximum=query.MAX_RADIUS_M)
    mode = parse_choice("mode", args.get("mode"), query.MODES, default="walk")
    return _geojson(point_service_area(db.get_connection(), point_id=point_id, radius_m=radius, mode=mode,
                                       metric_crs=_settings().metric_crs))


@bp.get("/api/v1/openapi.json")
def openapi_document():
    """The OpenAPI 3 description of /api/v1."""
    return jsonify(openapi.document())


@bp.get("/api/v1/docs")
def api_docs():
    """Human documentation of /api/v1, rendered from the OpenAPI document."""
    return render_template("api_docs.html", doc=openapi.document())


def _attachment(download: downloads.Download) -> Response:
    """A file download: the browser saves it under its name instead of showing it."""
    response = Response(download.body, content_type=download.media_type)
    response.headers["Content-Disposition"] = f'attachment; filename="{download.filename}"'
    return response


def _geojson(body: dict) -> Response:
    response = jsonify(body)
    response.mimetype = "application/geo+json"
    return response
