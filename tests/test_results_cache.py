"""The data version and the cache of whole-city answers: kept while nothing changes, retired by any change."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from geoservice import coverage
from geoservice.results_cache import ResultsCache, data_version
from tests.conftest import DEMO_METRIC_CRS

CHANGES = [
    "INSERT INTO point (name, kind, geom) VALUES ('新岗亭', 'kiosk', ST_SetSRID(ST_MakePoint(113.83, 34.03), 4326))",
    "UPDATE point SET status = 'closed' WHERE id = (SELECT min(id) FROM point)",
    "UPDATE point SET geom = ST_Translate(geom, 0.001, 0) WHERE id = (SELECT min(id) FROM point)",
    "UPDATE point SET kind = 'toilet', occupancy = NULL WHERE id = (SELECT min(id) FROM point)",
    "DELETE FROM point WHERE id = (SELECT max(id) FROM point)",
    "UPDATE street SET name = name || '' WHERE id = (SELECT min(id) FROM street)",
    "UPDATE grid SET officer_phone = '0374-0000000' WHERE code = (SELECT min(code) FROM grid)",
    "UPDATE squad SET phone = '0374-1111111' WHERE id = (SELECT min(id) FROM squad)",
    "UPDATE community SET name = name || '' WHERE code = (SELECT min(code) FROM community)",
    "UPDATE subdistrict SET name = name || '' WHERE code = (SELECT min(code) FROM subdistrict)",
    "UPDATE district SET name = name || '' WHERE code = (SELECT min(code) FROM district)",
    "TRUNCATE point",
]


@pytest.mark.parametrize("statement", CHANGES, ids=[c.split(" (")[0].split(" WHERE")[0] for c in CHANGES])
def test_every_change_to_the_data_gives_a_new_version(conn, statement):
    before = data_version(conn)
    conn.execute(sa.text(statement))
    assert data_version(conn) not in (before, None)


LIVE_CHANGES = [
    "UPDATE point SET occupancy = capacity WHERE capacity > 0",
    "UPDATE point SET notice = '今晚热水暂停' WHERE kind = 'kiosk'",
    "UPDATE point SET occupancy = NULL, notice = NULL",
]


@pytest.mark.parametrize("statement", LIVE_CHANGES)
def test_occupancy_and_notices_keep_the_version_and_change_no_whole_city_answer(conn, statement):
    # A kiosk's tap neither waits for the version row nor retires the planners' answers (issue 10) — which is
    # right only because no whole-city answer reads occupancy or notices: computed again, they come out the same.
    before = data_version(conn)
    coverage_before = coverage.grid_coverage(conn, radius_m=300, metric_crs=DEMO_METRIC_CRS)
    streets_before = coverage.uncovered_streets(conn, radius_m=300, metric_crs=DEMO_METRIC_CRS)
    assert conn.execute(sa.text(statement)).rowcount > 0
    assert data_version(conn) == before
    assert coverage.grid_coverage(conn, radius_m=300, metric_crs=DEMO_METRIC_CRS) == coverage_before
    assert coverage.uncovered_streets(conn, radius_m=300, metric_crs=DEMO_METRIC_CRS) == streets_before


def test_reading_does_not_change_the_version(conn):
    before = data_version(conn)
    conn.execute(sa.text("SELECT count(*) FROM point"))
    coverage.grid_coverage(conn, radius_m=300, metric_crs=DEMO_METRIC_CRS)
    assert data_version(conn) == before


def test_a_rolled_back_version_is_never_handed_out_again(engine):
    with engine.connect() as reader:
        committed = data_version(reader)
    with engine.connect() as writer:
        transaction = writer.begin()
        writer.execute(sa.text(CHANGES[2]))
        abandoned = data_version(writer)
        transaction.rollback()
        transaction = writer.begin()
        assert data_version(writer) == committed  # the rollback took the change and its version away
        writer.execute(sa.text(CHANGES[2]))
        assert data_version(writer) not in (committed, abandoned)
        transaction.rollback()


def test_answers_are_kept_per_version_and_query(conn):
    cache = ResultsCache(max_entries=2)
    calls = []

    def compute(value):
        calls.append(value)
        return {"answer": value}

    first = cache.get(conn, "a", lambda: compute(1))
    assert cache.get(conn, "a", lambda: compute(2)) is first  # kept: not computed again
    assert cache.get(conn, "b", lambda: compute(3)) == {"answer": 3}
    conn.execute(sa.text(CHANGES[1]))
    assert cache.get(conn, "a", lambda: compute(4)) == {"answer": 4}  # the data changed: computed again
    assert calls == [1, 3, 4]
    assert (cache.hits, cache.misses) == (1, 3)
    assert len(cache._entries) == 2  # noqa: SLF001 — the oldest was dropped


def test_errors_are_not_kept(conn):
    cache = ResultsCache()

    def bad():
        raise ValueError("radius must be positive")

    with pytest.raises(ValueError):
        cache.get(conn, "bad", bad)
    assert cache.get(conn, "bad", lambda: "fine") == "fine"


def test_the_api_serves_kept_answers_until_the_data_changes(app, client, engine):
    results = app.extensions["geoservice_results"]
    url = "/api/v1/coverage/grids?radius=200&kind=toilet"
    first = client.get(url).get_json()
    hits = results.hits
    assert client.get(url).get_json() == first
    assert results.hits == hits + 1
    # A toilet at the centre of the grid with the fewest toilets, committed by another connection (as an import
    # or another worker would): the next answer must count it.
    grid = first["grids"][0]["code"]
    with engine.begin() as writer:
        point_id = writer.execute(sa.text(
            "INSERT INTO point (name, kind, geom) SELECT '测试公厕', 'toilet', ST_PointOnSurface(geom) FROM grid "
            "WHERE code = :code RETURNING id"), {"code": grid}).scalar_one()
    try:
        after = client.get(url).get_json()
        with engine.connect() as reader:
            expected = coverage.grid_coverage(reader, radius_m=200, kinds=["toilet"], metric_crs=DEMO_METRIC_CRS)
        assert after["grids"] == expected != first["grids"]
        changed = next(g for g in after["grids"] if g["code"] == grid)
        before = next(g for g in first["grids"] if g["code"] == grid)
        assert changed["points_by_kind"].get("toilet", 0) == before["points_by_kind"].get("toilet", 0) + 1
    finally:
        with engine.begin() as writer:
            writer.execute(sa.text("DELETE FROM point WHERE id = :id"), {"id": point_id})
