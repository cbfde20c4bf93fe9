"""The city map (/) in a real headless Chromium, against the app served as ``geoservice serve`` serves it.

Expected values come from the database, the generator's own rows (shapely) or by hand — never from the page's
own bookkeeping: what is drawn is counted from Leaflet's map (the layers actually on it) and from the DOM.
"""

from __future__ import annotations

import json
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

# Leaflet layers on the map (what is drawn), per layer of the layer control. Paths and markers only: a cluster
# marker stands for its group's layer.
DRAWN_JS = """() => {
  const map = window.geoservice.city.map;
  const counts = {};
  map.eachLayer(l => {
    if (!(l instanceof L.Path || l instanceof L.Marker)) return;
    const key = l.options.geoserviceLayer || (l._group && l._group.options.geoserviceLayer);
    if (key) counts[key] = (counts[key] || 0) + 1;
  });
  return counts;
}"""


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


def test_city_map_loads_by_view_with_no_errors_and_no_foreign_requests(page, served, conn):
    html = open_map(page, served)
    # Every point the page holds came from a bbox request: count the database's points in that bbox.
    point_requests = [u for u in page.requested if urlparse(u).path == "/api/v1/layers/points"]
    assert len(point_requests) == 1
    bbox = [float(v) for v in parse_qs(urlparse(point_requests[0]).query)["bbox"][0].split(",")]
    expected = conn.execute(sa.text(
        "SELECT count(*) FROM point WHERE ST_X(geom) BETWEEN :a AND :c AND ST_Y(geom) BETWEEN :b AND :d"),
        dict(zip("abcd", bbox, strict=True))).scalar_one()
    held = page.evaluate("Object.values(window.geoservice.city.clusters).reduce((n, c) => n + c.getLayers().length, 0)")
    assert held == expected > 100
    drawn = page.evaluate(DRAWN_JS)
    assert drawn["grids"] == conn.execute(sa.text("SELECT count(*) FROM grid")).scalar_one()
    assert drawn["districts"] == 1
    assert drawn["streets"] > 1000
    assert page.locator(".leaflet-control-scale").count() == 1
    assert re.fullmatch(r"\d+ k?m", page.locator(".leaflet-control-scale-line").inner_text())  # metric only
    assert page.locator(".leaflet-control-locate a").get_attribute("aria-label")
    assert SANBA not in html  # the data is fetched, never inlined
    assert page.console_errors == []
    hosts = {urlparse(url).hostname for url in page.requested if not url.startswith("data:")}
    assert hosts == {"127.0.0.1"}, hosts
    page.wait_for_selector("body[data-coverage-loaded='true']", state="attached", timeout=60_000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "city-map.png"))


def test_grids_are_coloured_by_their_street_coverage(page, served):
    open_map(page, served)
    page.wait_for_selector("body[data-coverage-loaded='true']", state="attached", timeout=60_000)
    with urllib.request.urlopen(served + "/api/v1/coverage/grids") as response:
        grids = json.load(response)["grids"]
    fills = page.evaluate("""(() => { const out = {};
        window.geoservice.city.map.eachLayer(l => { if (l.options.geoserviceLayer === 'grids' && l.feature)
          out[l.feature.properties.code] = l.options.fillColor; }); return out; })()""")
    assert len(fills) == len(grids)

    def expected(pct):  # the legend's classes, by hand
        if pct is None:
            return "#d5d8dc"
        return "#1a9850" if pct >= 90 else "#91cf60" if pct >= 70 else "#d9ef8b" if pct >= 50 else \
            "#fdae61" if pct >= 25 else "#d73027"

    assert {g["code"]: expected(g["covered_pct"]) for g in grids} == fills
    assert len(set(fills.values())) >= 4  # the demo city has weak and strong grids


def test_toggling_each_layer_changes_what_is_drawn(page, served):
    open_map(page, served)
    before = page.evaluate(DRAWN_JS)
    assert set(before) >= set(LAYER_KEYS), before
    labels = page.locator(".leaflet-control-layers-overlays label")
    assert labels.count() == len(LAYER_KEYS)
    for index, key in enumerate(LAYER_KEYS):
        checkbox = labels.nth(index).locator("input")
        checkbox.click()
        hidden = page.evaluate(DRAWN_JS)
        assert key not in hidden, key
        assert {k: v for k, v in hidden.items() if k != key} == {k: v for k, v in before.items() if k != key}, key
        if key in KIND_CODES:
            assert page.locator(f".leaflet-marker-icon.kind-{key}").count() == 0
        checkbox.click()
        assert page.evaluate(DRAWN_JS) == before, key
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


def test_a_100k_point_city_gets_the_same_small_page_and_small_views(browser, served, engine, demo_city):
    """The page does not depend on the data: on a 100,000-point city it is the demo's page, and the map asks only
    for its view (capped, with a hint to zoom in) — never the whole city."""
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
            # The whole city in view: the page gets at most its cap and says so.
            open_map(page, served)
            held = page.evaluate(
                "Object.values(window.geoservice.city.clusters).reduce((n, c) => n + c.getLayers().length, 0)")
            assert held == 5000
            assert "请放大" in page.locator("#map-status").inner_text()
            # Close up: exactly the points in the requested bbox (counted by shapely in the generator's rows).
            centre = big.points[0]["geom"]
            set_view(page, centre.y, centre.x, 17)
            request = [u for u in page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
                       if urlparse(u).path == "/api/v1/layers/points"][-1]
            minx, miny, maxx, maxy = (float(v) for v in parse_qs(urlparse(request).query)["bbox"][0].split(","))
            inside = sum(1 for p in big.points if minx <= p["geom"].x <= maxx and miny <= p["geom"].y <= maxy)
            held = page.evaluate(
                "Object.values(window.geoservice.city.clusters).reduce((n, c) => n + c.getLayers().length, 0)")
            assert 0 < held == inside < 5000
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
