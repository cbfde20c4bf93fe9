"""The web app: /healthz, the layer API, the one JSON error shape, and how every map page is built."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from geoservice import db
from geoservice.app import create_app

MIGRATIONS = Path(db.__file__).parent / "migrations" / "versions"


def test_healthz_reports_versions_and_counts(client, conn):
    from datetime import datetime

    from geoservice.models import TABLES

    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    database = body["database"]
    assert database["reachable"] is True
    assert database["postgis"].startswith("3.")
    assert database["pgrouting"].startswith("3.")
    newest = max(p.name.split("_")[0] for p in MIGRATIONS.glob("0*.py"))
    assert database["schema_revision"] == db.head_revision() == newest
    version, changed_at = conn.execute(sa.text("SELECT version, changed_at FROM data_version")).one()
    assert database["data_version"]["version"] == version
    assert datetime.fromisoformat(database["data_version"]["changed_at"]) == changed_at
    # By default no table is counted: the estimates are the planner's statistics (pg_class.reltuples).
    assert "counts" not in database
    stats = dict(conn.execute(sa.text(
        "SELECT c.relname, c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r'")).all())
    estimated = database["estimated_counts"]
    assert set(estimated) == set(TABLES)
    for table, count in estimated.items():
        assert count == (round(stats[table]) if stats[table] >= 0 else None), table
    exact = client.get("/healthz?counts=exact").get_json()["database"]
    assert "estimated_counts" not in exact and set(exact["counts"]) == set(TABLES)
    for table, count in exact["counts"].items():
        assert count == conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
    for bad, fragment in (("?counts=all", "counts must be one of estimated, exact"),
                          ("?counts=", "counts is empty"), ("?verbose=1", "unknown parameter 'verbose'")):
        refused = client.get("/healthz" + bad)
        assert refused.status_code == 400 and fragment in refused.get_json()["description"], bad


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


PAGES = ["/", "/farmer", "/planner"]
PAGE_SCRIPTS = {"/": "citymap.js", "/farmer": "farmer.js", "/planner": "planner.js"}


@pytest.mark.parametrize("path", PAGES)
def test_every_page_is_built_one_way_from_local_assets(client, path):
    """Each map page: one base template (one viewport that allows pinch zoom, zh-CN first), Leaflet and the shared
    script from our /static, its configuration as JSON, no folium and nothing from a CDN."""
    response = client.get(path)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.count('<html lang="zh-CN">') == 1
    viewports = re.findall(r"<meta[^>]*name=\"viewport\"[^>]*>", html)
    assert viewports == ['<meta name="viewport" content="width=device-width, initial-scale=1">']
    scripts = [s.split("?v=")[0] for s in re.findall(r'<script src="([^"]+)"', html)]  # versioned addresses
    assert scripts[:2] == ["/static/vendor/leaflet/leaflet.js", "/static/js/common.js"]
    assert scripts[-1] == "/static/js/" + PAGE_SCRIPTS[path]
    assert all(other not in html for page, other in PAGE_SCRIPTS.items() if page != path)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert all(url.startswith("/") and not url.startswith("//") for url in assets), assets
    assert "folium" not in html.lower()
    for cdn in ("cdn", "code.jquery", "unpkg", "netdna", "leaflet.awesome-markers", "bootstrap"):
        assert cdn not in html.lower(), cdn
    config = json.loads(re.search(r'<script id="page-config" type="application/json">(.*?)</script>', html,
                                  flags=re.S).group(1))
    assert {"messages", "kinds", "map", "basemap", "api"} <= set(config)
    assert config["basemap"] is None  # offline basemap in tests: no tile server in the page at all
    assert "tile.openstreetmap.org" not in html
    assert len(html.encode()) < 300_000


@pytest.mark.browser
@pytest.mark.parametrize("path", PAGES)
def test_every_page_has_one_metric_scale_bar(page, served, path):
    page.goto(served + path)
    scale = page.locator(".leaflet-control-scale-line")
    scale.first.wait_for(timeout=30_000)
    assert scale.count() == 1
    text = scale.inner_text()
    assert re.fullmatch(r"\d+ k?m", text), text
    assert "ft" not in text and "mi" not in text
    assert page.console_errors == []
