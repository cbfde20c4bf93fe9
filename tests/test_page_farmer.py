"""The farmer finder (/farmer) on a 360×740 phone in a real headless Chromium, against ``geoservice serve``.

Every answer the page shows is checked against the API asked by the test itself for the same spot and filters,
and the numbers and coordinates in the call and navigation links against the database read independently
(shapely for which grid covers a point, ``geoservice.crs`` for GCJ-02, whose own tests use published pairs).
"""

from __future__ import annotations

import json
import math
import re
import urllib.request
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
import sqlalchemy as sa
from pyproj import Geod
from shapely import wkb
from shapely.geometry import Point, box

from geoservice.crs import wgs84_to_gcj02
from geoservice.web.i18n import catalogue
from tests.conftest import SCREENSHOTS, recorded_page

pytestmark = pytest.mark.browser

PHONE = {"width": 360, "height": 740}
# The kiosk on 前进路 has no toilet, car park or other kiosk within 900 m: whatever the season or hour, the
# nearest open point to a spot beside it has a phone (a kiosk, vendor or melon point).
KIOSK = "城管执法岗亭（前进路）"
SPOT_EAST_OF_KIOSK_DEG = 0.0006
WAIT_MS = 60_000
MESSAGES = catalogue("farmer")


def _phone_context(browser, *, geolocation: dict | None, viewport: dict = PHONE):
    options = {"viewport": viewport, "locale": "zh-CN", "is_mobile": True, "has_touch": True, "bypass_csp": True}
    if geolocation is not None:
        options.update(geolocation=geolocation, permissions=["geolocation"])
    context = browser.new_context(**options)
    return context, recorded_page(context)


@pytest.fixture(scope="module")
def spot(engine) -> tuple[float, float]:
    """A spot about 55 m east of the 前进路 kiosk (lon, lat), 6 decimals as the page sends it."""
    with engine.connect() as c:
        lon, lat = c.execute(sa.text("SELECT ST_X(geom), ST_Y(geom) FROM point WHERE name = :n"), {"n": KIOSK}).one()
    return round(lon + SPOT_EAST_OF_KIOSK_DEG, 6), round(lat, 6)


@pytest.fixture()
def phone(browser, spot):
    """A phone (360×740, zh-CN) whose geolocation is granted and reports ``spot``."""
    context, page = _phone_context(browser, geolocation={"longitude": spot[0], "latitude": spot[1]})
    yield page
    context.close()


@pytest.fixture()
def phone_denied(browser):
    """A phone (360×740, zh-CN) that has not granted geolocation."""
    context, page = _phone_context(browser, geolocation=None)
    yield page
    context.close()


def api(served: str, path: str, params: dict | list) -> dict:
    """What the API answers, asked by the test itself."""
    with urllib.request.urlopen(f"{served}{path}?{urlencode(params, doseq=True)}", timeout=60) as response:
        return json.load(response)


def nearest(served: str, lon: float, lat: float, **filters) -> list[dict]:
    params = {"lon": f"{lon:.6f}", "lat": f"{lat:.6f}", "k": 3, "mode": "walk", "rest": "true", **filters}
    return api(served, "/api/v1/nearest", params)["features"]


def _digits(phone: str) -> str:
    return re.sub(r"[^0-9+]", "", phone)


def expected_walk_text(props: dict, lang: str = "zh") -> str:
    """The walking line as a farmer should read it, from the API's numbers: whole metres or km to 0.1, minutes."""
    metres = props["walk_distance_m"]
    if metres < 1000:
        distance = MESSAGES[lang]["metres"].format(n=math.floor(metres + 0.5))
    else:
        distance = MESSAGES[lang]["kilometres"].format(n=f"{metres / 1000:.1f}")
    minutes = max(1, math.floor(props["walk_minutes"] + 0.5))
    return MESSAGES[lang]["walk"].format(distance=distance, minutes=minutes)


