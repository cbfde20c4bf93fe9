"""Read replicas: which server each request reads from, the fallback to the primary, and caches on a lagging replica.

A primary (an embedded cluster of this module's own) with the demo city, and a streaming replica made from it with
``pg_basebackup -R`` (tests/clusters.py). The app is built with the primary as its database and the replica in
``replica_urls``. Which server a connection reached is asked of the server itself (``inet_server_port()``).
"""

from __future__ import annotations

import logging
import re
import shutil
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from geoservice import db, health
from geoservice.app import create_app
from geoservice.db.replicas import ReplicaSet, reads_from_replica
from tests.accounts_helpers import add_user
from tests.clusters import clusters_folder, make_demo_primary, make_replica, sql, wait_until
from tests.conftest import DEMO_METRIC_CRS

PRIMARY_PORT = 56310
REPLICA_PORT = 56311
RETRY_S = 1.0
UA = "pytest-replicas/1.0"
COVERAGE = "/api/v1/coverage/streets?mode=straight&radius=500"


@pytest.fixture(scope="module")
def folder():
    """Where this module's clusters live; removed afterwards."""
    path = clusters_folder("test-replicas")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def primary(base_settings, demo_city, folder):
    """The primary with the demo city; stopped after the module."""
    cluster = make_demo_primary(base_settings.replace(db_name="geoservice", metric_crs=DEMO_METRIC_CRS),
                                folder / "primary", PRIMARY_PORT, demo_city)
    yield cluster
    cluster.down()


@pytest.fixture(scope="module")
def owner(primary):
    """The owner's engine on the primary (what the tests write with)."""
    engine = db.make_engine(primary.url())
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def replica(primary, folder):
    """A streaming replica of the primary (hot standby), caught up; stopped after the module."""
    made = make_replica(primary, folder / "replica", REPLICA_PORT)
    yield made
    made.stop()


@pytest.fixture(scope="module")
def app(base_settings, primary, replica):
    """The app on the primary, reading the public's requests from the replica."""
    # Any lag the tests make is borne (a paused replica stays in the rotation), but in the tests of the bound.
    settings = base_settings.replace(
        database_url=primary.url(), app_database_url=primary.app_url(), replica_urls=(replica.cluster.app_url(),),
        replica_retry_s=RETRY_S, replica_max_lag_s=3600, basemap="none", metric_crs=DEMO_METRIC_CRS)
    app = create_app(settings)
    yield app
    db_replicas = app.extensions["geoservice.replicas"]
    db_replicas.dispose()


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def tokens(owner):
    """API tokens of an officer (sees what the public sees) and of a planner (creates points)."""
    return {role: add_user(owner, role)[1] for role in ("officer", "planner")}


@pytest.fixture()
def replica_running(replica, primary, app):
    """Every test starts with the replica running, replaying, caught up and in the app's rotation."""
    if not replica.cluster.status().running:
        replica.start()
    replica.resume_replay()  # a test that failed while it was paused
    replica.catch_up(primary)
    for member in app.extensions["geoservice.replicas"]:
        member.left_out_until = 0.0


def server_port(app, *, method="GET", headers=None, uid=None) -> int:
    """The port of the server a request's connection reaches (``db.get_connection`` inside that request); ``uid``:
    the request carries the signed session cookie of that logged-in user."""
    headers = dict(headers or {})
    if uid is not None:
        cookie = app.session_interface.get_signing_serializer(app).dumps({"uid": uid})
        headers["Cookie"] = f"{app.config['SESSION_COOKIE_NAME']}={cookie}"
    with app.test_request_context("/api/v1/layers/grids", method=method, headers=headers):
        return db.get_connection().execute(sa.text("SELECT inet_server_port()")).scalar_one()


# -- the rule ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "headers", "session", "expected"), [
    ("GET", {}, {}, True),
    ("HEAD", {}, {}, True),
    ("OPTIONS", {}, {}, True),
    ("get", {}, {}, True),
    ("GET", {}, {"csrf": "x", "seen": 1}, True),            # a visitor with a login form's session, not logged in
    ("GET", {"Authorization": "Bearer t"}, {}, False),     # an API token: reads its own writes
    ("GET", {"Authorization": "Basic eA=="}, {}, False),   # any Authorization header: the primary answers the 401
    ("GET", {}, {"uid": 7}, False),                         # a logged-in user
    ("POST", {}, {}, False),
    ("PUT", {}, {}, False),
    ("PATCH", {}, {}, False),
    ("DELETE", {}, {}, False),
])
def test_which_requests_may_read_from_a_replica(method, headers, session, expected):
    assert reads_from_replica(method, headers, session) is expected


