"""The planner's coverage page in a real headless Chromium, against the app served as ``geoservice serve`` serves it.

What the page shows is compared with what the API answers for the same query (the API is checked against shapely
and networkx in tests/test_coverage.py), with the grid outlines read from the database, and the downloads are
parsed with independent readers (csv, json + shapely, pyogrio).
"""

from __future__ import annotations

import csv
import io
import json
import re
import urllib.request
from urllib.parse import urlparse

import pyogrio
import pytest
import sqlalchemy as sa
from shapely import wkb, wkt
from shapely.geometry import box, shape

from geoservice.vocab import KIND_CODES, POINT_KINDS
from geoservice.web.i18n import catalogue
from tests.conftest import SCREENSHOTS

pytestmark = pytest.mark.browser
TIMEOUT_MS = 90_000
EN = catalogue("planner")["en"]
IN_BOX = "ST_Intersects(geom, ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326))"
ZH = catalogue("planner")["zh"]


def api(served: str, path: str, query: str) -> dict:
    with urllib.request.urlopen(f"{served}{path}?{query}", timeout=120) as response:
        return json.load(response)


def open_planner(page, served: str) -> None:
    page.goto(served + "/planner")
    page.wait_for_selector("body[data-planner-state='ready'][data-planner-static='ready'][data-planner-view]",
                           timeout=TIMEOUT_MS)


def in_view(page, conn, sql: str) -> int:
    """Count the rows of ``sql`` (with :x0 :y0 :x1 :y1) in the box the page loaded its streets and points for."""
    x0, y0, x1, y1 = (float(v) for v in page.get_attribute("body", "data-planner-view").split(","))
    return conn.execute(sa.text(sql), {"x0": x0, "y0": y0, "x1": x1, "y1": y1}).scalar_one()


def wait_for_query(page, **expected: list[str]) -> str:
    """Wait until the shown result belongs to a query with these values; return that query string."""
    page.wait_for_function("""(expected) => {
        const body = document.body;
        if (body.dataset.plannerState !== "ready") return false;
        const q = new URLSearchParams(body.dataset.plannerQuery || "");
        return Object.entries(expected).every(([k, v]) => JSON.stringify(q.getAll(k)) === JSON.stringify(v));
    }""", arg=expected, timeout=TIMEOUT_MS)
    return page.evaluate("document.body.dataset.plannerQuery")


def shown(page, name: str) -> str:
    return page.locator(f"#sum-{name}").inner_text()


def assert_summary_matches_api(page, served: str, query: str) -> dict:
    answer = api(served, "/api/v1/coverage/streets", query)
    summary = answer["summary"]
    assert shown(page, "uncovered_km") == f"{summary['uncovered_km']:.3f}"
    assert shown(page, "total_km") == f"{summary['total_km']:.3f}"
    assert shown(page, "covered_km") == f"{summary['covered_km']:.3f}"
    assert shown(page, "covered_pct") == f"{summary['covered_pct']:.2f}"
    assert page.evaluate("geoservicePlanner.counts.uncovered") == len(answer["features"])
    return summary


def table_column(page, index: int) -> list[str]:
    return page.locator(f"#grid-table tbody tr td:nth-child({index})").all_inner_texts()


def grid_bounds(conn, code: str) -> tuple[float, float, float, float]:
    geom = conn.execute(sa.text("SELECT ST_AsBinary(geom) FROM grid WHERE code = :c"), {"c": code}).scalar_one()
    return wkb.loads(bytes(geom)).bounds


def map_bounds(page) -> tuple[float, float, float, float]:
    b = page.evaluate("(() => { const b = geoservicePlanner.map.getBounds();"
                      " return [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]; })()")
    return tuple(b)


