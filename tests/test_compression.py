"""gzip for text responses: the same bytes after decompression, only when the client asks, never for small bodies."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from geoservice.compression import MIN_SIZE

ROOT = Path(__file__).resolve().parent.parent
GZIP = {"Accept-Encoding": "gzip, deflate, br"}


@pytest.mark.parametrize("url", [
    "/api/v1/layers/grids",  # GeoJSON
    "/ogc/collections/points/items?limit=50",  # GeoJSON under /ogc
    "/api/v1/openapi.json",
    "/api/v1/docs",  # HTML (the map pages differ per request: folium names its elements at random)
    "/api/v1/coverage/grids?radius=300&f=csv",  # a CSV download
])
def test_text_answers_are_gzipped_for_clients_that_accept_it(client, url):
    plain = client.get(url)
    packed = client.get(url, headers=GZIP)
    assert plain.status_code == packed.status_code == 200
    assert "Content-Encoding" not in plain.headers
    assert packed.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in packed.headers["Vary"] and "Accept-Encoding" in plain.headers["Vary"]
    assert gzip.decompress(packed.data) == plain.data
    assert int(packed.headers["Content-Length"]) == len(packed.data) < len(plain.data) / 2


def test_static_files_are_gzipped_and_still_revalidate(client):
    url = "/static/vendor/leaflet/leaflet.js"
    on_disk = (ROOT / "static/vendor/leaflet/leaflet.js").read_bytes()
    packed = client.get(url, headers=GZIP)
    assert packed.status_code == 200
    assert packed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.data) == on_disk
    etag = packed.headers["ETag"]
    assert etag.startswith('W/"')  # the gzipped bytes are not the file's bytes: a weak validator
    again = client.get(url, headers={**GZIP, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""


@pytest.mark.parametrize("accept", ["", "identity", "gzip;q=0", "deflate, br", "gzip; q=0.0"])
def test_no_gzip_unless_the_client_accepts_it(client, accept):
    response = client.get("/api/v1/layers/grids", headers={"Accept-Encoding": accept})
    assert "Content-Encoding" not in response.headers
    assert response.get_json()["type"] == "FeatureCollection"


def test_small_bodies_and_errors_are_sent_as_they_are(client):
    small = client.get("/api/v1/points/search?q=三八路&limit=1", headers=GZIP)
    assert small.status_code == 200 and len(small.data) < MIN_SIZE
    assert "Content-Encoding" not in small.headers
    error = client.get("/api/v1/nearest?lon=200&lat=34", headers=GZIP)
    assert error.status_code == 400
    assert "Content-Encoding" not in error.headers
    assert "lon" in error.get_json()["description"]


def test_binary_downloads_are_not_gzipped(client):
    response = client.get("/api/v1/coverage/grids?radius=300&f=gpkg", headers=GZIP)
    assert response.status_code == 200
    assert "Content-Encoding" not in response.headers
    assert response.data[:16] == b"SQLite format 3\x00"
