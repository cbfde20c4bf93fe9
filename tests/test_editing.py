"""The editing core (geoservice.editing) called directly, inside the per-test transaction that is rolled back.

Values are checked against the database read independently (columns, ST_X/ST_Y), never against the core's own
representation; refusals leave the checksum of every table, the audit log and the data version as they were.
The HTTP layer, the role × endpoint matrix and the concurrency of taps are in test_editing_api.py.
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from geoservice import editing
from geoservice.accounts import Actor, User
from geoservice.errors import (
    Conflict,
    Forbidden,
    InvalidFeature,
    InvalidParameter,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
)
from geoservice.ingest import import_file
from geoservice.ingest.importer import ImportRejected
from geoservice.results_cache import data_version
from tests.accounts_helpers import unique_username
from tests.conftest import checksum, demo_import_options

ADDRESS = "198.51.100.7"
USER_AGENT = "pytest-editing/1.0"


@pytest.fixture()
def bounds(settings):
    return editing.Bounds(center=settings.city_center, radius_km=settings.city_radius_km)


def _actor(conn, role, *, squad=None, points=()) -> Actor:
    """A user inserted straight into app_user (the core reads only the row and user_point; no password needed)."""
    username = unique_username(role)
    user_id = conn.execute(sa.text("INSERT INTO app_user (username, display_name, role, squad_name, password_hash) "
                                   "VALUES (:u, :u, :r, :s, 'not a hash: no login') RETURNING id"),
                           {"u": username, "r": role, "s": squad}).scalar_one()
    for point_id in points:
        conn.execute(sa.text("INSERT INTO user_point VALUES (:u, :p)"), {"u": user_id, "p": point_id})
    user = User(id=user_id, username=username, display_name=username, role=role, squad_name=squad,
                point_ids=frozenset(points))
    return Actor(user=user, address=ADDRESS, user_agent=USER_AGENT)


@pytest.fixture()
def kiosk(conn) -> dict:
    """A kiosk with places, inside a grid looked after by a squad; the squad's name; a squad not looking after it."""
    row = conn.execute(sa.text("""
        SELECT p.id, p.capacity, p.occupancy, s.name AS squad
        FROM point p JOIN grid g ON ST_Intersects(g.geom, p.geom) JOIN squad s ON s.id = g.squad_id
        WHERE p.kind = 'kiosk' AND p.capacity >= 3 ORDER BY p.id LIMIT 1
    """)).mappings().one()
    other = conn.execute(sa.text("""
        SELECT s.name FROM squad s WHERE NOT EXISTS (
            SELECT FROM grid g JOIN point p ON ST_Intersects(g.geom, p.geom) WHERE g.squad_id = s.id AND p.id = :id)
        ORDER BY s.id LIMIT 1
    """), {"id": row["id"]}).scalar_one()
    return {**row, "other_squad": other}


@pytest.fixture()
def people(conn, kiosk) -> dict[str, Actor]:
    other_point = conn.execute(sa.text("SELECT min(id) FROM point WHERE id <> :id"), {"id": kiosk["id"]}).scalar_one()
    return {
        "planner": _actor(conn, "planner"),
        "admin": _actor(conn, "admin"),
        "staff": _actor(conn, "kiosk_staff", points=[kiosk["id"]]),
        "staff_elsewhere": _actor(conn, "kiosk_staff", points=[other_point]),
        "officer": _actor(conn, "officer", squad=kiosk["squad"]),
        "officer_elsewhere": _actor(conn, "officer", squad=kiosk["other_squad"]),
    }


def _row(conn, point_id: int) -> dict | None:
    row = conn.execute(sa.text("SELECT name, kind, amenities, capacity, occupancy, status, notice, opening_hours, "
                               "ST_X(geom) AS lon, ST_Y(geom) AS lat FROM point WHERE id = :id"),
                       {"id": point_id}).mappings().first()
    return None if row is None else dict(row)


def _audit(conn, table: str, key) -> list[dict]:
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT id, user_id, username, role, address, user_agent, operation, before, after FROM audit_log "
        "WHERE table_name = :t AND feature_key = :k ORDER BY id"), {"t": table, "k": str(key)}).mappings()]


