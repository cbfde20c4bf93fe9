"""The planner page's siting panel in a real headless Chromium, against the app served as ``geoservice serve`` serves
it: "建议新增 N 个点" draws the API's sites as numbered markers with their gains as a chart; the public downloads the
list, a planner accepts a site as a planned point (read back from the database) that what-if then counts.
"""

from __future__ import annotations

import csv
import io

import pytest
import sqlalchemy as sa

from tests.accounts_helpers import add_user
from tests.page_helpers import login
from tests.test_page_planner_analytics import (
    PAINTED,
    SERIES,
    TIMEOUT_MS,
    api,
    assert_map_shows,
    only_local_hosts,
    open_planner,
    wait_for_drawn,
)

pytestmark = pytest.mark.browser


def run_siting(page, count: int) -> str:
    page.fill("#siting-count", str(count))
    assert page.locator("#siting-run").inner_text() == f"建议新增 {count} 个点"
    page.click("#siting-run")
    page.wait_for_selector("body[data-siting-state]:not([data-siting-state='loading'])", state="attached",
                           timeout=TIMEOUT_MS)
    assert page.get_attribute("body", "data-siting-state") == "ready", page.locator("#siting-status").inner_text()
    return page.evaluate("document.body.dataset.sitingQuery")


SITES = "() => geoservicePlanner.layers.sites.getLayers().map(m => [m.getLatLng().lng, m.getLatLng().lat])"


def test_siting_draws_numbered_sites_and_offers_the_list_to_the_public(page, served, tmp_path):
    open_planner(page, served, "/planner?kind=kiosk&kind=rest_station")
    query = run_siting(page, 4)
    answer = api(served, "/api/v1/siting", query)
    assert len(answer["features"]) == 4
    assert page.locator(".siting-marker").all_inner_texts() == ["1", "2", "3", "4"]
    assert page.evaluate(SITES) == [f["geometry"]["coordinates"] for f in answer["features"]]
    items = page.locator("#siting-list li").all_inner_texts()
    assert [i.split("：")[0] for i in items] == [f"第 {n} 个点" for n in range(1, 5)]
    assert all(f"{f['properties']['gain_km']:.3f} 公里" in item for f, item in zip(answer["features"], items,
                                                                                  strict=True))
    assert page.evaluate(PAINTED, "chart-siting") > 1000
    gains, cumulative = page.evaluate(SERIES, "chart-siting")
    assert gains == [f["properties"]["gain_km"] for f in answer["features"]]
    assert cumulative == [f["properties"]["covered_pct"] for f in answer["features"]]
    # Not a planner: no accept button, the list to download instead.
    assert page.locator(".siting-accept").count() == 0
    with page.expect_download(timeout=TIMEOUT_MS) as info:
        page.click("#siting-csv")
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    rows = list(csv.DictReader(io.StringIO(path.read_bytes().decode("utf-8-sig"), newline="")))
    assert [(float(r["lon"]), float(r["lat"])) for r in rows] == [tuple(f["geometry"]["coordinates"])
                                                                  for f in answer["features"]]
    assert page.get_attribute("#siting-geojson", "href").endswith(f"?{query}&f=geojson")
    assert page.console_errors == []
    only_local_hosts(page)


def test_a_planner_accepts_a_site_as_a_planned_point(browser, served, engine):
    planner, token = add_user(engine, "planner")
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN", bypass_csp=True)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    accepted = None
    try:
        login(page, served, planner.username, next_path="/planner")
        page.wait_for_selector("body[data-planner-state='ready'][data-planner-charts]", timeout=TIMEOUT_MS)
        query = run_siting(page, 2)
        site = api(served, "/api/v1/siting", query)["features"][1]
        assert page.locator("#siting-csv").is_visible()  # the list for a meeting, as for everyone
        page.select_option("#siting-kind", "vendor_point")
        page.locator("#siting-list li[data-site='2'] .siting-accept").click()
        page.wait_for_selector("body[data-siting-accepted]", timeout=TIMEOUT_MS)
        accepted = int(page.get_attribute("body", "data-siting-accepted"))
        with engine.connect() as c:
            row = c.execute(sa.text("SELECT kind, status, name, ST_X(geom), ST_Y(geom) FROM point WHERE id = :id"),
                            {"id": accepted}).one()
        assert row[:2] == ("vendor_point", "planned")
        assert row[3:] == pytest.approx(tuple(site["geometry"]["coordinates"]), abs=1e-7)
        assert row[2].startswith("规划便民疏导点 2")
        assert page.locator("#siting-list li[data-site='2'] .siting-accepted").inner_text().strip() == \
            f"已采纳（编号 {accepted}）"
        assert page.locator(".siting-marker.accepted").inner_text() == "2"
        # What if: the accepted point counts.
        plain = api(served, "/api/v1/coverage/streets", page.evaluate("document.body.dataset.plannerQuery"))
        page.check("#what-if")
        query = wait_for_drawn(page, planned=["true"])
        assert assert_map_shows(page, served, query, token)["covered_km"] > plain["summary"]["covered_km"]
        assert errors == []
    finally:
        context.close()
        if accepted is not None:
            with engine.begin() as c:
                c.execute(sa.text("DELETE FROM point WHERE id = :id"), {"id": accepted})


def test_siting_runs_under_the_enforced_policy(browser, served):
    from tests.conftest import recorded_page
    from tests.test_security_headers import RECORD_VIOLATIONS

    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN", bypass_csp=False)
    context.add_init_script(RECORD_VIOLATIONS)
    page = recorded_page(context)
    try:
        page.goto(served + "/planner?kind=toilet")
        page.wait_for_selector("body[data-planner-state='ready'][data-planner-charts]", state="attached",
                               timeout=TIMEOUT_MS)
        page.fill("#siting-count", "2")
        page.click("#siting-run")
        page.wait_for_selector("body[data-siting-state='ready']", state="attached", timeout=TIMEOUT_MS)
        assert page.locator(".siting-marker").all_inner_texts() == ["1", "2"]
        assert page.evaluate("window.cspViolations") == []
        assert page.console_errors == []
        only_local_hosts(page)
    finally:
        context.close()