def squad_phone_at(conn, lon: float, lat: float) -> str:
    """The squad phone of the grid covering (lon, lat), lowest grid code first — found with shapely."""
    rows = conn.execute(sa.text(
        "SELECT g.code, ST_AsBinary(g.geom) AS geom, s.phone FROM grid g JOIN squad s ON s.id = g.squad_id "
        "ORDER BY g.code")).all()
    here = Point(lon, lat)
    covering = [phone for code, geom, phone in rows if wkb.loads(bytes(geom)).covers(here)]
    assert covering, f"no grid covers {lon},{lat}"
    return covering[0]


def results_on_page(page) -> list[dict]:
    return page.eval_on_selector_all("#results > li", """cards => cards.map(c => ({
        id: Number(c.dataset.id), walk: c.querySelector('.walk').textContent,
        callPoint: c.querySelector('a.call-point')?.getAttribute('href') ?? null,
        callSquad: c.querySelector('a.call-squad')?.getAttribute('href') ?? null,
        amap: c.querySelector('a.nav-amap').getAttribute('href'),
        baidu: c.querySelector('a.nav-baidu').getAttribute('href')}))""")


def wait_for_results(page) -> None:
    page.wait_for_selector("body[data-results]", timeout=WAIT_MS)


def only_local_requests(page) -> set:
    return {urlparse(url).hostname for url in page.requested if not url.startswith("data:")}


def test_geolocated_phone_gets_the_api_answer_with_route_calls_and_navigation(phone, served, spot, conn):
    lon, lat = spot
    assert api(served, "/api/v1/grids/at", {"lon": lon, "lat": lat})["properties"]["code"]  # a 404 would log
    phone.goto(served + "/farmer")
    phone.wait_for_selector("body[data-ready='true']", timeout=WAIT_MS)
    phone.get_by_role("button", name="找最近的休息点").click()
    wait_for_results(phone)
    phone.wait_for_selector("#spot-grid a.spot-squad", timeout=WAIT_MS)

    expected = nearest(served, lon, lat, open_now="true")  # "现在开放" is pressed when the page opens
    assert expected, "the API finds nothing near the demo spot"
    shown = results_on_page(phone)
    assert [c["id"] for c in shown] == [f["id"] for f in expected]
    for card, feature in zip(shown, expected, strict=True):
        assert card["walk"] == expected_walk_text(feature["properties"])

    first, props = shown[0], expected[0]["properties"]
    point_lon, point_lat, point_phone = conn.execute(sa.text(
        "SELECT ST_X(geom), ST_Y(geom), phone FROM point WHERE id = :id"), {"id": first["id"]}).one()
    assert point_phone, "the nearest point to the demo spot should have a phone"
    assert first["callPoint"] == "tel:" + _digits(point_phone)
    assert first["callSquad"] == "tel:" + _digits(squad_phone_at(conn, point_lon, point_lat))
    spot_squad = phone.get_attribute("#spot-grid a.spot-squad", "href")
    assert spot_squad == "tel:" + _digits(squad_phone_at(conn, lon, lat))

    # Amap wants GCJ-02: the destination is the point converted, the origin the spot converted.
    amap = parse_qs(urlparse(first["amap"]).query)
    to_lon, to_lat, to_name = amap["to"][0].split(",", 2)
    g_lon, g_lat = wgs84_to_gcj02(point_lon, point_lat)
    assert abs(float(to_lon) - g_lon) < 2e-6 and abs(float(to_lat) - g_lat) < 2e-6
    assert abs(float(to_lon) - point_lon) > 1e-3  # really shifted: GCJ-02 is hundreds of metres off here
    assert amap["coordinate"] == ["gaode"] and amap["mode"] == ["walk"]
    from_lon, from_lat, _ = amap["from"][0].split(",", 2)
    s_lon, s_lat = wgs84_to_gcj02(lon, lat)
    assert abs(float(from_lon) - s_lon) < 2e-6 and abs(float(from_lat) - s_lat) < 2e-6
    assert urlparse(first["amap"]).hostname.endswith("amap.com")
    # Baidu is told the coordinates are WGS 84, so they stay unconverted.
    baidu = parse_qs(urlparse(first["baidu"]).query)
    assert baidu["coord_type"] == ["wgs84"]
    b_lat, b_lon = baidu["destination"][0].split("|")[0].removeprefix("latlng:").split(",")
    assert abs(float(b_lat) - point_lat) < 2e-6 and abs(float(b_lon) - point_lon) < 2e-6
    assert to_name == baidu["destination"][0].split("|name:")[1] == props["name"]

    # The walking route of the selected (first) result is drawn: the API's route, joined to spot and point.
    assert phone.locator("path.farmer-route").count() == 1
    assert phone.get_attribute("path.farmer-route", "d") not in (None, "", "M0 0")
    drawn = phone.evaluate("geoserviceFarmer.state.layers.route.getLayers()[1].getLatLngs()"
                           ".map(p => [p.lng, p.lat])")
    route = props["route"]["coordinates"]
    assert len(route) >= 2
    assert drawn[0] == pytest.approx([lon, lat]) and drawn[-1] == pytest.approx([point_lon, point_lat])
    assert len(drawn) == len(route) + 2
    assert [c for xy in drawn[1:-1] for c in xy] == pytest.approx([c for xy in route for c in xy])

    assert phone.locator(".far-from-street").count() == 0  # the spot is beside a street
    assert phone.console_errors == []
    assert only_local_requests(phone) == {"127.0.0.1"}
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert re.fullmatch(r"\d+ k?m", phone.locator(".leaflet-control-scale-line").inner_text())  # metric only
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    phone.screenshot(path=str(SCREENSHOTS / "farmer.png"))