def _audit_count(conn) -> int:
    return conn.execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one()


class Unchanged:
    """Asserts that the data (every table's checksum), the audit log and the data version did not move."""

    def __init__(self, conn):
        self.conn = conn
        self.before = (checksum(conn), _audit_count(conn), data_version(conn))

    def check(self):
        assert (checksum(self.conn), _audit_count(self.conn), data_version(self.conn)) == self.before


# -- the representation and its ETag --------------------------------------------------------------------------------

def test_a_feature_carries_every_column_and_its_etag_follows_its_state(conn, kiosk, people, bounds):
    got = editing.get_feature(conn, "points", kiosk["id"])
    row = _row(conn, kiosk["id"])
    props = got.feature["properties"]
    assert got.feature["id"] == props["id"] == kiosk["id"]
    assert {k: props[k] for k in ("name", "kind", "capacity", "occupancy", "status", "notice")} == \
        {k: row[k] for k in ("name", "kind", "capacity", "occupancy", "status", "notice")}
    assert props["amenities"] == list(row["amenities"])
    assert got.feature["geometry"]["coordinates"] == pytest.approx([row["lon"], row["lat"]], abs=1e-7)
    assert got.etag.startswith('"') and got.etag.endswith('"')
    # The session's time zone changes how timestamps print, never the ETag.
    conn.execute(sa.text("SET LOCAL TimeZone = 'Asia/Shanghai'"))
    assert editing.get_feature(conn, "points", kiosk["id"]) == got
    conn.execute(sa.text("UPDATE point SET notice = 'x' WHERE id = :id"), {"id": kiosk["id"]})
    assert editing.get_feature(conn, "points", kiosk["id"]).etag != got.etag


@pytest.mark.parametrize(("kind", "key"), [("points", 10**9), ("points", "abc"), ("grids", "411002"),
                                           ("grids", "999999999999999"), ("streets", 1)])
def test_a_missing_feature_is_not_found(conn, kind, key):
    with pytest.raises(NotFound):
        editing.get_feature(conn, kind, key)


# -- writes: values and audit rows ---------------------------------------------------------------------------------

def test_a_planner_creates_a_point_with_one_audit_row(conn, people, bounds):
    version = data_version(conn)
    body = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [113.8301, 34.0302]},
            "properties": {"name": " 新的便民点 ", "kind": "公厕", "amenities": ["drinking_water", "Seating"],
                           "opening_hours": "06:00-22:00", "capacity": 4, "occupancy": 1}}
    written = editing.create_feature(conn, people["planner"], "points", body, bounds=bounds)
    new_id = written.feature["id"]
    # Cleaned and mapped as an import would: stripped, labels to codes, status defaulted.
    assert _row(conn, new_id) == {"name": "新的便民点", "kind": "toilet", "amenities": ["drinking_water", "seating"],
                                  "capacity": 4, "occupancy": 1, "status": "open", "notice": None,
                                  "opening_hours": "06:00-22:00", "lon": 113.8301, "lat": 34.0302}
    assert written.created and written.etag == editing.get_feature(conn, "points", new_id).etag
    [audit] = _audit(conn, "point", new_id)
    assert (audit["operation"], audit["before"], audit["username"], audit["role"], audit["address"],
            audit["user_agent"]) == ("create", None, people["planner"].user.username, "planner", ADDRESS, USER_AGENT)
    assert audit["after"] == editing.get_feature(conn, "points", new_id).feature
    assert audit["id"] == written.version
    assert data_version(conn) != version  # a new point changes coverage


def test_a_planner_moves_a_point_and_the_audit_row_has_both_places(conn, kiosk, people, bounds):
    before = editing.get_feature(conn, "points", kiosk["id"])
    old = _row(conn, kiosk["id"])
    version = data_version(conn)
    written = editing.patch_feature(conn, people["planner"], "points", kiosk["id"],
                                    {"geometry": {"type": "Point", "coordinates": [113.84, 34.04]}},
                                    if_match=before.etag, bounds=bounds)
    new = _row(conn, kiosk["id"])
    assert (new["lon"], new["lat"]) == (113.84, 34.04)
    assert {k: v for k, v in new.items() if k not in ("lon", "lat")} == \
        {k: v for k, v in old.items() if k not in ("lon", "lat")}
    [audit] = _audit(conn, "point", kiosk["id"])
    assert audit["operation"] == "update"
    assert audit["before"] == before.feature
    assert audit["after"]["geometry"] == {"type": "Point", "coordinates": [113.84, 34.04]}
    assert audit["after"] == written.feature
    assert data_version(conn) != version


