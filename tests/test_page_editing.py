"""Editing on the city map (officers and planners) in headless Chromium, against ``geoservice serve``.

A planner drags a kiosk, and the planner page's uncovered streets change: before and after are recomputed
independently (exact circles on the metric street segments, tests/test_coverage.py's reference) from the kiosk's
position in the database, and compared with the API and the page. An officer edits a point of their squad: the
API's reasons appear next to the fields, a stale ETag is told and the form reloaded. Each test puts back what it
changed.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlparse

import numpy as np
import pytest
import shapely
import sqlalchemy as sa

from geoservice.web.i18n import catalogue
from tests.accounts_helpers import add_user
from tests.conftest import recorded_page
from tests.page_helpers import WAIT_MS, call, login, patch_point, point_row, restored_point
from tests.test_coverage import straight_reference
from tests.test_network import StreetGraph, open_points, to_metric

pytestmark = pytest.mark.browser

CITY = catalogue("city")["zh"]
CITY_EN = catalogue("city")["en"]
KIOSK = "城管执法岗亭（前进路）"
QUERY = "radius=500&kind=kiosk&mode=straight"
DRAG_PX = (260, -180)
REL = 2e-5  # the reference's exact circles against PostGIS's buffers: tests/test_coverage.py's tolerance


MARKER_CENTRE = """(id) => { const r = window.geoservice.city.marker(id).getElement().getBoundingClientRect();
  return [r.x + r.width / 2, r.y + r.height / 2]; }"""
MARKER_IN_HAND = """(id) => { const m = window.geoservice.city.marker(id); const e = m && m.getElement();
  if (!e || !m.dragging || !m.dragging.enabled() || m._map._panAnim && m._map._panAnim._inProgress) return false;
  const r = e.getBoundingClientRect();
  const hit = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
  return !!hit && e.contains(hit); }"""


def desktop(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN", bypass_csp=True)
    return context, recorded_page(context)


def open_city_at(page, served: str, lon: float, lat: float, zoom: int = 18) -> None:
    page.goto(f"{served}/#{zoom}/{lat:.6f}/{lon:.6f}")
    page.wait_for_selector("body[data-layers-loaded='true'][data-view='ready']", state="attached", timeout=WAIT_MS)


def open_point_popup(page, point_id: int):
    page.wait_for_function("(id) => !!window.geoservice.city.marker(id)", arg=point_id, timeout=WAIT_MS)
    page.evaluate("(id) => { window.geoservice.city.marker(id).openPopup(); }", point_id)
    popup = page.locator(f".leaflet-popup .point-popup[data-point-id='{point_id}']")
    popup.wait_for(timeout=WAIT_MS)
    return popup


def lonlat_at(page, x: float, y: float) -> list[float]:
    """The map's lon/lat under the page's (x, y)."""
    return page.evaluate("([x, y]) => { const m = window.geoservice.city.map; const ll = m.containerPointToLatLng("
                         "m.mouseEventToContainerPoint({clientX: x, clientY: y})); return [ll.lng, ll.lat]; }", [x, y])


def drag_marker(page, point_id: int, by: tuple[int, int]) -> list[float]:
    """Drag the point's marker (made draggable by 拖动到新位置) by ``by`` pixels with the mouse; where it was let go."""
    # Once the map has settled (the popup panned it), the marker is what is under its own centre.
    page.wait_for_function(MARKER_IN_HAND, arg=point_id, timeout=WAIT_MS)
    icon = page.evaluate(MARKER_CENTRE, point_id)
    target = (icon[0] + by[0], icon[1] + by[1])
    expected = lonlat_at(page, *target)
    page.mouse.move(*icon)
    page.mouse.down()
    page.mouse.move(*target, steps=12)
    page.mouse.up()
    page.wait_for_selector("body[data-moved]", state="attached", timeout=WAIT_MS)
    return expected