@pytest.mark.usefixtures("replica_running")
@pytest.mark.parametrize(("method", "headers", "uid", "reads_replica"), [
    ("GET", {}, None, True),
    ("HEAD", {}, None, True),
    ("GET", {"Authorization": "Bearer whatever"}, None, False),
    ("GET", {}, 1, False),
    ("POST", {}, None, False),
    ("DELETE", {}, None, False),
])
def test_each_request_connects_to_its_server(app, method, headers, uid, reads_replica):
    expected = REPLICA_PORT if reads_replica else PRIMARY_PORT
    assert server_port(app, method=method, headers=headers, uid=uid) == expected


@pytest.mark.usefixtures("replica_running")
def test_choosing_the_server_adds_no_vary_cookie(app, base_settings, primary):
    # The same answers' Vary as an app without replicas: nearest does not look at the session, tiles do.
    alone = create_app(app.config["GEOSERVICE_SETTINGS"].replace(replica_urls=()))
    for path in ("/api/v1/nearest?lon=113.826&lat=34.026&k=3", "/tiles/points/13/6686/3272.mvt"):
        with_replica, without = app.test_client().get(path), alone.test_client().get(path)
        assert with_replica.status_code == without.status_code == 200
        assert with_replica.headers.get("Vary") == without.headers.get("Vary"), path
    assert "Cookie" not in app.test_client().get("/api/v1/nearest?lon=113.826&lat=34.026&k=3").headers["Vary"]


@pytest.mark.usefixtures("replica_running")
def test_round_robin_over_the_replicas_in_rotation(replica):
    # Two entries for the one replica and a third that refuses connections: the first two take turns, the third is
    # left out after its one failure and the reads go on from the others.
    refusing = db.make_engine(replica.cluster.app_url().replace(f":{REPLICA_PORT}/", f":{PRIMARY_PORT - 1}/"))
    engines = [db.make_engine(replica.cluster.app_url()), refusing, db.make_engine(replica.cluster.app_url())]
    now = [100.0]
    replicas = ReplicaSet(engines, retry_s=10, clock=lambda: now[0])
    reached = []
    for _ in range(6):
        with replicas.connect() as conn:
            reached.append(conn.engine)
    assert reached == [engines[0], engines[2], engines[0], engines[2], engines[0], engines[2]]
    assert [replicas.in_rotation(r) for r in replicas] == [True, False, True]
    now[0] += 10
    assert replicas.in_rotation(replicas.replicas[1])  # tried again after retry_s
    for engine in engines:
        engine.dispose()


# -- a replica that is down ----------------------------------------------------------------------------------------

@pytest.mark.usefixtures("replica_running")
def test_a_stopped_replica_is_left_out_and_reads_come_from_the_primary(app, replica):
    # An app of its own whose replica set runs on a clock the test moves.
    settings = app.config["GEOSERVICE_SETTINGS"]
    timed = create_app(settings)
    now = [1000.0]
    timed.extensions["geoservice.replicas"] = replicas = ReplicaSet(
        [db.make_engine(url) for url in settings.replica_urls], retry_s=RETRY_S, clock=lambda: now[0])
    client = timed.test_client()
    before = client.get("/api/v1/layers/grids")
    assert before.status_code == 200
    assert server_port(timed) == REPLICA_PORT
    replica.stop()
    during = client.get("/api/v1/layers/grids")
    assert during.status_code == 200
    assert during.get_json() == before.get_json()
    (member,) = replicas
    assert not replicas.in_rotation(member)
    assert server_port(timed) == PRIMARY_PORT
    replica.start()
    assert server_port(timed) == PRIMARY_PORT  # still left out: no connection attempt before retry_s
    now[0] += RETRY_S
    assert server_port(timed) == REPLICA_PORT
    replicas.dispose()


@pytest.mark.usefixtures("replica_running")
def test_every_replica_down_still_answers_every_read(app, client, replica):
    replica.stop()
    for path in ("/api/v1/layers/grids", "/api/v1/nearest?lon=113.826&lat=34.026&k=3", "/ogc/collections",
                 "/tiles/points/13/6686/3272.mvt", COVERAGE):
        assert client.get(path).status_code == 200, path


