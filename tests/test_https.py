"""The production layout on this machine: Caddy from ``deploy/Caddyfile`` with a locally issued certificate in
front of two app processes started from ``deploy/geoservice@.service``'s ExecStart with ``deploy/geoservice.env``'s
settings (adapted to the test database and high ports), driven over https:// by headless Chromium.

The public name is ``map.geoservice.test``, which Chromium resolves to 127.0.0.1 (``--host-resolver-rules``) and
trusts by the server key's pin (``--ignore-certificate-errors-spki-list``). Not ``localhost``: browsers treat
http://localhost as a secure context too, so only another name shows that HTTPS is what lets the farmer page's
locate button have the position — the same page over plain HTTP is shown to fall back to tapping the map.
The three nearest points it shows are checked against walking distances computed independently (networkx on the
street table, ``tests.test_network.StreetGraph``) over the rest points selected by plain SQL.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import pytest
import sqlalchemy as sa

from tests.accounts_helpers import PASSWORD, add_user
from tests.conftest import ARTIFACTS, CHROMIUM_ARGS, recorded_page, wait_for_http
from tests.proxy import DEPLOY, Certificate, Proxy, local_certificate, read_settings_file, start_proxy, unit_command
from tests.test_network import StreetGraph

pytestmark = pytest.mark.browser

PUBLIC_HOST = "map.geoservice.test"
HTTPS_PORT, HTTP_PORT = 56201, 56202
APP_PORTS = (56211, 56212)
WAIT_MS = 60_000
PHONE = {"width": 360, "height": 740}
KIOSK = "城管执法岗亭（前进路）"
SPOT_EAST_OF_KIOSK_DEG = 0.0006
# A rest point, spelt out here rather than read from geoservice.query: a kind that receives people and one of the
# amenities a farmer stops for.
REST_POINTS_SQL = ("SELECT id, ST_X(geom), ST_Y(geom) FROM point WHERE status = 'open' AND kind IN ('kiosk', "
                   "'rest_station', 'vendor_point', 'melon_point') AND amenities && ARRAY['drinking_water', "
                   "'hot_water', 'seating', 'shade', 'overnight', 'tent']::text[] ORDER BY id")


@dataclass
class Layout:
    """The running layout: the proxy, its certificate, the app processes and their settings."""

    proxy: Proxy
    certificate: Certificate
    apps: dict[int, subprocess.Popen]
    env: dict[str, str]


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def app_environment(settings, app_database_url: str, folder) -> dict[str, str]:
    """deploy/geoservice.env with the test's database, public address, key and folders in place of the server's."""
    env = read_settings_file()
    env.pop("GEOSERVICE_PG_DIR")  # an external database here: the suite's
    env.update({
        "GEOSERVICE_SECRET_KEY": secrets.token_urlsafe(48),
        "GEOSERVICE_PUBLIC_URL": f"https://{PUBLIC_HOST}:{HTTPS_PORT}",
        "GEOSERVICE_TRUSTED_HOSTS": PUBLIC_HOST,
        "GEOSERVICE_UPSTREAMS": " ".join(f"127.0.0.1:{p}" for p in APP_PORTS),
        "GEOSERVICE_BACKUP_DIR": str(folder / "backups"),
        "DATABASE_URL": settings.database_url,
        "GEOSERVICE_APP_DATABASE_URL": app_database_url,
        "GEOSERVICE_BASEMAP": "none",  # pages request nothing from other hosts in tests
    })
    return env


def start_app(port: int, env: dict[str, str], folder) -> subprocess.Popen:
    """One app process as systemd starts ``geoservice@PORT``: the unit's ExecStart, the settings file only."""
    log = open(ARTIFACTS / f"https-app-{port}.log", "w")  # noqa: SIM115 - the process keeps writing to it
    unit_env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", **env}
    return subprocess.Popen(unit_command(DEPLOY / "geoservice@.service", str(port)), env=unit_env, cwd=folder,
                            stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def layout(tmp_path_factory, settings, app_database_url, engine):
    """Caddy (https on 56201, http on 56202) in front of two app processes (56211, 56212)."""
    busy = [p for p in (HTTPS_PORT, HTTP_PORT, *APP_PORTS) if not _port_is_free(p)]
    assert not busy, f"ports {busy} are taken; this test uses 56201-56212"
    folder = tmp_path_factory.mktemp("https")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    certificate = local_certificate(folder / "pki", names=(PUBLIC_HOST, "localhost"))
    env = app_environment(settings, app_database_url, folder)
    apps = {port: start_app(port, env, folder) for port in APP_PORTS}
    try:
        for port in APP_PORTS:
            wait_for_http(f"http://127.0.0.1:{port}/healthz")
        proxy = start_proxy([f"127.0.0.1:{p}" for p in APP_PORTS], https_port=HTTPS_PORT, http_port=HTTP_PORT,
                            folder=folder / "caddy", host=PUBLIC_HOST, certificate=certificate, settings_env=env)
        with proxy:
            yield Layout(proxy, certificate, apps, env)
    finally:
        for process in apps.values():
            process.terminate()
        for process in apps.values():
            process.wait(timeout=40)


@pytest.fixture(scope="module")
def https_browser(layout, browser):
    """Debian's Chromium that resolves the public name to this machine and trusts the layout's certificate.

    Launched by the suite's Playwright (one per process: a second ``sync_playwright`` refuses to start inside the
    first one's event loop), with flags of its own.
    """
    args = [*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {PUBLIC_HOST} 127.0.0.1",
            f"--ignore-certificate-errors-spki-list={layout.certificate.spki_sha256}"]
    chromium = browser.browser_type.launch(executable_path="/usr/bin/chromium", args=args)
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def spot(engine) -> tuple[float, float]:
    """About 55 m east of the 前进路 kiosk, 6 decimals as the page sends it."""
    with engine.connect() as conn:
        lon, lat = conn.execute(sa.text("SELECT ST_X(geom), ST_Y(geom) FROM point WHERE name = :n"),
                                {"n": KIOSK}).one()
    return round(lon + SPOT_EAST_OF_KIOSK_DEG, 6), round(lat, 6)


def nearest_rest_points_by_walking(engine, spot: tuple[float, float], k: int = 3) -> list[int]:
    """The ids of the ``k`` rest points with the shortest walk from ``spot``: access legs plus Dijkstra."""
    with engine.connect() as conn:
        streets = StreetGraph(conn)
        candidates = [tuple(row) for row in conn.execute(sa.text(REST_POINTS_SQL))]
    network = streets.walk_distances(spot, candidates, cutoff=8000)
    legs = {pid: streets.snap(lon, lat)[2] for pid, lon, lat in candidates}
    total = {pid: streets.snap(*spot)[2] + d + legs[pid] for pid, d in network.items()}
    ranked = sorted(total, key=total.get)
    # The ranking must not hang on a tie the service could break the other way.
    assert total[ranked[k]] - total[ranked[k - 1]] > 1.0, "the spot's third and fourth points are tied"
    return ranked[:k]


def phone(browser, spot):
    context = browser.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True, has_touch=True,
                                  geolocation={"longitude": spot[0], "latitude": spot[1]},
                                  permissions=["geolocation"])
    return context, recorded_page(context)


