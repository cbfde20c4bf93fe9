"""Imports while the city is being read, and two imports at once (real PostGIS, real processes and threads).

An import of a big file runs in a ``geoservice import`` process of its own while this process asks for the nearest
points every 100 ms (``NearestProbe``: its own connection and thread, each call its own transaction). Before the
staging table and the swap, an import held the point table's lock for the whole load and every reader waited
that long (25 s for 1M points in issue 14; 27.9 s measured again with the loader of commit 5571308 on the bench's
1M-point file); now a reader waits at most for the swap (milliseconds). The 1M-point figures are in
docs/benchmarks.md (``bench/bench_import.py``).

These tests commit (other processes must see the data), so each one puts the demo city's points back afterwards
and checks the database checksum is the demo's again.
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely
import sqlalchemy as sa

from bench.bench_import import NearestProbe
from geoservice.citygen import demo_spec
from geoservice.errors import InvalidParameter
from geoservice.ingest import export_file, import_file, load
from geoservice.vocab import AMENITY_CODES, KIND_CODES
from tests.conftest import DEMO_METRIC_CRS, ROOT, checksum, demo_import_options

BIG = 200_000
# A reader never waits this long (it waits for the swap: milliseconds; the machine's other work adds some).
READER_BOUND_S = 1.0
STAGING = "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'geoservice\\_import\\_%'"


def write_points(path: Path, count: int, *, seed: int = 14) -> Path:
    """``count`` valid points within 4 km of the demo city's centre, as a GeoPackage layer ``points``."""
    rng = np.random.default_rng(seed)
    lon, lat = demo_spec().center
    kinds = rng.choice(list(KIND_CODES), count)
    amenities = [";".join(sorted(set(rng.choice(list(AMENITY_CODES), 2)))) for _ in range(200)]
    frame = gpd.GeoDataFrame({
        "name": [f"测试点 {i}" for i in range(count)],
        "kind": kinds,
        "amenities": rng.choice(amenities, count),
        "address": rng.choice(["三八路", "湖滨路", "文峰路", None], count),
        "status": "open",
    }, geometry=shapely.points(lon + rng.uniform(-0.04, 0.04, count), lat + rng.uniform(-0.035, 0.035, count)),
        crs=4326)
    pyogrio.write_dataframe(frame, path, layer="points", driver="GPKG")
    return path


@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> Path:
    return write_points(tmp_path_factory.mktemp("big") / "points.gpkg", BIG)


@pytest.fixture()
def demo_restored(engine, tmp_path):
    """Puts the demo city's points back after the test (ids, rows and the id sequence) and checks the checksum."""
    saved = tmp_path / "demo_points.gpkg"
    with engine.connect() as conn:
        export_file(conn, "points", saved)
        before = checksum(conn)
        sequence = conn.execute(sa.text("SELECT last_value, is_called FROM point_id_seq")).one()
    yield
    with engine.begin() as conn:
        import_file(conn, "points", saved, options=demo_import_options(replace=True))
        conn.execute(sa.text("SELECT setval('point_id_seq', :value, :called)"),
                     {"value": sequence[0], "called": sequence[1]})
    with engine.connect() as conn:
        assert checksum(conn) == before
        assert conn.execute(sa.text(STAGING)).scalar() == 0


