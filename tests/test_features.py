"""The map layers' point properties (open now, grid and squad, free places), the view cap, and point search.

Expectations come from the generator's own rows checked with shapely, or are worked out by hand from the demo
city's documented hours (data/README.md), never from the code under test.
"""

from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa
from shapely.geometry import Point

from geoservice import features
from geoservice.errors import InvalidParameter

SANBA = "三八路便民服务点"


def by_kind(collection: dict) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = {}
    for feature in collection["features"]:
        kinds.setdefault(feature["properties"]["kind"], []).append(feature["properties"])
    return kinds


# Demo hours (by hand): vendor points Mo-Su 05:30-21:30 in season 05-15/10-15; night markets Mo-Su 18:00-02:00 in
# season 04-01/10-31; melon points 05:00-23:00 in 06-01/09-15; kiosks, job boards and car parks 24/7.
@pytest.mark.parametrize(("when", "expected"), [
    (datetime(2026, 7, 1, 12, 0), {"vendor_point": True, "night_market": False, "melon_point": True, "kiosk": True}),
    (datetime(2026, 7, 2, 1, 30), {"vendor_point": False, "night_market": True, "melon_point": False,
                                   "kiosk": True}),
    (datetime(2026, 7, 1, 2, 0), {"night_market": False, "kiosk": True}),
    (datetime(2026, 12, 1, 12, 0), {"vendor_point": False, "night_market": False, "melon_point": False,
                                    "kiosk": True, "job_board": True}),
    (datetime(2026, 5, 14, 20, 0), {"vendor_point": False, "night_market": True, "melon_point": False}),
])
def test_points_say_whether_they_are_open_at_the_given_time(conn, when, expected):
    kinds = by_kind(features.layer_collection(conn, "points", now=when))
    for kind, is_open in expected.items():
        assert {p["open_now"] for p in kinds[kind]} == {is_open}, (kind, when)


def test_points_have_no_open_now_without_a_time(conn):
    props = features.layer_collection(conn, "points")["features"][0]["properties"]
    assert "open_now" not in props


def test_a_point_out_of_service_is_closed_whatever_its_hours(conn):
    conn.execute(sa.text("UPDATE point SET status = 'closed' WHERE name = :n"), {"n": SANBA})
    kinds = by_kind(features.layer_collection(conn, "points", now=datetime(2026, 7, 1, 12, 0)))
    sanba = next(p for p in kinds["rest_station"] if p["name"] == SANBA)
    assert sanba["open_now"] is False


def test_points_carry_the_grid_they_lie_in_and_its_squad(conn, demo_city):
    collection = features.layer_collection(conn, "points")
    squads = {s["id"]: s for s in demo_city.squads}
    grids = sorted(demo_city.grids, key=lambda g: g["code"])
    in_no_grid = 0
    for feature in collection["features"]:
        lon, lat = feature["geometry"]["coordinates"]
        props = feature["properties"]
        covering = [g for g in grids if g["geom"].covers(Point(lon, lat))]
        if not covering:
            in_no_grid += 1
            assert props["grid_code"] is None and props["squad"] is None
            continue
        first = covering[0]
        assert props["grid_code"] == first["code"]
        assert props["grid_name"] == first["name"]
        assert (props["squad"], props["squad_phone"]) == (squads[first["squad_id"]]["name"],
                                                          squads[first["squad_id"]]["phone"])
    assert in_no_grid < len(collection["features"]) / 10


def test_free_places_are_capacity_minus_occupancy(conn, demo_city):
    rows = {p["id"]: p for p in demo_city.points}
    for feature in features.layer_collection(conn, "points")["features"]:
        props = feature["properties"]
        row = rows[props["id"]]
        expected = None if row["capacity"] is None else row["capacity"] - (row["occupancy"] or 0)
        assert props["free_places"] == expected


def test_a_limit_caps_the_view_and_says_so(conn, demo_city):
    capped = features.layer_collection(conn, "points", limit=10)
    assert [f["id"] for f in capped["features"]] == sorted(p["id"] for p in demo_city.points)[:10]
    assert capped["truncated"] is True
    whole = features.layer_collection(conn, "points", limit=len(demo_city.points))
    assert len(whole["features"]) == len(demo_city.points) and whole["truncated"] is False
    assert features.layer_collection(conn, "districts")["truncated"] is False  # bounded by MAX_LIMIT by default