def test_over_https_the_locate_button_shows_the_three_nearest_points(layout, https_browser, spot, engine):
    expected = nearest_rest_points_by_walking(engine, spot)
    context, page = phone(https_browser, spot)
    try:
        page.goto(f"{layout.proxy.url}/farmer")
        page.wait_for_selector("body[data-ready='true']", timeout=WAIT_MS)
        assert page.evaluate("window.isSecureContext") is True
        # Any opening hours: the reference ranks every open rest point ("现在开放" is pressed when the page opens).
        page.click("[data-filter='open_now']")
        page.get_by_role("button", name="找最近的休息点").click()
        page.wait_for_selector("body[data-results]", timeout=WAIT_MS)
        shown = page.eval_on_selector_all("#results > li", "cards => cards.map(c => Number(c.dataset.id))")
        assert shown == expected
        assert page.get_attribute("body", "data-geolocation") != "failed"
        assert not page.console_errors, page.console_errors
        origins = {f"{urlsplit(u).scheme}://{urlsplit(u).netloc}" for u in page.requested if not u.startswith("data:")}
        assert origins == {layout.proxy.url}
    finally:
        context.close()


def test_over_plain_http_the_same_page_gets_no_position(layout, https_browser, spot):
    # The app process itself, as `make run` serves it on another machine's address: no position, tap the map.
    context, page = phone(https_browser, spot)
    try:
        page.goto(f"http://{PUBLIC_HOST}:{APP_PORTS[0]}/farmer")
        page.wait_for_selector("body[data-ready='true']", timeout=WAIT_MS)
        assert page.evaluate("window.isSecureContext") is False
        page.get_by_role("button", name="找最近的休息点").click()
        page.wait_for_selector("body[data-geolocation='failed']", timeout=WAIT_MS)
    finally:
        context.close()