def test_a_put_replaces_every_property_and_leaves_out_read_only_ones(conn, kiosk, people, bounds):
    current = editing.get_feature(conn, "points", kiosk["id"])
    body = json.loads(json.dumps(current.feature))
    body["properties"].update(name="新名字", phone=None, updated_at="1999-01-01T00:00:00Z", id=12345)
    del body["properties"]["address"]  # left out: becomes empty
    editing.replace_feature(conn, people["planner"], "points", kiosk["id"], body, if_match=current.etag,
                            bounds=bounds)
    row = conn.execute(sa.text("SELECT id, name, phone, address, updated_at > '2000-01-01' AS fresh FROM point "
                               "WHERE id = :id"), {"id": kiosk["id"]}).mappings().one()
    assert dict(row) == {"id": kiosk["id"], "name": "新名字", "phone": None, "address": None, "fresh": True}
    assert [a["operation"] for a in _audit(conn, "point", kiosk["id"])] == ["replace"]


def test_a_change_that_changes_nothing_writes_nothing(conn, kiosk, people, bounds):
    current = editing.get_feature(conn, "points", kiosk["id"])
    unchanged = Unchanged(conn)
    same = {"properties": {"name": current.feature["properties"]["name"]}, "geometry": current.feature["geometry"]}
    written = editing.patch_feature(conn, people["planner"], "points", kiosk["id"], same, if_match=current.etag,
                                    bounds=bounds)
    assert (written.version, written.etag) == (None, current.etag)
    unchanged.check()


def test_staff_change_the_live_fields_of_their_point_and_the_data_version_stays(conn, kiosk, people, bounds):
    current = editing.get_feature(conn, "points", kiosk["id"])
    version = data_version(conn)
    editing.patch_feature(conn, people["staff"], "points", kiosk["id"],
                          {"properties": {"notice": "今晚热水暂停", "occupancy": 2}}, if_match=current.etag,
                          bounds=bounds)
    row = _row(conn, kiosk["id"])
    assert (row["notice"], row["occupancy"]) == ("今晚热水暂停", 2)
    assert data_version(conn) == version  # occupancy and notices change no whole-city answer
    [audit] = _audit(conn, "point", kiosk["id"])
    assert (audit["role"], audit["before"], audit["after"]["properties"]["notice"]) == \
        ("kiosk_staff", current.feature, "今晚热水暂停")


def test_an_officer_changes_the_capacity_of_a_point_in_their_squads_grids(conn, kiosk, people, bounds):
    current = editing.get_feature(conn, "points", kiosk["id"])
    editing.patch_feature(conn, people["officer"], "points", kiosk["id"],
                          {"properties": {"capacity": kiosk["capacity"] + 5, "opening_hours": "24/7"}},
                          if_match=current.etag, bounds=bounds)
    row = _row(conn, kiosk["id"])
    assert (row["capacity"], row["opening_hours"]) == (kiosk["capacity"] + 5, "24/7")


# -- refusals: nothing changes ---------------------------------------------------------------------------------------

def _patch(who: str, body: dict):
    def run(conn, kiosk, people, bounds, etag):
        return editing.patch_feature(conn, people[who], "points", kiosk["id"], body, if_match=etag, bounds=bounds)
    return run


