"""The planner page's analytics in a real headless Chromium, against the app served as ``geoservice serve`` serves it.

Charts, the slider asking while it moves (and giving up on answers no longer wanted), and what-if (the siting panel:
tests/test_page_planner_siting.py).
What the page shows is compared with what the API answers for the same question (the API itself is checked against
shapely and brute force in tests/test_coverage_analytics_api.py, tests/test_coverage.py and tests/test_siting.py);
a site a planner accepts is read back from the database.
"""

from __future__ import annotations

import json
import urllib.request
from urllib.parse import urlparse

import pytest

from geoservice.vocab import KIND_CODES
from tests.accounts_helpers import add_user
from tests.conftest import SCREENSHOTS
from tests.page_helpers import login
from tests.test_security_headers import RECORD_VIOLATIONS

pytestmark = pytest.mark.browser
TIMEOUT_MS = 90_000
CHARTS = ("curve", "subdistricts", "communities", "distances")
# How many pixels of a chart's canvas are painted (not transparent).
PAINTED = """(id) => {
    const canvas = document.querySelector("#" + id + " canvas");
    if (!canvas || !canvas.width) return 0;
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let painted = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted++;
    return painted;
}"""
SERIES = "(id) => echarts.getInstanceByDom(document.getElementById(id)).getOption().series.map(s => s.data)"
CATEGORIES = "(id) => echarts.getInstanceByDom(document.getElementById(id)).getOption().yAxis[0].data"


def api(served: str, path: str, query: str, token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(f"{served}{path}?{query}", headers=headers),
                                timeout=120) as response:
        return json.load(response)


def open_planner(page, served: str, path: str = "/planner") -> None:
    page.goto(served + path)
    page.wait_for_selector("body[data-planner-state='ready'][data-planner-static='ready'][data-planner-charts]",
                           timeout=TIMEOUT_MS)


def wait_for_drawn(page, **expected: list[str]) -> str:
    """Wait until the map has drawn the result of a query with these values; return that query string."""
    page.wait_for_function("""(expected) => {
        const body = document.body;
        if (body.dataset.plannerState !== "ready" || body.dataset.plannerDrawn !== body.dataset.plannerQuery) {
            return false;
        }
        const q = new URLSearchParams(body.dataset.plannerDrawn || "");
        return Object.entries(expected).every(([k, v]) => JSON.stringify(q.getAll(k)) === JSON.stringify(v));
    }""", arg=expected, timeout=TIMEOUT_MS)
    return page.evaluate("document.body.dataset.plannerDrawn")


def wait_for_charts(page, query: str) -> None:
    page.wait_for_function("(q) => document.body.dataset.plannerCharts === q", arg=query, timeout=TIMEOUT_MS)


def assert_map_shows(page, served: str, query: str, token: str | None = None) -> dict:
    answer = api(served, "/api/v1/coverage/streets", query, token)
    assert page.evaluate("geoservicePlanner.counts.uncovered") == len(answer["features"])
    assert page.locator("#sum-uncovered_km").inner_text() == f"{answer['summary']['uncovered_km']:.3f}"
    assert page.locator("#sum-covered_pct").inner_text() == f"{answer['summary']['covered_pct']:.2f}"
    return answer["summary"]


def only_local_hosts(page) -> None:
    hosts = {urlparse(url).hostname for url in page.requested if not url.startswith("data:")}
    assert hosts == {"127.0.0.1"}, hosts


def test_the_charts_draw_the_api_answers(page, served):
    open_planner(page, served)
    query = wait_for_drawn(page, radius=["500"], mode=["straight"], kind=list(KIND_CODES))
    wait_for_charts(page, query)
    for name in CHARTS:
        assert page.evaluate(PAINTED, f"chart-{name}") > 2000, name
    page.evaluate("document.getElementById('charts-heading').scrollIntoView()")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "planner-charts.png"))
    without_radius = "&".join(f"kind={k}" for k in KIND_CODES) + "&mode=straight"
    curve = api(served, "/api/v1/coverage/curve", without_radius)["curve"]
    (shown_curve,) = page.evaluate(SERIES, "chart-curve")
    assert shown_curve == [[c["radius_m"], c["covered_pct"]] for c in curve]
    # The curve at the current radius is what the summary says.
    at_500 = next(c for c in curve if c["radius_m"] == 500)
    assert page.locator("#sum-covered_pct").inner_text() == f"{at_500['covered_pct']:.2f}"
    for chart, level in (("subdistricts", "subdistrict"), ("communities", "community")):
        areas = api(served, "/api/v1/coverage/areas", f"level={level}&{query}")["areas"]
        assert page.evaluate(CATEGORIES, f"chart-{chart}") == [a["name"] for a in areas]
        (bars,) = page.evaluate(SERIES, f"chart-{chart}")
        assert bars == [a["covered_pct"] for a in areas]
    distances = api(served, "/api/v1/coverage/distances", without_radius)
    (bars,) = page.evaluate(SERIES, "chart-distances")
    assert [b if isinstance(b, (int, float)) else b["value"] for b in bars] == (
        [b["km"] for b in distances["bins"]] + [distances["beyond_km"]])

    # A new radius moves the curve's mark and redraws the per-area charts; the curve is not asked again.
    curve_requests = sum("/coverage/curve" in url for url in page.requested)
    page.fill("#radius-number", "300")
    page.press("#radius-number", "Enter")
    query = wait_for_drawn(page, radius=["300"])
    wait_for_charts(page, query)
    mark = page.evaluate("echarts.getInstanceByDom(document.getElementById('chart-curve')).getOption()"
                         ".series[0].markLine.data[0].xAxis")
    assert mark == 300
    areas = api(served, "/api/v1/coverage/areas", f"level=community&{query}")["areas"]
    assert page.evaluate(SERIES, "chart-communities") == [[a["covered_pct"] for a in areas]]
    assert sum("/coverage/curve" in url for url in page.requested) == curve_requests

    # The language switch relabels the charts in place.
    page.click("#lang-switch")
    names = page.evaluate("echarts.getInstanceByDom(document.getElementById('chart-curve')).getOption()"
                          ".xAxis[0].name")
    assert names == "Radius (m)"
    assert page.console_errors == []
    only_local_hosts(page)