def test_a_quick_filter_changes_the_results_as_the_api_says(phone, served, spot, conn):
    lon, lat = spot
    phone.goto(served + "/farmer")
    phone.wait_for_selector("body[data-ready='true']", timeout=WAIT_MS)
    phone.locator("#find").click()
    wait_for_results(phone)
    assert [c["id"] for c in results_on_page(phone)] == [f["id"] for f in nearest(served, lon, lat, open_now="true")]
    overnight = nearest(served, lon, lat, open_now="true", vacancy="true", amenity="overnight")
    assert overnight
    chip = phone.get_by_role("button", name="可过夜/有空位")
    chip.click()
    assert chip.get_attribute("aria-pressed") == "true"
    phone.wait_for_function("geoserviceFarmer.state.query.includes('vacancy')", timeout=WAIT_MS)
    wait_for_results(phone)
    assert [c["id"] for c in results_on_page(phone)] == [f["id"] for f in overnight]
    # Free places shown are the database's capacity minus occupancy, and every result really has room.
    for card in phone.locator("#results > li").all():
        capacity, occupancy = conn.execute(sa.text("SELECT capacity, coalesce(occupancy, 0) FROM point WHERE id = :id"),
                                           {"id": int(card.get_attribute("data-id"))}).one()
        assert capacity > occupancy
        assert card.locator(".free").inner_text() == MESSAGES["zh"]["free_places"].format(
            free=capacity - occupancy, capacity=capacity)

    phone.get_by_role("button", name="饮用水").click()  # both filters: overnight with room and drinking water
    both = nearest(served, lon, lat, open_now="true", vacancy="true", amenity=["overnight", "drinking_water"])
    phone.wait_for_function("geoserviceFarmer.state.query.includes('drinking_water')", timeout=WAIT_MS)
    wait_for_results(phone)
    assert [c["id"] for c in results_on_page(phone)] == [f["id"] for f in both]

    # Every filter off but "厕所": it widens the rest points to any place with a toilet, whatever the hour.
    for name in ("可过夜/有空位", "饮用水", "现在开放"):
        phone.get_by_role("button", name=name).click()
    phone.wait_for_function("!geoserviceFarmer.state.query.includes('open_now')", timeout=WAIT_MS)
    wait_for_results(phone)
    rest = [f["id"] for f in nearest(served, lon, lat)]
    assert [c["id"] for c in results_on_page(phone)] == rest
    phone.get_by_role("button", name="厕所").click()
    phone.wait_for_function("geoserviceFarmer.state.query.includes('rest=false')", timeout=WAIT_MS)
    wait_for_results(phone)
    toilets = nearest(served, lon, lat, rest="false", amenity="toilet")
    assert [c["id"] for c in results_on_page(phone)] == [f["id"] for f in toilets] != rest
    assert phone.console_errors == []


