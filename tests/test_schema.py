"""The database itself refuses what the data model forbids (constraints live in PostGIS, not only in Python)."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from geoservice import vocab

BOWTIE = "SRID=4326;POLYGON((113.80 34.00, 113.81 34.01, 113.81 34.00, 113.80 34.01, 113.80 34.00))"
SQUARE = "SRID=4326;POLYGON((113.80 34.00, 113.801 34.00, 113.801 34.001, 113.80 34.001, 113.80 34.00))"
COMMUNITY = "411002001001"


def insert_grid(conn, code: str, community: str = COMMUNITY, geom: str = SQUARE) -> None:
    conn.execute(sa.text(
        "INSERT INTO grid (code, community_code, name, geom) VALUES (:code, :community, 'test', :geom)"
    ), {"code": code, "community": community, "geom": geom})


def insert_point(conn, **fields) -> None:
    row = {"name": "test", "kind": "kiosk", "amenities": [], "capacity": None, "occupancy": None,
           "geom": "SRID=4326;POINT(113.82 34.02)", **fields}
    conn.execute(sa.text(
        "INSERT INTO point (name, kind, amenities, capacity, occupancy, geom) "
        "VALUES (:name, :kind, :amenities, :capacity, :occupancy, :geom)"
    ), row)


@pytest.mark.parametrize(("code", "community", "geom", "constraint"), [
    ("411002001001901", COMMUNITY, BOWTIE, "grid_geom_valid"),
    ("41100200100190", COMMUNITY, SQUARE, "grid_code_format"),
    ("4110020010019a1", COMMUNITY, SQUARE, "grid_code_format"),
    ("411002001002901", COMMUNITY, SQUARE, "grid_code_prefix"),
])
def test_database_refuses_bad_grids(conn, code, community, geom, constraint):
    with pytest.raises(sa.exc.IntegrityError, match=constraint):
        insert_grid(conn, code, community, geom)


def test_database_refuses_grid_of_unknown_community(conn):
    with pytest.raises(sa.exc.IntegrityError, match="grid_community_code_fkey"):
        insert_grid(conn, "411002009009001", "411002009009")


@pytest.mark.parametrize(("geom", "message"), [
    (SQUARE.replace("4326", "3857"), "SRID"),
    ("SRID=4326;LINESTRING(113.8 34, 113.9 34)", "type"),
])
def test_database_refuses_other_srid_and_geometry_type(conn, geom, message):
    with pytest.raises(sa.exc.DataError, match=message):
        insert_grid(conn, "411002001001901", geom=geom)


def test_a_good_grid_is_accepted_with_its_area_computed(conn):
    insert_grid(conn, "411002001001901")
    area = conn.execute(sa.text("SELECT area_m2 FROM grid WHERE code = '411002001001901'")).scalar_one()
    # 0.001° × 0.001° at 34° N: 92.4 m × 110.9 m (independent spherical estimate), within 1 %.
    assert area == pytest.approx(92.4 * 110.9, rel=0.01)


@pytest.mark.parametrize(("fields", "constraint"), [
    ({"kind": "spaceport"}, "point_kind_vocab"),
    ({"amenities": ["wifi"]}, "point_amenities_vocab"),
    ({"capacity": 5, "occupancy": 6}, "point_occupancy_within_capacity"),
    ({"capacity": 5, "occupancy": -1}, "point_occupancy_within_capacity"),
    ({"capacity": None, "occupancy": 1}, "point_occupancy_within_capacity"),
    ({"capacity": -2}, "point_capacity_nonnegative"),
    ({"name": "  "}, "point_name_nonempty"),
])
def test_database_refuses_bad_points(conn, fields, constraint):
    with pytest.raises(sa.exc.IntegrityError, match=constraint):
        insert_point(conn, **fields)


def test_occupancy_equal_to_capacity_is_allowed(conn):
    insert_point(conn, capacity=5, occupancy=5, amenities=["overnight", "tent"])


@pytest.mark.parametrize(("table", "code", "parent", "constraint"), [
    ("subdistrict", "41100200", "411002", "subdistrict_code_format"),
    ("subdistrict", "411003001", "411002", "subdistrict_code_prefix"),
    ("community", "411002001001", "411002002", "community_code_prefix"),
])
def test_database_refuses_bad_area_codes(conn, table, code, parent, constraint):
    parent_col = {"subdistrict": "district_code", "community": "subdistrict_code"}[table]
    with pytest.raises(sa.exc.IntegrityError, match=constraint):
        conn.execute(sa.text(f"INSERT INTO {table} (code, {parent_col}, name) VALUES (:c, :p, 'x')"),
                     {"c": code, "p": parent})


def test_updated_at_is_maintained_by_the_database(conn):
    before = conn.execute(sa.text("SELECT updated_at FROM point WHERE id = 1")).scalar_one()
    conn.execute(sa.text("SELECT pg_sleep(0.01)"))
    conn.commit()  # updated_at is the transaction time: the update must run in a later transaction
    conn.begin()
    conn.execute(sa.text("UPDATE point SET occupancy = occupancy WHERE id = 1"))
    after = conn.execute(sa.text("SELECT updated_at FROM point WHERE id = 1")).scalar_one()
    assert after > before


def test_every_geometry_column_has_a_gist_index(conn):
    geometry_columns = conn.execute(sa.text(
        "SELECT f_table_name, f_geometry_column FROM geometry_columns WHERE f_table_schema = 'public'"
    )).all()
    assert {t for t, _ in geometry_columns} == {"district", "subdistrict", "community", "grid", "street", "point"}
    for table, column in geometry_columns:
        indexes = conn.execute(sa.text(
            "SELECT indexdef FROM pg_indexes WHERE tablename = :t"), {"t": table}).scalars().all()
        assert any("USING gist" in d and f"({column})" in d for d in indexes), (table, indexes)


def _check_values(conn, constraint: str) -> set[str]:
    definition = conn.execute(sa.text(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = :c"), {"c": constraint}).scalar_one()
    return set(re.findall(r"'([a-z_]+)'", definition))


def test_database_vocabularies_match_the_python_ones(conn):
    assert _check_values(conn, "point_kind_vocab") == set(vocab.KIND_CODES)
    assert _check_values(conn, "point_amenities_vocab") == set(vocab.AMENITY_CODES)
    assert _check_values(conn, "street_class_vocab") == set(vocab.STREET_CLASSES)
    assert _check_values(conn, "point_status_vocab") == set(vocab.POINT_STATUSES)