def uncovered_km_reference(engine, moved: dict[int, tuple[float, float]] | None = None) -> float:
    """Uncovered street km for open kiosks within 500 m, straight: exact circles on every metric segment."""
    with engine.connect() as conn:
        graph = StreetGraph(conn)
        rows = open_points(conn, ("kiosk",))
    centres = np.array([to_metric(shapely.Point(*(moved or {}).get(pid, (lon, lat)))).coords[0]
                        for pid, lon, lat, _ in rows])
    total, covered = straight_reference(graph, centres, 500.0)
    return (total - covered) / 1000


def shown_uncovered(page) -> float:
    return float(page.locator("#sum-uncovered_km").inner_text())


def open_planner_page(page, served: str) -> None:
    page.goto(f"{served}/planner?{QUERY}")
    page.wait_for_selector("body[data-planner-state='ready'][data-planner-query]", timeout=90_000)


@pytest.fixture()
def kiosk(engine):
    with engine.connect() as c:
        row = c.execute(sa.text("SELECT id, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM point WHERE name = :n"),
                        {"n": KIOSK}).mappings().one()
    with restored_point(engine, row["id"]):
        yield dict(row)


def test_anonymous_map_has_no_editing_tools(page, served):
    page.goto(served + "/")
    page.wait_for_selector("body[data-layers-loaded='true']", state="attached", timeout=WAIT_MS)
    scripts = page.eval_on_selector_all("script[src]", "s => s.map(e => e.getAttribute('src'))")
    assert not [s for s in scripts if "editing" in s or "geoman" in s]
    assert page.evaluate("window.geoservice.editing") is None
    assert page.locator(".leaflet-pm-toolbar").count() == 0


def test_planner_drags_a_kiosk_and_the_planner_page_uncovered_streets_follow(browser, served, engine, kiosk):
    planner, _ = add_user(engine, "planner")
    before_ref = uncovered_km_reference(engine)
    status, before_api, _ = call(served, "GET", f"/api/v1/coverage/streets?{QUERY}")
    assert status == 200
    assert before_api["summary"]["uncovered_km"] == pytest.approx(before_ref, rel=REL)

    planner_context, planner_page = desktop(browser)
    map_context, city = desktop(browser)
    try:
        open_planner_page(planner_page, served)
        shown_before = shown_uncovered(planner_page)
        assert shown_before == pytest.approx(before_api["summary"]["uncovered_km"], abs=0.0005)

        login(city, served, planner.username, next_path="/")
        open_city_at(city, served, kiosk["lon"], kiosk["lat"])
        assert city.locator(".leaflet-pm-toolbar").count() == 1  # Geoman's drawing tools, for a planner
        popup = open_point_popup(city, kiosk["id"])
        popup.get_by_role("button", name=CITY["move_point"]).click()
        city.wait_for_selector(f"body[data-editing='move-{kiosk['id']}']", state="attached", timeout=WAIT_MS)

        expected = drag_marker(city, kiosk["id"], DRAG_PX)
        city.wait_for_selector("#edit-message.saved", timeout=WAIT_MS)

        row = point_row(engine, kiosk["id"])
        assert (row["lon"], row["lat"]) == pytest.approx(tuple(expected), abs=2e-5)  # where it was let go (~2 m)
        moved_m = shapely.distance(to_metric(shapely.Point(kiosk["lon"], kiosk["lat"])),
                                   to_metric(shapely.Point(row["lon"], row["lat"])))
        assert 100 < moved_m < 250

        after_ref = uncovered_km_reference(engine, {kiosk["id"]: (row["lon"], row["lat"])})
        status, after_api, _ = call(served, "GET", f"/api/v1/coverage/streets?{QUERY}")
        assert after_api["summary"]["uncovered_km"] == pytest.approx(after_ref, rel=REL)
        # The change itself: the reference's and the API's agree to the metre (their tiny rounding cancels).
        change_ref = after_ref - before_ref
        change_api = after_api["summary"]["uncovered_km"] - before_api["summary"]["uncovered_km"]
        assert abs(change_ref) > 0.02, f"the move should change the uncovered length ({change_ref:.4f} km)"
        assert change_api == pytest.approx(change_ref, abs=0.0015)

        planner_page.reload()
        planner_page.wait_for_selector("body[data-planner-state='ready'][data-planner-query]", timeout=90_000)
        assert shown_uncovered(planner_page) == pytest.approx(after_api["summary"]["uncovered_km"], abs=0.0005)
        assert shown_uncovered(planner_page) - shown_before == pytest.approx(change_ref, abs=0.0015)

        # The move is in the point's history, as the planner sees it in the popup.
        popup = open_point_popup(city, kiosk["id"])
        popup.get_by_role("button", name=CITY["history"]).click()
        first = popup.locator(".history-list li").first
        first.wait_for(timeout=WAIT_MS)
        assert planner.username in first.inner_text()
        assert CITY["op_update"] in first.inner_text() and CITY["field_geometry"] in first.inner_text()
        assert city.console_errors == [] and planner_page.console_errors == []
        # Geoman and the editing tools come from our own /static: nothing from other hosts.
        assert {urlparse(url).hostname for url in city.requested if not url.startswith("data:")} == {"127.0.0.1"}
    finally:
        planner_context.close()
        map_context.close()


