"""Shared fixtures: a real PostGIS database with the demo city, rolled back per test.

The database comes from, in order: ``GEOSERVICE_TEST_DATABASE_URL``; ``DATABASE_URL`` (an external server — the
suite loads the demo city into it); else the embedded cluster, started if needed, with a database of its own
(``geoservice_test``, or ``GEOSERVICE_TEST_DB_NAME``) so the suite never touches the data ``make run`` serves.
A database that cannot be reached is an error, never a skip.

The suite itself (fixtures loading data, the CLI) connects as the owner; the web app (the ``app`` and ``served``
fixtures) connects as the read-only app role, as ``geoservice serve`` does: the embedded cluster's
``geoservice_app``, or on an external server ``GEOSERVICE_TEST_APP_DATABASE_URL`` (else a ``geoservice_app`` role
the suite creates there when it may, and never alters when it exists).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from geoservice import db
from geoservice.citygen import City, demo_spec, generate_city
from geoservice.config import Settings, load_settings
from geoservice.crs import metric_crs_for
from geoservice.db.embedded import EmbeddedCluster
from geoservice.demo import load_city

ROOT = Path(__file__).resolve().parent.parent
# Parallel runs in one cluster (e.g. several developers' checkouts) each name their own database.
TEST_DB_NAME = os.environ.get("GEOSERVICE_TEST_DB_NAME", "geoservice_test")
ARTIFACTS = ROOT / "tests" / "artifacts"
TEST_ANALYSIS_SLOTS = 16
# The demo city's metric CRS, chosen from its centre as the settings choose it (EPSG:4547 for Xuchang).
DEMO_METRIC_CRS = metric_crs_for(*demo_spec().center)
SCREENSHOTS = ROOT / "docs" / "screenshots"


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    """The settings the developer or CI runs with (from the environment)."""
    return load_settings()


@pytest.fixture(scope="session")
def test_database_url(base_settings: Settings) -> str:
    """URL of the database the suite owns for this run."""
    explicit = os.environ.get("GEOSERVICE_TEST_DATABASE_URL") or base_settings.database_url
    if explicit:
        return db.database_url(base_settings.replace(database_url=explicit))
    cluster = EmbeddedCluster(base_settings)
    cluster.up()
    cluster.drop_database(TEST_DB_NAME)
    cluster.ensure_database(TEST_DB_NAME)
    return cluster.url(TEST_DB_NAME)


@pytest.fixture(scope="session")
def settings(base_settings: Settings, test_database_url: str) -> Settings:
    """Settings pointing at the suite's database, offline basemap (pages request nothing from other hosts)."""
    # Many analysis slots: the served app and the test client share the database, and a page test's analyses may
    # still run when the next test asks (tests/test_bounded_work.py tests the limit with its own settings).
    return base_settings.replace(database_url=test_database_url, basemap="none", analysis_slots=TEST_ANALYSIS_SLOTS)


@pytest.fixture(scope="session")
def demo_city() -> City:
    """The generated demo city, as the generator produced it (for independent checks)."""
    return generate_city(demo_spec())


@pytest.fixture(scope="session")
def engine(test_database_url: str, demo_city: City) -> Iterator[Engine]:
    """An engine on the suite's database, migrated and loaded with the demo city."""
    engine = db.make_engine(test_database_url)
    with engine.connect() as conn:
        db.upgrade(conn)
        with conn.begin():
            load_city(conn, demo_city)
    yield engine
    engine.dispose()


