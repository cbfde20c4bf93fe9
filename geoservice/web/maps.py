"""How a map page is built, and the city map (/).

Every page is a Flask template in ``geoservice/web/templates/`` extending ``page_base.html``: the language, the
viewport, Leaflet, the shared ``static/js/common.js`` and ``static/css/common.css`` — all from our own ``/static``
(third-party files installed from the npm registry at set-up, never a CDN) — and the page's configuration as JSON.
``common.js`` builds the Leaflet map from that configuration (start view, zoom limits, basemap, metric scale bar);
each page's own script then asks our API for everything it draws, so the HTML is the same few kilobytes whatever
the size of the city: no data is inlined.
"""

from __future__ import annotations

from typing import Any

from flask import render_template, url_for

from geoservice import tiles
from geoservice.accounts import OFFICER_POINT_FIELDS, User
from geoservice.catalogue import GRID, POINT, Table
from geoservice.config import Settings
from geoservice.vocab import AMENITIES, POINT_KINDS, POINT_STATUSES
from geoservice.web.i18n import catalogue

OSM_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
OSM_ATTRIBUTION = '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'
TIANDITU_TILES = ("https://t{s}.tianditu.gov.cn/vec_w/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=vec"
                  "&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}&tk=")
# The API addresses the pages' scripts ask (the planner's export links too).
API = {
    "districts": "/api/v1/layers/districts", "grids": "/api/v1/layers/grids",
    "streets": "/api/v1/layers/streets", "points": "/api/v1/layers/points", "search": "/api/v1/points/search",
    "nearest": "/api/v1/nearest", "grid_at": "/api/v1/grids/at",
    "coverage_streets": "/api/v1/coverage/streets", "coverage_grids": "/api/v1/coverage/grids",
    "grid_gaps": "/api/v1/coverage/grid-gaps",
    "coverage_curve": "/api/v1/coverage/curve", "coverage_areas": "/api/v1/coverage/areas",
    "coverage_distances": "/api/v1/coverage/distances", "siting": "/api/v1/siting",
    # Live state and writes: a point or grid is its collection's address + "/" + id (or code).
    "live": "/api/v1/points/live", "point": "/api/v1/points", "grid": "/api/v1/grids", "me": "/api/v1/me",
}
TILES = "/tiles"
"""Where the vector tiles are: ``/tiles/{layer}/{z}/{x}/{y}.mvt`` (geoservice/api/tiles.py)."""
VECTOR_MAX_ZOOM = 16
"""The city map asks for street, grid and district tiles up to this zoom and enlarges them beyond (their detail is
enough: 4096 units over a 600 m tile); points are asked at every zoom."""
LIVE_POLL_SECONDS = 5
"""How often the farmer page, the city map and the staff page ask for changed occupancy, status and notices."""
MIN_ZOOM, MAX_ZOOM = 3, 19
DATA_MIN_ZOOM = 12       # below this, streets and points are not loaded (a whole big city would be too much)
POINT_LIMIT = 5000        # per view; the API says when there were more and the page asks to zoom in
STREET_LIMIT = 20000
# City map only. Grid choropleth: (lowest covered %, fill colour), highest class first; sequential, readable with
# grey outlines.
COVERAGE_CLASSES = ((90, "#1a9850"), (70, "#91cf60"), (50, "#d9ef8b"), (25, "#fdae61"), (0, "#d73027"))
NO_STREETS_COLOUR = "#d5d8dc"
GRID_LABEL_MIN_ZOOM = 16  # grid code labels and bold outlines from this zoom on


def basemap(settings: Settings) -> dict[str, Any] | None:
    """The configured basemap as a Leaflet tile layer (URL template and options), or None for ``none``.

    Offline (``none``) our own streets, grids and district outlines are the basemap.
    """
    if settings.basemap == "osm":
        return {"url": OSM_TILES, "options": {"attribution": OSM_ATTRIBUTION, "maxZoom": 19}}
    if settings.basemap == "tianditu":
        return {"url": TIANDITU_TILES + settings.tianditu_key,
                "options": {"attribution": "天地图 Tianditu", "subdomains": "01234567", "maxZoom": 18}}
    return None


