"""Who is asking: API tokens and login sessions, CSRF, the login page and ``/api/v1/me``.

A request is made by a user when it carries ``Authorization: Bearer <token>`` (scripts; see
:func:`geoservice.accounts.create_token`) or the session cookie that ``POST /login`` sets (pages). Everything else
is the public, which reads.

Sessions are Flask's signed cookie (``geoservice_session``: HttpOnly, SameSite=Lax, Secure in production), signed
with ``GEOSERVICE_SECRET_KEY``. The cookie holds the user's id, the account's ``session_epoch`` at login, a CSRF
token and when it was last used. A session ends after ``GEOSERVICE_SESSION_IDLE_MINUTES`` without a request, when
the account is disabled or its password reset (the epoch moves on), and at ``POST /logout``.

CSRF: a request authenticated by the session cookie with an unsafe method (POST, PUT, PATCH, DELETE) must carry the
session's CSRF token — header ``X-CSRF-Token`` (the pages' JSON calls, from ``<meta name="csrf-token">``) or form
field ``csrf_token`` — else 403. ``POST /login`` checks the token of the session ``GET /login`` opened. A request
with a Bearer token needs none: another site cannot make a browser send it.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, current_app, g, jsonify, redirect, request, session

from geoservice import accounts, budget, db
from geoservice.accounts import ROLE_LABELS, User
from geoservice.config import Settings
from geoservice.errors import ConfigError, Forbidden, TooManyAttempts, Unauthorized
from geoservice.web.i18n import catalogue
from geoservice.web.maps import render_page

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)

SESSION_COOKIE = "geoservice_session"
SECRET_MIN_CHARS = 32
DEV_SECRET_FILE = Path("var/session_secret")
"""Where a development run keeps the session key it generated (relative to the working directory, like var/pg)."""
# Words that mark a key copied from an example rather than generated: refused in production.
EXAMPLE_SECRET_WORDS = ("change", "example", "secret", "default", "replace", "your", "insecure", "password",
                        "xxxx", "dev", "test", "sample", "placeholder", "todo")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
USERNAME_MAX_CHARS = 100


# -- the session key -------------------------------------------------------------------------------------------------

def session_secret(settings: Settings) -> str:
    """The key that signs sessions: ``GEOSERVICE_SECRET_KEY``, or in development one generated once under var/.

    Raises:
        ConfigError: in production, the key is unset, shorter than 32 characters or looks like an example.
    """
    key = settings.secret_key
    if settings.env == "production":
        if not key:
            raise ConfigError("GEOSERVICE_SECRET_KEY must be set in production (at least 32 random characters, e.g. "
                              "python3 -c 'import secrets; print(secrets.token_urlsafe(48))')")
        problem = _weak_secret(key)
        if problem:
            raise ConfigError(f"GEOSERVICE_SECRET_KEY {problem}; set a generated key of at least "
                              f"{SECRET_MIN_CHARS} random characters")
        return key
    if key:
        if _weak_secret(key):
            log.warning("GEOSERVICE_SECRET_KEY %s (refused in production)", _weak_secret(key))
        return key
    return _development_secret(DEV_SECRET_FILE)


def _weak_secret(key: str) -> str | None:
    if len(key) < SECRET_MIN_CHARS:
        return f"is {len(key)} characters long, shorter than {SECRET_MIN_CHARS}"
    lowered = key.lower()
    word = next((w for w in EXAMPLE_SECRET_WORDS if w in lowered), None)
    if word or len(set(key)) < 10:
        return f"looks like an example, not a generated key (it contains {word!r})" if word else \
            "repeats too few characters to be a generated key"
    return None


def _development_secret(path: Path) -> str:
    """The key in ``path``, created (mode 0600) on first use; every worker of one checkout reads the same."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f"{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
        try:
            os.link(draft, path)  # atomic, and refused when another worker was first: then its key is the key
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
        log.warning("%s was readable by others; made private (0600)", path)
    key = path.read_text().strip()
    if len(key) < SECRET_MIN_CHARS:
        raise ConfigError(f"{path} holds no usable session key; delete it and start again")
    return key


# -- wiring --------------------------------------------------------------------------------------------------------

def init_app(app: Flask) -> None:
    """Sessions (key, cookie flags, idle expiry), CSRF checks, the login routes and the page context."""
    settings: Settings = app.config["GEOSERVICE_SETTINGS"]
    app.secret_key = session_secret(settings)
    app.config.update(
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.env == "production",
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=settings.session_idle_minutes),
    )
    app.register_blueprint(bp)
    app.before_request(_check_csrf)
    app.after_request(_private_when_logged_in)
    app.context_processor(lambda: {"csrf_token": csrf_token, "current_user": _user_for_page()})


