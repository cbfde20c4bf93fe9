"""Logging in: the form and its CSRF token, sessions (cookie flags, idle expiry, disable, password reset), the
failed-login limits (also across two gunicorn workers), the session key in production, and one browser login.

Failed logins are counted per client address, so every test that fails logins on purpose comes from an address of
its own (``REMOTE_ADDR`` of the test client), and the served tests clear 127.0.0.1's failures before and after.
"""

from __future__ import annotations

import http.cookiejar
import itertools
import json
import os
import re
import secrets
import stat
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime

import psutil
import pytest
import sqlalchemy as sa

from geoservice import accounts
from geoservice.app import create_app
from geoservice.errors import ConfigError, Unauthorized
from geoservice.web import auth
from geoservice.web.i18n import catalogue
from tests.accounts_helpers import PASSWORD, add_user, unique_username
from tests.conftest import TEST_ANALYSIS_SLOTS, recorded_page, serving
from tests.test_cli import run_cli

LOGIN = catalogue("login")
_addresses = itertools.count(1)


def client_from_new_address(app):
    """A test client whose requests come from an address no other test uses (10.77.x.y)."""
    n = next(_addresses) + os.getpid() % 200 * 250
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = f"10.77.{n // 250 % 250}.{n % 250 + 1}"
    return client


def form_token(html: str) -> str:
    """The csrf_token field of the login form in ``html``."""
    return re.search(r'name="csrf_token" value="([^"]*)"', html).group(1)


def meta_token(html: str) -> str:
    return re.search(r'<meta name="csrf-token" content="([^"]*)"', html).group(1)


def log_in(client, username: str, password: str = PASSWORD, **fields):
    """GET /login, then POST the form with its token; the POST's response."""
    token = form_token(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token, **fields})


def me(client, **kwargs) -> dict | None:
    return client.get("/api/v1/me", **kwargs).get_json()["user"]


def failures(engine, **where) -> int:
    column, value = next(iter(where.items()))
    with engine.connect() as c:
        return c.execute(sa.text(f"SELECT count(*) FROM login_failure WHERE {column} = :v"), {"v": value}).scalar_one()


# -- the form --------------------------------------------------------------------------------------------------------

def test_the_login_page_is_chinese_first_with_an_english_switch_and_no_inline_script(client):
    response = client.get("/login")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert '<html lang="zh-CN">' in html and LOGIN["zh"]["heading"] in html and LOGIN["zh"]["page_title"] in html
    assert 'id="lang-switch"' in html and 'data-i18n="heading"' in html
    config = json.loads(re.search(r'<script id="page-config" type="application/json">(.*?)</script>', html,
                                  re.S).group(1))
    assert config["messages"]["en"]["heading"] == "Staff login"
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert all("src=" in attrs or 'type="application/json"' in attrs for attrs, _ in scripts)
    assert '/static/js/login.js' in html
    assert form_token(html) and form_token(html) == meta_token(html)
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