# -- a replica that lags -------------------------------------------------------------------------------------------

def _farthest_street_midpoint(owner) -> tuple[float, float]:
    """The middle of the street farthest from every open point: a point there changes the uncovered streets."""
    with owner.connect() as conn:
        return tuple(conn.execute(sa.text("""
            SELECT ST_X(m), ST_Y(m) FROM (
                SELECT ST_LineInterpolatePoint(s.geom, 0.5) AS m,
                       (SELECT min(ST_Distance(p.geom::geography, s.geom::geography)) FROM point p
                        WHERE p.status = 'open') AS far
                FROM street s) t
            ORDER BY far DESC LIMIT 1""")).one())


@pytest.mark.usefixtures("replica_running")
def test_a_lagging_replica_answers_at_the_version_it_has_applied(client, owner, primary, replica, tokens):
    officer = {"Authorization": f"Bearer {tokens['officer']}", "User-Agent": UA}
    first = client.get(COVERAGE)
    assert first.status_code == 200
    version_before = replica_version(replica)
    assert first.headers["ETag"].lstrip("W/").strip('"').startswith(f"v{version_before}-")

    replica.pause_replay()
    lon, lat = _farthest_street_midpoint(owner)
    created = client.post("/api/v1/points", headers={"Authorization": f"Bearer {tokens['planner']}", "User-Agent": UA},
                          json={"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
                                "properties": {"name": "复制测试点", "kind": "rest_station"}})
    assert created.status_code == 201, created.get_json()  # written on the primary while the replica is paused
    with owner.connect() as conn:
        version_after = conn.execute(sa.text("SELECT version FROM data_version")).scalar_one()
    assert version_after > version_before
    assert replica_version(replica) == version_before

    # The officer reads the primary: the new version's answer, computed now and kept in the results cache.
    newer = client.get(COVERAGE, headers=officer)
    assert newer.status_code == 200
    assert newer.headers["ETag"].lstrip("W/").strip('"').startswith(f"v{version_after}-")
    assert newer.get_json() != first.get_json()

    # The public reads the paused replica: the old version's answer, byte for byte, though the newer one is kept;
    # and the newer tag is no reason for a 304.
    for _ in range(2):
        stale = client.get(COVERAGE, headers={"If-None-Match": newer.headers["ETag"]})
        assert stale.status_code == 200
        assert stale.headers["ETag"] == first.headers["ETag"]
        assert stale.get_data() == first.get_data()
    assert client.get(COVERAGE, headers={"If-None-Match": first.headers["ETag"]}).status_code == 304

    replica.resume_replay()
    replica.catch_up(primary)
    caught_up = client.get(COVERAGE)
    assert caught_up.headers["ETag"] == newer.headers["ETag"]
    assert caught_up.get_data() == newer.get_data()
    with owner.begin() as conn:
        conn.execute(sa.text("DELETE FROM point WHERE id = :id"), {"id": created.get_json()["id"]})


def replica_version(replica) -> int:
    from tests.clusters import sql

    return sql(replica.cluster, "SELECT version FROM data_version", database="geoservice")[0][0]


# -- bounded staleness: a replica that lags too far is left out ----------------------------------------------------

MAX_LAG_S = 1.0


def bounded_app(app):
    """An app of its own whose replicas are left out past :data:`MAX_LAG_S` of lag, on a clock the test moves: a
    replica's lag is measured when a read first takes it, then again once the clock has moved a second."""
    settings = app.config["GEOSERVICE_SETTINGS"].replace(replica_max_lag_s=MAX_LAG_S)
    bounded = create_app(settings)
    now = [1000.0]
    bounded.extensions["geoservice.replicas"] = ReplicaSet(
        [db.make_engine(url) for url in settings.replica_urls], retry_s=RETRY_S,
        max_lag_s=settings.replica_max_lag_s, clock=lambda: now[0])
    return bounded, now


def replayed_all_and_last_older_than(replica, seconds: float, *, replayed_all: bool) -> bool:
    """Asked of the replica as its superuser: whether it has (``replayed_all``) or has not replayed all it received,
    and the last transaction it replayed was committed more than ``seconds`` ago."""
    ((done, age),) = sql(replica.cluster, "SELECT pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn(), "
                                          "extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8")
    return done is replayed_all and age is not None and age > seconds