@pytest.fixture(autouse=True)
def _ctrl_c_reaches_the_imports():
    """Ctrl-C handled in this process, so that the imports it starts handle it too.

    A suite started in the background by a shell (``make test &``, nohup) runs with SIGINT ignored, and an ignored
    signal stays ignored in every child: the import would never see the Ctrl-C this file sends it. A handled one is
    reset to the default in the child, where Python turns it into KeyboardInterrupt.
    """
    before = signal.getsignal(signal.SIGINT)
    if before == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def start_import(settings, *args: str) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": settings.database_url}
    return subprocess.Popen([sys.executable, "-m", "geoservice", "import", "points", *map(str, args)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(engine, sql: str, *, timeout_s: float = 120) -> None:
    """Poll until ``sql`` returns true."""
    deadline = time.monotonic() + timeout_s
    with engine.connect() as conn:
        while not conn.execute(sa.text(sql)).scalar():
            conn.rollback()
            assert time.monotonic() < deadline, f"timed out waiting for: {sql}"
            time.sleep(0.05)


# The import's COPY into its staging table is running (it has read and validated part of the file).
COPYING = ("SELECT EXISTS (SELECT FROM pg_stat_activity WHERE state = 'active' "
           "AND query LIKE 'COPY \"geoservice\\_import\\_%')")
# The session that holds the import lock of points (its application_name says so meanwhile).
IMPORT_HOLDER = ("SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                 "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE '%import points'")
IMPORT_LOCK = f"SELECT EXISTS ({IMPORT_HOLDER})"


def test_nearest_never_waits_for_an_import(settings, engine, big_file, demo_restored):
    with engine.connect() as conn:
        lon, lat = conn.execute(sa.text("SELECT ST_X(geom), ST_Y(geom) FROM point ORDER BY id LIMIT 1")).one()
        old_ids = set(conn.execute(sa.text("SELECT id FROM point")).scalars())
    with NearestProbe(engine, lon=lon, lat=lat, metric_crs=DEMO_METRIC_CRS) as probe:
        time.sleep(1)
        idle = [took for _, took in probe.calls]
        started = time.perf_counter()
        importing = start_import(settings, big_file, "--replace")
        out, err = importing.communicate(timeout=300)
        ended = time.perf_counter()
        time.sleep(0.5)
    assert importing.returncode == 0, err
    assert out.startswith(f"points: read {BIG:,}, wrote {BIG:,} (inserted {BIG:,}, updated 0, deleted 172)")
    during = probe.during(started, ended)
    print(f"\nimport of {BIG:,} points: {ended - started:.1f} s; {len(during)} nearest calls meanwhile: slowest "
          f"{max(during) * 1000:.0f} ms, median {statistics.median(during) * 1000:.0f} ms (idle median "
          f"{statistics.median(idle) * 1000:.0f} ms)")
    assert not probe.errors
    assert len(during) >= 10 and max(during) < READER_BOUND_S
    # Readers see the old points until the commit, then only the new ones: never a mix, never nothing.
    old = [bool(set(answer) <= old_ids) for answer in probe.answers]
    assert all(probe.answers) and old[0] and not old[-1]
    assert old == sorted(old, reverse=True)
    assert all(not set(answer) & old_ids for answer, was_old in zip(probe.answers, old, strict=True) if not was_old)


def test_a_second_import_of_the_same_kind_is_refused_at_once_naming_the_first(settings, engine, big_file,
                                                                             demo_restored):
    first = start_import(settings, big_file, "--replace")
    wait_for(engine, IMPORT_LOCK)
    with engine.connect() as conn:
        pid = conn.execute(sa.text(IMPORT_HOLDER)).scalar()
    second = start_import(settings, big_file, "--append")
    out, err = second.communicate(timeout=120)
    first_out, first_err = first.communicate(timeout=300)
    # Refused while the first held the lock (the message names it), not queued behind it.
    assert second.returncode == 1 and out == ""
    assert re.fullmatch(
        rf"geoservice: another import of points is running \(started \d\d:\d\d:\d\d by pid {pid} / "
        r"application_name 'geoservice import points', user \S+\); this one was refused and wrote nothing: run it "
        r"again when that one has finished\n", err), err
    assert first.returncode == 0, first_err
    assert first_out.startswith(f"points: read {BIG:,}, wrote {BIG:,}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM point")).scalar() == BIG
    # Once the first has finished, the next one runs (here: puts the demo points back, through the fixture).


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_an_import_interrupted_during_the_copy_writes_nothing(settings, engine, big_file, demo_restored, how):
    with engine.connect() as conn:
        before = checksum(conn)
    importing = start_import(settings, big_file, "--replace")
    wait_for(engine, COPYING)
    importing.send_signal(how)
    _, err = importing.communicate(timeout=60)
    assert importing.returncode != 0, err
    wait_for(engine, f"SELECT NOT ({IMPORT_LOCK}) AND NOT ({COPYING})")
    with engine.connect() as conn:
        assert checksum(conn) == before
        assert conn.execute(sa.text(STAGING)).scalar() == 0
    if how == signal.SIGINT:
        assert err.rstrip().endswith("Aborted!")


def test_rows_added_while_a_first_import_runs_are_kept(settings, engine, big_file, demo_restored):
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM point"))
    importing = start_import(settings, big_file)  # --append into the empty layer: built aside, to be swapped in
    wait_for(engine, COPYING)
    with engine.begin() as conn:
        added = conn.execute(sa.text("INSERT INTO point (name, kind, geom) VALUES ('新岗亭', 'kiosk', "
                                     "ST_SetSRID(ST_MakePoint(113.83, 34.03), 4326)) RETURNING id")).scalar()
    out, err = importing.communicate(timeout=300)
    assert importing.returncode == 0, err
    assert out.startswith(f"points: read {BIG:,}, wrote {BIG:,} (inserted {BIG:,}, updated 0, deleted 0)")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*), count(DISTINCT id) FROM point")).one() == (BIG + 1, BIG + 1)
        assert conn.execute(sa.text("SELECT name FROM point WHERE id = :id"), {"id": added}).scalar() == "新岗亭"


# -- what hangs on the table survives the swap (in the test's transaction, rolled back) ------------------------

DESCRIBE = {
    "acl": "SELECT relacl::text FROM pg_class WHERE oid = 'point'::regclass",
    "owner": "SELECT relowner::regrole::text FROM pg_class WHERE oid = 'point'::regclass",
    "comment": "SELECT obj_description('point'::regclass, 'pg_class')",
    "options": "SELECT reloptions::text FROM pg_class WHERE oid = 'point'::regclass",
    "row security": "SELECT relrowsecurity FROM pg_class WHERE oid = 'point'::regclass",
    "column acls": "SELECT string_agg(attname || attacl::text, ' ' ORDER BY attnum) FROM pg_attribute "
                   "WHERE attrelid = 'point'::regclass AND attacl IS NOT NULL",
    "columns": "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || attnotnull::text || "
               "attidentity::text || attgenerated::text, ', ' ORDER BY attnum) FROM pg_attribute "
               "WHERE attrelid = 'point'::regclass AND attnum > 0 AND NOT attisdropped",
    "defaults": "SELECT string_agg(pg_get_expr(adbin, adrelid), ', ' ORDER BY adnum) FROM pg_attrdef "
                "WHERE adrelid = 'point'::regclass",
    "constraints": "SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid), '; ' ORDER BY conname) "
                   "FROM pg_constraint WHERE conrelid = 'point'::regclass",
    "indexes": "SELECT string_agg(pg_get_indexdef(indexrelid), '; ' ORDER BY indexrelid::regclass::text) "
               "FROM pg_index WHERE indrelid = 'point'::regclass",
    "triggers": "SELECT string_agg(pg_get_triggerdef(oid), '; ' ORDER BY tgname) FROM pg_trigger "
                "WHERE tgrelid = 'point'::regclass AND NOT tgisinternal",
    "policies": "SELECT string_agg(policyname || ' ' || cmd || ' ' || roles::text || ' ' || coalesce(qual, ''), "
                "'; ') FROM pg_policies WHERE tablename = 'point'",
    "sequence": "SELECT pg_get_serial_sequence('point', 'id')",
    "sequence acl": "SELECT relacl::text FROM pg_class WHERE oid = pg_get_serial_sequence('point', 'id')::regclass",
    "schema": "SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = 'point'::regclass",
}


def describe(conn) -> dict:
    return {name: conn.execute(sa.text(sql)).scalar() for name, sql in DESCRIBE.items()}


def test_the_swapped_in_table_keeps_every_name_grant_trigger_and_policy(conn, tmp_path):
    for statement in (
        "GRANT SELECT ON point TO PUBLIC",
        "GRANT UPDATE (occupancy, status) ON point TO PUBLIC",
        "GRANT USAGE ON SEQUENCE point_id_seq TO PUBLIC",
        "COMMENT ON TABLE point IS 'convenience points'",
        "ALTER TABLE point SET (autovacuum_vacuum_scale_factor = 0.05)",
        "CREATE FUNCTION pg_temp.keep_name() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        "CREATE TRIGGER point_keep_name BEFORE INSERT ON point FOR EACH ROW EXECUTE FUNCTION pg_temp.keep_name()",
        "ALTER TABLE point ENABLE ROW LEVEL SECURITY",
        "CREATE POLICY open_points ON point FOR SELECT TO PUBLIC USING (status = 'open')",
    ):
        conn.execute(sa.text(statement))
    before = describe(conn)
    oid = conn.execute(sa.text("SELECT 'point'::regclass::oid")).scalar()
    version = conn.execute(sa.text("SELECT version FROM data_version")).scalar()
    path = write_points(tmp_path / "p.gpkg", 500)
    result = import_file(conn, "points", path, options=demo_import_options(replace=True))
    assert (result.written, result.counts.deleted) == (500, 172)
    assert conn.execute(sa.text("SELECT 'point'::regclass::oid")).scalar() != oid  # a new table, swapped in
    assert describe(conn) == before
    assert conn.execute(sa.text("SELECT version FROM data_version")).scalar() > version
    assert conn.execute(sa.text(STAGING)).scalar() == 0
    assert conn.execute(sa.text("SELECT count(*), min(id) > 172 FROM point")).one() == (500, True)


def test_a_table_a_view_depends_on_is_replaced_in_place(conn, tmp_path):
    conn.execute(sa.text("CREATE VIEW open_kiosks AS SELECT id, name FROM point WHERE kind = 'kiosk'"))
    oid = conn.execute(sa.text("SELECT 'point'::regclass::oid")).scalar()
    path = write_points(tmp_path / "p.gpkg", 300)
    result = import_file(conn, "points", path, options=demo_import_options(replace=True))
    assert (result.written, result.counts.deleted) == (300, 172)
    assert conn.execute(sa.text("SELECT 'point'::regclass::oid")).scalar() == oid
    kiosks = conn.execute(sa.text("SELECT count(*) FROM point WHERE kind = 'kiosk'")).scalar()
    assert conn.execute(sa.text("SELECT count(*) FROM open_kiosks")).scalar() == kiosks > 0


def test_streets_are_split_and_noded_on_the_new_table_before_the_swap(conn, tmp_path):
    lon, lat = demo_spec().center
    cross = gpd.GeoDataFrame({"name": ["东西路", "南北路"], "class": ["residential", "residential"]}, geometry=[
        shapely.LineString([(lon - 0.01, lat), (lon + 0.01, lat)]),
        shapely.LineString([(lon, lat - 0.01), (lon, lat + 0.01)])], crs=4326)
    cross.to_file(tmp_path / "cross.geojson")
    result = import_file(conn, "streets", tmp_path / "cross.geojson", options=demo_import_options(replace=True))
    # Computed on the two new streets (split into four), not on the demo's 3,893 the live table held.
    assert (result.network["split_added"], result.network["edges"], result.network["nodes"]) == (2, 4, 5)
    assert conn.execute(sa.text("SELECT count(*) FROM street WHERE source IS NOT NULL AND target IS NOT NULL")
                        ).scalar() == 4
    assert conn.execute(sa.text(STAGING)).scalar() == 0


# -- the swap's lock: waits for a long reader without making the others wait ------------------------------------

def test_a_long_reader_delays_the_swap_but_no_other_reader_waits(engine, tmp_path):
    path = write_points(tmp_path / "p.gpkg", 500)
    done: dict = {}

    def replace_and_roll_back() -> None:
        with engine.connect() as importing:
            transaction = importing.begin()
            started = time.perf_counter()
            done["result"] = import_file(importing, "points", path, options=demo_import_options(replace=True))
            done["seconds"] = time.perf_counter() - started
            transaction.rollback()

    with engine.connect() as long_reader, engine.connect() as reader:
        long_reader.execute(sa.text("SELECT count(*) FROM point"))  # holds the table until its transaction ends
        thread = threading.Thread(target=replace_and_roll_back)
        thread.start()
        waits, until = [], time.perf_counter() + 2.5
        while time.perf_counter() < until:
            began = time.perf_counter()
            reader.execute(sa.text("SELECT count(*) FROM point"))
            reader.rollback()
            waits.append(time.perf_counter() - began)
            time.sleep(0.02)
        long_reader.rollback()
        thread.join(timeout=60)
    print(f"\nswap behind a 2.5 s reader: import {done['seconds']:.1f} s; {len(waits)} other reads meanwhile, slowest "
          f"{max(waits) * 1000:.0f} ms (each attempt at the lock lasts {load.SWAP_LOCK_TIMEOUT_MS} ms)")
    assert done["result"].written == 500 and done["seconds"] >= 2.4
    assert max(waits) < 0.5


def test_a_swap_that_cannot_get_its_lock_gives_up_and_writes_nothing(conn, engine, tmp_path, monkeypatch):
    monkeypatch.setattr(load, "SWAP_WAIT_S", 1.0)
    path = write_points(tmp_path / "p.gpkg", 500)
    before = checksum(conn)
    with engine.connect() as long_reader:
        long_reader.execute(sa.text("SELECT count(*) FROM point"))
        pid = long_reader.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        with pytest.raises(InvalidParameter) as refused:
            import_file(conn, "points", path, options=demo_import_options(replace=True))
    assert refused.value.description == (f"the point table was in use by other sessions (pids {pid}) for 1 s, so "
                                         "the new points could not be swapped in; nothing was written")
    assert checksum(conn) == before
