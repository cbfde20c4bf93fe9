"""The coverage and service-area endpoints over HTTP, and the OpenAPI description of /api/v1.

Totals are checked against the street table measured independently on the WGS 84 ellipsoid (pyproj); areas
against the geodesic circle. The core functions behind these endpoints are checked in depth in test_coverage.py
and test_network.py.
"""

from __future__ import annotations

import math

import pytest
import sqlalchemy as sa
from openapi_spec_validator import validate
from pyproj import Geod
from shapely import wkb
from shapely.geometry import shape

from tests.test_network import StreetGraph

GEOD = Geod(ellps="WGS84")


def geodesic_km(geom) -> float:
    return GEOD.geometry_length(geom) / 1000


@pytest.fixture(scope="module")
def street_km(engine) -> float:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT ST_AsBinary(geom) FROM street")).scalars().all()
    return sum(geodesic_km(wkb.loads(bytes(r))) for r in rows)


@pytest.mark.parametrize(("query", "radius"), [
    ("", 500), ("radius=300&kind=toilet", 300), ("kind=toilet", 300), ("radius=800&mode=walk", 800),
])
def test_uncovered_streets_summary_adds_up_to_the_measured_network(client, street_km, query, radius):
    response = client.get("/api/v1/coverage/streets?" + query)
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "application/geo+json"
    body = response.get_json()
    summary = body["summary"]
    assert summary["radius_m"] == radius
    assert summary["total_km"] == pytest.approx(street_km, rel=1e-3)
    assert summary["covered_km"] + summary["uncovered_km"] == pytest.approx(summary["total_km"], abs=0.002)
    assert summary["covered_pct"] == pytest.approx(100 * summary["covered_km"] / summary["total_km"], abs=0.01)
    per_street = sum(r["uncovered_km"] for r in summary["uncovered_by_street"])
    assert per_street == pytest.approx(summary["uncovered_km"], abs=0.001 * len(summary["uncovered_by_street"]))
    drawn = sum(geodesic_km(shape(f["geometry"])) for f in body["features"])
    assert drawn == pytest.approx(summary["uncovered_km"], rel=2e-3)


def test_walking_leaves_more_uncovered_than_straight(client):
    straight = client.get("/api/v1/coverage/streets?radius=500").get_json()["summary"]
    walk = client.get("/api/v1/coverage/streets?radius=500&mode=walk").get_json()["summary"]
    assert walk["uncovered_km"] > straight["uncovered_km"]


def test_the_planted_uncovered_streets_are_reported_by_the_endpoint(client, demo_city):
    corner = next(d for d in demo_city.defects if d["type"] == "uncovered_streets")
    x0, y0, x1, y1 = corner["geom"].bounds
    body = client.get(f"/api/v1/coverage/streets?bbox={x0},{y0},{x1},{y1}").get_json()
    assert body["summary"]["covered_km"] == 0
    assert set(corner["streets"]) <= {r["name"] for r in body["summary"]["uncovered_by_street"]}


def test_grid_coverage_lists_every_grid_weakest_first(client, conn):
    grids = client.get("/api/v1/coverage/grids?radius=500").get_json()["grids"]
    assert len(grids) == conn.execute(sa.text("SELECT count(*) FROM grid")).scalar_one()
    assert len({g["code"] for g in grids}) == len(grids)
    # Grids without streets have no percentage and come last.
    percentages = [g["covered_pct"] for g in grids]
    measured = [p for p in percentages if p is not None]
    assert percentages == measured + [None] * (len(grids) - len(measured))
    assert measured == sorted(measured)
    for g in grids:
        assert g["covered_km"] + g["uncovered_km"] == pytest.approx(g["street_km"], abs=0.002)


@pytest.mark.parametrize("radius", [200, 500, 1000])
def test_straight_service_area_is_the_geodesic_circle(client, conn, radius):
    point_id = conn.execute(sa.text("SELECT id FROM point WHERE name = '三八路便民服务点'")).scalar_one()
    response = client.get(f"/api/v1/points/{point_id}/service-area?radius={radius}&mode=straight")
    assert response.status_code == 200, response.get_json()
    feature = response.get_json()
    area, _ = GEOD.geometry_area_perimeter(shape(feature["geometry"]))
    assert abs(area) == pytest.approx(math.pi * radius**2, rel=0.01)
    assert feature["properties"]["area_m2"] == pytest.approx(abs(area), rel=0.01)


