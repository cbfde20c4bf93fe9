"""The demo city: the seeds' contents, determinism, numbering, and the planted defects (checked with shapely)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import shapely
import sqlalchemy as sa
from pyproj import Transformer
from shapely import wkb

from geoservice.citygen import demo_spec, generate_city
from geoservice.demo import load_city
from geoservice.health import row_counts
from tests.conftest import checksum

SEED_STREETS = {"劳动路", "三八路", "湖滨路", "塔东路", "东顺和街"}


def test_demo_city_has_the_seeds(conn):
    kinds = dict(conn.execute(sa.text("SELECT kind, count(*) FROM point GROUP BY kind")).all())
    assert kinds["vendor_point"] == 92
    assert kinds["kiosk"] == 8
    assert {"toilet", "night_market", "parking", "job_board", "rest_station", "melon_point"} <= set(kinds)
    kiosks = conn.execute(sa.text("SELECT amenities, capacity, occupancy FROM point WHERE kind = 'kiosk'")).all()
    assert all("overnight" in a and cap > 0 and 0 <= occ <= cap for a, cap, occ in kiosks)
    vendor_amenities = conn.execute(sa.text(
        "SELECT DISTINCT unnest(amenities) FROM point WHERE kind = 'vendor_point'")).scalars().all()
    assert set(vendor_amenities) == {"drinking_water", "umbrella", "tyre_pump", "cooling_oil", "towel"}


def test_named_seed_points_sit_on_their_streets(conn):
    rows = conn.execute(sa.text("""
        SELECT p.name, p.amenities,
               (SELECT s.name FROM street s ORDER BY s.geom::geography <-> p.geom::geography LIMIT 1) AS street
        FROM point p WHERE p.name IN ('三八路便民服务点', '湖滨路零工信息公示牌', '许昌站站前广场停车场')
    """)).all()
    by_name = {r.name: r for r in rows}
    assert set(by_name["三八路便民服务点"].amenities) == {"drinking_water", "first_aid", "phone_charging", "seating"}
    assert by_name["三八路便民服务点"].street == "三八路"
    assert by_name["湖滨路零工信息公示牌"].street == "湖滨路"
    assert "许昌站站前广场停车场" in by_name


def test_demo_city_sizes(conn):
    counts = row_counts(conn)
    assert counts["district"] == 1
    assert counts["subdistrict"] >= 4
    assert counts["community"] >= 12
    assert 200 <= counts["grid"] <= 999
    assert counts["street"] >= 2000
    street_names = set(conn.execute(sa.text("SELECT DISTINCT name FROM street")).scalars())
    assert SEED_STREETS <= street_names
    classes = Counter(conn.execute(sa.text("SELECT class FROM street")).scalars())
    assert {"primary", "secondary", "tertiary", "residential", "living_street"} <= set(classes)
    per_subdistrict = conn.execute(sa.text(
        "SELECT left(code, 9), count(*) FROM grid GROUP BY 1")).all()
    assert 24 in {n for _, n in per_subdistrict}


def test_loading_twice_gives_identical_data(conn):
    first = checksum(conn)
    counts = load_city(conn, generate_city(demo_spec()))
    assert checksum(conn) == first
    assert counts == row_counts(conn)


def test_grid_codes_number_west_to_east_then_north_to_south(conn):
    """Recompute the order from the grid geometries: by row (north first, 50 m rows), then west to east."""
    rows = conn.execute(sa.text("SELECT code, community_code, ST_AsBinary(geom) FROM grid")).all()
    by_community: dict[str, list] = {}
    for code, community, geom in rows:
        assert code.startswith(community) and len(code) == 15
        # The north-west corner of the bounding box is not moved by the planted gaps and strips.
        minx, _miny, _maxx, maxy = shapely.bounds(wkb.loads(bytes(geom)))
        x, y = TO_METRIC.transform(minx, maxy)
        by_community.setdefault(community, []).append((code, x, y))
    for grids in by_community.values():
        expected = sorted(grids, key=lambda g: (-round(g[2] / 50), g[1]))
        assert [g[0] for g in expected] == sorted(g[0] for g in grids)
        assert [int(g[0][-3:]) for g in sorted(grids)] == list(range(1, len(grids) + 1))


TO_METRIC = Transformer.from_crs("EPSG:4326", "EPSG:4547", always_xy=True)


def _metric(geom_wkb: bytes):
    """WKB in WGS 84 → shapely geometry in metres (EPSG:4547)."""
    def project(coords):
        x, y = TO_METRIC.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(wkb.loads(bytes(geom_wkb)), project)


def test_planted_grid_defects_are_in_the_data(conn, demo_city):
    """Independent of PostGIS: shapely finds the planted gaps and overlaps where data/README.md says."""
    grids = {code: _metric(g) for code, g in conn.execute(sa.text("SELECT code, ST_AsBinary(geom) FROM grid"))}
    district = _metric(conn.execute(sa.text("SELECT ST_AsBinary(geom) FROM district")).scalar_one())
    covered = shapely.union_all(list(grids.values()))
    gaps = [g for g in getattr(district.difference(covered), "geoms", [district.difference(covered)])
            if g.area >= 1.0]
    planted_gaps = [d for d in demo_city.defects if d["type"] == "gap"]
    assert len(gaps) == len(planted_gaps) == 3
    assert sorted(round(g.area, -2) for g in gaps) == sorted(float(d["area_m2"]) for d in planted_gaps)
    codes = sorted(grids)
    overlaps = []
    tree = shapely.STRtree([grids[c] for c in codes])
    for i, code in enumerate(codes):
        for j in tree.query(grids[code]):
            if j > i and grids[code].intersection(grids[codes[j]]).area >= 1.0:
                overlaps.append({code, codes[j]})
    planted = [set(d["grids"]) for d in demo_city.defects if d["type"] == "overlap"]
    assert sorted(map(sorted, overlaps)) == sorted(map(sorted, planted))
    slivers = [d for d in demo_city.defects if d["type"] == "sliver_gap"]
    assert len(slivers) == 1
    tiny = [g for g in getattr(district.difference(covered), "geoms", []) if 0 < g.area < 1.0]
    assert any(abs(g.area - 0.36) < 0.05 for g in tiny)


def test_planted_uncovered_corner_is_far_from_every_point(conn, demo_city):
    zone = next(d for d in demo_city.defects if d["type"] == "uncovered_streets")
    distance = conn.execute(sa.text(
        "SELECT min(ST_Distance(p.geom::geography, ST_GeomFromWKB(:z, 4326)::geography)) FROM point p"
    ), {"z": shapely.to_wkb(zone["geom"])}).scalar_one()
    assert distance > 650
    assert zone["streets"]


@pytest.mark.parametrize("blocks", [6, 20])
def test_generator_scales_and_stays_valid(blocks):
    city = generate_city(demo_spec().__class__(blocks_x=blocks, blocks_y=blocks, plant_defects=False, seed=3))
    assert all(g["geom"].is_valid for g in city.grids)
    assert len(city.streets) > blocks * blocks
    codes = [g["code"] for g in city.grids]
    assert len(codes) == len(set(codes))
