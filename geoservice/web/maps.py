"""The Leaflet maps, built with folium and fed by our own API.

folium writes the page (map, layer groups, layer control, scale); ``static/js/citymap.js`` fills the layer groups
from ``/api/v1/layers/…`` after load, so the page stays small however big the city is — the dataset is never
inlined. Every script and stylesheet is served from our ``/static`` (installed from the npm registry at set-up),
never from a CDN.
"""

from __future__ import annotations

import folium
from branca.element import MacroElement
from jinja2 import Template

from geoservice.config import Settings

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


def city_map(settings: Settings) -> str:
    """The HTML of the city map page (/)."""
    lon, lat = settings.city_center
    m = LocalMap(location=[lat, lon], zoom_start=13, tiles=None, control_scale=True, prefer_canvas=True,
                 max_zoom=19)
    add_basemap(m, settings)
    layers = (
        ("districts", "行政区 Districts", "district", True),
        ("grids", "单元网格 Unit grids", "grid", True),
        ("streets", "街道 Streets", "street", True),
        ("points", "便民点 Convenience points", "point", True),
    )
    for layer, title, style, shown in layers:
        group = folium.FeatureGroup(name=title, show=shown).add_to(m)
        group.add_child(RemoteLayer(f"/api/v1/layers/{layer}", style))
    folium.LayerControl(collapsed=False).add_to(m)
    m.get_root().header.add_child(folium.Element(
        '<title>城市便民点地图 · geoservice</title>'
        '<link rel="icon" href="/static/img/favicon.svg" type="image/svg+xml">'))
    m.get_root().html.add_child(folium.Element(
        '<div id="map-status" class="map-status" role="status" aria-live="polite">加载中 Loading…</div>'))
    return m.get_root().render()