def assert_form_follows_the_language(city) -> None:
    """The language switch relabels the open form in place, and what was typed stays."""
    original = city.input_value("#edit-season")
    city.fill("#edit-season", "06-01/09-30")
    city.locator(".city-panel .lang-switch").click()
    assert city.locator("#edit-heading").inner_text() == CITY_EN["edit_point"]
    assert city.locator("label[for='edit-notice']").inner_text() == CITY_EN["field_notice"]
    assert city.locator("#edit-status option[value='closed']").inner_text() == CITY_EN["status_closed"]
    assert city.input_value("#edit-season") == "06-01/09-30"
    city.locator(".city-panel .lang-switch").click()
    assert city.locator("#edit-heading").inner_text() == CITY["edit_point"]
    city.fill("#edit-season", original)


@pytest.fixture()
def squad_point(engine):
    """A point inside exactly one grid, that grid's squad, and a point in another squad's grid."""
    with engine.connect() as c:
        rows = c.execute(sa.text("""
            SELECT p.id, ST_X(p.geom) AS lon, ST_Y(p.geom) AS lat, min(s.name) AS squad
            FROM point p JOIN grid g ON ST_Covers(g.geom, p.geom) JOIN squad s ON s.id = g.squad_id
            WHERE p.kind = 'vendor_point' GROUP BY p.id HAVING count(*) = 1 ORDER BY p.id""")).mappings().all()
    mine = rows[0]
    other = next(r for r in rows if r["squad"] != mine["squad"])
    with restored_point(engine, mine["id"]):
        yield dict(mine), dict(other)


def test_officer_edits_a_point_with_errors_next_to_fields_and_a_stale_write_told(browser, served, engine,
                                                                                squad_point):
    mine, other = squad_point
    officer, token = add_user(engine, "officer", squad=mine["squad"])
    context, city = desktop(browser)
    try:
        login(city, served, officer.username, next_path="/")
        open_city_at(city, served, mine["lon"], mine["lat"])
        assert city.locator(".leaflet-pm-toolbar").count() == 0  # an officer draws nothing
        popup = open_point_popup(city, mine["id"])
        popup.get_by_role("button", name=CITY["edit"], exact=True).click()
        form = city.locator("#edit-panel form.edit-form")
        form.wait_for(timeout=WAIT_MS)
        fields = form.locator(".field").evaluate_all("fs => fs.map(f => f.dataset.field)")
        assert fields == ["status", "opening_hours", "season", "amenities", "capacity", "occupancy", "notice"]
        assert_form_follows_the_language(city)

        # A wrong opening hours: the API's own reason, next to the field; nothing written.
        bad = "sometimes"
        etag = call(served, "GET", f"/api/v1/points/{mine['id']}")[2]["ETag"]
        status, refused, _ = call(served, "PATCH", f"/api/v1/points/{mine['id']}", token=token,
                                  body={"properties": {"opening_hours": bad}}, etag=etag)
        assert status == 400
        reason = next(e["reason"] for e in refused["errors"] if e["field"].endswith("opening_hours"))
        city.fill("#edit-opening_hours", bad)
        city.get_by_role("button", name=CITY["save"]).click()
        error = city.locator("[data-error-for='opening_hours']")
        error.wait_for(timeout=WAIT_MS)
        assert error.inner_text() == reason
        assert city.get_attribute("#edit-opening_hours", "aria-invalid") == "true"
        assert city.locator("#edit-message").inner_text() == CITY["fix_fields"]
        before = point_row(engine, mine["id"])

        city.fill("#edit-opening_hours", "Mo-Su 06:00-22:00")
        city.fill("#edit-notice", "今天有免费茶水")
        city.get_by_role("button", name=CITY["save"]).click()
        city.wait_for_selector("#edit-message.saved", timeout=WAIT_MS)
        with engine.connect() as c:
            hours, notice = c.execute(sa.text("SELECT opening_hours, notice FROM point WHERE id = :id"),
                                      {"id": mine["id"]}).one()
        assert (hours, notice) == ("Mo-Su 06:00-22:00", "今天有免费茶水")
        assert before["notice"] != notice

        # Someone else changes the notice while the form is open: the save is refused (412), said, and the form
        # shows what is there now; the other's notice stands.
        patch_point(served, token, mine["id"], {"notice": "另一位同事写的通知"})
        city.fill("#edit-notice", "我的旧通知")
        city.get_by_role("button", name=CITY["save"]).click()
        city.wait_for_selector("#edit-message.conflict", timeout=WAIT_MS)
        assert city.locator("#edit-message").inner_text() == CITY["stale_write"]
        assert city.input_value("#edit-notice") == "另一位同事写的通知"
        assert point_row(engine, mine["id"])["notice"] == "另一位同事写的通知"

        assert [e for e in city.console_errors if "400" not in e and "412" not in e] == []
    finally:
        context.close()


