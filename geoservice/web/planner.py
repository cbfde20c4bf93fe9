"""The planner's coverage page (/planner).

The template ``planner.html`` holds the side panel: the controls (radius, kinds, mode), the summary, the export
links and the per-grid table, and the map beside it. ``static/js/planner.js`` asks the API for everything drawn
or listed — uncovered street portions, grid coverage, gaps and overlaps, and the streets and points of the current
view (by bbox, with a limit) — so the page is a few kilobytes whatever the size of the city. The panel comes before
the map in the document so that keyboard users reach the controls first.
"""

from __future__ import annotations

from geoservice.config import Settings
from geoservice.downloads import DOWNLOAD_FORMATS
from geoservice.query import DEFAULT_RADIUS_M, MAX_RADIUS_M
from geoservice.web.maps import render_page

SLIDER_MAX_M = 2000
"""The slider covers the useful range (a 2 km walk is already beyond a living circle); the number input takes up
to the API's maximum."""
TABLE_COLUMNS = ("code", "name", "street_km", "covered_km", "uncovered_km", "covered_pct", "points")
FORMAT_NAMES = {"csv": "CSV", "geojson": "GeoJSON", "gpkg": "GeoPackage"}


def planner_page(settings: Settings) -> str:
    """The HTML of the planner's coverage page (/planner); its data comes from the API after load."""
    return render_page("planner.html", settings, page="planner", zoom=13, prefer_canvas=True,
                       config={"max_radius": MAX_RADIUS_M},
                       radius=int(DEFAULT_RADIUS_M), slider_max=SLIDER_MAX_M, max_radius=int(MAX_RADIUS_M),
                       formats=DOWNLOAD_FORMATS, format_names=FORMAT_NAMES, columns=TABLE_COLUMNS)