def test_the_slider_asks_while_it_moves(page, served):
    open_planner(page, served)
    wait_for_drawn(page, radius=["500"])
    slider = page.locator("#radius-range").bounding_box()
    y = slider["y"] + slider["height"] / 2

    def x_of(value: float) -> float:
        # The thumb's centre runs from half a thumb in from the left end to half a thumb in from the right end.
        thumb = 16
        return slider["x"] + thumb / 2 + (value - 50) / (2000 - 50) * (slider["width"] - thumb)

    page.mouse.move(x_of(500), y)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(x_of(500 + 30 * step), y)
    moved = page.input_value("#radius-range")
    assert moved != "500"
    # The button is still held down: the page asks once the slider has rested, without waiting for the release.
    query = wait_for_drawn(page, radius=[moved])
    assert_map_shows(page, served, query)
    page.mouse.move(x_of(1200), y)
    page.mouse.up()
    final = page.input_value("#radius-range")
    query = wait_for_drawn(page, radius=[final])
    assert_map_shows(page, served, query)
    assert page.console_errors == []


def test_a_stale_request_is_aborted_and_the_map_shows_the_latest_radius(page, served):
    open_planner(page, served)
    before = wait_for_drawn(page, radius=["500"])
    held = []

    def hold(route):
        # The answer for 550 m is kept back, as a slow one would be; the page must give up on it.
        if "radius=550" in route.request.url:
            held.append(route.request.url)
        else:
            route.continue_()

    page.route("**/api/v1/coverage/streets?*", hold)
    failed = []
    page.on("requestfailed", lambda request: failed.append((request.url, request.failure)))
    page.focus("#radius-range")
    with page.expect_request(lambda r: "/coverage/streets?" in r.url and "radius=550" in r.url):
        page.keyboard.press("ArrowRight")
    for _ in range(4):
        page.keyboard.press("ArrowRight")
    query = wait_for_drawn(page, radius=["750"])
    summary = assert_map_shows(page, served, query)
    assert summary["uncovered_km"] < api(served, "/api/v1/coverage/streets", before)["summary"]["uncovered_km"]
    page.wait_for_function("() => geoservicePlanner.aborted >= 1", timeout=TIMEOUT_MS)
    assert any("/coverage/streets?" in url and "radius=550" in url for url, _ in failed), failed
    assert all("ERR_ABORTED" in (why or "") for url, why in failed if "radius=550" in url), failed
    assert held and page.input_value("#radius-number") == "750"
    assert page.locator("#planner-status").inner_text() != ""
    assert [e for e in page.console_errors if "ERR_ABORTED" not in e] == []


def test_what_if_counts_the_planned_points(page, served, engine, planned_kiosk):
    open_planner(page, served, "/planner?kind=kiosk")
    assert page.locator("#what-if").count() == 0  # the public does not see planned points, nor what-if
    planner, token = add_user(engine, "planner")
    login(page, served, planner.username, next_path="/planner?kind=kiosk")
    page.wait_for_selector("body[data-planner-state='ready']", timeout=TIMEOUT_MS)
    plain = wait_for_drawn(page, kind=["kiosk"], planned=[])
    page.check("#what-if")
    query = wait_for_drawn(page, kind=["kiosk"], planned=["true"])
    what_if = assert_map_shows(page, served, query, token)
    assert what_if["covered_km"] > api(served, "/api/v1/coverage/streets", plain)["summary"]["covered_km"]
    wait_for_charts(page, query)
    curve = api(served, "/api/v1/coverage/curve", "kind=kiosk&mode=straight&planned=true", token)["curve"]
    assert page.evaluate(SERIES, "chart-curve") == [[[c["radius_m"], c["covered_pct"]] for c in curve]]
    assert "planned=true" in page.url
    # The report beside the exports asks the same question.
    assert page.get_attribute("#export-report-pdf", "href") == f"/planner/report?{query}&f=pdf"
    report = urllib.request.Request(served + page.get_attribute("#export-report-html", "href"),
                                    headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(report, timeout=300) as answer:
        assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/html")
        assert answer.headers["Content-Disposition"].startswith("attachment;")
    page.click("#lang-switch")
    assert page.get_attribute("#export-report-html", "href") == f"/planner/report?{query}&f=html&lang=en"
    page.click("#lang-switch")
    page.uncheck("#what-if")
    wait_for_drawn(page, kind=["kiosk"], planned=[])
    assert_map_shows(page, served, plain)
    assert page.console_errors == []


def test_the_analytics_run_under_the_enforced_policy(browser, served):
    from tests.conftest import recorded_page

    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN", bypass_csp=False)
    context.add_init_script(RECORD_VIOLATIONS)
    page = recorded_page(context)
    try:
        response = page.goto(served + "/planner")
        assert "script-src 'self'" in response.headers["content-security-policy"]
        page.wait_for_selector("body[data-planner-state='ready'][data-planner-charts]", state="attached",
                               timeout=TIMEOUT_MS)
        for name in CHARTS:
            assert page.evaluate(PAINTED, f"chart-{name}") > 2000, name
        assert page.evaluate("window.cspViolations") == []
        assert page.console_errors == []
        only_local_hosts(page)
    finally:
        context.close()