def test_officer_gets_no_edit_button_outside_the_squad(browser, served, engine, squad_point):
    mine, other = squad_point
    officer, _ = add_user(engine, "officer", squad=mine["squad"])
    context, city = desktop(browser)
    try:
        login(city, served, officer.username, next_path="/")
        open_city_at(city, served, other["lon"], other["lat"])
        popup = open_point_popup(city, other["id"])
        assert popup.get_by_role("button", name=CITY["edit"], exact=True).count() == 0
        assert popup.locator(".edit-note").inner_text() == CITY["not_in_squad"]
        assert popup.get_by_role("button", name=CITY["move_point"]).count() == 0  # moving is a planner's
        assert city.console_errors == []
    finally:
        context.close()


def test_planner_adds_a_point_with_geoman(browser, served, engine):
    planner, _ = add_user(engine, "planner")
    with engine.connect() as c:
        lon, lat = c.execute(sa.text("SELECT ST_X(geom), ST_Y(geom) FROM point WHERE name = :n"), {"n": KIOSK}).one()
    context, city = desktop(browser)
    name = "新建便民服务点（测试）"
    try:
        login(city, served, planner.username, next_path="/")
        open_city_at(city, served, lon + 0.002, lat)
        city.locator(".leaflet-pm-toolbar .leaflet-pm-icon-marker").click()
        box = city.locator("#map").bounding_box()
        spot = (box["x"] + box["width"] / 2 + 40, box["y"] + box["height"] / 2 + 30)
        expected = lonlat_at(city, *spot)
        city.mouse.click(*spot)
        form = city.locator("#edit-panel form.edit-form")
        form.wait_for(timeout=WAIT_MS)
        assert city.locator("#edit-heading").inner_text() == CITY["new_point"]
        city.fill("#edit-name", name)
        city.select_option("#edit-kind", "rest_station")
        city.check("#edit-amenities input[value='drinking_water']")
        city.get_by_role("button", name=CITY["save"]).click()
        city.wait_for_selector("#edit-message.saved", timeout=WAIT_MS)
        with engine.connect() as c:
            row = c.execute(sa.text("SELECT id, kind, amenities, status, ST_X(geom), ST_Y(geom) FROM point "
                                    "WHERE name = :n"), {"n": name}).one()
        assert (row[1], list(row[2]), row[3]) == ("rest_station", ["drinking_water"], "open")
        assert (row[4], row[5]) == pytest.approx(tuple(expected), abs=2e-5)
        assert city.locator("#edit-heading").inner_text() == CITY["edit_point"]  # the new point, now editable
    finally:
        context.close()
        with engine.begin() as c:
            c.execute(sa.text("DELETE FROM point WHERE name = :n"), {"n": name})