def test_login_redirects_stay_https_and_the_session_cookie_is_secure(layout, https_browser, engine):
    user, _ = add_user(engine, "kiosk_staff")
    context = https_browser.new_context(locale="zh-CN")
    page = recorded_page(context)
    try:
        page.goto(f"{layout.proxy.url}/staff")  # needs a login: sent to the login page
        page.wait_for_url(f"{layout.proxy.url}/login?next=/staff", timeout=WAIT_MS)
        page.fill("input[name=username]", user.username)
        page.fill("input[name=password]", PASSWORD)
        with page.expect_navigation():
            page.click("form [type=submit]")
        assert page.url == f"{layout.proxy.url}/staff"
        assert all(u.startswith(layout.proxy.url) for u in page.requested if not u.startswith("data:"))
        (cookie,) = [c for c in context.cookies() if c["name"] == "geoservice_session"]
        assert cookie["secure"] is True and cookie["httpOnly"] is True
        assert cookie["domain"] == PUBLIC_HOST
    finally:
        context.close()


def test_headers_links_and_the_plain_http_port(layout):
    proxy = layout.proxy
    status, headers, body = proxy.get("/ogc/collections/points/items?limit=2&f=json")
    assert status == 200
    assert headers["Strict-Transport-Security"] == "max-age=31536000"
    links = [link["href"] for link in json.loads(body)["links"]]
    assert links and all(href.startswith(f"{proxy.url}/ogc/collections/points") for href in links), links

    # The login form's redirect is relative (Werkzeug's default): it stays on the https origin it came from.
    status, headers, _ = proxy.get("/staff")
    assert status in (302, 303) and urljoin(proxy.url + "/staff", headers["Location"]).startswith(
        f"{proxy.url}/login?next=")

    # A client's forged forwarding headers are replaced by Caddy's: the links keep the public address.
    status, _, body = proxy.get("/ogc/collections?f=json", headers={
        "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"})
    assert status == 200 and all(
        link["href"].startswith(proxy.url) for link in json.loads(body)["links"])

    # Plain HTTP answers only with a permanent redirect to the same address over https.
    with socket.create_connection(("127.0.0.1", HTTP_PORT), timeout=10) as sock:
        sock.sendall(f"GET /farmer?lang=en HTTP/1.1\r\nHost: {PUBLIC_HOST}:{HTTP_PORT}\r\n"
                     "Connection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head = answer.decode("latin-1").split("\r\n\r\n")[0].split("\r\n")
    assert head[0].split()[1] == "308"
    location = next(h.split(":", 1)[1].strip() for h in head[1:] if h.lower().startswith("location:"))
    assert location == f"{proxy.url}/farmer?lang=en"

    # One JSON line per request in Caddy's access log.
    entry = json.loads(proxy.access_log.read_text().splitlines()[-1])
    assert entry["request"]["host"] == f"{PUBLIC_HOST}:{HTTPS_PORT}" and entry["status"] == 200


def test_a_killed_app_process_costs_no_request(layout):
    victim = layout.apps[APP_PORTS[1]]
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    # Its workers notice the master is gone and exit; from then on its port refuses connections.
    deadline = time.monotonic() + 30
    while not _port_is_free(APP_PORTS[1]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _port_is_free(APP_PORTS[1])
    statuses = [layout.proxy.get("/healthz")[0] for _ in range(20)]
    assert statuses == [200] * 20, statuses
