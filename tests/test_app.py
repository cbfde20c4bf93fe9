"""The web app: /healthz, the layer API, the one JSON error shape, and the city map page."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from geoservice import db
from geoservice.app import create_app


def test_healthz_reports_versions_and_counts(client, conn):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    database = body["database"]
    assert database["reachable"] is True
    assert database["postgis"].startswith("3.")
    assert database["pgrouting"].startswith("3.")
    assert database["schema_revision"] == db.head_revision() == "0002"
    for table, count in database["counts"].items():
        assert count == conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_healthz_is_503_when_the_database_is_down(settings):
    from tests.conftest import free_port

    down = settings.replace(database_url=f"postgresql://nobody:secret@127.0.0.1:{free_port()}/none")
    response = create_app(down).test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["database"]["reachable"] is False
    assert "secret" not in response.get_data(as_text=True)


@pytest.mark.parametrize(("layer", "table"), [
    ("districts", "district"), ("subdistricts", "subdistrict"), ("communities", "community"),
    ("grids", "grid"), ("streets", "street"), ("points", "point"),
])
def test_layers_return_every_feature(client, conn, layer, table):
    response = client.get(f"/api/v1/layers/{layer}")
    assert response.status_code == 200
    collection = response.get_json()
    assert collection["type"] == "FeatureCollection"
    assert len(collection["features"]) == conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_points_carry_zh_and_en_labels(client):
    features = client.get("/api/v1/layers/points").get_json()["features"]
    station = next(f for f in features if f["properties"]["name"] == "三八路便民服务点")
    props = station["properties"]
    assert props["kind_label"] == {"zh": "便民服务点", "en": "Rest station"}
    assert {a["zh"] for a in props["amenity_labels"]} == {"饮用水", "急救箱", "手机充电", "座椅"}


def test_layer_bbox_selects_by_location(client, conn):
    bbox = (113.80, 34.00, 113.83, 34.03)
    expected = conn.execute(sa.text(
        "SELECT count(*) FROM point WHERE ST_X(geom) BETWEEN :a AND :c AND ST_Y(geom) BETWEEN :b AND :d"
    ), dict(zip("abcd", bbox, strict=True))).scalar_one()
    features = client.get("/api/v1/layers/points?bbox=" + ",".join(map(str, bbox))).get_json()["features"]
    assert 0 < len(features) == expected


@pytest.mark.parametrize(("url", "fragment"), [
    ("/api/v1/layers/rivers", "layer must be one of districts, subdistricts"),
    ("/api/v1/layers/points?bbox=1,2,3", "4 numbers"),
    ("/api/v1/layers/points?bbox=a,2,3,4", "bbox minlon must be a number"),
    ("/api/v1/layers/points?bbox=114,34,113,35", "minlon (114.0) must not be greater than maxlon"),
    ("/api/v1/layers/points?bbox=113,35,114,34", "minlat (35.0) must not be greater than maxlat"),
    ("/api/v1/layers/points?bbox=113,95,114,96", "bbox minlat must be between -90 and 90"),
    ("/api/v1/layers/points?bbox=nan,1,2,3", "finite"),
])
def test_bad_input_gets_a_400_naming_what_is_allowed(client, url, fragment):
    response = client.get(url)
    assert response.status_code == 400
    body = response.get_json()
    assert set(body) == {"code", "description"}
    assert body["code"] == "InvalidParameterValue"
    assert fragment in body["description"]


def test_unknown_api_path_is_a_json_404(client):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert set(response.get_json()) == {"code", "description"}


def test_city_map_page_uses_only_local_assets(client):
    html = client.get("/").get_data(as_text=True)
    assert "/static/vendor/leaflet/leaflet.js" in html
    assert "/api/v1/layers/points" in html
    for cdn in ("jsdelivr", "cdnjs", "code.jquery", "bootstrapcdn", "unpkg"):
        assert cdn not in html
    # offline basemap in tests: no tile server in the page at all
    assert "tile.openstreetmap.org" not in html
    assert len(html.encode()) < 300_000