GRID_POPUP_JS = """(code) => { let hit = null;
  window.geoservice.city.groups.grids.eachLayer(g => g.eachLayer && g.eachLayer(l => {
    if (l.feature && l.feature.properties.code === code) hit = l; }));
  if (hit) { window.geoservice.city.map.closePopup(); hit.fire("click", {latlng: hit.getBounds().getCenter()}, true); }
  return !!hit; }"""


@pytest.fixture()
def grid(engine):
    """A grid of the demo city (its code, centre and outline), put back as it was after the test."""
    with engine.connect() as c:
        code, lon, lat, wkb = c.execute(sa.text(
            "SELECT code, ST_X(ST_Centroid(geom)), ST_Y(ST_Centroid(geom)), ST_AsBinary(geom) FROM grid "
            "ORDER BY code LIMIT 1 OFFSET 5")).one()
        before = c.execute(sa.text("SELECT name, officer_name, officer_phone, squad_id, geom FROM grid "
                                   "WHERE code = :c"), {"c": code}).mappings().one()
    yield {"code": code, "lon": lon, "lat": lat, "shape": shapely.from_wkb(bytes(wkb))}
    with engine.begin() as c:
        c.execute(sa.text("UPDATE grid SET name = :name, officer_name = :officer_name, officer_phone = "
                          ":officer_phone, squad_id = :squad_id, geom = :geom WHERE code = :code"),
                  {**before, "code": code})


def test_planner_reshapes_a_grid_and_renames_it(browser, served, engine, grid):
    planner, _ = add_user(engine, "planner")
    context, city = desktop(browser)
    try:
        login(city, served, planner.username, next_path="/")
        open_city_at(city, served, grid["lon"], grid["lat"], zoom=16)
        city.wait_for_function(GRID_POPUP_JS, arg=grid["code"], timeout=WAIT_MS)
        popup = city.locator(f".leaflet-popup .grid-popup[data-grid-code='{grid['code']}']")
        popup.wait_for(timeout=WAIT_MS)
        popup.get_by_role("button", name=CITY["edit"], exact=True).click()
        city.wait_for_selector("#edit-panel #edit-name", timeout=WAIT_MS)
        assert city.locator("#edit-code").count() == 0  # a grid's code is its key: not edited
        city.get_by_role("button", name=CITY["reshape_grid"]).click()
        vertices = city.locator(".leaflet-marker-icon.marker-icon:not(.marker-icon-middle)")
        vertices.first.wait_for(timeout=WAIT_MS)
        ring = list(grid["shape"].exterior.coords)[:-1]
        assert vertices.count() == len(ring)

        # Drag the vertex nearest the grid's top-left corner 30 px further out, and rename the grid.
        boxes = [vertices.nth(i).bounding_box() for i in range(vertices.count())]
        corner = min(boxes, key=lambda b: b["x"] + b["y"])
        start = (corner["x"] + corner["width"] / 2, corner["y"] + corner["height"] / 2)
        target = (start[0] - 30, start[1] - 30)
        expected = lonlat_at(city, *target)
        city.mouse.move(*start)
        city.mouse.down()
        city.mouse.move(*target, steps=8)
        city.mouse.up()
        city.fill("#edit-name", "改过边界的网格")
        city.get_by_role("button", name=CITY["save"]).click()
        city.wait_for_selector("body[data-grid-saved]", state="attached", timeout=WAIT_MS)

        with engine.connect() as c:
            name, wkb = c.execute(sa.text("SELECT name, ST_AsBinary(geom) FROM grid WHERE code = :c"),
                                  {"c": grid["code"]}).one()
        after = list(shapely.from_wkb(bytes(wkb)).exterior.coords)[:-1]
        assert name == "改过边界的网格"
        assert len(after) == len(ring)
        # The ring may start elsewhere or turn the other way once stored: compare the corners as a set.
        def kept(xy, corners):
            return any(xy == pytest.approx(c, abs=1e-7) for c in corners)
        new_corners = [xy for xy in after if not kept(xy, ring)]
        lost_corners = [xy for xy in ring if not kept(xy, after)]
        assert len(new_corners) == len(lost_corners) == 1, (new_corners, lost_corners)
        assert new_corners[0] == pytest.approx(tuple(expected), abs=2e-5)
        assert city.console_errors == []
    finally:
        context.close()


