"""Text that people type is shown as text on every page: script payloads saved through the write API into a point's
name, address and notice run nothing on the city map (popups, search results, the editing tools), the farmer page,
the staff page, the planner page and the OGC HTML pages.

The pages are loaded with the Content-Security-Policy bypassed, so that what is tested is the pages' own handling
of the text (tests/test_security_headers.py tests the policy, the second line of defence, on its own). Any
``alert``/``confirm`` opens a dialog, which the test records; the payloads also set ``window.__xss``.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.accounts_helpers import add_user
from tests.conftest import recorded_page
from tests.page_helpers import PHONE, WAIT_MS, login, patch_point, point_row, restored_point

pytestmark = pytest.mark.browser

KIOSK = "城管执法岗亭（前进路）"
NAME = '<img src=x onerror="window.__xss=\'name\';alert(\'name\')">岗亭'
ADDRESS = '"><script>window.__xss=\'address\';alert(\'address\')</script><b>前进路</b>'
NOTICE = '<svg onload="window.__xss=\'notice\';alert(\'notice\')"></svg>\'"><img src=x onerror=alert(3)>热水暂停'
RAN_NOTHING = """() => ({xss: window.__xss === undefined ? null : String(window.__xss),
  handlers: document.querySelectorAll('[onerror], [onload]').length,
  scripts: [...document.querySelectorAll('script')].filter(s => !s.src && s.type !== 'application/json').length})"""


@pytest.fixture(scope="module")
def poisoned(engine, served):
    """The 前进路 kiosk with the payloads in its name, address and notice (written by a planner through the API)."""
    with engine.connect() as c:
        point_id = c.execute(sa.text("SELECT id FROM point WHERE name = :n"), {"n": KIOSK}).scalar_one()
    with restored_point(engine, point_id):
        _, token = add_user(engine, "planner")
        patch_point(served, token, point_id, {"name": NAME, "address": ADDRESS, "notice": NOTICE})
        row = point_row(engine, point_id)
        assert (row["name"], row["address"], row["notice"]) == (NAME, ADDRESS, NOTICE)  # stored as typed
        yield row


@pytest.fixture()
def watched(browser):
    """A factory of browser pages (CSP bypassed) whose dialogs are recorded and dismissed."""
    contexts, dialogs = [], []

    def make(**options):
        context = browser.new_context(locale="zh-CN", bypass_csp=True, **options)
        context.add_init_script("window.__xss = undefined;")
        contexts.append(context)
        page = recorded_page(context)
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        return page

    make.dialogs = dialogs
    yield make
    for context in contexts:
        context.close()


def assert_inert(page, dialogs: list) -> None:
    page.wait_for_timeout(300)  # an image's onerror would have fired by now
    assert page.evaluate(RAN_NOTHING) == {"xss": None, "handlers": 0, "scripts": 0}
    assert dialogs == []


def test_city_map_popups_search_and_editing_tools(watched, served, engine, poisoned):
    planner, _ = add_user(engine, "planner")
    for who in ("public", "planner"):
        page = watched(viewport={"width": 1280, "height": 800})
        if who == "planner":
            login(page, served, planner.username, next_path="/")
        page.goto(f"{served}/#18/{poisoned['lat']:.6f}/{poisoned['lon']:.6f}")
        page.wait_for_selector("body[data-layers-loaded='true'][data-view='ready']", state="attached",
                               timeout=WAIT_MS)
        page.wait_for_function("(id) => !!window.geoservice.city.marker(id)", arg=poisoned["id"], timeout=WAIT_MS)
        page.evaluate("(id) => { window.geoservice.city.marker(id).openPopup(); }", poisoned["id"])
        popup = page.locator(f".leaflet-popup .point-popup[data-point-id='{poisoned['id']}']")
        popup.wait_for(timeout=WAIT_MS)
        assert popup.locator("h2").inner_text() == NAME
        assert ADDRESS in popup.inner_text()
        assert popup.locator(".live-notice-text").inner_text() == NOTICE
        assert_inert(page, watched.dialogs)

        page.get_by_role("searchbox").fill("onerror")
        page.get_by_role("searchbox").press("Enter")
        result = page.locator(".search-results li button", has_text="岗亭").first
        result.wait_for(timeout=WAIT_MS)
        assert NAME in result.inner_text() and ADDRESS in result.inner_text()
        result.click()
        # The popup opened above may still be fading out beside the one the result opens.
        page.wait_for_function("document.querySelectorAll('.leaflet-popup .point-popup h2').length === 1",
                               timeout=WAIT_MS)
        page.locator(".leaflet-popup .point-popup h2").wait_for(timeout=WAIT_MS)
        assert_inert(page, watched.dialogs)

        if who == "planner":  # the edit form and the history hold the same text
            page.evaluate("(id) => { const city = window.geoservice.city; city.map.closePopup(); "
                          "city.marker(id).openPopup(); }", poisoned["id"])
            page.wait_for_function("document.querySelectorAll('.leaflet-popup').length === 1", timeout=WAIT_MS)
            page.locator(".leaflet-popup .edit-point").click()
            page.wait_for_selector("#edit-panel #edit-name", timeout=WAIT_MS)
            assert page.input_value("#edit-name") == NAME
            assert page.input_value("#edit-address") == ADDRESS
            assert page.input_value("#edit-notice") == NOTICE
            assert page.locator("#edit-panel .edit-subject").inner_text() == NAME
            page.evaluate("(id) => { window.geoservice.city.marker(id).openPopup(); }", poisoned["id"])
            page.locator(".leaflet-popup .history-button").click()
            page.locator(".leaflet-popup .history-list li").first.wait_for(timeout=WAIT_MS)
            assert_inert(page, watched.dialogs)


def test_farmer_page(watched, served, poisoned):
    page = watched(viewport=PHONE, is_mobile=True, has_touch=True, permissions=["geolocation"],
                   geolocation={"longitude": round(poisoned["lon"] + 0.0006, 6), "latitude": poisoned["lat"]})
    page.goto(served + "/farmer")
    page.wait_for_selector("body[data-ready='true']", timeout=WAIT_MS)
    page.locator("#find").click()
    card = page.locator(f"#results > li[data-id='{poisoned['id']}']")
    card.locator(".live-notice-text").wait_for(timeout=WAIT_MS)
    assert card.locator("h3").inner_text() == "1. " + NAME
    assert card.locator(".live-notice-text").inner_text() == NOTICE
    assert_inert(page, watched.dialogs)


def test_staff_page(watched, served, engine, poisoned):
    staff, _ = add_user(engine, "kiosk_staff", points=[poisoned["id"]])
    page = watched(viewport=PHONE, is_mobile=True, has_touch=True)
    login(page, served, staff.username, next_path="/staff")
    page.wait_for_selector("body[data-ready='true']", timeout=WAIT_MS)
    card = page.locator(f"li.kiosk[data-point-id='{poisoned['id']}']")
    assert card.locator("h2").inner_text() == NAME
    assert page.input_value(f"#notice-{poisoned['id']}") == NOTICE
    assert card.locator(".live-notice-text").inner_text() == NOTICE
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # long text wraps
    assert_inert(page, watched.dialogs)


def test_planner_page(watched, served, poisoned):
    page = watched(viewport={"width": 1280, "height": 800})
    page.goto(served + "/planner?radius=500&kind=kiosk&mode=straight")
    page.wait_for_selector("body[data-planner-state='ready'][data-planner-static='ready']", timeout=90_000)
    page.evaluate("([lat, lon]) => { geoservicePlanner.map.setView([lat, lon], 16, {animate: false}); }",
                  [poisoned["lat"], poisoned["lon"]])
    # streets and points are numbered separately, so a street can carry the point's id: match the point only
    opened = """(id) => { let hit = null; geoservicePlanner.map.eachLayer(l => {
        if (l.feature && l.feature.geometry.type === 'Point' && l.feature.properties.id === id
            && l.getPopup && l.getPopup()) hit = l; });
      if (hit) hit.openPopup(); return !!hit; }"""
    page.wait_for_function(opened, arg=poisoned["id"], timeout=WAIT_MS)
    popup = page.locator(".leaflet-popup-content")
    popup.wait_for(timeout=WAIT_MS)
    assert NAME in popup.inner_text()
    assert_inert(page, watched.dialogs)


@pytest.mark.parametrize("path", ["/ogc/collections/points/items/{id}?f=html",
                                  "/ogc/collections/points/items?f=html&limit=20"])
def test_ogc_html_pages(watched, served, poisoned, path):
    page = watched(viewport={"width": 1280, "height": 800})
    page.goto(served + path.format(id=poisoned["id"]))
    page.wait_for_load_state("networkidle")
    text = page.locator("body").inner_text()
    assert NAME in text and ADDRESS in text and NOTICE in text
    assert_inert(page, watched.dialogs)


@pytest.mark.parametrize(("role", "path", "ready"), [
    ("planner", "/", "body[data-editor='planner'][data-layers-loaded='true']"),
    ("officer", "/", "body[data-editor='officer'][data-layers-loaded='true']"),
    ("kiosk_staff", "/staff", "body[data-ready='true']"),
])
def test_editing_tools_and_staff_page_satisfy_the_policy(browser, served, engine, poisoned, role, path, ready):
    """With the policy enforced, the pages of logged-in users (Geoman and editing.js, the staff page) load and
    work without one violation: they need no inline script and no eval."""
    from tests.test_security_headers import RECORD_VIOLATIONS

    user, _ = add_user(engine, role, points=[poisoned["id"]] if role == "kiosk_staff" else ())
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN", bypass_csp=False)
    context.add_init_script(RECORD_VIOLATIONS)
    page = recorded_page(context)
    try:
        login(page, served, user.username, next_path=path)
        if path == "/":
            page.goto(f"{served}/#18/{poisoned['lat']:.6f}/{poisoned['lon']:.6f}")
        page.wait_for_selector(ready, state="attached", timeout=WAIT_MS)
        page.wait_for_selector("body[data-live]", state="attached", timeout=WAIT_MS)  # a live poll has answered
        if role == "planner":  # Geoman's drawing mode runs too
            page.locator(".leaflet-pm-toolbar .leaflet-pm-icon-polygon").click()
            page.keyboard.press("Escape")
        assert page.evaluate("window.cspViolations") == []
        assert page.console_errors == []
    finally:
        context.close()
