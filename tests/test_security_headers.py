"""Security headers on every response, trusted host names, and pages that run only our own scripts.

Every kind of response — map pages, API JSON, OGC JSON and HTML, downloads, static files, 4xx/5xx errors — carries
the Content-Security-Policy, ``X-Content-Type-Options``, frame protection and a referrer policy. A request for a
host name the service does not answer to is refused with 400 before any link can be built. The pages, loaded in
headless Chromium, log no CSP violation, and markup hidden in a point's name neither renders nor runs.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest

from geoservice import security
from geoservice.app import create_app

HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
           "Referrer-Policy": "strict-origin-when-cross-origin"}
HTML = ["/", "/farmer", "/planner", "/api/v1/docs", "/ogc?f=html", "/ogc/collections?f=html",
        "/ogc/collections/points?f=html", "/ogc/collections/points/items?f=html&limit=5",
        "/ogc/collections/points/items/1?f=html", "/ogc/conformance?f=html", "/ogc/api?f=html"]
NOT_HTML = ["/api/v1/nearest?lon=113.826&lat=34.026", "/api/v1/openapi.json", "/ogc", "/ogc/collections/points/items",
            "/api/v1/coverage/grids?radius=400&kind=kiosk&f=csv", "/static/js/common.js",
            "/static/vendor/leaflet/leaflet.css", "/static/img/icons/sprite.svg", "/healthz"]
ERRORS = [("/api/v1/no-such-thing", 404), ("/ogc/collections/rivers", 404), ("/no-such-page", 404),
          ("/static/no-such-file.js", 404), ("/api/v1/layers/points?bbox=1,2,3", 400)]


def assert_protected(response) -> str:
    for name, value in HEADERS.items():
        assert response.headers[name] == value, name
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy
    return policy


@pytest.mark.parametrize("path", HTML)
def test_pages_carry_the_page_policy(client, app, path):
    response = client.get(path)
    assert response.status_code == 200 and response.mimetype == "text/html"
    policy = assert_protected(response)
    assert policy == security.page_content_security_policy(app.config["GEOSERVICE_SETTINGS"])
    assert "script-src 'self';" in policy and "'unsafe-inline'" not in policy.split("style-src")[0]


@pytest.mark.parametrize("path", NOT_HTML)
def test_everything_else_may_load_nothing(client, path):
    response = client.get(path)
    assert response.status_code == 200 and response.mimetype != "text/html"
    assert assert_protected(response).startswith("default-src 'none';")


@pytest.mark.parametrize(("path", "status"), ERRORS)
def test_errors_carry_the_headers(client, path, status):
    response = client.get(path)
    assert response.status_code == status
    assert_protected(response)


def test_405_500_and_503_carry_the_headers(settings):
    from tests.conftest import free_port

    app = create_app(settings)
    app.add_url_rule("/api/v1/fail", "fail", lambda: 1 / 0)
    client = app.test_client()
    assert client.post("/api/v1/nearest").status_code == 405
    assert_protected(client.post("/api/v1/nearest"))
    failed = client.get("/api/v1/fail")
    assert failed.status_code == 500 and set(failed.get_json()) == {"code", "description"}
    assert_protected(failed)
    down = create_app(settings.replace(database_url=f"postgresql://nobody:pw@127.0.0.1:{free_port()}/none"))
    response = down.test_client().get("/healthz")
    assert response.status_code == 503
    assert_protected(response)


def test_no_page_has_an_inline_script(client):
    """The policy refuses every inline script: a page that had one would break (its scripts are files)."""
    for path in HTML:
        html = client.get(path).get_data(as_text=True)
        for attributes, body in re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S):
            assert "src=" in attributes or 'type="application/json"' in attributes, (path, body[:80])
            assert not body.strip() or 'type="application/json"' in attributes, (path, body[:80])


@pytest.mark.parametrize(("basemap", "key", "tiles"), [
    ("osm", "", "https://tile.openstreetmap.org"),
    ("tianditu", "k", " ".join(f"https://t{n}.tianditu.gov.cn" for n in range(8))),
    ("none", "", ""),
])
def test_tiles_come_only_from_the_configured_basemap(settings, basemap, key, tiles):
    policy = security.page_content_security_policy(settings.replace(basemap=basemap, tianditu_key=key))
    directives = dict(d.split(" ", 1) for d in policy.split("; "))
    assert directives["img-src"] == f"'self' data: {tiles}".strip()
    assert directives["connect-src"] == directives["default-src"] == "'self'"
    assert directives["object-src"] == directives["base-uri"] == "'none'"


def test_the_served_page_names_the_configured_tile_host(settings, engine):
    app = create_app(settings.replace(basemap="osm"))
    policy = app.test_client().get("/").headers["Content-Security-Policy"]
    assert "img-src 'self' data: https://tile.openstreetmap.org;" in policy


# -- trusted hosts ------------------------------------------------------------------------------------------------

FORGED = "evil.example"


def assert_refused(response) -> None:
    assert response.status_code == 400
    assert FORGED not in response.get_data(as_text=True)
    assert_protected(response)


@pytest.mark.parametrize("path", ["/ogc", "/ogc/collections/points/items?limit=2", "/api/v1/openapi.json",
                                  "/api/v1/no-such-thing", "/healthz"])
def test_a_forged_host_gets_a_json_400_and_never_a_link(client, path):
    for response in (client.get(path, base_url=f"http://{FORGED}"),
                     client.get(path, base_url=f"http://{FORGED}:5000"),
                     client.get(path, headers={"Host": FORGED})):
        assert_refused(response)
        body = response.get_json()
        assert set(body) == {"code", "description"}
        assert body["code"] == "BadRequest" and "GEOSERVICE_TRUSTED_HOSTS" in body["description"]


def test_a_forged_host_on_a_page_gets_the_error_page(client):
    response = client.get("/", base_url=f"http://{FORGED}")
    assert_refused(response)
    assert response.mimetype == "text/html"


@pytest.mark.parametrize("host", ["localhost", "localhost:5000", "127.0.0.1", "127.0.0.1:8080"])
def test_the_machine_itself_is_always_answered(client, host):
    doc = client.get("/ogc", base_url=f"http://{host}").get_json()
    assert all(link["href"].startswith(f"http://{host}/ogc") for link in doc["links"])


@pytest.mark.parametrize(("trusted", "host", "status"), [
    (("map.city.example",), "map.city.example", 200),
    (("map.city.example",), "www.map.city.example", 400),
    ((".city.example",), "map.city.example", 200),
    ((".city.example",), "city.example", 200),
    ((".city.example",), "evilcity.example", 400),
    (("10.1.2.3",), "10.1.2.3:5000", 200),
])
def test_configured_host_names(settings, engine, trusted, host, status):
    client = create_app(settings.replace(trusted_hosts=trusted)).test_client()
    response = client.get("/ogc", base_url=f"http://{host}")
    assert response.status_code == status
    if status == 200:
        assert all(link["href"].startswith(f"http://{host}/ogc") for link in response.get_json()["links"])


def test_behind_a_proxy_the_forwarded_host_must_be_trusted(settings, engine):
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.0.0.9"}
    proxied = create_app(settings.replace(trusted_proxies=1, trusted_hosts=("map.city.example",))).test_client()
    doc = proxied.get("/ogc", headers={**forwarded, "X-Forwarded-Host": "map.city.example"}).get_json()
    assert all(link["href"].startswith("https://map.city.example/ogc") for link in doc["links"])
    assert_refused(proxied.get("/ogc", headers={**forwarded, "X-Forwarded-Host": FORGED}))


@pytest.mark.parametrize("value", ["https://map.city.example", "map.city.example:443", "*", "map city", "a/b"])
def test_a_trusted_host_must_be_a_host_name(value):
    from geoservice.config import load_settings
    from geoservice.errors import ConfigError

    with pytest.raises(ConfigError, match="is not a host name; list names such as"):
        load_settings(env={"GEOSERVICE_TRUSTED_HOSTS": value})
    assert load_settings(env={"GEOSERVICE_TRUSTED_HOSTS": " map.city.example, .city.example "}).trusted_hosts == (
        "map.city.example", ".city.example")


def test_gunicorn_refuses_a_forged_host(served):
    request = urllib.request.Request(served + "/ogc", headers={"Host": FORGED})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 400
    body = refused.value.read().decode()
    assert set(json.loads(body)) == {"code", "description"} and FORGED not in body
    assert refused.value.headers["X-Frame-Options"] == "DENY"


# -- in the browser -----------------------------------------------------------------------------------------------

# A violation is recorded on the page and marked on <html>, so the test can wait with a selector: Playwright's
# wait_for_function evaluates its predicate with eval, which the policy refuses (the functional page tests run with
# bypass_csp for that reason; these do not).
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.cspViolations.push(e.violatedDirective + " " + e.blockedURI);
  document.documentElement.setAttribute("data-csp-violated", e.violatedDirective);
});
"""
READY = {"/": "body[data-layers-loaded='true']", "/farmer": "body[data-ready='true']",
         "/planner": "body[data-planner-state='ready'][data-planner-static='ready']",
         "/ogc/collections/points/items?f=html&limit=50": ".leaflet-container path.leaflet-interactive",
         "/ogc/collections/points/items/1?f=html": ".leaflet-container path.leaflet-interactive",
         "/api/v1/docs": "h1"}
