"""The staff page (/staff) and live occupancy on the farmer page and the city map, in headless Chromium against
``geoservice serve``.

A member of kiosk staff logs in on a 360×740 phone and taps; the farmer page open in another browser context shows
the new free places without a reload. Expected values come from the database, read by the test as the owner — never
from the pages' own bookkeeping. Each test puts the points it changed back as they were.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlparse

import pytest
import sqlalchemy as sa

from geoservice.web.i18n import catalogue
from tests.accounts_helpers import add_user
from tests.conftest import SCREENSHOTS, recorded_page
from tests.page_helpers import PHONE, WAIT_MS, call, login, no_horizontal_scroll, point_row, restored_point

pytestmark = pytest.mark.browser

KIOSK = "城管执法岗亭（前进路）"
SPOT_EAST_OF_KIOSK_DEG = 0.0006
STAFF = catalogue("staff")
FARMER = catalogue("farmer")
CITY = catalogue("city")


@pytest.fixture(scope="module")
def kiosk(engine) -> dict:
    """The 前进路 kiosk (open, with overnight places) and a spot 55 m east of it."""
    with engine.connect() as c:
        row = c.execute(sa.text("SELECT id, capacity, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM point "
                                "WHERE name = :n"), {"n": KIOSK}).mappings().one()
    assert row["capacity"] and row["capacity"] >= 3
    return {**row, "spot": (round(row["lon"] + SPOT_EAST_OF_KIOSK_DEG, 6), round(row["lat"], 6))}


@pytest.fixture()
def kiosk_restored(engine, kiosk):
    """The kiosk half full and open during the test, and as it was afterwards."""
    with restored_point(engine, kiosk["id"]):
        with engine.begin() as c:
            c.execute(sa.text("UPDATE point SET occupancy = :o, status = 'open', notice = NULL WHERE id = :id"),
                      {"o": kiosk["capacity"] // 2, "id": kiosk["id"]})
        yield kiosk


def phone_context(browser, **options):
    context = browser.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True, has_touch=True, bypass_csp=True,
                                  **options)
    return context, recorded_page(context)


def staff_card(page, point_id: int):
    return page.locator(f"#kiosks li.kiosk[data-point-id='{point_id}']")


def wait_free(page, selector: str, free: int) -> None:
    page.wait_for_selector(f"{selector}[data-free='{free}']", timeout=WAIT_MS)


def test_the_staff_page_wants_a_login(client):
    response = client.get("/staff")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/staff"


def test_staff_tap_shows_one_place_fewer_on_the_farmer_page_without_reload(browser, served, engine, kiosk_restored):
    kiosk = kiosk_restored
    staff, _ = add_user(engine, "kiosk_staff", points=[kiosk["id"]])
    occupancy = point_row(engine, kiosk["id"])["occupancy"]
    free_before = kiosk["capacity"] - occupancy

    # The farmer, on their own phone, finds the kiosk beside them.
    lon, lat = kiosk["spot"]
    farmer_context, farmer = phone_context(browser, geolocation={"longitude": lon, "latitude": lat},
                                           permissions=["geolocation"])
    staff_context, phone = phone_context(browser)
    try:
        farmer.goto(served + "/farmer")
        farmer.wait_for_selector("body[data-ready='true']", timeout=WAIT_MS)
        farmer.get_by_role("button", name=FARMER["zh"]["find_button"]).click()
        card = f"#results > li[data-id='{kiosk['id']}']"
        wait_free(farmer, card, free_before)
        assert farmer.locator(f"{card} .free").inner_text() == FARMER["zh"]["free_places"].format(
            free=free_before, capacity=kiosk["capacity"])
        farmer.wait_for_selector(f"{card} .live-age", timeout=WAIT_MS)
        farmer.evaluate("window.__sameDocument = true")

        # The staff member is sent to the login page first, and back to /staff after it.
        phone.goto(served + "/staff")
        assert phone.url == served + "/login?next=/staff"
        login(phone, served, staff.username, next_path="/staff")
        phone.wait_for_selector("body[data-ready='true']", timeout=WAIT_MS)
        mine = staff_card(phone, kiosk["id"])
        assert phone.locator("#kiosks li.kiosk").count() == 1
        assert mine.locator("h2").inner_text() == KIOSK
        assert mine.locator(".free-number").inner_text() == str(free_before)
        assert no_horizontal_scroll(phone)

        phone.get_by_role("button", name=STAFF["zh"]["plus_one_aria"]).click()
        wait_free(phone, f"#kiosks li.kiosk[data-point-id='{kiosk['id']}']", free_before - 1)
        assert mine.locator(".free-number").inner_text() == str(free_before - 1)
        assert point_row(engine, kiosk["id"])["occupancy"] == occupancy + 1

        # The farmer's page follows within a few seconds, in the same document (no reload).
        wait_free(farmer, card, free_before - 1)
        assert farmer.locator(f"{card} .free").inner_text() == FARMER["zh"]["free_places"].format(
            free=free_before - 1, capacity=kiosk["capacity"])
        assert farmer.evaluate("window.__sameDocument") is True
        assert farmer.locator(f"{card} .live-age").inner_text() == CITY["zh"]["updated_just_now"]
        assert farmer.console_errors == [] and phone.console_errors == []
        for page in (farmer, phone):  # nothing from other hosts
            assert {urlparse(url).hostname for url in page.requested if not url.startswith("data:")} == {"127.0.0.1"}
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        phone.screenshot(path=SCREENSHOTS / "staff.png", full_page=True)
    finally:
        farmer_context.close()
        staff_context.close()


def test_staff_buttons_notice_and_last_change(browser, served, engine, kiosk_restored):
    kiosk = kiosk_restored
    staff, _ = add_user(engine, "kiosk_staff", points=[kiosk["id"]])
    context, phone = phone_context(browser)
    selector = f"#kiosks li.kiosk[data-point-id='{kiosk['id']}']"
    try:
        login(phone, served, staff.username, next_path="/staff")
        phone.wait_for_selector("body[data-ready='true']", timeout=WAIT_MS)
        start = point_row(engine, kiosk["id"])["occupancy"]
        capacity = kiosk["capacity"]

        phone.get_by_role("button", name=STAFF["zh"]["minus_one_aria"]).click()
        wait_free(phone, selector, capacity - start + 1)
        assert point_row(engine, kiosk["id"])["occupancy"] == start - 1

        phone.get_by_role("button", name=STAFF["zh"]["full_aria"]).click()
        wait_free(phone, selector, 0)
        assert point_row(engine, kiosk["id"])["occupancy"] == capacity
        # Full is full: one more is refused by the server and said on the card.
        phone.get_by_role("button", name=STAFF["zh"]["plus_one_aria"]).click()
        phone.wait_for_selector(f"{selector} .message.error", timeout=WAIT_MS)
        assert phone.locator(f"{selector} .message").inner_text() == STAFF["zh"]["at_capacity"]
        assert point_row(engine, kiosk["id"])["occupancy"] == capacity

        phone.get_by_role("button", name=STAFF["zh"]["close"], exact=True).click()
        phone.wait_for_selector(f"{selector}[data-status='closed']", timeout=WAIT_MS)
        assert point_row(engine, kiosk["id"])["status"] == "closed"
        assert phone.locator(f"{selector} .state").inner_text() == STAFF["zh"]["now_closed"]
        phone.get_by_role("button", name=STAFF["zh"]["open"], exact=True).click()
        phone.wait_for_selector(f"{selector}[data-status='open']", timeout=WAIT_MS)
        assert point_row(engine, kiosk["id"])["status"] == "open"

        notice = "今晚热水暂停，明早恢复"
        phone.fill(f"#notice-{kiosk['id']}", notice)
        phone.get_by_role("button", name=STAFF["zh"]["notice_save"]).click()
        phone.wait_for_selector(f"{selector} .live-notice", timeout=WAIT_MS)
        assert phone.locator(f"{selector} .live-notice-text").inner_text() == notice
        row = point_row(engine, kiosk["id"])
        assert row["notice"] == notice

        # The last change, in the phone's local time, is the database's.
        local = phone.evaluate("(iso) => new Date(iso).toLocaleString('zh-CN', {hour: '2-digit', minute: '2-digit'})",
                               row["live_updated_at"].isoformat())
        assert phone.locator(f"{selector} .last-change").inner_text() == STAFF["zh"]["last_change"].format(time=local)
        assert no_horizontal_scroll(phone)
        assert phone.console_errors == [] or all("409" in e for e in phone.console_errors)
    finally:
        context.close()


def test_another_staff_members_change_reaches_the_page_and_a_status_change_still_lands(browser, served, engine,
                                                                                        kiosk_restored):
    """Two staff on one kiosk: the page shows the other's taps, and its next status change is not refused."""
    kiosk = kiosk_restored
    staff, _ = add_user(engine, "kiosk_staff", points=[kiosk["id"]])
    _, other_token = add_user(engine, "kiosk_staff", points=[kiosk["id"]])
    context, phone = phone_context(browser)
    selector = f"#kiosks li.kiosk[data-point-id='{kiosk['id']}']"
    try:
        login(phone, served, staff.username, next_path="/staff")
        phone.wait_for_selector("body[data-ready='true']", timeout=WAIT_MS)
        occupancy = point_row(engine, kiosk["id"])["occupancy"]
        status, answer, _ = call(served, "POST", f"/api/v1/points/{kiosk['id']}/occupancy", token=other_token,
                                 body={"op": "increment"})
        assert status == 200 and answer["occupancy"] == occupancy + 1
        wait_free(phone, selector, kiosk["capacity"] - occupancy - 1)
        phone.get_by_role("button", name=STAFF["zh"]["close"], exact=True).click()
        phone.wait_for_selector(f"{selector}[data-status='closed']", timeout=WAIT_MS)
        assert point_row(engine, kiosk["id"])["status"] == "closed"
        assert phone.locator(f"{selector} .message").inner_text() == STAFF["zh"]["saved"]
    finally:
        context.close()


