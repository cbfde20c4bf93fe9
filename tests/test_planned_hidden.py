"""Planned points are a planner's proposals: no public read shows them, a logged-in planner or admin sees them.

One test per read path the public has: the map layer, search, nearest (the farmer page), the live state the pages
poll, one point by id, a point's service area, OGC items, one OGC item and the collection's extent. The city map and
the farmer page draw only what these answer. A kiosk staff member or an officer logged in sees what the public sees.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.accounts_helpers import add_user

# East of every demo point (the demo city spans about 113.79-113.86 E), inside the city's 60 km.
PLANNED_LON, PLANNED_LAT = 113.93, 34.03


@pytest.fixture(scope="module")
def planned(engine):
    """A committed planned point, and tokens of a planner, an admin and a kiosk staff member; removed afterwards."""
    with engine.begin() as conn:
        point_id = conn.execute(sa.text(
            "INSERT INTO point (name, kind, amenities, status, geom) VALUES ('规划岗亭（测试）', 'kiosk', "
            "'{drinking_water}', 'planned', ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)) RETURNING id"),
            {"lon": PLANNED_LON, "lat": PLANNED_LAT}).scalar_one()
    tokens = {role: add_user(engine, role)[1] for role in ("planner", "admin", "kiosk_staff", "officer")}
    yield {"id": point_id, "tokens": tokens}
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM point WHERE id = :id"), {"id": point_id})


PUBLIC = (None, "kiosk_staff", "officer")
SEE_IT = ("planner", "admin")


def _get(client, planned, url: str, who: str | None):
    headers = {} if who is None else {"Authorization": f"Bearer {planned['tokens'][who]}"}
    return client.get(url, headers=headers)


def _ids(body: dict) -> set:
    return {f["id"] for f in body["features"]}


@pytest.mark.parametrize("who", PUBLIC + SEE_IT)
def test_the_points_layer(client, planned, who):
    response = _get(client, planned, "/api/v1/layers/points", who)
    assert response.status_code == 200
    assert (planned["id"] in _ids(response.get_json())) == (who in SEE_IT)
    if who is not None:
        assert response.headers["Cache-Control"] == "no-store"  # a user's own view is never shared


@pytest.mark.parametrize("who", PUBLIC + SEE_IT)
def test_search(client, planned, who):
    response = _get(client, planned, "/api/v1/points/search?q=规划岗亭", who)
    assert response.status_code == 200
    assert (planned["id"] in _ids(response.get_json())) == (who in SEE_IT)


@pytest.mark.parametrize("who", PUBLIC + SEE_IT)
def test_nearest_never_offers_a_planned_point(client, planned, who):
    for mode in ("straight", "walk"):
        response = _get(client, planned, f"/api/v1/nearest?lon={PLANNED_LON}&lat={PLANNED_LAT}&k=3&mode={mode}",
                        who)
        assert response.status_code == 200
        body = response.get_json()
        assert planned["id"] not in _ids(body)  # it stands on the spot, 0 m away
        assert body["features"] or mode == "walk"  # (off the street network, a walk may reach nothing)


@pytest.mark.parametrize("who", PUBLIC + SEE_IT)
def test_the_live_state_pages_poll(client, planned, who):
    response = _get(client, planned, f"/api/v1/points/live?ids={planned['id']}", who)
    assert response.status_code == 200
    assert [p["id"] for p in response.get_json()["points"]] == ([planned["id"]] if who in SEE_IT else [])
    everything = _get(client, planned, "/api/v1/points/live", who).get_json()["points"]
    assert (planned["id"] in {p["id"] for p in everything}) == (who in SEE_IT)


@pytest.mark.parametrize("who", PUBLIC + SEE_IT)
def test_one_point_by_id(client, planned, who):
    response = _get(client, planned, f"/api/v1/points/{planned['id']}", who)
    if who in SEE_IT:
        assert response.status_code == 200 and response.get_json()["properties"]["status"] == "planned"
        assert response.headers["ETag"]
    else:
        assert response.status_code == 404
        assert response.get_json()["code"] == "NotFound"


@pytest.mark.parametrize("who", PUBLIC + SEE_IT)
def test_a_points_service_area(client, planned, who):
    response = _get(client, planned, f"/api/v1/points/{planned['id']}/service-area?mode=straight&radius=300", who)
    assert response.status_code == (200 if who in SEE_IT else 404)


@pytest.mark.parametrize("who", PUBLIC + SEE_IT)
def test_ogc_items(client, planned, who):
    response = _get(client, planned, "/ogc/collections/points/items?limit=10000&f=json", who)
    assert response.status_code == 200
    body = response.get_json()
    assert (planned["id"] in _ids(body)) == (who in SEE_IT)
    assert body["numberMatched"] == len(body["features"])
    by_status = _get(client, planned, "/ogc/collections/points/items?status=planned&f=json", who).get_json()
    assert _ids(by_status) == ({planned["id"]} if who in SEE_IT else set())


@pytest.mark.parametrize("who", PUBLIC + SEE_IT)
def test_one_ogc_item(client, planned, who):
    for fmt in ("json", "html"):
        response = _get(client, planned, f"/ogc/collections/points/items/{planned['id']}?f={fmt}", who)
        assert response.status_code == (200 if who in SEE_IT else 404)


@pytest.mark.parametrize("who", PUBLIC + SEE_IT)
def test_the_collection_extent(client, planned, who):
    extent = _get(client, planned, "/ogc/collections/points?f=json", who).get_json()["extent"]["spatial"]["bbox"][0]
    assert (extent[2] >= PLANNED_LON) == (who in SEE_IT)
    listed = _get(client, planned, "/ogc/collections?f=json", who).get_json()["collections"]
    points = next(c for c in listed if c["id"] == "points")["extent"]["spatial"]["bbox"][0]
    assert points == extent


def test_coverage_counts_a_planned_point_only_when_asked(client, planned):
    plain = client.get(f"/api/v1/coverage/streets?radius=300&bbox={PLANNED_LON - 0.01},{PLANNED_LAT - 0.01},"
                       f"{PLANNED_LON + 0.01},{PLANNED_LAT + 0.01}").get_json()["summary"]
    what_if_url = (f"/api/v1/coverage/streets?radius=300&planned=true&bbox={PLANNED_LON - 0.01},"
                   f"{PLANNED_LAT - 0.01},{PLANNED_LON + 0.01},{PLANNED_LAT + 0.01}")
    assert client.get(what_if_url).status_code == 401  # what if would show the public where planned points stand
    what_if = client.get(what_if_url, headers={"Authorization": f"Bearer {planned['tokens']['planner']}"}
                         ).get_json()["summary"]
    assert what_if["covered_km"] >= plain["covered_km"]