REFUSALS = {
    "admin edits no data": (_patch("admin", {"properties": {"notice": "x"}}), Forbidden),
    "staff on another kiosk": (_patch("staff_elsewhere", {"properties": {"notice": "x"}}), Forbidden),
    "staff renames": (_patch("staff", {"properties": {"name": "改名"}}), Forbidden),
    "staff moves": (_patch("staff", {"geometry": {"type": "Point", "coordinates": [113.84, 34.04]}}), Forbidden),
    "officer outside the squad": (_patch("officer_elsewhere", {"properties": {"status": "closed"}}), Forbidden),
    "officer changes the kind": (_patch("officer", {"properties": {"kind": "toilet"}}), Forbidden),
    "staff creates": (lambda conn, kiosk, people, bounds, etag: editing.create_feature(
        conn, people["staff"], "points", {"type": "Feature", "properties": {"name": "x", "kind": "kiosk"},
                                          "geometry": {"type": "Point", "coordinates": [113.83, 34.03]}},
        bounds=bounds), Forbidden),
    "officer deletes": (lambda conn, kiosk, people, bounds, etag: editing.delete_feature(
        conn, people["officer"], "points", kiosk["id"], if_match=etag), Forbidden),
    "officer edits a grid": (lambda conn, kiosk, people, bounds, etag: editing.patch_feature(
        conn, people["officer"], "grids", conn.execute(sa.text("SELECT min(code) FROM grid")).scalar_one(),
        {"properties": {"officer_name": "x"}}, if_match=etag, bounds=bounds), Forbidden),
    "no If-Match": (lambda conn, kiosk, people, bounds, etag: editing.patch_feature(
        conn, people["planner"], "points", kiosk["id"], {"properties": {"notice": "x"}}, if_match=None,
        bounds=bounds), PreconditionRequired),
    "stale If-Match": (lambda conn, kiosk, people, bounds, etag: editing.patch_feature(
        conn, people["planner"], "points", kiosk["id"], {"properties": {"notice": "x"}}, if_match='"0123abcd"',
        bounds=bounds), PreconditionFailed),
    "staff tap on another kiosk": (lambda conn, kiosk, people, bounds, etag: editing.change_occupancy(
        conn, people["staff_elsewhere"], kiosk["id"], {"op": "increment"}), Forbidden),
    "officer tap outside the squad": (lambda conn, kiosk, people, bounds, etag: editing.change_occupancy(
        conn, people["officer_elsewhere"], kiosk["id"], {"op": "increment"}), Forbidden),
    "admin tap": (lambda conn, kiosk, people, bounds, etag: editing.change_occupancy(
        conn, people["admin"], kiosk["id"], {"op": "increment"}), Forbidden),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_a_refused_write_changes_nothing(conn, kiosk, people, bounds, case):
    run, error = REFUSALS[case]
    etag = editing.get_feature(conn, "points", kiosk["id"]).etag
    unchanged = Unchanged(conn)
    with pytest.raises(error):
        run(conn, kiosk, people, bounds, etag)
    unchanged.check()


POINT_PROBLEMS = [
    ({"properties": {"kind": "castle"}}, "kind", "unknown kind 'castle'"),
    ({"properties": {"amenities": ["wifi"]}}, "amenities", "unknown amenity 'wifi'"),
    ({"properties": {"phone": "call me"}}, "phone", "is not a phone number"),
    ({"properties": {"opening_hours": "whenever"}}, "opening_hours", "whenever"),
    ({"properties": {"season": "summer-ish"}}, "season", "season"),
    ({"properties": {"occupancy": 1000}}, "occupancy", "exceeds capacity"),
    ({"properties": {"capacity": -1}}, "capacity", "whole number ≥ 0"),
    ({"properties": {"capacity": "ten"}}, "capacity", "whole number"),
    ({"properties": {"name": "   "}}, "name", "name is required"),
    ({"properties": {"notice": "水" * 201}}, "notice", "point_notice_length"),
    ({"properties": {"colour": "red"}}, "colour", "unknown property"),
    ({"geometry": {"type": "Point", "coordinates": [2.35, 48.85]}}, "geometry", "km from the city centre"),
    ({"geometry": {"type": "Point", "coordinates": [34.03, 113.83]}}, "geometry", "look swapped"),
    ({"geometry": {"type": "LineString", "coordinates": [[113.83, 34.03], [113.84, 34.04]]}}, "geometry",
     "expected a Point"),
    ({"geometry": {"type": "Point"}}, "geometry", "coordinates"),
    ({"geometry": "POINT (113.83 34.03)"}, "geometry", "GeoJSON geometry object"),
    ({"geometry": None}, "geometry", "missing geometry"),
    ("not a feature", "body", "GeoJSON Feature"),
]


@pytest.mark.parametrize(("body", "field", "fragment"), POINT_PROBLEMS,
                         ids=[f"{p[1]}-{i}" for i, p in enumerate(POINT_PROBLEMS)])
def test_an_invalid_point_is_refused_naming_the_field(conn, kiosk, people, bounds, body, field, fragment):
    etag = editing.get_feature(conn, "points", kiosk["id"]).etag
    unchanged = Unchanged(conn)
    with pytest.raises(InvalidFeature) as refused:
        editing.patch_feature(conn, people["planner"], "points", kiosk["id"], body, if_match=etag, bounds=bounds)
    assert field in refused.value.errors, refused.value.errors
    assert fragment in refused.value.errors[field]
    assert refused.value.status == 400
    unchanged.check()


def test_every_problem_of_a_feature_is_named_at_once(conn, people, bounds):
    body = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [2.35, 48.85]},
            "properties": {"name": "x", "kind": "castle", "phone": "?", "capacity": 1.5}}
    with pytest.raises(InvalidFeature) as refused:
        editing.create_feature(conn, people["planner"], "points", body, bounds=bounds)
    assert set(refused.value.errors) == {"geometry", "kind", "phone", "capacity"}


