"""The write API over HTTP (geoservice.api.editing): every write endpoint refuses who may not write, stale and
missing preconditions and bad input with nothing changed; successes leave one audit row; the results cache follows
writes; 200 taps from 8 parallel clients on a served app all count.

The Flask test client and the served app connect as the app role and commit, as in production. So every test
works on features of its own — points and a grid the module inserts, or features it creates through the API — and
removes them afterwards: the demo city is as it was for the other tests. Accounts are committed
(tests/accounts_helpers.add_user) and act through API tokens.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from geoservice.results_cache import data_version
from tests.accounts_helpers import add_user
from tests.conftest import checksum

UA = "pytest-editing-api/1.0"
TEST_GRID_CODE_SUFFIX = "998"
NEW_GRID_CODE_SUFFIX = "997"


def _square(lon: float, lat: float, size: float) -> dict:
    return {"type": "Polygon", "coordinates": [[[lon, lat], [lon + size, lat], [lon + size, lat + size],
                                                [lon, lat + size], [lon, lat]]]}


def _insert_point(conn, name: str, lon: float, lat: float, *, capacity: int | None = 10, occupancy: int = 0) -> int:
    return conn.execute(sa.text(
        "INSERT INTO point (name, kind, amenities, capacity, occupancy, geom) VALUES (:n, 'kiosk', "
        "'{drinking_water}', :c, :o, ST_SetSRID(ST_MakePoint(:x, :y), 4326)) RETURNING id"),
        {"n": name, "c": capacity, "o": None if capacity is None else occupancy, "x": lon, "y": lat}).scalar_one()


class Scene:
    """The module's own features and accounts (attributes set by the ``scene`` fixture)."""


@pytest.fixture(scope="module")
def scene(engine):
    """A kiosk inside a grid of the module's own (squad A), a second kiosk, accounts of every role, and a version of
    the kiosk and of the grid (for reverts and stale ETags); all removed afterwards."""
    s = Scene()
    with engine.begin() as conn:
        community = conn.execute(sa.text("SELECT min(code) FROM community")).scalar_one()
        s.lon, s.lat = conn.execute(sa.text("SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_PointOnSurface(geom) AS c "
                                            "FROM community WHERE code = :c) x"), {"c": community}).one()
        s.squad = conn.execute(sa.text("SELECT name FROM squad ORDER BY id LIMIT 1")).scalar_one()
        s.grid = community + TEST_GRID_CODE_SUFFIX
        s.new_grid = community + NEW_GRID_CODE_SUFFIX
        conn.execute(sa.text(
            "INSERT INTO grid (code, community_code, name, squad_id, geom) VALUES (:code, :community, '测试网格', "
            "(SELECT id FROM squad WHERE name = :squad), ST_GeomFromGeoJSON(:geom))"),
            {"code": s.grid, "community": community, "squad": s.squad,
             "geom": json.dumps(_square(s.lon - 0.001, s.lat - 0.001, 0.002))})
        s.kiosk = _insert_point(conn, "测试岗亭", s.lon, s.lat)
        s.other = _insert_point(conn, "别的岗亭", s.lon + 0.01, s.lat + 0.01)
        s.elsewhere_squad = conn.execute(sa.text("""
            SELECT s.name FROM squad s WHERE NOT EXISTS (
                SELECT FROM grid g JOIN point p ON ST_Intersects(g.geom, p.geom) WHERE g.squad_id = s.id
                AND p.id = :id) ORDER BY s.id LIMIT 1"""), {"id": s.kiosk}).scalar_one()
    s.tokens = {
        "planner": add_user(engine, "planner")[1],
        "admin": add_user(engine, "admin")[1],
        "staff": add_user(engine, "kiosk_staff", points=[s.kiosk])[1],
        "staff_elsewhere": add_user(engine, "kiosk_staff", points=[s.other])[1],
        "officer": add_user(engine, "officer", squad=s.squad)[1],
        "officer_elsewhere": add_user(engine, "officer", squad=s.elsewhere_squad)[1],
    }
    s.created_points, s.created_grids = [], [s.new_grid]
    yield s
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM point WHERE id = ANY(:ids)"),
                     {"ids": [s.kiosk, s.other, *s.created_points]})
        conn.execute(sa.text("DELETE FROM grid WHERE code = ANY(:codes)"), {"codes": [s.grid, *s.created_grids]})


