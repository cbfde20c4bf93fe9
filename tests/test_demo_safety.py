"""Nothing the user made is ever replaced by the demo (issue 14).

`geoservice demo load` fills an empty database, leaves one that holds exactly the demo city as it is, and otherwise
refuses, naming what it would destroy, unless told `--replace`; `make run` loads the demo only into an empty
database. Run through the command line on a database of the test's own (in the embedded cluster; on an external
server, the suite's database, given back with the demo city afterwards).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import psycopg2.errors
import pytest
import sqlalchemy as sa

from geoservice import db
from geoservice.config import Settings
from geoservice.db.embedded import EmbeddedCluster
from geoservice.demo import NoSchema, load_city, load_demo
from tests.conftest import ROOT, TEST_DB_NAME, checksum

DEMO_COUNTS = "district 1, subdistrict 6, community 24, squad 6, grid 400, street 3893, point 172"
OWN_POINT = "许昌市城管局自建便民点 (imported)"
VENV = Path(sys.prefix)


@pytest.fixture(scope="module")
def own_database(base_settings: Settings, test_database_url: str, demo_city) -> str:
    """The owner's URL of a migrated database of this module's own (the suite's, on an external server)."""
    external = os.environ.get("GEOSERVICE_TEST_DATABASE_URL") or base_settings.database_url
    name = f"{TEST_DB_NAME}_demo_safety"
    cluster = EmbeddedCluster(base_settings)
    if not external:
        cluster.drop_database(name)
        cluster.ensure_database(name)
    url = test_database_url if external else cluster.url(name)
    engine = db.make_engine(url)
    with engine.connect() as conn:
        db.upgrade(conn)
    yield url
    if external:
        with engine.begin() as conn:
            load_city(conn, demo_city)
    engine.dispose()
    if not external:
        cluster.drop_database(name)


@pytest.fixture()
def own(own_database: str):
    """An engine on the module's database, emptied before the test."""
    engine = db.make_engine(own_database)
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE point, street, grid, squad, community, subdistrict, district RESTART IDENTITY"))
    yield engine
    engine.dispose()


def geoservice(own, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI on the module's database, as the operator runs it."""
    return subprocess.run([str(VENV / "bin" / "geoservice"), *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "DATABASE_URL": own.url.render_as_string(hide_password=False)},
                          check=False, timeout=300)


def make_run_steps(own) -> list[subprocess.CompletedProcess[str]]:
    """Exactly the commands `make run` runs before it serves (`make -n demo`: db up, then the demo step)."""
    # Under `make test` the environment carries MAKELEVEL/MAKEFLAGS: without them (and with --no-print-directory)
    # the nested make prints only the commands, not "make[2]: Entering directory".
    clean = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES")}
    plan = subprocess.run(["make", "--no-print-directory", "-n", "-o", f"{VENV}/.installed", "demo", f"VENV={VENV}"],
                          cwd=ROOT, env=clean, capture_output=True, text=True, check=True).stdout.strip().splitlines()
    assert [line.split("geoservice ", 1)[1] for line in plan] == ["db up", "demo load --if-empty"], plan
    env = {**os.environ, "DATABASE_URL": own.url.render_as_string(hide_password=False)}
    return [subprocess.run(["bash", "-c", line], cwd=ROOT, capture_output=True, text=True, env=env, check=False,
                           timeout=300) for line in plan]


def import_own_point(own, tmp_path: Path) -> None:
    feature = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [113.8265, 34.0262]},
               "properties": {"name": OWN_POINT, "kind": "rest_station", "amenities": "drinking_water;seating"}}
    path = tmp_path / "own.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}), encoding="utf-8")
    result = geoservice(own, "import", "points", str(path), "--append")
    assert result.returncode == 0, result.stderr


def points(own) -> tuple[int, int]:
    """(all points, points named OWN_POINT)."""
    with own.connect() as conn:
        return tuple(conn.execute(sa.text("SELECT count(*), count(*) FILTER (WHERE name = :n) FROM point"),
                                  {"n": OWN_POINT}).one())


def state(own) -> tuple[str, int, int]:
    """(checksum of every row, data version, next point id): equal states mean nothing was written."""
    with own.connect() as conn:
        return (checksum(conn), conn.execute(sa.text("SELECT version FROM data_version")).scalar_one(),
                conn.execute(sa.text("SELECT last_value FROM point_id_seq")).scalar_one())


def test_make_run_keeps_an_imported_point(own, tmp_path):
    first = make_run_steps(own)
    assert all(step.returncode == 0 for step in first), [step.stderr for step in first]
    assert first[1].stdout.strip() == f"demo city loaded: {DEMO_COUNTS}"
    import_own_point(own, tmp_path)
    assert points(own) == (173, 1)
    again = make_run_steps(own)
    assert all(step.returncode == 0 for step in again), [step.stderr for step in again]
    assert again[1].stdout.strip() == ("the database already holds data, left as it is (no demo loaded): "
                                       + DEMO_COUNTS.replace("point 172", "point 173"))
    assert points(own) == (173, 1)


def test_demo_load_fills_an_empty_database(own, conn):
    result = geoservice(own, "demo", "load")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"demo city loaded: {DEMO_COUNTS}"
    with own.connect() as mine:
        assert checksum(mine) == checksum(conn)  # the suite's database holds the generated demo city


