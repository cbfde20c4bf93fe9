"""gzip for text responses: GeoJSON, JSON, HTML, CSS, JavaScript, CSV and XML.

A farmer on a phone pays for every byte, and an intranet behind a slow link waits for it: GeoJSON shrinks 10–15×
(the grid layer of a 3,000-grid city, 1.4 MB → 142 KB), Leaflet's script 144 KB → 41 KB
(bench/bench_compression.py). Static files are compressed too (Flask sends them as direct-passthrough file
responses, which ready-made compression extensions leave alone). Nothing else changes: a client that does not say
``Accept-Encoding: gzip`` gets the plain body, and every answer that depends on the header says
``Vary: Accept-Encoding`` so caches keep both.
"""

from __future__ import annotations

import gzip

from flask import Flask, Response, request

MIN_SIZE = 1024
"""Smaller bodies are sent as they are: the gzip header and the CPU would cost more than they save."""
LEVEL = 6
COMPRESSIBLE = frozenset({
    "application/json", "application/geo+json", "application/vnd.oai.openapi+json", "application/schema+json",
    "application/javascript", "text/javascript", "text/html", "text/css", "text/csv", "text/plain",
    "application/xml", "image/svg+xml", "application/vnd.mapbox-vector-tile",
})


def init_app(app: Flask) -> None:
    """Compress the app's text responses for clients that accept gzip."""
    app.after_request(compress_response)


def _accepts_gzip() -> bool:
    for part in request.headers.get("Accept-Encoding", "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def compress_response(response: Response) -> Response:
    """Compress ``response`` in place (gzip) when the client accepts it and it is worth it."""
    if response.mimetype not in COMPRESSIBLE or response.status_code != 200:
        return response
    response.vary.add("Accept-Encoding")
    if "Content-Encoding" in response.headers or not _accepts_gzip():
        return response
    if response.is_streamed and not response.direct_passthrough:
        return response  # a generator: compressing it would hold the whole answer in memory first
    response.direct_passthrough = False  # a static file: read it so it can be compressed
    body = response.get_data()
    if len(body) < MIN_SIZE:
        return response
    response.set_data(gzip.compress(body, compresslevel=LEVEL, mtime=0))
    response.headers["Content-Encoding"] = "gzip"
    etag, _ = response.get_etag()
    if etag:
        # The bytes differ from the plain file's, so the validator can only be weak (as nginx does it); a browser's
        # If-None-Match still matches it (weak comparison) and gets its 304.
        response.set_etag(etag, weak=True)
    return response
