"""The HTML pages."""

from __future__ import annotations

from urllib.parse import quote

from flask import Blueprint, current_app, redirect

from geoservice.web import auth, farmer, maps, planner, staff

bp = Blueprint("web", __name__)


@bp.get("/")
def city_map():
    """The interactive city map; for an officer or a planner, with the editing tools."""
    return maps.city_map(current_app.config["GEOSERVICE_SETTINGS"], auth.current_user())


@bp.get("/farmer")
def farmer_finder():
    """The farmer finder: nearest rest points on a phone, Chinese first."""
    return farmer.farmer_page(current_app.config["GEOSERVICE_SETTINGS"])


@bp.get("/planner")
def planner_page():
    """The planner's coverage page: uncovered streets, grid coverage, gaps and overlaps, exports."""
    return planner.planner_page(current_app.config["GEOSERVICE_SETTINGS"], auth.current_user())


@bp.get("/staff")
def staff_page():
    """The staff page: my kiosks' free places, status and notice, on a phone. Logged-in users only."""
    user = auth.current_user()
    if user is None:
        return redirect("/login?next=" + quote("/staff", safe="/"))
    return staff.staff_page(current_app.config["GEOSERVICE_SETTINGS"], user)
