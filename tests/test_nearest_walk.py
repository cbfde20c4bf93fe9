"""Nearest points by walking, through the API, against networkx on the same street graph (``StreetGraph``).

The reference snaps the spot and every open point onto the street network with shapely, runs Dijkstra over all of
them and adds the two straight access legs (spot to its street, street to the point); the service must return the
same first k walking distances, a route of that length from the spot through both snapped positions to the point,
and minutes at 75 m per minute.
"""

from __future__ import annotations

import random

import pytest
import shapely
from pyproj import Geod
from shapely.geometry import Point, shape

from geoservice import nearest
from tests.test_network import StreetGraph, open_points

GEOD = Geod(ellps="WGS84")
TOLERANCE_M = 0.5
RANDOM = random.Random(20261122)
SPOTS = [(113.826, 34.026), (113.8031, 34.0102), (113.8500, 34.0400)] + [
    (round(RANDOM.uniform(113.795, 113.855), 5), round(RANDOM.uniform(33.998, 34.052), 5)) for _ in range(5)]


@pytest.fixture(scope="module")
def streets(engine) -> StreetGraph:
    with engine.connect() as conn:
        return StreetGraph(conn)


@pytest.fixture(scope="module")
def points(engine) -> list[tuple[int, float, float, str]]:
    with engine.connect() as conn:
        return open_points(conn)


@pytest.mark.parametrize("spot", SPOTS)
@pytest.mark.parametrize("kinds", [(), ("toilet",), ("kiosk", "rest_station")])
def test_walking_nearest_is_the_network_nearest(client, streets, points, spot, kinds):
    candidates = [(pid, lon, lat) for pid, lon, lat, kind in points if not kinds or kind in kinds]
    offset = {pid: streets.snap(lon, lat)[2] for pid, lon, lat in candidates}
    network = streets.walk_distances(spot, candidates, cutoff=8000)
    total = {pid: streets.snap(*spot)[2] + d + offset[pid] for pid, d in network.items()}
    expected = sorted(total.values())[:3]
    query = "&".join([f"lon={spot[0]}", f"lat={spot[1]}", "mode=walk", "k=3"] + [f"kind={k}" for k in kinds])
    response = client.get("/api/v1/nearest?" + query)
    assert response.status_code == 200, response.get_json()
    found = [f["properties"] for f in response.get_json()["features"]]
    assert [p["walk_distance_m"] for p in found] == pytest.approx(expected, abs=TOLERANCE_M)
    for p in found:
        assert not kinds or p["kind"] in kinds
        assert p["walk_network_m"] == pytest.approx(network[p["id"]], abs=TOLERANCE_M)
        assert p["walk_distance_m"] == pytest.approx(total[p["id"]], abs=TOLERANCE_M)
        assert p["walk_distance_m"] >= p["distance_m"] - TOLERANCE_M  # never shorter than the straight line
        assert p["walk_minutes"] == pytest.approx(p["walk_distance_m"] / 75.0, abs=0.05)


@pytest.mark.parametrize("spot", SPOTS[:4])
def test_the_route_runs_from_the_snapped_spot_to_the_snapped_point(client, streets, points, spot):
    response = client.get(f"/api/v1/nearest?lon={spot[0]}&lat={spot[1]}&mode=walk&k=2")
    by_id = {pid: (lon, lat) for pid, lon, lat, _ in points}
    for feature in response.get_json()["features"]:
        p = feature["properties"]
        route = shape(p["route"])
        assert route.geom_type == "LineString"
        lons, lats = zip(*route.coords, strict=True)
        assert GEOD.line_length(lons, lats) == pytest.approx(p["walk_distance_m"], abs=1.0, rel=2e-3)
        start = streets.position(*streets.snap(*spot)[:2])
        end = streets.position(*streets.snap(*by_id[p["id"]])[:2])
        # From the spot, onto the street at its snapped position, along, off at the point's, to the point.
        assert route.coords[0] == pytest.approx(spot) and route.coords[-1] == pytest.approx(by_id[p["id"]])
        for (lon, lat), target in ((route.coords[1], start), (route.coords[-2], end)):
            assert GEOD.inv(lon, lat, *target)[2] < TOLERANCE_M
        assert shapely.distance(Point(feature["geometry"]["coordinates"]), Point(by_id[p["id"]])) < 1e-9


def test_a_spot_far_from_every_street_is_told_the_whole_walk(client, streets, points):
    spot = (113.60, 34.026)  # about 20 km west of the city, nowhere near a street
    feature = client.get(f"/api/v1/nearest?lon={spot[0]}&lat={spot[1]}&mode=walk&k=1&max_distance=50000"
                         ).get_json()["features"][0]
    p = feature["properties"]
    assert p["walk_access_m"] > 15_000
    assert p["walk_distance_m"] >= p["distance_m"] - TOLERANCE_M
    assert p["walk_distance_m"] == pytest.approx(p["walk_access_m"] + p["walk_network_m"], abs=0.2)


@pytest.mark.parametrize(("reach", "slack", "first_routed"), [
    (0.2, 1.0, 0),  # a radius far too small: the search must widen (several times) and still be exact
    (1.0, 0.0, 0),  # the k-th straight distance itself: widening or a second routing on almost every spot
    (5.0, 500.0, 10),  # far too large: everything routed at once
])
@pytest.mark.parametrize("spot", SPOTS[:5])
def test_walking_nearest_is_exact_however_the_search_starts(client, streets, points, monkeypatch, spot, reach, slack,
                                                              first_routed):
    monkeypatch.setattr(nearest, "_WALK_REACH", reach)
    monkeypatch.setattr(nearest, "_WALK_SLACK_M", slack)
    monkeypatch.setattr(nearest, "_WALK_FIRST_ROUTED", first_routed)
    candidates = [(pid, lon, lat) for pid, lon, lat, kind in points if kind in ("kiosk", "toilet")]
    network = streets.walk_distances(spot, candidates, cutoff=8000)
    spot_offset = streets.snap(*spot)[2]
    total = {pid: spot_offset + network[pid] + streets.snap(lon, lat)[2] for pid, lon, lat in candidates
             if pid in network}
    expected = sorted(total.values())[:4]
    body = client.get(f"/api/v1/nearest?lon={spot[0]}&lat={spot[1]}&mode=walk&k=4&kind=kiosk&kind=toilet").get_json()
    found = [f["properties"] for f in body["features"]]
    assert [p["walk_distance_m"] for p in found] == pytest.approx(expected, abs=TOLERANCE_M)
    for p in found:
        assert p["walk_distance_m"] == pytest.approx(total[p["id"]], abs=TOLERANCE_M)
        route = shape(p["route"])
        lons, lats = zip(*route.coords, strict=True)
        assert GEOD.line_length(lons, lats) == pytest.approx(p["walk_distance_m"], abs=1.0, rel=2e-3)