def commit_and_replay(owner, primary, replica) -> None:
    """A transaction on the primary, replayed by the replica: the last one it replayed."""
    with owner.begin() as conn:
        conn.execute(sa.text("UPDATE squad SET phone = phone WHERE id = (SELECT min(id) FROM squad)"))
    replica.catch_up(primary)


def replica_report(bounded) -> dict:
    """The replica's entry in the bounded app's /healthz."""
    body = bounded.test_client().get("/healthz").get_json()
    assert body["status"] == "ok"
    (state,) = body["database"]["replicas"]
    return state


@pytest.mark.usefixtures("replica_running")
def test_a_replica_past_the_max_lag_is_left_out_until_it_catches_up(app, owner, primary, replica, caplog):
    caplog.set_level(logging.INFO, logger="geoservice.db.replicas")
    bounded, now = bounded_app(app)
    (member,) = replicas = bounded.extensions["geoservice.replicas"]
    commit_and_replay(owner, primary, replica)
    assert server_port(bounded) == REPLICA_PORT  # measured: caught up

    replica.pause_replay()
    with owner.begin() as conn:
        conn.execute(sa.text("UPDATE squad SET phone = phone WHERE id = (SELECT min(id) FROM squad)"))
    replica.receive_all(primary)
    # The replica's lag, asked of it independently: it has received a transaction it has not applied, and the last
    # one it applied is older than the bound (a real wait of at most a second or so).
    wait_until(lambda: replayed_all_and_last_older_than(replica, MAX_LAG_S, replayed_all=False),
               "the replica's replay lag to pass the bound", timeout_s=5)
    assert server_port(bounded) == REPLICA_PORT  # measured less than a second ago: not asked again
    now[0] += 1
    for _ in range(3):
        assert server_port(bounded) == PRIMARY_PORT  # the public's reads, left to the primary
    assert server_port(bounded, headers={"Authorization": "Bearer x"}) == PRIMARY_PORT
    reason = replicas.left_out(member)
    lag = float(re.fullmatch(r"replay lag ([\d.]+) s > 1 s", reason).group(1))
    assert lag > MAX_LAG_S
    state = replica_report(bounded)
    assert (state["in_rotation"], state["left_out"], state["reachable"], state["replay_paused"]) == (
        False, reason, True, True)
    assert state["replay_lag_s"] > MAX_LAG_S

    replica.resume_replay()
    replica.catch_up(primary)
    assert server_port(bounded) == PRIMARY_PORT  # not measured again within the second
    now[0] += 1
    assert server_port(bounded) == REPLICA_PORT
    assert replicas.left_out(member) is None
    assert replica_report(bounded)["in_rotation"] is True
    assert "left_out" not in replica_report(bounded)
    messages = [r.getMessage() for r in caplog.records if r.name == "geoservice.db.replicas"]
    assert messages == [
        f"replica 127.0.0.1:{REPLICA_PORT}/geoservice left out of the rotation: {reason}; reading from the others or "
        "the primary",
        f"replica 127.0.0.1:{REPLICA_PORT}/geoservice back in the rotation: caught up ({reason} before)"]
    replicas.dispose()


@pytest.mark.usefixtures("replica_running")
def test_a_replica_with_nothing_to_replay_has_no_lag_however_old_its_last_transaction(app, owner, primary, replica):
    bounded, now = bounded_app(app)
    (member,) = replicas = bounded.extensions["geoservice.replicas"]
    commit_and_replay(owner, primary, replica)
    # Nobody writes: the last transaction the replica replayed gets older than the bound, with nothing left to replay.
    wait_until(lambda: replayed_all_and_last_older_than(replica, MAX_LAG_S, replayed_all=True),
               "the replica's last replayed transaction to be older than the bound", timeout_s=5)
    for _ in range(3):
        assert server_port(bounded) == REPLICA_PORT
        now[0] += 1
    assert replicas.left_out(member) is None
    assert replica_report(bounded)["in_rotation"] is True
    replicas.dispose()


