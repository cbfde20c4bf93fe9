"""The planner's coverage page (/planner).

folium writes the map (our local Leaflet, the configured basemap, a scale bar); the side panel holds the controls
(radius, kinds, mode), the summary, the export links and the per-grid table. ``static/js/planner.js`` asks the API
for everything drawn or listed — uncovered street portions, grid coverage, gaps and overlaps, and the streets and
points of the current view (by bbox, with a limit) — so the page is a few kilobytes whatever the size of the
city. The panel comes before the map in the document so that keyboard users reach the controls first.
"""

from __future__ import annotations

import folium
from branca.element import MacroElement
from jinja2 import Environment, Template

from geoservice.config import Settings
from geoservice.coverage import MAX_RADIUS_M
from geoservice.downloads import DOWNLOAD_FORMATS
from geoservice.vocab import DEFAULT_RADIUS_M, POINT_KINDS
from geoservice.web import maps
from geoservice.web.i18n import catalogue

PLANNER_JS = ("planner", "/static/js/planner.js")
PLANNER_CSS = ("planner_css", "/static/css/planner.css")
SLIDER_MAX_M = 2000
"""The slider covers the useful range (a 2 km walk is already beyond a living circle); the number input takes up
to the API's maximum."""


def _leaflet_only(assets: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # The city map's own script and styles do not belong on this page.
    return [(name, url) for name, url in assets if name.startswith("leaflet")]


class PlannerMap(maps.LocalMap):
    """The local-Leaflet map with the planner's script and styles instead of the city map's."""

    default_js = [*_leaflet_only(maps.LOCAL_JS), PLANNER_JS]
    default_css = [*_leaflet_only(maps.LOCAL_CSS), PLANNER_CSS]


class PlannerStart(MacroElement):
    """Hand the folium map and the page's configuration to planner.js once Leaflet has built the map."""

    _template = Template("""
        {% macro script(this, kwargs) %}
            geoservicePlanner.start({{ this._parent.get_name() }}, {{ this.config|tojson }});
        {% endmacro %}
    """)

    def __init__(self, config: dict) -> None:
        super().__init__()
        self._name = "PlannerStart"
        self.config = config


_PANEL = Environment(autoescape=True).from_string("""
<aside id="planner-panel" class="planner-panel" aria-labelledby="planner-heading">
  <header class="planner-header">
    <h1 id="planner-heading" data-i18n="heading">{{ t.heading }}</h1>
    <button type="button" id="lang-switch" class="lang-switch" lang="en" data-i18n="language_switch"
            data-i18n-aria="language_switch_aria"
            aria-label="{{ t.language_switch_aria }}">{{ t.language_switch }}</button>
  </header>
  <p class="intro" data-i18n="intro">{{ t.intro }}</p>
  <form id="planner-form" novalidate>
    <fieldset>
      <legend data-i18n="radius_legend">{{ t.radius_legend }}</legend>
      <div class="radius-row">
        <label for="radius-range" class="visually-hidden" data-i18n="radius_slider">{{ t.radius_slider }}</label>
        <input type="range" id="radius-range" min="50" max="{{ slider_max }}" step="50" value="{{ radius }}">
        <label for="radius-number" class="visually-hidden" data-i18n="radius_number">{{ t.radius_number }}</label>
        <input type="number" id="radius-number" min="1" max="{{ max_radius }}" step="1" value="{{ radius }}"
               inputmode="numeric" aria-describedby="radius-error">
      </div>
      <p id="radius-error" class="field-error" role="alert" hidden data-i18n="radius_invalid">{{ t.radius_invalid }}</p>
    </fieldset>
    <fieldset>
      <legend data-i18n="kinds_legend">{{ t.kinds_legend }}</legend>
      <ul class="kinds">
      {% for kind in kinds %}
        <li><label><input type="checkbox" name="kind" value="{{ kind.code }}" checked>
          <span data-kind="{{ kind.code }}">{{ kind.zh }}</span></label></li>
      {% endfor %}
      </ul>
      <div class="kind-buttons">
        <button type="button" id="kinds-all" data-i18n="kinds_all">{{ t.kinds_all }}</button>
        <button type="button" id="kinds-none" data-i18n="kinds_none">{{ t.kinds_none }}</button>
      </div>
      <p id="kinds-error" class="field-error" role="alert" hidden data-i18n="kinds_empty">{{ t.kinds_empty }}</p>
    </fieldset>
    <fieldset>
      <legend data-i18n="mode_legend">{{ t.mode_legend }}</legend>
      <label><input type="radio" name="mode" value="straight" checked>
        <span data-i18n="mode_straight">{{ t.mode_straight }}</span></label>
      <label><input type="radio" name="mode" value="walk"> <span data-i18n="mode_walk">{{ t.mode_walk }}</span></label>
    </fieldset>
  </form>
  <p id="planner-status" class="planner-status" role="status" aria-live="polite">{{ t.loading }}</p>
  <section aria-labelledby="summary-heading">
    <h2 id="summary-heading" data-i18n="summary_heading">{{ t.summary_heading }}</h2>
    <dl class="summary">
    {% for key in ("total_km", "covered_km", "uncovered_km") %}
      <div><dt data-i18n="{{ key }}">{{ t[key] }}</dt>
        <dd><output id="sum-{{ key }}">…</output> <span data-i18n="km">{{ t.km }}</span></dd></div>
    {% endfor %}
      <div><dt data-i18n="covered_pct">{{ t.covered_pct }}</dt><dd><output id="sum-covered_pct">…</output> %</dd></div>
    </dl>
    <h3 data-i18n="top_streets">{{ t.top_streets }}</h3>
    <ol id="top-streets" class="top-streets"></ol>
  </section>
  <section aria-labelledby="gaps-heading">
    <h2 id="gaps-heading" data-i18n="gaps_heading">{{ t.gaps_heading }}</h2>
    <dl class="summary">
      <div><dt data-i18n="gaps_count">{{ t.gaps_count }}</dt><dd><output id="sum-gaps">…</output></dd></div>
      <div><dt data-i18n="overlaps_count">{{ t.overlaps_count }}</dt><dd><output id="sum-overlaps">…</output></dd></div>
      <div><dt data-i18n="slivers">{{ t.slivers }}</dt><dd><output id="sum-slivers">…</output></dd></div>
    </dl>
  </section>
  <section aria-labelledby="export-heading">
    <h2 id="export-heading" data-i18n="export_heading">{{ t.export_heading }}</h2>
    {% for what in ("streets", "grids") %}
    <p class="export-row"><span data-i18n="export_{{ what }}">{{ t["export_" + what] }}</span>
      {% for fmt in formats %}
      <a class="export-link" id="export-{{ what }}-{{ fmt }}" data-what="{{ what }}" data-format="{{ fmt }}"
         href="/api/v1/coverage/{{ what }}?f={{ fmt }}" download>{{ format_names[fmt] }}</a>
      {% endfor %}
    </p>
    {% endfor %}
  </section>
  <section aria-labelledby="table-heading">
    <h2 id="table-heading" data-i18n="table_heading">{{ t.table_heading }}</h2>
    <p class="hint" data-i18n="table_hint">{{ t.table_hint }}</p>
    <div class="table-scroll" role="region" tabindex="0" data-i18n-aria="table_region"
         aria-label="{{ t.table_region }}">
      <table id="grid-table" class="grid-table">
        <thead><tr>
        {% for col in columns %}
          <th scope="col" aria-sort="none" data-key="{{ col }}"><button type="button" class="sort"
              data-key="{{ col }}"><span data-i18n="col_{{ col }}">{{ t["col_" + col] }}</span></button></th>
        {% endfor %}
        </tr></thead>
        <tbody></tbody>
      </table>
    </div>
  </section>
</aside>
""")

TABLE_COLUMNS = ("code", "name", "street_km", "covered_km", "uncovered_km", "covered_pct", "points")
FORMAT_NAMES = {"csv": "CSV", "geojson": "GeoJSON", "gpkg": "GeoPackage"}


def planner_page(settings: Settings) -> str:
    """The HTML of the planner's coverage page (/planner); its data comes from the API after load."""
    lon, lat = settings.city_center
    messages = catalogue("planner")
    m = PlannerMap(location=[lat, lon], zoom_start=13, tiles=None, control_scale=True, prefer_canvas=True,
                   max_zoom=19)
    maps.add_basemap(m, settings)
    m.get_root().header.add_child(folium.Element(
        f'<title>{messages["zh"]["page_title"]}</title>'
        '<link rel="icon" href="/static/img/favicon.svg" type="image/svg+xml">'))
    panel = _PANEL.render(t=messages["zh"], kinds=POINT_KINDS, radius=int(DEFAULT_RADIUS_M),
                          slider_max=SLIDER_MAX_M, max_radius=int(MAX_RADIUS_M), formats=DOWNLOAD_FORMATS,
                          format_names=FORMAT_NAMES, columns=TABLE_COLUMNS)
    m.get_root().html.add_child(folium.Element(panel), index=0)
    m.add_child(PlannerStart({
        "messages": messages,
        "kinds": [{"code": k.code, "zh": k.zh, "en": k.en} for k in POINT_KINDS],
        "defaultRadius": DEFAULT_RADIUS_M,
        "maxRadius": MAX_RADIUS_M,
        "dataMinZoom": maps.DATA_MIN_ZOOM,
        "pointLimit": maps.POINT_LIMIT,
        "streetLimit": maps.STREET_LIMIT,
    }))
    return m.get_root().render()
