"""The farmer finder (/farmer): the nearest rest points for a melon farmer on a phone, Chinese first.

folium writes the page around a Leaflet map (local Leaflet, the configured basemap); ``static/js/farmer.js`` does
the rest in the browser: the browser's geolocation (or a tap on the map), ``/api/v1/nearest?mode=walk`` for the
three nearest points, ``/api/v1/grids/at`` for the squad that looks after the spot, and — offline — our own streets
from ``/api/v1/layers/streets?bbox`` for the current view. No data is inlined: the HTML is the same size for any
city. The visible text starts in zh-CN, from ``geoservice.web.i18n``; the script switches it to English in place.
"""

from __future__ import annotations

import re
from html import escape

import folium
from branca.element import MacroElement
from jinja2 import Template

from geoservice.config import Settings
from geoservice.vocab import AMENITIES
from geoservice.web.i18n import catalogue
from geoservice.web.maps import LocalMap, add_basemap

FARMER_JS = ("farmer", "/static/js/farmer.js")
FARMER_CSS = ("farmer_css", "/static/css/farmer.css")
# Quick filters: (message key, query parameters). "Overnight" means a place to sleep that has room tonight.
FILTERS: tuple[tuple[str, str, dict[str, str | list[str]]], ...] = (
    ("overnight", "filter_overnight", {"vacancy": "true", "amenity": ["overnight"]}),
    ("drinking_water", "filter_water", {"amenity": ["drinking_water"]}),
    ("phone_charging", "filter_charging", {"amenity": ["phone_charging"]}),
    ("toilet", "filter_toilet", {"amenity": ["toilet"]}),
    ("open_now", "filter_open_now", {"open_now": "true"}),
)
# Filters pressed when the page opens: a farmer looks for a place that is open now.
DEFAULT_FILTERS = ("open_now",)
RESULTS = 3
# folium's viewport forbids pinch zoom (user-scalable=no); people who need large text must be able to zoom.
_VIEWPORT = re.compile(r'<meta name="viewport"[^>]*>')
VIEWPORT = '<meta name="viewport" content="width=device-width, initial-scale=1">'


class FarmerMap(LocalMap):
    """The local-Leaflet map with the farmer page's own script and style instead of the city map's."""

    default_js = [js for js in LocalMap.default_js if js[0] == "leaflet"] + [FARMER_JS]
    default_css = [css for css in LocalMap.default_css if css[0] == "leaflet_css"] + [FARMER_CSS]


class FarmerStart(MacroElement):
    """The results list after the map, and farmer.js started on the map once folium has created it."""

    _template = Template("""
        {% macro html(this, kwargs) %}{{ this.results_html }}{% endmacro %}
        {% macro script(this, kwargs) %}
            geoserviceFarmer.start({{ this._parent.get_name() }}, {{ this.config|tojson }});
        {% endmacro %}
    """)

    def __init__(self, config: dict, *, results_html: str) -> None:
        super().__init__()
        self._name = "FarmerStart"
        self.config = config
        self.results_html = results_html


def _button(key: str, text: str, *, cls: str, extra: str = "") -> str:
    return (f'<button type="button" class="{cls}" data-i18n="{key}" {extra}>{escape(text)}</button>')


def _header(zh: dict[str, str]) -> str:
    """Title, language switch, the big button and the fallback hint, in zh-CN (the script switches language)."""
    filters = "".join(
        _button(key, zh[key], cls="chip", extra=f'data-filter="{code}" '
                f'aria-pressed="{"true" if code in DEFAULT_FILTERS else "false"}"')
        for code, key, _ in FILTERS)
    return f"""
<header class="farmer-top">
  <h1 data-i18n="heading">{escape(zh["heading"])}</h1>
  <button type="button" id="lang-switch" class="lang" lang="en" data-i18n="language_switch"
          data-i18n-aria="language_switch_aria" aria-label="{escape(zh["language_switch_aria"])}">{
              escape(zh["language_switch"])}</button>
</header>
<main id="farmer" class="farmer">
  {_button("find_button", zh["find_button"], cls="find", extra='id="find"')}
  <p id="status" class="status" role="status" aria-live="polite" data-i18n="intro">{escape(zh["intro"])}</p>
  {_button("use_map_centre", zh["use_map_centre"], cls="secondary", extra='id="use-centre" hidden')}
  <div class="filters" role="group" aria-label="{escape(zh["filters_label"])}"
       data-i18n-aria="filters_label">{filters}</div>
</main>"""


def _results(zh: dict[str, str]) -> str:
    return f"""
<section class="farmer-results" aria-labelledby="results-heading">
  <h2 id="results-heading" data-i18n="results_heading">{escape(zh["results_heading"])}</h2>
  <ol id="results" class="results"></ol>
  <div id="spot-grid" class="spot-grid" hidden></div>
</section>"""


def farmer_page(settings: Settings) -> str:
    """The HTML of the farmer finder (/farmer)."""
    lon, lat = settings.city_center
    messages = catalogue("farmer")
    zh = messages["zh"]
    m = FarmerMap(location=[lat, lon], zoom_start=15, tiles=None, control_scale=True, max_zoom=19)
    add_basemap(m, settings)
    root = m.get_root()
    root.header.add_child(folium.Element(
        f'<title data-i18n="page_title">{escape(zh["page_title"])}</title>'
        '<link rel="icon" href="/static/img/favicon.svg" type="image/svg+xml">'))
    # Before the map in the document, so reading and tab order follow what the eye sees.
    root.html.add_child(folium.Element(_header(zh)), index=0)
    m.add_child(FarmerStart({
        "messages": messages,
        "filters": {code: params for code, _, params in FILTERS},
        "amenities": {t.code: {"zh": t.zh, "en": t.en} for t in AMENITIES},
        "results": RESULTS,
        "offline_basemap": settings.basemap == "none",
        "centre": [lat, lon],
    }, results_html=_results(zh)))
    html = root.render()
    html = _VIEWPORT.sub(VIEWPORT, html, count=1)
    return html.replace("<html>", '<html lang="zh-CN">', 1)