def test_planner_shows_the_api_numbers_for_each_radius_kind_and_mode(page, served, conn):
    open_planner(page, served)
    query = wait_for_query(page, radius=["500"], mode=["straight"], kind=list(KIND_CODES))
    default = assert_summary_matches_api(page, served, query)
    # Everything drawn comes from our API: every grid, every gap and overlap; the streets of the view (with a
    # margin) as the offline basemap, and the points there.
    counts = page.evaluate("geoservicePlanner.counts")
    assert counts["grids"] == conn.execute(sa.text("SELECT count(*) FROM grid")).scalar_one() == 400
    view_streets = in_view(page, conn, f"SELECT count(*) FROM street WHERE {IN_BOX}")
    assert counts["streets"] == view_streets > 1000
    gaps = api(served, "/api/v1/coverage/grid-gaps", "")
    assert counts["gaps"] == len(gaps["features"]) > 0
    assert page.locator("#sum-gaps").inner_text().startswith(f"{gaps['summary']['gaps']} ")
    assert page.locator("#sum-overlaps").inner_text().startswith(f"{gaps['summary']['overlaps']} ")
    assert counts["points"] == in_view(page, conn, f"SELECT count(*) FROM point WHERE status = 'open' AND {IN_BOX}")
    assert page.locator("#grid-table tbody tr").count() == 400
    # Offline: no tiles, nothing from any other host.
    assert page.locator(".leaflet-tile").count() == 0
    assert re.fullmatch(r"\d+ k?m", page.locator(".leaflet-control-scale-line").inner_text())  # metric only
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "planner.png"))

    # The number input drives the slider; the slider (by keyboard) drives the number input.
    page.fill("#radius-number", "300")
    page.press("#radius-number", "Enter")
    query = wait_for_query(page, radius=["300"], mode=["straight"])
    assert page.input_value("#radius-range") == "300"
    at_300 = assert_summary_matches_api(page, served, query)
    assert at_300["uncovered_km"] > default["uncovered_km"]

    page.focus("#radius-range")
    for _ in range(6):
        page.keyboard.press("ArrowRight")
    query = wait_for_query(page, radius=["600"], mode=["straight"])
    assert page.input_value("#radius-number") == "600"
    assert_summary_matches_api(page, served, query)

    page.check("input[name=mode][value=walk]")
    query = wait_for_query(page, radius=["600"], mode=["walk"])
    walk = assert_summary_matches_api(page, served, query)
    assert walk["mode"] == "walk"

    page.click("#kinds-none")
    assert page.locator("#kinds-error").is_visible()
    page.check("input[name=kind][value=toilet]")
    page.check("input[name=kind][value=kiosk]")
    query = wait_for_query(page, radius=["600"], mode=["walk"], kind=["kiosk", "toilet"])
    assert_summary_matches_api(page, served, query)
    assert page.evaluate("geoservicePlanner.counts.points") == in_view(
        page, conn, f"SELECT count(*) FROM point WHERE status = 'open' AND kind IN ('kiosk', 'toilet') AND {IN_BOX}")
    top = api(served, "/api/v1/coverage/streets", query)["summary"]["uncovered_by_street"][0]
    assert page.locator("#top-streets li").first.inner_text() == f"{top['name']} · {top['uncovered_km']:.3f} 公里"

    assert page.console_errors == []
    hosts = {urlparse(url).hostname for url in page.requested if not url.startswith("data:")}
    assert hosts == {"127.0.0.1"}, hosts


def test_a_bad_radius_is_named_and_not_sent(page, served):
    open_planner(page, served)
    page.fill("#radius-number", "20000")
    page.press("#radius-number", "Enter")
    assert page.locator("#radius-error").is_visible()
    assert page.get_attribute("#radius-number", "aria-invalid") == "true"
    assert not any("radius=20000" in url for url in page.requested)
    assert page.console_errors == []


def test_sorting_the_table_orders_the_rows(page, served):
    open_planner(page, served)
    query = wait_for_query(page, radius=["500"])
    grids = api(served, "/api/v1/coverage/grids", query)["grids"]
    assert sorted(table_column(page, 1)) == sorted(g["code"] for g in grids)

    page.click("th[data-key=street_km] button")
    values = [float(v) for v in table_column(page, 3)]
    assert values == sorted(values) and values[0] < values[-1]
    assert page.get_attribute("th[data-key=street_km]", "aria-sort") == "ascending"

    page.click("th[data-key=street_km] button")
    values = [float(v) for v in table_column(page, 3)]
    assert values == sorted(values, reverse=True)
    assert page.get_attribute("th[data-key=street_km]", "aria-sort") == "descending"
    assert page.get_attribute("th[data-key=code]", "aria-sort") == "none"

    # Covered %: grids without streets have none and go last, both ways.
    page.click("th[data-key=covered_pct] button")
    texts = table_column(page, 6)
    numbers = [float(v) for v in texts if v != "—"]
    assert numbers == sorted(numbers)
    blanks = sum(1 for g in grids if g["covered_pct"] is None)
    assert texts[len(texts) - blanks:] == ["—"] * blanks
    by_code = {g["code"]: g for g in grids}
    for code, pct in zip(table_column(page, 1), texts, strict=True):
        expected = by_code[code]["covered_pct"]
        assert pct == ("—" if expected is None else f"{expected:.2f}")

    # By keyboard: the header buttons are in the tab order and Enter sorts.
    page.focus("th[data-key=uncovered_km] button")
    page.keyboard.press("Enter")
    values = [float(v) for v in table_column(page, 5)]
    assert values == sorted(values)
    assert page.console_errors == []