def test_the_town_centre_gets_rest_points_and_the_toilet_filter_widens_to_toilets(browser, served):
    centre = {"longitude": 113.826, "latitude": 34.026}
    context, phone = _phone_context(browser, geolocation=centre)
    try:
        anything = nearest(served, centre["longitude"], centre["latitude"], rest="false")
        assert anything[0]["properties"]["kind"] in {"job_board", "toilet"}  # what a search for anything gives
        phone.goto(served + "/farmer")
        phone.wait_for_selector("body[data-ready='true']", timeout=WAIT_MS)
        phone.get_by_role("button", name="现在开放").click()  # whatever the hour of the test
        phone.locator("#find").click()
        wait_for_results(phone)
        rest = nearest(served, centre["longitude"], centre["latitude"])
        assert [c["id"] for c in results_on_page(phone)] == [f["id"] for f in rest]
        rest_kinds = {"kiosk", "rest_station", "vendor_point", "melon_point"}
        rest_amenities = {"drinking_water", "hot_water", "seating", "shade", "overnight", "tent"}
        for feature in rest:
            props = feature["properties"]
            assert props["kind"] in rest_kinds and rest_amenities & set(props["amenities"]), props["name"]

        phone.get_by_role("button", name="厕所").click()
        phone.wait_for_function("geoserviceFarmer.state.query.includes('rest=false')", timeout=WAIT_MS)
        wait_for_results(phone)
        toilets = nearest(served, centre["longitude"], centre["latitude"], rest="false", amenity="toilet")
        assert [c["id"] for c in results_on_page(phone)] == [f["id"] for f in toilets]
        assert any(f["properties"]["kind"] == "toilet" for f in toilets)  # wider than the rest points
        assert phone.console_errors == []
    finally:
        context.close()


def test_with_geolocation_denied_tapping_the_map_sets_the_spot(phone_denied, served):
    page = phone_denied
    page.goto(served + "/farmer")
    page.wait_for_selector("body[data-ready='true']", timeout=WAIT_MS)
    page.locator("#find").click()
    page.wait_for_selector("body[data-geolocation='failed']", timeout=WAIT_MS)
    assert page.locator("#status").inner_text() == MESSAGES["zh"]["geo_failed"]
    assert page.locator("#use-centre").is_visible()

    # Centre the map on a known place and tap the middle of the map: that place becomes the spot.
    centre_lon, centre_lat = 113.8305, 34.0240
    page.evaluate(f"void geoserviceFarmer.state.map.setView([{centre_lat}, {centre_lon}], 16, {{animate: false}})")
    box_ = page.locator("#map").bounding_box()
    page.mouse.click(box_["x"] + box_["width"] / 2, box_["y"] + box_["height"] / 2)
    wait_for_results(page)
    spot = page.evaluate("geoserviceFarmer.state.spot")
    # One screen pixel at zoom 16 is about 2.4 m (2e-5°); allow a pixel of rounding either way.
    assert abs(spot["lon"] - centre_lon) < 3e-5 and abs(spot["lat"] - centre_lat) < 3e-5
    expected = nearest(served, spot["lon"], spot["lat"], open_now="true")
    assert expected
    assert [c["id"] for c in results_on_page(page)] == [f["id"] for f in expected]
    assert page.locator("path.farmer-route").count() == 1
    assert page.console_errors == []
    assert only_local_requests(page) == {"127.0.0.1"}


