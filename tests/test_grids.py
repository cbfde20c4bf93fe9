"""Who is responsible here (grid at a spot) and the grid gaps/overlaps, checked with shapely and the planted
defects of the demo city."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
import sqlalchemy as sa
from pyproj import Transformer
from shapely import wkb

from geoservice.grids import grid_at, grid_gaps

TO_METRIC = Transformer.from_crs("EPSG:4326", "EPSG:4547", always_xy=True)


def grid_shapes(conn) -> dict:
    return {code: wkb.loads(bytes(g)) for code, g in conn.execute(sa.text("SELECT code, ST_AsBinary(geom) FROM grid"))}


def test_grid_at_agrees_with_shapely_point_in_polygon(conn):
    shapes = grid_shapes(conn)
    rng = np.random.default_rng(5)
    for lon, lat in zip(rng.uniform(113.78, 113.87, 40), rng.uniform(33.995, 34.06, 40), strict=True):
        inside = sorted(code for code, shape in shapes.items() if shape.covers(shapely.Point(lon, lat)))
        if not inside:
            continue
        feature = grid_at(conn, lon=float(lon), lat=float(lat))
        assert [feature["id"], *feature["properties"]["also_in"]] == inside


def test_grid_at_gives_the_whole_chain_of_responsibility(conn):
    props = grid_at(conn, lon=113.8, lat=34.04)["properties"]
    assert props["code"].startswith(props["community_code"])
    assert props["community_code"].startswith(props["subdistrict_code"])
    assert props["subdistrict_code"].startswith(props["district_code"]) and props["district_code"] == "411002"
    assert props["district_name"] == "魏都区"
    assert props["squad_phone"] and props["officer_phone"] and props["squad_name"].endswith("中队")


def test_spot_in_a_planted_gap_is_404_with_distance_to_nearest_grid(client, conn, demo_city):
    gap = next(d for d in demo_city.defects if d["type"] == "gap")
    spot = gap["geom"].centroid
    response = client.get(f"/api/v1/grids/at?lon={spot.x}&lat={spot.y}")
    assert response.status_code == 404
    description = response.get_json()["description"]
    assert "is in no unit grid" in description
    # independent: metric distance from the spot to the nearest grid polygon
    x, y = TO_METRIC.transform(spot.x, spot.y)
    distances = {code: shapely.transform(shape, lambda c: np.column_stack(TO_METRIC.transform(c[:, 0], c[:, 1])))
                 .distance(shapely.Point(x, y)) for code, shape in grid_shapes(conn).items()}
    code = min(distances, key=distances.get)
    assert f"the nearest grid is {code}" in description
    assert f"{distances[code]:.0f} m away" in description


def test_planted_gaps_overlaps_and_sliver_are_all_found(conn, demo_city):
    result = grid_gaps(conn, district="411002")
    summary = result["summary"]
    planted = {t: [d for d in demo_city.defects if d["type"] == t] for t in ("gap", "overlap", "sliver_gap")}
    gaps = [f for f in result["features"] if f["properties"]["type"] == "gap"]
    overlaps = [f for f in result["features"] if f["properties"]["type"] == "overlap"]
    assert summary["gaps"] == len(gaps) == len(planted["gap"]) == 3
    assert sorted(round(f["properties"]["area_m2"], -2) for f in gaps) == sorted(
        float(d["area_m2"]) for d in planted["gap"])
    assert sorted(sorted(f["properties"]["grids"]) for f in overlaps) == sorted(d["grids"] for d in planted["overlap"])
    for feature in overlaps:
        planted_area = next(d["area_m2"] for d in planted["overlap"] if d["grids"] == feature["properties"]["grids"])
        assert feature["properties"]["area_m2"] == pytest.approx(planted_area, rel=0.01)
    assert summary["sliver_gaps"] == len(planted["sliver_gap"]) == 1
    assert summary["sliver_gap_area_m2"] == pytest.approx(0.36, abs=0.02)
    # each gap lies where the generator cut it
    for feature in gaps:
        shape = shapely.geometry.shape(feature["geometry"])
        assert any(shape.intersection(d["geom"]).area / shape.area > 0.99 for d in planted["gap"])


def test_sliver_threshold_is_a_parameter(client):
    body = client.get("/api/v1/coverage/grid-gaps?min_area=0.1").get_json()
    assert body["summary"]["gaps"] == 4 and body["summary"]["sliver_gaps"] == 0
    body = client.get("/api/v1/coverage/grid-gaps?min_area=12500").get_json()
    assert body["summary"]["gaps"] == 1


def test_community_gaps(conn, demo_city):
    gap = next(d for d in demo_city.defects if d["type"] == "gap")
    community = gap["grids"][0][:12]
    result = grid_gaps(conn, community=community)
    assert result["summary"]["gaps"] == 1


@pytest.mark.parametrize(("query", "status", "fragment"), [
    ("district=41100", 400, "district must be a 6-digit district code"),
    ("district=999999", 404, "no district with code 999999"),
    ("community=411002001", 400, "community must be a 12-digit community code"),
    ("district=411001&community=411002001001", 404, "community 411002001001 is not in district 411001"),
    ("min_area=-1", 400, "min_area must be between"),
    ("color=red", 400, "unknown parameter 'color'"),
])
def test_grid_gaps_bad_input(client, query, status, fragment):
    response = client.get("/api/v1/coverage/grid-gaps?" + query)
    assert response.status_code == status
    assert fragment in response.get_json()["description"]