def test_clicking_a_row_zooms_the_map_to_the_grid(page, served, conn):
    open_planner(page, served)
    whole = box(*map_bounds(page))
    page.click("th[data-key=uncovered_km] button")
    page.click("th[data-key=uncovered_km] button")  # most uncovered first
    row = page.locator("#grid-table tbody tr").nth(3)
    code = row.get_attribute("data-code")
    row.locator("td").nth(1).click()  # the name cell: the whole row is clickable
    grid = box(*grid_bounds(conn, code))
    view = box(*map_bounds(page))
    assert view.contains(grid), (code, view.bounds, grid.bounds)
    assert view.area < whole.area / 8, "the map zoomed in to the grid"
    assert page.get_attribute(f"#grid-table tr[data-code='{code}']", "aria-current") == "true"

    # By keyboard: the code cell is a button; Enter on it zooms to that grid.
    other = page.locator("#grid-table tbody tr").nth(40)
    other_code = other.get_attribute("data-code")
    other.locator("button.zoom").focus()
    page.keyboard.press("Enter")
    view = box(*map_bounds(page))
    assert view.contains(box(*grid_bounds(conn, other_code)))
    assert not view.contains(grid) or view.area < whole.area / 8
    assert page.console_errors == []


def download(page, selector: str, tmp_path) -> tuple[str, bytes]:
    with page.expect_download(timeout=TIMEOUT_MS) as info:
        page.click(selector)
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    return info.value.suggested_filename, path.read_bytes()


def test_exports_download_the_current_result(page, served, tmp_path):
    open_planner(page, served)
    page.fill("#radius-number", "450")
    page.check("input[name=mode][value=walk]")
    page.uncheck("input[name=kind][value=parking]")
    query = wait_for_query(page, radius=["450"], mode=["walk"],
                           kind=[k for k in KIND_CODES if k != "parking"])
    streets = api(served, "/api/v1/coverage/streets", query)
    grids = api(served, "/api/v1/coverage/grids", query)["grids"]
    ids = [f["id"] for f in streets["features"]]
    assert len(ids) > 100

    name, body = download(page, "#export-streets-csv", tmp_path)
    assert name == "uncovered-streets-walk-450m.csv"
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline="")))
    assert [int(r["id"]) for r in rows] == ids
    assert [float(r["length_m"]) for r in rows] == [f["properties"]["length_m"] for f in streets["features"]]
    assert all(wkt.loads(r["wkt"]).equals(shape(f["geometry"])) for r, f in zip(rows, streets["features"],
                                                                                 strict=True))

    name, body = download(page, "#export-streets-geojson", tmp_path)
    collection = json.loads(body)
    assert name.endswith(".geojson") and [f["id"] for f in collection["features"]] == ids
    assert collection["summary"]["uncovered_km"] == streets["summary"]["uncovered_km"]
    assert all(shape(a["geometry"]).equals(shape(b["geometry"]))
               for a, b in zip(collection["features"], streets["features"], strict=True))

    name, _ = download(page, "#export-streets-gpkg", tmp_path)
    frame = pyogrio.read_dataframe(tmp_path / name, layer="uncovered_streets")
    assert list(frame["id"]) == ids
    totals = pyogrio.read_dataframe(tmp_path / name, layer="summary").iloc[0]
    assert (totals["uncovered_km"], totals["covered_pct"]) == (streets["summary"]["uncovered_km"],
                                                               streets["summary"]["covered_pct"])

    codes = [g["code"] for g in grids]
    name, body = download(page, "#export-grids-csv", tmp_path)
    assert name == "grid-coverage-walk-450m.csv"
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline="")))
    assert [r["code"] for r in rows] == codes
    assert [float(r["uncovered_km"]) for r in rows] == [g["uncovered_km"] for g in grids]
    assert "points_parking" not in rows[0]

    name, body = download(page, "#export-grids-geojson", tmp_path)
    collection = json.loads(body)
    assert [f["properties"]["code"] for f in collection["features"]] == codes
    assert all(shape(f["geometry"]).is_valid and shape(f["geometry"]).geom_type == "Polygon"
               for f in collection["features"])

    name, _ = download(page, "#export-grids-gpkg", tmp_path)
    frame = pyogrio.read_dataframe(tmp_path / name, layer="grid_coverage")
    assert list(frame["code"]) == codes
    assert list(frame["covered_km"]) == [g["covered_km"] for g in grids]
    assert page.console_errors == []