def _headers(scene, who: str | None, **extra) -> dict:
    headers = {"User-Agent": UA, **extra}
    if who is not None:
        headers["Authorization"] = f"Bearer {scene.tokens[who]}"
    return headers


def _get(client, url: str):
    response = client.get(url)
    assert response.status_code == 200, response.get_json()
    return response


def _audit(engine, table: str, key) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            "SELECT id, username, role, address, user_agent, operation, before, after FROM audit_log "
            "WHERE table_name = :t AND feature_key = :k ORDER BY id"), {"t": table, "k": str(key)}).mappings()]


def _state(engine) -> tuple[str, int, int]:
    """The checksum of every table, the audit log's length and the data version."""
    with engine.connect() as conn:
        return checksum(conn), conn.execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one(), \
            data_version(conn)


# -- every write endpoint refuses, changing nothing ---------------------------------------------------------------

def _point_feature(scene, **properties) -> dict:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [scene.lon + 0.0005, scene.lat]},
            "properties": {"name": "新岗亭", "kind": "kiosk", "capacity": 5, **properties}}


def _grid_feature(scene, code: str, **properties) -> dict:
    return {"type": "Feature", "geometry": _square(scene.lon - 0.002, scene.lat - 0.002, 0.003),
            "properties": {"code": code, "name": "新网格", "squad": scene.squad, **properties}}


BAD_POINT = {"type": "Point", "coordinates": [34.03, 113.83]}
BAD_GRID = {"type": "Polygon", "coordinates": [[[113.83, 34.03], [113.84, 34.04], [113.84, 34.03], [113.83, 34.04],
                                                [113.83, 34.03]]]}

# name → (method, url, body(scene, client) for a valid request, body with a bad geometry, bad value and its field,
#         kind of endpoint: "planner" (only planners), "point" (staff and officers may, within their points/grids))
ENDPOINTS = {
    "POST /api/v1/points": (
        "POST", lambda s: "/api/v1/points", lambda s, c: _point_feature(s),
        lambda s, c: {**_point_feature(s), "geometry": BAD_POINT},
        (lambda s, c: _point_feature(s, kind="castle"), "kind"), "planner"),
    "PUT /api/v1/points/{id}": (
        "PUT", lambda s: f"/api/v1/points/{s.kiosk}",
        lambda s, c: _with(_get(c, f"/api/v1/points/{s.kiosk}").get_json(), notice="满了"),
        lambda s, c: {**_get(c, f"/api/v1/points/{s.kiosk}").get_json(), "geometry": BAD_POINT},
        (lambda s, c: _with(_get(c, f"/api/v1/points/{s.kiosk}").get_json(), occupancy=11), "occupancy"), "point"),
    "PATCH /api/v1/points/{id}": (
        "PATCH", lambda s: f"/api/v1/points/{s.kiosk}", lambda s, c: {"properties": {"notice": "满了"}},
        lambda s, c: {"geometry": BAD_POINT},
        (lambda s, c: {"properties": {"notice": "水" * 201}}, "notice"), "point"),
    "DELETE /api/v1/points/{id}": ("DELETE", lambda s: f"/api/v1/points/{s.kiosk}", None, None, None, "planner"),
    "POST /api/v1/points/{id}/occupancy": (
        "POST", lambda s: f"/api/v1/points/{s.kiosk}/occupancy", lambda s, c: {"op": "increment"}, None,
        (lambda s, c: {"op": "set", "value": -1}, "value"), "point"),
    "POST /api/v1/points/{id}/revert": (
        "POST", lambda s: f"/api/v1/points/{s.kiosk}/revert", lambda s, c: {"version": s.point_version}, None,
        (lambda s, c: {"version": "latest"}, "version"), "planner"),
    "POST /api/v1/grids": (
        "POST", lambda s: "/api/v1/grids", lambda s, c: _grid_feature(s, s.new_grid),
        lambda s, c: {**_grid_feature(s, s.new_grid), "geometry": BAD_GRID},
        (lambda s, c: _grid_feature(s, s.new_grid, squad="无名中队"), "squad"), "planner"),
    "PUT /api/v1/grids/{code}": (
        "PUT", lambda s: f"/api/v1/grids/{s.grid}",
        lambda s, c: _with(_get(c, f"/api/v1/grids/{s.grid}").get_json(), officer_name="赵六"),
        lambda s, c: {**_get(c, f"/api/v1/grids/{s.grid}").get_json(), "geometry": BAD_GRID},
        (lambda s, c: _with(_get(c, f"/api/v1/grids/{s.grid}").get_json(), officer_phone="call me"),
         "officer_phone"), "planner"),
    "PATCH /api/v1/grids/{code}": (
        "PATCH", lambda s: f"/api/v1/grids/{s.grid}", lambda s, c: {"properties": {"officer_name": "赵六"}},
        lambda s, c: {"geometry": BAD_GRID}, (lambda s, c: {"properties": {"code": "411002001001001"}}, "code"),
        "planner"),
    "DELETE /api/v1/grids/{code}": ("DELETE", lambda s: f"/api/v1/grids/{s.grid}", None, None, None, "planner"),
    "POST /api/v1/grids/{code}/revert": (
        "POST", lambda s: f"/api/v1/grids/{s.grid}/revert", lambda s, c: {"version": s.grid_version}, None,
        (lambda s, c: {"version": 0}, "version"), "planner"),
}
CONDITIONAL = ("PUT", "PATCH", "DELETE", "revert")