def test_staff_page_in_english_and_for_an_officer(browser, served, engine):
    officer, _ = add_user(engine, "officer")
    context, phone = phone_context(browser)
    try:
        login(phone, served, officer.username, next_path="/staff")
        phone.wait_for_selector("body[data-ready='true']", state="attached", timeout=WAIT_MS)
        assert phone.locator("#kiosks li").count() == 0
        assert phone.get_by_role("link", name=STAFF["zh"]["city_map_link"]).get_attribute("href") == "/"
        phone.click("#lang-switch")
        assert phone.locator("h1").inner_text() == STAFF["en"]["heading"]
        assert "lang=en" in phone.url
        assert no_horizontal_scroll(phone)
    finally:
        context.close()


def test_farmer_card_and_city_map_mark_an_old_count_as_stale(browser, served, engine, kiosk_restored, settings):
    kiosk = kiosk_restored
    stale_after = settings.occupancy_stale_minutes
    with engine.begin() as c:  # the count was last changed longer ago than the stale age
        c.execute(sa.text("UPDATE point SET live_updated_at = now() - :age WHERE id = :id"),
                  {"age": timedelta(minutes=stale_after + 5), "id": kiosk["id"]})
    lon, lat = kiosk["spot"]
    context, farmer = phone_context(browser, geolocation={"longitude": lon, "latitude": lat},
                                    permissions=["geolocation"])
    try:
        farmer.goto(served + "/farmer")
        farmer.wait_for_selector("body[data-ready='true']", timeout=WAIT_MS)
        farmer.get_by_role("button", name=FARMER["zh"]["find_button"]).click()
        card = f"#results > li[data-id='{kiosk['id']}']"
        farmer.wait_for_selector(f"{card} .live-stale", timeout=WAIT_MS)
        assert farmer.locator(f"{card} .live-stale").inner_text() == "⚠ " + CITY["zh"]["stale"].format(n=stale_after)
        hours = (stale_after + 5) // 60
        assert farmer.locator(f"{card} .live-age").inner_text() == CITY["zh"]["updated_hours_ago"].format(n=hours)

        desktop = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN", bypass_csp=True)
        page = recorded_page(desktop)
        page.goto(f"{served}/#18/{kiosk['lat']:.5f}/{kiosk['lon']:.5f}")
        page.wait_for_selector("body[data-layers-loaded='true']", state="attached", timeout=WAIT_MS)
        badge = page.locator(".poi-marker.kind-kiosk .badge.stale")
        badge.first.wait_for(timeout=WAIT_MS)
        free = kiosk["capacity"] - point_row(engine, kiosk["id"])["occupancy"]
        assert f"{free}?" in badge.all_inner_texts()
        desktop.close()
    finally:
        context.close()