def _settings() -> Settings:
    return current_app.config["GEOSERVICE_SETTINGS"]


def _user_for_page() -> User | None:
    """The user for a page's corner; None when the database cannot say (the error page of a database outage)."""
    try:
        return current_user()
    except sa.exc.SQLAlchemyError:
        return None


def role_label(role: str) -> dict[str, str]:
    """The zh-CN and English names of a role."""
    zh, en = ROLE_LABELS[role]
    return {"zh": zh, "en": en}


# -- who is asking ---------------------------------------------------------------------------------------------------

def _bearer_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def current_user() -> User | None:
    """The user making this request (from a Bearer token, else the session cookie), or None for the public."""
    if "auth_user" not in g:
        g.auth_user = _identify()
    return g.auth_user


def _identify() -> User | None:
    token = _bearer_token()
    if token is not None:
        g.auth_via = "token"
        with db.get_engine().begin() as conn:  # its own transaction: the token's last use is committed
            user = accounts.user_for_token(conn, token)
        if user is None:
            g.auth_problem = "the API token is unknown, revoked or expired"
        return user
    if request.headers.get("Authorization"):
        g.auth_problem = "the Authorization header must be 'Bearer <token>'"
        return None
    user_id = session.get("uid")
    if user_id is None:
        return None
    g.auth_via = "session"
    idle_s = _settings().session_idle_minutes * 60
    if time.time() - session.get("seen", 0) > idle_s:
        _end_session()
        g.auth_problem = f"the session ended after {_settings().session_idle_minutes} minutes without use; log in again"
        return None
    user = accounts.load_user(db.get_connection(), user_id)
    if user is None or user.session_epoch != session.get("epoch"):
        _end_session()
        g.auth_problem = "the session has ended (the account was disabled or its password reset); log in again"
        return None
    session["seen"] = int(time.time())
    return user


def sees_hidden() -> bool:
    """Whether this request's user sees what the public does not (planned points): planners and admins."""
    user = current_user()
    return user is not None and user.role in accounts.SEES_HIDDEN


def current_actor() -> accounts.Actor:
    """The user making this request and where from, for a write and its audit row.

    Raises:
        Unauthorized: nobody is logged in (or the token or session is no longer valid).
    """
    user = current_user()
    if user is None:
        raise Unauthorized(g.get("auth_problem") or "log in, or send an API token as 'Authorization: Bearer <token>'")
    return accounts.Actor(user=user, address=request.remote_addr,
                          user_agent=(request.user_agent.string or None) and request.user_agent.string[:500])


# -- sessions and CSRF ----------------------------------------------------------------------------------------------

def csrf_token() -> str:
    """The session's CSRF token ('' when the request has no session: the public sends no writes)."""
    return session.get("csrf", "")


def _new_session(user: User | None) -> None:
    """Start a fresh session (a new CSRF token; a login replaces whatever the session held before)."""
    session.clear()
    session.permanent = True
    session["csrf"] = secrets.token_urlsafe(32)
    session["seen"] = int(time.time())
    if user is not None:
        session["uid"] = user.id
        session["epoch"] = user.session_epoch


def _end_session() -> None:
    session.clear()


def _csrf_matches() -> bool:
    expected = session.get("csrf")
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD)
    return bool(expected and sent) and hmac.compare_digest(str(sent), str(expected))


def _check_csrf() -> None:
    """Refuse an unsafe request authenticated by the session cookie without the session's CSRF token."""
    if request.method in SAFE_METHODS or _bearer_token() is not None or request.endpoint == "auth.login":
        return
    if session.get("uid") is not None and not _csrf_matches():
        raise Forbidden(f"missing or wrong CSRF token: send the page's token as the {CSRF_HEADER} header or the "
                        f"{CSRF_FIELD} form field")