def test_a_spot_off_the_streets_and_outside_every_grid_is_told_so(phone_denied, served, conn):
    page = phone_denied
    # West of the district: no grid, and more than a kilometre from the nearest street.
    lon, lat = 113.76, 34.03
    covering = conn.execute(sa.text("SELECT ST_AsBinary(geom) FROM grid")).scalars().all()
    assert not any(wkb.loads(bytes(g)).covers(Point(lon, lat)) for g in covering)
    page.goto(served + "/farmer")
    page.wait_for_selector("body[data-ready='true']", timeout=WAIT_MS)
    page.evaluate(f"void geoserviceFarmer.state.map.setView([{lat}, {lon}], 16, {{animate: false}})")
    box_ = page.locator("#map").bounding_box()
    page.mouse.click(box_["x"] + box_["width"] / 2, box_["y"] + box_["height"] / 2)
    wait_for_results(page)
    page.wait_for_selector("#spot-grid:not([hidden])", timeout=WAIT_MS)
    assert page.locator("#spot-grid").inner_text() == MESSAGES["zh"]["no_grid"]
    spot = page.evaluate("geoserviceFarmer.state.spot")
    expected = nearest(served, spot["lon"], spot["lat"], open_now="true")
    assert [c["id"] for c in results_on_page(page)] == [f["id"] for f in expected]
    # The route leaves the spot straight for the nearest street (its second vertex); that gap is said, measured on
    # the WGS 84 ellipsoid here (the page uses a sphere: agree within 1 %), and it is part of the walk.
    start_lon, start_lat = expected[0]["properties"]["route"]["coordinates"][1]
    gap_km = Geod(ellps="WGS84").inv(spot["lon"], spot["lat"], start_lon, start_lat)[2] / 1000
    assert gap_km > 1
    assert expected[0]["properties"]["walk_distance_m"] / 1000 >= gap_km
    note = page.locator("#results > li").first.locator(".far-from-street").inner_text()
    shown_km = float(re.search(r"([0-9.]+) 公里", note).group(1))
    assert abs(shown_km - gap_km) <= 0.01 * gap_km + 0.05  # one decimal shown
    # The one console error is Chromium logging the 404 that means "in no grid".
    assert len(page.console_errors) == 1 and "404" in page.console_errors[0]


def test_english_switch_changes_the_text_and_back(phone, served):
    phone.goto(served + "/farmer")
    phone.wait_for_selector("body[data-ready='true']", timeout=WAIT_MS)
    phone.locator("#find").click()
    wait_for_results(phone)
    zh_walk = phone.locator("#results .walk").first.inner_text()
    phone.get_by_role("button", name="Switch to English").click()
    en = MESSAGES["en"]
    assert phone.locator("h1").inner_text() == en["heading"]
    assert phone.locator("#find").inner_text() == en["find_button"]
    assert phone.evaluate("document.documentElement.lang") == "en"
    assert phone.locator("[data-filter='overnight']").inner_text().endswith(en["filter_overnight"])
    assert phone.locator("#status").inner_text() == en["found"].format(n=phone.locator("#results > li").count())
    en_walk = phone.locator("#results .walk").first.inner_text()
    assert en_walk != zh_walk and "on foot" in en_walk
    assert phone.locator("#results a.nav-amap").first.inner_text() == en["navigate_amap"]
    assert "lang=en" in phone.url
    phone.get_by_role("button", name="切换到中文").click()
    assert phone.locator("#find").inner_text() == MESSAGES["zh"]["find_button"]
    assert phone.locator("#results .walk").first.inner_text() == zh_walk
    assert phone.console_errors == []


