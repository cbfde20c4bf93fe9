"""Upgrading while serving: a migration runs against the database of a serving app (docs/upgrading.md).

- ``test_upgrade_under_load``: the newest migration (0005, two indexes on ``point``) is undone, ``geoservice serve``
  (gunicorn, 2 workers, as the app role) serves the demo city at the revision before it, and a bounded load of
  nearest searches, vector tiles, OGC items and /healthz runs on loopback while ``geoservice db upgrade`` brings the
  database to the head. Bound: no failed request (anything but a 2xx — an empty tile is a 204; no validators are
  sent, so no 304 — or a connection error). The nearest answers given while the migration ran equal a brute force
  in SQL (the planner may switch to the new index mid-load).
- ``test_what_the_upgrade_blocks``: the upgrade's one transaction is held open and the app role's readers and a
  writer are tried beside it with a short ``lock_timeout``: which of them would wait for the migration. 0005 holds
  SHARE on ``point`` (its index builds): readers pass, writers (occupancy taps, edits) wait for as long as the
  builds take. 0004 (``ALTER TABLE data_version ADD COLUMN``) held ACCESS EXCLUSIVE on ``data_version``, which
  every versioned answer reads: a database two revisions behind blocks those readers until the whole upgrade
  commits (every migration of one ``db upgrade`` runs in one transaction).

The lock probe is a fact about locks, not a timing: the migration's transaction sits idle while it is probed, so a
statement not granted its lock within ``lock_timeout`` waits for the migration and nothing else.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import random
import re
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from geoservice import db
from geoservice.citygen import demo_spec
from tests.conftest import ROOT, TEST_ANALYSIS_SLOTS, serving, wait_for_http
from tests.proxy import CADDYFILE, start_proxy

NEWEST_INDEXES = ("point_kind_geom_idx", "point_hours_geom_idx")  # what 0005 makes
BEFORE_NEWEST = "0004"
LOAD_THREADS = 4
ANSWERS_BEFORE = 150        # answers taken before the migration starts (the app warm, every path asked)
ANSWERS_AFTER = 150         # and after it has finished
MAX_ANSWERS = 20000         # the load's bound, whatever happens
LOAD_DEADLINE_S = 150


def downgrade(connection: sa.Connection, revision: str) -> None:
    """Undo migrations down to ``revision`` (tests only: geoservice itself never downgrades)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


def index_names(conn: sa.Connection) -> set[str]:
    return set(conn.execute(sa.text("SELECT indexname FROM pg_indexes WHERE tablename = 'point'")).scalars())


@pytest.fixture()
def at_head_afterwards(engine) -> Iterator[sa.Engine]:
    """The suite's database, brought back to the head (with the app role's grants) whatever the test did."""
    yield engine
    with engine.begin() as conn:
        db.upgrade(conn)


# -- the load -------------------------------------------------------------------------------------------------------

