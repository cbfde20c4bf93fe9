"""The Flask app factory. Nothing is built at import time: ``create_app`` does it all."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from geoservice import compression, db, security
from geoservice.config import Settings, load_settings
from geoservice.errors import GeoserviceError
from geoservice.results_cache import ResultsCache

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
JSON_PREFIXES = ("/api", "/ogc", "/healthz")
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
    db.init_app(app, db.make_engine(db.database_url(settings), **(engine_options or {})))
    app.extensions["geoservice_results"] = ResultsCache()

    from geoservice.api import bp as api_bp
    from geoservice.ogc.views import bp as ogc_bp
    from geoservice.web import bp as web_bp

    app.register_blueprint(api_bp)
    app.register_blueprint(web_bp)
    app.register_blueprint(ogc_bp)
    _register_error_handlers(app)
    compression.init_app(app)
    security.init_app(app)
    if settings.trusted_proxies:
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
    return app


def _wants_json() -> bool:
    return request.path.startswith(JSON_PREFIXES)


def _register_error_handlers(app: Flask) -> None:
    """Turn every error into the one JSON shape under /api, /ogc and /healthz."""

    @app.errorhandler(GeoserviceError)
    def handle_geoservice_error(exc: GeoserviceError):
        return jsonify(exc.to_dict()), exc.status

    @app.errorhandler(HTTPException)
    def handle_http_exception(exc: HTTPException):
        if not _wants_json():
            return exc
        body = {"code": exc.name.replace(" ", ""), "description": exc.description}
        return jsonify(body), exc.code

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception):
        log.exception("unhandled error on %s", request.path)
        body = {"code": "InternalError", "description": "an unexpected error occurred; it has been logged"}
        return jsonify(body), 500
