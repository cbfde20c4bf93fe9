"""The HTML pages."""

from __future__ import annotations

from flask import Blueprint, current_app

from geoservice.web import maps

bp = Blueprint("web", __name__)


@bp.get("/")
def city_map():
    """The interactive city map."""
    return maps.city_map(current_app.config["GEOSERVICE_SETTINGS"])
