"""The city map in a real headless Chromium, against the app served as ``geoservice serve`` serves it."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
import sqlalchemy as sa

from tests.conftest import SCREENSHOTS

pytestmark = pytest.mark.browser


def test_city_map_renders_every_layer_with_no_errors_and_no_foreign_requests(page, served, conn):
    page.goto(served + "/")
    page.wait_for_selector("body[data-layers-loaded='true']", timeout=60_000)
    loaded = page.evaluate("window.geoservice.loaded")
    for style, table in (("district", "district"), ("grid", "grid"), ("street", "street"), ("point", "point")):
        assert loaded[style] == conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one(), style
    # Leaflet drew: a canvas per layer pane, and the layer control lists our four layers.
    assert page.locator(".leaflet-pane canvas").count() == 4  # one canvas per pane: districts, grids, streets, points
    control_text = page.locator(".leaflet-control-layers-overlays").inner_text()
    for title in ("单元网格", "街道", "便民点", "行政区"):
        assert title in control_text
    assert page.console_errors == []
    hosts = {urlparse(url).hostname for url in page.requested if not url.startswith("data:")}
    assert hosts == {"127.0.0.1"}, hosts
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "city-map.png"))


def test_clicking_a_point_opens_its_popup_with_amenities(page, served, conn):
    lon, lat = conn.execute(sa.text(
        "SELECT ST_X(geom), ST_Y(geom) FROM point WHERE name = '三八路便民服务点'")).one()
    page.goto(served + "/")
    page.wait_for_selector("body[data-layers-loaded='true']", timeout=60_000)
    map_name = page.evaluate("Object.keys(window).find(k => k.startsWith('map_'))")
    page.evaluate(f"void window['{map_name}'].setView([{lat}, {lon}], 18, {{animate: false}})")
    page.wait_for_timeout(300)
    xy = page.evaluate(f"(() => {{ const p = window['{map_name}'].latLngToContainerPoint([{lat}, {lon}]);"
                       " return {x: p.x, y: p.y}; })()")
    box = page.locator(".leaflet-container").bounding_box()
    page.mouse.click(box["x"] + xy["x"], box["y"] + xy["y"])
    popup = page.locator(".leaflet-popup-content")
    popup.wait_for(timeout=10_000)
    text = popup.inner_text()
    assert "三八路便民服务点" in text
    for label in ("饮用水", "急救箱", "手机充电", "座椅"):
        assert label in text
    assert page.console_errors == []