@pytest.mark.parametrize(("column", "value"), [("kind", "castle"), ("opening_hours", "8-late"), ("phone", "??")])
def test_the_reasons_are_the_importers_own(conn, people, bounds, tmp_path, column, value):
    # One validator: a file row with the same value is refused by an import with the same words.
    row = {"name": "检验点", "kind": "kiosk", "lon": 113.83, "lat": 34.03, column: value}
    path = tmp_path / "points.csv"
    path.write_text(",".join(row) + "\n" + ",".join(str(v) for v in row.values()) + "\n", encoding="utf-8")
    with pytest.raises(ImportRejected) as imported:
        import_file(conn, "points", path, options=demo_import_options())
    [issue] = imported.value.issues
    body = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [113.83, 34.03]},
            "properties": {k: v for k, v in row.items() if k not in ("lon", "lat")}}
    with pytest.raises(InvalidFeature) as edited:
        editing.create_feature(conn, people["planner"], "points", body, bounds=bounds)
    assert edited.value.errors == {issue.field: issue.reason}


# -- occupancy ---------------------------------------------------------------------------------------------------

def _occupancy(conn, point_id):
    return conn.execute(sa.text("SELECT occupancy FROM point WHERE id = :id"), {"id": point_id}).scalar_one()


def test_taps_count_and_audit_and_keep_the_data_version(conn, kiosk, people):
    conn.execute(sa.text("UPDATE point SET occupancy = 0 WHERE id = :id"), {"id": kiosk["id"]})
    version = data_version(conn)
    capacity = kiosk["capacity"]
    taps = [("staff", {"op": "increment"}, 1), ("officer", {"op": "increment"}, 2),
            ("planner", {"op": "decrement"}, 1), ("staff", {"op": "full"}, capacity),
            ("staff", {"op": "set", "value": 2}, 2)]
    for who, body, expected in taps:
        live = editing.change_occupancy(conn, people[who], kiosk["id"], body)
        assert live.state["occupancy"] == expected == _occupancy(conn, kiosk["id"])
        assert live.state["capacity"] == capacity
        assert live.etag == editing.get_feature(conn, "points", kiosk["id"]).etag
    audits = _audit(conn, "point", kiosk["id"])
    assert [a["operation"] for a in audits] == ["occupancy"] * len(taps)
    assert [(a["before"]["properties"]["occupancy"], a["after"]["properties"]["occupancy"]) for a in audits] == \
        [(0, 1), (1, 2), (2, 1), (1, capacity), (capacity, 2)]
    assert [a["role"] for a in audits] == ["kiosk_staff", "officer", "planner", "kiosk_staff", "kiosk_staff"]
    assert data_version(conn) == version


