"""/api/v1/siting: where new points would cover the most street (``geoservice.siting``).

``GET`` asks with the default candidate sites (intersections and midpoints off the arterials, inside the area);
``POST`` sends the planner's own candidates as the body — CSV of ``lon,lat`` or GeoJSON points — with the same query
parameters. Both are analyses: they take an analysis slot (503 Busy when none is free); a GET's answer is kept while
the data is unchanged. ``f=csv`` or ``f=geojson`` gives the chosen sites as a file.
"""

from __future__ import annotations

from flask import Blueprint, current_app, request

from geoservice import downloads, siting
from geoservice.api import _analysis, _attachment, _cached, _city_extent, _geojson, openapi

bp = Blueprint("siting", __name__)


def _question(args: dict) -> dict:
    settings = current_app.config["GEOSERVICE_SETTINGS"]
    count = siting.DEFAULT_COUNT if args["count"] is None and args["target"] is None else args["count"]
    return {"kinds": args["kind"] or None, "radius_m": args["radius"], "mode": args["mode"], "count": count,
            "target_pct": args["target"], "district": args["district"], "bbox": args["bbox"],
            "include_planned": args["planned"], "metric_crs": settings.metric_crs,
            "time_limit_s": settings.siting_time_limit_s, "max_candidates": settings.siting_max_candidates,
            "extent": _city_extent()}


def _answer(result: dict, fmt: str):
    if fmt == downloads.INLINE:
        return _geojson(result)
    return _attachment(downloads.sites_file(result, fmt=fmt))


@bp.get(openapi.SITING_PATH)
def suggest_sites():
    """New sites covering the most street (count) or the fewest reaching a target, from the default candidates."""
    args = openapi.read_query(openapi.SITING_PATH)
    return _answer(_cached("siting", siting.suggest_sites, **_question(args)), args["f"])


@bp.post(openapi.SITING_PATH)
def suggest_sites_among():
    """The same question among the planner's own candidate sites, sent as the body (CSV or GeoJSON)."""
    args = openapi.read_query(openapi.SITING_PATH)
    candidates = siting.read_candidates(request.get_data(cache=False))
    return _answer(_analysis(siting.suggest_sites, **_question(args), candidates=candidates), args["f"])
