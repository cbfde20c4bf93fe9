"""Upgrading while serving: a migration runs against the database of a serving app (docs/upgrading.md).

- ``test_upgrade_under_load``: the newest migration (0005, two indexes on ``point``) is undone, ``geoservice serve``
  (gunicorn, 2 workers, as the app role) serves the demo city at the revision before it, and a bounded load of
  nearest searches, vector tiles, OGC items and /healthz runs on loopback while ``geoservice db upgrade`` brings the
  database to the head. Bound: no failed request (anything but a 2xx — an empty tile is a 204; no validators are
  sent, so no 304 — or a connection error). The nearest answers given while the migration ran equal a brute force
  in SQL (the planner may switch to the new index mid-load).
- ``test_what_the_upgrade_blocks``: the upgrade runs in a thread and is held at a chosen point by a transaction of
  the test's, open from before it started; there the app role's readers and a writer are tried beside it with a short
  ``lock_timeout``: which of them would wait for the migration. 0005 builds its indexes ``CONCURRENTLY``, held here
  by a tap in flight (the build waits for the writes under way): it holds SHARE UPDATE EXCLUSIVE on ``point``, and
  readers and new taps pass — with the plain ``CREATE INDEX`` of before, every writer of ``point`` waited for the
  whole build. 0004 (``ALTER TABLE data_version ADD COLUMN``), held before its commit, holds ACCESS EXCLUSIVE on
  ``data_version``, which every versioned answer reads; each migration now commits on its own, so those readers wait
  for 0004's one instant statement, no longer for 0005's index builds behind it.
- ``test_an_interrupted_index_build_is_finished_by_the_next_upgrade``: ``geoservice db upgrade`` loses its
  connection in the middle of 0005's first concurrent build; the database stays at 0004 with an INVALID index, and
  the next ``db upgrade`` drops it and builds it again.

The lock probe is a fact about locks, not a timing: the upgrade is seen waiting for the test's own transaction
(``pg_locks``) before it is probed, so a statement not granted its lock within ``lock_timeout`` waits for the
migration and nothing else.
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
from contextlib import ExitStack, contextmanager
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
    with engine.connect() as conn:
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
    with engine.connect() as conn:
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
    with engine.connect() as conn:
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


DATA_VERSION_READER = "data version (every versioned answer, /healthz)"


@contextmanager
def holding(engine: sa.Engine, statement: str) -> Iterator[None]:
    """A transaction of the owner's that has run ``statement`` and stays open until the block ends (rolled back)."""
    with engine.connect() as conn:
        conn.execute(sa.text(statement))
        yield
        conn.rollback()


class UpgradeInBackground:
    """``db.upgrade`` to the head (grants included, as ``geoservice db upgrade``) in a thread, on a connection whose
    backend is ``pid``."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.pid: int | None = None
        self.error: BaseException | None = None
        self.connected = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with self.engine.connect() as conn:
                self.pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
                conn.commit()
                self.connected.set()
                db.upgrade(conn)
        except BaseException as exc:  # reported by the test's thread
            self.error = exc
        finally:
            self.connected.set()

    def start(self) -> None:
        self.thread.start()
        self.connected.wait(timeout=60)

    def __enter__(self) -> UpgradeInBackground:
        return self

    def __exit__(self, *exc) -> None:
        if self.thread.ident is not None:
            self.thread.join(timeout=120)

    def wait_until_waiting_for(self, what: str, *, deadline_s: float = 60) -> None:
        """Until the upgrade's backend waits for a lock on table ``what`` (or of type ``what``: ``virtualxid``)."""
        deadline = time.monotonic() + deadline_s
        with self.engine.connect() as conn:
            while True:
                waiting = conn.execute(sa.text(
                    "SELECT coalesce(c.relname, l.locktype) FROM pg_locks l LEFT JOIN pg_class c ON c.oid = l.relation "
                    "WHERE l.pid = :pid AND NOT l.granted"), {"pid": self.pid}).scalar()
                conn.rollback()
                if waiting == what:
                    return
                assert self.thread.is_alive(), f"the upgrade ended before waiting for {what}: {self.error!r}"
                assert time.monotonic() < deadline, f"the upgrade did not wait for {what} (waits for {waiting})"
                time.sleep(0.05)

    def locks_held(self) -> dict[str, str]:
        """The table locks the upgrade's backend holds (table → modes), alembic_version left out."""
        with self.engine.connect() as conn:
            return dict(conn.execute(sa.text(
                "SELECT c.relname, string_agg(l.mode, ',' ORDER BY l.mode) FROM pg_locks l "
                "JOIN pg_class c ON c.oid = l.relation "
                "WHERE l.pid = :pid AND l.granted AND c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace "
                "AND c.relname <> 'alembic_version' GROUP BY c.relname"), {"pid": self.pid}).all())


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


# Where the upgrade is held while the app's statements are tried: what holds it there (a transaction of the test's,
# open from before the upgrade starts), what the upgrade then waits for, who of the app would wait, what it holds.
TAP_IN_FLIGHT = "LOCK TABLE point IN ROW EXCLUSIVE MODE"       # the lock an occupancy tap's UPDATE holds
BEFORE_0004_COMMITS = "LOCK TABLE alembic_version IN SHARE MODE"  # Alembic's version bump, the migration's last write
INDEX_BUILD = (TAP_IN_FLIGHT, "virtualxid", set(), {"point": "ShareUpdateExclusiveLock"})