def test_city_map_popup_follows_occupancy_and_notice(browser, served, engine, kiosk_restored):
    kiosk = kiosk_restored
    _, token = add_user(engine, "kiosk_staff", points=[kiosk["id"]])
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN", bypass_csp=True)
    page = recorded_page(context)
    try:
        page.goto(f"{served}/#18/{kiosk['lat']:.5f}/{kiosk['lon']:.5f}")
        page.wait_for_selector("body[data-layers-loaded='true']", state="attached", timeout=WAIT_MS)
        page.wait_for_selector("body[data-live]", state="attached", timeout=WAIT_MS)
        page.evaluate(f"void window.geoservice.city.marker({kiosk['id']}).openPopup()")
        popup = page.locator(f".point-popup[data-point-id='{kiosk['id']}']")
        popup.wait_for(timeout=WAIT_MS)
        occupancy = point_row(engine, kiosk["id"])["occupancy"]
        assert popup.locator("dd.free").inner_text() == f"{kiosk['capacity'] - occupancy} / {kiosk['capacity']}"

        status, answer, _ = call(served, "POST", f"/api/v1/points/{kiosk['id']}/occupancy", token=token,
                                 body={"op": "increment"})
        assert status == 200
        expected = f"{kiosk['capacity'] - occupancy - 1} / {kiosk['capacity']}"
        page.wait_for_function("(e) => document.querySelector('.point-popup dd.free')?.textContent === e",
                               arg=expected, timeout=WAIT_MS)
        badge = page.locator(".poi-marker.kind-kiosk .badge", has_text=re.compile(
            rf"^{kiosk['capacity'] - occupancy - 1}$"))
        assert badge.count() >= 1
        assert page.evaluate("document.body.dataset.live") is not None
        assert page.console_errors == []
    finally:
        context.close()
