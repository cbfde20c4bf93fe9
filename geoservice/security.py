"""What every response says to the browser, and which host names the service answers to.

Headers on every response — pages, API, OGC, static files and errors alike (``after_request`` runs for all of
them, error handlers included):

- ``Content-Security-Policy``. Pages (``text/html``) may load scripts, styles, fonts and data only from the service
  itself (our ``/static``, Leaflet from ``/static/vendor``), map tiles from the configured basemap's host(s) (none
  offline), and images from ``data:`` URIs (the locate control's CSS icons). ``style-src`` allows inline styles:
  Leaflet and the pages' scripts position markers and labels with ``style`` attributes. Inline scripts are refused
  (every page's script is a file under ``/static``), so text that slips into a page cannot run.
  Everything else (JSON, GeoJSON, CSV, files) gets ``default-src 'none'``: it is never a document that loads
  anything. Both say ``frame-ancestors 'none'``.
- ``X-Frame-Options: DENY`` (frame protection for browsers without CSP level 2), ``X-Content-Type-Options:
  nosniff`` (a JSON or CSV answer is never sniffed into HTML or script), ``Referrer-Policy:
  strict-origin-when-cross-origin`` (other sites — tile servers, Amap, Baidu — learn our origin, never a path or
  query; OpenStreetMap's tile policy asks for the origin).

Trusted hosts: absolute links (the OGC API's ``self``/``next`` links) are built from the request's host, so a
forged ``Host`` header (or ``X-Forwarded-Host`` from a trusted proxy) would put an attacker's address into an answer
that a cache may keep. Flask's ``TRUSTED_HOSTS`` refuses any other host before a URL can be built — even
``request.host`` raises — and the request is answered 400 in the one error shape. The names are ``localhost``,
``127.0.0.1`` and ``GEOSERVICE_TRUSTED_HOSTS``.

TLS (and HSTS), rate limits and request size limits at the edge belong to the reverse proxy: see docs/security.md.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, request
from werkzeug.exceptions import BadRequest, SecurityError

from geoservice.config import Settings
from geoservice.web.maps import basemap

LOCAL_HOSTS = ("localhost", "127.0.0.1")
"""Always answered: ``make run`` and health checks on the machine itself."""
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}
NOT_A_PAGE_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def init_app(app: Flask) -> None:
    """Send the security headers on every response and answer only the trusted host names."""
    settings: Settings = app.config["GEOSERVICE_SETTINGS"]
    app.config["TRUSTED_HOSTS"] = trusted_hosts(settings)
    page_policy = page_content_security_policy(settings)

    @app.before_request
    def refuse_untrusted_host() -> None:
        # Flask found the host untrusted while routing; say so without echoing the forged name.
        if isinstance(request.routing_exception, SecurityError):
            raise BadRequest("the Host header names a host this service does not answer to (the operator lists "
                             "its host names in GEOSERVICE_TRUSTED_HOSTS)")

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        policy = page_policy if response.mimetype == "text/html" else NOT_A_PAGE_POLICY
        response.headers["Content-Security-Policy"] = policy
        response.headers.update(HEADERS)
        return response


def trusted_hosts(settings: Settings) -> list[str]:
    """The host names the service answers to: ``localhost``, ``127.0.0.1`` and the configured ones."""
    names = [*LOCAL_HOSTS, *(name.lower() for name in settings.trusted_hosts)]
    return list(dict.fromkeys(names))


def tile_origins(settings: Settings) -> list[str]:
    """The origins the configured basemap's tiles come from (each Leaflet subdomain spelt out); none offline."""
    layer = basemap(settings)
    if layer is None:
        return []
    url = layer["url"]
    subdomains = layer["options"].get("subdomains", "abc") if "{s}" in url else [""]
    return list(dict.fromkeys(_origin(url.replace("{s}", s)) for s in subdomains))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def page_content_security_policy(settings: Settings) -> str:
    """The Content-Security-Policy of the HTML pages for these settings (the basemap decides the tile hosts)."""
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", *tile_origins(settings)],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())