def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The XYZ (Web Mercator) tile holding a spot."""
    n = 2 ** z
    y = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n
    return int((lon + 180) / 360 * n), int(y)


def load_paths(seed: int = 13) -> list[str]:
    """Nearest (plain and by kind), tiles of three layers at three zooms, OGC items by bbox, /healthz."""
    rng = random.Random(seed)
    lon0, lat0 = demo_spec().center
    paths = []
    for _ in range(12):
        lon, lat = lon0 + rng.uniform(-0.04, 0.04), lat0 + rng.uniform(-0.03, 0.03)
        paths.append(f"/api/v1/nearest?lon={lon:.6f}&lat={lat:.6f}&k=5")
        paths.append(f"/api/v1/nearest?lon={lon:.6f}&lat={lat:.6f}&k=5&kind=toilet")
        paths.append(f"/ogc/collections/points/items?bbox={lon - 0.01:.5f},{lat - 0.008:.5f},{lon + 0.01:.5f},"
                     f"{lat + 0.008:.5f}&limit=10&f=json")
    for z in (13, 14, 15):
        x, y = tile_of(lon0, lat0, z)
        paths += [f"/tiles/{layer}/{z}/{x + dx}/{y}.mvt" for layer in ("points", "streets", "grids") for dx in (0, 1)]
    paths += ["/healthz"] * 6
    rng.shuffle(paths)
    return paths


@dataclass(frozen=True)
class Answer:
    path: str
    started: float
    ended: float
    status: int | None  # None: no answer (connection refused, reset, timed out)
    body: bytes


class Load:
    """``threads`` clients on keep-alive connections asking ``paths`` in turn until told to stop (or the bound).

    ``connect`` makes a client's connection (plain HTTP to an app process, or TLS to the proxy).
    """

    def __init__(self, connect: Callable[[], http.client.HTTPConnection], paths: list[str], *, threads: int) -> None:
        self.connect = connect
        self.paths = paths
        self.answers: list[Answer] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.deadline = time.monotonic() + LOAD_DEADLINE_S
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def count(self) -> int:
        with self.lock:
            return len(self.answers)

    def wait_for(self, n: int) -> None:
        while self.count() < n and time.monotonic() < self.deadline and not self.stopping.is_set():
            time.sleep(0.05)
        assert self.count() >= n, f"only {self.count()} answers within {LOAD_DEADLINE_S} s"

    def _client(self, index: int) -> None:
        connection = self.connect()
        i = index
        while not self.stopping.is_set() and time.monotonic() < self.deadline and self.count() < MAX_ANSWERS:
            path = self.paths[i % len(self.paths)]
            i += LOAD_THREADS
            started = time.monotonic()
            try:
                connection.request("GET", path, headers={"Accept-Encoding": "identity"})
                response = connection.getresponse()
                status, body = response.status, response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = self.connect()
                status, body = None, b""
            with self.lock:
                self.answers.append(Answer(path, started, time.monotonic(), status, body))
        connection.close()


def nearest_by_brute_force(conn: sa.Connection, path: str) -> list[int]:
    """The ids a nearest path must answer: every open point ranked by geodesic distance (then id) in plain SQL."""
    query = parse_qs(urlsplit(path).query)
    kinds = query.get("kind", [])
    return list(conn.execute(sa.text(
        "SELECT id FROM point WHERE status = 'open' "
        "AND (cardinality(CAST(:kinds AS text[])) = 0 OR kind = ANY(:kinds)) "
        "ORDER BY ST_Distance(geom::geography, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography), id "
        "LIMIT :k"), {"kinds": kinds, "lon": float(query["lon"][0]), "lat": float(query["lat"][0]),
                      "k": int(query["k"][0])}).scalars())


def latency_ms(answers: list[Answer]) -> str:
    if not answers:
        return "none"
    times = sorted((a.ended - a.started) * 1000 for a in answers)
    return f"{len(answers)} answers, median {times[len(times) // 2]:.0f} ms, max {times[-1]:.0f} ms"


# -- the tests ------------------------------------------------------------------------------------------------------

def test_upgrade_under_load(at_head_afterwards, settings, app_database_url):
    engine = at_head_afterwards
    with engine.begin() as conn:
        downgrade(conn, BEFORE_NEWEST)
        assert db.current_revision(conn) == BEFORE_NEWEST
        assert not index_names(conn) & set(NEWEST_INDEXES)
    env = {"DATABASE_URL": settings.database_url, "GEOSERVICE_APP_DATABASE_URL": app_database_url,
           "GEOSERVICE_ANALYSIS_SLOTS": str(TEST_ANALYSIS_SLOTS)}
    with serving(env, log_name="rolling_upgrade.log") as base, Load(
            lambda: http.client.HTTPConnection(urlsplit(base).hostname, urlsplit(base).port, timeout=60),
            load_paths(), threads=LOAD_THREADS) as load:
        load.wait_for(ANSWERS_BEFORE)
        migration_started = time.monotonic()
        upgrade = subprocess.run([sys.executable, "-m", "geoservice", "db", "upgrade"], check=False,
                                 capture_output=True, text=True, cwd=ROOT, timeout=120,
                                 env={**os.environ, "DATABASE_URL": settings.database_url})
        migration_ended = time.monotonic()
        load.wait_for(load.count() + ANSWERS_AFTER)
    assert upgrade.returncode == 0, upgrade.stderr
    assert f"schema at revision {db.head_revision()} (was {BEFORE_NEWEST})" in upgrade.stdout
    answers = list(load.answers)
    failed = [(a.path, a.status) for a in answers if a.status is None or not 200 <= a.status < 300]
    during = [a for a in answers if a.started < migration_ended and a.ended > migration_started]
    before = [a for a in answers if a.ended <= migration_started]
    print(f"\nrolling upgrade: {len(answers)} answers, {len(failed)} failed; migration "
          f"{(migration_ended - migration_started) * 1000:.0f} ms (the command, Python start included)\n"
          f"  before: {latency_ms(before)}\n  during: {latency_ms(during)}\n"
          f"  after:  {latency_ms([a for a in answers if a.started >= migration_ended])}")
    assert failed == []  # the stated bound: 0 failed requests
    assert during, "no request was in flight while the migration ran"
    assert {urlsplit(a.path).path.split("/")[1] for a in answers} == {"api", "tiles", "ogc", "healthz"}
    with engine.connect() as conn:
        assert db.current_revision(conn) == db.head_revision()
        assert set(NEWEST_INDEXES) <= index_names(conn)
        checked = {a.path: a for a in during + answers[-ANSWERS_AFTER:] if a.path.startswith("/api/v1/nearest")}
        assert checked
        for path, answer in checked.items():
            got = [f["properties"]["id"] for f in json.loads(answer.body)["features"]]
            assert got == nearest_by_brute_force(conn, path), path


# -- the documented order, behind the proxy ------------------------------------------------------------------------

APP_PORTS = (56401, 56402)          # H4's range (tests/contract): two app processes, as geoservice@56401/56402
PROXY_PORTS = (56443, 56480)        # Caddy's https and plain http
# Caddy keeps a process that failed a request out of the rotation for this long, even once it answers again: the
# next process may be stopped only after it (else both are out and requests fail after lb_try_duration).
FAIL_DURATION_S = int(re.search(r"^\s*fail_duration (\d+)s$", CADDYFILE.read_text(), re.MULTILINE).group(1))


class AppProcesses:
    """``geoservice serve --host 127.0.0.1 --port P --workers 2`` per port, as ``deploy/geoservice@.service`` starts
    each; ``restart(port)`` is ``systemctl restart geoservice@P``: SIGTERM (gunicorn finishes what is in flight),
    then the same command again, answering /healthz before the next is touched."""

    def __init__(self, ports: tuple[int, ...], env: dict[str, str], log_dir) -> None:
        self.ports, self.env, self.log_dir = ports, env, log_dir
        self.processes: dict[int, subprocess.Popen] = {}

    def start(self, port: int) -> None:
        with open(self.log_dir / f"app-{port}.log", "a") as log:
            self.processes[port] = subprocess.Popen(
                [sys.executable, "-m", "geoservice", "serve", "--host", "127.0.0.1", "--port", str(port),
                 "--workers", "2"], env={**os.environ, "GEOSERVICE_BASEMAP": "none", **self.env}, stdout=log,
                stderr=subprocess.STDOUT, cwd=ROOT)
        wait_for_http(f"http://127.0.0.1:{port}/healthz")

    def stop(self, port: int) -> None:
        process = self.processes.pop(port)
        process.terminate()
        process.wait(timeout=40)  # the unit's TimeoutStopSec

    def restart(self, port: int) -> None:
        self.stop(port)
        self.start(port)

    def __enter__(self) -> AppProcesses:
        for port in self.ports:
            self.start(port)
        return self

    def __exit__(self, *exc) -> None:
        for port in list(self.processes):
            self.stop(port)


def test_documented_order_behind_the_proxy(at_head_afterwards, settings, app_database_url, tmp_path):
    """docs/upgrading.md's order under a load through Caddy: backup, db upgrade, then each app process restarted in
    turn, the next once the one before answers /healthz and Caddy's fail_duration has passed. Bound: no failed
    request."""
    engine = at_head_afterwards
    with engine.begin() as conn:
        downgrade(conn, BEFORE_NEWEST)
    app_env = {"DATABASE_URL": settings.database_url, "GEOSERVICE_APP_DATABASE_URL": app_database_url,
               "GEOSERVICE_ANALYSIS_SLOTS": str(TEST_ANALYSIS_SLOTS)}
    cli_env = {**os.environ, "DATABASE_URL": settings.database_url, "GEOSERVICE_BACKUP_DIR": str(tmp_path / "backups")}
    https_port, http_port = PROXY_PORTS
    marks: dict[str, tuple[int, float]] = {}  # step → (answers so far, seconds it took)
    with AppProcesses(APP_PORTS, app_env, tmp_path) as apps, \
            start_proxy([f"127.0.0.1:{p}" for p in APP_PORTS], https_port=https_port, http_port=http_port,
                        folder=tmp_path / "caddy") as proxy:
        tls = ssl.create_default_context(cafile=str(proxy.ca_file))
        with Load(lambda: http.client.HTTPSConnection(proxy.host, https_port, context=tls, timeout=60),
                  load_paths(), threads=LOAD_THREADS) as load:
            load.wait_for(ANSWERS_BEFORE)
            for step in (["backup", "create"], ["db", "upgrade"]):
                started = time.monotonic()
                done = subprocess.run([sys.executable, "-m", "geoservice", *step], capture_output=True, text=True,
                                      cwd=ROOT, env=cli_env, timeout=120, check=False)
                assert done.returncode == 0, f"{step}: {done.stderr}"
                marks[" ".join(step)] = (load.count(), time.monotonic() - started)
            for port in APP_PORTS:
                started = time.monotonic()
                apps.restart(port)
                time.sleep(FAIL_DURATION_S)  # docs/upgrading.md, step 4
                marks[f"restart {port}"] = (load.count(), time.monotonic() - started)
            load.wait_for(load.count() + ANSWERS_AFTER)
    answers = list(load.answers)
    failed = [(a.path, a.status) for a in answers if a.status is None or not 200 <= a.status < 300]
    print(f"\ndocumented order behind Caddy: {len(answers)} answers, {len(failed)} failed; each step: answers so far, "
          "seconds: " + "; ".join(f"{step} {n}, {s:.1f} s" for step, (n, s) in marks.items()))
    assert failed == []  # the stated bound: 0 failed requests
    counts = [n for n, _ in marks.values()]
    assert counts == sorted(set(counts)) and counts[0] > ANSWERS_BEFORE  # the load ran through every step
    from geoservice import backup

    taken = backup.list_backups(settings.replace(backup_dir=tmp_path / "backups"))
    assert [item.schema_revision for item in taken] == [BEFORE_NEWEST]  # the state to go back to, before the upgrade
    with engine.connect() as conn:
        assert db.current_revision(conn) == db.head_revision()


# -- who waits for the migration ------------------------------------------------------------------------------------

READERS = {
    "nearest (point)": "SELECT id FROM point WHERE status = 'open' AND kind = 'toilet' "
                       "ORDER BY geom <-> ST_SetSRID(ST_MakePoint(113.826, 34.026), 4326) LIMIT 5",
    "tiles (street, grid)": "SELECT (SELECT count(*) FROM street WHERE geom && ST_MakeEnvelope(113.82, 34.02, "
                            "113.83, 34.03, 4326)) + (SELECT count(*) FROM grid)",
    "data version (every versioned answer, /healthz)": "SELECT version FROM data_version",
    "schema revision (/healthz)": "SELECT version_num FROM alembic_version",
    "accounts (login)": "SELECT count(*) FROM app_user",
}
WRITER = ("occupancy tap (point)", "UPDATE point SET occupancy = occupancy WHERE id = (SELECT min(id) FROM point)")


@contextmanager
def upgrade_held_open(engine: sa.Engine) -> Iterator[dict[str, str]]:
    """``db.upgrade`` to the head (grants included, as ``geoservice db upgrade``) in a transaction left open; yields
    the table locks it holds (table → strongest mode), and commits afterwards."""
    with engine.connect() as conn:
        with conn.begin():
            db.upgrade(conn)
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            with engine.connect() as other:
                held = dict(other.execute(sa.text(
                    "SELECT c.relname, string_agg(l.mode, ',' ORDER BY l.mode) FROM pg_locks l "
                    "JOIN pg_class c ON c.oid = l.relation "
                    "WHERE l.pid = :pid AND l.granted AND c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace "
                    "GROUP BY c.relname"), {"pid": pid}).all())
            yield held


def who_waits(app_engine: sa.Engine) -> dict[str, bool]:
    """Each reader and the writer, tried as the app role with a short lock_timeout: True when it would wait."""
    waits = {}
    for name, statement in [*READERS.items(), WRITER]:
        with app_engine.connect() as conn:
            conn.execute(sa.text("SET lock_timeout = '300ms'"))
            try:
                conn.execute(sa.text(statement))
                waits[name] = False
            except sa.exc.OperationalError as exc:
                assert "lock timeout" in str(exc.orig), exc
                waits[name] = True
            conn.rollback()
    return waits


@pytest.mark.parametrize("behind, waiting, locks", [
    # Only 0005 pending, as in the load test: readers pass; writers of point wait for the index builds.
    ("0004", {WRITER[0]}, {"point": "ShareLock"}),
    # 0004 and 0005 pending: 0004's ADD COLUMN keeps data_version locked until the index builds have committed.
    ("0003", {WRITER[0], "data version (every versioned answer, /healthz)"},
     {"point": "ShareLock", "data_version": "AccessExclusiveLock"}),
])
def test_what_the_upgrade_blocks(at_head_afterwards, app_database_url, behind, waiting, locks):
    engine = at_head_afterwards
    with engine.begin() as conn:
        downgrade(conn, behind)
    app_engine = db.make_engine(app_database_url)
    try:
        with upgrade_held_open(engine) as held:
            waits = who_waits(app_engine)
    finally:
        app_engine.dispose()
    print(f"\nupgrade from {behind}: holds {held}; would wait: {sorted(k for k, v in waits.items() if v)}")
    assert {name for name, waited in waits.items() if waited} == waiting
    assert {table: mode for table, mode in held.items() if table != "alembic_version"} == locks