@pytest.mark.parametrize(("start", "body", "error", "fragment"), [
    ("capacity", {"op": "increment"}, Conflict, "is full"),
    (0, {"op": "decrement"}, Conflict, "no place taken"),
    (None, {"op": "decrement"}, Conflict, "no place taken"),
    (0, {"op": "set", "value": 10_000}, Conflict, "exceeds"),
    (0, {"op": "set", "value": -1}, InvalidFeature, "whole number"),
    (0, {"op": "set"}, InvalidFeature, "whole number"),
    (0, {"op": "increment", "value": 3}, InvalidFeature, "only with op set"),
    (0, {"op": "jump"}, InvalidFeature, "must be one of"),
    (0, {"op": "increment", "by": 2}, InvalidFeature, "unknown member"),
    (0, [1], InvalidFeature, "must be an object"),
])
def test_a_tap_out_of_range_or_malformed_changes_nothing(conn, kiosk, people, start, body, error, fragment):
    occupancy = kiosk["capacity"] if start == "capacity" else start
    conn.execute(sa.text("UPDATE point SET occupancy = :o WHERE id = :id"), {"o": occupancy, "id": kiosk["id"]})
    unchanged = Unchanged(conn)
    with pytest.raises(error) as refused:
        editing.change_occupancy(conn, people["staff"], kiosk["id"], body)
    assert fragment in str(refused.value)
    unchanged.check()


def test_a_point_without_capacity_takes_no_tap(conn, people):
    point_id = conn.execute(sa.text("SELECT min(id) FROM point WHERE capacity IS NULL")).scalar_one()
    with pytest.raises(Conflict, match="no capacity"):
        editing.change_occupancy(conn, people["planner"], point_id, {"op": "increment"})


# -- delete, revert, history ---------------------------------------------------------------------------------------

def test_a_deleted_point_comes_back_by_revert_with_its_id(conn, kiosk, people, bounds):
    original = _row(conn, kiosk["id"])
    current = editing.get_feature(conn, "points", kiosk["id"])
    patched = editing.patch_feature(conn, people["planner"], "points", kiosk["id"], {"properties": {"name": "临时"}},
                                    if_match=current.etag, bounds=bounds)
    deleted = editing.delete_feature(conn, people["planner"], "points", kiosk["id"], if_match=patched.etag)
    assert (deleted.feature, _row(conn, kiosk["id"])) == (None, None)
    # Back to the state after the rename; a deleted point has no ETag to match.
    with pytest.raises(PreconditionFailed):
        editing.revert_feature(conn, people["planner"], "points", kiosk["id"], {"version": patched.version},
                               if_match=patched.etag, bounds=bounds)
    restored = editing.revert_feature(conn, people["planner"], "points", kiosk["id"], {"version": patched.version},
                                      if_match=None, bounds=bounds)
    assert restored.created and restored.feature["id"] == kiosk["id"]
    assert _row(conn, kiosk["id"]) == {**original, "name": "临时"}
    operations = [(a["operation"], a["before"] is None, a["after"] is None) for a in _audit(conn, "point", kiosk["id"])]
    assert operations == [("update", False, False), ("delete", False, True), ("revert", True, False)]


def test_a_revert_goes_back_to_the_state_before_a_change(conn, kiosk, people, bounds):
    original = _row(conn, kiosk["id"])
    current = editing.get_feature(conn, "points", kiosk["id"])
    first = editing.patch_feature(conn, people["planner"], "points", kiosk["id"],
                                  {"properties": {"name": "一"}, "geometry": {"type": "Point",
                                                                             "coordinates": [113.84, 34.04]}},
                                  if_match=current.etag, bounds=bounds)
    second = editing.patch_feature(conn, people["planner"], "points", kiosk["id"], {"properties": {"name": "二"}},
                                   if_match=first.etag, bounds=bounds)
    back = editing.revert_feature(conn, people["planner"], "points", kiosk["id"], {"version": first.version},
                                  if_match=second.etag, bounds=bounds)
    assert _row(conn, kiosk["id"]) == {**original, "name": "一", "lon": 113.84, "lat": 34.04}
    last = _audit(conn, "point", kiosk["id"])[-1]
    assert (last["operation"], last["before"], last["after"]) == ("revert", second.feature, back.feature)


