"""The city map (/) in a real headless Chromium, against the app served as ``geoservice serve`` serves it.

Expected values come from the database, the generator's own rows (shapely) or by hand — never from the page's
own bookkeeping: what is drawn is counted from Leaflet's map (the layers actually on it) and from the DOM.
"""

from __future__ import annotations

import json
import math
import re
import urllib.request
from datetime import datetime
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from shapely.geometry import Point

from geoservice.app import create_app
from geoservice.citygen import generate_city, scaled_spec
from geoservice.demo import load_city
from geoservice.vocab import AMENITIES, POINT_KINDS
from tests.conftest import SCREENSHOTS

pytestmark = pytest.mark.browser

SANBA = "三八路便民服务点"
KIND_CODES = [t.code for t in POINT_KINDS]
LAYER_KEYS = ["districts", "grids", "streets", *KIND_CODES]

VECTOR_KEYS = {"districts": "districts-line", "grids": "grids-fill", "streets": "streets-line"}

# What is drawn, counted from the map itself: Leaflet's markers (a cluster stands for its count, per kind from its
# n_<kind>) and the features MapLibre rendered in each vector layer (distinct keys; hidden layers render none).
DRAWN_JS = """() => {
  const city = window.geoservice.city;
  const out = {points: 0, clusters: 0, kinds: {}, singles: [], vector: {}};
  city.markers.eachLayer(group => group.eachLayer(m => {
    if (m.cluster) {
      out.clusters += 1; out.points += m.cluster.count;
      Object.entries(m.cluster.kinds).forEach(([k, n]) => { out.kinds[k] = (out.kinds[k] || 0) + n; });
    } else {
      const p = m.feature.properties; out.points += 1; out.singles.push(p.id);
      out.kinds[p.kind] = (out.kinds[p.kind] || 0) + 1;
    }
  }));
  const keys = {"districts-line": "code", "grids-fill": "code", "streets-line": "id"};
  Object.entries(keys).forEach(([layer, key]) => {
    out.vector[layer] = [...new Set(city.gl.queryRenderedFeatures({layers: [layer]}).map(f => f.properties[key]))];
  });
  return out;
}"""
CLUSTERS_JS = """() => { const out = [];
  window.geoservice.city.markers.eachLayer(group => group.eachLayer(m => { if (m.cluster) out.push({
    count: m.cluster.count, kinds: m.cluster.kinds, lat: m.getLatLng().lat, lon: m.getLatLng().lng,
    tile: [m.tileState.address.z, m.tileState.address.x, m.tileState.address.y]}); }));
  return out; }"""
TILE_PATH = re.compile(r"^/tiles/(points|streets|grids|districts)/(\d+)/(\d+)/(\d+)\.mvt$")


def tile_requests(urls: list[str], layer: str) -> list[tuple[int, int, int, str]]:
    """(z, x, y, query) of each request for ``layer``'s tiles, in order."""
    out = []
    for url in urls:
        parts = urlparse(url)
        m = TILE_PATH.match(parts.path)
        if m and m.group(1) == layer:
            out.append((int(m.group(2)), int(m.group(3)), int(m.group(4)), parts.query))
    return out


