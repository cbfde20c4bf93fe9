"""What a rest point is (the farmer finder's default), and a walking search that says why it found nothing.

The rest-point rule is written out here from its documentation (README, ``geoservice.query``), not imported, so a
change of the code that is not a change of the documented rule fails; distances come from pyproj's geodesic.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial

import pytest
import sqlalchemy as sa
from pyproj import Geod

from geoservice.ingest.topology import rebuild_topology
from geoservice.nearest import NearestQuery, nearest_points
from tests.conftest import DEMO_METRIC_CRS

nearest = partial(nearest_points, metric_crs=DEMO_METRIC_CRS)
GEOD = Geod(ellps="WGS84")
NOON = datetime(2026, 7, 3, 12, 0)
# The documented rule: a kiosk, rest station, vendor or melon-farmer point offering water, seats, shade or a night.
REST_KINDS = {"kiosk", "rest_station", "vendor_point", "melon_point"}
REST_AMENITIES = {"drinking_water", "hot_water", "seating", "shade", "overnight", "tent"}
SPOTS = [(113.826, 34.026), (113.80, 34.05), (113.85, 34.00)]


def open_points(conn) -> list[dict]:
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT id, name, kind, amenities, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM point WHERE status = 'open'"
    )).mappings()]


@pytest.mark.parametrize("mode", ["straight", "walk"])
def test_without_rest_a_place_that_offers_no_rest_comes_first_in_the_town_centre(conn, mode):
    first = nearest(conn, NearestQuery(lon=113.826, lat=34.026, k=1, mode=mode), now=NOON)["features"][0]
    assert first["properties"]["kind"] in {"job_board", "toilet"}, first["properties"]


@pytest.mark.parametrize("spot", SPOTS)
@pytest.mark.parametrize("mode", ["straight", "walk"])
def test_rest_points_are_the_documented_kinds_with_a_rest_amenity(conn, spot, mode):
    found = nearest(conn, NearestQuery(lon=spot[0], lat=spot[1], k=5, rest=True, mode=mode), now=NOON)["features"]
    assert len(found) == 5
    for feature in found:
        props = feature["properties"]
        assert props["kind"] in REST_KINDS and REST_AMENITIES & set(props["amenities"]), props["name"]
    if mode == "straight":
        rest = [p for p in open_points(conn) if p["kind"] in REST_KINDS and REST_AMENITIES & set(p["amenities"])]
        rest.sort(key=lambda p: GEOD.inv(spot[0], spot[1], p["lon"], p["lat"])[2])
        assert [f["id"] for f in found] == [p["id"] for p in rest[:5]]


def test_filters_narrow_the_rest_points(conn):
    found = nearest(conn, NearestQuery(lon=113.826, lat=34.026, k=10, rest=True, amenities=("phone_charging",)),
                    now=NOON)["features"]
    assert found
    assert all("phone_charging" in f["properties"]["amenities"] for f in found)
    assert all(f["properties"]["kind"] in REST_KINDS for f in found)


def test_the_api_takes_rest_and_documents_it(client):
    body = client.get("/api/v1/nearest?lon=113.826&lat=34.026&k=3&rest=true").get_json()
    assert body["query"]["rest"] is True
    assert all(f["properties"]["kind"] != "job_board" for f in body["features"])
    params = client.get("/api/v1/openapi.json").get_json()["paths"]["/api/v1/nearest"]["get"]["parameters"]
    rest = next(p for p in params if p["name"] == "rest")
    assert "rest points" in rest["description"]


# -- a walk that cannot reach anything says why ----------------------------------------------------------------

@pytest.fixture()
def lonely_lane(conn) -> dict:
    """A lane 120 m long, 1.4 km east of the demo city's easternmost street, joined to nothing; a spot 22 m north."""
    east, y = conn.execute(sa.text(
        "SELECT ST_XMax(ST_Extent(geom)), (ST_YMin(ST_Extent(geom)) + ST_YMax(ST_Extent(geom))) / 2 FROM street"
    )).one()
    lane = ((east + 0.015, y), (east + 0.0163, y))
    conn.execute(sa.text("INSERT INTO street (name, class, geom) VALUES ('孤巷', 'service', "
                         "ST_SetSRID(ST_MakeLine(ST_MakePoint(:x0, :y0), ST_MakePoint(:x1, :y1)), 4326))"),
                 {"x0": lane[0][0], "y0": lane[0][1], "x1": lane[1][0], "y1": lane[1][1]})
    rebuild_topology(conn, metric_crs=DEMO_METRIC_CRS)
    spot = (east + 0.0156, y + 0.0002)
    return {"lane": lane, "spot": spot, "length_m": GEOD.inv(*lane[0], *lane[1])[2],
            "offset_m": GEOD.inv(*spot, spot[0], y)[2]}


def nearest_other_street_m(conn, spot) -> float:
    """Geodesic distance from the spot to the nearest street that is not the lane (PostGIS geography)."""
    return conn.execute(sa.text(
        "SELECT min(ST_Distance(geom::geography, ST_SetSRID(ST_MakePoint(:x, :y), 4326)::geography)) "
        "FROM street WHERE name IS DISTINCT FROM '孤巷'"), {"x": spot[0], "y": spot[1]}).scalar_one()


def test_a_spot_on_a_separate_piece_crosses_to_the_rest_of_the_network(conn, lonely_lane):
    spot = lonely_lane["spot"]
    result = nearest(conn, NearestQuery(lon=spot[0], lat=spot[1], k=3, mode="walk"), now=NOON)
    search = result["walk_search"]
    assert search["street"]["name"] == "孤巷"
    assert search["distance_m"] == pytest.approx(lonely_lane["offset_m"], abs=0.5)
    assert search["separate_piece"] is True
    assert search["piece_street_m"] == pytest.approx(lonely_lane["length_m"], abs=0.5)
    crossing = nearest_other_street_m(conn, spot)
    assert 1000 < crossing < 3000
    assert search["rejoined"]["street"]["name"] != "孤巷"
    assert search["rejoined"]["distance_m"] == pytest.approx(crossing, abs=0.5)
    assert "separate piece" in search["message"] and "crosses" in search["message"]
    # Found from the rest of the network, each walk starting with the crossing.
    assert len(result["features"]) == 3
    for feature in result["features"]:
        props = feature["properties"]
        assert props["walk_access_m"] >= crossing - 0.5
        assert props["walk_distance_m"] >= props["distance_m"] - 0.5


def test_a_separate_piece_with_nothing_in_reach_says_why_not(conn, lonely_lane):
    spot = lonely_lane["spot"]
    result = nearest(conn, NearestQuery(lon=spot[0], lat=spot[1], k=3, mode="walk", max_distance_m=800), now=NOON)
    assert result["features"] == []
    search = result["walk_search"]
    assert search["separate_piece"] is True and search["rejoined"] is None and search["found"] == 0
    assert "孤巷" in search["message"] and "cannot be reached" in search["message"]


def test_a_spot_on_the_main_network_with_too_few_points_says_how_many(conn):
    result = nearest(conn, NearestQuery(lon=113.826, lat=34.026, k=3, mode="walk", kinds=("kiosk",),
                                        max_distance_m=100), now=NOON)
    search = result["walk_search"]
    assert search["separate_piece"] is False and search["found"] == len(result["features"]) < 3
    assert f"{len(result['features'])} of 3" in search["message"]


def test_enough_points_means_no_walk_search(conn):
    result = nearest(conn, NearestQuery(lon=113.826, lat=34.026, k=3, mode="walk"), now=NOON)
    assert len(result["features"]) == 3 and "walk_search" not in result