@contextmanager
def receiver_cut_off(replica):
    """The replica's WAL receiver pointed at a port nobody listens on: it cannot stream until this ends."""
    conninfo = sql(replica.cluster, "SHOW primary_conninfo")[0][0]
    assert f"port={PRIMARY_PORT}" in conninfo
    sql(replica.cluster, "ALTER SYSTEM SET primary_conninfo = %s",
        params=(conninfo.replace(f"port={PRIMARY_PORT}", f"port={PRIMARY_PORT - 1}"),))
    sql(replica.cluster, "SELECT pg_reload_conf()")
    try:
        wait_until(lambda: not sql(replica.cluster, "SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming'"),
                   "the WAL receiver to stop streaming")
        yield
    finally:
        sql(replica.cluster, "ALTER SYSTEM SET primary_conninfo = %s", params=(conninfo,))
        sql(replica.cluster, "SELECT pg_reload_conf()")
    wait_until(lambda: sql(replica.cluster, "SELECT status FROM pg_stat_wal_receiver") == [("streaming",)],
               "the WAL receiver to stream again")


@pytest.mark.usefixtures("replica_running")
def test_a_replica_cut_off_from_the_primary_longer_than_the_max_lag_is_left_out(app, replica):
    bounded, now = bounded_app(app)
    (member,) = replicas = bounded.extensions["geoservice.replicas"]
    assert server_port(bounded) == REPLICA_PORT  # measured: streaming (seen through the app's role)
    with receiver_cut_off(replica):
        now[0] += 1
        assert server_port(bounded) == REPLICA_PORT  # not streaming since this measure: no lag known yet
        now[0] += 1
        assert server_port(bounded) == REPLICA_PORT  # for 1 s: not past the bound
        now[0] += 1.5
        assert server_port(bounded) == PRIMARY_PORT
        assert replicas.left_out(member) == "WAL receiver not streaming for 2.5 s > 1 s"
        assert replica_report(bounded)["left_out"] == "WAL receiver not streaming for 2.5 s > 1 s"
    now[0] += 1
    assert server_port(bounded) == REPLICA_PORT
    assert replicas.left_out(member) is None
    replicas.dispose()


# -- what /healthz tells about the replicas ------------------------------------------------------------------------

@pytest.mark.usefixtures("replica_running")
def test_health_reports_each_replica_reachable_caught_up_or_lagging(app, owner, primary, replica):
    replicas = app.extensions["geoservice.replicas"]
    report = health.probe(app.extensions["geoservice.engine"], timeout_s=3, replicas=replicas)
    (state,) = report["replicas"]
    assert state == {"server": f"127.0.0.1:{REPLICA_PORT}/geoservice", "in_rotation": True, "reachable": True,
                     "in_recovery": True, "data_version": report["data_version"]["version"],
                     "replay_lag_s": state["replay_lag_s"], "replay_lag_bytes": state["replay_lag_bytes"],
                     "replay_paused": False}
    # Caught up, but for what the primary may have written since (a checkpoint, autovacuum): no transaction.
    assert 0 <= state["replay_lag_bytes"] < 65536
    assert state["replay_lag_s"] >= 0

    replica.pause_replay()
    with owner.begin() as conn:
        conn.execute(sa.text("UPDATE squad SET phone = phone WHERE id = (SELECT min(id) FROM squad)"))
    replica.receive_all(primary)  # received, not applied: the lag is the replay's
    lagging = health.probe(app.extensions["geoservice.engine"], timeout_s=3, replicas=replicas)["replicas"][0]
    assert lagging["replay_paused"] is True
    assert lagging["data_version"] < lagging_primary_version(owner)
    assert lagging["replay_lag_bytes"] > 0
    assert lagging["replay_lag_s"] > 0

    replica.resume_replay()
    replica.stop()
    down = health.probe(app.extensions["geoservice.engine"], timeout_s=3, replicas=replicas)["replicas"][0]
    assert down == {"server": f"127.0.0.1:{REPLICA_PORT}/geoservice", "in_rotation": True, "reachable": False,
                    "error": "replica not reachable (OperationalError)"}


def lagging_primary_version(owner) -> int:
    with owner.connect() as conn:
        return conn.execute(sa.text("SELECT version FROM data_version")).scalar_one()


@pytest.mark.usefixtures("replica_running")
def test_healthz_shows_the_replicas(client, replica):
    body = client.get("/healthz").get_json()
    assert body["status"] == "ok"
    (state,) = body["database"]["replicas"]
    assert state["server"] == f"127.0.0.1:{REPLICA_PORT}/geoservice"
    assert state["reachable"] is True
    assert state["in_recovery"] is True
    replica.stop()
    body = client.get("/healthz").get_json()
    assert body["status"] == "ok"  # the primary answers every read meanwhile
    assert body["database"]["replicas"][0]["reachable"] is False