BAIT = """document.body.insertAdjacentHTML("beforeend",
    '<img id="bait" src="/static/img/favicon.svg" onload="window.pwned = true">')"""


@pytest.fixture()
def strict_page(browser):
    """A desktop page that enforces the served Content-Security-Policy and records its violations."""
    from tests.conftest import recorded_page

    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN", bypass_csp=False)
    context.add_init_script(RECORD_VIOLATIONS)
    yield recorded_page(context)
    context.close()


def open_page(page, served: str, path: str) -> None:
    response = page.goto(served + path)
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_selector(READY[path], state="attached", timeout=60_000)
    page.wait_for_load_state("networkidle")


@pytest.mark.browser
@pytest.mark.parametrize("path", list(READY))
def test_pages_log_no_csp_violation(strict_page, served, path):
    open_page(strict_page, served, path)
    assert strict_page.evaluate("window.cspViolations") == []
    assert not [e for e in strict_page.console_errors if "Content Security Policy" in e]
    if path in ("/", "/farmer", "/planner"):
        assert strict_page.console_errors == []
    # ... and the policy is in force on this page: an inline handler put into it is refused.
    strict_page.evaluate(BAIT)
    strict_page.wait_for_selector("html[data-csp-violated]", state="attached", timeout=10_000)
    assert strict_page.evaluate("window.pwned") is None