def test_walking_service_area_is_inside_the_straight_one(client, conn):
    point_id, lon, lat = conn.execute(sa.text(
        "SELECT id, ST_X(geom), ST_Y(geom) FROM point WHERE name = '三八路便民服务点'")).one()
    offset = StreetGraph(conn).snap(lon, lat)[2]
    walk = shape(client.get(f"/api/v1/points/{point_id}/service-area?radius=500").get_json()["geometry"])
    straight = shape(client.get(f"/api/v1/points/{point_id}/service-area?radius={525 + offset + 1}&mode=straight")
                     .get_json()["geometry"])
    # The walking area is the streets reachable from the point's snapped position, buffered by 25 m: within the
    # circle of 500 m + 25 m + the snap offset around the point.
    assert straight.buffer(1e-6).contains(walk)
    assert 0 < abs(GEOD.geometry_area_perimeter(walk)[0]) < abs(GEOD.geometry_area_perimeter(straight)[0])


def test_service_area_of_a_missing_point_is_a_json_404(client):
    response = client.get("/api/v1/points/99999999/service-area")
    assert response.status_code == 404
    assert set(response.get_json()) == {"code", "description"}
    assert "99999999" in response.get_json()["description"]


@pytest.mark.parametrize(("url", "fragment"), [
    ("/api/v1/coverage/streets?radius=0", "radius must be"),
    ("/api/v1/coverage/streets?radius=-5", "radius must be"),
    ("/api/v1/coverage/streets?radius=1e9", "radius must be"),
    ("/api/v1/coverage/streets?radius=far", "radius must be a number"),
    ("/api/v1/coverage/streets?radius=nan", "radius must be"),
    ("/api/v1/coverage/streets?mode=bike", "mode must be one of straight, walk"),
    ("/api/v1/coverage/streets?kind=spaceport", "unknown kind 'spaceport'; allowed: kiosk"),
    ("/api/v1/coverage/streets?bbox=113.9,34,113.8,34.1", "bbox"),
    ("/api/v1/coverage/streets?bbox=1,2,3", "bbox"),
    ("/api/v1/coverage/streets?district=4110", "district must be a 6-digit district code"),
    ("/api/v1/coverage/streets?distance=500", "unknown parameter 'distance'"),
    ("/api/v1/coverage/grids?radius=0", "radius must be"),
    ("/api/v1/coverage/grids?kind=kiosk&kind=castle", "unknown kind 'castle'"),
    ("/api/v1/points/1/service-area?radius=0", "radius must be"),
    ("/api/v1/points/1/service-area?mode=swim", "mode must be one of straight, walk"),
    ("/api/v1/grids/at?lon=113.8", "lat required"),
    ("/api/v1/grids/at?lon=34.02&lat=113.82", "look swapped"),
    ("/api/v1/coverage/grid-gaps?min_area=-1", "min_area must be"),
])
def test_bad_input_is_a_400_naming_the_parameter(client, url, fragment):
    response = client.get(url)
    assert response.status_code == 400, (url, response.get_json())
    body = response.get_json()
    assert set(body) == {"code", "description"}
    assert fragment in body["description"], body


def test_unknown_district_is_a_404(client):
    response = client.get("/api/v1/coverage/streets?district=999999")
    assert response.status_code == 404
    assert "999999" in response.get_json()["description"]


def test_the_openapi_document_is_valid_and_describes_every_route(app, client):
    doc = client.get("/api/v1/openapi.json").get_json()
    validate(doc)
    routes = {rule.rule.replace("<layer>", "{layer}").replace("<int:point_id>", "{id}").replace("<int:key>", "{id}")
              .replace("<key>", "{code}") for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/v1/")}
    routes -= {"/api/v1/openapi.json", "/api/v1/docs"}
    assert routes <= set(doc["paths"]), routes - set(doc["paths"])
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            assert f"{method.upper()} {path}" in text
            for parameter in operation["parameters"]:
                assert f"<code>{parameter['name']}</code>" in text, (path, parameter["name"])