def test_the_session_cookie_flags(client, app_settings, engine):
    cookie = client.get("/login").headers["Set-Cookie"]
    assert cookie.startswith("geoservice_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    production = create_app(app_settings.replace(env="production", secret_key=secrets.token_urlsafe(48)))
    cookie = production.test_client().get("/login").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "; Secure" in cookie


def test_logging_in_puts_the_name_and_role_in_the_corner(app, engine):
    user, _ = add_user(engine, "officer", display_name="王<b>伟</b>")
    client = client_from_new_address(app)
    anonymous = client.get("/").get_data(as_text=True)
    assert 'href="/login?next=/"' in anonymous and "王" not in anonymous
    response = log_in(client, user.username)
    assert response.status_code == 303 and response.headers["Location"] == "/"
    for path in ("/", "/farmer", "/planner"):
        html = client.get(path).get_data(as_text=True)
        corner = html[html.index('<nav class="account-corner"'):]
        corner = corner[:corner.index("</nav>")]
        assert '<span class="account-name">王&lt;b&gt;伟&lt;/b&gt;</span>' in corner, path
        assert ">中队队员</span>" in corner and 'data-i18n="role_officer"' in corner
        assert 'action="/logout"' in corner and f'value="{meta_token(html)}"' in corner
    page = client.get("/")
    assert page.headers["Cache-Control"] == "no-store"  # a page with a name in it is kept by no shared cache
    body = client.get("/api/v1/me").get_json()
    assert body["user"]["username"] == user.username and body["user"]["squad"] == user.squad_name
    assert body["user"]["role_label"] == {"zh": "中队队员", "en": "Squad officer"}
    assert body["csrf_token"] == meta_token(page.get_data(as_text=True))


@pytest.mark.parametrize("next_path,location", [
    ("/planner", "/planner"),
    ("/farmer?lang=en", "/farmer?lang=en"),
    ("//evil.example/", "/"),
    ("https://evil.example/", "/"),
    ("/\\evil.example", "/"),
    ("javascript:alert(1)", "/"),
])
def test_after_login_only_a_path_on_this_site(app, engine, next_path, location):
    user, _ = add_user(engine, "planner")
    response = log_in(client_from_new_address(app), user.username, next=next_path)
    assert response.status_code == 303 and response.headers["Location"] == location


def test_a_login_replaces_the_session_and_its_csrf_token(app, engine):
    user, _ = add_user(engine, "planner")
    client = client_from_new_address(app)
    before = form_token(client.get("/login").get_data(as_text=True))
    client.post("/login", data={"username": user.username, "password": PASSWORD, "csrf_token": before})
    after = client.get("/api/v1/me").get_json()["csrf_token"]
    assert after and after != before


@pytest.mark.parametrize("form,status,message", [
    ({"username": "", "password": PASSWORD}, 400, "login_missing"),
    ({"username": "   ", "password": PASSWORD}, 400, "login_missing"),
    ({"username": "someone", "password": ""}, 400, "login_missing"),
    ({"password": PASSWORD}, 400, "login_missing"),
    ({"username": "u" * 101, "password": PASSWORD}, 400, "login_too_long"),
    ({"username": "someone", "password": "p" * 1025}, 400, "login_too_long"),
])
def test_bad_form_input_is_a_400_saying_what_is_wrong(app, engine, form, status, message):
    client = client_from_new_address(app)
    token = form_token(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={**form, "csrf_token": token})
    html = response.get_data(as_text=True)
    assert response.status_code == status
    assert f'data-i18n="{message}"' in html
    expected = LOGIN["zh"][message].replace("{username}", "100").replace("{password}", "1024")
    assert expected in html
    assert failures(engine, address=client.environ_base["REMOTE_ADDR"]) == 0  # not a guess: not counted


# -- CSRF ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("token", [None, "", "wrong-token"])
def test_a_login_without_the_forms_csrf_token_is_403(app, engine, token):
    user, _ = add_user(engine, "planner")
    client = client_from_new_address(app)
    client.get("/login")
    data = {"username": user.username, "password": PASSWORD}
    if token is not None:
        data["csrf_token"] = token
    response = client.post("/login", data=data)
    assert response.status_code == 403
    assert LOGIN["zh"]["login_expired"] in response.get_data(as_text=True)
    assert me(client) is None


def test_a_login_with_another_sessions_token_is_403(app, engine):
    user, _ = add_user(engine, "planner")
    other = form_token(client_from_new_address(app).get("/login").get_data(as_text=True))
    client = client_from_new_address(app)
    client.get("/login")
    response = client.post("/login", data={"username": user.username, "password": PASSWORD, "csrf_token": other})
    assert response.status_code == 403 and me(client) is None


def test_a_session_write_needs_the_csrf_token(app, engine):
    user, token = add_user(engine, "planner")
    client = client_from_new_address(app)
    log_in(client, user.username)
    csrf = client.get("/api/v1/me").get_json()["csrf_token"]
    for headers, data in (({}, {}), ({"X-CSRF-Token": "wrong"}, {}), ({}, {"csrf_token": "wrong"})):
        refused = client.post("/logout", headers=headers, data=data)
        assert refused.status_code == 403, (headers, data)
        assert "missing or wrong CSRF token" in refused.get_data(as_text=True)
        assert me(client)["username"] == user.username  # still logged in
    # A JSON API write with the wrong header is refused in the JSON error shape.
    refused = client.post("/api/v1/me", headers={"X-CSRF-Token": "wrong"}, json={})
    assert refused.status_code == 403
    assert refused.get_json() == {"code": "Forbidden", "description": refused.get_json()["description"]}
    assert "missing or wrong CSRF token" in refused.get_json()["description"]
    # A Bearer request needs none, even with the session cookie beside it.
    assert client.post("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 405
    # The right token in the header works; so does the form field.
    assert client.post("/logout", headers={"X-CSRF-Token": csrf}).status_code == 303
    assert me(client) is None
    log_in(client, user.username)
    csrf = client.get("/api/v1/me").get_json()["csrf_token"]
    assert client.post("/logout", data={"csrf_token": csrf}).status_code == 303
    assert me(client) is None


def test_the_public_writing_gets_no_csrf_refusal(client):
    # No session login: nothing for a forged request to use. The answer is the route's own (here 405), never 403.
    assert client.post("/api/v1/me").status_code == 405
    assert client.post("/logout").status_code == 303


# -- sessions end ----------------------------------------------------------------------------------------------------

def test_a_session_ends_after_the_idle_time(app, app_settings, engine):
    user, _ = add_user(engine, "planner")
    client = client_from_new_address(app)
    log_in(client, user.username)
    idle_s = app_settings.session_idle_minutes * 60
    with client.session_transaction() as session:
        session["seen"] = int(time.time()) - idle_s + 60  # used a minute short of the idle time ago
    assert me(client)["username"] == user.username
    with client.session_transaction() as session:
        assert session["seen"] >= int(time.time()) - 5  # that request counted as use
        session["seen"] = int(time.time()) - idle_s - 5
    assert me(client) is None
    html = client.get("/").get_data(as_text=True)
    assert 'href="/login?next=/"' in html and "account-name" not in html
    with client.session_transaction() as session:
        assert "uid" not in session  # ended, not only ignored


def test_the_idle_time_is_the_cookies_lifetime(app, app_settings):
    assert app.permanent_session_lifetime.total_seconds() == app_settings.session_idle_minutes * 60
    short = create_app(app_settings.replace(session_idle_minutes=7))
    assert short.permanent_session_lifetime.total_seconds() == 7 * 60
    cookie = short.test_client().get("/login").headers["Set-Cookie"]
    expires = re.search(r"Expires=([^;]+)", cookie).group(1)
    assert abs(parsedate_to_datetime(expires).timestamp() - (time.time() + 7 * 60)) < 30


@pytest.mark.parametrize("change", ["disable", "reset_password"])
def test_a_disabled_account_or_a_reset_password_ends_the_session(app, engine, change):
    user, token = add_user(engine, "kiosk_staff")
    client = client_from_new_address(app)
    log_in(client, user.username)
    assert me(client)["username"] == user.username
    with engine.begin() as c:
        if change == "disable":
            accounts.disable(c, user.username)
        else:
            accounts.reset_password(c, user.username, "a brand new password")
    assert me(client) is None
    with client.session_transaction() as session:
        assert "uid" not in session
    assert (me(client, headers={"Authorization": f"Bearer {token}"}) is None) == (change == "disable")
    if change == "reset_password":
        assert log_in(client, user.username).status_code == 401
        assert log_in(client, user.username, "a brand new password").status_code == 303


def test_a_disabled_account_cannot_log_in(app, engine):
    user, _ = add_user(engine, "planner")
    with engine.begin() as c:
        accounts.disable(c, user.username)
    client = client_from_new_address(app)
    response = log_in(client, user.username)
    assert response.status_code == 401
    assert LOGIN["zh"]["login_disabled"] in response.get_data(as_text=True)
    assert log_in(client, user.username, "not the password").status_code == 401
    assert me(client) is None


def test_write_without_login_says_why(app, engine):
    """current_actor: 401 naming the reason (no login, a bad token, a malformed header)."""
    cases = [({}, "log in, or send an API token"),
             ({"Authorization": "Bearer gs_unknown"}, "the API token is unknown, revoked or expired"),
             ({"Authorization": "Basic dXNlcjpwdw=="}, "must be 'Bearer <token>'")]
    for headers, fragment in cases:
        with app.test_request_context("/api/v1/points", method="POST", headers=headers):
            with pytest.raises(Unauthorized, match=re.escape(fragment)):
                auth.current_actor()
    user, token = add_user(engine, "planner")
    with app.test_request_context("/", headers={"Authorization": f"Bearer {token}", "User-Agent": "probe/1"},
                                  environ_base={"REMOTE_ADDR": "192.0.2.7"}):
        actor = auth.current_actor()
    assert (actor.user.username, actor.address, actor.user_agent) == (user.username, "192.0.2.7", "probe/1")


# -- failed logins ---------------------------------------------------------------------------------------------------

def test_a_wrong_password_is_401_and_counted(app, engine):
    user, _ = add_user(engine, "planner")
    client = client_from_new_address(app)
    response = log_in(client, user.username, "not the password")
    html = response.get_data(as_text=True)
    assert response.status_code == 401 and LOGIN["zh"]["login_failed"] in html
    assert f'value="{user.username}"' in html  # the username stays in the form
    assert failures(engine, username=user.username) == 1
    assert failures(engine, address=client.environ_base["REMOTE_ADDR"]) == 1
    # An unknown username is the same answer, and counted too.
    response = log_in(client, "no-such-user-" + user.username[-6:], "whatever password")
    assert response.status_code == 401 and LOGIN["zh"]["login_failed"] in response.get_data(as_text=True)
    assert failures(engine, address=client.environ_base["REMOTE_ADDR"]) == 2
    # Usernames are compared in lower case.
    assert log_in(client, user.username.upper()).status_code == 303


def test_the_account_limit_then_429_with_retry_after(app, app_settings, engine):
    user, _ = add_user(engine, "planner")
    limit, window_s = app_settings.login_max_failures, app_settings.login_window_minutes * 60
    statuses = [log_in(client_from_new_address(app), user.username, "wrong password").status_code
                for _ in range(limit)]
    assert statuses == [401] * limit
    for password in ("wrong password", PASSWORD):  # refused without looking at the password
        response = log_in(client_from_new_address(app), user.username, password)
        assert response.status_code == 429
        assert window_s - 60 <= int(response.headers["Retry-After"]) <= window_s
        minutes = -(-int(response.headers["Retry-After"]) // 60)
        assert LOGIN["zh"]["login_locked"].replace("{minutes}", str(minutes)) in response.get_data(as_text=True)
    assert failures(engine, username=user.username) == limit  # refusals are not counted
    # When the oldest failure leaves the window, one attempt is allowed again.
    with engine.begin() as c:
        c.execute(sa.text("UPDATE login_failure SET at = at - make_interval(secs => :s) WHERE id = "
                          "(SELECT min(id) FROM login_failure WHERE username = :u)"),
                  {"s": window_s + 1, "u": user.username})
    assert log_in(client_from_new_address(app), user.username).status_code == 303
    assert failures(engine, username=user.username) == 0


def test_a_good_login_forgets_the_accounts_failures(app, app_settings, engine):
    user, _ = add_user(engine, "planner")
    limit = app_settings.login_max_failures
    client = client_from_new_address(app)
    for _ in range(limit - 1):
        assert log_in(client, user.username, "wrong password").status_code == 401
    assert log_in(client, user.username).status_code == 303
    assert failures(engine, username=user.username) == 0
    statuses = [log_in(client_from_new_address(app), user.username, "wrong password").status_code
                for _ in range(limit + 1)]
    assert statuses == [401] * limit + [429]


def test_the_address_limit(app, app_settings, engine):
    limit = app_settings.login_address_max_failures
    client = client_from_new_address(app)
    statuses = [log_in(client, unique_username("guess"), "wrong password").status_code for _ in range(limit)]
    assert statuses == [401] * limit
    user, _ = add_user(engine, "planner")
    response = log_in(client, user.username)
    assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0
    assert log_in(client_from_new_address(app), user.username).status_code == 303  # another address may


# -- the session key -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("secret,fragment", [
    (None, "GEOSERVICE_SECRET_KEY must be set in production"),
    ("", "GEOSERVICE_SECRET_KEY must be set in production"),
    ("s3cr3t-but-short", "is 16 characters long, shorter than 32"),
    ("change-me-to-a-long-random-string-please", "looks like an example"),
    ("your-production-key-goes-here-0123456789", "looks like an example"),
    ("x" * 48, "looks like an example"),
    ("0" * 48, "repeats too few characters"),
    ("abababababababababababababababababababab", "repeats too few characters"),
])
def test_production_refuses_a_missing_or_example_key(app_settings, secret, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        create_app(app_settings.replace(env="production", secret_key=secret))


def test_production_starts_with_a_generated_key(app_settings):
    key = secrets.token_urlsafe(48)
    assert create_app(app_settings.replace(env="production", secret_key=key)).secret_key == key


@pytest.mark.parametrize("secret", [None, "short"])
def test_serve_refuses_in_one_line_without_a_proper_key_in_production(secret):
    env = {"GEOSERVICE_ENV": "production", "GEOSERVICE_SECRET_KEY": secret or ""}
    result = run_cli("serve", "--port", "1", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("geoservice: GEOSERVICE_SECRET_KEY") and result.stderr.count("\n") == 1


def test_the_development_key_is_made_once_and_private(tmp_path, monkeypatch, app_settings):
    monkeypatch.chdir(tmp_path)
    settings = app_settings.replace(secret_key=None)
    first = auth.session_secret(settings)
    path = tmp_path / auth.DEV_SECRET_FILE
    assert path.read_text() == first and len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert auth.session_secret(settings) == first
    path.chmod(0o644)
    assert auth.session_secret(settings) == first and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(tmp_path.joinpath("var").iterdir()) == [path]  # no draft left behind


def test_the_development_key_is_one_for_racing_workers(tmp_path):
    path = tmp_path / "var" / "session_secret"
    barrier = threading.Barrier(8)

    def make():
        barrier.wait()
        return auth._development_secret(path)

    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: make(), range(8)))
    assert keys == {path.read_text()}


# -- across gunicorn workers -----------------------------------------------------------------------------------------

class Browserless:
    """A client with its own cookie jar, for the served app (no redirects followed)."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
                                                  self._NoRedirect())

    def request(self, path: str, data: dict | None = None) -> tuple[int, dict, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        try:
            with self.opener.open(self.base + path, data=body, timeout=60) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode()

    def login_form(self) -> str:
        status, _, html = self.request("/login")
        assert status == 200
        return form_token(html)


def _workers_with_database_connections(base: str, pg_port: int) -> tuple[list[int], set[int]]:
    """The gunicorn workers serving ``base`` and those of them holding a connection to PostgreSQL."""
    port = int(base.rsplit(":", 1)[1])
    listener = next(psutil.Process(c.pid) for c in psutil.net_connections("tcp")
                    if c.status == psutil.CONN_LISTEN and c.laddr.port == port and c.pid)
    # The master and its workers share the listening socket; psutil names one of them.
    master = listener if listener.children() else listener.parent()
    workers = master.children()
    connected = {w.pid for w in workers
                 if any(c.raddr and c.raddr.port == pg_port for c in w.net_connections("tcp"))}
    return [w.pid for w in workers], connected


def _parallel_attempts(clients: list[tuple[Browserless, str]], username_of, password: str) -> list[int]:
    """Every client posts its login form at the same moment; their statuses."""
    barrier = threading.Barrier(len(clients))

    def attempt(i: int) -> int:
        client, token = clients[i]
        barrier.wait()
        return client.request("/login", {"username": username_of(i), "password": password, "csrf_token": token})[0]

    with ThreadPoolExecutor(len(clients)) as pool:
        return list(pool.map(attempt, range(len(clients))))


def test_the_login_limits_hold_across_two_gunicorn_workers(settings, app_database_url, engine):
    """Parallel guesses spread over both workers of `geoservice serve` get exactly the limit, no more.

    Per-process counters would let each worker allow its own quota. The server is ready when /login answers (which
    touches no database), so a worker holding a database connection afterwards has served a login attempt: both
    must have.
    """
    per_account, per_address, attempts = 3, 8, 16
    user, _ = add_user(engine, "planner")
    with engine.begin() as c:
        c.execute(sa.text("DELETE FROM login_failure WHERE address = '127.0.0.1'"))
    env = {"DATABASE_URL": settings.database_url, "GEOSERVICE_APP_DATABASE_URL": app_database_url,
           "GEOSERVICE_ANALYSIS_SLOTS": str(TEST_ANALYSIS_SLOTS),
           "GEOSERVICE_LOGIN_MAX_FAILURES": str(per_account),
           "GEOSERVICE_LOGIN_ADDRESS_MAX_FAILURES": str(per_address)}
    try:
        with serving(env, log_name="serve-login-limits.log", ready="/login") as base:
            workers, connected = _workers_with_database_connections(base, settings_port(settings))
            assert len(workers) == 2 and connected == set()
            clients = [(client, client.login_form()) for client in (Browserless(base) for _ in range(attempts))]
            statuses = _parallel_attempts(clients, lambda i: user.username, "wrong password")
            assert sorted(statuses) == [401] * per_account + [429] * (attempts - per_account)
            # The address has per_account failures; fresh usernames fill it to its limit, then it is refused.
            clients = [(client, client.login_form()) for client in (Browserless(base) for _ in range(attempts))]
            names = [unique_username("guess") for _ in range(attempts)]
            statuses = _parallel_attempts(clients, lambda i: names[i], "wrong password")
            free = per_address - per_account
            assert sorted(statuses) == [401] * free + [429] * (attempts - free)
            assert failures(engine, address="127.0.0.1") == per_address
            _, connected = _workers_with_database_connections(base, settings_port(settings))
            assert connected == set(workers), "every worker served login attempts"
            # One session key for both workers: a login holds on every request, whichever worker answers.
            with engine.begin() as c:
                c.execute(sa.text("DELETE FROM login_failure WHERE address = '127.0.0.1'"))
            other, _ = add_user(engine, "planner")
            client = Browserless(base)
            status, headers, _ = client.request("/login", {"username": other.username, "password": PASSWORD,
                                                           "csrf_token": client.login_form()})
            assert status == 303
            # urllib opens a new connection for each request: they land on either worker.
            answers = [json.loads(client.request("/api/v1/me")[2])["user"] for _ in range(12)]
            assert all(a and a["username"] == other.username for a in answers)
    finally:
        with engine.begin() as c:
            c.execute(sa.text("DELETE FROM login_failure WHERE address = '127.0.0.1'"))


def settings_port(settings) -> int:
    """The PostgreSQL port of the suite's database."""
    return sa.engine.make_url(settings.database_url).port


# -- in the browser --------------------------------------------------------------------------------------------------

@pytest.mark.browser
def test_a_user_logs_in_in_the_browser_and_sees_their_name_in_the_corner(browser, served, engine):
    user, _ = add_user(engine, "planner", display_name="规划员<i>周</i>")
    # The page's policy is enforced here (no bypass): the login page runs no inline script.
    context = browser.new_context(viewport={"width": 360, "height": 740}, locale="zh-CN")
    page = recorded_page(context)
    violations = []
    page.on("console", lambda m: "Content Security Policy" in m.text and violations.append(m.text))
    try:
        page.goto(served + "/planner")
        page.get_by_role("link", name="登录").click()
        page.wait_for_url("**/login?next=/planner")
        page.get_by_role("button", name="English").click()
        assert page.get_by_role("heading").inner_text() == "Staff login"
        page.get_by_label("Username").fill(user.username)
        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Log in", exact=True).click()
        page.wait_for_selector("html[lang='en'] #login-error")  # the answer's page, switched by login.js
        assert page.locator("#login-error").inner_text() == "Wrong username or password."  # still in English
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in", exact=True).click()
        page.wait_for_url(served + "/planner")
        corner = page.locator(".account-corner")
        assert corner.locator(".account-name").inner_text() == "规划员<i>周</i>"  # shown as text
        assert corner.locator(".account-role").inner_text() == "规划人员"
        cookies = {c["name"]: c for c in context.cookies()}
        assert cookies["geoservice_session"]["httpOnly"] and cookies["geoservice_session"]["sameSite"] == "Lax"
        assert page.evaluate("document.cookie") == ""  # HttpOnly: no script reads the session
        page.get_by_role("button", name="退出").click()
        page.wait_for_url(served + "/")
        assert page.locator(".account-corner .account-name").count() == 0
        assert page.locator(".account-corner a").inner_text() == "登录"
        assert violations == []
        # The one console error is Chromium's note of the 401 answer to the wrong password.
        assert [e for e in page.console_errors if "status of 401" not in e] == []
    finally:
        context.close()
