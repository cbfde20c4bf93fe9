"""The Flask app factory. Nothing is built at import time: ``create_app`` does it all."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import psycopg2.errors
import sqlalchemy as sa
from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, RequestHeaderFieldsTooLarge, RequestURITooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from geoservice import compression, db, security
from geoservice.config import Settings, load_settings
from geoservice.errors import DatabaseUnavailable, GeoserviceError, TimedOut
from geoservice.results_cache import ResultsCache
from geoservice.web import auth, static_versions

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
JSON_PREFIXES = ("/api", "/ogc", "/healthz", "/tiles")
log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, engine_options: dict[str, Any] | None = None) -> Flask:
    """Build the geoservice web app.

    Args:
        settings: the settings to use; read from the environment (see ``geoservice.config``) when omitted.
        engine_options: extra keyword arguments for the SQLAlchemy engine (tests use a small pool).

    Returns:
        The Flask app, with the database, the blueprints and the error handlers wired in.
    """
    settings = settings or load_settings()
    app = Flask(__name__, static_folder=str(STATIC_DIR), static_url_path="/static", template_folder="web/templates")
    app.config["GEOSERVICE_SETTINGS"] = settings
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    db.init_app(app, db.make_engine(db.app_database_url(settings), **(engine_options or {})),
                db.make_replica_set(settings, **(engine_options or {})))
    app.extensions["geoservice_results"] = ResultsCache()

    from geoservice.api import bp as api_bp
    from geoservice.api.editing import bp as editing_bp
    from geoservice.api.siting import bp as siting_bp
    from geoservice.api.tiles import bp as tiles_bp
    from geoservice.ogc.views import bp as ogc_bp
    from geoservice.web import bp as web_bp
    from geoservice.web.report import bp as report_bp

    app.register_blueprint(api_bp)
    app.register_blueprint(editing_bp)
    app.register_blueprint(siting_bp)
    app.register_blueprint(tiles_bp)
    app.register_blueprint(web_bp)
    app.register_blueprint(report_bp)
    app.register_blueprint(ogc_bp)
    _register_error_handlers(app)
    static_versions.init_app(app)
    compression.init_app(app)
    security.init_app(app)
    auth.init_app(app)
    if settings.trusted_proxies:
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
    return app


def _wants_json() -> bool:
    return request.path.startswith(JSON_PREFIXES)


# Longest request line and header block the app answers; longer ones get 414 / 431 in the JSON shape. gunicorn's own
# limits are lifted (serve.py) so that these answers come from here, not as gunicorn's HTML.
MAX_URL_BYTES = 65_536
MAX_HEADER_BYTES = 16_384
MAX_BODY_BYTES = 1_048_576


def _register_error_handlers(app: Flask) -> None:
    """Turn every error into the one JSON shape under /api, /ogc and /healthz (a page gets a short HTML page)."""
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES

    @app.before_request
    def refuse_oversized_requests():
        if len(request.full_path.encode()) > MAX_URL_BYTES:
            raise RequestURITooLarge(f"the address is longer than {MAX_URL_BYTES} bytes")
        if sum(len(k) + len(v) + 4 for k, v in request.headers.items()) > MAX_HEADER_BYTES:
            raise RequestHeaderFieldsTooLarge(f"the request headers are larger than {MAX_HEADER_BYTES} bytes")

    def respond(status: int, body: dict, headers: dict | None = None):
        if _wants_json():
            response = jsonify(body)
        else:
            response = app.response_class(render_template("error.html", status=status, body=body),
                                          mimetype="text/html")
        response.status_code = status
        response.headers.update(headers or {})
        return response

    def retry(exc: GeoserviceError) -> dict:
        return {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}

    @app.errorhandler(GeoserviceError)
    def handle_geoservice_error(exc: GeoserviceError):
        return respond(exc.status, exc.to_dict(), retry(exc))

    @app.errorhandler(HTTPException)
    def handle_http_exception(exc: HTTPException):
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}  # Allow on a 405
        body = {"code": exc.name.replace(" ", ""), "description": exc.description}
        return respond(exc.code or 500, body, headers)

    @app.errorhandler(sa.exc.DBAPIError)
    @app.errorhandler(sa.exc.TimeoutError)
    def handle_database_error(exc: Exception):
        error = database_error(exc)
        if error is None:
            return handle_unexpected(exc)
        log.warning("%s on %s: %s", error.code, request.path, type(getattr(exc, "orig", None) or exc).__name__)
        return respond(error.status, error.to_dict(), retry(error))

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception):
        log.exception("unhandled error on %s", request.path)
        body = {"code": "InternalError", "description": "an unexpected error occurred; it has been logged"}
        return respond(500, body)


def database_error(exc: Exception) -> GeoserviceError | None:
    """What a database exception means to the user: the database is away, the work ran too long — or None."""
    orig = getattr(exc, "orig", None)
    if isinstance(orig, psycopg2.errors.QueryCanceled):
        return TimedOut("the request ran longer than its time limit and was stopped; narrow it (a smaller area, "
                        "radius or limit) or try again later")
    if isinstance(exc, sa.exc.TimeoutError):
        return DatabaseUnavailable("every database connection is busy; try again in a few seconds")
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError) or getattr(exc, "connection_invalidated",
                                                                                     False):
        return DatabaseUnavailable("the database cannot be reached right now; try again in a few seconds")
    return None
