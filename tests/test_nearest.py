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

from geoservice import crs, query
from geoservice.hours import is_open
from geoservice.nearest import NearestQuery, nearest_points
from geoservice.vocab import KIND_CODES as POINT_KIND_CODES
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


# -- one statement against a brute force --------------------------------------------------------------------------

REST_KINDS = {"kiosk", "rest_station", "vendor_point", "melon_point"}  # DESIGN: kinds that receive people
REST_AMENITIES = {"drinking_water", "hot_water", "seating", "shade", "overnight", "tent"}


def brute_force(conn, spot, *, kinds=(), amenities=(), vacancy=False, rest=False, within=None, k=5) -> list[int]:
    """Every point read, filtered in Python, ranked by pyproj's geodesic distance (then id)."""
    wanted = []
    for p in all_points(conn):
        if p["status"] != "open" or (kinds and p["kind"] not in kinds):
            continue
        if not set(amenities) <= set(p["amenities"]):
            continue
        if vacancy and not ("overnight" in p["amenities"] and p["capacity"] > (p["occupancy"] or 0)):
            continue
        if rest and not (p["kind"] in REST_KINDS and REST_AMENITIES & set(p["amenities"])):
            continue
        distance = geodesic(*spot, p)
        if within is None or distance <= within:
            wanted.append((distance, p["id"]))
    return [pid for _, pid in sorted(wanted)[:k]]


@pytest.mark.parametrize("spot", SPOTS + [(113.60, 34.02), (114.05, 33.90)])  # two far outside the city
@pytest.mark.parametrize("question", [
    {},
    {"kinds": ("toilet",)},
    {"kinds": ("kiosk", "night_market", "parking")},
    {"kinds": tuple(POINT_KIND_CODES)},  # every kind named: no kind filter at all
    {"amenities": ("drinking_water",)},
    {"amenities": ("umbrella", "drinking_water"), "k": 12},
    {"kinds": ("vendor_point", "melon_point"), "amenities": ("shade",)},
    {"vacancy": True, "k": 20},
    {"rest": True, "k": 9},
    {"rest": True, "kinds": ("toilet", "kiosk")},  # toilets are never rest points
    {"within": 600.0, "k": 50},
    {"kinds": ("kiosk",), "within": 50.0},
    {"k": 1}, {"k": 50},
])
def test_straight_nearest_equals_a_brute_force(conn, spot, question):
    question = dict(question)
    within = question.pop("within", None)
    query = NearestQuery(lon=spot[0], lat=spot[1], max_distance_m=within, **question)
    got = nearest(conn, query, now=NOON)["features"]
    expected = brute_force(conn, spot, within=within, **question)
    assert [f["id"] for f in got] == expected
    by_id = {p["id"]: p for p in all_points(conn)}
    for feature in got:
        assert feature["properties"]["distance_m"] == pytest.approx(geodesic(*spot, by_id[feature["id"]]), abs=0.1)


def test_open_now_with_a_distance_limit_equals_a_brute_force(conn):
    evening = datetime(2026, 7, 3, 22, 30)
    spot = (113.83, 34.03)
    got = nearest(conn, NearestQuery(lon=spot[0], lat=spot[1], open_now=True, k=50, max_distance_m=1500),
                  now=evening)["features"]
    expected = sorted((geodesic(*spot, p), p["id"]) for p in all_points(conn)
                      if p["status"] == "open" and is_open(p["opening_hours"], p["season"], evening)
                      and geodesic(*spot, p) <= 1500)
    assert [f["id"] for f in got] == [pid for _, pid in expected][:50]
    assert all(f["properties"]["open_now"] is True for f in got)


def _add_point(conn, lon, lat, kind="toilet") -> int:
    return conn.execute(sa.text(
        "INSERT INTO point (name, kind, geom) VALUES ('边界公厕', :kind, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)) "
        "RETURNING id"), {"lon": lon, "lat": lat, "kind": kind}).scalar_one()


def test_the_nearest_point_may_lie_across_the_antimeridian(conn):
    # 111 m east across ±180° against 222 m west on the same side: the search box wraps.
    across = _add_point(conn, -179.9995, -16.5)
    same_side = _add_point(conn, 179.9975, -16.5)
    spot = (179.9995, -16.5)
    got = nearest(conn, NearestQuery(lon=spot[0], lat=spot[1], kinds=("toilet",), k=2), now=NOON)["features"]
    assert [f["id"] for f in got] == [across, same_side]
    assert got[0]["properties"]["distance_m"] == pytest.approx(GEOD.inv(*spot, -179.9995, -16.5)[2], abs=0.1)


def test_the_nearest_point_near_a_pole(conn):
    # At 89.99° a degree of longitude is about 19 m: a point 180° of longitude away is the nearest.
    over = _add_point(conn, -170.0, 89.995)
    beside = _add_point(conn, 10.5, 89.985)
    spot = (10.0, 89.995)
    got = nearest(conn, NearestQuery(lon=spot[0], lat=spot[1], kinds=("toilet",), k=2), now=NOON)["features"]
    expected = sorted([(GEOD.inv(*spot, -170.0, 89.995)[2], over), (GEOD.inv(*spot, 10.5, 89.985)[2], beside)])
    assert [f["id"] for f in got] == [pid for _, pid in expected]


@pytest.mark.parametrize(("lon", "lat"), [(113.8, 34.0), (179.99, 10.0), (-179.999, -45.0), (0.0, 0.0),
                                          (45.0, 88.9), (-120.0, -89.5), (179.9999, 60.0)])
@pytest.mark.parametrize("metres", [1.0, 300.0, 5000.0, 150_000.0])
def test_the_distance_box_holds_every_position_within_the_distance(conn, lon, lat, metres):
    boxes = conn.execute(sa.text(f"""
        WITH box AS MATERIALIZED ({query.distance_box_sql("CAST(:m AS float8)")})
        SELECT ST_XMin(a), ST_YMin(a), ST_XMax(a), ST_YMax(a), ST_XMin(b), ST_YMin(b), ST_XMax(b), ST_YMax(b)
        FROM box"""), {"lon": lon, "lat": lat, "m": metres}).one()
    inside = [boxes[:4]] + ([boxes[4:]] if boxes[4] is not None else [])
    for azimuth in range(0, 360, 3):
        for share in (0.5, 0.999):
            x, y, _ = GEOD.fwd(lon, lat, azimuth, metres * share)
            assert any(x0 <= x <= x1 and y0 <= y <= y1 for x0, y0, x1, y1 in inside), (azimuth, share, x, y, inside)