def _with(feature: dict, **properties) -> dict:
    return {**feature, "properties": {**feature["properties"], **properties}}


def _conditional(name: str) -> bool:
    return any(word in name for word in CONDITIONAL)


def _cases() -> list[tuple[str, str]]:
    cases = []
    for name, (_method, _url, _body, bad_geometry, bad_value, _who) in ENDPOINTS.items():
        cases += [(name, "anonymous"), (name, "wrong role"), (name, "officer outside the squad"),
                  (name, "staff on another kiosk")]
        if _who == "point" and "PATCH" in name:
            cases.append((name, "staff changes a field not theirs"))
        if _conditional(name):
            cases += [(name, "stale ETag"), (name, "missing If-Match")]
        if bad_geometry is not None:
            cases.append((name, "invalid geometry"))
        if bad_value is not None:
            cases.append((name, "invalid value"))
    return cases


@pytest.fixture(scope="module")
def versions(scene, app, engine):
    """A version of the kiosk and of the grid (planner edits), and the ETags from before them (stale now)."""
    client = app.test_client()
    for kind, table, key, body in (("points", "point", scene.kiosk, {"properties": {"notice": "版本"}}),
                                   ("grids", "grid", scene.grid, {"properties": {"officer_name": "版本"}})):
        stale = _get(client, f"/api/v1/{kind}/{key}").headers["ETag"]
        response = client.patch(f"/api/v1/{kind}/{key}", json=body,
                                headers=_headers(scene, "planner", **{"If-Match": stale}))
        assert response.status_code == 200, response.get_json()
        setattr(scene, f"{table}_version", _audit(engine, table, key)[-1]["id"])
        setattr(scene, f"{table}_stale", stale)
    return scene


REFUSAL_STATUS = {"anonymous": 401, "wrong role": 403, "officer outside the squad": 403,
                  "staff on another kiosk": 403, "staff changes a field not theirs": 403, "stale ETag": 412,
                  "missing If-Match": 428, "invalid geometry": 400, "invalid value": 400}


def _refusal_request(scene, client, name: str, case: str):
    method, url, body, bad_geometry, bad_value, _who = ENDPOINTS[name]
    kind = "points" if "points" in name else "grids"
    current = _get(client, f"/api/v1/{kind}/{scene.kiosk if kind == 'points' else scene.grid}").headers["ETag"]
    who, if_match, payload, field = "planner", current, body(scene, client) if body else None, None
    if case == "anonymous":
        who = None
    elif case == "wrong role":
        who = "admin"
    elif case == "officer outside the squad":
        who = "officer_elsewhere"
    elif case == "staff on another kiosk":
        who = "staff_elsewhere"
    elif case == "staff changes a field not theirs":
        who, payload = "staff", {"properties": {"name": "改名"}}
    elif case == "stale ETag":
        if_match = scene.point_stale if kind == "points" else scene.grid_stale
    elif case == "missing If-Match":
        if_match = None
    elif case == "invalid geometry":
        payload, field = bad_geometry(scene, client), "geometry"
    elif case == "invalid value":
        payload, field = bad_value[0](scene, client), bad_value[1]
    headers = _headers(scene, who, **({"If-Match": if_match} if if_match and _conditional(name) else {}))
    return method, url(scene), payload, headers, field


