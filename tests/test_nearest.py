"""Nearest points: straight distances checked against pyproj's geodesic (Karney) computation, filters by SQL-free
Python logic, and the API's validation."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from urllib.parse import parse_qs, urlparse

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import Geod

from geoservice import crs
from geoservice.hours import is_open
from geoservice.nearest import NearestQuery, nearest_points
from tests.conftest import DEMO_METRIC_CRS

nearest = partial(nearest_points, metric_crs=DEMO_METRIC_CRS)

GEOD = Geod(ellps="WGS84")
NOON = datetime(2026, 7, 3, 12, 0)  # a Friday in the melon season
SPOTS = [(113.826, 34.026), (113.80, 34.05), (113.85, 34.00), (113.79, 33.995)]


def all_points(conn) -> list[dict]:
    rows = conn.execute(sa.text(
        "SELECT id, kind, amenities, capacity, occupancy, status, opening_hours, season, "
        "ST_X(geom) AS lon, ST_Y(geom) AS lat FROM point")).mappings().all()
    return [dict(r) for r in rows]


def geodesic(lon, lat, point) -> float:
    return GEOD.inv(lon, lat, point["lon"], point["lat"])[2]


@pytest.mark.parametrize(("lon", "lat"), SPOTS)
@pytest.mark.parametrize("kinds", [(), ("kiosk",), ("toilet", "rest_station")])
def test_straight_nearest_matches_geodesic_order(conn, lon, lat, kinds):
    result = nearest(conn, NearestQuery(lon=lon, lat=lat, kinds=kinds, k=7), now=NOON)
    candidates = [p for p in all_points(conn) if p["status"] == "open" and (not kinds or p["kind"] in kinds)]
    expected = sorted(candidates, key=lambda p: geodesic(lon, lat, p))[:7]
    got = result["features"]
    assert [f["id"] for f in got] == [p["id"] for p in expected]
    for feature, point in zip(got, expected, strict=True):
        assert feature["properties"]["distance_m"] == pytest.approx(geodesic(lon, lat, point), abs=0.1)


def test_amenity_vacancy_and_open_now_filters(conn):
    spot = (113.826, 34.026)
    evening = datetime(2026, 7, 3, 22, 30)
    query = NearestQuery(lon=spot[0], lat=spot[1], amenities=("drinking_water", "umbrella"), vacancy=False,
                         open_now=True, k=50)
    got = [f["id"] for f in nearest(conn, query, now=evening)["features"]]
    expected = [p for p in all_points(conn) if p["status"] == "open"
                and {"drinking_water", "umbrella"} <= set(p["amenities"])
                and is_open(p["opening_hours"], p["season"], evening)]
    expected = [p["id"] for p in sorted(expected, key=lambda p: geodesic(*spot, p))][:50]
    assert got == expected
    vacancy = nearest(conn, NearestQuery(lon=spot[0], lat=spot[1], vacancy=True, k=50), now=NOON)
    for feature in vacancy["features"]:
        props = feature["properties"]
        assert "overnight" in props["amenities"] and props["free_places"] > 0
    with_places = [p for p in all_points(conn) if "overnight" in p["amenities"]
                   and p["capacity"] > (p["occupancy"] or 0)]
    assert len(vacancy["features"]) == len(with_places)


def test_max_distance_limits_results(conn):
    spot = (113.826, 34.026)
    result = nearest(conn, NearestQuery(lon=spot[0], lat=spot[1], k=50, max_distance_m=800), now=NOON)
    expected = [p for p in all_points(conn) if p["status"] == "open" and geodesic(*spot, p) <= 800]
    assert len(result["features"]) == len(expected)


def test_result_carries_grid_squad_and_navigation(conn):
    result = nearest(conn, NearestQuery(lon=113.826, lat=34.026, kinds=("kiosk",), k=1), now=NOON)
    props = result["features"][0]["properties"]
    lon, lat = result["features"][0]["geometry"]["coordinates"]
    grid = conn.execute(sa.text(
        "SELECT g.code, s.phone FROM grid g JOIN squad s ON s.id = g.squad_id "
        "WHERE ST_Covers(g.geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)) ORDER BY g.code LIMIT 1"),
        {"lon": lon, "lat": lat}).one()
    assert props["grid"]["grid_code"] == grid.code
    assert props["grid"]["squad_phone"] == grid.phone
    amap = parse_qs(urlparse(props["navigation"]["amap"]).query)
    g_lon, g_lat, name = amap["to"][0].split(",")
    assert name == props["name"] and amap["coordinate"] == ["gaode"]
    expect_lon, expect_lat = crs.wgs84_to_gcj02(lon, lat)
    assert float(g_lon) == pytest.approx(expect_lon, abs=1e-6) and float(g_lat) == pytest.approx(expect_lat, abs=1e-6)
    # GCJ-02 is offset from WGS 84 by a few hundred metres around Xuchang: the link must not carry raw WGS 84.
    assert GEOD.inv(lon, lat, float(g_lon), float(g_lat))[2] > 100
    baidu = parse_qs(urlparse(props["navigation"]["baidu"]).query)
    assert baidu["coord_type"] == ["wgs84"]
    assert baidu["destination"][0].startswith(f"latlng:{lat:.6f},{lon:.6f}|")


def test_result_carries_the_notice_and_when_the_live_state_changed(conn):
    first = nearest(conn, NearestQuery(lon=113.826, lat=34.026, kinds=("kiosk",), k=1), now=NOON)["features"][0]
    conn.execute(sa.text("UPDATE point SET notice = '今晚热水暂停' WHERE id = :id"), {"id": first["id"]})
    changed_at = conn.execute(sa.text("SELECT now()")).scalar_one()  # the transaction's time: the trigger's too
    props = nearest(conn, NearestQuery(lon=113.826, lat=34.026, kinds=("kiosk",), k=1), now=NOON)["features"][0][
        "properties"]
    assert props["notice"] == "今晚热水暂停"
    assert datetime.fromisoformat(props["live_updated_at"]) == changed_at


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lon=st.floats(113.77, 113.88), lat=st.floats(33.99, 34.06),
       kind=st.sampled_from(["kiosk", "toilet", "vendor_point", "parking", "melon_point"]))
def test_property_first_result_is_no_farther_than_any_point_of_the_kind(conn, lon, lat, kind):
    result = nearest(conn, NearestQuery(lon=lon, lat=lat, kinds=(kind,), k=1), now=NOON)
    first = result["features"][0]["properties"]["distance_m"]
    others = [geodesic(lon, lat, p) for p in all_points(conn) if p["kind"] == kind and p["status"] == "open"]
    assert first <= min(others) + 0.1


@pytest.mark.parametrize(("query", "fragment"), [
    ("lon=113.8", "lat required"),
    ("", "lon and lat required"),
    ("lon=abc&lat=34", "lon must be a number"),
    ("lon=34.02&lat=113.82", "look swapped"),
    ("lon=200&lat=34", "lon must be between -180 and 180"),
    ("lon=113.8&lat=34&kind=spaceport", "unknown kind 'spaceport'; allowed: kiosk, rest_station"),
    ("lon=113.8&lat=34&amenity=wifi", "unknown amenity 'wifi'; allowed: drinking_water"),
    ("lon=113.8&lat=34&k=0", "k must be between 1 and 50"),
    ("lon=113.8&lat=34&k=51", "k must be between 1 and 50"),
    ("lon=113.8&lat=34&k=2.5", "k must be a whole number"),
    ("lon=113.8&lat=34&max_distance=-5", "max_distance must be between"),
    ("lon=113.8&lat=34&mode=fly", "mode must be one of straight, walk"),
    ("lon=113.8&lat=34&open_now=maybe", "open_now must be true or false"),
    ("lon=113.8&lat=34&radius=5", "unknown parameter 'radius'"),
])
def test_nearest_bad_input(client, query, fragment):
    response = client.get("/api/v1/nearest?" + query)
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert set(body) == {"code", "description"}
    assert fragment in body["description"]


def test_nearest_api_answers_geojson(client):
    response = client.get("/api/v1/nearest?lon=113.826&lat=34.026&kind=kiosk&kind=rest_station&k=3")
    assert response.status_code == 200
    assert response.mimetype == "application/geo+json"
    body = response.get_json()
    assert len(body["features"]) == 3
    distances = [f["properties"]["distance_m"] for f in body["features"]]
    assert distances == sorted(distances)
    assert {f["properties"]["kind"] for f in body["features"]} <= {"kiosk", "rest_station"}
