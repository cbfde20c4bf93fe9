"""The planner's coverage page (/planner).

The template ``planner.html`` holds the side panel: the controls (radius, kinds, mode), the summary, the export
links and the per-grid table, and the map beside it. ``static/js/planner.js`` asks the API for everything drawn
or listed — uncovered street portions, grid coverage, gaps and overlaps, and the grid outlines, streets and points
of the current view (by bbox, with a limit) — so the page is a few kilobytes whatever the size of the city. The
panel comes before the map in the document so that keyboard users reach the controls first.

The charts (ECharts, served from our ``/static/vendor/echarts``) show covered % against the radius (one call for the
whole curve), per subdistrict and per community, and the street length by distance to the nearest point. The siting
panel asks ``/api/v1/siting`` for the sites that add the most coverage and draws them numbered; a planner may accept
one as a ``planned`` point (the editing API, with the page's CSRF token), everyone else downloads the list. "What if"
(``planned=true``) counts planned points as open in every answer of the page.
"""

from __future__ import annotations

from geoservice import report
from geoservice.accounts import SEES_HIDDEN, User
from geoservice.config import Settings
from geoservice.downloads import DOWNLOAD_FORMATS
from geoservice.query import DEFAULT_RADIUS_M, MAX_RADIUS_M
from geoservice.siting import MAX_COUNT as SITING_MAX_COUNT
from geoservice.web.maps import render_page

SLIDER_MAX_M = 2000
"""The slider covers the useful range (a 2 km walk is already beyond a living circle); the number input takes up
to the API's maximum."""
TABLE_COLUMNS = ("code", "name", "street_km", "covered_km", "uncovered_km", "covered_pct", "points")
FORMAT_NAMES = {"csv": "CSV", "geojson": "GeoJSON", "gpkg": "GeoPackage", "html": "HTML", "pdf": "PDF"}
REPORT = "/planner/report"
"""The coverage report for the page's question (``geoservice.web.report``), linked beside the exports."""
SITING_FORMATS = ("csv", "geojson")
"""What a planner who may not accept a site downloads instead."""
SITING_DEFAULT_COUNT = 5
SLIDER_DEBOUNCE_MS = 150
"""A slider that moves asks again once it has rested this long; an answer still on its way is cancelled."""
GRID_LIMIT = 20_000
"""Grid outlines asked per view (the view's grids are added to those already drawn; a whole big city is never asked
at once, and a view with more grids than this is a whole province zoomed out)."""
GRID_ITEM = "/ogc/collections/grids/items/"
"""One grid's outline by its code, for a grid chosen in the table before its part of the map was seen."""
ACCEPT_ROLES = ("planner",)
"""Who may accept a suggested site as a planned point (the server checks the role on the write)."""


def planner_page(settings: Settings, user: User | None = None) -> str:
    """The HTML of the planner's coverage page (/planner); its data comes from the API after load.

    A planner (``user``) gets the button that accepts a suggested site; everyone else the downloads. What if (planned
    points counted) is offered to those who see planned points (the API refuses it to the others).
    """
    can_accept = user is not None and user.role in ACCEPT_ROLES
    sees_planned = user is not None and user.role in SEES_HIDDEN
    return render_page("planner.html", settings, page="planner", zoom=13, prefer_canvas=True,
                       config={"max_radius": MAX_RADIUS_M, "debounce_ms": SLIDER_DEBOUNCE_MS,
                               "can_accept": can_accept, "siting_formats": list(SITING_FORMATS),
                               "report": REPORT, "grid_limit": GRID_LIMIT, "grid_item": GRID_ITEM},
                       radius=int(DEFAULT_RADIUS_M), slider_max=SLIDER_MAX_M, max_radius=int(MAX_RADIUS_M),
                       formats=DOWNLOAD_FORMATS, format_names=FORMAT_NAMES, columns=TABLE_COLUMNS,
                       siting_formats=SITING_FORMATS, report_formats=report.FORMATS, siting_count=SITING_DEFAULT_COUNT,
                       siting_max=SITING_MAX_COUNT, can_accept=can_accept, sees_planned=sees_planned)
