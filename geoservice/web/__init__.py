"""The HTML pages."""

from __future__ import annotations

from flask import Blueprint, current_app

from geoservice.web import farmer, maps, planner

bp = Blueprint("web", __name__)


@bp.get("/")
def city_map():
    """The interactive city map."""
    return maps.city_map(current_app.config["GEOSERVICE_SETTINGS"])


@bp.get("/farmer")
def farmer_finder():
    """The farmer finder: nearest rest points on a phone, Chinese first."""
    return farmer.farmer_page(current_app.config["GEOSERVICE_SETTINGS"])


@bp.get("/planner")
def planner_page():
    """The planner's coverage page: uncovered streets, grid coverage, gaps and overlaps, exports."""
    return planner.planner_page(current_app.config["GEOSERVICE_SETTINGS"])