@pytest.mark.parametrize(("name", "case"), _cases(), ids=[f"{n} {c}" for n, c in _cases()])
def test_a_refused_write_changes_nothing(engine, client, versions, name, case):
    scene = versions
    method, url, payload, headers, field = _refusal_request(scene, client, name, case)
    before = _state(engine)
    response = client.open(url, method=method, json=payload, headers=headers)
    body = response.get_json()
    assert response.status_code == REFUSAL_STATUS[case], body
    assert set(body) >= {"code", "description"}
    if field is not None:
        assert field in {e["field"] for e in body["errors"]}, body
    assert _state(engine) == before


# -- successes: values and one audit row each -------------------------------------------------------------------

@pytest.fixture()
def kiosk(scene, engine):
    """A kiosk of the test's own inside the module's grid (squad A), 0 of 10 places taken; removed afterwards."""
    with engine.begin() as conn:
        point_id = _insert_point(conn, "单测岗亭", scene.lon + 0.0002, scene.lat + 0.0002)
    yield point_id
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM point WHERE id = :id"), {"id": point_id})


def _db_point(engine, point_id: int) -> dict | None:
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT name, kind, capacity, occupancy, status, notice, ST_X(geom) AS lon, "
                                   "ST_Y(geom) AS lat FROM point WHERE id = :id"), {"id": point_id}).mappings().first()
    return None if row is None else dict(row)


def test_get_gives_the_feature_and_an_etag_that_changes_with_it(client, engine, kiosk):
    first = _get(client, f"/api/v1/points/{kiosk}")
    assert first.mimetype == "application/geo+json"
    assert first.get_json()["properties"]["name"] == _db_point(engine, kiosk)["name"] == "单测岗亭"
    assert _get(client, f"/api/v1/points/{kiosk}").headers["ETag"] == first.headers["ETag"]
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE point SET notice = '换了' WHERE id = :id"), {"id": kiosk})
    assert _get(client, f"/api/v1/points/{kiosk}").headers["ETag"] != first.headers["ETag"]
    assert client.get("/api/v1/points/999999999").status_code == 404
    assert client.get("/api/v1/grids/123").status_code == 404


def test_a_planner_creates_a_point_201_with_location_and_one_audit_row(client, engine, scene):
    response = client.post("/api/v1/points", json=_point_feature(scene, notice="新开"),
                           headers=_headers(scene, "planner"))
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    scene.created_points.append(created["id"])
    assert response.headers["Location"] == f"/api/v1/points/{created['id']}"
    fetched = _get(client, response.headers["Location"])
    assert fetched.get_json() == created and fetched.headers["ETag"] == response.headers["ETag"]
    assert _db_point(engine, created["id"]) == {"name": "新岗亭", "kind": "kiosk", "capacity": 5, "occupancy": None,
                                                "status": "open", "notice": "新开", "lon": scene.lon + 0.0005,
                                                "lat": scene.lat}
    [audit] = _audit(engine, "point", created["id"])
    assert (audit["operation"], audit["before"], audit["after"], audit["role"], audit["user_agent"],
            audit["address"]) == ("create", None, created, "planner", UA, "127.0.0.1")