def tile_box(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """The lon/lat box of Web Mercator tile z/x/y, by hand: (west, south, east, north)."""
    n = 2 ** z

    def lat(row: float) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / n))))

    return x / n * 360 - 180, lat(y + 1), (x + 1) / n * 360 - 180, lat(y)


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The tile at zoom z a point falls in (its west and north edges included), by hand."""
    n = 2 ** z
    row = (1 - math.log(math.tan(math.radians(lat)) + 1 / math.cos(math.radians(lat))) / math.pi) / 2 * n
    return int(math.floor((lon + 180) / 360 * n)), int(math.floor(row))


def points_in_tiles(conn, tiles: set[tuple[int, int, int]], kinds: list[str] | None = None) -> dict[str, int]:
    """Points per kind whose tile is one of ``tiles`` (plain SQL for the rows, the tile by hand)."""
    rows = conn.execute(sa.text("SELECT kind, ST_X(geom), ST_Y(geom) FROM point WHERE status <> 'planned'")).all()
    counts: dict[str, int] = {}
    for kind, lon, lat in rows:
        if kinds is not None and kind not in kinds:
            continue
        if any((z, *tile_of(lon, lat, z)) in tiles for z in {t[0] for t in tiles}):
            counts[kind] = counts.get(kind, 0) + 1
    return counts


KEYBOARD_TARGET_JS = """(() => {
  const e = document.activeElement;
  const names = {lang: '.lang-switch', search: '#point-search', layers: '.leaflet-control-layers input',
                 zoom: '.leaflet-control-zoom-in', locate: '.leaflet-control-locate a', legend: '.city-legend summary'};
  return Object.keys(names).find(k => e.matches(names[k])) || 'other';
})()"""


UNNAMED_CONTROLS_JS = """[...document.querySelectorAll(
  '.leaflet-control a, .leaflet-control button, .leaflet-control input')]
  .filter(e => !(e.getAttribute('aria-label') || e.title || e.textContent.trim() || (e.labels && e.labels.length)))
  .map(e => e.outerHTML)"""


def open_map(page, served: str, fragment: str = "") -> str:
    """Load the page, wait until its first data arrived; returns the HTML as served."""
    response = page.goto(served + "/" + fragment)
    page.wait_for_selector("body[data-layers-loaded='true']", state="attached", timeout=60_000)
    return response.text()


def wait_for_view(page, serial_before: int) -> None:
    page.wait_for_function(f"Number(document.body.dataset.viewSerial) > {serial_before} && "
                           "document.body.dataset.view === 'ready'", timeout=30_000)


def view_serial(page) -> int:
    return int(page.evaluate("document.body.dataset.viewSerial || 0"))


def set_view(page, lat: float, lon: float, zoom: int) -> None:
    serial = view_serial(page)
    page.evaluate(f"void window.geoservice.city.map.setView([{lat}, {lon}], {zoom}, {{animate: false}})")
    wait_for_view(page, serial)


def sanba(conn) -> dict:
    return dict(conn.execute(sa.text(
        "SELECT id, ST_X(geom) AS lon, ST_Y(geom) AS lat, amenities, phone, opening_hours FROM point "
        "WHERE name = :name"), {"name": SANBA}).mappings().one())


def test_first_paint_draws_points_and_grids_from_tiles_with_no_errors_and_no_foreign_requests(page, served, conn):
    html = open_map(page, served)
    hosts = {urlparse(url).hostname for url in page.requested if not url.startswith("data:")}
    assert hosts == {"127.0.0.1"}, hosts
    # Data comes from the tiles and the API only (no whole-city layer: at this zoom nothing is asked by view).
    data = {urlparse(u).path for u in page.requested} - {"/"}
    data = {p for p in data if not p.startswith("/static/")}
    assert data and all(p.startswith(("/tiles/", "/api/v1/")) for p in data), data
    assert not [p for p in data if p.startswith("/api/v1/layers/")]
    # The markers and clusters hold exactly the points of the points tiles asked (counted in SQL, tiles by hand).
    asked = {(z, x, y) for z, x, y, _ in tile_requests(page.requested, "points")}
    drawn = page.evaluate(DRAWN_JS)
    expected = points_in_tiles(conn, asked)
    assert drawn["kinds"] == expected
    assert drawn["points"] == sum(expected.values()) > 100
    assert drawn["clusters"] > 10  # at the start zoom most points are clustered
    # The demo city is in view: every grid and the district drawn by MapLibre from the grids and districts tiles.
    assert tile_requests(page.requested, "grids") and tile_requests(page.requested, "districts")
    assert set(drawn["vector"]["grids-fill"]) == set(conn.execute(sa.text("SELECT code FROM grid")).scalars())
    assert drawn["vector"]["districts-line"] == ["411002"]
    assert len(drawn["vector"]["streets-line"]) > 100
    assert page.locator(".leaflet-control-scale").count() == 1
    assert re.fullmatch(r"\d+ k?m", page.locator(".leaflet-control-scale-line").inner_text())  # metric only
    assert page.locator(".leaflet-control-locate a").get_attribute("aria-label")
    assert SANBA not in html  # the data is fetched, never inlined
    assert page.console_errors == []
    page.wait_for_selector("body[data-coverage-loaded='true']", state="attached", timeout=60_000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "city-map.png"))


GRID_FILLS_JS = """() => { const out = {};
  window.geoservice.city.gl.queryRenderedFeatures({layers: ['grids-fill']}).forEach(f => {
    const c = f.layer.paint['fill-color'];
    out[f.properties.code] = [f.layer.paint['fill-opacity'],
      '#' + [c.r, c.g, c.b].map(v => Math.round(v * 255).toString(16).padStart(2, '0')).join('')]; });
  return out; }"""


def test_grids_are_drawn_before_their_coverage_and_coloured_by_it_after(page, served):
    # The coverage answer is held back: the map is drawn without it (outlines only), and filled once it comes.
    held = []

    def hold(route):  # Playwright reads the handler's signature: a bound builtin (held.append) has none
        held.append(route)

    page.route("**/api/v1/coverage/grids", hold)
    open_map(page, served)
    assert held and page.evaluate("document.body.dataset.coverageLoaded") is None
    before = page.evaluate(GRID_FILLS_JS)
    assert before and {opacity for opacity, _ in before.values()} == {0}
    held[0].continue_()
    page.wait_for_selector("body[data-coverage-loaded='true']", state="attached", timeout=60_000)
    page.wait_for_timeout(100)  # the next frame
    with urllib.request.urlopen(served + "/api/v1/coverage/grids") as response:
        grids = json.load(response)["grids"]
    fills = page.evaluate(GRID_FILLS_JS)
    assert len(fills) == len(grids)

    def expected(pct):  # the legend's classes, by hand
        if pct is None:
            return "#d5d8dc"
        return "#1a9850" if pct >= 90 else "#91cf60" if pct >= 70 else "#d9ef8b" if pct >= 50 else \
            "#fdae61" if pct >= 25 else "#d73027"

    assert {g["code"]: [0.5, expected(g["covered_pct"])] for g in grids} == fills
    assert len({colour for _, colour in fills.values()}) >= 4  # the demo city has weak and strong grids


def test_toggling_each_layer_changes_what_is_drawn(page, served, conn):
    open_map(page, served)
    before = page.evaluate(DRAWN_JS)
    assert set(before["kinds"]) == set(KIND_CODES) and all(before["vector"].values()), before
    labels = page.locator(".leaflet-control-layers-overlays label")
    assert labels.count() == len(LAYER_KEYS)
    for index, key in enumerate(LAYER_KEYS):
        checkbox = labels.nth(index).locator("input")
        serial = view_serial(page)
        checkbox.click()
        wait_for_view(page, serial)
        hidden = page.evaluate(DRAWN_JS)
        if key in VECTOR_KEYS:
            assert hidden["vector"][VECTOR_KEYS[key]] == [], key
            assert {k: v for k, v in hidden["vector"].items() if k != VECTOR_KEYS[key]} == \
                {k: v for k, v in before["vector"].items() if k != VECTOR_KEYS[key]}, key
            assert hidden["kinds"] == before["kinds"]
        else:
            assert key not in hidden["kinds"], key
            assert hidden["kinds"] == {k: v for k, v in before["kinds"].items() if k != key}, key
            assert page.locator(f".leaflet-marker-icon.kind-{key}").count() == 0
            assert hidden["vector"] == before["vector"]
        serial = view_serial(page)
        checkbox.click()
        wait_for_view(page, serial)
        after = page.evaluate(DRAWN_JS)
        assert after["kinds"] == before["kinds"] and after["vector"] == before["vector"], key
    assert page.console_errors == []


def test_a_kind_toggle_asks_the_points_tiles_again_for_the_kinds_on(page, served, conn):
    open_map(page, served)
    first = tile_requests(page.requested, "points")
    assert first and all(query == "" for *_, query in first)  # every kind on: no filter
    labels = page.locator(".leaflet-control-layers-overlays label")
    for key in ("kiosk", "toilet"):
        serial = view_serial(page)
        page.requested.clear()
        labels.nth(LAYER_KEYS.index(key)).locator("input").click()
        wait_for_view(page, serial)
    on = [k for k in KIND_CODES if k not in ("kiosk", "toilet")]
    again = tile_requests(page.requested, "points")
    assert again and {parse_qs(query)["kinds"][0] for *_, query in again} == {",".join(on)}
    assert {(z, x, y) for z, x, y, _ in again} == {(z, x, y) for z, x, y, _ in first}
    drawn = page.evaluate(DRAWN_JS)
    assert drawn["kinds"] == points_in_tiles(conn, {(z, x, y) for z, x, y, _ in again}, on)
    assert page.console_errors == []


def test_a_cluster_counts_its_cell_by_kind_and_zooms_in_when_pressed(page, served, conn):
    open_map(page, served)
    clusters = page.evaluate(CLUSTERS_JS)
    assert clusters
    biggest = max(clusters, key=lambda c: c["count"])
    # Its cell, by hand: its tile cut into 8 × 8 cells (32 px of 256), the cell its position falls in.
    z, x, y = biggest["tile"]
    n = 2 ** z
    wx = (biggest["lon"] + 180) / 360 * n - x
    lat = math.radians(biggest["lat"])
    wy = (1 - math.log(math.tan(lat) + 1 / math.cos(lat)) / math.pi) / 2 * n - y
    cx, cy = int(wx * 8), int(wy * 8)
    west, _, east, north = tile_box(z, x, y)
    lon_of = lambda i: west + (east - west) * i / 8  # noqa: E731
    lat_of = lambda j: math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * (y + j / 8) / n))))  # noqa: E731
    rows = conn.execute(sa.text(
        "SELECT kind, count(*) FROM point WHERE status <> 'planned' AND ST_X(geom) >= :w AND ST_X(geom) < :e "
        "AND ST_Y(geom) <= :n AND ST_Y(geom) > :s GROUP BY kind"),
        {"w": lon_of(cx), "e": lon_of(cx + 1), "n": lat_of(cy), "s": lat_of(cy + 1)}).all()
    assert dict(rows) == biggest["kinds"] and sum(biggest["kinds"].values()) == biggest["count"] > 1
    # Its icon says the count and the count of each kind; pressing it zooms in two steps on it.
    zoom = page.evaluate("window.geoservice.city.map.getZoom()")
    serial = view_serial(page)
    title = page.evaluate("""([lat, lon]) => { let title = null;
      window.geoservice.city.markers.eachLayer(g => g.eachLayer(m => {
        if (m.cluster && m.getLatLng().lat === lat && m.getLatLng().lng === lon) {
          title = m.getElement().title; m.getElement().click(); } }));
      return title; }""", [biggest["lat"], biggest["lon"]])
    labels = {k.code: k.zh for k in POINT_KINDS}
    assert title.startswith(f"{biggest['count']} · ")
    assert sorted(title.split(" · ")[1].split("，")) == sorted(f"{labels[k]} {n}" for k, n in biggest["kinds"].items())
    wait_for_view(page, serial)
    assert page.evaluate("window.geoservice.city.map.getZoom()") == zoom + 2
    centre = page.evaluate("window.geoservice.city.map.getCenter()")
    assert (centre["lat"], centre["lng"]) == (pytest.approx(biggest["lat"], abs=1e-6),
                                              pytest.approx(biggest["lon"], abs=1e-6))
    assert page.console_errors == []


def test_a_pan_asks_only_for_the_tiles_newly_in_view(page, served, conn):
    point = sanba(conn)
    open_map(page, served, f"#15/{point['lat']}/{point['lon']}")
    before = {layer: tile_requests(page.requested, layer) for layer in ("points", "streets", "grids")}
    assert all(before.values())
    pixel_bounds = ("(() => { const b = window.geoservice.city.map.getPixelBounds(); "
                    "return [b.min.x, b.min.y, b.max.x, b.max.y]; })()")

    def tiles_of(bounds):  # the tiles of pixel bounds at 15, by hand: zoom-14 tiles shown 512 px wide below 17
        return {(14, x, y) for x in range(int(bounds[0] // 512), int(math.ceil(bounds[2] / 512)))
                for y in range(int(bounds[1] // 512), int(math.ceil(bounds[3] / 512)))}

    old = tiles_of(page.evaluate(pixel_bounds))
    page.requested.clear()
    serial = view_serial(page)
    page.evaluate("void window.geoservice.city.map.panBy([1000, 0], {animate: false})")
    wait_for_view(page, serial)
    new = tiles_of(page.evaluate(pixel_bounds))
    after = {layer: tile_requests(page.requested, layer) for layer in ("points", "streets", "grids")}
    assert {(z, x, y) for z, x, y, _ in after["points"]} == new - old != set()
    for layer in ("streets", "grids"):  # MapLibre keeps what it has: nothing asked twice
        assert not {t[:3] for t in after[layer]} & {t[:3] for t in before[layer]}, layer
    assert len(after["points"]) == len(new - old)  # each new tile asked once
    assert page.console_errors == []


def test_grid_outlines_carry_code_labels_close_up(page, served, conn):
    open_map(page, served)
    assert page.locator(".grid-label").count() == 0
    point = sanba(conn)
    set_view(page, point["lat"], point["lon"], 17)
    codes = page.locator(".grid-label").all_inner_texts()
    assert codes and all(re.fullmatch(r"\d{15}", c) for c in codes)
    here = conn.execute(sa.text("SELECT code FROM grid WHERE ST_Covers(geom, ST_SetSRID(ST_MakePoint(:lon, :lat), "
                                "4326))"), point).scalars().all()
    assert set(here) <= set(codes)


def test_kiosks_show_their_free_overnight_places(page, served, conn):
    open_map(page, served)
    kiosk = conn.execute(sa.text("SELECT name, capacity - occupancy AS free, ST_X(geom) AS lon, ST_Y(geom) AS lat "
                                 "FROM point WHERE kind = 'kiosk' ORDER BY id LIMIT 1")).mappings().one()
    set_view(page, kiosk["lat"], kiosk["lon"], 18)
    marker = page.locator(f".leaflet-marker-icon.kind-kiosk[title^='{kiosk['name']}']")
    assert marker.locator(".badge").inner_text() == str(kiosk["free"])


def test_night_market_zones_show_their_hours(page, served, conn):
    open_map(page, served)
    market = conn.execute(sa.text("SELECT ST_X(geom) AS lon, ST_Y(geom) AS lat FROM point "
                                  "WHERE kind = 'night_market' ORDER BY id LIMIT 1")).mappings().one()
    set_view(page, market["lat"], market["lon"], 18)
    # Demo night markets open Mo-Su 18:00-02:00 (data/README.md).
    assert "18:00-02:00" in page.locator(".night-hours").first.inner_text()


def test_popup_shows_the_amenities_grid_squad_and_phone_of_the_sanba_rest_station(page, served, conn, demo_city):
    point = sanba(conn)
    open_map(page, served, f"#18/{point['lat']}/{point['lon']}")
    before = datetime.now(ZoneInfo("Asia/Shanghai"))
    page.locator(f".leaflet-marker-icon[title^='{SANBA}']").click()
    after = datetime.now(ZoneInfo("Asia/Shanghai"))
    popup = page.locator(".leaflet-popup-content")
    popup.wait_for(timeout=10_000)
    text = popup.inner_text()
    assert SANBA in text
    labels = {t.code: t for t in AMENITIES}
    shown = popup.locator("li[data-amenity]")
    assert shown.count() == len(point["amenities"]) == 4
    for code in point["amenities"]:
        item = popup.locator(f"li[data-amenity='{code}']")
        assert labels[code].zh in item.inner_text() and labels[code].en in item.inner_text()
        assert item.locator("svg use").get_attribute("href").endswith(f"#amenity-{code}")
    assert popup.locator("a[href^='tel:']").first.get_attribute("href") == "tel:" + re.sub(r"\D", "", point["phone"])
    # The grid covering the point, found with shapely in the generator's own rows (first by code, as documented).
    covering = sorted(g["code"] for g in demo_city.grids if g["geom"].covers(Point(point["lon"], point["lat"])))
    assert covering[0] in text
    squad = conn.execute(sa.text("SELECT s.name FROM grid g JOIN squad s ON s.id = g.squad_id WHERE g.code = :c"),
                         {"c": covering[0]}).scalar_one()
    assert squad in text
    # Open Mo-Su 08:00-20:00, by hand: open when the local hour is 8..19.
    states = {8 <= moment.hour < 20 for moment in (before, after)}
    assert ("现在开放" in text) in states and ("现在关闭" in text) in {not s for s in states}
    assert page.console_errors == []


def test_search_finds_a_known_point_and_shows_it(page, served, conn):
    point = sanba(conn)
    open_map(page, served)
    page.get_by_role("searchbox").fill("三八路便民")
    page.get_by_role("searchbox").press("Enter")
    first = page.locator(".search-results li button").first
    first.wait_for(timeout=10_000)
    assert SANBA in first.inner_text()
    first.click()
    popup = page.locator(".leaflet-popup-content")
    popup.wait_for(timeout=10_000)
    assert SANBA in popup.inner_text()
    # The map zoomed in on the point (the popup may pan it a little to fit).
    assert page.evaluate(f"window.geoservice.city.map.getBounds().contains([{point['lat']}, {point['lon']}])")
    assert page.evaluate("window.geoservice.city.map.getZoom()") >= 17
    page.get_by_role("searchbox").fill("没有这个地方")
    page.get_by_role("searchbox").press("Enter")
    page.wait_for_function("document.querySelector('.search-status').textContent.includes('没有找到')")
    assert page.locator(".search-results li").count() == 0
    assert page.console_errors == []


def test_permalink_restores_the_view_and_follows_moves(page, served, browser):
    open_map(page, served, "#16/34.02/113.81")
    assert page.evaluate("window.geoservice.city.map.getZoom()") == 16
    centre = page.evaluate("window.geoservice.city.map.getCenter()")
    assert (centre["lat"], centre["lng"]) == (pytest.approx(34.02, abs=1e-9), pytest.approx(113.81, abs=1e-9))
    set_view(page, 34.031, 113.835, 15)
    assert page.evaluate("location.hash") == "#15/34.03100/113.83500"
    other = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    try:
        second = other.new_page()
        second.goto(page.url)
        second.wait_for_selector("body[data-layers-loaded='true']", state="attached", timeout=60_000)
        assert second.evaluate("window.geoservice.city.map.getZoom()") == 15
        centre = second.evaluate("window.geoservice.city.map.getCenter()")
        assert centre["lat"] == pytest.approx(34.031, abs=1e-9)
        assert centre["lng"] == pytest.approx(113.835, abs=1e-9)
    finally:
        other.close()


def test_language_switch_changes_the_text(page, served):
    open_map(page, served)
    control = page.locator(".leaflet-control-layers-overlays")
    assert "单元网格" in control.inner_text() and "城管服务岗亭" in control.inner_text()
    page.get_by_role("button", name="Switch to English").click()
    assert page.evaluate("document.documentElement.lang") == "en"
    text = control.inner_text()
    for english in ("Unit grids", "Streets", "Districts", "Urban-management kiosk", "Public toilet"):
        assert english in text
    assert "单元网格" not in text
    assert page.get_by_role("searchbox").get_attribute("placeholder").startswith("Name or address")
    assert "Legend" in page.locator(".city-legend").inner_text()
    assert page.title().startswith("City convenience map")
    page.get_by_role("button", name="切换到中文").click()
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    assert "单元网格" in control.inner_text()
    assert page.console_errors == []


def test_locate_me_centres_the_map_on_the_browsers_position(browser, served):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, geolocation={
        "latitude": 34.0301, "longitude": 113.8302, "accuracy": 20}, permissions=["geolocation"], bypass_csp=True)
    try:
        page = context.new_page()
        open_map(page, served)
        page.locator(".leaflet-control-locate a").click()
        page.wait_for_function("Math.abs(window.geoservice.city.map.getCenter().lat - 34.0301) < 1e-6", timeout=10_000)
        assert page.evaluate("window.geoservice.city.map.getCenter().lng") == pytest.approx(113.8302, abs=1e-6)
    finally:
        context.close()


def test_controls_are_keyboard_reachable_labelled_and_fit_at_200_percent_zoom(browser, served):
    # 200 % browser zoom on a 1280×800 window lays the page out in 640×400 CSS pixels.
    context = browser.new_context(viewport={"width": 640, "height": 400}, locale="zh-CN", bypass_csp=True)
    try:
        page = context.new_page()
        open_map(page, served)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        for selector in (".city-panel", ".leaflet-control-zoom", ".leaflet-control-locate",
                         ".leaflet-control-layers", ".city-legend summary"):
            box = page.locator(selector).bounding_box()
            assert box and box["x"] >= 0 and box["y"] >= 0, selector
            assert box["x"] + box["width"] <= 640 and box["y"] + box["height"] <= 400, selector
        reached = set()
        for _ in range(60):
            page.keyboard.press("Tab")
            reached.add(page.evaluate(KEYBOARD_TARGET_JS))
        assert {"lang", "search", "layers", "zoom", "locate", "legend"} <= reached, reached
        # Every button and link in the controls has a name a screen reader can say.
        unnamed = page.evaluate(UNNAMED_CONTROLS_JS)
        assert unnamed == []
    finally:
        context.close()


def test_page_html_stays_small_on_the_demo_city(served):
    with urllib.request.urlopen(served + "/") as response:
        html = response.read()
    assert len(html) < 300_000
    assert SANBA.encode() not in html


def test_a_100k_point_city_gets_the_same_small_page_and_every_point_of_the_view(browser, served, engine, demo_city):
    """The page does not depend on the data: on a 100,000-point city it is the demo's page, and the map draws every
    point of its view from the points tiles (clustered on the server) — no cap, no "zoom in"."""
    with urllib.request.urlopen(served + "/") as response:
        demo_html = response.read()
    big = generate_city(scaled_spec(blocks=48, points=100_000))
    try:
        with engine.begin() as connection:
            load_city(connection, big)
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM point")).scalar_one() == 100_000
        with urllib.request.urlopen(served + "/") as response:
            big_html = response.read()
        assert big_html == demo_html
        assert len(big_html) < 300_000
        context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN", bypass_csp=True)
        try:
            page = context.new_page()
            # Grid coverage of a 100k city is the coverage module's business (and takes a while): answered here
            # so that no query outlives the test and holds up the restore of the demo city.
            page.route("**/api/v1/coverage/grids", lambda route: route.fulfill(
                status=200, content_type="application/json", body='{"grids": []}'))
            page.console_errors = []
            page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
            requested = []
            page.on("request", lambda request: requested.append(request.url))
            visible = [p for p in big.points if p.get("status") != "planned"]

            def expected(tiles):  # the generator's points whose tile (by hand) was asked
                (z,) = {t[0] for t in tiles}
                return sum(1 for p in visible if (z, *tile_of(p["geom"].x, p["geom"].y, z)) in tiles)

            open_map(page, served)
            asked = {(z, x, y) for z, x, y, _ in tile_requests(requested, "points")}
            drawn = page.evaluate(DRAWN_JS)
            assert drawn["points"] == expected(asked) > 50_000
            assert drawn["clusters"] > 50
            assert page.locator("#map-status").is_hidden()
            # Close up: every point of the view's tiles is a marker of its own.
            centre = big.points[0]["geom"]
            requested.clear()
            set_view(page, centre.y, centre.x, 18)
            asked = {(z, x, y) for z, x, y, _ in tile_requests(requested, "points")}
            drawn = page.evaluate(DRAWN_JS)
            assert drawn["clusters"] == 0
            assert 0 < drawn["points"] == expected(asked) == len(drawn["singles"])
            assert page.locator("#map-status").is_hidden()
            assert page.console_errors == []
        finally:
            context.close()
    finally:
        with engine.begin() as connection:
            load_city(connection, demo_city)


@pytest.mark.parametrize(("basemap", "present", "absent"), [
    ("osm", ["OpenStreetMap"], ["tianditu.gov.cn"]),
    ("tianditu", ["tianditu.gov.cn", "tk=test-key-123"], ["OpenStreetMap"]),
    ("none", [], ["tianditu.gov.cn", "openstreetmap", "tile."]),
])
def test_the_basemap_setting_picks_the_tiles_and_none_needs_no_tiles(settings, basemap, present, absent):
    app = create_app(settings.replace(basemap=basemap, tianditu_key="test-key-123"))
    html = app.test_client().get("/").get_data(as_text=True)
    for text in present:
        assert text in html
    for text in absent:
        assert text.lower() not in html.lower()
    # The page is the same map either way: our layers and script, from our own /static.
    assert "/static/js/common.js" in html and "/static/js/citymap.js" in html
