"""The Leaflet maps, built with folium and fed by our own API.

folium writes the page (map, layer groups, layer control, scale); ``static/js/citymap.js`` fills the layer groups
from ``/api/v1/layers/…`` after load, so the page stays small however big the city is — the dataset is never
inlined. Every script and stylesheet is served from our ``/static`` (installed from the npm registry at set-up),
never from a CDN.
"""

from __future__ import annotations

import re
from html import escape

import folium
from branca.element import MacroElement
from jinja2 import Template

from geoservice.config import Settings
from geoservice.vocab import AMENITIES, POINT_KINDS
from geoservice.web.i18n import catalogue

LOCAL_JS = [("leaflet", "/static/vendor/leaflet/leaflet.js"), ("citymap", "/static/js/citymap.js")]
LOCAL_CSS = [("leaflet_css", "/static/vendor/leaflet/leaflet.css"), ("citymap_css", "/static/css/citymap.css")]
TIANDITU_URL = "https://t{s}.tianditu.gov.cn/vec_w/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=vec" \
               "&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}&tk=%s"


class LocalMap(folium.Map):
    """A folium map whose Leaflet comes from our own /static instead of folium's CDN defaults."""

    default_js = LOCAL_JS
    default_css = LOCAL_CSS


class RemoteLayer(MacroElement):
    """Fill a folium FeatureGroup from a GeoJSON URL of our API once the page has loaded."""

    _template = Template("""
        {% macro script(this, kwargs) %}
            geoservice.loadLayer({{ this._parent._parent.get_name() }}, {{ this._parent.get_name() }},
                                 {{ this.url|tojson }}, {{ this.style|tojson }});
        {% endmacro %}
    """)

    def __init__(self, url: str, style: str) -> None:
        super().__init__()
        self._name = "RemoteLayer"
        self.url = url
        self.style = style


def add_basemap(m: folium.Map, settings: Settings) -> None:
    """Add the configured basemap tiles; `none` adds nothing (our own layers are the basemap offline)."""
    if settings.basemap == "osm":
        folium.TileLayer("OpenStreetMap", name="OpenStreetMap", control=False).add_to(m)
    elif settings.basemap == "tianditu":
        folium.TileLayer(TIANDITU_URL % settings.tianditu_key, name="天地图", attr="天地图 Tianditu",
                         subdomains="01234567", control=False).add_to(m)
    # "none": offline mode — our own streets, grids and district outlines are the basemap.


# The city map adds the marker-cluster and locate-me plugins (from static/vendor) to the local Leaflet.
CITY_JS = [LOCAL_JS[0],
           ("markercluster", "/static/vendor/markercluster/leaflet.markercluster.js"),
           ("locatecontrol", "/static/vendor/locatecontrol/L.Control.Locate.umd.js"),
           LOCAL_JS[1]]
CITY_CSS = [LOCAL_CSS[0],
            ("markercluster_css", "/static/vendor/markercluster/MarkerCluster.css"),
            ("markercluster_default_css", "/static/vendor/markercluster/MarkerCluster.Default.css"),
            ("locatecontrol_css", "/static/vendor/locatecontrol/L.Control.Locate.min.css"),
            LOCAL_CSS[1]]
ICON_SPRITE = "/static/img/icons/sprite.svg"
# One colour per point kind: markers, clusters, legend and layer-control swatches all use these.
KIND_COLOURS = {
    "kiosk": "#b03a2e", "rest_station": "#1f618d", "vendor_point": "#1e8449", "melon_point": "#7d6608",
    "night_market": "#6c3483", "job_board": "#a04000", "parking": "#283747", "toilet": "#0e6655",
}
# Grid choropleth: (lowest covered %, fill colour), highest class first; sequential, readable with grey outlines.
COVERAGE_CLASSES = ((90, "#1a9850"), (70, "#91cf60"), (50, "#d9ef8b"), (25, "#fdae61"), (0, "#d73027"))
NO_STREETS_COLOUR = "#d5d8dc"
MIN_ZOOM, MAX_ZOOM = 3, 19
DATA_MIN_ZOOM = 12       # below this, streets and points are not loaded (a whole big city would be too much)
GRID_LABEL_MIN_ZOOM = 16  # grid code labels and bold outlines from this zoom on
POINT_LIMIT = 5000        # per view; the API says when there were more and the page asks to zoom in
STREET_LIMIT = 20000
# folium's viewport forbids pinch zoom (user-scalable=no); people who need large text must be able to zoom.
_VIEWPORT = re.compile(r'<meta name="viewport"[^>]*>')
VIEWPORT = '<meta name="viewport" content="width=device-width, initial-scale=1">'