def test_language_switch_changes_every_label(page, served):
    open_planner(page, served)
    assert page.locator("#planner-heading").inner_text() == ZH["heading"]
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    page.click("#lang-switch")
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.locator("#planner-heading").inner_text() == EN["heading"]
    kind_labels = page.locator("#planner-form [data-kind-label]").all_inner_texts()
    assert kind_labels == [k.en for k in POINT_KINDS]
    assert EN["layer_uncovered"] in page.locator(".leaflet-control-layers-overlays").inner_text()
    assert EN["legend_title"] in page.locator(".planner-legend").inner_text()
    assert page.locator("th[data-key=covered_pct]").inner_text().strip() == EN["col_covered_pct"]
    assert page.get_attribute("#export-grids-gpkg", "aria-label") == "Download Grid coverage as GeoPackage"
    assert page.get_attribute("#lang-switch", "aria-label") == EN["language_switch_aria"]
    page.click("#lang-switch")
    assert page.locator("#planner-form [data-kind-label]").all_inner_texts() == [k.zh for k in POINT_KINDS]
    assert page.console_errors == []


def test_every_control_is_labelled_and_reachable_by_keyboard(page, served):
    open_planner(page, served)
    unnamed = page.evaluate("""Array.from(document.querySelectorAll(
            '#planner-panel button, #planner-panel input, #planner-panel a, .leaflet-control a'))
        .filter(el => !((el.labels && el.labels.length && el.labels[0].textContent.trim())
                        || (el.getAttribute('aria-label') || '').trim() || el.textContent.trim() || el.title
                        || el.closest('label')))
        .map(el => el.outerHTML.slice(0, 80))""")
    assert unnamed == []
    focused = []
    page.evaluate("document.activeElement && document.activeElement.blur()")
    for _ in range(30):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.id || document.activeElement.value || ''"))
    assert focused[0] == "lang-switch", "the panel comes before the map in the tab order"
    for expected in ("radius-range", "radius-number", "kiosk", "toilet", "kinds-all", "kinds-none", "straight",
                     "export-streets-csv", "export-grids-gpkg"):
        assert expected in focused, (expected, focused)


def test_readable_at_200_percent_zoom(browser, served):
    # 200 % browser zoom on a 1280×800 window is a 640×400 CSS-pixel viewport at device scale 2.
    context = browser.new_context(viewport={"width": 640, "height": 400}, device_scale_factor=2, locale="zh-CN",
                                  bypass_csp=True)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        open_planner(page, served)
        sizes = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert sizes[0] <= sizes[1], f"horizontal scrolling at 200 %: {sizes}"
        for selector in ("#radius-number", "#radius-range", "#lang-switch", "#export-grids-gpkg"):
            rect = page.locator(selector).bounding_box()
            assert rect["x"] >= 0 and rect["x"] + rect["width"] <= 640, selector
        assert page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)") >= 16
        # The map stacks under the panel and still gets most of the window.
        map_box = page.locator("#map").bounding_box()
        assert map_box["width"] >= 600 and map_box["height"] >= 300
        page.locator("#grid-table tbody tr").first.click()
        assert page.evaluate("(() => { const r = geoservicePlanner.map.getContainer().getBoundingClientRect();"
                             " return r.top < innerHeight && r.bottom > 0; })()"), "the map scrolled into view"
        assert errors == []
    finally:
        context.close()


def test_page_html_is_small_and_carries_no_data(client):
    response = client.get("/planner")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert len(response.data) < 300_000
    assert "FeatureCollection" not in html and "411002001001001" not in html
    assert "/static/js/planner.js" in html and "/static/vendor/leaflet/leaflet.js" in html
    assert "citymap.js" not in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(url.startswith("/") and not url.startswith("//") for url in assets), assets


def test_the_address_holds_the_view(page, served):
    page.goto(served + "/planner?radius=350&kind=toilet&kind=kiosk&mode=walk&lang=en")
    query = wait_for_query(page, radius=["350"], kind=["kiosk", "toilet"], mode=["walk"])
    assert page.locator("#planner-heading").inner_text() == EN["heading"]
    assert page.input_value("#radius-range") == "350"
    assert_summary_matches_api(page, served, query)
    page.fill("#radius-number", "400")
    page.press("#radius-number", "Enter")
    wait_for_query(page, radius=["400"])
    assert page.url.endswith("/planner?radius=400&kind=kiosk&kind=toilet&mode=walk&lang=en")
    assert page.console_errors == []


def test_page_does_not_depend_on_the_data(base_settings):
    # Built without touching any database: its size is the same for the demo city and a 100k-point city.
    from geoservice.app import create_app

    app = create_app(base_settings.replace(database_url="postgresql://nobody@127.0.0.1:1/nothing", basemap="none"))
    response = app.test_client().get("/planner")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 5_000 < len(html.encode()) < 300_000
    assert "https://" not in html and "http://" not in html.replace("http://www.w3.org/", "")
