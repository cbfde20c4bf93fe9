"""The JSON endpoints: /healthz and the domain API under /api/v1.

Each view is one line deep: read the parameters as ``geoservice.api.openapi`` states them (the same definitions
make the OpenAPI document), call a core function with the request's connection, serialise.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from geoservice import budget, coverage, db, downloads, features, grids, health, hours, http_cache, nearest, query
from geoservice.api import openapi
from geoservice.catalogue import FEATURE_TABLES, POINT
from geoservice.params import parse_lonlat
from geoservice.service_area import service_area as point_service_area
from geoservice.spatial import box_around
from geoservice.web.auth import sees_hidden

bp = Blueprint("api", __name__)


def _settings():
    return current_app.config["GEOSERVICE_SETTINGS"]


def _now():
    return hours.local_now(_settings().timezone)


def _city_extent():
    """The lon/lat box of the city: its centre ± the radius imports keep every feature within."""
    settings = _settings()
    return box_around(*settings.city_center, settings.city_radius_km * 1000)


def _analysis(compute, **query):
    """``compute(conn, **query)`` as an analysis: it takes an analysis slot first (503 Busy when none is free)."""
    conn = budget.connection("analysis")
    budget.take_analysis_slot(conn, _settings())
    return compute(conn, **query)


def _cached(name: str, compute, **query):
    """``compute(conn, **query)`` as an analysis, or its answer kept while the data is unchanged.

    A kept answer is served at once, without a slot.
    """
    conn = budget.connection("analysis")
    key = (name, tuple(sorted(query.items())))
    return current_app.extensions["geoservice_results"].get(conn, key, lambda: _analysis(compute, **query))


def _versioned(render, *, kind: str, private: bool = False) -> Response:
    """``render()`` — or a 304 when the client holds the answer for this address at the current data version.

    For answers that read only what the data version covers (``geoservice.http_cache``); the address (path and
    query) and ``private`` (the caller sees planned points) select the answer.
    """
    tags = http_cache.validators(budget.connection(kind), request.full_path, private)
    if http_cache.is_fresh(tags):
        return http_cache.not_modified(tags, private=private)
    response = render()
    return http_cache.stamp(response, tags, private=private) if response.status_code == 200 else response


@bp.get("/healthz")
def healthz():
    """200 with versions, revisions and estimated row counts (``?counts=exact``: counted); 503 if the DB is down."""
    counts = health.parse_counts(request.args)
    try:
        report = health.probe(db.get_engine(), timeout_s=_settings().health_timeout, counts=counts,
                              replicas=db.get_replicas())
    except health.Unreachable as exc:
        return jsonify({"status": "unavailable", "database": {"reachable": False, "error": str(exc)},
                        "metric_crs": _settings().metric_crs_report()}), 503
    return jsonify({"status": "ok", "database": report, "metric_crs": _settings().metric_crs_report()})


@bp.get("/api/v1/layers/<layer>")
def layer(layer: str):
    """One layer of the city map as a GeoJSON FeatureCollection, optionally cut to a bbox."""
    args = openapi.read_query("/api/v1/layers/{layer}")
    hidden = sees_hidden()

    def render():
        return _geojson(features.layer_collection(budget.connection("layer"), layer, bbox=args["bbox"],
                                                  limit=args["limit"], now=_now(), show_hidden=hidden))

    if FEATURE_TABLES.get(layer) is POINT:
        # Points carry occupancy, notices and open-now, which the data version does not cover: tagged by content.
        return http_cache.body_tag(render())
    return _versioned(render, kind="layer", private=hidden)


@bp.get("/api/v1/points/search")
def search_points():
    """Convenience points by name or address, best matches first."""
    args = openapi.read_query("/api/v1/points/search")
    return _geojson(features.search_points(budget.connection("lookup"), args["q"] or "", limit=args["limit"],
                                           now=_now(), show_hidden=sees_hidden()))


@bp.get("/api/v1/nearest")
def nearest_points():
    """The k nearest convenience points (straight or walking)."""
    args = openapi.read_query("/api/v1/nearest")
    lon, lat = parse_lonlat(args["lon"], args["lat"])
    question = nearest.NearestQuery(
        lon=lon, lat=lat, kinds=args["kind"], amenities=args["amenity"], open_now=args["open_now"],
        vacancy=args["vacancy"], rest=args["rest"], k=args["k"], max_distance_m=args["max_distance"],
        mode=args["mode"])
    return _geojson(nearest.nearest_points(budget.connection("lookup"), question, now=_now(),
                                           metric_crs=_settings().metric_crs))


@bp.get("/api/v1/grids/at")
def grid_at():
    """The unit grid at a spot, with who is responsible for it."""
    args = openapi.read_query("/api/v1/grids/at")
    lon, lat = parse_lonlat(args["lon"], args["lat"])
    return _geojson(grids.grid_at(budget.connection("lookup"), lon=lon, lat=lat))


@bp.get("/api/v1/coverage/grid-gaps")
def grid_gaps():
    """Land in no unit grid, and land in two or more."""
    args = openapi.read_query("/api/v1/coverage/grid-gaps")
    sliver = _settings().sliver_area_m2 if args["min_area"] is None else args["min_area"]
    return _versioned(lambda: _geojson(_cached("grid_gaps", grids.grid_gaps, district=args["district"],
                                               community=args["community"], sliver_m2=sliver)), kind="analysis")


def _coverage_args(args: dict) -> dict:
    kinds = args["kind"]
    radius = query.default_radius_m(kinds) if args["radius"] is None else args["radius"]
    return {"radius_m": radius, "kinds": kinds or None, "mode": args["mode"], "include_planned": args["planned"]}


@bp.get("/api/v1/coverage/streets")
def uncovered_streets():
    """Street portions with no qualifying point within the radius, and a summary."""
    args = openapi.read_query("/api/v1/coverage/streets")
    return _versioned(lambda: _uncovered_streets(args), kind="analysis", private=args["planned"])


def _uncovered_streets(args: dict) -> Response:
    result = _cached("uncovered_streets", coverage.uncovered_streets, **_coverage_args(args), bbox=args["bbox"],
                     extent=_city_extent(),
                     district=args["district"], metric_crs=_settings().metric_crs)
    if args["f"] == downloads.INLINE:
        return _geojson(result)
    return _attachment(downloads.uncovered_streets_file(result, fmt=args["f"]))


@bp.get("/api/v1/coverage/grids")
def grid_coverage():
    """Per unit grid: street km, covered km and %, points by kind."""
    args = openapi.read_query("/api/v1/coverage/grids")
    return _versioned(lambda: _grid_coverage(args), kind="analysis", private=args["planned"])


def _grid_coverage(args: dict) -> Response:
    question = _coverage_args(args)
    result = _cached("grid_coverage", coverage.grid_coverage, **question, metric_crs=_settings().metric_crs)
    if args["f"] == downloads.INLINE:
        return jsonify({"grids": result})
    return _attachment(downloads.grid_coverage_file(budget.connection("analysis"), result, kinds=question["kinds"],
                                                    radius_m=question["radius_m"], mode=question["mode"],
                                                    fmt=args["f"]))


@bp.get("/api/v1/coverage/curve")
def coverage_curve():
    """Covered % against the radius (50 … 1000 m by default) for the kinds and mode, in one computation."""
    args = openapi.read_query("/api/v1/coverage/curve")
    return _versioned(lambda: jsonify(_cached(
        "coverage_curve", coverage.coverage_curve, kinds=args["kind"] or None, mode=args["mode"],
        radii=args["radius"], include_planned=args["planned"], metric_crs=_settings().metric_crs)),
        kind="analysis", private=args["planned"])


@bp.get("/api/v1/coverage/areas")
def coverage_by_area():
    """Coverage per subdistrict or per community, weakest first."""
    args = openapi.read_query("/api/v1/coverage/areas")
    return _versioned(lambda: jsonify({"level": args["level"], "areas": _cached(
        "coverage_by_area", coverage.coverage_by_area, level=args["level"], **_coverage_args(args),
        metric_crs=_settings().metric_crs)}), kind="analysis", private=args["planned"])


@bp.get("/api/v1/coverage/distances")
def distance_distribution():
    """Street km by distance to the nearest qualifying point (50 m bins to 1000 m, and beyond)."""
    args = openapi.read_query("/api/v1/coverage/distances")
    return _versioned(lambda: jsonify(_cached(
        "distance_distribution", coverage.distance_distribution, kinds=args["kind"] or None, mode=args["mode"],
        include_planned=args["planned"], metric_crs=_settings().metric_crs)), kind="analysis",
        private=args["planned"])


@bp.get("/api/v1/points/<int:point_id>/service-area")
def service_area(point_id: int):
    """The area reachable from a point within a radius."""
    args = openapi.read_query("/api/v1/points/{id}/service-area")
    radius = query.DEFAULT_RADIUS_M if args["radius"] is None else args["radius"]
    return _geojson(_analysis(point_service_area, point_id=point_id, radius_m=radius, mode=args["mode"],
                              show_hidden=sees_hidden(), metric_crs=_settings().metric_crs))


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