@pytest.mark.parametrize(("body", "fragment"), [({"version": "1"}, "whole number"), ({}, "whole number"),
                                                 ({"version": 10**12}, "has no version")])
def test_a_revert_to_no_version_of_the_feature_is_refused(conn, kiosk, people, bounds, body, fragment):
    etag = editing.get_feature(conn, "points", kiosk["id"]).etag
    unchanged = Unchanged(conn)
    with pytest.raises(InvalidFeature) as refused:
        editing.revert_feature(conn, people["planner"], "points", kiosk["id"], body, if_match=etag, bounds=bounds)
    assert fragment in refused.value.errors["version"]
    unchanged.check()


def test_reverting_to_a_deletion_is_refused(conn, kiosk, people, bounds):
    etag = editing.get_feature(conn, "points", kiosk["id"]).etag
    deleted = editing.delete_feature(conn, people["planner"], "points", kiosk["id"], if_match=etag)
    with pytest.raises(InvalidFeature, match="deletion"):
        editing.revert_feature(conn, people["planner"], "points", kiosk["id"], {"version": deleted.version},
                               if_match=None, bounds=bounds)


def test_only_planners_revert(conn, kiosk, people, bounds):
    etag = editing.get_feature(conn, "points", kiosk["id"]).etag
    tap = editing.change_occupancy(conn, people["staff"], kiosk["id"], {"op": "full"})
    with pytest.raises(Forbidden):
        editing.revert_feature(conn, people["staff"], "points", kiosk["id"], {"version": tap.version},
                               if_match=etag, bounds=bounds)


def test_history_is_newest_first_pages_on_and_shows_where_only_to_planners(conn, kiosk, people):
    versions = [editing.change_occupancy(conn, people["staff"], kiosk["id"], {"op": "set", "value": n}).version
                for n in range(3)]
    page = editing.history(conn, people["staff"], "points", kiosk["id"], limit=2)
    assert [v["version"] for v in page["versions"]] == versions[:0:-1]
    assert page["next_before"] == versions[1]
    assert "address" not in page["versions"][0]
    rest = editing.history(conn, people["staff"], "points", kiosk["id"], limit=2, before=page["next_before"])
    assert ([v["version"] for v in rest["versions"]], rest["next_before"]) == ([versions[0]], None)
    seen_by_planner = editing.history(conn, people["planner"], "points", kiosk["id"])["versions"][0]
    assert (seen_by_planner["address"], seen_by_planner["user_agent"], seen_by_planner["user"]) == \
        (ADDRESS, USER_AGENT, people["staff"].user.username)
    assert seen_by_planner["after"]["properties"]["occupancy"] == 2
    with pytest.raises(NotFound):
        editing.history(conn, people["staff"], "points", 10**9)


# -- grids -------------------------------------------------------------------------------------------------------

def _square(lon: float, lat: float, size: float = 0.002) -> dict:
    return {"type": "Polygon", "coordinates": [[[lon, lat], [lon + size, lat], [lon + size, lat + size],
                                                [lon, lat + size], [lon, lat]]]}


@pytest.fixture()
def free_grid_code(conn) -> str:
    community = conn.execute(sa.text("SELECT min(code) FROM community")).scalar_one()
    return community + "999"