def _private_when_logged_in(response: Response) -> Response:
    """A response made for one user (their name in the corner, /api/v1/me) is never kept by a shared cache."""
    if g.get("auth_user") is not None or request.path == "/api/v1/me":
        response.headers["Cache-Control"] = "no-store"
    return response


# -- routes ----------------------------------------------------------------------------------------------------------

@bp.get("/api/v1/me")
def me():
    """Who is logged in: the user, their role, squad and points, and the CSRF token for the page's writes."""
    user = current_user()
    if user is None:
        return jsonify({"user": None})
    return jsonify({"user": {"username": user.username, "display_name": user.display_name, "role": user.role,
                             "role_label": role_label(user.role), "squad": user.squad_name,
                             "points": sorted(user.point_ids)},
                    "csrf_token": csrf_token() if g.get("auth_via") == "session" else None})


def _safe_next(target: str | None, user: User) -> str:
    """Where to go after logging in: a path on this site (never another host), else the user's start page."""
    if target:
        parts = urlsplit(target)
        if target.startswith("/") and not target.startswith(("//", "/\\")) and not parts.scheme and not parts.netloc:
            return target
    if user.role == "kiosk_staff" and "web.staff_page" in current_app.view_functions:
        return "/staff"
    return "/"


def _login_page(status: int, *, error: str | None = None, error_vars: dict | None = None,
                username: str = "", headers: dict | None = None) -> Response:
    """The login form, with an error message (a key of the ``login`` messages) when there is one."""
    error_text = None
    if error is not None:
        error_text = catalogue("login")["zh"][error]
        for name, value in (error_vars or {}).items():
            error_text = error_text.replace("{" + name + "}", str(value))
    html = render_page("login.html", _settings(), page="login", zoom=13, error=error, error_vars=error_vars or {},
                       error_text=error_text, username=username, next_path=request.values.get("next", "")[:500])
    return Response(html, status=status, mimetype="text/html", headers=headers or {})


@bp.get("/login")
def login_form():
    """The login page (zh-CN first, English switch). Opens a session carrying the form's CSRF token."""
    if not session.get("csrf"):
        _new_session(None)
    return _login_page(200)


@bp.post("/login")
def login():
    """Check the form's username and password: a session and a redirect (303), or the form again with why not."""
    refusal = _refuse_form()
    if refusal is not None:
        return refusal
    outcome = _authenticate(request.form["username"], request.form["password"])
    if isinstance(outcome, Response):
        return outcome
    _new_session(outcome)
    return redirect(_safe_next(request.form.get("next"), outcome), code=303)


def _refuse_form() -> Response | None:
    """The form again when its CSRF token is wrong (403) or a field is empty or too long (400); else None."""
    if not _csrf_matches():
        _new_session(None)  # a fresh token for the form shown again
        return _login_page(403, error="login_expired")
    username = request.form.get("username", "")
    password = request.form.get("password", "")
    if not username.strip() or not password:
        return _login_page(400, error="login_missing", username=username[:USERNAME_MAX_CHARS])
    if len(username) > USERNAME_MAX_CHARS or len(password) > accounts.PASSWORD_MAX_CHARS:
        return _login_page(400, error="login_too_long",
                           error_vars={"username": USERNAME_MAX_CHARS, "password": accounts.PASSWORD_MAX_CHARS})
    return None


def _authenticate(username: str, password: str) -> User | Response:
    """The user, or the form again: 401 (wrong, or disabled) or 429 with Retry-After."""
    settings = _settings()
    with db.get_engine().connect() as conn:
        budget.limit(conn, settings, "lookup")  # the counting waits for other attempts on the account at most this
        try:
            return accounts.authenticate(conn, username=username, password=password,
                                         address=request.remote_addr or "unknown", settings=settings)
        except TooManyAttempts as exc:
            return _login_page(429, error="login_locked", error_vars={"minutes": -(-exc.retry_after // 60)},
                               username=username, headers={"Retry-After": str(exc.retry_after)})
        except accounts.DisabledAccount:
            return _login_page(401, error="login_disabled", username=username)
        except Unauthorized:
            return _login_page(401, error="login_failed", username=username)


@bp.post("/logout")
def logout():
    """End the session (its CSRF token was checked before this view) and go to the city map."""
    _end_session()
    return redirect("/", code=303)
