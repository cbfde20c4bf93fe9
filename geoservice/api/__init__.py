"""The JSON endpoints: /healthz and the domain API under /api/v1."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from geoservice import db, features, health
from geoservice.params import parse_bbox

bp = Blueprint("api", __name__)


@bp.get("/healthz")
def healthz():
    """200 with versions and row counts when the database answers; 503 when it does not."""
    settings = current_app.config["GEOSERVICE_SETTINGS"]
    try:
        report = health.probe(db.get_engine(), timeout_s=settings.health_timeout)
    except health.Unreachable as exc:
        return jsonify({"status": "unavailable", "database": {"reachable": False, "error": str(exc)}}), 503
    return jsonify({"status": "ok", "database": report})


@bp.get("/api/v1/layers/<layer>")
def layer(layer: str):
    """One layer of the city map as a GeoJSON FeatureCollection, optionally cut to a bbox."""
    bbox = parse_bbox(request.args.get("bbox"))
    return jsonify(features.layer_collection(db.get_connection(), layer, bbox=bbox))