def test_a_planner_creates_edits_and_deletes_a_grid(conn, people, bounds, free_grid_code):
    squads = conn.execute(sa.text("SELECT name FROM squad ORDER BY id LIMIT 2")).scalars().all()
    body = {"type": "Feature", "geometry": _square(113.83, 34.03),
            "properties": {"code": free_grid_code, "name": "测试网格", "squad": squads[0], "officer_name": "王五",
                           "officer_phone": "13800000000"}}
    created = editing.create_feature(conn, people["planner"], "grids", body, bounds=bounds)
    row = conn.execute(sa.text("SELECT g.community_code, g.name, s.name AS squad, g.officer_phone, "
                               "ST_Area(g.geom::geography) AS area FROM grid g JOIN squad s ON s.id = g.squad_id "
                               "WHERE g.code = :c"), {"c": free_grid_code}).mappings().one()
    area = pytest.approx(created.feature["properties"]["area_m2"])
    assert dict(row) == {"community_code": free_grid_code[:12], "name": "测试网格", "squad": squads[0],
                         "officer_phone": "13800000000", "area": area}
    with pytest.raises(Conflict):
        editing.create_feature(conn, people["planner"], "grids", body, bounds=bounds)
    changed = editing.patch_feature(conn, people["planner"], "grids", free_grid_code,
                                    {"properties": {"squad": squads[1]}, "geometry": _square(113.83, 34.03, 0.003)},
                                    if_match=created.etag, bounds=bounds)
    assert conn.execute(sa.text("SELECT s.name FROM grid g JOIN squad s ON s.id = g.squad_id WHERE g.code = :c"),
                        {"c": free_grid_code}).scalar_one() == squads[1]
    assert changed.feature["properties"]["area_m2"] > created.feature["properties"]["area_m2"]
    editing.delete_feature(conn, people["planner"], "grids", free_grid_code, if_match=changed.etag)
    assert conn.execute(sa.text("SELECT count(*) FROM grid WHERE code = :c"), {"c": free_grid_code}).scalar_one() == 0
    assert [a["operation"] for a in _audit(conn, "grid", free_grid_code)] == ["create", "update", "delete"]


GRID_PROBLEMS = [
    ({"properties": {"squad": "无名中队"}}, "squad", "unknown squad"),
    ({"properties": {"officer_phone": "x"}}, "officer_phone", "not a phone number"),
    ({"properties": {"code": "411002001001002"}}, "code", "cannot change"),
    ({"properties": {"community_code": "411002001002"}}, "community_code", "does not start with"),
    ({"geometry": {"type": "Polygon", "coordinates": [[[113.83, 34.03], [113.84, 34.04], [113.84, 34.03],
                                                       [113.83, 34.04], [113.83, 34.03]]]}}, "geometry",
     "Self-intersection"),
    ({"geometry": {"type": "Point", "coordinates": [113.83, 34.03]}}, "geometry", "expected a Polygon"),
]


@pytest.mark.parametrize(("body", "field", "fragment"), GRID_PROBLEMS, ids=[p[1] for p in GRID_PROBLEMS])
def test_an_invalid_grid_is_refused_naming_the_field(conn, people, bounds, body, field, fragment):
    code = "411002001001001"
    etag = editing.get_feature(conn, "grids", code).etag
    unchanged = Unchanged(conn)
    with pytest.raises(InvalidFeature) as refused:
        editing.patch_feature(conn, people["planner"], "grids", code, body, if_match=etag, bounds=bounds)
    assert fragment in refused.value.errors[field], refused.value.errors
    unchanged.check()


def test_a_grid_in_no_community_is_refused(conn, people, bounds):
    body = {"type": "Feature", "geometry": _square(113.83, 34.03),
            "properties": {"code": "411002999999001", "name": "无处"}}
    with pytest.raises(InvalidFeature) as refused:
        editing.create_feature(conn, people["planner"], "grids", body, bounds=bounds)
    assert "does not exist" in refused.value.errors["community_code"]


# -- live state -----------------------------------------------------------------------------------------------------

def test_live_points_by_ids_and_since(conn, kiosk, people):
    conn.execute(sa.text("UPDATE point SET occupancy = 0 WHERE id = :id"), {"id": kiosk["id"]})
    live = editing.change_occupancy(conn, people["staff"], kiosk["id"], {"op": "set", "value": 1})
    by_ids = editing.live_points(conn, ids=[kiosk["id"], 10**9], stale_after_minutes=30)
    assert by_ids["points"] == [live.state]
    assert by_ids["stale_after_minutes"] == 30
    now = conn.execute(sa.text("SELECT now()")).scalar_one()
    changed = editing.live_points(conn, since=now, stale_after_minutes=30)["points"]
    expected = conn.execute(sa.text("SELECT id FROM point WHERE live_updated_at > now() - interval '60 seconds' "
                                    "ORDER BY id")).scalars().all()
    assert [p["id"] for p in changed] == expected and kiosk["id"] in expected
    with pytest.raises(InvalidParameter):
        editing.live_points(conn, since=now.replace(tzinfo=None), stale_after_minutes=30)