class CityMap(LocalMap):
    """The local-Leaflet map with the marker-cluster and locate-control plugins the city map uses."""

    default_js = CITY_JS
    default_css = CITY_CSS


class CityMapStart(MacroElement):
    """Start the city map script once folium has created the map, its layer groups and the layer control."""

    _template = Template("""
        {% macro script(this, kwargs) %}
            geoservice.startCityMap({{ this._parent.get_name() }}, {
                {%- for key, group in this.groups.items() %}
                {{ key|tojson }}: {{ group.get_name() }},
                {%- endfor %}
            }, {{ this.config|tojson }});
        {% endmacro %}
    """)

    def __init__(self, groups: dict[str, folium.FeatureGroup], config: dict) -> None:
        super().__init__()
        self._name = "CityMapStart"
        self.groups = groups
        self.config = config


def _icon(symbol: str, cls: str = "icon") -> str:
    return f'<svg class="{cls}" aria-hidden="true" focusable="false"><use href="{ICON_SPRITE}#{symbol}"></use></svg>'


def _layer_title(key: str, zh: dict[str, str]) -> str:
    """A layer-control label: HTML the script re-labels when the language changes."""
    return f'<span data-i18n="{key}">{escape(zh[key])}</span>'


def _kind_title(code: str, label: str) -> str:
    swatch = f'<span class="kind-swatch" style="--kind-colour: {KIND_COLOURS[code]}">{_icon("kind-" + code)}</span>'
    return f'{swatch}<span data-kind-label="{code}">{escape(label)}</span>'


def city_map_config(settings: Settings) -> dict:
    """What the city map script needs: API addresses, labels in both languages, colours, zoom thresholds."""
    lon, lat = settings.city_center
    return {
        "center": [lat, lon], "zoom": 13, "min_zoom": MIN_ZOOM, "max_zoom": MAX_ZOOM, "lang": "zh",
        "messages": catalogue("city"),
        "kinds": [{"code": t.code, "zh": t.zh, "en": t.en, "colour": KIND_COLOURS[t.code]} for t in POINT_KINDS],
        "amenities": {t.code: {"zh": t.zh, "en": t.en} for t in AMENITIES},
        "sprite": ICON_SPRITE,
        "api": {"districts": "/api/v1/layers/districts", "grids": "/api/v1/layers/grids",
                "streets": "/api/v1/layers/streets", "points": "/api/v1/layers/points",
                "coverage": "/api/v1/coverage/grids", "search": "/api/v1/points/search"},
        "coverage_classes": [list(c) for c in COVERAGE_CLASSES], "no_streets_colour": NO_STREETS_COLOUR,
        "data_min_zoom": DATA_MIN_ZOOM, "grid_label_min_zoom": GRID_LABEL_MIN_ZOOM,
        "point_limit": POINT_LIMIT, "street_limit": STREET_LIMIT,
    }


def city_map(settings: Settings) -> str:
    """The HTML of the city map page (/).

    The page holds no data: the script loads districts and grids (with their coverage) once, and streets and
    points for the current view on every move, so its size does not depend on the city.
    """
    lon, lat = settings.city_center
    zh = catalogue("city")["zh"]
    m = CityMap(location=[lat, lon], zoom_start=13, tiles=None, control_scale=True, prefer_canvas=True,
                max_zoom=MAX_ZOOM)
    add_basemap(m, settings)
    groups: dict[str, folium.FeatureGroup] = {}
    for key in ("districts", "grids", "streets"):
        groups[key] = folium.FeatureGroup(name=_layer_title("layer_" + key, zh)).add_to(m)
    for kind in POINT_KINDS:
        groups[kind.code] = folium.FeatureGroup(name=_kind_title(kind.code, kind.zh)).add_to(m)
    folium.LayerControl(collapsed=False).add_to(m)
    m.add_child(CityMapStart(groups, city_map_config(settings)))
    root = m.get_root()
    root.header.add_child(folium.Element(
        f'<title>{escape(zh["page_title"])}</title>'
        '<link rel="icon" href="/static/img/favicon.svg" type="image/svg+xml">'))
    root.html.add_child(folium.Element(
        f'<h1 class="visually-hidden" data-i18n="heading">{escape(zh["heading"])}</h1>'
        f'<div id="map-status" class="map-status" role="status" aria-live="polite">{escape(zh["loading"])}</div>'))
    html = root.render()
    return _VIEWPORT.sub(VIEWPORT, html, count=1).replace("<html>", '<html lang="zh-CN">', 1)