@pytest.mark.parametrize("behind, stages", [
    # Only 0005 pending: its concurrent build waits for the writes already under way, and holds only SHARE UPDATE
    # EXCLUSIVE on point meanwhile: readers and new taps pass (a plain CREATE INDEX held SHARE, and every tap waited
    # until the upgrade committed).
    ("0004", [INDEX_BUILD]),
    # 0004 and 0005 pending: 0004's ADD COLUMN holds ACCESS EXCLUSIVE on data_version until 0004 commits, and its
    # readers (every versioned answer, /healthz) wait for that one instant migration — so would an edit, whose
    # trigger moves the version; a tap moves none. Then 0005's build holds nothing on data_version: when the upgrade
    # was one transaction, those readers waited for the index builds too.
    ("0003", [(BEFORE_0004_COMMITS, "alembic_version", {DATA_VERSION_READER}, {"data_version": "AccessExclusiveLock"}),
              INDEX_BUILD]),
])
def test_what_the_upgrade_blocks(at_head_afterwards, app_database_url, behind, stages):
    engine = at_head_afterwards
    with engine.connect() as conn:
        downgrade(conn, behind)
    app_engine = db.make_engine(app_database_url)
    seen = []
    try:
        # The holds are released before the upgrade is waited for, whatever happens.
        with UpgradeInBackground(engine) as upgrade, ExitStack() as holds:
            releases = [holds.enter_context(ExitStack()) for _ in stages]
            for release, (statement, *_) in zip(releases, stages, strict=True):
                release.enter_context(holding(engine, statement))
            upgrade.start()
            for release, (_, waits_for, waiting, locks) in zip(releases, stages, strict=True):
                upgrade.wait_until_waiting_for(waits_for)
                held, waits = upgrade.locks_held(), who_waits(app_engine)
                seen.append((waits_for, held, sorted(k for k, v in waits.items() if v)))
                assert {name for name, waited in waits.items() if waited} == waiting, waits_for
                assert held == locks, waits_for
                release.close()
    finally:
        app_engine.dispose()
    print(f"\nupgrade from {behind}: " + "; ".join(f"waiting for {w}, holds {h}, would wait: {a}" for w, h, a in seen))
    assert upgrade.error is None
    with engine.connect() as conn:
        assert db.current_revision(conn) == db.head_revision()
        assert valid_indexes(conn, NEWEST_INDEXES) == dict.fromkeys(NEWEST_INDEXES, True)


def valid_indexes(conn: sa.Connection, names) -> dict[str, bool]:
    """Index name → whether it is valid (usable by queries), for those of ``names`` that exist."""
    return dict(conn.execute(sa.text(
        "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = ANY(:names)"), {"names": list(names)}).all())


def test_an_interrupted_index_build_is_finished_by_the_next_upgrade(at_head_afterwards, settings):
    """``geoservice db upgrade`` loses its connection while 0005 builds its first index (here: its backend is
    terminated while the build waits for a tap in flight): the database stays at 0004 with an INVALID index of that
    name, which the next ``db upgrade`` drops and builds again."""
    engine = at_head_afterwards
    with engine.connect() as conn:
        downgrade(conn, BEFORE_NEWEST)
    first, second = NEWEST_INDEXES
    command = [sys.executable, "-m", "geoservice", "db", "upgrade"]
    env = {**os.environ, "DATABASE_URL": settings.database_url}
    with holding(engine, TAP_IN_FLIGHT), engine.connect() as conn:
        upgrade = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        try:
            deadline = time.monotonic() + 60
            while (pid := conn.execute(sa.text(
                    "SELECT a.pid FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid "
                    "WHERE a.datname = current_database() AND l.locktype = 'virtualxid' AND NOT l.granted "
                    "AND a.query LIKE 'CREATE INDEX CONCURRENTLY%'")).scalar()) is None:
                conn.rollback()
                assert upgrade.poll() is None and time.monotonic() < deadline, "the build never waited"
                time.sleep(0.05)
            conn.rollback()
            building = conn.execute(sa.text("SELECT query FROM pg_stat_activity WHERE pid = :pid"),
                                    {"pid": pid}).scalar_one()
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
            conn.rollback()
            _, stderr = upgrade.communicate(timeout=60)
        finally:
            if upgrade.poll() is None:
                upgrade.kill()
    assert first in building
    assert upgrade.returncode == 1 and stderr.startswith("geoservice: "), stderr
    with engine.connect() as conn:
        assert db.current_revision(conn) == BEFORE_NEWEST  # 0005 never committed
        assert valid_indexes(conn, NEWEST_INDEXES) == {first: False}  # what an interrupted concurrent build leaves
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    assert f"schema at revision {db.head_revision()} (was {BEFORE_NEWEST})" in again.stdout
    with engine.connect() as conn:
        assert valid_indexes(conn, NEWEST_INDEXES) == {first: True, second: True}
        definitions = dict(conn.execute(sa.text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY(:names)"),
            {"names": list(NEWEST_INDEXES)}).all())
    assert definitions[first].endswith("USING gist (kind, geom)")
    assert definitions[second].endswith("USING gist (geom) WHERE (opening_hours <> ''::text)")