HOSTILE_NAME = '<img src="/static/img/favicon.svg" onload="window.pwned = true"><b>三八路</b>'


@pytest.mark.browser
def test_markup_in_a_point_name_is_shown_as_text(strict_page, served):
    """A name that is markup (as an import could bring) is shown as text in the search list and the popup."""
    def hostile(route):
        answer = route.fetch()
        body = answer.json()
        for feature in body["features"]:
            feature["properties"]["name"] = HOSTILE_NAME
            feature["properties"]["address"] = HOSTILE_NAME
        route.fulfill(response=answer, json=body)

    page = strict_page
    page.route("**/api/v1/points/search?*", hostile)
    open_page(page, served, "/")
    page.get_by_role("searchbox").fill("三八路便民")
    page.get_by_role("searchbox").press("Enter")
    first = page.locator(".search-results li button").first
    first.wait_for(timeout=10_000)
    assert HOSTILE_NAME in first.inner_text()
    first.click()
    popup = page.locator(".leaflet-popup-content")
    popup.wait_for(timeout=10_000)
    assert HOSTILE_NAME in popup.inner_text()
    assert page.locator(".search-results b, .search-results img, .leaflet-popup-content b, "
                        ".leaflet-popup-content img[onload]").count() == 0
    assert page.evaluate("window.pwned") is None
    assert page.evaluate("window.cspViolations") == []  # escaped, so the policy never even had to step in