@pytest.fixture()
def conn(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that is rolled back after the test."""
    with engine.connect() as connection:
        transaction = connection.begin()
        yield connection
        if transaction.is_active:
            transaction.rollback()


@pytest.fixture(scope="session")
def app_database_url(base_settings: Settings, engine: Engine) -> str:
    """URL of the web app's role (``geoservice_app``, read-only) on the suite's database."""
    if not (os.environ.get("GEOSERVICE_TEST_DATABASE_URL") or base_settings.database_url):
        return EmbeddedCluster(base_settings).app_url(TEST_DB_NAME)
    if os.environ.get("GEOSERVICE_TEST_APP_DATABASE_URL"):
        return db.database_url(base_settings.replace(database_url=os.environ["GEOSERVICE_TEST_APP_DATABASE_URL"]))
    return _make_app_role_on_external_server(engine)


def _make_app_role_on_external_server(engine: Engine) -> str:
    import secrets

    from geoservice.db.embedded import APP_ROLE_ATTRIBUTES

    with engine.begin() as conn:
        if db.app_role_exists(conn):
            pytest.fail(f"the test server already has a role {db.APP_ROLE}, which the suite does not alter: set "
                        "GEOSERVICE_TEST_APP_DATABASE_URL to its URL")
        password = secrets.token_urlsafe(24)
        conn.execute(sa.text(f"CREATE ROLE {db.APP_ROLE} {APP_ROLE_ATTRIBUTES} PASSWORD '{password}'"))
        conn.execute(sa.text(f'GRANT CONNECT ON DATABASE "{engine.url.database}" TO {db.APP_ROLE}'))
        db.grant_app_access(conn)
    return engine.url.set(username=db.APP_ROLE, password=password).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def app_settings(settings: Settings, app_database_url: str) -> Settings:
    """The suite's settings with the web app connecting as the read-only app role."""
    return settings.replace(app_database_url=app_database_url)


@pytest.fixture(scope="session")
def app(app_settings: Settings, engine: Engine):
    """The Flask app on the suite's database (demo city loaded by ``engine``), connected as the app role."""
    from geoservice.app import create_app

    return create_app(app_settings)


@pytest.fixture()
def client(app):
    """A Flask test client."""
    return app.test_client()


def demo_import_options(**options):
    """Import options for the demo city (its centre, radius and metric CRS), with ``options`` on top."""
    from geoservice.ingest import ImportOptions

    city = {"city_center": demo_spec().center, "radius_km": 60.0, "metric_crs": DEMO_METRIC_CRS}
    return ImportOptions(**{**city, **options})


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout_s: float = 60) -> None:
    """Poll ``url`` until it answers 200."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout_s} s")
        time.sleep(0.3)


@contextmanager
def serving(env: dict[str, str], *, log_name: str = "serve.log", ready: str = "/healthz") -> Iterator[str]:
    """``geoservice serve`` (gunicorn, 2 workers) on a free port with ``env`` on top of ours; yields its base URL."""
    port = free_port()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with open(ARTIFACTS / log_name, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "geoservice", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers",
             "2"], env={**os.environ, "GEOSERVICE_BASEMAP": "none", **env}, stdout=log, stderr=subprocess.STDOUT,
            cwd=ROOT)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for_http(base + ready)
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture(scope="session")
def served(settings: Settings, app_database_url: str, engine: Engine) -> Iterator[str]:
    """The app served exactly as ``geoservice serve`` serves it (gunicorn, as the app role), on a free port; yields
    its base URL."""
    with serving({"DATABASE_URL": settings.database_url, "GEOSERVICE_APP_DATABASE_URL": app_database_url,
                  "GEOSERVICE_ANALYSIS_SLOTS": str(TEST_ANALYSIS_SLOTS)}) as base:
        yield base


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium driven by Playwright (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser):
    """A fresh desktop page (1280×800, zh-CN) that records console errors and every requested URL."""
    # bypass_csp: Playwright's wait_for_function evaluates with eval, which the pages' policy rightly refuses;
    # tests/test_security_headers.py loads every page with the policy enforced.
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN", bypass_csp=True)
    yield recorded_page(context)
    context.close()


def recorded_page(context):
    """A new page of ``context`` that records console errors (``page.console_errors``) and every URL it requests
    (``page.requested``)."""
    page = context.new_page()
    page.console_errors = []
    page.requested = []
    page.on("console", lambda msg: msg.type == "error" and page.console_errors.append(msg.text))
    page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
    page.on("request", lambda request: page.requested.append(request.url))
    return page


def checksum(conn: Connection) -> str:
    """md5 over every row of every table in key order (bar the times the database keeps: updated_at, and a point's
    live_updated_at, which an import sets to the time of the import): equal checksums mean equal data."""
    parts = []
    for table, key in (("district", "code"), ("subdistrict", "code"), ("community", "code"), ("squad", "id"),
                       ("grid", "code"), ("street", "id"), ("point", "id")):
        parts.append(conn.execute(sa.text(
            "SELECT md5(coalesce(string_agg((to_jsonb(t) - 'updated_at' - 'live_updated_at')::text, '|' "
            f"ORDER BY {key}), '')) "
            f"FROM (SELECT * FROM {table}) t"
        )).scalar_one())
    return ",".join(parts)


@pytest.fixture()
def planned_kiosk(engine):
    """A planned kiosk (committed) on the longest street far from every open kiosk, deleted afterwards."""
    with engine.begin() as c:
        point_id = c.execute(sa.text("""
            WITH kiosks AS (SELECT geom FROM point WHERE kind = 'kiosk' AND status = 'open')
            INSERT INTO point (name, kind, status, geom)
            SELECT '规划岗亭（测试）', 'kiosk', 'planned', ST_LineInterpolatePoint(s.geom, 0.5)
            FROM street s
            WHERE NOT EXISTS (SELECT 1 FROM kiosks k WHERE ST_DWithin(k.geom::geography, s.geom::geography, 1500))
            ORDER BY ST_Length(s.geom::geography) DESC, s.id LIMIT 1
            RETURNING id""")).scalar_one()
    yield point_id
    with engine.begin() as c:
        c.execute(sa.text("DELETE FROM point WHERE id = :id"), {"id": point_id})