def test_put_patch_delete_and_revert_each_leave_one_audit_row(client, engine, scene, kiosk):
    url, planner = f"/api/v1/points/{kiosk}", lambda etag: _headers(scene, "planner", **{"If-Match": etag})
    original = _get(client, url)
    put = client.put(url, json=_with(original.get_json(), name="整改岗亭", phone="0374-1234567"),
                     headers=planner(original.headers["ETag"]))
    assert put.status_code == 200 and put.headers["ETag"] != original.headers["ETag"]
    patched = client.patch(url, json={"geometry": {"type": "Point", "coordinates": [scene.lon, scene.lat + 0.0004]}},
                           headers=planner(put.headers["ETag"]))
    assert patched.status_code == 200
    assert _db_point(engine, kiosk)["lat"] == pytest.approx(scene.lat + 0.0004, abs=1e-9)
    deleted = client.delete(url, headers=planner(patched.headers["ETag"]))
    assert (deleted.status_code, deleted.get_data(), _db_point(engine, kiosk)) == (204, b"", None)
    assert client.get(url).status_code == 404
    audits = _audit(engine, "point", kiosk)
    assert [(a["operation"], a["before"], a["after"]) for a in audits] == [
        ("replace", original.get_json(), put.get_json()), ("update", put.get_json(), patched.get_json()),
        ("delete", patched.get_json(), None)]
    revert = client.post(f"{url}/revert", json={"version": audits[0]["id"]}, headers=_headers(scene, "planner"))
    assert revert.status_code == 201, revert.get_json()
    assert revert.headers["Location"] == url
    # Back as the version recorded it: GeoJSON at 7 decimals (about 1 cm).
    assert _db_point(engine, kiosk) == {"name": "整改岗亭", "kind": "kiosk", "capacity": 10, "occupancy": 0,
                                        "status": "open", "notice": None,
                                        "lon": pytest.approx(scene.lon + 0.0002, abs=1e-7),
                                        "lat": pytest.approx(scene.lat + 0.0002, abs=1e-7)}
    last = _audit(engine, "point", kiosk)[-1]
    assert (last["operation"], last["before"], last["after"]) == ("revert", None, revert.get_json())


def test_staff_and_officers_tap_their_kiosk_and_see_its_history(client, engine, scene, kiosk):
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO user_point SELECT user_id, :id FROM user_point WHERE point_id = :kiosk"),
                     {"id": kiosk, "kiosk": scene.kiosk})
    with engine.connect() as conn:
        version = data_version(conn)
    url = f"/api/v1/points/{kiosk}/occupancy"
    answers = [client.post(url, json=body, headers=_headers(scene, who)) for who, body in
               (("staff", {"op": "increment"}), ("officer", {"op": "increment"}), ("planner", {"op": "decrement"}),
                ("staff", {"op": "full"}))]
    assert [a.status_code for a in answers] == [200] * 4
    assert [a.get_json()["occupancy"] for a in answers] == [1, 2, 1, 10]
    assert set(answers[-1].get_json()) == {"id", "occupancy", "capacity", "status", "notice", "live_updated_at"}
    assert answers[-1].headers["ETag"] == _get(client, f"/api/v1/points/{kiosk}").headers["ETag"]
    full = client.post(url, json={"op": "increment"}, headers=_headers(scene, "staff"))
    assert full.status_code == 409
    assert _db_point(engine, kiosk)["occupancy"] == 10
    with engine.connect() as conn:
        assert data_version(conn) == version  # taps retire no cached coverage
    history = client.get(f"/api/v1/points/{kiosk}/history", headers=_headers(scene, "staff")).get_json()
    assert [(v["operation"], v["role"], v["after"]["properties"]["occupancy"]) for v in history["versions"]] == [
        ("occupancy", "kiosk_staff", 10), ("occupancy", "planner", 1), ("occupancy", "officer", 2),
        ("occupancy", "kiosk_staff", 1)]
    assert "address" not in history["versions"][0]
    assert client.get(f"/api/v1/points/{kiosk}/history").status_code == 401
    planner_view = client.get(f"/api/v1/points/{kiosk}/history?limit=1", headers=_headers(scene, "planner"))
    assert planner_view.get_json()["versions"][0]["user_agent"] == UA


def test_a_planner_edits_a_grid_and_reverts_it(client, engine, scene):
    url, code = f"/api/v1/grids/{scene.new_grid}", scene.new_grid
    created = client.post("/api/v1/grids", json=_grid_feature(scene, code), headers=_headers(scene, "planner"))
    assert created.status_code == 201, created.get_json()
    reshaped = client.patch(url, json={"geometry": _square(scene.lon - 0.002, scene.lat - 0.002, 0.004)},
                            headers=_headers(scene, "planner", **{"If-Match": created.headers["ETag"]}))
    assert reshaped.status_code == 200
    with engine.connect() as conn:
        area = conn.execute(sa.text("SELECT ST_Area(geom::geography) FROM grid WHERE code = :c"),
                            {"c": code}).scalar_one()
    assert reshaped.get_json()["properties"]["area_m2"] == pytest.approx(area)
    assert area > created.get_json()["properties"]["area_m2"] * 1.7
    first = _audit(engine, "grid", code)[0]["id"]
    back = client.post(f"{url}/revert", json={"version": first},
                       headers=_headers(scene, "planner", **{"If-Match": reshaped.headers["ETag"]}))
    assert back.status_code == 200
    assert back.get_json()["geometry"] == created.get_json()["geometry"]
    gone = client.delete(url, headers=_headers(scene, "planner", **{"If-Match": back.headers["ETag"]}))
    assert gone.status_code == 204
    assert [a["operation"] for a in _audit(engine, "grid", code)] == ["create", "update", "revert", "delete"]


