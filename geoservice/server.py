"""Running the app under gunicorn, as ``geoservice serve`` does."""

from __future__ import annotations

from gunicorn.app.base import BaseApplication

from geoservice.config import Settings


class _GunicornApp(BaseApplication):
    """gunicorn driven from Python, so each worker builds its app with our factory and settings."""

    def __init__(self, settings: Settings, options: dict) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:  # newer options are skipped on older gunicorn releases
                self.cfg.set(key, value)

    def load(self):
        from geoservice.app import create_app

        return create_app(self.settings)


def serve(settings: Settings, *, host: str, port: int, workers: int) -> None:
    """Serve until interrupted."""
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": 4,
        "timeout": 120,
        # The app answers over-long request lines and headers itself, as 414/431 in the one JSON error shape
        # (app.MAX_URL_BYTES, MAX_HEADER_BYTES); gunicorn's own limits would answer them first, in HTML. The reverse
        # proxy in front keeps its own limits (docs/security.md).
        "limit_request_line": 0,
        "limit_request_field_size": 0,
        "accesslog": "-",
        "errorlog": "-",
        "loglevel": "info",
        # gunicorn >= 25 opens a control socket at a fixed per-user path; two servers would fight over it.
        "control_socket_disable": True,
    }
    _GunicornApp(settings, options).run()