def test_demo_load_on_the_demo_writes_nothing(own):
    assert geoservice(own, "demo", "load").returncode == 0
    before = state(own)
    result = geoservice(own, "demo", "load")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("the database already holds the demo city, unchanged; nothing written: "
                                     + DEMO_COUNTS)
    assert state(own) == before


@pytest.mark.parametrize(("change", "message"), [
    ("import", "the database holds 173 points, 3,893 streets, 400 grids, 6 squads, 24 communities, 6 subdistricts "
               "and 1 district that are not the demo city (points differ from it)"),
    ("UPDATE point SET name = name || '（已核实）' WHERE id = 7",
     "the database holds 172 points, 3,893 streets, 400 grids, 6 squads, 24 communities, 6 subdistricts and "
     "1 district that are not the demo city (points differ from it)"),
    ("UPDATE street SET name = '新路' WHERE id = 1; UPDATE squad SET phone = '0374-1234567' WHERE id = 1",
     "the database holds 172 points, 3,893 streets, 400 grids, 6 squads, 24 communities, 6 subdistricts and "
     "1 district that are not the demo city (streets, squads differ from it)"),
    # the same number of points as the demo, one of them the bureau's own: the count alone would not tell
    ("DELETE FROM point WHERE id = 172; INSERT INTO point (name, kind, geom) "
     "VALUES ('自建点', 'toilet', ST_SetSRID(ST_MakePoint(113.8265, 34.0262), 4326))",
     "the database holds 172 points, 3,893 streets, 400 grids, 6 squads, 24 communities, 6 subdistricts and "
     "1 district that are not the demo city (points differ from it)"),
    ("TRUNCATE point",
     "the database holds 3,893 streets, 400 grids, 6 squads, 24 communities, 6 subdistricts and 1 district that "
     "are not the demo city (points differ from it)"),
], ids=["imported point", "edited point", "edited street and squad", "same count", "no points"])
def test_demo_load_refuses_to_replace_user_data(own, tmp_path, change, message):
    assert geoservice(own, "demo", "load").returncode == 0
    if change == "import":
        import_own_point(own, tmp_path)
    else:
        with own.begin() as conn:
            conn.execute(sa.text(change))
    before = state(own)
    result = geoservice(own, "demo", "load")
    assert result.returncode == 1
    assert result.stderr == f"geoservice: {message}; `geoservice demo load --replace` replaces them\n"
    assert result.stdout == ""
    assert state(own) == before  # nothing written, and no sequence moved back (the next point id is free)
    with own.begin() as conn:
        conn.execute(sa.text("INSERT INTO point (name, kind, geom) "
                             "VALUES ('再建一个', 'toilet', ST_SetSRID(ST_MakePoint(113.83, 34.03), 4326))"))


def test_demo_load_replace_replaces(own, tmp_path, conn):
    assert geoservice(own, "demo", "load").returncode == 0
    import_own_point(own, tmp_path)
    result = geoservice(own, "demo", "load", "--replace")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"data replaced by the demo city: {DEMO_COUNTS}"
    assert points(own) == (172, 0)
    with own.connect() as mine:
        assert checksum(mine) == checksum(conn)


def test_replace_and_if_empty_together_are_a_usage_error(own):
    result = geoservice(own, "demo", "load", "--replace", "--if-empty")
    assert result.returncode == 2
    assert "--replace and --if-empty contradict each other" in result.stderr


def test_without_the_schema_demo_load_says_to_upgrade(conn):
    conn.execute(sa.text("CREATE SCHEMA empty_for_demo_test; SET LOCAL search_path = empty_for_demo_test"))
    with pytest.raises(NoSchema, match="run 'geoservice db upgrade' first"):
        load_demo(conn)


def test_while_demo_load_decides_writers_wait_and_readers_do_not(own):
    """The check and the load are one transaction holding the tables against writers: an import cannot slip in
    between "empty" and the load, and the served map keeps reading."""
    assert geoservice(own, "demo", "load").returncode == 0
    with own.connect() as deciding:
        with deciding.begin():
            assert load_demo(deciding, if_empty=True).outcome == "kept"
            with own.connect() as other:
                other.execute(sa.text("SET lock_timeout = '300ms'"))
                assert other.execute(sa.text("SELECT count(*) FROM point")).scalar_one() == 172
                other.commit()  # keeps the lock timeout
                with pytest.raises(sa.exc.OperationalError) as caught:
                    other.execute(sa.text("INSERT INTO point (name, kind, geom) VALUES "
                                          "('x', 'toilet', ST_SetSRID(ST_MakePoint(113.83, 34.03), 4326))"))
                assert isinstance(caught.value.orig, psycopg2.errors.LockNotAvailable)


def test_two_loads_into_an_empty_database_load_it_once(own):
    results = [None, None]

    def load(i: int) -> None:
        results[i] = geoservice(own, "demo", "load")

    threads = [threading.Thread(target=load, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    outcomes = sorted(r.stdout.split(":")[0] for r in results)
    assert outcomes == ["demo city loaded", "the database already holds the demo city, unchanged; nothing written"]
    assert points(own) == (172, 0)