def test_live_points_by_ids_and_since(client, engine, scene, kiosk):
    tap = client.post(f"/api/v1/points/{kiosk}/occupancy", json={"op": "set", "value": 3},
                      headers=_headers(scene, "officer"))
    live = client.get(f"/api/v1/points/live?ids={kiosk},{scene.other}").get_json()
    assert [p["id"] for p in live["points"]] == sorted([kiosk, scene.other])
    assert next(p for p in live["points"] if p["id"] == kiosk) == tap.get_json()
    assert live["stale_after_minutes"] > 0
    since = client.get(f"/api/v1/points/live?since={live['now']}").get_json()
    assert kiosk in [p["id"] for p in since["points"]]
    for bad in ("since=yesterday", "since=2026-07-01T20:00:00", "ids=a,b", "ids=", "colour=red"):
        response = client.get(f"/api/v1/points/live?{bad}")
        assert response.status_code == 400, bad


# -- the results cache follows writes -----------------------------------------------------------------------------

def test_a_planner_moving_a_point_changes_the_coverage_answer_and_a_tap_does_not(app, client, engine, scene):
    coverage_url = "/api/v1/coverage/streets?radius=200&kind=kiosk"
    first = _get(client, coverage_url).get_json()
    # A spot on the longest uncovered portion: a kiosk moved there must cover some of it.
    portion = max(first["features"], key=lambda f: f["properties"]["length_m"])
    target = portion["geometry"]["coordinates"][len(portion["geometry"]["coordinates"]) // 2]
    if isinstance(target[0], list):
        target = target[0]
    with engine.begin() as conn:
        point_id = _insert_point(conn, "移动岗亭", scene.lon + 0.02, scene.lat + 0.02)
    scene.created_points.append(point_id)
    baseline = _get(client, coverage_url).get_json()  # the insert moved the version: computed afresh
    cache = app.extensions["geoservice_results"]
    hits = cache.hits
    assert _get(client, coverage_url).get_json() == baseline and cache.hits == hits + 1
    tap = client.post(f"/api/v1/points/{point_id}/occupancy", json={"op": "increment"},
                      headers=_headers(scene, "planner"))
    assert tap.status_code == 200
    assert _get(client, coverage_url).get_json() == baseline and cache.hits == hits + 2  # still the kept answer
    moved = client.patch(f"/api/v1/points/{point_id}", json={"geometry": {"type": "Point", "coordinates": target}},
                         headers=_headers(scene, "planner", **{"If-Match": tap.headers["ETag"]}))
    assert moved.status_code == 200, moved.get_json()
    after = _get(client, coverage_url).get_json()
    assert after["summary"]["uncovered_km"] < baseline["summary"]["uncovered_km"]
    home = {"geometry": {"type": "Point", "coordinates": [scene.lon + 0.02, scene.lat + 0.02]}}
    back = client.patch(f"/api/v1/points/{point_id}", json=home,
                        headers=_headers(scene, "planner", **{"If-Match": moved.headers["ETag"]}))
    assert back.status_code == 200
    assert _get(client, coverage_url).get_json()["summary"] == baseline["summary"]


# -- 200 taps from 8 clients at once ---------------------------------------------------------------------------

def test_200_taps_from_8_parallel_clients_all_count(served, engine, scene):
    with engine.begin() as conn:
        point_id = _insert_point(conn, "并发岗亭", scene.lon - 0.0003, scene.lat - 0.0003, capacity=1000, occupancy=7)
        conn.execute(sa.text("INSERT INTO user_point SELECT user_id, :id FROM user_point WHERE point_id = :kiosk"),
                     {"id": point_id, "kiosk": scene.kiosk})
    scene.created_points.append(point_id)
    request_headers = {**_headers(scene, "staff"), "Content-Type": "application/json"}
    answers, lock = [], threading.Lock()

    def tap(_n: int) -> None:
        request = urllib.request.Request(f"{served}/api/v1/points/{point_id}/occupancy", method="POST",
                                         data=b'{"op": "increment"}', headers=request_headers)
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.load(response)
        with lock:
            answers.append((response.status, body["occupancy"]))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(tap, range(200)))
    assert sorted(answers) == [(200, n) for n in range(8, 208)]  # every tap saw a count of its own
    assert _db_point(engine, point_id)["occupancy"] == 207
    audits = [a for a in _audit(engine, "point", point_id) if a["operation"] == "occupancy"]
    assert len(audits) == 200
    assert sorted(a["after"]["properties"]["occupancy"] - a["before"]["properties"]["occupancy"]
                  for a in audits) == [1] * 200