def test_planner_draws_a_new_grid_with_geoman(browser, served, engine, grid):
    planner, _ = add_user(engine, "planner")
    with engine.connect() as c:
        community, squad = c.execute(sa.text(
            "SELECT g.community_code, s.name FROM grid g JOIN squad s ON s.id = g.squad_id WHERE g.code = :c"),
            {"c": grid["code"]}).one()
        taken = set(c.execute(sa.text("SELECT code FROM grid WHERE community_code = :p"), {"p": community}).scalars())
    code = next(f"{community}{n:03d}" for n in range(999, 0, -1) if f"{community}{n:03d}" not in taken)
    context, city = desktop(browser)
    try:
        login(city, served, planner.username, next_path="/")
        open_city_at(city, served, grid["lon"], grid["lat"], zoom=17)
        city.locator(".leaflet-pm-toolbar .leaflet-pm-icon-polygon").click()
        box = city.locator("#map").bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        corners = [(cx - 60, cy - 60), (cx + 60, cy - 60), (cx + 60, cy + 60), (cx - 60, cy + 60)]
        expected = [lonlat_at(city, *xy) for xy in corners]
        for xy in [*corners, corners[0]]:
            city.mouse.click(*xy)
        city.wait_for_selector("#edit-panel #edit-code", timeout=WAIT_MS)
        assert city.locator("#edit-heading").inner_text() == CITY["new_grid"]
        city.fill("#edit-code", code)
        city.fill("#edit-name", "新画的网格")
        city.fill("#edit-squad", squad)
        city.get_by_role("button", name=CITY["save"]).click()
        city.wait_for_selector("body[data-grid-saved]", state="attached", timeout=WAIT_MS)
        with engine.connect() as c:
            name, wkb = c.execute(sa.text("SELECT name, ST_AsBinary(geom) FROM grid WHERE code = :c"),
                                  {"c": code}).one()
        assert name == "新画的网格"
        drawn = shapely.from_wkb(bytes(wkb))
        assert drawn.normalize().equals_exact(shapely.Polygon(expected).normalize(), tolerance=2e-5)
    finally:
        context.close()
        with engine.begin() as c:
            c.execute(sa.text("DELETE FROM grid WHERE code = :c"), {"c": code})


@pytest.mark.parametrize(("role", "fields"), [
    (None, None),
    ("kiosk_staff", None),
    ("admin", None),
    ("officer", ["status", "opening_hours", "season", "amenities", "capacity", "occupancy", "notice"]),
    ("planner", ["name", "kind", "amenities", "address", "phone", "opening_hours", "season", "capacity",
                 "occupancy", "status", "notice"]),
])
def test_the_editing_tools_are_served_to_officers_and_planners_only(client, engine, role, fields):
    headers = {}
    if role:
        _, token = add_user(engine, role)
        headers["Authorization"] = f"Bearer {token}"
    html = client.get("/", headers=headers).get_data(as_text=True)
    config = json.loads(re.search(r'<script id="page-config" type="application/json">(.*?)</script>', html,
                                  flags=re.S).group(1))
    editor = config["editor"]
    assert ("js/editing.js" in html) is (fields is not None)
    assert ("vendor/geoman/leaflet-geoman.min.js" in html) is (fields is not None)
    if fields is None:
        assert editor is None
        return
    assert editor["point_fields"] == fields
    assert editor["planner"] is (role == "planner")
    assert editor["grid_fields"] == (["code", "name", "squad", "officer_name", "officer_phone"]
                                     if role == "planner" else [])
    # Geoman is loaded before citymap.js makes the map (it hooks into maps as they are made).
    assert html.index("leaflet-geoman.min.js") < html.index("js/citymap.js") < html.index("js/editing.js")