def contains(text: str | None, needle: str) -> bool:
    return bool(text) and needle.lower() in text.lower()


@pytest.mark.parametrize("q", ["三八路", "夜市", "公厕", "魏都区", "岗亭", "Nothing-like-this"])
def test_search_finds_every_point_whose_name_or_address_contains_the_text(conn, demo_city, q):
    found = features.search_points(conn, q, limit=50)["features"]
    expected = [p for p in demo_city.points if contains(p["name"], q) or contains(p["address"], q)]
    if len(expected) <= 50:
        assert sorted(f["id"] for f in found) == sorted(p["id"] for p in expected)
    else:
        assert len(found) == 50 and {f["id"] for f in found} <= {p["id"] for p in expected}
    # Name matches come before address-only matches.
    in_name = [contains(f["properties"]["name"], q) for f in found]
    assert in_name == sorted(in_name, reverse=True)


def test_search_puts_the_exact_name_first_and_carries_the_popup_fields(conn):
    found = features.search_points(conn, SANBA, now=datetime(2026, 7, 1, 9, 0))["features"]
    first = found[0]["properties"]
    assert first["name"] == SANBA
    assert first["open_now"] is True  # Mo-Su 08:00-20:00
    assert {a["zh"] for a in first["amenity_labels"]} == {"饮用水", "急救箱", "手机充电", "座椅"}
    assert first["grid_code"] and first["squad"]


@pytest.mark.parametrize("q", ["%", "_", "\\", "三八%", "路_"])
def test_search_text_is_literal_not_a_pattern(conn, demo_city, q):
    expected = {p["id"] for p in demo_city.points if contains(p["name"], q) or contains(p["address"], q)}
    assert {f["id"] for f in features.search_points(conn, q, limit=50)["features"]} == expected == set()


@pytest.mark.parametrize(("q", "limit", "fragment"), [
    ("", 10, "q is required"),
    ("   ", 10, "q is required"),
    ("x" * 101, 10, "at most 100 characters"),
    ("路", 0, "limit must be between 1 and 50"),
    ("路", 51, "limit must be between 1 and 50"),
])
def test_search_refuses_bad_input(conn, q, limit, fragment):
    with pytest.raises(InvalidParameter, match=fragment):
        features.search_points(conn, q, limit=limit)


def test_search_endpoint_answers_geojson(client):
    response = client.get("/api/v1/points/search", query_string={"q": "三八路便民", "limit": 3})
    assert response.status_code == 200
    assert response.mimetype == "application/geo+json"
    body = response.get_json()
    assert body["features"][0]["properties"]["name"] == SANBA
    assert isinstance(body["features"][0]["properties"]["open_now"], bool)
    assert body["query"] == {"q": "三八路便民", "limit": 3}


@pytest.mark.parametrize(("query", "fragment"), [
    ({}, "q is required"),
    ({"q": ""}, "q is empty"),
    ({"q": "x" * 101}, "at most 100 characters"),
    ({"q": "路", "limit": "0"}, "limit must be between 1 and 50"),
    ({"q": "路", "limit": "many"}, "limit must be a whole number"),
    ({"q": "路", "name": "x"}, "unknown parameter 'name'"),
    ({"q": "路", "limit": "5.5"}, "limit must be a whole number"),
])
def test_search_endpoint_refuses_bad_input_with_a_400(client, query, fragment):
    response = client.get("/api/v1/points/search", query_string=query)
    assert response.status_code == 400
    body = response.get_json()
    assert set(body) == {"code", "description"} and fragment in body["description"]


@pytest.mark.parametrize(("limit", "fragment"), [("0", "between 1 and 100000"), ("x", "whole number"),
                                                 ("100001", "between 1 and 100000")])
def test_layer_limit_is_validated(client, limit, fragment):
    response = client.get("/api/v1/layers/points", query_string={"limit": limit})
    assert response.status_code == 400 and fragment in response.get_json()["description"]


def test_layer_limit_and_search_are_documented(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert "/api/v1/points/search" in paths
    names = {p["name"] for p in paths["/api/v1/points/search"]["get"]["parameters"]}
    assert names == {"q", "limit"}
    assert "limit" in {p["name"] for p in paths["/api/v1/layers/{layer}"]["get"]["parameters"]}