def test_a_served_write_without_a_token_is_a_json_401(served, scene):
    request = urllib.request.Request(f"{served}/api/v1/points/{scene.kiosk}/occupancy", method="POST",
                                     data=b'{"op": "increment"}', headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 401
    assert json.load(refused.value)["code"] == "Unauthorized"


# -- OGC API – Features Part 4: the same core functions under /ogc ------------------------------------------------

def test_ogc_part4_creates_updates_and_deletes_a_point_with_etags(client, engine, scene):
    items = "/ogc/collections/points/items"
    assert client.post(items, json=_point_feature(scene)).status_code == 401
    created = client.post(items, json=_point_feature(scene, name="OGC 岗亭"), headers=_headers(scene, "planner"),
                          content_type="application/geo+json")
    assert created.status_code == 201, created.get_json()
    point_id = created.get_json()["id"]
    scene.created_points.append(point_id)
    assert created.headers["Location"] == f"http://localhost{items}/{point_id}"
    item = client.get(f"{items}/{point_id}?f=json")
    assert item.status_code == 200 and item.headers["ETag"] == created.headers["ETag"]
    assert item.get_json()["properties"]["name"] == _db_point(engine, point_id)["name"] == "OGC 岗亭"
    merge_patch = json.dumps({"properties": {"notice": "暂停", "address": None}}, ensure_ascii=False)
    assert client.patch(f"{items}/{point_id}", data=merge_patch, content_type="application/merge-patch+json",
                        headers=_headers(scene, "planner")).status_code == 428
    updated = client.patch(f"{items}/{point_id}", data=merge_patch, content_type="application/merge-patch+json",
                           headers=_headers(scene, "planner", **{"If-Match": item.headers["ETag"]}))
    assert updated.status_code == 200, updated.get_json()
    assert _db_point(engine, point_id)["notice"] == "暂停"
    stale = client.delete(f"{items}/{point_id}",
                          headers=_headers(scene, "planner", **{"If-Match": item.headers["ETag"]}))
    assert stale.status_code == 412
    deleted = client.delete(f"{items}/{point_id}",
                            headers=_headers(scene, "planner", **{"If-Match": updated.headers["ETag"]}))
    assert deleted.status_code == 204 and _db_point(engine, point_id) is None
    assert [a["operation"] for a in _audit(engine, "point", point_id)] == ["create", "update", "delete"]


def test_ogc_part4_keeps_the_roles_and_read_only_collections(client, engine, scene):
    before = _state(engine)
    item = f"/ogc/collections/points/items/{scene.kiosk}"
    etag = client.get(f"{item}?f=json").headers["ETag"]
    refused = client.put(item, json=_point_feature(scene), headers=_headers(scene, "staff_elsewhere",
                                                                              **{"If-Match": etag}))
    assert refused.status_code == 403
    street = client.post("/ogc/collections/streets/items", json={"type": "Feature"},
                         headers=_headers(scene, "planner"))
    assert street.status_code == 405 and "GET" in street.headers["Allow"]
    assert client.delete("/ogc/collections/rivers/items/1", headers=_headers(scene, "planner")).status_code == 404
    assert "ETag" not in client.get("/ogc/collections/streets/items/1?f=json").headers
    assert _state(engine) == before