def test_keyboard_reaches_every_control_and_everything_is_labelled(phone, served):
    phone.goto(served + "/farmer")
    phone.wait_for_selector("body[data-ready='true']", timeout=WAIT_MS)
    reached = []
    for _ in range(12):
        phone.keyboard.press("Tab")
        reached.append(phone.evaluate("(e => e.classList.contains('leaflet-container') ? 'map' : "
                                      "e.dataset.filter || e.id || e.className)(document.activeElement)"))
    assert reached[:7] == ["lang-switch", "find", "overnight", "drinking_water", "phone_charging", "toilet",
                           "open_now"]
    # Then the map itself, which takes focus (arrow keys pan, +/- zoom), and its zoom buttons.
    assert reached[7:10] == ["map", "leaflet-control-zoom-in", "leaflet-control-zoom-out"]
    phone.locator("#find").focus()
    phone.keyboard.press("Enter")
    wait_for_results(phone)
    # The results' buttons come next in tab order after the map; Enter on the second "看路线" selects it.
    for _ in range(30):
        phone.keyboard.press("Tab")
        if phone.evaluate("document.activeElement.closest('#results') !== null"):
            break
    assert phone.evaluate("document.activeElement.className").endswith("show-route")
    for _ in range(10):
        phone.keyboard.press("Tab")
        if phone.evaluate("document.activeElement.matches('#results > li:nth-child(2) .show-route')"):
            break
    phone.keyboard.press("Enter")
    assert phone.locator("#results > li:nth-child(2)").get_attribute("class") == "result selected"
    assert phone.evaluate("document.activeElement.matches('#results > li:nth-child(2) .show-route')")
    assert phone.evaluate("geoserviceFarmer.state.selected") == 1
    unnamed = phone.evaluate("""[...document.querySelectorAll('button, a[href]')]
        .filter(e => !(e.getAttribute('aria-label') || e.textContent).trim()).map(e => e.outerHTML)""")
    assert unnamed == []
    assert phone.console_errors == []


@pytest.mark.parametrize("viewport", [PHONE, {"width": 180, "height": 370}], ids=["phone", "phone-at-200%"])
def test_no_horizontal_scrolling_even_at_200_percent_zoom(browser, served, spot, viewport):
    # At 200 % zoom a 360-px-wide phone lays the page out in 180 CSS pixels.
    context, page = _phone_context(browser, geolocation={"longitude": spot[0], "latitude": spot[1]},
                                   viewport=viewport)
    try:
        page.goto(served + "/farmer")
        page.wait_for_selector("body[data-ready='true']", timeout=WAIT_MS)
        page.locator("#find").click()
        wait_for_results(page)
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        widest = page.evaluate("Math.max(...[...document.querySelectorAll('button, a, h1, h3, p')]"
                               ".map(e => e.getBoundingClientRect().right))")
        assert widest <= viewport["width"]
        assert page.console_errors == []
    finally:
        context.close()


def test_offline_basemap_is_our_streets_for_the_view(phone, served, conn):
    phone.goto(served + "/farmer")
    phone.wait_for_selector("body[data-streets-loaded]", timeout=WAIT_MS)
    asked = [u for u in phone.requested if "/api/v1/layers/streets" in u]
    assert len(asked) == 1
    minx, miny, maxx, maxy = map(float, parse_qs(urlparse(asked[0]).query)["bbox"][0].split(","))
    view = phone.evaluate("(() => { const b = geoserviceFarmer.state.map.getBounds();"
                          " return [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]; })()")
    assert minx <= view[0] and miny <= view[1] and maxx >= view[2] and maxy >= view[3]  # covers the view
    # Streets whose extent meets the bbox, counted with shapely from the table.
    wanted = box(minx, miny, maxx, maxy)
    count = sum(1 for (geom,) in conn.execute(sa.text("SELECT ST_AsBinary(geom) FROM street"))
                if box(*wkb.loads(bytes(geom)).bounds).intersects(wanted))
    assert count > 50
    assert int(phone.get_attribute("body", "data-streets-loaded")) == count
    assert phone.locator(".leaflet-farmer-streets-pane canvas").count() == 1
    assert phone.console_errors == []


def test_page_is_small_and_carries_no_data(client, conn):
    response = client.get("/farmer")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert len(response.data) < 300_000
    assert 'lang="zh-CN"' in html and "user-scalable=no" not in html
    some_point = conn.execute(sa.text("SELECT name FROM point WHERE kind = 'kiosk' ORDER BY id LIMIT 1")).scalar_one()
    some_street = conn.execute(sa.text("SELECT name FROM street ORDER BY id LIMIT 1")).scalar_one()
    assert some_point not in html and some_street not in html
    for key in set(re.findall(r'data-i18n(?:-aria)?="([a-z_]+)"', html)):
        assert MESSAGES["zh"][key] and MESSAGES["en"][key], key
    assert "cdn" not in html.lower() and "https://" not in html