def render_page(template: str, settings: Settings, *, page: str, zoom: int, prefer_canvas: bool = False,
                config: dict[str, Any] | None = None, **context: Any) -> str:
    """The HTML of one map page: ``template`` (extending ``page_base.html``) with the configuration every page gets.

    Args:
        template: the page's template file.
        settings: the service settings (city centre, basemap).
        page: the page's name in ``geoservice.web.i18n`` (its messages).
        zoom: the map's start zoom, on the city centre.
        prefer_canvas: draw vector layers on a canvas (many features) rather than as SVG.
        config: what the page's own script needs on top of the shared configuration.
        **context: further template variables.
    """
    messages = catalogue(page)
    lon, lat = settings.city_center
    page_config = {
        "messages": messages,
        "kinds": [{"code": k.code, "zh": k.zh, "en": k.en} for k in POINT_KINDS],
        "map": {"center": [lat, lon], "zoom": zoom, "min_zoom": MIN_ZOOM, "max_zoom": MAX_ZOOM,
                "prefer_canvas": prefer_canvas},
        "basemap": basemap(settings),
        "api": API,
        "limits": {"data_min_zoom": DATA_MIN_ZOOM, "point_limit": POINT_LIMIT, "street_limit": STREET_LIMIT},
        "live": {"poll_seconds": LIVE_POLL_SECONDS, "stale_after_minutes": settings.occupancy_stale_minutes},
        **(config or {}),
    }
    return render_template(template, t=messages["zh"], config=page_config, **context)


def city_map(settings: Settings, user: User | None = None) -> str:
    """The HTML of the city map page (/); for an officer or a planner, with the editing tools.

    The page holds no data: the script asks for the vector tiles of the view (streets, grids and districts drawn by
    MapLibre GL; points decoded into Leaflet markers and clusters), joins the grids' coverage by code when it
    arrives, and close up asks for the records of the points and grids in view, so its size does not depend on
    the city.
    """
    editor = editor_config(user)
    return render_page("city_map.html", settings, page="city", zoom=13, prefer_canvas=True, config={
        "coverage_classes": [list(c) for c in COVERAGE_CLASSES], "no_streets_colour": NO_STREETS_COLOUR,
        "grid_label_min_zoom": GRID_LABEL_MIN_ZOOM, "editor": editor,
        "tiles": {"url": TILES, "maxzoom": VECTOR_MAX_ZOOM, "grids_minzoom": tiles.GRID_MIN_ZOOM,
                  "cluster_max_zoom": tiles.CLUSTER_MAX_ZOOM,
                  # MapLibre's worker as our own file (the CSP build): the pages' policy allows no blob: workers.
                  "worker": url_for("static", filename="vendor/maplibre/maplibre-gl-csp-worker.js")},
    }, editor=editor is not None)


EDITOR_ROLES = ("officer", "planner")
"""The roles that edit on the city map (``static/js/editing.js`` is loaded for them only). Kiosk staff have /staff;
the server checks every write whatever a page offers."""


def _form_fields(table: Table) -> list[str]:
    """The fields a person types in a form for ``table``.

    Every checked property but the key the database numbers and the parent code (derived from a grid's own code).
    """
    return [p.name for p in table.properties if p.check and not p.identity and p.check != "parent"]


def editor_config(user: User | None) -> dict[str, Any] | None:
    """What editing.js needs for ``user``, or None for a user who does not edit on the map.

    Which point fields the form shows, whether points may be moved, added and deleted, and whether grids may be
    edited (a planner's work).
    """
    if user is None or user.role not in EDITOR_ROLES:
        return None
    planner = user.role == "planner"
    return {
        "role": user.role, "squad": user.squad_name,
        "point_fields": _form_fields(POINT) if planner else list(OFFICER_POINT_FIELDS),
        "grid_fields": _form_fields(GRID) if planner else [],
        "planner": planner,
        "amenities": [{"code": a.code, "zh": a.zh, "en": a.en} for a in AMENITIES],
        "statuses": list(POINT_STATUSES),
    }
