"""Static files addressed by their content: ``/static/js/common.js?v=<hash>``, kept by browsers for a year.

Every ``url_for("static", …)`` in the templates gets ``v``, a short hash of the file's bytes, added here — no
template names a version by hand. A file changed by an upgrade (or by ``make assets``) gets a new address, so a
browser never runs yesterday's script against today's API, and the old one can be kept forever (``immutable``: not
even a revalidation on reload). A request without ``v``, or with a ``v`` that is no longer the file's, is answered
as before and revalidated every time (Flask's ``ETag``/``Last-Modified`` on files, 304 through compression).
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from flask import Flask, Response, request

from geoservice.http_cache import STATIC_MAX_AGE_S

_HASH_CHARS = 12


class _Hashes:
    """Content hashes of static files, recomputed when a file's size or modification time changes."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._known: dict[str, tuple[int, int, str]] = {}
        self._lock = threading.Lock()

    def of(self, filename: str) -> str | None:
        path = (self.root / filename).resolve()
        if not path.is_relative_to(self.root):
            return None
        try:
            stat = path.stat()
        except OSError:
            return None
        with self._lock:
            known = self._known.get(filename)
        if known and known[:2] == (stat.st_size, stat.st_mtime_ns):
            return known[2]
        digest = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()[:_HASH_CHARS]
        with self._lock:
            self._known[filename] = (stat.st_size, stat.st_mtime_ns, digest)
        return digest


def init_app(app: Flask) -> None:
    """Version the app's static URLs and let browsers keep a versioned file for a year."""
    hashes = _Hashes(Path(app.static_folder or os.curdir))

    @app.url_defaults
    def add_version(endpoint: str, values: dict) -> None:
        if endpoint == "static" and "v" not in values:
            digest = hashes.of(values.get("filename", ""))
            if digest:
                values["v"] = digest

    @app.after_request
    def cache_versioned(response: Response) -> Response:
        if request.endpoint != "static" or response.status_code not in (200, 304):
            return response
        wanted = request.args.get("v")
        if wanted and wanted == hashes.of(request.view_args.get("filename", "")):
            response.headers["Cache-Control"] = f"public, max-age={STATIC_MAX_AGE_S}, immutable"
        else:
            response.headers["Cache-Control"] = "no-cache"
        return response
