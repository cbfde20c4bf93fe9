"""The HTML pages."""

from __future__ import annotations

from flask import Blueprint, current_app

from geoservice.web import farmer, maps

bp = Blueprint("web", __name__)


@bp.get("/")
def city_map():
    """The interactive city map."""
    return maps.city_map(current_app.config["GEOSERVICE_SETTINGS"])


@bp.get("/farmer")
def farmer_finder():
    """The farmer finder: nearest rest points on a phone, Chinese first."""
    return farmer.farmer_page(current_app.config["GEOSERVICE_SETTINGS"])
